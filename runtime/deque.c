/*
 * Chase-Lev deque: allocation and growth (the hot operations are inline in
 * deque.h).
 */
#include "deque.h"

#include <stdlib.h>

static wf__dq_array *array_new(int64_t size)
{
	wf__dq_array *a = malloc(sizeof(*a) + (size_t)size * sizeof(void *));
	if (a == NULL)
		return NULL;
	a->mask = size - 1;
	a->older = NULL;
	return a;
}

int wf__deque_init(wf__deque *d, int64_t log2_size)
{
	d->top = 0;
	d->bottom = 0;
	d->top_seen = 0;
	d->array = array_new((int64_t)1 << log2_size);
	return d->array ? 0 : -1;
}

void wf__deque_destroy(wf__deque *d)
{
	wf__dq_array *a = d->array;
	while (a != NULL) {
		wf__dq_array *older = a->older;
		free(a);
		a = older;
	}
	d->array = NULL;
}

bool wf__deque_grow(wf__deque *d)
{
	wf__dq_array *a = d->array;
	int64_t size = (a->mask + 1) * 2;
	wf__dq_array *n = array_new(size);
	if (n == NULL)
		return false;
	/* Acquire: slots below top may still be read by the thieves that
	 * took them, but are not copied. */
	int64_t t = __atomic_load_n(&d->top, __ATOMIC_ACQUIRE);
	int64_t b = __atomic_load_n(&d->bottom, __ATOMIC_RELAXED);
	for (int64_t i = t; i < b; i++)
		n->items[i & n->mask] = __atomic_load_n(&a->items[i & a->mask], __ATOMIC_RELAXED);
	/* A thief may still read the old array after loading it: keep it. */
	n->older = a;
	/* Release: the copied items before the array pointer; a thief that
	 * loads the new pointer sees them. */
	__atomic_store_n(&d->array, n, __ATOMIC_RELEASE);
	return true;
}
