/*
 * The contended path of wf__spin_lock.
 */
#include <sched.h>

#include "spinlock.h"

/* Back off exponentially (up to 32 pauses between looks, so waiters do not
 * hammer the holder's cache line), and once that has gone on for a while
 * yield the CPU: with more runnable threads than cores the holder may have
 * been preempted, and spinning only delays it. */
void wf__spin_lock_slow(wf__spinlock *l)
{
	unsigned rounds = 0;
	for (;;) {
		while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED)) {
			if (rounds < 64) {
				unsigned n = 1u << (rounds < 5 ? rounds : 5);
				for (unsigned i = 0; i < n; i++)
					wf__cpu_relax();
				rounds++;
			} else {
				sched_yield();
			}
		}
		if (!__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
			return;
	}
}
