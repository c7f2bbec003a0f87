/*
 * The per-worker poller and I/O sources (the protocol is in poller.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "poller.h"
#include "rt.h"
#include "waiting.h"

/* epoll data of the two descriptors that are not sources. A source's data
 * is its handle, whose generation (odd) makes it at least 2^32. */
#define TOKEN_WAKE 0u
#define TOKEN_UV 1u
#define MAX_EVENTS 128

static wf__htype io_type = WF__HTYPE_INIT(WF__K_IO, wf__io);

/* ---- sources ---------------------------------------------------------- */

static int register_fd(wf__worker *w, wf__io *io, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)(uintptr_t)wf__handle_of(io)};
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		return -errno;
	io->home = w;
	__atomic_add_fetch(&w->nio, 1, __ATOMIC_RELAXED);
	return 0;
}

static int io_new(int fd, wf__worker *w, bool oneshot, int dir, wf__io **out)
{
	if (fd < 0)
		return -EBADF;
	if (w == NULL)
		return WF_ENOTTASK;
	wf__io *io = wf__hobj_alloc(&io_type);
	if (io == NULL)
		return WF_ENOMEM;
	io->fd = fd;
	io->oneshot = oneshot;
	/* Nothing is known of a new descriptor: both directions start ready,
	 * and the first system call finds out. A one-shot source waits for
	 * the kernel's word instead. */
	io->ready[0] = oneshot ? 0 : 1;
	io->ready[1] = oneshot ? 0 : 1;
	uint32_t events = oneshot ? (dir == WF__IO_READ ? EPOLLIN | EPOLLRDHUP : EPOLLOUT) | EPOLLONESHOT
				  : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	int rc = register_fd(w, io, fd, events);
	if (rc != 0) {
		wf__hobj_free(&io_type, io);
		return rc;
	}
	*out = io;
	return 0;
}

int wf__io_open(int fd, wf__io **out) { return io_new(fd, wf__tls_worker, false, 0, out); }

int wf__io_open_on(int fd, unsigned worker, wf__io **out)
{
	wf__worker *self = wf__tls_worker;
	if (self == NULL)
		return WF_ENOTTASK;
	if (worker >= self->rt->nworkers)
		return WF_EINVAL;
	return io_new(fd, &self->rt->workers[worker], false, 0, out);
}

int wf__io_roomiest(void)
{
	wf__worker *self = wf__tls_worker;
	wf_task *t = self != NULL ? self->current : NULL;
	if (t == NULL || self->rt->nworkers < 2 ||
	    __atomic_load_n(&t->home, __ATOMIC_RELAXED) != NULL)
		return -1;
	wf_runtime *rt = self->rt;
	uint32_t fewest = UINT32_MAX;
	unsigned least = 0;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		uint32_t n = __atomic_load_n(&rt->workers[i].nio, __ATOMIC_RELAXED) +
			     __atomic_load_n(&rt->workers[i].nio_coming, __ATOMIC_RELAXED);
		if (n < fewest) {
			fewest = n;
			least = i;
		}
	}
	uint32_t mine = __atomic_load_n(&self->nio, __ATOMIC_RELAXED) +
			__atomic_load_n(&self->nio_coming, __ATOMIC_RELAXED);
	if (mine <= fewest + 2)
		return -1;
	__atomic_add_fetch(&rt->workers[least].nio_coming, 1, __ATOMIC_RELAXED);
	return (int)least;
}

void wf__io_arrived(unsigned worker)
{
	wf__worker *self = wf__tls_worker;
	if (self != NULL && worker < self->rt->nworkers)
		__atomic_sub_fetch(&self->rt->workers[worker].nio_coming, 1, __ATOMIC_RELAXED);
}

int wf__io_open_oneshot(int fd, int dir, wf__io **out)
{
	return io_new(fd, wf__tls_worker, true, dir, out);
}

void wf__io_detach(wf__io *io)
{
	if (__atomic_exchange_n(&io->closed, 1, __ATOMIC_ACQ_REL))
		return;
	/* Deregister first: no new event can name the source after this.
	 * epoll_ctl is safe from any thread. A descriptor the program closed
	 * already left the epoll by itself (EBADF here: fine). */
	struct epoll_event ev = {0};
	epoll_ctl(io->home->epfd, EPOLL_CTL_DEL, io->fd, &ev);
	__atomic_sub_fetch(&io->home->nio, 1, __ATOMIC_RELAXED);
	wf__spin_lock(&io->sl);
	wf__waitq_fire_all(&io->q[0], WF_ECLOSED, NULL);
	wf__waitq_fire_all(&io->q[1], WF_ECLOSED, NULL);
	io->on_edge[0] = io->on_edge[1] = NULL;
	wf__spin_unlock(&io->sl);
}

void wf__io_close(wf__io *io)
{
	wf__io_detach(io);
	/* An event fetched before the deregistration finds the bumped
	 * generation under the lock and is dropped. */
	wf__spin_lock(&io->sl);
	bool keep = wf__hdr_bump(&io->hdr);
	wf__spin_unlock(&io->sl);
	wf__hobj_recycle(&io_type, io, keep);
}

/* Sets ready (and final, for a hang-up or an error) with a new tick. The
 * caller holds io->sl. */
