//! Head office's SQLite store. It keeps events, devices (the hash of each device's token and its
//! verifying key, never the token or signing key) and entries exactly as received: sealed.

use crate::error::Result;
use rusqlite::Connection;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id),
    token_sha256 TEXT NOT NULL UNIQUE,
    verifying_key TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    enrolled_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TABLE IF NOT EXISTS settings (
    k TEXT PRIMARY KEY,
    v BLOB NOT NULL
);
-- One row per batch received: a resend of the same batch gets the same receipt.
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    ids_digest TEXT NOT NULL,
    receipt TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    device TEXT NOT NULL,
    captured_at_ms INTEGER NOT NULL,
    consent_version TEXT NOT NULL,
    consent_sha256 TEXT NOT NULL,
    sealed BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL
);
";

/// Opens (creating if needed) head office's database: WAL, `synchronous=FULL`.
pub fn open(path: &Path) -> Result<Connection> {
    open_with_timeout(path, std::time::Duration::from_secs(10))
}

/// [`open`] with a given busy timeout: how long a writer waits for another before giving up.
pub fn open_with_timeout(path: &Path, busy: std::time::Duration) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// A device as authenticated by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    pub name: String,
    pub event_id: String,
    pub revoked: bool,
}

/// The device whose token hashes to `token_sha256`, if any.
pub fn device_by_token(conn: &Connection, token_sha256: &str) -> Result<Option<DeviceAuth>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT name, event_id, revoked FROM devices WHERE token_sha256 = ?1",
            [token_sha256],
            |r| {
                Ok(DeviceAuth {
                    name: r.get(0)?,
                    event_id: r.get(1)?,
                    revoked: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Ids already held with a different payload: refused, never overwritten.
    #[error("{} entries already held with different content", .0.len())]
    Conflict(Vec<uuid::Uuid>),
    /// The batch id was seen before with other entries or from another device.
    #[error("this batch id was already used for other entries")]
    BatchConflict,
    #[error(transparent)]
    Storage(#[from] rusqlite::Error),
}

/// Stores a batch from `device` in one transaction, insert-or-ignore by entry id, and returns
/// its signed receipt once committed (`true` when newly stored, `false` for a resend, which gets
/// the receipt it got the first time).
pub fn ingest(
    conn: &mut Connection,
    device: &str,
    req: &sealbox_protocol::sync::SyncRequest,
    key: &ed25519_dalek::SigningKey,
    now_ms: i64,
) -> Result<(sealbox_protocol::sync::Receipt, bool), IngestError> {
    use rusqlite::OptionalExtension;
    use sealbox_protocol::sync::Receipt;
    let ids: Vec<uuid::Uuid> = req.entries.iter().map(|e| e.id).collect();
    let digest = Receipt::digest_of(&ids);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let seen: Option<(String, String, String)> = tx
        .query_row(
            "SELECT device, ids_digest, receipt FROM batches WHERE batch_id = ?1",
            [req.batch_id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((dev, d, receipt)) = seen {
        if dev == device && d == digest {
            let r: Receipt =
                serde_json::from_str(&receipt).map_err(|_| IngestError::BatchConflict)?;
            return Ok((r, false));
        }
        return Err(IngestError::BatchConflict);
    }
    let mut conflicts = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO entries
             (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, received_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut existing = tx.prepare_cached(
            "SELECT event_id, captured_at_ms, consent_version, consent_sha256, sealed FROM entries WHERE id = ?1",
        )?;
        for e in &req.entries {
            let id = e.id.to_string();
            let n = insert.execute(rusqlite::params![
                id,
                e.event_id,
                device,
                e.captured_at_ms,
                e.consent_version,
                e.consent_sha256,
                e.sealed,
                now_ms
            ])?;
            if n == 0 {
                let same = existing.query_row([&id], |r| {
                    Ok(r.get::<_, String>(0)? == e.event_id
                        && r.get::<_, i64>(1)? == e.captured_at_ms
                        && r.get::<_, String>(2)? == e.consent_version
                        && r.get::<_, String>(3)? == e.consent_sha256
                        && r.get::<_, Vec<u8>>(4)? == e.sealed)
                })?;
                if !same {
                    conflicts.push(e.id);
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(IngestError::Conflict(conflicts));
    }
    let receipt = Receipt::sign(req.batch_id, device, ids, now_ms, key);
    let receipt_json = serde_json::to_string(&receipt).map_err(|_| IngestError::BatchConflict)?;
    tx.execute(
        "INSERT INTO batches (batch_id, device, ids_digest, receipt, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![req.batch_id.to_string(), device, digest, receipt_json, now_ms],
    )?;
    // Durable (WAL, synchronous=FULL) before anyone sees the receipt.
    tx.commit()?;
    Ok((receipt, true))
}
