//! Promoter mode in the real kiosk window (WebDriver, Xvfb): how long one visitor takes from the
//! scanner's first key to the empty form ready for the next visitor, beside the same submit with
//! the values already in the form, and WebDriver's own round trip (both from the same run).
//!
//! Runs inside a keyring session with a display (`cargo xtask bench` sets both up). The app is
//! `SEALBOX_BENCH_APP`, else the release kiosk.

use fantoccini::key::Key;
use sealbox_tests::bench::{forget_key, BenchSite};
use sealbox_tests::window::{js, keys, scan, session, wait_for, wait_for_within, WindowSite};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 5 } else { 15 };
    let site = BenchSite::create();
    let issued = sealbox_headoffice::admin::staff_code_issue(&site.ho_dir, sealbox_tests::EVENT)
        .expect("staff code");
    let (dev_dir, dev) = site.device_with_entries(None, 0);
    drop(dev);
    let app = std::env::var_os("SEALBOX_BENCH_APP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| sealbox_tests::workspace().join("target/release/sealbox-kiosk"));
    let tmpdir = site.tmp.path().join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let w = WindowSite {
        app,
        data_dir: &dev_dir,
        xdg: site.tmp.path().join("xdg"),
        tmpdir: &tmpdir,
        log: site.tmp.path().join("driver.log"),
    };
    let (driver, c) = session(&w).await;
    let enter = char::from(Key::Enter);
    let submit_keys = format!(
        " {}{}{}",
        char::from(Key::Control),
        enter,
        char::from(Key::Null)
    );

    wait_for(
        &c,
        "the form",
        "document.querySelector('input[name=\"name\"]')",
    )
    .await
    .unwrap();
    js(
        &c,
        "document.getElementById('open-promoter').click(); return 1;",
    )
    .await;
    wait_for(
        &c,
        "the dialog",
        "document.getElementById('promoter-dialog').open",
    )
    .await
    .unwrap();
    keys(&c, &format!("{}{enter}", *issued.code)).await;
    wait_for(
        &c,
        "promoter mode",
        "!document.getElementById('promoter-bar').hidden",
    )
    .await
    .unwrap();

    let ready = |n: usize| {
        format!(
            "document.getElementById('promoter-note').textContent.includes('{n} ') && document.activeElement === document.querySelector('[data-field=\"name\"] input') && document.querySelector('[data-field=\"name\"] input').value === ''"
        )
    };
    let (mut scan_ready, mut scan_filled, mut baseline, mut rtt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut saved = 0;
    let mut misses = 0;
    for round in 0..rounds + 2 {
        // A scan, consent, Ctrl+Enter: until the next visitor's form is ready.
        let card = format!(
            "BEGIN:VCARD\nVERSION:3.0\nFN:Bench Visitor {round}\nTEL;TYPE=CELL:138{round:08}\nEMAIL:v{round}@example.com\nORG:Example Co\nEND:VCARD"
        );
        let t = Instant::now();
        scan(&c, &card).await;
        if wait_for_within(&c, "the scan's values", "document.querySelector('[data-field=\"phone\"] input').value !== '' && document.activeElement === document.getElementById('consent')", std::time::Duration::from_secs(3))
            .await
            .is_err()
        {
            // Not taken for a scan (a key held back longer than the rule allows): counted, and
            // the form emptied for the next round.
            misses += 1;
            js(&c, "for (const i of document.querySelectorAll('#fields input')) i.value = ''; document.getElementById('scan-note').textContent = ''; document.querySelector('[data-field=\"name\"] input').focus(); return 1;").await;
            continue;
        }
        let filled = ms(t);
        keys(&c, &submit_keys).await;
        saved += 1;
        wait_for(&c, "the next visitor's form", &ready(saved))
            .await
            .unwrap();
        let total = ms(t);
        // The baseline: the same values already in the form, consent and Ctrl+Enter.
        js(&c, &format!("const v = {{name: 'Bench Visitor {round}', phone: '139{round:08}', email: 'w{round}@example.com', company: 'Example Co'}}; for (const [k, x] of Object.entries(v)) document.querySelector(`[data-field=\"${{k}}\"] input`).value = x; document.getElementById('consent').focus(); return 1;")).await;
        let t = Instant::now();
        keys(&c, &submit_keys).await;
        saved += 1;
        wait_for(&c, "the next visitor's form", &ready(saved))
            .await
            .unwrap();
        let submit_only = ms(t);
        let t = Instant::now();
        js(&c, "return 1;").await;
        let roundtrip = ms(t);
        if round >= 2 {
            scan_ready.push(total);
            scan_filled.push(filled);
            baseline.push(submit_only);
            rtt.push(roundtrip);
        }
    }
    let _ = c.close().await;
    drop(driver);
    forget_key(&dev_dir);
    let out = serde_json::json!({
        "promoter_rounds": rounds,
        "promoter_scan_to_next_ready_ms": median(scan_ready),
        "promoter_scan_to_filled_ms": median(scan_filled),
        "promoter_submit_to_next_ready_ms": median(baseline),
        "webdriver_roundtrip_ms": median(rtt),
        "promoter_scan_misses": misses,
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{text}");
    if let Ok(p) = std::env::var("SEALBOX_BENCH_OUT") {
        std::fs::write(p, text).unwrap();
    }
}
