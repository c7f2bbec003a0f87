/*
 * spawn_process (BENCH_SPEC.md): N runs of /bin/true, at most 16 in
 * flight. As in the peers, the root takes one of 16 semaphore slots before
 * it starts each task, which starts the child (stdin, stdout and stderr
 * on /dev/null, as os/exec and tokio::process give them), waits for it,
 * counts it if it exited 0 and gives the slot back. The children are
 * reaped by the poller of the worker that started each one (a pidfd
 * edge), whichever worker the waiting task is on.
 */
#include <stdint.h>
#include <stdlib.h>

#include "bench.h"

#define IN_FLIGHT 16
#define CHILD_LIMIT_MS 120000

struct spawn_state {
	wf_sem *slots;
	uint64_t ok;  /* atomic: children that exited 0 */
	int err;      /* atomic: the first failure */
};

static void *one_child(void *arg)
{
	struct spawn_state *st = arg;
	static const char *const argv[] = {"true", NULL};
	wf_process_opts o = {.stdin_mode = WF_DEVNULL, .stdout_mode = WF_DEVNULL,
			     .stderr_mode = WF_DEVNULL};
	wf_process *p;
	int rc = wf_process_exec("/bin/true", argv, &o, &p);
	if (rc == 0) {
		int code = -1;
		rc = wf_process_wait(p, CHILD_LIMIT_MS, &code);
		if (rc == 0 && code == 0)
			__atomic_add_fetch(&st->ok, 1, __ATOMIC_RELAXED);
		wf_process_free(p);
	}
	if (rc != 0) {
		int zero = 0;
		__atomic_compare_exchange_n(&st->err, &zero, rc, false, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED);
	}
	wf_sem_release(st->slots);
	return NULL;
}

static int run_spawn_process(wf_bench_run *run)
{
	struct spawn_state st = {0};
	int rc = wf_sem_new(IN_FLIGHT, &st.slots);
	if (rc != 0)
		return rc;
	wf_spawn_opts detached = {.detached = true};
	wf_bench_clock_start(run);
	for (uint64_t i = 0; i < run->n && rc == 0; i++) {
		rc = wf_sem_acquire(st.slots, CHILD_LIMIT_MS);
		if (rc == 0) {
			rc = wf_spawn_ex(one_child, &st, &detached, NULL);
			if (rc != 0)
				wf_sem_release(st.slots);
		}
	}
	/* Every slot back: every child was waited for. */
	for (unsigned k = 0; k < IN_FLIGHT; k++) {
		int r = wf_sem_acquire(st.slots, CHILD_LIMIT_MS);
		if (r != 0 && rc == 0)
			rc = r;
	}
	wf_bench_clock_stop(run);
	wf_sem_free(st.slots);
	run->check = __atomic_load_n(&st.ok, __ATOMIC_RELAXED);
	if (rc == 0)
		rc = __atomic_load_n(&st.err, __ATOMIC_RELAXED);
	return rc;
}

WF_BENCH_DEFINE(spawn_process, .name = "spawn_process", .default_n = 1000, .fn = run_spawn_process)
