//! Shared by the lab integration tests (`mod lab_common;`): a guard around `tests/lab/lab.sh`
//! that brings a namespace lab up with a unique prefix, reads its environment, runs commands in
//! its namespaces and tears it down on drop (also when a test panics).
//!
//! Without root (or where `ip netns` is not permitted) the lab tests print a loud
//! "SKIPPED: the lab needs root" and pass, except under CI (`CI=true`), where a skip is a
//! failure: a green CI always means the lab ran.

#![allow(dead_code)] // each test binary uses a different part of it

pub mod files;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// One lab at a time per test process: the scenarios measure connect times, and the machine
/// may be small.
static LAB_LOCK: Mutex<()> = Mutex::new(());
/// Distinguishes the labs of one process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A NAT type of `lab.sh` (see `tests/lab/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// The host sits directly on the public network.
    None,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Address-and-port-dependent mapping (UDP).
    Symmetric,
    /// Only TCP leaves the LAN.
    UdpBlocked,
}

impl Nat {
    fn as_arg(self) -> &'static str {
        match self {
            Nat::None => "none",
            Nat::FullCone => "full-cone",
            Nat::PortRestricted => "port-restricted",
            Nat::Symmetric => "symmetric",
            Nat::UdpBlocked => "udp-blocked",
        }
    }
}

/// The XMPP server of a lab (`lab.sh --xmpp-server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmppServer {
    /// Prosody 0.12 (the default).
    Prosody,
    /// Debian's ejabberd 23.01.
    Ejabberd,
}

impl XmppServer {
    fn as_arg(self) -> &'static str {
        match self {
            XmppServer::Prosody => "prosody",
            XmppServer::Ejabberd => "ejabberd",
        }
    }
}

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct LabOptions {
    /// A's NAT (with `same_lan`, the NAT of the shared LAN).
    pub nat_a: Nat,
    /// B's NAT (ignored with `same_lan`).
    pub nat_b: Nat,
    /// A and B on one LAN.
    pub same_lan: bool,
    /// Full coturn (TURN with auth, TCP, TLS, a static user) instead of a STUN-only one.
    pub turn: bool,
    /// An XMPP server on the XMPP host.
    pub xmpp: bool,
    /// Which one, with `xmpp`.
    pub xmpp_server: XmppServer,
}

impl LabOptions {
    /// A behind `a`, B behind `b`, STUN only, no XMPP.
    pub fn nats(a: Nat, b: Nat) -> Self {
        LabOptions {
            nat_a: a,
            nat_b: b,
            same_lan: false,
            turn: false,
            xmpp: false,
            xmpp_server: XmppServer::Prosody,
        }
    }

    /// [`LabOptions::nats`] with Prosody and coturn: what the XMPP-level tests use.
    #[allow(dead_code)]
    pub fn with_servers(a: Nat, b: Nat) -> Self {
        LabOptions {
            xmpp: true,
            turn: true,
            ..LabOptions::nats(a, b)
        }
    }
}

/// A running lab; `lab.sh down` runs when it is dropped.
pub struct Lab {
    prefix: String,
    env: HashMap<String, String>,
    /// Released after `down` (fields drop after `Drop::drop`).
    _serial: MutexGuard<'static, ()>,
}

/// The lab script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Why the lab cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned));
    if euid.as_deref() != Some("0") {
        return Some("not running as root".into());
    }
    match Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`ip netns list` is not permitted ({s})")),
        Err(e) => Some(format!("cannot run `ip`: {e}")),
    }
}

/// Prints the loud skip notice, or panics under CI.
pub fn skip(test: &str, reason: &str) {
    if under_ci() {
        panic!("{test}: the lab cannot run ({reason}) and CI=true: a skipped lab test fails in CI");
    }
    eprintln!();
    eprintln!("************************************************************************");
    eprintln!("SKIPPED: the lab needs root ({test}: {reason}).");
    eprintln!("Without root, run the simulated network tests: cargo test --test sim_nat_matrix");
    eprintln!("************************************************************************");
}

