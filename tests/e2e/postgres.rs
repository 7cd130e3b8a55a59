//! Head office at scale on PostgreSQL: two `serve` processes on one database, a synchronous
//! standby that holds every receipted entry when the primary dies, and writers that conflict
//! under SERIALIZABLE. The private cluster (and the tools for a test's own clusters) come from
//! `cargo xtask test`.

use sealbox_device::{Device, OsKeychain};
use sealbox_headoffice::store::{Audit, Source, Store};
use sealbox_protocol::sync::SyncRequest;
use sealbox_tests::pg::{on_postgres, Cluster, TestDb};
use sealbox_tests::server::{ho_counts, post_sync, HoServer};
use sealbox_tests::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// Two `serve` processes on one PostgreSQL database: the same batch sent to both (one after the
/// other, and both at the same moment) gets the same receipt from each and is stored once;
/// devices syncing to either server all get their receipts, and every entry is held once.
#[test]
fn two_servers_on_one_database_store_each_entry_once() {
    on_postgres(|| {
        let sb = Sandbox::headoffice();
        let a = HoServer::start(&sb.ho, &[]);
        let b = HoServer::start(&sb.ho, &[]);
        let token = sb.enrol_at(&a.url());
        sb.add_many(0, 50);
        let envs = sb.pending_envelopes(50);
        let http = ho_client(&sb.ho);
        // One after the other: to A, then the very same batch to B.
        let first = SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries: envs[..10].to_vec(),
        };
        let (sa, ra) = post_sync(&http, &a, &token, &first);
        let (sb_, rb) = post_sync(&http, &b, &token, &first);
        assert_eq!((sa, sb_), (200, 200), "{ra} {rb}");
        assert_eq!(ra, rb, "the other server answers with the same receipt");
        assert_eq!(ho_counts(&sb.ho), (10, 10));
        // At the same moment: each batch to both servers at once, from two threads.
        for chunk in envs[10..].chunks(10) {
            let req = SyncRequest {
                batch_id: uuid::Uuid::now_v7(),
                entries: chunk.to_vec(),
            };
            let (r1, r2) = std::thread::scope(|s| {
                let t1 = s.spawn(|| post_sync(&http, &a, &token, &req));
                let t2 = s.spawn(|| post_sync(&http, &b, &token, &req));
                (t1.join().unwrap(), t2.join().unwrap())
            });
            assert_eq!((r1.0, r2.0), (200, 200), "{} {}", r1.1, r2.1);
            assert_eq!(r1.1, r2.1, "both servers give the same receipt");
        }
        assert_eq!(ho_counts(&sb.ho), (50, 50), "each entry stored once");
        // The device itself syncs to B (its entries are all held: acknowledged, not stored
        // again); a second device syncs to A.
        repoint_device(&sb.dev, &b.url());
        sb.dev_ok(&["sync"]);
        assert_eq!(sb.pending(), 0);
        let dev2 = sb.enrol_second(EVENT);
        repoint_device(&dev2, &a.url());
        let lines: Vec<String> = (100..120)
            .map(|i| {
                serde_json::json!({"name": format!("Second {i}"), "phone": format!("139{:08}", i), "consent": true})
                    .to_string()
            })
            .collect();
        sb.add_lines_in(&dev2, &lines);
        ok(sb.dev_cmd_in(&dev2, &["sync"]).output().unwrap(), &["sync"]);
        assert_eq!(ho_counts(&sb.ho), (70, 70));
        // Both servers read the same audit chain, and it holds.
        assert!(sb.ho_ok(&["audit", "verify"]).contains("ok"));
        drop((a, b));
        // A second head office (other keys) is not put into this database.
        let other = sb.tmp.path().join("other-ho");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::copy(sb.ho.join("config.toml"), other.join("config.toml")).unwrap();
        let out = Command::new(bin("sealbox-headoffice"))
            .arg("--data-dir")
            .arg(&other)
            .arg("init")
            .env("SEALBOX_HO_PASSPHRASE", PASSPHRASE)
            .env_remove("SEALBOX_HO_DATABASE_URL")
            .output()
            .unwrap();
        let err = fail(out, &["init"]);
        assert!(err.contains("not empty"), "{err}");
        assert!(!other.join("identity.age").exists(), "nothing left behind");
    });
}

