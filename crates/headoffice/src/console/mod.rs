//! The head office console: a browser's way to what the command line does, on its own HTTPS
//! listener (default 127.0.0.1:8444), for people who are not command-line users.
//!
//! - [`store`]: the console's records (admin accounts, device health reports, export requests,
//!   sessions); their SQL is head office's storage's ([`crate::store::Store`]), on either
//!   backend.
//! - [`web`]: the pages, sign-in and sessions, served by `serve` beside the sync port.
//! - [`text`]: every string of the pages in Chinese and English.

pub mod store;
pub mod text;
pub mod web;

use crate::error::HoError;
use crate::keys::HoDir;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sealbox_protocol::Lang;
use std::path::Path;
use store::Role;
use zeroize::Zeroizing;

/// The shortest admin password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Why a console action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("admin names are 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName,
    #[error("an admin named {0} exists already")]
    Exists(String),
    #[error("the password needs at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("unknown role {0}: viewer, operator or approver")]
    BadRole(String),
    #[error(transparent)]
    Ho(#[from] HoError),
}

impl From<rusqlite::Error> for ConsoleError {
    fn from(e: rusqlite::Error) -> Self {
        ConsoleError::Ho(e.into())
    }
}

impl ConsoleError {
    pub fn code(&self) -> &'static str {
        match self {
            ConsoleError::BadName => "bad_admin_name",
            ConsoleError::Exists(_) => "admin_exists",
            ConsoleError::WeakPassword => "weak_password",
            ConsoleError::BadRole(_) => "bad_role",
            ConsoleError::Ho(e) => e.code(),
        }
    }

    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (ConsoleError::Ho(e), _) => e.message(lang),
            (_, Lang::En) => self.to_string(),
            (ConsoleError::BadName, Lang::Zh) => {
                "管理员名须为 1 至 64 个字母、数字、“-”、“_”或“.”".into()
            }
            (ConsoleError::Exists(n), Lang::Zh) => format!("已有名为 {n} 的管理员"),
            (ConsoleError::WeakPassword, Lang::Zh) => {
                format!("密码至少需要 {MIN_PASSWORD_CHARS} 个字符")
            }
            (ConsoleError::BadRole(r), Lang::Zh) => {
                format!("未知角色 {r}：可选 viewer、operator 或 approver")
            }
        }
    }
}

/// Argon2id with OWASP's minimum parameters (19 MiB, 2 passes), as the device's PIN.
fn argon2() -> Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// The PHC string of a new password.
pub fn hash_password(password: &str) -> Result<String, ConsoleError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| HoError::Crypto(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HoError::Crypto(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HoError::Crypto(e.to_string()).into())
}

/// Whether `password` matches the PHC string.
pub fn password_matches(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `admin add`: a console account with a role and an Argon2id password hash. Audited.
pub fn admin_add(
    dir: &Path,
    name: &str,
    role: &str,
    password: &Zeroizing<String>,
) -> Result<(), ConsoleError> {
    let role = Role::parse(role).ok_or_else(|| ConsoleError::BadRole(role.to_string()))?;
    if !valid_name(name) {
        return Err(ConsoleError::BadName);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ConsoleError::WeakPassword);
    }
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let mut store = crate::store::Store::open(&ho)?;
    store.console_migrate()?;
    if store.admin_get(name)?.is_some() {
        return Err(ConsoleError::Exists(name.to_string()));
    }
    let hash = hash_password(password)?;
    let now = crate::now_ms();
    let audit = crate::store::Audit::new(
        now,
        "admin.added",
        serde_json::json!({"admin": name, "role": role.as_str()}),
    );
    if !store.admin_insert(name, role, &hash, now, audit)? {
        return Err(ConsoleError::Exists(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(password_matches("correct horse battery", &h));
        assert!(!password_matches("correct horse batterx", &h));
    }

    #[test]
    fn every_error_has_both_languages() {
        for e in [
            ConsoleError::BadName,
            ConsoleError::Exists("a".into()),
            ConsoleError::WeakPassword,
            ConsoleError::BadRole("x".into()),
        ] {
            let zh = e.message(Lang::Zh);
            assert_ne!(zh, e.message(Lang::En));
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{zh}"
            );
        }
    }
}
