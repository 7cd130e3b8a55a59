//! Head office's duties after the event: the CRM export, retention, deletion requests.

use sealbox_headoffice::{crm, Passphrase};
use sealbox_tests::server::ho_counts;
use sealbox_tests::*;
use std::path::Path;

/// Adds these entries on the sandbox's device (or `dir`) and delivers them to head office by
/// batch file.
fn deliver(sb: &Sandbox, dir: &Path, entries: &[serde_json::Value]) {
    let lines: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    sb.add_lines_in(dir, &lines);
    let batch = sb
        .tmp
        .path()
        .join(format!("{}.batch", uuid::Uuid::now_v7()));
    ok(
        sb.dev_cmd_in(dir, &["export", "--out", batch.to_str().unwrap()])
            .output()
            .unwrap(),
        &["export"],
    );
    let receipt = batch.with_extension("receipt");
    ok(sb.ho_import(&batch, &receipt), &["import"]);
    ok(
        sb.dev_cmd_in(dir, &["receipt", "import", receipt.to_str().unwrap()])
            .output()
            .unwrap(),
        &["receipt"],
    );
}

fn visitors() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"name": "张Qzcrm三", "phone": "13811112222", "email": "zhang.qzcrm@example.cn", "company": "示例科技, 上海", "interest": "sensors", "consent": true}),
        serde_json::json!({"name": "Alice Qzcrm", "phone": "+44 20 7946 0958", "company": "=HYPERLINK(\"x\")", "consent": true}),
        serde_json::json!({"name": "李Qzcrm", "phone": "139-3333-4444", "email": "li@example.com", "consent": true}),
    ]
}

