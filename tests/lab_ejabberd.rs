//! The lab with Debian's ejabberd 23.01 as the XMPP server (`lab.sh --xmpp-server ejabberd`)
//! instead of Prosody: the bots log in to a stock ejabberd (which offers SCRAM-SHA-1-PLUS but
//! binds only `tls-unique`, so a client that picks `-PLUS` with `tls-exporter` on TLS 1.3 is
//! refused), a wrong password is reported as wrong credentials, and the file transfers of the
//! README's story run through it: 64 MiB through two port-restricted NATs, and 64 MiB relayed
//! by coturn between two symmetric NATs with the TURN credentials ejabberd's `mod_stun_disco`
//! hands out (XEP-0215). Needs root; see `tests/lab/README.md`.

mod lab_common;

use std::time::{Duration, Instant};

use lab_common::files::{login, pair_types, s, temp_dir, transfer, Run};
use lab_common::{example_binary, Lab, LabOptions, LineProcess, Nat, XmppServer};

/// Bound for one probe run (`timeout` kills it after this).
const PROBE_SECS: &str = "40";

fn lab(test: &str, a: Nat, b: Nat) -> Option<Lab> {
    let lab = Lab::up(
        test,
        LabOptions {
            xmpp_server: XmppServer::Ejabberd,
            ..LabOptions::with_servers(a, b)
        },
    )?;
    assert_eq!(lab.get("LAB_XMPP_SERVER"), "ejabberd");
    Some(lab)
}

/// Runs `xmpp_probe` in `ns` with `args` after the login options of `jid`/`password`; returns
/// the exit code, stdout and stderr.
fn probe(lab: &Lab, ns: &str, jid: &str, password: &str, args: &[&str]) -> (i32, String, String) {
    let bin = example_binary("xmpp_probe");
    let mut cmd = vec![
        "timeout",
        PROBE_SECS,
        bin.to_str().expect("utf-8 path"),
        "--jid",
        jid,
        "--password",
        password,
        "--server",
        lab.get("LAB_XMPP_ADDR"),
        "--ca",
        lab.get("LAB_CA"),
    ];
    cmd.extend_from_slice(args);
    let started = Instant::now();
    let out = lab.exec_in(ns, &cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "$ xmpp_probe --jid {jid} {} ({:.2} s, {})\n{stdout}{stderr}",
        args.join(" "),
        started.elapsed().as_secs_f64(),
        out.status
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} line:\n{stdout}"))
}

