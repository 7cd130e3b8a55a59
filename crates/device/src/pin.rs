//! The manager PIN: stored as an Argon2id hash; after three wrong PINs in a row every further
//! attempt must wait, 30 s doubling to at most 15 minutes. Every attempt is audited.

use crate::error::{DeviceError, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A manager PIN as typed: zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin(String);

impl Pin {
    pub fn new(s: impl Into<String>) -> Self {
        Pin(s.into())
    }
    fn as_bytes(&self) -> &[u8] {
        self.0.trim().as_bytes()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Wrong attempts allowed before waiting starts.
pub const FREE_ATTEMPTS: u32 = 3;
const FIRST_WAIT_MS: i64 = 30_000;
const MAX_WAIT_MS: i64 = 15 * 60_000;

/// Refuses PINs that are short, not digits, or trivial (all one digit, a straight run).
pub fn check_strength(pin: &Pin) -> Result<()> {
    let d = pin.as_bytes();
    let digits = (6..=12).contains(&d.len()) && d.iter().all(u8::is_ascii_digit);
    if !digits {
        return Err(DeviceError::PinWeak);
    }
    let same = d.iter().all(|&c| c == d[0]);
    let up = d.windows(2).all(|w| w[1] == w[0] + 1);
    let down = d.windows(2).all(|w| w[0] == w[1] + 1);
    if same || up || down {
        return Err(DeviceError::PinWeak);
    }
    Ok(())
}

/// Argon2id with OWASP's minimum parameters (19 MiB, 2 passes).
fn argon2() -> Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// The PHC string of a new PIN.
pub fn hash(pin: &Pin) -> Result<String> {
    let mut salt_bytes = [0u8; 16];
    getrandom::getrandom(&mut salt_bytes).map_err(|e| DeviceError::Seal(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| DeviceError::Seal(e.to_string()))?;
    argon2()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DeviceError::Seal(e.to_string()))
}

/// Whether `pin` matches the PHC string.
pub fn matches(pin: &Pin, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(pin.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// The rate limiter's state, kept in the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempts {
    /// Wrong PINs in a row.
    pub failures: u32,
    pub last_failure_ms: i64,
}

impl Attempts {
    /// How long, from `now_ms`, until the next attempt may be made (0: now).
    pub fn wait_ms(&self, now_ms: i64) -> i64 {
        if self.failures < FREE_ATTEMPTS {
            return 0;
        }
        let doublings = (self.failures - FREE_ATTEMPTS).min(10);
        let wait = (FIRST_WAIT_MS << doublings).min(MAX_WAIT_MS);
        (self.last_failure_ms + wait - now_ms).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength() {
        for weak in [
            "12345",
            "123456",
            "654321",
            "111111",
            "12a456",
            "1234567890123",
        ] {
            assert!(check_strength(&Pin::new(weak)).is_err(), "{weak}");
        }
        assert!(check_strength(&Pin::new("246810")).is_ok());
        assert_eq!(format!("{:?}", Pin::new("246810")), "[redacted]");
    }

    #[test]
    fn hash_and_match() {
        let h = hash(&Pin::new("246810")).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(matches(&Pin::new("246810"), &h));
        assert!(!matches(&Pin::new("246811"), &h));
        assert!(!matches(&Pin::new("246810"), "garbage"));
    }

    #[test]
    fn waits_grow_and_cap() {
        let a = |failures| Attempts {
            failures,
            last_failure_ms: 1_000,
        };
        assert_eq!(a(2).wait_ms(1_000), 0);
        assert_eq!(a(3).wait_ms(1_000), 30_000);
        assert_eq!(a(4).wait_ms(1_000), 60_000);
        assert_eq!(a(3).wait_ms(31_000), 0);
        assert_eq!(a(30).wait_ms(1_000), 15 * 60_000);
    }
}
