
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


/*
 * Logging in to the backend: open a stream (after the PROXY protocol
 * header, if any), wait for the stream features, send SASL PLAIN with
 * the initial response, and wait for the result.  On <success/> the
 * session is handed to the generic proxy with the backend's <success/>
 * still in the buffer, so the client sees it and restarts its stream
 * directly with the backend.  With xmpp_proxy_ssl (or auth_http's
 * Auth-XMPP-Proxy-SSL) the stream is TLS from the first byte ("on"), or
 * after <starttls/> on the backend's first features ("starttls"), before
 * the login; a TLS step that fails ends the login, never in plain TCP.
 */


static ngx_int_t ngx_mail_xmpp_proxy_send(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_str_t *line);
static void ngx_mail_xmpp_proxy_login(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
static ngx_int_t ngx_mail_xmpp_proxy_stream(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_xmpp_proxy_auth(ngx_mail_session_t *s,
    ngx_connection_t *c);
#if (NGX_MAIL_SSL)
static ngx_int_t ngx_mail_xmpp_proxy_success(ngx_buf_t *b,
    ngx_str_t *success);
#endif
static void ngx_mail_xmpp_proxy_failure(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, u_char *last);
static void ngx_mail_xmpp_proxy_restart(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
static ssize_t ngx_mail_xmpp_proxy_restart_recv(ngx_connection_t *c,
    u_char *buf, size_t size);
static void ngx_mail_xmpp_proxy_release(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
#if (NGX_MAIL_SSL)
static ngx_uint_t ngx_mail_xmpp_proxy_ssl_mode(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, ngx_mail_xmpp_srv_conf_t *xcf);
static ngx_str_t *ngx_mail_xmpp_proxy_ssl_name(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, ngx_mail_xmpp_srv_conf_t *xcf);
static ngx_int_t ngx_mail_xmpp_proxy_starttls(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, ngx_connection_t *c);
static void ngx_mail_xmpp_proxy_proceed(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, ngx_connection_t *c,
    ngx_mail_xmpp_srv_conf_t *xcf);
static void ngx_mail_xmpp_proxy_tls(ngx_connection_t *c);
#endif
static void ngx_mail_xmpp_proxy_features(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
static void ngx_mail_xmpp_proxy_wait(ngx_event_t *rev);
static void ngx_mail_xmpp_proxy_cleanup(void *data);
static void ngx_mail_xmpp_proxy_error(ngx_mail_session_t *s);
static void ngx_mail_xmpp_proxy_log(ngx_connection_t *c, char *text,
    u_char *start, u_char *last);


static u_char  xmpp_proxy_auth_start[] =
    "<auth xmlns='" NGX_XMPP_SASL_NS "' mechanism='PLAIN'>";
static u_char  xmpp_proxy_auth_end[] = "</auth>";
#if (NGX_MAIL_SSL)
static u_char  xmpp_proxy_starttls[] =
    "<starttls xmlns='" NGX_XMPP_TLS_NS "'/>";
#endif

static u_char  xmpp_proxy_error[] =
    "<failure xmlns='" NGX_XMPP_SASL_NS "'>"
    "<temporary-auth-failure/></failure>"
    "<stream:error><remote-connection-failed xmlns='" NGX_XMPP_ERR_NS "'/>"
    "</stream:error></stream:stream>";


void
ngx_mail_xmpp_proxy_handler(ngx_event_t *rev)
{
    ssize_t               n;
    ngx_int_t             rc;
    ngx_buf_t            *b;
    ngx_connection_t     *c;
    ngx_mail_session_t   *s;
    ngx_mail_xmpp_ctx_t  *ctx;
#if (NGX_MAIL_SSL)
    ngx_mail_xmpp_srv_conf_t  *xcf;
#endif

    c = rev->data;
    s = c->data;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, rev->log, 0,
                   "mail proxy xmpp handler, state: %ui", s->mail_state);

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_ERR, c->log, NGX_ETIMEDOUT,
                      "upstream timed out");
        c->timedout = 1;
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    if (s->proxy->proxy_protocol) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0, "mail proxy xmpp busy");

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_xmpp_proxy_error(s);
        }

        return;
    }

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    b = s->proxy->buffer;

#if (NGX_MAIL_SSL)
    xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);
#endif

