/*
 * weft: a Redis client for tasks, built on hiredis (libhiredis 0.14 and
 * later).
 *
 * hiredis formats the commands and parses the replies; weft moves the
 * bytes. A connection's socket is non-blocking, and every call that would
 * wait suspends the calling task on wf_wait_readable / wf_wait_writable
 * instead: the worker runs other tasks meanwhile, and a task may move to
 * another worker between two calls (or during one) and go on using the
 * same connection. Replies are hiredis's own redisReply trees.
 *
 * Common rules (those of weft/io.h, and):
 *  - Calls marked [task] suspend the calling task and must be made from a
 *    task (WF_ENOTTASK otherwise). Calls marked [any] never wait.
 *  - Every call that waits takes timeout_ms, which bounds the whole call
 *    (WF_FOREVER: no bound; 0: WF_ETIMEDOUT if it would have to wait), and
 *    honours cancellation (WF_ECANCELED).
 *  - One task at a time uses a connection. A call made while another call
 *    on the same connection is under way returns WF_EBUSY at once and
 *    changes nothing (an atomic flag; the connection is not locked, so no
 *    task ever waits for another's call). Tasks that share connections
 *    keep a pool of them (a wf_queue of wf_redis handles, say) and take
 *    one for each request.
 *  - Connections are handles: a closed one gives WF_EINVAL, every time
 *    (handles carry a generation; a new connection never answers to an
 *    old handle).
 *  - A reply from the server, error replies included (type
 *    REDIS_REPLY_ERROR: "ERR unknown command", "WRONGTYPE", ...), is a
 *    successful call: 0 with the reply in *out. The caller owns every reply
 *    stored in *out and frees it with wf_redis_reply_free (or hiredis's
 *    freeReplyObject). On an error *out is set to NULL.
 *
 * Broken connections. A call that stops after its command was sent but
 * before its reply was read (a timeout, a cancellation) leaves a reply on
 * the way that nothing could match to its request, and a connection whose
 * server went away (end of stream, a reset, a write error) or spoke
 * something hiredis cannot parse is gone. Such a call breaks the
 * connection: it returns its own cause (WF_ETIMEDOUT, WF_ECANCELED,
 * WF_EPIPE, -ECONNRESET, WF_EIO) and every later call but wf_redis_close
 * returns WF_EPIPE at once, without touching the socket. Nothing is ever
 * read into a later call's reply. Close the connection and open a new one.
 * The one exception is wf_redis_next_message, which waits for a message
 * no request asked for: its timeout leaves the connection as it was.
 *
 * Error codes, in one place:
 *   WF_EINVAL     NULL argument, closed handle, bad format, a command on a
 *                 subscribed connection, a pipeline with no reply owed
 *   WF_ENOTTASK   a [task] call from a plain thread
 *   WF_EBUSY      another call on this connection is under way
 *   WF_ETIMEDOUT  timeout_ms passed (the connection is broken, but for
 *                 wf_redis_next_message)
 *   WF_ECANCELED  the calling task was cancelled (the connection is broken)
 *   WF_EPIPE      the server closed the connection, a write found it
 *                 closed, or the connection was broken earlier
 *   -ECONNRESET   the server reset the connection (other -errno values of
 *                 read(2) and send(2) likewise)
 *   WF_EIO        the server's bytes are not the Redis protocol
 *   WF_ENOMEM     out of memory
 *   connect only: -ECONNREFUSED and the other -errno of connect(2),
 *                 WF_ENONAME and the codes of wf_getaddrinfo
 */
#ifndef WEFT_REDIS_H
#define WEFT_REDIS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include <weft.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A connection to a Redis server. */
typedef struct wf_redis wf_redis;

/* [task] Connects to the Redis server at host:port. host is a numeric
 * IPv4 or IPv6 address or a name, resolved with wf_getaddrinfo (libuv's
 * thread pool: no worker blocks on DNS); NULL or "" is 127.0.0.1. Every
 * address the name gives is tried in order until one accepts; timeout_ms
 * bounds the whole call. No command is sent (AUTH and SELECT are commands
 * like any other). 0 and *out, which the caller owns and frees with
 * wf_redis_close; WF_EINVAL (host too long, port > 65535, out NULL),
 * WF_ENOTTASK, WF_ENONAME and the other codes of wf_getaddrinfo,
 * -ECONNREFUSED (the last address's error), WF_ETIMEDOUT, WF_ECANCELED,
 * WF_ENOMEM. */
WF_EXTERN int wf_redis_connect(const char *host, unsigned port, uint64_t timeout_ms,
			       wf_redis **out);

