/*
 * The PostgreSQL adapter (weft/pg.h) against a real server.
 *
 * The runner process makes one server for the whole suite (Criterion's
 * PRE_ALL hook, which runs before any test's process starts): initdb into
 * a temporary directory with the fast options (trust authentication, no
 * fsync), then pg_ctl start on a free loopback port, with its Unix socket
 * in that directory. The tests, each in a process of its own, find it
 * through the environment (WEFT_PG_TEST_*); POST_ALL stops it (pg_ctl stop
 * -m immediate) and removes the directory. initdb and postgres refuse to
 * run as root: as root, they run as the user "postgres" (WEFT_PG_TEST_USER
 * names another), the directory being given to that user. The binaries
 * come from WEFT_PG_BINDIR, /usr/lib/postgresql/<newest>/bin or PATH.
 * Without a server (no binaries, no such user, initdb failing) every test
 * is skipped with the reason. WEFT_PG_TEST_KEEP=1 keeps the directory
 * (the server's log) for a look afterwards.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include "test/rt_check.h"
#include "weft/pg.h"

#define T_MS 10000 /* no single step of a test should take this long */

/* ---- the server ----------------------------------------------------------- */

static char srv_skip[2 * PATH_MAX + 256];

/* Runs argv (argv[0] a path) as user (NULL: as we are), with stdout and
 * stderr appended to log; waits at most limit_s. The exit status, or -1. */
