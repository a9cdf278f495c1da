
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

        ctx->up_state = 0;
        ctx->up_depth = 0;
        ctx->up_start = NULL;

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
                ctx->up_start = NULL;
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
                ctx->up_start = NULL;
                continue;

            case NGX_XMPP_UP_SUCCESS:

                if (s->mail_state != ngx_xmpp_proxy_auth) {
                    goto unexpected;
                }

                /* relay the backend's <success/> to the client */

                b->pos = ctx->up_start;

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
                ngx_log_error(NGX_LOG_ERR, c->log, 0,
                              "upstream sent stream error \"%*s\"",
                              (size_t) (b->pos - ctx->up_start),
                              ctx->up_start);
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

    ngx_log_error(NGX_LOG_ERR, c->log, 0,
                  "upstream sent unexpected element \"%*s\"",
                  (size_t) (b->pos - ctx->up_start), ctx->up_start);
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

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "mail proxy xmpp login \"%V\" to \"%V\"",
                   &ctx->localpart, &ctx->domain);

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

    len = last - ctx->up_start;

    ngx_log_error(NGX_LOG_ERR, c->log, 0,
                  "upstream rejected login: \"%*s\"", len, ctx->up_start);

    p = ngx_pnalloc(c->pool, len);
    if (p == NULL) {
        ngx_mail_xmpp_proxy_error(s);
        return;
    }

    ngx_memcpy(p, ctx->up_start, len);

    ngx_close_connection(s->proxy->upstream.connection);
    s->proxy = NULL;

    /* the backend's own failure goes to the client, who may retry */

    s->out.data = p;
    s->out.len = len;

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    if (++s->errors >= cscf->max_errors) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client made too many failed authentication attempts");

        if (ngx_mail_xmpp_stream_error(s, c, NGX_XMPP_ERR_POLICY_VIOLATION)
            != NGX_OK)
        {
            ngx_mail_close_connection(c);
            return;
        }

        s->quit = 1;
    }

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


/*
 * A small tokenizer for what the backend sends before authentication
 * completes: the stream header, then complete child elements of the
 * stream.  It tracks depth only and reports each top-level child by its
 * local name; the backend is trusted to send well-formed XML, anything
 * it cannot follow is an error.
 */

