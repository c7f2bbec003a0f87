/* AArch64 context switch: see ctx.h.
 * void wf__ctx_asm_switch(void **save_sp, void *load_sp)
 * Saves x19-x30, d8-d15 and fpcr in a 176-byte frame on the current stack,
 * stores sp in *save_sp, loads load_sp, restores the same frame. */
	.text
	.globl wf__ctx_asm_switch
	.hidden wf__ctx_asm_switch
	.type wf__ctx_asm_switch,%function
	.align 4
wf__ctx_asm_switch:
	sub sp, sp, #176
	stp x19, x20, [sp, #0]
	stp x21, x22, [sp, #16]
	stp x23, x24, [sp, #32]
	stp x25, x26, [sp, #48]
	stp x27, x28, [sp, #64]
	stp x29, x30, [sp, #80]
	stp d8, d9, [sp, #96]
	stp d10, d11, [sp, #112]
	stp d12, d13, [sp, #128]
	stp d14, d15, [sp, #144]
	mrs x9, fpcr
	str x9, [sp, #160]
	mov x9, sp
	str x9, [x0]
	mov sp, x1
	ldp x19, x20, [sp, #0]
	ldp x21, x22, [sp, #16]
	ldp x23, x24, [sp, #32]
	ldp x25, x26, [sp, #48]
	ldp x27, x28, [sp, #64]
	ldp x29, x30, [sp, #80]
	ldp d8, d9, [sp, #96]
	ldp d10, d11, [sp, #112]
	ldp d12, d13, [sp, #128]
	ldp d14, d15, [sp, #144]
	ldr x9, [sp, #160]
	msr fpcr, x9
	add sp, sp, #176
	ret
	.size wf__ctx_asm_switch,.-wf__ctx_asm_switch

/* First code run on a fresh stack: entry is in x19 (wf__ctx_make). */
	.globl wf__ctx_trampoline
	.hidden wf__ctx_trampoline
	.type wf__ctx_trampoline,%function
	.align 4
wf__ctx_trampoline:
	mov x29, #0
	mov x30, #0
	blr x19
	brk #0
	.size wf__ctx_trampoline,.-wf__ctx_trampoline

	.section .note.GNU-stack,"",%progbits
