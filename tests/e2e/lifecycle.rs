//! The lifecycle on the paths next to the tested ones: refusals that last, deletions followed by
//! late deliveries, `serve`'s own purge, entries that do not open, wrong device clocks, a
//! destination that refuses a chmod. Each against the real binaries, the real keychain and a
//! real head office over TLS.

use sealbox_device::{Device, OsKeychain};
use sealbox_tests::server::{ho_counts, HoServer};
use sealbox_tests::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn ho_status(sb: &Sandbox) -> serde_json::Value {
    json(&sb.ho_ok(&["status", "--json"]))
}

/// Posts envelopes as the device would, under a new batch id: `(status, body)`.
fn post(
    http: &reqwest::blocking::Client,
    server: &HoServer,
    token: &str,
    entries: &[sealbox_protocol::EntryEnvelope],
) -> (u16, serde_json::Value) {
    let req = sealbox_protocol::sync::SyncRequest {
        batch_id: uuid::Uuid::now_v7(),
        entries: entries.to_vec(),
    };
    sealbox_tests::server::post_sync(http, server, token, &req)
}

/// A lasting refusal for size never blocks the device: head office takes at most 3 entries a
/// batch (or a small body), the device asks for 4 (or 10), and everything is delivered in
/// smaller pages. Before, the device resent the same refused batch forever.
#[test]
fn a_batch_refused_for_its_size_is_sent_again_in_smaller_pages() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[("SEALBOX_HO_MAX_ENTRIES_PER_BATCH", "3")]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 4);
    let report = json(&sb.dev_ok(&["sync", "--page", "4", "--json"]));
    assert_eq!(
        (report["erased"].as_u64(), report["pending"].as_u64()),
        (Some(4), Some(0))
    );
    assert!(report["batches"].as_u64().unwrap() >= 2);
    assert_eq!(ho_counts(&sb.ho), (4, 4));
    assert!(
        server.log().contains("too_many_entries"),
        "the refusal is logged at head office"
    );
    drop(server);

    // A body limit: ten entries of about 1.5 KB each do not fit in 6,000 bytes together.
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[("SEALBOX_HO_MAX_BODY_BYTES", "6000")]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 10);
    let report = json(&sb.dev_ok(&["sync", "--json"]));
    assert_eq!(
        (report["erased"].as_u64(), report["pending"].as_u64()),
        (Some(10), Some(0))
    );
    assert_eq!(ho_counts(&sb.ho), (10, 10));
}

