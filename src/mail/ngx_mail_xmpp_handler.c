
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


#if (NGX_MAIL_SSL)
static void ngx_mail_xmpp_tls_detect(ngx_event_t *rev);
#endif
static void ngx_mail_xmpp_lingering_close(ngx_event_t *rev);
static ngx_int_t ngx_mail_xmpp_stream(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_xmpp_starttls(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_xmpp_auth(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_xmpp_auth_mech(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_xmpp_auth_plain(ngx_mail_session_t *s,
    ngx_connection_t *c);
#if (NGX_MAIL_SSL)
static ngx_int_t ngx_mail_xmpp_auth_scram(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_xmpp_auth_scram_final(ngx_mail_session_t *s,
    ngx_connection_t *c);
#endif
static ngx_int_t ngx_mail_xmpp_decode(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_str_t *dst);
static ngx_int_t ngx_mail_xmpp_identity(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_str_t *authcid, ngx_str_t *authzid);
static ngx_int_t ngx_mail_xmpp_account(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_str_t *name, ngx_str_t *jid, ngx_uint_t *cond);
static ngx_int_t ngx_mail_xmpp_server_stream(ngx_mail_session_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_mail_xmpp_dialback(ngx_mail_session_t *s,
    ngx_connection_t *c);


static u_char  xmpp_proceed[] =
    "<proceed xmlns='" NGX_XMPP_TLS_NS "'/>";
static u_char  xmpp_tls_failure[] =
    "<failure xmlns='" NGX_XMPP_TLS_NS "'/></stream:stream>";
static u_char  xmpp_challenge[] = "<challenge xmlns='" NGX_XMPP_SASL_NS "'/>";
static u_char  xmpp_stream_end[] = "</stream:stream>";


void
ngx_mail_xmpp_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_core_srv_conf_t  *cscf;
#if (NGX_MAIL_SSL)
    ngx_mail_xmpp_srv_conf_t  *xcf;
#endif

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_mail_xmpp_ctx_t));
    if (ctx == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_set_ctx(s, ctx, ngx_mail_xmpp_module);

    ctx->server = (s->protocol == NGX_MAIL_XMPP_SERVER_PROTOCOL);
    ctx->out = (cscf->protocol
                == ((ngx_mail_module_t *)
                    ngx_mail_xmpp_server_out_module.ctx)->protocol);

    /*
     * The client speaks first: no greeting.  After a PROXY protocol
     * header or a TLS handshake the stream header may already have
     * been read, so start by trying to read.
     */

    c->read->handler = ngx_mail_xmpp_init_protocol;

    if (!c->read->timer_set) {
        ngx_add_timer(c->read, cscf->timeout);
    }

#if (NGX_MAIL_SSL)

    xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);

    if (xcf->tls_detect && c->ssl == NULL && !ctx->out) {

        /* "xmpp_tls_detect": a stream header or a TLS ClientHello */

        c->log->action = "detecting TLS";
        c->read->handler = ngx_mail_xmpp_tls_detect;

        ngx_mail_xmpp_tls_detect(c->read);
        return;
    }

#endif

    ngx_mail_xmpp_init_protocol(c->read);
}


#if (NGX_MAIL_SSL)

static void
ngx_mail_xmpp_tls_detect(ngx_event_t *rev)
{
    u_char               ch;
    ssize_t              n;
    ngx_err_t            err;
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return;
    }

    /*
     * The first byte, left in the socket: 0x16 starts a TLS handshake
     * record, a stream starts with '<' or whitespace.  Anything but a
     * handshake, also the end of the connection or an error, is left to
     * the stream parser, which gives a not-well-formed stream error for
     * garbage as on any plain port.
     */

    n = recv(c->fd, (char *) &ch, 1, MSG_PEEK);

    err = ngx_socket_errno;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0, "xmpp tls detect: %z", n);

    if (n == -1 && err == NGX_EAGAIN) {
        rev->ready = 0;

        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_mail_close_connection(c);
        }

        return;
    }

    if (n != 1 || ch != 0x16) {
        ngx_mail_xmpp_init_protocol(rev);
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0, "xmpp direct tls detected");

    /*
     * direct TLS, as on "listen ... ssl": the mail core's handshake, then
     * ngx_mail_init_session() starts the session again on the TLS
     * connection (certificate by SNI, ALPN, "Auth-SSL")
     */

    s->ssl = 1;

    ngx_mail_init_session_handler(rev);
}

#endif


void
ngx_mail_xmpp_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_xmpp_srv_conf_t  *xcf;
    ngx_mail_core_srv_conf_t  *cscf;

    c = rev->data;

    c->log->action = "in auth state";

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return;
    }

    s = c->data;

    if (s->buffer == NULL) {
        if (ngx_array_init(&s->args, c->pool, 2, sizeof(ngx_str_t))
            == NGX_ERROR)
        {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);

        s->buffer = ngx_create_temp_buf(c->pool, xcf->client_buffer_size);
        if (s->buffer == NULL) {
            ngx_mail_session_internal_server_error(s);
            return;
        }
    }

    /* a new stream: initially, and again after STARTTLS */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    ctx->stream = 0;
    ctx->header_sent = 0;
    ctx->parse.decl = 0;
    ctx->parse.utf8 = 0;
    ctx->parse.element = 0;
    ctx->error = NGX_XMPP_ERR_NONE;
    ctx->parse.db_prefix_len = 0;
    ctx->s2s.remote.len = 0;

    s->state = 0;
    s->mail_state = ngx_xmpp_start;

    if (!rev->timer_set) {
        cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
        ngx_add_timer(rev, cscf->timeout);
    }

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0, "xmpp new stream");

    c->read->handler = ngx_mail_xmpp_auth_state;

    ngx_mail_xmpp_auth_state(rev);
}