ngx_int_t
ngx_mail_xmpp_parse_upstream(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    ngx_buf_t *b)
{
    u_char      ch, *p, *local, *keep;
    size_t      len;
    ngx_uint_t  child;
    enum {
        sw_text = 0,
        sw_lt,
        sw_name,
        sw_tag,
        sw_quote,
        sw_empty,
        sw_end,
        sw_skip
    } state;

    state = ctx->up_state;

    for (p = b->pos; p < b->last; p++) {
        ch = *p;

        switch (state) {

        case sw_text:
            if (ch == '<') {
                ctx->up_lt = p;
                state = sw_lt;
                break;
            }

            if (ctx->up_depth == 0
                && !(ch == ' ' || ch == '\t' || ch == CR || ch == LF))
            {
                /* text before the stream header: not XMPP at all */
                return NGX_ERROR;
            }

            break;

        case sw_lt:

            if (ch == '/') {
                state = sw_end;
                break;
            }

            if (ch == '?' || ch == '!') {
                state = sw_skip;
                break;
            }

            if (ctx->up_depth == 1) {
                ctx->up_start = ctx->up_lt;
            }

            ctx->up_name_len = 0;
            ctx->up_name[ctx->up_name_len++] = ch;
            state = sw_name;
            break;

        case sw_name:

            if (ch == ' ' || ch == '\t' || ch == CR || ch == LF) {
                state = sw_tag;
                break;
            }

            if (ch == '/') {
                state = sw_empty;
                break;
            }

            if (ch == '>') {
                goto start_tag;
            }

            if (ctx->up_name_len < NGX_MAIL_XMPP_NAME_LEN) {
                ctx->up_name[ctx->up_name_len++] = ch;
            }

            break;

        case sw_tag:

            if (ch == '\'' || ch == '"') {
                ctx->up_quote = ch;
                state = sw_quote;
                break;
            }

            if (ch == '/') {
                state = sw_empty;
                break;
            }

            if (ch == '>') {
                goto start_tag;
            }

            break;

        case sw_quote:
            if (ch == ctx->up_quote) {
                state = sw_tag;
            }

            break;

        case sw_empty:

            if (ch != '>') {
                return NGX_ERROR;
            }

            if (ctx->up_depth == 0) {
                return NGX_ERROR;
            }

            state = sw_text;

            if (ctx->up_depth == 1) {
                goto name;
            }

            break;

        case sw_end:

            if (ch != '>') {
                break;
            }

            state = sw_text;

            if (ctx->up_depth == 0) {
                return NGX_ERROR;
            }

            if (--ctx->up_depth == 0) {
                b->pos = p + 1;
                ctx->up_state = state;
                return NGX_XMPP_UP_END;
            }

            if (ctx->up_depth == 1) {
                goto complete;
            }

            break;

        case sw_skip:
            if (ch == '>') {
                state = sw_text;
            }

            break;
        }

        continue;

    start_tag:

        state = sw_text;

        if (ctx->up_depth == 0) {
            local = ngx_strlchr(ctx->up_name,
                                ctx->up_name + ctx->up_name_len, ':');
            local = local ? local + 1 : ctx->up_name;
            len = ctx->up_name + ctx->up_name_len - local;

            if (len != 6 || ngx_strncmp(local, "stream", 6) != 0) {
                /* not an XMPP stream header, e.g. an HTML page */
                return NGX_ERROR;
            }

            ctx->up_depth = 1;
            b->pos = p + 1;
            ctx->up_state = state;
            return NGX_XMPP_UP_HEADER;
        }

        if (ctx->up_depth++ == 1) {
            goto name;
        }

        continue;

    name:

        local = ngx_strlchr(ctx->up_name, ctx->up_name + ctx->up_name_len,
                            ':');
        local = local ? local + 1 : ctx->up_name;
        len = ctx->up_name + ctx->up_name_len - local;

        if (len == 8 && ngx_strncmp(local, "features", 8) == 0) {
            child = NGX_XMPP_UP_FEATURES;

        } else if (len == 7 && ngx_strncmp(local, "success", 7) == 0) {
            child = NGX_XMPP_UP_SUCCESS;

        } else if (len == 7 && ngx_strncmp(local, "failure", 7) == 0) {
            child = NGX_XMPP_UP_FAILURE;

        } else if (len == 5 && ngx_strncmp(local, "error", 5) == 0) {
            child = NGX_XMPP_UP_ERROR;

        } else {
            child = NGX_XMPP_UP_OTHER;
        }

        ctx->up_child = child;

        if (ctx->up_depth == 2) {
            /* a start tag: wait for its end */
            continue;
        }

    complete:

        b->pos = p + 1;
        ctx->up_state = state;

        return ctx->up_child;
    }

    ctx->up_state = state;

    if (ctx->server && s->mail_state == ngx_xmpp_proxy_features) {
        /* the header and the features are relayed: keep everything */
        b->pos = b->last;
        return NGX_AGAIN;
    }

    /*
     * all input is consumed: keep only an unfinished child of the stream,
     * which may have to be relayed to the client, and compact the buffer
     */

    keep = ctx->up_start;

    if (keep == NULL && state == sw_lt) {
        keep = ctx->up_lt;
    }

    if (keep) {
        len = b->last - keep;
        ngx_memmove(b->start, keep, len);

        if (ctx->up_lt >= keep) {
            ctx->up_lt -= keep - b->start;
        }

        if (ctx->up_start) {
            ctx->up_start = b->start;
        }

        b->last = b->start + len;

    } else {
        b->last = b->start;
    }

    b->pos = b->last;

    return NGX_AGAIN;
}
