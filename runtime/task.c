/*
 * Tasks: spawn, join, detach, cancel, and where their memory comes from.
 *
 * A task's references: the handle (until wf_join or wf_detach), each queue
 * entry that may still start it, and "running" (from its start until its
 * finish). The last one frees it.
 *
 * Inline join: a task joined before it has started runs at once on the
 * joiner's stack, with no fiber and no switch. In the fork-join pattern
 * (spawn a child, do other work, join the child) the child's start entry is
 * still at the bottom of the joiner's own deque, so the joiner takes it
 * back: then nobody else ever saw the task and it is freed on the spot.
 * Otherwise the joiner claims it with one CAS on its state, and the start
 * entry left behind is dropped by whoever pops it.
 *
 * Memory: task structs come from the allocating worker's slabs and free
 * list, so spawning takes no lock and links nothing. A task freed on
 * another thread is pushed on its owner's remote-free stack (one CAS) and
 * recycled by the owner. Slabs are only given back when the runtime ends;
 * walking them is how shutdown finds every task to cancel and what the
 * program never released (a freed struct is marked dead). Tasks submitted
 * from plain threads have no owner: they are malloc'd and kept on the
 * runtime's foreign list, under a mutex (never on a task's spawn path).
 *
 * Handles. The slabs are handle slabs (handle.h): the program holds a
 * generation-tagged handle, never the address, and every public call
 * decodes it (wf__task_get), so a handle that was joined or detached gets
 * WF_EINVAL however often its memory has been reused since. Freeing a task
 * bumps its generation; a slot whose generation wraps is retired. At the
 * end of the runtime the slabs go back to the process-wide pool, where the
 * next runtime's workers take them with their generations intact: a handle
 * kept past its runtime is refused too, and never reads freed memory.
 * Foreign tasks come one at a time from the same kind's shared free list
 * (wf__hobj_alloc), so wf_current() in them is a handle like any other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "abi.h"
#include "asym.h"
#include "rt.h"


/* The joined word. Completion and wf_detach both read-modify-write it, so
 * one of them sees the other: the one that comes second reports a failure
 * that nobody will join (with separate "done" and "detached" words each
 * side could write its own and miss the other's, a store-buffer race).
 * J_JOINING and J_DETACHED are exclusive and never cleared but by a join
 * that gives up (J_JOINING back to none). */
enum { /* joined */
	J_NONE = 0,
	J_JOINING = 1,
	J_DETACHED = 2,
	J_REPORTED = 4,  /* the "never joined" report was printed */
	J_SUBMIT = 8,    /* wf_runtime_submit: the outcome goes to a future */
	J_COMPLETE = 16, /* the outcome is published */
	J_WATCHED = 32,  /* someone other than the joiner waits or watches */
	J_INLINE = 64,   /* the joiner may complete it without the core's lock */
	J_OWNER = J_JOINING | J_DETACHED,
};

/* The word's top 24 bits name the task's life: the low 24 bits of the
 * generation its handle carries. A second joiner (or detacher) holding a
 * copy of the handle may read the word after the first gave the handle
 * back and the memory went to a new task; its CAS would then take that
 * task's join (and drop a reference of its handle). With the life in the
 * word it sees the mismatch and is refused, and its CAS cannot succeed
 * across a change of life (short of 2^22 lives of one slot between its
 * read and its CAS: the generation moves by 4 per life). */
#define J_LIFE_SHIFT 8
#define J_LIFE_MASK (~(uint32_t)0 << J_LIFE_SHIFT)
static inline uint32_t life_of_gen(uint32_t gen)
{
	return gen << J_LIFE_SHIFT;
}
static inline uint32_t life_of_handle(const wf_task *h)
{
	return life_of_gen((uint32_t)((uintptr_t)h >> 32));
}

/* The join word of a task being set up by its spawner: its life and bits. */
void wf__task_set_joined(wf_task *t, uint32_t bits)
{
	uint32_t j = __atomic_load_n(&t->joined, __ATOMIC_RELAXED);
	__atomic_store_n(&t->joined, (j & J_LIFE_MASK) | bits, __ATOMIC_RELAXED);
}

enum { NAME_NONE = 0, NAME_WRITING = 1, NAME_SET = 2 };

/* A magazine: tasks one worker freed for another (their owner, whose
 * free list they go back to), handed over in one push. The owner takes
 * them from an array, where a free list through the tasks themselves is a
 * chain of dependent loads, each a miss on a line the freeing core holds:
 * in a spawn burst the spawner spent most of its allocation waiting on
 * them one after the other. From an array the misses overlap, and the
 * line a spawn writes of the task a few slots ahead is fetched for
 * writing while the spawner works. */
#define MAG_SLOTS 62
#define MAG_SPARES 4
#define MAG_AHEAD 3
typedef struct wf__mag {
	struct wf__mag *next;
	unsigned n;
	wf_task *t[MAG_SLOTS];
} wf__mag;

/* ---- memory ------------------------------------------------------------ */

static void reg_link(wf_task *head, wf_task *t)
{
	t->reg_next = head->reg_next;
	t->reg_prev = head;
	head->reg_next->reg_prev = t;
	head->reg_next = t;
}

static void reg_unlink(wf_task *t)
{
	t->reg_prev->reg_next = t->reg_next;
	t->reg_next->reg_prev = t->reg_prev;
	t->reg_prev = t->reg_next = NULL;
}

static wf__htype task_htype = {
	.kind = WF__K_TASK,
	.size = sizeof(wf_task),
	.per_slab = WF__TASKS_PER_SLAB,
	.lock = WF__SPINLOCK_INIT,
};

/* Everything but what a spawn sets (wf__task_alloc) back to its starting
 * value: run where the task ended (task_clear) or its memory was first
 * taken, so that a spawn writes one line another core may hold (rt.h). */
