//! Sealbox head office: the trust root devices are enrolled from, and the server that receives
//! their entries and answers with signed receipts once they are durably stored.
//!
//! Head office never depends on device code: both sides share only `sealbox-protocol`.
//!
//! Layout:
//! - [`keys`]: head office's keys in its data directory: the age identity (encrypted at rest
//!   under the admin's passphrase), the Ed25519 receipt-signing key (rotatable) and the TLS CA
//!   and server keys, both sealed to the identity and unlocked once when `serve` starts.
//! - [`recovery`]: the recovery kit: the identity split into k-of-n shares, and rebuilding it.
//! - [`backup`]: encrypted, verified backups of the data directory, and their restore.
//! - [`audit`]: head office's own hash-chained audit log.
//! - [`store`]: head office's storage, one interface over the embedded SQLite database (the
//!   default) and PostgreSQL: events, devices (token hashes and verifying keys only), entries as
//!   received (sealed), tombstones, the quarantine, the audit chain. The one home of its SQL.
//! - [`db`]: the embedded backend's functions under their former name.
//! - [`admin`]: the admin commands: init, event create, enroll, escrow open, status.
//! - [`server`]: the axum + rustls sync server; takes a listener and a shutdown future.
//! - [`crm`]: CSV/XLSX hand-off (masked unless asked), retention purge, deletion requests.
//! - [`console`]: the head office console (HTTPS, its own listener), admin accounts, and the
//!   store of device health reports and export approvals.
//! - [`config`]: defaults → `config.toml` → `SEALBOX_HO_*` environment.
//! - [`error`]: [`HoError`] with stable codes.

pub mod admin;
pub mod audit;
pub mod backup;
pub mod config;
pub mod console;
pub mod crm;
pub mod db;
pub mod duplicates;
pub mod error;
pub mod keys;
pub mod recovery;
pub mod server;
pub mod store;

pub use error::HoError;
pub use keys::Passphrase;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
