/*
 * A Redis client for weft tasks: hiredis formats commands and parses
 * replies, weft's one-shot readiness waits drive the socket.
 *
 * The socket path is this file's own, not hiredis's redisBufferRead /
 * redisBufferWrite: writes go out with send(MSG_NOSIGNAL), so a server
 * that went away gives -EPIPE, never a SIGPIPE that would end the
 * process, and reads go through one read(2) whose errno is the call's
 * code before anything can overwrite it. The bytes read are fed to the
 * context's reader (redisReaderFeed) and replies come out of
 * redisGetReplyFromReader, exactly as hiredis does it. A read shorter than
 * the buffer has drained the socket: the next read waits for readiness
 * first instead of spending a system call on EAGAIN.
 *
 * Handles. A wf_redis * is not an address but a slot index and a
 * generation. Slots live in chunks that are never freed, so any handle,
 * however old, can be looked at safely; closing bumps the slot's
 * generation, and an old handle then fails the comparison (WF_EINVAL).
 * Each slot has a `busy` word that a call takes with a CAS for its whole
 * length: a second call on the same connection gets WF_EBUSY, and close
 * takes it too, so a connection is never freed under a call. The
 * connection's state (context, buffers) is touched only by busy's holder;
 * `broken` and `owed` are also read by the [any] queries, hence atomics.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "weft/redis.h"

#define RBUF_SIZE (16 * 1024)
#define CHUNK_SLOTS 256u
#define MAX_CHUNKS 16384u /* 4 Mi connections */

typedef struct slot {
	uint32_t gen;  /* atomic; the handle's half; bumped by close */
	uint32_t busy; /* atomic; 1 while a call (or close) holds the slot */
	uint32_t broken; /* atomic; see the header's "Broken connections" */
	uint32_t idx;  /* the slot's own index */
	uint32_t next_free; /* free list link (index + 1), under free_mu */
	size_t owed;   /* atomic; replies owed to wf_redis_get_reply */
	/* Owned by busy's holder: */
	redisContext *ctx;
	char *rbuf;
	bool drained;    /* the last read found the socket empty */
	bool subscribed;
	redisReply **held; /* messages that came before a confirmation */
	size_t held_head, held_n, held_cap;
} slot;

static slot *chunks[MAX_CHUNKS];
static uint32_t nslots; /* atomic; slots made so far */
static uint32_t free_head; /* index + 1; 0: empty; under free_mu */
static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------------------
 * Handles
 * ---------------------------------------------------------------------- */

static wf_redis *encode(uint32_t idx, uint32_t gen)
{
	return (wf_redis *)(uintptr_t)(((uint64_t)gen << 32) | ((uint64_t)idx + 1));
}

/* The slot a handle names, whatever its generation, or NULL. */
static slot *slot_of(const wf_redis *h, uint32_t *gen)
{
	uint64_t v = (uint64_t)(uintptr_t)h;
	uint32_t idx1 = (uint32_t)v;
	*gen = (uint32_t)(v >> 32);
	/* Acquire: pairs with the release store of nslots in slot_new, after
	 * the chunk pointer was written. */
	if (idx1 == 0 || idx1 > __atomic_load_n(&nslots, __ATOMIC_ACQUIRE))
		return NULL;
	uint32_t idx = idx1 - 1;
	return &chunks[idx / CHUNK_SLOTS][idx % CHUNK_SLOTS];
}

static bool try_busy(slot *s)
{
	uint32_t zero = 0;
	return __atomic_compare_exchange_n(&s->busy, &zero, 1, false, __ATOMIC_ACQUIRE,
					   __ATOMIC_RELAXED);
}

static void put_busy(slot *s) { __atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE); }

/* Takes h's slot for a call: 0 and *out, WF_EINVAL (NULL or closed),
 * WF_EBUSY (another call holds it). */
