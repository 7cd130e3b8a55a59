//! `sealbox-headoffice`: the admin's command line. Glue only: each command is one call into the
//! library; errors become one line on stderr and exit code 1 (2 for usage).

use anyhow::Result;
use clap::{Parser, Subcommand};
use sealbox_headoffice::error::{io_kind_zh, HoError};
use sealbox_headoffice::keys::HoDir;
use sealbox_headoffice::{admin, backup, config, crm, recovery, Passphrase};
use sealbox_protocol::Lang;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "sealbox-headoffice", version, about = "Sealbox head office")]
struct Cli {
    /// Head office's data directory.
    #[arg(
        long,
        global = true,
        env = "SEALBOX_HO_DATA_DIR",
        default_value = "sealbox-headoffice"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create head office's keys (age identity, signing key, TLS CA and certificate) and the
    /// recovery kit: the identity split into shares for different people.
    Init {
        /// Shares made.
        #[arg(long, default_value_t = 3)]
        shares: u8,
        /// Shares needed to rebuild the identity.
        #[arg(long, default_value_t = 2)]
        threshold: u8,
        /// Where the share files go (new or empty; default: DATA_DIR-recovery-kit beside it).
        #[arg(long)]
        kit_dir: Option<PathBuf>,
        /// The age recipient backups are encrypted to (or later: `backup-key`).
        #[arg(long)]
        backup_recipient: Option<String>,
    },
    /// Head office's age identity.
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// The passphrase that protects head office's keys.
    #[command(subcommand)]
    Passphrase(PassphraseCmd),
    /// Head office's receipt-signing key.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// The key backups are encrypted to.
    #[command(subcommand)]
    BackupKey(BackupKeyCmd),
    /// Write an encrypted, consistent backup of the data directory (works while serve runs).
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into --data-dir, which must be new or empty; checks everything first.
    Restore {
        file: PathBuf,
        /// The backup identity file (`backup-key new` wrote it; kept offline).
        #[arg(long)]
        backup_key: PathBuf,
    },
    /// Events.
    #[command(subcommand)]
    Event(EventCmd),
    /// Enrol a device: write its (secret) enrolment file.
    Enroll {
        #[arg(long)]
        device: String,
        #[arg(long)]
        event: String,
        /// The address the device should use (default: public_url from the config).
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Escrow files.
    #[command(subcommand)]
    Escrow(EscrowCmd),
    /// Serve devices over HTTPS until SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on (default: `listen` from the config); port 0 picks a free one.
        #[arg(long)]
        listen: Option<String>,
        /// Address of the console (default: `console_listen` from the config, 127.0.0.1:8444);
        /// it starts once an admin account exists.
        #[arg(long)]
        console_listen: Option<String>,
    },
    /// Copy this head office's embedded database to an empty PostgreSQL database, verified
    /// table by table (counts and digests, the audit chain checked); the embedded database is
    /// only read. Then set `database_url` in config.toml to the same URL.
    Migrate {
        /// The PostgreSQL URL (`postgres://…`); better from SEALBOX_HO_MIGRATE_TO when it
        /// carries a password, so it stays out of the process list.
        #[arg(long, env = "SEALBOX_HO_MIGRATE_TO")]
        to: String,
    },
    /// Devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Import a batch file carried from a device and write its signed receipt.
    Import {
        file: PathBuf,
        /// Where to write the receipt: a new file, or the same receipt already written there.
        #[arg(long)]
        receipt_out: PathBuf,
        /// Accept the entries of a revoked device (a lost device that was found): audited.
        #[arg(long)]
        accept_revoked: bool,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Write an event's entries for the CRM, masked unless --unmasked (audited).
    Export {
        #[arg(long)]
        event: String,
        #[arg(long, value_parser = ["csv", "xlsx"])]
        format: String,
        #[arg(long)]
        out: PathBuf,
        /// Write values in the clear instead of by each field's display policy.
        #[arg(long)]
        unmasked: bool,
        /// One row per visitor: entries with the same phone or email merged into the earliest
        /// (its consent kept; later values fill its empty fields). Without it they are marked.
        #[arg(long)]
        merge_duplicates: bool,
    },
    /// Delete every entry whose event's retention period has ended (serve does it daily).
    Purge,
    /// Delete a visitor's entries on request, found by phone or email.
    Forget {
        #[arg(long, conflicts_with = "email", required_unless_present = "email")]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Only in this event.
        #[arg(long)]
        event: Option<String>,
    },
    /// Counts of events, devices and entries.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print a commented example config.
    DefaultConfig,
    /// Console accounts.
    #[command(subcommand)]
    Admin(AdminCmd),
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Add a console account; the password comes from SEALBOX_HO_ADMIN_PASSWORD or a prompt.
    Add {
        name: String,
        #[arg(long, value_parser = ["viewer", "operator", "approver"])]
        role: String,
    },
}

#[derive(Subcommand)]
enum IdentityCmd {
    /// Rebuild identity.age from recovery shares (files or lines) under a new passphrase
    /// (SEALBOX_HO_NEW_PASSPHRASE or a prompt).
    Recover {
        #[arg(long = "share", required = true)]
        shares: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PassphraseCmd {
    /// Re-wrap the identity under a new passphrase (SEALBOX_HO_NEW_PASSPHRASE or a prompt).
    Change,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Replace the receipt-signing key; devices follow a statement signed by the old one.
    Rotate,
}

#[derive(Subcommand)]
enum BackupKeyCmd {
    /// Make a new backup key: writes its identity to FILE (keep it offline) and uses it.
    New {
        #[arg(long)]
        out: PathBuf,
    },
    /// Encrypt backups to this age recipient (age1…).
    Set { recipient: String },
}

#[derive(Subcommand)]
enum EventCmd {
    /// Validate and store an event config (JSON).
    Create { file: PathBuf },
    /// Issue a staff code for promoter mode at the event's kiosks: printed once, kept only as a
    /// verifier. Enrolled devices learn it (and revocations) with their next receipt.
    StaffCode {
        event: String,
        /// Revoke the staff code with this id (`s1`) instead of issuing one.
        #[arg(long, value_name = "ID", conflicts_with = "list")]
        revoke: Option<String>,
        /// List the ids of the event's staff codes (nothing secret) instead of issuing one.
        #[arg(long)]
        list: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain.
    Verify,
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Revoke a device: its calls fail with 401 from now on.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum EscrowCmd {
    /// Open a device's escrow.age (or summary-escrow.age) and write the key file its `sealbox
    /// recover` (or `sealbox pin reset`) takes.
    Open {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// A message of the command line itself, in both languages.
#[derive(Debug)]
struct Msg {
    zh: String,
    en: String,
}

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.en)
    }
}

impl std::error::Error for Msg {}

/// Prints one line in the admin's language (see [`Lang::from_env`]).
fn say(zh: impl std::fmt::Display, en: impl std::fmt::Display) {
    match Lang::from_env() {
        Lang::Zh => println!("{zh}"),
        Lang::En => println!("{en}"),
    }
}

fn msg(zh: impl Into<String>, en: impl Into<String>) -> anyhow::Error {
    Msg {
        zh: zh.into(),
        en: en.into(),
    }
    .into()
}

/// The systemd credential `serve` may be given (`LoadCredentialEncrypted=sealbox-ho-passphrase`).
const CREDENTIAL: &str = "sealbox-ho-passphrase";

fn passphrase(confirm: bool) -> Result<Passphrase> {
    if let Ok(p) = std::env::var("SEALBOX_HO_PASSPHRASE") {
        return Ok(Passphrase::new(p));
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(CREDENTIAL);
        if path.exists() {
            let p = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                msg(
                    format!("无法读取凭据 {}（{}）", path.display(), io_kind_zh(&e)),
                    format!("reading the credential {}: {e}", path.display()),
                )
            })?);
            return Ok(Passphrase::new(p.trim_end_matches(['\r', '\n'])));
        }
    }
    let no_terminal = |_| {
        msg(
            "没有终端可以输入口令：请设置环境变量 SEALBOX_HO_PASSPHRASE，或在终端中运行",
            "no passphrase: set SEALBOX_HO_PASSPHRASE or run in a terminal",
        )
    };
    let p = zeroize::Zeroizing::new(
        rpassword::prompt_password("Head office passphrase: ").map_err(no_terminal)?,
    );
    if confirm {
        let again =
            zeroize::Zeroizing::new(rpassword::prompt_password("Again: ").map_err(no_terminal)?);
        if *again != *p {
            return Err(msg(
                "两次输入的口令不一致，未做任何更改",
                "the passphrases differ; nothing was changed",
            ));
        }
    }
    Ok(Passphrase::new(p.as_str()))
}

/// A new passphrase: SEALBOX_HO_NEW_PASSPHRASE or a prompt, typed twice.
fn new_passphrase() -> Result<Passphrase> {
    if let Ok(p) = std::env::var("SEALBOX_HO_NEW_PASSPHRASE") {
        return Ok(Passphrase::new(p));
    }
    let no_terminal = |_| {
        msg(
            "没有终端可以输入新口令：请设置环境变量 SEALBOX_HO_NEW_PASSPHRASE，或在终端中运行",
            "no new passphrase: set SEALBOX_HO_NEW_PASSPHRASE or run in a terminal",
        )
    };
    let p = zeroize::Zeroizing::new(
        rpassword::prompt_password("New head office passphrase: ").map_err(no_terminal)?,
    );
    let again =
        zeroize::Zeroizing::new(rpassword::prompt_password("Again: ").map_err(no_terminal)?);
    if *again != *p {
        return Err(msg("两次输入的口令不同", "the passphrases differ"));
    }
    Ok(Passphrase::new(p.as_str()))
}

/// A console admin's new password: SEALBOX_HO_ADMIN_PASSWORD or a prompt, typed twice.
fn admin_password() -> Result<zeroize::Zeroizing<String>> {
    if let Ok(p) = std::env::var("SEALBOX_HO_ADMIN_PASSWORD") {
        return Ok(zeroize::Zeroizing::new(p));
    }
    let no_terminal = |_| {
        msg(
            "没有终端可以输入密码：请设置环境变量 SEALBOX_HO_ADMIN_PASSWORD，或在终端中运行",
            "no password: set SEALBOX_HO_ADMIN_PASSWORD or run in a terminal",
        )
    };
    let p = zeroize::Zeroizing::new(
        rpassword::prompt_password("Admin password: ").map_err(no_terminal)?,
    );
    let again =
        zeroize::Zeroizing::new(rpassword::prompt_password("Again: ").map_err(no_terminal)?);
    if *again != *p {
        return Err(msg("两次输入的密码不同", "the passwords differ"));
    }
    Ok(p)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        msg(
            format!("无法读取 {}：{}", path.display(), io_kind_zh(&e)),
            format!("reading {}: {e}", path.display()),
        )
    })
}

