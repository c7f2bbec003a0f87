/*
 * The small internal runtime API that sync/ and io/ (and the combinators)
 * build on: suspend the current task until something fires it, fire a
 * waiter from any thread, the current worker, the clock.
 *
 * The waiter protocol. A waiter is armed by its owner (a task or a plain
 * thread) with wf__wait_prepare, linked by the owner into some object's list
 * under that object's lock, and then waited on with wf__wait. Whoever fires
 * it first (the object, a deadline, a cancellation) wins; every later fire
 * fails and must move on to the next waiter, so a timed-out or cancelled
 * waiter never swallows a hand-off meant for another. Rules:
 *   - objects fire waiters while holding their own lock;
 *   - after wf__wait returns a code the object did not give (a deadline or
 *     a cancellation won), the owner unlinks its waiter under the object's
 *     lock before doing anything else (wf__waiter_linked says if it is
 *     still in the list);
 *   - a waiter is never re-armed while linked.
 * With those, a fire never reaches a waiter that has moved on.
 *
 * The waiter word (a task's; a plain thread's uses ARMED and FIRED only).
 * Low bits: the state; high bits: flags. Every change is a CAS or RMW with
 * acq_rel ordering on the word itself, so each transition below has one
 * winner, and whoever wins sees everything its predecessor published.
 *
 *   from               to                        by
 *   IDLE               ARMED                     owner, wf__wait_prepare (no
 *                                                CANCEL_PENDING: else that is
 *                                                consumed and it stays IDLE)
 *   ARMED              FIRED                     any thread, wf__waiter_fire
 *                                                (an object, a timer)
 *   ARMED              FIRED|BY_CANCEL           any thread, a cancellation
 *   ARMED              IDLE                      owner, wf__wait_abandon
 *   FIRED[|BY_CANCEL]  IDLE (CANCEL_PENDING kept) owner, on resuming in
 *                                                wf__wait
 *   not ARMED          |CANCEL_PENDING           a cancellation that finds no
 *                                                wait to fire (none if
 *                                                BY_CANCEL: delivered once)
 *   CANCEL_PENDING     cleared                   owner (prepare, yield, start)
 *                                                or its inline child taking it
 *                                                over (waiter.c)
 *   IDLE               ARMED|PROXY               an inline child about to
 *                                                wait, on each joiner's word
 *   ARMED|PROXY        FIRED|BY_CANCEL|PROXY     a cancellation of a joiner;
 *                      then |FORWARDED           once it reached the child
 *   any PROXY          IDLE (CANCEL_PENDING kept) the child, on resuming; it
 *                                                waits out FIRED without
 *                                                FORWARDED (a forward under
 *                                                way)
 *
 * The firer writes code and value after winning ARMED -> FIRED and before
 * the wake-up; the wake-up's release (the park word, then a queue push) and
 * the resumed owner's acquire publish them.
 */
#ifndef WEFT_RUNTIME_INTERNAL_H
#define WEFT_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "weft.h"

#include "clock.h"
#include "spinlock.h"

typedef struct wf__waiter wf__waiter;
struct wf__waiter {
	uint32_t word;  /* atomic: WF__W_* state | WF__W_CANCEL_PENDING */
	int code;       /* given by the firer, read by the owner after waking */
	void *value;    /* hand-off payload given by the firer */
	wf_task *task;  /* owning task, or NULL for a plain thread */
	struct wf__thread_waiter *thread;
	wf__waiter *prev, *next; /* the object's list; its lock guards them */
	bool linked;             /* guarded by the object's lock too */
	void *data;              /* for the object's own use while linked */
	const char *what;        /* what it waits on, for reports ("lock",
				  * "future", "sleep", ...); set after prepare */
	const void *obj;         /* the object waited on, or NULL */
};

/* Storage a plain thread waits with; lives on the thread's stack. */
typedef struct wf__thread_waiter {
	wf__waiter w;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int woken;
} wf__thread_waiter;

/* Arms the calling task's waiter (or tw's, on a plain thread) and stores it
 * in *out. WF_ECANCELED if a cancellation was pending for the task: it is
 * consumed, and the caller must not wait. */
int wf__wait_prepare(wf__waiter **out, wf__thread_waiter *tw);

/* Suspends until w is fired or the deadline (absolute, wf__now_ns clock)
 * passes. Returns the firer's code, WF_ETIMEDOUT or WF_ECANCELED. */
int wf__wait(wf__waiter *w, uint64_t deadline_ns);

/* Fires w with code and value if nothing fired it yet; wakes its owner.
 * true if this call fired it. Callable from any thread. */
bool wf__waiter_fire(wf__waiter *w, int code, void *value);

