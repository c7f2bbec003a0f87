/*
 * Seeing inside a running runtime (include/weft/observe.h): metrics, the
 * task dump and its JSON, the log and the exception handler, debug mode's
 * watchdog and end-of-run reports, and starting and stopping the live
 * console (console.c, WEFT_CONSOLE), which serves this file's JSON.
 *
 * Reading live state. Workers write their counters with relaxed stores of
 * their own (WF__COUNT) and nothing else; readers here load them relaxed.
 * Task dumps walk the workers' task slabs, which are never freed while the
 * runtime lives and were published with release stores, so every task
 * read is memory of a task; its fields may change while they are read and
 * a line of the dump may be inexact, never invalid. Pointers are printed
 * or decoded only where the memory is type-stable (a join's task, a lock),
 * never followed otherwise. TSan is told to ignore those reads.
 *
 * The watchdog (debug mode) samples each worker's running task and pick
 * count every quarter of the threshold: the same task with the same count
 * for longer than the threshold has not suspended since, and is reported
 * while it still runs, once per run of it.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "console.h"
#include "rt.h"
#include "subsystem.h"

#define SLOW_MS_DEFAULT 100
#define DUMP_LISTED 200  /* tasks a text dump names at most */
#define UNJOINED_LISTED 20

/* ---- clocks, the log, the exception handler ------------------------------ */

uint64_t wf__coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static wf_log_fn log_fn;
static void *log_arg;
static wf_exception_fn exc_fn;
static void *exc_arg;

void wf_set_log(wf_log_fn fn, void *arg)
{
	pthread_mutex_lock(&hook_mu);
	log_fn = fn;
	log_arg = arg;
	pthread_mutex_unlock(&hook_mu);
}

void wf_set_exception_handler(wf_exception_fn fn, void *arg)
{
	pthread_mutex_lock(&hook_mu);
	exc_fn = fn;
	exc_arg = arg;
	pthread_mutex_unlock(&hook_mu);
}

static void log_line(int level, const char *line)
{
	pthread_mutex_lock(&hook_mu);
	wf_log_fn fn = log_fn;
	void *arg = log_arg;
	pthread_mutex_unlock(&hook_mu);
	if (fn != NULL)
		fn(level, line, arg);
	else
		fprintf(stderr, "weft: %s\n", line);
}

void wf__log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_line(level, line);
}

void wf__report_never_joined(const char *name, uint64_t id, int err, const char *msg)
{
	pthread_mutex_lock(&hook_mu);
	wf_exception_fn fn = exc_fn;
	void *arg = exc_arg;
	pthread_mutex_unlock(&hook_mu);
	if (fn != NULL)
		fn(name, id, err, msg, arg);
	else
		wf__log(WF_LOG_ERROR, "task \"%s\" failed: %s, never joined", name,
			msg != NULL ? msg : wf_strerror(err));
}

/* ---- metrics ---------------------------------------------------------------- */

static uint64_t load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void worker_metrics(wf__worker *w, wf_worker_metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->spawned = load64(&w->n_started);
	m->finished = load64(&w->n_finished);
	m->polls = __atomic_load_n(&w->tick, __ATOMIC_RELAXED);
	m->steals = load64(&w->st.steals);
	m->inbox = load64(&w->st.inbox);
	m->injected = load64(&w->st.injected);
	m->parks = load64(&w->st.parks);
	m->park_ns = load64(&w->st.park_ns);
	m->io_polls = load64(&w->st.io_polls);
	m->io_events = load64(&w->st.io_events);
	m->timers_fired = load64(&w->st.timers_fired);
	int64_t depth = wf__deque_size(&w->deque);
	m->queue_depth = (depth > 0 ? (uint64_t)depth : 0) +
			 (__atomic_load_n(&w->lifo, __ATOMIC_RELAXED) != NULL);
	RACY_READS_BEGIN();
	m->timers = w->timers.len - w->timers.stale;
	m->busy = __atomic_load_n(&w->current, __ATOMIC_RELAXED) != NULL;
	RACY_READS_END();
}

