//! libnice in the namespace lab (issue 3, "Measurements"): interop with the reference ICE
//! library of Dino and Gajim, and its connect times as a baseline measured in the same run.
//!
//! For two topologies (port-restricted vs port-restricted, full cone vs symmetric) one lab is
//! built and four pairs run in it, one after the other, A (controlling, sending) in A's LAN and
//! B (controlled, receiving) in B's:
//! - `ice_peer` <-> `ice_peer` (our own times, the comparison row),
//! - libnice <-> libnice (`tests/lab/nice_peer.py`),
//! - `ice_peer` (controlling, regular nomination) <-> libnice (controlled),
//! - libnice (controlling, aggressive nomination, its default) <-> `ice_peer` (controlled).
//!
//! Each pair must connect, select a direct pair of the types the topology predicts, and verify
//! its datagram traffic end to end (the two peers share `ice_peer`'s datagram format). Every
//! peer's result is printed as a `MEASURED` line, then a table of the connect times.
//!
//! Needs root (see `tests/lab/README.md`) and the Debian packages `gir1.2-nice-0.1` and
//! `python3-gi`. Without the bindings the tests say so loudly and pass, except under `CI=true`,
//! where they fail.

mod lab_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lab_common::{ice_peer, run_peers, Lab, LabOptions, Nat, PeerResult};

/// Traffic per pair: enough to check both implementations' data paths; the libnice peer
/// verifies every byte in Python, so this is kept well below the scenarios' 10 MiB.
const BYTES: u64 = 2 * 1024 * 1024;
/// Sending rate of every sender (MB/s), modest so that the Python receiver keeps up; the same
/// for all pairs so that they stay comparable.
const RATE_MBPS: &str = "4";
/// One-way delay the relay adds to each signalling line, as in `tests/lab_scenarios.rs`.
const SIGNALLING_DELAY: Duration = Duration::from_millis(20);
/// Bound for one pair's run.
const PEER_LIMIT: Duration = Duration::from_secs(40);
/// Each peer's own bound (seconds), below `PEER_LIMIT`.
const PEER_TIMEOUT: &str = "30";
/// Debian's interpreter: `python3-gi` installs the GObject bindings for it (a `python3` earlier
/// on PATH, such as a pyenv one, may not have them).
const PYTHON: &str = "/usr/bin/python3";

/// Which implementation runs a side.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    /// jingle-ice's `examples/ice_peer.rs`.
    Ours,
    /// libnice through `tests/lab/nice_peer.py`.
    Libnice,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Ours => "ice_peer",
            Impl::Libnice => "libnice",
        }
    }
}

/// Why the libnice peer cannot run here, if it cannot.
fn libnice_missing() -> Option<String> {
    let out = Command::new(PYTHON)
        .args([
            "-c",
            "import gi; gi.require_version('Nice', '0.1'); from gi.repository import Nice",
        ])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{PYTHON} cannot load libnice's GObject bindings: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run {PYTHON}: {e}")),
    }
}

/// True when the libnice peer can run; otherwise a loud notice (a panic under `CI=true`).
fn libnice_available(test: &str) -> bool {
    let Some(reason) = libnice_missing() else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {reason}; CI=true: install gir1.2-nice-0.1 and python3-gi (.ci/run does)");
    }
    eprintln!();
    eprintln!("************************************************************************");
    eprintln!("SKIPPED: {test}: {reason}.");
    eprintln!("Install them with: apt-get install gir1.2-nice-0.1 python3-gi");
    eprintln!("************************************************************************");
    false
}

