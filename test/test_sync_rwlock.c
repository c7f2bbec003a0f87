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
#include "stress.h"
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
};

static bool is_write(uint32_t r)
{
	return r % 4 == 0;
}

static int rw_enter(stress *st, uint32_t r, uint64_t timeout_ms)
{
	struct model *m = st->model;
	return is_write(r) ? wf_rwlock_wrlock(m->rw, timeout_ms) : wf_rwlock_rdlock(m->rw, timeout_ms);
}

static void rw_inside(stress *st, uint32_t r)
{
	struct model *m = st->model;
	if (is_write(r)) {
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
}

static void rw_before_leave(stress *st, uint32_t r)
{
	struct model *m = st->model;
	__atomic_fetch_sub(is_write(r) ? &m->writers : &m->readers, 1, __ATOMIC_RELAXED);
}

static int rw_leave(stress *st, uint32_t r)
{
	struct model *m = st->model;
	return is_write(r) ? wf_rwlock_wrunlock(m->rw) : wf_rwlock_rdunlock(m->rw);
}

static const stress_ops rw_ops = {rw_enter, rw_inside, rw_before_leave, rw_leave};

static void *model_main(void *arg)
{
	struct model m = {0};
	stress st = {.ops = &rw_ops, .model = &m, .iters = 300, .ntasks = 12,
		     .sleep_mod = 89, .yield_mod = 6, .spin_max = 64};
	CHECK_RC(wf_rwlock_new(&m.rw), 0);
	stress_run(&st);
	CHECK_EQ(m.data, m.writes);
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
