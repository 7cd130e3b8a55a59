//! The kiosk app's whole behaviour, without a window: which screen to show, the visitor's
//! submit, the manager's PIN session with its inactivity lock, and what the manager screens show.
//! The Tauri shell maps each command to one method here.

use crate::device::{Counts, Device, ListedEntry};
use crate::error::DeviceError;
use crate::keychain::KeyStore;
use crate::pin::Pin;
use crate::sync_loop::{LoopOptions, SyncLoop, SyncState};
use sealbox_protocol::entry::EntryErrorCode;
use sealbox_protocol::{EventConfig, Lang};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an unlocked manager screen stays unlocked without activity. The library is the one
/// clock of this lock: the page asks [`Kiosk::manager_alive`] every second and reports activity
/// through [`Kiosk::manager_touch`], so a page whose timers stall cannot keep the screens open.
pub const MANAGER_IDLE: Duration = Duration::from_secs(120);
/// How long promoter mode stays open without activity (like the manager screens).
pub const PROMOTER_IDLE: Duration = MANAGER_IDLE;

/// The monotonic clock of the manager's session. Debug builds only: a test moves it forward by
/// the milliseconds written in the file `SEALBOX_TEST_CLOCK_SKEW_FILE` names, so the
/// two-minute lock is tested in the real window without waiting two minutes.
fn session_now() -> Instant {
    let now = Instant::now();
    #[cfg(debug_assertions)]
    if let Some(file) = std::env::var_os("SEALBOX_TEST_CLOCK_SKEW_FILE") {
        if let Some(ms) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            return now + Duration::from_millis(ms);
        }
    }
    now
}

/// An error as the UI sees it: a stable code to branch on, the message in both languages, and
/// the field it belongs to. Never a value.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UiError {
    pub code: String,
    pub field: Option<String>,
    pub zh: String,
    pub en: String,
}

impl From<DeviceError> for UiError {
    fn from(e: DeviceError) -> Self {
        match &e {
            DeviceError::Invalid(err) | DeviceError::InvalidLine { error: err, .. } => UiError {
                code: format!("invalid_entry.{}", code_name(err.code)),
                field: err.field.clone(),
                zh: err.hint(Lang::Zh).to_string(),
                en: err.hint(Lang::En).to_string(),
            },
            _ => UiError {
                code: e.code().to_string(),
                field: None,
                zh: e.message(Lang::Zh),
                en: e.to_string(),
            },
        }
    }
}

fn code_name(c: EntryErrorCode) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A device error in Simplified Chinese (the `Display` text is the English one), with the
/// field or line it concerns.
pub fn zh_message(e: &DeviceError) -> String {
    e.message(Lang::Zh)
}

fn promoter_locked() -> UiError {
    UiError {
        code: "promoter_locked".into(),
        field: None,
        zh: "推广模式已锁定，请重新输入员工码".into(),
        en: "promoter mode is locked: enter a staff code again".into(),
    }
}

fn locked() -> UiError {
    UiError {
        code: "locked".into(),
        field: None,
        zh: "管理界面已锁定，请输入 PIN".into(),
        en: "the manager screens are locked: enter the PIN".into(),
    }
}

/// Which screen the app shows.
#[derive(Debug, Clone, Serialize)]
pub struct KioskState {
    /// `form`, `enroll`, or a fault: `key_lost`, `wrong_key`, `database_corrupt`,
    /// `keychain_unavailable`, `database_missing`, `orphan_database`, `error`.
    pub screen: String,
    /// The event config (what the form is rendered from), when the device is ready.
    pub event: Option<EventConfig>,
    pub device: Option<String>,
    /// What happened and what to do, for fault screens.
    pub problem: Option<UiError>,
}

/// The status line: a number and the connection, never a name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusLine {
    pub pending: u64,
    pub sync: SyncState,
}

