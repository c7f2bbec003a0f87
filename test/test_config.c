/*
 * The configuration: environment variables read in base 10, every bad
 * value (out of range, negative, not a number, too large) refused with
 * WF_EINVAL and one line on stderr naming the variable or the wf_config
 * field, its value and the accepted range; wf_run_ex handing over that
 * line or main's failure message; the debug notes.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"
#include "rt_check.h"
#include "weft.h"

static void *count_workers(void *arg) { return (void *)(uintptr_t)wf_runtime_workers(wf_runtime_current()); }

static void *stack_of_runtime(void *arg) { return (void *)(uintptr_t)wf_runtime_current()->stack_size; }

static void *fail_main(void *arg) { return wf_fail(WF_EPIPE, "main gave up"); }

static void assert_has(const char *text, const char *part)
{
	cr_assert(strstr(text, part) != NULL, "\"%s\" not in:\n%s", part, text);
}

/* Runs wf_run_ex with cfg (NULL: the environment's) and checks that it
 * fails with WF_EINVAL and one line on stderr, which errmsg repeats and
 * which contains each of the parts. */
static void expect_refused(const wf_config *cfg, const char *const *parts)
{
	stderr_capture cap;
	stderr_capture_begin(&cap);
	char *msg = NULL;
	void *res = (void *)1;
	int rc = wf_run_ex(cfg, count_workers, NULL, &res, &msg);
	char *err = stderr_capture_end(&cap);
	cr_assert_eq(rc, WF_EINVAL, "wf_run_ex: %s; stderr:\n%s", wf_err_name(rc), err);
	cr_assert_null(res);
	cr_assert_not_null(msg, "no message handed over");
	for (const char *const *p = parts; *p != NULL; p++) {
		assert_has(err, *p);
		assert_has(msg, *p);
	}
	cr_assert(strncmp(err, "weft: ", 6) == 0, "stderr: %s", err);
	cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "not one line: %s", err);
	free(msg);
	free(err);

	/* wf_runtime_start says the same. */
	stderr_capture_begin(&cap);
	wf_runtime *rt = (wf_runtime *)1;
	rc = wf_runtime_start(cfg, &rt);
	err = stderr_capture_end(&cap);
	cr_assert_eq(rc, WF_EINVAL);
	cr_assert_null(rt);
	for (const char *const *p = parts; *p != NULL; p++)
		assert_has(err, *p);
	free(err);
}

#define REFUSED(cfg, ...)                                                      \
	do {                                                                   \
		const char *const parts_[] = {__VA_ARGS__, NULL};              \
		expect_refused((cfg), parts_);                                 \
	} while (0)

static void refused_env(const char *name, const char *value, const char *problem,
			const char *range)
{
	setenv(name, value, 1);
	char want[128];
	snprintf(want, sizeof(want), "%s=%s %s", name, value, problem);
	REFUSED(NULL, want, range);
	/* The same through a config the program filled with wf_config_init. */
	wf_config cfg;
	wf_config_init(&cfg);
	REFUSED(&cfg, want, range);
	unsetenv(name);
}

Test(config, environment_is_read_in_base_10)
{
	setenv("WEFT_WORKERS", "010", 1);
	setenv("WEFT_STACK_KIB", "0100", 1);
	wf_config cfg;
	wf_config_init(&cfg);
	cr_assert_eq(cfg.workers, 10);
	cr_assert_eq(cfg.stack_size, 100 * 1024);
	void *res = NULL;
	cr_assert_eq(wf_run(NULL, count_workers, NULL, &res), 0);
	cr_assert_eq((uintptr_t)res, 10);
	cr_assert_eq(wf_run(NULL, stack_of_runtime, NULL, &res), 0);
	cr_assert_eq((uintptr_t)res, 100 * 1024);
	check_no_leaks();
}

Test(config, limits_are_accepted)
{
	setenv("WEFT_WORKERS", "0", 1);
	setenv("WEFT_STACK_KIB", "16", 1);
	setenv("WEFT_DEBUG", "1", 1);
	wf_config cfg;
	wf_config_init(&cfg);
	cr_assert_eq(cfg.workers, 0);
	cr_assert_eq(cfg.stack_size, WF_STACK_SIZE_MIN);
	cr_assert_eq(cfg.debug, WF_DEBUG_CHECKS);
	cfg.workers = 2;
	void *res = NULL;
	cr_assert_eq(wf_run(&cfg, count_workers, NULL, &res), 0);
	cr_assert_eq((uintptr_t)res, 2);
	check_no_leaks();
}

