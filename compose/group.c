/*
 * Task groups (asyncio.TaskGroup): structured concurrency. A group is a
 * cancel scope (compose_internal.h) of the task that entered it, plus the
 * children spawned into it; leaving waits for every child, so no child
 * outlives the group.
 *
 * Children. Each child has an entry that holds its handle and a
 * done-callback node watching its completion (wf__fcore_watch: nothing is
 * allocated per child beyond the entry, which comes from the owner's
 * chunks and is recycled). An entry goes FREE -> LIVE (spawned) -> DONE
 * (its callback ran) -> FREE (the owner joined the child). The common path
 * takes no lock:
 *   - the owner spawns with an entry of its own (owner-only free list);
 *   - the callback (on whichever thread finished the child) marks the
 *     entry DONE, pushes it on the `done` stack (one CAS) and decrements
 *     `nlive`;
 *   - the owner joins what is on `done` at its next spawn and at its leave.
 * `nlive` counts the live children plus one for the owner until it leaves.
 * A spawn by another task counts its child before it spawns, and only
 * while `nlive` is not zero (live_get_unless_ended): the owner may be
 * leaving. Whoever brings it to zero ends the group: the owner itself at its leave,
 * or the last child's callback, which then (under the lock) sets `zeroed`
 * and fires the owner's waiter; the owner frees the group only once it saw
 * `zeroed` under the lock, after which no callback touches the group.
 *
 * The lock guards the rare paths: a failure (the first one cancels every
 * LIVE child, and the owner if it is still in the body), wf_group_cancel,
 * the owner's wait, a new chunk, entries of spawns made by other tasks.
 * Cancelling walks every entry under the lock and cancels the LIVE ones;
 * the owner joins (releases) children under the lock too, so a handle seen
 * LIVE by a walk cannot be released while the walk runs. A spawn publishes
 * its entry LIVE before it reads `aborting`, and a walk sets `aborting`
 * before it reads the entries (both sequentially consistent): a child
 * spawned during a walk is cancelled by one side or the other.
 *
 * No child runs on the owner's stack (wf_join's inline path), though it
 * would save a fiber per child in fork-join: a child suspended there would
 * hold the owner, and a cancellation of the owner (an enclosing timeout,
 * say) could not reach the children.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compose/compose_internal.h"
#include "runtime/handle.h"
#include "runtime/waiting.h"

#define FIRST_CHUNK 16
#define MAX_CHUNK 1024

enum { G_BODY, G_LEAVING };
enum { E_FREE, E_LIVE, E_DONE };

typedef struct gentry gentry;
struct gentry {
	wf__cb_node cb; /* its callback's arg is the entry */
	wf_group *g;
	wf_task *task; /* its handle, the group's until joined */
	wf_task *raw;  /* the task itself, alive while the handle is held */
	uint32_t state;  /* atomic E_* */
	bool own_alloc;  /* malloc'd for a spawn made by another task */
	gentry *next;    /* done stack, free list */
	gentry *xprev, *xnext; /* the extras list (own_alloc entries) */
};

typedef struct gchunk {
	struct gchunk *next;
	size_t n;
	gentry e[];
} gchunk;

struct wf_group {
	wf__hdr hdr;   /* handed out as a handle */
	wf__cscope cs; /* cs.lock guards the rare paths (top comment) */
	int state;     /* lock */
	int aborting;  /* atomic (set under the lock): no new spawns */
	uint32_t nlive; /* atomic: live children + 1 until the owner leaves */
	gentry *done;  /* atomic: stack of DONE entries not yet joined */
	bool zeroed;   /* lock: nlive reached zero */
	wf__waiter *waiter; /* lock: the owner's, while it waits at the leave */
	int first_err;      /* lock */
	gchunk *chunks;     /* lock to add, walked under the lock */
	gentry *extras;     /* lock: own_alloc entries not yet joined */
	/* Owner only. */
	gentry *free;
	size_t next_chunk;
	wf_failure *fails;
	size_t nfails, capfails;
};

static wf__htype group_type = WF__HTYPE_INIT(WF__K_GROUP, struct wf_group);

static wf_group *group_get(const wf_group *h)
{
	return wf__handle_get(h, WF__K_GROUP);
}

static wf_group *group_of_cs(wf__cscope *cs)
{
	return (wf_group *)(void *)((char *)cs - offsetof(wf_group, cs));
}

/* ---- entries ------------------------------------------------------------ */

