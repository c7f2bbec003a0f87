#!/usr/bin/env python3
"""Test of the fan-out demo: test_fanout_server.py PATH/TO/fanout_server

Starts a redis-server and a PostgreSQL server of its own on free loopback
ports (initdb into a temporary directory, trust authentication, no fsync;
as root both run as the user "postgres", or WEFT_PG_TEST_USER), loads keys
and rows, starts fanout_server with --requests and checks:
  - GET / answers 200 with the Redis value and the PostgreSQL row in one
    JSON object (a value with quotes, a backslash, a newline and UTF-8
    comes back intact), a missing key and a missing row are null, a bad
    query is a 400;
  - 100 requests at once, each for its own key and row, all answer right;
  - a Redis that stops answering (SIGSTOP) gives a 502 that says it timed
    out, within the timeout and not later;
  - a Redis that is gone (killed) gives a 502 that says the connection was
    refused; with PostgreSQL gone too, the 502 names both;
then that the server exits with status 0 by itself after those answers.
Exits 77 (ctest: skipped) with the reason when a server cannot start.
Everything is on 127.0.0.1 and bounded in time.

test_fanout_server.py --wrk SECONDS PATH/TO/fanout_server sets up the same
servers and data, then runs `wrk -t1 -c50 -dSECONDSs --latency` against
GET / of a fanout_server on 2 workers instead of the checks, and prints
wrk's report: the load test of the README, in one command.
"""
import concurrent.futures
import glob
import http.client
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# fanout_server --timeout: longer where the build is slow (ctest sets it
# under ThreadSanitizer, where 100 requests at once on 12 pooled
# connections take seconds to get through).
TIMEOUT_MS = int(os.environ.get("FANOUT_TIMEOUT_MS", "2000"))
CONCURRENT = 100
ROWS = 10
GREETING = 'h\u00e9llo "weft" \\ fan-out\n'  # JSON escaping, UTF-8
# Every answer this test asks for: 1 + 3 + CONCURRENT + 1 + 2 + 1.
ANSWERS = 8 + CONCURRENT
START = time.monotonic()
LIMIT_S = 55 + 3 * (TIMEOUT_MS - 2000) // 1000  # the whole test, servers included


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def skip(msg):
    print("SKIP:", msg)
    sys.exit(77)


def note(msg):
    print("[%5.1fs] %s" % (time.monotonic() - START, msg), flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- Redis ------------------------------------------------------------------

def resp_command(sock, *args):
    """One command in the Redis protocol; returns the reply's first line
    (and a bulk string's bytes)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    buf = b""
    while b"\r\n" not in buf:
        data = sock.recv(4096)
        if not data:
            raise EOFError("redis closed the connection")
        buf += data
    return buf.split(b"\r\n", 1)[0]


def start_redis(tmp):
    exe = shutil.which("redis-server")
    if exe is None:
        skip("no redis-server (Debian: redis-server)")
    port = free_port()
    log = open(os.path.join(tmp, "redis.log"), "wb")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--dir", tmp],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            skip("redis-server exited at once (status %r): see %s/redis.log"
                 % (proc.returncode, tmp))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if resp_command(s, "PING") == b"+PONG":
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    skip("redis-server did not answer PING within 10 s")


# ---- PostgreSQL ---------------------------------------------------------------

def pg_bindir():
    env = os.environ.get("WEFT_PG_BINDIR")
    if env:
        return env
    def version(path):
        return [int(x) for x in re.findall(r"\d+", path)]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return os.path.dirname(found[-1])
    exe = shutil.which("initdb")
    return os.path.dirname(exe) if exe else None


class Postgres:
    def __init__(self, tmp):
        self.bindir = pg_bindir()
        if self.bindir is None:
            skip("no PostgreSQL server binaries (initdb; Debian: postgresql)")
        self.user = None
        if os.geteuid() == 0:
            name = os.environ.get("WEFT_PG_TEST_USER") or "postgres"
            try:
                self.user = pwd.getpwnam(name)
            except KeyError:
                skip('running as root and there is no user "%s" to run PostgreSQL as '
                     "(WEFT_PG_TEST_USER names one)" % name)
        self.dir = os.path.join(tmp, "pg")
        os.mkdir(self.dir, 0o700)
        if self.user is not None:
            os.chown(tmp, self.user.pw_uid, self.user.pw_gid)
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = None
        self.started = False

    def run(self, argv, timeout):
        """Runs argv as the server's user; the exit status (None: too long)."""
        user = self.user

        def demote():
            if user is not None:
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
        env = dict(os.environ)
        if user is not None:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        with open(os.path.join(self.dir, "commands.log"), "ab") as log:
            if user is not None:
                os.chown(log.name, user.pw_uid, user.pw_gid)
            try:
                return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=demote,
                                      cwd=self.dir, env=env, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                return None

    def start(self):
        rc = self.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "weft",
                       "-A", "trust", "-E", "UTF8", "--locale=C", "-N"], 40)
        if rc != 0:
            skip("initdb failed (status %r): see %s/commands.log" % (rc, self.dir))
        self.port = free_port()
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write("\n# the fan-out test's server\nport = %d\n"
                       "listen_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 20\nshared_buffers = 16MB\n" % (self.port, self.dir))
        rc = self.run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log,
                       "-w", "-t", "30", "start"], 40)
        self.started = True  # stopped in any case: pg_ctl may have started it
        if rc != 0:
            skip("pg_ctl start failed (status %r): see %s" % (rc, self.log))

    def conninfo(self):
        return "host=127.0.0.1 port=%d user=weft dbname=postgres" % self.port

    def sql(self, text):
        psql = os.path.join(self.bindir, "psql")
        if not os.path.exists(psql):
            psql = shutil.which("psql")
        if psql is None:
            skip("no psql to load the table with")
        r = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "weft", "-d", "postgres", "-c", text],
                           capture_output=True, timeout=20)
        if r.returncode != 0:
            fail("psql: %s" % r.stderr.decode(errors="replace"))

    def stop(self):
        if self.started:
            self.started = False
            self.run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                      "-w", "-t", "20", "stop"], 25)


