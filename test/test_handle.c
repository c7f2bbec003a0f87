/*
 * Generation-tagged handles (runtime/handle.h): a stale handle, a handle
 * of another kind and garbage never decode to an object (and never
 * crash); reuse of a slot makes every older handle of it stale; many
 * threads allocating and freeing never share an object; a slot whose
 * generation wraps is retired and never handed out again.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "runtime/handle.h"

struct obj_a {
	wf__hdr hdr;
	uint64_t owner;
	uint64_t payload[5];
};

struct obj_b {
	wf__hdr hdr;
	char bytes[200];
};

static wf__htype type_a = WF__HTYPE_INIT(WF__K_TEST_A, struct obj_a);
static wf__htype type_b = WF__HTYPE_INIT(WF__K_TEST_B, struct obj_b);

static void *handle_of(void *obj)
{
	return wf__handle_of(obj);
}

Test(handle, alloc_decode_free_reuse)
{
	struct obj_a *a = wf__hobj_alloc(&type_a);
	cr_assert_not_null(a);
	cr_assert_eq(a->owner, 0);
	void *h = handle_of(a);
	cr_assert_neq(h, (void *)a, "a handle is not the address");
	cr_assert_eq(wf__handle_get(h, WF__K_TEST_A), a);
	a->owner = 42;

	wf__hobj_free(&type_a, a);
	cr_assert_null(wf__handle_get(h, WF__K_TEST_A), "stale after free");

	/* The free list is LIFO: the next object is the same memory. */
	struct obj_a *b = wf__hobj_alloc(&type_a);
	cr_assert_eq((void *)b, (void *)a);
	cr_assert_eq(b->owner, 0, "zeroed apart from the header");
	void *h2 = handle_of(b);
	cr_assert_neq(h2, h);
	cr_assert_null(wf__handle_get(h, WF__K_TEST_A), "stale after reuse");
	cr_assert_eq(wf__handle_get(h2, WF__K_TEST_A), b);
	wf__hobj_free(&type_a, b);
	cr_assert_null(wf__handle_get(h2, WF__K_TEST_A));
}

Test(handle, wrong_kind)
{
	struct obj_a *a = wf__hobj_alloc(&type_a);
	struct obj_b *b = wf__hobj_alloc(&type_b);
	cr_assert(a != NULL && b != NULL);
	void *ha = handle_of(a), *hb = handle_of(b);
	cr_assert_eq(wf__handle_get(ha, WF__K_TEST_A), a);
	cr_assert_eq(wf__handle_get(hb, WF__K_TEST_B), b);
	cr_assert_null(wf__handle_get(ha, WF__K_TEST_B));
	cr_assert_null(wf__handle_get(hb, WF__K_TEST_A));
	for (unsigned k = 0; k < WF__K_COUNT + 3; k++) {
		if (k != WF__K_TEST_A)
			cr_assert_null(wf__handle_get(ha, k), "kind %u", k);
		if (k != WF__K_TEST_B)
			cr_assert_null(wf__handle_get(hb, k), "kind %u", k);
	}
	wf__hobj_free(&type_a, a);
	wf__hobj_free(&type_b, b);
}

static int some_global;

