/*
 * Lets Criterion start in the ThreadSanitizer build (linked into every
 * test program of that build, and only there).
 *
 * Criterion 2.4.1 (Debian 12) begins by mapping a shared "inheritable
 * arena" (BoxFort's bxf_arena_init) with MAP_FIXED at an address it draws
 * at random: a 16 MiB slot in [0x200000000000, 0x600000000000), each draw
 * checked with mincore, ten draws. GCC's TSan keeps its shadow and
 * metadata in that range and reserves the gaps around them, so nearly
 * every draw is taken, and its mmap refuses MAP_FIXED outside application
 * memory anyway. Measured on the plain example of Criterion issue #274
 * (one empty Test, gcc -fsanitize=thread): 36 runs in 40 abort with
 *   criterion: Could not initialize inheritable arena: Resource temporarily unavailable
 * (EAGAIN is what BoxFort leaves in errno before each mincore), and the
 * other 4 die in libcriterion with "ThreadSanitizer: SEGV on unknown
 * address 0x000000000080". Criterion has no option that avoids the arena
 * (no --no-fork; --jobs 1 and --debug still start the sandbox), and
 * neither TSAN_OPTIONS, a suppression file, setarch -R (29 and 11 in 40),
 * the link order nor -static-libtsan moves TSan's layout or BoxFort's
 * range.
 *
 * BoxFort draws with rand_r(3), through the PLT, so the test program's own
 * definition is the one it calls. For callers inside libcriterion this
 * rand_r keeps the C library's sequence but folds it into the slots of
 * [0x550000000000, 0x555500000000): TSan's "mid" application range on
 * x86-64 (where the kernel puts PIE executables), below 0x555555554000,
 * the lowest address the kernel gives a PIE executable, and far below the
 * shared libraries and mmap. Nothing else lives there, in the test
 * program or in the process each test re-executes (which maps the
 * arena at the same address). Every other caller gets the C library's
 * rand_r unchanged. With it the suites run on the real Criterion, each
 * test in a process of its own, and TSan (halt_on_error=1, set by ctest)
 * fails the test that races.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr, RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

/* BoxFort: slot address = 0x200000000000 + r * 16 MiB. */
#define BXF_BASE 0x200000000000ull
#define BXF_SLOT_SHIFT 24
#define SAFE_LO 0x550000000000ull
#define SAFE_HI 0x555500000000ull

int rand_r(unsigned int *seed);

static int from_criterion(const void *caller)
{
	Dl_info info;
	return dladdr(caller, &info) != 0 && info.dli_fname != NULL &&
	       strstr(info.dli_fname, "libcriterion") != NULL;
}

int rand_r(unsigned int *seed)
{
	static int (*libc_rand_r)(unsigned int *);
	int (*next)(unsigned int *) = __atomic_load_n(&libc_rand_r, __ATOMIC_ACQUIRE);
	if (next == NULL) {
		next = (int (*)(unsigned int *))dlsym(RTLD_NEXT, "rand_r");
		__atomic_store_n(&libc_rand_r, next, __ATOMIC_RELEASE);
	}
	int r = next(seed);
	if (!from_criterion(__builtin_return_address(0)))
		return r;
	const unsigned slots = (unsigned)((SAFE_HI - SAFE_LO) >> BXF_SLOT_SHIFT);
	return (int)(((SAFE_LO - BXF_BASE) >> BXF_SLOT_SHIFT) + (unsigned)r % slots);
}
