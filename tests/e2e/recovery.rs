//! Head office never loses its key or its data: the recovery kit, the passphrase change, keys
//! encrypted at rest and rotated, encrypted backups and their restore, drilled with the real
//! binaries over real TLS.

use sealbox_device::files::{DataDir, KEY_ACCOUNT};
use sealbox_device::{Device, KeyStore, OsKeychain};
use sealbox_headoffice::keys::HoDir;
use sealbox_headoffice::Passphrase;
use sealbox_tests::server::{ho_counts, HoServer};
use sealbox_tests::*;
use std::path::{Path, PathBuf};

const NEW_PASSPHRASE: &str = "a new e2e passphrase";

fn kit_dir(sb: &Sandbox) -> PathBuf {
    sb.tmp.path().join("ho-recovery-kit")
}

fn share(sb: &Sandbox, n: usize) -> String {
    kit_dir(sb)
        .join(format!("share-{n}-of-3.txt"))
        .to_str()
        .unwrap()
        .to_string()
}

/// `identity recover` with these shares; the new passphrase from the environment.
fn recover(sb: &Sandbox, shares: &[&str], lang: &str) -> std::process::Output {
    let mut args = vec!["identity", "recover"];
    for s in shares {
        args.extend(["--share", s]);
    }
    sb.ho_cmd(&args)
        .env("SEALBOX_HO_NEW_PASSPHRASE", NEW_PASSPHRASE)
        .env("SEALBOX_LANG", lang)
        .output()
        .unwrap()
}

/// The name and digest of every file in head office's data directory.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v: Vec<_> = files_under(dir)
        .into_iter()
        .map(|p| {
            let d = file_digest(&p);
            (p, d)
        })
        .collect();
    v.sort();
    v
}

fn export_rows(sb: &Sandbox, pass: &str, name: &str) -> Result<usize, String> {
    let out = sb.tmp.path().join(name);
    let o = sb
        .ho_cmd(&[
            "export",
            "--event",
            EVENT,
            "--format",
            "csv",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("SEALBOX_HO_PASSPHRASE", pass)
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).to_string());
    }
    let text = std::fs::read_to_string(&out).unwrap();
    Ok(text.lines().count() - 1)
}

/// Drill: identity.age is lost. Too few shares, a damaged share and another head office's
/// share are each refused with their own line (in Chinese too) and change nothing; two shares
/// rebuild it under a new passphrase, and the entries export.
#[test]
fn lost_identity_is_rebuilt_from_two_shares_then_exported() {
    let sb = Sandbox::headoffice();
    let kit = kit_dir(&sb);
    for n in 1..=3 {
        assert!(kit.join(format!("share-{n}-of-3.txt")).exists());
    }
    assert!(kit.join("README.txt").exists());
    let server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 5);
    sb.dev_ok(&["sync"]);
    drop(server);

    std::fs::remove_file(sb.ho.join("identity.age")).unwrap();
    let before = snapshot(&sb.ho);

    let refused = |shares: &[&str], en: &str, zh: &str| {
        let out = recover(&sb, shares, "en");
        let err = fail(out, &["identity", "recover"]);
        assert!(err.contains(en), "expected {en:?}: {err}");
        let out = recover(&sb, shares, "zh");
        let err = fail(out, &["identity", "recover"]);
        assert!(err.contains(zh), "expected {zh:?}: {err}");
        assert_eq!(snapshot(&sb.ho), before, "nothing changed");
    };
    let (s1, s2, s3) = (share(&sb, 1), share(&sb, 2), share(&sb, 3));
    refused(
        &[&s1],
        "2 different recovery shares are needed, 1 given; nothing was changed",
        "需要 2 份不同的恢复分片，只提供了 1 份；未做任何更改",
    );
    refused(
        &[&s2, &s2],
        "2 different recovery shares are needed, 1 given",
        "未做任何更改",
    );
    // One character of the share line mistyped.
    let text = std::fs::read_to_string(&s2).unwrap();
    let line = text.lines().find(|l| l.starts_with("SBX1-")).unwrap();
    let i = line.len() / 2 + 1;
    let swapped = if &line[i..=i] == "7" { "8" } else { "7" };
    let mut typo = line.to_string();
    typo.replace_range(i..=i, swapped);
    assert_ne!(typo, line);
    refused(
        &[&s1, &typo],
        "recovery share 2 is damaged or mistyped",
        "第 2 份恢复分片已损坏或抄错",
    );
    // A share from another head office's kit.
    let other = sb.tmp.path().join("other-ho");
    ok(
        std::process::Command::new(bin("sealbox-headoffice"))
            .arg("--data-dir")
            .arg(&other)
            .arg("init")
            .env("SEALBOX_HO_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap(),
        &["init other"],
    );
    let foreign = sb.tmp.path().join("other-ho-recovery-kit/share-2-of-3.txt");
    refused(
        &[&s1, foreign.to_str().unwrap()],
        "recovery share 2 belongs to another head office",
        "第 2 份恢复分片属于另一个总部",
    );

    // Two good shares: one as its file, one as the line a person copied.
    let line3 = std::fs::read_to_string(&s3)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("SBX1-"))
        .unwrap()
        .to_lowercase();
    let out = recover(&sb, &[&s1, &line3], "en");
    ok(out, &["identity", "recover"]);
    assert_eq!(export_rows(&sb, NEW_PASSPHRASE, "after.csv"), Ok(5));
    let old = export_rows(&sb, PASSPHRASE, "old.csv").unwrap_err();
    assert!(old.contains("wrong passphrase"), "{old}");
    let audit = sb.ho_ok(&["audit", "verify"]);
    assert!(audit.contains("audit chain ok"), "{audit}");
}

