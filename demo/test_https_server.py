#!/usr/bin/env python3
"""Smoke test of the HTTP demo over TLS: test_https_server.py PATH/TO/http_server

Makes a CA and a certificate for 127.0.0.1 and localhost with the openssl
command in a temporary directory, starts the server with --cert and --key
on a free loopback port (--requests, so that it stops by itself), and
checks: a 200 "Hello, World!" through urllib verifying the certificate
against the CA, two requests on one kept-alive TLS connection, a body
echoed, curl (if installed) with --cacert, and that a client that does
not trust the CA is refused; then that the server exits with status 0.
"""
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request

HELLO = b"Hello, World!"


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def make_certs(d):
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=weft-demo-ca",
        "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=keyCertSign,cRLSign")
    run("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")


def request(tls, port, raw):
    """Sends raw on a new TLS connection and returns what comes back until
    the server closes or stops answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with tls.wrap_socket(s, server_hostname="127.0.0.1") as t:
            t.sendall(raw)
            data = b""
            while data.count(HELLO) < raw.count(b"GET /") or b"ping" in raw and b"ping" not in data:
                chunk = t.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    if shutil.which("openssl") is None:
        print("skipped: no openssl command")
        return
    d = tempfile.mkdtemp(prefix="weft-https-")
    try:
        make_certs(d)
        curl = shutil.which("curl")
        answers = 4 + (1 if curl else 0)
        server = subprocess.Popen(
            [sys.argv[1], "--port", "0", "--threads", "2", "--requests", str(answers),
             "--seconds", "60", "--cert", os.path.join(d, "server.pem"),
             "--key", os.path.join(d, "server.key")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            ready, _, _ = select.select([server.stdout], [], [], 30)
            if not ready:
                fail("the server printed no address within 30 s")
            line = server.stdout.readline().decode()
            if not line.startswith("listening on https://127.0.0.1:"):
                fail("unexpected first line %r" % line)
            port = int(line.split(":")[2].split("/")[0])
            base = "https://127.0.0.1:%d" % port
            tls = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))

            # 1: urllib, the certificate verified against the CA.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                 urllib.request.HTTPSHandler(context=tls))
            with opener.open(base + "/", timeout=10) as r:
                if r.status != 200 or r.read() != HELLO:
                    fail("GET / through urllib: %r" % r.status)

            # A client that does not trust the CA is refused (no answer
            # counted).
            try:
                request(ssl.create_default_context(), port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                fail("a client without the CA was not refused")
            except ssl.SSLCertVerificationError:
                pass

            # 2, 3, 4: keep-alive and pipelining over one TLS connection.
            got = request(tls, port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                          b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                          b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nping")
            if got.count(HELLO) != 2 or not got.endswith(b"ping"):
                fail("pipelined requests over TLS: %r" % got)

            # 5: curl, verifying with the CA.
            if curl:
                out = subprocess.run([curl, "-sS", "--max-time", "10", "--cacert",
                                      os.path.join(d, "ca.pem"), base + "/"],
                                     capture_output=True, timeout=30)
                if out.returncode != 0 or out.stdout != HELLO:
                    fail("curl: %r %r" % (out.returncode, out.stderr))

            try:
                code = server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                fail("the server did not stop after its answers")
            if code != 0:
                fail("the server exited with status %d: %s" % (code, server.stderr.read().decode()))
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
