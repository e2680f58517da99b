//! A TCP fault proxy between the coordinator and one participant.
//!
//! A participant started with `--advertise-url http://{proxy}` registers the proxy's address,
//! so every branch call the coordinator makes goes through it (the harness itself talks to the
//! participant directly). Every chunk the coordinator sends on a connection (a branch call's
//! request is one chunk) draws, with a seeded RNG, a fault from the current [`FaultMix`], so
//! faults hit requests on kept-alive connections as well as on fresh ones:
//!
//! - [`ConnFault::Pass`], relayed;
//! - [`ConnFault::Latency`], relayed after `latency_ms`;
//! - [`ConnFault::Reset`], not relayed; the connection is closed with a TCP RST (`SO_LINGER`
//!   0), the request never reached the participant;
//! - [`ConnFault::Blackhole`], not relayed and never answered; the proxy swallows whatever
//!   comes until the coordinator's per-call timeout gives up, then resets;
//! - [`ConnFault::DropReply`], relayed, the participant handles it, and the first bytes of its
//!   answer make the proxy reset the coordinator's side instead of relaying them: the call
//!   happened but the coordinator cannot know.
//!
//! A connection the participant's side refuses or closes (it was SIGKILLed) is reset too.
//! The mix can be changed at any time ([`FaultProxy::set_mix`]); the chaos run does so every
//! few seconds.
//!
//! In front of a cluster, the proxy tells the coordinators apart by the source address of
//! their connections (each instance sends from its own `--outbound-address`):
//! [`FaultProxy::source_stats`] counts, per address, connections and every request byte read
//! from it, faulted or not. [`FaultProxy::hold_replies_to`] holds the participant's answers
//! to one address (the calls are delivered and handled, their answers wait in the proxy)
//! until [`FaultProxy::release_replies`]: a test can so bring an instance to a point where
//! every call it decided has reached the participant, and nothing it sends later can be a
//! call decided before.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest a blackholed connection is held open (the coordinator gives up long before).
const BLACKHOLE_MAX: Duration = Duration::from_secs(60);
/// How long connecting to the participant may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What one connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnFault {
    /// Relayed as is.
    Pass,
    /// Relayed after this delay.
    Latency(Duration),
    /// Reset (RST) before the request reaches the participant.
    Reset,
    /// Swallowed, never answered; reset once the caller gives up.
    Blackhole,
    /// Relayed and handled; the participant's answer is replaced by a reset.
    DropReply,
}

/// Probabilities per new connection (the rest pass). Their sum must not exceed 1.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct FaultMix {
    /// Share of requests relayed after `latency_ms`.
    pub latency_rate: f64,
    /// The added latency.
    pub latency_ms: u64,
    /// Share of requests answered with a reset before they reach the participant.
    pub reset_rate: f64,
    /// Share of requests swallowed and never answered.
    pub blackhole_rate: f64,
    /// Share of requests relayed and handled whose answer is replaced by a reset.
    pub drop_reply_rate: f64,
}

impl FaultMix {
    /// Everything passes.
    pub const PASS: FaultMix = FaultMix {
        latency_rate: 0.0,
        latency_ms: 0,
        reset_rate: 0.0,
        blackhole_rate: 0.0,
        drop_reply_rate: 0.0,
    };

    /// Injects nothing.
    pub fn is_pass(&self) -> bool {
        self.latency_rate <= 0.0
            && self.reset_rate <= 0.0
            && self.blackhole_rate <= 0.0
            && self.drop_reply_rate <= 0.0
    }

    /// Draws the fault of one connection.
    pub fn draw(&self, rng: &mut impl Rng) -> ConnFault {
        let x: f64 = rng.random();
        let mut edge = self.reset_rate;
        if x < edge {
            return ConnFault::Reset;
        }
        edge += self.blackhole_rate;
        if x < edge {
            return ConnFault::Blackhole;
        }
        edge += self.drop_reply_rate;
        if x < edge {
            return ConnFault::DropReply;
        }
        edge += self.latency_rate;
        if x < edge {
            return ConnFault::Latency(Duration::from_millis(self.latency_ms));
        }
        ConnFault::Pass
    }

