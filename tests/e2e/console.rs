//! The head office console (issue #15) in a real browser: Debian's Chromium driven through
//! chromedriver (WebDriver) against a real `sealbox-headoffice serve`, with a real device.
//!
//! Chromium runs headless with `--no-sandbox`: the tests (and CI) run as root, where Chromium's
//! sandbox refuses to start, and the only pages it loads are the console on 127.0.0.1 and one
//! cross-site page the test writes itself. Making a non-root user for the browser would add
//! setup to every machine for no gain against content we control.
//!
//! Screenshots of every page in both languages land in `target/e2e-artifacts/console-*.png`.

use fantoccini::{Client, ClientBuilder, Locator};
use sealbox_device::{Device, OsKeychain};
use sealbox_tests::*;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ALICE: (&str, &str) = ("alice", "alice's long password");
const BOB: (&str, &str) = ("bob", "bob's long password!");
const VERA: (&str, &str) = ("vera", "vera's long password");
/// What the device's entries hold (from `add_many`): none of it may be in a page.
const PERSONAL: [&str; 3] = ["Qzsync Visitor", "1390000000", "13900000001"];
const EVENT_CANARY: &str =
    "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">Canary Fair";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve` with its console; returns the process, the sync URL and the console URL.
fn serve(sb: &Sandbox) -> (Running, String, String) {
    let port = free_port();
    let sync_url = format!("https://127.0.0.1:{port}");
    let log = std::fs::File::create(sb.tmp.path().join("serve.log")).unwrap();
    let mut child = Command::new(bin("sealbox-headoffice"))
        .arg("--data-dir")
        .arg(&sb.ho)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--console-listen", "127.0.0.1:0"])
        .env("SEALBOX_HO_PASSPHRASE", PASSPHRASE)
        .env("SEALBOX_HO_PUBLIC_URL", &sync_url)
        .env("TMPDIR", &sb.tmpdir)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut console = None;
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if let Some(u) = line.trim().strip_prefix("sealbox-headoffice console on ") {
            console = Some(u.to_string());
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    let console = console.expect("serve prints the console's address");
    (Running(child), sync_url, console)
}

fn admin_add(sb: &Sandbox, (name, password): (&str, &str), role: &str) {
    let out = sb
        .ho_cmd(&["admin", "add", name, "--role", role])
        .env("SEALBOX_HO_ADMIN_PASSWORD", password)
        .output()
        .unwrap();
    ok(out, &["admin", "add"]);
}

fn artifacts() -> PathBuf {
    let d = workspace().join("target/e2e-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn browser(sb: &Sandbox) -> (Running, Client) {
    let port = free_port();
    let log = std::fs::File::create(sb.tmp.path().join("chromedriver.log")).unwrap();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .env("TMPDIR", &sb.tmpdir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("chromedriver (cargo xtask test installs chromium-driver)");
    let driver = Running(driver);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = sb.tmp.path().join("chromium-profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1100",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    // The console's certificate is signed by head office's own CA, which this throwaway profile
    // does not know; the same server is checked against that CA by reqwest below.
    caps.insert("acceptInsecureCerts".into(), true.into());
    let c = ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session on Chromium");
    (driver, c)
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.expect(script)
}

async fn js_async(c: &Client, script: &str, args: Vec<serde_json::Value>) -> serde_json::Value {
    c.execute_async(script, args).await.expect(script)
}

/// Every page's HTML the test saw, checked for personal data at the end.
#[derive(Default)]
struct Seen(Vec<(String, String)>);

impl Seen {
    async fn record(&mut self, c: &Client) {
        let url = c.current_url().await.unwrap().to_string();
        let html = c.source().await.unwrap();
        self.0.push((url, html));
    }
}

async fn goto(c: &Client, seen: &mut Seen, url: &str) {
    c.goto(url).await.unwrap();
    seen.record(c).await;
}

async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap(),
        Err(e) => {
            let body = js(c, "return document.body ? document.body.innerText : '';").await;
            if let Ok(png) = c.screenshot().await {
                let _ = std::fs::write(artifacts().join("console-failure.png"), png);
            }
            panic!("{css}: {e}; the page says: {body}")
        }
    }
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks what sends a form, and waits for the next page to have loaded.
async fn submit(c: &Client, css: &str) {
    js(c, "window.__before_submit = true; return 0;").await;
    click(c, css).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = c
            .execute(
                "return !window.__before_submit && document.readyState === 'complete';",
                vec![],
            )
            .await
            .unwrap_or(serde_json::Value::Bool(false));
        if done == serde_json::Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "no page after {css}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(c: &Client, seen: &mut Seen, base: &str, (name, password): (&str, &str)) {
    goto(c, seen, &format!("{base}/login")).await;
    fill(c, "#name", name).await;
    fill(c, "#password", password).await;
    submit(c, "#sign-in").await;
    seen.record(c).await;
    let who = text_of(c, "#who").await;
    assert!(who.starts_with(name), "signed in as {name}: {who}");
}

async fn sign_out(c: &Client) {
    submit(c, "header form button").await;
}

async fn shot(c: &Client, name: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(artifacts().join(format!("console-{name}.png")), png).unwrap();
}

/// The waiting count the devices page shows for `device`.
async fn waiting(c: &Client, seen: &mut Seen, base: &str, device: &str) -> String {
    goto(c, seen, &format!("{base}/devices")).await;
    text_of(c, &format!("tr[data-device='{device}'] td.waiting")).await
}

fn status(sb: &Sandbox) -> serde_json::Value {
    serde_json::from_str(&sb.ho_ok(&["status", "--json"])).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser() {
    let sb = Sandbox::headoffice();
    admin_add(&sb, ALICE, "operator");
    admin_add(&sb, BOB, "approver");
    admin_add(&sb, VERA, "viewer");
    let (_serve, _sync_url, base) = serve(&sb);
    let (_driver, c) = browser(&sb).await;
    let mut seen = Seen::default();

    // Sign-in, in Chinese first.
    c.goto(&format!("{base}/lang/zh?back=/login"))
        .await
        .unwrap();
    seen.record(&c).await;
    shot(&c, "login-zh").await;
    sign_in(&c, &mut seen, &base, ALICE).await;
    assert_eq!(text_of(&c, "h1").await, "概览");

    // An event from a JSON upload: first with a mistake, located as the command line locates it.
    goto(&c, &mut seen, &format!("{base}/events")).await;
    let mut event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("examples/trade-show.json")).unwrap(),
    )
    .unwrap();
    event["id"] = "canary-fair".into();
    event["name"]["en"] = EVENT_CANARY.into();
    event["name"]["zh"] = EVENT_CANARY.into();
    let mut broken = event.clone();
    broken["fields"][1]
        .as_object_mut()
        .unwrap()
        .remove("purpose");
    c.execute(
        "document.getElementById('event-json').value = arguments[0];",
        vec![broken.to_string().into()],
    )
    .await
    .unwrap();
    submit(&c, "#event-submit").await;
    seen.record(&c).await;
    let err = text_of(&c, "#event-error").await;
    assert!(err.contains("fields[1]"), "located: {err}");
    c.execute(
        "document.getElementById('event-json').value = arguments[0];",
        vec![event.to_string().into()],
    )
    .await
    .unwrap();
    submit(&c, "#event-submit").await;
    seen.record(&c).await;
    assert!(text_of(&c, "#event-created").await.contains("canary-fair"));
    // The canary is text, not markup.
    let shown = js(
        &c,
        "return [...document.querySelectorAll('td.event-name')].map(e => e.textContent).join('|');",
    )
    .await;
    assert!(shown.as_str().unwrap().contains(EVENT_CANARY), "{shown}");
    assert_eq!(
        js(
            &c,
            "return document.querySelectorAll('main script, main img').length;"
        )
        .await,
        0
    );
    goto(&c, &mut seen, &format!("{base}/overview")).await;
    assert!(text_of(&c, "main")
        .await
        .contains("<script>window.__pwned=1</script>"));
    assert_eq!(
        js(&c, "return document.querySelectorAll('main script, main img').length + (window.__pwned ? 100 : 0);").await,
        0
    );

    // Enrol a device: the file downloads once, with the warning that it is secret.
    goto(&c, &mut seen, &format!("{base}/devices")).await;
    fill(&c, "#device-name", "<script>window.__pwned=3</script>").await;
    submit(&c, "#enrol-submit").await;
    seen.record(&c).await;
    assert!(!text_of(&c, "#enrol-error").await.is_empty());
    assert_eq!(
        js(
            &c,
            "return document.querySelectorAll('main script').length + (window.__pwned ? 100 : 0);"
        )
        .await,
        0
    );
    fill(&c, "#device-name", "booth-1").await;
    c.execute(
        "document.getElementById('device-event').value = 'trade-show-2026';",
        vec![],
    )
    .await
    .unwrap();
    submit(&c, "#enrol-submit").await;
    seen.record(&c).await;
    assert!(text_of(&c, "#enrolled").await.contains("机密"));
    shot(&c, "enrolled-zh").await;
    let fetch_link = "const cb = arguments[arguments.length - 1];
        fetch(document.getElementById('enrolment-download').href)
          .then(r => r.text().then(t => cb([r.status, r.headers.get('content-disposition'), t])))
          .catch(e => cb([0, String(e), '']));";
    let first = js_async(&c, fetch_link, vec![]).await;
    assert_eq!(first[0], 200);
    assert!(first[1].as_str().unwrap().contains("attachment"));
    let enrolment = first[2].as_str().unwrap().to_string();
    assert!(enrolment.contains("device_token"));
    let again = js_async(&c, fetch_link, vec![]).await;
    assert!(
        !again[2].as_str().unwrap().contains("device_token"),
        "the enrolment file downloads once"
    );
    let file = sb.tmp.path().join("booth-1.enrol.json");
    std::fs::write(&file, enrolment).unwrap();
    sb.dev_ok(&["enroll", file.to_str().unwrap(), "--shred"]);
    sb.dev_ok_env(&["pin", "set"], &[("SEALBOX_PIN", PIN)]);

    // The device reports, then syncs: the waiting count changes on the page.
    assert_eq!(waiting(&c, &mut seen, &base, "booth-1").await, "-");
    sb.add_many(0, 3);
    // The blocking HTTPS client has a runtime of its own: off the test's async threads.
    tokio::task::block_in_place(|| {
        let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let client = dev.sync_client(Duration::from_secs(10)).unwrap();
        assert!(dev.send_health(&client, None).unwrap());
    });
    assert_eq!(waiting(&c, &mut seen, &base, "booth-1").await, "3");
    sb.dev_ok(&["sync"]);
    assert_eq!(waiting(&c, &mut seen, &base, "booth-1").await, "0");
    shot(&c, "devices-after-sync-zh").await;

    // A POST without the token is refused; a cross-site form does not even carry the session.
    let refused = js_async(
        &c,
        "const cb = arguments[arguments.length - 1];
         fetch('/devices/revoke', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'csrf=forged&name=booth-1'})
           .then(r => cb(r.status)).catch(e => cb(String(e)));",
        vec![],
    )
    .await;
    assert_eq!(refused, 403);
    let missing = js_async(
        &c,
        "const cb = arguments[arguments.length - 1];
         fetch('/devices/revoke', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'name=booth-1'})
           .then(r => cb(r.status)).catch(e => cb(String(e)));",
        vec![],
    )
    .await;
    assert!(missing.as_u64().is_some_and(|s| s >= 400), "{missing}");
    let attacker = sb.tmp.path().join("attacker.html");
    std::fs::write(
        &attacker,
        format!(
            "<html><body><form method='post' action='{base}/devices/revoke'>\
             <input name='csrf' value='guess'><input name='name' value='booth-1'></form>\
             <script>document.forms[0].submit()</script></body></html>"
        ),
    )
    .unwrap();
    c.goto(&format!("file://{}", attacker.display()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(&sb)["devices"][0]["revoked"], false);

    // Revoke, with a confirmation; the device's next sync is refused.
    goto(&c, &mut seen, &format!("{base}/devices")).await;
    submit(&c, "tr[data-device='booth-1'] a.revoke").await;
    seen.record(&c).await;
    shot(&c, "revoke-confirm-zh").await;
    submit(&c, "#revoke-confirm").await;
    seen.record(&c).await;
    assert!(text_of(&c, "#revoked").await.contains("booth-1"));
    assert_eq!(status(&sb)["devices"][0]["revoked"], true);
    sb.add_many(3, 1);
    let err = sb.dev_fail(&["sync"], &[]);
    assert!(
        err.contains("401") || err.to_lowercase().contains("revoked") || err.contains("吊销"),
        "{err}"
    );

    // An unmasked export: asked by alice, approved by bob (not by herself), downloaded once.
    goto(&c, &mut seen, &format!("{base}/exports")).await;
    c.execute(
        "document.querySelector('#export-request select[name=event]').value = 'trade-show-2026';",
        vec![],
    )
    .await
    .unwrap();
    fill(&c, "#export-reason", "CRM import after the fair").await;
    submit(&c, "#export-request-submit").await;
    seen.record(&c).await;
    assert!(!text_of(&c, "#requested").await.is_empty());
    assert_eq!(
        js(
            &c,
            "return document.querySelectorAll('button.approve').length;"
        )
        .await,
        0,
        "nobody approves their own request"
    );
    let first_row =
        "return document.querySelector('#export-requests tr[data-request]').dataset.request;";
    let alices = js(&c, first_row).await.as_str().unwrap().to_string();
    sign_out(&c).await;
    sign_in(&c, &mut seen, &base, BOB).await;
    goto(&c, &mut seen, &format!("{base}/exports")).await;
    // Bob's own request: no button for it, and a POST deciding it is refused.
    fill(&c, "#export-reason", "my own").await;
    submit(&c, "#export-request-submit").await;
    let bobs = js(&c, first_row).await.as_str().unwrap().to_string();
    assert_ne!(bobs, alices);
    assert_eq!(
        js(&c, &format!("return document.querySelectorAll(\"tr[data-request='{bobs}'] button.approve\").length;")).await,
        0
    );
    let own = js_async(
        &c,
        "const cb = arguments[arguments.length - 1];
         const csrf = document.querySelector('input[name=csrf]').value;
         fetch('/exports/decide', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'},
                body: 'csrf=' + csrf + '&id=' + arguments[0] + '&decision=approved'})
           .then(r => r.text()).then(cb).catch(e => cb(String(e)));",
        vec![bobs.clone().into()],
    )
    .await;
    assert!(
        own.as_str().unwrap().contains("不能审批自己的申请"),
        "own approval refused"
    );
    submit(&c, &format!("tr[data-request='{alices}'] button.approve")).await;
    seen.record(&c).await;
    assert!(!text_of(&c, "#decided").await.is_empty());
    sign_out(&c).await;
    sign_in(&c, &mut seen, &base, ALICE).await;
    goto(&c, &mut seen, &format!("{base}/exports")).await;
    let download = "const cb = arguments[arguments.length - 1];
        const f = document.querySelector('form.download');
        if (!f) { cb([0, 'no download form', '']); return; }
        f.querySelector('input[name=passphrase]').value = arguments[0];
        fetch(f.action, {method: 'POST', body: new URLSearchParams(new FormData(f))})
          .then(r => r.text().then(t => cb([r.status, r.headers.get('content-disposition'), t])))
          .catch(e => cb([0, String(e), '']));";
    let got = js_async(&c, download, vec![PASSPHRASE.into()]).await;
    assert_eq!(
        got[0],
        200,
        "{got} {}",
        js(&c, "return document.body.innerText;").await
    );
    assert!(got[1].as_str().unwrap().contains("unmasked"));
    let csv = got[2].as_str().unwrap();
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let names: Vec<String> = rows
        .records()
        .map(|r| {
            r.unwrap()
                .iter()
                .find(|v| v.starts_with("Qzsync Visitor"))
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), 3, "{csv}");
    for i in 0..3 {
        assert!(names.contains(&format!("Qzsync Visitor {i}")), "{names:?}");
    }
    goto(&c, &mut seen, &format!("{base}/exports")).await;
    // Again, straight to the server (the page no longer offers it).
    let twice = js_async(
        &c,
        "const cb = arguments[arguments.length - 1];
         const csrf = document.querySelector('input[name=csrf]').value;
         fetch('/exports/download', {method: 'POST', headers: {'content-type': 'application/x-www-form-urlencoded'},
                body: 'csrf=' + csrf + '&id=' + arguments[0] + '&passphrase=' + encodeURIComponent(arguments[1])})
           .then(r => r.text().then(t => cb([r.status, r.headers.get('content-disposition'), t])))
           .catch(e => cb([0, String(e), '']));",
        vec![alices.clone().into(), PASSPHRASE.into()],
    )
    .await;
    assert!(twice[1].is_null(), "one download only: {}", twice[1]);
    assert!(!twice[2].as_str().unwrap().contains("Qzsync Visitor"));

    // A deletion request: the phone typed is never shown back.
    goto(&c, &mut seen, &format!("{base}/forget")).await;
    fill(&c, "#forget-subject", "13900000001").await;
    fill(&c, "#forget-passphrase", PASSPHRASE).await;
    submit(&c, "#forget button").await;
    seen.record(&c).await;
    shot(&c, "forget-confirm-zh").await;
    // The count comes before the confirmation, and nothing is deleted yet.
    let count = text_of(&c, "#forget-count").await;
    assert!(count.contains(" 1 条"), "{count}");
    assert_eq!(status(&sb)["events"][1]["deleted"], 0);
    fill(&c, "#forget-confirm input[name=passphrase]", PASSPHRASE).await;
    submit(&c, "#forget-confirm button").await;
    seen.record(&c).await;
    assert!(text_of(&c, "#forgotten").await.contains('1'));
    assert_eq!(status(&sb)["events"][1]["deleted"], 1);

    // The audit log verifies and names the admins.
    goto(&c, &mut seen, &format!("{base}/audit")).await;
    assert!(text_of(&c, "#chain").await.contains("审计链完好"));
    let log = text_of(&c, "#audit").await;
    for needle in [
        "console.export_decided",
        "\"admin\":\"bob\"",
        "console.device_revoked",
        "\"admin\":\"alice\"",
    ] {
        assert!(log.contains(needle), "{needle}");
    }

    // Every page in both languages, as screenshots.
    for lang in ["zh", "en"] {
        c.goto(&format!("{base}/lang/{lang}?back=/overview"))
            .await
            .unwrap();
        for page in [
            "overview",
            "devices",
            "events",
            "events/preview/trade-show-2026",
            "exports",
            "forget",
            "audit",
        ] {
            goto(&c, &mut seen, &format!("{base}/{page}")).await;
            shot(&c, &format!("{}-{lang}", page.replace('/', "-"))).await;
        }
    }
    assert_eq!(text_of(&c, "h1").await, "Audit log");
    sign_out(&c).await;
    goto(&c, &mut seen, &format!("{base}/login")).await;
    shot(&c, "login-en").await;

    // A viewer sees counts, and no export, deletion or enrolment.
    sign_in(&c, &mut seen, &base, VERA).await;
    goto(&c, &mut seen, &format!("{base}/devices")).await;
    assert_eq!(
        js(
            &c,
            "return document.querySelectorAll('#enrol, a.revoke').length;"
        )
        .await,
        0
    );
    for page in ["exports", "forget"] {
        goto(&c, &mut seen, &format!("{base}/{page}")).await;
        assert_eq!(text_of(&c, "h1").await, "Not allowed");
    }
    sign_out(&c).await;

    // No page carried personal data.
    assert!(seen.0.len() > 30, "{}", seen.0.len());
    for (url, html) in &seen.0 {
        for p in PERSONAL {
            assert!(!html.contains(p), "{url} shows {p}");
        }
    }
    let _ = c.close().await;

    tokio::task::block_in_place(|| sign_in_limits(&sb, &base));
}

