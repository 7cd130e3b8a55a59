//! Head office's embedded backend: one SQLite (SQLCipher build) file, `headoffice.db`, in the data
//! directory; the default. Every SQL statement head office runs on it lives here; the rest of
//! head office reaches it through [`crate::store::Store`] (the admin functions that take a
//! `rusqlite::Connection`, kept for callers and tests, call in here too).
//!
//! It keeps events, devices (the hash of each device's token and its
//! verifying key, never the token or signing key) and entries exactly as received: sealed.
//!
//! An entry id, once received, is in exactly one of three places, and a later delivery of the
//! same id is acknowledged without being stored again from any of them:
//! - `entries`: held, sealed;
//! - `quarantine`: held, sealed, but refused as an entry (an envelope head office would not take
//!   from a batch file, another version of an id already held, a payload that does not open);
//!   counted and reported, never exported, purged with its event;
//! - `tombstones`: deleted by a deletion request or at the end of retention: id, when, why; no
//!   personal data.

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

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Version 2: tombstones of deleted entries, the quarantine, and the time each entry's retention
/// counts from (`retain_from_ms`): its capture time when that is plausible, else the time head
/// office received it, so a device whose clock was wrong neither loses its entries early nor
/// keeps them forever.
const SCHEMA_V2: &str = "
CREATE TABLE tombstones (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    deleted_at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL             -- 'deletion_request' or 'retention'
);
CREATE TABLE quarantine (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    device TEXT NOT NULL,
    captured_at_ms INTEGER NOT NULL,
    consent_version TEXT NOT NULL,
    consent_sha256 TEXT NOT NULL,
    sealed BLOB NOT NULL,
    reason TEXT NOT NULL,            -- a stable code
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX tombstones_event ON tombstones (event_id);
CREATE INDEX quarantine_id ON quarantine (id);
CREATE INDEX quarantine_event ON quarantine (event_id, received_at_ms);
ALTER TABLE entries ADD COLUMN retain_from_ms INTEGER;
UPDATE entries SET retain_from_ms = CASE
    WHEN captured_at_ms > received_at_ms + 600000
      OR captured_at_ms < coalesce((SELECT created_at_ms FROM events e WHERE e.id = entries.event_id), 0) - 86400000
    THEN received_at_ms ELSE captured_at_ms END;
CREATE INDEX entries_retention ON entries (event_id, retain_from_ms);
CREATE INDEX entries_device ON entries (device);
";

/// Version 3: the entries of an event in capture order from an index, so the CRM export and
/// `forget` stream them without sorting the table first (PostgreSQL's schema has had it from
/// its first version).
const SCHEMA_V3: &str = "
CREATE INDEX entries_order ON entries (event_id, captured_at_ms, id);
";

/// How far ahead of head office's clock a capture time may be before it is taken as wrong.
pub const FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;
/// How long before its event was created an entry may have been captured before its time is
/// taken as wrong (clock skew between head office and devices).
pub const PAST_SKEW_MS: i64 = 24 * 3600 * 1000;

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
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        if version > SCHEMA_VERSION {
            return Err(crate::error::HoError::Config(format!(
                "the database has schema version {version}, newer than this program understands ({SCHEMA_VERSION}); update Sealbox"
            )));
        }
        return Ok(());
    }
    // IMMEDIATE: two processes opening a new database at once migrate it once.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = (|| -> rusqlite::Result<()> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < 1 {
            conn.execute_batch(SCHEMA)?;
        }
        if version < 2 {
            conn.execute_batch(SCHEMA_V2)?;
        }
        if version < 3 {
            conn.execute_batch(SCHEMA_V3)?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
    })();
    match done {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
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
    /// PostgreSQL kept losing to other writers (serialization failures, deadlocks) past the
    /// retries: nothing of the batch was stored; the device tries again.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// Any other PostgreSQL failure: nothing of the batch was stored.
    #[error("database error: {0}")]
    Database(String),
}

/// Where a batch comes from, which decides what happens to an entry head office will not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A device's sync: the batch was validated before, and another version of an id already
    /// held refuses the batch (409, naming the ids), so the device quarantines them.
    Sync,
    /// A batch file an admin imports: it is the device's last word on its entries, so an
    /// entry head office will not take as an entry is kept in the quarantine, reported, and
    /// acknowledged (the device may erase it: head office holds it).
    BatchFile,
}

/// A stored batch: its receipt, whether it was new, and how many of its entries went to the
/// quarantine.
#[derive(Debug, Clone)]
pub struct Stored {
    pub receipt: sealbox_protocol::sync::Receipt,
    pub fresh: bool,
    pub quarantined: usize,
}