Test(config, bad_environment_is_named_with_its_range)
{
	const char *workers = "0 to 4096";
	refused_env("WEFT_WORKERS", "5000", "is out of range", workers);
	refused_env("WEFT_WORKERS", "4097", "is out of range", workers);
	refused_env("WEFT_WORKERS", "-1", "is negative", workers);
	refused_env("WEFT_WORKERS", "abc", "is not a base-10 number", workers);
	refused_env("WEFT_WORKERS", "3x", "is not a base-10 number", workers);
	refused_env("WEFT_WORKERS", "0x10", "is not a base-10 number", workers);
	refused_env("WEFT_WORKERS", " 3", "is not a base-10 number", workers);
	refused_env("WEFT_WORKERS", "+3", "is not a base-10 number", workers);
	refused_env("WEFT_WORKERS", "99999999999999999999999", "is too large", workers);
	refused_env("WEFT_WORKERS", "4294967298", "is out of range", workers);

	const char *stack = "16 to 4194304";
	refused_env("WEFT_STACK_KIB", "8", "is out of range", stack);
	refused_env("WEFT_STACK_KIB", "15", "is out of range", stack);
	refused_env("WEFT_STACK_KIB", "4194305", "is out of range", stack);
	refused_env("WEFT_STACK_KIB", "-64", "is negative", stack);
	refused_env("WEFT_STACK_KIB", "64k", "is not a base-10 number", stack);
	refused_env("WEFT_STACK_KIB", "18446744073709551616", "is too large", stack);

	/* The flag that was WF_DEBUG_TRACE is refused like any unknown one. */
	const char *debug = "0, 1, 4 or 5";
	refused_env("WEFT_DEBUG", "2", "is out of range", debug);
	refused_env("WEFT_DEBUG", "3", "is out of range", debug);
	refused_env("WEFT_DEBUG", "yes", "is not a base-10 number", debug);
	refused_env("WEFT_SLOW_TASK_MS", "3600001", "is out of range", "0 (the default: 100) to 3600000");
	refused_env("WEFT_SLOW_TASK_MS", "soon", "is not a base-10 number", "0 (the default: 100) to 3600000");
	check_no_leaks();
}

Test(config, program_settings_win_over_a_bad_environment)
{
	setenv("WEFT_WORKERS", "lots", 1);
	setenv("WEFT_STACK_KIB", "1", 1);
	setenv("WEFT_DEBUG", "-1", 1);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.stack_size = 0;
	cfg.debug = 0;
	stderr_capture cap;
	stderr_capture_begin(&cap);
	void *res = NULL;
	int rc = wf_run(&cfg, count_workers, NULL, &res);
	char *err = stderr_capture_end(&cap);
	cr_assert_eq(rc, 0, "%s; stderr:\n%s", wf_err_name(rc), err);
	cr_assert_eq((uintptr_t)res, 2);
	cr_assert_str_empty(err);
	free(err);
	check_no_leaks();
}

Test(config, bad_fields_are_named_with_their_range)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 5000;
	REFUSED(&cfg, "wf_config.workers is 5000", "0 to 4096");
	cfg.workers = UINT_MAX;
	REFUSED(&cfg, "wf_config.workers is 4294967295", "0 to 4096");

	wf_config_init(&cfg);
	cfg.stack_size = 100;
	REFUSED(&cfg, "wf_config.stack_size is 100 bytes", "16384 to 4294967296");
	cfg.stack_size = (size_t)WF_STACK_SIZE_MAX + 1;
	REFUSED(&cfg, "wf_config.stack_size is 4294967297 bytes", "16384 to 4294967296");

	wf_config_init(&cfg);
	cfg.debug = WF_DEBUG_CHECKS | (1u << 1);
	REFUSED(&cfg, "wf_config.debug is 0x3, unknown flags 0x2", "0, 1, 4 or 5");

	wf_config_init(&cfg);
	cfg.reserved[3] = 1;
	REFUSED(&cfg, "wf_config.reserved is not zero");

	/* A program's bad field is the field's fault, even with the
	 * environment set (to something valid). */
	setenv("WEFT_WORKERS", "3", 1);
	wf_config_init(&cfg);
	cfg.workers = 4097;
	REFUSED(&cfg, "wf_config.workers is 4097");
	unsetenv("WEFT_WORKERS");
	check_no_leaks();
}

