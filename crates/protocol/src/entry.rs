//! A visitor's submission: validation against the event config, the display summary, and the
//! sealed envelope that carries it to head office.
//!
//! Nothing here ever puts a submitted value into an error or a `Debug` string.

use crate::event::{Display, EventConfig, FieldKind, FieldSpec, DEFAULT_MAX_LENGTH};
use crate::i18n::Lang;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroize;

/// A validated field value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
#[serde(untagged)]
pub enum FieldValue {
    Bool(bool),
    Text(String),
    List(Vec<String>),
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A submission that passed validation: values normalised, consent given.
/// Zeroized on drop; `Debug` shows only the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidEntry {
    values: BTreeMap<String, FieldValue>,
}

impl ValidEntry {
    pub fn values(&self) -> &BTreeMap<String, FieldValue> {
        &self.values
    }
}

impl Drop for ValidEntry {
    fn drop(&mut self) {
        for v in self.values.values_mut() {
            v.zeroize();
        }
    }
}

impl fmt::Debug for ValidEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidEntry")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a submission was refused. Carries the field's key, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message(Lang::En))]
pub struct EntryError {
    /// The field's key, when the problem belongs to one field.
    pub field: Option<String>,
    pub code: EntryErrorCode,
}

/// Stable codes: the UI branches on these, and translates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryErrorCode {
    /// The submission is not a JSON object.
    NotAnObject,
    /// Not valid JSON at all.
    Malformed,
    /// Consent not given.
    NoConsent,
    /// A key the form does not have.
    UnknownField,
    /// A required field is empty.
    Missing,
    /// Longer than the field allows.
    TooLong,
    /// The wrong JSON type for the field's kind.
    WrongType,
    /// Does not match the field's pattern.
    Pattern,
    BadPhone,
    BadEmail,
    /// Not one of the field's options.
    BadChoice,
    /// Control characters in a text.
    BadCharacters,
    /// Sealed, the entry would be larger than head office accepts
    /// ([`crate::limits::MAX_SEALED_BYTES`]).
    TooLarge,
    /// Invisible characters that reorder text (U+202E and friends): they would make a value
    /// display as something else in lists and spreadsheets.
    DirectionControl,
    /// The same key twice in one submission (JSON parsers would keep only one of them).
    DuplicateField,
    /// A staff-only field in a visitor's submission (outside promoter mode).
    StaffOnly,
}

impl EntryError {
    fn at(field: &FieldSpec, code: EntryErrorCode) -> Self {
        EntryError {
            field: Some(field.key.clone()),
            code,
        }
    }

    pub fn general(code: EntryErrorCode) -> Self {
        EntryError { field: None, code }
    }

    /// The message in one language, naming the field but never showing its value.
    pub fn message(&self, lang: Lang) -> String {
        match (&self.field, lang) {
            (Some(k), Lang::En) => format!("field \"{k}\": {}", self.hint(lang)),
            (Some(k), Lang::Zh) => format!("字段 \"{k}\"：{}", self.hint(lang)),
            (None, _) => self.hint(lang).to_string(),
        }
    }

    /// The message without the field's key: what a form shows under the field itself.
    pub fn hint(&self, lang: Lang) -> &'static str {
        use EntryErrorCode::*;
        let (zh, en) = match self.code {
            NotAnObject => (
                "提交内容应为一个对象",
                "the submission should be a JSON object",
            ),
            Malformed => (
                "提交内容不是有效的 JSON",
                "the submission is not valid JSON",
            ),
            NoConsent => ("需要勾选同意才能提交", "consent is required to submit"),
            UnknownField => ("表单中没有这个字段", "the form has no such field"),
            Missing => ("此项必填", "is required"),
            TooLong => ("内容过长", "is too long"),
            WrongType => ("内容类型不对", "has the wrong type"),
            Pattern => ("格式不正确", "is not in the expected format"),
            BadPhone => ("手机号应为 11 位数字", "phone number should have 11 digits"),
            BadEmail => (
                "邮箱格式应为 name@example.com",
                "email should look like name@example.com",
            ),
            BadChoice => ("请从选项中选择", "is not one of the options"),
            BadCharacters => (
                "含有不允许的字符",
                "contains characters that are not allowed",
            ),
            TooLarge => (
                "内容过多，总部无法接收：请缩短填写内容",
                "the entry is too large for head office to accept: shorten the answers",
            ),
            DirectionControl => (
                "含有会改变文字显示顺序的隐藏字符（如 U+202E）",
                "contains hidden characters that reorder text (such as U+202E)",
            ),
            DuplicateField => (
                "在同一条登记中出现了两次",
                "appears twice in the same entry",
            ),
            StaffOnly => (
                "此项仅限工作人员在推广模式下填写",
                "is for staff only, in promoter mode",
            ),
        };
        match lang {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// A key from the input is shown in an error only if it looks like a field key; anything else
/// might be a value typed in the wrong place.
fn printable_key(k: &str) -> String {
    if !k.is_empty() && k.len() <= 32 && k.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
        k.to_string()
    } else {
        "(name not shown)".to_string()
    }
}

/// Parses a submission from JSON text and validates it.
pub fn validate_json(config: &EventConfig, json: &str) -> Result<ValidEntry, EntryError> {
    validate(config, &parse_json(json)?)
}

/// Parses JSON text into a value, refusing a key that appears twice in one object (serde_json
/// would silently keep the last one): the error names the key if it looks like a field key.
pub fn parse_json(json: &str) -> Result<serde_json::Value, EntryError> {
    use serde::de::DeserializeSeed;
    let dup = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed = StrictValue(&dup)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v));
    match (parsed, dup.into_inner()) {
        (_, Some(key)) => Err(EntryError {
            field: Some(printable_key(&key)),
            code: EntryErrorCode::DuplicateField,
        }),
        (Ok(v), None) => Ok(v),
        (Err(_), None) => Err(EntryError::general(EntryErrorCode::Malformed)),
    }
}

