/* x86-64 System V context switch: see ctx.h.
 * void wf__ctx_asm_switch(void **save_sp, void *load_sp)
 * Saves callee-saved registers and the SSE/x87 control words on the current
 * stack, stores rsp in *save_sp, loads load_sp, restores the same frame.
 * It ends with ret, which keeps the CPU's return-stack predictor in step:
 * the scheduler switches from one call site, so the return lands where the
 * call that suspended the other stack returns, which is where the predictor
 * looks, and every return after it (into the scheduler, then wf_yield or
 * the wait) matches a call of the other stack too. Ending with pop and
 * jmp instead leaves the call's entry on the predictor's stack, and every
 * later return then mispredicts (a yield took twice as long). */
	.text
	.globl wf__ctx_asm_switch
	.hidden wf__ctx_asm_switch
	.type wf__ctx_asm_switch,@function
	.align 16
wf__ctx_asm_switch:
	.cfi_startproc
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	subq $8, %rsp
	stmxcsr (%rsp)
	fnstcw 4(%rsp)
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	ldmxcsr (%rsp)
	fldcw 4(%rsp)
	addq $8, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.cfi_endproc
	.size wf__ctx_asm_switch,.-wf__ctx_asm_switch

/* First code run on a fresh stack: entry is in r12 (wf__ctx_make). */
	.globl wf__ctx_trampoline
	.hidden wf__ctx_trampoline
	.type wf__ctx_trampoline,@function
	.align 16
wf__ctx_trampoline:
	.cfi_startproc
	.cfi_undefined rip
	xorl %ebp, %ebp
	callq *%r12
	ud2
	.cfi_endproc
	.size wf__ctx_trampoline,.-wf__ctx_trampoline

	.section .note.GNU-stack,"",@progbits
