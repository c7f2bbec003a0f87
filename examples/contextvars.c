/*
 * Context variables, in weft: a request id set by the task that handles a
 * request is seen by every task it spawns and by the blocking call it
 * hands to the thread pool, without being passed down; two requests
 * handled at the same time each see their own, and the parent's value is
 * untouched by what the children set.
 *
 * Python:
 *     request_id = contextvars.ContextVar("request_id", default="-")
 *
 *     def log(msg): print(f"[{request_id.get()}] {msg}")
 *
 *     async def handle(rid):
 *         request_id.set(rid)
 *         await asyncio.gather(step("parse"), step("reply"))
 *         await asyncio.to_thread(log, "audit (pool thread)")
 */
#include <stdio.h>
#include <string.h>
#include <weft.h>

static wf_ctxvar *request_id;

static void log_line(const char *msg)
{
	printf("[%s] %s\n", (const char *)wf_ctxvar_get(request_id), msg);
}

static void *step(void *arg)
{
	wf_sleep(10); /* the two requests interleave here */
	log_line(arg);
	return NULL;
}

static void *audit(void *arg)
{
	log_line(arg); /* on a pool thread, in the caller's context */
	return NULL;
}

static void *handle(void *arg)
{
	wf_ctxvar_set(request_id, arg, NULL);
	wf_task *t[2] = {wf_spawn(step, "parse"), wf_spawn(step, "reply")};
	wf_gather(t, 2, NULL, 0);
	wf_to_thread(audit, "audit (pool thread)", NULL);
	return NULL;
}

static void *main_task(void *arg)
{
	(void)arg;
	wf_task *a = wf_spawn(handle, "req-A");
	wf_task *b = wf_spawn(handle, "req-B");
	wf_join(a, NULL);
	wf_join(b, NULL);
	/* The children's sets were theirs: main still sees the default. */
	log_line("done");

	/* A token puts a value back: the nesting of a with-block. */
	wf_ctx_token tok;
	wf_ctxvar_set(request_id, "outer", NULL);
	wf_ctxvar_set(request_id, "inner", &tok);
	log_line("inside");
	wf_ctxvar_reset(&tok);
	log_line("after reset");
	return NULL;
}

int main(void)
{
	int rc = wf_ctxvar_new("request_id", "-", &request_id);
	if (rc == 0)
		rc = wf_run(NULL, main_task, NULL, NULL);
	wf_ctxvar_free(request_id);
	if (rc != 0)
		fprintf(stderr, "contextvars: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
