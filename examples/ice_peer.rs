//! One ICE peer that signals over stdin/stdout: the lab's test peer.
//!
//! It prints its credentials and candidates as text lines, reads the peer's lines from stdin
//! (a test or a person relays them), connects with [`IceConnection`], optionally moves a given
//! number of bytes of checked datagram traffic, and prints one machine-readable `result` line.
//!
//! Signalling lines, in both directions (candidates in the RFC 8839 §5.1 syntax, trickled as
//! RFC 8838 §4 describes):
//! ```text
//! creds <ufrag> <pwd>
//! cand candidate:<foundation> <component> udp <priority> <ip> <port> typ <type> [raddr .. rport ..]
//! eoc                      (end of candidates)
//! done                     (this side has finished its transfer; exit once both have)
//! ```
//! The last line on stdout is
//! ```text
//! result selected=<local type>/<remote type> local=<addr> remote=<addr> first_working_ms=<t>
//!        nominated_ms=<t> bytes_ok=<n> corrupted=<n> resent=<n> final_state=<state>
//!        gathering_ms=<t> after_candidate_ms=<t>
//! ```
//! (on one line), with times measured from the moment this side had both the peer's
//! credentials and its first candidate (`gathering_ms`: from the start to the end of gathering,
//! STUN and TURN servers included; `after_candidate_ms`: from the arrival of the remote
//! candidate of the selected pair to the first working pair, the agent's own share of the time). A sender's `bytes_ok` is what the receiver reported
//! verified; a receiver's is what it verified itself.
//!
//! Traffic (`--bytes N`): 1200-byte datagrams (the last one shorter), each with a sequence
//! number, a payload derived from it and a CRC-32, paced at `--rate-mbps`. The receiver checks
//! every byte, and answers the sender's end marker with a report listing missing datagrams, which
//! the sender resends (bounded rounds), so a lost datagram does not fail the run but shows as
//! `resent`; a corrupted one does fail it.
//!
//! Flags: `--role controlling|controlled` (required), `--stun IP:PORT` (repeatable),
//! `--turn-udp IP:PORT` / `--turn-tcp IP:PORT` (repeatable TURN servers, with
//! `--turn-tls NAME@IP:PORT` for TURN over TLS verified against NAME, `--turn-ca FILE` to
//! trust that CA instead of the system roots, `--turn-secret S` for coturn's time-limited
//! credentials),
//! `--bytes N` (send N bytes; 0, the default, only receives), `--rate-mbps R` (pacing, default
//! 16 MB/s), `--ta-ms MS` (check pacing Ta, RFC 8445 §14.2; default 10 ms), `--hold SECS` (after the
//! traffic, keep the connection up to SECS or until it fails, and report `final_state=`), `--timeout SECS`
//! (whole run, default 60). Diagnostics (state changes, the selected pair, send rate, driver
//! counters) go to stderr; `RUST_LOG=jingle_ice=debug` adds the agent's logs. The process
//! exits non-zero, with `ice_peer: FAILED: <why>` on stderr, when it does not connect, the
//! signalling is malformed, any datagram arrives corrupted, or the receiver did not verify
//! every byte. A time is negative when the event came before the peer's first candidate (a
//! peer-reflexive success) and `none` when it never happened.
//!
//! ```sh
//! ice_peer --role controlling --stun 203.0.113.10:3478 --bytes 10485760
//! ```

use std::error::Error;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jingle_ice::ice::{AgentConfig, Candidate, ConnectionState, Credentials, IceEvent, Role};
use jingle_ice::net::{IceConnection, SelectedPair};
use jingle_ice::turn::{TurnConfig, TurnCredentials, TurnTransport};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

type BoxError = Box<dyn Error + Send + Sync>;