impl Lab {
    /// Brings a lab up for `test`; `None` (after a loud notice) when it cannot run here.
    /// Panics when `lab.sh up` fails, or when skipping under CI.
    pub fn up(test: &str, options: LabOptions) -> Option<Lab> {
        let serial = LAB_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(reason) = unavailable() {
            skip(test, &reason);
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short: interface names are "<prefix><3 chars>" and must stay within 15 bytes.
        let prefix = format!("j{}{}", base36(std::process::id()), base36(n));
        assert!(prefix.len() <= 8, "prefix {prefix} too long");
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(["up", "--prefix", &prefix])
            .args(["--nat-a", options.nat_a.as_arg()])
            .args(["--nat-b", options.nat_b.as_arg()]);
        if options.same_lan {
            cmd.arg("--same-lan");
        }
        if options.turn {
            cmd.arg("--turn");
        }
        if options.xmpp {
            cmd.arg("--xmpp");
            cmd.args(["--xmpp-server", options.xmpp_server.as_arg()]);
        }
        let started = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .expect("run tests/lab/lab.sh");
        if !out.status.success() {
            panic!(
                "lab.sh up failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = parse_env(&String::from_utf8_lossy(&out.stdout));
        eprintln!(
            "{test}: lab {prefix} up in {:.1} s ({:?})",
            started.elapsed().as_secs_f64(),
            options
        );
        Some(Lab {
            prefix,
            env,
            _serial: serial,
        })
    }

    /// The name prefix of this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A value of the lab's environment (`LAB_NS_A`, `LAB_STUN`, ...); panics when missing.
    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("lab.sh printed no {key}"))
    }

    /// The whole environment.
    pub fn env(&self) -> &HashMap<String, String> {
        &self.env
    }

    /// A command that runs `cmd` in namespace `ns`.
    pub fn command_in(&self, ns: &str, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(cmd);
        c
    }

    /// Runs `cmd` in `ns` to completion and returns its output.
    pub fn exec_in(&self, ns: &str, cmd: &[&str]) -> Output {
        self.command_in(ns, cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {cmd:?} in {ns}: {e}"))
    }

    /// Starts `cmd` in `ns` with piped stdin, stdout and stderr.
    pub fn spawn_in(&self, ns: &str, cmd: &[&str]) -> Child {
        self.command_in(ns, cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?} in {ns}: {e}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new("bash")
            .arg(script())
            .args(["down", "--prefix", &self.prefix])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "lab.sh down --prefix {} failed: {}",
                self.prefix,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("lab.sh down --prefix {}: {e}", self.prefix),
        }
    }
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Reads `KEY=VALUE` lines (values as bash `printf %q` wrote them; ours need no unquoting
/// beyond backslashes).
fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("LAB_"))
        .map(|(k, v)| (k.to_owned(), v.replace('\\', "")))
        .collect()
}

// ---- the ice_peer example ---------------------------------------------------------------------

/// The `ice_peer` example binary of the profile this test was built with, built first (cargo
/// builds examples for `cargo test`, but not for `cargo test --test NAME`).
pub fn ice_peer() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "--example",
        "ice_peer",
    ]);
    without_crate_env(&mut build);
    if release {
        build.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        build.env("CARGO_TARGET_DIR", target);
    }
    let status = build.status().expect("run cargo build --example ice_peer");
    assert!(status.success(), "cargo build --example ice_peer failed");
    let path = profile_dir.join("examples").join("ice_peer");
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// Removes from a nested `cargo build` the variables cargo set for this test crate
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...). Build scripts that watch one of them (ring's
/// watches `CARGO_MANIFEST_DIR`) would otherwise see it change between the outer build and this
/// one and rebuild half the dependency tree each time, about a minute on this machine.
fn without_crate_env(build: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_crate = key == "OUT_DIR"
            || key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            );
        if set_for_crate {
            build.env_remove(key);
        }
    }
}

/// One peer's parsed `result` line.
pub type PeerResult = HashMap<String, String>;

/// What a pair of peers did.
pub struct PairRun {
    /// A's and B's result lines.
    pub a: PeerResult,
    /// B's result.
    pub b: PeerResult,
}

/// Which side a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

enum Msg {
    Line(Side, String),
    Closed(Side),
}

