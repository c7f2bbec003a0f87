/*
 * Races and lost updates in the task core, each driven hard through the
 * public API at 1, 2, 3 and 8 workers:
 *
 *   burst     a task spawns more than 4096 children at once (past that
 *             the newest start entries move to the runtime's injection
 *             queue) and joins them all, inline where they have not
 *             started, while they yield, sleep or wait for a plain thread;
 *             also a wide fork-join tree with a sum check. A task run
 *             inline while its start entry is still chained on the
 *             injection queue must not have that link reused by the yield
 *             list, the inbox or the fired-timer list: that corrupts the
 *             chain, drops references twice and frees live tasks (seen as
 *             WF_EINVAL or WF_EBUSY from wf_join, wrong sums, hangs,
 *             crashes).
 *   growth    joining a task whose start entry is not at the bottom of the
 *             joiner's deque (a newer spawn or a resumed task sits above
 *             it) must not leave a stale entry behind that pins the task
 *             for as long as the joiner keeps going: memory stays bounded.
 *   nested    a cancellation passed on through two inline joins (P joins C
 *             inline, C joins D inline, D waits) is counted at every level:
 *             D's wait, C's join and P's join return WF_ECANCELED, and
 *             wf_cancelling() is 1 in C and P, as when C has a fiber.
 *   yielding  an inline child that only yields sees its joiner's
 *             cancellation.
 *   detach    a failed task detached at the moment it completes is
 *             reported on stderr exactly once (completion and wf_detach
 *             must not both miss each other's write).
 *   rivals    two joiners race for a child still in its spawner's deque:
 *             one gets the result, the other is refused, it runs once;
 *             a task that waits on (wf_wait) a child its joiner runs
 *             inline is woken (the lockless completion sees it).
 *   wf_fail   a positive code (the minus forgotten) fails the task with
 *             WF_EINVAL and a message instead of being dropped.
 *   remote    a task freed away from its spawner's worker (by another
 *             worker or a plain thread's join) comes back clean.
 *
 * Hangs: every test arms a watchdog thread that reports what was running
 * and aborts the test's process, so a hang is a failure, not a timeout.
 * Iterations shrink under the sanitizers and in unoptimised builds, and
 * scale with WEFT_TEST_SCALE (percent).
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

static const unsigned worker_counts[] = {1, 2, 3, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

/* For the tests with tens of thousands of tasks per round. Under TSan a
 * task started on a fiber costs more the more tasks that stack carried
 * before (TSan's shadow stack of a fiber whose entry never returns only
 * grows), and one worker carries them all: the runs there are the ones
 * where more than one worker shares the work (the injection queue is not
 * used with one worker anyway). */
#if defined(WF_TSAN)
static const unsigned heavy_counts[] = {2};
#else
static const unsigned heavy_counts[] = {1, 2, 3, 8};
#endif
#define NHEAVY (sizeof(heavy_counts) / sizeof(heavy_counts[0]))

/* The growth tests fail with one worker (nobody else takes the stale
 * entries): under TSan, that and two. */
#if defined(WF_TSAN)
static const unsigned growth_counts[] = {1, 2};
#else
static const unsigned growth_counts[] = {1, 2, 3, 8};
#endif
#define NGROWTH (sizeof(growth_counts) / sizeof(growth_counts[0]))

#define LONG_MS 10000

#if defined(WF_ASAN) || defined(WF_TSAN) || !defined(__OPTIMIZE__)
#define WATCHDOG_S 150
#else
#define WATCHDOG_S 90
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
 * watchdog_stop is not called within `secs` seconds. It writes to the
 * stderr of when it was armed, even if fd 2 was redirected since. */
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
		/* A failed check often leaves tasks that never finish (the
		 * runtime's state is corrupt): stop soon after one. */
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

static uint32_t mix32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

/* A plain thread that completes the futures tasks hand it: their waits
 * end with a wake-up from outside the runtime (the inbox path). */
typedef struct handoff_item {
	wf_future *f;
	void *value;
	struct handoff_item *next;
} handoff_item;

typedef struct handoff {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	handoff_item *head;
	bool stop;
	pthread_t th;
	long completed;
} handoff;

static void *handoff_main(void *arg)
{
	handoff *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->head == NULL && !h->stop)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->head == NULL)
			break;
		handoff_item *list = h->head;
		h->head = NULL;
		pthread_mutex_unlock(&h->mu);
		while (list != NULL) {
			handoff_item *next = list->next;
			CHECK_RC(wf_future_set(list->f, list->value), 0);
			wf_future_release(list->f);
			free(list);
			h->completed++;
			list = next;
		}
		pthread_mutex_lock(&h->mu);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void handoff_start(handoff *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	cr_assert_eq(pthread_create(&h->th, NULL, handoff_main, h), 0);
}

static void handoff_stop(handoff *h)
{
	pthread_mutex_lock(&h->mu);
	h->stop = true;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->th, NULL);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
}

/* [task] Waits for a future that the handoff thread completes. */
static void wait_for_plain_thread(handoff *h, void *value)
{
	handoff_item *it = malloc(sizeof(*it)); /* the thread frees it */
	wf_future *f = wf_future_new();
	if (!CHECK(it != NULL && f != NULL))
		return;
	it->f = wf_future_retain(f); /* the thread's reference */
	it->value = value;
	pthread_mutex_lock(&h->mu);
	it->next = h->head;
	h->head = it;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
	void *got = NULL;
	CHECK_RC(wf_await_timeout(f, &got, LONG_MS), 0);
	CHECK(got == value);
	wf_future_release(f);
}

/* What a child does before it returns: the suspensions that reuse a
 * task's queue link (yield list, fired timers, inbox) and some without
 * any. */
enum { ACT_NONE, ACT_YIELD, ACT_YIELD3, ACT_SLEEP, ACT_PLAIN_THREAD, ACT_SPIN };

static int pick_action(uint32_t h)
{
#if defined(WF_TSAN)
	/* Every task started on a fiber costs TSan much (more the more
	 * tasks a stack has carried): fewer suspensions, fewer fibers. */
	if ((h >> 20) % 4 != 0)
		return ACT_NONE;
#endif
	unsigned r = h % 1000;
	if (r < 380)
		return ACT_NONE;
	if (r < 680)
		return ACT_YIELD;
	if (r < 780)
		return ACT_YIELD3;
	if (r < 782)
		return ACT_SLEEP;
	if (r < 800)
		return ACT_PLAIN_THREAD;
	return ACT_SPIN;
}

static void act(int a, handoff *h, uint32_t hash)
{
	switch (a) {
	case ACT_YIELD:
		CHECK_RC(wf_yield(), 0);
		break;
	case ACT_YIELD3:
		for (int i = 0; i < 3; i++)
			CHECK_RC(wf_yield(), 0);
		break;
	case ACT_SLEEP:
		CHECK_RC(wf_sleep(1), 0);
		break;
	case ACT_PLAIN_THREAD:
		wait_for_plain_thread(h, (void *)(uintptr_t)(hash | 1));
		break;
	case ACT_SPIN:
		spin(hash % 2000);
		break;
	default:
		break;
	}
}

/* ---- 1a. a spawn burst, then inline joins --------------------------------- *
 *
 * Property: every child of a burst larger than the injection threshold is
 * joined with 0 and its own result, whatever it did before returning.
 * Guards against the injection queue's chain sharing its link with the
 * yield list, the inbox and the fired-timer list: a child claimed inline
 * while still chained there and then suspended corrupts the chain (start
 * entries pushed for running tasks, references dropped twice, task structs
 * reused under live handles). */

