/*
 * Shutdown racing the rest of the program.
 *
 * Submissions racing wf_runtime_shutdown: plain threads submit in a loop
 * while the main thread shuts the runtime down, over many runtimes of 1, 2,
 * 3 and 8 workers. Every submission accepted (0) must complete, with its
 * result or WF_ECANCELED, by the time wf_runtime_shutdown returns; every
 * refused one gets WF_ESHUTDOWN; nothing touches freed memory (the ASan
 * build checks that).
 *
 * A submitter may only call wf_runtime_submit while the runtime is
 * allocated, and it cannot know when the shutdown will have freed it: the
 * test keeps the runtime's memory (and nothing else) alive until every
 * submitter has been refused. A task cannot do that, since a running task
 * keeps the drain from ending and would hide the race. A libuv handle left
 * open on a worker's loop can: the worker's thread runs its loop until the
 * handle is closed, so the shutdown's join of that thread, and hence the
 * free, waits, while the drain and the other workers go on as usual. The
 * last submitter refused closes the handle.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

#include "rt.h"
#include "rt_check.h"
#include "weft.h"

/* Runtimes started and shut down (times WEFT_TEST_SCALE percent). Each
 * round starts up to 8 workers, whose first tasks map their stacks: under
 * TSan that costs most of a round. */
#if defined(WF_TSAN)
#define RACE_ROUNDS 40
#elif defined(WF_ASAN)
#define RACE_ROUNDS 400
#else
#define RACE_ROUNDS 1000
#endif

/* A submitter that got this many submissions in stops without being
 * refused (a round whose shutdown came late). */
enum { SUBMITTERS = 3, MAX_KEPT = 512 };


typedef struct submitter {
	pthread_t thread;
	unsigned index;
	unsigned kept;  /* futures of accepted submissions */
	unsigned made;  /* atomic: submissions accepted so far */
	wf_future **futures;
} submitter;

static wf_runtime *race_rt;
static submitter subs[SUBMITTERS];
static int stopped; /* atomic: submitters done with this runtime */
static uv_async_t keeper;

static void keeper_closed(uv_handle_t *h) { (void)h; }

static void keeper_fire(uv_async_t *h) { uv_close((uv_handle_t *)h, keeper_closed); }

/* Runs on a worker without suspending: the handle goes on that worker's
 * loop, from that worker's own thread. */
static void *keeper_install(void *arg)
{
	wf__worker *w = wf__self();
	CHECK_EQ(uv_async_init(&w->loop, &keeper, keeper_fire), 0);
	return NULL;
}

static void submitter_done(void)
{
	if (__atomic_add_fetch(&stopped, 1, __ATOMIC_ACQ_REL) == SUBMITTERS)
		uv_async_send(&keeper);
}

static void *work(void *arg)
{
	uintptr_t v = (uintptr_t)arg;
	/* Some tasks suspend, so the drain has something to wait for (and
	 * to cancel). */
	if (v % 7 == 0)
		wf_sleep(v % 2);
	else if (v % 5 == 0)
		wf_yield();
	return (void *)(v * 2);
}

static uintptr_t encode(const submitter *s, unsigned i)
{
	return ((uintptr_t)s->index << 20) | i;
}

static void *submit_loop(void *arg)
{
	submitter *s = arg;
	s->kept = 0;
	for (;;) {
		if (s->kept == MAX_KEPT)
			break; /* enough: stop without being refused */
		wf_future *f = NULL;
		int rc = wf_runtime_submit(race_rt, work, (void *)encode(s, s->kept), &f);
		if (rc == WF_ESHUTDOWN) {
			CHECK(f == NULL);
			break;
		}
		if (!CHECK_RC(rc, 0))
			break;
		s->futures[s->kept++] = f;
		__atomic_store_n(&s->made, s->kept, __ATOMIC_RELEASE);
	}
	submitter_done();
	return NULL;
}

static void check_outcomes(submitter *s, unsigned workers)
{
	for (unsigned i = 0; i < s->kept; i++) {
		wf_future *f = s->futures[i];
		if (!check_any_failed()) {
			void *v = NULL;
			if (!CHECK(wf_future_done(f)))
				fprintf(stderr, "workers %u: submission %u of thread %u never completed\n",
					workers, i, s->index);
			int rc = wf_future_result(f, &v);
			if (rc == 0)
				CHECK_EQ((uintptr_t)v, encode(s, i) * 2);
			else
				CHECK_RC(rc, WF_ECANCELED);
		}
		wf_future_release(f);
	}
}

static void race_round(unsigned workers, uint64_t *rng)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = workers;
	cr_assert_eq(wf_runtime_start(&cfg, &race_rt), 0);

	wf_future *f = NULL;
	cr_assert_eq(wf_runtime_submit(race_rt, keeper_install, NULL, &f), 0);
	cr_assert_eq(wf_await(f, NULL), 0);
	wf_future_release(f);

	__atomic_store_n(&stopped, 0, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < SUBMITTERS; i++) {
		subs[i].index = i;
		__atomic_store_n(&subs[i].made, 0, __ATOMIC_RELAXED);
		cr_assert_eq(pthread_create(&subs[i].thread, NULL, submit_loop, &subs[i]), 0);
	}
	/* Shut down once every submitter is under way, at a random point. */
	unsigned want = 1 + rng_next(rng) % 16;
	for (unsigned i = 0; i < SUBMITTERS; i++)
		while (__atomic_load_n(&subs[i].made, __ATOMIC_ACQUIRE) < want &&
		       __atomic_load_n(&stopped, __ATOMIC_ACQUIRE) == 0)
			sched_yield();
	spin(rng_next(rng) % 20000);
	cr_assert_eq(wf_runtime_shutdown(race_rt), 0);

	for (unsigned i = 0; i < SUBMITTERS; i++) {
		pthread_join(subs[i].thread, NULL);
		check_outcomes(&subs[i], workers);
	}
}