/// `passphrase change` re-wraps the identity; killed at any moment, it leaves the old
/// passphrase or the new one working, never neither; the recovery shares stay valid.
#[test]
fn passphrase_change_is_atomic_and_the_shares_stay_valid() {
    let sb = Sandbox::headoffice();
    let ho = HoDir::new(&sb.ho);
    let opens = |p: &str| ho.load_identity(&Passphrase::new(p)).is_ok();
    let mut rng = Rng::from_time();
    let (mut current, mut next) = (PASSPHRASE.to_string(), NEW_PASSPHRASE.to_string());
    for round in 0..6 {
        let mut child = sb
            .ho_cmd(&["passphrase", "change"])
            .env("SEALBOX_HO_PASSPHRASE", &current)
            .env("SEALBOX_HO_NEW_PASSPHRASE", &next)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed somewhere between start and well after the end (scrypt takes a while).
        std::thread::sleep(std::time::Duration::from_millis(rng.below(1200)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let (old_ok, new_ok) = (opens(&current), opens(&next));
        eprintln!("round {round}: exit {status:?}, old {old_ok}, new {new_ok}");
        assert!(old_ok ^ new_ok, "exactly one passphrase opens the identity");
        if status.success() {
            assert!(new_ok);
        }
        if new_ok {
            std::mem::swap(&mut current, &mut next);
        }
    }
    // A clean change, then a wrong old passphrase changes nothing.
    ok(
        sb.ho_cmd(&["passphrase", "change"])
            .env("SEALBOX_HO_PASSPHRASE", &current)
            .env("SEALBOX_HO_NEW_PASSPHRASE", &next)
            .output()
            .unwrap(),
        &["passphrase", "change"],
    );
    let digest = file_digest(&sb.ho.join("identity.age"));
    let err = fail(
        sb.ho_cmd(&["passphrase", "change"])
            .env("SEALBOX_HO_PASSPHRASE", "not the passphrase")
            .env("SEALBOX_HO_NEW_PASSPHRASE", "whatever it is long")
            .output()
            .unwrap(),
        &["passphrase", "change"],
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(file_digest(&sb.ho.join("identity.age")), digest);
    assert!(opens(&next));
    // The shares made at init still rebuild the identity after the changes.
    std::fs::remove_file(sb.ho.join("identity.age")).unwrap();
    ok(
        recover(&sb, &[&share(&sb, 2), &share(&sb, 3)], "en"),
        &["recover"],
    );
    assert!(opens(NEW_PASSPHRASE));
    // No temp file is left behind by the killed runs that matter: only hidden ones could be.
    let visible: Vec<_> = std::fs::read_dir(&sb.ho)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(!visible.iter().any(|n| n.contains("tmp")), "{visible:?}");
}

/// The receipt key and TLS keys lie encrypted; after `keys rotate` devices follow the statement
/// signed by the old key and accept the new key's receipts, and a thief's copy of the old key
/// signs nothing a device acts on: neither a receipt nor a rotation of its own.
#[test]
fn rotated_receipt_key_is_followed_and_a_copied_old_key_signs_nothing() {
    use sealbox_protocol::rotation::KeyRotation;
    use sealbox_protocol::sync::Receipt;
    let sb = Sandbox::headoffice();
    // At rest: no private key in the clear, and nothing opens without the passphrase.
    assert!(files_containing(&sb.ho, "PRIVATE KEY").is_empty());
    for plain in ["signing.key", "ca.key", "server.key"] {
        assert!(!sb.ho.join(plain).exists());
    }
    assert!(HoDir::new(&sb.ho)
        .unlock(&Passphrase::new("not the passphrase"))
        .is_err());
    // The thief copies the receipt key as it is before the rotation.
    let stolen = HoDir::new(&sb.ho)
        .unlock(&Passphrase::new(PASSPHRASE))
        .unwrap()
        .load_signing_key()
        .unwrap();

    let mut server = HoServer::start(&sb.ho, &[]);
    sb.enrol_at(&server.url());
    sb.add_many(0, 3);
    sb.dev_ok(&["sync"]);
    server.terminate();

    let out = sb.ho_ok(&["keys", "rotate"]);
    assert!(out.contains("rotated"), "{out}");
    let server = HoServer::start(&sb.ho, &[]);
    repoint_device(&sb.dev, &server.url());
    sb.add_many(3, 3);
    let report: serde_json::Value = serde_json::from_str(&sb.dev_ok(&["sync", "--json"])).unwrap();
    assert_eq!(report["erased"], 3, "the new key's receipt is accepted");
    let dev = Device::open(&sb.dev, &OsKeychain).unwrap();
    assert!(dev
        .audit_recent(20)
        .unwrap()
        .iter()
        .any(|r| r.action == "key.rotated"));
    drop(dev);

    let check_refused = |what: &str| {
        let out = sb.dev_cmd(&["sync", "--timeout", "5"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("not head office's"), "{what}: {err}");
        assert_eq!(sb.pending(), 2, "{what}: nothing erased");
    };
    sb.add_many(6, 2);
    // A receipt signed with the copied old key.
    let old = stolen.clone();
    let (addr, _rt) = crate::sync::fake_head_office(&sb, move |req| {
        Receipt::sign(
            req.batch_id,
            "booth-1",
            req.entries.iter().map(|e| e.id).collect(),
            1,
            &old,
        )
    });
    repoint_device(&sb.dev, &format!("https://{addr}"));
    check_refused("receipt from the old key");
    // The thief's own rotation, old key to theirs, with a receipt from their key.
    let thief = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let forged = KeyRotation::sign(&stolen, &thief.verifying_key(), 2);
    let (addr, _rt2) = crate::sync::fake_head_office(&sb, move |req| {
        let mut r = Receipt::sign(
            req.batch_id,
            "booth-1",
            req.entries.iter().map(|e| e.id).collect(),
            1,
            &thief,
        );
        r.rotations = vec![forged.clone()];
        r
    });
    repoint_device(&sb.dev, &format!("https://{addr}"));
    check_refused("forged rotation from the old key");
    // The real head office still gets them through.
    repoint_device(&sb.dev, &server.url());
    sb.dev_ok(&["sync"]);
    assert_eq!(sb.pending(), 0);
    assert_eq!(ho_counts(&sb.ho), (8, 8));
}

/// A data directory of an older version, with the keys in plain files: `serve` encrypts them
/// and removes the plain files, and devices enrolled before go on verifying receipts.
#[test]
fn plain_keys_of_an_older_version_are_encrypted_when_serve_starts() {
    let sb = Sandbox::headoffice();
    let ho = HoDir::new(&sb.ho)
        .unlock(&Passphrase::new(PASSPHRASE))
        .unwrap();
    let seed = ho.load_signing_key().unwrap();
    std::fs::write(sb.ho.join("signing.key"), hex(seed.as_bytes())).unwrap();
    std::fs::write(sb.ho.join("ca.key"), ho.load_ca_key_pem().unwrap().as_str()).unwrap();
    std::fs::write(
        sb.ho.join("server.key"),
        ho.load_server_key_pem().unwrap().as_str(),
    )
    .unwrap();
    for sealed in ["receipt-key.json", "ca.key.age", "server.key.age"] {
        std::fs::remove_file(sb.ho.join(sealed)).unwrap();
    }
    let server = HoServer::start(&sb.ho, &[]);
    for plain in ["signing.key", "ca.key", "server.key"] {
        assert!(!sb.ho.join(plain).exists(), "{plain} removed");
    }
    assert!(files_containing(&sb.ho, "PRIVATE KEY").is_empty());
    sb.enrol_at(&server.url());
    sb.add_many(0, 4);
    sb.dev_ok(&["sync"]);
    assert_eq!(sb.pending(), 0);
    assert_eq!(
        HoDir::new(&sb.ho).load_verifying_key().unwrap(),
        seed.verifying_key()
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Devices of the backup drill; their keys leave the keychain when it ends.
struct Fleet {
    dirs: Vec<PathBuf>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Ok(Some(m)) = DataDir::new(dir).read_device_json() {
                let _ = OsKeychain.delete(&m.keychain_service(), KEY_ACCOUNT);
            }
        }
    }
}

fn add_on(sb: &Sandbox, dir: &Path, tag: &str, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("Qzdrill Visitor {tag} {i}"),
                "phone": format!("137{:08}", i),
                "company": "Qzdrill Widgets",
                "consent": true
            })
            .to_string()
        })
        .collect();
    sb.add_lines_in(dir, &lines);
}

