//! An earlier release, for the package test's upgrade: the programs of commit [`COMMIT`] (the
//! last before the device store's schema v4 and v5 and head office's schema v2), built in release
//! from that commit's own sources and lock file, and packed with this tree's packaging metadata
//! under the version [`VERSION`]. That commit has no `cargo xtask dist`, so its packages never
//! existed: these are the closest real thing, its binaries in today's packages.
//!
//! The binaries are cached in `target/old-release/COMMIT/bin/`: built once, then reused by every
//! later run. The build shares `target/` with the current one, so dependencies whose versions and
//! features agree are compiled once. It runs before the current release build, because both
//! write their programs to `target/release/`.

use crate::dist::{self, Debs, OUT};
use crate::{cargo, sh};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// 30 Nov 2026, the end of the first day's work: device store schema 3, head office schema 1.
pub const COMMIT: &str = "34fa1ec6bcf0c7804cdc1d42fef012eed8b1bb74";
/// Sorts below every 0.1.0 package (`~`), and says where it comes from.
pub const VERSION: &str = "0.1.0~git.34fa1ec";
/// The store schemas at that commit: what the upgrade must migrate from (head office's first
/// schema had no number in the file; today's code reads it as 0 and migrates it like 1).
pub const DEVICE_SCHEMA: i64 = 3;
pub const HO_SCHEMA: i64 = 1;

const PROGRAMS: [&str; 3] = ["sealbox", "sealbox-headoffice", "sealbox-kiosk"];

fn cache() -> PathBuf {
    Path::new("target/old-release").join(COMMIT)
}

/// The earlier release's three programs, built now unless cached.
pub fn binaries() -> Result<PathBuf> {
    let bin = cache().join("bin");
    if PROGRAMS.iter().all(|p| bin.join(p).exists()) {
        return Ok(bin);
    }
    crate::ensure_packages(
        &[
            crate::BUILD_PACKAGES,
            crate::TAURI_PACKAGES,
            &["binutils", "git"],
        ]
        .concat(),
    )?;
    let t = Instant::now();
    let src = std::fs::canonicalize(".")?.join(cache()).join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src)?;
    // That commit's tree, as `git archive` gives it (no work tree of the repository is touched).
    let archive = Command::new("git")
        .args(["archive", "--format=tar", COMMIT])
        .stdout(Stdio::piped())
        .spawn()
        .context(
            "git archive (the package test's earlier release needs this repository's history)",
        )?;
    let status = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(archive.stdout.context("git archive's output")?)
        .status()?;
    if !status.success() {
        bail!("unpacking commit {COMMIT} failed: is the clone shallow? (git fetch --unshallow)");
    }
    let target = std::fs::canonicalize("target")?;
    let started = std::time::SystemTime::now();
    // The same two cargo runs as `cargo xtask dist`: the command lines, then the app the way
    // `cargo tauri build` builds it (its bins, Tauri's custom protocol).
    let build = |args: &[&str]| -> Result<()> {
        sh(cargo()
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "--locked"])
            .args(args))
    };
    build(&["-p", "sealbox-cli", "-p", "sealbox-headoffice"])?;
    build(&[
        "--bins",
        "--no-default-features",
        "--features",
        "tauri/custom-protocol",
    ])?;
    let tmp = cache().join("bin.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for p in PROGRAMS {
        std::fs::copy(target.join("release").join(p), tmp.join(p))?;
        // Without the release profile's line tables: a fifth of the size, as packed.
        sh(Command::new("strip").arg("--strip-debug").arg(tmp.join(p)))?;
    }
    std::fs::rename(&tmp, &bin)?;
    forget_build(&target.join("release/deps"), started)?;
    std::fs::remove_dir_all(&src)?;
    println!(
        "xtask: the earlier release ({}) built in {:.0} s, cached in {}",
        &COMMIT[..7],
        t.elapsed().as_secs_f64(),
        bin.display()
    );
    Ok(bin)
}

/// Deletes what the earlier release's own crates left in `deps` (about 350 MB: their libraries
/// and programs, all named `sealbox…`, written since `since`); the dependencies it shares with the
/// current build stay, and the current build's own crates, whose names hash their other source
/// path, are not touched. After a first build everything of them was written then; a build
/// that found some of them still fresh (the cache deleted, `target/` kept) leaves those.
fn forget_build(deps: &Path, since: std::time::SystemTime) -> Result<()> {
    for e in std::fs::read_dir(deps)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_prefix("lib")
            .unwrap_or(&name)
            .starts_with("sealbox");
        if ours && e.metadata()?.modified()? >= since {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// The earlier release's two packages, from the cached binaries and the current packages.
pub fn debs(current: &Debs, out: &Path) -> Result<Debs> {
    let bin = binaries()?;
    let kiosk = dist::with_binaries(
        &current.kiosk,
        VERSION,
        out,
        &[
            ("/usr/bin/sealbox-kiosk", bin.join("sealbox-kiosk")),
            ("/usr/bin/sealbox", bin.join("sealbox")),
        ],
    )?;
    let headoffice = dist::headoffice_deb_from(&bin.join("sealbox-headoffice"), VERSION, out)?;
    let _ = std::fs::remove_dir_all(Path::new(OUT).join(format!("headoffice-{VERSION}")));
    Ok(Debs {
        kiosk,
        headoffice,
        version: VERSION.into(),
    })
}
