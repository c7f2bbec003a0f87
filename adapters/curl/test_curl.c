/*
 * The HTTP client adapter (weft/curl.h) against weft's demo HTTP server
 * (demo/http_server, started by each test on a free loopback port; over
 * TLS too, with a CA the test makes, and refused without it): GET
 * and POST with their bodies and headers, 200 requests at once on 2
 * workers, a refused connection, a server that accepts and never answers
 * (timeouts: the request's, the client's default, a timeout scope,
 * wf_wait_for_future), cancellation of a waiting task and of a gather
 * (the transfer is removed: the server side sees the connection close),
 * a client freed under running transfers, and bad input.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "rt_check.h"
#include <weft.h>
#include <weft/curl.h>

/* ---- the demo server, a child process ------------------------------------ */

static pid_t server_pid = -1;
static int server_out = -1;
static unsigned server_port;

/* Starts demo/http_server on 127.0.0.1, port 0, and reads its port from
 * "listening on http[s]://127.0.0.1:PORT/"; with cert and key, it serves
 * HTTPS. Skips the test without one. */
static void server_start_with(const char *cert, const char *key)
{
#ifndef WEFT_HTTP_SERVER
	(void)cert;
	(void)key;
	cr_skip_test("no demo HTTP server (llhttp's sources were not found)");
#else
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the test */
		dup2(p[1], 1);
		if (cert != NULL)
			execl(WEFT_HTTP_SERVER, WEFT_HTTP_SERVER, "--host", "127.0.0.1", "--port",
			      "0", "--threads", "2", "--seconds", "200", "--cert", cert, "--key",
			      key, (char *)NULL);
		else
			execl(WEFT_HTTP_SERVER, WEFT_HTTP_SERVER, "--host", "127.0.0.1", "--port",
			      "0", "--threads", "2", "--seconds", "200", "--max-request",
			      "1048576", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	server_pid = pid;
	server_out = p[0];
	char line[256];
	size_t len = 0;
	while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
		struct pollfd pf = {.fd = server_out, .events = POLLIN};
		cr_assert_eq(poll(&pf, 1, 30000), 1, "the demo server did not start");
		ssize_t n = read(server_out, line + len, sizeof(line) - 1 - len);
		cr_assert_gt(n, 0, "the demo server ended before listening");
		len += (size_t)n;
	}
	line[len] = '\0';
	const char *at = strstr(line, "://127.0.0.1:");
	cr_assert_not_null(at, "unexpected line from the demo server: %s", line);
	server_port = (unsigned)strtoul(at + strlen("://127.0.0.1:"), NULL, 10);
	cr_assert_gt(server_port, 0);
#endif
}

static void server_start(void)
{
	server_start_with(NULL, NULL);
}

static void server_stop(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		int st;
		waitpid(server_pid, &st, 0);
		server_pid = -1;
	}
	if (server_out >= 0)
		close(server_out);
	server_out = -1;
}

static char *url(const char *path)
{
	static __thread char buf[128];
	snprintf(buf, sizeof(buf), "http://127.0.0.1:%u%s", server_port, path);
	return buf;
}

/* A non-blocking socket listening on 127.0.0.1 that never accepts by
 * itself: connections complete in its backlog and nobody answers. */
static int listen_silent(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, 64), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A loopback port nothing listens on: bound, then closed. */
static unsigned closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Waits (up to 5 s) until c has no transfer left: cancelled ones are
 * removed by their driver right after the cancellation. */
static bool transfers_drain(wf_http_client *c)
{
	for (int i = 0; i < 500; i++) {
		if (wf_http_client_transfers(c) == 0)
			return true;
		wf_sleep(10);
	}
	return false;
}

/* Accepts the next connection on the silent listener lfd and reads its
 * request's head: the connected socket, or -1. */
static int peer_request(int lfd)
{
	int s = wf_sock_accept(lfd, NULL, 10000);
	if (!CHECK(s >= 0))
		return -1;
	char buf[4096];
	size_t len = 0;
	while (len < sizeof(buf) - 1) {
		ssize_t n = wf_sock_recv(s, buf + len, sizeof(buf) - 1 - len, 10000);
		if (!CHECK(n > 0))
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n") != NULL)
			return s;
	}
	close(s);
	return -1;
}

