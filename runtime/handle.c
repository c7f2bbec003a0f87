/*
 * Type-stable slabs and the handle directory (see handle.h).
 *
 * Objects come from per-thread caches (below) refilled from per-kind
 * lists. Slabs are made under one process-wide mutex (rare: a slab holds up to
 * 4096 objects) and published in the directory with release stores, which
 * decoders read with acquire loads and no lock. Nothing is ever taken out
 * of the directory, and slab memory never goes back to malloc: a slab given
 * back (wf__hslab_put) waits in its kind's pool for the next owner.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "handle.h"

#define SLAB_BYTES_DEFAULT 16384u
#define LEAF_SIZE (1u << WF__HLEAF_BITS)

uintptr_t *wf__hdir[WF__HTOP];
wf__hkind wf__hkinds[WF__K_COUNT];

static pthread_mutex_t dir_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t next_id = 1; /* dir_mu; 0 is never a slab: no index is 0 */

/* Slab memory. Every slab takes one WF__HSLAB_ALIGN unit, carved from
 * 2 MiB chunks of anonymous memory: already zero (no memset) and aligned
 * by construction, where an aligned malloc of a unit wasted most of a
 * page per slab on its own bookkeeping and touched every byte to clear
 * it. A slab smaller than its unit leaves the rest untouched, so it costs
 * no memory. Chunks after the first are advised as huge pages: a program
 * with that many objects (a few thousand tasks) faults its slabs in 2 MiB
 * at a time, where each 4 KiB fault costs microseconds (tens on a virtual
 * machine with shadow page tables); a small program stays small. */
#define CHUNK_BYTES ((size_t)2 << 20)
static char *chunk_next, *chunk_end; /* dir_mu */
static unsigned chunks_made;         /* dir_mu */

static void *slab_unit_take(void)
{
	if (chunk_next == chunk_end) {
		size_t len = 2 * CHUNK_BYTES;
		char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		char *a = (char *)(((uintptr_t)m + CHUNK_BYTES - 1) & ~(uintptr_t)(CHUNK_BYTES - 1));
		if (a > m)
			munmap(m, (size_t)(a - m));
		if (m + len > a + CHUNK_BYTES)
			munmap(a + CHUNK_BYTES, (size_t)(m + len - (a + CHUNK_BYTES)));
#if defined(MADV_HUGEPAGE)
		(void)madvise(a, CHUNK_BYTES, chunks_made > 0 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#endif
		chunks_made++;
		chunk_next = a;
		chunk_end = a + CHUNK_BYTES;
	}
	void *u = chunk_next;
	chunk_next += WF__HSLAB_ALIGN;
	return u;
}

static void **free_next(void *obj)
{
	return (void **)((char *)obj + sizeof(wf__hdr));
}

/* Every kind's type once it has made objects, for wf__htype_live. */
static wf__htype *htypes[WF__K_COUNT];

/* ---- per-thread caches -------------------------------------------------- *
 *
 * Objects are made and freed on every worker (a future per request, a lock
 * per connection), so one list per kind under one lock would be a line
 * every core fights over. Each thread keeps up to TCACHE_MAX free objects
 * of each kind and moves TCACHE_BATCH at a time between its cache and the
 * kind's list; a thread's cache goes back to the lists when it exits.
 *
 * Counting: ty->live counts the objects out of the kind's list, cached
 * ones included; the cached ones are subtracted when the count is read.
 * Each thread's cached counts are written by it alone and summed by readers
 * through the registry of caches, so the figure is exact whenever no
 * thread is allocating or freeing that kind. */
#define TCACHE_MAX 64
#define TCACHE_BATCH 32

typedef struct tcache {
	struct tcache *prev, *next; /* registry (reg_mu) */
	struct {
		void *head;
		unsigned n; /* atomic: this thread writes, readers sum */
	} k[WF__K_COUNT];
} tcache;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static tcache reg = {.prev = &reg, .next = &reg};
static pthread_key_t tcache_key;
static bool tcache_key_ok;
static __thread tcache *my_tcache;
static __thread bool my_tcache_failed;

static void tcache_flush_kind(tcache *c, unsigned kind, unsigned keep);

/* At thread exit: everything back to the lists, the cache unregistered. */
static void tcache_exit(void *arg)
{
	tcache *c = arg;
	for (unsigned k = 0; k < WF__K_COUNT; k++)
		tcache_flush_kind(c, k, 0);
	pthread_mutex_lock(&reg_mu);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	pthread_mutex_unlock(&reg_mu);
	my_tcache = NULL;
	free(c);
}

static void tcache_key_make(void)
{
	tcache_key_ok = pthread_key_create(&tcache_key, tcache_exit) == 0;
}

/* This thread's cache, made on first use; NULL if it cannot be (then the
 * thread uses the lists directly). */
static tcache *tcache_get(void)
{
	tcache *c = my_tcache;
	if (__builtin_expect(c != NULL, 1) || my_tcache_failed)
		return c;
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, tcache_key_make);
	c = calloc(1, sizeof(*c));
	if (c == NULL || !tcache_key_ok || pthread_setspecific(tcache_key, c) != 0) {
		free(c);
		my_tcache_failed = true;
		return NULL;
	}
	pthread_mutex_lock(&reg_mu);
	c->next = reg.next;
	c->prev = &reg;
	reg.next->prev = c;
	reg.next = c;
	pthread_mutex_unlock(&reg_mu);
	my_tcache = c;
	return c;
}

/* Objects of the kind sitting in caches (a racy sum while threads work). */
static size_t cached_count(unsigned kind)
{
	size_t n = 0;
	pthread_mutex_lock(&reg_mu);
	for (tcache *c = reg.next; c != &reg; c = c->next)
		n += __atomic_load_n(&c->k[kind].n, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&reg_mu);
	return n;
}

