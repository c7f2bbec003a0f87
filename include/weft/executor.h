/*
 * weft: executor pools (asyncio's run_in_executor and to_thread); included
 * by weft.h.
 *
 * A task that must call blocking code (a blocking library, nanosleep,
 * getaddrinfo, a long computation) hands the call to a pool of plain
 * threads and suspends; its worker goes on running other tasks. Pool
 * threads never run tasks.
 *
 * The default blocking pool (pool argument NULL) is created on first use
 * and starts with no thread. It grows on demand, one thread per call that
 * finds no idle thread, up to a bound (default 1024, so that a thousand
 * blocking calls are all in flight at once); beyond the bound calls wait in
 * an unbounded queue (never failed). A thread idle for the keep-alive
 * (default 10 s) exits. wf_run shuts the default pool down when it ends.
 * Environment, read on first use: WEFT_BLOCKING_MAX=<threads>,
 * WEFT_BLOCKING_KEEPALIVE_MS=<ms>.
 *
 * User pools (wf_pool_new) have a name and a fixed size, asyncio's
 * ThreadPoolExecutor(max_workers): threads start on demand up to that size
 * and stay until wf_pool_shutdown. Their threads are named "<name>-<n>"
 * (first 15 bytes, as Linux allows; visible in top -H and gdb); the default
 * pool's are "wf-blocking-<n>".
 *
 * A call is a wf_fn: `void *fn(void *arg)`, run on a pool thread. Its value
 * is the future's value; to fail instead, it returns
 * wf_blocking_fail(err, msg), and the future fails with err and the message.
 *
 * Ownership of a call's arg and value. When the call's own outcome reaches
 * the caller (the future is completed with it), arg and value are the
 * caller's. When it does not (the caller cancelled, or the pool was shut
 * down with WF_POOL_CANCEL before the call started), the call's drop
 * function, if given (wf_call_opts), is called once with arg and the value
 * (NULL if the call never ran or failed) after the call has ended or is
 * known never to run, so that nothing leaks. A cancelled call may still be
 * running when its caller has moved on: its arg must not point into the
 * caller's stack unless the caller cannot be cancelled. A submission that
 * fails (an error returned at once) leaves arg with the caller; drop is not
 * called.
 *
 * A call that waits for another call of its own pool deadlocks once every
 * thread of the pool does so (as with any bounded pool): give nested calls
 * a pool of their own.
 */
#ifndef WEFT_EXECUTOR_H
#define WEFT_EXECUTOR_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An executor pool. Opaque; a user pool is freed by wf_pool_shutdown. */
typedef struct wf_pool wf_pool;

/* The most threads a pool may have (user pools and the default bound). */
#define WF_POOL_MAX_THREADS 32768u

/* wf_pool_shutdown's modes. */
enum wf_pool_shutdown_mode {
	WF_POOL_WAIT = 1,   /* run every queued call, then stop */
	WF_POOL_CANCEL = 2, /* queued calls fail with WF_ECANCELED */
};

/* Frees what a call's arg and value own when the caller will not get them
 * (see the ownership rule above). Runs on a pool thread or on the thread
 * that cancelled the call; must not block for long. */
typedef void (*wf_drop_fn)(void *arg, void *value);

typedef struct wf_call_opts {
	wf_pool *pool;   /* NULL: the default blocking pool */
	wf_drop_fn drop; /* NULL: nothing to free */
	uint64_t reserved[6]; /* zero: room for later fields (weft.h, ABI) */
} wf_call_opts;

/* The defaults (every field zero): `wf_call_opts o = WF_CALL_OPTS_INIT;`. */
#define WF_CALL_OPTS_INIT WF__ZERO_INIT

/* [any] A new pool of `threads` threads (1..WF_POOL_MAX_THREADS) named
 * name (NULL: "wf-pool"). The caller owns *out and gives it back with
 * wf_pool_shutdown. 0, WF_EINVAL, WF_ENOMEM. */
WF_EXTERN int wf_pool_new(const char *name, unsigned threads, wf_pool **out);

