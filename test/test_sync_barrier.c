/*
 * wf_barrier: error codes, arrival indices (each 0..parties-1 once per
 * generation), many generations that never mix, abort and reset (waiters
 * get WF_EBROKEN; reset makes it usable again), a waiter that times out or
 * is cancelled breaks the barrier, and plain threads as parties.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

static void *bad_input_main(void *arg)
{
	wf_barrier *b;
	CHECK_RC(wf_barrier_new(2, NULL), WF_EINVAL);
	CHECK_RC(wf_barrier_new(0, &b), WF_EINVAL);
	CHECK_RC(wf_barrier_new(0x80000000u, &b), WF_EINVAL);
	CHECK_RC(wf_barrier_wait(NULL, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_barrier_abort(NULL), WF_EINVAL);
	CHECK_RC(wf_barrier_reset(NULL), WF_EINVAL);
	CHECK_RC(wf_barrier_free(NULL), WF_EINVAL);
	CHECK_EQ(wf_barrier_parties(NULL), 0);
	CHECK_EQ(wf_barrier_n_waiting(NULL), 0);
	CHECK(!wf_barrier_broken(NULL));

	/* One party: every wait passes at once with index 0. */
	CHECK_RC(wf_barrier_new(1, &b), 0);
	CHECK_EQ(wf_barrier_parties(b), 1);
	for (int i = 0; i < 3; i++)
		CHECK_RC(wf_barrier_wait(b, 0), 0);
	CHECK_RC(wf_barrier_free(b), 0);

	/* Two parties, one alone: a timeout breaks the barrier. */
	CHECK_RC(wf_barrier_new(2, &b), 0);
	CHECK_RC(wf_barrier_wait(b, 2), WF_ETIMEDOUT);
	CHECK(wf_barrier_broken(b));
	CHECK_RC(wf_barrier_wait(b, WF_FOREVER), WF_EBROKEN);
	CHECK_RC(wf_barrier_reset(b), 0);
	CHECK(!wf_barrier_broken(b));
	CHECK_RC(wf_barrier_wait(b, 0), WF_ETIMEDOUT);
	CHECK(wf_barrier_broken(b));
	CHECK_RC(wf_barrier_reset(b), 0);
	CHECK_RC(wf_barrier_abort(b), 0);
	CHECK(wf_barrier_broken(b));
	CHECK_RC(wf_barrier_wait(b, WF_FOREVER), WF_EBROKEN);
	CHECK_RC(wf_barrier_free(b), 0);
	return NULL;
}

Test(sync_barrier, bad_input_and_basics)
{
	run_weft(2, bad_input_main, NULL);
}

/* ---- generations -------------------------------------------------------- */

#define MAXP 16
#define GENS 150

/* Each party, in each generation g, writes its index into slot[g]; the
 * indices of a generation must be a permutation of 0..parties-1, and a
 * party must never see another party's generation counter differ from its
 * own by more than one (it would mean generations mixed). */
struct gens {
	wf_barrier *b;
	unsigned parties;
	int seen[GENS][MAXP]; /* atomic */
	int gen_of[MAXP];     /* atomic: the generation each party is in */
	int mixed;            /* atomic */
};

struct party {
	struct gens *g;
	int id;
};

static void party_run(struct party *p)
{
	struct gens *g = p->g;
	uint64_t seed = (uint64_t)p->id * 77 + 5;
	for (int gen = 0; gen < GENS && !check_any_failed(); gen++) {
		__atomic_store_n(&g->gen_of[p->id], gen, __ATOMIC_RELEASE);
		if (rng_next(&seed) % 4 == 0 && wf_current() != NULL)
			wf_yield();
		int idx = wf_barrier_wait(g->b, WF_FOREVER);
		if (!CHECK(idx >= 0 && (unsigned)idx < g->parties))
			return;
		__atomic_fetch_add(&g->seen[gen][idx], 1, __ATOMIC_RELAXED);
		/* Everyone has arrived at gen: nobody can still be below it. */
		for (unsigned k = 0; k < g->parties; k++) {
			int other = __atomic_load_n(&g->gen_of[k], __ATOMIC_ACQUIRE);
			if (other < gen || other > gen + 1)
				__atomic_store_n(&g->mixed, 1, __ATOMIC_RELAXED);
		}
	}
}

static void *party_task(void *arg)
{
	party_run(arg);
	return NULL;
}

