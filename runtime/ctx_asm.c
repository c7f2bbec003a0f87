/*
 * Context switch for x86-64 System V and AArch64 (the assembly is in
 * ctx_x86_64.S and ctx_aarch64.S): building a fresh context.
 */
#include "ctx.h"

#include <stdint.h>
#include <string.h>

void wf__ctx_trampoline(void);

#if defined(__x86_64__)
/* Frame popped by wf__ctx_asm_switch, lowest address first:
 * mxcsr+fpu cw, r15, r14, r13, r12, rbx, rbp, return address. */
void wf__ctx_make(wf__ctx *c, void *lo, size_t size, void (*entry)(void))
{
	uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
	/* At the trampoline's first instruction rsp must be 16-aligned so that
	 * its call leaves the ABI's rsp+8 alignment in entry. */
	uint64_t *sp = (uint64_t *)(top - 8 * 8);
	memset(sp, 0, 8 * 8);
	uint32_t mxcsr = 0x1f80; /* defaults: all exceptions masked, nearest */
	uint16_t fcw = 0x037f;
	memcpy(&sp[0], &mxcsr, 4);
	memcpy((char *)&sp[0] + 4, &fcw, 2);
	sp[4] = (uint64_t)(uintptr_t)entry; /* r12 */
	sp[6] = 0;                          /* rbp: ends backtraces */
	sp[7] = (uint64_t)(uintptr_t)wf__ctx_trampoline;
	c->sp = sp;
}
#elif defined(__aarch64__)
/* Frame popped by wf__ctx_asm_switch (176 bytes): x19..x28, x29, x30,
 * d8..d15, fpcr, pad. */
void wf__ctx_make(wf__ctx *c, void *lo, size_t size, void (*entry)(void))
{
	uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
	uint64_t *sp = (uint64_t *)(top - 176);
	memset(sp, 0, 176);
	sp[0] = (uint64_t)(uintptr_t)entry;              /* x19 */
	sp[10] = 0;                                      /* x29 */
	sp[11] = (uint64_t)(uintptr_t)wf__ctx_trampoline; /* x30 */
	c->sp = sp;
}
#else
#error "no assembly context switch for this architecture: build with WEFT_CTX=ucontext"
#endif
