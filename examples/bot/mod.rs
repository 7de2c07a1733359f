//! What the file bots share: the login options, the client set up for file transfer, and the
//! progress display (a bar on a terminal, plain lines otherwise).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use jid::Jid;
use jingle_ice::apps::file_transfer::{enable_client, OnProgress, TransferReport};
use jingle_ice::apps::transfer::Progress;
use jingle_ice::xmpp::{JingleClient, JingleClientConfig, XmppConfig};

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

/// Logs in with file transfer enabled and advertised.
pub async fn login(login: &Login) -> Result<JingleClient, String> {
    login_with(login, |_| {}).await
}

/// [`login`], after `setup` adjusts the client's settings (the tube bot adds its feature).
pub async fn login_with(
    login: &Login,
    setup: impl FnOnce(&mut JingleClientConfig),
) -> Result<JingleClient, String> {
    let jid = Jid::new(&login.jid).map_err(|e| format!("--jid: {e}"))?;
    let mut xmpp = XmppConfig::new(jid, login.password.clone());
    xmpp.server = login.server;
    xmpp.ca_file = login.ca.clone();
    let mut config = JingleClientConfig::new(xmpp);
    enable_client(&mut config);
    setup(&mut config);
    JingleClient::connect(config)
        .await
        .map_err(|e| format!("login as {}: {e}", login.jid))
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
    say(format!(
        "transferred {} bytes in {:.2} s, {:.1} MB/s",
        r.size,
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
    b.iter().map(|x| format!("{x:02x}")).collect()
}
