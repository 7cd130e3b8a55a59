//! Rotation of head office's receipt-signing key: a statement, signed by the old key, that
//! names the new one. Head office sends its statements with every receipt; a device follows
//! them from the key it trusts, one step at a time, and from then on accepts receipts only from
//! the newest key. A key a device has rotated away from is never trusted again, so a copy of an
//! old key signs nothing a device will act on, not even a rotation of its own.

use crate::entry::{b64_decode, b64_encode};
use crate::sync::verifying_key_from_b64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

pub const ROTATION_FORMAT: &str = "sealbox-key-rotation/1";

/// "Receipts from `to` replace receipts from `from`", signed by `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    pub format: String,
    /// The retired verifying key (base64).
    pub from: String,
    /// The new verifying key (base64).
    pub to: String,
    pub issued_at_ms: i64,
    /// Ed25519 by `from` over [`KeyRotation::signed_bytes`], base64.
    pub signature: String,
}

/// Why a rotation is not followed. A device then keeps the key it trusts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("a key rotation statement is malformed or its signature is not the old key's")]
    BadStatement,
    #[error(
        "two different rotations from the same key: head office's old key may be in other hands"
    )]
    Fork,
}

impl KeyRotation {
    /// The bytes the signature covers, length-prefixed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [
            self.format.as_str(),
            &self.from,
            &self.to,
            &self.issued_at_ms.to_string(),
        ] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    /// The statement that `old` hands over to `new`.
    pub fn sign(old: &SigningKey, new: &VerifyingKey, issued_at_ms: i64) -> KeyRotation {
        let mut r = KeyRotation {
            format: ROTATION_FORMAT.into(),
            from: b64_encode(old.verifying_key().as_bytes()),
            to: b64_encode(new.as_bytes()),
            issued_at_ms,
            signature: String::new(),
        };
        r.signature = b64_encode(&old.sign(&r.signed_bytes()).to_bytes());
        r
    }

    /// Checks the statement's signature by its `from` key; returns `(from, to)`.
    pub fn verify(&self) -> Result<(VerifyingKey, VerifyingKey), RotationError> {
        if self.format != ROTATION_FORMAT {
            return Err(RotationError::BadStatement);
        }
        let from = verifying_key_from_b64(&self.from).ok_or(RotationError::BadStatement)?;
        let to = verifying_key_from_b64(&self.to).ok_or(RotationError::BadStatement)?;
        let sig = b64_decode(&self.signature)
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or(RotationError::BadStatement)?;
        from.verify(&self.signed_bytes(), &sig)
            .map_err(|_| RotationError::BadStatement)?;
        if from == to {
            return Err(RotationError::BadStatement);
        }
        Ok((from, to))
    }
}

/// Follows `statements` from the `trusted` key: each step must be signed by the key reached so
/// far. Statements from other keys (older history) are ignored. Returns the newest key reached
/// (`trusted` itself when no statement starts from it).
pub fn follow(
    trusted: &VerifyingKey,
    statements: &[KeyRotation],
) -> Result<VerifyingKey, RotationError> {
    let mut current = *trusted;
    // Each step retires a key, so there are at most as many steps as statements.
    for _ in 0..statements.len() {
        let current_b64 = b64_encode(current.as_bytes());
        let mut next: Option<VerifyingKey> = None;
        for s in statements.iter().filter(|s| s.from == current_b64) {
            let (_, to) = s.verify()?;
            match next {
                Some(n) if n != to => return Err(RotationError::Fork),
                _ => next = Some(to),
            }
        }
        match next {
            Some(n) => current = n,
            None => break,
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_followed_from_the_trusted_key_and_nothing_else() {
        let k1 = SigningKey::from_bytes(&[1u8; 32]);
        let k2 = SigningKey::from_bytes(&[2u8; 32]);
        let k3 = SigningKey::from_bytes(&[3u8; 32]);
        let thief = SigningKey::from_bytes(&[9u8; 32]);
        let r12 = KeyRotation::sign(&k1, &k2.verifying_key(), 1);
        let r23 = KeyRotation::sign(&k2, &k3.verifying_key(), 2);
        let chain = vec![r12.clone(), r23.clone()];
        assert_eq!(follow(&k1.verifying_key(), &chain), Ok(k3.verifying_key()));
        assert_eq!(follow(&k2.verifying_key(), &chain), Ok(k3.verifying_key()));
        assert_eq!(follow(&k3.verifying_key(), &chain), Ok(k3.verifying_key()));
        assert_eq!(follow(&k1.verifying_key(), &[]), Ok(k1.verifying_key()));
        // A copy of k1 signs a rotation to the thief's key: a device at k3 ignores it…
        let forged = KeyRotation::sign(&k1, &thief.verifying_key(), 3);
        let mut offered = chain.clone();
        offered.push(forged.clone());
        assert_eq!(
            follow(&k3.verifying_key(), &offered),
            Ok(k3.verifying_key())
        );
        // …and a device still at k1 sees two successors and follows neither.
        assert_eq!(
            follow(&k1.verifying_key(), &offered),
            Err(RotationError::Fork)
        );
        // An altered statement is refused.
        let mut altered = r12.clone();
        altered.to = forged.to.clone();
        assert_eq!(
            follow(&k1.verifying_key(), &[altered]),
            Err(RotationError::BadStatement)
        );
    }
}