/* 4097 + 2 * 1024: three batches of 1024 start entries move to the
 * injection queue, the last one at the last spawn, so that the newest
 * children are all chained there when the joins begin. Under TSan, where
 * each task costs much more, two batches. */
#if defined(WF_TSAN)
#define BURST 5121
#else
#define BURST 6145
#endif

typedef struct burst {
	handoff *h;
	uint32_t seed;
	int busy_first; /* the oldest children keep the thieves busy */
	int nworkers;
} burst;

typedef struct burst_child {
	burst *b;
	long i;
} burst_child;

static void *burst_child_fn(void *arg)
{
	burst_child *c = arg;
	burst *b = c->b;
	uint32_t hash = mix32((uint32_t)c->i ^ b->seed);
	if (c->i < b->busy_first) {
		/* The thieves that steal the oldest children spin a while:
		 * meanwhile the newest start entries sit on the injection
		 * queue, where the joiner claims them. */
		uint64_t end = mono_ns() + 2000000;
		while (mono_ns() < end)
			spin(200);
	} else {
		act(pick_action(hash), b->h, hash);
	}
	return (void *)(uintptr_t)(c->i * 7 + 3);
}

/* Static: after a failed check, children still running when the main
 * task returns (the runtime's shutdown reaps them) must find them. */
static handoff burst_handoff;
static burst burst_ctx;

static void *burst_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	handoff *h = &burst_handoff;
	burst *b = &burst_ctx;
	handoff_start(h);
	*b = (burst){.h = h, .nworkers = (int)nworkers};
	burst_child *kids = calloc(BURST, sizeof(*kids));
	wf_task **ts = calloc(BURST, sizeof(*ts));
	if (!CHECK(kids != NULL && ts != NULL))
		return NULL;
#if defined(WF_ASAN)
	/* Cheap under ASan with more than one worker, where it counts. */
	long rounds = scaled(nworkers == 1 ? 12 : 72);
#else
	long rounds = scaled(12);
#endif
	uint64_t t0 = mono_ns();
	for (long round = 0; round < rounds; round++) {
		watchdog_note("burst: %u workers, round %ld", nworkers, round);
		b->seed = mix32((uint32_t)round * 2654435761u + nworkers);
		/* Every join order with and without busy thieves. */
		b->busy_first = (round / 3) % 2 ? 2 * (int)nworkers : 0;
		for (long i = 0; i < BURST; i++) {
			kids[i] = (burst_child){.b = b, .i = i};
			ts[i] = wf_spawn(burst_child_fn, &kids[i]);
			if (!CHECK(ts[i] != NULL))
				return NULL; /* leaks: the test has failed */
		}
		/* Newest first (the injection queue's), oldest first, or
		 * both ends towards the middle. */
		int order = (int)(round % 3);
		for (long k = 0; k < BURST; k++) {
			long i = order == 0 ? BURST - 1 - k
				 : order == 1 ? k
				 : (k % 2 ? k / 2 : BURST - 1 - k / 2);
			void *res = NULL;
			int rc = wf_join(ts[i], &res);
			if (!CHECK_RC(rc, 0) || !CHECK_EQ((uintptr_t)res, (uintptr_t)(i * 7 + 3))) {
				fprintf(stderr, "burst: %u workers, round %ld: child %ld of %d "
						"(join order %d, %ld joined before)\n",
					nworkers, round, i, BURST, order, k);
				/* The other handles may be garbage now: leave
				 * them, and the children's memory, to the
				 * runtime's shutdown. */
				return NULL;
			}
		}
		if (check_any_failed())
			return NULL;
	}
	handoff_stop(h);
	free(kids);
	free(ts);
	if (getenv("RACES_VERBOSE"))
		fprintf(stderr, "burst: %u workers: %ld rounds in %.2f s\n", nworkers, rounds,
			(double)(mono_ns() - t0) / 1e9);
	return NULL;
}

Test(races, spawn_burst_then_inline_joins, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "burst");
	for (size_t i = 0; i < NHEAVY; i++)
		run_weft(heavy_counts[i], burst_main, (void *)(uintptr_t)heavy_counts[i]);
	watchdog_stop();
}

/* ---- 1b. a wide fork-join tree with a sum check ---------------------------- *
 *
 * Property: a fork-join tree whose root fans out past the injection
 * threshold adds up exactly: every leaf is counted once. Same failure mode
 * as 1a, from inner nodes that yield and join while they are chained on
 * the injection queue. */

#if defined(WF_TSAN)
static const int tree_width[] = {4400}; /* leaves: 4400 */
#define TREE_LEVELS 1
#else
static const int tree_width[] = {4400, 2, 2}; /* leaves: 17600 */
#define TREE_LEVELS 3
#endif

typedef struct tree {
	handoff *h;
	uint32_t seed;
} tree;

static tree tree_ctx;
static handoff tree_handoff;

static void *tree_node(void *arg)
{
	uintptr_t a = (uintptr_t)arg;
	int level = (int)(a >> 32);
	long id = (long)(a & 0xffffffffu);
	tree *tr = &tree_ctx;
	uint32_t hash = mix32((uint32_t)(id * 31 + level) ^ tr->seed);
	if (level == TREE_LEVELS) {
		act(pick_action(hash), tr->h, hash);
		return (void *)(uintptr_t)id;
	}
	int w = tree_width[level];
	wf_task *kids[8];
	wf_task **ts = w <= 8 ? kids : calloc((size_t)w, sizeof(*ts));
	if (!CHECK(ts != NULL))
		return NULL;
	for (int k = 0; k < w; k++) {
		uintptr_t child = ((uintptr_t)(level + 1) << 32) | (uintptr_t)(id * w + k);
		ts[k] = wf_spawn(tree_node, (void *)child);
		if (!CHECK(ts[k] != NULL))
			return NULL;
	}
	/* Inner nodes suspend too, between their spawns and their joins. */
	if (level > 0 && hash % 3 == 0)
		CHECK_RC(wf_yield(), 0);
	uintptr_t sum = 0;
	bool reverse = hash & 8;
	for (int j = 0; j < w; j++) {
		int k = reverse ? w - 1 - j : j;
		void *res = NULL;
		if (!CHECK_RC(wf_join(ts[k], &res), 0)) {
			fprintf(stderr, "tree: level %d node %ld, child %d of %d\n", level, id, k, w);
			break; /* the rest is garbage now; shutdown reaps it */
		}
		sum += (uintptr_t)res;
	}
	if (ts != kids)
		free(ts);
	return (void *)sum;
}

static void *tree_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	handoff_start(&tree_handoff);
	tree_ctx = (tree){.h = &tree_handoff};
	uintptr_t leaves = 1;
	for (int l = 0; l < TREE_LEVELS; l++)
		leaves *= (uintptr_t)tree_width[l];
	long rounds = scaled(4);
	uint64_t t0 = mono_ns();
	for (long round = 0; round < rounds; round++) {
		watchdog_note("tree: %u workers, round %ld", nworkers, round);
		tree_ctx.seed = mix32((uint32_t)round * 40503u + nworkers * 7u);
		void *sum = NULL;
		wf_task *root = wf_spawn(tree_node, (void *)0);
		CHECK_RC(wf_join(root, &sum), 0);
		CHECK_EQ((uintptr_t)sum, leaves * (leaves - 1) / 2);
		if (check_any_failed())
			return NULL; /* stragglers may still use the handoff */
	}
	handoff_stop(&tree_handoff);
	if (getenv("RACES_VERBOSE"))
		fprintf(stderr, "tree: %u workers: %ld rounds in %.2f s\n", nworkers, rounds,
			(double)(mono_ns() - t0) / 1e9);
	return NULL;
}

