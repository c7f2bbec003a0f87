/*
 * Servers: echo over IPv4, IPv6 and Unix sockets with many clients at
 * once, wait_closed waiting for handlers (also for connections accepted
 * as the server closes), close_clients and abort_clients,
 * the connection limit pausing and resuming accepts, ten thousand
 * connections opened and dropped without a leak, running out of
 * descriptors (the accept backoff), a full read buffer holding a fast
 * sender back, handlers that move between workers, where connections are
 * served (on their peer's CPU's worker, on a client task's own worker,
 * spread over all, also when one task opens them all), bad options and
 * stale handles.
 *
 * Everything runs on the loopback inside the test's process; results,
 * orders and codes are asserted, time only bounds a hang.
 */
#include <criterion/criterion.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "io_test.h"
#include "rt_check.h"
#include "weft.h"

/* Echoes whatever comes until the end of the stream. */
static void echo_handler(wf_stream *s, void *arg)
{
	int *handled = arg;
	if (handled != NULL)
		__atomic_fetch_add(handled, 1, __ATOMIC_RELAXED);
	char buf[4096];
	for (;;) {
		ssize_t n = wf_stream_read(s, buf, sizeof(buf), 30000);
		if (n <= 0)
			break;
		if (wf_stream_write(s, buf, (size_t)n) != 0 || wf_stream_drain(s, 30000) != 0)
			break;
	}
}

/* ---- echo over every family ------------------------------------------------ */

struct echo_client {
	const char *host; /* NULL: the Unix path */
	const char *path;
	unsigned port;
	int id;
	long rounds;
};

static void *echo_client_main(void *arg)
{
	struct echo_client *ec = arg;
	wf_stream *s;
	int rc = ec->host != NULL ? wf_open_connection(ec->host, ec->port, 10000, &s)
				  : wf_open_unix_connection(ec->path, 10000, &s);
	if (!CHECK_RC(rc, 0))
		return NULL;
	if (ec->host != NULL) {
		wf_addr peer;
		char text[64];
		CHECK_RC(wf_stream_peer_addr(s, &peer), 0);
		CHECK(wf_addr_format(&peer, text, sizeof(text)) > 0);
		char want[64];
		snprintf(want, sizeof(want), strchr(ec->host, ':') ? "[%s]:%u" : "%s:%u", ec->host, ec->port);
		CHECK(strcmp(text, want) == 0);
	}
	uint64_t seed = 77 + (uint64_t)ec->id;
	unsigned char msg[3000], back[3000];
	for (long r = 0; r < ec->rounds && !check_any_failed(); r++) {
		size_t len = 1 + rng_next(&seed) % sizeof(msg);
		for (size_t k = 0; k < len; k++)
			msg[k] = pat(k + (size_t)r, (uint32_t)ec->id);
		/* In pieces, so the echo comes back in other pieces. */
		size_t off = 0;
		while (off < len) {
			size_t n = 1 + rng_next(&seed) % 1500;
			if (n > len - off)
				n = len - off;
			CHECK_RC(wf_stream_write(s, msg + off, n), 0);
			off += n;
			if (rng_next(&seed) % 4 == 0)
				wf_yield();
		}
		size_t got = 0;
		if (!CHECK_RC(wf_stream_readexactly(s, back, len, &got, 30000), 0) ||
		    !CHECK(memcmp(msg, back, len) == 0))
			break;
	}
	CHECK_RC(wf_stream_close(s, 10000), 0);
	return NULL;
}

static void run_echo(const char *host, bool unix_sock)
{
	enum { CLIENTS = 8 };
	int handled = 0;
	wf_server *srv;
	char path[108];
	int rc;
	if (unix_sock) {
		unix_path(path, sizeof(path), "echo");
		rc = wf_start_unix_server(path, echo_handler, &handled, NULL, &srv);
	} else {
		rc = wf_start_server(host, 0, echo_handler, &handled, NULL, &srv);
	}
	if (!CHECK_RC(rc, 0))
		return;
	int port = wf_server_port(srv);
	CHECK(unix_sock ? port == 0 : port > 0);
	long conns = test_iters(12);
	for (long round = 0; round < conns && !check_any_failed(); round++) {
		struct echo_client ec[CLIENTS];
		wf_task *ts[CLIENTS];
		for (int i = 0; i < CLIENTS; i++) {
			ec[i] = (struct echo_client){.host = unix_sock ? NULL : host,
						     .path = path,
						     .port = (unsigned)port,
						     .id = (int)round * CLIENTS + i,
						     .rounds = 20};
			ts[i] = wf_spawn(echo_client_main, &ec[i]);
		}
		for (int i = 0; i < CLIENTS; i++)
			CHECK_RC(wf_join(ts[i], NULL), 0);
	}
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
	CHECK_EQ(handled, conns * CLIENTS);
	if (unix_sock) {
		struct stat st;
		CHECK(stat(path, &st) != 0 && errno == ENOENT);
	}
}

static void *echo4_main(void *arg)
{
	run_echo("127.0.0.1", false);
	return NULL;
}

static void *echo6_main(void *arg)
{
	run_echo("::1", false);
	return NULL;
}

static void *echo_unix_main(void *arg)
{
	run_echo(NULL, true);
	return NULL;
}

Test(io_server, echo_ipv4, .timeout = 120)
{
	run_weft(4, echo4_main, NULL);
}

Test(io_server, echo_ipv6, .timeout = 120)
{
	run_weft(3, echo6_main, NULL);
}

Test(io_server, echo_unix, .timeout = 120)
{
	run_weft(2, echo_unix_main, NULL);
}

/* ---- close and wait_closed ---------------------------------------------------- */

struct gated {
	wf_event *go;
	int started, finished; /* atomic */
};

/* Waits for the gate, then echoes one line. */
static void gated_handler(wf_stream *s, void *arg)
{
	struct gated *g = arg;
	__atomic_fetch_add(&g->started, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_event_wait(g->go, 30000), 0);
	char line[64];
	ssize_t n = wf_stream_readline(s, line, sizeof(line), 30000);
	if (CHECK(n > 0))
		CHECK_RC(wf_stream_write(s, line, (size_t)n), 0);
	__atomic_fetch_add(&g->finished, 1, __ATOMIC_RELEASE);
}