/// Deserializes a JSON value like `serde_json::Value` does, but stops at the first key seen
/// twice in one object and records it.
struct StrictValue<'a>(&'a std::cell::RefCell<Option<String>>);

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue<'_> {
    type Value = serde_json::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue(self.0))? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                *self.0.borrow_mut() = Some(k);
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let v = map.next_value_seed(StrictValue(self.0))?;
            out.insert(k, v);
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// Characters that change the order text is displayed in without being visible themselves.
fn is_direction_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Validates a submission (`{"<key>": value, …, "consent": true}`) against the config, every
/// field included (the CLI's operator, or a promoter): see [`validate_visitor`] for the kiosk's
/// visitor form.
pub fn validate(config: &EventConfig, input: &serde_json::Value) -> Result<ValidEntry, EntryError> {
    validate_as(config, input, true)
}

/// Validates a visitor's own submission: staff-only fields are refused.
pub fn validate_visitor(
    config: &EventConfig,
    input: &serde_json::Value,
) -> Result<ValidEntry, EntryError> {
    validate_as(config, input, false)
}

fn validate_as(
    config: &EventConfig,
    input: &serde_json::Value,
    staff: bool,
) -> Result<ValidEntry, EntryError> {
    let obj = input
        .as_object()
        .ok_or_else(|| EntryError::general(EntryErrorCode::NotAnObject))?;
    for k in obj.keys() {
        if k != "consent" && config.field(k).is_none() {
            return Err(EntryError {
                field: Some(printable_key(k)),
                code: EntryErrorCode::UnknownField,
            });
        }
        if !staff && config.field(k).is_some_and(|f| f.is_staff()) {
            return Err(EntryError {
                field: Some(k.clone()),
                code: EntryErrorCode::StaffOnly,
            });
        }
    }
    let mut values = BTreeMap::new();
    for f in &config.fields {
        if let Some(v) = check_field(f, obj.get(&f.key))? {
            values.insert(f.key.clone(), v);
        }
    }
    if obj.get("consent") != Some(&serde_json::Value::Bool(true)) {
        return Err(EntryError::general(EntryErrorCode::NoConsent));
    }
    Ok(ValidEntry { values })
}

