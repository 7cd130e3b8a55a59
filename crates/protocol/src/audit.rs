//! The hash that chains audit rows, shared by device and head office so both logs are checked
//! the same way: each row's hash covers the previous row's hash and the row's fields.

use sha2::{Digest, Sha256};

/// The hash before the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 (hex) over the previous hash and the row's fields, each length-prefixed.
pub fn row_hash(prev: &str, seq: i64, at_ms: i64, action: &str, detail: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &seq.to_string(), &at_ms.to_string(), action, detail] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}
