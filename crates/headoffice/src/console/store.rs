//! The console's own tables, and every line of SQL the console runs: admin accounts, the last
//! health report of each device, and unmasked-export requests with their approvals. Sessions and
//! sign-in attempts live in memory only.
//!
//! The schema has its own version (`console_schema`), apart from [`crate::db`]'s
//! `user_version`, so the two migrate independently.
//!
//! Three reads touch tables of other modules, because no function gives them yet: capture times
//! for the per-hour chart (`entries`, [`crate::db`]) and the audit rows to list (`audit`,
//! [`crate::audit`]) and an event's stored config (`events`). Both are read-only and marked below; they belong behind the storage
//! interface once it exists.

use crate::error::{HoError, Result};
use rusqlite::{Connection, OptionalExtension};
use sealbox_protocol::health::HealthReport;
use std::collections::HashMap;

/// The console schema's version.
pub const CONSOLE_SCHEMA_VERSION: i64 = 1;

const CONSOLE_V1: &str = "
CREATE TABLE console_admins (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,                -- viewer | operator | approver
    password_hash TEXT NOT NULL,       -- Argon2id, PHC string
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE console_device_health (
    device TEXT PRIMARY KEY,
    report TEXT NOT NULL,              -- the last HealthReport, JSON: counts and times only
    seen_at_ms INTEGER NOT NULL
);
CREATE TABLE console_export_requests (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    format TEXT NOT NULL,              -- csv | xlsx
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    decision TEXT,                     -- NULL while open; approved | refused
    decided_by TEXT,
    decided_at_ms INTEGER,
    downloaded_at_ms INTEGER
);
";

/// Brings the console's tables to [`CONSOLE_SCHEMA_VERSION`].
pub fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS console_schema (version INTEGER NOT NULL);")?;
    let version: Option<i64> = conn
        .query_row("SELECT max(version) FROM console_schema", [], |r| r.get(0))
        .optional()?
        .flatten();
    let version = version.unwrap_or(0);
    if version > CONSOLE_SCHEMA_VERSION {
        return Err(HoError::Config(format!(
            "the console's tables have version {version}, newer than this program understands ({CONSOLE_SCHEMA_VERSION}); update Sealbox"
        )));
    }
    if version < 1 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {CONSOLE_V1} INSERT INTO console_schema (version) VALUES (1); COMMIT;"
        ))?;
    }
    Ok(())
}

// ---- health reports ----

/// Keeps `report` as `device`'s last, seen at `now_ms`.
pub fn record_health(
    conn: &Connection,
    device: &str,
    report: &HealthReport,
    now_ms: i64,
) -> Result<()> {
    let json = serde_json::to_string(report).map_err(|e| HoError::Config(e.to_string()))?;
    conn.execute(
        "INSERT INTO console_device_health (device, report, seen_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (device) DO UPDATE SET report = excluded.report, seen_at_ms = excluded.seen_at_ms",
        rusqlite::params![device, json, now_ms],
    )?;
    Ok(())
}

/// A device's last report and when head office saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenReport {
    pub report: HealthReport,
    pub seen_at_ms: i64,
}

/// Every device's last report, by device name.
pub fn health_all(conn: &Connection) -> Result<HashMap<String, SeenReport>> {
    let mut stmt = conn.prepare("SELECT device, report, seen_at_ms FROM console_device_health")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (device, json, seen_at_ms) = row?;
        if let Ok(report) = serde_json::from_str(&json) {
            out.insert(device, SeenReport { report, seen_at_ms });
        }
    }
    Ok(out)
}

// ---- admin accounts ----

/// What an admin may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Counts only: never personal data, changes nothing.
    Viewer,
    /// Enrols and revokes devices, creates events, exports masked, asks for unmasked exports,
    /// answers deletion requests.
    Operator,
    /// What an operator does, and approves (or refuses) another admin's unmasked export.
    Approver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "approver" => Some(Role::Approver),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

/// Adds an admin; refused if the name is taken.
pub fn admin_insert(
    conn: &Connection,
    name: &str,
    role: Role,
    password_hash: &str,
    now_ms: i64,
) -> Result<()> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO console_admins (name, role, password_hash, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![name, role.as_str(), password_hash, now_ms],
    )?;
    if n == 0 {
        return Err(HoError::Config(format!(
            "an admin named {name} exists already"
        )));
    }
    Ok(())
}