fn check_field(
    f: &FieldSpec,
    v: Option<&serde_json::Value>,
) -> Result<Option<FieldValue>, EntryError> {
    use serde_json::Value as J;
    use EntryErrorCode::*;
    let missing = |f: &FieldSpec| {
        if f.required {
            Err(EntryError::at(f, Missing))
        } else {
            Ok(None)
        }
    };
    let v = match v {
        None | Some(J::Null) => return missing(f),
        Some(v) => v,
    };
    match f.kind {
        FieldKind::Checkbox => match v {
            J::Bool(true) => Ok(Some(FieldValue::Bool(true))),
            J::Bool(false) if f.required => Err(EntryError::at(f, Missing)),
            J::Bool(false) => Ok(Some(FieldValue::Bool(false))),
            _ => Err(EntryError::at(f, WrongType)),
        },
        FieldKind::Multi => {
            let arr = v.as_array().ok_or_else(|| EntryError::at(f, WrongType))?;
            let mut out = Vec::with_capacity(arr.len());
            for item in arr {
                let s = item.as_str().ok_or_else(|| EntryError::at(f, WrongType))?;
                if !f.options.iter().any(|o| o.value == s) {
                    return Err(EntryError::at(f, BadChoice));
                }
                if !out.iter().any(|x: &String| x == s) {
                    out.push(s.to_string());
                }
            }
            if out.is_empty() {
                return missing(f);
            }
            Ok(Some(FieldValue::List(out)))
        }
        _ => {
            let raw = v.as_str().ok_or_else(|| EntryError::at(f, WrongType))?;
            let s = raw.trim();
            if s.is_empty() {
                return missing(f);
            }
            if s.chars().any(|c| c.is_control()) {
                return Err(EntryError::at(f, BadCharacters));
            }
            if s.chars().any(is_direction_control) {
                return Err(EntryError::at(f, DirectionControl));
            }
            let max = f.max_length.unwrap_or(DEFAULT_MAX_LENGTH);
            if s.chars().count() > max {
                return Err(EntryError::at(f, TooLong));
            }
            let value = match f.kind {
                FieldKind::Phone => {
                    normalize_phone(s).ok_or_else(|| EntryError::at(f, BadPhone))?
                }
                FieldKind::Email => {
                    normalize_email(s).ok_or_else(|| EntryError::at(f, BadEmail))?
                }
                FieldKind::Choice => {
                    if !f.options.iter().any(|o| o.value == s) {
                        return Err(EntryError::at(f, BadChoice));
                    }
                    s.to_string()
                }
                _ => {
                    if let Some(p) = &f.pattern {
                        // The config was validated, so the pattern compiles.
                        let re = regex::Regex::new(&format!("^(?:{p})$"))
                            .map_err(|_| EntryError::at(f, Pattern))?;
                        if !re.is_match(s) {
                            return Err(EntryError::at(f, Pattern));
                        }
                    }
                    s.to_string()
                }
            };
            Ok(Some(FieldValue::Text(value)))
        }
    }
}

/// Normalises a phone number: a mainland mobile (`+86`/`0086` and separators dropped) becomes
/// its 11 digits; an international number in `+` form keeps its `+` and 8 to 15 digits.
pub fn normalize_phone(s: &str) -> Option<String> {
    let compact: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let (plus, digits) = match compact.strip_prefix('+') {
        Some(rest) => (true, rest.to_string()),
        None => (false, compact),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mainland = if plus {
        digits.strip_prefix("86")
    } else {
        Some(digits.strip_prefix("0086").unwrap_or(&digits))
    };
    if let Some(m) = mainland {
        let b = m.as_bytes();
        if b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) {
            return Some(m.to_string());
        }
    }
    if plus && (8..=15).contains(&digits.len()) && !digits.starts_with("86") {
        return Some(format!("+{digits}"));
    }
    None
}

/// Normalises an email: trimmed, domain lowercased; `None` if it is not plausibly an address.
pub fn normalize_email(s: &str) -> Option<String> {
    let (local, domain) = s.rsplit_once('@')?;
    let ok_local = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && !local.chars().any(|c| c.is_whitespace() || c.is_control());
    let ok_domain = domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if ok_local && ok_domain && s.len() <= 254 {
        Some(format!("{local}@{}", domain.to_lowercase()))
    } else {
        None
    }
}

/// How the values of a multiple-choice field are joined wherever they are shown as one text
/// (the device's list, the CRM file).
pub const LIST_SEPARATOR: &str = "; ";

/// The display summary of an entry: each field rendered by its display policy; hidden fields
/// are left out. This is all a device can ever show of an entry.
pub fn summary(config: &EventConfig, entry: &ValidEntry) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in &config.fields {
        let Some(v) = entry.values.get(&f.key) else {
            continue;
        };
        let shown = match (f.display, v) {
            (Display::Hidden, _) => continue,
            (_, FieldValue::Bool(b)) => if *b { "✓" } else { "✗" }.to_string(),
            (Display::Plain, FieldValue::Text(s)) => s.clone(),
            (Display::Plain, FieldValue::List(l)) => l.join(LIST_SEPARATOR),
            (Display::Masked, FieldValue::Text(s)) => mask(f.kind, s),
            (Display::Masked, FieldValue::List(l)) => "*".repeat(l.len().min(6)),
        };
        out.insert(f.key.clone(), shown);
    }
    out
}