Test(handle, garbage_decodes_to_null)
{
	/* Make sure slabs exist, so that garbage can hit real slab ids. */
	struct obj_a *keep[300];
	for (int i = 0; i < 300; i++)
		cr_assert_not_null(keep[i] = wf__hobj_alloc(&type_a));
	void *heap = malloc(64);
	int local;
	const void *ptrs[] = {
		NULL, (void *)1, (void *)2, (void *)-1, (void *)(uintptr_t)UINT32_MAX,
		(void *)((uintptr_t)1 << 32), (void *)((uintptr_t)3 << 32), heap, &local,
		&some_global, keep[0], keep[299], (char *)keep[5] + 8, (void *)&type_a,
		(void *)wf__handle_get,
	};
	for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++)
		for (unsigned k = 0; k < WF__K_COUNT; k++)
			cr_assert_null(wf__handle_get(ptrs[i], k), "value %p kind %u", ptrs[i], k);

	/* A real handle with its gen made even (a free slot's), or its slot
	 * moved past the slab's end, or its slab id moved to an unused one. */
	uint64_t h = (uint64_t)(uintptr_t)handle_of(keep[7]);
	cr_assert_null(wf__handle_get((void *)(uintptr_t)(h + ((uint64_t)1 << 32)), WF__K_TEST_A));
	cr_assert_null(wf__handle_get((void *)(uintptr_t)(h - ((uint64_t)1 << 32)), WF__K_TEST_A));
	cr_assert_null(wf__handle_get((void *)(uintptr_t)(h | WF__HSLOT_MASK), WF__K_TEST_A));
	cr_assert_null(wf__handle_get((void *)(uintptr_t)(h | 0xfff00000u), WF__K_TEST_A));
	cr_assert_null(wf__handle_get((void *)(uintptr_t)(h & 0xffffffff00000fffu), WF__K_TEST_A));

	/* Random values, and random indices with plausible gens. */
	uint64_t s = 0x9e3779b97f4a7c15u;
	for (int i = 0; i < 2000000; i++) {
		uint64_t v = ((uint64_t)rng_next(&s) << 32) | rng_next(&s);
		if (i & 1) /* gen 1 or 3: what young slots carry */
			v = ((uint64_t)(1 + 2 * (i & 2)) << 32) | (uint32_t)v;
		void *obj = wf__handle_get((void *)(uintptr_t)v, WF__K_TEST_A);
		/* A hit is allowed only if it is exactly a live object's
		 * handle (a random value may name one). */
		if (obj != NULL)
			cr_assert_eq((uint64_t)(uintptr_t)handle_of(obj), v);
		for (unsigned k = WF__K_TEST_A + 1; k < WF__K_COUNT; k++)
			if ((obj = wf__handle_get((void *)(uintptr_t)v, k)) != NULL)
				cr_assert_eq((uint64_t)(uintptr_t)handle_of(obj), v);
	}
	free(heap);
	for (int i = 0; i < 300; i++)
		wf__hobj_free(&type_a, keep[i]);
}

Test(handle, stale_handles_stay_stale)
{
	/* One slot reused many times: every older handle stays refused. */
	enum { N = 1000 };
	static void *old[N];
	for (int i = 0; i < N; i++) {
		struct obj_a *a = wf__hobj_alloc(&type_a);
		cr_assert_not_null(a);
		old[i] = handle_of(a);
		for (int j = 0; j < i; j += 1 + j / 10)
			cr_assert_null(wf__handle_get(old[j], WF__K_TEST_A));
		cr_assert_eq(wf__handle_get(old[i], WF__K_TEST_A), a);
		wf__hobj_free(&type_a, a);
	}
}

/* ---- many threads ------------------------------------------------------- */

enum { THREADS = 8, HELD = 64, ROUNDS = 60000 };

struct held {
	struct obj_a *obj;
	void *h;
};

static void *churn(void *arg)
{
	uint64_t me = (uint64_t)(uintptr_t)arg;
	uint64_t s = me * 0x9e3779b97f4a7c15u + 1;
	struct held held[HELD] = {{0}};
	void *stale[HELD] = {0};
	for (int r = 0; r < ROUNDS && !check_any_failed(); r++) {
		int i = rng_next(&s) % HELD;
		struct held *x = &held[i];
		if (x->obj == NULL) {
			x->obj = wf__hobj_alloc(&type_a);
			if (!CHECK(x->obj != NULL))
				break;
			CHECK_EQ(x->obj->owner, 0);
			x->obj->owner = me;
			x->h = handle_of(x->obj);
			continue;
		}
		CHECK(wf__handle_get(x->h, WF__K_TEST_A) == x->obj);
		CHECK_EQ(x->obj->owner, me); /* nobody else got it */
		if (stale[i] != NULL)
			CHECK(wf__handle_get(stale[i], WF__K_TEST_A) == NULL);
		x->obj->owner = 0;
		wf__hobj_free(&type_a, x->obj);
		CHECK(wf__handle_get(x->h, WF__K_TEST_A) == NULL);
		stale[i] = x->h;
		x->obj = NULL;
	}
	for (int i = 0; i < HELD; i++)
		if (held[i].obj != NULL) {
			held[i].obj->owner = 0;
			wf__hobj_free(&type_a, held[i].obj);
		}
	return NULL;
}

