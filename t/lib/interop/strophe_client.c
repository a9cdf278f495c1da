/*
 * libstrophe as an application would use it; see README for the
 * convention.  Built by t/interop/client_libstrophe.t:
 *     cc -o strophe_client strophe_client.c $(pkg-config --cflags --libs libstrophe)
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <strophe.h>

static const char *opt_host, *opt_mode, *opt_jid, *opt_password;
static const char *opt_to, *opt_body, *opt_expect;
static int opt_port, opt_debug;
static double opt_timeout = 20;

static int result = -1;            /* -1: running */
static char reason[512] = "timeout";

static void
finish(xmpp_conn_t *conn, int code, const char *why)
{
    if (result != -1) {
        return;
    }
    result = code;
    if (why) {
        snprintf(reason, sizeof(reason), "%s", why);
    }
    if (xmpp_conn_is_connected(conn)) {
        xmpp_disconnect(conn);
    }
}

static int
message_handler(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
    xmpp_ctx_t *ctx = userdata;
    xmpp_stanza_t *body;
    char *text;
    const char *from;

    body = xmpp_stanza_get_child_by_name(stanza, "body");
    if (body == NULL) {
        return 1;
    }
    text = xmpp_stanza_get_text(body);
    if (text && strcmp(text, opt_expect) == 0) {
        from = xmpp_stanza_get_from(stanza);
        printf("RECEIVED %s %s\n", from ? from : "?", text);
        fflush(stdout);
        finish(conn, 0, NULL);
    }
    if (text) {
        xmpp_free(ctx, text);
    }
    return 1;
}

static void
conn_handler(xmpp_conn_t *conn, xmpp_conn_event_t status, int error,
             xmpp_stream_error_t *stream_error, void *userdata)
{
    xmpp_ctx_t *ctx = userdata;
    xmpp_stanza_t *pres, *msg;
    char buf[512];

    if (status == XMPP_CONN_CONNECT) {
        printf("BOUND %s\n", xmpp_conn_get_bound_jid(conn));
        printf("TLS %s\n", xmpp_conn_is_secured(conn) ? "yes" : "no");
        fflush(stdout);
        if (!xmpp_conn_is_secured(conn)) {
            finish(conn, 3, "session without TLS");
            return;
        }
        xmpp_handler_add(conn, message_handler, NULL, "message", NULL, ctx);

        pres = xmpp_presence_new(ctx);
        xmpp_send(conn, pres);
        xmpp_stanza_release(pres);

        msg = xmpp_message_new(ctx, "chat", opt_to, "m1");
        xmpp_message_set_body(msg, opt_body);
        xmpp_send(conn, msg);
        xmpp_stanza_release(msg);
        printf("SENT\n");
        fflush(stdout);
        return;
    }

    snprintf(buf, sizeof(buf), "disconnected (status %d, error %d%s%s)",
             (int) status, error, stream_error ? ", stream error " : "",
             stream_error && stream_error->text ? stream_error->text : "");
    finish(conn, 3, buf);
}

int
main(int argc, char **argv)
{
    static struct option opts[] = {
        { "host", required_argument, NULL, 'h' },
        { "port", required_argument, NULL, 'p' },
        { "mode", required_argument, NULL, 'm' },
        { "jid", required_argument, NULL, 'j' },
        { "password", required_argument, NULL, 'w' },
        { "to", required_argument, NULL, 't' },
        { "body", required_argument, NULL, 'b' },
        { "expect", required_argument, NULL, 'e' },
        { "timeout", required_argument, NULL, 'T' },
        { "debug", no_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 }
    };
    int c;
    long flags;
    struct timespec start, now;
    xmpp_ctx_t *ctx;
    xmpp_conn_t *conn;
    xmpp_log_t *log;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'm': opt_mode = optarg; break;
        case 'j': opt_jid = optarg; break;
        case 'w': opt_password = optarg; break;
        case 't': opt_to = optarg; break;
        case 'b': opt_body = optarg; break;
        case 'e': opt_expect = optarg; break;
        case 'T': opt_timeout = atof(optarg); break;
        case 'd': opt_debug = 1; break;
        default:
            fprintf(stderr, "FAIL usage\n");
            return 2;
        }
    }
    if (!opt_host || !opt_port || !opt_mode || !opt_jid || !opt_password
        || !opt_to || !opt_body || !opt_expect)
    {
        printf("FAIL usage: missing arguments\n");
        return 2;
    }

    xmpp_initialize();
    log = opt_debug ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL;
    ctx = xmpp_ctx_new(NULL, log);
    conn = xmpp_conn_new(ctx);

    /* certificates are not verified (self-signed in the tests) */
    flags = XMPP_CONN_FLAG_TRUST_TLS;
    if (strcmp(opt_mode, "tls") == 0) {
        flags |= XMPP_CONN_FLAG_LEGACY_SSL;
    } else {
        flags |= XMPP_CONN_FLAG_MANDATORY_TLS;
    }
    xmpp_conn_set_flags(conn, flags);
    xmpp_conn_set_jid(conn, opt_jid);
    xmpp_conn_set_pass(conn, opt_password);

    if (xmpp_connect_client(conn, opt_host, (unsigned short) opt_port,
                            conn_handler, ctx) != XMPP_EOK)
    {
        printf("FAIL connect\n");
        return 3;
    }

    clock_gettime(CLOCK_MONOTONIC, &start);
    while (result == -1) {
        xmpp_run_once(ctx, 100);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec
            + (now.tv_nsec - start.tv_nsec) / 1e9 > opt_timeout)
        {
            result = 7;
        }
    }

    /* let the closing stream go out */
    if (xmpp_conn_is_connected(conn)) {
        xmpp_disconnect(conn);
    }
    for (c = 0; c < 5; c++) {
        xmpp_run_once(ctx, 20);
    }

    if (result != 0) {
        printf("FAIL %s\n", reason);
    }
    fflush(stdout);

    xmpp_conn_release(conn);
    xmpp_ctx_free(ctx);
    xmpp_shutdown();
    return result;
}
