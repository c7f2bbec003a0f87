/*
 * weft/pg.h: PostgreSQL from weft tasks, with libpq.
 *
 * libpq's asynchronous calls (PQconnectStartParams / PQconnectPoll,
 * PQsendQueryParams, PQflush, PQconsumeInput, PQisBusy, PQgetResult,
 * pipeline mode) driven by weft's readiness waits (wf_wait_readable,
 * wf_wait_writable): a task that waits for the server suspends, its worker
 * runs other tasks. The host name is resolved with wf_getaddrinfo before
 * libpq sees it (libpq then gets a hostaddr), so nothing blocks a worker
 * on DNS either.
 *
 * Rules (those of weft.h and weft/io.h, and):
 *  - Calls marked [task] suspend the calling task and must be made from a
 *    task (WF_ENOTTASK otherwise). Calls marked [any] never wait.
 *  - One task at a time per connection: a call made while another task's
 *    call on the same connection is under way returns WF_EBUSY at once.
 *    Any number of connections may be used at once, from any workers; a
 *    connection may be used by different tasks one after the other.
 *  - timeout_ms bounds the whole call (WF_FOREVER: none); a timed-out or
 *    cancelled call returns WF_ETIMEDOUT or WF_ECANCELED.
 *  - A query that times out or is cancelled is cancelled on the server too:
 *    the adapter sends a cancel request (PQcancel, run on weft's blocking
 *    pool because it blocks) and then reads the connection until the
 *    server has answered everything that was sent, dropping the answers,
 *    so the connection is usable again when the call returns. That clean-up
 *    takes at most WF_PG_CANCEL_TIMEOUT_MS more; if it does not finish in
 *    that time, or the connection fails meanwhile, the connection is marked
 *    broken (wf_pg_broken): every later call on it returns -ECONNRESET,
 *    and it can only be closed.
 *  - Errors: WF_EIO: the server answered the statement with an error; the
 *    connection stays usable; wf_pg_errmsg gives the server's message and
 *    wf_pg_sqlstate its SQLSTATE code. -ECONNRESET: the connection was
 *    lost (the server went away, was killed, or closed it); it is broken.
 *    WF_EINVAL: a NULL argument, a closed handle (caught while its memory
 *    is not reused by a new connection), a bad conninfo.
 *  - Objects are handles (wf_pg). wf_pg_connect stores one in *out; the
 *    caller closes it with wf_pg_close. Results are libpq's PGresult: the
 *    caller owns every one a call stores and frees it with PQclear.
 *  - Notices (RAISE NOTICE, warnings) go to libpq's notice processor,
 *    stderr by default (PQsetNoticeProcessor on wf_pg_conn to change it).
 */
#ifndef WEFT_PG_H
#define WEFT_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_pg wf_pg;

/* How long the server-side cancellation of a timed-out or cancelled query
 * (the cancel request, then reading what is left) may take before the
 * connection is given up as broken. */
#define WF_PG_CANCEL_TIMEOUT_MS 5000u

/* [task] Opens a connection. conninfo is libpq's: "host=db port=5432
 * dbname=app user=u" or "postgresql://u@db:5432/app" (every keyword libpq
 * knows; the PG* environment variables fill in what it leaves out, as in
 * libpq). A host that is a name (not an address, not a Unix socket
 * directory) is resolved with wf_getaddrinfo and its first address handed
 * to libpq as hostaddr (host stays for TLS and Kerberos); with several
 * hosts ("host=a,b"), each one. libpq's connect_timeout is not used:
 * timeout_ms bounds the whole call, resolution included. The connection
 * is put in non-blocking mode (PQsetnonblocking).
 * 0 and *out (close it with wf_pg_close). On failure *out is NULL and
 * *errmsg (errmsg may be NULL) receives a malloc'd message the caller
 * frees (libpq's, or what could not be resolved): WF_EINVAL (conninfo or
 * out NULL, conninfo not understood), WF_ENONAME, WF_EAGAIN (resolution),
 * WF_EIO (libpq could not connect: refused, authentication, no such
 * database, ...: the message says which), WF_ETIMEDOUT, WF_ECANCELED,
 * WF_ENOMEM, WF_ENOTTASK. */
int wf_pg_connect(const char *conninfo, uint64_t timeout_ms, wf_pg **out, char **errmsg);

/* [any] Closes c (PQfinish: the server is told, without waiting) and
 * frees it; the handle is invalid afterwards. 0, WF_EINVAL (NULL or
 * closed), WF_EBUSY (a call on c is under way: c stays open). */
