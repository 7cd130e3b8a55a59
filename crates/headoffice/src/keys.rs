//! Head office's keys, in its data directory:
//!
//! ```text
//! identity.age     the age X25519 identity that opens sealed entries and escrow files,
//!                  itself age-encrypted under the admin's passphrase (scrypt)
//! recipient.txt    its public recipient (age1…), given to devices
//! signing.key      the Ed25519 seed that signs receipts (0600; serve needs it unattended)
//! ca.pem, ca.key   the self-signed TLS CA devices pin (ca.key 0600)
//! server.pem, server.key   the TLS server certificate for 127.0.0.1 and localhost (0600)
//! ```

use crate::error::{HoError, Result};
use age::secrecy::SecretString;
use ed25519_dalek::SigningKey;
use sealbox_protocol::Secret32;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The admin's passphrase: zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(String);

impl Passphrase {
    pub fn new(s: impl Into<String>) -> Self {
        Passphrase(s.into())
    }
    fn secret(&self) -> SecretString {
        SecretString::from(self.0.clone())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// scrypt work factor (log2 N) of the identity file: about a quarter second here.
const SCRYPT_LOG_N: u8 = 16;

/// Paths of head office's files.
#[derive(Debug, Clone)]
pub struct HoDir {
    root: PathBuf,
}

impl HoDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HoDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn identity(&self) -> PathBuf {
        self.root.join("identity.age")
    }
    pub fn recipient(&self) -> PathBuf {
        self.root.join("recipient.txt")
    }
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("signing.key")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("headoffice.db")
    }

    pub fn is_initialised(&self) -> bool {
        self.identity().exists()
    }

    pub fn require_initialised(&self) -> Result<()> {
        if self.is_initialised() {
            Ok(())
        } else {
            Err(HoError::NotInitialised(self.root.clone()))
        }
    }

    /// Head office's age recipient (`age1…`).
    pub fn load_recipient(&self) -> Result<String> {
        let s = read_string(&self.recipient())?;
        Ok(s.trim().to_string())
    }

    /// Opens the age identity with the passphrase.
    pub fn load_identity(&self, pass: &Passphrase) -> Result<age::x25519::Identity> {
        let sealed = std::fs::read(self.identity()).map_err(HoError::io("reading identity.age"))?;
        let mut id = age::scrypt::Identity::new(pass.secret());
        id.set_max_work_factor(SCRYPT_LOG_N + 2);
        let plain =
            Zeroizing::new(age::decrypt(&id, &sealed).map_err(|_| HoError::WrongPassphrase)?);
        let text = std::str::from_utf8(&plain).map_err(|_| HoError::WrongPassphrase)?;
        age::x25519::Identity::from_str(text.trim()).map_err(|_| HoError::WrongPassphrase)
    }

    /// The Ed25519 key that signs receipts.
    pub fn load_signing_key(&self) -> Result<SigningKey> {
        let hex = Zeroizing::new(read_string(&self.signing_key())?);
        let seed = Secret32::from_hex(&hex)
            .ok_or_else(|| HoError::Config("signing.key is damaged".into()))?;
        Ok(SigningKey::from_bytes(seed.expose()))
    }

    pub fn load_ca_pem(&self) -> Result<String> {
        read_string(&self.ca_cert())
    }
}

fn read_string(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(HoError::io(format!("reading {}", p.display())))
}

/// 32 random bytes.
pub fn random32() -> Result<Secret32> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| HoError::Crypto(e.to_string()))?;
    let s = Secret32::from_bytes(b);
    b.zeroize();
    Ok(s)
}

/// Writes a new file (never over an existing one) with owner-only permissions, synced.
pub fn write_new_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            HoError::OutputExists {
                path: path.display().to_string(),
            }
        } else {
            HoError::io(format!("creating {}", path.display()))(e)
        }
    })?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(HoError::io(format!("writing {}", path.display())))?;
    Ok(())
}

