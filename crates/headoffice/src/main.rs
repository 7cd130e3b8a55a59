//! `sealbox-headoffice`: the admin's command line. Glue only: each command is one call into the
//! library; errors become one line on stderr and exit code 1 (2 for usage).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sealbox_headoffice::{admin, config, Passphrase};
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
    /// Create head office's keys (age identity, signing key, TLS CA and certificate).
    Init,
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
    /// Counts of events, devices and entries.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print a commented example config.
    DefaultConfig,
}

#[derive(Subcommand)]
enum EventCmd {
    /// Validate and store an event config (JSON).
    Create { file: PathBuf },
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

fn passphrase(confirm: bool) -> Result<Passphrase> {
    if let Ok(p) = std::env::var("SEALBOX_HO_PASSPHRASE") {
        return Ok(Passphrase::new(p));
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

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn run(cli: Cli) -> Result<()> {
    let dir = &cli.data_dir;
    match cli.command {
        Command::Init => {
            admin::init(dir, &passphrase(true)?)?;
            println!("head office initialised in {}", dir.display());
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
    }
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
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
