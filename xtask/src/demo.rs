//! `cargo xtask run`: the whole lifecycle on one machine, in `./.sealbox-demo/`.
//!
//! A head office (created once, its `serve` started in the background and stopped when the demo
//! ends), a device enrolled from it, three sample registrations recorded through the `sealbox`
//! CLI (values on its stdin, never in argv), then the kiosk window on that device. The kiosk's
//! own sync loop sends the entries; the terminal prints head office's `status` once they have
//! arrived and the device's `status` showing them erased, then a line each time more arrive
//! (visitors typed into the window). Closing the window stops head office.
//!
//! `__demo --check` (what the end-to-end test runs, in its keyring session and under Xvfb) does
//! the same, closes the window once the samples have arrived and been erased, and fails if they do
//! not within a minute: a demo that stays offline goes red. `SEALBOX_DEMO_DIR` moves the demo.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEMO: &str = ".sealbox-demo";
const DEMO_PASSPHRASE: &str = "sealbox-demo-passphrase";
/// The console's demo admin (an approver) and password.
const DEMO_ADMIN: &str = "demo";
const DEMO_ADMIN_PASSWORD: &str = "demo console password";
pub(crate) const DEMO_PIN: &str = "246810";
/// How long `--check` waits for the samples to reach head office and be erased.
const CHECK_TIMEOUT: Duration = Duration::from_secs(90);

/// The demo's sample visitors, one JSON object a line (`sealbox add --ndjson -`).
const SAMPLES: &str = concat!(
    r#"{"name":"王小明","phone":"13800138000","company":"示例科技","interest":"sensors","consent":true}"#,
    "\n",
    r#"{"name":"Alice Example","phone":"+44 20 7946 0958","email":"alice@example.com","consent":true}"#,
    "\n",
    r#"{"name":"李华","phone":"139-1234-5678","interest":"software","consent":true}"#,
    "\n",
);
const SAMPLE_COUNT: u64 = 3;

/// `cargo xtask run`: build (the same build as `cargo xtask test`), then the demo, inside a
/// private keyring session when there is no desktop session.
pub fn run() -> Result<()> {
    crate::build_for_tests_and_demo()?;
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        eprintln!("xtask: no D-Bus session here: using a demo keyring in {DEMO}/keyring");
        return crate::with_keyring(
            &demo_dir().join("keyring"),
            false,
            &["target/xtask/xtask-session".into(), "__demo".into()],
        );
    }
    steps(false)
}

