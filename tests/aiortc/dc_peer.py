#!/usr/bin/env python3
"""An aiortc data-channel peer that speaks jingle-ice's Jingle transport (issue 5, interop).

aiortc (with aioice) is a WebRTC stack nobody here wrote: its own ICE, DTLS and SCTP data
channels. This script puts it opposite jingle-ice's data-channel peer in the namespace lab. The
test starts one `dc_peer.py` and one peer of ours, and relays signalling lines between them.

Signalling: one line each way on stdin/stdout (stdout is flushed after every line; all logging
goes to stderr):

    TRANSPORT <xml on one line>

where the XML is the Jingle transport Conversations uses: a
`urn:xmpp:jingle:transports:webrtc-datachannel:1` element (attributes `sctp-port`,
`max-message-size`) wrapping a XEP-0176 `urn:xmpp:jingle:transports:ice-udp:1` transport
(`ufrag`, `pwd`, `<candidate/>` children) and a XEP-0320 `urn:xmpp:jingle:apps:dtls:0`
`<fingerprint hash=.. setup=..>` element. This script translates that to and from aiortc's SDP
(a single `m=application 9 UDP/DTLS/SCTP webrtc-datachannel` section). Parsing is tolerant: the
ice-udp transport is looked for anywhere under the outer element, the fingerprint in the inner
transport first and then anywhere, the SCTP port on either transport (or a XEP-0343 `<sctpmap>`),
and a bare ice-udp transport is accepted too.

Roles:
    --role offer    gather fully, print TRANSPORT (setup=actpass), read the answer's TRANSPORT.
                    ICE controlling.
    --role answer   read the offer's TRANSPORT, print TRANSPORT (setup from aiortc's answer,
                    normally `active`, i.e. DTLS client). ICE controlled.

Data: once the connection is up, each side opens ITS OWN channel (`--label`, `--protocol`,
ordered and reliable) and writes `--bytes N` bytes of the pattern for `--seed S` in binary
messages of `--chunk` bytes, pausing while more than 1 MiB is buffered. It accepts the peer's
channel and checks that exactly `--expect N` bytes (default: --bytes) arrive, equal to the
pattern for `--peer-seed P`. Output lines (besides TRANSPORT):

    STATE ice <state> | STATE dtls <state> | STATE connection <state>
    CHANNEL <label> <protocol>       the peer's channel has opened
    SENT <n> <ms>                    all n bytes sent and acknowledged by the peer's SCTP;
                                     ms = from our channel's open to that moment
    RECEIVED <n> <ms> ok             n bytes received and verified;
                                     ms = from the peer's channel opening to the last byte
    DONE                             both of the above; exit status 0 follows
    ERROR <reason>                   mismatch, timeout, ICE or DTLS failure, peer closed...;
                                     exit status 1

After DONE the peer stays up (so that the peer's last bytes and acknowledgements are not cut
off by aiortc's close, which is an SCTP ABORT) until stdin reaches end of file, the peer closes
the connection, or `--linger` seconds pass; then it closes and exits 0.

Pattern (shared with the Rust tests): table = SHA-256(b"jingle-ice pattern" +
seed.to_bytes(4, "little") + j.to_bytes(4, "little")) for j = 0, 1, 2, ... concatenated and
truncated to 65521 bytes; stream[i] = table[i % 65521].

Network flags:
    --stun HOST:PORT                              one STUN server (aioice uses one)
    --turn HOST:PORT --turn-user U --turn-pass P  one TURN server, UDP, or TCP with --turn-tcp
    --relay-only                                  iceTransportPolicy "relay"
    --bind-ip IP (repeatable)                     gather host candidates on these addresses only.
        aioice normally takes every interface address except 127.0.0.1 and ::1, so a run on
        loopback needs `--bind-ip 127.0.0.1`. Without --stun/--turn no ICE server is used at
        all (aiortc would otherwise default to Google's public STUN server).
    --wrong-fingerprint   signal our fingerprint with one byte flipped (the peer must refuse us)
    --timeout SECS        whole run (default 120)
    --mid MID             media id used in the SDP of a remote offer (default "0")

Benchmark: `--bench [--bytes N] [--chunk C]` runs two aiortc peers in one process on
127.0.0.1 with no signalling, one channel, N bytes one way (verified), and prints

    AIORTC_BENCH bytes=<n> seconds=<s> mbytes_per_s=<x> open_ms=<t>

(seconds from channel open to the last byte verified at the receiver, MB = 10^6 bytes, open_ms
from createOffer to the channel's open event). This is the aiortc-to-aiortc baseline.

Timing facts (aioice 0.13 / aiortc 1.16, measured on this 2-core machine): aiortc's SCTP is
CPU-bound in Python, about 2-3 MB/s one way on loopback and roughly half that per direction when
both directions run, so 64 MiB each way between two aiortc processes took ~67 s; give lab runs
a --timeout of a few minutes. ICE failure is only declared when aioice's STUN checks time out
(7 retransmissions from 500 ms, about 64 s), so an unreachable peer ends in `ERROR timeout`
when --timeout is shorter. With --wrong-fingerprint the lying side usually completes its own
handshake (it checks the honest fingerprint it received) and only fails when the peer aborts
or, failing that, when ICE consent expires (~30 s) or --timeout passes; the honest side is the
one that reports the mismatch (`ERROR connection failed (..., dtls failed)` for aiortc).

Needs aiortc 1.16 / aioice 0.13 (`pip install aiortc==1.16.0`); run it with a python3 that has
them (Debian's /usr/bin/python3 here does not; the pyenv one does). `--verbose` adds aiortc's
debug logging to stderr.
"""

