//! The kiosk's Tauri commands: arguments in, one call into `sealbox-device`, a serializable
//! result or a [`UiError`] with a stable code out. Blocking work (Argon2, fsync) runs off the
//! main thread (`async`).

use crate::Shared;
use sealbox_device::device::ListedEntry;
use sealbox_device::kiosk::{AuditView, KioskState, Overview, StatusLine, UiError};
use sealbox_device::pin::Pin;
use tauri::{Runtime, State, Window};

#[tauri::command(async)]
pub fn kiosk_state(shared: State<'_, Shared>) -> KioskState {
    shared.kiosk().state()
}

/// First run: the enrolment file's text (read by the page from the chosen file) and the new PIN.
#[tauri::command(async)]
pub fn enroll_device(
    shared: State<'_, Shared>,
    enrolment: String,
    pin: String,
) -> Result<KioskState, UiError> {
    let enrolment = zeroize::Zeroizing::new(enrolment);
    shared.kiosk().enroll(&enrolment, &Pin::new(pin))
}

/// The visitor's submit, or a promoter's (`promoter: true`, only while promoter mode is open);
/// resolves only after the entry is durably stored.
#[tauri::command(async)]
pub fn submit_entry(
    shared: State<'_, Shared>,
    values: serde_json::Value,
    promoter: Option<bool>,
) -> Result<String, UiError> {
    if promoter == Some(true) {
        shared.kiosk().submit_as_promoter(&values)
    } else {
        shared.kiosk().submit(&values)
    }
}

/// A badge scan's text, read into field values. The text lives only in this call's memory
/// (zeroized after) and is never logged.
#[tauri::command(async)]
pub fn read_scan(
    shared: State<'_, Shared>,
    text: String,
) -> Result<sealbox_device::scan::ScanValues, UiError> {
    let text = zeroize::Zeroizing::new(text);
    shared.kiosk().read_scan(&text)
}

/// Promoter mode: a staff code in, the code's id out.
#[tauri::command(async)]
pub fn promoter_sign_in(shared: State<'_, Shared>, code: String) -> Result<String, UiError> {
    shared.kiosk().promoter_sign_in(&Pin::new(code))
}

#[tauri::command(async)]
pub fn promoter_sign_out(shared: State<'_, Shared>) {
    shared.kiosk().promoter_sign_out()
}

/// Whether promoter mode is still open (the page asks every second; the library's clock
/// decides).
#[tauri::command(async)]
pub fn promoter_alive(shared: State<'_, Shared>) -> bool {
    shared.kiosk().promoter_alive()
}

/// Activity in promoter mode (keystrokes), so its inactivity lock counts from the last one.
#[tauri::command(async)]
pub fn promoter_touch(shared: State<'_, Shared>) -> bool {
    let mut k = shared.kiosk();
    k.touch_promoter();
    k.promoter_code().is_some()
}

#[tauri::command(async)]
pub fn status_line(shared: State<'_, Shared>) -> Result<StatusLine, UiError> {
    shared.kiosk().status_line()
}

#[tauri::command(async)]
pub fn unlock(shared: State<'_, Shared>, pin: String) -> Result<(), UiError> {
    shared.kiosk().unlock(&Pin::new(pin))
}

#[tauri::command(async)]
pub fn lock(shared: State<'_, Shared>) {
    shared.kiosk().lock()
}

/// Whether the manager screens are still unlocked (the page asks every few seconds).
#[tauri::command(async)]
pub fn manager_alive(shared: State<'_, Shared>) -> bool {
    shared.kiosk().manager_alive()
}

/// Activity on the manager screens: the two minutes start again.
#[tauri::command(async)]
pub fn manager_touch(shared: State<'_, Shared>) -> Result<(), UiError> {
    shared.kiosk().manager_touch()
}

#[tauri::command(async)]
pub fn manager_overview(
    shared: State<'_, Shared>,
    tz_offset_min: i32,
) -> Result<Overview, UiError> {
    shared.kiosk().overview(tz_offset_min)
}

#[tauri::command(async)]
pub fn manager_entries(shared: State<'_, Shared>) -> Result<Vec<ListedEntry>, UiError> {
    shared.kiosk().entries(500)
}

#[tauri::command(async)]
pub fn manager_audit(shared: State<'_, Shared>) -> Result<AuditView, UiError> {
    shared.kiosk().audit(100)
}

/// The manager's "sync now".
#[tauri::command(async)]
pub fn sync_now(
    shared: State<'_, Shared>,
) -> Result<sealbox_device::sync_loop::SyncState, UiError> {
    shared.kiosk().sync_now()
}

/// The manager's "export batch".
#[tauri::command(async)]
pub fn export_batch(
    shared: State<'_, Shared>,
) -> Result<sealbox_device::batch::ExportReport, UiError> {
    shared.kiosk().export_batch()
}

/// The manager's "import receipt": the receipt file's text, read by the page.
#[tauri::command(async)]
pub fn import_receipt(
    shared: State<'_, Shared>,
    receipt: String,
) -> Result<sealbox_device::batch::ReceiptReport, UiError> {
    shared.kiosk().import_receipt(&receipt)
}

/// Closes the window, if the manager PIN allows it.
#[tauri::command(async)]
pub fn request_close<R: Runtime>(
    shared: State<'_, Shared>,
    window: Window<R>,
    pin: String,
) -> Result<(), UiError> {
    shared.kiosk().allow_close(&Pin::new(pin))?;
    window.close().map_err(|e| UiError {
        code: "window".into(),
        field: None,
        zh: "无法关闭窗口".into(),
        en: format!("the window could not close: {e}"),
    })
}

/// The page reports that the form (or first-run screen) is on screen: laid out, its fonts
/// loaded and a frame painted. The first report prints the time since start, which
/// `cargo xtask bench` reads, and lets the background sync start.
#[tauri::command]
pub fn form_ready(shared: State<'_, Shared>) {
    let mut reported = shared
        .ready_reported
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !*reported {
        *reported = true;
        eprintln!(
            "sealbox-kiosk: form ready after {} ms",
            shared.started.elapsed().as_millis()
        );
        shared.ready_signal.notify_all();
    }
}
