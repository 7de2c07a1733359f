//! What the file-transfer lab tests share: the bots' login arguments, starting `send_file` and
//! `recv_file` in the lab's namespaces, test files and their hashes, directory listings.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{example_binary, Lab, LineProcess};

/// Bound on one bot process.
pub const BOT_SECS: u64 = 600;

/// A path as a string argument.
pub fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// The login options of lab account 1 (alice) or 2 (bob).
pub fn login(lab: &Lab, account: u8) -> Vec<String> {
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

/// A fresh, empty directory for `tag` (the caller removes it).
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jingle-ice-lab-files-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes a directory tree when dropped (also when the test panics).
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    jingle_ice::hex::encode(b)
}

/// Writes a file of `size` pseudo-random bytes (block by block, so that big files need no big
/// buffer) and returns its SHA-256 in hex.
pub fn make_file(path: &Path, size: usize) -> String {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut block = Vec::with_capacity(1 << 20);
    let mut left = size;
    while left > 0 {
        block.clear();
        while block.len() < (1 << 20).min(left) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            block.extend_from_slice(&x.to_le_bytes());
        }
        block.truncate((1 << 20).min(left));
        out.write_all(&block).unwrap();
        hasher.update(&block);
        left -= block.len();
    }
    out.flush().unwrap();
    hex(&hasher.finalize())
}

/// The SHA-256 of a file, hex.
pub fn hash_file(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex(&hasher.finalize())
}

/// Every path under `dir` (relative, sorted), directories included.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if p.is_dir() && !p.is_symlink() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Starts `recv_file` for bob in B's namespace storing into `dir` (accepting only alice),
/// with `extra` arguments; returns it once it is ready, with bob's full JID.
pub fn start_receiver(lab: &Lab, dir: &Path, extra: &[&str]) -> (LineProcess, String) {
    let mut argv = vec![s(&example_binary("recv_file"))];
    argv.extend(login(lab, 2));
    argv.extend(["--dir".into(), s(dir)]);
    argv.extend(["--from".into(), lab.get("LAB_XMPP_JID1").into()]);
    argv.extend(extra.iter().map(|a| a.to_string()));
    let mut bob = LineProcess::start(lab, "LAB_NS_B", "recv_file", BOT_SECS, &argv);
    let jid = bob.expect("jid ").trim_start_matches("jid ").to_owned();
    bob.expect("ready");
    (bob, jid)
}

/// Starts `send_file` for alice in A's namespace, sending `file` to `to` with `extra`
/// arguments before the file.
pub fn start_sender(lab: &Lab, to: &str, file: &Path, extra: &[&str]) -> LineProcess {
    let mut argv = vec![s(&example_binary("send_file"))];
    argv.extend(login(lab, 1));
    argv.extend(["--to".into(), to.to_owned()]);
    argv.extend(extra.iter().map(|a| a.to_string()));
    argv.push(s(file));
    LineProcess::start(lab, "LAB_NS_A", "send_file", BOT_SECS, &argv)
}

/// The value of a `peak-rss BYTES` line among `lines`.
pub fn peak_rss(lines: &[String]) -> u64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("peak-rss "))
        .unwrap_or_else(|| panic!("no peak-rss line in {lines:?}"))
        .parse()
        .expect("peak-rss BYTES")
}

/// The candidate types in a `transport ... (local-type addr -> remote-type addr)` line.
pub fn pair_types(line: &str) -> (String, String) {
    let inner = line
        .split_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no pair in {line:?}"));
    let words: Vec<&str> = inner.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{line:?}");
    (words[0].to_owned(), words[3].to_owned())
}

/// What both bots printed during one transfer.
pub struct Run {
    /// send_file's lines (LAN A).
    pub alice: Vec<String>,
    /// recv_file's lines (LAN B).
    pub bob: Vec<String>,
}

impl Run {
    /// The first of `lines` starting with `prefix`; panics when there is none.
    pub fn line(lines: &[String], prefix: &str) -> String {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
            .clone()
    }

    /// Both bots' `transport` lines.
    pub fn transports(&self) -> (String, String) {
        (
            Run::line(&self.alice, "transport "),
            Run::line(&self.bob, "transport "),
        )
    }

    /// Bytes per second from a bot's `transferred N bytes in S s, ...` line.
    pub fn rate(lines: &[String]) -> f64 {
        let l = Run::line(lines, "transferred ");
        let w: Vec<&str> = l.split_whitespace().collect();
        let bytes: f64 = w[1].parse().expect("bytes");
        let secs: f64 = w[4].parse().expect("seconds");
        bytes / secs
    }
}

/// Sends a file of `size` bytes from LAN A to LAN B and checks what arrived.
pub fn transfer(lab: &Lab, size: usize) -> Run {
    let src = temp_dir(&format!("{}-src", lab.prefix()));
    let dst = temp_dir(&format!("{}-dst", lab.prefix()));
    let _cleanup = (Cleanup(src.clone()), Cleanup(dst.clone()));
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
    run
}