size_t wf__htype_live(unsigned kind)
{
	if (kind >= WF__K_COUNT)
		return 0;
	wf__htype *ty = __atomic_load_n(&htypes[kind], __ATOMIC_ACQUIRE);
	if (ty == NULL)
		return 0;
	size_t cached = cached_count(kind);
	wf__spin_lock(&ty->lock);
	size_t n = ty->live;
	wf__spin_unlock(&ty->lock);
	return n > cached ? n - cached : 0;
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
	void *mem = slab_unit_take();
	if (mem == NULL)
		goto fail;
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

/* Takes up to want objects off ty's list (making a slab if it is empty),
 * linked through their second word; their number in *got. Counted live.
 * NULL when out of memory. */
static void *list_take(wf__htype *ty, unsigned want, unsigned *got)
{
	wf__spin_lock(&ty->lock);
	while (ty->free == NULL) {
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
	}
	void *head = ty->free, *last = head;
	unsigned n = 1;
	while (n < want && *free_next(last) != NULL) {
		last = *free_next(last);
		n++;
	}
	ty->free = *free_next(last);
	*free_next(last) = NULL;
	ty->live += n;
	wf__spin_unlock(&ty->lock);
	*got = n;
	return head;
}

/* Puts a chain of n objects (linked through their second word, ending in
 * last) back on ty's list. */
static void list_put(wf__htype *ty, void *head, void *last, unsigned n)
{
	wf__spin_lock(&ty->lock);
	*free_next(last) = ty->free;
	ty->free = head;
	ty->live -= n;
	wf__spin_unlock(&ty->lock);
}

/* Gives all but keep of c's cached objects of the kind back to its list. */
static void tcache_flush_kind(tcache *c, unsigned kind, unsigned keep)
{
	unsigned n = c->k[kind].n;
	if (n <= keep)
		return;
	wf__htype *ty = __atomic_load_n(&htypes[kind], __ATOMIC_ACQUIRE);
	void *head = c->k[kind].head, *last = head;
	for (unsigned i = 1; i < n - keep; i++)
		last = *free_next(last);
	c->k[kind].head = *free_next(last);
	__atomic_store_n(&c->k[kind].n, keep, __ATOMIC_RELAXED);
	list_put(ty, head, last, n - keep);
}

/* Zeroes obj past its header with relaxed atomic stores, not memset: a
 * call that decoded a handle of the slot's previous object just before it
 * was freed may still read that object's fields (atomically: a magic
 * word, a count) before it finds its handle stale, and a plain write
 * racing an atomic read is a data race in C11 and for TSan, however
 * harmless on the hardware. The header is 8 bytes, so the words are
 * aligned. */
_Static_assert(sizeof(wf__hdr) == sizeof(uint64_t), "zero_fields writes aligned words");

static void zero_fields(void *obj, size_t size)
{
	char *p = (char *)obj + sizeof(wf__hdr), *end = (char *)obj + size;
	for (; p + sizeof(uint64_t) <= end; p += sizeof(uint64_t))
		__atomic_store_n((uint64_t *)(void *)p, 0, __ATOMIC_RELAXED);
	for (; p < end; p++)
		__atomic_store_n((uint8_t *)p, 0, __ATOMIC_RELAXED);
}

void *wf__hobj_alloc(wf__htype *ty)
{
	if (!wf__htype_ready(ty))
		return NULL;
	tcache *c = tcache_get();
	void *obj;
	if (c == NULL) {
		unsigned got;
		if ((obj = list_take(ty, 1, &got)) == NULL)
			return NULL;
	} else {
		unsigned k = ty->kind;
		if (c->k[k].n == 0) {
			unsigned got;
			void *chain = list_take(ty, TCACHE_BATCH, &got);
			if (chain == NULL)
				return NULL;
			c->k[k].head = chain;
			__atomic_store_n(&c->k[k].n, got, __ATOMIC_RELAXED);
		}
		obj = c->k[k].head;
		c->k[k].head = *free_next(obj);
		__atomic_store_n(&c->k[k].n, c->k[k].n - 1, __ATOMIC_RELAXED);
	}
	zero_fields(obj, ty->size);
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
	tcache *c = keep ? tcache_get() : NULL;
	if (c == NULL) {
		wf__spin_lock(&ty->lock);
		ty->live--;
		if (keep) {
			*free_next(obj) = ty->free;
			ty->free = obj;
		} else {
			ty->retired++;
		}
		wf__spin_unlock(&ty->lock);
		return;
	}
	unsigned k = ty->kind;
	*free_next(obj) = c->k[k].head;
	c->k[k].head = obj;
	__atomic_store_n(&c->k[k].n, c->k[k].n + 1, __ATOMIC_RELAXED);
	if (c->k[k].n > TCACHE_MAX)
		tcache_flush_kind(c, k, TCACHE_MAX - TCACHE_BATCH);
}

void wf__htype_stats(wf__htype *ty, wf__hstats *out)
{
	size_t cached = ty->kind < WF__K_COUNT ? cached_count(ty->kind) : 0;
	wf__spin_lock(&ty->lock);
	out->slabs = ty->slabs;
	out->live = ty->live - cached;
	out->retired = ty->retired;
	out->free = cached;
	for (void *o = ty->free; o != NULL; o = *free_next(o))
		out->free++;
	wf__spin_unlock(&ty->lock);
}

void wf__hobj_set_gen_for_test(void *obj, uint32_t gen)
{
	__atomic_store_n(&((wf__hdr *)obj)->gen, gen | 1u, __ATOMIC_RELEASE);
}
