/* Internal executor hooks used by the runtime's lifecycle. */
#ifndef WEFT_RUNTIME_EXECUTOR_INTERNAL_H
#define WEFT_RUNTIME_EXECUTOR_INTERNAL_H
/* Shuts the default blocking pool down (waiting for its calls); called at
 * the end of wf_run. A no-op if the pool was never used. */
void wf__default_pool_shutdown(void);
#endif
