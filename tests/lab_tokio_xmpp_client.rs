//! The Jingle extension in a plain `tokio_xmpp::Client` (`examples/tokio_xmpp_client.rs`)
//! through the lab: `send_file` (the bot client) in LAN A behind a port-restricted NAT sends a
//! 64 MiB file through the real Prosody to the example in LAN B behind another one. The example
//! gets its STUN/TURN servers from Prosody by itself (XEP-0215), answers the sender's disco#info
//! itself, and stores the file; the test checks both sides' hashes, the stored file byte for
//! byte, that no part file is left, and that the sender reports success. Needs root; see
//! `tests/lab/README.md`.

mod lab_common;

use lab_common::files::{
    hash_file, login, make_file, s, start_sender, temp_dir, Cleanup, Run, BOT_SECS,
};
use lab_common::{example_binary, Lab, LabOptions, LineProcess, Nat};

#[test]
fn lab_tokio_xmpp_client_receives_64_mib_through_two_port_restricted_nats() {
    let test = "lab_tokio_xmpp_client_receives_64_mib_through_two_port_restricted_nats";
    let Some(lab) = Lab::up(
        test,
        LabOptions::with_servers(Nat::PortRestricted, Nat::PortRestricted),
    ) else {
        return;
    };
    let size = 64 << 20;
    let src = temp_dir(&format!("{}-src", lab.prefix()));
    let dst = temp_dir(&format!("{}-dst", lab.prefix()));
    let _cleanup = (Cleanup(src.clone()), Cleanup(dst.clone()));
    let file = src.join("tokio-xmpp.bin");
    let hash = make_file(&file, size);

    // Bob: the example, a plain tokio-xmpp client with the extension plugged in.
    let mut argv = vec![s(&example_binary("tokio_xmpp_client"))];
    argv.extend(login(&lab, 2));
    argv.extend(["--dir".into(), s(&dst), "--count".into(), "1".into()]);
    let mut bob = LineProcess::start(&lab, "LAB_NS_B", "tokio_xmpp_client", BOT_SECS, &argv);
    let bob_jid = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    assert!(bob_jid.contains('/'), "a full JID: {bob_jid}");
    bob.expect("ready");

    // Alice: the send_file bot, which asks Bob's disco#info before offering (the extension
    // answers it on its own).
    let alice = start_sender(&lab, &bob_jid, &file, &[]);
    let (alice_code, alice_lines) = alice.finish(BOT_SECS);
    let (bob_code, bob_lines) = bob.finish(60);
    assert_eq!(alice_code, Some(0), "send_file failed: {alice_lines:?}");
    assert_eq!(bob_code, Some(0), "tokio_xmpp_client failed: {bob_lines:?}");
    assert_eq!(
        Run::line(&alice_lines, "sha-256 "),
        format!("sha-256 {hash} verified"),
        "the sender reports success"
    );
    assert_eq!(
        Run::line(&bob_lines, "received "),
        format!("received tokio-xmpp.bin {size} sha-256 {hash} verified")
    );
    let stored = Run::line(&bob_lines, "stored ");
    let stored = std::path::PathBuf::from(stored.trim_start_matches("stored "));
    assert_eq!(stored, dst.join("tokio-xmpp.bin"));
    let entries: Vec<_> = std::fs::read_dir(&dst).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the final file, no part file");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), size as u64);
    assert_eq!(hash_file(&stored), hash);
    let transport = Run::line(&alice_lines, "transport ");
    assert!(
        transport.starts_with("transport WebRTC data channel over ICE"),
        "{transport}"
    );
}
