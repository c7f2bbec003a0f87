/*
 * UDP endpoints: an echo of 1000 datagrams between endpoints on two
 * workers (none lost on loopback with a bounded window), several
 * receivers on one endpoint, timeouts, a close that wakes waiting
 * receivers (from a task and from a plain thread), IPv6, stale handles,
 * bad input and plain threads. Loopback only.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

#include "rt_check.h"
#include "weft.h"

/* ---- echo across workers -------------------------------------------------- */

#define ECHO_N 1000
#define WINDOW 16

struct echo {
	wf_addr server; /* set by the server task before `ready` */
	wf_event *ready;
};

static void *echo_server(void *arg)
{
	struct echo *e = arg;
	CHECK_RC(wf_move_to_worker(1), 0);
	CHECK_RC(wf_pin(true), 0);
	wf_udp *u = NULL;
	if (!CHECK_RC(wf_udp_open("127.0.0.1", 0, &u), 0))
		return NULL;
	CHECK_RC(wf_udp_local_addr(u, &e->server), 0);
	CHECK_RC(wf_event_set(e->ready), 0);
	for (int i = 0; i < ECHO_N; i++) {
		char buf[64];
		wf_addr from;
		ssize_t n = wf_udp_recvfrom(u, buf, sizeof(buf), &from, 20000);
		if (!CHECK(n > 0))
			break;
		CHECK_EQ(wf_worker_id(), 1);
		if (!CHECK_RC(wf_udp_sendto(u, buf, (size_t)n, &from, 20000), 0))
			break;
	}
	CHECK_RC(wf_udp_close(u), 0);
	return NULL;
}

static void *echo_main(void *arg)
{
	struct echo e = {0};
	CHECK_RC(wf_event_new(&e.ready), 0);
	CHECK_RC(wf_move_to_worker(0), 0);
	CHECK_RC(wf_pin(true), 0);
	wf_task *srv = wf_spawn(echo_server, &e);
	CHECK_RC(wf_event_wait(e.ready, 20000), 0);
	wf_udp *u = NULL;
	CHECK_RC(wf_udp_open(NULL, 0, &u), 0); /* 0.0.0.0, any port */
	static bool seen[ECHO_N];
	memset(seen, 0, sizeof(seen));
	int next = 0, got = 0;
	while (got < ECHO_N && !check_any_failed()) {
		/* At most WINDOW datagrams in flight: the receiving socket's
		 * buffer cannot overflow, so loopback loses none. */
		while (next < ECHO_N && next - got < WINDOW) {
			char msg[32];
			int len = snprintf(msg, sizeof(msg), "dgram %d", next);
			CHECK_RC(wf_udp_sendto(u, msg, (size_t)len, &e.server, 20000), 0);
			next++;
		}
		char buf[64];
		wf_addr from;
		ssize_t n = wf_udp_recvfrom(u, buf, sizeof(buf) - 1, &from, 20000);
		if (!CHECK(n > 0))
			break;
		CHECK_EQ(wf_worker_id(), 0);
		CHECK(from.len == e.server.len && memcmp(&from.ss, &e.server.ss, from.len) == 0);
		buf[n] = '\0';
		int k = -1;
		if (CHECK(sscanf(buf, "dgram %d", &k) == 1 && k >= 0 && k < ECHO_N)) {
			CHECK(!seen[k]);
			seen[k] = true;
		}
		got++;
	}
	CHECK_EQ(got, ECHO_N);
	CHECK_RC(wf_join(srv, NULL), 0);
	CHECK_RC(wf_udp_close(u), 0);
	CHECK_RC(wf_event_free(e.ready), 0);
	return NULL;
}

Test(io_udp, echo_of_1000_datagrams_across_workers)
{
	run_weft(2, echo_main, NULL);
	run_weft(4, echo_main, NULL);
}

/* ---- several receivers on one endpoint ----------------------------------- */

#define MANY_N 400

struct many {
	wf_udp *u;
	int received; /* atomic */
	int hits[MANY_N]; /* atomic */
};

static void *many_receiver(void *arg)
{
	struct many *m = arg;
	for (;;) {
		char buf[16];
		ssize_t n = wf_udp_recvfrom(m->u, buf, sizeof(buf) - 1, NULL, 20000);
		/* The close wakes a receiver that waits (WF_ECLOSED); one
		 * that was between two calls finds the handle stale. */
		if (n == WF_ECLOSED || n == WF_EINVAL)
			return NULL;
		if (!CHECK_RC((int)n > 0 ? 0 : (int)n, 0))
			return NULL;
		buf[n] = '\0';
		int k = atoi(buf);
		if (CHECK(k >= 0 && k < MANY_N))
			__atomic_fetch_add(&m->hits[k], 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&m->received, 1, __ATOMIC_RELEASE);
	}
}

