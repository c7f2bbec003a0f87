/*
 * wf_rwlock: error codes, readers share and writers exclude, a writer is
 * not starved by a stream of readers, FIFO service across both kinds, a
 * writer that gives up lets the readers behind it in, and a stress model
 * (many workers, plain threads, random timeouts and cancellations) that
 * checks the reader/writer invariant on every entry.
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
	wf_rwlock *rw;
	CHECK_RC(wf_rwlock_new(NULL), WF_EINVAL);
	CHECK_RC(wf_rwlock_rdlock(NULL, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_rwlock_wrlock(NULL, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_rwlock_try_rdlock(NULL), WF_EINVAL);
	CHECK_RC(wf_rwlock_try_wrlock(NULL), WF_EINVAL);
	CHECK_RC(wf_rwlock_rdunlock(NULL), WF_EINVAL);
	CHECK_RC(wf_rwlock_wrunlock(NULL), WF_EINVAL);
	CHECK_RC(wf_rwlock_free(NULL), WF_EINVAL);

	CHECK_RC(wf_rwlock_new(&rw), 0);
	CHECK_RC(wf_rwlock_rdunlock(rw), WF_EOVERFLOW);
	CHECK_RC(wf_rwlock_wrunlock(rw), WF_EOVERFLOW);
	CHECK_RC(wf_rwlock_rdlock(rw, WF_FOREVER), 0);
	CHECK_RC(wf_rwlock_try_rdlock(rw), 0);
	CHECK_RC(wf_rwlock_try_wrlock(rw), WF_EBUSY);
	CHECK_RC(wf_rwlock_wrlock(rw, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_rwlock_wrlock(rw, 2), WF_ETIMEDOUT);
	CHECK_RC(wf_rwlock_wrunlock(rw), WF_EOVERFLOW);
	CHECK_RC(wf_rwlock_rdunlock(rw), 0);
	CHECK_RC(wf_rwlock_rdunlock(rw), 0);
	CHECK_RC(wf_rwlock_rdunlock(rw), WF_EOVERFLOW);
	CHECK_RC(wf_rwlock_wrlock(rw, WF_FOREVER), 0);
	CHECK_RC(wf_rwlock_try_rdlock(rw), WF_EBUSY);
	CHECK_RC(wf_rwlock_try_wrlock(rw), WF_EBUSY);
	CHECK_RC(wf_rwlock_rdlock(rw, 1), WF_ETIMEDOUT);
	CHECK_RC(wf_rwlock_rdunlock(rw), WF_EOVERFLOW);
	CHECK_RC(wf_rwlock_wrunlock(rw), 0);
	CHECK_RC(wf_rwlock_wrunlock(rw), WF_EOVERFLOW);
	CHECK_RC(wf_rwlock_free(rw), 0);
	return NULL;
}

Test(sync_rwlock, bad_input_and_basics)
{
	run_weft(2, bad_input_main, NULL);
}

/* ---- order ------------------------------------------------------------ */

struct order {
	wf_rwlock *rw;
	char log[32];
	int n; /* atomic */
};

struct who {
	struct order *o;
	char name; /* 'R'/'W' + position */
	bool write;
	uint64_t timeout;
};

static void *enter_leave(void *arg)
{
	struct who *w = arg;
	int rc = w->write ? wf_rwlock_wrlock(w->o->rw, w->timeout)
			  : wf_rwlock_rdlock(w->o->rw, w->timeout);
	if (rc != 0)
		return (void *)(intptr_t)rc;
	w->o->log[__atomic_fetch_add(&w->o->n, 1, __ATOMIC_RELAXED)] = w->name;
	/* Hold it until main lets go of everyone: yield once. */
	wf_yield();
	CHECK_RC(w->write ? wf_rwlock_wrunlock(w->o->rw) : wf_rwlock_rdunlock(w->o->rw), 0);
	return NULL;
}

/* One worker. A reader holds the lock; queued behind it: writer a, readers
 * b c, writer d (times out), reader e, writer f. A new reader arriving then
 * (g) must not get in before a (no writer starvation). Expected entry
 * order: a, then b, c and e together (d gave up), then f, then g. */
