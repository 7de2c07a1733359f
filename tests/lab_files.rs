//! XEP-0234 file transfer through the lab: the `send_file` and `recv_file` bots log in to the
//! real Prosody from two LANs behind NATs, get STUN/TURN from it (XEP-0215, coturn), and move a
//! file peer-to-peer over a WebRTC data channel. Each run checks the hash both bots print, the
//! stored file byte for byte, that no part file is left, and the selected pair's types. The
//! measurement test compares each bot's peak memory over a 64 MiB and a 1 GiB transfer (it must
//! not grow with the file) and prints the file throughput against the bare data channel's in
//! the same lab. Needs root; see `tests/lab/README.md`.

mod lab_common;

use std::path::PathBuf;

use lab_common::files::{
    hash_file, login, make_file, peak_rss, s, start_receiver, start_sender, temp_dir, BOT_SECS,
};
use lab_common::{example_binary, Lab, LabOptions, LineProcess, Nat};

fn lab(test: &str, a: Nat, b: Nat) -> Option<Lab> {
    Lab::up(test, LabOptions::with_servers(a, b))
}

/// The candidate types in a `transport ... (local-type addr -> remote-type addr)` line.
fn pair_types(line: &str) -> (String, String) {
    let inner = line
        .split_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no pair in {line:?}"));
    let words: Vec<&str> = inner.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{line:?}");
    (words[0].to_owned(), words[3].to_owned())
}

/// What both bots printed during one transfer.
struct Run {
    alice: Vec<String>,
    bob: Vec<String>,
}

impl Run {
    fn line(lines: &[String], prefix: &str) -> String {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
            .clone()
    }

    /// Both bots' `transport` lines.
    fn transports(&self) -> (String, String) {
        (
            Run::line(&self.alice, "transport "),
            Run::line(&self.bob, "transport "),
        )
    }

    /// Bytes per second from a bot's `transferred N bytes in S s, ...` line.
    fn rate(lines: &[String]) -> f64 {
        let l = Run::line(lines, "transferred ");
        let w: Vec<&str> = l.split_whitespace().collect();
        let bytes: f64 = w[1].parse().expect("bytes");
        let secs: f64 = w[4].parse().expect("seconds");
        bytes / secs
    }
}

/// Sends a file of `size` bytes from LAN A to LAN B and checks what arrived.
fn transfer(lab: &Lab, size: usize) -> Run {
    let src = temp_dir(&format!("{}-src", lab.prefix()));
    let dst = temp_dir(&format!("{}-dst", lab.prefix()));
    let file = src.join("lab file.bin");
    let hash = make_file(&file, size);

    let (bob, bob_jid) = start_receiver(lab, &dst, &[]);
    let alice = start_sender(lab, &bob_jid, &file, &[]);
    let (alice_code, alice_lines) = alice.finish(BOT_SECS);
    let (bob_code, bob_lines) = bob.finish(60);
    assert_eq!(alice_code, Some(0), "send_file failed");
    assert_eq!(bob_code, Some(0), "recv_file failed");
    let run = Run {
        alice: alice_lines,
        bob: bob_lines,
    };
    assert_eq!(
        Run::line(&run.alice, "sha-256 "),
        format!("sha-256 {hash} verified")
    );
    assert_eq!(
        Run::line(&run.bob, "sha-256 "),
        format!("sha-256 {hash} verified")
    );
    let stored = Run::line(&run.bob, "stored ");
    let stored = PathBuf::from(stored.trim_start_matches("stored "));
    assert_eq!(stored, dst.join("lab file.bin"));
    let entries: Vec<_> = std::fs::read_dir(&dst).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the final file, no part file");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), size as u64);
    assert_eq!(hash_file(&stored), hash);
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
    run
}

#[test]
fn lab_files_256_mib_through_two_port_restricted_nats() {
    let Some(lab) = lab(
        "lab_files_256_mib_through_two_port_restricted_nats",
        Nat::PortRestricted,
        Nat::PortRestricted,
    ) else {
        return;
    };
    let (a, b) = transfer(&lab, 256 << 20).transports();
    assert_eq!(pair_types(&a), ("srflx".into(), "srflx".into()), "{a}");
    assert_eq!(pair_types(&b), ("srflx".into(), "srflx".into()), "{b}");
}

#[test]
fn lab_files_256_mib_relayed_between_two_symmetric_nats() {
    let Some(lab) = lab(
        "lab_files_256_mib_relayed_between_two_symmetric_nats",
        Nat::Symmetric,
        Nat::Symmetric,
    ) else {
        return;
    };
    let (a, b) = transfer(&lab, 256 << 20).transports();
    // Through coturn: at least one end of the pair is a relayed candidate. Which one depends on
    // the race of checks (relay-relay, or one side's relay against the other's peer-reflexive
    // mapping of its symmetric NAT); no direct path exists between two symmetric NATs.
    for line in [&a, &b] {
        let (local, remote) = pair_types(line);
        assert!(local == "relay" || remote == "relay", "{line}");
    }
}