# ---- the fan-out server -------------------------------------------------------

def get(port, target, timeout=15):
    """(status, body as text, seconds taken)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", target)
        r = c.getresponse()
        body = r.read().decode()
        return r.status, body, time.monotonic() - t0
    finally:
        c.close()


def get_json(port, target, status=200):
    st, body, took = get(port, target)
    if st != status:
        fail("GET %s: status %d (expected %d): %s" % (target, st, status, body))
    try:
        return json.loads(body), took
    except ValueError:
        fail("GET %s: not JSON: %r" % (target, body))


def expect_502(port, target, words, within):
    """A 502 whose error message holds every one of words, within `within`
    seconds; returns the message."""
    try:
        obj, took = get_json(port, target, status=502)
    except socket.timeout:
        fail("GET %s: no answer (the server hangs)" % target)
    err = obj.get("error", "")
    for w in words:
        if w not in err:
            fail("GET %s: the 502's message %r does not say %r" % (target, err, w))
    if took > within:
        fail("GET %s: the 502 took %.1f s (more than %.1f s)" % (target, took, within))
    note("502 in %.2f s: %s" % (took, err))
    return err


def start_fanout(binary, args):
    """Starts fanout_server with args; (process, port)."""
    server = subprocess.Popen([binary, "--port", "0", "--threads", "2"] + args,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([server.stdout], [], [], 20)
    if not ready:
        server.kill()
        server.wait()
        fail("the server printed no address within 20 s")
    line = server.stdout.readline().decode()
    m = re.match(r"listening on http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        server.kill()
        server.wait()
        fail("unexpected first line %r" % line)
    note("fanout_server on port %s" % m.group(1))
    return server, int(m.group(1))


def load_test(binary, seconds, redis_port, pg):
    """wrk against GET / (the greeting and row 1), SIGTERM, exit status 0."""
    wrk = shutil.which("wrk")
    if wrk is None:
        skip("no wrk (Debian: wrk)")
    server, port = start_fanout(binary, [
        "--redis", "127.0.0.1:%d" % redis_port, "--pg", pg.conninfo(),
        "--timeout", str(TIMEOUT_MS)])
    try:
        obj, _ = get_json(port, "/")
        note("GET / answers %s" % json.dumps(obj))
        cmd = [wrk, "-t1", "-c50", "-d%ds" % seconds, "--latency",
               "http://127.0.0.1:%d/" % port]
        note(" ".join(cmd))
        r = subprocess.run(cmd, capture_output=True, timeout=seconds + 30)
        print(r.stdout.decode(), end="", flush=True)
        if r.returncode != 0:
            fail("wrk: status %d: %s" % (r.returncode, r.stderr.decode()))
        if "Non-2xx" in r.stdout.decode():
            fail("wrk saw answers other than 200")
        server.send_signal(signal.SIGTERM)
        rc = server.wait(timeout=15)
        err = server.stderr.read().decode()
        if rc != 0:
            fail("server exit status %r, stderr:\n%s" % (rc, err))
        note(err.strip())
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def main():
    args = sys.argv[1:]
    wrk_seconds = None
    if len(args) == 3 and args[0] == "--wrk" and args[1].isdigit():
        wrk_seconds = int(args[1])
        args = args[2:]
    if len(args) != 1 or (wrk_seconds is not None and not 1 <= wrk_seconds <= 30):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    binary = args[0]
    # Nothing may outlast the limit, whatever hangs.
    killer = threading.Timer(LIMIT_S, lambda: (print("FAIL: over %d s" % LIMIT_S,
                                                     file=sys.stderr, flush=True),
                                               os.kill(os.getpid(), signal.SIGTERM)))
    killer.daemon = True
    killer.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    tmp = tempfile.mkdtemp(prefix="weft-fanout-")
    os.chmod(tmp, 0o755)
    redis = server = None
    pg = None
    try:
        redis, redis_port = start_redis(tmp)
        note("redis-server on port %d" % redis_port)
        pg = Postgres(tmp)
        pg.start()
        note("PostgreSQL on port %d" % pg.port)

        with socket.create_connection(("127.0.0.1", redis_port), timeout=5) as s:
            if resp_command(s, "SET", "fanout:greeting", GREETING.encode()) != b"+OK":
                fail("redis SET refused")
            for i in range(1, ROWS + 1):
                resp_command(s, "SET", "fanout:k%d" % i, "value %d" % i)
        pg.sql("CREATE TABLE fanout (id int PRIMARY KEY, name text NOT NULL);"
               "INSERT INTO fanout SELECT i, 'row ' || i FROM generate_series(1, %d) i;"
               "UPDATE fanout SET name = 'the first row' WHERE id = 1" % ROWS)

        if wrk_seconds is not None:
            load_test(binary, wrk_seconds, redis_port, pg)
            return
        server, port = start_fanout(binary, [
            "--requests", str(ANSWERS), "--redis", "127.0.0.1:%d" % redis_port,
            "--pg", pg.conninfo(), "--redis-conns", "8", "--pg-conns", "4",
            "--timeout", str(TIMEOUT_MS)])

        # 1: the defaults: fanout:greeting and row 1.
        obj, _ = get_json(port, "/")
        want = {"key": "fanout:greeting", "redis": GREETING, "id": 1, "pg": "the first row"}
        if obj != want:
            fail("GET /: %r, expected %r" % (obj, want))
        # 2-4: a missing key, a missing row, a bad query.
        obj, _ = get_json(port, "/?id=2&key=fanout:none")
        if obj != {"key": "fanout:none", "redis": None, "id": 2, "pg": "row 2"}:
            fail("GET /?id=2&key=fanout:none: %r" % obj)
        obj, _ = get_json(port, "/?id=999&key=fanout:k3")
        if obj != {"key": "fanout:k3", "redis": "value 3", "id": 999, "pg": None}:
            fail("GET /?id=999&key=fanout:k3: %r" % obj)
        st, _, _ = get(port, "/?id=x")
        if st != 400:
            fail("GET /?id=x: status %d, expected 400" % st)
        note("GET / and its variants answer right")

        # 5..104: all at once, each its own key and row.
        barrier = threading.Barrier(CONCURRENT)

        def one(i):
            n = i % ROWS + 1
            barrier.wait(timeout=20)
            obj, _ = get_json(port, "/?id=%d&key=fanout:k%d" % (n, n))
            want = {"key": "fanout:k%d" % n, "redis": "value %d" % n, "id": n,
                    "pg": "the first row" if n == 1 else "row %d" % n}
            if obj != want:
                raise AssertionError("request %d: %r, expected %r" % (i, obj, want))
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as ex:
            futures = [ex.submit(one, i) for i in range(CONCURRENT)]
            for f in futures:
                try:
                    f.result(timeout=30)
                except SystemExit:
                    raise
                except Exception as e:  # noqa: BLE001 (any failure is the test's)
                    fail("concurrent requests: %s" % e)
        note("%d concurrent requests answered right in %.2f s"
             % (CONCURRENT, time.monotonic() - t0))

        # 105: Redis stops answering: its part times out.
        redis.send_signal(signal.SIGSTOP)
        expect_502(port, "/", ["redis:", "timed out"], TIMEOUT_MS / 1000 + 3)
        # 106, 107: Redis is gone: the pooled connections are found dead,
        # a new one is refused.
        redis.kill()
        redis.wait()
        for _ in range(2):
            expect_502(port, "/", ["redis: connect to 127.0.0.1:%d" % redis_port, "refused"],
                       TIMEOUT_MS / 1000 + 3)
        # 108: PostgreSQL is gone too: the 502 names both.
        pg.stop()
        expect_502(port, "/", ["redis:", "pg:"], TIMEOUT_MS / 1000 + 3)

        try:
            rc = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            fail("the server did not stop after %d answers" % ANSWERS)
        err = server.stderr.read().decode()
        if rc != 0 or ("stopped after %d answers" % ANSWERS) not in err:
            fail("server exit status %r, stderr:\n%s" % (rc, err))
        note("ok: fanout_server answered %d requests and stopped" % ANSWERS)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        if redis is not None and redis.poll() is None:
            redis.kill()
            redis.wait()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
