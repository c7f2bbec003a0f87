/*
 * Signals awaited as wake-ups (weft/signal.h) and wf_run's
 * cancel_on_signals.
 *
 * Criterion runs each test in a process of its own, so every test starts
 * with the signals at their dispositions of a fresh process and no
 * watcher. Deliveries are made with raise() (synchronous: the handler has
 * run when it returns, so counts are exact), kill(getpid()) (to any thread
 * that does not block it) and tgkill() (to one named worker thread).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_check.h"
#include "weft.h"

#define LONG_MS 10000 /* a wait that only a bug lets run out */

/* ---- helpers ------------------------------------------------------------ */

/* The thread id of the thread named `name` (/proc/self/task/T/comm), or 0. */
static pid_t find_thread(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	if (d == NULL)
		return 0;
	pid_t found = 0;
	struct dirent *de;
	while (found == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[64], comm[32] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL) {
			comm[strcspn(comm, "\n")] = '\0';
			if (strcmp(comm, name) == 0)
				found = (pid_t)atoi(de->d_name);
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

static int tgkill_thread(pid_t tid, int sig)
{
	return (int)syscall(SYS_tgkill, getpid(), tid, sig);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* A plain thread that sends `count` signals after `delay_ms`. */
typedef struct sender {
	pthread_t thread;
	int sig;
	unsigned delay_ms, count;
	bool use_kill; /* kill(getpid()) instead of raise() */
	pid_t tid;     /* != 0: tgkill this thread instead */
} sender;

static void *sender_main(void *arg)
{
	sender *s = arg;
	sleep_ms(s->delay_ms);
	for (unsigned i = 0; i < s->count; i++) {
		if (s->tid != 0)
			tgkill_thread(s->tid, s->sig);
		else if (s->use_kill)
			kill(getpid(), s->sig);
		else
			raise(s->sig);
	}
	return NULL;
}

static void sender_start(sender *s)
{
	cr_assert_eq(pthread_create(&s->thread, NULL, sender_main, s), 0);
}

/* ---- deliveries ----------------------------------------------------------- */

static void *raise_and_kill_main(void *arg)
{
	wf_signal *w;
	if (!CHECK_RC(wf_signal_watch(SIGUSR1, &w), 0))
		return NULL;
	CHECK_EQ(wf_signal_signo(w), SIGUSR1);
	/* Nothing came yet. */
	CHECK_RC(wf_signal_wait(w, 0), WF_ETIMEDOUT);
	raise(SIGUSR1);
	CHECK_EQ(wf_signal_wait(w, LONG_MS), 1);
	kill(getpid(), SIGUSR1);
	CHECK_EQ(wf_signal_wait(w, LONG_MS), 1);
	/* Reported once. */
	CHECK_RC(wf_signal_wait(w, 0), WF_ETIMEDOUT);
	/* A delivery while nobody waits is kept for the next wait. */
	raise(SIGUSR1);
	raise(SIGUSR1);
	CHECK_EQ(wf_signal_wait(w, 0), 2);
	CHECK_RC(wf_signal_unwatch(w), 0);
	return NULL;
}

Test(signal, raise_and_kill_are_seen)
{
	run_weft(2, raise_and_kill_main, NULL);
}

static void *task_waits_main(void *arg)
{
	/* The task sleeps in the wait: the signal comes from a plain thread
	 * while it is suspended. */
	wf_signal *w;
	if (!CHECK_RC(wf_signal_watch(SIGUSR2, &w), 0))
		return NULL;
	sender s = {.sig = SIGUSR2, .delay_ms = 50, .count = 1, .use_kill = true};
	sender_start(&s);
	CHECK_EQ(wf_signal_wait(w, LONG_MS), 1);
	pthread_join(s.thread, NULL);
	CHECK_RC(wf_signal_unwatch(w), 0);
	return NULL;
}

Test(signal, suspended_task_is_woken)
{
	run_weft(2, task_waits_main, NULL);
}

static void *two_watchers_main(void *arg)
{
	wf_signal *a, *b;
	if (!CHECK_RC(wf_signal_watch(SIGUSR1, &a), 0) || !CHECK_RC(wf_signal_watch(SIGUSR1, &b), 0))
		return NULL;
	for (int i = 0; i < 3; i++)
		raise(SIGUSR1);
	CHECK_EQ(wf_signal_wait(a, LONG_MS), 3);
	CHECK_EQ(wf_signal_wait(b, LONG_MS), 3);
	/* One suspended on each, one delivery: both wake. */
	sender s = {.sig = SIGUSR1, .delay_ms = 50, .count = 1};
	sender_start(&s);
	CHECK_EQ(wf_signal_wait(a, LONG_MS), 1);
	CHECK_EQ(wf_signal_wait(b, LONG_MS), 1);
	pthread_join(s.thread, NULL);
	/* A watcher made later sees only what comes after it. */
	wf_signal *c;
	CHECK_RC(wf_signal_watch(SIGUSR1, &c), 0);
	CHECK_RC(wf_signal_wait(c, 0), WF_ETIMEDOUT);
	raise(SIGUSR1);
	CHECK_EQ(wf_signal_wait(c, 0), 1);
	CHECK_EQ(wf_signal_wait(a, 0), 1);
	CHECK_RC(wf_signal_unwatch(a), 0);
	/* b goes on after a is gone. */
	raise(SIGUSR1);
	CHECK_EQ(wf_signal_wait(b, 0), 2);
	CHECK_RC(wf_signal_unwatch(b), 0);
	CHECK_RC(wf_signal_unwatch(c), 0);
	return NULL;
}

Test(signal, every_watcher_sees_every_delivery)
{
	run_weft(2, two_watchers_main, NULL);
}

/* Two tasks on two workers each count what their watcher reports while a
 * plain thread raises 100 signals; a third watcher is only read at the
 * end. Counts coalesce (a task that is slow to run gets several at once)
 * but their sum is exactly what was sent. */
enum { SENT = 100 };

typedef struct counter_arg {
	wf_signal *w;
	unsigned worker;
	long sum;
	int waits;
} counter_arg;

static void *counter_task(void *arg)
{
	counter_arg *c = arg;
	CHECK_RC(wf_move_to_worker(c->worker), 0);
	while (c->sum < SENT) {
		int n = wf_signal_wait(c->w, LONG_MS);
		if (!CHECK(n > 0))
			break;
		c->sum += n;
		c->waits++;
		/* Let deliveries pile up now and then. */
		if (c->waits % 7 == 0)
			wf_sleep(1);
	}
	return NULL;
}

static void *coalesce_main(void *arg)
{
	counter_arg c[2] = {{.worker = 0}, {.worker = 1}};
	wf_signal *late;
	for (int i = 0; i < 2; i++)
		if (!CHECK_RC(wf_signal_watch(SIGUSR2, &c[i].w), 0))
			return NULL;
	CHECK_RC(wf_signal_watch(SIGUSR2, &late), 0);
	wf_task *t[2];
	for (int i = 0; i < 2; i++)
		t[i] = wf_spawn(counter_task, &c[i]);
	sender s = {.sig = SIGUSR2, .delay_ms = 20, .count = SENT};
	sender_start(&s);
	for (int i = 0; i < 2; i++)
		CHECK_RC(wf_join(t[i], NULL), 0);
	pthread_join(s.thread, NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(c[i].sum, SENT);
		CHECK_RC(wf_signal_wait(c[i].w, 0), WF_ETIMEDOUT);
		CHECK_RC(wf_signal_unwatch(c[i].w), 0);
	}
	CHECK_EQ(wf_signal_wait(late, 0), SENT);
	CHECK_RC(wf_signal_unwatch(late), 0);
	return NULL;
}

Test(signal, counts_coalesce_but_are_never_lost)
{
	run_weft(2, coalesce_main, NULL);
}

/* ---- timeouts and cancellation ------------------------------------------- */

static void *timeout_main(void *arg)
{
	wf_signal *w;
	if (!CHECK_RC(wf_signal_watch(SIGUSR1, &w), 0))
		return NULL;
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_signal_wait(w, 50), WF_ETIMEDOUT);
	CHECK(mono_ns() - t0 >= 45 * 1000000ull);
	CHECK_RC(wf_signal_wait(w, 0), WF_ETIMEDOUT);
	/* The watcher still works after a timeout. */
	raise(SIGUSR1);
	CHECK_EQ(wf_signal_wait(w, 50), 1);
	CHECK_RC(wf_signal_unwatch(w), 0);
	return NULL;
}

Test(signal, wait_times_out)
{
	run_weft(1, timeout_main, NULL);
}

static int cancelled_rc;

static void *cancelled_waiter(void *arg)
{
	cancelled_rc = wf_signal_wait(arg, WF_FOREVER);
	return NULL;
}

static void *cancel_main(void *arg)
{
	wf_signal *w;
	if (!CHECK_RC(wf_signal_watch(SIGUSR1, &w), 0))
		return NULL;
	wf_task *t = wf_spawn(cancelled_waiter, w);
	wf_sleep(30);
	CHECK_RC(wf_cancel(t), 0);
	/* The task let the cancellation through: that is its outcome. */
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(cancelled_rc, WF_ECANCELED);
	/* The cancelled wait left nothing behind: a delivery now is still
	 * reported, once. */
	raise(SIGUSR1);
	CHECK_EQ(wf_signal_wait(w, LONG_MS), 1);
	CHECK_RC(wf_signal_unwatch(w), 0);
	return NULL;
}

Test(signal, wait_is_cancellable)
{
	run_weft(2, cancel_main, NULL);
}

/* ---- across workers ------------------------------------------------------- */

static void *raiser_on_worker(void *arg)
{
	CHECK_RC(wf_move_to_worker(1), 0);
	CHECK_EQ(wf_worker_id(), 1);
	raise(SIGUSR1); /* delivered to worker 1's thread */
	return NULL;
}

static void *cross_worker_main(void *arg)
{
	CHECK_RC(wf_move_to_worker(0), 0);
	CHECK_RC(wf_pin(true), 0);
	wf_signal *w;
	if (!CHECK_RC(wf_signal_watch(SIGUSR1, &w), 0))
		return NULL;

	/* tgkill to the thread named weft-w1 while this task, pinned to
	 * worker 0, is suspended in the wait. */
	pid_t w1 = find_thread("weft-w1"), w0 = find_thread("weft-w0");
	CHECK(w1 != 0 && w0 != 0 && w1 != w0);
	CHECK(w0 == (pid_t)syscall(SYS_gettid));
	for (int round = 0; round < 20 && !check_any_failed(); round++) {
		sender s = {.sig = SIGUSR1, .delay_ms = round % 3 == 0 ? 20 : 0, .count = 1,
			    .tid = w1};
		sender_start(&s);
		CHECK_EQ(wf_signal_wait(w, LONG_MS), 1);
		CHECK_EQ(wf_worker_id(), 0);
		pthread_join(s.thread, NULL);
	}

	/* raise() from a task running on worker 1. */
	wf_task *t = wf_spawn(raiser_on_worker, NULL);
	CHECK_EQ(wf_signal_wait(w, LONG_MS), 1);
	CHECK_EQ(wf_worker_id(), 0);
	CHECK_RC(wf_join(t, NULL), 0);
	CHECK_RC(wf_signal_unwatch(w), 0);
	return NULL;
}

Test(signal, delivery_on_another_worker_wakes_the_waiter)
{
	run_weft(2, cross_worker_main, NULL);
}

/* A signal blocked everywhere except on worker 1: the kernel has only
 * that thread to deliver kill(getpid())'s signal to (weft's helper thread
 * blocks it too). */
static void *unblock_on_worker1(void *arg)
{
	CHECK_RC(wf_move_to_worker(1), 0);
	CHECK_RC(wf_pin(true), 0);
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, SIGUSR2);
	CHECK_RC(pthread_sigmask(SIG_UNBLOCK, &one, NULL), 0);
	return NULL;
}

static void *reblock_on_worker1(void *arg)
{
	CHECK_RC(wf_move_to_worker(1), 0);
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, SIGUSR2);
	CHECK_RC(pthread_sigmask(SIG_BLOCK, &one, NULL), 0);
	return NULL;
}

