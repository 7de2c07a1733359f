#!/usr/bin/python3
"""A libnice ICE peer for the namespace lab: interop partner and same-run baseline (issue 3).

It speaks exactly the stdin/stdout line protocol of `examples/ice_peer.rs`, so a test can put
it opposite `ice_peer` or opposite itself:

    creds <ufrag> <pwd>
    cand candidate:<foundation> <component> udp <priority> <ip> <port> typ <type> [raddr .. rport ..]
    eoc                      (end of candidates, RFC 8838 section 4)
    done                     (this side has finished its transfer; exit once both have)

and ends with the same line on stdout:

    result selected=<local type>/<remote type> local=<addr> remote=<addr> first_working_ms=<t>
           nominated_ms=<t> bytes_ok=<n> corrupted=<n> resent=<n>

The agent is a libnice NiceAgent (RFC 5245 compatibility, which libnice also uses for RFC 8445
peers), one stream with one component, trickle ICE, full mode; a controlling libnice agent
nominates aggressively (its default). Times are measured from the moment this side had the
peer's credentials and its first candidate, as `ice_peer` does: `first_working_ms` is when the
component reached libnice's CONNECTED state (a working pair), `nominated_ms` when it reached
READY (nomination finished). A negative time means the event came first; `none` means never.

Traffic (`--bytes N`) uses ice_peer's datagram format (1200-byte datagrams, marker 23, kind,
64-bit big-endian sequence number, a payload derived from it, CRC-32 trailer; end marker and
receiver reports with missing sequence numbers, which the sender resends), so libnice and
jingle-ice exchange traffic that both sides verify byte for byte. Python verifies every byte,
so keep `--rate-mbps` modest (the default here is 4 MB/s) on the side that sends *to* this peer.

Flags: `--role controlling|controlled` (required), `--stun IP:PORT` (libnice takes one STUN
server; further ones are ignored with a warning), `--bytes N`, `--rate-mbps R`, `--ta-ms MS`
(libnice's `stun-pacing-timer`), `--timeout SECS` (whole run, default 60). Diagnostics go to
stderr; `NICE_DEBUG=all G_MESSAGES_DEBUG=all` adds libnice's own. Exits non-zero with
`nice_peer: FAILED: <why>` when it does not connect, the signalling is malformed, a datagram
arrives corrupted, or the receiver did not verify every byte.

Needs the Debian packages `gir1.2-nice-0.1` and `python3-gi` (run it with /usr/bin/python3).
Data goes through `nice_agent_attach_recv` and `nice_agent_send` called with ctypes, because
the introspected `recv`/`send` of libnice 0.1.21 cannot carry binary datagrams.
"""

import ctypes
import os
import sys
import threading
import time
import zlib

import gi

gi.require_version("Nice", "0.1")
from gi.repository import GLib, Nice  # noqa: E402

# ---- ice_peer's datagram format (examples/ice_peer.rs, kept in step with it) -----------------

# First byte of every datagram: 23 lies in the range RFC 7983 section 7 keeps apart from STUN.
MARKER = 23
KIND_DATA = 1
KIND_END = 2
KIND_REPORT = 3
# A full data datagram.
DATAGRAM = 1200
# marker + kind + sequence number.
HEADER = 2 + 8
# CRC-32 trailer.
TRAILER = 4
MIN_DATAGRAM = HEADER + TRAILER
# Highest sequence number a receiver tracks.
MAX_TRACKED = 1 << 24
# Missing sequence numbers listed in one report.
MAX_MISSING_PER_REPORT = 128
# End-marker rounds before the sender gives up on a complete report.
MAX_ROUNDS = 50
# How long the sender waits for a report after an end marker (seconds).
REPORT_WAIT = 0.3
# How long to wait for the peer's `done` after our own (seconds).
PEER_DONE_WAIT = 30.0

U64 = (1 << 64) - 1
# libnice's stream has one component (RTP-style component ids start at 1, RFC 8445 section 5.1.1).
COMPONENT = 1

CAND_TYPES = {
    Nice.CandidateType.HOST: "host",
    Nice.CandidateType.SERVER_REFLEXIVE: "srflx",
    Nice.CandidateType.PEER_REFLEXIVE: "prflx",
    Nice.CandidateType.RELAYED: "relay",
}