static void *many_main(void *arg)
{
	struct many *m = calloc(1, sizeof(*m));
	CHECK_RC(wf_udp_open("localhost", 0, &m->u), 0);
	wf_addr to;
	CHECK_RC(wf_udp_local_addr(m->u, &to), 0);
	CHECK_EQ(to.ss.ss_family, AF_INET);
	wf_udp *tx = NULL;
	CHECK_RC(wf_udp_open("127.0.0.1", 0, &tx), 0);
	enum { R = 8 };
	wf_task *rs[R];
	for (int i = 0; i < R; i++)
		rs[i] = wf_spawn(many_receiver, m);
	for (int i = 0; i < MANY_N && !check_any_failed(); i++) {
		char msg[16];
		int len = snprintf(msg, sizeof(msg), "%d", i);
		CHECK_RC(wf_udp_sendto(tx, msg, (size_t)len, &to, 20000), 0);
		/* A bounded window here too, so the socket's buffer holds
		 * every datagram until a receiver takes it. */
		uint64_t t0 = mono_ns();
		while (i + 1 - __atomic_load_n(&m->received, __ATOMIC_ACQUIRE) >= 32 &&
		       mono_ns() - t0 < 20000000000ull)
			wf_sleep(1);
	}
	uint64_t t0 = mono_ns();
	while (__atomic_load_n(&m->received, __ATOMIC_ACQUIRE) < MANY_N &&
	       mono_ns() - t0 < 20000000000ull)
		wf_sleep(1);
	/* Closing wakes every receiver still waiting. */
	CHECK_RC(wf_udp_close(m->u), 0);
	for (int i = 0; i < R; i++)
		CHECK_RC(wf_join(rs[i], NULL), 0);
	CHECK_EQ(m->received, MANY_N);
	for (int i = 0; i < MANY_N; i++)
		CHECK_EQ(m->hits[i], 1);
	CHECK_RC(wf_udp_close(tx), 0);
	free(m);
	return NULL;
}

Test(io_udp, several_receivers_each_datagram_to_one)
{
	run_weft(1, many_main, NULL);
	run_weft(4, many_main, NULL);
}

/* ---- timeouts, close, stale handles --------------------------------------- */

struct recv_wait {
	wf_udp *u;
	int started; /* atomic */
	int rc;
};

static void *recv_waiter(void *arg)
{
	struct recv_wait *w = arg;
	char buf[8];
	__atomic_store_n(&w->started, 1, __ATOMIC_RELEASE);
	w->rc = (int)wf_udp_recvfrom(w->u, buf, sizeof(buf), NULL, WF_FOREVER);
	return NULL;
}

static void *close_main(void *arg)
{
	wf_udp *u = NULL;
	CHECK_RC(wf_udp_open("127.0.0.1", 0, &u), 0);
	char buf[8];
	wf_addr from;
	CHECK_EQ(wf_udp_recvfrom(u, buf, sizeof(buf), &from, 0), WF_ETIMEDOUT);
	CHECK_EQ(wf_udp_recvfrom(u, buf, sizeof(buf), &from, 20), WF_ETIMEDOUT);

	/* One worker: a started receiver has reached its wait. */
	struct recv_wait w[3];
	wf_task *ts[3];
	for (int i = 0; i < 3; i++) {
		w[i] = (struct recv_wait){.u = u};
		ts[i] = wf_spawn(recv_waiter, &w[i]);
	}
	for (int i = 0; i < 3; i++)
		while (!__atomic_load_n(&w[i].started, __ATOMIC_ACQUIRE))
			wf_yield();
	CHECK_RC(wf_udp_close(u), 0);
	for (int i = 0; i < 3; i++) {
		CHECK_RC(wf_join(ts[i], NULL), 0);
		CHECK_RC(w[i].rc, WF_ECLOSED);
	}

	/* The handle is stale for good. */
	wf_addr a = {0};
	CHECK_EQ(wf_udp_recvfrom(u, buf, sizeof(buf), NULL, 0), WF_EINVAL);
	CHECK_RC(wf_udp_sendto(u, "x", 1, &from, 0), WF_EINVAL);
	CHECK_RC(wf_udp_local_addr(u, &a), WF_EINVAL);
	CHECK_RC(wf_udp_close(u), WF_EINVAL);
	/* A new endpoint may take the slot: the old handle stays stale. */
	wf_udp *v = NULL;
	CHECK_RC(wf_udp_open("127.0.0.1", 0, &v), 0);
	CHECK_RC(wf_udp_local_addr(u, &a), WF_EINVAL);
	CHECK_RC(wf_udp_close(u), WF_EINVAL);
	CHECK_RC(wf_udp_local_addr(v, &a), 0);
	CHECK_RC(wf_udp_close(v), 0);
	return NULL;
}

Test(io_udp, timeouts_close_and_stale_handles)
{
	run_weft(1, close_main, NULL);
}

/* A plain thread closes while a task on another worker waits. */
static void *closer_thread(void *arg)
{
	struct recv_wait *w = arg;
	while (!__atomic_load_n(&w->started, __ATOMIC_ACQUIRE))
		usleep(1000);
	usleep(20000); /* the receiver most likely waits by now; either way it ends */
	CHECK_RC(wf_udp_close(w->u), 0);
	return NULL;
}

