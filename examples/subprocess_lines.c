/*
 * Reading a child's output line by line as it comes, in weft: a shell
 * loop prints five numbers, a tenth of a second apart, and the parent
 * reads each line from the stdout pipe the moment it arrives, checking
 * each time whether the child is still running (a wait with a zero
 * timeout says WF_ETIMEDOUT while it is).
 *
 * Python:
 *     proc = await asyncio.create_subprocess_shell(
 *         "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done",
 *         stdout=asyncio.subprocess.PIPE)
 *     while line := await proc.stdout.readline():
 *         print(line.decode().strip(), proc.returncode is None)
 *     await proc.wait()
 */
#include <stdio.h>
#include <string.h>

#include <weft.h>

static void *main_task(void *arg)
{
	(void)arg;
	wf_process_opts opts = WF_PROCESS_OPTS_INIT;
	opts.stdout_mode = WF_PIPE;
	wf_process *p;
	int rc = wf_process_shell("for i in 1 2 3 4 5; do echo $i; sleep 0.1; done", &opts, &p);
	if (rc != 0)
		return wf_fail(rc, "shell");
	wf_stream *out = wf_process_stdout(p);
	char line[64];
	int early = 0, lines = 0;
	for (;;) {
		ssize_t n = wf_stream_readline(out, line, sizeof(line) - 1, 5000);
		if (n <= 0) {
			if (n < 0)
				rc = (int)n;
			break;
		}
		line[n] = '\0';
		line[strcspn(line, "\n")] = '\0';
		/* The child sleeps after each line: it is still running
		 * when the line is read (the last one aside, perhaps). */
		bool running = wf_process_wait(p, 0, NULL) == WF_ETIMEDOUT;
		early += running;
		lines++;
		printf("line %s: child %s\n", line, running ? "still running" : "done");
		fflush(stdout);
	}
	int code = -1;
	if (rc == 0)
		rc = wf_process_wait(p, 5000, &code);
	wf_process_free(p);
	if (rc != 0)
		return wf_fail(rc, "read");
	printf("%d lines, %d of them read while the child ran; exit code %d\n", lines, early,
	       code);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0) {
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
		return 1;
	}
	return 0;
}
