/*
 * page_touch: what the machine charges for the first user write to a fresh
 * page, the floor under idle_tasks.
 */
#include <stdint.h>
#include <sys/mman.h>

#include "bench.h"

/* ------------------------------------------------------------------------
 * page_touch: N pages of a fresh anonymous mapping, already populated by
 * the kernel (MADV_POPULATE_WRITE, as weft populates the top page of every
 * new stack), get their first write from user code: the timed part, one op
 * per page. Extra fields: populate_ns_per_page (the kernel's part, one
 * system call for the lot) and fault_ns_per_page (the first write to pages
 * nobody populated: the page fault, the kernel's part, and the rest).
 *
 * A suspended stackful task needs one page of its own (its stack's top
 * page), so idle_tasks cannot run faster than about
 * 1e9 / (kib_per_task / 4 * ns_per_page) tasks per second. On bare metal
 * the first write to a populated page costs a TLB miss; on a virtual
 * machine with shadow page tables it is a trap to the hypervisor, which
 * fills in its own entry for the page (microseconds, and on some of these
 * machines it is most of idle_tasks). Single-threaded by nature: the
 * runtime's workers are not used.
 * ---------------------------------------------------------------------- */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum { TOUCH_PAGE = 4096 };

static char *fresh_pages(uint64_t n)
{
	char *m = mmap(NULL, n * TOUCH_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (m == MAP_FAILED)
		return NULL;
#if defined(MADV_NOHUGEPAGE)
	/* Each page on its own, as stacks are (a huge page is one fault). */
	(void)madvise(m, n * TOUCH_PAGE, MADV_NOHUGEPAGE);
#endif
	return m;
}

static uint64_t touch_all(char *m, uint64_t n)
{
	uint64_t sum = 0;
	for (uint64_t i = 0; i < n; i++) {
		volatile char *p = m + i * TOUCH_PAGE;
		*p = 1;
		sum += (uint64_t)*p;
	}
	return sum;
}

static int run_page_touch(wf_bench_run *run)
{
	uint64_t n = run->n;
	char *populated = fresh_pages(n);
	char *faulted = fresh_pages(n);
	if (populated == NULL || faulted == NULL) {
		if (populated != NULL)
			munmap(populated, n * TOUCH_PAGE);
		if (faulted != NULL)
			munmap(faulted, n * TOUCH_PAGE);
		return WF_ENOMEM;
	}
	uint64_t p0 = wf_bench_now_ns();
	int populate_rc = madvise(populated, n * TOUCH_PAGE, MADV_POPULATE_WRITE);
	uint64_t p1 = wf_bench_now_ns();
	uint64_t f0 = wf_bench_now_ns();
	uint64_t faulted_sum = touch_all(faulted, n);
	uint64_t f1 = wf_bench_now_ns();

	wf_bench_clock_start(run);
	run->check = touch_all(populated, n);
	wf_bench_clock_stop(run);

	munmap(populated, n * TOUCH_PAGE);
	munmap(faulted, n * TOUCH_PAGE);
	if (faulted_sum != n)
		run->check = 0; /* the line then fails its check */
	double per = n ? 1.0 / (double)n : 0.0;
	double touch_ns = (double)(run->t1_ns - run->t0_ns) * per;
	/* A kernel without MADV_POPULATE_WRITE (before 5.14): the timed
	 * writes faulted too, and populate_ns_per_page says so (-1). */
	wf_bench_extra(run, " ns_per_page=%.0f populate_ns_per_page=%.0f fault_ns_per_page=%.0f",
		       touch_ns, populate_rc == 0 ? (double)(p1 - p0) * per : -1.0,
		       (double)(f1 - f0) * per);
	return 0;
}

WF_BENCH_DEFINE(page_touch, .name = "page_touch", .default_n = 20000, .fn = run_page_touch,
		.threads = 1)
