//! Head office's admin commands, as plain functions the binary and the tests call.

use crate::config::Config;
use crate::db;
use crate::error::{HoError, Result};
use crate::keys::{self, HoDir, Passphrase};
use crate::now_ms;
use crate::store::{Audit, NewDevice, Store};
use ed25519_dalek::SigningKey;
use sealbox_protocol::enrolment::ENROLMENT_FORMAT;
use sealbox_protocol::entry::b64_encode;
use sealbox_protocol::escrow::{
    key_id, EscrowRecord, SummaryEscrowRecord, ESCROW_FORMAT, SUMMARY_ESCROW_FORMAT,
};
use sealbox_protocol::{EnrolmentFile, EventConfig};
use serde::Serialize;
use std::path::Path;
use zeroize::Zeroizing;

/// Creates head office's keys and database in `dir`, and the recovery kit `kit` describes;
/// backups go to `backup_recipient` when given (or later: `backup-key`).
pub fn init(
    dir: &Path,
    pass: &Passphrase,
    kit: &crate::recovery::KitOptions,
    backup_recipient: Option<&str>,
) -> Result<crate::recovery::Kit> {
    let ho = HoDir::new(dir);
    if ho.is_initialised() {
        return Err(HoError::AlreadyInitialised(dir.to_path_buf()));
    }
    let existed = dir.exists();
    let before = files_in(dir);
    let made = (|| -> Result<crate::recovery::Kit> {
        std::fs::create_dir_all(dir).map_err(HoError::io("creating the data directory"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(HoError::io("setting permissions"))?;
        }
        // A database already in use (another head office's, on PostgreSQL) is refused: its
        // entries are sealed to other keys.
        if Store::open(&ho)?.holds_data()? {
            return Err(HoError::TargetNotEmpty("events, devices or audit".into()));
        }
        keys::create(&ho, pass, kit, backup_recipient)
    })();
    let kit = match made {
        Ok(kit) => kit,
        Err(e) => {
            // A refused init (a short passphrase, a full disk) leaves nothing behind: no database,
            // no half of the keys, no directory that was not there before.
            for f in files_in(dir) {
                if !before.contains(&f) {
                    let _ = std::fs::remove_file(&f);
                }
            }
            if !existed {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
    };
    tracing::info!("head office initialised");
    Ok(kit)
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The names (DNS names and IP addresses) the server certificate head office serves covers.
fn served_names(ho: &HoDir, config: &Config) -> Result<Vec<String>> {
    let cert = config
        .tls_cert
        .as_ref()
        .map(|s| ho.root().join(s))
        .unwrap_or_else(|| ho.server_cert());
    let pem = std::fs::read_to_string(&cert)
        .map_err(HoError::io(format!("reading {}", cert.display())))?;
    let params = rcgen::CertificateParams::from_ca_cert_pem(&pem)
        .map_err(|e| HoError::Config(format!("{}: {e}", cert.display())))?;
    Ok(params
        .subject_alt_names
        .iter()
        .filter_map(|n| match n {
            rcgen::SanType::DnsName(d) => Some(d.as_str().to_ascii_lowercase()),
            rcgen::SanType::IpAddress(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect())
}

/// The host of an `https://` URL, without port or brackets, lowercased.
fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether a certificate for `names` is valid for `host` (an exact name or address, or a
/// `*.` wildcard for one label).
fn covers(names: &[String], host: &str) -> bool {
    let host_ip: Option<std::net::IpAddr> = host.parse().ok();
    names
        .iter()
        .any(|n| match (host_ip, n.parse::<std::net::IpAddr>()) {
            (Some(h), Ok(ip)) => h == ip,
            (Some(_), Err(_)) | (None, Ok(_)) => false,
            (None, Err(_)) => match n.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => n == host,
            },
        })
}

/// Validates and stores an event. Creating the same event again is a no-op; a different
/// config under an existing id is refused.
pub fn event_create(dir: &Path, config_json: &str) -> Result<EventConfig> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let config = EventConfig::from_json(config_json).map_err(HoError::BadEvent)?;
    let canonical = serde_json::to_string(&config).map_err(|e| HoError::Config(e.to_string()))?;
    let mut store = Store::open(&ho)?;
    // Staff codes issued since (`event staff-code`) are not part of the file.
    let without_codes = |json: &str| {
        serde_json::from_str::<EventConfig>(json).ok().map(|mut c| {
            c.staff_codes.clear();
            c.staff_codes_version = 0;
            c.revoked_staff_codes.clear();
            c
        })
    };
    match store.event_json(&config.id)? {
        Some(c) if c == canonical || without_codes(&c) == Some(config.clone()) => {}
        Some(_) => return Err(HoError::EventExists(config.id.clone())),
        None => {
            store.add_event(
                &config.id,
                &canonical,
                now_ms(),
                Audit::new(
                    now_ms(),
                    "event.created",
                    serde_json::json!({"event": config.id}),
                ),
            )?;
            tracing::info!(event = %config.id, "event created");
        }
    }
    Ok(config)
}

/// A staff code just issued: its id (recorded with each entry it captures) and the code, which
/// is shown once and kept nowhere.
pub struct IssuedStaffCode {
    pub id: String,
    pub code: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for IssuedStaffCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedStaffCode")
            .field("id", &self.id)
            .field("code", &"[redacted]")
            .finish()
    }
}

/// Issues a staff code for promoter mode: `s<n>-` and 8 random digits. The event's config
/// keeps only its Argon2id verifier (the device's PIN parameters) under the id, no name; devices
/// enrolled from now on receive it. Audited with the id.
pub fn staff_code_issue(dir: &Path, event_id: &str) -> Result<IssuedStaffCode> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let mut store = Store::open(&ho)?;
    let mut config = store.event(event_id)?;
    // A revoked id is never issued again: an entry's `captured_by` names one code for good.
    let n = config
        .staff_codes
        .iter()
        .map(|c| c.id.as_str())
        .chain(config.revoked_staff_codes.iter().map(String::as_str))
        .filter_map(|id| id.strip_prefix('s').and_then(|d| d.parse::<u32>().ok()))
        .max()
        .unwrap_or(0)
        + 1;
    let id = format!("s{n}");
    let mut digits = [0u8; 8];
    getrandom::getrandom(&mut digits).map_err(|e| HoError::Crypto(e.to_string()))?;
    let code = zeroize::Zeroizing::new(format!(
        "{id}-{}",
        digits
            .iter()
            .map(|b| char::from(b'0' + b % 10))
            .collect::<String>()
    ));
    zeroize::Zeroize::zeroize(&mut digits);
    let verifier = {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| HoError::Crypto(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| HoError::Crypto(e.to_string()))?;
        let params = argon2::Params::new(19 * 1024, 2, 1, None)
            .map_err(|e| HoError::Crypto(e.to_string()))?;
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(code.as_bytes(), &salt)
            .map_err(|e| HoError::Crypto(e.to_string()))?
            .to_string()
    };
    config.staff_codes.push(sealbox_protocol::event::StaffCode {
        id: id.clone(),
        verifier,
    });
    save_staff_codes(&mut store, event_id, config, "event.staff_code_issued", &id)?;
    tracing::info!(event = event_id, staff_code = %id, "staff code issued");
    Ok(IssuedStaffCode { id, code })
}

/// Stores an event's changed staff codes under the next version (devices take only a newer
/// one), audited as `action` with the code's id.
fn save_staff_codes(
    store: &mut Store,
    event_id: &str,
    mut config: sealbox_protocol::EventConfig,
    action: &str,
    id: &str,
) -> Result<()> {
    config.staff_codes_version += 1;
    config.validate().map_err(HoError::BadEvent)?;
    let canonical = serde_json::to_string(&config).map_err(|e| HoError::Config(e.to_string()))?;
    store.update_event(
        event_id,
        &canonical,
        Audit::new(
            now_ms(),
            action,
            serde_json::json!({"event": event_id, "staff_code": id}),
        ),
    )?;
    Ok(())
}

/// Revokes a staff code: its verifier leaves the event's config and its id is kept as revoked
/// (never issued again). Devices learn it with their next receipt. Audited with the id.
pub fn staff_code_revoke(dir: &Path, event_id: &str, id: &str) -> Result<()> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let mut store = Store::open(&ho)?;
    let mut config = store.event(event_id)?;
    let before = config.staff_codes.len();
    config.staff_codes.retain(|c| c.id != id);
    if config.staff_codes.len() == before {
        return Err(HoError::UnknownStaffCode(id.chars().take(16).collect()));
    }
    config.revoked_staff_codes.push(id.to_string());
    save_staff_codes(&mut store, event_id, config, "event.staff_code_revoked", id)?;
    tracing::info!(event = event_id, staff_code = %id, "staff code revoked");
    Ok(())
}

/// An event's staff codes by id, without anything secret: `(active ids, revoked ids, version)`.
pub fn staff_code_list(dir: &Path, event_id: &str) -> Result<(Vec<String>, Vec<String>, u64)> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let config = Store::open(&ho)?.event(event_id)?;
    Ok((
        config.staff_codes.into_iter().map(|c| c.id).collect(),
        config.revoked_staff_codes,
        config.staff_codes_version,
    ))
}

/// Two receipts that differ only in the staff codes they carry (issued or revoked between two
/// imports of one batch): the receipt already written stands.
fn same_but_staff_codes(a: &[u8], b: &[u8]) -> bool {
    let parse = |x: &[u8]| {
        serde_json::from_slice::<sealbox_protocol::sync::Receipt>(x)
            .ok()
            .map(|mut r| {
                r.staff_codes = None;
                r
            })
    };
    matches!((parse(a), parse(b)), (Some(x), Some(y)) if x == y)
}

/// The signed staff codes of `event_id` that a receipt carries to its device, once the event
/// has had a code issued; `None` before (or if the event cannot be read: the receipt goes out
/// without, and the device keeps what it has).
pub fn staff_codes_update(
    store: &mut Store,
    event_id: &str,
    key: &ed25519_dalek::SigningKey,
) -> Option<sealbox_protocol::staff::StaffCodesUpdate> {
    match store.event(event_id) {
        Ok(c) if c.staff_codes_version > 0 => {
            Some(sealbox_protocol::staff::StaffCodesUpdate::sign(&c, key))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(
                event = event_id,
                code = e.code(),
                "staff codes not read for the receipt"
            );
            None
        }
    }
}

/// Enrols a device: makes its token and signing key, keeps only the token's hash and the
/// verifying key, and writes the (secret) enrolment file to `out`.
pub fn enroll(
    dir: &Path,
    device: &str,
    event_id: &str,
    url: Option<&str>,
    out: &Path,
) -> Result<()> {
    enroll_to(dir, device, event_id, url, Some(out)).map(|_| ())
}

/// [`enroll`], the enrolment file kept in memory (the console hands it to the browser once)
/// instead of written to disk.
pub fn enroll_bytes(
    dir: &Path,
    device: &str,
    event_id: &str,
    url: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>> {
    Ok(enroll_to(dir, device, event_id, url, None)?.unwrap_or_default())
}

fn enroll_to(
    dir: &Path,
    device: &str,
    event_id: &str,
    url: Option<&str>,
    out: Option<&Path>,
) -> Result<Option<Zeroizing<Vec<u8>>>> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let config = Config::load(dir)?;
    let server_url = url.unwrap_or(&config.public_url).to_string();
    let Some(host) = url_host(&server_url) else {
        return Err(HoError::BadUrl);
    };
    let names = served_names(&ho, &config)?;
    if !covers(&names, &host) {
        return Err(HoError::UrlNotCovered {
            url: server_url,
            host,
            names: names.join(", "),
        });
    }
    if device.trim().is_empty()
        || device.len() > 64
        || !device
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(HoError::BadDeviceName);
    }
    let mut store = Store::open(&ho)?;
    let event = store.event(event_id)?;
    if store.device_exists(device)? {
        return Err(HoError::DeviceExists(device.to_string()));
    }
    if let Some(out) = out.filter(|o| o.exists()) {
        return Err(HoError::OutputExists {
            path: out.display().to_string(),
        });
    }
    let token = keys::random32()?;
    let seed = keys::random32()?;
    let verifying = SigningKey::from_bytes(seed.expose()).verifying_key();
    let ho_verifying = ho.load_verifying_key()?;
    let file = EnrolmentFile {
        format: ENROLMENT_FORMAT.into(),
        server_url,
        ca_cert_pem: ho.load_ca_pem()?,
        ho_recipient: ho.load_recipient()?,
        ho_verifying_key: b64_encode(ho_verifying.as_bytes()),
        event,
        device_name: device.to_string(),
        device_token: token.clone(),
        device_signing_key: seed,
    };
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(&file).map_err(|e| HoError::Crypto(e.to_string()))?,
    );
    // The file first: if writing it fails, no device row points at secrets nobody holds.
    if let Some(out) = out {
        keys::write_new_private(out, &json)?;
    }
    let token_sha256 = sealbox_protocol::sha256_hex(token.expose());
    let verifying_key = b64_encode(verifying.as_bytes());
    let inserted = store.add_device(
        &NewDevice {
            name: device,
            event_id,
            token_sha256: &token_sha256,
            verifying_key: &verifying_key,
            enrolled_at_ms: now_ms(),
        },
        Audit::new(
            now_ms(),
            "device.enrolled",
            serde_json::json!({"device": device, "event": event_id}),
        ),
    );
    if let Err(e) = inserted {
        if let Some(out) = out {
            let _ = std::fs::remove_file(out);
        }
        return Err(e);
    }
    tracing::info!(device, event = event_id, "device enrolled");
    Ok(match out {
        Some(_) => None,
        None => Some(json),
    })
}