void
ngx_mail_xmpp_auth_state(ngx_event_t *rev)
{
    ngx_int_t             rc;
    ngx_uint_t            err;
    ngx_connection_t     *c;
    ngx_mail_session_t   *s;
    ngx_mail_xmpp_ctx_t  *ctx;

    c = rev->data;
    s = c->data;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0, "xmpp auth state");

    if (rev->timedout) {
        rev->timedout = 0;

        if (s->quit) {
            ngx_mail_close_connection(c);
            return;
        }

        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;

        s->out.len = 0;

        if (ngx_mail_xmpp_stream_error(s, c, NGX_XMPP_ERR_CONNECTION_TIMEOUT)
            != NGX_OK)
        {
            ngx_mail_close_connection(c);
            return;
        }

        s->quit = 1;
        ngx_mail_send(c->write);
        return;
    }

    if (s->out.len) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0, "xmpp send handler busy");
        s->blocked = 1;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_close_connection(c);
            return;
        }

        return;
    }

    s->blocked = 0;

    rc = ngx_mail_read_command(s, c);

    if (rc == NGX_AGAIN) {

        if (c->read->ready) {

            /*
             * a read filled the buffer with input that was discarded
             * or moved (whitespace keepalives): the rest is still in the
             * socket, and an edge-triggered event will not come for it
             */

            ngx_post_event(c->read, &ngx_posted_events);
            return;
        }

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        return;
    }

    if (rc == NGX_ERROR) {
        return;
    }

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (rc == NGX_OK) {

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp auth command: %ui in state %ui",
                       s->command, s->mail_state);

        switch (s->command) {

        case NGX_XMPP_STREAM:
            rc = ngx_mail_xmpp_stream(s, c);
            break;

        case NGX_XMPP_STREAM_END:
            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "xmpp client closed stream");
            s->quit = 1;
            ngx_str_set(&s->out, xmpp_stream_end);
            break;

        case NGX_XMPP_STARTTLS:
            rc = ngx_mail_xmpp_starttls(s, c);
            break;

        case NGX_XMPP_AUTH:
            rc = ngx_mail_xmpp_auth(s, c);
            break;

        case NGX_XMPP_DB_RESULT:
        case NGX_XMPP_DB_VERIFY:
            rc = ngx_mail_xmpp_dialback(s, c);
            break;

        case NGX_XMPP_RESPONSE:

            if (s->mail_state == ngx_xmpp_auth_initial) {
                rc = ngx_mail_xmpp_auth_mech(s, c);
                break;
            }

#if (NGX_MAIL_SSL)
            if (s->mail_state == ngx_xmpp_auth_scram) {
                rc = ngx_mail_xmpp_auth_scram_final(s, c);
                break;
            }
#endif

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client sent unexpected SASL response");
            rc = ngx_mail_xmpp_sasl_failure(s, c,
                                            NGX_XMPP_SASL_MALFORMED_REQUEST,
                                            NULL);
            break;

        default: /* NGX_XMPP_ABORT */
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client aborted SASL authentication");

            /* a failed attempt: a loop of <abort/> ends at max_errors */

            rc = ngx_mail_xmpp_sasl_failure(s, c, NGX_XMPP_SASL_ABORTED,
                                            NULL);
            break;
        }
    }

    if (rc == NGX_AGAIN) {
        /* handed over to the relay */
        return;
    }

    if (s->buffer->pos < s->buffer->last) {
        s->blocked = 1;
    }

    switch (rc) {

    case NGX_DONE:
        ngx_mail_xmpp_skip_space(s->buffer);
        ngx_mail_auth(s, c);
        return;

    case NGX_ERROR:
        ngx_mail_session_internal_server_error(s);
        return;

    case NGX_MAIL_PARSE_INVALID_COMMAND:

        err = ctx->error;
        ctx->error = NGX_XMPP_ERR_NONE;

        if (err == NGX_XMPP_ERR_NONE) {
            /* the command did not fit into xmpp_client_buffer */
            err = NGX_XMPP_ERR_POLICY_VIOLATION;
        }

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent invalid XMPP, closing stream with "
                      "\"%V\" error", &ngx_mail_xmpp_stream_errors[err]);

        s->out.len = 0;

        if (ngx_mail_xmpp_stream_error(s, c, err) != NGX_OK) {
            ngx_mail_close_connection(c);
            return;
        }

        s->quit = 1;
        break;
    }

    s->args.nelts = 0;

    if (s->buffer->pos == s->buffer->last) {
        s->buffer->pos = s->buffer->start;
        s->buffer->last = s->buffer->start;

    } else if (s->state == 0) {

        /*
         * pipelined input after a complete command: move it to the
         * start, so that the limit is on one element, however the input
         * was split into reads
         */

        (void) ngx_mail_xmpp_compact(s->buffer, s->buffer->pos);
    }

    if (s->quit) {

        /*
         * the stream ends while the client may still be sending: once
         * the reply is out, a lingering close reads and drops the rest,
         * or the close would reset the connection, and the client might
         * never see the reply
         */

        s->quit = 0;
        s->blocked = 1;
        c->read->handler = ngx_mail_xmpp_lingering_close;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    ngx_mail_send(c->write);
}


