/*
 * weft: asyncio's programming model for C, on every core.
 *
 * This header is the whole public API. Everything named wf_* here is a
 * promise; anything else (wf__*, runtime/ headers) may change.
 *
 * Model. A task is a function `void *fn(void *arg)` running on its own small
 * stack. It reads like sequential code: wf_sleep(), wf_await(), wf_join()
 * suspend the calling task (never its worker thread), and the worker runs
 * other tasks meanwhile. N worker threads (default: one per core) each run a
 * libuv loop and steal runnable tasks from each other.
 *
 * Errors. Every call that can fail returns 0 (or a non-negative value where
 * said) or a negative WF_E* code. wf_strerror() and wf_err_name() name every
 * code, including negated errno values from the OS. Nothing aborts on bad
 * input; a caught programming error is reported by its code.
 *
 * Threads. Calls marked [task] must be made from a task; from a plain thread
 * they return WF_ENOTTASK. Calls marked [any] work from tasks and from plain
 * threads alike (a plain thread blocks where a task would suspend).
 *
 * ABI (docs/abi.md). Every function declared in weft.h and weft/ carries
 * WF_EXTERN (weft/version.h): the library exports nothing else, and the
 * test under test/abi/ checks that the exported symbols and the declared
 * functions are the same set, so a new public function needs WF_EXTERN on
 * its declaration. Option structs (wf_config, wf_spawn_opts, ...) end in
 * `uint64_t reserved[N]`, which must be zero: initialise them with their
 * init function or WF_*_INIT macro, or with a designated initializer
 * ({.name = "x"} zeroes the rest). A later minor version gives reserved
 * words a meaning, with zero meaning what the library did before, so the
 * size and every offset stay the same and an old program keeps working.
 * Every public header compiles on its own, as C99 and as C++11.
 */
#ifndef WEFT_H
#define WEFT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library loaded at run time (the headers' version is
 * WEFT_VERSION_*): WEFT_VERSION_HEX's encoding, 0xMMmmpp, and
 * "MAJOR.MINOR.PATCH". */
WF_EXTERN unsigned wf_version(void);
WF_EXTERN const char *wf_version_string(void);

/* Zero-initialises an option struct in C and C++ alike ({0} draws
 * -Wmissing-field-initializers in C++, {} is not C before C23). */
#ifdef __cplusplus
#define WF__ZERO_INIT {}
#else
#define WF__ZERO_INIT {0}
#endif

/* ------------------------------------------------------------------------
 * Error codes: one table generates the enum, wf_strerror and wf_err_name.
 * Codes that have an errno twin use its negated value, so an OS error
 * returned as -errno reads the same way.
 * ---------------------------------------------------------------------- */
#define WF_ERRNO_MAP(X)                                                        \
	X(EINVAL, -EINVAL, "invalid argument")                                 \
	X(ENOMEM, -ENOMEM, "out of memory")                                    \
	X(ECANCELED, -ECANCELED, "operation cancelled")                        \
	X(ETIMEDOUT, -ETIMEDOUT, "timed out")                                  \
	X(EBUSY, -EBUSY, "already being awaited or joined")                    \
	X(EDEADLK, -EDEADLK, "would wait for itself")                          \
	X(EALREADY, -EALREADY, "already completed")                            \
	X(EAGAIN, -EAGAIN, "not ready yet")                                    \
	X(ESHUTDOWN, -ESHUTDOWN, "shut down")                                  \
	X(EOVERFLOW, -EOVERFLOW, "released more than acquired")                \
	X(ENOSYS, -ENOSYS, "not supported")                                    \
	X(EIO, -EIO, "i/o error")                                              \
	X(EPIPE, -EPIPE, "broken pipe")                                        \
	X(ENOTTASK, -4001, "not called from a weft task")                      \
	X(EFULL, -4002, "queue full")                                          \
	X(EEMPTY, -4003, "queue empty")                                        \
	X(EBROKEN, -4004, "barrier broken")                                    \
	X(EFAILED, -4005, "task failed")                                       \
	X(EINCOMPLETE, -4006, "stream ended before the bytes asked for")       \
	X(ELIMIT, -4007, "over the buffer's limit")                            \
	X(ECLOSED, -4008, "closed while waiting")                              \
	X(ENONAME, -4009, "no such host or service")                           \
	X(ETLS, -4010, "TLS handshake or protocol failure")                    \
	X(ECERT, -4011, "peer certificate refused")                            \
	X(EOF, -4095, "end of file")

