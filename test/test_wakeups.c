/*
 * Where woken tasks go, and what their waits leave behind.
 *
 *   timers   a timed wait that ends early (its future completed from a
 *            task on another worker, so that the waiter resumes there)
 *            leaves nothing behind: at a high rate, with deadlines an hour
 *            away, the heap stays bounded. Guards against a timer entry
 *            cancelled from a worker other than the one whose heap holds
 *            it staying there until its deadline.
 *   lifo     a task woken into a worker's LIFO slot (the worker that woke
 *            it then runs a long computation without suspending) is run
 *            by an idle worker meanwhile. Guards against the LIFO slot
 *            being invisible to thieves (and idle workers not being told),
 *            which leaves the woken task waiting for the whole computation.
 *   sole     a task spawned alone (which wakes nobody: its spawner usually
 *            runs it next) by a task that then computes for long is run by
 *            a worker that was asleep, which comes back on its own.
 *   capped   with more workers than CPUs and as many of them awake as
 *            there are CPUs (each in a long computation), nobody is woken
 *            for new work; a task spawned then, and one submitted from a
 *            plain thread, still run meanwhile on a worker that was
 *            asleep. Guards against the wake-up cap leaving work to wait
 *            for the computations to end.
 *
 * Hangs: a watchdog thread reports what was running and aborts the test's
 * process. Iterations shrink under the sanitizers and in unoptimised
 * builds, and scale with WEFT_TEST_SCALE (percent).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(WF_ASAN) || defined(WF_TSAN)
/* The sanitizer runtimes' count of live heap bytes (GCC ships no header
 * for it). */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

#include "rt_check.h"
#include "weft.h"

#if defined(WF_ASAN) || defined(WF_TSAN) || !defined(__OPTIMIZE__)
#define WATCHDOG_S 150
#else
#define WATCHDOG_S 60
#endif
#define TEST_LIMIT_S (WATCHDOG_S + 30)

/* ---- helpers ------------------------------------------------------------- */

/* n iterations in an optimised build; fewer under the sanitizers and
 * without optimisation; then scaled by WEFT_TEST_SCALE (test_iters). */
static long scaled(long n)
{
#if defined(WF_TSAN)
	n /= 16;
#elif defined(WF_ASAN)
	n /= 6;
#elif !defined(__OPTIMIZE__)
	n /= 3;
#endif
	return test_iters(n < 1 ? 1 : n);
}

/* A plain thread that aborts the process, saying what was under way, if
 * watchdog_stop is not called within `secs` seconds, or within 5 s of a
 * failed check. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	bool stop;
	unsigned secs;
	int fd;
	char what[200];
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *watchdog_main(void *arg)
{
	uint64_t start = mono_ns(), failed_at = 0;
	pthread_mutex_lock(&wd.mu);
	while (!wd.stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&wd.cv, &wd.mu, &ts);
		if (wd.stop)
			break;
		uint64_t now = mono_ns();
		if (failed_at == 0 && check_any_failed())
			failed_at = now;
		if (failed_at != 0 && now - failed_at > 5000000000ull) {
			char first[sizeof(check_first)];
			pthread_mutex_lock(&check_mu);
			memcpy(first, check_first, sizeof(first));
			pthread_mutex_unlock(&check_mu);
			dprintf(wd.fd, "watchdog: a check failed and the run did not end within 5 s "
				       "after it (%s); first failure: %s\n",
				wd.what, first);
			abort();
		}
		if (now - start > (uint64_t)wd.secs * 1000000000u) {
			dprintf(wd.fd, "watchdog: no end after %u s, a hang: %s\n", wd.secs, wd.what);
			abort();
		}
	}
	pthread_mutex_unlock(&wd.mu);
	return NULL;
}

__attribute__((format(printf, 1, 2))) static void watchdog_note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&wd.mu);
	vsnprintf(wd.what, sizeof(wd.what), fmt, ap);
	pthread_mutex_unlock(&wd.mu);
	va_end(ap);
}

static void watchdog_start(unsigned secs, const char *what)
{
	wd.stop = false;
	wd.secs = secs;
	wd.fd = dup(2);
	cr_assert_geq(wd.fd, 0);
	watchdog_note("%s", what);
	cr_assert_eq(pthread_create(&wd.th, NULL, watchdog_main, NULL), 0);
}

static void watchdog_stop(void)
{
	pthread_mutex_lock(&wd.mu);
	wd.stop = true;
	pthread_cond_signal(&wd.cv);
	pthread_mutex_unlock(&wd.mu);
	pthread_join(wd.th, NULL);
	close(wd.fd);
}

/* Bytes the program has allocated and not freed (the sanitizers' own
 * count, or glibc's over every arena). */
