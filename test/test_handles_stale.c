/*
 * Stale task handles: a handle given back (joined or detached, its task
 * finished and freed) is refused by every call, WF_EINVAL (or NULL, false
 * where a call returns no code), even once a new task took its memory, and
 * using it never acts on that new task. Many rounds at 1, 2, 3 and 8
 * workers: a task freed on the spawning worker is the next one that worker
 * hands out, so the stale handle usually points at the newer task's memory.
 *
 * Failure modes guarded against: a second join of a joined handle joins
 * the task that reused the slot (and its real owner's join then gets
 * WF_EINVAL); wf_cancel, wf_detach, wf_task_name and wf_task_done on a
 * detached, finished handle act on, or describe, the new task.
 *
 * Futures (released, their memory reused by a new one) are checked the
 * same way, from many tasks at once.
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

#include "rt_check.h"
#include "weft.h"

static const unsigned worker_counts[] = {1, 2, 3, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

/* How long a task waits for its gate: a stale call that wrongly runs or
 * joins the gated task waits this long, then the test fails. */
#define GATE_MS 2000

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
	n /= 256; /* every task started costs TSan much (and more, the more) */
#elif defined(WF_ASAN)
	n /= 6;
#elif !defined(__OPTIMIZE__)
	n /= 3;
#endif
	return test_iters(n < 1 ? 1 : n);
}

/* A plain thread that aborts the process, saying what was under way, if
 * watchdog_stop is not called within `secs` seconds, or within 5 s of a
 * failed check (a corrupt runtime may never finish). */
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

static void *value_fn(void *arg)
{
	return arg;
}

static void *yield_value_fn(void *arg)
{
	CHECK_RC(wf_yield(), 0);
	return arg;
}

/* ---- a second join of a joined handle ----------------------------------------- *
 *
 * Property: join t1, spawn t2 (which usually takes t1's memory), join t1
 * again: WF_EINVAL, and t2's own join then returns 0 with t2's result.
 * Both tasks run inline or on fibers, finished or not at the stale join. */

static void *join_join_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	long rounds = scaled(40000);
	long reused = 0;
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		watchdog_note("stale join: %u workers, round %ld", nworkers, i);
		void *v1 = (void *)(uintptr_t)(2 * i + 2), *v2 = (void *)(uintptr_t)(2 * i + 3);
		wf_task *t1 = wf_spawn(i % 2 ? yield_value_fn : value_fn, v1);
		if (!CHECK(t1 != NULL))
			break;
		if (i % 3 == 0)
			CHECK_RC(wf_yield(), 0); /* t1 starts on its own */
		void *res = NULL;
		CHECK_RC(wf_join(t1, &res), 0);
		CHECK(res == v1);

		wf_task *t2 = wf_spawn((i / 2) % 2 ? yield_value_fn : value_fn, v2);
		if (!CHECK(t2 != NULL))
			break;
		reused += t2 == t1;
		if (i % 5 < 2)
			CHECK_RC(wf_yield(), 0); /* t2 starts (and maybe ends) first */
		res = (void *)1;
		if (!CHECK_RC(wf_join(t1, &res), WF_EINVAL))
			fprintf(stderr, "stale join, %u workers, round %ld: the stale handle was "
					"joined%s\n",
				nworkers, i, t2 == t1 ? " (its memory went to the next task)" : "");
		CHECK(res == NULL);
		res = NULL;
		CHECK_RC(wf_join(t2, &res), 0);
		CHECK(res == v2);
	}
	if (getenv("STALE_VERBOSE"))
		fprintf(stderr, "stale join, %u workers: %ld rounds, the same pointer %ld times\n",
			nworkers, rounds, reused);
	return NULL;
}

Test(handles_stale, second_join_of_a_joined_handle, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "stale join");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], join_join_main, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