/// What an opened escrow file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenedEscrow {
    /// A device's database key (`escrow.age`), for `sealbox recover`.
    DatabaseKey { device_name: String },
    /// A device's summary key (`summary-escrow.age`), for `sealbox pin reset`.
    SummaryKey { device_name: String },
}

/// Opens a device's escrow file (`escrow.age` or `summary-escrow.age`) with head office's
/// identity and writes the (secret) key file the device's `recover` or `pin reset` takes.
pub fn escrow_open(
    dir: &Path,
    pass: &Passphrase,
    escrow: &Path,
    out: &Path,
) -> Result<OpenedEscrow> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let identity = ho.load_identity(pass)?;
    let sealed =
        std::fs::read(escrow).map_err(HoError::io(format!("reading {}", escrow.display())))?;
    let plain = Zeroizing::new(age::decrypt(&identity, &sealed).map_err(|_| HoError::BadEscrow)?);
    let opened = if let Ok(record) = serde_json::from_slice::<SummaryEscrowRecord>(&plain) {
        if record.format != SUMMARY_ESCROW_FORMAT {
            return Err(HoError::BadEscrow);
        }
        OpenedEscrow::SummaryKey {
            device_name: record.device_name.clone(),
        }
    } else {
        let record: EscrowRecord =
            serde_json::from_slice(&plain).map_err(|_| HoError::BadEscrow)?;
        if record.format != ESCROW_FORMAT || key_id(&record.key) != record.key_id {
            return Err(HoError::BadEscrow);
        }
        OpenedEscrow::DatabaseKey {
            device_name: record.device_name.clone(),
        }
    };
    keys::write_new_private(out, &plain)?;
    tracing::info!(?opened, "escrow opened");
    Ok(opened)
}

