/*
 * Handles: type-stable memory and generation-tagged handles for every
 * object a program gives back (tasks, futures, sync objects, ...).
 *
 * The problem. A handle that is the object's address cannot tell a stale
 * handle (its object released) from a new object that reused the memory:
 * a second join of a joined task would join whatever task came next, a
 * freed lock's handle would act on a new lock. A handle here is a 64-bit
 * value, not an address:
 *
 *	handle = (uint64_t)gen << 32 | index,  index = slab_id << WF__HSLOT_BITS | slot
 *
 * cast to the opaque pointer type the user sees (wf_task *, wf_future *,
 * ...). `slab_id` names a slab in a process-wide two-level directory of
 * slab base addresses (grown under a mutex, read lock-free with acquire
 * loads, never shrinks); `slot` is the object's place in its slab; `gen`
 * is the generation the object's header held when the handle was made.
 * Decoding looks the slab up (two dependent loads: the directory leaf,
 * then the leaf's entry), checks that the slab holds objects of the kind
 * asked for and that the slot exists, and accepts the object only if its
 * header's current generation is the handle's.
 *
 * Generations. Every handled object starts with a wf__hdr. Its `gen` is
 * even while the slot is free and odd while an object lives in it: taking
 * a slot (wf__hdr_arm) and giving it back (wf__hdr_bump) each add one. A
 * handle therefore only ever carries an odd gen, and once its object is
 * given back the slot's gen differs from it forever (until the counter
 * wraps): a stale handle gets NULL from the decoder, every time, whatever
 * lives in the slot now. A slot whose gen would wrap (after 2^31 reuses)
 * is retired for good: never reused, which costs one slot per two billion
 * objects, and so no generation is ever handed out twice.
 *
 * Memory. Slabs come from anonymous mappings of their own (handle.c) and
 * are never given back while the process lives; a slab only ever holds
 * objects of one kind. So reading a
 * stale handle's slot is never a use-after-free, and what is there is an
 * object of the right kind (or a free one). Garbage (0, small integers,
 * random 64-bit values, addresses of other memory) decodes to NULL: the
 * slab id is out of range or unused, the slot is past its slab, or the
 * gen does not match.
 *
 * Each slab is aligned to WF__HSLAB_ALIGN and starts with a small header
 * that holds its id, so encoding an object (its handle from its address)
 * is the object's gen and slot (in its own header) and the slab's id (at
 * the address rounded down): no search, no division.
 *
 * A handle used concurrently with the call that gives its object back is
 * a race in the program: the decode may succeed just before the release.
 * What this guarantees is memory safety and that a handle which was stale
 * before the call began is refused.
 */
#ifndef WEFT_RUNTIME_HANDLE_H
#define WEFT_RUNTIME_HANDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

_Static_assert(sizeof(void *) == 8, "handles are 64-bit values passed as pointers");

/* Every kind of handled object, one enum for all (a slab's kind is tagged
 * in its directory entry). Zero is no kind: an empty entry. */
enum {
	WF__K_NONE = 0,
	WF__K_TASK,
	WF__K_FUTURE,
	WF__K_LOCK,
	WF__K_EVENT,
	WF__K_SEM,
	WF__K_COND,
	WF__K_BARRIER,
	WF__K_RWLOCK,
	WF__K_QUEUE,
	WF__K_GROUP,
	WF__K_AS_COMPLETED,
	WF__K_POOL,
	WF__K_TIMEOUT, /* a timeout scope's state (compose/compose_timeout.c) */
	WF__K_IO,      /* an I/O source (runtime/poller.c) */
	WF__K_STREAM,
	WF__K_SERVER,
	WF__K_UDP,
	WF__K_FILE,    /* an open file (io/fs.c) */
	WF__K_PROCESS, /* a child process (io/process.c) */
	WF__K_CTXVAR,  /* a context variable (runtime/ctxvar.c) */
	WF__K_TIMER,   /* a scheduled callback (runtime/call.c) */
	WF__K_INTERVAL, /* a repeating timer (runtime/call.c) */
	WF__K_TEST_A, /* for test_handle.c */
	WF__K_TEST_B,
	WF__K_TEST_C,
	WF__K_COUNT
};

/* The header every handled object starts with. */
typedef struct wf__hdr {
	uint32_t gen;   /* atomic: even free, odd live (top comment) */
	uint16_t kind;  /* WF__K_*: set when the slab is made, never changes */
	uint16_t spare; /* the slot in its slab, and WF__HDR_RETIRED */
} wf__hdr;

#define WF__HSLOT_BITS 12u /* at most 4096 objects per slab */
#define WF__HSLOT_MASK ((1u << WF__HSLOT_BITS) - 1)
#define WF__HDR_RETIRED 0x8000u /* in spare: the slot is never reused */
#define WF__HLEAF_BITS 10u
#define WF__HTOP (1u << (32 - WF__HSLOT_BITS - WF__HLEAF_BITS))
#define WF__HSLAB_MAX (1u << (32 - WF__HSLOT_BITS)) /* slab ids 1 .. MAX-1 */
#define WF__HSLAB_ALIGN ((uintptr_t)1 << 16)         /* slabs are at most this big */
#define WF__HSLAB_HDR 64u /* bytes before a slab's first object */

