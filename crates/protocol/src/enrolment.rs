//! The enrolment file: the device's root of trust, made by head office and carried to the
//! device by USB or QR. It holds the device's own secrets, so it is secret itself: the device
//! moves them into its keychain-protected store and shreds the file.

use crate::event::EventConfig;
use crate::secret::{DeviceToken, Secret32};
use serde::{Deserialize, Serialize};

/// The format tag of version 1.
pub const ENROLMENT_FORMAT: &str = "sealbox-enrolment/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentFile {
    /// Always [`ENROLMENT_FORMAT`].
    pub format: String,
    /// Where the device reaches head office: `https://…` only.
    pub server_url: String,
    /// Head office's CA certificate (PEM): the only root the device trusts.
    pub ca_cert_pem: String,
    /// Head office's age recipient (`age1…`): entries are sealed to it.
    pub ho_recipient: String,
    /// Head office's Ed25519 verifying key (base64): receipts are signed with it.
    pub ho_verifying_key: String,
    /// The event this device registers visitors for.
    pub event: EventConfig,
    /// The device's name at head office.
    pub device_name: String,
    /// The device's API token (head office keeps only its hash).
    pub device_token: DeviceToken,
    /// The seed of the device's Ed25519 signing key (head office keeps only the verifying key).
    pub device_signing_key: Secret32,
}

/// Why an enrolment file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enrolment file: {0}")]
pub struct EnrolmentError(pub String);

impl EnrolmentFile {
    /// Parses and checks an enrolment file. Errors never include the file's content.
    pub fn from_json(json: &str) -> Result<Self, EnrolmentError> {
        let f: EnrolmentFile = serde_json::from_str(json).map_err(|e| {
            EnrolmentError(format!(
                "not a valid enrolment file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if f.format != ENROLMENT_FORMAT {
            return Err(EnrolmentError(format!(
                "unsupported format, expected {ENROLMENT_FORMAT}"
            )));
        }
        if !f.server_url.starts_with("https://") {
            return Err(EnrolmentError(
                "server_url must start with https:// (there is no plain-HTTP path)".into(),
            ));
        }
        if !f.ca_cert_pem.contains("BEGIN CERTIFICATE") {
            return Err(EnrolmentError(
                "ca_cert_pem is not a PEM certificate".into(),
            ));
        }
        if !f.ho_recipient.starts_with("age1") {
            return Err(EnrolmentError(
                "ho_recipient is not an age recipient".into(),
            ));
        }
        if crate::entry::b64_decode(&f.ho_verifying_key).map(|k| k.len()) != Some(32) {
            return Err(EnrolmentError(
                "ho_verifying_key is not 32 bytes of base64".into(),
            ));
        }
        if f.device_name.trim().is_empty() || f.device_name.len() > 64 {
            return Err(EnrolmentError(
                "device_name must be 1 to 64 characters".into(),
            ));
        }
        f.event
            .validate()
            .map_err(|e| EnrolmentError(e.to_string()))?;
        Ok(f)
    }
}
