//! `cargo xtask run|test|bench|lint`: everything a fresh Debian/Ubuntu machine needs, in code.
//!
//! - `test`: installs missing system packages (apt), builds the workspace once, and runs every
//!   test inside a private D-Bus session with an unlocked gnome-keyring, so the tests use the real
//!   Secret Service.
//! - `run`: the same build as `test`, then the whole lifecycle in `./.sealbox-demo/`: head office
//!   serving in the background, an enrolled device, sample registrations, the kiosk window
//!   sending them, both sides' status (see `demo.rs`).
//! - `bench [--quick]`: release-build benchmarks; prints JSON and rewrites `BENCHMARKS.md`.
//! - `lint`: `cargo fmt --check` and `cargo clippy -- -D warnings`.
//! - `dist [--test]`: the kiosk's and head office's .deb packages, in release; `--test` installs
//!   an earlier release (`old_release.rs`) in a fresh Debian root, upgrades it to them, drives the
//!   installed kiosk through WebDriver, and removes them (`package_test.rs`).
//! - `font`: regenerates the kiosk's bundled CJK font subset in `ui/fonts/` (committed).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod bench;
mod demo;
mod dist;
mod font;
mod old_release;
mod package_test;
mod pg;
mod webdriver;

/// Debian packages the build and the tests need.
pub(crate) const BUILD_PACKAGES: &[&str] = &["pkg-config", "libssl-dev", "libdbus-1-dev"];
/// Debian packages for a real Secret Service in a private session.
const KEYRING_PACKAGES: &[&str] = &["dbus-daemon", "gnome-keyring"];
/// Debian packages the Tauri app builds against.
pub(crate) const TAURI_PACKAGES: &[&str] = &[
    "libwebkit2gtk-4.1-dev",
    "libgtk-3-dev",
    "librsvg2-dev",
    "libayatana-appindicator3-dev",
    "libsoup-3.0-dev",
    "libjavascriptcoregtk-4.1-dev",
    "libxdo-dev",
];
/// Debian packages the fault tests use: `faketime` moves a process's clock (retention, wrong
/// device clocks), gcc builds the chmod-refusing shim that stands in for a FAT USB stick.
const FAULT_TEST_PACKAGES: &[&str] = &["faketime", "gcc"];
/// Debian packages to run and drive the real window without a screen.
pub(crate) const WINDOW_TEST_PACKAGES: &[&str] = &[
    "xvfb",
    "xauth",
    "webkit2gtk-driver",
    // The font tests show the window a machine without CJK fonts: DejaVu only, through fontconfig.
    "fontconfig",
    "fonts-dejavu-core",
];
/// Debian packages to open the CRM files in a real spreadsheet program (LibreOffice Calc,
/// headless) in the tests.
const SPREADSHEET_TEST_PACKAGES: &[&str] = &["libreoffice-calc-nogui"];
/// Debian packages to drive head office's console in a real browser (Chromium through
/// chromedriver), with a CJK font for its Chinese pages.
const CONSOLE_TEST_PACKAGES: &[&str] = &["chromium", "chromium-driver", "fonts-wqy-microhei"];
const TAURI_DRIVER_VERSION: &str = "2.1.0";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    forget_cargo_run_env();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("run") => demo::run(),
        Some("bench") => bench::bench(
            args.iter().any(|a| a == "--quick"),
            args.iter()
                .position(|a| a == "--only")
                .and_then(|i| args.get(i + 1))
                .map(String::as_str),
        ),
        Some("lint") => lint(),
        Some("font") => font::font(),
        Some("dist") if args.iter().any(|a| a == "--test") => package_test::dist_and_test(),
        Some("dist") => dist::dist().map(drop),
        Some("__package-test") => package_test::in_session(),
        Some("__headoffice-deb") => {
            let v = dist::version()?;
            dist::headoffice_deb(&v, Path::new(dist::OUT)).map(|p| println!("{}", p.display()))
        }
        Some("__in-keyring-session") => in_keyring_session(&args[1..]),
        Some("__demo") => demo::steps(args.iter().any(|a| a == "--check")),
        Some("__bench-app") => bench::app_bench_in_session(
            Path::new(
                args.get(1)
                    .map(String::as_str)
                    .unwrap_or("target/xtask/bench-app.json"),
            ),
            args.iter().any(|a| a == "--quick"),
        ),
        _ => {
            eprintln!(
                "usage: cargo xtask <run | test | bench [--quick] | lint | dist [--test] | font>"
            );
            std::process::exit(2);
        }
    }
}

