/*
 * TLS streams: echo between a weft server and weft clients (lines, large
 * blocks both ways, concurrent connections on two workers, a reader and
 * a writer of one stream on different workers), interop with `openssl
 * s_server` and `openssl s_client` both ways, a peer that speaks
 * something else, a handshake that never ends (either side), expired,
 * wrong-host and unknown-CA certificates, close_notify both ways,
 * write_eof refused (no half-close), a peer that never answers the
 * close, bad arguments.
 *
 * Each test makes its own CA and certificates with the openssl command in
 * a temporary directory. Everything runs on the loopback; time only bounds
 * a hang. Built without TLS, the suite checks that the calls say WF_ENOSYS
 * and skips.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <sys/wait.h>

#include "io_test.h"
#include "rt_check.h"
#include "weft.h"

/* ---- certificates ---------------------------------------------------------- */

static char dir[256];

/* A path in the test's directory (a static buffer per call site). */
#define PATHOF(name) path_in(name, (char[512]){0})
static const char *path_in(const char *name, char *buf)
{
	snprintf(buf, 512, "%s/%s", dir, name);
	return buf;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ca.pem (trusted), good.pem (localhost and 127.0.0.1), expired.pem,
 * wronghost.pem (other.example), rogue.pem (signed by an untrusted CA),
 * all with leaf.key. */
static void make_certs(void)
{
	if (!wf_tls_available()) {
		wf_tls_ctx *c = (wf_tls_ctx *)1;
		cr_assert_eq(wf_tls_ctx_new_client(NULL, &c, NULL), WF_ENOSYS);
		cr_assert_null(c);
		cr_assert_eq(wf_tls_last_error(NULL, NULL, 0), WF_ENOSYS);
		cr_skip_test("weft was built without TLS (cmake -DWEFT_TLS=OFF or no OpenSSL)");
	}
	if (sh("command -v openssl >/dev/null 2>&1") != 0)
		cr_skip_test("no openssl command to make certificates with");
	snprintf(dir, sizeof(dir), "/tmp/weft-tls-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
	int rc = sh("cd %s && exec >log 2>&1 && "
		    "openssl req -x509 %s -keyout ca.key -out ca.pem -subj /CN=weft-test-ca -days 2 "
		    "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign && "
		    "openssl req -x509 %s -keyout rogue-ca.key -out rogue-ca.pem -subj /CN=rogue-ca -days 2 "
		    "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign && "
		    "openssl req %s -keyout leaf.key -out leaf.csr -subj /CN=localhost && "
		    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ok.ext && "
		    "printf 'subjectAltName=DNS:other.example\\n' > other.ext && "
		    "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ok.ext -out good.pem && "
		    "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days -1 -extfile ok.ext -out expired.pem && "
		    "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile other.ext -out wronghost.pem && "
		    "openssl x509 -req -in leaf.csr -CA rogue-ca.pem -CAkey rogue-ca.key -CAcreateserial -days 2 -extfile ok.ext -out rogue.pem",
		    dir, key, key, key);
	if (rc != 0)
		sh("cat %s/log >&2", dir);
	cr_assert_eq(rc, 0, "making the certificates failed");
}

static void drop_certs(void)
{
	if (dir[0] != '\0')
		sh("rm -rf %s", dir);
}

TestSuite(io_tls, .init = make_certs, .fini = drop_certs);

static wf_tls_ctx *server_ctx(const char *cert, uint32_t handshake_ms)
{
	wf_tls_opts o = WF_TLS_OPTS_INIT;
	o.cert_file = PATHOF(cert);
	o.key_file = PATHOF("leaf.key");
	o.handshake_timeout_ms = handshake_ms;
	wf_tls_ctx *c = NULL;
	char *why = NULL;
	int rc = wf_tls_ctx_new_server(&o, &c, &why);
	CHECK(rc == 0 || (fprintf(stderr, "server ctx: %s\n", why ? why : "?"), 0));
	free(why);
	return c;
}

static wf_tls_ctx *client_ctx(bool no_verify, bool no_host, uint32_t shutdown_ms)
{
	wf_tls_opts o = WF_TLS_OPTS_INIT;
	o.ca_file = PATHOF("ca.pem");
	o.no_verify = no_verify;
	o.no_hostname_check = no_host;
	o.shutdown_timeout_ms = shutdown_ms;
	wf_tls_ctx *c = NULL;
	CHECK_RC(wf_tls_ctx_new_client(&o, &c, NULL), 0);
	return c;
}

static uint64_t ms_since(uint64_t t0) { return (mono_ns() - t0) / 1000000; }

/* ---- handlers ---------------------------------------------------------------- */

static int handled;

/* Echoes until the end of the stream. */
static void echo_handler(wf_stream *s, void *arg)
{
	(void)arg;
	__atomic_fetch_add(&handled, 1, __ATOMIC_RELAXED);
	char buf[8192];
	for (;;) {
		ssize_t n = wf_stream_read(s, buf, sizeof(buf), 30000);
		if (n <= 0)
			break;
		if (wf_stream_write(s, buf, (size_t)n) != 0 || wf_stream_drain(s, 30000) != 0)
			break;
	}
}

/* ---- echo ---------------------------------------------------------------------- */

struct client {
	unsigned port;
	int id;
	const char *name;
};

static void *echo_client(void *arg)
{
	struct client *c = arg;
	wf_tls_ctx *ctx = client_ctx(false, false, 0);
	wf_stream *s;
	char *why = NULL;
	int rc = wf_open_tls_connection("127.0.0.1", c->port, ctx, c->name, 10000, &s, &why);
	wf_tls_ctx_free(ctx); /* the stream keeps its own reference */
	if (!CHECK_RC(rc, 0)) {
		fprintf(stderr, "connect: %s\n", why ? why : "?");
		free(why);
		return NULL;
	}
	char ver[32];
	CHECK(wf_tls_version(s, ver, sizeof(ver)) > 0 && strcmp(ver, "TLSv1.3") == 0);
	/* Many lines, then a block larger than a record and than the
	 * buffers, both ways. */
	char line[128], back[128];
	for (int i = 0; i < 300 && !check_any_failed(); i += 6) {
		/* six lines in flight, then their echoes */
		for (int k = i; k < i + 6; k++) {
			int n = snprintf(line, sizeof(line), "client %d line %d %s\n", c->id, k, "xxxxxxxxxxxxxxxx" + (k % 16));
			CHECK_RC(wf_stream_write(s, line, (size_t)n), 0);
		}
		for (int k = i; k < i + 6; k++) {
			ssize_t m = wf_stream_readline(s, back, sizeof(back), 10000);
			int want = snprintf(line, sizeof(line), "client %d line %d %s\n", c->id, k, "xxxxxxxxxxxxxxxx" + (k % 16));
			CHECK(m == want && memcmp(back, line, (size_t)want) == 0);
		}
	}
	size_t big = 300 * 1000;
	unsigned char *out = malloc(big), *in = malloc(big);
	for (size_t k = 0; k < big; k++)
		out[k] = pat(k, (uint32_t)c->id);
	CHECK_RC(wf_stream_write(s, out, big), 0);
	size_t got = 0;
	CHECK_RC(wf_stream_readexactly(s, in, big, &got, 20000), 0);
	CHECK(got == big && memcmp(in, out, big) == 0);
	free(out);
	free(in);
	CHECK_RC(wf_stream_close(s, 5000), 0);
	return NULL;
}

static void *echo_main(void *arg)
{
	(void)arg;
	wf_tls_ctx *sctx = server_ctx("good.pem", 0);
	wf_server *srv;
	CHECK_RC(wf_start_tls_server("127.0.0.1", 0, sctx, echo_handler, NULL, NULL, &srv), 0);
	wf_tls_ctx_free(sctx); /* the server keeps its own */
	enum { N = 8 };
	struct client cl[N];
	wf_task *t[N];
	for (int i = 0; i < N; i++) {
		cl[i] = (struct client){.port = (unsigned)wf_server_port(srv), .id = i,
					.name = i % 2 ? "localhost" : NULL};
		t[i] = wf_spawn(echo_client, &cl[i]);
	}
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_join(t[i], NULL), 0);
	CHECK(__atomic_load_n(&handled, __ATOMIC_RELAXED) == N);
	wf_server_close(srv);
	CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
	return NULL;
}

Test(io_tls, echo_many_connections_two_workers, .timeout = 120)
{
	run_weft(2, echo_main, NULL);
}

/* One stream, a writer task and a reader task on two workers at once: the
 * OpenSSL connection is shared under the stream's lock. */
struct duplex {
	wf_stream *s;
	size_t n;
};

static void *duplex_writer(void *arg)
{
	struct duplex *d = arg;
	wf_move_to_worker(1);
	unsigned char chunk[1000];
	for (size_t off = 0; off < d->n && !check_any_failed(); off += sizeof(chunk)) {
		for (size_t k = 0; k < sizeof(chunk); k++)
			chunk[k] = pat(off + k, 9);
		CHECK_RC(wf_stream_write(d->s, chunk, sizeof(chunk)), 0);
		CHECK_RC(wf_stream_drain(d->s, 20000), 0);
	}
	return NULL;
}

static void *duplex_main(void *arg)
{
	(void)arg;
	wf_tls_ctx *sctx = server_ctx("good.pem", 0);
	wf_server *srv;
	CHECK_RC(wf_start_tls_server("127.0.0.1", 0, sctx, echo_handler, NULL, NULL, &srv), 0);
	wf_tls_ctx_free(sctx);
	wf_tls_ctx *ctx = client_ctx(false, false, 0);
	struct duplex d = {.n = 2000 * 1000};
	CHECK_RC(wf_open_tls_connection("localhost", (unsigned)wf_server_port(srv), ctx, NULL, 10000, &d.s, NULL), 0);
	wf_move_to_worker(0);
	wf_task *w = wf_spawn(duplex_writer, &d);
	unsigned char buf[4096];
	size_t got = 0;
	while (got < d.n && !check_any_failed()) {
		ssize_t n = wf_stream_read(d.s, buf, sizeof(buf), 20000);
		if (!CHECK(n > 0))
			break;
		for (ssize_t k = 0; k < n; k++)
			if (buf[k] != pat(got + (size_t)k, 9)) {
				CHECK(!"echo differs");
				break;
			}
		got += (size_t)n;
	}
	CHECK_RC(wf_join(w, NULL), 0);
	CHECK_RC(wf_stream_close(d.s, 5000), 0);
	wf_tls_ctx_free(ctx);
	wf_server_close(srv);
	CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
	return NULL;
}

Test(io_tls, reader_and_writer_on_two_workers, .timeout = 120)
{
	run_weft(2, duplex_main, NULL);
}

/* ---- openssl s_server and s_client --------------------------------------------- */

static unsigned free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	return ntohs(a.sin_port);
}

