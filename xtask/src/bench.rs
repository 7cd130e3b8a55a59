//! `cargo xtask bench`: release-build benchmarks, each figure beside its baseline from the same
//! run. Prints JSON and rewrites BENCHMARKS.md.

use crate::{ensure_packages, sh, with_keyring, BUILD_PACKAGES};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::process::Command;

pub fn bench(quick: bool) -> Result<()> {
    ensure_packages(BUILD_PACKAGES)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    sh(Command::new(&cargo).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "sealbox-device",
        "--benches",
    ]))?;
    std::fs::create_dir_all("target/xtask")?;
    // cargo bench runs in the crate's directory: give it absolute paths.
    let work = std::fs::canonicalize("target/xtask")?;
    let out = &work.join("bench-store.json");
    let _ = std::fs::remove_file(out);
    let mut cmd: Vec<String> = vec![
        cargo,
        "bench".into(),
        "--locked".into(),
        "-p".into(),
        "sealbox-device".into(),
        "--bench".into(),
        "store".into(),
        "--".into(),
    ];
    if quick {
        cmd.push("--quick".into());
    }
    std::env::set_var("SEALBOX_BENCH_OUT", out);
    std::env::set_var("SEALBOX_BENCH_DIR", &work);
    with_keyring(
        std::path::Path::new("target/xtask/keyring-bench"),
        true,
        &cmd,
    )?;
    let store: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out).context("the store benchmark's output")?,
    )?;
    let mut all = serde_json::Map::new();
    if let Some(o) = store.as_object() {
        all.extend(o.clone());
    }
    all.insert("quick".into(), quick.into());
    let json = serde_json::Value::Object(all);
    println!("{}", serde_json::to_string_pretty(&json)?);
    std::fs::write("BENCHMARKS.md", markdown(&json))?;
    eprintln!("xtask: wrote BENCHMARKS.md");
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| {
                l.trim_start_matches("PRETTY_NAME=")
                    .trim_matches('"')
                    .to_string()
            })
        })
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {os}")
}

fn markdown(j: &serde_json::Value) -> String {
    let f = |k: &str| j.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo xtask bench{}` (release build). Machine: {}.\n",
        if j["quick"].as_bool() == Some(true) {
            " --quick"
        } else {
            ""
        },
        machine()
    );
    let _ = writeln!(
        s,
        "Every figure is measured beside its baseline in the same run, interleaved, because this kind of machine is noisy: read the ratios and medians, not single times. Entries per run: {}; sealed payload: {} bytes.\n",
        j["entries"], j["sealed_bytes"]
    );
    let _ = writeln!(
        s,
        "| figure | Sealbox | baseline (same run) | ratio | target |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| submit → durable commit, through the library, sealing included | p50 {:.3} ms, p99 {:.3} ms | plain SQLite one-row commit p50 {:.3} ms, p99 {:.3} ms | {:.2} (p50) | p99 ≤ 2 ms, ratio ≤ 3 |",
        f("submit_p50_ms"), f("submit_p99_ms"), f("plain_commit_p50_ms"), f("plain_commit_p99_ms"), f("submit_vs_plain_commit_ratio")
    );
    let _ = writeln!(
        s,
        "| store throughput, same schema and row size (SQLCipher vs plain SQLite) | {:.0} commits/s | {:.0} commits/s | {:.2} | ≤ 1.10 |",
        f("sqlcipher_commits_per_s"), f("plain_commits_per_s"), f("sqlcipher_vs_plain_ratio")
    );
    let _ = writeln!(
        s,
        "| entries per second through `add` | {:.0} /s | {:.0} plain commits/s | | |",
        f("submit_per_s"),
        f("plain_commits_per_s")
    );
    let _ = writeln!(
        s,
        "| open the database | raw key {:.2} ms | PBKDF2 passphrase {:.1} ms | | ≤ 20 ms |",
        f("open_raw_key_ms"),
        f("open_pbkdf2_ms")
    );
    let _ = writeln!(
        s,
        "| open the device (keychain lookup over D-Bus + database + config) | {:.2} ms | | | |",
        f("open_device_with_keychain_ms")
    );
    let _ = writeln!(s, "\n## What the figures mean\n");
    let _ = writeln!(s, "- **submit**: `Device::add`: validate against the event config, seal all values to head office with age (X25519), render the masked summary, insert in one transaction and commit with WAL and `synchronous=FULL`. The time a visitor waits for \"thank you\" minus the UI.");
    let _ = writeln!(s, "- **plain SQLite one-row commit**: the same schema and pragmas, a row of the same size, no key and no sealing: the floor one durable commit costs on this disk.");
    let _ = writeln!(s, "- **SQLCipher vs plain**: the same inserts with a raw key; the ratio is plain commits/s ÷ SQLCipher commits/s (1.00 means encryption costs nothing measurable).");
    let _ = writeln!(s, "- **open**: opening and reading the schema with a raw 256-bit key (no key derivation) beside SQLCipher's default PBKDF2-HMAC-SHA512 with 256,000 iterations; medians.");
    let _ = writeln!(
        s,
        "\nRaw JSON:\n\n```json\n{}\n```",
        serde_json::to_string_pretty(j).unwrap_or_default()
    );
    s
}