/* ---- every call on a detached, finished handle -------------------------------- *
 *
 * Property: detach t1 and let it finish; spawn t2, named, waiting on a gate
 * (started or not); then on t1: wf_task_name is NULL, wf_task_done is false,
 * and wf_join / wf_cancel / wf_detach (one per round) return WF_EINVAL;
 * t2 is untouched: not joined, not cancelled, not detached, so opening its
 * gate lets it finish with its own result, which its join returns. */

typedef struct gated {
	wf_future *gate;
	int rc;
	int *done; /* set by a task just before it returns, if not NULL */
} gated;

static void *gated_fn(void *arg)
{
	gated *g = arg;
	void *v = NULL;
	g->rc = wf_await_timeout(g->gate, &v, GATE_MS);
	return v;
}

static void *flag_fn(void *arg)
{
	__atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
	return NULL;
}

static const char *const op_names[] = {"wf_join", "wf_cancel", "wf_detach"};

static void *detached_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	long rounds = scaled(30000);
	long reused = 0;
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		watchdog_note("stale detached handle: %u workers, round %ld", nworkers, i);
		int finished = 0;
		wf_task *t1 = wf_spawn(flag_fn, &finished);
		if (!CHECK(t1 != NULL))
			break;
		if (i % 2)
			CHECK_RC(wf_yield(), 0); /* detached while it runs, or after */
		CHECK_RC(wf_detach(t1), 0);
		/* Wait until it has run, then a little more: it is freed
		 * once it has returned. */
		while (!__atomic_load_n(&finished, __ATOMIC_ACQUIRE))
			CHECK_RC(wf_yield(), 0);
		for (int k = 0; k < 3; k++)
			CHECK_RC(wf_yield(), 0);

		char name[32];
		snprintf(name, sizeof(name), "fresh-%ld", i);
		void *v2 = (void *)(uintptr_t)(2 * i + 5);
		gated g = {.gate = wf_future_new(), .rc = 1};
		wf_task *t2 = NULL;
		wf_spawn_opts o = {.name = name};
		if (!CHECK(g.gate != NULL) || !CHECK_RC(wf_spawn_ex(gated_fn, &g, &o, &t2), 0))
			break;
		reused += t2 == t1;
		if (i % 3 == 0)
			CHECK_RC(wf_yield(), 0); /* t2 waits on its gate already */

		const char *n1 = wf_task_name(t1);
		if (!CHECK(n1 == NULL))
			fprintf(stderr, "stale detached handle, %u workers, round %ld: "
					"wf_task_name gave \"%s\"\n",
				nworkers, i, n1);
		CHECK(!wf_task_done(t1));
		int op = (int)(i % 3);
		int rc = op == 0 ? wf_join(t1, NULL) : op == 1 ? wf_cancel(t1) : wf_detach(t1);
		if (!CHECK_RC(rc, WF_EINVAL))
			fprintf(stderr, "stale detached handle, %u workers, round %ld: %s acted on "
					"it%s\n",
				nworkers, i, op_names[op],
				t2 == t1 ? " (its memory went to the next task)" : "");

		/* t2 is untouched. */
		CHECK(!wf_task_done(t2));
		const char *n2 = wf_task_name(t2);
		CHECK(n2 != NULL && strcmp(n2, name) == 0);
		CHECK_RC(wf_future_set(g.gate, v2), 0);
		void *res = NULL;
		CHECK_RC(wf_join(t2, &res), 0);
		CHECK(res == v2);
		CHECK_RC(g.rc, 0);
		wf_future_release(g.gate);
	}
	if (getenv("STALE_VERBOSE"))
		fprintf(stderr, "stale detached handle, %u workers: %ld rounds, the same pointer "
				"%ld times\n",
			nworkers, rounds, reused);
	return NULL;
}

Test(handles_stale, calls_on_a_detached_finished_handle, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "stale detached handle");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], detached_main, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

