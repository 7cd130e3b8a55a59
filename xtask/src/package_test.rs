//! The packages as a person installs them: into a fresh Debian 12 root made by debootstrap
//! (`target/dist/root-base`, made once; each run works on a fresh copy, deleted when it passes),
//! with `apt-get install ./….deb` inside a chroot, so a run-time dependency the packages forgot to
//! declare fails here instead of being found on the build machine.
//!
//! First an earlier release (`old_release.rs`: device store schema 3, head office's first schema)
//! is installed and used: head office runs as its system user, the way its unit runs it (the
//! `serve` wrapper, the passphrase from a credentials directory, the data under /var/lib, the
//! config from /etc); the installed `sealbox` CLI enrols, records entries on stdin and syncs,
//! against the real Secret Service (gnome-keyring, which the kiosk package pulls in) in a D-Bus
//! session inside the root, and leaves two entries waiting. Both packages are then upgraded to
//! these: no entry lost on either side, both audit chains whole, both stores on the new schema,
//! the waiting entries delivered. The installed kiosk starts under Xvfb and shows its form; then,
//! with tauri-driver and WebKitWebDriver put into the root, it is driven through WebDriver: the
//! glyph check, a visitor through the real form, delivered to the installed head office. Last,
//! both packages are removed (head office's data, the device's data and its keychain entry
//! survive) and head office's purged (it says what it deletes and what it keeps).

use crate::dist::{Debs, OUT};
use crate::old_release;
use crate::{sh, webdriver};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HO_USER: &str = "sealbox-headoffice";
const HO_DATA: &str = "/var/lib/sealbox-headoffice";
const DEVICE: &str = "/root/booth-1";
const PASSPHRASE: &str = "package test passphrase";
const KEYRING_PASSWORD: &str = "package-test-keyring";
const PIN: &str = "246810";

/// Inside a fresh D-Bus session in the root: gnome-keyring's Secret Service, unlocked, and only
/// once it owns its bus name (else the first client's call starts a second, D-Bus-activated
/// daemon that reads the keyring file while the first is writing it).
fn keyring_prelude() -> String {
    format!(
        "printf %s '{KEYRING_PASSWORD}' | gnome-keyring-daemon --daemonize --unlock --components=secrets >/dev/null || exit 1; \
         i=0; until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
         org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; do \
         i=$((i+1)); [ $i -gt 100 ] && {{ echo 'no Secret Service' >&2; exit 1; }}; sleep 0.1; done; "
    )
}