/// Runs `ice_peer` with `args_a` in A's namespace and `args_b` in B's, relays their signalling
/// lines to each other with `delay` (like a server would), waits for both to exit within
/// `limit`, and returns their results. Panics with both peers' logs when anything fails.
pub fn run_peers(
    lab: &Lab,
    peer: &Path,
    args_a: &[&str],
    args_b: &[&str],
    delay: Duration,
    limit: Duration,
) -> PairRun {
    let bin = peer.to_str().expect("utf-8 path");
    let mut cmd_a = vec![bin];
    cmd_a.extend_from_slice(args_a);
    let mut cmd_b = vec![bin];
    cmd_b.extend_from_slice(args_b);
    let mut child_a = lab.spawn_in(lab.get("LAB_NS_A"), &cmd_a);
    let mut child_b = lab.spawn_in(lab.get("LAB_NS_B"), &cmd_b);

    let (tx, rx) = mpsc::channel();
    let logs: [std::sync::Arc<Mutex<String>>; 2] = Default::default();
    for (side, child, log) in [
        (Side::A, &mut child_a, &logs[0]),
        (Side::B, &mut child_b, &logs[1]),
    ] {
        let stdout = child.stdout.take().expect("piped stdout");
        let tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(Msg::Line(side, line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Msg::Closed(side));
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::clone(log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    drop(tx);
    // One forwarder per direction: each line is delivered `delay` after it was read, in order.
    let to_b = forwarder(child_b.stdin.take().expect("piped stdin"));
    let to_a = forwarder(child_a.stdin.take().expect("piped stdin"));

    let deadline = Instant::now() + limit;
    let mut results: [Option<PeerResult>; 2] = [None, None];
    let mut closed = [false, false];
    let mut transcript = String::new();
    let mut failure = None;
    while closed != [true, true] {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            failure = Some(format!("the peers did not finish within {limit:?}"));
            break;
        }
        match rx.recv_timeout(left) {
            Ok(Msg::Line(side, line)) => {
                transcript.push_str(&format!("{side:?}> {line}\n"));
                let due = Instant::now() + delay;
                let idx = if side == Side::A { 0 } else { 1 };
                if let Some(rest) = line.strip_prefix("result ") {
                    results[idx] = Some(parse_result(rest));
                } else {
                    let fwd = if side == Side::A { &to_b } else { &to_a };
                    // The other peer may have exited already; that is its business.
                    let _ = fwd.send((due, line));
                }
            }
            Ok(Msg::Closed(side)) => {
                closed[if side == Side::A { 0 } else { 1 }] = true;
            }
            Err(_) => {
                failure = Some(format!("the peers did not finish within {limit:?}"));
                break;
            }
        }
    }
    drop(to_a);
    drop(to_b);
    let status_a = wait_bounded(&mut child_a, deadline);
    let status_b = wait_bounded(&mut child_b, deadline);
    let log = |i: usize| {
        logs[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    let report = format!(
        "--- signalling\n{transcript}--- A's log\n{}--- B's log\n{}",
        log(0),
        log(1)
    );
    if failure.is_none() && !(status_a && status_b) {
        failure = Some(format!(
            "a peer failed (A ok: {status_a}, B ok: {status_b})"
        ));
    }
    if let Some(f) = failure {
        panic!("{f}\n{report}");
    }
    let [Some(a), Some(b)] = results else {
        panic!("a peer printed no result line\n{report}");
    };
    eprintln!("{report}");
    PairRun { a, b }
}

fn forwarder(mut stdin: ChildStdin) -> mpsc::Sender<(Instant, String)> {
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    thread::spawn(move || {
        for (due, line) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if writeln!(stdin, "{line}")
                .and_then(|_| stdin.flush())
                .is_err()
            {
                return;
            }
        }
        // Dropping stdin tells the peer signalling is over.
    });
    tx
}

/// Waits for `child` until `deadline`, kills it after; true when it exited successfully.
fn wait_bounded(child: &mut Child, deadline: Instant) -> bool {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

fn parse_result(rest: &str) -> PeerResult {
    rest.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

// ---- other examples ---------------------------------------------------------------------------

/// The binary of example `name` for the profile this test was built with, built first (as
/// [`ice_peer`] does for its example).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", name]);
    without_crate_env(&mut build);
    if release {
        build.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        build.env("CARGO_TARGET_DIR", target);
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(status.success(), "cargo build --example {name} failed");
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} not found", path.display());
    path
}

// ---- a process that reports in lines ---------------------------------------------------------

/// A program run in a lab namespace whose stdout is read line by line (the example peers and
/// bots print one fact per line).
#[allow(dead_code)]
pub struct LineProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub all: Vec<String>,
    name: String,
}

#[allow(dead_code)]
impl LineProcess {
    /// Starts `argv` in the namespace named by the lab variable `ns_key`, bounded by
    /// `timeout(1)` to `secs` seconds; stderr goes to the test's.
    pub fn start(lab: &Lab, ns_key: &str, name: &str, secs: u64, argv: &[String]) -> LineProcess {
        let mut cmd: Vec<String> = vec!["timeout".into(), secs.to_string()];
        cmd.extend(argv.iter().cloned());
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let ns = lab.get(ns_key).to_owned();
        let mut child = lab
            .command_in(&ns, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        LineProcess {
            child,
            lines: rx,
            all: Vec::new(),
            name: name.to_owned(),
        }
    }

    /// The first line starting with `prefix`, among those already read (by an `expect` that
    /// waited for a later line) or else the next ones, waiting at most `secs` seconds for each.
    pub fn find_within(&mut self, prefix: &str, secs: u64) -> String {
        match self.all.iter().find(|l| l.starts_with(prefix)) {
            Some(line) => line.clone(),
            None => self.expect_within(prefix, secs),
        }
    }

    /// The next line starting with `prefix`, waiting at most `secs` seconds for each line.
    pub fn expect_within(&mut self, prefix: &str, secs: u64) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(secs)) {
                Ok(line) => {
                    eprintln!("[{}] {line}", self.name);
                    self.all.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{}: no line starting with {prefix:?}; got {:?}",
                    self.name, self.all
                ),
            }
        }
    }

    /// [`LineProcess::expect_within`] with 60 s per line.
    pub fn expect(&mut self, prefix: &str) -> String {
        self.expect_within(prefix, 60)
    }

    /// Sends signal `sig` (a name `kill -s` knows: `INT`, `TERM`, ...) to the process. The
    /// process is `timeout(1)`, which passes the signal on to the program it runs.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} {} failed", self.name);
    }

    /// Kills the program and the `timeout` around it at once, as a crash would (no cleanup
    /// runs): SIGKILL to the process group `timeout` made for itself and the program.
    #[allow(dead_code)]
    pub fn kill_hard(&self) {
        let group = format!("-{}", self.child.id());
        let status = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -s KILL -- {group} ({}) failed",
            self.name
        );
    }

    /// Waits for the exit (at most `secs` seconds, then kills it and panics); returns its exit
    /// code (`None` when a signal ended it) and every line it printed, the remaining ones
    /// echoed.
    pub fn finish(mut self, secs: u64) -> (Option<i32>, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(s) => break s,
                None if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                None => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{} did not exit within {secs} s; lines {:?}",
                        self.name, self.all
                    );
                }
            }
        };
        // The reader thread ends with the pipe; take what it still has.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            eprintln!("[{}] {line}", self.name);
            self.all.push(line);
        }
        eprintln!("[{}] exited: {status}", self.name);
        (status.code(), self.all)
    }

    /// Waits for the exit; returns whether it succeeded, after echoing the remaining lines.
    pub fn wait(mut self) -> bool {
        let status = self.child.wait().expect("wait");
        for line in self.lines.try_iter() {
            eprintln!("[{}] {line}", self.name);
        }
        status.success()
    }
}

