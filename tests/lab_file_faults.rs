//! XEP-0234 file transfer failing in the lab, with the real bots through two port-restricted
//! NATs (Prosody, coturn): the receiver's disk fills up, either side cancels mid-transfer on a
//! signal, the offer carries a hostile file name, a sender lies about the size (more and fewer
//! bytes than announced, `examples/raw_file_peer.rs`), the file being sent shrinks. Each test
//! checks the end reason both bots report (the side that ended the session with its own
//! message, the other with the XEP-0166 reason it received), their exit codes, and that
//! nothing is left under the final name and no part file remains. Needs root; see
//! `tests/lab/README.md`.

mod lab_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use lab_common::files::{
    hash_file, login, make_file, s, start_receiver, start_sender, temp_dir, tree, Cleanup, BOT_SECS,
};
use lab_common::{example_binary, Lab, LabOptions, LineProcess, Nat};

/// How long a bot may take to exit once its transfer has ended.
const EXIT_SECS: u64 = 60;

fn lab(test: &str) -> Option<Lab> {
    Lab::up(
        test,
        LabOptions::with_servers(Nat::PortRestricted, Nat::PortRestricted),
    )
}

/// The one line among `lines` that starts with `prefix`.
fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    let found: Vec<&String> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one {prefix:?} line in {lines:?}");
    found[0]
}

fn no_line(lines: &[String], prefix: &str) {
    assert!(
        !lines.iter().any(|l| l.starts_with(prefix)),
        "no {prefix:?} line expected in {lines:?}"
    );
}

/// Waits until the bot prints a `progress` line with some bytes moved.
fn wait_for_bytes(bot: &mut LineProcess) {
    loop {
        let p = bot.expect_within("progress ", 120);
        let bytes: u64 = p
            .split_whitespace()
            .nth(1)
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("progress line {p:?}"));
        if bytes > 0 {
            return;
        }
    }
}

/// A tmpfs of `mib` MiB mounted on a fresh directory; unmounted and removed when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(tag: &str, mib: u32) -> SmallDisk {
        let dir = temp_dir(tag);
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs on {}", dir.display());
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn lab_file_fault_receiver_disk_full() {
    let Some(lab) = lab("lab_file_fault_receiver_disk_full") else {
        return;
    };
    let src = Cleanup(temp_dir(&format!("{}-src", lab.prefix())));
    let disk = SmallDisk::mount(&format!("{}-disk", lab.prefix()), 16);
    let file = src.0.join("big.bin");
    make_file(&file, 32 << 20);

    let (bob, bob_jid) = start_receiver(&lab, &disk.0, &[]);
    let alice = start_sender(&lab, &bob_jid, &file, &[]);
    let (bob_code, bob_lines) = bob.finish(BOT_SECS);
    let (alice_code, alice_lines) = alice.finish(EXIT_SECS);

    // The receiver says why; the session ends with <failed-application/> (a sink I/O error,
    // `fail_condition` in src/apps/file_transfer.rs), which the sender reports.
    let failed = line(&bob_lines, "transfer from ");
    assert!(failed.contains("No space left on device"), "{failed}");
    assert_eq!(bob_code, Some(1));
    assert_eq!(
        line(&alice_lines, "ended-by-peer "),
        "ended-by-peer failed-application"
    );
    assert!(line(&alice_lines, "failed ").contains("No space left on device"));
    assert_eq!(alice_code, Some(1));
    no_line(&alice_lines, "sha-256 ");
    assert_eq!(tree(&disk.0), Vec::<String>::new(), "no file, no part file");
}

