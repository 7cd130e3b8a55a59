//! `cargo xtask dist`: the two Debian packages, in release.
//!
//! - `sealbox` (the kiosk): `cargo tauri build --bundles deb` with `src-tauri/tauri.dist.json`
//!   merged in: the `sealbox` CLI inside, the desktop entry Tauri writes, and the run-time
//!   dependencies Tauri does not work out itself (OpenSSL for SQLCipher, libdbus and a Secret
//!   Service for the keychain).
//! - `sealbox-headoffice`: a plain dpkg-deb layout written here, with a hardened systemd unit
//!   (`xtask/packaging/headoffice/`).
//!
//! Both link the system OpenSSL (libssl3): Debian 12 and Ubuntu 22.04 onwards have it, and the
//! distribution's security updates then reach SQLCipher too. A package for other distributions (an
//! AppImage, an RPM for an older one) would switch rusqlite to `bundled-sqlcipher-vendored-openssl`
//! (about 3.5 minutes more to build) and then owe its own OpenSSL updates.
//!
//! `cargo xtask dist --test` (and a full `cargo xtask test`) then installs them into a fresh
//! Debian root made by debootstrap, see `package_test`.

use crate::{cargo, ensure_packages, sh};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const TAURI_CLI_VERSION: &str = "^2";
pub const OUT: &str = "target/dist";

/// The packages `dist` made.
pub struct Debs {
    pub kiosk: PathBuf,
    pub headoffice: PathBuf,
    pub version: String,
}

pub fn version() -> Result<String> {
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tauri.conf.json")?)?;
    conf["version"]
        .as_str()
        .map(str::to_string)
        .context("tauri.conf.json's version")
}

fn ensure_tauri_cli() -> Result<()> {
    let has = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["tauri", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has {
        eprintln!("xtask: installing tauri-cli {TAURI_CLI_VERSION} (once)");
        sh(cargo().args([
            "install",
            "tauri-cli",
            "--locked",
            "--version",
            TAURI_CLI_VERSION,
        ]))?;
    }
    Ok(())
}

pub fn dist() -> Result<Debs> {
    ensure_packages(&[crate::BUILD_PACKAGES, crate::TAURI_PACKAGES, &["binutils"]].concat())?;
    ensure_tauri_cli()?;
    let version = version()?;
    std::fs::create_dir_all(OUT)?;
    // The CLI first: the kiosk's package carries it (tauri.dist.json's deb.files).
    sh(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "sealbox-cli",
        "-p",
        "sealbox-headoffice",
    ]))?;
    sh(cargo().args([
        "tauri",
        "build",
        "--bundles",
        "deb",
        "--config",
        "src-tauri/tauri.dist.json",
        "--",
        "--locked",
    ]))?;
    let bundle = Path::new("target/release/bundle/deb");
    let built = std::fs::read_dir(bundle)
        .with_context(|| format!("reading {}", bundle.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|e| e == "deb")
                && p.to_string_lossy().contains(&format!("_{version}_"))
        })
        .context("the kiosk's .deb from cargo tauri build")?;
    // Repacked with its binaries stripped of the release profile's line tables.
    let kiosk = repack(&built, &version, Path::new(OUT), true)?;
    let headoffice = headoffice_deb(&version, Path::new(OUT))?;
    for p in [&kiosk, &headoffice] {
        let size = std::fs::metadata(p)?.len();
        println!("xtask: {} ({:.1} MB)", p.display(), size as f64 / 1e6);
    }
    Ok(Debs {
        kiosk,
        headoffice,
        version,
    })
}

/// Writes `sealbox-headoffice_VERSION_amd64.deb` into `out` from the release binary.
pub fn headoffice_deb(version: &str, out: &Path) -> Result<PathBuf> {
    headoffice_deb_from(Path::new("target/release/sealbox-headoffice"), version, out)
}

