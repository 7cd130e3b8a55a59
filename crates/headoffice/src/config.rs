//! Head office's config: built-in defaults, then `DATA_DIR/config.toml`, then `SEALBOX_HO_*`
//! environment variables.

use crate::error::{HoError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The commented example printed by `sealbox-headoffice default-config`.
pub const DEFAULT_CONFIG: &str = r#"# Sealbox head office config: DATA_DIR/config.toml.
# Every setting may also come from the environment: SEALBOX_HO_<NAME IN CAPITALS>.

# Where `serve` listens.
listen = "127.0.0.1:8443"

# Where the console (the admins' web pages, HTTPS with the same certificate) listens once an
# admin account exists (`admin add`). Keep it on 127.0.0.1 unless admins must reach it from
# other machines; it is a separate port so the sync port can be exposed without it.
console_listen = "127.0.0.1:8444"

# The console's alert for a device with entries waiting that has not been heard from for this
# many minutes.
console_silent_alert_minutes = 60

# The address devices are told to use in their enrolment files (`enroll --url` overrides it).
# It must be https://: devices have no plain-HTTP path. Its host must be in the server
# certificate (by default 127.0.0.1 and localhost).
public_url = "https://127.0.0.1:8443"

# The TLS certificate chain and key `serve` uses, relative to the data directory. By default the
# ones `init` made (server.pem, server.key, for 127.0.0.1 and localhost, signed by ca.pem).
# tls_cert = "server.pem"
# tls_key = "server.key"

# Limits: the largest request body, the most entries in one batch, and how many requests per
# second each device may make (with a burst it may use at once).
max_body_bytes = 16777216
max_entries_per_batch = 1000
device_rate_per_s = 20.0
device_burst = 40.0

# Where head office keeps its data: unset, the embedded database (headoffice.db in the data
# directory); or a PostgreSQL URL, for several `serve` processes on one database and a
# synchronous standby (see the README, "When one machine is not enough"). The URL may carry a
# password: keep this file 0600, or set SEALBOX_HO_DATABASE_URL instead.
# database_url = "postgres://sealbox@%2Fvar%2Frun%2Fpostgresql/sealbox"

# How long a write waits for another before answering 503 "busy", in milliseconds.
busy_timeout_ms = 5000

# `serve` deletes the entries whose event's retention period has ended (as `purge` does, with
# tombstones and an audit row) when it starts and then every this many seconds (86400: daily).
# 0 turns the schedule off; `serve` then purges only when it starts.
purge_every_s = 86400

# Scheduled backups while `serve` runs: one at start, then every `backup_every_minutes`, into
# `backup_dir` (relative to the data directory, or absolute; better on another disk), keeping
# the newest `backup_keep`. Encrypted to backup-recipient.txt. Off while backup_dir is unset.
# backup_dir = "/var/backups/sealbox"
backup_every_minutes = 60.0
backup_keep = 48
"#;

/// A PostgreSQL URL: it may carry a password, so it is its own type, `[redacted]` in Debug and
/// wiped when dropped.
#[derive(Clone, Serialize, Deserialize, PartialEq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl([redacted])")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub public_url: String,
    #[serde(default = "default_console_listen")]
    pub console_listen: String,
    #[serde(default = "default_console_silent_alert_minutes")]
    pub console_silent_alert_minutes: u64,
    #[serde(default)]
    pub tls_cert: Option<String>,
    #[serde(default)]
    pub tls_key: Option<String>,
    /// `postgres://…`: head office on PostgreSQL; unset: the embedded database.
    #[serde(default)]
    pub database_url: Option<DatabaseUrl>,
    pub max_body_bytes: usize,
    pub max_entries_per_batch: usize,
    pub device_rate_per_s: f64,
    pub device_burst: f64,
    pub busy_timeout_ms: u64,
    #[serde(default = "default_purge_every_s")]
    pub purge_every_s: u64,
    #[serde(default)]
    pub backup_dir: Option<String>,
    #[serde(default = "default_backup_every_minutes")]
    pub backup_every_minutes: f64,
    #[serde(default = "default_backup_keep")]
    pub backup_keep: usize,
}

fn default_console_listen() -> String {
    "127.0.0.1:8444".into()
}

fn default_console_silent_alert_minutes() -> u64 {
    60
}

fn default_purge_every_s() -> u64 {
    86_400
}

fn default_backup_every_minutes() -> f64 {
    60.0
}

fn default_backup_keep() -> usize {
    48
}

