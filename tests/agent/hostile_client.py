#!/usr/bin/env python3
"""Clients that misbehave towards snapmgrd, for agent.limits_on_the_host.

Every command talks to 127.0.0.0/8 only, is bounded in time, and prints
one line saying what it measured; it exits 1 (with "FAIL: ...") when the
agent did not hold its limit.

  trickled PORT TLS_DIR LIMIT     a handshake and a request header sent a
                                  byte a second are cut within LIMIT s
  crowd PORT TLS_DIR KEPT         100 slow connections from 127.0.0.1 (94
                                  trickling a handshake, 6 a header after
                                  a real one): a client from 127.0.0.2 is
                                  answered within 2 s, and at most KEPT of
                                  the 100 are still open then; a client
                                  with KEPT + 4 answered connections open
                                  may open one more
  big PORT TLS_DIR PID            oversized requests are refused (413, 431)
                                  or cut, and the agent's VmHWM stays put
  ranges PORT TLS_DIR             an 8 KiB Range header is answered
  kill-listener PID PORT          shuts the agent's listening socket down
                                  under it (through pidfd_getfd)
"""
import ctypes
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"


KEEP_GOING = os.environ.get("HOSTILE_KEEP_GOING") == "1"  # report every failure, not the first
failed = False


def fail(message):
    global failed
    print(f"FAIL: {message}", flush=True)
    failed = True
    if not KEEP_GOING:
        sys.exit(1)


def tls_context(tls):
    context = ssl.create_default_context(cafile=f"{tls}/ca.crt")
    context.load_cert_chain(f"{tls}/client.crt", f"{tls}/client.key")
    return context


def tls_connect(port, tls, source=HOST, timeout=5):
    raw = socket.create_connection((HOST, port), timeout=timeout, source_address=(source, 0))
    return tls_context(tls).wrap_socket(raw, server_hostname="localhost")


