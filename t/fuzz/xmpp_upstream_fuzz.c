
/*
 * Copyright (C) nginx-xmpp contributors
 *
 * libFuzzer target: what the backend sends before the splice, with the
 * fuzz input as the backend's bytes.
 *
 * 1. ngx_mail_xmpp_parse_upstream() alone, called as
 *    ngx_mail_xmpp_proxy_handler() calls it (a 1024-byte buffer filled by
 *    reads, compacted by the parser), as one read, byte by byte and in
 *    pseudo-random reads: the elements reported must not depend on the
 *    split (unless the buffer filled up), and what it points at
 *    (ctx->up.start .. b->pos) must lie in the buffer and start with "<".
 *    The same again with the tokenizer in the mode that checks a remote
 *    server's relayed stream (ctx->up.relay set): what it refuses, and
 *    where, must not depend on the split either.
 *
 * 2. ngx_mail_xmpp_proxy_handler() itself on an upstream connection whose
 *    recv returns the input in pseudo-random reads: it must end in exactly
 *    one of the handoff (ngx_mail_proxy_handoff() is replaced with ld --wrap
 *    to check the bytes relayed to the client: they start with the
 *    backend's "<success"), the relayed SASL failure, or the error reply,
 *    or still wait for more bytes; no read outside the buffer
 *    (AddressSanitizer), nothing left behind (LeakSanitizer).
 */


#include "xt_fuzz.h"


#define XT_UP_BUFFER_SIZE  1024


static xt_conn_t   xt_client;
static xt_conn_t   xt_upstream;
static ngx_uint_t  xt_handoffs;


void __real_ngx_mail_proxy_handoff(ngx_mail_session_t *s);
void __wrap_ngx_mail_proxy_handoff(ngx_mail_session_t *s);


void
__wrap_ngx_mail_proxy_handoff(ngx_mail_session_t *s)
{
    ngx_buf_t  *b;

    xt_handoffs++;

    b = s->proxy->buffer;

    /* the backend's <success/> and whatever followed it go to the client */

    XT_CHECK(b->pos >= b->start && b->pos < b->last && b->last <= b->end);
    XT_CHECK(b->last - b->pos >= 8);
    XT_CHECK(*b->pos == '<');

    ngx_close_connection(s->proxy->upstream.connection);
    ngx_mail_close_connection(s->connection);
}


typedef struct {
    u_char      log[4096];
    size_t      len;
    ngx_uint_t  too_long;
} xt_result_t;


static void
xt_record(xt_result_t *r, ngx_int_t rc, u_char *start, u_char *end)
{
    size_t  n;

    n = end - start;

    if (r->len + 32 + n > sizeof(r->log)) {
        return;
    }

    r->len += ngx_sprintf(r->log + r->len, "%i ", rc) - (r->log + r->len);
    if (n) {
        ngx_memcpy(r->log + r->len, start, n);
        r->len += n;
    }
    r->log[r->len++] = '\n';
}


