//! Device errors. Each has a stable [`DeviceError::code`] that the kiosk UI branches on; the
//! `Display` text is one line for people, with the next step where there is one. No variant
//! ever carries a visitor's value.

use sealbox_protocol::entry::EntryError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    #[error("this data directory is not enrolled: run `sealbox enroll FILE` with an enrolment file from head office")]
    NotEnrolled,
    #[error("this data directory is already enrolled as device {0:?}; nothing was changed")]
    AlreadyEnrolled(String),
    #[error("{} exists but device.json does not: an enrolment was interrupted or device.json was lost; nothing was changed. After an interrupted enrolment, `sealbox enroll FILE` again cleans up; if the device held registrations, ask head office to open its escrow.age and run `sealbox recover --escrow-key KEYFILE`, which rebuilds device.json", .0.display())]
    OrphanDatabase(PathBuf),
    #[error("the database key is missing from the keychain (key lost); the database is intact and nothing was changed. Ask head office to run `sealbox-headoffice escrow open {}`, then run `sealbox recover --escrow-key KEYFILE`", .0.display())]
    KeyLost(PathBuf),
    #[error("the key in the keychain does not belong to this database (wrong key); nothing was changed. Recover the right key with `sealbox recover --escrow-key KEYFILE`")]
    WrongKey,
    #[error(
        "the database file is damaged or not a Sealbox database (corrupt); it was left untouched"
    )]
    Corrupt,
    #[error("the database file {} is missing while device.json says this device is enrolled; nothing was changed", .0.display())]
    DatabaseMissing(PathBuf),
    #[error("the OS keychain is unavailable ({0}); nothing was changed. On Linux a Secret Service (GNOME Keyring or KWallet) must be running and unlocked")]
    KeychainUnavailable(String),
    #[error(transparent)]
    Invalid(#[from] EntryError),
    #[error("line {line}: {error}; nothing was written")]
    InvalidLine { line: usize, error: EntryError },
    #[error("{0}")]
    Enrolment(String),
    #[error("the escrow key does not belong to this device; nothing was changed")]
    EscrowMismatch,
    #[error("no manager PIN is set: run `sealbox pin set`")]
    PinNotSet,
    #[error("wrong PIN")]
    PinWrong,
    #[error("too many wrong PINs: try again in {0} s")]
    PinLocked(u64),
    #[error("a PIN must be 6 to 12 digits and not a trivial sequence")]
    PinWeak,
    #[error("sealing failed: {0}")]
    Seal(String),
    #[error("head office cannot be reached ({0}); the entries stay on this device and will be sent later")]
    Offline(String),
    #[error("refused to connect: the server's certificate is not head office's, or is for another name, or expired ({0}); nothing was sent or erased")]
    TlsRefused(String),
    #[error(
        "head office refused the request: {message} (HTTP {status}, {code}); nothing was erased"
    )]
    Server {
        status: u16,
        code: String,
        message: String,
        /// Entries head office refused on their own (with its reason code for each).
        refused: Vec<sealbox_protocol::sync::RefusedEntry>,
        /// How long head office asked to wait (429's Retry-After), in seconds.
        retry_after_s: Option<u64>,
    },
    #[error("another sync is running on this device (the app's or another `sealbox sync`); nothing was changed: try again when it has finished")]
    SyncRunning,
    #[error("{0}; nothing was erased")]
    BadReceipt(sealbox_protocol::sync::ReceiptError),
    #[error("there is nothing to export: no entry is waiting on this device")]
    NothingToExport,
    #[error("this receipt lists no entry this device holds or has erased: it is for another device's data or another enrolment; nothing was erased")]
    UnknownBatch,
    #[error("storage error: {0}")]
    Storage(rusqlite::Error),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DeviceError {
    /// The stable code the UI and scripts branch on.
    pub fn code(&self) -> &'static str {
        use DeviceError::*;
        match self {
            NotEnrolled => "not_enrolled",
            AlreadyEnrolled(_) => "already_enrolled",
            OrphanDatabase(_) => "orphan_database",
            KeyLost(_) => "key_lost",
            WrongKey => "wrong_key",
            Corrupt => "database_corrupt",
            DatabaseMissing(_) => "database_missing",
            KeychainUnavailable(_) => "keychain_unavailable",
            Invalid(_) | InvalidLine { .. } => "invalid_entry",
            Enrolment(_) => "bad_enrolment",
            EscrowMismatch => "escrow_mismatch",
            PinNotSet => "pin_not_set",
            PinWrong => "pin_wrong",
            PinLocked(_) => "pin_locked",
            PinWeak => "pin_weak",
            Seal(_) => "seal_failed",
            Offline(_) => "offline",
            TlsRefused(_) => "tls_refused",
            Server { status: 401, .. } => "unauthorized",
            Server { status: 409, .. } => "conflict",
            Server { status: 429, .. } => "rate_limited",
            Server { status, .. } if *status >= 500 => "server_error",
            Server { .. } => "rejected",
            BadReceipt(_) => "bad_receipt",
            NothingToExport => "nothing_to_export",
            UnknownBatch => "unknown_batch",
            SyncRunning => "sync_running",
            Storage(_) => "storage",
            Io { .. } => "io",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DeviceError {
        let context = context.into();
        move |source| DeviceError::Io { context, source }
    }
}

impl From<rusqlite::Error> for DeviceError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                DeviceError::Corrupt
            }
            _ => DeviceError::Storage(e),
        }
    }
}

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;
