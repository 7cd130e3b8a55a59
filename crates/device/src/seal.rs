//! Sealing to head office with age (X25519): payloads and the escrowed database key. The device
//! holds only head office's recipient, so it can seal but never open.

use crate::error::{DeviceError, Result};
use std::str::FromStr;

/// Head office's age recipient, parsed once.
#[derive(Clone)]
pub struct Sealer {
    recipient: age::x25519::Recipient,
}

impl Sealer {
    pub fn new(recipient: &str) -> Result<Self> {
        let recipient = age::x25519::Recipient::from_str(recipient)
            .map_err(|_| DeviceError::Enrolment("head office's age recipient is invalid".into()))?;
        Ok(Sealer { recipient })
    }

    /// Encrypts `plaintext` to head office.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        age::encrypt(&self.recipient, plaintext).map_err(|e| DeviceError::Seal(e.to_string()))
    }
}