/// Stores a batch from `device` in one transaction, insert-or-ignore by entry id, and returns
/// its signed receipt once committed. A resend gets the receipt it got the first time.
pub fn ingest(
    conn: &mut Connection,
    device: &str,
    req: &sealbox_protocol::sync::SyncRequest,
    source: Source,
    key: &ed25519_dalek::SigningKey,
    now_ms: i64,
) -> Result<Stored, IngestError> {
    let mut out = ingest_group(conn, &[(device, req)], source, key, now_ms);
    out.pop().unwrap_or(Err(IngestError::BatchConflict))
}

/// What one batch of a group came to.
pub type Ingested = Result<Stored, IngestError>;

/// Group commit: stores several devices' batches in one transaction, so they share one durable
/// commit (one fsync) instead of queueing for one each. Every batch runs in its own savepoint:
/// one refused batch (a conflict) is rolled back alone and the others are stored. The results
/// come back in order, and a receipt is only returned once the commit is durable; if the commit
/// fails, every batch of the group gets the error and nothing of it was stored.
pub fn ingest_group(
    conn: &mut Connection,
    batches: &[(&str, &sealbox_protocol::sync::SyncRequest)],
    source: Source,
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
            Ok(sp) => match ingest_one(&sp, device, req, source, key, now_ms) {
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

/// The event a device is enrolled in.
fn device_event(tx: &Connection, device: &str) -> rusqlite::Result<String> {
    tx.prepare_cached("SELECT event_id FROM devices WHERE name = ?1")?
        .query_row([device], |r| r.get(0))
}

/// Keeps an envelope in the quarantine (once per id and content).
fn quarantine_envelope(
    tx: &Connection,
    device: &str,
    e: &sealbox_protocol::EntryEnvelope,
    reason: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let held: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM quarantine WHERE id = ?1 AND sealed = ?2)")?
        .query_row(rusqlite::params![e.id.to_string(), e.sealed], |r| r.get(0))?;
    if !held {
        tx.prepare_cached(
            "INSERT INTO quarantine
             (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, reason, received_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(rusqlite::params![
            e.id.to_string(),
            e.event_id,
            device,
            e.captured_at_ms,
            e.consent_version,
            e.consent_sha256,
            e.sealed,
            reason,
            now_ms
        ])?;
    }
    Ok(())
}

/// One batch inside the group's transaction.
fn ingest_one(
    tx: &Connection,
    device: &str,
    req: &sealbox_protocol::sync::SyncRequest,
    source: Source,
    key: &ed25519_dalek::SigningKey,
    now_ms: i64,
) -> Result<Stored, IngestError> {
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
            // Signed again with the current key (Ed25519 is deterministic: the same receipt
            // while the key is the same), so a resend after a key rotation is answered with a
            // receipt the device can verify.
            let r = Receipt::sign(r.batch_id, &r.device, r.ids, r.issued_at_ms, key);
            return Ok(Stored {
                receipt: r,
                fresh: false,
                quarantined: 0,
            });
        }
        return Err(IngestError::BatchConflict);
    }
    let event_id = device_event(tx, device)?;
    let mut conflicts = Vec::new();
    let mut quarantined = 0;
    {
        let mut tombstoned =
            tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM tombstones WHERE id = ?1)")?;
        let mut in_quarantine = tx.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM quarantine WHERE id = ?1 AND sealed = ?2)",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO entries
             (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, received_at_ms, retain_from_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
                     CASE WHEN ?4 > ?8 + ?9
                            OR ?4 < coalesce((SELECT created_at_ms FROM events WHERE id = ?2), 0) - ?10
                          THEN ?8 ELSE ?4 END)",
        )?;
        let mut existing = tx.prepare_cached(
            "SELECT event_id, captured_at_ms, consent_version, consent_sha256, sealed FROM entries WHERE id = ?1",
        )?;
        for e in &req.entries {
            let id = e.id.to_string();
            // Deleted before: acknowledged (the device may erase its copy), never stored again.
            if tombstoned.query_row([&id], |r| r.get::<_, bool>(0))? {
                continue;
            }
            if in_quarantine.query_row(rusqlite::params![id, e.sealed], |r| r.get::<_, bool>(0))? {
                continue;
            }
            if let Err(problem) = sealbox_protocol::limits::check_envelope(e, &event_id) {
                // Only a batch file gets here with a bad envelope: a sync was refused before.
                quarantine_envelope(tx, device, e, problem.code(), now_ms)?;
                quarantined += 1;
                continue;
            }
            let n = insert.execute(rusqlite::params![
                id,
                e.event_id,
                device,
                e.captured_at_ms,
                e.consent_version,
                e.consent_sha256,
                e.sealed,
                now_ms,
                FUTURE_SKEW_MS,
                PAST_SKEW_MS,
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
                    match source {
                        Source::Sync => conflicts.push(e.id),
                        Source::BatchFile => {
                            quarantine_envelope(tx, device, e, "conflict", now_ms)?;
                            quarantined += 1;
                        }
                    }
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
    Ok(Stored {
        receipt,
        fresh: true,
        quarantined,
    })
}

/// Deletes entries (by a deletion request or at the end of retention) and leaves a tombstone for
/// each in the same transaction, so a late delivery of the same id is acknowledged but never
/// stored again. Returns how many entries were deleted.
pub fn delete_with_tombstones(
    tx: &rusqlite::Transaction<'_>,
    ids: &[uuid::Uuid],
    reason: &str,
    now_ms: i64,
) -> Result<u64> {
    let mut tomb = tx.prepare_cached(
        "INSERT OR IGNORE INTO tombstones (id, event_id, deleted_at_ms, reason)
         SELECT id, event_id, ?2, ?3 FROM entries WHERE id = ?1",
    )?;
    let mut del = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
    let mut qdel = tx.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?;
    let mut n = 0;
    for id in ids {
        let s = id.to_string();
        tomb.execute(rusqlite::params![s, now_ms, reason])?;
        n += del.execute([&s])? as u64;
        qdel.execute([&s])?;
    }
    Ok(n)
}

/// The ids of one event's entries whose retention (counted from `retain_from_ms`) ended before
/// `cutoff_ms`, at most `limit`, and the quarantined rows received before it.
pub fn expired_ids(
    conn: &Connection,
    event_id: &str,
    cutoff_ms: i64,
    limit: usize,
) -> Result<Vec<uuid::Uuid>> {
    let mut stmt = conn.prepare_cached(EXPIRED)?;
    let rows = stmt.query_map(rusqlite::params![event_id, cutoff_ms, limit as i64], |r| {
        r.get::<_, String>(0)
    })?;
    let mut out = Vec::new();
    for r in rows {
        if let Ok(id) = uuid::Uuid::parse_str(&r?) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Deletes at most `limit` of one event's quarantined rows received before `cutoff_ms` (they
/// hold personal data too), with tombstones. Returns how many: purge calls it until none are
/// left, a bounded transaction at a time.
pub fn purge_quarantine(
    tx: &rusqlite::Transaction<'_>,
    event_id: &str,
    cutoff_ms: i64,
    now_ms: i64,
    limit: usize,
) -> Result<u64> {
    let seqs: Vec<i64> = tx
        .prepare_cached(EXPIRED_QUARANTINE)?
        .query_map(rusqlite::params![event_id, cutoff_ms, limit as i64], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut tomb = tx.prepare_cached(
        "INSERT OR IGNORE INTO tombstones (id, event_id, deleted_at_ms, reason)
         SELECT id, event_id, ?2, 'retention' FROM quarantine WHERE seq = ?1",
    )?;
    let mut del = tx.prepare_cached("DELETE FROM quarantine WHERE seq = ?1")?;
    let mut n = 0;
    for seq in seqs {
        tomb.execute(rusqlite::params![seq, now_ms])?;
        n += del.execute([seq])? as u64;
    }
    Ok(n)
}

/// Benchmarks and scale tests only: see [`crate::store::Store::bulk_insert_entries`]. Each
/// entry's retention counts from its capture time.
pub fn bulk_insert_entries(
    tx: &rusqlite::Transaction<'_>,
    device: &str,
    entries: &[sealbox_protocol::EntryEnvelope],
    received_at_ms: i64,
) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO entries
         (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, received_at_ms, retain_from_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?4)",
    )?;
    for e in entries {
        insert.execute(rusqlite::params![
            e.id.to_string(),
            e.event_id,
            device,
            e.captured_at_ms,
            e.consent_version,
            e.consent_sha256,
            e.sealed,
            received_at_ms
        ])?;
    }
    Ok(())
}

/// Moves an entry that does not open (or does not match its envelope) from `entries` to the
/// quarantine, with the reason, in one transaction.
pub fn quarantine_entry(conn: &mut Connection, id: uuid::Uuid, reason: &str) -> Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO quarantine
         (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, reason, received_at_ms)
         SELECT id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, ?2, received_at_ms
         FROM entries WHERE id = ?1",
        rusqlite::params![id.to_string(), reason],
    )?;
    tx.execute("DELETE FROM entries WHERE id = ?1", [id.to_string()])?;
    tx.commit()?;
    Ok(())
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

/// Whether any event, device or audit row is stored.
pub fn holds_data(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM devices) OR EXISTS (SELECT 1 FROM audit)",
        [],
        |r| r.get(0),
    )?)
}

