//! A real coturn on 127.0.0.1 for tests (Debian package `coturn`), killed on drop, optionally
//! with a TLS listener whose certificate comes from a throwaway CA made with `openssl`.
//!
//! Without `turnserver` (or `openssl`, for TLS) the tests that use it say so loudly and pass,
//! except under `CI=true`, where a missing tool is a failure.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "coturn-test-secret";
const WAIT: Duration = Duration::from_secs(10);

/// A coturn process, killed on drop.
pub struct Coturn {
    child: Child,
    pub port: u16,
    /// The TLS listener's port, when started with [`start_coturn_tls`].
    pub tls_port: Option<u16>,
    dir: PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn turnserver_available() -> bool {
    tool_available("turnserver", "-h", "coturn")
}

/// Whether `openssl` (to make certificates) is installed; under `CI=true` it must be.
pub fn openssl_available() -> bool {
    tool_available("openssl", "version", "openssl")
}

fn tool_available(command: &str, arg: &str, package: &str) -> bool {
    let found = Command::new(command)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "CI=true but `{command}` ({package}) is not installed");
        eprintln!("\n*** SKIPPED: `{command}` is not installed; apt-get install {package} ***\n");
    }
    found
}

/// A throwaway PKI in a temporary directory (removed on drop): a CA, a `CA:FALSE` leaf for
/// `localhost` and 127.0.0.1 signed by it (rustls refuses a CA certificate as an end entity),
/// and a second CA that signed nothing.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub other_ca: PathBuf,
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=jingle-ice test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

pub fn make_pki() -> TestPki {
    let dir = std::env::temp_dir().join(format!(
        "jingle-ice-pki-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    make_ca(&dir, "ca");
    make_ca(&dir, "other-ca");
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "turn.key",
            "-out",
            "turn.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("turn.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "turn.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "turn.crt",
            "-days",
            "2",
            "-extfile",
            "turn.ext",
        ],
    );
    TestPki {
        ca: dir.join("ca.crt"),
        cert: dir.join("turn.crt"),
        key: dir.join("turn.key"),
        other_ca: dir.join("other-ca.crt"),
        dir,
    }
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
    start("127.0.0.1", None)
}

/// coturn with UDP and TCP on `port`, TLS on `tls_port` with `pki`'s leaf certificate, and
/// relayed addresses on `relay_ip` (another loopback address than 127.0.0.1 keeps the relay
/// apart from the agents' host addresses: permissions are per IP, RFC 8656 §9).
pub fn start_coturn_tls(pki: &TestPki, relay_ip: &str) -> Coturn {
    start(relay_ip, Some(pki))
}

fn start(relay_ip: &str, tls: Option<&TestPki>) -> Coturn {
    let port = free_port();
    let tls_port = tls.map(|_| free_port());
    let dir = std::env::temp_dir().join(format!("jingle-ice-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = vec![
        "-n".to_string(),
        "--no-cli".into(),
        "--no-dtls".into(),
        "--listening-ip=127.0.0.1".into(),
        format!("--relay-ip={relay_ip}"),
        format!("--listening-port={port}"),
        "--realm=example.test".into(),
        "--use-auth-secret".into(),
        format!("--static-auth-secret={SECRET}"),
        "--allow-loopback-peers".into(),
        "--min-port=40000".into(),
        "--max-port=60000".into(),
        "--simple-log".into(),
        format!("--log-file={}", dir.join("turn.log").display()),
        format!("--pidfile={}", dir.join("turn.pid").display()),
        format!("--userdb={}", dir.join("turndb").display()),
    ];
    match (tls, tls_port) {
        (Some(pki), Some(tls_port)) => {
            args.push(format!("--tls-listening-port={tls_port}"));
            args.push(format!("--cert={}", pki.cert.display()));
            args.push(format!("--pkey={}", pki.key.display()));
        }
        _ => args.push("--no-tls".into()),
    }
    let child = Command::new("turnserver")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnserver");
    let coturn = Coturn {
        child,
        port,
        tls_port,
        dir,
    };
    // Ready once its TCP (and TLS) listeners accept.
    let deadline = Instant::now() + WAIT;
    for p in std::iter::once(port).chain(tls_port) {
        while TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(Instant::now() < deadline, "coturn did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    coturn
}

impl Coturn {
    /// coturn's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turn.log")).unwrap_or_default()
    }
}
