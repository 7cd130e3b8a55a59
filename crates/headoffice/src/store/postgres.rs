//! Head office on PostgreSQL, chosen by `database_url = "postgres://…"` (or
//! `SEALBOX_HO_DATABASE_URL`). The same tables as the embedded backend; ids are UUIDs (never a
//! sequence a distributed engine would have to serialise on), no advisory locks, every write
//! transaction `SERIALIZABLE`, retried on a serialization failure (SQLSTATE 40001) or a
//! deadlock (40P01). Several `serve` processes may share one database.
//!
//! Migrations are versioned in `sealbox_schema`; each runs in its own transaction.

use crate::console::store::{Admin, AuditRow, ExportRequest, Role, SeenReport, SessionRow};
use crate::error::{HoError, Result};
use crate::store::sqlite::{IngestError, Ingested, Source, Stored, FUTURE_SKEW_MS, PAST_SKEW_MS};
use crate::store::{DeviceAuth, NewDevice, StoredEntry};
use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Transaction};
use sealbox_protocol::health::HealthReport;
use sealbox_protocol::sync::{Receipt, SyncRequest};
use std::collections::HashMap;

/// The migrations, in order: `(version, SQL)`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE devices (
    name TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id),
    token_sha256 TEXT NOT NULL UNIQUE,
    verifying_key TEXT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT false,
    enrolled_at_ms BIGINT NOT NULL
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE FUNCTION sealbox_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION sealbox_audit_append_only();
CREATE TABLE settings (
    k TEXT PRIMARY KEY,
    v BYTEA NOT NULL
);
CREATE TABLE batches (
    batch_id UUID PRIMARY KEY,
    device TEXT NOT NULL,
    ids_digest TEXT NOT NULL,
    receipt TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE TABLE entries (
    id UUID PRIMARY KEY,
    event_id TEXT NOT NULL,
    device TEXT NOT NULL,
    captured_at_ms BIGINT NOT NULL,
    consent_version TEXT NOT NULL,
    consent_sha256 TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    received_at_ms BIGINT NOT NULL,
    retain_from_ms BIGINT NOT NULL
);
CREATE INDEX entries_retention ON entries (event_id, retain_from_ms);
CREATE INDEX entries_device ON entries (device);
CREATE INDEX entries_order ON entries (event_id, captured_at_ms, id);
CREATE TABLE tombstones (
    id UUID PRIMARY KEY,
    event_id TEXT NOT NULL,
    deleted_at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX tombstones_event ON tombstones (event_id);
CREATE TABLE quarantine (
    qid UUID PRIMARY KEY,
    id UUID NOT NULL,
    event_id TEXT NOT NULL,
    device TEXT NOT NULL,
    captured_at_ms BIGINT NOT NULL,
    consent_version TEXT NOT NULL,
    consent_sha256 TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    reason TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
CREATE INDEX quarantine_id ON quarantine (id);
CREATE INDEX quarantine_event ON quarantine (event_id, received_at_ms);
",
    ),
    (
        2,
        // The console's tables (see `crate::console::store`), and each device's token bucket
        // for the rate limit shared by every server on this database.
        "
CREATE TABLE console_admins (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE console_device_health (
    device TEXT PRIMARY KEY,
    report TEXT NOT NULL,
    seen_at_ms BIGINT NOT NULL
);
CREATE TABLE console_export_requests (
    id UUID PRIMARY KEY,
    event_id TEXT NOT NULL,
    format TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    decision TEXT,
    decided_by TEXT,
    decided_at_ms BIGINT,
    downloaded_at_ms BIGINT
);
CREATE INDEX console_export_requests_time ON console_export_requests (requested_at_ms);
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    admin TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
CREATE TABLE console_sign_in_failures (
    key_sha256 TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    since_ms BIGINT NOT NULL
);
CREATE TABLE device_rate (
    device TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at_ms BIGINT NOT NULL,
    granted BOOLEAN NOT NULL
);
",
    ),
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 2;

/// `status`'s counts per event, each from an index on `event_id` (see
/// [`PgStore::query_plans`]).
const STATUS_EVENTS: &str = "SELECT e.id,
        (SELECT count(*) FROM entries x WHERE x.event_id = e.id),
        (SELECT count(*) FROM quarantine q WHERE q.event_id = e.id),
        (SELECT count(*) FROM tombstones t WHERE t.event_id = e.id)
    FROM events e ORDER BY e.id";
/// `status`'s counts per device, from `entries_device`.
const STATUS_DEVICES: &str = "SELECT d.name, d.event_id,
        (SELECT count(*) FROM entries x WHERE x.device = d.name), d.revoked
    FROM devices d ORDER BY d.name";
const COUNT_ALL: &str = "SELECT count(*) FROM entries";
const COUNT_EVENT: &str = "SELECT count(*) FROM entries WHERE event_id = $1";
/// One event's entries in capture order, from `entries_order`: no sort.
const STREAM_EVENT: &str =
    "SELECT id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, device
     FROM entries WHERE event_id = $1 ORDER BY event_id, captured_at_ms, id";
/// Every entry, event by event, each in capture order, from `entries_order`: no sort.
const STREAM_ALL: &str =
    "SELECT id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, device
     FROM entries ORDER BY event_id, captured_at_ms, id";
const EXPIRED: &str = "SELECT id FROM entries WHERE event_id = $1 AND retain_from_ms < $2 LIMIT $3";
const EXPIRED_QUARANTINE: &str =
    "SELECT qid, id, event_id FROM quarantine WHERE event_id = $1 AND received_at_ms < $2 LIMIT $3";

/// How often a transaction that lost a serialization conflict or a deadlock is tried again.
const RETRIES: u32 = 20;

/// Head office's PostgreSQL connection.
pub struct PgStore {
    client: Client,
    prepared: Prepared,
}

/// The hot statements (a device's token and rate limit, a group commit's), prepared once per
/// connection: a query by its text costs a round trip to prepare it before the one that runs it.
#[derive(Default)]
struct Prepared(HashMap<&'static str, postgres::Statement>);

impl Prepared {
    fn get(
        &mut self,
        c: &mut impl postgres::GenericClient,
        sql: &'static str,
    ) -> std::result::Result<postgres::Statement, postgres::Error> {
        if let Some(st) = self.0.get(sql) {
            return Ok(st.clone());
        }
        let st = c.prepare(sql)?;
        self.0.insert(sql, st.clone());
        Ok(st)
    }
}

/// Whether `e` is worth trying again: another transaction won (40001, 40P01), or two processes
/// created the same thing at once (a migration racing another).
fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

fn backoff(attempt: u32) {
    let jitter = u64::from(getrandom_u8()) % 8;
    std::thread::sleep(std::time::Duration::from_millis(
        (2u64 << attempt.min(6)) + jitter,
    ));
}

fn getrandom_u8() -> u8 {
    let mut b = [0u8; 1];
    let _ = getrandom::getrandom(&mut b);
    b[0]
}

impl From<postgres::Error> for HoError {
    fn from(e: postgres::Error) -> HoError {
        // The server's message (a constraint, a connection refused); never a row's values:
        // head office's rows hold sealed payloads and ids only.
        HoError::Database(match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        })
    }
}

impl PgStore {
    /// Connects to `url` and brings the schema up to date.
    pub fn connect(url: &str) -> Result<PgStore> {
        let config: postgres::Config = url
            .parse()
            .map_err(|_| HoError::Config("database_url is not a PostgreSQL URL".into()))?;
        let client = config.connect(NoTls)?;
        let mut store = PgStore {
            client,
            prepared: Prepared::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The client, for the tests and the migration's copy.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn migrate(&mut self) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.migrate_once() {
                Ok(()) => return Ok(()),
                // Two processes migrating at once: one wins, the other finds it done.
                Err(Migrate::Db(e))
                    if attempt < RETRIES
                        && (retryable(&e)
                            || e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                            || e.code() == Some(&SqlState::DUPLICATE_TABLE)
                            || e.code() == Some(&SqlState::DUPLICATE_FUNCTION)
                            || e.code() == Some(&SqlState::DUPLICATE_OBJECT)) =>
                {
                    attempt += 1;
                    backoff(attempt);
                }
                Err(Migrate::Db(e)) => return Err(e.into()),
                Err(Migrate::Ho(e)) => return Err(e),
            }
        }
    }

    fn migrate_once(&mut self) -> std::result::Result<(), Migrate> {
        self.client.batch_execute(
            "CREATE TABLE IF NOT EXISTS sealbox_schema (
                version BIGINT PRIMARY KEY,
                applied_at_ms BIGINT NOT NULL
            )",
        )?;
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()?;
        let version: i64 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM sealbox_schema", &[])?
            .get(0);
        if version > SCHEMA_VERSION {
            return Err(Migrate::Ho(HoError::Config(format!(
                "the database has schema version {version}, newer than this program understands ({SCHEMA_VERSION}); update Sealbox"
            ))));
        }
        for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO sealbox_schema (version, applied_at_ms) VALUES ($1, $2)",
                &[v, &crate::now_ms()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` in a SERIALIZABLE transaction, tried again from the start when it loses a
    /// serialization conflict or a deadlock.
    fn write<T>(
        &mut self,
        mut f: impl FnMut(&mut Transaction<'_>) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let run = (|| {
                let mut tx = self
                    .client
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start()?;
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            })();
            match run {
                Ok(out) => return Ok(out),
                Err(e) if retryable(&e) && attempt < RETRIES => {
                    attempt += 1;
                    backoff(attempt);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn holds_data(&mut self) -> Result<bool> {
        Ok(self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM devices) OR EXISTS (SELECT 1 FROM audit)",
                &[],
            )?
            .get(0))
    }

    pub fn event_config(&mut self, id: &str) -> Result<Option<String>> {
        Ok(self
            .client
            .query_opt("SELECT config FROM events WHERE id = $1", &[&id])?
            .map(|r| r.get(0)))
    }

    pub fn events(&mut self) -> Result<Vec<(String, String)>> {
        Ok(self
            .client
            .query("SELECT id, config FROM events ORDER BY id", &[])?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    pub fn add_event(
        &mut self,
        id: &str,
        config: &str,
        now_ms: i64,
        audit: &crate::store::Audit,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO events (id, config, created_at_ms) VALUES ($1, $2, $3)",
                &[&id, &config, &now_ms],
            )?;
            audit_append(tx, audit)
        })
    }

    pub fn update_event(
        &mut self,
        id: &str,
        config: &str,
        audit: &crate::store::Audit,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE events SET config = $2 WHERE id = $1",
                &[&id, &config],
            )?;
            audit_append(tx, audit)
        })
    }

    pub fn schema_version(&mut self) -> Result<i64> {
        Ok(self
            .client
            .query_one("SELECT coalesce(max(version), 0) FROM sealbox_schema", &[])?
            .get(0))
    }

    pub fn device_exists(&mut self, name: &str) -> Result<bool> {
        Ok(self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM devices WHERE name = $1)",
                &[&name],
            )?
            .get(0))
    }

    pub fn add_device(&mut self, d: &NewDevice<'_>, audit: &crate::store::Audit) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO devices (name, event_id, token_sha256, verifying_key, enrolled_at_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &d.name,
                    &d.event_id,
                    &d.token_sha256,
                    &d.verifying_key,
                    &d.enrolled_at_ms,
                ],
            )?;
            audit_append(tx, audit)
        })
    }

    pub fn device_by_token(&mut self, token_sha256: &str) -> Result<Option<DeviceAuth>> {
        let st = self.prepared.get(
            &mut self.client,
            "SELECT name, event_id, revoked FROM devices WHERE token_sha256 = $1",
        )?;
        Ok(self
            .client
            .query_opt(&st, &[&token_sha256])?
            .map(|r| DeviceAuth {
                name: r.get(0),
                event_id: r.get(1),
                revoked: r.get(2),
            }))
    }

    pub fn device_keys(&mut self, name: &str) -> Result<Option<(String, String, bool)>> {
        Ok(self
            .client
            .query_opt(
                "SELECT event_id, verifying_key, revoked FROM devices WHERE name = $1",
                &[&name],
            )?
            .map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    pub fn revoke_device(&mut self, name: &str, audit: &crate::store::Audit) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE devices SET revoked = true WHERE name = $1",
                &[&name],
            )?;
            if n > 0 {
                audit_append(tx, audit)?;
            }
            Ok(n > 0)
        })
    }

    pub fn status(
        &mut self,
    ) -> Result<(
        Vec<crate::admin::EventCount>,
        Vec<crate::admin::DeviceCount>,
    )> {
        use crate::admin::{DeviceCount, EventCount};
        let events = self
            .client
            .query(STATUS_EVENTS, &[])?
            .into_iter()
            .map(|r| EventCount {
                id: r.get(0),
                entries: r.get::<_, i64>(1) as u64,
                quarantined: r.get::<_, i64>(2) as u64,
                deleted: r.get::<_, i64>(3) as u64,
            })
            .collect();
        let devices = self
            .client
            .query(STATUS_DEVICES, &[])?
            .into_iter()
            .map(|r| DeviceCount {
                name: r.get(0),
                event: r.get(1),
                entries: r.get::<_, i64>(2) as u64,
                revoked: r.get(3),
            })
            .collect();
        Ok((events, devices))
    }

    pub fn held_count(&mut self, ids: &[uuid::Uuid]) -> Result<usize> {
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM entries WHERE id = ANY($1)",
                &[&ids.to_vec()],
            )?
            .get(0);
        Ok(n as usize)
    }

    /// Group commit, as the embedded backend's, in one SERIALIZABLE transaction with a fixed
    /// number of round trips whatever the group's size: what the group needs to know (its batch
    /// ids seen before, its devices, tombstones, quarantined and held entries) is read with one
    /// query each, every batch is decided in order in memory as if each had been stored before
    /// the next (a refused batch writes nothing), and the rows of the batches taken are written
    /// with one statement per table. On PostgreSQL each statement is a round trip over the
    /// network, and a batch at a time made hundreds of devices syncing at once queue behind
    /// them. The whole group is tried again if it loses a conflict with another server (the same
    /// batch sent to both: the loser then finds it stored and answers with the same receipt).
    pub fn ingest_group(
        &mut self,
        batches: &[(&str, &SyncRequest)],
        source: Source,
        key: &ed25519_dalek::SigningKey,
        now_ms: i64,
    ) -> Vec<Ingested> {
        let mut attempt = 0;
        loop {
            let failed = match self.ingest_group_once(batches, source, key, now_ms) {
                Ok(Some(out)) => return out,
                // Rows appeared since the transaction began (see `write_group`).
                Ok(None) => None,
                Err(e) => Some(e),
            };
            let busy = failed.as_ref().is_none_or(retryable);
            if busy && attempt < RETRIES {
                attempt += 1;
                backoff(attempt);
                continue;
            }
            let msg = match failed {
                Some(e) => HoError::from(e).to_string(),
                None => "other writers kept storing the same entries".into(),
            };
            return batches
                .iter()
                .map(|_| {
                    Err(if busy {
                        IngestError::Busy(msg.clone())
                    } else {
                        IngestError::Database(msg.clone())
                    })
                })
                .collect();
        }
    }

    /// One try of [`PgStore::ingest_group`]: `Ok(None)` when it must be tried again.
    fn ingest_group_once(
        &mut self,
        batches: &[(&str, &SyncRequest)],
        source: Source,
        key: &ed25519_dalek::SigningKey,
        now_ms: i64,
    ) -> std::result::Result<Option<Vec<Ingested>>, postgres::Error> {
        let PgStore { client, prepared } = self;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()?;
        let mut known = Known::read(&mut tx, prepared, batches)?;
        let mut writes = Writes::default();
        let out = batches
            .iter()
            .map(|(device, req)| {
                decide_batch(&mut known, &mut writes, device, req, source, key, now_ms)
            })
            .collect();
        if !writes.store(&mut tx, prepared, now_ms)? {
            return Ok(None);
        }
        tx.commit()?;
        Ok(Some(out))
    }

    pub fn count_entries(&mut self, event: Option<&str>) -> Result<u64> {
        let n: i64 = match event {
            Some(e) => self.client.query_one(COUNT_EVENT, &[&e])?,
            None => self.client.query_one(COUNT_ALL, &[])?,
        }
        .get(0);
        Ok(n as u64)
    }

    /// The plans PostgreSQL makes for `status`, the counts, the streams and purge's chunks,
    /// with sequential scans and sorts disabled for the planning (a small table is scanned and
    /// sorted whatever its indexes): a plan that still scans or sorts a table has no index to
    /// answer from.
    pub fn query_plans(&mut self) -> Result<Vec<(&'static str, String)>> {
        let mut tx = self.client.transaction()?;
        tx.batch_execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")?;
        let mut out = Vec::new();
        let e = "e".to_string();
        let (zero, one) = (0i64, 1i64);
        let queries: [(
            &'static str,
            &str,
            Vec<&(dyn postgres::types::ToSql + Sync)>,
        ); 8] = [
            ("status events", STATUS_EVENTS, vec![]),
            ("status devices", STATUS_DEVICES, vec![]),
            ("count all", COUNT_ALL, vec![]),
            ("count event", COUNT_EVENT, vec![&e]),
            ("stream event", STREAM_EVENT, vec![&e]),
            ("stream all", STREAM_ALL, vec![]),
            ("expired", EXPIRED, vec![&e, &zero, &one]),
            (
                "expired quarantine",
                EXPIRED_QUARANTINE,
                vec![&e, &zero, &one],
            ),
        ];
        for (name, sql, params) in queries {
            let lines: Vec<String> = tx
                .query(&format!("EXPLAIN {sql}"), &params)?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            out.push((name, lines.join("\n")));
        }
        tx.rollback()?;
        Ok(out)
    }

    /// Benchmarks and scale tests only: see [`crate::store::Store::bulk_insert_entries`].
    pub fn bulk_insert_entries(
        &mut self,
        device: &str,
        entries: &[sealbox_protocol::EntryEnvelope],
        received_at_ms: i64,
    ) -> Result<()> {
        let ids: Vec<uuid::Uuid> = entries.iter().map(|e| e.id).collect();
        let events: Vec<&str> = entries.iter().map(|e| e.event_id.as_str()).collect();
        let caps: Vec<i64> = entries.iter().map(|e| e.captured_at_ms).collect();
        let cvs: Vec<&str> = entries.iter().map(|e| e.consent_version.as_str()).collect();
        let css: Vec<&str> = entries.iter().map(|e| e.consent_sha256.as_str()).collect();
        let sealed: Vec<&[u8]> = entries.iter().map(|e| e.sealed.as_slice()).collect();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO entries
                 (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, received_at_ms, retain_from_ms)
                 SELECT id, ev, $3, cap, cv, cs, sealed, $4, cap
                 FROM unnest($1::uuid[], $2::text[], $5::bigint[], $6::text[], $7::text[], $8::bytea[])
                      AS t (id, ev, cap, cv, cs, sealed)",
                &[&ids, &events, &device, &received_at_ms, &caps, &cvs, &css, &sealed],
            )
        })?;
        Ok(())
    }

    /// Streams the entries a page at a time through a portal, in one read-only snapshot.
    pub fn for_each_entry(
        &mut self,
        event: Option<&str>,
        f: &mut dyn FnMut(StoredEntry) -> Result<()>,
    ) -> Result<()> {
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let portal = match event {
            Some(e) => tx.bind(STREAM_EVENT, &[&e])?,
            None => tx.bind(STREAM_ALL, &[])?,
        };
        loop {
            let rows = tx.query_portal(&portal, 256)?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                f(StoredEntry {
                    env: sealbox_protocol::EntryEnvelope {
                        id: r.get(0),
                        event_id: r.get(1),
                        captured_at_ms: r.get(2),
                        consent_version: r.get(3),
                        consent_sha256: r.get(4),
                        sealed: r.get(5),
                    },
                    device: r.get(6),
                })?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn quarantine_entry(
        &mut self,
        id: uuid::Uuid,
        reason: &str,
        audit: &crate::store::Audit,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO quarantine
                 (qid, id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, reason, received_at_ms)
                 SELECT $3, id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, $2, received_at_ms
                 FROM entries WHERE id = $1",
                &[&id, &reason, &uuid::Uuid::now_v7()],
            )?;
            tx.execute("DELETE FROM entries WHERE id = $1", &[&id])?;
            audit_append(tx, audit)
        })
    }

    pub fn expired_ids(
        &mut self,
        event_id: &str,
        cutoff_ms: i64,
        limit: usize,
    ) -> Result<Vec<uuid::Uuid>> {
        Ok(self
            .client
            .query(EXPIRED, &[&event_id, &cutoff_ms, &(limit as i64)])?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    pub fn delete_with_tombstones(
        &mut self,
        ids: &[uuid::Uuid],
        reason: &str,
        now_ms: i64,
        audit: Option<&crate::store::Audit>,
    ) -> Result<u64> {
        let ids = ids.to_vec();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tombstones (id, event_id, deleted_at_ms, reason)
                 SELECT id, event_id, $2, $3 FROM entries WHERE id = ANY($1)
                 ON CONFLICT (id) DO NOTHING",
                &[&ids, &now_ms, &reason],
            )?;
            let n = tx.execute("DELETE FROM entries WHERE id = ANY($1)", &[&ids])?;
            tx.execute("DELETE FROM quarantine WHERE id = ANY($1)", &[&ids])?;
            if let Some(a) = audit {
                audit_append(tx, a)?;
            }
            Ok(n)
        })
    }

    /// At most `limit` of one event's quarantined rows received before `cutoff_ms`, deleted
    /// with tombstones in one transaction.
    pub fn purge_quarantine(
        &mut self,
        event_id: &str,
        cutoff_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<u64> {
        let limit = limit as i64;
        self.write(|tx| {
            tx.execute(
                &format!(
                    "WITH doomed AS ({EXPIRED_QUARANTINE}),
                     tomb AS (
                        INSERT INTO tombstones (id, event_id, deleted_at_ms, reason)
                        SELECT DISTINCT id, event_id, $4::bigint, 'retention' FROM doomed
                        ON CONFLICT (id) DO NOTHING)
                     DELETE FROM quarantine WHERE qid IN (SELECT qid FROM doomed)"
                ),
                &[&event_id, &cutoff_ms, &limit, &now_ms],
            )
        })
    }

    pub fn audit_append(&mut self, audit: &crate::store::Audit) -> Result<()> {
        self.write(|tx| audit_append(tx, audit))
    }

    // ---- the console's tables ----

    /// Adds a console admin with its audit row; `false` if the name is taken (nothing audited).
    pub fn admin_insert(
        &mut self,
        name: &str,
        role: Role,
        password_hash: &str,
        now_ms: i64,
        audit: &crate::store::Audit,
    ) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "INSERT INTO console_admins (name, role, password_hash, created_at_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                &[&name, &role.as_str(), &password_hash, &now_ms],
            )?;
            if n == 1 {
                audit_append(tx, audit)?;
            }
            Ok(n == 1)
        })
    }

    pub fn admin_get(&mut self, name: &str) -> Result<Option<Admin>> {
        Ok(self
            .client
            .query_opt(
                "SELECT name, role, password_hash FROM console_admins WHERE name = $1",
                &[&name],
            )?
            .and_then(|r| Admin::new(r.get(0), r.get::<_, &str>(1), r.get(2))))
    }

    pub fn admin_count(&mut self) -> Result<u64> {
        let n: i64 = self
            .client
            .query_one("SELECT count(*) FROM console_admins", &[])?
            .get(0);
        Ok(n as u64)
    }

    pub fn record_health(
        &mut self,
        device: &str,
        report: &HealthReport,
        now_ms: i64,
    ) -> Result<()> {
        let json = serde_json::to_string(report).map_err(|e| HoError::Config(e.to_string()))?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO console_device_health (device, report, seen_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (device) DO UPDATE SET report = excluded.report, seen_at_ms = excluded.seen_at_ms",
                &[&device, &json, &now_ms],
            )?;
            Ok(())
        })
    }

    pub fn health_all(&mut self) -> Result<HashMap<String, SeenReport>> {
        Ok(self
            .client
            .query(
                "SELECT device, report, seen_at_ms FROM console_device_health",
                &[],
            )?
            .into_iter()
            .filter_map(|r| {
                SeenReport::from_json(r.get::<_, &str>(1), r.get(2)).map(|s| (r.get(0), s))
            })
            .collect())
    }

    pub fn export_request_insert(&mut self, r: &ExportRequest) -> Result<()> {
        let id = uuid::Uuid::parse_str(&r.id)
            .map_err(|_| HoError::Config("an export request's id is not a UUID".into()))?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO console_export_requests (id, event_id, format, reason, requested_by, requested_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id, &r.event_id, &r.format, &r.reason, &r.requested_by, &r.requested_at_ms],
            )?;
            Ok(())
        })
    }

    pub fn export_requests(&mut self) -> Result<Vec<ExportRequest>> {
        Ok(self
            .client
            .query(
                &format!("SELECT {PG_REQUEST_COLUMNS} FROM console_export_requests ORDER BY requested_at_ms DESC LIMIT 200"),
                &[],
            )?
            .iter()
            .map(request_row)
            .collect())
    }

    pub fn export_request(&mut self, id: &str) -> Result<Option<ExportRequest>> {
        let Ok(id) = uuid::Uuid::parse_str(id) else {
            return Ok(None);
        };
        Ok(self
            .client
            .query_opt(
                &format!("SELECT {PG_REQUEST_COLUMNS} FROM console_export_requests WHERE id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(request_row))
    }

    pub fn export_request_decide(
        &mut self,
        id: &str,
        decision: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let Ok(id) = uuid::Uuid::parse_str(id) else {
            return Ok(false);
        };
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE console_export_requests SET decision = $2, decided_by = $3, decided_at_ms = $4
                 WHERE id = $1 AND decision IS NULL",
                &[&id, &decision, &by, &now_ms],
            )? == 1)
        })
    }

    pub fn export_request_downloaded(&mut self, id: &str, now_ms: i64) -> Result<bool> {
        let Ok(id) = uuid::Uuid::parse_str(id) else {
            return Ok(false);
        };
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE console_export_requests SET downloaded_at_ms = $2
                 WHERE id = $1 AND decision = 'approved' AND downloaded_at_ms IS NULL",
                &[&id, &now_ms],
            )? == 1)
        })
    }

    pub fn entries_per_hour(&mut self, event: &str) -> Result<Vec<(i64, u64)>> {
        Ok(self
            .client
            .query(
                "SELECT (captured_at_ms / 3600000) * 3600000 AS h, count(*) FROM entries
                 WHERE event_id = $1 GROUP BY h ORDER BY h",
                &[&event],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    pub fn audit_tail(&mut self, limit: usize) -> Result<Vec<AuditRow>> {
        Ok(self
            .client
            .query(
                "SELECT seq, at_ms, action, detail FROM audit ORDER BY seq DESC LIMIT $1",
                &[&(limit as i64)],
            )?
            .into_iter()
            .map(|r| AuditRow {
                seq: r.get(0),
                at_ms: r.get(1),
                action: r.get(2),
                detail: r.get(3),
            })
            .collect())
    }

    pub fn session_insert(&mut self, s: &SessionRow, expired_before_ms: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM console_sessions WHERE last_seen_ms < $1",
                &[&expired_before_ms],
            )?;
            tx.execute(
                "INSERT INTO console_sessions (id_sha256, admin, role, csrf, last_seen_ms) VALUES ($1, $2, $3, $4, $5)",
                &[&s.id_sha256, &s.admin, &s.role.as_str(), &s.csrf, &s.last_seen_ms],
            )?;
            Ok(())
        })
    }

    pub fn session_touch(
        &mut self,
        id_sha256: &str,
        now_ms: i64,
        expired_before_ms: i64,
    ) -> Result<Option<SessionRow>> {
        let row = self.write(|tx| {
            let row = tx.query_opt(
                "UPDATE console_sessions SET last_seen_ms = greatest(last_seen_ms, $2)
                 WHERE id_sha256 = $1 AND last_seen_ms >= $3
                 RETURNING admin, role, csrf, last_seen_ms",
                &[&id_sha256, &now_ms, &expired_before_ms],
            )?;
            if row.is_none() {
                tx.execute(
                    "DELETE FROM console_sessions WHERE id_sha256 = $1",
                    &[&id_sha256],
                )?;
            }
            Ok(row)
        })?;
        Ok(row.and_then(|r| {
            SessionRow::new(id_sha256, r.get(0), r.get::<_, &str>(1), r.get(2), r.get(3))
        }))
    }

    pub fn session_delete(&mut self, id_sha256: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM console_sessions WHERE id_sha256 = $1",
                &[&id_sha256],
            )?;
            Ok(())
        })
    }

    pub fn sign_in_failures(&mut self, key_sha256: &str, window_start_ms: i64) -> Result<u32> {
        Ok(self
            .client
            .query_opt(
                "SELECT failures FROM console_sign_in_failures WHERE key_sha256 = $1 AND since_ms >= $2",
                &[&key_sha256, &window_start_ms],
            )?
            .map_or(0, |r| r.get::<_, i64>(0)) as u32)
    }

    pub fn sign_in_failed(
        &mut self,
        key_sha256: &str,
        now_ms: i64,
        window_start_ms: i64,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO console_sign_in_failures AS f (key_sha256, failures, since_ms) VALUES ($1, 1, $2)
                 ON CONFLICT (key_sha256) DO UPDATE SET
                   failures = CASE WHEN f.since_ms < $3 THEN 1 ELSE f.failures + 1 END,
                   since_ms = CASE WHEN f.since_ms < $3 THEN excluded.since_ms ELSE f.since_ms END",
                &[&key_sha256, &now_ms, &window_start_ms],
            )?;
            Ok(())
        })
    }

    pub fn sign_in_clear(&mut self, key_sha256: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM console_sign_in_failures WHERE key_sha256 = $1",
                &[&key_sha256],
            )?;
            Ok(())
        })
    }

    /// Takes one token from `device`'s shared bucket: `Ok(Err(seconds to wait))` when empty.
    pub fn rate_take(
        &mut self,
        device: &str,
        rate_per_s: f64,
        burst: f64,
    ) -> Result<std::result::Result<(), u64>> {
        let mut taken = self.rate_take_many(&[device], rate_per_s, burst)?;
        taken
            .remove(device)
            .ok_or_else(|| HoError::Database("the rate limit returned no row".into()))
    }

    /// The per-device rate limit shared by every server on this database: one token bucket row
    /// per device, refilled and taken from in one upsert for all of `devices` (each once; one
    /// round trip, no advisory lock; the row lock orders concurrent requests). The database's
    /// clock times the refill, so servers whose clocks differ still agree. The statement's own
    /// commit does not wait for the WAL to reach the disk (or a synchronous standby): a bucket
    /// lost in a crash costs a device at most one burst, and a flush per request would cost a
    /// few milliseconds of the sync path (measured: 3.7 ms against 0.15 ms). Per device,
    /// `Err(seconds to wait)` when its bucket is empty.
    fn rate_take_many(
        &mut self,
        devices: &[&str],
        rate_per_s: f64,
        burst: f64,
    ) -> Result<HashMap<String, std::result::Result<(), u64>>> {
        let mut attempt = 0;
        loop {
            let st = self.prepared.get(
                &mut self.client,
                "INSERT INTO device_rate AS r (device, tokens, at_ms, granted)
                 SELECT d, $3::float8 - 1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, $3::float8 >= 1
                 FROM unnest($1::text[]) AS t (d), (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
                 ON CONFLICT (device) DO UPDATE SET
                   tokens = CASE
                     WHEN least($3::float8, r.tokens + greatest(0, excluded.at_ms - r.at_ms) * $2::float8 / 1000) >= 1
                     THEN least($3::float8, r.tokens + greatest(0, excluded.at_ms - r.at_ms) * $2::float8 / 1000) - 1
                     ELSE least($3::float8, r.tokens + greatest(0, excluded.at_ms - r.at_ms) * $2::float8 / 1000) END,
                   granted = least($3::float8, r.tokens + greatest(0, excluded.at_ms - r.at_ms) * $2::float8 / 1000) >= 1,
                   at_ms = greatest(r.at_ms, excluded.at_ms)
                 RETURNING device, granted, tokens",
            )?;
            let run = self.client.query(&st, &[&devices, &rate_per_s, &burst]);
            match run {
                Ok(rows) => {
                    return Ok(rows
                        .into_iter()
                        .map(|r| {
                            let (device, granted, tokens): (String, bool, f64) =
                                (r.get(0), r.get(1), r.get(2));
                            let wait = ((1.0 - tokens) / rate_per_s).ceil().max(1.0) as u64;
                            (device, if granted { Ok(()) } else { Err(wait) })
                        })
                        .collect());
                }
                Err(e) if retryable(&e) && attempt < RETRIES => {
                    attempt += 1;
                    backoff(attempt);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Many requests' tokens at once (see [`crate::store::Store::authenticate_many`]): one
    /// lookup for all, then one upsert per round of the shared buckets, each device once a
    /// round (a device with two requests waiting is taken from twice, in two rounds).
    pub fn authenticate_many(
        &mut self,
        hashes: &[String],
        rate_per_s: f64,
        burst: f64,
    ) -> Result<Vec<crate::store::Authenticated>> {
        let st = self.prepared.get(
            &mut self.client,
            "SELECT token_sha256, name, event_id, revoked FROM devices WHERE token_sha256 = ANY($1)",
        )?;
        let found: HashMap<String, DeviceAuth> = self
            .client
            .query(&st, &[&hashes])?
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    DeviceAuth {
                        name: r.get(1),
                        event_id: r.get(2),
                        revoked: r.get(3),
                    },
                )
            })
            .collect();
        // How many takes each device's requests want, and what each round gave them.
        let mut wanted: HashMap<&str, usize> = HashMap::new();
        for h in hashes {
            if let Some(d) = found.get(h).filter(|d| !d.revoked) {
                *wanted.entry(d.name.as_str()).or_default() += 1;
            }
        }
        let mut given: HashMap<String, std::collections::VecDeque<std::result::Result<(), u64>>> =
            HashMap::new();
        let mut round = 0;
        let shared = loop {
            let devices: Vec<&str> = wanted
                .iter()
                .filter(|(_, n)| **n > round)
                .map(|(d, _)| *d)
                .collect();
            if devices.is_empty() {
                break true;
            }
            match self.rate_take_many(&devices, rate_per_s, burst) {
                Ok(taken) => {
                    for (d, t) in taken {
                        given.entry(d).or_default().push_back(t);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "the shared rate limit did not answer; this server's own applies");
                    break false;
                }
            }
            round += 1;
        };
        Ok(hashes
            .iter()
            .map(|h| {
                found.get(h).map(|d| {
                    let taken = if d.revoked || !shared {
                        None
                    } else {
                        given.get_mut(&d.name).and_then(|q| q.pop_front())
                    };
                    (d.clone(), taken)
                })
            })
            .collect())
    }

    pub fn audit_verify(&mut self) -> Result<(u64, Option<i64>)> {
        let mut chain = crate::audit::Chain::default();
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let portal = tx.bind(
            "SELECT seq, at_ms, action, detail, prev_hash, hash FROM audit ORDER BY seq",
            &[],
        )?;
        'rows: loop {
            let rows = tx.query_portal(&portal, 1000)?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let row = crate::audit::AuditRow {
                    seq: r.get(0),
                    at_ms: r.get(1),
                    action: r.get(2),
                    detail: r.get(3),
                    prev_hash: r.get(4),
                    hash: r.get(5),
                };
                if !chain.push(&row) {
                    break 'rows;
                }
            }
        }
        tx.commit()?;
        Ok(chain.finish())
    }
}

const PG_REQUEST_COLUMNS: &str = "id::text, event_id, format, reason, requested_by, requested_at_ms, decision, decided_by, decided_at_ms, downloaded_at_ms";

fn request_row(r: &postgres::Row) -> ExportRequest {
    ExportRequest {
        id: r.get(0),
        event_id: r.get(1),
        format: r.get(2),
        reason: r.get(3),
        requested_by: r.get(4),
        requested_at_ms: r.get(5),
        decision: r.get(6),
        decided_by: r.get(7),
        decided_at_ms: r.get(8),
        downloaded_at_ms: r.get(9),
    }
}

enum Migrate {
    Db(postgres::Error),
    Ho(HoError),
}

impl From<postgres::Error> for Migrate {
    fn from(e: postgres::Error) -> Migrate {
        Migrate::Db(e)
    }
}

/// Appends an audit row inside `tx`. Two servers appending at once both read the same last row;
/// SERIALIZABLE makes one of them fail (and be tried again), so the chain never forks.
fn audit_append(
    tx: &mut Transaction<'_>,
    audit: &crate::store::Audit,
) -> std::result::Result<(), postgres::Error> {
    let last = tx
        .query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
    let row = crate::audit::next_row(last, audit.at_ms, audit.action, &audit.detail);
    tx.execute(
        "INSERT INTO audit (seq, at_ms, action, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&row.seq, &row.at_ms, &row.action, &row.detail, &row.prev_hash, &row.hash],
    )?;
    Ok(())
}

/// An entry as head office holds it: what the same id sent again must match.
#[derive(PartialEq)]
struct Held {
    event_id: String,
    captured_at_ms: i64,
    consent_version: String,
    consent_sha256: String,
    sealed: Vec<u8>,
}

impl Held {
    fn of(e: &sealbox_protocol::EntryEnvelope) -> Held {
        Held {
            event_id: e.event_id.clone(),
            captured_at_ms: e.captured_at_ms,
            consent_version: e.consent_version.clone(),
            consent_sha256: e.consent_sha256.clone(),
            sealed: e.sealed.clone(),
        }
    }
}

/// What a group of batches needs to know from the database, read once for the whole group,
/// then kept up to date in memory as each batch is taken.
struct Known {
    /// Batch id → (device, ids digest, receipt JSON).
    batches: HashMap<uuid::Uuid, (String, String, String)>,
    /// Device name → (its event, the event's creation time).
    devices: HashMap<String, (String, i64)>,
    tombstoned: std::collections::HashSet<uuid::Uuid>,
    /// Entry id → the payloads quarantined under it.
    quarantined: HashMap<uuid::Uuid, Vec<Vec<u8>>>,
    held: HashMap<uuid::Uuid, Held>,
}

impl Known {
    fn read(
        tx: &mut Transaction<'_>,
        prepared: &mut Prepared,
        group: &[(&str, &SyncRequest)],
    ) -> std::result::Result<Known, postgres::Error> {
        let batch_ids: Vec<uuid::Uuid> = group.iter().map(|(_, r)| r.batch_id).collect();
        let mut names: Vec<&str> = group.iter().map(|(d, _)| *d).collect();
        names.sort_unstable();
        names.dedup();
        let ids: Vec<uuid::Uuid> = group
            .iter()
            .flat_map(|(_, r)| r.entries.iter().map(|e| e.id))
            .collect();
        let st = prepared.get(
            tx,
            "SELECT batch_id, device, ids_digest, receipt FROM batches WHERE batch_id = ANY($1)",
        )?;
        let batches = tx
            .query(&st, &[&batch_ids])?
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect();
        let st = prepared.get(
            tx,
            "SELECT d.name, d.event_id, coalesce(e.created_at_ms, 0) FROM devices d
             LEFT JOIN events e ON e.id = d.event_id WHERE d.name = ANY($1)",
        )?;
        let devices = tx
            .query(&st, &[&names])?
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        let st = prepared.get(tx, "SELECT id FROM tombstones WHERE id = ANY($1)")?;
        let tombstoned = tx
            .query(&st, &[&ids])?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let st = prepared.get(tx, "SELECT id, sealed FROM quarantine WHERE id = ANY($1)")?;
        let mut quarantined: HashMap<uuid::Uuid, Vec<Vec<u8>>> = HashMap::new();
        for r in tx.query(&st, &[&ids])? {
            quarantined.entry(r.get(0)).or_default().push(r.get(1));
        }
        let st = prepared.get(
            tx,
            "SELECT id, event_id, captured_at_ms, consent_version, consent_sha256, sealed
             FROM entries WHERE id = ANY($1)",
        )?;
        let held = tx
            .query(&st, &[&ids])?
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    Held {
                        event_id: r.get(1),
                        captured_at_ms: r.get(2),
                        consent_version: r.get(3),
                        consent_sha256: r.get(4),
                        sealed: r.get(5),
                    },
                )
            })
            .collect();
        Ok(Known {
            batches,
            devices,
            tombstoned,
            quarantined,
            held,
        })
    }
}

/// The rows a group writes once every batch in it is decided.
#[derive(Default)]
struct Writes<'a> {
    /// An entry, its device and the time its retention counts from.
    entries: Vec<(&'a sealbox_protocol::EntryEnvelope, &'a str, i64)>,
    /// An entry quarantined, its device and the reason's code.
    quarantine: Vec<(&'a sealbox_protocol::EntryEnvelope, &'a str, &'static str)>,
    /// A batch taken: id, device, ids digest, receipt JSON.
    batches: Vec<(uuid::Uuid, &'a str, String, String)>,
}

impl<'a> Writes<'a> {
    fn append(&mut self, other: Writes<'a>) {
        self.entries.extend(other.entries);
        self.quarantine.extend(other.quarantine);
        self.batches.extend(other.batches);
    }

    /// Writes every row, one statement per table. `Ok(false)` when a row it read as absent is
    /// there now: another writer stored it since this transaction began (SERIALIZABLE normally
    /// reports that itself as a serialization failure), and the group must be tried again.
    fn store(
        &self,
        tx: &mut Transaction<'_>,
        prepared: &mut Prepared,
        now_ms: i64,
    ) -> std::result::Result<bool, postgres::Error> {
        if !self.entries.is_empty() {
            let e = &self.entries;
            let st = prepared.get(tx, "INSERT INTO entries
                 (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, received_at_ms, retain_from_ms)
                 SELECT id, ev, dev, cap, cv, cs, sealed, $3, ret
                 FROM unnest($1::uuid[], $2::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bytea[], $9::bigint[])
                      AS t (id, ev, dev, cap, cv, cs, sealed, ret)
                 ON CONFLICT (id) DO NOTHING")?;
            let n = tx.execute(
                &st,
                &[
                    &e.iter().map(|x| x.0.id).collect::<Vec<_>>(),
                    &e.iter().map(|x| x.0.event_id.as_str()).collect::<Vec<_>>(),
                    &now_ms,
                    &e.iter().map(|x| x.1).collect::<Vec<_>>(),
                    &e.iter().map(|x| x.0.captured_at_ms).collect::<Vec<_>>(),
                    &e.iter()
                        .map(|x| x.0.consent_version.as_str())
                        .collect::<Vec<_>>(),
                    &e.iter()
                        .map(|x| x.0.consent_sha256.as_str())
                        .collect::<Vec<_>>(),
                    &e.iter().map(|x| x.0.sealed.as_slice()).collect::<Vec<_>>(),
                    &e.iter().map(|x| x.2).collect::<Vec<_>>(),
                ],
            )?;
            if n as usize != e.len() {
                return Ok(false);
            }
        }
        if !self.quarantine.is_empty() {
            let q = &self.quarantine;
            let st = prepared.get(tx, "INSERT INTO quarantine
                 (qid, id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, reason, received_at_ms)
                 SELECT qid, id, ev, dev, cap, cv, cs, sealed, why, $10
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bytea[], $9::text[])
                      AS t (qid, id, ev, dev, cap, cv, cs, sealed, why)")?;
            tx.execute(
                &st,
                &[
                    &q.iter().map(|_| uuid::Uuid::now_v7()).collect::<Vec<_>>(),
                    &q.iter().map(|x| x.0.id).collect::<Vec<_>>(),
                    &q.iter().map(|x| x.0.event_id.as_str()).collect::<Vec<_>>(),
                    &q.iter().map(|x| x.1).collect::<Vec<_>>(),
                    &q.iter().map(|x| x.0.captured_at_ms).collect::<Vec<_>>(),
                    &q.iter()
                        .map(|x| x.0.consent_version.as_str())
                        .collect::<Vec<_>>(),
                    &q.iter()
                        .map(|x| x.0.consent_sha256.as_str())
                        .collect::<Vec<_>>(),
                    &q.iter().map(|x| x.0.sealed.as_slice()).collect::<Vec<_>>(),
                    &q.iter().map(|x| x.2).collect::<Vec<_>>(),
                    &now_ms,
                ],
            )?;
        }
        if !self.batches.is_empty() {
            let b = &self.batches;
            let st = prepared.get(tx, "INSERT INTO batches (batch_id, device, ids_digest, receipt, received_at_ms)
                 SELECT id, dev, digest, receipt, $5
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS t (id, dev, digest, receipt)
                 ON CONFLICT (batch_id) DO NOTHING")?;
            let n = tx.execute(
                &st,
                &[
                    &b.iter().map(|x| x.0).collect::<Vec<_>>(),
                    &b.iter().map(|x| x.1).collect::<Vec<_>>(),
                    &b.iter().map(|x| x.2.as_str()).collect::<Vec<_>>(),
                    &b.iter().map(|x| x.3.as_str()).collect::<Vec<_>>(),
                    &now_ms,
                ],
            )?;
            if n as usize != b.len() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// One batch of a group, decided as if the batches before it were stored: its receipt, or
/// why it is refused (then it writes nothing). The rows it stores go into `writes`, and what
/// it stores into `known` for the batches after it.
fn decide_batch<'a>(
    known: &mut Known,
    writes: &mut Writes<'a>,
    device: &'a str,
    req: &'a SyncRequest,
    source: Source,
    key: &ed25519_dalek::SigningKey,
    now_ms: i64,
) -> Ingested {
    use std::collections::hash_map::Entry;
    let ids: Vec<uuid::Uuid> = req.entries.iter().map(|e| e.id).collect();
    let digest = Receipt::digest_of(&ids);
    if let Some((dev, d, receipt)) = known.batches.get(&req.batch_id) {
        if dev == device && *d == digest {
            let Ok(r) = serde_json::from_str::<Receipt>(receipt) else {
                return Err(IngestError::BatchConflict);
            };
            // Signed again with the current key (see the embedded backend).
            let r = Receipt::sign(r.batch_id, &r.device, r.ids, r.issued_at_ms, key);
            return Ok(Stored {
                receipt: r,
                fresh: false,
                quarantined: 0,
            });
        }
        return Err(IngestError::BatchConflict);
    }
    let Some((event_id, created_at_ms)) = known.devices.get(device).cloned() else {
        return Err(IngestError::Database(format!(
            "device {device} is not enrolled"
        )));
    };
    let mut mine = Writes::default();
    let mut quarantined = 0;
    // Entries of this batch, by id, stored or quarantined so far (a batch may repeat an id).
    let mut taken: HashMap<uuid::Uuid, &sealbox_protocol::EntryEnvelope> = HashMap::new();
    let mut queued: HashMap<uuid::Uuid, Vec<&[u8]>> = HashMap::new();
    let mut conflicts = Vec::new();
    for e in &req.entries {
        // Deleted before: acknowledged (the device may erase its copy), never stored again.
        if known.tombstoned.contains(&e.id) {
            continue;
        }
        let in_quarantine = known
            .quarantined
            .get(&e.id)
            .is_some_and(|s| s.contains(&e.sealed))
            || queued
                .get(&e.id)
                .is_some_and(|s| s.contains(&e.sealed.as_slice()));
        if in_quarantine {
            continue;
        }
        if let Err(problem) = sealbox_protocol::limits::check_envelope(e, &event_id) {
            queued.entry(e.id).or_default().push(&e.sealed);
            mine.quarantine.push((e, device, problem.code()));
            quarantined += 1;
            continue;
        }
        let same_as = |h: &Held| {
            h.event_id == e.event_id
                && h.captured_at_ms == e.captured_at_ms
                && h.consent_version == e.consent_version
                && h.consent_sha256 == e.consent_sha256
                && h.sealed == e.sealed
        };
        let held_same = match (known.held.get(&e.id), taken.get(&e.id)) {
            (Some(h), _) => Some(same_as(h)),
            (None, Some(t)) => Some(same_as(&Held::of(t))),
            (None, None) => None,
        };
        match held_same {
            Some(true) => {}
            Some(false) => match source {
                Source::Sync => conflicts.push(e.id),
                Source::BatchFile => {
                    queued.entry(e.id).or_default().push(&e.sealed);
                    mine.quarantine.push((e, device, "conflict"));
                    quarantined += 1;
                }
            },
            None => {
                let retain = if e.captured_at_ms > now_ms + FUTURE_SKEW_MS
                    || e.captured_at_ms < created_at_ms - PAST_SKEW_MS
                {
                    now_ms
                } else {
                    e.captured_at_ms
                };
                taken.insert(e.id, e);
                mine.entries.push((e, device, retain));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(IngestError::Conflict(conflicts));
    }
    let receipt = Receipt::sign(req.batch_id, device, ids, now_ms, key);
    let Ok(receipt_json) = serde_json::to_string(&receipt) else {
        return Err(IngestError::BatchConflict);
    };
    // Taken: what it stores is known to the batches after it.
    for (e, _, _) in &mine.entries {
        known.held.insert(e.id, Held::of(e));
    }
    for (e, _, _) in &mine.quarantine {
        known
            .quarantined
            .entry(e.id)
            .or_default()
            .push(e.sealed.clone());
    }
    if let Entry::Vacant(v) = known.batches.entry(req.batch_id) {
        v.insert((device.to_string(), digest.clone(), receipt_json.clone()));
    }
    mine.batches
        .push((req.batch_id, device, digest, receipt_json));
    writes.append(mine);
    Ok(Stored {
        receipt,
        fresh: true,
        quarantined,
    })
}