def log(msg):
    sys.stderr.write("nice_peer: %s\n" % msg)
    sys.stderr.flush()


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def datagram_count(total):
    return max(1, -(-total // DATAGRAM))


def datagram_size(seq, total):
    """ice_peer's sizing: 1200 bytes, the last one the rest, never below MIN_DATAGRAM."""
    count = datagram_count(total)
    rest = total - (count - 1) * DATAGRAM
    if seq + 1 == count:
        return max(rest, MIN_DATAGRAM)
    if seq + 2 == count and rest < MIN_DATAGRAM:
        return DATAGRAM - (MIN_DATAGRAM - rest)
    return DATAGRAM


def payload(seq, size):
    """Bytes HEADER..size-TRAILER of datagram `seq`: ((seq*2654435761 + i*31) mod 2^64) >> 3."""
    base = (seq * 2654435761) & U64
    return bytes(
        (((base + i * 31) & U64) >> 3) & 0xFF for i in range(HEADER, size - TRAILER)
    )


def with_crc(body):
    return body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "big")


def build_data(seq, size):
    return with_crc(bytes([MARKER, KIND_DATA]) + seq.to_bytes(8, "big") + payload(seq, size))


def checked(datagram):
    """The body without its CRC-32 trailer, or None when the trailer does not match."""
    if len(datagram) < TRAILER:
        return None
    body, trailer = datagram[:-TRAILER], datagram[-TRAILER:]
    if zlib.crc32(body) & 0xFFFFFFFF != int.from_bytes(trailer, "big"):
        return None
    return body


def read_u64(body, at):
    raw = body[at : at + 8]
    return int.from_bytes(raw, "big") if len(raw) == 8 else None


# ---- libnice through ctypes, for binary data ----------------------------------------------------

RECV_FUNC = ctypes.CFUNCTYPE(
    None,
    ctypes.c_void_p,  # NiceAgent *
    ctypes.c_uint,  # stream id
    ctypes.c_uint,  # component id
    ctypes.c_uint,  # length
    ctypes.POINTER(ctypes.c_char),  # data
    ctypes.c_void_p,  # user data
)


class RawNice:
    """nice_agent_attach_recv / nice_agent_send on the C object behind a Nice.Agent."""

    def __init__(self, agent):
        libnice = ctypes.CDLL("libnice.so.10")
        glib = ctypes.CDLL("libglib-2.0.so.0")
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype = ctypes.c_void_p
        get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        self.agent = get_pointer(agent.__gpointer__, None)
        glib.g_main_context_default.restype = ctypes.c_void_p
        self.context = glib.g_main_context_default()
        self._attach = libnice.nice_agent_attach_recv
        self._attach.restype = ctypes.c_int
        self._attach.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            RECV_FUNC,
            ctypes.c_void_p,
        ]
        self._send = libnice.nice_agent_send
        self._send.restype = ctypes.c_int
        self._send.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_char_p,
        ]
        self._callback = None  # kept alive while attached

    def attach_recv(self, stream, component, handler):
        def trampoline(_agent, _stream, _component, length, data, _user):
            handler(ctypes.string_at(data, length))

        self._callback = RECV_FUNC(trampoline)
        if not self._attach(self.agent, stream, component, self.context, self._callback, None):
            raise RuntimeError("nice_agent_attach_recv failed")

    def send(self, stream, component, data):
        return self._send(self.agent, stream, component, len(data), data)


# ---- the peer ----------------------------------------------------------------------------------


class Options:
    def __init__(self, argv):
        self.role = None
        self.stun = []
        self.bytes = 0
        self.rate_mbps = 4.0
        self.ta_ms = None
        self.timeout = 60.0
        it = iter(argv)
        for arg in it:

            def value():
                try:
                    return next(it)
                except StopIteration:
                    raise ValueError("%s needs a value" % arg) from None

            if arg == "--role":
                self.role = value()
                if self.role not in ("controlling", "controlled"):
                    raise ValueError("unknown role %r" % self.role)
            elif arg == "--stun":
                host, sep, port = value().rpartition(":")
                if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError("--stun takes IP:PORT")
                self.stun.append((host.strip("[]"), int(port)))
            elif arg == "--bytes":
                self.bytes = int(value())
                if self.bytes != 0 and self.bytes < MIN_DATAGRAM:
                    raise ValueError("--bytes must be 0 or at least %d" % MIN_DATAGRAM)
            elif arg == "--rate-mbps":
                self.rate_mbps = float(value())
                if not self.rate_mbps > 0 or self.rate_mbps == float("inf"):
                    raise ValueError("--rate-mbps must be positive")
            elif arg == "--ta-ms":
                self.ta_ms = int(value())
            elif arg == "--timeout":
                self.timeout = float(value())
            elif arg in ("-h", "--help"):
                raise ValueError(
                    "usage: nice_peer.py --role controlling|controlled [--stun IP:PORT] "
                    "[--bytes N] [--rate-mbps R] [--ta-ms MS] [--timeout SECS]"
                )
            else:
                raise ValueError("unknown argument %r" % arg)
        if self.role is None:
            raise ValueError("--role is required")


