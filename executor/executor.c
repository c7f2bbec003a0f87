/*
 * Executor pools: blocking and CPU-bound calls on plain threads, so that a
 * task can call blocking code while its worker runs other tasks.
 *
 * A call is a job: fn, arg, a future the pool thread completes, and queue
 * links. A pool is one mutex guarding a FIFO of jobs and a LIFO of idle
 * threads. Calls and threads meet in two ways:
 *   - hand-off: a call that finds an idle thread gives the job to that one
 *     thread (its `job` slot) and wakes it through the thread's own futex
 *     word. No broadcast, no shared condition variable: waking one thread
 *     costs one FUTEX_WAKE, and no other idle thread stirs.
 *   - queue: a call that finds none is queued. If the pool may grow and no
 *     thread is already starting, the caller starts one thread; every
 *     thread, when it starts, takes a queued job and, while queued jobs
 *     outnumber the threads on their way, starts more before running its
 *     own ("spawn-ahead"). A burst of a thousand calls thus costs the
 *     submitting worker one pthread_create; the other 999 are created by
 *     pool threads, in parallel with the submissions and with each other
 *     (at most SPAWNERS at a time: thread creation serialises on the
 *     kernel's mm lock, so more creators only contend; with 1000 calls
 *     that must all be running at once on a cold pool, measured on 2
 *     cores: one spawner 31-35k calls/s, two 47-52k, four 38-49k).
 * Idle threads are a LIFO so that the busiest threads stay warm and the
 * ones at the bottom time out: a thread parked for the keep-alive leaves.
 *
 * The default pool starts with no thread at all. A program that never
 * blocks pays nothing, and on-demand creation is cheap enough not to need
 * a reserve: creating a thread that stays alive costs about 20 us here
 * (what makes thread-per-call slow is the exit and unmapping of each
 * stack, which a pool avoids), and since threads freed by finished calls
 * take queued ones, a burst of 1000 one-millisecond calls on a cold pool
 * needs only a few hundred threads and ends in about 10 ms.
 *
 * Invariants (all under p->mu):
 *   - a thread is on the idle list iff it is parked without a job; whoever
 *     takes it off gives it a job (word WORD_JOB) or tells it to exit
 *     (WORD_EXIT), so a parked thread has exactly one way out;
 *   - idle threads exist only while the queue is empty (a queued job and an
 *     idle thread never coexist, except in a closing pool, whose idle
 *     threads are leaving);
 *   - nstarting counts threads created and not yet at their first job:
 *     while it is non-zero, one of them will look at the queue, so a caller
 *     need not start another;
 *   - a job leaves the queue exactly once: popped by a thread (state
 *     RUNNING) or discarded (state CANCELLED, by a cancelling to_thread or
 *     a WF_POOL_CANCEL shutdown). That is what makes drop run exactly once.
 *
 * Thread lifetimes. Pool threads are joinable; a thread that exits (keep-
 * alive, shutdown) leaves its handle in the `zombie` slot and joins the
 * previous occupant, so at most one exited thread is ever unjoined, and
 * shutdown joins that last one: no thread outlives its pool's shutdown.
 *
 * Memory ordering (nothing here relies on x86's ordering of plain
 * accesses; AArch64 reorders them). Everything the pool's lists and
 * counters hold is guarded by p->mu. Read outside it are only:
 *   - a parked thread's futex word: the waker writes the thread's job,
 *     then stores the word with release, both under p->mu; the parked
 *     thread loads it with acquire and then reads its job without the
 *     lock. FUTEX_WAIT compares the word in the kernel, under the futex
 *     bucket's lock, so a store made before the FUTEX_WAKE is never slept
 *     through;
 *   - the reference counts of pools and jobs (pool_unref, job_unref);
 *   - nqueued, the magic word and the keep-alive, read as relaxed
 *     snapshots for statistics and sanity checks: they order nothing.
 *
 * A job is referenced by the pool (until it is run or discarded) and, for
 * wf_to_thread, by the waiting caller, who may need to cancel it: the last
 * reference frees it. The job holds one reference to its future. For the
 * same reason a user pool's memory is referenced by its owner (until
 * wf_pool_shutdown) and by every wf_to_thread in progress on it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#error "executor.c parks pool threads on Linux futexes"
#endif

#include "executor/executor_internal.h"
#include "runtime/abi.h"
#include "runtime/handle.h"
#include "runtime/internal.h"
#include "runtime/subsystem.h"
#include "weft.h"

#define POOL_MAGIC 0x77667070u /* "wfpp" */
#define POOL_DEAD 0xdeadf00du
#define DEFAULT_MAX_THREADS 1024u
#define DEFAULT_KEEPALIVE_MS 10000u
#define NO_KEEPALIVE UINT64_MAX
#define SPAWNERS 2u
#define THREAD_NAME_MAX 16 /* Linux: 15 bytes and the NUL */

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_CANCELLED };

