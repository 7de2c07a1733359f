//! Interop with aiortc (an independent WebRTC stack: ICE, DTLS, SCTP data channels) in the
//! namespace lab: our `examples/dc_peer.rs` in LAN A, aiortc's `tests/aiortc/dc_peer.py` in
//! LAN B. The test relays one `TRANSPORT` line each way (our Jingle `webrtc-datachannel:1`
//! transport; the Python side translates it to and from aiortc's SDP). Each side opens its own
//! channel (`test` / `xmpp-jingle`) and sends 64 MiB of a pattern the other checks. Both DTLS
//! roles, the NAT scenarios of the lab (direct, peer-reflexive, relayed), and a peer that
//! signals a wrong fingerprint. Needs root and aiortc (`pip install aiortc`).

mod lab_common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use lab_common::{example_binary, Lab, LabOptions, Nat};

const BYTES: u64 = 64 * 1024 * 1024;
/// Bound on one peer process, in seconds (aiortc moves a few MB/s).
const PEER_SECS: u64 = 240;

fn python() -> String {
    std::env::var("AIORTC_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether aiortc can be imported; under CI its absence fails the test.
fn aiortc_available(test: &str) -> bool {
    let ok = Command::new(python())
        .args(["-c", "import aiortc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: aiortc is not installed and CI=true (.ci/run installs it)");
        }
        eprintln!("SKIPPED {test}: aiortc is not installed (pip install aiortc)");
    }
    ok
}

struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
    all: Vec<String>,
    name: &'static str,
}

impl Peer {
    fn start(lab: &Lab, ns: &str, name: &'static str, args: &[String]) -> Peer {
        let mut cmd: Vec<String> = vec!["timeout".into(), PEER_SECS.to_string()];
        cmd.extend(args.iter().cloned());
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let ns = lab.get(ns).to_owned();
        let mut command = lab.command_in(&ns, &args);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("spawn peer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Peer {
            child,
            lines: rx,
            all: Vec::new(),
            name,
        }
    }

    /// The next line starting with `prefix`; an `ERROR` line or the end of output fails.
    fn expect(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(PEER_SECS)) {
                Ok(line) => {
                    let shown: String = line.chars().take(300).collect();
                    eprintln!("[{}] {shown}", self.name);
                    self.all.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                    if line.starts_with("ERROR") {
                        panic!("{}: {line} (waiting for {prefix:?})", self.name);
                    }
                }
                Err(_) => panic!(
                    "{}: no line starting with {prefix:?}; got {:?}",
                    self.name, self.all
                ),
            }
        }
    }

    /// Reads up to `DONE` (an `ERROR` fails), then returns the first line starting with each of
    /// `prefixes`, whatever order they came in.
    fn until_done(&mut self, prefixes: &[&str], other: &mut Peer) -> Vec<String> {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.expect("DONE");
        })) {
            // Show what the other side saw before failing.
            while let Ok(line) = other.lines.recv_timeout(Duration::from_secs(5)) {
                eprintln!(
                    "[{}] {}",
                    other.name,
                    line.chars().take(300).collect::<String>()
                );
            }
            std::panic::resume_unwind(e);
        }
        prefixes
            .iter()
            .map(|p| {
                self.all
                    .iter()
                    .find(|l| l.starts_with(p))
                    .cloned()
                    .unwrap_or_else(|| panic!("{}: no {p:?} line in {:?}", self.name, self.all))
            })
            .collect()
    }

    /// Waits for `ERROR`, returning it.
    fn expect_error(&mut self) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(PEER_SECS)) {
                Ok(line) => {
                    eprintln!(
                        "[{}] {}",
                        self.name,
                        line.chars().take(300).collect::<String>()
                    );
                    if line.starts_with("ERROR") {
                        return line;
                    }
                    assert!(!line.starts_with("DONE"), "{}: must not succeed", self.name);
                }
                Err(_) => panic!("{}: no ERROR line; got {:?}", self.name, self.all),
            }
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to peer");
        stdin.flush().expect("flush");
    }

    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait for peer");
        for line in self.lines.try_iter() {
            eprintln!("[{}] {line}", self.name);
        }
        status
    }
}

#[derive(Clone, Copy)]
enum WeAre {
    Offerer,
    Answerer,
}

struct Run {
    selected: String,
    handshake_ms: u64,
    ours_sent_ms: u64,
    ours_received_ms: u64,
}