/* Owner only. */
static gentry *entry_alloc(wf_group *g)
{
	if (g->free == NULL) {
		size_t n = g->next_chunk;
		gchunk *c = malloc(sizeof(*c) + n * sizeof(gentry));
		if (c == NULL)
			return NULL;
		c->n = n;
		for (size_t i = n; i-- > 0;) {
			c->e[i].state = E_FREE;
			c->e[i].next = g->free;
			g->free = &c->e[i];
		}
		if (g->next_chunk < MAX_CHUNK)
			g->next_chunk *= 2;
		wf__spin_lock(&g->cs.lock);
		c->next = g->chunks;
		g->chunks = c;
		wf__spin_unlock(&g->cs.lock);
	}
	gentry *e = g->free;
	g->free = e->next;
	e->own_alloc = false;
	return e;
}

/* ---- failure and cancellation ------------------------------------------ */

static void cancel_if_live(gentry *e)
{
	if (__atomic_load_n(&e->state, __ATOMIC_SEQ_CST) == E_LIVE)
		wf__task_cancel_request(e->raw);
}

static void abort_locked(wf_group *g, bool cancel_owner)
{
	if (!__atomic_load_n(&g->aborting, __ATOMIC_RELAXED)) {
		__atomic_store_n(&g->aborting, 1, __ATOMIC_SEQ_CST);
		for (gchunk *c = g->chunks; c != NULL; c = c->next)
			for (size_t i = 0; i < c->n; i++)
				cancel_if_live(&c->e[i]);
		for (gentry *e = g->extras; e != NULL; e = e->xnext)
			cancel_if_live(e);
	}
	if (cancel_owner && g->state == G_BODY)
		wf__cscope_request_locked(&g->cs);
}

/* Drops one from nlive; the one that reaches zero ends the group. Must be
 * the caller's last touch of g unless it is the owner. */