static void task_reset(wf_task *t, wf__worker *owner)
{
	t->park = WF__P_RUNNING;
	t->fiber = NULL;
	t->own.stack = NULL;
	__atomic_store_n(&t->last, owner, __ATOMIC_RELAXED);
	/* Atomic: a thief may still read these through a stale pointer to
	 * this struct's previous life (type-stable memory; its CAS on the
	 * slot the pointer came from then fails). */
	__atomic_store_n(&t->home, NULL, __ATOMIC_RELAXED);
	__atomic_store_n(&t->pinned, 0, __ATOMIC_RELAXED);
	t->wait_since = 0;
	t->vars = NULL;
	memset(&t->waiter, 0, sizeof(t->waiter));
	t->waiter.task = t;
	t->inline_parent = NULL;
	t->inline_by_joiner = false;
	t->cancelling = 0;
	t->cancel_forwarded = 0;
	t->fail_err = 0;
	t->cscope = NULL;
	t->result = NULL;
	t->unstarted = NULL;
	/* The core keeps its outcome (rt.h); task_clear freed its message
	 * and callbacks, and its waiters were woken. */
	if (t->core.cbs_tail != NULL)
		t->core.cbs_tail = NULL;
	t->fail_msg = NULL;
	t->submit = NULL;
	/* Atomic: a second joiner holding the handle may still read it
	 * (wf_join_ex, before its CAS on joined refuses it). */
	if (t->stack_size != 0)
		__atomic_store_n(&t->stack_size, 0, __ATOMIC_RELAXED);
	t->move_to = NULL;
	t->snext = NULL;
	/* The name's line is the spawner's: written only if a name was. */
	if (t->name_state != NAME_NONE || t->name[0] != '\0') {
		t->name_state = NAME_NONE;
		t->name[0] = '\0';
	}
}

/* Ends a task's life in its slot: its handles are stale from here on.
 * false if the slot retired (its generation wrapped): it must not be
 * reused. */
static bool task_clear(wf_task *t)
{
	wf__fcore_destroy(&t->core);
	if (t->vars != NULL)
		wf__vars_unref(t->vars);
	if (WF__UNLIKELY(t->fail_msg != NULL))
		free(t->fail_msg);
	t->magic = WF__TASK_DEAD;
	task_reset(t, t->owner);
	/* The last reference is ours: nobody else writes gen now, so a plain
	 * load and a release store do what wf__hdr_bump's locked add would,
	 * on the spawn path's hottest line. Release: a decoder that sees the
	 * even gen refuses the slot. */
	uint32_t g = __atomic_load_n(&t->hdr.gen, __ATOMIC_RELAXED);
	if (WF__UNLIKELY(g == UINT32_MAX)) {
		t->hdr.spare |= WF__HDR_RETIRED;
		__atomic_store_n(&t->hdr.gen, 0, __ATOMIC_RELEASE);
		return false;
	}
	__atomic_store_n(&t->hdr.gen, g + 1, __ATOMIC_RELEASE);
	return true;
}

static bool slab_grow(wf__worker *w)
{
	wf__slab *s = malloc(sizeof(*s));
	if (s == NULL)
		return false;
	size_t n;
	wf_task *first = wf__hslab_get(&task_htype, &n);
	if (first == NULL) {
		free(s);
		return false;
	}
	s->tasks = first;
	s->next = w->slabs;
	for (size_t i = n; i-- > 0;) {
		wf_task *t = &first[i];
		t->magic = WF__TASK_DEAD;
		if (wf__hdr_retired(&t->hdr))
			continue;
		/* The slab may come from an ended runtime: its tasks may
		 * have been left in any state, and were someone else's. */
		t->rt = w->rt;
		t->owner = w;
		t->name_state = NAME_NONE;
		t->name[0] = '\0';
		wf__fcore_init(&t->core);
		t->core.gated = true;
		task_reset(t, w);
		t->qnext = w->free_tasks;
		w->free_tasks = t;
	}
	/* Release: shutdown's report of stuck tasks walks the slabs from
	 * another thread (acquire), and must find this one set up. */
	__atomic_store_n(&w->slabs, s, __ATOMIC_RELEASE);
	return true;
}

static void mag_retire(wf__worker *w, wf__mag *m)
{
	if (w->n_spare_mags >= MAG_SPARES) {
		free(m);
		return;
	}
	m->next = w->spare_mags;
	w->spare_mags = m;
	w->n_spare_mags++;
}

static void mag_free_list(wf__mag *m)
{
	while (m != NULL) {
		wf__mag *next = m->next;
		free(m);
		m = next;
	}
}

/* Makes the next magazine others freed for w the one it allocates from,
 * its first tasks' lines fetched (each take fetches one more); false if
 * there is none. */
static bool next_mag(wf__worker *w)
{
	if (w->mag != NULL) {
		mag_retire(w, w->mag);
		w->mag = NULL;
	}
	if (w->mags == NULL) {
		if (__atomic_load_n(&w->remote_mags, __ATOMIC_RELAXED) == NULL)
			return false;
		/* Acquire: pairs with the freer's release push; its slots and
		 * its tasks' clearing happen before. */
		w->mags = __atomic_exchange_n(&w->remote_mags, NULL, __ATOMIC_ACQUIRE);
	}
	wf__mag *m = w->mags;
	w->mags = m->next;
	w->mag = m;
	for (unsigned i = 1; i <= MAG_AHEAD && i <= m->n; i++)
		wf__prefetchw(m->t[m->n - i]);
	return true;
}

/* Neither its own frees nor a magazine: plain threads' frees, or a new
 * slab. */
static wf_task *take_free_slow(wf__worker *w)
{
	wf__worker_drain_remote_free(w);
	if (w->free_tasks == NULL && !slab_grow(w))
		return NULL;
	wf_task *t = w->free_tasks;
	w->free_tasks = t->qnext;
	return t;
}

