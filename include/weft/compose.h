/*
 * weft: composing tasks. asyncio's gather, wait, wait_for, timeout,
 * as_completed, shield and TaskGroup, for tasks that run on many workers.
 * Included by weft.h (and includes it).
 *
 * Handles. wf_gather and wf_wait_for give back the handles they are passed,
 * as wf_join does (they are "join" for many tasks, or with a deadline);
 * wf_wait and the as_completed iterator only look at them, and the caller
 * joins each task afterwards (at once, since it has finished). Futures are
 * never released by these calls.
 *
 * Cancellation. A combinator that waits is a suspension like any other:
 * cancelling the waiting task makes it return WF_ECANCELED (gather first
 * cancels its children and waits for them). docs/cancellation.md has the
 * rules.
 */
#ifndef WEFT_COMPOSE_H
#define WEFT_COMPOSE_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The outcome of one task or future, as wf_join_ex gives it. */
typedef struct wf_outcome {
	int err;     /* 0, its error, or WF_EAGAIN: it had not finished */
	void *value; /* its result when err == 0, else NULL */
	char *msg;   /* its failure message (malloc'd: wf_outcomes_clear) or NULL */
} wf_outcome;

/* Frees the messages of out[0..n-1] and sets them to NULL. */
WF_EXTERN void wf_outcomes_clear(wf_outcome *out, size_t n);

/* ------------------------------------------------------------------------
 * gather
 * ---------------------------------------------------------------------- */
enum wf_gather_flags {
	/* asyncio's return_exceptions=True: wait for every task and return 0,
	 * each outcome (failures included) in out. */
	WF_GATHER_ALL = 1u << 0,
};

/* [any] asyncio.gather: waits for tasks[0..n-1] and stores each outcome in
 * out[i] (argument order; out may be NULL). Gives back every handle.
 * Default: returns 0 once all succeeded, or the first failure (the first
 * to be seen finishing with an error, WF_ECANCELED included) as soon as it
 * is seen: the tasks still running then go on, detached (out[i].err is
 * WF_EAGAIN), and a later failure of theirs is reported as never joined.
 * With WF_GATHER_ALL: waits for all and returns 0.
 * If the calling task is cancelled while it waits, every unfinished task
 * is cancelled and waited for, and WF_ECANCELED is returned (the caller's
 * cancellation stays counted: wf_cancelling). WF_EINVAL (NULL array with
 * n > 0, a NULL or released handle, unknown flags: nothing is given back
 * then). Each task at most once; no other join of them meanwhile. */
WF_EXTERN int wf_gather(wf_task *const *tasks, size_t n, wf_outcome *out, unsigned flags);

/* [any] wf_gather for futures; none is released. Cancelling the caller
 * cancels the pending futures (wf_future_cancel). */
WF_EXTERN int wf_gather_futures(wf_future *const *futures, size_t n, wf_outcome *out,
				unsigned flags);

/* ------------------------------------------------------------------------
 * wait
 * ---------------------------------------------------------------------- */
enum wf_wait_when {
	WF_FIRST_COMPLETED = 1, /* as soon as one has finished */
	WF_FIRST_EXCEPTION = 2, /* as soon as one failed (not cancelled); else all */
	WF_ALL_COMPLETED = 3,   /* when all have finished */
};

/* [any] asyncio.wait: waits until `when` holds or timeout_ms passes
 * (WF_FOREVER: no timeout), then stores in done[i] whether tasks[i] has
 * finished: the done set, and the pending set (done[i] false). Returns how
 * many are done (>= 0; a timeout is not an error), WF_ECANCELED if the
 * caller is cancelled, WF_EINVAL. Cancels nothing and releases nothing. */
WF_EXTERN int wf_wait(wf_task *const *tasks, size_t n, int when, uint64_t timeout_ms, bool *done);
/* [any] wf_wait for futures. */
WF_EXTERN int wf_wait_futures(wf_future *const *futures, size_t n, int when,
			      uint64_t timeout_ms, bool *done);

/* ------------------------------------------------------------------------
 * wait_for
 * ---------------------------------------------------------------------- */
/* [any] asyncio.wait_for: wf_join with a deadline. If t has not finished
 * after timeout_ms, t is cancelled and waited for, and WF_ETIMEDOUT is
 * returned, unless t finished anyway (it handled the cancellation, or
 * finished as it arrived): then its outcome is returned. The handle is
 * given back in every case but WF_EINVAL, WF_EDEADLK and WF_EBUSY (as
 * wf_join). Cancelling the caller cancels t, as wf_join does. */
