/*
 * Runtime lifecycle: configuration, starting the workers and the
 * subsystems, submitting work from any thread, and shutting down.
 *
 * Configuration comes from wf_config and the environment (base 10 only);
 * a bad value fails the start with WF_EINVAL and one line on stderr that
 * names the variable or field, its value and the accepted range.
 *
 * Shutdown first closes the gate to submissions (submit_enter): every
 * submission is then either refused or counted. It drains before it stops:
 * it asks every worker to cancel the tasks on its registry (only a
 * registry's owner may walk it), waits until every task ever started has
 * finished (sum of per-worker finished counters equals the sum of started
 * ones, see sum_started), re-sending the cancellation every so often for
 * tasks that caught one, and after the grace period names the tasks still
 * running. Then it stops the subsystems (subsystem.h), then the workers,
 * and frees everything, handles the program never gave back included.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "asym.h"
#include "poller.h"
#include "rt.h"
#include "subsystem.h"

#define DEFAULT_STACK_KIB 64
#define DEFAULT_GRACE_MS 2000
#define RECANCEL_MS 50
#define DEBUG_KNOWN ((unsigned)(WF_DEBUG_CHECKS | WF_DEBUG_DUMP_ON_SIGUSR1))
#define SLOW_MS_MAX 3600000u
#define STUCK_LISTED 20 /* tasks named by the shutdown's report */

/* ---- configuration ------------------------------------------------------ */

/* What each setting accepts, in the words of the messages (the same limits
 * are documented at wf_config_init). */
#define WORKERS_RANGE "0 to 4096 (0: one per core)"
#define STACK_KIB_RANGE "0 (the default) or 16 to 4194304"
#define STACK_SIZE_RANGE "0 (the default) or 16384 to 4294967296"
#define DEBUG_RANGE "0, 1, 4 or 5 (WF_DEBUG_CHECKS = 1, WF_DEBUG_DUMP_ON_SIGUSR1 = 4)"
#define SLOW_MS_RANGE "0 (the default: 100) to 3600000"

/* An environment variable as read: unset (text NULL), a number, or what is
 * wrong with it. Base 10 only: "010" is ten, not eight. */
typedef struct env_value {
	const char *name, *text;
	uint64_t value;
	const char *problem;
} env_value;

static env_value env_read(const char *name)
{
	env_value e = {.name = name, .text = getenv(name)};
	if (e.text == NULL || e.text[0] == '\0') {
		e.text = NULL;
		return e;
	}
	const char *s = e.text;
	if (s[0] == '-') {
		e.problem = "is negative";
		return e;
	}
	if (s[0] < '0' || s[0] > '9') { /* strtoull would take "+1", " 1" */
		e.problem = "is not a base-10 number";
		return e;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end != '\0')
		e.problem = "is not a base-10 number";
	else if (errno == ERANGE)
		e.problem = "is too large";
	else
		e.value = v;
	return e;
}

/* Values wf_config_init stores for a variable that is not a number: out
 * of range, so the start fails and names the variable. */
#define BAD_WORKERS UINT_MAX
#define BAD_STACK SIZE_MAX
#define BAD_DEBUG UINT_MAX

static unsigned env_workers(void)
{
	env_value e = env_read("WEFT_WORKERS");
	if (e.text == NULL)
		return 0;
	return e.problem != NULL || e.value > WF_WORKERS_MAX ? BAD_WORKERS : (unsigned)e.value;
}

static size_t env_stack_size(void)
{
	env_value e = env_read("WEFT_STACK_KIB");
	if (e.text == NULL)
		return 0;
	if (e.problem != NULL || e.value > WF_STACK_SIZE_MAX / 1024)
		return BAD_STACK;
	return (size_t)e.value * 1024;
}

static unsigned env_debug(void)
{
	env_value e = env_read("WEFT_DEBUG");
	if (e.text == NULL)
		return 0;
	return e.problem != NULL || e.value > UINT_MAX ? BAD_DEBUG : (unsigned)e.value;
}

static uint32_t env_slow_ms(void)
{
	env_value e = env_read("WEFT_SLOW_TASK_MS");
	if (e.text == NULL)
		return 0;
	return e.problem != NULL || e.value > SLOW_MS_MAX ? UINT32_MAX : (uint32_t)e.value;
}

