/*
 * Streams: asyncio's StreamReader and StreamWriter over one non-blocking
 * descriptor registered with the poller (runtime/poller.h).
 *
 * Reading is done by the task that asks, one task at a time (`reading`):
 * the system call goes straight into the stream's buffer, so a read that
 * times out or is cancelled never holds bytes that the buffer does not.
 * The buffer grows up to `limit`; once full, nothing is read from the
 * socket until the program takes some, and TCP holds the sender back.
 *
 * Writing may come from any thread and is guarded by the source's lock:
 * a write tries the socket first when nothing is queued and buffers the
 * rest; the queued bytes go out from the poller's writable edge
 * (flush_edge, on the home worker), from drain and from close. Drainers
 * wait in `drainers`, each for the queue to fall to its own mark (the
 * low-water mark, or zero for close and write_all), and are fired by
 * whoever flushed.
 *
 * Transports. A stream may have a transport between it and its
 * descriptor (io/tls.c; the seam is described in io/stream.h): then fill,
 * send_once and close call it where they would make the system
 * call, under io->sl. A plain stream has none, and its path is the system
 * call itself. write_eof on a transport that cannot half-close (TLS) says
 * WF_ENOSYS.
 *
 * Lifetime. The handle counts as one reference and every call in progress
 * holds another: close makes the handle stale, wakes the waiters (the
 * source's detach) and drops the handle's reference; the last reference
 * frees the buffers, the source and the descriptor. So a close while
 * another task waits in a read is safe: that read returns WF_ECLOSED.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft.h"

#include "io/stream.h"
#include "runtime/clock.h"
#include "runtime/waiting.h"

#define DEFAULT_LIMIT ((size_t)64 * 1024)
#define DEFAULT_HIGH ((size_t)64 * 1024)
#define DEFAULT_LOW ((size_t)16 * 1024)
#define FIRST_RBUF ((size_t)4096)

struct wf__stream {
	/* The first line holds what a read touches (and the write side's
	 * way in); each line more is a cache miss more per call. */
	wf__hdr hdr;
	void *free_link; /* the slab's free list (handle.h) */
	uint32_t refs;   /* atomic: the handle's and every call's */
	uint32_t reading; /* atomic: a read call is in progress */
	int fd;
	bool is_socket;
	bool eof;        /* the reading task's, as the read side below */
	bool keep;       /* what the handle's bump said (wf__hobj_recycle) */
	uint8_t reset;   /* atomic: close with a reset (SO_LINGER 0) */
	wf__io *io;
	const wf__transport *tops; /* NULL: the descriptor itself */

	/* Read side: the reading task's own. */
	char *rbuf;
	size_t rend, rstart, rcap, limit;
	int rerr;

	/* Write side: guarded by io->sl. */
	int werr;      /* the error that broke the stream */
	char *wbuf;
	size_t wcap, wstart, wend, high, low;
	bool wshut;    /* write_eof or close began: no more writes */
	bool closing;
	bool send_wants_read; /* the transport's send waits for a readable edge */
	wf__waitq drainers; /* w->data: the pending count each waits for */

	void *tctx;    /* the transport's */
	wf__local_peer local; /* a loopback connect's note (local_peer.c) */
};

static wf__htype stream_type = WF__HTYPE_INIT(WF__K_STREAM, wf__stream);

/* ---- references --------------------------------------------------------- */

wf__stream *wf__stream_get(const wf_stream *h)
{
	wf__stream *s = wf__handle_get(h, WF__K_STREAM);
	if (s == NULL)
		return NULL;
	uint32_t r = __atomic_load_n(&s->refs, __ATOMIC_RELAXED);
	do {
		if (r == 0)
			return NULL; /* being freed */
	} while (!__atomic_compare_exchange_n(&s->refs, &r, r + 1, true, __ATOMIC_ACQUIRE,
					      __ATOMIC_RELAXED));
	/* The slot may have been freed and taken by a new stream between
	 * the decode and the count: then this reference is the new stream's,
	 * given right back. */
	if (__atomic_load_n(&s->hdr.gen, __ATOMIC_ACQUIRE) != (uint32_t)((uintptr_t)h >> 32)) {
		wf__stream_put(s);
		return NULL;
	}
	return s;
}