static int acquire(wf_redis *h, slot **out)
{
	if (h == NULL)
		return WF_EINVAL;
	uint32_t gen;
	slot *s = slot_of(h, &gen);
	if (s == NULL || __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) != gen)
		return WF_EINVAL;
	if (!try_busy(s))
		return __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) == gen ? WF_EBUSY : WF_EINVAL;
	/* Closed between the first look and the CAS: not ours. */
	if (__atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) != gen) {
		put_busy(s);
		return WF_EINVAL;
	}
	*out = s;
	return 0;
}

/* A free slot, busy (the caller fills it and lets it go), or NULL. */
static slot *slot_new(void)
{
	pthread_mutex_lock(&free_mu);
	slot *s = NULL;
	if (free_head != 0) {
		uint32_t idx = free_head - 1;
		s = &chunks[idx / CHUNK_SLOTS][idx % CHUNK_SLOTS];
		free_head = s->next_free;
	} else {
		uint32_t n = __atomic_load_n(&nslots, __ATOMIC_RELAXED);
		uint32_t k = n / CHUNK_SLOTS;
		if (n % CHUNK_SLOTS == 0) {
			if (k >= MAX_CHUNKS || (chunks[k] = calloc(CHUNK_SLOTS, sizeof(slot))) == NULL) {
				pthread_mutex_unlock(&free_mu);
				return NULL;
			}
			for (uint32_t i = 0; i < CHUNK_SLOTS; i++) {
				chunks[k][i].gen = 1;
				chunks[k][i].idx = k * CHUNK_SLOTS + i;
			}
		}
		s = &chunks[k][n % CHUNK_SLOTS];
		/* Release: pairs with the acquire load in slot_of. */
		__atomic_store_n(&nslots, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&free_mu);
	/* A call with a stale handle may hold busy for a moment (it lets go
	 * as soon as it sees the generation). */
	while (!try_busy(s))
		sched_yield();
	return s;
}

static void slot_free(slot *s)
{
	uint32_t idx = s->idx;
	pthread_mutex_lock(&free_mu);
	s->next_free = free_head;
	free_head = idx + 1;
	pthread_mutex_unlock(&free_mu);
}

/* ------------------------------------------------------------------------
 * Time
 * ---------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t deadline_after(uint64_t timeout_ms)
{
	if (timeout_ms == WF_FOREVER)
		return UINT64_MAX;
	uint64_t now = now_ms();
	return timeout_ms >= UINT64_MAX - now ? UINT64_MAX - 1 : now + timeout_ms;
}

/* What is left of deadline, for a wait: WF_FOREVER for none, 0 once past
 * (a wait of 0 still asks the kernel once). */
static uint64_t ms_left(uint64_t deadline)
{
	if (deadline == UINT64_MAX)
		return WF_FOREVER;
	uint64_t now = now_ms();
	return deadline > now ? deadline - now : 0;
}

/* ------------------------------------------------------------------------
 * The socket
 * ---------------------------------------------------------------------- */

static int errno_code(int e) { return e == EPIPE ? WF_EPIPE : -e; }

/* Sends the context's whole output buffer. */
static int flush_out(slot *s, uint64_t deadline)
{
	redisContext *ctx = s->ctx;
	while (sdslen(ctx->obuf) > 0) {
		size_t len = sdslen(ctx->obuf);
		if (len > (1u << 30))
			len = 1u << 30; /* sdsrange takes an int */
		ssize_t n = send(ctx->fd, ctx->obuf, len, MSG_NOSIGNAL);
		if (n > 0) {
			if ((size_t)n == sdslen(ctx->obuf)) {
				sdsclear(ctx->obuf);
				/* Do not keep a large pipeline's buffer. */
				if (sdsAllocSize(ctx->obuf) > 64 * 1024) {
					sds e = sdsempty();
					if (e == NULL)
						return WF_ENOMEM;
					sdsfree(ctx->obuf);
					ctx->obuf = e;
				}
			} else {
				sdsrange(ctx->obuf, (int)n, -1);
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return errno_code(errno);
		int rc = wf_wait_writable(ctx->fd, ms_left(deadline));
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Reads until the reader has a whole reply. */
static int read_reply(slot *s, uint64_t deadline, redisReply **out)
{
	redisContext *ctx = s->ctx;
	for (;;) {
		void *r = NULL;
		if (redisGetReplyFromReader(ctx, &r) != REDIS_OK)
			return ctx->err == REDIS_ERR_OOM ? WF_ENOMEM : WF_EIO;
		if (r != NULL) {
			*out = r;
			return 0;
		}
		if (s->drained) {
			int rc = wf_wait_readable(ctx->fd, ms_left(deadline));
			if (rc != 0)
				return rc;
		}
		ssize_t n = read(ctx->fd, s->rbuf, RBUF_SIZE);
		if (n > 0) {
			s->drained = n < RBUF_SIZE;
			if (redisReaderFeed(ctx->reader, s->rbuf, (size_t)n) != REDIS_OK)
				return WF_ENOMEM;
			continue;
		}
		if (n == 0)
			return WF_EPIPE; /* the server closed the connection */
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return errno_code(errno);
		s->drained = true;
	}
}

static void set_broken(slot *s) { __atomic_store_n(&s->broken, 1, __ATOMIC_RELEASE); }

/* The end of a call that may have left a reply on the way: an error
 * breaks the connection. Lets the slot go. */
static int finish(slot *s, int rc)
{
	if (rc != 0)
		set_broken(s);
	put_busy(s);
	return rc;
}

/* The checks every call makes once it holds the slot; 0 or the code that
 * ends the call (the slot is then let go). */
static int usable(slot *s, bool need_task)
{
	int rc = 0;
	if (need_task && wf_current() == NULL)
		rc = WF_ENOTTASK;
	else if (__atomic_load_n(&s->broken, __ATOMIC_ACQUIRE))
		rc = WF_EPIPE;
	if (rc != 0)
		put_busy(s);
	return rc;
}

/* ------------------------------------------------------------------------
 * Connecting and closing
 * ---------------------------------------------------------------------- */

static int connect_addr(const struct sockaddr *sa, socklen_t len, uint64_t deadline, int *fd_out)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = wf_sock_connect(fd, sa, len, ms_left(deadline));
	if (rc != 0) {
		close(fd);
		return rc;
	}
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	*fd_out = fd;
	return 0;
}

/* A connected socket for host:port. */
static int connect_host(const char *host, unsigned port, uint64_t deadline, int *fd_out)
{
	struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &in4.sin_addr) == 1)
		return connect_addr((struct sockaddr *)&in4, sizeof(in4), deadline, fd_out);
	char strip[INET6_ADDRSTRLEN + 2];
	const char *h6 = host;
	size_t hl = strlen(host);
	if (host[0] == '[' && hl >= 2 && hl < sizeof(strip) && host[hl - 1] == ']') {
		memcpy(strip, host + 1, hl - 2);
		strip[hl - 2] = '\0';
		h6 = strip;
	}
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET6, h6, &in6.sin6_addr) == 1)
		return connect_addr((struct sockaddr *)&in6, sizeof(in6), deadline, fd_out);

	char serv[8];
	snprintf(serv, sizeof(serv), "%u", port);
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	struct addrinfo *res = NULL;
	int rc = wf_getaddrinfo(host, serv, &hints, ms_left(deadline), &res);
	if (rc != 0)
		return rc;
	rc = WF_ENONAME;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		rc = connect_addr(ai->ai_addr, ai->ai_addrlen, deadline, fd_out);
		/* A refusal moves on to the next address; a timeout or a
		 * cancellation ends the call. */
		if (rc == 0 || rc == WF_ETIMEDOUT || rc == WF_ECANCELED)
			break;
	}
	wf_freeaddrinfo(res);
	return rc;
}