void wf_config_init(wf_config *cfg)
{
	if (cfg == NULL)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->workers = env_workers();
	cfg->stack_size = env_stack_size();
	cfg->debug = env_debug();
	cfg->slow_task_ms = env_slow_ms();
	cfg->shutdown_grace_ms = DEFAULT_GRACE_MS;
}

/* A bad field that holds what the environment variable put there is the
 * variable's fault: the message names the variable and its text. */
static bool env_to_blame(const char *name, bool (*ok)(uint64_t), uint64_t field,
			 uint64_t bad, uint64_t scale, char *msg, size_t cap, const char *range)
{
	env_value e = env_read(name);
	if (e.text == NULL)
		return false;
	if (e.problem != NULL) {
		if (field != bad)
			return false;
		snprintf(msg, cap, "%s=%.40s %s: accepted %s", name, e.text, e.problem, range);
		return true;
	}
	if (ok(e.value) || (field != bad && field != e.value * scale))
		return false;
	snprintf(msg, cap, "%s=%.40s is out of range: accepted %s", name, e.text, range);
	return true;
}

static bool workers_ok(uint64_t v) { return v <= WF_WORKERS_MAX; }
static bool stack_kib_ok(uint64_t v)
{
	return v == 0 || (v >= WF_STACK_SIZE_MIN / 1024 && v <= WF_STACK_SIZE_MAX / 1024);
}
static bool debug_ok(uint64_t v) { return (v & ~(uint64_t)DEBUG_KNOWN) == 0; }
static bool slow_ok(uint64_t v) { return v <= SLOW_MS_MAX; }

/* 0, or WF_EINVAL with what is wrong in msg (no "weft: " in front). */
static int config_check(const wf_config *cfg, char *msg, size_t cap)
{
	if (!workers_ok(cfg->workers)) {
		if (!env_to_blame("WEFT_WORKERS", workers_ok, cfg->workers, BAD_WORKERS, 1, msg, cap,
				  WORKERS_RANGE))
			snprintf(msg, cap, "wf_config.workers is %u: accepted " WORKERS_RANGE,
				 cfg->workers);
		return WF_EINVAL;
	}
	if (cfg->stack_size != 0 &&
	    (cfg->stack_size < WF_STACK_SIZE_MIN || cfg->stack_size > WF_STACK_SIZE_MAX)) {
		if (!env_to_blame("WEFT_STACK_KIB", stack_kib_ok, cfg->stack_size, BAD_STACK, 1024,
				  msg, cap, STACK_KIB_RANGE))
			snprintf(msg, cap, "wf_config.stack_size is %zu bytes: accepted " STACK_SIZE_RANGE,
				 cfg->stack_size);
		return WF_EINVAL;
	}
	if (!debug_ok(cfg->debug)) {
		if (!env_to_blame("WEFT_DEBUG", debug_ok, cfg->debug, BAD_DEBUG, 1, msg, cap,
				  DEBUG_RANGE))
			snprintf(msg, cap, "wf_config.debug is %#x, unknown flags %#x: accepted " DEBUG_RANGE,
				 cfg->debug, cfg->debug & ~DEBUG_KNOWN);
		return WF_EINVAL;
	}
	if (cfg->cancel_on_signals & ~(unsigned)(WF_SIG_INT | WF_SIG_TERM)) {
		snprintf(msg, cap, "wf_config.cancel_on_signals is %#x, unknown flags %#x: accepted "
				   "WF_SIG_INT (1) and WF_SIG_TERM (2)",
			 cfg->cancel_on_signals,
			 cfg->cancel_on_signals & ~(unsigned)(WF_SIG_INT | WF_SIG_TERM));
		return WF_EINVAL;
	}
	if (cfg->slow_task_ms > SLOW_MS_MAX) {
		if (!env_to_blame("WEFT_SLOW_TASK_MS", slow_ok, cfg->slow_task_ms, UINT32_MAX, 1, msg,
				  cap, SLOW_MS_RANGE))
			snprintf(msg, cap, "wf_config.slow_task_ms is %u: accepted " SLOW_MS_RANGE,
				 cfg->slow_task_ms);
		return WF_EINVAL;
	}
	if (cfg->hooks != NULL && !WF__RESERVED_ZERO(cfg->hooks)) {
		snprintf(msg, cap, "wf_config.hooks->reserved is not zero");
		return WF_EINVAL;
	}
	if (!WF__RESERVED_ZERO(cfg)) {
		snprintf(msg, cap, "wf_config.reserved is not zero: initialise wf_config with "
				   "wf_config_init");
		return WF_EINVAL;
	}
	return 0;
}