import argparse
import asyncio
import hashlib
import logging
import os
import sys
import threading
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import DTLS_ROLE_SETUP, SessionDescription

# ---- constants ----------------------------------------------------------------------------

# Jingle namespaces: the webrtc-datachannel wrapper Conversations uses, XEP-0176 ICE-UDP and
# XEP-0320 DTLS fingerprints.
NS_DC = "urn:xmpp:jingle:transports:webrtc-datachannel:1"
NS_ICE = "urn:xmpp:jingle:transports:ice-udp:1"
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"

# The SCTP port when none is signalled (the default of RFC 8841's sctp-port attribute).
DEFAULT_SCTP_PORT = 5000
# Pattern table length: a prime, so that the pattern does not line up with power-of-two chunks.
PATTERN_PERIOD = 65521
PATTERN_LABEL = b"jingle-ice pattern"
# Writers pause while more than this many bytes are buffered in the channel.
HIGH_WATER = 1024 * 1024
# Candidate types of XEP-0176 and RFC 8445, the same words in SDP (RFC 8839 section 5.1).
CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")


def log(msg: str) -> None:
    print(f"dc_peer: {msg}", file=sys.stderr, flush=True)


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


# ---- the byte pattern -----------------------------------------------------------------------


class Pattern:
    """The shared test byte stream for one seed, with fast slicing at any stream offset."""

    def __init__(self, seed: int) -> None:
        parts = []
        j = 0
        total = 0
        prefix = PATTERN_LABEL + seed.to_bytes(4, "little")
        while total < PATTERN_PERIOD:
            digest = hashlib.sha256(prefix + j.to_bytes(4, "little")).digest()
            parts.append(digest)
            total += len(digest)
            j += 1
        self.table = b"".join(parts)[:PATTERN_PERIOD]
        self._ext = self.table * 2

    def slice(self, pos: int, n: int) -> bytes:
        """stream[pos:pos+n]."""
        need = n + PATTERN_PERIOD
        if len(self._ext) < need:
            reps = need // PATTERN_PERIOD + 1
            self._ext = self.table * reps
        off = pos % PATTERN_PERIOD
        return self._ext[off : off + n]


