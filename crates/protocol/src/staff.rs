//! Head office's signed update of an event's staff codes: how a code issued or revoked after a
//! device was enrolled reaches it. Head office signs it with its receipt key (the key the
//! enrolment file gave the device, moved on by the receipts' rotation statements) and sends it
//! with each receipt; the device verifies it, checks that it is for its event and newer than
//! what it holds, and only then replaces its verifiers. An offline device keeps the set it has.

use crate::entry::{b64_decode, b64_encode};
use crate::event::{EventConfig, StaffCode};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

pub const STAFF_CODES_FORMAT: &str = "sealbox-staff-codes/1";

/// Where a device asks for its event's current staff codes (GET, with its token) when it has
/// nothing to send and so gets no receipt: 200 with a [`StaffCodesUpdate`], 204 while the event
/// has none. A head office that predates it answers 404.
pub const STAFF_CODES_PATH: &str = "/v1/staff-codes";

/// An event's whole set of staff codes (verifiers only) at one version, signed by head office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffCodesUpdate {
    pub format: String,
    pub event: String,
    /// Head office counts every issue and revocation: a device takes only a higher version.
    pub version: u64,
    pub staff_codes: Vec<StaffCode>,
    /// Ed25519 by head office over [`StaffCodesUpdate::signed_bytes`], base64.
    pub signature: String,
}

/// Why a staff code update is not taken. Nothing changes on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaffCodesError {
    #[error("the staff code update is not a Sealbox staff code update")]
    Format,
    #[error("the staff code update's signature is not head office's (forged or altered)")]
    Signature,
    #[error("the staff code update is for another event")]
    OtherEvent,
    #[error("the staff code update is older than the one this device holds (version {got}, holding {held}): replayed")]
    Stale { held: u64, got: u64 },
    #[error("the staff code update holds an invalid staff code")]
    Invalid,
}

impl StaffCodesError {
    pub fn code(&self) -> &'static str {
        match self {
            StaffCodesError::Format => "staff_codes_format",
            StaffCodesError::Signature => "staff_codes_signature",
            StaffCodesError::OtherEvent => "staff_codes_other_event",
            StaffCodesError::Stale { .. } => "staff_codes_stale",
            StaffCodesError::Invalid => "staff_codes_invalid",
        }
    }

    /// The message in `lang` (the English one is the `Display` text).
    pub fn message(&self, lang: crate::Lang) -> String {
        use StaffCodesError::*;
        match lang {
            crate::Lang::En => self.to_string(),
            crate::Lang::Zh => match self {
                Format => "这不是 Sealbox 的员工码更新".into(),
                Signature => "员工码更新的签名不是总部的（伪造或已被改动）".into(),
                OtherEvent => "这份员工码更新属于另一个活动".into(),
                Stale { held, got } => {
                    format!("这份员工码更新比本设备已有的旧（版本 {got}，已有 {held}）：是重放的")
                }
                Invalid => "员工码更新中有无效的员工码".into(),
            },
        }
    }
}

impl StaffCodesUpdate {
    /// The bytes the signature covers: a domain tag, the format, the event, the version and
    /// each code's id and verifier, length-prefixed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |part: &str| {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        };
        put("sealbox staff codes");
        put(&self.format);
        put(&self.event);
        put(&self.version.to_string());
        for c in &self.staff_codes {
            put(&c.id);
            put(&c.verifier);
        }
        out
    }

    /// The update for `config`'s current staff codes, signed.
    pub fn sign(config: &EventConfig, key: &SigningKey) -> StaffCodesUpdate {
        let mut u = StaffCodesUpdate {
            format: STAFF_CODES_FORMAT.into(),
            event: config.id.clone(),
            version: config.staff_codes_version,
            staff_codes: config.staff_codes.clone(),
            signature: String::new(),
        };
        u.signature = b64_encode(&key.sign(&u.signed_bytes()).to_bytes());
        u
    }

    /// Checks the format, head office's signature, the event, that the version is newer than
    /// `held`, and the codes themselves.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        event: &str,
        held: u64,
    ) -> Result<(), StaffCodesError> {
        if self.format != STAFF_CODES_FORMAT {
            return Err(StaffCodesError::Format);
        }
        let sig = b64_decode(&self.signature)
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or(StaffCodesError::Signature)?;
        key.verify(&self.signed_bytes(), &sig)
            .map_err(|_| StaffCodesError::Signature)?;
        if self.event != event {
            return Err(StaffCodesError::OtherEvent);
        }
        if self.version <= held {
            return Err(StaffCodesError::Stale {
                held,
                got: self.version,
            });
        }
        crate::event::validate_staff_code_list(&self.staff_codes)
            .map_err(|_| StaffCodesError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EventConfig {
        let mut c = crate::event::tests_support::minimal();
        c.staff_codes = vec![StaffCode {
            id: "s1".into(),
            verifier: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        }];
        c.staff_codes_version = 3;
        c
    }

    #[test]
    fn a_signed_update_verifies_and_every_change_is_refused() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let vk = key.verifying_key();
        let c = config();
        let u = StaffCodesUpdate::sign(&c, &key);
        assert_eq!(u.verify(&vk, &c.id, 2), Ok(()));
        assert_eq!(
            u.verify(&vk, &c.id, 3),
            Err(StaffCodesError::Stale { held: 3, got: 3 })
        );
        assert_eq!(u.verify(&vk, "other", 0), Err(StaffCodesError::OtherEvent));
        let mut t = u.clone();
        t.staff_codes[0].verifier.push('x');
        assert_eq!(t.verify(&vk, &c.id, 0), Err(StaffCodesError::Signature));
        let mut t = u.clone();
        t.version = 9;
        assert_eq!(t.verify(&vk, &c.id, 0), Err(StaffCodesError::Signature));
        let mut t = u.clone();
        t.staff_codes.clear();
        assert_eq!(t.verify(&vk, &c.id, 0), Err(StaffCodesError::Signature));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_eq!(u.verify(&other, &c.id, 0), Err(StaffCodesError::Signature));
    }
}
