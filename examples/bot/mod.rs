//! What the file bots share: the login options, the client set up for file transfer, the
//! progress display (a bar on a terminal, plain lines otherwise), cancelling on SIGINT/SIGTERM,
//! and the lines they print at the end (the lab tests read them).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use jid::Jid;
use jingle_ice::apps::file_transfer::{enable, FileTransferError, OnProgress, TransferReport};
use jingle_ice::apps::transfer::Progress;
use jingle_ice::xmpp::client::{ClientState, LOGGED_OFF};
use jingle_ice::xmpp::{JingleClient, JingleClientConfig, XmppConfig};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How to log in.
#[derive(clap::Args, Debug)]
pub struct Login {
    /// The account (bare JID, or full JID to choose the resource).
    #[arg(long)]
    pub jid: String,
    /// Its password.
    #[arg(long, env = "JINGLE_ICE_PASSWORD")]
    pub password: String,
    /// The server's address (host:port), instead of DNS.
    #[arg(long)]
    pub server: Option<std::net::SocketAddr>,
    /// A PEM file of CA certificates to trust for the server (instead of the system's).
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// Logs in with file transfer enabled and advertised; warnings (and the client's reconnect
/// log) go to stderr (`RUST_LOG` overrides), and changes of the XMPP connection are printed as
/// `xmpp ...` lines.
pub async fn login(login: &Login) -> Result<JingleClient, String> {
    login_with(login, |_| {}).await
}

/// [`login`], after `setup` adjusts the client's settings (the tube bot adds its feature).
pub async fn login_with(
    login: &Login,
    setup: impl FnOnce(&mut JingleClientConfig),
) -> Result<JingleClient, String> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,jingle_ice::xmpp::client=info")
            }),
        )
        .try_init();
    let jid = Jid::new(&login.jid).map_err(|e| format!("--jid: {e}"))?;
    let mut xmpp = XmppConfig::new(jid, login.password.clone());
    xmpp.server = login.server;
    xmpp.ca_file = login.ca.clone();
    let mut config = JingleClientConfig::new(xmpp);
    enable(&mut config.runtime);
    setup(&mut config);
    let client = JingleClient::connect(config)
        .await
        .map_err(|e| format!("login as {}: {e}", login.jid))?;
    let mut status = client.watch_state();
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let now = status.borrow_and_update().clone();
            match now.state {
                ClientState::Online => {
                    say(format!("xmpp reconnected (reconnects {})", now.reconnects))
                }
                ClientState::Reconnecting { attempt, reason } => {
                    say(format!("xmpp reconnecting (attempt {attempt}): {reason}"))
                }
                ClientState::Closed { reason } if reason != LOGGED_OFF => {
                    say(format!("xmpp closed: {reason}"))
                }
                ClientState::Closed { .. } => {}
            }
        }
    });
    Ok(client)
}

/// One line to stdout, flushed.
pub fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// A progress callback: an indicatif bar on a terminal (stderr), plain `progress` lines once a
/// second otherwise. The bar is finished when `finish` is called.
pub fn progress(label: &str, total: u64) -> (OnProgress, Option<ProgressBar>) {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        let b = bar.clone();
        (
            Box::new(move |p: &Progress| b.set_position(p.bytes)),
            Some(bar),
        )
    } else {
        let mut last: Option<Instant> = None;
        (
            Box::new(move |p: &Progress| {
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) || p.bytes == p.total
                {
                    last = Some(Instant::now());
                    say(format!(
                        "progress {} / {} bytes, {:.1} MB/s, ETA {}",
                        p.bytes,
                        p.total,
                        p.rate / 1e6,
                        p.eta
                            .map(|d| format!("{:.0} s", d.as_secs_f64()))
                            .unwrap_or_else(|| "-".into())
                    ));
                }
            }),
            None,
        )
    }
}