/// One group commit on PostgreSQL, decided in memory and written with one statement per
/// table: each batch is stored or refused alone, as if the batches before it were stored. A
/// conflicting batch writes nothing (not even its quarantined entries); a batch sent twice in
/// the group gets the same receipt; an entry in two batches of the group is stored once; a
/// deleted entry is acknowledged and not stored; an entry for another event is quarantined once;
/// a conflict in a batch file is quarantined and the rest of the file stored.
#[test]
fn a_postgres_group_stores_each_batch_or_refuses_it_alone() {
    use sealbox_headoffice::store::{IngestError, Stored};
    let db = TestDb::new();
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let mut s = sealbox_tests::pg::store_with(&db.url, "e", "{}", &["d0", "d1", "d2", "d3"]);
    let envelope = || sealbox_protocol::EntryEnvelope {
        id: uuid::Uuid::now_v7(),
        event_id: "e".into(),
        captured_at_ms: 1,
        consent_version: "v".into(),
        consent_sha256: "0".repeat(64),
        sealed: format!("age-encryption.org/v1\n{}", uuid::Uuid::now_v7()).into_bytes(),
    };
    let batch = |entries| SyncRequest {
        batch_id: uuid::Uuid::now_v7(),
        entries,
    };
    let held = envelope();
    s.ingest("d0", &batch(vec![held.clone()]), Source::Sync, &key, 1)
        .unwrap();
    let deleted = envelope();
    let mut c = db.client();
    c.execute(
        "INSERT INTO tombstones (id, event_id, deleted_at_ms, reason) VALUES ($1, 'e', 1, 'test')",
        &[&deleted.id],
    )
    .unwrap();

    let shared = envelope();
    let mut elsewhere = envelope();
    elsewhere.event_id = "other-event".into();
    let first = batch(vec![
        envelope(),
        shared.clone(),
        deleted.clone(),
        elsewhere.clone(),
    ]);
    let mut changed = held.clone();
    changed.sealed = b"age-encryption.org/v1\nother".to_vec();
    let mut elsewhere_too = elsewhere.clone();
    elsewhere_too.sealed = b"age-encryption.org/v1\nelsewhere too".to_vec();
    let conflicting = batch(vec![envelope(), elsewhere_too, changed.clone()]);
    let third = batch(vec![shared.clone(), elsewhere.clone(), envelope()]);
    let file = batch(vec![changed.clone(), envelope()]);
    let out = s.ingest_group(
        &[
            ("d1", &first),
            ("d2", &conflicting),
            ("d3", &third),
            ("d1", &first),
        ],
        Source::Sync,
        &key,
        2,
    );
    assert_eq!(out.len(), 4);
    let Stored {
        receipt: r1,
        fresh: true,
        quarantined: 1,
    } = out[0].as_ref().unwrap()
    else {
        panic!("{:?}", out[0]);
    };
    assert!(matches!(&out[1], Err(IngestError::Conflict(ids)) if ids == &vec![held.id]));
    let Stored {
        receipt: r3,
        fresh: true,
        quarantined: 0,
    } = out[2].as_ref().unwrap()
    else {
        panic!("{:?}", out[2]);
    };
    let Stored {
        receipt: r1_again,
        fresh: false,
        ..
    } = out[3].as_ref().unwrap()
    else {
        panic!("{:?}", out[3]);
    };
    assert_eq!(
        serde_json::to_string(r1).unwrap(),
        serde_json::to_string(r1_again).unwrap()
    );
    assert!(r1.verify(&key.verifying_key()).is_ok());
    assert!(r3.verify(&key.verifying_key()).is_ok());
    assert_eq!(
        r1.ids.len(),
        4,
        "the receipt acknowledges every id, the deleted one too"
    );
    let count =
        |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    // Held: the first entry, first's new one and the shared one, third's new one.
    assert_eq!(count(&mut c, "SELECT count(*) FROM entries"), 4);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM entries WHERE device = 'd2'"),
        0
    );
    assert_eq!(
        count(
            &mut c,
            &format!("SELECT count(*) FROM entries WHERE id = '{}'", deleted.id)
        ),
        0
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM batches"), 3);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM quarantine"),
        1,
        "quarantined once; nothing of the refused batch"
    );
    // A batch file: the conflicting entry is quarantined, the rest stored.
    let out = s.ingest_group(&[("d1", &file)], Source::BatchFile, &key, 3);
    assert_eq!(out[0].as_ref().unwrap().quarantined, 1);
    assert_eq!(count(&mut c, "SELECT count(*) FROM entries"), 5);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM quarantine WHERE reason = 'conflict'"
        ),
        1
    );
    let kept: Vec<u8> = c
        .query_one("SELECT sealed FROM entries WHERE id = $1", &[&held.id])
        .unwrap()
        .get(0);
    assert_eq!(kept, held.sealed, "never overwritten");
}