int wf_redis_connect(const char *host, unsigned port, uint64_t timeout_ms, wf_redis **out)
{
	if (out == NULL || port > 65535)
		return WF_EINVAL;
	*out = NULL;
	if (host == NULL || host[0] == '\0')
		host = "127.0.0.1";
	if (strlen(host) > NI_MAXHOST)
		return WF_EINVAL;
	if (wf_current() == NULL)
		return WF_ENOTTASK;
	uint64_t deadline = deadline_after(timeout_ms);
	int fd = -1;
	int rc = connect_host(host, port, deadline, &fd);
	if (rc != 0)
		return rc;
	/* hiredis takes the descriptor (redisFree closes it). Its I/O calls
	 * are never used here; the flag is cleared all the same, so the
	 * context says what the socket is. */
	redisContext *ctx = redisConnectFd(fd);
	char *rbuf = malloc(RBUF_SIZE);
	slot *s = ctx != NULL && rbuf != NULL ? slot_new() : NULL;
	if (s == NULL) {
		free(rbuf);
		if (ctx != NULL)
			redisFree(ctx);
		else
			close(fd);
		return WF_ENOMEM;
	}
	ctx->flags &= ~REDIS_BLOCK;
	s->ctx = ctx;
	s->rbuf = rbuf;
	s->drained = true;
	s->subscribed = false;
	s->held = NULL;
	s->held_head = s->held_n = s->held_cap = 0;
	__atomic_store_n(&s->owed, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->broken, 0, __ATOMIC_RELAXED);
	*out = encode(s->idx, __atomic_load_n(&s->gen, __ATOMIC_RELAXED));
	put_busy(s);
	return 0;
}