static void *only_worker1_main(void *arg)
{
	CHECK_RC(wf_move_to_worker(0), 0);
	CHECK_RC(wf_pin(true), 0);
	wf_signal *w;
	if (!CHECK_RC(wf_signal_watch(SIGUSR2, &w), 0))
		return NULL;
	CHECK_RC(wf_join(wf_spawn(unblock_on_worker1, NULL), NULL), 0);
	for (int round = 0; round < 10 && !check_any_failed(); round++) {
		sender s = {.sig = SIGUSR2, .delay_ms = round % 2 ? 10 : 0, .count = 1,
			    .use_kill = true};
		sender_start(&s);
		CHECK_EQ(wf_signal_wait(w, LONG_MS), 1);
		CHECK_EQ(wf_worker_id(), 0);
		pthread_join(s.thread, NULL);
	}
	CHECK_RC(wf_join(wf_spawn(reblock_on_worker1, NULL), NULL), 0);
	CHECK_RC(wf_signal_unwatch(w), 0);
	return NULL;
}

Test(signal, blocked_in_all_threads_but_one_worker)
{
	/* Blocked here before the runtime starts: every worker inherits the
	 * mask, and so do the sender threads (made from worker 0). */
	sigset_t one, old;
	sigemptyset(&one);
	sigaddset(&one, SIGUSR2);
	cr_assert_eq(pthread_sigmask(SIG_BLOCK, &one, &old), 0);
	run_weft(2, only_worker1_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- dispositions --------------------------------------------------------- */

static int own_handler_runs; /* atomic */

static void own_handler(int sig)
{
	__atomic_add_fetch(&own_handler_runs, 1, __ATOMIC_RELAXED);
}

Test(signal, unwatch_restores_the_previous_disposition)
{
	struct sigaction sa, now;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = own_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	raise(SIGUSR1);
	cr_assert_eq(own_handler_runs, 1);

	/* From a plain thread, with no runtime: watching works all the same. */
	wf_signal *a, *b;
	cr_assert_eq(wf_signal_watch(SIGUSR1, &a), 0);
	cr_assert_eq(wf_signal_watch(SIGUSR1, &b), 0);
	raise(SIGUSR1);
	cr_assert_eq(own_handler_runs, 1, "the program's handler ran while watched");
	cr_assert_eq(wf_signal_wait(a, LONG_MS), 1);
	/* Not the last watcher: weft's handler stays. */
	cr_assert_eq(wf_signal_unwatch(a), 0);
	raise(SIGUSR1);
	cr_assert_eq(own_handler_runs, 1);
	cr_assert_eq(wf_signal_wait(b, LONG_MS), 2);
	cr_assert_eq(wf_signal_unwatch(b), 0);

	cr_assert_eq(sigaction(SIGUSR1, NULL, &now), 0);
	cr_assert(now.sa_handler == own_handler, "the program's handler is not back");
	cr_assert_eq(now.sa_flags & SA_RESTART, SA_RESTART);
	raise(SIGUSR1);
	cr_assert_eq(own_handler_runs, 2, "the program's handler does not run again");

	/* SIG_IGN comes back as SIG_IGN. */
	cr_assert_eq(signal(SIGUSR2, SIG_IGN) != SIG_ERR, 1);
	cr_assert_eq(wf_signal_watch(SIGUSR2, &a), 0);
	raise(SIGUSR2);
	cr_assert_eq(wf_signal_wait(a, LONG_MS), 1);
	cr_assert_eq(wf_signal_unwatch(a), 0);
	cr_assert_eq(sigaction(SIGUSR2, NULL, &now), 0);
	cr_assert(now.sa_handler == SIG_IGN);
	raise(SIGUSR2); /* ignored: the test goes on */
	check_no_leaks();
}

Test(signal, bad_arguments)
{
	wf_signal *w = (wf_signal *)1;
	int bad[] = {0, -1, NSIG, 1000, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(wf_signal_watch(bad[i], &w), WF_EINVAL, "signal %d", bad[i]);
		cr_expect_null(w);
		w = (wf_signal *)1;
	}
	cr_expect_eq(wf_signal_watch(SIGUSR1, NULL), WF_EINVAL);
	cr_expect_eq(wf_signal_wait(NULL, 0), WF_EINVAL);
	cr_expect_eq(wf_signal_unwatch(NULL), WF_EINVAL);
	cr_expect_eq(wf_signal_signo(NULL), WF_EINVAL);
	/* A handle that was never a watcher, and one unwatched already. */
	cr_expect_eq(wf_signal_wait((wf_signal *)&w, 0), WF_EINVAL);
	cr_assert_eq(wf_signal_watch(SIGUSR1, &w), 0);
	cr_assert_eq(wf_signal_unwatch(w), 0);
	cr_expect_eq(wf_signal_unwatch(w), WF_EINVAL);
	cr_expect_eq(wf_signal_wait(w, 0), WF_EINVAL);
	cr_expect_eq(wf_signal_signo(w), WF_EINVAL);
	/* Real-time signals are fine. */
	cr_assert_eq(wf_signal_watch(SIGRTMIN + 1, &w), 0);
	raise(SIGRTMIN + 1);
	raise(SIGRTMIN + 1);
	cr_expect_eq(wf_signal_wait(w, LONG_MS), 2);
	cr_assert_eq(wf_signal_unwatch(w), 0);
	check_no_leaks();
}

/* ---- plain threads -------------------------------------------------------- */

Test(signal, plain_thread_waits)
{
	/* No runtime at all. */
	wf_signal *w;
	cr_assert_eq(wf_signal_watch(SIGUSR1, &w), 0);
	sender s = {.sig = SIGUSR1, .delay_ms = 50, .count = 1, .use_kill = true};
	sender_start(&s);
	cr_assert_eq(wf_signal_wait(w, LONG_MS), 1);
	pthread_join(s.thread, NULL);
	cr_assert_eq(wf_signal_wait(w, 20), WF_ETIMEDOUT);
	cr_assert_eq(wf_signal_unwatch(w), 0);
	check_no_leaks();
}

static void *raise_later(void *arg)
{
	wf_sleep(50);
	raise(SIGUSR1);
	return NULL;
}

Test(signal, plain_thread_woken_by_a_task)
{
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(NULL, &rt), 0);
	wf_signal *w;
	cr_assert_eq(wf_signal_watch(SIGUSR1, &w), 0);
	wf_future *f;
	cr_assert_eq(wf_runtime_submit(rt, raise_later, NULL, &f), 0);
	cr_assert_eq(wf_signal_wait(w, LONG_MS), 1);
	cr_assert_eq(wf_await(f, NULL), 0);
	wf_future_release(f);
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	/* The watcher outlives the runtime. */
	raise(SIGUSR1);
	cr_assert_eq(wf_signal_wait(w, LONG_MS), 1);
	cr_assert_eq(wf_signal_unwatch(w), 0);
	check_no_leaks();
}

typedef struct closer {
	pthread_t thread;
	wf_signal *w;
	int rc;
} closer;

static void *wait_in_thread(void *arg)
{
	closer *c = arg;
	c->rc = wf_signal_wait(c->w, LONG_MS);
	return NULL;
}

Test(signal, unwatch_ends_a_wait_in_progress)
{
	closer c = {.rc = 1};
	cr_assert_eq(wf_signal_watch(SIGUSR1, &c.w), 0);
	wf_signal *other;
	cr_assert_eq(wf_signal_watch(SIGUSR1, &other), 0);
	cr_assert_eq(pthread_create(&c.thread, NULL, wait_in_thread, &c), 0);
	sleep_ms(50);
	cr_assert_eq(wf_signal_unwatch(c.w), 0);
	pthread_join(c.thread, NULL);
	cr_assert_eq(c.rc, WF_ECLOSED);
	/* The other watcher of the signal is untouched. */
	raise(SIGUSR1);
	cr_assert_eq(wf_signal_wait(other, LONG_MS), 1);
	cr_assert_eq(wf_signal_unwatch(other), 0);
	check_no_leaks();
}

/* A wait woken by a delivery whose watcher is unwatched before the waiter
 * runs, and a new watcher made at once (usually at the same address):
 * the wait ends with WF_ECLOSED, never taking the new watcher for its own
 * (it would wait on, and take deliveries meant for, that watcher). One
 * worker, so the waiter cannot run between the delivery and the swap. */
typedef struct swap_arg {
	wf_signal *w;
	int rc;
	int waiting; /* atomic */
} swap_arg;

static void *swap_waiter(void *arg)
{
	swap_arg *a = arg;
	__atomic_store_n(&a->waiting, 1, __ATOMIC_RELEASE);
	a->rc = wf_signal_wait(a->w, 2000);
	return NULL;
}

static void *swap_main(void *arg)
{
	int *reused = arg;
	/* Keeps the helper thread up between the unwatch and the watch, so
	 * that the freed watcher's memory is the next one's. */
	wf_signal *anchor;
	if (!CHECK_RC(wf_signal_watch(SIGUSR2, &anchor), 0))
		return NULL;
	for (int i = 0; i < 20 && !check_any_failed(); i++) {
		swap_arg a = {.rc = 1};
		if (!CHECK_RC(wf_signal_watch(SIGUSR1, &a.w), 0))
			break;
		wf_task *t = wf_spawn(swap_waiter, &a);
		while (!__atomic_load_n(&a.waiting, __ATOMIC_ACQUIRE))
			CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_yield(), 0); /* the waiter is suspended in its wait */
		raise(SIGUSR1);
		sleep_ms(30); /* the helper fired the waiter, which cannot run yet */
		wf_signal *old = a.w, *next;
		CHECK_RC(wf_signal_unwatch(a.w), 0);
		CHECK_RC(wf_signal_watch(SIGUSR1, &next), 0);
		*reused += next == old;
		CHECK_RC(wf_join(t, NULL), 0);
		CHECK_RC(a.rc, WF_ECLOSED);
		/* The new watcher saw nothing yet, and sees the next delivery. */
		CHECK_RC(wf_signal_wait(next, 0), WF_ETIMEDOUT);
		raise(SIGUSR1);
		CHECK_EQ(wf_signal_wait(next, LONG_MS), 1);
		CHECK_RC(wf_signal_unwatch(next), 0);
	}
	CHECK_RC(wf_signal_unwatch(anchor), 0);
	return NULL;
}

