/*
 * UDP endpoints.
 *
 * A wf_udp is a non-blocking datagram socket registered once,
 * edge-triggered, on the worker that opened it (poller.h). Any task on any
 * worker may send and receive: each call tries the system call and waits
 * on the source only when the socket has nothing (EAGAIN), clearing
 * readiness with the token it read before the call, so an edge that comes
 * in between is never lost. Several receivers may wait at once: an edge
 * wakes them all, each tries recvfrom again, the kernel hands each
 * datagram to one of them and the others wait again.
 *
 * Lifetime. Every call holds a reference for as long as it uses the
 * object; the handle holds one more until wf_udp_close. Close makes the
 * handle stale at once (later calls get WF_EINVAL), marks the endpoint
 * closed and wakes every waiter, which sees `closed` and returns
 * WF_ECLOSED; whoever drops the last reference deregisters the socket,
 * closes it and frees the object. So a call that is in flight when
 * another thread closes the endpoint never reads a closed descriptor
 * (whose number may already be another file's) nor a freed source.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft.h"

#include "io/io_internal.h"
#include "runtime/handle.h"
#include "runtime/internal.h"
#include "runtime/poller.h"

struct wf_udp {
	wf__hdr hdr;
	/* The slab's free list link goes here (handle.h), off the lock: a
	 * call that decoded the handle just before the endpoint was freed
	 * still finds the lock free, then the new gen. */
	void *free_link;
	wf__spinlock sl; /* guards refs and the close */
	int fd;
	wf__io *io;
	uint32_t closed; /* atomic: wf_udp_close ran */
	unsigned refs;   /* the handle's, and one per call in progress */
	bool keep;       /* what the close's wf__hdr_bump said */
};

static wf__htype udp_type = WF__HTYPE_INIT(WF__K_UDP, struct wf_udp);

/* The endpoint a live handle names, with a reference, or NULL. */
static struct wf_udp *udp_get(const wf_udp *h)
{
	struct wf_udp *u = wf__handle_get(h, WF__K_UDP);
	if (u == NULL)
		return NULL;
	wf__spin_lock(&u->sl);
	/* Again under the lock: a close decides staleness under it, so a
	 * call either takes its reference first or sees the new gen. */
	if (__atomic_load_n(&u->hdr.gen, __ATOMIC_RELAXED) != (uint32_t)((uintptr_t)h >> 32)) {
		wf__spin_unlock(&u->sl);
		return NULL;
	}
	u->refs++;
	wf__spin_unlock(&u->sl);
	return u;
}

static void udp_put(struct wf_udp *u)
{
	wf__spin_lock(&u->sl);
	bool last = --u->refs == 0;
	wf__spin_unlock(&u->sl);
	if (!last)
		return;
	wf__io_close(u->io);
	close(u->fd);
	wf__hobj_recycle(&udp_type, u, u->keep);
}

static bool udp_closed(struct wf_udp *u)
{
	return __atomic_load_n(&u->closed, __ATOMIC_ACQUIRE) != 0;
}

