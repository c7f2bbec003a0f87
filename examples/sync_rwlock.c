/*
 * A read-write lock, in weft (asyncio has none; this is the
 * readers-writer lock of aiorwlock and of threads): three readers hold the
 * lock at the same time, a writer holds it alone. A reader that comes
 * while a writer waits queues behind the writer, so writers are never
 * starved: even a try_rdlock is refused then.
 *
 * The steps are ordered by events, not by sleeps: the three readers are
 * all in before the writer comes, the writer waits before the late reader
 * comes, and the readers leave only then.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#define READERS 3

static wf_rwlock *rw;
static wf_event *all_in, *go;  /* the readers are in; they may leave */
static int readers_in, writers_in; /* atomic: holders now */
static int shared_with_writer;     /* atomic: times a holder saw the other kind */
static int value;                  /* guarded by rw */

static void *reader(void *arg)
{
	bool first = arg != NULL; /* one of the first three */
	int rc = wf_rwlock_rdlock(rw, 10000);
	if (rc != 0)
		return wf_fail(rc, "rdlock");
	if (__atomic_add_fetch(&readers_in, 1, __ATOMIC_ACQ_REL) == READERS)
		wf_event_set(all_in);
	if (__atomic_load_n(&writers_in, __ATOMIC_ACQUIRE) != 0)
		__atomic_add_fetch(&shared_with_writer, 1, __ATOMIC_RELAXED);
	int v = value;
	if (first)
		rc = wf_event_wait(go, 10000); /* hold the lock until then */
	__atomic_sub_fetch(&readers_in, 1, __ATOMIC_ACQ_REL);
	wf_rwlock_rdunlock(rw);
	return rc == 0 ? (void *)(intptr_t)v : wf_fail(rc, "read");
}

static void *writer(void *arg)
{
	int rc = wf_rwlock_wrlock(rw, 10000);
	if (rc != 0)
		return wf_fail(rc, "wrlock");
	__atomic_add_fetch(&writers_in, 1, __ATOMIC_ACQ_REL);
	if (__atomic_load_n(&readers_in, __ATOMIC_ACQUIRE) != 0)
		__atomic_add_fetch(&shared_with_writer, 1, __ATOMIC_RELAXED);
	rc = wf_sleep(50); /* writing takes a while: nobody may come in */
	value = 42;
	__atomic_sub_fetch(&writers_in, 1, __ATOMIC_ACQ_REL);
	wf_rwlock_wrunlock(rw);
	return rc == 0 ? NULL : wf_fail(rc, "write");
}

static void *main_task(void *arg)
{
	int rc = wf_rwlock_new(&rw);
	if (rc == 0)
		rc = wf_event_new(&all_in);
	if (rc == 0)
		rc = wf_event_new(&go);
	if (rc != 0)
		return wf_fail(rc, "new");
	wf_task *tasks[READERS + 2];
	for (int i = 0; i < READERS; i++)
		tasks[i] = wf_spawn(reader, "first");
	/* 1. The three readers share the lock. */
	rc = wf_event_wait(all_in, 10000);
	printf("readers at once: %d\n", rc == 0 ? __atomic_load_n(&readers_in, __ATOMIC_ACQUIRE) : -1);

	/* 2. The writer comes and waits for them. Until it waits, a reader
	 * may still enter; once it does, none can. */
	tasks[READERS] = wf_spawn(writer, NULL);
	int tries = 0;
	while ((rc = wf_rwlock_try_rdlock(rw)) == 0 && tries++ < 10000) {
		wf_rwlock_rdunlock(rw);
		wf_sleep(1);
	}
	printf("try_rdlock while the writer waits: %s\n", wf_err_name(rc));

	/* 3. A late reader queues behind the writer; the readers leave. */
	tasks[READERS + 1] = wf_spawn(reader, NULL);
	wf_event_set(go);
	wf_outcome out[READERS + 2];
	rc = wf_gather(tasks, READERS + 2, out, 0);
	printf("gather: %s\n", wf_strerror(rc));
	printf("writer shared the lock: %s\n", shared_with_writer ? "yes" : "never");
	printf("first readers read %d, the late reader read %d\n", (int)(intptr_t)out[0].value,
	       (int)(intptr_t)out[READERS + 1].value);
	wf_outcomes_clear(out, READERS + 2);
	wf_event_free(go);
	wf_event_free(all_in);
	wf_rwlock_free(rw);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
