//! Every string of the console's pages, in Simplified Chinese and English. `{name}` marks a
//! value the page fills in (counts, times, device and event names).

use sealbox_protocol::Lang;

/// (key, Chinese, English).
const TEXTS: &[(&str, &str, &str)] = &[
    ("app_name", "Sealbox 总部控制台", "Sealbox head office console"),
    ("nav_overview", "概览", "Overview"),
    ("nav_devices", "设备", "Devices"),
    ("nav_events", "活动", "Events"),
    ("nav_exports", "导出", "Exports"),
    ("nav_forget", "删除请求", "Deletion requests"),
    ("nav_audit", "审计日志", "Audit log"),
    ("viewer", "查看者", "viewer"),
    ("operator", "操作员", "operator"),
    ("approver", "审批人", "approver"),
    ("sign_in", "登录", "Sign in"),
    ("sign_out", "退出", "Sign out"),
    ("admin_name", "管理员名", "Admin name"),
    ("password", "密码", "Password"),
    ("bad_sign_in", "管理员名或密码不正确", "Wrong admin name or password"),
    ("too_many_attempts", "登录失败次数过多：请 15 分钟后再试", "Too many failed sign-ins: try again in 15 minutes"),
    ("csrf_refused", "请求被拒绝：表单缺少有效的安全令牌。请重新打开页面再试。", "Request refused: the form did not carry a valid security token. Open the page again and retry."),
    ("forbidden_title", "无权操作", "Not allowed"),
    ("forbidden", "您的角色不能执行此操作。", "Your role does not allow this."),
    ("back", "返回", "Back"),
    ("cancel", "取消", "Cancel"),
    ("continue", "继续", "Continue"),
    ("internal", "出现内部错误，未做任何更改", "An internal error occurred; nothing was changed"),
    ("unit_s", "秒", "s"),
    ("unit_min", "分钟", "min"),
    ("unit_h", "小时", "h"),
    ("unit_d", "天", "days"),
    ("alerts", "提醒", "Alerts"),
    ("no_alerts", "没有需要处理的提醒。", "Nothing needs attention."),
    ("alert_silent", "设备 {device} 有 {n} 条登记等待发送，已 {age} 没有消息", "Device {device} has {n} entries waiting and has been silent for {age}"),
    ("alert_waited", "设备 {device} 的登记已等待 {age}，超过活动设定的 {days} 天", "Device {device} has an entry waiting for {age}, past the event's {days} days"),
    ("alert_device_quarantine", "设备 {device} 上有 {n} 条被总部拒收而隔离的登记", "Device {device} holds {n} entries head office refused (quarantined)"),
    ("alert_ho_quarantine", "活动 {event} 在总部有 {n} 条隔离的登记", "Event {event} has {n} quarantined entries at head office"),
    ("entries_received", "已收到登记", "Entries received"),
    ("devices_reporting", "正在报告的设备", "Devices reporting"),
    ("quarantined", "隔离", "Quarantined"),
    ("deleted", "已删除", "Deleted"),
    ("per_hour", "每小时登记数（按采集时间）", "Registrations per hour (by capture time)"),
    ("no_entries_yet", "还没有收到登记。", "No entries received yet."),
    ("device", "设备", "Device"),
    ("event", "活动", "Event"),
    ("last_seen", "最近联系", "Last seen"),
    ("waiting", "待发送", "Waiting"),
    ("in_batch_files", "批次文件中", "In batch files"),
    ("oldest_waiting", "最早待发送", "Oldest waiting"),
    ("received", "总部已收", "Received"),
    ("app_version", "版本", "App version"),
    ("last_error", "最近错误", "Last error"),
    ("state", "状态", "State"),
    ("never", "从未", "never"),
    ("revoked", "已吊销", "revoked"),
    ("active", "使用中", "active"),
    ("revoke", "吊销", "Revoke"),
    ("revoke_confirm", "确定吊销设备 {device}？吊销后它的同步会被拒绝，且无法撤销。", "Revoke device {device}? Its syncs will be refused from now on; this cannot be undone."),
    ("revoked_notice", "设备 {device} 已吊销", "Device {device} revoked"),
    ("enrol_device", "登记新设备", "Enrol a device"),
    ("device_name", "设备名（字母、数字、-、_、.）", "Device name (letters, digits, -, _, .)"),
    ("enrol", "生成登记文件", "Make the enrolment file"),
    ("enrol_hint", "登记文件只能下载一次，10 分钟内有效。", "The enrolment file downloads once, within 10 minutes."),
    ("enrolled", "设备 {device} 已登记", "Device {device} enrolled"),
    ("enrolment_secret", "登记文件是机密：其中有设备的令牌和签名密钥。请直接带到设备上运行 `sealbox enroll 文件 --shred`，不要用邮件或聊天工具发送。", "The enrolment file is SECRET: it holds the device's token and signing key. Carry it to the device and run `sealbox enroll FILE --shred`; never send it by mail or chat."),
    ("download_once", "下载（仅一次）", "Download (once)"),
    ("download_gone", "此下载已取过或已过期。", "This download was already taken or has expired."),
    ("event_id", "编号", "Id"),
    ("fields", "字段数", "Fields"),
    ("retention", "保存期限", "Retention"),
    ("preview", "预览", "Preview"),
    ("preview_hint", "自助机上显示的表单和同意文本：", "The form and consent text as the kiosk shows them:"),
    ("consent_version", "同意文本版本", "Consent version"),
    ("create_event", "新建活动", "Create an event"),
    ("event_file", "活动配置文件（JSON）", "Event config file (JSON)"),
    ("event_json", "或粘贴 JSON", "or paste the JSON"),
    ("create", "创建", "Create"),
    ("event_created", "活动 {event} 已就绪", "Event {event} ready"),
    ("masked_export", "打码导出", "Masked export"),
    ("masked_hint", "按每个字段的显示规则打码。需要输入总部口令，口令只在内存中使用，不会保存。", "Values masked by each field's display rule. Head office's passphrase is typed each time, used in memory and never stored."),
    ("format", "格式", "Format"),
    ("passphrase", "总部口令", "Head office passphrase"),
    ("download", "下载", "Download"),
    ("unmasked_request", "申请不打码导出", "Ask for an unmasked export"),
    ("unmasked_hint", "不打码导出需要另一位审批人在 24 小时内批准；批准后申请人可下载一次。", "An unmasked export needs another admin with the approver role to approve it within 24 hours; the requester then downloads it once."),
    ("reason", "理由", "Reason"),
    ("reason_needed", "请写明理由", "Give a reason"),
    ("ask_approval", "提交审批", "Ask for approval"),
    ("requests", "导出申请", "Export requests"),
    ("requested_at", "申请时间", "Requested at"),
    ("requested_by", "申请人", "Requested by"),
    ("requested", "已提交，等待另一位审批人批准", "Requested: waiting for another admin's approval"),
    ("waiting_approval", "等待审批", "waiting for approval"),
    ("approved", "已批准", "approved"),
    ("refused", "已拒绝", "refused"),
    ("expired", "已过期", "expired"),
    ("downloaded", "已下载", "downloaded"),
    ("approve", "批准", "Approve"),
    ("refuse", "拒绝", "Refuse"),
    ("not_your_own", "不能审批自己的申请", "You cannot approve your own request"),
    ("already_decided", "此申请已有决定", "This request was already decided"),
    ("no_such_request", "没有这个申请", "No such request"),
    ("no_download", "此导出不能下载：未获批准、已下载、已过期，或不是您的申请。", "This export cannot be downloaded: not approved, already downloaded, expired, or not your request."),
    ("forget_hint", "输入访客的手机号或电子邮箱。页面不会再显示您输入的内容。", "Enter the visitor's phone or email. The page will not show what you typed again."),
    ("phone_or_email", "手机号或电子邮箱", "Phone or email"),
    ("all_events", "全部活动", "all events"),
    ("a_phone", "这个手机号", "this phone number"),
    ("an_email", "这个电子邮箱", "this email address"),
    ("forget_confirm", "将删除 {scope} 中与{kind}匹配的 {n} 条登记，且无法恢复。请再次输入总部口令确认。", "{n} entries in {scope} match {kind} and will be deleted, for good. Type head office's passphrase again to confirm."),
    ("delete", "删除", "Delete"),
    ("forget_again", "请重新输入要删除的手机号或电子邮箱", "Enter the phone or email to delete again"),
    ("forgotten", "已删除 {n} 条登记；此请求以加盐哈希记入审计日志", "Deleted {n} entries; the request is in the audit log as a salted hash"),
    ("chain_ok", "审计链完好：共 {n} 行", "Audit chain intact: {n} rows"),
    ("chain_broken", "审计链在第 {seq} 行断开：有记录被修改、删除或调换了顺序", "Audit chain broken at row {seq}: a row was edited, removed or reordered"),
    ("time", "时间", "Time"),
    ("action", "操作", "Action"),
    ("detail", "详情", "Detail"),
];

/// The text of `key` in `lang` (the key itself if there is none; a unit test keeps that from
/// happening).
pub fn t(lang: Lang, key: &str) -> &str {
    match TEXTS.iter().find(|(k, _, _)| *k == key) {
        Some((_, zh, en)) => match lang {
            Lang::Zh => zh,
            Lang::En => en,
        },
        None => key,
    }
}

/// Whether `key` has a text.
pub fn has(key: &str) -> bool {
    TEXTS.iter().any(|(k, _, _)| *k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_exists_in_both_languages_and_once() {
        let mut seen = std::collections::HashSet::new();
        for (k, zh, en) in TEXTS {
            assert!(seen.insert(k), "{k} twice");
            assert!(!zh.is_empty() && !en.is_empty(), "{k}");
            assert_ne!(zh, en, "{k}: not translated");
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{k}: no Chinese in {zh:?}"
            );
            // The same placeholders on both sides.
            let marks = |s: &str| {
                let mut m: Vec<String> = s
                    .split('{')
                    .skip(1)
                    .filter_map(|p| p.split_once('}').map(|(a, _)| a.to_string()))
                    .collect();
                m.sort();
                m
            };
            assert_eq!(marks(zh), marks(en), "{k}");
        }
    }
}
