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
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}
