//! Head office at scale (issue #14, item 7): `status`, the counts, the streams the CRM export and
//! `forget` read and purge's chunks are answered from indexes; the export (CSV and XLSX) and
//! `forget` keep their memory flat however many entries there are; purge deletes in bounded
//! transactions, so a purge killed midway leaves a consistent store that the next one finishes.
//! Entries are made fast ([`sealbox_tests::scale::add_entries`]), not synced one by one.

use sealbox_headoffice::keys::HoDir;
use sealbox_headoffice::store::Store;
use sealbox_tests::scale::{add_entries, phone_of, run_measured, Run};
use sealbox_tests::server::ho_count;
use sealbox_tests::*;

/// The tables whose size grows with the entries: never scanned whole, never sorted.
const BIG: [&str; 3] = ["entries", "quarantine", "tombstones"];

#[test]
fn status_counts_streams_and_purge_chunks_come_from_indexes() {
    let sb = Sandbox::headoffice();
    sb.enrolment_file("scale-device");
    add_entries(&sb.ho, "scale-device", 0, 50);
    let mut store = Store::open(&HoDir::new(&sb.ho)).unwrap();
    let plans = store.query_plans().unwrap();
    assert_eq!(plans.len(), 8, "{plans:?}");
    for (query, plan) in &plans {
        for line in plan.lines() {
            let line = line.trim_start_matches(['-', '>', ' ', '|', '`']);
            match store.backend() {
                "sqlite" => {
                    // `SCAN x` reads a whole table, `USE TEMP B-TREE` sorts.
                    let scans_big = line.starts_with("SCAN ")
                        && !line.contains("INDEX")
                        && ["entries", "x", "q", "t", "quarantine", "tombstones"]
                            .iter()
                            .any(|t| line.split_whitespace().nth(1) == Some(t));
                    assert!(!scans_big, "{query}: a table scan: {plan}");
                    assert!(!line.contains("TEMP B-TREE"), "{query}: a sort: {plan}");
                }
                _ => {
                    for t in BIG {
                        assert!(
                            !line.contains(&format!("Seq Scan on {t}")),
                            "{query}: a table scan: {plan}"
                        );
                    }
                    assert!(
                        !line.starts_with("Sort ") && !line.starts_with("Incremental Sort"),
                        "{query}: a sort: {plan}"
                    );
                }
            }
        }
    }
    // And `status` says what the tables hold.
    let text = sb.ho_ok(&["status", "--json"]);
    assert!(
        text.contains("scale-device") && text.contains("50"),
        "{text}"
    );
    assert_eq!(ho_count(&sb.ho, "SELECT count(*) FROM entries"), 50);
}

/// The export's and `forget`'s peak memory, as the kernel counted it for the real process.
fn peaks(sb: &Sandbox, label: &str, visitor: usize) -> [Run; 3] {
    let out = sb.tmp.path().join(format!("crm-{label}"));
    std::fs::create_dir_all(&out).unwrap();
    let csv = out.join("crm.csv");
    let xlsx = out.join("crm.xlsx");
    let run = |args: &[&str]| {
        let r = run_measured(sb.ho_cmd(args));
        assert!(r.success, "{args:?}: {}", r.stderr);
        r
    };
    let export = |format: &str, path: &std::path::Path| {
        run(&[
            "export",
            "--event",
            EVENT,
            "--format",
            format,
            "--out",
            path.to_str().unwrap(),
        ])
    };
    let c = export("csv", &csv);
    let x = export("xlsx", &xlsx);
    let f = run(&["forget", "--phone", &phone_of(visitor)]);
    assert!(f.stdout.contains("deleted 1 entries"), "{}", f.stdout);
    [c, x, f]
}