Test(shutdown, submissions_racing_shutdown_all_complete_or_are_refused, .timeout = 600)
{
	for (unsigned i = 0; i < SUBMITTERS; i++) {
		subs[i].futures = calloc(MAX_KEPT, sizeof(wf_future *));
		cr_assert_not_null(subs[i].futures);
	}
	static const unsigned workers[] = {1, 2, 3, 8};
	uint64_t rng = 0x5eed5eedull;
	unsigned n = (unsigned)test_iters(RACE_ROUNDS);
	for (unsigned round = 0; round < n && !check_any_failed(); round++)
		race_round(workers[round % 4], &rng);
	for (unsigned i = 0; i < SUBMITTERS; i++)
		free(subs[i].futures);
	check_none_failed();
	check_no_leaks();
}

/* ---- tasks that do not end are named ------------------------------------------- */

/* A shutdown that waits past its grace period for tasks that do not end
 * names them: the one that never suspends first ("running on worker N"),
 * then the others with what each waits on, the first 20 only. */

enum { STUBBORN = 24 };

static int released;        /* atomic: the report was seen */
static int stubborn_waiting; /* atomic */
static wf_future *never;

static void *spinner(void *arg)
{
	while (!__atomic_load_n(&released, __ATOMIC_ACQUIRE))
		spin(1000);
	return NULL;
}

/* Catches every cancellation and waits again, until the report is seen. */
static void *stubborn(void *arg)
{
	__atomic_add_fetch(&stubborn_waiting, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&released, __ATOMIC_ACQUIRE))
		if (wf_await(never, NULL) == WF_ECANCELED)
			wf_uncancel();
	return NULL;
}

static void *start_stuck(void *arg)
{
	wf_spawn_opts o = WF_SPAWN_OPTS_INIT;
	o.detached = true;
	for (int i = 0; i < STUBBORN; i++) {
		char name[16];
		snprintf(name, sizeof(name), "stubborn-%d", i);
		o.name = name;
		CHECK_RC(wf_spawn_ex(stubborn, NULL, &o, NULL), 0);
	}
	/* Once the others wait: the spinner takes a worker for good. */
	while (__atomic_load_n(&stubborn_waiting, __ATOMIC_ACQUIRE) < STUBBORN)
		wf_sleep(1);
	o.name = "spinner";
	CHECK_RC(wf_spawn_ex(spinner, NULL, &o, NULL), 0);
	return NULL;
}

/* Reads what the capture holds so far (fd 2 is the capture file). */
static bool capture_has(const char *part)
{
	char buf[8192];
	ssize_t n = pread(2, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return strstr(buf, part) != NULL;
}

static void *watch_report(void *arg)
{
	uint64_t until = mono_ns() + 60 * 1000000000ull;
	while (!capture_has("more\n") && mono_ns() < until)
		usleep(1000);
	__atomic_store_n(&released, 1, __ATOMIC_RELEASE);
	return NULL;
}

static unsigned count_of(const char *text, const char *part)
{
	unsigned n = 0;
	for (const char *p = text; (p = strstr(p, part)) != NULL; p += strlen(part))
		n++;
	return n;
}

Test(shutdown, tasks_that_do_not_end_are_named)
{
	never = wf_future_new();
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.shutdown_grace_ms = 100;
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(&cfg, &rt), 0);
	wf_future *f;
	cr_assert_eq(wf_runtime_submit(rt, start_stuck, NULL, &f), 0);
	cr_assert_eq(wf_await(f, NULL), 0);
	wf_future_release(f);

	stderr_capture cap;
	stderr_capture_begin(&cap);
	pthread_t watcher;
	cr_assert_eq(pthread_create(&watcher, NULL, watch_report, NULL), 0);
	int rc = wf_runtime_shutdown(rt);
	pthread_join(watcher, NULL);
	char *err = stderr_capture_end(&cap);
	cr_assert_eq(rc, 0);

	const char *head = "weft: shutdown: 25 task(s) still running after 100 ms of "
			   "cancellation; waiting for them:\n";
	cr_assert(strncmp(err, head, strlen(head)) == 0, "report:\n%s", err);
	/* The spinner first (unless a stubborn task was caught running too). */
	const char *spin_line = strstr(err, "weft:   \"spinner\": running on worker ");
	cr_assert_not_null(spin_line, "report:\n%s", err);
	const char *waiting = strstr(err, "waiting on future at 0x");
	cr_assert(waiting == NULL || waiting > spin_line, "report:\n%s", err);
	/* 20 named, the rest counted; the others wait on the future (a few
	 * may be caught between two waits). */
	cr_assert_eq(count_of(err, "weft:   \"stubborn-"), 19, "report:\n%s", err);
	cr_assert_geq(count_of(err, ": suspended, waiting on future at 0x"), 15, "report:\n%s", err);
	cr_assert(strstr(err, "weft:   ... and 5 more\n") != NULL, "report:\n%s", err);
	free(err);
	wf_future_release(never);
	check_none_failed();
	check_no_leaks();
}