Test(races, wide_fork_join_tree_sums_exactly, .timeout = TEST_LIMIT_S)
{
#if defined(WF_TSAN)
	/* Under TSan the tree's thousands of tasks per round cost tens of
	 * seconds; spawn_burst_then_inline_joins runs the same path there. */
	cr_skip_test("too slow under TSan; the burst test covers the path");
#endif
	watchdog_start(WATCHDOG_S, "tree");
	for (size_t i = 0; i < NHEAVY; i++)
		run_weft(heavy_counts[i], tree_main, (void *)(uintptr_t)heavy_counts[i]);
	watchdog_stop();
}

/* ---- 1c. repeated joins leave no stale start entries behind -------------------- *
 *
 * Property: a task that keeps joining children whose start entry is not at
 * the bottom of its deque (a newer spawn, or a woken task, sits above it)
 * does not pin one task per join: memory stays bounded however long it
 * goes on without suspending. Guards against the join pushing the bottom
 * entry back and claiming the child by its state alone, which leaves the
 * child's start entry (and the child's memory, which that entry holds) in
 * the deque until the worker pops it, which a joiner that never suspends
 * postpones for ever. */

static void *twice(void *arg)
{
	return (void *)((uintptr_t)arg * 2);
}

typedef struct helper {
	wf_future *f;
	int *parked;
} helper;

static void *helper_fn(void *arg)
{
	helper *hp = arg;
	__atomic_add_fetch(hp->parked, 1, __ATOMIC_RELAXED);
	CHECK_RC(wf_await(hp->f, NULL), 0);
	return NULL;
}

static void *growth_a_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	long rounds = scaled(200000);
#if defined(WF_TSAN)
	rounds = rounds / 3 + 1;
#endif
	/* Fixed cost allowed, plus a few bytes per round: a pinned task costs
	 * hundreds. */
	size_t budget = (1u << 20) + (size_t)rounds * 24;

	/* (a) Spawn the next, join the previous: the newer start entry is at
	 * the bottom each time the older child is joined. */
	watchdog_note("growth (spawn next, join previous): %u workers", nworkers);
	size_t before = heap_in_use();
	wf_task *prev = wf_spawn(twice, (void *)0);
	for (long i = 1; i <= rounds && !check_any_failed(); i++) {
		wf_task *next = wf_spawn(twice, (void *)(uintptr_t)i);
		if (!CHECK(next != NULL))
			break;
		void *res = NULL;
		CHECK_RC(wf_join(prev, &res), 0);
		CHECK_EQ((uintptr_t)res, (uintptr_t)(i - 1) * 2);
		prev = next;
	}
	size_t after = heap_in_use();
	CHECK_RC(wf_join(prev, NULL), 0);
	if (!CHECK(after < before + budget) || getenv("RACES_VERBOSE"))
		fprintf(stderr, "growth (a), %u workers: %ld joins grew the heap by %lld bytes "
				"(%.0f per join; budget %zu)\n",
			nworkers, rounds, (long long)after - (long long)before,
			((double)after - (double)before) / (double)rounds, budget);
	return NULL;
}

/* (b) A woken task sits at the bottom: spawn a child, wake a parked helper
 * (the one woken before it moves from the LIFO slot to the deque, above
 * the child's entry), join the child. A run of its own: the task memory
 * that (a) freed is kept for reuse, and would hide what (b) pins. */
static void *growth_b_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	/* Each helper is a parked task with a stack: not too many. */
	long nh = scaled(48000) / 10;
	if (nh < 300)
		nh = 300;
	watchdog_note("growth (woken task at the bottom): %u workers", nworkers);
	helper *hs = calloc((size_t)nh, sizeof(*hs));
	wf_task **ht = calloc((size_t)nh, sizeof(*ht));
	int parked = 0;
	if (!CHECK(hs != NULL && ht != NULL))
		goto out;
	for (long i = 0; i < nh; i++) {
		hs[i].f = wf_future_new();
		hs[i].parked = &parked;
		ht[i] = wf_spawn(helper_fn, &hs[i]);
		CHECK(hs[i].f != NULL && ht[i] != NULL);
	}
	/* Let every helper reach its wait. */
	while (__atomic_load_n(&parked, __ATOMIC_RELAXED) < nh)
		CHECK_RC(wf_sleep(1), 0);
	CHECK_RC(wf_sleep(5), 0);
	size_t before = heap_in_use();
	long bad = 0;
	for (long i = 0; i < nh && bad == 0; i++) {
		wf_task *c = wf_spawn(twice, (void *)(uintptr_t)i);
		bad += !CHECK_RC(wf_future_set(hs[i].f, NULL), 0);
		void *res = NULL;
		bad += !CHECK_RC(wf_join(c, &res), 0);
		bad += !CHECK_EQ((uintptr_t)res, (uintptr_t)i * 2);
	}
	size_t after = heap_in_use();
	/* Fixed cost: task memory comes in 64 KiB handle slabs, and with
	 * several workers a few more may be taken while frees of another
	 * worker's tasks wait in its remote batch (seen: up to 3.5 slabs). A
	 * join that pins its child costs ~400 bytes, far above nh * 64. */
	size_t budget_b = (256u << 10) + (size_t)nh * 64;
	if (!CHECK(after < before + budget_b) || getenv("RACES_VERBOSE"))
		fprintf(stderr, "growth (b), %u workers: %ld joins grew the heap by %lld bytes "
				"(%.0f per join; budget %zu)\n",
			nworkers, nh, (long long)after - (long long)before,
			((double)after - (double)before) / (double)nh, budget_b);
	for (long i = 0; i < nh; i++) {
		wf_future_set(hs[i].f, NULL); /* done already, unless a check failed */
		CHECK_RC(wf_join(ht[i], NULL), 0);
		wf_future_release(hs[i].f);
	}
out:
	free(hs);
	free(ht);
	return NULL;
}

Test(races, joins_below_a_newer_spawn_keep_memory_bounded, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "growth (a)");
	for (size_t i = 0; i < NGROWTH; i++)
		run_weft(growth_counts[i], growth_a_main, (void *)(uintptr_t)growth_counts[i]);
	watchdog_stop();
}

Test(races, joins_below_a_woken_task_keep_memory_bounded, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "growth (b)");
	for (size_t i = 0; i < NGROWTH; i++)
		run_weft(growth_counts[i], growth_b_main, (void *)(uintptr_t)growth_counts[i]);
	watchdog_stop();
}

/* ---- 2. a cancellation passed on through two inline joins ----------------------- *
 *
 * Property: P joins C, C joins D, D waits; cancelling P reaches D, and each
 * join passes the outcome back as a cancellation of its own: D's wait, C's
 * join and P's join return WF_ECANCELED, wf_cancelling() is 1 in C and in P,
 * and P's outcome is WF_ECANCELED. Run with C inline on P's stack (the
 * failure: C does not count the cancellation it passed on, so P's join
 * returns 0 and wf_cancelling() is 0 in P) and with C on a fiber of its
 * own (the reference behaviour). */

typedef struct nest {
	wf_future *waiting; /* D is about to wait */
	wf_future *never;
	bool c_fiber;
	int how; /* D: 0 sleeps, 1 awaits a future never completed */
	int d_rc, c_join_rc, c_cancelling, p_join_rc, p_cancelling;
} nest;

static void *nest_d(void *arg)
{
	nest *n = arg;
	CHECK_RC(wf_future_set(n->waiting, NULL), 0);
	n->d_rc = n->how ? wf_await_timeout(n->never, NULL, LONG_MS) : wf_sleep(LONG_MS);
	return NULL;
}

