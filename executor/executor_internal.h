/*
 * Executor pools: what the rest of weft calls (see executor.c). The
 * runtime reaches them only through wf__executor_subsystem
 * (runtime/subsystem.h).
 */
#ifndef WEFT_EXECUTOR_EXECUTOR_INTERNAL_H
#define WEFT_EXECUTOR_EXECUTOR_INTERNAL_H

/* Shuts the default blocking pool down as WF_POOL_CANCEL does: queued calls
 * fail with WF_ECANCELED, running calls finish, every pool thread is
 * joined. The pool stays usable: a later call starts threads again. Called
 * by wf_run once its runtime is gone (the executor's run_end hook), from a
 * plain thread (or a task: it then suspends). Calls submitted while it runs wait in the queue and
 * are served once it is done. A no-op if the pool was never used. */
void wf__default_pool_shutdown(void);

#endif