enum wf_errno {
#define WF__ERR_ENUM(name, value, text) WF_##name = (value),
	WF_ERRNO_MAP(WF__ERR_ENUM)
#undef WF__ERR_ENUM
};

/* A short description of any code (WF_E* or -errno); never NULL. */
WF_EXTERN const char *wf_strerror(int err);
/* The code's name ("WF_ECANCELED", "ENOENT" for -ENOENT); never NULL. */
WF_EXTERN const char *wf_err_name(int err);

/* ------------------------------------------------------------------------
 * Types. All opaque; each creator below says who frees what it returns.
 * ---------------------------------------------------------------------- */
typedef struct wf_runtime wf_runtime;
typedef struct wf_task wf_task;
typedef struct wf_future wf_future;

/* A task's body. Its return value is the task's result, unless the task
 * failed (wf_fail) or let a cancellation through; see wf_join. */
typedef void *(*wf_fn)(void *arg);

/* Waiting without a deadline. */
#define WF_FOREVER UINT64_MAX

/* ------------------------------------------------------------------------
 * Runtime lifecycle
 * ---------------------------------------------------------------------- */
enum wf_debug_flags {
	WF_DEBUG_CHECKS = 1u << 0, /* debug mode (weft/observe.h): extra checks
				    * and reports: tasks that block their
				    * worker, futures never awaited, handles
				    * and objects never given back */
	/* 1u << 1 was WF_DEBUG_TRACE, which never did anything: removed, and
	 * refused like every unknown flag. */
	WF_DEBUG_DUMP_ON_SIGUSR1 = 1u << 2, /* wf_task_dump on every SIGUSR1 */
};

/* The limits of wf_config and of its environment variables. */
#define WF_WORKERS_MAX 4096u
#define WF_STACK_SIZE_MIN ((size_t)16 * 1024)
#define WF_STACK_SIZE_MAX ((uint64_t)1 << 32)

/* The signals wf_run may turn into a cancellation of its main task
 * (wf_config.cancel_on_signals). */
enum wf_run_signals {
	WF_SIG_INT = 1u << 0,  /* SIGINT (Ctrl-C) */
	WF_SIG_TERM = 1u << 1, /* SIGTERM (kill, service managers) */
};

struct wf_hooks; /* weft/observe.h */

typedef struct wf_config {
	unsigned workers;  /* worker threads; 0: number of cores */
	size_t stack_size; /* task stack (virtual, touched lazily); 0: 64 KiB */
	unsigned debug;    /* WF_DEBUG_* flags */
	uint64_t shutdown_grace_ms; /* see wf_runtime_shutdown; 0: 2000 */
	/* WF_SIG_* flags: wf_run cancels its main task at the first of these
	 * signals (see wf_run); 0 (the default): signals are left alone.
	 * Other bits fail the start (WF_EINVAL); wf_runtime_start checks the
	 * bits and does nothing else with them. */
	unsigned cancel_on_signals;
	/* Debug mode reports a task that runs this long without suspending
	 * (weft/observe.h); 0: 100 ms. */
	uint32_t slow_task_ms;
	/* Task and thread hooks (weft/observe.h), read at the start; the
	 * struct must outlive the runtime. NULL: none. */
	const struct wf_hooks *hooks;
	uint64_t reserved[6]; /* zero: room for later fields (see ABI above) */
} wf_config;

