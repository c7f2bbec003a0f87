/*
 * A program built against an installed weft (see run): it starts a runtime,
 * spawns a task that sleeps and yields, joins it and checks its result, so
 * the header, the library and its dependencies (libuv, ck, pthreads) are all
 * exercised through the installed files only; and that the library loaded
 * is the version the headers describe.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <weft.h>

static void *square(void *arg)
{
	intptr_t n = (intptr_t)arg;
	if (wf_sleep(1) != 0 || wf_yield() != 0)
		return wf_fail(WF_EFAILED, "suspension failed");
	return (void *)(n * n);
}

static void *main_task(void *arg)
{
	wf_task *t = wf_spawn(square, arg);
	if (t == NULL)
		return wf_fail(WF_ENOMEM, "wf_spawn failed");
	void *res = NULL;
	int rc = wf_join(t, &res);
	if (rc != 0)
		return wf_fail(rc, "wf_join failed");
	return res;
}

int main(void)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	void *res = NULL;
	int rc = wf_run(&cfg, main_task, (void *)(intptr_t)7, &res);
	if (rc != 0) {
		fprintf(stderr, "hello_weft: wf_run: %s (%s)\n", wf_strerror(rc), wf_err_name(rc));
		return 1;
	}
	if ((intptr_t)res != 49) {
		fprintf(stderr, "hello_weft: expected 49, got %ld\n", (long)(intptr_t)res);
		return 1;
	}
	/* The library loaded is the one the headers describe. */
	if (wf_version() != WEFT_VERSION_HEX || strcmp(wf_version_string(), WEFT_VERSION_STRING) != 0) {
		fprintf(stderr, "hello_weft: headers %s, library %s (%#x)\n", WEFT_VERSION_STRING,
			wf_version_string(), wf_version());
		return 1;
	}
	printf("hello_weft: weft %s ok\n", wf_version_string());
	return 0;
}