typedef struct job {
	wf_fn fn;
	void *arg;
	wf_drop_fn drop;
	wf_future *fut;
	struct job *prev, *next; /* the pool's queue; p->mu */
	int state;               /* p->mu */
	uint32_t refs;           /* atomic */
	int err;                 /* set by wf_blocking_fail on the pool thread */
	char *msg;
	wf__vars *vars;          /* the caller's context, which the call runs in */
} job;

/* A parked thread's futex word. Every reason to wake it changes the word
 * (under p->mu) before the FUTEX_WAKE, so a wake-up issued between its
 * check and its sleep is never lost: the sleep finds the word changed. */
enum {
	WORD_PARKED = 0,
	WORD_JOB = 1,  /* self->job is set */
	WORD_EXIT = 2, /* the pool is closing */
	WORD_POKE = 3, /* the keep-alive changed: recompute the deadline */
};

/* Lives on its thread's stack. */
typedef struct pool_thread {
	uint32_t word; /* futex; atomic */
	job *job;      /* given with WORD_JOB, under p->mu */
	struct pool_thread *prev, *next; /* idle list; p->mu */
} pool_thread;

struct wf_pool {
	wf__hdr hdr; /* user pools are named by generation-tagged handles */
	void *free_link; /* the slab's free list (handle.h) writes here, never
			  * over magic or refs, which a call racing the last
			  * unref still reads (pool_ref) */
	uint32_t magic;
	uint32_t refs; /* atomic: the owner's, and one per wf_to_thread in progress */
	bool is_default;
	pthread_mutex_t mu;
	job *qhead, *qtail;
	size_t nqueued; /* atomic for readers; written under mu */
	pool_thread *idle;
	unsigned nidle;
	unsigned nthreads;  /* alive, counting those starting */
	unsigned nstarting; /* created, not yet at their first job */
	unsigned nspawners; /* threads creating threads right now */
	unsigned max_threads;
	uint64_t keepalive_ns; /* NO_KEEPALIVE: idle threads stay */
	int closing;           /* 0, or the WF_POOL_* mode of a shutdown */
	bool has_zombie;
	pthread_t zombie;
	wf_future *exited; /* completed by the last thread out of a closing pool */
	unsigned next_index;
	uint64_t started, retired;
	char name[THREAD_NAME_MAX];
};

static wf_pool default_pool = {
	.magic = POOL_MAGIC,
	.is_default = true,
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.max_threads = DEFAULT_MAX_THREADS,
	.keepalive_ns = DEFAULT_KEEPALIVE_MS * 1000000ull,
	.name = "wf-blocking",
};
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
/* Serialises shutdowns of the default pool (several runtimes may end at
 * once). */
static pthread_mutex_t default_close_mu = PTHREAD_MUTEX_INITIALIZER;

/* The job running on this pool thread, for wf_blocking_fail, and its pool,
 * to catch a pool shutting itself down. */
static __thread job *tls_job;
static __thread wf_pool *tls_pool;

static void *thread_main(void *arg);

/* ---- futex ------------------------------------------------------------ */

/* Waits while *word == val, until the absolute CLOCK_MONOTONIC deadline
 * (NULL: none). Spurious returns are fine: callers re-check. */
static void futex_wait(uint32_t *word, uint32_t val, const struct timespec *deadline)
{
	syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, deadline, NULL,
		FUTEX_BITSET_MATCH_ANY);
}

/* The woken thread may already have seen its word, run its job and even
 * exited by the time the wake-up is issued (the waker runs it after the
 * unlock): the kernel then finds no waiter, or returns EFAULT for an
 * unmapped address, or gives a spurious wake-up to whatever futex now lives
 * there, which every futex waiter tolerates. */
static void futex_wake_one(uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
}

/* ---- default pool configuration --------------------------------------- */

static bool env_u64(const char *name, uint64_t *out)
{
	const char *s = getenv(name);
	if (s == NULL || *s == '\0')
		return false;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end != '\0' || s[0] == '-')
		return false;
	*out = v;
	return true;
}

static void default_pool_init(void)
{
	uint64_t v;
	pthread_mutex_lock(&default_pool.mu);
	if (env_u64("WEFT_BLOCKING_MAX", &v) && v >= 1 && v <= WF_POOL_MAX_THREADS)
		default_pool.max_threads = (unsigned)v;
	if (env_u64("WEFT_BLOCKING_KEEPALIVE_MS", &v))
		__atomic_store_n(&default_pool.keepalive_ns,
				 v > UINT64_MAX / 2000000u ? NO_KEEPALIVE : v * 1000000u,
				 __ATOMIC_RELAXED);
	pthread_mutex_unlock(&default_pool.mu);
}

