//! Device errors. Each has a stable [`DeviceError::code`] that the kiosk UI branches on; the
//! `Display` text is one line for people, with the next step where there is one. No variant
//! ever carries a visitor's value.

use sealbox_protocol::entry::EntryError;
use sealbox_protocol::Lang;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    #[error("this data directory is not enrolled: run `sealbox enroll FILE` with an enrolment file from head office")]
    NotEnrolled,
    #[error("this data directory is already enrolled as device {0:?}; nothing was changed")]
    AlreadyEnrolled(String),
    #[error("{} exists but device.json does not: an enrolment was interrupted or device.json was lost; nothing was changed. After an interrupted enrolment, `sealbox enroll FILE` again cleans up; if the device held registrations, ask head office to open its escrow.age and run `sealbox recover --escrow-key KEYFILE`, which rebuilds device.json", .0.display())]
    OrphanDatabase(PathBuf),
    #[error("the database key is missing from the keychain (key lost); the database is intact and nothing was changed. Ask head office to run `sealbox-headoffice escrow open {}`, then run `sealbox recover --escrow-key KEYFILE`", .0.display())]
    KeyLost(PathBuf),
    #[error("the key in the keychain does not belong to this database, or the database file was copied from another device (wrong key); nothing was changed. Put the right file back, or recover the right key with `sealbox recover --escrow-key KEYFILE`")]
    WrongKey,
    #[error(
        "the database file is damaged or not a Sealbox database (corrupt); it was left untouched"
    )]
    Corrupt,
    #[error("the database file {} is missing while device.json says this device is enrolled; nothing was changed", .0.display())]
    DatabaseMissing(PathBuf),
    #[error("the OS keychain is unavailable ({0}); nothing was changed. On Linux a Secret Service (GNOME Keyring or KWallet) must be running and unlocked")]
    KeychainUnavailable(String),
    #[error(transparent)]
    Invalid(#[from] EntryError),
    #[error("line {line}: {error}; nothing was written")]
    InvalidLine { line: usize, error: EntryError },
    #[error("{0}")]
    Enrolment(String),
    #[error("the escrow key does not belong to this device; nothing was changed")]
    EscrowMismatch,
    #[error(
        "this is not an escrow key file from `sealbox-headoffice escrow open`; nothing was changed"
    )]
    NotAnEscrowKey,
    #[error("{} is damaged; nothing was changed. Restore it from a backup of this data directory, or rebuild it with `sealbox recover --escrow-key KEYFILE` and the escrow key head office opens", .0.display())]
    DeviceJsonDamaged(PathBuf),
    #[error("no manager PIN is set: run `sealbox pin set`")]
    PinNotSet,
    #[error("wrong PIN")]
    PinWrong,
    #[error("too many wrong PINs: try again in {0} s")]
    PinLocked(u64),
    #[error("a PIN must be 6 to 12 digits and not a trivial sequence")]
    PinWeak,
    #[error("this event has no staff codes on this device: head office issues them (`sealbox-headoffice event staff-code EVENT`), and the device learns them with its next sync or receipt")]
    NoStaffCodes,
    #[error("wrong staff code")]
    StaffCodeWrong,
    #[error("staff code {0} has been revoked by head office: sign in with another staff code")]
    StaffCodeRevoked(String),
    #[error("{0}; the staff codes on this device were not changed")]
    StaffCodes(sealbox_protocol::staff::StaffCodesError),
    #[error("too many wrong staff codes: try again in {0} s")]
    StaffCodeLocked(u64),
    #[error("the badge scan could not be read; nothing was filled in")]
    ScanUnreadable,
    #[error("sealing failed: {0}")]
    Seal(String),
    #[error("head office cannot be reached ({0}); the entries stay on this device and will be sent later")]
    Offline(String),
    #[error("refused to connect: the server's certificate is not head office's, or is for another name, or expired ({0}); nothing was sent or erased")]
    TlsRefused(String),
    #[error(
        "head office refused the request: {message} (HTTP {status}, {code}); nothing was erased"
    )]
    Server {
        status: u16,
        code: String,
        message: String,
        /// Entries head office refused on their own (with its reason code for each).
        refused: Vec<sealbox_protocol::sync::RefusedEntry>,
        /// How long head office asked to wait (429's Retry-After), in seconds.
        retry_after_s: Option<u64>,
    },
    #[error("another sync is running on this device (the app's or another `sealbox sync`); nothing was changed: try again when it has finished")]
    SyncRunning,
    #[error("{0}; nothing was erased")]
    BadReceipt(sealbox_protocol::sync::ReceiptError),
    #[error("there is nothing to export: no entry is waiting on this device")]
    NothingToExport,
    #[error("{} already exists; nothing was written. Choose a new file name", .0.display())]
    OutputExists(PathBuf),
    #[error("the folder {} does not exist; nothing was written. Is the USB stick mounted?", .0.display())]
    NoSuchFolder(PathBuf),
    #[error("this receipt lists no entry this device holds or has erased: it is for another device's data or another enrolment; nothing was erased")]
    UnknownBatch,
    #[error("storage error: {0}")]
    Storage(rusqlite::Error),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DeviceError {
    /// The stable code the UI and scripts branch on.
    pub fn code(&self) -> &'static str {
        use DeviceError::*;
        match self {
            NotEnrolled => "not_enrolled",
            AlreadyEnrolled(_) => "already_enrolled",
            OrphanDatabase(_) => "orphan_database",
            KeyLost(_) => "key_lost",
            WrongKey => "wrong_key",
            Corrupt => "database_corrupt",
            DatabaseMissing(_) => "database_missing",
            KeychainUnavailable(_) => "keychain_unavailable",
            Invalid(_) | InvalidLine { .. } => "invalid_entry",
            Enrolment(_) => "bad_enrolment",
            EscrowMismatch => "escrow_mismatch",
            NotAnEscrowKey => "not_an_escrow_key",
            DeviceJsonDamaged(_) => "device_json_damaged",
            PinNotSet => "pin_not_set",
            PinWrong => "pin_wrong",
            PinLocked(_) => "pin_locked",
            PinWeak => "pin_weak",
            NoStaffCodes => "no_staff_codes",
            StaffCodeWrong => "staff_code_wrong",
            StaffCodeRevoked(_) => "staff_code_revoked",
            StaffCodes(e) => e.code(),
            StaffCodeLocked(_) => "staff_code_locked",
            ScanUnreadable => "scan_unreadable",
            Seal(_) => "seal_failed",
            Offline(_) => "offline",
            TlsRefused(_) => "tls_refused",
            Server { status: 401, .. } => "unauthorized",
            Server { status: 409, .. } => "conflict",
            Server { status: 429, .. } => "rate_limited",
            Server { status, .. } if *status >= 500 => "server_error",
            Server { .. } => "rejected",
            BadReceipt(_) => "bad_receipt",
            NothingToExport => "nothing_to_export",
            OutputExists(_) => "output_exists",
            NoSuchFolder(_) => "no_such_folder",
            UnknownBatch => "unknown_batch",
            SyncRunning => "sync_running",
            Storage(_) => "storage",
            Io { .. } => "io",
        }
    }

    /// The message in `lang`: as specific in Chinese as in English (the English one is the
    /// `Display` text). Never a visitor's value.
    pub fn message(&self, lang: Lang) -> String {
        if lang == Lang::En {
            return self.to_string();
        }
        use DeviceError::*;
        match self {
            NotEnrolled => "本数据目录尚未注册：请用总部提供的注册文件运行 `sealbox enroll 文件`".into(),
            AlreadyEnrolled(d) => format!("本数据目录已注册为设备 {d:?}，未做任何更改"),
            OrphanDatabase(p) => format!("{} 存在，但 device.json 不存在：注册曾中断或 device.json 丢失，未做任何更改。注册中断时，再次运行 `sealbox enroll 文件` 即可清理；若设备上有登记数据，请总部打开其 escrow.age，再运行 `sealbox recover --escrow-key 密钥文件`，它会重建 device.json", p.display()),
            KeyLost(p) => format!("钥匙串中找不到数据库密钥（密钥丢失）；数据库完好，未做任何更改。请总部用托管文件运行 `sealbox-headoffice escrow open {}` 打开托管密钥，然后运行 `sealbox recover --escrow-key 密钥文件`", p.display()),
            WrongKey => "钥匙串中的密钥不属于这个数据库，或数据库文件是从另一台设备复制来的（密钥不符），未做任何更改。请放回正确的文件，或用 `sealbox recover --escrow-key 密钥文件` 恢复正确的密钥".into(),
            Corrupt => "数据库文件已损坏或不是 Sealbox 数据库（已损坏），文件保持原样".into(),
            DatabaseMissing(p) => format!("数据库文件 {} 不存在，但 device.json 表明本设备已注册，未做任何更改", p.display()),
            KeychainUnavailable(d) => format!("系统钥匙串不可用（{d}），未做任何更改。在 Linux 上须运行并解锁 Secret Service（GNOME 钥匙串或 KWallet）"),
            Invalid(e) => e.message(Lang::Zh),
            InvalidLine { line, error } => format!("第 {line} 行：{}；未写入任何内容", error.message(Lang::Zh)),
            Enrolment(d) => format!("注册文件或本设备的注册信息无效或已损坏（{d}）"),
            EscrowMismatch => "托管密钥不属于本设备，未做任何更改".into(),
            NotAnEscrowKey => "这不是 `sealbox-headoffice escrow open` 生成的托管密钥文件，未做任何更改".into(),
            DeviceJsonDamaged(p) => format!("{} 已损坏，未做任何更改。请从本数据目录的备份中恢复，或用总部打开的托管密钥运行 `sealbox recover --escrow-key 密钥文件` 重建它", p.display()),
            PinNotSet => "尚未设置管理员 PIN：请运行 `sealbox pin set`".into(),
            PinWrong => "PIN 不正确".into(),
            PinLocked(s) => format!("PIN 错误次数过多：请 {s} 秒后再试"),
            PinWeak => "PIN 须为 6 至 12 位数字，且不能是简单序列".into(),
            NoStaffCodes => "本设备上没有此活动的员工码：须由总部签发（`sealbox-headoffice event staff-code 活动`），设备在下一次同步或导入回执时得知".into(),
            StaffCodeWrong => "员工码不正确".into(),
            StaffCodeRevoked(id) => format!("员工码 {id} 已被总部吊销：请用另一个员工码登录"),
            StaffCodes(e) => format!("{}；本设备上的员工码未做更改", e.message(Lang::Zh)),
            StaffCodeLocked(s) => format!("员工码错误次数过多：请 {s} 秒后再试"),
            ScanUnreadable => "无法识别这次扫描的胸卡，未填写任何内容".into(),
            Seal(d) => format!("加密失败（{d}）"),
            Offline(d) => format!("无法连接总部（{d}）；登记数据保留在本设备上，稍后再发送"),
            TlsRefused(d) => format!("已拒绝连接：服务器证书不是总部的、名称不符或已过期（{d}）；未发送也未删除任何数据"),
            Server { status: 401, code, .. } => format!("总部拒绝了本设备（HTTP 401，{code}）：设备未注册或已被吊销；未删除任何数据"),
            Server { status: 429, code, .. } => format!("总部暂时限制了本设备的请求（HTTP 429，{code}），请稍后再试；未删除任何数据"),
            Server { status, code, .. } => format!("总部拒绝了请求（HTTP {status}，{code}）；未删除任何数据"),
            BadReceipt(r) => format!("{}；未删除任何数据", r.message(Lang::Zh)),
            NothingToExport => "没有可导出的内容：本设备上没有待发送的登记".into(),
            OutputExists(p) => format!("{} 已存在，未写入任何内容。请换一个文件名", p.display()),
            NoSuchFolder(p) => format!("文件夹 {} 不存在，未写入任何内容。U 盘是否已挂载？", p.display()),
            UnknownBatch => "此回执中没有本设备保存或已删除的登记（属于其他设备的数据或另一次注册），未删除任何数据".into(),
            SyncRunning => "本设备上另一个同步正在进行（应用的或另一个 `sealbox sync`），未做任何更改：请等它结束后再试".into(),
            Storage(e) => format!("数据库读写出错（{e}）"),
            Io { context, source } => format!("文件读写出错（{context}）：{}", io_kind_zh(source)),
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DeviceError {
        let context = context.into();
        move |source| DeviceError::Io { context, source }
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
        _ => format!("系统错误（{e}）"),
    }
}

impl From<rusqlite::Error> for DeviceError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                DeviceError::Corrupt
            }
            _ => DeviceError::Storage(e),
        }
    }
}

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox_protocol::entry::EntryErrorCode;
    use sealbox_protocol::sync::ReceiptError;

    /// Names every variant (no wildcard): a new variant does not compile until it is here, and
    /// then [`examples`] must show it.
    fn variant(e: &DeviceError) -> &'static str {
        use DeviceError::*;
        match e {
            NotEnrolled => "NotEnrolled",
            AlreadyEnrolled(_) => "AlreadyEnrolled",
            OrphanDatabase(_) => "OrphanDatabase",
            KeyLost(_) => "KeyLost",
            WrongKey => "WrongKey",
            Corrupt => "Corrupt",
            DatabaseMissing(_) => "DatabaseMissing",
            KeychainUnavailable(_) => "KeychainUnavailable",
            Invalid(_) => "Invalid",
            InvalidLine { .. } => "InvalidLine",
            Enrolment(_) => "Enrolment",
            EscrowMismatch => "EscrowMismatch",
            NotAnEscrowKey => "NotAnEscrowKey",
            DeviceJsonDamaged(_) => "DeviceJsonDamaged",
            PinNotSet => "PinNotSet",
            PinWrong => "PinWrong",
            PinLocked(_) => "PinLocked",
            PinWeak => "PinWeak",
            NoStaffCodes => "NoStaffCodes",
            StaffCodeWrong => "StaffCodeWrong",
            StaffCodeRevoked(_) => "StaffCodeRevoked",
            StaffCodes(_) => "StaffCodes",
            StaffCodeLocked(_) => "StaffCodeLocked",
            ScanUnreadable => "ScanUnreadable",
            Seal(_) => "Seal",
            Offline(_) => "Offline",
            TlsRefused(_) => "TlsRefused",
            Server { .. } => "Server",
            BadReceipt(_) => "BadReceipt",
            NothingToExport => "NothingToExport",
            OutputExists(_) => "OutputExists",
            NoSuchFolder(_) => "NoSuchFolder",
            UnknownBatch => "UnknownBatch",
            SyncRunning => "SyncRunning",
            Storage(_) => "Storage",
            Io { .. } => "Io",
        }
    }

    fn examples() -> Vec<DeviceError> {
        use DeviceError::*;
        let p = || PathBuf::from("/d/x");
        let server = |status: u16, code: &str| Server {
            status,
            code: code.into(),
            message: "refused".into(),
            refused: Vec::new(),
            retry_after_s: None,
        };
        let mut v = vec![
            NotEnrolled,
            AlreadyEnrolled("booth-1".into()),
            OrphanDatabase(p()),
            KeyLost(p()),
            WrongKey,
            Corrupt,
            DatabaseMissing(p()),
            KeychainUnavailable("no bus".into()),
            Invalid(EntryError {
                field: Some("phone".into()),
                code: EntryErrorCode::BadPhone,
            }),
            InvalidLine {
                line: 3,
                error: EntryError {
                    field: Some("name".into()),
                    code: EntryErrorCode::DirectionControl,
                },
            },
            Enrolment("the enrolment file is damaged".into()),
            EscrowMismatch,
            NotAnEscrowKey,
            DeviceJsonDamaged(p()),
            PinNotSet,
            PinWrong,
            PinLocked(30),
            PinWeak,
            NoStaffCodes,
            StaffCodeWrong,
            StaffCodeRevoked("s2".into()),
            StaffCodeLocked(30),
            ScanUnreadable,
            Seal("rng".into()),
            Offline("timed out".into()),
            TlsRefused("UnknownIssuer".into()),
            server(401, "unauthorized"),
            server(409, "conflict"),
            server(429, "rate_limited"),
            server(503, "busy"),
            server(400, "bad_request"),
            NothingToExport,
            OutputExists(p()),
            NoSuchFolder(p()),
            UnknownBatch,
            SyncRunning,
            Storage(rusqlite::Error::QueryReturnedNoRows),
            Io {
                context: "reading the entries".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
        ];
        for r in [
            ReceiptError::Format,
            ReceiptError::Digest,
            ReceiptError::Signature,
            ReceiptError::OtherDevice,
            ReceiptError::OtherBatch,
            ReceiptError::MissingIds(2),
        ] {
            v.push(BadReceipt(r));
        }
        use sealbox_protocol::staff::StaffCodesError;
        for e in [
            StaffCodesError::Format,
            StaffCodesError::Signature,
            StaffCodesError::OtherEvent,
            StaffCodesError::Stale { held: 3, got: 2 },
            StaffCodesError::Invalid,
        ] {
            v.push(StaffCodes(e));
        }
        v
    }

    fn han(s: &str) -> usize {
        s.chars()
            .filter(|c| ('\u{4E00}'..='\u{9FFF}').contains(c))
            .count()
    }

    /// Every error code has a message in Chinese and in English, each as specific as the other:
    /// errors the English tells apart are told apart in Chinese, and the Chinese is not English.
    #[test]
    fn every_error_has_a_specific_message_in_both_languages() {
        let all = examples();
        let mut seen = std::collections::BTreeSet::new();
        for e in &all {
            seen.insert(variant(e));
            let (zh, en) = (e.message(Lang::Zh), e.message(Lang::En));
            assert_eq!(en, e.to_string());
            assert!(han(&en) == 0 && en.len() > 8, "{}: {en}", e.code());
            assert!(han(&zh) >= 2, "{} has no Chinese message: {zh}", e.code());
            // Technical details (system and library text) stand in full-width parentheses;
            // the sentence around them is Chinese.
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
        let variants = [
            "NotEnrolled",
            "AlreadyEnrolled",
            "OrphanDatabase",
            "KeyLost",
            "WrongKey",
            "Corrupt",
            "DatabaseMissing",
            "KeychainUnavailable",
            "Invalid",
            "InvalidLine",
            "Enrolment",
            "EscrowMismatch",
            "NotAnEscrowKey",
            "DeviceJsonDamaged",
            "PinNotSet",
            "PinWrong",
            "PinLocked",
            "PinWeak",
            "NoStaffCodes",
            "StaffCodeWrong",
            "StaffCodeRevoked",
            "StaffCodes",
            "StaffCodeLocked",
            "ScanUnreadable",
            "Seal",
            "Offline",
            "TlsRefused",
            "Server",
            "BadReceipt",
            "NothingToExport",
            "OutputExists",
            "NoSuchFolder",
            "UnknownBatch",
            "SyncRunning",
            "Storage",
            "Io",
        ];
        assert_eq!(seen.len(), variants.len(), "an example for every variant");
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a.message(Lang::En) != b.message(Lang::En) {
                    assert_ne!(
                        a.message(Lang::Zh),
                        b.message(Lang::Zh),
                        "{} and {} collapse into one Chinese message",
                        a.code(),
                        b.code()
                    );
                }
            }
        }
    }
}
