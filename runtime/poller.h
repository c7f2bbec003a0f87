/*
 * The per-worker poller and I/O sources: what io/ builds on.
 *
 * Every worker owns one epoll instance. It holds an eventfd that other
 * threads write to wake the worker, libuv's backend descriptor (so libuv's
 * own work, DNS and the thread pool's completions, wakes the same sleep)
 * and every descriptor registered from that worker. A worker with nothing
 * to run sleeps in one epoll_wait on it (scheduler.c, park); a busy one
 * polls it without blocking at each maintenance tick.
 *
 * An I/O source (wf__io) is a descriptor registered once, edge-triggered,
 * with its readiness kept per direction as a word `tick << 2 | final << 1
 * | ready`. `final` is sticky: the peer hung up or the socket has an
 * error, so the direction never waits again (a hang-up that came in the
 * same edge as the last data would otherwise be slept through once that
 * data was read and ready cleared).
 *  - the poller, on an edge, adds a tick and sets ready (one CAS), then,
 *    under the source's lock, fires the direction's waiters;
 *  - a task that tried the system call and found the socket drained (a
 *    short read or EAGAIN) clears ready with a CAS from the word it read
 *    before the call (wf__io_clear): if an edge came in between, the tick
 *    moved, the CAS fails and ready stays set, so no edge is ever lost;
 *  - a task that finds ready clear waits (wf__io_wait): under the lock it
 *    looks at ready once more and links its waiter. The poller sets ready
 *    before it takes the lock to fire, so either the task sees ready or
 *    the poller sees the waiter.
 * Any thread may use a source; only its home worker's poller fires it.
 *
 * Lifetime. A source lives in a handle slab (handle.h): the epoll event
 * carries its handle, never its address, and the poller decodes it and
 * checks the generation again under the source's lock, so an event that
 * was already fetched when the source was closed on another thread finds
 * a stale handle and is dropped.
 */
#ifndef WEFT_RUNTIME_POLLER_H
#define WEFT_RUNTIME_POLLER_H

#include <stdbool.h>
#include <stdint.h>

#include "handle.h"
#include "internal.h"

typedef struct wf__worker wf__worker;
typedef struct wf__io wf__io;

enum { WF__IO_READ = 0, WF__IO_WRITE = 1 };

/* Called by the poller, on the home worker's thread, with the source's
 * lock held, after an edge set the direction's ready bit: io/'s streams
 * flush their write buffer here. Must not block or suspend. */
typedef void (*wf__io_edge_fn)(wf__io *io, void *ctx);

struct wf__io {
	wf__hdr hdr;
	void *free_link;        /* the slab's free list (handle.h), kept off
				 * the lock: a late poller may still take it */
	wf__spinlock sl;        /* guards the wait queues, closed, edge fns */
	int fd;
	uint32_t ready[2];      /* atomic: tick << 2 | final << 1 | ready */
	uint32_t closed;        /* atomic: wf__io_close began */
	bool oneshot;           /* EPOLLONESHOT, level: foreign descriptors */
	wf__worker *home;       /* whose epoll holds fd */
	wf__waitq q[2];         /* waiters per direction */
	wf__io_edge_fn on_edge[2];
	void *edge_ctx;
	void *owner;            /* io/'s object (a stream, a listener) */
};

/* ---- sources (any task or thread; registration uses the caller's
 * worker: from a plain thread, worker 0 of `rt`) ------------------------- */

/* Registers fd (already non-blocking) edge-triggered for reading and
 * writing (both ready at first: nothing is known yet) in the epoll of the
 * calling task's worker. 0 and *out, -errno from epoll_ctl (-EPERM: a
 * regular file), WF_ENOMEM, WF_ENOTTASK. The caller keeps owning fd. */
int wf__io_open(int fd, wf__io **out);
/* wf__io_open into the epoll of worker `worker` of the calling worker's
 * runtime (epoll_ctl works from any thread): the source's events and
 * edge callbacks then run on that worker. WF_EINVAL: no such worker. */
int wf__io_open_on(int fd, unsigned worker, wf__io **out);
/* For a task about to open a connection of its own: the worker whose
 * epoll should take it, or -1 to stay. A worker already holding more than
 * two sources over the fewest of any worker sends the connection to that
 * one, so that the connections a program opens spread over the cores as
 * the ones a server accepts do (io/server.c). The connection counts for
 * the worker chosen until wf__io_arrived, so that tasks that decide one
 * after another do not all pick the same worker. -1 for a pinned or homed
 * task (its worker is chosen) and off a worker. */
int wf__io_roomiest(void);
/* The connection wf__io_roomiest sent to `worker` is registered there,
 * or was not made: it no longer counts as coming. */
void wf__io_arrived(unsigned worker);
/* A one-shot registration for a foreign descriptor: waits for one
 * direction, level-triggered, once (wf_wait_readable). -EEXIST when fd is
 * already registered in this worker's epoll. */
int wf__io_open_oneshot(int fd, int dir, wf__io **out);
/* Deregisters (without closing fd) and wakes every waiter with WF_ECLOSED;
 * later waits return WF_ECLOSED at once. The source stays allocated, so
 * a task still inside a call on it may look at it. Any thread. */
void wf__io_detach(wf__io *io);
/* wf__io_detach if not done yet, then frees the source: its handle is
 * stale from now on. No call on it may be in progress. Any thread. */
void wf__io_close(wf__io *io);

/* The direction's word, for wf__io_clear after the system call. */
static inline uint32_t wf__io_token(wf__io *io, int dir)
{
	/* Acquire: pairs with the poller's CAS, so a task that sees ready
	 * also sees what the poller wrote before (nothing today, but a
	 * reader of `closed` after a wake relies on it). */
	return __atomic_load_n(&io->ready[dir], __ATOMIC_ACQUIRE);
}
static inline bool wf__io_is_ready(uint32_t token) { return token & 3u; }
/* The system call found the direction drained: clears ready unless an
 * edge came since `token` was read. */
static inline void wf__io_clear(wf__io *io, int dir, uint32_t token)
{
	if ((token & 3u) == 1u)
		__atomic_compare_exchange_n(&io->ready[dir], &token, token & ~1u, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}
/* Marks a direction ready again (for io/ itself: a reader that stopped
 * before draining, because its buffer filled, says so). */
void wf__io_set_ready(wf__io *io, int dir);

/* [task or plain thread] Waits until the direction is ready, the source is
 * closed (WF_ECLOSED) or the deadline passes. 0, WF_ECLOSED, WF_ETIMEDOUT,
 * WF_ECANCELED, WF_ENOMEM. `what` names the wait in reports. */
int wf__io_wait(wf__io *io, int dir, uint64_t deadline, const char *what);

/* ---- the worker's side (scheduler.c, runtime.c) ------------------------ */

/* Creates the worker's epoll and wake-up eventfd and adds libuv's backend
 * descriptor. 0 or -errno. */
int wf__poller_init(wf__worker *w);
void wf__poller_destroy(wf__worker *w);
/* Waits up to timeout_ms (-1: no limit, 0: just look) and dispatches what
 * came; runs libuv's callbacks if its descriptor was ready. Returns the
 * number of sources fired. Owner thread only. */
int wf__poller_poll(wf__worker *w, int timeout_ms);
/* [any] Wakes the worker out of wf__poller_poll. */
void wf__poller_wake(wf__worker *w);

#endif