/// First byte of every datagram of ours: 23 lies in the range RFC 7983 §7 keeps apart from
/// STUN (0-3), so the agents hand it to the application.
const MARKER: u8 = 23;
/// Datagram kinds (second byte).
const KIND_DATA: u8 = 1;
const KIND_END: u8 = 2;
const KIND_REPORT: u8 = 3;
/// Size of a full data datagram.
const DATAGRAM: usize = 1200;
/// marker + kind + sequence number.
const HEADER: usize = 2 + 8;
/// CRC-32 trailer.
const TRAILER: usize = 4;
/// Smallest datagram we send.
const MIN_DATAGRAM: usize = HEADER + TRAILER;
/// Highest sequence number a receiver tracks (bounds its memory: 2 MiB of bitmap).
const MAX_TRACKED: u64 = 1 << 24;
/// Missing sequence numbers listed in one report.
const MAX_MISSING_PER_REPORT: usize = 128;
/// End-marker rounds before the sender gives up on a complete report.
const MAX_ROUNDS: u32 = 50;
/// How long the sender waits for a report after an end marker.
const REPORT_WAIT: Duration = Duration::from_millis(300);

/// Settings from the command line.
struct Options {
    role: Role,
    stun: Vec<SocketAddr>,
    bytes: u64,
    rate_mbps: f64,
    timeout: Duration,
    /// Check pacing (RFC 8445 §14.2, default 10 ms).
    ta: Option<Duration>,
    /// TURN servers: address and transport.
    turn: Vec<(SocketAddr, TurnTransport)>,
    /// A TURN server over TLS (RFC 8656 §3.1) and the name its certificate must carry.
    turn_tls: Option<(SocketAddr, String)>,
    /// CA file to verify TURN servers' certificates with (else the system roots).
    turn_ca: Option<String>,
    /// Shared secret of the TURN servers' time-limited credentials (coturn `use-auth-secret`).
    turn_secret: Option<String>,
    /// After the traffic, keep the connection this long (or until it fails) and report its
    /// final state: how it survives servers going away.
    hold: Option<Duration>,
}

fn parse_args() -> Result<Options, String> {
    let mut role = None;
    let mut stun = Vec::new();
    let mut bytes = 0;
    let mut rate_mbps: f64 = 16.0;
    let mut timeout_s = 60u64;
    let mut ta = None;
    let mut turn = Vec::new();
    let mut turn_secret = None;
    let mut hold = None;
    let mut turn_tls = None;
    let mut turn_ca = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--role" => {
                role = Some(match value("--role")?.as_str() {
                    "controlling" => Role::Controlling,
                    "controlled" => Role::Controlled,
                    other => return Err(format!("unknown role {other:?}")),
                })
            }
            "--stun" => stun.push(
                value("--stun")?
                    .parse()
                    .map_err(|e| format!("--stun: {e}"))?,
            ),
            "--bytes" => {
                bytes = value("--bytes")?
                    .parse()
                    .map_err(|e| format!("--bytes: {e}"))?;
                if bytes != 0 && bytes < MIN_DATAGRAM as u64 {
                    return Err(format!("--bytes must be 0 or at least {MIN_DATAGRAM}"));
                }
            }
            "--turn-udp" | "--turn-tcp" => {
                let transport = if arg == "--turn-udp" {
                    TurnTransport::Udp
                } else {
                    TurnTransport::Tcp
                };
                let addr = value("--turn-udp/--turn-tcp")?
                    .parse()
                    .map_err(|e| format!("{arg}: {e}"))?;
                turn.push((addr, transport));
            }
            "--turn-secret" => turn_secret = Some(value("--turn-secret")?),
            "--turn-tls" => {
                let spec = value("--turn-tls")?;
                let (name, addr) = spec
                    .split_once('@')
                    .ok_or("--turn-tls takes NAME@IP:PORT")?;
                let addr = addr.parse().map_err(|e| format!("--turn-tls: {e}"))?;
                turn_tls = Some((addr, name.to_owned()));
            }
            "--turn-ca" => turn_ca = Some(value("--turn-ca")?),
            "--rate-mbps" => {
                rate_mbps = value("--rate-mbps")?
                    .parse()
                    .map_err(|e| format!("--rate-mbps: {e}"))?;
                if !(rate_mbps > 0.0 && rate_mbps.is_finite()) {
                    return Err("--rate-mbps must be positive".into());
                }
            }
            "--hold" => {
                let secs: u64 = value("--hold")?
                    .parse()
                    .map_err(|e| format!("--hold: {e}"))?;
                hold = Some(Duration::from_secs(secs));
            }
            "--timeout" => {
                timeout_s = value("--timeout")?
                    .parse()
                    .map_err(|e| format!("--timeout: {e}"))?
            }
            "--ta-ms" => {
                let ms: u64 = value("--ta-ms")?
                    .parse()
                    .map_err(|e| format!("--ta-ms: {e}"))?;
                ta = Some(Duration::from_millis(ms));
            }
            "-h" | "--help" => {
                return Err(
                    "usage: ice_peer --role controlling|controlled [--stun IP:PORT]... \
                     [--turn-udp IP:PORT]... [--turn-tcp IP:PORT]... [--turn-tls NAME@IP:PORT] \
                     [--turn-ca FILE] [--turn-secret S] \
                     [--bytes N] [--rate-mbps R] [--ta-ms MS] [--hold SECS] [--timeout SECS]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        role: role.ok_or("--role is required")?,
        turn,
        turn_secret,
        hold,
        turn_tls,
        turn_ca,
        stun,
        bytes,
        rate_mbps,
        timeout: Duration::from_secs(timeout_s),
        ta,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ice_peer: {e}");
            return ExitCode::from(2);
        }
    };
    let limit = options.timeout;
    match timeout(limit, run(options)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("ice_peer: FAILED: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("ice_peer: FAILED: not finished after {limit:?}");
            ExitCode::FAILURE
        }
    }
}