WF_EXTERN int wf_wait_for(wf_task *t, void **result, uint64_t timeout_ms);
/* [any] asyncio.wait_for on a future: on timeout f is cancelled
 * (wf_future_cancel) and WF_ETIMEDOUT returned; so is it when the caller
 * is cancelled (WF_ECANCELED). f is not released. */
WF_EXTERN int wf_wait_for_future(wf_future *f, void **value, uint64_t timeout_ms);

/* ------------------------------------------------------------------------
 * Timeout scopes
 * ---------------------------------------------------------------------- */
/* asyncio.timeout. Lives on the task's stack; the fields are private.
 *
 *     wf_timeout to;
 *     wf_timeout_enter(&to, 500);
 *     int rc = fetch_all(...);      // any number of suspensions
 *     rc = wf_timeout_leave(&to, rc);  // WF_ETIMEDOUT if it expired
 *
 * Once the deadline passes, the task is cancelled: its current suspension
 * (or its next one) returns WF_ECANCELED, as after wf_cancel. Leaving turns
 * that WF_ECANCELED into WF_ETIMEDOUT and takes the scope's cancellation
 * back (wf_cancelling is as before). Scopes (and task groups) nest and must
 * be left in the reverse order of entering, by the task that entered them.
 * An inner scope never takes an outer scope's expiry for its own: if both
 * expired, the inner one returns WF_ECANCELED and the outer one turns it
 * into WF_ETIMEDOUT. Costs nothing to tasks that use no scope; a scope with
 * a deadline runs a small helper task until it is left. */
typedef struct wf_timeout {
	uint64_t priv[10]; /* private: read through the functions */
} wf_timeout;

/* [task] Enters a scope whose deadline is timeout_ms from now (WF_FOREVER:
 * none yet; 0: already expired). 0, WF_EINVAL, WF_ENOTTASK, WF_ENOMEM.
 * The macro records where the scope was entered: a task that returns
 * without leaving it is reported on stderr with that place, the scope is
 * closed for it, and the task fails with WF_EINVAL ("returned inside an
 * open timeout scope opened at file.c:12"). */
WF_EXTERN int wf_timeout_enter_at(wf_timeout *to, uint64_t timeout_ms, const char *file, int line);
WF_EXTERN int(wf_timeout_enter)(wf_timeout *to, uint64_t timeout_ms);
#define wf_timeout_enter(to, timeout_ms) wf_timeout_enter_at((to), (timeout_ms), __FILE__, __LINE__)
/* [task] Moves the deadline to timeout_ms from now (WF_FOREVER: none),
 * while inside the scope. WF_EALREADY if it had already expired (the
 * cancellation cannot be taken back; the deadline is left as it was). */
WF_EXTERN int wf_timeout_reschedule(wf_timeout *to, uint64_t timeout_ms);
/* [any] true once the scope's deadline passed while the task was inside it
 * (also after the leave; false for NULL or a wf_timeout never entered). */
WF_EXTERN bool wf_timeout_expired(const wf_timeout *to);
/* [task] Leaves the scope. rc is what the code inside it returns; the
 * result is rc, or WF_ETIMEDOUT if rc is WF_ECANCELED because the scope
 * expired (and no other cancellation is pending). WF_EINVAL for a scope
 * that is not the calling task's innermost one, or was left already. */
WF_EXTERN int wf_timeout_leave(wf_timeout *to, int rc);

/* ------------------------------------------------------------------------
 * as_completed
 * ---------------------------------------------------------------------- */
typedef struct wf_as_completed wf_as_completed;

/* [any] asyncio.as_completed: an iterator over tasks[0..n-1] (or futures)
 * in the order they finish. Looks at the handles, does not take them: free
 * the iterator before joining or detaching a task it has not handed out.
 * *out is freed by wf_as_completed_free. 0, WF_EINVAL, WF_ENOMEM. */
WF_EXTERN int wf_as_completed_new(wf_task *const *tasks, size_t n, wf_as_completed **out);
WF_EXTERN int wf_as_completed_new_futures(wf_future *const *futures, size_t n,
					  wf_as_completed **out);