Test(signal, a_woken_wait_never_takes_a_new_watcher_at_its_address)
{
	int reused = 0;
	run_weft(1, swap_main, &reused);
	check_none_failed();
	cr_log_info("new watcher at the old one's address in %d of 20 rounds", reused);
	check_no_leaks();
}

/* Watchers come and go while signals arrive (the helper thread ends with
 * the last watcher and a new one starts with the next). */
Test(signal, watch_unwatch_churn)
{
	for (int i = 0; i < test_iters(300); i++) {
		wf_signal *w;
		cr_assert_eq(wf_signal_watch(SIGUSR1, &w), 0);
		raise(SIGUSR1);
		cr_assert_eq(wf_signal_wait(w, LONG_MS), 1);
		cr_assert_eq(wf_signal_unwatch(w), 0);
	}
	check_no_leaks();
}

/* ---- wf_run's cancel_on_signals ------------------------------------------ */

typedef struct run_arg {
	bool handle;   /* main handles the cancellation and returns normally */
	int wait_rc;   /* what main's wait returned */
	int after_rc;  /* a wait after handling it */
	int ready;     /* atomic: main is about to wait */
} run_arg;

static void *send_term_when_ready(void *arg)
{
	run_arg *r = arg;
	while (!__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE))
		sleep_ms(1);
	sleep_ms(30); /* main is suspended by now */
	kill(getpid(), SIGTERM);
	return NULL;
}

