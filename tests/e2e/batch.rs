//! Offline delivery by batch file: export → import at head office → receipt → erase, and every
//! kind of tampering caught with nothing erased.

use sealbox_device::{Device, OsKeychain};
use sealbox_tests::server::ho_counts;
use sealbox_tests::*;

fn exported(sb: &Sandbox) -> u64 {
    sb.status()["exported"].as_u64().unwrap()
}

#[test]
fn export_import_receipt_erase() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 50);
    let batch = sb.tmp.path().join("usb/booth-1.sealbox-batch");
    std::fs::create_dir(sb.tmp.path().join("usb")).unwrap();
    let out = sb.dev_ok(&["export", "--out", batch.to_str().unwrap()]);
    assert!(out.contains("exported 50 entries"), "{out}");
    // Still on the device, marked exported; no temp file left beside the batch.
    assert_eq!((sb.pending(), exported(&sb)), (0, 50));
    let dir: Vec<_> = std::fs::read_dir(batch.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(dir.len(), 1, "only the batch file");
    assert!(
        files_containing(batch.parent().unwrap(), "Qzsync").is_empty(),
        "encrypted"
    );
    let bytes = std::fs::read(&batch).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"));

    let receipt = sb.tmp.path().join("receipt.json");
    let out = ok(sb.ho_import(&batch, &receipt), &["import"]);
    assert!(
        out.contains("stored 50 entries from device booth-1"),
        "{out}"
    );
    assert_eq!(ho_counts(&sb.ho), (50, 50));
    // A second import changes nothing and yields the same receipt.
    let again = sb.tmp.path().join("receipt-again.json");
    let out = ok(sb.ho_import(&batch, &again), &["import"]);
    assert!(out.contains("already held"), "{out}");
    assert_eq!(ho_counts(&sb.ho), (50, 50));
    assert_eq!(
        std::fs::read(&receipt).unwrap(),
        std::fs::read(&again).unwrap()
    );

    let out = sb.dev_ok(&["receipt", "import", receipt.to_str().unwrap()]);
    assert!(out.contains("50 entries"), "{out}");
    let st = sb.status();
    assert_eq!(
        (
            st["pending"].as_u64(),
            st["exported"].as_u64(),
            st["erased"].as_u64()
        ),
        (Some(0), Some(0), Some(50))
    );
    assert!(sb
        .dev_ok(&["receipt", "import", again.to_str().unwrap()])
        .contains("already applied"));
    assert!(sb.dev_ok(&["audit", "verify"]).contains("ok"));
    assert!(sb.ho_ok(&["audit", "verify"]).contains("audit chain ok"));
    // Nothing left to export.
    let err = sb.dev_fail(&["export", "--out", batch.to_str().unwrap()], &[]);
    assert!(err.contains("nothing to export"), "{err}");
}

