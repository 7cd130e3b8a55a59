//! The event config: which fields a device collects, why, how it may show them, and the consent
//! a visitor gives. Head office writes it; devices obey it.

use crate::i18n::{Lang, Text};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// A whole event's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// Stable id: lowercase letters, digits and `-`, at most 64.
    pub id: String,
    pub name: Text,
    pub fields: Vec<FieldSpec>,
    pub consent: Consent,
    #[serde(default)]
    pub kiosk: KioskSettings,
    /// The event's own badge format, beside vCard and MECARD which every kiosk reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<BadgeFormat>,
    /// Staff codes that open promoter mode, as Argon2id verifiers only: head office issues
    /// them (`sealbox-headoffice event staff-code`), a device never learns a name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staff_codes: Vec<StaffCode>,
    /// How many times head office has issued or revoked a staff code of this event: a device
    /// takes a signed update of the codes ([`crate::staff`]) only with a higher version.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub staff_codes_version: u64,
    /// The ids of revoked staff codes (never issued again, so an entry's `captured_by` names
    /// one code for good).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_staff_codes: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Who fills a field in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The visitor, on the kiosk form (and a promoter on their behalf).
    #[default]
    Visitor,
    /// Staff only: shown in promoter mode, never to a visitor (a rating, notes, an owner).
    Staff,
}

impl Audience {
    fn is_visitor(&self) -> bool {
        *self == Audience::Visitor
    }
}

/// An event's own badge format: a regular expression whose named groups are field keys, and/or
/// a map from field keys to (dotted) keys of a JSON object (a scan starting with `{`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadgeFormat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<std::collections::BTreeMap<String, String>>,
}

/// One staff code as a device holds it: a short id (recorded with each entry it captures) and
/// the Argon2id PHC string of the code. The code itself is shown once, at head office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffCode {
    /// `s1`, `s2`, …: a lowercase letter then letters or digits, at most 8.
    pub id: String,
    /// `$argon2id$…`.
    pub verifier: String,
}

/// At most this many staff codes per event.
pub const MAX_STAFF_CODES: usize = 200;

/// One form field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Key in submissions: `[a-z][a-z0-9_]*`, at most 32, not `consent`.
    pub key: String,
    pub label: Text,
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    /// Longest accepted value in characters (text, email; default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// A regular expression the whole value must match (text only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The choices of a `choice` or `multi` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<ChoiceOption>,
    /// Why the field is collected (minimum necessity): required, both languages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<Text>,
    /// How a device may show the value.
    pub display: Display,
    /// Why a sensitive kind (national ID, bank card) is truly needed. Without it such a field
    /// is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// Who fills it in: the visitor (default) or staff only (promoter mode).
    #[serde(default, skip_serializing_if = "Audience::is_visitor")]
    pub audience: Audience,
}

impl FieldSpec {
    /// Whether only staff (promoter mode) see and fill this field.
    pub fn is_staff(&self) -> bool {
        self.audience == Audience::Staff
    }
}

/// What a field collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Phone,
    Email,
    Choice,
    Multi,
    Checkbox,
    /// A national ID number: refused unless justified.
    NationalId,
    /// A bank card number: refused unless justified.
    BankCard,
}

impl FieldKind {
    fn is_sensitive(self) -> bool {
        matches!(self, FieldKind::NationalId | FieldKind::BankCard)
    }
}

/// How a device may show a value, on screen and in its lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Display {
    /// Partly hidden: `138****1234`, `张*`.
    Masked,
    /// Shown as entered.
    Plain,
    /// Never shown on the device.
    Hidden,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceOption {
    pub value: String,
    pub label: Text,
}

/// The consent a visitor gives; its version and hash are bound to each entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub version: String,
    /// How long head office keeps the data, in days.
    pub retention_days: u32,
    /// The consent text the visitor reads, with purpose and retention written out.
    pub text: Text,
}

impl Consent {
    /// SHA-256 (hex) over the consent's canonical JSON: version, retention and both texts.
    pub fn sha256(&self) -> String {
        // Serializing a struct of strings and a number cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        crate::sha256_hex(&bytes)
    }
}

/// Kiosk behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KioskSettings {
    /// A half-filled form left alone this long is wiped.
    pub idle_reset_seconds: u32,
    /// "Thank you" stays this long before the form is empty again.
    pub thank_you_seconds: u32,
    /// The language the form starts in for each visitor.
    pub default_lang: Lang,
    /// Warn on the device when an entry has waited longer than this many days for head office.
    pub warn_waiting_days: u32,
    /// Keystrokes closer together than this (ms), ending with Enter, are a badge scanner's,
    /// not a person's.
    pub scan_max_gap_ms: u32,
}

