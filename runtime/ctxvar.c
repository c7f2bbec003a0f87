/*
 * Context variables (include/weft/context.h).
 *
 * A context is an immutable-once-shared table of (variable id, value)
 * pairs sorted by id, with a reference count: wf__vars. A task holds one
 * in t->vars, a plain thread in tls_vars; NULL is the empty context, which
 * is what every task of a program that never sets a variable has, so the
 * spawn path pays one load and a branch. A spawn shares the spawner's
 * table (a reference); a set replaces the setter's table with a modified
 * copy, unless the setter holds the only reference, in which case nobody
 * else can see the table and it is changed in place.
 *
 * Variables are handled objects (handle.h): a freed variable's handle is
 * refused. Tables key entries by a 64-bit id that is never reused, not by
 * the variable's slot, so a new variable in a freed one's slot never
 * inherits its values.
 */
#include <stdlib.h>
#include <string.h>

#include "rt.h"
#include "weft.h"

#define VAR_NAME_MAX 32

struct wf_ctxvar {
	wf__hdr hdr;
	void *free_link; /* the slab's free list uses this word */
	uint64_t id;
	void *dflt;
	char name[VAR_NAME_MAX];
};

typedef struct vars_entry {
	uint64_t id;
	void *value;
} vars_entry;

struct wf__vars {
	uint32_t refs; /* atomic */
	uint32_t n, cap;
	vars_entry e[];
};

enum { TOKEN_UNSET = 0, TOKEN_HAD = 1, TOKEN_NEW = 2, TOKEN_USED = 3 };

static wf__htype var_type = WF__HTYPE_INIT(WF__K_CTXVAR, struct wf_ctxvar);
static uint64_t next_var_id = 1; /* atomic */

/* A plain thread's context; a pool thread's while it runs a call. */
static __thread wf__vars *tls_vars;

static struct wf_ctxvar *var_get(const wf_ctxvar *h)
{
	return wf__handle_get(h, WF__K_CTXVAR);
}

/* ---- tables --------------------------------------------------------------- */

wf__vars *wf__vars_ref(wf__vars *v)
{
	if (v != NULL)
		__atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
	return v;
}

/* acq_rel: every read of the table by this holder happens before the free
 * by the last one, and before an in-place change by a holder that sees
 * itself alone (its acquire load of refs in vars_mutable). */
