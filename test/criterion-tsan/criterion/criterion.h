/*
 * A stand-in for Criterion in the ThreadSanitizer build.
 *
 * Criterion cannot start under GCC's ThreadSanitizer: its sandbox maps an
 * "inheritable arena" at a random fixed address in a range that TSan
 * reserves for its shadow memory, and aborts ("Could not initialize
 * inheritable arena"; Criterion issue #274). The TSan build compiles the
 * same suites against this header and runner.c instead: each Test() runs
 * in a child process of its own, as under Criterion, and a data race
 * reported by TSan (exit status 66) fails the test.
 *
 * Only the part of Criterion's API that the suites use is here: Test() with
 * .init, .fini, .timeout, .disabled, .description, .signal and .exit_code;
 * the classic cr_assert_* and cr_expect_* checks (plain, eq, neq, lt, leq,
 * gt, geq, null, not_null, not, str_*, arr_eq, arr_neq, float_eq,
 * float_neq), cr_assert_fail, cr_expect_fail, cr_skip_test and cr_log_*.
 * A custom message must be a string literal format (with its arguments).
 * Fatal checks end the test's process at once, from any thread.
 */
#ifndef WEFT_CRITERION_TSAN_H
#define WEFT_CRITERION_TSAN_H

/* What Criterion's own header brings in, which suites may rely on. */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct crs_test {
	const char *suite;
	const char *name;
	void (*fn)(void);
	/* Criterion's options, set by designated initializers in Test(). */
	void (*init)(void);
	void (*fini)(void);
	double timeout;
	bool disabled;
	const char *description;
	int signal;
	int exit_code;
	struct crs_test *next;
};

void crs_register(struct crs_test *t);
void crs_fail(int fatal, const char *file, int line, const char *dflt, const char *fmt, ...);
void crs_skip(const char *fmt, ...) __attribute__((noreturn));
void crs_log(const char *level, const char *fmt, ...);

/* The parameters are capitalised: they must not replace the field names
 * of the designated initializers. */