/// Masks a value: phones keep their first 3 and last 4 digits (`138****1234`), emails the
/// first letter and the domain (`a***@example.com`), other text its first character (`张*`).
pub fn mask(kind: FieldKind, s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    match kind {
        FieldKind::Phone if chars.len() >= 11 => {
            let n = chars.len();
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[n - 4..].iter().collect();
            format!("{head}****{tail}")
        }
        FieldKind::Email => match s.rsplit_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".to_string(),
        },
        FieldKind::NationalId | FieldKind::BankCard if chars.len() > 8 => {
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("****{tail}")
        }
        _ => match chars.first() {
            Some(c) if chars.len() > 1 => {
                format!("{c}{}", "*".repeat((chars.len() - 1).min(4)))
            }
            _ => "*".to_string(),
        },
    }
}

/// What a sealed payload holds once head office opens it: the values and the facts they are
/// bound to, so an envelope's outer fields cannot be swapped without notice.
#[derive(Clone, Serialize, Deserialize)]
pub struct PayloadPlaintext {
    pub v: u32,
    pub entry_id: uuid::Uuid,
    pub event_id: String,
    pub captured_at_ms: i64,
    pub consent_version: String,
    pub consent_sha256: String,
    pub values: BTreeMap<String, FieldValue>,
    /// The id of the staff code that captured the entry in promoter mode (never a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff_code: Option<String>,
}

impl fmt::Debug for PayloadPlaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadPlaintext")
            .field("entry_id", &self.entry_id)
            .finish_non_exhaustive()
    }
}

impl Drop for PayloadPlaintext {
    fn drop(&mut self) {
        for v in self.values.values_mut() {
            v.zeroize();
        }
    }
}

impl PayloadPlaintext {
    pub fn new(
        entry_id: uuid::Uuid,
        event_id: &str,
        captured_at_ms: i64,
        consent: &crate::event::Consent,
        entry: &ValidEntry,
    ) -> Self {
        PayloadPlaintext {
            v: 1,
            entry_id,
            event_id: event_id.to_string(),
            captured_at_ms,
            consent_version: consent.version.clone(),
            consent_sha256: consent.sha256(),
            values: entry.values.clone(),
            staff_code: None,
        }
    }

    /// Records the staff code (its id) that captured the entry.
    pub fn captured_by(mut self, staff_code: Option<&str>) -> Self {
        self.staff_code = staff_code.map(str::to_string);
        self
    }

    /// Whether this payload belongs to the envelope that carried it.
    pub fn matches(&self, env: &EntryEnvelope) -> bool {
        self.entry_id == env.id
            && self.event_id == env.event_id
            && self.captured_at_ms == env.captured_at_ms
            && self.consent_version == env.consent_version
            && self.consent_sha256 == env.consent_sha256
    }
}