/* The start-up failure's message: on stderr always, and to the caller of
 * wf_run_ex. */
static void config_report(const char *msg, char **errmsg)
{
	wf__log(WF_LOG_ERROR, "%s", msg);
	if (errmsg != NULL)
		*errmsg = strdup(msg);
}

static unsigned ncores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* The CPUs this process may run on (its affinity mask, which a container's
 * cpuset narrows), for the spinning limit (scheduler.c). */
static unsigned usable_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return (unsigned)n;
	}
	return ncores();
}

static size_t default_stack_size(void)
{
#if defined(WF_ASAN) || defined(WF_TSAN)
	/* Sanitizers make frames several times larger. */
	return (size_t)DEFAULT_STACK_KIB * 1024 * 8;
#else
	return (size_t)DEFAULT_STACK_KIB * 1024;
#endif
}

static int worker_init(wf_runtime *rt, wf__worker *w, unsigned id)
{
	memset(w, 0, sizeof(*w));
	w->rt = rt;
	w->id = id;
	w->rng = 0x9e3779b97f4a7c15ull * (id + 1);
	w->stacks.stack_size = rt->stack_size;
	w->next_id = 1;
	if (wf__deque_init(&w->deque, 10) != 0)
		return WF_ENOMEM;
	w->epfd = w->wakefd = -1;
	w->cpu = -1;
	int rc = uv_loop_init(&w->loop);
	if (rc != 0) {
		wf__deque_destroy(&w->deque);
		return rc;
	}
	rc = wf__poller_init(w);
	if (rc != 0) {
		uv_loop_close(&w->loop);
		wf__deque_destroy(&w->deque);
		return rc;
	}
	return 0;
}

static void worker_destroy(wf__worker *w)
{
	wf__task_release_all(w);
	wf__timers_destroy(w);
	wf__stack_cache_trim(&w->stacks, 0);
	wf__deque_destroy(&w->deque);
	wf__poller_destroy(w);
	uv_loop_close(&w->loop);
}

static void runtime_free(wf_runtime *rt, unsigned nworkers_inited)
{
	for (unsigned i = 0; i < nworkers_inited; i++)
		worker_destroy(&rt->workers[i]);
	wf__offload_release(rt);
	/* Tasks submitted from plain threads. */
	wf__task_release_foreign(rt);
	pthread_mutex_destroy(&rt->foreign_mu);
	pthread_mutex_destroy(&rt->start_mu);
	pthread_cond_destroy(&rt->start_cv);
	free(rt->workers);
	free(rt);
}

/* ---- subsystems' hooks (subsystem.h) ---------------------------------- */

static unsigned nsubsystems(void)
{
	unsigned n = 0;
	while (wf__subsystems[n] != NULL)
		n++;
	return n;
}

/* Stops the first n subsystems, last first. */
static void subsystems_stop(wf_runtime *rt, unsigned n)
{
	while (n-- > 0)
		if (wf__subsystems[n]->stop != NULL)
			wf__subsystems[n]->stop(rt);
}

static int subsystems_start(wf_runtime *rt)
{
	for (unsigned i = 0; wf__subsystems[i] != NULL; i++) {
		const wf__subsystem *s = wf__subsystems[i];
		int rc = s->start != NULL ? s->start(rt) : 0;
		if (rc != 0) {
			wf__log(WF_LOG_ERROR, "the %s subsystem failed to start: %s", s->name,
				wf_strerror(rc));
			subsystems_stop(rt, i);
			return rc;
		}
	}
	return 0;
}