static void *waits_forever_main(void *arg)
{
	run_arg *r = arg;
	wf_future *never = wf_future_new();
	pthread_t t;
	CHECK_RC(pthread_create(&t, NULL, send_term_when_ready, r), 0);
	__atomic_store_n(&r->ready, 1, __ATOMIC_RELEASE);
	r->wait_rc = wf_await(never, NULL);
	pthread_join(t, NULL);
	wf_future_release(never);
	if (r->handle && r->wait_rc == WF_ECANCELED) {
		CHECK_EQ(wf_uncancel(), 0);
		r->after_rc = wf_sleep(5); /* a clean-up that waits */
	}
	return NULL;
}

Test(signal, run_cancels_main_on_sigterm)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cr_assert_eq(cfg.cancel_on_signals, 0);
	cfg.workers = 2;
	cfg.cancel_on_signals = WF_SIG_INT | WF_SIG_TERM;
	run_arg r = {0};
	int rc = wf_run(&cfg, waits_forever_main, &r, NULL);
	check_none_failed();
	cr_assert_eq(r.wait_rc, WF_ECANCELED, "main's wait: %s", wf_err_name(r.wait_rc));
	cr_assert_eq(rc, WF_ECANCELED, "wf_run: %s", wf_err_name(rc));
	/* The dispositions of before are back. */
	struct sigaction now;
	cr_assert_eq(sigaction(SIGTERM, NULL, &now), 0);
	cr_assert(now.sa_handler == SIG_DFL);
	cr_assert_eq(sigaction(SIGINT, NULL, &now), 0);
	cr_assert(now.sa_handler == SIG_DFL);
	check_no_leaks();
}

