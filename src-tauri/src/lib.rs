//! Sealbox's kiosk app: the Tauri shell around `sealbox-device`.
//!
//! Thin by design: [`commands`] map arguments to one call on [`sealbox_device::kiosk::Kiosk`]
//! and map the result back; every decision lives in the library, testable without a window.
//! This file wires the window: lockdown (no navigation away, close only with the manager PIN)
//! and the app state. [`builder`] is generic over the runtime so tests use
//! `tauri::test::mock_builder()`.

pub mod commands;

use sealbox_device::kiosk::Kiosk;
use sealbox_device::OsKeychain;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use tauri::{Manager, Runtime};

/// The app's state: one kiosk, behind a mutex (the database connection is not shared).
pub struct Shared {
    pub kiosk: Mutex<Kiosk>,
    pub started: Instant,
    pub ready_reported: Mutex<bool>,
    /// Signalled when the page first reports the form on screen.
    pub ready_signal: Condvar,
}

impl Shared {
    pub fn new(dir: PathBuf, started: Instant) -> Shared {
        Shared {
            kiosk: Mutex::new(Kiosk::new(dir, std::sync::Arc::new(OsKeychain))),
            started,
            ready_reported: Mutex::new(false),
            ready_signal: Condvar::new(),
        }
    }

    /// The kiosk, even if a panic poisoned the lock (the kiosk's state stays consistent: every
    /// write is one database transaction).
    pub fn kiosk(&self) -> std::sync::MutexGuard<'_, Kiosk> {
        self.kiosk.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Only the app's own pages may load: `tauri://localhost` or `http(s)://tauri.localhost`.
pub fn is_app_url(url: &tauri::Url) -> bool {
    url.scheme() == "tauri" || url.host_str() == Some("tauri.localhost")
}

/// The app's builder, for any runtime: commands, navigation lock and close guard.
pub fn builder<R: Runtime>(builder: tauri::Builder<R>, shared: Shared) -> tauri::Builder<R> {
    builder
        .manage(shared)
        .plugin(
            tauri::plugin::Builder::<R>::new("lockdown")
                .on_navigation(|_, url| is_app_url(url))
                .build(),
        )
        .invoke_handler(tauri::generate_handler![
            commands::kiosk_state,
            commands::enroll_device,
            commands::submit_entry,
            commands::read_scan,
            commands::promoter_sign_in,
            commands::promoter_sign_out,
            commands::promoter_touch,
            commands::promoter_alive,
            commands::status_line,
            commands::unlock,
            commands::lock,
            commands::manager_alive,
            commands::manager_touch,
            commands::manager_overview,
            commands::manager_entries,
            commands::manager_audit,
            commands::sync_now,
            commands::export_batch,
            commands::import_receipt,
            commands::request_close,
            commands::form_ready,
        ])
        .on_window_event(|window, event| {
            if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                let shared = window.state::<Shared>();
                if !shared.kiosk().close_allowed() {
                    api.prevent_close();
                }
            }
        })
}

/// Where the app keeps its data: `SEALBOX_DATA_DIR`, else the platform's app data directory.
fn data_dir<R: Runtime>(app: &tauri::AppHandle<R>) -> PathBuf {
    match std::env::var_os("SEALBOX_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        None => app
            .path()
            .app_data_dir()
            .unwrap_or_else(|_| PathBuf::from("sealbox-data"))
            .join("device"),
    }
}