#if (NGX_MAIL_SSL)
    if (ctx->login_state == ngx_xmpp_proxy_start && c->ssl == NULL
        && ngx_mail_xmpp_proxy_ssl_mode(s, ctx, xcf) == NGX_XMPP_PROXY_SSL_ON)
    {
        /* direct TLS (XEP-0368): TLS first */

        ctx->up_write = c->write->handler;

        if (ngx_mail_xmpp_upstream_ssl_start(s, c, xcf,
                                   ngx_mail_xmpp_proxy_ssl_name(s, ctx, xcf),
                                   1, ngx_mail_xmpp_proxy_tls)
            == NGX_ERROR)
        {
            ngx_mail_xmpp_proxy_error(s);
        }

        return;
    }
#endif

    if (ctx->login_state == ngx_xmpp_proxy_start) {

        /* the client speaks first, and so do we */

        if (ngx_mail_xmpp_proxy_stream(s, c) != NGX_OK) {
            ngx_mail_xmpp_proxy_error(s);
            return;
        }

        ngx_memzero(&ctx->up, sizeof(ngx_mail_xmpp_scan_t));

        b->pos = b->start;
        b->last = b->start;

        ctx->login_state = ngx_xmpp_proxy_features;
    }

    for ( ;; ) {

        if (ctx->login_state == ngx_xmpp_proxy_features) {
            s->connection->log->action = "reading stream features "
                                         "from upstream";

        } else if (ctx->login_state == ngx_xmpp_proxy_starttls) {
            s->connection->log->action = "reading STARTTLS answer "
                                         "from upstream";

        } else {
            s->connection->log->action = "reading authentication result "
                                         "from upstream";
        }

        if (b->last == b->end) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "upstream sent too long element");
            ngx_mail_xmpp_proxy_error(s);
            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_mail_xmpp_proxy_error(s);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "upstream closed connection");
            ngx_mail_xmpp_proxy_error(s);
            return;
        }

        b->last += n;

        for ( ;; ) {

            rc = ngx_mail_xmpp_parse_upstream(ctx, b,
                     ctx->server
                     && ctx->login_state == ngx_xmpp_proxy_features);

            if (rc == NGX_AGAIN) {
                break;
            }

            if (rc == NGX_ERROR) {
                ngx_log_error(NGX_LOG_ERR, c->log, 0,
                              "upstream sent invalid XML");
                ngx_mail_xmpp_proxy_error(s);
                return;
            }

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "mail proxy xmpp upstream element: %ui",
                           ctx->up.unit);

            switch (ctx->up.unit) {

            case NGX_XMPP_UP_HEADER:
                ctx->up.start = NULL;
                continue;

            case NGX_XMPP_UP_FEATURES:

                if (ctx->login_state != ngx_xmpp_proxy_features) {
                    goto unexpected;
                }

#if (NGX_MAIL_SSL)
                if (c->ssl == NULL
                    && ngx_mail_xmpp_proxy_ssl_mode(s, ctx, xcf)
                       == NGX_XMPP_PROXY_SSL_STARTTLS)
                {
                    if (ngx_mail_xmpp_proxy_starttls(s, ctx, c) != NGX_OK) {
                        ngx_mail_xmpp_proxy_error(s);
                        return;
                    }

                    continue;
                }
#endif

                if (ctx->server) {
                    ngx_mail_xmpp_proxy_features(s, ctx);
                    return;
                }

                if (ngx_mail_xmpp_proxy_auth(s, c) != NGX_OK) {
                    ngx_mail_xmpp_proxy_error(s);
                    return;
                }

                ctx->login_state = ngx_xmpp_proxy_auth;
                ctx->up.start = NULL;
                continue;

            case NGX_XMPP_UP_SUCCESS:

                if (ctx->login_state != ngx_xmpp_proxy_auth) {
                    goto unexpected;
                }

                /* relay the backend's <success/> to the client */

#if (NGX_MAIL_SSL)
                if (ctx->scram && ctx->scram->success.len) {

                    /* nginx's own, with the SCRAM server signature */

                    if (ngx_mail_xmpp_proxy_success(b, &ctx->scram->success)
                        != NGX_OK)
                    {
                        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                                      "no room for SCRAM success in "
                                      "proxy buffer");
                        ngx_mail_xmpp_proxy_error(s);
                        return;
                    }

                    ngx_mail_xmpp_scram_reset(ctx->scram);

                } else {
                    b->pos = ctx->up.start;
                }
#else
                b->pos = ctx->up.start;