static void stream_free(wf__stream *s)
{
	wf__local_peer_forget(s->local);
	s->local = (wf__local_peer){0, 0};
	if (s->io != NULL)
		wf__io_close(s->io);
	if (s->tops != NULL)
		s->tops->free(s->tctx);
	if (s->fd >= 0) {
		if (__atomic_load_n(&s->reset, __ATOMIC_ACQUIRE) && s->is_socket) {
			struct linger l = {.l_onoff = 1, .l_linger = 0};
			setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		close(s->fd);
	}
	free(s->rbuf);
	free(s->wbuf);
	wf__hobj_recycle(&stream_type, s, s->keep);
}

void wf__stream_put(wf__stream *s)
{
	/* acq_rel: the last one sees every other call's writes. */
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
		stream_free(s);
}

int wf__stream_fd_of(const wf__stream *s) { return s->fd; }

/* ---- making one --------------------------------------------------------- */

static void flush_edge(wf__io *io, void *ctx);

int wf__stream_new(int fd, bool is_socket, size_t limit, wf_stream **out)
{
	return wf__stream_new_on(fd, is_socket, limit, -1, out);
}

int wf__stream_new_on(int fd, bool is_socket, size_t limit, int worker, wf_stream **out)
{
	wf__stream *s = wf__hobj_alloc(&stream_type);
	if (s == NULL)
		return WF_ENOMEM;
	s->refs = 1;
	s->fd = fd;
	s->is_socket = is_socket;
	s->limit = limit != 0 ? limit : DEFAULT_LIMIT;
	s->high = DEFAULT_HIGH;
	s->low = DEFAULT_LOW;
	int rc = worker < 0 ? wf__io_open(fd, &s->io) : wf__io_open_on(fd, (unsigned)worker, &s->io);
	if (rc != 0) {
		s->io = NULL;
		s->fd = -1; /* the caller keeps it */
		wf__hobj_free(&stream_type, s);
		return rc;
	}
	wf__spin_lock(&s->io->sl);
	s->io->owner = s;
	s->io->edge_ctx = s;
	s->io->on_edge[WF__IO_WRITE] = flush_edge;
	wf__spin_unlock(&s->io->sl);
	if (is_socket) {
		/* asyncio's default: request/response traffic must not wait
		 * for Nagle. Fails harmlessly on a Unix socket. */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	*out = (wf_stream *)wf__handle_of(s);
	return 0;
}

void wf__stream_keep_local_peer(wf_stream *h, wf__local_peer p)
{
	wf__stream *s = wf__stream_get(h);
	if (s == NULL) {
		wf__local_peer_forget(p);
		return;
	}
	s->local = p;
	wf__stream_put(s);
}

int wf__stream_wait_connected(wf_stream *h, uint64_t deadline)
{
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	/* Not writable until connected: forget the initial "unknown, try"
	 * and wait for the kernel's edge (registration reports a connection
	 * that completed before it). */
	wf__io_clear(s->io, WF__IO_WRITE, wf__io_token(s->io, WF__IO_WRITE));
	int rc = wf__io_wait(s->io, WF__IO_WRITE, deadline, "connect");
	if (rc == 0) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		rc = -err;
	}
	wf__stream_put(s);
	return rc;
}

static void read_edge(wf__io *io, void *ctx);

void wf__stream_set_transport(wf__stream *s, const wf__transport *ops, void *t)
{
	wf__spin_lock(&s->io->sl);
	s->tops = ops;
	s->tctx = t;
	s->io->on_edge[WF__IO_READ] = read_edge;
	wf__spin_unlock(&s->io->sl);
}

void *wf__stream_transport_of(wf__stream *s, const wf__transport *ops)
{
	wf__spin_lock(&s->io->sl);
	void *t = s->tops == ops ? s->tctx : NULL;
	wf__spin_unlock(&s->io->sl);
	return t;
}

wf__spinlock *wf__stream_lock(wf__stream *s) { return &s->io->sl; }

int wf__stream_drive(wf__stream *s, int (*step)(void *t, int *want), void *t, bool unlocked,
		     uint64_t deadline, const char *what)
{
	for (;;) {
		uint32_t tok[2] = {wf__io_token(s->io, WF__IO_READ), wf__io_token(s->io, WF__IO_WRITE)};
		int want = WF__IO_READ;
		int r;
		if (unlocked) {
			r = step(t, &want);
		} else {
			wf__spin_lock(&s->io->sl);
			r = step(t, &want);
			wf__spin_unlock(&s->io->sl);
		}
		if (r == 0)
			return 0;
		if (r > 0) {
			if (deadline != WF__NO_DEADLINE && wf__now_ns() >= deadline)
				return WF_ETIMEDOUT;
			continue;
		}
		if (r != WF_EAGAIN)
			return r;
		wf__io_clear(s->io, want, tok[want]);
		int rc = wf__io_wait(s->io, want, deadline, what);
		if (rc != 0)
			return rc;
	}
}

static void ignore_sigpipe_once(void)
{
	/* Writes to a closed pipe raise SIGPIPE, which send()'s MSG_NOSIGNAL
	 * cannot prevent for pipes: the write must fail with EPIPE instead,
	 * as Go and Tokio arrange. A handler the program set is kept. */
	static int done;
	if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
		return;
	struct sigaction old;
	if (sigaction(SIGPIPE, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
	    old.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
}

WF_EXTERN int wf_stream_from_fd(int fd, wf_stream **out)
{
	if (fd < 0 || out == NULL)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
		return WF_EINVAL;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
		return -errno;
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	bool sock = S_ISSOCK(st.st_mode);
	if (!sock)
		ignore_sigpipe_once();
	int rc = wf__stream_new(fd, sock, 0, out);
	if (rc == -EPERM)
		rc = WF_EINVAL;
	return rc;
}

/* ---- small accessors ---------------------------------------------------- */

WF_EXTERN int wf_stream_fd(const wf_stream *h)
{
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	int fd = s->fd;
	wf__stream_put(s);
	return fd;
}

static int get_addr(const wf_stream *h, wf_addr *out, bool peer)
{
	if (out == NULL)
		return WF_EINVAL;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	out->len = sizeof(out->ss);
	int rc = peer ? getpeername(s->fd, (struct sockaddr *)&out->ss, &out->len)
		      : getsockname(s->fd, (struct sockaddr *)&out->ss, &out->len);
	rc = rc == 0 ? 0 : -errno;
	wf__stream_put(s);
	return rc;
}

WF_EXTERN int wf_stream_local_addr(const wf_stream *h, wf_addr *out) { return get_addr(h, out, false); }
WF_EXTERN int wf_stream_peer_addr(const wf_stream *h, wf_addr *out) { return get_addr(h, out, true); }

WF_EXTERN int wf_stream_set_limit(wf_stream *h, size_t limit)
{
	if (limit == 0)
		return WF_EINVAL;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	/* Relaxed: the reader reads it without the lock, and any value it
	 * sees is a limit the program set. */
	__atomic_store_n(&s->limit, limit, __ATOMIC_RELAXED);
	wf__stream_put(s);
	return 0;
}

WF_EXTERN int wf_stream_set_write_buffer_limits(wf_stream *h, size_t high, size_t low)
{
	if (high < low)
		return WF_EINVAL;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	wf__spin_lock(&s->io->sl);
	s->high = high;
	s->low = low;
	wf__spin_unlock(&s->io->sl);
	wf__stream_put(s);
	return 0;
}

/* ---- reading ------------------------------------------------------------ */

static inline size_t buffered(const wf__stream *s) { return s->rend - s->rstart; }
static inline size_t pending(const wf__stream *s) { return s->wend - s->wstart; }

/* Enters a read call: a reference and the reader's seat. */
static int reader_enter(const wf_stream *h, wf__stream **out)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	if (__atomic_exchange_n(&s->reading, 1, __ATOMIC_ACQUIRE)) {
		wf__stream_put(s);
		return WF_EBUSY;
	}
	*out = s;
	return 0;
}

static void reader_leave(wf__stream *s)
{
	__atomic_store_n(&s->reading, 0, __ATOMIC_RELEASE);
	wf__stream_put(s);
}

static void consume(wf__stream *s, void *buf, size_t n)
{
	if (n == 0)
		return; /* rbuf may still be NULL */
	if (buf != NULL)
		memcpy(buf, s->rbuf + s->rstart, n);
	s->rstart += n;
	if (s->rstart == s->rend)
		s->rstart = s->rend = 0;
}

/* Room for at least one more byte, the buffer holding at most `cap`:
 * compacts, then grows. false when cap bytes are buffered already. */
static bool make_room(wf__stream *s, size_t cap)
{
	if (buffered(s) >= cap)
		return false;
	if (s->rend < s->rcap)
		return true;
	if (s->rstart > 0) {
		memmove(s->rbuf, s->rbuf + s->rstart, buffered(s));
		s->rend -= s->rstart;
		s->rstart = 0;
		return true;
	}
	size_t ncap = s->rcap != 0 ? s->rcap * 2 : FIRST_RBUF;
	if (ncap > cap)
		ncap = cap;
	if (ncap < FIRST_RBUF && cap >= FIRST_RBUF)
		ncap = FIRST_RBUF;
	char *nb = realloc(s->rbuf, ncap);
	if (nb == NULL)
		return false;
	s->rbuf = nb;
	s->rcap = ncap;
	return true;
}

static void flush_locked(wf__stream *s);

/* fill through the transport. Its recv may return fewer bytes than asked
 * while the socket still holds more (a record at a time): only WF_EAGAIN
 * says drained. It is tried without a ready bit when it holds bytes
 * already, and at once after every wait (which may have been for the
 * other direction). */
static int fill_transport(wf__stream *s, size_t cap, uint64_t deadline)
{
	bool go = false;
	for (;;) {
		size_t room = s->rcap - s->rend;
		if (room > cap - buffered(s))
			room = cap - buffered(s);
		uint32_t tok[2] = {wf__io_token(s->io, WF__IO_READ), wf__io_token(s->io, WF__IO_WRITE)};
		int want = WF__IO_READ;
		ssize_t n;
		wf__spin_lock(&s->io->sl);
		if (!go && !wf__io_is_ready(tok[WF__IO_READ]) && !s->tops->has_pending(s->tctx)) {
			n = WF_EAGAIN;
		} else {
			n = s->tops->recv(s->tctx, s->rbuf + s->rend, room, &want);
			/* A send that waited for bytes to come may go on now. */
			if (n > 0 && s->send_wants_read && pending(s) > 0)
				flush_locked(s);
		}
		wf__spin_unlock(&s->io->sl);
		if (n > 0) {
			s->rend += (size_t)n;
			return 0;
		}
		if (n == 0) {
			s->eof = true;
			return 0;
		}
		if (n != WF_EAGAIN) {
			s->rerr = (int)n;
			return 0;
		}
		wf__io_clear(s->io, want, tok[want]);
		int rc = wf__io_wait(s->io, want, deadline, "stream read");
		if (rc != 0)
			return rc;
		go = true;
	}
}

/* Reads more into the buffer (which may hold up to cap). 0 once bytes
 * came, the end was reached or an error was recorded (s->eof, s->rerr);
 * WF_ELIMIT when cap bytes are buffered already; a wait's code. */
static int fill(wf__stream *s, size_t cap, uint64_t deadline)
{
	if (s->eof || s->rerr != 0)
		return 0;
	if (!make_room(s, cap))
		return buffered(s) >= cap ? WF_ELIMIT : WF_ENOMEM;
	if (__builtin_expect(s->tops != NULL, 0))
		return fill_transport(s, cap, deadline);
	for (;;) {
		uint32_t tok = wf__io_token(s->io, WF__IO_READ);
		if (wf__io_is_ready(tok)) {
			size_t room = s->rcap - s->rend;
			if (room > cap - buffered(s))
				room = cap - buffered(s);
			ssize_t n = wf__sys_read(s->fd, s->rbuf + s->rend, room);
			if (n > 0) {
				s->rend += (size_t)n;
				/* A short read drained the socket: the next
				 * read waits for an edge instead of asking. */
				if ((size_t)n < room)
					wf__io_clear(s->io, WF__IO_READ, tok);
				return 0;
			}
			if (n == 0) {
				s->eof = true;
				return 0;
			}
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				wf__io_clear(s->io, WF__IO_READ, tok);
				continue;
			}
			s->rerr = -errno;
			return 0;
		}
		int rc = wf__io_wait(s->io, WF__IO_READ, deadline, "stream read");
		if (rc != 0)
			return rc;
	}
}

WF_EXTERN ssize_t wf_stream_read(wf_stream *h, void *buf, size_t n, uint64_t timeout_ms)
{
	if (buf == NULL || n == 0)
		return WF_EINVAL;
	wf__stream *s;
	int rc = reader_enter(h, &s);
	if (rc != 0)
		return rc;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	ssize_t ret = 0;
	while (buffered(s) == 0 && !s->eof && s->rerr == 0) {
		rc = fill(s, __atomic_load_n(&s->limit, __ATOMIC_RELAXED), deadline);
		if (rc != 0) {
			ret = rc;
			goto out;
		}
	}
	if (buffered(s) > 0) {
		size_t k = buffered(s) < n ? buffered(s) : n;
		consume(s, buf, k);
		ret = (ssize_t)k;
	} else {
		ret = s->eof ? 0 : s->rerr;
	}
out:
	reader_leave(s);
	return ret;
}

WF_EXTERN int wf_stream_readexactly(wf_stream *h, void *buf, size_t n, size_t *got,
				    uint64_t timeout_ms)
{
	if (got != NULL)
		*got = 0;
	if (buf == NULL && n > 0)
		return WF_EINVAL;
	wf__stream *s;
	int rc = reader_enter(h, &s);
	if (rc != 0)
		return rc;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	size_t done = 0;
	if (n <= __atomic_load_n(&s->limit, __ATOMIC_RELAXED)) {
		/* Everything stays buffered until all n are there: a timeout
		 * consumes nothing. */
		while (buffered(s) < n && !s->eof && s->rerr == 0) {
			rc = fill(s, __atomic_load_n(&s->limit, __ATOMIC_RELAXED), deadline);
			if (rc != 0)
				goto out;
		}
		if (buffered(s) >= n) {
			consume(s, buf, n);
			done = n;
		} else {
			done = buffered(s);
			consume(s, buf, done);
			rc = s->rerr != 0 ? s->rerr : WF_EINCOMPLETE;
		}
	} else {
		/* More than the buffer may hold: hand bytes on as they come. */
		while (done < n) {
			if (buffered(s) == 0) {
				if (s->eof || s->rerr != 0) {
					rc = s->rerr != 0 ? s->rerr : WF_EINCOMPLETE;
					break;
				}
				rc = fill(s, __atomic_load_n(&s->limit, __ATOMIC_RELAXED), deadline);
				if (rc != 0)
					break;
				continue;
			}
			size_t k = buffered(s) < n - done ? buffered(s) : n - done;
			consume(s, (char *)buf + done, k);
			done += k;
		}
	}
out:
	if (got != NULL)
		*got = done;
	reader_leave(s);
	return rc;
}

/* Where sep first occurs in the buffer at or after `from`, or -1. */
static ssize_t find_sep(const wf__stream *s, const void *sep, size_t seplen, size_t from)
{
	size_t len = buffered(s);
	if (len < seplen || from > len - seplen)
		return -1;
	const char *base = s->rbuf + s->rstart;
	const char *p = base + from;
	const char *end = base + len;
	while ((size_t)(end - p) >= seplen) {
		const char *q = memchr(p, *(const char *)sep, (size_t)(end - p) - seplen + 1);
		if (q == NULL)
			return -1;
		if (memcmp(q, sep, seplen) == 0)
			return q - base;
		p = q + 1;
	}
	return -1;
}

/* readuntil's body; at_eof_partial makes it readline's. */
static ssize_t read_until(wf_stream *h, const void *sep, size_t seplen, void *buf, size_t cap,
			  uint64_t timeout_ms, bool at_eof_partial)
{
	if (sep == NULL || seplen == 0 || buf == NULL || cap == 0)
		return WF_EINVAL;
	wf__stream *s;
	int rc = reader_enter(h, &s);
	if (rc != 0)
		return rc;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	size_t limit = __atomic_load_n(&s->limit, __ATOMIC_RELAXED);
	size_t bound = cap < limit ? cap : limit;
	size_t scanned = 0;
	ssize_t ret;
	for (;;) {
		ssize_t at = find_sep(s, sep, seplen, scanned);
		if (at >= 0) {
			size_t len = (size_t)at + seplen;
			if (len > bound) {
				ret = WF_ELIMIT;
				break;
			}
			consume(s, buf, len);
			ret = (ssize_t)len;
			break;
		}
		if (buffered(s) >= seplen)
			scanned = buffered(s) - seplen + 1;
		if (buffered(s) >= bound) {
			ret = WF_ELIMIT;
			break;
		}
		if (s->eof || s->rerr != 0) {
			if (s->rerr != 0 && buffered(s) == 0) {
				ret = s->rerr;
			} else if (at_eof_partial) {
				size_t len = buffered(s);
				consume(s, buf, len);
				ret = (ssize_t)len;
			} else {
				ret = WF_EINCOMPLETE;
			}
			break;
		}
		rc = fill(s, bound, deadline);
		if (rc != 0) {
			ret = rc;
			break;
		}
	}
	reader_leave(s);
	return ret;
}

WF_EXTERN ssize_t wf_stream_readuntil(wf_stream *h, const void *sep, size_t seplen, void *buf,
				      size_t cap, uint64_t timeout_ms)
{
	return read_until(h, sep, seplen, buf, cap, timeout_ms, false);
}

WF_EXTERN ssize_t wf_stream_readline(wf_stream *h, void *buf, size_t cap, uint64_t timeout_ms)
{
	return read_until(h, "\n", 1, buf, cap, timeout_ms, true);
}

WF_EXTERN ssize_t wf_stream_read_all(wf_stream *h, size_t max, void **out, uint64_t timeout_ms)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	wf__stream *s;
	int rc = reader_enter(h, &s);
	if (rc != 0)
		return rc;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	/* The buffer may grow to max here (not just to the limit), so that a
	 * timeout leaves every byte in it. */
	ssize_t ret;
	for (;;) {
		if (s->eof || s->rerr != 0) {
			if (s->rerr != 0) {
				ret = s->rerr;
				break;
			}
			size_t len = buffered(s);
			if (len > max) {
				ret = WF_ELIMIT;
				break;
			}
			char *b = malloc(len + 1);
			if (b == NULL) {
				ret = WF_ENOMEM;
				break;
			}
			consume(s, b, len);
			b[len] = '\0';
			*out = b;
			ret = (ssize_t)len;
			break;
		}
		rc = fill(s, max == SIZE_MAX ? max : max + 1, deadline);
		if (rc != 0) {
			ret = rc;
			break;
		}
		if (buffered(s) > max) {
			ret = WF_ELIMIT;
			break;
		}
	}
	reader_leave(s);
	return ret;
}