fn demo_dir() -> PathBuf {
    std::env::var_os("SEALBOX_DEMO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEMO))
}

fn bin(name: &str) -> PathBuf {
    Path::new("target/debug").join(name)
}

/// A command's stdout, failing with its stderr.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Head office's `serve`, in the background; stopped when dropped.
struct Serve {
    child: Child,
    url: String,
    /// The console's address, when serve started it.
    console: Option<String>,
}

impl Serve {
    fn start(ho: &dyn Fn(&[&str]) -> Command, listen: &str, log: &Path) -> Result<Serve> {
        let log = std::fs::File::create(log)?;
        let mut child = dies_with_demo(&mut ho(&[
            "serve",
            "--listen",
            listen,
            "--console-listen",
            "127.0.0.1:0",
        ]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting sealbox-headoffice serve")?;
        let mut reader = BufReader::new(child.stdout.take().context("serve's output")?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let Some(addr) = line
            .trim()
            .rsplit("https://")
            .next()
            .filter(|a| a.parse::<std::net::SocketAddr>().is_ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("head office's serve did not start on {listen} (see its log)");
        };
        let url = format!("https://{addr}");
        // The next line says where the console listens (or why it did not start).
        let mut next = String::new();
        reader.read_line(&mut next)?;
        let console = next
            .trim()
            .strip_prefix("sealbox-headoffice console on ")
            .map(str::to_string);
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Ok(Serve {
            child,
            url,
            console,
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGTERM: serve finishes what it is doing and stops.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child gets SIGTERM when the demo's process dies, however it dies (Ctrl-C reaches the whole
/// process group anyway; this covers a kill of the demo alone), so no head office outlives it.
fn dies_with_demo(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// What the terminal shows of both sides, and what `--check` compares.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Counts {
    pending: u64,
    exported: u64,
    erased: u64,
    /// Entries head office holds from this device.
    arrived: u64,
}

/// Called inside the keyring session (by `run`, or by the end-to-end test with `--check`).
pub fn steps(check: bool) -> Result<()> {
    let demo = demo_dir();
    let ho_dir = demo.join("headoffice");
    let dev_dir = demo.join("device");
    let addr_file = demo.join("headoffice.addr");
    let pass = std::env::var("SEALBOX_HO_PASSPHRASE").unwrap_or_else(|_| DEMO_PASSPHRASE.into());
    let ho = |args: &[&str]| {
        let mut c = Command::new(bin("sealbox-headoffice"));
        c.arg("--data-dir")
            .arg(&ho_dir)
            .args(args)
            .env("SEALBOX_HO_PASSPHRASE", &pass);
        c
    };
    let dev = |args: &[&str]| {
        let mut c = Command::new(bin("sealbox"));
        c.arg("--data-dir")
            .arg(&dev_dir)
            .args(args)
            .env("SEALBOX_PIN", DEMO_PIN);
        c
    };
    std::fs::create_dir_all(&demo)?;
    if !ho_dir.join("identity.age").exists() {
        println!(
            "== head office in {} (demo passphrase: {pass})",
            ho_dir.display()
        );
        crate::sh(&mut ho(&["init"]))?;
        crate::sh(&mut ho(&["event", "create", "examples/trade-show.json"]))?;
        let _ = std::fs::remove_file(&addr_file);
    }
    // A demo admin for the console (also in a demo made before the console existed).
    let admin_marker = demo.join("console-admin");
    if !admin_marker.exists() {
        crate::sh(
            ho(&["admin", "add", DEMO_ADMIN, "--role", "approver"])
                .env("SEALBOX_HO_ADMIN_PASSWORD", DEMO_ADMIN_PASSWORD)
                .stdout(Stdio::null()),
        )?;
        std::fs::write(&admin_marker, DEMO_ADMIN)?;
    }
    // Head office listens where the device was told to look; a new demo takes a free port.
    let listen = std::fs::read_to_string(&addr_file)
        .map(|a| a.trim().to_string())
        .unwrap_or_else(|_| "127.0.0.1:0".into());
    let serve = Serve::start(&ho, &listen, &demo.join("headoffice.log"))?;
    println!(
        "== head office serving {} in the background (log: {})",
        serve.url,
        demo.join("headoffice.log").display()
    );
    if let Some(console) = &serve.console {
        println!(
            "== head office console: {console}  (sign in as {DEMO_ADMIN} / {DEMO_ADMIN_PASSWORD}; the browser warns about the demo's own certificate authority, {})",
            ho_dir.join("ca.pem").display()
        );
    }
    if !dev_dir.join("device.json").exists() || !addr_file.exists() {
        let enrol = demo.join("enrolment.json");
        let _ = std::fs::remove_file(&enrol);
        let _ = std::fs::remove_dir_all(&dev_dir);
        let name = format!("demo-kiosk-{}", std::process::id());
        crate::sh(&mut ho(&[
            "enroll",
            "--device",
            &name,
            "--event",
            "trade-show-2026",
            "--url",
            &serve.url,
            "--out",
            &enrol.display().to_string(),
        ]))?;
        crate::sh(&mut dev(&[
            "enroll",
            &enrol.display().to_string(),
            "--shred",
        ]))?;
        crate::sh(&mut dev(&["pin", "set"]))?;
        std::fs::write(&addr_file, serve.url.trim_start_matches("https://"))?;
        println!("== demo manager PIN: {DEMO_PIN}");
    }

    println!(
        "== recording {SAMPLE_COUNT} sample registrations through the CLI (sealbox add --ndjson -)"
    );
    let mut add = dev(&["add", "--ndjson", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting sealbox add")?;
    add.stdin
        .take()
        .context("sealbox add's stdin")?
        .write_all(SAMPLES.as_bytes())?;
    let st = add.wait()?;
    if !st.success() {
        bail!("sealbox add failed ({st})");
    }
    let device_name = device_name(&dev)?;
    let before = counts(&ho, &dev, &device_name)?;
    println!(
        "== sealbox status: {} waiting for head office",
        before.pending
    );
    crate::sh(&mut dev(&["status"]))?;

    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !has_display {
        if check {
            bail!("--check needs a display (Xvfb)");
        }
        println!(
            "\nThere is no display here, so the kiosk window cannot open (GTK needs a screen).\n\
             The CLI sends the entries instead (`sealbox sync`). To see the window on a virtual\n\
             screen: apt-get install xvfb && xvfb-run -a cargo xtask run\n\
             (`cargo xtask test` drives the window under Xvfb by itself)."
        );
        crate::sh(&mut dev(&["sync"]))?;
        print_both(&ho, &dev)?;
        return Ok(());
    }
    println!(
        "\n== opening the kiosk window, full screen. It sends the entries to head office by itself.\n   \
         Manager PIN {DEMO_PIN}: the lock icon opens the manager screens; closing the app needs the PIN too (退出应用 / Quit app)."
    );
    let mut kiosk = dies_with_demo(&mut Command::new(bin("sealbox-kiosk")))
        .env("SEALBOX_DATA_DIR", &dev_dir)
        .env("NO_AT_BRIDGE", "1")
        .stdin(Stdio::null())
        .spawn()
        .context("starting the kiosk")?;
    let result = watch(&ho, &dev, &device_name, before, &mut kiosk, check);
    if check || result.is_err() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(kiosk.id().to_string())
            .status();
    }
    let _ = kiosk.wait();
    result?;
    println!("\n== the window is closed; head office stops.");
    drop(serve);
    Ok(())
}

/// Watches both sides while the window is open: prints head office's and the device's status once
/// the samples have arrived and been erased, then a line whenever the counts change.
fn watch(
    ho: &dyn Fn(&[&str]) -> Command,
    dev: &dyn Fn(&[&str]) -> Command,
    device_name: &str,
    before: Counts,
    kiosk: &mut Child,
    check: bool,
) -> Result<()> {
    let started = Instant::now();
    let mut delivered = false;
    let mut last = before;
    loop {
        if let Some(st) = kiosk.try_wait()? {
            if check {
                bail!("the kiosk window closed by itself ({st})");
            }
            return Ok(());
        }
        let now = counts(ho, dev, device_name)?;
        if !delivered
            && now.pending == 0
            && now.erased >= before.erased + before.pending
            && now.arrived >= now.erased
        {
            delivered = true;
            println!(
                "\n== delivered in {:.1} s: head office holds them, the device has erased its copy",
                started.elapsed().as_secs_f64()
            );
            print_both(ho, dev)?;
            if check {
                return Ok(());
            }
            println!(
                "\n== watching: visitors typed into the window follow within seconds (close the window to stop)"
            );
        } else if delivered && now != last {
            println!(
                "   device: {} pending, {} erased · head office: {} from this kiosk",
                now.pending, now.erased, now.arrived
            );
        }
        last = now;
        if !delivered && started.elapsed() > CHECK_TIMEOUT {
            let log =
                std::fs::read_to_string(demo_dir().join("headoffice.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "the demo stayed offline: after {} s the device still has {} pending, {} erased, and head office holds {} from it (head office's log ends: {:?})",
                CHECK_TIMEOUT.as_secs(),
                now.pending,
                now.erased,
                now.arrived,
                tail
            );
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
}

fn print_both(ho: &dyn Fn(&[&str]) -> Command, dev: &dyn Fn(&[&str]) -> Command) -> Result<()> {
    println!("== sealbox-headoffice status");
    crate::sh(&mut ho(&["status"]))?;
    println!("== sealbox status");
    crate::sh(&mut dev(&["status"]))
}

fn device_name(dev: &dyn Fn(&[&str]) -> Command) -> Result<String> {
    let s: Value = serde_json::from_str(&output(&mut dev(&["status", "--json"]))?)?;
    s["device"]
        .as_str()
        .map(str::to_string)
        .context("the device's name in `sealbox status --json`")
}

fn counts(
    ho: &dyn Fn(&[&str]) -> Command,
    dev: &dyn Fn(&[&str]) -> Command,
    device_name: &str,
) -> Result<Counts> {
    let d: Value = serde_json::from_str(&output(&mut dev(&["status", "--json"]))?)?;
    let h: Value = serde_json::from_str(&output(&mut ho(&["status", "--json"]))?)?;
    let arrived = h["devices"]
        .as_array()
        .and_then(|ds| ds.iter().find(|x| x["name"] == device_name))
        .and_then(|x| x["entries"].as_u64())
        .unwrap_or(0);
    let n = |k: &str| d[k].as_u64().unwrap_or(0);
    Ok(Counts {
        pending: n("pending"),
        exported: n("exported"),
        erased: n("erased"),
        arrived,
    })
}
