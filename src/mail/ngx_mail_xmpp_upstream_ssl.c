
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


#if (NGX_MAIL_SSL)

/*
 * TLS to the upstream: nginx as the TLS client of the server it proxies
 * to, for the backends' outgoing server-to-server streams (xmpp-server-out),
 * where the upstream is a remote domain's server, and for the backend
 * login of client and incoming server streams ("xmpp_proxy_ssl on" or
 * "starttls", or auth_http's Auth-XMPP-Proxy-SSL).  The handshake sends
 * the name (the domain, or xmpp_proxy_ssl_name) as SNI; the certificate
 * must chain to a trusted CA and name it (RFC 6125 DNS-ID, as
 * ngx_ssl_check_host() checks it), unless "xmpp_proxy_ssl_verify off".
 * The backends' sessions are kept per address and name in the worker
 * (a few, the last used), so that a login resumes the last one.
 */


static void ngx_mail_xmpp_upstream_ssl_free(void *data);
static ngx_mail_xmpp_ssl_session_t *ngx_mail_xmpp_upstream_ssl_find(
    ngx_mail_xmpp_ssl_sessions_t *cache, ngx_peer_connection_t *peer,
    ngx_str_t *name);
static void ngx_mail_xmpp_upstream_ssl_save(ngx_connection_t *c);
static void ngx_mail_xmpp_upstream_ssl_cleanup(void *data);


