//! Head office's admin commands, as plain functions the binary and the tests call.

use crate::config::Config;
use crate::db;
use crate::error::{HoError, Result};
use crate::keys::{self, HoDir, Passphrase};
use crate::now_ms;
use ed25519_dalek::SigningKey;
use rusqlite::OptionalExtension;
use sealbox_protocol::enrolment::ENROLMENT_FORMAT;
use sealbox_protocol::entry::b64_encode;
use sealbox_protocol::escrow::{key_id, EscrowRecord, ESCROW_FORMAT};
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
    std::fs::create_dir_all(dir).map_err(HoError::io("creating the data directory"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(HoError::io("setting permissions"))?;
    }
    db::open(&ho.db())?;
    let kit = keys::create(&ho, pass, kit, backup_recipient)?;
    tracing::info!("head office initialised");
    Ok(kit)
}

/// Validates and stores an event. Creating the same event again is a no-op; a different
/// config under an existing id is refused.
pub fn event_create(dir: &Path, config_json: &str) -> Result<EventConfig> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let config = EventConfig::from_json(config_json).map_err(|e| HoError::Config(e.to_string()))?;
    let canonical = serde_json::to_string(&config).map_err(|e| HoError::Config(e.to_string()))?;
    let conn = db::open(&ho.db())?;
    let existing: Option<String> = conn
        .query_row(
            "SELECT config FROM events WHERE id = ?1",
            [&config.id],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(c) if c == canonical => {}
        Some(_) => return Err(HoError::EventExists(config.id.clone())),
        None => {
            conn.execute(
                "INSERT INTO events (id, config, created_at_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![config.id, canonical, now_ms()],
            )?;
            crate::audit::append(
                &conn,
                now_ms(),
                "event.created",
                &serde_json::json!({"event": config.id}),
            )?;
            tracing::info!(event = %config.id, "event created");
        }
    }
    Ok(config)
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
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let config = Config::load(dir)?;
    let server_url = url.unwrap_or(&config.public_url).to_string();
    if !server_url.starts_with("https://") {
        return Err(HoError::Config("--url must start with https://".into()));
    }
    if device.trim().is_empty()
        || device.len() > 64
        || !device
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(HoError::Config(
            "a device name is 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let conn = db::open(&ho.db())?;
    let event_json: String = conn
        .query_row("SELECT config FROM events WHERE id = ?1", [event_id], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| HoError::UnknownEvent(event_id.to_string()))?;
    let event: EventConfig =
        serde_json::from_str(&event_json).map_err(|e| HoError::Config(e.to_string()))?;
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE name = ?1)",
        [device],
        |r| r.get(0),
    )?;
    if exists {
        return Err(HoError::DeviceExists(device.to_string()));
    }
    if out.exists() {
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
    keys::write_new_private(out, &json)?;
    let inserted = conn.execute(
        "INSERT INTO devices (name, event_id, token_sha256, verifying_key, enrolled_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            device,
            event_id,
            sealbox_protocol::sha256_hex(token.expose()),
            b64_encode(verifying.as_bytes()),
            now_ms()
        ],
    );
    if let Err(e) = inserted {
        let _ = std::fs::remove_file(out);
        return Err(e.into());
    }
    crate::audit::append(
        &conn,
        now_ms(),
        "device.enrolled",
        &serde_json::json!({"device": device, "event": event_id}),
    )?;
    tracing::info!(device, event = event_id, "device enrolled");
    Ok(())
}

/// Opens a device's escrow file with head office's identity and writes the (secret) escrow key
/// file the device's `recover` takes.
pub fn escrow_open(
    dir: &Path,
    pass: &Passphrase,
    escrow: &Path,
    out: &Path,
) -> Result<EscrowRecord> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let identity = ho.load_identity(pass)?;
    let sealed =
        std::fs::read(escrow).map_err(HoError::io(format!("reading {}", escrow.display())))?;
    let plain = Zeroizing::new(age::decrypt(&identity, &sealed).map_err(|_| HoError::BadEscrow)?);
    let record: EscrowRecord = serde_json::from_slice(&plain).map_err(|_| HoError::BadEscrow)?;
    if record.format != ESCROW_FORMAT || key_id(&record.key) != record.key_id {
        return Err(HoError::BadEscrow);
    }
    keys::write_new_private(out, &plain)?;
    tracing::info!(device = %record.device_name, "escrow opened");
    Ok(record)
}