int wf_redis_close(wf_redis *c)
{
	slot *s;
	int rc = acquire(c, &s);
	if (rc != 0)
		return rc;
	uint32_t gen = __atomic_load_n(&s->gen, __ATOMIC_RELAXED);
	/* Release: a stale handle's acquire sees the new generation. */
	__atomic_store_n(&s->gen, gen + 1 == 0 ? 1 : gen + 1, __ATOMIC_RELEASE);
	redisFree(s->ctx);
	free(s->rbuf);
	for (size_t i = 0; i < s->held_n; i++)
		freeReplyObject(s->held[(s->held_head + i) % s->held_cap]);
	free(s->held);
	s->ctx = NULL;
	s->rbuf = NULL;
	s->held = NULL;
	s->held_head = s->held_n = s->held_cap = 0;
	put_busy(s);
	slot_free(s);
	return 0;
}

/* ------------------------------------------------------------------------
 * Commands and pipelines
 * ---------------------------------------------------------------------- */

/* Collects the next reply owed: sends what is queued, then reads. */
static int collect(slot *s, uint64_t deadline, redisReply **out)
{
	int rc = flush_out(s, deadline);
	if (rc == 0)
		rc = read_reply(s, deadline, out);
	if (rc == 0)
		__atomic_sub_fetch(&s->owed, 1, __ATOMIC_RELAXED);
	return rc;
}

/* Appended: one more reply owed. A format hiredis refuses leaves the
 * output as it was. */
static int appended(slot *s, int hrc)
{
	if (hrc != REDIS_OK) {
		int rc = s->ctx->err == REDIS_ERR_OOM ? WF_ENOMEM : WF_EINVAL;
		s->ctx->err = 0;
		s->ctx->errstr[0] = '\0';
		return rc;
	}
	__atomic_add_fetch(&s->owed, 1, __ATOMIC_RELAXED);
	return 0;
}

/* Takes the slot for a command (or an append): usable, not subscribed,
 * and for a command, no pipelined replies owed. */
static int begin_command(wf_redis *c, bool need_task, bool alone, slot **out)
{
	slot *s;
	int rc = acquire(c, &s);
	if (rc == 0)
		rc = usable(s, need_task);
	if (rc != 0)
		return rc;
	if (s->subscribed || (alone && __atomic_load_n(&s->owed, __ATOMIC_RELAXED) != 0)) {
		put_busy(s);
		return WF_EINVAL;
	}
	*out = s;
	return 0;
}