/* [any] Fills *cfg with the defaults, then applies the environment, each
 * value a base-10 number ("010" is ten):
 *   WEFT_WORKERS=<n>     0 to WF_WORKERS_MAX (4096); 0: one per core
 *   WEFT_STACK_KIB=<n>   0 (the default) or 16 to 4194304 (4 GiB)
 *   WEFT_DEBUG=<flags>   a sum of WF_DEBUG_* flags (1, 4): 0, 1, 4 or 5
 *   WEFT_SLOW_TASK_MS=<n> debug mode's threshold of a blocking task:
 *                        0 (the default: 100) to 3600000
 * cancel_on_signals is 0 (no environment variable sets it).
 * Fields set by the program after this call win over both. The fields
 * accept the same ranges (stack_size in bytes: 0, or WF_STACK_SIZE_MIN to
 * WF_STACK_SIZE_MAX). A value out of range, negative, or not a number
 * fails the start (wf_run, wf_runtime_start) with WF_EINVAL and a line on
 * stderr naming the variable or field, its value and the accepted range;
 * wf_run_ex also hands that line over. Reads the environment with getenv:
 * not while another thread changes it (setenv). */
WF_EXTERN void wf_config_init(wf_config *cfg);

/* [any] asyncio.run: starts a runtime (cfg may be NULL: wf_config_init
 * defaults), runs main(arg) as a task, stores its result in *result (may be
 * NULL), then cancels and awaits every task still running and frees
 * everything. Returns main's outcome: 0, main's failure code, or a
 * start-up error: WF_EINVAL (main NULL, a bad configuration), WF_ENOMEM, or
 * -errno (a worker thread or its event loop could not be made). Every task
 * handle and future of the runtime is invalid once it returns. When it
 * ends it also shuts the default executor pool down (weft/executor.h). It
 * belongs on a plain thread (the program's main one): from a task it runs
 * a second runtime, and that task's worker is blocked while it shuts
 * down.
 *
 * With cfg->cancel_on_signals (asyncio.Runner's Ctrl-C handling), wf_run
 * catches those signals (weft/signal.h; whatever their disposition was,
 * SIG_IGN included) from before main starts until it returns, then puts
 * the previous dispositions back. The first one cancels the main task
 * (wf_cancel), which may clean up and return: wf_run then returns main's
 * outcome as always, WF_ECANCELED if main let the cancellation through,
 * 0 if it handled it (wf_uncancel) and returned normally. One that comes
 * after that, or after main has returned (while the other tasks are
 * being cancelled and awaited), restores the signal's default disposition
 * and raises it again: the process ends by that signal, so a program
 * whose shutdown is stuck still stops at the second Ctrl-C. */
WF_EXTERN int wf_run(const wf_config *cfg, wf_fn main, void *arg, void **result);
/* [any] wf_run that also hands over a message: main's failure message
 * (wf_fail), or what was wrong with the configuration. *errmsg (errmsg may
 * be NULL) is NULL or a malloc'd string the caller frees. */
WF_EXTERN int wf_run_ex(const wf_config *cfg, wf_fn main, void *arg, void **result,
			char **errmsg);

/* [any] Embedding: start a runtime in the background. *out is freed by
 * wf_runtime_shutdown. Environment and NULL cfg as for wf_run. 0, or
 * wf_run's start-up errors (WF_EINVAL also for out NULL). */
WF_EXTERN int wf_runtime_start(const wf_config *cfg, wf_runtime **out);

/* [any] asyncio.run_coroutine_threadsafe: from any thread (a task of this or
 * another runtime, or a plain thread), run fn(arg) as a new task of rt.
 * *out receives a future completed with the task's outcome; the caller owns
 * it and releases it with wf_future_release. WF_ESHUTDOWN once shutdown
 * has begun. A call racing the start of wf_runtime_shutdown is either
 * refused (WF_ESHUTDOWN) or accepted, and then its future is complete (the
 * task's outcome, or WF_ECANCELED) when the shutdown returns. rt must still
 * exist when the call is made: no call may start once wf_runtime_shutdown
 * may have returned. 0, WF_EINVAL (rt, fn or out NULL; *out is then NULL),
 * WF_ENOMEM, WF_ESHUTDOWN. */
WF_EXTERN int wf_runtime_submit(wf_runtime *rt, wf_fn fn, void *arg, wf_future **out);