static inline wf_task *take_free(wf__worker *w)
{
	wf_task *t = w->free_tasks;
	if (t != NULL) {
		w->free_tasks = t->qnext;
		return t;
	}
	wf__mag *m = w->mag;
	if (m == NULL || m->n == 0) {
		if (!next_mag(w))
			return take_free_slow(w);
		m = w->mag;
	}
	unsigned n = --m->n;
	if (n >= MAG_AHEAD)
		wf__prefetchw(m->t[n - MAG_AHEAD]);
	return m->t[n];
}

#ifndef NDEBUG
/* Debug builds: a task from a free list is as task_reset left it. A write
 * to a freed task (a stale pointer or handle used without the reference
 * that keeps it) would otherwise carry into the next task that reuses the
 * memory. Not the core's waiters and callbacks: a wait or watch through a
 * handle given back meanwhile (a program's bug, compose.c's stale items)
 * may still link itself there, as it could before the reuse. */
static void check_reset(const wf_task *t, const wf__worker *w)
{
	static const wf__waiter zero_waiter;
	wf__waiter wt = t->waiter;
	wt.task = NULL;
	if (t->park != WF__P_RUNNING || t->fiber != NULL || t->own.stack != NULL ||
	    t->last != w || t->home != NULL || t->pinned != 0 || t->wait_since != 0 ||
	    t->vars != NULL || t->waiter.task != t || memcmp(&wt, &zero_waiter, sizeof(wt)) != 0 ||
	    t->inline_parent != NULL || t->inline_by_joiner || t->cancelling != 0 ||
	    t->cancel_forwarded != 0 || t->fail_err != 0 || t->cscope != NULL ||
	    t->result != NULL || t->unstarted != NULL || !t->core.gated || t->core.msg != NULL ||
	    t->fail_msg != NULL ||
	    t->submit != NULL || t->stack_size != 0 || t->move_to != NULL || t->snext != NULL ||
	    t->name_state != NAME_NONE || t->name[0] != '\0' || t->rt != w->rt || t->owner != w) {
		wf__log(WF_LOG_ERROR, "task memory written after it was freed (slot %p)",
			(const void *)t);
		abort();
	}
}
#else
#define check_reset(t, w) ((void)0)
#endif

wf_task *wf__task_alloc(wf_runtime *rt, wf__worker *w)
{
	wf_task *t;
	if (w != NULL) {
		if ((t = take_free(w)) == NULL)
			return NULL;
		check_reset(t, w);
	} else {
		if ((t = wf__hobj_alloc(&task_htype)) == NULL)
			return NULL;
		t->rt = rt;
		t->owner = NULL;
		t->core.gated = true; /* the rest comes zeroed */
		task_reset(t, NULL);
	}
	/* The rest is as task_reset left it: only what differs from one task
	 * to the next is written here (line 0, and line 6 which is the
	 * spawner's own); the outcome in the core is overwritten when the
	 * task completes, and is read only once `done` says so. */
	t->magic = WF__TASK_MAGIC;
	t->state = WF__T_NEW;
	/* Atomic stores, refs and joined: a canceller may still reach them
	 * through a stale handle (task_try_ref's RMWs, which then see another
	 * life and back off). */
	__atomic_store_n(&t->refs, 2, __ATOMIC_RELAXED); /* the handle and the start entry */
	/* The life of the handle armed below (a foreign task's is armed). */
	uint32_t gen = __atomic_load_n(&t->hdr.gen, __ATOMIC_RELAXED) + (w != NULL);
	__atomic_store_n(&t->joined, life_of_gen(gen) | J_NONE, __ATOMIC_RELAXED);
	/* Atomic: a watcher that decoded the previous life's handle may
	 * still read it (it then sees the handle stale, compose.c). */
	__atomic_store_n(&t->core.done, 0, __ATOMIC_RELAXED);
	t->spawn_line = 0;
	t->qnext = NULL;
	t->spawn_file = NULL;
	/* The spawner's context, shared (contextvars' copy at spawn); a plain
	 * thread's own for a task it submits. */
	wf_task *parent = w != NULL ? w->current : NULL;
	if (parent != NULL) {
		if (parent->vars != NULL)
			t->vars = wf__vars_ref(parent->vars);
	} else if (w == NULL) {
		t->vars = wf__vars_capture();
	}
	if (w != NULL) {
		/* Live: its handle is valid from here (release: the decoder
		 * sees the fields above). wf__hobj_alloc armed a foreign one. */
		wf__hdr_arm(&t->hdr);
		t->id = (w->next_id++ << 8) | (w->id & 0xff);
		__atomic_store_n(&w->n_started, w->n_started + 1, __ATOMIC_RELEASE);
	} else {
		t->id = (__atomic_add_fetch(&rt->foreign_started, 1, __ATOMIC_ACQ_REL) << 8) | 0xff;
		pthread_mutex_lock(&rt->foreign_mu);
		reg_link(&rt->foreign_reg, t);
		pthread_mutex_unlock(&rt->foreign_mu);
	}
	if (WF__UNLIKELY(rt->hooks != NULL))
		wf__hook_task(t, WF__HOOK_SPAWN);
	return t;
}

void wf__task_free_local(wf__worker *w, wf_task *t)
{
	if (!task_clear(t))
		return; /* retired */
	t->qnext = w->free_tasks;
	w->free_tasks = t;
}