/* Reads s to its end and closes it: true once the client closed its
 * side (its transfer was removed and its connection closed). */
static bool peer_closed(int s)
{
	if (s < 0)
		return false;
	char buf[4096];
	ssize_t n;
	while ((n = wf_sock_recv(s, buf, sizeof(buf), 10000)) > 0)
		;
	close(s);
	return CHECK_EQ(n, 0);
}

/* Accepts the next connection on lfd and reads it to its end (a request
 * may have been sent on it or not). */
static bool peer_closes(int lfd)
{
	int s = wf_sock_accept(lfd, NULL, 10000);
	if (!CHECK(s >= 0))
		return false;
	return peer_closed(s);
}

/* ---- GET and POST ---------------------------------------------------------- */

static void *get_post_main(void *arg)
{
	wf_http_client *c;
	if (!CHECK_RC(wf_http_client_new(NULL, &c), 0))
		return NULL;
	wf_http_response r;
	if (CHECK_RC(wf_http_get(c, url("/"), 10000, &r), 0)) {
		CHECK_EQ(r.status, 200);
		CHECK(r.body_len == 13 && strcmp(r.body, "Hello, World!") == 0);
		CHECK(r.headers == NULL);
		wf_http_response_clear(&r);
	}

	/* Headers, asked for. */
	wf_http_request req = WF_HTTP_REQUEST_INIT;
	req.url = url("/");
	req.want_headers = true;
	if (CHECK_RC(wf_http_fetch(c, &req, &r), 0)) {
		size_t len = 0;
		const char *ct = wf_http_response_header(&r, "content-type", &len);
		CHECK(ct != NULL && len == 10 && memcmp(ct, "text/plain", 10) == 0);
		const char *cl = wf_http_response_header(&r, "Content-Length", &len);
		CHECK(cl != NULL && len == 2 && memcmp(cl, "13", 2) == 0);
		CHECK(wf_http_response_header(&r, "X-Nothing", NULL) == NULL);
		CHECK(strstr(r.headers, "HTTP/") == NULL);
		wf_http_response_clear(&r);
	}

	/* A body of every byte value, 200 KiB, echoed. */
	size_t n = 200 * 1024;
	unsigned char *body = malloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (unsigned char)(i * 7 + i / 251);
	if (CHECK_RC(wf_http_post(c, url("/echo"), NULL, body, n, 10000, &r), 0)) {
		CHECK_EQ(r.status, 200);
		CHECK_EQ(r.body_len, n);
		CHECK(r.body_len == n && memcmp(r.body, body, n) == 0);
		wf_http_response_clear(&r);
	}
	/* An empty body, and a small text one with its type. */
	if (CHECK_RC(wf_http_post(c, url("/echo"), "text/plain", NULL, 0, 10000, &r), 0)) {
		CHECK_EQ(r.status, 200);
		CHECK(r.body != NULL && r.body_len == 0 && r.body[0] == '\0');
		wf_http_response_clear(&r);
	}
	if (CHECK_RC(wf_http_post(c, url("/echo"), "text/plain", "ping", 4, 10000, &r), 0)) {
		CHECK(r.body_len == 4 && strcmp(r.body, "ping") == 0);
		wf_http_response_clear(&r);
	}
	/* PUT through wf_http_fetch, with a header line of the caller's. */
	const char *hdrs[] = {"X-Test: yes", NULL};
	req = (wf_http_request)WF_HTTP_REQUEST_INIT;
	req.url = url("/echo");
	req.method = "PUT";
	req.headers = hdrs;
	req.body = "put body";
	req.body_len = 8;
	if (CHECK_RC(wf_http_fetch(c, &req, &r), 0)) {
		CHECK_EQ(r.status, 200);
		CHECK(strcmp(r.body, "put body") == 0);
		wf_http_response_clear(&r);
	}

	/* HTTP errors are answers. */
	if (CHECK_RC(wf_http_get(c, url("/nowhere"), 10000, &r), 0)) {
		CHECK_EQ(r.status, 404);
		wf_http_response_clear(&r);
	}
	if (CHECK_RC(wf_http_post(c, url("/"), NULL, "x", 1, 10000, &r), 0)) {
		CHECK_EQ(r.status, 405);
		wf_http_response_clear(&r);
	}
	/* An answer over max_body. */
	req = (wf_http_request)WF_HTTP_REQUEST_INIT;
	req.url = url("/");
	req.max_body = 5;
	CHECK_RC(wf_http_fetch(c, &req, &r), WF_ELIMIT);
	CHECK(r.body == NULL);
	/* The same through a future: its message is libcurl's. */
	wf_future *f;
	if (CHECK_RC(wf_http_start(c, &req, &f), 0)) {
		CHECK_RC(wf_await(f, NULL), WF_ELIMIT);
		CHECK(wf_future_errmsg(f) != NULL);
		wf_future_release(f);
	}
	free(body);
	CHECK(transfers_drain(c));
	CHECK_RC(wf_http_client_free(c), 0);
	return NULL;
}

