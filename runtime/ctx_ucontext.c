/*
 * Portable context switch on ucontext (see ctx.h): used where there is no
 * assembly version, or when built with WEFT_CTX=ucontext.
 */
#include "ctx.h"

#include <stdio.h>
#include <stdlib.h>

void wf__ctx_switch(wf__ctx *from, wf__ctx *to)
{
	if (swapcontext(&from->uc, &to->uc) != 0) {
		perror("weft: swapcontext");
		abort();
	}
}

void wf__ctx_make(wf__ctx *c, void *lo, size_t size, void (*entry)(void))
{
	if (getcontext(&c->uc) != 0) {
		perror("weft: getcontext");
		abort();
	}
	c->uc.uc_stack.ss_sp = lo;
	c->uc.uc_stack.ss_size = size;
	c->uc.uc_link = NULL;
	makecontext(&c->uc, entry, 0);
}