/// A chroot with /proc mounted; unmounted when dropped.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn fresh() -> Result<Root> {
        crate::ensure_packages(&["debootstrap"])?;
        let base = Path::new(OUT).join("root-base");
        if !base.join("etc/debian_version").exists() {
            let t = Instant::now();
            let _ = std::fs::remove_dir_all(&base);
            sh(Command::new("debootstrap")
                .args(["--variant=minbase", "bookworm"])
                .arg(&base)
                .arg("http://deb.debian.org/debian")
                .stdout(Stdio::null()))?;
            println!("xtask: debootstrap took {:.0} s", t.elapsed().as_secs_f64());
        }
        let dir = std::fs::canonicalize(OUT)?.join("root");
        if dir.exists() {
            let _ = Command::new("umount")
                .arg(dir.join("proc"))
                .stderr(Stdio::null())
                .status();
            std::fs::remove_dir_all(&dir)?;
        }
        sh(Command::new("cp").arg("-a").arg(&base).arg(&dir))?;
        std::fs::copy("/etc/resolv.conf", dir.join("etc/resolv.conf"))?;
        sh(Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(dir.join("proc")))?;
        Ok(Root { dir })
    }

    /// A command inside the root, with a clean environment.
    fn cmd(&self, user: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new("chroot");
        if let Some(u) = user {
            c.arg(format!("--userspec={u}:{u}"));
        }
        c.arg(&self.dir).args(["/usr/bin/env", "-i"]);
        c.arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        c.arg("LANG=C.UTF-8");
        c.arg(if user.is_some() {
            format!("HOME={HO_DATA}")
        } else {
            "HOME=/root".into()
        });
        c.args(args);
        c
    }

    /// Runs inside the root; returns stdout, failing with what it printed.
    fn run(&self, user: Option<&str>, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut c = self.cmd(user, args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().with_context(|| format!("{args:?}"))?;
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .context("stdin")?
                .write_all(input.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "in the Debian root, {args:?} failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Head office's command line, as its user, on its data directory.
    fn ho(&self, args: &[&str]) -> Result<String> {
        let pass = format!("SEALBOX_HO_PASSPHRASE={PASSPHRASE}");
        let mut all = vec![
            pass.as_str(),
            "/usr/bin/sealbox-headoffice",
            "--data-dir",
            HO_DATA,
        ];
        all.extend_from_slice(args);
        self.run(Some(HO_USER), &all, None)
    }

    /// The installed device CLI as root, in a D-Bus session with gnome-keyring's Secret Service
    /// unlocked (its keyring kept in the root's home, so it persists from one call to the next).
    fn device(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let script = format!("{}exec \"$@\"", keyring_prelude());
        let pin = format!("SEALBOX_PIN={PIN}");
        let mut all = vec![
            "NO_AT_BRIDGE=1",
            pin.as_str(),
            "dbus-run-session",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
            "/usr/bin/sealbox",
            "--data-dir",
            DEVICE,
        ];
        all.extend_from_slice(args);
        self.run(None, &all, stdin)
    }

    /// Unmounts and deletes the root.
    fn discard(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        let mounts = std::fs::read_to_string("/proc/mounts")?;
        if mounts.contains(&*dir.to_string_lossy()) {
            bail!("{} still has a mount; not removing it", dir.display());
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.join("proc")).status();
    }
}

/// Head office's server as its unit starts it: the `serve` wrapper, as its user, with the
/// passphrase in a credentials directory (what `LoadCredential=` gives it).
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    /// Starts on `listen` (`127.0.0.1:0` the first time; the same address after the upgrade, since
    /// the device's enrolment names it).
    fn start(root: &Root, listen: &str) -> Result<Serve> {
        let creds = "/run/credentials/sealbox-headoffice.service";
        std::fs::create_dir_all(root.path(creds))?;
        std::fs::write(root.path(&format!("{creds}/passphrase")), PASSPHRASE)?;
        sh(&mut root.cmd(
            None,
            &["chown", "-R", &format!("{HO_USER}:{HO_USER}"), creds],
        ))?;
        sh(&mut root.cmd(None, &["chmod", "0400", &format!("{creds}/passphrase")]))?;
        let cred_env = format!("CREDENTIALS_DIRECTORY={creds}");
        let listen_env = format!("SEALBOX_HO_LISTEN={listen}");
        let mut child = root
            .cmd(
                Some(HO_USER),
                &[&cred_env, &listen_env, "/usr/lib/sealbox-headoffice/serve"],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut reader = BufReader::new(child.stdout.take().context("serve's stdout")?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let Some(addr) = line
            .trim()
            .rsplit("https://")
            .next()
            .filter(|a| a.parse::<std::net::SocketAddr>().is_ok())
        else {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            bail!("the installed head office did not start: {line:?} {err}");
        };
        let url = format!("https://{addr}");
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        if let Some(mut e) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = e.read_to_end(&mut sink);
            });
        }
        Ok(Serve { child, url })
    }

    fn stop(mut self) -> Result<()> {
        sh(Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string()))?;
        let st = self.child.wait()?;
        if !st.success() {
            bail!("head office's server did not stop cleanly ({st})");
        }
        Ok(())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The JSON a command printed. A gnome-keyring started by D-Bus activation inside the session
/// may print its variables to the session's stdout first: skipped.
fn json(s: &str) -> Result<serde_json::Value> {
    let from = s.find('{').unwrap_or(0);
    serde_json::from_str(&s[from..]).with_context(|| format!("not JSON: {s}"))
}

fn ho_entries(root: &Root) -> Result<u64> {
    let s = json(&root.ho(&["status", "--json"])?)?;
    Ok(s["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["entries"].as_u64()).sum())
        .unwrap_or(0))
}

fn device_counts(root: &Root) -> Result<(u64, u64)> {
    let s = json(&root.device(&["status", "--json"], None)?)?;
    Ok((
        s["pending"].as_u64().unwrap_or(u64::MAX),
        s["erased"].as_u64().unwrap_or(u64::MAX),
    ))
}

fn check(what: &str, ok: bool) -> Result<()> {
    if !ok {
        bail!("package test: {what}");
    }
    println!("  ok: {what}");
    Ok(())
}

/// Two entries that wait on the device across the upgrade.
const WAITING: &str = concat!(
    r#"{"name":"赵六","phone":"13700001111","consent":true}"#,
    "\n",
    r#"{"name":"Bob Example","phone":"+1 202 555 0143","consent":true}"#,
    "\n",
);

/// The visitor typed into the installed kiosk's form.
const KIOSK_VISITOR: &str = "Qzinstalled Visitor";

/// The schema version a store module of this tree writes (`pub const SCHEMA_VERSION: i64 = N;`).
fn schema_in_source(file: &str) -> Result<i64> {
    std::fs::read_to_string(file)?
        .lines()
        .find_map(|l| l.strip_prefix("pub const SCHEMA_VERSION: i64 = "))
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .with_context(|| format!("SCHEMA_VERSION in {file}"))
}

const SAMPLES: &str = concat!(
    r#"{"name":"王小明","phone":"13800138000","consent":true}"#,
    "\n",
    r#"{"name":"Alice Example","phone":"+44 20 7946 0958","email":"alice@example.com","consent":true}"#,
    "\n",
    r#"{"name":"李华","phone":"139-1234-5678","consent":true}"#,
    "\n",
);

/// Installs an earlier release, uses it, upgrades to these packages, drives the installed kiosk
/// through WebDriver, then removes and purges, in a fresh Debian root.
pub fn package_test(debs: &Debs) -> Result<()> {
    let started = Instant::now();
    let root = Root::fresh()?;
    println!(
        "== packages in a fresh Debian 12 root ({})",
        root.dir.display()
    );
    let debs_in_root = root.path("/tmp/debs");
    std::fs::create_dir_all(&debs_in_root)?;
    let old = old_release::debs(debs, &debs_in_root)?;
    for d in [&debs.kiosk, &debs.headoffice] {
        std::fs::copy(d, debs_in_root.join(d.file_name().context("name")?))?;
    }
    let in_root = |p: &Path| {
        format!(
            "/tmp/debs/{}",
            p.file_name().unwrap_or_default().to_string_lossy()
        )
    };
    std::fs::copy(
        "examples/trade-show.json",
        root.path("/tmp/trade-show.json"),
    )?;

    let apt = |args: &[&str]| -> Result<String> {
        let mut all = vec!["DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y"];
        all.extend_from_slice(args);
        root.run(None, &all, None)
    };
    apt(&["update"])?;

    // The earlier release (device store schema 3, head office's first schema), installed and used.
    let t = Instant::now();
    apt(&[
        "install",
        "--no-install-recommends",
        &in_root(&old.headoffice),
        &in_root(&old.kiosk),
    ])?;
    println!(
        "  apt-get install of the earlier release ({}): {:.0} s",
        old.version,
        t.elapsed().as_secs_f64()
    );
    // Head office, as its user: init, the event, then serve the way the unit does.
    root.ho(&["init"])?;
    root.ho(&["event", "create", "/tmp/trade-show.json"])?;
    check(
        "head office's data is under /var/lib, its config under /etc",
        root.path(&format!("{HO_DATA}/identity.age")).exists()
            && std::fs::read_link(root.path(&format!("{HO_DATA}/config.toml")))
                .map(|l| l == Path::new("/etc/sealbox-headoffice/config.toml"))
                .unwrap_or(false),
    )?;
    let serve = Serve::start(&root, "127.0.0.1:0")?;
    let addr = serve.url.trim_start_matches("https://").to_string();
    let enrol = format!("{HO_DATA}/booth-1.enrol.json");
    root.ho(&[
        "enroll",
        "--device",
        "booth-1",
        "--event",
        "trade-show-2026",
        "--url",
        &serve.url,
        "--out",
        &enrol,
    ])?;
    root.run(None, &["mv", &enrol, "/root/booth-1.enrol.json"], None)?;
    // The earlier CLI: enrol, three entries on stdin, sync; two more wait on the device.
    root.device(&["enroll", "/root/booth-1.enrol.json", "--shred"], None)?;
    root.device(&["pin", "set"], None)?;
    root.device(&["add", "--ndjson", "-"], Some(SAMPLES))?;
    root.device(&["sync"], None)?;
    check(
        "the earlier release delivered 3 entries and erased them",
        device_counts(&root)? == (0, 3) && ho_entries(&root)? == 3,
    )?;
    root.device(&["add", "--ndjson", "-"], Some(WAITING))?;
    let audit_rows = ho_audit_rows(&root)?;
    let old_status = json(&root.device(&["status", "--json"], None)?)?;
    serve.stop()?;
    let ho_db = root.path(&format!("{HO_DATA}/headoffice.db"));
    check(
        "the earlier release wrote these stores: head office's file has its first, unnumbered schema, the device's status knows no schema field",
        sqlite_user_version(&ho_db)? == 0 && old_status.get("schema").is_none(),
    )?;

    // The upgrade: both packages at once, head office stopped (as its unit's prerm would not,
    // but a planned upgrade does).
    let t = Instant::now();
    apt(&["install", &in_root(&debs.headoffice), &in_root(&debs.kiosk)])?;
    println!(
        "  apt-get upgrade from {} to {}: {:.0} s",
        old.version,
        debs.version,
        t.elapsed().as_secs_f64()
    );
    let versions = root.run(
        None,
        &[
            "dpkg-query",
            "-W",
            "-f=${Package} ${Version}\n",
            "sealbox",
            "sealbox-headoffice",
        ],
        None,
    )?;
    check(
        &format!(
            "both packages upgraded from {} to {}",
            old.version, debs.version
        ),
        versions
            .lines()
            .filter(|l| l.ends_with(&format!(" {}", debs.version)))
            .count()
            == 2,
    )?;
    let files = root.run(None, &["dpkg", "-L", "sealbox"], None)?;
    check(
        "the kiosk package holds the app, the sealbox CLI and a desktop entry",
        files.contains("/usr/bin/sealbox-kiosk")
            && files.lines().any(|l| l == "/usr/bin/sealbox")
            && files.contains(".desktop"),
    )?;
    let passwd = std::fs::read_to_string(root.path("/etc/passwd"))?;
    check(
        "head office has its own system user with no login shell",
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("{HO_USER}:")) && l.ends_with("/usr/sbin/nologin")),
    )?;
    let ho = json(&root.ho(&["status", "--json"])?)?;
    let dev = json(&root.device(&["status", "--json"], None)?)?;
    let (dev_schema, ho_schema) = (
        schema_in_source("crates/device/src/store/mod.rs")?,
        schema_in_source("crates/headoffice/src/store/sqlite.rs")?,
    );
    check(
        &format!(
            "after the upgrade both stores report the new schema (device {} from {}, head office {} from {})",
            dev["schema"],
            old_release::DEVICE_SCHEMA,
            ho["schema"],
            old_release::HO_SCHEMA
        ),
        dev["schema"] == dev_schema
            && ho["schema"] == ho_schema
            && dev_schema > old_release::DEVICE_SCHEMA
            && ho_schema > old_release::HO_SCHEMA,
    )?;
    check(
        "head office's database file now carries the new schema number",
        sqlite_user_version(&ho_db)? == ho_schema,
    )?;
    check(
        "no entry is lost: 3 at head office, 2 waiting and 3 erased on the device",
        ho_entries(&root)? == 3 && device_counts(&root)? == (2, 3),
    )?;
    let rows = ho_audit_rows(&root)?;
    check(
        &format!("head office's audit chain is whole across the upgrade ({audit_rows} rows before, {rows} after)"),
        rows >= audit_rows,
    )?;
    let dev_audit = json(&root.device(&["audit", "verify", "--json"], None)?)?;
    check(
        "the device's audit chain is whole across the upgrade",
        dev_audit["broken_at"].is_null(),
    )?;

    // The upgraded kiosk starts under Xvfb with only what its package declared, and draws its
    // form (before any test tool is installed in the root).
    kiosk_starts(&root)?;
    // Head office's upgraded server on the address the device was enrolled with; the waiting
    // entries go first, through the CLI.
    let serve = Serve::start(&root, &addr)?;
    root.device(&["sync"], None)?;
    check(
        "the upgraded pair delivers the 2 entries that waited across the upgrade",
        ho_entries(&root)? == 5 && device_counts(&root)? == (0, 5),
    )?;
    // A visitor through the installed kiosk's real form, driven through WebDriver inside the
    // root, delivered to the installed head office.
    drive_installed_kiosk(&root)?;
    check(
        "the visitor typed into the kiosk reached head office and was erased on the device",
        ho_entries(&root)? == 6 && device_counts(&root)? == (0, 6),
    )?;
    let csv = format!("{HO_DATA}/package-test-export.csv");
    root.ho(&[
        "export",
        "--event",
        "trade-show-2026",
        "--format",
        "csv",
        "--out",
        &csv,
        "--unmasked",
    ])?;
    let exported = std::fs::read_to_string(root.path(&csv))?;
    std::fs::remove_file(root.path(&csv))?;
    check(
        "head office's CRM export holds the name typed into the kiosk",
        exported.contains(KIOSK_VISITOR),
    )?;
    serve.stop()?;

    // Removal keeps every piece of data; purge says what it deletes.
    apt(&["remove", "sealbox", "sealbox-headoffice"])?;
    check(
        "removal took the programs away",
        !root.path("/usr/bin/sealbox").exists()
            && !root.path("/usr/bin/sealbox-headoffice").exists(),
    )?;
    let keyrings = root.path("/root/.local/share/keyrings");
    check(
        "removal kept head office's data, the device's data and its keychain entry",
        root.path(&format!("{HO_DATA}/headoffice.db")).exists()
            && root.path(&format!("{DEVICE}/device.json")).exists()
            && std::fs::read_dir(&keyrings)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .any(|e| e.file_name().to_string_lossy().ends_with(".keyring"))
                })
                .unwrap_or(false),
    )?;
    let purge = apt(&["purge", "sealbox-headoffice"])?;
    check(
        "purge says what it deletes and keeps, deletes /etc/sealbox-headoffice, keeps the data",
        purge.contains("purge deletes /etc/sealbox-headoffice")
            && purge.contains("keeps /var/lib/sealbox-headoffice")
            && !root.path("/etc/sealbox-headoffice").exists()
            && root.path(&format!("{HO_DATA}/headoffice.db")).exists(),
    )?;
    println!(
        "== packages: the earlier release installed and used, upgraded, the kiosk driven, removed and purged in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // Passed: the root goes (about 1 GB); a failed run leaves it to look into.
    root.discard()
}