static void wake_all(wf_runtime *rt)
{
	for (unsigned i = 0; i < rt->nworkers; i++)
		wf__poller_wake(&rt->workers[i]);
}

static void stop_workers(wf_runtime *rt)
{
	/* Seq_cst: a parking worker sets its sleeping flag, fences, then
	 * reads this (scheduler.c, park); the wake-ups below reach those
	 * that read it too early. */
	__atomic_store_n(&rt->shutdown, 2, __ATOMIC_SEQ_CST);
	wake_all(rt);
	for (unsigned i = 0; i < rt->nworkers; i++)
		pthread_join(rt->workers[i].thread, NULL);
}

/* Live runtimes with WF_DEBUG_CHECKS, for the debug notes of calls that
 * know no runtime (a plain thread's). */
static unsigned debug_runtimes; /* atomic */

/* calloc on a cache-line boundary; freed with free(). */
static void *cacheline_calloc(size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	void *p = NULL;
	if (posix_memalign(&p, WF__CACHELINE, n * size) != 0)
		return NULL;
	memset(p, 0, n * size);
	return p;
}

static int runtime_start(const wf_config *cfg_in, wf_runtime **out, char **errmsg)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, wf__stacks_global_init);
	wf__asym_init();

	wf_config cfg;
	if (cfg_in != NULL) {
		cfg = *cfg_in;
	} else {
		wf_config_init(&cfg);
	}
	char msg[256];
	if (config_check(&cfg, msg, sizeof(msg)) != 0) {
		config_report(msg, errmsg);
		return WF_EINVAL;
	}
	/* Aligned: the runtime's and the workers' hot words are laid out a
	 * cache line apart (rt.h). */
	wf_runtime *rt = cacheline_calloc(1, sizeof(*rt));
	if (rt == NULL)
		return WF_ENOMEM;
	rt->cfg = cfg;
	rt->hooks = cfg.hooks;
	rt->start_ns = wf__now_ns();
	rt->nworkers = cfg.workers ? cfg.workers : ncores();
	rt->ncpus = usable_cpus();
	rt->stack_size = cfg.stack_size ? cfg.stack_size : default_stack_size();
	if (rt->cfg.shutdown_grace_ms == 0)
		rt->cfg.shutdown_grace_ms = DEFAULT_GRACE_MS;
	rt->foreign_reg.reg_next = rt->foreign_reg.reg_prev = &rt->foreign_reg;
	pthread_mutex_init(&rt->foreign_mu, NULL);
	pthread_mutex_init(&rt->start_mu, NULL);
	pthread_cond_init(&rt->start_cv, NULL);
	rt->workers = cacheline_calloc(rt->nworkers, sizeof(wf__worker));
	if (rt->workers == NULL) {
		runtime_free(rt, 0);
		return WF_ENOMEM;
	}
	unsigned inited = 0;
	int rc = 0;
	for (; inited < rt->nworkers; inited++)
		if ((rc = worker_init(rt, &rt->workers[inited], inited)) != 0)
			break;
	if (rc != 0) {
		runtime_free(rt, inited);
		return rc;
	}
	/* pthread_create orders everything written above before each
	 * worker's first step; start_mu orders the workers' start-up before
	 * the runtime is handed out. */
	unsigned created = 0;
	for (; created < rt->nworkers; created++) {
		rc = -pthread_create(&rt->workers[created].thread, NULL, wf__worker_main,
				     &rt->workers[created]);
		if (rc != 0)
			break;
	}
	if (rc != 0) {
		__atomic_store_n(&rt->shutdown, 2, __ATOMIC_SEQ_CST);
		for (unsigned i = 0; i < created; i++) {
			/* The loop may not be parked yet: wait until it started. */
			pthread_mutex_lock(&rt->start_mu);
			while (rt->started < created)
				pthread_cond_wait(&rt->start_cv, &rt->start_mu);
			pthread_mutex_unlock(&rt->start_mu);
			wf__poller_wake(&rt->workers[i]);
			pthread_join(rt->workers[i].thread, NULL);
		}
		runtime_free(rt, inited);
		return rc;
	}
	pthread_mutex_lock(&rt->start_mu);
	while (rt->started < rt->nworkers)
		pthread_cond_wait(&rt->start_cv, &rt->start_mu);
	pthread_mutex_unlock(&rt->start_mu);
	if ((rc = subsystems_start(rt)) != 0) {
		stop_workers(rt);
		runtime_free(rt, rt->nworkers);
		return rc;
	}
	/* Relaxed: the count only turns notes on, it orders nothing. */
	if (cfg.debug & WF_DEBUG_CHECKS)
		__atomic_add_fetch(&debug_runtimes, 1, __ATOMIC_RELAXED);
	*out = rt;
	return 0;
}