# ---- Jingle <-> SDP --------------------------------------------------------------------------


class SignallingError(Exception):
    pass


def transport_from_sdp(sdp: str, wrong_fingerprint: bool) -> str:
    """Our Jingle transport element (one line) for aiortc's local description."""
    desc = SessionDescription.parse(sdp)
    media = next((m for m in desc.media if m.kind == "application"), None)
    if media is None:
        raise SignallingError("aiortc's description has no application section")
    fingerprint = next(
        (f for f in media.dtls.fingerprints if f.algorithm.lower() == "sha-256"), None
    )
    if fingerprint is None:
        raise SignallingError("aiortc's description has no sha-256 fingerprint")
    value = fingerprint.value.upper()
    if wrong_fingerprint:
        octets = value.split(":")
        octets[0] = f"{int(octets[0], 16) ^ 0xFF:02X}"
        value = ":".join(octets)
        log(f"signalling a wrong fingerprint on purpose: {value}")
    setup = DTLS_ROLE_SETUP[media.dtls.role]

    max_size = media.sctpCapabilities.maxMessageSize if media.sctpCapabilities else None
    outer_attrs = {"xmlns": NS_DC, "sctp-port": str(media.sctp_port or DEFAULT_SCTP_PORT)}
    if max_size:
        outer_attrs["max-message-size"] = str(max_size)
    parts = [
        _open_tag("transport", outer_attrs),
        _open_tag(
            "transport",
            {"xmlns": NS_ICE, "ufrag": media.ice.usernameFragment, "pwd": media.ice.password},
        ),
        _open_tag("fingerprint", {"xmlns": NS_DTLS, "hash": "sha-256", "setup": setup}),
        escape(value),
        "</fingerprint>",
    ]
    for n, cand in enumerate(media.ice_candidates, start=1):
        attrs = {
            "component": str(cand.component),
            "foundation": str(cand.foundation),
            "generation": "0",
            "id": f"aiortc{n}",
            "ip": cand.ip,
            "port": str(cand.port),
            "priority": str(cand.priority),
            "protocol": cand.protocol.lower(),
            "type": cand.type,
        }
        if cand.relatedAddress is not None:
            attrs["rel-addr"] = cand.relatedAddress
        if cand.relatedPort is not None:
            attrs["rel-port"] = str(cand.relatedPort)
        attrs["network"] = "0"
        parts.append(_open_tag("candidate", attrs)[:-1] + "/>")
    parts += ["</transport>", "</transport>"]
    return "".join(parts)


def _open_tag(name: str, attrs: dict) -> str:
    return "<" + name + "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items()) + ">"