def request(port, tls, path, source=HOST, head=b"", timeout=5):
    """GET path; the status and body."""
    with tls_connect(port, tls, source, timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".encode() + head + b"\r\n")
        return read_response(s)


def read_response(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionError, ssl.SSLError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    match = re.match(rb"HTTP/1\.1 (\d+)", data)
    return (int(match.group(1)) if match else None), data


def closed(s):
    """Whether the agent closed s (without blocking)."""
    try:
        if not select.select([s], [], [], 0)[0]:
            return False
        return s.recv(1) == b""
    except (ConnectionError, ssl.SSLError, OSError):
        return True


class Slow:
    """A connection that sends the rest of its payload a byte at a time."""

    def __init__(self, sock, payload):
        self.sock, self.payload, self.sent = sock, payload, 0

    def send_next(self):
        """Sends one byte; False once the agent refused it."""
        try:
            self.sock.send(self.payload[self.sent:self.sent + 1])
        except (ConnectionError, ssl.SSLError, OSError):
            return False
        self.sent += 1
        return True


def trickle(slow, started, limit, what, results):
    """Sends a byte a second until the agent closes the connection, or
    limit + 3 s."""
    while time.monotonic() - started < limit + 3 and slow.send_next():
        time.sleep(1)
        if closed(slow.sock):
            break
    results[what] = time.monotonic() - started


def slow_handshake(port):
    """A TLS record that starts a 512-byte ClientHello (OpenSSL waits for
    all of it before looking inside)."""
    record = b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc\x03\x03" + bytes(501)
    slow = Slow(socket.create_connection((HOST, port), timeout=5), record)
    slow.send_next()
    return slow


def slow_header(port, tls, source=HOST):
    s = tls_connect(port, tls, source)
    s.send(b"GET /api/v1/snapshots/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    return Slow(s, b"a" * 4096)


def trickled(port, tls, limit):
    results = {}
    started = time.monotonic()
    threads = [threading.Thread(target=trickle, args=(slow_handshake(port), started, limit, "handshake", results)),
               threading.Thread(target=trickle, args=(slow_header(port, tls), started, limit, "header", results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for what, seconds in results.items():
        print(f"a {what} trickled a byte a second was cut after {seconds:.1f} s")
        if seconds > limit:
            fail(f"a {what} trickled a byte a second held its connection {seconds:.1f} s (limit {limit} s)")


def crowd(port, tls, kept):
    # The real handshakes first: the agent lets KEPT connections of an
    # address in, and turns away the rest at their first byte.
    slow = [slow_header(port, tls) for _ in range(6)]
    slow += [slow_handshake(port) for _ in range(94)]
    stop = threading.Event()

    def keep_trickling():
        while not stop.wait(1):
            for s in slow:
                s.send_next()

    trickler = threading.Thread(target=keep_trickling)
    trickler.start()
    try:
        time.sleep(0.5)  # the agent has taken them all up
        started = time.monotonic()
        try:
            status, _ = request(port, tls, "/api/v1/snapshots/", source="127.0.0.2", timeout=10)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            status = f"no answer ({e})"
        took = time.monotonic() - started
        open_now = sum(not closed(s.sock) for s in slow)
        busy_status = busy_client(port, tls, "127.0.0.3")
    finally:
        stop.set()
        trickler.join()
        for s in slow:
            s.sock.close()
    print(f"with 100 slow connections open, a client got {status} in {took:.2f} s; {open_now} of them still open")
    if status != 200 or took > 2:
        fail(f"with 100 slow connections open a client got {status} after {took:.1f} s")
    if open_now > kept:
        fail(f"{open_now} slow connections from one address still open, more than {kept}")
    print(f"a client with {kept + 4} connections open, each past its first request, opened one more: {busy_status}")
    if busy_status != 200:
        fail(f"a client with {kept + 4} answered connections open was refused one more: {busy_status}")


def busy_client(port, tls, source, connections=12):
    """Opens connections that each get an answer and stay open (as a
    client's downloads do), then asks once more; the status of that."""
    held = []
    try:
        for _ in range(connections):
            s = tls_connect(port, tls, source)
            held.append(s)
            s.sendall(b"GET /api/v1/snapshots/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while not answer.endswith(b"\r\n\r\n[]\n"):
                answer += s.recv(4096)
        return request(port, tls, "/api/v1/snapshots/", source=source)[0]
    except (ConnectionError, ssl.SSLError, OSError) as e:
        return f"no answer ({e})"
    finally:
        for s in held:
            s.close()


def high_water(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024


def push(port, tls, head, body_chunk, total):
    """Sends head, then body_chunk until total bytes or the agent stops
    reading; the status it answered (None when it only closed), and how
    much it took."""
    s = tls_connect(port, tls, timeout=10)
    s.sendall(head)
    sent = 0
    try:
        while sent < total:
            s.sendall(body_chunk)
            sent += len(body_chunk)
    except (ConnectionError, ssl.SSLError, OSError, socket.timeout):
        pass
    status, _ = read_response(s)
    s.close()
    return status, sent


def big(port, tls, pid):
    mib = 1 << 20
    before = high_water(pid)
    post = "POST /api/v1/snapshots/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"

    # An announced body over 1 MiB is refused from its header alone.
    with tls_connect(port, tls) as s:
        started = time.monotonic()
        s.sendall(f"{post}Content-Length: {200 * mib}\r\n\r\n".encode())
        status, _ = read_response(s)
        print(f"a POST announcing 200 MiB: {status} after {time.monotonic() - started:.1f} s, nothing sent")
        if status != 413:
            fail(f"a POST announcing 200 MiB got {status}, not 413")
    # ... and when the client sends it anyway, it is not read.
    status, sent = push(port, tls, f"{post}Content-Length: {200 * mib}\r\n\r\n".encode(), b" " * mib, 200 * mib)
    print(f"a POST of 200 MiB sent anyway: {status}, {sent // mib} MiB sent before the agent stopped reading")
    if status not in (413, None):
        fail(f"a POST of 200 MiB got {status}")
    # A chunked body has no length to check first: it is cut past the limit.
    chunk = b"100000\r\n" + b" " * mib + b"\r\n"
    status, sent = push(port, tls, f"{post}Transfer-Encoding: chunked\r\n\r\n".encode(), chunk, 64 * mib)
    print(f"a chunked POST of 64 MiB: {status}, {sent // mib} MiB sent before the agent stopped reading")
    if status == 200 or sent >= 64 * mib:
        fail(f"a chunked POST of 64 MiB was read whole ({status})")
    # Request and header lines of any length, and any number of fields.
    status, sent = push(port, tls, b"GET /", b"a" * mib, 64 * mib)
    print(f"a request line of 64 MiB: {status}, {sent // mib} MiB sent before the agent stopped reading")
    if sent >= 64 * mib:
        fail("a request line of 64 MiB was read whole")
    status, sent = push(port, tls, b"GET /api/v1/snapshots/ HTTP/1.1\r\nX-Long: ", b"a" * mib, 64 * mib)
    print(f"a header line of 64 MiB: {status}, {sent // mib} MiB sent before the agent stopped reading")
    if sent >= 64 * mib:
        fail("a header line of 64 MiB was read whole")
    status, sent = push(port, tls, b"GET /api/v1/snapshots/ HTTP/1.1\r\n", b"X-A: b\r\n" * 65536, 16 * mib)
    print(f"2 Mi header fields: {status}, {sent // mib} MiB sent before the agent stopped reading")
    if sent >= 16 * mib:
        fail("2 Mi header fields were read whole")
    fields = "".join(f"X-Field-{i}: {i}\r\n" for i in range(100)).encode()
    status, _ = request(port, tls, "/api/v1/snapshots/", head=fields)
    print(f"100 header fields: {status}")
    if status != 431:
        fail(f"100 header fields got {status}, not 431")
    # A body just under the limit still reaches the API.
    body = b'{"tracked_disk_ids": []}' + b" " * (mib - 100)
    with tls_connect(port, tls) as s:
        s.sendall(f"{post}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        status, answer = read_response(s)
    print(f"a POST of 1 MiB less 76 bytes: {status}")
    if status != 409 or b"no disk is tracked" not in answer:
        fail(f"a body under the limit did not reach the API: {answer[-200:]!r}")

    grown = high_water(pid) - before
    print(f"the agent's VmHWM grew by {grown / mib:.1f} MiB")
    if grown > 16 * mib:
        fail(f"the agent's peak memory grew by {grown / mib:.0f} MiB")


def ranges(port, tls):
    header = "Range: bytes=" + ",".join("0-0" for _ in range(2000))
    assert len(header) > 8000
    status, _ = request(port, tls, "/api/v1/nothing/", head=header[:8150].rsplit(",", 1)[0].encode() + b"\r\n")
    print(f"an 8 KiB Range header: {status}")
    if status != 404:
        fail(f"an 8 KiB Range header got {status}, not the path's 404")


def kill_listener(pid, port):
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    fd = int(re.search(rf"pid={pid},fd=(\d+)", out).group(1))
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    ours = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
    if pidfd < 0 or ours < 0:
        fail(f"cannot reach the agent's listening socket: {os.strerror(ctypes.get_errno())}")
    socket.socket(fileno=ours).shutdown(socket.SHUT_RDWR)
    print(f"shut down the agent's listening socket (its fd {fd})")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "trickled":
        trickled(int(args[0]), args[1], float(args[2]))
    elif command == "crowd":
        crowd(int(args[0]), args[1], int(args[2]))
    elif command == "big":
        big(int(args[0]), args[1], int(args[2]))
    elif command == "ranges":
        ranges(int(args[0]), args[1])
    elif command == "kill-listener":
        kill_listener(int(args[0]), int(args[1]))
    else:
        fail(f"unknown command {command}")
    sys.exit(1 if failed else 0)