static void task_free(wf_task *t)
{
	wf__worker *owner = t->owner;
	if (owner == NULL) {
		wf_runtime *rt = t->rt;
		pthread_mutex_lock(&rt->foreign_mu);
		reg_unlink(t);
		pthread_mutex_unlock(&rt->foreign_mu);
		wf__hobj_recycle(&task_htype, t, task_clear(t));
		return;
	}
	wf__worker *self = wf__self();
	if (owner == self) {
		wf__task_free_local(owner, t);
		return;
	}
	/* Cleared here, where its lines are likely still cached, so that the
	 * owner adopts what comes back as it is (wf__worker_drain_remote_
	 * free): in a spawn burst the owner is the busy one. */
	if (!task_clear(t))
		return; /* retired */
	if (self == NULL || self->rt != t->rt) {
		wf__mpq_push(&owner->remote_free, t);
		return;
	}
	/* Batch frees for another worker in a magazine: one CAS on its stack
	 * per batch, not per task (the stack's line would bounce between the
	 * two workers on every task of a spawn burst). */
	if (self->rfree_owner != owner)
		wf__task_flush_remote(self);
	wf__mag *m = self->rfree_mag;
	if (m == NULL) {
		if ((m = self->spare_mags) != NULL) {
			self->spare_mags = m->next;
			self->n_spare_mags--;
		} else if ((m = malloc(sizeof(*m))) == NULL) {
			wf__mpq_push(&owner->remote_free, t); /* one at a time */
			return;
		}
		m->n = 0;
		self->rfree_mag = m;
	}
	self->rfree_owner = owner;
	m->t[m->n++] = t;
	if (m->n == MAG_SLOTS)
		wf__task_flush_remote(self);
}

void wf__task_flush_remote(wf__worker *w)
{
	wf__mag *m = w->rfree_mag;
	if (m == NULL || m->n == 0)
		return;
	wf__mag **q = &w->rfree_owner->remote_mags;
	wf__mag *old = __atomic_load_n(q, __ATOMIC_RELAXED);
	do {
		m->next = old;
	} while (!__atomic_compare_exchange_n(q, &old, m, true, __ATOMIC_RELEASE,
					      __ATOMIC_RELAXED));
	w->rfree_mag = NULL;
}

/* The tasks other threads freed for w, cleared by them (task_free),
 * become its free list with one exchange and no walk; only when that list
 * is empty (else the next allocation that runs dry takes them). */
void wf__worker_drain_remote_free(wf__worker *w)
{
	if (w->free_tasks == NULL)
		w->free_tasks = wf__mpq_take_any(&w->remote_free);
}

void wf__task_unref(wf_task *t)
{
	/* acq_rel: each holder's uses of t happen before the free (release),
	 * and the last holder sees them all (acquire). */
	if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
		task_free(t);
}

static void cancel_if_live(wf_task *t)
{
	if (wf__hdr_live(&t->hdr) &&
	    __atomic_load_n(&t->state, __ATOMIC_ACQUIRE) != WF__T_DONE)
		wf__task_cancel_request(t);
}

/* Owner only: its slabs cannot be recycled while it walks them (frees from
 * other threads wait on its remote-free stack). */
void wf__task_cancel_all(wf__worker *w)
{
	for (wf__slab *s = w->slabs; s != NULL; s = s->next)
		for (size_t i = 0; i < WF__TASKS_PER_SLAB; i++)
			cancel_if_live(&s->tasks[i]);
}

void wf__task_cancel_list(wf_task *head)
{
	for (wf_task *t = head->reg_next; t != head; t = t->reg_next)
		cancel_if_live(t);
}

/* After the workers stopped: frees the tasks submitted from plain threads
 * that never ran to their end. */
void wf__task_release_foreign(wf_runtime *rt)
{
	while (rt->foreign_reg.reg_next != &rt->foreign_reg) {
		wf_task *t = rt->foreign_reg.reg_next;
		reg_unlink(t);
		if (t->submit != NULL)
			wf__future_put(t->submit);
		t->submit = NULL;
		wf__hobj_recycle(&task_htype, t, task_clear(t));
	}
}

/* After the workers stopped: frees every task a worker still holds (its
 * handles go stale) and gives the slabs back to the process-wide pool. */
void wf__task_release_all(wf__worker *w)
{
	/* Cleared by their freers already; their slabs go back below. Every
	 * worker has stopped: nobody pushes a magazine any more. */
	(void)wf__mpq_take_any(&w->remote_free);
	mag_free_list(__atomic_exchange_n(&w->remote_mags, NULL, __ATOMIC_ACQUIRE));
	mag_free_list(w->mags);
	free(w->mag);
	mag_free_list(w->spare_mags);
	free(w->rfree_mag); /* tasks of others, cleared: their slabs go back */
	w->mags = w->mag = w->spare_mags = w->rfree_mag = NULL;
	w->n_spare_mags = 0;
	w->rfree_owner = NULL;
	while (w->slabs != NULL) {
		wf__slab *s = w->slabs;
		w->slabs = s->next;
		for (size_t i = 0; i < WF__TASKS_PER_SLAB; i++)
			if (s->tasks[i].magic == WF__TASK_MAGIC)
				task_clear(&s->tasks[i]);
		wf__hslab_put(&task_htype, s->tasks);
		free(s);
	}
	w->free_tasks = NULL;
}

/* ---- outcome ----------------------------------------------------------- */

static void report_never_joined(wf_task *t)
{
	if (__atomic_fetch_or(&t->joined, J_REPORTED, __ATOMIC_ACQ_REL) & J_REPORTED)
		return;
	wf__report_never_joined(wf__task_name(t), t->id, t->core.err, t->core.msg);
}

static bool failed_unseen(wf_task *t)
{
	int err = t->core.err;
	return err != 0 && err != WF_ECANCELED &&
	       !(__atomic_load_n(&t->joined, __ATOMIC_ACQUIRE) & J_SUBMIT);
}

/* Publishes t's outcome. drop_running: t ran on a fiber (or was started by
 * a queue entry), whose reference ends here. */
void wf__hook_task(wf_task *t, int event)
{
	const wf_hooks *h = t->rt->hooks;
	switch (event) {
	case WF__HOOK_SPAWN:
		if (h->task_spawn != NULL)
			h->task_spawn(t->id, h->arg);
		break;
	case WF__HOOK_START:
		if (h->task_start != NULL)
			h->task_start(t->id, h->arg);
		break;
	case WF__HOOK_SUSPEND:
		if (h->task_suspend != NULL)
			h->task_suspend(t->id, h->arg);
		break;
	case WF__HOOK_RESUME:
		if (h->task_resume != NULL)
			h->task_resume(t->id, h->arg);
		break;
	default:
		break;
	}
}