static void
xt_parse(const u_char *data, size_t size, ngx_uint_t split, ngx_uint_t check,
    xt_result_t *r)
{
    size_t                  n, chunk;
    uint64_t                rnd;
    ngx_int_t               rc;
    ngx_buf_t              *b;
    ngx_pool_t             *pool;
    ngx_mail_session_t      s;
    ngx_mail_xmpp_ctx_t    *ctx;
    ngx_mail_xmpp_relay_t  *relay;

    ngx_memzero(r, sizeof(xt_result_t));
    ngx_memzero(&s, sizeof(ngx_mail_session_t));

    pool = ngx_create_pool(1024, &xt_log);
    XT_CHECK(pool != NULL);

    ctx = ngx_pcalloc(pool, sizeof(ngx_mail_xmpp_ctx_t));
    relay = ngx_pcalloc(pool, sizeof(ngx_mail_xmpp_relay_t));
    b = ngx_create_temp_buf(pool, XT_UP_BUFFER_SIZE);
    XT_CHECK(ctx && relay && b);

    if (check) {
        ngx_str_set(&relay->pair[0], "r.test");
        ngx_str_set(&relay->pair[1], "l.test");
        ctx->up.relay = relay;
    }

    rnd = xt_hash(data, size, split) | 1;
    n = 0;

    while (n < size) {

        if (b->last == b->end) {
            r->too_long = 1;
            break;
        }

        chunk = (split == 0) ? size : (split == 1) ? 1
                : 1 + xt_rand(&rnd, xt_rand(&rnd, 3) ? 16 : 800);

        if (chunk > size - n) {
            chunk = size - n;
        }

        if (chunk > (size_t) (b->end - b->last)) {
            chunk = b->end - b->last;
        }

        ngx_memcpy(b->last, data + n, chunk);
        b->last += chunk;
        n += chunk;

        for ( ;; ) {
            rc = ngx_mail_xmpp_parse_upstream(ctx, b, 0);

            if (rc == NGX_OK) {
                /* a unit: what it is, as the callers switch on it */
                rc = ctx->up.unit;
            }

            XT_CHECK(b->start <= b->pos && b->pos <= b->last
                     && b->last <= b->end);

            if (rc == NGX_AGAIN) {
                XT_CHECK(b->pos == b->last);
                XT_CHECK(ctx->up.start == NULL || ctx->up.start == b->start);
                break;
            }

            if (rc == NGX_ERROR
                || rc == NGX_XMPP_UP_RESTRICTED || rc == NGX_XMPP_UP_PAIR)
            {
                XT_CHECK(check || rc == NGX_ERROR);
                xt_record(r, rc, NULL, NULL);
                goto done;
            }

            if (rc == NGX_XMPP_UP_HEADER || rc == NGX_XMPP_UP_END) {
                xt_record(r, rc, NULL, NULL);

                if (rc == NGX_XMPP_UP_END) {
                    goto done;
                }

                ctx->up.start = NULL;
                continue;
            }

            XT_CHECK(rc >= NGX_XMPP_UP_FEATURES && rc <= NGX_XMPP_UP_OTHER);
            XT_CHECK(ctx->up.start != NULL);
            XT_CHECK(ctx->up.start >= b->start && ctx->up.start < b->pos);
            XT_CHECK(*ctx->up.start == '<');

            xt_record(r, rc, ctx->up.start, b->pos);

            /* as the proxy handler: after the features, the next child */

            ctx->up.start = NULL;
        }
    }

done:

    ngx_destroy_pool(pool);
}


