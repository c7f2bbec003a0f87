/*
 * Servers: asyncio's start_server and start_unix_server.
 *
 * A TCP server listens with one SO_REUSEPORT socket per worker (and per
 * address), each with its own accept task pinned to that worker: the
 * kernel spreads new connections over the sockets, so accepts run on
 * every core with no shared acceptor, and each connection's socket is
 * registered in the epoll of the worker that accepted it. The handler task
 * starts there and takes that worker as its home, so its wake-ups come
 * back to the core whose poller watches its socket (a thief may still run
 * it when that worker is busy: the streams work from any worker). A Unix
 * server has one listening socket.
 *
 * Note that SO_REUSEPORT lets another listener of the same user share the
 * port: bind checks cannot report EADDRINUSE against another server that
 * set it too (they do against every other socket).
 *
 * A TLS server (wf_start_tls_server) is the same server whose connection
 * tasks make the TLS handshake (io/tls.c) before they call the handler;
 * the handshake is bounded by the context's handshake timeout, and a
 * connection whose handshake fails is closed without calling it.
 *
 * Running out of descriptors (EMFILE, ENFILE) or memory in accept does not
 * stop the server or spin: the accept task sleeps 5 ms, doubling up to 1 s
 * while it lasts, as Go's net package does, and the connections already
 * accepted go on being served.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "weft.h"

#include "io/io_internal.h"
#include "io/stream.h"
#include "runtime/abi.h"
#include "runtime/clock.h"
#include "runtime/waiting.h"

#define DEFAULT_BACKLOG 511
#define CLOSE_FLUSH_MS 10000
#define BACKOFF_FIRST_MS 5
#define BACKOFF_MAX_MS 1000

typedef struct wf__server wf__server;

typedef struct listener {
	wf__server *srv;
	int fd;
	uint32_t claimed; /* atomic: its accept task started, or close took
			   * the socket first (a task cancelled before it
			   * starts never runs) */
	int worker; /* pinned there; -1: wherever it was started */
	wf_task *task;
} listener;

typedef struct conn {
	wf__server *srv;
	wf_stream *stream;
	unsigned worker;
	struct conn *prev, *next;
} conn;

struct wf__server {
	wf__hdr hdr;
	void *free_link;
	wf__spinlock sl; /* guards what follows */
	wf_conn_handler handler;
	void *arg;
	wf_tls_ctx *tls; /* a reference, or NULL: plain */
	size_t max_conns, limit;
	size_t live;
	size_t reserved; /* accept calls under way that the limit counts */
	bool closed;
	bool freeing;
	int port;
	char *unix_path;
	listener *ls;
	unsigned nls;
	conn *conns;
	size_t *on_worker; /* live connections served by each worker */
	unsigned nworkers;
	wf__waitq waiters; /* wait_closed and paused accept tasks */
};

static wf__htype server_type = WF__HTYPE_INIT(WF__K_SERVER, wf__server);

static wf__server *server_get(const wf_server *h) { return wf__handle_get(h, WF__K_SERVER); }

/* ---- connections -------------------------------------------------------- */

static void release_place(wf__server *srv);

/* A connection is over: it leaves the server's list and count, and
 * whoever waits on the count (wait_closed, a paused accept) looks again. */
static void conn_end(conn *c)
{
	wf__server *srv = c->srv;
	wf__spin_lock(&srv->sl);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	srv->live--;
	srv->on_worker[c->worker]--;
	wf__waitq_fire_all(&srv->waiters, 0, NULL);
	wf__spin_unlock(&srv->sl);
	free(c);
}

static void *conn_main(void *arg)
{
	conn *c = arg;
	wf__server *srv = c->srv;
	/* Started by a thief: go back to the worker whose epoll holds the
	 * socket, and keep it as home. */
	if (wf_worker_id() != (int)c->worker)
		wf_move_to_worker(c->worker);
	wf__task_set_home(true, false);
	if (srv->tls != NULL && wf__tls_accept(c->stream, srv->tls) != 0) {
		wf_stream_close(c->stream, 0);
		conn_end(c);
		return NULL;
	}
	srv->handler(c->stream, srv->arg);
	/* The handler may have closed it (then this is a stale handle). A
	 * cancelled handler (a shutdown) gets no flush. */
	wf_stream_close(c->stream, CLOSE_FLUSH_MS);
	conn_end(c);
	return NULL;
}

