//! The README is the user's manual: each command does what it says, also when used the way people
//! get it wrong (issue 17). Messages in both languages, refusals that change nothing, and the
//! mistakes that used to half-succeed.

use sealbox_device::files::KEY_ACCOUNT;
use sealbox_device::{KeyStore, OsKeychain};
use sealbox_tests::server::{ho_counts, HoServer};
use sealbox_tests::*;
use std::path::Path;
use std::process::{Command, Stdio};

fn han(s: &str) -> usize {
    s.chars()
        .filter(|c| ('\u{4E00}'..='\u{9FFF}').contains(c))
        .count()
}

/// The same command without a controlling terminal (as from a script or a service), so a PIN
/// prompt cannot open `/dev/tty`.
fn without_terminal(c: &Command) -> Command {
    let mut s = Command::new("setsid");
    s.arg("-w").arg(c.get_program()).args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    s.stdin(Stdio::null());
    s
}

/// Runs `c` in English, with `SEALBOX_LANG=zh`, and with a Chinese locale (`LANG`) only; each
/// must fail with one line. Returns (English, Chinese) after checking both Chinese runs agree.
fn both_languages(c: &Command, what: &str) -> (String, String) {
    let run = |env: &[(&str, Option<&str>)]| -> String {
        let mut c = without_terminal(c);
        c.env_remove("LC_ALL").env_remove("LC_MESSAGES");
        for (k, v) in env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let out = c.output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
        err.trim_end().to_string()
    };
    let en = run(&[("LANG", Some("C.UTF-8")), ("SEALBOX_LANG", None)]);
    let zh = run(&[("SEALBOX_LANG", Some("zh")), ("LANG", Some("C.UTF-8"))]);
    let locale = run(&[("SEALBOX_LANG", None), ("LANG", Some("zh_CN.UTF-8"))]);
    assert!(en.starts_with("error: ") && han(&en) == 0, "{what}: {en}");
    assert!(zh.starts_with("错误："), "{what}: {zh}");
    assert!(han(&zh) >= 4, "{what}: not Chinese: {zh}");
    assert_eq!(
        zh, locale,
        "{what}: a Chinese LANG speaks Chinese like SEALBOX_LANG=zh"
    );
    (en, zh)
}

fn write(sb: &Sandbox, name: &str, text: &str) -> std::path::PathBuf {
    let p = sb.tmp.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Issue 17, items 7 and 8: `status`, file, PIN, receipt, export and key errors, and the prefix,
/// in Chinese from `SEALBOX_LANG=zh` and from a Chinese `LANG`; distinct errors stay distinct.
#[test]
fn device_errors_in_chinese_from_sealbox_lang_and_from_a_chinese_locale() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 2);
    let missing = sb.tmp.path().join("missing.json");
    let garbage = write(&sb, "garbage.json", "{\"not\": \"a receipt\"}");
    // A genuine receipt with its signature broken.
    let batch = sb.tmp.path().join("b.sealbox-batch");
    sb.dev_ok(&["export", "--out", s(&batch)]);
    let receipt = sb.tmp.path().join("r.json");
    ok(sb.ho_import(&batch, &receipt), &["import"]);
    let mut forged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    forged["issued_at_ms"] = (forged["issued_at_ms"].as_i64().unwrap() + 1).into();
    let forged = write(&sb, "forged.json", &forged.to_string());
    let bad_line = write(
        &sb,
        "bad.ndjson",
        "{\"name\":\"Li\",\"phone\":\"13812345678\",\"consent\":true}\n{\"name\":\"Li\",\"phone\":\"123\",\"consent\":true}\n",
    );
    let nowhere = sb.tmp.path().join("not-enrolled");

    let dev = |args: &[&str]| sb.dev_cmd(args);
    let mut cases: Vec<(&str, Command)> = vec![
        ("status, not enrolled", sb.dev_cmd_in(&nowhere, &["status"])),
        (
            "receipt import, no file",
            dev(&["receipt", "import", s(&missing)]),
        ),
        (
            "recover, no file",
            dev(&["recover", "--escrow-key", s(&missing)]),
        ),
        (
            "recover, not an escrow key",
            dev(&["recover", "--escrow-key", s(&garbage)]),
        ),
        ("add, no file", dev(&["add", "--ndjson", s(&missing)])),
        ("add, a bad line", dev(&["add", "--ndjson", s(&bad_line)])),
        (
            "receipt, not a receipt",
            dev(&["receipt", "import", s(&garbage)]),
        ),
        ("receipt, forged", dev(&["receipt", "import", s(&forged)])),
        (
            "export, file exists",
            dev(&["export", "--out", s(&garbage)]),
        ),
        ("list, no PIN and no terminal", dev(&["list"])),
    ];
    let mut no_new = dev(&["pin", "set"]);
    no_new.env("SEALBOX_PIN", PIN);
    cases.push(("pin set, no terminal for the new PIN", no_new));
    let mut no_keychain = dev(&["status"]);
    no_keychain.env(
        "DBUS_SESSION_BUS_ADDRESS",
        "unix:path=/nonexistent/sealbox-test-bus",
    );
    cases.push(("status, keychain unavailable", no_keychain));

    let mut seen = Vec::new();
    for (what, c) in &cases {
        let (en, zh) = both_languages(c, what);
        eprintln!("{what}:\n  {en}\n  {zh}");
        seen.push((what.to_string(), en, zh));
    }
    let find = |what: &str| seen.iter().find(|c| c.0.starts_with(what)).unwrap();
    assert!(find("add, a bad line").2.contains("第 2 行"));
    assert!(find("add, no file").2.contains("missing.json"));
    let (_, en, zh) = find("pin set, no terminal");
    assert!(en.contains("SEALBOX_NEW_PIN"), "{en}");
    assert!(zh.contains("SEALBOX_NEW_PIN"), "{zh}");
    assert!(!en.contains("No such device"), "{en}");
    // The receipt errors stay as distinct in Chinese as in English.
    assert_ne!(find("receipt, not a receipt").2, find("receipt, forged").2);
    assert_ne!(find("receipt, not a receipt").1, find("receipt, forged").1);
    // Nothing was erased or written by any of them.
    assert_eq!(sb.status()["exported"], 2);

    // `list --json` reports its error as JSON, with a stable code.
    let out = without_terminal(&dev(&["list", "--json"]))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "no_terminal", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SEALBOX_PIN"),
        "{v}"
    );

    // What succeeds speaks Chinese too.
    for mut c in [
        sb.dev_cmd(&["audit", "verify"]),
        sb.ho_cmd(&["audit", "verify"]),
    ] {
        let out = c.env("LANG", "zh_CN.UTF-8").output().unwrap();
        let said = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success() && said.contains("审计链完好"),
            "{said}"
        );
    }

    // A lost key: status says so in Chinese, with the way back.
    OsKeychain
        .delete(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap();
    let (en, zh) = both_languages(&sb.dev_cmd(&["status"]), "status, key lost");
    assert!(en.contains("key lost"), "{en}");
    assert!(
        zh.contains("密钥丢失") && zh.contains("escrow open"),
        "{zh}"
    );
}

