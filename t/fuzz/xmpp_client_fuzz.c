
/*
 * Copyright (C) nginx-xmpp contributors
 *
 * libFuzzer target: ngx_mail_xmpp_parse_command(), the client side parser,
 * called the way ngx_mail_read_command() and ngx_mail_xmpp_auth_state()
 * call it: a buffer of xmpp_client_buffer (512) bytes filled by reads,
 * reset when everything in it has been parsed.
 *
 * Every input is parsed three times: as one read, one byte per read, and
 * in pseudo-random reads (the sizes derived from the input, so a crash
 * reproduces).  The parser is a state machine and must not depend on how
 * the input is split: the three runs must report the same commands with
 * the same contents and end in the same error, unless the buffer filled
 * up (pipelined commands are not moved to the front of the buffer, so
 * where "too long" strikes depends on the split).  The run stops at
 * <starttls/> (what follows it in the same read is discarded on purpose)
 * and at </stream:stream>.
 *
 * Checked for every command: pointers into the buffer stay inside it, an
 * accepted stream header has a non-empty "to" and a version >= 1.0, an
 * invalid command carries a stream error, and the parser never reads
 * outside [pos, last) (AddressSanitizer).
 */


#include "xt_fuzz.h"


#define XT_SPLIT_WHOLE   0
#define XT_SPLIT_BYTES   1
#define XT_SPLIT_RANDOM  2

#define XT_BUFFER_SIZE   512


typedef struct {
    u_char      log[8192];
    size_t      len;
    ngx_uint_t  too_long;
    ngx_uint_t  commands;
} xt_result_t;


static void
xt_record(xt_result_t *r, const char *tag, u_char *data, size_t len)
{
    size_t  n;

    n = ngx_strlen(tag);

    if (r->len + n + 2 + len > sizeof(r->log)) {
        len = 0;
        if (r->len + n + 2 > sizeof(r->log)) {
            return;
        }
    }

    r->len += ngx_sprintf(r->log + r->len, "%s", tag) - (r->log + r->len);
    if (len) {
        ngx_memcpy(r->log + r->len, data, len);
        r->len += len;
    }
    r->log[r->len++] = '\n';
}


static void
xt_check_stream(ngx_mail_xmpp_ctx_t *ctx)
{
    u_char  *p;

    XT_CHECK(ctx->host.len > 0 && ctx->host.len <= NGX_MAIL_XMPP_VALUE_LEN);
    XT_CHECK(ctx->parse.version.len > 0 && ctx->parse.version.len <= 16);

    p = ctx->parse.version.data;

    XT_CHECK(p[0] >= '0' && p[0] <= '9');
    XT_CHECK(!(p[0] == '0' && ngx_strlchr(p, p + ctx->parse.version.len, '.')
               == p + 1));
}


