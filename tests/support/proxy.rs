//! A fault-injecting TCP proxy between a device and head office, written for the tests.
//!
//! It sees only TLS records, so it tells the handshake from the HTTP response by flights: the
//! server's first flight answers the ClientHello; once the client has sent again (its Finished
//! and the request), the server sends its session tickets in one flight of one record
//! ([`TLS13_TICKETS`] of them, sent whether the handshake was full or resumed) and then the
//! response. Faults apply to that response, or to the connection before anything reaches the
//! server. The ServerHello is plaintext: a `pre_shared_key` extension in it means head office
//! accepted the device's ticket, and the proxy counts that connection as resumed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealbox_headoffice::server::TLS13_TICKETS;

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
    /// Connections whose TLS handshake resumed an earlier session (no certificate sent).
    pub resumed: Arc<AtomicU64>,
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
        let resumed = Arc::new(AtomicU64::new(0));
        {
            let (mode, stop, connections, faulted) = (
                mode.clone(),
                stop.clone(),
                connections.clone(),
                faulted.clone(),
            );
            let counts = Counts {
                requests_dropped: requests_dropped.clone(),
                responses_dropped: responses_dropped.clone(),
                resumed: resumed.clone(),
            };
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
            resumed,
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

#[derive(Clone)]
struct Counts {
    requests_dropped: Arc<AtomicU64>,
    responses_dropped: Arc<AtomicU64>,
    resumed: Arc<AtomicU64>,
}

/// Finds where TLS records end in a byte stream read in arbitrary pieces.
#[derive(Default)]
struct Records {
    header: Vec<u8>,
    body_left: usize,
}

impl Records {
    /// The offsets in `data` just after each record that ends within it.
    fn ends(&mut self, data: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut i = 0;
        while i < data.len() {
            if self.body_left > 0 {
                let take = self.body_left.min(data.len() - i);
                self.body_left -= take;
                i += take;
                if self.body_left == 0 {
                    ends.push(i);
                }
                continue;
            }
            self.header.push(data[i]);
            i += 1;
            if self.header.len() == 5 {
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.header.clear();
                if self.body_left == 0 {
                    ends.push(i);
                }
            }
        }
        ends
    }
}

/// Whether the server's first bytes hold a ServerHello carrying a `pre_shared_key` extension
/// (a resumed TLS 1.3 handshake). `None` until enough bytes have arrived to tell.
fn server_hello_resumed(b: &[u8]) -> Option<bool> {
    let get = |i: usize| b.get(i).copied().map(usize::from);
    let u16_at = |i: usize| Some(get(i)? << 8 | get(i + 1)?);
    // record header (5), handshake type and length (4), version (2), random (32)
    if get(0)? != 22 || get(5)? != 2 {
        return Some(false);
    }
    let mut i = 5 + 4 + 2 + 32;
    i += 1 + get(i)?; // session id
    i += 2 + 1; // cipher suite, compression
    let end = i + 2 + u16_at(i)?;
    i += 2;
    while i + 4 <= end {
        let (kind, len) = (u16_at(i)?, u16_at(i + 2)?);
        if kind == 41 {
            return Some(true);
        }
        i += 4 + len;
    }
    Some(false)
}

fn handle(client: TcpStream, upstream: SocketAddr, fault: Fault, counts: Counts) {
    let Counts {
        requests_dropped,
        responses_dropped,
        resumed,
    } = counts;
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
    let mut hello = Some(Vec::new());
    let mut records = Records::default();
    let mut tickets_left = TLS13_TICKETS.min(1);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut start = 0;
        if response_phase.load(Ordering::SeqCst) && tickets_left > 0 {
            // The ticket flight comes before the response: head office has not answered yet.
            let ends = records.ends(&buf[..n]);
            if let Some(&end) = ends.first() {
                tickets_left = 0;
                start = end;
            } else {
                start = n;
            }
            if to.write_all(&buf[..start]).is_err() {
                break;
            }
            if start == n {
                continue;
            }
        }
        let n = n - start;
        buf.copy_within(start..start + n, 0);
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
            if let Some(h) = hello.as_mut() {
                h.extend_from_slice(&buf[..n]);
                if let Some(was) = server_hello_resumed(h) {
                    if was {
                        resumed.fetch_add(1, Ordering::SeqCst);
                    }
                    hello = None;
                }
            }
            // Record boundaries are followed from the start, so the ticket flight's end is
            // found wherever a read splits it.
            records.ends(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
