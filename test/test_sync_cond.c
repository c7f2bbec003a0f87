/*
 * wf_cond: error codes, notify(n) counts, the lock held on every return of
 * wait (notified, timed out, cancelled), a notification received by a task
 * cancelled while it took the lock back is passed on, wait_for with and
 * without a deadline, and a bounded-buffer model (many producers and
 * consumers over a condition, random timeouts and cancellations) in which
 * no item is lost or taken twice.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "rt_check.h"
#include "weft.h"

static bool always_false(void *arg)
{
	return false;
}

static void *bad_input_main(void *arg)
{
	wf_cond *c;
	wf_lock *own;
	CHECK_RC(wf_cond_new(NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_cond_free(NULL), WF_EINVAL);
	CHECK_RC(wf_cond_wait(NULL, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_cond_wait_for(NULL, always_false, NULL, 0), WF_EINVAL);
	CHECK_RC(wf_cond_notify(NULL, 1), WF_EINVAL);
	CHECK_RC(wf_cond_notify_all(NULL), WF_EINVAL);
	CHECK(wf_cond_lock(NULL) == NULL);

	/* A condition with its own lock. */
	CHECK_RC(wf_cond_new(NULL, &c), 0);
	own = wf_cond_lock(c);
	CHECK(own != NULL);
	/* Lock not held: refused, nothing done. */
	CHECK_RC(wf_cond_wait(c, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_cond_notify(c, 1), WF_EINVAL);
	CHECK_RC(wf_cond_notify_all(c), WF_EINVAL);
	CHECK_RC(wf_lock_acquire(own, WF_FOREVER), 0);
	CHECK_RC(wf_cond_wait_for(c, NULL, NULL, 0), WF_EINVAL);
	CHECK_RC(wf_cond_notify(c, 3), 0); /* nobody waits */
	CHECK_RC(wf_cond_notify_all(c), 0);
	CHECK_RC(wf_cond_wait(c, 0), WF_ETIMEDOUT);
	CHECK(wf_lock_locked(own));
	CHECK_RC(wf_cond_wait(c, 2), WF_ETIMEDOUT);
	CHECK(wf_lock_locked(own));
	CHECK_RC(wf_cond_wait_for(c, always_false, NULL, 3), WF_ETIMEDOUT);
	CHECK(wf_lock_locked(own));
	CHECK_RC(wf_lock_release(own), 0);
	CHECK_RC(wf_cond_free(c), 0);

	/* A condition on the caller's lock leaves the lock alone. */
	wf_lock *l;
	CHECK_RC(wf_lock_new(&l), 0);
	CHECK_RC(wf_cond_new(l, &c), 0);
	CHECK(wf_cond_lock(c) == l);
	CHECK_RC(wf_cond_free(c), 0);
	CHECK_RC(wf_lock_acquire(l, 0), 0);
	CHECK_RC(wf_lock_release(l), 0);
	CHECK_RC(wf_lock_free(l), 0);
	return NULL;
}

Test(sync_cond, bad_input_and_basics)
{
	run_weft(2, bad_input_main, NULL);
}

/* ---- notify counts, cancellation, the lock on return ------------------- */

struct waiters {
	wf_cond *c;
	int woken;  /* guarded by the lock */
	int held_on_return_bad; /* atomic */
};

static void *cond_waiter(void *arg)
{
	struct waiters *s = arg;
	wf_lock *l = wf_cond_lock(s->c);
	CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
	int rc = wf_cond_wait(s->c, WF_FOREVER);
	if (!wf_lock_locked(l))
		__atomic_store_n(&s->held_on_return_bad, 1, __ATOMIC_RELAXED);
	if (rc == 0)
		s->woken++;
	CHECK_RC(wf_lock_release(l), 0);
	return (void *)(intptr_t)rc;
}