static void *wait_closed_main(void *arg)
{
	enum { N = 6 };
	struct gated g = {0};
	CHECK_RC(wf_event_new(&g.go), 0);
	wf_server *srv;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, gated_handler, &g, NULL, &srv), 0))
		return NULL;
	unsigned port = (unsigned)wf_server_port(srv);
	wf_stream *c[N];
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_open_connection("127.0.0.1", port, 10000, &c[i]), 0);
	while (__atomic_load_n(&g.started, __ATOMIC_ACQUIRE) < N)
		wf_sleep(1);
	CHECK_EQ(wf_server_connections(srv), N);
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_close(srv), 0); /* twice is harmless */
	/* The handlers cannot finish before the gate opens. */
	CHECK_RC(wf_server_wait_closed(srv, 30), WF_ETIMEDOUT);
	CHECK_RC(wf_server_wait_closed(srv, 0), WF_ETIMEDOUT);
	CHECK_EQ(g.finished, 0);
	/* Live connections go on after the close. */
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_stream_write(c[i], "still here\n", 11), 0);
	CHECK_RC(wf_event_set(g.go), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
	CHECK_EQ(__atomic_load_n(&g.finished, __ATOMIC_ACQUIRE), N);
	char line[64];
	for (int i = 0; i < N; i++) {
		CHECK_EQ(wf_stream_readline(c[i], line, sizeof(line), 10000), 11);
		CHECK(memcmp(line, "still here\n", 11) == 0);
		/* The server closed the stream once the handler returned. */
		CHECK_EQ(wf_stream_read(c[i], line, sizeof(line), 10000), 0);
		CHECK_RC(wf_stream_close(c[i], 5000), 0);
	}
	/* Nothing listens any more. */
	wf_stream *s;
	CHECK_RC(wf_open_connection("127.0.0.1", port, 5000, &s), -ECONNREFUSED);
	CHECK_RC(wf_event_free(g.go), 0);
	return NULL;
}

Test(io_server, wait_closed_waits_for_the_handlers, .timeout = 60)
{
	run_weft(3, wait_closed_main, NULL);
}

/* A server closed while connections are arriving: once wait_closed
 * returns 0, every handler that started has returned and none starts
 * later. An accept task that took a connection just before the close
 * still starts it; a wait that counted the live connections before that
 * task ended freed the server under the new connection, whose handler
 * then ran (and ended, updating the freed server's counts) after the wait
 * had returned. */
struct arriving {
	int entered, left; /* atomic */
};

static void counting_handler(wf_stream *s, void *arg)
{
	struct arriving *a = arg;
	__atomic_fetch_add(&a->entered, 1, __ATOMIC_ACQ_REL);
	char buf[64];
	while (wf_stream_read(s, buf, sizeof(buf), 10000) > 0)
		;
	__atomic_fetch_add(&a->left, 1, __ATOMIC_ACQ_REL);
}

static void *arriving_client(void *arg)
{
	unsigned port = (unsigned)(uintptr_t)arg;
	wf_stream *s;
	int rc = wf_open_connection("127.0.0.1", port, 5000, &s);
	/* A connect that loses to the close fails (refused, reset or
	 * aborted, as the kernel saw it): only the server's side is checked. */
	if (rc == 0) {
		(void)wf_stream_write(s, "x", 1);
		wf_stream_close(s, 1000);
	}
	return NULL;
}

static void *close_while_arriving_main(void *arg)
{
	(void)arg;
	long rounds = test_iters_min(300, 40);
	enum { CLIENTS = 6 };
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		struct arriving a = {0, 0};
		wf_server *srv;
		if (!CHECK_RC(wf_start_server("127.0.0.1", 0, counting_handler, &a, NULL, &srv), 0))
			break;
		void *port = (void *)(uintptr_t)wf_server_port(srv);
		wf_task *c[CLIENTS];
		for (int k = 0; k < CLIENTS; k++)
			c[k] = wf_spawn(arriving_client, port);
		/* Close at a different point of the clients' arrival each round. */
		for (long y = 0; y < i % 7; y++)
			wf_yield();
		CHECK_RC(wf_server_close(srv), 0);
		CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
		int entered = __atomic_load_n(&a.entered, __ATOMIC_ACQUIRE);
		CHECK_EQ(__atomic_load_n(&a.left, __ATOMIC_ACQUIRE), entered);
		for (int k = 0; k < CLIENTS; k++)
			CHECK_RC(wf_join(c[k], NULL), 0);
		wf_sleep(1); /* a handler started late would have run by now */
		CHECK_EQ(__atomic_load_n(&a.entered, __ATOMIC_ACQUIRE), entered);
	}
	return NULL;
}

Test(io_server, close_while_connections_arrive_frees_after_the_last_handler, .timeout = 120)
{
	run_weft(2, close_while_arriving_main, NULL);
	run_weft(4, close_while_arriving_main, NULL);
}

/* A server closed before its accept tasks ever ran still closes its
 * listening sockets: nothing listens and no descriptor is left. */
static void *close_at_once_main(void *arg)
{
	long rounds = test_iters(20);
	int before = fd_count();
	unsigned port = 0;
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		wf_server *srv;
		if (!CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, NULL, &srv), 0))
			break;
		port = (unsigned)wf_server_port(srv);
		CHECK_RC(wf_server_close(srv), 0);
		CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
		wf_stream *s;
		CHECK_RC(wf_open_connection("127.0.0.1", port, 5000, &s), -ECONNREFUSED);
	}
	CHECK_EQ(fd_count(), before);
	return NULL;
}

Test(io_server, close_right_after_start_closes_the_listeners, .timeout = 60)
{
	run_weft(1, close_at_once_main, NULL);
}

Test(io_server, close_right_after_start_closes_the_listeners_on_two_workers, .timeout = 60)
{
	run_weft(2, close_at_once_main, NULL);
}

/* ---- close_clients, abort_clients --------------------------------------------- */

struct ender {
	int started, ended; /* atomic */
	int results[64];
};

/* Reads until the stream ends and records how it ended. */
static void reading_handler(wf_stream *s, void *arg)
{
	struct ender *e = arg;
	int slot = __atomic_fetch_add(&e->started, 1, __ATOMIC_ACQ_REL);
	char buf[256];
	ssize_t n;
	while ((n = wf_stream_read(s, buf, sizeof(buf), 30000)) > 0)
		;
	if (slot < 64)
		e->results[slot] = (int)n;
	__atomic_fetch_add(&e->ended, 1, __ATOMIC_RELEASE);
}

