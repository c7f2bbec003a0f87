/*
 * weft-bench: the workloads of the benchmark spec (one RESULT line each),
 * shared by every workload file of bench/.
 *
 * A workload is a wf_bench record registered at load time (WF_BENCH_DEFINE
 * in any .c file of bench/): weft-bench.c starts a runtime for it, runs its fn
 * as the root task and prints the line. The clock runs from just before fn
 * is called to just after it returns; fn moves either end with
 * wf_bench_clock_start / wf_bench_clock_stop when it has set-up or
 * tear-down that the spec leaves untimed. fn stores the figure that proves
 * the work was done in run->check, and may append its own " key=value"
 * fields to the line with wf_bench_extra.
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <stdint.h>

#include "weft.h"

typedef struct wf_bench wf_bench;

/* One run of one workload; owned by weft-bench.c, filled in by fn. */
typedef struct wf_bench_run {
	const wf_bench *bench;
	unsigned threads; /* workers of the runtime fn runs on */
	uint64_t n;
	uint64_t check;
	uint64_t t0_ns, t1_ns; /* the timed part, wf_bench_now_ns clock */
	char extra[256];       /* " key=value" fields appended to the line */
} wf_bench_run;

/* Runs as the root task. 0, or a negative WF_E* code if the run could not
 * be done (a failed spawn, out of memory): the run then counts as failed. */
typedef int (*wf_bench_fn)(wf_bench_run *run);

struct wf_bench {
	const char *name;
	uint64_t default_n;
	wf_bench_fn fn;
	/* The check a correct run gives for n; NULL: n. */
	uint64_t (*expected)(uint64_t n);
	/* The op count behind ops_per_s; NULL: n. */
	uint64_t (*ops)(uint64_t n);
	/* Workers this workload always runs on (switch: 1); 0: as asked. */
	unsigned threads;
};

/* Adds b to the registry. Called from constructors, before main: a second
 * workload of the same name, or too many of them, is reported by main. */
void wf_bench_register(const wf_bench *b);

/* Defines and registers a workload:
 *   WF_BENCH_DEFINE(fib, .name = "fib", .default_n = 30, .fn = run_fib);
 */
#define WF_BENCH_DEFINE(id, ...)                                               \
	static const wf_bench wf_bench_def_##id = {__VA_ARGS__};               \
	__attribute__((constructor)) static void wf_bench_reg_##id(void)       \
	{                                                                      \
		wf_bench_register(&wf_bench_def_##id);                         \
	}

/* Monotonic wall clock in nanoseconds. */
uint64_t wf_bench_now_ns(void);
/* Restarts the clock (after untimed set-up) / stops it (before untimed
 * tear-down). */
void wf_bench_clock_start(wf_bench_run *run);
void wf_bench_clock_stop(wf_bench_run *run);

/* Appends " key=value" text (printf format, leading space included by the
 * caller) to the run's line. */
void wf_bench_extra(wf_bench_run *run, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Part i of total split into parts shares that add up to total exactly
 * (the remainder goes to the first ones), as the peer programs split N. */
static inline uint64_t wf_bench_share(uint64_t total, uint64_t parts, uint64_t i)
{
	return total / parts + (i < total % parts);
}

/* The process's resident set (VmRSS of /proc/self/status) in KiB, or a
 * negative WF_E* code if it cannot be read. */
int64_t wf_bench_rss_kib(void);

/* fib(n) computed in a loop: the check of the fib workload. */
uint64_t wf_bench_fib_serial(uint64_t n);

/* `weft-bench http_hello THREADS PORT`: serves the peers' HTTP "Hello,
 * World!" on 127.0.0.1:PORT with THREADS workers until SIGTERM or SIGINT
 * (net_workloads.c). Not a workload: no RESULT line; wrk measures it. The
 * process's exit status. */
int wf_bench_http_hello(unsigned threads, unsigned port);

#endif