Test(curl, get_and_post, .init = server_start, .fini = server_stop)
{
	run_weft(2, get_post_main, NULL);
}

/* ---- 200 requests at once on 2 workers --------------------------------- */

#define PARALLEL 200

struct par {
	wf_http_client *c;
	int i;
};

static void *par_get(void *arg)
{
	struct par *p = arg;
	wf_http_response r;
	int rc = wf_http_get(p->c, url("/"), 30000, &r);
	if (rc == 0) {
		CHECK_EQ(r.status, 200);
		CHECK(strcmp(r.body, "Hello, World!") == 0);
		wf_http_response_clear(&r);
	}
	return (void *)(intptr_t)rc;
}

static void *parallel_main(void *arg)
{
	wf_http_client *c;
	if (!CHECK_RC(wf_http_client_new(NULL, &c), 0))
		return NULL;
	/* 200 tasks, each awaiting its own GET, spread over both workers. */
	static struct par ps[PARALLEL];
	wf_task *ts[PARALLEL];
	for (int i = 0; i < PARALLEL; i++) {
		ps[i] = (struct par){c, i};
		ts[i] = wf_spawn(par_get, &ps[i]);
		CHECK(ts[i] != NULL);
	}
	for (int i = 0; i < PARALLEL; i++) {
		void *res = NULL;
		CHECK_RC(wf_join(ts[i], &res), 0);
		CHECK_RC((int)(intptr_t)res, 0);
	}

	/* 200 futures, started at once and gathered; bodies of their own. */
	static wf_future *fs[PARALLEL];
	static wf_outcome out[PARALLEL];
	static char bodies[PARALLEL][32];
	for (int i = 0; i < PARALLEL; i++) {
		wf_http_request req = WF_HTTP_REQUEST_INIT;
		req.url = url("/echo");
		req.body_len = (size_t)snprintf(bodies[i], sizeof(bodies[i]), "request %d", i);
		req.body = bodies[i];
		req.timeout_ms = 30000;
		CHECK_RC(wf_http_start(c, &req, &fs[i]), 0);
	}
	CHECK_RC(wf_gather_futures(fs, PARALLEL, out, WF_GATHER_ALL), 0);
	for (int i = 0; i < PARALLEL; i++) {
		wf_http_response *r = out[i].value;
		if (CHECK_RC(out[i].err, 0) && CHECK(r != NULL)) {
			CHECK_EQ(r->status, 200);
			CHECK(strcmp(r->body, bodies[i]) == 0);
		}
		wf_http_response_free(r);
		wf_future_release(fs[i]);
	}
	wf_outcomes_clear(out, PARALLEL);
	CHECK(transfers_drain(c));
	CHECK_RC(wf_http_client_free(c), 0);
	return NULL;
}

Test(curl, parallel_200_on_2_workers, .init = server_start, .fini = server_stop)
{
	run_weft(2, parallel_main, NULL);
}

/* ---- failures ------------------------------------------------------------- */