static void *end_clients_main(void *arg)
{
	enum { N = 8 };
	for (int reset = 0; reset < 2; reset++) {
		struct ender e = {0};
		wf_server *srv;
		if (!CHECK_RC(wf_start_server("127.0.0.1", 0, reading_handler, &e, NULL, &srv), 0))
			break;
		unsigned port = (unsigned)wf_server_port(srv);
		wf_stream *c[N];
		for (int i = 0; i < N; i++)
			CHECK_RC(wf_open_connection("127.0.0.1", port, 10000, &c[i]), 0);
		while (__atomic_load_n(&e.started, __ATOMIC_ACQUIRE) < N)
			wf_sleep(1);
		CHECK_RC(reset ? wf_server_abort_clients(srv) : wf_server_close_clients(srv), 0);
		/* Every handler's read ends; the server goes on listening. */
		while (__atomic_load_n(&e.ended, __ATOMIC_ACQUIRE) < N)
			wf_sleep(1);
		for (int i = 0; i < N; i++)
			CHECK(e.results[i] == 0 || e.results[i] == -ECONNRESET);
		char buf[16];
		for (int i = 0; i < N; i++) {
			ssize_t n = wf_stream_read(c[i], buf, sizeof(buf), 10000);
			if (reset)
				CHECK(n == 0 || n == -ECONNRESET || n == -EPIPE);
			else
				CHECK_EQ(n, 0);
			/* Writing on fails sooner or later, without SIGPIPE. */
			int rc = 0;
			for (int k = 0; k < 200 && rc == 0; k++) {
				rc = wf_stream_write(c[i], buf, sizeof(buf));
				if (rc == 0)
					wf_sleep(1);
			}
			CHECK(rc == -EPIPE || rc == -ECONNRESET);
			wf_stream_abort(c[i]);
		}
		wf_stream *s;
		CHECK_RC(wf_open_connection("127.0.0.1", port, 10000, &s), 0);
		while (__atomic_load_n(&e.started, __ATOMIC_ACQUIRE) < N + 1)
			wf_sleep(1);
		CHECK_RC(wf_stream_close(s, 5000), 0);
		CHECK_RC(wf_server_close(srv), 0);
		CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
		CHECK_EQ(e.ended, N + 1);
	}
	return NULL;
}

Test(io_server, close_clients_and_abort_clients_end_the_handlers, .timeout = 60)
{
	signal(SIGPIPE, SIG_DFL);
	run_weft(2, end_clients_main, NULL);
}

/* ---- the connection limit ------------------------------------------------------ */

struct limited {
	int live, peak, handled; /* atomic */
	size_t max;
};

static void limited_handler(wf_stream *s, void *arg)
{
	struct limited *l = arg;
	int now = __atomic_add_fetch(&l->live, 1, __ATOMIC_ACQ_REL);
	int peak = __atomic_load_n(&l->peak, __ATOMIC_RELAXED);
	while (now > peak && !__atomic_compare_exchange_n(&l->peak, &peak, now, false,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	CHECK(now <= (int)l->max);
	__atomic_fetch_add(&l->handled, 1, __ATOMIC_RELAXED);
	echo_handler(s, NULL);
	__atomic_sub_fetch(&l->live, 1, __ATOMIC_ACQ_REL);
}

static bool echo_once(wf_stream *s, uint64_t timeout_ms)
{
	char line[16];
	if (wf_stream_write(s, "ping\n", 5) != 0)
		return false;
	ssize_t n = wf_stream_readline(s, line, sizeof(line), timeout_ms);
	if (n == WF_ETIMEDOUT)
		return false;
	return CHECK_EQ(n, 5) && CHECK(memcmp(line, "ping\n", 5) == 0);
}

struct limit_client {
	unsigned port;
	int id;
};

static void *limit_client_main(void *arg)
{
	struct limit_client *lc = arg;
	wf_stream *s;
	if (!CHECK_RC(wf_open_connection("127.0.0.1", lc->port, 10000, &s), 0))
		return NULL;
	CHECK(echo_once(s, 30000));
	wf_sleep((uint64_t)(lc->id % 3));
	CHECK_RC(wf_stream_close(s, 5000), 0);
	return NULL;
}

static void *max_conns_main(void *arg)
{
	enum { MAX = 3 };
	struct limited l = {.max = MAX};
	wf_server_opts o = WF_SERVER_OPTS_INIT;
	o.max_connections = MAX;
	wf_server *srv;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, limited_handler, &l, &o, &srv), 0))
		return NULL;
	unsigned port = (unsigned)wf_server_port(srv);

	/* At the limit, a new connection is not accepted (the kernel queues
	 * it) until one of the others ends. */
	wf_stream *c[MAX + 1];
	for (int i = 0; i < MAX; i++) {
		CHECK_RC(wf_open_connection("127.0.0.1", port, 10000, &c[i]), 0);
		CHECK(echo_once(c[i], 30000));
	}
	CHECK_EQ(wf_server_connections(srv), MAX);
	CHECK_RC(wf_open_connection("127.0.0.1", port, 10000, &c[MAX]), 0);
	CHECK(!echo_once(c[MAX], 100));
	CHECK_EQ(wf_server_connections(srv), MAX);
	CHECK_RC(wf_stream_close(c[0], 5000), 0);
	/* The ping already sent is answered once the handler starts. */
	char line[16];
	CHECK_EQ(wf_stream_readline(c[MAX], line, sizeof(line), 30000), 5);
	for (int i = 1; i <= MAX; i++) {
		CHECK(echo_once(c[i], 30000));
		CHECK_RC(wf_stream_close(c[i], 5000), 0);
	}

	/* Many clients at once: never more than MAX handlers. */
	long n = test_iters(60);
	wf_task **ts = calloc((size_t)n, sizeof(*ts));
	struct limit_client *lc = calloc((size_t)n, sizeof(*lc));
	for (long i = 0; i < n; i++) {
		lc[i] = (struct limit_client){.port = port, .id = (int)i};
		ts[i] = wf_spawn(limit_client_main, &lc[i]);
	}
	for (long i = 0; i < n; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	free(ts);
	free(lc);
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
	CHECK_EQ(l.handled, n + MAX + 1);
	CHECK(l.peak >= 1 && l.peak <= MAX);
	return NULL;
}

Test(io_server, max_connections_pauses_and_resumes_accepting, .timeout = 60)
{
	run_weft(3, max_conns_main, NULL);
}

/* ---- ten thousand connections ------------------------------------------------------ */

struct churn {
	unsigned port;
	long n;
	long next; /* atomic: the next connection to make */
	int handled; /* atomic */
	int failures; /* atomic */
};

static void draining_handler(wf_stream *s, void *arg)
{
	struct churn *ch = arg;
	__atomic_fetch_add(&ch->handled, 1, __ATOMIC_RELAXED);
	char buf[64];
	while (wf_stream_read(s, buf, sizeof(buf), 30000) > 0)
		;
}

