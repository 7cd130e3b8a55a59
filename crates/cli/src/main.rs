//! `sealbox`: the device's command line. The same library as the kiosk app behind another face:
//! each command is argument mapping and one call into `sealbox-device`. Errors become one line
//! on stderr and exit code 1 (clap's usage errors exit 2).

use anyhow::Result;
use clap::{Parser, Subcommand};
use sealbox_device::error::io_kind_zh;
use sealbox_device::pin::Pin;
use sealbox_device::protocol::Lang;
use sealbox_device::{files, Device, DeviceError, OsKeychain};
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
        /// A promoter's entries: staff-only fields are taken and the staff code's id is sealed
        /// with each entry. The code is asked for on the terminal or, without one, read from the
        /// first line of stdin (never an argument). Without it, staff-only fields are refused.
        #[arg(long)]
        staff_code: bool,
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

/// A message of the command line itself, in both languages, with its stable code.
#[derive(Debug)]
struct Msg {
    code: &'static str,
    zh: String,
    en: String,
}

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.en)
    }
}

impl std::error::Error for Msg {}

/// Prints one line in the user's language (see [`Lang::from_env`]).
fn say(zh: impl std::fmt::Display, en: impl std::fmt::Display) {
    match Lang::from_env() {
        Lang::Zh => println!("{zh}"),
        Lang::En => println!("{en}"),
    }
}

fn msg(code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> anyhow::Error {
    Msg {
        code,
        zh: zh.into(),
        en: en.into(),
    }
    .into()
}

/// Reads a text file the user named; a failure says which file and why, in both languages.
fn read_text(path: &Path) -> Result<Zeroizing<String>> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| {
            msg(
                "unreadable_file",
                format!("无法读取 {}：{}", path.display(), io_kind_zh(&e)),
                format!("reading {}: {e}", path.display()),
            )
        })
}

fn prompt(text: &str, var: &str) -> Result<Zeroizing<String>> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|_| {
            msg(
                "no_terminal",
                format!("没有终端可以输入 PIN：请设置环境变量 {var}，或在终端中运行"),
                format!("no terminal to type the PIN: set {var} or run in a terminal"),
            )
        })
}

fn pin_from(var: &str, text: &str) -> Result<Pin> {
    if let Ok(p) = std::env::var(var) {
        return Ok(Pin::new(p));
    }
    Ok(Pin::new(prompt(text, var)?.as_str()))
}

fn new_pin(var: &str) -> Result<Pin> {
    if let Ok(p) = std::env::var(var) {
        return Ok(Pin::new(p));
    }
    let a = prompt("New manager PIN: ", var)?;
    let b = prompt("Again: ", var)?;
    if *a != *b {
        return Err(msg(
            "pin_mismatch",
            "两次输入的 PIN 不一致，未做任何更改",
            "the two PINs differ; nothing was changed",
        ));
    }
    Ok(Pin::new(a.as_str()))
}

/// A promoter's staff code: asked for on the terminal, or without one the first line of stdin
/// (entries from stdin follow it). Never an argument.
fn read_staff_code(stdin: &mut std::io::StdinLock<'_>) -> Result<Pin> {
    use std::io::{BufRead, IsTerminal};
    if stdin.is_terminal() {
        let code = rpassword::prompt_password("Staff code: ")
            .map(Zeroizing::new)
            .map_err(|_| {
                msg(
                    "no_terminal",
                    "无法从终端读取员工码",
                    "the staff code could not be read from the terminal",
                )
            })?;
        return Ok(Pin::new(code.trim()));
    }
    let mut line = Zeroizing::new(String::new());
    stdin.read_line(&mut line).map_err(|e| {
        msg(
            "unreadable_file",
            format!("无法从标准输入读取员工码：{}", io_kind_zh(&e)),
            format!("reading the staff code from stdin: {e}"),
        )
    })?;
    if line.trim().is_empty() {
        return Err(msg(
            "no_staff_code",
            "没有员工码：--staff-code 需要在终端或标准输入的第一行给出员工码；未保存任何登记",
            "no staff code: --staff-code reads it from the terminal or the first line of stdin; nothing was stored",
        ));
    }
    Ok(Pin::new(line.trim()))
}

fn open(dir: &Path) -> Result<Device> {
    Ok(Device::open(dir, &OsKeychain)?)
}

