//! Head office errors, each with a stable code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoError {
    #[error("head office is not initialised in {}: run `sealbox-headoffice init`", .0.display())]
    NotInitialised(PathBuf),
    #[error("head office is already initialised in {}; nothing was changed", .0.display())]
    AlreadyInitialised(PathBuf),
    #[error("wrong passphrase, or the identity file is damaged")]
    WrongPassphrase,
    #[error("the passphrase must have at least 12 characters")]
    WeakPassphrase,
    #[error("{0}")]
    Config(String),
    #[error("event {0:?} does not exist: create it with `sealbox-headoffice event create FILE`")]
    UnknownEvent(String),
    #[error("event {0:?} already exists with a different config; nothing was changed")]
    EventExists(String),
    #[error("device {0:?} is already enrolled; revoke it or choose another name")]
    DeviceExists(String),
    #[error("not an escrow file for this head office, or damaged")]
    BadEscrow,
    #[error("{path} already exists; nothing was written")]
    OutputExists { path: String },
    #[error("the batch file is truncated, altered, or not for this head office: {0}; nothing was stored")]
    BadBatch(String),
    #[error(
        "the batch is from device {0:?}, which is not enrolled or is revoked; nothing was stored"
    )]
    UnknownDevice(String),
    #[error("head office's keys are locked: give the passphrase")]
    Locked,
    #[error("init's final check failed ({0}); head office was not initialised")]
    Canary(String),
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error("crypto: {0}")]
    Crypto(String),
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl HoError {
    pub fn code(&self) -> &'static str {
        use HoError::*;
        match self {
            NotInitialised(_) => "not_initialised",
            AlreadyInitialised(_) => "already_initialised",
            WrongPassphrase => "wrong_passphrase",
            WeakPassphrase => "weak_passphrase",
            Config(_) => "bad_config",
            UnknownEvent(_) => "unknown_event",
            EventExists(_) => "event_exists",
            DeviceExists(_) => "device_exists",
            BadEscrow => "bad_escrow",
            OutputExists { .. } => "output_exists",
            BadBatch(_) => "bad_batch",
            UnknownDevice(_) => "unknown_device",
            Locked => "locked",
            Canary(_) => "canary_failed",
            Recovery(e) => e.code(),
            Backup(e) => e.code(),
            Crypto(_) => "crypto",
            Storage(_) => "storage",
            Io { .. } => "io",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HoError {
        let context = context.into();
        move |source| HoError::Io { context, source }
    }
}

pub type Result<T, E = HoError> = std::result::Result<T, E>;
