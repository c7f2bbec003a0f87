/*
 * weft: context variables (Python's contextvars); included by weft.h.
 *
 * A context variable holds one value per context. Every task has a
 * context; a spawned task starts with a copy of its spawner's (asyncio
 * copies the context at create_task), so a value set before the spawn is
 * seen by the child, and a value the child sets later is its own: neither
 * the parent nor any sibling sees it. Calls handed to a thread pool
 * (wf_run_in_executor, wf_to_thread) run with a copy of the caller's
 * context, as asyncio.to_thread does. A plain thread has a context of its
 * own too, which tasks it submits (wf_runtime_submit) start from.
 *
 *	static wf_ctxvar *request_id;      // wf_ctxvar_new("request_id", NULL, &request_id)
 *
 *	wf_ctx_token tok;
 *	wf_ctxvar_set(request_id, req, &tok);   // this task, and tasks it spawns from now on
 *	handle(req);                            // reads wf_ctxvar_get(request_id)
 *	wf_ctxvar_reset(&tok);                  // back to what it was before the set
 *
 * Values are the program's pointers: weft stores them and hands them back,
 * never reads or frees them. A value must stay valid for as long as any
 * context that holds it may read it (the tasks spawned after the set).
 *
 * Cost. A copy is a reference count: a spawn copies nothing while no
 * variable was ever set in the spawning context, and one atomic increment
 * otherwise. wf_ctxvar_set copies the context's table (one allocation)
 * only when another context still shares it.
 */
#ifndef WEFT_CONTEXT_H
#define WEFT_CONTEXT_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_ctxvar wf_ctxvar;

/* What wf_ctxvar_set hands back for wf_ctxvar_reset (asyncio's Token):
 * the variable's previous value in the context where it was set. Its
 * fields are weft's; a token is a plain value the caller keeps (on its
 * stack, say) and may drop without resetting. */
typedef struct wf_ctx_token {
	wf_ctxvar *var_;
	void *old_;
	uint64_t owner_;
	uint32_t state_;
	uint32_t reserved_;
} wf_ctx_token;

/* [any] A new context variable named `name` (copied, first 31 bytes; NULL
 * gives "ctxvar") whose value is dflt in every context where it was never
 * set. 0, WF_EINVAL (out NULL), WF_ENOMEM. Freed by wf_ctxvar_free;
 * variables are usually made once and kept for the life of the program. */
WF_EXTERN int wf_ctxvar_new(const char *name, void *dflt, wf_ctxvar **out);

/* [any] Frees var. Contexts that still hold a value for it forget it (the
 * values are the program's; weft never frees them). 0, or WF_EINVAL (NULL
 * or already freed). */
WF_EXTERN int wf_ctxvar_free(wf_ctxvar *var);

/* [any] var's value in the calling task's context (a plain thread's own
 * context on a plain thread; the submitting task's copy inside a pool
 * call): the last value set there, or var's default. NULL for NULL or a
 * freed var. */
WF_EXTERN void *wf_ctxvar_get(const wf_ctxvar *var);

/* [any] true if var has a value set in the current context (then
 * wf_ctxvar_get returns it, not the default); false for NULL or a freed
 * var. */
WF_EXTERN bool wf_ctxvar_isset(const wf_ctxvar *var);

/* [any] Sets var to value in the current context: the calling task (and
 * the tasks it spawns from now on), never its parent or the tasks it
 * spawned before. token (may be NULL) receives what wf_ctxvar_reset needs
 * to undo this. 0, WF_EINVAL (NULL or freed var), WF_ENOMEM (the value is
 * not set). */
WF_EXTERN int wf_ctxvar_set(wf_ctxvar *var, void *value, wf_ctx_token *token);

/* [any] Puts the variable of a token back to what it was before the set
 * that made the token: its previous value, or unset. Must be called in
 * the same context (task or plain thread) as that set. 0, WF_EINVAL
 * (token NULL, never filled, made in another context, or its variable
 * freed), WF_EALREADY (the token was used already), WF_ENOMEM. */
WF_EXTERN int wf_ctxvar_reset(wf_ctx_token *token);

/* [any] The variable's name; NULL for NULL or a freed var. Valid while
 * var lives. */
WF_EXTERN const char *wf_ctxvar_name(const wf_ctxvar *var);

#ifdef __cplusplus
}
#endif

#endif
