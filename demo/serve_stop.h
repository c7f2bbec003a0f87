/*
 * Stopping a server program: SIGINT and SIGTERM, a count reached or a
 * deadline, seen by one task that then shuts the server down.
 *
 * A signal handler may not touch weft's objects (nothing in weft is
 * async-signal-safe), so every reason to stop writes a byte to a pipe and
 * the task waiting on the pipe's read end with wf_wait_readable does the
 * rest. One stopper per process.
 */
#ifndef WEFT_DEMO_SERVE_STOP_H
#define WEFT_DEMO_SERVE_STOP_H

#include <stdint.h>

/* Makes the pipe and catches SIGINT and SIGTERM (explicitly: a shell
 * without job control starts `cmd &` with SIGINT ignored). Ignores
 * SIGPIPE. 0 or -errno. Call it before wf_run. */
int serve_stop_init(void);

/* Asks the waiter to stop; async-signal-safe, from any thread. */
void serve_stop_request(void);

/* [task] Waits until a stop is asked for or timeout_ms passes (WF_FOREVER:
 * no deadline). 0 (asked), WF_ETIMEDOUT, or another weft code. */
int serve_stop_wait(uint64_t timeout_ms);

#endif