static void *s_server_main(void *arg)
{
	(void)arg;
	unsigned port = free_port();
	char accept_arg[32];
	snprintf(accept_arg, sizeof(accept_arg), "127.0.0.1:%u", port);
	const char *argv[] = {"openssl", "s_server", "-accept", accept_arg, "-cert", PATHOF("good.pem"),
			      "-key", PATHOF("leaf.key"), "-naccept", "1", "-rev", NULL};
	wf_process_opts po = WF_PROCESS_OPTS_INIT;
	po.stdin_mode = WF_DEVNULL;
	po.stdout_mode = WF_PIPE;
	po.stderr_mode = WF_STDOUT;
	wf_process *p;
	if (!CHECK_RC(wf_process_exec("openssl", argv, &po, &p), 0))
		return NULL;
	char line[256];
	bool ready = false;
	while (!ready) {
		ssize_t n = wf_stream_readline(wf_process_stdout(p), line, sizeof(line), 10000);
		if (!CHECK(n > 0))
			break;
		ready = strncmp(line, "ACCEPT", 6) == 0;
	}
	wf_tls_ctx *ctx = client_ctx(false, false, 0);
	wf_stream *s;
	char *why = NULL;
	int rc = wf_open_tls_connection("localhost", port, ctx, NULL, 10000, &s, &why);
	if (CHECK_RC(rc, 0)) {
		CHECK_RC(wf_stream_write(s, "hello weft\n", 11), 0);
		ssize_t n = wf_stream_readline(s, line, sizeof(line), 10000);
		CHECK(n == 11 && memcmp(line, "tfew olleh\n", 11) == 0);
		CHECK_RC(wf_stream_close(s, 5000), 0);
	} else {
		fprintf(stderr, "s_server: %s\n", why ? why : "?");
	}
	free(why);
	wf_tls_ctx_free(ctx);
	int code = 0;
	if (wf_process_wait(p, 10000, &code) != 0)
		wf_process_kill(p);
	wf_process_free(p);
	return NULL;
}

