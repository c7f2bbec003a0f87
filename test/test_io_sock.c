/*
 * Raw sockets and readiness waits: the tutorial's low-level echo server
 * (accept, recv, sendall), readiness waits that time out, are cancelled
 * (and leave the descriptor usable), or meet a second waiter, pipes,
 * a refused connection, a large sendall to a slow reader, bad input and
 * plain threads. Loopback only.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rt_check.h"
#include "weft.h"

/* A non-blocking TCP socket listening on 127.0.0.1 (any port); *port. */
static int listen_any(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!CHECK(fd >= 0))
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(listen(fd, 128), 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static struct sockaddr_in loopback(unsigned port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	return a;
}

/* A connected non-blocking TCP pair over loopback, made with the calls
 * under test. */
static void tcp_pair(int *client, int *server)
{
	unsigned port;
	int lfd = listen_any(&port);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = loopback(port);
	CHECK_RC(wf_sock_connect(c, (struct sockaddr *)&a, sizeof(a), 5000), 0);
	int s = wf_sock_accept(lfd, NULL, 5000);
	CHECK(s >= 0);
	close(lfd);
	*client = c;
	*server = s;
}

/* ---- the echo server ------------------------------------------------------ */

struct echo {
	int lfd;
	unsigned port;
	int clients;
	int served; /* atomic */
};

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	for (;;) {
		ssize_t n = wf_sock_recv(fd, buf, sizeof(buf), 10000);
		if (n <= 0) {
			CHECK_EQ(n, 0); /* the client shuts down its side */
			break;
		}
		if (!CHECK_RC(wf_sock_sendall(fd, buf, (size_t)n, NULL, 10000), 0))
			break;
	}
	close(fd);
	return NULL;
}

static void *echo_server(void *arg)
{
	struct echo *e = arg;
	wf_task *conns[64];
	for (int i = 0; i < e->clients; i++) {
		wf_addr peer;
		int fd = wf_sock_accept(e->lfd, &peer, 10000);
		if (!CHECK(fd >= 0))
			return NULL;
		CHECK_EQ(peer.ss.ss_family, AF_INET);
		char text[64];
		CHECK(wf_addr_format(&peer, text, sizeof(text)) > 0);
		CHECK(strncmp(text, "127.0.0.1:", 10) == 0);
		/* The new descriptor is non-blocking and close-on-exec. */
		CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
		CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		conns[i] = wf_spawn(echo_conn, (void *)(intptr_t)fd);
	}
	for (int i = 0; i < e->clients; i++)
		CHECK_RC(wf_join(conns[i], NULL), 0);
	return NULL;
}

