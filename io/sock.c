/*
 * Raw sockets and foreign descriptors: readiness waits and the tutorial's
 * low-level socket calls.
 *
 * Each call tries the system call first and waits only on EAGAIN, with a
 * one-shot, level-triggered registration (wf__io_open_oneshot) made for
 * that wait and dropped after it. Nothing is kept between calls, so a
 * descriptor the program owns is never left registered, it may be used
 * from any worker, and a library that stops reading before EAGAIN is never
 * left waiting for an edge that already passed. The price is two epoll_ctl
 * per wait, which the streams avoid by registering once.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "weft.h"

#include "io/io_internal.h"
#include "runtime/internal.h"
#include "runtime/poller.h"

static bool deadline_passed(uint64_t deadline)
{
	return deadline != WF__NO_DEADLINE && deadline <= wf__now_ns();
}

/* One readiness wait of fd for dir, until deadline. */
static int wait_fd(int fd, int dir, uint64_t deadline, const char *what)
{
	if (fd < 0)
		return -EBADF;
	if (deadline_passed(deadline))
		return WF_ETIMEDOUT;
	wf__io *io;
	int rc = wf__io_open_oneshot(fd, dir, &io);
	if (rc == -EEXIST) /* another wait, or a stream, holds fd in this epoll */
		return WF_EBUSY;
	if (rc != 0)
		return rc;
	rc = wf__io_wait(io, dir, deadline, what);
	wf__io_close(io);
	return rc;
}

/* A zero timeout asks the kernel once, without registering anything. */
static int poll_now(int fd, int dir)
{
	struct pollfd p = {.fd = fd, .events = dir == WF__IO_READ ? POLLIN | POLLRDHUP : POLLOUT};
	int n;
	do
		n = poll(&p, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (p.revents & POLLNVAL)
		return -EBADF;
	/* An error or a hang-up is readiness: the next call reports it. */
	return n > 0 ? 0 : WF_ETIMEDOUT;
}

static int wait_ready(int fd, int dir, uint64_t timeout_ms, const char *what)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	if (fd < 0)
		return -EBADF;
	if (timeout_ms == 0)
		return poll_now(fd, dir);
	return wait_fd(fd, dir, wf__deadline_after_ms(timeout_ms), what);
}

int wf_wait_readable(int fd, uint64_t timeout_ms)
{
	return wait_ready(fd, WF__IO_READ, timeout_ms, "readable");
}

int wf_wait_writable(int fd, uint64_t timeout_ms)
{
	return wait_ready(fd, WF__IO_WRITE, timeout_ms, "writable");
}

static bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

int wf_sock_accept(int lfd, wf_addr *peer, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (peer != NULL) {
				memset(peer, 0, sizeof(*peer));
				memcpy(&peer->ss, &ss, len < sizeof(ss) ? len : sizeof(ss));
				peer->len = len;
			}
			return fd;
		}
		if (errno == EINTR)
			continue;
		if (!would_block(errno))
			return -errno;
		int rc = wait_fd(lfd, WF__IO_READ, deadline, "accept");
		if (rc != 0)
			return rc;
	}
}

int wf_sock_connect(int fd, const struct sockaddr *addr, socklen_t len, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	if (addr == NULL)
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	for (;;) {
		if (connect(fd, addr, len) == 0)
			return 0;
		int e = errno;
		/* A Unix socket whose listener's backlog is full says EAGAIN
		 * and has started nothing: wait, then ask again. */
		if (would_block(e)) {
			int rc = wait_fd(fd, WF__IO_WRITE, deadline, "connect");
			if (rc != 0)
				return rc;
			continue;
		}
		/* EINTR: the connection goes on in the background (POSIX), as
		 * with EINPROGRESS. */
		if (e != EINPROGRESS && e != EINTR)
			return -e;
		break;
	}
	int rc = wait_fd(fd, WF__IO_WRITE, deadline, "connect");
	if (rc != 0)
		return rc;
	int err = 0;
	socklen_t elen = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
		return -errno;
	return -err;
}

ssize_t wf_sock_recv(int fd, void *buf, size_t n, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	for (;;) {
		ssize_t r = wf__sys_recvfrom(fd, buf, n, MSG_DONTWAIT, NULL, NULL);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (!would_block(errno))
			return -errno;
		int rc = wait_fd(fd, WF__IO_READ, deadline, "recv");
		if (rc != 0)
			return rc;
	}
}

ssize_t wf_sock_send(int fd, const void *buf, size_t n, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	for (;;) {
		ssize_t r = wf__sys_sendto(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (!would_block(errno))
			return -errno;
		int rc = wait_fd(fd, WF__IO_WRITE, deadline, "send");
		if (rc != 0)
			return rc;
	}
}

int wf_sock_sendall(int fd, const void *buf, size_t n, size_t *sent, uint64_t timeout_ms)
{
	if (sent != NULL)
		*sent = 0;
	if (!wf__in_task())
		return WF_ENOTTASK;
	if (buf == NULL && n > 0)
		return WF_EINVAL;
	/* One deadline for the whole call, however many sends it takes. */
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	const char *p = buf;
	size_t done = 0;
	int rc = 0;
	while (done < n) {
		ssize_t r = wf__sys_sendto(fd, p + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
		if (r >= 0) {
			done += (size_t)r;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (!would_block(errno)) {
			rc = -errno;
			break;
		}
		rc = wait_fd(fd, WF__IO_WRITE, deadline, "sendall");
		if (rc != 0)
			break;
	}
	if (sent != NULL)
		*sent = done;
	return rc;
}
