//! `sealbox-headoffice migrate --to URL`: an embedded head office moved to PostgreSQL. Every
//! table is copied in one PostgreSQL transaction (binary COPY), then counted and digested on
//! both sides, row by row in the same order, and the audit chain is verified on the target. The
//! target must be empty; the source is only read.

use crate::error::{HoError, Result};
use crate::keys::HoDir;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What was copied: rows and a digest per table, the same on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub tables: BTreeMap<String, TableCopy>,
    /// The audit chain's rows and last hash, verified on the target.
    pub audit_rows: u64,
    pub audit_head: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableCopy {
    pub rows: u64,
    pub sha256: String,
}

/// A row's values as the digest sees them, whichever side they come from.
enum V {
    T(String),
    I(i64),
    B(Vec<u8>),
    /// NULL (an open export request's decision).
    N,
}

/// Digests rows in order: each value tagged and length-prefixed, so no two rows read alike.
#[derive(Default)]
struct Rows {
    h: Sha256,
    n: u64,
}

impl Rows {
    fn push(&mut self, row: &[V]) {
        for v in row {
            let (tag, bytes): (u8, Vec<u8>) = match v {
                V::T(s) => (b't', s.as_bytes().to_vec()),
                V::I(i) => (b'i', i.to_be_bytes().to_vec()),
                V::B(b) => (b'b', b.clone()),
                V::N => (b'n', Vec::new()),
            };
            self.h.update([tag]);
            self.h.update((bytes.len() as u64).to_be_bytes());
            self.h.update(&bytes);
        }
        self.n += 1;
    }

    fn finish(self) -> TableCopy {
        TableCopy {
            rows: self.n,
            sha256: hex::encode(self.h.finalize()),
        }
    }
}

/// One table: the source query (SQLite, in digest order), the target's COPY columns and types,
/// and the target's query (PostgreSQL, in the same order) that reads back what the digest
/// covers.
struct Table {
    name: &'static str,
    source: &'static str,
    copy: &'static str,
    types: &'static [Type],
    target: &'static str,
}

