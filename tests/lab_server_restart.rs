//! The XMPP server restarts in the middle of a file transfer (issue 6): the `send_file` and
//! `recv_file` bots move a file peer-to-peer through two port-restricted NATs, the lab's Prosody
//! is stopped (SIGTERM: every client stream ends with `<system-shutdown/>`), kept down for a
//! moment and started again while the bytes flow over the data channel. Both bots reconnect
//! as the same full JID (their `xmpp reconnected` lines), the end-of-transfer signalling
//! (`<checksum/>`, `<received/>`, `session-terminate`) goes through the new streams, and the
//! transfer completes: hash verified by both, the file in place byte for byte, no part file.
//! Needs root; see `tests/lab/README.md`.

mod lab_common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab_common::files::{hash_file, login, make_file, s, temp_dir};
use lab_common::{example_binary, Lab, LabOptions, LineProcess, Nat};

/// Bound on one bot process.
const BOT_SECS: u64 = 600;
/// The file: big enough that the transfer is still running after the restart.
const FILE_SIZE: usize = 256 << 20;
/// How long the server stays down: the clients' first reconnect attempts fail.
const SERVER_DOWN: Duration = Duration::from_secs(2);

/// The byte count of a `progress B / T bytes, ...` line.
fn progress_bytes(line: &str) -> u64 {
    line.trim_start_matches("progress ")
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("not a progress line: {line:?}"))
}

#[test]
fn lab_server_restart_mid_transfer_the_file_still_arrives() {
    let test = "lab_server_restart_mid_transfer_the_file_still_arrives";
    let Some(lab) = Lab::up(
        test,
        LabOptions::with_servers(Nat::PortRestricted, Nat::PortRestricted),
    ) else {
        return;
    };
    let started = Instant::now();
    let src = temp_dir(&format!("{}-src", lab.prefix()));
    let dst = temp_dir(&format!("{}-dst", lab.prefix()));
    let file = src.join("restart.bin");
    let hash = make_file(&file, FILE_SIZE);

    let mut recv_argv = vec![s(&example_binary("recv_file"))];
    recv_argv.extend(login(&lab, 2));
    recv_argv.extend(["--dir".into(), s(&dst)]);
    recv_argv.extend(["--from".into(), lab.get("LAB_XMPP_JID1").into()]);
    let mut bob = LineProcess::start(&lab, "LAB_NS_B", "recv_file", BOT_SECS, &recv_argv);
    let bob_jid = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    bob.expect("ready");

    let mut send_argv = vec![s(&example_binary("send_file"))];
    send_argv.extend(login(&lab, 1));
    send_argv.extend(["--to".into(), bob_jid.clone(), s(&file)]);
    let mut alice = LineProcess::start(&lab, "LAB_NS_A", "send_file", BOT_SECS, &send_argv);
    let alice_jid = alice.expect("jid ").trim_start_matches("jid ").to_owned();

    // Bytes are flowing peer-to-peer: restart the server under them.
    loop {
        let line = bob.expect_within("progress ", 120);
        let bytes = progress_bytes(&line);
        assert!(
            bytes < FILE_SIZE as u64,
            "the transfer finished before the restart could happen: {line}"
        );
        if bytes > 0 {
            break;
        }
    }
    let down = lab.restart_xmpp(SERVER_DOWN);
    eprintln!(
        "{test}: Prosody restarted ({:.1} s without it)",
        down.as_secs_f64()
    );

    // Both notice, reconnect, and the transfer goes on over the same data channel: the
    // receiver still reports progress after it lost the server.
    let lost = bob.expect_within("xmpp reconnecting", 60);
    assert!(lost.contains("system-shutdown"), "{lost}");
    alice.expect_within("xmpp reconnecting", 60);
    bob.expect_within("xmpp reconnected (reconnects 1)", 60);
    alice.expect_within("xmpp reconnected (reconnects 1)", 60);

    // The transfer may have ended before a peer got its new stream (its reconnection waits
    // out the server's downtime with backoff): its lines may already have been read.
    let sent = alice.find_within("sha-256 ", 300);
    let got = bob.find_within("sha-256 ", 300);
    assert_eq!(sent, format!("sha-256 {hash} verified"));
    assert_eq!(got, format!("sha-256 {hash} verified"));
    let stored = bob.find_within("stored ", 60);
    let bob_lines = bob.all.clone();
    assert!(alice.wait(), "send_file failed");
    assert!(bob.wait(), "recv_file failed");

    // The receiver was still receiving after it saw the server go: the restart really was
    // in the middle of the transfer.
    let lost_at = bob_lines
        .iter()
        .position(|l| l.starts_with("xmpp reconnecting"))
        .expect("a reconnecting line");
    assert!(
        bob_lines[lost_at..]
            .iter()
            .any(|l| l.starts_with("progress ") && progress_bytes(l) < FILE_SIZE as u64),
        "no progress after the server went away: {bob_lines:?}"
    );
    // Same full JIDs before and after: the sessions are keyed by them.
    assert!(bob_jid.contains('/') && alice_jid.contains('/'));

    let stored = PathBuf::from(stored.trim_start_matches("stored "));
    assert_eq!(stored, dst.join("restart.bin"));
    let entries: Vec<_> = std::fs::read_dir(&dst).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the final file, no part file");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), FILE_SIZE as u64);
    assert_eq!(hash_file(&stored), hash);

    // What the server logged about its shutdown (for the record).
    let log =
        std::fs::read_to_string(lab.work_dir().join("prosody/prosody.log")).unwrap_or_default();
    for line in log.lines().filter(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("shutdown") || l.contains("shutting down") || l.contains("closed")
    }) {
        eprintln!("{test}: prosody: {line}");
    }
    eprintln!("{test}: done in {:.1} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
}