static void *refused_main(void *arg)
{
	wf_http_client *c;
	if (!CHECK_RC(wf_http_client_new(NULL, &c), 0))
		return NULL;
	char u[64];
	snprintf(u, sizeof(u), "http://127.0.0.1:%u/", closed_port());
	wf_http_response r;
	uint64_t t0 = wf_time_ns();
	CHECK_RC(wf_http_get(c, u, 10000, &r), -ECONNREFUSED);
	CHECK(wf_time_ns() - t0 < 5000000000u);
	CHECK(r.body == NULL && r.status == 0);
	/* The future's message is libcurl's own. */
	wf_http_request req = WF_HTTP_REQUEST_INIT;
	req.url = u;
	wf_future *f;
	if (CHECK_RC(wf_http_start(c, &req, &f), 0)) {
		CHECK_RC(wf_await(f, NULL), -ECONNREFUSED);
		const char *msg = wf_future_errmsg(f);
		CHECK(msg != NULL && strstr(msg, "onnect") != NULL);
		wf_future_release(f);
	}
	CHECK_RC(wf_http_client_free(c), 0);
	return NULL;
}

Test(curl, refused_connection)
{
	run_weft(2, refused_main, NULL);
}

static void *silent_main(void *arg)
{
	unsigned port;
	int lfd = listen_silent(&port);
	char u[64];
	snprintf(u, sizeof(u), "http://127.0.0.1:%u/", port);
	wf_http_client *c;
	if (!CHECK_RC(wf_http_client_new(NULL, &c), 0))
		return NULL;
	wf_http_response r;
	/* The request's own timeout. */
	uint64_t t0 = wf_time_ns();
	CHECK_RC(wf_http_get(c, u, 300, &r), WF_ETIMEDOUT);
	uint64_t took = wf_time_ns() - t0;
	CHECK(took >= 250000000u && took < 3000000000u);
	CHECK(peer_closes(lfd));
	CHECK_RC(wf_http_client_free(c), 0);

	/* The client's default (timeout_ms 0). */
	wf_http_client_opts o = WF_HTTP_CLIENT_OPTS_INIT;
	o.timeout_ms = 200;
	o.drivers = 1;
	if (!CHECK_RC(wf_http_client_new(&o, &c), 0))
		return NULL;
	t0 = wf_time_ns();
	CHECK_RC(wf_http_get(c, u, 0, &r), WF_ETIMEDOUT);
	took = wf_time_ns() - t0;
	CHECK(took >= 150000000u && took < 3000000000u);
	CHECK(peer_closes(lfd));

	/* wf_wait_for_future: the future is cancelled, the transfer
	 * removed. */
	wf_http_request req = WF_HTTP_REQUEST_INIT;
	req.url = u;
	req.timeout_ms = WF_FOREVER;
	wf_future *f;
	if (CHECK_RC(wf_http_start(c, &req, &f), 0)) {
		CHECK_RC(wf_wait_for_future(f, NULL, 200), WF_ETIMEDOUT);
		wf_future_release(f);
		CHECK(transfers_drain(c));
		CHECK(peer_closes(lfd));
	}
	CHECK_RC(wf_http_client_free(c), 0);
	close(lfd);
	return NULL;
}

Test(curl, server_never_answers)
{
	run_weft(2, silent_main, NULL);
}

/* ---- cancellation ---------------------------------------------------------- */

struct cancel_arg {
	wf_http_client *c;
	const char *url;
	wf_event *started;
	int rc; /* what the task's call returned */
};

static void *get_forever(void *arg)
{
	struct cancel_arg *a = arg;
	wf_http_response r;
	wf_event_set(a->started);
	a->rc = wf_http_get(a->c, a->url, WF_FOREVER, &r);
	CHECK(r.body == NULL);
	return NULL;
}

static void *gather_forever(void *arg)
{
	struct cancel_arg *a = arg;
	wf_future *fs[5];
	wf_http_request req = WF_HTTP_REQUEST_INIT;
	req.url = a->url;
	req.timeout_ms = WF_FOREVER;
	for (int i = 0; i < 5; i++)
		CHECK_RC(wf_http_start(a->c, &req, &fs[i]), 0);
	wf_event_set(a->started);
	a->rc = wf_gather_futures(fs, 5, NULL, 0);
	for (int i = 0; i < 5; i++)
		wf_future_release(fs[i]);
	return NULL;
}