/// The same package around another build of the binary (an earlier release's, for the upgrade
/// test): this tree's unit, wrapper, maintainer scripts and control file, the binary's own
/// default config.
pub fn headoffice_deb_from(bin: &Path, version: &str, out: &Path) -> Result<PathBuf> {
    let root = Path::new(OUT).join(format!("headoffice-{version}"));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let put = |rel: &str, text: &[u8], mode: u32| -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().context("parent")?)?;
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let pkg = Path::new("xtask/packaging/headoffice");
    let read = |name: &str| std::fs::read(pkg.join(name)).with_context(|| name.to_string());
    put(
        "usr/bin/sealbox-headoffice",
        &std::fs::read(bin).with_context(|| bin.display().to_string())?,
        0o755,
    )?;
    strip(&root.join("usr/bin/sealbox-headoffice"))?;
    put("usr/lib/sealbox-headoffice/serve", &read("serve")?, 0o755)?;
    put(
        "lib/systemd/system/sealbox-headoffice.service",
        &read("sealbox-headoffice.service")?,
        0o644,
    )?;
    // The config admins edit: the built-in commented example, as a conffile.
    let config = Command::new(bin).arg("default-config").output()?;
    if !config.status.success() {
        bail!("sealbox-headoffice default-config failed");
    }
    put("etc/sealbox-headoffice/config.toml", &config.stdout, 0o644)?;
    put(
        "usr/share/doc/sealbox-headoffice/copyright",
        b"Sealbox head office\nLicense: Apache-2.0\nOn Debian systems, the full text is in /usr/share/common-licenses/Apache-2.0.\n",
        0o644,
    )?;
    let control = String::from_utf8(read("control")?)?.replace("@VERSION@", version);
    let installed_kb = dir_size(&root)? / 1024;
    let control = control.replace("@INSTALLED_KB@", &installed_kb.to_string());
    put("DEBIAN/control", control.as_bytes(), 0o644)?;
    put(
        "DEBIAN/conffiles",
        b"/etc/sealbox-headoffice/config.toml\n",
        0o644,
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        put(&format!("DEBIAN/{script}"), &read(script)?, 0o755)?;
    }
    let deb = out.join(format!("sealbox-headoffice_{version}_amd64.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&deb)
        .stdout(std::process::Stdio::null()))?;
    Ok(deb)
}

/// The release profile keeps line tables (for profiling and benchmarks); a package does not need
/// them: the binaries shrink to about a fifth.
fn strip(bin: &Path) -> Result<()> {
    sh(Command::new("strip").arg("--strip-debug").arg(bin))
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// The same package around other builds of its programs (an earlier release's, for the upgrade
/// test), under another version: `bins` maps a path in the package to the file to put there.
pub fn with_binaries(
    deb: &Path,
    version: &str,
    out: &Path,
    bins: &[(&str, PathBuf)],
) -> Result<PathBuf> {
    repack_with(deb, version, out, true, bins)
}

/// Unpacks a package, sets its version, strips its binaries if asked, and packs it again as
/// `out/NAME_VERSION_amd64.deb` (NAME from the control file).
fn repack(deb: &Path, version: &str, out: &Path, strip_bins: bool) -> Result<PathBuf> {
    repack_with(deb, version, out, strip_bins, &[])
}

fn repack_with(
    deb: &Path,
    version: &str,
    out: &Path,
    strip_bins: bool,
    bins: &[(&str, PathBuf)],
) -> Result<PathBuf> {
    let work = Path::new(OUT).join("repack");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    sh(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&work))?;
    let control = work.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control)?;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("Package: "))
        .context("the package's name")?
        .trim()
        .to_string();
    std::fs::write(&control, text)?;
    for (at, from) in bins {
        let to = work.join(at.trim_start_matches('/'));
        if !to.exists() {
            bail!("{} has no {at} to replace", deb.display());
        }
        std::fs::copy(from, &to).with_context(|| from.display().to_string())?;
    }
    if strip_bins {
        for e in std::fs::read_dir(work.join("usr/bin"))? {
            strip(&e?.path())?;
        }
    }
    let new = out.join(format!("{name}_{version}_amd64.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&work)
        .arg(&new)
        .stdout(std::process::Stdio::null()))?;
    std::fs::remove_dir_all(&work)?;
    Ok(new)
}