fn run(cli: Cli) -> Result<()> {
    let dir = &cli.data_dir;
    match cli.command {
        Command::Init {
            shares,
            threshold,
            kit_dir,
            backup_recipient,
        } => {
            let mut opts = recovery::KitOptions::beside(dir);
            opts.shares = shares;
            opts.threshold = threshold;
            if let Some(d) = kit_dir {
                opts.dir = d;
            }
            let kit = admin::init(dir, &passphrase(true)?, &opts, backup_recipient.as_deref())?;
            say(
                format!("总部 {} 已在 {} 中初始化", kit.ho_id, dir.display()),
                format!("head office {} initialised in {}", kit.ho_id, dir.display()),
            );
            say(
                format!(
                    "恢复套件：{} 份分片在 {} 中；其中任意 {} 份即可重建总部的密钥。",
                    kit.lines.len(),
                    kit.dir.display(),
                    kit.threshold
                ),
                format!(
                    "recovery kit: {} shares in {}; any {} of them rebuild head office's key.",
                    kit.lines.len(),
                    kit.dir.display(),
                    kit.threshold
                ),
            );
            say(
                format!("请把每份分片交给不同的人离线保管（或把它的一行抄在纸上），然后删除 {}。", kit.dir.display()),
                format!("Give each share to a different person, who keeps it offline (or copies its line onto paper); then delete {}.", kit.dir.display()),
            );
            for (i, line) in kit.lines.iter().enumerate() {
                say(
                    format!("  第 {} 份：{}", i + 1, line.as_str()),
                    format!("  share {}: {}", i + 1, line.as_str()),
                );
            }
            if backup_recipient.is_none() {
                say(
                    "备份：请用 `sealbox-headoffice backup-key new --out FILE` 选定备份密钥（离线保管 FILE）",
                    "backups: choose a backup key with `sealbox-headoffice backup-key new --out FILE` (keep FILE offline)",
                );
            }
        }
        Command::Identity(IdentityCmd::Recover { shares }) => {
            let lines = shares
                .iter()
                .map(|s| recovery::read_share(s))
                .collect::<Result<Vec<_>, _>>()?;
            recovery::recover(dir, &lines, &new_passphrase()?)?;
            say(
                format!("已用 {} 份分片在新口令下重建 identity.age", lines.len()),
                format!(
                    "identity.age rebuilt from {} shares under the new passphrase",
                    lines.len()
                ),
            );
        }
        Command::Passphrase(PassphraseCmd::Change) => {
            let old = passphrase(false)?;
            HoDir::new(dir).change_passphrase(&old, &new_passphrase()?)?;
            say(
                "口令已更改；恢复分片仍然有效",
                "passphrase changed; the recovery shares stay valid",
            );
        }
        Command::Keys(KeysCmd::Rotate) => {
            let (_, new) = HoDir::new(dir).rotate_receipt_key(&passphrase(false)?)?;
            let short = &sealbox_protocol::entry::b64_encode(new.as_bytes())[..12];
            say(
                format!("回执密钥已轮换（新密钥 {short}）；请重启 serve：设备会在下一张回执中得知新密钥"),
                format!("receipt key rotated (new key {short}); restart serve: devices learn the new key with their next receipt"),
            );
        }
        Command::BackupKey(BackupKeyCmd::New { out }) => {
            let r = backup::new_key(dir, &out)?;
            say(
                format!(
                    "备份今后加密给 {r}；{} 是机密文件：请离线保管，与服务器和备份分开存放",
                    out.display()
                ),
                format!(
                    "backups are now encrypted to {r}; {} is SECRET: keep it offline, apart from the server and from the backups",
                    out.display()
                ),
            );
        }
        Command::BackupKey(BackupKeyCmd::Set { recipient }) => {
            backup::set_recipient(dir, &recipient)?;
            say(
                format!("备份今后加密给 {}", recipient.trim()),
                format!("backups are now encrypted to {}", recipient.trim()),
            );
        }
        Command::Backup { out } => {
            let r = backup::backup(dir, &out)?;
            let entries = r.manifest.counts.get("entries").copied().unwrap_or(0);
            say(
                format!(
                    "备份已写入 {}（{} 字节，{} 个文件，{} 条登记，审计链 {} 行）",
                    out.display(),
                    r.bytes,
                    r.manifest.files.len(),
                    entries,
                    r.manifest.audit_rows
                ),
                format!(
                    "backup written to {} ({} bytes, {} files, {} entries, audit chain of {} rows)",
                    out.display(),
                    r.bytes,
                    r.manifest.files.len(),
                    entries,
                    r.manifest.audit_rows
                ),
            );
        }
        Command::Restore { file, backup_key } => {
            let identity = backup::read_identity(&backup_key)?;
            let r = backup::restore(&file, dir, &identity)?;
            let entries = r.manifest.counts.get("entries").copied().unwrap_or(0);
            say(
                format!(
                    "已恢复到 {}：{} 个文件，{} 条登记，审计链 {} 行已核验；备份之后收到的登记不在其中",
                    dir.display(),
                    r.manifest.files.len(),
                    entries,
                    r.manifest.audit_rows
                ),
                format!(
                    "restored into {}: {} files, {} entries, audit chain of {} rows verified; entries received after the backup was taken are not in it",
                    dir.display(),
                    r.manifest.files.len(),
                    entries,
                    r.manifest.audit_rows
                ),
            );
        }
        Command::Event(EventCmd::Create { file }) => {
            let c = admin::event_create(dir, &read(&file)?)?;
            say(
                format!("活动 {} 已就绪（{} 个字段）", c.id, c.fields.len()),
                format!("event {} ready ({} fields)", c.id, c.fields.len()),
            );
        }
        Command::Event(EventCmd::StaffCode {
            event,
            revoke: Some(id),
            ..
        }) => {
            admin::staff_code_revoke(dir, &event, &id)?;
            say(
                format!("员工码 {id} 已吊销：设备在下一次同步或导入回执时得知，此后不再接受它。"),
                format!("staff code {id} revoked: devices learn it with their next sync or receipt and refuse it from then on."),
            );
        }
        Command::Event(EventCmd::StaffCode {
            event, list: true, ..
        }) => {
            let (active, revoked, version) = admin::staff_code_list(dir, &event)?;
            let none = |v: &[String]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(" ")
                }
            };
            say(
                format!(
                    "有效：{}
已吊销：{}
版本：{version}",
                    none(&active),
                    none(&revoked)
                ),
                format!(
                    "active: {}
revoked: {}
version: {version}",
                    none(&active),
                    none(&revoked)
                ),
            );
        }
        Command::Event(EventCmd::StaffCode { event, .. }) => {
            let issued = admin::staff_code_issue(dir, &event)?;
            say(
                format!(
                    "员工码 {}：{}\n只显示这一次，请交给一位推广员。登记中只记录代号 {}，不记录姓名。已注册的设备在下一次同步或导入回执时得知。",
                    issued.id, *issued.code, issued.id
                ),
                format!(
                    "staff code {}: {}\nshown only now: give it to one promoter. Entries record only its id {}, never a name. Enrolled devices learn it with their next sync or receipt.",
                    issued.id, *issued.code, issued.id
                ),
            );
        }
        Command::Enroll {
            device,
            event,
            url,
            out,
        } => {
            admin::enroll(dir, &device, &event, url.as_deref(), &out)?;
            say(
                format!(
                    "已写入 {}：这是机密文件（含设备的令牌和签名密钥）。请带到设备上运行 `sealbox enroll {} --shred`",
                    out.display(),
                    out.display()
                ),
                format!(
                    "wrote {}: it is SECRET (it holds the device's token and signing key). Carry it to the device and run `sealbox enroll {} --shred`",
                    out.display(),
                    out.display()
                ),
            );
        }
        Command::Escrow(EscrowCmd::Open { file, out }) => {
            match admin::escrow_open(dir, &passphrase(false)?, &file, &out)? {
                admin::OpenedEscrow::DatabaseKey { device_name } => say(
                    format!(
                        "已写入 {}：这是机密文件（设备 {device_name} 的数据库密钥）。请带到设备上运行 `sealbox recover --escrow-key {}`",
                        out.display(),
                        out.display()
                    ),
                    format!(
                        "wrote {}: it is SECRET (device {device_name}'s database key). Carry it to the device and run `sealbox recover --escrow-key {}`",
                        out.display(),
                        out.display()
                    ),
                ),
                admin::OpenedEscrow::SummaryKey { device_name } => say(
                    format!(
                        "已写入 {}：这是机密文件（设备 {device_name} 的摘要密钥）。请带到设备上运行 `sealbox pin reset --escrow-key {}`",
                        out.display(),
                        out.display()
                    ),
                    format!(
                        "wrote {}: it is SECRET (device {device_name}'s summary key). Carry it to the device and run `sealbox pin reset --escrow-key {}`",
                        out.display(),
                        out.display()
                    ),
                ),
            }
        }
        Command::Status { json } => {
            let s = admin::status(dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                for e in &s.events {
                    say(
                        format!(
                            "活动 {}：{} 条登记，{} 条隔离，{} 条已删除",
                            e.id, e.entries, e.quarantined, e.deleted
                        ),
                        format!(
                            "event {}: {} entries, {} quarantined, {} deleted",
                            e.id, e.entries, e.quarantined, e.deleted
                        ),
                    );
                }
                for d in &s.devices {
                    let (revoked_zh, revoked) = if d.revoked {
                        ("（已吊销）", " (revoked)")
                    } else {
                        ("", "")
                    };
                    say(
                        format!(
                            "设备 {} [{}]：{} 条登记{revoked_zh}",
                            d.name, d.event, d.entries
                        ),
                        format!(
                            "device {} [{}]: {} entries{revoked}",
                            d.name, d.event, d.entries
                        ),
                    );
                }
            }
        }
        Command::DefaultConfig => print!("{}", config::DEFAULT_CONFIG),
        Command::Admin(AdminCmd::Add { name, role }) => {
            let password = admin_password()?;
            sealbox_headoffice::console::admin_add(dir, &name, &role, &password)?;
            say(
                format!("管理员 {name}（{role}）已添加，可登录控制台"),
                format!("admin {name} ({role}) added: they can sign in to the console"),
            );
        }
        Command::Serve {
            listen,
            console_listen,
        } => serve(dir, listen, console_listen)?,
        Command::Import {
            file,
            receipt_out,
            accept_revoked,
        } => {
            let opts = admin::ImportOptions { accept_revoked };
            let r = admin::import_with(dir, &passphrase(false)?, &file, &receipt_out, opts)?;
            let lang = Lang::from_env();
            let zh = lang == Lang::Zh;
            let what = if r.duplicate {
                if zh {
                    format!(
                        "已收到过：此文件（批次 {}，设备 {}，{} 条登记）之前已导入或同步，未存储新内容",
                        r.batch_id, r.device, r.entries
                    )
                } else {
                    format!(
                        "already held: this file (batch {}) from device {} was imported or synced before, {} entries; nothing new stored",
                        r.batch_id, r.device, r.entries
                    )
                }
            } else if r.already_held == r.entries {
                if zh {
                    format!(
                        "已收到过：此文件（设备 {}，批次 {}）的全部 {} 条登记之前已到达总部，未存储新内容",
                        r.device, r.batch_id, r.entries
                    )
                } else {
                    format!(
                        "already held: all {} entries of this file from device {} (batch {}) had reached head office before; nothing new stored",
                        r.entries, r.device, r.batch_id
                    )
                }
            } else if zh {
                format!(
                    "已存储设备 {} 的 {} 条登记（批次 {}）{}",
                    r.device,
                    r.entries - r.already_held,
                    r.batch_id,
                    if r.already_held > 0 {
                        format!("；另有 {} 条之前已收到", r.already_held)
                    } else {
                        String::new()
                    }
                )
            } else {
                format!(
                    "stored {} entries from device {} (batch {}){}",
                    r.entries - r.already_held,
                    r.device,
                    r.batch_id,
                    if r.already_held > 0 {
                        format!("; {} more were already held", r.already_held)
                    } else {
                        String::new()
                    }
                )
            };
            if r.accepted_revoked {
                say(
                    format!("设备 {} 已被吊销：已按要求接收其登记，审计日志中有记录", r.device),
                    format!("device {} is revoked: its entries were accepted as asked, and the audit log says so", r.device),
                );
            }
            say(
                format!(
                    "{what}；回执{} {}：请带回设备并运行 `sealbox receipt import {}`",
                    if r.receipt_kept {
                        "已在"
                    } else {
                        "已写入"
                    },
                    receipt_out.display(),
                    receipt_out.display()
                ),
                format!(
                    "{what}; receipt {} {}: carry it back and run `sealbox receipt import {}`",
                    if r.receipt_kept {
                        "already at"
                    } else {
                        "written to"
                    },
                    receipt_out.display(),
                    receipt_out.display()
                ),
            );
            if r.quarantined > 0 {
                say(
                    format!(
                        "其中 {} 条放入隔离区（不作为登记接收，永不导出；见 `status`）",
                        r.quarantined
                    ),
                    format!(
                        "{} of them are kept in the quarantine (not taken as entries, never exported; see `status`)",
                        r.quarantined
                    ),
                );
            }
        }
        Command::Export {
            event,
            format,
            out,
            unmasked,
            merge_duplicates,
        } => {
            let format = if format == "xlsx" {
                crm::Format::Xlsx
            } else {
                crm::Format::Csv
            };
            let pass = passphrase(false)?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(match Lang::from_env() {
                    Lang::Zh => "{bar:40} 已解密 {pos}/{len} 条",
                    Lang::En => "{bar:40} {pos}/{len} entries opened",
                })
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let r = crm::export_with(
                dir,
                &pass,
                &event,
                format,
                &out,
                crm::ExportOptions {
                    unmasked,
                    merge_duplicates,
                },
                &mut |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            );
            bar.finish_and_clear();
            let r = r?;
            say(
                format!(
                    "已将 {} 行写入 {}{}",
                    r.rows,
                    out.display(),
                    if r.unmasked {
                        "，未打码（已记入审计日志）"
                    } else {
                        "，已打码"
                    }
                ),
                format!(
                    "wrote {} rows to {}{}",
                    r.rows,
                    out.display(),
                    if r.unmasked {
                        ", UNMASKED (recorded in the audit log)"
                    } else {
                        ", masked"
                    }
                ),
            );
            if r.duplicates > 0 {
                say(
                    format!(
                        "重复登记：{} 位访客共有 {} 条重复（手机号或邮箱相同），{}",
                        r.duplicate_groups,
                        r.duplicates,
                        if r.merged {
                            "已合并到各自最早的一条（保留其同意记录，空白项由后来的登记补全）"
                        } else {
                            "已在 duplicate_of 列中标出（用 --merge-duplicates 合并）"
                        }
                    ),
                    format!(
                        "duplicates: {} (of {} visitors with the same phone or email), {}",
                        r.duplicates,
                        r.duplicate_groups,
                        if r.merged {
                            "merged into each visitor's earliest entry (its consent kept, empty fields filled from later ones)"
                        } else {
                            "marked in the duplicate_of column (--merge-duplicates merges them)"
                        }
                    ),
                );
            } else {
                say("没有重复登记", "no duplicates");
            }
        }
        Command::Purge => {
            for (event, n) in crm::purge(dir, sealbox_headoffice::now_ms())? {
                say(
                    format!("活动 {event}：已删除 {n} 条超过保存期限的登记"),
                    format!("event {event}: {n} entries past retention deleted"),
                );
            }
        }
        Command::Forget {
            phone,
            email,
            event,
        } => {
            let subject = match (phone, email) {
                (Some(p), _) => crm::Subject::Phone(p),
                (None, Some(e)) => crm::Subject::Email(e),
                (None, None) => {
                    return Err(msg("请给出 --phone 或 --email", "give --phone or --email"))
                }
            };
            let n = crm::forget(dir, &passphrase(false)?, &subject, event.as_deref())?;
            say(
                format!("已删除 {n} 条登记；此请求以加盐哈希的形式记入审计日志"),
                format!("deleted {n} entries; the request is in the audit log as a salted hash"),
            );
        }
        Command::Migrate { to } => {
            let r = sealbox_headoffice::store::migrate::migrate(dir, &to)?;
            for (table, c) in &r.tables {
                say(
                    format!("{table}：{} 行，sha256 {}", c.rows, c.sha256),
                    format!("{table}: {} rows, sha256 {}", c.rows, c.sha256),
                );
            }
            say(
                format!(
                    "已复制并核对；审计链完好（{} 行）。请在 config.toml 中设置 database_url 为该地址，然后重启 serve",
                    r.audit_rows
                ),
                format!(
                    "copied and verified; the audit chain holds ({} rows). Set database_url in config.toml to that URL, then restart serve",
                    r.audit_rows
                ),
            );
        }
        Command::Audit(AuditCmd::Verify) => match admin::audit_verify(dir)? {
            (rows, None) => say(
                format!("审计链完好：共 {rows} 行"),
                format!("audit chain ok: {rows} rows"),
            ),
            (_, Some(seq)) => {
                return Err(msg(
                    format!("审计链在第 {seq} 行断开：有记录被修改、删除或调换了顺序"),
                    format!(
                        "audit chain broken at row {seq}: a row was edited, removed or reordered"
                    ),
                ))
            }
        },
        Command::Device(DeviceCmd::Revoke { name }) => {
            admin::device_revoke(dir, &name)?;
            say(
                format!("设备 {name} 已吊销"),
                format!("device {name} revoked"),
            );
        }
    }
    Ok(())
}