/* [any] Closes the socket and frees c with everything it holds (unsent
 * commands, replies not read). A broken connection is closed the same
 * way. 0, WF_EINVAL (NULL or closed), WF_EBUSY (a call on c is under way:
 * nothing is freed; cancel that task first). */
WF_EXTERN int wf_redis_close(wf_redis *c);

/* [task] Sends one command and waits for its reply: hiredis's
 * redisCommand. fmt is hiredis's format: "%s" is a C string, "%b" a
 * binary-safe buffer and its size_t length, every word is one argument
 * ("SET %s %b", key, val, len). 0 and the reply in *out (the caller frees
 * it); the codes listed at the top. Commands appended earlier with
 * wf_redis_append and not collected yet: WF_EINVAL (collect them first). */
WF_EXTERN int wf_redis_command(wf_redis *c, redisReply **out, uint64_t timeout_ms,
			       const char *fmt, ...);
/* [task] wf_redis_command with a va_list. */
WF_EXTERN int wf_redis_vcommand(wf_redis *c, redisReply **out, uint64_t timeout_ms,
				const char *fmt, va_list ap);
/* [task] wf_redis_command with an argument vector: argc arguments, each
 * argv[i] of argvlen[i] bytes (argvlen NULL: strlen of each). */
WF_EXTERN int wf_redis_command_argv(wf_redis *c, redisReply **out, uint64_t timeout_ms,
				    int argc, const char **argv, const size_t *argvlen);

/* Pipelines: append any number of commands, then collect their replies in
 * order with wf_redis_get_reply, one per command. Nothing is sent until
 * the first wf_redis_get_reply, which sends them all.
 *
 * [any] Appends a command (fmt as wf_redis_command) to c's output. 0,
 * WF_EINVAL (NULL, closed, bad format, subscribed), WF_EBUSY, WF_EPIPE
 * (broken), WF_ENOMEM. */
WF_EXTERN int wf_redis_append(wf_redis *c, const char *fmt, ...);
/* [any] wf_redis_append with an argument vector (as
 * wf_redis_command_argv). */
WF_EXTERN int wf_redis_append_argv(wf_redis *c, int argc, const char **argv,
				   const size_t *argvlen);
/* [task] Sends what is appended, then waits for the next reply owed. 0
 * and *out (the caller frees it); WF_EINVAL if no reply is owed (nothing
 * appended, or every reply collected); the codes listed at the top. */
WF_EXTERN int wf_redis_get_reply(wf_redis *c, redisReply **out, uint64_t timeout_ms);
/* [any] The replies owed: commands appended or sent and not collected
 * yet. 0 for NULL or a closed handle. */
WF_EXTERN size_t wf_redis_pending(const wf_redis *c);

/* Publish/subscribe. A subscribed connection belongs to one task, its
 * owner, which waits for messages with wf_redis_next_message; other tasks
 * publish on connections of their own (PUBLISH is an ordinary command).
 * Once subscribed, the connection takes no other command (WF_EINVAL)
 * until it is closed: Redis 2's protocol mixes replies and messages.
 *
 * [task] Subscribes c to n channels (n >= 1) and waits until the server
 * has confirmed each (SUBSCRIBE, or PSUBSCRIBE when pattern is true: the
 * channels are then glob patterns). A message that arrives before the
 * last confirmation is kept for wf_redis_next_message. 0; WF_EINVAL (NULL
 * arguments, n 0, pipelined replies still owed); the codes listed at the
 * top. May be called again to add channels. */
WF_EXTERN int wf_redis_subscribe(wf_redis *c, const char *const *channels, size_t n,
				 bool pattern, uint64_t timeout_ms);
/* [task] Waits for the next message on a subscribed connection: a reply
 * of type REDIS_REPLY_ARRAY, {"message", channel, payload} or, for a
 * pattern, {"pmessage", pattern, channel, payload}; the caller frees it.
 * 0 and *out; WF_ETIMEDOUT when none came within timeout_ms (the
 * connection stays usable: call again); WF_EINVAL (NULL, closed, not
 * subscribed); the other codes listed at the top (a cancellation breaks
 * the connection, as everywhere). */
WF_EXTERN int wf_redis_next_message(wf_redis *c, redisReply **out, uint64_t timeout_ms);

/* [any] true once c is broken (see above) or closed: only
 * wf_redis_close is left to call. true for NULL. */
WF_EXTERN bool wf_redis_broken(const wf_redis *c);

/* [any] Frees a reply stored by any call above (freeReplyObject); NULL
 * does nothing. */
WF_EXTERN void wf_redis_reply_free(redisReply *r);

#ifdef __cplusplus
}
#endif

#endif
