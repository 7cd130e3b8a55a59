//! Duplicates within an event, found at head office (a device keeps no lookup of phones): two
//! entries are the same visitor when they share a normalised phone or email, directly or through
//! a third entry. The earliest entry of a group is its original; a merge keeps its consent and
//! fills its gaps with later entries' values, oldest first.

use sealbox_protocol::entry::{normalize_email, normalize_phone, FieldValue};
use sealbox_protocol::event::FieldKind;
use sealbox_protocol::EventConfig;
use std::collections::{BTreeMap, HashMap};

/// The keys an entry is matched on: each phone (normalised) and email (normalised, lowercased).
pub fn contact_keys(config: &EventConfig, values: &BTreeMap<String, FieldValue>) -> Vec<String> {
    let mut keys = Vec::new();
    for f in &config.fields {
        let Some(FieldValue::Text(v)) = values.get(&f.key) else {
            continue;
        };
        match f.kind {
            FieldKind::Phone => {
                if let Some(p) = normalize_phone(v) {
                    keys.push(format!("tel:{p}"));
                }
            }
            FieldKind::Email => {
                if let Some(e) = normalize_email(v) {
                    keys.push(format!("mail:{}", e.to_lowercase()));
                }
            }
            _ => {}
        }
    }
    keys
}

/// For entries in capture order (oldest first) with their contact keys, the index of each
/// entry's original: the earliest entry it is linked to (itself when it has no earlier twin).
pub fn originals(keys: &[Vec<String>]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..keys.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, ks) in keys.iter().enumerate() {
        for k in ks {
            match first.get(k.as_str()) {
                Some(&j) => {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                    // The smaller index (the earlier entry) is the root.
                    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                    parent[hi] = lo;
                }
                None => {
                    first.insert(k, i);
                }
            }
        }
    }
    (0..keys.len()).map(|i| root(&mut parent, i)).collect()
}

/// Merges a group's values, oldest first: the earliest value of each field is kept, later
/// entries fill only the fields still empty.
pub fn merge<'a>(
    group: impl IntoIterator<Item = &'a BTreeMap<String, FieldValue>>,
) -> BTreeMap<String, FieldValue> {
    let mut out = BTreeMap::new();
    for values in group {
        for (k, v) in values {
            let empty = match out.get(k) {
                None => true,
                Some(FieldValue::Text(s)) => s.is_empty(),
                Some(FieldValue::List(l)) => l.is_empty(),
                Some(FieldValue::Bool(_)) => false,
            };
            if empty {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EventConfig {
        EventConfig::from_json(include_str!("../../../examples/trade-show.json")).unwrap()
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, FieldValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), FieldValue::Text(v.to_string())))
            .collect()
    }

    #[test]
    fn phones_and_emails_link_entries_transitively_to_the_earliest() {
        let c = config();
        let entries = [
            values(&[("name", "Li"), ("phone", "13812345678")]),
            values(&[("name", "Wang"), ("phone", "13900000000")]),
            values(&[
                ("name", "Li Lei"),
                ("phone", "+86 138-1234-5678"),
                ("email", "li@x.cn"),
            ]),
            values(&[
                ("name", "L."),
                ("phone", "13700000000"),
                ("email", "LI@X.CN"),
            ]),
            values(&[("name", "Zhao"), ("phone", "+44 20 7946 0958")]),
        ];
        let keys: Vec<_> = entries.iter().map(|v| contact_keys(&c, v)).collect();
        assert_eq!(keys[2], vec!["tel:13812345678", "mail:li@x.cn"]);
        assert_eq!(originals(&keys), vec![0, 1, 0, 0, 4]);
        // A later entry that links two earlier groups joins them under the earliest.
        let keys = vec![
            vec!["tel:1".to_string()],
            vec!["mail:a".to_string()],
            vec!["mail:a".to_string(), "tel:1".to_string()],
        ];
        assert_eq!(originals(&keys), vec![0, 0, 0]);
    }

    #[test]
    fn a_merge_keeps_the_earliest_values_and_fills_gaps() {
        let first = values(&[("name", "Li"), ("phone", "13812345678")]);
        let later = values(&[
            ("name", "Li Lei"),
            ("email", "li@x.cn"),
            ("company", "Acme"),
        ]);
        let m = merge([&first, &later]);
        assert_eq!(m["name"], FieldValue::Text("Li".into()));
        assert_eq!(m["email"], FieldValue::Text("li@x.cn".into()));
        assert_eq!(m["company"], FieldValue::Text("Acme".into()));
        assert_eq!(m.len(), 4);
    }
}