class Peer:
    def __init__(self, options):
        self.options = options
        self.loop = GLib.MainLoop()
        self.exit_code = 1
        self.finished = False
        # Moments (time.monotonic()).
        self.start = None
        self.have_creds = False
        self.have_cand = False
        self.connected_at = None
        self.ready_at = None
        self.selected = None  # (local type, remote type, local addr, remote addr)
        # Receiver state.
        self.seen = set()
        self.bytes_ok = 0
        self.datagrams_ok = 0
        self.corrupted = 0
        self.duplicates = 0
        # Sender state.
        self.sending = False
        self.outcome = None  # (bytes_ok, corrupted) from the receiver's final report
        self.resent = 0
        self.report = None
        self.own_done = False
        self.peer_done = False

        agent = Nice.Agent.new_full(
            GLib.MainContext.default(),
            Nice.Compatibility.RFC5245,
            Nice.AgentOption.ICE_TRICKLE,
        )
        agent.set_property("controlling-mode", options.role == "controlling")
        agent.set_property("ice-tcp", False)
        agent.set_property("upnp", False)
        if options.stun:
            ip, port = options.stun[0]
            agent.set_property("stun-server", ip)
            agent.set_property("stun-server-port", port)
            if len(options.stun) > 1:
                log("libnice takes one STUN server; ignoring %s" % options.stun[1:])
        if options.ta_ms is not None:
            agent.set_property("stun-pacing-timer", options.ta_ms)
        self.agent = agent
        self.stream = agent.add_stream(1)
        if self.stream == 0:
            raise RuntimeError("nice_agent_add_stream failed")
        self.raw = RawNice(agent)
        self.raw.attach_recv(self.stream, COMPONENT, self.on_datagram)
        agent.connect("new-candidate-full", self.on_candidate)
        agent.connect("candidate-gathering-done", self.on_gathering_done)
        agent.connect("component-state-changed", self.on_state)
        agent.connect("new-selected-pair-full", self.on_selected)

    # -- run ------------------------------------------------------------------------------------

    def run(self):
        ok, ufrag, pwd = self.agent.get_local_credentials(self.stream)
        if not ok:
            self.fail("no local credentials")
            return 1
        emit("creds %s %s" % (ufrag, pwd))
        if not self.agent.gather_candidates(self.stream):
            self.fail("nice_agent_gather_candidates failed")
            return 1
        threading.Thread(target=self.stdin_thread, daemon=True).start()
        GLib.timeout_add(int(self.options.timeout * 1000), self.on_timeout)
        self.loop.run()
        return self.exit_code

    def fail(self, why):
        if self.finished:
            return
        self.finished = True
        log("FAILED: %s" % why)
        self.exit_code = 1
        self.loop.quit()

    def on_timeout(self):
        self.fail("not finished after %.0f s" % self.options.timeout)
        return False

    # -- signalling -----------------------------------------------------------------------------

    def stdin_thread(self):
        """Reads fd 0 unbuffered (a blocked buffered reader would hang interpreter shutdown)
        and hands whole lines to the main loop."""
        pending = b""
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                GLib.idle_add(self.on_line, raw.decode("utf-8", "replace").strip())
        if pending.strip():
            GLib.idle_add(self.on_line, pending.decode("utf-8", "replace").strip())
        GLib.idle_add(self.on_line, None)

    def mark_start(self, creds, cand):
        self.have_creds |= creds
        self.have_cand |= cand
        if self.have_creds and self.have_cand and self.start is None:
            self.start = time.monotonic()

    def on_line(self, line):
        if self.finished:
            return False
        if line is None or line == "done":
            self.peer_done = True
            self.maybe_finish()
        elif line.startswith("creds "):
            parts = line.split()
            if len(parts) != 3:
                self.fail("bad creds line %r" % line)
                return False
            if not self.agent.set_remote_credentials(self.stream, parts[1], parts[2]):
                self.fail("libnice refused the credentials %r" % line)
                return False
            self.mark_start(True, False)
        elif line.startswith("cand "):
            sdp = line[len("cand ") :].strip()
            if not sdp.startswith("a="):
                sdp = "a=" + sdp
            cand = self.agent.parse_remote_candidate_sdp(self.stream, sdp)
            if cand is None:
                self.fail("bad candidate %r" % sdp)
                return False
            self.mark_start(False, True)
            if self.agent.set_remote_candidates(self.stream, COMPONENT, [cand]) < 0:
                self.fail("libnice refused the candidate %r" % sdp)
        elif line == "eoc":
            self.agent.peer_candidate_gathering_done(self.stream)
        elif line:
            self.fail("unknown signalling line %r" % line)
        return False

    def on_candidate(self, agent, cand):
        sdp = agent.generate_local_candidate_sdp(cand)
        if sdp.startswith("a="):
            sdp = sdp[2:]
        emit("cand %s" % sdp)

    def on_gathering_done(self, _agent, _stream):
        emit("eoc")

    # -- ICE progress ---------------------------------------------------------------------------

    def on_state(self, _agent, _stream, _component, state):
        now = time.monotonic()
        log("state %s" % Nice.component_state_to_string(state))
        if state in (Nice.ComponentState.CONNECTED, Nice.ComponentState.READY):
            if self.connected_at is None:
                self.connected_at = now
        if state == Nice.ComponentState.READY and self.ready_at is None:
            self.ready_at = now
            self.on_ready()
        if state == Nice.ComponentState.FAILED:
            self.fail("ICE failed")

    def on_selected(self, agent, _stream, _component, local, remote):
        def describe(cand):
            ip = cand.addr.dup_string()
            if ":" in ip:
                ip = "[%s]" % ip
            return "%s:%d" % (ip, cand.addr.get_port())

        self.selected = (
            CAND_TYPES.get(local.type, "unknown"),
            CAND_TYPES.get(remote.type, "unknown"),
            describe(local),
            describe(remote),
        )
        log("selected %s %s <-> %s %s" % self.selected)

    def on_ready(self):
        if self.options.bytes > 0:
            if not self.sending:
                self.sending = True
                threading.Thread(target=self.sender_thread, daemon=True).start()
        else:
            self.send_done()

    def send_done(self):
        if not self.own_done:
            self.own_done = True
            emit("done")
            GLib.timeout_add(int(PEER_DONE_WAIT * 1000), self.on_peer_done_timeout)
            self.maybe_finish()

    def on_peer_done_timeout(self):
        if not self.peer_done:
            self.fail("the peer did not finish within %.0f s" % PEER_DONE_WAIT)
        return False

    # -- data -----------------------------------------------------------------------------------

    def send(self, data):
        sent = self.raw.send(self.stream, COMPONENT, data)
        return sent == len(data)

    def on_datagram(self, data):
        if len(data) < MIN_DATAGRAM or data[0] != MARKER:
            self.corrupted += 1
            return
        body = checked(data)
        if body is None:
            self.corrupted += 1
            return
        kind = body[1]
        if kind == KIND_DATA:
            seq = read_u64(body, 2)
            if seq is None or seq >= MAX_TRACKED or body[HEADER:] != payload(seq, len(data)):
                self.corrupted += 1
            elif seq in self.seen:
                self.duplicates += 1
            else:
                self.seen.add(seq)
                self.datagrams_ok += 1
                self.bytes_ok += len(data)
        elif kind == KIND_END:
            total = read_u64(body, 2)
            if total is None:
                return
            missing = []
            for s in range(min(total, MAX_TRACKED)):
                if s not in self.seen:
                    missing.append(s)
                    if len(missing) == MAX_MISSING_PER_REPORT:
                        break
            out = bytes([MARKER, KIND_REPORT])
            for v in (self.datagrams_ok, self.bytes_ok, self.corrupted, len(missing)):
                out += v.to_bytes(8, "big")
            for m in missing:
                out += m.to_bytes(8, "big")
            if not self.send(with_crc(out)):
                log("sending a report failed")
        elif kind == KIND_REPORT:
            fields = [read_u64(body, 2 + 8 * n) for n in range(4)]
            if None in fields:
                return
            n = min(fields[3], MAX_MISSING_PER_REPORT)
            missing = [m for m in (read_u64(body, 2 + 8 * (4 + i)) for i in range(n)) if m is not None]
            self.report = (fields[0], fields[1], fields[2], missing)
        else:
            self.corrupted += 1

    def sender_thread(self):
        """Paced sending off the main loop (nice_agent_send is thread-safe); reports arrive
        through the main loop's receive callback."""
        total = self.options.bytes
        count = datagram_count(total)
        rate = self.options.rate_mbps * 1e6
        started = time.monotonic()
        sent_bytes = 0
        for seq in range(count):
            size = datagram_size(seq, total)
            if not self.send(build_data(seq, size)):
                GLib.idle_add(self.fail_once, "sending datagram %d failed" % seq)
                return
            sent_bytes += size
            due = sent_bytes / rate
            elapsed = time.monotonic() - started
            if due > elapsed:
                time.sleep(due - elapsed)
        secs = max(time.monotonic() - started, 1e-9)
        log(
            "sent %d bytes in %d datagrams in %.0f ms (%.1f MB/s)"
            % (total, count, secs * 1e3, total / secs / 1e6)
        )
        end = with_crc(bytes([MARKER, KIND_END]) + count.to_bytes(8, "big"))
        for _round in range(MAX_ROUNDS):
            self.report = None
            self.send(end)
            deadline = time.monotonic() + REPORT_WAIT
            while self.report is None and time.monotonic() < deadline:
                time.sleep(0.005)
            report = self.report
            if report is None:
                continue
            datagrams_ok, bytes_ok, corrupted, missing = report
            if not missing and datagrams_ok >= count:
                GLib.idle_add(self.sender_finished, bytes_ok, corrupted)
                return
            for seq in missing:
                if seq < count:
                    self.send(build_data(seq, datagram_size(seq, total)))
                    self.resent += 1
        GLib.idle_add(self.fail_once, "no complete report after %d rounds" % MAX_ROUNDS)

    def fail_once(self, why):
        self.fail(why)
        return False

    def sender_finished(self, bytes_ok, corrupted):
        self.outcome = (bytes_ok, corrupted)
        self.send_done()
        return False

    # -- the end --------------------------------------------------------------------------------

    def ms(self, at):
        if self.start is None or at is None:
            return "none"
        return "%.1f" % ((at - self.start) * 1e3)

    def maybe_finish(self):
        if self.finished or not (self.own_done and self.peer_done):
            return
        self.finished = True
        if self.options.bytes > 0:
            bytes_ok, corrupted = self.outcome
        else:
            bytes_ok, corrupted = self.bytes_ok, self.corrupted
        log(
            "received %d datagrams verified, %d duplicates, %d corrupted"
            % (self.datagrams_ok, self.duplicates, self.corrupted)
        )
        sel = self.selected or ("none", "none", "none", "none")
        emit(
            "result selected=%s/%s local=%s remote=%s first_working_ms=%s nominated_ms=%s "
            "bytes_ok=%d corrupted=%d resent=%d"
            % (
                sel[0],
                sel[1],
                sel[2],
                sel[3],
                self.ms(self.connected_at),
                self.ms(self.ready_at),
                bytes_ok,
                corrupted,
                self.resent,
            )
        )
        self.exit_code = 0
        if self.corrupted > 0:
            log("FAILED: %d corrupted datagrams received" % self.corrupted)
            self.exit_code = 1
        if self.options.bytes > 0 and (bytes_ok != self.options.bytes or corrupted > 0):
            log(
                "FAILED: the receiver verified %d of %d bytes (%d corrupted)"
                % (bytes_ok, self.options.bytes, corrupted)
            )
            self.exit_code = 1
        if self.selected is None:
            log("FAILED: no selected pair")
            self.exit_code = 1
        self.loop.quit()


def main():
    try:
        options = Options(sys.argv[1:])
    except ValueError as e:
        log(str(e))
        return 2
    try:
        peer = Peer(options)
        return peer.run()
    except Exception as e:  # a libnice or ctypes setup error: report it like ice_peer does
        log("FAILED: %s" % e)
        return 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the stdin thread may still sit in read(), and libnice's threads need no
    # orderly interpreter shutdown.
    os._exit(code)
