//! `sealbox`: the device's command line. The same library as the kiosk app behind another face:
//! each command is argument mapping and one call into `sealbox-device`. Errors become one line
//! on stderr and exit code 1 (clap's usage errors exit 2).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sealbox_device::pin::Pin;
use sealbox_device::{files, Device, OsKeychain};
use std::ffi::OsString;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "sealbox",
    version,
    about = "Sealbox device: encrypted on-site registrations"
)]
struct Cli {
    /// The device's data directory.
    #[arg(
        long,
        global = true,
        env = "SEALBOX_DATA_DIR",
        default_value = "sealbox-data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol this device from head office's enrolment file.
    Enroll {
        file: PathBuf,
        /// Overwrite and remove the enrolment file once it has been read (it is secret).
        #[arg(long)]
        shred: bool,
    },
    /// Record registrations, read from a file or stdin: never from an argument, which would
    /// stay in the shell's history and show in the process list.
    Add {
        /// One registration (a JSON object with "consent": true) from a file, or `-` for stdin.
        #[arg(
            long,
            value_name = "FILE|-",
            conflicts_with = "ndjson",
            required_unless_present = "ndjson"
        )]
        json: Option<PathBuf>,
        /// Many registrations, one JSON object a line, from a file or `-` for stdin.
        #[arg(long, value_name = "FILE|-")]
        ndjson: Option<PathBuf>,
    },
    /// Counts and health; no personal data.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The masked list of registrations (manager PIN).
    List {
        #[arg(long)]
        json: bool,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Restore the database key from an escrow key file opened by head office.
    Recover {
        #[arg(long)]
        escrow_key: PathBuf,
    },
    /// The manager PIN.
    #[command(subcommand)]
    Pin(PinCmd),
    /// Write every entry still here into one encrypted, signed batch file for head office.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// Receipts from head office.
    #[command(subcommand)]
    Receipt(ReceiptCmd),
    /// Send every pending entry to head office now; erase each batch once its receipt checks out.
    Sync {
        /// Entries per batch.
        #[arg(long, default_value_t = 500)]
        page: usize,
        /// Seconds to wait for head office before giving up (entries stay for next time).
        #[arg(long, default_value_t = 15)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ReceiptCmd {
    /// Verify a receipt file from `sealbox-headoffice import` and erase what it acknowledges.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
enum PinCmd {
    /// Set the manager PIN (changing it needs the current one: SEALBOX_PIN, then SEALBOX_NEW_PIN).
    Set,
    /// Set a new PIN when the current one is forgotten, with the summary key head office opened
    /// from this device's summary-escrow.age (new PIN: SEALBOX_NEW_PIN or a prompt).
    Reset {
        #[arg(long)]
        escrow_key: PathBuf,
    },
}

fn pin_from(var: &str, prompt: &str) -> Result<Pin> {
    if let Ok(p) = std::env::var(var) {
        return Ok(Pin::new(p));
    }
    let p = Zeroizing::new(
        rpassword::prompt_password(prompt)
            .with_context(|| format!("no PIN: set {var} or run in a terminal"))?,
    );
    Ok(Pin::new(p.as_str()))
}

fn new_pin(var: &str) -> Result<Pin> {
    if let Ok(p) = std::env::var(var) {
        return Ok(Pin::new(p));
    }
    let a =
        Zeroizing::new(rpassword::prompt_password("New manager PIN: ").context("reading the PIN")?);
    let b = Zeroizing::new(rpassword::prompt_password("Again: ").context("reading the PIN")?);
    anyhow::ensure!(*a == *b, "the two PINs differ; nothing was changed");
    Ok(Pin::new(a.as_str()))
}

fn open(dir: &Path) -> Result<Device> {
    Ok(Device::open(dir, &OsKeychain)?)
}

fn run(cli: Cli) -> Result<()> {
    let dir = cli.data_dir.as_path();
    match cli.command {
        Command::Enroll { file, shred } => {
            let text = Zeroizing::new(
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?,
            );
            let r = Device::enroll(dir, &text, &OsKeychain)?;
            if shred {
                files::shred(&file)?;
            }
            println!(
                "enrolled device {} for event {} in {}{}",
                r.device,
                r.event,
                r.data_dir,
                if shred {
                    "; the enrolment file was shredded"
                } else {
                    "; the enrolment file is secret: shred it (sealbox enroll --shred does)"
                }
            );
            println!(
                "escrow copy of the database key, sealed to head office: {}",
                r.escrow
            );
        }
        Command::Add { json, ndjson } => {
            let mut dev = open(dir)?;
            if let Some(path) = json {
                let mut text = Zeroizing::new(String::new());
                if path.as_os_str() == "-" {
                    std::io::stdin()
                        .lock()
                        .read_to_string(&mut text)
                        .context("reading the entry from stdin")?;
                } else {
                    std::fs::File::open(&path)
                        .and_then(|mut f| f.read_to_string(&mut text))
                        .with_context(|| format!("reading {}", path.display()))?;
                }
                let id = dev.add_json(&text)?;
                println!("{id}");
            } else if let Some(path) = ndjson {
                let ids = if path.as_os_str() == "-" {
                    dev.add_ndjson(std::io::stdin().lock())?
                } else {
                    let f = std::fs::File::open(&path)
                        .with_context(|| format!("opening {}", path.display()))?;
                    dev.add_ndjson(BufReader::new(f))?
                };
                for id in &ids {
                    println!("{id}");
                }
                eprintln!("stored {} entries", ids.len());
            }
        }
        Command::Status { json } => {
            let s = Device::status(dir, &OsKeychain);
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                println!("device    {}", s.device.as_deref().unwrap_or("-"));
                println!("event     {}", s.event.as_deref().unwrap_or("-"));
                println!("pending   {}", n(s.pending));
                println!("exported  {}", n(s.exported));
                println!("refused   {}", n(s.refused));
                println!("erased    {}", n(s.erased));
                println!("database  {}", s.database);
                println!("keychain  {}", s.keychain);
                if s.waiting_too_long {
                    println!("warning   entries have waited longer than the event allows for head office: sync or export them");
                }
            }
            if let Some(p) = s.problem {
                anyhow::bail!(p);
            }
        }
        Command::List { json, limit } => {
            let mut dev = open(dir)?;
            let pin = pin_from("SEALBOX_PIN", "Manager PIN: ")?;
            let rows = dev.list(&pin, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    let fields: Vec<String> =
                        r.summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let state = match &r.refused_code {
                        Some(code) => format!("{}({code})", r.state),
                        None => r.state.to_string(),
                    };
                    println!("{} {state} {}", r.id, fields.join(" "));
                }
            }
        }
        Command::Audit(AuditCmd::Verify { json }) => {
            let dev = open(dir)?;
            let v = dev.audit_verify()?;
            if json {
                println!("{}", serde_json::to_string(&v)?);
            }
            match v.broken_at {
                None => {
                    if !json {
                        println!("audit chain ok: {} rows", v.rows);
                    }
                }
                Some(seq) => anyhow::bail!(
                    "audit chain broken at row {seq}: a row was edited, removed or reordered"
                ),
            }
        }
        Command::Recover { escrow_key } => {
            let text = Zeroizing::new(
                std::fs::read_to_string(&escrow_key)
                    .with_context(|| format!("reading {}", escrow_key.display()))?,
            );
            let r = Device::recover(dir, &text, &OsKeychain)?;
            files::shred(&escrow_key)?;
            if r.device_json_rebuilt {
                println!("database key restored to the keychain and device.json rebuilt from the escrow record and the database; the escrow key file was shredded");
            } else {
                println!("database key restored to the keychain; the escrow key file was shredded");
            }
        }
        Command::Export { out } => {
            let mut dev = open(dir)?;
            let r = dev.export_batch(&out)?;
            println!(
                "exported {} entries to {}, encrypted for head office and signed by this device; they stay here until the receipt is imported",
                r.count, r.path
            );
        }
        Command::Receipt(ReceiptCmd::Import { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut dev = open(dir)?;
            let r = dev.import_receipt(&text)?;
            if r.already_applied {
                println!("this receipt was already applied; nothing left to erase");
            } else {
                println!(
                    "receipt verified: {} entries acknowledged by head office were erased",
                    r.erased
                );
            }
        }
        Command::Sync {
            page,
            timeout,
            json,
        } => {
            let mut dev = open(dir)?;
            let client = dev.sync_client(std::time::Duration::from_secs(timeout))?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries sent")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let outcome = dev.sync(&client, page, &mut |p| {
                bar.set_length(p.total);
                bar.set_position(p.erased);
            });
            bar.finish_and_clear();
            let report = outcome?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                if report.batches == 0 {
                    println!("nothing was sent: no entry is waiting for head office");
                } else {
                    println!(
                        "sent {} entries in {} batches; head office signed for them and they were erased here; {} waiting",
                        report.erased, report.batches, report.pending
                    );
                }
                if report.quarantined > 0 {
                    println!(
                        "{} entries refused by head office on their own are kept here, encrypted (see `sealbox list`); export a batch file to let head office look at them",
                        report.quarantined
                    );
                }
            }
        }
        Command::Pin(PinCmd::Reset { escrow_key }) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(&escrow_key)
                    .with_context(|| format!("reading {}", escrow_key.display()))?,
            );
            let mut dev = open(dir)?;
            let new = new_pin("SEALBOX_NEW_PIN")?;
            dev.reset_pin(&text, &new)?;
            files::shred(&escrow_key)?;
            println!("manager PIN reset with head office's summary key; the key file was shredded");
        }
        Command::Pin(PinCmd::Set) => {
            let mut dev = open(dir)?;
            if dev.pin_is_set()? {
                let current = pin_from("SEALBOX_PIN", "Current manager PIN: ")?;
                let new = new_pin("SEALBOX_NEW_PIN")?;
                dev.set_pin(Some(&current), &new)?;
                println!("manager PIN changed");
            } else {
                let new = new_pin("SEALBOX_PIN")?;
                dev.set_pin(None, &new)?;
                println!("manager PIN set");
            }
        }
    }
    Ok(())
}