static int run_as(const char *user, char *const argv[], const char *log, int limit_s)
{
	struct passwd *pw = user != NULL ? getpwnam(user) : NULL;
	if (user != NULL && pw == NULL)
		return -1;
	uid_t uid = pw != NULL ? pw->pw_uid : 0;
	gid_t gid = pw != NULL ? pw->pw_gid : 0;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* The user first: the log is the user's file (the server
		 * appends to it too). */
		if (pw != NULL && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
			_exit(126);
		int fd = open(log != NULL ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0) {
			dup2(nul, 0);
			close(nul);
		}
		if (pw != NULL) {
			setenv("HOME", pw->pw_dir, 1);
			setenv("USER", pw->pw_name, 1);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	for (int i = 0; i < limit_s * 20; i++) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (r < 0)
			return -1;
		usleep(50 * 1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

static bool find_bindir(char *out, size_t cap)
{
	const char *env = getenv("WEFT_PG_BINDIR");
	if (env != NULL && env[0] != '\0') {
		snprintf(out, cap, "%s", env);
		return true;
	}
	glob_t g;
	if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
		/* The last in sorted order: the newest for one-digit-wide
		 * versions; good enough for a test. */
		snprintf(out, cap, "%s", g.gl_pathv[g.gl_pathc - 1]);
		globfree(&g);
		*strrchr(out, '/') = '\0';
		return true;
	}
	const char *path = getenv("PATH");
	if (path == NULL)
		return false;
	char *copy = strdup(path), *p = copy;
	for (char *d; (d = strsep(&p, ":")) != NULL;) {
		char f[PATH_MAX];
		snprintf(f, sizeof(f), "%s/initdb", d);
		if (access(f, X_OK) == 0) {
			snprintf(out, cap, "%s", d);
			free(copy);
			return true;
		}
	}
	free(copy);
	return false;
}

static unsigned free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	unsigned port = 0;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static const char *srv_env(const char *name)
{
	const char *v = getenv(name);
	return v != NULL ? v : "";
}

/* pg_ctl start|stop on the suite's server (as the suite's user). */
static int pg_ctl(const char *action)
{
	char prog[PATH_MAX], data[PATH_MAX], log[PATH_MAX];
	snprintf(prog, sizeof(prog), "%s/pg_ctl", srv_env("WEFT_PG_TEST_BIN"));
	snprintf(data, sizeof(data), "%s/data", srv_env("WEFT_PG_TEST_DIR"));
	snprintf(log, sizeof(log), "%s/server.log", srv_env("WEFT_PG_TEST_DIR"));
	const char *user = getenv("WEFT_PG_TEST_RUNAS");
	if (user != NULL && user[0] == '\0')
		user = NULL;
	if (strcmp(action, "start") == 0) {
		char *argv[] = {prog, "-D", data, "-l", log, "-w", "-t", "30", "start", NULL};
		return run_as(user, argv, log, 40);
	}
	char *argv[] = {prog, "-D", data, "-m", "immediate", "-w", "stop", NULL};
	return run_as(user, argv, log, 40);
}

static void server_up(void)
{
	char bindir[PATH_MAX];
	if (!find_bindir(bindir, sizeof(bindir))) {
		snprintf(srv_skip, sizeof(srv_skip),
			 "no PostgreSQL server binaries (initdb; Debian: postgresql)");
		return;
	}
	const char *user = NULL;
	if (geteuid() == 0) {
		user = getenv("WEFT_PG_TEST_USER");
		if (user == NULL || user[0] == '\0')
			user = "postgres";
		if (getpwnam(user) == NULL) {
			snprintf(srv_skip, sizeof(srv_skip),
				 "running as root and there is no user \"%s\" to run the server "
				 "as (WEFT_PG_TEST_USER names one)",
				 user);
			return;
		}
	}
	char dir[] = "/tmp/weft-pg-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		snprintf(srv_skip, sizeof(srv_skip), "mkdtemp: %s", strerror(errno));
		return;
	}
	struct passwd *pw = user != NULL ? getpwnam(user) : NULL;
	if (pw != NULL && chown(dir, pw->pw_uid, pw->pw_gid) != 0) {
		snprintf(srv_skip, sizeof(srv_skip), "chown %s: %s", dir, strerror(errno));
		return;
	}
	chmod(dir, 0700);
	setenv("WEFT_PG_TEST_DIR", dir, 1);
	setenv("WEFT_PG_TEST_BIN", bindir, 1);
	setenv("WEFT_PG_TEST_RUNAS", user != NULL ? user : "", 1);

	char prog[PATH_MAX + 16], data[PATH_MAX], log[PATH_MAX];
	snprintf(prog, sizeof(prog), "%s/initdb", bindir);
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(log, sizeof(log), "%s/initdb.log", dir);
	char *initdb[] = {prog,	   "-D",     data,	  "-U",		    "weft",
			  "-A",	   "trust",  "-E",	  "UTF8",	    "--locale=C",
			  "-N",	   NULL};
	int rc = run_as(user, initdb, log, 120);
	if (rc != 0) {
		snprintf(srv_skip, sizeof(srv_skip), "initdb failed (exit %d): see %s", rc, log);
		return;
	}
	unsigned port = free_port();
	char conf[PATH_MAX + 32];
	snprintf(conf, sizeof(conf), "%s/postgresql.conf", data);
	FILE *f = fopen(conf, "a");
	if (f == NULL) {
		snprintf(srv_skip, sizeof(srv_skip), "%s: %s", conf, strerror(errno));
		return;
	}
	fprintf(f,
		"\n# weft's test server\nport = %u\nlisten_addresses = '127.0.0.1'\n"
		"unix_socket_directories = '%s'\nfsync = off\nsynchronous_commit = off\n"
		"full_page_writes = off\nmax_connections = 60\nshared_buffers = 16MB\n",
		port, dir);
	fclose(f);
	if (pg_ctl("start") != 0) {
		snprintf(srv_skip, sizeof(srv_skip), "pg_ctl start failed: see %s/server.log", dir);
		return;
	}
	char ci[256];
	snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%u user=weft dbname=postgres", port);
	setenv("WEFT_PG_TEST_CONNINFO", ci, 1);
	char sci[PATH_MAX + 64];
	snprintf(sci, sizeof(sci), "host=%s port=%u user=weft dbname=postgres", dir, port);
	setenv("WEFT_PG_TEST_SOCKINFO", sci, 1);
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%u", port);
	setenv("WEFT_PG_TEST_PORT", portstr, 1);
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	(void)set;
	server_up();
	if (srv_skip[0] != '\0')
		setenv("WEFT_PG_TEST_SKIP", srv_skip, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	const char *dir = getenv("WEFT_PG_TEST_DIR");
	if (dir == NULL || dir[0] == '\0')
		return;
	pg_ctl("stop");
	const char *keep = getenv("WEFT_PG_TEST_KEEP");
	if (keep != NULL && keep[0] == '1')
		return;
	char *rm[] = {"/bin/rm", "-rf", (char *)dir, NULL};
	run_as(NULL, rm, NULL, 30);
}

/* Every test starts here: skips without a server. */
static const char *conninfo(void)
{
	const char *skip = getenv("WEFT_PG_TEST_SKIP");
	if (skip != NULL && skip[0] != '\0')
		cr_skip_test("no PostgreSQL server for the test: %s", skip);
	const char *ci = getenv("WEFT_PG_TEST_CONNINFO");
	if (ci == NULL)
		cr_skip_test("no PostgreSQL server for the test (the suite's set-up did not run)");
	return ci;
}

/* ---- helpers in tasks ----------------------------------------------------- */

static const char *g_ci;

static wf_pg *connect_ok(const char *ci)
{
	wf_pg *c = NULL;
	char *msg = NULL;
	int rc = wf_pg_connect(ci, T_MS, &c, &msg);
	if (!CHECK_RC(rc, 0))
		fprintf(stderr, "connect %s: %s\n", ci, msg != NULL ? msg : "");
	free(msg);
	return c;
}

/* Runs sql (no parameters) and returns the first field of its first row
 * as a number, or LLONG_MIN. */
static long long scalar(wf_pg *c, const char *sql)
{
	PGresult *r = NULL;
	int rc = wf_pg_query(c, sql, 0, NULL, T_MS, &r);
	if (!CHECK_RC(rc, 0)) {
		fprintf(stderr, "%s: %s\n", sql, wf_pg_errmsg(c));
		return LLONG_MIN;
	}
	long long v = LLONG_MIN;
	if (CHECK(PQntuples(r) >= 1 && PQnfields(r) >= 1))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

/* Runs a statement that returns no rows. */
static void exec_ok(wf_pg *c, const char *sql)
{
	PGresult *r = NULL;
	if (CHECK_RC(wf_pg_query(c, sql, 0, NULL, T_MS, &r), 0))
		CHECK_EQ(PQresultStatus(r), PGRES_COMMAND_OK);
	else
		fprintf(stderr, "%s: %s\n", sql, wf_pg_errmsg(c));
	PQclear(r);
}

static uint64_t ms_since(uint64_t t0) { return (mono_ns() - t0) / 1000000u; }

/* ---- statements with parameters ------------------------------------------- */

static void *select_params_main(void *arg)
{
	(void)arg;
	wf_pg *c = connect_ok(g_ci);
	if (c == NULL)
		return NULL;
	const char *params[] = {"2", "40", "h\xc3\xa9llo 'quoted'", NULL};
	PGresult *r = NULL;
	int rc = wf_pg_query(c,
			     "SELECT $1::int + $2::int AS sum, $3::text AS t, $4::text IS NULL AS n, "
			     "length($3::text) AS len",
			     4, params, T_MS, &r);
	if (CHECK_RC(rc, 0)) {
		CHECK_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
		CHECK_EQ(PQntuples(r), 1);
		CHECK_EQ(PQnfields(r), 4);
		CHECK(strcmp(PQfname(r, 0), "sum") == 0);
		CHECK(strcmp(PQgetvalue(r, 0, 0), "42") == 0);
		CHECK(strcmp(PQgetvalue(r, 0, 1), params[2]) == 0);
		CHECK(strcmp(PQgetvalue(r, 0, 2), "t") == 0);
		CHECK(strcmp(PQgetvalue(r, 0, 3), "14") == 0);
		CHECK_EQ(strlen(wf_pg_errmsg(c)), 0);
		PQclear(r);
	}

	/* Several rows, a command, NULL in and out. */
	exec_ok(c, "CREATE TEMP TABLE t (k int PRIMARY KEY, v text)");
	for (int i = 0; i < 5; i++) {
		char k[16];
		snprintf(k, sizeof(k), "%d", i);
		const char *p[] = {k, i == 3 ? NULL : "x"};
		r = NULL;
		rc = wf_pg_query(c, "INSERT INTO t VALUES ($1, $2)", 2, p, T_MS, &r);
		if (CHECK_RC(rc, 0)) {
			CHECK_EQ(PQresultStatus(r), PGRES_COMMAND_OK);
			CHECK(strcmp(PQcmdTuples(r), "1") == 0);
			PQclear(r);
		}
	}
	r = NULL;
	rc = wf_pg_query(c, "SELECT k, v FROM t ORDER BY k", 0, NULL, T_MS, &r);
	if (CHECK_RC(rc, 0)) {
		CHECK_EQ(PQntuples(r), 5);
		CHECK(PQgetisnull(r, 3, 1));
		CHECK(!PQgetisnull(r, 4, 1));
		CHECK(strcmp(PQgetvalue(r, 4, 0), "4") == 0);
		PQclear(r);
	}

	/* Several statements without parameters: the last one's result. */
	CHECK_EQ(scalar(c, "SELECT 1; SELECT 2"), 2);

	/* A binary result through wf_pg_query_params. */
	const char *one[] = {"7"};
	r = NULL;
	rc = wf_pg_query_params(c, "SELECT $1::int4 * 6", 1, NULL, one, NULL, NULL, 1, T_MS, &r);
	if (CHECK_RC(rc, 0)) {
		CHECK_EQ(PQgetlength(r, 0, 0), 4);
		const unsigned char *b = (const unsigned char *)PQgetvalue(r, 0, 0);
		CHECK_EQ(((uint32_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]), 42);
		PQclear(r);
	}

	/* The server's errors: WF_EIO with its message and SQLSTATE; the
	 * connection goes on. */
	r = (PGresult *)1;
	rc = wf_pg_query(c, "SELECT 1/0", 0, NULL, T_MS, &r);
	CHECK_RC(rc, WF_EIO);
	CHECK(r == NULL);
	CHECK(strstr(wf_pg_errmsg(c), "division by zero") != NULL);
	CHECK(strcmp(wf_pg_sqlstate(c), "22012") == 0);
	CHECK(!wf_pg_broken(c));
	rc = wf_pg_query(c, "SELEC nonsense", 0, NULL, T_MS, &r);
	CHECK_RC(rc, WF_EIO);
	CHECK(strcmp(wf_pg_sqlstate(c), "42601") == 0);
	const char *dup[] = {"1", "y"};
	rc = wf_pg_query(c, "INSERT INTO t VALUES ($1, $2)", 2, dup, T_MS, &r);
	CHECK_RC(rc, WF_EIO);
	CHECK(strcmp(wf_pg_sqlstate(c), "23505") == 0);
	CHECK_EQ(scalar(c, "SELECT count(*) FROM t"), 5);
	CHECK_EQ(strlen(wf_pg_sqlstate(c)), 0);
	CHECK_RC(wf_pg_close(c), 0);

	/* The Unix socket, and a host name resolved through weft. */
	c = connect_ok(getenv("WEFT_PG_TEST_SOCKINFO"));
	if (c != NULL) {
		CHECK_EQ(scalar(c, "SELECT 5"), 5);
		CHECK_RC(wf_pg_close(c), 0);
	}
	char ci[256];
	snprintf(ci, sizeof(ci), "postgresql://weft@localhost:%s/postgres",
		 getenv("WEFT_PG_TEST_PORT"));
	c = connect_ok(ci);
	if (c != NULL) {
		CHECK_EQ(scalar(c, "SELECT 6"), 6);
		CHECK_RC(wf_pg_close(c), 0);
	}

	/* Connections that fail, each with a message. */
	char *msg = NULL;
	wf_pg *bad = (wf_pg *)1;
	rc = wf_pg_connect("host=no-such-host.invalid port=5432", T_MS, &bad, &msg);
	CHECK(rc == WF_ENONAME || rc == WF_EAGAIN);
	CHECK(bad == NULL);
	CHECK(msg != NULL && strstr(msg, "no-such-host.invalid") != NULL);
	free(msg);
	snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%u user=weft", free_port());
	rc = wf_pg_connect(ci, T_MS, &bad, &msg);
	CHECK_RC(rc, WF_EIO);
	CHECK(msg != NULL && msg[0] != '\0');
	free(msg);
	snprintf(ci, sizeof(ci), "%s dbname=no_such_db", g_ci);
	rc = wf_pg_connect(ci, T_MS, &bad, &msg);
	CHECK_RC(rc, WF_EIO);
	CHECK(msg != NULL && strstr(msg, "no_such_db") != NULL);
	free(msg);
	rc = wf_pg_connect("this is = not a conninfo '", T_MS, &bad, &msg);
	CHECK_RC(rc, WF_EINVAL);
	CHECK(msg != NULL);
	free(msg);
	return NULL;
}

Test(pg, select_with_parameters, .timeout = 60)
{
	g_ci = conninfo();
	run_weft(2, select_params_main, NULL);
}

/* ---- pipelines --------------------------------------------------------- */

#define PIPE_N 500

static void *pipeline_main(void *arg)
{
	(void)arg;
	wf_pg *c = connect_ok(g_ci);
	if (c == NULL)
		return NULL;
	static char nums[PIPE_N][16];
	static const char *params[PIPE_N][1];
	wf_pg_stmt st[PIPE_N];
	PGresult *res[PIPE_N];
	for (int i = 0; i < PIPE_N; i++) {
		snprintf(nums[i], sizeof(nums[i]), "%d", i);
		params[i][0] = nums[i];
		st[i] = (wf_pg_stmt){.sql = "SELECT $1::int * 2, repeat('x', 200)", .nparams = 1,
				     .params = params[i]};
	}
	int rc = wf_pg_pipeline(c, st, PIPE_N, T_MS, res);
	if (CHECK_RC(rc, 0)) {
		for (int i = 0; i < PIPE_N; i++) {
			CHECK_EQ(strtol(PQgetvalue(res[i], 0, 0), NULL, 10), 2 * i);
			PQclear(res[i]);
		}
	}

	/* An error in the middle: one implicit transaction, nothing kept. */
	exec_ok(c, "CREATE TEMP TABLE p (k int)");
	wf_pg_stmt bad[4] = {
		{.sql = "INSERT INTO p VALUES (1)"},
		{.sql = "INSERT INTO p VALUES (2)"},
		{.sql = "SELECT 1/0"},
		{.sql = "INSERT INTO p VALUES (3)"},
	};
	rc = wf_pg_pipeline(c, bad, 4, T_MS, res);
	CHECK_RC(rc, WF_EIO);
	for (int i = 0; i < 4; i++)
		CHECK(res[i] == NULL);
	CHECK(strncmp(wf_pg_errmsg(c), "statement 2: ", 13) == 0);
	CHECK(strcmp(wf_pg_sqlstate(c), "22012") == 0);
	CHECK(!wf_pg_broken(c));
	CHECK_EQ(scalar(c, "SELECT count(*) FROM p"), 0);

	/* A statement libpq refuses (too many parameters) after one it took. */
	wf_pg_stmt refused[2] = {
		{.sql = "SELECT 1"},
		{.sql = "SELECT 2", .nparams = 70000, .params = params[0]},
	};
	rc = wf_pg_pipeline(c, refused, 2, T_MS, res);
	CHECK_RC(rc, WF_EINVAL);
	CHECK(!wf_pg_broken(c));
	CHECK_EQ(scalar(c, "SELECT 3"), 3);
	CHECK_RC(wf_pg_close(c), 0);
	return NULL;
}

Test(pg, pipeline, .timeout = 60)
{
	g_ci = conninfo();
	run_weft(2, pipeline_main, NULL);
}

/* ---- many tasks, a pool of connections ------------------------------------ */

/* 1,000 tasks share POOL connections through a queue: a PostgreSQL
 * connection is a server process, so one per task would need 1,000 of
 * them (max_connections is 100 by default, 60 here), while a handful
 * keeps two workers busy. */
#define POOL 16
#if defined(WF_TSAN)
/* Under TSan every task switch costs milliseconds (its fiber calls): a
 * quarter of the tasks still make every query wait for a connection. */
#define TASKS 250
#else
#define TASKS 1000
#endif

typedef struct pool_ctx {
	wf_queue *idle;
	int done;
} pool_ctx;

static void *one_query(void *arg)
{
	pool_ctx *p = arg;
	void *item = NULL;
	/* Each waits for all the queries queued before it: no short bound. */
	if (!CHECK_RC(wf_queue_get(p->idle, &item, 60000), 0))
		return NULL;
	wf_pg *c = item;
	char k[24];
	long n = (long)(uintptr_t)wf_current() % 100000;
	snprintf(k, sizeof(k), "%ld", n);
	const char *params[] = {k};
	PGresult *r = NULL;
	int rc = wf_pg_query(c, "SELECT $1::bigint + 1", 1, params, T_MS, &r);
	if (CHECK_RC(rc, 0)) {
		CHECK_EQ(strtol(PQgetvalue(r, 0, 0), NULL, 10), n + 1);
		PQclear(r);
		__atomic_fetch_add(&p->done, 1, __ATOMIC_RELAXED);
	}
	CHECK_RC(wf_queue_put_nowait(p->idle, c), 0);
	return NULL;
}

static void *concurrent_main(void *arg)
{
	(void)arg;
	pool_ctx p = {0};
	wf_queue_opts qo = WF_QUEUE_OPTS_INIT;
	if (!CHECK_RC(wf_queue_new(&qo, &p.idle), 0))
		return NULL;
	wf_pg *conns[POOL] = {0};
	for (int i = 0; i < POOL; i++) {
		conns[i] = connect_ok(g_ci);
		if (conns[i] == NULL)
			return NULL;
		CHECK_RC(wf_queue_put_nowait(p.idle, conns[i]), 0);
	}
	uint64_t t0 = mono_ns();
	static wf_task *tasks[TASKS];
	for (int i = 0; i < TASKS; i++) {
		tasks[i] = wf_spawn(one_query, &p);
		CHECK(tasks[i] != NULL);
	}
	for (int i = 0; i < TASKS; i++)
		if (tasks[i] != NULL)
			CHECK_RC(wf_join(tasks[i], NULL), 0);
	CHECK_EQ(p.done, TASKS);
	fprintf(stderr, "pg: %d queries from as many tasks over %d connections on 2 workers: %llu ms\n",
		TASKS, POOL, (unsigned long long)ms_since(t0));
	for (int i = 0; i < POOL; i++)
		CHECK_RC(wf_pg_close(conns[i]), 0);
	wf_queue_free(p.idle);
	return NULL;
}

Test(pg, thousand_concurrent_queries, .timeout = 60)
{
	g_ci = conninfo();
	run_weft(2, concurrent_main, NULL);
}

/* ---- timeouts and cancellation reach the server ------------------------------ */

/* A cancelled or timed-out statement returns within this (the cancel
 * request makes the postmaster fork a process: tens of milliseconds, more
 * on a loaded machine or under a sanitizer), far below pg_sleep's 30 s. */
#define FAST_MS 3000

/* Backends other than the caller's running pg_sleep(30) right now. */
static long long sleepers(wf_pg *mon)
{
	return scalar(mon, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
			   "query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()");
}

typedef struct sleep_ctx {
	wf_pg *c;
	int rc;
} sleep_ctx;

static void *sleep_query(void *arg)
{
	sleep_ctx *s = arg;
	PGresult *r = NULL;
	s->rc = wf_pg_query(s->c, "SELECT pg_sleep(30)", 0, NULL, 25000, &r);
	PQclear(r);
	return NULL;
}

static void *cancel_main(void *arg)
{
	(void)arg;
	wf_pg *c = connect_ok(g_ci), *mon = connect_ok(g_ci);
	if (c == NULL || mon == NULL)
		return NULL;

	/* A timeout: back in about 200 ms, the backend idle again. */
	uint64_t t0 = mono_ns();
	PGresult *r = NULL;
	int rc = wf_pg_query(c, "SELECT pg_sleep(30)", 0, NULL, 200, &r);
	uint64_t took = ms_since(t0);
	CHECK_RC(rc, WF_ETIMEDOUT);
	CHECK(r == NULL);
	CHECK(took >= 190 && took < FAST_MS);
	fprintf(stderr, "pg: pg_sleep(30) with a 200 ms timeout returned after %llu ms: %s\n",
		(unsigned long long)took, wf_pg_errmsg(c));
	CHECK_EQ(sleepers(mon), 0);
	CHECK(!wf_pg_broken(c));
	CHECK_EQ(scalar(c, "SELECT 11"), 11);

	/* A cancelled task: the same. */
	sleep_ctx s = {.c = c};
	wf_task *t = wf_spawn(sleep_query, &s);
	CHECK_RC(wf_sleep(300), 0);
	CHECK_EQ(sleepers(mon), 1);
	/* While it runs, the connection is its task's alone. */
	CHECK_RC(wf_pg_query(c, "SELECT 1", 0, NULL, T_MS, &r), WF_EBUSY);
	CHECK_RC(wf_pg_close(c), WF_EBUSY);
	t0 = mono_ns();
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(s.rc, WF_ECANCELED);
	CHECK(ms_since(t0) < FAST_MS);
	CHECK_EQ(sleepers(mon), 0);
	CHECK(!wf_pg_broken(c));
	CHECK_EQ(scalar(c, "SELECT 12"), 12);

	/* A pipeline that times out in its second statement. */
	wf_pg_stmt st[3] = {
		{.sql = "SELECT 1"}, {.sql = "SELECT pg_sleep(30)"}, {.sql = "SELECT 2"}};
	PGresult *res[3];
	t0 = mono_ns();
	rc = wf_pg_pipeline(c, st, 3, 200, res);
	CHECK_RC(rc, WF_ETIMEDOUT);
	CHECK(ms_since(t0) < FAST_MS);
	CHECK(res[0] == NULL && res[1] == NULL && res[2] == NULL);
	CHECK_EQ(sleepers(mon), 0);
	CHECK(!wf_pg_broken(c));
	CHECK_EQ(scalar(c, "SELECT 13"), 13);

	/* A timeout scope around the call. */
	wf_timeout to;
	wf_timeout_enter(&to, 200);
	rc = wf_pg_query(c, "SELECT pg_sleep(30)", 0, NULL, WF_FOREVER, &r);
	rc = wf_timeout_leave(&to, rc);
	CHECK_RC(rc, WF_ETIMEDOUT);
	CHECK_EQ(sleepers(mon), 0);
	CHECK_EQ(scalar(c, "SELECT 14"), 14);

	CHECK_RC(wf_pg_close(c), 0);
	CHECK_RC(wf_pg_close(mon), 0);
	return NULL;
}

Test(pg, timeout_and_cancel_reach_the_server, .timeout = 60)
{
	g_ci = conninfo();
	run_weft(2, cancel_main, NULL);
}

/* ---- bad input ------------------------------------------------------------ */

static void *bad_input_main(void *arg)
{
	(void)arg;
	PGresult *r = (PGresult *)1, *res[2];
	const char *p[] = {"1"};
	CHECK_RC(wf_pg_connect(NULL, T_MS, NULL, NULL), WF_EINVAL);
	wf_pg *c = (wf_pg *)1;
	CHECK_RC(wf_pg_connect(NULL, T_MS, &c, NULL), WF_EINVAL);
	CHECK(c == NULL);
	CHECK_RC(wf_pg_query(NULL, "SELECT 1", 0, NULL, T_MS, &r), WF_EINVAL);
	CHECK(r == NULL);
	c = connect_ok(g_ci);
	if (c == NULL)
		return NULL;
	CHECK_RC(wf_pg_query(c, NULL, 0, NULL, T_MS, &r), WF_EINVAL);
	CHECK_RC(wf_pg_query(c, "SELECT 1", 0, NULL, T_MS, NULL), WF_EINVAL);
	CHECK_RC(wf_pg_query(c, "SELECT $1", 1, NULL, T_MS, &r), WF_EINVAL);
	CHECK_RC(wf_pg_query(c, "SELECT $1", -1, p, T_MS, &r), WF_EINVAL);
	CHECK_RC(wf_pg_query_params(c, "SELECT 1", 0, NULL, NULL, NULL, NULL, 2, T_MS, &r),
		 WF_EINVAL);
	wf_pg_stmt st[2] = {{.sql = "SELECT 1"}, {.sql = NULL}};
	CHECK_RC(wf_pg_pipeline(c, st, 2, T_MS, res), WF_EINVAL);
	CHECK(res[0] == NULL && res[1] == NULL);
	CHECK_RC(wf_pg_pipeline(c, st, 0, T_MS, res), WF_EINVAL);
	CHECK_RC(wf_pg_pipeline(c, NULL, 1, T_MS, res), WF_EINVAL);
	CHECK_RC(wf_pg_pipeline(c, st, 1, T_MS, NULL), WF_EINVAL);
	CHECK_RC(wf_pg_pipeline(NULL, st, 1, T_MS, res), WF_EINVAL);
	/* Bad arguments are not the connection's fault. */
	CHECK_EQ(scalar(c, "SELECT 21"), 21);
	CHECK(wf_pg_conn(c) != NULL);
	CHECK(PQbackendPID(wf_pg_conn(c)) > 0);
	CHECK(wf_pg_conn(NULL) == NULL);
	CHECK(wf_pg_errmsg(NULL) == NULL);
	CHECK(wf_pg_sqlstate(NULL) == NULL);
	CHECK(!wf_pg_broken(NULL));
	CHECK_RC(wf_pg_close(NULL), WF_EINVAL);

	/* A closed handle, every time. */
	CHECK_RC(wf_pg_close(c), 0);
	CHECK_RC(wf_pg_close(c), WF_EINVAL);
	CHECK_RC(wf_pg_query(c, "SELECT 1", 0, NULL, T_MS, &r), WF_EINVAL);
	st[1].sql = "SELECT 2";
	CHECK_RC(wf_pg_pipeline(c, st, 2, T_MS, res), WF_EINVAL);
	CHECK(wf_pg_errmsg(c) == NULL);
	CHECK(wf_pg_sqlstate(c) == NULL);
	CHECK(wf_pg_conn(c) == NULL);
	CHECK(!wf_pg_broken(c));
	/* Another connection made meanwhile is not confused with it. */
	wf_pg *c2 = connect_ok(g_ci);
	CHECK_RC(wf_pg_query(c, "SELECT 1", 0, NULL, T_MS, &r), WF_EINVAL);
	if (c2 != NULL) {
		CHECK_EQ(scalar(c2, "SELECT 22"), 22);
		CHECK_RC(wf_pg_close(c2), 0);
	}
	return NULL;
}

static void *plain_thread_query(void *arg)
{
	PGresult *r = NULL;
	return (void *)(intptr_t)wf_pg_query(arg, "SELECT 1", 0, NULL, T_MS, &r);
}

Test(pg, bad_input, .timeout = 60)
{
	g_ci = conninfo();
	run_weft(2, bad_input_main, NULL);
	/* Outside a task. */
	wf_pg *c = (wf_pg *)1;
	cr_assert_eq(wf_pg_connect(g_ci, T_MS, &c, NULL), WF_ENOTTASK);
	cr_assert_null(c);
	pthread_t th;
	void *v;
	int dummy;
	cr_assert_eq(pthread_create(&th, NULL, plain_thread_query, &dummy), 0);
	pthread_join(th, &v);
	cr_assert_eq((int)(intptr_t)v, WF_ENOTTASK);
}

/* ---- the server killed mid-query ---------------------------------------------- */

static pid_t postmaster_pid(void)
{
	char f[PATH_MAX];
	snprintf(f, sizeof(f), "%s/data/postmaster.pid", srv_env("WEFT_PG_TEST_DIR"));
	FILE *fp = fopen(f, "r");
	long pid = 0;
	if (fp != NULL) {
		if (fscanf(fp, "%ld", &pid) != 1)
			pid = 0;
		fclose(fp);
	}
	return (pid_t)pid;
}

static void *killed_main(void *arg)
{
	(void)arg;
	wf_pg *c = connect_ok(g_ci);
	if (c == NULL)
		return NULL;
	pid_t backend = PQbackendPID(wf_pg_conn(c)), pm = postmaster_pid();
	if (!CHECK(backend > 0 && pm > 0))
		return NULL;
	sleep_ctx s = {.c = c};
	wf_task *t = wf_spawn(sleep_query, &s);
	CHECK_RC(wf_sleep(300), 0);
	/* No shutdown: both die at once, as in a crash or the OOM killer. */
	uint64_t t0 = mono_ns();
	CHECK_EQ(kill(pm, SIGKILL), 0);
	CHECK_EQ(kill(backend, SIGKILL), 0);
	CHECK_RC(wf_join(t, NULL), 0);
	uint64_t took = ms_since(t0);
	CHECK_RC(s.rc, -ECONNRESET);
	CHECK(took < 3000);
	CHECK(wf_pg_broken(c));
	fprintf(stderr, "pg: query with the server killed: %s after %llu ms: %s\n",
		wf_err_name(s.rc), (unsigned long long)took, wf_pg_errmsg(c));
	CHECK(strlen(wf_pg_errmsg(c)) > 0);
	PGresult *r = NULL;
	CHECK_RC(wf_pg_query(c, "SELECT 1", 0, NULL, T_MS, &r), -ECONNRESET);
	CHECK_RC(wf_pg_close(c), 0);

	/* Nothing listens now. */
	char *msg = NULL;
	CHECK_RC(wf_pg_connect(g_ci, T_MS, &c, &msg), WF_EIO);
	free(msg);
	return NULL;
}

static void *after_restart_main(void *arg)
{
	(void)arg;
	wf_pg *c = connect_ok(g_ci);
	if (c != NULL) {
		CHECK_EQ(scalar(c, "SELECT 31"), 31);
		CHECK_RC(wf_pg_close(c), 0);
	}
	return NULL;
}

Test(pg, server_killed_mid_query, .timeout = 90)
{
	g_ci = conninfo();
	run_weft(2, killed_main, NULL);
	/* The server's other processes leave once they see the postmaster
	 * gone; until then a new postmaster refuses to start. */
	int rc = -1;
	for (int i = 0; i < 20 && rc != 0; i++) {
		rc = pg_ctl("start");
		if (rc != 0)
			usleep(250 * 1000);
	}
	cr_assert_eq(rc, 0, "the server did not start again: see %s/server.log",
		     srv_env("WEFT_PG_TEST_DIR"));
	run_weft(2, after_restart_main, NULL);
}
