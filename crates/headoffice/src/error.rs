//! Head office errors, each with a stable code.

use sealbox_protocol::Lang;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoError {
    #[error("head office is not initialised in {}: run `sealbox-headoffice init`", .0.display())]
    NotInitialised(PathBuf),
    #[error("head office is already initialised in {}; nothing was changed", .0.display())]
    AlreadyInitialised(PathBuf),
    #[error("wrong passphrase, or the identity file is damaged")]
    WrongPassphrase,
    #[error("the passphrase must have at least 12 characters")]
    WeakPassphrase,
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    BadEvent(sealbox_protocol::ConfigError),
    #[error("--url must start with https://; nothing was written")]
    BadUrl,
    #[error("the server certificate is for {names}, not for {host}: a device enrolled with --url {url} could never sync; use one of those names, or point tls_cert and tls_key in config.toml at a certificate for {host} signed by head office's CA (ca.pem); nothing was written")]
    UrlNotCovered {
        url: String,
        host: String,
        names: String,
    },
    #[error("a device name is 1 to 64 letters, digits, '-', '_' or '.'")]
    BadDeviceName,
    #[error("no device named {0:?}")]
    NoSuchDevice(String),
    #[error("that is not a phone number Sealbox accepts")]
    BadPhone,
    #[error("that is not an email address")]
    BadEmail,
    #[error("{path}'s directory {dir} does not exist or cannot be written ({source}); nothing was stored")]
    OutputUnwritable {
        path: String,
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("event {0:?} does not exist: create it with `sealbox-headoffice event create FILE`")]
    UnknownEvent(String),
    #[error("event {0:?} already exists with a different config; nothing was changed")]
    EventExists(String),
    #[error("the event has no staff code {0:?} (list them with `event staff-code EVENT --list`); nothing was changed")]
    UnknownStaffCode(String),
    #[error("device {0:?} is already enrolled; revoke it or choose another name")]
    DeviceExists(String),
    #[error("not an escrow file for this head office, or damaged")]
    BadEscrow,
    #[error("{path} already exists; nothing was written")]
    OutputExists { path: String },
    #[error("the batch file is truncated, altered, or not for this head office: {0}; nothing was stored")]
    BadBatch(String),
    #[error("the batch is from device {0:?}, which is not enrolled here; nothing was stored")]
    UnknownDevice(String),
    #[error("the batch is from device {0:?}, which is revoked; nothing was stored. If the device was found again and its entries are genuine, import them deliberately with `import --accept-revoked` (audited)")]
    RevokedDevice(String),
    #[error("head office's keys are locked: give the passphrase")]
    Locked,
    #[error("init's final check failed ({0}); head office was not initialised")]
    Canary(String),
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error("crypto: {0}")]
    Crypto(String),
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// A PostgreSQL failure (head office on `database_url`): the server's message and SQLSTATE.
    #[error("database server error: {0}")]
    Database(String),
    #[error("the database already holds head office data ({0} not empty); nothing was written")]
    TargetNotEmpty(String),
    /// An XLSX sheet holds at most 1,048,576 rows (the header included).
    #[error("{0} rows do not fit in an XLSX sheet (at most 1,048,575 besides the header): export CSV instead; no file was written")]
    TooManyRowsForXlsx(u64),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl HoError {
    pub fn code(&self) -> &'static str {
        use HoError::*;
        match self {
            NotInitialised(_) => "not_initialised",
            AlreadyInitialised(_) => "already_initialised",
            WrongPassphrase => "wrong_passphrase",
            WeakPassphrase => "weak_passphrase",
            Config(_) => "bad_config",
            BadEvent(_) => "bad_event",
            BadUrl => "bad_url",
            UrlNotCovered { .. } => "url_not_covered",
            BadDeviceName => "bad_device_name",
            NoSuchDevice(_) => "no_such_device",
            BadPhone => "bad_phone",
            BadEmail => "bad_email",
            OutputUnwritable { .. } => "output_unwritable",
            UnknownEvent(_) => "unknown_event",
            EventExists(_) => "event_exists",
            UnknownStaffCode(_) => "unknown_staff_code",
            DeviceExists(_) => "device_exists",
            BadEscrow => "bad_escrow",
            OutputExists { .. } => "output_exists",
            BadBatch(_) => "bad_batch",
            UnknownDevice(_) => "unknown_device",
            RevokedDevice(_) => "revoked_device",
            Locked => "locked",
            Canary(_) => "canary_failed",
            Recovery(e) => e.code(),
            Backup(e) => e.code(),
            Crypto(_) => "crypto",
            Storage(_) => "storage",
            Database(_) => "database",
            TargetNotEmpty(_) => "target_not_empty",
            TooManyRowsForXlsx(_) => "too_many_rows_for_xlsx",
            Io { .. } => "io",
        }
    }

    /// The message in `lang`, as specific in Chinese as in English (the `Display` text).
    pub fn message(&self, lang: Lang) -> String {
        if lang == Lang::En {
            return self.to_string();
        }
        use HoError::*;
        match self {
            NotInitialised(p) => format!("{} 中还没有初始化总部：请运行 `sealbox-headoffice init`", p.display()),
            AlreadyInitialised(p) => format!("{} 中已初始化总部，未做任何更改", p.display()),
            WrongPassphrase => "口令不正确，或身份文件已损坏".into(),
            WeakPassphrase => "口令至少需要 12 个字符；未创建任何文件".into(),
            Config(d) => format!("配置或参数有误（{d}）"),
            BadEvent(e) => format!("活动配置有误，位置 {}（{}）", e.at, e.message),
            BadUrl => "--url 必须以 https:// 开头，未写入任何内容".into(),
            UrlNotCovered { url, host, names } => format!("服务器证书只适用于 {names}，不适用于 {host}：用 --url {url} 注册的设备将永远无法同步。请使用其中一个名称，或在 config.toml 的 tls_cert 和 tls_key 中指定由总部 CA（ca.pem）签发、适用于 {host} 的证书；未写入任何内容"),
            BadDeviceName => "设备名须为 1 至 64 个字母、数字、“-”、“_”或“.”".into(),
            NoSuchDevice(d) => format!("没有名为 {d:?} 的设备"),
            BadPhone => "这不是 Sealbox 接受的手机号".into(),
            BadEmail => "这不是有效的邮箱地址".into(),
            OutputUnwritable { path, dir, source } => format!("{path} 所在的文件夹 {dir} 不存在或不可写（{}），未存储任何内容", io_kind_zh(source)),
            UnknownEvent(e) => format!("活动 {e:?} 不存在：请先用 `sealbox-headoffice event create 文件` 创建"),
            EventExists(e) => format!("活动 {e:?} 已存在，且配置不同；未做任何更改"),
            UnknownStaffCode(id) => format!("活动没有员工码 {id:?}（用 `event staff-code 活动 --list` 查看）；未做任何更改"),
            DeviceExists(d) => format!("设备 {d:?} 已注册：请先吊销它，或换一个名称"),
            BadEscrow => "这不是本总部的托管文件，或文件已损坏".into(),
            OutputExists { path } => format!("{path} 已存在，未写入任何内容"),
            BadBatch(d) => format!("批次文件被截断、改动，或不是发给本总部的（{d}）；未存储任何内容"),
            UnknownDevice(d) => format!("批次来自设备 {d:?}，该设备未在本总部注册；未存储任何内容"),
            RevokedDevice(d) => format!("批次来自已被吊销的设备 {d:?}，未存储任何内容。如果设备已找回且登记确实可信，可用 `import --accept-revoked` 有意接收（会记入审计日志）"),
            Locked => "总部的密钥已锁定：请提供口令".into(),
            Canary(d) => format!("初始化的最后检查失败（{d}）；总部未初始化"),
            Recovery(e) => e.message(lang),
            Backup(e) => e.message(lang),
            Crypto(d) => format!("加密出错（{d}）"),
            Storage(e) => format!("数据库读写出错（{e}）"),
            Database(e) => format!("数据库服务器出错（{e}）"),
            TargetNotEmpty(t) => format!("数据库中已有总部数据（{t} 非空）；未写入任何内容"),
            TooManyRowsForXlsx(n) => format!(
                "{n} 行超出 XLSX 工作表的上限（表头之外最多 1,048,575 行）：请改为导出 CSV；未写入任何文件"
            ),
            Io { context, source } => format!("文件读写出错（{context}）：{}", io_kind_zh(source)),
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HoError {
        let context = context.into();
        move |source| HoError::Io { context, source }
    }
}

/// An I/O error's kind in Chinese, with the system's text for the rare kinds.
pub fn io_kind_zh(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "文件或文件夹不存在".into(),
        PermissionDenied => "没有权限".into(),
        AlreadyExists => "文件已存在".into(),
        InvalidData => "内容不是有效的 UTF-8 文本".into(),
        StorageFull => "磁盘已满".into(),
        ReadOnlyFilesystem => "文件系统只读".into(),
        IsADirectory => "这是一个文件夹，不是文件".into(),
        AddrInUse => "地址已被占用".into(),
        AddrNotAvailable => "本机没有这个地址".into(),
        _ => format!("系统错误（{e}）"),
    }
}