/// One event's config (canonical JSON), if the event exists: the one event lookup.
pub fn event_config(conn: &Connection, id: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached("SELECT config FROM events WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Every event, `(id, config)`, by id.
pub fn events(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached("SELECT id, config FROM events ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stores a new event.
pub fn add_event(conn: &Connection, id: &str, config: &str, now_ms: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO events (id, config, created_at_ms) VALUES (?1, ?2, ?3)",
        rusqlite::params![id, config, now_ms],
    )?;
    Ok(())
}

/// Replaces an event's config.
pub fn update_event(conn: &Connection, id: &str, config: &str) -> Result<()> {
    conn.execute(
        "UPDATE events SET config = ?2 WHERE id = ?1",
        rusqlite::params![id, config],
    )?;
    Ok(())
}

/// Whether a device of that name is enrolled (revoked or not).
pub fn device_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )?)
}

/// Stores a newly enrolled device.
pub fn add_device(conn: &Connection, d: &crate::store::NewDevice<'_>) -> Result<()> {
    conn.execute(
        "INSERT INTO devices (name, event_id, token_sha256, verifying_key, enrolled_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            d.name,
            d.event_id,
            d.token_sha256,
            d.verifying_key,
            d.enrolled_at_ms
        ],
    )?;
    Ok(())
}