void
ngx_mail_xmpp_resume(ngx_mail_session_t *s, ngx_uint_t state)
{
    ngx_connection_t          *c;
    ngx_mail_core_srv_conf_t  *cscf;

    /*
     * The one way back into the auth state, for a layer below that had
     * the session: the backend login, after the backend refused the login
     * or, for xmpp-server, once the backend's features are relayed; the
     * certificate lookup, when STARTTLS waited for it.  What is in s->out
     * is sent, then the client's next command is read in "state", or, in
     * ngx_xmpp_starttls, <proceed/> is sent and TLS starts.
     */

    c = s->connection;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp resume in state %ui", state);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    ngx_add_timer(c->read, cscf->timeout);

    if (state == ngx_xmpp_starttls) {

        /* the certificate lookup is done: the TLS handshake may start */

        c->log->action = "in auth state";
        c->read->handler = ngx_mail_starttls_handler;

        ngx_str_set(&s->out, xmpp_proceed);

        ngx_mail_send(c->write);

        if (c->destroyed) {
            return;
        }

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_close_connection(c);
        }

        return;
    }

    s->mail_state = state;
    s->state = 0;

    c->log->action = (state == ngx_xmpp_dialback) ? "reading dialback request"
                                                 : "in auth state";
    c->read->handler = ngx_mail_xmpp_auth_state;

    ngx_mail_send(c->write);

    if (c->destroyed) {
        return;
    }

    if (c->read->ready || s->buffer->pos < s->buffer->last) {
        ngx_post_event(c->read, &ngx_posted_events);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}


static void
ngx_mail_xmpp_lingering_close(ngx_event_t *rev)
{
    ssize_t               n;
    ngx_buf_t            *b;
    ngx_connection_t     *c;
    ngx_mail_session_t   *s;
    ngx_mail_xmpp_ctx_t  *ctx;

    c = rev->data;
    s = c->data;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp lingering close, sending: %uz", s->out.len);

    if (rev->timedout) {
        ngx_mail_close_connection(c);
        return;
    }

    if (s->out.len == 0 && !ctx->lingering) {

        /* the reply is out: the client gets end of file after it */

        ctx->lingering = 1;
        c->log->action = "closing stream";

#if (NGX_MAIL_SSL)
        if (c->ssl) {
            c->ssl->no_send_shutdown = 1;
        }
#endif

        if (ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN) == -1) {
            ngx_mail_close_connection(c);
            return;
        }

        if (rev->timer_set) {
            ngx_del_timer(rev);
        }

        ngx_add_timer(rev, NGX_MAIL_XMPP_LINGERING_TIME);
    }

    /* what the client still sends is read into the buffer and dropped */

    b = s->buffer;

    while (rev->ready) {
        n = c->recv(c, b->start, b->end - b->start);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_mail_close_connection(c);
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}


static ngx_int_t
ngx_mail_xmpp_stream(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char                    *p;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                 *features;
    ngx_uint_t                 flags;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_xmpp_srv_conf_t  *xcf;
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t       *sslcf;
#endif

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp stream to \"%V\"", &ctx->host);

    ctx->stream = 1;

    if (ctx->server) {
        rc = ngx_mail_xmpp_server_stream(s, c);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    features = ctx->server ? &xcf->server_features : &xcf->features;

#if (NGX_MAIL_SSL)

    if (c->ssl && !ctx->server) {
        features = &xcf->tls_features[
                       SSL_version(c->ssl->connection) == TLS1_3_VERSION];

    } else if (c->ssl == NULL) {
        sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);

        if (sslcf->starttls == NGX_MAIL_STARTTLS_ON) {
            features = ctx->server ? &xcf->server_starttls_features
                                   : &xcf->starttls_features;

        } else if (sslcf->starttls == NGX_MAIL_STARTTLS_ONLY) {
            features = ctx->server ? &xcf->server_starttls_only_features
                                   : &xcf->starttls_only_features;
        }
    }