/// Writers that conflict under SERIALIZABLE: eight connections store overlapping batches (the
/// same batch ids and entries from several at once) and append to the audit chain together.
/// Every call succeeds after its retries, each entry is stored once, each batch has one
/// receipt, and the chain is unbroken.
#[test]
fn conflicting_writers_under_serializable_are_retried_and_store_once() {
    let db = TestDb::new();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    sealbox_tests::pg::store_with(&db.url, "e", "{}", &["d"]);
    let envelope = |i: u64| sealbox_protocol::EntryEnvelope {
        id: uuid::Uuid::now_v7(),
        event_id: "e".into(),
        captured_at_ms: 1_700_000_000_000 + i as i64,
        consent_version: "v".into(),
        consent_sha256: "0".repeat(64),
        sealed: format!("age-encryption.org/v1\nbody {i}").into_bytes(),
    };
    let batches: Vec<SyncRequest> = (0..40)
        .map(|b| SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries: (0..5).map(|i| envelope(b * 5 + i)).collect(),
        })
        .collect();
    let receipts = std::sync::Mutex::new(std::collections::HashMap::new());
    std::thread::scope(|s| {
        for w in 0..8 {
            let (batches, receipts, key, url) = (&batches, &receipts, &key, &db.url);
            s.spawn(move || {
                let mut store = Store::open_url(url).unwrap();
                // Each writer goes through the batches from another start: the same batch from
                // several writers at once.
                for k in 0..batches.len() {
                    let req = &batches[(k + w * 5) % batches.len()];
                    let stored = store
                        .ingest("d", req, Source::Sync, key, 1_700_000_000_000)
                        .unwrap_or_else(|e| panic!("writer {w}: {e}"));
                    let json = serde_json::to_string(&stored.receipt).unwrap();
                    let mut r = receipts.lock().unwrap();
                    let seen = r.entry(req.batch_id).or_insert_with(|| json.clone());
                    assert_eq!(*seen, json, "one receipt per batch");
                    drop(r);
                    store
                        .audit_append(Audit::new(
                            1,
                            "test.write",
                            serde_json::json!({"writer": w, "k": k}),
                        ))
                        .unwrap();
                }
            });
        }
    });
    let mut c = db.client();
    let one =
        |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(one(&mut c, "SELECT count(*) FROM entries"), 200);
    assert_eq!(one(&mut c, "SELECT count(DISTINCT id) FROM entries"), 200);
    assert_eq!(one(&mut c, "SELECT count(*) FROM batches"), 40);
    let mut store = Store::open_url(&db.url).unwrap();
    assert_eq!(store.audit_verify().unwrap(), (2 + 8 * 40, None));
}

