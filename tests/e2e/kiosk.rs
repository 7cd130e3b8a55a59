//! The real kiosk window, driven through WebDriver (`tauri-driver` + WebKitWebDriver) under
//! Xvfb: what a visitor and a manager do, and what is left behind afterwards.

use crate::store::{canary_entry, CANARY_COMPANY, CANARY_EMAIL, CANARY_NAME, CANARY_PHONE};
use fantoccini::{Client, ClientBuilder, Locator};
use sealbox_device::files::KEY_ACCOUNT;
use sealbox_device::KeyStore;
use sealbox_tests::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tauri_driver() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin/tauri-driver");
    assert!(
        p.exists(),
        "tauri-driver is missing: `cargo xtask test` installs it"
    );
    p
}

/// Starts tauri-driver with the kiosk's environment: its data dir, and XDG dirs inside the
/// sandbox so the webview's own storage and cache can be searched afterwards.
/// The webview's own data, cache and config dirs for this sandbox (searched for leftovers).
fn xdg(sb: &Sandbox) -> PathBuf {
    sb.tmp.path().join("xdg")
}

/// What the app and its driver printed.
/// The file the kiosk reads its manager-session clock skew from (milliseconds; debug builds).
fn clock_skew_file(sb: &Sandbox) -> PathBuf {
    sb.tmp.path().join("clock-skew-ms")
}

fn driver_log(sb: &Sandbox) -> PathBuf {
    sb.tmp.path().join("driver.log")
}

/// A fontconfig setup that sees only DejaVu: the window then shows what a fresh machine without
/// any CJK font shows (Debian installs none by default, and some unrelated packages quietly bring
/// one). Checked with `fc-list :lang=zh`, so the glyph check cannot pass on a system font.
fn no_cjk_fontconfig(sb: &Sandbox) -> PathBuf {
    let conf = sb.tmp.path().join("fonts.conf");
    std::fs::write(
        &conf,
        format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE fontconfig SYSTEM \"urn:fontconfig:fonts.dtd\">\n\
             <fontconfig>\n  <dir>/usr/share/fonts/truetype/dejavu</dir>\n  \
             <cachedir>{}</cachedir>\n</fontconfig>\n",
            sb.tmp.path().join("fontconfig-cache").display()
        ),
    )
    .unwrap();
    let fc_list = |pattern: &str| {
        let out = Command::new("fc-list")
            .arg(pattern)
            .env("FONTCONFIG_FILE", &conf)
            .output()
            .expect("fc-list (Debian's fontconfig)");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        fc_list("").contains("DejaVu"),
        "DejaVu is the one font left"
    );
    let zh = fc_list(":lang=zh");
    assert!(
        zh.trim().is_empty(),
        "a CJK font is visible to the window: {zh}"
    );
    conf
}

fn start_driver(sb: &Sandbox) -> Driver {
    let (xdg, log) = (xdg(sb), driver_log(sb));
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "the kiosk test needs a display: run it with `cargo xtask test` (Xvfb)"
    );
    let port = free_port();
    let native = free_port();
    let log = std::fs::File::create(&log).unwrap();
    // Started as if the user allowed core files, in a directory of the sandbox where a core
    // would land: the kiosk must lower the limit itself.
    let cwd = sb.tmp.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut cmd = Command::new(tauri_driver());
    cmd.current_dir(&cwd);
    let child = crate::traces::with_cores_allowed(cmd)
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .args(["--native-driver", "/usr/bin/WebKitWebDriver"])
        .env("SEALBOX_DATA_DIR", &sb.dev)
        .env("XDG_DATA_HOME", xdg.join("data"))
        .env("XDG_CACHE_HOME", xdg.join("cache"))
        .env("XDG_CONFIG_HOME", xdg.join("config"))
        .env("TMPDIR", &sb.tmpdir)
        .env("NO_AT_BRIDGE", "1")
        .env("FONTCONFIG_FILE", no_cjk_fontconfig(sb))
        // The app's own logs at their most verbose, into the driver's log the canary scans read;
        // HOME inside the scanned directories; the manager session's test clock (debug builds).
        .env("SEALBOX_LOG", "trace")
        .env("HOME", xdg.join("home"))
        .env("SEALBOX_TEST_CLOCK_SKEW_FILE", clock_skew_file(sb))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start tauri-driver");
    // Ready means both listen: tauri-driver, and the native WebKitWebDriver it starts and proxies
    // to. A session asked for before the native driver listens fails with hyper's
    // IncompleteMessage (seen under load).
    let deadline = Instant::now() + Duration::from_secs(30);
    for p in [port, native] {
        while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tauri-driver (or its WebKitWebDriver on {native}) did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Driver { child, port }
}

/// tauri-driver and a WebDriver session on the kiosk binary.
async fn session(sb: &Sandbox) -> (Driver, Client) {
    let driver = start_driver(sb);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "tauri:options".into(),
        serde_json::json!({ "application": bin("sealbox-kiosk") }),
    );
    // Under load the proxy can still drop the first request (IncompleteMessage, no session made):
    // ask again a few times before failing.
    let mut attempt = 1;
    loop {
        match ClientBuilder::native()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) if attempt < 4 => {
                eprintln!("WebDriver session, attempt {attempt}: {e}; asking again");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                attempt += 1;
            }
            Err(e) => panic!(
                "no WebDriver session on the kiosk after {attempt} attempts: {e}\n--- driver log:\n{}",
                std::fs::read_to_string(driver_log(sb)).unwrap_or_default()
            ),
        }
    }
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.expect(script)
}