static void *churn_client(void *arg)
{
	struct churn *ch = arg;
	for (;;) {
		long i = __atomic_fetch_add(&ch->next, 1, __ATOMIC_RELAXED);
		if (i >= ch->n || check_any_failed())
			break;
		wf_stream *s;
		int rc = wf_open_connection("127.0.0.1", ch->port, 30000, &s);
		if (!CHECK_RC(rc, 0))
			break;
		if (i % 2)
			CHECK_RC(wf_stream_write(s, "x", 1), 0);
		/* Mostly resets, which leave no TIME_WAIT behind to use up
		 * the ephemeral ports; some orderly closes. */
		if (i % 4 == 0)
			CHECK_RC(wf_stream_close(s, 5000), 0);
		else
			CHECK_RC(wf_stream_abort(s), 0);
	}
	return NULL;
}

/* The connections the kernel dropped because a listen queue was full
 * (TcpExt ListenOverflows of this network namespace, every listener's), or
 * -1. The clients here connect and reset without waiting for the server:
 * when a worker falls behind, a connection whose handshake's last ACK met
 * a full queue, and whose client reset it before the kernel let it in,
 * is never accepted. */
static long listen_overflows(void)
{
	FILE *f = fopen("/proc/net/netstat", "r");
	if (f == NULL)
		return -1;
	static char names[16384], values[16384]; /* one caller at a time: a task's stack is small */
	long found = -1;
	while (found < 0 && fgets(names, sizeof(names), f) != NULL &&
	       fgets(values, sizeof(values), f) != NULL) {
		if (strncmp(names, "TcpExt:", 7) != 0)
			continue;
		char *ns = NULL, *vs = NULL;
		char *n = strtok_r(names, " \n", &ns), *v = strtok_r(values, " \n", &vs);
		while (n != NULL && v != NULL) {
			if (strcmp(n, "ListenOverflows") == 0) {
				found = atol(v);
				break;
			}
			n = strtok_r(NULL, " \n", &ns);
			v = strtok_r(NULL, " \n", &vs);
		}
	}
	fclose(f);
	return found;
}

/* How many of the run's connections the kernel may have dropped. */
static long dropped_since(long before)
{
	long now = listen_overflows();
	return before >= 0 && now >= before ? now - before : 0;
}

static void *churn_main(void *arg)
{
	enum { CLIENTS = 8 };
	int before = fd_count();
	long overflows = listen_overflows();
	struct churn ch = {.n = test_iters(10000)};
	wf_server *srv;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, draining_handler, &ch, NULL, &srv), 0))
		return NULL;
	ch.port = (unsigned)wf_server_port(srv);
	wf_task *ts[CLIENTS];
	for (int i = 0; i < CLIENTS; i++)
		ts[i] = wf_spawn(churn_client, &ch);
	for (int i = 0; i < CLIENTS; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	/* Every connection was accepted and handled once (a reset one in
	 * the accept queue is still accepted), but for those the kernel
	 * dropped from a full queue before they got in. */
	for (int k = 0; k < 30000; k++) {
		int handled = __atomic_load_n(&ch.handled, __ATOMIC_RELAXED);
		if (handled == ch.n || (k % 100 == 99 && handled >= ch.n - dropped_since(overflows)))
			break;
		wf_sleep(1);
	}
	int handled = __atomic_load_n(&ch.handled, __ATOMIC_RELAXED);
	long dropped = dropped_since(overflows);
	if (!CHECK(handled <= ch.n && handled >= ch.n - dropped))
		fprintf(stderr, "churn: %d of %ld connections handled, %ld dropped by the kernel\n",
			handled, ch.n, dropped);
	for (int k = 0; k < 30000 && wf_server_connections(srv) > 0; k++)
		wf_sleep(1);
	CHECK_EQ(wf_server_connections(srv), 0);
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
	CHECK_EQ(fd_count(), before);
	return NULL;
}

Test(io_server, ten_thousand_connections_leave_no_descriptor, .timeout = 180)
{
	run_weft(3, churn_main, NULL);
}

/* ---- running out of descriptors --------------------------------------------------- */