/* ---- a released handle whose task is still alive ------------------------------ *
 *
 * Property: a handle is stale from the moment it is given back, not from
 * the moment its task's memory is freed. (a) Detach a task that still
 * waits on its gate: every call on the handle is refused, and the task,
 * neither cancelled nor joined, finishes normally once the gate opens.
 * (b) Join a task that was claimed while its start entry stayed in the
 * deque (a newer spawn sat above it), so the runtime still holds it after
 * the join returns: every call on the handle is refused (not WF_EBUSY, not
 * WF_EALREADY, no name, not "done"). */

typedef struct alive {
	wf_future *gate;
	int rc;
	int finished; /* atomic */
} alive;

static void *alive_fn(void *arg)
{
	alive *a = arg;
	void *v = NULL;
	a->rc = wf_await_timeout(a->gate, &v, GATE_MS);
	__atomic_store_n(&a->finished, 1, __ATOMIC_RELEASE);
	return v;
}

/* Every call on a released handle t, in the order `first` says. */
static bool refused(wf_task *t, int first)
{
	bool ok = true;
	for (int k = 0; k < 3; k++) {
		int op = (first + k) % 3;
		int rc = op == 0 ? wf_join(t, NULL) : op == 1 ? wf_cancel(t) : wf_detach(t);
		if (!CHECK_RC(rc, WF_EINVAL)) {
			fprintf(stderr, "%s on a released handle\n", op_names[op]);
			ok = false;
		}
	}
	const char *n = wf_task_name(t);
	if (!CHECK(n == NULL)) {
		fprintf(stderr, "wf_task_name on a released handle gave \"%s\"\n", n);
		ok = false;
	}
	ok &= CHECK(!wf_task_done(t));
	return ok;
}

static void *alive_detached_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	long rounds = scaled(3000);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		watchdog_note("released handle, task alive (detached): %u workers, round %ld",
			      nworkers, i);
		alive a = {.gate = wf_future_new(), .rc = 1};
		wf_task *t = wf_spawn(alive_fn, &a);
		if (!CHECK(a.gate != NULL && t != NULL))
			break;
		if (i % 2)
			CHECK_RC(wf_yield(), 0); /* started, or not yet */
		CHECK_RC(wf_detach(t), 0);
		if (!refused(t, (int)(i % 3)))
			fprintf(stderr, "(a) detached, %u workers, round %ld\n", nworkers, i);
		CHECK_RC(wf_future_set(a.gate, (void *)1), 0);
		/* (A task cancelled before it started never runs: after a
		 * failed check, do not wait for it.) */
		while (!__atomic_load_n(&a.finished, __ATOMIC_ACQUIRE) && !check_any_failed())
			CHECK_RC(wf_yield(), 0);
		if (check_any_failed())
			break; /* the gate stays: the task may still hold it */
		CHECK_RC(a.rc, 0); /* not cancelled */
		wf_future_release(a.gate);
	}
	return NULL;
}

static void *alive_joined_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	long rounds = scaled(3000);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		watchdog_note("released handle, task alive (joined): %u workers, round %ld",
			      nworkers, i);
		wf_task *t1 = wf_spawn(value_fn, (void *)(uintptr_t)(i + 10));
		wf_task *t2 = wf_spawn(value_fn, (void *)(uintptr_t)(i + 20));
		if (!CHECK(t1 != NULL && t2 != NULL))
			break;
		void *res = NULL;
		CHECK_RC(wf_join(t1, &res), 0);
		CHECK(res == (void *)(uintptr_t)(i + 10));
		if (!refused(t1, (int)(i % 3)))
			fprintf(stderr, "(b) joined, %u workers, round %ld\n", nworkers, i);
		res = NULL;
		CHECK_RC(wf_join(t2, &res), 0);
		CHECK(res == (void *)(uintptr_t)(i + 20));
	}
	return NULL;
}

Test(handles_stale, calls_on_a_detached_handle_whose_task_still_runs, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "released handle, task alive (detached)");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], alive_detached_main, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