    /// A short label for logs and the progress line.
    pub fn label(&self) -> String {
        if self.is_pass() {
            return "pass".into();
        }
        let mut parts = Vec::new();
        if self.latency_rate > 0.0 {
            parts.push(format!(
                "latency {:.0}%+{}ms",
                self.latency_rate * 100.0,
                self.latency_ms
            ));
        }
        if self.reset_rate > 0.0 {
            parts.push(format!("reset {:.0}%", self.reset_rate * 100.0));
        }
        if self.blackhole_rate > 0.0 {
            parts.push(format!("blackhole {:.0}%", self.blackhole_rate * 100.0));
        }
        if self.drop_reply_rate > 0.0 {
            parts.push(format!("drop-reply {:.0}%", self.drop_reply_rate * 100.0));
        }
        parts.join(", ")
    }
}

/// Counts of what the proxy did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Chunks the coordinator sent (about one per request); each drew a fault.
    pub requests: u64,
    /// Requests relayed without a fault.
    pub passed: u64,
    /// Requests relayed late.
    pub latency: u64,
    /// Requests answered with a reset.
    pub reset: u64,
    /// Requests swallowed.
    pub blackhole: u64,
    /// Connections whose response was dropped after the participant had answered.
    pub reply_dropped: u64,
    /// Open connections cut because the proxy stopped.
    pub cut: u64,
    /// Connections reset because the participant could not be reached (it was down).
    pub upstream_refused: u64,
}

impl ProxyStats {
    /// Connections that got an injected fault (latency, reset, blackhole, dropped reply).
    pub fn faults(&self) -> u64 {
        self.latency + self.reset + self.blackhole + self.reply_dropped
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ProxyStats) {
        self.connections += other.connections;
        self.requests += other.requests;
        self.passed += other.passed;
        self.latency += other.latency;
        self.reset += other.reset;
        self.blackhole += other.blackhole;
        self.reply_dropped += other.reply_dropped;
        self.cut += other.cut;
        self.upstream_refused += other.upstream_refused;
    }
}

/// What the proxy saw from one source address (a coordinator instance's
/// `--outbound-address`), since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SourceStats {
    /// Connections accepted from it.
    pub connections: u64,
    /// Of those, still open.
    pub open: u64,
    /// Chunks it sent (about one per request).
    pub requests: u64,
    /// Bytes it sent, every one the proxy read, whatever fault it drew.
    pub request_bytes: u64,
    /// Answers to it the proxy holds right now ([`FaultProxy::hold_replies_to`]).
    pub held_replies: u64,
}

/// [`SourceStats`] as they are counted.
#[derive(Debug, Default)]
struct SourceCounters {
    connections: AtomicU64,
    open: AtomicU64,
    requests: AtomicU64,
    request_bytes: AtomicU64,
    held_replies: AtomicU64,
}

/// Subtracts one from a gauge when dropped, however the connection's future ends.
struct Decrement<'a>(&'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    passed: AtomicU64,
    latency: AtomicU64,
    reset: AtomicU64,
    blackhole: AtomicU64,
    reply_dropped: AtomicU64,
    cut: AtomicU64,
    upstream_refused: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    mix: Mutex<(FaultMix, StdRng)>,
    /// Bumped when the proxy goes away; connections watch it and close when it moves.
    generation: watch::Sender<u64>,
    counters: Counters,
    /// Per source address.
    sources: Mutex<HashMap<IpAddr, Arc<SourceCounters>>>,
    /// The source address whose answers are held, if any.
    held: watch::Sender<Option<IpAddr>>,
}

impl Shared {
    fn source(&self, ip: IpAddr) -> Arc<SourceCounters> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(ip)
            .or_default()
            .clone()
    }
}

