#!/usr/bin/env python3
"""Self-test of dc_peer.py: two aiortc peers through our Jingle translation, on this machine.

Runs `dc_peer.py --role offer` and `dc_peer.py --role answer` on 127.0.0.1 (`--bind-ip`),
relays their `TRANSPORT` lines to each other as the Rust lab tests do, sends `--bytes`
(default 8 MiB) each way with different seeds, and exits 0 only if both print DONE and exit 0.
Then it runs `dc_peer.py --bench` once and prints its line. With `--wrong-fingerprint` it
instead checks that a peer signalling a wrong fingerprint makes the run fail (both exit
non-zero with an ERROR line, and neither prints DONE).

Usage: python3 tests/aiortc/selftest.py [--bytes N] [--no-bench] [--wrong-fingerprint]
                                        [--peer-arg=--turn --peer-arg=127.0.0.1:3478 ...]
Output: every line of both peers prefixed with `offer|` / `answer|`, then `SELFTEST ok
seconds=<s>` (or `SELFTEST FAILED <why>`), and the `AIORTC_BENCH` line.
"""

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

PEER = Path(__file__).with_name("dc_peer.py")

FP = ":".join(["AB"] * 32)
# Shapes of the transport the translation must accept (see dc_peer.py's notes), each with the
# SDP lines it must produce.
TRANSLATION_CASES = [
    (
        "the provisional shape, fingerprint in the inner transport",
        "<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1' sctp-port='5001'"
        " max-message-size='262144'><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'"
        " ufrag='uf' pwd='pwpwpwpwpwpwpwpwpwpwpw'><fingerprint"
        " xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>" + FP + "</fingerprint>"
        "<candidate component='1' foundation='1' generation='0' id='c1' ip='10.0.0.2' port='5000'"
        " priority='2130706431' protocol='udp' type='host' network='0'/>"
        "<candidate component='1' foundation='2' generation='0' id='c2' ip='192.0.2.9' port='6000'"
        " priority='1694498815' protocol='udp' type='srflx' rel-addr='10.0.0.2' rel-port='5000'"
        " network='0'/></transport></transport>",
        [
            "a=ice-ufrag:uf",
            "a=ice-pwd:pwpwpwpwpwpwpwpwpwpwpw",
            "a=fingerprint:sha-256 " + FP,
            "a=setup:actpass",
            "a=sctp-port:5001",
            "a=max-message-size:262144",
            "a=candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host",
            "a=candidate:2 1 udp 1694498815 192.0.2.9 6000 typ srflx raddr 10.0.0.2 rport 5000",
            "a=end-of-candidates",
        ],
    ),
    (
        "fingerprint on the outer transport, lowercase hex, sctpmap, a tcp candidate skipped",
        "<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1'><fingerprint"
        " xmlns='urn:xmpp:jingle:apps:dtls:0' hash='SHA-256' setup='passive'>" + FP.lower() +
        "</fingerprint><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='uf'"
        " pwd='pwpwpwpwpwpwpwpwpwpwpw'><sctpmap xmlns='urn:xmpp:jingle:transports:dtls-sctp:1'"
        " number='5002' protocol='webrtc-datachannel'/><candidate component='1' foundation='3'"
        " generation='0' id='c3' ip='198.51.100.1' port='3478' priority='16777215' protocol='udp'"
        " type='relay' rel-addr='0.0.0.0' rel-port='9' network='0'/><candidate component='1'"
        " foundation='4' generation='0' id='c4' ip='10.0.0.2' port='9' priority='5'"
        " protocol='tcp' type='host' network='0'/></transport></transport>",
        [
            "a=fingerprint:sha-256 " + FP,
            "a=setup:passive",
            "a=sctp-port:5002",
            "a=candidate:3 1 udp 16777215 198.51.100.1 3478 typ relay raddr 0.0.0.0 rport 9",
        ],
    ),
    (
        "a bare ice-udp transport, the default SCTP port",
        "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='uf'"
        " pwd='pwpwpwpwpwpwpwpwpwpwpw'><fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0'"
        " hash='sha-256' setup='active'>" + FP + "</fingerprint></transport>",
        ["a=setup:active", "a=sctp-port:5000", "a=end-of-candidates"],
    ),
]
# Transports that must be refused with a clear error.
BAD_CASES = [
    "<transport xmlns='urn:xmpp:jingle:transports:webrtc-datachannel:1'/>",
    "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'/>",
    "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'><fingerprint"
    " xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='active'>" + FP + "</fingerprint>"
    "<candidate component='1' foundation='1' ip='10.0.0.1' port='99999' priority='1'"
    " type='host'/></transport>",
    "<transport",
]