WF_EXTERN bool wf_stream_at_eof(const wf_stream *h)
{
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return false;
	bool r = s->eof && buffered(s) == 0;
	wf__stream_put(s);
	return r;
}

/* ---- writing ------------------------------------------------------------ */

static ssize_t sys_write(wf__stream *s, const void *buf, size_t n)
{
	ssize_t r;
	do
		r = s->is_socket ? wf__sys_sendto(s->fd, buf, n, MSG_NOSIGNAL, NULL, 0)
				 : wf__sys_write(s->fd, buf, n);
	while (r < 0 && errno == EINTR);
	return r;
}

/* send_once through the transport: a short count says nothing of the
 * socket (a record at a time), only WF_EAGAIN does. */
static ssize_t send_transport(wf__stream *s, const void *p, size_t n, uint32_t wtok)
{
	uint32_t rtok = wf__io_token(s->io, WF__IO_READ);
	int want = WF__IO_WRITE;
	ssize_t r = s->tops->send(s->tctx, p, n, &want);
	if (r > 0) {
		s->send_wants_read = false;
		return r;
	}
	if (r != WF_EAGAIN)
		return r < 0 ? r : WF_EIO;
	if (want == WF__IO_WRITE) {
		wf__io_clear(s->io, WF__IO_WRITE, wtok);
	} else {
		/* The readable edge (read_edge) or the reader's next bytes
		 * call the flush again. */
		wf__io_clear(s->io, WF__IO_READ, rtok);
		s->send_wants_read = true;
	}
	return 0;
}

