/*
 * The CPU's spin-wait hint and a tiny test-and-test-and-set lock for
 * objects' short critical sections (never held across a suspension).
 *
 * Orderings: the lock is an acquire exchange, the unlock a release store;
 * both are what every architecture needs (no reliance on x86's total store
 * order), and ThreadSanitizer sees them as a lock.
 */
#ifndef WEFT_RUNTIME_SPINLOCK_H
#define WEFT_RUNTIME_SPINLOCK_H

#if defined(__x86_64__) || defined(__i386__)
#define wf__cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define wf__cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define wf__cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

typedef struct wf__spinlock {
	int locked; /* atomic */
} wf__spinlock;
#define WF__SPINLOCK_INIT {0}

void wf__spin_lock_slow(wf__spinlock *l);
static inline void wf__spin_lock(wf__spinlock *l)
{
	/* Acquire: pairs with the release in wf__spin_unlock. */
	if (__builtin_expect(!__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE), 1))
		return;
	wf__spin_lock_slow(l);
}
static inline void wf__spin_unlock(wf__spinlock *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
}

#endif
