//! Badge scans: the text a keyboard-wedge scanner typed, read as a vCard (3.0 or 4.0), a MECARD,
//! or the event's own badge format (a regular expression with named groups, or a JSON key map),
//! and turned into values for the visitor's fields.
//!
//! A scan's text is a visitor's personal data: it is parsed in memory only, never logged, never
//! put into an error. A scan that does not parse, or fills no field, is [`DeviceError::ScanUnreadable`].

use crate::error::{DeviceError, Result};
use sealbox_protocol::event::{FieldKind, FieldSpec};
use sealbox_protocol::EventConfig;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// The longest scan read (a QR code holds at most about 4 KB of text).
pub const MAX_SCAN_CHARS: usize = 4096;

/// Values read from a scan, by field key. Zeroized on drop; `Debug` shows only the keys.
#[derive(Clone, Default, serde::Serialize)]
#[serde(transparent)]
pub struct ScanValues(BTreeMap<String, String>);

impl ScanValues {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for ScanValues {
    fn drop(&mut self) {
        for v in self.0.values_mut() {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

impl std::fmt::Debug for ScanValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanValues")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a standard card (vCard, MECARD) says.
#[derive(Default)]
struct Card {
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    company: Option<String>,
    title: Option<String>,
}

impl Drop for Card {
    fn drop(&mut self) {
        for v in [
            &mut self.name,
            &mut self.phone,
            &mut self.email,
            &mut self.company,
            &mut self.title,
        ]
        .into_iter()
        .flatten()
        {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

/// Reads a scan for the event's form. Only visitor fields are filled.
pub fn parse(config: &EventConfig, text: &str) -> Result<ScanValues> {
    if text.chars().count() > MAX_SCAN_CHARS {
        return Err(DeviceError::ScanUnreadable);
    }
    let text = Zeroizing::new(text.replace("\r\n", "\n").replace('\r', "\n"));
    let trimmed = text.trim();
    let head: String = trimmed
        .chars()
        .take(11)
        .collect::<String>()
        .to_ascii_uppercase();
    let values = if head.starts_with("BEGIN:VCARD") {
        vcard(trimmed).map(|c| from_card(config, &c))
    } else if head.starts_with("MECARD:") {
        mecard(trimmed).map(|c| from_card(config, &c))
    } else {
        let badge = config.badge.clone().unwrap_or_default();
        match (&badge.json, &badge.regex) {
            (Some(map), _) if trimmed.starts_with('{') => by_json(config, map, trimmed),
            (_, Some(p)) => by_regex(config, p, trimmed),
            _ => None,
        }
    };
    match values {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(DeviceError::ScanUnreadable),
    }
}

fn is_cjk(c: char) -> bool {
    ('\u{3400}'..='\u{9FFF}').contains(&c) || ('\u{F900}'..='\u{FAFF}').contains(&c)
}

/// A name from its family and given parts: `张三` (CJK, family first, no space), `Ada Lovelace`.
fn full_name(family: &str, given: &str) -> Option<String> {
    let (family, given) = (family.trim(), given.trim());
    let name = match (family.is_empty(), given.is_empty()) {
        (true, true) => return None,
        (false, true) => family.to_string(),
        (true, false) => given.to_string(),
        _ if family.chars().chain(given.chars()).any(is_cjk) => format!("{family}{given}"),
        _ => format!("{given} {family}"),
    };
    Some(name)
}

/// vCard text unescaped: `\n` becomes a space, `\,` `\;` `\:` `\\` their character.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push(' '),
                Some(x) => out.push(x),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_string()
}

/// Splits at `sep` where it is not escaped with a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// vCard 3.0 (RFC 2426) and 4.0 (RFC 6350): FN (or N), TEL, EMAIL, ORG, TITLE. Folded lines are
/// unfolded; `TEL;VALUE=uri:tel:+86…` (4.0) loses its `tel:`. It must end with END:VCARD.
fn vcard(text: &str) -> Option<Card> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        match raw.strip_prefix([' ', '\t']) {
            Some(rest) if !lines.is_empty() => {
                if let Some(last) = lines.last_mut() {
                    last.push_str(rest);
                }
            }
            _ => lines.push(raw.trim_end().to_string()),
        }
    }
    let lines = Zeroizing::new(lines);
    let mut card = Card::default();
    let (mut version, mut ended) = (None, false);
    let mut n_name = None;
    let mut cell = None;
    for line in lines.iter().skip(1) {
        let Some((left, value)) = line.split_once(':') else {
            continue;
        };
        let mut params = left.split(';');
        let name = params.next().unwrap_or_default().to_ascii_uppercase();
        let name = name.rsplit('.').next().unwrap_or_default().to_string();
        let params = params.map(str::to_ascii_uppercase).collect::<Vec<_>>();
        match name.as_str() {
            "VERSION" => version = Some(value.trim().to_string()),
            "END" if value.trim().eq_ignore_ascii_case("VCARD") => {
                ended = true;
                break;
            }
            "FN" if card.name.is_none() => {
                card.name = Some(unescape(value)).filter(|s| !s.is_empty())
            }
            "N" if n_name.is_none() => {
                let parts = split_unescaped(value, ';');
                n_name = full_name(
                    &unescape(parts.first().copied().unwrap_or_default()),
                    &unescape(parts.get(1).copied().unwrap_or_default()),
                );
            }
            "TEL" => {
                let v = unescape(value);
                let v = v.strip_prefix("tel:").unwrap_or(&v);
                let v = v.split(";ext=").next().unwrap_or_default().to_string();
                let is_cell = params.iter().any(|p| p.contains("CELL"));
                if is_cell && cell.is_none() {
                    cell = Some(v.clone());
                }
                if card.phone.is_none() {
                    card.phone = Some(v);
                }
            }
            "EMAIL" if card.email.is_none() => card.email = Some(unescape(value)),
            "ORG" if card.company.is_none() => {
                card.company = Some(unescape(split_unescaped(value, ';')[0]))
            }
            "TITLE" if card.title.is_none() => card.title = Some(unescape(value)),
            _ => {}
        }
    }
    if !ended || !matches!(version.as_deref(), Some("3.0" | "4.0" | "2.1")) {
        return None;
    }
    if card.name.is_none() {
        card.name = n_name;
    }
    if cell.is_some() {
        card.phone = cell;
    }
    Some(card)
}

/// MECARD (DoCoMo): `MECARD:N:Family,Given;TEL:…;EMAIL:…;ORG:…;TITLE:…;;`.
fn mecard(text: &str) -> Option<Card> {
    let body = text.get(7..)?;
    let body = body.trim_end().trim_end_matches(';');
    let mut card = Card::default();
    for part in split_unescaped(body, ';') {
        let Some((key, value)) = part.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_uppercase().as_str() {
            "N" if card.name.is_none() => {
                let parts = split_unescaped(value, ',');
                card.name = full_name(
                    &unescape(parts[0]),
                    &unescape(parts.get(1).copied().unwrap_or_default()),
                );
            }
            "TEL" if card.phone.is_none() => card.phone = Some(unescape(value)),
            "EMAIL" if card.email.is_none() => card.email = Some(unescape(value)),
            "ORG" if card.company.is_none() => card.company = Some(unescape(value)),
            "TITLE" if card.title.is_none() => card.title = Some(unescape(value)),
            _ => {}
        }
    }
    Some(card)
}

/// The visitor fields a badge may fill.
fn fillable(config: &EventConfig) -> impl Iterator<Item = &FieldSpec> {
    config.fields.iter().filter(|f| !f.is_staff())
}

/// Which field a card's part goes to: a phone and an email to the first field of that kind,
/// the name, company and title to a text field named after them.
fn from_card(config: &EventConfig, card: &Card) -> ScanValues {
    let mut out = BTreeMap::new();
    let by_kind = |kind: FieldKind| fillable(config).find(|f| f.kind == kind);
    let by_name = |names: &[&str]| {
        fillable(config)
            .filter(|f| f.kind == FieldKind::Text)
            .find(|f| names.iter().any(|n| f.key == *n))
            .or_else(|| {
                fillable(config)
                    .filter(|f| f.kind == FieldKind::Text)
                    .find(|f| f.key.contains(names[0]))
            })
    };
    let pairs = [
        (by_kind(FieldKind::Phone), &card.phone),
        (by_kind(FieldKind::Email), &card.email),
        (by_name(&["name", "full_name"]), &card.name),
        (
            by_name(&["company", "organization", "organisation", "org", "employer"]),
            &card.company,
        ),
        (
            by_name(&["title", "job_title", "position", "role"]),
            &card.title,
        ),
    ];
    for (field, value) in pairs {
        if let (Some(f), Some(v)) = (field, value) {
            if !v.trim().is_empty() && !out.contains_key(&f.key) {
                out.insert(f.key.clone(), v.trim().to_string());
            }
        }
    }
    ScanValues(out)
}

/// A value for a field from the event's own format: a choice only if it is one of the options.
fn put(config: &EventConfig, out: &mut BTreeMap<String, String>, key: &str, value: &str) {
    let value = value.trim();
    let Some(f) = fillable(config).find(|f| f.key == key) else {
        return;
    };
    if value.is_empty()
        || (f.kind == FieldKind::Choice && !f.options.iter().any(|o| o.value == value))
    {
        return;
    }
    out.insert(f.key.clone(), value.to_string());
}

fn by_regex(config: &EventConfig, pattern: &str, text: &str) -> Option<ScanValues> {
    let re = regex::Regex::new(pattern).ok()?;
    let caps = re.captures(text)?;
    let mut out = BTreeMap::new();
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name) {
            put(config, &mut out, name, m.as_str());
        }
    }
    Some(ScanValues(out))
}

fn by_json(config: &EventConfig, map: &BTreeMap<String, String>, text: &str) -> Option<ScanValues> {
    let doc: serde_json::Value = serde_json::from_str(text).ok()?;
    doc.as_object()?;
    let mut out = BTreeMap::new();
    for (key, path) in map {
        let mut at = &doc;
        for step in path.split('.') {
            match at.get(step) {
                Some(next) => at = next,
                None => {
                    at = &serde_json::Value::Null;
                    break;
                }
            }
        }
        match at {
            serde_json::Value::String(s) => put(config, &mut out, key, s),
            serde_json::Value::Number(n) => put(config, &mut out, key, &n.to_string()),
            _ => {}
        }
    }
    Some(ScanValues(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(badge: Option<serde_json::Value>) -> EventConfig {
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../../../examples/trade-show.json")).unwrap();
        v["fields"].as_array_mut().unwrap().push(json!({
            "key": "notes", "kind": "text", "audience": "staff", "display": "hidden",
            "label": {"zh": "备注", "en": "Notes"},
            "purpose": {"zh": "记录洽谈内容", "en": "What was discussed"}
        }));
        if let Some(b) = badge {
            v["badge"] = b;
        }
        EventConfig::from_json(&v.to_string()).unwrap()
    }

    fn read(c: &EventConfig, text: &str) -> BTreeMap<String, String> {
        parse(c, text).unwrap().0.clone()
    }

    #[test]
    fn vcard_3_and_4() {
        let c = config(None);
        let v3 = "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Lovelace;Ada;;;\r\nFN:Ada Lovelace\r\nORG:Analytical Engines\\, Ltd;R&D\r\nTITLE:Countess\r\nTEL;TYPE=WORK,VOICE:+44 20 7946 0958\r\nTEL;TYPE=CELL:+86 138 1234 5678\r\nEMAIL;TYPE=INTERNET:ada@example.com\r\nNOTE:rating 4\r\nEND:VCARD\r\n";
        let got = read(&c, v3);
        assert_eq!(got["name"], "Ada Lovelace");
        assert_eq!(got["phone"], "+86 138 1234 5678", "the mobile wins");
        assert_eq!(got["email"], "ada@example.com");
        assert_eq!(got["company"], "Analytical Engines, Ltd");
        assert!(!got.contains_key("notes"), "never a staff field");
        // vCard 4: a tel: URI, a folded line, no FN but an N in Chinese order.
        let v4 = "BEGIN:VCARD\nVERSION:4.0\nN:张;三;;;\nTEL;VALUE=uri;TYPE=\"cell,voice\":tel:+86-139-1234\n -5678\nEMAIL:zhang@example.cn\nEND:VCARD";
        let got = read(&c, v4);
        assert_eq!(got["name"], "张三");
        assert_eq!(got["phone"], "+86-139-1234-5678");
        assert_eq!(got["email"], "zhang@example.cn");
        // Cut short (no END), or an unknown version: unreadable.
        assert!(parse(&c, "BEGIN:VCARD\nVERSION:3.0\nFN:Ada").is_err());
        assert!(parse(&c, "BEGIN:VCARD\nVERSION:9.9\nFN:Ada\nEND:VCARD").is_err());
    }

    #[test]
    fn mecard() {
        let c = config(None);
        let got = read(
            &c,
            "MECARD:N:Lovelace,Ada;TEL:13812345678;EMAIL:ada@example.com;ORG:Engines\\; Ltd;;",
        );
        assert_eq!(got["name"], "Ada Lovelace");
        assert_eq!(got["phone"], "13812345678");
        assert_eq!(got["email"], "ada@example.com");
        assert_eq!(got["company"], "Engines; Ltd");
        assert_eq!(read(&c, "MECARD:N:李,雷;;")["name"], "李雷");
        assert!(parse(&c, "MECARD:;;").is_err(), "fills nothing");
    }

    #[test]
    fn the_events_own_regex_and_json_formats() {
        let c = config(Some(
            json!({"regex": "^TS26\\|(?P<name>[^|]+)\\|(?P<company>[^|]*)\\|(?P<phone>[0-9+ ]+)\\|(?P<interest>[a-z]+)$"}),
        ));
        let got = read(&c, "TS26|Grace Hopper|Navy|13900001111|software");
        assert_eq!(got["name"], "Grace Hopper");
        assert_eq!(got["company"], "Navy");
        assert_eq!(got["phone"], "13900001111");
        assert_eq!(got["interest"], "software");
        let got = read(&c, "TS26|Grace Hopper||13900001111|yachts");
        assert!(!got.contains_key("interest"), "not one of the options");
        assert!(!got.contains_key("company"), "empty");
        assert!(parse(&c, "TS25|Grace|Navy|139|x").is_err());
        // vCard still works beside the event's format.
        assert!(parse(&c, "BEGIN:VCARD\nVERSION:3.0\nFN:Ada\nEND:VCARD").is_ok());

        let c = config(Some(
            json!({"json": {"name": "attendee.name", "email": "attendee.mail", "phone": "tel", "company": "org"}}),
        ));
        let got = read(
            &c,
            r#"{"attendee": {"name": "Katherine Johnson", "mail": "kj@example.org"}, "tel": 13700002222}"#,
        );
        assert_eq!(got["name"], "Katherine Johnson");
        assert_eq!(got["email"], "kj@example.org");
        assert_eq!(got["phone"], "13700002222");
        assert_eq!(got.len(), 3);
        assert!(parse(&c, r#"{"attendee": {"nick": "kj"}}"#).is_err());
        assert!(parse(&c, "[1, 2]").is_err());
        // An event may take both: a scan starting with '{' is read by the JSON map.
        let both = config(Some(
            json!({"regex": "^TS26\\|(?P<name>[^|]+)$", "json": {"name": "n"}}),
        ));
        assert_eq!(read(&both, "TS26|Grace")["name"], "Grace");
        assert_eq!(read(&both, r#"{"n": "Kath"}"#)["name"], "Kath");
        assert!(parse(&c, "{not json").is_err());
    }

    #[test]
    fn unreadable_scans_say_nothing_of_their_text() {
        let c = config(None);
        let e = parse(&c, "Qzcanary 13977770123 random text").unwrap_err();
        assert_eq!(e.code(), "scan_unreadable");
        assert!(!e.to_string().contains("Qzcanary"));
        assert!(parse(&c, &"x".repeat(MAX_SCAN_CHARS + 1)).is_err());
        assert!(parse(&c, "").is_err());
        let v = parse(&c, "MECARD:N:Qzcanary,Vex;;").unwrap();
        assert!(!format!("{v:?}").contains("Qzcanary"));
    }
}