/* Sends up to n bytes in one call, io->sl held: the count, 0 when the
 * socket takes nothing now (its ready bit is cleared: an edge will call
 * the flush), or the error that breaks the stream. */
static inline ssize_t send_once(wf__stream *s, const void *p, size_t n)
{
	for (;;) {
		uint32_t tok = wf__io_token(s->io, WF__IO_WRITE);
		if (!wf__io_is_ready(tok))
			return 0;
		if (__builtin_expect(s->tops != NULL, 0))
			return send_transport(s, p, n, tok);
		ssize_t r = sys_write(s, p, n);
		if (r > 0) {
			if ((size_t)r < n)
				wf__io_clear(s->io, WF__IO_WRITE, tok);
			return r;
		}
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			wf__io_clear(s->io, WF__IO_WRITE, tok);
			continue;
		}
		return r < 0 ? -errno : WF_EIO;
	}
}

/* Fires the drainers whose mark the queue is down to (all of them, with
 * the error, once the stream broke). io->sl held. */
static void fire_drainers(wf__stream *s)
{
	wf__waiter *w = s->drainers.head;
	while (w != NULL) {
		wf__waiter *next = w->next;
		if (s->werr != 0 || pending(s) <= (size_t)(uintptr_t)w->data) {
			wf__waitq_remove(&s->drainers, w);
			wf__waiter_fire(w, s->werr, NULL);
		}
		w = next;
	}
}