/// An entry head office will not take (here: one whose consent version an older release let
/// through) is quarantined with head office's reason, the others are delivered, it is counted
/// and shown, it goes into the next batch file, head office keeps it in its own quarantine on
/// import, and only that receipt erases it.
#[test]
fn an_entry_refused_on_its_own_is_quarantined_and_blocks_nothing() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 5);
    let bad = {
        let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let id = dev.pending_envelopes(5).unwrap()[2].id;
        dev.connection()
            .execute(
                "UPDATE entries SET consent_version = ?1 WHERE id = ?2",
                rusqlite::params!["v".repeat(150), id.to_string()],
            )
            .unwrap();
        id
    };
    let report = json(&sb.dev_ok(&["sync", "--json"]));
    assert_eq!(report["erased"], 4);
    assert_eq!(report["quarantined"], 1);
    let st = sb.status();
    assert_eq!(
        (st["pending"].as_u64(), st["refused"].as_u64()),
        (Some(0), Some(1))
    );
    let list = json(&sb.dev_ok_env(&["list", "--json"], &[("SEALBOX_PIN", PIN)]));
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], bad.to_string());
    assert_eq!(rows[0]["state"], "quarantined");
    assert_eq!(rows[0]["refused_code"], "bad_consent_version");
    // A second sync sends nothing and erases nothing: the quarantined entry no longer blocks,
    // and is never erased without a receipt.
    let again = json(&sb.dev_ok(&["sync", "--json"]));
    assert_eq!(
        (again["batches"].as_u64(), again["erased"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(sb.status()["refused"], 1);
    assert_eq!(ho_counts(&sb.ho), (4, 4));

    // The batch file carries it; head office keeps it in its quarantine and acknowledges it.
    let batch = sb.tmp.path().join("q.sealbox-batch");
    let receipt = sb.tmp.path().join("q.receipt.json");
    sb.dev_ok(&["export", "--out", batch.to_str().unwrap()]);
    let out = ok(sb.ho_import(&batch, &receipt), &["import"]);
    assert!(out.contains("quarantine"), "{out}");
    let hs = ho_status(&sb);
    assert_eq!(
        (
            hs["events"][0]["entries"].as_u64(),
            hs["events"][0]["quarantined"].as_u64()
        ),
        (Some(4), Some(1))
    );
    sb.dev_ok(&["receipt", "import", receipt.to_str().unwrap()]);
    let st = sb.status();
    assert_eq!(
        (
            st["pending"].as_u64(),
            st["refused"].as_u64(),
            st["erased"].as_u64()
        ),
        (Some(0), Some(0), Some(5))
    );
    // Never exported to the CRM.
    let csv = sb.tmp.path().join("crm.csv");
    sb.ho_ok(&[
        "export",
        "--event",
        EVENT,
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(!text.contains(&bad.to_string()));
    assert_eq!(text.lines().count(), 1 + 4);
}

/// Another version of an id head office already holds (409): that entry is quarantined on the
/// device with `conflict`, the device's other entries are delivered.
#[test]
fn a_conflicting_entry_is_quarantined_and_the_rest_delivered() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 3);
    let (id, sealed_other) = {
        let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let envs = dev.pending_envelopes(3).unwrap();
        (envs[0].id, envs[1].sealed.clone())
    };
    // Head office holds the first entry as it is.
    sb.dev_ok(&["sync"]);
    assert_eq!(ho_counts(&sb.ho), (3, 3));
    // The same id comes back with other content (a restored old copy of the device, say).
    sb.add_many(10, 2);
    {
        let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
        let tmpl = dev.pending_envelopes(1).unwrap()[0].clone();
        dev.connection()
            .execute(
                "INSERT INTO entries (id, event_id, captured_at_ms, consent_version, consent_sha256, sealed, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '{}')",
                rusqlite::params![id.to_string(), tmpl.event_id, tmpl.captured_at_ms, tmpl.consent_version, tmpl.consent_sha256, sealed_other],
            )
            .unwrap();
    }
    let report = json(&sb.dev_ok(&["sync", "--json"]));
    assert_eq!(
        (report["erased"].as_u64(), report["quarantined"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(ho_counts(&sb.ho), (5, 5));
    let list = json(&sb.dev_ok_env(&["list", "--json"], &[("SEALBOX_PIN", PIN)]));
    assert_eq!(list[0]["refused_code"], "conflict");
}

/// `event create` refuses what head office would refuse from a device: a consent version over
/// 100 characters, or fields whose entries could seal to more than 64 KiB. Nothing is stored.
#[test]
fn event_configs_whose_entries_head_office_would_refuse_are_refused() {
    let sb = Sandbox::headoffice();
    let base: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("examples/trade-show.json")).unwrap(),
    )
    .unwrap();
    let try_create = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut e = base.clone();
        e["id"] = "too-big".into();
        edit(&mut e);
        let f = sb.tmp.path().join("too-big.json");
        std::fs::write(&f, e.to_string()).unwrap();
        fail(
            sb.ho_cmd(&["event", "create", f.to_str().unwrap()])
                .output()
                .unwrap(),
            &["event create"],
        )
    };
    let err = try_create(&|e| e["consent"]["version"] = "v".repeat(101).into());
    assert!(err.contains("consent.version"), "{err}");
    let err = try_create(&|e| {
        let tmpl = e["fields"][0].clone();
        e["fields"] = (0..12)
            .map(|i| {
                let mut f = tmpl.clone();
                f["key"] = format!("note{i}").into();
                f["kind"] = "text".into();
                f["max_length"] = 2000.into();
                f
            })
            .collect::<Vec<_>>()
            .into();
    });
    assert!(err.contains("KiB"), "{err}");
    assert_eq!(
        ho_status(&sb)["events"].as_array().unwrap().len(),
        1,
        "nothing stored"
    );
}

/// A deletion request and the retention purge leave tombstones: a late delivery of the same
/// entries (an older batch file, a resend under a new batch id) is acknowledged, so the device
/// erases them, but never stored again nor exported.
#[test]
fn deleted_entries_never_come_back_with_a_late_delivery() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    let token = sb.enrol_at(&server.url());
    sb.add_many(0, 3);
    let envs = sb.pending_envelopes(3);
    // A batch file written before the sync: it will arrive late.
    let batch = sb.tmp.path().join("late.sealbox-batch");
    sb.dev_ok(&["export", "--out", batch.to_str().unwrap()]);
    sb.dev_ok(&["sync"]);
    assert_eq!(ho_counts(&sb.ho), (3, 3));
    // Visitor 1 asks to be deleted.
    sb.ho_ok(&["forget", "--phone", "13900000001"]);
    assert_eq!(ho_counts(&sb.ho), (2, 2));
    // The late batch file: acknowledged in full, visitor 1 not stored again.
    let receipt = sb.tmp.path().join("late.receipt.json");
    ok(sb.ho_import(&batch, &receipt), &["import"]);
    let r: sealbox_protocol::sync::Receipt =
        serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(r.ids.len(), 3);
    assert_eq!(ho_counts(&sb.ho), (2, 2));
    // A late resend under a new batch id (a device restored from a backup, say): the same.
    let http = ho_client(&sb.ho);
    let (status, body) = post(&http, &server, &token, &envs);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ids"].as_array().unwrap().len(), 3);
    assert_eq!(ho_counts(&sb.ho), (2, 2));
    // Not in the CRM file either.
    let csv = sb.tmp.path().join("crm.csv");
    sb.ho_ok(&[
        "export",
        "--event",
        EVENT,
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
        "--unmasked",
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    // Visitors 0, 1, 2 in id order: visitor 1 is gone, the others are there.
    assert!(!text.contains(&envs[1].id.to_string()));
    assert!(text.contains(&envs[2].id.to_string()));
    assert!(text.contains(&envs[0].id.to_string()));
    assert_eq!(ho_status(&sb)["events"][0]["deleted"], 1);

    // The same after the retention purge (head office's clock moved past it).
    sb.ho_ok_faketime(&["purge"], "+400d");
    assert_eq!(ho_counts(&sb.ho), (0, 0));
    let (status, _) = post(&http, &server, &token, &envs);
    assert_eq!(status, 200);
    assert_eq!(
        ho_counts(&sb.ho),
        (0, 0),
        "purged entries are not stored again"
    );
}

/// `serve` purges by itself: at start, and then on its schedule, audited each time, as the
/// README says. Head office's clock is moved 400 days ahead of the devices' (the example event
/// keeps entries 365 days).
#[test]
fn serve_purges_at_start_and_on_its_schedule() {
    let sb = Sandbox::headoffice();
    // Entries delivered today.
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 3);
    sb.dev_ok(&["sync"]);
    drop(server);
    assert_eq!(ho_counts(&sb.ho), (3, 3));
    // 400 days later head office starts: the entries are past retention at once.
    let server = HoServer::start_faketime(&sb.ho, &[("SEALBOX_HO_PURGE_EVERY_S", "2")], "+400d");
    wait_until(
        Duration::from_secs(20),
        || ho_counts(&sb.ho).0 == 0,
        "the purge at start",
    );
    let audit_rows = |sb: &Sandbox| {
        sealbox_tests::server::ho_count(
            &sb.ho,
            "SELECT count(*) FROM audit WHERE action = 'retention.purged'",
        )
    };
    // On the schedule: another run (audited even with nothing to delete) within a few seconds.
    let first = audit_rows(&sb);
    assert!(first >= 1);
    wait_until(
        Duration::from_secs(20),
        || audit_rows(&sb) > first,
        "a scheduled purge",
    );
    assert!(server.log().contains("retention purge done"));
    assert_eq!(ho_status(&sb)["events"][0]["deleted"], 3);
    let v = sb.ho_ok(&["audit", "verify"]);
    assert!(v.contains("ok"), "{v}");
}

/// Retention counts from a time head office can defend: a kiosk whose clock reset to 2001 does
/// not have its entries purged at the first purge, and one whose clock is two years ahead does
/// not keep them forever.
#[test]
fn retention_does_not_trust_a_wrong_device_clock() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    // Entries captured under wrong clocks (the device's own process, its clock moved).
    sb.add_many_faketime(0, 2, "@2001-01-01 10:00:00");
    sb.add_many_faketime(10, 2, "+730d");
    sb.dev_ok(&["sync"]);
    assert_eq!(ho_counts(&sb.ho), (4, 4));
    // A purge today: nothing is due (the 2001 entries count from when head office got them).
    sb.ho_ok(&["purge"]);
    assert_eq!(
        ho_counts(&sb.ho),
        (4, 4),
        "a device clock in the past purges nothing early"
    );
    // 400 days on: all four are due (the future ones count from receipt too).
    sb.ho_ok_faketime(&["purge"], "+400d");
    assert_eq!(
        ho_counts(&sb.ho),
        (0, 0),
        "a device clock in the future keeps nothing forever"
    );
}

/// An entry that does not open (anyone with a device token can post one) is moved to head
/// office's quarantine, counted, and skipped with a warning: the CRM export and deletion
/// requests still work for everyone else.
#[test]
fn an_entry_that_does_not_open_blocks_nothing_at_head_office() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    let token = sb.enrol_at(&server.url());
    sb.add_many(0, 2);
    sb.dev_ok(&["sync"]);
    let http = ho_client(&sb.ho);
    let junk = sealbox_protocol::EntryEnvelope {
        id: uuid::Uuid::now_v7(),
        event_id: EVENT.into(),
        captured_at_ms: sealbox_device::now_ms(),
        consent_version: "v".into(),
        consent_sha256: "a".repeat(64),
        sealed: b"age-encryption.org/v1\n-> X25519 junk\nnot a real age file".to_vec(),
    };
    let (status, body) = post(&http, &server, &token, std::slice::from_ref(&junk));
    assert_eq!(status, 200, "{body}");
    assert_eq!(ho_counts(&sb.ho), (3, 3));
    let csv = sb.tmp.path().join("crm.csv");
    let out = sb
        .ho_cmd(&[
            "export",
            "--event",
            EVENT,
            "--format",
            "csv",
            "--out",
            csv.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("quarantine"));
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count(),
        1 + 2
    );
    let hs = ho_status(&sb);
    assert_eq!(
        (
            hs["events"][0]["entries"].as_u64(),
            hs["events"][0]["quarantined"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let n = sb.ho_ok(&["forget", "--phone", "13900000000"]);
    assert!(n.contains('1'), "{n}");
    // The quarantined id comes again: acknowledged, not stored as an entry.
    let (status, _) = post(&http, &server, &token, &[junk]);
    assert_eq!(status, 200);
    assert_eq!(ho_counts(&sb.ho), (1, 1));
}

/// The audit log's name for a deletion request cannot be reversed from the database alone:
/// trying every candidate phone against whatever the database holds (its settings, a salt)
/// finds nothing. (With the salted SHA-256 it used before, the candidate matched.)
#[test]
fn a_deletion_requests_audit_digest_is_not_reversible_from_the_database() {
    use sha2_shim::sha256_hex;
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 1);
    sb.dev_ok(&["sync"]);
    sb.ho_ok(&["forget", "--phone", "13900000000"]);
    let conn = rusqlite::Connection::open(sb.ho.join("headoffice.db")).unwrap();
    let detail: String = conn
        .query_row(
            "SELECT detail FROM audit WHERE action = 'deletion.request'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let digest = json(&detail)["subject_hash"].as_str().unwrap().to_string();
    let mut secrets: Vec<Vec<u8>> = vec![Vec::new()];
    let mut stmt = conn.prepare("SELECT v FROM settings").unwrap();
    for v in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
        secrets.push(v.unwrap());
    }
    for candidate in (0..1000).map(|i| format!("139{:08}", i)) {
        for s in &secrets {
            for form in [format!("Phone:{candidate}"), candidate.clone()] {
                let mut data = s.clone();
                data.extend_from_slice(form.as_bytes());
                assert_ne!(
                    sha256_hex(&data),
                    digest,
                    "the digest falls to a guess from the database alone"
                );
            }
        }
    }
    drop(server);
}

mod sha2_shim {
    pub fn sha256_hex(data: &[u8]) -> String {
        sealbox_protocol::sha256_hex(data)
    }
}

/// Head office answers an unauthenticated request before reading its body: a request that
/// announces 10 MB and sends none of it gets its 401 at once.
#[test]
fn head_office_authenticates_before_it_reads_a_body() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(sb.ho.join("ca.pem")).unwrap();
    for c in rustls_pemfile_shim::certs(&pem) {
        roots.add(c).unwrap();
    }
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        b"POST /v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
    )
    .unwrap();
    tls.flush().unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let n = tls
        .read(&mut buf)
        .expect("an answer before any body byte was sent");
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(server.log().contains("refused before reading the body"));
}