#endif

                ngx_mail_xmpp_proxy_restart(s, ctx);
                ngx_mail_xmpp_proxy_release(s, ctx);

                ngx_mail_proxy_handoff(s);
                return;

            case NGX_XMPP_UP_FAILURE:

                if (ctx->login_state != ngx_xmpp_proxy_auth) {
                    goto unexpected;
                }

                ngx_mail_xmpp_proxy_failure(s, ctx, b->pos);
                return;

            case NGX_XMPP_UP_ERROR:
                ngx_mail_xmpp_proxy_log(c, "upstream sent stream error",
                                        ctx->up.start, b->pos);
                ngx_mail_xmpp_proxy_error(s);
                return;

            case NGX_XMPP_UP_END:
                ngx_log_error(NGX_LOG_ERR, c->log, 0,
                              "upstream closed stream");
                ngx_mail_xmpp_proxy_error(s);
                return;

            default: /* NGX_XMPP_UP_OTHER */

#if (NGX_MAIL_SSL)
                if (ctx->login_state == ngx_xmpp_proxy_starttls
                    && ngx_strnstr(ctx->up.start, "proceed",
                                   b->pos - ctx->up.start)
                    && ngx_strnstr(ctx->up.start, NGX_XMPP_TLS_NS,
                                   b->pos - ctx->up.start))
                {
                    ngx_mail_xmpp_proxy_proceed(s, ctx, c, xcf);
                    return;
                }
#endif

                goto unexpected;
            }
        }

    }

unexpected:

    ngx_mail_xmpp_proxy_log(c, "upstream sent unexpected element",
                            ctx->up.start, b->pos);
    ngx_mail_xmpp_proxy_error(s);
}


