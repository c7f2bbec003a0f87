/*
 * The layout of every public struct a program allocates itself (or in
 * arrays), as of weft 0.1 on LP64 targets (x86-64, AArch64). Changing one
 * of these breaks every program built against an earlier 0.x/1.x: a new
 * option takes the place of reserved words (weft.h, "ABI"; docs/abi.md),
 * so the size stays and the reserved words stay last. A change here is a
 * new major version (and a new soname).
 *
 * Compiled, not run, by check_layout: a failed assertion names the struct.
 */
#include <stddef.h>
#include <stdint.h>

#include <weft.h>

#define SIZE(T, size, align)                                                   \
	_Static_assert(sizeof(T) == (size) && _Alignof(T) == (align),         \
		       #T ": size or alignment changed")
/* The reserved words are the struct's last bytes, with no padding after. */
#define RESERVED_LAST(T)                                                       \
	_Static_assert(offsetof(T, reserved) + sizeof(((T *)0)->reserved) ==  \
			       sizeof(T),                                      \
		       #T ": reserved words no longer last")

#if UINTPTR_MAX == UINT64_MAX && SIZE_MAX == UINT64_MAX
/* Option structs: they grow into their reserved words. */
SIZE(wf_config, 96, 8);
RESERVED_LAST(wf_config);
/* 0.x: cancel_on_signals and slow_task_ms took reserved[0], hooks
 * reserved[1]. */
_Static_assert(offsetof(wf_config, cancel_on_signals) == 32 &&
		       offsetof(wf_config, slow_task_ms) == 36 && offsetof(wf_config, hooks) == 40 &&
		       offsetof(wf_config, reserved) == 48,
	       "wf_config: a field moved");
/* Filled by the library; the hooks struct is the program's. */
SIZE(wf_worker_metrics, 176, 8);
RESERVED_LAST(wf_worker_metrics);
SIZE(wf_metrics, 216, 8);
RESERVED_LAST(wf_metrics);
SIZE(wf_task_info, 128, 8);
RESERVED_LAST(wf_task_info);
SIZE(wf_hooks, 96, 8);
RESERVED_LAST(wf_hooks);
SIZE(wf_ctx_token, 32, 8);
SIZE(wf_spawn_opts, 72, 8);
RESERVED_LAST(wf_spawn_opts);
SIZE(wf_queue_opts, 88, 8);
RESERVED_LAST(wf_queue_opts);
SIZE(wf_call_opts, 64, 8);
RESERVED_LAST(wf_call_opts);
SIZE(wf_server_opts, 64, 8);
RESERVED_LAST(wf_server_opts);
/* Filled by the library in the caller's memory. */
SIZE(wf_pool_stats, 88, 8);
RESERVED_LAST(wf_pool_stats);
/* Elements of arrays: their size is fixed for good. */
SIZE(wf_outcome, 24, 8);
SIZE(wf_failure, 48, 8);
SIZE(wf_addr, 136, 8);
/* Opaque, on the caller's stack: the library's state must fit in it. */
SIZE(wf_timeout, 80, 8);
#else
#error "layout.c: only LP64 layouts are recorded"
#endif

int main(void)
{
	return 0;
}
