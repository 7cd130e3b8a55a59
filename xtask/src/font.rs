//! `cargo xtask font`: regenerates the kiosk's bundled UI font, `ui/fonts/*.woff2`.
//!
//! The generated files are committed, so neither the build nor the tests need this (nor the
//! network). Run it when a UI string, the example event or a device message gains a character
//! outside GB2312: the kiosk's font test then names the string whose glyphs are missing.
//! It takes Noto Sans CJK from Debian's `fonts-noto-cjk` (downloaded, unpacked under
//! `target/xtask/font/`, not installed, so the machine stays one without a CJK font) and
//! fontTools with brotli from PyPI in a venv there, then runs `xtask/font/subset.py`.

use crate::sh;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

const FONTTOOLS: &str = "fonttools==4.68.0";
const BROTLI: &str = "brotli==1.2.1";

pub fn font() -> Result<()> {
    crate::ensure_packages(&["python3", "python3-venv"])?;
    let work = Path::new("target/xtask/font");
    std::fs::create_dir_all(work)?;
    let unpacked = work.join("noto");
    let source = unpacked.join("usr/share/fonts/opentype/noto");
    if !source.join("NotoSansCJK-Regular.ttc").exists() {
        let download = || {
            Command::new("apt-get")
                .args(["download", "fonts-noto-cjk"])
                .current_dir(work)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !download() {
            sh(Command::new("apt-get").args(["update", "-qq"]))?;
            if !download() {
                anyhow::bail!("apt-get download fonts-noto-cjk failed");
            }
        }
        let deb = std::fs::read_dir(work)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("fonts-noto-cjk") && n.ends_with(".deb"))
            })
            .context("the downloaded fonts-noto-cjk package")?;
        sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    let venv = work.join("venv");
    if !venv.join("bin/python").exists() {
        sh(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    sh(Command::new(venv.join("bin/pip")).args(["install", "-q", FONTTOOLS, BROTLI]))?;
    sh(Command::new(venv.join("bin/python"))
        .arg("xtask/font/subset.py")
        .arg(&source)
        .arg("ui/fonts")
        .arg("."))?;
    println!(
        "xtask: wrote ui/fonts/ (commit it; ui/fonts/OFL.txt is the licence that goes with it)"
    );
    Ok(())
}