int wf_runtime_metrics(wf_runtime *rt, wf_metrics *total, wf_worker_metrics *per_worker, size_t n)
{
	if (rt == NULL || (per_worker == NULL && n != 0))
		return WF_EINVAL;
	wf_metrics t;
	memset(&t, 0, sizeof(t));
	t.workers = rt->nworkers;
	t.uptime_ns = wf__now_ns() - rt->start_ns;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		wf_worker_metrics m;
		worker_metrics(&rt->workers[i], &m);
		if (i < n)
			per_worker[i] = m;
		t.spawned += m.spawned;
		t.finished += m.finished;
		t.polls += m.polls;
		t.steals += m.steals;
		t.inbox += m.inbox;
		t.injected += m.injected;
		t.parks += m.parks;
		t.park_ns += m.park_ns;
		t.io_polls += m.io_polls;
		t.io_events += m.io_events;
		t.timers_fired += m.timers_fired;
		t.timers += m.timers;
		t.busy_workers += m.busy;
	}
	t.spawned += __atomic_load_n(&rt->foreign_started, __ATOMIC_ACQUIRE);
	/* Read after the finishes: a task that ended between the two reads
	 * counts as spawned, never as finished and not spawned. */
	t.live = t.spawned >= t.finished ? t.spawned - t.finished : 0;
	wf_pool_stats ps;
	if (wf_pool_get_stats(NULL, &ps) == 0) {
		t.pool_threads = ps.threads;
		t.pool_idle = ps.idle;
		t.pool_queued = ps.queued;
	}
	if (total != NULL)
		*total = t;
	return (int)rt->nworkers;
}

/* ---- the task snapshot --------------------------------------------------- */

static int worker_index(wf_runtime *rt, const wf__worker *w)
{
	if (w == NULL || w < rt->workers || w >= rt->workers + rt->nworkers)
		return -1;
	return (int)(w - rt->workers);
}

static int running_on(wf_runtime *rt, const wf_task *t)
{
	for (unsigned i = 0; i < rt->nworkers; i++)
		if (__atomic_load_n(&rt->workers[i].current, __ATOMIC_RELAXED) == t)
			return (int)i;
	return -1;
}

/* Fills *ti from a task slot; false if the slot holds no live task. */
static bool task_info(wf_runtime *rt, wf_task *t, uint64_t now, wf_task_info *ti)
{
	if (__atomic_load_n(&t->magic, __ATOMIC_RELAXED) != WF__TASK_MAGIC ||
	    __atomic_load_n(&t->state, __ATOMIC_RELAXED) == WF__T_DONE)
		return false;
	memset(ti, 0, sizeof(*ti));
	ti->id = __atomic_load_n(&t->id, __ATOMIC_RELAXED);
	memcpy(ti->name, t->name, sizeof(ti->name));
	ti->name[sizeof(ti->name) - 1] = '\0';
	if (ti->name[0] == '\0') /* not named yet: the default name */
		snprintf(ti->name, sizeof(ti->name), "task-%llu", (unsigned long long)ti->id);
	ti->spawn_file = t->spawn_file;
	ti->spawn_line = t->spawn_line;
	ti->cancelling = t->cancelling;
	int on = running_on(rt, t);
	uint32_t word = __atomic_load_n(&t->waiter.word, __ATOMIC_RELAXED);
	ti->worker = on >= 0 ? on : worker_index(rt, __atomic_load_n(&t->last, __ATOMIC_RELAXED));
	if (__atomic_load_n(&t->state, __ATOMIC_RELAXED) == WF__T_NEW) {
		ti->state = WF_TASK_NEW;
	} else if (on >= 0 && (word & WF__W_STATE) != WF__W_ARMED) {
		ti->state = WF_TASK_RUNNING;
	} else if ((word & WF__W_STATE) == WF__W_ARMED) {
		ti->state = WF_TASK_WAITING;
		const char *what = __atomic_load_n(&t->waiter.what, __ATOMIC_RELAXED);
		const void *obj = __atomic_load_n(&t->waiter.obj, __ATOMIC_RELAXED);
		ti->waits_on = what != NULL ? what : "something";
		ti->waits_obj = (uint64_t)(uintptr_t)obj;
		uint64_t since = t->wait_since;
		ti->waiting_ns = since != 0 && now > since ? now - since : 0;
		/* Type-stable memory only: a join's task (its core is inside a
		 * task slot) and a lock. */
		if (obj != NULL && strcmp(ti->waits_on, "join") == 0) {
			const wf_task *j = (const wf_task *)((const char *)obj -
							     offsetof(wf_task, core));
			ti->waits_task = __atomic_load_n(&j->id, __ATOMIC_RELAXED);
		} else if (obj != NULL && strcmp(ti->waits_on, "lock") == 0) {
			ti->waits_task = wf__lock_holder(obj);
		}
	} else {
		ti->state = WF_TASK_RUNNABLE;
	}
	return true;
}

typedef struct snap {
	wf_task_info *out;
	size_t cap, stored, count;
	uint64_t now;
} snap;

static void snap_task(wf_runtime *rt, wf_task *t, snap *s)
{
	/* Straight into its place in out while there is room (no copy). */
	wf_task_info spare;
	bool room = s->stored < s->cap;
	if (!task_info(rt, t, s->now, room ? &s->out[s->stored] : &spare))
		return;
	if (room)
		s->stored++;
	s->count++;
}

