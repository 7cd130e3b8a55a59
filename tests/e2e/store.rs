//! What is on disk after registrations: nothing readable, and nothing the device can open.

use sealbox_device::{Device, OsKeychain};
use sealbox_protocol::entry::{FieldValue, PayloadPlaintext};
use sealbox_tests::*;

pub const CANARY_NAME: &str = "Qzcanaryname Vex";
pub const CANARY_PHONE: &str = "13977770123";
pub const CANARY_EMAIL: &str = "qzcanary.mail@example.org";
pub const CANARY_COMPANY: &str = "Qzcanary Widgets";

pub fn canary_entry(i: usize) -> String {
    serde_json::json!({
        "name": format!("{CANARY_NAME}{i}"),
        "phone": CANARY_PHONE,
        "email": CANARY_EMAIL,
        "company": CANARY_COMPANY,
        "interest": "sensors",
        "consent": true
    })
    .to_string()
}

const CANARIES: &[&str] = &[
    CANARY_NAME,
    CANARY_PHONE,
    CANARY_EMAIL,
    CANARY_COMPANY,
    "Qzcanary",
];

#[test]
fn no_plaintext_on_disk_in_logs_or_temp() {
    let sb = Sandbox::enrolled();
    // Hold the database open so the WAL and shm files stay on disk while we look.
    let held = Device::open(&sb.dev, &OsKeychain).unwrap();
    let mut outputs = String::new();
    for i in 0..5 {
        let out = sb.add_in(&sb.dev, &canary_entry(i), &[]);
        assert!(out.status.success());
        outputs.push_str(&String::from_utf8_lossy(&out.stdout));
        outputs.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let ndjson = sb.tmp.path().join("paper.ndjson");
    std::fs::write(
        &ndjson,
        format!("{}\n\n{}\n", canary_entry(10), canary_entry(11)),
    )
    .unwrap();
    let out = sb
        .dev_cmd(&["add", "--ndjson", ndjson.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::remove_file(&ndjson).unwrap();
    outputs.push_str(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(sb.pending(), 7);

    let wal = sb.dev.join("sealbox.db-wal");
    assert!(
        wal.exists() && std::fs::metadata(&wal).unwrap().len() > 0,
        "the WAL is checked too"
    );
    for dir in [&sb.dev, &sb.tmpdir] {
        for canary in CANARIES {
            let hits = files_containing(dir, canary);
            assert!(hits.is_empty(), "{canary} found in {hits:?}");
        }
    }
    let db = std::fs::read(sb.dev.join("sealbox.db")).unwrap();
    assert!(
        !db.starts_with(b"SQLite format 3"),
        "the database must be encrypted"
    );
    let log = std::fs::read_to_string(sb.dev.join("logs/sealbox.log")).unwrap();
    assert!(
        log.contains("entry stored"),
        "the log is written (ids and counts)"
    );
    for canary in CANARIES {
        assert!(!outputs.contains(canary), "{canary} in command output");
    }
    // The masked list shows masks, not the values.
    let list = sb.dev_ok_env(&["list", "--json"], &[("SEALBOX_PIN", PIN)]);
    assert!(list.contains("139****0123"), "{list}");
    for canary in [CANARY_NAME, CANARY_PHONE, CANARY_EMAIL] {
        assert!(!list.contains(canary), "{canary} in the masked list");
    }
    drop(held);
}

#[test]
fn device_cannot_open_sealed_values_head_office_can() {
    let sb = Sandbox::enrolled();
    let id = sb.add(&canary_entry(1));
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    let envs = dev.pending_envelopes(10).unwrap();
    assert_eq!(envs.len(), 1);
    let env = &envs[0];
    assert_eq!(env.id.to_string(), id.trim());
    // Any identity other than head office's fails.
    let stranger = age::x25519::Identity::generate();
    assert!(age::decrypt(&stranger, &env.sealed).is_err());
    // Head office's opens it, and the payload is bound to its envelope.
    let plain = age::decrypt(&sb.ho_identity(), &env.sealed).unwrap();
    let payload: PayloadPlaintext = serde_json::from_slice(&plain).unwrap();
    assert!(payload.matches(env));
    assert_eq!(
        payload.values["phone"],
        FieldValue::Text(CANARY_PHONE.into())
    );
    assert_eq!(
        payload.values["name"],
        FieldValue::Text(format!("{CANARY_NAME}1"))
    );
    assert_eq!(env.consent_sha256, dev.config().consent.sha256());
}

#[test]
fn two_devices_on_one_machine_have_their_own_keys() {
    let sb = Sandbox::enrolled();
    let second = sb.tmp.path().join("device2");
    let file = sb.enrolment_file("booth-2");
    ok(
        sb.dev_cmd_in(&second, &["enroll", file.to_str().unwrap()])
            .output()
            .unwrap(),
        &["enroll"],
    );
    assert!(file.exists(), "without --shred the file stays");
    let a = sb.keychain_service();
    let b = sealbox_device::files::DataDir::new(&second)
        .read_device_json()
        .unwrap()
        .unwrap()
        .keychain_service();
    assert_ne!(a, b);
    sb.add(&canary_entry(1));
    ok(sb.add_in(&second, &canary_entry(2), &[]), &["add"]);
    assert_eq!(sb.pending(), 1);
}

#[test]
fn enrolment_is_shredded_and_not_repeated() {
    let sb = Sandbox::headoffice();
    let file = sb.enrolment_file("booth-9");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("device_token"));
    sb.dev_ok(&["enroll", file.to_str().unwrap(), "--shred"]);
    assert!(!file.exists(), "--shred removes the enrolment file");
    // The secrets moved into the encrypted store, not into any plain file.
    let token_b64 = serde_json::from_str::<serde_json::Value>(&text).unwrap()["device_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(files_containing(&sb.dev, &token_b64).is_empty());
    // A second enrolment over the same directory is refused and changes nothing.
    let again = sb.enrolment_file("booth-10");
    let before = file_digest(&sb.dev.join("sealbox.db"));
    let err = sb.dev_fail(&["enroll", again.to_str().unwrap()], &[]);
    assert!(err.contains("already enrolled"), "{err}");
    assert_eq!(before, file_digest(&sb.dev.join("sealbox.db")));
    // Head office refuses the same device name twice.
    let out = sb
        .ho_cmd(&[
            "enroll",
            "--device",
            "booth-9",
            "--event",
            EVENT,
            "--out",
            "/dev/null/x",
        ])
        .output()
        .unwrap();
    let err = fail(out, &["enroll"]);
    assert!(err.contains("already enrolled"), "{err}");
    let st: serde_json::Value = serde_json::from_str(&sb.ho_ok(&["status", "--json"])).unwrap();
    assert_eq!(st["events"][0]["id"], EVENT);
    assert_eq!(st["devices"].as_array().unwrap().len(), 2);
    assert_eq!(st["devices"][0]["revoked"], false);
}

#[test]
fn manager_pin_gates_the_list_and_wrong_pins_are_rate_limited_and_audited() {
    let sb = Sandbox::enrolled();
    sb.add(&canary_entry(1));
    let err = sb.dev_fail(&["list"], &[("SEALBOX_PIN", "999999")]);
    assert!(err.contains("wrong PIN"), "{err}");
    sb.dev_fail(&["list"], &[("SEALBOX_PIN", "999998")]);
    sb.dev_fail(&["list"], &[("SEALBOX_PIN", "999997")]);
    // Three misses: now even the right PIN has to wait.
    let err = sb.dev_fail(&["list"], &[("SEALBOX_PIN", PIN)]);
    assert!(err.contains("try again in"), "{err}");
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    let actions: Vec<String> = dev
        .audit_recent(50)
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "pin.failed").count(),
        3,
        "{actions:?}"
    );
    assert!(actions.contains(&"pin.refused".to_string()));
    assert!(dev.audit_verify().unwrap().ok());
    // A weak PIN is refused; changing the PIN needs the current one.
    let sb2 = Sandbox::enrolled();
    let err = sb2.dev_fail(
        &["pin", "set"],
        &[("SEALBOX_PIN", "111111"), ("SEALBOX_NEW_PIN", "802517")],
    );
    assert!(err.contains("wrong PIN"), "{err}");
    let err = sb2.dev_fail(
        &["pin", "set"],
        &[("SEALBOX_PIN", PIN), ("SEALBOX_NEW_PIN", "123456")],
    );
    assert!(err.contains("6 to 12 digits"), "{err}");
    sb2.dev_ok_env(
        &["pin", "set"],
        &[("SEALBOX_PIN", PIN), ("SEALBOX_NEW_PIN", "802517")],
    );
    sb2.dev_ok_env(&["list"], &[("SEALBOX_PIN", "802517")]);
}

#[test]
fn audit_chain_detects_an_edited_row() {
    let sb = Sandbox::enrolled();
    sb.dev_ok_env(&["list"], &[("SEALBOX_PIN", PIN)]);
    assert!(sb.dev_ok(&["audit", "verify"]).contains("audit chain ok"));
    {
        let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let conn = dev.connection();
        // The log refuses edits; an attacker holding the key drops the guard first.
        assert!(conn
            .execute("UPDATE audit SET detail = '{}' WHERE seq = 2", [])
            .is_err());
        conn.execute_batch("DROP TRIGGER audit_no_update").unwrap();
        conn.execute(
            "UPDATE audit SET detail = '{\"for\":\"nothing\"}' WHERE seq = 3",
            [],
        )
        .unwrap();
    }
    let err = sb.dev_fail(&["audit", "verify"], &[]);
    assert!(err.contains("broken at row 3"), "{err}");
}