/// Polls a JS expression until it is true.
async fn wait_for(c: &Client, what: &str, expr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if js(c, &format!("return !!({expr});")).await == serde_json::Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let screen = js(c, "return document.body.dataset.screen + ' | ' + location.href + ' | ' + (document.getElementById('fault-text') || {}).textContent + ' | tauri: ' + typeof window.__TAURI__ + ' | pad: ' + document.getElementById('pin-pad').children.length + ' | ready: ' + document.readyState + ' | text: ' + typeof window.SEALBOX_TEXT + ' | scripts: ' + [...document.scripts].map(s => s.src || ('inline ' + s.textContent.length)).join(',') + ' | errors: ' + JSON.stringify(window.SEALBOX_ERRORS);").await;
            if let Ok(png) = c.screenshot().await {
                let _ = std::fs::write(artifacts().join("kiosk-failure.png"), png);
            }
            let probe = tokio::time::timeout(
                Duration::from_secs(10),
                c.execute_async(
                    "const cb = arguments[arguments.length - 1]; window.__TAURI__.core.invoke('kiosk_state').then(r => cb('ok ' + r.screen), e => cb('err ' + JSON.stringify(e)));",
                    vec![],
                ),
            )
            .await;
            panic!("timed out waiting for {what} ({expr}); the screen: {screen}; kiosk_state: {probe:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, name: &str, value: &str) {
    let input = c
        .find(Locator::Css(&format!("input[name=\"{name}\"]")))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// A visitor fills in name and phone, consents, submits, and sees "thank you".
async fn submit_visitor(c: &Client, name: &str, phone: &str) {
    fill(c, "name", name).await;
    fill(c, "phone", phone).await;
    tick(c, "input[name=consent]").await;
    click(c, "#submit").await;
    wait_for(
        c,
        "thank you",
        "!document.getElementById('screen-thanks').hidden",
    )
    .await;
}

/// Ticks a checkbox if it is not ticked yet.
async fn tick(c: &Client, css: &str) {
    let checked = js(
        c,
        &format!("return document.querySelector('{css}').checked;"),
    )
    .await;
    if checked != serde_json::Value::Bool(true) {
        click(c, css).await;
    }
}

async fn visible(c: &Client, id: &str) -> bool {
    js(
        c,
        &format!("return !document.getElementById('{id}').hidden;"),
    )
    .await
        == serde_json::Value::Bool(true)
}

async fn enter_pin(c: &Client, pin: &str) {
    click(c, "#open-pin").await;
    type_pin(c, pin).await;
}

/// Unlocks the manager screens with the right PIN and waits until they show.
async fn unlock_manager(c: &Client) {
    enter_pin(c, PIN).await;
    wait_for(
        c,
        "the manager screen",
        "!document.getElementById('screen-manager').hidden",
    )
    .await;
}

/// Waits until the visitor form is on the page.
async fn wait_for_form(c: &Client) {
    wait_for(
        c,
        "the form",
        "document.querySelector('input[name=\"name\"]')",
    )
    .await;
}

/// Types `pin` on the open (or opening) PIN pad and presses OK.
async fn type_pin(c: &Client, pin: &str) {
    wait_for(
        c,
        "the PIN pad",
        "document.getElementById('pin-dialog').open",
    )
    .await;
    // While the PIN is typed, the dialog shows one dot per digit and never a digit: no text in
    // the dialog and no input's value holds what was typed so far.
    let mut typed = String::new();
    for d in pin.chars() {
        click(c, &format!(".pin-key[data-key=\"{d}\"]")).await;
        typed.push(d);
        let shown = c
            .execute(
                "const typed = arguments[0];
                 const dialog = document.getElementById('pin-dialog');
                 const text = [...dialog.querySelectorAll('*')]
                   .filter(e => !e.classList.contains('pin-key') && !e.closest('.pin-key'))
                   .map(e => [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join(''))
                   .join('|');
                 return { dots: document.getElementById('pin-dots').textContent,
                          digits: /[0-9]/.test(text),
                          value: [...document.querySelectorAll('input')].some(i => i.value !== '' && i.value.includes(typed)),
                          attr: typed.length >= 3 && dialog.outerHTML.replace(/data-key=\"[0-9]\"/g, '').replace(/>[0-9]</g, '><').includes(typed) };",
                vec![serde_json::json!(typed)],
            )
            .await
            .unwrap();
        assert_eq!(
            shown,
            serde_json::json!({"dots": "●".repeat(typed.chars().count()), "digits": false, "value": false, "attr": false}),
            "the PIN pad after {} digits",
            typed.len()
        );
    }
    click(c, "#pin-ok").await;
}

/// Draws, in the page, every character of the text in the DOM and of every UI string (both
/// languages, regular and bold) in the font the page uses, and compares it with a code point no
/// font has: a character that draws nothing, or draws like that one, is a missing glyph (an empty
/// box on screen). The check first proves it can see a missing glyph: "中" in the system's own
/// `sans-serif`, on this machine without a CJK font, must count as missing.
/// (In its own file: the package test runs it on the installed kiosk too.)
const GLYPH_CHECK: &str = include_str!("../support/glyph_check.js");

/// Fails when a character in the DOM or in the UI's strings has no glyph (draws as a box).
async fn assert_glyphs(c: &Client, screen: &str) -> Result<(), String> {
    let r = c
        .execute_async(GLYPH_CHECK, vec![])
        .await
        .map_err(|e| e.to_string())?;
    let checked = r["checked"].as_u64().unwrap_or(0);
    if r.get("error").is_some() || r["missingCount"] != 0 || checked < 100 {
        return Err(format!("glyphs missing on {screen}: {r}"));
    }
    Ok(())
}

/// Saves what the window shows into target/e2e-artifacts/ (the README's screenshots come from
/// there), after letting WebKit paint.
async fn screenshot(c: &Client, name: &str) -> Result<(), String> {
    // Two animation frames: what the page changed last is painted.
    c.execute_async(
        "const done = arguments[arguments.length - 1]; requestAnimationFrame(() => requestAnimationFrame(() => done(null)));",
        vec![],
    )
    .await
    .map_err(|e| e.to_string())?;
    let png = c.screenshot().await.map_err(|e| e.to_string())?;
    std::fs::write(artifacts().join(name), png).map_err(|e| e.to_string())
}

fn artifacts() -> PathBuf {
    let d = workspace().join("target/e2e-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn visitor_and_manager_in_the_real_window() {
    let sb = Sandbox::enrolled();
    let (xdg, driver_log) = (xdg(&sb), driver_log(&sb));
    let (driver, c) = session(&sb).await;

    let outcome = drive(&c).await;
    if outcome.is_err() {
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(artifacts().join("kiosk-failure.png"), png);
        }
    }
    let _ = c.close().await;
    drop(driver);
    if let Err(e) = outcome {
        panic!(
            "{e}\n--- driver log:\n{}",
            std::fs::read_to_string(&driver_log).unwrap_or_default()
        );
    }

    // The CLI, on the same data dir and keychain, sees the three entries.
    assert_eq!(sb.pending(), 3);
    // Nothing of the visitors is left in the data dir, the webview's storage and cache, HOME,
    // the temp dir, or anything the app (tracing at its most verbose) and its driver printed:
    // in UTF-8, JSON-escaped or UTF-16.
    let log = std::fs::read_to_string(&driver_log).unwrap_or_default();
    // Positive controls: the scan reads the app's own output, at trace level, and WebKit's files.
    assert!(
        log.contains("sealbox-kiosk: form ready after"),
        "the driver's log holds the app's stderr"
    );
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the app logged verbosely"
    );
    assert!(
        !files_under(&xdg.join("data")).is_empty(),
        "WebKit wrote files where the scan looks"
    );
    let needles: Vec<(String, Vec<u8>)> = [
        CANARY_NAME,
        CANARY_PHONE,
        CANARY_EMAIL,
        CANARY_COMPANY,
        "Qzcanary",
    ]
    .iter()
    .flat_map(|c| {
        crate::manual::forms(c)
            .into_iter()
            .map(|f| (c.to_string(), f))
    })
    .collect();
    for dir in [&sb.dev, &xdg, &sb.tmpdir, &sb.tmp.path().to_path_buf()] {
        let found = crate::manual::hits(dir, &needles);
        assert!(found.is_empty(), "{found:?}");
    }
}

async fn drive(c: &Client) -> Result<(), String> {
    wait_for_form(c).await;
    // The inputs the issue names, and no memory for the next visitor.
    assert_eq!(
        js(
            c,
            "return document.querySelectorAll('#entry-form button[type=submit]').length;"
        )
        .await,
        1
    );
    assert_eq!(
        js(
            c,
            "return document.querySelectorAll('input[name=consent][type=checkbox]').length;"
        )
        .await,
        1
    );
    assert_eq!(js(c, "return [...document.querySelectorAll('#entry-form input')].every(i => i.getAttribute('autocomplete') === 'off' && i.getAttribute('spellcheck') === 'false');").await, true);
    assert_eq!(
        js(
            c,
            "return document.querySelector('input[name=phone]').type;"
        )
        .await,
        "tel"
    );
    // Every character on the form and in the UI's strings has a glyph, on a machine without a
    // CJK font: the kiosk brings its own.
    assert_glyphs(c, "the form").await?;
    screenshot(c, "kiosk-form.png").await?;

    // Switch language.
    assert_eq!(
        js(c, "return document.getElementById('submit').textContent;").await,
        "提交"
    );
    click(c, "#lang-en").await;
    wait_for(
        c,
        "English",
        "document.getElementById('submit').textContent === 'Submit'",
    )
    .await;
    assert_glyphs(c, "the English form").await?;
    screenshot(c, "kiosk-form-en.png").await?;

    // An invalid entry: the inline error under the phone field, focus moved there.
    fill(c, "name", "Li").await;
    fill(c, "phone", "12345").await;
    click(c, "input[name=consent]").await;
    click(c, "#submit").await;
    wait_for(
        c,
        "the phone error",
        "document.getElementById('err-phone').textContent.length > 0",
    )
    .await;
    let err = js(
        c,
        "return document.getElementById('err-phone').textContent;",
    )
    .await;
    assert!(err.as_str().unwrap().contains("11 digits"), "{err}");
    assert_eq!(js(c, "return document.activeElement.name;").await, "phone");

    // Three valid entries with canary values.
    for i in 0..3 {
        let v: serde_json::Value = serde_json::from_str(&canary_entry(i)).unwrap();
        fill(c, "name", v["name"].as_str().unwrap()).await;
        fill(c, "phone", CANARY_PHONE).await;
        fill(c, "email", CANARY_EMAIL).await;
        fill(c, "company", CANARY_COMPANY).await;
        click(c, "input[name=interest][value=sensors]").await;
        tick(c, "input[name=consent]").await;
        click(c, "#submit").await;
        wait_for(
            c,
            "thank you",
            "!document.getElementById('screen-thanks').hidden",
        )
        .await;
        // The second visitor meets the event's default language (Chinese) again.
        if i == 1 {
            assert_glyphs(c, "the thank-you screen").await?;
            screenshot(c, "kiosk-thanks.png").await?;
        }
        // Nothing of the visitor is in the DOM any more.
        let html = js(c, "return document.documentElement.outerHTML;").await;
        assert!(
            !html.as_str().unwrap().contains("Qzcanary"),
            "the DOM keeps no trace"
        );
        assert!(!html.as_str().unwrap().contains(CANARY_PHONE));
        // The form clears itself (thank_you_seconds), back in the event's default language.
        wait_for(
            c,
            "the form again",
            "!document.getElementById('screen-form').hidden",
        )
        .await;
        assert_eq!(
            js(c, "return document.documentElement.lang;").await,
            "zh-CN"
        );
        let empty = js(c, "return [...document.querySelectorAll('#entry-form input')].every(i => (i.type === 'checkbox' || i.type === 'radio') ? !i.checked : i.value === '');").await;
        assert_eq!(empty, true, "the form is empty for the next visitor");
    }
    wait_for(
        c,
        "3 pending",
        "document.getElementById('status-text').textContent.includes('3')",
    )
    .await;
    assert!(!visible(c, "screen-manager").await);

    // A wrong PIN: refused, still the visitor's screen.
    enter_pin(c, "999999").await;
    wait_for(
        c,
        "the PIN error",
        "document.getElementById('err-pin').textContent.length > 0",
    )
    .await;
    assert!(
        !visible(c, "screen-manager").await,
        "a wrong PIN must not unlock"
    );
    assert_eq!(
        js(c, "return document.getElementById('err-pin').textContent;").await,
        "PIN 不正确",
        "the wrong PIN's own message, in the screen's language"
    );
    assert_eq!(
        js(c, "return document.getElementById('pin-dots').textContent;").await,
        "",
        "no echo of the PIN"
    );
    click(c, "#pin-cancel").await;

    // The right PIN: the manager screens.
    unlock_manager(c).await;
    wait_for(
        c,
        "the counts",
        "document.getElementById('n-pending').textContent === '3'",
    )
    .await;
    wait_for(
        c,
        "the chart",
        "document.querySelectorAll('#chart rect').length === 24",
    )
    .await;
    assert_glyphs(c, "the manager's overview").await?;
    screenshot(c, "kiosk-overview.png").await?;
    click(c, "#tab-entries").await;
    wait_for(
        c,
        "the masked list",
        "document.querySelectorAll('#entries-body tr').length === 3",
    )
    .await;
    let list = js(
        c,
        "return document.getElementById('entries-body').textContent;",
    )
    .await;
    let list = list.as_str().unwrap();
    assert!(list.contains("139****0123"), "{list}");
    assert!(list.contains("传感器"), "choices show their label: {list}");
    assert!(
        !list.contains(CANARY_PHONE) && !list.contains(CANARY_NAME) && !list.contains(CANARY_EMAIL),
        "{list}"
    );
    screenshot(c, "kiosk-manager.png").await?;
    click(c, "#tab-audit").await;
    wait_for(
        c,
        "the audit check",
        "document.getElementById('audit-result').classList.contains('ok')",
    )
    .await;

    // Lock: back to an empty visitor form, and the manager data is gone from the DOM.
    click(c, "#lock").await;
    wait_for(
        c,
        "the visitor form",
        "!document.getElementById('screen-form').hidden",
    )
    .await;
    assert!(!visible(c, "screen-manager").await);
    let html = js(c, "return document.documentElement.outerHTML;").await;
    assert!(
        !html.as_str().unwrap().contains("139****0123"),
        "locking clears the manager's tables"
    );
    // No script error happened on the way.
    assert_eq!(
        js(c, "return window.SEALBOX_ERRORS;").await,
        serde_json::json!([])
    );
    Ok(())
}

/// First run through the window: the enrolment screen takes the file and the new PIN; then a
/// half-filled form left alone asks "Still there?" and wipes itself.
#[tokio::test(flavor = "multi_thread")]
async fn first_run_enrolment_then_idle_wipe_in_the_real_window() {
    let sb = Sandbox::headoffice();
    // An event whose kiosk forgets a half-filled form after 10 s (the shortest allowed).
    sb.create_event("quick-idle", |e| {
        e["kiosk"]["idle_reset_seconds"] = 10.into()
    });
    let enrol = sb.tmp.path().join("kiosk-2.enrol.json");
    sb.ho_ok(&[
        "enroll",
        "--device",
        "kiosk-2",
        "--event",
        "quick-idle",
        "--out",
        enrol.to_str().unwrap(),
    ]);

    let xdg = xdg(&sb);
    let (driver, c) = session(&sb).await;

    wait_for(
        &c,
        "the enrolment screen",
        "document.body.dataset.screen === 'enroll'",
    )
    .await;
    assert!(
        !visible(&c, "screen-form").await,
        "never an empty form before enrolment"
    );
    c.find(Locator::Css("#enroll-file"))
        .await
        .unwrap()
        .send_keys(enrol.to_str().unwrap())
        .await
        .unwrap();
    fill_id(&c, "enroll-pin", "802517").await;
    fill_id(&c, "enroll-pin2", "802517").await;
    click(&c, "#enroll-form button[type=submit]").await;
    wait_for(
        &c,
        "the form after enrolment",
        "document.body.dataset.screen === 'form' && document.querySelector('input[name=\"name\"]')",
    )
    .await;
    assert!(sb.dev.join("device.json").exists());

    // Half-fill the form and leave it.
    fill(&c, "name", "Qzidle Visitor").await;
    wait_for_secs(
        &c,
        "Still there?",
        "document.getElementById('idle-dialog').open",
        20,
    )
    .await;
    wait_for_secs(&c, "the wipe", "!document.getElementById('idle-dialog').open && document.querySelector('input[name=\"name\"]').value === ''", 20).await;
    let html = js(&c, "return document.documentElement.outerHTML;").await;
    assert!(
        !html.as_str().unwrap().contains("Qzidle"),
        "the wiped draft leaves no trace in the DOM"
    );
    assert_eq!(
        js(&c, "return window.SEALBOX_ERRORS;").await,
        serde_json::json!([])
    );
    let _ = c.close().await;
    drop(driver);

    // The PIN set in the window is the device's manager PIN; the idle draft was never stored.
    let list = sb.dev_ok_env(&["list", "--json"], &[("SEALBOX_PIN", "802517")]);
    assert_eq!(list.trim(), "[]");
    assert!(files_containing(&sb.dev, "Qzidle").is_empty());
    assert!(files_containing(&xdg, "Qzidle").is_empty());
}

async fn fill_id(c: &Client, id: &str, value: &str) {
    let input = c.find(Locator::Id(id)).await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn wait_for_secs(c: &Client, what: &str, expr: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if js(c, &format!("return !!({expr});")).await == serde_json::Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(c, what, expr).await;
}

/// The kiosk sends by itself and shows it: online, the count falling to zero, the last receipt
/// in the manager's Send tab, "sync now", and offline once head office is gone.
#[tokio::test(flavor = "multi_thread")]
async fn the_window_shows_sync_state_and_syncs_now() {
    let sb = Sandbox::headoffice();
    let mut server = sealbox_tests::server::HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    let (driver, c) = session(&sb).await;

    wait_for_form(&c).await;
    wait_for(
        &c,
        "online",
        "document.getElementById('online-dot').classList.contains('on')",
    )
    .await;
    submit_visitor(&c, "Qzsync Kiosk", "13911112222").await;
    // The loop looks every few seconds; the count falls to zero on the receipt.
    // The loop sends it by itself: head office holds it, then the count on screen is zero.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sealbox_tests::server::ho_counts(&sb.ho) != (1, 1) {
        assert!(
            Instant::now() < deadline,
            "the kiosk did not send the entry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_secs(
        &c,
        "sent",
        "/^0 /.test(document.getElementById('status-text').textContent)",
        30,
    )
    .await;

    unlock_manager(&c).await;
    click(&c, "#tab-send").await;
    wait_for(
        &c,
        "the last receipt",
        "document.getElementById('send-last').textContent.includes(':')",
    )
    .await;
    let last = js(
        &c,
        "return document.getElementById('send-last').textContent;",
    )
    .await;
    assert_glyphs(&c, "the Send tab").await.unwrap();
    screenshot(&c, "kiosk-send.png").await.unwrap();
    assert!(last.as_str().unwrap().contains("最近回执"), "{last}");
    click(&c, "#sync-now").await;
    wait_for(
        &c,
        "sync started",
        "document.getElementById('send-result').textContent.length > 0",
    )
    .await;
    assert_eq!(
        js(
            &c,
            "return document.getElementById('send-result').textContent;"
        )
        .await,
        "已开始同步，完成后会显示回执时间。"
    );
    click(&c, "#lock").await;

    // Head office goes away: the kiosk says offline, and keeps the next entry.
    server.kill();
    wait_for_secs(
        &c,
        "offline",
        "document.getElementById('online-dot').classList.contains('off')",
        30,
    )
    .await;
    submit_visitor(&c, "Qzsync Offline", "13933334444").await;

    // The manager carries a batch file instead: export, head office imports, receipt back.
    unlock_manager(&c).await;
    click(&c, "#tab-send").await;
    click(&c, "#export-batch").await;
    wait_for(
        &c,
        "the export",
        "document.getElementById('batch-result').textContent.includes('导出 1 条')",
    )
    .await;
    let exports = sb.dev.join("exports");
    let batch = std::fs::read_dir(&exports)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let receipt = sb.tmp.path().join("receipt.json");
    ok(sb.ho_import(&batch, &receipt), &["import"]);
    c.find(Locator::Id("receipt-file"))
        .await
        .unwrap()
        .send_keys(receipt.to_str().unwrap())
        .await
        .unwrap();
    wait_for(
        &c,
        "the receipt applied",
        "document.getElementById('batch-result').textContent.includes('回执已验证：1 条')",
    )
    .await;
    click(&c, "#lock").await;
    assert_eq!(
        js(&c, "return window.SEALBOX_ERRORS;").await,
        serde_json::json!([])
    );
    let _ = c.close().await;
    drop(driver);
    let dev = sealbox_device::Device::open(&sb.dev, &sealbox_device::OsKeychain).unwrap();
    let counts = dev.counts().unwrap();
    assert_eq!((counts.pending, counts.exported, counts.erased), (0, 0, 2));
    assert_eq!(sealbox_tests::server::ho_counts(&sb.ho), (2, 2));
    assert!(
        files_containing(&exports, "Qzsync").is_empty(),
        "the batch file is encrypted"
    );
}

/// The processes whose parent is `pid`: (pid, name).
fn children_of(pid: u32) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            let name = head.split_once('(')?.1.to_string();
            (ppid == pid).then_some((p, name))
        })
        .collect()
}

/// The kiosk process of this sandbox (found by its data dir in its environment).
fn kiosk_pid(sb: &Sandbox) -> u32 {
    let marker = format!("SEALBOX_DATA_DIR={}", sb.dev.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            let exe = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let env = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
            exe.split(|b| *b == 0)
                .next()
                .is_some_and(|a| a.ends_with(b"sealbox-kiosk"))
                && env.split(|b| *b == 0).any(|v| v == marker.as_bytes())
        })
        .expect("the kiosk process")
}

/// A visitor's session in the real window, then crashes: the values a visitor submitted and the
/// one still typed in the form reach neither WebKit's storage and cache directories nor a core
/// file. The scan is shown to work (a planted canary is found; WebKit's own directory is among
/// those scanned), the kiosk and WebKit's processes run with a core limit of 0 though started
/// with cores allowed, and a plain process started the same way does leave a core.
#[tokio::test(flavor = "multi_thread")]
async fn a_visitors_session_leaves_nothing_in_webkit_storage_or_core_files() {
    let sb = Sandbox::enrolled();
    let xdg = xdg(&sb);
    let name = format!("Qzwebkit{}", std::process::id());
    // The scan finds what is there.
    let planted = xdg.join("cache/planted.txt");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, format!("{name}planted")).unwrap();
    assert_eq!(files_containing(&xdg, &name), vec![planted.clone()]);
    std::fs::remove_file(&planted).unwrap();
    let cores = crate::traces::a_core_file_would_catch(
        &sb.tmp.path().join("control"),
        &format!("{name}control"),
    );

    let (driver, c) = session(&sb).await;
    wait_for_form(&c).await;
    submit_visitor(&c, &format!("{name}submitted"), "13911112222").await;
    wait_for(
        &c,
        "the form again",
        "!document.getElementById('screen-form').hidden",
    )
    .await;
    // The next visitor is typing: the value is only in the web process.
    fill(&c, "name", &format!("{name}typed")).await;
    // Whatever a script might try to keep: local storage is off, IndexedDB and cookies stay in
    // the web context, never on disk.
    let probe = c
        .execute_async(
            "const [v, done] = arguments; const r = {};
             try { localStorage.setItem('probe', v); r.local = 'stored'; } catch (e) { r.local = String(e); }
             try { sessionStorage.setItem('probe', v); r.session = 'stored'; } catch (e) { r.session = String(e); }
             document.cookie = 'probe=' + v + '; max-age=86400';
             try {
               const open = indexedDB.open('probe', 1);
               open.onupgradeneeded = () => open.result.createObjectStore('s');
               open.onsuccess = () => { const tx = open.result.transaction('s', 'readwrite');
                 tx.objectStore('s').put(v, 'k'); tx.oncomplete = () => { r.indexeddb = 'stored'; done(r); };
                 tx.onerror = () => { r.indexeddb = 'error'; done(r); }; };
               open.onerror = () => { r.indexeddb = 'refused'; done(r); };
             } catch (e) { r.indexeddb = String(e); done(r); }",
            vec![serde_json::json!(format!("{name}probe"))],
        )
        .await
        .unwrap();
    eprintln!("storage probe: {probe}");
    assert_ne!(probe["local"], "stored", "local storage is off");
    // Time for WebKit to write whatever it writes.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let kiosk = kiosk_pid(&sb);
    let children = children_of(kiosk);
    assert!(
        children
            .iter()
            .any(|(_, n)| n.starts_with("WebKitWebProces")),
        "{children:?}"
    );
    let mut limits = vec![(
        kiosk,
        "sealbox-kiosk".to_string(),
        crate::traces::core_limits(kiosk),
    )];
    for (pid, n) in &children {
        limits.push((*pid, n.clone(), crate::traces::core_limits(*pid)));
    }
    let cwds: Vec<PathBuf> = std::iter::once(kiosk)
        .chain(children.iter().map(|(p, _)| *p))
        .filter_map(|p| std::fs::read_link(format!("/proc/{p}/cwd")).ok())
        .collect();
    // The web process dies holding the typed value; then the app itself.
    for (pid, n) in &children {
        if n.starts_with("WebKitWebProces") {
            crate::traces::abort_and_wait(*pid);
        }
    }
    crate::traces::abort_and_wait(kiosk);
    let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
    drop(driver);

    if cores {
        for dir in &cwds {
            let found = crate::traces::core_files(dir);
            assert!(found.is_empty(), "core files: {found:?}");
        }
    }
    for (pid, n, l) in &limits {
        assert_eq!(
            (l.0.as_str(), l.1.as_str()),
            ("0", "0"),
            "core limit of {n} ({pid})"
        );
    }
    assert!(
        xdg.join("data/com.sealbox.kiosk").is_dir(),
        "WebKit's data directory is among those scanned"
    );
    for dir in [&xdg, &sb.dev, &sb.tmpdir, &sb.tmp.path().to_path_buf()] {
        let hits = files_containing(dir, &name);
        assert!(hits.is_empty(), "{name} found in {hits:?}");
    }
}

