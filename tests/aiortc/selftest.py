#!/usr/bin/env python3
"""Self-test of dc_peer.py: two aiortc peers through our Jingle translation, on this machine.

Runs `dc_peer.py --role offer` and `dc_peer.py --role answer` on 127.0.0.1 (`--bind-ip`),
relays their `TRANSPORT` lines to each other as the Rust lab tests do, sends `--bytes`
(default 8 MiB) each way with different seeds, and exits 0 only if both print DONE and exit 0.
Then it runs `dc_peer.py --bench` once and prints its line. With `--wrong-fingerprint` it
instead checks that a peer signalling a wrong fingerprint makes the run fail (both exit
non-zero with an ERROR line, and neither prints DONE).

Usage: python3 tests/aiortc/selftest.py [--bytes N] [--no-bench] [--wrong-fingerprint]
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
    args = p.parse_args()

    common = [
        sys.executable,
        str(PEER),
        "--bind-ip",
        "127.0.0.1",
        "--bytes",
        str(args.bytes),
        "--timeout",
        str(args.timeout),
    ]
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