impl Default for Config {
    fn default() -> Self {
        // The built-in example is the default: one source of truth.
        toml::from_str(DEFAULT_CONFIG).unwrap_or(Config {
            listen: "127.0.0.1:8443".into(),
            public_url: "https://127.0.0.1:8443".into(),
            console_listen: default_console_listen(),
            console_silent_alert_minutes: default_console_silent_alert_minutes(),
            tls_cert: None,
            tls_key: None,
            database_url: None,
            max_body_bytes: 16 << 20,
            max_entries_per_batch: 1000,
            device_rate_per_s: 20.0,
            device_burst: 40.0,
            busy_timeout_ms: 5000,
            purge_every_s: default_purge_every_s(),
            backup_dir: None,
            backup_every_minutes: default_backup_every_minutes(),
            backup_keep: default_backup_keep(),
        })
    }
}

impl Config {
    /// Defaults → `dir/config.toml` → environment.
    pub fn load(dir: &Path) -> Result<Config> {
        let path = dir.join("config.toml");
        let mut c = match std::fs::read_to_string(&path) {
            Ok(s) => toml::from_str(&s)
                .map_err(|e| HoError::Config(format!("{}: {}", path.display(), e.message())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(HoError::io(format!("reading {}", path.display()))(e)),
        };
        if let Ok(v) = std::env::var("SEALBOX_HO_LISTEN") {
            c.listen = v;
        }
        if let Ok(v) = std::env::var("SEALBOX_HO_PUBLIC_URL") {
            c.public_url = v;
        }
        if let Ok(v) = std::env::var("SEALBOX_HO_CONSOLE_LISTEN") {
            c.console_listen = v;
        }
        if let Ok(v) = std::env::var("SEALBOX_HO_TLS_CERT") {
            c.tls_cert = Some(v);
        }
        if let Ok(v) = std::env::var("SEALBOX_HO_TLS_KEY") {
            c.tls_key = Some(v);
        }
        if let Ok(v) = std::env::var("SEALBOX_HO_DATABASE_URL") {
            c.database_url = Some(v).filter(|v| !v.is_empty()).map(DatabaseUrl);
        }
        let num = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = num("SEALBOX_HO_MAX_BODY_BYTES") {
            c.max_body_bytes = v as usize;
        }
        if let Some(v) = num("SEALBOX_HO_MAX_ENTRIES_PER_BATCH") {
            c.max_entries_per_batch = v as usize;
        }
        if let Some(v) = num("SEALBOX_HO_DEVICE_RATE_PER_S") {
            c.device_rate_per_s = v;
        }
        if let Some(v) = num("SEALBOX_HO_DEVICE_BURST") {
            c.device_burst = v;
        }
        if let Some(v) = num("SEALBOX_HO_BUSY_TIMEOUT_MS") {
            c.busy_timeout_ms = v as u64;
        }
        if let Some(v) = num("SEALBOX_HO_CONSOLE_SILENT_ALERT_MINUTES") {
            c.console_silent_alert_minutes = v as u64;
        }
        if let Some(v) = num("SEALBOX_HO_PURGE_EVERY_S") {
            c.purge_every_s = v as u64;
        }
        if let Ok(v) = std::env::var("SEALBOX_HO_BACKUP_DIR") {
            c.backup_dir = Some(v);
        }
        if let Some(v) = num("SEALBOX_HO_BACKUP_EVERY_MINUTES") {
            c.backup_every_minutes = v;
        }
        if let Some(v) = num("SEALBOX_HO_BACKUP_KEEP") {
            c.backup_keep = v as usize;
        }
        if c.backup_every_minutes.is_nan() || c.backup_every_minutes <= 0.0 || c.backup_keep == 0 {
            return Err(HoError::Config(
                "backup_every_minutes must be positive and backup_keep at least 1".into(),
            ));
        }
        if c.device_rate_per_s <= 0.0 || c.device_burst < 1.0 || c.max_entries_per_batch == 0 {
            return Err(HoError::Config(
                "device_rate_per_s must be positive, device_burst at least 1, max_entries_per_batch at least 1".into(),
            ));
        }
        if c.database_url.as_ref().is_some_and(|u| {
            !u.expose().starts_with("postgres://") && !u.expose().starts_with("postgresql://")
        }) {
            return Err(HoError::Config(
                "database_url must start with postgres:// (or be unset: the embedded database)"
                    .into(),
            ));
        }
        if !c.public_url.starts_with("https://") {
            return Err(HoError::Config(
                "public_url must start with https://".into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_config_parses() {
        let c: super::Config = toml::from_str(super::DEFAULT_CONFIG).unwrap();
        assert_eq!(c, super::Config::default());
    }
}
