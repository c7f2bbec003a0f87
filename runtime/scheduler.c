/*
 * The scheduler: what each worker thread does.
 *
 * Each worker owns a Chase-Lev deque (deque.h), a LIFO slot, a private list
 * of tasks that yielded, an inbox that other threads push to, a timer heap
 * and a libuv loop. A task switches back to its worker's scheduler context
 * whenever it parks, yields or exits; the worker then picks the next task:
 *
 *   1. the LIFO slot: the task this worker woke last. A wake-up is usually
 *      a hand-off (a future completed, a lock released) and the woken task
 *      wants the data that is hot in this core's cache right now;
 *   2. its own deque, newest first (fork-join locality);
 *   3. when that is empty: the inbox, the yielded list, the injection
 *      queue, then stealing from random victims;
 *   4. when there is nothing anywhere: park, sleeping in the loop's epoll
 *      until I/O, the next timer or a uv_async_send, then run libuv's
 *      callbacks with uv_run(UV_RUN_NOWAIT).
 * Every WF__MAINT_TICKS picks the worker also polls the loop without
 * blocking, runs due timers, looks at the inbox and the injection queue,
 * flushes the yielded list and runs the oldest task of its own deque: a
 * task that yields or wakes its partner in a loop cannot starve I/O, timers,
 * foreign submissions or old tasks (the deque alone is LIFO).
 *
 * The park word of a task that suspends (wf_task.park). A task switches
 * out first and is marked parked only by whoever runs next on its worker
 * (finish_switch), once its context is saved; a wake may come before that.
 *
 *   from      to        by
 *   RUNNING   PARKED    finish_switch, after the switch (CAS, release: the
 *                       saved context before the waker's queueing)
 *   PARKED    RUNNING   the waker (CAS, acquire); it then queues the task
 *   RUNNING   WOKEN     the waker, when the task has not finished switching
 *                       out (CAS): the queueing is left to finish_switch
 *   WOKEN     RUNNING   finish_switch, whose CAS failed on WOKEN (acquire:
 *                       the waker's writes), and which queues it again
 * One CAS wins each race, so each park is followed by exactly one queueing.
 *
 * Parking without lost wake-ups (a Dekker pattern): a parker sets its
 * `sleeping` flag, then increments rt->nsleeping, then looks at every queue
 * once more; a notifier publishes its work, then does a read-modify-write
 * of rt->nsleeping (adding 0), then reads the flags. Both sides' RMWs are
 * on one location, so one reads from the other: if the notifier's comes
 * first, its work happens before the parker's look; if the parker's comes
 * first, the parker's flag happens before the notifier's read. Either the
 * parker sees the work or the notifier sees the parker, on any memory
 * model, with the orderings on the operations themselves (no stand-alone
 * fence, which ThreadSanitizer would not see). Stealable work
 * pushed by a busy worker needs no such guarantee (its owner will run it)
 * and so spawns pay no fence; a worker only wakes a sleeper when no worker
 * is already searching, and at most half the workers search at once, so a
 * burst of spawns wakes one thief, which wakes the next if it finds plenty
 * (no thundering herd).
 */
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <ucontext.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "poller.h"
#include "rt.h"

#if defined(WF_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(WF_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

#define WF__MAINT_TICKS 61
#define WF__STEAL_ROUNDS 2
#define WF__STACK_CACHE_KEEP 64
#define WF__SPIN_ROUNDS 256
#define WF__PARK_CAP_BUSY_NS 1000000ull /* park, another worker awake */
#define WF__PARK_CAP_IDLE_NS 10000000ull /* park, all the others asleep */
#define WF__TRIM_PERIOD_NS 1000000000ull

#define TAG_START(t) wf__start_entry(t)
#define IS_START(x) wf__is_start_entry(x)
#define UNTAG(x) wf__start_entry_task(x)

__thread wf__worker *wf__tls_worker __attribute__((tls_model("initial-exec")));

#if !defined(__x86_64__)
/* Not inlined, and opaque to the optimiser: a task that suspends may
 * resume on another thread, so the thread-local address must be read
 * again after every switch, never kept in a register across one. */
__attribute__((noinline)) wf__worker *wf__self(void)
{
	wf__worker *w = wf__tls_worker;
	__asm__ __volatile__("" : "+r"(w));
	return w;
}
#endif

wf_task *wf__current(void)
{
	wf__worker *w = wf__self();
	return w != NULL ? w->current : NULL;
}

bool wf__in_task(void) { return wf__current() != NULL; }

uint64_t wf__current_id(void)
{
	wf__worker *w = wf__tls_worker;
	return w != NULL && w->current != NULL ? w->current->id : 0;
}

static uint64_t rng_next(wf__worker *w)
{
	uint64_t x = w->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return w->rng = x;
}

/* ---- fibers: switching with the sanitizers told ----------------------- */