static void *thread_close_main(void *arg)
{
	struct recv_wait w = {0};
	CHECK_RC(wf_udp_open("127.0.0.1", 0, &w.u), 0);
	wf_task *t = wf_spawn(recv_waiter, &w);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, closer_thread, &w), 0);
	CHECK_RC(wf_join(t, NULL), 0);
	pthread_join(th, NULL);
	/* Closed before or during the call: WF_ECLOSED while it was in it,
	 * WF_EINVAL if the close came before the call began. */
	CHECK(w.rc == WF_ECLOSED || w.rc == WF_EINVAL);
	return NULL;
}

Test(io_udp, close_from_a_plain_thread)
{
	run_weft(2, thread_close_main, NULL);
}

/* ---- IPv6 ---------------------------------------------------------------- */

static void *v6_main(void *arg)
{
	wf_udp *a = NULL, *b = NULL;
	if (!CHECK_RC(wf_udp_open("::1", 0, &a), 0))
		return NULL;
	CHECK_RC(wf_udp_open("::1", 0, &b), 0);
	wf_addr aa, ba;
	CHECK_RC(wf_udp_local_addr(a, &aa), 0);
	CHECK_RC(wf_udp_local_addr(b, &ba), 0);
	CHECK_EQ(aa.ss.ss_family, AF_INET6);
	char text[64];
	CHECK(wf_addr_format(&aa, text, sizeof(text)) > 0);
	CHECK(strncmp(text, "[::1]:", 6) == 0);
	CHECK_RC(wf_udp_sendto(b, "hello6", 6, &aa, 5000), 0);
	char buf[16];
	wf_addr from;
	CHECK_EQ(wf_udp_recvfrom(a, buf, sizeof(buf), &from, 5000), 6);
	CHECK(memcmp(buf, "hello6", 6) == 0);
	CHECK(from.len == ba.len && memcmp(&from.ss, &ba.ss, ba.len) == 0);
	/* Truncated to cap: the count is what landed in buf. */
	CHECK_RC(wf_udp_sendto(b, "0123456789", 10, &aa, 5000), 0);
	CHECK_EQ(wf_udp_recvfrom(a, buf, 4, NULL, 5000), 4);
	CHECK(memcmp(buf, "0123", 4) == 0);
	/* "::" binds every address, IPv4 included (dual-stack). */
	wf_udp *any = NULL;
	CHECK_RC(wf_udp_open("::", 0, &any), 0);
	wf_addr anya;
	CHECK_RC(wf_udp_local_addr(any, &anya), 0);
	CHECK_EQ(anya.ss.ss_family, AF_INET6);
	CHECK_RC(wf_udp_close(any), 0);
	CHECK_RC(wf_udp_close(a), 0);
	CHECK_RC(wf_udp_close(b), 0);
	return NULL;
}

Test(io_udp, ipv6_loopback)
{
	run_weft(2, v6_main, NULL);
}

/* ---- bad input, plain threads --------------------------------------------- */

static void *bad_main(void *arg)
{
	wf_udp *u = NULL;
	CHECK_RC(wf_udp_open("127.0.0.1", 70000, &u), WF_EINVAL);
	CHECK_RC(wf_udp_open("127.0.0.1", 0, NULL), WF_EINVAL);
	CHECK_RC(wf_udp_open("127.0.0.1", 0, &u), 0);
	wf_addr a;
	CHECK_RC(wf_udp_local_addr(u, &a), 0);
	unsigned port = ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
	wf_udp *dup = NULL;
	CHECK_RC(wf_udp_open("127.0.0.1", port, &dup), -EADDRINUSE);
	CHECK(dup == NULL);
	CHECK_RC(wf_udp_sendto(u, "x", 1, NULL, 10), WF_EINVAL);
	CHECK_RC(wf_udp_local_addr(u, NULL), WF_EINVAL);
	/* An IPv4 socket cannot send to an IPv6 address. */
	wf_addr v6 = {0};
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&v6.ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(9);
	in6->sin6_addr = in6addr_loopback;
	v6.len = sizeof(*in6);
	CHECK(wf_udp_sendto(u, "x", 1, &v6, 10) < 0);
	CHECK_RC(wf_udp_close(u), 0);
	CHECK_RC(wf_udp_close(NULL), WF_EINVAL);
	CHECK_RC(wf_udp_local_addr(NULL, &a), WF_EINVAL);
	CHECK_EQ(wf_udp_recvfrom(NULL, &a, 1, NULL, 0), WF_EINVAL);
	return NULL;
}

Test(io_udp, bad_input)
{
	run_weft(1, bad_main, NULL);
}

Test(io_udp, plain_thread)
{
	wf_udp *u = NULL;
	cr_assert_eq(wf_udp_open("127.0.0.1", 0, &u), WF_ENOTTASK);
	cr_assert_null(u);
	char c;
	cr_assert_eq(wf_udp_recvfrom((wf_udp *)(uintptr_t)0x1234, &c, 1, NULL, 0), WF_ENOTTASK);
	wf_addr a = {0};
	cr_assert_eq(wf_udp_sendto((wf_udp *)(uintptr_t)0x1234, &c, 1, &a, 0), WF_ENOTTASK);
	cr_assert_eq(wf_udp_close(NULL), WF_EINVAL);
}
