//! Display summaries readable only with the manager PIN.
//!
//! Each entry's display summary (`张*`, `138****5678`, the company) is sealed with age to the
//! device's **summary recipient**, so storing an entry needs no PIN and costs one more X25519
//! sealing. The matching identity (the summary key: 32 random bytes, an age X25519 secret) is
//! kept in the database only wrapped:
//!
//! - under the manager PIN: XChaCha20-Poly1305 with a key from Argon2id(PIN, a random salt),
//!   the same parameters as the PIN's own hash; re-wrapped with a new salt when the PIN changes;
//! - sealed to head office (`DATA_DIR/summary-escrow.age`), so a forgotten PIN loses nothing:
//!   head office opens it (`sealbox-headoffice escrow open`) and `sealbox pin reset` sets a new
//!   PIN over the same key.
//!
//! The database key alone therefore yields counts, times and states, but no summary.

use crate::error::{DeviceError, Result};
use crate::pin::Pin;
use age::secrecy::ExposeSecret;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// The unlocked summary key. Never printed.
pub struct SummaryKey(age::x25519::Identity);

impl fmt::Debug for SummaryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The public half: what submit seals summaries to.
#[derive(Clone)]
pub struct SummaryLock(age::x25519::Recipient);

impl SummaryLock {
    pub fn parse(s: &str) -> Result<SummaryLock> {
        age::x25519::Recipient::from_str(s)
            .map(SummaryLock)
            .map_err(|_| DeviceError::Corrupt)
    }

    pub fn seal(&self, summary_json: &[u8]) -> Result<Vec<u8>> {
        age::encrypt(&self.0, summary_json).map_err(|e| DeviceError::Seal(e.to_string()))
    }
}

impl fmt::Display for SummaryLock {
    /// The public recipient (`age1…`): nothing secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl SummaryKey {
    pub fn generate() -> SummaryKey {
        SummaryKey(age::x25519::Identity::generate())
    }

    pub fn lock(&self) -> SummaryLock {
        SummaryLock(self.0.to_public())
    }

    /// The summary JSON of one entry; `None` for one sealed to another key (recorded before
    /// the device had a summary key, sealed to head office only).
    pub fn open(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        age::decrypt(&self.0, sealed).ok().map(Zeroizing::new)
    }

    /// The secret as age writes it (`AGE-SECRET-KEY-1…`): for the escrow record only.
    pub fn secret_text(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.to_string().expose_secret().to_string())
    }

    pub fn from_secret_text(s: &str) -> Result<SummaryKey> {
        age::x25519::Identity::from_str(s.trim())
            .map(SummaryKey)
            .map_err(|_| DeviceError::EscrowMismatch)
    }

    /// Wraps the key under `pin` (a fresh salt and nonce each time).
    pub fn wrap(&self, pin: &Pin) -> Result<PinWrap> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        getrandom::getrandom(&mut salt).map_err(|e| DeviceError::Seal(e.to_string()))?;
        getrandom::getrandom(&mut nonce).map_err(|e| DeviceError::Seal(e.to_string()))?;
        let key = wrap_key(pin, &salt)?;
        let secret = self.secret_text();
        let ct = XChaCha20Poly1305::new(key.as_slice().into())
            .encrypt(XNonce::from_slice(&nonce), secret.as_bytes())
            .map_err(|_| DeviceError::Seal("wrapping the summary key".into()))?;
        Ok(PinWrap {
            format: WRAP_FORMAT.into(),
            salt: hex::encode(salt),
            nonce: hex::encode(nonce),
            ct: hex::encode(ct),
        })
    }
}

const WRAP_FORMAT: &str = "sealbox-summary-wrap/argon2id-19m-t2/xchacha20poly1305";

/// The summary key wrapped under the manager PIN, as stored in the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinWrap {
    pub format: String,
    pub salt: String,
    pub nonce: String,
    pub ct: String,
}

impl PinWrap {
    /// The key, if `pin` is the one it was wrapped under (one Argon2id derivation).
    pub fn unwrap(&self, pin: &Pin) -> Result<SummaryKey> {
        let bad = || DeviceError::Corrupt;
        if self.format != WRAP_FORMAT {
            return Err(bad());
        }
        let salt = hex::decode(&self.salt).map_err(|_| bad())?;
        let nonce = hex::decode(&self.nonce).map_err(|_| bad())?;
        let ct = hex::decode(&self.ct).map_err(|_| bad())?;
        if nonce.len() != 24 {
            return Err(bad());
        }
        let key = wrap_key(pin, &salt)?;
        let secret = Zeroizing::new(
            XChaCha20Poly1305::new(key.as_slice().into())
                .decrypt(XNonce::from_slice(&nonce), ct.as_slice())
                .map_err(|_| DeviceError::PinWrong)?,
        );
        let text = std::str::from_utf8(&secret).map_err(|_| bad())?;
        SummaryKey::from_secret_text(text).map_err(|_| bad())
    }
}

/// Argon2id(PIN, salt) with the PIN hash's parameters: 32 bytes.
fn wrap_key(pin: &Pin, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    crate::pin::argon2()
        .hash_password_into(pin.secret_bytes(), salt, out.as_mut())
        .map_err(|e| DeviceError::Seal(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one offline guess costs a thief who holds the database key: one Argon2id
    /// derivation and a failed AEAD check. `cargo test -p sealbox-device --release -- --ignored
    /// one_offline_guess --nocapture` prints it (the README's threat table quotes it).
    #[test]
    #[ignore]
    fn one_offline_guess() {
        let w = SummaryKey::generate().wrap(&Pin::new("246810")).unwrap();
        let n = 40;
        let t = std::time::Instant::now();
        for i in 0..n {
            assert!(w.unwrap(&Pin::new(format!("{:06}", 100_000 + i))).is_err());
        }
        let per = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
        println!("one offline PIN guess: {per:.1} ms on one core (Argon2id 19 MiB, t=2, p=1)");
        // What sealing a summary adds to each submit (no PIN involved).
        let lock = SummaryKey::generate().lock();
        let summary = br#"{"name":"Zhang*","phone":"138****5678","company":"Example Widgets"}"#;
        let t = std::time::Instant::now();
        for _ in 0..500 {
            lock.seal(summary).unwrap();
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / 500.0;
        println!("sealing one summary at submit: {per:.0} us");
    }

    #[test]
    fn wrap_unwrap_and_seal_open() {
        let key = SummaryKey::generate();
        let sealed = key.lock().seal(br#"{"name":"Zhang*"}"#).unwrap();
        let w = key.wrap(&Pin::new("246810")).unwrap();
        assert!(matches!(
            w.unwrap(&Pin::new("246811")),
            Err(DeviceError::PinWrong)
        ));
        let back = w.unwrap(&Pin::new("246810")).unwrap();
        assert_eq!(
            back.open(&sealed).unwrap().as_slice(),
            br#"{"name":"Zhang*"}"#
        );
        assert!(SummaryKey::generate().open(&sealed).is_none());
        assert_eq!(format!("{back:?}"), "[redacted]");
        let text = key.secret_text();
        assert_eq!(
            SummaryKey::from_secret_text(&text)
                .unwrap()
                .lock()
                .to_string(),
            key.lock().to_string()
        );
    }
}