static void report_overflow(wf_task *t, const char *how) __attribute__((cold, noreturn));
static void report_overflow(wf_task *t, const char *how)
{
	char buf[160];
	const char *name = wf__task_name(t);
	int n = snprintf(buf, sizeof(buf), "weft: stack overflow in task \"%s\"%s\n", name, how);
	if (n > 0)
		(void)!write(2, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	abort();
}

/* From the scheduler context into t's fiber. */
static void switch_to_task(wf__worker *w, wf_task *t)
{
#if defined(WF_ASAN)
	void *fake = NULL;
	wf__stack *s = t->fiber->stack;
	__sanitizer_start_switch_fiber(&fake, s->lo, s->size);
#endif
#if defined(WF_TSAN)
	__tsan_switch_to_fiber(t->fiber->tsan_fiber, 0);
#endif
	wf__ctx_switch(&w->sched_ctx, &t->fiber->ctx);
#if defined(WF_ASAN)
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void finish_switch(wf__worker *w);
static wf_task *pick_direct(wf__worker *w);

/* The running task switches out: straight to the next task when one is
 * ready here (a woken task in the LIFO slot, the newest of the deque),
 * else to the worker's scheduler context. A direct switch saves one
 * context switch per hand-off (ping-pong, yield, spawn chains); the
 * maintenance tick still goes through the scheduler. Whoever runs next
 * finishes the switch for the task that left (finish_switch): only then
 * is its stack no longer in use. */
void wf__sched_switch_out(wf__worker *w, int reason)
{
	wf_task *t = w->current;
	wf__fiber *f = t->fiber;
	if (WF__UNLIKELY(f->canary && !wf__stack_canary_ok(f->stack)))
		report_overflow(t, " (its canary was overwritten)");
	w->switch_reason = reason;
	w->prev = t;
	wf_task *n = pick_direct(w);
	w->current = n;
#if defined(WF_ASAN)
	void *fake = NULL;
	const void *lo = n != NULL ? n->fiber->stack->lo : w->sched_stack_lo;
	size_t size = n != NULL ? n->fiber->stack->size : w->sched_stack_size;
	__sanitizer_start_switch_fiber(reason == WF__SW_EXIT ? NULL : &fake, lo, size);
#endif
#if defined(WF_TSAN)
	__tsan_switch_to_fiber(n != NULL ? n->fiber->tsan_fiber : w->sched_tsan_fiber, 0);
#endif
	if (n != NULL) {
		__atomic_store_n(&n->last, w, __ATOMIC_RELAXED);
		wf__ctx_switch(&f->ctx, &n->fiber->ctx);
	} else {
		wf__ctx_switch(&f->ctx, &w->sched_ctx);
	}
#if defined(WF_ASAN)
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
	finish_switch(wf__self());
}

static void task_entry(void)
{
#if defined(WF_ASAN)
	__sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
	wf__worker *w = wf__self();
	finish_switch(w);
	wf_task *t = w->current;
	if (WF__UNLIKELY(t->rt->hooks != NULL))
		wf__hook_task(t, WF__HOOK_START);
	t->result = t->fn(t->arg);
	if (WF__UNLIKELY(t->cscope != NULL))
		wf__task_exit_scopes(t);
	wf__sched_switch_out(wf__self(), WF__SW_EXIT);
	abort(); /* an exited fiber is never resumed */
}

/* ---- making tasks runnable -------------------------------------------- */

static void wake_worker(wf__worker *w)
{
	int one = 1;
	if (__atomic_compare_exchange_n(&w->sleeping, &one, 0, false, __ATOMIC_SEQ_CST,
					__ATOMIC_RELAXED)) {
		__atomic_sub_fetch(&w->rt->nsleeping, 1, __ATOMIC_SEQ_CST);
		wf__poller_wake(w);
	}
}

/* The notifier's half of the park Dekker pair (top comment): an RMW of
 * nsleeping after the work was published. Returns the number of sleepers. */
/* More workers awake than the process has CPUs, `sleeping` asleep: a
 * thread that spins for another may hold the CPU that one waits for. */
static inline bool more_awake_than_cpus(const wf_runtime *rt, int sleeping)
{
	return (int)rt->nworkers - sleeping > (int)rt->ncpus;
}

/* As many workers awake as the process has CPUs (`sleeping` asleep): a
 * worker woken now would only take a CPU from an awake one (see
 * wf__notify_work). */
static inline bool enough_awake(const wf_runtime *rt, int sleeping)
{
	return (int)rt->nworkers - sleeping >= (int)rt->ncpus;
}

static inline int dekker_sleepers(wf_runtime *rt)
{
	return __atomic_fetch_add(&rt->nsleeping, 0, __ATOMIC_SEQ_CST);
}

void wf__notify_work(wf_runtime *rt)
{
	int sleepers = dekker_sleepers(rt);
	if (sleepers == 0 || __atomic_load_n(&rt->nsearching, __ATOMIC_SEQ_CST) != 0)
		return;
	/* As many workers awake as the process has CPUs: a worker woken now
	 * would only take a CPU from one of them (on a machine whose cores
	 * are shared, from the very worker whose task it waits for), and one
	 * of them runs the work soon enough: each either looks at the queues
	 * again before it sleeps (the Dekker pair above), or is running and
	 * comes to them within its maintenance tick; a parked worker still
	 * comes back within 1 ms while others are awake. Only a runtime with
	 * more workers than CPUs gets here: with one per CPU, all are
	 * awake and there is nobody to wake. */
	if (enough_awake(rt, sleepers))
		return;
	unsigned n = rt->nworkers;
	wf__worker *self = wf__self();
	unsigned start = self != NULL ? self->id + 1 : 0;
	for (unsigned i = 0; i < n; i++) {
		wf__worker *w = &rt->workers[(start + i) % n];
		/* Not ourselves: a worker here is awake, even while its park
		 * still says it sleeps (its poll is firing the waiters of the
		 * events it got, which may notify). */
		if (w == self)
			continue;
		if (__atomic_load_n(&w->sleeping, __ATOMIC_RELAXED)) {
			wake_worker(w);
			if (!__atomic_load_n(&w->sleeping, __ATOMIC_RELAXED))
				return;
		}
	}
}

/* Cheap check on the spawn path: no fence (see the top comment). */
static inline void notify_if_idle(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	/* A sole entry wakes nobody (Tokio's rule): it is what this worker
	 * runs next, usually as soon as the running task ends or waits (a
	 * chain of spawns, a handler spawned per request), and a worker woken
	 * for it only finds it gone and costs the spawner a system call per
	 * hand-off. If the running task goes on for long instead, a parked
	 * worker comes back within 1 ms (park) and takes it once its owner
	 * has not picked anything for a while (sole_entry_held). The size is
	 * read last: it loads top, the thieves' line. With as many workers
	 * awake as CPUs, wf__notify_work would wake nobody: say so without
	 * calling it, since its read-modify-write of nsleeping (the Dekker
	 * pair, which a spawn does not need) bounces that line between every
	 * spawning worker (more workers than CPUs: 16% of gather_many). */
	int sleeping = __atomic_load_n(&rt->nsleeping, __ATOMIC_RELAXED);
	if (WF__UNLIKELY(sleeping != 0) &&
	    !enough_awake(rt, sleeping) &&
	    __atomic_load_n(&rt->nsearching, __ATOMIC_RELAXED) == 0 &&
	    wf__deque_size(&w->deque) > 1)
		wf__notify_work(rt);
}

static void push_local(wf__worker *w, void *x)
{
	if (WF__UNLIKELY(!wf__deque_push(&w->deque, x))) {
		/* Out of memory growing the deque: queues that never allocate
		 * take it, the injection queue for start entries (all it
		 * holds), the inbox for woken tasks (all it holds). */
		if (IS_START(x))
			wf__startq_push(&w->rt->injection, UNTAG(x));
		else
			wf__mpq_push(&w->inbox, x);
		return;
	}
	notify_if_idle(w);
}

/* A burst of spawns (a loop spawning thousands of tasks) would otherwise be
 * spread one stolen task at a time, each steal a cache-line round trip to
 * the spawner's deque. Past WF__OFFLOAD_AT entries the spawner moves its
 * newest WF__OFFLOAD_BATCH start entries (cheap for the owner: no CAS) to
 * the runtime's stack of offloaded batches in one push, where an idle
 * worker takes them all with one exchange (Go moves half its run queue to
 * the global queue the same way). A batch is an array: a list through the
 * tasks had the taker walk a miss per task, one after the other, before
 * it ran any of them. */
#define WF__OFFLOAD_AT 4096
#define WF__OFFLOAD_BATCH 1024

typedef struct wf__offload {
	struct wf__offload *next;
	size_t n;
	void *e[WF__OFFLOAD_BATCH]; /* start entries, newest first */
} wf__offload;

static bool injection_empty(wf_runtime *rt)
{
	return wf__startq_empty(&rt->injection) &&
	       __atomic_load_n(&rt->offloaded, __ATOMIC_RELAXED) == NULL;
}

static void offload_spawns(wf__worker *w)
{
	wf__offload *b = malloc(sizeof(*b));
	if (b == NULL)
		return; /* thieves take them from the deque, one at a time */
	size_t n = 0;
	while (n < WF__OFFLOAD_BATCH) {
		void *x = wf__deque_take(&w->deque);
		if (x == WF__DQ_EMPTY)
			break;
		if (!IS_START(x)) { /* a woken task: it stays here */
			wf__deque_push(&w->deque, x);
			break;
		}
		b->e[n++] = x;
	}
	if (n == 0) {
		free(b);
		return;
	}
	b->n = n;
	wf_runtime *rt = w->rt;
	wf__offload *old = __atomic_load_n(&rt->offloaded, __ATOMIC_RELAXED);
	do {
		b->next = old;
	} while (!__atomic_compare_exchange_n(&rt->offloaded, &old, b, true, __ATOMIC_RELEASE,
					      __ATOMIC_RELAXED));
	wf__notify_work(rt);
}

bool wf__schedule_new(wf__worker *w, wf_task *t)
{
	push_local(w, TAG_START(t));
	wf__deque *d = &w->deque;
	if (WF__LIKELY(d->bottom - d->top_seen <= WF__OFFLOAD_AT))
		return false;
	d->top_seen = __atomic_load_n(&d->top, __ATOMIC_ACQUIRE);
	if (d->bottom - d->top_seen <= WF__OFFLOAD_AT)
		return false;
	if (w->rt->nworkers == 1)
		return true;
	/* The last batch offloaded is still there: nobody keeps up. */
	bool behind = !injection_empty(w->rt);
	offload_spawns(w);
	return behind;
}

void wf__offload_release(wf_runtime *rt)
{
	wf__offload *b = __atomic_exchange_n(&rt->offloaded, NULL, __ATOMIC_ACQUIRE);
	while (b != NULL) {
		wf__offload *next = b->next;
		free(b);
		b = next;
	}
}

void wf__inject(wf_runtime *rt, wf_task *t)
{
	wf__startq_push(&rt->injection, t);
	wf__notify_work(rt);
}

/* Appends t to an intrusive FIFO linked by qnext (owner only). */
static inline void fifo_append(wf_task **head, wf_task **tail, wf_task *t)
{
	t->qnext = NULL;
	if (*tail != NULL)
		(*tail)->qnext = t;
	else
		*head = t;
	*tail = t;
}

/* The LIFO slot. The owner fills and empties it on every hand-off; an
 * idle worker may take a task out of it when the owner is stuck in a long
 * task (steal_lifo), else a woken task would wait behind that task while
 * other workers idle. Thieves only ever change it from a task to NULL, with
 * a CAS, so the owner fills an empty slot with a plain release store and
 * uses an exchange only to empty it or to replace a task in it. */

/* t runs next on w; the task that held the LIFO slot goes to the deque. */
static inline void put_lifo(wf__worker *w, wf_task *t)
{
	wf_task *old = __atomic_load_n(&w->lifo, __ATOMIC_RELAXED);
	if (old == NULL) {
		/* Release: a thief that takes t sees what its waker wrote. */
		__atomic_store_n(&w->lifo, t, __ATOMIC_RELEASE);
		return;
	}
	old = __atomic_exchange_n(&w->lifo, t, __ATOMIC_ACQ_REL);
	if (old != NULL)
		push_local(w, old);
}

/* Owner: the task in the LIFO slot, or NULL (also when a thief took it). */
static inline wf_task *take_lifo(wf__worker *w)
{
	if (__atomic_load_n(&w->lifo, __ATOMIC_RELAXED) == NULL)
		return NULL;
	return __atomic_exchange_n(&w->lifo, NULL, __ATOMIC_ACQUIRE);
}

/* Owner: counts a pick. Thieves read it to tell a stuck owner (the same
 * count twice, far apart) from a busy one. */
static inline void count_pick(wf__worker *w)
{
	__atomic_store_n(&w->tick, w->tick + 1, __ATOMIC_RELAXED);
}

/* Queues t on another worker (or from a plain thread): its inbox, then a
 * wake-up if it sleeps. Once pushed, t may run, finish and let the runtime
 * shut down: count this push as in progress, so that shutdown waits for it
 * before it frees the workers, and touch nothing of t after the push. */
static void push_remote(wf_runtime *rt, wf__worker *target, wf_task *t)
{
	__atomic_add_fetch(&rt->foreign_wakes, 1, __ATOMIC_SEQ_CST);
	wf__mpq_push(&target->inbox, t);
	dekker_sleepers(rt);
	if (__atomic_load_n(&target->sleeping, __ATOMIC_SEQ_CST))
		wake_worker(target);
	else
		wf__notify_work(rt);
	__atomic_sub_fetch(&rt->foreign_wakes, 1, __ATOMIC_RELEASE);
}

/* A parked task becomes runnable (park protocol in rt.h): on the waking
 * worker (its LIFO slot: the data it wants is hot here), unless it has a
 * home elsewhere, or the waker is not one of its runtime's workers. */
static void make_runnable(wf_task *t)
{
	wf__worker *w = wf__self();
	/* Relaxed: the task set it before it parked, and the park word's
	 * acquire CAS in wf__task_wake orders this read after that. */
	wf__worker *home = __atomic_load_n(&t->home, __ATOMIC_RELAXED);
	if (w != NULL && w->rt == t->rt && (home == NULL || home == w)) {
		if (WF__UNLIKELY(w->firing_timers)) {
			/* Timers due together wake in deadline order. */
			fifo_append(&w->fired_head, &w->fired_tail, t);
			return;
		}
		put_lifo(w, t);
		return;
	}
	/* Its home, else the worker it last ran on. */
	wf_runtime *rt = t->rt;
	wf__worker *target = home;
	if (target == NULL)
		target = __atomic_load_n(&t->last, __ATOMIC_RELAXED);
	if (target == NULL)
		target = &rt->workers[0];
	push_remote(rt, target, t);
}

void wf__task_wake(wf_task *t)
{
	uint32_t p = __atomic_load_n(&t->park, __ATOMIC_ACQUIRE);
	for (;;) {
		if (p == WF__P_PARKED) {
			if (__atomic_compare_exchange_n(&t->park, &p, WF__P_RUNNING, false,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				make_runnable(t);
				return;
			}
		} else {
			/* Still switching out: leave a note its worker reads. */
			if (__atomic_compare_exchange_n(&t->park, &p, WF__P_WOKEN, false,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				return;
		}
	}
}

/* ---- running tasks ----------------------------------------------------- */

static bool start_fiber(wf__worker *w, wf_task *t)
{
	size_t size = t->stack_size ? t->stack_size : w->rt->stack_size;
	wf__stack *s = wf__stack_get(&w->stacks, size);
	if (s == NULL)
		return false;
	t->own.stack = s;
	t->own.canary = !s->guarded;
	t->fiber = &t->own;
#if defined(WF_TSAN)
	t->own.tsan_fiber = s->tsan_fiber;
#endif
	wf__ctx_make(&t->own.ctx, s->lo, s->size, task_entry);
	return true;
}

/* A task cancelled before it started never runs: consumes the pending
 * cancellation and counts it as delivered. */
static bool cancelled_before_start(wf_task *t)
{
	uint32_t word = __atomic_load_n(&t->waiter.word, __ATOMIC_ACQUIRE);
	if (!(word & WF__W_CANCEL_PENDING))
		return false;
	__atomic_and_fetch(&t->waiter.word, ~(uint32_t)WF__W_CANCEL_PENDING, __ATOMIC_ACQ_REL);
	t->cancelling = 1;
	return true;
}

/* A task that will never run gives its argument to its unstarted hook
 * (internal spawns whose argument holds resources). */
static void never_started(wf_task *t)
{
	if (WF__UNLIKELY(t->unstarted != NULL))
		t->unstarted(t->arg);
}

/* Completes the switch of the task that left (w->prev): it parks, joins
 * the yielded list, or gives its stack back. Runs on whatever context ran
 * next (a task, or the scheduler). That task is not necessarily the one
 * switched to, since a task joined inline runs on its joiner's fiber. */
static void finish_switch(wf__worker *w)
{
	wf_task *t = w->prev;
	if (t == NULL)
		return;
	w->prev = NULL;
	switch (w->switch_reason) {
	case WF__SW_PARK: {
		uint32_t p = WF__P_RUNNING;
		if (__atomic_compare_exchange_n(&t->park, &p, WF__P_PARKED, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
		/* Woken while switching out: run it again. */
		__atomic_store_n(&t->park, WF__P_RUNNING, __ATOMIC_RELAXED);
		put_lifo(w, t);
		return;
	}
	case WF__SW_YIELD:
		fifo_append(&w->yield_head, &w->yield_tail, t);
		return;
	case WF__SW_MOVE:
		/* Its context is saved: the target may run it now. */
		push_remote(w->rt, t->move_to, t);
		return;
	case WF__SW_EXIT:
		/* The fiber is dead: its stack goes back to this worker. */
#if defined(WF_TSAN)
		/* A task's entry never returns, so TSan's shadow call stack of
		 * a reused fiber grows by a frame per task and everything TSan
		 * does on it slows down: give the stack a new one now and then
		 * (creating one is itself slow, so not at every exit). */
		if (++t->fiber->stack->tsan_uses >= 64) {
			__tsan_destroy_fiber(t->fiber->stack->tsan_fiber);
			t->fiber->stack->tsan_fiber = __tsan_create_fiber(0);
			t->fiber->stack->tsan_uses = 0;
		}
#endif
		wf__stack_put(&w->stacks, t->fiber->stack);
		t->own.stack = NULL;
		t->fiber = NULL;
		wf__task_finish(t);
		return;
	default:
		abort();
	}
}

/* A start entry: claim it and give it a fiber. NULL if it is not to run
 * (a joiner ran it inline, it was cancelled before it started, no stack). */
static wf_task *claim_start(wf__worker *w, wf_task *t)
{
	/* The claim below misses when another worker spawned t (its line 0
	 * is the spawner's, rt.h): fetch the next entry's meanwhile, so that
	 * a burst taken from another worker costs one miss at a time less.
	 * (The take just read top: the peek costs no line more.) */
	void *next = wf__deque_peek(&w->deque);
	if (next != WF__DQ_EMPTY)
		wf__prefetchw(UNTAG(next));
	if (!wf__task_claim(t)) {
		wf__task_unref(t);
		return NULL;
	}
	if (cancelled_before_start(t)) {
		never_started(t);
		wf__task_finish(t);
		return NULL;
	}
	if (!start_fiber(w, t)) {
		t->fail_err = WF_ENOMEM;
		never_started(t);
		wf__task_finish(t);
		return NULL;
	}
	return t;
}

/* Runs an entry of a queue from the scheduler context: a start entry
 * (claimed first) or a woken task. */
static void run_entry(wf__worker *w, void *x)
{
	wf_task *t = IS_START(x) ? claim_start(w, UNTAG(x)) : x;
	if (t == NULL)
		return;
	w->current = t;
	__atomic_store_n(&t->last, w, __ATOMIC_RELAXED);
	switch_to_task(w, t);
	finish_switch(w);
}

/* The task a switch-out can go straight to, or NULL for the scheduler. */
static wf_task *pick_direct(wf__worker *w)
{
	if (WF__UNLIKELY((w->tick + 1) % WF__MAINT_TICKS == 0))
		return NULL;
	count_pick(w);
	wf_task *t = take_lifo(w);
	if (t != NULL)
		return t;
	void *x = wf__deque_take(&w->deque);
	if (x == WF__DQ_EMPTY) {
		t = w->yield_head;
		if (t != NULL) {
			w->yield_head = t->qnext;
			if (w->yield_head == NULL)
				w->yield_tail = NULL;
		}
		return t;
	}
	return IS_START(x) ? claim_start(w, UNTAG(x)) : x;
}

void wf__run_inline(wf__worker *w, wf_task *t)
{
	wf_task *parent = w->current;
	if (cancelled_before_start(t)) {
		never_started(t);
		return;
	}
	t->fiber = parent->fiber;
	t->inline_parent = parent;
	w->current = t;
	if (WF__UNLIKELY(t->rt->hooks != NULL))
		wf__hook_task(t, WF__HOOK_START);
	t->result = t->fn(t->arg);
	if (WF__UNLIKELY(t->cscope != NULL))
		wf__task_exit_scopes(t);
	/* The child may have suspended and resumed elsewhere, or moved
	 * itself: the fiber, and the parent on it, went along. */
	w = wf__self();
	w->current = parent;
	t->fiber = NULL;
	t->inline_parent = NULL;
	/* A pinned parent runs nowhere but at home: it goes back now, not at
	 * its next wait (which may never come). */
	if (WF__UNLIKELY(__atomic_load_n(&parent->pinned, __ATOMIC_RELAXED))) {
		wf__worker *home = __atomic_load_n(&parent->home, __ATOMIC_RELAXED);
		if (home != NULL && home != w)
			(void)wf__task_move(home->id);
	}
}

/* ---- finding work ------------------------------------------------------ */

/* Pushes a list of woken tasks (oldest first, linked by qnext) on the
 * deque so that the oldest runs first: the deque pops newest first, so
 * push newest first. */
static size_t push_oldest_first(wf__worker *w, wf_task *list)
{
	size_t count = 0;
	wf_task *rev = NULL;
	while (list != NULL) {
		wf_task *n = list->qnext;
		list->qnext = rev;
		rev = list;
		list = n;
	}
	while (rev != NULL) {
		wf_task *n = rev->qnext;
		push_local(w, rev);
		rev = n;
		count++;
	}
	return count;
}

/* The same for start entries taken from the injection queue (linked by
 * snext, see rt.h). */
static size_t push_starts_oldest_first(wf__worker *w, wf_task *list)
{
	size_t count = 0;
	wf_task *rev = NULL;
	while (list != NULL) {
		wf_task *n = list->snext;
		list->snext = rev;
		rev = list;
		list = n;
	}
	while (rev != NULL) {
		wf_task *n = rev->snext;
		push_local(w, TAG_START(rev));
		rev = n;
		count++;
	}
	return count;
}

static void flush_yielded(wf__worker *w)
{
	wf_task *list = w->yield_head;
	w->yield_head = w->yield_tail = NULL;
	push_oldest_first(w, list);
}

static bool absorb_inbox(wf__worker *w)
{
	size_t n = push_oldest_first(w, wf__mpq_take_all(&w->inbox));
	if (n != 0)
		WF__COUNT(w->st.inbox, n);
	return n != 0;
}

static bool absorb_injection(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	size_t n = push_starts_oldest_first(w, wf__startq_take_all(&rt->injection));
	if (__atomic_load_n(&rt->offloaded, __ATOMIC_RELAXED) != NULL) {
		/* Acquire: pairs with the offloader's release push. */
		wf__offload *b = __atomic_exchange_n(&rt->offloaded, NULL, __ATOMIC_ACQUIRE);
		while (b != NULL) {
			/* Newest first: the oldest ends up where this worker
			 * pops next. */
			for (size_t i = 0; i < b->n; i++)
				push_local(w, b->e[i]);
			n += b->n;
			wf__offload *next = b->next;
			free(b);
			b = next;
		}
	}
	if (n != 0)
		WF__COUNT(w->st.injected, n);
	return n != 0;
}

/* A woken task pinned to another worker: thieves hand it back. (The
 * deque's acquire load of bottom made the pinned flag, set before the task
 * was queued, visible.) */
static inline bool pinned_elsewhere(wf__worker *w, void *x)
{
	if (IS_START(x))
		return false;
	wf_task *t = x;
	return __atomic_load_n(&t->pinned, __ATOMIC_RELAXED) &&
	       __atomic_load_n(&t->home, __ATOMIC_RELAXED) != w;
}

/* A task in another worker's LIFO slot, taken when that worker has been
 * stuck in one task for a while: its pick count has not moved since this
 * thief first saw the slot full, at least WF__LIFO_STUCK_NS ago. The
 * owner's next pick empties the slot far sooner in any hand-off loop, so
 * only a real hold-up lets a thief in. */
#define WF__LIFO_STUCK_NS 200000ull
static void *steal_lifo(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	uint64_t now = 0;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		wf__worker *v = &rt->workers[i];
		if (v == w)
			continue;
		wf_task *t = __atomic_load_n(&v->lifo, __ATOMIC_RELAXED);
		if (t == NULL)
			continue;
		unsigned tick = __atomic_load_n(&v->tick, __ATOMIC_RELAXED);
		if (now == 0)
			now = wf__now_ns();
		if (w->lifo_victim != v || w->lifo_tick != tick) {
			w->lifo_victim = v;
			w->lifo_tick = tick;
			w->lifo_since = now;
			continue;
		}
		if (now - w->lifo_since < WF__LIFO_STUCK_NS)
			continue;
		if (pinned_elsewhere(w, t))
			continue;
		/* Acquire: pairs with the owner's release store or exchange
		 * that put t there. */
		if (__atomic_compare_exchange_n(&v->lifo, &t, NULL, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED)) {
			w->lifo_victim = NULL;
			WF__COUNT(w->st.steals, 1);
			return t;
		}
	}
	return NULL;
}

/* Whether some other worker's LIFO slot holds a task: a parking worker
 * then comes back soon to see whether its owner is stuck. */
static bool lifo_elsewhere(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (&rt->workers[i] != w && __atomic_load_n(&rt->workers[i].lifo, __ATOMIC_RELAXED))
			return true;
	return false;
}

/* A deque's only entry is usually what its owner runs next: the task it
 * just spawned or woke, taken as soon as the running task ends or waits
 * (a chain of spawns, a request handed to the next stage). A thief that
 * takes it moves the chain to another core, and the next link comes back
 * the same way: every hand-off then crosses cores. So a thief leaves a
 * sole entry alone until its owner has not picked anything for
 * WF__SOLE_GRACE_NS (it is busy in one task: the entry would wait), as Go
 * leaves a P's runnext alone for a few microseconds. More entries than
 * one are stolen at once, as before. */
#define WF__SOLE_GRACE_NS 5000ull
static bool sole_entry_held(wf__worker *w, wf__worker *v)
{
	unsigned tick = __atomic_load_n(&v->tick, __ATOMIC_RELAXED);
	uint64_t now = wf__now_ns();
	if (w->sole_victim != v || w->sole_tick != tick) {
		w->sole_victim = v;
		w->sole_tick = tick;
		w->sole_since = now;
		return true;
	}
	return now - w->sole_since < WF__SOLE_GRACE_NS;
}

static void *steal_from_others(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	unsigned n = rt->nworkers;
	if (n < 2)
		return NULL;
	for (int round = 0; round < WF__STEAL_ROUNDS; round++) {
		unsigned start = (unsigned)(rng_next(w) % n);
		for (unsigned i = 0; i < n; i++) {
			wf__worker *v = &rt->workers[(start + i) % n];
			if (v == w)
				continue;
			/* Steal half: run the first, keep the rest here. */
			int64_t size = wf__deque_size(&v->deque);
			if (size == 0 || (size == 1 && sole_entry_held(w, v)))
				continue;
			int64_t want = (size + 1) / 2;
			void *first = NULL;
			for (int64_t k = 0; k < want; k++) {
				void *x = wf__deque_steal(&v->deque);
				if (x == WF__DQ_EMPTY)
					break;
				if (x == WF__DQ_ABORT)
					continue;
				if (WF__UNLIKELY(pinned_elsewhere(w, x))) {
					wf_task *t = x;
					push_remote(rt, t->home, t);
					continue;
				}
				if (first == NULL)
					first = x;
				else
					push_local(w, x);
				WF__COUNT(w->st.steals, 1);
			}
			if (first != NULL)
				return first;
		}
	}
	return steal_lifo(w);
}

/* ---- seams: calls on a worker, moving and homing tasks ---------------- */

/* Runs the functions posted to w, oldest first. */
static bool run_calls(wf__worker *w)
{
	if (__atomic_load_n(&w->calls, __ATOMIC_RELAXED) == NULL)
		return false;
	/* Acquire: pairs with the posters' release CAS; fn and arg visible. */
	wf__call *c = __atomic_exchange_n(&w->calls, NULL, __ATOMIC_ACQUIRE);
	wf__call *rev = NULL;
	while (c != NULL) {
		wf__call *n = c->next;
		c->next = rev;
		rev = c;
		c = n;
	}
	while (rev != NULL) {
		wf__call *n = rev->next;
		rev->fn(rev->arg);
		free(rev);
		rev = n;
	}
	return true;
}

int wf__call_on_worker(wf_runtime *rt, unsigned worker, void (*fn)(void *), void *arg)
{
	if (rt == NULL || fn == NULL || worker >= rt->nworkers)
		return WF_EINVAL;
	if (__atomic_load_n(&rt->shutdown, __ATOMIC_ACQUIRE) == 2)
		return WF_ESHUTDOWN;
	wf__call *c = malloc(sizeof(*c));
	if (c == NULL)
		return WF_ENOMEM;
	c->fn = fn;
	c->arg = arg;
	wf__worker *target = &rt->workers[worker];
	wf__call *h = __atomic_load_n(&target->calls, __ATOMIC_RELAXED);
	do {
		c->next = h;
	} while (!__atomic_compare_exchange_n(&target->calls, &h, c, true, __ATOMIC_SEQ_CST,
					      __ATOMIC_RELAXED));
	/* The notifier's half of the park Dekker pair: a sleeping target
	 * is woken; a parking one sees the call in anything_to_do. */
	dekker_sleepers(rt);
	if (__atomic_load_n(&target->sleeping, __ATOMIC_SEQ_CST))
		wake_worker(target);
	return 0;
}

struct uv_loop_s *wf__current_loop(void)
{
	wf__worker *w = wf__self();
	return w != NULL ? &w->loop : NULL;
}

int wf__current_worker(void)
{
	wf__worker *w = wf__self();
	return w != NULL ? (int)w->id : -1;
}

bool wf__spin_may_help(void)
{
	wf__worker *w = wf__self();
	if (w == NULL)
		return true;
	wf_runtime *rt = w->rt;
	return rt->nworkers >= 2 &&
	       !more_awake_than_cpus(rt, __atomic_load_n(&rt->nsleeping, __ATOMIC_RELAXED));
}

int wf__task_move(unsigned worker)
{
	wf__worker *w = wf__self();
	wf_task *t = w != NULL ? w->current : NULL;
	if (t == NULL)
		return WF_ENOTTASK;
	if (worker >= w->rt->nworkers)
		return WF_EINVAL;
	wf__worker *target = &w->rt->workers[worker];
	bool had_home = __atomic_load_n(&t->home, __ATOMIC_RELAXED) != NULL;
	uint8_t pinned = __atomic_load_n(&t->pinned, __ATOMIC_RELAXED);
	if (target == w) {
		if (had_home)
			__atomic_store_n(&t->home, target, __ATOMIC_RELAXED);
		return 0;
	}
	/* Pinned to the target until it runs there: the target's inbox
	 * feeds its deque, where a thief would otherwise take it first. */
	__atomic_store_n(&t->home, target, __ATOMIC_RELAXED);
	__atomic_store_n(&t->pinned, 1, __ATOMIC_RELAXED);
	t->move_to = target;
	wf__sched_switch_out(w, WF__SW_MOVE);
	__atomic_store_n(&t->pinned, pinned, __ATOMIC_RELAXED);
	if (!had_home)
		__atomic_store_n(&t->home, NULL, __ATOMIC_RELAXED);
	return 0;
}

int wf__task_set_home(bool home, bool pinned)
{
	wf__worker *w = wf__self();
	wf_task *t = w != NULL ? w->current : NULL;
	if (t == NULL)
		return WF_ENOTTASK;
	__atomic_store_n(&t->home, home ? w : NULL, __ATOMIC_RELAXED);
	__atomic_store_n(&t->pinned, (uint8_t)(home && pinned), __ATOMIC_RELAXED);
	return 0;
}

int wf_move_to_worker(unsigned worker)
{
	return wf__task_move(worker);
}

int wf_pin(bool pinned)
{
	return wf__task_set_home(pinned, pinned);
}

/* Runs due timers; the tasks they wake go to the deque so that the
 * earliest deadline runs first (the LIFO slot would reverse them). */
static uint64_t run_timers(wf__worker *w)
{
	w->firing_timers = true;
	uint64_t next = wf__timers_run(w, wf__now_ns());
	w->firing_timers = false;
	wf_task *list = w->fired_head;
	w->fired_head = w->fired_tail = NULL;
	push_oldest_first(w, list);
	return next;
}

/* Shutdown asks every worker to cancel the tasks of its registry (only the
 * owner may walk it). */
static bool cancel_sweep(wf__worker *w)
{
	unsigned epoch = __atomic_load_n(&w->rt->cancel_epoch, __ATOMIC_ACQUIRE);
	if (WF__LIKELY(epoch == w->cancel_epoch))
		return false;
	w->cancel_epoch = epoch;
	wf__task_cancel_all(w);
	return true;
}

/* Where the worker's thread runs now; the kernel may move it at any time,
 * so this is a hint (read through the rseq area: no system call). */
static void note_cpu(wf__worker *w)
{
	/* Stored only when it changed: the line stays shared with the
	 * accepting workers that read it. */
	int cpu = sched_getcpu();
	if (__atomic_load_n(&w->cpu, __ATOMIC_RELAXED) != cpu)
		__atomic_store_n(&w->cpu, cpu, __ATOMIC_RELAXED);
}

void wf__worker_note_cpu(void)
{
	wf__worker *w = wf__self();
	if (w != NULL)
		note_cpu(w);
}

int wf__worker_on_cpu(int cpu)
{
	wf__worker *self = wf__self();
	if (self == NULL || cpu < 0)
		return -1;
	note_cpu(self);
	if (__atomic_load_n(&self->cpu, __ATOMIC_RELAXED) == cpu)
		return (int)self->id;
	wf_runtime *rt = self->rt;
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (__atomic_load_n(&rt->workers[i].cpu, __ATOMIC_RELAXED) == cpu)
			return (int)i;
	return -1;
}

/* Returns whether tasks that yielded were moved to the deque. */
static bool maintenance(wf__worker *w)
{
	note_cpu(w);
	cancel_sweep(w);
	run_calls(w);
	/* A worker with no socket and nothing for libuv has nothing to poll
	 * (a wake-up edge it skips is harmless: it is not asleep). */
	if (__atomic_load_n(&w->nio, __ATOMIC_RELAXED) > 0 || uv_loop_alive(&w->loop))
		wf__poller_poll(w, 0);
	run_timers(w);
	absorb_inbox(w);
	/* A worker that holds a spawner's worth of tasks already leaves the
	 * injection queue to others: a spawner whose last batch is still
	 * there then lets its own run first (wf__schedule_new), so a loop
	 * that spawns faster than the workers run keeps a bounded backlog. */
	if (wf__deque_size(&w->deque) < WF__OFFLOAD_AT)
		absorb_injection(w);
	/* Tasks that yielded become stealable, but only behind every other
	 * runnable task (a yield lets all of them run first): with a deque
	 * that pops newest first, that is only when the deque is empty. */
	bool yielded = w->yield_head != NULL && wf__deque_size(&w->deque) == 0;
	if (yielded)
		flush_yielded(w);
	wf__worker_drain_remote_free(w);
	wf__task_flush_remote(w);
	/* Work for sleepers? A spawn does not fence (see the top comment);
	 * this catches a sleeper that missed it. */
	if (wf__deque_size(&w->deque) > 1)
		notify_if_idle(w);
	return yielded;
}

static void *next_local(wf__worker *w)
{
	count_pick(w);
	if (WF__UNLIKELY(w->tick % WF__MAINT_TICKS == 0)) {
		/* The oldest task of the deque gets its turn; not when tasks
		 * that yielded were just put on it: they take turns in order,
		 * and the older tasks come right after them. */
		if (!maintenance(w)) {
			void *x = wf__deque_steal(&w->deque);
			if (x != WF__DQ_EMPTY && x != WF__DQ_ABORT)
				return x;
		}
	}
	wf_task *lt = take_lifo(w);
	if (lt != NULL)
		return lt;
	void *x = wf__deque_take(&w->deque);
	if (x != WF__DQ_EMPTY)
		return x;
	/* Tasks that yielded run in turn once nothing newer is ready; the
	 * maintenance tick moves them where thieves can see them. */
	wf_task *t = w->yield_head;
	if (t != NULL) {
		w->yield_head = t->qnext;
		if (w->yield_head == NULL)
			w->yield_tail = NULL;
		return t;
	}
	return NULL;
}

static void *search(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	if (absorb_inbox(w) || (w->yield_head != NULL && (flush_yielded(w), true)) ||
	    absorb_injection(w)) {
		void *x = wf__deque_take(&w->deque);
		if (x != WF__DQ_EMPTY)
			return x;
	}
	if (rt->nworkers < 2)
		return NULL;
	/* Bound the searchers: at most half the workers steal at once. */
	int s = __atomic_load_n(&rt->nsearching, __ATOMIC_RELAXED);
	if (2 * (unsigned)s >= rt->nworkers)
		return NULL;
	__atomic_add_fetch(&rt->nsearching, 1, __ATOMIC_SEQ_CST);
	void *x = steal_from_others(w);
	int left = __atomic_sub_fetch(&rt->nsearching, 1, __ATOMIC_SEQ_CST);
	/* The last searcher to find work wakes another, in case there is
	 * more (Tokio's rule). */
	if (x != NULL && left == 0 && wf__deque_size(&w->deque) > 0)
		wf__notify_work(rt);
	return x;
}

static bool anything_to_do(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	if (!wf__mpq_empty(&w->inbox) || !injection_empty(rt) ||
	    __atomic_load_n(&w->calls, __ATOMIC_RELAXED) != NULL)
		return true;
	if (__atomic_load_n(&w->lifo, __ATOMIC_RELAXED) != NULL || w->yield_head != NULL ||
	    wf__deque_size(&w->deque) > 0)
		return true;
	/* Another deque's sole entry is not work for us: its owner is about
	 * to run it (sole_entry_held). Only a parking worker's timed return
	 * (entries_elsewhere) looks at it again, in case its owner is stuck:
	 * a spinner that kept looking at a deque its owner pushes and takes
	 * all the time would only slow the owner down. */
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (wf__deque_size(&rt->workers[i].deque) > 1)
			return true;
	return false;
}

/* Whether another worker's deque holds anything: a parking worker then
 * comes back soon, in case that owner is stuck in one task and its sole
 * entry becomes fair game. */
static bool entries_elsewhere(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (&rt->workers[i] != w && wf__deque_size(&rt->workers[i].deque) > 0)
			return true;
	return false;
}

/* Parking and being woken cost two system calls and a few microseconds of
 * latency; work often shows up sooner than that (a partner's reply, the
 * next batch of spawns). Spin a little first, but only while some other
 * worker is awake to produce it. */
static bool spin_for_work(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	int sleeping = __atomic_load_n(&rt->nsleeping, __ATOMIC_RELAXED);
	if (rt->nworkers < 2 || sleeping >= (int)rt->nworkers - 1)
		return false;
	/* More workers awake than CPUs: the one that would give us work may
	 * be waiting for the CPU this spin holds. Park at once and let it run
	 * (it wakes us if it has more), as on a machine whose cores are
	 * shared with other programs. */
	if (more_awake_than_cpus(rt, sleeping))
		return false;
	/* A worker that watches sockets has its work coming from its own
	 * epoll, which spinning does not see: it sleeps in it at once, and
	 * the kernel wakes it the moment a packet lands. */
	if (__atomic_load_n(&w->nio, __ATOMIC_RELAXED) > 0)
		return false;
	for (int i = 0; i < WF__SPIN_ROUNDS; i++) {
		if (anything_to_do(w))
			return true;
		for (int k = 0; k < 32; k++)
			wf__cpu_relax();
	}
	return false;
}

/* Sleeps in the loop's epoll until I/O, a uv_async_send or the deadline,
 * then runs whatever libuv has ready. The poll is ours rather than
 * uv_run(UV_RUN_ONCE)'s because that one runs due timers first and then
 * blocks without a timeout: a deadline that came due in between would be
 * slept through. */
static void sleep_in_loop(wf__worker *w, uint64_t deadline)
{
	int timeout = -1;
	if (deadline != WF__NO_DEADLINE) {
		uint64_t now = wf__now_ns();
		uint64_t ms = deadline > now ? (deadline - now + 999999) / 1000000 : 0;
		timeout = ms > INT_MAX ? INT_MAX : (int)ms;
	}
	uv_update_time(&w->loop);
	/* libuv's timeout counts only while it has work: an idle loop says 0
	 * ("nothing to wait for"), which would turn this sleep into a spin. */
	int uvt = uv_loop_alive(&w->loop) ? uv_backend_timeout(&w->loop) : -1;
	if (uvt >= 0 && (timeout < 0 || uvt < timeout))
		timeout = uvt;
	wf__poller_poll(w, timeout);
}

/* Stacks a burst of tasks left in the cache are given back lazily: at most
 * half the excess a second, when the worker is idle. A stack that was used
 * once has its pages touched already, and the next burst saves the faults;
 * unmapping on every task exit would also cost TLB shoot-downs on every
 * core. Trimming is also armed from park via the park timer. */
static uint64_t trim_stacks(wf__worker *w)
{
	if (w->stacks.count <= WF__STACK_CACHE_KEEP)
		return WF__NO_DEADLINE;
	uint64_t now = wf__now_ns();
	if (w->last_trim == 0)
		w->last_trim = now;
	if (now - w->last_trim < WF__TRIM_PERIOD_NS)
		return w->last_trim + WF__TRIM_PERIOD_NS;
	w->last_trim = now;
	size_t excess = w->stacks.count - WF__STACK_CACHE_KEEP;
	wf__stack_cache_trim(&w->stacks, WF__STACK_CACHE_KEEP + excess / 2);
	return w->stacks.count > WF__STACK_CACHE_KEEP ? now + WF__TRIM_PERIOD_NS : WF__NO_DEADLINE;
}

static void park(wf__worker *w)
{
	wf_runtime *rt = w->rt;
	run_calls(w);
	uint64_t next = run_timers(w);
	if (__atomic_load_n(&w->lifo, __ATOMIC_RELAXED) != NULL || wf__deque_size(&w->deque) > 0)
		return; /* a timer woke something */
	wf__worker_drain_remote_free(w);
	wf__task_flush_remote(w);
	uint64_t trim = trim_stacks(w);
	if (trim < next)
		next = trim;
	if (rt->nworkers > 1) {
		/* Back soon while another worker is awake: its LIFO slot or
		 * its deque's sole entry (which wake nobody) may be stuck
		 * behind a long task there. With every other worker asleep,
		 * seldom: one of them may wake for its own reasons and spawn
		 * without waking us. */
		bool others_awake = __atomic_load_n(&rt->nsleeping, __ATOMIC_RELAXED) <
				    (int)rt->nworkers - 1;
		uint64_t cap = others_awake || lifo_elsewhere(w) || entries_elsewhere(w)
				       ? WF__PARK_CAP_BUSY_NS
				       : WF__PARK_CAP_IDLE_NS;
		uint64_t soon = wf__now_ns() + cap;
		if (soon < next)
			next = soon;
	}

	__atomic_store_n(&w->sleeping, 1, __ATOMIC_SEQ_CST);
	/* The parker's half of the Dekker pair (top comment): the RMW that
	 * dekker_sleepers() of a notifier reads from, or reads from it. */
	__atomic_add_fetch(&rt->nsleeping, 1, __ATOMIC_SEQ_CST);
	if (anything_to_do(w) || __atomic_load_n(&rt->shutdown, __ATOMIC_SEQ_CST) == 2 ||
	    __atomic_load_n(&rt->cancel_epoch, __ATOMIC_SEQ_CST) != w->cancel_epoch) {
		int one = 1;
		if (__atomic_compare_exchange_n(&w->sleeping, &one, 0, false, __ATOMIC_SEQ_CST,
						__ATOMIC_RELAXED))
			__atomic_sub_fetch(&rt->nsleeping, 1, __ATOMIC_SEQ_CST);
		return;
	}
	uint64_t slept = wf__now_ns();
	sleep_in_loop(w, next);
	note_cpu(w);
	WF__COUNT(w->st.parks, 1);
	WF__COUNT(w->st.park_ns, wf__now_ns() - slept);
	int one = 1;
	if (__atomic_compare_exchange_n(&w->sleeping, &one, 0, false, __ATOMIC_SEQ_CST,
					__ATOMIC_RELAXED))
		__atomic_sub_fetch(&rt->nsleeping, 1, __ATOMIC_SEQ_CST);
}

/* ---- the worker thread ------------------------------------------------- */

static void on_segv(int sig, siginfo_t *si, void *uctx);
static struct sigaction prev_segv;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;

static void install_segv(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &prev_segv);
}

/* The stack pointer at the fault, or NULL where we cannot tell. */
static const char *fault_sp(void *uctx)
{
	ucontext_t *uc = uctx;
#if defined(__x86_64__)
	return (const char *)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
	return (const char *)uc->uc_mcontext.sp;
#else
	(void)uc;
	return NULL;
#endif
}

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
	wf__worker *w = wf__tls_worker;
	wf_task *t = w != NULL ? w->current : NULL;
	if (t != NULL && t->fiber != NULL) {
		const wf__stack *s = t->fiber->stack;
		const char *sp = fault_sp(uctx);
		if (wf__stack_in_guard(s, si->si_addr))
			report_overflow(t, "");
		/* No guard page (or a frame that jumped over it): the stack
		 * pointer itself has left the stack. */
		if (sp != NULL && sp < s->lo && sp > s->lo - (64u << 20))
			report_overflow(t, "");
	}
	/* Not ours: hand it to whoever handled it before, or die of it. */
	if (prev_segv.sa_flags & SA_SIGINFO) {
		if (prev_segv.sa_sigaction != NULL) {
			prev_segv.sa_sigaction(sig, si, uctx);
			return;
		}
	} else if (prev_segv.sa_handler != SIG_DFL && prev_segv.sa_handler != SIG_IGN) {
		prev_segv.sa_handler(sig);
		return;
	}
	signal(SIGSEGV, SIG_DFL);
}

static void worker_thread_init(wf__worker *w)
{
	wf__tls_worker = w;
	note_cpu(w);
	pthread_once(&segv_once, install_segv);
	size_t alt = 64 * 1024;
	w->altstack = malloc(alt);
	if (w->altstack != NULL) {
		stack_t ss = {.ss_sp = w->altstack, .ss_size = alt, .ss_flags = 0};
		sigaltstack(&ss, NULL);
	}
	pthread_attr_t attr;
	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		void *lo;
		size_t size;
		pthread_attr_getstack(&attr, &lo, &size);
		w->sched_stack_lo = lo;
		w->sched_stack_size = size;
		pthread_attr_destroy(&attr);
	}
#if defined(WF_TSAN)
	w->sched_tsan_fiber = __tsan_get_current_fiber();
#endif
	char name[16];
	snprintf(name, sizeof(name), "weft-w%u", w->id);
	pthread_setname_np(pthread_self(), name);
}

static void worker_thread_fini(wf__worker *w)
{
	if (w->altstack != NULL) {
		stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
		sigaltstack(&ss, NULL);
		free(w->altstack);
		w->altstack = NULL;
	}
	wf__tls_worker = NULL;
}

void *wf__worker_main(void *arg)
{
	wf__worker *w = arg;
	wf_runtime *rt = w->rt;
	worker_thread_init(w);
	if (WF__UNLIKELY(rt->hooks != NULL) && rt->hooks->thread_start != NULL)
		rt->hooks->thread_start(w->id, rt->hooks->arg);
	pthread_mutex_lock(&rt->start_mu);
	rt->started++;
	pthread_cond_broadcast(&rt->start_cv);
	pthread_mutex_unlock(&rt->start_mu);

	for (;;) {
		void *x = next_local(w);
		/* Out of local work with sockets of its own: look at them
		 * (one epoll_wait that does not block) before taking another
		 * worker's tasks, as Go's scheduler does. A ready socket's task
		 * is home here, with its buffers in this core's cache; a thief
		 * that took a task from the other worker instead would leave
		 * both behind, and move that task's sockets' data across. */
		if (x == NULL && __atomic_load_n(&w->nio, __ATOMIC_RELAXED) > 0 &&
		    wf__poller_poll(w, 0) > 0)
			x = next_local(w);
		if (x == NULL)
			x = search(w);
		if (x != NULL) {
			run_entry(w, x);
			continue;
		}
		int sd = __atomic_load_n(&rt->shutdown, __ATOMIC_ACQUIRE);
		if (sd == 2)
			break;
		if (cancel_sweep(w))
			continue;
		if (spin_for_work(w))
			continue;
		park(w);
	}
	wf__task_flush_remote(w);
	run_calls(w);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	if (WF__UNLIKELY(rt->hooks != NULL) && rt->hooks->thread_stop != NULL)
		rt->hooks->thread_stop(w->id, rt->hooks->arg);
	worker_thread_fini(w);
	return NULL;
}
