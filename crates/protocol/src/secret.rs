//! Secrets as types: zeroized on drop, never printed.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 32 secret bytes: a database key, a signing key seed, a device token.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Secret32(bytes)
    }

    /// Exposes the bytes; keep the borrow short.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, in a string that is zeroized when dropped.
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0))
    }

    /// Parses 64 hex digits (surrounding white space ignored).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).ok()?;
        Some(Secret32(out))
    }

    fn to_b64(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0))
    }

    fn from_b64(s: &str) -> Option<Self> {
        let mut v = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()?,
        );
        if v.len() != 32 {
            v.zeroize();
            return None;
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(&v);
        Some(Secret32(out))
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_b64())
    }
}

impl<'de> Deserialize<'de> for Secret32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = zeroize::Zeroizing::new(String::deserialize(d)?);
        Secret32::from_b64(&s).ok_or_else(|| serde::de::Error::custom("expected 32 bytes, base64"))
    }
}

/// A device's API token: head office keeps only its SHA-256.
pub type DeviceToken = Secret32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_serde_round_trips() {
        let s = Secret32::from_bytes([7u8; 32]);
        assert_eq!(format!("{s:?}"), "[redacted]");
        let json = serde_json::to_string(&s).unwrap();
        let back: Secret32 = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Secret32>("\"AAAA\"").is_err());
        assert_eq!(Secret32::from_hex(&s.to_hex()).unwrap(), s);
    }
}
