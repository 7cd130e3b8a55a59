//! Everything a Sealbox device does, testable without a window.
//!
//! The kiosk app and the `sealbox` CLI are two faces of this one library, on the same data
//! directory and keychain. A visitor's values are sealed to head office on submit (the device
//! cannot read them back) and stored in a SQLCipher database whose random 256-bit key lives only
//! in the OS keychain, with an escrow copy sealed to head office beside the database.
//!
//! Layout:
//! - [`device`]: the [`Device`] API: enrol, open, add, status, list, PIN, audit, recover.
//! - [`kiosk`]: the kiosk app's behaviour (screens, submit, manager session), window-free.
//! - [`keychain`]: the [`KeyStore`] trait and the OS keychain behind it.
//! - [`store`]: opening the SQLCipher database (raw key, WAL, `synchronous=FULL`,
//!   `secure_delete`) and its schema.
//! - [`seal`]: age encryption of payloads and escrow to head office.
//! - [`sync`]: the HTTPS client (head office's CA pinned) and sync with verified erase.
//! - [`sync_loop`]: the background loop the app runs: send when there is something to send,
//!   back off with jitter while offline or refused.
//! - [`batch`]: export of an encrypted, signed batch file and import of its receipt.
//! - [`audit`]: the append-only, hash-chained audit log.
//! - [`pin`]: the manager PIN (Argon2id) and its rate limit (staff codes are checked the same way).
//! - [`scan`]: badge scans (vCard, MECARD, the event's own format) read into field values.
//! - [`files`]: data-dir layout, atomic writes and shredding.
//! - [`process`]: no core dumps for the kiosk and the CLI.
//! - [`summary`]: display summaries sealed to a key that only the manager PIN (or head
//!   office's escrow) opens.
//! - [`error`]: [`DeviceError`] with stable codes.

pub mod audit;
pub mod batch;
pub mod device;
pub mod error;
pub mod files;
pub mod keychain;
pub mod kiosk;
pub mod pin;
pub mod process;
pub mod scan;
pub mod seal;
pub mod store;
pub mod summary;
pub mod sync;
pub mod sync_loop;

pub use device::{Device, EnrolReport, ListedEntry, Recovery, Status};
pub use error::DeviceError;
pub use keychain::{KeyStore, OsKeychain};
pub use sealbox_protocol as protocol;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
