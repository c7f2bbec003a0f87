/*
 * A task awaits a signal (asyncio's loop.add_signal_handler, as a wait):
 * a timer task sends SIGUSR1 to the process three times, and the main
 * task, suspended in wf_signal_wait, wakes for each, whichever thread the
 * kernel ran the signal's handler on. Nothing of the program runs inside
 * the handler.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <weft.h>

static void *timer_task(void *arg)
{
	for (int i = 0; i < 3; i++) {
		if (wf_sleep(100) != 0)
			return NULL;
		kill(getpid(), SIGUSR1);
	}
	return NULL;
}

static void *main_task(void *arg)
{
	wf_signal *w;
	int rc = wf_signal_watch(SIGUSR1, &w); /* catches it from now on */
	if (rc != 0)
		return wf_fail(rc, "watch");
	printf("waiting for SIGUSR1\n");
	fflush(stdout);
	wf_task *timer = wf_spawn(timer_task, NULL);
	int seen = 0;
	while (seen < 3) {
		int n = wf_signal_wait(w, 5000); /* how many came since the last wait */
		if (n < 0) {
			wf_signal_unwatch(w);
			wf_join(timer, NULL);
			return wf_fail(n, "waiting for SIGUSR1");
		}
		seen += n;
		printf("got SIGUSR1 (%d so far)\n", seen);
	}
	wf_join(timer, NULL);
	wf_signal_unwatch(w); /* SIGUSR1's default disposition is back */
	return "done";
}

int main(void)
{
	void *result;
	char *msg = NULL;
	int rc = wf_run_ex(NULL, main_task, NULL, &result, &msg);
	if (rc != 0)
		fprintf(stderr, "signal_wait: %s: %s\n", msg ? msg : "failed", wf_strerror(rc));
	else
		printf("%s\n", (char *)result);
	return rc == 0 ? 0 : 1;
}
