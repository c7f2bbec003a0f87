/*
 * Debug mode, in weft. asyncio's debug mode (asyncio.run(main(),
 * debug=True), or PYTHONASYNCIODEBUG=1) logs mistakes that otherwise pass
 * in silence, such as "Future exception was never retrieved". weft's is
 * WF_DEBUG_CHECKS in wf_config.debug, or WEFT_DEBUG=1 in the environment.
 * It reports on stderr, when the future is released:
 *  - a future that failed and that nobody awaited ("never awaited"): its
 *    error would otherwise be lost;
 *  - a future released before anyone completed it ("never completed"):
 *    whoever awaits it could only wait forever.
 *
 * The program makes both mistakes twice: in a runtime without debug mode,
 * where nothing is said, then in one with it. A detached task that fails
 * is reported in either mode ("never joined"), as asyncio's "Task
 * exception was never retrieved" is.
 *
 * Python:
 *     async def main():
 *         fut = asyncio.get_running_loop().create_future()
 *         fut.set_exception(OSError("lost reply"))
 *         del fut          # debug mode: "Future exception was never retrieved"
 *
 *     asyncio.run(main(), debug=True)
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

struct orphan {
	const char *mode;
	wf_future *started; /* the task's own reference, set when it runs */
};

static void *detached_task(void *arg)
{
	struct orphan *o = arg;
	char msg[64];
	snprintf(msg, sizeof(msg), "nobody asked (%s)", o->mode);
	/* A future, not an event: main may go on before this call has
	 * returned, and a future's references keep it alive until then. */
	wf_future_set(o->started, NULL);
	wf_future_release(o->started);
	return wf_fail(WF_EIO, msg);
}

static void *main_task(void *arg)
{
	const char *mode = arg;
	char msg[64];

	/* Mistake 1: a failure nobody looks at. */
	wf_future *lost = wf_future_new();
	if (lost == NULL)
		return wf_fail(WF_ENOMEM, "future");
	snprintf(msg, sizeof(msg), "lost reply (%s)", mode);
	int rc = wf_future_fail(lost, WF_EIO, msg);
	if (rc != 0)
		return wf_fail(rc, "future_fail");
	wf_future_release(lost); /* the report, in debug mode, is made here */

	/* Mistake 2: a future dropped while still pending. */
	wf_future *pending = wf_future_new();
	if (pending == NULL)
		return wf_fail(WF_ENOMEM, "future");
	wf_future_release(pending);

	/* A failing task whose handle was given back. main waits until it
	 * runs: wf_run then awaits it, and its failure is reported as it
	 * ends. */
	wf_future *started = wf_future_new();
	if (started == NULL)
		return wf_fail(WF_ENOMEM, "future");
	static struct orphan orphan; /* the task reads it after main went on */
	orphan = (struct orphan){mode, wf_future_retain(started)};
	wf_spawn_opts opts = {.name = "orphan", .detached = true};
	rc = wf_spawn_ex(detached_task, &orphan, &opts, NULL);
	if (rc != 0)
		wf_future_release(orphan.started);
	else
		rc = wf_await_timeout(started, NULL, 10000);
	wf_future_release(started);
	if (rc != 0)
		return wf_fail(rc, "detached task");
	printf("%s: made the mistakes\n", mode);
	return NULL;
}

static int run(unsigned debug, const char *mode)
{
	wf_config cfg;
	wf_config_init(&cfg); /* WEFT_DEBUG=1 would set cfg.debug here */
	cfg.debug = debug;    /* the program's choice wins */
	fflush(stdout);
	int rc = wf_run(&cfg, main_task, (void *)mode, NULL);
	fflush(stderr);
	if (rc != 0)
		fprintf(stderr, "wf_run (%s): %s\n", mode, wf_strerror(rc));
	return rc;
}

int main(void)
{
	int rc = run(0, "debug off");
	if (rc == 0)
		rc = run(WF_DEBUG_CHECKS, "debug on");
	return rc == 0 ? 0 : 1;
}