/// With a synchronous standby (`synchronous_commit = on`, `synchronous_standby_names`), a
/// receipt means two machines hold the entry: devices sync, the primary is killed right after
/// their receipts, the standby is promoted, and every receipted entry is there; head office on
/// the promoted standby takes the next syncs.
#[test]
fn every_receipted_entry_survives_the_primary_dying() {
    require_keychain();
    let tmp = tempfile::tempdir().unwrap();
    let mut primary = Cluster::init(
        &tmp.path().join("primary"),
        "wal_level = replica\nmax_wal_senders = 4\nsynchronous_commit = on\nsynchronous_standby_names = 'FIRST 1 (standby1)'\n",
    );
    primary.start();
    let mut standby = Cluster::standby_of(&primary, &tmp.path().join("standby"), "standby1");
    standby.start();
    {
        let mut c = postgres::Client::connect(&primary.url("postgres"), postgres::NoTls).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sync: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1' AND sync_state = 'sync'",
                    &[],
                )
                .unwrap()
                .get(0);
            if sync == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the standby never became synchronous"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Committed once the standby holds it too.
        c.batch_execute("CREATE DATABASE sealbox").unwrap();
    }
    let sb = Sandbox::headoffice_on(&primary.url("sealbox"));
    let mut server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    let dev2 = sb.enrol_second(EVENT);
    repoint_device(&dev2, &server.url());
    let mut receipted = std::collections::BTreeSet::new();
    for round in 0..3 {
        sb.add_many(round * 40, 40);
        let lines: Vec<String> = (0..15)
            .map(|i| {
                serde_json::json!({"name": format!("Two {round} {i}"), "phone": format!("137{:08}", round * 100 + i), "consent": true})
                    .to_string()
            })
            .collect();
        sb.add_lines_in(&dev2, &lines);
        for dir in [&sb.dev, &dev2] {
            let dev = Device::open(dir, &OsKeychain).unwrap();
            receipted.extend(dev.pending_envelopes(1000).unwrap().iter().map(|e| e.id));
        }
        sb.dev_ok(&["sync", "--page", "15"]);
        ok(sb.dev_cmd_in(&dev2, &["sync"]).output().unwrap(), &["sync"]);
    }
    // Every one of them receipted: the devices erased them all.
    assert_eq!(sb.pending(), 0);
    assert_eq!(receipted.len(), 3 * 55);
    // With the standby down, a commit waits for it: the sync gets no receipt and the device
    // keeps its entries. Once the standby is back, the commit completes.
    standby.stop();
    sb.add_many(500, 5);
    let out = sb.dev_cmd(&["sync", "--timeout", "5"]).output().unwrap();
    assert!(
        !out.status.success(),
        "no receipt while the standby is down"
    );
    assert_eq!(sb.pending(), 5, "nothing erased without a receipt");
    let waiting: Vec<uuid::Uuid> = sb.pending_envelopes(10).iter().map(|e| e.id).collect();
    standby.start();
    sb.dev_ok(&["sync"]);
    assert_eq!(sb.pending(), 0);
    receipted.extend(waiting);
    // The primary's machine dies right after the receipts.
    primary.kill();
    server.kill();
    standby.promote();
    let mut c = postgres::Client::connect(&standby.url("sealbox"), postgres::NoTls).unwrap();
    let held: std::collections::BTreeSet<uuid::Uuid> = c
        .query("SELECT id FROM entries", &[])
        .unwrap()
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let missing = receipted.difference(&held).count();
    assert_eq!(
        missing, 0,
        "{missing} receipted entries are not on the standby"
    );
    // Head office goes on from the promoted standby. It inherited the primary's
    // synchronous_standby_names and would wait for a standby of its own: until one is attached,
    // it commits alone, as the admin decides here.
    c.batch_execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::fs::write(
        sb.ho.join("config.toml"),
        sealbox_tests::pg::config_for(&standby.url("sealbox")),
    )
    .unwrap();
    server.restart();
    sb.add_many(1000, 5);
    sb.dev_ok(&["sync"]);
    assert_eq!(ho_counts(&sb.ho).0 as usize, receipted.len() + 5);
    assert!(sb.ho_ok(&["audit", "verify"]).contains("ok"));
    drop(server);
}

