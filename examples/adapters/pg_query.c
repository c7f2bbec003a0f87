/*
 * A PostgreSQL query from a weft task (weft/pg.h): connect, run one
 * statement with parameters, print the rows.
 *
 *   pg_query CONNINFO [SQL [PARAM...]]
 *   pg_query "host=localhost dbname=postgres" 'SELECT $1::int + $2::int' 2 40
 *
 * Without SQL it runs SELECT version(). The connection's waits suspend
 * the task, never the worker: the same code serves thousands of tasks
 * over a few connections.
 *
 * Python (asyncpg):
 *     async def main():
 *         conn = await asyncpg.connect(dsn)
 *         for row in await conn.fetch(sql, *params):
 *             print(*row, sep="\t")
 *         await conn.close()
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>
#include <weft/pg.h>

#define TIMEOUT_MS 10000

typedef struct args {
	int argc;
	char **argv;
} args;

static void *main_task(void *arg)
{
	args *a = arg;
	const char *sql = a->argc > 2 ? a->argv[2] : "SELECT version()";
	int nparams = a->argc > 3 ? a->argc - 3 : 0;

	wf_pg *c;
	char *msg = NULL;
	int rc = wf_pg_connect(a->argv[1], TIMEOUT_MS, &c, &msg);
	if (rc != 0) {
		fprintf(stderr, "pg_query: connect: %s: %s\n", wf_err_name(rc), msg);
		free(msg);
		return wf_fail(rc, "connect");
	}
	PGresult *r;
	rc = wf_pg_query(c, sql, nparams, (const char *const *)a->argv + 3, TIMEOUT_MS, &r);
	if (rc != 0) {
		fprintf(stderr, "pg_query: %s: %s (SQLSTATE %s)\n", wf_err_name(rc), wf_pg_errmsg(c),
			wf_pg_sqlstate(c));
		wf_pg_close(c);
		return wf_fail(rc, "query");
	}
	for (int j = 0; j < PQnfields(r); j++)
		printf("%s%s", j > 0 ? "\t" : "", PQfname(r, j));
	printf("\n");
	for (int i = 0; i < PQntuples(r); i++) {
		for (int j = 0; j < PQnfields(r); j++)
			printf("%s%s", j > 0 ? "\t" : "",
			       PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j));
		printf("\n");
	}
	printf("(%d row%s)\n", PQntuples(r), PQntuples(r) == 1 ? "" : "s");
	PQclear(r);
	wf_pg_close(c);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CONNINFO [SQL [PARAM...]]\n", argv[0]);
		return 2;
	}
	args a = {argc, argv};
	int rc = wf_run(NULL, main_task, &a, NULL);
	return rc == 0 ? 0 : 1;
}
