/*
 * Type-stable slabs and the handle directory (see handle.h).
 *
 * Slabs are made under one process-wide mutex (rare: a slab holds up to
 * 4096 objects) and published in the directory with release stores, which
 * decoders read with acquire loads and no lock. Nothing is ever taken out
 * of the directory, and slab memory never goes back to malloc: a slab given
 * back (wf__hslab_put) waits in its kind's pool for the next owner.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "handle.h"

#define SLAB_BYTES_DEFAULT 16384u
#define LEAF_SIZE (1u << WF__HLEAF_BITS)

uintptr_t *wf__hdir[WF__HTOP];
wf__hkind wf__hkinds[WF__K_COUNT];

static pthread_mutex_t dir_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t next_id = 1; /* dir_mu; 0 is never a slab: no index is 0 */

static void **free_next(void *obj)
{
	return (void **)((char *)obj + sizeof(wf__hdr));
}

/* Every kind's type once it has made objects, for wf__htype_live. */
static wf__htype *htypes[WF__K_COUNT];

size_t wf__htype_live(unsigned kind)
{
	if (kind >= WF__K_COUNT)
		return 0;
	wf__htype *ty = __atomic_load_n(&htypes[kind], __ATOMIC_ACQUIRE);
	if (ty == NULL)
		return 0;
	wf__spin_lock(&ty->lock);
	size_t n = ty->live;
	wf__spin_unlock(&ty->lock);
	return n;
}

bool wf__htype_ready(wf__htype *ty)
{
	/* Acquire: pairs with the release store below; size and per_slab
	 * are settled once ready is seen. */
	if (__atomic_load_n(&ty->ready, __ATOMIC_ACQUIRE))
		return true;
	if (ty->kind == WF__K_NONE || ty->kind >= WF__K_COUNT)
		return false;
	pthread_mutex_lock(&dir_mu); /* the first allocations may race here */
	bool ok = true;
	if (__atomic_load_n(&ty->ready, __ATOMIC_RELAXED))
		goto out;
	size_t size = (ty->size + 15) & ~(size_t)15;
	if (size < sizeof(wf__hdr) + sizeof(void *))
		size = sizeof(wf__hdr) + sizeof(void *);
	size_t room = WF__HSLAB_ALIGN - WF__HSLAB_HDR;
	if (size > room) {
		ok = false;
		goto out;
	}
	size_t per = ty->per_slab;
	if (per == 0)
		per = size <= SLAB_BYTES_DEFAULT - WF__HSLAB_HDR
			      ? (SLAB_BYTES_DEFAULT - WF__HSLAB_HDR) / size
			      : 1;
	if (per > room / size)
		per = room / size;
	if (per > WF__HSLOT_MASK + 1)
		per = WF__HSLOT_MASK + 1;
	wf__hkind *k = &wf__hkinds[ty->kind];
	if (k->per_slab == 0) {
		__atomic_store_n(&k->size, (uint32_t)size, __ATOMIC_RELAXED);
		/* Release: pairs with wf__handle_get's acquire load; size is
		 * seen with it. */
		__atomic_store_n(&k->per_slab, (uint32_t)per, __ATOMIC_RELEASE);
	} else if (k->size != size || k->per_slab != per) {
		ok = false; /* two types for one kind that disagree */
		goto out;
	}
	ty->size = size;
	ty->per_slab = per;
	/* Release: wf__htype_live reads the type through it. */
	__atomic_store_n(&htypes[ty->kind], ty, __ATOMIC_RELEASE);
	__atomic_store_n(&ty->ready, true, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&dir_mu);
	return ok;
}