/// The kiosk draws a still form: WebKit's accelerated compositing buys it nothing and, on a
/// machine without a GPU driver it likes, costs a software GL stack (llvmpipe) and a layer
/// backing store per element: about 80 MB more in the web process under Xvfb (measured by
/// `cargo xtask bench`). It is also the usual cure for WebKitGTK's blank windows on some GPU
/// drivers. Set before the page draws its first frame.
pub fn software_rendering(window: &tauri::WebviewWindow) {
    let result = window.with_webview(|webview| {
        #[cfg(target_os = "linux")]
        {
            use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
            if let Some(settings) = webview.inner().settings() {
                settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = webview;
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not set the webview's rendering mode");
    }
}

/// The window keeps nothing of a visitor on disk. Its web context is ephemeral
/// (`"incognito": true` in tauri.conf.json: cookies, local storage, IndexedDB and caches live in
/// memory only and go with the process); on top of that, local storage, the HTML5 database and
/// the back/forward page cache are off and WebKit keeps no disk cache (document-viewer cache
/// model). WebKitGTK saves no form data and restores no session by itself, and Tauri asks it for
/// neither.
pub fn private_webview(window: &tauri::WebviewWindow) {
    let result = window.with_webview(move |webview| {
        #[cfg(target_os = "linux")]
        {
            use webkit2gtk::{CacheModel, SettingsExt, WebContextExt, WebViewExt};
            let view = webview.inner();
            tracing::info!(ephemeral = view.is_ephemeral(), "webview storage");
            if let Some(settings) = view.settings() {
                settings.set_enable_html5_local_storage(false);
                settings.set_enable_html5_database(false);
                settings.set_enable_page_cache(false);
            }
            if let Some(context) = view.context() {
                context.set_cache_model(CacheModel::DocumentViewer);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = webview;
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not configure the webview's storage");
    }
}

/// How long the background sync waits for the form's first paint at most.
const SYNC_HOLD_MAX: Duration = Duration::from_secs(5);

/// Opens the device (keychain lookup over D-Bus, SQLCipher, the event config) on its own
/// thread while WebKit starts its processes and loads the page, so the page's first
/// `kiosk_state` finds it open instead of waiting for it. The thread holds the kiosk's lock
/// while it opens: a page that asks sooner waits for the same open, never a second one.
/// Then it lets the background sync start, once the page reports the form on screen (or after
/// [`SYNC_HOLD_MAX`]): the loop opens the device again and connects to head office, work that
/// would otherwise take the start's CPU on a two-core kiosk.
fn open_device_early<R: Runtime>(app: tauri::AppHandle<R>) {
    let handle = app.clone();
    let spawned = std::thread::Builder::new()
        .name("sealbox-open".into())
        .spawn(move || {
            let opening = Instant::now();
            let shared = handle.state::<Shared>();
            let screen = shared.kiosk().state().screen;
            tracing::debug!(
                screen,
                ms = opening.elapsed().as_secs_f64() * 1000.0,
                "device opened ahead of the page"
            );
            let reported = shared
                .ready_reported
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let waited = shared
                .ready_signal
                .wait_timeout_while(reported, SYNC_HOLD_MAX, |ready| !*ready);
            drop(waited);
            shared.kiosk().release_sync();
        });
    if let Err(e) = spawned {
        // The page's first `kiosk_state` opens the device instead, and the sync starts with it.
        tracing::warn!(error = %e, "could not open the device ahead of the page");
        app.state::<Shared>().kiosk().release_sync();
    }
}

/// Runs the kiosk app.
pub fn run() {
    // First of all, before WebKit starts its processes (they inherit the limit).
    let hardened = sealbox_device::process::forbid_core_dumps();
    let started = Instant::now();
    // Under WebDriver (tauri-driver sets this), see the window's creation below.
    let automation = std::env::var("TAURI_WEBVIEW_AUTOMATION").as_deref() == Ok("true");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEALBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = hardened {
        tracing::warn!(error = %e, "core dumps could not be turned off");
    }
    let context = tauri::generate_context!();
    // The data directory needs the app's paths, which exist only once the app is built: build
    // with a placeholder, then swap in the real kiosk in setup.
    let app = builder(
        tauri::Builder::default(),
        Shared::new(PathBuf::new(), started),
    )
    .setup(move |app| {
        let dir = data_dir(app.handle());
        let shared = app.state::<Shared>();
        let mut kiosk = Kiosk::new(dir, std::sync::Arc::new(OsKeychain));
        kiosk.hold_sync();
        *shared.kiosk() = kiosk;
        open_device_early(app.handle().clone());
        // The window is made here rather than from the config at start ("create": false), so
        // that under WebDriver it can leave the ephemeral context: wry 0.57 marks a webview as
        // controlled by automation only in its shared, persistent context, and WebKit refuses
        // to drive any other. The storage settings above hold in both.
        if let Some(mut config) = app
            .config()
            .app
            .windows
            .iter()
            .find(|w| w.label == "main")
            .cloned()
        {
            config.incognito = config.incognito && !automation;
            let window =
                tauri::WebviewWindowBuilder::from_config(app.handle(), &config)?.build()?;
            software_rendering(&window);
            private_webview(&window);
        }
        Ok(())
    })
    .build(context);
    match app {
        Ok(app) => app.run(|_, _| {}),
        Err(e) => {
            eprintln!("error: the kiosk window could not start: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests;
