//! Lost TURN allocations in the lab (issue 13): the `send_file` and `recv_file` bots move a
//! file between two LANs behind symmetric NATs, where no direct path exists and the data must
//! go through coturn, while coturn tears allocations down.
//!
//! - Without a default route on the TURN host, coturn 4.6.1 tears an allocation down as soon
//!   as it relays a connectivity check to a peer's private host candidate (the send fails with
//!   ENETUNREACH: "udp send: Network is unreachable", then the session is closed). The agents
//!   notice (a TCP stream closed; over UDP, a CreatePermission answered 400 and the Refresh
//!   that verifies it answered 437), remove the relayed candidate, allocate again a second
//!   later without pairing the new relayed candidate with that private address, trickle it,
//!   and connect through it: the file goes through coturn on a data channel, not In-Band
//!   Bytestreams.
//! - coturn is killed (`lab.sh stop-turn`) while the file flows and started again 2 s later:
//!   the agent whose selected pair went through its own allocation notices (a closed stream,
//!   or an unanswered consent check and a Refresh answered 437), the session restarts ICE,
//!   new allocations are made once coturn is back, and the same data channel carries the rest
//!   of the file.
//!
//! Each run checks both bots' hash lines, the stored file byte for byte, that no part file is
//! left, and that the transport is a data channel through a relayed candidate. Needs root; see
//! `tests/lab/README.md`.

mod lab_common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab_common::files::{hash_file, make_file, start_receiver, start_sender, temp_dir, BOT_SECS};
use lab_common::{Lab, LabOptions, LineProcess, Nat};

/// How long coturn stays down in the middle of the transfer.
const TURN_DOWN: Duration = Duration::from_secs(2);

fn line(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
        .clone()
}

/// The byte count of a `progress B / T bytes, ...` line.
fn progress_bytes(line: &str) -> u64 {
    line.trim_start_matches("progress ")
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("not a progress line: {line:?}"))
}

/// Checks a bot's `transport ...` line: a data channel over a pair with a relayed end.
fn assert_relayed_data_channel(bot: &str, lines: &[String]) {
    let t = line(lines, "transport ");
    assert!(
        t.starts_with("transport WebRTC data channel over ICE ("),
        "{bot}: not a data channel: {t}"
    );
    assert!(t.contains("relay "), "{bot}: no relayed candidate: {t}");
    assert!(!t.contains("In-Band"), "{bot}: {t}");
}

/// Waits for both bots, checks exit codes, hashes, the stored file and that no part file is
/// left; returns both bots' lines.
fn finish(
    alice: LineProcess,
    bob: LineProcess,
    hash: &str,
    dst: &std::path::Path,
    name: &str,
    size: usize,
) -> (Vec<String>, Vec<String>) {
    let (alice_code, alice_lines) = alice.finish(BOT_SECS);
    let (bob_code, bob_lines) = bob.finish(60);
    assert_eq!(alice_code, Some(0), "send_file failed");
    assert_eq!(bob_code, Some(0), "recv_file failed");
    for (bot, lines) in [("send_file", &alice_lines), ("recv_file", &bob_lines)] {
        assert_eq!(
            line(lines, "sha-256 "),
            format!("sha-256 {hash} verified"),
            "{bot}"
        );
    }
    let stored = PathBuf::from(line(&bob_lines, "stored ").trim_start_matches("stored "));
    assert_eq!(stored, dst.join(name));
    let entries: Vec<_> = std::fs::read_dir(dst).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the final file, no part file");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), size as u64);
    assert_eq!(hash_file(&stored), hash);
    (alice_lines, bob_lines)
}

/// `transferred N bytes in S s, R MB/s` and `connect time N ms` of a bot, for the record.
fn measured(bot: &str, lines: &[String]) {
    eprintln!(
        "MEASURED {bot}: {}; {}",
        line(lines, "connect time "),
        line(lines, "transferred ")
    );
}