/// Counts for `status`: no personal data.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HoStatus {
    /// The database's schema version (an upgrade shows it migrated).
    pub schema: i64,
    pub events: Vec<EventCount>,
    pub devices: Vec<DeviceCount>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EventCount {
    pub id: String,
    pub entries: u64,
    /// Entries kept in the quarantine: refused as entries (from a batch file) or that do not
    /// open; never exported, purged with the event.
    pub quarantined: u64,
    /// Entries deleted (by deletion requests or at the end of retention), as tombstones.
    pub deleted: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceCount {
    pub name: String,
    pub event: String,
    pub entries: u64,
    pub revoked: bool,
}

pub fn status(dir: &Path) -> Result<HoStatus> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let mut store = Store::open(&ho)?;
    let (events, devices) = store.status()?;
    Ok(HoStatus {
        schema: store.schema_version()?,
        events,
        devices,
    })
}

/// Revokes a device: its token stops working at once (401).
pub fn device_revoke(dir: &Path, device: &str) -> Result<()> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let found = Store::open(&ho)?.revoke_device(
        device,
        Audit::new(
            now_ms(),
            "device.revoked",
            serde_json::json!({"device": device}),
        ),
    )?;
    if !found {
        return Err(HoError::NoSuchDevice(device.to_string()));
    }
    tracing::info!(device, "device revoked");
    Ok(())
}