static void *nest_c(void *arg)
{
	nest *n = arg;
	wf_task *d = wf_spawn(nest_d, n);
	n->c_join_rc = wf_join(d, NULL); /* D has not started: inline */
	n->c_cancelling = wf_cancelling();
	return NULL;
}

static void *nest_p(void *arg)
{
	nest *n = arg;
	wf_task *c = NULL;
	/* A stack size of its own keeps C off P's stack. */
	wf_spawn_opts o = {.stack_size = n->c_fiber ? 256 * 1024 : 0};
	if (!CHECK_RC(wf_spawn_ex(nest_c, n, &o, &c), 0))
		return NULL;
	n->p_join_rc = wf_join(c, NULL);
	n->p_cancelling = wf_cancelling();
	return NULL;
}

static void *cancel_thread(void *arg)
{
	CHECK_RC(wf_cancel(arg), 0);
	return NULL;
}

static void cancel_from(wf_task *t, int how)
{
	if (how == 0) {
		CHECK_RC(wf_cancel(t), 0);
		return;
	}
	pthread_t th;
	if (CHECK(pthread_create(&th, NULL, cancel_thread, t) == 0))
		pthread_join(th, NULL);
}

#define NEST_BATCH 8

static void nest_rounds(unsigned nworkers, bool c_fiber)
{
	long rounds = scaled(40);
	for (long r = 0; r < rounds && !check_any_failed(); r++) {
		watchdog_note("nested cancel (C %s): %u workers, round %ld",
			      c_fiber ? "on a fiber" : "inline", nworkers, r);
		nest n[NEST_BATCH];
		wf_task *p[NEST_BATCH];
		for (int i = 0; i < NEST_BATCH; i++) {
			n[i] = (nest){.waiting = wf_future_new(), .never = wf_future_new(),
				      .c_fiber = c_fiber, .how = (int)((r + i) % 2),
				      .d_rc = 1, .c_join_rc = 1, .p_join_rc = 1,
				      .c_cancelling = -1, .p_cancelling = -1};
			p[i] = wf_spawn(nest_p, &n[i]);
		}
		for (int i = 0; i < NEST_BATCH; i++) {
			CHECK_RC(wf_await_timeout(n[i].waiting, NULL, LONG_MS), 0);
			cancel_from(p[i], (r + i) % 4 == 0);
		}
		for (int i = 0; i < NEST_BATCH; i++) {
			int rc = wf_join(p[i], NULL);
			bool ok = CHECK_RC(n[i].d_rc, WF_ECANCELED);
			ok &= CHECK_RC(n[i].c_join_rc, WF_ECANCELED);
			ok &= CHECK_EQ(n[i].c_cancelling, 1);
			ok &= CHECK_RC(n[i].p_join_rc, WF_ECANCELED);
			ok &= CHECK_EQ(n[i].p_cancelling, 1);
			ok &= CHECK_RC(rc, WF_ECANCELED);
			if (!ok)
				fprintf(stderr, "nested cancel (C %s, D %s), %u workers, round %ld\n",
					c_fiber ? "on a fiber" : "inline",
					n[i].how ? "awaiting" : "sleeping", nworkers, r);
			wf_future_release(n[i].waiting);
			wf_future_release(n[i].never);
		}
	}
}

static void *nest_main_inline(void *arg)
{
	nest_rounds((unsigned)(uintptr_t)arg, false);
	return NULL;
}

static void *nest_main_fiber(void *arg)
{
	nest_rounds((unsigned)(uintptr_t)arg, true);
	return NULL;
}

Test(races, cancel_through_two_inline_joins, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "nested cancel");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], nest_main_inline, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

Test(races, cancel_through_an_inline_join_below_a_fiber, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "nested cancel, fiber");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], nest_main_fiber, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

/* ---- 3. an inline child that only yields sees its joiner's cancellation ------------ *
 *
 * Property: P joins C inline; C loops on wf_yield; cancelling P makes one
 * of C's yields return WF_ECANCELED, and P's join then returns WF_ECANCELED
 * with wf_cancelling() 1 in P, as when C has a fiber. Guards against only
 * the waits forwarding a joiner's cancellation to its inline child: C
 * would yield until its own limit (YIELD_LIMIT_NS here, for ever in a
 * program). */

#define YIELD_LIMIT_NS 1000000000ull

typedef struct yielder {
	wf_future *yielding;
	uint64_t cancelled_at; /* when P was cancelled (atomic) */
	bool c_fiber;
	int c_rc, p_join_rc, p_cancelling;
	long yields;
} yielder;

/* C yields until a yield fails, or until YIELD_LIMIT_NS after P was
 * cancelled (LONG_MS in all, at most). */
static void *yield_c(void *arg)
{
	yielder *y = arg;
	CHECK_RC(wf_future_set(y->yielding, NULL), 0);
	uint64_t start = mono_ns();
	int rc;
	for (;;) {
		rc = wf_yield();
		y->yields++;
		if (rc != 0)
			break;
		uint64_t now = mono_ns(), c = __atomic_load_n(&y->cancelled_at, __ATOMIC_ACQUIRE);
		if ((c != 0 && now > c + YIELD_LIMIT_NS) || now > start + LONG_MS * 1000000ull)
			break;
	}
	y->c_rc = rc;
	return NULL;
}

static void *yield_p(void *arg)
{
	yielder *y = arg;
	wf_task *c = NULL;
	wf_spawn_opts o = {.stack_size = y->c_fiber ? 256 * 1024 : 0};
	if (!CHECK_RC(wf_spawn_ex(yield_c, y, &o, &c), 0))
		return NULL;
	y->p_join_rc = wf_join(c, NULL);
	y->p_cancelling = wf_cancelling();
	return NULL;
}

static void yield_rounds(unsigned nworkers, bool c_fiber)
{
	long rounds = scaled(40);
	for (long r = 0; r < rounds && !check_any_failed(); r++) {
		watchdog_note("yielding inline child (%s): %u workers, round %ld",
			      c_fiber ? "on a fiber" : "inline", nworkers, r);
		yielder y[NEST_BATCH];
		wf_task *p[NEST_BATCH];
		for (int i = 0; i < NEST_BATCH; i++) {
			y[i] = (yielder){.yielding = wf_future_new(), .c_fiber = c_fiber,
					 .c_rc = 1, .p_join_rc = 1, .p_cancelling = -1};
			p[i] = wf_spawn(yield_p, &y[i]);
		}
		for (int i = 0; i < NEST_BATCH; i++) {
			CHECK_RC(wf_await_timeout(y[i].yielding, NULL, LONG_MS), 0);
			cancel_from(p[i], (r + i) % 4 == 0);
			__atomic_store_n(&y[i].cancelled_at, mono_ns(), __ATOMIC_RELEASE);
		}
		for (int i = 0; i < NEST_BATCH; i++) {
			int rc = wf_join(p[i], NULL);
			bool ok = CHECK_RC(y[i].c_rc, WF_ECANCELED);
			ok &= CHECK_RC(y[i].p_join_rc, WF_ECANCELED);
			ok &= CHECK_EQ(y[i].p_cancelling, 1);
			ok &= CHECK_RC(rc, WF_ECANCELED);
			if (!ok)
				fprintf(stderr, "yielding child (%s), %u workers, round %ld: "
						"%ld yields\n",
					c_fiber ? "on a fiber" : "inline", nworkers, r, y[i].yields);
			wf_future_release(y[i].yielding);
		}
	}
}

static void *yield_main_inline(void *arg)
{
	yield_rounds((unsigned)(uintptr_t)arg, false);
	return NULL;
}

static void *yield_main_fiber(void *arg)
{
	yield_rounds((unsigned)(uintptr_t)arg, true);
	return NULL;
}