/// Makes every key and certificate of a new head office.
pub fn create(dir: &HoDir, pass: &Passphrase) -> Result<()> {
    if pass.0.chars().count() < 12 {
        return Err(HoError::WeakPassphrase);
    }
    // The age identity, encrypted under the passphrase.
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let mut scrypt = age::scrypt::Recipient::new(pass.secret());
    scrypt.set_work_factor(SCRYPT_LOG_N);
    let id_text = {
        use age::secrecy::ExposeSecret;
        Zeroizing::new(identity.to_string().expose_secret().to_string())
    };
    let sealed =
        age::encrypt(&scrypt, id_text.as_bytes()).map_err(|e| HoError::Crypto(e.to_string()))?;

    // The receipt-signing key.
    let seed = random32()?;

    // The TLS CA and the server certificate it signs.
    let tls = make_tls(&["127.0.0.1", "localhost"])?;

    write_new_private(&dir.signing_key(), seed.to_hex().as_bytes())?;
    write_new_private(&dir.ca_key(), tls.ca_key_pem.as_bytes())?;
    write_new_private(&dir.ca_cert(), tls.ca_cert_pem.as_bytes())?;
    write_new_private(&dir.server_key(), tls.server_key_pem.as_bytes())?;
    write_new_private(&dir.server_cert(), tls.server_cert_pem.as_bytes())?;
    write_new_private(&dir.recipient(), format!("{recipient}\n").as_bytes())?;
    // Last: its presence is what "initialised" means.
    write_new_private(&dir.identity(), &sealed)?;
    Ok(())
}

/// A CA and a server certificate signed by it, in PEM.
pub struct Tls {
    pub ca_cert_pem: String,
    pub ca_key_pem: Zeroizing<String>,
    pub server_cert_pem: String,
    pub server_key_pem: Zeroizing<String>,
}

/// Makes a self-signed CA (10 years) and a server certificate (2 years) for `names` (DNS names
/// or IP addresses).
pub fn make_tls(names: &[&str]) -> Result<Tls> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let err = |e: rcgen::Error| HoError::Crypto(e.to_string());
    let now = time::OffsetDateTime::now_utc();

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    // A name of its own, so two head offices' CAs are never confused for one another.
    let tag = hex::encode(&random32()?.expose()[..4]);
    ca.distinguished_name
        .push(DnType::CommonName, format!("Sealbox head office CA {tag}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::hours(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut server =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(err)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "Sealbox head office");
    server.not_before = now - time::Duration::hours(1);
    server.not_after = now + time::Duration::days(730);
    let server_key = KeyPair::generate().map_err(err)?;
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(err)?;

    Ok(Tls {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: Zeroizing::new(ca_key.serialize_pem()),
        server_cert_pem: server_cert.pem(),
        server_key_pem: Zeroizing::new(server_key.serialize_pem()),
    })
}

/// Issues a new server certificate from head office's CA for `names` (DNS names or IP
/// addresses), valid from `not_before` to `not_after`: for a new address, or to renew.
pub fn issue_server_cert(
    dir: &HoDir,
    names: &[&str],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Result<(String, Zeroizing<String>)> {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let err = |e: rcgen::Error| HoError::Crypto(e.to_string());
    let ca_pem = dir.load_ca_pem()?;
    let ca_key_pem = Zeroizing::new(read_string(&dir.ca_key())?);
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(err)?;
    // The CA re-created from its own certificate and key: same name and key, so what it signs
    // chains to the ca.pem devices already pin.
    let ca = CertificateParams::from_ca_cert_pem(&ca_pem)
        .map_err(err)?
        .self_signed(&ca_key)
        .map_err(err)?;
    let mut server =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(err)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "Sealbox head office");
    server.not_before = not_before;
    server.not_after = not_after;
    let key = KeyPair::generate().map_err(err)?;
    let cert = server.signed_by(&key, &ca, &ca_key).map_err(err)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}