/// Five wrong passwords for one account: the right one is refused too, for a while.
fn sign_in_limits(sb: &Sandbox, base: &str) {
    let http = ho_client(&sb.ho);
    let pre = || {
        let r = http.get(format!("{base}/login")).send().unwrap();
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with("sbx_pre="))
            .unwrap();
        let v = cookie
            .trim_start_matches("sbx_pre=")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert!(
            cookie.contains("Secure")
                && cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
        );
        v
    };
    let try_once = |password: &str| {
        let token = pre();
        http.post(format!("{base}/login"))
            .header("cookie", format!("sbx_pre={token}"))
            .form(&[
                ("csrf", token.as_str()),
                ("name", BOB.0),
                ("password", password),
            ])
            .send()
            .unwrap()
    };
    // The right password works, and sets the session cookie as it should.
    let r = try_once(BOB.1);
    assert_eq!(r.status().as_u16(), 303);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("sbx_session="))
        .unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(attr), "{session}");
    }
    for _ in 0..5 {
        assert_eq!(try_once("wrong password").status().as_u16(), 401);
    }
    assert_eq!(try_once(BOB.1).status().as_u16(), 429);
}

/// Signs in without a browser; returns the Cookie header of the session.
fn session_cookie(
    http: &reqwest::blocking::Client,
    base: &str,
    (name, password): (&str, &str),
) -> String {
    let r = http.get(format!("{base}/login")).send().unwrap();
    let pre = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find_map(|v| {
            v.strip_prefix("sbx_pre=")
                .map(|v| v.split(';').next().unwrap().to_string())
        })
        .unwrap();
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", format!("sbx_pre={pre}"))
        .form(&[
            ("csrf", pre.as_str()),
            ("name", name),
            ("password", password),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("sbx_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The time a page takes with 100 devices (each with a health report) and 100,000 entries
/// (stored straight into head office's tables: sealed blobs the pages never open). Printed, and
/// held under a generous bound.
#[test]
fn pages_with_100_devices_and_100000_entries() {
    let sb = Sandbox::headoffice();
    admin_add(&sb, ALICE, "operator");
    let now = sealbox_headoffice::now_ms();
    {
        let mut conn = sealbox_headoffice::db::open(&sb.ho.join("headoffice.db")).unwrap();
        sealbox_headoffice::console::store::migrate(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        for d in 0..100 {
            let name = format!("booth-{d:03}");
            tx.execute(
                "INSERT INTO devices (name, event_id, token_sha256, verifying_key, enrolled_at_ms)
                 VALUES (?1, 'trade-show-2026', ?2, 'unused', ?3)",
                rusqlite::params![name, format!("{d:064}"), now],
            )
            .unwrap();
            let report = sealbox_protocol::health::HealthReport {
                format: sealbox_protocol::health::HEALTH_FORMAT.into(),
                pending: d % 7,
                exported: 0,
                // booth-050 holds 2 quarantined entries and one waiting for 10 days.
                quarantined: if d == 50 { 2 } else { 0 },
                oldest_waiting_s: Some(if d == 50 { 10 * 86_400 } else { d * 60 }),
                app_version: "0.1.0".into(),
                last_error: None,
                sent_at_ms: now,
            };
            sealbox_headoffice::console::store::record_health(
                &tx,
                &name,
                &report,
                now - d as i64 * 90_000,
            )
            .unwrap();
        }
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO entries (id, event_id, device, captured_at_ms, consent_version,
                     consent_sha256, sealed, received_at_ms, retain_from_ms)
                     VALUES (?1, 'trade-show-2026', ?2, ?3, '2026-11-v1', 'x', ?4, ?5, ?3)",
                )
                .unwrap();
            let sealed = vec![0u8; 600];
            for i in 0..100_000i64 {
                let captured = now - 48 * 3_600_000 + i * 1728;
                stmt.execute(rusqlite::params![
                    uuid::Uuid::now_v7().to_string(),
                    format!("booth-{:03}", i % 100),
                    captured,
                    sealed,
                    now
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let (_serve, _, base) = serve(&sb);
    let http = ho_client(&sb.ho);
    let cookie = session_cookie(&http, &base, ALICE);
    let mut report = Vec::new();
    for page in ["overview", "devices", "events", "audit"] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let r = http
                .get(format!("{base}/{page}"))
                .header("cookie", &cookie)
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{page}");
            let body = r.text().unwrap();
            times.push(t.elapsed());
            if page == "devices" {
                assert_eq!(body.matches("data-device=").count(), 100);
            }
            if page == "overview" {
                // Alerts: silent with entries waiting (seen d × 90 s ago, pending d mod 7, past
                // the 60 minutes), waiting past the event's 3 days, quarantined on the device.
                assert!(
                    body.contains(
                        "Device booth-099 has 1 entries waiting and has been silent for 2 h"
                    ),
                    "{body}"
                );
                assert!(
                    !body.contains("Device booth-098 has"),
                    "nothing waiting on booth-098"
                );
                assert!(
                    !body.contains("Device booth-001 has"),
                    "booth-001 was heard from 90 s ago"
                );
                assert!(body.contains(
                    "Device booth-050 has an entry waiting for 10 days, past the event's 3 days"
                ));
                assert!(body.contains("Device booth-050 holds 2 entries head office refused"));
                assert!(body.contains("<svg class=\"chart\""));
            }
        }
        times.sort();
        let median = times[2];
        report.push(format!("{page}: median {} ms", median.as_millis()));
        assert!(median < Duration::from_secs(3), "{page}: {median:?}");
    }
    println!(
        "console pages with 100 devices and 100,000 entries: {}",
        report.join(", ")
    );
}

/// The console on PostgreSQL, in the real browser, with two `serve` processes on one database:
/// a sign-in on one works on the other (the browser's cookie is for 127.0.0.1, whatever the
/// port), a device's health report sent to one shows on both, a deletion request counted and
/// confirmed on the other deletes the one match, and signing out on one ends the session on
/// both.
mod on_postgres {
    use super::*;
    use sealbox_tests::pg::on_postgres;

    #[test]
    fn the_console_on_postgres_shared_by_two_servers() {
        on_postgres(|| {
            // Made and dropped outside the runtime: its database is made and dropped with the
            // blocking PostgreSQL client.
            let sb = Sandbox::headoffice();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(two_servers_one_console(&sb))
        });
    }

    async fn two_servers_one_console(sb: &Sandbox) {
        assert!(sealbox_tests::pg::url_of(&sb.ho).is_some(), "on PostgreSQL");
        admin_add(sb, ALICE, "operator");
        let (_a, sync_a, base_a) = serve(sb);
        let (_b, _sync_b, base_b) = serve(sb);
        assert_ne!(base_a, base_b);
        let (_driver, c) = browser(sb).await;
        let mut seen = Seen::default();

        // In Chinese (the language cookie is for 127.0.0.1, as the session's).
        c.goto(&format!("{base_a}/lang/zh?back=/login"))
            .await
            .unwrap();
        // Signed in on A: B knows the session.
        sign_in(&c, &mut seen, &base_a, ALICE).await;
        goto(&c, &mut seen, &format!("{base_b}/overview")).await;
        assert!(
            text_of(&c, "#who").await.starts_with(ALICE.0),
            "B knows A's session"
        );

        // A device reports to A and syncs to A; both consoles show it.
        tokio::task::block_in_place(|| {
            sb.enrol_at(&sync_a);
            sb.add_many(0, 3);
            let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
            let client = dev.sync_client(Duration::from_secs(10)).unwrap();
            assert!(
                dev.send_health(&client, None).unwrap(),
                "the health report is taken"
            );
        });
        assert_eq!(waiting(&c, &mut seen, &base_b, "booth-1").await, "3");
        assert_eq!(waiting(&c, &mut seen, &base_a, "booth-1").await, "3");
        tokio::task::block_in_place(|| sb.dev_ok(&["sync"]));
        assert_eq!(waiting(&c, &mut seen, &base_b, "booth-1").await, "0");
        let overview = {
            goto(&c, &mut seen, &format!("{base_b}/overview")).await;
            text_of(&c, "main").await
        };
        assert!(overview.contains("trade-show-2026"), "{overview}");

        // A deletion request on B: the count before the confirmation, then one entry deleted.
        goto(&c, &mut seen, &format!("{base_b}/forget")).await;
        fill(&c, "#forget-subject", "13900000001").await;
        fill(&c, "#forget-passphrase", PASSPHRASE).await;
        submit(&c, "#forget button").await;
        seen.record(&c).await;
        let count = text_of(&c, "#forget-count").await;
        assert!(count.contains(" 1 条"), "{count}");
        let deleted = || tokio::task::block_in_place(|| status(sb)["events"][0]["deleted"].clone());
        assert_eq!(deleted(), 0, "nothing deleted before the confirmation");
        fill(&c, "#forget-confirm input[name=passphrase]", PASSPHRASE).await;
        submit(&c, "#forget-confirm button").await;
        seen.record(&c).await;
        assert!(text_of(&c, "#forgotten").await.contains('1'));
        assert_eq!(deleted(), 1);

        // The audit log, read on A, names the admin and verifies.
        goto(&c, &mut seen, &format!("{base_a}/audit")).await;
        assert!(text_of(&c, "#chain").await.contains("审计链完好"));
        let log = text_of(&c, "#audit").await;
        assert!(log.contains("console.deletion_request"), "{log}");
        assert!(log.contains("\"admin\":\"alice\""), "{log}");
        shot(&c, "postgres-audit-zh").await;

        // Signed out on B: A no longer knows the session either.
        goto(&c, &mut seen, &format!("{base_b}/overview")).await;
        sign_out(&c).await;
        goto(&c, &mut seen, &format!("{base_a}/overview")).await;
        assert!(
            c.current_url().await.unwrap().path().ends_with("/login"),
            "signed out on both"
        );
        for (url, html) in &seen.0 {
            for p in PERSONAL {
                assert!(!html.contains(p), "{url} shows {p}");
            }
        }
        let _ = c.close().await;

        // Without a browser: a session made on B works on A.
        tokio::task::block_in_place(|| {
            let http = ho_client(&sb.ho);
            let cookie = session_cookie(&http, &base_b, ALICE);
            let r = http
                .get(format!("{base_a}/devices"))
                .header("cookie", &cookie)
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            assert!(r.text().unwrap().contains("data-device=\"booth-1\""));
        });
    }
}