/// What importing a batch file did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub device: String,
    pub batch_id: uuid::Uuid,
    pub entries: usize,
    /// Entries kept in the quarantine (acknowledged, never exported): see `status`.
    pub quarantined: usize,
    /// Entries of the batch head office held before this import (sent by sync or in another
    /// file): not stored again.
    pub already_held: usize,
    /// The batch had been imported before (or synced): the same receipt again.
    pub duplicate: bool,
    /// The receipt file was already there, identical: left as it was.
    pub receipt_kept: bool,
    /// The device is revoked and its entries were accepted deliberately (audited).
    pub accepted_revoked: bool,
}

/// How to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Accept the entries of a revoked device (a lost device that turned up): audited.
    pub accept_revoked: bool,
}

/// [`import_with`] with the default options: a revoked device's file is refused.
pub fn import(
    dir: &Path,
    pass: &Passphrase,
    file: &Path,
    receipt_out: &Path,
) -> Result<ImportReport> {
    import_with(dir, pass, file, receipt_out, ImportOptions::default())
}

/// A batch file, opened and checked.
pub struct OpenedBatch {
    pub device: String,
    pub event_id: String,
    pub revoked: bool,
    pub payload: sealbox_protocol::batch::BatchPayload,
}

/// What `import` checks of a batch file before anything else: it decrypts with head office's
/// identity, is a signed batch, names an enrolled device, and carries that device's signature
/// over its manifest and entries. Whether a revoked device's file is taken is the caller's call.
pub fn open_batch(
    identity: &age::x25519::Identity,
    sealed: &[u8],
    conn: &rusqlite::Connection,
) -> Result<OpenedBatch> {
    open_batch_with(identity, sealed, &mut |name| db::device_keys(conn, name))
}