#[test]
fn tampering_with_any_byte_is_caught_and_nothing_is_erased() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 20);
    let batch = sb.tmp.path().join("b.sealbox-batch");
    sb.dev_ok(&["export", "--out", batch.to_str().unwrap()]);
    let good = std::fs::read(&batch).unwrap();
    let mut rng = Rng::from_time();
    // Bytes across the header, the stanza and the body, and truncations.
    let mut positions: Vec<usize> = vec![0, 10, 40, 100, good.len() / 2, good.len() - 1];
    positions.extend((0..10).map(|_| rng.below(good.len() as u64) as usize));
    for (i, pos) in positions.iter().enumerate() {
        let mut bad = good.clone();
        bad[*pos] ^= 0x01;
        let f = sb.tmp.path().join(format!("bad{i}"));
        std::fs::write(&f, &bad).unwrap();
        let err = fail(
            sb.ho_import(&f, &sb.tmp.path().join(format!("r{i}"))),
            &["import"],
        );
        assert!(
            err.contains("truncated, altered") || err.contains("not a"),
            "byte {pos}: {err}"
        );
        assert!(
            !sb.tmp.path().join(format!("r{i}")).exists(),
            "no receipt for a bad file"
        );
    }
    for cut in [good.len() - 1, good.len() / 2, 30] {
        let f = sb.tmp.path().join("cut");
        std::fs::write(&f, &good[..cut]).unwrap();
        let err = fail(sb.ho_import(&f, &sb.tmp.path().join("rc")), &["import"]);
        assert!(err.contains("truncated, altered"), "cut at {cut}: {err}");
    }
    assert_eq!(ho_counts(&sb.ho), (0, 0), "nothing stored from a bad file");

    // A forged batch: made by someone with head office's public recipient, claiming this device.
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    let entries = dev.pending_envelopes(100).unwrap();
    drop(dev);
    let payload = sealbox_protocol::batch::BatchPayload {
        manifest: sealbox_protocol::batch::BatchManifest {
            format: sealbox_protocol::batch::BATCH_FORMAT.into(),
            batch_id: uuid::Uuid::now_v7(),
            device: "booth-1".into(),
            event_id: EVENT.into(),
            entry_ids: entries.iter().map(|e| e.id).collect(),
            count: entries.len(),
            created_at_ms: 1,
        },
        entries,
    };
    let forger = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let signed = sealbox_protocol::batch::SignedBatch::sign(&payload, &forger);
    let recipient: age::x25519::Recipient = std::fs::read_to_string(sb.ho.join("recipient.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let forged = age::encrypt(&recipient, &serde_json::to_vec(&signed).unwrap()).unwrap();
    let f = sb.tmp.path().join("forged");
    std::fs::write(&f, forged).unwrap();
    let err = fail(sb.ho_import(&f, &sb.tmp.path().join("rf")), &["import"]);
    assert!(err.contains("not signed by the device"), "{err}");
    assert_eq!(ho_counts(&sb.ho), (0, 0));

    // The real file: a receipt comes back; any change to it is refused and erases nothing.
    let receipt = sb.tmp.path().join("receipt.json");
    ok(sb.ho_import(&batch, &receipt), &["import"]);
    let text = std::fs::read_to_string(&receipt).unwrap();
    let mut r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut variants = Vec::new();
    let mut v = r.clone();
    v["ids"].as_array_mut().unwrap().pop();
    variants.push(("an id removed", v));
    let mut v = r.clone();
    v["issued_at_ms"] = 2.into();
    variants.push(("the time changed", v));
    let mut v = r.clone();
    v["device"] = "booth-2".into();
    variants.push(("another device", v));
    let sig = r["signature"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('A') { "B" } else { "A" },
        &sig[1..]
    );
    r["signature"] = flipped.into();
    variants.push(("the signature changed", r));
    for (what, v) in variants {
        let f = sb.tmp.path().join("bad-receipt.json");
        std::fs::write(&f, v.to_string()).unwrap();
        let err = sb.dev_fail(&["receipt", "import", f.to_str().unwrap()], &[]);
        assert!(err.contains("nothing was erased"), "{what}: {err}");
        assert_eq!(exported(&sb), 20, "{what}: nothing erased");
    }
    std::fs::write(
        sb.tmp.path().join("truncated.json"),
        &text[..text.len() / 2],
    )
    .unwrap();
    sb.dev_fail(
        &[
            "receipt",
            "import",
            sb.tmp.path().join("truncated.json").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(exported(&sb), 20);
    // The untouched receipt works.
    sb.dev_ok(&["receipt", "import", receipt.to_str().unwrap()]);
    assert_eq!(sb.status()["erased"], 20);
}

#[test]
fn a_receipt_for_another_device_and_a_revoked_device_are_refused() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 5);
    // A second device at the same head office.
    let other = sb.enrol_second(EVENT);
    ok(
        sb.add_in(
            &other,
            r#"{"name":"Li","phone":"13812345678","consent":true}"#,
            &[],
        ),
        &["add"],
    );
    let b2 = sb.tmp.path().join("b2");
    ok(
        sb.dev_cmd_in(&other, &["export", "--out", b2.to_str().unwrap()])
            .output()
            .unwrap(),
        &["export"],
    );
    let r2 = sb.tmp.path().join("r2.json");
    ok(sb.ho_import(&b2, &r2), &["import"]);
    let b1 = sb.tmp.path().join("b1");
    sb.dev_ok(&["export", "--out", b1.to_str().unwrap()]);
    let err = sb.dev_fail(&["receipt", "import", r2.to_str().unwrap()], &[]);
    assert!(err.contains("another device"), "{err}");
    assert_eq!(exported(&sb), 5);
    // A revoked device's batch is refused at import.
    sb.ho_ok(&["device", "revoke", "booth-1"]);
    let err = fail(
        sb.ho_import(&b1, &sb.tmp.path().join("r1.json")),
        &["import"],
    );
    assert!(err.contains("revoked"), "{err}");
    assert_eq!(ho_counts(&sb.ho), (1, 1));
}

/// Every single-byte change to a batch file and to a receipt is refused, checked by the very
/// functions `import` (`admin::open_batch`: decrypt, device, signature, manifest) and
/// `receipt import` (`Device::import_receipt`: signature, digest, device, ids) call.
#[test]
fn every_single_byte_change_is_refused() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 1);
    let batch = sb.tmp.path().join("one.sealbox-batch");
    sb.dev_ok(&["export", "--out", batch.to_str().unwrap()]);
    let good = std::fs::read(&batch).unwrap();
    let identity = sb.ho_identity();
    let conn = rusqlite::Connection::open(sb.ho.join("headoffice.db")).unwrap();
    let accepts =
        |bytes: &[u8]| sealbox_headoffice::admin::open_batch(&identity, bytes, &conn).is_ok();
    assert!(accepts(&good));
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        assert!(
            !accepts(&bad),
            "a change at byte {i} of {} went unnoticed",
            good.len()
        );
    }
    drop(conn);

    let receipt = sb.tmp.path().join("r.json");
    ok(sb.ho_import(&batch, &receipt), &["import"]);
    let text = std::fs::read(&receipt).unwrap();
    let mut dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    for i in 0..text.len() {
        let mut bad = text.clone();
        bad[i] ^= 0x01;
        let applied = std::str::from_utf8(&bad)
            .ok()
            .map(|t| dev.import_receipt(t));
        assert!(
            !matches!(applied, Some(Ok(_))),
            "a change at byte {i} of the receipt went unnoticed"
        );
    }
    assert_eq!(dev.counts().unwrap().exported, 1, "nothing was erased");
    assert_eq!(
        dev.import_receipt(std::str::from_utf8(&text).unwrap())
            .unwrap()
            .erased,
        1
    );
}

/// The same tests with head office on PostgreSQL (a fresh database each, on the private cluster
/// `cargo xtask test` starts).
mod on_postgres {
    use sealbox_tests::pg::on_postgres;

    #[test]
    fn export_import_receipt_erase() {
        on_postgres(super::export_import_receipt_erase)
    }

    #[test]
    fn tampering_with_any_byte_is_caught_and_nothing_is_erased() {
        on_postgres(super::tampering_with_any_byte_is_caught_and_nothing_is_erased)
    }

    #[test]
    fn a_receipt_for_another_device_and_a_revoked_device_are_refused() {
        on_postgres(super::a_receipt_for_another_device_and_a_revoked_device_are_refused)
    }
}
