//! Head office's keys, in its data directory:
//!
//! ```text
//! identity.age       the age X25519 identity that opens sealed entries and escrow files,
//!                    itself age-encrypted under the admin's passphrase (scrypt)
//! recipient.txt      its public recipient (age1…), given to devices
//! receipt-key.json   the Ed25519 key that signs receipts: its verifying key and rotation
//!                    statements in the clear, its seed age-encrypted to head office's recipient
//! ca.pem, ca.key.age           the self-signed TLS CA devices pin (key encrypted likewise)
//! server.pem, server.key.age   the TLS server certificate for 127.0.0.1 and localhost
//! backup-recipient.txt         the recipient backups are encrypted to (see `backup`)
//! ```
//!
//! Every private key but the identity is sealed to the identity's own recipient, so the
//! passphrase (or the recovery shares, see [`crate::recovery`]) opens all of them, and changing
//! the passphrase re-wraps one file. `serve` unlocks them once at start ([`HoDir::unlock`]) and
//! drops the identity at once: a running server holds the receipt and TLS keys, not the key to
//! the entries. Older data directories hold `signing.key`, `ca.key` and `server.key` in the
//! clear: [`HoDir::unlock`] encrypts them and removes the plain files.

use crate::error::{HoError, Result};
pub use crate::recovery::Kit;
use age::secrecy::SecretString;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sealbox_protocol::entry::{b64_decode, b64_encode};
use sealbox_protocol::rotation::KeyRotation;
use sealbox_protocol::Secret32;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
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
    /// Long enough to protect every entry head office will ever hold.
    pub fn check_strength(&self) -> Result<()> {
        if self.0.chars().count() < 12 {
            return Err(HoError::WeakPassphrase);
        }
        Ok(())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// scrypt work factor (log2 N) of the identity file: about a quarter second here.
const SCRYPT_LOG_N: u8 = 16;

const RECEIPT_KEY_FORMAT: &str = "sealbox-ho-receipt-key/1";

/// `receipt-key.json`: public parts in the clear, the seed sealed to head office.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptKeyFile {
    format: String,
    /// The current verifying key (base64).
    verifying_key: String,
    /// The current seed, age-encrypted to head office's recipient, base64.
    sealed_seed: String,
    /// Every rotation so far, oldest first.
    #[serde(default)]
    rotations: Vec<KeyRotation>,
}

/// Head office's private keys, once unlocked.
struct Unlocked {
    signing: SigningKey,
    rotations: Vec<KeyRotation>,
    server_key_pem: Zeroizing<String>,
    ca_key_pem: Zeroizing<String>,
}

/// Paths of head office's files, and its private keys once [`HoDir::unlock`]ed.
#[derive(Clone)]
pub struct HoDir {
    root: PathBuf,
    unlocked: Option<Arc<Unlocked>>,
}

impl fmt::Debug for HoDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HoDir")
            .field("root", &self.root)
            .field("unlocked", &self.unlocked.is_some())
            .finish()
    }
}

