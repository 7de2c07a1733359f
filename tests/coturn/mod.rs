//! A real coturn on 127.0.0.1 for tests (Debian package `coturn`), killed on drop.
//!
//! Without `turnserver` the tests that use it say so loudly and pass, except under `CI=true`,
//! where a missing coturn is a failure.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "coturn-test-secret";
const WAIT: Duration = Duration::from_secs(10);

/// A coturn process, killed on drop.
pub struct Coturn {
    child: Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn turnserver_available() -> bool {
    let found = Command::new("turnserver")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "CI=true but `turnserver` (coturn) is not installed");
        eprintln!(
            "\n*** SKIPPED: `turnserver` (coturn) is not installed; apt-get install coturn ***\n"
        );
    }
    found
}

/// A port free for both UDP and TCP on 127.0.0.1 right now (and the next one, which coturn
/// may use as its alternate port).
fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let port = udp.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port");
}

pub fn start_coturn() -> Coturn {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("jingle-ice-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--realm=example.test",
            "--use-auth-secret",
            &format!("--static-auth-secret={SECRET}"),
            "--allow-loopback-peers",
            "--min-port=40000",
            "--max-port=60000",
            "--simple-log",
            &format!("--log-file={}", dir.join("turn.log").display()),
            &format!("--pidfile={}", dir.join("turn.pid").display()),
            &format!("--userdb={}", dir.join("turndb").display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnserver");
    let coturn = Coturn { child, port, dir };
    // Ready once its TCP listener accepts.
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "coturn did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    coturn
}