/// A running proxy; dropping it stops accepting (open connections end with the runtime).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`, everything passing at first.
    pub async fn start(target: SocketAddr, seed: u64) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the fault proxy")?;
        let addr = listener.local_addr()?;
        let (generation, _) = watch::channel(0);
        let (held, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            target,
            mix: Mutex::new((FaultMix::PASS, StdRng::seed_from_u64(seed))),
            generation,
            counters: Counters::default(),
            sources: Mutex::new(HashMap::new()),
            held,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, what the participant advertises.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The participant it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// The mix in force.
    pub fn mix(&self) -> FaultMix {
        self.shared.mix.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Replaces the mix; the next request on any connection draws from it.
    pub fn set_mix(&self, mix: FaultMix) {
        self.shared.mix.lock().unwrap_or_else(|e| e.into_inner()).0 = mix;
    }

    /// What it saw from each source address so far.
    pub fn source_stats(&self) -> HashMap<IpAddr, SourceStats> {
        let sources = self
            .shared
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        sources
            .iter()
            .map(|(ip, c)| {
                let stats = SourceStats {
                    connections: get(&c.connections),
                    open: get(&c.open),
                    requests: get(&c.requests),
                    request_bytes: get(&c.request_bytes),
                    held_replies: get(&c.held_replies),
                };
                (*ip, stats)
            })
            .collect()
    }

    /// What it saw from `ip` so far (zeros if nothing came from it).
    pub fn source(&self, ip: IpAddr) -> SourceStats {
        self.source_stats().get(&ip).copied().unwrap_or_default()
    }

    /// From now on, answers to connections from `ip` are held (the first chunk of each
    /// answer waits, and with it the rest) until [`FaultProxy::release_replies`]. Requests
    /// still reach the participant. Replaces any address held before.
    pub fn hold_replies_to(&self, ip: IpAddr) {
        self.shared.held.send_replace(Some(ip));
    }

    /// Every held answer goes on its way; nothing is held any more.
    pub fn release_replies(&self) {
        self.shared.held.send_replace(None);
    }

    /// What it has done so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            connections: get(&c.connections),
            requests: get(&c.requests),
            passed: get(&c.passed),
            latency: get(&c.latency),
            reset: get(&c.reset),
            blackhole: get(&c.blackhole),
            reply_dropped: get(&c.reply_dropped),
            cut: get(&c.cut),
            upstream_refused: get(&c.upstream_refused),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Wake every connection so it closes.
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("fault proxy for {}: accept failed: {e}", shared.target);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        bump(&shared.counters.connections);
        let generation = shared.generation.subscribe();
        let source = shared.source(peer.ip());
        source.connections.fetch_add(1, Ordering::Relaxed);
        source.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(handle(
            client,
            peer.ip(),
            source,
            shared.clone(),
            generation,
        ));
    }
}

/// Closes `stream` with a RST rather than a FIN, like a crashed peer or a middlebox would.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn handle(
    mut client: TcpStream,
    ip: IpAddr,
    source: Arc<SourceCounters>,
    shared: Arc<Shared>,
    mut generation: watch::Receiver<u64>,
) {
    let _open = Decrement(&source.open);
    generation.mark_unchanged();
    let counters = &shared.counters;
    let upstream =
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.target)).await {
            Ok(Ok(upstream)) => upstream,
            _ => {
                bump(&counters.upstream_refused);
                reset(client);
                return;
            }
        };
    let _ = upstream.set_nodelay(true);
    let outcome = tokio::select! {
        outcome = relay(&mut client, upstream, ip, &source, &shared) => outcome,
        _ = generation.changed() => Relay::Cut,
    };
    match outcome {
        Relay::Closed => {}
        Relay::Cut => {
            bump(&counters.cut);
            reset(client);
        }
        Relay::Reset | Relay::Blackholed => reset(client),
        Relay::ReplyDropped => {
            bump(&counters.reply_dropped);
            reset(client);
        }
    }
}

