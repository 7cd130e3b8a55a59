//! Head office's audit log: append-only and hash-chained like the device's (same hash, from
//! `sealbox-protocol`). It records imports, exports, purges, deletions, revocations and events:
//! ids, counts and salted hashes, never a visitor's value.
//!
//! The chain is made and checked here; the rows are stored by the backend
//! ([`crate::store::Store::audit_append`], [`crate::store::Store::audit_verify`]).

use crate::error::Result;
use rusqlite::Connection;
use sealbox_protocol::audit::{row_hash, GENESIS};

/// One row of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: i64,
    pub action: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The row that follows `last` (`(seq, hash)` of the chain's last row, if any).
pub fn next_row(
    last: Option<(i64, String)>,
    at_ms: i64,
    action: &str,
    detail: &serde_json::Value,
) -> AuditRow {
    let (seq, prev) = last
        .map(|(s, h)| (s + 1, h))
        .unwrap_or((1, GENESIS.to_string()));
    let detail = detail.to_string();
    let hash = row_hash(&prev, seq, at_ms, action, &detail);
    AuditRow {
        seq,
        at_ms,
        action: action.to_string(),
        detail,
        prev_hash: prev,
        hash,
    }
}

/// Checks the chain row by row, as they are streamed in order.
#[derive(Debug)]
pub struct Chain {
    prev: String,
    expected: i64,
    rows: u64,
    broken: Option<i64>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            prev: GENESIS.to_string(),
            expected: 1,
            rows: 0,
            broken: None,
        }
    }
}

impl Chain {
    /// Takes the next row; false once the chain is broken (no need to read on).
    pub fn push(&mut self, r: &AuditRow) -> bool {
        if r.seq != self.expected
            || r.prev_hash != self.prev
            || r.hash != row_hash(&r.prev_hash, r.seq, r.at_ms, &r.action, &r.detail)
        {
            self.broken = Some(r.seq);
            return false;
        }
        self.prev = r.hash.clone();
        self.expected += 1;
        self.rows += 1;
        true
    }

    /// `(rows, first broken row)`.
    pub fn finish(self) -> (u64, Option<i64>) {
        (self.rows, self.broken)
    }
}

/// Appends a row to an embedded database; call it inside the transaction whose effect it
/// records.
pub fn append(
    conn: &Connection,
    at_ms: i64,
    action: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    crate::store::sqlite::audit_append(conn, at_ms, action, detail)
}

/// `(rows, first broken row)` of an embedded database's chain.
pub fn verify(conn: &Connection) -> Result<(u64, Option<i64>)> {
    let mut chain = Chain::default();
    crate::store::sqlite::audit_rows(conn, &mut |r| chain.push(&r))?;
    Ok(chain.finish())
}