/* [any] Stops rt: cancels every task still running (repeatedly, for
 * shutdown_grace_ms, as a task may catch one cancellation), waits for them
 * all, stops the workers, frees the runtime. Call it from a plain thread,
 * never from one of rt's own tasks (WF_EDEADLK). A task that never
 * suspends again cannot be stopped and makes this wait: after
 * shutdown_grace_ms the tasks still running are listed on stderr (name,
 * state, what each waits on). A task of another runtime may call it, but
 * it does not suspend: it blocks that task's worker until rt has stopped.
 * 0, WF_EINVAL (NULL), WF_EDEADLK, WF_EALREADY (a shutdown of rt has
 * begun already). */
WF_EXTERN int wf_runtime_shutdown(wf_runtime *rt);

/* [any] The runtime of the calling task, or NULL on a plain thread. */
WF_EXTERN wf_runtime *wf_runtime_current(void);
/* [any] The number of worker threads of rt (0 for NULL). */
WF_EXTERN unsigned wf_runtime_workers(const wf_runtime *rt);
/* [any] Index of the worker running the calling task, or -1 on a plain
 * thread. */
WF_EXTERN int wf_worker_id(void);
/* [task] Moves the calling task to worker `worker` (0 .. workers-1): it
 * resumes there, on that worker's thread (thread-local state and libuv
 * handles of that loop are then its own). 0, WF_EINVAL (no such worker),
 * WF_ENOTTASK. A pinned task's home moves with it. */
WF_EXTERN int wf_move_to_worker(unsigned worker);
/* [task] wf_pin(true) pins the calling task to the worker it runs on: it
 * is never stolen by another worker and every wake-up brings it back
 * there (use wf_move_to_worker first to choose the worker). wf_pin(false)
 * lets it move again. Unpinned tasks go where the work is: woken on the
 * waker's worker, stolen by idle ones. 0 or WF_ENOTTASK. */
WF_EXTERN int wf_pin(bool pinned);

/* ------------------------------------------------------------------------
 * Tasks
 * ---------------------------------------------------------------------- */
typedef struct wf_spawn_opts {
	const char *name;  /* copied (first 31 bytes); NULL: "task-<id>" */
	size_t stack_size; /* 0: the runtime's default (16 KiB at least) */
	bool detached;     /* no handle: as wf_detach right away, but cheaper */
	uint64_t reserved[6]; /* zero: room for later fields (see ABI above) */
} wf_spawn_opts;

/* The defaults (every field zero): `wf_spawn_opts o = WF_SPAWN_OPTS_INIT;`. */
#define WF_SPAWN_OPTS_INIT WF__ZERO_INIT

/* [task] asyncio.create_task: schedules fn(arg) as a new task and returns
 * its handle, or NULL: out of memory, or not called from a task (a plain
 * thread, or a libuv callback on a worker). From a plain thread use
 * wf_runtime_submit; wf_spawn_ex tells the two apart (WF_ENOMEM,
 * WF_ENOTTASK), and in debug mode (WF_DEBUG_CHECKS, or WEFT_DEBUG=1 for a
 * plain thread) wf_spawn says why on stderr. The handle is the caller's:
 * give it back with wf_join (waits) or wf_detach (does not wait). A task
 * that has not started when it is joined runs at once on the joiner's
 * stack (no switch), unless it asked for a stack size of its own.
 * A bounded backlog: when the calling worker already holds 4096 tasks not
 * yet started and no other worker takes them as fast, wf_spawn lets them
 * run before it returns (the caller yields, as wf_yield, but a
 * cancellation is left for its next wait), so a loop that spawns faster
 * than tasks run holds a few thousand at a time, not all of them. Other
 * tasks may therefore run (and the caller may move to another worker)
 * inside a spawn that comes after 4096 others: do not hold a plain mutex
 * across it that the tasks it lets run would take. */
WF_EXTERN wf_task *wf_spawn(wf_fn fn, void *arg);
/* [task] wf_spawn with options (opts may be NULL); 0 or WF_EINVAL,
 * WF_ENOMEM, WF_ENOTTASK. out may be NULL only for a detached task. */
WF_EXTERN int wf_spawn_ex(wf_fn fn, void *arg, const wf_spawn_opts *opts, wf_task **out);
/* [task] wf_spawn and wf_spawn_ex that record where the task was spawned
 * (file, a string that must outlive the task, and line), for task dumps
 * and debug reports. The macros below make every wf_spawn and
 * wf_spawn_ex call one of these with the caller's __FILE__ and __LINE__;
 * (wf_spawn)(fn, arg), in parentheses, calls the function itself. */
