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