enum Relay {
    /// One side closed or failed; the other is closed too.
    Closed,
    /// The proxy is going away.
    Cut,
    /// A request was answered with a reset before it reached the participant.
    Reset,
    /// A request was swallowed and the client gave up waiting.
    Blackholed,
    /// The participant answered and the answer was thrown away.
    ReplyDropped,
}

/// Relays one connection. Each chunk the coordinator sends (a small request is one chunk)
/// draws its fault from the current mix, so faults hit requests on kept-alive connections too.
async fn relay(
    client: &mut TcpStream,
    mut upstream: TcpStream,
    ip: IpAddr,
    source: &SourceCounters,
    shared: &Shared,
) -> Relay {
    let counters = &shared.counters;
    let (mut client_read, mut client_write) = client.split();
    let (mut up_read, mut up_write) = upstream.split();
    let drop_next_reply = AtomicBool::new(false);
    let to_upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            bump(&counters.requests);
            bump(&source.requests);
            source.request_bytes.fetch_add(n as u64, Ordering::Relaxed);
            let fault = {
                let mut guard = shared.mix.lock().unwrap_or_else(|e| e.into_inner());
                let (mix, rng) = &mut *guard;
                mix.draw(rng)
            };
            match fault {
                ConnFault::Pass => bump(&counters.passed),
                ConnFault::Latency(delay) => {
                    bump(&counters.latency);
                    tokio::time::sleep(delay).await;
                }
                ConnFault::Reset => {
                    bump(&counters.reset);
                    return Relay::Reset;
                }
                ConnFault::Blackhole => {
                    bump(&counters.blackhole);
                    // Swallow everything until the client gives up (or the cap).
                    let hold = async {
                        loop {
                            match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    source.request_bytes.fetch_add(n as u64, Ordering::Relaxed);
                                }
                            }
                        }
                    };
                    let _ = tokio::time::timeout(BLACKHOLE_MAX, hold).await;
                    return Relay::Blackholed;
                }
                ConnFault::DropReply => drop_next_reply.store(true, Ordering::Relaxed),
            }
            if up_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = up_write.shutdown().await;
        Relay::Closed
    };
    let to_client = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match up_read.read(&mut buf).await {
                Ok(0) | Err(_) => return Relay::Closed,
                Ok(n) => n,
            };
            if drop_next_reply.load(Ordering::Relaxed) {
                return Relay::ReplyDropped;
            }
            let mut held = shared.held.subscribe();
            if *held.borrow_and_update() == Some(ip) {
                source.held_replies.fetch_add(1, Ordering::Relaxed);
                let _held = Decrement(&source.held_replies);
                // Only an error if the proxy is gone, which ends this connection anyway.
                let _ = held.wait_for(|held| *held != Some(ip)).await;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return Relay::Closed;
            }
        }
    };
    tokio::pin!(to_upstream);
    tokio::pin!(to_client);
    // A fault in the request direction ends the connection at once; the request direction
    // closing normally (the client half-closed) must not cut an answer still on its way.
    tokio::select! {
        outcome = &mut to_client => outcome,
        outcome = &mut to_upstream => match outcome {
            Relay::Closed => to_client.await,
            fault => fault,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every chunk it reads with `ok` and counts the chunks.
    async fn counting_server() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        if conn.write_all(b"ok").await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    /// Sends `ping` through the proxy; the answer, or `None` if the connection failed or
    /// nothing came within 300 ms.
    async fn ping(proxy: &FaultProxy) -> Option<Vec<u8>> {
        let mut conn = TcpStream::connect(proxy.addr()).await.ok()?;
        conn.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 2];
        match tokio::time::timeout(Duration::from_millis(300), conn.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn each_fault_does_what_it_says() {
        let (server, seen) = counting_server().await;
        let proxy = FaultProxy::start(server, 1).await.unwrap();
        let delivered = || seen.load(Ordering::SeqCst);

        assert_eq!(ping(&proxy).await.as_deref(), Some(&b"ok"[..]));
        assert_eq!(delivered(), 1);

        proxy.set_mix(FaultMix {
            reset_rate: 1.0,
            ..FaultMix::PASS
        });
        assert_eq!(ping(&proxy).await, None);
        assert_eq!(delivered(), 1, "a reset request must not reach the server");

        proxy.set_mix(FaultMix {
            blackhole_rate: 1.0,
            ..FaultMix::PASS
        });
        assert_eq!(ping(&proxy).await, None);
        assert_eq!(
            delivered(),
            1,
            "a blackholed request must not reach the server"
        );

        proxy.set_mix(FaultMix {
            drop_reply_rate: 1.0,
            ..FaultMix::PASS
        });
        assert_eq!(ping(&proxy).await, None);
        assert_eq!(
            delivered(),
            2,
            "a dropped reply's request must reach the server"
        );

        proxy.set_mix(FaultMix {
            latency_rate: 1.0,
            latency_ms: 50,
            ..FaultMix::PASS
        });
        let started = std::time::Instant::now();
        assert_eq!(ping(&proxy).await.as_deref(), Some(&b"ok"[..]));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(delivered(), 3);

        let stats = proxy.stats();
        assert_eq!(
            (
                stats.passed,
                stats.reset,
                stats.blackhole,
                stats.reply_dropped,
                stats.latency
            ),
            (1, 1, 1, 1, 1),
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn sources_are_told_apart_and_their_answers_held() {
        let (server, seen) = counting_server().await;
        let proxy = FaultProxy::start(server, 1).await.unwrap();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let target = proxy.addr();
        let connect_from = |ip: IpAddr| async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
            socket.connect(target).await.unwrap()
        };
        let mut from_a = connect_from(a).await;
        from_a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 2];
        from_a.read_exact(&mut buf).await.unwrap();

        proxy.hold_replies_to(b);
        let mut from_b = connect_from(b).await;
        from_b.write_all(b"hello").await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(200), from_b.read_exact(&mut buf));
        assert!(
            held.await.is_err(),
            "an answer to a held source went through"
        );
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "a held source's request is delivered"
        );
        assert_eq!(proxy.source(b).held_replies, 1);
        // Others are not held.
        from_a.write_all(b"ping").await.unwrap();
        from_a.read_exact(&mut buf).await.unwrap();

        proxy.release_replies();
        from_b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
        let (sa, sb) = (proxy.source(a), proxy.source(b));
        assert_eq!((sa.connections, sa.requests, sa.request_bytes), (1, 2, 8));
        assert_eq!((sb.connections, sb.requests, sb.request_bytes), (1, 1, 5));
        assert_eq!((sa.open, sb.open, sb.held_replies), (1, 1, 0));
        drop(from_a);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while proxy.source(a).open > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a closed connection stays open"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn draw_respects_the_rates() {
        let mix = FaultMix {
            latency_rate: 0.1,
            latency_ms: 5,
            reset_rate: 0.2,
            blackhole_rate: 0.3,
            drop_reply_rate: 0.4,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = [0u32; 5];
        for _ in 0..10_000 {
            let i = match mix.draw(&mut rng) {
                ConnFault::Pass => 0,
                ConnFault::Latency(_) => 1,
                ConnFault::Reset => 2,
                ConnFault::Blackhole => 3,
                ConnFault::DropReply => 4,
            };
            counts[i] += 1;
        }
        assert_eq!(counts[0], 0, "{counts:?}");
        assert!((800..1200).contains(&counts[1]), "{counts:?}");
        assert!((3600..4400).contains(&counts[4]), "{counts:?}");
        assert_eq!(FaultMix::PASS.draw(&mut rng), ConnFault::Pass);
    }
}
