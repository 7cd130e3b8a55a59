//! Encrypted backups of head office's data directory, and their restore.
//!
//! A backup is one age file, encrypted to the backup recipient(s) in `backup-recipient.txt`
//! (the backup identity is kept offline by the admin, so a stolen backup opens nothing). Inside:
//!
//! ```text
//! sealbox-ho-backup/1\n
//! u64 LE length, then the manifest (JSON: every file's name, size and SHA-256, each table's
//!                row count, the audit chain's length and last hash)
//! each file's bytes, in the manifest's order
//! ```
//!
//! The database is copied with SQLite's online backup (one step, under a read transaction, so
//! it is a consistent snapshot while `serve` keeps writing); the other files are the keys and
//! the config at the top of the data directory. The file is written to a temp name, synced and
//! renamed. [`restore`] checks the whole stream (age authenticates every chunk and the end),
//! every digest, the database's integrity, its counts and its audit chain in a staging
//! directory, and only then moves it into place.

use crate::config::Config;
use crate::error::{HoError, Result};
use crate::keys::{self, HoDir};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

const MAGIC: &[u8] = b"sealbox-ho-backup/1\n";
const MANIFEST_FORMAT: &str = "sealbox-ho-backup-manifest/1";
const DB_NAME: &str = "headoffice.db";
/// The most a manifest may take: a damaged length never makes restore allocate gigabytes.
const MAX_MANIFEST: u64 = 16 << 20;

/// Why a backup or a restore did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("no backup recipient: run `sealbox-headoffice backup-key new --out FILE` and keep FILE offline, or `backup-key set age1…`")]
    NoRecipient,
    #[error("{0:?} is not an age recipient (age1…)")]
    BadRecipient(String),
    #[error("the backup key file holds no age identity (AGE-SECRET-KEY-1…)")]
    BadIdentity,
    #[error(
        "the backup is damaged, altered, or not for this backup key ({0}); nothing was restored"
    )]
    Damaged(String),
    #[error("the backup does not match its manifest ({0}); nothing was restored")]
    Mismatch(String),
    #[error("{0} is not empty: restore only into a new or empty directory; nothing was restored")]
    NotEmpty(String),
}

impl BackupError {
    pub fn code(&self) -> &'static str {
        use BackupError::*;
        match self {
            NoRecipient => "no_backup_recipient",
            BadRecipient(_) => "bad_backup_recipient",
            BadIdentity => "bad_backup_identity",
            Damaged(_) => "backup_damaged",
            Mismatch(_) => "backup_mismatch",
            NotEmpty(_) => "restore_not_empty",
        }
    }

    /// The one-line message in `lang`.
    pub fn message(&self, lang: sealbox_protocol::Lang) -> String {
        use BackupError::*;
        match lang {
            sealbox_protocol::Lang::En => self.to_string(),
            sealbox_protocol::Lang::Zh => match self {
                NoRecipient => "尚未设置备份接收方：请运行 `sealbox-headoffice backup-key new --out FILE` 并离线保管 FILE，或运行 `backup-key set age1…`".into(),
                BadRecipient(r) => format!("{r:?} 不是 age 接收方（age1…）"),
                BadIdentity => "备份密钥文件中没有 age 私钥（AGE-SECRET-KEY-1…）".into(),
                Damaged(_) => "备份已损坏、被改动，或不属于此备份密钥；未恢复任何内容".into(),
                Mismatch(_) => "备份与其清单不符；未恢复任何内容".into(),
                NotEmpty(p) => format!("{p} 不为空：只能恢复到新的或空的目录；未恢复任何内容"),
            },
        }
    }
}

/// One file in a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What a backup holds, checked again on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// The head office it was taken from (see [`keys::ho_id`]).
    pub ho_id: String,
    pub created_at_ms: i64,
    pub files: Vec<FileEntry>,
    /// Rows in each table of the database snapshot.
    pub counts: BTreeMap<String, u64>,
    pub audit_rows: u64,
    /// The hash of the audit chain's last row.
    pub audit_head: String,
}

/// Parses a recipient for backups.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(s.trim())
        .map_err(|_| BackupError::BadRecipient(s.trim().chars().take(80).collect()).into())
}

/// The recipients in `backup-recipient.txt` (one per line, `#` comments).
pub fn recipients(ho: &HoDir) -> Result<Vec<age::x25519::Recipient>> {
    let text = match std::fs::read_to_string(ho.backup_recipient()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::NoRecipient.into())
        }
        Err(e) => return Err(HoError::io("reading backup-recipient.txt")(e)),
    };
    let out = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_recipient)
        .collect::<Result<Vec<_>>>()?;
    if out.is_empty() {
        return Err(BackupError::NoRecipient.into());
    }
    Ok(out)
}