/// The command line of one side: the program first, then its arguments.
fn command(which: Impl, ice_peer: &Path, controlling: bool, stun: &str) -> Vec<String> {
    let mut cmd: Vec<String> = match which {
        Impl::Ours => vec![ice_peer.display().to_string()],
        Impl::Libnice => vec![
            PYTHON.into(),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/lab/nice_peer.py")
                .display()
                .to_string(),
        ],
    };
    let role = if controlling {
        "controlling"
    } else {
        "controlled"
    };
    cmd.extend(["--role", role, "--stun", stun, "--timeout", PEER_TIMEOUT].map(String::from));
    // LAB_TA_MS=N runs our agents with that check pacing (RFC 8445 §14.2; ours defaults to
    // 50 ms, libnice paces at 20 ms), as in tests/lab_scenarios.rs; libnice keeps its default.
    if let (Impl::Ours, Ok(ta)) = (which, std::env::var("LAB_TA_MS")) {
        cmd.extend(["--ta-ms".into(), ta]);
    }
    if controlling {
        cmd.extend(["--bytes".into(), BYTES.to_string()]);
        cmd.extend(["--rate-mbps", RATE_MBPS].map(String::from));
    }
    cmd
}

/// One pair's outcome.
struct Row {
    a: Impl,
    b: Impl,
    ra: PeerResult,
    rb: PeerResult,
}

/// Runs one pair in `lab` and checks its traffic.
fn run_pair(lab: &Lab, topology: &str, a: Impl, b: Impl, ice_peer: &Path) -> Row {
    let stun = lab.get("LAB_STUN");
    let cmd_a = command(a, ice_peer, true, stun);
    let cmd_b = command(b, ice_peer, false, stun);
    // run_peers starts one program on both sides; `env` (which runs its first argument) lets
    // each side run its own.
    let args_a: Vec<&str> = cmd_a.iter().map(String::as_str).collect();
    let args_b: Vec<&str> = cmd_b.iter().map(String::as_str).collect();
    let run = run_peers(
        lab,
        Path::new("/usr/bin/env"),
        &args_a,
        &args_b,
        SIGNALLING_DELAY,
        PEER_LIMIT,
    );
    let name = format!("{topology}, {} -> {}", a.name(), b.name());
    for (side, who, r) in [("A", a, &run.a), ("B", b, &run.b)] {
        let field = |k: &str| r.get(k).map(String::as_str).unwrap_or("?");
        eprintln!(
            "MEASURED libnice-lab {name} {side} ({}): selected={} local={} remote={} \
             first_working_ms={} nominated_ms={} bytes_ok={} corrupted={} resent={}",
            who.name(),
            field("selected"),
            field("local"),
            field("remote"),
            field("first_working_ms"),
            field("nominated_ms"),
            field("bytes_ok"),
            field("corrupted"),
            field("resent"),
        );
        assert_eq!(
            field("bytes_ok"),
            BYTES.to_string(),
            "{name} {side}: bytes verified"
        );
        assert_eq!(
            field("corrupted"),
            "0",
            "{name} {side}: corrupted datagrams"
        );
        assert!(
            !field("selected").contains("relay") && field("selected") != "none/none",
            "{name} {side}: a direct pair, got {}",
            field("selected")
        );
    }
    Row {
        a,
        b,
        ra: run.a,
        rb: run.b,
    }
}

/// The four pairings, ours first (the comparison row).
const PAIRINGS: [(Impl, Impl); 4] = [
    (Impl::Ours, Impl::Ours),
    (Impl::Libnice, Impl::Libnice),
    (Impl::Ours, Impl::Libnice),
    (Impl::Libnice, Impl::Ours),
];

/// Runs of every pairing per topology, taken round-robin so that a lab's first run (cold ARP
/// and conntrack caches) does not always fall on the same pairing; the table shows medians.
const ROUNDS: usize = 3;

/// Builds the lab for `topology`, runs every pairing `ROUNDS` times in it, prints the table
/// and returns all runs; `None` when the lab or libnice cannot run here (already reported).
fn compare(test: &str, options: LabOptions) -> Option<Vec<Row>> {
    if !libnice_available(test) {
        return None;
    }
    let peer = ice_peer();
    let lab = Lab::up(test, options)?;
    let mut rows = Vec::new();
    for _ in 0..ROUNDS {
        for (a, b) in PAIRINGS {
            rows.push(run_pair(&lab, test, a, b, &peer));
        }
    }
    print_table(test, &rows);
    Some(rows)
}

