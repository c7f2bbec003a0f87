/*
 * Asymmetric barrier: a Dekker pair whose one side is hot and the other
 * rare. The hot side stores, then loads, with only a compiler barrier
 * between; the rare side stores, calls wf__asym_heavy(), then loads. The
 * heavy barrier is membarrier(2)'s private expedited command: every thread
 * of the process that is running executes a full barrier before it
 * returns (the others pass one when they are next scheduled), so either
 * the hot side's load sees the rare side's store, or the rare side's load
 * sees the hot side's. It costs the rare side a system call and an
 * interrupt per running CPU, and the hot side nothing.
 *
 * Used by the fork-join path: a join that runs its child inline publishes
 * the child's outcome without the completion lock unless someone else
 * watches the child (task.c, future.c).
 */
#ifndef WEFT_RUNTIME_ASYM_H
#define WEFT_RUNTIME_ASYM_H

#include <stdbool.h>

/* Registers the process for the heavy barrier, once; afterwards
 * wf__asym_ok() says whether it is there (Linux 4.14 on, not refused by a
 * seccomp filter or an emulator, and never under TSan, which cannot see
 * it). Called at every runtime start. */
void wf__asym_init(void);

extern bool wf__asym_available; /* written once, before any runtime runs */

static inline bool wf__asym_ok(void)
{
	return wf__asym_available;
}

/* The rare side's barrier. Only when wf__asym_ok(). */
void wf__asym_heavy(void);

/* The hot side's: keeps the compiler from moving the load above the
 * store; the CPU may, which is what the heavy side makes up for. */
static inline void wf__asym_light(void)
{
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

#endif
