/*
 * weft: synchronisation primitives and queues; included by weft.h.
 *
 * asyncio's Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier
 * and Queue (FIFO, LIFO, priority), plus a read-write lock, all safe across
 * worker threads: tasks on any worker, and plain threads, may share one
 * object.
 *
 * Common rules.
 *  - Objects are opaque. wf_X_new(..., &out) returns 0 and stores a new
 *    object in *out that the caller owns and frees with wf_X_free; on error
 *    *out is left untouched. wf_X_free returns WF_EBUSY (and frees nothing)
 *    while a task or thread is waiting on the object; freeing an object
 *    while any other call on it has not returned yet is an error it cannot
 *    always catch.
 *  - Every suspending call takes a timeout in milliseconds: WF_FOREVER waits
 *    without one, 0 does not wait at all (WF_ETIMEDOUT if the call would
 *    have to wait). From a task it suspends the task, never the worker; from
 *    a plain thread it blocks the thread.
 *  - Every suspending call honours cancellation: a task cancelled while it
 *    waits (or before) gets WF_ECANCELED. A waiter that times out or is
 *    cancelled never takes anything with it: a wake-up, a permit, the lock
 *    or a queue item that was meant for it goes to the next waiter.
 *  - Waiters are served first come, first served.
 *  - Non-suspending calls (release, set, notify, put_nowait, ...) work from
 *    tasks and plain threads alike and never block for long.
 *  - A NULL or freed object gives WF_EINVAL, every time: handles carry a
 *    generation, so a freed object's handle never reaches a new object that
 *    took its memory. Calls that return a value, not a code, give their
 *    "nothing" instead (false, 0, NULL: "for NULL" below means NULL or a
 *    freed handle).
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_lock wf_lock;
typedef struct wf_event wf_event;
typedef struct wf_cond wf_cond;
typedef struct wf_sem wf_sem;
typedef struct wf_barrier wf_barrier;
typedef struct wf_rwlock wf_rwlock;
typedef struct wf_queue wf_queue;

/* ------------------------------------------------------------------------
 * Lock (asyncio.Lock): a mutual-exclusion lock that is not owned by a task;
 * any task or thread may release it.
 *
 * Fairness: waiters queue in arrival order and are woken in that order. A
 * task that is running may take a lock that was just released ahead of a
 * woken waiter that has not run yet (that is what keeps a busy lock fast),
 * but never for long: once the oldest waiter has waited about a
 * millisecond, releases hand the lock straight to it, and nobody can take
 * it in between. Taking and releasing a free lock is one atomic operation
 * each, with no allocation and no system call.
 * ---------------------------------------------------------------------- */
/* [any] A new lock, not held. 0, WF_EINVAL (out NULL), WF_ENOMEM. */
WF_EXTERN int wf_lock_new(wf_lock **out);
/* [any] 0, WF_EINVAL, WF_EBUSY (someone is waiting). A held lock may be
 * freed. */
WF_EXTERN int wf_lock_free(wf_lock *l);
/* [any] Takes the lock, waiting up to timeout_ms. 0, WF_ETIMEDOUT,
 * WF_ECANCELED, WF_ENOMEM (no memory for the timeout), WF_EINVAL. */
WF_EXTERN int wf_lock_acquire(wf_lock *l, uint64_t timeout_ms);
/* [any] Takes the lock if it is free and nobody waits for it: 0, WF_EBUSY,
 * WF_EINVAL. */
WF_EXTERN int wf_lock_try_acquire(wf_lock *l);
/* [any] Releases the lock (to the first waiter, if any). 0, WF_EOVERFLOW
 * (the lock was not held), WF_EINVAL. */
WF_EXTERN int wf_lock_release(wf_lock *l);
/* [any] true if the lock is held (false for NULL or freed). */
WF_EXTERN bool wf_lock_locked(const wf_lock *l);

/* ------------------------------------------------------------------------
 * Event (asyncio.Event): a flag that tasks can wait for.
 * ---------------------------------------------------------------------- */
/* [any] A new event, not set. 0, WF_EINVAL (out NULL), WF_ENOMEM. */
WF_EXTERN int wf_event_new(wf_event **out);
/* [any] 0, WF_EINVAL, WF_EBUSY (someone is waiting). */
WF_EXTERN int wf_event_free(wf_event *e);
/* [any] Sets the flag and wakes every waiter. 0, WF_EINVAL. */
WF_EXTERN int wf_event_set(wf_event *e);
/* [any] Clears the flag. 0, WF_EINVAL. */
WF_EXTERN int wf_event_clear(wf_event *e);
/* [any] Waits until the flag is set (at once if it is). 0, WF_ETIMEDOUT,
 * WF_ECANCELED, WF_ENOMEM, WF_EINVAL. A waiter is woken by a set even if
 * the flag is cleared again before it runs. */