/// `cargo xtask` is `cargo run`, which sets the variables of xtask's own package for it. Some build
/// scripts track them (ring's notices `CARGO_MANIFEST_DIR`), so a cargo started from xtask with
/// them would rebuild what a plain `cargo build` built, and back again. Dropped once, at start.
fn forget_cargo_run_env() {
    let own: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            let k = k.to_string_lossy();
            k.starts_with("CARGO_PKG_")
                || matches!(
                    &*k,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                )
        })
        .collect();
    for k in own {
        std::env::remove_var(k);
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command, failing with its name if it does not succeed.
pub(crate) fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn is_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.stdout == b"installed")
        .unwrap_or(false)
}

/// Installs whichever of `pkgs` is missing: `apt-get update` once, then `apt-get install`.
pub(crate) fn ensure_packages(pkgs: &[&str]) -> Result<()> {
    if !Path::new("/usr/bin/dpkg-query").exists() {
        eprintln!("xtask: not a Debian-like system; make sure these are installed: {pkgs:?}");
        return Ok(());
    }
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !is_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false);
    let apt = |args: &[&str]| -> Command {
        let mut c = if is_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    sh(apt(&["update", "-qq"]).stdout(Stdio::null()))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing).stdout(Stdio::null());
    sh(&mut install)
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs `cmd` inside a private D-Bus session with gnome-keyring's Secret Service unlocked, its
/// keyrings kept in `keyring_home` (wiped first when `fresh`).
pub(crate) fn with_keyring(keyring_home: &Path, fresh: bool, cmd: &[String]) -> Result<()> {
    ensure_packages(KEYRING_PACKAGES)?;
    if fresh && keyring_home.exists() {
        std::fs::remove_dir_all(keyring_home)?;
    }
    std::fs::create_dir_all(keyring_home)?;
    // A copy, so a build that relinks xtask meanwhile cannot pull it from under the session.
    let me = Path::new("target/xtask/xtask-session");
    std::fs::create_dir_all("target/xtask")?;
    std::fs::copy(std::env::current_exe()?, me)?;
    let mut c = Command::new("dbus-run-session");
    c.arg("--")
        .arg(me)
        .arg("__in-keyring-session")
        .arg(keyring_home)
        .args(cmd)
        // Without this GTK and friends start accessibility daemons that outlive the session.
        .env("NO_AT_BRIDGE", "1");
    sh(&mut c)
}

fn in_keyring_session(args: &[String]) -> Result<()> {
    let (home, cmd) = args.split_first().context("keyring home")?;
    let Some((prog, rest)) = cmd.split_first() else {
        bail!("no command for the keyring session");
    };
    // gnome-keyring reads the login password from stdin and, with it, creates and unlocks the
    // "login" collection; an empty stdin creates none.
    let mut daemon = Command::new("gnome-keyring-daemon")
        .args(["--daemonize", "--unlock", "--components=secrets"])
        .env("XDG_DATA_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting gnome-keyring-daemon")?;
    {
        use std::io::Write;
        let mut stdin = daemon.stdin.take().context("gnome-keyring stdin")?;
        stdin.write_all(b"sealbox-test-keyring")?;
    }
    let st = daemon.wait()?;
    if !st.success() {
        bail!("gnome-keyring-daemon failed ({st})");
    }
    // A virtual screen for the real window, when asked for.
    let xvfb = if std::env::var_os("SEALBOX_XVFB").is_some() {
        // Xvfb picks a free display itself and writes its number to the given descriptor.
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Xvfb")?;
        let mut line = String::new();
        {
            use std::io::BufRead;
            let out = child.stdout.take().context("Xvfb's output")?;
            std::io::BufReader::new(out).read_line(&mut line)?;
        }
        let number = line.trim();
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            let _ = child.kill();
            bail!("Xvfb did not start (it printed {line:?})");
        }
        std::env::set_var("DISPLAY", format!(":{number}"));
        Some(child)
    } else {
        None
    };
    let (status, mut counts) = run_counting_tests(prog, rest)?;
    let mut code = status.code().unwrap_or(1);
    // A full `cargo xtask test` then tests the packages `dist` built, in the same session.
    if std::env::var_os("SEALBOX_PACKAGE_TEST").is_some() {
        match package_test::in_session() {
            Ok(()) => counts.0 += 1,
            Err(e) => {
                eprintln!("xtask: the package test failed: {e:#}");
                counts.1 += 1;
                code = 1;
            }
        }
    }
    if counts.2 > 0 {
        println!("tests: {} passed, {} failed", counts.0, counts.1);
    }
    if let Some(mut x) = xvfb {
        let _ = x.kill();
        let _ = x.wait();
    }
    std::process::exit(code);
}