int wf_runtime_start(const wf_config *cfg, wf_runtime **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	return runtime_start(cfg, out, NULL);
}

/* The submission's half of the gate with wf_runtime_shutdown: count the
 * call in progress, then look at the flag. Both are seq_cst, and shutdown
 * does the mirror image (set the flag, then read the count), so in the
 * single order of seq_cst operations one of them comes first: either this
 * call sees the flag and refuses, or shutdown sees the count and waits
 * for the call to end, by which time the new task is counted as started
 * (and so awaited by the drain) and queued where a running worker takes
 * it. A plain check of the flag alone, as on x86 one might hope for, lets
 * a call that passed it queue a task after the workers stopped. */
static bool submit_enter(wf_runtime *rt)
{
	__atomic_add_fetch(&rt->submitting, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&rt->shutdown, __ATOMIC_SEQ_CST) == 0)
		return true;
	__atomic_sub_fetch(&rt->submitting, 1, __ATOMIC_RELEASE);
	return false;
}

/* Release: pairs with the acquire loads of wait_submissions, which then
 * see the task counted in foreign_started (or n_started) and queued. */
static void submit_leave(wf_runtime *rt)
{
	__atomic_sub_fetch(&rt->submitting, 1, __ATOMIC_RELEASE);
}

static void wait_submissions(wf_runtime *rt)
{
	while (__atomic_load_n(&rt->submitting, __ATOMIC_ACQUIRE) != 0)
		sched_yield();
}

/* Starts fn(arg) as a new task of rt from any thread; out NULL: detached,
 * no future (wf__runtime_spawn). */
static int submit(wf_runtime *rt, wf_fn fn, void *arg, void (*unstarted)(void *),
		  wf_future **out)
{
	if (!submit_enter(rt))
		return WF_ESHUTDOWN;
	int rc = 0;
	wf_future *f = NULL;
	if (out != NULL && (f = wf_future_new()) == NULL) {
		rc = WF_ENOMEM;
		goto out;
	}
	wf__worker *w = wf__self();
	bool local = w != NULL && w->rt == rt && w->current != NULL;
	wf_task *t = wf__task_alloc(rt, local ? w : NULL);
	if (t == NULL) {
		if (f != NULL)
			wf_future_release(f);
		rc = WF_ENOMEM;
		goto out;
	}
	t->fn = fn;
	t->arg = arg;
	t->unstarted = unstarted;
	if (f != NULL) {
		t->submit = wf__future_get(wf_future_retain(f)); /* the object */
		/* Detached, submitted: the future has the outcome. */
		wf__task_set_joined(t, 2 | 8);
	} else {
		wf__task_set_joined(t, 2); /* detached */
	}
	__atomic_store_n(&t->refs, 1, __ATOMIC_RELAXED); /* the start entry */
	if (local)
		wf__schedule_new(w, t);
	else
		wf__inject(rt, t);
	if (out != NULL)
		*out = f;
out:
	submit_leave(rt);
	return rc;
}

int wf_runtime_submit(wf_runtime *rt, wf_fn fn, void *arg, wf_future **out)
{
	if (out != NULL)
		*out = NULL;
	if (rt == NULL || fn == NULL || out == NULL)
		return WF_EINVAL;
	return submit(rt, fn, arg, NULL, out);
}

int wf__runtime_spawn(wf_runtime *rt, wf_fn fn, void *arg, void (*unstarted)(void *arg))
{
	return submit(rt, fn, arg, unstarted, NULL);
}