Test(races, inline_child_that_only_yields_sees_the_cancellation, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "yielding inline child");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], yield_main_inline, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

Test(races, child_on_a_fiber_that_only_yields_sees_the_cancellation, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "yielding child on a fiber");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], yield_main_fiber, (void *)(uintptr_t)worker_counts[i]);
	watchdog_stop();
}

/* ---- 4. a detached failure is reported exactly once -------------------------------- *
 *
 * Property: a task that fails and is detached by its spawner at about the
 * moment it completes is reported on stderr exactly once:
 *     weft: task "<name>" failed: <message>, never joined
 * Guards against a store-buffer race: completion publishes `done` then
 * reads `joined`, wf_detach publishes `joined` then reads `done`; if both
 * reads can miss the other side's write, neither side reports. It shows up
 * mostly in optimised builds, rarely (a few in 10^5).
 *
 * Each round, the main task spawns a failing task and hands its handle to
 * a plain thread. The task records its failure, says so, and waits
 * (briefly) for the thread's go, so that both start together; then it
 * returns while the thread detaches it after a delay that it keeps
 * adjusting to land at the task's completion. The waits spin: giving the
 * CPU away on a loaded machine costs a whole time slice per round. Rounds
 * stop after DF_SECONDS per worker count if the machine is that slow. */

#define DF_SECONDS 1

struct df_run;

typedef struct df_slot {
	struct df_run *run;
	wf_task *t; /* published by the main task */
	int ready;
	int go;
} df_slot;

typedef struct df_run {
	df_slot *slots;
	long n;
	long spawned;
	long done;     /* detaches made by the thread (atomic) */
	long synced;   /* rounds where the task got its go (atomic) */
	unsigned delay;
	int bad;       /* detaches that did not return 0 (atomic) */
	int abandoned; /* set if the thread gave up */
	int stop;      /* out of time: the main task spawns no more */
} df_run;

static void *df_task(void *arg)
{
	df_slot *s = arg;
	void *r = wf_fail(WF_EIO, "x");
	__atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
	uint64_t limit = 0;
	for (unsigned k = 0; !__atomic_load_n(&s->go, __ATOMIC_ACQUIRE); k++) {
		__asm__ __volatile__("" ::: "memory");
		if (k % 256 == 255) {
			uint64_t now = mono_ns();
			if (limit == 0)
				limit = now + 50000;
			else if (now > limit)
				return r; /* the thread is not running right now */
		}
	}
	__atomic_add_fetch(&s->run->synced, 1, __ATOMIC_RELAXED);
	return r;
}

/* Spins until *p is non-zero: 1; 0 if the main task stopped spawning;
 * -1 after 20 s. */
static int df_wait(df_run *run, const void *p, bool word)
{
	uint64_t limit = 0;
	for (unsigned k = 0;; k++) {
		if (word ? __atomic_load_n((const int *)p, __ATOMIC_ACQUIRE) != 0
			 : __atomic_load_n((wf_task *const *)p, __ATOMIC_ACQUIRE) != NULL)
			return 1;
		if (k % 1024 == 1023) {
			if (__atomic_load_n(&run->stop, __ATOMIC_ACQUIRE))
				return 0;
			uint64_t now = mono_ns();
			if (limit == 0)
				limit = now + 20000000000ull;
			else if (now > limit)
				return -1;
		}
	}
}

static void *df_thread(void *arg)
{
	df_run *run = arg;
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	unsigned delay = 200;
	for (long i = 0; i < run->n; i++) {
		df_slot *s = &run->slots[i];
		int w = df_wait(run, &s->t, false);
		if (w == 0)
			break; /* out of time: no more tasks */
		if (w < 0 || df_wait(run, &s->ready, true) != 1) {
			__atomic_store_n(&run->abandoned, 1, __ATOMIC_RELAXED);
			break;
		}
		wf_task *t = __atomic_load_n(&s->t, __ATOMIC_ACQUIRE);
		__atomic_store_n(&s->go, 1, __ATOMIC_RELEASE);
		/* The task returns and completes a few hundred nanoseconds
		 * after the go. The delay before the detach follows the
		 * moment of completion: longer while the task is found still
		 * running, shorter while it is found done, with some noise,
		 * so that many detaches land right at the completion. */
		spin(delay + rng_next(&rng) % 64);
		bool was_done = wf_task_done(t);
		if (wf_detach(t) != 0)
			__atomic_add_fetch(&run->bad, 1, __ATOMIC_RELAXED);
		if (was_done)
			delay = delay > 8 ? delay - 8 : 0;
		else if (delay < 20000)
			delay += 8;
		__atomic_store_n(&run->done, i + 1, __ATOMIC_RELEASE);
	}
	run->delay = delay;
	return NULL;
}

static void *df_main(void *arg)
{
	df_run *run = arg;
	pthread_t th;
	if (!CHECK(pthread_create(&th, NULL, df_thread, run) == 0))
		return NULL;
	uint64_t end = mono_ns() + DF_SECONDS * 1000000000ull;
	for (long i = 0; i < run->n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "df-%ld", i);
		wf_spawn_opts o = {.name = name};
		wf_task *t = NULL;
		run->slots[i].run = run;
		if (!CHECK_RC(wf_spawn_ex(df_task, &run->slots[i], &o, &t), 0))
			break;
		__atomic_store_n(&run->slots[i].t, t, __ATOMIC_RELEASE);
		run->spawned = i + 1;
		/* Yielding lets the task run here (or it runs elsewhere). */
		while (__atomic_load_n(&run->done, __ATOMIC_ACQUIRE) <= i &&
		       !__atomic_load_n(&run->abandoned, __ATOMIC_RELAXED))
			CHECK_RC(wf_yield(), 0);
		if (__atomic_load_n(&run->abandoned, __ATOMIC_RELAXED))
			break;
		if (i % 16 == 15 && mono_ns() > end)
			break;
	}
	__atomic_store_n(&run->stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	/* Let every detached task finish before the run ends (shutdown
	 * would cancel the stragglers). */
	CHECK_RC(wf_sleep(20), 0);
	return NULL;
}

/* Counts the reports of df-<i> in err; returns how many lines were not
 * such reports (and prints the first few). */
static long df_count(const char *err, unsigned char *seen, long n)
{
	long other = 0;
	const char *p = err;
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		long i;
		int used = 0;
		if (sscanf(p, "weft: task \"df-%ld\" failed: x, never joined%n", &i, &used) == 1 &&
		    (size_t)used == len && i >= 0 && i < n) {
			if (seen[i] < 255)
				seen[i]++;
		} else if (len > 0) {
			if (other++ < 10)
				fprintf(stderr, "unexpected stderr line: %.*s\n", (int)len, p);
		}
		p += len + (eol != NULL);
	}
	return other;
}