fn run(lab: &Lab, we: WeAre, turn: bool, wrong_fingerprint: bool) -> Option<Run> {
    let ours_bin = example_binary("dc_peer")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aiortc/dc_peer.py");
    let bytes = if wrong_fingerprint { 1024 } else { BYTES };
    let (our_role, their_role) = match we {
        WeAre::Offerer => ("offer", "answer"),
        WeAre::Answerer => ("answer", "offer"),
    };
    let mut ours: Vec<String> = vec![
        ours_bin,
        "--role".into(),
        our_role.into(),
        "--bytes".into(),
        bytes.to_string(),
        "--seed".into(),
        "1".into(),
        "--peer-seed".into(),
        "2".into(),
        "--stun".into(),
        lab.get("LAB_STUN").into(),
        "--timeout".into(),
        (PEER_SECS - 10).to_string(),
    ];
    let mut theirs: Vec<String> = vec![
        python(),
        script.into(),
        "--role".into(),
        their_role.into(),
        "--bytes".into(),
        bytes.to_string(),
        "--seed".into(),
        "2".into(),
        "--peer-seed".into(),
        "1".into(),
        "--stun".into(),
        lab.get("LAB_STUN").into(),
        "--timeout".into(),
        (PEER_SECS - 10).to_string(),
    ];
    if turn {
        for args in [&mut ours, &mut theirs] {
            args.extend([
                "--turn".into(),
                lab.get("LAB_TURN_STATIC_UDP").into(),
                "--turn-user".into(),
                lab.get("LAB_TURN_USER").into(),
                "--turn-pass".into(),
                lab.get("LAB_TURN_PASSWORD").into(),
            ]);
        }
    }
    if wrong_fingerprint {
        theirs.push("--wrong-fingerprint".into());
    }
    let mut us = Peer::start(lab, "LAB_NS_A", "ours", &ours);
    let mut them = Peer::start(lab, "LAB_NS_B", "aiortc", &theirs);
    match we {
        WeAre::Offerer => {
            let offer = us.expect("TRANSPORT ");
            them.send_line(&offer);
            let answer = them.expect("TRANSPORT ");
            us.send_line(&answer);
        }
        WeAre::Answerer => {
            let offer = them.expect("TRANSPORT ");
            us.send_line(&offer);
            let answer = us.expect("TRANSPORT ");
            them.send_line(&answer);
        }
    }
    if wrong_fingerprint {
        let error = us.expect_error();
        assert!(error.contains("security-error"), "{error}");
        assert!(error.contains("does not match"), "{error}");
        let status = us.finish();
        assert!(!status.success());
        let _ = them.child.kill();
        them.finish();
        return None;
    }
    // aiortc first: if either side fails, aiortc's view of it is printed before ours.
    let theirs = them.until_done(&["CHANNEL test xmpp-jingle", "SENT ", "RECEIVED "], &mut us);
    let ours = us.until_done(
        &[
            "SELECTED ",
            "HANDSHAKE ",
            "CHANNEL test xmpp-jingle",
            "SENT ",
            "RECEIVED ",
        ],
        &mut them,
    );
    let (selected, handshake, sent, received) = (&ours[0], &ours[1], &ours[3], &ours[4]);
    assert!(received.ends_with(" ok"), "{received}");
    assert!(theirs[2].ends_with(" ok"), "{}", theirs[2]);
    let word = |line: &str, i: usize| -> u64 {
        line.split_whitespace()
            .nth(i)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no number {i} in {line:?}"))
    };
    assert_eq!(word(sent, 1), BYTES);
    assert_eq!(word(received, 1), BYTES);
    assert_eq!(word(&theirs[1], 1), BYTES, "aiortc sent");
    assert_eq!(word(&theirs[2], 1), BYTES, "aiortc received");
    let run = Run {
        selected: selected
            .split_whitespace()
            .skip(1)
            .take(2)
            .collect::<Vec<_>>()
            .join("/"),
        handshake_ms: word(handshake, 1),
        ours_sent_ms: word(sent, 2),
        ours_received_ms: word(received, 2),
    };
    assert!(us.finish().success(), "our peer failed");
    assert!(them.finish().success(), "aiortc failed");
    eprintln!(
        "RESULT selected={} handshake_ms={} ours_to_aiortc={:.1}MB/s aiortc_to_ours={:.1}MB/s",
        run.selected,
        run.handshake_ms,
        BYTES as f64 / 1e6 / (run.ours_sent_ms.max(1) as f64 / 1000.0),
        BYTES as f64 / 1e6 / (run.ours_received_ms.max(1) as f64 / 1000.0),
    );
    Some(run)
}

fn lab(test: &str, a: Nat, b: Nat, turn: bool) -> Option<Lab> {
    if !aiortc_available(test) {
        return None;
    }
    let mut options = LabOptions::nats(a, b);
    options.turn = turn;
    Lab::up(test, options)
}

#[test]
fn port_restricted_both_dtls_roles_and_wrong_fingerprint() {
    let test = "port_restricted_both_dtls_roles_and_wrong_fingerprint";
    let Some(lab) = lab(test, Nat::PortRestricted, Nat::PortRestricted, false) else {
        return;
    };
    // We offer (actpass), aiortc answers active: we are the DTLS server.
    let r = run(&lab, WeAre::Offerer, false, false).expect("run");
    assert_eq!(r.selected, "srflx/srflx");
    // aiortc offers, we answer active: we are the DTLS client.
    let r = run(&lab, WeAre::Answerer, false, false).expect("run");
    assert_eq!(r.selected, "srflx/srflx");
    // aiortc signals a fingerprint that is not its certificate's: we refuse it.
    run(&lab, WeAre::Offerer, false, true);
}

#[test]
fn full_cone_against_symmetric_peer_reflexive() {
    let test = "full_cone_against_symmetric_peer_reflexive";
    let Some(lab) = lab(test, Nat::FullCone, Nat::Symmetric, false) else {
        return;
    };
    let r = run(&lab, WeAre::Offerer, false, false).expect("run");
    assert!(r.selected.ends_with("/prflx"), "{}", r.selected);
}

#[test]
fn symmetric_both_sides_relayed() {
    let test = "symmetric_both_sides_relayed";
    let Some(lab) = lab(test, Nat::Symmetric, Nat::Symmetric, true) else {
        return;
    };
    let r = run(&lab, WeAre::Answerer, true, false).expect("run");
    assert!(r.selected.contains("relay"), "{}", r.selected);
}