/// A file's SHA-256; a missing file reads as empty (SQLite leaves an empty WAL file behind a
/// reader of a database in WAL mode).
fn file_sha256(p: &std::path::Path) -> String {
    sealbox_protocol::sha256_hex(&std::fs::read(p).unwrap_or_default())
}

/// `migrate --to URL` moves an embedded head office to PostgreSQL: everything copied (events,
/// devices, entries, tombstones, batches and their receipts, the audit chain), counted and
/// digested on both sides; the embedded files are not changed by a byte; head office then runs
/// on PostgreSQL with the same status and an unbroken chain, and devices go on syncing. A
/// target that already holds data is refused and left as it was.
#[test]
fn migrate_copies_everything_verified_and_leaves_the_source_untouched() {
    let sb = Sandbox::headoffice();
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 30);
    sb.dev_ok(&["sync", "--page", "7"]);
    sb.ho_ok(&["forget", "--phone", "13900000001"]);
    sb.ho_ok(&["device", "revoke", "booth-1"]);
    // The console's tables come along: an admin, and the health report sent after the sync.
    let mut add = sb.ho_cmd(&["admin", "add", "li.na", "--role", "operator"]);
    add.env("SEALBOX_HO_ADMIN_PASSWORD", "a console password");
    ok(add.output().unwrap(), &["admin", "add"]);
    drop(server);
    let status = sb.ho_ok(&["status", "--json"]);
    let files = ["headoffice.db", "headoffice.db-wal"].map(|f| file_sha256(&sb.ho.join(f)));
    let db = TestDb::new();
    let out = sb
        .ho_cmd(&["migrate"])
        .env("SEALBOX_HO_MIGRATE_TO", &db.url)
        .output()
        .unwrap();
    let said = ok(out, &["migrate"]);
    assert!(said.contains("entries: 29 rows"), "{said}");
    assert!(said.contains("tombstones: 1 rows"), "{said}");
    assert!(said.contains("console_admins: 1 rows"), "{said}");
    assert!(said.contains("console_device_health: 1 rows"), "{said}");
    assert_eq!(
        ["headoffice.db", "headoffice.db-wal"].map(|f| file_sha256(&sb.ho.join(f))),
        files,
        "the embedded database is not changed by a byte"
    );
    // The same head office on PostgreSQL.
    std::fs::write(
        sb.ho.join("config.toml"),
        sealbox_tests::pg::config_for(&db.url),
    )
    .unwrap();
    // The same counts; each backend numbers its own schema.
    let counts = |json: &str| {
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v.as_object_mut().unwrap().remove("schema");
        v
    };
    let moved = sb.ho_ok(&["status", "--json"]);
    assert_eq!(counts(&moved), counts(&status));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&moved).unwrap()["schema"],
        2,
        "PostgreSQL's schema with the console's tables"
    );
    let verified = sb.ho_ok(&["audit", "verify"]);
    assert!(verified.contains("ok"), "{verified}");
    let mut c = db.client();
    let admin: String = c
        .query_one("SELECT role FROM console_admins WHERE name = 'li.na'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        admin, "operator",
        "the admin signs in on PostgreSQL as before"
    );
    let migrated: i64 = c
        .query_one(
            "SELECT count(*) FROM audit WHERE action = 'database.migrated'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(migrated, 1);
    // A second device syncs to head office on PostgreSQL; the batches of the first are there
    // (a resend gets its receipt from the copied row).
    let server = HoServer::start(&sb.ho, &[]);
    let dev2 = sb.enrol_second(EVENT);
    repoint_device(&dev2, &server.url());
    sb.add_lines_in(
        &dev2,
        &[
            serde_json::json!({"name": "After", "phone": "13700000000", "consent": true})
                .to_string(),
        ],
    );
    ok(sb.dev_cmd_in(&dev2, &["sync"]).output().unwrap(), &["sync"]);
    assert_eq!(ho_counts(&sb.ho), (30, 30));
    drop(server);
    // Migrating again into the same database is refused, and changes nothing there.
    std::fs::remove_file(sb.ho.join("config.toml")).unwrap();
    let out = sb
        .ho_cmd(&["migrate"])
        .env("SEALBOX_HO_MIGRATE_TO", &db.url)
        .output()
        .unwrap();
    let err = fail(out, &["migrate"]);
    assert!(err.contains("not empty"), "{err}");
    let entries: i64 = c
        .query_one("SELECT count(*) FROM entries", &[])
        .unwrap()
        .get(0);
    assert_eq!(entries, 30);
}

