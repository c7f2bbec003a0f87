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
#include "sync/sync_internal.h"

struct wf_rwlock {
	wf__sync s;
	size_t readers;
	bool writer;
};

static wf__htype rwlock_type = WF__HTYPE_INIT(WF__K_RWLOCK, struct wf_rwlock);

/* The kinds of waiter, as w->data. */
static const char reader_tag, writer_tag;
#define AS_READER ((void *)&reader_tag)
#define AS_WRITER ((void *)&writer_tag)

static wf_rwlock *rw_get(const wf_rwlock *h)
{
	return wf__sync_get(h, WF__K_RWLOCK);
}

int wf_rwlock_new(wf_rwlock **out)
{
	if (out == NULL)
		return WF_EINVAL;
	wf_rwlock *rw = wf__sync_alloc(&rwlock_type);
	if (rw == NULL)
		return WF_ENOMEM;
	*out = wf__sync_handle(rw);
	return 0;
}

int wf_rwlock_free(wf_rwlock *h)
{
	wf_rwlock *rw = rw_get(h);
	if (rw == NULL)
		return WF_EINVAL;
	return wf__sync_free(&rwlock_type, &rw->s, NULL, NULL);
}

/* Under sl: admits waiters from the head while the lock allows. */
static void grant(wf_rwlock *rw)
{
	wf__waiter *w;
	while ((w = rw->s.q.head) != NULL) {
		if (rw->writer)
			return;
		if (w->data == AS_WRITER) {
			if (rw->readers != 0)
				return;
			wf__waitq_pop(&rw->s.q);
			if (wf__waiter_fire(w, 0, NULL))
				rw->writer = true;
		} else {
			wf__waitq_pop(&rw->s.q);
			if (wf__waiter_fire(w, 0, NULL))
				rw->readers++;
		}
	}
}

static bool may_enter(const wf_rwlock *rw, bool write)
{
	if (rw->s.q.len != 0 || rw->writer)
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

static int rw_lock(wf_rwlock *h, bool write, uint64_t timeout_ms)
{
	wf_rwlock *rw = rw_get(h);
	if (rw == NULL)
		return WF_EINVAL;
	wf__spin_lock(&rw->s.sl);
	if (may_enter(rw, write)) {
		enter(rw, write);
		wf__spin_unlock(&rw->s.sl);
		return 0;
	}
	/* Entry is given by the fire (code 0), counted by grant(). */
	wf__waiting wg = {.lock = &rw->s.sl, .q = &rw->s.q,
			  .what = write ? "rwlock write" : "rwlock read", .obj = rw,
			  .data = write ? AS_WRITER : AS_READER,
			  .deadline = wf__deadline_after_ms(timeout_ms),
			  .no_wait = timeout_ms == 0, .keep_lock = true};
	int rc = wf__wait_on(&wg);
	if (wg.gave_up) {
		/* Leaving may unblock those behind (readers behind a writer
		 * that gave up). */
		grant(rw);
		wf__spin_unlock(&rw->s.sl);
	}
	return rc;
}

static int rw_trylock(wf_rwlock *h, bool write)
{
	wf_rwlock *rw = rw_get(h);
	if (rw == NULL)
		return WF_EINVAL;
	wf__spin_lock(&rw->s.sl);
	bool ok = may_enter(rw, write);
	if (ok)
		enter(rw, write);
	wf__spin_unlock(&rw->s.sl);
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

int wf_rwlock_rdunlock(wf_rwlock *h)
{
	wf_rwlock *rw = rw_get(h);
	if (rw == NULL)
		return WF_EINVAL;
	wf__spin_lock(&rw->s.sl);
	if (rw->readers == 0) {
		wf__spin_unlock(&rw->s.sl);
		return WF_EOVERFLOW;
	}
	if (--rw->readers == 0)
		grant(rw);
	wf__spin_unlock(&rw->s.sl);
	return 0;
}

int wf_rwlock_wrunlock(wf_rwlock *h)
{
	wf_rwlock *rw = rw_get(h);
	if (rw == NULL)
		return WF_EINVAL;
	wf__spin_lock(&rw->s.sl);
	if (!rw->writer) {
		wf__spin_unlock(&rw->s.sl);
		return WF_EOVERFLOW;
	}
	rw->writer = false;
	grant(rw);
	wf__spin_unlock(&rw->s.sl);
	return 0;
}