/// Head office's errors in Chinese too.
#[test]
fn head_office_errors_in_chinese() {
    let sb = Sandbox::headoffice();
    let missing = sb.tmp.path().join("missing.json");
    for (what, args) in [
        (
            "event create, no file",
            vec!["event", "create", s(&missing)],
        ),
        (
            "enroll, unknown event",
            vec![
                "enroll",
                "--device",
                "b",
                "--event",
                "nope",
                "--out",
                s(&missing),
            ],
        ),
        ("revoke, no such device", vec!["device", "revoke", "nobody"]),
        (
            "import, no file",
            vec!["import", s(&missing), "--receipt-out", "r.json"],
        ),
    ] {
        let (en, zh) = both_languages(&sb.ho_cmd(&args), what);
        eprintln!("{what}:\n  {en}\n  {zh}");
    }
    let mut wrong = sb.ho_cmd(&["escrow", "open", s(&missing), "--out", "k.json"]);
    wrong.env("SEALBOX_HO_PASSPHRASE", "not the passphrase at all");
    let (_, zh) = both_languages(&wrong, "wrong passphrase");
    assert!(zh.contains("口令不正确"), "{zh}");
}

/// Item 8: a database file copied from another device is `wrong key`, as the README lists, not
/// `corrupt`; putting the right file back opens it again.
#[test]
fn a_database_from_another_device_is_wrong_key_not_corrupt() {
    let sb = Sandbox::enrolled();
    sb.add_many(0, 1);
    let other = sb.enrol_second(EVENT);
    let db = sb.dev.join("sealbox.db");
    let mine = std::fs::read(&db).unwrap();
    std::fs::copy(other.join("sealbox.db"), &db).unwrap();
    let err = sb.dev_fail(&["list"], &[("SEALBOX_PIN", PIN)]);
    assert!(err.contains("wrong key"), "{err}");
    assert_eq!(sb.status()["database"], "wrong_key");
    std::fs::write(&db, &mine).unwrap();
    assert_eq!(sb.pending(), 1);
}