/* User pools live in handle slabs (runtime/handle.h): a pool the program
 * shut down is refused (WF_EINVAL) however its memory is reused, and its
 * handle never reads freed memory. */
static wf__htype pool_htype = WF__HTYPE_INIT(WF__K_POOL, wf_pool);

/* The pool a handle names (NULL: the default pool), or NULL if the handle
 * is stale or not a pool's. */
static wf_pool *pool_get(const wf_pool *p)
{
	if (p == NULL) {
		pthread_once(&default_once, default_pool_init);
		return &default_pool;
	}
	return wf__handle_get(p, WF__K_POOL);
}

/* A decoded pool that is not being freed (relaxed: a sanity check, not a
 * synchronisation). */
static bool pool_ok(const wf_pool *p)
{
	return p != NULL && __atomic_load_n(&p->magic, __ATOMIC_RELAXED) == POOL_MAGIC;
}

int wf_default_pool_configure(unsigned max_threads, uint64_t keepalive_ms)
{
	if (max_threads > WF_POOL_MAX_THREADS)
		return WF_EINVAL;
	wf_pool *p = pool_get(NULL);
	pthread_mutex_lock(&p->mu);
	if (max_threads != 0)
		p->max_threads = max_threads;
	uint64_t ka = keepalive_ms == WF_FOREVER || keepalive_ms > UINT64_MAX / 2000000u
			      ? NO_KEEPALIVE
			      : keepalive_ms * 1000000u;
	__atomic_store_n(&p->keepalive_ns, ka, __ATOMIC_RELAXED);
	/* Parked threads read the keep-alive when they park; wake them so a
	 * shorter one applies now. */
	for (pool_thread *t = p->idle; t != NULL; t = t->next) {
		/* Release, as every store to a parked word (thread_park's
		 * acquire loads); the new keep-alive itself is read under
		 * p->mu. */
		__atomic_store_n(&t->word, WORD_POKE, __ATOMIC_RELEASE);
		futex_wake_one(&t->word);
	}
	pthread_mutex_unlock(&p->mu);
	return 0;
}

/* ---- jobs ------------------------------------------------------------- */

/* A user pool's memory outlives its shutdown while a submission or a
 * wf_to_thread (which may still lock it, to cancel its call) is in
 * progress. The default pool is static.
 *
 * A call takes its reference as soon as it has decoded the handle h to p.
 * A shutdown that returns meanwhile drops the owner's reference, the last
 * one if no call holds one, and the pool is freed: so the reference is
 * taken only while the count is not zero (a zero is a free under way),
 * and h is decoded again afterwards, since p's memory may already serve
 * another pool (then the reference taken was that pool's, and is dropped
 * through its count). Either way the call finds the pool gone: false, and
 * the call returns WF_ESHUTDOWN, as one that finds it closing does.
 *
 * The decrement is acq_rel: its release publishes this thread's use of
 * the pool to whoever drops the last reference, and that one's acquire
 * makes every earlier use happen before the free. */
static void pool_unref(wf_pool *p);

static bool pool_ref(wf_pool *p, const wf_pool *h)
{
	if (h == NULL)
		return true; /* the default pool */
	if (!wf__ref_unless_zero(&p->refs))
		return false;
	if (__builtin_expect(wf__handle_get(h, WF__K_POOL) != p, 0)) {
		pool_unref(p);
		return false;
	}
	return true;
}