static size_t heap_in_use(void)
{
#if defined(WF_ASAN) || defined(WF_TSAN)
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
#endif
}

static int cpus_available(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return (int)sysconf(_SC_NPROCESSORS_ONLN);
	return CPU_COUNT(&set);
}

/* ---- timed waits woken early leave nothing behind ------------------------------ *
 *
 * In each batch the main task spawns waiters, each of which waits on a new
 * future with a deadline an hour away, and lets them run (they park on its
 * worker, which gets their deadlines). Then it spawns a completer and
 * computes without suspending: an idle worker steals the completer, which
 * completes every future there, so the waiters resume on that other
 * worker and cancel their timer entries from there. The heap must not grow
 * with the number of waits. */

#define BATCH 256
#define HOUR_MS (3600 * 1000)

typedef struct tslot {
	wf_future *f; /* published by its waiter */
	int worker;   /* where the waiter parks */
	int resumed_elsewhere;
} tslot;

typedef struct tbatch {
	tslot slots[BATCH];
	int done; /* atomic: the completer is through */
} tbatch;

static void *timed_waiter(void *arg)
{
	tslot *s = arg;
	wf_future *f = wf_future_new();
	if (!CHECK(f != NULL))
		return NULL;
	int here = wf_worker_id();
	s->worker = here;
	__atomic_store_n(&s->f, f, __ATOMIC_RELEASE);
	void *v = NULL;
	CHECK_RC(wf_await_timeout(f, &v, HOUR_MS), 0);
	CHECK(v == (void *)s);
	s->resumed_elsewhere = wf_worker_id() != here;
	wf_future_release(f);
	return NULL;
}

static void *timed_completer(void *arg)
{
	tbatch *b = arg;
	for (int k = 0; k < BATCH; k++) {
		/* The waiter holds f until it has its value. */
		wf_future *f = __atomic_load_n(&b->slots[k].f, __ATOMIC_ACQUIRE);
		if (CHECK(f != NULL))
			CHECK_RC(wf_future_set(f, &b->slots[k]), 0);
	}
	__atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Runs `batches` batches; returns how many waits resumed elsewhere. */
static long timed_batches(long batches, unsigned nworkers)
{
	long crossings = 0;
	tbatch b;
	wf_task *ts[BATCH];
	for (long n = 0; n < batches && !check_any_failed(); n++) {
		memset(&b, 0, sizeof(b));
		for (int k = 0; k < BATCH; k++) {
			ts[k] = wf_spawn(timed_waiter, &b.slots[k]);
			if (!CHECK(ts[k] != NULL))
				return crossings;
		}
		/* Let them all reach their wait. */
		for (int k = 0; k < BATCH; k++)
			while (__atomic_load_n(&b.slots[k].f, __ATOMIC_ACQUIRE) == NULL)
				CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_yield(), 0);
		wf_task *c = wf_spawn(timed_completer, &b);
		if (!CHECK(c != NULL))
			return crossings;
		/* Not suspending, for a while at most: the completer runs
		 * elsewhere. (Else the join runs it here.) */
		if (nworkers > 1) {
			uint64_t limit = mono_ns() + 2000000;
			while (!__atomic_load_n(&b.done, __ATOMIC_ACQUIRE) && mono_ns() < limit)
				spin(100);
		}
		CHECK_RC(wf_join(c, NULL), 0);
		for (int k = 0; k < BATCH; k++) {
			CHECK_RC(wf_join(ts[k], NULL), 0);
			crossings += b.slots[k].resumed_elsewhere;
		}
	}
	return crossings;
}

static void *timers_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
#if defined(WF_TSAN)
	/* Every task started costs TSan much (and more, the more tasks a
	 * stack carried): a few batches, for the races only, too few for the
	 * heap to tell. */
	long batches = 3;
#else
	long batches = scaled(64000) / BATCH + 2;