/// Item 8: `sync` with nothing to send says so; `sync --json` errors are JSON.
#[test]
fn sync_with_nothing_to_send_says_so_and_json_errors_are_json() {
    let sb = Sandbox::headoffice();
    let mut server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    let out = sb.dev_ok(&["sync"]);
    assert!(out.contains("nothing to send"), "{out}");
    assert!(!out.contains("erased"), "{out}");
    sb.add_many(0, 3);
    let out = sb.dev_ok(&["sync"]);
    assert!(out.contains("sent 3 entries"), "{out}");
    sb.add_many(3, 1);
    server.kill();
    let out = sb
        .dev_cmd(&["sync", "--json", "--timeout", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("JSON on stdout: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["error"]["code"], "offline", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot be reached"));
    assert_eq!(sb.pending(), 1);
}

/// Item 9: bidirectional controls and duplicate keys are refused with the line and the field;
/// nothing is written.
#[test]
fn bidi_controls_and_duplicate_keys_are_refused() {
    let sb = Sandbox::enrolled();
    let bidi = write(
        &sb,
        "bidi.ndjson",
        "{\"name\":\"Li \u{202E}gnp.exe\",\"phone\":\"13812345678\",\"consent\":true}\n",
    );
    let err = sb.dev_fail(&["add", "--ndjson", s(&bidi)], &[]);
    assert!(err.contains("line 1") && err.contains("\"name\""), "{err}");
    assert!(err.contains("reorder"), "{err}");
    let dup = write(
        &sb,
        "dup.ndjson",
        "{\"name\":\"Li\",\"phone\":\"13812345678\",\"consent\":true}\n{\"name\":\"Li\",\"phone\":\"13812345678\",\"phone\":\"+442079460958\",\"consent\":true}\n",
    );
    let err = sb.dev_fail(&["add", "--ndjson", s(&dup)], &[]);
    assert!(err.contains("line 2") && err.contains("\"phone\""), "{err}");
    assert!(err.contains("twice"), "{err}");
    assert!(!err.contains("442079460958"), "{err}");
    assert_eq!(sb.pending(), 0, "nothing written");
}

/// Item 10: a refused `init` leaves nothing; `enroll --url` for a name the certificate does not
/// cover is refused at enrolment, and writes nothing.
#[test]
fn half_done_commands_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ho = tmp.path().join("ho");
    let out = Command::new(bin("sealbox-headoffice"))
        .args(["--data-dir", s(&ho), "init"])
        .env("SEALBOX_HO_PASSPHRASE", "too short")
        .output()
        .unwrap();
    let err = fail(out, &["init"]);
    assert!(err.contains("at least 12"), "{err}");
    assert!(!ho.exists(), "nothing left behind: {:?}", files_under(&ho));

    let sb = Sandbox::headoffice();
    let file = sb.tmp.path().join("b.json");
    let out = sb
        .ho_cmd(&[
            "enroll",
            "--device",
            "booth-9",
            "--event",
            EVENT,
            "--url",
            "https://ho.example.com:8443",
            "--out",
            s(&file),
        ])
        .output()
        .unwrap();
    let err = fail(out, &["enroll"]);
    assert!(
        err.contains("ho.example.com") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(!file.exists());
    assert!(!sb.ho_ok(&["status"]).contains("booth-9"));
    sb.ho_ok(&[
        "enroll",
        "--device",
        "booth-9",
        "--event",
        EVENT,
        "--url",
        "https://localhost:8443",
        "--out",
        s(&file),
    ]);
}

/// Item 11: refused sync requests (401, 400, 413, 409) leave a line in head office's log, with
/// neither the token nor anything from the body.
#[test]
fn refused_sync_requests_are_logged() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[("SEALBOX_HO_MAX_ENTRIES_PER_BATCH", "3")]);
    let token = sb.enrol_at(&server.url());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(sb.ho.join("ca.pem")).unwrap()).unwrap();
    let http = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("{}/v1/sync", server.url());
    let post = |auth: Option<&str>, body: Vec<u8>| {
        let mut r = http.post(&url).body(body);
        if let Some(t) = auth {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.send().unwrap().status().as_u16()
    };
    let entry = |id: uuid::Uuid, sealed: &[u8]| {
        serde_json::json!({"id": id, "event_id": EVENT, "captured_at_ms": 1,
            "consent_version": "v", "consent_sha256": "a".repeat(64),
            "sealed": sealbox_protocol::entry::b64_encode(sealed)})
    };
    let batch = |entries: Vec<serde_json::Value>| {
        serde_json::to_vec(
            &serde_json::json!({"batch_id": uuid::Uuid::now_v7(), "entries": entries}),
        )
        .unwrap()
    };
    assert_eq!(post(None, b"{}".to_vec()), 401);
    assert_eq!(post(Some(&token), b"Qzlog not json".to_vec()), 400);
    let four = (0..4)
        .map(|_| entry(uuid::Uuid::now_v7(), b"age-encryption.org/v1\nx"))
        .collect();
    assert_eq!(post(Some(&token), batch(four)), 413);
    let id = uuid::Uuid::now_v7();
    assert_eq!(
        post(
            Some(&token),
            batch(vec![entry(id, b"age-encryption.org/v1\na")])
        ),
        200
    );
    assert_eq!(
        post(
            Some(&token),
            batch(vec![entry(id, b"age-encryption.org/v1\nb")])
        ),
        409
    );
    // The log is written as the responses go out; give the writer a moment to flush.
    let mut log = String::new();
    for _ in 0..50 {
        log = server.log();
        if log.contains("status=409") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for status in ["401", "400", "413", "409"] {
        assert!(
            log.lines()
                .any(|l| l.contains("request refused") && l.contains(&format!("status={status}"))),
            "no log line for {status}:\n{log}"
        );
    }
    assert!(!log.contains(&token) && !log.contains("Qzlog"), "{log}");
}

/// Item 4: `import` checks where the receipt goes before it stores anything; an identical
/// receipt may be written again to the same path; entries already held are not "stored".
/// Item 5: the device's `export --out` refuses an existing file and a missing folder.
#[test]
fn import_and_export_check_their_output_first() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 12);
    // The device refuses an existing file (untouched) and a missing folder (not created).
    let existing = write(&sb, "existing.bin", "keep me");
    let err = sb.dev_fail(&["export", "--out", s(&existing)], &[]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    let usb = sb.tmp.path().join("usb");
    let err = sb.dev_fail(&["export", "--out", s(&usb.join("b.sealbox-batch"))], &[]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!usb.exists());
    assert_eq!(sb.pending(), 12, "nothing marked exported");

    let batch = sb.tmp.path().join("b1.sealbox-batch");
    sb.dev_ok(&["export", "--out", s(&batch)]);
    // A receipt into a missing folder: refused before anything is stored.
    let nowhere = sb.tmp.path().join("no-such-folder/r.json");
    let err = fail(sb.ho_import(&batch, &nowhere), &["import"]);
    assert!(err.contains("does not exist or cannot be written"), "{err}");
    assert_eq!(ho_counts(&sb.ho), (0, 0), "nothing stored");
    // A folder that cannot be written (made immutable: the tests run as root, whom a mode of
    // 0555 would not stop): refused before anything is stored, the folder left empty. Then the
    // same folder made writable takes the receipt.
    let locked = sb.tmp.path().join("read-only");
    std::fs::create_dir(&locked).unwrap();
    let chattr = |flag: &str| {
        let st = std::process::Command::new("chattr")
            .args([flag, s(&locked)])
            .status()
            .unwrap();
        assert!(st.success(), "chattr {flag}");
    };
    chattr("+i");
    assert!(
        std::fs::write(locked.join("probe"), "x").is_err(),
        "the folder really refuses a write"
    );
    let out = sb.ho_import(&batch, &locked.join("r.json"));
    chattr("-i");
    let err = fail(out, &["import"]);
    assert!(err.contains("does not exist or cannot be written"), "{err}");
    assert_eq!(ho_counts(&sb.ho), (0, 0), "nothing stored");
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);
    // Over another file: refused, nothing stored, the file untouched.
    let err = fail(sb.ho_import(&batch, &existing), &["import"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(ho_counts(&sb.ho), (0, 0));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    // Then it works, and again to the same path with the same receipt.
    let receipt = sb.tmp.path().join("r1.json");
    let out = ok(sb.ho_import(&batch, &receipt), &["import"]);
    assert!(out.contains("stored 12 entries"), "{out}");
    let first = std::fs::read(&receipt).unwrap();
    let out = ok(sb.ho_import(&batch, &receipt), &["import"]);
    assert!(
        out.contains("already held") && out.contains("already at"),
        "{out}"
    );
    assert_eq!(std::fs::read(&receipt).unwrap(), first);
    // A second file with the same entries (exported again before the receipt came back):
    // nothing new is stored, and the output says so; its receipt may not overwrite the first.
    let batch2 = sb.tmp.path().join("b2.sealbox-batch");
    sb.dev_ok(&["export", "--out", s(&batch2)]);
    let err = fail(sb.ho_import(&batch2, &receipt), &["import"]);
    assert!(err.contains("already exists"), "{err}");
    let receipt2 = sb.tmp.path().join("r2.json");
    let out = ok(sb.ho_import(&batch2, &receipt2), &["import"]);
    assert!(out.contains("already held: all 12 entries"), "{out}");
    assert!(!out.contains("stored 12"), "{out}");
    assert_eq!(ho_counts(&sb.ho), (12, 12));
    let out = sb.dev_ok(&["receipt", "import", s(&receipt2)]);
    assert!(out.contains("12 entries"), "{out}");
}

/// Item 2: a revoked device's entries can be accepted deliberately, audited, and its receipt
/// then erases them on the device.
#[test]
fn a_revoked_devices_entries_are_accepted_only_deliberately() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 5);
    sb.ho_ok(&["device", "revoke", "booth-1"]);
    let batch = sb.tmp.path().join("found.sealbox-batch");
    sb.dev_ok(&["export", "--out", s(&batch)]);
    let receipt = sb.tmp.path().join("found.receipt.json");
    let err = fail(sb.ho_import(&batch, &receipt), &["import"]);
    assert!(
        err.contains("revoked") && err.contains("--accept-revoked"),
        "{err}"
    );
    assert_eq!(ho_counts(&sb.ho), (0, 0));
    assert!(!receipt.exists());
    let out = sb.ho_ok(&[
        "import",
        s(&batch),
        "--receipt-out",
        s(&receipt),
        "--accept-revoked",
    ]);
    assert!(
        out.contains("revoked") && out.contains("stored 5 entries"),
        "{out}"
    );
    assert_eq!(ho_counts(&sb.ho), (5, 5));
    let conn = rusqlite::Connection::open(sb.ho.join("headoffice.db")).unwrap();
    let detail: String = conn
        .query_row(
            "SELECT detail FROM audit WHERE action = 'batch.imported' ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(detail.contains("\"accepted_revoked\":true"), "{detail}");
    assert!(sb.ho_ok(&["audit", "verify"]).contains("ok"));
    let out = sb.dev_ok(&["receipt", "import", s(&receipt)]);
    assert!(out.contains("5 entries"), "{out}");
    assert_eq!(sb.status()["exported"], 0);
}

/// Adds entries on the sandbox's device and delivers them to head office by batch file.
fn deliver(sb: &Sandbox, entries: &[serde_json::Value]) {
    let lines: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    let nd = write(sb, "deliver.ndjson", &lines.join("\n"));
    sb.dev_ok(&["add", "--ndjson", s(&nd)]);
    std::fs::remove_file(&nd).unwrap();
    let batch = sb
        .tmp
        .path()
        .join(format!("{}.batch", uuid::Uuid::now_v7()));
    sb.dev_ok(&["export", "--out", s(&batch)]);
    let receipt = batch.with_extension("receipt");
    ok(sb.ho_import(&batch, &receipt), &["import"]);
    sb.dev_ok(&["receipt", "import", s(&receipt)]);
}