WF_EXTERN wf_task *wf_spawn_at(wf_fn fn, void *arg, const char *file, int line);
WF_EXTERN int wf_spawn_ex_at(wf_fn fn, void *arg, const wf_spawn_opts *opts, wf_task **out,
			     const char *file, int line);
#define wf_spawn(fn, arg) wf_spawn_at((fn), (arg), __FILE__, __LINE__)
#define wf_spawn_ex(fn, arg, opts, out) wf_spawn_ex_at((fn), (arg), (opts), (out), __FILE__, __LINE__)

/* [any] await task: waits until t finishes, stores its result in *result
 * (may be NULL) and releases the handle. Returns t's outcome: 0, the code
 * t failed with (wf_fail), or WF_ECANCELED if t let a cancellation through.
 * If the joining task is cancelled while it waits, the cancellation is
 * passed on to t (as asyncio does) and the join goes on waiting for t.
 * Errors that leave the handle untouched: WF_EINVAL (NULL or a released
 * handle: also a copy whose holder joined or detached it first, however
 * soon its memory goes to a new task), WF_EDEADLK (t is the caller),
 * WF_EBUSY (another join of t is waiting). */
WF_EXTERN int wf_join(wf_task *t, void **result);
/* [any] wf_join that also hands over t's failure message: *errmsg (errmsg
 * may be NULL) is NULL or a malloc'd string the caller frees. Codes as
 * wf_join. */
WF_EXTERN int wf_join_ex(wf_task *t, void **result, char **errmsg);

/* [any] Gives the handle back without waiting; t runs on and frees itself.
 * If t then fails, "weft: task "<name>" failed: <message>, never joined" is
 * printed on stderr. WF_EINVAL for NULL or a released handle. */
WF_EXTERN int wf_detach(wf_task *t);

/* [any] asyncio's Task.cancel: asks t to stop. The current suspension of t
 * (or its next one) returns WF_ECANCELED; a task that has not started never
 * starts. If t returns after that without wf_uncancel, its outcome is
 * WF_ECANCELED. Returns 0, WF_EALREADY if t had already finished, WF_EINVAL
 * for NULL or a handle given back (joined or detached). Cancelling twice
 * before delivery delivers once. Safe through a copy of a handle that its
 * holder joins or detaches at the same moment: it acts on t or returns an
 * error, and never reaches a task that reuses t's memory. */
WF_EXTERN int wf_cancel(wf_task *t);
/* [task] asyncio's Task.uncancel: the calling task handled a cancellation
 * and goes on; its outcome is no longer WF_ECANCELED on that account.
 * Returns how many delivered cancellations remain unhandled. */
WF_EXTERN int wf_uncancel(void);
/* [task] How many cancellations were delivered to the calling task and not
 * yet handled with wf_uncancel (asyncio's Task.cancelling). */
WF_EXTERN int wf_cancelling(void);

/* [task] Records that the calling task fails with err (negative) and an
 * optional message (copied); returns NULL so a task can `return
 * wf_fail(WF_EIO, "disk gone");`. The last call wins. A code >= 0 (a
 * forgotten minus: wf_fail(EIO, ...)) records WF_EINVAL with a message
 * that says so: the task never passes for a success. */
WF_EXTERN void *wf_fail(int err, const char *msg);

/* [task] asyncio.sleep(0): lets every other runnable task run, then goes
 * on. 0 or WF_ECANCELED. */
WF_EXTERN int wf_yield(void);
/* [any] asyncio.sleep: suspends the task for ms milliseconds (a plain
 * thread sleeps). 0 or WF_ECANCELED. */
WF_EXTERN int wf_sleep(uint64_t ms);

/* [any] The calling task, or NULL on a plain thread. Valid while it runs:
 * wf_task_name, wf_task_done and wf_cancel take it even if another task
 * detaches this one between the call and the use. */
WF_EXTERN wf_task *wf_current(void);
/* [any] The task's name ("task-<id>" if none was given); valid as long as
 * the handle is. NULL for NULL or a released handle. */