Test(io_tls, client_against_openssl_s_server, .timeout = 60)
{
	run_weft(2, s_server_main, NULL);
}

/* Reads a line, answers it in capitals, returns (the close sends
 * close_notify). */
static void upper_handler(wf_stream *s, void *arg)
{
	(void)arg;
	char line[256];
	ssize_t n = wf_stream_readline(s, line, sizeof(line), 10000);
	if (n <= 0)
		return;
	for (ssize_t k = 0; k < n; k++)
		if (line[k] >= 'a' && line[k] <= 'z')
			line[k] = (char)(line[k] - 'a' + 'A');
	wf_stream_write(s, line, (size_t)n);
}

static void *s_client_main(void *arg)
{
	(void)arg;
	wf_tls_ctx *sctx = server_ctx("good.pem", 0);
	wf_server *srv;
	CHECK_RC(wf_start_tls_server("127.0.0.1", 0, sctx, upper_handler, NULL, NULL, &srv), 0);
	wf_tls_ctx_free(sctx);
	char connect_arg[32];
	snprintf(connect_arg, sizeof(connect_arg), "127.0.0.1:%d", wf_server_port(srv));
	const char *argv[] = {"openssl", "s_client", "-connect", connect_arg, "-servername", "localhost",
			      "-verify_hostname", "localhost", "-CAfile", PATHOF("ca.pem"),
			      "-verify_return_error", "-quiet", NULL};
	wf_process_opts po = WF_PROCESS_OPTS_INIT;
	po.stdin_mode = WF_PIPE;
	po.stdout_mode = WF_PIPE;
	po.stderr_mode = WF_DEVNULL;
	wf_process *p;
	if (CHECK_RC(wf_process_exec("openssl", argv, &po, &p), 0)) {
		void *out = NULL;
		size_t outlen = 0;
		int rc = wf_process_communicate(p, "ping from s_client\n", 19, &out, &outlen, NULL, NULL, 20000);
		CHECK_RC(rc, 0);
		CHECK(out != NULL && strstr(out, "PING FROM S_CLIENT\n") != NULL);
		free(out);
		int code = -1;
		CHECK_RC(wf_process_wait(p, 10000, &code), 0);
		CHECK(code == 0);
		wf_process_free(p);
	}
	wf_server_close(srv);
	CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
	return NULL;
}