/// One sealed entry as it travels: its facts in the clear, its values sealed to head office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryEnvelope {
    pub id: uuid::Uuid,
    pub event_id: String,
    pub captured_at_ms: i64,
    pub consent_version: String,
    pub consent_sha256: String,
    /// The age-encrypted [`PayloadPlaintext`], base64 in JSON.
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <&str>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// Base64 (standard, padded), as used for keys and blobs in Sealbox's JSON files.
pub fn b64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The inverse of [`b64_encode`].
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> EventConfig {
        EventConfig::from_json(include_str!("../../../examples/trade-show.json")).unwrap()
    }

    fn err(input: serde_json::Value) -> EntryError {
        validate(&config(), &input).unwrap_err()
    }

    #[test]
    fn accepts_and_normalises() {
        let e = validate(
            &config(),
            &json!({"name": " 张三 ", "phone": "+86 138-1234-5678", "email": "A@Example.COM",
                    "interest": "sensors", "consent": true}),
        )
        .unwrap();
        assert_eq!(e.values()["name"], FieldValue::Text("张三".into()));
        assert_eq!(e.values()["phone"], FieldValue::Text("13812345678".into()));
        assert_eq!(
            e.values()["email"],
            FieldValue::Text("A@example.com".into())
        );
        let s = summary(&config(), &e);
        assert_eq!(s["name"], "张*");
        assert_eq!(s["phone"], "138****5678");
        assert_eq!(s["email"], "A***@example.com");
        assert_eq!(s["interest"], "sensors");
        assert!(!format!("{e:?}").contains("张三"));
    }

    #[test]
    fn refusals_name_the_field_not_the_value() {
        let base = json!({"name": "Li", "phone": "13812345678", "consent": true});
        let mut v = base.clone();
        v["phone"] = "12345".into();
        let e = err(v);
        assert_eq!(
            (e.field.as_deref(), e.code),
            (Some("phone"), EntryErrorCode::BadPhone)
        );
        assert!(!e.to_string().contains("12345"));
        assert_eq!(e.message(Lang::Zh), "字段 \"phone\"：手机号应为 11 位数字");

        let mut v = base.clone();
        v["email"] = "nobody-at-example".into();
        assert_eq!(err(v).code, EntryErrorCode::BadEmail);
        let mut v = base.clone();
        v["name"] = "x".repeat(51).into();
        assert_eq!(err(v).code, EntryErrorCode::TooLong);
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove("name");
        assert_eq!(err(v).field.as_deref(), Some("name"));
        let mut v = base.clone();
        v["consent"] = false.into();
        assert_eq!(err(v).code, EntryErrorCode::NoConsent);
        let mut v = base.clone();
        v["hobby"] = "chess".into();
        assert_eq!(err(v).code, EntryErrorCode::UnknownField);
        let mut v = base.clone();
        v["13800000000"] = "x".into();
        let e = err(v);
        assert!(!e.to_string().contains("13800000000"), "{e}");
        let mut v = base.clone();
        v["interest"] = "yachts".into();
        assert_eq!(err(v).code, EntryErrorCode::BadChoice);
        let mut v = base;
        v["phone"] = 13812345678u64.into();
        assert_eq!(err(v).code, EntryErrorCode::WrongType);
        assert_eq!(err(json!([1])).code, EntryErrorCode::NotAnObject);
    }

    #[test]
    fn direction_controls_and_duplicate_keys_are_refused_with_the_field() {
        for c in ['\u{202E}', '\u{2067}', '\u{200F}', '\u{061C}'] {
            let e = err(
                json!({"name": format!("Li{c}gnp.exe"), "phone": "13812345678", "consent": true}),
            );
            assert_eq!(
                (e.field.as_deref(), e.code),
                (Some("name"), EntryErrorCode::DirectionControl),
                "{c:?}"
            );
        }
        let e = validate_json(
            &config(),
            r#"{"name": "Li", "phone": "13812345678", "phone": "13900000000", "consent": true}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.code),
            (Some("phone"), EntryErrorCode::DuplicateField)
        );
        assert!(!e.to_string().contains("139"), "{e}");
        let e = validate_json(
            &config(),
            r#"{"consent": false, "consent": true, "name": "Li", "phone": "13812345678"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, EntryErrorCode::DuplicateField);
        // Nested objects are checked too; a value that is itself a key name is not shown.
        assert_eq!(
            parse_json(r#"{"a": [{"x": 1, "x": 2}]}"#).unwrap_err().code,
            EntryErrorCode::DuplicateField
        );
        assert_eq!(
            parse_json(r#"{"a": 1} x"#).unwrap_err().code,
            EntryErrorCode::Malformed
        );
        assert_eq!(
            parse_json(r#"{"n": 1.5, "s": "x", "b": [true, null]}"#).unwrap(),
            json!({"n": 1.5, "s": "x", "b": [true, null]})
        );
    }

    #[test]
    fn phones() {
        assert_eq!(
            normalize_phone("0086 13912345678").as_deref(),
            Some("13912345678")
        );
        assert_eq!(
            normalize_phone("+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(normalize_phone("+86 123"), None);
        assert_eq!(normalize_phone("23812345678"), None);
        assert_eq!(normalize_phone("1381234567a"), None);
    }

    #[test]
    fn staff_fields_are_refused_from_visitors_and_kept_for_staff() {
        let mut c = config();
        let mut rating = c.fields[3].clone();
        rating.key = "notes".into();
        rating.audience = crate::event::Audience::Staff;
        c.fields.push(rating);
        let input =
            json!({"name": "Li", "phone": "13812345678", "notes": "wants a demo", "consent": true});
        let e = validate_visitor(&c, &input).unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.code),
            (Some("notes"), EntryErrorCode::StaffOnly)
        );
        assert!(!e.to_string().contains("demo"));
        let ok = validate(&c, &input).unwrap();
        assert_eq!(
            ok.values()["notes"],
            FieldValue::Text("wants a demo".into())
        );
        assert!(validate_visitor(
            &c,
            &json!({"name": "Li", "phone": "13812345678", "consent": true})
        )
        .is_ok());
        let p = PayloadPlaintext::new(uuid::Uuid::nil(), "e", 1, &c.consent, &ok)
            .captured_by(Some("s2"));
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""staff_code":"s2""#), "{text}");
        let back: PayloadPlaintext = serde_json::from_str(&text).unwrap();
        assert_eq!(back.staff_code.as_deref(), Some("s2"));
        let visitor = PayloadPlaintext::new(uuid::Uuid::nil(), "e", 1, &c.consent, &ok);
        assert!(!serde_json::to_string(&visitor)
            .unwrap()
            .contains("staff_code"));
    }
}