Test(handle, threads_alloc_and_free)
{
	wf__hstats before, after;
	wf__htype_stats(&type_a, &before);
	pthread_t th[THREADS];
	for (uintptr_t i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, churn, (void *)(i + 1)), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	check_none_failed();
	wf__htype_stats(&type_a, &after);
	cr_assert_eq(after.live, before.live, "every object given back");
	cr_assert_eq(after.free + after.live + after.retired,
		     after.slabs * type_a.per_slab, "no slot lost");
}

/* ---- wrap --------------------------------------------------------------- */

Test(handle, wrap_retires_the_slot)
{
	struct obj_a *a = wf__hobj_alloc(&type_a);
	cr_assert_not_null(a);
	wf__hobj_set_gen_for_test(a, UINT32_MAX);
	void *h = handle_of(a);
	cr_assert_eq((uint64_t)(uintptr_t)h >> 32, UINT32_MAX);
	cr_assert_eq(wf__handle_get(h, WF__K_TEST_A), a);
	wf__hstats st;
	wf__htype_stats(&type_a, &st);
	size_t retired = st.retired;
	wf__hobj_free(&type_a, a);
	cr_assert_null(wf__handle_get(h, WF__K_TEST_A));
	wf__htype_stats(&type_a, &st);
	cr_assert_eq(st.retired, retired + 1);
	cr_assert(wf__hdr_retired(&a->hdr));

	/* Allocate more objects than the kind has free: none is the retired
	 * slot, and no handle of gen 0 or 1 names it. */
	size_t n = st.free + 2 * type_a.per_slab;
	struct obj_a **all = calloc(n, sizeof(*all));
	for (size_t i = 0; i < n; i++) {
		all[i] = wf__hobj_alloc(&type_a);
		cr_assert_not_null(all[i]);
		cr_assert_neq((void *)all[i], (void *)a, "a retired slot was reused");
	}
	uint64_t low = (uint64_t)(uintptr_t)h & 0xffffffffu;
	cr_assert_null(wf__handle_get((void *)(uintptr_t)(low | (1ull << 32)), WF__K_TEST_A));
	cr_assert_null(wf__handle_get((void *)(uintptr_t)low, WF__K_TEST_A));
	for (size_t i = 0; i < n; i++)
		wf__hobj_free(&type_a, all[i]);
	free(all);
}

/* ---- whole slabs -------------------------------------------------------- */

struct obj_s {
	wf__hdr hdr;
	uint64_t x[7];
};
static wf__htype type_s = WF__HTYPE_INIT(WF__K_TEST_C, struct obj_s);

Test(handle, slabs_get_put)
{
	type_s.per_slab = 63;
	size_t n = 0;
	char *first = wf__hslab_get(&type_s, &n);
	cr_assert_not_null(first);
	cr_assert_eq(n, 63);
	void *handles[63];
	for (size_t i = 0; i < n; i++) {
		wf__hdr *h = (wf__hdr *)(first + i * type_s.size);
		cr_assert_eq(h->kind, WF__K_TEST_C);
		cr_assert(!wf__hdr_live(h));
		handles[i] = wf__hdr_arm(h);
		cr_assert_eq(wf__handle_get(handles[i], WF__K_TEST_C), h);
		cr_assert_eq(wf__hdecode(handles[i], WF__K_TEST_C, type_s.size, 63), h);
	}
	for (size_t i = 0; i < n; i++)
		cr_assert(wf__hdr_bump((wf__hdr *)(first + i * type_s.size)));
	for (size_t i = 0; i < n; i++)
		cr_assert_null(wf__handle_get(handles[i], WF__K_TEST_C));
	wf__hslab_put(&type_s, first);

	/* The next owner gets the same slab back, gens kept: the old
	 * handles stay stale once its slots are armed again. */
	size_t n2;
	char *again = wf__hslab_get(&type_s, &n2);
	cr_assert_eq(again, first);
	cr_assert_eq(n2, n);
	for (size_t i = 0; i < n; i++) {
		wf__hdr *h = (wf__hdr *)(again + i * type_s.size);
		cr_assert(!wf__hdr_live(h));
		void *nh = wf__hdr_arm(h);
		cr_assert_neq(nh, handles[i]);
		cr_assert_null(wf__handle_get(handles[i], WF__K_TEST_C));
		cr_assert_eq(wf__handle_get(nh, WF__K_TEST_C), h);
		wf__hdr_bump(h);
	}
	wf__hslab_put(&type_s, again);
}

