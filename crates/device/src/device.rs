//! The [`Device`]: one enrolled data directory, opened with its key from the keychain.

use crate::audit;
use crate::error::{DeviceError, Result};
use crate::files::{self, DataDir, DeviceJson, DEVICE_FORMAT, KEY_ACCOUNT};
use crate::keychain::{KeyStore, KeychainError};
use crate::now_ms;
use crate::pin::{self, Attempts, Moment, Pin};
use crate::seal::Sealer;
use crate::store::{self, entries, Keying};
use crate::summary::{PinWrap, SummaryKey, SummaryLock};
use rusqlite::Connection;
use sealbox_protocol::entry::{self, EntryEnvelope, PayloadPlaintext};
use sealbox_protocol::escrow::{key_id, EscrowRecord, ESCROW_FORMAT};
use sealbox_protocol::escrow::{SummaryEscrowRecord, SUMMARY_ESCROW_FORMAT};
use sealbox_protocol::staff::StaffCodesUpdate;
use sealbox_protocol::{EnrolmentFile, EventConfig, Secret32};
use serde::Serialize;
use serde_json::json;
use std::io::BufRead;
use std::path::Path;
use uuid::Uuid;
use zeroize::Zeroizing;

/// An open, enrolled device.
pub struct Device {
    dir: DataDir,
    meta: DeviceJson,
    pub(crate) conn: Connection,
    config: EventConfig,
    consent_sha256: String,
    sealer: Sealer,
    /// What submit seals display summaries to; `None` until a PIN is first set.
    summary_lock: Option<SummaryLock>,
    /// The summary key while the manager has given the PIN (`unlock_summaries`).
    summary_key: Option<SummaryKey>,
}

/// What `enroll` did.
#[derive(Debug, Clone, Serialize)]
pub struct EnrolReport {
    pub device: String,
    pub event: String,
    pub data_dir: String,
    pub escrow: String,
}

/// A device's state for `status`: counts and health, never personal data.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub device: Option<String>,
    pub event: Option<String>,
    pub pending: Option<u64>,
    pub exported: Option<u64>,
    /// Entries head office refused on their own (quarantined: kept encrypted, reported).
    pub refused: Option<u64>,
    pub erased: Option<u64>,
    /// When the oldest entry still waiting for head office was captured.
    pub oldest_waiting_ms: Option<i64>,
    /// Whether that entry has waited longer than the event's `warn_waiting_days`.
    pub waiting_too_long: bool,
    /// `ok`, `not_enrolled`, `key_lost`, `wrong_key`, `database_corrupt`, `database_missing`,
    /// `orphan_database`, `locked` (the keychain could not be asked).
    pub database: String,
    /// The database's schema version, when it opened.
    pub schema: Option<i64>,
    /// `ok`, `missing`, `unavailable`, `not_checked`.
    pub keychain: String,
    /// The one-line reason when `database` is not `ok`.
    pub problem: Option<String>,
    /// The same reason in Chinese.
    #[serde(skip)]
    pub problem_zh: Option<String>,
}

pub use crate::store::entries::{Counts, EntryState, ListedEntry};

fn keychain_err(e: KeychainError) -> DeviceError {
    match e {
        KeychainError::Unavailable(s) => DeviceError::KeychainUnavailable(s),
        KeychainError::Malformed => DeviceError::WrongKey,
    }
}

fn random32() -> Result<Secret32> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| DeviceError::Seal(e.to_string()))?;
    let s = Secret32::from_bytes(b);
    zeroize::Zeroize::zeroize(&mut b);
    Ok(s)
}

/// A secret checked under a rate limit: where its counter lives, its audit rows' prefix, and
/// the error while it must wait.
struct Limited {
    attempts_key: &'static str,
    audit: &'static str,
    locked: fn(u64) -> DeviceError,
}

impl Limited {
    const PIN: Limited = Limited {
        attempts_key: keys::PIN_ATTEMPTS,
        audit: "pin",
        locked: DeviceError::PinLocked,
    };
    const STAFF: Limited = Limited {
        attempts_key: keys::STAFF_ATTEMPTS,
        audit: "staff_code",
        locked: DeviceError::StaffCodeLocked,
    };
}

mod keys {
    pub const EVENT: &str = "event_config";
    pub const HO_RECIPIENT: &str = "ho_recipient";
    pub const HO_VERIFYING_KEY: &str = "ho_verifying_key";
    pub const CA_CERT: &str = "ca_cert_pem";
    pub const SERVER_URL: &str = "server_url";
    pub const DEVICE_NAME: &str = "device_name";
    pub const DEVICE_TOKEN: &str = "device_token";
    pub const SIGNING_KEY: &str = "device_signing_key";
    pub const PIN_HASH: &str = "pin_hash";
    pub const PIN_ATTEMPTS: &str = "pin_attempts";
    pub const STAFF_ATTEMPTS: &str = "staff_code_attempts";
    pub const SUMMARY_RECIPIENT: &str = "summary_recipient";
    pub const SUMMARY_PIN_WRAP: &str = "summary_pin_wrap";
}

