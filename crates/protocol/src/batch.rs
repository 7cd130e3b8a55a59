//! The encrypted, signed batch file a manager carries from an offline device to head office.
//!
//! Inside the age encryption (to head office's recipient) is a [`SignedBatch`]: the payload
//! bytes (manifest and sealed envelopes, JSON) and the device's Ed25519 signature over them. Any
//! change to the file breaks age's authentication; a file made by anyone but the device (head
//! office's recipient is public) fails the signature.

use crate::entry::{b64_decode, b64_encode, EntryEnvelope};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const BATCH_FORMAT: &str = "sealbox-batch/1";

/// What the batch holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchManifest {
    pub format: String,
    pub batch_id: Uuid,
    pub device: String,
    pub event_id: String,
    pub entry_ids: Vec<Uuid>,
    pub count: usize,
    pub created_at_ms: i64,
}

/// The signed content of a batch file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchPayload {
    pub manifest: BatchManifest,
    pub entries: Vec<EntryEnvelope>,
}

/// The payload's bytes and the device's signature over them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBatch {
    /// The [`BatchPayload`] as JSON, base64.
    pub payload: String,
    /// Ed25519 by the device over the payload's bytes, base64.
    pub signature: String,
}

/// Why a batch file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("not a Sealbox batch file, or damaged")]
    Format,
    #[error("the batch is not signed by the device it names (forged or altered)")]
    Signature,
    #[error("the batch's manifest does not match its entries")]
    Manifest,
}

impl SignedBatch {
    /// Signs a payload with the device's key.
    pub fn sign(payload: &BatchPayload, key: &SigningKey) -> SignedBatch {
        let bytes = serde_json::to_vec(payload).unwrap_or_default();
        SignedBatch {
            signature: b64_encode(&key.sign(&bytes).to_bytes()),
            payload: b64_encode(&bytes),
        }
    }

    /// The payload, unverified: its manifest names the device whose key must verify it.
    pub fn payload_unverified(&self) -> Result<BatchPayload, BatchError> {
        let bytes = b64_decode(&self.payload).ok_or(BatchError::Format)?;
        serde_json::from_slice(&bytes).map_err(|_| BatchError::Format)
    }

    /// Verifies the signature with the device's key and the manifest against the entries.
    pub fn verify(&self, device_key: &VerifyingKey) -> Result<BatchPayload, BatchError> {
        let bytes = b64_decode(&self.payload).ok_or(BatchError::Format)?;
        let sig = b64_decode(&self.signature)
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or(BatchError::Signature)?;
        device_key
            .verify(&bytes, &sig)
            .map_err(|_| BatchError::Signature)?;
        let p: BatchPayload = serde_json::from_slice(&bytes).map_err(|_| BatchError::Format)?;
        let m = &p.manifest;
        let ids: Vec<Uuid> = p.entries.iter().map(|e| e.id).collect();
        if m.format != BATCH_FORMAT
            || m.count != p.entries.len()
            || m.entry_ids != ids
            || p.entries.iter().any(|e| e.event_id != m.event_id)
        {
            return Err(BatchError::Manifest);
        }
        Ok(p)
    }
}