/// The manager's overview.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub event: String,
    pub device: String,
    pub counts: Counts,
    /// Some entry has waited longer than the event's `warn_waiting_days`.
    pub waiting_too_long: bool,
    pub warn_waiting_days: u32,
    /// Registrations per hour over the last 24 hours, oldest first: `[hour start (ms), count]`.
    pub per_hour: Vec<(i64, u64)>,
}

/// The audit tab.
#[derive(Debug, Clone, Serialize)]
pub struct AuditView {
    pub ok: bool,
    pub rows: u64,
    pub broken_at: Option<i64>,
    pub recent: Vec<crate::audit::AuditRow>,
}

/// One kiosk: its data directory, key store, the open device and the manager session.
pub struct Kiosk {
    dir: PathBuf,
    keys: Arc<dyn KeyStore>,
    device: Option<Device>,
    unlocked_at: Option<Instant>,
    close_allowed: bool,
    /// Promoter mode: the signed-in staff code's id and the last activity.
    promoter: Option<(String, Instant)>,
    sync: Option<SyncLoop>,
    sync_options: Option<LoopOptions>,
    /// Set by [`Kiosk::hold_sync`]: the device may open, the sync loop waits.
    sync_held: bool,
}

impl Kiosk {
    /// A kiosk that starts the background sync loop once its device opens.
    pub fn new(dir: impl Into<PathBuf>, keys: Arc<dyn KeyStore>) -> Kiosk {
        Kiosk {
            dir: dir.into(),
            keys,
            device: None,
            unlocked_at: None,
            close_allowed: false,
            promoter: None,
            sync: None,
            sync_options: Some(LoopOptions::default()),
            sync_held: false,
        }
    }