/* Whether worker w may take one more connection: not once it serves more
 * than a quarter (and one) over the least loaded worker. */
static bool has_room(const wf__server *srv, size_t fewest, unsigned w)
{
	return srv->on_worker[w] <= fewest + 1 + fewest / 4;
}

/* The worker whose thread runs on the CPU the connection's packets arrive
 * on (SO_INCOMING_CPU: the NIC queue's CPU, or for a peer on this machine
 * the CPU its own thread sent from), or -1: none, or not known (a Unix
 * socket). Its socket buffers are then warm in that core's cache, and when
 * the peer is a task of this runtime both ends sit on one worker: a round
 * trip wakes no other core. */
static int incoming_worker(const wf__server *srv, int fd)
{
	int cpu = -1;
	socklen_t len = sizeof(cpu);
	if (srv->unix_path != NULL || getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &len) != 0)
		return -1;
	int w = wf__worker_on_cpu(cpu);
	return w >= 0 && (unsigned)w < srv->nworkers ? w : -1;
}

/* The worker that serves a new connection (under srv->sl). A peer of
 * this runtime (local, from wf__local_peer_worker) is served where it
 * lives while that worker serves at most twice (and two) as many as the
 * least loaded: the peer's own load is there already, and serving it
 * elsewhere adds a cross-core wake-up to each of its messages; past that
 * bound, one task that opens many connections would still leave the other
 * cores idle. Else `incoming` (incoming_worker), unless it already serves
 * more than its share (one client thread opening every connection would
 * pile them all on its core); else the accepting worker (whose listener
 * the kernel chose), or the least loaded one if the accepting worker is
 * over its share too. */
static unsigned pick_worker(const wf__server *srv, int local, int incoming)
{
	size_t fewest = SIZE_MAX;
	unsigned least = 0;
	for (unsigned i = 0; i < srv->nworkers; i++)
		if (srv->on_worker[i] < fewest) {
			fewest = srv->on_worker[i];
			least = i;
		}
	if (local >= 0 && (unsigned)local < srv->nworkers &&
	    srv->on_worker[local] <= 2 * fewest + 2)
		return (unsigned)local;
	if (incoming >= 0 && has_room(srv, fewest, (unsigned)incoming))
		return (unsigned)incoming;
	int self = wf_worker_id();
	if (self >= 0 && (unsigned)self < srv->nworkers && has_room(srv, fewest, (unsigned)self))
		return (unsigned)self;
	return least;
}

/* Serves the accepted fd; the place reserve_place took becomes the
 * connection's. The handler starts wherever a worker picks it up and
 * moves to the connection's worker (conn_main). */
static void start_conn(wf__server *srv, int fd, const struct sockaddr *peer)
{
	conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		release_place(srv);
		return;
	}
	c->srv = srv;
	int local = wf__local_peer_worker(peer, (unsigned)srv->port);
	int incoming = local < 0 ? incoming_worker(srv, fd) : -1;
	wf__spin_lock(&srv->sl);
	c->worker = pick_worker(srv, local, incoming);
	srv->on_worker[c->worker]++; /* held while the stream is made */
	wf__spin_unlock(&srv->sl);
	if (wf__stream_new_on(fd, true, srv->limit, (int)c->worker, &c->stream) != 0) {
		wf__spin_lock(&srv->sl);
		srv->on_worker[c->worker]--;
		wf__spin_unlock(&srv->sl);
		free(c);
		close(fd);
		release_place(srv);
		return;
	}
	wf__spin_lock(&srv->sl);
	c->next = srv->conns;
	if (c->next != NULL)
		c->next->prev = c;
	srv->conns = c;
	srv->live++;
	if (srv->max_conns != 0)
		srv->reserved--;
	wf__spin_unlock(&srv->sl);
	wf_task *t = wf_spawn(conn_main, c);
	if (t != NULL) {
		wf_detach(t);
		return;
	}
	wf_stream_abort(c->stream);
	conn_end(c);
}

