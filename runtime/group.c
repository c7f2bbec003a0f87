/*
 * Task groups (asyncio.TaskGroup): structured concurrency. A group is a
 * cancel scope (compose_internal.h) of the task that entered it, plus the
 * children spawned into it; leaving waits for every child, so no child
 * outlives the group.
 *
 * Children. Each child has an entry that holds its handle and a
 * done-callback node watching its completion (wf__fcore_watch: no
 * allocation per child beyond the entry, which comes from the group's
 * chunks and is recycled). Under the group's lock: the list of live
 * children, the FIFO of finished ones not yet joined, the count of live
 * ones and the first error. The callback (on whichever thread finished the
 * child) moves the entry from live to finished; if the child failed, it
 * cancels every live sibling and, while the owner has not reached its
 * leave, the owner itself; the last one out wakes the owner waiting in its
 * leave.
 *
 * Only the owner joins finished children (at its next spawn and at the
 * leave), so a handle in the live list is never released under anyone's
 * feet, and a long-lived group (a server's) holds only its live children
 * and those finished since the owner's last call.
 *
 * No child runs on the owner's stack (wf_join's inline path), though it
 * would save a fiber per child in fork-join: a child suspended there would
 * hold the owner, and a cancellation of the owner (an enclosing timeout,
 * say) could not reach the children. Measured on group_many, the fiber
 * costs less than the group's own bookkeeping anyway.
 *
 * The group's lock is a spinlock held for a few list operations; only a
 * failure holds it longer (cancelling each live sibling).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compose_internal.h"

#define GROUP_MAGIC 0x77666772u /* "wfgr" */
#define FIRST_CHUNK 16
#define MAX_CHUNK 1024

enum { G_BODY, G_LEAVING };

typedef struct gentry gentry;
struct gentry {
	wf__cb_node cb; /* its callback's arg is the entry */
	wf_group *g;
	wf_task *task;   /* NULL until spawned */
	gentry *prev, *next; /* live list, done FIFO, free list */
};

typedef struct gchunk {
	struct gchunk *next;
	size_t n;
	gentry e[];
} gchunk;

struct wf_group {
	wf__cscope cs; /* cs.lock guards everything below */
	uint32_t magic;
	int state;
	bool aborting; /* siblings cancelled; no new spawns */
	size_t nlive;
	gentry *live;
	gentry *done_head, *done_tail;
	gentry *free;
	gchunk *chunks;
	size_t next_chunk;
	wf__waiter *waiter; /* the owner's, while it waits at the leave */
	int first_err;
	/* Owner only. */
	wf_failure *fails;
	size_t nfails, capfails;
	int fail_oom; /* failures that could not be recorded */
};

static bool group_ok(const wf_group *g)
{
	return g != NULL && g->magic == GROUP_MAGIC;
}

/* ---- entries ------------------------------------------------------------ */

static gentry *entry_alloc_locked(wf_group *g)
{
	if (g->free == NULL) {
		size_t n = g->next_chunk;
		gchunk *c = malloc(sizeof(*c) + n * sizeof(gentry));
		if (c == NULL)
			return NULL;
		c->n = n;
		c->next = g->chunks;
		g->chunks = c;
		if (g->next_chunk < MAX_CHUNK)
			g->next_chunk *= 2;
		for (size_t i = n; i-- > 0;) {
			c->e[i].next = g->free;
			g->free = &c->e[i];
		}
	}
	gentry *e = g->free;
	g->free = e->next;
	return e;
}

static void live_link_locked(wf_group *g, gentry *e)
{
	e->prev = NULL;
	e->next = g->live;
	if (g->live != NULL)
		g->live->prev = e;
	g->live = e;
	g->nlive++;
}

static void live_unlink_locked(wf_group *g, gentry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		g->live = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	g->nlive--;
}

/* ---- failure and cancellation ------------------------------------------ */

static void abort_locked(wf_group *g, bool cancel_owner)
{
	if (!g->aborting) {
		g->aborting = true;
		for (gentry *e = g->live; e != NULL; e = e->next)
			if (e->task != NULL)
				wf__task_cancel_request(e->task);
	}
	if (cancel_owner && g->state == G_BODY)
		wf__cscope_request_locked(&g->cs);
}

static void wake_owner_locked(wf_group *g)
{
	if (g->waiter != NULL && g->nlive == 0) {
		wf__waiter_fire(g->waiter, 0, NULL);
		g->waiter = NULL;
	}
}

/* A child finished (on the thread that finished it). */
static void child_done(wf_future *owner, void *arg)
{
	(void)owner;
	gentry *e = arg;
	wf_group *g = e->g;
	int err = e->task->core.err;
	wf__spin_lock(&g->cs.lock);
	live_unlink_locked(g, e);
	e->next = NULL;
	if (g->done_tail != NULL)
		g->done_tail->next = e;
	else
		g->done_head = e;
	g->done_tail = e;
	if (err != 0 && err != WF_ECANCELED) {
		if (g->first_err == 0)
			g->first_err = err;
		abort_locked(g, true);
	}
	wake_owner_locked(g);
	wf__spin_unlock(&g->cs.lock); /* the last touch of g */
}