    /// A kiosk without the background sync (tests of the screens alone).
    pub fn without_sync(dir: impl Into<PathBuf>, keys: Arc<dyn KeyStore>) -> Kiosk {
        Kiosk {
            sync_options: None,
            ..Kiosk::new(dir, keys)
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn device(&mut self) -> Result<&mut Device, DeviceError> {
        if self.device.is_none() {
            self.device = Some(Device::open(&self.dir, self.keys.as_ref())?);
            self.start_sync_if_open();
        }
        self.device.as_mut().ok_or(DeviceError::NotEnrolled)
    }

    fn start_sync_if_open(&mut self) {
        if self.sync.is_none() && !self.sync_held && self.device.is_some() {
            if let Some(opts) = self.sync_options.clone() {
                self.sync = Some(SyncLoop::start(self.dir.clone(), self.keys.clone(), opts));
            }
        }
    }

    /// Holds the background sync back until [`Kiosk::release_sync`]: the app opens the device
    /// while its window starts, and lets the loop (which opens the device a second time and
    /// connects to head office) start only once the form is on screen, so that it takes none
    /// of the start's CPU.
    pub fn hold_sync(&mut self) {
        self.sync_held = true;
    }

    /// Lets the background sync start (at once if the device is open, else when it opens).
    pub fn release_sync(&mut self) {
        self.sync_held = false;
        self.start_sync_if_open();
    }

    /// Which screen to show; opens the device if it can.
    pub fn state(&mut self) -> KioskState {
        match self.device() {
            Ok(dev) => KioskState {
                screen: "form".into(),
                // The page never sees the staff codes' verifiers (they stay in the library).
                event: Some(EventConfig {
                    staff_codes: Vec::new(),
                    ..dev.config().clone()
                }),
                device: Some(dev.device_name().to_string()),
                problem: None,
            },
            Err(e) => {
                let screen = match &e {
                    DeviceError::NotEnrolled => "enroll",
                    DeviceError::KeyLost(_)
                    | DeviceError::WrongKey
                    | DeviceError::Corrupt
                    | DeviceError::KeychainUnavailable(_)
                    | DeviceError::DatabaseMissing(_)
                    | DeviceError::OrphanDatabase(_) => e.code(),
                    _ => "error",
                };
                KioskState {
                    screen: screen.into(),
                    event: None,
                    device: None,
                    problem: Some(e.into()),
                }
            }
        }
    }

    /// First run: enrol from the enrolment file's text and set the manager PIN.
    pub fn enroll(&mut self, enrolment_json: &str, pin: &Pin) -> Result<KioskState, UiError> {
        crate::pin::check_strength(pin)?;
        Device::enroll(&self.dir, enrolment_json, self.keys.as_ref())?;
        self.device()?.set_pin(None, pin)?;
        Ok(self.state())
    }

    /// The visitor's submit: returns once the entry is durably stored. Staff-only fields are
    /// refused.
    pub fn submit(&mut self, values: &serde_json::Value) -> Result<String, UiError> {
        Ok(self.device()?.add_captured(values, None)?.to_string())
    }

    /// A promoter's submit: every field, and the staff code's id sealed with the entry. Refused
    /// once promoter mode has locked.
    pub fn submit_as_promoter(&mut self, values: &serde_json::Value) -> Result<String, UiError> {
        let code = self.promoter_code().ok_or_else(promoter_locked)?;
        let id = match self.device()?.add_captured(values, Some(&code)) {
            Ok(id) => id,
            Err(e) => {
                // A code head office revoked (learnt with a receipt) closes promoter mode.
                if matches!(e, DeviceError::StaffCodeRevoked(_)) {
                    self.promoter = None;
                }
                return Err(e.into());
            }
        };
        self.touch_promoter();
        Ok(id.to_string())
    }

    /// Whether promoter mode is still open, without counting as activity: the library's session
    /// clock decides (the page asks every second and leaves promoter mode when this says no).
    /// Past its idle time, or once head office has revoked the code, it is closed here.
    pub fn promoter_alive(&mut self) -> bool {
        let Some(id) = self.promoter_code() else {
            return false;
        };
        let current = self
            .device()
            .and_then(|d| d.staff_code_current(&id))
            .unwrap_or(false);
        if !current {
            self.promoter = None;
        }
        current
    }

    /// Opens promoter mode with a staff code (rate-limited and audited in the device); returns
    /// the code's id, which is all the kiosk shows of who is signed in.
    pub fn promoter_sign_in(&mut self, code: &Pin) -> Result<String, UiError> {
        let id = self.device()?.verify_staff_code(code)?;
        self.promoter = Some((id.clone(), session_now()));
        Ok(id)
    }

    pub fn promoter_sign_out(&mut self) {
        self.promoter = None;
    }

    /// The signed-in staff code's id, while promoter mode is open.
    pub fn promoter_code(&mut self) -> Option<String> {
        self.promoter_code_at(session_now())
    }

    fn promoter_code_at(&mut self, now: Instant) -> Option<String> {
        match &self.promoter {
            Some((id, at)) if now.saturating_duration_since(*at) < PROMOTER_IDLE => {
                Some(id.clone())
            }
            _ => {
                self.promoter = None;
                None
            }
        }
    }

    /// Counts as activity in promoter mode (typing, a scan).
    pub fn touch_promoter(&mut self) {
        if self.promoter_code().is_some() {
            if let Some((_, at)) = self.promoter.as_mut() {
                *at = session_now();
            }
        }
    }

    /// Reads a badge scan into field values. The text is held only here, in memory.
    pub fn read_scan(&mut self, text: &str) -> Result<crate::scan::ScanValues, UiError> {
        let values = crate::scan::parse(self.device()?.config(), text)?;
        self.touch_promoter();
        Ok(values)
    }

    pub fn status_line(&mut self) -> Result<StatusLine, UiError> {
        let c = self.device()?.counts()?;
        Ok(StatusLine {
            pending: c.pending + c.exported,
            sync: self.sync.as_ref().map(|s| s.state()).unwrap_or_default(),
        })
    }

    /// Where "export batch" writes: `SEALBOX_EXPORT_DIR`, else `exports/` in the data directory
    /// (a USB stick mounted there, or copied from there).
    pub fn export_dir(&self) -> PathBuf {
        std::env::var_os("SEALBOX_EXPORT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.join("exports"))
    }

    /// The manager's "export batch": every entry still here into one encrypted, signed file.
    pub fn export_batch(&mut self) -> Result<crate::batch::ExportReport, UiError> {
        let dir = self.export_dir();
        let dev = self.manager()?;
        if std::env::var_os("SEALBOX_EXPORT_DIR").is_none() {
            // The app's own folder in the data directory; a configured one (a USB stick's
            // mount point) must already be there.
            std::fs::create_dir_all(&dir)
                .map_err(|e| DeviceError::io(format!("creating {}", dir.display()))(e))?;
        }
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]-[hour][minute][second]"
            ))
            .unwrap_or_default();
        let path = dir.join(format!(
            "sealbox-{}-{stamp}.sealbox-batch",
            dev.device_name()
        ));
        Ok(dev.export_batch(&path)?)
    }