static void *cancel_main(void *arg)
{
	unsigned port;
	int lfd = listen_silent(&port);
	char u[64];
	snprintf(u, sizeof(u), "http://127.0.0.1:%u/", port);
	wf_http_client *c;
	if (!CHECK_RC(wf_http_client_new(NULL, &c), 0))
		return NULL;
	struct cancel_arg a = {c, u, NULL, 0};
	CHECK_RC(wf_event_new(&a.started), 0);

	/* A task waiting for its answer, cancelled. */
	wf_task *t = wf_spawn(get_forever, &a);
	int s = peer_request(lfd); /* connected, request sent, waiting */
	CHECK_EQ(wf_http_client_transfers(c), 1);
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(a.rc, WF_ECANCELED);
	CHECK(transfers_drain(c));
	CHECK(peer_closed(s));

	/* Cancelled at once, before its driver may have added it. */
	wf_event_clear(a.started);
	t = wf_spawn(get_forever, &a);
	CHECK_RC(wf_event_wait(a.started, 5000), 0);
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(a.rc, WF_ECANCELED);
	CHECK(transfers_drain(c));
	/* It may have connected before its removal, or not: empty the
	 * listener's backlog either way. */
	wf_sleep(50);
	for (int fd; (fd = wf_sock_accept(lfd, NULL, 0)) >= 0;)
		close(fd);

	/* A gather of five, its task cancelled: every future is cancelled
	 * and every transfer removed. */
	wf_event_clear(a.started);
	t = wf_spawn(gather_forever, &a);
	int ss[5];
	for (int i = 0; i < 5; i++)
		ss[i] = peer_request(lfd);
	CHECK_EQ(wf_http_client_transfers(c), 5);
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(a.rc, WF_ECANCELED);
	CHECK(transfers_drain(c));
	for (int i = 0; i < 5; i++)
		CHECK(peer_closed(ss[i]));

	/* A timeout scope around a GET. */
	wf_timeout to;
	wf_http_response r;
	CHECK_RC(wf_timeout_enter(&to, 200), 0);
	int rc = wf_http_get(c, u, WF_FOREVER, &r);
	CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
	CHECK(transfers_drain(c));
	CHECK(peer_closes(lfd));

	/* Transfers still running when the client is freed: WF_ECLOSED. */
	wf_event_clear(a.started);
	t = wf_spawn(get_forever, &a);
	s = peer_request(lfd);
	CHECK_RC(wf_http_client_free(c), 0);
	CHECK_RC(wf_join(t, NULL), 0);
	CHECK_RC(a.rc, WF_ECLOSED);
	CHECK(peer_closed(s));

	wf_event_free(a.started);
	close(lfd);
	return NULL;
}

Test(curl, cancellation)
{
	run_weft(2, cancel_main, NULL);
}

/* ---- bad input --------------------------------------------------------------- */