#[test]
fn export_and_forget_memory_stays_flat_and_a_killed_purge_resumes() {
    const SMALL: usize = 1_000;
    const LARGE: usize = 10_000;
    let sb = Sandbox::headoffice();
    add_entries(&sb.ho, "scale-device", 0, SMALL);
    let small = peaks(&sb, "small", 7);
    add_entries(&sb.ho, "scale-device", SMALL, LARGE - SMALL);
    let large = peaks(&sb, "large", 8);
    // Every entry made it into the files (less the two forgotten).
    let csv = std::fs::read_to_string(sb.tmp.path().join("crm-large/crm.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + LARGE - 1);
    {
        use calamine::Reader;
        let mut wb: calamine::Xlsx<_> =
            calamine::open_workbook(sb.tmp.path().join("crm-large/crm.xlsx")).unwrap();
        let sheet = wb.worksheet_range_at(0).unwrap().unwrap();
        assert_eq!(sheet.rows().count(), 1 + LARGE - 1);
    }
    for (what, (s, l)) in ["CSV export", "XLSX export", "forget"]
        .iter()
        .zip(small.iter().zip(large.iter()))
    {
        eprintln!(
            "{what}: {SMALL} entries: peak {:.1} MB, working {:.1} MB, {:.1} s; {LARGE} entries: peak {:.1} MB, working {:.1} MB, {:.1} s",
            s.peak_rss_mb, s.late_rss_mb, s.secs, l.peak_rss_mb, l.late_rss_mb, l.secs
        );
        // Ten times the entries: a page at a time, so a few MB more at most (the export's map
        // of contact digests grows by about 70 bytes an entry: 0.6 MB here). The whole run's
        // peak is opening the identity (scrypt, 64 MiB), so the working part is compared.
        assert!(
            l.late_rss_mb - s.late_rss_mb < 6.0,
            "{what}: memory grew from {:.1} MB ({SMALL} entries) to {:.1} MB ({LARGE})",
            s.late_rss_mb,
            l.late_rss_mb
        );
        assert!(
            l.peak_rss_mb < 256.0,
            "{what}: peak {:.1} MB",
            l.peak_rss_mb
        );
    }

    // Purge, killed midway: every entry is either still held or deleted with its tombstone.
    let held = (LARGE - 2) as i64;
    // libfaketime preloaded into head office itself (the `faketime` program would run it as
    // its child, out of reach of the kill).
    let mut purge = sb
        .ho_cmd(&["purge"])
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", "+60d")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tombs = || {
        ho_count(
            &sb.ho,
            "SELECT count(*) FROM tombstones WHERE reason = 'retention'",
        )
    };
    let t = std::time::Instant::now();
    while tombs() == 0 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(120),
            "purge deleted nothing"
        );
        assert!(purge.try_wait().unwrap().is_none(), "purge ended at once");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    purge.kill().unwrap();
    purge.wait().unwrap();
    let (left, gone) = (ho_count(&sb.ho, "SELECT count(*) FROM entries"), tombs());
    eprintln!("purge killed after {gone} of {held} entries");
    assert!(
        left > 0 && gone > 0,
        "killed midway: {left} left, {gone} gone"
    );
    assert_eq!(left + gone, held, "each entry held or tombstoned");
    assert_eq!(
        ho_count(
            &sb.ho,
            "SELECT count(*) FROM entries e JOIN tombstones t ON t.id = e.id"
        ),
        0,
        "none both"
    );
    let out = sb.ho_ok_faketime(&["purge"], "+60d");
    assert!(
        out.contains(&format!("{left} entries past retention")),
        "{out}"
    );
    assert_eq!(ho_count(&sb.ho, "SELECT count(*) FROM entries"), 0);
    assert_eq!(tombs(), held);
}

mod on_postgres {
    use sealbox_tests::pg::on_postgres;

    #[test]
    fn status_counts_streams_and_purge_chunks_come_from_indexes() {
        on_postgres(super::status_counts_streams_and_purge_chunks_come_from_indexes)
    }

    #[test]
    fn export_and_forget_memory_stays_flat_and_a_killed_purge_resumes() {
        on_postgres(super::export_and_forget_memory_stays_flat_and_a_killed_purge_resumes)
    }
}