/// LibreOffice Calc, headless, converting `file` to `to` (a filter spec) in `out`; `infilter`
/// for CSV input. Its profile lives in the sandbox, so tests can run it side by side.
fn libreoffice(sb: &Sandbox, file: &Path, to: &str, infilter: Option<&str>) -> std::path::PathBuf {
    let soffice = ["/usr/bin/soffice", "/usr/bin/libreoffice"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("LibreOffice Calc is missing: run the tests with `cargo xtask test` (it installs libreoffice-calc-nogui)");
    let out = sb.tmp.path().join(format!("lo-{}", uuid::Uuid::now_v7()));
    let mut c = Command::new(soffice);
    c.arg(format!(
        "-env:UserInstallation=file://{}",
        sb.tmp.path().join("lo-profile").display()
    ))
    .args([
        "--headless",
        "--norestore",
        "--convert-to",
        to,
        "--outdir",
        s(&out),
    ])
    .env("HOME", sb.tmp.path())
    .env("TMPDIR", &sb.tmpdir)
    .stdin(Stdio::null());
    if let Some(f) = infilter {
        c.arg(format!("--infilter={f}"));
    }
    c.arg(file);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let made: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(
        made.len(),
        1,
        "LibreOffice wrote {made:?}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    made[0].clone()
}

/// Item 12: the CRM files as a spreadsheet program reads them. LibreOffice opens the CSV (UTF-8,
/// its default options otherwise) and the XLSX: phones stay text with their `+`, nothing is read
/// as a formula or a number, masked and unmasked `+…` values are treated alike, times have a
/// fixed width; the XLSX has a bold, frozen header and columns wide enough for their values.
#[test]
fn crm_files_open_in_libreoffice_as_written() {
    use calamine::{Data, Reader};
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    deliver(
        &sb,
        &[
            serde_json::json!({"name": "张Qzlo三", "phone": "13811112222", "company": "+442079460958", "consent": true}),
            serde_json::json!({"name": "Alice Qzlo", "phone": "+44 20 7946 0958", "company": "=1+2", "consent": true}),
            serde_json::json!({"name": "Bob Qzlo", "phone": "+1 212 555 0100", "company": "-5", "email": "bob@example.com", "consent": true}),
        ],
    );
    let export = |name: &str, format: &str, unmasked: bool| {
        let p = sb.tmp.path().join(name);
        let mut args = vec![
            "export",
            "--event",
            EVENT,
            "--format",
            format,
            "--out",
            s(&p),
        ];
        if unmasked {
            args.push("--unmasked");
        }
        sb.ho_ok(&args);
        p
    };
    let csv_plain = export("plain.csv", "csv", true);
    let csv_masked = export("masked.csv", "csv", false);
    let xlsx_plain = export("plain.xlsx", "xlsx", true);

    // What a spreadsheet makes of each cell: LibreOffice turns the CSV into a workbook.
    let cells = |path: &Path| -> Vec<Vec<Data>> {
        let mut wb: calamine::Xlsx<_> = calamine::open_workbook(path).unwrap();
        let sheet = wb.worksheet_range_at(0).unwrap().unwrap();
        sheet.rows().map(|r| r.to_vec()).collect()
    };
    let col = |rows: &[Vec<Data>], name: &str| {
        rows[0]
            .iter()
            .position(|h| h.to_string().starts_with(name))
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let text = |d: &Data| match d {
        Data::String(s) => s.clone(),
        other => panic!("read as {other:?}, not as text"),
    };
    let utf8 = Some("CSV:44,34,76,1");
    let rows = cells(&libreoffice(&sb, &csv_plain, "xlsx", utf8));
    let (phone, company, at) = (
        col(&rows, "phone"),
        col(&rows, "company"),
        col(&rows, "captured_at"),
    );
    let phones: Vec<String> = rows[1..].iter().map(|r| text(&r[phone])).collect();
    assert_eq!(
        phones,
        ["+86 138 1111 2222", "+44 2079460958", "+1 2125550100"]
    );
    let companies: Vec<String> = rows[1..].iter().map(|r| text(&r[company])).collect();
    assert_eq!(
        companies,
        ["'+442079460958", "'=1+2", "'-5"],
        "defused, never run or read as numbers"
    );
    for r in &rows[1..] {
        let t = text(&r[at]);
        assert_eq!(t.len(), "2026-12-02T09:30:05.120Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }
    // Masked: the same rule, no stray quote on a masked `+…` phone.
    let rows = cells(&libreoffice(&sb, &csv_masked, "xlsx", utf8));
    let phones: Vec<String> = rows[1..]
        .iter()
        .map(|r| text(&r[col(&rows, "phone")]))
        .collect();
    assert_eq!(phones, ["138****2222", "+44****0958", "+12****0100"]);
    let names: Vec<String> = rows[1..]
        .iter()
        .map(|r| text(&r[col(&rows, "name")]))
        .collect();
    assert_eq!(names[0], "张****", "UTF-8 read as UTF-8");

    // The XLSX read back by LibreOffice and written as CSV: the same texts.
    let back = libreoffice(
        &sb,
        &xlsx_plain,
        "csv:Text - txt - csv (StarCalc):44,34,76,1",
        None,
    );
    let mut rdr = csv::Reader::from_path(&back).unwrap();
    let header = rdr.headers().unwrap().clone();
    let p = header.iter().position(|h| h.starts_with("phone")).unwrap();
    let phones: Vec<String> = rdr.records().map(|r| r.unwrap()[p].to_string()).collect();
    assert_eq!(
        phones,
        ["+86 138 1111 2222", "+44 2079460958", "+1 2125550100"]
    );

    // The XLSX as LibreOffice sees it (flat ODF): a bold header row, frozen, and columns wider
    // than the default (0.89 in) where the values are longer.
    let fods = std::fs::read_to_string(libreoffice(&sb, &xlsx_plain, "fods", None)).unwrap();
    assert!(fods.contains("fo:font-weight=\"bold\""), "a bold header");
    // Frozen panes are view settings, which a headless conversion drops: read them from the
    // workbook itself.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&xlsx_plain).unwrap()).unwrap();
    let mut sheet = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name("xl/worksheets/sheet1.xml").unwrap(),
        &mut sheet,
    )
    .unwrap();
    assert!(
        sheet.contains("ySplit=\"1\"") && sheet.contains("state=\"frozen\""),
        "the header row is frozen: {}",
        &sheet[..sheet.len().min(600)]
    );
    let widths: Vec<f64> = fods
        .split("style:column-width=\"")
        .skip(1)
        .filter_map(|w| w.split("in\"").next().and_then(|v| v.parse().ok()))
        .collect();
    assert!(
        widths.iter().any(|w| *w > 2.5),
        "wide columns for the ids and headers: {widths:?}"
    );
}

/// The ```sh blocks of the README from "## A short tour" on, in order.
fn readme_tour() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let mut rest = &readme[readme
        .find("## A short tour")
        .expect("a tour in the README")..];
    let mut blocks = Vec::new();
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + "```sh\n".len()..];
        let end = body.find("\n```").expect("a closed block");
        blocks.push(body[..end].to_string());
        rest = &body[end + "\n```".len()..];
    }
    blocks
}

/// Removes the tour's device key from the keychain however the test ends.
struct ForgetKey(std::path::PathBuf);

impl Drop for ForgetKey {
    fn drop(&mut self) {
        if let Ok(Some(m)) = sealbox_device::files::DataDir::new(&self.0).read_device_json() {
            let _ = OsKeychain.delete(&m.keychain_service(), KEY_ACCOUNT);
        }
    }
}

/// Item 1: the README's tour, run top to bottom as written, by a shell, with the built binaries
/// on `PATH`. Only what cannot be literal is mapped: `/media/usb` to a folder in the sandbox,
/// port 8443 to a free port, `serve` (which runs until stopped, "in another terminal") to the
/// background, and the PIN prompt answered by `SEALBOX_PIN` as a script would. A README edit that
/// breaks the tour breaks this test.
#[test]
fn readme_tour_runs_as_written() {
    require_keychain();
    let blocks = readme_tour();
    assert!(blocks.len() >= 5, "{blocks:?}");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _key = ForgetKey(root.join("dev"));
    std::fs::create_dir_all(root.join("examples")).unwrap();
    for example in ["trade-show.json", "entry.json", "paper-forms.ndjson"] {
        std::fs::copy(
            workspace().join("examples").join(example),
            root.join("examples").join(example),
        )
        .unwrap();
    }
    let usb = root.join("media/usb");
    std::fs::create_dir_all(&usb).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut script = String::from("set -eux\n");
    for block in &blocks {
        for line in block.lines() {
            let line = line
                .replace("/media/usb", s(&usb))
                .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"));
            if line.contains(" serve ") {
                let command = line.split(" #").next().unwrap();
                script.push_str(&format!(
                    "{command} > serve.log 2>&1 &\nSERVE=$!\ntrap 'kill $SERVE' EXIT\n\
                     for i in $(seq 100); do grep -q 'listening on' serve.log && break; sleep 0.1; done\n"
                ));
            } else {
                script.push_str(&line);
                script.push('\n');
            }
        }
    }
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("PATH", path)
        .env("SEALBOX_PIN", PIN)
        .env("SEALBOX_HO_PUBLIC_URL", format!("https://127.0.0.1:{port}"))
        .env("TMPDIR", root.join("tmp"))
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("SEALBOX_LANG")
        .env_remove("SEALBOX_LOG")
        .env_remove("SEALBOX_DATA_DIR")
        .env_remove("SEALBOX_HO_DATA_DIR")
        .env_remove("SEALBOX_HO_PASSPHRASE")
        .env_remove("SEALBOX_EXPORT_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the tour broke:\n{said}");
    // Where the tour leaves things: five registrations reached head office (three by sync, one
    // by batch file, one accepted from the revoked device); the deletion request took 张三's;
    // nothing is left on the device.
    let ho: serde_json::Value = serde_json::from_slice(
        &Command::new(bin("sealbox-headoffice"))
            .args(["--data-dir", s(&root.join("ho")), "status", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(ho["events"][0]["entries"], 4, "{ho}");
    assert_eq!(ho["devices"][0]["revoked"], true, "{ho}");
    assert!(said.contains("sent 3 entries"), "{said}");
    assert!(said.contains("deleted 1 entries"), "{said}");
    let st: serde_json::Value = serde_json::from_slice(
        &Command::new(bin("sealbox"))
            .args(["--data-dir", s(&root.join("dev")), "status", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        (&st["pending"], &st["exported"], &st["erased"]),
        (&0.into(), &0.into(), &5.into()),
        "{st}"
    );
    assert!(root.join("crm.csv").exists() && root.join("crm.xlsx").exists());
}

/// Every form a value can take in a file: UTF-8, JSON-escaped (`\uXXXX`, either case) and
/// UTF-16 in both byte orders.
pub(crate) fn forms(text: &str) -> Vec<Vec<u8>> {
    let escaped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                c.encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect()
            }
        })
        .collect();
    let utf16 = |le: bool| -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() })
            .collect()
    };
    let mut out = vec![
        text.as_bytes().to_vec(),
        escaped.clone().into_bytes(),
        escaped.to_uppercase().replace("\\U", "\\u").into_bytes(),
        utf16(true),
        utf16(false),
    ];
    out.dedup();
    out
}