Test(io_tls, server_against_openssl_s_client, .timeout = 60)
{
	run_weft(2, s_client_main, NULL);
}

/* ---- peers that are not TLS ------------------------------------------------------ */

static void garbage_handler(wf_stream *s, void *arg)
{
	(void)arg;
	const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
	wf_stream_write(s, msg, sizeof(msg) - 1);
}

/* Takes whatever comes, answers nothing, until the end. */
static void silent_handler(wf_stream *s, void *arg)
{
	(void)arg;
	char buf[512];
	while (wf_stream_read(s, buf, sizeof(buf), 10000) > 0)
		;
}

static void *not_tls_main(void *arg)
{
	(void)arg;
	wf_tls_ctx *ctx = client_ctx(false, false, 0);
	wf_server *g, *q;
	CHECK_RC(wf_start_server("127.0.0.1", 0, garbage_handler, NULL, NULL, &g), 0);
	CHECK_RC(wf_start_server("127.0.0.1", 0, silent_handler, NULL, NULL, &q), 0);
	wf_stream *s = NULL;
	char *why = NULL;
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_open_tls_connection("127.0.0.1", (unsigned)wf_server_port(g), ctx, NULL, 5000, &s, &why), WF_ETLS);
	CHECK(why != NULL && why[0] != '\0');
	CHECK(ms_since(t0) < 3000);
	free(why);
	/* A server that never answers the hello: the call's timeout. */
	t0 = mono_ns();
	CHECK_RC(wf_open_tls_connection("127.0.0.1", (unsigned)wf_server_port(q), ctx, NULL, 300, &s, &why), WF_ETIMEDOUT);
	uint64_t took = ms_since(t0);
	CHECK(took >= 250 && took < 3000);
	CHECK(why != NULL && strstr(why, "in time") != NULL);
	free(why);
	wf_tls_ctx_free(ctx);
	wf_server_close(g);
	wf_server_close(q);
	wf_server_close_clients(q);
	CHECK_RC(wf_server_wait_closed(g, 10000), 0);
	CHECK_RC(wf_server_wait_closed(q, 10000), 0);
	return NULL;
}