/* ---- accepting ---------------------------------------------------------- */

/* Takes a place under the connection limit for one accept, waiting while
 * the server is full: the accept tasks of several workers must not all
 * see one free place and each fill it. 0 or a wait's code, WF_ECLOSED once
 * closed. */
static int reserve_place(wf__server *srv)
{
	for (;;) {
		wf__spin_lock(&srv->sl);
		if (srv->closed) {
			wf__spin_unlock(&srv->sl);
			return WF_ECLOSED;
		}
		if (srv->max_conns == 0) {
			wf__spin_unlock(&srv->sl);
			return 0;
		}
		if (srv->live + srv->reserved < srv->max_conns) {
			srv->reserved++;
			wf__spin_unlock(&srv->sl);
			return 0;
		}
		wf__waiting wg = {.lock = &srv->sl,
				  .q = &srv->waiters,
				  .what = "server connection limit",
				  .obj = srv,
				  .deadline = WF__NO_DEADLINE};
		int rc = wf__wait_on(&wg);
		if (rc != 0)
			return rc;
	}
}

/* Gives back a place reserve_place took, when no connection came. */
static void release_place(wf__server *srv)
{
	if (srv->max_conns == 0)
		return;
	wf__spin_lock(&srv->sl);
	srv->reserved--;
	wf__waitq_fire_all(&srv->waiters, 0, NULL);
	wf__spin_unlock(&srv->sl);
}

static bool is_closed(wf__server *srv)
{
	wf__spin_lock(&srv->sl);
	bool c = srv->closed;
	wf__spin_unlock(&srv->sl);
	return c;
}

static void *accept_main(void *arg)
{
	listener *l = arg;
	wf__server *srv = l->srv;
	if (__atomic_exchange_n(&l->claimed, 1, __ATOMIC_ACQ_REL))
		return NULL; /* closed before it ran: close took the socket */
	if (l->worker >= 0) {
		wf_move_to_worker((unsigned)l->worker);
		wf_pin(true);
	}
	wf__io *io;
	if (wf__io_open(l->fd, &io) != 0)
		goto out;
	uint64_t backoff = 0;
	for (;;) {
		if (reserve_place(srv) != 0)
			break;
		uint32_t tok = wf__io_token(io, WF__IO_READ);
		if (!wf__io_is_ready(tok)) {
			release_place(srv);
			if (wf__io_wait(io, WF__IO_READ, WF__NO_DEADLINE, "accept") != 0)
				break;
			continue;
		}
		if (is_closed(srv)) {
			release_place(srv);
			break;
		}
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			backoff = 0;
			start_conn(srv, fd, (struct sockaddr *)&peer);
			continue;
		}
		int e = errno;
		release_place(srv);
		if (e == EAGAIN || e == EWOULDBLOCK) {
			wf__io_clear(io, WF__IO_READ, tok);
			continue;
		}
		if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM)
			continue;
		if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
			backoff = backoff == 0 ? BACKOFF_FIRST_MS : backoff * 2;
			if (backoff > BACKOFF_MAX_MS)
				backoff = BACKOFF_MAX_MS;
			if (wf_sleep(backoff) != 0)
				break;
			continue;
		}
		break; /* the socket itself failed */
	}
	wf__io_close(io);
out:
	close(l->fd);
	l->fd = -1;
	return NULL;
}

/* ---- listening ---------------------------------------------------------- */

static int check_opts(const wf_server_opts *o)
{
	if (o == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(o->reserved_bytes); i++)
		if (o->reserved_bytes[i] != 0)
			return WF_EINVAL;
	if (!WF__RESERVED_ZERO(o) || o->backlog < 0)
		return WF_EINVAL;
	return 0;
}

static int listen_socket(const struct sockaddr *sa, socklen_t len, int backlog, bool reuseport)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (sa->sa_family != AF_UNIX) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	}
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, len) != 0 || listen(fd, backlog) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -errno;
	int port = wf__sockaddr_port((struct sockaddr *)&ss);
	return port >= 0 ? port : 0;
}