/// The end-of-transfer lines both bots print.
pub fn report(r: &TransferReport) {
    say(format!("candidates {}", r.local_candidates.join(", ")));
    say(format!("transport {}", r.transport));
    say(format!(
        "connect time {:.0} ms",
        r.connect_time.as_secs_f64() * 1e3
    ));
    if r.resumed_from > 0 {
        say(format!(
            "resumed at byte {} of {} (kept from an interrupted attempt)",
            r.resumed_from, r.size
        ));
    }
    say(format!(
        "transferred {} bytes in {:.2} s, {:.1} MB/s",
        r.transferred(),
        r.transfer_time.as_secs_f64(),
        r.throughput() / 1e6
    ));
    say(format!(
        "sha-256 {} {}",
        hex(&r.sha256),
        if r.verified {
            "verified"
        } else {
            "NOT verified (the peer sent no hash)"
        }
    ));
    if let Some(p) = &r.path {
        say(format!("stored {}", p.display()));
    }
}

fn hex(b: &[u8]) -> String {
    jingle_ice::hex::encode(b)
}

/// The signals that cancel a transfer (SIGINT from a terminal's Ctrl-C, SIGTERM from a service
/// manager or `kill`). Created before anything else, so that from then on they cancel instead
/// of killing the process: cancelling drops the transfer's future, which ends the session with
/// `<cancel/>` (XEP-0234 §6.3), and the bot then logs off with [`JingleClient::close`], which
/// sends the stanzas still queued before the stream closes.
pub struct Interrupt {
    int: Signal,
    term: Signal,
}

impl Interrupt {
    /// Takes over SIGINT and SIGTERM.
    pub fn new() -> Result<Interrupt, String> {
        let int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
        let term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
        Ok(Interrupt { int, term })
    }

    /// Waits for either signal and names it.
    pub async fn wait(&mut self) -> Signalled {
        tokio::select! {
            _ = self.int.recv() => Signalled::Int,
            _ = self.term.recv() => Signalled::Term,
        }
    }
}

/// Which signal cancelled the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signalled {
    /// SIGINT.
    Int,
    /// SIGTERM.
    Term,
}

impl Signalled {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Signalled::Int => "SIGINT",
            Signalled::Term => "SIGTERM",
        }
    }

    /// The shell's convention for a process ended by a signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signalled::Int => 128 + 2,
            Signalled::Term => 128 + 15,
        }
    }
}

/// How a bot's run ended badly.
#[derive(Debug)]
pub enum Failure {
    /// Something failed; the message says what.
    Failed(String),
    /// A signal cancelled it.
    Cancelled(Signalled),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Failed(s)
    }
}

/// Prints the end of a bot's run (`failed ...` or `cancelled SIGNAL` on stdout, the message on
/// stderr, then its peak memory) and gives its exit code.
pub fn finish(program: &str, outcome: Result<(), Failure>) -> std::process::ExitCode {
    let code = match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(Failure::Failed(e)) => {
            say(format!("failed {e}"));
            eprintln!("{program}: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(Failure::Cancelled(s)) => {
            say(format!("cancelled {}", s.name()));
            eprintln!("{program}: cancelled ({})", s.name());
            std::process::ExitCode::from(s.exit_code())
        }
    };
    say_peak_rss();
    code
}

/// Prints how a failed transfer ended: `ended-by-peer CONDITION` when the peer ended the
/// session (XEP-0166 §7.4 reason), then the error. Returns the error's message.
pub fn transfer_failed(e: &FileTransferError) -> String {
    if let FileTransferError::PeerEnded(r) = e {
        say(format!("ended-by-peer {}", r.condition.as_str()));
        return format!("the peer ended the session: {r}");
    }
    e.to_string()
}

/// Peak resident memory of this process so far, bytes (Linux `VmHWM` in `/proc/self/status`).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Prints `peak-rss BYTES` (the lab's memory measurement reads it).
pub fn say_peak_rss() {
    if let Some(b) = peak_rss() {
        say(format!("peak-rss {b}"));
    }
}