static void task_complete(wf_task *t, bool drop_running)
{
	int err = t->fail_err;
	char *msg = NULL;
	if (err != 0) {
		msg = t->fail_msg;
		t->fail_msg = NULL;
	} else if (t->cancelling > 0) {
		err = WF_ECANCELED;
	}
	void *value = err == 0 ? t->result : NULL;
	if (WF__UNLIKELY(t->rt->hooks != NULL) && t->rt->hooks->task_end != NULL)
		t->rt->hooks->task_end(t->id, err, t->rt->hooks->arg);
	/* Release: pairs with wf_task_done's and wf_cancel's acquire loads;
	 * the outcome itself is published by core.done (future.c). */
	__atomic_store_n(&t->state, WF__T_DONE, __ATOMIC_RELEASE);
	wf__worker *w = wf__self();
	if (w != NULL)
		__atomic_store_n(&w->n_finished, w->n_finished + 1, __ATOMIC_RELEASE);
	if (t->submit != NULL) {
		wf_future *f = t->submit; /* the object, with a reference */
		char *copy = msg != NULL ? strdup(msg) : NULL;
		t->submit = NULL;
		wf__future_settle(f, err, value, copy);
	}
	if (__atomic_load_n(&t->joined, __ATOMIC_ACQUIRE) & J_DETACHED) {
		/* No handle: nobody waits on it or has a callback on it. */
		t->core.err = err;
		t->core.value = value;
		t->core.msg = msg;
		__atomic_store_n(&t->core.done, 1, __ATOMIC_RELEASE);
		__atomic_or_fetch(&t->joined, J_COMPLETE, __ATOMIC_ACQ_REL);
		if (failed_unseen(t))
			report_never_joined(t);
	} else if (!drop_running && t->inline_by_joiner &&
		   (__atomic_load_n(&t->joined, __ATOMIC_RELAXED) & J_INLINE)) {
		/* Its joiner ran it and takes the outcome itself (no detach can
		 * come, as below); anyone else that waits or watches set
		 * J_WATCHED first (wf__task_watch_gate). */
		wf__fcore_complete_lockless(&t->core, err, value, msg, &t->joined, J_WATCHED);
		return;
	} else {
		wf__fcore_complete(&t->core, err, value, msg, NULL);
		/* acq_rel RMW: a wf_detach before it is seen here (it reports
		 * below), one after it sees J_COMPLETE (it reports); see the
		 * joined word's comment. Not for a task its joiner ran inline:
		 * that joiner holds the handle and takes the outcome itself, so
		 * no detach can come (the fork-join path saves a locked op). */
		if (!drop_running && t->inline_by_joiner)
			return;
		uint32_t j = __atomic_fetch_or(&t->joined, J_COMPLETE, __ATOMIC_ACQ_REL);
		if ((j & J_DETACHED) && failed_unseen(t))
			report_never_joined(t);
	}
	if (drop_running)
		wf__task_unref(t);
}

/* The registrant's side of the pair with wf__fcore_complete_lockless: a
 * task or thread about to wait on or watch t's core says so in the joined
 * word, with the RMW that also tells it whether a joiner has claimed the
 * lockless completion (J_INLINE, set by the joiner's own RMW of the same
 * word, so one of the two sees the other). If one has, the heavy barrier
 * makes the joiner's done visible to the registrant's check under the
 * lock, or the registrant's J_WATCHED visible to the joiner's check. */
void wf__task_watch_gate(wf__fcore *c)
{
	wf_task *t = (wf_task *)((char *)c - offsetof(wf_task, core));
	/* Every registrant pays its own barrier: seeing an earlier one's
	 * J_WATCHED says nothing about whether that one's barrier is done. */
	uint32_t j = __atomic_fetch_or(&t->joined, J_WATCHED, __ATOMIC_SEQ_CST);
	if (j & J_INLINE)
		wf__asym_heavy();
}

void wf__task_finish(wf_task *t)
{
	task_complete(t, true);
}

/* ---- spawning ---------------------------------------------------------- */

static void set_name(wf_task *t, const char *name)
{
	size_t n = strnlen(name, WF__NAME_MAX - 1);
	memcpy(t->name, name, n);
	t->name[n] = '\0';
	t->name_state = NAME_SET;
}

/* Queues a new task of the calling task's; past the backlog bound
 * (wf__schedule_new) the caller lets the queued tasks run first. Its
 * handle must be taken before: the task may run and end meanwhile. */
static void schedule_spawned(wf__worker *w, wf_task *t)
{
	if (WF__UNLIKELY(wf__schedule_new(w, t)))
		wf__sched_switch_out(w, WF__SW_YIELD);
}

int wf_spawn_ex_at(wf_fn fn, void *arg, const wf_spawn_opts *opts, wf_task **out,
		   const char *file, int line)
{
	bool detached = opts != NULL && opts->detached;
	if (out != NULL)
		*out = NULL;
	if (fn == NULL || (out == NULL && !detached))
		return WF_EINVAL;
	if (opts != NULL && !WF__RESERVED_ZERO(opts))
		return WF_EINVAL;
	wf__worker *w = wf__self();
	if (w == NULL || w->current == NULL)
		return WF_ENOTTASK;
	size_t stack_size = 0;
	if (opts != NULL && opts->stack_size != 0) {
		if (opts->stack_size < 16 * 1024 || opts->stack_size > ((size_t)1 << 32))
			return WF_EINVAL;
		stack_size = opts->stack_size;
	}
	wf_task *t = wf__task_alloc(w->rt, w);
	if (t == NULL)
		return WF_ENOMEM;
	t->fn = fn;
	t->arg = arg;
	t->spawn_file = file;
	t->spawn_line = line;
	if (stack_size != 0)
		__atomic_store_n(&t->stack_size, stack_size, __ATOMIC_RELAXED);
	if (opts != NULL && opts->name != NULL)
		set_name(t, opts->name);
	if (detached) {
		wf__task_set_joined(t, J_DETACHED);
		__atomic_store_n(&t->refs, 1, __ATOMIC_RELAXED); /* the start entry only */
	}
	if (out != NULL && !detached)
		*out = wf__task_handle(t);
	schedule_spawned(w, t);
	return 0;
}