/* The drain's counters. Each is written by one thread with a release store
 * (a worker's n_started in wf__task_alloc, its n_finished in the task's
 * completion; foreign_started with an acq_rel add on the submitting
 * thread) and read here with acquire loads. A task's start is counted
 * before it can be handed to anyone, and its finish is counted by whoever
 * ran it, after it was handed over through a queue (release push, acquire
 * take): so the count of its start happens before the count of its
 * finish, and once the acquire load of a finished counter has seen the
 * latter, a later load of the started counters sees the former. Hence
 * finished is read first: it never exceeds started, and equal sums mean
 * no task is left. */
static uint64_t sum_started(wf_runtime *rt)
{
	uint64_t n = __atomic_load_n(&rt->foreign_started, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < rt->nworkers; i++)
		n += __atomic_load_n(&rt->workers[i].n_started, __ATOMIC_ACQUIRE);
	return n;
}

static uint64_t sum_finished(wf_runtime *rt)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < rt->nworkers; i++)
		n += __atomic_load_n(&rt->workers[i].n_finished, __ATOMIC_ACQUIRE);
	return n;
}

static void cancel_everything(wf_runtime *rt)
{
	/* Seq_cst: a parking worker sets its sleeping flag, fences and reads
	 * the epoch (scheduler.c, park), so it either sees the new epoch and
	 * sweeps, or sleeps and is woken below. */
	__atomic_add_fetch(&rt->cancel_epoch, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&rt->foreign_mu);
	wf__task_cancel_list(&rt->foreign_reg);
	pthread_mutex_unlock(&rt->foreign_mu);
	wake_all(rt);
}

/* ---- the shutdown's report of tasks that do not end --------------------- */

/* The report reads other threads' tasks without synchronising with them: it
 * is a diagnostic, printed once, and a stale or torn field only makes one
 * line inexact. What it must never do is follow a pointer that is not
 * valid: the slabs are never freed while the runtime lives (a slab is
 * published with a release store before its tasks are handed out, and read
 * here with acquire loads), a foreign task is read under foreign_mu, and
 * every other pointer is printed, not followed (waiter.what points to a
 * string constant). TSan is told to ignore these reads. */

typedef struct stuck_report {
	wf_runtime *rt;
	unsigned listed, more;
} stuck_report;

static int running_on(wf_runtime *rt, const wf_task *t)
{
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (__atomic_load_n(&rt->workers[i].current, __ATOMIC_RELAXED) == t)
			return (int)i;
	return -1;
}

/* Lists t if it is live and unfinished. running: list only the tasks that
 * some worker is running (those that never suspend, listed first), or only
 * the others. */
static void report_task(stuck_report *r, wf_task *t, bool running)
{
	if (__atomic_load_n(&t->magic, __ATOMIC_RELAXED) != WF__TASK_MAGIC ||
	    __atomic_load_n(&t->state, __ATOMIC_RELAXED) == WF__T_DONE)
		return;
	int worker = running_on(r->rt, t);
	if ((worker >= 0) != running)
		return;
	if (r->listed == STUCK_LISTED) {
		r->more++;
		return;
	}
	r->listed++;
	char name[WF__NAME_MAX];
	memcpy(name, t->name, sizeof(name));
	name[sizeof(name) - 1] = '\0';
	if (name[0] == '\0') /* not named yet: the default name */
		snprintf(name, sizeof(name), "task-%llu",
			 (unsigned long long)__atomic_load_n(&t->id, __ATOMIC_RELAXED));
	char how[160];
	uint32_t word = __atomic_load_n(&t->waiter.word, __ATOMIC_RELAXED);
	uint32_t park = __atomic_load_n(&t->park, __ATOMIC_RELAXED);
	const char *what = __atomic_load_n(&t->waiter.what, __ATOMIC_RELAXED);
	const void *obj = __atomic_load_n(&t->waiter.obj, __ATOMIC_RELAXED);
	if (__atomic_load_n(&t->state, __ATOMIC_RELAXED) == WF__T_NEW)
		snprintf(how, sizeof(how), "not started");
	else if (worker >= 0 && (word & WF__W_STATE) != WF__W_ARMED)
		snprintf(how, sizeof(how),
			 "running on worker %d without suspending, so it cannot see a "
			 "cancellation", worker);
	else if ((word & WF__W_STATE) == WF__W_ARMED && obj != NULL)
		snprintf(how, sizeof(how), "%s, waiting on %s at %p",
			 park == WF__P_PARKED ? "suspended" : "suspending",
			 what != NULL ? what : "something", obj);
	else if ((word & WF__W_STATE) == WF__W_ARMED)
		snprintf(how, sizeof(how), "%s, waiting on %s",
			 park == WF__P_PARKED ? "suspended" : "suspending",
			 what != NULL ? what : "something");
	else
		snprintf(how, sizeof(how), "ready to run");
	int cancelling = __atomic_load_n(&t->cancelling, __ATOMIC_RELAXED);
	const char *pending = (word & WF__W_CANCEL_PENDING) ? ", a cancellation pending" : "";
	const char *inl = __atomic_load_n(&t->inline_parent, __ATOMIC_RELAXED) != NULL
				  ? " (run inline by its joiner)" : "";
	if (cancelling > 0)
		wf__log(WF_LOG_WARN, "  \"%s\"%s: %s%s; %d cancellation(s) caught", name, inl, how,
			pending, cancelling);
	else
		wf__log(WF_LOG_WARN, "  \"%s\"%s: %s%s", name, inl, how, pending);
}

