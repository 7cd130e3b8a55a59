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
    let mut out = ingest_group(conn, &[(device, req)], key, now_ms);
    out.pop().unwrap_or(Err(IngestError::BatchConflict))
}

/// What one batch of a group came to.
pub type Ingested = Result<(sealbox_protocol::sync::Receipt, bool), IngestError>;

/// Group commit: stores several devices' batches in one transaction, so they share one durable
/// commit (one fsync) instead of queueing for one each. Every batch runs in its own savepoint:
/// one refused batch (a conflict) is rolled back alone and the others are stored. The results
/// come back in order, and a receipt is only returned once the commit is durable; if the commit
/// fails, every batch of the group gets the error and nothing of it was stored.
pub fn ingest_group(
    conn: &mut Connection,
    batches: &[(&str, &sealbox_protocol::sync::SyncRequest)],
    key: &ed25519_dalek::SigningKey,
    now_ms: i64,
) -> Vec<Ingested> {
    let all_failed = |e: &rusqlite::Error| -> Vec<Ingested> {
        batches
            .iter()
            .map(|_| Err(IngestError::Storage(copy_error(e))))
            .collect()
    };
    let mut tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return all_failed(&e),
    };
    let mut out = Vec::with_capacity(batches.len());
    for (device, req) in batches {
        let result = match tx.savepoint() {
            Ok(sp) => match ingest_one(&sp, device, req, key, now_ms) {
                Ok(r) => sp.commit().map(|()| r).map_err(IngestError::Storage),
                // Dropping the savepoint rolls this batch back; the group goes on.
                Err(e) => Err(e),
            },
            Err(e) => Err(IngestError::Storage(e)),
        };
        out.push(result);
    }
    // Durable (WAL, synchronous=FULL) before anyone sees a receipt.
    if let Err(e) = tx.commit() {
        return all_failed(&e);
    }
    out
}

/// A copy of a storage error for each batch of a failed group (the code is what callers use).
fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e.sqlite_error() {
        Some(f) => rusqlite::Error::SqliteFailure(*f, None),
        None => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(e.to_string()),
        ),
    }
}

/// One batch inside the group's transaction.
fn ingest_one(
    tx: &Connection,
    device: &str,
    req: &sealbox_protocol::sync::SyncRequest,
    key: &ed25519_dalek::SigningKey,
    now_ms: i64,
) -> Result<(sealbox_protocol::sync::Receipt, bool), IngestError> {
    use rusqlite::OptionalExtension;
    use sealbox_protocol::sync::Receipt;
    let ids: Vec<uuid::Uuid> = req.entries.iter().map(|e| e.id).collect();
    let digest = Receipt::digest_of(&ids);
    let seen: Option<(String, String, String)> = tx
        .prepare_cached("SELECT device, ids_digest, receipt FROM batches WHERE batch_id = ?1")?
        .query_row([req.batch_id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
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
    tx.prepare_cached(
        "INSERT INTO batches (batch_id, device, ids_digest, receipt, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![req.batch_id.to_string(), device, digest, receipt_json, now_ms])?;
    Ok((receipt, true))
}

/// How many of `ids` head office already holds (read only).
pub fn held_count(conn: &Connection, ids: &[uuid::Uuid]) -> Result<usize> {
    let mut stmt = conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM entries WHERE id = ?1)")?;
    let mut n = 0;
    for id in ids {
        if stmt.query_row([id.to_string()], |r| r.get::<_, bool>(0))? {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox_protocol::sync::SyncRequest;
    use sealbox_protocol::EntryEnvelope;

    fn envelope() -> EntryEnvelope {
        EntryEnvelope {
            id: uuid::Uuid::now_v7(),
            event_id: "e".into(),
            captured_at_ms: 1,
            consent_version: "v".into(),
            consent_sha256: "0".repeat(64),
            sealed: b"age-encryption.org/v1\nbody".to_vec(),
        }
    }

    fn batch(entries: Vec<EntryEnvelope>) -> SyncRequest {
        SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries,
        }
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// One group commit: a batch that conflicts is rolled back alone, the others are stored and
    /// signed; a batch sent twice in the same group gets the same receipt, stored once.
    #[test]
    fn a_group_stores_each_batch_or_refuses_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("ho.db")).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        let held = envelope();
        ingest(&mut conn, "d0", &batch(vec![held.clone()]), &key, 1).unwrap();

        let first = batch(vec![envelope(), envelope()]);
        let mut changed = held.clone();
        changed.sealed = b"age-encryption.org/v1\nother".to_vec();
        let conflicting = batch(vec![envelope(), changed]);
        let third = batch(vec![envelope()]);
        let group = [
            ("d1", &first),
            ("d2", &conflicting),
            ("d3", &third),
            ("d1", &first),
        ];
        let out = ingest_group(&mut conn, &group, &key, 2);
        assert_eq!(out.len(), 4);
        let (r1, fresh1) = out[0].as_ref().unwrap();
        assert!(fresh1);
        assert!(matches!(&out[1], Err(IngestError::Conflict(ids)) if ids == &vec![held.id]));
        let (r3, _) = out[2].as_ref().unwrap();
        let (r1_again, fresh_again) = out[3].as_ref().unwrap();
        assert!(!fresh_again);
        assert_eq!(
            serde_json::to_string(r1).unwrap(),
            serde_json::to_string(r1_again).unwrap()
        );
        assert!(r1.verify(&key.verifying_key()).is_ok());
        assert!(r3.verify(&key.verifying_key()).is_ok());
        // Stored: the held entry, first's two, third's one; nothing of the conflicting batch.
        assert_eq!(count(&conn, "SELECT count(*) FROM entries"), 4);
        assert_eq!(
            count(&conn, "SELECT count(*) FROM entries WHERE device = 'd2'"),
            0
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM batches"), 3);
    }

    /// When the group cannot write (another process holds the write lock past the busy
    /// timeout), every batch of it gets the busy error and nothing is stored.
    #[test]
    fn a_group_that_cannot_commit_fails_every_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ho.db");
        let mut conn = open_with_timeout(&path, std::time::Duration::from_millis(50)).unwrap();
        let other = open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        let (a, b) = (batch(vec![envelope()]), batch(vec![envelope()]));
        let out = ingest_group(&mut conn, &[("d1", &a), ("d2", &b)], &key, 1);
        for r in &out {
            match r {
                Err(IngestError::Storage(e)) => assert_eq!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy)
                ),
                other => panic!("expected busy, got {other:?}"),
            }
        }
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM entries"), 0);
        // Once the lock is gone the same batches go through.
        let out = ingest_group(&mut conn, &[("d1", &a), ("d2", &b)], &key, 1);
        assert!(out.iter().all(|r| r.is_ok()));
        assert_eq!(count(&conn, "SELECT count(*) FROM entries"), 2);
    }
}