Test(handles_stale, calls_on_a_joined_handle_whose_task_the_runtime_still_holds,
     .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "released handle, task alive (joined)");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], alive_joined_main, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

/* ---- stale handles from many tasks at once ------------------------------------ *
 *
 * Property: as above, with many tasks each joining and detaching their own
 * children while the others do the same (memory moves between workers:
 * a task freed on another worker goes back to its owner's free list); a
 * stale handle never reaches anyone's task. */

#define CROWD 16

static void *crowd_member(void *arg)
{
	uintptr_t me = (uintptr_t)arg;
	long rounds = scaled(4000);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		uintptr_t v = (me << 32) | (uintptr_t)i;
		wf_task *t1 = wf_spawn(i % 2 ? yield_value_fn : value_fn, (void *)v);
		if (!CHECK(t1 != NULL))
			break;
		if (i % 4 == 0) {
			CHECK_RC(wf_detach(t1), 0);
			for (int k = 0; k < 2; k++)
				CHECK_RC(wf_yield(), 0);
		} else {
			void *res = NULL;
			CHECK_RC(wf_join(t1, &res), 0);
			CHECK(res == (void *)v);
		}
		wf_task *t2 = wf_spawn(yield_value_fn, (void *)(v + 1));
		if (!CHECK(t2 != NULL))
			break;
		if (i % 4 == 0) {
			/* Given back, whether or not t1 has finished yet. */
			CHECK_RC(wf_detach(t1), WF_EINVAL);
		} else {
			CHECK_RC(wf_join(t1, NULL), WF_EINVAL);
		}
		void *res = NULL;
		CHECK_RC(wf_join(t2, &res), 0);
		CHECK(res == (void *)(v + 1));
	}
	return NULL;
}

static void *crowd_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	watchdog_note("stale handles, a crowd: %u workers", nworkers);
	wf_task *ts[CROWD];
	for (uintptr_t i = 0; i < CROWD; i++)
		ts[i] = wf_spawn(crowd_member, (void *)(i + 1));
	for (int i = 0; i < CROWD; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	return NULL;
}

Test(handles_stale, many_tasks_with_stale_handles_at_once, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "stale handles, a crowd");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], crowd_main, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

/* ---- released futures --------------------------------------------------------- *
 *
 * Property: a released future's handle is refused by every call even once
 * a new future took its memory, and the new future is untouched; from many
 * tasks at once. */

static void *future_member(void *arg)
{
	long rounds = scaled(20000);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		wf_future *f1 = wf_future_new();
		if (!CHECK(f1 != NULL))
			break;
		if (i % 2)
			CHECK_RC(wf_future_set(f1, (void *)1), 0);
		wf_future_release(f1);
		wf_future *f2 = wf_future_new();
		if (!CHECK(f2 != NULL))
			break;
		void *v = (void *)7;
		switch (i % 6) {
		case 0:
			CHECK_RC(wf_future_set(f1, (void *)2), WF_EINVAL);
			break;
		case 1:
			CHECK_RC(wf_future_fail(f1, WF_EIO, "stale"), WF_EINVAL);
			break;
		case 2:
			CHECK_RC(wf_future_cancel(f1), WF_EINVAL);
			break;
		case 3:
			CHECK_RC(wf_await_timeout(f1, &v, 0), WF_EINVAL);
			break;
		case 4:
			CHECK_RC(wf_future_result(f1, &v), WF_EINVAL);
			break;
		default:
			CHECK(wf_future_retain(f1) == NULL);
			wf_future_release(f1); /* does nothing */
			break;
		}
		CHECK(!wf_future_done(f1));
		CHECK(wf_future_errmsg(f1) == NULL);
		/* f2 is untouched. */
		CHECK(!wf_future_done(f2));
		CHECK_RC(wf_future_result(f2, &v), WF_EAGAIN);
		CHECK_RC(wf_future_set(f2, (void *)3), 0);
		CHECK_RC(wf_await(f2, &v), 0);
		CHECK(v == (void *)3);
		wf_future_release(f2);
		if (i % 8 == 0)
			CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

static void *future_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	watchdog_note("released futures: %u workers", nworkers);
	wf_task *ts[CROWD];
	for (int i = 0; i < CROWD; i++)
		ts[i] = wf_spawn(future_member, NULL);
	for (int i = 0; i < CROWD; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	return NULL;
}

Test(handles_stale, released_futures_from_many_tasks, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "released futures");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], future_main, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