static void
xt_proxy(const u_char *data, size_t size, ngx_uint_t seed)
{
    size_t                 chunk;
    uint64_t               rnd;
    ngx_pool_t            *pool;
    ngx_mail_session_t    *s;
    ngx_mail_xmpp_ctx_t   *ctx;
    ngx_mail_proxy_ctx_t  *p;
    void                 **ctxs;

    pool = ngx_create_pool(1024, &xt_log);
    XT_CHECK(pool != NULL);

    s = ngx_pcalloc(pool, sizeof(ngx_mail_session_t));
    ctxs = ngx_pcalloc(pool, sizeof(void *) * 8);
    ctx = ngx_pcalloc(pool, sizeof(ngx_mail_xmpp_ctx_t));
    p = ngx_pcalloc(pool, sizeof(ngx_mail_proxy_ctx_t));
    XT_CHECK(s && ctxs && ctx && p);

    xt_conn_init(&xt_client, pool, s);
    xt_conn_init(&xt_upstream, pool, s);
    xt_client.sink.len = 0;
    xt_upstream.sink.len = 0;

    /* the client is quiet; after a relayed failure it closes */

    xt_client.feed.eof = 1;
    xt_client.wev.handler = ngx_mail_send;

    xt_upstream.feed.data = data;
    xt_upstream.feed.len = size;

    ctxs[ngx_mail_xmpp_module.ctx_index] = ctx;

    s->signature = NGX_MAIL_MODULE;
    s->connection = &xt_client.conn;
    s->ctx = ctxs;
    s->srv_conf = xt_srv_conf[NGX_MAIL_STARTTLS_OFF];
    s->protocol = NGX_MAIL_XMPP_PROTOCOL;
    s->proxy = p;
    s->buffer = ngx_create_temp_buf(pool, 512);

    ngx_str_set(&ctx->host, "example.com");

    if (seed & 1) {
        ngx_str_set(&s->login, "alice@exa'mple.<com>");

    } else {
        ngx_str_set(&s->login, "bob");
    }

    ngx_str_set(&s->passwd, "secret\"&<pw>");

    p->upstream.connection = &xt_upstream.conn;
    p->buffer = ngx_create_temp_buf(pool, XT_UP_BUFFER_SIZE);
    XT_CHECK(s->buffer && p->buffer);

    xt_upstream.rev.handler = ngx_mail_xmpp_proxy_handler;
    xt_upstream.wev.handler = ngx_mail_xmpp_proxy_handler;

    rnd = xt_hash(data, size, seed) | 1;
    xt_handoffs = 0;

    while (!xt_client.conn.destroyed && s->proxy
           && xt_upstream.feed.avail <= size)
    {
        chunk = 1 + xt_rand(&rnd, xt_rand(&rnd, 3) ? 16 : 800);

        if (chunk > size - xt_upstream.feed.avail) {
            chunk = size - xt_upstream.feed.avail;
        }

        xt_upstream.feed.avail += chunk;

        if (xt_upstream.feed.avail == size) {
            /* the backend closes after its last byte */
            xt_upstream.feed.eof = 1;
        }

        xt_upstream.rev.ready = 1;
        xt_upstream.rev.handler(&xt_upstream.rev);
        xt_posted();

        if (xt_upstream.feed.eof) {
            break;
        }
    }

    XT_CHECK(xt_handoffs <= 1);

    if (xt_handoffs) {
        XT_CHECK(xt_client.conn.destroyed);

    } else if (!xt_client.conn.destroyed) {

        /* a relayed failure: the client got it, then it closes */

        XT_CHECK(s->proxy == NULL);
        XT_CHECK(xt_client.sink.len > 0);
        XT_CHECK(ngx_strncmp(xt_client.sink.data, "<failure", 8) == 0);

        xt_client.rev.ready = 1;
        xt_client.rev.handler(&xt_client.rev);
        xt_posted();

        XT_CHECK(xt_client.conn.destroyed);

    } else {
        /* an error: the upstream was closed, the client got the reply */

        XT_CHECK(xt_upstream.conn.fd == (ngx_socket_t) -1);
        XT_CHECK(xt_client.sink.len > 16);
        XT_CHECK(ngx_strncmp(xt_client.sink.data
                             + xt_client.sink.len - 16,
                             "</stream:stream>", 16) == 0);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_uint_t           check;
    xt_result_t         *r0, *r1, *r2;
    static xt_result_t   res[3];

    xt_init();

    r0 = &res[0];
    r1 = &res[1];
    r2 = &res[2];

    for (check = 0; check < 2; check++) {
        xt_parse(data, size, 0, check, r0);
        xt_parse(data, size, 1, check, r1);
        xt_parse(data, size, 2, check, r2);

        if (r0->too_long || r1->too_long || r2->too_long) {
            continue;
        }

        if (r0->len != r1->len || ngx_memcmp(r0->log, r1->log, r0->len)
            || r1->len != r2->len || ngx_memcmp(r1->log, r2->log, r1->len))
        {
            fprintf(stderr, "whole:\n%.*s\nbyte by byte:\n%.*s\n"
                    "random:\n%.*s\n",
                    (int) r0->len, r0->log, (int) r1->len, r1->log,
                    (int) r2->len, r2->log);
            XT_CHECK(!"the parse depends on the split");
        }
    }

    xt_proxy(data, size, 0);
    xt_proxy(data, size, 1);

    return 0;
}