/// Counts for `status`: no personal data.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HoStatus {
    pub events: Vec<EventCount>,
    pub devices: Vec<DeviceCount>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EventCount {
    pub id: String,
    pub entries: u64,
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
    let conn = db::open(&ho.db())?;
    let mut stmt = conn.prepare(
        "SELECT e.id, (SELECT count(*) FROM entries x WHERE x.event_id = e.id) FROM events e ORDER BY e.id",
    )?;
    let events = stmt
        .query_map([], |r| {
            Ok(EventCount {
                id: r.get(0)?,
                entries: r.get::<_, i64>(1)? as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT d.name, d.event_id, (SELECT count(*) FROM entries x WHERE x.device = d.name), d.revoked
         FROM devices d ORDER BY d.name",
    )?;
    let devices = stmt
        .query_map([], |r| {
            Ok(DeviceCount {
                name: r.get(0)?,
                event: r.get(1)?,
                entries: r.get::<_, i64>(2)? as u64,
                revoked: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(HoStatus { events, devices })
}

/// Revokes a device: its token stops working at once (401).
pub fn device_revoke(dir: &Path, device: &str) -> Result<()> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let conn = db::open(&ho.db())?;
    let n = conn.execute("UPDATE devices SET revoked = 1 WHERE name = ?1", [device])?;
    if n == 0 {
        return Err(HoError::Config(format!("no device named {device:?}")));
    }
    crate::audit::append(
        &conn,
        now_ms(),
        "device.revoked",
        &serde_json::json!({"device": device}),
    )?;
    tracing::info!(device, "device revoked");
    Ok(())
}

/// What importing a batch file did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub device: String,
    pub batch_id: uuid::Uuid,
    pub entries: usize,
    /// The batch had been imported before (or synced): the same receipt again.
    pub duplicate: bool,
}

/// Imports a batch file carried from a device: opens it with head office's identity, checks the
/// device's signature against an enrolled, unrevoked device, stores the entries exactly as a
/// sync does, and writes the signed receipt file.
pub fn import(
    dir: &Path,
    pass: &Passphrase,
    file: &Path,
    receipt_out: &Path,
) -> Result<ImportReport> {
    use sealbox_protocol::batch::SignedBatch;
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    if receipt_out.exists() {
        return Err(HoError::OutputExists {
            path: receipt_out.display().to_string(),
        });
    }
    let identity = ho.load_identity(pass)?;
    let sealed = std::fs::read(file).map_err(HoError::io(format!("reading {}", file.display())))?;
    let plain = Zeroizing::new(
        age::decrypt(&identity, &sealed)
            .map_err(|_| HoError::BadBatch("it does not decrypt".into()))?,
    );
    let signed: SignedBatch =
        serde_json::from_slice(&plain).map_err(|_| HoError::BadBatch("not a batch".into()))?;
    let claimed = signed
        .payload_unverified()
        .map_err(|e| HoError::BadBatch(e.to_string()))?;
    let mut conn = db::open(&ho.db())?;
    let device = claimed.manifest.device.clone();
    let found: Option<(String, String, bool)> = conn
        .query_row(
            "SELECT event_id, verifying_key, revoked FROM devices WHERE name = ?1",
            [&device],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (event_id, vk, revoked) = found.ok_or_else(|| HoError::UnknownDevice(device.clone()))?;
    if revoked {
        return Err(HoError::UnknownDevice(device));
    }
    let vk = sealbox_protocol::sync::verifying_key_from_b64(&vk)
        .ok_or_else(|| HoError::Config("a device's verifying key is damaged".into()))?;
    let payload = signed
        .verify(&vk)
        .map_err(|e| HoError::BadBatch(e.to_string()))?;
    let cfg = Config::load(dir)?;
    let mut limits = crate::server::Limits::from_config(&cfg);
    limits.max_entries_per_batch = usize::MAX;
    let auth = db::DeviceAuth {
        name: device.clone(),
        event_id,
        revoked,
    };
    let req = sealbox_protocol::sync::SyncRequest {
        batch_id: payload.manifest.batch_id,
        entries: payload.entries,
    };
    crate::server::validate(&req, &auth, &limits).map_err(|r| HoError::BadBatch(r.message))?;
    let ho = ho.unlock_with(&identity)?;
    let key = ho.load_signing_key()?;
    let (receipt, fresh) =
        db::ingest(&mut conn, &device, &req, &key, now_ms()).map_err(|e| match e {
            db::IngestError::Storage(e) => HoError::Storage(e),
            other => HoError::BadBatch(other.to_string()),
        })?;
    let json = serde_json::to_vec_pretty(&ho.with_rotations(receipt))
        .map_err(|e| HoError::Crypto(e.to_string()))?;
    keys::write_new_private(receipt_out, &json)?;
    crate::audit::append(
        &conn,
        now_ms(),
        "batch.imported",
        &serde_json::json!({"device": device, "batch": req.batch_id, "entries": req.entries.len(), "duplicate": !fresh}),
    )?;
    tracing::info!(%device, batch = %req.batch_id, entries = req.entries.len(), "batch imported");
    Ok(ImportReport {
        device,
        batch_id: req.batch_id,
        entries: req.entries.len(),
        duplicate: !fresh,
    })
}

/// Checks head office's audit chain: `(rows, first broken row)`.
pub fn audit_verify(dir: &Path) -> Result<(u64, Option<i64>)> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let conn = db::open(&ho.db())?;
    crate::audit::verify(&conn)
}