int wf_pg_close(wf_pg *c);

/* [task] Runs one statement (PQsendQueryParams) with nparams text
 * parameters ($1, $2, ...; params[i] NULL is SQL NULL; params may be NULL
 * when nparams is 0), their types inferred by the server, and waits for
 * its result. With no parameters it goes as a simple query (PQsendQuery:
 * one message, less work for the server), which may hold several
 * statements separated by semicolons, run as one implicit transaction
 * (the result is the last one's, as with PQexec).
 * 0 and *out: a PGresult of status PGRES_TUPLES_OK, PGRES_COMMAND_OK or
 * PGRES_EMPTY_QUERY, which the caller frees with PQclear. Otherwise *out
 * is NULL and: WF_EIO (the server's error: wf_pg_errmsg, wf_pg_sqlstate),
 * -ECONNRESET (connection lost or broken), WF_ETIMEDOUT, WF_ECANCELED
 * (the query is cancelled on the server; see the rules above), WF_EBUSY,
 * WF_EINVAL (c, sql or out NULL, nparams < 0, params NULL with nparams >
 * 0, a closed handle), WF_ENOSYS (COPY: not supported; the connection is
 * then broken), WF_ENOMEM, WF_ENOTTASK. */
int wf_pg_query(wf_pg *c, const char *sql, int nparams, const char *const *params,
		uint64_t timeout_ms, PGresult **out);

/* [task] wf_pg_query with every argument of PQsendQueryParams: types
 * (NULL: all inferred), lengths and formats (NULL: all text), and the
 * result's format (0 text, 1 binary; with 1 the extended protocol is used
 * even without parameters). Codes as wf_pg_query. */
int wf_pg_query_params(wf_pg *c, const char *sql, int nparams, const Oid *types,
		       const char *const *values, const int *lengths, const int *formats,
		       int result_format, uint64_t timeout_ms, PGresult **out);

/* One statement of a pipeline: sql with nparams text parameters, as
 * wf_pg_query takes them. */
typedef struct wf_pg_stmt {
	const char *sql;
	int nparams;
	const char *const *params;
} wf_pg_stmt;

/* [task] Runs n statements in libpq's pipeline mode: all are sent without
 * waiting for each answer, then one PQpipelineSync, then the n results are
 * collected, so the whole batch costs about one round trip. As with one
 * sync in libpq, the statements form one implicit transaction unless they
 * open their own (BEGIN ... COMMIT): an error rolls back the ones before
 * it and skips the ones after it. results must have room for n pointers.
 * 0 and results[0..n-1], each a PGresult the caller frees with PQclear.
 * On any error every results[i] is NULL and: WF_EIO (a statement failed:
 * wf_pg_errmsg says which, "statement <i>: <server's message>", and
 * wf_pg_sqlstate gives its code), and the codes of wf_pg_query (WF_EINVAL
 * also for stmts or results NULL, n of 0, a statement with sql NULL or
 * bad parameters; a timed-out or cancelled pipeline is cancelled on the
 * server as a query is). */
int wf_pg_pipeline(wf_pg *c, const wf_pg_stmt *stmts, size_t n, uint64_t timeout_ms,
		   PGresult **results);

/* [any] The message of the last failed call on c (the server's error, or
 * what went wrong with the connection), without a trailing newline; ""
 * after a call that succeeded. Owned by c: valid until the next call on c
 * or its close. NULL for NULL or a closed handle. */
const char *wf_pg_errmsg(const wf_pg *c);

/* [any] The SQLSTATE of the last server error on c ("42601", "57014"
 * query_canceled, ...), "" if the last call did not fail with one. Owned
 * by c, as wf_pg_errmsg. NULL for NULL or a closed handle. */
const char *wf_pg_sqlstate(const wf_pg *c);

/* [any] true once c is broken (the connection was lost, or a cancelled
 * query could not be cleaned up): close it. false for a usable connection,
 * NULL or a closed handle. */
bool wf_pg_broken(const wf_pg *c);

/* [any] The PGconn of c, for libpq's calls that do not talk to the server
 * (PQescapeLiteral, PQserverVersion, PQbackendPID, PQparameterStatus,
 * PQsetNoticeProcessor, ...). Do not run queries on it directly, switch it
 * back to blocking mode or close it: c owns it. NULL for NULL or a closed
 * handle. */
PGconn *wf_pg_conn(wf_pg *c);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_PG_H */