impl HoDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HoDir {
            root: root.into(),
            unlocked: None,
        }
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
    pub fn receipt_key(&self) -> PathBuf {
        self.root.join("receipt-key.json")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key.age")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key.age")
    }
    pub fn backup_recipient(&self) -> PathBuf {
        self.root.join("backup-recipient.txt")
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("headoffice.db")
    }
    /// The plain key files of data directories made before keys were encrypted at rest.
    fn legacy(&self, name: &str) -> PathBuf {
        self.root.join(name)
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

    /// A short id of this head office, from its recipient: recovery shares carry it.
    pub fn id(&self) -> Result<String> {
        Ok(ho_id(&self.load_recipient()?))
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

    /// Writes `identity.age`: `identity` wrapped under `pass`, atomically (a crash leaves the
    /// old file or the new one), then read back with `pass` to prove it opens.
    pub fn write_identity(
        &self,
        identity: &age::x25519::Identity,
        pass: &Passphrase,
    ) -> Result<()> {
        pass.check_strength()?;
        let mut scrypt = age::scrypt::Recipient::new(pass.secret());
        scrypt.set_work_factor(SCRYPT_LOG_N);
        let id_text = {
            use age::secrecy::ExposeSecret;
            Zeroizing::new(identity.to_string().expose_secret().to_string())
        };
        let sealed = age::encrypt(&scrypt, id_text.as_bytes())
            .map_err(|e| HoError::Crypto(e.to_string()))?;
        write_atomic(&self.identity(), &sealed)?;
        let back = self.load_identity(pass)?;
        if back.to_public().to_string() != identity.to_public().to_string() {
            return Err(HoError::Crypto("identity.age did not read back".into()));
        }
        Ok(())
    }

    /// Re-wraps the identity under a new passphrase. Entries and keys are sealed to the
    /// recipient, which does not change, so nothing else is touched.
    pub fn change_passphrase(&self, old: &Passphrase, new: &Passphrase) -> Result<()> {
        self.require_initialised()?;
        new.check_strength()?;
        let identity = self.load_identity(old)?;
        self.write_identity(&identity, new)?;
        self.audit("passphrase.changed", serde_json::json!({}))
    }

    /// Records a key ceremony in the audit log, when there is a database.
    fn audit(&self, action: &str, detail: serde_json::Value) -> Result<()> {
        if let Some(mut store) = crate::store::Store::open_if_present(self)? {
            store.audit_append(crate::store::Audit::new(crate::now_ms(), action, detail))?;
        }
        Ok(())
    }

    /// Encrypts `plain` to head office's own recipient.
    fn seal_to_self(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let r = age::x25519::Recipient::from_str(&self.load_recipient()?)
            .map_err(|e| HoError::Config(format!("recipient.txt: {e}")))?;
        age::encrypt(&r, plain).map_err(|e| HoError::Crypto(e.to_string()))
    }

    /// Encrypts any plain key file left by an older version and removes the plain file. Needs
    /// only the public recipient. Returns the names of the files it encrypted.
    pub fn migrate_plain_keys(&self) -> Result<Vec<&'static str>> {
        let mut done = Vec::new();
        let plain_seed = self.legacy("signing.key");
        if plain_seed.exists() {
            if !self.receipt_key().exists() {
                let hex = Zeroizing::new(read_string(&plain_seed)?);
                let seed = Secret32::from_hex(&hex)
                    .ok_or_else(|| HoError::Config("signing.key is damaged".into()))?;
                self.write_receipt_key(&SigningKey::from_bytes(seed.expose()), Vec::new())?;
            }
            remove_synced(&plain_seed)?;
            done.push("signing.key");
        }
        for (name, sealed) in [("ca.key", self.ca_key()), ("server.key", self.server_key())] {
            let plain = self.legacy(name);
            if plain.exists() {
                if !sealed.exists() {
                    let pem = Zeroizing::new(
                        std::fs::read(&plain)
                            .map_err(HoError::io(format!("reading {}", plain.display())))?,
                    );
                    write_atomic(&sealed, &self.seal_to_self(&pem)?)?;
                }
                remove_synced(&plain)?;
                done.push(name);
            }
        }
        for name in &done {
            tracing::warn!(
                file = name,
                "a plain key file was encrypted at rest and removed"
            );
        }
        Ok(done)
    }

    /// Writes `receipt-key.json` for `key` with `rotations`, atomically.
    fn write_receipt_key(&self, key: &SigningKey, rotations: Vec<KeyRotation>) -> Result<()> {
        let sealed = self.seal_to_self(key.as_bytes())?;
        let file = ReceiptKeyFile {
            format: RECEIPT_KEY_FORMAT.into(),
            verifying_key: b64_encode(key.verifying_key().as_bytes()),
            sealed_seed: b64_encode(&sealed),
            rotations,
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| HoError::Crypto(e.to_string()))?;
        write_atomic(&self.receipt_key(), &json)
    }

    fn read_receipt_key(&self) -> Result<ReceiptKeyFile> {
        let text = read_string(&self.receipt_key())?;
        let f: ReceiptKeyFile = serde_json::from_str(&text)
            .map_err(|_| HoError::Config("receipt-key.json is damaged".into()))?;
        if f.format != RECEIPT_KEY_FORMAT {
            return Err(HoError::Config("receipt-key.json is damaged".into()));
        }
        Ok(f)
    }

    /// The verifying key devices check receipts with (public: no unlocking needed).
    pub fn load_verifying_key(&self) -> Result<VerifyingKey> {
        if !self.receipt_key().exists() && self.legacy("signing.key").exists() {
            let hex = Zeroizing::new(read_string(&self.legacy("signing.key"))?);
            let seed = Secret32::from_hex(&hex)
                .ok_or_else(|| HoError::Config("signing.key is damaged".into()))?;
            return Ok(SigningKey::from_bytes(seed.expose()).verifying_key());
        }
        sealbox_protocol::sync::verifying_key_from_b64(&self.read_receipt_key()?.verifying_key)
            .ok_or_else(|| HoError::Config("receipt-key.json is damaged".into()))
    }

    /// Every rotation of the receipt key so far, oldest first (public).
    pub fn rotations(&self) -> Result<Vec<KeyRotation>> {
        if !self.receipt_key().exists() {
            return Ok(Vec::new());
        }
        Ok(self.read_receipt_key()?.rotations)
    }

    /// Unlocks head office's private keys with the passphrase: migrates plain key files, opens
    /// the identity, opens the keys sealed to it, and drops the identity again.
    pub fn unlock(&self, pass: &Passphrase) -> Result<HoDir> {
        self.require_initialised()?;
        self.migrate_plain_keys()?;
        let identity = self.load_identity(pass)?;
        self.unlock_with(&identity)
    }

    /// [`HoDir::unlock`] with an identity already open.
    pub fn unlock_with(&self, identity: &age::x25519::Identity) -> Result<HoDir> {
        self.migrate_plain_keys()?;
        let damaged = |what: &str| {
            HoError::Config(format!("{what} does not open with head office's identity"))
        };
        let f = self.read_receipt_key()?;
        let sealed = b64_decode(&f.sealed_seed).ok_or_else(|| damaged("receipt-key.json"))?;
        let seed = Zeroizing::new(
            age::decrypt(identity, &sealed).map_err(|_| damaged("receipt-key.json"))?,
        );
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| damaged("receipt-key.json"))?;
        let signing = SigningKey::from_bytes(&seed);
        if b64_encode(signing.verifying_key().as_bytes()) != f.verifying_key {
            return Err(damaged("receipt-key.json"));
        }
        let open_pem = |p: PathBuf, what: &str| -> Result<Zeroizing<String>> {
            let sealed =
                std::fs::read(&p).map_err(HoError::io(format!("reading {}", p.display())))?;
            let plain = Zeroizing::new(age::decrypt(identity, &sealed).map_err(|_| damaged(what))?);
            Ok(Zeroizing::new(
                std::str::from_utf8(&plain)
                    .map_err(|_| damaged(what))?
                    .to_string(),
            ))
        };
        let unlocked = Unlocked {
            signing,
            rotations: f.rotations,
            server_key_pem: open_pem(self.server_key(), "server.key.age")?,
            ca_key_pem: open_pem(self.ca_key(), "ca.key.age")?,
        };
        Ok(HoDir {
            root: self.root.clone(),
            unlocked: Some(Arc::new(unlocked)),
        })
    }

    fn unlocked(&self) -> Result<&Unlocked> {
        self.unlocked.as_deref().ok_or(HoError::Locked)
    }

    /// The Ed25519 key that signs receipts ([`HoDir::unlock`] first).
    pub fn load_signing_key(&self) -> Result<SigningKey> {
        Ok(self.unlocked()?.signing.clone())
    }

    /// `receipt` with head office's rotation statements attached, so a device that trusts an
    /// older key learns the current one.
    pub fn with_rotations(
        &self,
        mut receipt: sealbox_protocol::sync::Receipt,
    ) -> sealbox_protocol::sync::Receipt {
        if let Some(u) = self.unlocked.as_deref() {
            receipt.rotations = u.rotations.clone();
        }
        receipt
    }

    /// The TLS server key (PEM) `init` made ([`HoDir::unlock`] first).
    pub fn load_server_key_pem(&self) -> Result<Zeroizing<String>> {
        Ok(self.unlocked()?.server_key_pem.clone())
    }

    /// The TLS CA key (PEM) ([`HoDir::unlock`] first).
    pub fn load_ca_key_pem(&self) -> Result<Zeroizing<String>> {
        Ok(self.unlocked()?.ca_key_pem.clone())
    }

    pub fn load_ca_pem(&self) -> Result<String> {
        read_string(&self.ca_cert())
    }

    /// Replaces the receipt key with a new one and records a rotation statement signed by the
    /// old key. Devices follow it with the next receipt they get; `serve` signs with the new
    /// key from its next start. Returns the old and new verifying keys.
    pub fn rotate_receipt_key(&self, pass: &Passphrase) -> Result<(VerifyingKey, VerifyingKey)> {
        let unlocked = self.unlock(pass)?;
        let u = unlocked.unlocked()?;
        let new = SigningKey::from_bytes(random32()?.expose());
        let mut rotations = u.rotations.clone();
        rotations.push(KeyRotation::sign(
            &u.signing,
            &new.verifying_key(),
            crate::now_ms(),
        ));
        // One file holds the key and its statements: a crash leaves the old pair or the new.
        self.write_receipt_key(&new, rotations)?;
        let (old_b64, new_b64) = (
            b64_encode(u.signing.verifying_key().as_bytes()),
            b64_encode(new.verifying_key().as_bytes()),
        );
        self.audit(
            "receipt_key.rotated",
            serde_json::json!({"from": old_b64, "to": new_b64}),
        )?;
        Ok((u.signing.verifying_key(), new.verifying_key()))
    }
}