impl Default for KioskSettings {
    fn default() -> Self {
        KioskSettings {
            idle_reset_seconds: 60,
            thank_you_seconds: 5,
            default_lang: Lang::Zh,
            warn_waiting_days: 3,
            scan_max_gap_ms: 30,
        }
    }
}

/// Default longest value of a text or email field.
pub const DEFAULT_MAX_LENGTH: usize = 200;
/// The hard cap on any field's `max_length`.
pub const MAX_MAX_LENGTH: usize = 2000;

/// A config that cannot be used, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where: `fields[2] (phone).purpose`, or `line 4, column 7` for a syntax error.
    pub at: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event config, {}: {}", self.at, self.message)
    }
}

impl ConfigError {
    fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            at: at.into(),
            message: message.into(),
        }
    }
}

// Words that betray a field collecting an identity document or bank card number under an
// innocent kind such as `text`.
const SENSITIVE_HINTS: &[&str] = &[
    "id_card",
    "idcard",
    "id_number",
    "national_id",
    "identity",
    "passport",
    "bank",
    "card_number",
    "iban",
    "身份证",
    "证件",
    "护照",
    "银行卡",
    "卡号",
];

impl EventConfig {
    /// Parses and validates a config from JSON.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let config: EventConfig = serde_json::from_str(json).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            ConfigError::new(format!("line {}, column {}", e.line(), e.column()), msg)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything serde cannot: ids, purposes, options, sensitive kinds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_event_id(&self.id) {
            return Err(ConfigError::new(
                "id",
                "must be 1 to 64 lowercase letters, digits or '-'",
            ));
        }
        if self.name.is_blank() {
            return Err(ConfigError::new("name", "needs both zh and en"));
        }
        if self.fields.is_empty() {
            return Err(ConfigError::new(
                "fields",
                "an event needs at least one field",
            ));
        }
        if self.fields.len() > crate::limits::MAX_FIELDS {
            return Err(ConfigError::new(
                "fields",
                format!("at most {} fields", crate::limits::MAX_FIELDS),
            ));
        }
        let mut seen = HashSet::new();
        for (i, f) in self.fields.iter().enumerate() {
            let at = |what: &str| format!("fields[{i}] ({}){what}", f.key);
            if !is_field_key(&f.key) {
                return Err(ConfigError::new(
                    format!("fields[{i}].key"),
                    "must be a lowercase letter then letters, digits or '_', at most 32, and not 'consent'",
                ));
            }
            if !seen.insert(f.key.as_str()) {
                return Err(ConfigError::new(at(".key"), "duplicate key"));
            }
            if f.label.is_blank() {
                return Err(ConfigError::new(at(".label"), "needs both zh and en"));
            }
            match &f.purpose {
                None => {
                    return Err(ConfigError::new(
                        at(".purpose"),
                        "every field must state why it is collected (minimum necessity)",
                    ))
                }
                Some(p) if p.is_blank() => {
                    return Err(ConfigError::new(at(".purpose"), "needs both zh and en"))
                }
                Some(_) => {}
            }
            let looks_sensitive = {
                let hay = format!("{} {} {}", f.key, f.label.zh, f.label.en).to_lowercase();
                SENSITIVE_HINTS.iter().any(|h| hay.contains(h))
            };
            let justified = f
                .justification
                .as_deref()
                .is_some_and(|j| j.trim().chars().count() >= 10);
            if (f.kind.is_sensitive() || looks_sensitive) && !justified {
                return Err(ConfigError::new(
                    at(""),
                    "collects national ID or bank card numbers: refused unless the field carries a justification (PIPL Art. 6)",
                ));
            }
            match f.kind {
                FieldKind::Choice | FieldKind::Multi => {
                    if f.options.is_empty() {
                        return Err(ConfigError::new(at(".options"), "a choice needs options"));
                    }
                    let mut vals = HashSet::new();
                    for o in &f.options {
                        if o.value.is_empty() || !vals.insert(o.value.as_str()) {
                            return Err(ConfigError::new(
                                at(".options"),
                                "option values must be non-empty and distinct",
                            ));
                        }
                        if o.label.is_blank() {
                            return Err(ConfigError::new(
                                at(".options"),
                                "option labels need both zh and en",
                            ));
                        }
                    }
                }
                _ if !f.options.is_empty() => {
                    return Err(ConfigError::new(
                        at(".options"),
                        "only choice and multi fields have options",
                    ))
                }
                _ => {}
            }
            if let Some(max) = f.max_length {
                if max == 0 || max > MAX_MAX_LENGTH {
                    return Err(ConfigError::new(
                        at(".max_length"),
                        format!("must be between 1 and {MAX_MAX_LENGTH}"),
                    ));
                }
            }
            if f.is_staff() && f.required {
                return Err(ConfigError::new(
                    at(".required"),
                    "a staff-only field cannot be required: visitors submit the form without staff",
                ));
            }
            if let Some(p) = &f.pattern {
                if f.kind != FieldKind::Text {
                    return Err(ConfigError::new(
                        at(".pattern"),
                        "only text fields take a pattern",
                    ));
                }
                if regex::Regex::new(p).is_err() {
                    return Err(ConfigError::new(
                        at(".pattern"),
                        "is not a valid regular expression",
                    ));
                }
            }
        }
        let c = &self.consent;
        if c.version.trim().is_empty() {
            return Err(ConfigError::new("consent.version", "is required"));
        }
        if c.version.chars().count() > crate::limits::MAX_CONSENT_VERSION_CHARS {
            return Err(ConfigError::new(
                "consent.version",
                format!(
                    "at most {} characters (head office refuses longer ones)",
                    crate::limits::MAX_CONSENT_VERSION_CHARS
                ),
            ));
        }
        if c.text.is_blank() {
            return Err(ConfigError::new("consent.text", "needs both zh and en"));
        }
        if c.retention_days == 0 || c.retention_days > 3650 {
            return Err(ConfigError::new(
                "consent.retention_days",
                "must be between 1 and 3650",
            ));
        }
        let bound = crate::limits::max_sealed_bytes(self);
        if bound > crate::limits::MAX_SEALED_BYTES {
            return Err(ConfigError::new(
                "fields",
                format!(
                    "the longest entry this form accepts could seal to {} KiB, more than head office's limit of {} KiB: lower some max_length or remove fields",
                    bound.div_ceil(1024),
                    crate::limits::MAX_SEALED_BYTES / 1024
                ),
            ));
        }
        self.validate_badge()?;
        self.validate_staff_codes()?;
        let k = &self.kiosk;
        if !(5..=500).contains(&k.scan_max_gap_ms) {
            return Err(ConfigError::new(
                "kiosk.scan_max_gap_ms",
                "must be between 5 and 500",
            ));
        }
        if !(10..=3600).contains(&k.idle_reset_seconds) {
            return Err(ConfigError::new(
                "kiosk.idle_reset_seconds",
                "must be between 10 and 3600",
            ));
        }
        if !(1..=60).contains(&k.thank_you_seconds) {
            return Err(ConfigError::new(
                "kiosk.thank_you_seconds",
                "must be between 1 and 60",
            ));
        }
        if !(1..=365).contains(&k.warn_waiting_days) {
            return Err(ConfigError::new(
                "kiosk.warn_waiting_days",
                "must be between 1 and 365",
            ));
        }
        Ok(())
    }

    pub fn field(&self, key: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// A field a badge may fill: a visitor's field that takes text.
    fn badge_target(&self, key: &str) -> bool {
        self.field(key).is_some_and(|f| {
            !f.is_staff()
                && matches!(
                    f.kind,
                    FieldKind::Text | FieldKind::Phone | FieldKind::Email | FieldKind::Choice
                )
        })
    }

    fn validate_badge(&self) -> Result<(), ConfigError> {
        let Some(badge) = &self.badge else {
            return Ok(());
        };
        if badge.regex.is_none() && badge.json.is_none() {
            return Err(ConfigError::new("badge", "needs a regex or a json map"));
        }
        if let Some(p) = &badge.regex {
            {
                let re = regex::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|_| {
                        ConfigError::new("badge.regex", "is not a valid regular expression")
                    })?;
                let names: Vec<&str> = re.capture_names().flatten().collect();
                if names.is_empty() {
                    return Err(ConfigError::new(
                        "badge.regex",
                        "needs named groups, (?P<key>…), named after the fields they fill",
                    ));
                }
                for n in names {
                    if !self.badge_target(n) {
                        return Err(ConfigError::new(
                            "badge.regex",
                            format!("the group {n:?} is not a visitor's text, phone, email or choice field"),
                        ));
                    }
                }
            }
        }
        if let Some(map) = &badge.json {
            {
                if map.is_empty() {
                    return Err(ConfigError::new("badge.json", "maps no field"));
                }
                for (k, path) in map {
                    if !self.badge_target(k) {
                        return Err(ConfigError::new(
                            format!("badge.json.{k}"),
                            "is not a visitor's text, phone, email or choice field",
                        ));
                    }
                    if path.is_empty() || path.split('.').any(str::is_empty) || path.len() > 100 {
                        return Err(ConfigError::new(
                            format!("badge.json.{k}"),
                            "must be a key of the badge's JSON, dotted for nested objects",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_staff_codes(&self) -> Result<(), ConfigError> {
        validate_staff_code_list(&self.staff_codes)?;
        for (i, id) in self.revoked_staff_codes.iter().enumerate() {
            if !is_staff_code_id(id) || self.staff_codes.iter().any(|c| &c.id == id) {
                return Err(ConfigError::new(
                    format!("revoked_staff_codes[{i}]"),
                    "must be the id of a staff code that is no longer in staff_codes",
                ));
            }
        }
        Ok(())
    }
}

/// Checks a list of staff codes: at most [`MAX_STAFF_CODES`], distinct valid ids, Argon2id
/// verifiers.
pub fn validate_staff_code_list(codes: &[StaffCode]) -> Result<(), ConfigError> {
    if codes.len() > MAX_STAFF_CODES {
        return Err(ConfigError::new(
            "staff_codes",
            format!("at most {MAX_STAFF_CODES}"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in codes.iter().enumerate() {
        if !is_staff_code_id(&c.id) || !seen.insert(c.id.as_str()) {
            return Err(ConfigError::new(
                format!("staff_codes[{i}].id"),
                "must be a lowercase letter then letters or digits, at most 8, and distinct",
            ));
        }
        if !c.verifier.starts_with("$argon2id$") || c.verifier.len() > 200 {
            return Err(ConfigError::new(
                format!("staff_codes[{i}].verifier"),
                "must be an Argon2id hash: head office writes it (`event staff-code`)",
            ));
        }
    }
    Ok(())
}

/// A staff code's id: `[a-z][a-z0-9]{0,7}`.
pub fn is_staff_code_id(s: &str) -> bool {
    let mut b = s.bytes();
    s.len() <= 8
        && b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// `[a-z0-9-]{1,64}`.
pub fn is_event_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_field_key(s: &str) -> bool {
    let mut b = s.bytes();
    s.len() <= 32
        && s != "consent"
        && b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Configs for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) fn minimal() -> super::EventConfig {
        super::EventConfig::from_json(super::tests::EXAMPLE).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../../examples/trade-show.json");

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<EventConfig, ConfigError> {
        let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        edit(&mut v);
        EventConfig::from_json(&v.to_string())
    }

    #[test]
    fn example_is_valid() {
        let c = EventConfig::from_json(EXAMPLE).unwrap();
        assert_eq!(c.fields.len(), 5);
        assert_eq!(c.consent.retention_days, 30);
        assert_eq!(c.consent.sha256().len(), 64);
    }

    #[test]
    fn refusals_are_located() {
        let e = with(|v| v["fields"][1]["kind"] = "telepathy".into()).unwrap_err();
        assert!(e.at.starts_with("line "), "{e}");
        assert!(e.message.contains("unknown variant"), "{e}");

        let e = with(|v| v["fields"][1]["key"] = "name".into()).unwrap_err();
        assert_eq!(e.at, "fields[1] (name).key");
        assert!(e.message.contains("duplicate"));

        let e = with(|v| {
            v["fields"][2].as_object_mut().unwrap().remove("purpose");
        })
        .unwrap_err();
        assert_eq!(e.at, "fields[2] (email).purpose");

        let e = with(|v| {
            v["fields"].as_array_mut().unwrap().push(serde_json::json!({
                "key": "id_no", "label": {"zh": "身份证号", "en": "ID number"}, "kind": "text",
                "purpose": {"zh": "核验", "en": "verification"}, "display": "hidden"
            }))
        })
        .unwrap_err();
        assert!(e.message.contains("national ID"), "{e}");

        let ok = with(|v| {
            v["fields"].as_array_mut().unwrap().push(serde_json::json!({
                "key": "card", "label": {"zh": "银行卡号", "en": "Card"}, "kind": "bank_card",
                "purpose": {"zh": "退款", "en": "refunds"}, "display": "hidden",
                "justification": "refunds of the paid ticket are made to the card used"
            }))
        });
        assert!(ok.is_ok());

        let e = with(|v| v["fields"][0]["surprise"] = 1.into()).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let e = with(|v| v["consent"]["retention_days"] = 0.into()).unwrap_err();
        assert_eq!(e.at, "consent.retention_days");
        let e = with(|v| v["fields"][4]["options"] = serde_json::json!([])).unwrap_err();
        assert_eq!(e.at, "fields[4] (interest).options");
        let e = with(|v| v["fields"][0]["key"] = "consent".into()).unwrap_err();
        assert_eq!(e.at, "fields[0].key");
    }

    #[test]
    fn staff_fields_badges_and_staff_codes_are_checked() {
        let staff = |v: &mut serde_json::Value| {
            v["fields"].as_array_mut().unwrap().push(serde_json::json!({
                "key": "rating", "label": {"zh": "意向", "en": "Rating"}, "kind": "choice",
                "audience": "staff", "display": "plain",
                "purpose": {"zh": "安排跟进", "en": "To plan the follow-up"},
                "options": [{"value": "1", "label": {"zh": "1", "en": "1"}}]
            }))
        };
        let c = with(staff).unwrap();
        assert!(c.field("rating").unwrap().is_staff());
        assert!(!c.field("name").unwrap().is_staff());
        let e = with(|v| {
            staff(v);
            v["fields"][5]["required"] = true.into();
        })
        .unwrap_err();
        assert_eq!(e.at, "fields[5] (rating).required");
        let e = with(|v| {
            staff(v);
            v["fields"][5].as_object_mut().unwrap().remove("purpose");
        })
        .unwrap_err();
        assert_eq!(e.at, "fields[5] (rating).purpose");
        let e = with(|v| {
            staff(v);
            v["fields"][5]["audience"] = "manager".into();
        })
        .unwrap_err();
        assert!(e.message.contains("unknown variant"), "{e}");

        assert!(with(
            |v| v["badge"] = serde_json::json!({"regex": "^B(?P<name>[^|]+)\\|(?P<phone>\\d+)$"})
        )
        .is_ok());
        let e = with(|v| v["badge"] = serde_json::json!({"regex": "^(\\d+)$"})).unwrap_err();
        assert_eq!(e.at, "badge.regex");
        let e = with(|v| {
            staff(v);
            v["badge"] = serde_json::json!({"regex": "(?P<rating>\\d)"})
        })
        .unwrap_err();
        assert!(e.message.contains("rating"), "{e}");
        let e = with(|v| v["badge"] = serde_json::json!({"regex": "(?P<name>"})).unwrap_err();
        assert_eq!(e.at, "badge.regex");
        assert!(with(|v| v["badge"] =
            serde_json::json!({"json": {"name": "attendee.name", "email": "mail"}}))
        .is_ok());
        let e = with(|v| v["badge"] = serde_json::json!({})).unwrap_err();
        assert_eq!(e.at, "badge");
        let e = with(|v| v["badge"] = serde_json::json!({"json": {"nope": "x"}})).unwrap_err();
        assert_eq!(e.at, "badge.json.nope");
        let e = with(|v| v["badge"] = serde_json::json!({"json": {"name": "a..b"}})).unwrap_err();
        assert_eq!(e.at, "badge.json.name");

        let code = |id: &str, verifier: &str| serde_json::json!({"id": id, "verifier": verifier});
        assert!(
            with(|v| v["staff_codes"] = serde_json::json!([code("s1", "$argon2id$v=19$x")]))
                .is_ok()
        );
        let e = with(|v| {
            v["staff_codes"] =
                serde_json::json!([code("s1", "$argon2id$a"), code("s1", "$argon2id$b")])
        })
        .unwrap_err();
        assert_eq!(e.at, "staff_codes[1].id");
        let e = with(|v| v["staff_codes"] = serde_json::json!([code("Li Lei", "$argon2id$a")]))
            .unwrap_err();
        assert_eq!(e.at, "staff_codes[0].id");
        let e =
            with(|v| v["staff_codes"] = serde_json::json!([code("s1", "12345678")])).unwrap_err();
        assert_eq!(e.at, "staff_codes[0].verifier");
        let e = with(|v| v["kiosk"]["scan_max_gap_ms"] = 1.into()).unwrap_err();
        assert_eq!(e.at, "kiosk.scan_max_gap_ms");
    }
}