#endif
	watchdog_note("timed waits woken early: %u workers", nworkers);
	/* A first round warms up what a run keeps (task and future slabs,
	 * stacks, queues), outside the measurement. */
	uint64_t t0 = mono_ns();
	timed_batches(batches / 4 + 2, nworkers);
	size_t before = heap_in_use();
	long crossings = timed_batches(batches, nworkers);
	size_t after = heap_in_use();
	/* A timer entry left behind costs some 60 bytes; the allowance is a
	 * fixed 128 KiB, 64 KiB per worker (what each worker may cache) and
	 * 8 bytes per wait that resumed elsewhere. */
	size_t budget = (128u << 10) + (64u << 10) * nworkers + (size_t)crossings * 8;
	if (!CHECK(after < before + budget) || getenv("WAKEUPS_VERBOSE"))
		fprintf(stderr, "timers, %u workers: %ld waits (%ld resumed on another worker) "
				"grew the heap by %lld bytes (budget %zu); %.2f s\n",
			nworkers, batches * BATCH, crossings, (long long)after - (long long)before,
			budget, (double)(mono_ns() - t0) / 1e9);
	return NULL;
}

Test(wakeups, timed_waits_woken_early_leave_nothing_behind, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "timed waits woken early");
#if defined(WF_TSAN)
	static const unsigned counts[] = {2};
#else
	static const unsigned counts[] = {1, 2, 3, 8};
#endif
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		run_weft(counts[i], timers_main, (void *)(uintptr_t)counts[i]);
	watchdog_stop();
}

/* ---- a task woken into the LIFO slot is run by an idle worker ------------------ *
 *
 * The main task wakes a probe (it completes the future the probe waits
 * on: the probe goes to this worker's LIFO slot), then computes for
 * SPIN_MS without suspending. Some other worker, idle, must run the probe
 * meanwhile. A loaded machine may delay that: up to three attempts, and
 * one in time suffices. */

#define SPIN_MS 300
#define ATTEMPTS 3

typedef struct probe {
	wf_future *f;
	int parked;       /* atomic: about to wait */
	uint64_t woke_at; /* atomic */
	int woke_on;
} probe;

static void *probe_fn(void *arg)
{
	probe *p = arg;
	__atomic_store_n(&p->parked, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_await_timeout(p->f, NULL, 10 * 1000), 0);
	p->woke_on = wf_worker_id();
	__atomic_store_n(&p->woke_at, mono_ns(), __ATOMIC_RELEASE);
	return NULL;
}

static void *lifo_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	char log[ATTEMPTS][160];
	bool ok = false;
	int attempt;
	for (attempt = 0; attempt < ATTEMPTS && !ok; attempt++) {
		watchdog_note("woken into the LIFO slot: %u workers, attempt %d", nworkers, attempt);
		probe p = {.f = wf_future_new()};
		wf_task *t = wf_spawn(probe_fn, &p);
		if (!CHECK(p.f != NULL && t != NULL))
			return NULL;
		while (!__atomic_load_n(&p.parked, __ATOMIC_ACQUIRE))
			CHECK_RC(wf_sleep(1), 0);
		/* Long enough for the probe to be parked and the other
		 * workers to be idle. */
		CHECK_RC(wf_sleep(30), 0);
		int me = wf_worker_id();
		uint64_t t0 = mono_ns();
		CHECK_RC(wf_future_set(p.f, NULL), 0);
		uint64_t end;
		do {
			spin(1000);
			end = mono_ns();
		} while (end - t0 < SPIN_MS * 1000000ull);
		uint64_t woke = __atomic_load_n(&p.woke_at, __ATOMIC_ACQUIRE);
		ok = woke != 0 && woke < end && p.woke_on != me;
		snprintf(log[attempt], sizeof(log[attempt]),
			 "attempt %d: the spinner ran on worker %d for %.0f ms; the probe %s", attempt,
			 me, (double)(end - t0) / 1e6,
			 woke != 0 ? "ran during it" : "had not run when it ended");
		CHECK_RC(wf_join(t, NULL), 0);
		if (!ok && woke == 0) {
			woke = __atomic_load_n(&p.woke_at, __ATOMIC_ACQUIRE);
			size_t n = strlen(log[attempt]);
			snprintf(log[attempt] + n, sizeof(log[attempt]) - n,
				 " (it ran on worker %d, %.0f ms after the wake)", p.woke_on,
				 (double)(woke - t0) / 1e6);
		}
		wf_future_release(p.f);
	}
	if (!CHECK(ok)) {
		fprintf(stderr, "a task woken into the LIFO slot of a busy worker waited for it, "
				"with %u workers, %u of them idle:\n",
			nworkers, nworkers - 1);
		for (int a = 0; a < attempt; a++)
			fprintf(stderr, "  %s\n", log[a]);
	}
	return NULL;
}