/// A device's event, verifying key (base64) and whether it is revoked.
pub fn device_keys(conn: &Connection, name: &str) -> Result<Option<(String, String, bool)>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT event_id, verifying_key, revoked FROM devices WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// Marks a device revoked; false when there is no such device.
pub fn revoke_device(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.execute("UPDATE devices SET revoked = 1 WHERE name = ?1", [name])? > 0)
}

/// `status`'s counts per event: each from an index on `event_id` (see [`query_plans`]).
const STATUS_EVENTS: &str = "SELECT e.id,
        (SELECT count(*) FROM entries x WHERE x.event_id = e.id),
        (SELECT count(*) FROM quarantine q WHERE q.event_id = e.id),
        (SELECT count(*) FROM tombstones t WHERE t.event_id = e.id)
    FROM events e ORDER BY e.id";
/// `status`'s counts per device, from `entries_device`.
const STATUS_DEVICES: &str = "SELECT d.name, d.event_id,
        (SELECT count(*) FROM entries x WHERE x.device = d.name), d.revoked
    FROM devices d ORDER BY d.name";
const COUNT_ALL: &str = "SELECT count(*) FROM entries";
const COUNT_EVENT: &str = "SELECT count(*) FROM entries WHERE event_id = ?1";
/// The entries of one event in capture order, from `entries_order`: no sort.
const STREAM_EVENT: &str =
    "SELECT id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, device
     FROM entries WHERE event_id = ?1 ORDER BY event_id, captured_at_ms, id";
/// Every entry, event by event, each in capture order, from `entries_order`: no sort.
const STREAM_ALL: &str =
    "SELECT id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, device
     FROM entries ORDER BY event_id, captured_at_ms, id";
const EXPIRED: &str = "SELECT id FROM entries WHERE event_id = ?1 AND retain_from_ms < ?2 LIMIT ?3";
const EXPIRED_QUARANTINE: &str =
    "SELECT seq FROM quarantine WHERE event_id = ?1 AND received_at_ms < ?2 LIMIT ?3";

/// The plans SQLite makes for `status`, the counts, the streams the CRM export and `forget`
/// read, and purge's chunks: `(query, plan)` with one line per plan step (`EXPLAIN QUERY PLAN`).
pub fn query_plans(conn: &Connection) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for (name, sql, params) in [
        ("status events", STATUS_EVENTS, 0),
        ("status devices", STATUS_DEVICES, 0),
        ("count all", COUNT_ALL, 0),
        ("count event", COUNT_EVENT, 1),
        ("stream event", STREAM_EVENT, 1),
        ("stream all", STREAM_ALL, 0),
        ("expired", EXPIRED, 3),
        ("expired quarantine", EXPIRED_QUARANTINE, 3),
    ] {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let values: Vec<rusqlite::types::Value> = [
            rusqlite::types::Value::Text("e".into()),
            rusqlite::types::Value::Integer(0),
            rusqlite::types::Value::Integer(1),
        ][..params]
            .to_vec();
        let lines: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(values), |r| {
                r.get::<_, String>(3)
            })?
            .collect::<rusqlite::Result<_>>()?;
        out.push((name, lines.join("\n")));
    }
    Ok(out)
}