#define Test(Suite, Name, ...)                                                 \
	static void crs_##Suite##__##Name##_fn(void);                          \
	static struct crs_test crs_##Suite##__##Name = {                       \
		.suite = #Suite, .name = #Name, .fn = crs_##Suite##__##Name##_fn, __VA_ARGS__}; \
	__attribute__((constructor)) static void crs_##Suite##__##Name##_reg(void) \
	{                                                                      \
		crs_register(&crs_##Suite##__##Name);                          \
	}                                                                      \
	static void crs_##Suite##__##Name##_fn(void)

#define CRS_CHECK_(fatal, cond, dflt, ...)                                     \
	do {                                                                   \
		if (!(cond))                                                   \
			crs_fail((fatal), __FILE__, __LINE__, (dflt), "" __VA_ARGS__); \
	} while (0)

#define CRS_CMP_(fatal, a, op, b, ...)                                         \
	CRS_CHECK_(fatal, (a)op(b), "The expression (" #a ") " #op " (" #b ") is false.", \
		   __VA_ARGS__)
#define CRS_STRCMP_(fatal, a, op, b, ...)                                      \
	CRS_CHECK_(fatal, strcmp((a), (b)) op 0,                               \
		   "The expression strcmp(" #a ", " #b ") " #op " 0 is false.", __VA_ARGS__)
#define CRS_FLOAT_EQ_(fatal, a, b, eps, ...)                                   \
	CRS_CHECK_(fatal, ((a) - (b) <= (eps)) && ((b) - (a) <= (eps)),        \
		   "The expression (" #a ") == (" #b ") (within " #eps ") is false.", __VA_ARGS__)
#define CRS_FLOAT_NEQ_(fatal, a, b, eps, ...)                                  \
	CRS_CHECK_(fatal, ((a) - (b) > (eps)) || ((b) - (a) > (eps)),          \
		   "The expression (" #a ") != (" #b ") (within " #eps ") is false.", __VA_ARGS__)

#define cr_assert(cond, ...) CRS_CHECK_(1, cond, "The expression " #cond " is false.", __VA_ARGS__)
#define cr_expect(cond, ...) CRS_CHECK_(0, cond, "The expression " #cond " is false.", __VA_ARGS__)
#define cr_assert_not(cond, ...) CRS_CHECK_(1, !(cond), "The expression !(" #cond ") is false.", __VA_ARGS__)
#define cr_expect_not(cond, ...) CRS_CHECK_(0, !(cond), "The expression !(" #cond ") is false.", __VA_ARGS__)

#define cr_assert_eq(a, b, ...) CRS_CMP_(1, a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) CRS_CMP_(1, a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) CRS_CMP_(1, a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) CRS_CMP_(1, a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) CRS_CMP_(1, a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) CRS_CMP_(1, a, >=, b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) CRS_CMP_(0, a, ==, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) CRS_CMP_(0, a, !=, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) CRS_CMP_(0, a, <, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) CRS_CMP_(0, a, <=, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) CRS_CMP_(0, a, >, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) CRS_CMP_(0, a, >=, b, __VA_ARGS__)

#define cr_assert_null(p, ...) CRS_CHECK_(1, (p) == NULL, #p " is not null.", __VA_ARGS__)
#define cr_assert_not_null(p, ...) CRS_CHECK_(1, (p) != NULL, #p " is null.", __VA_ARGS__)
#define cr_expect_null(p, ...) CRS_CHECK_(0, (p) == NULL, #p " is not null.", __VA_ARGS__)
#define cr_expect_not_null(p, ...) CRS_CHECK_(0, (p) != NULL, #p " is null.", __VA_ARGS__)

#define cr_assert_str_eq(a, b, ...) CRS_STRCMP_(1, a, ==, b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) CRS_STRCMP_(1, a, !=, b, __VA_ARGS__)
#define cr_assert_str_lt(a, b, ...) CRS_STRCMP_(1, a, <, b, __VA_ARGS__)
#define cr_assert_str_leq(a, b, ...) CRS_STRCMP_(1, a, <=, b, __VA_ARGS__)
#define cr_assert_str_gt(a, b, ...) CRS_STRCMP_(1, a, >, b, __VA_ARGS__)
#define cr_assert_str_geq(a, b, ...) CRS_STRCMP_(1, a, >=, b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) CRS_STRCMP_(0, a, ==, b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) CRS_STRCMP_(0, a, !=, b, __VA_ARGS__)
#define cr_expect_str_lt(a, b, ...) CRS_STRCMP_(0, a, <, b, __VA_ARGS__)
#define cr_expect_str_leq(a, b, ...) CRS_STRCMP_(0, a, <=, b, __VA_ARGS__)
#define cr_expect_str_gt(a, b, ...) CRS_STRCMP_(0, a, >, b, __VA_ARGS__)
#define cr_expect_str_geq(a, b, ...) CRS_STRCMP_(0, a, >=, b, __VA_ARGS__)
#define cr_assert_str_empty(s, ...) CRS_CHECK_(1, (s)[0] == '\0', #s " is not empty.", __VA_ARGS__)
#define cr_assert_str_not_empty(s, ...) CRS_CHECK_(1, (s)[0] != '\0', #s " is empty.", __VA_ARGS__)
#define cr_expect_str_empty(s, ...) CRS_CHECK_(0, (s)[0] == '\0', #s " is not empty.", __VA_ARGS__)
#define cr_expect_str_not_empty(s, ...) CRS_CHECK_(0, (s)[0] != '\0', #s " is empty.", __VA_ARGS__)

#define cr_assert_arr_eq(a, b, size, ...)                                      \
	CRS_CHECK_(1, memcmp((a), (b), (size)) == 0, #a " and " #b " differ.", __VA_ARGS__)
#define cr_assert_arr_neq(a, b, size, ...)                                     \
	CRS_CHECK_(1, memcmp((a), (b), (size)) != 0, #a " and " #b " are equal.", __VA_ARGS__)
#define cr_expect_arr_eq(a, b, size, ...)                                      \
	CRS_CHECK_(0, memcmp((a), (b), (size)) == 0, #a " and " #b " differ.", __VA_ARGS__)
#define cr_expect_arr_neq(a, b, size, ...)                                     \
	CRS_CHECK_(0, memcmp((a), (b), (size)) != 0, #a " and " #b " are equal.", __VA_ARGS__)

#define cr_assert_float_eq(a, b, eps, ...) CRS_FLOAT_EQ_(1, a, b, eps, __VA_ARGS__)
#define cr_assert_float_neq(a, b, eps, ...) CRS_FLOAT_NEQ_(1, a, b, eps, __VA_ARGS__)
#define cr_expect_float_eq(a, b, eps, ...) CRS_FLOAT_EQ_(0, a, b, eps, __VA_ARGS__)
#define cr_expect_float_neq(a, b, eps, ...) CRS_FLOAT_NEQ_(0, a, b, eps, __VA_ARGS__)

#define cr_assert_fail(...) crs_fail(1, __FILE__, __LINE__, "The conditions for this assertion were not met.", "" __VA_ARGS__)
#define cr_expect_fail(...) crs_fail(0, __FILE__, __LINE__, "The conditions for this expectation were not met.", "" __VA_ARGS__)

#define cr_skip_test(...) crs_skip("" __VA_ARGS__)

#define cr_log_info(...) crs_log("info", __VA_ARGS__)
#define cr_log_warn(...) crs_log("warn", __VA_ARGS__)
#define cr_log_error(...) crs_log("error", __VA_ARGS__)

#endif