    /// The manager's "import receipt": the receipt file's text, verified and applied.
    pub fn import_receipt(
        &mut self,
        receipt_json: &str,
    ) -> Result<crate::batch::ReceiptReport, UiError> {
        Ok(self.manager()?.import_receipt(receipt_json)?)
    }

    /// The manager's "sync now": wakes the background loop; progress shows in the status.
    pub fn sync_now(&mut self) -> Result<SyncState, UiError> {
        self.manager()?;
        let s = self.sync.as_ref().ok_or_else(|| UiError {
            code: "sync_off".into(),
            field: None,
            zh: "同步未启用".into(),
            en: "sync is not running".into(),
        })?;
        s.wake();
        Ok(s.state())
    }

    /// Unlocks the manager screens (rate-limited and audited in the device).
    /// The summary key stays in memory while the screens are unlocked.
    pub fn unlock(&mut self, pin: &Pin) -> Result<(), UiError> {
        self.device()?.unlock_summaries(pin, "unlock")?;
        self.unlocked_at = Some(session_now());
        Ok(())
    }

    pub fn lock(&mut self) {
        self.unlocked_at = None;
        if let Some(dev) = self.device.as_mut() {
            dev.lock_summaries();
        }
    }

    pub fn is_unlocked(&self) -> bool {
        self.unlocked_at
            .is_some_and(|t| session_now().saturating_duration_since(t) < MANAGER_IDLE)
    }

    /// Whether the manager screens are still unlocked, without counting as activity; a session
    /// past its idle time is locked here (the summary key leaves memory).
    pub fn manager_alive(&mut self) -> bool {
        if self.unlocked_at.is_some() && !self.is_unlocked() {
            self.lock();
        }
        self.is_unlocked()
    }

    /// The manager touched the screens (a tap, a key): the idle time starts again.
    pub fn manager_touch(&mut self) -> Result<(), UiError> {
        self.manager().map(|_| ())
    }

    /// Checks the session and counts this call as activity.
    fn manager(&mut self) -> Result<&mut Device, UiError> {
        if !self.is_unlocked() {
            self.lock();
            return Err(locked());
        }
        self.unlocked_at = Some(session_now());
        Ok(self.device()?)
    }

    pub fn overview(&mut self, tz_offset_min: i32) -> Result<Overview, UiError> {
        let dev = self.manager()?;
        let counts = dev.counts()?;
        let times = dev.capture_times_with_erased()?;
        let days = dev.config().kiosk.warn_waiting_days;
        Ok(Overview {
            event: dev.config().id.clone(),
            device: dev.device_name().to_string(),
            waiting_too_long: crate::device::waited_too_long(
                counts.oldest_waiting_ms,
                crate::now_ms(),
                days,
            ),
            warn_waiting_days: days,
            counts,
            per_hour: per_hour(&times, crate::now_ms(), tz_offset_min),
        })
    }

    pub fn entries(&mut self, limit: usize) -> Result<Vec<ListedEntry>, UiError> {
        Ok(self.manager()?.list_unlocked(limit)?)
    }