/* One worker, so every waiter is queued before main goes on. */
static void *notify_main(void *arg)
{
	enum { N = 10 };
	struct waiters s = {0};
	wf_task *ts[N];
	CHECK_RC(wf_cond_new(NULL, &s.c), 0);
	wf_lock *l = wf_cond_lock(s.c);
	for (int i = 0; i < N; i++) {
		ts[i] = wf_spawn(cond_waiter, &s);
		CHECK_RC(wf_yield(), 0);
	}
	CHECK_RC(wf_cond_free(s.c), WF_EBUSY);
	/* Waiter 0 is cancelled while queued: notify skips it. */
	CHECK_RC(wf_cancel(ts[0]), 0);
	CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
	CHECK_RC(wf_cond_notify(s.c, 3), 3);
	CHECK_RC(wf_lock_release(l), 0);
	for (int i = 0; i < 4; i++) {
		void *res;
		CHECK_RC(wf_join(ts[i], &res), i == 0 ? WF_ECANCELED : 0);
		if (i != 0)
			CHECK_RC((int)(intptr_t)res, 0);
	}
	CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
	CHECK_EQ(s.woken, 3);
	CHECK_RC(wf_cond_notify_all(s.c), N - 4);
	CHECK_RC(wf_lock_release(l), 0);
	for (int i = 4; i < N; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	CHECK_EQ(s.woken, N - 1);
	CHECK_EQ(s.held_on_return_bad, 0);
	CHECK_RC(wf_cond_free(s.c), 0);
	return NULL;
}

Test(sync_cond, notify_counts_and_skips_the_cancelled)
{
	run_weft(1, notify_main, NULL);
}

/* A waiter is notified, but before it gets the lock back it is cancelled:
 * it still returns holding the lock (WF_ECANCELED), and the notification
 * goes to the other waiter, which would otherwise wait for ever. */
static void *pass_on_main(void *arg)
{
	struct waiters s = {0};
	CHECK_RC(wf_cond_new(NULL, &s.c), 0);
	wf_lock *l = wf_cond_lock(s.c);
	wf_task *a = wf_spawn(cond_waiter, &s);
	CHECK_RC(wf_yield(), 0);
	wf_task *b = wf_spawn(cond_waiter, &s);
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
	CHECK_RC(wf_cond_notify(s.c, 1), 1); /* a is notified... */
	CHECK_RC(wf_yield(), 0);             /* ...and queues for the lock */
	CHECK_RC(wf_cancel(a), 0);           /* then is cancelled there */
	CHECK_RC(wf_lock_release(l), 0);
	void *res;
	CHECK_RC(wf_join(a, &res), WF_ECANCELED);
	CHECK_RC(wf_join(b, &res), 0);
	CHECK_RC((int)(intptr_t)res, 0);
	CHECK_EQ(s.woken, 1);
	CHECK_EQ(s.held_on_return_bad, 0);
	CHECK_RC(wf_cond_free(s.c), 0);
	return NULL;
}

Test(sync_cond, a_notification_lost_to_cancellation_is_passed_on)
{
	run_weft(1, pass_on_main, NULL);
}

/* ---- wait_for ----------------------------------------------------------- */

struct counter {
	wf_cond *c;
	int value; /* guarded by the lock */
	int target;
};

static bool reached(void *arg)
{
	struct counter *k = arg;
	return k->value >= k->target;
}

static void *bump_thread(void *arg)
{
	struct counter *k = arg;
	wf_lock *l = wf_cond_lock(k->c);
	for (int i = 0; i < 100; i++) {
		CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
		k->value++;
		CHECK(wf_cond_notify_all(k->c) >= 0);
		CHECK_RC(wf_lock_release(l), 0);
		if (i % 10 == 0)
			usleep(100);
	}
	return NULL;
}

static void *wait_for_main(void *arg)
{
	struct counter k = {.target = 100};
	pthread_t th;
	CHECK_RC(wf_cond_new(NULL, &k.c), 0);
	wf_lock *l = wf_cond_lock(k.c);
	CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
	k.target = 1000;
	CHECK_RC(wf_cond_wait_for(k.c, reached, &k, 0), WF_ETIMEDOUT);
	k.target = 100;
	CHECK_RC(wf_lock_release(l), 0);
	/* Notifications come from a plain thread. */
	CHECK_EQ(pthread_create(&th, NULL, bump_thread, &k), 0);
	CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
	CHECK_RC(wf_cond_wait_for(k.c, reached, &k, WF_FOREVER), 0);
	CHECK_EQ(k.value, 100);
	CHECK_RC(wf_lock_release(l), 0);
	pthread_join(th, NULL);
	CHECK_RC(wf_cond_free(k.c), 0);
	return NULL;
}

Test(sync_cond, wait_for_a_predicate)
{
	run_weft(2, wait_for_main, NULL);
}

/* ---- stress: a bounded buffer on one lock and two conditions ----------- */

#define BUF_CAP 4
#define PER_PRODUCER 1000
#define NPROD 4
#define NCONS 4

struct buffer {
	wf_lock *l;
	wf_cond *not_full, *not_empty;
	int items[BUF_CAP];
	int len;      /* guarded by l */
	int produced; /* guarded by l: producers that finished */
	unsigned char seen[NPROD * PER_PRODUCER]; /* guarded by l */
	int dupes;    /* guarded by l */
	int taken;    /* guarded by l */
	wf_task *tasks[NPROD + NCONS];
	int stop;     /* atomic */
	int started;  /* atomic: producers and consumers that began */
	long gave_up; /* atomic: waits that timed out or were cancelled */
};

static bool has_room(void *arg)
{
	struct buffer *b = arg;
	return b->len < BUF_CAP;
}

static bool has_item_or_end(void *arg)
{
	struct buffer *b = arg;
	return b->len > 0 || b->produced == NPROD;
}

/* Acquire that a cancellation does not stop (the model's tasks handle every
 * cancellation and go on). */
static void lock_hard(wf_lock *l)
{
	int rc;
	while ((rc = wf_lock_acquire(l, WF_FOREVER)) == WF_ECANCELED)
		wf_uncancel();
	CHECK_RC(rc, 0);
}

static void note_gave_up(struct buffer *b, int rc)
{
	if (rc == WF_ECANCELED)
		wf_uncancel();
	else
		CHECK_RC(rc, WF_ETIMEDOUT);
	__atomic_fetch_add(&b->gave_up, 1, __ATOMIC_RELAXED);
}

static void *producer(void *arg)
{
	struct buffer *b = ((void **)arg)[0];
	int id = (int)(intptr_t)((void **)arg)[1];
	__atomic_fetch_add(&b->started, 1, __ATOMIC_RELEASE);
	uint64_t seed = (uint64_t)id * 2654435761u + 1;
	for (int i = 0; i < PER_PRODUCER && !check_any_failed();) {
		lock_hard(b->l);
		uint64_t t = rng_next(&seed) % 4 ? WF_FOREVER : rng_next(&seed) % 2;
		int rc = wf_cond_wait_for(b->not_full, has_room, b, t);
		CHECK(wf_lock_locked(b->l));
		if (rc == 0) {
			b->items[b->len++] = id * PER_PRODUCER + i++;
			CHECK(wf_cond_notify(b->not_empty, 1) >= 0);
		} else {
			note_gave_up(b, rc);
		}
		CHECK_RC(wf_lock_release(b->l), 0);
	}
	lock_hard(b->l);
	if (++b->produced == NPROD)
		CHECK(wf_cond_notify_all(b->not_empty) >= 0);
	CHECK_RC(wf_lock_release(b->l), 0);
	return NULL;
}

static void *consumer(void *arg)
{
	struct buffer *b = arg;
	__atomic_fetch_add(&b->started, 1, __ATOMIC_RELEASE);
	uint64_t seed = (uintptr_t)wf_current() | 1;
	for (;;) {
		lock_hard(b->l);
		uint64_t t = rng_next(&seed) % 4 ? WF_FOREVER : rng_next(&seed) % 2;
		int rc = wf_cond_wait_for(b->not_empty, has_item_or_end, b, t);
		CHECK(wf_lock_locked(b->l));
		if (rc == 0 && b->len == 0) { /* the end */
			CHECK_RC(wf_lock_release(b->l), 0);
			return NULL;
		}
		if (rc == 0) {
			int v = b->items[--b->len];
			if (b->seen[v]++)
				b->dupes++;
			b->taken++;
			CHECK(wf_cond_notify(b->not_full, 1) >= 0);
		} else {
			note_gave_up(b, rc);
		}
		CHECK_RC(wf_lock_release(b->l), 0);
	}
}

static void *buffer_chaos(void *arg)
{
	struct buffer *b = arg;
	uint64_t seed = 7;
	for (unsigned i = 0; !__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE); i++) {
		wf_cancel(b->tasks[rng_next(&seed) % (NPROD + NCONS)]);
		if (i % 4 == 0)
			wf_sleep(1);
		else
			wf_yield();
	}
	return NULL;
}