Test(wakeups, a_task_woken_into_the_lifo_slot_is_stolen, .timeout = TEST_LIMIT_S)
{
	if (cpus_available() < 2)
		cr_skip_test("needs 2 CPUs: an idle worker must run while another computes");
	watchdog_start(WATCHDOG_S, "woken into the LIFO slot");
	static const unsigned counts[] = {2, 3, 8};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		run_weft(counts[i], lifo_main, (void *)(uintptr_t)counts[i]);
	watchdog_stop();
}

/* ---- a sole spawned task behind a long computation is run elsewhere ----------- *
 *
 * A spawn that leaves one entry in the spawner's deque wakes nobody (the
 * spawner usually runs it next). The main task, on a runtime whose other
 * workers are all asleep, spawns a child and then computes for SPIN_MS
 * without suspending: a parked worker must come back on its own, see the
 * spawner stuck, and run the child meanwhile. Guards against the child
 * waiting for the whole computation (or for ever, if the spawner never
 * suspended). */

typedef struct sole {
	uint64_t ran_at; /* atomic */
	int ran_on;
} sole;

static void *sole_child(void *arg)
{
	sole *s = arg;
	s->ran_on = wf_worker_id();
	__atomic_store_n(&s->ran_at, mono_ns(), __ATOMIC_RELEASE);
	return NULL;
}

static void *sole_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	char log[ATTEMPTS][160];
	bool ok = false;
	int attempt;
	for (attempt = 0; attempt < ATTEMPTS && !ok; attempt++) {
		watchdog_note("sole spawned task: %u workers, attempt %d", nworkers, attempt);
		/* Every worker asleep, this one in its timer wait. */
		CHECK_RC(wf_sleep(30), 0);
		sole s = {0};
		int me = wf_worker_id();
		uint64_t t0 = mono_ns();
		wf_task *t = wf_spawn(sole_child, &s);
		if (!CHECK(t != NULL))
			return NULL;
		uint64_t end;
		do {
			spin(1000);
			end = mono_ns();
		} while (end - t0 < SPIN_MS * 1000000ull);
		uint64_t ran = __atomic_load_n(&s.ran_at, __ATOMIC_ACQUIRE);
		ok = ran != 0 && ran < end && s.ran_on != me;
		snprintf(log[attempt], sizeof(log[attempt]),
			 "attempt %d: the spawner computed on worker %d for %.0f ms; the child %s",
			 attempt, me, (double)(end - t0) / 1e6,
			 ran != 0 ? "ran during it" : "had not run when it ended");
		CHECK_RC(wf_join(t, NULL), 0);
	}
	if (!CHECK(ok)) {
		fprintf(stderr, "a sole spawned task waited for its busy spawner, with %u workers:\n",
			nworkers);
		for (int a = 0; a < attempt; a++)
			fprintf(stderr, "  %s\n", log[a]);
	}
	return NULL;
}

Test(wakeups, a_sole_spawned_task_behind_a_long_computation_runs_elsewhere,
     .timeout = TEST_LIMIT_S)
{
	if (cpus_available() < 2)
		cr_skip_test("needs 2 CPUs: an idle worker must run while another computes");
	watchdog_start(WATCHDOG_S, "sole spawned task");
	static const unsigned counts[] = {2, 3, 8};
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		run_weft(counts[i], sole_main, (void *)(uintptr_t)counts[i]);
	watchdog_stop();
}

/* ---- work spawned while as many workers are awake as there are CPUs ------------ */

typedef struct capped {
	unsigned started; /* atomic: busy tasks computing */
	unsigned stop;    /* atomic: the busy tasks may end */
	sole spawned, submitted;
	int main_worker;
} capped;

/* Computes without suspending until told to stop (or for 10 s at most). */
static void *capped_busy(void *arg)
{
	capped *c = arg;
	__atomic_add_fetch(&c->started, 1, __ATOMIC_ACQ_REL);
	uint64_t t0 = mono_ns();
	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) && mono_ns() - t0 < 10000000000ull)
		spin(1000);
	return NULL;
}

struct capped_submit {
	wf_runtime *rt;
	capped *c;
	wf_future *f;
	int rc;
};