/// Sends 128 MiB and interrupts `who` ("sender" or "receiver") with `sig` once bytes flow.
fn cancel(test: &str, who: &str, sig: &str) {
    let Some(lab) = lab(test) else {
        return;
    };
    let src = Cleanup(temp_dir(&format!("{}-src", lab.prefix())));
    let dst = Cleanup(temp_dir(&format!("{}-dst", lab.prefix())));
    let file = src.0.join("long.bin");
    make_file(&file, 128 << 20);

    let (mut bob, bob_jid) = start_receiver(&lab, &dst.0, &[]);
    let mut alice = start_sender(&lab, &bob_jid, &file, &[]);
    let (cancelled, other) = if who == "sender" {
        wait_for_bytes(&mut bob);
        alice.signal(sig);
        (alice, bob)
    } else {
        wait_for_bytes(&mut alice);
        bob.signal(sig);
        (bob, alice)
    };
    let (code, lines) = cancelled.finish(EXIT_SECS);
    let (other_code, other_lines) = other.finish(EXIT_SECS);

    let expected_code = if sig == "INT" { 130 } else { 143 };
    assert_eq!(line(&lines, "cancelled "), format!("cancelled SIG{sig}"));
    assert_eq!(code, Some(expected_code));
    no_line(&lines, "sha-256 ");
    // The <cancel/> reached the peer before the canceller logged off (not <gone/>).
    assert_eq!(line(&other_lines, "ended-by-peer "), "ended-by-peer cancel");
    assert_eq!(other_code, Some(1));
    no_line(&other_lines, "sha-256 ");
    assert_eq!(tree(&dst.0), Vec::<String>::new(), "no file, no part file");
}

#[test]
fn lab_file_fault_sender_cancels_on_sigint() {
    cancel("lab_file_fault_sender_cancels_on_sigint", "sender", "INT");
}

#[test]
fn lab_file_fault_receiver_cancels_on_sigterm() {
    cancel(
        "lab_file_fault_receiver_cancels_on_sigterm",
        "receiver",
        "TERM",
    );
}

#[test]
fn lab_file_fault_hostile_name_stays_in_the_directory() {
    let Some(lab) = lab("lab_file_fault_hostile_name_stays_in_the_directory") else {
        return;
    };
    let src = Cleanup(temp_dir(&format!("{}-src", lab.prefix())));
    // The receiver's directory sits two levels down in a tree of our own, so that anything
    // escaping it by `..` would show up in the tree.
    let base = Cleanup(temp_dir(&format!("{}-base", lab.prefix())));
    let dst = base.0.join("a").join("b").join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let file = src.0.join("plain.bin");
    let hash = make_file(&file, 1 << 20);
    // Separators of both kinds, `..`, a right-to-left override (which would show the name as
    // "evilexe.txt") and a tab (a control character XML allows).
    let hostile = "../../x/..\\evil\u{202e}\ttxt.exe";

    let (bob, bob_jid) = start_receiver(&lab, &dst, &[]);
    let alice = start_sender(&lab, &bob_jid, &file, &["--name", hostile]);
    let (bob_code, bob_lines) = bob.finish(BOT_SECS);
    let (alice_code, _) = alice.finish(EXIT_SECS);

    assert_eq!(alice_code, Some(0));
    assert_eq!(bob_code, Some(0));
    // The offer arrived as sent...
    assert!(
        line(&bob_lines, "offer from ").contains(&format!("{hostile:?}")),
        "{bob_lines:?}"
    );
    // ...and was stored under the last component, without the override and the tab.
    let stored = dst.join("eviltxt.exe");
    assert_eq!(
        line(&bob_lines, "stored "),
        format!("stored {}", stored.display())
    );
    assert_eq!(hash_file(&stored), hash);
    assert_eq!(
        tree(&base.0),
        ["a", "a/b", "a/b/dst", "a/b/dst/eviltxt.exe"],
        "nothing outside the receiver's directory"
    );
    assert!(!src.0.join("x").exists() && !Path::new("/tmp/x").exists());
}

