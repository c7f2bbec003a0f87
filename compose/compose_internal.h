/*
 * Shared by the combinators (compose.c, compose_timeout.c, group.c): cancel
 * scopes, closing the scopes a task left open, and running an unstarted
 * task on the caller's stack.
 *
 * Cancel scopes. A timeout scope and a task group may cancel the task that
 * is inside them (a deadline passed, a child failed) and must take that
 * cancellation back when the task leaves them, without taking anyone
 * else's. Each task keeps the chain of scopes it is inside (wf_task.cscope,
 * innermost first; entered and left in LIFO order by the task itself).
 *
 * A scope that asks for its task's cancellation sets `requested` under its
 * own lock (the asking side holds only that lock) and calls
 * wf__task_cancel_request. weft delivers one cancellation for the requests
 * that arrive before delivery, so one delivery may stand for the requests
 * of several scopes. Leaving settles it: the scope owns `credits`
 * cancellations (its own request, plus those that inner scopes handed
 * over). If an enclosing scope also asked, the credits go to the nearest
 * such scope (the cancellation must reach it, so the inner one neither
 * takes it back nor reports it as its own). Otherwise the scope takes back
 * up to `credits` cancellations: delivered ones first (the task's
 * `cancelling` count above what it was at the enter), then one still
 * pending in the waiter word. The enclosing scopes' locks are held while
 * deciding, so an outer request cannot slip in between the look and the
 * take-back.
 */
#ifndef WEFT_COMPOSE_INTERNAL_H
#define WEFT_COMPOSE_INTERNAL_H

#include "runtime/rt.h"

enum { WF__CS_TIMEOUT = 1, WF__CS_GROUP = 2 };

typedef struct wf__cscope {
	struct wf__cscope *outer;
	wf_task *task;
	wf__spinlock lock; /* guards requested, and the owner's own fields */
	int kind;
	int requested; /* atomic: this scope asked for its task's cancellation */
	int credits;   /* owner only: cancellations handed over by inner scopes */
	int base;      /* task->cancelling at the enter */
	const char *file; /* where it was entered (NULL: not known) */
	int line;
} wf__cscope;

/* Owner: enters cs (innermost), entered at file:line. */
void wf__cscope_push(wf__cscope *cs, wf_task *me, int kind, const char *file, int line);
/* Caller holds cs->lock: asks for cs's task's cancellation, once. */
void wf__cscope_request_locked(wf__cscope *cs);
/* Owner: leaves cs, which must be innermost, and settles its credits.
 * true if the scope took its cancellations back itself (false: it had
 * none, or handed them to an enclosing scope). */
bool wf__cscope_pop(wf__cscope *cs);

/* Owner, at its exit (wf__task_exit_scopes): closes a scope it left open,
 * which is its innermost one. A group's children are cancelled and
 * awaited first. */
void wf__timeout_close(wf__cscope *cs);
void wf__group_close(wf__cscope *cs);

/* If t has not started (and belongs to the caller's runtime), runs it to
 * its end on the calling task's stack, as wf_join does, without taking the
 * handle. true if it ran. Must be called from a task. Only for a task
 * that cannot suspend there (a cancelled one never runs its body). */
bool wf__task_run_here(wf_task *t);

#endif