def _find_ice_transport(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if local_name(el.tag) == "transport" and namespace(el.tag) == NS_ICE:
            return el
    # Tolerance: any transport carrying credentials.
    for el in root.iter():
        if local_name(el.tag) == "transport" and el.get("ufrag") and el.get("pwd"):
            return el
    raise SignallingError("no ice-udp transport with ufrag and pwd")


def _find_fingerprint(ice: ET.Element, root: ET.Element) -> ET.Element:
    for scope in (ice, root):
        for el in scope.iter():
            if local_name(el.tag) == "fingerprint" and (el.text or "").strip():
                return el
    raise SignallingError("no DTLS fingerprint")


def _int_attr(el: ET.Element, name: str, lo: int, hi: int) -> int:
    raw = el.get(name)
    if raw is None:
        raise SignallingError(f"<{local_name(el.tag)}> lacks {name}")
    try:
        value = int(raw)
    except ValueError as exc:
        raise SignallingError(f"{name}={raw!r} is not a number") from exc
    if not lo <= value <= hi:
        raise SignallingError(f"{name}={value} out of range")
    return value


def sdp_from_transport(xml: str, sdp_type: str, mid: str) -> str:
    """aiortc's SDP ("offer" or "answer") for the peer's Jingle transport."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise SignallingError(f"malformed XML: {exc}") from exc
    ice = _find_ice_transport(root)
    ufrag = ice.get("ufrag", "")
    pwd = ice.get("pwd", "")
    fp = _find_fingerprint(ice, root)
    hash_name = (fp.get("hash") or "sha-256").lower()
    fp_value = "".join((fp.text or "").split()).upper()
    setup = fp.get("setup") or ("actpass" if sdp_type == "offer" else "active")
    if setup not in ("actpass", "active", "passive"):
        raise SignallingError(f"unknown setup {setup!r}")
    if sdp_type == "answer" and setup == "actpass":
        raise SignallingError("an answer must not say setup=actpass")

    sctp_port = None
    max_size = None
    for el in (root, ice):
        if sctp_port is None and el.get("sctp-port") is not None:
            sctp_port = _int_attr(el, "sctp-port", 1, 65535)
        if max_size is None and el.get("max-message-size") is not None:
            max_size = _int_attr(el, "max-message-size", 0, 2**32 - 1)
    if sctp_port is None:
        for el in root.iter():
            if local_name(el.tag) == "sctpmap" and el.get("number") is not None:
                sctp_port = _int_attr(el, "number", 1, 65535)
                break
    if sctp_port is None:
        sctp_port = DEFAULT_SCTP_PORT

    lines = [
        "v=0",
        f"o=- {int(time.time())} 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {mid}",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        f"a=mid:{mid}",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        f"a=fingerprint:{hash_name} {fp_value}",
        f"a=setup:{setup}",
        f"a=sctp-port:{sctp_port}",
    ]
    if max_size is not None:
        lines.append(f"a=max-message-size:{max_size}")
    count = 0
    for el in ice:
        if local_name(el.tag) != "candidate":
            continue
        protocol = (el.get("protocol") or "udp").lower()
        if protocol != "udp":
            log(f"skipping a {protocol} candidate")
            continue
        ctype = el.get("type") or "host"
        if ctype not in CANDIDATE_TYPES:
            raise SignallingError(f"unknown candidate type {ctype!r}")
        ip = el.get("ip")
        if not ip or any(c.isspace() for c in ip):
            raise SignallingError("candidate without a usable ip")
        foundation = el.get("foundation") or "1"
        if any(c.isspace() for c in foundation):
            raise SignallingError(f"foundation {foundation!r} has spaces")
        line = (
            f"a=candidate:{foundation} {_int_attr(el, 'component', 1, 256)} udp "
            f"{_int_attr(el, 'priority', 1, 2**31 - 1)} {ip} "
            f"{_int_attr(el, 'port', 0, 65535)} typ {ctype}"
        )
        raddr = el.get("rel-addr")
        if raddr and not any(c.isspace() for c in raddr):
            line += f" raddr {raddr}"
            if el.get("rel-port") is not None:
                line += f" rport {_int_attr(el, 'rel-port', 0, 65535)}"
        lines.append(line)
        count += 1
    lines.append("a=end-of-candidates")
    log(f"remote {sdp_type}: {count} candidate(s), setup={setup}, sctp-port={sctp_port}")
    return "\r\n".join(lines) + "\r\n"


# ---- stdin ----------------------------------------------------------------------------------


class LineReader:
    """Lines of stdin in a daemon thread (works for pipes, files and terminals alike)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self._loop = loop
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for line in sys.stdin:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, line.rstrip("\r\n"))
        self._loop.call_soon_threadsafe(self.queue.put_nowait, None)

    async def transport(self) -> str:
        while True:
            line = await self.queue.get()
            if line is None:
                raise SignallingError("stdin closed before a TRANSPORT line")
            if line.startswith("TRANSPORT "):
                return line[len("TRANSPORT ") :]
            if line.strip():
                log(f"ignoring signalling line: {line[:120]}")


# ---- data -----------------------------------------------------------------------------------


