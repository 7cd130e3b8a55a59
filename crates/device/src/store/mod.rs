//! The SQLCipher database: opened with a raw 256-bit key, WAL, `synchronous=FULL`,
//! `secure_delete=ON` (freed pages are zeroed), temp files in memory, and SQLCipher's memory
//! security on.
//!
//! Each table family has one home here: [`entries`] (entries and their tombstones: every state
//! an entry goes through), [`outbox`] (the sync batches in flight).
//! The audit log lives in [`crate::audit`], settings below.

pub mod entries;
pub mod outbox;

use crate::error::{DeviceError, Result};
use rusqlite::{Connection, OpenFlags};
use sealbox_protocol::Secret32;
use std::path::Path;
use zeroize::Zeroizing;

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 6;

const SCHEMA: &str = "
CREATE TABLE settings (
    k TEXT PRIMARY KEY,
    v BLOB NOT NULL
);
-- One row per registration not yet acknowledged by head office.
CREATE TABLE entries (
    id TEXT PRIMARY KEY,             -- UUIDv7
    event_id TEXT NOT NULL,
    captured_at_ms INTEGER NOT NULL,
    consent_version TEXT NOT NULL,
    consent_sha256 TEXT NOT NULL,
    sealed BLOB NOT NULL,            -- age-encrypted to head office; unreadable here
    summary TEXT NOT NULL,           -- display summary (masked / plain), JSON
    exported_batch TEXT,             -- NULL while pending; the batch id once exported
    exported_at_ms INTEGER
);
-- What remains of an entry once head office's receipt was verified and it was erased.
CREATE TABLE tombstones (
    id TEXT PRIMARY KEY,
    acknowledged_at_ms INTEGER NOT NULL,
    receipt_id TEXT NOT NULL
);
-- Append-only, hash-chained.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
";

/// Version 2: the batch in flight to head office, recorded before it is sent.
const SCHEMA_V2: &str = "
CREATE TABLE outbox (
    batch_id TEXT PRIMARY KEY,
    ids TEXT NOT NULL,               -- JSON array of the entry ids in the batch
    created_at_ms INTEGER NOT NULL
);
";

/// Version 3: version 1's `entries_pending` index goes. Every commit of an entry wrote (and
/// SQLCipher encrypted and authenticated) one more 4 KiB page for it, and no query needs it: a
/// device holds at most a few thousand entries, read in id order through the primary key.
const SCHEMA_V3: &str = "DROP INDEX IF EXISTS entries_pending;";

/// Version 4: quarantine, for an entry head office refused on its own (with its reason code).
const SCHEMA_V4: &str = "
ALTER TABLE entries ADD COLUMN quarantine_code TEXT;
ALTER TABLE entries ADD COLUMN quarantined_at_ms INTEGER;
";

/// Version 5: the display summary sealed to the summary key (see [`crate::summary`]); `summary`
/// then holds ''. Older rows keep their plain summary until the first PIN entry seals them.
const SCHEMA_V5: &str = "ALTER TABLE entries ADD COLUMN summary_sealed BLOB;";

/// Version 6: the quarantined entries' ids, a partial index. A sync counts what it will send
/// from the primary key's index and this one instead of reading every row (a full scan of
/// 10,000 entries decrypts about 1,800 pages); an ordinary entry is not in it, so adding one
/// writes no page more.
const SCHEMA_V6: &str =
    "CREATE INDEX entries_quarantined ON entries (id) WHERE quarantine_code IS NOT NULL;";

/// How a database is keyed.
pub enum Keying<'a> {
    /// A raw 256-bit key: no key derivation (what Sealbox uses).
    Raw(&'a Secret32),
    /// A passphrase run through SQLCipher's PBKDF2 (only to compare speed).
    Passphrase(&'a str),
    /// No encryption (only the plain-SQLite baseline of the benchmarks).
    None,
}

/// Opens (or with `create`, creates) a database and checks the key by reading from it.
/// A wrong key and a damaged file both show up as SQLite's "not a database": the caller tells
/// them apart with the key id in device.json.
pub fn open(path: &Path, keying: Keying<'_>, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    // Without this SQLCipher prints "hmac check failed" to stderr on a wrong key.
    let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
    match keying {
        Keying::Raw(key) => {
            conn.execute_batch("PRAGMA cipher_memory_security = ON;")?;
            let sql = Zeroizing::new(format!("PRAGMA key = \"x'{}'\";", &*key.to_hex()));
            conn.execute_batch(&sql)?;
        }
        Keying::Passphrase(p) => {
            conn.pragma_update(None, "key", p)?;
        }
        Keying::None => {}
    }
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Err(DeviceError::Corrupt)
        }
        Err(e) => return Err(e.into()),
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DeviceError::Corrupt);
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA secure_delete = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA foreign_keys = ON;
         PRAGMA journal_size_limit = 1048576;",
    )?;
    Ok(conn)
}

