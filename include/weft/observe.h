/*
 * weft: seeing inside a running program: metrics, a task dump, the
 * runtime's log and hooks; included by weft.h.
 *
 * Everything here reads a live runtime without stopping it: counters are
 * per worker and written by their worker only, and a snapshot reads them
 * (and the tasks) while they change, so two figures of one snapshot may be
 * a few events apart. Nothing here slows the runtime down while unused:
 * the hooks cost one well-predicted branch each where they would run.
 *
 * Debug mode (wf_config.debug = WF_DEBUG_CHECKS, or WEFT_DEBUG=1) adds:
 *   - a task that runs longer than wf_config.slow_task_ms (default 100)
 *     without suspending is reported while it still runs, by a watchdog
 *     thread, with its name, id, worker and where it was spawned: it is
 *     blocking its worker;
 *   - at the end of the runtime: tasks whose handle was never joined or
 *     detached, and objects never freed or closed (locks, events, queues,
 *     streams, ...), by kind and count;
 *   - futures never awaited or never completed, and calls that fail
 *     without a code (as before).
 * Tasks failed and never joined are reported in every mode (through the
 * exception handler, if one is set).
 */
#ifndef WEFT_OBSERVE_H
#define WEFT_OBSERVE_H

#include <stdio.h>

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Metrics
 * ---------------------------------------------------------------------- */

/* One worker's counters since the runtime started (gauges say "now"). */
typedef struct wf_worker_metrics {
	uint64_t spawned;      /* tasks spawned by tasks running on it */
	uint64_t finished;     /* tasks that ended on it */
	uint64_t polls;        /* times it picked a task to run */
	uint64_t steals;       /* tasks it stole from other workers */
	uint64_t inbox;        /* tasks other threads woke onto it */
	uint64_t injected;     /* tasks it took from the injection queue
				* (wf_runtime_submit, plain threads) */
	uint64_t parks;        /* times it went to sleep for lack of work */
	uint64_t park_ns;      /* time spent asleep */
	uint64_t io_polls;     /* epoll_wait calls */
	uint64_t io_events;    /* ready events they returned */
	uint64_t timers_fired; /* deadlines that fired (sleeps, timeouts) */
	uint64_t queue_depth;  /* gauge: tasks in its run queue */
	uint64_t timers;       /* gauge: deadlines pending */
	uint64_t busy;         /* gauge: 1 while it runs a task, 0 parked or
				* looking for work */
	uint64_t reserved[8];
} wf_worker_metrics;

/* The whole runtime. */
typedef struct wf_metrics {
	uint64_t workers;
	uint64_t uptime_ns;
	uint64_t spawned;  /* tasks spawned, from tasks and plain threads */
	uint64_t finished; /* tasks that ended */
	uint64_t live;     /* spawned - finished: running, runnable or waiting */
	uint64_t polls, steals, inbox, injected, parks, park_ns;
	uint64_t io_polls, io_events, timers_fired, timers;
	uint64_t busy_workers; /* workers running a task now */
	uint64_t pool_threads; /* the default blocking pool's threads */
	uint64_t pool_idle;    /* of which idle */
	uint64_t pool_queued;  /* calls waiting for a thread */
	uint64_t reserved[8];
} wf_metrics;

/* [any] Reads rt's counters: the sums into *total (may be NULL), and the
 * first n workers' own into per_worker[0..n-1] (per_worker may be NULL
 * with n 0). Returns the number of workers, or WF_EINVAL (rt NULL). */
WF_EXTERN int wf_runtime_metrics(wf_runtime *rt, wf_metrics *total, wf_worker_metrics *per_worker,
				 size_t n);

/* ------------------------------------------------------------------------
 * The task dump
 * ---------------------------------------------------------------------- */

enum wf_task_state {
	WF_TASK_NEW = 0,      /* spawned, not started */
	WF_TASK_RUNNING = 1,  /* on a worker now */
	WF_TASK_RUNNABLE = 2, /* woken or yielded: waiting for a worker */
	WF_TASK_WAITING = 3,  /* suspended on something (waits_on) */
};