ngx_int_t
ngx_mail_xmpp_upstream_ssl_init(ngx_conf_t *cf, ngx_mail_xmpp_srv_conf_t *xcf)
{
    ngx_uint_t                     i;
    ngx_pool_cleanup_t            *cln;
    ngx_mail_xmpp_ssl_sessions_t  *cache;

    xcf->proxy_ssl_ctx = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (xcf->proxy_ssl_ctx == NULL) {
        return NGX_ERROR;
    }

    xcf->proxy_ssl_ctx->log = cf->log;

    if (ngx_ssl_create(xcf->proxy_ssl_ctx, xcf->proxy_ssl_protocols, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(xcf->proxy_ssl_ctx);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = xcf->proxy_ssl_ctx;

    /* a client certificate, for backends that authenticate the proxy */

    if (xcf->proxy_ssl_certificate.len) {

        if (xcf->proxy_ssl_certificate_key.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "no \"xmpp_proxy_ssl_certificate_key\" for "
                               "\"xmpp_proxy_ssl_certificate\"");
            return NGX_ERROR;
        }

        if (ngx_ssl_certificate(cf, xcf->proxy_ssl_ctx,
                                &xcf->proxy_ssl_certificate,
                                &xcf->proxy_ssl_certificate_key, NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (xcf->proxy_ssl_session_reuse) {

        if (ngx_ssl_client_session_cache(cf, xcf->proxy_ssl_ctx, 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        cache = ngx_pcalloc(cf->pool, sizeof(ngx_mail_xmpp_ssl_sessions_t));
        if (cache == NULL) {
            return NGX_ERROR;
        }

        ngx_queue_init(&cache->used);
        ngx_queue_init(&cache->free);

        for (i = 0; i < NGX_MAIL_XMPP_SSL_SESSIONS; i++) {
            ngx_queue_insert_tail(&cache->free, &cache->sessions[i].queue);
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_mail_xmpp_upstream_ssl_cleanup;
        cln->data = cache;

        xcf->proxy_ssl_sessions = cache;
    }

    if (xcf->proxy_ssl_trusted_certificate.len == 0) {

        if (xcf->proxy_ssl && xcf->proxy_ssl_verify) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "no \"xmpp_proxy_ssl_trusted_certificate\" "
                               "for \"xmpp_proxy_ssl_verify\"");
            return NGX_ERROR;
        }

        /* TLS only if auth_http asks for it: nothing verifies then */

        return NGX_OK;
    }

    if (ngx_ssl_trusted_certificate(cf, xcf->proxy_ssl_ctx,
                                    &xcf->proxy_ssl_trusted_certificate,
                                    xcf->proxy_ssl_verify_depth)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_mail_xmpp_upstream_ssl_header(ngx_mail_session_t *s, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_uint_t            mode;
    ngx_mail_xmpp_ctx_t  *ctx;

    /* auth_http's "Auth-XMPP-Proxy-SSL: on | starttls | off", per login */

    if (name->len != sizeof("Auth-XMPP-Proxy-SSL") - 1
        || ngx_strncasecmp(name->data, (u_char *) "Auth-XMPP-Proxy-SSL",
                           name->len)
           != 0)
    {
        return NGX_DECLINED;
    }

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (value->len == 2 && ngx_strncasecmp(value->data, (u_char *) "on", 2)
                           == 0)
    {
        mode = NGX_XMPP_PROXY_SSL_ON;

    } else if (value->len == 8
               && ngx_strncasecmp(value->data, (u_char *) "starttls", 8)
                  == 0)
    {
        mode = NGX_XMPP_PROXY_SSL_STARTTLS;

    } else if (value->len == 3
               && ngx_strncasecmp(value->data, (u_char *) "off", 3) == 0)
    {
        mode = NGX_XMPP_PROXY_SSL_OFF;

    } else {
        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "auth http server sent invalid "
                      "\"Auth-XMPP-Proxy-SSL\" header");
        return NGX_ERROR;
    }

    if (ctx->out) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "xmpp auth http proxy ssl: %ui", mode);

    ctx->proxy_ssl = mode + 1;

    return NGX_OK;
}


ngx_int_t
ngx_mail_xmpp_upstream_ssl_start(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name, ngx_uint_t alpn,
    ngx_connection_handler_pt handler)
{
    u_char                       *sni;
    ngx_int_t                     rc;
    ngx_str_t                    *proto;
    ngx_pool_cleanup_t           *cln;
    ngx_mail_xmpp_ctx_t          *ctx;
    ngx_mail_core_srv_conf_t     *cscf;
    ngx_mail_xmpp_ssl_session_t  *ss;

    s->connection->log->action = "SSL handshaking to upstream";

    if (ngx_ssl_create_connection(xcf->proxy_ssl_ctx, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the mail core closes the upstream without a TLS shutdown */

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        SSL_free(c->ssl->connection);
        c->ssl = NULL;
        return NGX_ERROR;
    }

    cln->handler = ngx_mail_xmpp_upstream_ssl_free;
    cln->data = c->ssl->connection;

    sni = ngx_pnalloc(c->pool, name->len + 1);
    if (sni == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(sni, name->data, name->len + 1);

    if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) sni) == 0) {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed", sni);
        return NGX_ERROR;
    }

#ifdef TLSEXT_TYPE_application_layer_protocol_negotiation

    /* direct TLS (XEP-0368): ALPN "xmpp-client" or "xmpp-server" */

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    proto = &cscf->protocol->alpn;

    if (alpn
        && SSL_set_alpn_protos(c->ssl->connection, proto->data, proto->len)
           != 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0, "SSL_set_alpn_protos() failed");
        return NGX_ERROR;
    }

#endif

    c->ssl->handler = handler;
    c->ssl->save_session = NULL;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    ctx->ssl_name = name;

    if (xcf->proxy_ssl_sessions) {
        ss = ngx_mail_xmpp_upstream_ssl_find(xcf->proxy_ssl_sessions,
                                             &s->proxy->upstream, name);

        if (ss && ngx_ssl_set_session(c, ss->session) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp upstream ssl session %s",
                       ss ? "kept" : "none");

        c->ssl->save_session = ngx_mail_xmpp_upstream_ssl_save;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp upstream ssl handshake, sni \"%s\"", sni);

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    /* ended at once (or failed): the handler as if it ended later */

    handler(c);

    return NGX_DONE;
}


ngx_int_t
ngx_mail_xmpp_upstream_ssl_verify(ngx_connection_t *c,
    ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name)
{
    long  rc;

    if (!c->ssl->handshaked) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "TLS handshake with upstream \"%V\" failed", name);
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp upstream ssl session reused: %d",
                   SSL_session_reused(c->ssl->connection));

    if (!xcf->proxy_ssl_verify) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "certificate of upstream \"%V\" not verified "
                      "(xmpp_proxy_ssl_verify off)", name);
        return NGX_OK;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "upstream \"%V\" SSL certificate verify error: "
                      "(%l:%s)", name, rc, X509_verify_cert_error_string(rc));
        return NGX_ERROR;
    }

    if (ngx_ssl_check_host(c, name) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "upstream SSL certificate does not match \"%V\"", name);
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp upstream \"%V\" certificate verified", name);

    return NGX_OK;
}


