/*
 * Read-write lock for tasks on many workers and plain threads.
 *
 * State under a spinlock: the number of readers inside, whether a writer
 * is inside, and one FIFO queue of waiting readers and writers (w->data
 * says which). Policy: a newcomer enters at once only if the queue is
 * empty and the lock is compatible; otherwise it queues. So a reader
 * arriving behind a waiting writer waits for it (writers are not starved),
 * and a writer behind waiting readers waits for them (neither are
 * readers). grant() admits from the head while it can: one writer, or a
 * run of readers up to the next writer.
 *
 * Entry is given by the waiter's fire, and counted at fire time: a waiter
 * whose deadline or cancellation won is skipped, its place goes to the next
 * one. A waiter that leaves the queue may unblock those behind it (readers
 * behind a writer that gave up), so leaving runs grant() too.
 */
#include <stdlib.h>

#include "internal.h"

#define RWLOCK_MAGIC 0x77667277u /* "wfrw" */

struct wf_rwlock {
	uint32_t magic;
	size_t readers;
	bool writer;
	wf__spinlock sl;
	wf__waitq q;
};

/* The kinds of waiter, as w->data. */
static const char reader_tag, writer_tag;
#define AS_READER ((void *)&reader_tag)
#define AS_WRITER ((void *)&writer_tag)

static bool rw_ok(const wf_rwlock *rw)
{
	return rw != NULL && __atomic_load_n(&rw->magic, __ATOMIC_RELAXED) == RWLOCK_MAGIC;
}

int wf_rwlock_new(wf_rwlock **out)
{
	if (out == NULL)
		return WF_EINVAL;
	wf_rwlock *rw = calloc(1, sizeof(*rw));
	if (rw == NULL)
		return WF_ENOMEM;
	rw->magic = RWLOCK_MAGIC;
	*out = rw;
	return 0;
}

int wf_rwlock_free(wf_rwlock *rw)
{
	if (!rw_ok(rw))
		return WF_EINVAL;
	wf__spin_lock(&rw->sl);
	bool busy = rw->q.len != 0;
	wf__spin_unlock(&rw->sl);
	if (busy)
		return WF_EBUSY;
	__atomic_store_n(&rw->magic, 0, __ATOMIC_RELAXED);
	free(rw);
	return 0;
}

/* Under sl: admits waiters from the head while the lock allows. */
static void grant(wf_rwlock *rw)
{
	wf__waiter *w;
	while ((w = rw->q.head) != NULL) {
		if (rw->writer)
			return;
		if (w->data == AS_WRITER) {
			if (rw->readers != 0)
				return;
			wf__waitq_pop(&rw->q);
			if (wf__waiter_fire(w, 0, NULL))
				rw->writer = true;
		} else {
			wf__waitq_pop(&rw->q);
			if (wf__waiter_fire(w, 0, NULL))
				rw->readers++;
		}
	}
}

static bool may_enter(const wf_rwlock *rw, bool write)
{
	if (rw->q.len != 0 || rw->writer)
		return false;
	return !write || rw->readers == 0;
}

static void enter(wf_rwlock *rw, bool write)
{
	if (write)
		rw->writer = true;
	else
		rw->readers++;
}

static int rw_lock(wf_rwlock *rw, bool write, uint64_t timeout_ms)
{
	if (!rw_ok(rw))
		return WF_EINVAL;
	wf__thread_waiter tw;
	wf__waiter *w;
	wf__spin_lock(&rw->sl);
	if (may_enter(rw, write)) {
		enter(rw, write);
		wf__spin_unlock(&rw->sl);
		return 0;
	}
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	int rc = timeout_ms == 0 ? WF_ETIMEDOUT : wf__wait_prepare(&w, &tw);
	if (rc != 0) {
		wf__spin_unlock(&rw->sl);
		return rc;
	}
	w->data = write ? AS_WRITER : AS_READER;
	wf__waitq_push(&rw->q, w);
	wf__spin_unlock(&rw->sl);
	rc = wf__wait(w, deadline);
	if (rc != 0) {
		wf__spin_lock(&rw->sl);
		if (wf__waiter_linked(w)) {
			wf__waitq_remove(&rw->q, w);
			grant(rw);
		}
		wf__spin_unlock(&rw->sl);
	}
	return rc;
}

static int rw_trylock(wf_rwlock *rw, bool write)
{
	if (!rw_ok(rw))
		return WF_EINVAL;
	wf__spin_lock(&rw->sl);
	bool ok = may_enter(rw, write);
	if (ok)
		enter(rw, write);
	wf__spin_unlock(&rw->sl);
	return ok ? 0 : WF_EBUSY;
}

int wf_rwlock_rdlock(wf_rwlock *rw, uint64_t timeout_ms)
{
	return rw_lock(rw, false, timeout_ms);
}

int wf_rwlock_wrlock(wf_rwlock *rw, uint64_t timeout_ms)
{
	return rw_lock(rw, true, timeout_ms);
}

int wf_rwlock_try_rdlock(wf_rwlock *rw)
{
	return rw_trylock(rw, false);
}

int wf_rwlock_try_wrlock(wf_rwlock *rw)
{
	return rw_trylock(rw, true);
}

int wf_rwlock_rdunlock(wf_rwlock *rw)
{
	if (!rw_ok(rw))
		return WF_EINVAL;
	wf__spin_lock(&rw->sl);
	if (rw->readers == 0) {
		wf__spin_unlock(&rw->sl);
		return WF_EOVERFLOW;
	}
	if (--rw->readers == 0)
		grant(rw);
	wf__spin_unlock(&rw->sl);
	return 0;
}

int wf_rwlock_wrunlock(wf_rwlock *rw)
{
	if (!rw_ok(rw))
		return WF_EINVAL;
	wf__spin_lock(&rw->sl);
	if (!rw->writer) {
		wf__spin_unlock(&rw->sl);
		return WF_EOVERFLOW;
	}
	rw->writer = false;
	grant(rw);
	wf__spin_unlock(&rw->sl);
	return 0;
}