typedef struct wf_task_info {
	uint64_t id;
	char name[32];
	int state;           /* WF_TASK_* */
	int worker;          /* running on it, or last ran on it; -1: none */
	const char *spawn_file; /* where it was spawned (wf_spawn's caller), */
	int spawn_line;         /* or NULL and 0 (submitted from a thread) */
	int cancelling;      /* cancellations delivered and not handled */
	const char *waits_on; /* WAITING: "lock", "queue get", "future",
			       * "join", "sleep", "readable", ...; else NULL */
	uint64_t waits_obj;  /* the object's address, to tell objects apart */
	uint64_t waits_task; /* "join": the joined task's id; "lock": the id
			      * of the task that took the lock last; else 0 */
	uint64_t waiting_ns; /* WAITING: for how long (coarse clock) */
	uint64_t reserved[4];
} wf_task_info;

/* [any] A snapshot of rt's live tasks: up to cap of them into out
 * (out may be NULL with cap 0), and the number of live tasks found into
 * *count (which may exceed cap). Returns how many were stored, or
 * WF_EINVAL (rt or count NULL). Finished tasks are never listed. */
WF_EXTERN int wf_task_list(wf_runtime *rt, wf_task_info *out, size_t cap, size_t *count);

/* [any] Writes a readable dump of rt's live tasks and its metrics to out
 * (NULL: through the log, see wf_set_log): one line per task with its id,
 * name, state, worker, spawn site, and what it waits on for how long
 * (for a lock, the task that holds it). 0, WF_EINVAL, WF_ENOMEM.
 * With WF_DEBUG_DUMP_ON_SIGUSR1 in wf_config.debug, the runtime prints it
 * on every SIGUSR1 (and weft handles SIGUSR1 while the runtime lives). */
WF_EXTERN int wf_task_dump(wf_runtime *rt, FILE *out);

/* [any] The dump and the metrics as JSON, in a malloc'd string the caller
 * frees (*out): {"metrics": {...}, "workers": [...], "tasks": [...]}.
 * 0, WF_EINVAL, WF_ENOMEM. */
WF_EXTERN int wf_runtime_json(wf_runtime *rt, char **out);

/* ------------------------------------------------------------------------
 * The log and hooks
 * ---------------------------------------------------------------------- */

enum wf_log_level {
	WF_LOG_ERROR = 0, /* something failed: a task failed and never joined */
	WF_LOG_WARN = 1,  /* likely a bug: debug reports, stuck shutdowns */
	WF_LOG_INFO = 2,  /* asked for: dumps */
};

/* Receives each message of the runtime: one line, no trailing newline. */
typedef void (*wf_log_fn)(int level, const char *msg, void *arg);

/* [any] Sends the runtime's messages to fn (NULL: back to stderr, the
 * default), process-wide. fn may be called from any thread, at any time,
 * also concurrently: it must be thread-safe and must not call weft. */
WF_EXTERN void wf_set_log(wf_log_fn fn, void *arg);

/* asyncio's exception handler, for a task that failed and was never
 * joined (detached, or its handle given back without a join): name, id,
 * code and message (NULL if none). */
typedef void (*wf_exception_fn)(const char *task_name, uint64_t task_id, int err,
				const char *msg, void *arg);

/* [any] Installs fn (NULL: the default, a line through the log),
 * process-wide. Called on the thread where the task ended. */
WF_EXTERN void wf_set_exception_handler(wf_exception_fn fn, void *arg);

/* Hooks of one runtime (wf_config.hooks), each optional (NULL: none, at
 * no cost). Task hooks run on the worker, around the event, with the
 * task's id; they must be quick and must not suspend. */
typedef struct wf_hooks {
	void (*thread_start)(unsigned worker, void *arg); /* on the new thread */
	void (*thread_stop)(unsigned worker, void *arg);  /* before it exits */
	void (*task_spawn)(uint64_t id, void *arg);   /* on the spawner's thread */
	void (*task_start)(uint64_t id, void *arg);   /* first run */
	void (*task_suspend)(uint64_t id, void *arg); /* it waits */
	void (*task_resume)(uint64_t id, void *arg);  /* back from a wait */
	void (*task_end)(uint64_t id, int outcome, void *arg);
	void *arg;
	uint64_t reserved[4]; /* zero */
} wf_hooks;

#ifdef __cplusplus
}
#endif

#endif