static void *order_main(void *arg)
{
	struct order o = {.n = 0};
	struct who ws[] = {
		{&o, 'a', true, WF_FOREVER},  {&o, 'b', false, WF_FOREVER},
		{&o, 'c', false, WF_FOREVER}, {&o, 'd', true, 5},
		{&o, 'e', false, WF_FOREVER}, {&o, 'f', true, WF_FOREVER},
	};
	enum { N = sizeof(ws) / sizeof(ws[0]) };
	wf_task *ts[N];
	CHECK_RC(wf_rwlock_new(&o.rw), 0);
	CHECK_RC(wf_rwlock_rdlock(o.rw, WF_FOREVER), 0);
	for (int i = 0; i < N; i++) {
		ts[i] = wf_spawn(enter_leave, &ws[i]);
		CHECK_RC(wf_yield(), 0);
	}
	CHECK_RC(wf_rwlock_try_rdlock(o.rw), WF_EBUSY);
	struct who g = {&o, 'g', false, WF_FOREVER};
	wf_task *tg = wf_spawn(enter_leave, &g);
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_sleep(20), 0); /* d's deadline passes while a waits */
	CHECK_RC(wf_rwlock_free(o.rw), WF_EBUSY);
	CHECK_RC(wf_rwlock_rdunlock(o.rw), 0);
	for (int i = 0; i < N; i++) {
		void *res;
		CHECK_RC(wf_join(ts[i], &res), 0);
		CHECK_RC((int)(intptr_t)res, i == 3 ? WF_ETIMEDOUT : 0);
	}
	CHECK_RC(wf_join(tg, NULL), 0);
	o.log[o.n] = '\0';
	/* b, c and e enter together (d gave up), in any order. */
	char batch[4] = {0};
	if (CHECK_EQ(o.n, 6)) {
		memcpy(batch, o.log + 1, 3);
		for (int i = 0; i < 3; i++) /* sort three letters */
			for (int j = i + 1; j < 3; j++)
				if (batch[j] < batch[i]) {
					char c = batch[i];
					batch[i] = batch[j];
					batch[j] = c;
				}
	}
	if (!CHECK(o.log[0] == 'a' && strcmp(batch, "bce") == 0 && o.log[4] == 'f' &&
		   o.log[5] == 'g'))
		fprintf(stderr, "entry order: %s\n", o.log);
	CHECK_RC(wf_rwlock_free(o.rw), 0);
	return NULL;
}

Test(sync_rwlock, fifo_and_writers_not_starved)
{
	run_weft(1, order_main, NULL);
}

/* A stream of readers that overlap each other forever would starve a
 * writer under a reader-preferring lock. Here the writer gets in, and the
 * readers stop once it has. */
struct stream {
	wf_rwlock *rw;
	int writer_done; /* atomic */
	long reads;      /* atomic */
};

static void *stream_reader(void *arg)
{
	struct stream *s = arg;
	while (!__atomic_load_n(&s->writer_done, __ATOMIC_ACQUIRE)) {
		if (!CHECK_RC(wf_rwlock_rdlock(s->rw, WF_FOREVER), 0))
			return NULL;
		__atomic_fetch_add(&s->reads, 1, __ATOMIC_RELAXED);
		wf_yield();
		CHECK_RC(wf_rwlock_rdunlock(s->rw), 0);
		if (__atomic_load_n(&s->reads, __ATOMIC_RELAXED) > 10000000)
			break;
	}
	return NULL;
}