/* Writes what is queued while the socket takes it. io->sl held. */
static void flush_locked(wf__stream *s)
{
	while (pending(s) > 0 && s->werr == 0) {
		ssize_t r = send_once(s, s->wbuf + s->wstart, pending(s));
		if (r > 0)
			s->wstart += (size_t)r;
		else if (r == 0)
			break;
		else
			s->werr = (int)r;
	}
	if (pending(s) == 0 || s->werr != 0)
		s->wstart = s->wend = 0;
	fire_drainers(s);
}

/* The poller's writable edge, on the home worker: the queue goes out
 * without any task having to ask. */
static void flush_edge(wf__io *io, void *ctx)
{
	(void)io;
	wf__stream *s = ctx;
	if (pending(s) > 0)
		flush_locked(s);
}

/* A transport's readable edge: a send that waited for bytes to come (TLS
 * renegotiation) goes on. */
static void read_edge(wf__io *io, void *ctx)
{
	(void)io;
	wf__stream *s = ctx;
	if (s->send_wants_read && pending(s) > 0)
		flush_locked(s);
}

static bool queue_bytes(wf__stream *s, const char *p, size_t n)
{
	if (s->wstart > 0 && s->wend + n > s->wcap) {
		memmove(s->wbuf, s->wbuf + s->wstart, pending(s));
		s->wend -= s->wstart;
		s->wstart = 0;
	}
	if (s->wend + n > s->wcap) {
		size_t ncap = s->wcap != 0 ? s->wcap : 4096;
		while (ncap < s->wend + n)
			ncap *= 2;
		char *nb = realloc(s->wbuf, ncap);
		if (nb == NULL)
			return false;
		s->wbuf = nb;
		s->wcap = ncap;
	}
	memcpy(s->wbuf + s->wend, p, n);
	s->wend += n;
	return true;
}