/* ---- the calling task's own handle ------------------------------------------
 *
 * Property: wf_current() is valid while the task runs, even when another
 * task detaches it between the call and the use; the handle of a task
 * that ran in the same memory before is still refused. */

struct self_detach {
	wf_future *go;   /* set once the handle was detached */
	wf_task *before; /* the task's wf_current() before the detach */
	wf_task *older;  /* a finished task's spent handle */
	int finished;    /* atomic: the task no longer reads this */
};

static void *self_detach_task(void *arg)
{
	struct self_detach *s = arg;
	__atomic_store_n(&s->before, wf_current(), __ATOMIC_RELEASE);
	CHECK_RC(wf_await(s->go, NULL), 0);
	/* Detached meanwhile: the value read before still names this task. */
	const char *name = wf_task_name(s->before);
	CHECK(name != NULL && strcmp(name, "self-detach") == 0);
	CHECK(!wf_task_done(s->before));
	CHECK(wf_task_name(wf_current()) == name);
	/* Not an older task's handle, whatever memory it had. */
	CHECK(wf_task_name(s->older) == NULL);
	CHECK_RC(wf_cancel(s->older), WF_EINVAL);
	__atomic_store_n(&s->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *self_detach_main(void *arg)
{
	long rounds = test_iters(200);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		struct self_detach s = {.go = wf_future_new()};
		wf_task *old = wf_spawn(yield_value_fn, (void *)1);
		CHECK_RC(wf_join(old, NULL), 0);
		s.older = old;
		wf_spawn_opts o = WF_SPAWN_OPTS_INIT;
		o.name = "self-detach";
		wf_task *t = NULL;
		if (!CHECK_RC(wf_spawn_ex(self_detach_task, &s, &o, &t), 0))
			break;
		while (__atomic_load_n(&s.before, __ATOMIC_ACQUIRE) == NULL)
			CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_detach(t), 0);
		CHECK(wf_task_name(t) == NULL); /* the detacher's copy is spent */
		CHECK_RC(wf_future_set(s.go, NULL), 0);
		/* The task reads s: wait until it is done with it. */
		while (!__atomic_load_n(&s.finished, __ATOMIC_ACQUIRE))
			CHECK_RC(wf_yield(), 0);
		wf_future_release(s.go);
	}
	return NULL;
}

Test(handles_stale, the_calling_tasks_handle_stays_valid_when_it_is_detached,
     .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "own handle, detached");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], self_detach_main, NULL);
	watchdog_stop();
}

/* ---- a cancellation racing the join that gives the handle back ----------- *
 *
 * Property: a plain thread that keeps cancelling through a copy of a
 * task's handle, while the task's joiner takes the outcome (giving the
 * handle back) and spawns new tasks into the same memory, gets 0,
 * WF_EALREADY or WF_EINVAL, and never cancels one of the new tasks. A
 * cancel that decoded the handle just before the join gave it back must
 * not write into the next task's waiter. */

#define BYSTANDERS 4

static struct {
	wf_task *target; /* atomic: the handle the canceller uses */
	int stop;        /* atomic */
	long ok, already, invalid, other;
} racer;