static void snapshot(wf_runtime *rt, snap *s)
{
	s->now = wf__coarse_ns();
	RACY_READS_BEGIN();
	for (unsigned i = 0; i < rt->nworkers; i++) {
		wf__worker *w = &rt->workers[i];
		for (wf__slab *sl = __atomic_load_n(&w->slabs, __ATOMIC_ACQUIRE); sl != NULL;
		     sl = __atomic_load_n(&sl->next, __ATOMIC_ACQUIRE)) {
			wf_task *tasks = __atomic_load_n(&sl->tasks, __ATOMIC_RELAXED);
			for (size_t k = 0; k < WF__TASKS_PER_SLAB; k++)
				snap_task(rt, &tasks[k], s);
		}
	}
	pthread_mutex_lock(&rt->foreign_mu);
	for (wf_task *t = rt->foreign_reg.reg_next; t != &rt->foreign_reg; t = t->reg_next)
		snap_task(rt, t, s);
	pthread_mutex_unlock(&rt->foreign_mu);
	RACY_READS_END();
}

int wf_task_list(wf_runtime *rt, wf_task_info *out, size_t cap, size_t *count)
{
	if (rt == NULL || count == NULL || (out == NULL && cap != 0))
		return WF_EINVAL;
	snap s = {.out = out, .cap = cap};
	snapshot(rt, &s);
	*count = s.count;
	return (int)s.stored;
}

/* All live tasks, malloc'd; NULL when out of memory. */
static wf_task_info *snapshot_all(wf_runtime *rt, size_t *n)
{
	size_t cap = 64;
	for (;;) {
		wf_task_info *v = malloc(cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		snap s = {.out = v, .cap = cap};
		snapshot(rt, &s);
		if (s.count <= cap) {
			*n = s.stored;
			return v;
		}
		free(v);
		cap = s.count + s.count / 4 + 16;
	}
}

static const char *state_name(int s)
{
	static const char *const names[] = {"not started", "running", "runnable", "waiting"};
	return s >= 0 && s < 4 ? names[s] : "?";
}

static const wf_task_info *find_id(const wf_task_info *v, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].id == id)
			return &v[i];
	return NULL;
}

/* One task's line of the text dump, into buf. */
static void task_line(const wf_task_info *ti, const wf_task_info *all, size_t n, char *buf,
		      size_t cap)
{
	int len = snprintf(buf, cap, "  #%llu \"%s\" %s", (unsigned long long)ti->id, ti->name,
			   state_name(ti->state));
	size_t off = len > 0 ? (size_t)len : 0;
#define APPEND(...)                                                            \
	do {                                                                   \
		if (off < cap) {                                               \
			int k_ = snprintf(buf + off, cap - off, __VA_ARGS__);  \
			off += k_ > 0 ? (size_t)k_ : 0;                        \
		}                                                              \
	} while (0)
	if (ti->state == WF_TASK_WAITING) {
		APPEND(" %.1f s on %s", (double)ti->waiting_ns / 1e9, ti->waits_on);
		if (strcmp(ti->waits_on, "join") == 0 && ti->waits_task != 0) {
			const wf_task_info *j = find_id(all, n, ti->waits_task);
			APPEND(" of #%llu%s%s%s", (unsigned long long)ti->waits_task,
			       j != NULL ? " \"" : "", j != NULL ? j->name : "", j != NULL ? "\"" : "");
		} else if (ti->waits_obj != 0) {
			APPEND(" %#llx", (unsigned long long)ti->waits_obj);
			if (strcmp(ti->waits_on, "lock") == 0 && ti->waits_task != 0) {
				const wf_task_info *h = find_id(all, n, ti->waits_task);
				APPEND(" held by #%llu%s%s%s", (unsigned long long)ti->waits_task,
				       h != NULL ? " \"" : "", h != NULL ? h->name : "",
				       h != NULL ? "\"" : "");
			}
		}
	}
	if (ti->worker >= 0)
		APPEND(", worker %d", ti->worker);
	if (ti->spawn_file != NULL)
		APPEND(", spawned at %s:%d", ti->spawn_file, ti->spawn_line);
	if (ti->cancelling > 0)
		APPEND(", %d cancellation(s) caught", ti->cancelling);
#undef APPEND
}