WF_EXTERN int wf_stream_write(wf_stream *h, const void *buf, size_t n)
{
	if (buf == NULL && n > 0)
		return WF_EINVAL;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	const char *p = buf;
	int rc = 0;
	wf__spin_lock(&s->io->sl);
	if (s->werr != 0) {
		rc = s->werr;
	} else if (s->wshut) {
		rc = WF_EINVAL;
	} else {
		/* Nothing queued: straight to the socket, which is where
		 * almost every write ends. */
		if (pending(s) == 0) {
			while (n > 0) {
				ssize_t r = send_once(s, p, n);
				if (r > 0) {
					p += r;
					n -= (size_t)r;
					continue;
				}
				if (r < 0) {
					s->werr = (int)r;
					rc = s->werr;
					fire_drainers(s);
				}
				break;
			}
		}
		if (rc == 0 && n > 0 && !queue_bytes(s, p, n))
			rc = WF_ENOMEM;
	}
	wf__spin_unlock(&s->io->sl);
	wf__stream_put(s);
	return rc;
}

/* Waits until at most `mark` bytes are queued. */
static int wait_flushed(wf__stream *s, size_t mark, uint64_t deadline, const char *what)
{
	wf__spin_lock(&s->io->sl);
	flush_locked(s);
	if (s->werr != 0 || pending(s) <= mark) {
		int rc = s->werr;
		wf__spin_unlock(&s->io->sl);
		return rc;
	}
	if (__atomic_load_n(&s->io->closed, __ATOMIC_RELAXED)) {
		wf__spin_unlock(&s->io->sl);
		return WF_ECLOSED;
	}
	wf__waiting wg = {.lock = &s->io->sl,
			  .q = &s->drainers,
			  .what = what,
			  .obj = s,
			  .data = (void *)(uintptr_t)mark,
			  .deadline = deadline,
			  .no_wait = deadline != WF__NO_DEADLINE && deadline <= wf__now_ns()};
	return wf__wait_on(&wg);
}

