/*
 * weft: signals awaited as wake-ups (asyncio's loop.add_signal_handler and
 * remove_signal_handler, turned into a wait); included by weft.h.
 *
 * A watcher catches one signal for as long as it lives. Nothing of the
 * program runs inside the signal handler: the handler weft installs only
 * counts the delivery and writes a byte to a pipe, and the task or thread
 * that waits on the watcher wakes up, on its own worker, whichever thread
 * the kernel delivered the signal to.
 *
 *	wf_signal *w;
 *	wf_signal_watch(SIGHUP, &w);
 *	while (wf_signal_wait(w, WF_FOREVER) > 0)
 *		reload_configuration();
 *	wf_signal_unwatch(w);
 *
 * Deliveries. Each watcher sees every delivery once: several watchers of
 * one signal all see it. wf_signal_wait returns how many deliveries came
 * since the watcher's previous wait (or since it was made), so several
 * that come while nobody waits are reported together, never lost. The
 * kernel itself merges a standard signal sent while the same one is still
 * pending (not yet handled), as it always does: a delivery here is a run
 * of the handler. Real-time signals (SIGRTMIN..SIGRTMAX) are queued by
 * the kernel and not merged.
 *
 * Dispositions. The first watcher of a signal installs weft's handler
 * (whatever the disposition was: SIG_DFL, SIG_IGN or a handler of the
 * program's); the last watcher's unwatch puts that previous disposition
 * back. The program must not change the disposition of a watched signal
 * itself meanwhile (weft's watchers would stop seeing it, and the
 * unwatch would undo the change). A signal blocked in every thread is
 * never delivered, so never seen.
 *
 * Threads. Watchers are process-wide: they belong to no runtime, work
 * with any number of runtimes (or none), and may be waited on from any
 * task on any worker and from plain threads. While at least one watcher
 * exists, weft keeps one helper thread ("weft-signal", every signal
 * blocked) that wakes the waiters; it ends with the last watcher.
 *
 * After fork(), a child that does not exec keeps the watchers it inherited
 * (the dispositions are inherited too): weft gives the child a pipe and a
 * helper thread of its own at its first watch or wait there.
 */
#ifndef WEFT_SIGNAL_H
#define WEFT_SIGNAL_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_signal wf_signal;

/* [any] Starts catching signo and makes a watcher for it in *out, freed
 * by wf_signal_unwatch. 0, WF_EINVAL (out NULL; signo not a signal, or
 * one that cannot or must not be caught: SIGKILL, SIGSTOP, and SIGSEGV,
 * SIGBUS, SIGFPE, SIGILL, which a program cannot survive returning from),
 * WF_ENOMEM, or -errno (sigaction refused it: -EINVAL for the signals
 * the C library keeps for itself; a helper thread or pipe that could not
 * be made). */
WF_EXTERN int wf_signal_watch(int signo, wf_signal **out);

/* [any] Waits until a delivery the watcher has not reported yet, and
 * returns how many came since its previous wait (>= 1; INT_MAX at most).
 * Returns at once if some came already. Errors: WF_ETIMEDOUT after
 * timeout_ms (0: do not wait; WF_FOREVER: no deadline), WF_ECANCELED,
 * WF_ENOMEM, WF_EINVAL (w NULL or unwatched), WF_ECLOSED (w was unwatched
 * by another thread while this call waited). Several tasks may wait on
 * one watcher: each delivery is reported to one of them. */
WF_EXTERN int wf_signal_wait(wf_signal *w, uint64_t timeout_ms);

/* [any] Frees the watcher; the last watcher of its signal puts back the
 * disposition that was there before the first. Waits on w still in
 * progress return WF_ECLOSED. 0, or WF_EINVAL (NULL, already unwatched:
 * caught while no new watcher has reused its memory). */
WF_EXTERN int wf_signal_unwatch(wf_signal *w);

/* [any] The signal a watcher watches, or WF_EINVAL. */
WF_EXTERN int wf_signal_signo(const wf_signal *w);

#ifdef __cplusplus
}
#endif

#endif