pub type Result<T, E = HoError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Names every variant (no wildcard): a new variant does not compile until it is here.
    fn variant(e: &HoError) -> &'static str {
        use HoError::*;
        match e {
            NotInitialised(_) => "NotInitialised",
            AlreadyInitialised(_) => "AlreadyInitialised",
            WrongPassphrase => "WrongPassphrase",
            WeakPassphrase => "WeakPassphrase",
            Config(_) => "Config",
            BadEvent(_) => "BadEvent",
            BadUrl => "BadUrl",
            UrlNotCovered { .. } => "UrlNotCovered",
            BadDeviceName => "BadDeviceName",
            NoSuchDevice(_) => "NoSuchDevice",
            BadPhone => "BadPhone",
            BadEmail => "BadEmail",
            OutputUnwritable { .. } => "OutputUnwritable",
            UnknownEvent(_) => "UnknownEvent",
            EventExists(_) => "EventExists",
            UnknownStaffCode(_) => "UnknownStaffCode",
            DeviceExists(_) => "DeviceExists",
            BadEscrow => "BadEscrow",
            OutputExists { .. } => "OutputExists",
            BadBatch(_) => "BadBatch",
            UnknownDevice(_) => "UnknownDevice",
            RevokedDevice(_) => "RevokedDevice",
            Locked => "Locked",
            Canary(_) => "Canary",
            Recovery(e) => e.code(),
            Backup(e) => e.code(),
            Crypto(_) => "Crypto",
            Storage(_) => "Storage",
            Database(_) => "Database",
            TargetNotEmpty(_) => "TargetNotEmpty",
            TooManyRowsForXlsx(_) => "TooManyRowsForXlsx",
            Io { .. } => "Io",
        }
    }

    fn han(s: &str) -> usize {
        s.chars()
            .filter(|c| ('\u{4E00}'..='\u{9FFF}').contains(c))
            .count()
    }

    /// Every error code has a message in Chinese and English, as specific in each.
    #[test]
    fn every_error_has_a_specific_message_in_both_languages() {
        use HoError::*;
        let p = || PathBuf::from("/ho");
        let all = vec![
            NotInitialised(p()),
            AlreadyInitialised(p()),
            WrongPassphrase,
            WeakPassphrase,
            Config("signing.key is damaged".into()),
            BadEvent(sealbox_protocol::ConfigError {
                at: "fields[1] (phone).purpose".into(),
                message: "is required".into(),
            }),
            BadUrl,
            UrlNotCovered {
                url: "https://ho.example:8443".into(),
                host: "ho.example".into(),
                names: "localhost, 127.0.0.1".into(),
            },
            BadDeviceName,
            NoSuchDevice("booth-9".into()),
            BadPhone,
            BadEmail,
            OutputUnwritable {
                path: "/x/r.json".into(),
                dir: "/x".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
            UnknownEvent("e".into()),
            EventExists("e".into()),
            UnknownStaffCode("s9".into()),
            DeviceExists("booth-1".into()),
            BadEscrow,
            OutputExists { path: "/x".into() },
            BadBatch("it does not decrypt".into()),
            UnknownDevice("booth-1".into()),
            RevokedDevice("booth-1".into()),
            Locked,
            Canary("the sealed canary did not open".into()),
            Recovery(crate::recovery::RecoveryError::Damaged(2)),
            Recovery(crate::recovery::RecoveryError::OtherHeadOffice(1)),
            Recovery(crate::recovery::RecoveryError::TooFew { need: 2, got: 1 }),
            Recovery(crate::recovery::RecoveryError::Mismatch),
            Recovery(crate::recovery::RecoveryError::KitExists("/ho/kit".into())),
            Recovery(crate::recovery::RecoveryError::BadKit),
            Backup(crate::backup::BackupError::NoRecipient),
            Backup(crate::backup::BackupError::BadRecipient("x".into())),
            Backup(crate::backup::BackupError::BadIdentity),
            Backup(crate::backup::BackupError::Damaged("header".into())),
            Backup(crate::backup::BackupError::Mismatch("counts".into())),
            Backup(crate::backup::BackupError::NotEmpty("/new".into())),
            Crypto("rng".into()),
            Storage(rusqlite::Error::QueryReturnedNoRows),
            Database("connection refused".into()),
            TargetNotEmpty("entries".into()),
            TooManyRowsForXlsx(1_048_576),
            Io {
                context: "reading x".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
        ];
        let seen: std::collections::BTreeSet<_> = all.iter().map(variant).collect();
        assert_eq!(seen.len(), all.len(), "one example for every variant");
        for e in &all {
            let (zh, en) = (e.message(Lang::Zh), e.message(Lang::En));
            assert_eq!(en, e.to_string());
            assert!(han(&en) == 0 && en.len() > 8, "{}: {en}", e.code());
            assert!(han(&zh) >= 2, "{} has no Chinese message: {zh}", e.code());
            let sentence: String = zh
                .split('（')
                .map(|part| part.split_once('）').map_or(part, |(_, rest)| rest))
                .collect();
            for word in [" the ", " is ", " not ", "nothing", " was ", "head office"] {
                assert!(
                    !sentence.contains(word),
                    "{}: English in the Chinese: {zh}",
                    e.code()
                );
            }
        }
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(
                    a.message(Lang::Zh),
                    b.message(Lang::Zh),
                    "{} / {}",
                    a.code(),
                    b.code()
                );
            }
        }
    }
}