#endif

    flags = NGX_XMPP_HEADER_ID | (ctx->server ? NGX_XMPP_HEADER_SERVER : 0);

    len = ngx_mail_xmpp_stream_header(NULL, flags, &ctx->host, NULL)
          + features->len;

    p = ngx_pnalloc(c->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->out.data = p;

    p = (u_char *) ngx_mail_xmpp_stream_header(p, flags, &ctx->host, NULL);
    p = ngx_cpymem(p, features->data, features->len);

    s->out.len = p - s->out.data;

    ctx->header_sent = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_xmpp_starttls(ngx_mail_session_t *s, ngx_connection_t *c)
{
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t  *sslcf;

    if (c->ssl == NULL) {
        sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);

        if (sslcf->starttls) {

            /*
             * anything sent after <starttls/> before the TLS handshake
             * is discarded: a defence against command injection
             */

            s->buffer->pos = s->buffer->start;
            s->buffer->last = s->buffer->start;

            if (ngx_mail_xmpp_lookup_start(s, c) == NGX_AGAIN) {
                /* <proceed/> when the certificate lookup is done */
                s->out.len = 0;
                return NGX_OK;
            }

            c->read->handler = ngx_mail_starttls_handler;

            ngx_str_set(&s->out, xmpp_proceed);

            return NGX_OK;
        }
    }

#endif

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "client sent STARTTLS while it is not available");

    ngx_str_set(&s->out, xmpp_tls_failure);
    s->quit = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_xmpp_auth(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_int_t                  rc;
    ngx_str_t                  name;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_xmpp_mech_t      *mech;
    ngx_mail_xmpp_srv_conf_t  *xcf;
    u_char                     buf[NGX_MAIL_XMPP_LOG_LEN];

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    /* nothing of an earlier attempt is left for this one */

    ngx_str_null(&s->login);
    ngx_str_null(&s->passwd);

#if (NGX_MAIL_SSL)
    if (ctx->scram) {
        ngx_mail_xmpp_scram_reset(ctx->scram);
    }
#endif

    if (s->mail_state != ngx_xmpp_start) {

        /*
         * a new <auth/> while a challenge is unanswered: the exchange in
         * progress failed, and counts as a failed attempt, so that a loop
         * of empty <auth/> elements ends as any loop of failures does
         */

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client restarted SASL authentication");

        s->mail_state = ngx_xmpp_start;

        rc = ngx_mail_xmpp_count_error(s, c);

        if (rc != NGX_OK) {
            return (rc == NGX_DONE) ? NGX_OK : NGX_ERROR;
        }
    }

#if (NGX_MAIL_SSL)
    if (ngx_mail_starttls_only(s, c)) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client tried to authenticate before STARTTLS");
        return ngx_mail_xmpp_sasl_failure(s, c,
                                          NGX_XMPP_SASL_ENCRYPTION_REQUIRED,
                                          NULL);
    }
#endif

    xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);

    /* one of the mechanisms offered on this stream: -PLUS only on TLS */

    for (mech = ngx_mail_xmpp_mechanisms; mech->name.len; mech++) {
        if (ctx->parse.mech.len == mech->name.len
            && ngx_strncmp(ctx->parse.mech.data, mech->name.data,
                           mech->name.len)
               == 0
            && (xcf->auth_methods & mech->enabled)
            && (c->ssl || !mech->plus))
        {
            break;
        }
    }

    if (mech->name.len == 0) {
        name = ngx_mail_xmpp_log_value(buf, sizeof(buf), &ctx->parse.mech);
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client requested unsupported SASL mechanism \"%V\"",
                      &name);
        return ngx_mail_xmpp_sasl_failure(s, c,
                                          NGX_XMPP_SASL_INVALID_MECHANISM,
                                          NULL);
    }

    ctx->mech = mech;

    if (ctx->parse.text_start == ctx->parse.text_end) {

        /*
         * no initial response, RFC 6120 section 6.4.2: both PLAIN and
         * SCRAM are client-first, an empty challenge asks for it
         */

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp auth %V: empty challenge", &mech->name);

        ngx_str_set(&s->out, xmpp_challenge);
        s->mail_state = ngx_xmpp_auth_initial;

        return NGX_OK;
    }

    return ngx_mail_xmpp_auth_mech(s, c);
}


static ngx_int_t
ngx_mail_xmpp_auth_mech(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_xmpp_ctx_t  *ctx;

    /* the initial response, in <auth/> or in the <response/> asked for */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    s->mail_state = ngx_xmpp_start;

#if (NGX_MAIL_SSL)
    if (ctx->mech->method != NGX_MAIL_AUTH_PLAIN) {
        return ngx_mail_xmpp_auth_scram(s, c);
    }
#endif

    return ngx_mail_xmpp_auth_plain(s, c);
}


static ngx_int_t
ngx_mail_xmpp_auth_plain(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char     *p, *last, *nul1, *nul2;
    ngx_int_t   rc;
    ngx_str_t   plain, authzid, authcid, passwd;

    s->mail_state = ngx_xmpp_start;

    /*
     * everything is decoded and checked in temporaries: s->login and
     * s->passwd are set only for a message that goes to auth_http
     */

    rc = ngx_mail_xmpp_decode(s, c, &plain);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    /* RFC 4616: [authzid] NUL authcid NUL passwd */

    p = plain.data;
    last = p + plain.len;

    nul1 = ngx_strlchr(p, last, '\0');
    nul2 = nul1 ? ngx_strlchr(nul1 + 1, last, '\0') : NULL;

    if (nul1 == NULL || nul2 == NULL
        || ngx_strlchr(nul2 + 1, last, '\0') != NULL
        || nul2 == nul1 + 1
        || nul2 + 1 == last)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent malformed SASL PLAIN message");
        return ngx_mail_xmpp_sasl_failure(s, c,
                                          NGX_XMPP_SASL_MALFORMED_REQUEST,
                                          NULL);
    }

    authzid.data = p;
    authzid.len = nul1 - p;
    authcid.data = nul1 + 1;
    authcid.len = nul2 - authcid.data;
    passwd.data = nul2 + 1;
    passwd.len = last - passwd.data;

    rc = ngx_mail_xmpp_identity(s, c, &authcid, &authzid);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    s->passwd = passwd;
    s->auth_method = NGX_MAIL_AUTH_PLAIN;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp auth plain: \"%V\"", &s->login);

    return NGX_DONE;
}


#if (NGX_MAIL_SSL)