/// Every file under `dir` holding any of `needles`, with which one.
pub(crate) fn hits(dir: &Path, needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files_under(dir) {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        for (name, n) in needles {
            if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                found.push(format!("{name} in {}", f.display()));
            }
        }
    }
    found
}

/// The canary scan, everywhere a value or a key could end up: a visitor's name (Chinese, so its
/// escaped and UTF-16 forms differ), phone and email, and the device's database key, API token
/// and signing key in raw, hex and base64 form, are searched in every file of the device, head
/// office, the temp directory, `HOME` and `XDG_RUNTIME_DIR` (both pointed into the sandbox), and
/// in every command's output, with tracing at its most verbose; through enrolment, entry, list,
/// status, export, import, receipt, sync and the server's log.
#[test]
fn canaries_appear_nowhere_even_with_verbose_tracing() {
    let sb = Sandbox::headoffice();
    let home = sb.tmp.path().join("home");
    let xdg = sb.tmp.path().join("xdg-runtime");
    for d in [&home, &xdg] {
        std::fs::create_dir_all(d).unwrap();
    }
    let env = |c: &mut Command| {
        c.env("SEALBOX_LOG", "trace")
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &xdg);
    };
    let server = HoServer::start(
        &sb.ho,
        &[
            ("SEALBOX_LOG", "trace"),
            ("HOME", s(&home)),
            ("XDG_RUNTIME_DIR", s(&xdg)),
        ],
    );
    let enrol = sb.tmp.path().join("e.json");
    sb.ho_ok(&[
        "enroll",
        "--device",
        "booth-1",
        "--event",
        EVENT,
        "--url",
        &server.url(),
        "--out",
        s(&enrol),
    ]);
    let enrolment: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&enrol).unwrap()).unwrap();
    let mut output = Vec::<u8>::new();
    let mut run = |mut c: Command| {
        env(&mut c);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        output.extend_from_slice(&o.stdout);
        output.extend_from_slice(&o.stderr);
    };
    run(sb.dev_cmd(&["enroll", s(&enrol), "--shred"]));
    let mut c = sb.dev_cmd(&["pin", "set"]);
    c.env("SEALBOX_PIN", PIN);
    run(c);
    let (name, phone, email) = ("钱Qzscan多", "13977776543", "qzscan.mail@example.org");
    let entry = serde_json::json!({"name": name, "phone": phone, "email": email, "consent": true});
    let nd = write(&sb, "scan.ndjson", &format!("{entry}\n{entry}\n"));
    run(sb.dev_cmd(&["add", "--ndjson", s(&nd)]));
    std::fs::remove_file(&nd).unwrap();
    let mut c = sb.dev_cmd(&["list", "--json"]);
    c.env("SEALBOX_PIN", PIN);
    run(c);
    run(sb.dev_cmd(&["status", "--json"]));
    let batch = sb.tmp.path().join("scan.sealbox-batch");
    run(sb.dev_cmd(&["export", "--out", s(&batch)]));
    let receipt = sb.tmp.path().join("scan.receipt.json");
    run(sb.ho_cmd(&["import", s(&batch), "--receipt-out", s(&receipt)]));
    run(sb.dev_cmd(&["receipt", "import", s(&receipt)]));
    let nd = write(&sb, "scan2.ndjson", &format!("{entry}\n"));
    run(sb.dev_cmd(&["add", "--ndjson", s(&nd)]));
    std::fs::remove_file(&nd).unwrap();
    run(sb.dev_cmd(&["sync"]));
    assert_eq!(sb.status()["erased"], 3);

    // The secrets, read from where they are kept.
    let dev = sealbox_device::Device::open(&sb.dev, &OsKeychain).unwrap();
    let db_key = OsKeychain
        .get(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap()
        .unwrap();
    let secrets = [
        ("database key", db_key.expose().to_vec()),
        ("API token", dev.token().unwrap().expose().to_vec()),
        ("signing key", dev.signing_key().unwrap().expose().to_vec()),
    ];
    drop(dev);
    assert_eq!(
        enrolment["device_token"].as_str().unwrap(),
        sealbox_protocol::entry::b64_encode(&secrets[1].1)
    );
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for v in [name, phone, email, "Qzscan"] {
        for f in forms(v) {
            needles.push((format!("{v:?}"), f));
        }
    }
    for (what, raw) in &secrets {
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        needles.push((format!("{what} (raw)"), raw.clone()));
        needles.push((format!("{what} (hex)"), hex.clone().into_bytes()));
        needles.push((format!("{what} (HEX)"), hex.to_uppercase().into_bytes()));
        let b64 = sealbox_protocol::entry::b64_encode(raw);
        needles.push((
            format!("{what} (base64)"),
            b64.trim_end_matches('=').as_bytes().to_vec(),
        ));
    }
    let log = server.log();
    drop(server);
    // Positive controls: the scan finds what is there, and the places scanned are not empty.
    let probe = sb.tmp.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::write(probe.join("x"), forms(name)[3].clone()).unwrap();
    assert!(!hits(&probe, &needles).is_empty(), "the scan sees UTF-16");
    let verbose = std::fs::read_to_string(sb.dev.join("logs/sealbox.log")).unwrap();
    assert!(
        verbose.contains("TRACE") || verbose.contains("DEBUG"),
        "tracing was verbose"
    );
    assert!(log.contains("batch stored"), "the server logged the sync");
    for dir in [&sb.dev, &sb.ho, &sb.tmpdir, &home, &xdg] {
        let found = hits(dir, &needles);
        assert!(found.is_empty(), "{found:?}");
    }
    let batch_dir: Vec<_> = std::fs::read_dir(sb.tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    for f in batch_dir {
        let bytes = std::fs::read(&f).unwrap();
        for (what, n) in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{what} in {}",
                f.display()
            );
        }
    }
    for (what, n) in &needles {
        for (place, bytes) in [
            ("command output", &output),
            ("server log", &log.as_bytes().to_vec()),
        ] {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{what} in the {place}"
            );
        }
    }
}