/// A short id of the head office whose recipient is `recipient`: 12 hex digits.
pub fn ho_id(recipient: &str) -> String {
    sealbox_protocol::sha256_hex(recipient.trim().as_bytes())[..12].to_uppercase()
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

/// Opens a new file (never over an existing one) with owner-only permissions.
fn create_private(path: &Path) -> Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            HoError::OutputExists {
                path: path.display().to_string(),
            }
        } else {
            HoError::io(format!("creating {}", path.display()))(e)
        }
    })
}

/// Writes a new file (never over an existing one) with owner-only permissions, synced.
pub fn write_new_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = create_private(path)?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(HoError::io(format!("writing {}", path.display())))?;
    Ok(())
}

/// Replaces (or creates) `path` atomically: a private temp file beside it, written and synced,
/// renamed over it, and the directory synced. A crash leaves the old content or the new.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(&random32()?.expose()[..6])
    ));
    let written = (|| {
        write_new_private(&tmp, data)?;
        std::fs::rename(&tmp, path)
            .map_err(HoError::io(format!("replacing {}", path.display())))?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(HoError::io(format!("syncing {}", dir.display())))?;
    Ok(())
}

fn remove_synced(p: &Path) -> Result<()> {
    std::fs::remove_file(p).map_err(HoError::io(format!("removing {}", p.display())))?;
    sync_dir(p.parent().unwrap_or(Path::new(".")))
}

/// Makes every key and certificate of a new head office, and its recovery kit (the identity
/// split into `kit.shares` shares, any `kit.threshold` of which rebuild it). Ends with a
/// canary: a message sealed to the new recipient must open with the identity as read back from
/// disk with the passphrase, and every key must unlock; otherwise `identity.age` is removed
/// again and init has not happened.
pub fn create(
    dir: &HoDir,
    pass: &Passphrase,
    kit: &crate::recovery::KitOptions,
    backup_recipient: Option<&str>,
) -> Result<Kit> {
    pass.check_strength()?;
    kit.check()?;
    if let Some(r) = backup_recipient {
        crate::backup::parse_recipient(r)?;
    }
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    // The shares first, in memory: checked to rebuild the identity before anything is written.
    let shares = crate::recovery::split(&identity, &recipient, kit)?;

    // The receipt-signing key.
    let seed = random32()?;

    // The TLS CA and the server certificate it signs.
    let tls = make_tls(&["127.0.0.1", "localhost"])?;

    write_new_private(&dir.recipient(), format!("{recipient}\n").as_bytes())?;
    dir.write_receipt_key(&SigningKey::from_bytes(seed.expose()), Vec::new())?;
    write_new_private(&dir.ca_key(), &dir.seal_to_self(tls.ca_key_pem.as_bytes())?)?;
    write_new_private(&dir.ca_cert(), tls.ca_cert_pem.as_bytes())?;
    write_new_private(
        &dir.server_key(),
        &dir.seal_to_self(tls.server_key_pem.as_bytes())?,
    )?;
    write_new_private(&dir.server_cert(), tls.server_cert_pem.as_bytes())?;
    if let Some(r) = backup_recipient {
        write_new_private(
            &dir.backup_recipient(),
            format!("{}\n", r.trim()).as_bytes(),
        )?;
    }
    let written = crate::recovery::write_kit(&kit.dir, &shares, kit)?;
    // Last: its presence is what "initialised" means.
    dir.write_identity(&identity, pass)?;
    if let Err(e) = canary(dir, pass) {
        let _ = std::fs::remove_file(dir.identity());
        return Err(e);
    }
    Ok(written)
}

/// Seals a random message to the recipient on disk and opens it with the identity read back
/// from disk with the passphrase; unlocks every key.
fn canary(dir: &HoDir, pass: &Passphrase) -> Result<()> {
    let fail = |what: &str| HoError::Canary(what.to_string());
    let message = random32()?.to_hex();
    let sealed = dir.seal_to_self(message.as_bytes())?;
    let identity = dir
        .load_identity(pass)
        .map_err(|_| fail("identity.age does not open with the passphrase"))?;
    let opened =
        Zeroizing::new(age::decrypt(&identity, &sealed).map_err(|_| {
            fail("a message sealed to recipient.txt does not open with identity.age")
        })?);
    if opened.as_slice() != message.as_bytes() {
        return Err(fail("a sealed message came back changed"));
    }
    dir.unlock_with(&identity)
        .map_err(|_| fail("the receipt and TLS keys do not open"))?;
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
/// addresses), valid from `not_before` to `not_after`: for a new address, or to renew. `dir`
/// must be unlocked (the CA key is encrypted at rest).
pub fn issue_server_cert(
    dir: &HoDir,
    names: &[&str],
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Result<(String, Zeroizing<String>)> {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let err = |e: rcgen::Error| HoError::Crypto(e.to_string());
    let ca_pem = dir.load_ca_pem()?;
    let ca_key_pem = dir.load_ca_key_pem()?;
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