/// On PostgreSQL `serve` starts the console once an admin exists, and a device's health report
/// (sent after its sync) is stored in the database, where the console reads it.
#[test]
fn on_postgres_the_console_starts_and_health_reports_are_stored() {
    on_postgres(|| {
        let sb = Sandbox::headoffice();
        let mut add = sb.ho_cmd(&["admin", "add", "li.na", "--role", "operator"]);
        add.env("SEALBOX_HO_ADMIN_PASSWORD", "a console password");
        ok(add.output().unwrap(), &["admin", "add"]);
        let server = HoServer::start(&sb.ho, &[("SEALBOX_HO_CONSOLE_LISTEN", "127.0.0.1:0")]);
        sb.enrol_at(&server.url());
        sb.add_many(0, 3);
        sb.dev_ok(&["sync"]);
        assert_eq!(sb.pending(), 0, "delivered and erased");
        let log = server.log();
        assert!(log.contains("sealbox-headoffice console on"), "{log}");
        assert!(
            !log.lines()
                .any(|l| l.contains("request refused") && l.contains("status=404")),
            "the health report is taken: {log}"
        );
        let url = sealbox_tests::pg::url_of(&sb.ho).unwrap();
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let row = c
            .query_one(
                "SELECT report, seen_at_ms FROM console_device_health WHERE device = 'booth-1'",
                &[],
            )
            .unwrap();
        let report: serde_json::Value = serde_json::from_str(row.get::<_, &str>(0)).unwrap();
        assert_eq!(report["pending"], 0, "{report}");
        assert!(row.get::<_, i64>(1) > 0);
    });
}

/// The per-device rate limit holds across servers: with a burst of 4 and one request per 20 s,
/// a device that spreads 12 requests over two servers on one database gets 4 through in total
/// (each server alone would have let 4 through: 8), and the rest get 429 with Retry-After.
#[test]
fn two_servers_share_one_rate_limit_per_device() {
    on_postgres(|| {
        let sb = Sandbox::headoffice();
        let limits = [
            ("SEALBOX_HO_DEVICE_RATE_PER_S", "0.05"),
            ("SEALBOX_HO_DEVICE_BURST", "4"),
        ];
        let a = HoServer::start(&sb.ho, &limits);
        let b = HoServer::start(&sb.ho, &limits);
        let token = sb.enrol_at(&a.url());
        sb.add_many(0, 2);
        let envs = sb.pending_envelopes(2);
        let req = SyncRequest {
            batch_id: uuid::Uuid::now_v7(),
            entries: envs,
        };
        let http = ho_client(&sb.ho);
        let mut passed = 0;
        for i in 0..12 {
            let server = if i % 2 == 0 { &a } else { &b };
            let r = http
                .post(format!("{}/v1/sync", server.url()))
                .header("authorization", format!("Bearer {token}"))
                .json(&req)
                .send()
                .unwrap();
            match r.status().as_u16() {
                200 => passed += 1,
                429 => {
                    let wait: u64 = r.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!((1..=20).contains(&wait), "{wait}");
                }
                other => panic!("{other}: {}", r.text().unwrap()),
            }
        }
        assert_eq!(passed, 4, "the burst, across both servers");
        // Another device has its own bucket.
        let dev2 = sb.enrol_second(EVENT);
        repoint_device(&dev2, &b.url());
        sb.add_lines_in(
            &dev2,
            &[
                serde_json::json!({"name": "Other", "phone": "13700000000", "consent": true})
                    .to_string(),
            ],
        );
        ok(sb.dev_cmd_in(&dev2, &["sync"]).output().unwrap(), &["sync"]);
        assert_eq!(ho_counts(&sb.ho), (3, 3));
    });
}