static ngx_int_t
ngx_mail_xmpp_auth_scram(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_int_t               rc;
    ngx_str_t               msg, user, authzid;
    ngx_uint_t              cond;
    ngx_mail_xmpp_ctx_t    *ctx;
    ngx_mail_xmpp_scram_t  *sc;

    /*
     * client-first: the account is checked and made canonical as for
     * PLAIN, then auth_http is asked for the keys of that account
     */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (ctx->scram == NULL) {
        ctx->scram = ngx_palloc(c->pool, sizeof(ngx_mail_xmpp_scram_t));
        if (ctx->scram == NULL) {
            return NGX_ERROR;
        }
    }

    sc = ctx->scram;

    ngx_mail_xmpp_scram_reset(sc);

    sc->method = ctx->mech->method;
    sc->plus = ctx->mech->plus;

    rc = ngx_mail_xmpp_decode(s, c, &msg);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    if (ngx_mail_xmpp_scram_client_first(sc, c, &msg, &user, &authzid, &cond)
        != NGX_OK)
    {
        return ngx_mail_xmpp_sasl_failure(s, c, cond, NULL);
    }

    rc = ngx_mail_xmpp_identity(s, c, &user, &authzid);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    s->auth_method = sc->method;

    /* no password to send: the auth server must return one (Auth-Pass) */

    ngx_str_set(&s->passwd, "");

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp auth %V: \"%V\"", &ctx->mech->name, &s->login);

    return NGX_DONE;
}


static ngx_int_t
ngx_mail_xmpp_auth_scram_final(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_int_t               rc;
    ngx_str_t               msg;
    ngx_uint_t              cond;
    ngx_mail_xmpp_ctx_t    *ctx;
    ngx_mail_xmpp_scram_t  *sc;

    /* client-final: the proof checked, then the backend login */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    sc = ctx->scram;

    s->mail_state = ngx_xmpp_start;

    rc = ngx_mail_xmpp_decode(s, c, &msg);

    if (rc != NGX_OK) {
        ngx_mail_xmpp_scram_reset(sc);
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    rc = ngx_mail_xmpp_scram_client_final(sc, c, &msg, &cond);

    if (rc != NGX_OK) {
        ngx_mail_xmpp_scram_reset(sc);

        if (rc == NGX_DECLINED) {
            return ngx_mail_xmpp_sasl_failure(s, c, cond, NULL);
        }

        return rc;
    }

    if (sc->cb) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client authenticated with %V, channel binding %V",
                      &ctx->mech->name, ngx_mail_xmpp_scram_cb_name(sc->cb));

    } else {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client authenticated with %V", &ctx->mech->name);
    }

    /* what is left after </response> goes to the backend after <success/> */

    ngx_mail_xmpp_skip_space(s->buffer);

    if (s->buffer->pos == s->buffer->last) {
        s->buffer->pos = s->buffer->start;
        s->buffer->last = s->buffer->start;
    }

    s->args.nelts = 0;
    s->state = 0;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_mail_proxy_init(s, sc->peer);

    return NGX_AGAIN;
}

#endif


static ngx_int_t
ngx_mail_xmpp_decode(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_str_t *dst)
{
    ngx_str_t             text;
    ngx_mail_xmpp_ctx_t  *ctx;

    /*
     * the base64 text of <auth/> or <response/>, "=" being empty;
     * NGX_DECLINED: invalid, the failure is in s->out
     */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    text.data = ctx->parse.text_start;
    text.len = ctx->parse.text_end - ctx->parse.text_start;

    if (text.len == 1 && text.data[0] == '=') {
        text.len = 0;
    }

    if (!ctx->parse.bad_text) {
        dst->data = ngx_pnalloc(c->pool,
                                ngx_base64_decoded_length(text.len) + 1);
        if (dst->data == NULL) {
            return NGX_ERROR;
        }

        if (ngx_decode_base64(dst, &text) == NGX_OK) {
            return NGX_OK;
        }
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "client sent invalid base64 in SASL %V", &ctx->mech->name);

    if (ngx_mail_xmpp_sasl_failure(s, c, NGX_XMPP_SASL_INCORRECT_ENCODING,
                                   NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_mail_xmpp_identity(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_str_t *authcid, ngx_str_t *authzid)
{
    ngx_int_t             rc;
    ngx_str_t             login, jid, name;
    ngx_uint_t            cond;
    ngx_mail_xmpp_ctx_t  *ctx;
    u_char                buf[NGX_MAIL_XMPP_LOG_LEN];

    /*
     * Auth-User is always the account's canonical "localpart@domain", and
     * an authzid must name the same account; NGX_DECLINED: the failure
     * is in s->out
     */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    rc = ngx_mail_xmpp_account(s, c, authcid, &login, &cond);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        name = ngx_mail_xmpp_log_value(buf, sizeof(buf), authcid);
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent authcid \"%V\" that is not an account "
                      "of \"%V\"", &name, &ctx->host);
        goto failed;
    }

    if (authzid->len) {
        rc = ngx_mail_xmpp_account(s, c, authzid, &jid, &cond);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc != NGX_OK
            || jid.len != login.len
            || ngx_strncmp(jid.data, login.data, login.len) != 0)
        {
            name = ngx_mail_xmpp_log_value(buf, sizeof(buf), authzid);
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client sent authzid \"%V\" that is not \"%V\"",
                          &name, &login);
            cond = NGX_XMPP_SASL_INVALID_AUTHZID;
            goto failed;
        }
    }

    s->login = login;

    return NGX_OK;

