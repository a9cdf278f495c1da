
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
 * where the upstream is a remote domain's server.  The handshake sends
 * the domain as SNI; the certificate must chain to a trusted CA and name
 * the domain (RFC 6125 DNS-ID, as ngx_ssl_check_host() checks it), unless
 * "xmpp_proxy_ssl_verify off" lets dialback alone authenticate the
 * remote.
 */


static void ngx_mail_xmpp_upstream_ssl_free(void *data);


ngx_int_t
ngx_mail_xmpp_upstream_ssl_init(ngx_conf_t *cf, ngx_mail_xmpp_srv_conf_t *xcf)
{
    ngx_pool_cleanup_t  *cln;

    xcf->proxy_ssl_ctx = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (xcf->proxy_ssl_ctx == NULL) {
        return NGX_ERROR;
    }

    xcf->proxy_ssl_ctx->log = cf->log;

    if (ngx_ssl_create(xcf->proxy_ssl_ctx, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3,
                       NULL)
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

    if (!xcf->proxy_ssl_verify) {
        return NGX_OK;
    }

    if (xcf->proxy_ssl_trusted_certificate.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"xmpp_proxy_ssl_trusted_certificate\" for "
                           "\"xmpp_proxy_ssl_verify\"");
        return NGX_ERROR;
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
ngx_mail_xmpp_upstream_ssl_start(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name, ngx_uint_t alpn,
    ngx_connection_handler_pt handler)
{
    u_char              *sni;
    ngx_int_t            rc;
    ngx_pool_cleanup_t  *cln;

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

    /* direct TLS (XEP-0368): ALPN "xmpp-server" */

    if (alpn
        && SSL_set_alpn_protos(c->ssl->connection,
                               (u_char *) "\x0bxmpp-server", 12)
           != 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0, "SSL_set_alpn_protos() failed");
        return NGX_ERROR;
    }

#endif

    c->ssl->handler = handler;
    c->ssl->save_session = NULL;

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

    if (!xcf->proxy_ssl_verify) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "certificate of upstream \"%V\" not verified "
                      "(xmpp_proxy_ssl_verify off): dialback only", name);
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
    SSL_free(data);
}

#endif
