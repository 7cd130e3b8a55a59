//! Staff codes after enrolment (#16): head office issues and revokes them at any time; enrolled
//! devices learn the change from head office's signed, versioned update carried by the next
//! receipt (a sync's or a batch file's), and refuse a tampered or replayed one. And `sealbox
//! add` on the command line takes staff-only fields only with a staff code verified like the
//! kiosk's, read from the terminal or stdin, never an argument.

use crate::promoter::{enrol_promo, issue_code, promo_event, PROMO_EVENT};
use sealbox_device::protocol::staff::{StaffCodesError, StaffCodesUpdate};
use sealbox_device::{Device, DeviceError, OsKeychain};
use sealbox_tests::server::HoServer;
use sealbox_tests::*;

const VISITOR: &str = r#"{"name":"Qzstaffv","phone":"13900002222","consent":true}"#;

fn promoter_entry(i: u32) -> String {
    format!(
        r#"{{"name":"Qzstaffp{i}","phone":"1390000300{i}","rating":"3","notes":"Qznote{i}","consent":true}}"#
    )
}

/// `sealbox add --json - --staff-code` with the code on stdin's first line, then the entry.
fn add_as(sb: &Sandbox, code: &str, entry: &str) -> std::process::Output {
    with_stdin(
        sb.dev_cmd(&["add", "--json", "-", "--staff-code"]),
        &format!("{code}\n{entry}"),
    )
}

const ADD: &[&str] = &["add", "--json", "-", "--staff-code"];

fn version(sb: &Sandbox) -> u64 {
    Device::open(&sb.dev, &OsKeychain)
        .unwrap()
        .staff_codes_version()
        .unwrap()
}

#[test]
fn staff_codes_issued_and_revoked_after_enrolment_reach_the_device_signed() {
    issued_and_revoked();
}

/// The same with head office on PostgreSQL: the codes go through its storage interface.
#[test]
fn staff_codes_reach_the_device_from_a_head_office_on_postgres() {
    sealbox_tests::pg::on_postgres(issued_and_revoked);
}

fn issued_and_revoked() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    promo_event(&sb);
    enrol_promo(&sb, Some(&server.url()));

    // Issued after enrolment: the device does not know it before a receipt brings it.
    let s1 = issue_code(&sb, PROMO_EVENT);
    let said = fail(add_as(&sb, &s1, &promoter_entry(1)), ADD);
    assert!(said.contains("no staff codes"), "{said}");
    assert_eq!(sb.pending(), 0);

    // A batch file's receipt carries it (the device is offline).
    sb.add(VISITOR);
    let batch = sb.tmp.path().join("out.sealbox-batch");
    let receipt_v1 = sb.tmp.path().join("receipt-v1.json");
    sb.dev_ok(&["export", "--out", batch.to_str().unwrap()]);
    let out = sb.ho_import(&batch, &receipt_v1);
    assert!(out.status.success(), "{out:?}");
    sb.dev_ok(&["receipt", "import", receipt_v1.to_str().unwrap()]);
    assert_eq!(version(&sb), 1);
    ok(add_as(&sb, &s1, &promoter_entry(1)), ADD);

    // s2 issued and s1 revoked: until it syncs, the device keeps the set it has.
    let s2 = issue_code(&sb, PROMO_EVENT);
    assert!(s2.starts_with("s2-"), "{s2}");
    let said = sb.ho_ok(&["event", "staff-code", PROMO_EVENT, "--revoke", "s1"]);
    assert!(said.contains("s1 revoked"), "{said}");
    ok(add_as(&sb, &s1, &promoter_entry(2)), ADD);
    let said = fail(add_as(&sb, &s2, &promoter_entry(3)), ADD);
    assert!(said.contains("wrong staff code"), "{said}");
    assert_eq!(version(&sb), 1);

    // The sync's receipt brings version 3: s1 refused, s2 taken.
    sb.dev_ok(&["sync"]);
    assert_eq!(version(&sb), 3);
    // Importing the batch file again gives the receipt already written, whose staff codes are
    // older now: it stands as it was.
    let kept = std::fs::read(&receipt_v1).unwrap();
    let out = sb.ho_import(&batch, &receipt_v1);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&receipt_v1).unwrap(), kept);
    let said = fail(add_as(&sb, &s1, &promoter_entry(3)), ADD);
    assert!(said.contains("wrong staff code"), "{said}");
    ok(add_as(&sb, &s2, &promoter_entry(3)), ADD);

    // The list names ids only; a revoked id is never issued again.
    let listed = sb.ho_ok(&["event", "staff-code", PROMO_EVENT, "--list"]);
    assert!(
        listed.contains("active: s2") && listed.contains("revoked: s1"),
        "{listed}"
    );
    assert!(listed.contains("version: 3"), "{listed}");
    assert!(
        !listed.contains("argon2") && !listed.contains(&s2[3..]),
        "{listed}"
    );
    let s3 = issue_code(&sb, PROMO_EVENT);
    assert!(s3.starts_with("s3-"), "{s3}");

    // A replayed older update and tampered ones are refused, each with its typed error, and
    // change nothing.
    let old: StaffCodesUpdate = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&receipt_v1).unwrap())
            .unwrap()["staff_codes"]
            .clone(),
    )
    .unwrap();
    assert_eq!(old.version, 1);
    {
        let mut dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let before = dev.config().clone();
        let refused = |r: Result<u64, DeviceError>| match r {
            Err(DeviceError::StaffCodes(e)) => e,
            other => panic!("not refused as a staff code update: {other:?}"),
        };
        assert_eq!(
            refused(dev.apply_staff_codes(&old)),
            StaffCodesError::Stale { held: 3, got: 1 }
        );
        let mut forged = old.clone();
        forged.version = 9;
        let e = refused(dev.apply_staff_codes(&forged));
        assert_eq!(e, StaffCodesError::Signature);
        assert_eq!(DeviceError::StaffCodes(e).code(), "staff_codes_signature");
        let mut forged = old.clone();
        forged.version = 9;
        forged.staff_codes[0].id = "s9".into();
        assert_eq!(
            refused(dev.apply_staff_codes(&forged)),
            StaffCodesError::Signature
        );
        assert_eq!(dev.staff_codes_version().unwrap(), 3);
        assert_eq!(dev.config(), &before);
        let audit = dev.audit_recent(50).unwrap();
        let count = |a: &str| audit.iter().filter(|r| r.action == a).count();
        assert_eq!(count("staff_codes.updated"), 2);
        assert_eq!(count("staff_codes.refused"), 3);
        assert!(dev.audit_verify().unwrap().ok());
    }
    let said = fail(add_as(&sb, &s1, &promoter_entry(4)), ADD);
    assert!(said.contains("wrong staff code"), "{said}");
    ok(add_as(&sb, &s2, &promoter_entry(4)), ADD);

    // At head office: each promoter's entries carry their code's id, the visitor's none.
    sb.dev_ok(&["sync"]);
    assert_eq!(sb.pending(), 0);
    let csv = sb.tmp.path().join("crm.csv");
    sb.ho_ok(&[
        "export",
        "--event",
        PROMO_EVENT,
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "captured_by").unwrap();
    let mut by: Vec<String> = lines
        .map(|l| l.split(',').nth(col).unwrap_or_default().to_string())
        .collect();
    by.sort();
    assert_eq!(by, ["", "s1", "s1", "s2", "s2"], "{text}");
    for canary in [&s1[3..], &s2[3..]] {
        assert!(files_containing(&sb.dev, canary).is_empty());
        assert!(files_containing(&sb.ho, canary).is_empty());
    }

    // With nothing to send there is no receipt: the sync asks for the codes on their own.
    sb.ho_ok(&["event", "staff-code", PROMO_EVENT, "--revoke", "s2"]);
    assert_eq!(sb.pending(), 0);
    sb.dev_ok(&["sync"]);
    assert_eq!(version(&sb), 5);
    let said = fail(add_as(&sb, &s2, &promoter_entry(5)), ADD);
    assert!(said.contains("wrong staff code"), "{said}");
    ok(add_as(&sb, &s3, &promoter_entry(5)), ADD);
}