/* ---- slab memory ----------------------------------------------------------
 * Slabs are carved from 2 MiB chunks (a unit of WF__HSLAB_ALIGN each, the
 * chunks after the first advised as huge pages): many slabs' worth of
 * objects, across several chunks, come zeroed, lie inside their own slab,
 * never overlap, and decode to themselves until freed. */

Test(handle, many_slabs_across_chunks)
{
	size_t per = 0;
	struct obj_b *probe = wf__hobj_alloc(&type_b);
	cr_assert_not_null(probe);
	per = type_b.per_slab;
	wf__hobj_free(&type_b, probe);
	/* Five chunks' worth of slabs (a chunk holds 32). */
	size_t n = per * 160;
	struct obj_b **objs = malloc(n * sizeof(*objs));
	void **hs = malloc(n * sizeof(*hs));
	cr_assert(objs != NULL && hs != NULL);
	for (size_t i = 0; i < n; i++) {
		objs[i] = wf__hobj_alloc(&type_b);
		cr_assert_not_null(objs[i], "object %zu", i);
		uintptr_t off = (uintptr_t)objs[i] & (WF__HSLAB_ALIGN - 1);
		cr_assert_geq(off, WF__HSLAB_HDR, "object %zu inside its slab", i);
		cr_assert_leq(off + sizeof(struct obj_b), WF__HSLAB_ALIGN);
		for (size_t k = 0; k < sizeof(objs[i]->bytes); k++)
			if (objs[i]->bytes[k] != 0)
				cr_assert_fail("object %zu byte %zu not zero", i, k);
		hs[i] = handle_of(objs[i]);
		/* Every byte written: an overlap shows as another's pattern. */
		memset(objs[i]->bytes, (int)(i * 7 + 1) & 0xff, sizeof(objs[i]->bytes));
	}
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(wf__handle_get(hs[i], WF__K_TEST_B), objs[i], "object %zu", i);
		unsigned char want = (unsigned char)((i * 7 + 1) & 0xff);
		for (size_t k = 0; k < sizeof(objs[i]->bytes); k++)
			if ((unsigned char)objs[i]->bytes[k] != want)
				cr_assert_fail("object %zu byte %zu overwritten", i, k);
	}
	for (size_t i = 0; i < n; i++)
		wf__hobj_free(&type_b, objs[i]);
	for (size_t i = 0; i < n; i++)
		cr_assert_null(wf__handle_get(hs[i], WF__K_TEST_B), "object %zu stale", i);
	free(objs);
	free(hs);
}

/* ---- every kind, through the public API ----------------------------------
 * Free an object, make a new one of the same kind (its memory, most
 * likely), then use the old handle: WF_EINVAL (or the documented nothing),
 * and the new object is untouched. */

Test(handle, stale_lock)
{
	wf_lock *old, *l;
	cr_assert_eq(wf_lock_new(&old), 0);
	cr_assert_eq(wf_lock_free(old), 0);
	cr_assert_eq(wf_lock_new(&l), 0);
	cr_assert_eq(wf_lock_acquire(old, WF_FOREVER), WF_EINVAL);
	cr_assert_eq(wf_lock_try_acquire(old), WF_EINVAL);
	cr_assert(!wf_lock_locked(l), "the stale acquire took the new lock");
	cr_assert_eq(wf_lock_acquire(l, 0), 0);
	cr_assert_eq(wf_lock_release(old), WF_EINVAL);
	cr_assert(!wf_lock_locked(old));
	cr_assert(wf_lock_locked(l), "the stale release freed the new lock");
	cr_assert_eq(wf_lock_free(old), WF_EINVAL);
	cr_assert_eq(wf_lock_release(l), 0);
	cr_assert_eq(wf_lock_free(l), 0);
	cr_assert_eq(wf_lock_free(l), WF_EINVAL, "freed twice");
}