static void *race_canceller(void *arg)
{
	(void)arg;
	long n = 0;
	while (!__atomic_load_n(&racer.stop, __ATOMIC_ACQUIRE)) {
		wf_task *h = __atomic_load_n(&racer.target, __ATOMIC_ACQUIRE);
		if (h == NULL)
			continue;
		int rc = wf_cancel(h);
		if (rc == 0)
			racer.ok++;
		else if (rc == WF_EALREADY)
			racer.already++;
		else if (rc == WF_EINVAL)
			racer.invalid++;
		else
			racer.other++;
		if (++n % 64 == 0)
			sched_yield();
	}
	return NULL;
}

/* The target: may be cancelled at any of its suspensions. */
static void *race_target(void *arg)
{
	for (int i = 0; i < 2; i++)
		(void)wf_yield();
	return arg;
}

/* A task nobody cancels: 1 if a suspension of it was cancelled. */
static void *race_bystander(void *arg)
{
	(void)arg;
	uintptr_t hit = 0;
	for (int i = 0; i < 3; i++)
		if (wf_yield() == WF_ECANCELED)
			hit = 1;
	if (hit)
		(void)wf_uncancel();
	return (void *)hit;
}

static void *cancel_race_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	long rounds = scaled(20000);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		watchdog_note("cancel racing a join: %u workers, round %ld", nworkers, i);
		wf_task *t = wf_spawn(race_target, (void *)(uintptr_t)(i + 1));
		if (!CHECK(t != NULL))
			break;
		__atomic_store_n(&racer.target, t, __ATOMIC_RELEASE);
		if (i % 2)
			CHECK_RC(wf_yield(), 0);
		void *res = NULL;
		int rc = wf_join(t, &res);
		CHECK(rc == 0 || rc == WF_ECANCELED);
		if (rc == 0)
			CHECK(res == (void *)(uintptr_t)(i + 1));
		/* The canceller goes on with the spent handle meanwhile. */
		CHECK_RC(wf_cancel(t), WF_EINVAL);
		wf_task *b[BYSTANDERS];
		for (int k = 0; k < BYSTANDERS; k++)
			b[k] = wf_spawn(race_bystander, NULL);
		for (int k = 0; k < BYSTANDERS; k++) {
			if (!CHECK(b[k] != NULL))
				continue;
			res = (void *)2;
			rc = wf_join(b[k], &res);
			if (!CHECK_RC(rc, 0) || !CHECK(res == NULL))
				fprintf(stderr, "cancel race, %u workers, round %ld: a task spawned "
						"after the join was cancelled through the old handle "
						"(its join: %s, result %p)\n",
					nworkers, i, wf_err_name(rc), res);
		}
	}
	__atomic_store_n(&racer.target, NULL, __ATOMIC_RELEASE);
	return NULL;
}

Test(handles_stale, a_cancel_racing_the_join_never_reaches_the_next_task, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "cancel racing a join");
	for (size_t i = 0; i < NCOUNTS; i++) {
		memset(&racer, 0, sizeof(racer));
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, race_canceller, NULL), 0);
		run_weft(worker_counts[i], cancel_race_main, (void *)(uintptr_t)worker_counts[i]);
		__atomic_store_n(&racer.stop, 1, __ATOMIC_RELEASE);
		pthread_join(th, NULL);
		cr_expect_eq(racer.other, 0, "wf_cancel returned a code other than 0, "
					     "WF_EALREADY or WF_EINVAL %ld times", racer.other);
		if (getenv("STALE_VERBOSE"))
			fprintf(stderr, "cancel race, %u workers: %ld cancelled, %ld already done, "
					"%ld refused\n",
				worker_counts[i], racer.ok, racer.already, racer.invalid);
	}
	watchdog_stop();
}

