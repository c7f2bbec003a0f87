/*
 * Private runtime structures shared by the files of runtime/: tasks,
 * workers, the runtime. Nothing outside runtime/ includes this; sync/ and
 * io/ use runtime/internal.h.
 */
#ifndef WEFT_RUNTIME_RT_H
#define WEFT_RUNTIME_RT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ctx.h"
#include "deque.h"
#include "handle.h"
#include "internal.h"
#include "stack.h"
#include "weft.h"

#define WF__CACHELINE 64
#define WF__LIKELY(x) __builtin_expect(!!(x), 1)
#define WF__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Waiter word: state in the low bits, plus a pending cancellation. */
enum {
	WF__W_IDLE = 0,
	WF__W_ARMED = 1,
	WF__W_FIRED = 2,
	WF__W_STATE = 3,
	WF__W_CANCEL_PENDING = 4,
	WF__W_BY_CANCEL = 8, /* fired by a cancellation not yet seen */
	WF__W_PROXY = 16,    /* armed for an inline child that waits (waiter.c) */
	WF__W_FORWARDED = 32, /* a cancellation of a proxy reached the child */
};

/* ------------------------------------------------------------------------
 * Future core: the completion shared by wf_future and wf_task.
 * ---------------------------------------------------------------------- */
typedef struct wf__cb_node {
	wf_done_cb cb;
	void *arg;
	struct wf__cb_node *next;
	bool owned; /* the watcher's memory (wf__fcore_watch): never freed here */
} wf__cb_node;

typedef struct wf__fcore {
	wf__spinlock lock;
	int done;   /* atomic; 1 once the outcome below is published */
	int err;
	/* A task's core: a registrant passes wf__task_watch_gate first, since
	 * the task's inline joiner may complete it without the lock. */
	bool gated;
	void *value;
	char *msg;
	wf__waitq waiters;
	wf__cb_node *cbs, *cbs_tail;
} wf__fcore;

void wf__fcore_init(wf__fcore *c);
void wf__fcore_destroy(wf__fcore *c);
/* Completes c (takes ownership of msg). WF_EALREADY if already done.
 * owner is passed to the done callbacks. */
int wf__fcore_complete(wf__fcore *c, int err, void *value, char *msg, wf_future *owner);
/* Completes a gated core without its lock (a task's inline joiner, which
 * is its only completer): publishes the outcome, then takes the lock to
 * fire waiters and callbacks only if a registrant came (*watched & bit,
 * the hot side of asym.h's pair; the registrant's side is
 * wf__task_watch_gate). */
void wf__fcore_complete_lockless(wf__fcore *c, int err, void *value, char *msg,
				 const uint32_t *watched, uint32_t bit);
/* task.c: a registrant's passage on a task's core (gated). */
void wf__task_watch_gate(wf__fcore *c);
/* Waits for c; 0/err of c, or WF_ETIMEDOUT / WF_ECANCELED of the wait. */
int wf__fcore_wait(wf__fcore *c, uint64_t deadline_ns);
int wf__fcore_add_cb(wf__fcore *c, wf_done_cb cb, void *arg, wf_future *owner);
/* A done-callback in a node the caller owns, so watching allocates nothing
 * and can be undone (the combinators of compose.c watch many tasks at
 * once). Links n and returns true, or, if c is already done, runs the
 * callback at once and returns false. */
bool wf__fcore_watch(wf__fcore *c, wf__cb_node *n, wf_future *owner);
/* Unlinks n; true if its callback had not been taken for running (it never
 * will be), false if it has run or is running now. */
bool wf__fcore_unwatch(wf__fcore *c, wf__cb_node *n);
/* wf__fcore_wait, saying what the waiter waits on ("join", ...). */
int wf__fcore_wait_what(wf__fcore *c, uint64_t deadline_ns, const char *what);

/* Futures are handed out as handles (runtime/handle.h); code that keeps a
 * future keeps the object (wf_task.submit holds wf__future_get(handle)).
 * wf__future_get: the object behind a handle, NULL if stale. settle:
 * completes f (taking msg) and drops one reference; put: drops one. */
wf_future *wf__future_get(const wf_future *handle);
int wf__future_settle(wf_future *f, int err, void *value, char *msg);
void wf__future_put(wf_future *f);

struct wf_future {
	wf__fcore core;
	uint32_t refs; /* atomic */
	uint32_t magic;
	uint32_t debug; /* atomic WF__FD_*: the debug report of futures */
};