/// "median (min-max)" of a time field over `runs`, "none" where a run has no such time.
fn summary<'a>(runs: impl Iterator<Item = &'a PeerResult>, key: &str) -> String {
    let mut values = Vec::new();
    for r in runs {
        match r.get(key).and_then(|v| v.parse::<f64>().ok()) {
            Some(v) => values.push(v),
            None => return "none".into(),
        }
    }
    values.sort_by(f64::total_cmp);
    match (values.first(), values.get(values.len() / 2), values.last()) {
        (Some(lo), Some(mid), Some(hi)) => format!("{mid:.0} ({lo:.0}-{hi:.0})"),
        _ => "none".into(),
    }
}

fn print_table(topology: &str, rows: &[Row]) {
    eprintln!();
    eprintln!(
        "connect times, {topology}, ms, median (min-max) of {ROUNDS} runs, from having the \
         peer's credentials and first candidate"
    );
    eprintln!(
        "(first working = our Connected / libnice CONNECTED; nominated = our selected pair / \
         libnice READY)"
    );
    eprintln!(
        "| A (controlling) -> B (controlled) | A first working | A nominated | B first working \
         | B nominated | selected (A) |"
    );
    eprintln!("|---|---|---|---|---|---|");
    for (a, b) in PAIRINGS {
        let runs: Vec<&Row> = rows.iter().filter(|r| r.a == a && r.b == b).collect();
        let selected = runs
            .first()
            .and_then(|r| r.ra.get("selected"))
            .map_or("?", String::as_str);
        eprintln!(
            "| {} -> {} | {} | {} | {} | {} | {selected} |",
            a.name(),
            b.name(),
            summary(runs.iter().map(|r| &r.ra), "first_working_ms"),
            summary(runs.iter().map(|r| &r.ra), "nominated_ms"),
            summary(runs.iter().map(|r| &r.rb), "first_working_ms"),
            summary(runs.iter().map(|r| &r.rb), "nominated_ms"),
        );
    }
    eprintln!();
}

/// The remote half of a `selected=<local>/<remote>` value.
fn remote_type(r: &PeerResult) -> &str {
    r.get("selected")
        .and_then(|s| s.split_once('/'))
        .map_or("?", |(_, remote)| remote)
}

#[test]
fn lab_libnice_port_restricted_both_sides() {
    let options = LabOptions::nats(Nat::PortRestricted, Nat::PortRestricted);
    let Some(rows) = compare("port-restricted vs port-restricted", options) else {
        return;
    };
    // Each side reaches the other through the other's server-reflexive address (the same
    // mapping the peer's checks come from, so never peer-reflexive).
    for row in &rows {
        for (side, r) in [("A", &row.ra), ("B", &row.rb)] {
            assert_eq!(
                remote_type(r),
                "srflx",
                "{} -> {} {side}: remote candidate of the selected pair",
                row.a.name(),
                row.b.name()
            );
        }
    }
}

#[test]
fn lab_libnice_full_cone_vs_symmetric() {
    let options = LabOptions::nats(Nat::FullCone, Nat::Symmetric);
    let Some(rows) = compare("full cone vs symmetric", options) else {
        return;
    };
    // B's mapping towards A is new (symmetric NAT): A learns it as peer-reflexive (or B
    // reports its own side of the pair as peer-reflexive).
    for row in &rows {
        let local_b = row.rb.get("selected").map_or("?", String::as_str);
        assert!(
            remote_type(&row.ra) == "prflx" || local_b.starts_with("prflx/"),
            "{} -> {}: a peer-reflexive candidate on one side: A {:?} B {:?}",
            row.a.name(),
            row.b.name(),
            row.ra.get("selected"),
            row.rb.get("selected")
        );
    }
}
