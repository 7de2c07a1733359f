//! A stream tube through the lab: `python3 -m http.server` in LAN A serves a directory of
//! random files, the `tube` example shares it from LAN A (`tube share`) and reaches it from
//! LAN B (`tube connect`) over a Jingle session through both NATs, with Prosody and coturn
//! from the lab; then 20 HTTP GETs run at once in LAN B through the tube's local port and every
//! body's SHA-256 is compared with the original file's. Needs root; see `tests/lab/README.md`.

mod lab_common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lab_common::files::{hex, login, s};
use lab_common::{example_binary, Lab, LabOptions, LineProcess, Nat};
use sha2::{Digest, Sha256};

/// Bound on one bot process.
const BOT_SECS: u64 = 300;
/// The HTTP server's port inside LAN A's host namespace.
const HTTP_PORT: u16 = 18080;
/// HTTP GETs run at once (issue 6's proof).
const GETS: usize = 20;

/// Fetches `URL...` at once (a barrier releases all threads together), one TCP connection
/// each (`Connection: close`), and prints `ok NAME SIZE SHA256` per body; exits 1 on any error.
const CLIENT: &str = r#"
import hashlib, sys, threading, time, urllib.request
urls = sys.argv[1:]
barrier = threading.Barrier(len(urls))
results = [None] * len(urls)
def get(i, url):
    barrier.wait()
    try:
        req = urllib.request.Request(url, headers={"Connection": "close"})
        with urllib.request.urlopen(req, timeout=120) as r:
            body = r.read()
        results[i] = "ok %s %d %s" % (url.rsplit("/", 1)[-1], len(body), hashlib.sha256(body).hexdigest())
    except Exception as e:
        results[i] = "error %s %r" % (url, e)
started = time.monotonic()
threads = [threading.Thread(target=get, args=(i, u)) for i, u in enumerate(urls)]
for t in threads: t.start()
for t in threads: t.join()
took = time.monotonic() - started
for r in results: print(r)
print("elapsed %.3f" % took)
sys.exit(0 if all(r.startswith("ok ") for r in results) else 1)
"#;

/// Files of pseudo-random bytes, 1 byte to a little over 3 MiB; their names and SHA-256s.
fn make_site(dir: &Path) -> Vec<(String, usize, String)> {
    let sizes = [
        1usize,
        100,
        4096,
        65_535,
        65_536,
        100_003,
        524_288,
        1 << 20,
        2_000_001,
        (3 << 20) + 17,
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mut data = Vec::with_capacity(size + 8);
            while data.len() < size {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.extend_from_slice(&x.to_le_bytes());
            }
            data.truncate(size);
            let name = format!("file{i}-{size}.bin");
            std::fs::write(dir.join(&name), &data).unwrap();
            (name, size, hex(&Sha256::digest(&data)))
        })
        .collect()
}