static void set_ready(wf__io *io, int dir, bool final)
{
	uint32_t s = __atomic_load_n(&io->ready[dir], __ATOMIC_RELAXED);
	uint32_t bits = final ? 3u : 1u;
	/* Release: pairs with wf__io_token's acquire. */
	while (!__atomic_compare_exchange_n(&io->ready[dir], &s, (s + 4u) | bits, true,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		;
}

void wf__io_set_ready(wf__io *io, int dir)
{
	wf__spin_lock(&io->sl);
	set_ready(io, dir, false);
	wf__waitq_fire_all(&io->q[dir], 0, NULL);
	wf__spin_unlock(&io->sl);
}

int wf__io_wait(wf__io *io, int dir, uint64_t deadline, const char *what)
{
	wf__spin_lock(&io->sl);
	if (__atomic_load_n(&io->closed, __ATOMIC_RELAXED)) {
		wf__spin_unlock(&io->sl);
		return WF_ECLOSED;
	}
	if (wf__io_is_ready(__atomic_load_n(&io->ready[dir], __ATOMIC_ACQUIRE))) {
		wf__spin_unlock(&io->sl);
		return 0;
	}
	wf__waiting wg = {.lock = &io->sl,
			  .q = &io->q[dir],
			  .what = what,
			  .obj = io,
			  .deadline = deadline,
			  .no_wait = deadline != WF__NO_DEADLINE && deadline <= wf__now_ns()};
	return wf__wait_on(&wg);
}

/* ---- the worker's side ------------------------------------------------ */

int wf__poller_init(wf__worker *w)
{
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return -errno;
	w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wakefd < 0) {
		int e = -errno;
		close(w->epfd);
		return e;
	}
	/* Edge-triggered, and never read: every write to an eventfd is a new
	 * edge even while its counter is not zero, so the wake costs the
	 * waker one write and the sleeper nothing more than the epoll_wait
	 * it was in. The counter cannot reach its limit (2^64 - 2 writes). */
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = TOKEN_WAKE};
	int rc = epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev);
	/* libuv's own descriptor, level-triggered: it stays ready until
	 * uv_run has taken what it holds. */
	struct epoll_event uv = {.events = EPOLLIN, .data.u64 = TOKEN_UV};
	if (rc == 0)
		rc = epoll_ctl(w->epfd, EPOLL_CTL_ADD, uv_backend_fd(&w->loop), &uv);
	if (rc != 0) {
		int e = -errno;
		wf__poller_destroy(w);
		return e;
	}
	return 0;
}

void wf__poller_destroy(wf__worker *w)
{
	if (w->wakefd >= 0)
		close(w->wakefd);
	if (w->epfd >= 0)
		close(w->epfd);
	w->wakefd = w->epfd = -1;
}

void wf__poller_wake(wf__worker *w)
{
	uint64_t one = 1;
	ssize_t r;
	do
		r = write(w->wakefd, &one, sizeof(one));
	while (r < 0 && errno == EINTR);
}

static int dispatch(uint64_t token, uint32_t events)
{
	wf__io *io = wf__handle_get((void *)(uintptr_t)token, WF__K_IO);
	if (io == NULL)
		return 0; /* closed since the kernel queued the event */
	int fired = 0;
	wf__spin_lock(&io->sl);
	if (__atomic_load_n(&io->hdr.gen, __ATOMIC_RELAXED) == (uint32_t)(token >> 32)) {
		bool err = events & (EPOLLERR | EPOLLHUP);
		for (int dir = 0; dir < 2; dir++) {
			bool edge = dir == WF__IO_READ ? (events & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)) || err
						       : (events & EPOLLOUT) || err;
			if (!edge)
				continue;
			/* A one-shot source reports readiness, not a state:
			 * its waiter asks the kernel again anyway. */
			bool final = !io->oneshot && (err || (dir == WF__IO_READ && (events & EPOLLRDHUP)));
			set_ready(io, dir, final);
			/* Most edges find nobody waiting (the write direction's,
			 * every time): no call then. */
			if (io->q[dir].head != NULL)
				fired += (int)wf__waitq_fire_all(&io->q[dir], 0, NULL);
			if (io->on_edge[dir] != NULL)
				io->on_edge[dir](io, io->edge_ctx);
		}
	}
	wf__spin_unlock(&io->sl);
	return fired;
}

int wf__poller_poll(wf__worker *w, int timeout_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int n = epoll_wait(w->epfd, evs, MAX_EVENTS, timeout_ms);
	int fired = 0;
	WF__COUNT(w->st.io_polls, 1);
	if (n > 0)
		WF__COUNT(w->st.io_events, (uint64_t)n);
	bool uv = false;
	for (int i = 0; i < n; i++) {
		uint64_t t = evs[i].data.u64;
		if (t == TOKEN_WAKE)
			continue;
		if (t == TOKEN_UV) {
			uv = true;
			continue;
		}
		fired += dispatch(t, evs[i].events);
	}
	/* libuv runs only when it has something: its descriptor was ready,
	 * or it holds handles that are closing or idle (timeout 0). Its
	 * uv_run polls its own epoll once more, a system call the common
	 * case (sockets only) does without. */
	if (uv || (uv_loop_alive(&w->loop) && uv_backend_timeout(&w->loop) == 0))
		uv_run(&w->loop, UV_RUN_NOWAIT);
	return fired;
}