failed:

    if (ngx_mail_xmpp_sasl_failure(s, c, cond, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_mail_xmpp_account(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_str_t *name, ngx_str_t *jid, ngx_uint_t *cond)
{
    u_char               *p, *q, *last, *at, ch;
    ngx_str_t             domain;
    ngx_mail_xmpp_ctx_t  *ctx;

    /*
     * An authcid (or authzid) as the account it names, in the form that
     * the auth server decides on and the backend logs in as.  Either a
     * localpart or "localpart@domain" with the stream's domain.  The
     * localpart is mapped as PRECIS UsernameCaseMapped (RFC 8265) maps
     * what can be mapped without Unicode tables: fullwidth forms of
     * ASCII (U+FF01-U+FF5E) to ASCII (width mapping), then "A"-"Z" to
     * "a"-"z" (case mapping).  Any other non-ASCII character is refused,
     * since only a Unicode library could tell what the backend makes of
     * it, as are characters that no localpart holds (RFC 7622 section
     * 3.3.1: space, controls, '"', "&", "'", "/", ":", "<", ">", "@").
     */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    last = name->data + name->len;
    at = ngx_strlchr(name->data, last, '@');

    if (at) {
        domain.data = at + 1;
        domain.len = last - domain.data;

        if (ngx_strlchr(domain.data, last, '@')) {
            *cond = NGX_XMPP_SASL_MALFORMED_REQUEST;
            return NGX_DECLINED;
        }

        if (domain.len != ctx->host.len
            || ngx_strncasecmp(domain.data, ctx->host.data, domain.len) != 0)
        {
            /* an account of another domain is not one of this stream */
            *cond = NGX_XMPP_SASL_NOT_AUTHORIZED;
            return NGX_DECLINED;
        }

        last = at;
    }

    *cond = NGX_XMPP_SASL_MALFORMED_REQUEST;

    if (last == name->data || last - name->data > 1023) {
        return NGX_DECLINED;
    }

    /* the mapping never makes a localpart longer */

    jid->data = ngx_pnalloc(c->pool, (last - name->data) + 1 + ctx->host.len);
    if (jid->data == NULL) {
        return NGX_ERROR;
    }

    p = jid->data;

    for (q = name->data; q < last; q++) {
        ch = *q;

        if (ch >= 0x80) {

            /* U+FF01-U+FF5E: EF BC 81 - EF BC BF, EF BD 80 - EF BD 9E */

            if (last - q < 3 || ch != 0xef
                || (q[1] == 0xbc && (q[2] < 0x81 || q[2] > 0xbf))
                || (q[1] == 0xbd && (q[2] < 0x80 || q[2] > 0x9e))
                || (q[1] != 0xbc && q[1] != 0xbd))
            {
                return NGX_DECLINED;
            }

            /* the low 12 bits of the code point, less 0xfee0 - 0xf000 */

            ch = (u_char) ((((q[1] & 0x3f) << 6) | (q[2] & 0x3f)) - 0xee0);
            q += 2;
        }

        if (ch <= 0x20 || ch >= 0x7f
            || ch == '"' || ch == '&' || ch == '\'' || ch == '/'
            || ch == ':' || ch == '<' || ch == '>' || ch == '@')
        {
            return NGX_DECLINED;
        }

        if (ch >= 'A' && ch <= 'Z') {
            ch |= 0x20;
        }

        *p++ = ch;
    }

    *p++ = '@';
    p = ngx_cpymem(p, ctx->host.data, ctx->host.len);

    jid->len = p - jid->data;

    return NGX_OK;
}


/*
 * Server-to-server.  A dialback key is bound to the stream id of the
 * receiving server (XEP-0220), and the backend verifies it with its own
 * stream id: so after TLS the remote server must see the backend's stream
 * header, not one of nginx.  When the remote opens its stream after TLS,
 * nginx asks auth_http which backend serves the "to" domain, opens a
 * stream to it on behalf of the remote, relays the backend's header and
 * features, then checks the remote's first element, a dialback request,
 * forwards it and relays the rest.
 */

static ngx_int_t
ngx_mail_xmpp_server_stream(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char               *p;
    size_t                len;
    ngx_mail_xmpp_ctx_t  *ctx;
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t  *sslcf;

    sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);

    if (c->ssl == NULL && sslcf->starttls != NGX_MAIL_STARTTLS_OFF) {
        /* nginx's own header and STARTTLS first */
        return NGX_DECLINED;
    }
#endif

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (ctx->out && ctx->s2s.remote.len == 0) {

        /*
         * a backend of RFC 3920 (DJabberd) sends no "from" on its
         * outgoing streams: its first dialback element names the local
         * domain, see ngx_mail_xmpp_dialback()
         */

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp outgoing stream without \"from\"");

        /* empty, not NULL: copied into the auth_http request */

        ngx_str_set(&ctx->s2s.remote, "");

    } else if (ngx_mail_xmpp_check_domain(ctx->s2s.remote.data,
                                          ctx->s2s.remote.len)
               != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "remote server sent invalid or no \"from\"");
        ctx->error = NGX_XMPP_ERR_INVALID_FROM;
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    ngx_strlow(ctx->s2s.remote.data, ctx->s2s.remote.data,
               ctx->s2s.remote.len);

    /* both are checked host names: nothing to escape in the request */

    len = sizeof("Auth-XMPP-From: " CRLF "Auth-XMPP-To: " CRLF) - 1
          + ctx->s2s.remote.len + ctx->host.len;

    p = ngx_pnalloc(c->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->auth_http_headers.data = p;
    s->auth_http_headers.len = ngx_sprintf(p, "Auth-XMPP-From: %V" CRLF
                                           "Auth-XMPP-To: %V" CRLF,
                                           &ctx->s2s.remote, &ctx->host)
                               - p;

    /* Auth-User is the remote domain, it is not authenticated yet */

    s->login = ctx->s2s.remote;
    ngx_str_set(&s->passwd, "");
    s->auth_method = NGX_MAIL_AUTH_EXTERNAL;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp server stream from \"%V\" to \"%V\"",
                   &ctx->s2s.remote, &ctx->host);

    return NGX_DONE;
}