    pub fn audit(&mut self, limit: u32) -> Result<AuditView, UiError> {
        let dev = self.manager()?;
        let v = dev.audit_verify()?;
        Ok(AuditView {
            ok: v.ok(),
            rows: v.rows,
            broken_at: v.broken_at,
            recent: dev.audit_recent(limit)?,
        })
    }

    /// Allows the window to close: only with the manager PIN.
    pub fn allow_close(&mut self, pin: &Pin) -> Result<(), UiError> {
        self.device()?.verify_pin(pin, "close")?;
        self.close_allowed = true;
        Ok(())
    }

    /// Whether a close request may go through. An unenrolled or broken device has no PIN to
    /// ask for, and nothing to protect on screen, so it may close.
    pub fn close_allowed(&mut self) -> bool {
        self.close_allowed || self.device().is_err()
    }
}

/// Counts per hour for the 24 hours up to `now_ms`, in the viewer's time zone (offset in
/// minutes east of UTC), oldest first.
pub fn per_hour(times_ms: &[i64], now_ms: i64, tz_offset_min: i32) -> Vec<(i64, u64)> {
    const HOUR: i64 = 3_600_000;
    let off = tz_offset_min as i64 * 60_000;
    let current = (now_ms + off).div_euclid(HOUR) * HOUR - off;
    let first = current - 23 * HOUR;
    let mut buckets: Vec<(i64, u64)> = (0..24).map(|i| (first + i * HOUR, 0)).collect();
    for &t in times_ms {
        if t >= first && t < current + HOUR {
            let i = ((t - first) / HOUR) as usize;
            buckets[i].1 += 1;
        }
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keychain::memory::MemoryKeyStore;

    #[test]
    fn hours_are_bucketed_in_local_time() {
        let h = 3_600_000;
        let now = 100 * h + 30 * 60_000; // 100:30 UTC
        let b = per_hour(&[now, now - h, now - 2 * h + 1, now - 30 * h], now, 0);
        assert_eq!(b.len(), 24);
        assert_eq!(b[23], (100 * h, 1));
        assert_eq!(b[22].1, 1);
        assert_eq!(b[21].1, 1);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 3);
        // UTC+5:30: hours start at :30 UTC.
        let b = per_hour(&[now], now, 330);
        assert_eq!(b[23].0 % h, 30 * 60_000);
    }

    fn enrolled_kiosk() -> (tempfile::TempDir, Kiosk, Arc<MemoryKeyStore>) {
        let tmp = tempfile::tempdir().unwrap();
        let keys = Arc::new(MemoryKeyStore::default());
        let mut k = Kiosk::without_sync(tmp.path(), Arc::new(SharedKeys(keys.clone())));
        assert_eq!(k.state().screen, "enroll");
        assert!(
            k.close_allowed(),
            "an unenrolled kiosk has nothing to guard"
        );
        let st = k
            .enroll(&crate::device::tests::enrolment(), &Pin::new("246810"))
            .unwrap();
        assert_eq!(st.screen, "form");
        (tmp, k, keys)
    }

    /// Lets a test keep a handle on the store the kiosk owns.
    struct SharedKeys(Arc<MemoryKeyStore>);
    impl KeyStore for SharedKeys {
        fn get(
            &self,
            s: &str,
            a: &str,
        ) -> Result<Option<sealbox_protocol::Secret32>, crate::keychain::KeychainError> {
            self.0.get(s, a)
        }
        fn set(
            &self,
            s: &str,
            a: &str,
            k: &sealbox_protocol::Secret32,
        ) -> Result<(), crate::keychain::KeychainError> {
            self.0.set(s, a, k)
        }
        fn delete(&self, s: &str, a: &str) -> Result<(), crate::keychain::KeychainError> {
            self.0.delete(s, a)
        }
    }

    #[test]
    fn a_held_sync_starts_only_once_released() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = Arc::new(MemoryKeyStore::default());
        let mut k = Kiosk::new(tmp.path(), Arc::new(SharedKeys(keys)));
        k.hold_sync();
        k.enroll(&crate::device::tests::enrolment(), &Pin::new("246810"))
            .unwrap();
        assert_eq!(k.state().screen, "form");
        assert!(k.device.is_some());
        assert!(k.sync.is_none(), "held: the device opens, the loop waits");
        k.release_sync();
        assert!(k.sync.is_some(), "released: the loop starts");
    }

    #[test]
    fn closing_needs_the_pin_and_the_manager_screens_need_unlocking() {
        let (_tmp, mut k, _keys) = enrolled_kiosk();
        assert!(!k.close_allowed());
        assert_eq!(
            k.allow_close(&Pin::new("999999")).unwrap_err().code,
            "pin_wrong"
        );
        assert!(!k.close_allowed());
        assert_eq!(k.overview(0).unwrap_err().code, "locked");
        assert_eq!(k.entries(10).unwrap_err().code, "locked");
        k.submit(&serde_json::json!({"name": "Li", "phone": "13812345678", "consent": true}))
            .unwrap();
        assert_eq!(k.status_line().unwrap().pending, 1);
        k.unlock(&Pin::new("246810")).unwrap();
        assert_eq!(k.overview(0).unwrap().counts.pending, 1);
        assert_eq!(k.entries(10).unwrap()[0].summary["phone"], "138****5678");
        k.lock();
        assert_eq!(k.audit(5).unwrap_err().code, "locked");
        k.allow_close(&Pin::new("246810")).unwrap();
        assert!(k.close_allowed());
    }

    #[test]
    fn promoter_mode_needs_a_staff_code_and_records_its_id() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = Arc::new(MemoryKeyStore::default());
        let mut k = Kiosk::without_sync(tmp.path(), Arc::new(SharedKeys(keys)));
        let code = "s2-48291736";
        let mut enrolment: serde_json::Value =
            serde_json::from_str(&crate::device::tests::enrolment()).unwrap();
        enrolment["event"]["staff_codes"] = serde_json::json!([
            {"id": "s1", "verifier": crate::pin::hash(&Pin::new("s1-11112222")).unwrap()},
            {"id": "s2", "verifier": crate::pin::hash(&Pin::new(code)).unwrap()},
        ]);
        enrolment["event"]["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "key": "notes", "kind": "text", "audience": "staff", "display": "hidden",
                "label": {"zh": "备注", "en": "Notes"},
                "purpose": {"zh": "记录洽谈内容", "en": "What was discussed"}
            }));
        let st = k
            .enroll(&enrolment.to_string(), &Pin::new("246810"))
            .unwrap();
        let page = serde_json::to_string(&st.event).unwrap();
        assert!(
            page.contains("\"notes\"") && !page.contains("argon2"),
            "{page}"
        );
        let with_notes = serde_json::json!({"name": "Li", "phone": "13812345678", "notes": "demo", "consent": true});
        assert_eq!(
            k.submit(&with_notes).unwrap_err().code,
            "invalid_entry.staff_only"
        );
        assert_eq!(
            k.submit_as_promoter(&with_notes).unwrap_err().code,
            "promoter_locked"
        );
        for wrong in ["s2-48291737", "s9-48291736", "48291736"] {
            assert_eq!(
                k.promoter_sign_in(&Pin::new(wrong)).unwrap_err().code,
                "staff_code_wrong"
            );
        }
        // Three wrong codes: the next attempt must wait, even with the right code.
        assert_eq!(
            k.promoter_sign_in(&Pin::new(code)).unwrap_err().code,
            "staff_code_locked"
        );
        // The manager PIN has its own counter.
        k.unlock(&Pin::new("246810")).unwrap();
        k.lock();
        let dev = k.device().unwrap();
        dev.connection()
            .execute("DELETE FROM settings WHERE k = 'staff_code_attempts'", [])
            .unwrap();
        assert_eq!(
            k.promoter_sign_in(&Pin::new(" S2-48291736 ")).unwrap(),
            "s2"
        );
        k.submit_as_promoter(&with_notes).unwrap();
        // Two minutes without activity lock promoter mode, like the manager screens.
        let soon = Instant::now() + PROMOTER_IDLE - std::time::Duration::from_secs(5);
        assert_eq!(k.promoter_code_at(soon).as_deref(), Some("s2"));
        let later = Instant::now() + PROMOTER_IDLE + std::time::Duration::from_secs(1);
        assert_eq!(k.promoter_code_at(later), None);
        assert_eq!(
            k.submit_as_promoter(&with_notes).unwrap_err().code,
            "promoter_locked",
            "locked for good once found idle"
        );
        k.promoter_sign_in(&Pin::new(code)).unwrap();
        let audit = k.device().unwrap().audit_recent(20).unwrap();
        let kinds: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
        assert!(
            kinds.contains(&"staff_code.failed") && kinds.contains(&"staff_code.ok"),
            "{kinds:?}"
        );
        let ok = audit.iter().find(|r| r.action == "staff_code.ok").unwrap();
        assert_eq!(ok.detail["for"], "promoter s2");
        assert!(audit.iter().all(|r| !r.detail.to_string().contains("4829")));
        assert!(k.promoter_alive());
        // Head office revokes s2; its signed update arrives on another connection (the sync
        // loop's): the next submit is refused and promoter mode closes.
        let mut config = k.device().unwrap().config().clone();
        config.staff_codes.retain(|c| c.id == "s1");
        config.staff_codes_version = 1;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let update = sealbox_protocol::staff::StaffCodesUpdate::sign(&config, &key);
        let mut other = Device::open(tmp.path(), k.keys.as_ref()).unwrap();
        assert_eq!(other.apply_staff_codes(&update).unwrap(), 1);
        assert_eq!(
            k.submit_as_promoter(&with_notes).unwrap_err().code,
            "staff_code_revoked"
        );
        assert!(!k.promoter_alive());
        assert_eq!(
            k.promoter_sign_in(&Pin::new(code)).unwrap_err().code,
            "staff_code_wrong"
        );
        k.promoter_sign_in(&Pin::new("s1-11112222")).unwrap();
        assert!(k.promoter_alive());
        k.promoter_sign_out();
        assert_eq!(
            k.submit_as_promoter(&with_notes).unwrap_err().code,
            "promoter_locked"
        );
    }

    #[test]
    fn a_lost_key_gets_its_own_screen_never_an_empty_form() {
        let (tmp, _k, keys) = enrolled_kiosk();
        keys.map.lock().unwrap().clear();
        let mut fresh = Kiosk::without_sync(tmp.path(), Arc::new(SharedKeys(keys.clone())));
        let st = fresh.state();
        assert_eq!(st.screen, "key_lost");
        assert!(st.event.is_none());
        let p = st.problem.unwrap();
        assert_eq!(p.code, "key_lost");
        assert!(p.zh.contains("托管") && p.en.contains("recover"));
        assert_eq!(
            fresh.submit(&serde_json::json!({})).unwrap_err().code,
            "key_lost"
        );
        keys.unavailable
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(fresh.state().screen, "keychain_unavailable");
    }

    #[test]
    fn entry_errors_keep_their_field_and_both_languages() {
        let e: UiError = DeviceError::Invalid(sealbox_protocol::entry::EntryError {
            field: Some("phone".into()),
            code: EntryErrorCode::BadPhone,
        })
        .into();
        assert_eq!(e.code, "invalid_entry.bad_phone");
        assert_eq!(e.field.as_deref(), Some("phone"));
        assert!(e.zh.contains("11 位"));
        let e: UiError = DeviceError::PinLocked(30).into();
        assert_eq!((e.code.as_str(), e.zh.contains("30")), ("pin_locked", true));
    }
}