WF_EXTERN int wf_stream_drain(wf_stream *h, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	int rc;
	wf__spin_lock(&s->io->sl);
	size_t high = s->high, low = s->low;
	bool over = pending(s) > high;
	rc = s->werr;
	wf__spin_unlock(&s->io->sl);
	if (rc == 0 && over)
		rc = wait_flushed(s, low, wf__deadline_after_ms(timeout_ms), "stream drain");
	wf__stream_put(s);
	return rc;
}

WF_EXTERN int wf_stream_write_all(wf_stream *h, const void *buf, size_t n, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	int rc = wf_stream_write(h, buf, n);
	if (rc != 0)
		return rc;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	rc = wait_flushed(s, 0, wf__deadline_after_ms(timeout_ms), "stream write");
	wf__stream_put(s);
	return rc;
}

WF_EXTERN int wf_stream_write_eof(wf_stream *h, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	if (s->tops != NULL && !s->tops->half_close) {
		wf__stream_put(s);
		return WF_ENOSYS;
	}
	int rc = wait_flushed(s, 0, wf__deadline_after_ms(timeout_ms), "stream write_eof");
	if (rc == 0) {
		wf__spin_lock(&s->io->sl);
		s->wshut = true;
		wf__spin_unlock(&s->io->sl);
		if (s->is_socket) {
			if (shutdown(s->fd, SHUT_WR) != 0)
				rc = -errno;
		} else {
			/* A pipe has no half-close: its reader sees the end
			 * only once the write end is closed (asyncio's pipe
			 * transports close on write_eof too). */
			wf__io_detach(s->io);
			int fd = __atomic_exchange_n(&s->fd, -1, __ATOMIC_ACQ_REL);
			if (fd >= 0)
				close(fd);
		}
	}
	wf__stream_put(s);
	return rc;
}