WF_EXTERN int wf_event_wait(wf_event *e, uint64_t timeout_ms);
/* [any] true if the flag is set (false for NULL or freed). */
WF_EXTERN bool wf_event_is_set(const wf_event *e);

/* ------------------------------------------------------------------------
 * Condition (asyncio.Condition), bound to a wf_lock.
 *
 * wait and notify must be called with the lock held (by the caller: the
 * lock has no owner, so "held" is all that can be checked). wait releases
 * the lock while it waits and always holds it again when it returns,
 * whatever it returns. Like every condition variable, a wake-up may be
 * spurious: re-check the condition, or use wf_cond_wait_for.
 * ---------------------------------------------------------------------- */
/* [any] A condition on lock, or on a lock of its own if lock is NULL (freed
 * with the condition; see wf_cond_lock). A lock passed in stays the
 * caller's and must outlive the condition. 0, WF_EINVAL (out NULL, lock
 * freed), WF_ENOMEM. */
WF_EXTERN int wf_cond_new(wf_lock *lock, wf_cond **out);
/* [any] 0, WF_EINVAL, WF_EBUSY (someone is waiting, or was notified and
 * has not yet taken the lock back: a free right after wf_cond_notify_all
 * may need retrying once the notified have run). */
WF_EXTERN int wf_cond_free(wf_cond *c);
/* [any] The lock of c (NULL for NULL or freed); owned by c if c created
 * it. */
WF_EXTERN wf_lock *wf_cond_lock(const wf_cond *c);
/* [any] Waits for a notification. 0 (notified), WF_ETIMEDOUT,
 * WF_ECANCELED, WF_ENOMEM, WF_EINVAL (NULL, or the lock is not held: the
 * call then does nothing). A task cancelled while it takes the lock back
 * still takes it, then returns WF_ECANCELED; a notification it had
 * received is passed to another waiter. */
WF_EXTERN int wf_cond_wait(wf_cond *c, uint64_t timeout_ms);
/* The predicate of wf_cond_wait_for: called with the lock held. */
typedef bool (*wf_cond_pred)(void *arg);
/* [any] Waits until pred(arg) is true (checked first, and after every
 * wake-up). timeout_ms bounds the whole call. 0, WF_ETIMEDOUT (pred still
 * false at the deadline), WF_ECANCELED, WF_ENOMEM, WF_EINVAL (NULL c or
 * pred, lock not held). The lock is held on return. */
WF_EXTERN int wf_cond_wait_for(wf_cond *c, wf_cond_pred pred, void *arg, uint64_t timeout_ms);
/* [any] Wakes up to n waiters (n == 0 wakes none). Returns how many were
 * woken (>= 0), or WF_EINVAL (NULL, lock not held). */
WF_EXTERN int wf_cond_notify(wf_cond *c, unsigned n);
/* [any] Wakes every waiter; returns how many, or WF_EINVAL. */
WF_EXTERN int wf_cond_notify_all(wf_cond *c);

/* ------------------------------------------------------------------------
 * Semaphore and BoundedSemaphore (asyncio.Semaphore, BoundedSemaphore): a
 * count of permits. A release with waiters hands its permit to the first
 * one; a task arriving while others wait queues behind them.
 * ---------------------------------------------------------------------- */
#define WF_SEM_VALUE_MAX 0x7fffffffu

/* [any] A semaphore with value permits (0..WF_SEM_VALUE_MAX). 0,
 * WF_EINVAL (out NULL, value too big), WF_ENOMEM. */
WF_EXTERN int wf_sem_new(unsigned value, wf_sem **out);
/* [any] A bounded semaphore: releasing more than value permits fails
 * (WF_EOVERFLOW). Codes as wf_sem_new. */
WF_EXTERN int wf_sem_new_bounded(unsigned value, wf_sem **out);
/* [any] 0, WF_EINVAL, WF_EBUSY (someone is waiting). */
WF_EXTERN int wf_sem_free(wf_sem *s);
/* [any] Takes a permit. 0, WF_ETIMEDOUT, WF_ECANCELED, WF_ENOMEM,
 * WF_EINVAL. */
WF_EXTERN int wf_sem_acquire(wf_sem *s, uint64_t timeout_ms);
/* [any] Takes a permit if one is free and nobody waits: 0, WF_EAGAIN,
 * WF_EINVAL. */
WF_EXTERN int wf_sem_try_acquire(wf_sem *s);
/* [any] Gives a permit back. 0, WF_EOVERFLOW (a bounded semaphore
 * released more than acquired, or the count would pass WF_SEM_VALUE_MAX;
 * nothing changes), WF_EINVAL. */