static void report_pass(stuck_report *r, bool running)
{
	wf_runtime *rt = r->rt;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		wf__worker *w = &rt->workers[i];
		for (wf__slab *s = __atomic_load_n(&w->slabs, __ATOMIC_ACQUIRE); s != NULL;
		     s = __atomic_load_n(&s->next, __ATOMIC_ACQUIRE)) {
			wf_task *tasks = __atomic_load_n(&s->tasks, __ATOMIC_RELAXED);
			for (size_t k = 0; k < WF__TASKS_PER_SLAB; k++)
				report_task(r, &tasks[k], running);
		}
	}
	pthread_mutex_lock(&rt->foreign_mu);
	for (wf_task *t = rt->foreign_reg.reg_next; t != &rt->foreign_reg; t = t->reg_next)
		report_task(r, t, running);
	pthread_mutex_unlock(&rt->foreign_mu);
}

/* Shutdown has waited its grace period for tasks that do not end: name
 * them, the ones that never suspend first. */
static void report_stuck(wf_runtime *rt, uint64_t waited_ms)
{
	wf__log(WF_LOG_WARN,
		"shutdown: %llu task(s) still running after %llu ms of cancellation; "
		"waiting for them:",
		(unsigned long long)(sum_started(rt) - sum_finished(rt)),
		(unsigned long long)waited_ms);
	stuck_report r = {.rt = rt};
	RACY_READS_BEGIN();
	report_pass(&r, true);
	report_pass(&r, false);
	RACY_READS_END();
	if (r.more > 0)
		wf__log(WF_LOG_WARN, "  ... and %u more", r.more);
}