def check_translation() -> list:
    """Problems found in dc_peer.py's Jingle -> SDP translation (empty when all is well)."""
    sys.path.insert(0, str(PEER.parent))
    import dc_peer  # noqa: E402

    problems = []
    for name, xml, want in TRANSLATION_CASES:
        try:
            kind = "offer" if "a=setup:actpass" in want else "answer"
            sdp = dc_peer.sdp_from_transport(xml, kind, "0").split("\r\n")
        except dc_peer.SignallingError as exc:
            problems.append(f"{name}: refused: {exc}")
            continue
        problems += [f"{name}: no line {w!r}" for w in want if w not in sdp]
        if name.startswith("fingerprint on the outer") and any("tcp" in x for x in sdp):
            problems.append(f"{name}: tcp candidate kept")
    for xml in BAD_CASES:
        try:
            dc_peer.sdp_from_transport(xml, "answer", "0")
            problems.append(f"accepted a bad transport: {xml}")
        except dc_peer.SignallingError:
            pass
    # The pattern's first bytes are SHA-256 of the label, seed and index (all little endian).
    table = dc_peer.Pattern(7).table
    import hashlib

    head = hashlib.sha256(b"jingle-ice pattern" + (7).to_bytes(4, "little") + bytes(4)).digest()
    if len(table) != 65521 or table[:32] != head:
        problems.append("pattern table")
    return problems


def relay(name: str, src, dst, lines: list, lock: threading.Lock) -> None:
    """Copy `src`'s TRANSPORT lines to `dst`, record every line."""
    for raw in src:
        line = raw.rstrip("\n")
        with lock:
            lines.append(line)
            print(f"{name}| {line[:200]}", flush=True)
        if line.startswith("TRANSPORT ") and dst is not None:
            try:
                dst.write(line + "\n")
                dst.flush()
            except (BrokenPipeError, ValueError):
                pass


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bytes", type=int, default=8 * 1024 * 1024)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--no-bench", action="store_true")
    p.add_argument("--wrong-fingerprint", action="store_true")
    p.add_argument(
        "--peer-arg",
        action="append",
        default=[],
        help="extra argument for both dc_peer.py processes (repeatable; use --peer-arg=--x)",
    )
    args = p.parse_args()

    problems = check_translation()
    if problems:
        print("SELFTEST FAILED translation: " + "; ".join(problems))
        return 1
    print(f"SELFTEST translation ok ({len(TRANSLATION_CASES) + len(BAD_CASES)} cases)")

    common = [
        sys.executable,
        str(PEER),
        "--bind-ip",
        "127.0.0.1",
        "--bytes",
        str(args.bytes),
        "--timeout",
        str(args.timeout),
    ] + args.peer_arg
    offer_cmd = common + ["--role", "offer", "--seed", "1", "--peer-seed", "2"]
    answer_cmd = common + ["--role", "answer", "--seed", "2", "--peer-seed", "1"]
    if args.wrong_fingerprint:
        answer_cmd += ["--wrong-fingerprint", "--timeout", "20"]
        offer_cmd += ["--timeout", "20"]
    opts = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    t0 = time.monotonic()
    offer = subprocess.Popen(offer_cmd, **opts)
    answer = subprocess.Popen(answer_cmd, **opts)
    lock = threading.Lock()
    lines = {"offer": [], "answer": []}
    threads = [
        threading.Thread(
            target=relay, args=("offer", offer.stdout, answer.stdin, lines["offer"], lock)
        ),
        threading.Thread(
            target=relay, args=("answer", answer.stdout, offer.stdin, lines["answer"], lock)
        ),
    ]
    for t in threads:
        t.start()

    # Once both are DONE (or either has exited), close their stdin so that they stop lingering.
    deadline = t0 + args.timeout + 30
    while time.monotonic() < deadline:
        with lock:
            both_done = all("DONE" in v for v in lines.values())
        if both_done or offer.poll() is not None or answer.poll() is not None:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    for proc in (offer, answer):
        try:
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
    codes = {}
    for name, proc in (("offer", offer), ("answer", answer)):
        try:
            codes[name] = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
    for t in threads:
        t.join()

    if args.wrong_fingerprint:
        errors = {k: [x for x in v if x.startswith("ERROR")] for k, v in lines.items()}
        done = [k for k, v in lines.items() if "DONE" in v]
        if done or not all(codes.values()) or not all(errors.values()):
            print(f"SELFTEST FAILED wrong fingerprint not detected: codes={codes} done={done}")
            return 1
        print(f"SELFTEST ok wrong-fingerprint rejected seconds={elapsed:.2f} errors={errors}")
        return 0

    problems = [
        f"{name} exit {codes[name]}" for name in codes if codes[name] != 0
    ] + [f"{name} no DONE" for name, v in lines.items() if "DONE" not in v]
    if problems:
        print(f"SELFTEST FAILED {', '.join(problems)}")
        return 1
    figures = {
        name: [x for x in v if x.startswith(("SENT", "RECEIVED"))] for name, v in lines.items()
    }
    print(f"SELFTEST ok seconds={elapsed:.2f} bytes_each_way={args.bytes} {figures}")

    if not args.no_bench:
        bench = subprocess.run(
            [sys.executable, str(PEER), "--bench", "--bytes", str(args.bytes)],
            stdout=subprocess.PIPE,
            text=True,
            timeout=args.timeout + 30,
        )
        print(bench.stdout.strip(), flush=True)
        if bench.returncode != 0 or "AIORTC_BENCH" not in bench.stdout:
            print("SELFTEST FAILED bench")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
