fn main() {
    // Only Sealbox's own commands are allowed, and only through the capability below.
    let attrs = tauri_build::Attributes::new()
        .capabilities_path_pattern("./src-tauri/capabilities/**/*")
        .app_manifest(tauri_build::AppManifest::new().commands(&[
            "kiosk_state",
            "enroll_device",
            "submit_entry",
            "read_scan",
            "promoter_sign_in",
            "promoter_sign_out",
            "promoter_touch",
            "promoter_alive",
            "status_line",
            "unlock",
            "lock",
            "manager_alive",
            "manager_touch",
            "manager_overview",
            "manager_entries",
            "manager_audit",
            "sync_now",
            "export_batch",
            "import_receipt",
            "request_close",
            "form_ready",
        ]));
    tauri_build::try_build(attrs).expect("tauri build script");
}
