#!/usr/bin/env python3
"""Smoke test of the echo demo: test_echo_server.py PATH/TO/echo_server

Starts the server on a free loopback port, echoes small messages on several
connections at once and 4 MiB on one (more than the server's buffers, so its
drain must hold it back while this side is not reading), then stops it with
SIGTERM and checks that it exits with status 0.
"""
import select
import signal
import socket
import subprocess
import sys
import threading


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def recv_exactly(sock, n):
    out = bytearray()
    while len(out) < n:
        data = sock.recv(min(65536, n - len(out)))
        if not data:
            break
        out += data
    return bytes(out)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    server = subprocess.Popen(
        [sys.argv[1], "--port", "0", "--threads", "2", "--seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        if not ready:
            fail("the server printed no address within 30 s")
        line = server.stdout.readline().decode()
        if not line.startswith("listening on 127.0.0.1:"):
            fail("unexpected first line %r" % line)
        port = int(line.split(":")[1].split()[0])

        conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
        for rnd in range(20):
            for i, c in enumerate(conns):
                c.sendall(b"round %d conn %d\n" % (rnd, i))
            for i, c in enumerate(conns):
                want = b"round %d conn %d\n" % (rnd, i)
                got = recv_exactly(c, len(want))
                if got != want:
                    fail("conn %d round %d: %r" % (i, rnd, got))
        for c in conns:
            c.close()

        # A sender that writes everything before reading anything.
        big = bytes(range(256)) * (4 * 4096)
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        sender = threading.Thread(target=c.sendall, args=(big,))
        sender.start()
        got = recv_exactly(c, len(big))
        sender.join()
        if got != big:
            fail("4 MiB echo: %d bytes back, %s" % (len(got), "equal prefix" if big.startswith(got) else "different"))
        c.close()

        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail("the server did not stop on SIGTERM")
        if rc != 0:
            fail("server exit status %r, stderr:\n%s" % (rc, server.stderr.read().decode()))
        print("ok: echo_server echoed and stopped on SIGTERM")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