/// Kills the HTTP server (a child we started) however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn lab_tube_carries_20_concurrent_http_gets_through_two_nats() {
    let Some(lab) = Lab::up(
        "lab_tube_carries_20_concurrent_http_gets_through_two_nats",
        LabOptions::with_servers(Nat::PortRestricted, Nat::PortRestricted),
    ) else {
        return;
    };
    let site = std::env::temp_dir().join(format!("jingle-ice-lab-tube-{}", lab.prefix()));
    let _ = std::fs::remove_dir_all(&site);
    std::fs::create_dir_all(&site).unwrap();
    let files = make_site(&site);
    let expected: HashMap<&str, (usize, &str)> = files
        .iter()
        .map(|(n, size, h)| (n.as_str(), (*size, h.as_str())))
        .collect();

    // The service, in LAN A.
    let port = HTTP_PORT.to_string();
    let site_s = s(&site);
    let http = KillOnDrop(lab.spawn_in(
        lab.get("LAB_NS_A"),
        &[
            "python3",
            "-m",
            "http.server",
            &port,
            "--bind",
            "127.0.0.1",
            "--directory",
            &site_s,
        ],
    ));
    let probe = format!("import socket; socket.create_connection(('127.0.0.1', {HTTP_PORT}), 1)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab
        .exec_in(lab.get("LAB_NS_A"), &["python3", "-c", &probe])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the HTTP server did not listen");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Bob connects from LAN B: waits for the offer, then listens on a port of its choosing.
    let tube = s(&example_binary("tube"));
    let mut bob_argv = vec![tube.clone(), "connect".into()];
    bob_argv.extend(login(&lab, 2));
    bob_argv.extend([
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--allow".into(),
        lab.get("LAB_XMPP_JID1").into(),
        "--connections".into(),
        GETS.to_string(),
    ]);
    let mut bob = LineProcess::start(&lab, "LAB_NS_B", "tube connect", BOT_SECS, &bob_argv);
    let bob_jid = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    bob.expect("ready");

    // Alice shares the HTTP server from LAN A.
    let mut alice_argv = vec![tube, "share".into()];
    alice_argv.extend(login(&lab, 1));
    alice_argv.extend([
        "--service".into(),
        format!("127.0.0.1:{HTTP_PORT}"),
        "--peer".into(),
        bob_jid,
        "--name".into(),
        "http".into(),
        "--desc".into(),
        "the lab's pages".into(),
    ]);
    let mut alice = LineProcess::start(&lab, "LAB_NS_A", "tube share", BOT_SECS, &alice_argv);

    let offer = bob.expect_within("offer from ", 120);
    assert!(offer.ends_with("service http (the lab's pages)"), "{offer}");
    let ta = alice.expect_within("transport ", 120);
    let tb = bob.expect_within("transport ", 120);
    let listening = bob.expect("listening ");
    let addr = listening.trim_start_matches("listening ").to_owned();
    alice.expect("sharing http ");
    // Through two port-restricted NATs the pair is server-reflexive at both ends.
    for line in [&ta, &tb] {
        assert!(
            line.contains("(srflx ") && line.contains("-> srflx "),
            "{line}"
        );
    }

    // 20 GETs at once in LAN B, each file at least once.
    let urls: Vec<String> = (0..GETS)
        .map(|i| format!("http://{addr}/{}", files[i % files.len()].0))
        .collect();
    let mut client_cmd: Vec<&str> = vec!["python3", "-c", CLIENT];
    client_cmd.extend(urls.iter().map(String::as_str));
    let out = lab.exec_in(lab.get("LAB_NS_B"), &client_cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the HTTP client failed");
    let mut checked = 0;
    let mut bytes = 0;
    for line in stdout.lines().filter(|l| l.starts_with("ok ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 4, "{line}");
        let (size, hash) = expected[words[1]];
        assert_eq!(words[2], size.to_string(), "{line}");
        assert_eq!(words[3], hash, "{line}");
        checked += 1;
        bytes += size;
    }
    assert_eq!(checked, GETS);
    if let Some(t) = stdout.lines().find_map(|l| l.strip_prefix("elapsed ")) {
        let secs: f64 = t.parse().unwrap();
        eprintln!(
            "{GETS} concurrent GETs, {bytes} bytes in {secs:.2} s: {:.1} MB/s through the tube",
            bytes as f64 / secs / 1e6
        );
    }

    // Bob ends the tube after its 20 connections; both report them and exit cleanly.
    let bob_stats = bob.expect_within("connections ", 60);
    assert!(
        bob_stats.starts_with(&format!("connections {GETS}, refused 0, failed 0,")),
        "{bob_stats}"
    );
    let alice_stats = alice.expect_within("connections ", 60);
    assert!(
        alice_stats.starts_with(&format!("connections {GETS}, refused 0, failed 0,")),
        "{alice_stats}"
    );
    assert_eq!(bob.expect("ended "), "ended success");
    assert_eq!(alice.expect("ended "), "ended success");
    assert!(bob.wait(), "tube connect failed");
    assert!(alice.wait(), "tube share failed");
    drop(http);
    let _ = std::fs::remove_dir_all(&site);
}