/* A command appended (hrc, hiredis's result), sent and answered. */
static int run_command(slot *s, int hrc, redisReply **out, uint64_t timeout_ms)
{
	int rc = appended(s, hrc);
	if (rc != 0) {
		put_busy(s);
		return rc;
	}
	return finish(s, collect(s, deadline_after(timeout_ms), out));
}

int wf_redis_vcommand(wf_redis *c, redisReply **out, uint64_t timeout_ms, const char *fmt,
		      va_list ap)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (fmt == NULL)
		return WF_EINVAL;
	slot *s;
	int rc = begin_command(c, true, true, &s);
	if (rc != 0)
		return rc;
	return run_command(s, redisvAppendCommand(s->ctx, fmt, ap), out, timeout_ms);
}

int wf_redis_command(wf_redis *c, redisReply **out, uint64_t timeout_ms, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = wf_redis_vcommand(c, out, timeout_ms, fmt, ap);
	va_end(ap);
	return rc;
}

static bool argv_ok(int argc, const char **argv)
{
	if (argc < 1 || argv == NULL)
		return false;
	for (int i = 0; i < argc; i++)
		if (argv[i] == NULL)
			return false;
	return true;
}

int wf_redis_command_argv(wf_redis *c, redisReply **out, uint64_t timeout_ms, int argc,
			  const char **argv, const size_t *argvlen)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (!argv_ok(argc, argv))
		return WF_EINVAL;
	slot *s;
	int rc = begin_command(c, true, true, &s);
	if (rc != 0)
		return rc;
	return run_command(s, redisAppendCommandArgv(s->ctx, argc, argv, argvlen), out, timeout_ms);
}

int wf_redis_append(wf_redis *c, const char *fmt, ...)
{
	if (fmt == NULL)
		return WF_EINVAL;
	slot *s;
	int rc = begin_command(c, false, false, &s);
	if (rc != 0)
		return rc;
	va_list ap;
	va_start(ap, fmt);
	rc = appended(s, redisvAppendCommand(s->ctx, fmt, ap));
	va_end(ap);
	put_busy(s);
	return rc;
}

int wf_redis_append_argv(wf_redis *c, int argc, const char **argv, const size_t *argvlen)
{
	if (!argv_ok(argc, argv))
		return WF_EINVAL;
	slot *s;
	int rc = begin_command(c, false, false, &s);
	if (rc != 0)
		return rc;
	rc = appended(s, redisAppendCommandArgv(s->ctx, argc, argv, argvlen));
	put_busy(s);
	return rc;
}

int wf_redis_get_reply(wf_redis *c, redisReply **out, uint64_t timeout_ms)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	slot *s;
	int rc = acquire(c, &s);
	if (rc == 0)
		rc = usable(s, true);
	if (rc != 0)
		return rc;
	if (s->subscribed || __atomic_load_n(&s->owed, __ATOMIC_RELAXED) == 0) {
		put_busy(s);
		return WF_EINVAL;
	}
	return finish(s, collect(s, deadline_after(timeout_ms), out));
}

size_t wf_redis_pending(const wf_redis *c)
{
	uint32_t gen;
	slot *s = c != NULL ? slot_of(c, &gen) : NULL;
	if (s == NULL)
		return 0;
	size_t n = __atomic_load_n(&s->owed, __ATOMIC_ACQUIRE);
	return __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) == gen ? n : 0;
}

bool wf_redis_broken(const wf_redis *c)
{
	uint32_t gen;
	slot *s = c != NULL ? slot_of(c, &gen) : NULL;
	if (s == NULL)
		return true;
	bool b = __atomic_load_n(&s->broken, __ATOMIC_ACQUIRE) != 0;
	return b || __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) != gen;
}

void wf_redis_reply_free(redisReply *r)
{
	if (r != NULL)
		freeReplyObject(r);
}

/* ------------------------------------------------------------------------
 * Publish/subscribe
 * ---------------------------------------------------------------------- */

