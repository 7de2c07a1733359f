//! Data-channel benchmarks (issue 5): WebRTC data channels (DTLS 1.2 + SCTP + DCEP) between two
//! of our peers, every figure measured in this run against a baseline measured in this run.
//!
//! 1. Loopback, CPU-bound: one reliable channel between two `DataChannels` over real
//!    `IceConnection`s on 127.0.0.1 (byte-stream API, one way), against raw 1200-byte UDP
//!    blasting over loopback (bytes/s that arrive) and aiortc-to-aiortc
//!    (`tests/aiortc/dc_peer.py --bench`). Issue target: >= 40% of raw UDP.
//! 2. Simulated link in virtual time: two sans-IO `Association`s through a bottleneck model
//!    written here (100 Mbit/s serialization, drop-tail queue of one bandwidth-delay product,
//!    one-way delay 5/25/50/100 ms, random loss 0% and 1% each way). Goodput as a fraction of
//!    the bottleneck, over a window that starts after slow start. Issue targets: >= 90% with no
//!    loss at every delay, >= 50% at 1% loss and 25 ms.
//! 3. Handshake cost: from `Association::new` ("ICE connected") to the first data-channel
//!    message delivered, in the simulator (in round trips) and on real loopback.
//! 4. Memory: live heap bytes per idle association and per idle channel (a counting global
//!    allocator, switched on only for that part).
//!
//! `cargo bench --bench datachannel` runs the full sizes (about two minutes on two cores);
//! `cargo test --all-targets` runs every part once with tiny sizes and skips aiortc. Sizes can
//! be scaled with environment variables (see [`Sizes`]).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{full_run, median, Table};
use jingle_ice::channel::{
    Association, AssociationConfig, Certificate, ChannelError, ChannelEvent, ChannelId,
    ChannelOptions, DtlsRole, RemoteParameters, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SCTP_PORT,
};
use jingle_ice::ice::{Candidate, Role};
use jingle_ice::net::{DataChannels, DataChannelsConfig, IceConnection};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- counting allocator (part 4) -------------------------------------------------------------

/// The system allocator, counting live bytes while [`COUNTING`] is on (so that the
/// throughput parts do not pay for a contended counter).
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

// ---- sizes -----------------------------------------------------------------------------------