/* Makes, registers and publishes a new slab of ty's kind. */
static wf__hslab *slab_new(wf__htype *ty)
{
	size_t bytes = WF__HSLAB_HDR + ty->per_slab * ty->size;
	void *mem = NULL;
	if (posix_memalign(&mem, WF__HSLAB_ALIGN, bytes) != 0)
		return NULL;
	memset(mem, 0, bytes);

	pthread_mutex_lock(&dir_mu);
	uint32_t id = next_id;
	if (id >= WF__HSLAB_MAX)
		goto fail;
	uintptr_t **leafp = &wf__hdir[id >> WF__HLEAF_BITS];
	if (*leafp == NULL) {
		uintptr_t *leaf = calloc(LEAF_SIZE, sizeof(*leaf));
		if (leaf == NULL)
			goto fail;
		/* Release: pairs with wf__hdecode's acquire load of the leaf
		 * (its zeroed entries are seen). */
		__atomic_store_n(leafp, leaf, __ATOMIC_RELEASE);
	}
	next_id++;
	pthread_mutex_unlock(&dir_mu);

	wf__hslab *s = mem;
	s->id = id;
	s->kind = (uint16_t)ty->kind;
	s->count = (uint16_t)ty->per_slab;
	char *first = (char *)mem + WF__HSLAB_HDR;
	for (size_t i = 0; i < ty->per_slab; i++) {
		wf__hdr *h = (wf__hdr *)(first + i * ty->size);
		h->kind = (uint16_t)ty->kind;
		h->spare = (uint16_t)i;
	}
	/* Release: pairs with wf__hdecode's acquire load of the entry, so a
	 * decoder that finds the slab sees its headers set. */
	__atomic_store_n(&(*leafp)[id & (LEAF_SIZE - 1)], (uintptr_t)mem | ty->kind,
			 __ATOMIC_RELEASE);
	wf__spin_lock(&ty->lock);
	ty->slabs++;
	wf__spin_unlock(&ty->lock);
	return s;

fail:
	pthread_mutex_unlock(&dir_mu);
	free(mem);
	return NULL;
}

void *wf__hslab_get(wf__htype *ty, size_t *count)
{
	if (!wf__htype_ready(ty))
		return NULL;
	wf__spin_lock(&ty->lock);
	wf__hslab *s = ty->pool;
	if (s != NULL)
		ty->pool = s->next;
	wf__spin_unlock(&ty->lock);
	if (s == NULL && (s = slab_new(ty)) == NULL)
		return NULL;
	s->next = NULL;
	if (count != NULL)
		*count = ty->per_slab;
	return (char *)s + WF__HSLAB_HDR;
}

void wf__hslab_put(wf__htype *ty, void *first)
{
	if (first == NULL)
		return;
	wf__hslab *s = (wf__hslab *)((char *)first - WF__HSLAB_HDR);
	wf__spin_lock(&ty->lock);
	s->next = ty->pool;
	ty->pool = s;
	wf__spin_unlock(&ty->lock);
}

void *wf__hobj_alloc(wf__htype *ty)
{
	if (!wf__htype_ready(ty))
		return NULL;
	wf__spin_lock(&ty->lock);
	void *obj = ty->free;
	while (obj == NULL) {
		wf__spin_unlock(&ty->lock);
		size_t n;
		char *first = wf__hslab_get(ty, &n);
		if (first == NULL)
			return NULL;
		wf__spin_lock(&ty->lock);
		/* Every free slot of the slab goes on the list, lowest first. */
		for (size_t i = n; i-- > 0;) {
			wf__hdr *h = (wf__hdr *)(first + i * ty->size);
			if (wf__hdr_retired(h))
				continue;
			*free_next(h) = ty->free;
			ty->free = h;
		}
		obj = ty->free;
	}
	ty->free = *free_next(obj);
	ty->live++;
	wf__spin_unlock(&ty->lock);
	memset((char *)obj + sizeof(wf__hdr), 0, ty->size - sizeof(wf__hdr));
	wf__hdr_arm(obj);
	return obj;
}

void wf__hobj_free(wf__htype *ty, void *obj)
{
	if (obj == NULL)
		return;
	wf__hobj_recycle(ty, obj, wf__hdr_bump(obj));
}

void wf__hobj_recycle(wf__htype *ty, void *obj, bool keep)
{
	wf__spin_lock(&ty->lock);
	ty->live--;
	if (keep) {
		*free_next(obj) = ty->free;
		ty->free = obj;
	} else {
		ty->retired++;
	}
	wf__spin_unlock(&ty->lock);
}

void wf__htype_stats(wf__htype *ty, wf__hstats *out)
{
	wf__spin_lock(&ty->lock);
	out->slabs = ty->slabs;
	out->live = ty->live;
	out->retired = ty->retired;
	out->free = 0;
	for (void *o = ty->free; o != NULL; o = *free_next(o))
		out->free++;
	wf__spin_unlock(&ty->lock);
}

void wf__hobj_set_gen_for_test(void *obj, uint32_t gen)
{
	__atomic_store_n(&((wf__hdr *)obj)->gen, gen | 1u, __ATOMIC_RELEASE);
}