WF_EXTERN int wf_sem_release(wf_sem *s);
/* [any] Free permits now (0 for NULL or freed). */
WF_EXTERN unsigned wf_sem_value(const wf_sem *s);

/* ------------------------------------------------------------------------
 * Barrier (asyncio.Barrier, with threading.Barrier's timeouts): parties
 * tasks meet; each wait returns the caller's arrival index in its
 * generation (0 .. parties-1), and the barrier starts over.
 *
 * Broken state: wf_barrier_abort breaks the barrier; wf_barrier_reset
 * breaks the current generation's waiters and starts a new, empty one. A
 * waiter that times out or is cancelled breaks the barrier too (as in
 * threading.Barrier), so that the others never wait for a party that has
 * gone. While broken, every wait returns WF_EBROKEN until the next reset.
 * ---------------------------------------------------------------------- */
/* [any] A barrier for parties tasks. 0, WF_EINVAL (out NULL, parties 0 or
 * above INT_MAX), WF_ENOMEM. */
WF_EXTERN int wf_barrier_new(unsigned parties, wf_barrier **out);
/* [any] 0, WF_EINVAL, WF_EBUSY (someone is waiting). */
WF_EXTERN int wf_barrier_free(wf_barrier *b);
/* [any] The arrival index (>= 0), or WF_EBROKEN, WF_ETIMEDOUT,
 * WF_ECANCELED, WF_ENOMEM, WF_EINVAL. */
WF_EXTERN int wf_barrier_wait(wf_barrier *b, uint64_t timeout_ms);
/* [any] Breaks the barrier: waiters get WF_EBROKEN. 0, WF_EINVAL. */
WF_EXTERN int wf_barrier_abort(wf_barrier *b);
/* [any] Waiters get WF_EBROKEN; the barrier is then empty and whole. 0,
 * WF_EINVAL. */
WF_EXTERN int wf_barrier_reset(wf_barrier *b);
/* [any] The number of parties (0 for NULL or freed). */
WF_EXTERN unsigned wf_barrier_parties(const wf_barrier *b);
/* [any] How many are waiting in the current generation (0 for NULL or
 * freed). */
WF_EXTERN unsigned wf_barrier_n_waiting(const wf_barrier *b);
/* [any] true if broken (false for NULL or freed). */
WF_EXTERN bool wf_barrier_broken(const wf_barrier *b);

/* ------------------------------------------------------------------------
 * Read-write lock: any number of readers, or one writer. Waiters are served
 * in arrival order, and a reader arriving while a writer waits queues
 * behind it, so writers are never starved; consecutive readers at the head
 * of the queue enter together.
 * ---------------------------------------------------------------------- */
/* [any] A new read-write lock, not held. 0, WF_EINVAL (out NULL),
 * WF_ENOMEM. */
WF_EXTERN int wf_rwlock_new(wf_rwlock **out);
/* [any] 0, WF_EINVAL, WF_EBUSY (someone is waiting). */
WF_EXTERN int wf_rwlock_free(wf_rwlock *rw);
/* [any] Takes it shared / exclusive. 0, WF_ETIMEDOUT, WF_ECANCELED,
 * WF_ENOMEM, WF_EINVAL. */
WF_EXTERN int wf_rwlock_rdlock(wf_rwlock *rw, uint64_t timeout_ms);
WF_EXTERN int wf_rwlock_wrlock(wf_rwlock *rw, uint64_t timeout_ms);
/* [any] Without waiting: 0, WF_EBUSY, WF_EINVAL. */
WF_EXTERN int wf_rwlock_try_rdlock(wf_rwlock *rw);
WF_EXTERN int wf_rwlock_try_wrlock(wf_rwlock *rw);
/* [any] Releases a shared / the exclusive hold. 0, WF_EOVERFLOW (not held
 * that way), WF_EINVAL. */
WF_EXTERN int wf_rwlock_rdunlock(wf_rwlock *rw);
WF_EXTERN int wf_rwlock_wrunlock(wf_rwlock *rw);

/* ------------------------------------------------------------------------
 * Queues (asyncio.Queue, LifoQueue, PriorityQueue) of void * items (NULL
 * is an item like any other).
 *
 * Items are handed over as they are; the queue never looks into them
 * (except through cmp) nor frees them, save through opts->drop. A get that
 * finds the queue empty waits; a put that finds a bounded queue full waits;
 * both are served first come, first served, and an item put while getters
 * wait goes straight to the first of them.
 *
 * Shutdown (Python 3.13): after wf_queue_shutdown, puts fail with
 * WF_ESHUTDOWN at once (waiting putters too, their items staying theirs);
 * gets go on taking what is left, then fail with WF_ESHUTDOWN. An immediate
 * shutdown also drops what is left (each item to opts->drop if given),
 * counting each as done for wf_queue_join.
 * ---------------------------------------------------------------------- */