static wf__server *server_new(wf_conn_handler handler, void *arg, const wf_server_opts *o)
{
	wf__server *srv = wf__hobj_alloc(&server_type);
	if (srv == NULL)
		return NULL;
	srv->nworkers = wf_runtime_workers(wf_runtime_current());
	srv->on_worker = calloc(srv->nworkers, sizeof(*srv->on_worker));
	if (srv->on_worker == NULL) {
		wf__hobj_free(&server_type, srv);
		return NULL;
	}
	srv->handler = handler;
	srv->arg = arg;
	srv->max_conns = o != NULL ? o->max_connections : 0;
	srv->limit = o != NULL ? o->limit : 0;
	return srv;
}

static void server_free(wf__server *srv)
{
	for (unsigned i = 0; i < srv->nls; i++)
		if (srv->ls[i].task == NULL && srv->ls[i].fd >= 0 &&
		    !__atomic_exchange_n(&srv->ls[i].claimed, 1, __ATOMIC_ACQ_REL))
			close(srv->ls[i].fd);
	free(srv->ls);
	free(srv->on_worker);
	free(srv->unix_path);
	if (srv->tls != NULL)
		wf_tls_ctx_free(srv->tls);
	wf__hobj_free(&server_type, srv);
}

/* Starts an accept task per listener; the server is then live. */
static int start_accepting(wf__server *srv, wf_server **out)
{
	for (unsigned i = 0; i < srv->nls; i++) {
		wf_spawn_opts so = WF_SPAWN_OPTS_INIT;
		so.name = "weft-accept";
		int rc = wf_spawn_ex(accept_main, &srv->ls[i], &so, &srv->ls[i].task);
		if (rc != 0) {
			srv->ls[i].task = NULL;
			wf_server_close((wf_server *)wf__handle_of(srv));
			for (unsigned k = 0; k < i; k++)
				wf_join(srv->ls[k].task, NULL);
			for (unsigned k = 0; k < i; k++)
				srv->ls[k].task = NULL;
			server_free(srv);
			return rc;
		}
	}
	*out = (wf_server *)wf__handle_of(srv);
	return 0;
}

/* The addresses to listen on: a numeric host directly, a name through the
 * resolver, NULL or "" the IPv4 wildcard. */
static int listen_addrs(const char *host, unsigned port, struct addrinfo **res,
			struct sockaddr_storage *one, socklen_t *onelen)
{
	*res = NULL;
	memset(one, 0, sizeof(*one));
	if (host == NULL || host[0] == '\0') {
		struct sockaddr_in *in = (struct sockaddr_in *)one;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		*onelen = sizeof(*in);
		return 0;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)one;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*onelen = sizeof(*in);
		return 0;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)one;
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*onelen = sizeof(*in6);
		return 0;
	}
	char serv[8];
	snprintf(serv, sizeof(serv), "%u", port);
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	return wf_getaddrinfo(host, serv, &hints, WF_FOREVER, res);
}