/// Counts per event and per device, from the indexes.
pub fn status(
    conn: &Connection,
) -> Result<(
    Vec<crate::admin::EventCount>,
    Vec<crate::admin::DeviceCount>,
)> {
    use crate::admin::{DeviceCount, EventCount};
    let mut stmt = conn.prepare(STATUS_EVENTS)?;
    let events = stmt
        .query_map([], |r| {
            Ok(EventCount {
                id: r.get(0)?,
                entries: r.get::<_, i64>(1)? as u64,
                quarantined: r.get::<_, i64>(2)? as u64,
                deleted: r.get::<_, i64>(3)? as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(STATUS_DEVICES)?;
    let devices = stmt
        .query_map([], |r| {
            Ok(DeviceCount {
                name: r.get(0)?,
                event: r.get(1)?,
                entries: r.get::<_, i64>(2)? as u64,
                revoked: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((events, devices))
}

/// How many entries are held (of one event, or all).
pub fn count_entries(conn: &Connection, event: Option<&str>) -> Result<u64> {
    let n: i64 = match event {
        Some(e) => conn.query_row(COUNT_EVENT, [e], |r| r.get(0))?,
        None => conn.query_row(COUNT_ALL, [], |r| r.get(0))?,
    };
    Ok(n as u64)
}

/// Streams the stored entries (of one event, or all event by event), oldest first, one row at a
/// time, in index order.
pub fn for_each_entry(
    conn: &Connection,
    event: Option<&str>,
    f: &mut dyn FnMut(crate::store::StoredEntry) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare(if event.is_some() {
        STREAM_EVENT
    } else {
        STREAM_ALL
    })?;
    let mut rows = match event {
        Some(e) => stmt.query([e])?,
        None => stmt.query([])?,
    };
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        f(crate::store::StoredEntry {
            env: sealbox_protocol::EntryEnvelope {
                id: uuid::Uuid::parse_str(&id)
                    .map_err(|_| crate::HoError::Config("an entry id is damaged".into()))?,
                event_id: r.get(1)?,
                captured_at_ms: r.get(2)?,
                consent_version: r.get(3)?,
                consent_sha256: r.get(4)?,
                sealed: r.get(5)?,
            },
            device: r.get(6)?,
        })?;
    }
    Ok(())
}

/// The audit chain's last row, `(seq, hash)`.
pub fn audit_last(conn: &Connection) -> Result<Option<(i64, String)>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Appends an audit row made by [`crate::audit::next_row`]; call it inside the transaction
/// whose effect it records.
pub fn audit_append(
    conn: &Connection,
    at_ms: i64,
    action: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    let row = crate::audit::next_row(audit_last(conn)?, at_ms, action, detail);
    conn.execute(
        "INSERT INTO audit (seq, at_ms, action, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![row.seq, row.at_ms, row.action, row.detail, row.prev_hash, row.hash],
    )?;
    Ok(())
}

/// Streams the audit chain in order.
pub fn audit_rows(
    conn: &Connection,
    f: &mut dyn FnMut(crate::audit::AuditRow) -> bool,
) -> Result<()> {
    let mut stmt =
        conn.prepare("SELECT seq, at_ms, action, detail, prev_hash, hash FROM audit ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let row = crate::audit::AuditRow {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            action: r.get(2)?,
            detail: r.get(3)?,
            prev_hash: r.get(4)?,
            hash: r.get(5)?,
        };
        if !f(row) {
            break;
        }
    }
    Ok(())
}

/// Copies the live database file to `dst` with SQLite's online backup, in one step (so the copy
/// is one consistent snapshot even while `serve` writes), retrying while it is busy.
pub fn snapshot_file(src: &Path, dst: &Path) -> Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    let from = rusqlite::Connection::open(src)?;
    from.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut to = rusqlite::Connection::open(dst)?;
    {
        let b = Backup::new(&from, &mut to)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                _ => {
                    return Err(crate::HoError::Storage(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the database stayed busy for a minute".into()),
                    )))
                }
            }
        }
    }
    // One self-contained file.
    to.query_row("PRAGMA journal_mode = DELETE", [], |r| {
        r.get::<_, String>(0)
    })?;
    Ok(())
}

/// A database file's integrity check, row counts of every table and the audit chain's last
/// hash, opened read-only.
pub fn file_counts(
    path: &Path,
) -> Result<(
    Connection,
    String,
    std::collections::BTreeMap<String, u64>,
    String,
)> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = std::collections::BTreeMap::new();
    for t in tables {
        let n: i64 = conn.query_row(
            &format!("SELECT count(*) FROM \"{}\"", t.replace('"', "\"\"")),
            [],
            |r| r.get(0),
        )?;
        counts.insert(t, n as u64);
    }
    let head = audit_last(&conn)
        .ok()
        .flatten()
        .map(|(_, h)| h)
        .unwrap_or_else(|| sealbox_protocol::audit::GENESIS.to_string());
    Ok((conn, integrity, counts, head))
}

// ---- the console's tables ----
//
// The console's schema has its own version (`console_schema`), apart from `user_version`, so
// the two migrate independently; it is made when the console is first used (`admin add`,
// `serve`), not by every command.

use crate::console::store::{Admin, AuditRow, ExportRequest, Role, SeenReport, SessionRow};
use sealbox_protocol::health::HealthReport;

/// The console schema's version.
pub const CONSOLE_SCHEMA_VERSION: i64 = 2;

const CONSOLE_V1: &str = "
CREATE TABLE console_admins (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,                -- viewer | operator | approver
    password_hash TEXT NOT NULL,       -- Argon2id, PHC string
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE console_device_health (
    device TEXT PRIMARY KEY,
    report TEXT NOT NULL,              -- the last HealthReport, JSON: counts and times only
    seen_at_ms INTEGER NOT NULL
);
CREATE TABLE console_export_requests (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    format TEXT NOT NULL,              -- csv | xlsx
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    decision TEXT,                     -- NULL while open; approved | refused
    decided_by TEXT,
    decided_at_ms INTEGER,
    downloaded_at_ms INTEGER
);
";

/// Version 2: sessions and failed sign-ins in the database (they were in memory), so a restart
/// keeps admins signed in and several servers on one database share them. A session is kept by
/// the SHA-256 of its cookie, never the cookie itself.
const CONSOLE_V2: &str = "
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    admin TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
CREATE TABLE console_sign_in_failures (
    key_sha256 TEXT PRIMARY KEY,       -- of 'account:NAME' or 'address:IP'
    failures INTEGER NOT NULL,
    since_ms INTEGER NOT NULL
);
";

/// Brings the console's tables to [`CONSOLE_SCHEMA_VERSION`].
pub fn console_migrate(conn: &Connection) -> Result<()> {
    use rusqlite::OptionalExtension;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS console_schema (version INTEGER NOT NULL);")?;
    let version: Option<i64> = conn
        .query_row("SELECT max(version) FROM console_schema", [], |r| r.get(0))
        .optional()?
        .flatten();
    let version = version.unwrap_or(0);
    if version > CONSOLE_SCHEMA_VERSION {
        return Err(crate::error::HoError::Config(format!(
            "the console's tables have version {version}, newer than this program understands ({CONSOLE_SCHEMA_VERSION}); update Sealbox"
        )));
    }
    for (v, sql) in [(1, CONSOLE_V1), (2, CONSOLE_V2)] {
        if version < v {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {sql} INSERT INTO console_schema (version) VALUES ({v}); COMMIT;"
            ))?;
        }
    }
    Ok(())
}

