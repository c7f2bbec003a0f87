/*
 * The live console (runtime/console.c): with WEFT_CONSOLE set, a plain
 * thread of each runtime serves its metrics and tasks over HTTP on the
 * loopback (see docs/observe.md). Started and stopped by the observe
 * subsystem (observe.c), which also writes the JSON it serves.
 */
#ifndef WEFT_RUNTIME_CONSOLE_H
#define WEFT_RUNTIME_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "weft.h"

/* What one worker was seen running, sampled by wf__run_clock_sample: the
 * task (and its id) and the worker's pick count then, and since when the
 * two have not changed (wf__now_ns; 0: never sampled). */
typedef struct wf__run_clock {
	wf_task *cur;
	unsigned tick;
	uint64_t id, since;
} wf__run_clock;

/* Updates runs[0 .. rt's workers - 1]; from one thread at a time. */
void wf__run_clock_sample(wf_runtime *rt, wf__run_clock *runs);

/* The counters at one moment, for the console's chart of the last minute. */
typedef struct wf__history_sample {
	uint64_t uptime_ns, spawned, finished, steals, inbox, polls;
} wf__history_sample;

/* What the console adds to the JSON, each optional (NULL): running tasks
 * get "running_ns" from runs (one per worker), and the metrics get
 * "history" from hist[0 .. nhist - 1], oldest first. */
typedef struct wf__json_extra {
	const wf__run_clock *runs;
	const wf__history_sample *hist;
	size_t nhist;
	unsigned hist_interval_ms;
} wf__json_extra;

/* Parts of the JSON of wf__observe_json. */
enum {
	WF__JSON_METRICS = 1, /* "metrics":{...},"workers":[...] */
	WF__JSON_TASKS = 2,   /* "tasks":[...] */
	WF__JSON_SUMMARY = 4, /* with the tasks: "task_count", "states" */
};

/* The one JSON writer of observe.c (wf_runtime_json is its metrics and
 * tasks): the parts asked for, in one object, into a malloc'd *out (its
 * length in *len, if len is not NULL), with what x adds (x may be NULL).
 * top > 0: of the tasks, only the top running ones by time run and the
 * top waiting ones by time waited, each longest first. 0 or WF_ENOMEM. */
int wf__observe_json(wf_runtime *rt, unsigned parts, const wf__json_extra *x, size_t top,
		     char **out, size_t *len);

typedef struct wf__console wf__console;

/* Starts serving rt on spec (WEFT_CONSOLE's value). 0; WF_EINVAL (spec is
 * not a loopback address and a port: logged), or the error of the socket
 * or the thread (logged). */
int wf__console_start(wf_runtime *rt, const char *spec, wf__console **out);
/* Stops the thread (promptly: it is woken) and closes the socket. */
void wf__console_stop(wf__console *c);
/* The port it serves on. */
int wf__console_port_of(const wf__console *c);

/* The port rt's console serves on, or 0 when it has none (for tests and
 * tools; the URL is also logged at WF_LOG_INFO when the console starts). */
int wf__console_port(wf_runtime *rt);

#endif
