//! Promoters at the booth (#16), in the real kiosk window through WebDriver: badge scans typed
//! as a scanner types them, staff-only fields in promoter mode only, ten visitors entered with
//! the keyboard alone, and what the CRM file then holds.
//!
//! The WebDriver plumbing is the one `kiosk.rs` uses, kept small here.

use fantoccini::key::Key;
use fantoccini::Client;
use sealbox_tests::window::{
    clock_skew_file, js, keys, scan, session, wait_for, wait_for_within, WindowSite,
};
use sealbox_tests::*;
use std::time::Duration;

pub(crate) const PROMO_EVENT: &str = "promo-2026";
/// In every scanned text: it must not reach a file or a log.
const SCAN_CANARY: &str = "Qzscanary";
const TYPED_CANARY: &str = "Qzpromoter";

/// The two windows of this module take turns: the scan test times a scanner's keys, which a
/// second window starting beside it would make uneven.
static ONE_WINDOW: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn site(sb: &Sandbox) -> WindowSite<'_> {
    WindowSite {
        app: bin("sealbox-kiosk"),
        data_dir: &sb.dev,
        xdg: sb.tmp.path().join("xdg"),
        tmpdir: &sb.tmpdir,
        log: sb.tmp.path().join("driver.log"),
    }
}

async fn value(c: &Client, key: &str) -> String {
    js(
        c,
        &format!("const i = document.querySelector('[data-field=\"{key}\"] input'); return i ? i.value : null;"),
    )
    .await
    .as_str()
    .unwrap_or("<no such field>")
    .to_string()
}