static ngx_int_t
ngx_mail_xmpp_proxy_send(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_str_t *line)
{
    ssize_t  n;

    n = c->send(c, line->data, line->len);

    if (n < (ssize_t) line->len) {

        /*
         * an incomplete write of a few hundred bytes to a fresh
         * connection is treated as an error, as the other protocols do
         */

        if (n != NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "could not send to upstream at once");
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_mail_xmpp_proxy_login(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    u_char  *p, *at;

    /*
     * Auth-User (possibly rewritten by the auth server) is split at the
     * last "@": the localpart is the SASL authcid, the domain the stream
     * "to"; without "@" the domain is the one the client asked for.
     */

    at = NULL;

    for (p = s->login.data; p < s->login.data + s->login.len; p++) {
        if (*p == '@') {
            at = p;
        }
    }

    if (at && at + 1 < s->login.data + s->login.len) {
        ctx->localpart.data = s->login.data;
        ctx->localpart.len = at - s->login.data;
        ctx->domain.data = at + 1;
        ctx->domain.len = s->login.data + s->login.len - (at + 1);

    } else {
        ctx->localpart.data = s->login.data;
        ctx->localpart.len = at ? (size_t) (at - s->login.data)
                                : s->login.len;
        ctx->domain = ctx->host;
    }

#if (NGX_DEBUG)
    {
    u_char     lbuf[NGX_MAIL_XMPP_LOG_LEN], dbuf[NGX_MAIL_XMPP_LOG_LEN];
    ngx_str_t  l, d;

    l = ngx_mail_xmpp_log_value(lbuf, sizeof(lbuf), &ctx->localpart);
    d = ngx_mail_xmpp_log_value(dbuf, sizeof(dbuf), &ctx->domain);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "mail proxy xmpp login \"%V\" to \"%V\"", &l, &d);
    }
#endif
}


static ngx_int_t
ngx_mail_xmpp_proxy_stream(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_str_t             line, *from, *to;
    ngx_uint_t            flags;
    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    s->connection->log->action = "sending stream header to upstream";

    if (ctx->server) {

        /* on behalf of the remote: both domains are checked host names */

        flags = NGX_XMPP_HEADER_SERVER;
        from = ctx->s2s.remote.len ? &ctx->s2s.remote : NULL;
        to = &ctx->host;

        goto send;
    }

    ngx_mail_xmpp_proxy_login(s, ctx);

    flags = 0;
    from = NULL;
    to = &ctx->domain;

send:

    line.len = ngx_mail_xmpp_stream_header(NULL, flags, from, to);

    line.data = ngx_pnalloc(c->pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_mail_xmpp_stream_header(line.data, flags, from, to);

    return ngx_mail_xmpp_proxy_send(s, c, &line);
}


static ngx_int_t
ngx_mail_xmpp_proxy_auth(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char               *p;
    ngx_str_t             line, plain, encoded;
    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    s->connection->log->action = "sending SASL PLAIN to upstream";

    if (s->passwd.data == NULL) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0, "no password available");
        return NGX_ERROR;
    }

    plain.len = 1 + ctx->localpart.len + 1 + s->passwd.len;
    plain.data = ngx_pnalloc(c->pool, plain.len);
    if (plain.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(plain.data, "%Z%V%Z%V", &ctx->localpart, &s->passwd);

    line.len = sizeof(xmpp_proxy_auth_start) - 1
               + ngx_base64_encoded_length(plain.len)
               + sizeof(xmpp_proxy_auth_end) - 1;

    line.data = ngx_pnalloc(c->pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    encoded.data = ngx_cpymem(line.data, xmpp_proxy_auth_start,
                              sizeof(xmpp_proxy_auth_start) - 1);

    ngx_encode_base64(&encoded, &plain);

    p = encoded.data + encoded.len;
    ngx_memcpy(p, xmpp_proxy_auth_end, sizeof(xmpp_proxy_auth_end) - 1);

    return ngx_mail_xmpp_proxy_send(s, c, &line);
}


#if (NGX_MAIL_SSL)

static ngx_int_t
ngx_mail_xmpp_proxy_success(ngx_buf_t *b, ngx_str_t *success)
{
    size_t   rest;
    u_char  *end;

    /*
     * the backend's <success/>, which ends at b->pos, replaced by
     * "success": what precedes it was read, so it goes there if it fits
     */

    end = b->pos;

    if ((size_t) (end - b->start) >= success->len) {
        b->pos = end - success->len;
        ngx_memcpy(b->pos, success->data, success->len);
        return NGX_OK;
    }

    rest = b->last - end;

    if (success->len + rest > (size_t) (b->end - b->start)) {
        return NGX_ERROR;
    }

    ngx_memmove(b->start + success->len, end, rest);
    ngx_memcpy(b->start, success->data, success->len);

    b->pos = b->start;
    b->last = b->start + success->len + rest;

    return NGX_OK;
}

#endif


static void
ngx_mail_xmpp_proxy_failure(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    u_char *last)
{
    u_char            *p;
    size_t             len;
    ngx_connection_t  *c;

    c = s->connection;

    len = last - ctx->up.start;

    ngx_mail_xmpp_proxy_log(c, "upstream rejected login:", ctx->up.start,
                            last);

    p = ngx_pnalloc(c->pool, len);
    if (p == NULL) {
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    ngx_memcpy(p, ctx->up.start, len);

    ngx_close_connection(s->proxy->upstream.connection);
    s->proxy = NULL;

#if (NGX_MAIL_SSL)
    ctx->proxy_ssl = 0;     /* the next login's auth_http answer says */
#endif

    /* the backend's own failure goes to the client, who may retry */

    s->out.data = p;
    s->out.len = len;

    if (ngx_mail_xmpp_count_error(s, c) == NGX_ERROR) {
        ngx_mail_close_connection(c);
        return;
    }

    ctx->login_state = ngx_xmpp_proxy_start;

    ngx_mail_xmpp_resume(s, ngx_xmpp_start);
}


static void
ngx_mail_xmpp_proxy_features(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    u_char              *p;
    size_t               len;
    ngx_buf_t           *b;
    ngx_connection_t    *c;
    ngx_pool_cleanup_t  *cln;

    /*
     * server-to-server: the backend's stream header (with its stream id,
     * which dialback keys depend on) and features go to the remote server;
     * the remote's next element, a dialback request, is checked by nginx
     */

    c = s->connection;
    b = s->proxy->buffer;

    len = b->pos - b->start;

    p = ngx_pnalloc(c->pool, len);
    if (p == NULL) {
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    ngx_memcpy(p, b->start, len);

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    /* the backend connection is closed with the session until handoff */

    cln->handler = ngx_mail_xmpp_proxy_cleanup;
    cln->data = s;
    ctx->s2s.up_wait = 1;

    s->out.data = p;
    s->out.len = len;

    (void) ngx_mail_xmpp_compact(b, b->pos);

    ctx->header_sent = 1;

    s->proxy->upstream.connection->read->handler = ngx_mail_xmpp_proxy_wait;

    ngx_mail_xmpp_resume(s, ngx_xmpp_dialback);
}


static void
ngx_mail_xmpp_proxy_wait(ngx_event_t *rev)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, rev->log, 0,
                   "mail proxy xmpp wait for dialback");

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_ERR, c->log, NGX_ETIMEDOUT,
                      "upstream timed out");
        c->timedout = 1;
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_xmpp_proxy_error(s);
    }
}


