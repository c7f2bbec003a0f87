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

/* Runtimes started and shut down (WEFT_TEST_ROUNDS overrides). */
#if defined(WF_TSAN)
#define RACE_ROUNDS 200
#elif defined(WF_ASAN)
#define RACE_ROUNDS 500
#else
#define RACE_ROUNDS 2000
#endif

/* A submitter that got this many submissions in stops without being
 * refused (a round whose shutdown came late). */
enum { SUBMITTERS = 3, MAX_KEPT = 512 };

static unsigned rounds(unsigned dflt)
{
	const char *s = getenv("WEFT_TEST_ROUNDS");
	return s != NULL && *s != '\0' ? (unsigned)strtoul(s, NULL, 10) : dflt;
}

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
	unsigned n = rounds(RACE_ROUNDS);
	for (unsigned round = 0; round < n && !check_any_failed(); round++)
		race_round(workers[round % 4], &rng);
	for (unsigned i = 0; i < SUBMITTERS; i++)
		free(subs[i].futures);
	check_none_failed();
	check_no_leaks();
}