fn serve(dir: &Path, listen: Option<String>, console_listen: Option<String>) -> Result<()> {
    use sealbox_headoffice::server;
    let cfg = config::Config::load(dir)?;
    // Unlocked once: the identity opens the receipt and TLS keys and is dropped again.
    let ho = HoDir::new(dir).unlock(&passphrase(false)?)?;
    let _backups = sealbox_headoffice::backup::schedule(dir, &cfg)?;
    let state = std::sync::Arc::new(server::ServerState::open(&ho, &cfg)?);
    let tls = server::load_tls(&ho, &cfg)?;
    let addr = listen.unwrap_or(cfg.listen.clone());
    let listener = server::bind(&addr).map_err(|e| {
        msg(
            format!("无法在 {addr} 上监听：{}", io_kind_zh(&e)),
            format!("listening on {addr}: {e}"),
        )
    })?;
    let local = listener.local_addr()?;
    let console = console_listener(dir, &ho, &cfg, console_listen)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Scripts and tests read the bound address from this line.
        println!("sealbox-headoffice listening on https://{local}");
        if let Some((listener, tls, console)) = console {
            if let Ok(addr) = listener.local_addr() {
                println!("sealbox-headoffice console on https://{addr}");
            }
            // Ends with the runtime, when the sync server has stopped.
            tokio::spawn(async move {
                if let Err(e) = sealbox_headoffice::console::web::serve(listener, tls, console, std::future::pending()).await {
                    tracing::error!(error = %e, "the console stopped");
                }
            });
        } else {
            say(
                "控制台未启动：还没有管理员账户（`sealbox-headoffice admin add 名字 --role operator`）",
                "console not started: no admin account yet (`sealbox-headoffice admin add NAME --role operator`)",
            );
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // The retention purge: at start, then on the schedule (blocking work, off the runtime's
        // threads). A failed run is logged and tried again at the next tick.
        {
            let dir = dir.to_path_buf();
            let every = cfg.purge_every_s;
            tokio::spawn(async move {
                loop {
                    let d = dir.clone();
                    match tokio::task::spawn_blocking(move || sealbox_headoffice::crm::purge(&d, sealbox_headoffice::now_ms())).await {
                        Ok(Ok(r)) => tracing::info!(entries = r.iter().map(|(_, n)| n).sum::<u64>(), "retention purge done"),
                        Ok(Err(e)) => tracing::error!(code = e.code(), error = %e, "retention purge failed; tried again at the next run"),
                        Err(e) => tracing::error!(error = %e, "retention purge stopped"),
                    }
                    if every == 0 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(every)).await;
                }
            });
        }
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
            }
        };
        server::serve(listener, tls, state, shutdown).await
    })?;
    println!("sealbox-headoffice stopped");
    Ok(())
}