/// `cargo xtask run`'s lifecycle, as a person sees it: head office serving in the background, the
/// samples recorded through the CLI, the kiosk window sending them by itself, head office's status
/// showing them arrived and the device's showing them erased. This runs the demo's own code
/// (`xtask __demo --check`, which closes the window once that happened) in a temp demo directory;
/// a demo that stays offline fails here.
#[test]
fn the_demo_runs_the_whole_lifecycle() {
    require_keychain();
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "the demo test needs a display: run it with `cargo xtask test` (Xvfb)"
    );
    let xtask = bin_dir().join("xtask");
    assert!(
        xtask.exists(),
        "target/debug/xtask is missing: run the tests with `cargo xtask test`"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(&xtask)
        .args(["__demo", "--check"])
        .env("SEALBOX_DEMO_DIR", tmp.path().join("demo"))
        .env("XDG_DATA_HOME", tmp.path().join("xdg/data"))
        .env("XDG_CACHE_HOME", tmp.path().join("xdg/cache"))
        .env("XDG_CONFIG_HOME", tmp.path().join("xdg/config"))
        .env("NO_AT_BRIDGE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n--- stderr:\n{stderr}"
    );
    assert!(
        stdout.contains("head office serving https://127.0.0.1:"),
        "{stdout}"
    );
    // The console's address and its demo admin (#15).
    assert!(
        stdout.contains("head office console: https://127.0.0.1:")
            && stdout.contains("sign in as demo / "),
        "{stdout}"
    );
    let delivered = stdout
        .split("== delivered")
        .nth(1)
        .unwrap_or_else(|| panic!("the entries were never delivered:\n{stdout}"));
    // What the terminal printed after delivery: head office's status with the 3 entries, then
    // the device's with none pending and 3 erased.
    let (ho_part, dev_part) = delivered
        .split_once("== sealbox status")
        .expect("the device's status after head office's");
    assert!(ho_part.contains("== sealbox-headoffice status"), "{stdout}");
    assert!(
        ho_part.contains('3'),
        "head office holds the 3 samples: {ho_part}"
    );
    let status: serde_json::Value = {
        let dev = Command::new(bin("sealbox"))
            .args(["--data-dir"])
            .arg(tmp.path().join("demo/device"))
            .args(["status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&dev.stdout).unwrap()
    };
    assert_eq!(
        (&status["pending"], &status["erased"]),
        (&serde_json::json!(0), &serde_json::json!(3)),
        "{status}\n{dev_part}"
    );
    // The samples went in through stdin: no visitor's value in any argv the demo used.
    assert!(!stdout.contains("13800138000") && !stderr.contains("13800138000"));
}

/// Asks the kiosk's visible windows to close the way a window manager does when someone clicks
/// the close button or presses Alt+F4: a `WM_DELETE_WINDOW` client message. Returns how many
/// windows were asked.
fn ask_window_to_close(pid: u32) -> usize {
    use std::os::raw::{c_int, c_uchar, c_uint, c_ulong};
    use x11_dl::xlib;
    let x = xlib::Xlib::open().expect("libX11");
    // SAFETY: plain Xlib calls on a display this function opens and closes; every pointer Xlib
    // returns is checked and freed with XFree.
    unsafe {
        let d = (x.XOpenDisplay)(std::ptr::null());
        assert!(!d.is_null(), "no X display");
        let atom = |name: &std::ffi::CStr| (x.XInternAtom)(d, name.as_ptr(), xlib::False);
        let (pid_atom, protocols, delete) = (
            atom(c"_NET_WM_PID"),
            atom(c"WM_PROTOCOLS"),
            atom(c"WM_DELETE_WINDOW"),
        );
        let mut windows = Vec::new();
        let mut todo = vec![(x.XDefaultRootWindow)(d)];
        while let Some(w) = todo.pop() {
            let (mut root, mut parent) = (0, 0);
            let mut kids: *mut c_ulong = std::ptr::null_mut();
            let mut n: c_uint = 0;
            if (x.XQueryTree)(d, w, &mut root, &mut parent, &mut kids, &mut n) != 0
                && !kids.is_null()
            {
                todo.extend_from_slice(std::slice::from_raw_parts(kids, n as usize));
                (x.XFree)(kids.cast());
            }
            windows.push(w);
        }
        let mut asked = 0;
        for w in windows {
            let (mut ty, mut format, mut items, mut after): (c_ulong, c_int, c_ulong, c_ulong) =
                (0, 0, 0, 0);
            let mut prop: *mut c_uchar = std::ptr::null_mut();
            let ok = (x.XGetWindowProperty)(
                d,
                w,
                pid_atom,
                0,
                1,
                xlib::False,
                xlib::XA_CARDINAL,
                &mut ty,
                &mut format,
                &mut items,
                &mut after,
                &mut prop,
            ) == 0;
            let owner = if ok && items == 1 && !prop.is_null() {
                Some(*(prop as *const c_ulong) as u32)
            } else {
                None
            };
            if !prop.is_null() {
                (x.XFree)(prop.cast());
            }
            if owner != Some(pid) {
                continue;
            }
            let mut attrs: xlib::XWindowAttributes = std::mem::zeroed();
            if (x.XGetWindowAttributes)(d, w, &mut attrs) == 0
                || attrs.map_state != xlib::IsViewable
            {
                continue;
            }
            let (mut list, mut count): (*mut c_ulong, c_int) = (std::ptr::null_mut(), 0);
            let speaks = (x.XGetWMProtocols)(d, w, &mut list, &mut count) != 0
                && !list.is_null()
                && std::slice::from_raw_parts(list, count as usize).contains(&delete);
            if !list.is_null() {
                (x.XFree)(list.cast());
            }
            if !speaks {
                continue;
            }
            let mut ev: xlib::XClientMessageEvent = std::mem::zeroed();
            ev.type_ = xlib::ClientMessage;
            ev.window = w;
            ev.message_type = protocols;
            ev.format = 32;
            ev.data.set_long(0, delete as std::os::raw::c_long);
            ev.data
                .set_long(1, xlib::CurrentTime as std::os::raw::c_long);
            let mut xev = xlib::XEvent { client_message: ev };
            (x.XSendEvent)(d, w, xlib::False, xlib::NoEventMask, &mut xev);
            asked += 1;
        }
        (x.XSync)(d, xlib::False);
        (x.XCloseDisplay)(d);
        asked
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn wait_exit(pid: u32, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The close guard in the real window: the window manager's close (the title bar's ×, Alt+F4)
/// is refused while the kiosk holds a device, and so is "Quit" with a wrong PIN; the right PIN
/// quits the app.
#[tokio::test(flavor = "multi_thread")]
async fn the_window_closes_only_with_the_manager_pin() {
    let sb = Sandbox::enrolled();
    let (driver, c) = session(&sb).await;
    wait_for_form(&c).await;
    let pid = kiosk_pid(&sb);
    js(&c, "window.__sealboxMarker = 42; return null;").await;
    assert!(
        ask_window_to_close(pid) >= 1,
        "the kiosk's window was found"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        alive(pid),
        "a close request without the PIN closed the kiosk"
    );
    assert_eq!(
        js(&c, "return window.__sealboxMarker;").await,
        42,
        "the same page, not a new one"
    );

    unlock_manager(&c).await;
    click(&c, "#quit").await;
    wait_for(
        &c,
        "the quit PIN pad",
        "document.getElementById('pin-title').textContent === '输入 PIN 以退出应用'",
    )
    .await;
    type_pin(&c, "999999").await;
    wait_for(
        &c,
        "the PIN error",
        "document.getElementById('err-pin').textContent === 'PIN 不正确'",
    )
    .await;
    assert!(alive(pid), "a wrong PIN closed the kiosk");
    assert!(ask_window_to_close(pid) >= 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(alive(pid), "a wrong PIN allowed a close");
    for d in PIN.chars() {
        click(&c, &format!(".pin-key[data-key=\"{d}\"]")).await;
    }
    click(&c, "#pin-ok").await;
    assert!(wait_exit(pid, 15), "the right PIN did not quit the kiosk");
    let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
    drop(driver);
}

/// A device whose database key is gone from the keychain opens on its own screen in the real
/// window, never on an empty form that would take entries it cannot store; with nothing to
/// protect on screen, that window may be closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_key_shows_its_own_screen_in_the_real_window() {
    let sb = Sandbox::enrolled();
    sb.add_many(0, 2);
    let before = file_digest(&sb.dev.join("sealbox.db"));
    sealbox_device::OsKeychain
        .delete(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap();
    let (driver, c) = session(&sb).await;
    wait_for(
        &c,
        "the key-lost screen",
        "document.body.dataset.screen === 'fault' && document.getElementById('fault-title').textContent === '数据库密钥丢失'",
    )
    .await;
    assert_eq!(
        js(
            &c,
            "return document.getElementById('screen-form').hidden && document.getElementById('fields').children.length === 0;"
        )
        .await,
        true,
        "no form to type into"
    );
    let next = js(
        &c,
        "return document.getElementById('fault-next').textContent;",
    )
    .await;
    assert!(next.as_str().unwrap().contains("sealbox recover"), "{next}");
    assert!(
        !js(
            &c,
            "return document.getElementById('fault-text').textContent;"
        )
        .await
        .as_str()
        .unwrap()
        .is_empty(),
        "the problem is said"
    );
    // (No screenshot here: WebKitWebDriver's screenshot of this screen never answered.)
    assert_glyphs(&c, "the key-lost screen").await.unwrap();
    let pid = kiosk_pid(&sb);
    assert!(ask_window_to_close(pid) >= 1);
    assert!(
        wait_exit(pid, 15),
        "the key-lost window could not be closed"
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), c.close()).await;
    drop(driver);
    assert_eq!(
        before,
        file_digest(&sb.dev.join("sealbox.db")),
        "the database was left as it was"
    );
}

/// The two-minute lock of the manager screens, on the library's clock (moved forward through
/// the debug build's test clock): open at 1:45 without activity; a tap starts the two minutes
/// again; two minutes after the last activity the window is back on an empty visitor form,
/// the manager's data is gone from the page, and the library refuses the manager's calls.
#[tokio::test(flavor = "multi_thread")]
async fn the_manager_screens_lock_after_two_idle_minutes() {
    let sb = Sandbox::enrolled();
    let skew = clock_skew_file(&sb);
    let set = |ms: u64| std::fs::write(&skew, ms.to_string()).unwrap();
    let (driver, c) = session(&sb).await;
    wait_for_form(&c).await;
    submit_visitor(&c, "Qzlock Visitor", "13911112222").await;
    unlock_manager(&c).await;
    click(&c, "#tab-entries").await;
    wait_for(
        &c,
        "the masked list",
        "document.querySelectorAll('#entries-body tr').length === 1",
    )
    .await;
    // 1:45 without activity: still open (the page asks every second).
    set(105_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        visible(&c, "screen-manager").await,
        "locked before two minutes"
    );
    // A tap on a tab is activity: the two minutes start again.
    click(&c, "#tab-overview").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    set(210_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        visible(&c, "screen-manager").await,
        "activity did not start the two minutes again"
    );
    // Two minutes after that tap: locked.
    set(240_000);
    wait_for_secs(
        &c,
        "the lock",
        "!document.getElementById('screen-form').hidden && document.getElementById('screen-manager').hidden",
        10,
    )
    .await;
    let html = js(&c, "return document.documentElement.outerHTML;").await;
    assert!(
        !html.as_str().unwrap().contains("139****2222"),
        "the manager's list left the page"
    );
    let refused = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.__TAURI__.core.invoke('manager_entries').then(() => done('allowed'), (e) => done(e.code));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused, "locked", "the library locked too");
    let _ = c.close().await;
    drop(driver);
}

/// The lockdown in the real window: a right-click opens no menu, the reload, zoom, print,
/// find and history keys do nothing, a dropped file is not opened, and the page cannot be
/// navigated away from the app (by a script, a link or a new window). Real input where WebDriver
/// gives it (the right-click, the keys); a synthetic drop (WebDriver cannot drag a file from the
/// desktop). Each event is seen by a listener that runs after the app's, which records whether
/// the app refused it.
#[tokio::test(flavor = "multi_thread")]
async fn the_window_is_locked_down() {
    use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_RIGHT};
    let sb = Sandbox::enrolled();
    let (driver, c) = session(&sb).await;
    wait_for_form(&c).await;
    js(
        &c,
        "window.__marker = 7; window.__seen = [];
         for (const t of ['contextmenu', 'keydown', 'drop', 'dragover', 'wheel']) {
           window.addEventListener(t, (e) => window.__seen.push({ type: t, key: e.key || '', ctrl: !!e.ctrlKey, alt: !!e.altKey, prevented: e.defaultPrevented }));
         }
         return null;",
    )
    .await;
    let start = js(&c, "return location.href;").await;

    // A real right-click on the form.
    let right_click = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: None,
            x: 300.0,
            y: 300.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_RIGHT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_RIGHT,
        });
    c.perform_actions(right_click).await.unwrap();

    // Real keys: F5, Ctrl+R, Ctrl+plus (=), Ctrl+minus, Ctrl+0, Ctrl+P, Ctrl+F, Alt+Left.
    const CTRL: char = '\u{E009}';
    const ALT: char = '\u{E00A}';
    const RELEASE: char = '\u{E000}';
    const F5: char = '\u{E035}';
    const LEFT: char = '\u{E012}';
    let name = c.find(Locator::Css("input[name=name]")).await.unwrap();
    for keys in [
        format!("{F5}"),
        format!("{CTRL}r{RELEASE}"),
        format!("{CTRL}+{RELEASE}"),
        format!("{CTRL}-{RELEASE}"),
        format!("{CTRL}0{RELEASE}"),
        format!("{CTRL}p{RELEASE}"),
        format!("{CTRL}f{RELEASE}"),
        format!("{ALT}{LEFT}{RELEASE}"),
    ] {
        name.send_keys(&keys).await.unwrap();
    }
    // A file dropped on the window.
    let dropped = js(
        &c,
        "const dt = new DataTransfer();
         dt.items.add(new File(['x'], 'visitors.csv', { type: 'text/csv' }));
         const over = new DragEvent('dragover', { bubbles: true, cancelable: true, dataTransfer: dt });
         const drop = new DragEvent('drop', { bubbles: true, cancelable: true, dataTransfer: dt });
         const target = document.querySelector('input[name=name]');
         return [target.dispatchEvent(over), target.dispatchEvent(drop)];",
    )
    .await;
    assert_eq!(
        dropped,
        serde_json::json!([false, false]),
        "the app refuses a drag and a drop"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = js(&c, "return window.__seen;").await;
    let seen = seen.as_array().unwrap();
    let got = |kind: &str, key: &str| {
        seen.iter()
            .filter(|e| e["type"] == kind && (key.is_empty() || e["key"].as_str() == Some(key)))
            .collect::<Vec<_>>()
    };
    let menus = got("contextmenu", "");
    assert!(
        !menus.is_empty(),
        "the right-click reached the page: {seen:?}"
    );
    assert!(menus.iter().all(|e| e["prevented"] == true), "{seen:?}");
    // (Ctrl and "+" arrives as "=", the key it is on.)
    for key in ["F5", "r", "=", "-", "0", "p", "f", "ArrowLeft"] {
        let events = got("keydown", key);
        assert!(!events.is_empty(), "{key} reached the page: {seen:?}");
        assert!(
            events.iter().all(|e| e["prevented"] == true),
            "{key} was not refused: {seen:?}"
        );
    }
    assert!(
        js(
            &c,
            "return document.querySelector('input[name=name]').value;"
        )
        .await
        .as_str()
        .unwrap()
        .is_empty(),
        "no key typed into the form"
    );
    assert_eq!(js(&c, "return window.__marker;").await, 7, "no reload");
    assert_eq!(
        js(
            &c,
            "return [window.visualViewport.scale, window.devicePixelRatio];"
        )
        .await,
        serde_json::json!([1, 1]),
        "no zoom"
    );

    // Navigation away: a script, a link, a new window; a file URL.
    for script in [
        "location.href = 'https://example.com/'; return null;",
        "location.assign('file:///etc/hostname'); return null;",
        "const a = document.createElement('a'); a.href = 'https://example.com/'; a.id = 'away'; a.textContent = 'away'; document.body.append(a); return null;",
    ] {
        js(&c, script).await;
    }
    click(&c, "#away").await;
    let opened = js(&c, "return window.open('https://example.com/') === null;").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        js(&c, "return location.href;").await,
        start,
        "still the app"
    );
    assert_eq!(js(&c, "return window.__marker;").await, 7, "the same page");
    let handles = c.windows().await.unwrap();
    assert_eq!(
        handles.len(),
        1,
        "no new window (window.open returned null: {opened})"
    );
    assert_eq!(
        js(&c, "return window.SEALBOX_ERRORS;").await,
        serde_json::json!([])
    );
    let _ = c.close().await;
    drop(driver);
}
