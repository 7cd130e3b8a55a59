//! `sealbox-headoffice`: the admin's command line. Glue only: each command is one call into the
//! library; errors become one line on stderr and exit code 1 (2 for usage).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sealbox_headoffice::keys::HoDir;
use sealbox_headoffice::{admin, backup, config, crm, recovery, Passphrase};
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
    },
    /// Devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Import a batch file carried from a device and write its signed receipt.
    Import {
        file: PathBuf,
        #[arg(long)]
        receipt_out: PathBuf,
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
    /// Open a device's escrow.age and write the key file its `sealbox recover` takes.
    Open {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
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
            let p = zeroize::Zeroizing::new(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the credential {}", path.display()))?,
            );
            return Ok(Passphrase::new(p.trim_end_matches(['\r', '\n'])));
        }
    }
    let p = rpassword::prompt_password("Head office passphrase: ")
        .context("no passphrase: set SEALBOX_HO_PASSPHRASE or run in a terminal")?;
    if confirm {
        let again = rpassword::prompt_password("Again: ").context("reading the passphrase")?;
        if again != p {
            anyhow::bail!("the passphrases differ");
        }
    }
    Ok(Passphrase::new(p))
}

/// A new passphrase: SEALBOX_HO_NEW_PASSPHRASE or a prompt, typed twice.
fn new_passphrase() -> Result<Passphrase> {
    if let Ok(p) = std::env::var("SEALBOX_HO_NEW_PASSPHRASE") {
        return Ok(Passphrase::new(p));
    }
    let p = rpassword::prompt_password("New head office passphrase: ")
        .context("no new passphrase: set SEALBOX_HO_NEW_PASSPHRASE or run in a terminal")?;
    let again = rpassword::prompt_password("Again: ").context("reading the passphrase")?;
    if again != p {
        anyhow::bail!("the passphrases differ");
    }
    Ok(Passphrase::new(p))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
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
            println!("head office {} initialised in {}", kit.ho_id, dir.display());
            println!(
                "recovery kit: {} shares in {}; any {} of them rebuild head office's key.",
                kit.lines.len(),
                kit.dir.display(),
                kit.threshold
            );
            println!("Give each share to a different person, who keeps it offline (or copies its line onto paper); then delete {}.", kit.dir.display());
            for (i, line) in kit.lines.iter().enumerate() {
                println!("  share {}: {}", i + 1, line.as_str());
            }
            if backup_recipient.is_none() {
                println!("backups: choose a backup key with `sealbox-headoffice backup-key new --out FILE` (keep FILE offline)");
            }
        }
        Command::Identity(IdentityCmd::Recover { shares }) => {
            let lines = shares
                .iter()
                .map(|s| recovery::read_share(s))
                .collect::<Result<Vec<_>, _>>()?;
            recovery::recover(dir, &lines, &new_passphrase()?)?;
            println!(
                "identity.age rebuilt from {} shares under the new passphrase",
                lines.len()
            );
        }
        Command::Passphrase(PassphraseCmd::Change) => {
            let old = passphrase(false)?;
            HoDir::new(dir).change_passphrase(&old, &new_passphrase()?)?;
            println!("passphrase changed; the recovery shares stay valid");
        }
        Command::Keys(KeysCmd::Rotate) => {
            let (_, new) = HoDir::new(dir).rotate_receipt_key(&passphrase(false)?)?;
            println!(
                "receipt key rotated (new key {}); restart serve: devices learn the new key with their next receipt",
                &sealbox_protocol::entry::b64_encode(new.as_bytes())[..12]
            );
        }
        Command::BackupKey(BackupKeyCmd::New { out }) => {
            let r = backup::new_key(dir, &out)?;
            println!(
                "backups are now encrypted to {r}; {} is SECRET: keep it offline, apart from the server and from the backups",
                out.display()
            );
        }
        Command::BackupKey(BackupKeyCmd::Set { recipient }) => {
            backup::set_recipient(dir, &recipient)?;
            println!("backups are now encrypted to {}", recipient.trim());
        }
        Command::Backup { out } => {
            let r = backup::backup(dir, &out)?;
            println!(
                "backup written to {} ({} bytes, {} files, {} entries, audit chain of {} rows)",
                out.display(),
                r.bytes,
                r.manifest.files.len(),
                r.manifest.counts.get("entries").copied().unwrap_or(0),
                r.manifest.audit_rows
            );
        }
        Command::Restore { file, backup_key } => {
            let identity = backup::read_identity(&backup_key)?;
            let r = backup::restore(&file, dir, &identity)?;
            println!(
                "restored into {}: {} files, {} entries, audit chain of {} rows verified; entries received after the backup was taken are not in it",
                dir.display(),
                r.manifest.files.len(),
                r.manifest.counts.get("entries").copied().unwrap_or(0),
                r.manifest.audit_rows
            );
        }
        Command::Event(EventCmd::Create { file }) => {
            let c = admin::event_create(dir, &read(&file)?)?;
            println!("event {} ready ({} fields)", c.id, c.fields.len());
        }
        Command::Enroll {
            device,
            event,
            url,
            out,
        } => {
            admin::enroll(dir, &device, &event, url.as_deref(), &out)?;
            println!(
                "wrote {}: it is SECRET (it holds the device's token and signing key). Carry it to the device and run `sealbox enroll {} --shred`",
                out.display(),
                out.display()
            );
        }
        Command::Escrow(EscrowCmd::Open { file, out }) => {
            let r = admin::escrow_open(dir, &passphrase(false)?, &file, &out)?;
            println!(
                "wrote {}: it is SECRET (device {}'s database key). Carry it to the device and run `sealbox recover --escrow-key {}`",
                out.display(),
                r.device_name,
                out.display()
            );
        }
        Command::Status { json } => {
            let s = admin::status(dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                for e in &s.events {
                    println!("event {}: {} entries", e.id, e.entries);
                }
                for d in &s.devices {
                    let revoked = if d.revoked { " (revoked)" } else { "" };
                    println!(
                        "device {} [{}]: {} entries{revoked}",
                        d.name, d.event, d.entries
                    );
                }
            }
        }
        Command::DefaultConfig => print!("{}", config::DEFAULT_CONFIG),
        Command::Serve { listen } => serve(dir, listen)?,
        Command::Import { file, receipt_out } => {
            let r = admin::import(dir, &passphrase(false)?, &file, &receipt_out)?;
            println!(
                "{} {} entries from device {} (batch {}); receipt written to {}: carry it back and run `sealbox receipt import {}`",
                if r.duplicate { "already held" } else { "stored" },
                r.entries,
                r.device,
                r.batch_id,
                receipt_out.display(),
                receipt_out.display()
            );
        }
        Command::Export {
            event,
            format,
            out,
            unmasked,
        } => {
            let format = if format == "xlsx" {
                crm::Format::Xlsx
            } else {
                crm::Format::Csv
            };
            let pass = passphrase(false)?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries opened")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let r = crm::export(
                dir,
                &pass,
                &event,
                format,
                &out,
                unmasked,
                &mut |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            );
            bar.finish_and_clear();
            let r = r?;
            println!(
                "wrote {} rows to {}{}",
                r.rows,
                out.display(),
                if r.unmasked {
                    ", UNMASKED (recorded in the audit log)"
                } else {
                    ", masked"
                }
            );
        }
        Command::Purge => {
            for (event, n) in crm::purge(dir, sealbox_headoffice::now_ms())? {
                println!("event {event}: {n} entries past retention deleted");
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
                (None, None) => anyhow::bail!("give --phone or --email"),
            };
            let n = crm::forget(dir, &passphrase(false)?, &subject, event.as_deref())?;
            println!("deleted {n} entries; the request is in the audit log as a salted hash");
        }
        Command::Audit(AuditCmd::Verify) => match admin::audit_verify(dir)? {
            (rows, None) => println!("audit chain ok: {rows} rows"),
            (_, Some(seq)) => anyhow::bail!(
                "audit chain broken at row {seq}: a row was edited, removed or reordered"
            ),
        },
        Command::Device(DeviceCmd::Revoke { name }) => {
            admin::device_revoke(dir, &name)?;
            println!("device {name} revoked");
        }
    }
    Ok(())
}