static void live_put(wf_group *g)
{
	if (__atomic_sub_fetch(&g->nlive, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	wf__spin_lock(&g->cs.lock);
	g->zeroed = true;
	if (g->waiter != NULL) {
		wf__waiter_fire(g->waiter, 0, NULL);
		g->waiter = NULL;
	}
	wf__spin_unlock(&g->cs.lock);
}

/* A child finished (on the thread that finished it). */
static void child_done(wf_future *owner, void *arg)
{
	(void)owner;
	gentry *e = arg;
	wf_group *g = e->g;
	int err = e->raw->core.err;
	bool failed = err != 0 && err != WF_ECANCELED;
	if (failed) {
		/* Failures are pushed under the lock too, so the failures
		 * list starts with the one whose code the leave returns. */
		wf__spin_lock(&g->cs.lock);
		if (g->first_err == 0)
			g->first_err = err;
		abort_locked(g, true);
	}
	__atomic_store_n(&e->state, E_DONE, __ATOMIC_SEQ_CST);
	gentry *head = __atomic_load_n(&g->done, __ATOMIC_RELAXED);
	do {
		e->next = head;
	} while (!__atomic_compare_exchange_n(&g->done, &head, e, true, __ATOMIC_RELEASE,
					      __ATOMIC_RELAXED));
	if (failed)
		wf__spin_unlock(&g->cs.lock);
	live_put(g);
}

static void record_failure(wf_group *g, int err, char *msg, const char *name)
{
	if (g->nfails == g->capfails) {
		size_t cap = g->capfails ? g->capfails * 2 : 4;
		wf_failure *f = realloc(g->fails, cap * sizeof(*f));
		if (f == NULL) { /* the first failure is still returned */
			free(msg);
			return;
		}
		g->fails = f;
		g->capfails = cap;
	}
	wf_failure *f = &g->fails[g->nfails++];
	f->err = err;
	f->msg = msg;
	snprintf(f->name, sizeof(f->name), "%s", name != NULL ? name : "");
}

/* Owner: joins the finished children (in the order they finished) and
 * recycles their entries. */
static void drain_done(wf_group *g)
{
	if (__atomic_load_n(&g->done, __ATOMIC_RELAXED) == NULL)
		return;
	gentry *stack = __atomic_exchange_n(&g->done, NULL, __ATOMIC_ACQUIRE);
	gentry *list = NULL;
	while (stack != NULL) { /* reverse: oldest first */
		gentry *e = stack;
		stack = e->next;
		e->next = list;
		list = e;
	}
	/* Under the lock: a cancelling walk never sees a handle released. */
	wf__spin_lock(&g->cs.lock);
	for (gentry *e = list; e != NULL; e = e->next) {
		wf_task *t = e->task;
		int err = e->raw->core.err; /* finished: published before its callback */
		if (err == 0 || err == WF_ECANCELED) {
			wf_join(t, NULL); /* no wait */
		} else {
			char name[WF__NAME_MAX];
			snprintf(name, sizeof(name), "%s", wf_task_name(t));
			char *msg = NULL;
			wf_join_ex(t, NULL, &msg);
			record_failure(g, err, msg, name);
		}
		__atomic_store_n(&e->state, E_FREE, __ATOMIC_RELAXED);
		if (e->own_alloc) {
			if (e->xprev != NULL)
				e->xprev->xnext = e->xnext;
			else
				g->extras = e->xnext;
			if (e->xnext != NULL)
				e->xnext->xprev = e->xprev;
		}
	}
	wf__spin_unlock(&g->cs.lock);
	while (list != NULL) {
		gentry *e = list;
		list = e->next;
		if (e->own_alloc) {
			free(e);
		} else {
			e->next = g->free;
			g->free = e;
		}
	}
}

/* ---- the API ------------------------------------------------------------ */

int wf_group_enter_at(wf_group **out, const char *file, int line)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	wf_group *g = wf__hobj_alloc(&group_type);
	if (g == NULL)
		return WF_ENOMEM;
	g->state = G_BODY;
	/* Atomic: a spawn through the handle of the group this memory held
	 * before may still count on it (live_get_unless_ended). */
	__atomic_store_n(&g->nlive, 1, __ATOMIC_RELAXED); /* the owner's, until it leaves */
	g->next_chunk = FIRST_CHUNK;
	wf__cscope_push(&g->cs, me, WF__CS_GROUP, file, line);
	*out = wf__handle_of(g);
	return 0;
}

int(wf_group_enter)(wf_group **out)
{
	return wf_group_enter_at(out, NULL, 0);
}

/* A spawn by a task other than the owner counts its child in nlive before
 * it spawns: the owner may be leaving, and once nlive is zero the group is
 * ending and its owner frees it, so the count is taken only while it is
 * not zero. Then h is decoded again, since g's memory may serve another
 * group by then (the count taken was that group's, and goes back through
 * live_put, which ends that group if it was the last). */
static bool live_get_unless_ended(wf_group *g, const wf_group *h)
{
	if (!wf__ref_unless_zero(&g->nlive))
		return false;
	if (WF__UNLIKELY(group_get(h) != g)) {
		live_put(g);
		return false;
	}
	return true;
}

int wf_group_spawn(wf_group *h, wf_fn fn, void *arg, const wf_spawn_opts *opts,
		   wf_task **child)
{
	if (child != NULL)
		*child = NULL;
	wf_group *g = group_get(h);
	if (g == NULL || fn == NULL)
		return WF_EINVAL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	/* Owner: g's scope is one of ours (read from our own scope chain,
	 * not from g, whose memory another group may hold by now if we are
	 * not its owner and it ended). */
	bool owner = false;
	for (const wf__cscope *cs = me->cscope; cs != NULL && !owner; cs = cs->outer)
		owner = cs == &g->cs;
	if (owner)
		drain_done(g); /* the owner's own share keeps g alive */
	else if (!live_get_unless_ended(g, h))
		return WF_ESHUTDOWN;
	if (__atomic_load_n(&g->aborting, __ATOMIC_RELAXED)) {
		if (!owner)
			live_put(g);
		return WF_ESHUTDOWN;
	}
	gentry *e = owner ? entry_alloc(g) : malloc(sizeof(*e));
	if (e == NULL) {
		if (!owner)
			live_put(g);
		return WF_ENOMEM;
	}
	e->own_alloc = !owner;
	if (!owner) /* an owner's entry is FREE already, and walks read it */
		e->state = E_FREE;
	e->g = g;
	e->cb.cb = child_done;
	e->cb.arg = e;

	wf_spawn_opts o = {0};
	if (opts != NULL)
		o = *opts;
	o.detached = false;
	int rc = wf_spawn_ex(fn, arg, &o, &e->task);
	if (rc != 0) {
		if (owner) {
			e->next = g->free;
			g->free = e;
		} else {
			free(e);
			live_put(g);
		}
		return rc;
	}
	wf_task *t = e->raw = wf__task_get(e->task);
	if (owner)
		__atomic_add_fetch(&g->nlive, 1, __ATOMIC_RELAXED);
	if (!owner) {
		wf__spin_lock(&g->cs.lock);
		e->xprev = NULL;
		e->xnext = g->extras;
		if (g->extras != NULL)
			g->extras->xprev = e;
		g->extras = e;
		wf__spin_unlock(&g->cs.lock);
	}
	__atomic_store_n(&e->state, E_LIVE, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&g->aborting, __ATOMIC_SEQ_CST)) /* a walk ran meanwhile */
		wf__task_cancel_request(t);
	if (child != NULL)
		*child = e->task;
	wf__fcore_watch(&t->core, &e->cb, NULL); /* may run child_done now */
	return 0;
}