/// Keeps `report` as `device`'s last, seen at `now_ms`.
pub fn record_health(
    conn: &Connection,
    device: &str,
    report: &HealthReport,
    now_ms: i64,
) -> Result<()> {
    let json =
        serde_json::to_string(report).map_err(|e| crate::error::HoError::Config(e.to_string()))?;
    conn.execute(
        "INSERT INTO console_device_health (device, report, seen_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (device) DO UPDATE SET report = excluded.report, seen_at_ms = excluded.seen_at_ms",
        rusqlite::params![device, json, now_ms],
    )?;
    Ok(())
}

/// Every device's last report, by device name.
pub fn health_all(conn: &Connection) -> Result<std::collections::HashMap<String, SeenReport>> {
    let mut stmt = conn.prepare("SELECT device, report, seen_at_ms FROM console_device_health")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (device, json, seen_at_ms) = row?;
        if let Some(seen) = SeenReport::from_json(&json, seen_at_ms) {
            out.insert(device, seen);
        }
    }
    Ok(out)
}

/// Adds an admin; `false` if the name is taken.
pub fn admin_insert(
    conn: &Connection,
    name: &str,
    role: Role,
    password_hash: &str,
    now_ms: i64,
) -> Result<bool> {
    Ok(conn.execute(
        "INSERT OR IGNORE INTO console_admins (name, role, password_hash, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![name, role.as_str(), password_hash, now_ms],
    )? == 1)
}