void
ngx_mail_xmpp_proxy_dialback(ngx_mail_session_t *s)
{
    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    s->connection->log->action = "sending dialback to upstream";

    ctx->s2s.up_wait = 0;

    if (ngx_mail_xmpp_proxy_send(s, s->proxy->upstream.connection,
                                 &ctx->s2s.dialback)
        != NGX_OK)
    {
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    if (s->connection->read->timer_set) {
        ngx_del_timer(s->connection->read);
    }

    ngx_mail_xmpp_proxy_release(s, ctx);

    if (ngx_mail_xmpp_relay_init(s) != NGX_OK) {
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    ngx_mail_proxy_handoff(s);
}


static void
ngx_mail_xmpp_proxy_cleanup(void *data)
{
    ngx_mail_session_t *s = data;

    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (ctx->s2s.up_wait && s->proxy && s->proxy->upstream.connection) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                       "close mail proxy connection: %d",
                       s->proxy->upstream.connection->fd);

        ngx_close_connection(s->proxy->upstream.connection);
        s->proxy->upstream.connection = NULL;
    }

    ctx->s2s.up_wait = 0;
}


#if (NGX_MAIL_SSL)

static ngx_uint_t
ngx_mail_xmpp_proxy_ssl_mode(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    ngx_mail_xmpp_srv_conf_t *xcf)
{
    /*
     * an outgoing stream: direct TLS to the targets of _xmpps-server SRV
     * records, STARTTLS to the others; a backend: auth_http's choice for
     * this login, else xmpp_proxy_ssl
     */

    if (ctx->out) {
        if (ctx->direct & (1 << ctx->target)) {
            return NGX_XMPP_PROXY_SSL_ON;
        }

        return xcf->proxy_ssl ? NGX_XMPP_PROXY_SSL_STARTTLS
                              : NGX_XMPP_PROXY_SSL_OFF;
    }

    return ctx->proxy_ssl ? ctx->proxy_ssl - 1 : xcf->proxy_ssl;
}


static ngx_str_t *
ngx_mail_xmpp_proxy_ssl_name(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    ngx_mail_xmpp_srv_conf_t *xcf)
{
    /*
     * the name the backend's certificate must have: xmpp_proxy_ssl_name,
     * else the domain the stream is for (the user's, or the local domain
     * of a server stream); a remote server's is always its domain
     */

    if (ctx->out || (ctx->server && xcf->proxy_ssl_name.len == 0)) {
        return &ctx->host;
    }

    if (xcf->proxy_ssl_name.len) {
        return &xcf->proxy_ssl_name;
    }

    ngx_mail_xmpp_proxy_login(s, ctx);

    return &ctx->domain;
}


static ngx_int_t
ngx_mail_xmpp_proxy_starttls(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    ngx_connection_t *c)
{
    ngx_str_t                  line;
    ngx_buf_t                 *b;
    ngx_mail_xmpp_srv_conf_t  *xcf;

    /* the upstream's features before TLS: STARTTLS, or nothing */

    b = s->proxy->buffer;
    xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);

    if (ngx_strnstr(b->start, NGX_XMPP_TLS_NS, b->pos - b->start) == NULL) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "upstream \"%V\" offered no STARTTLS",
                      ngx_mail_xmpp_proxy_ssl_name(s, ctx, xcf));
        return NGX_ERROR;
    }

    s->connection->log->action = "sending STARTTLS to upstream";

    line.data = xmpp_proxy_starttls;
    line.len = sizeof(xmpp_proxy_starttls) - 1;

    if (ngx_mail_xmpp_proxy_send(s, c, &line) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->login_state = ngx_xmpp_proxy_starttls;
    ctx->up.start = NULL;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp upstream starttls sent");

    return NGX_OK;
}


static void
ngx_mail_xmpp_proxy_proceed(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    ngx_connection_t *c, ngx_mail_xmpp_srv_conf_t *xcf)
{
    ngx_buf_t  *b;

    /* <proceed/>: TLS from the next byte on */

    b = s->proxy->buffer;
    b->pos = b->start;
    b->last = b->start;

    ctx->up_write = c->write->handler;

    if (ngx_mail_xmpp_upstream_ssl_start(s, c, xcf,
                                   ngx_mail_xmpp_proxy_ssl_name(s, ctx, xcf),
                                   0, ngx_mail_xmpp_proxy_tls)
        == NGX_ERROR)
    {
        ngx_mail_xmpp_proxy_error(s);
    }
}


