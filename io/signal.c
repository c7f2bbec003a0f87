/*
 * Signals awaited as wake-ups (weft/signal.h), and what wf_run needs to
 * cancel its main task on SIGINT / SIGTERM.
 *
 * The path of a delivery. weft's handler runs on whatever thread the
 * kernel picked (a worker, the program's main thread, any other) and does
 * two async-signal-safe things: it adds one to the signal's counter (an
 * atomic RMW) and writes one byte to a non-blocking self-pipe, with errno
 * saved and restored. A helper thread, "weft-signal", sleeps in read() on
 * the pipe's other end; each time it wakes it compares every watched
 * signal's counter with the value it last dispatched and, for each that
 * moved, fires every waiter of that signal (under the table's spinlock)
 * and runs the internal callbacks (wf_run's). A fired waiter is a task on
 * any worker of any runtime, or a plain thread: wf__waiter_fire queues the
 * task on its home worker and wakes that worker's poller, as a future
 * completed from a plain thread does. So the thread that ran the handler
 * plays no part in where, or whether, the waiter wakes.
 *
 * Why a thread rather than the pipe in a worker's epoll. Registering the
 * pipe with one worker of every runtime that has waiters means moving the
 * registration when that runtime ends while others still wait, and a
 * plain thread that waits while no runtime runs at all would have nobody
 * to drain the pipe. One helper thread serves every runtime and thread of
 * the process the same way, exists only while watchers do, and costs a
 * delivery one extra wake-up (the helper, then the waiter's worker):
 * signals are rare, and that wake-up is off every worker's path.
 *
 * Counting. Each watcher remembers the counter's value it last reported
 * (`seen`); a wait returns the difference at once if there is one, else
 * links its waiter under the spinlock after looking. The handler adds to
 * the counter before it writes the byte, and the helper reads the counter
 * after it has read the byte, so a delivery that came after a waiter
 * looked is seen by the helper, which fires the waiter. The pipe only
 * says "look"; the counters are the truth, so a full pipe (a write that
 * fails with EAGAIN) loses nothing: the bytes already in it wake the
 * helper again. Counters are 32-bit and compared by difference, which
 * wraps correctly.
 *
 * Locks. `mu` (a mutex) serialises watch and unwatch, the dispositions,
 * the helper thread's life, the callbacks and the helper's `dispatched`
 * values. `sl` (a spinlock, as the waiter protocol wants) guards the list
 * of watchers, each watcher's `seen` and the wait queues; it is taken
 * inside mu where both are needed. A handle is checked by looking for it
 * in the list (pointer comparisons, never a dereference first), so an
 * unwatched handle is refused without touching freed memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

#include "runtime/internal.h"
#include "runtime/waiting.h"

/* An internal callback watcher (wf_run's): called on the helper thread,
 * with mu held, with the number of deliveries since the last call. Must
 * not watch or unwatch. */
typedef void (*signal_fn)(int signo, unsigned n, void *arg);

struct wf_signal {
	int signo;
	uint32_t seen;          /* sl: the counter's value last reported */
	uint64_t id;            /* sl: this process's nth watcher: a wait that
				 * wakes after an unwatch may find a new watcher
				 * at w's address, listed, and must not take it
				 * for its own */
	wf_signal *prev, *next; /* the list: changed under mu and sl */
	signal_fn fn;           /* NULL: a public watcher, waited on */
	void *fn_arg;
};

typedef struct sigent {
	uint32_t count;      /* atomic: deliveries, added to by the handler */
	uint32_t dispatched; /* mu: the count the helper last acted on */
	unsigned nwatch;     /* mu: watchers of this signal */
	struct sigaction prev; /* mu: the disposition before the first */
	wf__waitq q;         /* sl: waiters of this signal */
} sigent;

static struct {
	pthread_mutex_t mu;
	wf__spinlock sl;
	sigent tab[NSIG];
	wf_signal *head;   /* every watcher (the list above) */
	uint64_t ids;      /* sl: the last watcher's id */
	unsigned nwatchers; /* mu */
	bool running;      /* mu: a helper thread serves this process */
	pid_t pid;         /* mu to change (atomic): the process the pipe and
			    * the helper were made in; 0 before the first */
	int pipe_r;        /* mu: the helper's end, blocking */
	int pipe_w;        /* atomic: the handler's end, non-blocking */
} g = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.pipe_r = -1,
	.pipe_w = -1,
};

/* ---- the handler -------------------------------------------------------- */