enum { /* wf_future.debug */
	WF__FD_TRACKED = 1, /* made by a task of a WF_DEBUG_CHECKS runtime */
	WF__FD_SEEN = 2,    /* its outcome was read (wf_await, wf_future_result) */
};

/* ------------------------------------------------------------------------
 * Tasks
 * ---------------------------------------------------------------------- */
enum {
	WF__T_NEW = 0,     /* spawned, not started: may still run inline */
	WF__T_RUNNING = 1, /* started (on a fiber or inline) */
	WF__T_DONE = 2,    /* finished; outcome in core */
};

enum { /* park: has a suspended task switched out yet? */
	WF__P_RUNNING = 0,
	WF__P_PARKED = 1,
	WF__P_WOKEN = 2, /* woken before it finished switching out */
};

#define WF__TASK_MAGIC 0x77667461u /* "wfta" */
#define WF__TASK_DEAD 0xdeadbeefu
#define WF__NAME_MAX 32

typedef struct wf__worker wf__worker;

typedef struct wf__fiber {
	wf__ctx ctx;
	wf__stack *stack;
#if defined(WF_TSAN)
	void *tsan_fiber; /* ThreadSanitizer's context, the stack's */
#endif
	bool canary; /* the stack has no guard page: its canary is checked at
		      * every switch (kept here, where the switch reads
		      * anyway, rather than read from the stack's header) */
} wf__fiber;

struct wf_task {
	/* Line 0 is what a spawn writes and the worker that starts the task
	 * reads, and the outcome's `done` (the core runs on into line 1);
	 * line 2 and 3-4 what every wait, wake and switch touches; 5 the
	 * join's and free's. Everything but line 0, the core and the
	 * spawner's own line 6 is put back to its starting value when the
	 * task is freed (task_reset), by the worker that ran it and holds those
	 * lines: a spawn writes one line that another core may hold, not seven
	 * (a spawn burst run by another worker moved all seven both ways per
	 * task). The core keeps its outcome until the next spawn: a watcher
	 * that decoded the handle just before its holder gave it back still
	 * finds it done (compose.c's stale items). */
	wf__hdr hdr;    /* generation-tagged handle (handle.h) */
	uint32_t magic; /* WF__TASK_MAGIC while allocated */
	uint32_t state; /* atomic WF__T_* */
	uint32_t park;  /* atomic WF__P_* */
	uint32_t refs;  /* atomic: handle, queue entries, running */
	uint32_t joined;   /* atomic: a join is waiting on or took the outcome */
	int spawn_line;    /* with spawn_file below */
	struct wf_task *qnext; /* inbox, yield list, fired timers, free lists */
	wf_fn fn;
	void *arg;
	wf__fcore core;    /* outcome, and the join's waiter */
	/* line 2 */
	wf__fiber *fiber;  /* the fiber it runs on: its own, or a joiner's */
	wf__fiber own;     /* its own fiber, when it runs on one */
	wf_runtime *rt;
	wf__worker *last;  /* where it last ran: remote wake-ups go there */
	wf__worker *home;  /* atomic: wakes go there (NULL: no home) */
	uint64_t wait_since; /* coarse clock: when its current wait began */
	/* lines 3-4 */
	wf__waiter waiter; /* the one thing it waits on at a time */
	struct wf__vars *vars; /* its context variables (ctxvar.c); NULL: none */
	struct wf_task *inline_parent; /* the joiner it runs inline for */
	uint8_t pinned;    /* atomic: never run by another worker than home */
	bool inline_by_joiner; /* its joiner ran it inline and takes the outcome */
	int cancelling;    /* cancellations delivered and not uncancelled */
	uint32_t cancel_forwarded;     /* atomic: a cancellation went to the child */
	int fail_err;      /* set by wf_fail */
	struct wf__cscope *cscope; /* innermost timeout scope or task group
				    * the task is inside (compose_internal.h) */
	void *result;      /* what fn returned */
	/* line 5 */
	void (*unstarted)(void *arg); /* called instead of fn if it never runs */
	char *fail_msg;
	uint32_t name_state; /* atomic: the default name is written lazily */
	wf_future *submit; /* wf_runtime_submit: completed with the outcome */
	size_t stack_size; /* 0: the runtime's */
	wf__worker *owner; /* whose pool the memory returns to; NULL: foreign */
	wf__worker *move_to; /* WF__SW_MOVE: the worker it moves to */
	struct wf_task *snext; /* injection queue: start entries only. A task
				* claimed from there (a join runs it inline)
				* may be woken, yield or be freed while the
				* injection chain still runs through it, so
				* that chain must not share qnext. */
	/* line 6: written by the spawner only */
	uint64_t id;
	const char *spawn_file; /* where it was spawned (wf_spawn's caller) */
	struct wf_task *reg_prev, *reg_next; /* foreign registry only */
	char name[WF__NAME_MAX];
} __attribute__((aligned(WF__CACHELINE)));
#if !defined(WF_TSAN) && !defined(WF_CTX_UCONTEXT) /* a bigger fiber: lines shift */
_Static_assert(offsetof(struct wf_task, core.done) < 64 && offsetof(struct wf_task, fiber) == 128 &&
		       offsetof(struct wf_task, waiter) == 192 && offsetof(struct wf_task, unstarted) == 320 &&
		       offsetof(struct wf_task, id) == 384 && sizeof(struct wf_task) == 448,
	       "wf_task's lines: see the comment at its top");