Test(signal, run_main_may_handle_the_cancellation)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.cancel_on_signals = WF_SIG_TERM;
	run_arg r = {.handle = true};
	int rc = wf_run(&cfg, waits_forever_main, &r, NULL);
	check_none_failed();
	cr_assert_eq(r.wait_rc, WF_ECANCELED);
	cr_assert_eq(r.after_rc, 0, "the clean-up's wait: %s", wf_err_name(r.after_rc));
	cr_assert_eq(rc, 0, "wf_run: %s", wf_err_name(rc));
	check_no_leaks();
}

Test(signal, run_refuses_unknown_signal_flags)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.cancel_on_signals = 4;
	run_arg r = {0};
	stderr_capture cap;
	stderr_capture_begin(&cap);
	int rc = wf_run(&cfg, waits_forever_main, &r, NULL);
	char *err = stderr_capture_end(&cap);
	cr_assert_eq(rc, WF_EINVAL);
	cr_assert(strstr(err, "cancel_on_signals") != NULL, "stderr: %s", err);
	free(err);
	wf_config_init(&cfg);
	cfg.reserved[0] = 1;
	stderr_capture_begin(&cap);
	rc = wf_run(&cfg, waits_forever_main, &r, NULL);
	free(stderr_capture_end(&cap));
	cr_assert_eq(rc, WF_EINVAL);
}

