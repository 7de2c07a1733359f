//! The XMPP connection wrapper (`jingle_ice::xmpp::XmppConnection`) against the lab's real
//! Prosody, through `examples/xmpp_probe.rs` run inside the LAN namespaces behind
//! port-restricted NATs: login with the lab CA, disco#info and XEP-0215 services, clear
//! failures for a wrong password and a wrong CA, an iq between two clients through the server
//! (XEP-0199 ping), an error (not a hang) for an iq to a JID that does not exist, and a stream
//! error (a resource conflict) ending a connection. Needs root; see `tests/lab/README.md`.

mod lab_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use lab_common::{example_binary, Lab, LabOptions, Nat};

/// Bound for one probe run (`timeout` kills it after this).
const PROBE_SECS: &str = "40";

fn lab(test: &str) -> Option<Lab> {
    Lab::up(
        test,
        LabOptions {
            xmpp: true,
            ..LabOptions::nats(Nat::PortRestricted, Nat::PortRestricted)
        },
    )
}

/// The probe's command line for an account, trusting the lab CA unless `extra` names a CA.
fn probe_cmd(lab: &Lab, probe: &Path, jid: &str, password: &str, extra: &[&str]) -> Vec<String> {
    let mut cmd: Vec<String> = vec![
        "timeout".into(),
        PROBE_SECS.into(),
        probe.to_str().expect("utf-8 path").into(),
        "--jid".into(),
        jid.into(),
        "--password".into(),
        password.into(),
        "--server".into(),
        lab.get("LAB_XMPP_ADDR").into(),
    ];
    if !extra.contains(&"--ca") {
        cmd.extend(["--ca".into(), lab.get("LAB_CA").into()]);
    }
    cmd.extend(extra.iter().map(|s| s.to_string()));
    cmd
}

fn run(lab: &Lab, ns: &str, cmd: &[String]) -> (Output, String, String) {
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = lab.exec_in(ns, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "$ {} ({:.2} s, {})\n{stdout}{stderr}",
        cmd[2..].join(" "),
        started.elapsed().as_secs_f64(),
        out.status
    );
    (out, stdout, stderr)
}

fn alice(lab: &Lab) -> (String, String) {
    (
        lab.get("LAB_XMPP_JID1").into(),
        lab.get("LAB_XMPP_PASSWORD1").into(),
    )
}

fn bob(lab: &Lab) -> (String, String) {
    (
        lab.get("LAB_XMPP_JID2").into(),
        lab.get("LAB_XMPP_PASSWORD2").into(),
    )
}