/// Moments the result line reports.
#[derive(Default)]
struct Times {
    /// We had the peer's credentials and first candidate.
    start: Option<Instant>,
    have_creds: bool,
    have_cand: bool,
    /// First time the state reached Connected (a working pair).
    connected: Option<Instant>,
    /// The selected pair was announced.
    nominated: Option<Instant>,
    /// The connection was started (gathering began).
    gather_start: Option<Instant>,
    /// Gathering completed (host, server-reflexive and relayed candidates all in).
    gathered: Option<Instant>,
    /// When each remote candidate arrived, by address.
    arrivals: std::collections::HashMap<SocketAddr, Instant>,
}

/// Lines from the peer, as the stdin thread read them.
enum Line {
    Creds(Credentials),
    Cand(Candidate),
    Eoc,
    Done,
    Eof,
}

/// Reads stdin on a plain thread (stdin is blocking) and hands parsed lines over.
fn stdin_thread(tx: mpsc::UnboundedSender<Result<Line, String>>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(format!("reading stdin: {e}")));
                    return;
                }
            };
            let line = line.trim();
            let parsed = if let Some(rest) = line.strip_prefix("creds ") {
                let mut it = rest.split_ascii_whitespace();
                match (it.next(), it.next()) {
                    (Some(u), Some(p)) => Ok(Line::Creds(Credentials::new(u, p))),
                    _ => Err(format!("bad creds line {line:?}")),
                }
            } else if let Some(rest) = line.strip_prefix("cand ") {
                rest.parse::<Candidate>()
                    .map(Line::Cand)
                    .map_err(|e| format!("bad candidate {rest:?}: {e}"))
            } else if line == "eoc" {
                Ok(Line::Eoc)
            } else if line == "done" {
                Ok(Line::Done)
            } else if line.is_empty() {
                continue;
            } else {
                Err(format!("unknown signalling line {line:?}"))
            };
            if tx.send(parsed).is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(Line::Eof));
    });
}