pub fn admin_get(conn: &Connection, name: &str) -> Result<Option<Admin>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT name, role, password_hash FROM console_admins WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get::<_, String>(1)?, r.get(2)?)),
        )
        .optional()?
        .and_then(|(name, role, password_hash)| Admin::new(name, &role, password_hash)))
}

pub fn admin_count(conn: &Connection) -> Result<u64> {
    Ok(
        conn.query_row("SELECT count(*) FROM console_admins", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

pub fn export_request_insert(conn: &Connection, r: &ExportRequest) -> Result<()> {
    conn.execute(
        "INSERT INTO console_export_requests (id, event_id, format, reason, requested_by, requested_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![r.id, r.event_id, r.format, r.reason, r.requested_by, r.requested_at_ms],
    )?;
    Ok(())
}

const REQUEST_COLUMNS: &str = "id, event_id, format, reason, requested_by, requested_at_ms, decision, decided_by, decided_at_ms, downloaded_at_ms";

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRequest> {
    Ok(ExportRequest {
        id: r.get(0)?,
        event_id: r.get(1)?,
        format: r.get(2)?,
        reason: r.get(3)?,
        requested_by: r.get(4)?,
        requested_at_ms: r.get(5)?,
        decision: r.get(6)?,
        decided_by: r.get(7)?,
        decided_at_ms: r.get(8)?,
        downloaded_at_ms: r.get(9)?,
    })
}

/// The newest requests first (at most 200).
pub fn export_requests(conn: &Connection) -> Result<Vec<ExportRequest>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {REQUEST_COLUMNS} FROM console_export_requests ORDER BY requested_at_ms DESC LIMIT 200"
    ))?;
    let rows = stmt.query_map([], request_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn export_request(conn: &Connection, id: &str) -> Result<Option<ExportRequest>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM console_export_requests WHERE id = ?1"),
            [id],
            request_row,
        )
        .optional()?)
}

/// Records a decision on an open request; `false` if it was no longer open.
pub fn export_request_decide(
    conn: &Connection,
    id: &str,
    decision: &str,
    by: &str,
    now_ms: i64,
) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE console_export_requests SET decision = ?2, decided_by = ?3, decided_at_ms = ?4
         WHERE id = ?1 AND decision IS NULL",
        rusqlite::params![id, decision, by, now_ms],
    )? == 1)
}

/// Marks an approved request downloaded; `false` if it was already (one download only).
pub fn export_request_downloaded(conn: &Connection, id: &str, now_ms: i64) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE console_export_requests SET downloaded_at_ms = ?2
         WHERE id = ?1 AND decision = 'approved' AND downloaded_at_ms IS NULL",
        rusqlite::params![id, now_ms],
    )? == 1)
}

