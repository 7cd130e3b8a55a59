//! Where the database key lives: the OS keychain (macOS Keychain, Windows Credential Manager,
//! the Secret Service on Linux), behind the [`KeyStore`] trait.
//!
//! Each data directory has its own service name (`sealbox.device.<store id>`), so two devices on
//! one machine never share a key.

use sealbox_protocol::Secret32;
use zeroize::Zeroizing;

/// What can go wrong talking to a key store.
#[derive(Debug, thiserror::Error)]
pub enum KeychainError {
    #[error("{0}")]
    Unavailable(String),
    #[error("the keychain entry is not a Sealbox key")]
    Malformed,
}

/// A place to keep 32-byte secrets by (service, account).
pub trait KeyStore: Send + Sync {
    /// The secret, or `None` when there is no such entry.
    fn get(&self, service: &str, account: &str) -> Result<Option<Secret32>, KeychainError>;
    fn set(&self, service: &str, account: &str, secret: &Secret32) -> Result<(), KeychainError>;
    /// Deletes the entry; deleting an absent entry is not an error.
    fn delete(&self, service: &str, account: &str) -> Result<(), KeychainError>;
}

/// The operating system's keychain, through the `keyring` crate with its native backends
/// (never the mock store, never the kernel keyring that is wiped at reboot).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsKeychain;

fn unavailable(e: keyring::Error) -> KeychainError {
    // keyring's messages describe the platform failure, never the secret.
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("keychain error").to_string();
    KeychainError::Unavailable(line)
}

impl KeyStore for OsKeychain {
    fn get(&self, service: &str, account: &str) -> Result<Option<Secret32>, KeychainError> {
        let entry = keyring::Entry::new(service, account).map_err(unavailable)?;
        match entry.get_password() {
            Ok(p) => {
                let p = Zeroizing::new(p);
                Secret32::from_hex(&p)
                    .map(Some)
                    .ok_or(KeychainError::Malformed)
            }
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(keyring::Error::BadEncoding(_)) => Err(KeychainError::Malformed),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn set(&self, service: &str, account: &str, secret: &Secret32) -> Result<(), KeychainError> {
        let entry = keyring::Entry::new(service, account).map_err(unavailable)?;
        entry.set_password(&secret.to_hex()).map_err(unavailable)
    }

    fn delete(&self, service: &str, account: &str) -> Result<(), KeychainError> {
        let entry = keyring::Entry::new(service, account).map_err(unavailable)?;
        match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// An in-memory key store for unit tests of error paths. Not compiled into the product.
#[cfg(test)]
pub(crate) mod memory {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemoryKeyStore {
        pub map: Mutex<HashMap<(String, String), Secret32>>,
        pub unavailable: std::sync::atomic::AtomicBool,
    }

    impl MemoryKeyStore {
        fn check(&self) -> Result<(), KeychainError> {
            if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
                Err(KeychainError::Unavailable("test: no secret service".into()))
            } else {
                Ok(())
            }
        }
    }

    impl KeyStore for MemoryKeyStore {
        fn get(&self, s: &str, a: &str) -> Result<Option<Secret32>, KeychainError> {
            self.check()?;
            Ok(self.map.lock().unwrap().get(&(s.into(), a.into())).cloned())
        }
        fn set(&self, s: &str, a: &str, k: &Secret32) -> Result<(), KeychainError> {
            self.check()?;
            self.map
                .lock()
                .unwrap()
                .insert((s.into(), a.into()), k.clone());
            Ok(())
        }
        fn delete(&self, s: &str, a: &str) -> Result<(), KeychainError> {
            self.check()?;
            self.map.lock().unwrap().remove(&(s.into(), a.into()));
            Ok(())
        }
    }
}