Test(races, detached_failure_reported_exactly_once, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "detach at completion");
	/* 200,000 rounds in all, over the four worker counts. */
	long n = scaled(50000);
	df_slot *slots = calloc((size_t)n, sizeof(*slots));
	unsigned char *seen = calloc((size_t)n, 1);
	cr_assert(slots != NULL && seen != NULL);
	for (size_t w = 0; w < NCOUNTS; w++) {
		watchdog_note("detach at completion: %u workers", worker_counts[w]);
		memset(slots, 0, (size_t)n * sizeof(*slots));
		memset(seen, 0, (size_t)n);
		df_run run = {.slots = slots, .n = n};
		stderr_capture cap;
		stderr_capture_begin(&cap);
		wf_config cfg;
		wf_config_init(&cfg);
		cfg.workers = worker_counts[w];
		uint64_t t0 = mono_ns();
		int rc = wf_run(&cfg, df_main, &run, NULL);
		char *err = stderr_capture_end(&cap);
		if (getenv("RACES_VERBOSE"))
			fprintf(stderr, "detach: %u workers: %ld rounds in %.2f s, %ld in step, "
					"final delay %u\n",
				worker_counts[w], run.done, (double)(mono_ns() - t0) / 1e9,
				run.synced, run.delay);
		long other = df_count(err, seen, n);
		free(err);
		cr_assert_eq(rc, 0, "wf_run: %s", wf_err_name(rc));
		check_none_failed();
		cr_assert_eq(run.abandoned, 0, "the detaching thread gave up waiting for a task");
		cr_assert_eq(run.done, run.spawned, "%ld of %ld tasks detached", run.done,
			     run.spawned);
		cr_assert_eq(run.bad, 0, "%d detaches did not return 0", run.bad);
		long lost = 0, twice = 0, first_lost = -1;
		for (long i = 0; i < run.done; i++) {
			if (seen[i] == 0 && lost++ == 0)
				first_lost = i;
			twice += seen[i] > 1;
		}
		cr_assert_eq(other, 0, "%ld unexpected lines on stderr", other);
		cr_assert(lost == 0 && twice == 0,
			  "%u workers: of %ld detached failures, %ld were never reported (the "
			  "first: df-%ld) and %ld more than once",
			  worker_counts[w], run.done, lost, first_lost, twice);
		check_no_leaks();
	}
	free(slots);
	free(seen);
	watchdog_stop();
}

/* ---- 6. wf_fail with a positive code ------------------------------------------------- *
 *
 * Property: wf_fail(EIO, ...) (a positive code: the minus forgotten) fails
 * the task with WF_EINVAL and a message naming the mistake; the task does
 * not succeed. Guards against the call being silently ignored. */

static void *fail_positive(void *arg)
{
	if ((uintptr_t)arg & 1)
		CHECK_RC(wf_yield(), 0); /* joined on its fiber, not inline */
	return wf_fail(EIO, "disk gone");
}

static void *fail_positive_main(void *arg)
{
	long rounds = scaled(2000);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		wf_task *t = wf_spawn(fail_positive, (void *)(uintptr_t)i);
		if (!CHECK(t != NULL))
			break;
		if (i % 4 == 3)
			CHECK_RC(wf_yield(), 0);
		void *res = (void *)1;
		char *msg = NULL;
		int rc = wf_join_ex(t, &res, &msg);
		CHECK_RC(rc, WF_EINVAL);
		CHECK(res == NULL);
		if (CHECK(msg != NULL))
			CHECK(msg[0] != '\0');
		free(msg);
	}
	return NULL;
}

Test(races, wf_fail_with_a_positive_code_fails_with_einval, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "wf_fail with a positive code");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], fail_positive_main, NULL);
	watchdog_stop();
}

/* ---- 1d. two joiners race for a child still in its spawner's deque ------- *
 *
 * Property: when the spawner joins a child whose start entry is the newest
 * in its deque while another task (on another worker) joins the same
 * child, exactly one join gets the child's result, the other is refused
 * (WF_EBUSY while the winner still joins, WF_EINVAL once the handle is
 * spent), and the child runs exactly once. Drives the spawner's take of
 * that entry (on x86-64 its barrier is the join's CAS) through the CAS
 * failing, through a thief taking the entry between the two, and through
 * the rival claiming the child from afar. */

#define RJ_NONE ((wf_task *)(uintptr_t)1) /* no child: the rival ends */

typedef struct rival {
	wf_task *h; /* atomic: the child, once spawned */
	bool watch; /* wf_wait on the child instead of joining it */
	int rc;
	void *res;
} rival;

static void *rj_child(void *arg)
{
	__atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
	return (void *)(uintptr_t)7;
}

static void *rj_rival(void *arg)
{
	rival *r = arg;
	wf_task *h;
	while ((h = __atomic_load_n(&r->h, __ATOMIC_ACQUIRE)) == NULL)
		CHECK_RC(wf_yield(), 0);
	if (h == RJ_NONE)
		return NULL;
	if (r->watch) {
		bool done = false;
		r->rc = wf_wait(&h, 1, WF_ALL_COMPLETED, LONG_MS, &done);
		r->res = (void *)(uintptr_t)done;
	} else {
		r->rc = wf_join(h, &r->res);
	}
	return NULL;
}

static bool rj_outcome_ok(int rc, void *res)
{
	return rc == 0 ? res == (void *)(uintptr_t)7 : (rc == WF_EBUSY || rc == WF_EINVAL);
}

static void *rj_child_spin(void *arg)
{
	for (volatile int k = 0; k < 500; k++)
		;
	return rj_child(arg);
}

static void *rival_main(void *arg)
{
	bool watch = arg != NULL;
	long rounds = scaled(20000);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		rival r = {.h = NULL, .watch = watch, .rc = 1, .res = NULL};
		int runs = 0;
		wf_task *rv = wf_spawn(rj_rival, &r);
		if (!CHECK(rv != NULL))
			break;
		/* Give a thief time to take the rival now and then. */
		for (volatile long k = 0; k < (i % 16) * 200; k++)
			;
		wf_task *c = wf_spawn(watch ? rj_child_spin : rj_child, &runs);
		if (!CHECK(c != NULL)) {
			__atomic_store_n(&r.h, RJ_NONE, __ATOMIC_RELEASE);
			wf_join(rv, NULL);
			break;
		}
		__atomic_store_n(&r.h, c, __ATOMIC_RELEASE);
		for (volatile long k = 0; k < (i % 7) * 50; k++)
			;
		void *res = NULL;
		int rc = wf_join(c, &res);
		CHECK_RC(wf_join(rv, NULL), 0);
		if (watch) {
			/* The join is ours alone; the watcher saw the child
			 * finish, or its handle already spent, never a timeout. */
			CHECK_RC(rc, 0);
			CHECK(res == (void *)(uintptr_t)7);
			CHECK(r.rc == WF_EINVAL || (r.rc == 1 && r.res == (void *)(uintptr_t)1));
		} else {
			CHECK((rc == 0) + (r.rc == 0) == 1);
			CHECK(rj_outcome_ok(rc, res));
			CHECK(rj_outcome_ok(r.rc, r.res));
		}
		CHECK(__atomic_load_n(&runs, __ATOMIC_RELAXED) == 1);
	}
	return NULL;
}

Test(races, two_joiners_of_a_child_still_in_its_spawners_deque, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "two joiners");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], rival_main, NULL);
	watchdog_stop();
}

/* The same with a watcher (wf_wait) instead of a second joiner: the
 * spawner's inline join completes the child without the core's lock unless
 * it sees the watcher (asym.h); the watcher must be woken all the same. */
Test(races, a_watcher_of_a_child_run_inline_by_its_joiner_is_woken, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "watcher of an inline child");
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], rival_main, (void *)1);
	watchdog_stop();
}

/* ---- remote frees ----------------------------------------------------------
 *
 * Property: a task whose last reference drops away from its spawner's
 * worker (it finished detached on another worker, or a plain thread joined
 * it) is cleared where it is freed and comes back to the spawner's free
 * list whole (one at a time from a plain thread, in magazines from a
 * worker): its old handle is refused, its failure message is freed
 * (ASan's leak check), and the tasks made in its memory start clean: no
 * stale name, result, failure, cancellation, context or pin (and Debug
 * builds check every field a spawn no longer writes, wf__task_alloc). */

#define ROAM_BATCH 64

/* Detached roamers not yet finished: the root waits for them before it
 * returns (the runtime's end would cancel them). */
