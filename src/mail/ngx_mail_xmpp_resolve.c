
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


/*
 * The servers of a remote domain, for an outgoing server-to-server stream
 * that auth_http approved without naming a server: the SRV records of
 * _xmpps-server._tcp.DOMAIN (XEP-0368, direct TLS), then those of
 * _xmpp-server._tcp.DOMAIN (STARTTLS), each set by priority and weight
 * (the order of nginx's resolver, RFC 2782); without any, the domain's
 * own address on 5269 (RFC 6120 3.2.2).  The stream goes to the first;
 * when a server fails before the stream is relayed, to the next
 * (ngx_mail_xmpp_resolve_next()), at most NGX_MAIL_XMPP_TARGETS of them.
 */


static void ngx_mail_xmpp_resolve_handler(ngx_resolver_ctx_t *ctx);
static void ngx_mail_xmpp_resolve_connect(ngx_mail_session_t *s);
static void ngx_mail_xmpp_resolve_block(ngx_event_t *rev);
static void ngx_mail_xmpp_resolve_cleanup(void *data);


static ngx_str_t  ngx_mail_xmpp_srv_services[] = {
    ngx_string("xmpps-server"),
    ngx_string("xmpp-server"),
    ngx_null_string
};


void
ngx_mail_xmpp_resolve(ngx_mail_session_t *s, ngx_uint_t step)
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

    if (ctx->targets == NULL) {
        ctx->targets = ngx_pcalloc(c->pool,
                                   NGX_MAIL_XMPP_TARGETS * sizeof(ngx_addr_t));
        if (ctx->targets == NULL) {
            goto failed;
        }
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
    rctx->service = ngx_mail_xmpp_srv_services[step];
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
                   "xmpp resolve \"%V\", service \"%V\"", &ctx->host,
                   &rctx->service);

    if (ngx_resolve_name(rctx) != NGX_OK) {
        s->resolver_ctx = NULL;
        goto failed;
    }

    return;

failed:

    ngx_mail_xmpp_stream_close(s, s->connection,
                               NGX_XMPP_ERR_REMOTE_CONNECTION);
}


static void
ngx_mail_xmpp_resolve_handler(ngx_resolver_ctx_t *rctx)
{
    size_t                 len;
    ngx_uint_t             i, step, level;
    ngx_addr_t            *peer;
    ngx_connection_t      *c;
    ngx_mail_session_t    *s;
    ngx_mail_xmpp_ctx_t   *ctx;
    u_char                 text[NGX_SOCKADDR_STRLEN];

    s = rctx->data;
    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    for (step = 0; ngx_mail_xmpp_srv_services[step].len; step++) {
        if (rctx->service.data == ngx_mail_xmpp_srv_services[step].data) {
            break;
        }
    }

    if (rctx->state || rctx->naddrs == 0) {

        level = (step < 2) ? NGX_LOG_INFO : NGX_LOG_ERR;

        ngx_log_error(level, c->log, 0,
                      "\"%V\"%s%V could not be resolved (%i: %s)",
                      &ctx->host, (step < 2) ? " SRV " : "", &rctx->service,
                      rctx->state, ngx_resolver_strerror(rctx->state));
    }

    for (i = 0;
         rctx->state == NGX_OK && i < rctx->naddrs
         && ctx->ntargets < NGX_MAIL_XMPP_TARGETS;
         i++)
    {
        peer = &ctx->targets[ctx->ntargets];

        peer->socklen = rctx->addrs[i].socklen;
        peer->sockaddr = ngx_palloc(c->pool, peer->socklen);
        if (peer->sockaddr == NULL) {
            goto failed;
        }

        ngx_memcpy(peer->sockaddr, rctx->addrs[i].sockaddr, peer->socklen);

        if (step == 2) {
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

        if (step == 0) {
            ctx->direct |= 1 << ctx->ntargets;
        }

        ctx->ntargets++;
    }

    ngx_resolve_name_done(rctx);
    s->resolver_ctx = NULL;

    /* both SRV record sets, then the address only if neither had one */

    if (step == 0 || (step == 1 && ctx->ntargets == 0)) {
        ngx_mail_xmpp_resolve(s, step + 1);
        return;
    }

    if (ctx->ntargets == 0) {
        ngx_mail_xmpp_stream_close(s, s->connection,
                                   NGX_XMPP_ERR_REMOTE_CONNECTION);
        return;
    }

    ctx->target = 0;

    ngx_mail_xmpp_resolve_connect(s);
    return;

failed:

    ngx_resolve_name_done(rctx);
    s->resolver_ctx = NULL;

    ngx_mail_xmpp_stream_close(s, s->connection,
                               NGX_XMPP_ERR_REMOTE_CONNECTION);
}


ngx_int_t
ngx_mail_xmpp_resolve_next(ngx_mail_session_t *s)
{
    ngx_mail_xmpp_ctx_t  *ctx;

    /* the server tried failed before the stream was relayed */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (ctx->target + 1 >= ctx->ntargets) {
        return NGX_DECLINED;
    }

    ctx->target++;
    ctx->login_state = ngx_xmpp_proxy_start;

    ngx_mail_xmpp_resolve_connect(s);

    return NGX_OK;
}


static void
ngx_mail_xmpp_resolve_connect(ngx_mail_session_t *s)
{
    ngx_addr_t           *peer;
    ngx_mail_xmpp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    peer = &ctx->targets[ctx->target];

    ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                  "server %ui of %ui of \"%V\": %V, %s",
                  ctx->target + 1, ctx->ntargets, &ctx->host, &peer->name,
                  (ctx->direct & (1 << ctx->target)) ? "direct TLS"
                                                     : "STARTTLS");

    ngx_mail_proxy_init(s, peer);
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
ngx_mail_xmpp_resolve_cleanup(void *data)
{
    ngx_mail_session_t  *s = data;

    /* the session ended while the resolver worked */

    if (s->resolver_ctx) {
        ngx_resolve_name_done(s->resolver_ctx);
        s->resolver_ctx = NULL;
    }
}