const TABLES: &[Table] = &[
    Table {
        name: "events",
        source: "SELECT id, config, created_at_ms FROM events ORDER BY id",
        copy: "COPY events (id, config, created_at_ms) FROM STDIN BINARY",
        types: &[Type::TEXT, Type::TEXT, Type::INT8],
        target: "SELECT id, config, created_at_ms FROM events ORDER BY id COLLATE \"C\"",
    },
    Table {
        name: "devices",
        source: "SELECT name, event_id, token_sha256, verifying_key, revoked, enrolled_at_ms FROM devices ORDER BY name",
        copy: "COPY devices (name, event_id, token_sha256, verifying_key, revoked, enrolled_at_ms) FROM STDIN BINARY",
        types: &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::BOOL, Type::INT8],
        target: "SELECT name, event_id, token_sha256, verifying_key, (CASE WHEN revoked THEN 1 ELSE 0 END)::int8, enrolled_at_ms FROM devices ORDER BY name COLLATE \"C\"",
    },
    Table {
        name: "settings",
        source: "SELECT k, v FROM settings ORDER BY k",
        copy: "COPY settings (k, v) FROM STDIN BINARY",
        types: &[Type::TEXT, Type::BYTEA],
        target: "SELECT k, v FROM settings ORDER BY k COLLATE \"C\"",
    },
    Table {
        name: "audit",
        source: "SELECT seq, at_ms, action, detail, prev_hash, hash FROM audit ORDER BY seq",
        copy: "COPY audit (seq, at_ms, action, detail, prev_hash, hash) FROM STDIN BINARY",
        types: &[Type::INT8, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
        target: "SELECT seq, at_ms, action, detail, prev_hash, hash FROM audit ORDER BY seq",
    },
    Table {
        name: "batches",
        source: "SELECT batch_id, device, ids_digest, receipt, received_at_ms FROM batches ORDER BY batch_id",
        copy: "COPY batches (batch_id, device, ids_digest, receipt, received_at_ms) FROM STDIN BINARY",
        types: &[Type::UUID, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8],
        target: "SELECT batch_id::text, device, ids_digest, receipt, received_at_ms FROM batches ORDER BY batch_id",
    },
    Table {
        name: "entries",
        source: "SELECT id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, received_at_ms, retain_from_ms FROM entries ORDER BY id",
        copy: "COPY entries (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, received_at_ms, retain_from_ms) FROM STDIN BINARY",
        types: &[Type::UUID, Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT, Type::BYTEA, Type::INT8, Type::INT8],
        target: "SELECT id::text, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, received_at_ms, retain_from_ms FROM entries ORDER BY id",
    },
    Table {
        name: "tombstones",
        source: "SELECT id, event_id, deleted_at_ms, reason FROM tombstones ORDER BY id",
        copy: "COPY tombstones (id, event_id, deleted_at_ms, reason) FROM STDIN BINARY",
        types: &[Type::UUID, Type::TEXT, Type::INT8, Type::TEXT],
        target: "SELECT id::text, event_id, deleted_at_ms, reason FROM tombstones ORDER BY id",
    },
    // The console's tables (on the embedded database, only once the console was used).
    Table {
        name: "console_admins",
        source: "SELECT name, role, password_hash, created_at_ms FROM console_admins ORDER BY name",
        copy: "COPY console_admins (name, role, password_hash, created_at_ms) FROM STDIN BINARY",
        types: &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8],
        target: "SELECT name, role, password_hash, created_at_ms FROM console_admins ORDER BY name COLLATE \"C\"",
    },
    Table {
        name: "console_device_health",
        source: "SELECT device, report, seen_at_ms FROM console_device_health ORDER BY device",
        copy: "COPY console_device_health (device, report, seen_at_ms) FROM STDIN BINARY",
        types: &[Type::TEXT, Type::TEXT, Type::INT8],
        target: "SELECT device, report, seen_at_ms FROM console_device_health ORDER BY device COLLATE \"C\"",
    },
    Table {
        name: "console_export_requests",
        source: "SELECT id, event_id, format, reason, requested_by, requested_at_ms, decision, decided_by, decided_at_ms, downloaded_at_ms FROM console_export_requests ORDER BY id",
        copy: "COPY console_export_requests (id, event_id, format, reason, requested_by, requested_at_ms, decision, decided_by, decided_at_ms, downloaded_at_ms) FROM STDIN BINARY",
        types: &[Type::UUID, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT, Type::INT8, Type::INT8],
        target: "SELECT id::text, event_id, format, reason, requested_by, requested_at_ms, decision, decided_by, decided_at_ms, downloaded_at_ms FROM console_export_requests ORDER BY id",
    },
    Table {
        name: "console_sessions",
        source: "SELECT id_sha256, admin, role, csrf, last_seen_ms FROM console_sessions ORDER BY id_sha256",
        copy: "COPY console_sessions (id_sha256, admin, role, csrf, last_seen_ms) FROM STDIN BINARY",
        types: &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8],
        target: "SELECT id_sha256, admin, role, csrf, last_seen_ms FROM console_sessions ORDER BY id_sha256 COLLATE \"C\"",
    },
    Table {
        name: "console_sign_in_failures",
        source: "SELECT key_sha256, failures, since_ms FROM console_sign_in_failures ORDER BY key_sha256",
        copy: "COPY console_sign_in_failures (key_sha256, failures, since_ms) FROM STDIN BINARY",
        types: &[Type::TEXT, Type::INT8, Type::INT8],
        target: "SELECT key_sha256, failures, since_ms FROM console_sign_in_failures ORDER BY key_sha256 COLLATE \"C\"",
    },
    Table {
        // The embedded quarantine's row number becomes a UUID key; the digest covers the rest.
        name: "quarantine",
        source: "SELECT id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, reason, received_at_ms FROM quarantine ORDER BY id, sealed, reason, received_at_ms",
        copy: "COPY quarantine (id, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, reason, received_at_ms, qid) FROM STDIN BINARY",
        types: &[Type::UUID, Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT, Type::BYTEA, Type::TEXT, Type::INT8, Type::UUID],
        target: "SELECT id::text, event_id, device, captured_at_ms, consent_version, consent_sha256, sealed, reason COLLATE \"C\", received_at_ms FROM quarantine ORDER BY id, sealed, reason COLLATE \"C\", received_at_ms",
    },
];

/// A source value as its target type wants it.
enum Out {
    T(Option<String>),
    I(Option<i64>),
    B(Vec<u8>),
    Bool(bool),
    U(uuid::Uuid),
}

impl Out {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Out::T(v) => v,
            Out::I(v) => v,
            Out::B(v) => v,
            Out::Bool(v) => v,
            Out::U(v) => v,
        }
    }
}