/* The start of every slab (its memory is aligned to WF__HSLAB_ALIGN). */
typedef struct wf__hslab {
	uint32_t id;
	uint16_t kind;
	uint16_t count; /* objects in it */
	struct wf__hslab *next; /* the kind's pool of returned slabs */
} wf__hslab;
_Static_assert(sizeof(wf__hslab) <= WF__HSLAB_HDR, "slab header too big");

/* What a decoder needs of a kind: written once, when the kind's first slab
 * is made, before that slab is published. */
typedef struct wf__hkind {
	uint32_t size;     /* bytes per object, a multiple of 16 */
	uint32_t per_slab; /* objects per slab */
} wf__hkind;

/* The directory: WF__HTOP leaves of 2^WF__HLEAF_BITS entries. An entry is
 * the slab's base address with its kind in the low 16 bits (bases are
 * aligned to 64 KiB), or 0. */
extern uintptr_t *wf__hdir[WF__HTOP];
extern wf__hkind wf__hkinds[WF__K_COUNT];

/* One per kind, static in the file that owns the kind; zero-initialise it
 * with WF__HTYPE_INIT. */
typedef struct wf__htype {
	unsigned kind;     /* WF__K_* */
	size_t size;       /* sizeof the object (rounded up to 16) */
	size_t per_slab;   /* 0: as many as fit in 16 KiB */
	wf__spinlock lock; /* guards free, pool and the counts */
	void *free;        /* free objects, linked through their second word */
	wf__hslab *pool;   /* slabs given back with wf__hslab_put */
	size_t slabs;      /* slabs made for this kind */
	size_t live;       /* objects handed out by wf__hobj_alloc, not freed */
	size_t retired;    /* slots retired by a wrapping gen */
	bool ready;        /* size and per_slab settled, wf__hkinds written */
} wf__htype;

#define WF__HTYPE_INIT(k, type) \
	{ .kind = (k), .size = sizeof(type), .lock = WF__SPINLOCK_INIT }

/* ---- objects one at a time --------------------------------------------- */

/* A free object of the kind, zeroed apart from its header (which is live:
 * its handle is wf__handle_of(obj)), or NULL when out of memory. */
void *wf__hobj_alloc(wf__htype *ty);
/* Gives obj back: every handle of it is stale from now on. The slot is
 * reused for the next object of the kind, or retired if its gen wrapped. */
void wf__hobj_free(wf__htype *ty, void *obj);
/* The second half of wf__hobj_free, for an owner that made obj stale
 * itself with wf__hdr_bump (under its own lock, say) and must let go of
 * that lock before the slot can be reused: keep is what the bump said. */
void wf__hobj_recycle(wf__htype *ty, void *obj, bool keep);

/* ---- whole slabs (for owners with their own free lists: tasks) ---------- */

/* A registered slab of *count objects of the kind, new or given back by
 * wf__hslab_put: returns its first object; object i is at
 * (char *)first + i * ty->size. Headers are set (kind, slot); the gens of
 * a recycled slab are kept: every slot is free (even gen), and a slot with
 * wf__hdr_retired() must never be armed. NULL when out of memory. */
void *wf__hslab_get(wf__htype *ty, size_t *count);
/* Gives a slab (its first object, as wf__hslab_get returned it) back to
 * the kind's pool; every object in it must be free. */
void wf__hslab_put(wf__htype *ty, void *first);

/* Settles ty's size and per_slab and publishes its decoding data; called
 * by the first allocation. Returns false if the kind's objects cannot fit
 * a slab. */
bool wf__htype_ready(wf__htype *ty);

/* ---- generations -------------------------------------------------------- */

/* A free slot becomes live (even gen to odd). Call it once the object is
 * initialised, before its handle is handed out; returns the handle. */