mod rustls_pemfile_shim {
    pub fn certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(pem)
            .map(|c| c.unwrap())
            .collect()
    }
}

/// Export to a destination that refuses a chmod (FAT and exFAT sticks as desktops mount them
/// refuse one that removes read bits): the export succeeds, the file is whole and imports.
/// A preloaded shim makes every chmod under the destination fail with EPERM, and proves it ran.
#[test]
fn export_to_a_stick_that_refuses_chmod_works() {
    let sb = Sandbox::enrolled();
    sb.add_many(0, 3);
    let shim_dir = sb.tmp.path().join("shim");
    std::fs::create_dir_all(&shim_dir).unwrap();
    let src = shim_dir.join("nochmod.c");
    std::fs::write(
        &src,
        r#"#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <stdio.h>
static int refused(const char *p) {
    const char *under = getenv("NOCHMOD_UNDER");
    if (!under || !p || strncmp(p, under, strlen(under)) != 0) return 0;
    const char *mark = getenv("NOCHMOD_MARK");
    if (mark) { FILE *f = fopen(mark, "a"); if (f) { fputs("refused\n", f); fclose(f); } }
    errno = EPERM;
    return 1;
}
int chmod(const char *p, mode_t m) {
    if (refused(p)) return -1;
    int (*real)(const char *, mode_t) = dlsym(RTLD_NEXT, "chmod");
    return real(p, m);
}
int fchmodat(int fd, const char *p, mode_t m, int flags) {
    if (refused(p)) return -1;
    int (*real)(int, const char *, mode_t, int) = dlsym(RTLD_NEXT, "fchmodat");
    return real(fd, p, m, flags);
}
"#,
    )
    .unwrap();
    let so = shim_dir.join("nochmod.so");
    let st = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap();
    assert!(st.success());
    let stick = sb.tmp.path().join("usb");
    std::fs::create_dir_all(&stick).unwrap();
    let mark = sb.tmp.path().join("chmod-refusals");
    let out = stick.join("booth-1.sealbox-batch");
    let res = sb
        .dev_cmd(&["export", "--out", out.to_str().unwrap()])
        .env("LD_PRELOAD", &so)
        .env("NOCHMOD_UNDER", &stick)
        .env("NOCHMOD_MARK", &mark)
        .output()
        .unwrap();
    assert!(
        std::fs::read_to_string(&mark)
            .unwrap_or_default()
            .contains("refused"),
        "the fault happened: a chmod on the stick was refused"
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let receipt = sb.tmp.path().join("r.json");
    let imported = ok(sb.ho_import(&out, &receipt), &["import"]);
    assert!(imported.contains("3 entries"), "{imported}");
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every genuine receipt for entries the device still holds applies, not only the newest
/// export's: four batch files written, the first imported at head office, its receipt erases
/// what it lists (before, it was refused as "a batch this device did not export").
#[test]
fn the_receipt_of_an_older_export_applies() {
    let sb = Sandbox::enrolled();
    sb.add_many(0, 2);
    let files: Vec<std::path::PathBuf> = (0..4)
        .map(|i| {
            if i == 2 {
                sb.add_many(10, 1);
            }
            let f = sb.tmp.path().join(format!("b{i}.sealbox-batch"));
            sb.dev_ok(&["export", "--out", f.to_str().unwrap()]);
            f
        })
        .collect();
    let receipt = sb.tmp.path().join("first.receipt.json");
    ok(sb.ho_import(&files[0], &receipt), &["import"]);
    let out = sb.dev_ok(&["receipt", "import", receipt.to_str().unwrap()]);
    assert!(out.contains('2'), "{out}");
    let st = sb.status();
    assert_eq!(
        (st["exported"].as_u64(), st["erased"].as_u64()),
        (Some(1), Some(2)),
        "the two entries of the first file are erased; the one added later waits"
    );
    // Applying it again changes nothing.
    sb.dev_ok(&["receipt", "import", receipt.to_str().unwrap()]);
    assert_eq!(sb.status()["erased"], 2);
}

/// Two syncs at once on one device: the second says another sync is running and changes
/// nothing (before, one failed with "Query returned no rows"); and a 429 with a short
/// Retry-After is waited out by `sync` itself.
#[test]
fn a_second_sync_waits_for_nothing_and_429_is_waited_out() {
    use sealbox_tests::proxy::{Fault, FaultProxy};
    let sb = Sandbox::headoffice();
    let server = HoServer::start(
        &sb.ho,
        &[
            ("SEALBOX_HO_DEVICE_BURST", "1"),
            ("SEALBOX_HO_DEVICE_RATE_PER_S", "0.15"),
        ],
    );
    let proxy = FaultProxy::start(server.addr);
    sb.enrol_at(&proxy.url());
    sb.add_many(0, 4);
    // The first sync hangs on its first receipt for 3 s, holding the device's delivery.
    proxy.next(Fault::DelayResponse(Duration::from_secs(3)));
    let first = sb
        .dev_cmd(&["sync", "--page", "2", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first sync holds the delivery once its request reached the proxy.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.connections.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first sync never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = sb.dev_fail(&["sync"], &[]);
    assert!(second.contains("another sync is running"), "{second}");
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two batches with a bucket of one: the second got 429 with Retry-After and was sent again.
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (report["erased"].as_u64(), report["batches"].as_u64()),
        (Some(4), Some(2))
    );
    assert!(
        server.log().contains("status=429"),
        "head office did answer 429"
    );
    assert_eq!(ho_counts(&sb.ho), (4, 4));
}

/// A head office that keeps refusing (here: the device was revoked) is asked less and less
/// often: the kiosk's loop backs off exponentially with jitter instead of polling, keeps its
/// entries, and says why. Without the backoff this loop would ask every 50 ms (about 160
/// times in the 8 seconds watched).
#[test]
fn the_loop_backs_off_from_a_head_office_that_keeps_refusing() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 3);
    sb.ho_ok(&["device", "revoke", "booth-1"]);
    let opts = sealbox_device::sync_loop::LoopOptions {
        page: 100,
        timeout: Duration::from_secs(5),
        first_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(1600),
        idle_poll: Duration::from_millis(50),
        ..Default::default()
    };
    let started = Instant::now();
    let sync = sealbox_device::sync_loop::SyncLoop::start(
        sb.dev.clone(),
        std::sync::Arc::new(sealbox_device::OsKeychain),
        opts,
    );
    std::thread::sleep(Duration::from_secs(8));
    let state = sync.state();
    sync.stop();
    let watched = started.elapsed();
    // Each refusal leaves one line in head office's log, with its time.
    let log = server.log();
    let times: Vec<time::OffsetDateTime> = log
        .lines()
        .filter(|l| l.contains("request refused") && l.contains("status=401"))
        .filter_map(|l| {
            let plain: String = strip_ansi(l);
            let stamp = plain.split_whitespace().next()?;
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()
        })
        .collect();
    // After each failed sync the device reports its health, refused the same moment: one try.
    let mut times = times;
    times.dedup_by(|later, earlier| (*later - *earlier).as_seconds_f64() < 0.05);
    eprintln!(
        "backoff: {} tries refused in {:.1} s",
        times.len(),
        watched.as_secs_f64()
    );
    assert!(times.len() >= 3, "the loop kept trying: {log}");
    assert!(
        times.len() <= 30,
        "{} requests in {watched:?}: no backoff",
        times.len()
    );
    // Later waits are longer: past the fourth try the ceiling is 1.6 s, so the mean wait is
    // about 0.8 s (jitter draws each wait between zero and the ceiling).
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_seconds_f64())
        .collect();
    let late = &gaps[gaps.len().min(3)..];
    if !late.is_empty() {
        let mean = late.iter().sum::<f64>() / late.len() as f64;
        assert!(mean > 0.3, "late waits average {mean:.2} s: {gaps:?}");
    }
    assert_eq!(state.online, Some(false));
    assert_eq!(
        state.last_error.as_deref(),
        Some("unauthorized"),
        "{state:?}"
    );
    assert_eq!(sb.pending(), 3, "nothing erased while refused");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The same tests with head office on PostgreSQL (a fresh database each, on the private cluster
/// `cargo xtask test` starts).
mod on_postgres {
    use sealbox_tests::pg::on_postgres;

    #[test]
    fn a_batch_refused_for_its_size_is_sent_again_in_smaller_pages() {
        on_postgres(super::a_batch_refused_for_its_size_is_sent_again_in_smaller_pages)
    }

    #[test]
    fn an_entry_refused_on_its_own_is_quarantined_and_blocks_nothing() {
        on_postgres(super::an_entry_refused_on_its_own_is_quarantined_and_blocks_nothing)
    }

    #[test]
    fn a_conflicting_entry_is_quarantined_and_the_rest_delivered() {
        on_postgres(super::a_conflicting_entry_is_quarantined_and_the_rest_delivered)
    }

    #[test]
    fn deleted_entries_never_come_back_with_a_late_delivery() {
        on_postgres(super::deleted_entries_never_come_back_with_a_late_delivery)
    }

    #[test]
    fn serve_purges_at_start_and_on_its_schedule() {
        on_postgres(super::serve_purges_at_start_and_on_its_schedule)
    }

    #[test]
    fn retention_does_not_trust_a_wrong_device_clock() {
        on_postgres(super::retention_does_not_trust_a_wrong_device_clock)
    }

    #[test]
    fn an_entry_that_does_not_open_blocks_nothing_at_head_office() {
        on_postgres(super::an_entry_that_does_not_open_blocks_nothing_at_head_office)
    }

    #[test]
    fn head_office_authenticates_before_it_reads_a_body() {
        on_postgres(super::head_office_authenticates_before_it_reads_a_body)
    }

    #[test]
    fn a_second_sync_waits_for_nothing_and_429_is_waited_out() {
        on_postgres(super::a_second_sync_waits_for_nothing_and_429_is_waited_out)
    }
}