/// Logs go to DATA_DIR/logs/sealbox.log when the data directory exists: ids and counts only.
fn init_logging(dir: &Path) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEALBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = dir.join("logs");
    let file = dir
        .is_dir()
        .then(|| std::fs::create_dir_all(&logs).ok())
        .flatten()
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join("sealbox.log"))
                .ok()
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match file {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).init(),
        None => builder
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .init(),
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

/// Whether a command-line argument looks like a registration (a JSON object or array, or a
/// `"key":` pair), alone or as `--option=VALUE`. No Sealbox argument ever has that shape.
fn looks_like_entry(arg: &OsString) -> bool {
    let arg = arg.to_string_lossy();
    let value = match arg.split_once('=') {
        Some((option, value)) if option.starts_with("--") => value,
        _ => &arg,
    };
    value.trim_start().starts_with(['{', '[']) || (value.contains('"') && value.contains(':'))
}

/// The refusal of an entry given as an argument: one line, without the argument (it holds a
/// visitor's values), saying how to pass it instead.
fn entry_argument_refusal(zh: bool) -> &'static str {
    if zh {
        "登记内容不能作为命令行参数（会留在 shell 历史记录中，并在进程列表中对本机所有用户可见），未保存任何内容。请从文件或标准输入读取：sealbox add --json entry.json，或 sealbox add --json - < entry.json，多条用 sealbox add --ndjson 文件|-"
    } else {
        "a registration is never a command-line argument (it would stay in the shell's history and show in the process list to every local user); nothing was stored. Read it from a file or stdin: `sealbox add --json entry.json`, `sealbox add --json - < entry.json`, or for many `sealbox add --ndjson FILE|-`"
    }
}