/// The bare data channel of a file-transfer session between the same accounts through the
/// same lab (`examples/raw_file_peer.rs`): the same offer and channel as the bots, but the
/// sender writes generated bytes and the receiver drops them (no disk, no hashing). Returns
/// the sender's bytes per second, first byte to the last acknowledged, as `send_file` counts.
fn channel_rate(lab: &Lab, bytes: usize) -> f64 {
    let peer = example_binary("raw_file_peer");
    let mut argv = vec![s(&peer)];
    argv.extend(login(lab, 2));
    argv.push("--receive".into());
    let mut bob = LineProcess::start(lab, "LAB_NS_B", "raw_file_peer B", BOT_SECS, &argv);
    let bob_jid = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    bob.expect("ready");
    let mut argv = vec![s(&peer)];
    argv.extend(login(lab, 1));
    argv.extend(["--to".into(), bob_jid]);
    argv.extend(["--announce".into(), bytes.to_string()]);
    argv.extend(["--send".into(), bytes.to_string()]);
    let alice = LineProcess::start(lab, "LAB_NS_A", "raw_file_peer A", BOT_SECS, &argv);
    let (alice_code, alice_lines) = alice.finish(BOT_SECS);
    let (bob_code, bob_lines) = bob.finish(60);
    assert_eq!(
        (alice_code, bob_code),
        (Some(0), Some(0)),
        "raw_file_peer failed"
    );
    let received = Run::line(&bob_lines, "received ");
    assert!(
        received.starts_with(&format!("received {bytes} bytes in ")),
        "{received}"
    );
    assert_eq!(
        Run::line(&alice_lines, "ended-by-peer "),
        "ended-by-peer success"
    );
    // sent N bytes in S s
    let sent = Run::line(&alice_lines, "sent ");
    let w: Vec<&str> = sent.split_whitespace().collect();
    assert_eq!(w[1], bytes.to_string(), "{sent}");
    let secs: f64 = w[4].parse().expect("seconds");
    bytes as f64 / secs
}

/// Peak resident memory may grow this much (ratio) from the small transfer to the big one...
const RSS_RATIO: f64 = 1.25;
/// ...plus this many bytes (allocator noise, a few more buffers in flight).
const RSS_SLACK: f64 = 8.0 * 1024.0 * 1024.0;

#[test]
fn lab_files_peak_memory_does_not_grow_from_64_mib_to_1_gib() {
    let Some(lab) = lab(
        "lab_files_peak_memory_does_not_grow_from_64_mib_to_1_gib",
        Nat::PortRestricted,
        Nat::PortRestricted,
    ) else {
        return;
    };
    // The bare channel just before each transfer: the machine is shared, so neighbours in time
    // compare best.
    let channel_small = channel_rate(&lab, 64 << 20);
    let small = transfer(&lab, 64 << 20);
    let channel_big = channel_rate(&lab, 64 << 20);
    let big = transfer(&lab, 1 << 30);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for (bot, s, b) in [
        ("send_file", peak_rss(&small.alice), peak_rss(&big.alice)),
        ("recv_file", peak_rss(&small.bob), peak_rss(&big.bob)),
    ] {
        eprintln!(
            "MEASURED {bot} peak RSS: 64 MiB transfer {:.1} MiB, 1 GiB transfer {:.1} MiB (ratio {:.3})",
            mib(s),
            mib(b),
            b as f64 / s as f64
        );
        assert!(
            b as f64 <= s as f64 * RSS_RATIO + RSS_SLACK,
            "{bot}: peak RSS grew from {s} to {b} bytes"
        );
    }
    // Figures only: wall-clock rates on a shared machine are not asserted.
    for (name, run, channel) in [
        ("64 MiB", &small, channel_small),
        ("1 GiB", &big, channel_big),
    ] {
        let sent = Run::rate(&run.alice);
        let stored = Run::rate(&run.bob);
        eprintln!(
            "MEASURED file {name}: sender {:.1} MB/s, receiver {:.1} MB/s; bare channel {:.1} MB/s \
             (64 MiB just before, no disk, no hash); file/channel {:.2}",
            sent / 1e6,
            stored / 1e6,
            channel / 1e6,
            sent / channel
        );
    }
}

#[test]
fn lab_files_over_in_band_bytestreams_when_udp_is_blocked_and_there_is_no_turn() {
    // No peer-to-peer path and no relay: both LANs drop outgoing UDP, and coturn runs
    // STUN only (which the blocked UDP cannot reach either). The session falls back to IBB
    // through Prosody.
    let options = LabOptions {
        turn: false,
        ..LabOptions::with_servers(Nat::UdpBlocked, Nat::UdpBlocked)
    };
    let Some(lab) = Lab::up(
        "lab_files_over_in_band_bytestreams_when_udp_is_blocked_and_there_is_no_turn",
        options,
    ) else {
        return;
    };
    let run = transfer(&lab, 256 << 20);
    let (a, b) = run.transports();
    for line in [&a, &b] {
        assert!(line.contains("In-Band Bytestreams"), "{line}");
    }
    println!(
        "MEASURED IBB through Prosody: {:.2} MB/s (sender), {:.2} MB/s (receiver)",
        Run::rate(&run.alice) / 1e6,
        Run::rate(&run.bob) / 1e6
    );
}