static inline void *wf__handle_of(const void *obj);
static inline void *wf__hdr_arm(wf__hdr *h)
{
	/* Release: a decoder that sees the new gen (acquire in wf__hdecode)
	 * sees the object's initialisation. */
	__atomic_store_n(&h->gen, __atomic_load_n(&h->gen, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
	return wf__handle_of(h);
}

/* A live object is given back (odd gen to even): its handles are stale
 * from here on. false if the gen wrapped: the slot is retired (flagged in
 * its header) and must never be reused. */
static inline bool wf__hdr_bump(wf__hdr *h)
{
	/* Release: whatever the releasing owner did to the object happens
	 * before a decoder sees the slot free (pairs with wf__hdecode). */
	uint32_t old = __atomic_fetch_add(&h->gen, 1, __ATOMIC_RELEASE);
	if (__builtin_expect(old != UINT32_MAX, 1))
		return true;
	h->spare |= WF__HDR_RETIRED;
	return false;
}

static inline bool wf__hdr_retired(const wf__hdr *h)
{
	return (h->spare & WF__HDR_RETIRED) != 0;
}

/* Takes a reference on an object reached through a handle that another
 * party may give back meanwhile (its count may reach zero at any moment):
 * only while the count is not zero, since a zero count is a free under
 * way. The slot is type-stable, so the count is always a count; the
 * caller checks the handle again afterwards, as the slot may have been
 * freed and reused between its decode and the increment (then it drops
 * the reference it took, which is that other life's). */
static inline bool wf__ref_unless_zero(uint32_t *refs)
{
	uint32_t r = __atomic_load_n(refs, __ATOMIC_RELAXED);
	do {
		if (r == 0)
			return false;
	} while (!__atomic_compare_exchange_n(refs, &r, r + 1, true, __ATOMIC_ACQUIRE,
					      __ATOMIC_RELAXED));
	return true;
}

static inline bool wf__hdr_live(const wf__hdr *h)
{
	return (__atomic_load_n(&h->gen, __ATOMIC_ACQUIRE) & 1u) != 0;
}

/* ---- encoding and decoding --------------------------------------------- */

static inline const wf__hslab *wf__hslab_of(const void *obj)
{
	return (const wf__hslab *)((uintptr_t)obj & ~(WF__HSLAB_ALIGN - 1));
}

/* The handle of a live object (its address, as the user must never see
 * it, in, its handle out). */
static inline void *wf__handle_of(const void *obj)
{
	const wf__hdr *h = (const wf__hdr *)obj;
	uint64_t gen = __atomic_load_n(&h->gen, __ATOMIC_RELAXED);
	uint32_t index = wf__hslab_of(obj)->id << WF__HSLOT_BITS | (h->spare & WF__HSLOT_MASK);
	return (void *)(uintptr_t)(gen << 32 | index);
}

/* The object a handle names, if the handle is a live one of kind `kind`;
 * else NULL. size and per_slab are the kind's (constants at a call that
 * knows the kind, as the task hot path does). */
static inline void *wf__hdecode(const void *handle, unsigned kind, size_t size, size_t per_slab)
{
	uint64_t v = (uint64_t)(uintptr_t)handle;
	uint32_t gen = (uint32_t)(v >> 32);
	uint32_t index = (uint32_t)v;
	uint32_t id = index >> WF__HSLOT_BITS;
	uint32_t slot = index & WF__HSLOT_MASK;
	if (!(gen & 1u) || slot >= per_slab)
		return NULL;
	/* Acquire, both: pairs with the release stores that publish a leaf
	 * and a slab (handle.c), so the slab's headers are seen set. */
	uintptr_t *leaf = __atomic_load_n(&wf__hdir[id >> WF__HLEAF_BITS], __ATOMIC_ACQUIRE);
	if (leaf == NULL)
		return NULL;
	uintptr_t e = __atomic_load_n(&leaf[id & ((1u << WF__HLEAF_BITS) - 1)], __ATOMIC_ACQUIRE);
	if ((e & (WF__HSLAB_ALIGN - 1)) != kind || kind == WF__K_NONE)
		return NULL;
	wf__hdr *h = (wf__hdr *)((e & ~(WF__HSLAB_ALIGN - 1)) + WF__HSLAB_HDR + slot * size);
	/* Acquire: pairs with wf__hdr_arm's release (the object is
	 * initialised) and wf__hdr_bump's (a freed object is refused). */
	if (__atomic_load_n(&h->gen, __ATOMIC_ACQUIRE) != gen)
		return NULL;
	return h;
}

/* The object a handle names if it is a live object of kind `kind`, else
 * NULL (stale, NULL, garbage, another kind). */
static inline void *wf__handle_get(const void *handle, unsigned kind)
{
	if (kind >= WF__K_COUNT)
		return NULL;
	/* Acquire: pairs with the release store of per_slab in
	 * wf__htype_ready, which follows the store of size. A kind with no
	 * slab yet has per_slab 0 and refuses every slot. */
	uint32_t per_slab = __atomic_load_n(&wf__hkinds[kind].per_slab, __ATOMIC_ACQUIRE);
	uint32_t size = __atomic_load_n(&wf__hkinds[kind].size, __ATOMIC_RELAXED);
	return wf__hdecode(handle, kind, size, per_slab);
}

/* ---- statistics and tests ------------------------------------------------ */

typedef struct wf__hstats {
	size_t slabs, live, retired, free;
} wf__hstats;
void wf__htype_stats(wf__htype *ty, wf__hstats *out);
/* Objects of a kind handed out and not freed (0 before its first). */
size_t wf__htype_live(unsigned kind);

/* Tests only: sets a live object's gen (odd), to reach the wrap. */
void wf__hobj_set_gen_for_test(void *obj, uint32_t gen);

#endif