/* The names without the spawn site, for callers that bypass the macros
 * (function pointers, other languages): parenthesised, so that the
 * macros of weft.h do not expand here. */
int(wf_spawn_ex)(wf_fn fn, void *arg, const wf_spawn_opts *opts, wf_task **out)
{
	return wf_spawn_ex_at(fn, arg, opts, out, NULL, 0);
}

wf_task *(wf_spawn)(wf_fn fn, void *arg)
{
	return wf_spawn_at(fn, arg, NULL, 0);
}

wf_task *wf_spawn_at(wf_fn fn, void *arg, const char *file, int line)
{
	if (fn == NULL)
		return NULL;
	wf__worker *w = wf__self();
	if (w == NULL || w->current == NULL) {
		wf__debug_note(w != NULL ? w->rt : NULL,
			       "wf_spawn called outside a task returns NULL: from a plain thread, "
			       "use wf_runtime_submit");
		return NULL;
	}
	wf_task *t = wf__task_alloc(w->rt, w);
	if (t == NULL)
		return NULL;
	t->fn = fn;
	t->arg = arg;
	t->spawn_file = file;
	t->spawn_line = line;
	wf_task *h = wf__task_handle(t);
	schedule_spawned(w, t);
	return h;
}

/* ---- joining ----------------------------------------------------------- */


/* Runs an unstarted t on the joiner's stack. A cancellation of the joiner
 * that reached t while t waited (waiter.c) counts as the joiner's own if t
 * let it through, as with a join that waits. */
static void join_inline(wf__worker *w, wf_task *t)
{
	wf_task *me = w->current;
	wf__run_inline(w, t);
	t->inline_by_joiner = true;
	task_complete(t, false);
	/* A load, not an exchange: every store to it is done by now. A
	 * canceller's forward finished before t resumed (t disarmed its
	 * proxies waiting for forwards under way, waiter.c), and the other
	 * stores were t's own. Acquire: pairs with mark_forwarded's release. */
	if (WF__UNLIKELY(__atomic_load_n(&me->cancel_forwarded, __ATOMIC_ACQUIRE) != 0)) {
		__atomic_store_n(&me->cancel_forwarded, 0, __ATOMIC_RELAXED);
		if (t->core.err == WF_ECANCELED)
			me->cancelling++;
	}
}

/* Takes t's start entry out of the joiner's own deque if it is among the
 * JOIN_WINDOW newest entries, putting back those above it: a join below a
 * newer spawn or a woken task would otherwise leave the entry behind (with
 * the reference it holds) until the worker pops it, which a joiner that
 * never suspends postpones for ever, one task per join. */
#define JOIN_WINDOW 8
static bool take_own_start(wf__worker *w, wf_task *t)
{
	void *want = wf__start_entry(t);
	int depth = wf__deque_depth_of(&w->deque, want, JOIN_WINDOW);
	if (depth < 0)
		return false;
	void *above[JOIN_WINDOW];
	int n = 0;
	bool found = false;
	while (n <= depth) {
		void *x = wf__deque_take(&w->deque);
		if (x == WF__DQ_EMPTY)
			break;
		if (x == want) {
			found = true;
			break;
		}
		if (n == JOIN_WINDOW) { /* thieves shifted things: give up */
			wf__deque_push(&w->deque, x);
			break;
		}
		above[n++] = x;
	}
	/* Oldest first; cannot grow: the slots were just freed. */
	while (n > 0)
		wf__deque_push(&w->deque, above[--n]);
	return found;
}

/* The program gives the handle back (a join that took the outcome, a
 * detach): every copy of it is stale from here on, while the struct may
 * live on for the runtime (its start entry, its run). The generation
 * moves on by two, staying odd (live); wf__hdr_bump makes it even when
 * the struct is freed. Near the wrap the step is skipped, and the free
 * retires the slot. */
static void release_handle(wf_task *t)
{
	uint32_t g = __atomic_load_n(&t->hdr.gen, __ATOMIC_RELAXED);
	if (WF__LIKELY(g < UINT32_MAX - 4))
		__atomic_store_n(&t->hdr.gen, g + 2, __ATOMIC_RELEASE);
}

static int take_outcome(wf_task *t, void **result, char **errmsg)
{
	int err = t->core.err;
	if (result != NULL)
		*result = err == 0 ? t->core.value : NULL;
	if (errmsg != NULL && t->core.msg != NULL)
		*errmsg = strdup(t->core.msg);
	return err;
}

/* Frees a task its joiner ran inline and whose handle it just gave back:
 * both references are the joiner's (the handle's and the start entry's),
 * unless a canceller holds one more, and they go through the count. Never
 * with plain stores: a canceller whose copy of an older handle decoded
 * just before that life ended takes its reference (wf__ref_unless_zero) on
 * whatever life the slot holds by then, sees the handle stale and drops
 * the reference again. A life freed without the count meanwhile would
 * leave that reference to be dropped from the next life's count, which
 * then ended one reference early: its handle went stale while its holder
 * still had it (a join of a task just spawned gave WF_EINVAL). One RMW per
 * inline join. */
static void free_joined_inline(wf_task *t)
{
	if (__atomic_sub_fetch(&t->refs, 2, __ATOMIC_ACQ_REL) != 0)
		return;
	task_free(t);
}

