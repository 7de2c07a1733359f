//! XEP-0234 file transfer through the lab: the `send_file` and `recv_file` bots log in to the
//! real Prosody from two LANs behind NATs, get STUN/TURN from it (XEP-0215, coturn), and move a
//! file peer-to-peer over a WebRTC data channel. Each run checks the hash both bots print, the
//! stored file byte for byte, that no part file is left, and the selected pair's types. Needs
//! root; see `tests/lab/README.md`.

mod lab_common;

use std::path::PathBuf;

use lab_common::files::{hash_file, make_file, start_receiver, start_sender, temp_dir};
use lab_common::{Lab, LabOptions, Nat};

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

/// Sends a file of `size` bytes from LAN A to LAN B; returns both bots' `transport` lines.
fn transfer(lab: &Lab, size: usize) -> (String, String) {
    let src = temp_dir(&format!("{}-src", lab.prefix()));
    let dst = temp_dir(&format!("{}-dst", lab.prefix()));
    let file = src.join("lab file.bin");
    let hash = make_file(&file, size);

    let (mut bob, bob_jid) = start_receiver(lab, &dst, &[]);
    let mut alice = start_sender(lab, &bob_jid, &file, &[]);

    let ta = alice.expect_within("transport ", 300);
    let tb = bob.expect_within("transport ", 300);
    let sent = alice.expect_within("sha-256 ", 300);
    let got = bob.expect_within("sha-256 ", 300);
    assert_eq!(sent, format!("sha-256 {hash} verified"));
    assert_eq!(got, format!("sha-256 {hash} verified"));
    let stored = bob.expect("stored ");
    assert!(alice.wait(), "send_file failed");
    assert!(bob.wait(), "recv_file failed");

    let stored = PathBuf::from(stored.trim_start_matches("stored "));
    assert_eq!(stored, dst.join("lab file.bin"));
    let entries: Vec<_> = std::fs::read_dir(&dst).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the final file, no part file");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), size as u64);
    assert_eq!(hash_file(&stored), hash);
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
    (ta, tb)
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
    let (a, b) = transfer(&lab, 256 << 20);
    assert_eq!(pair_types(&a), ("srflx".into(), "srflx".into()), "{a}");
    assert_eq!(pair_types(&b), ("srflx".into(), "srflx".into()), "{b}");
}

#[test]
fn lab_files_64_mib_relayed_between_two_symmetric_nats() {
    let Some(lab) = lab(
        "lab_files_64_mib_relayed_between_two_symmetric_nats",
        Nat::Symmetric,
        Nat::Symmetric,
    ) else {
        return;
    };
    let (a, b) = transfer(&lab, 64 << 20);
    // Through coturn: at least one end of the pair is a relayed candidate. Which one depends on
    // the race of checks (relay-relay, or one side's relay against the other's peer-reflexive
    // mapping of its symmetric NAT); no direct path exists between two symmetric NATs.
    for line in [&a, &b] {
        let (local, remote) = pair_types(line);
        assert!(local == "relay" || remote == "relay", "{line}");
    }
}