typedef enum wf_queue_kind {
	WF_QUEUE_FIFO = 0,     /* first in, first out */
	WF_QUEUE_LIFO = 1,     /* last in, first out */
	WF_QUEUE_PRIORITY = 2, /* smallest first by cmp; equal ones in FIFO order */
} wf_queue_kind;

/* < 0 if a comes out before b, > 0 if after, 0 if equal. Called with the
 * queue's internal lock held: it must not block or touch the queue. */
typedef int (*wf_queue_cmp)(const void *a, const void *b, void *arg);

typedef struct wf_queue_opts {
	wf_queue_kind kind;
	size_t maxsize;   /* 0: unbounded */
	wf_queue_cmp cmp; /* required for WF_QUEUE_PRIORITY, else ignored */
	void *cmp_arg;
	/* Optional: receives each item dropped by an immediate shutdown or
	 * by wf_queue_free (same restrictions as cmp). */
	void (*drop)(void *item);
	uint64_t reserved[6]; /* zero: room for later fields (weft.h, ABI) */
} wf_queue_opts;

/* The defaults (every field zero: an unbounded FIFO). */
#define WF_QUEUE_OPTS_INIT WF__ZERO_INIT

/* [any] A new queue; opts NULL: an unbounded FIFO. 0, WF_EINVAL (out NULL, bad
 * kind, priority without cmp, reserved words not zero), WF_ENOMEM. */
WF_EXTERN int wf_queue_new(const wf_queue_opts *opts, wf_queue **out);
/* [any] Frees q, dropping what is left (through opts->drop if given). 0,
 * WF_EINVAL, WF_EBUSY (someone is waiting: a get, put or join). */
WF_EXTERN int wf_queue_free(wf_queue *q);

/* [any] Puts item, waiting while a bounded queue is full. 0 (the queue
 * owns the item now), WF_ESHUTDOWN, WF_ETIMEDOUT, WF_ECANCELED, WF_ENOMEM,
 * WF_EINVAL; on error the item stays the caller's. */
WF_EXTERN int wf_queue_put(wf_queue *q, void *item, uint64_t timeout_ms);
/* [any] Takes the next item into *item, waiting while the queue is empty.
 * 0, WF_ESHUTDOWN (shut down and empty), WF_ETIMEDOUT, WF_ECANCELED,
 * WF_ENOMEM, WF_EINVAL (NULL q or item). */
WF_EXTERN int wf_queue_get(wf_queue *q, void **item, uint64_t timeout_ms);
/* [any] Without waiting. 0, WF_EFULL, WF_ESHUTDOWN, WF_ENOMEM (no memory
 * to grow an unbounded queue), WF_EINVAL. */
WF_EXTERN int wf_queue_put_nowait(wf_queue *q, void *item);
/* [any] Without waiting. 0, WF_EEMPTY, WF_ESHUTDOWN (shut down and
 * empty), WF_EINVAL. */
WF_EXTERN int wf_queue_get_nowait(wf_queue *q, void **item);

/* [any] Items in the queue now (0 for NULL or freed). */
WF_EXTERN size_t wf_queue_qsize(const wf_queue *q);
/* [any] The queue's bound (0: unbounded, or NULL or freed). */
WF_EXTERN size_t wf_queue_maxsize(const wf_queue *q);
/* [any] qsize == 0 (true for NULL or freed). */
WF_EXTERN bool wf_queue_empty(const wf_queue *q);
/* [any] A bounded queue holding maxsize items (false for NULL or freed). */
WF_EXTERN bool wf_queue_full(const wf_queue *q);

/* [any] Marks one item taken earlier as processed. 0, WF_EOVERFLOW (more
 * calls than items put), WF_EINVAL. */
WF_EXTERN int wf_queue_task_done(wf_queue *q);
/* [any] Waits until every item put has been marked done (at once if none
 * is outstanding). 0, WF_ETIMEDOUT, WF_ECANCELED, WF_ENOMEM, WF_EINVAL. */
WF_EXTERN int wf_queue_join(wf_queue *q, uint64_t timeout_ms);
/* [any] Shuts the queue down (see above); a second call may make an
 * earlier one immediate. 0, WF_EINVAL. */
WF_EXTERN int wf_queue_shutdown(wf_queue *q, bool immediate);
/* [any] true once shut down (false for NULL or freed). */
WF_EXTERN bool wf_queue_is_shutdown(const wf_queue *q);

#ifdef __cplusplus
}
#endif

#endif