int wf_join_ex(wf_task *h, void **result, char **errmsg)
{
	if (result != NULL)
		*result = NULL;
	if (errmsg != NULL)
		*errmsg = NULL;
	wf_task *t = wf__task_get(h);
	if (t == NULL)
		return WF_EINVAL;
	wf__worker *w = wf__self();
	wf_task *me = w != NULL ? w->current : NULL;
	if (t == me)
		return WF_EDEADLK;
	/* Inline only when t has no stack size of its own and the stack it
	 * would run on is at least as large as the one it would get. */
	bool may_inline = me != NULL && w->rt == t->rt &&
			  __atomic_load_n(&t->stack_size, __ATOMIC_RELAXED) == 0 &&
			  me->fiber->stack->capacity >= w->rt->stack_size;
	/* Fork-join's common case: t's start entry is the newest in our
	 * deque, and we will run t inline. Then, unless someone already
	 * watches t, we claim its completion without the core's lock
	 * (J_INLINE; see wf__task_watch_gate). */
	bool at_bottom = may_inline && wf__deque_peek(&w->deque) == wf__start_entry(t);
	uint32_t inline_bit = at_bottom && wf__asym_ok() ? J_INLINE : 0;
#if defined(WF__DQ_SPLIT_TAKE)
	/* The take's barrier is the CAS below (deque.h). */
	int64_t slot = at_bottom ? wf__deque_take_begin(&w->deque) : -1;
#endif
	uint32_t j = __atomic_load_n(&t->joined, __ATOMIC_RELAXED);
	uint32_t life = life_of_handle(h);
	uint32_t next;
	do {
		if ((j & J_OWNER) || (j & J_LIFE_MASK) != life) {
#if defined(WF__DQ_SPLIT_TAKE)
			if (slot >= 0)
				wf__deque_take_undo(&w->deque, slot);
#endif
			return (j & J_LIFE_MASK) != life || (j & J_DETACHED) ? WF_EINVAL : WF_EBUSY;
		}
		next = j | J_JOINING | ((j & J_WATCHED) ? 0 : inline_bit);
	} while (!__atomic_compare_exchange_n(&t->joined, &j, next, false, __ATOMIC_SEQ_CST,
					      __ATOMIC_RELAXED));
	bool popped = false;
#if defined(WF__DQ_SPLIT_TAKE)
	if (slot >= 0)
		popped = wf__deque_take_end(&w->deque, slot) == wf__start_entry(t);
#endif

	if (may_inline && __atomic_load_n(&t->state, __ATOMIC_ACQUIRE) == WF__T_NEW) {
		if (popped || take_own_start(w, t)) {
			/* Ours alone: nobody else ever saw it. */
			__atomic_store_n(&t->state, WF__T_RUNNING, __ATOMIC_RELAXED);
			join_inline(w, t);
			int err = take_outcome(t, result, errmsg);
			release_handle(t);
			free_joined_inline(t);
			return err;
		}
		/* Elsewhere (deeper, stolen, in the injection queue): claim it;
		 * its start entry is dropped by whoever pops it. */
		if (wf__task_claim(t))
			join_inline(w, t);
	} else if (popped) {
		wf__task_unref(t); /* a stale start entry: its reference */
	}

	bool passed_on = false;
	for (;;) {
		int rc = wf__fcore_wait_what(&t->core, WF__NO_DEADLINE, "join");
		if (rc == 0)
			break;
		if (rc == WF_ECANCELED && me != NULL) {
			/* asyncio: cancelling the joiner cancels the joined. */
			wf__task_cancel_request(t);
			me->cancelling--;
			passed_on = true;
			continue;
		}
		__atomic_and_fetch(&t->joined, ~(uint32_t)J_JOINING, __ATOMIC_RELEASE);
		return rc;
	}
	int err = take_outcome(t, result, errmsg);
	if (passed_on && err == WF_ECANCELED)
		me->cancelling++;
	release_handle(t);
	wf__task_unref(t);
	return err;
}

int wf_join(wf_task *t, void **result)
{
	return wf_join_ex(t, result, NULL);
}

/* The task h names; also, for the calling task, the handle it had before
 * it was detached while it ran: wf_current() is valid while the task runs,
 * even if another task detaches it between the call and the use (a detach
 * makes the old value stale). Only the handle of that very task: the same
 * slot, one release earlier, and the task detached. */
static wf_task *task_get_or_self(const wf_task *h)
{
	wf_task *t = wf__task_get(h);
	if (WF__LIKELY(t != NULL) || h == NULL)
		return t;
	wf_task *self = wf__current();
	if (self == NULL || !(__atomic_load_n(&self->joined, __ATOMIC_ACQUIRE) & J_DETACHED))
		return NULL;
	uint64_t mine = (uint64_t)(uintptr_t)wf__task_handle(self);
	uint64_t v = (uint64_t)(uintptr_t)h;
	return (uint32_t)v == (uint32_t)mine && (v >> 32) + 2 == (mine >> 32) ? self : NULL;
}

