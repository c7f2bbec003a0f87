/*
 * Subsystems (the executor pools, io/) take part in the runtime's lifecycle
 * through hooks, so that runtime.c names none of them. Each subsystem
 * defines one wf__subsystem; runtime/subsystem.c lists them all, in the
 * order they start (they stop in the reverse order). Any hook may be NULL.
 */
#ifndef WEFT_RUNTIME_SUBSYSTEM_H
#define WEFT_RUNTIME_SUBSYSTEM_H

#include "weft.h"

typedef struct wf__subsystem {
	const char *name;
	/* wf_runtime_start, once every worker runs, before the runtime is
	 * handed out (no task exists yet). 0, or a WF_E* code that fails the
	 * start: the subsystems started before it are stopped. */
	int (*start)(wf_runtime *rt);
	/* wf_runtime_shutdown, once every task of rt has finished (none can
	 * be submitted any more), while the workers still run: the place to
	 * close what the subsystem keeps on their loops. */
	void (*stop)(wf_runtime *rt);
	/* wf_run, after its runtime was freed: process-wide state that
	 * wf_run promises to leave clean (the default executor pool). */
	void (*run_end)(void);
} wf__subsystem;

/* Every subsystem, NULL-terminated (runtime/subsystem.c). */
extern const wf__subsystem *const wf__subsystems[];

/* The subsystems' own descriptors. */
extern const wf__subsystem wf__executor_subsystem;
extern const wf__subsystem wf__observe_subsystem;

#endif
