/*
 * Context switch between task stacks.
 *
 * A context is what a suspended stack needs to resume: on x86-64 System V
 * and AArch64 only the stack pointer, because wf__ctx_switch pushes the
 * callee-saved registers and the FP control words on the stack it leaves
 * (the caller-saved ones are dead across a call anyway). Elsewhere, or when
 * built with WEFT_CTX=ucontext, ucontext's getcontext/swapcontext (slower:
 * it saves the signal mask with a system call).
 */
#ifndef WEFT_RUNTIME_CTX_H
#define WEFT_RUNTIME_CTX_H

#include <stddef.h>

#if defined(WF_CTX_UCONTEXT)
#include <ucontext.h>
typedef struct wf__ctx {
	ucontext_t uc;
} wf__ctx;
#else
typedef struct wf__ctx {
	void *sp;
} wf__ctx;
#endif

/* Saves the running context in *from and resumes *to. Returns when
 * something switches back to *from. Inline where it is assembly: one C
 * frame fewer to return through on the resumed stack, and the switches
 * of the scheduler then share one call site, which keeps the CPU's return
 * predictor in step (ctx_x86_64.S). */
#if defined(WF_CTX_UCONTEXT)
void wf__ctx_switch(wf__ctx *from, wf__ctx *to);
#else
void wf__ctx_asm_switch(void **save_sp, void *load_sp);
static inline void wf__ctx_switch(wf__ctx *from, wf__ctx *to)
{
	wf__ctx_asm_switch(&from->sp, to->sp);
}
#endif

/* Prepares *c so that switching to it calls entry() on the stack
 * [lo, lo + size). entry must never return. */
void wf__ctx_make(wf__ctx *c, void *lo, size_t size, void (*entry)(void));

#endif
