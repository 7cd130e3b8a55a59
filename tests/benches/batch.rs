//! Batch benchmark, run by `cargo xtask bench` inside a keyring session: export of a
//! 10,000-entry batch on the device, its import at head office (receipt written), and the CSV
//! export of 10,000 entries; beside opening head office's identity alone (scrypt), which import
//! and CRM export both pay once.
//!
//! Writes JSON to `SEALBOX_BENCH_OUT`.

use sealbox_headoffice::keys::HoDir;
use sealbox_headoffice::{admin, crm};
use sealbox_tests::bench::{forget_key, BenchSite};
use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 2_000 } else { 10_000 };
    let site = BenchSite::create();
    let (ho_dir, pass, tmp) = (&site.ho_dir, &site.pass, &site.tmp);
    let (dev_dir, mut dev) = site.device_with_entries(None, n);

    let batch = tmp.path().join("out.sealbox-batch");
    let t = Instant::now();
    let r = dev.export_batch(&batch).unwrap();
    let export_ms = ms(t);
    assert_eq!(r.count, n);
    let batch_bytes = std::fs::metadata(&batch).unwrap().len();

    let t = Instant::now();
    HoDir::new(ho_dir).load_identity(pass).unwrap();
    let identity_ms = ms(t);

    let receipt = tmp.path().join("receipt.json");
    let t = Instant::now();
    let imported = admin::import(ho_dir, pass, &batch, &receipt).unwrap();
    let import_ms = ms(t);
    assert_eq!(imported.entries, n);

    let t = Instant::now();
    let applied = dev
        .import_receipt(&std::fs::read_to_string(&receipt).unwrap())
        .unwrap();
    let receipt_ms = ms(t);
    assert_eq!(applied.erased as usize, n);

    let csv = tmp.path().join("crm.csv");
    let t = Instant::now();
    let rows = crm::export(
        ho_dir,
        pass,
        "trade-show-2026",
        crm::Format::Csv,
        &csv,
        false,
        &mut |_, _| {},
    )
    .unwrap();
    let csv_ms = ms(t);
    assert_eq!(rows.rows, n);

    forget_key(&dev_dir);
    // The keys name the entry count used: `10k`, or `2k` with --quick.
    let label = format!("{}k", n / 1000);
    let out = serde_json::json!({
        "batch_entries": n,
        "batch_label": label,
        "batch_bytes": batch_bytes,
        format!("batch_export_{label}_ms"): export_ms,
        format!("batch_import_{label}_ms"): import_ms,
        format!("batch_receipt_apply_{label}_ms"): receipt_ms,
        format!("crm_csv_export_{label}_ms"): csv_ms,
        "headoffice_open_identity_ms": identity_ms,
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{text}");
    if let Ok(p) = std::env::var("SEALBOX_BENCH_OUT") {
        std::fs::write(p, text).unwrap();
    }
}