/* ---- closing ------------------------------------------------------------ */

/* Makes the handle stale (once: false for the loser of two closes) and
 * wakes whoever waits on the stream; the handle's reference is the
 * caller's to drop. */
static bool close_begin(wf__stream *s)
{
	wf__spin_lock(&s->io->sl);
	if (s->closing) {
		wf__spin_unlock(&s->io->sl);
		return false;
	}
	s->closing = true;
	s->wshut = true;
	if (s->werr == 0)
		s->werr = WF_ECLOSED;
	fire_drainers(s);
	s->keep = wf__hdr_bump(&s->hdr);
	wf__spin_unlock(&s->io->sl);
	wf__io_detach(s->io);
	return true;
}

/* The transport's end of a flushed stream (TLS: close_notify, then the
 * peer's), unless another close or write_eof began it. The peer's end is
 * waited for only if the reader's seat is free: a task reading holds it,
 * and will see WF_ECLOSED instead. */
static int close_transport(wf__stream *s, uint64_t deadline)
{
	wf__spin_lock(&s->io->sl);
	bool first = !s->closing && !s->wshut;
	s->wshut = true; /* writes from now on get WF_EINVAL */
	wf__spin_unlock(&s->io->sl);
	if (!first)
		return 0;
	bool seat = !__atomic_exchange_n(&s->reading, 1, __ATOMIC_ACQUIRE);
	int rc = s->tops->shutdown(s, s->tctx, seat, deadline);
	if (seat)
		__atomic_store_n(&s->reading, 0, __ATOMIC_RELEASE);
	return rc;
}

WF_EXTERN int wf_stream_close(wf_stream *h, uint64_t timeout_ms)
{
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	int rc = 0;
	if (wf__in_task() && !__atomic_load_n(&s->reset, __ATOMIC_ACQUIRE)) {
		uint64_t deadline = wf__deadline_after_ms(timeout_ms);
		rc = wait_flushed(s, 0, deadline, "stream close");
		if (rc == WF_ECLOSED)
			rc = 0;
		if (rc == 0 && s->tops != NULL)
			rc = close_transport(s, deadline);
	}
	if (close_begin(s))
		wf__stream_put(s); /* the handle's */
	else
		rc = WF_EINVAL; /* another close won */
	wf__stream_put(s);
	return rc;
}

WF_EXTERN int wf_stream_abort(wf_stream *h)
{
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	__atomic_store_n(&s->reset, 1, __ATOMIC_RELEASE);
	int rc = 0;
	if (close_begin(s))
		wf__stream_put(s);
	else
		rc = WF_EINVAL;
	wf__stream_put(s);
	return rc;
}

void wf__stream_shutdown(wf__stream *s)
{
	if (s->is_socket)
		shutdown(s->fd, SHUT_RDWR);
}

void wf__stream_reset(wf__stream *s)
{
	__atomic_store_n(&s->reset, 1, __ATOMIC_RELEASE);
	wf__stream_shutdown(s);
}