/// Copies the embedded database of the head office in `dir` to the empty PostgreSQL database
/// at `url`, and checks the copy.
pub fn migrate(dir: &std::path::Path, url: &str) -> Result<MigrateReport> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let config = crate::config::Config::load(dir)?;
    if config.database_url.is_some() {
        return Err(HoError::Config(
            "this head office already runs on PostgreSQL (database_url is set); migrate copies the embedded database".into(),
        ));
    }
    // Read only: the source is never written, not even migrated.
    let src = rusqlite::Connection::open_with_flags(
        ho.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(std::time::Duration::from_secs(10))?;
    let version: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != crate::store::sqlite::SCHEMA_VERSION {
        return Err(HoError::Config(format!(
            "the embedded database has schema version {version}; open it once with this version of Sealbox (any command) before migrating"
        )));
    }
    let mut target = super::postgres::PgStore::connect(url)?;
    let client = target.client();
    for t in TABLES {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])?
            .get(0);
        if n > 0 {
            return Err(HoError::TargetNotEmpty(format!("table {}", t.name)));
        }
    }
    // One snapshot of the source, one transaction on the target.
    src.execute_batch("BEGIN")?;
    let mut tx = client.transaction()?;
    let mut copied = BTreeMap::new();
    for t in TABLES {
        let mut digest = Rows::default();
        // The console's tables exist in the embedded database once the console was used.
        let present: bool = src.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [t.name],
            |r| r.get(0),
        )?;
        if !present {
            copied.insert(t.name.to_string(), digest.finish());
            continue;
        }
        let sink = tx.copy_in(t.copy)?;
        let mut w = BinaryCopyInWriter::new(sink, t.types);
        let mut stmt = src.prepare(t.source)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let mut seen = Vec::with_capacity(t.types.len());
            let mut out = Vec::with_capacity(t.types.len());
            for (i, ty) in t.types.iter().enumerate() {
                if t.name == "quarantine" && i == t.types.len() - 1 {
                    out.push(Out::U(uuid::Uuid::now_v7()));
                    continue;
                }
                if *ty == Type::TEXT {
                    let v: Option<String> = r.get(i)?;
                    seen.push(v.clone().map_or(V::N, V::T));
                    out.push(Out::T(v));
                } else if *ty == Type::INT8 {
                    let v: Option<i64> = r.get(i)?;
                    seen.push(v.map_or(V::N, V::I));
                    out.push(Out::I(v));
                } else if *ty == Type::BYTEA {
                    let v: Vec<u8> = r.get(i)?;
                    seen.push(V::B(v.clone()));
                    out.push(Out::B(v));
                } else if *ty == Type::BOOL {
                    let v: i64 = r.get(i)?;
                    seen.push(V::I(v));
                    out.push(Out::Bool(v != 0));
                } else {
                    let v: String = r.get(i)?;
                    let id = uuid::Uuid::parse_str(&v)
                        .map_err(|_| HoError::Config(format!("a damaged id in {}", t.name)))?;
                    seen.push(V::T(id.to_string()));
                    out.push(Out::U(id));
                }
            }
            digest.push(&seen);
            let values: Vec<&(dyn ToSql + Sync)> = out.iter().map(|o| o.sql()).collect();
            w.write(&values)?;
        }
        w.finish()?;
        copied.insert(t.name.to_string(), digest.finish());
    }
    tx.commit()?;
    src.execute_batch("COMMIT")?;
    // Read back and compare, table by table.
    for t in TABLES {
        let mut digest = Rows::default();
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let portal = tx.bind(t.target, &[])?;
        loop {
            let rows = tx.query_portal(&portal, 1000)?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let seen: Vec<V> = r
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if *c.type_() == Type::INT8 {
                            r.get::<_, Option<i64>>(i).map_or(V::N, V::I)
                        } else if *c.type_() == Type::BYTEA {
                            V::B(r.get(i))
                        } else {
                            r.get::<_, Option<String>>(i).map_or(V::N, V::T)
                        }
                    })
                    .collect();
                digest.push(&seen);
            }
        }
        tx.commit()?;
        let back = digest.finish();
        if Some(&back) != copied.get(t.name) {
            return Err(HoError::Config(format!(
                "the copy of {} does not match the source ({} rows read back); the target holds a partial copy: drop it before trying again",
                t.name, back.rows
            )));
        }
    }
    let (audit_rows, broken) = target.audit_verify()?;
    if let Some(seq) = broken {
        return Err(HoError::Config(format!(
            "the audit chain copied is broken at row {seq}"
        )));
    }
    let audit_head = crate::store::sqlite::audit_last(&src)?
        .map(|(_, h)| h)
        .unwrap_or_else(|| sealbox_protocol::audit::GENESIS.to_string());
    if audit_rows != copied.get("audit").map_or(0, |c| c.rows) {
        return Err(HoError::Config("the audit chain's length differs".into()));
    }
    target.audit_append(&crate::store::Audit::new(
        crate::now_ms(),
        "database.migrated",
        serde_json::json!({"from": "embedded", "entries": copied.get("entries").map(|c| c.rows), "audit_rows": audit_rows}),
    ))?;
    tracing::info!(audit_rows, "embedded database copied to PostgreSQL");
    Ok(MigrateReport {
        tables: copied,
        audit_rows,
        audit_head,
    })
}
