//! Head office's audit log: append-only and hash-chained like the device's (same hash, from
//! `sealbox-protocol`). It records imports, exports, purges, deletions, revocations and events:
//! ids, counts and salted hashes, never a visitor's value.

use crate::error::Result;
use rusqlite::{Connection, OptionalExtension};
use sealbox_protocol::audit::{row_hash, GENESIS};

/// Appends a row; call it inside the transaction whose effect it records.
pub fn append(
    conn: &Connection,
    at_ms: i64,
    action: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = last
        .map(|(s, h)| (s + 1, h))
        .unwrap_or((1, GENESIS.to_string()));
    let detail = detail.to_string();
    let hash = row_hash(&prev, seq, at_ms, action, &detail);
    conn.execute(
        "INSERT INTO audit (seq, at_ms, action, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![seq, at_ms, action, detail, prev, hash],
    )?;
    Ok(())
}

/// `(rows, first broken row)`.
pub fn verify(conn: &Connection) -> Result<(u64, Option<i64>)> {
    let mut stmt =
        conn.prepare("SELECT seq, at_ms, action, detail, prev_hash, hash FROM audit ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let (mut prev, mut expected, mut n) = (GENESIS.to_string(), 1i64, 0u64);
    while let Some(r) = rows.next()? {
        let (seq, at, action, detail, prev_hash, hash): (i64, i64, String, String, String, String) = (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        );
        if seq != expected
            || prev_hash != prev
            || hash != row_hash(&prev_hash, seq, at, &action, &detail)
        {
            return Ok((n, Some(seq)));
        }
        prev = hash;
        expected += 1;
        n += 1;
    }
    Ok((n, None))
}