static void *capped_submitter(void *arg)
{
	struct capped_submit *cs = arg;
	cs->rc = wf_runtime_submit(cs->rt, sole_child, &cs->c->submitted, &cs->f);
	return NULL;
}

static void *capped_main(void *arg)
{
	unsigned ncpus = (unsigned)(uintptr_t)arg;
	char log[ATTEMPTS][200];
	bool ok = false;
	int attempt;
	for (attempt = 0; attempt < ATTEMPTS && !ok; attempt++) {
		watchdog_note("capped wake-ups: %u CPUs, attempt %d", ncpus, attempt);
		CHECK_RC(wf_sleep(30), 0); /* every other worker asleep */
		capped c = {0};
		c.main_worker = wf_worker_id();
		/* With this task, ncpus workers computing: as many awake as
		 * there are CPUs. */
		wf_task *busy[64];
		unsigned nbusy = ncpus - 1;
		for (unsigned i = 0; i < nbusy; i++)
			busy[i] = wf_spawn(capped_busy, &c);
		uint64_t t0 = mono_ns();
		while (__atomic_load_n(&c.started, __ATOMIC_ACQUIRE) < nbusy && mono_ns() - t0 < 5000000000ull)
			spin(1000);
		bool all_busy = __atomic_load_n(&c.started, __ATOMIC_ACQUIRE) == nbusy;
		wf_task *t = wf_spawn(sole_child, &c.spawned);
		struct capped_submit cs = {.rt = wf_runtime_current(), .c = &c};
		pthread_t th;
		CHECK_EQ(pthread_create(&th, NULL, capped_submitter, &cs), 0);
		uint64_t start = mono_ns(), end;
		do {
			spin(1000);
			end = mono_ns();
		} while (end - start < SPIN_MS * 1000000ull);
		uint64_t ran = __atomic_load_n(&c.spawned.ran_at, __ATOMIC_ACQUIRE);
		uint64_t sub = __atomic_load_n(&c.submitted.ran_at, __ATOMIC_ACQUIRE);
		ok = all_busy && ran != 0 && ran < end && c.spawned.ran_on != c.main_worker && sub != 0 &&
		     sub < end;
		snprintf(log[attempt], sizeof(log[attempt]),
			 "attempt %d: %u of %u busy tasks started; over %.0f ms on worker %d the "
			 "spawned task %s, the submitted one %s",
			 attempt, __atomic_load_n(&c.started, __ATOMIC_ACQUIRE), nbusy,
			 (double)(end - start) / 1e6, c.main_worker,
			 ran != 0 ? "ran" : "did not run", sub != 0 ? "ran" : "did not run");
		__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
		pthread_join(th, NULL);
		CHECK_RC(cs.rc, 0);
		if (cs.f != NULL) {
			CHECK_RC(wf_await(cs.f, NULL), 0);
			wf_future_release(cs.f);
		}
		CHECK_RC(wf_join(t, NULL), 0);
		for (unsigned i = 0; i < nbusy; i++)
			CHECK_RC(wf_join(busy[i], NULL), 0);
	}
	if (!CHECK(ok)) {
		fprintf(stderr, "work waited for the computations of as many awake workers as "
				"CPUs (%u):\n",
			ncpus);
		for (int a = 0; a < attempt; a++)
			fprintf(stderr, "  %s\n", log[a]);
	}
	return NULL;
}

Test(wakeups, work_runs_while_as_many_workers_compute_as_there_are_cpus,
     .timeout = TEST_LIMIT_S)
{
#if defined(WF_TSAN)
	/* Under ThreadSanitizer, with a computation on every CPU, the
	 * sleeping workers and the submitting thread get too little of them
	 * to show anything within the computations (with or without the
	 * cap): the other builds run this test. */
	cr_skip_test("not under ThreadSanitizer");
#endif
	int ncpus = cpus_available();
	if (ncpus < 2 || ncpus > 32)
		cr_skip_test("needs 2 to 32 CPUs: one busy task per CPU, and workers to spare");
	watchdog_start(WATCHDOG_S, "capped wake-ups");
	/* Two and eight workers more than CPUs: the cap holds every wake. */
	run_weft((unsigned)ncpus + 2, capped_main, (void *)(uintptr_t)ncpus);
	run_weft((unsigned)ncpus + 8, capped_main, (void *)(uintptr_t)ncpus);
	watchdog_stop();
}