/// Sets the backup recipient (replacing any other).
pub fn set_recipient(dir: &Path, recipient: &str) -> Result<()> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    parse_recipient(recipient)?;
    keys::write_atomic(
        &ho.backup_recipient(),
        format!("{}\n", recipient.trim()).as_bytes(),
    )
}

/// Makes a new backup identity, writes it to `out` (new file, owner-only, in the format of
/// `age-keygen`, so `age -d -i FILE` opens backups too) and sets its recipient. The admin keeps
/// `out` offline: it is the only key to the backups.
pub fn new_key(dir: &Path, out: &Path) -> Result<String> {
    use age::secrecy::ExposeSecret;
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = zeroize::Zeroizing::new(format!(
        "# Sealbox head office backup key ({}). Keep it offline: it opens every backup.\n# public key: {recipient}\n{}\n",
        ho.id()?,
        identity.to_string().expose_secret()
    ));
    keys::write_new_private(out, text.as_bytes())?;
    set_recipient(dir, &recipient)?;
    Ok(recipient)
}

/// Reads a backup identity file (as written by [`new_key`] or `age-keygen`).
pub fn read_identity(path: &Path) -> Result<age::x25519::Identity> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(HoError::io(format!("reading {}", path.display())))?,
    );
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
        .ok_or_else(|| BackupError::BadIdentity.into())
}

/// What a backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub manifest: Manifest,
}

/// The files at the top of the data directory that a backup carries besides the database:
/// keys, certificates, config. Not the database's own files, nor hidden (temporary) ones.
fn side_files(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(root).map_err(HoError::io("listing the data directory"))? {
        let e = e.map_err(HoError::io("listing the data directory"))?;
        let name = e.file_name().to_string_lossy().to_string();
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && !name.starts_with('.') && !name.starts_with(DB_NAME) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn sha256_file(path: &Path) -> Result<(u64, String)> {
    use sha2::Digest;
    let mut f =
        std::fs::File::open(path).map_err(HoError::io(format!("reading {}", path.display())))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let r = f
            .read(&mut buf)
            .map_err(HoError::io(format!("reading {}", path.display())))?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// Copies the live database to `dst`: one consistent snapshot even while `serve` writes.
fn snapshot_db(src: &Path, dst: &Path) -> Result<()> {
    crate::store::sqlite::snapshot_file(src, dst)
}

/// Row counts of every table, the audit chain's length and last hash; fails on a broken chain
/// or a failed integrity check.
fn check_db(path: &Path) -> std::result::Result<(BTreeMap<String, u64>, u64, String), String> {
    let (conn, integrity, counts, head) =
        crate::store::sqlite::file_counts(path).map_err(|e| format!("database: {e}"))?;
    if integrity != "ok" {
        return Err("the database fails its integrity check".into());
    }
    let (rows, broken) = crate::audit::verify(&conn).map_err(|e| format!("audit: {e}"))?;
    if let Some(seq) = broken {
        return Err(format!("the audit chain is broken at row {seq}"));
    }
    Ok((counts, rows, head))
}

/// Backups hold the embedded database: a head office on PostgreSQL backs its database up with
/// PostgreSQL's own tools (and a synchronous standby), so `backup` says so instead of writing a
/// backup without its data.
fn refuse_on_postgres(config: &Config) -> Result<()> {
    if config.database_url.is_some() {
        return Err(HoError::Config(
            "backup copies the embedded database; this head office runs on PostgreSQL (database_url): back it up with PostgreSQL's tools (pg_basebackup, WAL archiving) and a synchronous standby, and keep the data directory's keys as for `backup`".into(),
        ));
    }
    Ok(())
}

/// `backup --out FILE`: a consistent, encrypted snapshot of the data directory.
pub fn backup(dir: &Path, out: &Path) -> Result<BackupReport> {
    let ho = HoDir::new(dir);
    ho.require_initialised()?;
    refuse_on_postgres(&Config::load(dir)?)?;
    let recipients = recipients(&ho)?;
    if out.exists() {
        return Err(HoError::OutputExists {
            path: out.display().to_string(),
        });
    }
    // Plain keys of an older version would be carried as they are: encrypt them first.
    ho.migrate_plain_keys()?;
    let staging = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(dir)
        .map_err(HoError::io("creating a staging directory"))?;
    let snap = staging.path().join(DB_NAME);
    snapshot_db(&ho.db(), &snap)?;
    let (counts, audit_rows, audit_head) = check_db(&snap)
        .map_err(|e| HoError::Config(format!("the database cannot be backed up: {e}")))?;
    let mut files = Vec::new();
    let mut sources = Vec::new();
    for (name, path) in std::iter::once((DB_NAME.to_string(), snap.clone())).chain(
        side_files(dir)?
            .into_iter()
            .map(|n| (n.clone(), dir.join(n))),
    ) {
        let (bytes, sha256) = sha256_file(&path)?;
        files.push(FileEntry {
            name,
            bytes,
            sha256,
        });
        sources.push(path);
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        ho_id: ho.id()?,
        created_at_ms: crate::now_ms(),
        files,
        counts,
        audit_rows,
        audit_head,
    };
    let manifest_json =
        serde_json::to_vec(&manifest).map_err(|e| HoError::Crypto(e.to_string()))?;

    let parent = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".sealbox-backup-")
        .suffix(".tmp")
        .tempfile_in(parent)
        .map_err(HoError::io(format!(
            "creating a file in {}",
            parent.display()
        )))?;
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| HoError::Crypto(e.to_string()))?;
    let werr = HoError::io(format!("writing {}", out.display()));
    let written = (|| -> std::io::Result<std::fs::File> {
        let mut w = encryptor.wrap_output(BufWriter::new(tmp.reopen()?))?;
        w.write_all(MAGIC)?;
        w.write_all(&(manifest_json.len() as u64).to_le_bytes())?;
        w.write_all(&manifest_json)?;
        for (path, entry) in sources.iter().zip(&manifest.files) {
            let mut f = std::fs::File::open(path)?;
            let n = std::io::copy(&mut (&mut f).take(entry.bytes), &mut w)?;
            if n != entry.bytes {
                return Err(std::io::Error::other(format!(
                    "{} changed while it was backed up",
                    entry.name
                )));
            }
        }
        let f = w.finish()?.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(f)
    })();
    let f = written.map_err(werr)?;
    let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    tmp.persist_noclobber(out).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            HoError::OutputExists {
                path: out.display().to_string(),
            }
        } else {
            HoError::io(format!("writing {}", out.display()))(e.error)
        }
    })?;
    keys::sync_dir(parent)?;
    drop(staging);
    crate::store::Store::open(&ho)?.audit_append(crate::store::Audit::new(
        crate::now_ms(),
        "backup.made",
        serde_json::json!({"entries": manifest.counts.get("entries"), "audit_rows": manifest.audit_rows, "bytes": bytes}),
    ))?;
    tracing::info!(bytes, entries = ?manifest.counts.get("entries"), "backup written");
    Ok(BackupReport {
        path: out.to_path_buf(),
        bytes,
        manifest,
    })
}

