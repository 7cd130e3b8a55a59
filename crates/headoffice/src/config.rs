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

# The address devices are told to use in their enrolment files (`enroll --url` overrides it).
# It must be https://: devices have no plain-HTTP path. Its host must be in the server
# certificate (by default 127.0.0.1 and localhost).
public_url = "https://127.0.0.1:8443"
"#;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub public_url: String,
}

impl Default for Config {
    fn default() -> Self {
        // The built-in example is the default: one source of truth.
        toml::from_str(DEFAULT_CONFIG).unwrap_or(Config {
            listen: "127.0.0.1:8443".into(),
            public_url: "https://127.0.0.1:8443".into(),
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