static void *echo_client(void *arg)
{
	struct echo *e = arg;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = loopback(e->port);
	if (!CHECK_RC(wf_sock_connect(fd, (struct sockaddr *)&a, sizeof(a), 10000), 0)) {
		close(fd);
		return NULL;
	}
	uint64_t seed = (uintptr_t)wf_current() | 1;
	char msg[3000], back[3000];
	for (int round = 0; round < 50; round++) {
		size_t n = 1 + rng_next(&seed) % sizeof(msg);
		for (size_t i = 0; i < n; i++)
			msg[i] = (char)rng_next(&seed);
		size_t sent = 0;
		CHECK_RC(wf_sock_sendall(fd, msg, n, &sent, 10000), 0);
		CHECK_EQ(sent, n);
		size_t got = 0;
		while (got < n) {
			ssize_t r = wf_sock_recv(fd, back + got, n - got, 10000);
			if (!CHECK(r > 0))
				break;
			got += (size_t)r;
		}
		if (!CHECK(got == n && memcmp(msg, back, n) == 0))
			break;
	}
	shutdown(fd, SHUT_WR);
	char c;
	CHECK_EQ(wf_sock_recv(fd, &c, 1, 10000), 0); /* the server closes too */
	close(fd);
	__atomic_fetch_add(&e->served, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *echo_main(void *arg)
{
	struct echo e = {.clients = 16};
	e.lfd = listen_any(&e.port);
	wf_task *srv = wf_spawn(echo_server, &e);
	wf_task *cl[16];
	for (int i = 0; i < e.clients; i++)
		cl[i] = wf_spawn(echo_client, &e);
	for (int i = 0; i < e.clients; i++)
		CHECK_RC(wf_join(cl[i], NULL), 0);
	CHECK_RC(wf_join(srv, NULL), 0);
	CHECK_EQ(e.served, e.clients);
	close(e.lfd);
	return NULL;
}

Test(io_sock, echo_server_with_accept_recv_sendall)
{
	run_weft(1, echo_main, NULL);
	run_weft(4, echo_main, NULL);
}

/* ---- timeouts ------------------------------------------------------------ */

static void *timeout_main(void *arg)
{
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_RC(wf_wait_readable(sv[0], 0), WF_ETIMEDOUT);
	CHECK_RC(wf_wait_readable(sv[0], 20), WF_ETIMEDOUT);
	CHECK_RC(wf_wait_writable(sv[0], 0), 0);
	CHECK_RC(wf_wait_writable(sv[0], 20), 0);
	char buf[8];
	CHECK_EQ(wf_sock_recv(sv[0], buf, sizeof(buf), 0), WF_ETIMEDOUT);
	CHECK_EQ(wf_sock_recv(sv[0], buf, sizeof(buf), 20), WF_ETIMEDOUT);
	CHECK_EQ(write(sv[1], "x", 1), 1);
	CHECK_RC(wf_wait_readable(sv[0], 0), 0);
	CHECK_RC(wf_wait_readable(sv[0], 20), 0);
	CHECK_EQ(wf_sock_recv(sv[0], buf, sizeof(buf), 0), 1);
	close(sv[0]);
	close(sv[1]);

	unsigned port;
	int lfd = listen_any(&port);
	wf_addr peer;
	CHECK_RC(wf_sock_accept(lfd, &peer, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_sock_accept(lfd, &peer, 20), WF_ETIMEDOUT);
	close(lfd);
	return NULL;
}

Test(io_sock, timeouts)
{
	run_weft(2, timeout_main, NULL);
}

/* ---- cancellation, and a second waiter ------------------------------------ */

struct waiter {
	int fd;
	int started; /* atomic */
	int rc;
};

static void *wait_child(void *arg)
{
	struct waiter *w = arg;
	__atomic_store_n(&w->started, 1, __ATOMIC_RELEASE);
	w->rc = wf_wait_readable(w->fd, WF_FOREVER);
	return NULL;
}

static void *recv_child(void *arg)
{
	struct waiter *w = arg;
	char c;
	__atomic_store_n(&w->started, 1, __ATOMIC_RELEASE);
	w->rc = (int)wf_sock_recv(w->fd, &c, 1, WF_FOREVER);
	return NULL;
}

/* One worker: once the child has started, it ran up to its wait (it
 * suspends nowhere else), so it is registered when main goes on. */
static void wait_until_started(struct waiter *w)
{
	while (!__atomic_load_n(&w->started, __ATOMIC_ACQUIRE))
		wf_yield();
}

static void *cancel_main(void *arg)
{
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	struct waiter w = {.fd = sv[0]};
	wf_task *t = wf_spawn(wait_child, &w);
	wait_until_started(&w);
	/* A second waiter on the same descriptor, on the same worker. */
	CHECK_RC(wf_wait_readable(sv[0], 20), WF_EBUSY);
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(w.rc, WF_ECANCELED);
	/* The descriptor is free again: a new wait registers it. */
	CHECK_RC(wf_wait_readable(sv[0], 10), WF_ETIMEDOUT);
	CHECK_EQ(write(sv[1], "y", 1), 1);
	CHECK_RC(wf_wait_readable(sv[0], 5000), 0);
	char c;
	CHECK_EQ(wf_sock_recv(sv[0], &c, 1, 5000), 1);

	/* A woken waiter: the second wait after it is fine too. */
	struct waiter w2 = {.fd = sv[0]};
	t = wf_spawn(wait_child, &w2);
	wait_until_started(&w2);
	CHECK_EQ(write(sv[1], "z", 1), 1);
	CHECK_RC(wf_join(t, NULL), 0);
	CHECK_RC(w2.rc, 0);
	CHECK_RC(wf_wait_readable(sv[0], 0), 0);

	/* Cancelled in a recv as well. */
	struct waiter w3 = {.fd = sv[0]};
	CHECK_EQ(wf_sock_recv(sv[0], &c, 1, 0), 1);
	t = wf_spawn(recv_child, &w3);
	wait_until_started(&w3);
	wf_cancel(t);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(w3.rc, WF_ECANCELED);
	close(sv[0]);
	close(sv[1]);
	return NULL;
}

Test(io_sock, cancellation_and_a_second_waiter)
{
	run_weft(1, cancel_main, NULL);
}

/* ---- pipes ----------------------------------------------------------------- */

struct pipe_test {
	int rfd, wfd;
	size_t total; /* bytes the writer wrote */
};

static void *pipe_reader(void *arg)
{
	struct pipe_test *p = arg;
	char *buf = malloc(65536);
	size_t got = 0;
	for (;;) {
		if (!CHECK_RC(wf_wait_readable(p->rfd, 10000), 0))
			break;
		ssize_t n = read(p->rfd, buf, 65536);
		if (n == 0)
			break;
		if (n < 0) {
			CHECK_EQ(errno, EAGAIN);
			continue;
		}
		got += (size_t)n;
	}
	free(buf);
	return (void *)(uintptr_t)got;
}

static void *pipe_main(void *arg)
{
	int fds[2];
	CHECK_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	struct pipe_test p = {.rfd = fds[0], .wfd = fds[1]};
	CHECK_RC(wf_wait_readable(p.rfd, 10), WF_ETIMEDOUT);
	CHECK_RC(wf_wait_writable(p.wfd, 10), 0);
	/* Fill the pipe: then it is not writable. */
	char chunk[4096];
	memset(chunk, 'p', sizeof(chunk));
	ssize_t n;
	while ((n = write(p.wfd, chunk, sizeof(chunk))) > 0)
		p.total += (size_t)n;
	CHECK_EQ(errno, EAGAIN);
	CHECK_RC(wf_wait_writable(p.wfd, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_wait_writable(p.wfd, 10), WF_ETIMEDOUT);
	CHECK_RC(wf_wait_readable(p.rfd, 0), 0);
	/* A reader drains it; the writer waits for room each time. */
	wf_task *r = wf_spawn(pipe_reader, &p);
	for (int i = 0; i < 256; i++) {
		if (!CHECK_RC(wf_wait_writable(p.wfd, 10000), 0))
			break;
		n = write(p.wfd, chunk, sizeof(chunk));
		if (n > 0)
			p.total += (size_t)n;
		else
			CHECK_EQ(errno, EAGAIN);
	}
	close(p.wfd);
	void *got = NULL;
	CHECK_RC(wf_join(r, &got), 0);
	CHECK_EQ((size_t)(uintptr_t)got, p.total);
	close(p.rfd);
	return NULL;
}

Test(io_sock, pipe)
{
	run_weft(1, pipe_main, NULL);
	run_weft(4, pipe_main, NULL);
}

/* ---- connect errors ------------------------------------------------------- */

static void *refused_main(void *arg)
{
	/* A port that was just free: bound, never listened on, closed. */
	int tmp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = loopback(0);
	socklen_t len = sizeof(a);
	CHECK_EQ(bind(tmp, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(getsockname(tmp, (struct sockaddr *)&a, &len), 0);
	close(tmp);

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK_RC(wf_sock_connect(fd, (struct sockaddr *)&a, sizeof(a), 5000), -ECONNREFUSED);
	close(fd);

	/* IPv6 loopback, and a Unix socket path that does not exist. */
	int fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = a.sin_port,
				  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	CHECK_RC(wf_sock_connect(fd6, (struct sockaddr *)&a6, sizeof(a6), 5000), -ECONNREFUSED);
	close(fd6);
	CHECK_RC(wf_sock_connect(-1, (struct sockaddr *)&a, sizeof(a), 5000), -EBADF);
	CHECK_RC(wf_sock_connect(0, NULL, 0, 5000), WF_EINVAL);
	return NULL;
}

Test(io_sock, connect_to_a_closed_port_is_refused)
{
	run_weft(2, refused_main, NULL);
}

/* ---- a large sendall ----------------------------------------------------- */

#define BIG ((size_t)10 * 1024 * 1024)

static void *slow_reader(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *buf = malloc(65536);
	size_t got = 0;
	bool same = true;
	int i = 0;
	while (got < BIG) {
		ssize_t n = wf_sock_recv(fd, buf, 65536, 30000);
		if (!CHECK(n > 0))
			break;
		for (ssize_t k = 0; k < n; k++)
			same &= buf[k] == (char)((got + (size_t)k) * 7);
		got += (size_t)n;
		/* Slow: the writer finds the socket full again and again. */
		if (++i % 8 == 0)
			wf_sleep(1);
	}
	CHECK(same);
	free(buf);
	return (void *)(uintptr_t)got;
}

static void *sendall_main(void *arg)
{
	int c, s;
	tcp_pair(&c, &s);
	char *big = malloc(BIG);
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)(i * 7);
	wf_task *r = wf_spawn(slow_reader, (void *)(intptr_t)s);
	size_t sent = 0;
	CHECK_RC(wf_sock_sendall(c, big, BIG, &sent, 60000), 0);
	CHECK_EQ(sent, BIG);
	void *got = NULL;
	CHECK_RC(wf_join(r, &got), 0);
	CHECK_EQ((size_t)(uintptr_t)got, BIG);

	/* Nobody reads: the sendall times out, and says how much went. */
	sent = 0;
	CHECK_RC(wf_sock_sendall(c, big, BIG, &sent, 50), WF_ETIMEDOUT);
	CHECK(sent > 0 && sent < BIG);
	/* With a zero timeout, a send either takes some bytes at once (the
	 * kernel may grow its buffers meanwhile) or times out; the socket
	 * fills up in the end. */
	ssize_t sr = 0;
	for (int i = 0; i < 1000 && sr >= 0; i++)
		sr = wf_sock_send(c, big, BIG, 0);
	CHECK_EQ(sr, WF_ETIMEDOUT);
	/* The peer goes away: -EPIPE or -ECONNRESET, never SIGPIPE. */
	close(s);
	ssize_t rc = 0;
	for (int i = 0; i < 100 && rc >= 0; i++)
		rc = wf_sock_send(c, big, 65536, 1000);
	CHECK(rc == -EPIPE || rc == -ECONNRESET);
	close(c);
	free(big);
	return NULL;
}

Test(io_sock, sendall_of_10_mb_to_a_slow_reader)
{
	run_weft(2, sendall_main, NULL);
}

/* ---- bad input and plain threads ---------------------------------------- */

static void *bad_main(void *arg)
{
	CHECK_RC(wf_wait_readable(-1, 10), -EBADF);
	CHECK_RC(wf_wait_writable(-1, 0), -EBADF);
	/* A regular file: epoll cannot wait on it. */
	FILE *f = tmpfile();
	CHECK_RC(wf_wait_readable(fileno(f), 10), -EPERM);
	fclose(f);
	char c;
	CHECK(wf_sock_recv(-1, &c, 1, 10) == -EBADF);
	CHECK(wf_sock_send(-1, &c, 1, 10) == -EBADF);
	size_t sent = 99;
	CHECK_RC(wf_sock_sendall(-1, &c, 1, &sent, 10), -EBADF);
	CHECK_EQ(sent, 0);
	CHECK_RC(wf_sock_accept(-1, NULL, 10), -EBADF);
	/* Not a socket. */
	int fds[2];
	CHECK_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	CHECK(wf_sock_recv(fds[0], &c, 1, 10) == -ENOTSOCK);
	close(fds[0]);
	close(fds[1]);
	return NULL;
}

Test(io_sock, bad_input)
{
	run_weft(1, bad_main, NULL);
}

Test(io_sock, plain_thread)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	char c = 'q';
	cr_assert_eq(wf_wait_readable(sv[0], 10), WF_ENOTTASK);
	cr_assert_eq(wf_wait_writable(sv[0], 10), WF_ENOTTASK);
	cr_assert_eq(wf_sock_accept(sv[0], NULL, 10), WF_ENOTTASK);
	cr_assert_eq(wf_sock_connect(sv[0], (struct sockaddr *)&sv, sizeof(sv), 10), WF_ENOTTASK);
	cr_assert_eq(wf_sock_recv(sv[0], &c, 1, 10), WF_ENOTTASK);
	cr_assert_eq(wf_sock_send(sv[0], &c, 1, 10), WF_ENOTTASK);
	size_t sent = 99;
	cr_assert_eq(wf_sock_sendall(sv[0], &c, 1, &sent, 10), WF_ENOTTASK);
	cr_assert_eq(sent, 0);
	close(sv[0]);
	close(sv[1]);
}