#[test]
fn csv_and_xlsx_match_the_entries_masked_unless_asked() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    deliver(&sb, &sb.dev, &visitors());
    let csv_path = sb.tmp.path().join("out/crm.csv");
    std::fs::create_dir_all(csv_path.parent().unwrap()).unwrap();
    let out = sb.ho_ok(&[
        "export",
        "--event",
        EVENT,
        "--format",
        "csv",
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert!(
        out.contains("wrote 3 rows") && out.contains("masked"),
        "{out}"
    );
    let bytes = std::fs::read(&csv_path).unwrap();
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 with BOM");
    let mut rdr = csv::Reader::from_reader(&bytes[3..]);
    let header = rdr.headers().unwrap().clone();
    assert_eq!(&header[0], "entry_id");
    assert!(header.iter().any(|h| h.starts_with("phone (手机号")));
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    let col = |name: &str| header.iter().position(|h| h.starts_with(name)).unwrap();
    assert_eq!(&rows[0][col("phone")], "138****2222");
    assert_eq!(&rows[0][col("name")], "张****");
    assert_eq!(
        &rows[0][col("company")],
        "示例科技, 上海",
        "plain fields stay, commas quoted"
    );
    assert_eq!(
        &rows[1][col("company")],
        "'=HYPERLINK(\"x\")",
        "no formula runs in a spreadsheet"
    );
    assert_eq!(&rows[0][col("consent_version")], "2026-11-v1");
    assert!(rows[0][col("captured_at")].ends_with('Z'));
    assert!(
        !String::from_utf8_lossy(&bytes).contains("13811112222"),
        "masked by default"
    );

    // Unmasked needs the flag, and is audited.
    let xlsx_path = sb.tmp.path().join("out/crm.xlsx");
    let out = sb.ho_ok(&[
        "export",
        "--event",
        EVENT,
        "--format",
        "xlsx",
        "--out",
        xlsx_path.to_str().unwrap(),
        "--unmasked",
    ]);
    assert!(out.contains("UNMASKED"), "{out}");
    use calamine::Reader;
    let mut wb: calamine::Xlsx<_> = calamine::open_workbook(&xlsx_path).unwrap();
    let sheet = wb.worksheet_range_at(0).unwrap().unwrap();
    let cells: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    assert_eq!(cells.len(), 4);
    let phone = cells[0]
        .iter()
        .position(|h| h.starts_with("phone"))
        .unwrap();
    let phones: Vec<&str> = cells[1..].iter().map(|r| r[phone].as_str()).collect();
    assert_eq!(
        phones,
        ["+86 138 1111 2222", "+44 2079460958", "+86 139 3333 4444"]
    );
    let audited = sealbox_tests::server::ho_strings(
        &sb.ho,
        "SELECT detail FROM audit WHERE action = 'crm.exported' ORDER BY seq",
    );
    assert_eq!(audited.len(), 2);
    assert!(audited[1].contains("\"unmasked\":true"), "{audited:?}");
    // The command's own output holds no visitor either.
    let out = sb
        .ho_cmd(&[
            "export",
            "--event",
            EVENT,
            "--format",
            "csv",
            "--out",
            sb.tmp.path().join("out/again.csv").to_str().unwrap(),
            "--unmasked",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !printed.contains("Qzcrm") && !printed.contains("13811112222"),
        "{printed}"
    );
    std::fs::remove_file(sb.tmp.path().join("out/again.csv")).unwrap();
    // An existing file is never overwritten.
    let err = fail(
        sb.ho_cmd(&[
            "export",
            "--event",
            EVENT,
            "--format",
            "csv",
            "--out",
            csv_path.to_str().unwrap(),
        ])
        .output()
        .unwrap(),
        &["export"],
    );
    assert!(err.contains("already exists"), "{err}");
    // No canary in head office's files (entries stay sealed), its temp dir, or beside the output.
    for canary in ["Qzcrm", "13811112222"] {
        assert!(
            files_containing(&sb.ho, canary).is_empty(),
            "{canary} in head office's data dir"
        );
        assert!(
            files_containing(&sb.tmpdir, canary).is_empty(),
            "{canary} in the temp dir"
        );
    }
    assert_eq!(
        std::fs::read_dir(csv_path.parent().unwrap())
            .unwrap()
            .count(),
        2,
        "no temp file left"
    );
    assert!(sb.ho_ok(&["audit", "verify"]).contains("ok"));
    // Head office's audit chain detects an edited row.
    if let Some(url) = sealbox_tests::pg::url_of(&sb.ho) {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        assert!(
            c.execute("UPDATE audit SET detail = '{}' WHERE seq = 2", &[])
                .is_err(),
            "append-only"
        );
        c.batch_execute("ALTER TABLE audit DISABLE TRIGGER audit_append_only")
            .unwrap();
        c.execute(
            "UPDATE audit SET detail = '{\"unmasked\":false}' WHERE action = 'crm.exported' AND detail LIKE '%true%'",
            &[],
        )
        .unwrap();
    } else {
        let conn = rusqlite::Connection::open(sb.ho.join("headoffice.db")).unwrap();
        assert!(
            conn.execute("UPDATE audit SET detail = '{}' WHERE seq = 2", [])
                .is_err(),
            "append-only"
        );
        conn.execute_batch("DROP TRIGGER audit_no_update").unwrap();
        conn.execute(
            "UPDATE audit SET detail = '{\"unmasked\":false}' WHERE action = 'crm.exported' AND detail LIKE '%true%'",
            [],
        )
        .unwrap();
    }
    let err = fail(
        sb.ho_cmd(&["audit", "verify"]).output().unwrap(),
        &["audit"],
    );
    assert!(err.contains("broken at row"), "{err}");
}

#[test]
fn retention_purges_each_event_when_its_period_ends() {
    let sb = Sandbox::headoffice();
    // A second event that keeps data for 90 days, with its own device.
    sb.create_event("long-expo", |e| e["consent"]["retention_days"] = 90.into());
    sb.enrol_at("https://127.0.0.1:9");
    let dev2 = sb.enrol_second("long-expo");
    deliver(&sb, &sb.dev, &visitors());
    deliver(&sb, &dev2, &visitors()[..2]);
    assert_eq!(ho_counts(&sb.ho).0, 5);
    let now = sealbox_headoffice::now_ms();
    let day = 86_400_000;
    // The injected clock: 29 days on, nothing is due; 31 days on, the 30-day event is; 91, all.
    let r = crm::purge(&sb.ho, now + 29 * day).unwrap();
    assert!(r.iter().all(|(_, n)| *n == 0), "{r:?}");
    let r = crm::purge(&sb.ho, now + 31 * day).unwrap();
    assert_eq!(r, vec![("long-expo".into(), 0), (EVENT.into(), 3)]);
    assert_eq!(ho_counts(&sb.ho).0, 2);
    let r = crm::purge(&sb.ho, now + 91 * day).unwrap();
    assert_eq!(r, vec![("long-expo".into(), 2), (EVENT.into(), 0)]);
    assert_eq!(ho_counts(&sb.ho).0, 0);
    let purges = sealbox_tests::server::ho_count(
        &sb.ho,
        "SELECT count(*) FROM audit WHERE action = 'retention.purged'",
    );
    assert_eq!(
        purges, 3,
        "every purge is audited with its counts, also one that deleted nothing"
    );
    // The CLI runs the same purge now: nothing is due today.
    assert!(sb.ho_ok(&["purge"]).contains(": 0 entries"));
}

#[test]
fn forget_finds_a_visitor_across_events_and_leaves_others_intact() {
    let sb = Sandbox::headoffice();
    sb.create_event("expo-b", |_| {});
    sb.enrol_at("https://127.0.0.1:9");
    let dev2 = sb.enrol_second("expo-b");
    let same_person = |email: &str| serde_json::json!({"name": "Qzforget", "phone": "139 1234 5678", "email": email, "consent": true});
    let other = serde_json::json!({"name": "Other", "phone": "13700000000", "email": "other@example.com", "consent": true});
    deliver(
        &sb,
        &sb.dev,
        &[same_person("Forget.Me@Example.com"), other.clone()],
    );
    deliver(&sb, &dev2, &[same_person("forget.me@example.com"), other]);
    assert_eq!(ho_counts(&sb.ho).0, 4);

    // Written differently from how it was entered: normalised before comparing.
    let out = sb.ho_ok(&[
        "forget",
        "--phone",
        "+86 139-1234-5678",
        "--event",
        "expo-b",
    ]);
    assert!(out.contains("deleted 1 entries"), "{out}");
    let out = sb.ho_ok(&["forget", "--email", "FORGET.ME@example.COM"]);
    assert!(out.contains("deleted 1 entries"), "{out}");
    assert_eq!(ho_counts(&sb.ho).0, 2, "the other visitor's entries stay");
    let n = crm::forget(
        &sb.ho,
        &Passphrase::new(PASSPHRASE),
        &crm::Subject::Phone("13912345678".into()),
        None,
    )
    .unwrap();
    assert_eq!(n, 0, "nothing left of that visitor");
    // The request is audited as a salted hash: the phone and email appear nowhere in clear.
    for needle in ["13912345678", "139-1234-5678", "forget.me", "FORGET"] {
        assert!(
            files_containing(&sb.ho, needle).is_empty(),
            "{needle} stored at head office"
        );
    }
    let requests = sealbox_tests::server::ho_count(&sb.ho, "SELECT count(*) FROM audit WHERE action = 'deletion.request' AND detail LIKE '%subject_hash%'");
    assert_eq!(requests, 3);
    let err = fail(
        sb.ho_cmd(&["forget", "--phone", "12"]).output().unwrap(),
        &["forget"],
    );
    assert!(err.contains("not a phone number"), "{err}");
}

/// The same tests with head office on PostgreSQL (a fresh database each, on the private cluster
/// `cargo xtask test` starts).
mod on_postgres {
    use sealbox_tests::pg::on_postgres;

    #[test]
    fn csv_and_xlsx_match_the_entries_masked_unless_asked() {
        on_postgres(super::csv_and_xlsx_match_the_entries_masked_unless_asked)
    }

    #[test]
    fn retention_purges_each_event_when_its_period_ends() {
        on_postgres(super::retention_purges_each_event_when_its_period_ends)
    }

    #[test]
    fn forget_finds_a_visitor_across_events_and_leaves_others_intact() {
        on_postgres(super::forget_finds_a_visitor_across_events_and_leaves_others_intact)
    }
}
