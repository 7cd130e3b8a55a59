//! Every limit head office applies to an entry envelope, in one place, so that both sides apply
//! the same: head office refuses what breaks them, `event create` refuses a config whose entries
//! could break them, and a device never stores an entry head office would refuse.

use crate::entry::EntryEnvelope;
use crate::event::{EventConfig, FieldKind, DEFAULT_MAX_LENGTH};

/// The largest sealed payload of one entry that head office accepts.
pub const MAX_SEALED_BYTES: usize = 64 * 1024;
/// The longest consent version (characters).
pub const MAX_CONSENT_VERSION_CHARS: usize = 100;
/// The most fields one event's form may have.
pub const MAX_FIELDS: usize = 100;

/// What age adds around a payload sealed to one X25519 recipient: the header with its stanza and
/// MAC (about 200 bytes), the 16-byte nonce, and a 16-byte tag for every 64 KiB chunk. Rounded
/// up generously.
const AGE_OVERHEAD: usize = 512;

/// Why head office refuses one envelope. Each has a stable code that travels back to the device,
/// which quarantines the entry with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeProblem {
    #[error("the entry is for another event than this device's")]
    WrongEvent,
    #[error("consent_sha256 must be 64 hex digits")]
    BadConsentHash,
    #[error("consent_version is missing or longer than {MAX_CONSENT_VERSION_CHARS} characters")]
    BadConsentVersion,
    #[error("the sealed payload is not an age file")]
    NotSealed,
    #[error("the sealed payload is larger than {MAX_SEALED_BYTES} bytes")]
    TooLarge,
    #[error("entry ids are UUIDv7 and capture times positive")]
    BadId,
}

impl EnvelopeProblem {
    /// The stable code (in head office's answer and in the device's quarantine).
    pub fn code(self) -> &'static str {
        match self {
            EnvelopeProblem::WrongEvent => "wrong_event",
            EnvelopeProblem::BadConsentHash => "bad_consent_hash",
            EnvelopeProblem::BadConsentVersion => "bad_consent_version",
            EnvelopeProblem::NotSealed => "not_sealed",
            EnvelopeProblem::TooLarge => "entry_too_large",
            EnvelopeProblem::BadId => "bad_id",
        }
    }
}

/// Checks one envelope against head office's limits, for a device enrolled in `event_id`.
pub fn check_envelope(e: &EntryEnvelope, event_id: &str) -> Result<(), EnvelopeProblem> {
    if e.event_id != event_id {
        return Err(EnvelopeProblem::WrongEvent);
    }
    if e.consent_sha256.len() != 64 || !e.consent_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EnvelopeProblem::BadConsentHash);
    }
    let v = e.consent_version.chars().count();
    if v == 0 || v > MAX_CONSENT_VERSION_CHARS {
        return Err(EnvelopeProblem::BadConsentVersion);
    }
    if !e.sealed.starts_with(b"age-encryption.org/v1\n") {
        return Err(EnvelopeProblem::NotSealed);
    }
    if e.sealed.len() > MAX_SEALED_BYTES {
        return Err(EnvelopeProblem::TooLarge);
    }
    if e.id.get_version_num() != 7 || e.captured_at_ms <= 0 {
        return Err(EnvelopeProblem::BadId);
    }
    Ok(())
}

/// An upper bound of the sealed size of any entry this config accepts: every text at its
/// longest in 4-byte characters, each JSON-escaped at worst, every choice at its longest
/// option, plus the payload's fixed fields and age's overhead.
pub fn max_sealed_bytes(config: &EventConfig) -> usize {
    // {"v":1,"entry_id":"…36…","event_id":"…","captured_at_ms":…,"consent_version":"…",
    //  "consent_sha256":"…64…","values":{}}, and ,"staff_code":"…8…" (30 with room).
    let fixed = 160 + 36 + 30 + config.id.len() * 2 + 20 + config.consent.version.len() * 2 + 64;
    let fields: usize = config
        .fields
        .iter()
        .map(|f| {
            // "key":value, with quotes, colon and comma.
            let key = f.key.len() + 4;
            let value = match f.kind {
                FieldKind::Checkbox => 5,
                FieldKind::Choice => {
                    f.options
                        .iter()
                        .map(|o| o.value.len() * 2)
                        .max()
                        .unwrap_or(0)
                        + 2
                }
                FieldKind::Multi => {
                    f.options
                        .iter()
                        .map(|o| o.value.len() * 2 + 3)
                        .sum::<usize>()
                        + 2
                }
                // Up to 4 UTF-8 bytes a character; control characters are refused, so an
                // escape (`\"`, `\\`) never takes more than that either.
                _ => f.max_length.unwrap_or(DEFAULT_MAX_LENGTH) * 4 + 2,
            };
            key + value
        })
        .sum();
    fixed + fields + AGE_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(fields: usize, max_length: usize) -> EventConfig {
        let mut c: EventConfig =
            serde_json::from_str(include_str!("../../../examples/trade-show.json")).unwrap();
        let template = c.fields[0].clone();
        c.fields = (0..fields)
            .map(|i| {
                let mut f = template.clone();
                f.key = format!("f{i}");
                f.kind = FieldKind::Text;
                f.max_length = Some(max_length);
                f
            })
            .collect();
        c
    }

    #[test]
    fn the_bound_holds_for_the_worst_entry_and_refuses_what_cannot_fit() {
        // The example fits with room to spare.
        let example: EventConfig =
            serde_json::from_str(include_str!("../../../examples/trade-show.json")).unwrap();
        assert!(max_sealed_bytes(&example) < MAX_SEALED_BYTES / 4);
        // Twelve text fields of 2000 characters cannot fit.
        assert!(max_sealed_bytes(&config_with(12, 2000)) > MAX_SEALED_BYTES);
        assert!(max_sealed_bytes(&config_with(10_000, 1)) > MAX_SEALED_BYTES);
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(EnvelopeProblem::TooLarge.code(), "entry_too_large");
        assert_eq!(EnvelopeProblem::WrongEvent.code(), "wrong_event");
    }
}