static void
ngx_mail_xmpp_upstream_ssl_free(void *data)
{
    /*
     * no close_notify is sent, yet the session stays resumable: as
     * ngx_ssl_shutdown() does on a connection it does not shut down
     */

    SSL_set_quiet_shutdown(data, 1);
    SSL_set_shutdown(data, SSL_RECEIVED_SHUTDOWN|SSL_SENT_SHUTDOWN);

    SSL_free(data);
}


static ngx_mail_xmpp_ssl_session_t *
ngx_mail_xmpp_upstream_ssl_find(ngx_mail_xmpp_ssl_sessions_t *cache,
    ngx_peer_connection_t *peer, ngx_str_t *name)
{
    ngx_queue_t                  *q;
    ngx_mail_xmpp_ssl_session_t  *ss;

    for (q = ngx_queue_head(&cache->used);
         q != ngx_queue_sentinel(&cache->used);
         q = ngx_queue_next(q))
    {
        ss = ngx_queue_data(q, ngx_mail_xmpp_ssl_session_t, queue);

        if (ss->name_len == name->len
            && ngx_memcmp(ss->name, name->data, name->len) == 0
            && ngx_cmp_sockaddr(&ss->sockaddr.sockaddr, ss->socklen,
                                peer->sockaddr, peer->socklen, 1)
               == NGX_OK)
        {
            /* the most recently used now, also if no new session comes */

            ngx_queue_remove(q);
            ngx_queue_insert_head(&cache->used, q);

            return ss;
        }
    }

    return NULL;
}


static void
ngx_mail_xmpp_upstream_ssl_save(ngx_connection_t *c)
{
    ngx_queue_t                   *q;
    ngx_ssl_session_t             *session;
    ngx_mail_session_t            *s;
    ngx_peer_connection_t         *peer;
    ngx_mail_xmpp_ctx_t           *ctx;
    ngx_mail_xmpp_srv_conf_t      *xcf;
    ngx_mail_xmpp_ssl_session_t   *ss;
    ngx_mail_xmpp_ssl_sessions_t  *cache;

    /* a new session of the backend (TLS 1.3: a ticket, maybe later) */

    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);

    cache = xcf->proxy_ssl_sessions;
    peer = &s->proxy->upstream;

    if (ctx->ssl_name == NULL
        || ctx->ssl_name->len > NGX_MAIL_XMPP_SSL_NAME_LEN
        || peer->socklen > (socklen_t) sizeof(ngx_sockaddr_t))
    {
        return;
    }

    session = ngx_ssl_get_session(c);
    if (session == NULL) {
        return;
    }

    ss = ngx_mail_xmpp_upstream_ssl_find(cache, peer, ctx->ssl_name);

    if (ss == NULL) {

        if (ngx_queue_empty(&cache->free)) {

            /* the least recently used one goes */

            q = ngx_queue_last(&cache->used);

        } else {
            q = ngx_queue_head(&cache->free);
        }

        ngx_queue_remove(q);

        ss = ngx_queue_data(q, ngx_mail_xmpp_ssl_session_t, queue);

        ss->socklen = peer->socklen;
        ngx_memcpy(&ss->sockaddr, peer->sockaddr, peer->socklen);
        ss->name_len = ctx->ssl_name->len;
        ngx_memcpy(ss->name, ctx->ssl_name->data, ss->name_len);

    } else {
        ngx_queue_remove(&ss->queue);
    }

    if (ss->session) {
        ngx_ssl_free_session(ss->session);
    }

    ss->session = session;

    ngx_queue_insert_head(&cache->used, &ss->queue);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp upstream ssl session saved: %p", session);
}


static void
ngx_mail_xmpp_upstream_ssl_cleanup(void *data)
{
    ngx_mail_xmpp_ssl_sessions_t *cache = data;

    ngx_uint_t  i;

    for (i = 0; i < NGX_MAIL_XMPP_SSL_SESSIONS; i++) {
        if (cache->sessions[i].session) {
            ngx_ssl_free_session(cache->sessions[i].session);
        }
    }
}

#endif