fn main() {
    // First of all: no core file may hold what this process reads.
    let hardened = sealbox_device::process::forbid_core_dumps();
    // Before clap, whose own errors would repeat an unexpected argument.
    if std::env::args_os().skip(1).any(|a| looks_like_entry(&a)) {
        eprintln!("error: {}", entry_argument_refusal(chinese()));
        std::process::exit(2);
    }
    let cli = Cli::parse();
    init_logging(&cli.data_dir);
    if let Err(e) = hardened {
        tracing::warn!(error = %e, "core dumps could not be turned off");
    }
    if let Err(e) = run(cli) {
        let zh = e
            .downcast_ref::<sealbox_device::DeviceError>()
            .filter(|_| chinese())
            .map(sealbox_device::kiosk::zh_message);
        let line = zh.unwrap_or_else(|| {
            e.chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ")
        });
        eprintln!("error: {}", line.replace('\n', " "));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_recognised_in_arguments_paths_are_not() {
        for entry in [
            r#"{"name":"张三","consent":true}"#,
            r#"  {"name":"x"}"#,
            r#"["x"]"#,
            r#"--json={"name":"x"}"#,
            r#""name":"x""#,
        ] {
            assert!(looks_like_entry(&OsString::from(entry)), "{entry}");
        }
        for arg in [
            "add",
            "--json",
            "-",
            "entry.json",
            "/media/usb/paper forms.ndjson",
            "--data-dir=/var/lib/sealbox",
            "--ndjson=-",
            "C:\\sealbox\\entry.json",
        ] {
            assert!(!looks_like_entry(&OsString::from(arg)), "{arg}");
        }
        assert!(!entry_argument_refusal(false).contains('\n'));
        assert!(entry_argument_refusal(true).contains("未保存任何内容"));
    }
}