fn run(cli: Cli) -> Result<()> {
    let dir = cli.data_dir.as_path();
    match cli.command {
        Command::Enroll { file, shred } => {
            let text = read_text(&file)?;
            let r = Device::enroll(dir, &text, &OsKeychain)?;
            if shred {
                files::shred(&file)?;
            }
            say(
                format!(
                    "已在 {} 中注册设备 {}（活动 {}）{}",
                    r.data_dir,
                    r.device,
                    r.event,
                    if shred {
                        "；注册文件已粉碎"
                    } else {
                        "；注册文件是机密：请将其粉碎（sealbox enroll --shred 会这样做）"
                    }
                ),
                format!(
                    "enrolled device {} for event {} in {}{}",
                    r.device,
                    r.event,
                    r.data_dir,
                    if shred {
                        "; the enrolment file was shredded"
                    } else {
                        "; the enrolment file is secret: shred it (sealbox enroll --shred does)"
                    }
                ),
            );
            say(
                format!("数据库密钥的托管副本（已加密给总部）：{}", r.escrow),
                format!(
                    "escrow copy of the database key, sealed to head office: {}",
                    r.escrow
                ),
            );
        }
        Command::Add {
            json,
            ndjson,
            staff_code,
        } => {
            let mut dev = open(dir)?;
            let mut stdin = std::io::stdin().lock();
            let staff = if staff_code {
                let code = read_staff_code(&mut stdin)?;
                Some(dev.verify_staff_code(&code)?)
            } else {
                None
            };
            let staff = staff.as_deref();
            let staff_only = |e: DeviceError| match &e {
                DeviceError::Invalid(err) | DeviceError::InvalidLine { error: err, .. }
                    if staff.is_none()
                        && err.code
                            == sealbox_device::protocol::entry::EntryErrorCode::StaffOnly =>
                {
                    let field = err.field.clone().unwrap_or_default();
                    msg(
                        "staff_only",
                        format!("字段 {field} 只限员工填写：请加 --staff-code，并在终端或标准输入的第一行给出员工码；未保存任何登记"),
                        format!("field {field} is for staff only: add --staff-code and give a staff code on the terminal or the first line of stdin; nothing was stored"),
                    )
                }
                _ => e.into(),
            };
            if let Some(path) = json {
                let text = if path.as_os_str() == "-" {
                    let mut text = Zeroizing::new(String::new());
                    stdin.read_to_string(&mut text).map_err(|e| {
                        msg(
                            "unreadable_file",
                            format!("无法从标准输入读取登记：{}", io_kind_zh(&e)),
                            format!("reading the entry from stdin: {e}"),
                        )
                    })?;
                    text
                } else {
                    read_text(&path)?
                };
                let id = dev.add_json_captured(&text, staff).map_err(staff_only)?;
                println!("{id}");
            } else if let Some(path) = ndjson {
                let ids = if path.as_os_str() == "-" {
                    dev.add_ndjson_captured(&mut stdin, staff)
                        .map_err(staff_only)?
                } else {
                    let f = std::fs::File::open(&path).map_err(|e| {
                        msg(
                            "unreadable_file",
                            format!("无法打开 {}：{}", path.display(), io_kind_zh(&e)),
                            format!("opening {}: {e}", path.display()),
                        )
                    })?;
                    dev.add_ndjson_captured(BufReader::new(f), staff)
                        .map_err(staff_only)?
                };
                for id in &ids {
                    println!("{id}");
                }
                match Lang::from_env() {
                    Lang::Zh => eprintln!("已保存 {} 条登记", ids.len()),
                    Lang::En => eprintln!("stored {} entries", ids.len()),
                }
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
                    say(
                        "warning   有登记等待发送给总部的时间已超过活动允许的期限：请同步或导出",
                        "warning   entries have waited longer than the event allows for head office: sync or export them",
                    );
                }
            }
            if let (Some(en), Some(zh)) = (s.problem, s.problem_zh) {
                return Err(Msg {
                    code: "status",
                    zh,
                    en,
                }
                .into());
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
                        say(
                            format!("审计链完好：共 {} 行", v.rows),
                            format!("audit chain ok: {} rows", v.rows),
                        );
                    }
                }
                Some(seq) => {
                    return Err(msg(
                        "audit_broken",
                        format!("审计链在第 {seq} 行断开：有记录被修改、删除或调换了顺序"),
                        format!(
                        "audit chain broken at row {seq}: a row was edited, removed or reordered"
                    ),
                    ))
                }
            }
        }
        Command::Recover { escrow_key } => {
            let text = read_text(&escrow_key)?;
            let r = Device::recover(dir, &text, &OsKeychain)?;
            files::shred(&escrow_key)?;
            if r.device_json_rebuilt {
                say(
                    "数据库密钥已恢复到钥匙串，并根据托管记录和数据库重建了 device.json；托管密钥文件已粉碎",
                    "database key restored to the keychain and device.json rebuilt from the escrow record and the database; the escrow key file was shredded",
                );
            } else {
                say(
                    "数据库密钥已恢复到钥匙串；托管密钥文件已粉碎",
                    "database key restored to the keychain; the escrow key file was shredded",
                );
            }
        }
        Command::Export { out } => {
            let mut dev = open(dir)?;
            let r = dev.export_batch(&out)?;
            say(
                format!(
                    "已将 {} 条登记导出到 {}，已加密给总部并由本设备签名；导入回执之前它们仍保留在本设备上",
                    r.count, r.path
                ),
                format!(
                    "exported {} entries to {}, encrypted for head office and signed by this device; they stay here until the receipt is imported",
                    r.count, r.path
                ),
            );
        }
        Command::Receipt(ReceiptCmd::Import { file }) => {
            let text = read_text(&file)?;
            let mut dev = open(dir)?;
            let r = dev.import_receipt(&text)?;
            if r.already_applied {
                say(
                    "这张回执已经导入过，没有需要删除的登记",
                    "this receipt was already applied; nothing left to erase",
                );
            } else {
                say(
                    format!(
                        "回执已验证：总部确认收到的 {} 条登记已从本设备删除",
                        r.erased
                    ),
                    format!(
                        "receipt verified: {} entries acknowledged by head office were erased",
                        r.erased
                    ),
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
                indicatif::ProgressStyle::with_template(match Lang::from_env() {
                    Lang::Zh => "{bar:40} 已发送 {pos}/{len} 条",
                    Lang::En => "{bar:40} {pos}/{len} entries sent",
                })
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
                    say(
                        "没有需要发送的登记：本设备上没有待发送的登记",
                        "nothing to send: no entry was waiting on this device",
                    );
                } else {
                    say(
                        format!(
                            "已分 {} 批发送 {} 条登记；总部已签收，本设备上的副本已删除；还有 {} 条等待发送",
                            report.batches, report.erased, report.pending
                        ),
                        format!(
                            "sent {} entries in {} batches; head office signed for them and they were erased here; {} waiting",
                            report.erased, report.batches, report.pending
                        ),
                    );
                }
                if report.quarantined > 0 {
                    say(
                        format!(
                            "{} 条被总部单独拒收的登记已加密保留在本设备上（见 `sealbox list`）；请导出批量文件交总部查看",
                            report.quarantined
                        ),
                        format!(
                            "{} entries refused by head office on their own are kept here, encrypted (see `sealbox list`); export a batch file to let head office look at them",
                            report.quarantined
                        ),
                    );
                }
            }
        }
        Command::Pin(PinCmd::Reset { escrow_key }) => {
            let text = read_text(&escrow_key)?;
            let mut dev = open(dir)?;
            let new = new_pin("SEALBOX_NEW_PIN")?;
            dev.reset_pin(&text, &new)?;
            files::shred(&escrow_key)?;
            say(
                "已用总部的摘要密钥重设管理员 PIN；密钥文件已粉碎",
                "manager PIN reset with head office's summary key; the key file was shredded",
            );
        }
        Command::Pin(PinCmd::Set) => {
            let mut dev = open(dir)?;
            if dev.pin_is_set()? {
                let current = pin_from("SEALBOX_PIN", "Current manager PIN: ")?;
                let new = new_pin("SEALBOX_NEW_PIN")?;
                dev.set_pin(Some(&current), &new)?;
                say("管理员 PIN 已更改", "manager PIN changed");
            } else {
                let new = new_pin("SEALBOX_PIN")?;
                dev.set_pin(None, &new)?;
                say("管理员 PIN 已设置", "manager PIN set");
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

/// Whether the command was asked for JSON: its error is then JSON on stdout too (`status` and
/// `audit verify` report problems inside their own JSON).
fn wants_json(c: &Command) -> bool {
    match c {
        Command::List { json, .. } | Command::Sync { json, .. } => *json,
        _ => false,
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

/// The error's stable code and its message in `lang`.
fn describe(e: &anyhow::Error, lang: Lang) -> (&'static str, String) {
    if let Some(d) = e.downcast_ref::<DeviceError>() {
        return (d.code(), d.message(lang));
    }
    if let Some(m) = e.downcast_ref::<Msg>() {
        let text = match lang {
            Lang::Zh => m.zh.clone(),
            Lang::En => m.en.clone(),
        };
        return (m.code, text);
    }
    (
        "error",
        e.chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": "),
    )
}

fn main() {
    // First of all: no core file may hold what this process reads.
    let hardened = sealbox_device::process::forbid_core_dumps();
    // Before clap, whose own errors would repeat an unexpected argument.
    if std::env::args_os().skip(1).any(|a| looks_like_entry(&a)) {
        let lang = Lang::from_env();
        eprintln!(
            "{}{}",
            lang.error_prefix(),
            entry_argument_refusal(lang == Lang::Zh)
        );
        std::process::exit(2);
    }
    let cli = Cli::parse();
    init_logging(&cli.data_dir);
    if let Err(e) = hardened {
        tracing::warn!(error = %e, "core dumps could not be turned off");
    }
    let json = wants_json(&cli.command);
    if let Err(e) = run(cli) {
        let lang = Lang::from_env();
        let (code, line) = describe(&e, lang);
        let line = line.replace('\n', " ");
        if json {
            println!(
                "{}",
                serde_json::json!({"error": {"code": code, "message": line}})
            );
        }
        eprintln!("{}{line}", lang.error_prefix());
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
