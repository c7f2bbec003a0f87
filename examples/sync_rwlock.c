/*
 * A read-write lock, in weft (asyncio has none; this is the
 * readers-writer lock of aiorwlock and of threads): three readers hold the
 * lock at the same time, a writer holds it alone. A reader that comes
 * while a writer waits queues behind the writer, so writers are never
 * starved.
 *
 * The program counts who is inside: the readers overlap (three at once),
 * and the writer never shares the lock with anyone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#define READERS 3

static wf_rwlock *rw;
static int readers_in, writers_in; /* atomic: holders now */
static int most_readers;           /* atomic: the most readers at once */
static int shared_with_writer;     /* atomic: times a holder saw the other kind */
static int value;                  /* guarded by rw */

static void *reader(void *arg)
{
	int rc = wf_rwlock_rdlock(rw, 10000);
	if (rc != 0)
		return wf_fail(rc, "rdlock");
	int now = __atomic_add_fetch(&readers_in, 1, __ATOMIC_ACQ_REL);
	int seen = __atomic_load_n(&most_readers, __ATOMIC_RELAXED);
	while (now > seen && !__atomic_compare_exchange_n(&most_readers, &seen, now, false,
							   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (__atomic_load_n(&writers_in, __ATOMIC_ACQUIRE) != 0)
		__atomic_add_fetch(&shared_with_writer, 1, __ATOMIC_RELAXED);
	int v = value;
	rc = wf_sleep(300); /* reading takes a while; the other readers come in */
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
	rc = wf_sleep(50);
	value = 42;
	__atomic_sub_fetch(&writers_in, 1, __ATOMIC_ACQ_REL);
	wf_rwlock_wrunlock(rw);
	return rc == 0 ? NULL : wf_fail(rc, "write");
}

static void *main_task(void *arg)
{
	int rc = wf_rwlock_new(&rw);
	if (rc != 0)
		return wf_fail(rc, "rwlock");
	/* The readers first: they share the lock; the writer comes a little
	 * later and waits for them; a late reader queues behind the writer
	 * and so reads what it wrote. */
	wf_task *tasks[READERS + 2];
	for (int i = 0; i < READERS; i++)
		tasks[i] = wf_spawn(reader, NULL);
	wf_sleep(100);
	tasks[READERS] = wf_spawn(writer, NULL);
	wf_sleep(100);
	tasks[READERS + 1] = wf_spawn(reader, NULL);
	wf_outcome out[READERS + 2];
	rc = wf_gather(tasks, READERS + 2, out, 0);
	printf("gather: %s\n", wf_strerror(rc));
	printf("readers at once: %d\n", most_readers);
	printf("writer shared the lock: %s\n", shared_with_writer ? "yes" : "never");
	printf("first readers read %d, the late reader read %d\n", (int)(intptr_t)out[0].value,
	       (int)(intptr_t)out[READERS + 1].value);
	wf_outcomes_clear(out, READERS + 2);
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