static void *stream_main(void *arg)
{
	struct stream s = {0};
	wf_task *ts[6];
	CHECK_RC(wf_rwlock_new(&s.rw), 0);
	for (int i = 0; i < 6; i++)
		ts[i] = wf_spawn(stream_reader, &s);
	CHECK_RC(wf_sleep(2), 0);
	CHECK_RC(wf_rwlock_wrlock(s.rw, WF_FOREVER), 0);
	__atomic_store_n(&s.writer_done, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_rwlock_wrunlock(s.rw), 0);
	for (int i = 0; i < 6; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	CHECK(s.reads > 0 && s.reads <= 10000000);
	CHECK_RC(wf_rwlock_free(s.rw), 0);
	return NULL;
}

Test(sync_rwlock, a_writer_gets_in_past_a_stream_of_readers)
{
	run_weft(2, stream_main, NULL);
	run_weft(4, stream_main, NULL);
}

/* ---- stress ----------------------------------------------------------- */

struct model {
	wf_rwlock *rw;
	int readers; /* atomic */
	int writers; /* atomic */
	long data;   /* plain: written by writers only, under the lock */
	long writes; /* atomic */
	long tries, entered, gave_up; /* atomic */
	int stop;    /* atomic */
	wf_task *tasks[16];
	size_t ntasks;
};

static void model_run(struct model *m, uint64_t seed, int iters)
{
	for (int i = 0; i < iters && !check_any_failed(); i++) {
		uint32_t r = rng_next(&seed);
		bool write = r % 4 == 0;
		uint64_t t = (r >> 8) % 2 ? WF_FOREVER : (r >> 9) % 3;
		__atomic_fetch_add(&m->tries, 1, __ATOMIC_RELAXED);
		int rc = write ? wf_rwlock_wrlock(m->rw, t) : wf_rwlock_rdlock(m->rw, t);
		if (rc == WF_ETIMEDOUT || rc == WF_ECANCELED) {
			if (rc == WF_ECANCELED)
				wf_uncancel();
			__atomic_fetch_add(&m->gave_up, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (!CHECK_RC(rc, 0))
			return;
		__atomic_fetch_add(&m->entered, 1, __ATOMIC_RELAXED);
		if (write) {
			if (__atomic_fetch_add(&m->writers, 1, __ATOMIC_RELAXED) != 0 ||
			    __atomic_load_n(&m->readers, __ATOMIC_RELAXED) != 0)
				check_fail(__FILE__, __LINE__, "writer not alone");
			m->data++;
			__atomic_fetch_add(&m->writes, 1, __ATOMIC_RELAXED);
		} else {
			__atomic_fetch_add(&m->readers, 1, __ATOMIC_RELAXED);
			if (__atomic_load_n(&m->writers, __ATOMIC_RELAXED) != 0)
				check_fail(__FILE__, __LINE__, "reader with a writer");
			(void)*(volatile long *)&m->data;
		}
		rc = 0;
		if (r % 89 == 0)
			rc = wf_sleep(1);
		else if (r % 6 == 0 && wf_current() != NULL)
			rc = wf_yield();
		else
			spin(r % 64);
		if (rc == WF_ECANCELED)
			wf_uncancel();
		if (write) {
			__atomic_fetch_sub(&m->writers, 1, __ATOMIC_RELAXED);
			CHECK_RC(wf_rwlock_wrunlock(m->rw), 0);
		} else {
			__atomic_fetch_sub(&m->readers, 1, __ATOMIC_RELAXED);
			CHECK_RC(wf_rwlock_rdunlock(m->rw), 0);
		}
	}
}

static void *model_task(void *arg)
{
	model_run(arg, (uintptr_t)wf_current() | 1, 300);
	return NULL;
}

static void *model_thread(void *arg)
{
	model_run(arg, (uintptr_t)&arg | 1, 300);
	return NULL;
}

static void *chaos_task(void *arg)
{
	struct model *m = arg;
	uint64_t seed = 11;
	for (unsigned i = 0; !__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE); i++) {
		wf_cancel(m->tasks[rng_next(&seed) % m->ntasks]);
		if (i % 8 == 0)
			wf_sleep(1);
		else
			wf_yield();
	}
	return NULL;
}

static void *model_main(void *arg)
{
	struct model m = {.ntasks = 12};
	pthread_t th[2];
	CHECK_RC(wf_rwlock_new(&m.rw), 0);
	for (size_t i = 0; i < m.ntasks; i++)
		m.tasks[i] = wf_spawn(model_task, &m);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, model_thread, &m), 0);
	wf_sleep(1);
	wf_task *chaos = wf_spawn(chaos_task, &m);
	for (size_t i = 0; i < m.ntasks; i++)
		while (!wf_task_done(m.tasks[i]))
			wf_sleep(1);
	__atomic_store_n(&m.stop, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_join(chaos, NULL), 0);
	for (size_t i = 0; i < m.ntasks; i++) {
		int rc = wf_join(m.tasks[i], NULL);
		CHECK(rc == 0 || rc == WF_ECANCELED);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(m.entered + m.gave_up, m.tries);
	CHECK_EQ(m.data, m.writes);
	CHECK(m.entered > 0);
	/* Nothing is held: a writer gets in at once. */
	CHECK_RC(wf_rwlock_try_wrlock(m.rw), 0);
	CHECK_RC(wf_rwlock_wrunlock(m.rw), 0);
	CHECK_RC(wf_rwlock_free(m.rw), 0);
	return NULL;
}

Test(sync_rwlock, stress_readers_and_writers_with_timeouts_and_cancels)
{
	run_weft(2, model_main, NULL);
	run_weft(4, model_main, NULL);
	run_weft(8, model_main, NULL);
}

/* From a plain thread: a reader excludes a writer; bad input. */
Test(sync_rwlock, plain_thread_and_bad_input)
{
	wf_rwlock *rw = NULL;
	cr_assert_eq(wf_rwlock_new(&rw), 0);
	cr_assert_eq(wf_rwlock_rdlock(rw, 0), 0);
	cr_assert_eq(wf_rwlock_try_wrlock(rw), WF_EBUSY);
	cr_assert_eq(wf_rwlock_rdunlock(rw), 0);
	cr_assert_eq(wf_rwlock_try_wrlock(rw), 0);
	cr_assert_eq(wf_rwlock_wrunlock(rw), 0);
	cr_assert_eq(wf_rwlock_rdlock(NULL, 0), WF_EINVAL);
	cr_assert_eq(wf_rwlock_free(rw), 0);
}