static ngx_int_t
ngx_mail_xmpp_dialback(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char               *p;
    u_char                buf[2][NGX_MAIL_XMPP_LOG_LEN];
    size_t                len;
    ngx_str_t             key, v[2];
    ngx_uint_t            verify;
    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    verify = (s->command == NGX_XMPP_DB_VERIFY);

    if (s->mail_state != ngx_xmpp_dialback) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "remote server sent dialback before STARTTLS");
        ctx->error = NGX_XMPP_ERR_NOT_AUTHORIZED;
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    /*
     * The element is forwarded as nginx writes it, not as received: the
     * backend sees known attributes with checked values only.  Its domain
     * pair is the one auth_http approved (the stream's "from" and "to",
     * both checked host names); so is that of every later dialback
     * element, see ngx_mail_xmpp_relay_check().
     */

    if (ctx->out && ctx->s2s.remote.len == 0
        && ngx_mail_xmpp_check_domain(ctx->s2s.db_from.data,
                                      ctx->s2s.db_from.len)
           == NGX_OK)
    {
        /* the stream header had no "from": the local domain from here on */

        p = ngx_pnalloc(c->pool, ctx->s2s.db_from.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(p, ctx->s2s.db_from.data, ctx->s2s.db_from.len);

        ctx->s2s.remote.data = p;
        ctx->s2s.remote.len = ctx->s2s.db_from.len;

        /* as for other server streams: the log names the domain */

        s->login = ctx->s2s.remote;

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "outgoing stream from \"%V\" (its header had no "
                      "\"from\")", &ctx->s2s.remote);
    }

    if (ctx->s2s.db_from.len != ctx->s2s.remote.len
        || ngx_strncasecmp(ctx->s2s.db_from.data, ctx->s2s.remote.data,
                           ctx->s2s.remote.len)
           != 0)
    {
        if (ctx->s2s.db_from.len == 0) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent dialback without \"from\"");

        } else {
            v[0] = ngx_mail_xmpp_log_value(buf[0], sizeof(buf[0]),
                                           &ctx->s2s.db_from);
            v[1] = ngx_mail_xmpp_log_value(buf[1], sizeof(buf[1]),
                                           &ctx->s2s.remote);

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent dialback from \"%V\" "
                          "on a stream from \"%V\"", &v[0], &v[1]);
        }

        ctx->error = NGX_XMPP_ERR_INVALID_FROM;
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    if (ctx->s2s.db_to.len != ctx->host.len
        || ngx_strncasecmp(ctx->s2s.db_to.data, ctx->host.data, ctx->host.len)
           != 0)
    {
        if (ctx->s2s.db_to.len == 0) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent dialback without \"to\"");

        } else {
            v[0] = ngx_mail_xmpp_log_value(buf[0], sizeof(buf[0]),
                                           &ctx->s2s.db_to);
            v[1] = ngx_mail_xmpp_log_value(buf[1], sizeof(buf[1]),
                                           &ctx->host);

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent dialback to \"%V\" "
                          "on a stream to \"%V\"", &v[0], &v[1]);
        }

        ctx->error = NGX_XMPP_ERR_HOST_UNKNOWN;
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    key.data = ctx->parse.text_start;
    key.len = ctx->parse.text_end - ctx->parse.text_start;

    if (ngx_mail_xmpp_check_token(&key, 1024) != NGX_OK
        || (verify && ngx_mail_xmpp_check_token(&ctx->s2s.db_id, 256)
                      != NGX_OK))
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "remote server sent malformed dialback element");
        ctx->error = NGX_XMPP_ERR_BAD_FORMAT;
        return NGX_MAIL_PARSE_INVALID_COMMAND;
    }

    len = sizeof("<db:verify from='' to='' id=''></db:verify>") - 1
          + ctx->s2s.db_from.len + ctx->s2s.db_to.len + ctx->s2s.db_id.len
          + key.len;

    p = ngx_pnalloc(c->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->s2s.dialback.data = p;

    if (verify) {
        p = ngx_sprintf(p, "<db:verify from='%V' to='%V' id='%V'>%V"
                        "</db:verify>",
                        &ctx->s2s.db_from, &ctx->s2s.db_to, &ctx->s2s.db_id,
                        &key);

    } else {
        p = ngx_sprintf(p, "<db:result from='%V' to='%V'>%V</db:result>",
                        &ctx->s2s.db_from, &ctx->s2s.db_to, &key);
    }

    ctx->s2s.dialback.len = p - ctx->s2s.dialback.data;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp dialback %s from \"%V\" to \"%V\"",
                   verify ? "verify" : "result", &ctx->s2s.db_from,
                   &ctx->s2s.db_to);

    ngx_mail_xmpp_proxy_dialback(s);

    return NGX_AGAIN;
}