/// Copies every WAL frame into the database and truncates `sealbox.db-wal` to nothing. Called
/// after each erase: until then the old versions of the erased rows' pages stay in the WAL
/// (`secure_delete` zeroes the database's pages, not the WAL's older frames). Returns false when
/// another connection's read kept it from completing (within the busy timeout); the next erase
/// or checkpoint takes the frames then. `journal_size_limit` keeps the WAL small in between.
pub fn truncate_wal(conn: &Connection) -> Result<bool> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    Ok(busy == 0)
}

/// Creates the schema in a new database, or checks an existing one's version.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(DeviceError::Enrolment(format!(
            "the database has schema version {version}, newer than this program understands ({SCHEMA_VERSION}); update Sealbox"
        )));
    }
    if version < SCHEMA_VERSION {
        let tx = conn.transaction()?;
        if version < 1 {
            tx.execute_batch(SCHEMA)?;
        }
        if version < 2 {
            tx.execute_batch(SCHEMA_V2)?;
        }
        if version < 3 {
            tx.execute_batch(SCHEMA_V3)?;
        }
        if version < 4 {
            tx.execute_batch(SCHEMA_V4)?;
        }
        if version < 5 {
            tx.execute_batch(SCHEMA_V5)?;
        }
        if version < 6 {
            tx.execute_batch(SCHEMA_V6)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    Ok(())
}

/// The schema version the open database carries (after [`migrate`], [`SCHEMA_VERSION`]).
pub fn schema_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// `PRAGMA integrity_check` is `ok`.
pub fn integrity_ok(conn: &Connection) -> Result<bool> {
    let s: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    Ok(s == "ok")
}

pub(crate) fn get_setting(conn: &Connection, k: &str) -> Result<Option<Vec<u8>>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT v FROM settings WHERE k = ?1", [k], |r| r.get(0))
        .optional()?)
}