int wf__dump(wf_runtime *rt, FILE *out, const char *title)
{
	size_t n;
	wf_task_info *v = snapshot_all(rt, &n);
	if (v == NULL)
		return WF_ENOMEM;
	wf_metrics m;
	wf_runtime_metrics(rt, &m, NULL, 0);
	char line[512];
	snprintf(line, sizeof(line),
		 "%s: %zu live task(s) on %llu worker(s), %llu busy; spawned %llu, finished %llu, "
		 "stolen %llu, parks %llu",
		 title, n, (unsigned long long)m.workers, (unsigned long long)m.busy_workers,
		 (unsigned long long)m.spawned, (unsigned long long)m.finished,
		 (unsigned long long)m.steals, (unsigned long long)m.parks);
	if (out != NULL)
		fprintf(out, "weft: %s\n", line);
	else
		log_line(WF_LOG_INFO, line);
	/* Running tasks first (they are the ones that may block a worker),
	 * then the rest in slab order. */
	for (int pass = 0; pass < 2; pass++) {
		size_t listed = 0;
		for (size_t i = 0; i < n; i++) {
			if ((v[i].state == WF_TASK_RUNNING) != (pass == 0))
				continue;
			if (listed++ == DUMP_LISTED) {
				snprintf(line, sizeof(line), "  ... and more");
			} else if (listed > DUMP_LISTED) {
				continue;
			} else {
				task_line(&v[i], v, n, line, sizeof(line));
			}
			if (out != NULL)
				fprintf(out, "weft: %s\n", line);
			else
				log_line(WF_LOG_INFO, line);
		}
	}
	if (out != NULL)
		fflush(out);
	free(v);
	return 0;
}

int wf_task_dump(wf_runtime *rt, FILE *out)
{
	if (rt == NULL)
		return WF_EINVAL;
	return wf__dump(rt, out, "task dump");
}

/* ---- JSON --------------------------------------------------------------------- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool failed;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
	if (b->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int k = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)k < b->cap - b->len) {
			b->len += (size_t)k;
			return;
		}
		size_t cap = (b->cap + (size_t)k) * 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* A JSON string of s (quotes included). */
static void sb_str(sbuf *b, const char *s)
{
	sb_add(b, "\"");
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			sb_add(b, "\\%c", c);
		else if (c < 0x20)
			sb_add(b, "\\u%04x", c);
		else
			sb_add(b, "%c", c);
	}
	sb_add(b, "\"");
}

#define JU(name, v) sb_add(b, "\"%s\":%llu", name, (unsigned long long)(v))

/* "metrics":{...},"workers":[...] */
static void json_metrics(sbuf *b, wf_runtime *rt, const wf_metrics *m,
			 const wf_worker_metrics *wm, size_t nw)
{
	sb_add(b, "\"metrics\":{");
	JU("workers", m->workers), sb_add(b, ","), JU("uptime_ns", m->uptime_ns), sb_add(b, ",");
	JU("spawned", m->spawned), sb_add(b, ","), JU("finished", m->finished), sb_add(b, ",");
	JU("live", m->live), sb_add(b, ","), JU("polls", m->polls), sb_add(b, ",");
	JU("steals", m->steals), sb_add(b, ","), JU("inbox", m->inbox), sb_add(b, ",");
	JU("injected", m->injected), sb_add(b, ","), JU("parks", m->parks), sb_add(b, ",");
	JU("park_ns", m->park_ns), sb_add(b, ","), JU("io_polls", m->io_polls), sb_add(b, ",");
	JU("io_events", m->io_events), sb_add(b, ","), JU("timers_fired", m->timers_fired);
	sb_add(b, ","), JU("timers", m->timers), sb_add(b, ","), JU("busy_workers", m->busy_workers);
	sb_add(b, ","), JU("pool_threads", m->pool_threads), sb_add(b, ",");
	JU("pool_idle", m->pool_idle), sb_add(b, ","), JU("pool_queued", m->pool_queued);
	sb_add(b, "},\"workers\":[");
	for (size_t i = 0; i < nw; i++) {
		const wf_worker_metrics *w = &wm[i];
		/* Parked: asleep in its loop for lack of work (or about to). */
		int parked = __atomic_load_n(&rt->workers[i].sleeping, __ATOMIC_RELAXED) != 0;
		sb_add(b, "%s{", i ? "," : "");
		JU("id", i), sb_add(b, ","), JU("busy", w->busy), sb_add(b, ",\"parked\":%d,", parked);
		JU("spawned", w->spawned), sb_add(b, ","), JU("finished", w->finished);
		sb_add(b, ","), JU("polls", w->polls), sb_add(b, ","), JU("steals", w->steals);
		sb_add(b, ","), JU("inbox", w->inbox), sb_add(b, ","), JU("injected", w->injected);
		sb_add(b, ","), JU("parks", w->parks), sb_add(b, ","), JU("park_ns", w->park_ns);
		sb_add(b, ","), JU("io_polls", w->io_polls), sb_add(b, ",");
		JU("io_events", w->io_events), sb_add(b, ","), JU("timers_fired", w->timers_fired);
		sb_add(b, ","), JU("queue_depth", w->queue_depth), sb_add(b, ",");
		JU("timers", w->timers), sb_add(b, "}");
	}
	sb_add(b, "]");
}

