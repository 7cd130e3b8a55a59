//! Sealbox's shared wire and file formats.
//!
//! Everything that crosses a boundary between a device and head office lives here, with its
//! validation, and nothing else: this crate does no I/O, so both sides can depend on it and on
//! nothing of each other.
//!
//! Layout:
//! - [`event`]: the event config a head office writes and devices obey, and its validation
//!   (minimum necessity: every field states its purpose; ID and bank card numbers are refused
//!   unless justified).
//! - [`entry`]: validating a visitor's submission against the config, the display summary
//!   (masked / plain / hidden), the sealed payload's plaintext and the envelope that carries it.
//! - [`batch`]: the encrypted, signed batch file carried by a manager.
//! - [`audit`]: the hash that chains audit rows (device and head office).
//! - [`enrolment`]: the enrolment file head office hands to a device (secret).
//! - [`escrow`]: the escrowed database key and the key check value.
//! - [`limits`]: every limit head office applies to an envelope, applied by both sides.
//! - [`sync`]: the sync request and head office's signed receipt.
//! - [`health`]: the device's health report (counts and times only), sent with every sync.
//! - [`rotation`]: head office's statement that a new key signs its receipts from now on.
//! - [`staff`]: head office's signed update of an event's staff codes, sent with receipts.
//! - [`secret`]: types for secrets: zeroized on drop, `[redacted]` in `Debug`.
//! - [`i18n`]: the two languages every user-facing string exists in.

pub mod audit;
pub mod batch;
pub mod enrolment;
pub mod entry;
pub mod escrow;
pub mod event;
pub mod health;
pub mod i18n;
pub mod limits;
pub mod rotation;
pub mod secret;
pub mod staff;
pub mod sync;

pub use enrolment::EnrolmentFile;
pub use entry::{EntryEnvelope, EntryError, PayloadPlaintext, ValidEntry};
pub use event::{ConfigError, EventConfig, FieldKind, FieldSpec};
pub use i18n::{Lang, Text};
pub use secret::{DeviceToken, Secret32};

/// SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