/* Drops an armed waiter that was never waited on (the object turned out
 * to be ready after wf__wait_prepare). Must not be linked. */
void wf__wait_abandon(wf__waiter *w);

/* Doubly-linked FIFO of waiters, for objects. The object's lock guards it. */
typedef struct wf__waitq {
	wf__waiter *head, *tail;
	size_t len;
} wf__waitq;

void wf__waitq_push(wf__waitq *q, wf__waiter *w);
void wf__waitq_remove(wf__waitq *q, wf__waiter *w);
wf__waiter *wf__waitq_pop(wf__waitq *q);
/* Pops waiters until one fires with code/value; true if one did. */
bool wf__waitq_fire_one(wf__waitq *q, int code, void *value);
/* Fires every waiter; returns how many fired. */
size_t wf__waitq_fire_all(wf__waitq *q, int code, void *value);

static inline bool wf__waiter_linked(const wf__waiter *w) { return w->linked; }

/* ---- workers: the seams io/ and other subsystems build on ------------- *
 * A worker is one thread with its own libuv loop. Everything below is for
 * code running in a task or on a worker's thread unless it says [any]. */
struct uv_loop_s;
/* The calling worker's libuv loop, or NULL on a plain thread. Only that
 * worker's thread may use it. */
struct uv_loop_s *wf__current_loop(void);
/* The calling worker's index (0 .. workers-1), or -1 on a plain thread. */
int wf__current_worker(void);
/* Whether a task that waits for another thread to let go of something
 * (a sync object's spin) may expect that thread to be running: false in a
 * runtime of one worker, and while more workers are awake than the
 * process has CPUs (the holder may be waiting for the CPU the spin
 * holds). True off a worker (a plain thread cannot tell). */
bool wf__spin_may_help(void);
/* The index of a worker of the calling worker's runtime whose thread ran
 * on CPU `cpu` when it last looked (itself first), or -1: none, or not
 * called on a worker. A hint: threads move. */
int wf__worker_on_cpu(int cpu);
/* Notes the CPU the calling worker's thread is on now (for
 * wf__worker_on_cpu): before a connect, whose packets the server then
 * sees arrive on that CPU. Nothing on a plain thread. */
void wf__worker_note_cpu(void);
/* [any] Runs fn(arg) on worker `worker` of rt, on its own thread, outside
 * any task (fn must not suspend), soon: at once if the worker sleeps, at
 * its next maintenance tick if it is busy. Calls posted to one worker run
 * in the order posted. 0, WF_EINVAL (no such worker, fn NULL), WF_ENOMEM,
 * WF_ESHUTDOWN (the workers are stopping). */
int wf__call_on_worker(wf_runtime *rt, unsigned worker, void (*fn)(void *), void *arg);
/* Moves the calling task to worker `worker` (it resumes on that worker's
 * thread); a pinned task's home moves with it. 0, WF_EINVAL, WF_ENOTTASK. */
int wf__task_move(unsigned worker);
/* Sets the calling task's home to the worker it runs on (wakes go there)
 * and, with pinned, keeps thieves away from it: it only ever runs there.
 * home false clears both. 0 or WF_ENOTTASK. */
int wf__task_set_home(bool home, bool pinned);

/* The calling task, or NULL on a plain thread. */
wf_task *wf__current(void);
/* Its id, or 0 on a plain thread. */
uint64_t wf__current_id(void);
/* sync/lock.c: the id of the task holding a lock object (0: free, or a
 * plain thread's), read without synchronising, for task dumps. */
uint64_t wf__lock_holder(const void *lock_obj);
/* true if the caller is a task (may suspend). */
bool wf__in_task(void);

/* ctxvar.c: contexts are shared by reference (NULL is the empty one). */
typedef struct wf__vars wf__vars;
wf__vars *wf__vars_ref(wf__vars *v);
void wf__vars_unref(wf__vars *v);
/* A reference to the calling task's context (a plain thread's own). */
wf__vars *wf__vars_capture(void);
/* A plain thread (a pool thread running a call) takes v, with its
 * reference, as its context; returns the one it had, for wf__vars_leave,
 * which drops the current one and puts prev back. */
wf__vars *wf__vars_enter(wf__vars *v);
void wf__vars_leave(wf__vars *prev);

/* observe.c */
uint64_t wf__coarse_ns(void);
/* The runtime's messages: through the program's log function, else on
 * stderr with "weft: " in front. */
void wf__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A task failed and was never joined: the exception handler or the log. */
void wf__report_never_joined(const char *name, uint64_t id, int err, const char *msg);
/* Writes the dump of rt's live tasks to out (NULL: the log). */
int wf__dump(wf_runtime *rt, FILE *out, const char *title);

#endif