/* How long t has run on its worker without suspending, if runs (the
 * console's samples) knows: -1 otherwise. */
static int64_t running_ns(const wf_task_info *t, const wf__run_clock *runs, size_t nw,
			  uint64_t now)
{
	if (runs == NULL || t->state != WF_TASK_RUNNING || t->worker < 0 ||
	    (size_t)t->worker >= nw)
		return -1;
	const wf__run_clock *r = &runs[t->worker];
	if (r->id != t->id || r->since == 0 || now < r->since)
		return 0;
	return (int64_t)(now - r->since);
}

typedef struct ranked {
	const wf_task_info *t;
	uint64_t key;
} ranked;

static int by_key_desc(const void *a, const void *b)
{
	uint64_t x = ((const ranked *)a)->key, y = ((const ranked *)b)->key;
	return x < y ? 1 : x > y ? -1 : 0;
}

static int by_key_asc(const void *a, const void *b)
{
	return -by_key_desc(a, b);
}

/* The name of the task with that id, by the ids sorted (may be NULL). */
static const char *name_of(const ranked *ids, size_t n, uint64_t id)
{
	ranked key = {.key = id};
	const ranked *r = ids != NULL ? bsearch(&key, ids, n, sizeof(*ids), by_key_asc) : NULL;
	return r != NULL ? r->t->name : NULL;
}

/* One task's object; ids (may be NULL) names the task it waits for. */
static void json_task(sbuf *b, const wf_task_info *t, int64_t run_ns, const ranked *ids, size_t n)
{
	sb_add(b, "{");
	JU("id", t->id), sb_add(b, ",\"name\":"), sb_str(b, t->name);
	sb_add(b, ",\"state\":"), sb_str(b, state_name(t->state));
	sb_add(b, ",\"worker\":%d", t->worker);
	if (t->spawn_file != NULL) {
		char site[300];
		snprintf(site, sizeof(site), "%s:%d", t->spawn_file, t->spawn_line);
		sb_add(b, ",\"spawned\":"), sb_str(b, site);
	}
	if (t->waits_on != NULL) {
		sb_add(b, ",\"waits_on\":"), sb_str(b, t->waits_on);
		sb_add(b, ","), JU("waits_task", t->waits_task);
		const char *other = t->waits_task != 0 ? name_of(ids, n, t->waits_task) : NULL;
		if (other != NULL)
			sb_add(b, ",\"waits_task_name\":"), sb_str(b, other);
		sb_add(b, ","), JU("waiting_ns", t->waiting_ns);
	}
	if (run_ns >= 0)
		sb_add(b, ","), JU("running_ns", run_ns);
	sb_add(b, ",\"cancelling\":%d}", t->cancelling);
}

/* "tasks":[...]: every task, or (top > 0) the top running ones by time
 * run and the top waiting ones by time waited, then (WF__JSON_SUMMARY)
 * "task_count" and "states". false when out of memory. */