#[test]
fn sealbox_add_takes_staff_fields_only_with_a_verified_staff_code() {
    let sb = Sandbox::headoffice();
    promo_event(&sb);
    let s1 = issue_code(&sb, PROMO_EVENT);
    enrol_promo(&sb, None);
    let entry = promoter_entry(1);

    // Without a staff code: one line in either language, nothing stored.
    let said = sb.add_fail(&entry, &[]);
    assert!(
        said.contains("field notes is for staff only") && said.contains("--staff-code"),
        "{said}"
    );
    let said = sb.add_fail(&entry, &[("SEALBOX_LANG", "zh")]);
    assert!(said.contains("只限员工填写"), "{said}");
    let lines = format!("{VISITOR}\n{entry}\n");
    let said = fail(
        with_stdin(sb.dev_cmd(&["add", "--ndjson", "-"]), &lines),
        &["add", "--ndjson", "-"],
    );
    assert!(said.contains("is for staff only"), "{said}");
    assert_eq!(sb.pending(), 0);

    // A wrong code is refused (and rate-limited and audited like the kiosk's).
    let said = fail(add_as(&sb, "s1-00000000", &entry), ADD);
    assert!(said.contains("wrong staff code"), "{said}");
    // No code on stdin.
    let said = fail(
        with_stdin(sb.dev_cmd(&["add", "--json", "-", "--staff-code"]), ""),
        ADD,
    );
    assert!(said.contains("no staff code"), "{said}");
    // Never an argument.
    let out = with_stdin(
        sb.dev_cmd(&["add", "--json", "-", "--staff-code", &s1]),
        &entry,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(sb.pending(), 0);

    // The right code: the entries are stored (from a file here, the code on stdin).
    let file = sb.tmp.path().join("entries.ndjson");
    std::fs::write(&file, format!("{VISITOR}\n{entry}\n")).unwrap();
    let args = ["add", "--ndjson", file.to_str().unwrap(), "--staff-code"];
    let out = ok(with_stdin(sb.dev_cmd(&args), &format!("{s1}\n")), &args);
    assert_eq!(out.lines().count(), 2);
    // And on stdin after the code.
    let args = ["add", "--ndjson", "-", "--staff-code"];
    let out = ok(
        with_stdin(sb.dev_cmd(&args), &format!("{s1}\n{}\n", promoter_entry(2))),
        &args,
    );
    assert_eq!(out.lines().count(), 1);
    assert_eq!(sb.pending(), 3);
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    let audit = dev.audit_recent(50).unwrap();
    assert!(audit
        .iter()
        .any(|r| r.action == "staff_code.failed" && r.detail["for"] == "promoter s1"));
    assert!(audit
        .iter()
        .any(|r| r.action == "staff_code.ok" && r.detail["for"] == "promoter s1"));
    drop(dev);
    assert!(files_containing(&sb.dev, &s1[3..]).is_empty());
}