static int start_tcp(const char *host, unsigned port, wf_conn_handler handler, void *arg,
		     const wf_server_opts *opts, wf_tls_ctx *tls, wf_server **out)
{
	if (handler == NULL || out == NULL || port > 65535 || check_opts(opts) != 0)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	struct addrinfo *res;
	struct sockaddr_storage one;
	socklen_t onelen = 0;
	int rc = listen_addrs(host, port, &res, &one, &onelen);
	if (rc != 0)
		return rc;
	unsigned naddr = 0;
	if (res == NULL)
		naddr = 1;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
		naddr++;
	bool single = opts != NULL && opts->single_listener;
	unsigned per = single ? 1 : wf_runtime_workers(wf_runtime_current());
	int backlog = opts != NULL && opts->backlog > 0 ? opts->backlog : DEFAULT_BACKLOG;

	wf__server *srv = server_new(handler, arg, opts);
	if (srv != NULL && tls != NULL) {
		wf__tls_ctx_ref(tls);
		srv->tls = tls;
	}
	if (srv == NULL || (srv->ls = calloc((size_t)naddr * per, sizeof(listener))) == NULL) {
		if (srv != NULL)
			server_free(srv);
		wf_freeaddrinfo(res);
		return WF_ENOMEM;
	}
	int bport = (int)port;
	struct addrinfo *ai = res;
	for (unsigned a = 0; a < naddr && rc == 0; a++) {
		struct sockaddr_storage ss;
		socklen_t len;
		if (res == NULL) {
			ss = one;
			len = onelen;
		} else {
			memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
			len = ai->ai_addrlen;
			ai = ai->ai_next;
		}
		for (unsigned w = 0; w < per; w++) {
			/* Port 0: the first socket picks it, the rest share it. */
			set_port(&ss, bport);
			int fd = listen_socket((struct sockaddr *)&ss, len, backlog, !single);
			if (fd < 0) {
				rc = fd;
				break;
			}
			if (bport == 0)
				bport = bound_port(fd);
			listener *l = &srv->ls[srv->nls++];
			l->srv = srv;
			l->fd = fd;
			l->worker = single ? -1 : (int)w;
		}
	}
	wf_freeaddrinfo(res);
	if (rc != 0) {
		server_free(srv);
		return rc;
	}
	srv->port = bport;
	return start_accepting(srv, out);
}

WF_EXTERN int wf_start_server(const char *host, unsigned port, wf_conn_handler handler,
			      void *arg, const wf_server_opts *opts, wf_server **out)
{
	return start_tcp(host, port, handler, arg, opts, NULL, out);
}

WF_EXTERN int wf_start_tls_server(const char *host, unsigned port, wf_tls_ctx *ctx,
				  wf_conn_handler handler, void *arg, const wf_server_opts *opts,
				  wf_server **out)
{
	if (!wf_tls_available())
		return WF_ENOSYS;
	if (ctx == NULL || !wf__tls_ctx_is_server(ctx))
		return WF_EINVAL;
	return start_tcp(host, port, handler, arg, opts, ctx, out);
}

WF_EXTERN int wf_start_unix_server(const char *path, wf_conn_handler handler, void *arg,
				   const wf_server_opts *opts, wf_server **out)
{
	if (path == NULL || handler == NULL || out == NULL || check_opts(opts) != 0)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	size_t plen = strlen(path);
	if (plen == 0 || plen >= sizeof(un.sun_path))
		return WF_EINVAL;
	memcpy(un.sun_path, path, plen + 1);
	/* A socket file left by an earlier server is replaced; anything else
	 * at the path is not touched (bind then fails with -EADDRINUSE). */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	wf__server *srv = server_new(handler, arg, opts);
	if (srv == NULL || (srv->ls = calloc(1, sizeof(listener))) == NULL ||
	    (srv->unix_path = strdup(path)) == NULL) {
		if (srv != NULL)
			server_free(srv);
		return WF_ENOMEM;
	}
	int backlog = opts != NULL && opts->backlog > 0 ? opts->backlog : DEFAULT_BACKLOG;
	int fd = listen_socket((struct sockaddr *)&un,
			       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1), backlog, false);
	if (fd < 0) {
		free(srv->unix_path);
		srv->unix_path = NULL; /* not ours to unlink */
		server_free(srv);
		return fd;
	}
	srv->ls[0] = (listener){.srv = srv, .fd = fd, .worker = -1};
	srv->nls = 1;
	srv->port = 0;
	return start_accepting(srv, out);
}

/* ---- the rest ----------------------------------------------------------- */

WF_EXTERN int wf_server_port(const wf_server *h)
{
	wf__server *srv = server_get(h);
	return srv != NULL ? srv->port : WF_EINVAL;
}

WF_EXTERN size_t wf_server_connections(const wf_server *h)
{
	wf__server *srv = server_get(h);
	if (srv == NULL)
		return 0;
	wf__spin_lock(&srv->sl);
	size_t n = srv->live;
	wf__spin_unlock(&srv->sl);
	return n;
}