Test(config, run_ex_hands_over_mains_failure_message)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	char *msg = (char *)1;
	void *res = (void *)1;
	cr_assert_eq(wf_run_ex(&cfg, fail_main, NULL, &res, &msg), WF_EPIPE);
	cr_assert_null(res);
	cr_assert_str_eq(msg, "main gave up");
	free(msg);

	msg = (char *)1;
	cr_assert_eq(wf_run_ex(&cfg, count_workers, NULL, &res, &msg), 0);
	cr_assert_null(msg);
	cr_assert_eq((uintptr_t)res, 2);

	/* errmsg and result may be NULL. */
	cr_assert_eq(wf_run_ex(&cfg, fail_main, NULL, NULL, NULL), WF_EPIPE);
	msg = (char *)1;
	cr_assert_eq(wf_run_ex(&cfg, NULL, NULL, NULL, &msg), WF_EINVAL);
	cr_assert_null(msg);
	check_no_leaks();
}

/* ---- debug notes ---------------------------------------------------------------- */

static void *note_in_task(void *arg)
{
	wf__debug_note(wf_runtime_current(), "note %d from a task", 7);
	return NULL;
}

static char *notes_of_run(unsigned debug)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 1;
	cfg.debug = debug;
	stderr_capture cap;
	stderr_capture_begin(&cap);
	int rc = wf_run(&cfg, note_in_task, NULL, NULL);
	char *err = stderr_capture_end(&cap);
	cr_assert_eq(rc, 0);
	return err;
}

Test(config, debug_notes_only_in_debug_mode)
{
	char *err = notes_of_run(WF_DEBUG_CHECKS);
	cr_assert_str_eq(err, "weft: note 7 from a task\n");
	free(err);
	err = notes_of_run(0);
	cr_assert_str_empty(err);
	free(err);

	/* From a plain thread, which knows no runtime: on while a runtime in
	 * debug mode lives, or with WEFT_DEBUG=1. */
	stderr_capture cap;
	stderr_capture_begin(&cap);
	wf__debug_note(NULL, "off");
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 1;
	cfg.debug = WF_DEBUG_CHECKS;
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(&cfg, &rt), 0);
	wf__debug_note(NULL, "on while it lives");
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	wf__debug_note(NULL, "off again");
	setenv("WEFT_DEBUG", "1", 1);
	wf__debug_note(NULL, "on by the environment");
	err = stderr_capture_end(&cap);
	cr_assert_str_eq(err, "weft: on while it lives\nweft: on by the environment\n");
	free(err);
	check_no_leaks();
}

/* wf_spawn from a plain thread returns NULL; in debug mode it says why. */
static void *never_runs(void *arg)
{
	return arg;
}

Test(config, spawn_from_a_plain_thread_says_why_in_debug_mode)
{
	stderr_capture cap;
	stderr_capture_begin(&cap);
	unsetenv("WEFT_DEBUG");
	cr_assert_null(wf_spawn(never_runs, NULL));
	setenv("WEFT_DEBUG", "1", 1);
	cr_assert_null(wf_spawn(never_runs, NULL));
	wf_task *t = (wf_task *)1;
	cr_assert_eq(wf_spawn_ex(never_runs, NULL, NULL, &t), WF_ENOTTASK);
	cr_assert_null(t);
	char *err = stderr_capture_end(&cap);
	unsetenv("WEFT_DEBUG");
	/* Once: only the call made in debug mode. */
	const char *first = strstr(err, "wf_runtime_submit");
	cr_assert_not_null(first, "no reason on stderr: '%s'", err);
	cr_assert_null(strstr(first + 1, "wf_runtime_submit"), "said twice: '%s'", err);
	free(err);
}
