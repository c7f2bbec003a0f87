/*
 * The smallest weft program, asyncio's "Hello World!": wf_run starts a
 * runtime, runs one task to its end, hands back its result and stops.
 *
 * Python:
 *     async def main():
 *         print("Hello World!")
 *         return 42
 *
 *     print(asyncio.run(main()))
 */
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

static void *main_task(void *arg)
{
	printf("Hello World!\n");
	return (void *)(intptr_t)42; /* the task's result: any pointer */
}

int main(void)
{
	void *result;
	int rc = wf_run(NULL, main_task, NULL, &result);
	if (rc != 0) {
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
		return 1;
	}
	printf("main returned %d\n", (int)(intptr_t)result);
	return 0;
}