/// The console's listener, TLS and state, when an admin account exists.
type ConsoleParts = (
    std::net::TcpListener,
    rustls::ServerConfig,
    std::sync::Arc<sealbox_headoffice::console::web::Console>,
);

fn console_listener(
    dir: &Path,
    ho: &HoDir,
    cfg: &config::Config,
    listen: Option<String>,
) -> Result<Option<ConsoleParts>> {
    use sealbox_headoffice::console::web;
    // The console keeps its tables beside head office's, in whichever database it runs on.
    let mut store = sealbox_headoffice::store::Store::open_configured(
        ho,
        cfg,
        std::time::Duration::from_millis(cfg.busy_timeout_ms),
    )?;
    store.console_migrate()?;
    if store.admin_count()? == 0 {
        return Ok(None);
    }
    drop(store);
    let addr = listen.unwrap_or(cfg.console_listen.clone());
    let listener = sealbox_headoffice::server::bind(&addr).map_err(|e| {
        msg(
            format!("控制台无法在 {addr} 上监听：{}", io_kind_zh(&e)),
            format!("console: listening on {addr}: {e}"),
        )
    })?;
    let tls = sealbox_headoffice::server::load_tls(ho, cfg)?;
    let console = web::Console::open(
        dir,
        web::ConsoleOptions {
            silent_alert: std::time::Duration::from_secs(cfg.console_silent_alert_minutes * 60),
        },
    )?;
    Ok(Some((listener, tls, std::sync::Arc::new(console))))
}

fn main() {
    let cli = Cli::parse();
    // The server logs its traffic (ids and counts); admin commands only warnings.
    let default = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = run(cli) {
        let lang = Lang::from_env();
        eprintln!("{}{}", lang.error_prefix(), one_line(&e, lang));
        std::process::exit(1);
    }
}

/// The error on one line in `lang`: head office's own errors and the command line's messages
/// in either language; anything else with its causes.
fn one_line(e: &anyhow::Error, lang: Lang) -> String {
    let text = if let Some(h) = e.downcast_ref::<HoError>() {
        h.message(lang)
    } else if let Some(c) = e.downcast_ref::<sealbox_headoffice::console::ConsoleError>() {
        c.message(lang)
    } else if let Some(m) = e.downcast_ref::<Msg>() {
        match lang {
            Lang::Zh => m.zh.clone(),
            Lang::En => m.en.clone(),
        }
    } else {
        e.chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ")
    };
    text.replace('\n', " ")
}