/// `PRAGMA user_version` of a plain SQLite file, from its header (bytes 60-63, big-endian), so the
/// test reads it without any program of either release.
fn sqlite_user_version(path: &Path) -> Result<i64> {
    let mut header = [0u8; 64];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .with_context(|| path.display().to_string())?;
    if !header.starts_with(b"SQLite format 3\0") {
        bail!("{} is not a plain SQLite file", path.display());
    }
    Ok(i64::from(u32::from_be_bytes([
        header[60], header[61], header[62], header[63],
    ])))
}

/// The rows `audit verify` found whole at head office (it fails on a broken chain).
fn ho_audit_rows(root: &Root) -> Result<u64> {
    let out = root.ho(&["audit", "verify"])?;
    out.split_whitespace()
        .find_map(|w| w.parse::<u64>().ok())
        .with_context(|| format!("audit verify said {out:?}"))
}

/// Starts the installed kiosk under the session's Xvfb (reached through its abstract socket) and
/// waits for it to report its form drawn.
fn kiosk_starts(root: &Root) -> Result<()> {
    let Some(display) = std::env::var_os("DISPLAY") else {
        bail!("the package test needs a display (it runs under Xvfb in `cargo xtask test`)");
    };
    let display = format!("DISPLAY={}", display.to_string_lossy());
    let data = format!("SEALBOX_DATA_DIR={DEVICE}");
    let script = format!("{}exec /usr/bin/sealbox-kiosk", keyring_prelude());
    let mut child = root
        .cmd(
            None,
            &[
                &display,
                &data,
                "NO_AT_BRIDGE=1",
                "dbus-run-session",
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let stderr = child.stderr.take().context("the kiosk's stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut ready = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                ready = line.contains("form ready");
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(st)) = child.try_wait() {
                    bail!("the installed kiosk exited ({st}): {}", seen.join("\n"));
                }
            }
            Err(_) => break,
        }
    }
    // The whole process group: dbus-run-session, the app and its web processes.
    let _ = Command::new("kill")
        .args(["-TERM", "--"])
        .arg(format!("-{}", child.id()))
        .status();
    let _ = child.wait();
    check(
        &format!(
            "the installed kiosk starts under Xvfb and draws its form ({})",
            seen.last().map(String::as_str).unwrap_or("no output")
        ),
        ready,
    )
}