int wf_runtime_shutdown(wf_runtime *rt)
{
	if (rt == NULL)
		return WF_EINVAL;
	wf__worker *self = wf__self();
	if (self != NULL && self->rt == rt)
		return WF_EDEADLK;
	/* Seq_cst: the other half of submit_enter's gate. */
	int zero = 0;
	if (!__atomic_compare_exchange_n(&rt->shutdown, &zero, 1, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		return WF_EALREADY;
	/* Submissions that got in before the flag: their tasks must be
	 * counted before the drain compares the counters. */
	wait_submissions(rt);

	uint64_t waited_ms = 0;
	for (;;) {
		uint64_t fin = sum_finished(rt);
		if (fin == sum_started(rt))
			break;
		if (waited_ms % RECANCEL_MS == 0)
			cancel_everything(rt);
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
		nanosleep(&ts, NULL);
		waited_ms++;
		if (waited_ms == rt->cfg.shutdown_grace_ms)
			report_stuck(rt, waited_ms);
	}
	/* A plain thread that woke the last task may still be signalling its
	 * worker: let it finish before the workers' loops close. Acquire:
	 * pairs with the release decrement in the scheduler's make_runnable.
	 * Its increment came before the push of the task (seq_cst), so it is
	 * visible here once the task's finish is (the drain's acquire loads
	 * of the counters). */
	while (__atomic_load_n(&rt->foreign_wakes, __ATOMIC_ACQUIRE) != 0)
		sched_yield();
	subsystems_stop(rt, nsubsystems());
	stop_workers(rt);
	/* Calls refused meanwhile still touch the count: let them leave. */
	wait_submissions(rt);
	if (rt->cfg.debug & WF_DEBUG_CHECKS)
		__atomic_sub_fetch(&debug_runtimes, 1, __ATOMIC_RELAXED);
	runtime_free(rt, rt->nworkers);
	return 0;
}

/* io/signal.c: wf_config.cancel_on_signals. begin watches the signals and
 * swaps main_fn and arg for a wrapper that records the main task (the
 * first signal cancels it; a later one ends the process); end puts the
 * previous dispositions back. */
int wf__run_signals_begin(unsigned sigs, wf_fn *main_fn, void **arg, void **state);
void wf__run_signals_end(void *state);

int wf_run_ex(const wf_config *cfg, wf_fn main_fn, void *arg, void **result, char **errmsg)
{
	if (result != NULL)
		*result = NULL;
	if (errmsg != NULL)
		*errmsg = NULL;
	if (main_fn == NULL)
		return WF_EINVAL;
	wf_runtime *rt;
	int rc = runtime_start(cfg, &rt, errmsg);
	if (rc != 0)
		return rc;
	/* The signals are caught from before the main task exists until the
	 * shutdown below has returned: the first one cancels main, and one
	 * during the shutdown (which may wait on tasks that do not end) must
	 * still find weft's handler to end the process. */
	void *sigstate = NULL;
	if (cfg != NULL && cfg->cancel_on_signals != 0) {
		rc = wf__run_signals_begin(cfg->cancel_on_signals, &main_fn, &arg, &sigstate);
		if (rc != 0) {
			wf_runtime_shutdown(rt);
			return rc;
		}
	}
	wf_future *f;
	rc = wf_runtime_submit(rt, main_fn, arg, &f);
	if (rc != 0) {
		wf_runtime_shutdown(rt);
		wf__run_signals_end(sigstate);
		return rc;
	}
	rc = wf_await(f, result);
	if (rc != 0 && errmsg != NULL && wf_future_errmsg(f) != NULL)
		*errmsg = strdup(wf_future_errmsg(f));
	wf_future_release(f);
	wf_runtime_shutdown(rt);
	wf__run_signals_end(sigstate);
	for (const wf__subsystem *const *s = wf__subsystems; *s != NULL; s++)
		if ((*s)->run_end != NULL)
			(*s)->run_end();
	return rc;
}

int wf_run(const wf_config *cfg, wf_fn main_fn, void *arg, void **result)
{
	return wf_run_ex(cfg, main_fn, arg, result, NULL);
}

/* Says what went wrong on stderr, in debug mode only: for calls whose
 * failure has no code to carry it (wf_spawn's NULL). rt: the runtime the
 * call concerns, or NULL if it knows none (a plain thread): then any live
 * runtime in debug mode, or WEFT_DEBUG, turns the note on. */
void wf__debug_note(const wf_runtime *rt, const char *fmt, ...)
{
	bool on;
	if (rt != NULL) {
		on = (rt->cfg.debug & WF_DEBUG_CHECKS) != 0;
	} else {
		env_value e = env_read("WEFT_DEBUG");
		on = __atomic_load_n(&debug_runtimes, __ATOMIC_RELAXED) != 0 ||
		     (e.text != NULL && e.problem == NULL && (e.value & WF_DEBUG_CHECKS));
	}
	if (!on)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	wf__log(WF_LOG_WARN, "%s", msg);
}

wf_runtime *wf_runtime_current(void)
{
	wf__worker *w = wf__self();
	return w != NULL ? w->rt : NULL;
}

unsigned wf_runtime_workers(const wf_runtime *rt)
{
	return rt != NULL ? rt->nworkers : 0;
}

int wf_worker_id(void)
{
	wf__worker *w = wf__self();
	return w != NULL ? (int)w->id : -1;
}