Test(io_tls, client_refuses_garbage_and_times_out, .timeout = 60)
{
	run_weft(2, not_tls_main, NULL);
}

/* The server's side: a client that sends garbage, one that sends nothing.
 * Neither reaches the handler; both are closed, the silent one once the
 * handshake timeout passes. */
static void *server_not_tls_main(void *arg)
{
	(void)arg;
	__atomic_store_n(&handled, 0, __ATOMIC_RELAXED);
	wf_tls_ctx *sctx = server_ctx("good.pem", 300);
	wf_server *srv;
	CHECK_RC(wf_start_tls_server("127.0.0.1", 0, sctx, echo_handler, NULL, NULL, &srv), 0);
	wf_tls_ctx_free(sctx);
	unsigned port = (unsigned)wf_server_port(srv);
	wf_stream *s;
	char buf[256];
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_open_connection("127.0.0.1", port, 5000, &s), 0);
	CHECK_RC(wf_stream_write(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 0);
	ssize_t n;
	do /* an alert, maybe, then the end */
		n = wf_stream_read(s, buf, sizeof(buf), 5000);
	while (n > 0);
	CHECK(n == 0 || n == -ECONNRESET);
	CHECK(ms_since(t0) < 2000);
	wf_stream_close(s, 1000);

	t0 = mono_ns();
	CHECK_RC(wf_open_connection("127.0.0.1", port, 5000, &s), 0);
	n = wf_stream_read(s, buf, sizeof(buf), 5000);
	uint64_t took = ms_since(t0);
	CHECK(n == 0 || n == -ECONNRESET);
	CHECK(took >= 250 && took < 3000);
	wf_stream_close(s, 1000);

	CHECK(__atomic_load_n(&handled, __ATOMIC_RELAXED) == 0);
	wf_server_close(srv);
	CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
	return NULL;
}

Test(io_tls, server_drops_garbage_and_silent_clients, .timeout = 60)
{
	run_weft(2, server_not_tls_main, NULL);
}

/* ---- certificates refused ---------------------------------------------------------- */

static void *cert_main(void *arg)
{
	(void)arg;
	struct {
		const char *cert, *name;
		bool no_verify, no_host;
		int want;
		const char *words;
	} cases[] = {
		{"expired.pem", NULL, false, false, WF_ECERT, "expired"},
		{"wronghost.pem", NULL, false, false, WF_ECERT, "mismatch"},
		{"wronghost.pem", "localhost", false, false, WF_ECERT, "mismatch"},
		{"good.pem", "other.example", false, false, WF_ECERT, "mismatch"},
		{"rogue.pem", NULL, false, false, WF_ECERT, "issuer"},
		/* Turned off explicitly, they pass. */
		{"expired.pem", NULL, true, false, 0, NULL},
		{"rogue.pem", "localhost", true, false, 0, NULL},
		{"wronghost.pem", "localhost", false, true, 0, NULL},
		{"good.pem", "localhost", false, false, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		wf_tls_ctx *sctx = server_ctx(cases[i].cert, 0);
		wf_server *srv;
		CHECK_RC(wf_start_tls_server("127.0.0.1", 0, sctx, echo_handler, NULL, NULL, &srv), 0);
		wf_tls_ctx_free(sctx);
		wf_tls_ctx *ctx = client_ctx(cases[i].no_verify, cases[i].no_host, 0);
		wf_stream *s;
		char *why = NULL;
		int rc = wf_open_tls_connection("127.0.0.1", (unsigned)wf_server_port(srv), ctx, cases[i].name,
						5000, &s, &why);
		if (!CHECK_RC(rc, cases[i].want))
			fprintf(stderr, "case %zu: %s\n", i, why ? why : "(no message)");
		if (cases[i].words != NULL && !CHECK(why != NULL && strstr(why, cases[i].words) != NULL))
			fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i, why ? why : "", cases[i].words);
		free(why);
		if (rc == 0) {
			char line[16];
			CHECK_RC(wf_stream_write(s, "ok\n", 3), 0);
			CHECK(wf_stream_readline(s, line, sizeof(line), 5000) == 3);
			CHECK_RC(wf_stream_close(s, 5000), 0);
		}
		wf_tls_ctx_free(ctx);
		wf_server_close(srv);
		CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
	}
	return NULL;
}

