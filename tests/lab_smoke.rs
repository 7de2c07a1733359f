//! Smoke tests of the namespace lab's servers: coturn relays for both kinds of credentials over
//! UDP and TCP, its TLS listener presents a certificate from the lab CA, and Prosody accepts
//! XMPP over TCP with STARTTLS from a host behind a NAT. Needs root; see `tests/lab/README.md`.

mod lab_common;

use lab_common::{Lab, LabOptions, Nat};

/// Runs `turnutils_uclient` (coturn's test client) in `ns` and checks it relayed every message.
fn uclient(lab: &Lab, ns: &str, auth: &[&str], tcp: bool, server: &str) {
    let mut cmd = vec!["timeout", "30", "turnutils_uclient"];
    cmd.extend_from_slice(auth);
    // -y: client-to-client through the relay; 10 messages of 200 bytes, 2 clients.
    cmd.extend(["-y", "-n", "10", "-m", "2", "-l", "200"]);
    if tcp {
        cmd.push("-t");
    }
    cmd.push(server);
    let out = lab.exec_in(ns, &cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("Total lost packets 0 (0.000000%)"),
        "turnutils_uclient {auth:?} tcp={tcp} against {server} from {ns}:\n{text}"
    );
    let sent = text.contains("tot_send_msgs=40") || text.contains("tot_send_msgs=20");
    assert!(sent, "turnutils_uclient sent nothing:\n{text}");
}

#[test]
fn lab_coturn_and_prosody_answer_from_behind_nats() {
    let options = LabOptions {
        turn: true,
        xmpp: true,
        ..LabOptions::nats(Nat::PortRestricted, Nat::Symmetric)
    };
    let Some(lab) = Lab::up("smoke", options) else {
        return;
    };
    let secret = lab.get("LAB_TURN_SECRET").to_owned();
    let turn_ip = lab
        .get("LAB_TURN_UDP")
        .split(':')
        .next()
        .expect("ip")
        .to_owned();
    let static_ip = lab
        .get("LAB_TURN_STATIC_UDP")
        .split(':')
        .next()
        .expect("ip")
        .to_owned();
    let user = lab.get("LAB_TURN_USER").to_owned();
    let password = lab.get("LAB_TURN_PASSWORD").to_owned();
    let (ns_a, ns_b) = (lab.get("LAB_NS_A"), lab.get("LAB_NS_B"));

    // Time-limited credentials from the shared secret (what mod_turn_external hands out).
    let ephemeral = ["-W", secret.as_str(), "-u", "alice"];
    uclient(&lab, ns_a, &ephemeral, false, &turn_ip);
    uclient(&lab, ns_b, &ephemeral, true, &turn_ip);
    // The static user, on its own coturn instance.
    let fixed = ["-u", user.as_str(), "-w", password.as_str()];
    uclient(&lab, ns_b, &fixed, false, &static_ip);

    // TLS listeners: certificates chain to the lab CA.
    let ca = lab.get("LAB_CA").to_owned();
    let tls = lab.get("LAB_TURN_TLS").to_owned();
    let out = lab.exec_in(
        ns_a,
        &[
            "timeout",
            "10",
            "openssl",
            "s_client",
            "-connect",
            &tls,
            "-CAfile",
            &ca,
            "-verify_return_error",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Verify return code: 0 (ok)"),
        "coturn TLS on {tls}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Prosody: TCP 5222 from behind the symmetric NAT, STARTTLS with the lab CA certificate
    // for the domain.
    let xmpp = lab.get("LAB_XMPP_ADDR").to_owned();
    let domain = lab.get("LAB_XMPP_DOMAIN").to_owned();
    let out = lab.exec_in(
        ns_b,
        &[
            "timeout",
            "10",
            "openssl",
            "s_client",
            "-starttls",
            "xmpp",
            "-xmpphost",
            &domain,
            "-connect",
            &xmpp,
            "-CAfile",
            &ca,
            "-verify_hostname",
            &domain,
            "-verify_return_error",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Verify return code: 0 (ok)"),
        "Prosody STARTTLS on {xmpp}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // XEP-0215: a logged-in client behind the NAT gets STUN and TURN (UDP and TCP) services,
    // and the TURN credentials Prosody made from the shared secret work on coturn.
    let script = lab_common::script().with_file_name("extdisco.py");
    let jid = lab.get("LAB_XMPP_JID1").to_owned();
    let local = jid.split('@').next().expect("local part").to_owned();
    let out = lab.exec_in(
        ns_b,
        &[
            "timeout",
            "30",
            "python3",
            script.to_str().expect("utf-8 path"),
            &xmpp,
            &domain,
            &local,
            lab.get("LAB_XMPP_PASSWORD1"),
            &ca,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "extdisco query:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let services: Vec<std::collections::HashMap<&str, &str>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("service "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .collect()
        })
        .collect();
    let find = |kind: &str, transport: &str| {
        services
            .iter()
            .find(|s| s.get("type") == Some(&kind) && s.get("transport") == Some(&transport))
            .unwrap_or_else(|| panic!("no {kind}/{transport} service in:\n{text}"))
    };
    find("stun", "udp");
    let turn_udp = find("turn", "udp");
    find("turn", "tcp");
    assert_eq!(turn_udp.get("host"), Some(&turn_ip.as_str()));
    let (username, password) = (turn_udp["username"], turn_udp["password"]);
    assert!(!username.is_empty() && !password.is_empty(), "{text}");
    uclient(
        &lab,
        ns_a,
        &["-u", username, "-w", password],
        false,
        &turn_ip,
    );
}