#[test]
fn lab_xmpp_login_services_and_clear_failures() {
    let Some(lab) = lab("xmpp_login") else {
        return;
    };
    let probe = example_binary("xmpp_probe");
    let domain = lab.get("LAB_XMPP_DOMAIN").to_owned();

    for (ns, (jid, password)) in [
        (lab.get("LAB_NS_A"), alice(&lab)),
        (lab.get("LAB_NS_B"), bob(&lab)),
    ] {
        let (out, stdout, stderr) = run(&lab, ns, &probe_cmd(&lab, &probe, &jid, &password, &[]));
        assert!(
            out.status.success(),
            "{jid} probe failed:\n{stdout}{stderr}"
        );
        let line = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key:?} line:\n{stdout}"))
                .to_owned()
        };
        let bound = line("jid ");
        assert!(
            bound.starts_with(&format!("{jid}/")),
            "bound JID {bound} is not a full JID of {jid}"
        );
        // Prosody 0.12.3 binds only tls-unique, which TLS 1.3 lacks, so it offers no -PLUS
        // mechanism there: SCRAM with the "y" flag (we could bind, the server cannot).
        let sasl = line("sasl ");
        assert!(
            sasl.starts_with("SCRAM-SHA-") && sasl.ends_with("(channel binding flag y)"),
            "{sasl}"
        );
        let disco = line("disco ");
        assert!(disco.contains("type='result'"), "{disco}");
        assert!(disco.contains(&format!("from='{domain}'")), "{disco}");
        assert!(
            disco.contains("<feature var='urn:xmpp:extdisco:2'/>"),
            "the server does not advertise XEP-0215:\n{disco}"
        );
        let services = line("services ");
        assert!(
            services.contains("<services xmlns='urn:xmpp:extdisco:2'>"),
            "{services}"
        );
        assert!(
            services.contains("type='stun'"),
            "no STUN service:\n{services}"
        );
        assert!(
            services.contains("type='turn'"),
            "no TURN service:\n{services}"
        );
        assert!(
            services.contains("username=") && services.contains("password="),
            "TURN without credentials:\n{services}"
        );
        assert_eq!(stdout.lines().last(), Some("closed"), "{stdout}");
    }

    // A wrong password: a clear authentication error, non-zero exit, no retry loop.
    let (jid, _) = alice(&lab);
    let started = Instant::now();
    let (out, stdout, stderr) = run(
        &lab,
        lab.get("LAB_NS_A"),
        &probe_cmd(&lab, &probe, &jid, "not-the-password", &[]),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "xmpp_probe: FAILED: XMPP authentication failed: wrong user name or password"
        ) && stderr.contains("<not-authorized/>")
            && !stderr.contains("channel binding ("),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "slow auth failure"
    );

    // A CA that did not sign Prosody's certificate: a TLS error naming the certificate.
    let dir = std::env::temp_dir().join(format!("lab_xmpp_wrong_ca.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wrong_ca = dir.join("ca.pem");
    let key = dir.join("ca.key");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=not the lab CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&wrong_ca)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl: {made:?}");
    let (_, password) = alice(&lab);
    let wrong = wrong_ca.to_str().expect("utf-8 path");
    for extra in [
        vec!["--ca", wrong, "--no-system-roots"],
        vec!["--ca", wrong],
    ] {
        let (out, stdout, stderr) = run(
            &lab,
            lab.get("LAB_NS_A"),
            &probe_cmd(&lab, &probe, &jid, &password, &extra),
        );
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains("TLS with the XMPP server failed")
                && stderr.contains("certificate was rejected")
                && stderr.contains("UnknownIssuer"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A probe in `--serve` mode, with its stdout lines on a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(lab: &Lab, ns: &str, cmd: &[String]) -> Server {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let mut child = lab.spawn_in(ns, &args);
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Server { child, lines }
    }

    /// The next line starting with `prefix` (its rest), within `limit`.
    fn expect(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("server> {line}");
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Some(rest.to_owned());
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Whether it exits within `limit` without being asked to.
    fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Closes its stdin (it then logs off) and returns its exit status and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        (status, stderr)
    }
}

#[test]
fn lab_xmpp_iq_between_clients_and_to_a_missing_jid() {
    let Some(lab) = lab("xmpp_iq") else {
        return;
    };
    let probe = example_binary("xmpp_probe");
    let (bob_jid, bob_password) = bob(&lab);
    let server = Server::start(
        &lab,
        lab.get("LAB_NS_B"),
        &probe_cmd(&lab, &probe, &bob_jid, &bob_password, &["--serve", "30"]),
    );
    let Some(bob_full) = server.expect("ready ", Duration::from_secs(20)) else {
        let (status, stderr) = server.finish();
        panic!("bob never came online ({status:?}):\n{stderr}");
    };

    let (jid, password) = alice(&lab);
    let (out, stdout, stderr) = run(
        &lab,
        lab.get("LAB_NS_A"),
        &probe_cmd(&lab, &probe, &jid, &password, &["--ping", &bob_full]),
    );
    assert!(
        out.status.success(),
        "ping to {bob_full}:\n{stdout}{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("pong {bob_full} "))),
        "{stdout}"
    );

    // A resource of bob's that does not exist: the server answers for it (RFC 6121 §8.5.3.2.1).
    let missing = format!("{bob_jid}/no-such-resource");
    let started = Instant::now();
    let (out, stdout, stderr) = run(
        &lab,
        lab.get("LAB_NS_A"),
        &probe_cmd(&lab, &probe, &jid, &password, &["--ping", &missing]),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("iq request failed with <service-unavailable/>"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the error came only after {:?}",
        started.elapsed()
    );

    let (status, stderr) = server.finish();
    assert_eq!(status, Some(0), "bob's probe:\n{stderr}");
    assert!(
        stderr.contains(&format!("answered a ping from {jid}/")),
        "bob did not answer alice's ping:\n{stderr}"
    );
}

#[test]
fn lab_xmpp_stream_error_ends_the_connection() {
    let Some(lab) = lab("xmpp_conflict") else {
        return;
    };
    let probe = example_binary("xmpp_probe");
    let (bob_jid, bob_password) = bob(&lab);
    let full = format!("{bob_jid}/probe");
    let mut server = Server::start(
        &lab,
        lab.get("LAB_NS_B"),
        &probe_cmd(&lab, &probe, &full, &bob_password, &["--serve", "30"]),
    );
    let bound = server.expect("ready ", Duration::from_secs(20));
    assert_eq!(
        bound.as_deref(),
        Some(full.as_str()),
        "the requested resource"
    );

    // The same full JID logs in again from the other LAN: Prosody replaces the old session
    // with a <conflict/> stream error (RFC 6120 §4.9.3.3, §7.7.2.2).
    let (out, stdout, stderr) = run(
        &lab,
        lab.get("LAB_NS_A"),
        &probe_cmd(&lab, &probe, &full, &bob_password, &[]),
    );
    assert!(out.status.success(), "second login:\n{stdout}{stderr}");

    // It exits by itself (stdin stays open), with the reason.
    let exited = server.exited_within(Duration::from_secs(5));
    let (status, stderr) = server.finish();
    assert!(exited, "the first session did not end:\n{stderr}");
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.contains("the connection ended: the XMPP server sent a stream error: conflict"),
        "{stderr}"
    );
}
