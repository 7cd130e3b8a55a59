//! An empty Tauri window, built from the same dependencies as the kiosk: the baseline that
//! `cargo xtask bench` measures the kiosk's start time and memory against. With
//! `SEALBOX_EMPTY_SOFTWARE_RENDERING=1` it renders like the kiosk (no accelerated compositing),
//! for a like-for-like comparison.

use tauri::webview::PageLoadEvent;

fn main() {
    let started = std::time::Instant::now();
    let mut context = tauri::generate_context!();
    context.config_mut().app.windows.clear();
    tauri::Builder::default()
        .setup(|app| {
            let window = tauri::WebviewWindowBuilder::new(
                app,
                "main",
                tauri::WebviewUrl::App("empty.html".into()),
            )
            .title("empty")
            .inner_size(1280.0, 800.0)
            .build()?;
            if std::env::var_os("SEALBOX_EMPTY_SOFTWARE_RENDERING").is_some() {
                sealbox_kiosk::software_rendering(&window);
            }
            Ok(())
        })
        .on_page_load(move |_, payload| {
            if payload.event() == PageLoadEvent::Finished {
                eprintln!(
                    "sealbox-kiosk: form ready after {} ms",
                    started.elapsed().as_millis()
                );
            }
        })
        .run(context)
        .expect("empty window");
}