Test(handle, stale_event)
{
	wf_event *old, *e;
	cr_assert_eq(wf_event_new(&old), 0);
	cr_assert_eq(wf_event_free(old), 0);
	cr_assert_eq(wf_event_new(&e), 0);
	cr_assert_eq(wf_event_set(old), WF_EINVAL);
	cr_assert(!wf_event_is_set(e), "the stale set reached the new event");
	cr_assert(!wf_event_is_set(old));
	cr_assert_eq(wf_event_set(e), 0);
	cr_assert_eq(wf_event_clear(old), WF_EINVAL);
	cr_assert_eq(wf_event_wait(old, 0), WF_EINVAL);
	cr_assert(wf_event_is_set(e), "the stale clear reached the new event");
	cr_assert_eq(wf_event_free(old), WF_EINVAL);
	cr_assert_eq(wf_event_free(e), 0);
}

Test(handle, stale_sem)
{
	wf_sem *old, *s;
	cr_assert_eq(wf_sem_new(5, &old), 0);
	cr_assert_eq(wf_sem_free(old), 0);
	cr_assert_eq(wf_sem_new_bounded(1, &s), 0);
	cr_assert_eq(wf_sem_acquire(old, 0), WF_EINVAL);
	cr_assert_eq(wf_sem_try_acquire(old), WF_EINVAL);
	cr_assert_eq(wf_sem_value(s), 1, "the stale acquire took a permit");
	cr_assert_eq(wf_sem_value(old), 0);
	cr_assert_eq(wf_sem_acquire(s, 0), 0);
	cr_assert_eq(wf_sem_release(old), WF_EINVAL);
	cr_assert_eq(wf_sem_value(s), 0, "the stale release gave a permit");
	cr_assert_eq(wf_sem_free(old), WF_EINVAL);
	cr_assert_eq(wf_sem_release(s), 0);
	cr_assert_eq(wf_sem_free(s), 0);
}

Test(handle, stale_cond)
{
	wf_cond *old, *c;
	wf_lock *l, *freed;
	cr_assert_eq(wf_cond_new(NULL, &old), 0);
	wf_lock *old_lock = wf_cond_lock(old);
	cr_assert_not_null(old_lock);
	cr_assert_eq(wf_cond_free(old), 0);
	cr_assert(!wf_lock_locked(old_lock));
	cr_assert_eq(wf_lock_acquire(old_lock, 0), WF_EINVAL, "its own lock went with it");
	cr_assert_eq(wf_lock_new(&l), 0);
	cr_assert_eq(wf_cond_new(l, &c), 0);
	cr_assert_eq(wf_lock_acquire(l, 0), 0);
	cr_assert_null(wf_cond_lock(old));
	cr_assert_eq(wf_cond_notify(old, 1), WF_EINVAL);
	cr_assert_eq(wf_cond_notify_all(old), WF_EINVAL);
	cr_assert_eq(wf_cond_wait(old, 0), WF_EINVAL);
	cr_assert(wf_lock_locked(l), "the stale wait released the new lock");
	cr_assert_eq(wf_cond_free(old), WF_EINVAL);
	cr_assert_eq(wf_lock_release(l), 0);
	cr_assert_eq(wf_cond_free(c), 0);
	/* A condition is refused a freed lock. */
	cr_assert_eq(wf_lock_new(&freed), 0);
	cr_assert_eq(wf_lock_free(freed), 0);
	cr_assert_eq(wf_cond_new(freed, &c), WF_EINVAL);
	cr_assert_eq(wf_lock_free(l), 0);
}