/* r's first element is the string kind. */
static bool push_is(const redisReply *r, const char *kind)
{
	return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0] != NULL &&
	       r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, kind) == 0;
}

static int hold(slot *s, redisReply *r)
{
	if (s->held_n == s->held_cap) {
		size_t cap = s->held_cap ? s->held_cap * 2 : 8;
		redisReply **h = malloc(cap * sizeof(*h));
		if (h == NULL)
			return WF_ENOMEM;
		for (size_t i = 0; i < s->held_n; i++)
			h[i] = s->held[(s->held_head + i) % s->held_cap];
		free(s->held);
		s->held = h;
		s->held_head = 0;
		s->held_cap = cap;
	}
	s->held[(s->held_head + s->held_n) % s->held_cap] = r;
	s->held_n++;
	return 0;
}

/* Reads until n confirmations of kind came; messages are held. */
static int await_confirmations(slot *s, size_t n, const char *kind, uint64_t deadline)
{
	while (n > 0) {
		redisReply *r = NULL;
		int rc = read_reply(s, deadline, &r);
		if (rc != 0)
			return rc;
		if (push_is(r, kind)) {
			freeReplyObject(r);
			n--;
			continue;
		}
		if (push_is(r, "message") || push_is(r, "pmessage")) {
			rc = hold(s, r);
			if (rc != 0) {
				freeReplyObject(r);
				return rc;
			}
			continue;
		}
		freeReplyObject(r); /* an error reply: the server refused */
		return WF_EIO;
	}
	return 0;
}

int wf_redis_subscribe(wf_redis *c, const char *const *channels, size_t n, bool pattern,
		       uint64_t timeout_ms)
{
	if (channels == NULL || n == 0 || n > 1024 * 1024)
		return WF_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (channels[i] == NULL)
			return WF_EINVAL;
	slot *s;
	int rc = acquire(c, &s);
	if (rc == 0)
		rc = usable(s, true);
	if (rc != 0)
		return rc;
	if (__atomic_load_n(&s->owed, __ATOMIC_RELAXED) != 0) {
		put_busy(s);
		return WF_EINVAL;
	}
	const char *kind = pattern ? "psubscribe" : "subscribe";
	const char **argv = malloc((n + 1) * sizeof(*argv));
	if (argv == NULL) {
		put_busy(s);
		return WF_ENOMEM;
	}
	argv[0] = pattern ? "PSUBSCRIBE" : "SUBSCRIBE";
	memcpy(argv + 1, channels, n * sizeof(*argv));
	rc = appended(s, redisAppendCommandArgv(s->ctx, (int)(n + 1), argv, NULL));
	free(argv);
	if (rc != 0) {
		put_busy(s);
		return rc;
	}
	/* The confirmations are not replies wf_redis_get_reply collects. */
	__atomic_sub_fetch(&s->owed, 1, __ATOMIC_RELAXED);
	s->subscribed = true;
	uint64_t deadline = deadline_after(timeout_ms);
	rc = flush_out(s, deadline);
	if (rc == 0)
		rc = await_confirmations(s, n, kind, deadline);
	return finish(s, rc);
}

int wf_redis_next_message(wf_redis *c, redisReply **out, uint64_t timeout_ms)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	slot *s;
	int rc = acquire(c, &s);
	if (rc == 0)
		rc = usable(s, true);
	if (rc != 0)
		return rc;
	if (!s->subscribed) {
		put_busy(s);
		return WF_EINVAL;
	}
	if (s->held_n > 0) {
		*out = s->held[s->held_head];
		s->held_head = (s->held_head + 1) % s->held_cap;
		s->held_n--;
		put_busy(s);
		return 0;
	}
	rc = read_reply(s, deadline_after(timeout_ms), out);
	/* No request is on the way: a message that has not come yet, or has
	 * come in part (the reader keeps the part), loses nothing. */
	if (rc == WF_ETIMEDOUT) {
		put_busy(s);
		return rc;
	}
	return finish(s, rc);
}