static void *exhaustion_main(void *arg)
{
	enum { RAW = 8, ROOM = 50, MAXC = 64 };
	wf_server *srv;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, NULL, &srv), 0))
		return NULL;
	unsigned port = (unsigned)wf_server_port(srv);
	struct rlimit old;
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	struct rlimit low = old;
	low.rlim_cur = (rlim_t)fd_highest() + 1 + ROOM;
	if (!CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0))
		return NULL;

	/* Sockets for later, made while descriptors remain. */
	int raw[RAW];
	for (int i = 0; i < RAW; i++)
		CHECK((raw[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	/* Clients until the process has no descriptor left: each takes two
	 * (its own and the accepted one). */
	wf_stream *served[MAXC], *pending[MAXC + RAW];
	int nserved = 0, npending = 0, rc = 0;
	while (nserved + npending < MAXC) {
		wf_stream *s;
		rc = wf_open_connection("127.0.0.1", port, 10000, &s);
		if (rc != 0)
			break;
		if (echo_once(s, 1000))
			served[nserved++] = s;
		else
			pending[npending++] = s;
	}
	CHECK_RC(rc, -EMFILE);
	CHECK(nserved >= 14);
	/* Connected now, they wait in the accept queue: the server has no
	 * descriptor to take them with. */
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < RAW; i++) {
		if (!CHECK_EQ(connect(raw[i], (struct sockaddr *)&in, sizeof(in)), 0))
			continue;
		wf_stream *s;
		if (CHECK_RC(wf_stream_from_fd(raw[i], &s), 0)) {
			CHECK(!echo_once(s, 200));
			pending[npending++] = s;
		}
	}
	/* The connections it has are still served. */
	for (int i = 0; i < nserved; i++)
		CHECK(echo_once(served[i], 10000));
	/* Ending some frees descriptors: the backlog is accepted. */
	int keep = 2;
	for (int i = keep; i < nserved; i++)
		CHECK_RC(wf_stream_close(served[i], 5000), 0);
	char line[16];
	for (int i = 0; i < npending; i++) {
		/* Their ping is answered now. */
		CHECK_EQ(wf_stream_readline(pending[i], line, sizeof(line), 30000), 5);
		CHECK(echo_once(pending[i], 10000));
	}
	for (int i = 0; i < keep; i++)
		CHECK(echo_once(served[i], 10000));
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	/* New clients are accepted again. */
	wf_stream *s;
	if (CHECK_RC(wf_open_connection("127.0.0.1", port, 10000, &s), 0)) {
		CHECK(echo_once(s, 10000));
		CHECK_RC(wf_stream_close(s, 5000), 0);
	}
	for (int i = 0; i < keep; i++)
		CHECK_RC(wf_stream_close(served[i], 5000), 0);
	for (int i = 0; i < npending; i++)
		CHECK_RC(wf_stream_close(pending[i], 5000), 0);
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
	return NULL;
}

Test(io_server, out_of_descriptors_the_server_backs_off_and_recovers, .timeout = 120)
{
	run_weft(2, exhaustion_main, NULL);
}

/* ---- a full read buffer holds the sender back ---------------------------------------- */

#define FLOOD_BYTES ((size_t)10 << 20)
#define FLOOD_CHUNK ((size_t)64 << 10)

struct flood {
	wf_event *ready, *go;
	size_t received;
	bool in_order;
};

/* Reads nothing until told to, then everything, checking each byte. */
static void flood_handler(wf_stream *s, void *arg)
{
	struct flood *f = arg;
	int small = 64 << 10;
	setsockopt(wf_stream_fd(s), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	CHECK_RC(wf_event_set(f->ready), 0);
	CHECK_RC(wf_event_wait(f->go, 60000), 0);
	unsigned char *buf = malloc(FLOOD_CHUNK);
	f->in_order = true;
	for (;;) {
		ssize_t n = wf_stream_read(s, buf, FLOOD_CHUNK, 60000);
		if (n <= 0) {
			CHECK_EQ(n, 0);
			break;
		}
		for (ssize_t k = 0; k < n && f->in_order; k++)
			if (buf[k] != pat(f->received + (size_t)k, 5))
				f->in_order = false;
		f->received += (size_t)n;
	}
	free(buf);
	char reply[32];
	int len = snprintf(reply, sizeof(reply), "%zu\n", f->received);
	CHECK_RC(wf_stream_write_all(s, reply, (size_t)len, 10000), 0);
}

static void *flood_main(void *arg)
{
	struct flood f = {0};
	CHECK_RC(wf_event_new(&f.ready), 0);
	CHECK_RC(wf_event_new(&f.go), 0);
	wf_server *srv;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, flood_handler, &f, NULL, &srv), 0))
		return NULL;
	wf_stream *c;
	if (!CHECK_RC(wf_open_connection("127.0.0.1", (unsigned)wf_server_port(srv), 10000, &c), 0))
		return NULL;
	int small = 64 << 10;
	setsockopt(wf_stream_fd(c), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	CHECK_RC(wf_event_wait(f.ready, 10000), 0);
	long rss0 = vmrss_kib();
	unsigned char *chunk = malloc(FLOOD_CHUNK);
	size_t sent = 0;
	bool held = false;
	/* Writes until a drain cannot finish: the handler reads nothing, its
	 * buffer stops at the limit and TCP stops the sender. */
	while (sent < FLOOD_BYTES) {
		for (size_t k = 0; k < FLOOD_CHUNK; k++)
			chunk[k] = pat(sent + k, 5);
		CHECK_RC(wf_stream_write(c, chunk, FLOOD_CHUNK), 0);
		sent += FLOOD_CHUNK;
		int rc = wf_stream_drain(c, 200);
		if (rc == WF_ETIMEDOUT) {
			held = true;
			break;
		}
		CHECK_RC(rc, 0);
	}
	long rss1 = vmrss_kib();
	CHECK(held);
	CHECK(sent < FLOOD_BYTES / 4);
	/* Memory grew by far less than what was offered. (ThreadSanitizer's
	 * shadow memory grows with whatever the program touches: its RSS says
	 * nothing about the buffers.) */
#if !defined(WF_TSAN)
	CHECK(rss1 - rss0 < 3 * 1024);
	if (rss1 - rss0 >= 3 * 1024)
		fprintf(stderr, "VmRSS grew by %ld KiB\n", rss1 - rss0);
#else
	(void)rss0;
	(void)rss1;
#endif
	/* Then the handler reads, and every byte arrives in order. */
	CHECK_RC(wf_event_set(f.go), 0);
	while (sent < FLOOD_BYTES) {
		for (size_t k = 0; k < FLOOD_CHUNK; k++)
			chunk[k] = pat(sent + k, 5);
		CHECK_RC(wf_stream_write(c, chunk, FLOOD_CHUNK), 0);
		sent += FLOOD_CHUNK;
		CHECK_RC(wf_stream_drain(c, 60000), 0);
	}
	CHECK_RC(wf_stream_write_eof(c, 60000), 0);
	char reply[32];
	ssize_t n = wf_stream_readline(c, reply, sizeof(reply), 60000);
	if (CHECK(n > 0)) {
		reply[n - 1] = '\0';
		CHECK_EQ(strtoull(reply, NULL, 10), FLOOD_BYTES);
	}
	CHECK(f.in_order);
	CHECK_EQ(f.received, FLOOD_BYTES);
	free(chunk);
	CHECK_RC(wf_stream_close(c, 5000), 0);
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
	wf_event_free(f.ready);
	wf_event_free(f.go);
	return NULL;
}

Test(io_server, a_handler_that_does_not_read_holds_the_sender_back, .timeout = 120)
{
	run_weft(2, flood_main, NULL);
}

/* ---- handlers on other workers ------------------------------------------------------- */

static void moving_handler(wf_stream *s, void *arg)
{
	unsigned workers = wf_runtime_workers(wf_runtime_current());
	char line[128];
	for (unsigned i = 0;; i++) {
		ssize_t n = wf_stream_readline(s, line, sizeof(line), 30000);
		if (n <= 0)
			break;
		/* Every fourth line on the next worker: the stream stays
		 * registered where it was accepted. */
		if (i % 4 == 0) {
			unsigned to = (unsigned)(wf_worker_id() + 1) % workers;
			CHECK_RC(wf_move_to_worker(to), 0);
		}
		if (!CHECK_RC(wf_stream_write_all(s, line, (size_t)n, 30000), 0))
			break;
	}
}

static void *moved_client(void *arg)
{
	unsigned port = *(unsigned *)arg;
	wf_stream *s;
	if (!CHECK_RC(wf_open_connection("127.0.0.1", port, 10000, &s), 0))
		return NULL;
	long rounds = test_iters(100);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		char msg[64], back[64];
		int len = snprintf(msg, sizeof(msg), "line %ld of %p\n", i, (void *)s);
		CHECK_RC(wf_stream_write(s, msg, (size_t)len), 0);
		if (!CHECK_EQ(wf_stream_readline(s, back, sizeof(back), 30000), len) ||
		    !CHECK(memcmp(msg, back, (size_t)len) == 0))
			break;
	}
	CHECK_RC(wf_stream_close(s, 5000), 0);
	return NULL;
}