static bool json_tasks(sbuf *b, unsigned parts, const wf_task_info *v, size_t n,
		       const wf__run_clock *runs, size_t nw, size_t top)
{
	uint64_t now = wf__now_ns();
	/* The tasks by id, to name the task each one waits for. */
	ranked *ids = malloc((n ? n : 1) * sizeof(*ids));
	if (ids == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		ids[i] = (ranked){.t = &v[i], .key = v[i].id};
	qsort(ids, n, sizeof(*ids), by_key_asc);
	sb_add(b, "\"tasks\":[");
	if (top == 0) {
		for (size_t i = 0; i < n; i++) {
			sb_add(b, "%s", i ? "," : "");
			json_task(b, &v[i], running_ns(&v[i], runs, nw, now), ids, n);
		}
	} else {
		ranked *r = malloc((n ? n : 1) * sizeof(*r));
		if (r == NULL) {
			free(ids);
			return false;
		}
		size_t listed = 0;
		for (int state = WF_TASK_RUNNING; state <= WF_TASK_WAITING; state += 2) {
			size_t k = 0;
			for (size_t i = 0; i < n; i++) {
				if (v[i].state != state)
					continue;
				int64_t run = running_ns(&v[i], runs, nw, now);
				r[k].t = &v[i];
				r[k++].key = state == WF_TASK_WAITING ? v[i].waiting_ns
					     : run > 0		   ? (uint64_t)run
									   : 0;
			}
			qsort(r, k, sizeof(*r), by_key_desc);
			for (size_t i = 0; i < k && i < top; i++) {
				sb_add(b, "%s", listed++ ? "," : "");
				json_task(b, r[i].t, running_ns(r[i].t, runs, nw, now), ids, n);
			}
		}
		free(r);
	}
	free(ids);
	sb_add(b, "]");
	if (parts & WF__JSON_SUMMARY) {
		size_t count[4] = {0};
		for (size_t i = 0; i < n; i++)
			if (v[i].state >= 0 && v[i].state < 4)
				count[v[i].state]++;
		sb_add(b, ",\"task_count\":%zu,\"states\":{\"new\":%zu,\"running\":%zu,"
			  "\"runnable\":%zu,\"waiting\":%zu}",
		       n, count[WF_TASK_NEW], count[WF_TASK_RUNNING], count[WF_TASK_RUNNABLE],
		       count[WF_TASK_WAITING]);
	}
	return true;
}

#undef JU

/* ,"history":{...}: the console's samples of the counters. */
static void json_history(sbuf *b, const wf__json_extra *x)
{
	sb_add(b, ",\"history\":{\"interval_ms\":%u,\"fields\":[\"uptime_ms\",\"spawned\","
		  "\"finished\",\"steals\",\"inbox\",\"polls\"],\"samples\":[",
	       x->hist_interval_ms);
	for (size_t i = 0; i < x->nhist; i++) {
		const wf__history_sample *h = &x->hist[i];
		sb_add(b, "%s[%llu,%llu,%llu,%llu,%llu,%llu]", i ? "," : "",
		       (unsigned long long)(h->uptime_ns / 1000000u), (unsigned long long)h->spawned,
		       (unsigned long long)h->finished, (unsigned long long)h->steals,
		       (unsigned long long)h->inbox, (unsigned long long)h->polls);
	}
	sb_add(b, "]}");
}

int wf__observe_json(wf_runtime *rt, unsigned parts, const wf__json_extra *x, size_t top,
		     char **out, size_t *len)
{
	const wf__run_clock *runs = x != NULL ? x->runs : NULL;
	*out = NULL;
	size_t n = 0, nw = rt->nworkers;
	wf_task_info *v = NULL;
	wf_worker_metrics *wm = NULL;
	sbuf b = {.p = malloc(4096), .cap = 4096};
	if (b.p == NULL)
		goto nomem;
	sb_add(&b, "{");
	if (parts & WF__JSON_METRICS) {
		wf_metrics m;
		if ((wm = calloc(nw, sizeof(*wm))) == NULL)
			goto nomem;
		wf_runtime_metrics(rt, &m, wm, nw);
		json_metrics(&b, rt, &m, wm, nw);
		if (x != NULL && x->hist != NULL)
			json_history(&b, x);
	}
	if (parts & WF__JSON_TASKS) {
		if ((v = snapshot_all(rt, &n)) == NULL)
			goto nomem;
		sb_add(&b, "%s", parts & WF__JSON_METRICS ? "," : "");
		if (!json_tasks(&b, parts, v, n, runs, nw, top))
			goto nomem;
	}
	sb_add(&b, "}");
	if (b.failed)
		goto nomem;
	free(v);
	free(wm);
	*out = b.p;
	if (len != NULL)
		*len = b.len;
	return 0;
nomem:
	free(v);
	free(wm);
	free(b.p);
	return WF_ENOMEM;
}

int wf_runtime_json(wf_runtime *rt, char **out)
{
	if (rt == NULL || out == NULL)
		return WF_EINVAL;
	return wf__observe_json(rt, WF__JSON_METRICS | WF__JSON_TASKS, NULL, 0, out, NULL);
}

/* The console's samples of what each worker runs: a task seen running
 * with the same pick count as before has not suspended since it was
 * first seen (as the watchdog below reasons). */
void wf__run_clock_sample(wf_runtime *rt, wf__run_clock *runs)
{
	uint64_t now = wf__now_ns();
	RACY_READS_BEGIN();
	for (unsigned i = 0; i < rt->nworkers; i++) {
		wf__worker *w = &rt->workers[i];
		wf__run_clock *r = &runs[i];
		wf_task *cur = __atomic_load_n(&w->current, __ATOMIC_RELAXED);
		unsigned tick = __atomic_load_n(&w->tick, __ATOMIC_RELAXED);
		if (cur == r->cur && tick == r->tick)
			continue;
		r->cur = cur;
		r->tick = tick;
		r->since = now;
		/* Type-stable: a task slot stays a task slot while rt lives. */
		r->id = cur != NULL ? __atomic_load_n(&cur->id, __ATOMIC_RELAXED) : 0;
	}
	RACY_READS_END();
}

/* ---- debug mode: the watchdog, SIGUSR1, the end-of-run reports ----------------- */

typedef struct wslot {
	wf_task *cur;
	unsigned tick;
	uint64_t since;
	bool reported;
} wslot;

/* The kinds of objects debug mode counts at the start and the end. */
static const struct {
	unsigned kind;
	const char *name;
} counted[] = {
	{WF__K_LOCK, "lock"},       {WF__K_EVENT, "event"},     {WF__K_SEM, "semaphore"},
	{WF__K_COND, "condition"},  {WF__K_BARRIER, "barrier"}, {WF__K_RWLOCK, "read-write lock"},
	{WF__K_QUEUE, "queue"},     {WF__K_STREAM, "stream"},   {WF__K_SERVER, "server"},
	{WF__K_UDP, "UDP endpoint"}, {WF__K_FILE, "file"},      {WF__K_PROCESS, "process"},
	{WF__K_POOL, "pool"},       {WF__K_TIMER, "timer handle"}, {WF__K_INTERVAL, "interval"},
};
#define NCOUNTED (sizeof(counted) / sizeof(counted[0]))

struct wf__observe {
	wf_runtime *rt;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;            /* mu */
	bool has_watchdog, has_dumper;
	pthread_t watchdog, dumper;
	wf_signal *sigusr1;
	wf__console *console; /* WEFT_CONSOLE, or NULL */
	uint64_t slow_ns;
	wslot *slots;
	size_t live_at_start[NCOUNTED];
};

static void report_slow(wf_runtime *rt, unsigned i, wf_task *t, uint64_t ran_ns)
{
	wf_task_info ti;
	RACY_READS_BEGIN();
	bool live = task_info(rt, t, wf__coarse_ns(), &ti);
	RACY_READS_END();
	if (!live)
		return;
	char site[300] = "";
	if (ti.spawn_file != NULL)
		snprintf(site, sizeof(site), ", spawned at %s:%d", ti.spawn_file, ti.spawn_line);
	wf__log(WF_LOG_WARN,
		"debug: task \"%s\" (#%llu%s) has run for %llu ms on worker %u without suspending: "
		"it blocks that worker (move blocking calls to wf_to_thread)",
		ti.name, (unsigned long long)ti.id, site, (unsigned long long)(ran_ns / 1000000), i);
}

static void *watchdog_main(void *arg)
{
	struct wf__observe *o = arg;
	wf_runtime *rt = o->rt;
	uint64_t period = o->slow_ns / 4;
	if (period < 2000000)
		period = 2000000;
	pthread_mutex_lock(&o->mu);
	while (!o->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t at = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + period;
		ts.tv_sec = (time_t)(at / 1000000000u);
		ts.tv_nsec = (long)(at % 1000000000u);
		pthread_cond_timedwait(&o->cv, &o->mu, &ts);
		if (o->stop)
			break;
		pthread_mutex_unlock(&o->mu);
		uint64_t now = wf__now_ns();
		for (unsigned i = 0; i < rt->nworkers; i++) {
			wf__worker *w = &rt->workers[i];
			wslot *s = &o->slots[i];
			RACY_READS_BEGIN();
			wf_task *cur = __atomic_load_n(&w->current, __ATOMIC_RELAXED);
			RACY_READS_END();
			unsigned tick = __atomic_load_n(&w->tick, __ATOMIC_RELAXED);
			if (cur != s->cur || tick != s->tick) {
				*s = (wslot){.cur = cur, .tick = tick, .since = now};
			} else if (cur != NULL && !s->reported && now - s->since >= o->slow_ns) {
				s->reported = true;
				report_slow(rt, i, cur, now - s->since);
			}
		}
		pthread_mutex_lock(&o->mu);
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

static void *dumper_main(void *arg)
{
	struct wf__observe *o = arg;
	while (wf_signal_wait(o->sigusr1, WF_FOREVER) > 0)
		wf__dump(o->rt, NULL, "SIGUSR1: task dump");
	return NULL;
}

static void observe_free(struct wf__observe *o)
{
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
	free(o->slots);
	free(o);
}

static void observe_stop_threads(struct wf__observe *o)
{
	if (o->console != NULL)
		wf__console_stop(o->console);
	if (o->has_watchdog) {
		pthread_mutex_lock(&o->mu);
		o->stop = true;
		pthread_cond_signal(&o->cv);
		pthread_mutex_unlock(&o->mu);
		pthread_join(o->watchdog, NULL);
	}
	if (o->has_dumper) {
		wf_signal_unwatch(o->sigusr1); /* its wait returns WF_ECLOSED */
		pthread_join(o->dumper, NULL);
	}
}

/* Starts what debug mode and WEFT_CONSOLE ask for; nothing (and no cost)
 * when neither does. */
static int observe_start(wf_runtime *rt)
{
	unsigned dbg = rt->cfg.debug;
	const char *console = getenv("WEFT_CONSOLE");
	if (console != NULL && console[0] == '\0')
		console = NULL;
	if (!(dbg & (WF_DEBUG_CHECKS | WF_DEBUG_DUMP_ON_SIGUSR1)) && console == NULL)
		return 0;
	struct wf__observe *o = calloc(1, sizeof(*o));
	if (o == NULL)
		return WF_ENOMEM;
	o->rt = rt;
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	uint32_t ms = rt->cfg.slow_task_ms ? rt->cfg.slow_task_ms : SLOW_MS_DEFAULT;
	o->slow_ns = (uint64_t)ms * 1000000u;
	int rc = 0;
	if (console != NULL) {
		rc = wf__console_start(rt, console, &o->console);
		if (rc != 0)
			goto fail;
	}
	if (dbg & WF_DEBUG_CHECKS) {
		for (size_t k = 0; k < NCOUNTED; k++)
			o->live_at_start[k] = wf__htype_live(counted[k].kind);
		o->slots = calloc(rt->nworkers, sizeof(wslot));
		if (o->slots == NULL) {
			rc = WF_ENOMEM;
			goto fail;
		}
		rc = -pthread_create(&o->watchdog, NULL, watchdog_main, o);
		if (rc != 0)
			goto fail;
		o->has_watchdog = true;
	}
	if (dbg & WF_DEBUG_DUMP_ON_SIGUSR1) {
		rc = wf_signal_watch(SIGUSR1, &o->sigusr1);
		if (rc != 0)
			goto fail;
		rc = -pthread_create(&o->dumper, NULL, dumper_main, o);
		if (rc != 0) {
			wf_signal_unwatch(o->sigusr1);
			goto fail;
		}
		o->has_dumper = true;
	}
	rt->observe = o;
	return 0;
fail:
	observe_stop_threads(o);
	observe_free(o);
	return rc;
}

int wf__console_port(wf_runtime *rt)
{
	struct wf__observe *o = rt != NULL ? rt->observe : NULL;
	return o != NULL && o->console != NULL ? wf__console_port_of(o->console) : 0;
}

/* Debug mode, at the end: tasks whose handle is still held (finished, so
 * never joined or detached), and objects made meanwhile never freed. */
static void report_leftovers(wf_runtime *rt, struct wf__observe *o)
{
	unsigned listed = 0, more = 0;
	/* The workers still run (their remote frees may clear slots now):
	 * the reads race with those, and a slot cleared meanwhile is one
	 * the test below skips. */
	RACY_READS_BEGIN();
	for (unsigned i = 0; i < rt->nworkers; i++) {
		for (wf__slab *sl = rt->workers[i].slabs; sl != NULL; sl = sl->next) {
			for (size_t k = 0; k < WF__TASKS_PER_SLAB; k++) {
				wf_task *t = &sl->tasks[k];
				/* refs 0: freed, its slot not cleared yet. */
				if (__atomic_load_n(&t->magic, __ATOMIC_ACQUIRE) != WF__TASK_MAGIC ||
				    __atomic_load_n(&t->state, __ATOMIC_ACQUIRE) != WF__T_DONE ||
				    __atomic_load_n(&t->refs, __ATOMIC_ACQUIRE) == 0)
					continue;
				if (listed++ >= UNJOINED_LISTED) {
					more++;
					continue;
				}
				char site[300] = "";
				if (t->spawn_file != NULL)
					snprintf(site, sizeof(site), ", spawned at %s:%d",
						 t->spawn_file, t->spawn_line);
				wf__log(WF_LOG_WARN,
					"debug: task \"%s\" (#%llu%s) finished, but its handle was "
					"never joined or detached",
					wf__task_name(t), (unsigned long long)t->id, site);
			}
		}
	}
	RACY_READS_END();
	if (more > 0)
		wf__log(WF_LOG_WARN, "debug: ... and %u more handles never joined or detached",
			more);
	for (size_t k = 0; k < NCOUNTED; k++) {
		size_t now = wf__htype_live(counted[k].kind);
		if (now > o->live_at_start[k])
			wf__log(WF_LOG_WARN,
				"debug: %zu %s object(s) made while the runtime ran were never freed "
				"or closed",
				now - o->live_at_start[k], counted[k].name);
	}
}

static void observe_stop(wf_runtime *rt)
{
	struct wf__observe *o = rt->observe;
	if (o == NULL)
		return;
	rt->observe = NULL;
	observe_stop_threads(o);
	if (o->has_watchdog)
		report_leftovers(rt, o);
	observe_free(o);
}

const wf__subsystem wf__observe_subsystem = {
	.name = "observe",
	.start = observe_start,
	.stop = observe_stop,
};
