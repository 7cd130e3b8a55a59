//! Key faults: key lost, wrong key, corrupt file, no Secret Service. Each is its own clear error
//! and leaves the files untouched; the escrow brings a lost key back.

use sealbox_device::files::KEY_ACCOUNT;
use sealbox_device::{Device, KeyStore, OsKeychain};
use sealbox_protocol::Secret32;
use sealbox_tests::*;

fn db_digest(sb: &Sandbox) -> String {
    file_digest(&sb.dev.join("sealbox.db"))
}

#[test]
fn key_lost_then_recovered_from_escrow() {
    let sb = Sandbox::enrolled();
    for i in 0..3 {
        sb.add(&crate::store::canary_entry(i));
    }
    let before = db_digest(&sb);
    OsKeychain
        .delete(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap();

    let out = sb.dev_cmd(&["status", "--json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "status is loud about a lost key"
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["database"], "key_lost");
    assert_eq!(st["keychain"], "missing");
    let err = sb.add_fail(&crate::store::canary_entry(9), &[]);
    assert!(
        err.contains("key lost") && err.contains("escrow open"),
        "{err}"
    );
    assert_eq!(before, db_digest(&sb), "nothing was written");
    // Enrolling again over it is refused: never a new key over an existing database.
    let file = sb.enrolment_file("booth-1b");
    let err = sb.dev_fail(&["enroll", file.to_str().unwrap()], &[]);
    assert!(err.contains("already enrolled"), "{err}");
    assert_eq!(before, db_digest(&sb));

    // Head office opens the escrow; the device takes the key back.
    let key_file = sb.tmp.path().join("escrow-key.json");
    sb.ho_ok(&[
        "escrow",
        "open",
        sb.dev.join("escrow.age").to_str().unwrap(),
        "--out",
        key_file.to_str().unwrap(),
    ]);
    sb.dev_ok(&["recover", "--escrow-key", key_file.to_str().unwrap()]);
    assert!(
        !key_file.exists(),
        "the escrow key file is shredded after use"
    );
    assert_eq!(sb.pending(), 3);
    let list = sb.dev_ok_env(&["list", "--json"], &[("SEALBOX_PIN", PIN)]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let audit = sb.dev_ok(&["audit", "verify"]);
    assert!(audit.contains("ok"), "{audit}");
}

#[test]
fn escrow_of_another_device_is_refused() {
    let sb = Sandbox::enrolled();
    let other = sb.enrol_second(EVENT);
    let key_file = sb.tmp.path().join("k.json");
    sb.ho_ok(&[
        "escrow",
        "open",
        other.join("escrow.age").to_str().unwrap(),
        "--out",
        key_file.to_str().unwrap(),
    ]);
    OsKeychain
        .delete(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap();
    let err = sb.dev_fail(
        &["recover", "--escrow-key", key_file.to_str().unwrap()],
        &[],
    );
    assert!(err.contains("does not belong to this device"), "{err}");
    assert!(OsKeychain
        .get(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap()
        .is_none());
    // A wrong passphrase cannot open an escrow at all.
    let out = sb
        .ho_cmd(&[
            "escrow",
            "open",
            sb.dev.join("escrow.age").to_str().unwrap(),
            "--out",
            sb.tmp.path().join("k2").to_str().unwrap(),
        ])
        .env("SEALBOX_HO_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(fail(out, &["escrow"]).contains("wrong passphrase"));
    assert!(!sb.tmp.path().join("k2").exists());
}

#[test]
fn wrong_key_is_its_own_error_and_changes_nothing() {
    let sb = Sandbox::enrolled();
    sb.add(&crate::store::canary_entry(1));
    let before = db_digest(&sb);
    let service = sb.keychain_service();
    let right = OsKeychain.get(&service, KEY_ACCOUNT).unwrap().unwrap();
    OsKeychain
        .set(&service, KEY_ACCOUNT, &Secret32::from_bytes([0x42; 32]))
        .unwrap();
    let err = sb.add_fail(&crate::store::canary_entry(2), &[]);
    assert!(err.contains("wrong key"), "{err}");
    assert!(
        !err.contains("hmac"),
        "SQLCipher's own log stays quiet: {err}"
    );
    assert_eq!(before, db_digest(&sb));
    assert_eq!(sb.status()["database"], "wrong_key");
    OsKeychain.set(&service, KEY_ACCOUNT, &right).unwrap();
    assert_eq!(sb.pending(), 1);
}

#[test]
fn corrupt_database_is_reported_and_left_untouched() {
    let sb = Sandbox::enrolled();
    sb.add(&crate::store::canary_entry(1));
    let db = sb.dev.join("sealbox.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..300] {
        *b ^= 0xff;
    }
    std::fs::write(&db, &bytes).unwrap();
    let before = db_digest(&sb);
    let err = sb.add_fail(&crate::store::canary_entry(2), &[]);
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(sb.status()["database"], "database_corrupt");
    assert_eq!(before, db_digest(&sb));
    // An emptied file is corrupt too, never initialised afresh.
    std::fs::write(&db, b"").unwrap();
    let err = sb.dev_fail(&["status"], &[]);
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
}

#[test]
fn no_secret_service_is_a_clear_error_and_writes_nothing() {
    let sb = Sandbox::enrolled();
    sb.add(&crate::store::canary_entry(1));
    let before = db_digest(&sb);
    let no_bus = [(
        "DBUS_SESSION_BUS_ADDRESS",
        "unix:path=/nonexistent/sealbox-test-bus",
    )];
    let mut c = sb.dev_cmd(&["add", "--json", "-"]);
    c.env("DBUS_SESSION_BUS_ADDRESS", no_bus[0].1)
        .env_remove("DISPLAY");
    let err = fail(with_stdin(c, &crate::store::canary_entry(2)), &["add"]);
    assert!(err.contains("keychain is unavailable"), "{err}");
    assert_eq!(before, db_digest(&sb));
    // Enrolling without a keychain writes nothing at all.
    let fresh = sb.tmp.path().join("fresh-device");
    let file = sb.enrolment_file("booth-3");
    let mut c = sb.dev_cmd_in(&fresh, &["enroll", file.to_str().unwrap(), "--shred"]);
    c.env("DBUS_SESSION_BUS_ADDRESS", no_bus[0].1)
        .env_remove("DISPLAY");
    let err = fail(c.output().unwrap(), &["enroll"]);
    assert!(err.contains("keychain is unavailable"), "{err}");
    assert!(!fresh.exists(), "no data directory was created");
    assert!(
        file.exists(),
        "the enrolment file is kept when enrolment fails"
    );
    // The open device is fine again once the keychain is back.
    assert_eq!(sb.pending(), 1);
    drop(Device::open(&sb.dev, &OsKeychain).unwrap());
}