/* A socket of a's family bound to a. The descriptor or -errno. */
static int bound_socket(const wf_addr *a)
{
	int fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int wf_udp_open(const char *host, unsigned port, wf_udp **out)
{
	if (out == NULL || port > 65535)
		return WF_EINVAL;
	*out = NULL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	wf_addr *addrs;
	size_t n;
	int rc = wf__addr_resolve(host, port, SOCK_DGRAM, true, WF__NO_DEADLINE, &addrs, &n);
	if (rc != 0)
		return rc;
	/* The first address that binds (asyncio's create_datagram_endpoint
	 * tries them in order too); else the last one's error. */
	int fd = -EADDRNOTAVAIL;
	for (size_t i = 0; i < n; i++) {
		fd = bound_socket(&addrs[i]);
		if (fd >= 0)
			break;
	}
	free(addrs);
	if (fd < 0)
		return fd;
	struct wf_udp *u = wf__hobj_alloc(&udp_type);
	if (u == NULL) {
		close(fd);
		return WF_ENOMEM;
	}
	rc = wf__io_open(fd, &u->io);
	if (rc != 0) {
		close(fd);
		wf__hobj_free(&udp_type, u);
		return rc;
	}
	u->fd = fd;
	u->refs = 1;
	u->io->owner = u;
	*out = wf__handle_of(u);
	return 0;
}

int wf_udp_sendto(wf_udp *h, const void *buf, size_t n, const wf_addr *to, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	if (to == NULL || (buf == NULL && n > 0))
		return WF_EINVAL;
	struct wf_udp *u = udp_get(h);
	if (u == NULL)
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	int rc;
	for (;;) {
		/* The token before `closed` (and before the call): a close
		 * marks closed, then sets ready, so either this sees closed
		 * or the clear below fails and the wait returns at once. */
		uint32_t tok = wf__io_token(u->io, WF__IO_WRITE);
		if (udp_closed(u)) {
			rc = WF_ECLOSED;
			break;
		}
		ssize_t r = wf__sys_sendto(u->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT,
					   (const struct sockaddr *)&to->ss, to->len);
		if (r >= 0) {
			rc = 0;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = -errno;
			break;
		}
		wf__io_clear(u->io, WF__IO_WRITE, tok);
		rc = wf__io_wait(u->io, WF__IO_WRITE, deadline, "udp sendto");
		if (rc != 0)
			break;
	}
	udp_put(u);
	return rc;
}

ssize_t wf_udp_recvfrom(wf_udp *h, void *buf, size_t cap, wf_addr *from, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	if (buf == NULL && cap > 0)
		return WF_EINVAL;
	struct wf_udp *u = udp_get(h);
	if (u == NULL)
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	ssize_t rc;
	for (;;) {
		uint32_t tok = wf__io_token(u->io, WF__IO_READ); /* as in sendto */
		if (udp_closed(u)) {
			rc = WF_ECLOSED;
			break;
		}
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		/* Without MSG_TRUNC: the count is what landed in buf. */
		ssize_t r = wf__sys_recvfrom(u->fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
		if (r >= 0) {
			if (from != NULL) {
				memset(from, 0, sizeof(*from));
				memcpy(&from->ss, &ss, len < sizeof(ss) ? len : sizeof(ss));
				from->len = len;
			}
			rc = r;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = -errno;
			break;
		}
		wf__io_clear(u->io, WF__IO_READ, tok);
		int w = wf__io_wait(u->io, WF__IO_READ, deadline, "udp recvfrom");
		if (w != 0) {
			rc = w;
			break;
		}
	}
	udp_put(u);
	return rc;
}

int wf_udp_local_addr(const wf_udp *h, wf_addr *out)
{
	if (out == NULL)
		return WF_EINVAL;
	struct wf_udp *u = udp_get(h);
	if (u == NULL)
		return WF_EINVAL;
	memset(out, 0, sizeof(*out));
	socklen_t len = sizeof(out->ss);
	int rc = getsockname(u->fd, (struct sockaddr *)&out->ss, &len) == 0 ? 0 : -errno;
	out->len = rc == 0 ? len : 0;
	udp_put(u);
	return rc;
}

int wf_udp_close(wf_udp *h)
{
	struct wf_udp *u = wf__handle_get(h, WF__K_UDP);
	if (u == NULL)
		return WF_EINVAL;
	wf__spin_lock(&u->sl);
	if (__atomic_load_n(&u->hdr.gen, __ATOMIC_RELAXED) != (uint32_t)((uintptr_t)h >> 32)) {
		wf__spin_unlock(&u->sl);
		return WF_EINVAL;
	}
	/* Stale from here on; the slot is reused only once the last
	 * reference is dropped (wf__hobj_recycle in udp_put). */
	u->keep = wf__hdr_bump(&u->hdr);
	/* Release: pairs with udp_closed's acquire, through the ready word's
	 * tick below (a call that reads the new token sees closed). */
	__atomic_store_n(&u->closed, 1, __ATOMIC_RELEASE);
	wf__spin_unlock(&u->sl);
	/* The handle's reference keeps the source alive through this. */
	wf__io_set_ready(u->io, WF__IO_READ);
	wf__io_set_ready(u->io, WF__IO_WRITE);
	udp_put(u);
	return 0;
}
