//! The console's records: admin accounts, the last health report of each device, unmasked-export
//! requests with their approvals, sessions and failed sign-ins. Their SQL lives with the rest of
//! head office's in [`crate::store`] (`sqlite.rs` and `postgres.rs`), reached through
//! [`crate::store::Store`]; this module holds the types.
//!
//! On the embedded database the console's tables have their own schema version
//! (`console_schema`, made when the console is first used); on PostgreSQL they are part of head
//! office's versioned migrations.

use sealbox_protocol::health::HealthReport;

/// The embedded database's console functions under their former names, for callers and tests
/// that work on a `rusqlite::Connection`.
pub use crate::store::sqlite::{
    console_migrate as migrate, health_all, record_health, CONSOLE_SCHEMA_VERSION,
};

/// A device's last report and when head office saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenReport {
    pub report: HealthReport,
    pub seen_at_ms: i64,
}

impl SeenReport {
    /// A stored report (JSON); `None` if it no longer reads as one.
    pub fn from_json(json: &str, seen_at_ms: i64) -> Option<SeenReport> {
        serde_json::from_str(json)
            .ok()
            .map(|report| SeenReport { report, seen_at_ms })
    }
}

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

impl Admin {
    /// An admin as stored; `None` for a role this version does not know.
    pub fn new(name: String, role: &str, password_hash: String) -> Option<Admin> {
        Role::parse(role).map(|role| Admin {
            name,
            role,
            password_hash,
        })
    }
}

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

/// One audit row as the console lists it.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: i64,
    pub action: String,
    pub detail: String,
}

/// A console session as stored: the SHA-256 of its cookie (never the cookie), its admin, role
/// and CSRF token, and when it was last used.
#[derive(Clone)]
pub struct SessionRow {
    pub id_sha256: String,
    pub admin: String,
    pub role: Role,
    pub csrf: String,
    pub last_seen_ms: i64,
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("admin", &self.admin)
            .field("role", &self.role)
            .field("csrf", &"[redacted]")
            .field("last_seen_ms", &self.last_seen_ms)
            .finish()
    }
}

impl SessionRow {
    /// A session as stored; `None` for a role this version does not know.
    pub fn new(
        id_sha256: &str,
        admin: String,
        role: &str,
        csrf: String,
        last_seen_ms: i64,
    ) -> Option<SessionRow> {
        Role::parse(role).map(|role| SessionRow {
            id_sha256: id_sha256.to_string(),
            admin,
            role,
            csrf,
            last_seen_ms,
        })
    }
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