static long roam_detached_live;

struct roam {
	unsigned nworkers;
	wf_task *plain[ROAM_BATCH]; /* joined by the plain thread */
	int nplain;
	wf_future *plain_done;
};

/* Set by some roamers in their own context: a task made in their memory
 * must not see it. */
static wf_ctxvar *roam_var;

static void *roam_task(void *arg)
{
	uintptr_t i = (uintptr_t)arg;
	unsigned n = wf_runtime_workers(wf_runtime_current());
	CHECK_EQ(wf_cancelling(), 0);
	CHECK(!wf_ctxvar_isset(roam_var));
	if (i % 3 == 1)
		CHECK_RC(wf_ctxvar_set(roam_var, (void *)(i + 1), NULL), 0);
	if (i % 6 == 1)
		CHECK_RC(wf_pin(true), 0); /* ends pinned */
	char want[32];
	if (i % 2)
		snprintf(want, sizeof(want), "roam-%u", (unsigned)i);
	else
		snprintf(want, sizeof(want), "task-");
	CHECK(strncmp(wf_task_name(wf_current()), want, strlen(want)) == 0);
	if (i % 3 == 0)
		CHECK_RC(wf_move_to_worker((unsigned)(wf_worker_id() + 1) % n), 0);
	if (i % 7 == 0)
		CHECK_RC(wf_yield(), 0);
	if (i % 3 == 1)
		CHECK(wf_ctxvar_get(roam_var) == (void *)(i + 1));
	if (i % 4 == 0)
		__atomic_sub_fetch(&roam_detached_live, 1, __ATOMIC_RELEASE);
	else if (i % 5 == 0)
		return wf_fail(WF_EIO, "roam failed on purpose");
	return (void *)(i + 1);
}

static void roam_check(uintptr_t i, int rc, void *res, char *msg)
{
	if (i % 4 != 0 && i % 5 == 0) {
		CHECK_RC(rc, WF_EIO);
		CHECK(msg != NULL && strcmp(msg, "roam failed on purpose") == 0);
	} else {
		CHECK_RC(rc, 0);
		if (!CHECK(res == (void *)(i + 1)))
			fprintf(stderr, "task %u: result %p\n", (unsigned)i, res);
		CHECK(msg == NULL);
	}
	free(msg);
}

static void *roam_plain_joiner(void *arg)
{
	struct roam *r = arg;
	for (int k = 0; k < r->nplain; k++) {
		uintptr_t i = (uintptr_t)k * 4 + 1;
		void *res = NULL;
		char *msg = NULL;
		int rc = wf_join_ex(r->plain[k], &res, &msg);
		roam_check(i, rc, res, msg);
	}
	CHECK_RC(wf_future_set(r->plain_done, NULL), 0);
	return NULL;
}

static void *roam_main(void *arg)
{
	struct roam r = {.nworkers = (unsigned)(uintptr_t)arg};
	long rounds = scaled(1500);
	for (long round = 0; round < rounds && !check_any_failed(); round++) {
		wf_task *mine[ROAM_BATCH];
		uintptr_t mine_i[ROAM_BATCH];
		int nmine = 0;
		r.nplain = 0;
		r.plain_done = wf_future_new();
		if (!CHECK(r.plain_done != NULL))
			break;
		for (uintptr_t i = 0; i < ROAM_BATCH; i++) {
			char name[32];
			snprintf(name, sizeof(name), "roam-%u", (unsigned)i);
			wf_spawn_opts o = WF_SPAWN_OPTS_INIT;
			o.name = i % 2 ? name : NULL;
			o.detached = i % 4 == 0 && i % 8 == 0;
			wf_task *t = NULL;
			if (i % 4 == 0)
				__atomic_add_fetch(&roam_detached_live, 1, __ATOMIC_RELAXED);
			if (!CHECK_RC(wf_spawn_ex(roam_task, (void *)i, &o, &t), 0)) {
				if (i % 4 == 0)
					__atomic_sub_fetch(&roam_detached_live, 1, __ATOMIC_RELAXED);
				break;
			}
			if (i % 4 == 0) {
				if (!o.detached)
					CHECK_RC(wf_detach(t), 0);
			} else if (i % 4 == 1) {
				r.plain[r.nplain++] = t;
			} else {
				mine_i[nmine] = i;
				mine[nmine++] = t;
			}
		}
		pthread_t th;
		CHECK_RC(pthread_create(&th, NULL, roam_plain_joiner, &r), 0);
		for (int k = 0; k < nmine; k++) {
			uintptr_t i = mine_i[k];
			void *res = NULL;
			char *msg = NULL;
			int rc = wf_join_ex(mine[k], &res, &msg);
			roam_check(i, rc, res, msg);
			/* Spent: refused, whatever now lives in its memory. */
			CHECK_RC(wf_join(mine[k], NULL), WF_EINVAL);
		}
		CHECK_RC(wf_await(r.plain_done, NULL), 0);
		pthread_join(th, NULL);
		for (int k = 0; k < r.nplain; k++)
			CHECK_RC(wf_join(r.plain[k], NULL), WF_EINVAL);
		wf_future_release(r.plain_done);
		if (round % 16 == 0)
			CHECK_RC(wf_sleep(1), 0); /* the detached ones finish */
	}
	for (int ms = 0; ms < LONG_MS && __atomic_load_n(&roam_detached_live, __ATOMIC_ACQUIRE) > 0;
	     ms++)
		CHECK_RC(wf_sleep(1), 0);
	CHECK_EQ(__atomic_load_n(&roam_detached_live, __ATOMIC_ACQUIRE), 0);
	return NULL;
}

Test(races, tasks_freed_away_from_their_spawner_come_back_clean, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "remote frees");
	CHECK_RC(wf_ctxvar_new("roam", NULL, &roam_var), 0);
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], roam_main, (void *)(uintptr_t)worker_counts[i]);
	CHECK_RC(wf_ctxvar_free(roam_var), 0);
	watchdog_stop();
}

/* ---- 8. backlog: a spawn loop that outruns the workers ---------------------- *
 *
 * Property: a task that spawns faster than the workers run what it spawns
 * keeps a bounded number of tasks not yet started (once its worker holds
 * 4096, and no other worker takes the batches it offloads, its spawn lets
 * them run first), loses none of them, and keeps a cancellation that
 * arrives while a spawn has let others run: the spawn still succeeds and
 * the next wait is the one cancelled. Children yield, sleep, join inline,
 * get cancelled before they start and wait for an event a plain thread
 * sets. */

#define BACKLOG_SPAWNS 40000
#define BACKLOG_AT 4096 /* the spawner's deque (runtime/scheduler.c) */

typedef struct backlog {
	long started, finished; /* atomic */
	wf_event *ev;
	int ev_set; /* atomic: the plain thread set ev */
	wf_task *root;
	int canceller_ran; /* atomic */
} backlog;

static backlog backlog_ctx;

static void *backlog_child(void *arg)
{
	backlog *b = &backlog_ctx;
	uint32_t h = mix32((uint32_t)(uintptr_t)arg);
	__atomic_add_fetch(&b->started, 1, __ATOMIC_ACQ_REL);
	switch (h % 64) {
	case 0:
	case 1:
		CHECK_RC(wf_yield(), 0);
		break;
	case 2:
		CHECK_RC(wf_sleep(h % 3), 0);
		break;
	case 3:
		CHECK_RC(wf_event_wait(b->ev, WF_FOREVER), 0);
		CHECK(__atomic_load_n(&b->ev_set, __ATOMIC_ACQUIRE));
		break;
	default:
		break;
	}
	__atomic_add_fetch(&b->finished, 1, __ATOMIC_ACQ_REL);
	return arg;
}

