//! Delivery to head office: the sync request a device posts, and the signed receipt head office
//! answers with once the entries are durably stored. The same receipt type answers an imported
//! batch file.

use crate::entry::{b64_decode, b64_encode, EntryEnvelope};
use crate::rotation::KeyRotation;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const RECEIPT_FORMAT: &str = "sealbox-receipt/1";

/// What a device posts to `/v1/sync`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Chosen by the device and kept until a receipt for it is verified: a resend of the same
    /// batch gets the same receipt.
    pub batch_id: Uuid,
    pub entries: Vec<EntryEnvelope>,
}

/// Head office's signed acknowledgement: these ids are durably stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub format: String,
    pub batch_id: Uuid,
    /// The device the batch came from.
    pub device: String,
    /// The entry ids head office holds, sorted.
    pub ids: Vec<Uuid>,
    /// [`Receipt::digest_of`] the ids.
    pub digest: String,
    pub issued_at_ms: i64,
    /// Ed25519 by head office over [`Receipt::signed_bytes`], base64.
    pub signature: String,
    /// Head office's key rotations, oldest first: not signed by the receipt, each statement is
    /// signed by the key it retires (see [`crate::rotation`]). Absent until a key is rotated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<KeyRotation>,
    /// The device's event's staff codes as head office holds them now: not signed by the
    /// receipt, signed on their own (see [`crate::staff`]). Absent while the event has never
    /// had a staff code issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff_codes: Option<crate::staff::StaffCodesUpdate>,
}

/// Why a receipt is not accepted. Nothing is erased on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is not a Sealbox receipt")]
    Format,
    #[error("the receipt's digest does not match its ids (altered)")]
    Digest,
    #[error("the receipt's signature is not head office's (forged or altered)")]
    Signature,
    #[error("the receipt is for another device")]
    OtherDevice,
    #[error("the receipt is for another batch")]
    OtherBatch,
    #[error("the receipt does not list every entry that was sent ({0} missing)")]
    MissingIds(usize),
}

impl ReceiptError {
    /// The message in `lang` (the English one is the `Display` text).
    pub fn message(&self, lang: crate::Lang) -> String {
        use ReceiptError::*;
        match lang {
            crate::Lang::En => self.to_string(),
            crate::Lang::Zh => match self {
                Format => "这不是 Sealbox 的回执文件".into(),
                Digest => "回执的摘要与其中的条目不符（已被改动）".into(),
                Signature => "回执的签名不是总部的（伪造或已被改动）".into(),
                OtherDevice => "这张回执属于另一台设备".into(),
                OtherBatch => "这张回执属于另一个批次".into(),
                MissingIds(n) => format!("回执没有列出已发送的全部条目（缺少 {n} 条）"),
            },
        }
    }
}