static void on_signal(int signo)
{
	int saved = errno;
	/* Seq_cst RMW, lock-free on every target weft runs on (32 bits):
	 * async-signal-safe, and ordered before the write below. */
	__atomic_add_fetch(&g.tab[signo].count, 1, __ATOMIC_SEQ_CST);
	int fd = __atomic_load_n(&g.pipe_w, __ATOMIC_RELAXED);
	char b = (char)signo;
	/* EAGAIN: the pipe is full, so the helper has bytes to wake on. */
	ssize_t r = write(fd, &b, 1);
	(void)r;
	errno = saved;
}

/* ---- the helper thread -------------------------------------------------- */

/* Fires the waiters and runs the callbacks of every signal whose counter
 * moved since the last pass. mu held. */
static void dispatch_locked(void)
{
	for (int s = 1; s < NSIG; s++) {
		sigent *e = &g.tab[s];
		if (e->nwatch == 0)
			continue;
		uint32_t c = __atomic_load_n(&e->count, __ATOMIC_SEQ_CST);
		uint32_t n = c - e->dispatched;
		if (n == 0)
			continue;
		e->dispatched = c;
		wf__spin_lock(&g.sl);
		wf__waitq_fire_all(&e->q, 0, NULL);
		wf__spin_unlock(&g.sl);
		/* The list only changes under mu, which is held. */
		for (wf_signal *w = g.head; w != NULL; w = w->next)
			if (w->fn != NULL && w->signo == s)
				w->fn(s, n, w->fn_arg);
	}
}

static void *helper_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	pthread_setname_np(pthread_self(), "weft-signal");
	for (;;) {
		char buf[128];
		/* The bytes only say "look": how many came is in the counters. */
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno != EINTR && errno != EAGAIN) {
			/* Cannot happen with our own pipe; do not spin on it. */
			wf__log(WF_LOG_ERROR, "signal helper: read: %s", strerror(errno));
			sleep(1);
		}
		pthread_mutex_lock(&g.mu);
		/* The last unwatch wrote a byte for this. A watch that came
		 * since finds running still set and needs no new thread. */
		if (g.nwatchers == 0 || g.pipe_r != fd) {
			if (g.pipe_r == fd)
				g.running = false;
			pthread_mutex_unlock(&g.mu);
			return NULL;
		}
		dispatch_locked();
		pthread_mutex_unlock(&g.mu);
	}
}

/* Makes the pipe in this process: on first use, and in a child after
 * fork (it must not read its parent's pipe, nor the parent its bytes).
 * mu held. */
static int ensure_pipe_locked(void)
{
	pid_t pid = getpid();
	if (__atomic_load_n(&g.pid, __ATOMIC_RELAXED) == pid)
		return 0;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -errno;
	/* Only the handler's end is non-blocking: the helper sleeps in read. */
	if (fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0) {
		int e = -errno;
		close(fds[0]);
		close(fds[1]);
		return e;
	}
	int old_r = g.pipe_r;
	int old_w = __atomic_exchange_n(&g.pipe_w, fds[1], __ATOMIC_SEQ_CST);
	g.pipe_r = fds[0];
	/* A fork's copies of the parent's pipe: closed after the handler was
	 * given the new one, so it never writes to a number being reused. */
	if (old_r >= 0)
		close(old_r);
	if (old_w >= 0)
		close(old_w);
	g.running = false; /* the parent's helper did not come with the fork */
	__atomic_store_n(&g.pid, pid, __ATOMIC_RELAXED);
	return 0;
}

static int ensure_helper_locked(void)
{
	int rc = ensure_pipe_locked();
	if (rc != 0 || g.running)
		return rc;
	/* The helper blocks every signal it may (not the synchronous ones,
	 * whose blocking would turn a crash into a silent kill), so the
	 * kernel never picks it to run a handler: its read is never
	 * interrupted and the program's threads keep their own masks. */
	sigset_t all, old;
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGTRAP);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024 > PTHREAD_STACK_MIN ? 64 * 1024
									 : PTHREAD_STACK_MIN);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	rc = -pthread_create(&t, &attr, helper_main, (void *)(intptr_t)g.pipe_r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		g.running = true;
	return rc;
}

/* Tells the helper to look (the last unwatch: so that it ends). */
static void poke_helper(void)
{
	int fd = __atomic_load_n(&g.pipe_w, __ATOMIC_RELAXED);
	char b = 0;
	ssize_t r = write(fd, &b, 1);
	(void)r;
}

/* ---- watchers ----------------------------------------------------------- */

static bool listed(const wf_signal *w)
{
	for (wf_signal *x = g.head; x != NULL; x = x->next)
		if (x == w)
			return true;
	return false;
}