int wf_group_cancel(wf_group *h)
{
	wf_group *g = group_get(h);
	if (g == NULL)
		return WF_EINVAL;
	wf__spin_lock(&g->cs.lock);
	abort_locked(g, false);
	wf__spin_unlock(&g->cs.lock);
	return 0;
}

/* Owner, at the leave: drops its own share of nlive and waits until the
 * group ended. A cancellation of the owner meanwhile cancels the children
 * (and stays counted). */
static void wait_children(wf_group *g)
{
	live_put(g);
	for (;;) {
		drain_done(g);
		wf__spin_lock(&g->cs.lock);
		if (g->zeroed) {
			wf__spin_unlock(&g->cs.lock);
			drain_done(g);
			return;
		}
		/* Fired (code 0) by the callback that brings nlive to zero. */
		wf__waiting wg = {.lock = &g->cs.lock, .slot = &g->waiter,
				  .what = "task group's children", .obj = g,
				  .deadline = WF__NO_DEADLINE, .keep_lock = true};
		int rc = wf__wait_on(&wg);
		if (rc == WF_ECANCELED) {
			if (!wg.gave_up)
				wf__spin_lock(&g->cs.lock);
			abort_locked(g, false);
			wf__spin_unlock(&g->cs.lock);
		} else if (wg.gave_up) {
			wf__spin_unlock(&g->cs.lock);
		}
	}
}

static void group_free(wf_group *g)
{
	while (g->chunks != NULL) {
		gchunk *c = g->chunks;
		g->chunks = c->next;
		free(c);
	}
	free(g->fails);
	wf__hobj_free(&group_type, g);
}

/* Leaves g (the calling task's innermost scope): waits for every child,
 * settles the scope and frees g. Returns as wf_group_leave. */
static int group_leave(wf_group *g, wf_task *me, wf_failure **failures, size_t *nfailures)
{
	wf__spin_lock(&g->cs.lock);
	g->state = G_LEAVING;
	/* Cancelled from outside while in the body: the children go too. A
	 * cancellation the group asked for came with an abort already. */
	if (!__atomic_load_n(&g->cs.requested, __ATOMIC_RELAXED) && me->cancelling > g->cs.base)
		abort_locked(g, false);
	wf__spin_unlock(&g->cs.lock);

	wait_children(g);
	wf__cscope_pop(&g->cs);

	int rc = g->first_err;
	if (rc == 0 && me->cancelling > g->cs.base)
		rc = WF_ECANCELED;
	if (failures != NULL && nfailures != NULL && g->nfails > 0) {
		*failures = g->fails;
		*nfailures = g->nfails;
		g->fails = NULL;
	} else {
		for (size_t i = 0; i < g->nfails; i++)
			free(g->fails[i].msg);
	}
	group_free(g);
	return rc;
}

int wf_group_leave(wf_group *h, wf_failure **failures, size_t *nfailures)
{
	if (failures != NULL)
		*failures = NULL;
	if (nfailures != NULL)
		*nfailures = 0;
	wf_group *g = group_get(h);
	if (g == NULL)
		return WF_EINVAL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	if (g->cs.task != me || me->cscope != &g->cs)
		return WF_EINVAL;
	return group_leave(g, me, failures, nfailures);
}

void wf__group_close(wf__cscope *cs)
{
	wf_group *g = group_of_cs(cs);
	/* Its owner has returned: nothing it started may outlive it. */
	wf__spin_lock(&g->cs.lock);
	abort_locked(g, false);
	wf__spin_unlock(&g->cs.lock);
	group_leave(g, cs->task, NULL, NULL);
}

void wf_failures_free(wf_failure *failures, size_t n)
{
	if (failures == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(failures[i].msg);
	free(failures);
}