#endif

/* Fetches p's line for writing: a read prefetch would leave a line that
 * another core wrote shared with it, and the store would wait a second
 * time. (PREFETCHW is a no-op on x86-64 processors that predate it;
 * compilers emit it only when told the target has it. A prefetch never
 * faults, whatever the address.) */
static inline void wf__prefetchw(const void *p)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

/* Task structs of a worker come from handle slabs (handle.h) it keeps
 * until the runtime ends, then gives back to the process-wide pool for the
 * next runtime; walking them finds every task the worker allocated. */
#define WF__TASKS_PER_SLAB ((WF__HSLAB_ALIGN - WF__HSLAB_HDR) / sizeof(wf_task))
typedef struct wf__slab {
	struct wf__slab *next;
	wf_task *tasks; /* WF__TASKS_PER_SLAB of them */
} wf__slab;

/* Queue entries: a woken task is queued as its address; a task that has
 * not started is queued as a start entry, its address with the low bit
 * set. Whoever takes a start entry must claim the task (wf__task_claim)
 * before running it: a join may have run it inline meanwhile. */
static inline void *wf__start_entry(const wf_task *t)
{
	return (void *)((uintptr_t)t | 1u);
}
static inline bool wf__is_start_entry(const void *x)
{
	return ((uintptr_t)x & 1u) != 0;
}
static inline wf_task *wf__start_entry_task(const void *x)
{
	return (wf_task *)((uintptr_t)x & ~(uintptr_t)1u);
}
/* Claims an unstarted task for running (WF__T_NEW -> WF__T_RUNNING): true
 * for exactly one claimer. acq_rel: the winner sees the spawner's writes
 * (the start entry or handle published them) and the losers see that t is
 * taken. */