static bool refused(int signo)
{
	switch (signo) {
	case SIGKILL: /* cannot be caught */
	case SIGSTOP:
	case SIGSEGV: /* returning from the handler runs the faulting */
	case SIGBUS:  /* instruction again: nothing a wake-up can help */
	case SIGFPE:
	case SIGILL:
		return true;
	default:
		return signo <= 0 || signo >= NSIG;
	}
}

static int watch(int signo, signal_fn fn, void *fn_arg, wf_signal **out)
{
	*out = NULL;
	if (refused(signo))
		return WF_EINVAL;
	/* malloc, not calloc (glibc's calloc skips the per-thread cache): an
	 * unwatch and a watch back to back reuse the memory, as test_signal
	 * wants them to. Every field is set here or under the lock below. */
	wf_signal *w = malloc(sizeof(*w));
	if (w == NULL)
		return WF_ENOMEM;
	w->prev = NULL;
	w->signo = signo;
	w->fn = fn;
	w->fn_arg = fn_arg;
	sigent *e = &g.tab[signo];
	pthread_mutex_lock(&g.mu);
	int rc = ensure_pipe_locked();
	if (rc != 0)
		goto fail;
	/* Read before the handler goes in: a delivery that comes between
	 * the two is this watcher's, and is reported. */
	uint32_t base = __atomic_load_n(&e->count, __ATOMIC_SEQ_CST);
	bool installed = false;
	if (e->nwatch == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sa.sa_flags = SA_RESTART;
		if (sigaction(signo, &sa, &e->prev) != 0) {
			rc = -errno;
			goto fail;
		}
		installed = true;
		e->dispatched = base;
	}
	rc = ensure_helper_locked();
	if (rc != 0) {
		if (installed)
			sigaction(signo, &e->prev, NULL);
		goto fail;
	}
	e->nwatch++;
	g.nwatchers++;
	wf__spin_lock(&g.sl);
	w->seen = base;
	w->id = ++g.ids;
	w->next = g.head;
	if (g.head != NULL)
		g.head->prev = w;
	g.head = w;
	wf__spin_unlock(&g.sl);
	pthread_mutex_unlock(&g.mu);
	*out = w;
	return 0;
fail:
	pthread_mutex_unlock(&g.mu);
	free(w);
	return rc;
}

WF_EXTERN int wf_signal_watch(int signo, wf_signal **out)
{
	if (out == NULL)
		return WF_EINVAL;
	return watch(signo, NULL, NULL, out);
}

WF_EXTERN int wf_signal_unwatch(wf_signal *w)
{
	if (w == NULL)
		return WF_EINVAL;
	pthread_mutex_lock(&g.mu);
	wf__spin_lock(&g.sl);
	if (!listed(w)) {
		wf__spin_unlock(&g.sl);
		pthread_mutex_unlock(&g.mu);
		return WF_EINVAL;
	}
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		g.head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	sigent *e = &g.tab[w->signo];
	/* Waits on w still in progress end with WF_ECLOSED; those of other
	 * watchers of the signal stay. A waiter a deadline or cancellation
	 * won already is only unlinked (its owner then finds it unlinked). */
	for (wf__waiter *x = e->q.head, *next; x != NULL; x = next) {
		next = x->next;
		if (x->data == w) {
			wf__waitq_remove(&e->q, x);
			wf__waiter_fire(x, WF_ECLOSED, NULL);
		}
	}
	wf__spin_unlock(&g.sl);
	if (--e->nwatch == 0)
		sigaction(w->signo, &e->prev, NULL);
	if (--g.nwatchers == 0 && g.running)
		poke_helper();
	pthread_mutex_unlock(&g.mu);
	free(w);
	return 0;
}

WF_EXTERN int wf_signal_wait(wf_signal *w, uint64_t timeout_ms)
{
	if (w == NULL)
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	/* In a child after fork, the helper is not there: start it. */
	if (__atomic_load_n(&g.pid, __ATOMIC_RELAXED) != getpid()) {
		pthread_mutex_lock(&g.mu);
		int rc = listed(w) ? ensure_helper_locked() : WF_EINVAL;
		pthread_mutex_unlock(&g.mu);
		if (rc != 0)
			return rc;
	}
	bool first = true;
	uint64_t id = 0;
	wf__spin_lock(&g.sl);
	for (;;) {
		if (!listed(w) || (!first && w->id != id)) {
			/* Unwatched between the helper's fire and this look
			 * (and maybe a new watcher made at its address). */
			wf__spin_unlock(&g.sl);
			return first ? WF_EINVAL : WF_ECLOSED;
		}
		id = w->id;
		sigent *e = &g.tab[w->signo];
		uint32_t n = __atomic_load_n(&e->count, __ATOMIC_SEQ_CST) - w->seen;
		if (n != 0) {
			/* More than INT_MAX: the rest is reported next time. */
			if (n > INT_MAX)
				n = INT_MAX;
			w->seen += n;
			wf__spin_unlock(&g.sl);
			return (int)n;
		}
		wf__waiting wg = {.lock = &g.sl,
				  .q = &e->q,
				  .what = "signal",
				  .obj = w,
				  .data = w,
				  .deadline = deadline,
				  .no_wait = timeout_ms == 0 ||
					     (deadline != WF__NO_DEADLINE && deadline <= wf__now_ns())};
		int rc = wf__wait_on(&wg);
		if (rc != 0)
			return rc;
		/* Fired: a delivery came (another wait on w may take it). */
		first = false;
		wf__spin_lock(&g.sl);
	}
}

