//! The escrowed database key: sealed to head office at enrolment and kept beside the database,
//! so head office can recover a device whose keychain was lost. Opened, it is secret.

use crate::secret::Secret32;
use serde::{Deserialize, Serialize};

pub const ESCROW_FORMAT: &str = "sealbox-escrow/1";

/// What `escrow.age` holds once head office opens it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowRecord {
    pub format: String,
    pub store_id: String,
    pub device_name: String,
    pub event_id: String,
    /// [`key_id`] of `key`.
    pub key_id: String,
    pub key: Secret32,
}

/// A check value of a database key: the first 16 hex digits of SHA-256 over a fixed label and
/// the key. It tells a wrong key from a damaged file without revealing anything of the key.
pub fn key_id(key: &Secret32) -> String {
    let mut data = b"sealbox-key-id/1".to_vec();
    data.extend_from_slice(key.expose());
    let id = crate::sha256_hex(&data)[..16].to_string();
    zeroize::Zeroize::zeroize(&mut data);
    id
}

pub const SUMMARY_ESCROW_FORMAT: &str = "sealbox-summary-escrow/1";

/// What `summary-escrow.age` holds once head office opens it: the key that opens the device's
/// display summaries, for `sealbox pin reset` when the manager PIN is forgotten. Secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryEscrowRecord {
    pub format: String,
    pub store_id: String,
    pub device_name: String,
    pub event_id: String,
    /// The age X25519 secret (`AGE-SECRET-KEY-1…`).
    pub summary_key: String,
}

impl std::fmt::Debug for SummaryEscrowRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummaryEscrowRecord")
            .field("store_id", &self.store_id)
            .field("device_name", &self.device_name)
            .field("summary_key", &"[redacted]")
            .finish()
    }
}

impl Drop for SummaryEscrowRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.summary_key);
    }
}
