//! Head office's storage: one interface, [`Store`], over two backends, the one home of head
//! office's SQL. Handlers and admin commands call it and never see SQL.
//!
//! - [`sqlite`]: the embedded default, `headoffice.db` in the data directory.
//! - [`postgres`]: PostgreSQL, chosen by `database_url = "postgres://…"`.
//!
//! Every operation that changes something and is audited takes its audit row with it, and the
//! backend writes both in one transaction.

pub mod migrate;
pub mod postgres;
pub mod sqlite;

use crate::config::Config;
use crate::console::store::{Admin, AuditRow, ExportRequest, Role, SeenReport, SessionRow};
use crate::error::{HoError, Result};
use crate::keys::HoDir;
use sealbox_protocol::health::HealthReport;
use sealbox_protocol::{EntryEnvelope, EventConfig};
use std::collections::HashMap;
use std::time::Duration;

pub use sqlite::{DeviceAuth, IngestError, Ingested, Source, Stored};

/// What a request's token found: the device, and whether its shared bucket granted the
/// request (see [`Store::authenticate_many`]).
pub type Authenticated = Option<(DeviceAuth, Option<std::result::Result<(), u64>>)>;

/// A device being enrolled: only the hash of its token and its verifying key are kept.
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    pub name: &'a str,
    pub event_id: &'a str,
    pub token_sha256: &'a str,
    pub verifying_key: &'a str,
    pub enrolled_at_ms: i64,
}

/// One stored entry, still sealed.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub env: EntryEnvelope,
    pub device: String,
}

/// An audit row to write with the change it records.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub at_ms: i64,
    pub action: &'a str,
    pub detail: serde_json::Value,
}

impl<'a> Audit<'a> {
    pub fn new(at_ms: i64, action: &'a str, detail: serde_json::Value) -> Audit<'a> {
        Audit {
            at_ms,
            action,
            detail,
        }
    }
}

/// Head office's storage.
pub enum Store {
    /// The embedded SQLite database.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL database.
    Postgres(Box<postgres::PgStore>),
}

/// How long a writer waits for another by default.
const DEFAULT_BUSY: Duration = Duration::from_secs(10);

impl Store {
    /// The store head office's config (`database_url`) names, opened and migrated; the embedded
    /// database in the data directory by default.
    pub fn open(ho: &HoDir) -> Result<Store> {
        let config = Config::load(ho.root())?;
        Store::open_configured(ho, &config, DEFAULT_BUSY)
    }

    /// [`Store::open`] with a loaded config and a busy timeout.
    pub fn open_configured(ho: &HoDir, config: &Config, busy: Duration) -> Result<Store> {
        match &config.database_url {
            Some(url) => Store::open_url(url.expose()),
            None => Ok(Store::Sqlite(sqlite::open_with_timeout(&ho.db(), busy)?)),
        }
    }