ngx_int_t
ngx_mail_xmpp_auth_error(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_str_t *code)
{
    ngx_uint_t            i, cond;
    ngx_mail_xmpp_ctx_t  *ctx;

    /*
     * Auth-Error-Code: an RFC 6120 SASL condition name is used as is;
     * SMTP-style codes map by class: 4xx is temporary-auth-failure,
     * anything else not-authorized.
     */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (ctx->server) {

        /*
         * server-to-server: the auth server does not know the domain,
         * or Auth-Error-Code names another stream error condition
         */

        for (i = 1; ngx_mail_xmpp_stream_errors[i].len; i++) {
            if (code->len == ngx_mail_xmpp_stream_errors[i].len
                && ngx_strncasecmp(code->data,
                                   ngx_mail_xmpp_stream_errors[i].data,
                                   code->len)
                   == 0)
            {
                break;
            }
        }

        if (ngx_mail_xmpp_stream_errors[i].len == 0) {
            i = NGX_XMPP_ERR_HOST_UNKNOWN;
        }

        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "%s stream from \"%V\" to \"%V\" refused, \"%V\" error",
                      ctx->out ? "outgoing" : "incoming",
                      &ctx->s2s.remote, &ctx->host,
                      &ngx_mail_xmpp_stream_errors[i]);

        s->out.len = 0;
        s->quit = 1;

        return ngx_mail_xmpp_stream_error(s, s->connection, i);
    }

    cond = NGX_XMPP_SASL_NOT_AUTHORIZED;

    if (code->len) {

        for (i = 0; ngx_mail_xmpp_sasl_conditions[i].len; i++) {
            if (code->len == ngx_mail_xmpp_sasl_conditions[i].len
                && ngx_strncasecmp(code->data,
                                   ngx_mail_xmpp_sasl_conditions[i].data,
                                   code->len)
                   == 0)
            {
                cond = i;
                break;
            }
        }

        if (ngx_mail_xmpp_sasl_conditions[i].len == 0 && code->data[0] == '4') {
            cond = NGX_XMPP_SASL_TEMPORARY_AUTH;
        }
    }

    s->mail_state = ngx_xmpp_start;
    s->out.len = 0;

    return ngx_mail_xmpp_sasl_failure(s, s->connection, cond, text);
}




ngx_int_t
ngx_mail_xmpp_auth_header(ngx_mail_session_t *s, ngx_str_t *name,
    ngx_str_t *value)
{
#if (NGX_MAIL_SSL)
    ngx_int_t             rc;
    ngx_mail_xmpp_ctx_t  *ctx;

    /* TLS to the backend, for this login */

    rc = ngx_mail_xmpp_upstream_ssl_header(s, name, value);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    /* the Auth-SCRAM-* headers of the answer to a SCRAM client-first */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (ctx->scram
        && (s->auth_method == NGX_MAIL_AUTH_SCRAM_SHA1
            || s->auth_method == NGX_MAIL_AUTH_SCRAM_SHA256))
    {
        return ngx_mail_xmpp_scram_header(ctx->scram, s->connection, name,
                                          value);
    }
#endif

    return NGX_OK;
}


void
ngx_mail_xmpp_auth_done(ngx_mail_session_t *s, ngx_addr_t *peer)
{
    ngx_mail_xmpp_ctx_t   *ctx;
#if (NGX_MAIL_SSL)
    ngx_int_t              rc;
    ngx_connection_t      *c;
#endif

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (peer == NULL) {

        /* no server named: an outgoing stream's is found by DNS */

        if (ctx->out) {
            ngx_mail_xmpp_resolve(s, 0);
            return;
        }

        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "no backend: the auth http server named none");
        ngx_mail_session_internal_server_error(s);
        return;
    }

#if (NGX_MAIL_SSL)

    /*
     * auth_http said OK: with PLAIN the backend login starts, with SCRAM
     * nginx sends server-first and checks the proof before it
     */

    if (s->auth_method == NGX_MAIL_AUTH_SCRAM_SHA1
        || s->auth_method == NGX_MAIL_AUTH_SCRAM_SHA256)
    {
        c = s->connection;

        if (s->passwd.len == 0) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "auth http server did not send password for "
                          "the backend login after SCRAM");
            rc = NGX_DECLINED;

        } else {
            rc = ngx_mail_xmpp_scram_server_first(ctx->scram, c, &s->out);
        }

        if (rc == NGX_OK) {
            ctx->scram->peer = peer;
            ngx_mail_xmpp_resume(s, ngx_xmpp_auth_scram);
            return;
        }

        ngx_mail_xmpp_scram_reset(ctx->scram);

        if (rc == NGX_ERROR
            || ngx_mail_xmpp_sasl_failure(s, c, NGX_XMPP_SASL_TEMPORARY_AUTH,
                                          NULL)
               != NGX_OK)
        {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        ngx_mail_xmpp_resume(s, ngx_xmpp_start);
        return;
    }
#endif

    ngx_mail_proxy_init(s, peer);
}