static void
ngx_mail_xmpp_proxy_tls(ngx_connection_t *c)
{
    ngx_mail_session_t        *s;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_xmpp_srv_conf_t  *xcf;

    /* the handshake with the remote server ended: a new stream over TLS */

    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);

    if (ngx_mail_xmpp_upstream_ssl_verify(c, xcf, ctx->ssl_name) != NGX_OK) {
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    c->read->handler = ngx_mail_xmpp_proxy_handler;
    c->write->handler = ctx->up_write;

    ctx->login_state = ngx_xmpp_proxy_start;

    ngx_mail_xmpp_proxy_handler(c->read);
}

#endif


static void
ngx_mail_xmpp_proxy_release(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    /*
     * the client's side is not parsed any more: the parser's value buffer
     * (a large allocation of the connection pool) goes back now, not when
     * a long-lived relayed session ends
     */

    if (ctx->parse.value) {
        ngx_pfree(s->connection->pool, ctx->parse.value);
        ctx->parse.value = NULL;
    }
}


static void
ngx_mail_xmpp_proxy_restart(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    ngx_connection_t  *c;

    /*
     * whatever the client sent while it waited for the login, usually
     * the newline after its </auth>, goes to the backend after <success/>,
     * and must not come before the client's new stream header (see
     * ngx_mail_xmpp_skip_space); what is still to arrive, even in a TLS
     * record of its own, is dropped by the relay's first reads
     */

    c = s->connection;

    ngx_mail_xmpp_skip_space(s->buffer);

    if (s->buffer->pos == s->buffer->last) {
        ctx->recv = c->recv;
        c->recv = ngx_mail_xmpp_proxy_restart_recv;
    }
}


static ssize_t
ngx_mail_xmpp_proxy_restart_recv(ngx_connection_t *c, u_char *buf,
    size_t size)
{
    u_char               *p, *last;
    ssize_t               n;
    ngx_mail_session_t   *s;
    ngx_mail_xmpp_ctx_t  *ctx;

    /* the relay reads the client: whitespace up to the first other byte */

    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    for ( ;; ) {
        n = ctx->recv(c, buf, size);

        if (n <= 0) {
            return n;
        }

        last = buf + n;

        for (p = buf; p < last; p++) {
            if (*p != ' ' && *p != '\t' && *p != CR && *p != LF) {
                break;
            }
        }

        if (p < last) {
            break;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp dropped %z bytes of whitespace before the "
                       "stream restart", n);
    }

    /* from now on the relay reads as it always did */

    c->recv = ctx->recv;

    if (p > buf) {
        ngx_memmove(buf, p, last - p);
    }

    return last - p;
}


static void
ngx_mail_xmpp_proxy_error(ngx_mail_session_t *s)
{
    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    ctx->s2s.up_wait = 0;

    if (s->proxy->upstream.connection) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                       "close mail proxy connection: %d",
                       s->proxy->upstream.connection->fd);

        ngx_close_connection(s->proxy->upstream.connection);
        s->proxy->upstream.connection = NULL;
    }

    /* an outgoing stream not yet relayed: the remote's next server */

    if (ctx->out && !ctx->header_sent
        && ngx_mail_xmpp_resolve_next(s) == NGX_OK)
    {
        return;
    }

    if (ctx->server) {

        /* with nginx's stream header if the remote has none yet */

        ngx_mail_xmpp_stream_close(s, s->connection,
                                   NGX_XMPP_ERR_REMOTE_CONNECTION);
        return;
    }

    ngx_str_set(&s->out, xmpp_proxy_error);

    s->quit = 1;

    ngx_mail_send(s->connection->write);
}


static void
ngx_mail_xmpp_proxy_log(ngx_connection_t *c, char *text, u_char *start,
    u_char *last)
{
    u_char     buf[NGX_MAIL_XMPP_LOG_LEN];
    ngx_str_t  src, v;

    /* the backend's bytes, made safe for the error log */

    src.data = start;
    src.len = last - start;

    v = ngx_mail_xmpp_log_value(buf, sizeof(buf), &src);

    ngx_log_error(NGX_LOG_ERR, c->log, 0, "%s \"%V\"", text, &v);
}
