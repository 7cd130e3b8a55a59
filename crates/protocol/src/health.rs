//! Device health reports: what a device tells head office about itself with every sync and,
//! while online with nothing to send, every few minutes. Counts, times, its app version and the
//! code of its last failure: never anything a visitor typed.
//!
//! A versioned addition to the sync protocol: posted to [`HEALTH_PATH`] with the device's token,
//! like a sync. A head office that predates it answers 404 and the device stops sending reports
//! to it; a head office reads any report whose `format` starts with `sealbox-health/` and ignores
//! fields it does not know, so newer devices keep working against it.

use serde::{Deserialize, Serialize};

/// The format this version writes.
pub const HEALTH_FORMAT: &str = "sealbox-health/1";
/// Where reports are posted.
pub const HEALTH_PATH: &str = "/v1/health-report";
/// The largest report body head office reads.
pub const MAX_HEALTH_BYTES: usize = 4096;
/// How often a device that is online with nothing to send reports anyway.
pub const IDLE_REPORT_EVERY_S: u64 = 300;

/// One report. Unknown fields are ignored (a later version may add some).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub format: String,
    /// Entries waiting to be sent.
    pub pending: u64,
    /// Entries in a batch file whose receipt has not come back.
    pub exported: u64,
    /// Entries head office refused on their own, kept quarantined on the device.
    pub quarantined: u64,
    /// How long the oldest entry still on the device has waited, in seconds.
    #[serde(default)]
    pub oldest_waiting_s: Option<u64>,
    /// The device's Sealbox version.
    pub app_version: String,
    /// The stable code of the device's last failure (`offline`, `unauthorized`, …), if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The device's clock when it made the report.
    pub sent_at_ms: i64,
}

/// Why head office refuses a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    #[error("not a Sealbox health report")]
    Format,
    #[error("the app version is not a short version string")]
    AppVersion,
    #[error("the error code is not a short code")]
    ErrorCode,
}

impl HealthError {
    pub fn code(&self) -> &'static str {
        match self {
            HealthError::Format => "bad_health_format",
            HealthError::AppVersion => "bad_app_version",
            HealthError::ErrorCode => "bad_error_code",
        }
    }
}

impl HealthReport {
    /// Checks the report holds only what a report may hold: a version of this family, a version
    /// string of at most 32 characters from `[0-9A-Za-z.+-]`, an error code of at most 32
    /// characters from `[a-z0-9_]`. Free text has no place to go.
    pub fn validate(&self) -> Result<(), HealthError> {
        if !self.format.starts_with("sealbox-health/") {
            return Err(HealthError::Format);
        }
        let v = &self.app_version;
        if v.is_empty()
            || v.len() > 32
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
        {
            return Err(HealthError::AppVersion);
        }
        if let Some(e) = &self.last_error {
            if e.is_empty()
                || e.len() > 32
                || !e
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(HealthError::ErrorCode);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> HealthReport {
        HealthReport {
            format: HEALTH_FORMAT.into(),
            pending: 3,
            exported: 1,
            quarantined: 0,
            oldest_waiting_s: Some(60),
            app_version: "0.1.0".into(),
            last_error: Some("offline".into()),
            sent_at_ms: 1,
        }
    }

    #[test]
    fn only_counts_codes_and_versions_pass() {
        assert_eq!(report().validate(), Ok(()));
        let mut r = report();
        r.last_error = Some("Zhang San 13812345678".into());
        assert_eq!(r.validate(), Err(HealthError::ErrorCode));
        let mut r = report();
        r.app_version = "张三".into();
        assert_eq!(r.validate(), Err(HealthError::AppVersion));
        let mut r = report();
        r.format = "sealbox-receipt/1".into();
        assert_eq!(r.validate(), Err(HealthError::Format));
    }

    #[test]
    fn a_later_version_with_more_fields_is_read() {
        let mut v = serde_json::to_value(report()).unwrap();
        v["format"] = "sealbox-health/2".into();
        v["battery_percent"] = 80.into();
        let r: HealthReport = serde_json::from_value(v).unwrap();
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r.pending, 3);
    }
}