WF_EXTERN int wf_signal_signo(const wf_signal *w)
{
	wf__spin_lock(&g.sl);
	int signo = w != NULL && listed(w) ? w->signo : WF_EINVAL;
	wf__spin_unlock(&g.sl);
	return signo;
}

/* ---- wf_run's cancellation of the main task (runtime.c) ---------------
 *
 * wf_run with cancel_on_signals runs the program's main function inside
 * run_main, which records the task it runs as, so that the first watched
 * signal cancels exactly that task. A signal before the task started is
 * kept and delivered when it starts; one after it returned, or a second
 * one, means the shutdown is stuck or too slow for the user: the default
 * disposition goes back and the signal is raised again, which ends the
 * process as if weft had never caught it. */

typedef struct run_signals {
	pthread_mutex_t mu;
	wf_task *main;  /* the main task while phase is 1 */
	int phase;      /* 0: not started, 1: running, 2: returned */
	bool cancelled; /* the first signal came */
	wf_fn fn;
	void *arg;
	wf_signal *w[2];
} run_signals;

static void die_by(int signo)
{
	fprintf(stderr, "weft: %s again while shutting down: stopping now\n",
		signo == SIGINT ? "SIGINT" : "SIGTERM");
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(signo, &dfl, NULL);
	/* The helper blocks signals: let this one through, to this thread. */
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, signo);
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	raise(signo);
	_exit(128 + signo); /* not reached: SIGINT's and SIGTERM's default ends it */
}

static void run_on_signal(int signo, unsigned n, void *arg)
{
	run_signals *s = arg;
	pthread_mutex_lock(&s->mu);
	if (!s->cancelled && s->phase != 2) {
		s->cancelled = true;
		if (s->phase == 1)
			wf_cancel(s->main); /* valid: run_main clears it first */
		n--;
	}
	pthread_mutex_unlock(&s->mu);
	if (n > 0)
		die_by(signo);
}

static void *run_main(void *arg)
{
	run_signals *s = arg;
	pthread_mutex_lock(&s->mu);
	s->main = wf_current();
	s->phase = 1;
	if (s->cancelled)
		wf_cancel(s->main);
	pthread_mutex_unlock(&s->mu);
	void *result = s->fn(s->arg);
	pthread_mutex_lock(&s->mu);
	s->phase = 2;
	s->main = NULL;
	pthread_mutex_unlock(&s->mu);
	return result;
}

void wf__run_signals_end(void *state);

/* Watches the signals of `sigs` (WF_SIG_*) and swaps *fn and *arg for
 * run_main and its state. 0 or a watch's error. */
int wf__run_signals_begin(unsigned sigs, wf_fn *fn, void **arg, void **state)
{
	run_signals *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return WF_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	s->fn = *fn;
	s->arg = *arg;
	static const struct {
		unsigned bit;
		int signo;
	} map[2] = {{WF_SIG_INT, SIGINT}, {WF_SIG_TERM, SIGTERM}};
	unsigned k = 0;
	for (unsigned i = 0; i < 2; i++) {
		if (!(sigs & map[i].bit))
			continue;
		int rc = watch(map[i].signo, run_on_signal, s, &s->w[k]);
		if (rc != 0) {
			wf__run_signals_end(s);
			return rc;
		}
		k++;
	}
	*fn = run_main;
	*arg = s;
	*state = s;
	return 0;
}

/* After the runtime was shut down: the dispositions of before go back. */
void wf__run_signals_end(void *state)
{
	run_signals *s = state;
	if (s == NULL)
		return;
	for (unsigned i = 0; i < 2; i++)
		if (s->w[i] != NULL)
			wf_signal_unwatch(s->w[i]);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