class Receiver:
    """Counts and verifies the peer's stream."""

    def __init__(self, pattern: Pattern, expect: int, failed: asyncio.Future) -> None:
        self.pattern = pattern
        self.expect = expect
        self.got = 0
        self.started = None
        self.done = asyncio.get_running_loop().create_future()
        self._failed = failed
        if expect == 0:
            self.done.set_result(0.0)

    def fail(self, reason: str) -> None:
        if not self._failed.done():
            self._failed.set_result(reason)

    def on_message(self, message) -> None:
        if isinstance(message, str):
            self.fail(f"text message at offset {self.got} (binary expected)")
            return
        n = len(message)
        if self.got + n > self.expect:
            self.fail(f"received more than the expected {self.expect} bytes")
            return
        if message != self.pattern.slice(self.got, n):
            want = self.pattern.slice(self.got, n)
            first = next(i for i in range(n) if message[i] != want[i])
            self.fail(f"mismatch at byte {self.got + first}")
            return
        self.got += n
        if self.got == self.expect and not self.done.done():
            self.done.set_result((time.monotonic() - self.started) * 1000.0)


def sctp_drained(channel) -> bool:
    """True once nothing is buffered in the channel and the peer's SCTP acked all DATA."""
    if channel.bufferedAmount:
        return False
    sctp = channel.transport
    queues = ("_data_channel_queue", "_outbound_queue", "_sent_queue")
    return not any(getattr(sctp, q, None) for q in queues)


async def send_stream(channel, pattern: Pattern, total: int, chunk: int) -> None:
    low = asyncio.Event()
    channel.bufferedAmountLowThreshold = HIGH_WATER
    channel.on("bufferedamountlow", low.set)
    pos = 0
    while pos < total:
        if channel.readyState != "open":
            raise ConnectionError(f"our channel is {channel.readyState}")
        if channel.bufferedAmount > HIGH_WATER:
            low.clear()
            await low.wait()
            continue
        n = min(chunk, total - pos)
        channel.send(pattern.slice(pos, n))
        pos += n
        # Let the SCTP task run between sends.
        await asyncio.sleep(0)
    while not sctp_drained(channel):
        if channel.readyState != "open":
            raise ConnectionError(f"our channel is {channel.readyState}")
        await asyncio.sleep(0.01)


# ---- the peer -------------------------------------------------------------------------------


def restrict_host_addresses(ips: list[str]) -> None:
    """Make aioice gather host candidates on exactly these addresses (127.0.0.1 included)."""

    def only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [ip for ip in ips if (":" in ip and use_ipv6) or (":" not in ip and use_ipv4)]

    aioice.ice.get_host_addresses = only


def ice_configuration(args) -> RTCConfiguration:
    servers = []
    if args.stun:
        servers.append(RTCIceServer(urls=f"stun:{args.stun}"))
    if args.turn:
        transport = "tcp" if args.turn_tcp else "udp"
        servers.append(
            RTCIceServer(
                urls=f"turn:{args.turn}?transport={transport}",
                username=args.turn_user,
                credential=args.turn_pass,
            )
        )
    policy = RTCIceTransportPolicy.RELAY if args.relay_only else RTCIceTransportPolicy.ALL
    # An explicit empty list: None would make aiortc use Google's public STUN server.
    return RTCConfiguration(
        iceServers=servers, iceTransportPolicy=policy, alwaysNegotiateDataChannels=True
    )