WF_EXTERN int wf_server_close(wf_server *h)
{
	wf__server *srv = server_get(h);
	if (srv == NULL)
		return WF_EINVAL;
	wf__spin_lock(&srv->sl);
	bool was = srv->closed;
	srv->closed = true;
	wf__waitq_fire_all(&srv->waiters, 0, NULL);
	wf__spin_unlock(&srv->sl);
	if (was)
		return 0;
	/* Each accept task closes its own socket as it ends; a socket whose
	 * task has not started is closed here, and the task, if it ever
	 * runs, finds it claimed. */
	for (unsigned i = 0; i < srv->nls; i++) {
		listener *l = &srv->ls[i];
		if (!__atomic_exchange_n(&l->claimed, 1, __ATOMIC_ACQ_REL)) {
			close(l->fd);
			l->fd = -1;
		}
		if (l->task != NULL)
			wf_cancel(l->task);
	}
	if (srv->unix_path != NULL)
		unlink(srv->unix_path);
	return 0;
}

static int end_clients(wf_server *h, bool reset)
{
	wf__server *srv = server_get(h);
	if (srv == NULL)
		return WF_EINVAL;
	wf__spin_lock(&srv->sl);
	for (conn *c = srv->conns; c != NULL; c = c->next) {
		wf__stream *s = wf__stream_get(c->stream);
		if (s == NULL)
			continue; /* its handler closed it already */
		if (reset)
			wf__stream_reset(s);
		else
			wf__stream_shutdown(s);
		wf__stream_put(s);
	}
	wf__spin_unlock(&srv->sl);
	return 0;
}

WF_EXTERN int wf_server_close_clients(wf_server *h) { return end_clients(h, false); }
WF_EXTERN int wf_server_abort_clients(wf_server *h) { return end_clients(h, true); }

/* Joins the accept tasks (close cancelled them, and they end quickly). A
 * join that is itself cancelled (WF_ECANCELED, handle kept) waits again,
 * since they use the server's memory; a task whose own outcome is
 * WF_ECANCELED was joined: its handle is released, and the next call's
 * WF_EINVAL ends the loop. */
static void join_accepters(wf__server *srv)
{
	for (unsigned i = 0; i < srv->nls; i++) {
		if (srv->ls[i].task == NULL)
			continue;
		while (wf_join(srv->ls[i].task, NULL) == WF_ECANCELED)
			;
		srv->ls[i].task = NULL;
		srv->ls[i].fd = -1;
	}
}

/* The server is freed only once it is closed, its accept tasks have ended
 * and no connection is left, in that order: an accept task that took a
 * connection just before the close still starts it (start_conn counts it
 * in `live` after making its stream), so a count of zero read before the
 * accept tasks ended proves nothing, and freeing then would leave that
 * connection's task to end on freed memory (conn_end's counts). */
WF_EXTERN int wf_server_wait_closed(wf_server *h, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	wf__server *srv = server_get(h);
	if (srv == NULL)
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	bool mine = false; /* this call joined the accept tasks and frees srv */
	for (;;) {
		wf__spin_lock(&srv->sl);
		if (!mine && srv->freeing) {
			wf__spin_unlock(&srv->sl);
			return WF_EBUSY;
		}
		if (!mine && srv->closed) {
			srv->freeing = true;
			mine = true;
			wf__spin_unlock(&srv->sl);
			join_accepters(srv);
			continue;
		}
		if (mine && srv->live == 0) {
			wf__spin_unlock(&srv->sl);
			break;
		}
		wf__waiting wg = {.lock = &srv->sl,
				  .q = &srv->waiters,
				  .what = "server wait_closed",
				  .obj = srv,
				  .deadline = deadline,
				  .no_wait = deadline != WF__NO_DEADLINE && deadline <= wf__now_ns()};
		int rc = wf__wait_on(&wg);
		if (rc != 0) {
			if (mine) { /* a later call finishes the job */
				wf__spin_lock(&srv->sl);
				srv->freeing = false;
				wf__spin_unlock(&srv->sl);
			}
			return rc;
		}
	}
	server_free(srv);
	return 0;
}