int wf_detach(wf_task *h)
{
	wf_task *t = wf__task_get(h);
	if (t == NULL)
		return WF_EINVAL;
	uint32_t j = __atomic_load_n(&t->joined, __ATOMIC_RELAXED);
	uint32_t life = life_of_handle(h);
	do {
		if ((j & J_LIFE_MASK) != life)
			return WF_EINVAL; /* given back, and the memory reused */
		if (j & J_OWNER)
			return (j & J_DETACHED) ? WF_EINVAL : WF_EBUSY;
	} while (!__atomic_compare_exchange_n(&t->joined, &j, j | J_DETACHED, false,
					      __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
	/* The completion's RMW came first: it did not see J_DETACHED, so the
	 * report is ours (acquire: its outcome is visible). */
	if ((j & J_COMPLETE) && failed_unseen(t))
		report_never_joined(t);
	release_handle(t);
	wf__task_unref(t);
	return 0;
}

/* ---- cancellation and failure ----------------------------------------- */

/* Takes a reference on t, which handle h named when it was decoded, if h
 * still names it. A canceller's copy of a handle is given back by its
 * holder (a join that takes the outcome) at any moment, and the task freed
 * and its memory handed to the next spawn: the decode alone does not keep
 * the task, and a cancellation written into the next task's waiter would
 * cancel that one. So a reference (wf__ref_unless_zero), then the
 * generation again: the same, and the task is live and held.
 *
 * Every free goes through the count, so the reference taken on whatever
 * life the slot holds by then is dropped where it was taken (a join that
 * runs its child inline too: free_joined_inline). */
static bool task_try_ref(wf_task *t, const wf_task *h)
{
	if (!wf__ref_unless_zero(&t->refs))
		return false;
	if (WF__UNLIKELY(wf__task_get(h) != t)) {
		wf__task_unref(t); /* another life's: maybe its last */
		return false;
	}
	return true;
}

int wf_cancel(wf_task *h)
{
	wf_task *t = task_get_or_self(h);
	if (t == NULL)
		return WF_EINVAL;
	/* The calling task is running here: nobody can free it meanwhile. */
	bool self = t == wf__current();
	if (!self && !task_try_ref(t, h))
		return WF_EINVAL;
	int rc = 0;
	if (__atomic_load_n(&t->state, __ATOMIC_ACQUIRE) == WF__T_DONE)
		rc = WF_EALREADY;
	else
		wf__task_cancel_request(t);
	if (!self)
		wf__task_unref(t);
	return rc;
}

int wf_uncancel(void)
{
	wf_task *t = wf__current();
	if (t == NULL)
		return WF_ENOTTASK;
	if (t->cancelling > 0)
		t->cancelling--;
	return t->cancelling;
}

int wf_cancelling(void)
{
	wf_task *t = wf__current();
	if (t == NULL)
		return WF_ENOTTASK;
	return t->cancelling;
}

void *wf_fail(int err, const char *msg)
{
	wf_task *t = wf__current();
	if (t == NULL)
		return NULL;
	if (err >= 0) {
		/* A positive code is a forgotten minus (wf_fail(EIO, ...)), 0
		 * is no failure at all: either way the task must not pass for
		 * a success. */
		char buf[160];
		snprintf(buf, sizeof(buf), "wf_fail called with %d (codes are negative, e.g. WF_EIO)%s%s",
			 err, msg != NULL ? ": " : "", msg != NULL ? msg : "");
		t->fail_err = WF_EINVAL;
		free(t->fail_msg);
		t->fail_msg = strdup(buf);
		return NULL;
	}
	t->fail_err = err;
	free(t->fail_msg);
	t->fail_msg = msg != NULL ? strdup(msg) : NULL;
	return NULL;
}

/* ---- suspensions ------------------------------------------------------- */

/* Consumes a pending cancellation, if any: the suspension fails with it. */
static bool take_pending_cancel(wf_task *t)
{
	uint32_t word = __atomic_load_n(&t->waiter.word, __ATOMIC_ACQUIRE);
	while (word & WF__W_CANCEL_PENDING)
		if (__atomic_compare_exchange_n(&t->waiter.word, &word,
						word & ~(uint32_t)WF__W_CANCEL_PENDING, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			t->cancelling++;
			return true;
		}
	return false;
}

int wf_yield(void)
{
	wf__worker *w = wf__self();
	wf_task *t = w != NULL ? w->current : NULL;
	if (t == NULL)
		return WF_ENOTTASK;
	/* An inline child yields for its joiners too: their cancellations
	 * are its own. */
	if (WF__UNLIKELY(t->inline_parent != NULL))
		wf__inline_pull_cancel(t);
	if (take_pending_cancel(t))
		return WF_ECANCELED;
	wf__sched_switch_out(w, WF__SW_YIELD);
	if (WF__UNLIKELY(t->inline_parent != NULL))
		wf__inline_pull_cancel(t);
	return take_pending_cancel(t) ? WF_ECANCELED : 0;
}

int wf_sleep(uint64_t ms)
{
	if (!wf__in_task()) {
		struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
		while (nanosleep(&ts, &ts) != 0)
			;
		return 0;
	}
	if (ms == 0)
		return wf_yield();
	wf__waiter *w;
	int rc = wf__wait_prepare(&w, NULL);
	if (rc != 0)
		return rc;
	w->what = "sleep"; /* for task dumps */
	rc = wf__wait(w, wf__deadline_after_ms(ms));
	return rc == WF_ETIMEDOUT ? 0 : rc;
}

/* ---- introspection ----------------------------------------------------- */

wf_task *wf_current(void)
{
	wf_task *t = wf__current();
	return t != NULL ? wf__task_handle(t) : NULL;
}

const char *wf_task_name(wf_task *h)
{
	wf_task *t = task_get_or_self(h);
	return t != NULL ? wf__task_name(t) : NULL;
}

const char *wf__task_name(wf_task *t)
{
	uint32_t s = __atomic_load_n(&t->name_state, __ATOMIC_ACQUIRE);
	if (s == NAME_SET)
		return t->name;
	uint32_t none = NAME_NONE;
	if (__atomic_compare_exchange_n(&t->name_state, &none, NAME_WRITING, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		snprintf(t->name, sizeof(t->name), "task-%llu", (unsigned long long)t->id);
		__atomic_store_n(&t->name_state, NAME_SET, __ATOMIC_RELEASE);
		return t->name;
	}
	while (__atomic_load_n(&t->name_state, __ATOMIC_ACQUIRE) != NAME_SET)
		;
	return t->name;
}

bool wf_task_done(const wf_task *h)
{
	wf_task *t = task_get_or_self(h);
	return t != NULL && __atomic_load_n(&t->state, __ATOMIC_ACQUIRE) == WF__T_DONE;
}
