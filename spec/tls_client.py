#!/usr/bin/env python3
"""spec/tls_client.py -- Python's ssl module as a TLS client for the TLS specs.

    tls_client.py MODE PORT CA [ARG]

Modes (127.0.0.1 only; every socket operation has a timeout; prints one
result line and exits 0, or prints "error ..." and exits 1):
  echo1m        verify the server as "localhost" against CA, send 1 MiB of
                seeded random bytes while reading them back; print
                "ok BYTES" when every byte came back in order, and close
                without close_notify (Python's close() does not send one)
  stall         open TCP, send the first 20 bytes of a real ClientHello and
                nothing more; print "closed SECONDS" when the server closes
  garbage       send an HTTP request instead of a ClientHello; print
                "closed BYTES" (bytes the server sent before closing)
  nocert        verify the server, offer no client certificate, send a line;
                print "refused" if the server rejects us, "accepted" if not
  truncate      send "partial" and close without close_notify (after
                reading the session tickets, so the close is a FIN, not a
                reset); print "sent"
  hold FILE     handshake, round-trip a line, print "ready SUBJECT", then
                wait until FILE exists and round-trip again on the same
                connection: print "again SUBJECT" (the certificate of the
                connection, which must not change)
"""
import os
import random
import select
import socket
import ssl
import sys
import time


def context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = True
    return ctx


def connect(port, ca):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context(ca).wrap_socket(raw, server_hostname="localhost")


def subject(s):
    cert = s.getpeercert()
    return ",".join("%s=%s" % kv for rdn in cert["subject"] for kv in rdn)


def echo1m(port, ca):
    """One thread: an SSLSocket must not be used by two threads at once."""
    data = random.Random(12).randbytes(1 << 20)
    s = connect(port, ca)
    s.setblocking(False)
    sent, got = 0, bytearray()
    deadline = time.monotonic() + 30
    while len(got) < len(data) and time.monotonic() < deadline:
        want_write = [s] if sent < len(data) else []
        readable, writable, _ = select.select([s], want_write, [], 1)
        if writable or (want_write and s.pending()):
            try:
                sent += s.send(data[sent:sent + 65536])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        if readable or s.pending():
            try:
                chunk = s.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            if not chunk:
                break
            got += chunk
    s.close()
    if bytes(got) != data:
        return "error got %d bytes, equal prefix: %s" % (len(got), data.startswith(bytes(got)))
    return "ok %d" % len(got)


def hello_bytes():
    """The first bytes of a real ClientHello, made by ssl's memory BIOs."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def stall(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.sendall(hello_bytes()[:20])
    start = time.monotonic()
    while raw.recv(4096):
        pass
    return "closed %.2f" % (time.monotonic() - start)


def garbage(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    n = 0
    while True:
        chunk = raw.recv(4096)
        if not chunk:
            return "closed %d" % n
        n += len(chunk)


def nocert(port, ca):
    try:
        s = connect(port, ca)
        s.sendall(b"hello\n")
        if s.recv(100):
            return "accepted"
        return "refused"
    except (ssl.SSLError, ConnectionError):
        return "refused"


def truncate(port, ca):
    s = connect(port, ca)
    s.sendall(b"partial")
    s.settimeout(0.3)
    try:
        s.recv(100)  # processes the tickets; nothing else comes
    except (socket.timeout, ssl.SSLError):
        pass
    s.close()  # Python's close() sends no close_notify
    return "sent"


def hold(port, ca, flag):
    s = connect(port, ca)
    s.sendall(b"one\n")
    if s.recv(100) != b"one\n":
        return "error first round trip"
    print("ready " + subject(s), flush=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            return "error no flag"
        time.sleep(0.02)
    s.sendall(b"two\n")
    if s.recv(100) != b"two\n":
        return "error second round trip"
    return "again " + subject(s)


def main():
    mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    try:
        if mode == "echo1m":
            out = echo1m(port, ca)
        elif mode == "stall":
            out = stall(port)
        elif mode == "garbage":
            out = garbage(port)
        elif mode == "nocert":
            out = nocert(port, ca)
        elif mode == "truncate":
            out = truncate(port, ca)
        elif mode == "hold":
            out = hold(port, ca, sys.argv[4])
        else:
            out = "error unknown mode " + mode
    except Exception as e:  # reported, not raised: the spec reads one line
        out = "error %s: %s" % (type(e).__name__, e)
    print(out, flush=True)
    sys.exit(1 if out.startswith("error") else 0)


if __name__ == "__main__":
    main()
