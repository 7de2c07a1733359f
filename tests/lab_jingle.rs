//! Jingle ICE-UDP over the lab's real Prosody and coturn: two clients, one in each LAN, log in,
//! fetch STUN/TURN through XEP-0215 (Prosody's `mod_turn_external` credentials), check each
//! other's support (disco#info), open a Jingle session with an ICE-UDP transport, trickle
//! candidates, connect and exchange data checked end to end (`examples/jingle_peer.rs`).
//! Each NAT scenario asserts the selected pair type. In the port-restricted lab, a hostile run
//! (garbage transport, unknown sid, a third JID), simultaneous initiation and a peer logging off
//! mid-session are checked too. Needs root; see `tests/lab/README.md`.

mod lab_common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use lab_common::{example_binary, Lab, LabOptions, Nat};

/// Bound on one peer process (`timeout` kills it after this).
const PEER_SECS: &str = "90";

struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
    all: Vec<String>,
    name: &'static str,
}

impl Peer {
    fn start(lab: &Lab, ns: &str, name: &'static str, account: u8, extra: &[&str]) -> Peer {
        let bin = example_binary("jingle_peer");
        let jid = lab.get(&format!("LAB_XMPP_JID{account}")).to_owned();
        let pw = lab.get(&format!("LAB_XMPP_PASSWORD{account}")).to_owned();
        let mut cmd: Vec<String> = vec![
            "timeout".into(),
            PEER_SECS.into(),
            path(&bin),
            "--jid".into(),
            jid,
            "--password".into(),
            pw,
            "--server".into(),
            lab.get("LAB_XMPP_ADDR").into(),
            "--ca".into(),
            lab.get("LAB_CA").into(),
        ];
        cmd.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let ns = lab.get(ns).to_owned();
        let mut command = lab.command_in(&ns, &args);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("spawn jingle_peer");
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

    /// The next line starting with `prefix` (earlier lines are kept in `all`).
    fn expect(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
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

    fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to peer");
        stdin.flush().expect("flush");
    }

    fn finish(mut self) {
        let status = self.child.wait().expect("wait for peer");
        for line in self.lines.try_iter() {
            eprintln!("[{}] {line}", self.name);
        }
        assert!(status.success(), "{} exited with {status}", self.name);
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// Value of `key=` in a line of `key=value` words.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// One session from A (initiator) to B (responder); returns both `established` lines.
fn session(lab: &Lab, initiator_extra: &[&str]) -> (String, String) {
    let mut bob = Peer::start(lab, "LAB_NS_B", "bob", 2, &["--accept"]);
    let bob_jid = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    let services = bob.expect("services ");
    let mut args = vec!["--connect", bob_jid.as_str()];
    args.extend_from_slice(initiator_extra);
    let mut alice = Peer::start(lab, "LAB_NS_A", "alice", 1, &args);
    alice.expect("jid ");
    let alice_services = alice.expect("services ");
    // Prosody hands out STUN and TURN (UDP and TCP) with mod_turn_external credentials.
    for s in [&services, &alice_services] {
        assert_ne!(field(s, "stun"), "0", "{s}");
        assert_eq!(field(s, "turn"), "2", "{s}");
    }
    assert_eq!(alice.expect("supports "), "supports true");
    let a = alice.expect("established ");
    let b = bob.expect("established ");
    assert_eq!(field(&a, "sid"), field(&b, "sid"));
    alice.expect("data ok");
    if initiator_extra.contains(&"--adversarial") {
        // Garbage inside <transport/>: <bad-request/>, and the session goes on.
        assert_eq!(alice.expect("check garbage"), "check garbage bad-request -");
        assert_eq!(
            alice.expect("check unknown-sid"),
            "check unknown-sid item-not-found unknown-session"
        );
        assert_eq!(
            alice.expect("check third-jid"),
            "check third-jid item-not-found unknown-session"
        );
        alice.expect("data ok");
    }
    assert_eq!(alice.expect("ended "), "ended success");
    assert!(bob.expect("ended ").starts_with("ended success"));
    alice.finish();
    bob.finish();
    eprintln!(
        "MEASURE session-initiate to connected: initiator {} ms ({} stanzas), responder {} ms ({} stanzas)",
        field(&a, "ms"),
        field(&a, "stanzas"),
        field(&b, "ms"),
        field(&b, "stanzas")
    );
    (a, b)
}

fn pair_types(line: &str) -> (String, String) {
    (
        field(line, "local").to_owned(),
        field(line, "remote").to_owned(),
    )
}

fn lab(test: &str, a: Nat, b: Nat) -> Option<Lab> {
    Lab::up(test, LabOptions::with_servers(a, b))
}

#[test]
fn lab_jingle_port_restricted_hostile_tie_break_and_log_off() {
    let Some(lab) = lab(
        "lab_jingle_port_restricted_hostile_tie_break_and_log_off",
        Nat::PortRestricted,
        Nat::PortRestricted,
    ) else {
        return;
    };
    // Two port-restricted cones traverse with server-reflexive candidates.
    let (a, b) = session(&lab, &["--adversarial"]);
    assert_eq!(pair_types(&a), ("srflx".into(), "srflx".into()), "{a}");
    assert_eq!(pair_types(&b), ("srflx".into(), "srflx".into()), "{b}");

    // Simultaneous initiation: both offer at once; the XEP-0166 tie-break leaves one session.
    let mut alice = Peer::start(&lab, "LAB_NS_A", "alice", 1, &["--connect", "-"]);
    let mut bob = Peer::start(&lab, "LAB_NS_B", "bob", 2, &["--connect", "-", "--echo"]);
    let ja = alice.expect("jid ").trim_start_matches("jid ").to_owned();
    let jb = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    alice.expect("services ");
    bob.expect("services ");
    alice.send_line(&jb);
    bob.send_line(&ja);
    let ea = alice.expect("established ");
    let eb = bob.expect("established ");
    assert_eq!(
        field(&ea, "sid"),
        field(&eb, "sid"),
        "one session after the tie-break"
    );
    alice.expect("data ok");
    assert_eq!(alice.expect("ended "), "ended success");
    assert!(bob.expect("ended ").starts_with("ended success"));
    alice.finish();
    bob.finish();

    // A peer logging off mid-session (unavailable presence, no session-terminate): the other
    // side ends the session with <gone/>.
    let mut bob = Peer::start(
        &lab,
        "LAB_NS_B",
        "bob",
        2,
        &["--accept", "--log-off-after", "2"],
    );
    let bob_jid = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    let mut alice = Peer::start(
        &lab,
        "LAB_NS_A",
        "alice",
        1,
        &[
            "--connect",
            &bob_jid,
            "--bytes",
            "20000",
            "--wait-end",
            "30",
        ],
    );
    alice.expect("established ");
    bob.expect("logged-off");
    let ended = alice.expect("ended ");
    assert!(ended.starts_with("ended gone"), "{ended}");
    alice.finish();
    bob.finish();
}

#[test]
fn lab_jingle_full_cone_against_symmetric_is_peer_reflexive() {
    let Some(lab) = lab(
        "lab_jingle_full_cone_against_symmetric_is_peer_reflexive",
        Nat::FullCone,
        Nat::Symmetric,
    ) else {
        return;
    };
    let (a, b) = session(&lab, &[]);
    // The symmetric side's new mapping is learned as a peer-reflexive candidate; no relay.
    let (al, ar) = pair_types(&a);
    let (bl, br) = pair_types(&b);
    assert_ne!(al, "relay", "{a}");
    assert_ne!(bl, "relay", "{b}");
    assert_eq!(ar, "prflx", "{a}");
    assert_eq!(br, "srflx", "{b}");
}

#[test]
fn lab_jingle_symmetric_both_sides_is_relayed() {
    let Some(lab) = lab(
        "lab_jingle_symmetric_both_sides_is_relayed",
        Nat::Symmetric,
        Nat::Symmetric,
    ) else {
        return;
    };
    let (a, b) = session(&lab, &[]);
    let relayed = |l: &str| {
        let (x, y) = pair_types(l);
        x == "relay" || y == "relay"
    };
    assert!(relayed(&a), "{a}");
    assert!(relayed(&b), "{b}");
}

#[test]
fn lab_jingle_udp_blocked_uses_turn_over_tcp() {
    let Some(lab) = lab(
        "lab_jingle_udp_blocked_uses_turn_over_tcp",
        Nat::UdpBlocked,
        Nat::PortRestricted,
    ) else {
        return;
    };
    let (a, _b) = session(&lab, &[]);
    // A can only reach the TURN server over TCP: its side of the pair is relayed.
    assert_eq!(pair_types(&a).0, "relay", "{a}");
}