async fn text_of(c: &Client, id: &str) -> String {
    js(
        c,
        &format!("return document.getElementById('{id}').textContent;"),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

async fn focus(c: &Client, key: &str) {
    js(
        c,
        &format!("document.querySelector('[data-field=\"{key}\"] input').focus(); return 1;"),
    )
    .await;
}

/// Empties the visitor's text fields and the scan line (as a fresh visitor would find them).
async fn clear_form(c: &Client) {
    js(c, "for (const i of document.querySelectorAll('#fields input')) { if (i.type === 'checkbox' || i.type === 'radio') i.checked = false; else i.value = ''; } document.getElementById('scan-note').textContent = ''; return 1;").await;
}

/// A person typing: a pause between keys, longer than the scanner's threshold.
async fn type_slowly(c: &Client, text: &str) {
    for ch in text.chars() {
        let k = if ch == '\n' {
            char::from(Key::Enter).to_string()
        } else {
            ch.to_string()
        };
        keys(c, &k).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
}

/// A promoter's field: typed, then (after a person's pause) Enter to move on.
async fn field_then_enter(c: &Client, text: &str) {
    if !text.is_empty() {
        keys(c, text).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    keys(c, &char::from(Key::Enter).to_string()).await;
}

/// Opens the staff code dialog from the form.
async fn open_staff_dialog(c: &Client) -> Result<(), String> {
    js(
        c,
        "document.getElementById('open-promoter').click(); return 1;",
    )
    .await;
    wait_for(
        c,
        "the staff code dialog",
        "document.getElementById('promoter-dialog').open",
    )
    .await
}

pub(crate) fn promo_event(sb: &Sandbox) {
    sb.create_event(PROMO_EVENT, |v| {
        let fields = v["fields"].as_array_mut().unwrap();
        fields.push(serde_json::json!({
            "key": "rating", "kind": "choice", "audience": "staff", "display": "plain",
            "label": {"zh": "意向", "en": "Interest level"},
            "purpose": {"zh": "安排跟进的先后", "en": "To order the follow-up"},
            "options": [
                {"value": "1", "label": {"zh": "1 低", "en": "1 low"}},
                {"value": "2", "label": {"zh": "2", "en": "2"}},
                {"value": "3", "label": {"zh": "3", "en": "3"}},
                {"value": "4", "label": {"zh": "4 高", "en": "4 high"}}
            ]
        }));
        fields.push(serde_json::json!({
            "key": "notes", "kind": "text", "audience": "staff", "display": "hidden",
            "max_length": 300,
            "label": {"zh": "洽谈记录", "en": "Notes"},
            "purpose": {"zh": "记录洽谈内容以便跟进", "en": "What was discussed, for the follow-up"}
        }));
        // A scanner's keys may come up to 50 ms apart here (the default is 30): under the load of
        // a whole test run, WebDriver's typing is that uneven; a person's keys come slower still.
        v["kiosk"]["scan_max_gap_ms"] = serde_json::json!(50);
        v["badge"] = serde_json::json!({
            "regex": "^TS26\\|(?P<name>[^|]+)\\|(?P<company>[^|]*)\\|(?P<phone>[0-9]+)$",
            "json": {"name": "attendee.name", "email": "attendee.mail", "phone": "attendee.tel"}
        });
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn scans_promoter_mode_and_the_crm_file_in_the_real_window() {
    let _turn = ONE_WINDOW.lock().await;
    let sb = Sandbox::headoffice();
    promo_event(&sb);
    let issued = sb.ho_ok(&["event", "staff-code", PROMO_EVENT]);
    // "staff code s1: s1-12345678" and advice; the code is shown once.
    let code = issued
        .split_whitespace()
        .find(|w| w.starts_with("s1-") && w.len() == 11)
        .unwrap_or_else(|| panic!("no code in: {issued}"))
        .to_string();
    // The event's file, created again, is still the same event (the codes issued since are
    // not part of it).
    let file = sb.tmp.path().join(format!("{PROMO_EVENT}.event.json"));
    sb.ho_ok(&["event", "create", file.to_str().unwrap()]);
    let kept = files_containing(&sb.ho, &code[3..]);
    assert!(
        kept.is_empty(),
        "head office keeps only the verifier: {kept:?}"
    );
    enrol_promo(&sb, None);
    sb.dev_ok_env(&["pin", "set"], &[("SEALBOX_PIN", PIN)]);

    let site = site(&sb);
    let (driver, c) = session(&site).await;
    let outcome = drive(&c, &code).await;
    if outcome.is_err() {
        if let Ok(png) = c.screenshot().await {
            let d = workspace().join("target/e2e-artifacts");
            let _ = std::fs::create_dir_all(&d);
            let _ = std::fs::write(d.join("promoter-failure.png"), png);
        }
    }
    let _ = c.close().await;
    drop(driver);
    let log = std::fs::read_to_string(&site.log).unwrap_or_default();
    if let Err(e) = outcome {
        panic!("{e}\n--- driver log:\n{log}");
    }

    // The canary scan: nothing scanned or typed is in the data dir, the webview's storage,
    // the temp dir, or anything the app printed (trace logs on).
    for canary in [
        SCAN_CANARY,
        TYPED_CANARY,
        "13900001111",
        "13812345678",
        &code[3..],
    ] {
        for dir in [&sb.dev, &site.xdg, &sb.tmpdir] {
            let hits = files_containing(dir, canary);
            assert!(hits.is_empty(), "{canary} found in {hits:?}");
        }
        assert!(!log.contains(canary), "{canary} in the app's output");
    }

    // Ten entries, carried to head office in a batch file.
    assert_eq!(sb.pending(), 10);
    let batch = sb.tmp.path().join("out.sealbox-batch");
    sb.dev_ok(&["export", "--out", batch.to_str().unwrap()]);
    let out = sb.ho_import(&batch, &sb.tmp.path().join("receipt.json"));
    assert!(out.status.success(), "{out:?}");

    // The CRM file: rating, notes and the staff code's id in their own columns, and the
    // visitor who came back marked as a duplicate of the first entry.
    let csv_path = sb.tmp.path().join("crm.csv");
    let said = sb.ho_ok(&[
        "export",
        "--event",
        PROMO_EVENT,
        "--format",
        "csv",
        "--unmasked",
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert!(said.contains("duplicates: 1 (of 1 visitors"), "{said}");
    let bytes = std::fs::read(&csv_path).unwrap();
    let mut rdr = csv::Reader::from_reader(&bytes[3..]); // after the UTF-8 byte-order mark
    let header = rdr.headers().unwrap().clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name || h.starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 10);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(&r[col("name")], format!("{TYPED_CANARY}{i}"), "row {i}");
        assert_eq!(&r[col("captured_by")], "s1");
        assert_eq!(&r[col("rating")], ["4", "1", "2", "3"][i % 4]);
        assert_eq!(&r[col("notes")], format!("wants a demo {i}"));
    }
    let first = rows[0][col("entry_id")].to_string();
    assert_eq!(&rows[9][col("duplicate_of")], first.as_str());
    assert!(rows[..9].iter().all(|r| r[col("duplicate_of")].is_empty()));
    // Merged: one row for that visitor, the first entry's values kept, gaps filled.
    let merged_path = sb.tmp.path().join("crm-merged.csv");
    let said = sb.ho_ok(&[
        "export",
        "--event",
        PROMO_EVENT,
        "--format",
        "csv",
        "--unmasked",
        "--merge-duplicates",
        "--out",
        merged_path.to_str().unwrap(),
    ]);
    assert!(
        said.contains("merged into each visitor's earliest entry"),
        "{said}"
    );
    let bytes = std::fs::read(&merged_path).unwrap();
    let mut rdr = csv::Reader::from_reader(&bytes[3..]);
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 9);
    assert_eq!(&rows[0][col("entry_id")], first.as_str());
    assert_eq!(&rows[0][col("name")], format!("{TYPED_CANARY}0"));
    assert_eq!(
        &rows[0][col("email")],
        "back.again@example.com",
        "a gap filled from the later entry"
    );
    assert!(rows[0][col("merged_entries")].len() == 36);
    let _ = std::fs::remove_file(&csv_path);
    let _ = std::fs::remove_file(&merged_path);
}

async fn drive(c: &Client, code: &str) -> Result<(), String> {
    wait_for(
        c,
        "the form",
        "document.querySelector('input[name=\"name\"]')",
    )
    .await?;
    let staff_fields =
        "document.querySelectorAll('[data-field=\"rating\"], [data-field=\"notes\"]').length";
    if js(c, &format!("return {staff_fields};")).await != 0 {
        return Err("staff-only fields shown to a visitor".into());
    }

    // vCard 3.0, its lines typed with Enter between them, into the name field.
    focus(c, "name").await;
    scan(c, &format!("BEGIN:VCARD\nVERSION:3.0\nN:{SCAN_CANARY};Ada;;;\nFN:Ada {SCAN_CANARY}\nORG:Engines Ltd\nTEL;TYPE=CELL:13812345678\nEMAIL:ada@example.com\nEND:VCARD")).await;
    wait_for(
        c,
        "the vCard's values",
        "document.querySelector('[data-field=\"phone\"] input').value !== ''",
    )
    .await?;
    let got = (
        value(c, "name").await,
        value(c, "phone").await,
        value(c, "email").await,
        value(c, "company").await,
    );
    if got
        != (
            format!("Ada {SCAN_CANARY}"),
            "13812345678".into(),
            "ada@example.com".into(),
            "Engines Ltd".into(),
        )
    {
        return Err(format!("the vCard filled {got:?}"));
    }
    if js(
        c,
        "return document.body.dataset.screen + document.getElementById('consent').checked;",
    )
    .await
        != "formfalse"
    {
        return Err("a scan submitted or ticked consent".into());
    }
    let note = text_of(c, "scan-note").await;
    if !note.contains("胸卡") {
        return Err(format!("no line in Chinese after the scan: {note:?}"));
    }

    // A slow typist's identical text is not a scan: it stays in the field as typed, and the
    // Enter is the form's own (a submit refused for the missing consent), not a scan.
    clear_form(c).await;
    focus(c, "company").await;
    let slow = "TS26|Fay|Ink|13900001111";
    type_slowly(c, &format!("{slow}\n")).await;
    // Longer than a scan takes to be read once its last key came.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = (
        value(c, "company").await,
        value(c, "name").await,
        text_of(c, "scan-note").await,
    );
    if got != (slow.to_string(), String::new(), String::new()) {
        return Err(format!("slow typing was taken for a scan: {got:?}"));
    }

    // vCard 4.0 and MECARD.
    clear_form(c).await;
    focus(c, "company").await;
    scan(c, &format!("BEGIN:VCARD\nVERSION:4.0\nFN:Bo {SCAN_CANARY}\nTEL;VALUE=uri;TYPE=cell:tel:+86-139-0000-1111\nEND:VCARD")).await;
    wait_for(
        c,
        "the vCard 4 values",
        "document.querySelector('[data-field=\"phone\"] input').value !== ''",
    )
    .await?;
    let got = (
        value(c, "name").await,
        value(c, "phone").await,
        value(c, "company").await,
    );
    if got
        != (
            format!("Bo {SCAN_CANARY}"),
            "+86-139-0000-1111".into(),
            String::new(),
        )
    {
        return Err(format!(
            "the vCard 4 filled {got:?} (the company must hold nothing the scanner typed)"
        ));
    }
    clear_form(c).await;
    focus(c, "email").await;
    scan(
        c,
        &format!("MECARD:N:{SCAN_CANARY},Cy;TEL:13900001111;EMAIL:cy@example.org;;"),
    )
    .await;
    wait_for(
        c,
        "the MECARD's values",
        "document.querySelector('[data-field=\"phone\"] input').value !== ''",
    )
    .await?;
    let got = (
        value(c, "name").await,
        value(c, "phone").await,
        value(c, "email").await,
    );
    if got
        != (
            format!("Cy {SCAN_CANARY}"),
            "13900001111".into(),
            "cy@example.org".into(),
        )
    {
        return Err(format!("the MECARD filled {got:?}"));
    }

    // The event's own formats: its regular expression, and its JSON map.
    clear_form(c).await;
    focus(c, "name").await;
    scan(c, &format!("TS26|Di {SCAN_CANARY}|Widgets|13900001111")).await;
    wait_for(
        c,
        "the badge's values",
        "document.querySelector('[data-field=\"phone\"] input').value !== ''",
    )
    .await?;
    let got = (
        value(c, "name").await,
        value(c, "company").await,
        value(c, "phone").await,
    );
    if got
        != (
            format!("Di {SCAN_CANARY}"),
            "Widgets".into(),
            "13900001111".into(),
        )
    {
        return Err(format!("the event's regex filled {got:?}"));
    }
    clear_form(c).await;
    focus(c, "name").await;
    scan(c, &format!(r#"{{"attendee": {{"name": "Ed {SCAN_CANARY}", "mail": "ed@example.net", "tel": "13900001111"}}}}"#)).await;
    wait_for(
        c,
        "the JSON badge's values",
        "document.querySelector('[data-field=\"email\"] input').value !== ''",
    )
    .await?;
    let got = (
        value(c, "name").await,
        value(c, "email").await,
        value(c, "phone").await,
    );
    if got
        != (
            format!("Ed {SCAN_CANARY}"),
            "ed@example.net".into(),
            "13900001111".into(),
        )
    {
        return Err(format!("the event's JSON map filled {got:?}"));
    }

    // An unreadable scan: one line, nothing filled, what was typed stays.
    clear_form(c).await;
    focus(c, "name").await;
    type_slowly(c, "Zhou").await;
    scan(c, &format!("XX-{SCAN_CANARY}-0042-UNKNOWN")).await;
    wait_for(
        c,
        "the unreadable line",
        "document.getElementById('scan-note').textContent !== ''",
    )
    .await?;
    let note = text_of(c, "scan-note").await;
    if note != "无法识别这次扫描的胸卡，未填写任何内容" {
        return Err(format!("the unreadable scan said {note:?}"));
    }
    let got = (value(c, "name").await, value(c, "phone").await);
    if got != ("Zhou".to_string(), String::new()) {
        return Err(format!("an unreadable scan changed the form: {got:?}"));
    }
    // In English too.
    js(c, "document.getElementById('lang-en').click(); return 1;").await;
    focus(c, "name").await;
    scan(c, "XX-0042-UNKNOWN-AGAIN").await;
    wait_for(
        c,
        "the English line",
        "document.getElementById('scan-note').textContent.startsWith('the badge scan')",
    )
    .await?;
    js(c, "document.getElementById('lang-zh').click(); return 1;").await;

    // Promoter mode: a wrong staff code is refused, the right one opens it.
    clear_form(c).await;
    open_staff_dialog(c).await?;
    keys(c, &format!("s1-00000000{}", char::from(Key::Enter))).await;
    wait_for(
        c,
        "the refusal",
        "document.getElementById('err-staff-code').textContent !== ''",
    )
    .await?;
    if text_of(c, "err-staff-code").await != "员工码不正确" {
        return Err(format!(
            "wrong code said {:?}",
            text_of(c, "err-staff-code").await
        ));
    }
    keys(c, &format!("{code}{}", char::from(Key::Enter))).await;
    wait_for(
        c,
        "promoter mode",
        "!document.getElementById('promoter-bar').hidden",
    )
    .await?;
    if js(c, &format!("return {staff_fields};")).await != 2 {
        return Err("staff fields missing in promoter mode".into());
    }
    if !text_of(c, "promoter-who").await.contains("s1") {
        return Err("the bar does not name the staff code's id".into());
    }

    // Ten visitors, keyboard only: Enter moves on, Space picks and ticks, Ctrl+Enter submits.
    for i in 0..10 {
        let focused_first = js(c, "return document.activeElement === document.querySelector('[data-field=\"name\"] input');").await;
        if focused_first != true {
            return Err(format!(
                "visitor {i}: the form is not ready on its first field"
            ));
        }
        let phone = if i == 9 {
            "13800000000".to_string()
        } else {
            format!("1380000000{i}")
        };
        field_then_enter(c, &format!("{TYPED_CANARY}{i}")).await;
        field_then_enter(c, &phone).await;
        field_then_enter(c, if i == 9 { "back.again@example.com" } else { "" }).await;
        field_then_enter(c, "").await; // company
        field_then_enter(c, "").await; // interest (a choice, left empty)
                                       // The rating: Space picks the first option, arrows move to the wanted one.
        let right = char::from(Key::Right).to_string();
        keys(c, &format!(" {}", right.repeat([3, 0, 1, 2][i % 4]))).await;
        field_then_enter(c, "").await;
        field_then_enter(c, &format!("wants a demo {i}")).await;
        keys(c, " ").await; // consent
        tokio::time::sleep(Duration::from_millis(100)).await;
        keys(
            c,
            &format!(
                "{}{}{}",
                char::from(Key::Control),
                char::from(Key::Enter),
                char::from(Key::Null)
            ),
        )
        .await;
        if let Err(e) = wait_for(
            c,
            "the next visitor's form",
            &format!(
                "document.getElementById('promoter-note').textContent.includes('{}')",
                i + 1
            ),
        )
        .await
        {
            let says = js(c, "return [...document.querySelectorAll('#entry-form .error')].map(e => e.textContent).join(' | ');").await;
            return Err(format!("visitor {i}: {e}; the form says: {says}"));
        }
        if !value(c, "name").await.is_empty() || !value(c, "notes").await.is_empty() {
            return Err(format!(
                "visitor {i}: the form still holds the last visitor"
            ));
        }
    }

    // Leaving promoter mode hides the staff fields again.
    js(
        c,
        "document.getElementById('promoter-exit').click(); return 1;",
    )
    .await;
    wait_for(
        c,
        "the visitor form",
        "document.getElementById('promoter-bar').hidden",
    )
    .await?;
    if js(c, &format!("return {staff_fields};")).await != 0 {
        return Err("staff fields still shown after promoter mode".into());
    }
    Ok(())
}

/// Issues a staff code at head office and returns it (`s1-12345678`).
/// Enrols `booth-1` in the promoters' event, at `url` or head office's configured address.
pub(crate) fn enrol_promo(sb: &Sandbox, url: Option<&str>) {
    let file = sb.tmp.path().join("booth.enrol.json");
    let mut args = vec![
        "enroll",
        "--device",
        "booth-1",
        "--event",
        PROMO_EVENT,
        "--out",
        file.to_str().unwrap(),
    ];
    if let Some(u) = url {
        args.extend(["--url", u]);
    }
    sb.ho_ok(&args);
    sb.dev_ok(&["enroll", file.to_str().unwrap(), "--shred"]);
}

pub(crate) fn issue_code(sb: &Sandbox, event: &str) -> String {
    let issued = sb.ho_ok(&["event", "staff-code", event]);
    issued
        .split_whitespace()
        .find(|w| w.len() == 11 && w.as_bytes()[2] == b'-' && w.starts_with('s'))
        .unwrap_or_else(|| panic!("no code in: {issued}"))
        .to_string()
}

/// Promoter mode's lock is the library's (its session clock, moved on by the debug build's
/// test clock): at 1:45 without activity it is still open; two minutes after the last
/// activity the page leaves promoter mode by itself (no timer of its own: it asks the library
/// every second), the staff fields go, a submit carrying staff fields as the promoter is
/// refused by the library, and the next submit is a visitor's (thank you).
#[tokio::test(flavor = "multi_thread")]
async fn promoter_mode_locks_on_the_librarys_clock_in_the_real_window() {
    let _turn = ONE_WINDOW.lock().await;
    let sb = Sandbox::headoffice();
    promo_event(&sb);
    let code = issue_code(&sb, PROMO_EVENT);
    enrol_promo(&sb, None);
    sb.dev_ok_env(&["pin", "set"], &[("SEALBOX_PIN", PIN)]);
    let site = site(&sb);
    std::fs::create_dir_all(&site.xdg).unwrap();
    let skew = clock_skew_file(&site);
    std::fs::write(&skew, "0").unwrap();
    let (driver, c) = session(&site).await;
    let outcome = lock_drive(&c, &code, &skew).await;
    if outcome.is_err() {
        if let Ok(png) = c.screenshot().await {
            let d = workspace().join("target/e2e-artifacts");
            let _ = std::fs::create_dir_all(&d);
            let _ = std::fs::write(d.join("promoter-lock-failure.png"), png);
        }
    }
    let _ = c.close().await;
    drop(driver);
    if let Err(e) = outcome {
        let log = std::fs::read_to_string(&site.log).unwrap_or_default();
        panic!("{e}\n--- driver log:\n{log}");
    }
    // One entry, the visitor's, stored after the lock; the refused promoter's submit left none.
    assert_eq!(sb.pending(), 1);
}

async fn lock_drive(c: &Client, code: &str, skew: &std::path::Path) -> Result<(), String> {
    let staff_fields =
        "document.querySelectorAll('[data-field=\"rating\"], [data-field=\"notes\"]').length";
    wait_for(
        c,
        "the form",
        "document.querySelector('input[name=\"name\"]')",
    )
    .await?;
    open_staff_dialog(c).await?;
    keys(c, &format!("{code}{}", char::from(Key::Enter))).await;
    wait_for(
        c,
        "promoter mode",
        "!document.getElementById('promoter-bar').hidden",
    )
    .await?;
    // 1:45 without activity: still open (the page asks every second).
    std::fs::write(skew, "105000").map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if js(c, &format!("return {staff_fields};")).await != 2 {
        return Err("promoter mode locked before two minutes".into());
    }
    // Two minutes: the library's clock locks it; the page follows by itself.
    std::fs::write(skew, "125000").map_err(|e| e.to_string())?;
    wait_for_within(
        c,
        "the lock",
        "document.getElementById('promoter-bar').hidden",
        Duration::from_secs(10),
    )
    .await?;
    if js(c, &format!("return {staff_fields};")).await != 0 {
        return Err("staff fields still shown after the lock".into());
    }
    // The library refuses a promoter's submit now, whatever a page would send.
    let refused = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.__TAURI__.core.invoke('submit_entry', {values: {name: 'Qzlocked', phone: '13911110000', notes: 'x', consent: true}, promoter: true})
               .then(() => done('stored'), (e) => done(e.code));",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    if refused != "promoter_locked" {
        return Err(format!("a promoter's submit after the lock: {refused}"));
    }
    // The next submit is a visitor's: thank you, not the promoter's next form.
    js(
        c,
        "document.querySelector('[data-field=\"name\"] input').value = 'Qzvisitor';
         document.querySelector('[data-field=\"phone\"] input').value = '13911112222';
         document.getElementById('consent').checked = true;
         document.getElementById('submit').click(); return 1;",
    )
    .await;
    wait_for(
        c,
        "thank you",
        "!document.getElementById('screen-thanks').hidden",
    )
    .await?;
    Ok(())
}