WF_EXTERN const char *wf_task_name(wf_task *t);
/* [any] true once t has finished (its outcome is known); false for NULL or
 * a released handle. */
WF_EXTERN bool wf_task_done(const wf_task *t);

/* ------------------------------------------------------------------------
 * Futures: a result that arrives later, completed once from any thread.
 * A released future's handle (its last reference dropped) is refused by
 * every call below, even once a new future took its memory: WF_EINVAL,
 * or the call's "nothing" (NULL, false) where it returns no code.
 * ---------------------------------------------------------------------- */
/* [any] A new pending future, or NULL if out of memory. The caller owns one
 * reference and gives it back with wf_future_release. */
WF_EXTERN wf_future *wf_future_new(void);
/* [any] Takes another reference (for a second owner); returns f (NULL for
 * NULL or a released future). */
WF_EXTERN wf_future *wf_future_retain(wf_future *f);
/* [any] Drops one reference; the last frees f. A completion still running
 * elsewhere keeps its own reference, so releasing early is safe. Does
 * nothing for NULL or a released future. */
WF_EXTERN void wf_future_release(wf_future *f);

/* [any] Completes f with a value. 0, WF_EALREADY if f was already complete
 * (f is left as it was), WF_EINVAL for NULL or a released future. */
WF_EXTERN int wf_future_set(wf_future *f, void *value);
/* [any] Completes f with an error (err < 0) and an optional message
 * (copied; with no memory for the copy, f fails without it: a future is
 * never left pending). 0, WF_EALREADY, WF_EINVAL (NULL f, err >= 0). */
WF_EXTERN int wf_future_fail(wf_future *f, int err, const char *msg);
/* [any] future.cancel(): wf_future_fail(f, WF_ECANCELED, NULL). */
WF_EXTERN int wf_future_cancel(wf_future *f);

/* [any] Waits for f and returns its outcome: 0 with *value set (value may
 * be NULL), or f's error code. WF_ECANCELED also when the waiting task is
 * cancelled (f is then left pending). Any number of tasks and threads may
 * await one future. */
WF_EXTERN int wf_await(wf_future *f, void **value);
/* [any] wf_await with a deadline: WF_ETIMEDOUT after ms milliseconds
 * (f is left pending). WF_FOREVER waits without one. */
WF_EXTERN int wf_await_timeout(wf_future *f, void **value, uint64_t ms);

/* [any] true once f is complete (false for NULL or a released future). */
WF_EXTERN bool wf_future_done(const wf_future *f);
/* [any] The outcome of a complete future without waiting: 0 with *value
 * (value may be NULL), f's error, WF_EAGAIN if f is pending, WF_EINVAL for
 * NULL or a released future. */
WF_EXTERN int wf_future_result(const wf_future *f, void **value);
/* [any] The message f failed with, or NULL (also while f is pending, and
 * for NULL or a released future); valid while f is referenced. */
WF_EXTERN const char *wf_future_errmsg(const wf_future *f);

/* Called once when f completes, on the completing thread (at once, on the
 * caller's thread, if f is already complete). Must not block. */
typedef void (*wf_done_cb)(wf_future *f, void *arg);
/* [any] 0, WF_EINVAL, WF_ENOMEM. Callbacks run in the order added. */
WF_EXTERN int wf_future_add_done_callback(wf_future *f, wf_done_cb cb, void *arg);

#ifdef __cplusplus
}
#endif

#include "weft/sync.h"     /* locks, events, semaphores, queues, ... */
#include "weft/executor.h" /* thread pools for blocking calls */
#include "weft/compose.h"  /* gather, wait, timeouts, task groups, ... */
#include "weft/io.h"       /* streams, servers, sockets, UDP, DNS */
#include "weft/process.h"  /* subprocesses and their pipes */
#include "weft/signal.h"   /* signals awaited as wake-ups */
#include "weft/fs.h"       /* asynchronous files */
#include "weft/context.h"  /* context variables */
#include "weft/timer.h"    /* callbacks on the loop, loop time, intervals */
#include "weft/observe.h"  /* metrics, task dump, log, hooks */
#include "weft/tls.h"      /* TLS streams and servers (OpenSSL) */

#endif /* WEFT_H */
