
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
 * directly with the backend.
 */


static ngx_int_t ngx_mail_xmpp_proxy_send(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_str_t *line);
static ngx_int_t ngx_mail_xmpp_proxy_stream(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_xmpp_proxy_auth(ngx_mail_session_t *s,
    ngx_connection_t *c);
static void ngx_mail_xmpp_proxy_failure(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, u_char *last);
static void ngx_mail_xmpp_proxy_drain(ngx_mail_session_t *s);
static void ngx_mail_xmpp_proxy_release(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
static void ngx_mail_xmpp_proxy_features(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
static void ngx_mail_xmpp_proxy_wait(ngx_event_t *rev);
static void ngx_mail_xmpp_proxy_cleanup(void *data);
static void ngx_mail_xmpp_proxy_error(ngx_mail_session_t *s);
static void ngx_mail_xmpp_proxy_log(ngx_connection_t *c, char *text,
    u_char *start, u_char *last);

static ngx_int_t ngx_mail_xmpp_scan(ngx_mail_xmpp_scan_t *sc, u_char **pos,
    u_char *last);
static void ngx_mail_xmpp_scan_child(ngx_mail_xmpp_scan_t *sc);
static void ngx_mail_xmpp_scan_attr(ngx_mail_xmpp_relay_t *r);
static void ngx_mail_xmpp_scan_value(ngx_mail_xmpp_relay_t *r, u_char ch,
    ngx_uint_t end);
static ngx_int_t ngx_mail_xmpp_relay_init(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
static ssize_t ngx_mail_xmpp_relay_recv(ngx_connection_t *c, u_char *buf,
    size_t size);
static void ngx_mail_xmpp_relay_follow(ngx_mail_xmpp_ctx_t *ctx, u_char *p,
    u_char *last);
static u_char *ngx_mail_xmpp_relay_check(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, u_char *p, u_char *last);
static void ngx_mail_xmpp_relay_refuse(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, ngx_uint_t err);


static u_char  xmpp_proxy_header_start[] =
    "<?xml version='1.0'?><stream:stream to='";
static u_char  xmpp_proxy_header_end[] =
    "' version='1.0' xmlns='jabber:client'"
    " xmlns:stream='http://etherx.jabber.org/streams'>";

static u_char  xmpp_proxy_server_header_start[] =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server'"
    " xmlns:stream='http://etherx.jabber.org/streams'"
    " xmlns:db='jabber:server:dialback' version='1.0' from='";
static u_char  xmpp_proxy_server_header_to[] = "' to='";
static u_char  xmpp_proxy_server_header_end[] = "'>";

static u_char  xmpp_proxy_auth_start[] =
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>";
static u_char  xmpp_proxy_auth_end[] = "</auth>";

static u_char  xmpp_proxy_error[] =
    "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "<temporary-auth-failure/></failure>"
    "<stream:error><remote-connection-failed"
    " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    "</stream:error></stream:stream>";
static u_char  xmpp_proxy_server_error[] =
    "<stream:error><remote-connection-failed"
    " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
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

    if (s->mail_state == ngx_xmpp_proxy_start) {

        /* the client speaks first, and so do we */

        if (ngx_mail_xmpp_proxy_stream(s, c) != NGX_OK) {
            ngx_mail_xmpp_proxy_error(s);
            return;
        }

        ngx_memzero(&ctx->up, sizeof(ngx_mail_xmpp_scan_t));

        b->pos = b->start;
        b->last = b->start;

        s->mail_state = ngx_xmpp_proxy_features;
    }

    for ( ;; ) {

        if (s->mail_state == ngx_xmpp_proxy_features) {
            s->connection->log->action = "reading stream features "
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

            rc = ngx_mail_xmpp_parse_upstream(s, ctx, b);

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "mail proxy xmpp upstream element: %i", rc);

            if (rc == NGX_AGAIN) {
                break;
            }

            switch (rc) {

            case NGX_XMPP_UP_HEADER:
                ctx->up.start = NULL;
                continue;

            case NGX_XMPP_UP_FEATURES:

                if (s->mail_state != ngx_xmpp_proxy_features) {
                    goto unexpected;
                }

                if (ctx->server) {
                    ngx_mail_xmpp_proxy_features(s, ctx);
                    return;
                }

                if (ngx_mail_xmpp_proxy_auth(s, c) != NGX_OK) {
                    ngx_mail_xmpp_proxy_error(s);
                    return;
                }

                s->mail_state = ngx_xmpp_proxy_auth;
                ctx->up.start = NULL;
                continue;

            case NGX_XMPP_UP_SUCCESS:

                if (s->mail_state != ngx_xmpp_proxy_auth) {
                    goto unexpected;
                }

                /* relay the backend's <success/> to the client */

                b->pos = ctx->up.start;

                ngx_mail_xmpp_proxy_drain(s);
                ngx_mail_xmpp_proxy_release(s, ctx);

                ngx_mail_proxy_handoff(s);
                return;

            case NGX_XMPP_UP_FAILURE:

                if (s->mail_state != ngx_xmpp_proxy_auth) {
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

            case NGX_XMPP_UP_OTHER:
                goto unexpected;

            default: /* NGX_ERROR */
                ngx_log_error(NGX_LOG_ERR, c->log, 0,
                              "upstream sent invalid XML");
                ngx_mail_xmpp_proxy_error(s);
                return;
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


static ngx_int_t
ngx_mail_xmpp_proxy_stream(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char               *p, *at;
    ngx_str_t             line;
    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    s->connection->log->action = "sending stream header to upstream";

    if (ctx->server) {
        line.len = sizeof(xmpp_proxy_server_header_start) - 1
                   + ctx->remote.len
                   + sizeof(xmpp_proxy_server_header_to) - 1
                   + ctx->host.len
                   + sizeof(xmpp_proxy_server_header_end) - 1;

        line.data = ngx_pnalloc(c->pool, line.len);
        if (line.data == NULL) {
            return NGX_ERROR;
        }

        /* both domains are host names, checked when parsed */

        p = ngx_cpymem(line.data, xmpp_proxy_server_header_start,
                       sizeof(xmpp_proxy_server_header_start) - 1);
        p = ngx_cpymem(p, ctx->remote.data, ctx->remote.len);
        p = ngx_cpymem(p, xmpp_proxy_server_header_to,
                       sizeof(xmpp_proxy_server_header_to) - 1);
        p = ngx_cpymem(p, ctx->host.data, ctx->host.len);
        ngx_memcpy(p, xmpp_proxy_server_header_end,
                   sizeof(xmpp_proxy_server_header_end) - 1);

        return ngx_mail_xmpp_proxy_send(s, c, &line);
    }

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

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "mail proxy xmpp login \"%V\" to \"%V\"", &l, &d);
    }
#endif

    line.len = sizeof(xmpp_proxy_header_start) - 1
               + ngx_mail_xmpp_escaped_len(&ctx->domain)
               + sizeof(xmpp_proxy_header_end) - 1;

    line.data = ngx_pnalloc(c->pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(line.data, xmpp_proxy_header_start,
                   sizeof(xmpp_proxy_header_start) - 1);
    p = ngx_mail_xmpp_escape(p, &ctx->domain);
    ngx_memcpy(p, xmpp_proxy_header_end, sizeof(xmpp_proxy_header_end) - 1);

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


static void
ngx_mail_xmpp_proxy_failure(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    u_char *last)
{
    u_char                    *p;
    size_t                     len;
    ngx_connection_t          *c;
    ngx_mail_core_srv_conf_t  *cscf;

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

    /* the backend's own failure goes to the client, who may retry */

    s->out.data = p;
    s->out.len = len;

    if (ngx_mail_xmpp_count_error(s, c) == NGX_ERROR) {
        ngx_mail_close_connection(c);
        return;
    }

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    s->mail_state = ngx_xmpp_start;
    s->state = 0;

    c->log->action = "in auth state";
    c->read->handler = ngx_mail_xmpp_auth_state;

    ngx_add_timer(c->read, cscf->timeout);

    ngx_mail_send(c->write);

    if (c->destroyed) {
        return;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}


static void
ngx_mail_xmpp_proxy_features(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    u_char                    *p;
    size_t                     len;
    ngx_buf_t                 *b;
    ngx_connection_t          *c;
    ngx_pool_cleanup_t        *cln;
    ngx_mail_core_srv_conf_t  *cscf;

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
    ctx->up_wait = 1;

    s->out.data = p;
    s->out.len = len;

    ngx_memmove(b->start, b->pos, b->last - b->pos);
    b->last = b->start + (b->last - b->pos);
    b->pos = b->start;

    ctx->header_sent = 1;

    s->proxy->upstream.connection->read->handler = ngx_mail_xmpp_proxy_wait;

    s->mail_state = ngx_xmpp_dialback;
    s->state = 0;

    c->log->action = "reading dialback request";
    c->read->handler = ngx_mail_xmpp_auth_state;

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    ngx_add_timer(c->read, cscf->timeout);

    ngx_mail_send(c->write);

    if (c->destroyed) {
        return;
    }

    if (c->read->ready || s->buffer->pos < s->buffer->last) {
        ngx_post_event(c->read, &ngx_posted_events);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_xmpp_proxy_error(s);
    }
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

    ctx->up_wait = 0;

    if (ngx_mail_xmpp_proxy_send(s, s->proxy->upstream.connection,
                                 &ctx->dialback)
        != NGX_OK)
    {
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    if (s->connection->read->timer_set) {
        ngx_del_timer(s->connection->read);
    }

    ngx_mail_xmpp_proxy_release(s, ctx);

    if (ngx_mail_xmpp_relay_init(s, ctx) != NGX_OK) {
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

    if (ctx->up_wait && s->proxy && s->proxy->upstream.connection) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                       "close mail proxy connection: %d",
                       s->proxy->upstream.connection->fd);

        ngx_close_connection(s->proxy->upstream.connection);
        s->proxy->upstream.connection = NULL;
    }

    ctx->up_wait = 0;
}


static void
ngx_mail_xmpp_proxy_release(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    /*
     * the client's side is not parsed any more: the parser's value buffer
     * (a large allocation of the connection pool) goes back now, not when
     * a long-lived relayed session ends
     */

    if (ctx->value) {
        ngx_pfree(s->connection->pool, ctx->value);
        ctx->value = NULL;
    }
}


static void
ngx_mail_xmpp_proxy_drain(ngx_mail_session_t *s)
{
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    /*
     * whatever the client sent while it waited for the login, usually
     * the newline after its </auth>, goes to the backend after <success/>:
     * read it now to drop leading whitespace (see ngx_mail_xmpp_skip_space)
     */

    c = s->connection;
    b = s->buffer;

    if (c->read->ready && b->last < b->end) {
        n = c->recv(c, b->last, b->end - b->last);

        if (n > 0) {
            b->last += n;
        }
    }

    ngx_mail_xmpp_skip_space(b);
}


static void
ngx_mail_xmpp_proxy_error(ngx_mail_session_t *s)
{
    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    ctx->up_wait = 0;

    if (s->proxy->upstream.connection) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                       "close mail proxy connection: %d",
                       s->proxy->upstream.connection->fd);

        ngx_close_connection(s->proxy->upstream.connection);
        s->proxy->upstream.connection = NULL;
    }

    if (ctx->server) {
        ngx_str_set(&s->out, xmpp_proxy_server_error);

    } else {
        ngx_str_set(&s->out, xmpp_proxy_error);
    }

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


/*
 * One tokenizer for the XML of both sides of a session.  Before the
 * relay, it reads what the backend sends: the stream header, then complete
 * children of the stream, each reported by its local name.  Once an
 * xmpp-server session is relayed, it follows both directions: the
 * backend's, to know whether its stream is between two elements (where a
 * stream error of nginx may go), and the remote's, which it checks
 * (sc->relay set): restricted XML (RFC 6120 section 11.1) is refused, and
 * so is a top-level <result/> or <verify/> (any prefix) whose "from" and
 * "to" are not the pair auth_http approved.  The backend acts on an
 * element only when it is complete, so the check at the end of the start
 * tag is in time.
 *
 * It follows well-formed XML exactly (quoted values, empty elements, CDATA
 * sections, comments and processing instructions); at XML it cannot
 * follow it stops with an error, as the backend's parser would.
 */

typedef enum {
    sw_text = 0,
    sw_lt,
    sw_name,
    sw_tag,
    sw_attr,
    sw_attr_eq,
    sw_value_start,
    sw_value,
    sw_attr_end,
    sw_empty,
    sw_end,
    sw_bang,
    sw_cdata,
    sw_comment,
    sw_pi,
    sw_decl
} ngx_mail_xmpp_scan_state_e;


static ngx_int_t
ngx_mail_xmpp_scan(ngx_mail_xmpp_scan_t *sc, u_char **pos, u_char *last)
{
    u_char                  ch, *p;
    ngx_uint_t              state;
    static u_char           cdata[] = "[CDATA[";
    ngx_mail_xmpp_relay_t  *r;

    state = sc->state;
    r = sc->relay;

    for (p = *pos; p < last; p++) {
        ch = *p;

        switch (state) {

        case sw_text:

            if (ch != '<') {

                if (sc->depth) {
                    /* character data: on to the next markup */

                    p = memchr(p, '<', last - p);
                    if (p == NULL) {
                        goto again;
                    }

                } else if (ch == ' ' || ch == '\t' || ch == CR || ch == LF) {
                    break;

                } else {
                    /* text outside of the stream: not XMPP at all */
                    goto invalid;
                }
            }

            sc->lt = p;
            state = sw_lt;
            break;

        case sw_lt:

            switch (ch) {

            case '/':
                state = sw_end;
                break;

            case '?':

                if (r) {
                    goto restricted;
                }

                sc->count = 0;
                state = sw_pi;
                break;

            case '!':
                sc->count = 0;
                state = sw_bang;
                break;

            case ' ':
            case '\t':
            case CR:
            case LF:
            case '<':
            case '>':
            case '=':
            case '\'':
            case '"':
                goto invalid;

            default:

                if (sc->depth == 1) {
                    sc->start = sc->lt;
                }

                sc->name[0] = ch;
                sc->name_len = 1;
                state = sw_name;
                break;
            }

            break;

        case sw_name:

            switch (ch) {

            case ' ':
            case '\t':
            case CR:
            case LF:
            case '/':
            case '>':
                break;

            case ':':
                /* a prefix: the local name follows */
                sc->name_len = 0;
                continue;

            case '<':
            case '=':
            case '\'':
            case '"':
                goto invalid;

            default:

                /* letters and what follows them at once */

                for ( ;; ) {

                    if (sc->name_len < NGX_MAIL_XMPP_SCAN_NAME_LEN) {
                        sc->name[sc->name_len] = ch;
                    }

                    sc->name_len++;

                    if (p + 1 == last || p[1] <= '>') {
                        break;
                    }

                    ch = *++p;
                }

                continue;
            }

            if (sc->depth == 1) {
                ngx_mail_xmpp_scan_child(sc);
            }

            state = sw_tag;

            /* fall through */

        case sw_tag:

            switch (ch) {

            case ' ':
            case '\t':
            case CR:
            case LF:
                break;

            case '/':
                state = sw_empty;
                break;

            case '>':
                goto start_tag;

            case '<':
            case '=':
            case '\'':
            case '"':
                goto invalid;

            default:

                if (r && r->dialback) {
                    r->attr_name[0] = ch;
                    r->attr_len = 1;
                }

                state = sw_attr;
                break;
            }

            break;

        case sw_attr:

            switch (ch) {

            case '=':
                state = sw_value_start;
                break;

            case ' ':
            case '\t':
            case CR:
            case LF:
                state = sw_attr_eq;
                break;

            case '<':
            case '>':
            case '/':
            case '\'':
            case '"':
                goto invalid;

            default:

                if (r && r->dialback) {
                    if (r->attr_len < sizeof(r->attr_name)) {
                        r->attr_name[r->attr_len] = ch;
                    }

                    r->attr_len++;
                    continue;
                }

                /* letters and what follows them at once */

                while (p + 1 < last && p[1] > '>') {
                    p++;
                }

                continue;
            }

            if (r && r->dialback) {
                ngx_mail_xmpp_scan_attr(r);
            }

            break;

        case sw_attr_eq:

            if (ch == '=') {
                state = sw_value_start;
                break;
            }

            if (ch == ' ' || ch == '\t' || ch == CR || ch == LF) {
                break;
            }

            goto invalid;

        case sw_value_start:

            if (ch == '\'' || ch == '"') {
                sc->quote = ch;
                state = sw_value;
                break;
            }

            if (ch == ' ' || ch == '\t' || ch == CR || ch == LF) {
                break;
            }

            goto invalid;

        case sw_value:

            if (r && r->attr) {

                if (ch == sc->quote) {
                    ngx_mail_xmpp_scan_value(r, 0, 1);
                    state = sw_attr_end;

                } else {
                    ngx_mail_xmpp_scan_value(r, ch, 0);
                }

                break;
            }

            /* on to the closing quote */

            p = memchr(p, sc->quote, last - p);
            if (p == NULL) {
                goto again;
            }

            state = sw_attr_end;
            break;

        case sw_attr_end:

            switch (ch) {

            case ' ':
            case '\t':
            case CR:
            case LF:
                state = sw_tag;
                break;

            case '/':
                state = sw_empty;
                break;

            case '>':
                goto start_tag;

            default:
                goto invalid;
            }

            break;

        case sw_empty:

            if (ch != '>' || sc->depth == 0) {
                goto invalid;
            }

            state = sw_text;

            if (sc->depth == 1) {

                if (r && r->dialback && (r->twice || r->match != 3)) {
                    goto pair;
                }

                goto complete;
            }

            break;

        case sw_end:

            p = memchr(p, '>', last - p);
            if (p == NULL) {
                goto again;
            }

            state = sw_text;

            if (sc->depth == 0) {
                goto invalid;
            }

            if (--sc->depth == 0) {
                *pos = p + 1;
                sc->state = state;
                return NGX_XMPP_UP_END;
            }

            if (sc->depth == 1) {
                goto complete;
            }

            break;

        case sw_bang:

            if (ch == cdata[sc->count]) {

                if (++sc->count == sizeof(cdata) - 1) {
                    sc->count = 0;
                    state = sw_cdata;
                }

                break;
            }

            if (r) {
                goto restricted;
            }

            state = (sc->count == 0 && ch == '-') ? sw_comment : sw_decl;
            break;

        case sw_cdata:
        case sw_comment:

            /* up to "]]>" or "-->" */

            if (ch == (u_char) (state == sw_cdata ? ']' : '-')) {

                if (sc->count < 2) {
                    sc->count++;
                }

                break;
            }

            if (ch == '>' && sc->count == 2) {
                state = sw_text;
                break;
            }

            sc->count = 0;
            break;

        case sw_pi:

            if (ch == '?') {
                sc->count = 1;
                break;
            }

            if (ch == '>' && sc->count) {
                state = sw_text;
                break;
            }

            sc->count = 0;
            break;

        case sw_decl:

            if (ch == '>') {
                state = sw_text;
            }

            break;
        }

        continue;

    start_tag:

        state = sw_text;

        if (sc->depth == 0) {

            if (sc->name_len != 6 || ngx_strncmp(sc->name, "stream", 6) != 0)
            {
                /* not an XMPP stream header, e.g. an HTML page */
                goto invalid;
            }

            sc->depth = 1;
            *pos = p + 1;
            sc->state = state;
            return NGX_XMPP_UP_HEADER;
        }

        if (sc->depth++ == 1 && r && r->dialback) {

            if (r->twice || r->match != 3) {
                goto pair;
            }

            /* what is inside is not looked at */
            r->dialback = 0;
        }

        continue;

    complete:

        *pos = p + 1;
        sc->state = state;
        return sc->child;
    }

again:

    *pos = last;
    sc->state = state;
    return NGX_AGAIN;

restricted:

    *pos = p;
    sc->state = state;
    return NGX_XMPP_UP_RESTRICTED;

pair:

    *pos = p;
    sc->state = state;
    return NGX_XMPP_UP_PAIR;

invalid:

    *pos = p;
    sc->state = state;
    return NGX_ERROR;
}


static void
ngx_mail_xmpp_scan_child(ngx_mail_xmpp_scan_t *sc)
{
    u_char                 *name;
    size_t                  len;
    ngx_mail_xmpp_relay_t  *r;

    /* a child of the stream, by its local name */

    name = sc->name;
    len = sc->name_len;

    if (len == 8 && ngx_strncmp(name, "features", 8) == 0) {
        sc->child = NGX_XMPP_UP_FEATURES;

    } else if (len == 7 && ngx_strncmp(name, "success", 7) == 0) {
        sc->child = NGX_XMPP_UP_SUCCESS;

    } else if (len == 7 && ngx_strncmp(name, "failure", 7) == 0) {
        sc->child = NGX_XMPP_UP_FAILURE;

    } else if (len == 5 && ngx_strncmp(name, "error", 5) == 0) {
        sc->child = NGX_XMPP_UP_ERROR;

    } else {
        sc->child = NGX_XMPP_UP_OTHER;
    }

    r = sc->relay;

    if (r == NULL) {
        return;
    }

    /* the remote's dialback elements, whatever the prefix or namespace */

    r->dialback = (len == 6 && (ngx_strncmp(name, "result", 6) == 0
                                || ngx_strncmp(name, "verify", 6) == 0));
    r->attr = 0;
    r->seen = 0;
    r->match = 0;
    r->twice = 0;
    r->value_len[0] = 0;
    r->value_len[1] = 0;
}


static void
ngx_mail_xmpp_scan_attr(ngx_mail_xmpp_relay_t *r)
{
    ngx_uint_t  attr;

    /* an attribute name of a dialback element: "from", "to" or another */

    if (r->attr_len == 4 && ngx_strncmp(r->attr_name, "from", 4) == 0) {
        attr = 1;

    } else if (r->attr_len == 2 && ngx_strncmp(r->attr_name, "to", 2) == 0) {
        attr = 2;

    } else {
        r->attr = 0;
        return;
    }

    if (r->seen & attr) {
        r->twice = 1;
    }

    r->seen |= attr;
    r->attr = attr;
    r->value_len[attr - 1] = 0;
    r->same = 1;
}


static void
ngx_mail_xmpp_scan_value(ngx_mail_xmpp_relay_t *r, u_char ch, ngx_uint_t end)
{
    size_t      n;
    ngx_str_t  *v;

    /*
     * a "from" or "to" value, compared byte by byte with the approved
     * domain (ASCII case-insensitively); an entity or character reference
     * never matches, as "&" is not in a host name
     */

    v = &r->pair[r->attr - 1];
    n = r->value_len[r->attr - 1];

    if (end) {

        if (r->same && n == v->len) {
            r->match |= r->attr;
        }

        r->attr = 0;
        return;
    }

    if (n >= v->len || ngx_tolower(ch) != ngx_tolower(v->data[n])) {
        r->same = 0;
    }

    if (n < NGX_MAIL_XMPP_LOG_LEN) {
        r->value[r->attr - 1][n] = ch;
    }

    r->value_len[r->attr - 1] = n + 1;
}


ngx_int_t
ngx_mail_xmpp_parse_upstream(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    ngx_buf_t *b)
{
    u_char     *keep;
    size_t      len;
    ngx_int_t   rc;

    /* what the backend sends before the relay starts */

    rc = ngx_mail_xmpp_scan(&ctx->up, &b->pos, b->last);

    if (rc != NGX_AGAIN) {
        return rc;
    }

    if (ctx->server && s->mail_state == ngx_xmpp_proxy_features) {
        /* the header and the features are relayed: keep everything */
        return NGX_AGAIN;
    }

    /*
     * all input is consumed: keep only an unfinished child of the stream,
     * which may have to be relayed to the client, and compact the buffer
     */

    keep = ctx->up.start;

    if (keep == NULL && ctx->up.state == sw_lt) {
        keep = ctx->up.lt;
    }

    if (keep) {
        len = b->last - keep;
        ngx_memmove(b->start, keep, len);

        if (ctx->up.lt >= keep) {
            ctx->up.lt -= keep - b->start;
        }

        if (ctx->up.start) {
            ctx->up.start = b->start;
        }

        b->last = b->start + len;

    } else {
        b->last = b->start;
    }

    b->pos = b->last;

    return NGX_AGAIN;
}


/*
 * Server-to-server relay.  A relayed xmpp-server session stays bound to
 * the domain pair auth_http approved: both connections' recv go through
 * ngx_mail_xmpp_relay_recv(), which follows the backend's XML and checks
 * the remote's before the generic relay passes it on.  At the first
 * element for another pair (XEP-0220 multiplexing), or restricted XML,
 * the remote gets a stream error after the backend's last complete
 * element, nothing of the element reaches the backend, and the session
 * ends as a relayed session does when the backend closes.
 */

static ngx_int_t
ngx_mail_xmpp_relay_init(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    ngx_buf_t              *b;
    ngx_connection_t       *c, *up;
    ngx_mail_xmpp_relay_t  *r;

    c = s->connection;
    up = s->proxy->upstream.connection;

    r = ngx_pcalloc(c->pool, sizeof(ngx_mail_xmpp_relay_t));
    if (r == NULL) {
        return NGX_ERROR;
    }

    r->pair[0] = ctx->remote;
    r->pair[1] = ctx->host;

    /* the remote's stream is open, its first dialback element forwarded */

    r->scan.depth = 1;
    r->scan.relay = r;

    ctx->relay = r;

    r->recv = c->recv;
    c->recv = ngx_mail_xmpp_relay_recv;

    r->up_recv = up->recv;
    up->recv = ngx_mail_xmpp_relay_recv;

    /*
     * what the backend sent after its features and the remote after its
     * dialback request is relayed without a read: it is followed now
     */

    b = s->proxy->buffer;
    ngx_mail_xmpp_relay_follow(ctx, b->pos, b->last);

    b = s->buffer;
    b->last = ngx_mail_xmpp_relay_check(s, ctx, b->pos, b->last);

    return NGX_OK;
}


static ssize_t
ngx_mail_xmpp_relay_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    u_char                 *last;
    ssize_t                 n;
    ngx_mail_session_t     *s;
    ngx_mail_xmpp_ctx_t    *ctx;
    ngx_mail_xmpp_relay_t  *r;

    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    r = ctx->relay;

    if (c != s->connection) {

        if (r->refused) {
            /* the backend's side ends after what it sent so far */
            c->read->ready = 0;
            c->read->eof = 1;
            return 0;
        }

        n = r->up_recv(c, buf, size);

        if (n > 0) {
            ngx_mail_xmpp_relay_follow(ctx, buf, buf + n);
        }

        return n;
    }

    n = r->recv(c, buf, size);

    if (n <= 0) {
        return n;
    }

    last = r->refused ? buf : ngx_mail_xmpp_relay_check(s, ctx, buf, buf + n);

    if (last > buf) {
        return last - buf;
    }

    /*
     * nothing to relay: what the remote sends after the refusal is read
     * and dropped until the session ends, so that the close is not a reset
     * that could take the stream error with it
     */

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return NGX_AGAIN;
}


static void
ngx_mail_xmpp_relay_follow(ngx_mail_xmpp_ctx_t *ctx, u_char *p, u_char *last)
{
    ngx_int_t  rc;

    /* the backend's stream: only where its elements end matters */

    if (ctx->relay->up_lost) {
        return;
    }

    ctx->up.lt = NULL;
    ctx->up.start = NULL;

    do {
        rc = ngx_mail_xmpp_scan(&ctx->up, &p, last);

        if (rc == NGX_ERROR) {
            ctx->relay->up_lost = 1;
            return;
        }

    } while (rc != NGX_AGAIN);
}


static u_char *
ngx_mail_xmpp_relay_check(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    u_char *p, u_char *last)
{
    u_char                 *cut;
    u_char                  buf[4][NGX_MAIL_XMPP_LOG_LEN];
    ngx_int_t               rc;
    ngx_str_t               v[4], value;
    ngx_uint_t              err;
    ngx_connection_t       *c;
    ngx_mail_xmpp_scan_t   *sc;
    ngx_mail_xmpp_relay_t  *r;

    /* the remote's bytes: returns where what may be relayed ends */

    r = ctx->relay;
    sc = &r->scan;
    c = s->connection;

    sc->lt = NULL;
    sc->start = NULL;

    for ( ;; ) {

        rc = ngx_mail_xmpp_scan(sc, &p, last);

        switch (rc) {

        case NGX_AGAIN:
            return last;

        case NGX_XMPP_UP_PAIR:

            value.data = r->value[0];
            value.len = ngx_min(r->value_len[0], NGX_MAIL_XMPP_LOG_LEN);
            v[0] = ngx_mail_xmpp_log_value(buf[0], sizeof(buf[0]), &value);

            value.data = r->value[1];
            value.len = ngx_min(r->value_len[1], NGX_MAIL_XMPP_LOG_LEN);
            v[1] = ngx_mail_xmpp_log_value(buf[1], sizeof(buf[1]), &value);

            v[2] = ngx_mail_xmpp_log_value(buf[2], sizeof(buf[2]),
                                           &r->pair[0]);
            v[3] = ngx_mail_xmpp_log_value(buf[3], sizeof(buf[3]),
                                           &r->pair[1]);

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent dialback from \"%V\" to \"%V\" "
                          "on a stream from \"%V\" to \"%V\", closing stream "
                          "with \"policy-violation\" error",
                          &v[0], &v[1], &v[2], &v[3]);

            err = NGX_XMPP_ERR_POLICY_VIOLATION;
            break;

        case NGX_XMPP_UP_RESTRICTED:
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent a comment, a processing "
                          "instruction or a DTD, closing stream with "
                          "\"restricted-xml\" error");
            err = NGX_XMPP_ERR_RESTRICTED_XML;
            break;

        case NGX_XMPP_UP_HEADER:
        case NGX_ERROR:
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent invalid XML, closing stream "
                          "with \"not-well-formed\" error");
            err = NGX_XMPP_ERR_NOT_WELL_FORMED;
            break;

        default: /* a complete child of the stream, or its end */
            sc->lt = NULL;
            sc->start = NULL;
            continue;
        }

        break;
    }

    /*
     * relayed is what precedes the element (or the markup) refused, if it
     * started in these bytes; what the backend got of it before is
     * incomplete, and stays so
     */

    cut = sc->start ? sc->start : (sc->lt ? sc->lt : p);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "mail proxy xmpp relay refused, %uz bytes dropped",
                   (size_t) (last - cut));

    ngx_mail_xmpp_relay_refuse(s, ctx, err);

    return cut;
}


static void
ngx_mail_xmpp_relay_refuse(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    ngx_uint_t err)
{
    ngx_buf_t                 *b;
    ngx_connection_t          *c, *up;
    ngx_mail_core_srv_conf_t  *cscf;

    c = s->connection;
    up = s->proxy->upstream.connection;
    b = s->proxy->buffer;

    ctx->relay->refused = 1;

    /*
     * the stream error follows what the backend sent if that ends between
     * two elements of its stream; otherwise the remote only sees the close
     */

    if (!ctx->relay->up_lost && ctx->up.depth == 1
        && ctx->up.state == sw_text)
    {
        s->out.len = 0;

        if (ngx_mail_xmpp_stream_error(s, c, err) == NGX_OK) {

            if ((size_t) (b->end - b->last) < s->out.len) {
                b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
                b->pos = b->start;
            }

            if ((size_t) (b->end - b->last) >= s->out.len) {
                b->last = ngx_cpymem(b->last, s->out.data, s->out.len);
            }
        }

        s->out.len = 0;
    }

    /*
     * the backend's side reports its end: the relay sends the rest to the
     * remote, then ends the session; a remote that does not read it has
     * the "timeout" of the mail server (on the backend's write event,
     * which the relay does not use for timers)
     */

    up->read->ready = 0;
    up->read->eof = 1;

    ngx_post_event(c->write, &ngx_posted_events);

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    ngx_add_timer(up->write, cscf->timeout);
}