static void *moved_main(void *arg)
{
	wf_server *srv;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, moving_handler, NULL, NULL, &srv), 0))
		return NULL;
	unsigned port = (unsigned)wf_server_port(srv);
	enum { N = 6 };
	wf_task *ts[N];
	for (int i = 0; i < N; i++)
		ts[i] = wf_spawn(moved_client, &port);
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
	return NULL;
}

Test(io_server, handlers_that_move_to_other_workers_keep_working, .timeout = 60)
{
	run_weft(3, moved_main, NULL);
}

/* ---- where connections are served ------------------------------------------------- */

/* The first two CPUs the process may run on, or false when it has one. */
static bool two_cpus(int cpu[2])
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return false;
	int n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			cpu[n++] = c;
	return n == 2;
}

static int pinned_cpu[2];

/* Worker i's thread runs on pinned_cpu[i] only. */
static void pin_worker_thread(unsigned worker, void *arg)
{
	(void)arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(pinned_cpu[worker % 2], &set);
	CHECK_EQ(sched_setaffinity(0, sizeof(set), &set), 0);
}

/* Answers the client's worker number with 1 when the handler started on
 * that worker too (the connection's: later, a waiting handler may be
 * stolen), 0 when not. */
static void placed_handler(wf_stream *s, void *arg)
{
	(void)arg;
	int served = wf_worker_id();
	unsigned char w;
	if (!CHECK_RC(wf_stream_readexactly(s, &w, 1, NULL, 30000), 0))
		return;
	unsigned char same = (int)w == served;
	CHECK_RC(wf_stream_write_all(s, &same, 1, 30000), 0);
	unsigned char end;
	CHECK_EQ(wf_stream_read(s, &end, 1, 30000), 0);
}

struct placed_client {
	unsigned port;
	unsigned worker;
	int same; /* connections served on this client's worker */
};

static void *placed_client_main(void *arg)
{
	struct placed_client *pc = arg;
	CHECK_RC(wf_move_to_worker(pc->worker), 0);
	CHECK_RC(wf_pin(true), 0);
	for (int i = 0; i < 10 && !check_any_failed(); i++) {
		wf_stream *s;
		if (!CHECK_RC(wf_open_connection("127.0.0.1", pc->port, 10000, &s), 0))
			break;
		unsigned char w = (unsigned char)wf_worker_id(), same = 2;
		CHECK_EQ(w, pc->worker);
		CHECK_RC(wf_stream_write_all(s, &w, 1, 30000), 0);
		CHECK_RC(wf_stream_readexactly(s, &same, 1, NULL, 30000), 0);
		pc->same += same == 1;
		/* The handler has returned once its side ends: then at most
		 * this one connection of ours is still counted while the next
		 * is placed, which leaves every worker room for it. */
		CHECK_RC(wf_stream_write_eof(s, 5000), 0);
		unsigned char end;
		CHECK_EQ(wf_stream_read(s, &end, 1, 30000), 0);
		CHECK_RC(wf_stream_close(s, 5000), 0);
	}
	return NULL;
}

static void *placed_main(void *arg)
{
	(void)arg;
	/* Each worker parks at least once after its thread was pinned, and
	 * so notes the CPU it is on. */
	CHECK_RC(wf_sleep(20), 0);
	wf_server *srv;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, placed_handler, NULL, NULL, &srv), 0))
		return NULL;
	struct placed_client pcs[2];
	wf_task *ts[2];
	for (unsigned w = 0; w < 2; w++) {
		pcs[w] = (struct placed_client){.port = (unsigned)wf_server_port(srv), .worker = w};
		ts[w] = wf_spawn(placed_client_main, &pcs[w]);
	}
	for (unsigned w = 0; w < 2; w++) {
		CHECK_RC(wf_join(ts[w], NULL), 0);
		/* One connection at a time, from a task pinned to a worker
		 * whose thread is pinned to a CPU: every one is served there. */
		CHECK_EQ(pcs[w].same, 10);
	}
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
	return NULL;
}

Test(io_server, a_connection_is_served_on_the_worker_its_peer_sends_from, .timeout = 60)
{
	if (!two_cpus(pinned_cpu))
		cr_skip_test("needs 2 CPUs: the two workers' threads are pinned to different ones");
	wf_hooks hooks = {.thread_start = pin_worker_thread};
	run_weft_hooks(2, &hooks, placed_main, NULL);
}

enum { SPREAD_WORKERS = 3, SPREAD_CONNS = 30 };

struct spread {
	int on[SPREAD_WORKERS]; /* handlers started on each worker */
	int started;
};

static void spread_handler(wf_stream *s, void *arg)
{
	struct spread *sp = arg;
	__atomic_fetch_add(&sp->on[wf_worker_id()], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&sp->started, 1, __ATOMIC_RELEASE);
	char buf[64];
	for (;;) {
		ssize_t n = wf_stream_read(s, buf, sizeof(buf), 30000);
		if (n <= 0 || wf_stream_write_all(s, buf, (size_t)n, 30000) != 0)
			break;
	}
}

/* One task pinned to one worker opens every connection and keeps them
 * open: it stays where it is pinned, and the server spreads the
 * connections over all the workers anyway: over TCP (whose connections
 * all come from that worker, a peer of the server's own runtime) by the
 * local-peer bound, over a Unix socket (one listener, no peer worker to
 * go by) by the quarter rule. */