void wf__vars_unref(wf__vars *v)
{
	if (v != NULL && __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(v);
}

static bool vars_mutable(const wf__vars *v)
{
	return __atomic_load_n(&v->refs, __ATOMIC_ACQUIRE) == 1;
}

/* The index of id in v, or where it would go (found says which). */
static uint32_t vars_find(const wf__vars *v, uint64_t id, bool *found)
{
	uint32_t lo = 0, hi = v != NULL ? v->n : 0;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (v->e[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = v != NULL && lo < v->n && v->e[lo].id == id;
	return lo;
}

static wf__vars *vars_alloc(uint32_t cap)
{
	wf__vars *v = malloc(sizeof(*v) + (size_t)cap * sizeof(vars_entry));
	if (v != NULL) {
		v->refs = 1;
		v->n = 0;
		v->cap = cap;
	}
	return v;
}

/* The current context's slot: the running task's, else the thread's. */
static wf__vars **current_slot(uint64_t *owner)
{
	wf__worker *w = wf__self();
	wf_task *t = w != NULL ? w->current : NULL;
	if (t != NULL) {
		if (owner != NULL)
			*owner = t->id << 1;
		return &t->vars;
	}
	if (owner != NULL)
		*owner = (uint64_t)(uintptr_t)&tls_vars << 1 | 1u;
	return &tls_vars;
}

wf__vars *wf__vars_capture(void)
{
	return wf__vars_ref(*current_slot(NULL));
}

wf__vars *wf__vars_enter(wf__vars *v)
{
	wf__vars *prev = tls_vars;
	tls_vars = v;
	return prev;
}

void wf__vars_leave(wf__vars *prev)
{
	wf__vars_unref(tls_vars);
	tls_vars = prev;
}

/* Puts (id, value) into *slot's table (remove: takes id out), copying the
 * table unless the caller holds it alone. 0 or WF_ENOMEM. */
static int vars_put(wf__vars **slot, uint64_t id, void *value, bool remove)
{
	wf__vars *v = *slot;
	bool found;
	uint32_t i = vars_find(v, id, &found);
	if (remove && !found)
		return 0;
	if (v != NULL && vars_mutable(v)) {
		if (found && !remove) {
			v->e[i].value = value;
			return 0;
		}
		if (remove) {
			memmove(&v->e[i], &v->e[i + 1], (v->n - i - 1) * sizeof(vars_entry));
			v->n--;
			return 0;
		}
		if (v->n < v->cap) {
			memmove(&v->e[i + 1], &v->e[i], (v->n - i) * sizeof(vars_entry));
			v->e[i] = (vars_entry){id, value};
			v->n++;
			return 0;
		}
	}
	uint32_t n = v != NULL ? v->n : 0;
	uint32_t want = remove ? n - 1 : found ? n : n + 1;
	wf__vars *c = vars_alloc(want < 4 ? 4 : want + want / 2);
	if (c == NULL)
		return WF_ENOMEM;
	uint32_t k = 0;
	for (uint32_t j = 0; j < n; j++) {
		if (j == i && !found && !remove)
			c->e[k++] = (vars_entry){id, value};
		if (j == i && found) {
			if (!remove)
				c->e[k++] = (vars_entry){id, value};
			continue;
		}
		c->e[k++] = v->e[j];
	}
	if (i == n && !found && !remove)
		c->e[k++] = (vars_entry){id, value};
	c->n = k;
	*slot = c;
	wf__vars_unref(v);
	return 0;
}

/* ---- the public calls ----------------------------------------------------- */

int wf_ctxvar_new(const char *name, void *dflt, wf_ctxvar **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	struct wf_ctxvar *v = wf__hobj_alloc(&var_type);
	if (v == NULL)
		return WF_ENOMEM;
	v->id = __atomic_fetch_add(&next_var_id, 1, __ATOMIC_RELAXED);
	v->dflt = dflt;
	const char *n = name != NULL ? name : "ctxvar";
	size_t len = strnlen(n, VAR_NAME_MAX - 1);
	memcpy(v->name, n, len);
	v->name[len] = '\0';
	*out = wf__handle_of(v);
	return 0;
}

int wf_ctxvar_free(wf_ctxvar *h)
{
	struct wf_ctxvar *v = var_get(h);
	if (v == NULL)
		return WF_EINVAL;
	wf__hobj_free(&var_type, v);
	return 0;
}

void *wf_ctxvar_get(const wf_ctxvar *h)
{
	struct wf_ctxvar *v = var_get(h);
	if (v == NULL)
		return NULL;
	wf__vars *t = *current_slot(NULL);
	bool found;
	uint32_t i = vars_find(t, v->id, &found);
	return found ? t->e[i].value : v->dflt;
}

bool wf_ctxvar_isset(const wf_ctxvar *h)
{
	struct wf_ctxvar *v = var_get(h);
	if (v == NULL)
		return false;
	bool found;
	vars_find(*current_slot(NULL), v->id, &found);
	return found;
}

int wf_ctxvar_set(wf_ctxvar *h, void *value, wf_ctx_token *token)
{
	struct wf_ctxvar *v = var_get(h);
	if (v == NULL)
		return WF_EINVAL;
	uint64_t owner;
	wf__vars **slot = current_slot(&owner);
	bool found;
	uint32_t i = vars_find(*slot, v->id, &found);
	void *old = found ? (*slot)->e[i].value : NULL;
	int rc = vars_put(slot, v->id, value, false);
	if (rc != 0)
		return rc;
	if (token != NULL)
		*token = (wf_ctx_token){.var_ = h, .old_ = old, .owner_ = owner,
					.state_ = found ? TOKEN_HAD : TOKEN_NEW};
	return 0;
}

int wf_ctxvar_reset(wf_ctx_token *token)
{
	if (token == NULL)
		return WF_EINVAL;
	if (token->state_ == TOKEN_USED)
		return WF_EALREADY;
	if (token->state_ != TOKEN_HAD && token->state_ != TOKEN_NEW)
		return WF_EINVAL;
	struct wf_ctxvar *v = var_get(token->var_);
	if (v == NULL)
		return WF_EINVAL;
	uint64_t owner;
	wf__vars **slot = current_slot(&owner);
	if (owner != token->owner_)
		return WF_EINVAL;
	int rc = vars_put(slot, v->id, token->old_, token->state_ == TOKEN_NEW);
	if (rc == 0)
		token->state_ = TOKEN_USED;
	return rc;
}

const char *wf_ctxvar_name(const wf_ctxvar *h)
{
	struct wf_ctxvar *v = var_get(h);
	return v != NULL ? v->name : NULL;
}
