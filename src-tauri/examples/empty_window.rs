//! An empty Tauri window, built from the same dependencies as the kiosk: the baseline that
//! `cargo xtask bench` measures the kiosk's start time and memory against. With
//! `SEALBOX_EMPTY_SOFTWARE_RENDERING=1` it renders like the kiosk (no accelerated compositing),
//! for a like-for-like comparison. With `SEALBOX_EMPTY_TEXT=1` it is the floor under the
//! kiosk's start: rendering like the kiosk, its page makes one call to the app and paints one
//! line in the kiosk's own font face, and reports ready the way the kiosk's form does.

use tauri::webview::PageLoadEvent;

// The floor's two calls take the names of the kiosk's own (`kiosk_state`, `form_ready`), which
// the app's capability allows; they do none of the kiosk's work.

/// The line the floor's page paints: the kiosk's title in both languages.
#[tauri::command]
fn kiosk_state() -> &'static str {
    "访客登记 · Visitor registration"
}

/// The floor's page is painted with its face.
#[tauri::command]
fn form_ready(started: tauri::State<'_, std::time::Instant>) {
    eprintln!(
        "sealbox-kiosk: form ready after {} ms",
        started.elapsed().as_millis()
    );
}

fn main() {
    let started = std::time::Instant::now();
    let text = std::env::var_os("SEALBOX_EMPTY_TEXT").is_some();
    let mut context = tauri::generate_context!();
    context.config_mut().app.windows.clear();
    tauri::Builder::default()
        .manage(started)
        .invoke_handler(tauri::generate_handler![kiosk_state, form_ready])
        .setup(move |app| {
            let page = if text {
                "empty-text.html"
            } else {
                "empty.html"
            };
            let window =
                tauri::WebviewWindowBuilder::new(app, "main", tauri::WebviewUrl::App(page.into()))
                    .title("empty")
                    .inner_size(1280.0, 800.0)
                    .build()?;
            if text || std::env::var_os("SEALBOX_EMPTY_SOFTWARE_RENDERING").is_some() {
                sealbox_kiosk::software_rendering(&window);
            }
            Ok(())
        })
        .on_page_load(move |_, payload| {
            if !text && payload.event() == PageLoadEvent::Finished {
                eprintln!(
                    "sealbox-kiosk: form ready after {} ms",
                    started.elapsed().as_millis()
                );
            }
        })
        .run(context)
        .expect("empty window");
}