static void *buffer_main(void *arg)
{
	struct buffer b = {0};
	void *pargs[NPROD][2];
	CHECK_RC(wf_lock_new(&b.l), 0);
	CHECK_RC(wf_cond_new(b.l, &b.not_full), 0);
	CHECK_RC(wf_cond_new(b.l, &b.not_empty), 0);
	for (int i = 0; i < NCONS; i++)
		b.tasks[i] = wf_spawn(consumer, &b);
	for (int i = 0; i < NPROD; i++) {
		pargs[i][0] = &b;
		pargs[i][1] = (void *)(intptr_t)i;
		b.tasks[NCONS + i] = wf_spawn(producer, pargs[i]);
	}
	/* A task cancelled before it starts never runs: a producer that never
	 * ran would never count itself produced, and the consumers would wait
	 * for the end for ever. */
	while (__atomic_load_n(&b.started, __ATOMIC_ACQUIRE) < NPROD + NCONS)
		wf_sleep(1);
	wf_task *chaos = wf_spawn(buffer_chaos, &b);
	for (int i = 0; i < NPROD + NCONS; i++)
		while (!wf_task_done(b.tasks[i]))
			wf_sleep(1);
	__atomic_store_n(&b.stop, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_join(chaos, NULL), 0);
	for (int i = 0; i < NPROD + NCONS; i++) {
		int rc = wf_join(b.tasks[i], NULL);
		CHECK(rc == 0 || rc == WF_ECANCELED);
	}
	CHECK_EQ(b.taken, NPROD * PER_PRODUCER);
	CHECK(b.gave_up > 0);
	CHECK_EQ(b.dupes, 0);
	for (int v = 0; v < NPROD * PER_PRODUCER; v++)
		if (!CHECK_EQ(b.seen[v], 1))
			break;
	CHECK_RC(wf_cond_free(b.not_full), 0);
	CHECK_RC(wf_cond_free(b.not_empty), 0);
	CHECK_RC(wf_lock_free(b.l), 0);
	return NULL;
}