/// What a restore put in place.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub manifest: Manifest,
}

fn damaged(e: impl std::fmt::Display) -> HoError {
    BackupError::Damaged(e.to_string()).into()
}

fn mismatch(e: impl Into<String>) -> HoError {
    BackupError::Mismatch(e.into()).into()
}

/// `restore FILE --data-dir NEW`: decrypts the backup with the offline backup identity into a
/// staging directory beside `new`, checks every file's size and digest, the end of the stream,
/// the database's integrity, its counts and its audit chain against the manifest, and only then
/// moves it to `new`. `new` must not exist or be empty; on any error nothing is left behind.
pub fn restore(file: &Path, new: &Path, identity: &age::x25519::Identity) -> Result<RestoreReport> {
    let non_empty = std::fs::read_dir(new)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if non_empty || (new.exists() && !new.is_dir()) {
        return Err(BackupError::NotEmpty(new.display().to_string()).into());
    }
    let parent = new
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(HoError::io(format!("creating {}", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".sealbox-restore-")
        .tempdir_in(parent)
        .map_err(HoError::io(format!(
            "creating a directory in {}",
            parent.display()
        )))?;
    let input =
        std::fs::File::open(file).map_err(HoError::io(format!("reading {}", file.display())))?;
    let decryptor = age::Decryptor::new_buffered(BufReader::new(input)).map_err(damaged)?;
    let mut r = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(damaged)?;
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic).map_err(damaged)?;
    if magic != MAGIC {
        return Err(damaged("not a Sealbox head office backup"));
    }
    let mut len = [0u8; 8];
    r.read_exact(&mut len).map_err(damaged)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_MANIFEST {
        return Err(damaged("the manifest is too large"));
    }
    let mut mjson = vec![0u8; len as usize];
    r.read_exact(&mut mjson).map_err(damaged)?;
    let manifest: Manifest =
        serde_json::from_slice(&mjson).map_err(|_| damaged("the manifest is unreadable"))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(damaged("unknown manifest format"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for entry in &manifest.files {
        let name = &entry.name;
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !plain || !seen.insert(name.clone()) {
            return Err(mismatch(format!(
                "a file name in the manifest is not allowed: {name:?}"
            )));
        }
        let path = staging.path().join(name);
        let mut out = keys_create(&path)?;
        let mut hashing = HashingWriter::new(&mut out);
        let n = std::io::copy(&mut (&mut r).take(entry.bytes), &mut hashing).map_err(damaged)?;
        let digest = hashing.finish();
        if n != entry.bytes {
            return Err(damaged(format!("{name} is cut short")));
        }
        if digest != entry.sha256 {
            return Err(mismatch(format!("{name}'s digest differs")));
        }
        out.sync_all()
            .map_err(HoError::io(format!("writing {}", path.display())))?;
    }
    // The stream must end here, and its last chunk must authenticate as the last.
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).map_err(damaged)?;
    if !rest.is_empty() {
        return Err(damaged("data after the last file"));
    }
    if !seen.contains(DB_NAME) || !seen.contains("identity.age") {
        return Err(mismatch("the database or identity.age is missing"));
    }
    let (counts, rows, head) = check_db(&staging.path().join(DB_NAME)).map_err(mismatch)?;
    if counts != manifest.counts {
        return Err(mismatch("row counts differ"));
    }
    if rows != manifest.audit_rows || head != manifest.audit_head {
        return Err(mismatch("the audit chain differs"));
    }
    let recipient =
        std::fs::read_to_string(staging.path().join("recipient.txt")).unwrap_or_default();
    if keys::ho_id(&recipient) != manifest.ho_id {
        return Err(mismatch("recipient.txt is not the head office's"));
    }
    // Verified: move it into place.
    let staged = staging.keep();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o700));
    }
    if new.exists() {
        let _ = std::fs::remove_dir(new);
    }
    if let Err(e) = std::fs::rename(&staged, new) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(HoError::io(format!(
            "moving the restored files to {}",
            new.display()
        ))(e));
    }
    keys::sync_dir(parent)?;
    crate::store::Store::open(&HoDir::new(new))?.audit_append(crate::store::Audit::new(
        crate::now_ms(),
        "backup.restored",
        serde_json::json!({"taken_at_ms": manifest.created_at_ms, "entries": manifest.counts.get("entries")}),
    ))?;
    tracing::info!("backup restored");
    Ok(RestoreReport { manifest })
}