/// `raw_file_peer` announces `announce` bytes and sends `send`.
fn size_lie(test: &str, announce: u64, send: u64) {
    let Some(lab) = lab(test) else {
        return;
    };
    let dst = Cleanup(temp_dir(&format!("{}-dst", lab.prefix())));
    let (bob, bob_jid) = start_receiver(&lab, &dst.0, &[]);
    let mut argv = vec![s(&example_binary("raw_file_peer"))];
    argv.extend(login(&lab, 1));
    argv.extend(["--to".into(), bob_jid]);
    argv.extend(["--announce".into(), announce.to_string()]);
    argv.extend(["--send".into(), send.to_string()]);
    let liar = LineProcess::start(&lab, "LAB_NS_A", "raw_file_peer", BOT_SECS, &argv);
    let (bob_code, bob_lines) = bob.finish(BOT_SECS);
    let (liar_code, liar_lines) = liar.finish(EXIT_SECS);

    let failed = line(&bob_lines, "transfer from ");
    if send > announce {
        // The receiver reads the announced size; the content then disagrees with the hash.
        assert!(
            failed.contains("SHA-256 mismatch") || failed.contains("more than the"),
            "{failed}"
        );
    } else {
        assert!(
            failed.contains(&format!(
                "the channel ended after {send} of {announce} bytes"
            )),
            "{failed}"
        );
    }
    assert_eq!(bob_code, Some(1));
    no_line(&bob_lines, "stored ");
    assert_eq!(
        line(&liar_lines, "ended-by-peer "),
        "ended-by-peer media-error"
    );
    assert_eq!(liar_code, Some(0));
    assert_eq!(tree(&dst.0), Vec::<String>::new(), "no file, no part file");
}

#[test]
fn lab_file_fault_sender_sends_more_than_announced() {
    size_lie(
        "lab_file_fault_sender_sends_more_than_announced",
        8 << 20,
        (8 << 20) + 100_000,
    );
}

#[test]
fn lab_file_fault_sender_sends_less_than_announced() {
    size_lie(
        "lab_file_fault_sender_sends_less_than_announced",
        8 << 20,
        4 << 20,
    );
}

#[test]
fn lab_file_fault_file_shrinks_while_sent() {
    let Some(lab) = lab("lab_file_fault_file_shrinks_while_sent") else {
        return;
    };
    let src = Cleanup(temp_dir(&format!("{}-src", lab.prefix())));
    let dst = Cleanup(temp_dir(&format!("{}-dst", lab.prefix())));
    let file = src.0.join("shrinking.bin");
    make_file(&file, 128 << 20);

    let (bob, bob_jid) = start_receiver(&lab, &dst.0, &[]);
    let mut alice = start_sender(&lab, &bob_jid, &file, &[]);
    wait_for_bytes(&mut alice);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let (alice_code, alice_lines) = alice.finish(BOT_SECS);
    let (bob_code, bob_lines) = bob.finish(EXIT_SECS);

    // The sender finds the end of the file early and ends the session with <media-error/>
    // (XEP-0234 §8.1), which the receiver reports.
    let failed = line(&alice_lines, "failed ");
    assert!(
        failed.contains("of the 134217728 bytes offered"),
        "{failed}"
    );
    assert_eq!(alice_code, Some(1));
    assert_eq!(
        line(&bob_lines, "ended-by-peer "),
        "ended-by-peer media-error"
    );
    assert_eq!(bob_code, Some(1));
    no_line(&bob_lines, "stored ");
    assert_eq!(tree(&dst.0), Vec::<String>::new(), "no file, no part file");
}

/// Waits until the bot's `progress` lines report at least `bytes`.
fn wait_for_at_least(bot: &mut LineProcess, bytes: u64) {
    loop {
        let p = bot.expect_within("progress ", 120);
        let n: u64 = p
            .split_whitespace()
            .nth(1)
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("progress line {p:?}"));
        if n >= bytes {
            return;
        }
    }
}