static void *bad_input_main(void *arg)
{
	wf_http_client *c;
	CHECK_RC(wf_http_client_new(NULL, NULL), WF_EINVAL);
	wf_http_client_opts o = WF_HTTP_CLIENT_OPTS_INIT;
	o.reserved[2] = 1;
	CHECK_RC(wf_http_client_new(&o, &c), WF_EINVAL);
	CHECK(c == NULL);
	if (!CHECK_RC(wf_http_client_new(NULL, &c), 0))
		return NULL;
	wf_http_response r;
	wf_future *f = (wf_future *)1;
	CHECK_RC(wf_http_get(NULL, "http://127.0.0.1:1/", 100, &r), WF_EINVAL);
	CHECK_RC(wf_http_get(c, NULL, 100, &r), WF_EINVAL);
	CHECK_RC(wf_http_get(c, "", 100, &r), WF_EINVAL);
	CHECK_RC(wf_http_get(c, "http://127.0.0.1:1/", 100, NULL), WF_EINVAL);
	CHECK_RC(wf_http_start(c, NULL, &f), WF_EINVAL);
	CHECK(f == NULL);
	wf_http_request req = WF_HTTP_REQUEST_INIT;
	req.url = "http://127.0.0.1:1/";
	CHECK_RC(wf_http_start(c, &req, NULL), WF_EINVAL);
	req.reserved[0] = 1;
	CHECK_RC(wf_http_fetch(c, &req, &r), WF_EINVAL);
	req.reserved[0] = 0;
	req.reserved_bytes[5] = 1;
	CHECK_RC(wf_http_fetch(c, &req, &r), WF_EINVAL);
	req.reserved_bytes[5] = 0;
	req.method = "GE T";
	CHECK_RC(wf_http_fetch(c, &req, &r), WF_EINVAL);
	req.method = NULL;
	const char *split[] = {"X-A: 1\r\nX-B: 2", NULL};
	req.headers = split;
	CHECK_RC(wf_http_fetch(c, &req, &r), WF_EINVAL);
	const char *nocolon[] = {"X-A 1", NULL};
	req.headers = nocolon;
	CHECK_RC(wf_http_fetch(c, &req, &r), WF_EINVAL);
	req.headers = NULL;
	req.body_len = 3; /* with no body */
	CHECK_RC(wf_http_fetch(c, &req, &r), WF_EINVAL);
	CHECK_RC(wf_http_post(c, "http://127.0.0.1:1/", NULL, NULL, 3, 100, &r), WF_EINVAL);
	CHECK_RC(wf_http_post(c, "http://127.0.0.1:1/", "a\nb", "x", 1, 100, &r), WF_EINVAL);
	CHECK_RC(wf_http_get(c, "http://127.0.0.1:1/\r\nX: y", 100, &r), WF_EINVAL);
	/* What libcurl refuses: other schemes, a malformed URL. */
	CHECK_RC(wf_http_get(c, "ftp://127.0.0.1:1/", 1000, &r), WF_EINVAL);
	CHECK_RC(wf_http_get(c, "file:///etc/passwd", 1000, &r), WF_EINVAL);
	CHECK_RC(wf_http_get(c, "http://[::1/", 1000, &r), WF_EINVAL);
	CHECK(r.body == NULL);

	/* The headers' lookup. */
	char h[] = "Content-Type:  text/html \r\nX-Empty:\r\nset-cookie: a\r\nSet-Cookie: b\r\n";
	wf_http_response hr = {.headers = h, .headers_len = strlen(h)};
	size_t len = 0;
	const char *v = wf_http_response_header(&hr, "CONTENT-TYPE", &len);
	CHECK(v != NULL && len == 9 && memcmp(v, "text/html", 9) == 0);
	v = wf_http_response_header(&hr, "x-empty", &len);
	CHECK(v != NULL && len == 0);
	v = wf_http_response_header(&hr, "Set-Cookie", &len);
	CHECK(v != NULL && len == 1 && v[0] == 'a');
	CHECK(wf_http_response_header(&hr, "Content", NULL) == NULL);
	CHECK(wf_http_response_header(NULL, "a", NULL) == NULL);
	wf_http_response_clear(NULL);
	wf_http_response_free(NULL);

	/* The table. */
	CHECK_RC(wf_curl_code(CURLE_OK, 0), 0);
	CHECK_RC(wf_curl_code(CURLE_COULDNT_CONNECT, ECONNREFUSED), -ECONNREFUSED);
	CHECK_RC(wf_curl_code(CURLE_COULDNT_CONNECT, EHOSTUNREACH), -EHOSTUNREACH);
	CHECK_RC(wf_curl_code(CURLE_COULDNT_CONNECT, 0), -ECONNREFUSED);
	CHECK_RC(wf_curl_code(CURLE_OPERATION_TIMEDOUT, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_curl_code(CURLE_COULDNT_RESOLVE_HOST, 0), WF_ENONAME);
	CHECK_RC(wf_curl_code(CURLE_RECV_ERROR, ECONNRESET), -ECONNRESET);
	CHECK_RC(wf_curl_code(CURLE_RECV_ERROR, 0), WF_EIO);
	CHECK_RC(wf_curl_code(CURLE_GOT_NOTHING, 0), WF_EIO);
	CHECK_RC(wf_curl_code(CURLE_SSL_CONNECT_ERROR, 0), WF_EIO);
	CHECK_RC(wf_curl_code(CURLE_FILESIZE_EXCEEDED, 0), WF_ELIMIT);

	CHECK(transfers_drain(c));
	CHECK_EQ(wf_http_client_transfers(NULL), 0);
	CHECK_RC(wf_http_client_free(c), 0);
	CHECK_RC(wf_http_client_free(NULL), WF_EINVAL);
	return NULL;
}

Test(curl, bad_input)
{
	run_weft(2, bad_input_main, NULL);
	/* A plain thread. */
	wf_http_client *c = (wf_http_client *)1;
	cr_assert_eq(wf_http_client_new(NULL, &c), WF_ENOTTASK);
	cr_assert_null(c);
	wf_http_response r;
	cr_assert_eq(wf_http_get(NULL, "http://127.0.0.1:1/", 100, &r), WF_ENOTTASK);
	cr_assert_eq(wf_http_client_free((wf_http_client *)1), WF_ENOTTASK);
}

/* ---- HTTPS against the demo server over TLS ------------------------------- */

static char cert_dir[64];

static void https_start(void)
{
	if (!wf_tls_available())
		cr_skip_test("weft was built without TLS: the demo server cannot serve HTTPS");
	if (system("command -v openssl >/dev/null 2>&1") != 0)
		cr_skip_test("no openssl command to make certificates with");
	snprintf(cert_dir, sizeof(cert_dir), "/tmp/weft-curl-XXXXXX");
	cr_assert_not_null(mkdtemp(cert_dir));
	char cmd[2048];
	const char *k = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
	snprintf(cmd, sizeof(cmd),
		 "cd %s && exec >log 2>&1 && "
		 "openssl req -x509 %s -keyout ca.key -out ca.pem -subj /CN=weft-curl-ca -days 2 "
		 "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign && "
		 "openssl req %s -keyout leaf.key -out leaf.csr -subj /CN=localhost && "
		 "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ok.ext && "
		 "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
		 "  -extfile ok.ext -out leaf.pem",
		 cert_dir, k, k);
	cr_assert_eq(system(cmd), 0, "making the certificates failed (see %s/log)", cert_dir);
	char cert[128], key[128];
	snprintf(cert, sizeof(cert), "%s/leaf.pem", cert_dir);
	snprintf(key, sizeof(key), "%s/leaf.key", cert_dir);
	server_start_with(cert, key);
}

static void https_stop(void)
{
	server_stop();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", cert_dir);
	if (cert_dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", cert_dir);
}

static void *https_main(void *arg)
{
	(void)arg;
	char ca[128], u[128];
	snprintf(ca, sizeof(ca), "%s/ca.pem", cert_dir);
	snprintf(u, sizeof(u), "https://127.0.0.1:%u/", server_port);
	/* Verified against the CA the test made: the demo server's answer. */
	wf_http_client_opts o = WF_HTTP_CLIENT_OPTS_INIT;
	o.ca_file = ca;
	wf_http_client *c;
	if (!CHECK_RC(wf_http_client_new(&o, &c), 0))
		return NULL;
	wf_http_response r;
	for (int i = 0; i < 20; i++) {
		if (!CHECK_RC(wf_http_get(c, u, 10000, &r), 0))
			break;
		CHECK_EQ(r.status, 200);
		CHECK(r.body_len == 13 && strcmp(r.body, "Hello, World!") == 0);
		wf_http_response_clear(&r);
	}
	CHECK_RC(wf_http_client_free(c), 0);
	/* Without the CA, the certificate is refused: an error, no answer. */
	wf_http_client *plain;
	if (!CHECK_RC(wf_http_client_new(NULL, &plain), 0))
		return NULL;
	int rc = wf_http_get(plain, u, 10000, &r);
	CHECK(rc < 0);
	if (rc == 0)
		wf_http_response_clear(&r);
	CHECK_RC(wf_http_client_free(plain), 0);
	return NULL;
}

Test(curl, https_against_the_demo_server_over_tls, .init = https_start, .fini = https_stop)
{
	run_weft(2, https_main, NULL);
}
