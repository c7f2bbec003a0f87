/*
 * Executor pools: the hooks the runtime calls (see executor.c).
 */
#ifndef WEFT_RUNTIME_EXECUTOR_INTERNAL_H
#define WEFT_RUNTIME_EXECUTOR_INTERNAL_H

/* Shuts the default blocking pool down as WF_POOL_CANCEL does: queued calls
 * fail with WF_ECANCELED, running calls finish, every pool thread is
 * joined. The pool stays usable: a later call starts threads again. Called
 * by wf_run once its tasks have all ended, from a plain thread (or a task:
 * it then suspends). Calls submitted while it runs wait in the queue and
 * are served once it is done. A no-op if the pool was never used. */
void wf__default_pool_shutdown(void);

#endif