static void record_failure(wf_group *g, int err, char *msg, const char *name)
{
	if (g->nfails == g->capfails) {
		size_t cap = g->capfails ? g->capfails * 2 : 4;
		wf_failure *f = realloc(g->fails, cap * sizeof(*f));
		if (f == NULL) {
			g->fail_oom++;
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

/* Owner: joins the finished children and recycles their entries. */
static void drain_done(wf_group *g)
{
	wf__spin_lock(&g->cs.lock);
	gentry *list = g->done_head;
	g->done_head = g->done_tail = NULL;
	wf__spin_unlock(&g->cs.lock);
	if (list == NULL)
		return;
	gentry *last = list;
	for (gentry *e = list; e != NULL; e = e->next) {
		char name[WF__NAME_MAX];
		snprintf(name, sizeof(name), "%s", wf_task_name(e->task));
		char *msg = NULL;
		int err = wf_join_ex(e->task, NULL, &msg); /* finished: no wait */
		if (err != 0 && err != WF_ECANCELED)
			record_failure(g, err, msg, name);
		else
			free(msg);
		e->task = NULL;
		last = e;
	}
	wf__spin_lock(&g->cs.lock);
	last->next = g->free;
	g->free = list;
	wf__spin_unlock(&g->cs.lock);
}

/* ---- the API ------------------------------------------------------------ */

int wf_group_enter(wf_group **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	wf_group *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return WF_ENOMEM;
	g->magic = GROUP_MAGIC;
	g->state = G_BODY;
	g->next_chunk = FIRST_CHUNK;
	wf__cscope_push(&g->cs, me, WF__CS_GROUP);
	*out = g;
	return 0;
}

int wf_group_spawn(wf_group *g, wf_fn fn, void *arg, const wf_spawn_opts *opts,
		   wf_task **child)
{
	if (child != NULL)
		*child = NULL;
	if (!group_ok(g) || fn == NULL)
		return WF_EINVAL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	if (me == g->cs.task)
		drain_done(g);
	wf__spin_lock(&g->cs.lock);
	if (g->aborting) {
		wf__spin_unlock(&g->cs.lock);
		return WF_ESHUTDOWN;
	}
	gentry *e = entry_alloc_locked(g);
	if (e == NULL) {
		wf__spin_unlock(&g->cs.lock);
		return WF_ENOMEM;
	}
	e->g = g;
	e->task = NULL;
	e->cb.cb = child_done;
	e->cb.arg = e;
	live_link_locked(g, e);
	wf__spin_unlock(&g->cs.lock);

	wf_spawn_opts o = {0};
	if (opts != NULL)
		o = *opts;
	o.detached = false;
	wf_task *t;
	int rc = wf_spawn_ex(fn, arg, &o, &t);

	wf__spin_lock(&g->cs.lock);
	if (rc != 0) {
		live_unlink_locked(g, e);
		e->next = g->free;
		g->free = e;
		wake_owner_locked(g);
		wf__spin_unlock(&g->cs.lock);
		return rc;
	}
	e->task = t;
	if (g->aborting) /* a sibling failed meanwhile */
		wf__task_cancel_request(t);
	wf__spin_unlock(&g->cs.lock);
	if (child != NULL)
		*child = t;
	wf__fcore_watch(&t->core, &e->cb, NULL); /* may run child_done now */
	return 0;
}

int wf_group_cancel(wf_group *g)
{
	if (!group_ok(g))
		return WF_EINVAL;
	wf__spin_lock(&g->cs.lock);
	abort_locked(g, false);
	wf__spin_unlock(&g->cs.lock);
	return 0;
}

/* Owner, at the leave: waits until no child is live. A cancellation of
 * the owner meanwhile cancels the children (and stays counted). */
static void wait_children(wf_group *g)
{
	for (;;) {
		drain_done(g);
		wf__spin_lock(&g->cs.lock);
		if (g->nlive == 0) {
			wf__spin_unlock(&g->cs.lock);
			return;
		}
		wf__waiter *w;
		int rc = wf__wait_prepare(&w, NULL);
		if (rc == 0) {
			g->waiter = w;
			wf__spin_unlock(&g->cs.lock);
			rc = wf__wait(w, WF__NO_DEADLINE);
			wf__spin_lock(&g->cs.lock);
			if (g->waiter == w)
				g->waiter = NULL;
		}
		if (rc == WF_ECANCELED)
			abort_locked(g, false);
		wf__spin_unlock(&g->cs.lock);
	}
}

static void group_free(wf_group *g)
{
	g->magic = 0;
	while (g->chunks != NULL) {
		gchunk *c = g->chunks;
		g->chunks = c->next;
		free(c);
	}
	free(g->fails);
	free(g);
}

int wf_group_leave(wf_group *g, wf_failure **failures, size_t *nfailures)
{
	if (failures != NULL)
		*failures = NULL;
	if (nfailures != NULL)
		*nfailures = 0;
	if (!group_ok(g))
		return WF_EINVAL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	if (g->cs.task != me || me->cscope != &g->cs)
		return WF_EINVAL;

	wf__spin_lock(&g->cs.lock);
	g->state = G_LEAVING;
	bool requested = __atomic_load_n(&g->cs.requested, __ATOMIC_RELAXED) != 0;
	/* Cancelled from outside while in the body: the children go too. */
	if (me->cancelling > g->cs.base + (requested ? 1 : 0))
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

void wf_failures_free(wf_failure *failures, size_t n)
{
	if (failures == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(failures[i].msg);
	free(failures);
}