/// [`open_batch`] against head office's store.
pub fn open_batch_in(
    identity: &age::x25519::Identity,
    sealed: &[u8],
    store: &mut Store,
) -> Result<OpenedBatch> {
    open_batch_with(identity, sealed, &mut |name| store.device_keys(name))
}

/// A device's event, verifying key and revocation, by name.
type DeviceKeys<'a> = dyn FnMut(&str) -> Result<Option<(String, String, bool)>> + 'a;

fn open_batch_with(
    identity: &age::x25519::Identity,
    sealed: &[u8],
    device_keys: &mut DeviceKeys<'_>,
) -> Result<OpenedBatch> {
    use sealbox_protocol::batch::SignedBatch;
    let plain = Zeroizing::new(
        age::decrypt(identity, sealed)
            .map_err(|_| HoError::BadBatch("it does not decrypt".into()))?,
    );
    let signed: SignedBatch =
        serde_json::from_slice(&plain).map_err(|_| HoError::BadBatch("not a batch".into()))?;
    let claimed = signed
        .payload_unverified()
        .map_err(|e| HoError::BadBatch(e.to_string()))?;
    let device = claimed.manifest.device.clone();
    let found = device_keys(&device)?;
    let (event_id, vk, revoked) = found.ok_or_else(|| HoError::UnknownDevice(device.clone()))?;
    let vk = sealbox_protocol::sync::verifying_key_from_b64(&vk)
        .ok_or_else(|| HoError::Config("a device's verifying key is damaged".into()))?;
    let payload = signed
        .verify(&vk)
        .map_err(|e| HoError::BadBatch(e.to_string()))?;
    Ok(OpenedBatch {
        device,
        event_id,
        revoked,
        payload,
    })
}

