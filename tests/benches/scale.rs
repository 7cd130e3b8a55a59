//! Head office at scale, run by `cargo xtask bench`: a million entries (fewer under `--quick`,
//! and every key then names the count used), made fast (sealed in parallel, inserted in bulk),
//! on the embedded database and on PostgreSQL when `SEALBOX_TEST_PG_URL` names a cluster.
//! For each backend: the CRM CSV export and `forget` of one visitor, each by the real
//! `sealbox-headoffice` binary in its own process, timed beside the floor (the same entries
//! opened alone in a tight loop on every core) with the process's peak RSS; and `status`.
//!
//! Writes JSON to `SEALBOX_BENCH_OUT`.

use sealbox_headoffice::keys::HoDir;
use sealbox_headoffice::store::Store;
use sealbox_headoffice::{admin, Passphrase};
use sealbox_tests::scale::{add_entries, decrypt_floor, phone_of, run_measured};
use std::path::Path;
use std::time::Instant;

/// `1000000` → `1m`, `50000` → `50k`: the entry count in a key's name.
fn count_label(n: usize) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn ho_cmd(ho: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(sealbox_tests::bin("sealbox-headoffice"));
    c.arg("--data-dir")
        .arg(ho)
        .args(args)
        .env("SEALBOX_HO_PASSPHRASE", "bench passphrase 1")
        .env_remove("SEALBOX_HO_DATABASE_URL");
    c
}

/// Measures one head office with `n` entries; keys prefixed `scale_{backend}_{label}_`.
fn measure(
    ho: &Path,
    pass: &Passphrase,
    backend: &str,
    n: usize,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    let key = |what: &str| format!("scale_{backend}_{}_{what}", count_label(n));
    let t = Instant::now();
    add_entries(ho, "bench-device", 0, n);
    let generate_s = t.elapsed().as_secs_f64();
    eprintln!("{backend}: {n} entries made in {generate_s:.1} s");

    let t = Instant::now();
    HoDir::new(ho).load_identity(pass).unwrap();
    let identity_s = t.elapsed().as_secs_f64();

    // The floor, the export, the floor again, the forget: the floor is the median of three
    // runs around them, so a drift of the machine's speed shows in neither alone.
    let mut floors = vec![decrypt_floor(ho, pass)];
    let csv = ho.parent().unwrap().join(format!("crm-{backend}.csv"));
    let export = run_measured(ho_cmd(
        ho,
        &[
            "export",
            "--event",
            sealbox_tests::EVENT,
            "--format",
            "csv",
            "--out",
            csv.to_str().unwrap(),
        ],
    ));
    assert!(export.success, "{}", export.stderr);
    let rows = std::fs::read_to_string(&csv)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    assert_eq!(rows, n + 1);
    let _ = std::fs::remove_file(&csv);
    floors.push(decrypt_floor(ho, pass));
    let forget = run_measured(ho_cmd(ho, &["forget", "--phone", &phone_of(n / 2)]));
    assert!(
        forget.success && forget.stdout.contains("deleted 1 entries"),
        "{}{}",
        forget.stdout,
        forget.stderr
    );
    floors.push(decrypt_floor(ho, pass));
    floors.sort_by(|a, b| a.total_cmp(b));
    let floor = floors[1];

    // status: in process (the queries alone, median of 5) and the command (start, open, print).
    let mut store = Store::open(&HoDir::new(ho)).unwrap();
    let mut status_ms: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            store.status().unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    status_ms.sort_by(|a, b| a.total_cmp(b));
    let status_cmd = run_measured(ho_cmd(ho, &["status", "--json"]));
    assert!(status_cmd.success, "{}", status_cmd.stderr);

    for (k, v) in [
        ("entries", serde_json::json!(n)),
        ("generate_s", generate_s.into()),
        ("open_identity_s", identity_s.into()),
        ("floor_decrypt_s", floor.into()),
        ("csv_export_s", export.secs.into()),
        ("csv_export_vs_floor", (export.secs / floor).into()),
        ("csv_export_peak_rss_mb", export.peak_rss_mb.into()),
        ("forget_s", forget.secs.into()),
        ("forget_vs_floor", (forget.secs / floor).into()),
        ("forget_peak_rss_mb", forget.peak_rss_mb.into()),
        ("status_ms", status_ms[2].into()),
        ("status_command_ms", (status_cmd.secs * 1000.0).into()),
    ] {
        out.insert(key(k), v);
    }
}

/// A head office with the example event, initialised, in `dir`; on PostgreSQL at `url` if given.
fn head_office(dir: &Path, url: Option<&str>) -> Passphrase {
    let pass = Passphrase::new("bench passphrase 1");
    if let Some(url) = url {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.toml"), sealbox_tests::pg::config_for(url)).unwrap();
    }
    admin::init(
        dir,
        &pass,
        &sealbox_headoffice::recovery::KitOptions::beside(dir),
        None,
    )
    .unwrap();
    let example = sealbox_tests::workspace().join("examples/trade-show.json");
    admin::event_create(dir, &std::fs::read_to_string(example).unwrap()).unwrap();
    pass
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 50_000 } else { 1_000_000 };
    let base = std::env::var("SEALBOX_BENCH_DIR").unwrap_or_else(|_| "target".into());
    let mut out = serde_json::Map::new();
    out.insert("scale_entries".into(), n.into());
    out.insert("scale_label".into(), count_label(n).into());
    {
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let ho = tmp.path().join("ho");
        let pass = head_office(&ho, None);
        measure(&ho, &pass, "sqlite", n, &mut out);
    }
    if std::env::var("SEALBOX_TEST_PG_URL").is_ok()
        && std::env::var_os("SEALBOX_BENCH_SCALE_SQLITE_ONLY").is_none()
    {
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let db = sealbox_tests::pg::TestDb::new();
        let ho = tmp.path().join("ho");
        let pass = head_office(&ho, Some(&db.url));
        measure(&ho, &pass, "postgres", n, &mut out);
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(out)).unwrap();
    println!("{text}");
    if let Ok(p) = std::env::var("SEALBOX_BENCH_OUT") {
        std::fs::write(p, text).unwrap();
    }
}
