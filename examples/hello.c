/* The README's first program: two tasks that sleep at once. */
#include <stdio.h>
#include <weft.h>

static void *say_after(void *arg)
{
	const char *what = arg;
	if (wf_sleep(1000) != 0) /* suspends this task only */
		return NULL;
	printf("%s\n", what);
	return (void *)what;
}

static void *main_task(void *arg)
{
	wf_task *a = wf_spawn(say_after, "hello");
	wf_task *b = wf_spawn(say_after, "world");
	void *ra, *rb;
	int ea = wf_join(a, &ra); /* both sleep at once: about 1 s in all */
	int eb = wf_join(b, &rb);
	if (ea != 0 || eb != 0) {
		fprintf(stderr, "failed: %s\n", wf_strerror(ea ? ea : eb));
		return NULL;
	}
	return "done";
}

int main(void)
{
	void *result;
	int rc = wf_run(NULL, main_task, NULL, &result);
	printf("%s (%s)\n", rc == 0 ? (char *)result : "error", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
