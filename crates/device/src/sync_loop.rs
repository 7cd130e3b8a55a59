//! The background sync loop the kiosk app runs: whenever entries are waiting it sends them; while
//! head office cannot be reached or refuses, it waits with exponential backoff and full jitter
//! (1 s doubling to 5 min), so a booth full of kiosks does not hammer a recovering server.
//! "Sync now" wakes it at once.

use crate::device::Device;
use crate::error::DeviceError;
use crate::keychain::KeyStore;
use crate::sync::{SyncProgress, DEFAULT_PAGE};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the app shows of the sync.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncState {
    /// Whether head office answered last time it was asked (`None`: not asked yet).
    pub online: Option<bool>,
    pub sending: bool,
    pub progress: Option<SyncProgress>,
    pub last_receipt_ms: Option<i64>,
    /// The code of the last failure (`offline`, `tls_refused`, `unauthorized`, …).
    pub last_error: Option<String>,
}

/// Timing of the loop.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    pub page: usize,
    pub timeout: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How often to look for new entries (and check head office) while idle.
    pub idle_poll: Duration,
    /// How often to send a health report while online with nothing to send (each sync sends
    /// one anyway).
    pub health_every: Duration,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            page: DEFAULT_PAGE,
            timeout: Duration::from_secs(15),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            idle_poll: Duration::from_secs(5),
            health_every: Duration::from_secs(sealbox_protocol::health::IDLE_REPORT_EVERY_S),
        }
    }
}

/// A running loop; dropping it stops it.
pub struct SyncLoop {
    stop: Arc<AtomicBool>,
    wake: mpsc::Sender<()>,
    state: Arc<Mutex<SyncState>>,
    thread: Option<JoinHandle<()>>,
}

/// The wait before retry number `failures` (1-based): full jitter over an exponential ceiling.
pub fn backoff(failures: u32, opts: &LoopOptions) -> Duration {
    let ceiling = opts
        .first_backoff
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(opts.max_backoff);
    let mut b = [0u8; 4];
    let r = if getrandom::getrandom(&mut b).is_ok() {
        u32::from_le_bytes(b)
    } else {
        u32::MAX / 2
    };
    // Between half the ceiling and the ceiling: never zero, never in lockstep.
    let frac = 0.5 + 0.5 * (r as f64 / u32::MAX as f64);
    ceiling.mul_f64(frac)
}

impl SyncLoop {
    /// Starts the loop on its own thread, with its own connection to the device's database.
    pub fn start(dir: PathBuf, keys: Arc<dyn KeyStore>, opts: LoopOptions) -> SyncLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(SyncState::default()));
        let (wake, woken) = mpsc::channel();
        let thread = {
            let (stop, state) = (stop.clone(), state.clone());
            std::thread::Builder::new()
                .name("sealbox-sync".into())
                .spawn(move || run(dir, keys, opts, stop, state, woken))
                .ok()
        };
        SyncLoop {
            stop,
            wake,
            state,
            thread,
        }
    }

    /// Sync now.
    pub fn wake(&self) {
        let _ = self.wake.send(());
    }

    pub fn state(&self) -> SyncState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the loop and waits for it (a sync in progress finishes its current batch).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyncLoop {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(
    dir: PathBuf,
    keys: Arc<dyn KeyStore>,
    opts: LoopOptions,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<SyncState>>,
    woken: mpsc::Receiver<()>,
) {
    let mut failures: u32 = 0;
    let mut device: Option<Device> = None;
    let mut reports = Reports {
        supported: true,
        last: None,
        codes_last: None,
    };
    while !stop.load(Ordering::SeqCst) {
        let wait = match one_round(
            &dir,
            keys.as_ref(),
            &opts,
            &mut device,
            &state,
            &mut reports,
        ) {
            Ok(true) => {
                failures = 0;
                Duration::ZERO
            }
            Ok(false) => {
                failures = 0;
                opts.idle_poll
            }
            Err(e) => {
                failures += 1;
                // A database error may mean the connection is stale: reopen next time.
                if matches!(e, DeviceError::Storage(_) | DeviceError::Corrupt) {
                    device = None;
                }
                tracing::warn!(code = e.code(), failures, "sync failed");
                update(&state, |s| {
                    s.sending = false;
                    s.online = Some(false);
                    s.last_error = Some(e.code().to_string());
                });
                backoff(failures, &opts)
            }
        };
        if wait.is_zero() {
            continue;
        }
        match woken.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

fn update(state: &Mutex<SyncState>, f: impl FnOnce(&mut SyncState)) {
    f(&mut state.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Health reports while idle: whether head office takes them, and when the last went.
struct Reports {
    supported: bool,
    last: Option<std::time::Instant>,
    /// When the event's staff codes were last asked for while idle.
    codes_last: Option<std::time::Instant>,
}

/// One look: `Ok(true)` when it sent something (look again at once), `Ok(false)` when idle.
fn one_round(
    dir: &std::path::Path,
    keys: &dyn KeyStore,
    opts: &LoopOptions,
    device: &mut Option<Device>,
    state: &Mutex<SyncState>,
    reports: &mut Reports,
) -> Result<bool, DeviceError> {
    if device.is_none() {
        *device = Some(Device::open(dir, keys)?);
    }
    let Some(dev) = device.as_mut() else {
        return Ok(false);
    };
    let client = dev.sync_client(opts.timeout)?;
    let c = dev.counts()?;
    if c.pending + c.exported == 0 {
        let due = reports
            .last
            .is_none_or(|t| t.elapsed() >= opts.health_every);
        if reports.supported && due {
            // A head office that predates reports answers 404: then only ask if it is up.
            reports.supported = dev.send_health(&client, None)?;
            reports.last = Some(std::time::Instant::now());
        }
        if !reports.supported || !due {
            client.health()?;
        }
        // Nothing to send means no receipt: the staff codes are asked for on their own.
        if reports
            .codes_last
            .is_none_or(|t| t.elapsed() >= opts.health_every)
        {
            dev.fetch_staff_codes(&client);
            reports.codes_last = Some(std::time::Instant::now());
        }
        update(state, |s| {
            s.online = Some(true);
            s.last_error = None;
        });
        return Ok(false);
    }
    update(state, |s| s.sending = true);
    let report = dev.sync(&client, opts.page, &mut |p| {
        update(state, |s| s.progress = Some(p))
    })?;
    // The sync sent a report of its own.
    reports.last = Some(std::time::Instant::now());
    let when = report.last_receipt_ms;
    update(state, |s| {
        s.sending = false;
        s.online = Some(true);
        s.last_error = None;
        if when.is_some() {
            s.last_receipt_ms = when;
        }
    });
    Ok(report.erased > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let o = LoopOptions::default();
        for f in 1..=20 {
            let b = backoff(f, &o);
            let ceiling = Duration::from_secs(1 << (f - 1).min(16)).min(o.max_backoff);
            assert!(b >= ceiling / 2 && b <= ceiling, "{f}: {b:?}");
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| backoff(5, &o)).collect();
        assert!(draws.len() > 10, "jitter spreads retries");
    }
}