pub fn admin_get(conn: &Connection, name: &str) -> Result<Option<Admin>> {
    Ok(conn
        .query_row(
            "SELECT name, role, password_hash FROM console_admins WHERE name = ?1",
            [name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?
        .and_then(|(name, role, password_hash)| {
            Role::parse(&role).map(|role| Admin {
                name,
                role,
                password_hash,
            })
        }))
}

pub fn admin_count(conn: &Connection) -> Result<u64> {
    Ok(
        conn.query_row("SELECT count(*) FROM console_admins", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

// ---- unmasked export requests ----

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub id: String,
    pub event_id: String,
    pub format: String,
    pub reason: String,
    pub requested_by: String,
    pub requested_at_ms: i64,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at_ms: Option<i64>,
    pub downloaded_at_ms: Option<i64>,
}

pub fn export_request_insert(conn: &Connection, r: &ExportRequest) -> Result<()> {
    conn.execute(
        "INSERT INTO console_export_requests (id, event_id, format, reason, requested_by, requested_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![r.id, r.event_id, r.format, r.reason, r.requested_by, r.requested_at_ms],
    )?;
    Ok(())
}

const REQUEST_COLUMNS: &str = "id, event_id, format, reason, requested_by, requested_at_ms, decision, decided_by, decided_at_ms, downloaded_at_ms";

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRequest> {
    Ok(ExportRequest {
        id: r.get(0)?,
        event_id: r.get(1)?,
        format: r.get(2)?,
        reason: r.get(3)?,
        requested_by: r.get(4)?,
        requested_at_ms: r.get(5)?,
        decision: r.get(6)?,
        decided_by: r.get(7)?,
        decided_at_ms: r.get(8)?,
        downloaded_at_ms: r.get(9)?,
    })
}

/// The newest requests first (at most 200).
pub fn export_requests(conn: &Connection) -> Result<Vec<ExportRequest>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {REQUEST_COLUMNS} FROM console_export_requests ORDER BY requested_at_ms DESC LIMIT 200"
    ))?;
    let rows = stmt.query_map([], request_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn export_request(conn: &Connection, id: &str) -> Result<Option<ExportRequest>> {
    Ok(conn
        .query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM console_export_requests WHERE id = ?1"),
            [id],
            request_row,
        )
        .optional()?)
}

/// Records a decision on an open request; `false` if it was no longer open.
pub fn export_request_decide(
    conn: &Connection,
    id: &str,
    decision: &str,
    by: &str,
    now_ms: i64,
) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE console_export_requests SET decision = ?2, decided_by = ?3, decided_at_ms = ?4
         WHERE id = ?1 AND decision IS NULL",
        rusqlite::params![id, decision, by, now_ms],
    )? == 1)
}

/// Marks an approved request downloaded; `false` if it was already (one download only).
pub fn export_request_downloaded(conn: &Connection, id: &str, now_ms: i64) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE console_export_requests SET downloaded_at_ms = ?2
         WHERE id = ?1 AND decision = 'approved' AND downloaded_at_ms IS NULL",
        rusqlite::params![id, now_ms],
    )? == 1)
}

// ---- read-only views of other modules' tables (to move behind the storage interface) ----

/// Entries per hour of capture for `event` (hour start in ms, count): capture times only.
/// Reads `entries` ([`crate::db`]'s table).
pub fn entries_per_hour(conn: &Connection, event: &str) -> Result<Vec<(i64, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT (captured_at_ms / 3600000) * 3600000 AS h, count(*) FROM entries
         WHERE event_id = ?1 GROUP BY h ORDER BY h",
    )?;
    let rows = stmt.query_map([event], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An event's config as `event create` stored it. Reads `events` ([`crate::db`]'s table).
pub fn event_config(conn: &Connection, id: &str) -> Result<sealbox_protocol::EventConfig> {
    let json: String = conn
        .query_row("SELECT config FROM events WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| HoError::UnknownEvent(id.to_string()))?;
    serde_json::from_str(&json).map_err(|e| HoError::Config(e.to_string()))
}

/// One audit row as the console lists it.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: i64,
    pub action: String,
    pub detail: String,
}

/// The newest `limit` audit rows, newest first. Reads `audit` ([`crate::audit`]'s table).
pub fn audit_rows(conn: &Connection, limit: usize) -> Result<Vec<AuditRow>> {
    let mut stmt =
        conn.prepare("SELECT seq, at_ms, action, detail FROM audit ORDER BY seq DESC LIMIT ?1")?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(AuditRow {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            action: r.get(2)?,
            detail: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_keeps_the_last_report() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(&dir.path().join("ho.db")).unwrap();
        migrate(&conn).unwrap();
        migrate(&conn).unwrap();
        let mut r = HealthReport {
            format: sealbox_protocol::health::HEALTH_FORMAT.into(),
            pending: 2,
            exported: 0,
            quarantined: 0,
            oldest_waiting_s: Some(5),
            app_version: "0.1.0".into(),
            last_error: None,
            sent_at_ms: 1,
        };
        record_health(&conn, "d1", &r, 10).unwrap();
        r.pending = 0;
        record_health(&conn, "d1", &r, 20).unwrap();
        let all = health_all(&conn).unwrap();
        assert_eq!(all["d1"].report.pending, 0);
        assert_eq!(all["d1"].seen_at_ms, 20);
    }
}