/* [any] Waits for the next one to finish and stores its index in *index:
 * 0, WF_EOF once every one was handed out, WF_ETIMEDOUT after timeout_ms
 * (WF_FOREVER: none), WF_ECANCELED if the caller is cancelled (nothing is
 * cancelled), WF_EINVAL (NULL or freed). */
WF_EXTERN int wf_as_completed_next(wf_as_completed *ac, uint64_t timeout_ms, size_t *index);
/* [any] Frees the iterator; the tasks and futures are untouched. Does
 * nothing for NULL or an iterator already freed. */
WF_EXTERN void wf_as_completed_free(wf_as_completed *ac);

/* ------------------------------------------------------------------------
 * shield
 * ---------------------------------------------------------------------- */
/* [any] asyncio.shield: takes t's handle and gives a new future completed
 * with t's outcome. A task that awaits the future and is cancelled gets
 * WF_ECANCELED at once while t runs on; cancelling the future does not
 * cancel t either. t's failure is not reported as never joined: it is the
 * future's. The caller owns *out (wf_future_release). 0, WF_EINVAL (the
 * handle is then untouched), WF_ENOMEM. */
WF_EXTERN int wf_shield(wf_task *t, wf_future **out);

/* ------------------------------------------------------------------------
 * Task groups
 * ---------------------------------------------------------------------- */
typedef struct wf_group wf_group;

/* One failed child of a group. */
typedef struct wf_failure {
	int err;      /* its error code */
	char *msg;    /* its message (malloc'd) or NULL */
	char name[32]; /* its name */
} wf_failure;

/* [task] asyncio.TaskGroup: enters a group owned by the calling task.
 * Groups nest (with each other and with timeout scopes) and are left in
 * the reverse order. *out is freed by wf_group_leave; its handle then gets
 * WF_EINVAL. The macro records where the group was entered: a task that
 * returns without leaving it is reported on stderr with that place, its
 * children are cancelled and awaited, and the task fails with WF_EINVAL
 * ("returned inside an open task group opened at file.c:12"). */
WF_EXTERN int wf_group_enter_at(wf_group **out, const char *file, int line);
WF_EXTERN int(wf_group_enter)(wf_group **out);
#define wf_group_enter(out) wf_group_enter_at((out), __FILE__, __LINE__)

/* [task] Spawns fn(arg) into g (opts as wf_spawn_ex; detached is ignored).
 * The owner spawns into its group, and so may its children (asyncio's
 * tg.create_task from a child), or any task that knows the group has not
 * been left. *child (may be NULL) is borrowed: the group keeps the handle;
 * it may be cancelled or named, never joined or detached, and is valid
 * until the child finished and the owner next calls wf_group_spawn or
 * wf_group_leave (the owner joins finished children then, so a long-lived
 * group holds only the children still running).
 * WF_ESHUTDOWN once a child failed or the group was cancelled (the group
 * is winding down) and, from a task other than the owner, once the owner
 * is leaving and every child has finished (the group is ending); WF_EINVAL
 * (also once the group was left), WF_ENOMEM, WF_ENOTTASK. */
WF_EXTERN int wf_group_spawn(wf_group *g, wf_fn fn, void *arg, const wf_spawn_opts *opts,
			     wf_task **child);

/* [any] Cancels every child still running (as when a child fails).
 * 0, WF_EINVAL. */
WF_EXTERN int wf_group_cancel(wf_group *g);

/* [task] Leaves the group: waits for every child, then frees g. Never
 * returns while a child runs. The first child that fails (with an error
 * other than WF_ECANCELED) gets every other child cancelled, and the owner
 * too if it is still before its leave: its suspensions return
 * WF_ECANCELED, and leaving takes that cancellation back. Returns 0, the
 * first failure's code, or WF_ECANCELED if the owner was cancelled from
 * outside (then every child is cancelled too, and the cancellation stays
 * counted).
 * Every failure, not only the first, is stored in *failures (a malloc'd
 * array of *nfailures entries, or NULL; free it with wf_failures_free);
 * pass NULL to drop them. WF_EINVAL (the group is not the calling task's
 * innermost scope). */
WF_EXTERN int wf_group_leave(wf_group *g, wf_failure **failures, size_t *nfailures);

/* Frees an array that wf_group_leave returned. */
WF_EXTERN void wf_failures_free(wf_failure *failures, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_COMPOSE_H */
