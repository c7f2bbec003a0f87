#!/usr/bin/env python3
"""Smoke test of the HTTP demo: test_http_server.py PATH/TO/http_server

Starts the server on a free loopback port with --requests, so that it stops
by itself after the answers this test asks for, and checks: a 200 "Hello,
World!" through urllib, two requests on one kept-alive connection, two
pipelined in one write, a Content-Length body echoed, 400 then close on
garbage, close after "Connection: close", 413 then close on a body over the
bound; then that the server exits with status 0 on its own.
"""
import select
import socket
import subprocess
import sys
import time
import urllib.request

ANSWERS = 9  # every answer this test asks for, rejections included
HELLO = b"Hello, World!"


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


class Conn:
    """A raw HTTP/1.1 client connection that reads answers one by one."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def answer(self):
        """(status, headers with lower-case names, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1":
            fail("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(parts[1]), headers, body

    def closed_by_peer(self):
        """True when the server closes the connection (within 10 s)."""
        try:
            while True:
                self._fill()
        except EOFError:
            return True
        except (socket.timeout, ConnectionResetError):
            return False

    def close(self):
        self.sock.close()


def expect_hello(what, answer):
    status, headers, body = answer
    if status != 200 or body != HELLO or headers.get("content-type") != "text/plain":
        fail("%s: got %r %r %r" % (what, status, headers, body))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    server = subprocess.Popen(
        [sys.argv[1], "--port", "0", "--threads", "2", "--requests", str(ANSWERS),
         "--seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        if not ready:
            fail("the server printed no address within 30 s")
        line = server.stdout.readline().decode()
        if not line.startswith("listening on http://127.0.0.1:"):
            fail("unexpected first line %r" % line)
        port = int(line.split(":")[2].split("/")[0])
        base = "http://127.0.0.1:%d" % port

        # 1: urllib (any proxy of the environment bypassed).
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(base + "/", timeout=10) as r:
            ctype = r.headers.get("Content-Type")
            if r.status != 200 or ctype != "text/plain" or r.read() != HELLO:
                fail("GET / through urllib: %r %r" % (r.status, ctype))

        # 2, 3: keep-alive: the second request goes on the same connection
        # after the first answer.
        c = Conn(port)
        req = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
        c.send(req)
        expect_hello("first keep-alive request", c.answer())
        c.send(req)
        expect_hello("second keep-alive request", c.answer())

        # 4, 5: pipelined: two requests in one write, two answers in order.
        c.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
               b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nping")
        expect_hello("first pipelined request", c.answer())
        status, _, body = c.answer()
        if status != 200 or body != b"ping":
            fail("POST /echo pipelined: %r %r" % (status, body))

        # 6: Connection: close is answered, then the server closes.
        c.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        status, headers, body = c.answer()
        expect_hello("Connection: close request", (status, headers, body))
        if headers.get("connection") != "close" or not c.closed_by_peer():
            fail("the connection stayed open after Connection: close")
        c.close()

        # 7: garbage gets 400, then the server closes.
        c = Conn(port)
        c.send(b"this is not HTTP\r\n\r\n")
        status, _, _ = c.answer()
        if status != 400 or not c.closed_by_peer():
            fail("garbage: status %r, or the connection stayed open" % status)
        c.close()

        # 8: a declared body over the bound: 413 before it is sent.
        c = Conn(port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\n")
        status, _, _ = c.answer()
        if status != 413 or not c.closed_by_peer():
            fail("oversized body: status %r, or the connection stayed open" % status)
        c.close()

        # 9: a last request; then the server has answered ANSWERS times and
        # stops by itself.
        c = Conn(port)
        c.send(req)
        expect_hello("last request", c.answer())
        c.close()
        try:
            rc = server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail("the server did not stop after %d answers" % ANSWERS)
        err = server.stderr.read().decode()
        if rc != 0 or ("stopped after %d answers" % ANSWERS) not in err:
            fail("server exit status %r, stderr:\n%s" % (rc, err))
        print("ok: http_server answered %d requests and stopped" % ANSWERS)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