Test(io_tls, certificates_refused_with_clear_codes, .timeout = 60)
{
	run_weft(2, cert_main, NULL);
}

/* ---- closing ------------------------------------------------------------------------ */

static void bye_handler(wf_stream *s, void *arg)
{
	(void)arg;
	char line[64];
	if (wf_stream_readline(s, line, sizeof(line), 5000) <= 0)
		return;
	wf_stream_write(s, "bye\n", 4);
	/* Returning closes: close_notify, then the client's. */
}

static size_t late_total;

/* Reads to the end (the client's close_notify), answers (the client
 * drops it: it has sent its close_notify), and when asked, then holds
 * the connection without a word. */
static void late_handler(wf_stream *s, void *arg)
{
	bool hold = arg != NULL;
	char buf[256];
	size_t total = 0;
	ssize_t n;
	while ((n = wf_stream_read(s, buf, sizeof(buf), 5000)) > 0)
		total += (size_t)n;
	char last[256] = "";
	wf_tls_last_error(s, last, sizeof(last));
	if (n == 0 && strstr(last, "closed the TLS session") != NULL) {
		if (!hold)
			__atomic_store_n(&late_total, total, __ATOMIC_RELEASE);
		char msg[64];
		int len = snprintf(msg, sizeof(msg), "got %zu\n", total);
		wf_stream_write(s, msg, (size_t)len);
		wf_stream_drain(s, 5000);
	}
	if (hold)
		wf_sleep(3000);
}

static void *close_main(void *arg)
{
	(void)arg;
	wf_tls_ctx *sctx = server_ctx("good.pem", 0);
	wf_server *bye, *late, *hold;
	CHECK_RC(wf_start_tls_server("127.0.0.1", 0, sctx, bye_handler, NULL, NULL, &bye), 0);
	CHECK_RC(wf_start_tls_server("127.0.0.1", 0, sctx, late_handler, NULL, NULL, &late), 0);
	CHECK_RC(wf_start_tls_server("127.0.0.1", 0, sctx, late_handler, (void *)1, NULL, &hold), 0);
	wf_tls_ctx_free(sctx);
	wf_tls_ctx *ctx = client_ctx(false, false, 400);
	char line[64], last[256];

	/* The server closes: its close_notify ends our stream cleanly. */
	wf_stream *s;
	CHECK_RC(wf_open_tls_connection("127.0.0.1", (unsigned)wf_server_port(bye), ctx, NULL, 5000, &s, NULL), 0);
	CHECK_RC(wf_stream_write(s, "hi\n", 3), 0);
	CHECK(wf_stream_readline(s, line, sizeof(line), 5000) == 4);
	CHECK(wf_stream_readline(s, line, sizeof(line), 5000) == 0);
	CHECK(wf_stream_at_eof(s));
	CHECK(wf_tls_last_error(s, last, sizeof(last)) > 0 && strstr(last, "closed the TLS session") != NULL);
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_stream_close(s, 5000), 0);
	CHECK(ms_since(t0) < 300);

	/* No half-close: write_eof changes nothing. Our close sends
	 * close_notify (the server sees a clean end after the 5 bytes) and
	 * waits for the server's, which comes at once. */
	CHECK_RC(wf_open_tls_connection("127.0.0.1", (unsigned)wf_server_port(late), ctx, NULL, 5000, &s, NULL), 0);
	CHECK_RC(wf_stream_write(s, "12345", 5), 0);
	CHECK_RC(wf_stream_write_eof(s, 5000), WF_ENOSYS);
	CHECK_RC(wf_stream_write(s, "678", 3), 0);
	t0 = mono_ns();
	CHECK_RC(wf_stream_close(s, 5000), 0);
	CHECK(ms_since(t0) < 300);
	for (int i = 0; i < 500 && __atomic_load_n(&late_total, __ATOMIC_ACQUIRE) == 0; i++)
		wf_sleep(10);
	CHECK(__atomic_load_n(&late_total, __ATOMIC_ACQUIRE) == 8);

	/* Our close: close_notify sent, the peer's awaited; a peer that
	 * never answers holds it for the shutdown timeout (400 ms) only. */
	CHECK_RC(wf_open_tls_connection("127.0.0.1", (unsigned)wf_server_port(hold), ctx, NULL, 5000, &s, NULL), 0);
	CHECK_RC(wf_stream_write(s, "abc", 3), 0);
	t0 = mono_ns();
	CHECK_RC(wf_stream_close(s, 10000), 0);
	uint64_t took = ms_since(t0);
	CHECK(took >= 350 && took < 2500);
	/* ... and by the close's own timeout, when it is shorter. */
	CHECK_RC(wf_open_tls_connection("127.0.0.1", (unsigned)wf_server_port(hold), ctx, NULL, 5000, &s, NULL), 0);
	t0 = mono_ns();
	CHECK_RC(wf_stream_close(s, 100), 0);
	took = ms_since(t0);
	CHECK(took < 1500);

	wf_tls_ctx_free(ctx);
	wf_server_close(bye);
	wf_server_close(late);
	wf_server_close(hold);
	CHECK_RC(wf_server_wait_closed(bye, 10000), 0);
	CHECK_RC(wf_server_wait_closed(late, 10000), 0);
	CHECK_RC(wf_server_wait_closed(hold, 10000), 0);
	return NULL;
}