impl Device {
    /// Enrols a new device in `dir` from an enrolment file's text: a new random database key in
    /// the keychain, the encrypted database holding the device's secrets, the escrow file, and
    /// last `device.json`. On failure everything it made is removed again; if the process is
    /// killed half-way, the marker it wrote first (`DIR/enrolling`, the store id) lets the next
    /// `enroll` remove the keychain entry and files it left.
    pub fn enroll(dir: &Path, enrolment_json: &str, keys: &dyn KeyStore) -> Result<EnrolReport> {
        let f = EnrolmentFile::from_json(enrolment_json)
            .map_err(|e| DeviceError::Enrolment(e.to_string()))?;
        let sealer = Sealer::new(&f.ho_recipient)?;
        let dd = DataDir::new(dir);
        if let Some(m) = dd.read_device_json()? {
            return Err(DeviceError::AlreadyEnrolled(m.device_name));
        }
        clear_interrupted_enrolment(&dd, keys)?;
        if dd.db().exists() || dd.escrow().exists() {
            return Err(DeviceError::OrphanDatabase(dd.db()));
        }
        let key = random32()?;
        let store_id = hex::encode(&random32()?.expose()[..16]);
        let meta = DeviceJson {
            format: DEVICE_FORMAT.into(),
            store_id,
            device_name: f.device_name.clone(),
            event_id: f.event.id.clone(),
            key_id: key_id(&key),
            enrolled_at_ms: now_ms(),
            db_salt: None,
        };
        let service = meta.keychain_service();
        let made_dir = !dd.root().exists();
        dd.create()?;
        let undo_dir = || {
            let _ = std::fs::remove_file(dd.enrolment_marker());
            if made_dir {
                let _ = std::fs::remove_dir(dd.root());
            }
        };
        // The marker goes first: a keychain entry is never made without a note of its name.
        if let Err(e) = files::write_atomic(&dd.enrolment_marker(), meta.store_id.as_bytes()) {
            undo_dir();
            return Err(e);
        }
        if let Err(e) = keys.set(&service, KEY_ACCOUNT, &key) {
            undo_dir();
            return Err(keychain_err(e));
        }
        pause_point("enrol.after_keychain");
        let made = (|| -> Result<()> {
            let mut conn = store::open(&dd.db(), Keying::Raw(&key), true)?;
            files::restrict(&dd.db(), 0o600)?;
            store::migrate(&mut conn)?;
            let tx = conn.transaction()?;
            let event_json =
                serde_json::to_vec(&f.event).map_err(|e| DeviceError::Seal(e.to_string()))?;
            store::set_setting(&tx, keys::EVENT, &event_json)?;
            store::set_setting(&tx, keys::HO_RECIPIENT, f.ho_recipient.as_bytes())?;
            store::set_setting(&tx, keys::HO_VERIFYING_KEY, f.ho_verifying_key.as_bytes())?;
            store::set_setting(&tx, keys::CA_CERT, f.ca_cert_pem.as_bytes())?;
            store::set_setting(&tx, keys::SERVER_URL, f.server_url.as_bytes())?;
            store::set_setting(&tx, keys::DEVICE_NAME, f.device_name.as_bytes())?;
            store::set_setting(&tx, keys::DEVICE_TOKEN, f.device_token.expose())?;
            store::set_setting(&tx, keys::SIGNING_KEY, f.device_signing_key.expose())?;
            audit::append(
                &tx,
                meta.enrolled_at_ms,
                "device.enrolled",
                &json!({"device": meta.device_name, "event": meta.event_id, "store": meta.store_id}),
            )?;
            tx.commit()?;
            drop(conn);
            let record = EscrowRecord {
                format: ESCROW_FORMAT.into(),
                store_id: meta.store_id.clone(),
                device_name: meta.device_name.clone(),
                event_id: meta.event_id.clone(),
                key_id: meta.key_id.clone(),
                key: key.clone(),
            };
            let plain = Zeroizing::new(
                serde_json::to_vec(&record).map_err(|e| DeviceError::Seal(e.to_string()))?,
            );
            files::write_atomic(&dd.escrow(), &sealer.seal(&plain)?)?;
            let mut written = meta.clone();
            written.db_salt = files::db_salt(&dd.db());
            let meta_json = serde_json::to_vec_pretty(&written)
                .map_err(|e| DeviceError::Seal(e.to_string()))?;
            pause_point("enrol.before_device_json");
            files::write_atomic(&dd.device_json(), &meta_json)?;
            Ok(())
        })();
        if let Err(e) = made {
            // Nothing of this enrolment can hold a registration yet: undo it so it can be retried.
            for p in [dd.escrow(), dd.db()] {
                let _ = std::fs::remove_file(&p);
            }
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(dd.root().join(format!("sealbox.db{suffix}")));
            }
            let _ = keys.delete(&service, KEY_ACCOUNT);
            undo_dir();
            return Err(e);
        }
        remove_marker(&dd);
        tracing::info!(device = %meta.device_name, event = %meta.event_id, "device enrolled");
        Ok(EnrolReport {
            device: meta.device_name,
            event: meta.event_id,
            data_dir: dir.display().to_string(),
            escrow: dd.escrow().display().to_string(),
        })
    }

    /// Opens an enrolled device. Each way this can fail is its own error: not enrolled, key
    /// lost, wrong key, corrupt database, keychain unavailable. None of them changes a file.
    pub fn open(dir: &Path, keys: &dyn KeyStore) -> Result<Device> {
        let dd = DataDir::new(dir);
        let meta = match dd.read_device_json()? {
            Some(m) => m,
            None if dd.db().exists() => return Err(DeviceError::OrphanDatabase(dd.db())),
            None => return Err(DeviceError::NotEnrolled),
        };
        if !dd.db().exists() {
            return Err(DeviceError::DatabaseMissing(dd.db()));
        }
        // An enrolment killed after device.json but before removing its marker is complete:
        // drop the marker before anything can be stored, so no later `enroll` takes this
        // directory for an interrupted one.
        remove_marker(&dd);
        let key = match keys.get(&meta.keychain_service(), KEY_ACCOUNT) {
            Ok(Some(k)) => k,
            Ok(None) => return Err(DeviceError::KeyLost(dd.escrow())),
            Err(e) => return Err(keychain_err(e)),
        };
        if key_id(&key) != meta.key_id {
            return Err(DeviceError::WrongKey);
        }
        let conn = open_existing(&dd, &meta, &key)?;
        let config: EventConfig = store::get_setting(&conn, keys::EVENT)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(DeviceError::Corrupt)?;
        let recipient = setting_string(&conn, keys::HO_RECIPIENT)?;
        let sealer = Sealer::new(&recipient)?;
        let summary_lock = match store::get_setting(&conn, keys::SUMMARY_RECIPIENT)? {
            Some(v) => Some(SummaryLock::parse(
                std::str::from_utf8(&v).map_err(|_| DeviceError::Corrupt)?,
            )?),
            None => None,
        };
        Ok(Device {
            consent_sha256: config.consent.sha256(),
            dir: dd,
            meta,
            conn,
            config,
            sealer,
            summary_lock,
            summary_key: None,
        })
    }

    /// Reports the device's state without failing on a missing key or keychain: the status
    /// command must work exactly when something is wrong.
    pub fn status(dir: &Path, keys: &dyn KeyStore) -> Status {
        let dd = DataDir::new(dir);
        let meta = dd.read_device_json().ok().flatten();
        let mut st = Status {
            device: meta.as_ref().map(|m| m.device_name.clone()),
            event: meta.as_ref().map(|m| m.event_id.clone()),
            pending: None,
            exported: None,
            refused: None,
            erased: None,
            oldest_waiting_ms: None,
            waiting_too_long: false,
            database: "ok".into(),
            schema: None,
            keychain: "not_checked".into(),
            problem: None,
            problem_zh: None,
        };
        match Device::open(dir, keys) {
            Ok(dev) => {
                st.keychain = "ok".into();
                st.schema = dev.schema_version().ok();
                match dev.counts() {
                    Ok(c) => {
                        st.pending = Some(c.pending);
                        st.exported = Some(c.exported);
                        st.refused = Some(c.refused);
                        st.erased = Some(c.erased);
                        st.oldest_waiting_ms = c.oldest_waiting_ms;
                        st.waiting_too_long = waited_too_long(
                            c.oldest_waiting_ms,
                            now_ms(),
                            dev.config().kiosk.warn_waiting_days,
                        );
                    }
                    Err(e) => {
                        st.database = e.code().into();
                        st.problem = Some(e.to_string());
                        st.problem_zh = Some(e.message(sealbox_protocol::Lang::Zh));
                    }
                }
            }
            Err(e) => {
                st.keychain = match &e {
                    DeviceError::KeyLost(_) => "missing",
                    DeviceError::KeychainUnavailable(_) => "unavailable",
                    DeviceError::WrongKey | DeviceError::Corrupt => "ok",
                    _ => "not_checked",
                }
                .into();
                st.database = match &e {
                    DeviceError::KeychainUnavailable(_) => "locked",
                    other => other.code(),
                }
                .into();
                st.problem = Some(e.to_string());
                st.problem_zh = Some(e.message(sealbox_protocol::Lang::Zh));
            }
        }
        st
    }

    pub fn config(&self) -> &EventConfig {
        &self.config
    }

    pub fn device_name(&self) -> &str {
        &self.meta.device_name
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.root()
    }

    /// Validates a visitor's submission (staff-only fields refused) and stores it sealed, in one
    /// transaction. Returns once the commit is durable (WAL, `synchronous=FULL`): only then may
    /// anyone say "thank you".
    pub fn add(&mut self, input: &serde_json::Value) -> Result<Uuid> {
        self.add_captured(input, None)
    }

    /// The kiosk's submit: a visitor's own (staff-only fields refused), or, with the id of the
    /// staff code signed in, a promoter's (every field; the id is sealed with the entry).
    pub fn add_captured(
        &mut self,
        input: &serde_json::Value,
        staff_code: Option<&str>,
    ) -> Result<Uuid> {
        let valid = match staff_code {
            Some(id) => {
                self.check_staff_code_id(id)?;
                entry::validate(&self.config, input)?
            }
            None => entry::validate_visitor(&self.config, input)?,
        };
        self.store_valid(&valid, staff_code)
    }

    /// [`Device::add_captured`] from JSON text (the command line's `add --json`).
    pub fn add_json_captured(&mut self, json: &str, staff_code: Option<&str>) -> Result<Uuid> {
        let value = entry::parse_json(json)?;
        self.add_captured(&value, staff_code)
    }

    /// Refuses a staff code id that is not (or no longer) one of the event's: head office may
    /// have revoked it since it signed in.
    fn check_staff_code_id(&mut self, id: &str) -> Result<()> {
        self.refresh_staff_codes()?;
        if self.config.staff_codes.iter().any(|c| c.id == id) {
            Ok(())
        } else {
            Err(DeviceError::StaffCodeRevoked(id.to_string()))
        }
    }

    /// Whether the staff code with this id is still one of the event's on this device.
    pub fn staff_code_current(&mut self, id: &str) -> Result<bool> {
        match self.check_staff_code_id(id) {
            Ok(()) => Ok(true),
            Err(DeviceError::StaffCodeRevoked(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The staff codes as the store holds them now (a sync on another connection may have
    /// replaced them since this device was opened).
    fn refresh_staff_codes(&mut self) -> Result<()> {
        let stored: EventConfig = store::get_setting(&self.conn, keys::EVENT)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(DeviceError::Corrupt)?;
        self.config.staff_codes = stored.staff_codes;
        self.config.staff_codes_version = stored.staff_codes_version;
        self.config.revoked_staff_codes = stored.revoked_staff_codes;
        Ok(())
    }

    /// The version of the staff codes this device holds (0: as enrolled, none issued since).
    pub fn staff_codes_version(&mut self) -> Result<u64> {
        self.refresh_staff_codes()?;
        Ok(self.config.staff_codes_version)
    }

    /// Takes head office's signed staff codes (sent with each receipt): verified with head
    /// office's key as this device trusts it now, for this event, newer than the set held;
    /// only then are the verifiers replaced, in one transaction with its audit row. A refused
    /// update is audited with its reason and changes nothing. Returns the version now held.
    pub fn apply_staff_codes(&mut self, update: &StaffCodesUpdate) -> Result<u64> {
        let damaged = || DeviceError::Enrolment("head office's verifying key is damaged".into());
        // One IMMEDIATE transaction from reading the version held to writing the new set, so
        // two connections (the app's sync loop, a `sealbox sync`) can never move it backwards.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut config: EventConfig = store::get_setting(&tx, keys::EVENT)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(DeviceError::Corrupt)?;
        let held = config.staff_codes_version;
        let key = store::get_setting(&tx, keys::HO_VERIFYING_KEY)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|b64| sealbox_protocol::sync::verifying_key_from_b64(&b64))
            .ok_or_else(damaged)?;
        if let Err(e) = update.verify(&key, &config.id, held) {
            audit::append(
                &tx,
                now_ms(),
                "staff_codes.refused",
                &json!({"version": update.version, "held": held, "reason": e.code()}),
            )?;
            tx.commit()?;
            tracing::warn!(reason = e.code(), "staff code update refused");
            return Err(DeviceError::StaffCodes(e));
        }
        config.staff_codes = update.staff_codes.clone();
        config.staff_codes_version = update.version;
        let event_json =
            serde_json::to_vec(&config).map_err(|e| DeviceError::Seal(e.to_string()))?;
        let ids: Vec<&str> = update.staff_codes.iter().map(|c| c.id.as_str()).collect();
        store::set_setting(&tx, keys::EVENT, &event_json)?;
        audit::append(
            &tx,
            now_ms(),
            "staff_codes.updated",
            &json!({"version": update.version, "from": held, "ids": ids}),
        )?;
        tx.commit()?;
        tracing::info!(
            version = update.version,
            codes = ids.len(),
            "staff codes updated"
        );
        self.refresh_staff_codes()?;
        Ok(update.version)
    }

    /// The staff codes a verified receipt carries, if they are not the set held already. A
    /// refused update never fails the receipt: its entries are acknowledged all the same.
    pub(crate) fn take_staff_codes(&mut self, receipt: &sealbox_protocol::sync::Receipt) {
        if let Some(update) = &receipt.staff_codes {
            self.take_update(update);
        }
    }

    /// An update from head office, taken unless it is the set held already.
    pub(crate) fn take_update(&mut self, update: &StaffCodesUpdate) {
        match self.staff_codes_version() {
            Ok(held) if held == update.version => {}
            Ok(_) => {
                let _ = self.apply_staff_codes(update);
            }
            Err(e) => tracing::warn!(code = e.code(), "staff codes not read"),
        }
    }

    fn store_valid(&mut self, valid: &entry::ValidEntry, staff_code: Option<&str>) -> Result<Uuid> {
        let row = self.seal_entry_by(valid, staff_code)?;
        let tx = self.conn.transaction()?;
        row.insert(&tx)?;
        tx.commit()?;
        pause_point("add.after_commit");
        tracing::info!(entry = %row.id, "entry stored");
        Ok(row.id)
    }

    /// [`Device::add`] from JSON text.
    pub fn add_json(&mut self, json: &str) -> Result<Uuid> {
        let value = entry::parse_json(json)?;
        self.add(&value)
    }

    /// Adds many entries from NDJSON (one JSON object a line; blank lines skipped). Every line is
    /// validated first: one bad line, reported by its number, and nothing is written. The rest
    /// is one transaction.
    pub fn add_ndjson(&mut self, reader: impl BufRead) -> Result<Vec<Uuid>> {
        self.add_ndjson_captured(reader, None)
    }

    /// [`Device::add_ndjson`] by a promoter: with the id of a staff code verified by
    /// [`Device::verify_staff_code`], staff-only fields are taken and the id is sealed with each
    /// entry; without, they are refused.
    pub fn add_ndjson_captured(
        &mut self,
        reader: impl BufRead,
        staff_code: Option<&str>,
    ) -> Result<Vec<Uuid>> {
        if let Some(id) = staff_code {
            self.check_staff_code_id(id)?;
        }
        let mut valid = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = Zeroizing::new(line.map_err(DeviceError::io("reading the entries"))?);
            if line.trim().is_empty() {
                continue;
            }
            let parsed = entry::parse_json(&line)
                .and_then(|v| match staff_code {
                    Some(_) => entry::validate(&self.config, &v),
                    None => entry::validate_visitor(&self.config, &v),
                })
                .map_err(|error| DeviceError::InvalidLine { line: i + 1, error })?;
            valid.push(parsed);
        }
        let mut rows = Vec::with_capacity(valid.len());
        for v in &valid {
            rows.push(self.seal_entry_by(v, staff_code)?);
        }
        let now = now_ms();
        let tx = self.conn.transaction()?;
        for row in &rows {
            row.insert(&tx)?;
        }
        if !rows.is_empty() {
            audit::append(
                &tx,
                now,
                "entries.bulk_added",
                &json!({"count": rows.len()}),
            )?;
        }
        tx.commit()?;
        tracing::info!(count = rows.len(), "entries stored from NDJSON");
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    fn seal_entry_by(
        &self,
        valid: &entry::ValidEntry,
        staff_code: Option<&str>,
    ) -> Result<EntryRow> {
        let id = Uuid::now_v7();
        let at = now_ms();
        let payload = PayloadPlaintext::new(id, &self.config.id, at, &self.config.consent, valid)
            .captured_by(staff_code);
        let plain = Zeroizing::new(
            serde_json::to_vec(&payload).map_err(|e| DeviceError::Seal(e.to_string()))?,
        );
        let sealed = self.sealer.seal(&plain)?;
        // Never store what head office would refuse: the config's bound keeps this from
        // happening, and this check keeps it true whatever the config says.
        if sealed.len() > sealbox_protocol::limits::MAX_SEALED_BYTES {
            return Err(DeviceError::Invalid(entry::EntryError::general(
                entry::EntryErrorCode::TooLarge,
            )));
        }
        let summary = Zeroizing::new(
            serde_json::to_string(&entry::summary(&self.config, valid))
                .map_err(|e| DeviceError::Seal(e.to_string()))?,
        );
        // To the summary key; before a PIN ever existed there is none, and the summary goes to
        // head office only (the device never shows it).
        let summary_sealed = match &self.summary_lock {
            Some(lock) => lock.seal(summary.as_bytes())?,
            None => self.sealer.seal(summary.as_bytes())?,
        };
        Ok(EntryRow {
            envelope: EntryEnvelope {
                id,
                event_id: self.config.id.clone(),
                captured_at_ms: at,
                consent_version: self.config.consent.version.clone(),
                consent_sha256: self.consent_sha256.clone(),
                sealed,
            },
            id,
            summary_sealed,
        })
    }

    /// The database's schema version (status reports it: an upgrade shows it migrated).
    pub fn schema_version(&self) -> Result<i64> {
        store::schema_version(&self.conn)
    }

    /// Counts for `status` and the manager's overview.
    pub fn counts(&self) -> Result<Counts> {
        entries::counts(&self.conn)
    }

    /// The times of all entries still on the device (for the per-hour chart): times only.
    pub fn capture_times(&self) -> Result<Vec<i64>> {
        entries::capture_times(&self.conn)
    }

    /// Capture times of every entry this device recorded that is still known: those on the
    /// device and those erased after a receipt (a UUIDv7 id carries its creation time).
    pub fn capture_times_with_erased(&self) -> Result<Vec<i64>> {
        let mut times = self.capture_times()?;
        for id in entries::tombstone_ids(&self.conn)? {
            if let Some((secs, nanos)) = id.get_timestamp().map(|t| t.to_unix()) {
                times.push(secs as i64 * 1000 + nanos as i64 / 1_000_000);
            }
        }
        Ok(times)
    }

    /// The sealed envelopes of every entry still on the device (quarantined ones included),
    /// oldest first.
    pub fn pending_envelopes(&self, limit: usize) -> Result<Vec<EntryEnvelope>> {
        entries::all_envelopes(&self.conn, limit)
    }

    /// Whether a manager PIN has been set.
    pub fn pin_is_set(&self) -> Result<bool> {
        Ok(store::get_setting(&self.conn, keys::PIN_HASH)?.is_some())
    }

    /// Sets the manager PIN. Changing an existing PIN needs the current one.
    /// The summary key is re-wrapped under the new PIN (made on the first PIN).
    pub fn set_pin(&mut self, current: Option<&Pin>, new: &Pin) -> Result<()> {
        pin::check_strength(new)?;
        let had = self.pin_is_set()?;
        let key = if had {
            let current = current.ok_or(DeviceError::PinWrong)?;
            self.verify_pin(current, "pin.change")?;
            self.summary_key_for(current)?
        } else {
            self.summary_key_for(new)?
        };
        let wrap =
            serde_json::to_vec(&key.wrap(new)?).map_err(|e| DeviceError::Seal(e.to_string()))?;
        let phc = pin::hash(new)?;
        let tx = self.conn.transaction()?;
        store::set_setting(&tx, keys::SUMMARY_PIN_WRAP, &wrap)?;
        store::set_setting(&tx, keys::PIN_HASH, phc.as_bytes())?;
        audit::append(
            &tx,
            now_ms(),
            if had { "pin.changed" } else { "pin.set" },
            &json!({}),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Checks the manager PIN for `purpose` (`list`, `unlock`, …), rate-limited and audited.
    pub fn verify_pin(&mut self, candidate: &Pin, purpose: &str) -> Result<()> {
        self.verify_pin_at(candidate, purpose, &Moment::now())
    }

    /// The whole attempt is one IMMEDIATE transaction: the counter is read, the PIN checked and
    /// the counter written under the database's write lock, so parallel processes (`sealbox list`
    /// run many times at once) take their turns and each wrong PIN counts.
    pub(crate) fn verify_pin_at(
        &mut self,
        candidate: &Pin,
        purpose: &str,
        moment: &Moment,
    ) -> Result<()> {
        let ok = self.rate_limited(&Limited::PIN, purpose, moment, |tx| {
            let phc = store::get_setting(tx, keys::PIN_HASH)?.ok_or(DeviceError::PinNotSet)?;
            let phc = String::from_utf8(phc).map_err(|_| DeviceError::Corrupt)?;
            Ok(pin::matches(candidate, &phc).then_some(()))
        })?;
        match ok {
            Some(()) => Ok(()),
            None => Err(DeviceError::PinWrong),
        }
    }

    /// Checks a staff code (`s1-12345678`) against the event's verifiers, rate-limited like the
    /// PIN (its own counter) and audited with the code's id; returns the id.
    pub fn verify_staff_code(&mut self, candidate: &Pin) -> Result<String> {
        self.verify_staff_code_at(candidate, &Moment::now())
    }

    pub(crate) fn verify_staff_code_at(
        &mut self,
        candidate: &Pin,
        moment: &Moment,
    ) -> Result<String> {
        self.refresh_staff_codes()?;
        if self.config.staff_codes.is_empty() {
            return Err(DeviceError::NoStaffCodes);
        }
        let typed = String::from_utf8_lossy(candidate.secret_bytes()).to_lowercase();
        let typed = zeroize::Zeroizing::new(typed);
        // The id is the part before the first '-': only that verifier is tried (one Argon2id).
        let found = typed.split_once('-').and_then(|(id, _)| {
            self.config
                .staff_codes
                .iter()
                .find(|c| c.id == id)
                .map(|c| (c.id.clone(), c.verifier.clone()))
        });
        // Audited with the id typed when it is one of the event's (ids are not secret, never
        // names); anything else as "promoter" alone, so no typed text reaches the log.
        let purpose = match &found {
            Some((id, _)) => format!("promoter {id}"),
            None => "promoter".to_string(),
        };
        let ok = self.rate_limited(&Limited::STAFF, &purpose, moment, |_| {
            Ok(match &found {
                Some((id, phc)) if pin::matches(&Pin::new(typed.as_str()), phc) => Some(id.clone()),
                _ => None,
            })
        })?;
        ok.ok_or(DeviceError::StaffCodeWrong)
    }

    /// One attempt at a secret under a rate limit, in one IMMEDIATE transaction: `check` says
    /// `Some` for a match. A wait refuses before `check` runs.
    fn rate_limited<T>(
        &mut self,
        what: &Limited,
        purpose: &str,
        moment: &Moment,
        check: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let now = moment.wall_ms;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut attempts: Attempts = store::get_setting(&tx, what.attempts_key)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        if let Some(moved) = attempts.reanchored(moment) {
            attempts = moved;
            let state =
                serde_json::to_vec(&attempts).map_err(|e| DeviceError::Seal(e.to_string()))?;
            store::set_setting(&tx, what.attempts_key, &state)?;
        }
        let wait = attempts.wait_ms(moment);
        if wait > 0 {
            let secs = (wait as u64).div_ceil(1000);
            audit::append(
                &tx,
                now,
                &format!("{}.refused", what.audit),
                &json!({"for": purpose, "wait_s": secs}),
            )?;
            tx.commit()?;
            return Err((what.locked)(secs));
        }
        let found = check(&tx)?;
        let next = if found.is_some() {
            Attempts::default()
        } else {
            attempts.failed(moment)
        };
        let state = serde_json::to_vec(&next).map_err(|e| DeviceError::Seal(e.to_string()))?;
        store::set_setting(&tx, what.attempts_key, &state)?;
        if found.is_some() {
            audit::append(
                &tx,
                now,
                &format!("{}.ok", what.audit),
                &json!({"for": purpose}),
            )?;
        } else {
            audit::append(
                &tx,
                now,
                &format!("{}.failed", what.audit),
                &json!({"for": purpose, "failures": next.failures}),
            )?;
        }
        tx.commit()?;
        if found.is_none() {
            tracing::warn!(failures = next.failures, what = what.audit, "wrong secret");
        }
        Ok(found)
    }

    /// The masked list, newest first, behind the manager PIN.
    pub fn list(&mut self, candidate: &Pin, limit: usize) -> Result<Vec<ListedEntry>> {
        self.unlock_summaries(candidate, "list")?;
        let listed = self.list_unlocked(limit);
        self.lock_summaries();
        listed
    }

    /// The masked list for a caller that has unlocked the summaries (the manager screens);
    /// without the key, each summary is empty.
    pub fn list_unlocked(&self, limit: usize) -> Result<Vec<ListedEntry>> {
        let key = self.summary_key.as_ref();
        entries::list(&self.conn, limit, &|sealed| {
            key.and_then(|k| k.open(sealed))
        })
    }

    /// Checks the PIN (rate-limited, audited as `purpose`) and keeps the summary key in memory
    /// until [`Device::lock_summaries`].
    pub fn unlock_summaries(&mut self, pin: &Pin, purpose: &str) -> Result<()> {
        self.verify_pin(pin, purpose)?;
        let key = self.summary_key_for(pin)?;
        self.summary_key = Some(key);
        Ok(())
    }

    /// Forgets the summary key.
    pub fn lock_summaries(&mut self) {
        self.summary_key = None;
    }

    /// The summary key under `pin` (already checked): unwrapped, or on the first PIN made
    /// (with its escrow sealed to head office). Summaries stored plain by an older version
    /// are sealed to it now, and the WAL truncated so their text does not linger.
    fn summary_key_for(&mut self, pin: &Pin) -> Result<SummaryKey> {
        let key = match store::get_setting(&self.conn, keys::SUMMARY_PIN_WRAP)? {
            Some(v) => {
                let wrap: PinWrap = serde_json::from_slice(&v).map_err(|_| DeviceError::Corrupt)?;
                wrap.unwrap(pin)?
            }
            None => self.new_summary_key(pin)?,
        };
        let plain = entries::plain_summaries(&self.conn)?;
        if !plain.is_empty() {
            let lock = key.lock();
            let tx = self.conn.transaction()?;
            for (id, summary) in &plain {
                entries::set_sealed_summary(&tx, *id, &lock.seal(summary.as_bytes())?)?;
            }
            audit::append(
                &tx,
                now_ms(),
                "summaries.sealed",
                &json!({"count": plain.len()}),
            )?;
            tx.commit()?;
            store::truncate_wal(&self.conn)?;
        }
        Ok(key)
    }

    fn new_summary_key(&mut self, pin: &Pin) -> Result<SummaryKey> {
        let key = SummaryKey::generate();
        let record = SummaryEscrowRecord {
            format: SUMMARY_ESCROW_FORMAT.into(),
            store_id: self.meta.store_id.clone(),
            device_name: self.meta.device_name.clone(),
            event_id: self.meta.event_id.clone(),
            summary_key: key.secret_text().to_string(),
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&record).map_err(|e| DeviceError::Seal(e.to_string()))?,
        );
        drop(record);
        files::write_atomic(&self.dir.summary_escrow(), &self.sealer.seal(&plain)?)?;
        let wrap =
            serde_json::to_vec(&key.wrap(pin)?).map_err(|e| DeviceError::Seal(e.to_string()))?;
        let lock = key.lock();
        let tx = self.conn.transaction()?;
        store::set_setting(&tx, keys::SUMMARY_RECIPIENT, lock.to_string().as_bytes())?;
        store::set_setting(&tx, keys::SUMMARY_PIN_WRAP, &wrap)?;
        audit::append(&tx, now_ms(), "summary_key.created", &json!({}))?;
        tx.commit()?;
        self.summary_lock = Some(lock);
        Ok(key)
    }

    /// Sets a new manager PIN when the old one is forgotten, from the summary key head office
    /// opened (`sealbox-headoffice escrow open summary-escrow.age`): the key must be this
    /// device's. The wait and failure count are cleared.
    pub fn reset_pin(&mut self, summary_escrow_json: &str, new: &Pin) -> Result<()> {
        pin::check_strength(new)?;
        let record: SummaryEscrowRecord =
            serde_json::from_str(summary_escrow_json).map_err(|_| DeviceError::EscrowMismatch)?;
        let key = SummaryKey::from_secret_text(&record.summary_key)?;
        let ours = self.summary_lock.as_ref().map(SummaryLock::to_string);
        if record.format != SUMMARY_ESCROW_FORMAT
            || record.store_id != self.meta.store_id
            || ours != Some(key.lock().to_string())
        {
            return Err(DeviceError::EscrowMismatch);
        }
        let wrap =
            serde_json::to_vec(&key.wrap(new)?).map_err(|e| DeviceError::Seal(e.to_string()))?;
        let phc = pin::hash(new)?;
        let tx = self.conn.transaction()?;
        store::set_setting(&tx, keys::SUMMARY_PIN_WRAP, &wrap)?;
        store::set_setting(&tx, keys::PIN_HASH, phc.as_bytes())?;
        let cleared = serde_json::to_vec(&Attempts::default())
            .map_err(|e| DeviceError::Seal(e.to_string()))?;
        store::set_setting(&tx, keys::PIN_ATTEMPTS, &cleared)?;
        audit::append(
            &tx,
            now_ms(),
            "pin.reset",
            &json!({"through": "summary escrow"}),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Checks the audit chain.
    pub fn audit_verify(&self) -> Result<audit::Verification> {
        audit::verify(&self.conn)
    }

    /// The newest audit rows.
    pub fn audit_recent(&self, limit: u32) -> Result<Vec<audit::AuditRow>> {
        audit::recent(&self.conn, limit)
    }

    /// `PRAGMA integrity_check` is ok.
    pub fn integrity_ok(&self) -> Result<bool> {
        store::integrity_ok(&self.conn)
    }

    /// Puts the database key back into the keychain from an escrow key file that head office
    /// opened (`sealbox-headoffice escrow open`). The key must belong to this device and open its
    /// database; otherwise nothing changes. A missing or damaged `device.json` is rebuilt from
    /// the escrow record and the database it opens (store id, key id, device, event, enrolment
    /// time), so a lost `device.json` never strands a database.
    pub fn recover(dir: &Path, escrow_key_json: &str, keys: &dyn KeyStore) -> Result<Recovery> {
        let dd = DataDir::new(dir);
        let record: EscrowRecord =
            serde_json::from_str(escrow_key_json).map_err(|_| DeviceError::NotAnEscrowKey)?;
        if record.format != ESCROW_FORMAT || key_id(&record.key) != record.key_id {
            return Err(DeviceError::EscrowMismatch);
        }
        let known = match dd.read_device_json() {
            Ok(m) => m,
            // Damaged: rebuilt below, once the key has proved it opens this database.
            Err(DeviceError::DeviceJsonDamaged(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(meta) = &known {
            if record.store_id != meta.store_id || record.key_id != meta.key_id {
                return Err(DeviceError::EscrowMismatch);
            }
        }
        if !dd.db().exists() {
            return Err(DeviceError::DatabaseMissing(dd.db()));
        }
        let rebuilt = known.is_none();
        // Without device.json, what the record says, until the database confirms it.
        let provisional = DeviceJson {
            format: DEVICE_FORMAT.into(),
            store_id: record.store_id.clone(),
            device_name: record.device_name.clone(),
            event_id: record.event_id.clone(),
            key_id: record.key_id.clone(),
            enrolled_at_ms: 0,
            db_salt: None,
        };
        let conn = match open_existing(&dd, known.as_ref().unwrap_or(&provisional), &record.key) {
            // Without device.json's key id, a key that does not open the database is the sign
            // of another device's escrow.
            Err(DeviceError::Corrupt) if rebuilt => return Err(DeviceError::EscrowMismatch),
            other => other?,
        };
        let meta = match known {
            Some(m) => m,
            None => rebuild_device_json(&conn, &record, files::db_salt(&dd.db()))?,
        };
        keys.set(&meta.keychain_service(), KEY_ACCOUNT, &record.key)
            .map_err(keychain_err)?;
        if rebuilt {
            let meta_json =
                serde_json::to_vec_pretty(&meta).map_err(|e| DeviceError::Seal(e.to_string()))?;
            files::write_atomic(&dd.device_json(), &meta_json)?;
        }
        audit::append(
            &conn,
            now_ms(),
            "key.recovered",
            &json!({"store": meta.store_id, "device_json_rebuilt": rebuilt}),
        )?;
        tracing::info!(device = %meta.device_name, rebuilt, "database key recovered from escrow");
        Ok(Recovery {
            device: meta.device_name,
            device_json_rebuilt: rebuilt,
        })
    }

    /// Head office's recipient, verifying key, CA and URL, as the enrolment file gave them.
    pub fn trust(&self) -> Result<Trust> {
        Ok(Trust {
            server_url: setting_string(&self.conn, keys::SERVER_URL)?,
            ca_cert_pem: setting_string(&self.conn, keys::CA_CERT)?,
            ho_verifying_key: setting_string(&self.conn, keys::HO_VERIFYING_KEY)?,
        })
    }

    /// The key a receipt from head office must be signed with: the one this device trusts,
    /// moved on by the rotation statements the receipt carries that start from it (each signed
    /// by the key it retires). A rotation followed is kept and audited at once, so the retired
    /// key is never trusted again, even if the receipt itself is then refused. Every receipt
    /// (sync or batch file) gets its key here and nowhere else.
    pub(crate) fn receipt_key(
        &self,
        receipt: &sealbox_protocol::sync::Receipt,
    ) -> Result<ed25519_dalek::VerifyingKey> {
        use sealbox_protocol::sync::verifying_key_from_b64;
        let damaged = || DeviceError::Enrolment("head office's verifying key is damaged".into());
        let trusted_b64 = setting_string(&self.conn, keys::HO_VERIFYING_KEY)?;
        let trusted = verifying_key_from_b64(&trusted_b64).ok_or_else(damaged)?;
        if receipt.rotations.is_empty() {
            return Ok(trusted);
        }
        let newest = match sealbox_protocol::rotation::follow(&trusted, &receipt.rotations) {
            Ok(k) => k,
            Err(e) => {
                // Keep the trusted key: a receipt from any other key is then refused.
                tracing::warn!(reason = %e, "head office's key rotation not followed");
                audit::append(
                    &self.conn,
                    now_ms(),
                    "key.rotation_refused",
                    &json!({"reason": e.to_string()}),
                )?;
                return Ok(trusted);
            }
        };
        if newest != trusted {
            let newest_b64 = entry::b64_encode(newest.as_bytes());
            let tx = self.conn.unchecked_transaction()?;
            store::set_setting(&tx, keys::HO_VERIFYING_KEY, newest_b64.as_bytes())?;
            audit::append(
                &tx,
                now_ms(),
                "key.rotated",
                &json!({"from": trusted_b64, "to": newest_b64}),
            )?;
            tx.commit()?;
            tracing::info!("head office's receipt key rotated");
        }
        Ok(newest)
    }

    /// The device's API token, from the encrypted database.
    pub fn token(&self) -> Result<Secret32> {
        setting_secret(&self.conn, keys::DEVICE_TOKEN)
    }

    /// The seed of the device's Ed25519 signing key, from the encrypted database.
    pub fn signing_key(&self) -> Result<Secret32> {
        setting_secret(&self.conn, keys::SIGNING_KEY)
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The raw connection, for tests that inspect or damage the store on purpose.
    #[doc(hidden)]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// What `recover` did.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub device: String,
    /// `device.json` was missing or damaged and was rebuilt from the escrow and the database.
    pub device_json_rebuilt: bool,
}

/// device.json again, from the escrow record and the database its key opened: the record names
/// the store, key, device and event; the database must agree on the device and the event (and
/// on the store, in its enrolment audit row), and gives the enrolment time.
fn rebuild_device_json(
    conn: &Connection,
    record: &EscrowRecord,
    db_salt: Option<String>,
) -> Result<DeviceJson> {
    let device_name = setting_string(conn, keys::DEVICE_NAME)?;
    let config: EventConfig = store::get_setting(conn, keys::EVENT)?
        .and_then(|v| serde_json::from_slice(&v).ok())
        .ok_or(DeviceError::Corrupt)?;
    let enrolled = audit::first(conn, "device.enrolled")?;
    let store_matches = enrolled
        .as_ref()
        .is_none_or(|row| row.detail["store"] == record.store_id.as_str());
    if device_name != record.device_name || config.id != record.event_id || !store_matches {
        return Err(DeviceError::EscrowMismatch);
    }
    Ok(DeviceJson {
        format: DEVICE_FORMAT.into(),
        store_id: record.store_id.clone(),
        device_name,
        event_id: config.id,
        key_id: record.key_id.clone(),
        enrolled_at_ms: enrolled.map(|r| r.at_ms).unwrap_or_else(now_ms),
        db_salt,
    })
}

/// Removes what an enrolment killed half-way left in `dd` (its keychain entry, a database and
/// escrow that never had a device.json), as named by its marker. A marker exists only until
/// the first successful open, so nothing here can hold a registration.
fn clear_interrupted_enrolment(dd: &DataDir, keys: &dyn KeyStore) -> Result<()> {
    let marker = dd.enrolment_marker();
    let store_id = match std::fs::read_to_string(&marker) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DeviceError::io("reading the enrolment marker")(e)),
    };
    if !store_id.is_empty() && store_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        keys.delete(&files::keychain_service(&store_id), KEY_ACCOUNT)
            .map_err(keychain_err)?;
    }
    for p in [
        dd.escrow(),
        dd.db(),
        dd.root().join("sealbox.db-wal"),
        dd.root().join("sealbox.db-shm"),
    ] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DeviceError::io(format!("removing {}", p.display()))(e)),
        }
    }
    remove_marker(dd);
    tracing::warn!(store = %store_id, "removed the keychain entry and files of an interrupted enrolment");
    Ok(())
}

fn remove_marker(dd: &DataDir) {
    if std::fs::remove_file(dd.enrolment_marker()).is_ok() {
        files::sync_dir(dd.root());
    }
}

/// Debug builds only: stops for five minutes at the step `name` while `SEALBOX_TEST_PAUSE_AT`
/// names it, so an end-to-end test can kill the process exactly there.
pub(crate) fn pause_point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("SEALBOX_TEST_PAUSE_AT").as_deref() == Ok(name) {
        eprintln!("sealbox: paused at {name}");
        std::thread::sleep(std::time::Duration::from_secs(300));
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Whether an entry captured at `oldest_ms` has waited more than `days` at `now_ms`.
pub fn waited_too_long(oldest_ms: Option<i64>, now_ms: i64, days: u32) -> bool {
    oldest_ms.is_some_and(|t| now_ms - t > days as i64 * 86_400_000)
}

/// Head office's public trust material on this device.
#[derive(Debug, Clone)]
pub struct Trust {
    pub server_url: String,
    pub ca_cert_pem: String,
    pub ho_verifying_key: String,
}

struct EntryRow {
    id: Uuid,
    envelope: EntryEnvelope,
    summary_sealed: Vec<u8>,
}

impl EntryRow {
    fn insert(&self, conn: &Connection) -> Result<()> {
        entries::insert(
            conn,
            &entries::NewEntry {
                envelope: &self.envelope,
                summary_sealed: &self.summary_sealed,
            },
        )
    }
}

/// Opens an existing database with `key`: it must already carry Sealbox's schema (an empty or
/// foreign file is corrupt, and is never initialised over). A file that does not open and whose
/// salt is not the one recorded at enrolment is another database: its key is not this one
/// (wrong key), while a file with the right salt that does not open is damaged (corrupt).
fn open_existing(dd: &DataDir, meta: &DeviceJson, key: &Secret32) -> Result<Connection> {
    let len = std::fs::metadata(dd.db())
        .map_err(DeviceError::io("reading the database"))?
        .len();
    if len < 1024 {
        return Err(DeviceError::Corrupt);
    }
    let mut conn = match store::open(&dd.db(), Keying::Raw(key), false) {
        Err(DeviceError::Corrupt)
            if meta.db_salt.is_some() && files::db_salt(&dd.db()) != meta.db_salt =>
        {
            return Err(DeviceError::WrongKey)
        }
        other => other?,
    };
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        return Err(DeviceError::Corrupt);
    }
    store::migrate(&mut conn)?;
    Ok(conn)
}

fn setting_string(conn: &Connection, k: &str) -> Result<String> {
    store::get_setting(conn, k)?
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or(DeviceError::Corrupt)
}

fn setting_secret(conn: &Connection, k: &str) -> Result<Secret32> {
    let v = Zeroizing::new(store::get_setting(conn, k)?.ok_or(DeviceError::Corrupt)?);
    let arr: [u8; 32] = v.as_slice().try_into().map_err(|_| DeviceError::Corrupt)?;
    Ok(Secret32::from_bytes(arr))
}

#[cfg(test)]
pub(crate) mod tests {
    //! Error paths with an in-memory key store; everything else is tested end to end with the
    //! real keychain in `tests/`.
    use super::*;
    use crate::keychain::memory::MemoryKeyStore;
    use sealbox_protocol::entry::b64_encode;
    use std::sync::atomic::Ordering;

    pub(crate) fn enrolment() -> String {
        let id = age::x25519::Identity::generate();
        let vk = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]).verifying_key();
        json!({
            "format": "sealbox-enrolment/1",
            "server_url": "https://127.0.0.1:8443",
            "ca_cert_pem": "-----BEGIN CERTIFICATE-----\nunit\n-----END CERTIFICATE-----\n",
            "ho_recipient": id.to_public().to_string(),
            "ho_verifying_key": b64_encode(vk.as_bytes()),
            "event": serde_json::from_str::<serde_json::Value>(include_str!("../../../examples/trade-show.json")).unwrap(),
            "device_name": "unit",
            "device_token": b64_encode(&[1u8; 32]),
            "device_signing_key": b64_encode(&[2u8; 32]),
        })
        .to_string()
    }

    #[test]
    fn entries_waiting_too_long_are_flagged() {
        let day = 86_400_000;
        assert!(!waited_too_long(None, 10 * day, 3));
        assert!(!waited_too_long(Some(7 * day + 1), 10 * day, 3));
        assert!(waited_too_long(Some(7 * day - 1), 10 * day, 3));
    }

    #[test]
    fn keychain_unavailable_at_enrolment_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let keys = MemoryKeyStore::default();
        keys.unavailable.store(true, Ordering::SeqCst);
        let e = Device::enroll(&dir, &enrolment(), &keys).unwrap_err();
        assert_eq!(e.code(), "keychain_unavailable");
        assert!(!dir.exists());
        keys.unavailable.store(false, Ordering::SeqCst);
        Device::enroll(&dir, &enrolment(), &keys).unwrap();
        assert_eq!(keys.map.lock().unwrap().len(), 1);
        keys.unavailable.store(true, Ordering::SeqCst);
        let st = Device::status(&dir, &keys);
        assert_eq!(
            (st.database.as_str(), st.keychain.as_str()),
            ("locked", "unavailable")
        );
    }

    /// A device from before sealed summaries (schema 4: plain summaries, a PIN hash, no summary
    /// key): after the upgrade its summaries are listed with the PIN and sealed at that first
    /// PIN entry; then nothing plain is left, and new entries are sealed too.
    #[test]
    fn plain_summaries_of_an_older_device_are_sealed_at_the_first_pin() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = MemoryKeyStore::default();
        Device::enroll(tmp.path(), &enrolment(), &keys).unwrap();
        let mut dev = Device::open(tmp.path(), &keys).unwrap();
        dev.set_pin(None, &Pin::new("246810")).unwrap();
        // Back to what schema 4 kept: a plain summary, and no summary key.
        dev.connection()
            .execute_batch(
                "DELETE FROM settings WHERE k IN ('summary_recipient', 'summary_pin_wrap');
                 INSERT INTO entries (id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, summary)
                 VALUES ('01920000-0000-7000-8000-000000000001', 'e', 1, 'v', 'h', x'00', '{\"name\":\"张*\"}');",
            )
            .unwrap();
        drop(dev);
        let mut dev = Device::open(tmp.path(), &keys).unwrap();
        let listed = dev.list(&Pin::new("246810"), 10).unwrap();
        assert_eq!(listed[0].summary["name"], "张*");
        let plain: i64 = dev
            .connection()
            .query_row(
                "SELECT count(*) FROM entries WHERE summary <> ''",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(plain, 0);
        let id = dev
            .add(&json!({"name": "李四", "phone": "13912345678", "consent": true}))
            .unwrap();
        let listed = dev.list(&Pin::new("246810"), 10).unwrap();
        let new = listed.iter().find(|e| e.id == id).unwrap();
        assert_eq!(new.summary["name"], "李*");
        assert!(dev.list_unlocked(10).unwrap()[0].summary.is_empty());
        assert!(dev.audit_verify().unwrap().ok());
    }

    #[test]
    fn pin_waits_then_lets_the_right_pin_in() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = MemoryKeyStore::default();
        Device::enroll(tmp.path(), &enrolment(), &keys).unwrap();
        let mut dev = Device::open(tmp.path(), &keys).unwrap();
        assert_eq!(
            dev.list(&Pin::new("246810"), 10).unwrap_err().code(),
            "pin_not_set"
        );
        dev.set_pin(None, &Pin::new("246810")).unwrap();
        let t0 = 1_000_000;
        let at = |ms: i64| Moment {
            wall_ms: ms,
            boot: None,
        };
        for i in 0..3 {
            let e = dev
                .verify_pin_at(&Pin::new("999999"), "test", &at(t0 + i))
                .unwrap_err();
            assert_eq!(e.code(), "pin_wrong");
        }
        let e = dev
            .verify_pin_at(&Pin::new("246810"), "test", &at(t0 + 10))
            .unwrap_err();
        assert!(matches!(e, DeviceError::PinLocked(30)), "{e}");
        dev.verify_pin_at(&Pin::new("246810"), "test", &at(t0 + 2 + 30_000))
            .unwrap();
        // Success resets the count.
        dev.verify_pin_at(&Pin::new("999999"), "test", &at(t0 + 40_000))
            .unwrap_err();
        dev.verify_pin_at(&Pin::new("246810"), "test", &at(t0 + 40_001))
            .unwrap();
        assert!(dev.audit_verify().unwrap().ok());
    }
}