fn keys_create(path: &Path) -> Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .map_err(HoError::io(format!("creating {}", path.display())))
}

/// Writes through and hashes what it writes.
struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hash: sha2::Sha256,
}

impl<'a, W: Write> HashingWriter<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        use sha2::Digest;
        HashingWriter {
            inner,
            hash: sha2::Sha256::new(),
        }
    }
    fn finish(self) -> String {
        use sha2::Digest;
        hex::encode(self.hash.finalize())
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The name of a scheduled backup taken at `now`: sorts by time.
fn scheduled_name(now: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
    );
    format!(
        "sealbox-backup-{}.age",
        now.format(&f)
            .unwrap_or_else(|_| crate::now_ms().to_string())
    )
}

/// One scheduled backup into `into`, then removes all but the newest `keep` there.
pub fn scheduled(dir: &Path, into: &Path, keep: usize) -> Result<BackupReport> {
    std::fs::create_dir_all(into).map_err(HoError::io(format!("creating {}", into.display())))?;
    let report = backup(
        dir,
        &into.join(scheduled_name(time::OffsetDateTime::now_utc())),
    )?;
    let mut ours: Vec<PathBuf> = std::fs::read_dir(into)
        .map_err(HoError::io(format!("listing {}", into.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with("sealbox-backup-") && n.ends_with(".age"))
        })
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep.max(1));
    for old in &ours[..excess] {
        std::fs::remove_file(old).map_err(HoError::io(format!("removing {}", old.display())))?;
    }
    Ok(report)
}

/// Starts `serve`'s backup schedule when `backup_dir` is set: one backup at start, then one
/// every `backup_every_minutes`, keeping the newest `backup_keep`. Refuses to start without a
/// backup recipient, so a server never runs believing it is backed up when it is not.
pub fn schedule(dir: &Path, config: &Config) -> Result<Option<std::thread::JoinHandle<()>>> {
    let Some(into) = config.backup_dir.as_ref() else {
        return Ok(None);
    };
    refuse_on_postgres(config)?;
    let into = dir.join(into);
    recipients(&HoDir::new(dir))?;
    let every = std::time::Duration::from_secs_f64((config.backup_every_minutes * 60.0).max(1.0));
    let keep = config.backup_keep;
    let dir = dir.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("sealbox-ho-backups".into())
        .spawn(move || loop {
            match scheduled(&dir, &into, keep) {
                Ok(r) => tracing::info!(bytes = r.bytes, "scheduled backup written"),
                Err(e) => tracing::error!(code = e.code(), error = %e, "scheduled backup failed"),
            }
            std::thread::sleep(every);
        })
        .map_err(HoError::io("starting the backup schedule"))?;
    Ok(Some(handle))
}