static void *spread_main(void *arg)
{
	(void)arg;
	CHECK_RC(wf_pin(true), 0);
	int home = wf_worker_id();
	for (int family = 0; family < 2; family++) {
		struct spread sp = {{0}, 0};
		char path[108];
		unix_path(path, sizeof(path), "spread");
		wf_server *srv;
		int rc = family == 0 ? wf_start_server("127.0.0.1", 0, spread_handler, &sp, NULL, &srv)
				     : wf_start_unix_server(path, spread_handler, &sp, NULL, &srv);
		if (!CHECK_RC(rc, 0))
			return NULL;
		wf_stream *ss[SPREAD_CONNS];
		int open = 0;
		for (; open < SPREAD_CONNS; open++) {
			rc = family == 0 ? wf_open_connection("127.0.0.1", (unsigned)wf_server_port(srv),
							      10000, &ss[open])
					 : wf_open_unix_connection(path, 10000, &ss[open]);
			if (!CHECK_RC(rc, 0))
				break;
			CHECK_EQ(wf_worker_id(), home);
			char c = (char)('a' + open % 26), back = 0;
			CHECK_RC(wf_stream_write_all(ss[open], &c, 1, 30000), 0);
			CHECK_RC(wf_stream_readexactly(ss[open], &back, 1, NULL, 30000), 0);
			CHECK_EQ(back, c);
		}
		CHECK_EQ(__atomic_load_n(&sp.started, __ATOMIC_ACQUIRE), SPREAD_CONNS);
		int lo = SPREAD_CONNS, hi = 0, sum = 0;
		for (int w = 0; w < SPREAD_WORKERS; w++) {
			int n = __atomic_load_n(&sp.on[w], __ATOMIC_RELAXED);
			lo = n < lo ? n : lo;
			hi = n > hi ? n : hi;
			sum += n;
		}
		CHECK_EQ(sum, SPREAD_CONNS);
		/* TCP: no worker above twice (and three) the least loaded;
		 * Unix: above a quarter (and two). */
		if (!CHECK(family == 0 ? hi <= 2 * lo + 3 : hi <= lo + 2 + lo / 4))
			fprintf(stderr, "family %d: %d %d %d\n", family, sp.on[0], sp.on[1], sp.on[2]);
		for (int i = 0; i < open; i++)
			CHECK_RC(wf_stream_close(ss[i], 5000), 0);
		CHECK_RC(wf_server_close(srv), 0);
		CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
		if (family == 1)
			unlink(path);
	}
	return NULL;
}

Test(io_server, connections_from_one_worker_are_spread_over_all, .timeout = 60)
{
	run_weft(SPREAD_WORKERS, spread_main, NULL);
}

/* ---- peers in the same runtime ---------------------------------------------- */

enum { PEER_WORKERS = 3, PEER_CONNS = 24 };

struct peers {
	int served_on[PEER_CONNS]; /* the worker each handler ran on */
	int started;
};

/* Notes the worker it starts on (the connection's: the handler starts
 * there; later, waiting tasks may be stolen), reads the connection's
 * index (one byte), answers it, then echoes until the end. */
static void peer_handler(wf_stream *s, void *arg)
{
	struct peers *p = arg;
	int worker = wf_worker_id();
	unsigned char i = 0;
	if (wf_stream_readexactly(s, &i, 1, NULL, 30000) != 0 || i >= PEER_CONNS)
		return;
	__atomic_store_n(&p->served_on[i], worker, __ATOMIC_RELAXED);
	__atomic_fetch_add(&p->started, 1, __ATOMIC_RELEASE);
	if (wf_stream_write_all(s, &i, 1, 30000) != 0)
		return;
	char buf[64];
	for (;;) {
		ssize_t n = wf_stream_read(s, buf, sizeof(buf), 30000);
		if (n <= 0 || wf_stream_write_all(s, buf, (size_t)n, 30000) != 0)
			break;
	}
}

/* The worker a client socket of this runtime was registered on, as the
 * server looks it up (io/local_peer.c), or -1. An unpinned task may come
 * back from wf_open_connection on another worker (a steal after its
 * wake-up), so where the task runs then says nothing about its socket. */
int wf__local_peer_worker(const struct sockaddr *peer, unsigned listen_port);

static int socket_worker(wf_stream *s, unsigned listen_port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(wf_stream_fd(s), (struct sockaddr *)&ss, &len) != 0)
		return -1;
	return wf__local_peer_worker((struct sockaddr *)&ss, listen_port);
}

/* Starts a server and opens PEER_CONNS connections to it, holding them
 * all, each from the next worker in turn (round_robin: the task pinned
 * there) or from wherever the task is; checks that each was served on the
 * worker its client socket lives on, and gives the per-worker client
 * counts. */
static void open_peers(bool round_robin, int on[PEER_WORKERS])
{
	struct peers p;
	memset(&p, 0, sizeof(p));
	for (int w = 0; w < PEER_WORKERS; w++)
		on[w] = 0;
	wf_server *srv;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, peer_handler, &p, NULL, &srv), 0))
		return;
	wf_stream *ss[PEER_CONNS];
	int client_on[PEER_CONNS];
	int open = 0;
	for (; open < PEER_CONNS; open++) {
		if (round_robin) {
			CHECK_RC(wf_move_to_worker((unsigned)(open % PEER_WORKERS)), 0);
			CHECK_RC(wf_pin(true), 0);
		}
		int rc = wf_open_connection("127.0.0.1", (unsigned)wf_server_port(srv), 10000, &ss[open]);
		if (!CHECK_RC(rc, 0))
			break;
		client_on[open] = socket_worker(ss[open], (unsigned)wf_server_port(srv));
		if (round_robin) {
			CHECK_EQ(wf_worker_id(), open % PEER_WORKERS);
			CHECK_EQ(client_on[open], open % PEER_WORKERS);
		}
		unsigned char i = (unsigned char)open, back = 0xff;
		CHECK_RC(wf_stream_write_all(ss[open], &i, 1, 30000), 0);
		CHECK_RC(wf_stream_readexactly(ss[open], &back, 1, NULL, 30000), 0);
		CHECK_EQ(back, i);
	}
	if (round_robin)
		CHECK_RC(wf_pin(false), 0);
	CHECK_EQ(__atomic_load_n(&p.started, __ATOMIC_ACQUIRE), open);
	for (int i = 0; i < open; i++) {
		int served = __atomic_load_n(&p.served_on[i], __ATOMIC_RELAXED);
		if (!CHECK_EQ(served, client_on[i]))
			fprintf(stderr, "connection %d: client on worker %d, served on %d\n", i,
				client_on[i], served);
		if (client_on[i] >= 0 && client_on[i] < PEER_WORKERS)
			on[client_on[i]]++;
	}
	for (int i = 0; i < open; i++)
		CHECK_RC(wf_stream_close(ss[i], 5000), 0);
	CHECK_RC(wf_server_close(srv), 0);
	CHECK_RC(wf_server_wait_closed(srv, 30000), 0);
}

/* A client task of the server's own runtime has its connection served on
 * the worker its socket lives on, whatever CPU the threads run on (three
 * workers here, on however many CPUs the machine has). */
static void *local_peer_main(void *arg)
{
	(void)arg;
	int on[PEER_WORKERS];
	open_peers(true, on);
	for (int w = 0; w < PEER_WORKERS; w++)
		CHECK_EQ(on[w], PEER_CONNS / PEER_WORKERS);
	return NULL;
}