/// How much each part does. Full run (`cargo bench`) defaults, each overridable:
/// - `DC_BENCH_LOOPBACK_MIB` (64): MiB sent one way per loopback round;
/// - `DC_BENCH_ROUNDS` (3): loopback throughput rounds (medians are printed);
/// - `DC_BENCH_UDP_MS` (1000): duration of one raw UDP blast;
/// - `DC_BENCH_AIORTC_MIB` (16): MiB for the aiortc baseline (0 skips it);
/// - `DC_BENCH_SIM_WARMUP_S` (3) and `DC_BENCH_SIM_WINDOW_S` (4): virtual seconds of bulk
///   transfer before the goodput window opens, and the window's length;
/// - `DC_BENCH_SIM_DELAYS` (5,25,50,100): one-way delays in ms of the simulated paths;
/// - `DC_BENCH_PARTS` (all): a comma list of `loopback`, `sim`, `handshake`, `memory`.
///
/// A quick run (`cargo test --all-targets`) uses tiny fixed sizes and skips aiortc.
struct Sizes {
    loopback_bytes: usize,
    rounds: usize,
    udp_blast: Duration,
    aiortc_bytes: usize,
    sim_warmup: Duration,
    sim_window: Duration,
    /// One-way delays of the goodput matrix.
    delays_ms: Vec<u64>,
    handshake_rounds: usize,
    memory_associations: usize,
    memory_channels: usize,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Sizes {
    fn get() -> Sizes {
        if full_run() {
            Sizes {
                loopback_bytes: (env_num("DC_BENCH_LOOPBACK_MIB", 64) as usize) << 20,
                rounds: env_num("DC_BENCH_ROUNDS", 3).max(1) as usize,
                udp_blast: Duration::from_millis(env_num("DC_BENCH_UDP_MS", 1000)),
                aiortc_bytes: (env_num("DC_BENCH_AIORTC_MIB", 16) as usize) << 20,
                sim_warmup: Duration::from_secs(env_num("DC_BENCH_SIM_WARMUP_S", 3)),
                sim_window: Duration::from_secs(env_num("DC_BENCH_SIM_WINDOW_S", 4).max(1)),
                delays_ms: std::env::var("DC_BENCH_SIM_DELAYS")
                    .ok()
                    .map(|v| v.split(',').filter_map(|d| d.trim().parse().ok()).collect())
                    .filter(|v: &Vec<u64>| !v.is_empty())
                    .unwrap_or_else(|| vec![5, 25, 50, 100]),
                handshake_rounds: 9,
                memory_associations: 100,
                memory_channels: 1000,
            }
        } else {
            Sizes {
                loopback_bytes: 512 << 10,
                rounds: 1,
                udp_blast: Duration::from_millis(100),
                aiortc_bytes: 0,
                sim_warmup: Duration::from_millis(200),
                sim_window: Duration::from_millis(100),
                delays_ms: vec![5, 25],
                handshake_rounds: 1,
                memory_associations: 4,
                memory_channels: 20,
            }
        }
    }
}

// ---- shared helpers --------------------------------------------------------------------------

fn remote_of(cert: &Certificate) -> RemoteParameters {
    RemoteParameters {
        fingerprint: cert.fingerprint(),
        max_message_size: Some(DEFAULT_MAX_MESSAGE_SIZE),
        sctp_port: Some(DEFAULT_SCTP_PORT),
    }
}

fn mbytes(bytes_per_s: f64) -> String {
    format!("{:.1}", bytes_per_s / 1e6)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

// ---- part 2 and 3: the simulated path --------------------------------------------------------

/// Bottleneck rate of the simulated path (issue 5).
const BOTTLENECK_BPS: u64 = 100_000_000;
/// IPv4 (20) + UDP (8) header bytes each datagram also takes on the bottleneck.
const IP_UDP_OVERHEAD: usize = 28;
/// Message size the simulated sender writes (the byte-stream default `stream_chunk`).
const SIM_MESSAGE: usize = 16 * 1024;

/// One direction of a simulated path: a drop-tail queue drained at the bottleneck rate, a
/// fixed propagation delay, and random loss on the wire (after the queue).
struct Link {
    delay: Duration,
    loss: f64,
    queue_limit: usize,
    /// (end of serialization, wire bytes) of the datagrams in the queue, serialization
    /// included.
    queued: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
    busy_until: Instant,
    /// (arrival, datagram), in arrival order (the delay is constant).
    in_flight: VecDeque<(Instant, usize, Vec<u8>)>,
    dropped_queue: u64,
    dropped_loss: u64,
    /// Wire bytes (IP and UDP headers included) delivered so far.
    delivered_wire: u64,
}

impl Link {
    fn new(delay: Duration, loss: f64, queue_limit: usize, now: Instant) -> Link {
        Link {
            delay,
            loss,
            queue_limit,
            queued: VecDeque::new(),
            queued_bytes: 0,
            busy_until: now,
            in_flight: VecDeque::new(),
            dropped_queue: 0,
            dropped_loss: 0,
            delivered_wire: 0,
        }
    }

    fn push(&mut self, now: Instant, datagram: Vec<u8>, rng: &mut StdRng) {
        while let Some(&(end, len)) = self.queued.front() {
            if end > now {
                break;
            }
            self.queued.pop_front();
            self.queued_bytes -= len;
        }
        let wire = datagram.len() + IP_UDP_OVERHEAD;
        if self.queued_bytes + wire > self.queue_limit {
            self.dropped_queue += 1;
            return;
        }
        let start = self.busy_until.max(now);
        let end = start + Duration::from_nanos(wire as u64 * 8 * 1_000_000_000 / BOTTLENECK_BPS);
        self.busy_until = end;
        self.queued.push_back((end, wire));
        self.queued_bytes += wire;
        if self.loss > 0.0 && rng.random::<f64>() < self.loss {
            self.dropped_loss += 1;
            return;
        }
        self.in_flight.push_back((end + self.delay, wire, datagram));
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|f| f.0)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.in_flight.front()?.0 > now {
            return None;
        }
        let (_, wire, d) = self.in_flight.pop_front()?;
        self.delivered_wire += wire as u64;
        Some(d)
    }
}

/// The shape of a simulated path.
#[derive(Clone, Copy, Debug)]
struct Path {
    delay: Duration,
    loss: f64,
}

impl Path {
    /// One bandwidth-delay product (the round trip at the bottleneck rate), at least 64
    /// full datagrams: the classic drop-tail size that lets one Reno-like flow halve its
    /// window without draining the link.
    fn queue_limit(&self) -> usize {
        let bdp = BOTTLENECK_BPS as f64 / 8.0 * 2.0 * self.delay.as_secs_f64();
        (bdp as usize).max(64 * 1500)
    }
}

/// Two associations joined by a simulated path, A the DTLS client.
struct Sim {
    a: Association,
    b: Association,
    ab: Link,
    ba: Link,
    now: Instant,
    rng: StdRng,
    /// Steps in a row that neither moved time nor delivered anything (a stuck timer).
    idle_steps: u32,
    /// Whether an association closing is expected (not an error).
    closing: bool,
}

impl Sim {
    fn new(
        config: &AssociationConfig,
        certs: &(Certificate, Certificate),
        path: Path,
        seed: u64,
    ) -> Result<Sim, ChannelError> {
        let now = Instant::now();
        let (ca, cb) = certs;
        let b = Association::new(config.clone(), cb, DtlsRole::Server, remote_of(ca), now)?;
        let a = Association::new(config.clone(), ca, DtlsRole::Client, remote_of(cb), now)?;
        let q = path.queue_limit();
        Ok(Sim {
            a,
            b,
            ab: Link::new(path.delay, path.loss, q, now),
            ba: Link::new(path.delay, path.loss, q, now),
            now,
            rng: StdRng::seed_from_u64(seed),
            idle_steps: 0,
            closing: false,
        })
    }