Test(io_tls, close_notify_write_eof_and_a_silent_peer, .timeout = 60)
{
	run_weft(2, close_main, NULL);
}

/* ---- arguments ------------------------------------------------------------------------ */

static void *args_main(void *arg)
{
	(void)arg;
	wf_tls_opts o = WF_TLS_OPTS_INIT;
	wf_tls_ctx *c = NULL;
	char *why = NULL;
	CHECK_RC(wf_tls_ctx_new_server(NULL, &c, NULL), WF_EINVAL);
	CHECK_RC(wf_tls_ctx_new_server(&o, &c, NULL), WF_EINVAL); /* no certificate */
	o.cert_file = PATHOF("nonexistent.pem");
	CHECK_RC(wf_tls_ctx_new_server(&o, &c, &why), WF_ETLS);
	CHECK(why != NULL && strstr(why, "certificate") != NULL);
	free(why);
	o.cert_file = PATHOF("good.pem");
	o.key_file = PATHOF("rogue-ca.key");
	CHECK_RC(wf_tls_ctx_new_server(&o, &c, &why), WF_ETLS);
	free(why);
	o.key_file = PATHOF("leaf.key");
	o.reserved[2] = 1;
	CHECK_RC(wf_tls_ctx_new_server(&o, &c, NULL), WF_EINVAL);
	o.reserved[2] = 0;
	CHECK_RC(wf_tls_ctx_new_server(&o, &c, NULL), 0);
	wf_server *srv;
	/* A server's context cannot connect, a client's cannot serve. */
	wf_stream *s;
	CHECK_RC(wf_open_tls_connection("127.0.0.1", 1, c, NULL, 1000, &s, NULL), WF_EINVAL);
	wf_tls_ctx *cc = NULL;
	CHECK_RC(wf_tls_ctx_new_client(NULL, &cc, NULL), 0);
	CHECK_RC(wf_start_tls_server("127.0.0.1", 0, cc, echo_handler, NULL, NULL, &srv), WF_EINVAL);
	/* A plain stream has no TLS state. */
	CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, NULL, &srv), 0);
	CHECK_RC(wf_open_connection("127.0.0.1", (unsigned)wf_server_port(srv), 1000, &s), 0);
	char buf[8];
	CHECK_RC(wf_tls_last_error(s, buf, sizeof(buf)), WF_EINVAL);
	wf_stream_close(s, 1000);
	wf_server_close(srv);
	CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
	wf_tls_ctx_free(cc);
	wf_tls_ctx_free(c);
	wf_tls_ctx_free(NULL);
	return NULL;
}

Test(io_tls, bad_arguments)
{
	run_weft(2, args_main, NULL);
}
