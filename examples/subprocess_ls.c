/*
 * asyncio's create_subprocess_exec with captured output, in weft: runs
 * `ls -l` on a directory this example makes (and on a name that does not
 * exist, so that stderr has something to say), collects stdout and stderr
 * with communicate, and prints both and the exit code.
 *
 * Python:
 *     proc = await asyncio.create_subprocess_exec(
 *         "ls", "-l", d, missing,
 *         stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
 *         env={"LC_ALL": "C", "PATH": os.environ["PATH"]})
 *     out, err = await proc.communicate()
 *     print(out.decode(), err.decode(), proc.returncode)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <weft.h>

static void *main_task(void *arg)
{
	(void)arg;
	/* A directory with two files of known names and sizes. */
	char dir[] = "/tmp/weft-ls-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return wf_fail(WF_EIO, "mkdtemp");
	char path[64], missing[64];
	snprintf(path, sizeof(path), "%s/hello.txt", dir);
	FILE *f = fopen(path, "w");
	if (f != NULL) {
		fputs("hello, weft\n", f);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/empty.dat", dir);
	close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	snprintf(missing, sizeof(missing), "%s/no-such-file", dir);

	/* The C locale, so that ls speaks English; PATH is still needed by
	 * nothing here (the program is looked up in the parent's PATH),
	 * but a child usually wants one. */
	char pathvar[4096];
	const char *pv = getenv("PATH");
	snprintf(pathvar, sizeof(pathvar), "PATH=%s", pv != NULL ? pv : "/usr/bin:/bin");
	const char *env[] = {"LC_ALL=C", pathvar, NULL};
	const char *argv[] = {"ls", "-l", dir, missing, NULL};
	wf_process_opts opts = WF_PROCESS_OPTS_INIT;
	opts.env = env;
	opts.stdout_mode = WF_PIPE;
	opts.stderr_mode = WF_PIPE;

	wf_process *p;
	int rc = wf_process_exec("ls", argv, &opts, &p);
	if (rc != 0)
		return wf_fail(rc, "exec ls");
	void *out, *err;
	size_t outlen, errlen;
	rc = wf_process_communicate(p, NULL, 0, &out, &outlen, &err, &errlen, 10000);
	int code = -1;
	if (rc == 0)
		rc = wf_process_wait(p, 0, &code);
	wf_process_free(p);
	if (rc != 0)
		return wf_fail(rc, "communicate");

	printf("stdout (%zu bytes):\n%s", outlen, (char *)out);
	printf("stderr (%zu bytes):\n%s", errlen, (char *)err);
	printf("exit code: %d\n", code);
	free(out);
	free(err);

	snprintf(path, sizeof(path), "%s/hello.txt", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/empty.dat", dir);
	unlink(path);
	rmdir(dir);
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