// ---- server faults -----------------------------------------------------------------------------

impl Lab {
    /// Kills the lab's main coturn (`lab.sh stop-turn`, SIGKILL): every allocation on it is
    /// gone, its TCP and TLS streams close. Panics when the script fails.
    pub fn stop_turn(&self) {
        self.turn_script("stop-turn");
    }

    /// Starts the lab's main coturn again with its settings (`lab.sh start-turn`); returns once
    /// it listens. Panics when the script fails.
    pub fn start_turn(&self) {
        self.turn_script("start-turn");
    }

    fn turn_script(&self, action: &str) {
        let out = Command::new("bash")
            .arg(script())
            .args([action, "--prefix", &self.prefix])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run tests/lab/lab.sh {action}: {e}"));
        assert!(
            out.status.success(),
            "lab.sh {action} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The lab's work directory (configs, logs), removed by `down` (`LAB_TMP` or `/tmp`, as
    /// `lab.sh` picks it).
    pub fn work_dir(&self) -> PathBuf {
        let base = std::env::var_os("LAB_TMP").unwrap_or_else(|| "/tmp".into());
        PathBuf::from(base).join(format!("jingle-ice-lab.{}", self.prefix))
    }

    /// Restarts the lab's Prosody (`lab.sh restart-xmpp`): SIGTERM, so every client stream
    /// ends with `<system-shutdown/>`, `down` with no server, then the same server again.
    /// Returns how long the server was unreachable; panics when the script fails.
    pub fn restart_xmpp(&self, down: Duration) -> Duration {
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(script())
            .args(["restart-xmpp", "--prefix", &self.prefix])
            .args(["--down", &format!("{:.3}", down.as_secs_f64())])
            .stdin(Stdio::null())
            .output()
            .expect("run tests/lab/lab.sh restart-xmpp");
        assert!(
            out.status.success(),
            "lab.sh restart-xmpp failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    }
}