Test(sync_cond, stress_bounded_buffer_with_timeouts_and_cancels)
{
	run_weft(2, buffer_main, NULL);
	run_weft(4, buffer_main, NULL);
	run_weft(8, buffer_main, NULL);
}

/* Bad input from a plain thread. */
Test(sync_cond, bad_input_from_a_thread)
{
	cr_assert_eq(wf_cond_new(NULL, NULL), WF_EINVAL);
	cr_assert_eq(wf_cond_wait(NULL, 0), WF_EINVAL);
	cr_assert_eq(wf_cond_wait_for(NULL, NULL, NULL, 0), WF_EINVAL);
}

/* A condition freed right after notify_all, as a program used to
 * pthread_cond_destroy after a broadcast would do: the free is refused
 * (WF_EBUSY) until every notified waiter holds the lock again, and a new
 * condition made at once (often in the old one's memory, on another lock)
 * is never what a notified waiter takes back: each returns holding its own
 * lock, and releases it. */
#define FREE_WAITERS 4

typedef struct free_round {
	wf_cond *c;
	wf_lock *lock;
	int queued;   /* atomic: waiters about to wait (lock held) */
	int returned; /* atomic */
} free_round;

static void *free_round_waiter(void *arg)
{
	free_round *r = arg;
	CHECK_RC(wf_lock_acquire(r->lock, WF_FOREVER), 0);
	__atomic_add_fetch(&r->queued, 1, __ATOMIC_SEQ_CST);
	int rc = wf_cond_wait(r->c, 5000);
	CHECK(rc == 0 || rc == WF_ETIMEDOUT);
	CHECK(wf_lock_locked(r->lock));
	CHECK_RC(wf_lock_release(r->lock), 0);
	__atomic_add_fetch(&r->returned, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *free_after_notify_main(void *arg)
{
	(void)arg;
	long rounds = test_iters_min(200, 10);
	long refused = 0;
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		free_round r = {0};
		CHECK_RC(wf_lock_new(&r.lock), 0);
		CHECK_RC(wf_cond_new(r.lock, &r.c), 0);
		wf_task *t[FREE_WAITERS];
		for (int k = 0; k < FREE_WAITERS; k++)
			CHECK((t[k] = wf_spawn(free_round_waiter, &r)) != NULL);
		/* Every waiter queued: each counted itself holding the lock,
		 * and released it only by queueing. */
		while (__atomic_load_n(&r.queued, __ATOMIC_SEQ_CST) < FREE_WAITERS)
			CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_lock_acquire(r.lock, WF_FOREVER), 0);
		CHECK_EQ(wf_cond_notify_all(r.c), FREE_WAITERS);
		CHECK_RC(wf_lock_release(r.lock), 0);
		int rc;
		while ((rc = wf_cond_free(r.c)) == WF_EBUSY) {
			refused++;
			CHECK_RC(wf_yield(), 0);
		}
		CHECK_RC(rc, 0);
		/* Likely in the freed condition's memory, with another lock. */
		wf_lock *other;
		wf_cond *next;
		CHECK_RC(wf_lock_new(&other), 0);
		CHECK_RC(wf_cond_new(other, &next), 0);
		for (int k = 0; k < FREE_WAITERS; k++)
			if (t[k] != NULL)
				CHECK_RC(wf_join(t[k], NULL), 0);
		CHECK_EQ(__atomic_load_n(&r.returned, __ATOMIC_SEQ_CST), FREE_WAITERS);
		CHECK(!wf_lock_locked(other));
		CHECK_RC(wf_cond_free(next), 0);
		CHECK_RC(wf_lock_free(other), 0);
		CHECK_RC(wf_lock_free(r.lock), 0);
	}
	cr_log_info("the free was refused %ld times in %ld rounds", refused, rounds);
	return NULL;
}

Test(sync_cond, free_right_after_notify_all_waits_for_the_notified)
{
	run_weft(1, free_after_notify_main, NULL);
	run_weft(2, free_after_notify_main, NULL);
	check_none_failed();
	check_no_leaks();
}