impl Receipt {
    /// SHA-256 (hex) over the ids in ascending order, 16 bytes each.
    pub fn digest_of(ids: &[Uuid]) -> String {
        let mut sorted: Vec<&Uuid> = ids.iter().collect();
        sorted.sort();
        let mut h = Sha256::new();
        for id in sorted {
            h.update(id.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The bytes the signature covers: every field but the signature (the ids through the
    /// digest), length-prefixed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [
            self.format.as_str(),
            &self.batch_id.to_string(),
            &self.device,
            &self.digest,
            &self.issued_at_ms.to_string(),
        ] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    /// Makes and signs a receipt.
    pub fn sign(
        batch_id: Uuid,
        device: &str,
        mut ids: Vec<Uuid>,
        issued_at_ms: i64,
        key: &SigningKey,
    ) -> Receipt {
        ids.sort();
        ids.dedup();
        let mut r = Receipt {
            format: RECEIPT_FORMAT.into(),
            batch_id,
            device: device.to_string(),
            digest: Receipt::digest_of(&ids),
            ids,
            issued_at_ms,
            signature: String::new(),
            rotations: Vec::new(),
            staff_codes: None,
        };
        r.signature = b64_encode(&key.sign(&r.signed_bytes()).to_bytes());
        r
    }

    /// Checks the format, the digest over the ids and head office's signature.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ReceiptError> {
        if self.format != RECEIPT_FORMAT {
            return Err(ReceiptError::Format);
        }
        if Receipt::digest_of(&self.ids) != self.digest {
            return Err(ReceiptError::Digest);
        }
        let sig = b64_decode(&self.signature)
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or(ReceiptError::Signature)?;
        key.verify(&self.signed_bytes(), &sig)
            .map_err(|_| ReceiptError::Signature)
    }

    /// Verifies the receipt and that it acknowledges exactly what was sent: this device, this
    /// batch, every id.
    pub fn verify_for(
        &self,
        key: &VerifyingKey,
        device: &str,
        batch_id: Uuid,
        sent: &[Uuid],
    ) -> Result<(), ReceiptError> {
        self.verify(key)?;
        if self.device != device {
            return Err(ReceiptError::OtherDevice);
        }
        if self.batch_id != batch_id {
            return Err(ReceiptError::OtherBatch);
        }
        let missing = sent
            .iter()
            .filter(|id| self.ids.binary_search(id).is_err())
            .count();
        if missing > 0 {
            return Err(ReceiptError::MissingIds(missing));
        }
        Ok(())
    }

    /// A short id for tombstones and the audit log.
    pub fn receipt_id(&self) -> String {
        crate::sha256_hex(self.signature.as_bytes())[..32].to_string()
    }
}

/// The error body of every non-2xx answer from head office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable: `unauthorized`, `bad_request`, `too_large`, `too_many_entries`, `rate_limited`,
    /// `conflict`, `batch_conflict`, `busy`, `internal`, and for a batch refused because of
    /// some of its entries, the first entry's [`crate::limits::EnvelopeProblem::code`].
    pub code: String,
    pub message: String,
    /// The entries refused on their own, each with its reason; the rest of the batch would
    /// have been taken. Absent in answers from head offices before this field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedEntry>,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.into(),
            message: message.into(),
            refused: Vec::new(),
        }
    }
}

/// One entry head office will not take, and why (a stable code, never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedEntry {
    pub id: Uuid,
    pub code: String,
}

/// Verifying key from its base64 form (as in the enrolment file).
pub fn verifying_key_from_b64(s: &str) -> Option<VerifyingKey> {
    let b = b64_decode(s)?;
    let arr: [u8; 32] = b.as_slice().try_into().ok()?;
    VerifyingKey::from_bytes(&arr).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_every_refusal() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let vk = key.verifying_key();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let batch = Uuid::now_v7();
        let r = Receipt::sign(
            batch,
            "booth-1",
            ids.iter().rev().cloned().collect(),
            1,
            &key,
        );
        r.verify_for(&vk, "booth-1", batch, &ids).unwrap();
        assert_eq!(r.ids, {
            let mut s = ids.clone();
            s.sort();
            s
        });

        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_eq!(r.verify(&other), Err(ReceiptError::Signature));
        let mut altered = r.clone();
        altered.ids.pop();
        assert_eq!(altered.verify(&vk), Err(ReceiptError::Digest));
        let mut altered = r.clone();
        altered.issued_at_ms = 2;
        assert_eq!(altered.verify(&vk), Err(ReceiptError::Signature));
        assert_eq!(
            r.verify_for(&vk, "booth-2", batch, &ids),
            Err(ReceiptError::OtherDevice)
        );
        assert_eq!(
            r.verify_for(&vk, "booth-1", Uuid::now_v7(), &ids),
            Err(ReceiptError::OtherBatch)
        );
        let mut more = ids.clone();
        more.push(Uuid::now_v7());
        assert_eq!(
            r.verify_for(&vk, "booth-1", batch, &more),
            Err(ReceiptError::MissingIds(1))
        );
        // A receipt missing an id, re-signed by someone else, is still refused.
        let short = Receipt::sign(batch, "booth-1", ids[1..].to_vec(), 1, &key);
        assert_eq!(
            short.verify_for(&vk, "booth-1", batch, &ids),
            Err(ReceiptError::MissingIds(1))
        );
    }
}