#[test]
fn lab_turn_loss_coturn_kills_allocations_without_a_default_route_and_the_file_still_relays() {
    let test =
        "lab_turn_loss_coturn_kills_allocations_without_a_default_route_and_the_file_still_relays";
    let Some(lab) = Lab::up(
        test,
        LabOptions::with_servers(Nat::Symmetric, Nat::Symmetric),
    ) else {
        return;
    };
    // Take the TURN host's default route away: relaying to a private address now fails with
    // ENETUNREACH, and coturn tears the allocation down.
    let out = lab.exec_in(lab.get("LAB_NS_TURN"), &["ip", "route", "del", "default"]);
    assert!(out.status.success(), "ip route del default: {out:?}");

    let size = 64 << 20;
    let src = temp_dir(&format!("{}-src", lab.prefix()));
    let dst = temp_dir(&format!("{}-dst", lab.prefix()));
    let file = src.join("relayed.bin");
    let hash = make_file(&file, size);
    let (bob, bob_jid) = start_receiver(&lab, &dst, &[]);
    let alice = start_sender(&lab, &bob_jid, &file, &[]);
    let (alice_lines, bob_lines) = finish(alice, bob, &hash, &dst, "relayed.bin", size);
    assert_relayed_data_channel("send_file", &alice_lines);
    assert_relayed_data_channel("recv_file", &bob_lines);
    // The scenario happened: coturn failed relayed sends and closed the sessions.
    let log = std::fs::read_to_string(lab.work_dir().join("turnserver.log")).unwrap_or_default();
    let unreachable = log.matches("Network is unreachable").count();
    assert!(
        unreachable >= 1,
        "coturn never failed a relayed send: the test proved nothing\n{log}"
    );
    eprintln!("MEASURED coturn: {unreachable} relayed sends failed with ENETUNREACH");
    measured("send_file", &alice_lines);
    measured("recv_file", &bob_lines);
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
}

#[test]
fn lab_turn_loss_coturn_restarted_mid_transfer_and_the_file_still_relays() {
    let test = "lab_turn_loss_coturn_restarted_mid_transfer_and_the_file_still_relays";
    let Some(lab) = Lab::up(
        test,
        LabOptions::with_servers(Nat::Symmetric, Nat::Symmetric),
    ) else {
        return;
    };
    let size = 128 << 20;
    let src = temp_dir(&format!("{}-src", lab.prefix()));
    let dst = temp_dir(&format!("{}-dst", lab.prefix()));
    let file = src.join("restart.bin");
    let hash = make_file(&file, size);
    let (mut bob, bob_jid) = start_receiver(&lab, &dst, &[]);
    let alice = start_sender(&lab, &bob_jid, &file, &[]);

    // Bytes flow through coturn: kill it under them, and start it again.
    let at_kill = loop {
        let bytes = progress_bytes(&bob.expect_within("progress ", 120));
        assert!(
            bytes < size as u64,
            "the transfer finished before coturn could be killed"
        );
        if bytes > 0 {
            break bytes;
        }
    };
    let killed = Instant::now();
    lab.stop_turn();
    std::thread::sleep(TURN_DOWN);
    lab.start_turn();
    eprintln!(
        "{test}: coturn killed at byte {at_kill}, running again after {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    // The longest wait between two progress reports from the kill on: the outage.
    let mut last = (killed, at_kill);
    let mut stall = Duration::ZERO;
    while last.1 < size as u64 {
        let bytes = progress_bytes(&bob.expect_within("progress ", 120));
        let now = Instant::now();
        if bytes > last.1 {
            stall = stall.max(now.saturating_duration_since(last.0));
            last = (now, bytes);
        }
    }
    let (alice_lines, bob_lines) = finish(alice, bob, &hash, &dst, "restart.bin", size);
    assert_relayed_data_channel("send_file", &alice_lines);
    assert_relayed_data_channel("recv_file", &bob_lines);
    eprintln!(
        "MEASURED {test}: longest stall of the receiver after coturn was killed {:.2} s \
         (coturn down {:.1} s)",
        stall.as_secs_f64(),
        TURN_DOWN.as_secs_f64()
    );
    measured("send_file", &alice_lines);
    measured("recv_file", &bob_lines);
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
}