static void *party_thread(void *arg)
{
	party_run(arg);
	return NULL;
}

static void *gens_main(void *arg)
{
	static struct gens g;
	unsigned nthreads = 2;
	memset(&g, 0, sizeof(g));
	g.parties = (unsigned)(uintptr_t)arg;
	struct party ps[MAXP];
	wf_task *ts[MAXP];
	pthread_t th[2];
	CHECK_RC(wf_barrier_new(g.parties, &g.b), 0);
	for (unsigned i = 0; i < g.parties; i++) {
		ps[i] = (struct party){&g, (int)i};
		if (i < nthreads)
			CHECK_EQ(pthread_create(&th[i], NULL, party_thread, &ps[i]), 0);
		else
			ts[i] = wf_spawn(party_task, &ps[i]);
	}
	for (unsigned i = nthreads; i < g.parties; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(g.mixed, 0);
	for (int gen = 0; gen < GENS; gen++)
		for (unsigned i = 0; i < g.parties; i++)
			if (!CHECK_EQ(g.seen[gen][i], 1))
				return NULL;
	CHECK_EQ(wf_barrier_n_waiting(g.b), 0);
	CHECK(!wf_barrier_broken(g.b));
	CHECK_RC(wf_barrier_free(g.b), 0);
	return NULL;
}

Test(sync_barrier, indices_and_generations_never_mix)
{
	run_weft(2, gens_main, (void *)(uintptr_t)5);
	run_weft(4, gens_main, (void *)(uintptr_t)8);
	run_weft(8, gens_main, (void *)(uintptr_t)16);
}

/* ---- abort, reset, quitters --------------------------------------------- */

static void *wait_forever(void *arg)
{
	return (void *)(intptr_t)wf_barrier_wait(arg, WF_FOREVER);
}

/* Multi-worker runs: the spawned waiters arrive in their own time. */
static void await_arrivals(wf_barrier *b, unsigned n)
{
	while (wf_barrier_n_waiting(b) < n)
		wf_yield();
}

static int join_rc(wf_task *t)
{
	void *res = NULL;
	int rc = wf_join(t, &res);
	return rc != 0 ? rc : (int)(intptr_t)res;
}

static void *broken_main(void *arg)
{
	enum { P = 4 };
	wf_barrier *b;
	wf_task *ts[P];
	CHECK_RC(wf_barrier_new(P, &b), 0);

	/* abort: the waiters and later arrivals get WF_EBROKEN. */
	for (int i = 0; i < P - 1; i++)
		ts[i] = wf_spawn(wait_forever, b);
	await_arrivals(b, P - 1);
	CHECK_EQ(wf_barrier_n_waiting(b), P - 1);
	CHECK_RC(wf_barrier_free(b), WF_EBUSY);
	CHECK_RC(wf_barrier_abort(b), 0);
	for (int i = 0; i < P - 1; i++)
		CHECK_RC(join_rc(ts[i]), WF_EBROKEN);
	CHECK_RC(wf_barrier_wait(b, WF_FOREVER), WF_EBROKEN);

	/* reset: the waiters get WF_EBROKEN, then it works again. */
	CHECK_RC(wf_barrier_reset(b), 0);
	for (int i = 0; i < 2; i++)
		ts[i] = wf_spawn(wait_forever, b);
	await_arrivals(b, 2);
	CHECK_RC(wf_barrier_reset(b), 0);
	for (int i = 0; i < 2; i++)
		CHECK_RC(join_rc(ts[i]), WF_EBROKEN);
	CHECK(!wf_barrier_broken(b));
	CHECK_EQ(wf_barrier_n_waiting(b), 0);
	for (int i = 0; i < P - 1; i++)
		ts[i] = wf_spawn(wait_forever, b);
	await_arrivals(b, P - 1);
	CHECK_RC(wf_barrier_wait(b, WF_FOREVER), P - 1);
	int sum = 0;
	for (int i = 0; i < P - 1; i++)
		sum += join_rc(ts[i]);
	CHECK_EQ(sum, 0 + 1 + 2);

	/* A cancelled waiter breaks it for the others. */
	for (int i = 0; i < P - 1; i++)
		ts[i] = wf_spawn(wait_forever, b);
	await_arrivals(b, P - 1);
	CHECK_RC(wf_cancel(ts[1]), 0);
	CHECK_RC(join_rc(ts[1]), WF_ECANCELED);
	CHECK_RC(join_rc(ts[0]), WF_EBROKEN);
	CHECK_RC(join_rc(ts[2]), WF_EBROKEN);
	CHECK(wf_barrier_broken(b));
	CHECK_RC(wf_barrier_reset(b), 0);
	CHECK_RC(wf_barrier_free(b), 0);
	return NULL;
}

Test(sync_barrier, abort_reset_and_quitters_break_it)
{
	run_weft(1, broken_main, NULL);
	run_weft(3, broken_main, NULL);
}

/* ---- stress: timeouts and cancels racing with the trip ----------------- */

/* Rounds of P parties with short random deadlines, one of them possibly
 * cancelled. In every round either all P passed (distinct indices, nobody
 * broken) or the barrier broke: then no party got an index of a later
 * generation, and every party returned (nobody hangs). After each round the
 * barrier is reset. */
struct round {
	wf_barrier *b;
	int started[8];  /* atomic: a task cancelled before it starts never
			    runs, so only started ones are cancelled */
	int passed[8];   /* atomic: count per index */
	int broken;      /* atomic */
	int gave_up;     /* atomic */
};

struct round_arg {
	struct round *r;
	int id;
	uint64_t seed; /* from main's generator: task addresses repeat */
};

static void *round_party(void *arg)
{
	struct round *r = ((struct round_arg *)arg)->r;
	__atomic_store_n(&r->started[((struct round_arg *)arg)->id], 1, __ATOMIC_RELEASE);
	uint64_t seed = ((struct round_arg *)arg)->seed;
	uint64_t t = rng_next(&seed) % 3 == 0 ? rng_next(&seed) % 3 : WF_FOREVER;
	int rc = wf_barrier_wait(r->b, t);
	if (rc >= 0)
		__atomic_fetch_add(&r->passed[rc], 1, __ATOMIC_RELAXED);
	else if (rc == WF_EBROKEN)
		__atomic_fetch_add(&r->broken, 1, __ATOMIC_RELAXED);
	else if (CHECK(rc == WF_ETIMEDOUT || rc == WF_ECANCELED))
		__atomic_fetch_add(&r->gave_up, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *round_main(void *arg)
{
	enum { P = 6, ROUNDS = 150 };
	wf_barrier *b;
	uint64_t seed = 3;
	int full = 0;
	CHECK_RC(wf_barrier_new(P, &b), 0);
	for (int k = 0; k < ROUNDS && !check_any_failed(); k++) {
		struct round r = {.b = b};
		struct round_arg args[P];
		wf_task *ts[P];
		for (int i = 0; i < P; i++) {
			args[i] = (struct round_arg){&r, i, ((uint64_t)rng_next(&seed) << 1) | 1};
			ts[i] = wf_spawn(round_party, &args[i]);
		}
		if (rng_next(&seed) % 2) {
			wf_yield();
			int victim = rng_next(&seed) % P;
			if (__atomic_load_n(&r.started[victim], __ATOMIC_ACQUIRE))
				wf_cancel(ts[victim]);
		}
		for (int i = 0; i < P; i++) {
			int rc = wf_join(ts[i], NULL);
			CHECK(rc == 0 || rc == WF_ECANCELED);
		}
		int passed = 0;
		for (int i = 0; i < P; i++) {
			CHECK(r.passed[i] <= 1);
			passed += r.passed[i];
		}
		CHECK_EQ(passed + r.broken + r.gave_up, P);
		if (passed == P)
			full++;
		/* A pass happens only for a whole generation: indices
		 * 0..passed-1... unless a quitter raced with the trip, when it
		 * reports its own code and the others pass. */
		if (passed > 0 && passed < P)
			CHECK_EQ(passed + r.gave_up, P);
		CHECK_RC(wf_barrier_reset(b), 0);
	}
	CHECK(full > 0);
	CHECK_RC(wf_barrier_free(b), 0);
	return NULL;
}

Test(sync_barrier, stress_quitters_racing_with_the_trip)
{
	run_weft(2, round_main, NULL);
	run_weft(4, round_main, NULL);
}

/* Bad input from a plain thread. */
Test(sync_barrier, bad_input_from_a_thread)
{
	wf_barrier *b = NULL;
	cr_assert_eq(wf_barrier_new(0, &b), WF_EINVAL);
	cr_assert_eq(wf_barrier_new(2, NULL), WF_EINVAL);
	cr_assert_eq(wf_barrier_wait(NULL, 0), WF_EINVAL);
}