/// The plaintext of every page of a SQLCipher 4 database file with a raw key: AES-256-CBC per
/// page, the IV in the page's 80 reserved bytes (16 IV + 64 HMAC-SHA512), page 1 after its salt.
fn sqlcipher_pages(file: &[u8], key: &[u8; 32]) -> Vec<Vec<u8>> {
    use aes::cipher::{BlockDecryptMut, KeyIvInit};
    const PAGE: usize = 4096;
    const RESERVE: usize = 80;
    assert_eq!(file.len() % PAGE, 0, "whole pages");
    file.chunks(PAGE)
        .enumerate()
        .map(|(i, page)| {
            let start = if i == 0 { 16 } else { 0 };
            let iv = &page[PAGE - RESERVE..PAGE - RESERVE + 16];
            let mut data = page[start..PAGE - RESERVE].to_vec();
            cbc::Decryptor::<aes::Aes256>::new(key.into(), iv.into())
                .decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut data)
                .unwrap();
            data
        })
        .collect()
}

/// `secure_delete` as it acts on the file, not as a pragma reads: an entry's sealed payload and
/// its display summary are in the database's pages before the receipt, and after the receipt
/// erased them (and a checkpoint moved the WAL into the file) no page, free or used, holds a
/// byte sequence of either.
#[test]
fn erased_entries_leave_zeroed_pages() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 20);
    let key: [u8; 32] = OsKeychain
        .get(&sb.keychain_service(), KEY_ACCOUNT)
        .unwrap()
        .unwrap()
        .expose()
        .to_owned();
    let db = sb.dev.join("sealbox.db");
    // Pieces of what each entry keeps: 48 bytes from inside its sealed payload, and from inside
    // its sealed display summary (the summary itself is never in the clear in a page).
    let (pieces, summaries): (Vec<Vec<u8>>, Vec<Vec<u8>>) = {
        let dev = sealbox_device::Device::open(&sb.dev, &OsKeychain).unwrap();
        let envs = dev.pending_envelopes(100).unwrap();
        let summaries = dev
            .connection()
            .prepare("SELECT summary_sealed FROM entries")
            .unwrap()
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|s| s.unwrap()[100..148].to_vec())
            .collect();
        dev.connection()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        (
            envs.iter().map(|e| e.sealed[100..148].to_vec()).collect(),
            summaries,
        )
    };
    let found =
        |pages: &[Vec<u8>], n: &[u8]| pages.iter().any(|p| p.windows(n.len()).any(|w| w == n));
    let pages = sqlcipher_pages(&std::fs::read(&db).unwrap(), &key);
    assert!(
        pages[0].starts_with(&[0x10, 0x00, 2, 2]),
        "page 1 decrypts to a SQLite header: page size 4096, WAL"
    );
    assert!(
        pieces.iter().all(|p| found(&pages, p)),
        "before the receipt every sealed payload is in the decrypted pages"
    );
    assert!(
        summaries.iter().all(|p| found(&pages, p)),
        "and every sealed summary"
    );
    assert!(!found(&pages, b"139****"), "never a summary in the clear");

    let batch = sb.tmp.path().join("b.sealbox-batch");
    sb.dev_ok(&["export", "--out", s(&batch)]);
    let receipt = sb.tmp.path().join("r.json");
    ok(sb.ho_import(&batch, &receipt), &["import"]);
    sb.dev_ok(&["receipt", "import", s(&receipt)]);
    assert_eq!(sb.status()["erased"], 20);
    {
        let dev = sealbox_device::Device::open(&sb.dev, &OsKeychain).unwrap();
        dev.connection()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let pages = sqlcipher_pages(&std::fs::read(&db).unwrap(), &key);
    let left: Vec<usize> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| found(&pages, p))
        .map(|(i, _)| i)
        .collect();
    assert!(
        left.is_empty(),
        "sealed payloads of erased entries left in pages: {left:?}"
    );
    for s in &summaries {
        assert!(!found(&pages, s), "a sealed summary left");
    }
    assert!(
        !found(&pages, b"139****"),
        "no masked phone left in any page"
    );
}