#[test]
fn lab_ejabberd_login_and_clear_failures() {
    let Some(lab) = lab(
        "lab_ejabberd_login_and_clear_failures",
        Nat::PortRestricted,
        Nat::PortRestricted,
    ) else {
        return;
    };
    let domain = lab.get("LAB_XMPP_DOMAIN").to_owned();
    let turn_ip = lab
        .get("LAB_TURN_UDP")
        .split(':')
        .next()
        .unwrap()
        .to_owned();

    // Both accounts log in with the library's connection: plain SCRAM with the "n" flag
    // (ejabberd offers SCRAM-SHA-1-PLUS but announces no XEP-0440 types). Before the SASL fix
    // this failed: "the server refused the credentials (NotAuthorized)", and ejabberd logged
    // "Failed c2s SCRAM-SHA-1-PLUS authentication ...: Invalid channel binding".
    for (ns, account) in [(lab.get("LAB_NS_A"), 1), (lab.get("LAB_NS_B"), 2)] {
        let jid = lab.get(&format!("LAB_XMPP_JID{account}")).to_owned();
        let password = lab.get(&format!("LAB_XMPP_PASSWORD{account}")).to_owned();
        let (code, stdout, stderr) = probe(&lab, ns, &jid, &password, &[]);
        assert_eq!(
            code, 0,
            "{jid} could not log in to ejabberd:\n{stdout}{stderr}"
        );
        assert!(
            line(&stdout, "jid ").starts_with(&format!("{jid}/")),
            "{stdout}"
        );
        assert_eq!(
            line(&stdout, "sasl "),
            "SCRAM-SHA-1 (channel binding flag n)"
        );
        let disco = line(&stdout, "disco ");
        assert!(disco.contains("name='ejabberd'"), "not ejabberd:\n{disco}");
        assert!(
            disco.contains("<feature var='urn:xmpp:extdisco:2'/>"),
            "{disco}"
        );
        // mod_stun_disco: STUN, and TURN over UDP and TCP with inline credentials of
        // coturn's use-auth-secret form ("expiry:hash"), all on the lab's coturn.
        let services = line(&stdout, "services ");
        assert!(services.contains(&format!("from='{domain}'")), "{services}");
        for (kind, transport) in [("stun", "udp"), ("turn", "udp"), ("turn", "tcp")] {
            let service = services
                .split("<service ")
                .skip(1)
                .find(|s| {
                    s.contains(&format!("type='{kind}'"))
                        && s.contains(&format!("transport='{transport}'"))
                })
                .unwrap_or_else(|| panic!("no {kind}/{transport} service:\n{services}"));
            assert!(service.contains(&format!("host='{turn_ip}'")), "{service}");
            if kind == "turn" {
                assert!(service.contains("restricted='true'"), "{service}");
                assert!(service.contains("password='"), "{service}");
                let username = service
                    .split("username='")
                    .nth(1)
                    .and_then(|r| r.split('\'').next())
                    .unwrap_or_else(|| panic!("no username: {service}"));
                let (expiry, hash) = username.split_once(':').expect("expiry:hash");
                assert!(expiry.parse::<u64>().is_ok(), "{username}");
                assert!(!hash.is_empty(), "{username}");
            }
        }
        assert_eq!(stdout.lines().last(), Some("closed"), "{stdout}");
    }

    // tokio-xmpp's own client over the library's connector logs in too (the connector gives
    // it no channel-binding data, so it does not pick -PLUS).
    let (jid, password) = (lab.get("LAB_XMPP_JID1"), lab.get("LAB_XMPP_PASSWORD1"));
    let (code, stdout, stderr) = probe(
        &lab,
        lab.get("LAB_NS_A"),
        jid,
        password,
        &["--via-tokio-xmpp", "--timeout", "15"],
    );
    assert_eq!(code, 0, "tokio-xmpp's client:\n{stdout}{stderr}");
    assert!(
        line(&stdout, "jid ").starts_with(&format!("{jid}/")),
        "{stdout}"
    );

    // A wrong password: the message names the wrong credentials, not channel binding; at
    // once, exit status 1.
    let started = Instant::now();
    let (code, stdout, stderr) = probe(&lab, lab.get("LAB_NS_A"), jid, "not-the-password", &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "XMPP authentication failed: wrong user name or password: the server answered \
             <not-authorized/> to SCRAM-SHA-1: \"Invalid username or password\""
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("channel binding ("), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "slow failure");

    // The file bots: recv_file logs in and waits for offers (the login that failed before
    // the SASL fix), and reports a wrong password the same way.
    let dir = temp_dir(&format!("{}-login", lab.prefix()));
    let recv_file = s(&example_binary("recv_file"));
    let mut argv = vec![recv_file.clone()];
    argv.extend(login(&lab, 2));
    argv.extend(["--dir".into(), s(&dir)]);
    let mut bob = LineProcess::start(&lab, "LAB_NS_B", "recv_file", 60, &argv);
    let bob_jid = bob.expect("jid ");
    assert!(
        bob_jid.starts_with(&format!("jid {}/", lab.get("LAB_XMPP_JID2"))),
        "{bob_jid}"
    );
    bob.expect("ready");
    bob.signal("TERM");
    let (code, _) = bob.finish(30);
    assert_eq!(code, Some(128 + 15), "recv_file ends on SIGTERM with 143");

    let mut argv = vec![recv_file];
    argv.extend(login(&lab, 2));
    let pw = argv
        .iter()
        .position(|a| a == "--password")
        .expect("--password")
        + 1;
    argv[pw] = "not-the-password".into();
    argv.extend(["--dir".into(), s(&dir)]);
    let wrong = LineProcess::start(&lab, "LAB_NS_B", "recv_file (wrong password)", 60, &argv);
    let (code, lines) = wrong.finish(30);
    assert_eq!(code, Some(1), "{lines:?}");
    let failed = Run::line(&lines, "failed ");
    assert!(
        failed.contains("wrong user name or password") && failed.contains("<not-authorized/>"),
        "{failed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prints the figures of a transfer: connect times, rates and the selected pairs.
fn measured(label: &str, run: &Run) {
    let (a, b) = run.transports();
    eprintln!(
        "MEASURED ejabberd {label}: connect time alice {} / bob {}; sender {:.1} MB/s, receiver \
         {:.1} MB/s; alice {a}; bob {b}",
        Run::line(&run.alice, "connect time ").trim_start_matches("connect time "),
        Run::line(&run.bob, "connect time ").trim_start_matches("connect time "),
        Run::rate(&run.alice) / 1e6,
        Run::rate(&run.bob) / 1e6,
    );
}

#[test]
fn lab_ejabberd_64_mib_through_two_port_restricted_nats() {
    let Some(lab) = lab(
        "lab_ejabberd_64_mib_through_two_port_restricted_nats",
        Nat::PortRestricted,
        Nat::PortRestricted,
    ) else {
        return;
    };
    let run = transfer(&lab, 64 << 20);
    measured("port-restricted x2, 64 MiB", &run);
    let (a, b) = run.transports();
    assert_eq!(pair_types(&a), ("srflx".into(), "srflx".into()), "{a}");
    assert_eq!(pair_types(&b), ("srflx".into(), "srflx".into()), "{b}");
}

#[test]
fn lab_ejabberd_64_mib_relayed_between_two_symmetric_nats() {
    let Some(lab) = lab(
        "lab_ejabberd_64_mib_relayed_between_two_symmetric_nats",
        Nat::Symmetric,
        Nat::Symmetric,
    ) else {
        return;
    };
    let turn_ip = lab
        .get("LAB_TURN_UDP")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let run = transfer(&lab, 64 << 20);
    measured("symmetric x2 (relayed), 64 MiB", &run);
    let (a, b) = run.transports();
    // The bots know of no TURN server but the one ejabberd's XEP-0215 answer names, with its
    // credentials: a relayed end on coturn's address proves coturn took them.
    for line in [&a, &b] {
        let (local, remote) = pair_types(line);
        assert!(local == "relay" || remote == "relay", "{line}");
        assert!(
            line.contains(&format!("relay {turn_ip}:")),
            "the relay is not the lab's coturn: {line}"
        );
    }
}
