//! The device's audit log: append-only (triggers refuse UPDATE and DELETE) and hash-chained, each
//! row holding the hash of the one before, so an edited, removed or reordered row is detected.
//! It records PIN use, exports, receipts, erasures, enrolment and recovery: ids and counts,
//! never a field value.

use crate::error::Result;
use rusqlite::{Connection, OptionalExtension};
use sealbox_protocol::audit::row_hash;

pub use sealbox_protocol::audit::GENESIS;

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
    let (seq, prev) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let detail = detail.to_string();
    let hash = row_hash(&prev, seq, at_ms, action, &detail);
    conn.execute(
        "INSERT INTO audit (seq, at_ms, action, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![seq, at_ms, action, detail, prev, hash],
    )?;
    Ok(())
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub rows: u64,
    /// The first row whose content or link does not match, if any.
    pub broken_at: Option<i64>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.broken_at.is_none()
    }
}

/// Walks the whole chain.
pub fn verify(conn: &Connection) -> Result<Verification> {
    let mut stmt =
        conn.prepare("SELECT seq, at_ms, action, detail, prev_hash, hash FROM audit ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let at: i64 = r.get(1)?;
        let action: String = r.get(2)?;
        let detail: String = r.get(3)?;
        let prev_hash: String = r.get(4)?;
        let hash: String = r.get(5)?;
        if seq != expected_seq
            || prev_hash != prev
            || hash != row_hash(&prev_hash, seq, at, &action, &detail)
        {
            return Ok(Verification {
                rows: n,
                broken_at: Some(seq),
            });
        }
        prev = hash;
        expected_seq += 1;
        n += 1;
    }
    Ok(Verification {
        rows: n,
        broken_at: None,
    })
}

/// One audit row as shown to a manager.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: i64,
    pub action: String,
    pub detail: serde_json::Value,
}

/// The newest `limit` rows, newest first.
pub fn recent(conn: &Connection, limit: u32) -> Result<Vec<AuditRow>> {
    let mut stmt =
        conn.prepare("SELECT seq, at_ms, action, detail FROM audit ORDER BY seq DESC LIMIT ?1")?;
    let rows = stmt.query_map([limit], |r| {
        let detail: String = r.get(3)?;
        Ok(AuditRow {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            action: r.get(2)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The oldest row recording `action`, if any.
pub fn first(conn: &Connection, action: &str) -> Result<Option<AuditRow>> {
    Ok(conn
        .query_row(
            "SELECT seq, at_ms, action, detail FROM audit WHERE action = ?1 ORDER BY seq LIMIT 1",
            [action],
            |r| {
                let detail: String = r.get(3)?;
                Ok(AuditRow {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    action: r.get(2)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            },
        )
        .optional()?)
}