static inline bool wf__task_claim(wf_task *t)
{
	uint32_t s = WF__T_NEW;
	return __atomic_compare_exchange_n(&t->state, &s, WF__T_RUNNING, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

/* The task a handle names, or NULL if the handle is not a live task's
 * (NULL, stale: joined, detached or freed, garbage, another kind). */
static inline wf_task *wf__task_get(const wf_task *handle)
{
	return (wf_task *)wf__hdecode(handle, WF__K_TASK, sizeof(wf_task), WF__TASKS_PER_SLAB);
}
/* The handle of a live task, as the program sees it. */
static inline wf_task *wf__task_handle(const wf_task *t)
{
	return (wf_task *)wf__handle_of(t);
}

/* ------------------------------------------------------------------------
 * Timers: a per-worker binary heap (see timer.c).
 * ---------------------------------------------------------------------- */
typedef struct wf__timer {
	uint64_t deadline;
	uint32_t state; /* atomic: armed, firing, fired, cancelled */
	uint32_t refs;  /* atomic: the heap's and the waiter's */
	size_t index;   /* in the heap (SIZE_MAX once out); owner worker only */
	wf__waiter *waiter;
	wf__worker *worker;
	struct wf__timer *cnext; /* the owner's list of remote cancels */
} wf__timer;

typedef struct wf__timer_heap {
	wf__timer **items;
	size_t len, cap;
	size_t stale; /* cancelled entries still in the heap */
} wf__timer_heap;

/* ------------------------------------------------------------------------
 * Intrusive multi-producer queues of tasks (Treiber stacks taken whole):
 * wf__mpq links through qnext (inboxes, remote frees), wf__startq through
 * snext (the injection queue of start entries).
 * ---------------------------------------------------------------------- */
typedef struct wf__mpq {
	wf_task *head; /* atomic */
} wf__mpq;

typedef struct wf__startq {
	wf_task *head; /* atomic */
} wf__startq;

/* ------------------------------------------------------------------------
 * Workers
 * ---------------------------------------------------------------------- */
enum { /* why a task switched back to its worker */
	WF__SW_PARK = 1,
	WF__SW_YIELD = 2,
	WF__SW_EXIT = 3,
	WF__SW_MOVE = 4, /* to t->move_to's inbox */
};

/* A function to run on a worker's own thread (wf__call_on_worker). */
typedef struct wf__call {
	void (*fn)(void *arg);
	void *arg;
	struct wf__call *next;
} wf__call;

/* A worker's counters (weft/observe.h): written by the worker only, with
 * relaxed stores (WF__COUNT), read by any thread with relaxed loads. */
typedef struct wf__wstats {
	uint64_t steals, inbox, injected, parks, park_ns;
	uint64_t io_polls, io_events, timers_fired;
} wf__wstats;

#define WF__COUNT(field, n) __atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)

struct wf__worker {
	/* Touched by other threads: thieves, wakers. */
	wf__deque deque;
	wf__mpq inbox;
	int sleeping; /* atomic: parked in uv_run or about to */
	char pad0[WF__CACHELINE];

	/* Owner only. */
	wf_runtime *rt;
	unsigned id;
	wf__ctx sched_ctx;
	void *sched_tsan_fiber;
	const void *sched_stack_lo; /* for ASan's fiber annotations */
	size_t sched_stack_size;
	wf_task *current;
	wf_task *prev;     /* switched out; its switch_reason not handled yet */
	int switch_reason;
	wf_task *lifo; /* atomic: thieves may empty it (steal_lifo) */
	unsigned lifo_streak;
	wf__worker *lifo_victim; /* steal_lifo: the full slot seen last, */
	unsigned lifo_tick;      /* its owner's pick count then, */
	uint64_t lifo_since;     /* and when */
	wf__worker *sole_victim; /* steal_from_others: a deque holding one */
	unsigned sole_tick;      /* entry, its owner's pick count then, */
	uint64_t sole_since;     /* and when */
	wf_task *yield_head, *yield_tail;
	bool firing_timers;              /* wakes go to fired_*, in order */
	wf_task *fired_head, *fired_tail;
	unsigned tick; /* atomic, owner writes: picks made */
	uint64_t rng;
	bool searching;
	wf__stack_cache stacks;
	wf__stack *dead_stack; /* of a task that exited, freed after the switch */
	wf_task *free_tasks;       /* its own frees, cache-hot, first */
	struct wf__mag *mag;       /* others' frees for it, being used */
	struct wf__mag *mags;      /* more of them, taken and not begun */
	struct wf__mag *spare_mags; /* empty, for its frees for others */
	unsigned n_spare_mags;
	wf__mpq remote_free;       /* tasks plain threads freed for it */
	struct wf__mag *remote_mags; /* atomic: magazines workers freed */
	wf__slab *slabs;
	wf__worker *rfree_owner;   /* frees batched for that worker */
	struct wf__mag *rfree_mag; /* in this magazine */
	wf__timer_heap timers;
	wf__timer *timer_cancels; /* atomic: cancelled by other threads */
	wf__call *calls;          /* atomic: functions posted to this worker */
	uv_loop_t loop;
	int epfd;   /* the worker's epoll (poller.h) */
	int wakefd; /* an eventfd in it: other threads write to wake us */
	uint32_t nio; /* atomic: sources registered in epfd (poller.c) */
	uint32_t nio_coming; /* atomic: connections on their way here
			      * (wf__io_roomiest) */
	int cpu;      /* atomic, owner writes: the CPU its thread last ran on
		       * (sched_getcpu at start, each wake, each maintenance
		       * tick, before a connect and before it maps an incoming
		       * CPU), -1 unknown; servers place connections by it */
	pthread_t thread;
	void *altstack;
	uint64_t next_id;
	unsigned cancel_epoch; /* last shutdown sweep done */
	uint64_t last_trim;    /* stack cache trimming, wf__now_ns */
	uint64_t n_started;    /* atomic, owner writes: tasks spawned here */
	uint64_t n_finished;   /* atomic, owner writes: tasks finished here */
	wf__wstats st;         /* atomic each, owner writes (observe.c) */
} __attribute__((aligned(WF__CACHELINE))); /* no line shared with a neighbour */

struct wf_runtime {
	const struct wf_hooks *hooks; /* cfg.hooks: NULL, or some set */
	uint64_t start_ns;
	struct wf__observe *observe;  /* observe.c's threads, or NULL */
	unsigned nworkers;
	unsigned ncpus; /* CPUs the process may use: more awake workers spin in vain */
	wf__worker *workers;
	wf_config cfg;
	size_t stack_size;
	int shutdown;    /* atomic: 1 draining, 2 stopping workers */
	unsigned cancel_epoch;   /* atomic: bumped to make workers sweep */
	/* Lines of their own, each written by different parties: the fields
	 * above are read by every worker all the time and written almost
	 * never; these are written on every submission from a plain thread
	 * (injection), every park and search (the counts), every plain
	 * thread's submit or wake (foreign_*). */
	wf__startq injection __attribute__((aligned(WF__CACHELINE)));
	struct wf__offload *offloaded; /* atomic: spawn bursts' batches (scheduler.c) */
	int nsleeping __attribute__((aligned(WF__CACHELINE))); /* atomic */
	int nsearching;  /* atomic */
	uint64_t foreign_started __attribute__((aligned(WF__CACHELINE))); /* atomic: tasks submitted from plain threads */
	int foreign_wakes;        /* atomic: wakes by plain threads in progress */
	int submitting;           /* atomic: wf_runtime_submit calls in progress */
	pthread_mutex_t foreign_mu;
	wf_task foreign_reg; /* registry of tasks allocated on plain threads */
	unsigned started; /* workers up; start_mu */
	pthread_mutex_t start_mu;
	pthread_cond_t start_cv;
};

/* The worker running on this thread, or NULL. A task may resume on another
 * thread, so the read must never be folded with one before a switch: on
 * x86-64 it is a volatile asm load through %fs with a memory clobber (the
 * compiler cannot move it across a call, and reads it afresh each time);
 * elsewhere a call the compiler cannot see into (scheduler.c), since the
 * thread pointer's own register is what it would otherwise keep. */
extern __thread wf__worker *wf__tls_worker __attribute__((tls_model("initial-exec")));
#if defined(__x86_64__)
static inline wf__worker *wf__self(void)
{
	wf__worker *w;
	__asm__ __volatile__("movq wf__tls_worker@gottpoff(%%rip), %0\n\t"
			     "movq %%fs:(%0), %0"
			     : "=r"(w)
			     :
			     : "memory");
	return w;
}
#else
wf__worker *wf__self(void);
#endif

/* runtime.c: says on stderr, in debug mode (WF_DEBUG_CHECKS), why a call
 * failed that has no code to say it with (see runtime.c). */
void wf__debug_note(const wf_runtime *rt, const char *fmt, ...)
	__attribute__((cold, format(printf, 2, 3)));

/* runtime.c: fn(arg) as a detached task of rt, from any thread; if the
 * task never runs (cancelled first: a shutdown), unstarted(arg) is called
 * instead (may be NULL). 0, WF_ESHUTDOWN, WF_ENOMEM. */
int wf__runtime_spawn(wf_runtime *rt, wf_fn fn, void *arg, void (*unstarted)(void *arg));

/* scheduler.c */
void wf__sched_switch_out(wf__worker *w, int reason);
void wf__task_wake(wf_task *t);
void wf__notify_work(wf_runtime *rt);
/* Queues a new task on w; true when the backlog is past its bound (the
 * spawner should yield: scheduler.c, "A bounded backlog" in design.md). */
bool wf__schedule_new(wf__worker *w, wf_task *t);
void wf__inject(wf_runtime *rt, wf_task *t);
/* After the workers stopped: frees the offloaded batches left (start entries
 * of tasks a join ran inline). */
void wf__offload_release(wf_runtime *rt);
void *wf__worker_main(void *arg);
void wf__run_inline(wf__worker *w, wf_task *t);
void wf__task_finish(wf_task *t);
/* compose/: closes the scopes t returned inside (t->cscope != NULL). */
void wf__task_exit_scopes(wf_task *t);

/* task.c */
enum { WF__HOOK_SPAWN, WF__HOOK_START, WF__HOOK_SUSPEND, WF__HOOK_RESUME, WF__HOOK_END };
/* Calls t's runtime's hook for the event, if set (rt->hooks is not NULL). */
void wf__hook_task(wf_task *t, int event);
wf_task *wf__task_alloc(wf_runtime *rt, wf__worker *w);
void wf__task_unref(wf_task *t);
/* The join word of a task its spawner is setting up (task.c's J_* bits). */
void wf__task_set_joined(wf_task *t, uint32_t bits);
void wf__task_free_local(wf__worker *w, wf_task *t);
void wf__worker_drain_remote_free(wf__worker *w);
void wf__task_flush_remote(wf__worker *w);
void wf__task_release_all(wf__worker *w);
void wf__task_release_foreign(wf_runtime *rt);
void wf__task_cancel_all(wf__worker *w);
void wf__task_cancel_list(wf_task *head);
bool wf__task_cancel_request(wf_task *t);
/* The name of a task given by address (wf_task_name takes a handle). */
const char *wf__task_name(wf_task *t);

/* waiter.c */
void wf__inline_pull_cancel(wf_task *t);

/* Diagnostics (task dumps, metrics, shutdown reports) read other threads'
 * fields without synchronising, knowing a value may be stale; TSan is told
 * to ignore those reads. */
#if defined(WF_TSAN)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define RACY_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define RACY_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define RACY_READS_BEGIN() ((void)0)
#define RACY_READS_END() ((void)0)
#endif




/* timer.c */
wf__timer *wf__timer_add(wf__worker *w, uint64_t deadline, wf__waiter *wt);
void wf__timer_cancel(wf__timer *tm);
/* Fires due timers; returns the next deadline or WF__NO_DEADLINE. */
uint64_t wf__timers_run(wf__worker *w, uint64_t now);
void wf__timers_destroy(wf__worker *w);

/* Pushes the list first..last (already linked through LINK) in one CAS.
 * Release on success: everything written to those tasks before the push is
 * visible to the thread whose take_all (acquire) takes them. seq_cst rather
 * than release because a push that wakes a sleeper is one half of the park
 * Dekker pair (scheduler.c): the push must be ordered before the pusher's
 * read of the sleeper flags. */
#define WF__MPQ_DEFINE(prefix, qtype, LINK)                                    \
	static inline void prefix##_push_list(qtype *q, wf_task *first, wf_task *last) \
	{                                                                      \
		wf_task *h = __atomic_load_n(&q->head, __ATOMIC_RELAXED);      \
		do {                                                           \
			last->LINK = h;                                        \
		} while (!__atomic_compare_exchange_n(&q->head, &h, first, true, \
						      __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)); \
	}                                                                      \
	static inline void prefix##_push(qtype *q, wf_task *t)                 \
	{                                                                      \
		prefix##_push_list(q, t, t);                                   \
	}                                                                      \
	/* Takes every queued task, oldest first. Acquire: pairs with the     \
	 * pushes' release. */                                                 \
	static inline wf_task *prefix##_take_all(qtype *q)                     \
	{                                                                      \
		if (__atomic_load_n(&q->head, __ATOMIC_RELAXED) == NULL)       \
			return NULL;                                           \
		wf_task *h = __atomic_exchange_n(&q->head, NULL, __ATOMIC_ACQUIRE); \
		wf_task *rev = NULL;                                           \
		while (h != NULL) {                                            \
			wf_task *n = h->LINK;                                  \
			h->LINK = rev;                                         \
			rev = h;                                               \
			h = n;                                                 \
		}                                                              \
		return rev;                                                    \
	}                                                                      \
	/* Takes every queued task, in no particular order (newest first):    \
	 * no walk, for lists whose order does not matter. */                  \
	static inline wf_task *prefix##_take_any(qtype *q)                     \
	{                                                                      \
		if (__atomic_load_n(&q->head, __ATOMIC_RELAXED) == NULL)       \
			return NULL;                                           \
		return __atomic_exchange_n(&q->head, NULL, __ATOMIC_ACQUIRE);  \
	}                                                                      \
	static inline bool prefix##_empty(qtype *q)                            \
	{                                                                      \
		return __atomic_load_n(&q->head, __ATOMIC_RELAXED) == NULL;    \
	}

WF__MPQ_DEFINE(wf__mpq, wf__mpq, qnext)
WF__MPQ_DEFINE(wf__startq, wf__startq, snext)

#endif
