//! XEP-0234 file transfer through the lab: the `send_file` and `recv_file` bots log in to the
//! real Prosody from two LANs behind NATs, get STUN/TURN from it (XEP-0215, coturn), and move a
//! file peer-to-peer over a WebRTC data channel. Each run checks the hash both bots print, the
//! stored file byte for byte, that no part file is left, and the selected pair's types. Needs
//! root; see `tests/lab/README.md`.

mod lab_common;

use std::path::{Path, PathBuf};

use lab_common::{example_binary, Lab, LabOptions, LineProcess, Nat};
use sha2::{Digest, Sha256};

/// Bound on one bot process.
const BOT_SECS: u64 = 600;

fn lab(test: &str, a: Nat, b: Nat) -> Option<Lab> {
    Lab::up(test, LabOptions::with_servers(a, b))
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

fn login(lab: &Lab, account: u8) -> Vec<String> {
    vec![
        "--jid".into(),
        lab.get(&format!("LAB_XMPP_JID{account}")).into(),
        "--password".into(),
        lab.get(&format!("LAB_XMPP_PASSWORD{account}")).into(),
        "--server".into(),
        lab.get("LAB_XMPP_ADDR").into(),
        "--ca".into(),
        lab.get("LAB_CA").into(),
    ]
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jingle-ice-lab-files-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file of `size` pseudo-random bytes and its SHA-256 in hex.
fn make_file(path: &Path, size: usize) -> String {
    let mut data = Vec::with_capacity(size);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    std::fs::write(path, &data).unwrap();
    Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

    let mut recv_argv = vec![s(&example_binary("recv_file"))];
    recv_argv.extend(login(lab, 2));
    recv_argv.extend(["--dir".into(), s(&dst)]);
    recv_argv.extend(["--from".into(), lab.get("LAB_XMPP_JID1").into()]);
    let mut bob = LineProcess::start(lab, "LAB_NS_B", "recv_file", BOT_SECS, &recv_argv);
    let bob_jid = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    bob.expect("ready");

    let mut send_argv = vec![s(&example_binary("send_file"))];
    send_argv.extend(login(lab, 1));
    send_argv.extend(["--to".into(), bob_jid, s(&file)]);
    let mut alice = LineProcess::start(lab, "LAB_NS_A", "send_file", BOT_SECS, &send_argv);

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
    assert_eq!(
        Sha256::digest(std::fs::read(&stored).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        hash
    );
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