#[test]
fn lab_file_fault_receiver_killed_then_resumed_sends_only_the_rest() {
    let Some(lab) = lab("lab_file_fault_receiver_killed_then_resumed_sends_only_the_rest") else {
        return;
    };
    let src = Cleanup(temp_dir(&format!("{}-src", lab.prefix())));
    let dst = Cleanup(temp_dir(&format!("{}-dst", lab.prefix())));
    let file = src.0.join("long.bin");
    let size: u64 = 128 << 20;
    let hash = make_file(&file, size as usize);

    // First attempt: the receiver dies without any cleanup (SIGKILL) part of the way in.
    let (mut bob, bob_jid) = start_receiver(&lab, &dst.0, &[]);
    let alice = start_sender(&lab, &bob_jid, &file, &[]);
    wait_for_at_least(&mut bob, 16 << 20);
    bob.kill_hard();
    let (bob_code, _) = bob.finish(EXIT_SECS);
    assert_eq!(bob_code, None, "killed by a signal");
    let (alice_code, alice_lines) = alice.finish(EXIT_SECS + 60);
    assert_eq!(alice_code, Some(1), "the sender fails: {alice_lines:?}");
    let left = tree(&dst.0);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(".long.bin.") && left[0].ends_with(".part"),
        "{left:?}"
    );
    let kept = std::fs::metadata(dst.0.join(&left[0])).unwrap().len();
    assert!(kept > 0 && kept < size, "kept {kept}");

    // Second attempt: the same offer; the receiver asks for the rest only.
    let (bob, bob_jid) = start_receiver(&lab, &dst.0, &[]);
    let alice = start_sender(&lab, &bob_jid, &file, &[]);
    let (alice_code, alice_lines) = alice.finish(BOT_SECS);
    let (bob_code, bob_lines) = bob.finish(EXIT_SECS);
    assert_eq!((alice_code, bob_code), (Some(0), Some(0)));
    for lines in [&alice_lines, &bob_lines] {
        assert_eq!(
            line(lines, "resumed at byte "),
            format!("resumed at byte {kept} of {size} (kept from an interrupted attempt)")
        );
        assert!(
            line(lines, "transferred ").starts_with(&format!("transferred {} bytes", size - kept)),
            "{lines:?}"
        );
        assert_eq!(line(lines, "sha-256 "), format!("sha-256 {hash} verified"));
    }
    assert_eq!(tree(&dst.0), vec!["long.bin".to_owned()]);
    assert_eq!(hash_file(&dst.0.join("long.bin")), hash);
}

/// A stranger's stanza built to crash a recursive reader (a `session-initiate` whose
/// description nests an unknown child 10,000 levels deep, about 70 KB) goes through Prosody
/// to a running `recv_file`: it answers `<policy-violation/>`, stays up, and takes the next
/// transfer as usual.
#[test]
fn lab_file_fault_hostile_stanza_then_the_next_transfer() {
    let Some(lab) = lab("lab_file_fault_hostile_stanza_then_the_next_transfer") else {
        return;
    };
    let src = Cleanup(temp_dir(&format!("{}-src", lab.prefix())));
    let dst = Cleanup(temp_dir(&format!("{}-dst", lab.prefix())));
    let file = src.0.join("after.bin");
    let sent_hash = make_file(&file, 8 << 20);

    let (bob, bob_jid) = start_receiver(&lab, &dst.0, &[]);
    let mut argv = vec![s(&example_binary("xmpp_probe"))];
    argv.extend(login(&lab, 1));
    argv.extend([
        "--hostile".into(),
        bob_jid.clone(),
        "--depth".into(),
        "10000".into(),
    ]);
    let probe = LineProcess::start(&lab, "LAB_NS_A", "xmpp_probe", 120, &argv);
    let (probe_code, probe_lines) = probe.finish(120);
    assert_eq!(probe_code, Some(0), "{probe_lines:?}");
    assert_eq!(line(&probe_lines, "reply "), "reply error policy-violation");

    let alice = start_sender(&lab, &bob_jid, &file, &[]);
    let (alice_code, alice_lines) = alice.finish(BOT_SECS);
    let (bob_code, bob_lines) = bob.finish(EXIT_SECS);
    assert_eq!(alice_code, Some(0), "{alice_lines:?}");
    assert_eq!(bob_code, Some(0), "{bob_lines:?}");
    assert_eq!(
        line(&bob_lines, "sha-256 "),
        format!("sha-256 {sent_hash} verified")
    );
    assert_eq!(hash_file(&dst.0.join("after.bin")), sent_hash);
    assert_eq!(tree(&dst.0), vec!["after.bin".to_owned()]);
}