/// The device's HTTPS client never shows its token: built for real from a real CA (the check in
/// `sync.rs` was skipped whenever its truncated certificate could not build a client, which was
/// always), and looked at in every form the token takes.
#[test]
fn the_sync_client_never_shows_its_token() {
    let tls = sealbox_headoffice::keys::make_tls(&["127.0.0.1"]).unwrap();
    let raw = [0x5au8; 32];
    let token = sealbox_protocol::Secret32::from_bytes(raw);
    let trust = sealbox_device::device::Trust {
        server_url: "https://127.0.0.1:8443".into(),
        ca_cert_pem: tls.ca_cert_pem.clone(),
        ho_verifying_key: String::new(),
    };
    let client =
        sealbox_device::sync::SyncClient::new(&trust, &token, std::time::Duration::from_secs(1))
            .expect("a client from a real CA certificate");
    let shown = format!("{client:?} {client:#?} {token:?}");
    let b64 = sealbox_protocol::entry::b64_encode(&raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    for form in [
        b64.as_str(),
        b64.trim_end_matches('='),
        &hex,
        "Bearer",
        "90, 90",
    ] {
        assert!(!shown.contains(form), "{form} in {shown}");
    }
    assert!(
        shown.contains("127.0.0.1:8443"),
        "the Debug output is real: {shown}"
    );
}

/// The pragmas the README promises, read from the live connections the device and head office
/// work on (not from the code that sets them): WAL, `synchronous=FULL`, `secure_delete`,
/// `temp_store=MEMORY`, SQLCipher's memory security on the device.
#[test]
fn pragmas_as_set_on_the_live_connections() {
    let sb = Sandbox::enrolled();
    let dev = sealbox_device::Device::open(&sb.dev, &OsKeychain).unwrap();
    let conn = dev.connection();
    let get = |c: &rusqlite::Connection, p: &str| -> String {
        c.query_row(&format!("PRAGMA {p}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .unwrap()
    };
    assert_eq!(get(conn, "journal_mode"), "wal");
    assert_eq!(get(conn, "synchronous"), "2", "FULL");
    assert_eq!(get(conn, "secure_delete"), "1");
    assert_eq!(get(conn, "temp_store"), "2", "MEMORY");
    assert_eq!(get(conn, "cipher_memory_security"), "1");
    assert_eq!(get(conn, "foreign_keys"), "1");
    assert!(
        !get(conn, "cipher_version").is_empty(),
        "SQLCipher, not SQLite"
    );
    drop(dev);
    let ho = sealbox_headoffice::db::open(&sb.ho.join("headoffice.db")).unwrap();
    assert_eq!(get(&ho, "journal_mode"), "wal");
    assert_eq!(get(&ho, "synchronous"), "2", "FULL");
    assert_eq!(get(&ho, "secure_delete"), "1");
}

/// Runs `c` and SIGKILLs it after `delay` unless it finished; returns whether the kill landed.
fn kill_after(mut c: Command, delay: std::time::Duration) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait().unwrap();
    status.signal() == Some(9)
}

/// The `i`th kill delay for a command that takes `full` uncut: 16 steps from 0 to 1.2 × `full`,
/// then longer ones, in case the machine got slower since `full` was measured.
fn spread(full: std::time::Duration, i: u32) -> std::time::Duration {
    if i < 16 {
        full.mul_f64(1.2 * i as f64 / 16.0)
    } else {
        full.mul_f64(1.5 + (i - 16) as f64 * 0.5)
    }
}

fn timed(mut c: Command) -> std::time::Duration {
    let t = std::time::Instant::now();
    assert!(c.output().unwrap().status.success());
    t.elapsed()
}

/// A PIN change killed at any moment leaves the old PIN or the new one, never neither, and an
/// audit chain that verifies. Kills are spread over the command's whole run and both sides of
/// its commit are seen.
#[test]
fn a_pin_change_killed_at_any_moment_leaves_one_pin() {
    let sb = Sandbox::enrolled();
    let pins = [PIN, "802517"];
    let change = |from: &str, to: &str| {
        let mut c = sb.dev_cmd(&["pin", "set"]);
        c.env("SEALBOX_PIN", from).env("SEALBOX_NEW_PIN", to);
        c
    };
    let works = |pin: &str| {
        sb.dev_cmd(&["list"])
            .env("SEALBOX_PIN", pin)
            .output()
            .unwrap()
            .status
            .success()
    };
    // Back and forth once, uncut: how long a change takes.
    let full = timed(change(pins[0], pins[1])) + timed(change(pins[1], pins[0]));
    let full = full / 2;
    let mut current = 0;
    let (mut kept_old, mut took_new, mut kills) = (0, 0, 0);
    for i in 0..40 {
        if i >= 16 && kept_old > 0 && took_new > 0 {
            break;
        }
        let next = 1 - current;
        let delay = spread(full, i);
        kills += kill_after(change(pins[current], pins[next]), delay) as u32;
        // The new PIN first: a miss is followed by a success, so no lockout builds up.
        if works(pins[next]) {
            took_new += 1;
            current = next;
        } else {
            assert!(works(pins[current]), "round {i}: neither PIN works");
            kept_old += 1;
        }
        assert!(sb.dev_ok(&["audit", "verify"]).contains("ok"), "round {i}");
    }
    eprintln!("{kills} kills landed; old PIN kept {kept_old}×, new PIN taken {took_new}×");
    assert!(
        kills > 0 && kept_old > 0 && took_new > 0,
        "both sides of the commit were hit"
    );
}

/// A recovery killed at any moment leaves either the key restored, or the escrow key file
/// intact so the recovery can run again; never the file shredded and the key still missing.
#[test]
fn a_recovery_killed_at_any_moment_can_be_finished() {
    let sb = Sandbox::enrolled();
    sb.add_many(0, 3);
    let key_file = sb.tmp.path().join("escrow-key.json");
    sb.ho_ok(&[
        "escrow",
        "open",
        s(&sb.dev.join("escrow.age")),
        "--out",
        s(&key_file),
    ]);
    let pristine = std::fs::read(&key_file).unwrap();
    let service = sb.keychain_service();
    let lose = || OsKeychain.delete(&service, KEY_ACCOUNT).unwrap();
    let recover = || sb.dev_cmd(&["recover", "--escrow-key", s(&key_file)]);
    lose();
    let full = timed(recover());
    let (mut restored, mut not_yet, mut kills) = (0, 0, 0);
    for i in 0..40 {
        if i >= 16 && restored > 0 && not_yet > 0 {
            break;
        }
        std::fs::write(&key_file, &pristine).unwrap();
        lose();
        let delay = spread(full, i);
        kills += kill_after(recover(), delay) as u32;
        let has_key = OsKeychain.get(&service, KEY_ACCOUNT).unwrap().is_some();
        if has_key {
            restored += 1;
        } else {
            not_yet += 1;
            assert_eq!(
                std::fs::read(&key_file).ok(),
                Some(pristine.clone()),
                "round {i}: the key is missing and the escrow key file is no longer whole"
            );
            sb.dev_ok(&["recover", "--escrow-key", s(&key_file)]);
        }
        assert_eq!(sb.pending(), 3, "round {i}");
        assert!(sb.dev_ok(&["audit", "verify"]).contains("ok"), "round {i}");
    }
    eprintln!("{kills} kills landed; restored {restored}×, not yet {not_yet}×");
    assert!(
        kills > 0 && restored > 0 && not_yet > 0,
        "both sides were hit"
    );
}

/// An export killed at any moment leaves no half file at the path the manager carries away (the
/// file is whole or absent, and no temp file stays beside it), and whatever it did, the next
/// export carries every entry not yet acknowledged. A receipt import killed at any moment leaves
/// entries either waiting or erased, never lost or stuck: run again, it finishes, and head
/// office holds each entry once. Kills are spread over each command's run; both sides of each
/// commit are seen.
#[test]
fn an_export_or_a_receipt_import_killed_at_any_moment_loses_nothing() {
    let sb = Sandbox::headoffice();
    sb.enrol_at("https://127.0.0.1:9");
    sb.add_many(0, 300);
    let usb = sb.tmp.path().join("usb");
    std::fs::create_dir(&usb).unwrap();
    let export = |name: &str| {
        let mut c = sb.dev_cmd(&["export", "--out", s(&usb.join(name))]);
        c.env_remove("SEALBOX_LOG");
        c
    };
    let full = timed(export("uncut.sealbox-batch"));
    std::fs::remove_file(usb.join("uncut.sealbox-batch")).unwrap();
    let (mut absent, mut whole, mut kills) = (0, 0, 0);
    for i in 0..40 {
        if i >= 16 && absent > 0 && whole > 0 {
            break;
        }
        let name = format!("cut-{i}.sealbox-batch");
        kills += kill_after(export(&name), spread(full, i)) as u32;
        let names: Vec<String> = std::fs::read_dir(&usb)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("cut-{i}")))
            .collect();
        assert!(
            names.is_empty() || names == [name.clone()],
            "round {i}: a temp file stays: {names:?}"
        );
        if names.is_empty() {
            absent += 1;
        } else {
            // Whole: head office takes it.
            let receipt = sb.tmp.path().join(format!("r-{i}.json"));
            ok(sb.ho_import(&usb.join(&name), &receipt), &["import"]);
            std::fs::remove_file(&receipt).unwrap();
            whole += 1;
        }
        let st = sb.status();
        assert_eq!(
            st["pending"].as_u64().unwrap() + st["exported"].as_u64().unwrap(),
            300,
            "round {i}: {st}"
        );
    }
    // The narrowest window, held open by the debug build's pause: the file is written and
    // renamed into place, the entries are not yet marked exported. Killed there, the file is
    // whole and the entries still count as waiting.
    let paused = usb.join("paused.sealbox-batch");
    let mut c = export("paused.sealbox-batch");
    c.env("SEALBOX_TEST_PAUSE_AT", "export.after_write");
    kill_at_pause(c, "export.after_write");
    let receipt = sb.tmp.path().join("r-paused.json");
    ok(sb.ho_import(&paused, &receipt), &["import"]);
    whole += 1;
    eprintln!("export: {kills} kills landed; file absent {absent}×, whole {whole}×");
    assert!(kills > 0 && absent > 0 && whole > 0, "both sides were hit");

    // The last export carries all 300; its receipt is imported, killed at any moment.
    let last = usb.join("last.sealbox-batch");
    sb.dev_ok(&["export", "--out", s(&last)]);
    let receipt = sb.tmp.path().join("receipt.json");
    ok(sb.ho_import(&last, &receipt), &["import"]);
    assert_eq!(ho_counts(&sb.ho).0, 300, "each entry once at head office");
    let apply = || {
        let mut c = sb.dev_cmd(&["receipt", "import", s(&receipt)]);
        c.env_remove("SEALBOX_LOG");
        c
    };
    // How long an apply takes, on a copy of the device (the keychain entry is shared).
    let copy = sb.tmp.path().join("dev-copy");
    copy_dir(&sb.dev, &copy);
    let held = sb.tmp.path().join("dev-held");
    copy_dir(&sb.dev, &held);
    let t = std::time::Instant::now();
    ok(
        sb.dev_cmd_in(&copy, &["receipt", "import", s(&receipt)])
            .output()
            .unwrap(),
        &["receipt", "import"],
    );
    let full = t.elapsed();
    let (mut before, mut after, mut kills) = (0, 0, 0);
    for i in 0..40 {
        let killed = kill_after(apply(), spread(full, i));
        kills += killed as u32;
        let st = sb.status();
        let (waiting, erased) = (
            st["exported"].as_u64().unwrap(),
            st["erased"].as_u64().unwrap(),
        );
        assert!(
            (waiting, erased) == (300, 0) || (waiting, erased) == (0, 300),
            "round {i}: all or nothing: {st}"
        );
        assert!(sb.dev_ok(&["audit", "verify"]).contains("ok"), "round {i}");
        if erased == 300 {
            after += 1;
            break;
        }
        assert!(
            killed,
            "round {i}: an import that was not killed left entries waiting"
        );
        before += 1;
    }
    // Killed right after the commit, on another copy (the debug build's pause holds that
    // moment open): everything is erased.
    let mut c = sb.dev_cmd_in(&held, &["receipt", "import", s(&receipt)]);
    c.env("SEALBOX_TEST_PAUSE_AT", "receipt.after_commit");
    kill_at_pause(c, "receipt.after_commit");
    let st: serde_json::Value = serde_json::from_str(&ok(
        sb.dev_cmd_in(&held, &["status", "--json"])
            .output()
            .unwrap(),
        &["status"],
    ))
    .unwrap();
    assert_eq!(
        (st["exported"].as_u64(), st["erased"].as_u64()),
        (Some(0), Some(300)),
        "killed after the commit: {st}"
    );
    after += 1;
    eprintln!("receipt import: {kills} kills landed; before the commit {before}×, after {after}×");
    assert!(kills > 0 && before > 0 && after > 0, "both sides were hit");
    // Run again, it says so and changes nothing.
    assert!(sb
        .dev_ok(&["receipt", "import", s(&receipt)])
        .contains("already applied"));
}

/// Runs `c` (a debug build with `SEALBOX_TEST_PAUSE_AT` set), waits until it says it paused at
/// `point`, and SIGKILLs it there.
fn kill_at_pause(mut c: Command, point: &str) {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let said = format!("sealbox: paused at {point}");
    let mut seen = false;
    for line in err.lines() {
        if line.unwrap_or_default().contains(&said) {
            seen = true;
            break;
        }
    }
    assert!(seen, "never paused at {point}");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
