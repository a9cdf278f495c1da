
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
 * Per-domain certificates: "xmpp_certificate NAME CERT KEY".  The name
 * is compared with the domain the client asked for: the stream "to" on
 * STARTTLS (known before <proceed/> is sent) or the SNI name on direct
 * TLS.  Several certificates of one name (RSA and ECDSA) are loaded into
 * one SSL_CTX of their own; a certificate callback on the server's
 * SSL_CTX installs them on the connection.  Without a match the server's
 * ssl_certificate is used.
 */


static int ngx_mail_xmpp_cert_cb(ngx_ssl_conn_t *ssl_conn, void *arg);
static ngx_mail_xmpp_cert_t *ngx_mail_xmpp_find_cert(
    ngx_mail_xmpp_srv_conf_t *xcf, u_char *name, size_t len);


char *
ngx_mail_xmpp_certificate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_xmpp_srv_conf_t  *xcf = conf;

    u_char                *p;
    ngx_str_t             *value, *s;
    ngx_uint_t             i, dots;
    ngx_mail_xmpp_cert_t  *cert;

    value = cf->args->elts;

    if (xcf->certificates == NGX_CONF_UNSET_PTR) {
        xcf->certificates = ngx_array_create(cf->pool, 4,
                                             sizeof(ngx_mail_xmpp_cert_t));
        if (xcf->certificates == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    /* a domain, or "*.domain": one label, compared case-insensitively */

    p = value[1].data;
    dots = 0;

    for (i = 0; i < value[1].len; i++) {
        if (p[i] == '.') {
            dots++;
        }

        if (p[i] == '*' && !(i == 0 && value[1].len > 2 && p[1] == '.')) {
            goto invalid;
        }

        if (p[i] <= ' ' || p[i] == '/' || p[i] == ':' || p[i] == '@') {
            goto invalid;
        }

        p[i] = ngx_tolower(p[i]);
    }

    if (value[1].len == 0 || (p[0] == '*' && dots < 2)) {
        goto invalid;
    }

    cert = xcf->certificates->elts;

    for (i = 0; i < xcf->certificates->nelts; i++) {
        if (cert[i].name.len == value[1].len
            && ngx_strncmp(cert[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            cert = &cert[i];
            goto found;
        }
    }

    cert = ngx_array_push(xcf->certificates);
    if (cert == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(cert, sizeof(ngx_mail_xmpp_cert_t));

    cert->name = value[1];
    cert->wildcard = (p[0] == '*');

    if (ngx_array_init(&cert->certs, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK
        || ngx_array_init(&cert->keys, cf->pool, 2, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

found:

    s = ngx_array_push(&cert->certs);
    if (s == NULL) {
        return NGX_CONF_ERROR;
    }

    *s = value[2];

    s = ngx_array_push(&cert->keys);
    if (s == NULL) {
        return NGX_CONF_ERROR;
    }

    *s = value[3];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid domain \"%V\" in \"%V\" directive",
                       &value[1], &cmd->name);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_mail_xmpp_ssl_init(ngx_conf_t *cf, ngx_mail_xmpp_srv_conf_t *xcf)
{
    ngx_uint_t             i;
    ngx_pool_cleanup_t    *cln;
    ngx_mail_ssl_conf_t   *sslcf;
    ngx_mail_xmpp_cert_t  *cert;

    if (xcf->certificates == NULL) {
        return NGX_OK;
    }

    sslcf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_ssl_module);

    if (sslcf->ssl.ctx == NULL) {

        /* no TLS in this server (or the mail level itself) */

        return NGX_OK;
    }

    cert = xcf->certificates->elts;

    for (i = 0; i < xcf->certificates->nelts; i++) {

        if (cert[i].ssl.ctx) {
            /* inherited from the mail level, loaded for another server */
            continue;
        }

        cert[i].ssl.log = cf->log;

        if (ngx_ssl_create(&cert[i].ssl, sslcf->protocols, NULL) != NGX_OK) {
            return NGX_ERROR;
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            ngx_ssl_cleanup_ctx(&cert[i].ssl);
            return NGX_ERROR;
        }

        cln->handler = ngx_ssl_cleanup_ctx;
        cln->data = &cert[i].ssl;

        if (ngx_ssl_certificates(cf, &cert[i].ssl, &cert[i].certs,
                                 &cert[i].keys, sslcf->passwords)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    SSL_CTX_set_cert_cb(sslcf->ssl.ctx, ngx_mail_xmpp_cert_cb, xcf);

    return NGX_OK;
}


static int
ngx_mail_xmpp_cert_cb(ngx_ssl_conn_t *ssl_conn, void *arg)
{
    ngx_mail_xmpp_srv_conf_t  *xcf = arg;

    int                    rc;
    u_char                *name;
    size_t                 len;
    X509                  *x509;
    EVP_PKEY              *pkey;
    SSL_CTX               *ctx;
    ngx_connection_t      *c;
    ngx_mail_session_t    *s;
    ngx_mail_xmpp_ctx_t   *xctx;
    ngx_mail_xmpp_cert_t  *cert;
    STACK_OF(X509)        *chain;

    c = ngx_ssl_get_connection(ssl_conn);
    s = c->data;

    name = NULL;
    len = 0;

    if (s->starttls && s->ctx && s->protocol == NGX_MAIL_XMPP_PROTOCOL) {

        /* STARTTLS: the domain of the stream the client opened */

        xctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

        if (xctx && xctx->host.len) {
            name = xctx->host.data;
            len = xctx->host.len;
        }
    }

#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME

    if (name == NULL) {
        name = (u_char *) SSL_get_servername(ssl_conn,
                                             TLSEXT_NAMETYPE_host_name);
        len = name ? ngx_strlen(name) : 0;
    }

#endif

    if (len == 0) {
        return 1;
    }

    cert = ngx_mail_xmpp_find_cert(xcf, name, len);

    if (cert == NULL) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp certificate for \"%*s\": default", len, name);
        return 1;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp certificate for \"%*s\": \"%V\"",
                   len, name, &cert->name);

    ctx = cert->ssl.ctx;

    SSL_certs_clear(ssl_conn);

    for (rc = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST);
         rc;
         rc = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT))
    {
        x509 = SSL_CTX_get0_certificate(ctx);
        pkey = SSL_CTX_get0_privatekey(ctx);

        if (x509 == NULL || pkey == NULL) {
            continue;
        }

        if (SSL_CTX_get0_chain_certs(ctx, &chain) == 0) {
            chain = NULL;
        }

        if (SSL_use_cert_and_key(ssl_conn, x509, pkey, chain, 1) == 0) {
            ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                          "SSL_use_cert_and_key(\"%V\") failed", &cert->name);
            return 0;
        }
    }

    return 1;
}


static ngx_mail_xmpp_cert_t *
ngx_mail_xmpp_find_cert(ngx_mail_xmpp_srv_conf_t *xcf, u_char *name,
    size_t len)
{
    u_char                *dot;
    size_t                 rest;
    ngx_uint_t             i;
    ngx_mail_xmpp_cert_t  *cert;

    cert = xcf->certificates->elts;

    for (i = 0; i < xcf->certificates->nelts; i++) {
        if (!cert[i].wildcard
            && cert[i].name.len == len
            && ngx_strncasecmp(cert[i].name.data, name, len) == 0)
        {
            return &cert[i];
        }
    }

    /* "*.example.com" matches one label before "example.com" */

    dot = ngx_strlchr(name, name + len, '.');

    if (dot == NULL || dot == name) {
        return NULL;
    }

    rest = name + len - dot;

    for (i = 0; i < xcf->certificates->nelts; i++) {
        if (cert[i].wildcard
            && cert[i].name.len - 1 == rest
            && ngx_strncasecmp(cert[i].name.data + 1, dot, rest) == 0)
        {
            return &cert[i];
        }
    }

    return NULL;
}

#endif
