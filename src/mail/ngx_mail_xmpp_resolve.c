
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


/*
 * The server of a remote domain, for an outgoing server-to-server stream
 * that auth_http approved without naming a server: the SRV records of
 * _xmpp-server._tcp.DOMAIN (RFC 6120 3.2.1: by priority, then weight;
 * the order of nginx's resolver), else the domain's own address on 5269
 * (RFC 6120 3.2.2).  The stream then goes to the first target.
 */


static void ngx_mail_xmpp_resolve_handler(ngx_resolver_ctx_t *ctx);
static void ngx_mail_xmpp_resolve_block(ngx_event_t *rev);
static void ngx_mail_xmpp_resolve_fail(ngx_mail_session_t *s);
static void ngx_mail_xmpp_resolve_cleanup(void *data);


static ngx_str_t  ngx_mail_xmpp_srv_service = ngx_string("xmpp-server");


void
ngx_mail_xmpp_resolve(ngx_mail_session_t *s, ngx_uint_t srv)
{
    ngx_connection_t          *c;
    ngx_resolver_ctx_t        *rctx;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_core_srv_conf_t  *cscf;

    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    c->log->action = "resolving the remote server";

    /* the backend waits for the remote's stream header meanwhile */

    c->read->handler = ngx_mail_xmpp_resolve_block;

    if (cscf->resolver == NULL) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "no \"resolver\" for the server of \"%V\" "
                      "(auth http server named none)", &ctx->host);
        goto failed;
    }

    rctx = ngx_resolve_start(cscf->resolver, NULL);
    if (rctx == NULL) {
        goto failed;
    }

    if (rctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "no resolver defined to resolve \"%V\"", &ctx->host);
        goto failed;
    }

    rctx->name = ctx->host;

    if (srv) {
        rctx->service = ngx_mail_xmpp_srv_service;
    }

    rctx->handler = ngx_mail_xmpp_resolve_handler;
    rctx->data = s;
    rctx->timeout = cscf->resolver_timeout;

    s->resolver_ctx = rctx;

    if (ctx->resolve_cleanup == NULL) {
        ctx->resolve_cleanup = ngx_pool_cleanup_add(c->pool, 0);
        if (ctx->resolve_cleanup == NULL) {
            ngx_resolve_name_done(rctx);
            s->resolver_ctx = NULL;
            goto failed;
        }

        ctx->resolve_cleanup->handler = ngx_mail_xmpp_resolve_cleanup;
        ctx->resolve_cleanup->data = s;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp resolve \"%V\"%s", &ctx->host,
                   srv ? " SRV _xmpp-server._tcp" : "");

    if (ngx_resolve_name(rctx) != NGX_OK) {
        s->resolver_ctx = NULL;
        goto failed;
    }

    return;

failed:

    ngx_mail_xmpp_resolve_fail(s);
}


static void
ngx_mail_xmpp_resolve_handler(ngx_resolver_ctx_t *rctx)
{
    size_t                 len;
    ngx_uint_t             srv, level;
    ngx_addr_t            *peer;
    ngx_connection_t      *c;
    ngx_mail_session_t    *s;
    ngx_mail_xmpp_ctx_t   *ctx;
    u_char                 text[NGX_SOCKADDR_STRLEN];

    s = rctx->data;
    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    srv = (rctx->service.len != 0);

    if (rctx->state || rctx->naddrs == 0) {

        level = srv ? NGX_LOG_INFO : NGX_LOG_ERR;

        ngx_log_error(level, c->log, 0,
                      "%V%s could not be resolved (%i: %s)", &ctx->host,
                      srv ? " SRV _xmpp-server._tcp" : "", rctx->state,
                      ngx_resolver_strerror(rctx->state));

        ngx_resolve_name_done(rctx);
        s->resolver_ctx = NULL;

        if (srv) {
            /* RFC 6120 3.2.2: the domain itself, port 5269 */
            ngx_mail_xmpp_resolve(s, 0);
            return;
        }

        ngx_mail_xmpp_resolve_fail(s);
        return;
    }

    /* the first target: nginx's resolver orders them by priority, weight */

    peer = ngx_pcalloc(c->pool, sizeof(ngx_addr_t));
    if (peer == NULL) {
        goto failed;
    }

    peer->socklen = rctx->addrs[0].socklen;
    peer->sockaddr = ngx_palloc(c->pool, peer->socklen);
    if (peer->sockaddr == NULL) {
        goto failed;
    }

    ngx_memcpy(peer->sockaddr, rctx->addrs[0].sockaddr, peer->socklen);

    if (!srv) {
        ngx_inet_set_port(peer->sockaddr, 5269);
    }

    len = ngx_sock_ntop(peer->sockaddr, peer->socklen, text,
                        NGX_SOCKADDR_STRLEN, 1);

    peer->name.data = ngx_pnalloc(c->pool, len);
    if (peer->name.data == NULL) {
        goto failed;
    }

    peer->name.len = len;
    ngx_memcpy(peer->name.data, text, len);

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "the server of \"%V\" is %V (%s, %ui addresses)",
                  &ctx->host, &peer->name,
                  srv ? "SRV _xmpp-server._tcp" : "address record",
                  rctx->naddrs);

    ngx_resolve_name_done(rctx);
    s->resolver_ctx = NULL;

    ngx_mail_proxy_init(s, peer);
    return;

failed:

    ngx_resolve_name_done(rctx);
    s->resolver_ctx = NULL;

    ngx_mail_xmpp_resolve_fail(s);
}


static void
ngx_mail_xmpp_resolve_block(ngx_event_t *rev)
{
    ngx_connection_t  *c;

    c = rev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp resolve: reading blocked");

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}


static void
ngx_mail_xmpp_resolve_fail(ngx_mail_session_t *s)
{
    /* the backend gets a stream error, after a stream header of nginx's */

    s->out.len = 0;

    if (ngx_mail_xmpp_stream_error(s, s->connection,
                                   NGX_XMPP_ERR_REMOTE_CONNECTION)
        != NGX_OK)
    {
        ngx_mail_close_connection(s->connection);
        return;
    }

    s->quit = 1;

    ngx_mail_send(s->connection->write);
}


static void
ngx_mail_xmpp_resolve_cleanup(void *data)
{
    ngx_mail_session_t  *s = data;

    /* the session ended while the resolver worked */

    if (s->resolver_ctx) {
        ngx_resolve_name_done(s->resolver_ctx);
        s->resolver_ctx = NULL;
    }
}
