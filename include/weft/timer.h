/*
 * weft: callbacks on the loop, the loop's clock, and repeating timers
 * (asyncio's call_soon, call_later, call_at and their thread-safe forms,
 * loop.time(); Tokio's interval); included by weft.h.
 *
 * A callback runs as a task of its own on one of the runtime's workers,
 * so unlike an asyncio callback it may suspend (sleep, await, lock); it
 * starts with a copy of the scheduler's context variables (as asyncio's
 * call_soon copies the context). Callbacks run in parallel on N workers:
 * two callbacks scheduled one after the other are started in that order
 * by a worker that runs both, but may run at the same time on two
 * workers, so a program that needs one after the other chains them or
 * uses a queue.
 *
 *	static void tick(void *arg) { printf("%s\n", (char *)arg); }
 *
 *	wf_timer *t;
 *	wf_call_later(NULL, 500, tick, "half a second later", &t);
 *	...
 *	wf_timer_cancel(t);   // 0: it will never run; WF_EALREADY: it ran
 *	wf_timer_free(t);
 *
 * Runtimes. rt NULL means the calling task's runtime (WF_ENOTTASK on a
 * plain thread). Given explicitly, rt may be called from any thread: that
 * is asyncio's call_soon_threadsafe. A callback not yet started when its
 * runtime shuts down never runs.
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_timer wf_timer;
typedef struct wf_interval wf_interval;

/* A callback scheduled on the loop. */
typedef void (*wf_callback)(void *arg);

/* [any] loop.time(): the runtime's monotonic clock (CLOCK_MONOTONIC), in
 * nanoseconds. The clock of wf_call_at's deadlines and of every timeout. */
WF_EXTERN uint64_t wf_time_ns(void);

/* [any] loop.call_soon: runs fn(arg) as soon as a worker is free. *out
 * (out may be NULL: no handle) receives a handle the caller gives back
 * with wf_timer_free. 0, WF_EINVAL (fn NULL), WF_ENOTTASK (rt NULL on a
 * plain thread), WF_ESHUTDOWN (rt is shutting down), WF_ENOMEM. */
WF_EXTERN int wf_call_soon(wf_runtime *rt, wf_callback fn, void *arg, wf_timer **out);

/* [any] loop.call_later: runs fn(arg) delay_ms milliseconds from now.
 * Handle and codes as wf_call_soon. */
WF_EXTERN int wf_call_later(wf_runtime *rt, uint64_t delay_ms, wf_callback fn, void *arg,
			    wf_timer **out);

/* [any] loop.call_at: runs fn(arg) once wf_time_ns() reaches when_ns (at
 * once if it has already). Handle and codes as wf_call_soon. */
WF_EXTERN int wf_call_at(wf_runtime *rt, uint64_t when_ns, wf_callback fn, void *arg,
			 wf_timer **out);

/* [any] TimerHandle.cancel: 0 if the callback had not started and now
 * never will; WF_EALREADY if it started (it may still be running) or was
 * cancelled already; WF_EINVAL for NULL or a freed handle. */
WF_EXTERN int wf_timer_cancel(wf_timer *t);

/* [any] TimerHandle.when: the deadline on wf_time_ns's clock (the time
 * of scheduling for wf_call_soon); 0 for NULL or a freed handle. */
WF_EXTERN uint64_t wf_timer_when(const wf_timer *t);

/* [any] true once the callback has returned (false for NULL or a freed
 * handle, and for a cancelled callback). */
WF_EXTERN bool wf_timer_done(const wf_timer *t);

/* [any] Gives the handle back; the callback is not cancelled (cancel it
 * first to stop it). 0 or WF_EINVAL (NULL or freed already). */
WF_EXTERN int wf_timer_free(wf_timer *t);

/* What an interval does when ticks were missed (the ticking task came
 * late): Tokio's MissedTickBehavior. */
enum wf_missed_tick {
	/* Fires the missed ticks at once, one per wf_interval_tick, until
	 * the schedule is caught up; the schedule stays start + k * period. */
	WF_TICK_BURST = 0,
	/* The next tick comes one period after the late one: the schedule
	 * moves. */
	WF_TICK_DELAY = 1,
	/* The missed ticks are dropped: the next tick is the next one of the
	 * original schedule still in the future. */
	WF_TICK_SKIP = 2,
};

/* [any] A repeating timer with the given period (> 0 ms) and missed-tick
 * policy (a WF_TICK_* value). Its first tick completes at once, the next
 * one period after that. 0, WF_EINVAL, WF_ENOMEM. Freed by
 * wf_interval_free. */
WF_EXTERN int wf_interval_new(uint64_t period_ms, int missed, wf_interval **out);

/* [any] Waits for the interval's next tick. Returns how many ticks were
 * missed before this one and dropped (WF_TICK_SKIP; 0 otherwise), or
 * WF_ECANCELED, WF_EINVAL (NULL or freed), WF_EBUSY (another task or
 * thread is waiting on it), WF_ECLOSED (freed while this call waited),
 * WF_ENOMEM. */
WF_EXTERN int wf_interval_tick(wf_interval *iv);

/* [any] Restarts the schedule: the next tick comes one period from now.
 * 0 or WF_EINVAL. */
WF_EXTERN int wf_interval_reset(wf_interval *iv);

/* [any] Frees the interval; a wf_interval_tick waiting on it returns
 * WF_ECLOSED. 0 or WF_EINVAL (NULL or freed already). */
WF_EXTERN int wf_interval_free(wf_interval *iv);

#ifdef __cplusplus
}
#endif

#endif
