#!/usr/bin/env python3
"""Asks the lab's Prosody for its external services (XEP-0215, urn:xmpp:extdisco:2).

Usage: extdisco.py ADDR:PORT DOMAIN USER PASSWORD CAFILE

A minimal XMPP client with the standard library only: TCP, STARTTLS verified against the lab
CA for DOMAIN, SASL PLAIN, resource binding, then one <services/> query. Prints one line per
service: `service type=.. transport=.. host=.. port=.. username=.. password=..` and exits 0,
or prints why it failed and exits 1. Every read is bounded by a timeout.
"""

import base64
import re
import socket
import ssl
import sys

TIMEOUT = 10.0


def read_until(sock, pattern, buf=b""):
    """Reads until the regex `pattern` matches the accumulated data; returns (match, data)."""
    rx = re.compile(pattern, re.S)
    while True:
        m = rx.search(buf)
        if m:
            return m, buf
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed while waiting for %r; got %r" % (pattern, buf[-500:]))
        buf += chunk
        if len(buf) > 1 << 20:
            raise RuntimeError("too much data without %r" % pattern)


def open_stream(sock, domain):
    sock.sendall(
        (
            "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xml:lang='en' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>" % domain
        ).encode()
    )
    _, data = read_until(sock, rb"</stream:features>")
    return data


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    addr, domain, user, password, cafile = sys.argv[1:]
    host, port = addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    raw.settimeout(TIMEOUT)
    features = open_stream(raw, domain)
    if b"urn:ietf:params:xml:ns:xmpp-tls" not in features:
        raise RuntimeError("no STARTTLS offered: %r" % features)
    raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    read_until(raw, rb"<proceed[^>]*/>")
    ctx = ssl.create_default_context(cafile=cafile)
    sock = ctx.wrap_socket(raw, server_hostname=domain)
    features = open_stream(sock, domain)
    if b"PLAIN" not in features:
        raise RuntimeError("no SASL PLAIN: %r" % features)
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    sock.sendall(
        ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % token).encode()
    )
    m, _ = read_until(sock, rb"<(success|failure)[^>]*(/>|>.*?</(success|failure)>)")
    if m.group(1) != b"success":
        raise RuntimeError("authentication failed: %r" % m.group(0))
    open_stream(sock, domain)
    sock.sendall(
        b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>lab</resource></bind></iq>"
    )
    read_until(sock, rb"<iq[^>]*id=['\"]bind1['\"].*?</iq>")
    sock.sendall(
        ("<iq type='get' id='ext1' to='%s'><services xmlns='urn:xmpp:extdisco:2'/></iq>" % domain).encode()
    )
    m, _ = read_until(sock, rb"<iq[^>]*id=['\"]ext1['\"]([^>]*/>|.*?</iq>)")
    reply = m.group(0).decode()
    if "type='result'" not in reply and 'type="result"' not in reply:
        raise RuntimeError("extdisco query failed: %s" % reply)
    count = 0
    for service in re.finditer(r"<service\b([^>]*)/?>", reply):
        attrs = dict(re.findall(r"(\w+)=['\"]([^'\"]*)['\"]", service.group(1)))
        print(
            "service "
            + " ".join(
                "%s=%s" % (k, attrs.get(k, ""))
                for k in ("type", "transport", "host", "port", "username", "password")
            )
        )
        count += 1
    sock.sendall(b"</stream:stream>")
    sock.close()
    if count == 0:
        raise RuntimeError("no services in %s" % reply)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # report any failure as one line and a non-zero exit
        print("extdisco.py: %s" % e, file=sys.stderr)
        sys.exit(1)