    /// A PostgreSQL database by its URL, migrated.
    pub fn open_url(url: &str) -> Result<Store> {
        Ok(Store::Postgres(Box::new(postgres::PgStore::connect(url)?)))
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// The store, when head office has one yet (the embedded file exists, or a database is
    /// configured): for the key ceremonies, which audit when they can.
    pub fn open_if_present(ho: &HoDir) -> Result<Option<Store>> {
        let config = Config::load(ho.root())?;
        if config.database_url.is_some() || ho.db().exists() {
            return Store::open_configured(ho, &config, DEFAULT_BUSY).map(Some);
        }
        Ok(None)
    }

    /// Whether the store already holds a head office's data (events, devices or audit rows):
    /// `init` refuses to put a second head office into a database in use.
    pub fn holds_data(&mut self) -> Result<bool> {
        match self {
            Store::Sqlite(c) => sqlite::holds_data(c),
            Store::Postgres(p) => p.holds_data(),
        }
    }

    /// An event's config as stored (canonical JSON), if it exists.
    pub fn event_json(&mut self, id: &str) -> Result<Option<String>> {
        match self {
            Store::Sqlite(c) => sqlite::event_config(c, id),
            Store::Postgres(p) => p.event_config(id),
        }
    }

    /// An event's config: the one event lookup.
    pub fn event(&mut self, id: &str) -> Result<EventConfig> {
        let json = self
            .event_json(id)?
            .ok_or_else(|| HoError::UnknownEvent(id.to_string()))?;
        serde_json::from_str(&json).map_err(|e| HoError::Config(e.to_string()))
    }

    /// Every event, `(id, config JSON)`, by id.
    pub fn events(&mut self) -> Result<Vec<(String, String)>> {
        match self {
            Store::Sqlite(c) => sqlite::events(c),
            Store::Postgres(p) => p.events(),
        }
    }

    /// Stores a new event, audited.
    pub fn add_event(&mut self, id: &str, config: &str, now_ms: i64, audit: Audit) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| {
                sqlite::add_event(tx, id, config, now_ms)?;
                sqlite::audit_append(tx, audit.at_ms, audit.action, &audit.detail)
            }),
            Store::Postgres(p) => p.add_event(id, config, now_ms, &audit),
        }
    }

    /// Replaces an event's stored config (a staff code issued), audited.
    pub fn update_event(&mut self, id: &str, config: &str, audit: Audit) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| {
                sqlite::update_event(tx, id, config)?;
                sqlite::audit_append(tx, audit.at_ms, audit.action, &audit.detail)
            }),
            Store::Postgres(p) => p.update_event(id, config, &audit),
        }
    }

    pub fn device_exists(&mut self, name: &str) -> Result<bool> {
        match self {
            Store::Sqlite(c) => sqlite::device_exists(c, name),
            Store::Postgres(p) => p.device_exists(name),
        }
    }

    /// Stores a newly enrolled device, audited.
    pub fn add_device(&mut self, d: &NewDevice<'_>, audit: Audit) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| {
                sqlite::add_device(tx, d)?;
                sqlite::audit_append(tx, audit.at_ms, audit.action, &audit.detail)
            }),
            Store::Postgres(p) => p.add_device(d, &audit),
        }
    }

    /// The device whose token hashes to `token_sha256`, if any.
    pub fn device_by_token(&mut self, token_sha256: &str) -> Result<Option<DeviceAuth>> {
        match self {
            Store::Sqlite(c) => sqlite::device_by_token(c, token_sha256),
            Store::Postgres(p) => p.device_by_token(token_sha256),
        }
    }

    /// A device's event, verifying key (base64) and whether it is revoked.
    pub fn device_keys(&mut self, name: &str) -> Result<Option<(String, String, bool)>> {
        match self {
            Store::Sqlite(c) => sqlite::device_keys(c, name),
            Store::Postgres(p) => p.device_keys(name),
        }
    }

    /// Revokes a device, audited; false when there is no such device (nothing audited).
    pub fn revoke_device(&mut self, name: &str, audit: Audit) -> Result<bool> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| {
                let found = sqlite::revoke_device(tx, name)?;
                if found {
                    sqlite::audit_append(tx, audit.at_ms, audit.action, &audit.detail)?;
                }
                Ok(found)
            }),
            Store::Postgres(p) => p.revoke_device(name, &audit),
        }
    }

    /// Counts per event and per device.
    pub fn status(
        &mut self,
    ) -> Result<(
        Vec<crate::admin::EventCount>,
        Vec<crate::admin::DeviceCount>,
    )> {
        match self {
            Store::Sqlite(c) => sqlite::status(c),
            Store::Postgres(p) => p.status(),
        }
    }

    /// The schema version the database carries (an upgrade shows it migrated).
    pub fn schema_version(&mut self) -> Result<i64> {
        match self {
            Store::Sqlite(c) => Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?),
            Store::Postgres(p) => p.schema_version(),
        }
    }

    /// How many of `ids` are held as entries.
    pub fn held_count(&mut self, ids: &[uuid::Uuid]) -> Result<usize> {
        match self {
            Store::Sqlite(c) => sqlite::held_count(c, ids),
            Store::Postgres(p) => p.held_count(ids),
        }
    }

    /// Stores batches with one group commit (see [`sqlite::ingest_group`]).
    pub fn ingest_group(
        &mut self,
        batches: &[(&str, &sealbox_protocol::sync::SyncRequest)],
        source: Source,
        key: &ed25519_dalek::SigningKey,
        now_ms: i64,
    ) -> Vec<Ingested> {
        match self {
            Store::Sqlite(c) => sqlite::ingest_group(c, batches, source, key, now_ms),
            Store::Postgres(p) => p.ingest_group(batches, source, key, now_ms),
        }
    }

    /// Stores one batch.
    pub fn ingest(
        &mut self,
        device: &str,
        req: &sealbox_protocol::sync::SyncRequest,
        source: Source,
        key: &ed25519_dalek::SigningKey,
        now_ms: i64,
    ) -> Ingested {
        let mut out = self.ingest_group(&[(device, req)], source, key, now_ms);
        out.pop().unwrap_or(Err(IngestError::BatchConflict))
    }

    /// How many entries are held (of one event, or all).
    pub fn count_entries(&mut self, event: Option<&str>) -> Result<u64> {
        match self {
            Store::Sqlite(c) => sqlite::count_entries(c, event),
            Store::Postgres(p) => p.count_entries(event),
        }
    }

    /// Streams the held entries (of one event, or all), oldest first: one row in memory at a
    /// time.
    pub fn for_each_entry(
        &mut self,
        event: Option<&str>,
        f: &mut dyn FnMut(StoredEntry) -> Result<()>,
    ) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite::for_each_entry(c, event, f),
            Store::Postgres(p) => p.for_each_entry(event, f),
        }
    }

    /// Moves an entry that does not open to the quarantine, audited.
    pub fn quarantine_entry(&mut self, id: uuid::Uuid, reason: &str, audit: Audit) -> Result<()> {
        match self {
            Store::Sqlite(c) => {
                sqlite::quarantine_entry(c, id, reason)?;
                sqlite::audit_append(c, audit.at_ms, audit.action, &audit.detail)
            }
            Store::Postgres(p) => p.quarantine_entry(id, reason, &audit),
        }
    }

    /// Ids of one event's entries whose retention ended before `cutoff_ms`, at most `limit`.
    pub fn expired_ids(
        &mut self,
        event_id: &str,
        cutoff_ms: i64,
        limit: usize,
    ) -> Result<Vec<uuid::Uuid>> {
        match self {
            Store::Sqlite(c) => sqlite::expired_ids(c, event_id, cutoff_ms, limit),
            Store::Postgres(p) => p.expired_ids(event_id, cutoff_ms, limit),
        }
    }

    /// Deletes entries with a tombstone each, and writes `audit` (if any) in the same
    /// transaction. Returns how many entries were deleted.
    pub fn delete_with_tombstones(
        &mut self,
        ids: &[uuid::Uuid],
        reason: &str,
        now_ms: i64,
        audit: Option<Audit>,
    ) -> Result<u64> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| {
                let n = sqlite::delete_with_tombstones(tx, ids, reason, now_ms)?;
                if let Some(a) = &audit {
                    sqlite::audit_append(tx, a.at_ms, a.action, &a.detail)?;
                }
                Ok(n)
            }),
            Store::Postgres(p) => p.delete_with_tombstones(ids, reason, now_ms, audit.as_ref()),
        }
    }

    /// Deletes at most `limit` of one event's quarantined rows received before `cutoff_ms`,
    /// with tombstones, in one transaction. Returns how many.
    pub fn purge_quarantine(
        &mut self,
        event_id: &str,
        cutoff_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<u64> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| {
                sqlite::purge_quarantine(tx, event_id, cutoff_ms, now_ms, limit)
            }),
            Store::Postgres(p) => p.purge_quarantine(event_id, cutoff_ms, now_ms, limit),
        }
    }

    /// The plans the database makes for `status`, the entry counts, the streams the CRM export
    /// and `forget` read, and purge's chunks: `(query, plan)`. The tests check that each is
    /// answered from an index (on PostgreSQL, with sequential scans and sorts disabled for the planning,
    /// since a small table is scanned whatever its indexes).
    pub fn query_plans(&mut self) -> Result<Vec<(&'static str, String)>> {
        match self {
            Store::Sqlite(c) => sqlite::query_plans(c),
            Store::Postgres(p) => p.query_plans(),
        }
    }

    /// Benchmarks and scale tests only: stores sealed entries of `device` as a sync would (with
    /// their retention times), without batches, receipts or audit rows, in one transaction.
    /// A million entries are generated this way, not by a million syncs.
    pub fn bulk_insert_entries(
        &mut self,
        device: &str,
        entries: &[EntryEnvelope],
        received_at_ms: i64,
    ) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| {
                sqlite::bulk_insert_entries(tx, device, entries, received_at_ms)
            }),
            Store::Postgres(p) => p.bulk_insert_entries(device, entries, received_at_ms),
        }
    }

    /// Appends an audit row on its own.
    pub fn audit_append(&mut self, audit: Audit) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite::audit_append(c, audit.at_ms, audit.action, &audit.detail),
            Store::Postgres(p) => p.audit_append(&audit),
        }
    }

    /// Checks the audit chain: `(rows, first broken row)`.
    pub fn audit_verify(&mut self) -> Result<(u64, Option<i64>)> {
        match self {
            Store::Sqlite(c) => crate::audit::verify(c),
            Store::Postgres(p) => p.audit_verify(),
        }
    }

    // ---- the console's tables (see `crate::console::store`) ----

    /// Makes the console's tables when missing: on the embedded database they are made when the
    /// console is first used; on PostgreSQL they are part of the migrations already run.
    pub fn console_migrate(&mut self) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite::console_migrate(c),
            Store::Postgres(_) => Ok(()),
        }
    }

    /// Adds a console admin, audited; `false` if the name is taken (nothing audited).
    pub fn admin_insert(
        &mut self,
        name: &str,
        role: Role,
        password_hash: &str,
        now_ms: i64,
        audit: Audit,
    ) -> Result<bool> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| {
                let added = sqlite::admin_insert(tx, name, role, password_hash, now_ms)?;
                if added {
                    sqlite::audit_append(tx, audit.at_ms, audit.action, &audit.detail)?;
                }
                Ok(added)
            }),
            Store::Postgres(p) => p.admin_insert(name, role, password_hash, now_ms, &audit),
        }
    }

    pub fn admin_get(&mut self, name: &str) -> Result<Option<Admin>> {
        match self {
            Store::Sqlite(c) => sqlite::admin_get(c, name),
            Store::Postgres(p) => p.admin_get(name),
        }
    }

    pub fn admin_count(&mut self) -> Result<u64> {
        match self {
            Store::Sqlite(c) => sqlite::admin_count(c),
            Store::Postgres(p) => p.admin_count(),
        }
    }

    /// Keeps `report` as `device`'s last health report, seen at `now_ms`.
    pub fn record_health(
        &mut self,
        device: &str,
        report: &HealthReport,
        now_ms: i64,
    ) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite::record_health(c, device, report, now_ms),
            Store::Postgres(p) => p.record_health(device, report, now_ms),
        }
    }

    /// Every device's last health report, by device name.
    pub fn health_all(&mut self) -> Result<HashMap<String, SeenReport>> {
        match self {
            Store::Sqlite(c) => sqlite::health_all(c),
            Store::Postgres(p) => p.health_all(),
        }
    }

    pub fn export_request_insert(&mut self, r: &ExportRequest) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite::export_request_insert(c, r),
            Store::Postgres(p) => p.export_request_insert(r),
        }
    }

    /// The newest unmasked-export requests first (at most 200).
    pub fn export_requests(&mut self) -> Result<Vec<ExportRequest>> {
        match self {
            Store::Sqlite(c) => sqlite::export_requests(c),
            Store::Postgres(p) => p.export_requests(),
        }
    }

    pub fn export_request(&mut self, id: &str) -> Result<Option<ExportRequest>> {
        match self {
            Store::Sqlite(c) => sqlite::export_request(c, id),
            Store::Postgres(p) => p.export_request(id),
        }
    }

    /// Records a decision on an open request; `false` if it was no longer open.
    pub fn export_request_decide(
        &mut self,
        id: &str,
        decision: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool> {
        match self {
            Store::Sqlite(c) => sqlite::export_request_decide(c, id, decision, by, now_ms),
            Store::Postgres(p) => p.export_request_decide(id, decision, by, now_ms),
        }
    }

    /// Marks an approved request downloaded; `false` if it was already (one download only).
    pub fn export_request_downloaded(&mut self, id: &str, now_ms: i64) -> Result<bool> {
        match self {
            Store::Sqlite(c) => sqlite::export_request_downloaded(c, id, now_ms),
            Store::Postgres(p) => p.export_request_downloaded(id, now_ms),
        }
    }

    /// Entries per hour of capture for `event` (hour start in ms, count): capture times only.
    pub fn entries_per_hour(&mut self, event: &str) -> Result<Vec<(i64, u64)>> {
        match self {
            Store::Sqlite(c) => sqlite::entries_per_hour(c, event),
            Store::Postgres(p) => p.entries_per_hour(event),
        }
    }

    /// The newest `limit` audit rows, newest first.
    pub fn audit_tail(&mut self, limit: usize) -> Result<Vec<AuditRow>> {
        match self {
            Store::Sqlite(c) => sqlite::audit_tail(c, limit),
            Store::Postgres(p) => p.audit_tail(limit),
        }
    }

    /// Stores a new console session; sessions idle since before `expired_before_ms` go.
    pub fn session_insert(&mut self, s: &SessionRow, expired_before_ms: i64) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite_tx(c, |tx| sqlite::session_insert(tx, s, expired_before_ms)),
            Store::Postgres(p) => p.session_insert(s, expired_before_ms),
        }
    }

    /// The session renewed to `now_ms`, if it was used after `expired_before_ms` (an expired
    /// one is deleted).
    pub fn session_touch(
        &mut self,
        id_sha256: &str,
        now_ms: i64,
        expired_before_ms: i64,
    ) -> Result<Option<SessionRow>> {
        match self {
            Store::Sqlite(c) => sqlite::session_touch(c, id_sha256, now_ms, expired_before_ms),
            Store::Postgres(p) => p.session_touch(id_sha256, now_ms, expired_before_ms),
        }
    }

    pub fn session_delete(&mut self, id_sha256: &str) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite::session_delete(c, id_sha256),
            Store::Postgres(p) => p.session_delete(id_sha256),
        }
    }

    /// Failed console sign-ins for a key (the SHA-256 of an account or address) counted since
    /// after `window_start_ms`.
    pub fn sign_in_failures(&mut self, key_sha256: &str, window_start_ms: i64) -> Result<u32> {
        match self {
            Store::Sqlite(c) => sqlite::sign_in_failures(c, key_sha256, window_start_ms),
            Store::Postgres(p) => p.sign_in_failures(key_sha256, window_start_ms),
        }
    }

    /// Counts a failed sign-in; a count started before `window_start_ms` starts again.
    pub fn sign_in_failed(
        &mut self,
        key_sha256: &str,
        now_ms: i64,
        window_start_ms: i64,
    ) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite::sign_in_failed(c, key_sha256, now_ms, window_start_ms),
            Store::Postgres(p) => p.sign_in_failed(key_sha256, now_ms, window_start_ms),
        }
    }

    pub fn sign_in_clear(&mut self, key_sha256: &str) -> Result<()> {
        match self {
            Store::Sqlite(c) => sqlite::sign_in_clear(c, key_sha256),
            Store::Postgres(p) => p.sign_in_clear(key_sha256),
        }
    }

    /// Takes one request from `device`'s token bucket in the database, shared by every server
    /// on it: `Ok(Err(seconds to wait))` when it is empty. PostgreSQL only: the embedded
    /// database has one server, which keeps its buckets in memory (`None` here).
    pub fn rate_take(
        &mut self,
        device: &str,
        rate_per_s: f64,
        burst: f64,
    ) -> Result<Option<std::result::Result<(), u64>>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(p) => p.rate_take(device, rate_per_s, burst).map(Some),
        }
    }

    /// Many requests' tokens at once, in their order: each one's device (if any), and whether
    /// the device's shared bucket granted the request (`None`: revoked, on the embedded
    /// database, or the shared buckets did not answer: the server's own bucket decides).
    pub fn authenticate_many(
        &mut self,
        token_sha256s: &[String],
        rate_per_s: f64,
        burst: f64,
    ) -> Result<Vec<Authenticated>> {
        match self {
            Store::Sqlite(c) => token_sha256s
                .iter()
                .map(|h| Ok(sqlite::device_by_token(c, h)?.map(|d| (d, None))))
                .collect(),
            Store::Postgres(p) => p.authenticate_many(token_sha256s, rate_per_s, burst),
        }
    }
}

/// Runs `f` in one SQLite transaction: committed when it returns Ok, rolled back otherwise.
fn sqlite_tx<T>(
    conn: &mut rusqlite::Connection,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn.transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}