/// The installed kiosk through WebDriver inside the root: tauri-driver (the host's binary, which
/// needs only libc and libgcc) and Debian's WebKitWebDriver installed in the root as test tools,
/// after the kiosk has shown it starts without them. The kiosk runs as its package installed it,
/// on the device enrolled above, with the keychain in a D-Bus session of its own; the test checks
/// that no CJK font is installed, that every character on the form has a glyph (the kiosk's own
/// font), enters a visitor through the real form, and waits until head office holds the entry.
fn drive_installed_kiosk(root: &Root) -> Result<()> {
    let Some(display) = std::env::var_os("DISPLAY") else {
        bail!("the package test needs a display (it runs under Xvfb in `cargo xtask test`)");
    };
    let t = Instant::now();
    crate::ensure_tauri_driver()?;
    let driver = crate::tauri_driver_path();
    std::fs::copy(&driver, root.path("/usr/local/bin/tauri-driver"))
        .with_context(|| format!("copying {}", driver.display()))?;
    let apt = |args: &[&str]| -> Result<String> {
        let mut all = vec!["DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y"];
        all.extend_from_slice(args);
        root.run(None, &all, None)
    };
    apt(&[
        "install",
        "--no-install-recommends",
        "webkit2gtk-driver",
        "fontconfig",
    ])?;
    let zh = root.run(None, &["fc-list", ":lang=zh"], None)?;
    check(
        "the root has no CJK font (fc-list :lang=zh is empty)",
        zh.trim().is_empty(),
    )?;
    println!(
        "  WebDriver tools in the root: {:.0} s",
        t.elapsed().as_secs_f64()
    );

    let free_port = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let (port, native) = (free_port()?, free_port()?);
    let script = format!(
        "{}exec /usr/local/bin/tauri-driver --port {port} --native-port {native} --native-driver /usr/bin/WebKitWebDriver",
        keyring_prelude()
    );
    let display = format!("DISPLAY={}", display.to_string_lossy());
    let data = format!("SEALBOX_DATA_DIR={DEVICE}");
    let failure_png = Path::new(OUT).join("installed-kiosk-failure.png");
    let _ = std::fs::remove_file(&failure_png);
    let log_path = std::fs::canonicalize(OUT)?.join("installed-kiosk.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = root
        .cmd(
            None,
            &[
                &display,
                &data,
                "NO_AT_BRIDGE=1",
                "dbus-run-session",
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let outcome = (|| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for p in [port, native] {
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                if let Ok(Some(st)) = child.try_wait() {
                    bail!("tauri-driver in the root exited ({st})");
                }
                if Instant::now() > deadline {
                    bail!("tauri-driver (or its WebKitWebDriver on {native}) did not listen in the root");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let s = webdriver::Session::new(port, "/usr/bin/sealbox-kiosk")?;
        let driven = drive_form(&s);
        if driven.is_err() {
            if let Ok(png) = s.screenshot() {
                let _ = std::fs::write(&failure_png, png);
            }
        }
        let _ = s.close();
        driven
    })();
    // The whole process group: dbus-run-session, gnome-keyring, the drivers, the app.
    let _ = Command::new("kill")
        .args(["-TERM", "--"])
        .arg(format!("-{}", child.id()))
        .status();
    let _ = child.wait();
    outcome.map_err(|e| {
        e.context(format!(
            "driving the installed kiosk (its log: {})",
            log_path.display()
        ))
    })
}

/// On the installed kiosk's form: glyphs, then one visitor, then the wait for delivery.
fn drive_form(s: &webdriver::Session) -> Result<()> {
    s.wait_for("the form", "document.querySelector('input[name=\"name\"]')")?;
    let glyphs = s.js_async(GLYPH_CHECK)?;
    check(
        &format!(
            "every character on the installed kiosk's form has a glyph ({} checked)",
            glyphs["checked"]
        ),
        glyphs.get("error").is_none()
            && glyphs["missingCount"] == 0
            && glyphs["checked"].as_u64().unwrap_or(0) >= 100,
    )
    .with_context(|| format!("the glyph check said {glyphs}"))?;
    s.fill("input[name=\"name\"]", KIOSK_VISITOR)?;
    s.fill("input[name=\"phone\"]", "13912345678")?;
    if s.js("return document.querySelector('input[name=consent]').checked;")? != true {
        s.click("input[name=consent]")?;
    }
    s.click("#submit")?;
    s.wait_for(
        "thank you",
        "!document.getElementById('screen-thanks').hidden",
    )?;
    check("a visitor entered through the installed kiosk's form", true)?;
    // The kiosk sends on its own: its status line (what the window shows) goes back to online
    // and 0 waiting once head office's receipt is in and the entry erased.
    const STATUS: &str = "const done = arguments[arguments.length - 1]; \
        window.__TAURI__.core.invoke('status_line').then(s => done(s), e => done({ error: String(e) }));";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = s.js_async(STATUS)?;
        if st["pending"] == 0 && st["sync"]["online"] == true {
            break;
        }
        if Instant::now() > deadline {
            bail!("the installed kiosk did not deliver the visitor within 60 s (its status: {st})");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// The end-to-end tests' glyph check (see tests/e2e/kiosk.rs).
const GLYPH_CHECK: &str = include_str!("../../tests/support/glyph_check.js");

/// `cargo xtask dist --test`: build, then test the packages inside a keyring session with Xvfb.
pub fn dist_and_test() -> Result<()> {
    old_release::binaries()?;
    crate::dist::dist()?;
    std::env::set_var("SEALBOX_XVFB", "1");
    crate::with_keyring(
        Path::new("target/xtask/keyring-dist"),
        true,
        &["target/xtask/xtask-session".into(), "__package-test".into()],
    )
}

/// Inside the session: the packages `dist` left in target/dist.
pub fn in_session() -> Result<()> {
    let version = {
        let conf: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string("tauri.conf.json")?)?;
        conf["version"].as_str().unwrap_or("0.0.0").to_string()
    };
    let debs = Debs {
        kiosk: Path::new(OUT).join(format!("sealbox_{version}_amd64.deb")),
        headoffice: Path::new(OUT).join(format!("sealbox-headoffice_{version}_amd64.deb")),
        version,
    };
    package_test(&debs)
}