/* A main task that catches every cancellation: the first SIGINT cancels
 * it, the second ends the process by SIGINT. It runs in a child process:
 * this test binary re-executed with SIGNAL_TEST_CHILD=<fd> in its
 * environment, which a constructor picks up before Criterion starts (a
 * plain fork of the multi-threaded test process could not start threads
 * under TSan). The child reports on fd: 'r' when main runs, 'c' at each
 * cancellation. */
static int stuck_pipe = -1;

static void *stuck_main(void *arg)
{
	ssize_t r = write(stuck_pipe, "r", 1);
	for (;;) {
		if (wf_sleep(60000) == WF_ECANCELED) {
			wf_uncancel();
			r = write(stuck_pipe, "c", 1);
		}
	}
	(void)r;
	return NULL;
}

__attribute__((constructor)) static void signal_test_child(void)
{
	const char *fd = getenv("SIGNAL_TEST_CHILD");
	if (fd == NULL)
		return;
	alarm(120); /* never hang */
	stuck_pipe = atoi(fd);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.shutdown_grace_ms = 60000;
	cfg.cancel_on_signals = WF_SIG_INT | WF_SIG_TERM;
	wf_run(&cfg, stuck_main, NULL, NULL);
	_exit(3); /* not reached: main never returns */
}

static char read_byte(int fd)
{
	char c = 0;
	ssize_t n;
	do
		n = read(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	return n == 1 ? c : 0;
}

extern char **environ;

Test(signal, run_second_signal_ends_the_process)
{
#if defined(WF_TSAN)
	/* The re-executed child dies in ThreadSanitizer's fork check when
	 * Criterion's runner forked the test process: the other builds run
	 * this test. */
	cr_skip("not under ThreadSanitizer");
#endif
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fcntl(p[0], F_SETFD, FD_CLOEXEC);
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 2, sizeof(char *));
	cr_assert_not_null(env);
	memcpy(env, environ, n * sizeof(char *));
	char var[64];
	snprintf(var, sizeof(var), "SIGNAL_TEST_CHILD=%d", p[1]);
	env[n] = var;
	char *argv[] = {"test_signal", NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env);
	free(env);
	close(p[1]);
	cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));
	cr_assert_eq(read_byte(p[0]), 'r');
	kill(pid, SIGINT);
	cr_assert_eq(read_byte(p[0]), 'c', "the first SIGINT did not cancel main");
	kill(pid, SIGINT);
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	close(p[0]);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT,
		  "the child ended with status %#x, not by SIGINT", status);
}