    /// Puts what the associations want sent on the links, and fails if one of them closed.
    fn flush(&mut self) -> Result<(), String> {
        while let Some(d) = self.a.poll_transmit() {
            self.ab.push(self.now, d, &mut self.rng);
        }
        while let Some(d) = self.b.poll_transmit() {
            self.ba.push(self.now, d, &mut self.rng);
        }
        for (side, assoc) in [("A", &mut self.a), ("B", &mut self.b)] {
            while let Some(e) = assoc.poll_event() {
                if let ChannelEvent::Closed(reason) = e {
                    if !self.closing {
                        return Err(format!("association {side} closed: {reason}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves virtual time to the next arrival or timer (at most to `limit`) and delivers what
    /// is due. Fails if nothing is scheduled at all, or a timer keeps firing without progress.
    fn advance(&mut self, limit: Instant) -> Result<(), String> {
        let next = [
            self.ab.next_arrival(),
            self.ba.next_arrival(),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            if self.closing {
                self.now = self.now.max(limit);
                return Ok(());
            }
            return Err("nothing scheduled: the simulation stalled".into());
        };
        let next = next.min(limit);
        let mut moved = next > self.now;
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(d) = self.ab.pop_due(now) {
            self.b.handle_datagram(now, &d);
            moved = true;
        }
        while let Some(d) = self.ba.pop_due(now) {
            self.a.handle_datagram(now, &d);
            moved = true;
        }
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
        }
        self.idle_steps = if moved { 0 } else { self.idle_steps + 1 };
        if self.idle_steps > 100_000 {
            return Err("a timer keeps firing without progress".into());
        }
        Ok(())
    }

    /// Runs until `done`, failing after `limit` of virtual time from now.
    fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Sim) -> bool,
    ) -> Result<(), String> {
        let end = self.now + limit;
        loop {
            self.flush()?;
            if done(self) {
                return Ok(());
            }
            // What `done` did (open a channel, send) goes out now, not at the next event.
            self.flush()?;
            if self.now >= end {
                return Err(format!("not done after {limit:?} of virtual time"));
            }
            self.advance(end)?;
        }
    }

    /// Lets `span` of virtual time pass (timers, heartbeats), failing only if an association
    /// closes.
    fn idle(&mut self, span: Duration) -> Result<(), String> {
        let end = self.now + span;
        self.run_until(span + Duration::from_secs(1), |s| s.now >= end)
    }

    fn connect(&mut self) -> Result<(), String> {
        self.run_until(Duration::from_secs(30), |s| {
            s.a.is_connected() && s.b.is_connected()
        })
    }
}

/// Figures of one bulk transfer through the simulated path.
struct Goodput {
    /// Application bytes delivered per second in the window, over the bottleneck rate.
    window: f64,
    /// The same from the first byte written to the end of the window (slow start included).
    overall: f64,
    /// Wire bytes (headers included) delivered A to B in the window, over the bottleneck.
    wire: f64,
    dropped_queue: u64,
    dropped_loss: u64,
}

/// A bulk transfer A to B on one reliable channel: the sender keeps its send buffer full with
/// [`SIM_MESSAGE`]-byte messages, the receiver reads every message as soon as it is complete.
fn sim_goodput(
    config: &AssociationConfig,
    certs: &(Certificate, Certificate),
    path: Path,
    sizes: &Sizes,
) -> Result<Goodput, String> {
    let mut sim = Sim::new(config, certs, path, 0x5eed).map_err(|e| e.to_string())?;
    sim.connect()?;
    let id = sim
        .a
        .open_channel(ChannelOptions::reliable("bulk", ""))
        .map_err(|e| e.to_string())?;
    let message = vec![0x5a; SIM_MESSAGE];
    let start = sim.now;
    let window_from = start + sizes.sim_warmup;
    let end = window_from + sizes.sim_window;
    let mut delivered: u64 = 0;
    let mut at_window: Option<(u64, u64, u64, u64)> = None;
    let trace = std::env::var("DC_BENCH_TRACE").is_ok();
    let mut next_trace = start;
    loop {
        loop {
            match sim.a.send(id, &message, true) {
                Ok(()) => {}
                Err(ChannelError::SendBufferFull) => break,
                Err(e) => return Err(format!("send: {e}")),
            }
        }
        while let Ok(Some(m)) = sim.b.recv(id) {
            delivered += m.data.len() as u64;
        }
        sim.flush()?;
        if at_window.is_none() && sim.now >= window_from {
            at_window = Some((
                delivered,
                sim.ab.delivered_wire,
                sim.ab.dropped_queue + sim.ba.dropped_queue,
                sim.ab.dropped_loss + sim.ba.dropped_loss,
            ));
        }
        if sim.now >= end {
            break;
        }
        if trace && sim.now >= next_trace {
            next_trace += Duration::from_millis(100);
            let wire: usize = sim.ab.in_flight.iter().map(|f| f.1).sum();
            eprintln!(
                "t={:>6.0}ms delivered={:>10} queue={:>8} wire={:>8} buffered={:>8} drops={}",
                (sim.now - start).as_secs_f64() * 1e3,
                delivered,
                sim.ab.queued_bytes,
                wire,
                sim.a.buffered_amount(id),
                sim.ab.dropped_queue
            );
        }
        sim.advance(if at_window.is_some() {
            end
        } else {
            window_from
        })?;
    }
    let (d0, w0, q0, l0) = at_window.unwrap_or_default();
    let rate = BOTTLENECK_BPS as f64 / 8.0;
    let window = sizes.sim_window.as_secs_f64();
    Ok(Goodput {
        window: (delivered - d0) as f64 / window / rate,
        overall: delivered as f64 / (end - start).as_secs_f64() / rate,
        wire: (sim.ab.delivered_wire - w0) as f64 / window / rate,
        dropped_queue: sim.ab.dropped_queue + sim.ba.dropped_queue - q0,
        dropped_loss: sim.ab.dropped_loss + sim.ba.dropped_loss - l0,
    })
}

/// The steady-state throughput bound of a Reno-like (loss-halving) sender under random loss
/// `p` (Mathis et al. 1997: MSS / RTT * sqrt(3 / 2p)), as a fraction of the bottleneck.
fn reno_bound(mss: usize, rtt: Duration, p: f64) -> f64 {
    if p <= 0.0 {
        return f64::INFINITY;
    }
    let bytes_per_s = mss as f64 / rtt.as_secs_f64() * (1.5 / p).sqrt();
    bytes_per_s / (BOTTLENECK_BPS as f64 / 8.0)
}

/// Application payload of one full SCTP DATA chunk at `mtu` (the association leaves 80 bytes
/// of each datagram for DTLS and SCTP framing).
fn payload_per_datagram(mtu: usize) -> usize {
    mtu.saturating_sub(80).max(512)
}

/// Builds the association settings for a path.
type MakeConfig<'a> = &'a dyn Fn(&Path) -> AssociationConfig;

/// Part 2: the goodput matrix, for each configuration.
fn part_simulated(sizes: &Sizes, certs: &(Certificate, Certificate)) {
    // Three ways to size the windows: the library defaults; a large fixed window (8 MiB, more
    // than the 100 ms path's BDP); and windows sized to 1.5 BDP of each path, which keeps the
    // sender from overflowing a one-BDP drop-tail queue while covering the BDP.
    let sized = |path: &Path| {
        let bdp = BOTTLENECK_BPS as f64 / 8.0 * 2.0 * path.delay.as_secs_f64();
        let window = ((bdp * 1.5) as usize).max(64 * 1024);
        AssociationConfig {
            receive_window: u32::try_from(window).unwrap_or(u32::MAX),
            send_buffer: window,
            ..AssociationConfig::default()
        }
    };
    let configs: [(&str, MakeConfig<'_>); 3] = [
        ("defaults", &|_| AssociationConfig::default()),
        ("8 MiB", &|_| AssociationConfig {
            receive_window: 8 * 1024 * 1024,
            send_buffer: 8 * 1024 * 1024,
            ..AssociationConfig::default()
        }),
        ("1.5 BDP", &sized),
    ];
    let losses = [0.0, 0.01];
    let mut table = Table::new(
        &format!(
            "Simulated path, virtual time: goodput of one reliable channel over a 100 Mbit/s \
             bottleneck (drop-tail queue of one BDP), window of {:.1} s after {:.1} s of transfer",
            sizes.sim_window.as_secs_f64(),
            sizes.sim_warmup.as_secs_f64()
        ),
        &[
            "windows",
            "rwnd/sndbuf KiB",
            "one-way",
            "loss",
            "goodput",
            "from start",
            "wire use",
            "queue drops",
            "random drops",
            "Reno bound",
            "target",
            "CPU s",
        ],
    );
    let started = Instant::now();
    for (name, make) in &configs {
        for &loss in &losses {
            // Under random loss the congestion window never reaches even the default
            // windows, so the large-window rows would repeat the default ones.
            if loss > 0.0 && *name == "8 MiB" {
                continue;
            }
            for &ms in &sizes.delays_ms {
                let path = Path {
                    delay: Duration::from_millis(ms),
                    loss,
                };
                let config = make(&path);
                let target = match (loss > 0.0, ms) {
                    (false, _) => Some(0.9),
                    (true, 25) => Some(0.5),
                    _ => None,
                };
                let mss = payload_per_datagram(config.mtu);
                let bound = reno_bound(mss, path.delay * 2, loss);
                let cpu = Instant::now();
                let cells = match sim_goodput(&config, certs, path, sizes) {
                    Ok(g) => vec![
                        pct(g.window),
                        pct(g.overall),
                        pct(g.wire),
                        g.dropped_queue.to_string(),
                        g.dropped_loss.to_string(),
                        if bound.is_finite() {
                            pct(bound.min(1.0))
                        } else {
                            "-".into()
                        },
                        match target {
                            Some(t) if g.window >= t => format!(">= {:.0}% met", t * 100.0),
                            Some(t) => format!(">= {:.0}% MISSED", t * 100.0),
                            None => "-".into(),
                        },
                        format!("{:.1}", cpu.elapsed().as_secs_f64()),
                    ],
                    Err(e) => vec![format!("failed: {e}")],
                };
                let mut row = vec![
                    name.to_string(),
                    format!(
                        "{}/{}",
                        config.receive_window / 1024,
                        config.send_buffer / 1024
                    ),
                    format!("{ms} ms"),
                    format!("{:.0}%", loss * 100.0),
                ];
                row.extend(cells);
                table.row(row);
            }
        }
    }
    table.print();
    let mtu = AssociationConfig::default().mtu;
    let mss = payload_per_datagram(mtu);
    let datagram = mss + 28 + 37;
    println!(
        "goodput: application bytes delivered in the window / 100 Mbit/s. wire use: A->B bytes \
         on the bottleneck (IPv4+UDP headers included) in the window. Framing ceiling at mtu \
         {mtu}: {mss} payload bytes per {} wire bytes = {}. Reno bound: Mathis et al. \
         MSS/RTT*sqrt(3/2p) with MSS {mss} and the base RTT. Reliable ordered messages of {} \
         KiB; loss applies to both directions. ({:.1} s of CPU time)",
        datagram + IP_UDP_OVERHEAD,
        pct(mss as f64 / (datagram + IP_UDP_OVERHEAD) as f64),
        SIM_MESSAGE / 1024,
        started.elapsed().as_secs_f64()
    );
}

/// Figures of one simulated handshake.
struct Handshake {
    client_connected: Duration,
    server_connected: Duration,
    first_message: Duration,
    datagrams: u64,
    /// From the opener's graceful `close()` to both associations closed, if they did.
    close: Option<Duration>,
}

/// From `Association::new` on both sides (ICE connected) to the first message delivered on a
/// channel that `opener` opens as soon as it is connected.
fn sim_handshake(
    certs: &(Certificate, Certificate),
    delay: Duration,
    opener: DtlsRole,
) -> Result<Handshake, String> {
    let path = Path { delay, loss: 0.0 };
    let mut sim =
        Sim::new(&AssociationConfig::default(), certs, path, 1).map_err(|e| e.to_string())?;
    let start = sim.now;
    let mut client_connected = None;
    let mut server_connected = None;
    let mut channel: Option<ChannelId> = None;
    let mut delivered = None;
    sim.run_until(Duration::from_secs(60), |s| {
        if client_connected.is_none() && s.a.is_connected() {
            client_connected = Some(s.now - start);
        }
        if server_connected.is_none() && s.b.is_connected() {
            server_connected = Some(s.now - start);
        }
        let (sender, receiver) = match opener {
            DtlsRole::Client => (&mut s.a, &mut s.b),
            DtlsRole::Server => (&mut s.b, &mut s.a),
        };
        if channel.is_none() && sender.is_connected() {
            if let Ok(id) = sender.open_channel(ChannelOptions::reliable("test", "xmpp-jingle")) {
                if sender.send(id, b"first", true).is_ok() {
                    channel = Some(id);
                }
            }
        }
        if let Some(id) = channel {
            if let Ok(Some(_)) = receiver.recv(id) {
                delivered = Some(s.now - start);
            }
        }
        delivered.is_some()
    })?;
    // Then a graceful close by the opener (SCTP SHUTDOWN, DTLS close_notify).
    sim.closing = true;
    let closing_at = sim.now;
    match opener {
        DtlsRole::Client => sim.a.close(closing_at),
        DtlsRole::Server => sim.b.close(closing_at),
    }
    let close = sim
        .run_until(Duration::from_secs(30), |s| {
            s.a.closed().is_some() && s.b.closed().is_some()
        })
        .ok()
        .map(|_| sim.now - closing_at);
    Ok(Handshake {
        close,
        client_connected: client_connected.unwrap_or_default(),
        server_connected: server_connected.unwrap_or_default(),
        first_message: delivered.unwrap_or_default(),
        datagrams: sim.a.stats().handshake_datagrams_sent + sim.b.stats().handshake_datagrams_sent,
    })
}

fn part_handshake_sim(sizes: &Sizes, certs: &(Certificate, Certificate)) {
    let mut table = Table::new(
        "Handshake in the simulator: from Association::new on both sides (ICE connected) to \
         the first message delivered (100 Mbit/s, no loss)",
        &[
            "one-way",
            "opener",
            "client up",
            "server up",
            "first message",
            "in RTTs",
            "handshake datagrams",
            "graceful close",
        ],
    );
    for &ms in &sizes.delays_ms {
        let delay = Duration::from_millis(ms);
        let rtt = (delay * 2).as_secs_f64();
        for opener in [DtlsRole::Client, DtlsRole::Server] {
            let name = match opener {
                DtlsRole::Client => "DTLS client",
                DtlsRole::Server => "DTLS server",
            };
            match sim_handshake(certs, delay, opener) {
                Ok(h) => table.row(vec![
                    format!("{ms} ms"),
                    name.into(),
                    format!("{:.2} RTT", h.client_connected.as_secs_f64() / rtt),
                    format!("{:.2} RTT", h.server_connected.as_secs_f64() / rtt),
                    format!("{:.1} ms", h.first_message.as_secs_f64() * 1e3),
                    format!("{:.2}", h.first_message.as_secs_f64() / rtt),
                    h.datagrams.to_string(),
                    h.close.map_or("not within 30 s".into(), |c| {
                        format!("{:.1} ms", c.as_secs_f64() * 1e3)
                    }),
                ]),
                Err(e) => table.row(vec![
                    format!("{ms} ms"),
                    name.into(),
                    format!("failed: {e}"),
                ]),
            }
        }
    }
    table.print();
    println!(
        "client/server up: Association::is_connected (DTLS done, SCTP established) on that side. \
         The opener opens a channel and sends one message as soon as it is up; handshake \
         datagrams: DTLS datagrams both sides sent before their DTLS handshake completed. \
         graceful close: from the opener's Association::close to both associations closed."
    );
}

// ---- part 4: memory --------------------------------------------------------------------------

fn part_memory(sizes: &Sizes, certs: &(Certificate, Certificate)) {
    let path = Path {
        delay: Duration::from_millis(10),
        loss: 0.0,
    };
    let idle = Duration::from_secs(if full_run() { 30 } else { 5 });
    COUNTING.store(true, Ordering::Relaxed);
    // Associations: connect pairs, idle them, keep only the associations.
    let pairs = sizes.memory_associations.div_ceil(2).max(1);
    let mut kept: Vec<Association> = Vec::with_capacity(pairs * 2);
    let mut per_association = None;
    // Once to warm up lazily allocated process state, then measured.
    for round in 0..2 {
        kept.clear();
        kept.shrink_to(pairs * 2);
        let before = live();
        let mut result = Ok(());
        for i in 0..pairs {
            let mut sim = match Sim::new(&AssociationConfig::default(), certs, path, i as u64) {
                Ok(s) => s,
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            };
            if let Err(e) = sim.connect().and_then(|_| sim.idle(idle)) {
                result = Err(e);
                break;
            }
            let Sim { a, b, .. } = sim;
            kept.push(a);
            kept.push(b);
            if round == 0 {
                break;
            }
        }
        if let Err(e) = result {
            println!("memory: associations failed: {e}");
            break;
        }
        // `kept` was allocated before `before`: the delta is the associations' own heap.
        let after = live();
        if round == 1 {
            per_association = Some((after - before) / kept.len().max(1) as isize);
        }
    }
    let kept_count = kept.len();
    drop(kept);

    // Channels: one connected pair, A opens idle channels, B accepts them.
    let mut per_channel = None;
    let channels = sizes.memory_channels;
    let config = AssociationConfig {
        max_channels: channels + 16,
        ..AssociationConfig::default()
    };
    let outcome = (|| -> Result<isize, String> {
        let mut sim = Sim::new(&config, certs, path, 99).map_err(|e| e.to_string())?;
        sim.connect()?;
        // Warm up with one channel, then measure the rest.
        let first = sim
            .a
            .open_channel(ChannelOptions::reliable("warm", "xmpp-jingle"))
            .map_err(|e| e.to_string())?;
        sim.run_until(Duration::from_secs(5), |s| s.b.has_channel(first))?;
        sim.idle(Duration::from_secs(1))?;
        let mut ids = Vec::with_capacity(channels);
        let before = live();
        for i in 0..channels {
            let id = sim
                .a
                .open_channel(ChannelOptions::reliable(format!("c{i}"), "xmpp-jingle"))
                .map_err(|e| format!("channel {i}: {e}"))?;
            ids.push(id);
        }
        let all_open = |s: &mut Sim| ids.iter().all(|id| s.b.has_channel(*id));
        sim.run_until(Duration::from_secs(10), all_open)?;
        // Leave them idle a while (SCTP heartbeats run), then measure.
        sim.idle(idle)?;
        let ids_bytes = (ids.capacity() * std::mem::size_of::<ChannelId>()) as isize;
        let after = live();
        Ok((after - before - ids_bytes) / channels as isize)
    })();
    match outcome {
        Ok(b) => per_channel = Some(b),
        Err(e) => println!("memory: channels failed: {e}"),
    }
    COUNTING.store(false, Ordering::Relaxed);

    let mut table = Table::new(
        &format!(
            "Memory: live heap bytes, counting allocator ({kept_count} idle connected associations; \
             {channels} idle channels on one association; {} s idle in virtual time)",
            idle.as_secs()
        ),
        &["measure", "bytes", "inline size"],
    );
    table.row(vec![
        "per idle association".into(),
        per_association.map_or("failed".into(), |b| b.to_string()),
        std::mem::size_of::<Association>().to_string(),
    ]);
    table.row(vec![
        "per idle channel (both ends)".into(),
        per_channel.map_or("failed".into(), |b| b.to_string()),
        "-".into(),
    ]);
    table.print();
    println!(
        "per association: heap owned by one connected, idle Association (DTLS + SCTP state, \
         certificate copy, buffers), plus its inline size where it is stored; per channel: what opening one \
         reliable channel adds to the opener and the acceptor together."
    );
}

// ---- part 1 and 3: real loopback -------------------------------------------------------------

/// Raw UDP blasting on loopback: one thread sends 1200-byte datagrams as fast as it can for
/// `duration`, another counts what arrives. Returns received bytes per second.
fn raw_udp(duration: Duration) -> std::io::Result<f64> {
    let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    tx.connect(rx.local_addr()?)?;
    rx.set_read_timeout(Some(Duration::from_millis(200)))?;
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut bytes = 0u64;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        while let Ok(n) = rx.recv(&mut buf) {
            if n == 0 {
                break;
            }
            last = Instant::now();
            first.get_or_insert(last);
            bytes += n as u64;
        }
        (bytes, first, last)
    });
    let datagram = [0x17u8; 1200];
    let start = Instant::now();
    while start.elapsed() < duration {
        for _ in 0..64 {
            // A full socket buffer (ENOBUFS) is just a lost datagram: keep blasting.
            let _ = tx.send(&datagram);
        }
    }
    let _ = tx.send(&[]);
    let (bytes, first, last) = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver thread panicked"))?;
    let span = first.map_or(duration, |f| last.saturating_duration_since(f));
    Ok(bytes as f64 / span.as_secs_f64().max(1e-9))
}

async fn ice_pair() -> Result<(Arc<IceConnection>, Arc<IceConnection>), String> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let build = |role| {
        IceConnection::builder(role)
            .include_loopback(true)
            .ipv6(false)
            .allow_address(ip)
    };
    let a = Arc::new(
        build(Role::Controlling)
            .start()
            .await
            .map_err(|e| e.to_string())?,
    );
    let b = Arc::new(
        build(Role::Controlled)
            .start()
            .await
            .map_err(|e| e.to_string())?,
    );
    a.set_remote_credentials(b.local_credentials())
        .await
        .map_err(|e| e.to_string())?;
    b.set_remote_credentials(a.local_credentials())
        .await
        .map_err(|e| e.to_string())?;
    for (from, to) in [(&a, &b), (&b, &a)] {
        let candidates = from.local_candidates();
        if candidates.is_empty() {
            return Err("no loopback candidate".into());
        }
        for c in &candidates {
            to.add_remote_candidate(remote_candidate(c))
                .await
                .map_err(|e| e.to_string())?;
        }
        to.end_of_remote_candidates()
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok((a, b))
}

fn remote_candidate(c: &Candidate) -> Candidate {
    Candidate::remote(
        c.foundation.clone(),
        c.component,
        c.priority,
        c.address,
        c.kind,
        c.related_address,
    )
}

/// A connected pair of `DataChannels` on loopback, A the DTLS client, and the instant both
/// ICE connections were connected.
async fn channels_pair(
    config: DataChannelsConfig,
) -> Result<(DataChannels, DataChannels, Instant), String> {
    let (ia, ib) = ice_pair().await?;
    let (ra, rb) = tokio::join!(ia.wait_connected(), ib.wait_connected());
    ra.and(rb).map_err(|e| format!("ICE: {e}"))?;
    let ice_connected = Instant::now();
    let ca = Certificate::generate().map_err(|e| e.to_string())?;
    let cb = Certificate::generate().map_err(|e| e.to_string())?;
    let (a, b) = tokio::join!(
        DataChannels::connect(ia, &ca, DtlsRole::Client, remote_of(&cb), config.clone()),
        DataChannels::connect(ib, &cb, DtlsRole::Server, remote_of(&ca), config),
    );
    Ok((
        a.map_err(|e| format!("A: {e}"))?,
        b.map_err(|e| format!("B: {e}"))?,
        ice_connected,
    ))
}

/// One reliable channel, `total` bytes A to B through the byte-stream API. Bytes per second
/// from the first write to the last byte read.
async fn loopback_throughput(total: usize, config: DataChannelsConfig) -> Result<f64, String> {
    let (a, b, _) = channels_pair(config).await?;
    let mut writer = a
        .open(ChannelOptions::reliable("bulk", "xmpp-jingle"))
        .map_err(|e| e.to_string())?;
    let mut reader = tokio::time::timeout(Duration::from_secs(10), b.accept())
        .await
        .map_err(|_| "accept timed out")?
        .ok_or("no channel accepted")?;
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let start = Instant::now();
    let write = tokio::spawn(async move {
        let mut left = total;
        while left > 0 {
            let n = left.min(block.len());
            writer.write_all(&block[..n]).await?;
            left -= n;
        }
        writer.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let read = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0usize;
        while got < total {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok::<_, std::io::Error>((got, Instant::now()))
    });
    let limit = Duration::from_secs(120);
    let (got, done) = tokio::time::timeout(limit, read)
        .await
        .map_err(|_| "transfer timed out")?
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("read: {e}"))?;
    tokio::time::timeout(limit, write)
        .await
        .map_err(|_| "writer timed out")?
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("write: {e}"))?;
    if got != total {
        return Err(format!("received {got} of {total} bytes"));
    }
    if std::env::var("DC_BENCH_TRACE").is_ok() {
        let (sa, sb) = (a.info().stats, b.info().stats);
        eprintln!(
            "loopback {:.1} MB/s: A sent {} datagrams, t3 {} fast {} sacks {}; B got {} DATA",
            total as f64 / (done - start).as_secs_f64() / 1e6,
            sa.datagrams_sent,
            sa.sctp_t3_timeouts,
            sa.sctp_fast_retransmits,
            sa.sctp_sacks_received,
            sb.sctp_data_chunks_received
        );
    }
    // Dropped, not closed: the close is timed in the simulator (its close column).
    drop((a, b));
    Ok(total as f64 / (done - start).as_secs_f64())
}

/// Send buffer and receive window of the "small windows" loopback run.
const SMALL_WINDOW: usize = 128 * 1024;

/// Figures of one loopback handshake.
struct LoopbackHandshake {
    handshake_a: Duration,
    handshake_b: Duration,
    first_message: Duration,
}

/// Handshake on loopback: `DataChannels::info().handshake` on both sides, and from both ICE
/// connections connected to the first message (A opens a channel once connected) read at B.
async fn loopback_handshake() -> Result<LoopbackHandshake, String> {
    let (a, b, ice_connected) = channels_pair(DataChannelsConfig::default()).await?;
    let channel = a
        .open(ChannelOptions::reliable("test", "xmpp-jingle"))
        .map_err(|e| e.to_string())?;
    channel
        .send(b"first", true)
        .await
        .map_err(|e| e.to_string())?;
    let delivered = tokio::time::timeout(Duration::from_secs(10), async {
        let c = b.accept().await?;
        c.recv().await?;
        Some(Instant::now())
    })
    .await
    .map_err(|_| "first message timed out")?
    .ok_or("no first message")?;
    let figures = LoopbackHandshake {
        handshake_a: a.info().handshake.unwrap_or_default(),
        handshake_b: b.info().handshake.unwrap_or_default(),
        first_message: delivered - ice_connected,
    };
    drop((a, b));
    Ok(figures)
}

/// Raw UDP round trip on loopback between two threads: the median of `n` ping-pongs.
fn raw_udp_rtt(n: usize) -> std::io::Result<Duration> {
    let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    a.set_read_timeout(Some(Duration::from_secs(1)))?;
    b.set_read_timeout(Some(Duration::from_secs(1)))?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = b.recv(&mut buf) {
            if n == 0 || b.send(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 256];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n + 10 {
        let t = Instant::now();
        a.send(&[0x17; 100])?;
        a.recv(&mut buf)?;
        samples.push(t.elapsed().as_secs_f64());
    }
    a.send(&[])?;
    let _ = echo.join();
    let mut samples = samples.split_off(10.min(samples.len()));
    Ok(Duration::from_secs_f64(median(&mut samples)))
}

/// The aiortc-to-aiortc baseline: (MB/s, open ms), or why it was skipped.
fn aiortc_baseline(bytes: usize) -> Result<(f64, f64), String> {
    if bytes == 0 {
        return Err("skipped (quick run, or DC_BENCH_AIORTC_MIB=0)".into());
    }
    let probe = Command::new("python3")
        .args(["-c", "import aiortc"])
        .output()
        .map_err(|e| format!("skipped: python3 not runnable: {e}"))?;
    if !probe.status.success() {
        let why = String::from_utf8_lossy(&probe.stderr);
        let why = why
            .lines()
            .last()
            .unwrap_or("import failed")
            .trim()
            .to_string();
        return Err(format!("skipped: `import aiortc` failed: {why}"));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aiortc/dc_peer.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--bench", "--bytes", &bytes.to_string(), "--timeout", "150"])
        .output()
        .map_err(|e| format!("failed to run {script}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("AIORTC_BENCH"))
        .ok_or_else(|| {
            format!(
                "no AIORTC_BENCH line (exit {:?}): {} {}",
                out.status.code(),
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let seconds = field("seconds").ok_or("no seconds= field")?;
    let open_ms = field("open_ms").unwrap_or(f64::NAN);
    Ok((bytes as f64 / seconds, open_ms))
}

fn part_loopback(sizes: &Sizes) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            println!("loopback: no tokio runtime: {e}");
            return;
        }
    };
    // Throughput: raw UDP and ours interleaved, medians.
    // Besides the defaults, small windows: loopback needs little data in flight, and a small
    // receive window exercises the window updates (vendor/sctp-proto/PATCHES.md).
    let small = {
        let mut c = DataChannelsConfig::default();
        c.association.send_buffer = SMALL_WINDOW;
        c.association.receive_window = SMALL_WINDOW as u32;
        c
    };
    let mut udp = Vec::new();
    let mut ours = Vec::new();
    let mut ours_small = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..sizes.rounds {
        match raw_udp(sizes.udp_blast) {
            Ok(v) => udp.push(v),
            Err(e) => errors.push(format!("raw UDP: {e}")),
        }
        match runtime.block_on(loopback_throughput(
            sizes.loopback_bytes,
            DataChannelsConfig::default(),
        )) {
            Ok(v) => ours.push(v),
            Err(e) => errors.push(format!("data channel: {e}")),
        }
        match runtime.block_on(loopback_throughput(sizes.loopback_bytes, small.clone())) {
            Ok(v) => ours_small.push(v),
            Err(e) => errors.push(format!("data channel, small windows: {e}")),
        }
    }
    let aiortc = aiortc_baseline(sizes.aiortc_bytes);
    let udp = median(&mut udp);
    let ours_bps = median(&mut ours);
    let ours_small_bps = median(&mut ours_small);
    let mut table = Table::new(
        &format!(
            "Loopback, CPU-bound: one reliable channel, {:.1} MiB one way through the \
             byte-stream API, median of {} (MB = 10^6 bytes)",
            sizes.loopback_bytes as f64 / (1 << 20) as f64,
            sizes.rounds
        ),
        &["setup", "MB/s", "ours / baseline", "target"],
    );
    let verdict = |r: f64| {
        if r >= 0.4 {
            ">= 40% met".to_string()
        } else {
            ">= 40% MISSED".to_string()
        }
    };
    table.row(vec![
        "raw UDP, 1200-byte datagrams received (baseline)".into(),
        mbytes(udp),
        "-".into(),
        "-".into(),
    ]);
    match &aiortc {
        Ok((bps, _)) => table.row(vec![
            format!(
                "aiortc 1.16 to aiortc, {} MiB (baseline)",
                sizes.aiortc_bytes >> 20
            ),
            mbytes(*bps),
            "-".into(),
            "-".into(),
        ]),
        Err(e) => table.row(vec![
            format!("aiortc baseline: {e}"),
            "-".into(),
            "-".into(),
        ]),
    }
    for (name, bps) in [
        ("jingle-ice, default windows", ours_bps),
        ("jingle-ice, 128 KiB windows", ours_small_bps),
    ] {
        table.row(vec![
            name.into(),
            mbytes(bps),
            if udp > 0.0 {
                format!("{:.1}% of raw UDP", bps / udp * 100.0)
            } else {
                "- (no raw UDP figure)".into()
            },
            if udp > 0.0 {
                verdict(bps / udp)
            } else {
                "-".into()
            },
        ]);
        table.row(vec![
            "".into(),
            "".into(),
            aiortc.as_ref().map_or("- (no aiortc)".into(), |(a, _)| {
                format!("{} aiortc", common::ratio(bps, *a))
            }),
            "".into(),
        ]);
    }
    table.print();
    println!(
        "jingle-ice: DataChannels over IceConnection on 127.0.0.1, tokio, 2 workers, stream_chunk \
         16 KiB. 128 KiB windows: send_buffer and \
         receive_window both {} KiB (defaults: 1024 and 4096).",
        SMALL_WINDOW / 1024
    );
    for e in &errors {
        println!("error: {e}");
    }

    // Handshake on loopback.
    let rtt = raw_udp_rtt(if full_run() { 1000 } else { 20 }).ok();
    let mut ha = Vec::new();
    let mut hb = Vec::new();
    let mut first = Vec::new();
    for _ in 0..sizes.handshake_rounds {
        match runtime.block_on(loopback_handshake()) {
            Ok(h) => {
                ha.push(h.handshake_a.as_secs_f64());
                hb.push(h.handshake_b.as_secs_f64());
                first.push(h.first_message.as_secs_f64());
            }
            Err(e) => println!("error: loopback handshake: {e}"),
        }
    }
    let mut table = Table::new(
        &format!(
            "Handshake on loopback (tokio driver), median of {}",
            sizes.handshake_rounds
        ),
        &["measure", "ms", "raw UDP RTTs"],
    );
    let in_rtts = |s: f64| rtt.map_or("-".into(), |r| format!("{:.1}", s / r.as_secs_f64()));
    if let Some(r) = rtt {
        table.row(vec![
            "raw UDP round trip (baseline)".into(),
            format!("{:.3}", r.as_secs_f64() * 1e3),
            "1.0".into(),
        ]);
    }
    for (name, samples) in [
        ("info().handshake, A (DTLS client)", &mut ha),
        ("info().handshake, B (DTLS server)", &mut hb),
        ("ICE connected -> first message read at B", &mut first),
    ] {
        let m = median(samples);
        table.row(vec![name.into(), format!("{:.3}", m * 1e3), in_rtts(m)]);
    }
    table.print();
    println!(
        "info().handshake: from ICE connected (as the driver saw it) to DTLS + SCTP established \
         on that side. First message: A opens a channel once connect() returns and sends 5 bytes; \
         timed from both ICE connections connected to B reading it."
    );
}

fn main() {
    let sizes = Sizes::get();
    let certs = match (Certificate::generate(), Certificate::generate()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("certificate generation failed: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    // DC_BENCH_PARTS=loopback,sim,handshake,memory runs only those parts (default: all).
    let parts = std::env::var("DC_BENCH_PARTS").unwrap_or_default();
    let wanted = |p: &str| parts.is_empty() || parts.split(',').any(|x| x.trim() == p);
    let mut took = Vec::new();
    let mut run = |name: &str, part: &dyn Fn()| {
        if wanted(name) {
            let t = Instant::now();
            part();
            took.push(format!("{name} {:.1} s", t.elapsed().as_secs_f64()));
        }
    };
    run("loopback", &|| part_loopback(&sizes));
    run("sim", &|| part_simulated(&sizes, &certs));
    run("handshake", &|| part_handshake_sim(&sizes, &certs));
    run("memory", &|| part_memory(&sizes, &certs));
    println!("\nparts: {}", took.join(", "));
    println!(
        "\ndatachannel bench done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