fn pending_on(sb: &Sandbox, dir: &Path) -> u64 {
    let out = sb.dev_cmd_in(dir, &["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pending"].as_u64().unwrap() + v["exported"].as_u64().unwrap_or(0)
}

/// Drill: a backup is taken while ten devices sync; head office's disk then dies. The backup
/// restores into a new directory (checked: manifest, digests, counts, audit chain), `serve`
/// starts there, and the devices continue: what was receipted before the backup is there, what
/// devices still hold arrives. What was receipted after the backup is gone: the devices erased
/// it on its receipt. That is the recovery point, and the test states it exactly.
#[test]
fn backup_taken_while_ten_devices_sync_restores_and_devices_continue() {
    let sb = Sandbox::headoffice();
    let key = sb.tmp.path().join("backup.key");
    sb.ho_ok(&["backup-key", "new", "--out", key.to_str().unwrap()]);
    let mut server = HoServer::start(&sb.ho, &[]);
    let mut fleet = Fleet { dirs: Vec::new() };
    for i in 0..10 {
        let dir = sb.tmp.path().join(format!("dev{i}"));
        let file = sb.tmp.path().join(format!("booth-{i}.enrol.json"));
        sb.ho_ok(&[
            "enroll",
            "--device",
            &format!("booth-{i}"),
            "--event",
            EVENT,
            "--url",
            &server.url(),
            "--out",
            file.to_str().unwrap(),
        ]);
        ok(
            sb.dev_cmd_in(&dir, &["enroll", file.to_str().unwrap(), "--shred"])
                .output()
                .unwrap(),
            &["enroll"],
        );
        fleet.dirs.push(dir);
    }
    // Before: every device delivers 20.
    for (i, dir) in fleet.dirs.iter().enumerate() {
        add_on(&sb, dir, &format!("a{i}"), 20);
        ok(sb.dev_cmd_in(dir, &["sync"]).output().unwrap(), &["sync"]);
    }
    assert_eq!(ho_counts(&sb.ho).0, 200);

    // During: every device adds and syncs in rounds while the backup is taken.
    let backup = sb.tmp.path().join("during.age");
    let during = std::thread::scope(|s| {
        let workers: Vec<_> = fleet
            .dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let sb = &sb;
                s.spawn(move || {
                    for round in 0..4 {
                        add_on(sb, dir, &format!("b{i}-{round}"), 10);
                        ok(sb.dev_cmd_in(dir, &["sync"]).output().unwrap(), &["sync"]);
                    }
                })
            })
            .collect();
        // The backup starts once deliveries are under way.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while ho_counts(&sb.ho).0 < 10 {
            assert!(std::time::Instant::now() < deadline, "no delivery arrived");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = sb.ho_ok(&["backup", "--out", backup.to_str().unwrap()]);
        let during = ho_counts(&sb.ho).0;
        for w in workers {
            w.join().unwrap();
        }
        eprintln!("{out}");
        during
    });
    let receipted = ho_counts(&sb.ho).0;
    assert_eq!(receipted, 600);
    // After: every device adds 5 it still holds when the disk dies.
    for (i, dir) in fleet.dirs.iter().enumerate() {
        add_on(&sb, dir, &format!("c{i}"), 5);
    }
    server.kill();
    std::fs::rename(&sb.ho, sb.tmp.path().join("dead-disk")).unwrap();

    // Restore into a new directory; a non-empty one is refused first.
    let busy = sb.tmp.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), "x").unwrap();
    let restore = |dir: &Path| {
        std::process::Command::new(bin("sealbox-headoffice"))
            .arg("--data-dir")
            .arg(dir)
            .args(["restore", backup.to_str().unwrap(), "--backup-key"])
            .arg(&key)
            .output()
            .unwrap()
    };
    let err = fail(restore(&busy), &["restore"]);
    assert!(err.contains("not empty"), "{err}");
    let restored = sb.tmp.path().join("ho-restored");
    let out = ok(restore(&restored), &["restore"]);
    assert!(out.contains("verified"), "{out}");
    let (in_backup, _) = ho_counts(&restored);
    eprintln!("entries: 200 before, {in_backup} in the backup (taken while {during} were held), {receipted} receipted by the end");
    assert!(
        (200..=receipted).contains(&in_backup),
        "the backup holds at least what was receipted before it started"
    );

    // Head office runs again from the restored directory; the devices continue.
    let server = HoServer::start(&restored, &[]);
    for dir in &fleet.dirs {
        repoint_device(dir, &server.url());
        ok(sb.dev_cmd_in(dir, &["sync"]).output().unwrap(), &["sync"]);
        assert_eq!(pending_on(&sb, dir), 0);
    }
    let (total, distinct) = ho_counts(&restored);
    assert_eq!(total, distinct);
    // The recovery point: the backup's entries plus the 50 devices still held. The entries
    // receipted between the backup and the disk's death were erased on the devices: lost.
    assert_eq!(total, in_backup + 50);
    eprintln!(
        "recovery point: {} entries receipted after the backup are lost",
        receipted - in_backup
    );
    let audit = ok(
        std::process::Command::new(bin("sealbox-headoffice"))
            .arg("--data-dir")
            .arg(&restored)
            .args(["audit", "verify"])
            .output()
            .unwrap(),
        &["audit"],
    );
    assert!(audit.contains("audit chain ok"), "{audit}");
}

