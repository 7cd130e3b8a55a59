//! Display summaries need the manager PIN: the database key alone (which any process of the
//! logged-in user can read from the Secret Service) yields counts and times, no summary.

use sealbox_device::files::KEY_ACCOUNT;
use sealbox_device::{Device, KeyStore, OsKeychain};
use sealbox_tests::*;

const COMPANY: &str = crate::store::CANARY_COMPANY;

fn list_json(sb: &Sandbox, pin: &str) -> String {
    sb.dev_ok_env(&["list", "--json"], &[("SEALBOX_PIN", pin)])
}

#[test]
fn summaries_need_the_manager_pin_or_head_offices_escrow() {
    let sb = Sandbox::enrolled();
    let held = Device::open(&sb.dev, &OsKeychain).unwrap();
    for i in 0..3 {
        sb.add(&crate::store::canary_entry(i));
    }
    let key = OsKeychain
        .get(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap()
        .unwrap();
    let key: [u8; 32] = *key.expose();

    // With the key: every page and WAL frame, decrypted. The search finds what is there in the
    // clear (the device's name and event, in its settings), and no summary value.
    let pages = crate::wal::all_pages(&sb.dev, &key);
    assert!(!crate::wal::found(&pages, &[b"booth-1".to_vec()]).is_empty());
    for canary in [COMPANY, "139****0123", "Qzcanary"] {
        let hits = crate::wal::found(&pages, &[canary.as_bytes().to_vec()]);
        assert!(
            hits.is_empty(),
            "{canary} readable with the key alone in {hits:?}"
        );
    }
    // Through SQL with the key: counts and times, summaries sealed.
    let conn = held.connection();
    let (n, times): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(captured_at_ms) FROM entries WHERE summary = '' AND summary_sealed IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, times), (3, 3));
    assert_eq!(held.list_unlocked(10).unwrap()[0].summary.len(), 0);
    assert_eq!(sb.pending(), 3);

    // The manager PIN opens them.
    assert!(list_json(&sb, PIN).contains(COMPANY));
    // A new PIN opens them, the old one no longer does.
    sb.dev_ok_env(
        &["pin", "set"],
        &[("SEALBOX_PIN", PIN), ("SEALBOX_NEW_PIN", "802517")],
    );
    assert!(list_json(&sb, "802517").contains(COMPANY));
    let err = sb.dev_fail(&["list"], &[("SEALBOX_PIN", PIN)]);
    assert!(err.contains("wrong PIN"), "{err}");

    // Forgotten: head office opens the summary escrow, and a new PIN is set over the same key.
    let escrow = sb.dev.join("summary-escrow.age");
    assert!(files_containing(&sb.dev, COMPANY).is_empty());
    let key_file = sb.tmp.path().join("summary-key.json");
    let out = sb.ho_ok(&[
        "escrow",
        "open",
        escrow.to_str().unwrap(),
        "--out",
        key_file.to_str().unwrap(),
    ]);
    assert!(out.contains("sealbox pin reset"), "{out}");
    // Another device's summary key is refused.
    let other = sb.enrol_second(EVENT);
    sb.dev_cmd_in(&other, &["pin", "set"])
        .env("SEALBOX_PIN", "975310")
        .output()
        .unwrap();
    let other_key = sb.tmp.path().join("other-summary-key.json");
    sb.ho_ok(&[
        "escrow",
        "open",
        other.join("summary-escrow.age").to_str().unwrap(),
        "--out",
        other_key.to_str().unwrap(),
    ]);
    let err = sb.dev_fail(
        &["pin", "reset", "--escrow-key", other_key.to_str().unwrap()],
        &[("SEALBOX_NEW_PIN", "135792")],
    );
    assert!(err.contains("does not belong"), "{err}");
    sb.dev_ok_env(
        &["pin", "reset", "--escrow-key", key_file.to_str().unwrap()],
        &[("SEALBOX_NEW_PIN", "135792")],
    );
    assert!(!key_file.exists(), "the key file is shredded");
    assert!(list_json(&sb, "135792").contains(COMPANY));
    assert!(sb.dev_ok(&["audit", "verify"]).contains("audit chain ok"));
    drop(held);
}