/* ---- a second joiner racing the join that gives the handle back ---------- *
 *
 * Property: a plain thread that keeps joining through a copy of a task's
 * handle, while the task's spawner joins it too (one of the two gets the
 * outcome, the other WF_EBUSY or WF_EINVAL) and then spawns new tasks into
 * the same memory, never joins one of the new tasks: their spawner joins
 * every one of them with 0 and its result. A join that read the task's
 * join word just after the handle was given back must see the new life
 * there and be refused, not take the new task's join (and drop a
 * reference of its handle). */

static struct {
	wf_task *target; /* atomic: the handle the rival joins */
	int stop;        /* atomic */
	long won, refused, other, wrong;
} jracer;

static void *race_joiner(void *arg)
{
	(void)arg;
	long n = 0;
	while (!__atomic_load_n(&jracer.stop, __ATOMIC_ACQUIRE)) {
		wf_task *h = __atomic_load_n(&jracer.target, __ATOMIC_ACQUIRE);
		if (h == NULL)
			continue;
		void *res = NULL;
		int rc = wf_join(h, &res);
		if (rc == 0) {
			jracer.won++;
			if (res == NULL) /* a bystander's result, never a target's */
				jracer.wrong++;
		} else if (rc == WF_EBUSY || rc == WF_EINVAL) {
			jracer.refused++;
		} else {
			jracer.other++;
		}
		if (++n % 64 == 0)
			sched_yield();
	}
	return NULL;
}

static void *join_race_bystander(void *arg)
{
	(void)wf_yield();
	return arg;
}

static void *join_race_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	long rounds = scaled(20000);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		watchdog_note("second joiner racing a join: %u workers, round %ld", nworkers, i);
		wf_task *t = wf_spawn(race_target, (void *)(uintptr_t)(i + 1));
		if (!CHECK(t != NULL))
			break;
		__atomic_store_n(&jracer.target, t, __ATOMIC_RELEASE);
		if (i % 2)
			CHECK_RC(wf_yield(), 0);
		void *res = NULL;
		int rc = wf_join(t, &res);
		CHECK(rc == 0 || rc == WF_EBUSY || rc == WF_EINVAL);
		if (rc == 0)
			CHECK(res == (void *)(uintptr_t)(i + 1));
		wf_task *b[BYSTANDERS];
		for (int k = 0; k < BYSTANDERS; k++)
			b[k] = wf_spawn(join_race_bystander, (void *)(uintptr_t)(k + 1));
		for (int k = 0; k < BYSTANDERS; k++) {
			if (!CHECK(b[k] != NULL))
				continue;
			res = NULL;
			rc = wf_join(b[k], &res);
			if (!CHECK_RC(rc, 0) || !CHECK(res == (void *)(uintptr_t)(k + 1)))
				fprintf(stderr, "join race, %u workers, round %ld: a task spawned "
						"after the join was joined through the old handle "
						"(its join: %s, result %p)\n",
					nworkers, i, wf_err_name(rc), res);
		}
	}
	__atomic_store_n(&jracer.target, NULL, __ATOMIC_RELEASE);
	return NULL;
}

Test(handles_stale, a_second_joiner_never_takes_the_next_tasks_join, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "second joiner racing a join");
	for (size_t i = 0; i < NCOUNTS; i++) {
		memset(&jracer, 0, sizeof(jracer));
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, race_joiner, NULL), 0);
		run_weft(worker_counts[i], join_race_main, (void *)(uintptr_t)worker_counts[i]);
		__atomic_store_n(&jracer.stop, 1, __ATOMIC_RELEASE);
		pthread_join(th, NULL);
		cr_expect_eq(jracer.other, 0, "wf_join returned a code other than 0, WF_EBUSY or "
					      "WF_EINVAL %ld times", jracer.other);
		cr_expect_eq(jracer.wrong, 0, "the second joiner took a new task's result %ld times",
			     jracer.wrong);
		if (getenv("STALE_VERBOSE"))
			fprintf(stderr, "join race, %u workers: %ld won, %ld refused\n",
				worker_counts[i], jracer.won, jracer.refused);
	}
	watchdog_stop();
}