/// A backup with one byte changed anywhere, cut short, or opened with another key is refused
/// and leaves nothing behind; `serve` takes backups on its schedule and keeps the newest N.
#[test]
fn a_changed_backup_is_refused_and_serve_keeps_the_last_n() {
    let sb = Sandbox::enrolled();
    let key = sb.tmp.path().join("backup.key");
    let out = sb.ho_cmd(&["backup", "--out", "x.age"]).output().unwrap();
    assert!(fail(out, &["backup"]).contains("no backup recipient"));
    sb.ho_ok(&["backup-key", "new", "--out", key.to_str().unwrap()]);
    let _server = HoServer::start(
        &sb.ho,
        &[
            ("SEALBOX_HO_BACKUP_DIR", "backups"),
            ("SEALBOX_HO_BACKUP_EVERY_MINUTES", "0.02"),
            ("SEALBOX_HO_BACKUP_KEEP", "2"),
        ],
    );
    sb.add_many(0, 7);
    let backups = sb.ho.join("backups");
    let list = || {
        // Finished backups only: one in progress is a hidden temp file.
        let mut v: Vec<PathBuf> = std::fs::read_dir(&backups)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("sealbox-backup-") && name.ends_with(".age")
        });
        v.sort();
        v
    };
    // One at start, then one every 1.2 s, the older ones pruned after each: once at least 3
    // were made, the newest 2 are kept (a third exists only between a backup and its pruning).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    let kept = loop {
        let now = list();
        assert!(now.len() <= 3, "{now:?}");
        seen.extend(now.iter().cloned());
        if seen.len() >= 3 && now.len() == 2 {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "scheduled backups: {seen:?}, now {now:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };

    let good = sb.tmp.path().join("good.age");
    sb.ho_ok(&["backup", "--out", good.to_str().unwrap()]);
    let bytes = std::fs::read(&good).unwrap();
    let restore = |file: &Path, dir: &Path, key: &Path| {
        std::process::Command::new(bin("sealbox-headoffice"))
            .arg("--data-dir")
            .arg(dir)
            .args(["restore", file.to_str().unwrap(), "--backup-key"])
            .arg(key)
            .output()
            .unwrap()
    };
    let mut rng = Rng::from_time();
    let positions = [
        10,
        bytes.len() / 3,
        bytes.len() / 2 + rng.below(bytes.len() as u64 / 3) as usize,
        bytes.len() - 1,
    ];
    for (n, pos) in positions.into_iter().enumerate() {
        let mut changed = bytes.clone();
        changed[pos] ^= 1 << rng.below(8);
        let file = sb.tmp.path().join(format!("changed-{n}.age"));
        std::fs::write(&file, &changed).unwrap();
        let dir = sb.tmp.path().join(format!("restore-{n}"));
        let err = fail(restore(&file, &dir, &key), &["restore"]);
        assert!(
            err.contains("damaged, altered") || err.contains("does not match"),
            "byte {pos}: {err}"
        );
        assert!(!dir.exists(), "byte {pos}: nothing restored");
    }
    let cut = sb.tmp.path().join("cut.age");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = fail(
        restore(&cut, &sb.tmp.path().join("restore-cut"), &key),
        &["restore"],
    );
    assert!(err.contains("damaged, altered"), "{err}");
    // Another backup key.
    let other = sb.tmp.path().join("other.key");
    std::fs::write(
        &other,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(
                &age::x25519::Identity::generate().to_string()
            )
        ),
    )
    .unwrap();
    let err = fail(
        restore(&good, &sb.tmp.path().join("restore-other"), &other),
        &["restore"],
    );
    assert!(err.contains("not for this backup key"), "{err}");
    // No staging directory is left anywhere.
    let leftovers: Vec<_> = std::fs::read_dir(sb.tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".sealbox-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The untouched file and the newest scheduled one restore.
    ok(
        restore(&good, &sb.tmp.path().join("restore-good"), &key),
        &["restore"],
    );
    ok(
        restore(
            kept.last().unwrap(),
            &sb.tmp.path().join("restore-scheduled"),
            &key,
        ),
        &["restore"],
    );
}

/// The same tests with head office on PostgreSQL (a fresh database each, on the private cluster
/// `cargo xtask test` starts).
mod on_postgres {
    use sealbox_tests::pg::on_postgres;

    #[test]
    fn lost_identity_is_rebuilt_from_two_shares_then_exported() {
        on_postgres(super::lost_identity_is_rebuilt_from_two_shares_then_exported)
    }

    #[test]
    fn rotated_receipt_key_is_followed_and_a_copied_old_key_signs_nothing() {
        on_postgres(super::rotated_receipt_key_is_followed_and_a_copied_old_key_signs_nothing)
    }
}
