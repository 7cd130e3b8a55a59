//! A fault-injecting TCP proxy between a device and head office, written for the tests.
//!
//! It sees only TLS records, so it tells the handshake from the HTTP response by flights: the
//! server's first flight answers the ClientHello; once the client has sent again (its Finished
//! and the request), whatever the server sends next is the response. (Head office sends no
//! session tickets, so nothing else comes in between.) Faults apply to that response, or to the
//! connection before anything reaches the server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Close the client's connection at once: nothing reaches head office.
    DropBeforeRequest,
    /// Let the request through (head office commits), then close before any byte of the
    /// response reaches the client: the receipt is lost.
    DropResponse,
    /// Hold the response this long before forwarding it.
    DelayResponse(Duration),
    /// Forward only this many bytes of the response, then close: a truncated body.
    TruncateResponse(usize),
}

struct Mode {
    /// Applied to the next connection only, then back to `base`.
    once: Option<Fault>,
    base: Fault,
    /// Chance per connection of a random DropBeforeRequest or DropResponse.
    random_drop: f64,
    rng: u64,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
    /// Connections seen, and how many got a fault.
    pub connections: Arc<AtomicU64>,
    pub faulted: Arc<AtomicU64>,
    /// Connections dropped before the request reached head office.
    pub requests_dropped: Arc<AtomicU64>,
    /// Responses dropped after head office had answered (it committed: a lost receipt).
    pub responses_dropped: Arc<AtomicU64>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(Mode {
            once: None,
            base: Fault::Pass,
            random_drop: 0.0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let faulted = Arc::new(AtomicU64::new(0));
        let requests_dropped = Arc::new(AtomicU64::new(0));
        let responses_dropped = Arc::new(AtomicU64::new(0));
        {
            let (mode, stop, connections, faulted) = (
                mode.clone(),
                stop.clone(),
                connections.clone(),
                faulted.clone(),
            );
            let counts = (requests_dropped.clone(), responses_dropped.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let fault = {
                        let mut m = mode.lock().unwrap();
                        m.rng ^= m.rng << 13;
                        m.rng ^= m.rng >> 7;
                        m.rng ^= m.rng << 17;
                        let roll = (m.rng % 10_000) as f64 / 10_000.0;
                        if let Some(f) = m.once.take() {
                            f
                        } else if roll < m.random_drop {
                            if m.rng % 2 == 0 {
                                Fault::DropBeforeRequest
                            } else {
                                Fault::DropResponse
                            }
                        } else {
                            m.base
                        }
                    };
                    if fault != Fault::Pass {
                        faulted.fetch_add(1, Ordering::SeqCst);
                    }
                    let counts = counts.clone();
                    std::thread::spawn(move || handle(client, upstream, fault, counts));
                }
            });
        }
        FaultProxy {
            addr,
            mode,
            stop,
            connections,
            faulted,
            requests_dropped,
            responses_dropped,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The next connection gets `f`.
    pub fn next(&self, f: Fault) {
        self.mode.lock().unwrap().once = Some(f);
    }

    /// Every connection gets `f`.
    pub fn always(&self, f: Fault) {
        self.mode.lock().unwrap().base = f;
    }

    /// Each connection is dropped (before the request or before the response) with chance `p`.
    pub fn random_drops(&self, p: f64, seed: u64) {
        let mut m = self.mode.lock().unwrap();
        m.random_drop = p;
        m.rng = seed | 1;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle(
    client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    (requests_dropped, responses_dropped): (Arc<AtomicU64>, Arc<AtomicU64>),
) {
    if fault == Fault::DropBeforeRequest {
        requests_dropped.fetch_add(1, Ordering::SeqCst);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let server_spoke = Arc::new(AtomicBool::new(false));
    let response_phase = Arc::new(AtomicBool::new(false));
    // client → server
    {
        let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (spoke, phase) = (server_spoke.clone(), response_phase.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if spoke.load(Ordering::SeqCst) {
                            phase.store(true, Ordering::SeqCst);
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    // server → client
    let (mut from, mut to) = (server, client);
    let mut buf = [0u8; 16 * 1024];
    let mut sent_in_response = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if response_phase.load(Ordering::SeqCst) {
            match fault {
                Fault::DropResponse => {
                    // Head office has answered: whatever it stored is committed.
                    responses_dropped.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Fault::DelayResponse(d) => std::thread::sleep(d),
                Fault::TruncateResponse(limit) => {
                    let take = n.min(limit.saturating_sub(sent_in_response));
                    let _ = to.write_all(&buf[..take]);
                    sent_in_response += take;
                    if sent_in_response >= limit {
                        break;
                    }
                    continue;
                }
                _ => {}
            }
        } else {
            server_spoke.store(true, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
