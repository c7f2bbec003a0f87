/*
 * asyncio.shield, in weft: a request handler saves a record, an operation
 * that must not be cut short, and awaits it through a shield. When the
 * handler is cancelled (the client went away), its await returns
 * WF_ECANCELED at once, but the save goes on to its end; its outcome stays
 * in the shield's future, which the main task then awaits.
 *
 * Python:
 *     async def save():
 *         await asyncio.sleep(0.3)
 *         print("save: written")
 *         return "saved"
 *
 *     async def handler(fut):
 *         try:
 *             await asyncio.shield(fut)
 *         except asyncio.CancelledError:
 *             print("handler: cancelled, the save goes on")
 *             raise
 *
 *     async def main():
 *         fut = asyncio.ensure_future(save())
 *         h = asyncio.create_task(handler(fut))
 *         await asyncio.sleep(0.05)
 *         h.cancel()
 *         print(await fut)
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

static void *save(void *arg)
{
	int rc = wf_sleep(300);
	if (rc != 0) {
		printf("save: cancelled!\n");
		return wf_fail(rc, "save");
	}
	printf("save: written\n");
	fflush(stdout);
	return "saved";
}

static void *handler(void *arg)
{
	wf_future *shielded = arg;
	int rc = wf_await(shielded, NULL);
	if (rc == WF_ECANCELED) {
		printf("handler: cancelled, the save goes on\n");
		fflush(stdout);
		return NULL; /* the outcome is WF_ECANCELED: not uncancelled */
	}
	return rc == 0 ? NULL : wf_fail(rc, "await");
}

static void *main_task(void *arg)
{
	wf_task *t = wf_spawn(save, NULL);
	if (t == NULL)
		return wf_fail(WF_ENOMEM, "spawn");
	wf_future *shielded;
	int rc = wf_shield(t, &shielded); /* takes t's handle */
	if (rc != 0) {
		wf_join(t, NULL);
		return wf_fail(rc, "shield");
	}
	wf_task *h = wf_spawn(handler, shielded);
	if (h == NULL) {
		wf_future_release(shielded);
		return wf_fail(WF_ENOMEM, "spawn");
	}
	wf_sleep(50);
	wf_cancel(h); /* the handler's await ends; save does not see it */
	printf("handler's outcome: %s\n", wf_err_name(wf_join(h, NULL)));
	fflush(stdout);
	void *value;
	rc = wf_await(shielded, &value);
	wf_future_release(shielded);
	if (rc != 0)
		return wf_fail(rc, "await");
	printf("main: the save returned %s\n", (const char *)value);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