/* [any] Stops p and frees it. WF_POOL_WAIT: every queued call runs first;
 * WF_POOL_CANCEL: queued calls fail with WF_ECANCELED (their drop runs).
 * Either way, calls already running finish, and every thread of p has
 * exited when it returns; submissions made meanwhile get WF_ESHUTDOWN. A
 * submission racing the shutdown is either refused so or accepted, and
 * then its future is complete when the shutdown returns (its value, or
 * WF_ECANCELED if WF_POOL_CANCEL took it off the queue).
 * A task suspends while it waits (and keeps waiting if cancelled: the
 * cancellation stays recorded, see wf_cancelling). WF_EINVAL for NULL (the
 * default pool is shut down by wf_run only), a pool already shut down (its
 * handle is stale for good, for every call here, whatever reuses its
 * memory), a second shutdown of p (of two racing ones, one runs) or a bad
 * mode; WF_EDEADLK from one of p's own calls. */
WF_EXTERN int wf_pool_shutdown(wf_pool *p, int mode);

/* [any] loop.run_in_executor: runs fn(arg) on pool p (NULL: the default
 * pool) and stores in *out a future completed with the call's outcome. The
 * caller owns *out (wf_future_release). Awaiting it from a task suspends
 * the task; a plain thread blocks. Cancelling a task that awaits *out
 * leaves the call alone: wf_future_cancel(*out) cancels it if it has not
 * started (a running call finishes; its value is dropped).
 * 0, WF_EINVAL (NULL fn or out, released pool), WF_ENOMEM, WF_ESHUTDOWN. */
WF_EXTERN int wf_run_in_executor(wf_pool *p, wf_fn fn, void *arg, wf_future **out);
/* [any] wf_run_in_executor with options (opts may be NULL): the pool is
 * opts->pool, and opts->drop frees what the caller will not get. Codes as
 * wf_run_in_executor; WF_EINVAL also for reserved words not zero. */
WF_EXTERN int wf_run_in_executor_ex(wf_fn fn, void *arg, const wf_call_opts *opts, wf_future **out);

/* [any] asyncio.to_thread: runs fn(arg) on the default pool and waits for
 * it; *result (may be NULL) receives its value. Returns 0, the call's
 * failure code, WF_EINVAL, WF_ENOMEM, WF_ESHUTDOWN, or WF_ECANCELED when
 * the calling task is cancelled: at once, whether the call has started or
 * not (one not started never runs; a running one finishes and its value is
 * dropped). */
WF_EXTERN int wf_to_thread(wf_fn fn, void *arg, void **result);
/* [any] wf_to_thread with options (opts may be NULL); *errmsg (errmsg may
 * be NULL) receives NULL or the call's failure message, malloc'd, which the
 * caller frees. Codes as wf_to_thread; WF_EINVAL also for reserved words
 * not zero. */
WF_EXTERN int wf_to_thread_ex(wf_fn fn, void *arg, const wf_call_opts *opts, void **result,
			      char **errmsg);

/* [any] Meant for a call running on a pool thread: makes that call fail
 * with err (negative; any other value is recorded as WF_EINVAL) and an
 * optional message (copied); returns NULL, so a call can
 * `return wf_blocking_fail(-ENOENT, "no such user");`.
 * The last call wins. From a task it is wf_fail; elsewhere it does
 * nothing. */
WF_EXTERN void *wf_blocking_fail(int err, const char *msg);

/* [any] Calls of p (NULL: the default pool) waiting for a thread. */
WF_EXTERN size_t wf_pool_queued(const wf_pool *p);

typedef struct wf_pool_stats {
	unsigned threads;     /* alive (running a call, idle or starting) */
	unsigned idle;        /* waiting for a call */
	unsigned max_threads; /* the bound */
	size_t queued;        /* calls waiting for a thread */
	uint64_t started;     /* threads started over the pool's life */
	uint64_t retired;     /* threads that exited after the keep-alive */
	uint64_t reserved[6]; /* zeroed: room for later counters */
} wf_pool_stats;

/* [any] A snapshot of p's counters (NULL: the default pool).
 * 0 or WF_EINVAL. */
WF_EXTERN int wf_pool_get_stats(const wf_pool *p, wf_pool_stats *out);

/* [any] Sets the default pool's bound (1..WF_POOL_MAX_THREADS; 0 keeps the
 * current one) and keep-alive (ms; WF_FOREVER: idle threads never exit).
 * Takes effect at once; a lower bound retires no running thread. Fields
 * set here win over the environment. 0 or WF_EINVAL. */
WF_EXTERN int wf_default_pool_configure(unsigned max_threads, uint64_t keepalive_ms);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_EXECUTOR_H */