static void
xt_run(const u_char *data, size_t size, ngx_uint_t split, xt_result_t *r)
{
    size_t                n, chunk;
    u_char                tag[64];
    uint64_t              rnd;
    ngx_int_t             rc;
    ngx_buf_t            *b;
    ngx_pool_t           *pool;
    xt_conn_t             x;
    ngx_mail_session_t    s;
    ngx_mail_xmpp_ctx_t  *ctx;
    void                 *ctxs[8];

    ngx_memzero(r, sizeof(xt_result_t));
    ngx_memzero(&x, sizeof(xt_conn_t));
    ngx_memzero(&s, sizeof(ngx_mail_session_t));
    ngx_memzero(ctxs, sizeof(ctxs));

    pool = ngx_create_pool(1024, &xt_log);
    XT_CHECK(pool != NULL);

    xt_conn_init(&x, pool, &s);

    ctx = ngx_pcalloc(pool, sizeof(ngx_mail_xmpp_ctx_t));
    b = ngx_create_temp_buf(pool, XT_BUFFER_SIZE);
    XT_CHECK(ctx && b);

    ctxs[ngx_mail_xmpp_module.ctx_index] = ctx;

    s.signature = NGX_MAIL_MODULE;
    s.connection = &x.conn;
    s.ctx = ctxs;
    s.srv_conf = xt_srv_conf[NGX_MAIL_STARTTLS_ON];
    s.buffer = b;
    s.protocol = NGX_MAIL_XMPP_PROTOCOL;

    rnd = xt_hash(data, size, split) | 1;
    n = 0;

    for ( ;; ) {

        /* a read, as in ngx_mail_read_command() */

        if (b->last < b->end && n < size) {

            switch (split) {
            case XT_SPLIT_WHOLE:
                chunk = size - n;
                break;
            case XT_SPLIT_BYTES:
                chunk = 1;
                break;
            default:
                chunk = 1 + xt_rand(&rnd, xt_rand(&rnd, 3) ? 16 : 700);
                break;
            }

            if (chunk > size - n) {
                chunk = size - n;
            }

            if (chunk > (size_t) (b->end - b->last)) {
                chunk = b->end - b->last;
            }

            ngx_memcpy(b->last, data + n, chunk);
            b->last += chunk;
            n += chunk;

        } else if (b->pos == b->last) {
            break;  /* the client stops sending */
        }

        rc = ngx_mail_xmpp_parse_command(&s);

        XT_CHECK(b->pos >= b->start && b->pos <= b->last
                 && b->last <= b->end);

        if (rc == NGX_AGAIN) {

            if (b->last == b->end) {
                r->too_long = 1;
                xt_record(r, "too long", NULL, 0);
                break;
            }

            if (n == size) {
                break;
            }

            continue;
        }

        if (rc == NGX_MAIL_PARSE_INVALID_COMMAND) {
            XT_CHECK(ctx->error != NGX_XMPP_ERR_NONE
                     && ctx->error <= NGX_XMPP_ERR_UNSUPPORTED_VERSION);
            XT_CHECK(b->pos == b->last);

            ngx_sprintf(tag, "error %ui%Z", ctx->error);
            xt_record(r, (char *) tag, NULL, 0);
            break;
        }

        XT_CHECK(rc == NGX_OK);

        r->commands++;
        XT_CHECK(b->pos > b->start);

        ngx_sprintf(tag, "command %ui %ui%Z", s.command, ctx->parse.bad_text);

        switch (s.command) {

        case NGX_XMPP_STREAM:
            XT_CHECK(!ctx->stream);
            xt_check_stream(ctx);
            xt_record(r, (char *) tag, ctx->host.data, ctx->host.len);
            xt_record(r, "version ", ctx->parse.version.data,
                      ctx->parse.version.len);

            /* ngx_mail_xmpp_stream() */
            ctx->stream = 1;
            ctx->header_sent = 1;
            break;

        case NGX_XMPP_AUTH:
        case NGX_XMPP_RESPONSE:
            XT_CHECK(ctx->stream);

            if (ctx->parse.text_start != ctx->parse.text_end) {
                XT_CHECK(ctx->parse.text_start >= b->start
                         && ctx->parse.text_start < ctx->parse.text_end
                         && ctx->parse.text_end < b->pos);
                XT_CHECK(*ctx->parse.text_end == '<');
            }

            xt_record(r, (char *) tag, ctx->parse.text_start,
                      ctx->parse.text_end - ctx->parse.text_start);

            if (s.command == NGX_XMPP_AUTH) {
                xt_record(r, "mechanism ", ctx->parse.mech.data,
                          ctx->parse.mech.len);
            }

            break;

        default:
            XT_CHECK(ctx->stream);
            xt_record(r, (char *) tag, NULL, 0);
            break;
        }

        if (s.command == NGX_XMPP_STARTTLS
            || s.command == NGX_XMPP_STREAM_END)
        {
            break;
        }

        if (b->pos == b->last) {
            b->pos = b->start;
            b->last = b->start;
        }
    }

    xt_conn_done(&x);
    ngx_destroy_pool(pool);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xt_result_t         *r0, *r1, *r2;
    static xt_result_t   res[3];

    xt_init();

    r0 = &res[0];
    r1 = &res[1];
    r2 = &res[2];

    xt_run(data, size, XT_SPLIT_WHOLE, r0);
    xt_run(data, size, XT_SPLIT_BYTES, r1);
    xt_run(data, size, XT_SPLIT_RANDOM, r2);

    if (!r0->too_long && !r1->too_long) {
        if (r0->len != r1->len || ngx_memcmp(r0->log, r1->log, r0->len)) {
            fprintf(stderr, "whole:\n%.*s\nbyte by byte:\n%.*s\n",
                    (int) r0->len, r0->log, (int) r1->len, r1->log);
            XT_CHECK(!"the parse depends on the split");
        }
    }

    if (!r1->too_long && !r2->too_long) {
        if (r1->len != r2->len || ngx_memcmp(r1->log, r2->log, r1->len)) {
            fprintf(stderr, "byte by byte:\n%.*s\nrandom splits:\n%.*s\n",
                    (int) r1->len, r1->log, (int) r2->len, r2->log);
            XT_CHECK(!"the parse depends on the split");
        }
    }

    return 0;
}
