//! Command tests on Tauri's mock runtime: no display, no webview.

use super::*;
use tauri::test::{get_ipc_response, mock_builder, INVOKE_KEY};
use tauri::webview::InvokeRequest;

/// The app on the mock runtime with its real context: the real capability file, so the ACL
/// is exercised too.
fn app(
    dir: &std::path::Path,
) -> (
    tauri::App<tauri::test::MockRuntime>,
    tauri::WebviewWindow<tauri::test::MockRuntime>,
) {
    let mut context = tauri::generate_context!();
    context.config_mut().app.windows.clear();
    let app = builder(
        mock_builder(),
        Shared::new(dir.to_path_buf(), Instant::now()),
    )
    .build(context)
    .unwrap();
    let w = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();
    (app, w)
}

fn invoke(
    w: &tauri::WebviewWindow<tauri::test::MockRuntime>,
    cmd: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, serde_json::Value> {
    get_ipc_response(
        w,
        InvokeRequest {
            cmd: cmd.into(),
            callback: tauri::ipc::CallbackFn(0),
            error: tauri::ipc::CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: tauri::ipc::InvokeBody::Json(body),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<serde_json::Value>().unwrap())
}

#[test]
fn unenrolled_device_shows_enrolment_and_refuses_entries_with_a_code() {
    let tmp = tempfile::tempdir().unwrap();
    let (_app, w) = app(tmp.path());
    let st = invoke(&w, "kiosk_state", serde_json::json!({})).unwrap();
    assert_eq!(st["screen"], "enroll");
    assert!(st["event"].is_null());
    let err = invoke(
        &w,
        "submit_entry",
        serde_json::json!({"values": {"name": "x"}}),
    )
    .unwrap_err();
    assert_eq!(err["code"], "not_enrolled");
    assert!(err["zh"].as_str().unwrap().contains("尚未注册"));
    let err = invoke(
        &w,
        "manager_overview",
        serde_json::json!({"tzOffsetMin": 0}),
    )
    .unwrap_err();
    assert_eq!(err["code"], "locked");
    let err = invoke(
        &w,
        "enroll_device",
        serde_json::json!({"enrolment": "{}", "pin": "12"}),
    )
    .unwrap_err();
    assert_eq!(err["code"], "pin_weak");
    let err = invoke(
        &w,
        "enroll_device",
        serde_json::json!({"enrolment": "{}", "pin": "246810"}),
    )
    .unwrap_err();
    assert_eq!(err["code"], "bad_enrolment");
    assert!(!tmp.path().join("device.json").exists());
}

#[test]
fn a_damaged_data_dir_gets_its_own_screen() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sealbox.db"), b"not a database").unwrap();
    let (_app, w) = app(tmp.path());
    let st = invoke(&w, "kiosk_state", serde_json::json!({})).unwrap();
    assert_eq!(st["screen"], "orphan_database");
    assert_eq!(st["problem"]["code"], "orphan_database");
}

#[test]
fn the_window_may_call_nothing_but_sealbox_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let (_app, w) = app(tmp.path());
    for cmd in [
        "plugin:window|close",
        "plugin:webview|print",
        "plugin:path|resolve_directory",
        "plugin:event|listen",
    ] {
        let err = invoke(&w, cmd, serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{cmd}: {err}");
    }
}

#[test]
fn only_app_urls_may_load() {
    assert!(is_app_url(&"tauri://localhost/index.html".parse().unwrap()));
    assert!(is_app_url(&"http://tauri.localhost/".parse().unwrap()));
    assert!(!is_app_url(&"https://example.com/".parse().unwrap()));
    assert!(!is_app_url(&"file:///etc/passwd".parse().unwrap()));
}