pub(crate) fn set_setting(conn: &Connection, k: &str, v: &[u8]) -> Result<()> {
    conn.execute(
        "INSERT INTO settings (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        rusqlite::params![k, v],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 2 database (with its `entries_pending` index and an entry) reaches version 3:
    /// the index is gone, the entry is intact and the file is sound.
    #[test]
    fn version_2_migrates_to_3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        let key = Secret32::from_bytes([7u8; 32]);
        {
            let conn = open(&path, Keying::Raw(&key), true).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(SCHEMA_V2).unwrap();
            conn.execute_batch(
                "CREATE INDEX entries_pending ON entries (exported_batch, id);
                 INSERT INTO entries (id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, summary)
                 VALUES ('0192', 'e', 1, 'v', 'h', x'00', '{}');
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let mut conn = open(&path, Keying::Raw(&key), false).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'entries_pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert!(integrity_ok(&conn).unwrap());
        // A second migration is a no-op; a newer file is refused, not rewritten.
        migrate(&mut conn).unwrap();
        conn.execute_batch("PRAGMA user_version = 99;").unwrap();
        assert!(migrate(&mut conn).is_err());
    }

    /// A version 3 database reaches version 4: entries keep their state, none is quarantined,
    /// and one can be quarantined now.
    #[test]
    fn version_3_migrates_to_4() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        let key = Secret32::from_bytes([7u8; 32]);
        {
            let conn = open(&path, Keying::Raw(&key), true).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(SCHEMA_V2).unwrap();
            conn.execute_batch(
                "INSERT INTO entries (id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, summary, exported_batch, exported_at_ms)
                 VALUES ('01920000-0000-7000-8000-000000000001', 'e', 1, 'v', 'h', x'00', '{}', '01930000-0000-7000-8000-00000000000a', 5),
                        ('01920000-0000-7000-8000-000000000003', 'e', 3, 'v', 'h', x'00', '{}', NULL, NULL);
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let mut conn = open(&path, Keying::Raw(&key), false).unwrap();
        migrate(&mut conn).unwrap();
        let c = entries::counts(&conn).unwrap();
        assert_eq!((c.pending, c.exported, c.refused), (1, 1, 0));
        let id = "01920000-0000-7000-8000-000000000003".parse().unwrap();
        assert!(entries::quarantine(&conn, id, "entry_too_large", 9).unwrap());
        assert!(!entries::quarantine(&conn, id, "entry_too_large", 9).unwrap());
        let c = entries::counts(&conn).unwrap();
        assert_eq!((c.pending, c.exported, c.refused), (0, 1, 1));
        assert!(integrity_ok(&conn).unwrap());
    }

    /// A version 4 database (the current schema before sealed summaries) reaches version 5: its
    /// entries keep their plain summaries, listed as such until the device seals them.
    #[test]
    fn version_4_migrates_to_5() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        let key = Secret32::from_bytes([7u8; 32]);
        {
            let conn = open(&path, Keying::Raw(&key), true).unwrap();
            for sql in [SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "INSERT INTO entries (id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, summary)
                 VALUES ('01920000-0000-7000-8000-000000000001', 'e', 1, 'v', 'h', x'00', '{\"name\":\"张*\"}');
                 PRAGMA user_version = 4;",
            )
            .unwrap();
        }
        let mut conn = open(&path, Keying::Raw(&key), false).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let plain = entries::plain_summaries(&conn).unwrap();
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].1.as_str(), "{\"name\":\"张*\"}");
        let id = plain[0].0;
        entries::set_sealed_summary(&conn, id, b"sealed").unwrap();
        assert!(entries::plain_summaries(&conn).unwrap().is_empty());
        let listed = entries::list(&conn, 10, &|_| None).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(
            listed[0].summary.is_empty(),
            "a sealed summary needs the key"
        );
        let listed = entries::list(&conn, 10, &|s| {
            (s == b"sealed").then(|| zeroize::Zeroizing::new(b"{\"name\":\"x\"}".to_vec()))
        })
        .unwrap();
        assert_eq!(listed[0].summary["name"], "x");
        assert!(integrity_ok(&conn).unwrap());
    }

    /// A new database never carries the dropped index.
    #[test]
    fn new_database_has_no_pending_index() {
        let dir = tempfile::tempdir().unwrap();
        let key = Secret32::from_bytes([7u8; 32]);
        let mut conn = open(&dir.path().join("new.db"), Keying::Raw(&key), true).unwrap();
        migrate(&mut conn).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        // The partial index holds quarantined entries only: an ordinary entry's commit writes
        // no page for it.
        assert_eq!(
            names,
            vec![
                "entries_quarantined".to_string(),
                "sqlite_autoindex_entries_1".to_string()
            ]
        );
    }

    /// A version 5 database reaches version 6: a quarantined entry is found through the new
    /// partial index, and what a sync will send is counted from the indexes alone.
    #[test]
    fn version_5_migrates_to_6() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.db");
        let key = Secret32::from_bytes([7u8; 32]);
        {
            let conn = open(&path, Keying::Raw(&key), true).unwrap();
            for sql in [SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "INSERT INTO entries (id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, summary, exported_batch, quarantine_code)
                 VALUES ('01920000-0000-7000-8000-000000000001', 'e', 1, 'v', 'h', x'00', '', NULL, NULL),
                        ('01920000-0000-7000-8000-000000000002', 'e', 2, 'v', 'h', x'00', '', 'b', NULL),
                        ('01920000-0000-7000-8000-000000000003', 'e', 3, 'v', 'h', x'00', '', NULL, 'entry_too_large');
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let mut conn = open(&path, Keying::Raw(&key), false).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 6);
        assert_eq!(entries::count_sendable_all(&conn).unwrap(), 2);
        let id = "01920000-0000-7000-8000-000000000001".parse().unwrap();
        assert!(entries::quarantine(&conn, id, "refused", 9).unwrap());
        assert_eq!(entries::count_sendable_all(&conn).unwrap(), 1);
        let c = entries::counts(&conn).unwrap();
        assert_eq!(c.pending + c.exported, 1, "the same as the full count");
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                entries::COUNT_SENDABLE_SQL
            ))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("COVERING INDEX sqlite_autoindex_entries_1"))
                && plan.iter().any(|p| p.contains("entries_quarantined"))
                && !plan.iter().any(|p| p == "SCAN entries"),
            "{plan:?}"
        );
        assert!(integrity_ok(&conn).unwrap());
    }
}