/// Where the receipt goes, checked before anything is stored.
enum ReceiptOut {
    /// A new file, reserved as a temp file in its folder (so the folder exists and is
    /// writable), renamed into place once the receipt is signed.
    New(tempfile::NamedTempFile),
    /// The file is there and is head office's receipt for this very batch: it is kept if the
    /// receipt comes out the same.
    Same(Vec<u8>),
}

/// Imports a batch file carried from a device: opens it with head office's identity, checks the
/// device's signature against an enrolled device (unrevoked, unless `accept_revoked`), stores
/// the entries exactly as a sync does, and writes the signed receipt file. Where the receipt
/// goes is checked before anything is stored: an existing file is refused unless it is the
/// same receipt, a missing or read-only folder is refused, and nothing is stored either way.
pub fn import_with(
    dir: &Path,
    pass: &Passphrase,
    file: &Path,
    receipt_out: &Path,
    opts: ImportOptions,
) -> Result<ImportReport> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let existing = match std::fs::read(receipt_out) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => {
            return Err(HoError::OutputExists {
                path: receipt_out.display().to_string(),
            })
        }
    };
    let identity = ho.load_identity(pass)?;
    let sealed = std::fs::read(file).map_err(HoError::io(format!("reading {}", file.display())))?;
    let mut store = Store::open(&ho)?;
    let OpenedBatch {
        device,
        event_id,
        revoked,
        payload,
    } = open_batch_in(&identity, &sealed, &mut store)?;
    if revoked && !opts.accept_revoked {
        return Err(HoError::RevokedDevice(device));
    }
    let ho = ho.unlock_with(&identity)?;
    let key = ho.load_signing_key()?;
    let out = match existing {
        // Only head office's own receipt for this batch may stay: it then holds the batch, and
        // importing again gives the same receipt.
        Some(bytes) => {
            let same_batch = serde_json::from_slice::<sealbox_protocol::sync::Receipt>(&bytes)
                .ok()
                .filter(|r| r.verify(&key.verifying_key()).is_ok())
                .is_some_and(|r| r.batch_id == payload.manifest.batch_id && r.device == device);
            if !same_batch {
                return Err(HoError::OutputExists {
                    path: receipt_out.display().to_string(),
                });
            }
            ReceiptOut::Same(bytes)
        }
        None => {
            let parent = receipt_out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut builder = tempfile::Builder::new();
            builder.prefix(".sealbox-receipt-");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                builder.permissions(std::fs::Permissions::from_mode(0o600));
            }
            let tmp = builder
                .tempfile_in(parent)
                .map_err(|source| HoError::OutputUnwritable {
                    path: receipt_out.display().to_string(),
                    dir: parent.display().to_string(),
                    source,
                })?;
            ReceiptOut::New(tmp)
        }
    };
    let req = sealbox_protocol::sync::SyncRequest {
        batch_id: payload.manifest.batch_id,
        entries: payload.entries,
    };
    let mut seen = std::collections::HashSet::with_capacity(req.entries.len());
    if req.entries.is_empty() || !req.entries.iter().all(|e| seen.insert(e.id)) {
        return Err(HoError::BadBatch(
            "it holds no entry, or an entry twice".into(),
        ));
    }
    let ids: Vec<uuid::Uuid> = req.entries.iter().map(|e| e.id).collect();
    let already_held = store.held_count(&ids)?;
    // Entries head office will not take as entries (an envelope over a limit, another version
    // of an id already held) are kept in the quarantine and acknowledged: this file is the
    // device's last word on them.
    let stored = store
        .ingest(&device, &req, db::Source::BatchFile, &key, now_ms())
        .map_err(|e| match e {
            db::IngestError::Storage(e) => HoError::Storage(e),
            other => HoError::BadBatch(other.to_string()),
        })?;
    let (mut receipt, fresh) = (stored.receipt, stored.fresh);
    receipt.staff_codes = staff_codes_update(&mut store, &event_id, &key);
    if stored.quarantined > 0 {
        tracing::warn!(%device, batch = %req.batch_id, quarantined = stored.quarantined, "entries kept in the quarantine");
    }
    let json = serde_json::to_vec_pretty(&ho.with_rotations(receipt))
        .map_err(|e| HoError::Crypto(e.to_string()))?;
    let receipt_kept = match out {
        ReceiptOut::Same(bytes) if bytes == json || same_but_staff_codes(&bytes, &json) => true,
        ReceiptOut::Same(_) => {
            return Err(HoError::OutputExists {
                path: receipt_out.display().to_string(),
            })
        }
        ReceiptOut::New(mut tmp) => {
            use std::io::Write;
            tmp.write_all(&json)
                .and_then(|_| tmp.as_file().sync_all())
                .map_err(HoError::io(format!("writing {}", receipt_out.display())))?;
            tmp.persist_noclobber(receipt_out)
                .map_err(|e| HoError::io(format!("writing {}", receipt_out.display()))(e.error))?;
            false
        }
    };
    store.audit_append(Audit::new(
        now_ms(),
        "batch.imported",
        serde_json::json!({"device": device, "batch": req.batch_id, "entries": req.entries.len(),
            "already_held": already_held, "quarantined": stored.quarantined, "duplicate": !fresh, "accepted_revoked": revoked}),
    ))?;
    if revoked {
        tracing::warn!(%device, batch = %req.batch_id, "entries of a revoked device accepted");
    }
    tracing::info!(%device, batch = %req.batch_id, entries = req.entries.len(), "batch imported");
    Ok(ImportReport {
        device,
        batch_id: req.batch_id,
        entries: req.entries.len(),
        quarantined: stored.quarantined,
        already_held,
        duplicate: !fresh,
        receipt_kept,
        accepted_revoked: revoked,
    })
}

/// Checks head office's audit chain: `(rows, first broken row)`.
pub fn audit_verify(dir: &Path) -> Result<(u64, Option<i64>)> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    Store::open(&ho)?.audit_verify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_and_certificate_names() {
        assert_eq!(
            url_host("https://HO.example:8443/x").as_deref(),
            Some("ho.example")
        );
        assert_eq!(url_host("https://[::1]:8443").as_deref(), Some("::1"));
        assert_eq!(url_host("https://127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("http://ho.example"), None);
        assert_eq!(url_host("https://"), None);
        let names = vec![
            "127.0.0.1".to_string(),
            "localhost".into(),
            "*.fair.example".into(),
        ];
        assert!(covers(&names, "127.0.0.1"));
        assert!(covers(&names, "localhost"));
        assert!(covers(&names, "ho.fair.example"));
        assert!(!covers(&names, "a.b.fair.example"));
        assert!(!covers(&names, "fair.example"));
        assert!(!covers(&names, "192.168.1.10"));
        assert!(!covers(&names, "ho.example"));
        assert!(!covers(&names, "::1"));
    }
}