static void *backlog_nop(void *arg)
{
	return arg;
}

static void *backlog_setter(void *arg)
{
	backlog *b = arg;
	usleep(20000);
	__atomic_store_n(&b->ev_set, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_event_set(b->ev), 0);
	return NULL;
}

/* The most tasks the runtime may hold unstarted: the spawner's deque, the
 * batches offloaded to the injection queue, and what each other worker
 * took from there and has not run yet (a worker takes batches only while
 * it holds fewer than BACKLOG_AT). Without the bound, a loop of 40,000
 * spawns on one worker holds all 40,000. */
static long backlog_bound(unsigned nworkers)
{
	if (nworkers == 1)
		return BACKLOG_AT + 1;
	return (long)(nworkers + 2) * (BACKLOG_AT + 2048);
}

/* Spawns n children (with `joins`, some joined at once and some cancelled
 * before they start; else all detached), and returns the most unstarted
 * it saw after a spawn. */
static long backlog_spawn(backlog *b, long first, long n, bool joins)
{
	long most = 0;
	for (long i = first; i < first + n; i++) {
		uintptr_t tag = (uintptr_t)i;
		if (joins && i % 97 == 0) {
			/* Joined at once: runs inline, on the spawner's stack. */
			wf_task *t = wf_spawn(backlog_child, (void *)tag);
			void *res = NULL;
			if (!CHECK(t != NULL) || !CHECK_RC(wf_join(t, &res), 0) ||
			    !CHECK_EQ((uintptr_t)res, tag))
				return most;
		} else if (joins && i % 211 == 0) {
			/* Cancelled, most often before it starts (it never
			 * runs then); the spawn itself may have let it run,
			 * or another worker. */
			wf_task *t = wf_spawn(backlog_nop, (void *)tag);
			int rc = t != NULL ? wf_cancel(t) : WF_ENOMEM;
			if (!CHECK(rc == 0 || rc == WF_EALREADY))
				return most;
			rc = wf_join(t, NULL);
			if (!CHECK(rc == 0 || rc == WF_ECANCELED))
				return most;
			/* Counted here, whether it ran or not. */
			__atomic_add_fetch(&b->started, 1, __ATOMIC_ACQ_REL);
			__atomic_add_fetch(&b->finished, 1, __ATOMIC_ACQ_REL);
		} else {
			wf_spawn_opts o = {.detached = true};
			if (!CHECK_RC(wf_spawn_ex(backlog_child, (void *)tag, &o, NULL), 0))
				return most;
		}
		/* Every spawn so far (ids run from 0, in order) less the
		 * tasks that started. */
		long queued = (i + 1) - __atomic_load_n(&b->started, __ATOMIC_ACQUIRE);
		if (queued > most)
			most = queued;
	}
	return most;
}

static void backlog_settle(backlog *b, long total)
{
	for (int ms = 0; ms < 60000 && __atomic_load_n(&b->finished, __ATOMIC_ACQUIRE) < total;
	     ms++)
		CHECK_RC(wf_sleep(1), 0);
	CHECK_EQ(__atomic_load_n(&b->started, __ATOMIC_ACQUIRE), total);
	CHECK_EQ(__atomic_load_n(&b->finished, __ATOMIC_ACQUIRE), total);
}

/* An inline child that spawns past the threshold: the yield happens on
 * its joiner's fiber. */
static void *backlog_inline_spawner(void *arg)
{
	return (void *)(uintptr_t)backlog_spawn(&backlog_ctx, (long)(uintptr_t)arg,
						 BACKLOG_AT + 2000, true);
}

static void *backlog_main(void *arg)
{
	unsigned nworkers = (unsigned)(uintptr_t)arg;
	backlog *b = &backlog_ctx;
	*b = (backlog){0};
	if (!CHECK_RC(wf_event_new(&b->ev), 0))
		return NULL;
	pthread_t th;
	if (!CHECK_RC(pthread_create(&th, NULL, backlog_setter, b), 0))
		return NULL;
	/* Detached spawns only: nothing but the bound stops the loop (an
	 * inline join whose child waits lets the worker run the rest). */
	long n1 = 2 * BACKLOG_AT + 1000;
	long most = backlog_spawn(b, 0, n1, false);
	watchdog_note("backlog: %u workers, %ld detached, at most %ld unstarted", nworkers, n1,
		      most);
	CHECK(most <= backlog_bound(nworkers));
	if (nworkers == 1)
		CHECK(most >= BACKLOG_AT); /* the loop did outrun the worker */

	/* Mixed with inline joins and cancellations. */
	long n = n1 + test_iters_min(BACKLOG_SPAWNS, 3 * BACKLOG_AT);
	most = backlog_spawn(b, n1, n - n1, true);
	watchdog_note("backlog: %u workers, %ld spawned, at most %ld unstarted", nworkers, n,
		      most);
	CHECK(most <= backlog_bound(nworkers));

	/* The same from a child run inline by its joiner. */
	wf_task *k = wf_spawn(backlog_inline_spawner, (void *)(uintptr_t)n);
	void *res = NULL;
	CHECK(k != NULL);
	CHECK_RC(wf_join(k, &res), 0);
	CHECK((long)(uintptr_t)res <= backlog_bound(nworkers));
	long total = n + BACKLOG_AT + 2000;
	pthread_join(th, NULL);
	backlog_settle(b, total);
	CHECK_RC(wf_event_free(b->ev), 0);
	return NULL;
}

Test(races, a_spawn_loop_keeps_a_bounded_backlog_and_loses_no_task, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "backlog");
	for (size_t i = 0; i < NHEAVY; i++)
		run_weft(heavy_counts[i], backlog_main, (void *)(uintptr_t)heavy_counts[i]);
	watchdog_stop();
}

static void *backlog_canceller(void *arg)
{
	backlog *b = arg;
	CHECK_RC(wf_cancel(b->root), 0);
	__atomic_store_n(&b->canceller_ran, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *backlog_cancelled_main(void *arg)
{
	backlog *b = &backlog_ctx;
	*b = (backlog){0};
	b->root = wf_current();
	if (!CHECK_RC(wf_event_new(&b->ev), 0))
		return NULL;
	CHECK_RC(wf_event_set(b->ev), 0);
	__atomic_store_n(&b->ev_set, 1, __ATOMIC_RELEASE);
	/* One worker: the canceller runs only when this task lets others
	 * run, and the oldest task runs last. */
	wf_task *c = wf_spawn(backlog_canceller, b);
	CHECK(c != NULL);
	long n = 2 * BACKLOG_AT;
	/* Detached only: a cancellation that came during an inline join
	 * would go to the child joined (as in asyncio), not stay here. */
	backlog_spawn(b, 0, n, false); /* every spawn succeeds: CHECKs inside */
	CHECK(__atomic_load_n(&b->canceller_ran, __ATOMIC_ACQUIRE));
	CHECK_EQ(wf_cancelling(), 0); /* pending, not delivered */
	CHECK_RC(wf_sleep(1), WF_ECANCELED);
	CHECK_EQ(wf_cancelling(), 1);
	CHECK_EQ(wf_uncancel(), 0);
	CHECK_RC(wf_join(c, NULL), 0);
	backlog_settle(b, n);
	CHECK_RC(wf_event_free(b->ev), 0);
	return NULL;
}

Test(races, a_cancellation_while_a_spawn_lets_others_run_is_kept, .timeout = TEST_LIMIT_S)
{
	watchdog_start(WATCHDOG_S, "backlog cancel");
	run_weft(1, backlog_cancelled_main, NULL);
	watchdog_stop();
}
