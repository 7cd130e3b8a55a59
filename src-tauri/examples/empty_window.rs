//! An empty Tauri window, built from the same dependencies as the kiosk: the baseline that
//! `cargo xtask bench` measures the kiosk's start time and memory against.

use tauri::webview::PageLoadEvent;

fn main() {
    let started = std::time::Instant::now();
    let mut context = tauri::generate_context!();
    context.config_mut().app.windows.clear();
    tauri::Builder::default()
        .setup(|app| {
            tauri::WebviewWindowBuilder::new(
                app,
                "main",
                tauri::WebviewUrl::App("empty.html".into()),
            )
            .title("empty")
            .inner_size(1280.0, 800.0)
            .build()?;
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