Test(handle, stale_barrier)
{
	wf_barrier *old, *b;
	cr_assert_eq(wf_barrier_new(1, &old), 0);
	cr_assert_eq(wf_barrier_free(old), 0);
	cr_assert_eq(wf_barrier_new(3, &b), 0);
	cr_assert_eq(wf_barrier_wait(old, 0), WF_EINVAL);
	cr_assert_eq(wf_barrier_abort(old), WF_EINVAL);
	cr_assert_eq(wf_barrier_reset(old), WF_EINVAL);
	cr_assert(!wf_barrier_broken(b), "the stale wait or abort broke the new barrier");
	cr_assert_eq(wf_barrier_n_waiting(b), 0);
	cr_assert_eq(wf_barrier_parties(old), 0);
	cr_assert_eq(wf_barrier_parties(b), 3);
	cr_assert(!wf_barrier_broken(old));
	cr_assert_eq(wf_barrier_free(old), WF_EINVAL);
	cr_assert_eq(wf_barrier_free(b), 0);
}

Test(handle, stale_rwlock)
{
	wf_rwlock *old, *rw;
	cr_assert_eq(wf_rwlock_new(&old), 0);
	cr_assert_eq(wf_rwlock_free(old), 0);
	cr_assert_eq(wf_rwlock_new(&rw), 0);
	cr_assert_eq(wf_rwlock_wrlock(old, 0), WF_EINVAL);
	cr_assert_eq(wf_rwlock_rdlock(old, 0), WF_EINVAL);
	cr_assert_eq(wf_rwlock_try_wrlock(old), WF_EINVAL);
	cr_assert_eq(wf_rwlock_try_rdlock(old), WF_EINVAL);
	cr_assert_eq(wf_rwlock_try_wrlock(rw), 0, "a stale lock call took the new rwlock");
	cr_assert_eq(wf_rwlock_wrunlock(old), WF_EINVAL);
	cr_assert_eq(wf_rwlock_rdunlock(old), WF_EINVAL);
	cr_assert_eq(wf_rwlock_try_rdlock(rw), WF_EBUSY, "the stale unlock freed the new rwlock");
	cr_assert_eq(wf_rwlock_free(old), WF_EINVAL);
	cr_assert_eq(wf_rwlock_wrunlock(rw), 0);
	cr_assert_eq(wf_rwlock_free(rw), 0);
}

Test(handle, stale_queue)
{
	wf_queue *old, *q;
	void *item = NULL;
	cr_assert_eq(wf_queue_new(NULL, &old), 0);
	cr_assert_eq(wf_queue_put_nowait(old, (void *)1), 0);
	cr_assert_eq(wf_queue_free(old), 0);
	cr_assert_eq(wf_queue_new(NULL, &q), 0);
	cr_assert_eq(wf_queue_put_nowait(old, (void *)2), WF_EINVAL);
	cr_assert_eq(wf_queue_put(old, (void *)2, 0), WF_EINVAL);
	cr_assert_eq(wf_queue_qsize(q), 0, "the stale put reached the new queue");
	cr_assert_eq(wf_queue_put_nowait(q, (void *)3), 0);
	cr_assert_eq(wf_queue_get_nowait(old, &item), WF_EINVAL);
	cr_assert_eq(wf_queue_get(old, &item, 0), WF_EINVAL);
	cr_assert_eq(wf_queue_task_done(old), WF_EINVAL);
	cr_assert_eq(wf_queue_join(old, 0), WF_EINVAL);
	cr_assert_eq(wf_queue_shutdown(old, true), WF_EINVAL);
	cr_assert_eq(wf_queue_qsize(q), 1, "the stale get took the new queue's item");
	cr_assert(!wf_queue_is_shutdown(q));
	cr_assert_eq(wf_queue_qsize(old), 0);
	cr_assert(wf_queue_empty(old));
	cr_assert(!wf_queue_full(old));
	cr_assert_eq(wf_queue_maxsize(old), 0);
	cr_assert_eq(wf_queue_free(old), WF_EINVAL);
	cr_assert_eq(wf_queue_get_nowait(q, &item), 0);
	cr_assert_eq(item, (void *)3);
	cr_assert_eq(wf_queue_free(q), 0);
}