/// Entries per hour of capture for `event` (hour start in ms, count): capture times only.
pub fn entries_per_hour(conn: &Connection, event: &str) -> Result<Vec<(i64, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT (captured_at_ms / 3600000) * 3600000 AS h, count(*) FROM entries
         WHERE event_id = ?1 GROUP BY h ORDER BY h",
    )?;
    let rows = stmt.query_map([event], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The newest `limit` audit rows, newest first.
pub fn audit_tail(conn: &Connection, limit: usize) -> Result<Vec<AuditRow>> {
    let mut stmt =
        conn.prepare("SELECT seq, at_ms, action, detail FROM audit ORDER BY seq DESC LIMIT ?1")?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(AuditRow {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            action: r.get(2)?,
            detail: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stores a new session; sessions idle since before `expired_before_ms` are dropped with it.
pub fn session_insert(conn: &Connection, s: &SessionRow, expired_before_ms: i64) -> Result<()> {
    conn.execute(
        "DELETE FROM console_sessions WHERE last_seen_ms < ?1",
        [expired_before_ms],
    )?;
    conn.execute(
        "INSERT INTO console_sessions (id_sha256, admin, role, csrf, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![s.id_sha256, s.admin, s.role.as_str(), s.csrf, s.last_seen_ms],
    )?;
    Ok(())
}

/// The session, renewed to `now_ms`, if it was seen after `expired_before_ms`; an expired one
/// is deleted.
pub fn session_touch(
    conn: &Connection,
    id_sha256: &str,
    now_ms: i64,
    expired_before_ms: i64,
) -> Result<Option<SessionRow>> {
    use rusqlite::OptionalExtension;
    let row = conn
        .query_row(
            "UPDATE console_sessions SET last_seen_ms = max(last_seen_ms, ?2)
             WHERE id_sha256 = ?1 AND last_seen_ms >= ?3
             RETURNING admin, role, csrf, last_seen_ms",
            rusqlite::params![id_sha256, now_ms, expired_before_ms],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )
        .optional()?;
    if row.is_none() {
        conn.execute(
            "DELETE FROM console_sessions WHERE id_sha256 = ?1",
            [id_sha256],
        )?;
    }
    Ok(row.and_then(|(admin, role, csrf, last_seen_ms)| {
        SessionRow::new(id_sha256, admin, &role, csrf, last_seen_ms)
    }))
}

pub fn session_delete(conn: &Connection, id_sha256: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM console_sessions WHERE id_sha256 = ?1",
        [id_sha256],
    )?;
    Ok(())
}

/// Failed sign-ins for `key_sha256` counted since a time after `window_start_ms`.
pub fn sign_in_failures(conn: &Connection, key_sha256: &str, window_start_ms: i64) -> Result<u32> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT failures FROM console_sign_in_failures WHERE key_sha256 = ?1 AND since_ms >= ?2",
            rusqlite::params![key_sha256, window_start_ms],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u32)
}

/// Counts a failed sign-in; a count older than `window_start_ms` starts again.
pub fn sign_in_failed(
    conn: &Connection,
    key_sha256: &str,
    now_ms: i64,
    window_start_ms: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO console_sign_in_failures (key_sha256, failures, since_ms) VALUES (?1, 1, ?2)
         ON CONFLICT (key_sha256) DO UPDATE SET
           failures = CASE WHEN since_ms < ?3 THEN 1 ELSE failures + 1 END,
           since_ms = CASE WHEN since_ms < ?3 THEN excluded.since_ms ELSE since_ms END",
        rusqlite::params![key_sha256, now_ms, window_start_ms],
    )?;
    Ok(())
}

pub fn sign_in_clear(conn: &Connection, key_sha256: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM console_sign_in_failures WHERE key_sha256 = ?1",
        [key_sha256],
    )?;
    Ok(())
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

    /// Event `e` and devices `d0`..`d3` enrolled in it.
    fn enrol(conn: &Connection) {
        conn.execute_batch(
            "INSERT INTO events (id, config, created_at_ms) VALUES ('e', '{}', 0);
             INSERT INTO devices (name, event_id, token_sha256, verifying_key, enrolled_at_ms)
             VALUES ('d0', 'e', 't0', 'k', 0), ('d1', 'e', 't1', 'k', 0),
                    ('d2', 'e', 't2', 'k', 0), ('d3', 'e', 't3', 'k', 0);",
        )
        .unwrap();
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
        enrol(&conn);
        let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        let held = envelope();
        ingest(
            &mut conn,
            "d0",
            &batch(vec![held.clone()]),
            Source::Sync,
            &key,
            1,
        )
        .unwrap();

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
        let out = ingest_group(&mut conn, &group, Source::Sync, &key, 2);
        assert_eq!(out.len(), 4);
        let Stored {
            receipt: r1,
            fresh: fresh1,
            ..
        } = out[0].as_ref().unwrap();
        assert!(fresh1);
        assert!(matches!(&out[1], Err(IngestError::Conflict(ids)) if ids == &vec![held.id]));
        let r3 = &out[2].as_ref().unwrap().receipt;
        let Stored {
            receipt: r1_again,
            fresh: fresh_again,
            ..
        } = out[3].as_ref().unwrap();
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
        enrol(&conn);
        let other = open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        let (a, b) = (batch(vec![envelope()]), batch(vec![envelope()]));
        let out = ingest_group(&mut conn, &[("d1", &a), ("d2", &b)], Source::Sync, &key, 1);
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
        let out = ingest_group(&mut conn, &[("d1", &a), ("d2", &b)], Source::Sync, &key, 1);
        assert!(out.iter().all(|r| r.is_ok()));
        assert_eq!(count(&conn, "SELECT count(*) FROM entries"), 2);
    }
}