/// Where `cargo install` puts tauri-driver (the end-to-end tests look there too).
pub(crate) fn tauri_driver_path() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default()
        .join("bin/tauri-driver")
}

/// `tauri-driver` (WebDriver for Tauri apps), installed with cargo when missing.
pub(crate) fn ensure_tauri_driver() -> Result<()> {
    let installed = tauri_driver_path().exists();
    if !installed {
        eprintln!("xtask: installing tauri-driver {TAURI_DRIVER_VERSION}");
        sh(cargo().args([
            "install",
            "tauri-driver",
            "--locked",
            "--version",
            TAURI_DRIVER_VERSION,
        ]))?;
    }
    Ok(())
}

/// Runs a command, passing its output through; when it is a test run, returns the sums of cargo's
/// "test result" lines (passed, failed, runs), for one plain closing line (`tests: N passed, N failed`).
fn run_counting_tests(
    prog: &str,
    args: &[String],
) -> Result<(std::process::ExitStatus, (u64, u64, u64))> {
    use std::io::{BufRead, Write};
    let mut child = Command::new(prog)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (mut passed, mut failed, mut runs) = (0u64, 0u64, 0u64);
    let out = std::io::stdout();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let mut o = out.lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
        if let Some(rest) = line.strip_prefix("test result: ") {
            let num = |word: &str| {
                rest.split(';')
                    .find_map(|p| {
                        p.trim().strip_suffix(word).map(|n| {
                            n.trim()
                                .rsplit(' ')
                                .next()
                                .unwrap_or("0")
                                .parse::<u64>()
                                .unwrap_or(0)
                        })
                    })
                    .unwrap_or(0)
            };
            passed += num("passed");
            failed += num("failed");
            runs += 1;
        }
    }
    let status = child.wait()?;
    Ok((status, (passed, failed, runs)))
}

fn test(extra: &[String]) -> Result<()> {
    let all: Vec<&str> = [
        BUILD_PACKAGES,
        KEYRING_PACKAGES,
        TAURI_PACKAGES,
        WINDOW_TEST_PACKAGES,
        FAULT_TEST_PACKAGES,
        SPREADSHEET_TEST_PACKAGES,
        CONSOLE_TEST_PACKAGES,
        pg::PG_PACKAGES,
    ]
    .concat();
    ensure_packages(&all)?;
    ensure_tauri_driver()?;
    std::env::set_var("SEALBOX_XVFB", "1");
    build_for_tests_and_demo()?;
    // A full run (no filter) also builds the release packages and, after the tests, installs,
    // upgrades and removes them in a fresh Debian root. SEALBOX_SKIP_PACKAGES=1 leaves that out.
    if extra.is_empty() && std::env::var_os("SEALBOX_SKIP_PACKAGES").is_none() {
        // The earlier release the upgrade starts from, first (cached after one build): its build
        // writes target/release/ too, and the current one must be what is left there.
        old_release::binaries()?;
        dist::dist()?;
        std::env::set_var("SEALBOX_PACKAGE_TEST", "1");
    }
    // Head office's tests run on both backends: the embedded one and this private PostgreSQL,
    // stopped when the run ends (also when it fails).
    let cluster = pg::Cluster::start(Path::new("target/xtask/pg"))?;
    std::env::set_var("SEALBOX_TEST_PG_URL", &cluster.url);
    std::env::set_var("SEALBOX_TEST_PG_BIN", pg::bin_dir()?);
    let keyring = Path::new("target/xtask/keyring-test");
    let mut cmd: Vec<String> = [
        "cargo",
        "test",
        "--workspace",
        "--exclude",
        "xtask",
        "--locked",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cmd.extend(extra.iter().cloned());
    let run = with_keyring(keyring, true, &cmd);
    drop(cluster);
    run
}

/// One build of everything, in the one dev profile, for both `test` and `run`: the same package
/// selection, targets and so the same feature unification, so whichever runs second rebuilds
/// nothing. The tests and the demo run the binaries it makes.
pub(crate) fn build_for_tests_and_demo() -> Result<()> {
    ensure_packages(&[BUILD_PACKAGES, TAURI_PACKAGES].concat())?;
    sh(cargo().args([
        "build",
        "--workspace",
        "--exclude",
        "xtask",
        "--bins",
        "--tests",
        "--benches",
        "--examples",
        "--locked",
    ]))
}

fn lint() -> Result<()> {
    ensure_packages(BUILD_PACKAGES)?;
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))
}