/// Tokens looked up many at once, as the server's token checker does with every request
/// waiting: each request gets its own answer in order; a device with three requests waiting
/// and a burst of two gets two through and a wait; an unknown token finds nothing; a revoked
/// device is found revoked and its bucket is not touched.
#[test]
fn many_tokens_at_once_each_get_their_own_answer() {
    let db = TestDb::new();
    let mut s = sealbox_tests::pg::store_with(&db.url, "e", "{}", &["d1", "d2", "d3"]);
    s.revoke_device("d3", Audit::new(1, "device.revoked", serde_json::json!({})))
        .unwrap();
    let hashes: Vec<String> = ["d1", "d1", "d2", "nobody", "d1", "d3"]
        .iter()
        .map(|h| h.to_string())
        .collect();
    let found = s.authenticate_many(&hashes, 0.001, 2.0).unwrap();
    let got: Vec<Option<(String, bool, Option<bool>)>> = found
        .into_iter()
        .map(|f| f.map(|(d, taken)| (d.name, d.revoked, taken.map(|t| t.is_ok()))))
        .collect();
    let some = |n: &str, revoked, taken| Some((n.to_string(), revoked, taken));
    assert_eq!(
        got,
        vec![
            some("d1", false, Some(true)),
            some("d1", false, Some(true)),
            some("d2", false, Some(true)),
            None,
            some("d1", false, Some(false)),
            some("d3", true, None),
        ]
    );
    let mut c = db.client();
    let rows: i64 = c
        .query_one("SELECT count(*) FROM device_rate WHERE device = 'd3'", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "a revoked device's bucket is not touched");
}

/// What the shared rate limit costs on the sync path: the upsert beside the token lookup that
/// every request makes anyway, timed over 2,000 of each on the test cluster (printed; the
/// upsert must stay within a few lookups, so no WAL flush per request), and the
/// bucket itself: from 8 connections at once, a burst of 50 lets exactly 50 through.
#[test]
fn the_shared_rate_limit_costs_about_one_lookup_and_counts_exactly() {
    let db = TestDb::new();
    let mut s = sealbox_tests::pg::store_with(&db.url, "e", "{}", &["d"]);
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..2000 {
            f();
        }
        t.elapsed() / 2000
    };
    let lookup = time(&mut || {
        s.device_by_token("d").unwrap().unwrap();
    });
    let mut s2 = Store::open_url(&db.url).unwrap();
    let take = time(&mut || {
        s2.rate_take("d-timed", 1e9, 1e9).unwrap().unwrap().unwrap();
    });
    println!("per request: token lookup {lookup:?}, rate limit upsert {take:?}");
    // A WAL flush per request (3.7 ms here) would not fit; the upsert's commit does not wait
    // for one.
    assert!(
        take < lookup * 6 + Duration::from_micros(1500),
        "the rate limit's upsert {take:?}, the lookup {lookup:?}"
    );
    let granted = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|sc| {
        for _ in 0..8 {
            let (url, granted) = (&db.url, &granted);
            sc.spawn(move || {
                let mut s = Store::open_url(url).unwrap();
                for _ in 0..20 {
                    if s.rate_take("d", 0.001, 50.0).unwrap().unwrap().is_ok() {
                        granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(granted.into_inner(), 50, "160 tries, a burst of 50");
}