Test(io_server, a_connection_from_this_runtime_is_served_on_its_clients_worker, .timeout = 60)
{
	run_weft(PEER_WORKERS, local_peer_main, NULL);
}

/* A task that is not pinned and opens many connections has them spread
 * over the workers (it moves to the one with the fewest sockets before it
 * connects), and each is still served on its client's worker. */
static void *connect_spread_main(void *arg)
{
	(void)arg;
	int on[PEER_WORKERS];
	open_peers(false, on);
	int lo = PEER_CONNS, hi = 0;
	for (int w = 0; w < PEER_WORKERS; w++) {
		lo = on[w] < lo ? on[w] : lo;
		hi = on[w] > hi ? on[w] : hi;
	}
	/* Each connection is two sockets on its worker; a worker takes the
	 * next one while it holds at most two sockets over the fewest. */
	if (!CHECK(hi <= lo + 2))
		fprintf(stderr, "clients per worker: %d %d %d\n", on[0], on[1], on[2]);
	return NULL;
}

Test(io_server, connections_a_task_opens_spread_over_the_workers, .timeout = 60)
{
	run_weft(PEER_WORKERS, connect_spread_main, NULL);
}

/* ---- options, errors, stale handles ------------------------------------------------- */

static void *errors_main(void *arg)
{
	wf_server *srv;
	wf_server_opts o = WF_SERVER_OPTS_INIT;
	CHECK_RC(wf_start_server("127.0.0.1", 0, NULL, NULL, NULL, &srv), WF_EINVAL);
	CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_start_server("127.0.0.1", 70000, echo_handler, NULL, NULL, &srv), WF_EINVAL);
	o.reserved[2] = 1;
	CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, &o, &srv), WF_EINVAL);
	o = (wf_server_opts)WF_SERVER_OPTS_INIT;
	o.reserved_bytes[0] = 1;
	CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, &o, &srv), WF_EINVAL);
	o = (wf_server_opts)WF_SERVER_OPTS_INIT;
	o.backlog = -1;
	CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, &o, &srv), WF_EINVAL);
	CHECK_RC(wf_start_server("nonexistent.invalid", 0, echo_handler, NULL, NULL, &srv), WF_ENONAME);

	/* A port another socket holds. */
	unsigned port;
	int lfd = plain_listener(false, 4, &port);
	CHECK_RC(wf_start_server("127.0.0.1", port, echo_handler, NULL, NULL, &srv), -EADDRINUSE);
	close(lfd);

	/* Unix: bad paths; a file that is not a socket is left alone. */
	char path[108];
	CHECK_RC(wf_start_unix_server("", echo_handler, NULL, NULL, &srv), WF_EINVAL);
	char lng[200];
	memset(lng, 'x', sizeof(lng) - 1);
	lng[sizeof(lng) - 1] = '\0';
	CHECK_RC(wf_start_unix_server(lng, echo_handler, NULL, NULL, &srv), WF_EINVAL);
	unix_path(path, sizeof(path), "file");
	FILE *f = fopen(path, "w");
	if (CHECK(f != NULL)) {
		fputs("keep", f);
		fclose(f);
		CHECK_RC(wf_start_unix_server(path, echo_handler, NULL, NULL, &srv), -EADDRINUSE);
		struct stat st;
		CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 4);
		unlink(path);
	}
	/* A socket file left behind is replaced. */
	unix_path(path, sizeof(path), "stale");
	if (CHECK_RC(wf_start_unix_server(path, echo_handler, NULL, NULL, &srv), 0)) {
		wf_server *srv2;
		CHECK_RC(wf_start_unix_server(path, echo_handler, NULL, NULL, &srv2), 0);
		wf_stream *s;
		CHECK_RC(wf_open_unix_connection(path, 5000, &s), 0);
		CHECK(echo_once(s, 10000));
		CHECK_RC(wf_stream_close(s, 5000), 0);
		CHECK_RC(wf_server_close(srv2), 0);
		CHECK_RC(wf_server_wait_closed(srv2, 10000), 0);
		CHECK_RC(wf_server_close(srv), 0);
		CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
	}

	/* Stale handles. */
	if (CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, NULL, &srv), 0)) {
		CHECK_RC(wf_server_close(srv), 0);
		CHECK_RC(wf_server_wait_closed(srv, 10000), 0);
		CHECK_RC(wf_server_port(srv), WF_EINVAL);
		CHECK_RC(wf_server_close(srv), WF_EINVAL);
		CHECK_RC(wf_server_close_clients(srv), WF_EINVAL);
		CHECK_RC(wf_server_abort_clients(srv), WF_EINVAL);
		CHECK_RC(wf_server_wait_closed(srv, 0), WF_EINVAL);
		CHECK_EQ(wf_server_connections(srv), 0);
		/* A new server in the freed slot: the old handle stays stale. */
		wf_server *srv2;
		if (CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, NULL, &srv2), 0)) {
			CHECK_RC(wf_server_close(srv), WF_EINVAL);
			CHECK(wf_server_port(srv2) > 0);
			CHECK_RC(wf_server_close(srv2), 0);
			CHECK_RC(wf_server_wait_closed(srv2, 10000), 0);
		}
	}
	CHECK_RC(wf_server_port(NULL), WF_EINVAL);
	CHECK_RC(wf_server_close(NULL), WF_EINVAL);
	CHECK_RC(wf_server_wait_closed(NULL, 0), WF_EINVAL);
	return NULL;
}

Test(io_server, bad_options_errors_and_stale_handles, .timeout = 60)
{
	run_weft(2, errors_main, NULL);
}

/* wait_closed is [task]; the [any] calls work from a plain thread. */
struct plain_srv {
	wf_server *srv;
};

static void *plain_server_thread(void *arg)
{
	struct plain_srv *p = arg;
	CHECK_RC(wf_server_wait_closed(p->srv, 0), WF_ENOTTASK);
	CHECK(wf_server_port(p->srv) > 0);
	CHECK_RC(wf_server_close_clients(p->srv), 0);
	CHECK_RC(wf_server_close(p->srv), 0);
	return NULL;
}

static void *plain_server_main(void *arg)
{
	struct plain_srv p;
	if (!CHECK_RC(wf_start_server("127.0.0.1", 0, echo_handler, NULL, NULL, &p.srv), 0))
		return NULL;
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, plain_server_thread, &p), 0);
	pthread_join(th, NULL);
	CHECK_RC(wf_server_wait_closed(p.srv, 10000), 0);
	return NULL;
}

Test(io_server, from_a_plain_thread, .timeout = 30)
{
	run_weft(2, plain_server_main, NULL);
}