fn serve(dir: &Path, listen: Option<String>) -> Result<()> {
    use sealbox_headoffice::server;
    let cfg = config::Config::load(dir)?;
    // Unlocked once: the identity opens the receipt and TLS keys and is dropped again.
    let ho = HoDir::new(dir).unlock(&passphrase(false)?)?;
    let _backups = sealbox_headoffice::backup::schedule(dir, &cfg)?;
    let state = std::sync::Arc::new(server::ServerState::open(&ho, &cfg)?);
    let tls = server::load_tls(&ho, &cfg)?;
    let addr = listen.unwrap_or(cfg.listen.clone());
    let listener = server::bind(&addr).with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Scripts and tests read the bound address from this line.
        println!("sealbox-headoffice listening on https://{local}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
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
        let zh = e
            .downcast_ref::<sealbox_headoffice::HoError>()
            .filter(|_| chinese())
            .and_then(|e| match e {
                sealbox_headoffice::HoError::Recovery(r) => {
                    Some(r.message(sealbox_protocol::Lang::Zh))
                }
                sealbox_headoffice::HoError::Backup(b) => {
                    Some(b.message(sealbox_protocol::Lang::Zh))
                }
                _ => None,
            });
        eprintln!("error: {}", zh.unwrap_or_else(|| one_line(&e)));
        std::process::exit(1);
    }
}

/// Whether to speak Chinese: `SEALBOX_LANG=zh`, or a Chinese locale when it is unset.
fn chinese() -> bool {
    match std::env::var("SEALBOX_LANG") {
        Ok(l) => l.starts_with("zh"),
        Err(_) => ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .is_some_and(|l| l.starts_with("zh")),
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}