async def run_peer(args) -> int:
    loop = asyncio.get_running_loop()
    failed: asyncio.Future = loop.create_future()
    reader = LineReader(loop)
    pc = RTCPeerConnection(ice_configuration(args))
    receiver = Receiver(Pattern(args.peer_seed), args.expect, failed)
    pattern = Pattern(args.seed)
    connected = asyncio.Event()
    watched_dtls = set()

    def fail(reason: str) -> None:
        if not failed.done():
            failed.set_result(reason)

    def watch_dtls() -> None:
        sctp = pc.sctp
        if sctp is None or id(sctp.transport) in watched_dtls:
            return
        dtls = sctp.transport
        watched_dtls.add(id(dtls))

        def on_dtls() -> None:
            state = dtls.state
            out(f"STATE dtls {state}")
            if state == "failed":
                fail("dtls failed (handshake or fingerprint mismatch)")

        dtls.on("statechange", on_dtls)

    @pc.on("iceconnectionstatechange")
    def on_ice() -> None:
        out(f"STATE ice {pc.iceConnectionState}")
        if pc.iceConnectionState == "failed":
            fail("ice failed")

    @pc.on("connectionstatechange")
    def on_conn() -> None:
        state = pc.connectionState
        out(f"STATE connection {state}")
        watch_dtls()
        if state == "connected":
            connected.set()
        elif state == "failed":
            dtls = pc.sctp.transport.state if pc.sctp else "none"
            fail(f"connection failed (ice {pc.iceConnectionState}, dtls {dtls})")
        elif state == "closed" and not (receiver.done.done() and sent.done()):
            fail("connection closed by the peer")

    @pc.on("datachannel")
    def on_datachannel(channel) -> None:
        out(f"CHANNEL {channel.label} {channel.protocol or '-'}")
        if receiver.started is not None:
            fail(f"a second channel from the peer: {channel.label}")
            return
        receiver.started = time.monotonic()
        channel.on("message", receiver.on_message)

        def on_close() -> None:
            if not receiver.done.done():
                fail(f"the peer's channel closed after {receiver.got} bytes")

        channel.on("close", on_close)

    sent: asyncio.Future = loop.create_future()

    async def sender() -> None:
        await connected.wait()
        channel = pc.createDataChannel(args.label, protocol=args.protocol, ordered=True)
        opened = loop.create_future()
        channel.on("open", lambda: opened.done() or opened.set_result(time.monotonic()))
        channel.on("close", lambda: opened.done() or opened.set_exception(ConnectionError))
        try:
            start = await opened
            await send_stream(channel, pattern, args.bytes, args.chunk)
        except ConnectionError as exc:
            fail(f"sending failed: {exc or 'channel closed'}")
            return
        sent.set_result((time.monotonic() - start) * 1000.0)

    async def progress() -> None:
        ms = await sent
        out(f"SENT {args.bytes} {ms:.0f}")

    async def received() -> None:
        ms = await receiver.done
        out(f"RECEIVED {receiver.got} {ms:.0f} ok")

    async def signalling() -> None:
        if args.role == "offer":
            await pc.setLocalDescription(await pc.createOffer())
            local = pc.localDescription.sdp
            mid = SessionDescription.parse(local).media[0].rtp.muxId or args.mid
            out("TRANSPORT " + transport_from_sdp(local, args.wrong_fingerprint))
            remote = sdp_from_transport(await reader.transport(), "answer", mid)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=remote, type="answer"))
        else:
            remote = sdp_from_transport(await reader.transport(), "offer", args.mid)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=remote, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            local = pc.localDescription.sdp
            out("TRANSPORT " + transport_from_sdp(local, args.wrong_fingerprint))
        watch_dtls()

    tasks = [asyncio.ensure_future(c()) for c in (sender, progress, received)]
    both = asyncio.ensure_future(asyncio.gather(tasks[1], tasks[2]))
    status = 0
    deadline = loop.time() + args.timeout
    try:
        try:
            await asyncio.wait_for(signalling(), timeout=args.timeout)
        except (SignallingError, ValueError) as exc:
            fail(f"signalling: {exc}")
        except asyncio.TimeoutError:
            fail("timeout during signalling")
        if not failed.done():
            done, _ = await asyncio.wait(
                [both, failed],
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                fail(
                    f"timeout after {args.timeout}s: connection {pc.connectionState}, "
                    f"received {receiver.got}/{args.expect}, sent done {sent.done()}"
                )
        if failed.done():
            out(f"ERROR {failed.result()}")
            status = 1
        else:
            out("DONE")
            await linger(reader, pc, args.linger)
    finally:
        for t in tasks + [both]:
            t.cancel()
        await asyncio.gather(*tasks, both, return_exceptions=True)
        await pc.close()
    return status


async def linger(reader: LineReader, pc, seconds: float) -> None:
    """Stay up after DONE until stdin ends, the peer closes, or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pc.connectionState in ("closed", "failed"):
            return
        try:
            line = await asyncio.wait_for(reader.queue.get(), timeout=0.1)
        except asyncio.TimeoutError:
            continue
        if line is None:
            return


# ---- benchmark ------------------------------------------------------------------------------


async def run_bench(args) -> int:
    restrict_host_addresses(["127.0.0.1"])
    config = RTCConfiguration(iceServers=[])
    a = RTCPeerConnection(config)
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    loop = asyncio.get_running_loop()
    failed: asyncio.Future = loop.create_future()
    receiver = Receiver(Pattern(args.seed), args.bytes, failed)

    @b.on("datachannel")
    def on_datachannel(channel) -> None:
        receiver.started = time.monotonic()
        channel.on("message", receiver.on_message)

    channel = a.createDataChannel(args.label, protocol=args.protocol, ordered=True)
    opened = loop.create_future()
    channel.on("open", lambda: opened.done() or opened.set_result(time.monotonic()))
    t0 = time.monotonic()
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    try:
        open_at = await asyncio.wait_for(opened, timeout=args.timeout)
        start = time.monotonic()
        sender = asyncio.ensure_future(
            send_stream(channel, Pattern(args.seed), args.bytes, args.chunk)
        )
        done, _ = await asyncio.wait(
            [receiver.done, failed], timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        sender.cancel()
        if failed.done():
            out(f"ERROR {failed.result()}")
            return 1
        if not done:
            out(f"ERROR timeout: received {receiver.got}/{args.bytes}")
            return 1
        seconds = time.monotonic() - start
        out(
            f"AIORTC_BENCH bytes={args.bytes} seconds={seconds:.3f} "
            f"mbytes_per_s={args.bytes / seconds / 1e6:.2f} open_ms={(open_at - t0) * 1000:.0f}"
        )
        return 0
    finally:
        await a.close()
        await b.close()


# ---- main -----------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--role", choices=("offer", "answer"))
    p.add_argument("--label", default="test")
    p.add_argument("--protocol", default="xmpp-jingle")
    p.add_argument("--bytes", type=int, default=8 * 1024 * 1024)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--peer-seed", type=int, default=2)
    p.add_argument("--expect", type=int, default=None)
    p.add_argument("--chunk", type=int, default=16384)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--linger", type=float, default=5.0)
    p.add_argument("--stun")
    p.add_argument("--turn")
    p.add_argument("--turn-user")
    p.add_argument("--turn-pass")
    p.add_argument("--turn-tcp", action="store_true")
    p.add_argument("--relay-only", action="store_true")
    p.add_argument("--bind-ip", action="append", default=[])
    p.add_argument("--wrong-fingerprint", action="store_true")
    p.add_argument("--mid", default="0")
    p.add_argument("--bench", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(message)s",
    )
    if args.expect is None:
        args.expect = args.bytes
    for name in ("bytes", "expect", "seed", "peer_seed"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    if not 0 < args.chunk <= 262144:
        p.error("--chunk must be in 1..262144")
    if args.turn and (args.turn_user is None or args.turn_pass is None):
        p.error("--turn needs --turn-user and --turn-pass")
    if args.relay_only and not args.turn:
        p.error("--relay-only needs --turn")
    if args.bench:
        return asyncio.run(run_bench(args))
    if args.role is None:
        p.error("--role offer|answer is required (or --bench)")
    if args.bind_ip:
        restrict_host_addresses(args.bind_ip)
    return asyncio.run(run_peer(args))


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The stdin thread may still be blocked in a read: leave without joining it.
    os._exit(status)
