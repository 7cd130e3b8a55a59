//! An enrolment killed half-way, and a device whose device.json was lost: neither strands a key
//! or a database.

use sealbox_device::files::{keychain_service, DataDir, KEY_ACCOUNT};
use sealbox_device::{KeyStore, OsKeychain};
use sealbox_tests::*;
use std::io::BufRead;
use std::process::Stdio;

/// `sealbox enroll` killed (SIGKILL) at each step between its keychain write and device.json:
/// the keychain entry it made exists while it is paused, and the next `enroll` in that data
/// directory removes it (and the files it left) before enrolling afresh.
#[test]
fn an_enrolment_killed_half_way_leaves_no_orphan_key() {
    let sb = Sandbox::headoffice();
    for (i, point) in ["enrol.after_keychain", "enrol.before_device_json"]
        .iter()
        .enumerate()
    {
        let dir = sb.tmp.path().join(format!("killed-{i}"));
        let file = sb.enrolment_file(&format!("booth-k{i}"));
        let mut child = sb
            .dev_cmd_in(&dir, &["enroll", file.to_str().unwrap()])
            .env("SEALBOX_TEST_PAUSE_AT", point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), format!("sealbox: paused at {point}"));
        let marker = DataDir::new(&dir).enrolment_marker();
        let store_id = std::fs::read_to_string(&marker).expect("the marker names the entry");
        let orphan = keychain_service(store_id.trim());
        assert!(
            OsKeychain.get(&orphan, KEY_ACCOUNT).unwrap().is_some(),
            "the key is in the keychain while enroll is paused"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!dir.join("device.json").exists());
        if i == 1 {
            assert!(dir.join("sealbox.db").exists() && dir.join("escrow.age").exists());
        }

        let out = sb.dev_ok_in(&dir, &["enroll", file.to_str().unwrap()]);
        assert!(out.contains("enrolled device"), "{out}");
        assert!(
            OsKeychain.get(&orphan, KEY_ACCOUNT).unwrap().is_none(),
            "the orphan keychain entry of the killed enrolment was removed"
        );
        assert!(!marker.exists());
        let meta = DataDir::new(&dir).read_device_json().unwrap().unwrap();
        assert_ne!(meta.store_id, store_id.trim());
        assert!(OsKeychain
            .get(&meta.keychain_service(), KEY_ACCOUNT)
            .unwrap()
            .is_some());
        // The new enrolment works.
        ok(
            sb.add_in(&dir, &crate::store::canary_entry(i), &[]),
            &["add"],
        );
        OsKeychain
            .delete(&meta.keychain_service(), KEY_ACCOUNT)
            .unwrap();
    }
}

fn escrow_key_file(sb: &Sandbox, dev: &std::path::Path, name: &str) -> std::path::PathBuf {
    let key_file = sb.tmp.path().join(name);
    sb.ho_ok(&[
        "escrow",
        "open",
        dev.join("escrow.age").to_str().unwrap(),
        "--out",
        key_file.to_str().unwrap(),
    ]);
    key_file
}

/// device.json lost (and the keychain entry with it, as on a reinstalled machine), or damaged:
/// `recover` rebuilds it from the escrow key file and the database, the same as it was. Another
/// device's escrow is refused and changes nothing.
#[test]
fn recover_rebuilds_a_lost_or_damaged_device_json() {
    let sb = Sandbox::enrolled();
    sb.add(&crate::store::canary_entry(1));
    sb.add(&crate::store::canary_entry(2));
    let meta = sb.device_json();
    let device_json = sb.dev.join("device.json");

    std::fs::remove_file(&device_json).unwrap();
    OsKeychain
        .delete(&meta.keychain_service(), KEY_ACCOUNT)
        .unwrap();
    let err = sb.dev_fail(&["status"], &[]);
    assert!(err.contains("recover --escrow-key"), "{err}");

    // Another device's escrow: refused, nothing written.
    let other = sb.enrol_second(EVENT);
    let foreign = escrow_key_file(&sb, &other, "foreign-key.json");
    let before = file_digest(&sb.dev.join("sealbox.db"));
    let err = sb.dev_fail(&["recover", "--escrow-key", foreign.to_str().unwrap()], &[]);
    assert!(err.contains("does not belong to this device"), "{err}");
    assert!(!device_json.exists());
    assert_eq!(before, file_digest(&sb.dev.join("sealbox.db")));

    let key_file = escrow_key_file(&sb, &sb.dev, "escrow-key.json");
    let out = sb.dev_ok(&["recover", "--escrow-key", key_file.to_str().unwrap()]);
    assert!(out.contains("device.json rebuilt"), "{out}");
    assert!(!key_file.exists(), "the escrow key file is shredded");
    assert_eq!(sb.device_json(), meta, "device.json is as it was");
    assert_eq!(sb.pending(), 2);
    let list = sb.dev_ok_env(&["list", "--json"], &[("SEALBOX_PIN", PIN)]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Damaged: the same.
    std::fs::write(&device_json, b"{\"format\": \"sealbox-dev").unwrap();
    let err = sb.dev_fail(&["status"], &[]);
    assert!(err.contains("damaged"), "{err}");
    let key_file = escrow_key_file(&sb, &sb.dev, "escrow-key-2.json");
    let out = sb.dev_ok(&["recover", "--escrow-key", key_file.to_str().unwrap()]);
    assert!(out.contains("device.json rebuilt"), "{out}");
    assert_eq!(sb.device_json(), meta);
    assert_eq!(sb.pending(), 2);
    assert!(sb.dev_ok(&["audit", "verify"]).contains("audit chain ok"));
}