static void pool_unref(wf_pool *p)
{
	if (p->is_default || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	/* Marked dead only now: until the memory goes, a call racing the
	 * shutdown finds the pool closing and gets WF_ESHUTDOWN. */
	__atomic_store_n(&p->magic, POOL_DEAD, __ATOMIC_RELAXED);
	pthread_mutex_destroy(&p->mu);
	wf__hobj_free(&pool_htype, p); /* every handle of it is stale */
}

static job *job_new(wf_fn fn, void *arg, wf_drop_fn drop, uint32_t refs)
{
	job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return NULL;
	j->fut = wf_future_new();
	if (j->fut == NULL) {
		free(j);
		return NULL;
	}
	j->fn = fn;
	j->arg = arg;
	j->drop = drop;
	j->refs = refs;
	j->state = JOB_QUEUED;
	/* asyncio.to_thread runs the call in a copy of the caller's context. */
	j->vars = wf__vars_capture();
	return j;
}

/* acq_rel, as pool_unref: the pool thread's writes to the job (err, msg)
 * and the caller's reads happen before the free by whichever is last. */
static void job_unref(job *j)
{
	if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	wf_future_release(j->fut);
	wf__vars_unref(j->vars);
	free(j->msg);
	free(j);
}

/* A job taken off the queue without running: its drop gets arg, its
 * future fails with err, and the pool's reference goes. Drop first: a
 * program that sees the future fail may count on arg being released. */
static void job_discard(job *j, int err)
{
	if (j->drop != NULL)
		j->drop(j->arg, NULL);
	wf_future_fail(j->fut, err, NULL);
	job_unref(j);
}

static void job_run(job *j)
{
	/* A future already complete was cancelled by its owner before the
	 * call started: the call never runs. */
	if (wf_future_done(j->fut)) {
		if (j->drop != NULL)
			j->drop(j->arg, NULL);
		job_unref(j);
		return;
	}
	tls_job = j;
	wf__vars *outer = wf__vars_enter(j->vars);
	j->vars = NULL; /* the thread holds its reference while the call runs */
	void *value = j->fn(j->arg);
	wf__vars_leave(outer);
	tls_job = NULL;
	int rc;
	if (j->err != 0) {
		rc = wf_future_fail(j->fut, j->err, j->msg);
		value = NULL;
	} else {
		rc = wf_future_set(j->fut, value);
	}
	/* Already complete: the caller cancelled while the call ran, and the
	 * outcome is nobody's but drop's. */
	if (rc == WF_EALREADY && j->drop != NULL)
		j->drop(j->arg, value);
	job_unref(j);
}

void *wf_blocking_fail(int err, const char *msg)
{
	job *j = tls_job;
	if (j == NULL)
		return wf__in_task() ? wf_fail(err, msg) : NULL;
	j->err = err < 0 ? err : WF_EINVAL;
	free(j->msg);
	j->msg = msg != NULL ? strdup(msg) : NULL;
	return NULL;
}

/* ---- queue and idle list (p->mu held) --------------------------------- */

static void queue_push(wf_pool *p, job *j)
{
	j->next = NULL;
	j->prev = p->qtail;
	if (p->qtail != NULL)
		p->qtail->next = j;
	else
		p->qhead = j;
	p->qtail = j;
	__atomic_store_n(&p->nqueued, p->nqueued + 1, __ATOMIC_RELAXED);
}

static void queue_remove(wf_pool *p, job *j)
{
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		p->qhead = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	else
		p->qtail = j->prev;
	j->prev = j->next = NULL;
	__atomic_store_n(&p->nqueued, p->nqueued - 1, __ATOMIC_RELAXED);
}

/* Takes every queued job, marked cancelled, as a list for job_discard. */
static job *queue_take_all(wf_pool *p)
{
	job *list = p->qhead;
	for (job *j = list; j != NULL; j = j->next)
		j->state = JOB_CANCELLED;
	p->qhead = p->qtail = NULL;
	__atomic_store_n(&p->nqueued, 0, __ATOMIC_RELAXED);
	return list;
}

static void discard_list(job *list, int err)
{
	while (list != NULL) {
		job *next = list->next;
		job_discard(list, err);
		list = next;
	}
}

static void idle_push(wf_pool *p, pool_thread *t)
{
	t->prev = NULL;
	t->next = p->idle;
	if (p->idle != NULL)
		p->idle->prev = t;
	p->idle = t;
	p->nidle++;
}

static void idle_remove(wf_pool *p, pool_thread *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		p->idle = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	p->nidle--;
}

/* ---- threads ---------------------------------------------------------- */

/* Creates one thread already counted in nthreads and nstarting (p->mu not
 * held). On failure the count is undone, and if the pool is left with no
 * thread at all, nothing would ever run its queue: those calls fail. */
static int thread_start(wf_pool *p)
{
	pthread_t tid;
	int rc = pthread_create(&tid, NULL, thread_main, p);
	if (rc == 0)
		return 0;
	job *orphans = NULL;
	wf_future *exited = NULL;
	pthread_mutex_lock(&p->mu);
	p->nthreads--;
	p->nstarting--;
	if (p->nthreads == 0) {
		orphans = queue_take_all(p);
		exited = p->exited; /* a shutdown waits for this thread */
		p->exited = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	discard_list(orphans, WF_ENOMEM);
	if (exited != NULL) {
		wf_future_set(exited, NULL);
		wf_future_release(exited);
	}
	return WF_ENOMEM;
}

/* Starts threads while queued jobs outnumber the threads on their way.
 * Called by a thread that made itself a spawner (p->nspawners counted). */
static void spawn_ahead(wf_pool *p)
{
	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (p->closing != 0 || p->nqueued <= p->nstarting ||
		    p->nthreads >= p->max_threads) {
			p->nspawners--;
			pthread_mutex_unlock(&p->mu);
			return;
		}
		p->nthreads++;
		p->nstarting++;
		pthread_mutex_unlock(&p->mu);
		if (thread_start(p) != 0) {
			pthread_mutex_lock(&p->mu);
			p->nspawners--;
			pthread_mutex_unlock(&p->mu);
			return;
		}
	}
}

/* p->mu held. Should the calling thread, which just took a job from the
 * queue, start more threads before running it? */
static bool spawner_wanted(wf_pool *p)
{
	if (p->closing != 0 || p->nspawners >= SPAWNERS || p->nqueued <= p->nstarting ||
	    p->nthreads >= p->max_threads)
		return false;
	p->nspawners++;
	return true;
}

static job *queue_pop(wf_pool *p)
{
	job *j = p->qhead;
	if (j == NULL)
		return NULL;
	queue_remove(p, j);
	j->state = JOB_RUNNING;
	return j;
}

enum park_outcome { PARK_JOB, PARK_EXIT };

/* *d = now + ns on CLOCK_MONOTONIC (untouched for NO_KEEPALIVE). */
static void deadline_after(struct timespec *d, uint64_t ns)
{
	if (ns == NO_KEEPALIVE)
		return;
	clock_gettime(CLOCK_MONOTONIC, d);
	uint64_t sum = (uint64_t)d->tv_nsec + ns % 1000000000u;
	d->tv_sec += (time_t)(ns / 1000000000u + sum / 1000000000u);
	d->tv_nsec = (long)(sum % 1000000000u);
}

static bool deadline_passed(const struct timespec *d)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

/* p->mu held, queue empty: parks self on the idle list until it is given a
 * job (returns PARK_JOB with p->mu released and self->job set) or must
 * leave (PARK_EXIT with p->mu held and self off the list). */
static int thread_park(wf_pool *p, pool_thread *self)
{
	/* Relaxed: every other store to the word is made under p->mu too,
	 * after this one (the thread is not on the idle list before). */
	__atomic_store_n(&self->word, WORD_PARKED, __ATOMIC_RELAXED);
	self->job = NULL;
	idle_push(p, self);
	uint64_t ka = 0;
	struct timespec deadline = {0, 0};
	bool first = true;
	for (;;) {
		/* The deadline runs from the park, and again from a change of
		 * the keep-alive; a spurious wake-up does not extend it. */
		uint64_t now_ka = __atomic_load_n(&p->keepalive_ns, __ATOMIC_RELAXED);
		if (first || now_ka != ka) {
			ka = now_ka;
			first = false;
			deadline_after(&deadline, ka);
		}
		pthread_mutex_unlock(&p->mu);
		uint32_t w;
		/* Pairs with the release store of the waker, made after it
		 * wrote self->job under p->mu. */
		while ((w = __atomic_load_n(&self->word, __ATOMIC_ACQUIRE)) == WORD_PARKED) {
			futex_wait(&self->word, WORD_PARKED, ka != NO_KEEPALIVE ? &deadline : NULL);
			if (ka != NO_KEEPALIVE && deadline_passed(&deadline))
				break;
		}
		if (w == WORD_JOB)
			return PARK_JOB;
		pthread_mutex_lock(&p->mu);
		w = __atomic_load_n(&self->word, __ATOMIC_ACQUIRE);
		if (w == WORD_JOB) {
			pthread_mutex_unlock(&p->mu);
			return PARK_JOB;
		}
		if (w == WORD_EXIT)
			return PARK_EXIT; /* taken off the list by the closer */
		if (w == WORD_POKE) {
			/* Under p->mu, as the stores of wakers: ordered by it. */
			__atomic_store_n(&self->word, WORD_PARKED, __ATOMIC_RELAXED);
			continue;
		}
		if (ka != NO_KEEPALIVE && deadline_passed(&deadline)) {
			idle_remove(p, self);
			p->retired++;
			return PARK_EXIT;
		}
	}
}

/* p->mu held: a thread leaves. It joins the previous leaver and becomes the
 * one the next leaver (or the shutdown) joins. Releases p->mu; the pool
 * must not be touched afterwards (a shutdown may free it). */
static void thread_exit(wf_pool *p)
{
	pthread_t prev = p->zombie;
	bool join_prev = p->has_zombie;
	p->zombie = pthread_self();
	p->has_zombie = true;
	p->nthreads--;
	wf_future *done = NULL;
	if (p->nthreads == 0 && p->closing != 0) {
		done = p->exited;
		p->exited = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	if (join_prev)
		pthread_join(prev, NULL);
	if (done != NULL) {
		wf_future_set(done, NULL);
		wf_future_release(done);
	}
}

static void thread_name(wf_pool *p, unsigned index)
{
	char suffix[12], name[THREAD_NAME_MAX];
	int n = snprintf(suffix, sizeof(suffix), "-%u", index);
	int keep = THREAD_NAME_MAX - 1 - n;
	snprintf(name, sizeof(name), "%.*s%s", keep > 0 ? keep : 0, p->name, suffix);
	pthread_setname_np(pthread_self(), name);
}

static void *thread_main(void *arg)
{
	wf_pool *p = arg;
	pool_thread self = {.word = WORD_PARKED};
	tls_pool = p;
	thread_name(p, __atomic_fetch_add(&p->next_index, 1, __ATOMIC_RELAXED));
	pthread_mutex_lock(&p->mu);
	/* Leaving the starting state and taking a job in one critical section
	 * keeps callers from starting threads this one is about to make
	 * unnecessary. */
	p->nstarting--;
	p->started++;
	for (;;) {
		job *j = NULL;
		bool spawn = false;
		/* A closing default pool serves no new queue entries: those
		 * wait for the threads started after the close. */
		if (p->closing != WF_POOL_CANCEL && !(p->closing != 0 && p->is_default))
			j = queue_pop(p);
		if (j != NULL) {
			spawn = spawner_wanted(p);
			pthread_mutex_unlock(&p->mu);
		} else if (p->closing != 0 || thread_park(p, &self) == PARK_EXIT) {
			break;
		} else {
			j = self.job;
		}
		if (spawn)
			spawn_ahead(p);
		job_run(j);
		pthread_mutex_lock(&p->mu);
	}
	thread_exit(p);
	return NULL;
}

/* ---- submission ------------------------------------------------------- */

static int pool_submit(wf_pool *p, job *j)
{
	pthread_mutex_lock(&p->mu);
	if (p->closing != 0 && !p->is_default) {
		pthread_mutex_unlock(&p->mu);
		return WF_ESHUTDOWN;
	}
	pool_thread *t = p->closing == 0 ? p->idle : NULL;
	if (t != NULL) {
		idle_remove(p, t);
		j->state = JOB_RUNNING;
		t->job = j;
		/* Pairs with the acquire loads in thread_park. */
		__atomic_store_n(&t->word, WORD_JOB, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&p->mu);
		futex_wake_one(&t->word);
		return 0;
	}
	queue_push(p, j);
	bool start = p->closing == 0 && p->nstarting == 0 && p->nthreads < p->max_threads;
	if (start) {
		p->nthreads++;
		p->nstarting++;
	}
	pthread_mutex_unlock(&p->mu);
	if (start)
		thread_start(p); /* on failure the running threads, if any, serve it */
	return 0;
}

/* Creates and submits a job holding `refs` references (the pool's, plus
 * one for a to_thread caller). If caller_fut is not NULL, it receives a
 * reference to the job's future, taken before the job is visible to a pool
 * thread, which may run it and drop its own at once. */
static int call_submit(wf_pool *p, wf_fn fn, void *arg, wf_drop_fn drop, uint32_t refs,
		       job **out, wf_future **caller_fut)
{
	job *j = job_new(fn, arg, drop, refs);
	if (j == NULL)
		return WF_ENOMEM;
	if (caller_fut != NULL)
		*caller_fut = wf_future_retain(j->fut);
	int rc = pool_submit(p, j);
	if (rc != 0) {
		if (caller_fut != NULL) {
			wf_future_release(*caller_fut);
			*caller_fut = NULL;
		}
		wf_future_release(j->fut);
		wf__vars_unref(j->vars);
		free(j);
		return rc;
	}
	if (out != NULL)
		*out = j;
	return 0;
}

int wf_run_in_executor_ex(wf_fn fn, void *arg, const wf_call_opts *opts, wf_future **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (opts != NULL && !WF__RESERVED_ZERO(opts))
		return WF_EINVAL;
	wf_pool *p = pool_get(opts != NULL ? opts->pool : NULL);
	if (fn == NULL || !pool_ok(p))
		return WF_EINVAL;
	/* A shutdown racing this call must not free the pool under it: it
	 * only sees the pool closing (WF_ESHUTDOWN) or the job queued. */
	if (!pool_ref(p, opts != NULL ? opts->pool : NULL))
		return WF_ESHUTDOWN;
	int rc = call_submit(p, fn, arg, opts != NULL ? opts->drop : NULL, 1, NULL, out);
	pool_unref(p);
	return rc;
}

int wf_run_in_executor(wf_pool *p, wf_fn fn, void *arg, wf_future **out)
{
	wf_call_opts opts = {.pool = p};
	return wf_run_in_executor_ex(fn, arg, &opts, out);
}

/* The awaiting task was cancelled: the call must not run if it has not
 * started, and its outcome goes to drop if it has. */
static void to_thread_cancel(wf_pool *p, job *j)
{
	pthread_mutex_lock(&p->mu);
	int state = j->state;
	if (state == JOB_QUEUED) {
		queue_remove(p, j);
		j->state = JOB_CANCELLED;
	}
	pthread_mutex_unlock(&p->mu);
	if (state == JOB_QUEUED) {
		job_discard(j, WF_ECANCELED); /* the pool's reference */
		return;
	}
	if (state == JOB_CANCELLED) /* a WF_POOL_CANCEL shutdown discarded it */
		return;
	/* Running or run. If the pool thread completed the future first, its
	 * outcome is ours to drop; otherwise the thread drops it. */
	if (wf_future_cancel(j->fut) == WF_EALREADY && j->drop != NULL) {
		void *value = NULL;
		if (wf_future_result(j->fut, &value) != 0)
			value = NULL;
		j->drop(j->arg, value);
	}
}

int wf_to_thread_ex(wf_fn fn, void *arg, const wf_call_opts *opts, void **result, char **errmsg)
{
	if (result != NULL)
		*result = NULL;
	if (errmsg != NULL)
		*errmsg = NULL;
	if (opts != NULL && !WF__RESERVED_ZERO(opts))
		return WF_EINVAL;
	wf_pool *p = pool_get(opts != NULL ? opts->pool : NULL);
	if (fn == NULL || !pool_ok(p))
		return WF_EINVAL;
	if (!pool_ref(p, opts != NULL ? opts->pool : NULL))
		return WF_ESHUTDOWN;
	job *j;
	int rc = call_submit(p, fn, arg, opts != NULL ? opts->drop : NULL, 2, &j, NULL);
	if (rc != 0) {
		pool_unref(p);
		return rc;
	}
	bool in_task = wf__in_task();
	int cancelling = in_task ? wf_cancelling() : 0;
	void *value = NULL;
	rc = wf_await(j->fut, &value);
	/* WF_ECANCELED comes from the future (a WF_POOL_CANCEL shutdown) or
	 * from a cancellation of this task; only the latter counts one more
	 * delivered cancellation. */
	if (rc == WF_ECANCELED && in_task && wf_cancelling() > cancelling) {
		to_thread_cancel(p, j);
		job_unref(j);
		pool_unref(p);
		return WF_ECANCELED;
	}
	if (rc == 0 && result != NULL)
		*result = value;
	if (rc < 0 && errmsg != NULL && wf_future_errmsg(j->fut) != NULL)
		*errmsg = strdup(wf_future_errmsg(j->fut));
	job_unref(j);
	pool_unref(p);
	return rc;
}

int wf_to_thread(wf_fn fn, void *arg, void **result)
{
	return wf_to_thread_ex(fn, arg, NULL, result, NULL);
}

/* ---- pools ------------------------------------------------------------ */

int wf_pool_new(const char *name, unsigned threads, wf_pool **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (threads == 0 || threads > WF_POOL_MAX_THREADS)
		return WF_EINVAL;
	wf_pool *p = wf__hobj_alloc(&pool_htype);
	if (p == NULL)
		return WF_ENOMEM;
	if (pthread_mutex_init(&p->mu, NULL) != 0) {
		wf__hobj_free(&pool_htype, p);
		return WF_ENOMEM;
	}
	/* Atomic: a call through the handle of the pool this memory held
	 * before may still read them (pool_ok, pool_ref). */
	__atomic_store_n(&p->magic, POOL_MAGIC, __ATOMIC_RELAXED);
	__atomic_store_n(&p->refs, 1, __ATOMIC_RELAXED);
	p->max_threads = threads;
	p->keepalive_ns = NO_KEEPALIVE;
	snprintf(p->name, sizeof(p->name), "%s", name != NULL ? name : "wf-pool");
	*out = wf__handle_of(p);
	return 0;
}

/* Waits for the pool's threads to be gone, suspending a task. The wait
 * goes on through cancellations of the calling task: returning early would
 * leave threads running on a pool about to be freed. */
static void await_exited(wf_future *f)
{
	while (wf_await(f, NULL) == WF_ECANCELED && !wf_future_done(f))
		;
}

/* Runs a shutdown: stops new work (user pools), cancels or keeps the
 * queue, tells the idle threads to leave, waits for the rest, joins the
 * last one out. Leaves p empty of threads. WF_EINVAL if p is closing
 * already (the check and the mark in one critical section: of two racing
 * shutdowns, one runs). */
static int pool_close(wf_pool *p, int mode)
{
	wf_future *exited = wf_future_new();
	if (exited == NULL)
		return WF_ENOMEM;
	job *cancelled = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->closing != 0) {
		pthread_mutex_unlock(&p->mu);
		wf_future_release(exited);
		return WF_EINVAL;
	}
	p->closing = mode;
	if (mode == WF_POOL_CANCEL)
		cancelled = queue_take_all(p);
	/* Woken under the lock: a leaving thread needs p->mu to exit, so its
	 * word is still valid here. */
	while (p->idle != NULL) {
		pool_thread *t = p->idle;
		idle_remove(p, t);
		/* Release: pairs with thread_park's acquire loads. */
		__atomic_store_n(&t->word, WORD_EXIT, __ATOMIC_RELEASE);
		futex_wake_one(&t->word);
	}
	/* WF_POOL_WAIT with work queued and no thread to run it (thread
	 * creation failed earlier): start one. */
	bool start = mode == WF_POOL_WAIT && p->nqueued > 0 && p->nthreads == 0;
	if (start) {
		p->nthreads++;
		p->nstarting++;
	}
	bool wait = p->nthreads > 0;
	if (wait)
		p->exited = wf_future_retain(exited);
	pthread_mutex_unlock(&p->mu);
	discard_list(cancelled, WF_ECANCELED);
	if (start)
		thread_start(p);
	if (wait)
		await_exited(exited);
	wf_future_release(exited);
	pthread_mutex_lock(&p->mu);
	bool join = p->has_zombie;
	pthread_t zombie = p->zombie;
	p->has_zombie = false;
	pthread_mutex_unlock(&p->mu);
	if (join)
		pthread_join(zombie, NULL);
	return 0;
}

int wf_pool_shutdown(wf_pool *h, int mode)
{
	wf_pool *p = h != NULL ? pool_get(h) : NULL;
	if (p == NULL || p->is_default || !pool_ok(p) ||
	    (mode != WF_POOL_WAIT && mode != WF_POOL_CANCEL))
		return WF_EINVAL;
	if (tls_pool == p)
		return WF_EDEADLK;
	int rc = pool_close(p, mode); /* WF_EINVAL: a second shutdown */
	if (rc != 0)
		return rc;
	pool_unref(p);
	return 0;
}

void wf__default_pool_shutdown(void)
{
	wf_pool *p = pool_get(NULL);
	if (tls_pool == p)
		return; /* from one of its own calls: it would wait for itself */
	pthread_mutex_lock(&default_close_mu);
	pthread_mutex_lock(&p->mu);
	bool used = p->nthreads > 0 || p->nqueued > 0 || p->has_zombie;
	pthread_mutex_unlock(&p->mu);
	if (used && pool_close(p, WF_POOL_CANCEL) == 0) {
		/* Open again; calls queued during the close get a thread. */
		pthread_mutex_lock(&p->mu);
		p->closing = 0;
		bool start = p->nqueued > 0 && p->nstarting == 0 && p->nthreads < p->max_threads;
		if (start) {
			p->nthreads++;
			p->nstarting++;
		}
		pthread_mutex_unlock(&p->mu);
		if (start)
			thread_start(p);
	}
	pthread_mutex_unlock(&default_close_mu);
}

/* The runtime starts and stops nothing of the executor: pools are
 * process-wide and serve any runtime and plain threads alike. Only wf_run,
 * which promises to leave nothing running, shuts the default pool down. */
const wf__subsystem wf__executor_subsystem = {
	.name = "executor",
	.run_end = wf__default_pool_shutdown,
};

size_t wf_pool_queued(const wf_pool *p)
{
	const wf_pool *q = pool_get(p);
	if (!pool_ok(q))
		return 0;
	return __atomic_load_n(&q->nqueued, __ATOMIC_RELAXED);
}

int wf_pool_get_stats(const wf_pool *p, wf_pool_stats *out)
{
	if (out == NULL)
		return WF_EINVAL;
	wf_pool *q = pool_get(p);
	if (!pool_ok(q))
		return WF_EINVAL;
	memset(out, 0, sizeof(*out)); /* the reserved words too */
	pthread_mutex_lock(&q->mu);
	out->threads = q->nthreads;
	out->idle = q->nidle;
	out->max_threads = q->max_threads;
	out->queued = q->nqueued;
	out->started = q->started;
	out->retired = q->retired;
	pthread_mutex_unlock(&q->mu);
	return 0;
}