async fn run(options: Options) -> Result<(), BoxError> {
    let mut builder = IceConnection::builder(options.role).receive_queue(16384);
    if let Some(ta) = options.ta {
        builder = builder.agent_config(AgentConfig {
            ta,
            ..AgentConfig::default()
        });
    }
    for s in &options.stun {
        builder = builder.stun_server(*s);
    }
    if !options.turn.is_empty() || options.turn_tls.is_some() {
        let secret = options
            .turn_secret
            .as_deref()
            .ok_or("--turn-udp/--turn-tcp/--turn-tls need --turn-secret")?;
        let credentials = || {
            TurnCredentials::time_limited_for(
                secret.as_bytes(),
                std::time::SystemTime::now(),
                Duration::from_secs(3600),
                Some("ice_peer"),
            )
        };
        for (server, transport) in &options.turn {
            builder = builder.turn_server(TurnConfig::new(*server, *transport, credentials()));
        }
        if let Some((server, name)) = &options.turn_tls {
            builder = builder.turn_server(TurnConfig::tls(*server, name.clone(), credentials()));
        }
        if let Some(ca) = &options.turn_ca {
            builder = builder.turn_ca_file(ca);
        }
    }
    let gather_start = Instant::now();
    let conn = Arc::new(builder.start().await?);
    let creds = conn.local_credentials();
    println!("creds {} {}", creds.ufrag, creds.pwd);
    let times = Arc::new(Mutex::new(Times {
        gather_start: Some(gather_start),
        ..Times::default()
    }));

    // Our events: trickle candidates out, note the moments.
    let events = {
        let conn = Arc::clone(&conn);
        let times = Arc::clone(&times);
        tokio::spawn(async move {
            while let Some(event) = conn.next_event().await {
                match event {
                    IceEvent::LocalCandidate(c) => println!("cand {}", c.to_sdp()),
                    IceEvent::GatheringComplete => {
                        lock(&times).gathered.get_or_insert_with(Instant::now);
                        println!("eoc")
                    }
                    IceEvent::StateChanged(state) => {
                        eprintln!("ice_peer: state {state:?}");
                        if matches!(
                            state,
                            ConnectionState::Connected | ConnectionState::Completed
                        ) {
                            lock(&times).connected.get_or_insert_with(Instant::now);
                        }
                    }
                    IceEvent::SelectedPair { local, remote, .. } => {
                        eprintln!(
                            "ice_peer: selected {} {} <-> {} {}",
                            local.kind, local.address, remote.kind, remote.address
                        );
                        lock(&times).nominated.get_or_insert_with(Instant::now);
                    }
                    IceEvent::RoleChanged(role) => eprintln!("ice_peer: role is now {role:?}"),
                    IceEvent::RelayFailed {
                        server,
                        error,
                        retry_in,
                    } => {
                        eprintln!("ice_peer: TURN server {server} failed: {error} (again in {retry_in:?})")
                    }
                    IceEvent::LocalCandidateRemoved(c) => {
                        eprintln!("ice_peer: candidate removed: {}", c.to_sdp())
                    }
                    IceEvent::SelectedPairLost { local, remote, .. } => eprintln!(
                        "ice_peer: selected pair lost: {} {} <-> {} {}",
                        local.kind, local.address, remote.kind, remote.address
                    ),
                }
            }
        })
    };

    // The peer's lines: feed the agent; `done` and end of input are published.
    let (peer_done_tx, mut peer_done) = watch::channel(false);
    let (line_tx, mut lines) = mpsc::unbounded_channel();
    stdin_thread(line_tx);
    let (fail_tx, mut fail) = mpsc::unbounded_channel::<String>();
    let signalling = {
        let conn = Arc::clone(&conn);
        let times = Arc::clone(&times);
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                let fed = match line {
                    Err(e) => Err(e),
                    Ok(Line::Creds(c)) => {
                        mark_start(&times, true, false);
                        conn.set_remote_credentials(c)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Ok(Line::Cand(c)) => {
                        mark_start(&times, false, true);
                        lock(&times)
                            .arrivals
                            .entry(c.address)
                            .or_insert_with(Instant::now);
                        conn.add_remote_candidate(c)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Ok(Line::Eoc) => conn
                        .end_of_remote_candidates()
                        .await
                        .map_err(|e| e.to_string()),
                    Ok(Line::Done) | Ok(Line::Eof) => {
                        let _ = peer_done_tx.send(true);
                        Ok(())
                    }
                };
                if let Err(e) = fed {
                    let _ = fail_tx.send(e);
                    return;
                }
            }
        })
    };

    // Connected, then nominated.
    tokio::select! {
        r = conn.wait_connected() => r.map_err(|e| format!("connecting: {e}"))?,
        Some(e) = fail.recv() => return Err(format!("signalling: {e}").into()),
    }
    let pair = loop {
        if let Some(p) = conn.selected_pair(1) {
            break p;
        }
        if let Ok(e) = fail.try_recv() {
            return Err(format!("signalling: {e}").into());
        }
        if conn.state() == ConnectionState::Failed {
            return Err("ICE failed before a pair was nominated".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };

    // Data: the receiver always runs; the sender when asked to.
    let (report_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let received = Arc::new(Mutex::new(Received::default()));
    let receiver = {
        let conn = Arc::clone(&conn);
        let received = Arc::clone(&received);
        tokio::spawn(async move { receive_loop(conn, received, report_tx).await })
    };
    let mut outcome = Outcome::default();
    if options.bytes > 0 {
        outcome = send_all(&conn, options.bytes, options.rate_mbps, &mut reports).await?;
    }
    println!("done");
    timeout(Duration::from_secs(30), peer_done.wait_for(|d| *d))
        .await
        .map_err(|_| "the peer did not finish within 30 s")?
        .map_err(|_| "signalling ended")?;

    // Hold: watch the connection (consent freshness keeps checking it) until it fails or the
    // time is up.
    if let Some(hold) = options.hold {
        let end = Instant::now() + hold;
        while Instant::now() < end && conn.state() != ConnectionState::Failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let final_state = conn.state();
    let got = lock(&received).clone();
    let (bytes_ok, corrupted) = if options.bytes > 0 {
        (outcome.bytes_ok, outcome.corrupted)
    } else {
        (got.bytes_ok, got.corrupted)
    };
    let stats = conn.stats();
    eprintln!(
        "ice_peer: driver received {} datagrams, dropped {} (receive queue full); \
         {} verified, {} duplicates, {} corrupted; {} checks sent",
        stats.datagrams_received,
        stats.datagrams_dropped,
        got.datagrams_ok,
        got.duplicates,
        got.corrupted,
        stats.agent.checks_sent
    );
    print_result(
        &pair,
        &lock(&times),
        bytes_ok,
        corrupted,
        outcome.resent,
        final_state,
    );
    conn.close().await;
    receiver.abort();
    events.abort();
    signalling.abort();
    if got.corrupted > 0 {
        return Err(format!("{} corrupted datagrams received", got.corrupted).into());
    }
    if options.bytes > 0 && (outcome.bytes_ok != options.bytes || outcome.corrupted > 0) {
        return Err(format!(
            "the receiver verified {} of {} bytes ({} corrupted)",
            outcome.bytes_ok, options.bytes, outcome.corrupted
        )
        .into());
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn mark_start(times: &Mutex<Times>, creds: bool, cand: bool) {
    let mut t = lock(times);
    t.have_creds |= creds;
    t.have_cand |= cand;
    if t.have_creds && t.have_cand && t.start.is_none() {
        t.start = Some(Instant::now());
    }
}

fn ms_since(start: Option<Instant>, at: Option<Instant>) -> String {
    match (start, at) {
        (Some(s), Some(a)) => {
            let ms = if a >= s {
                a.duration_since(s).as_secs_f64() * 1e3
            } else {
                -(s.duration_since(a).as_secs_f64() * 1e3)
            };
            format!("{ms:.1}")
        }
        _ => "none".into(),
    }
}

fn print_result(
    pair: &SelectedPair,
    times: &Times,
    bytes_ok: u64,
    corrupted: u64,
    resent: u64,
    final_state: ConnectionState,
) {
    println!(
        "result selected={}/{} local={} remote={} first_working_ms={} nominated_ms={} \
         bytes_ok={bytes_ok} corrupted={corrupted} resent={resent} final_state={final_state:?} \
         gathering_ms={} after_candidate_ms={}",
        pair.local.kind,
        pair.remote.kind,
        pair.local.address,
        pair.remote.address,
        ms_since(times.start, times.connected),
        ms_since(times.start, times.nominated),
        ms_since(times.gather_start, times.gathered),
        // From the arrival of the remote candidate of the selected pair (the signalled one; for
        // a peer-reflexive remote, from the first candidate) to the first working pair.
        ms_since(
            times
                .arrivals
                .get(&pair.remote.address)
                .copied()
                .or(times.start),
            times.connected
        ),
    );
}

// ---- checked datagram traffic -----------------------------------------------------------------

/// What the receiver has verified so far.
#[derive(Default, Clone)]
struct Received {
    /// Bitmap of verified sequence numbers.
    seen: Vec<u64>,
    bytes_ok: u64,
    datagrams_ok: u64,
    corrupted: u64,
    duplicates: u64,
}

impl Received {
    fn is_seen(&self, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        self.seen.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    fn mark(&mut self, seq: u64) {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= w {
            self.seen.resize(w + 1, 0);
        }
        if let Some(word) = self.seen.get_mut(w) {
            *word |= 1 << b;
        }
    }

    /// Up to `MAX_MISSING_PER_REPORT` sequence numbers below `total` not seen yet.
    fn missing(&self, total: u64) -> Vec<u64> {
        (0..total.min(MAX_TRACKED))
            .filter(|s| !self.is_seen(*s))
            .take(MAX_MISSING_PER_REPORT)
            .collect()
    }
}

/// A receiver's answer to an end marker.
#[derive(Debug)]
struct Report {
    datagrams_ok: u64,
    bytes_ok: u64,
    corrupted: u64,
    missing: Vec<u64>,
}

/// What the sender learnt.
#[derive(Default)]
struct Outcome {
    bytes_ok: u64,
    corrupted: u64,
    resent: u64,
}

/// The size of datagram `seq` when `total` (at least `MIN_DATAGRAM`) bytes are sent: 1200
/// bytes, except the last one (the rest), and the one before it when the rest would be shorter
/// than a header and trailer: it then gives the last one the bytes it lacks.
fn datagram_size(seq: u64, total: u64) -> usize {
    let full = DATAGRAM as u64;
    let min = MIN_DATAGRAM as u64;
    let count = datagram_count(total);
    let rest = total - (count - 1) * full; // 1..=1200
    let size = if seq + 1 == count {
        rest.max(min)
    } else if seq + 2 == count && rest < min {
        full - (min - rest)
    } else {
        full
    };
    size as usize
}

/// How many datagrams carry `total` bytes.
fn datagram_count(total: u64) -> u64 {
    total.div_ceil(DATAGRAM as u64).max(1)
}

/// The payload byte at offset `i` of datagram `seq`.
fn pattern(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(2_654_435_761).wrapping_add(i as u64 * 31) >> 3) as u8
}

fn build_data(seq: u64, size: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(MARKER);
    buf.push(KIND_DATA);
    buf.extend_from_slice(&seq.to_be_bytes());
    for i in HEADER..size - TRAILER {
        buf.push(pattern(seq, i));
    }
    let crc = crc32fast::hash(buf);
    buf.extend_from_slice(&crc.to_be_bytes());
}

/// Checks the CRC-32 trailer and returns the body (without it).
fn checked(datagram: &[u8]) -> Option<&[u8]> {
    let split = datagram.len().checked_sub(TRAILER)?;
    let (body, trailer) = datagram.split_at(split);
    let crc = u32::from_be_bytes(trailer.try_into().ok()?);
    (crc32fast::hash(body) == crc).then_some(body)
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let raw = bytes.get(at..at + 8)?;
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    body
}

async fn receive_loop(
    conn: Arc<IceConnection>,
    received: Arc<Mutex<Received>>,
    reports: mpsc::UnboundedSender<Report>,
) {
    while let Some(d) = conn.recv().await {
        let data = &d.data;
        if data.len() < MIN_DATAGRAM || data.first() != Some(&MARKER) {
            lock(&received).corrupted += 1;
            continue;
        }
        let Some(body) = checked(data) else {
            lock(&received).corrupted += 1;
            continue;
        };
        let kind = body.get(1).copied();
        match kind {
            Some(KIND_DATA) => {
                let Some(seq) = read_u64(body, 2) else {
                    continue;
                };
                let intact = body
                    .iter()
                    .enumerate()
                    .skip(HEADER)
                    .all(|(i, b)| *b == pattern(seq, i));
                let mut r = lock(&received);
                if !intact || seq >= MAX_TRACKED {
                    r.corrupted += 1;
                } else if r.is_seen(seq) {
                    r.duplicates += 1;
                } else {
                    r.mark(seq);
                    r.datagrams_ok += 1;
                    r.bytes_ok += data.len() as u64;
                }
            }
            Some(KIND_END) => {
                let Some(total) = read_u64(body, 2) else {
                    continue;
                };
                let reply = {
                    let r = lock(&received);
                    let missing = r.missing(total);
                    let mut out = vec![MARKER, KIND_REPORT];
                    for v in [
                        r.datagrams_ok,
                        r.bytes_ok,
                        r.corrupted,
                        missing.len() as u64,
                    ] {
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                    for m in missing {
                        out.extend_from_slice(&m.to_be_bytes());
                    }
                    with_crc(out)
                };
                if let Err(e) = conn.send(d.component, &reply).await {
                    eprintln!("ice_peer: sending a report: {e}");
                }
            }
            Some(KIND_REPORT) => {
                let field = |n: usize| read_u64(body, 2 + 8 * n);
                let (Some(datagrams_ok), Some(bytes_ok), Some(corrupted), Some(n)) =
                    (field(0), field(1), field(2), field(3))
                else {
                    continue;
                };
                let n = n.min(MAX_MISSING_PER_REPORT as u64) as usize;
                let missing = (0..n).filter_map(|i| field(4 + i)).collect();
                let _ = reports.send(Report {
                    datagrams_ok,
                    bytes_ok,
                    corrupted,
                    missing,
                });
            }
            _ => lock(&received).corrupted += 1,
        }
    }
}

async fn send_all(
    conn: &IceConnection,
    total: u64,
    rate_mbps: f64,
    reports: &mut mpsc::UnboundedReceiver<Report>,
) -> Result<Outcome, BoxError> {
    let count = datagram_count(total);
    let rate = rate_mbps * 1e6; // bytes per second
    let started = Instant::now();
    let mut sent_bytes = 0u64;
    let mut buf = Vec::with_capacity(DATAGRAM);
    for seq in 0..count {
        let size = datagram_size(seq, total);
        build_data(seq, size, &mut buf);
        conn.send(1, &buf)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        sent_bytes += size as u64;
        let due = Duration::from_secs_f64(sent_bytes as f64 / rate);
        let elapsed = started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
    let send_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "ice_peer: sent {total} bytes in {count} datagrams in {:.0} ms ({:.1} MB/s)",
        send_secs * 1e3,
        total as f64 / send_secs.max(1e-9) / 1e6
    );
    let mut resent = 0u64;
    for _round in 0..MAX_ROUNDS {
        let mut end = vec![MARKER, KIND_END];
        end.extend_from_slice(&count.to_be_bytes());
        let end = with_crc(end);
        conn.send(1, &end)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let report = match timeout(REPORT_WAIT, reports.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err("the connection closed before a report".into()),
            Err(_) => continue,
        };
        if report.missing.is_empty() && report.datagrams_ok >= count {
            return Ok(Outcome {
                bytes_ok: report.bytes_ok,
                corrupted: report.corrupted,
                resent,
            });
        }
        for seq in report.missing.iter().copied().filter(|s| *s < count) {
            build_data(seq, datagram_size(seq, total), &mut buf);
            conn.send(1, &buf)
                .await
                .map_err(|e| format!("sending: {e}"))?;
            resent += 1;
        }
    }
    Err(format!("no complete report after {MAX_ROUNDS} rounds").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_sizes_add_up_and_respect_the_minimum() {
        for total in [
            14u64,
            100,
            1199,
            1200,
            1201,
            1213,
            1214,
            2400,
            2405,
            10 * 1024 * 1024,
        ] {
            let count = datagram_count(total);
            let sizes: Vec<usize> = (0..count).map(|s| datagram_size(s, total)).collect();
            assert_eq!(
                sizes.iter().map(|s| *s as u64).sum::<u64>(),
                total,
                "{total}"
            );
            assert!(
                sizes.iter().all(|s| (MIN_DATAGRAM..=DATAGRAM).contains(s)),
                "{total}: {sizes:?}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        build_data(7, DATAGRAM, &mut buf);
        assert!(checked(&buf).is_some());
        buf[500] ^= 1;
        assert!(checked(&buf).is_none());
        assert!(checked(&[]).is_none());
        assert!(checked(&[1, 2, 3]).is_none());
    }
}
