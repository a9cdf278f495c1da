
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
 * ssl_certificate is used.  Only host names select a certificate, so
 * every name this file logs is a host name.
 */


static int ngx_mail_xmpp_cert_cb(ngx_ssl_conn_t *ssl_conn, void *arg);
static int ngx_mail_xmpp_cert_cached(ngx_ssl_conn_t *ssl_conn,
    ngx_connection_t *c, ngx_mail_xmpp_srv_conf_t *xcf, u_char *name,
    size_t len);
static ngx_mail_xmpp_cert_t *ngx_mail_xmpp_find_cert(
    ngx_mail_xmpp_srv_conf_t *xcf, u_char *name, size_t len);
static ngx_int_t ngx_mail_xmpp_lookup_allowed(ngx_mail_xmpp_srv_conf_t *xcf,
    u_char *name, size_t len);
static ngx_mail_xmpp_cached_t *ngx_mail_xmpp_cache_get(
    ngx_mail_xmpp_srv_conf_t *xcf, u_char *name, size_t len);
static ngx_mail_xmpp_cached_t *ngx_mail_xmpp_cache_add(
    ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name);
static void ngx_mail_xmpp_cache_store(ngx_mail_xmpp_srv_conf_t *xcf,
    ngx_mail_xmpp_cached_t *cached, ngx_uint_t list, time_t valid);
static void ngx_mail_xmpp_cache_delete(ngx_mail_xmpp_cert_cache_t *cache,
    ngx_mail_xmpp_cached_t *cached);
static void ngx_mail_xmpp_cache_cleanup(void *data);
static ngx_mail_xmpp_lookup_t *ngx_mail_xmpp_lookup_create(
    ngx_mail_xmpp_srv_conf_t *xcf, u_char *name, size_t len, ngx_log_t *log);
static void ngx_mail_xmpp_lookup_done(ngx_mail_xmpp_lookup_t *lu,
    ngx_int_t rc);
static ngx_int_t ngx_mail_xmpp_lookup_pem(ngx_mail_xmpp_lookup_t *lu,
    ngx_mail_xmpp_cached_t *cached);
static int ngx_mail_xmpp_lookup_password(char *buf, int size, int rwflag,
    void *userdata);
static void ngx_mail_xmpp_lookup_cleanup(void *data);
static void ngx_mail_xmpp_lookup_block_read(ngx_event_t *rev);


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
    ngx_uint_t                 i;
    ngx_pool_cleanup_t        *cln;
    ngx_mail_ssl_conf_t       *sslcf;
    ngx_mail_xmpp_cert_t      *cert;
    ngx_mail_core_srv_conf_t  *cscf;

    if (xcf->certificates == NULL && xcf->lookup_peer == NULL) {
        return NGX_OK;
    }

    cscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_core_module);

    if (cscf->protocol == NULL
        || (cscf->protocol->type != NGX_MAIL_XMPP_PROTOCOL
            && cscf->protocol->type != NGX_MAIL_XMPP_SERVER_PROTOCOL))
    {
        /* IMAP, POP3, SMTP in the same mail{}: ssl_certificate only */

        return NGX_OK;
    }

    sslcf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_ssl_module);

    if (sslcf->ssl.ctx == NULL) {

        /* no TLS in this server (or the mail level itself) */

        return NGX_OK;
    }

    if (xcf->lookup_peer) {
        xcf->cache = ngx_pcalloc(cf->pool, sizeof(ngx_mail_xmpp_cert_cache_t));
        if (xcf->cache == NULL) {
            return NGX_ERROR;
        }

        ngx_rbtree_init(&xcf->cache->rbtree, &xcf->cache->sentinel,
                        ngx_str_rbtree_insert_value);

        for (i = 0; i < NGX_MAIL_XMPP_CACHE_LISTS; i++) {
            ngx_queue_init(&xcf->cache->queue[i]);
        }

        /* the entries live in each worker until it exits */

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_mail_xmpp_cache_cleanup;
        cln->data = xcf->cache;
    }

    cert = xcf->certificates ? xcf->certificates->elts : NULL;

    for (i = 0; cert && i < xcf->certificates->nelts; i++) {

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

    if (s->starttls && s->ctx
        && (s->protocol == NGX_MAIL_XMPP_PROTOCOL
            || s->protocol == NGX_MAIL_XMPP_SERVER_PROTOCOL))
    {

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

    if (ngx_mail_xmpp_check_domain(name, len) != NGX_OK) {

        /* client-controlled bytes: not logged */

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp certificate: not a host name, default");
        return 1;
    }

    cert = ngx_mail_xmpp_find_cert(xcf, name, len);

    if (cert == NULL) {
        return ngx_mail_xmpp_cert_cached(ssl_conn, c, xcf, name, len);
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

    if (xcf->certificates == NULL) {
        return NULL;
    }

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


static int
ngx_mail_xmpp_cert_cached(ngx_ssl_conn_t *ssl_conn, ngx_connection_t *c,
    ngx_mail_xmpp_srv_conf_t *xcf, u_char *name, size_t len)
{
    ngx_mail_xmpp_cached_t  *cached;

    if (xcf->cache == NULL) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp certificate for \"%*s\": default", len, name);
        return 1;
    }

    cached = ngx_mail_xmpp_cache_get(xcf, name, len);

    if (cached == NULL) {

        /*
         * direct TLS cannot wait for the lookup service in the middle of
         * a handshake: this client gets the default certificate, the
         * next one the looked up one
         */

        (void) ngx_mail_xmpp_lookup_create(xcf, name, len, c->log);

        return 1;
    }

    if (cached->key == NULL) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "xmpp certificate for \"%*s\": default (cached)",
                       len, name);
        return 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp certificate for \"%*s\": looked up", len, name);

    SSL_certs_clear(ssl_conn);

    if (SSL_use_cert_and_key(ssl_conn, cached->cert, cached->key,
                             cached->chain, 1)
        == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "SSL_use_cert_and_key(\"%*s\") failed", len, name);
        return 0;
    }

    return 1;
}


char *
ngx_mail_xmpp_certificate_lookup(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_xmpp_srv_conf_t  *xcf = conf;

    ngx_str_t  *value;
    ngx_url_t   u;

    if (xcf->lookup_peer != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 80;
    u.uri_part = 1;

    if (ngx_strncmp(u.url.data, "http://", 7) == 0) {
        u.url.len -= 7;
        u.url.data += 7;
    }

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in xmpp_certificate_lookup \"%V\"",
                               u.err, &u.url);
        }

        return NGX_CONF_ERROR;
    }

    xcf->lookup_peer = u.addrs;

    if (u.family != AF_UNIX) {
        xcf->lookup_host = u.host;

    } else {
        ngx_str_set(&xcf->lookup_host, "localhost");
    }

    xcf->lookup_uri = u.uri;

    if (xcf->lookup_uri.len == 0) {
        ngx_str_set(&xcf->lookup_uri, "/");
    }

    return NGX_CONF_OK;
}


char *
ngx_mail_xmpp_certificate_lookup_domains(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_mail_xmpp_srv_conf_t  *xcf = conf;

    ngx_str_t   *value, *name;
    ngx_uint_t   i, dot;

    if (xcf->lookup_domains == NGX_CONF_UNSET_PTR) {
        xcf->lookup_domains = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (xcf->lookup_domains == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        /* "example.com" itself, ".example.com" also every name below it */

        dot = (value[i].len && value[i].data[0] == '.');

        if (ngx_mail_xmpp_check_domain(value[i].data + dot, value[i].len - dot)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid domain \"%V\" in \"%V\" directive",
                               &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(xcf->lookup_domains);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_strlow(value[i].data, value[i].data, value[i].len);

        *name = value[i];
    }

    return NGX_CONF_OK;
}


/*
 * STARTTLS with a domain that has no static certificate and no cached
 * answer: ask the lookup service before <proceed/>.  Returns NGX_AGAIN
 * when the session waits for the answer (ngx_mail_xmpp_lookup_done()
 * sends <proceed/> then), NGX_DECLINED when there is nothing to ask.
 */

ngx_int_t
ngx_mail_xmpp_lookup_start(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_pool_cleanup_t        *cln;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_xmpp_lookup_t    *lu;
    ngx_mail_xmpp_srv_conf_t  *xcf;

    xcf = ngx_mail_get_module_srv_conf(s, ngx_mail_xmpp_module);
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (xcf->cache == NULL
        || ngx_mail_xmpp_check_domain(ctx->host.data, ctx->host.len) != NGX_OK
        || ngx_mail_xmpp_find_cert(xcf, ctx->host.data, ctx->host.len)
        || ngx_mail_xmpp_cache_get(xcf, ctx->host.data, ctx->host.len))
    {
        return NGX_DECLINED;
    }

    /* without a handler until the lookup runs */

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        return NGX_DECLINED;
    }

    lu = ngx_mail_xmpp_lookup_create(xcf, ctx->host.data, ctx->host.len,
                                     c->log);
    if (lu == NULL) {
        return NGX_DECLINED;
    }

    cln->handler = ngx_mail_xmpp_lookup_cleanup;
    cln->data = ctx;

    lu->session = s;
    ctx->lookup = lu;

    c->log->action = "looking up certificate";
    c->read->handler = ngx_mail_xmpp_lookup_block_read;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_mail_xmpp_lookup_allowed(ngx_mail_xmpp_srv_conf_t *xcf, u_char *name,
    size_t len)
{
    ngx_str_t   *d;
    ngx_uint_t   i;

    if (xcf->lookup_domains == NULL) {
        return NGX_OK;
    }

    d = xcf->lookup_domains->elts;

    for (i = 0; i < xcf->lookup_domains->nelts; i++) {

        if (d[i].data[0] != '.') {
            if (len == d[i].len
                && ngx_strncasecmp(name, d[i].data, len) == 0)
            {
                return NGX_OK;
            }

            continue;
        }

        /* ".example.com": example.com and the names below it */

        if (len == d[i].len - 1
            && ngx_strncasecmp(name, d[i].data + 1, len) == 0)
        {
            return NGX_OK;
        }

        if (len > d[i].len
            && ngx_strncasecmp(name + len - d[i].len, d[i].data, d[i].len)
               == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The cache of each server block in each worker: a red-black tree of
 * domains, each entry in one of three lists (most recently used first):
 * certificates (at most xmpp_certificate_cache_size), no certificate or a
 * failed lookup (xmpp_certificate_cache_negative_size), lookups running
 * (at most xmpp_certificate_lookup_concurrency, never evicted: each ends
 * by its own timers and moves its entry to one of the other lists).
 */

static ngx_mail_xmpp_cached_t *
ngx_mail_xmpp_cache_get(ngx_mail_xmpp_srv_conf_t *xcf, u_char *name,
    size_t len)
{
    u_char                   buf[256];
    uint32_t                 hash;
    ngx_str_t                key;
    ngx_mail_xmpp_cached_t  *cached;

    if (len > sizeof(buf)) {
        return NULL;
    }

    ngx_strlow(buf, name, len);

    key.len = len;
    key.data = buf;

    hash = ngx_crc32_long(buf, len);

    cached = (ngx_mail_xmpp_cached_t *)
                 ngx_str_rbtree_lookup(&xcf->cache->rbtree, &key, hash);

    if (cached == NULL) {
        return NULL;
    }

    if (cached->expire < ngx_time()) {

        /* a placeholder expires too: its lookup then stores nothing */

        ngx_mail_xmpp_cache_delete(xcf->cache, cached);
        return NULL;
    }

    ngx_queue_remove(&cached->queue);
    ngx_queue_insert_head(&xcf->cache->queue[cached->list], &cached->queue);

    return cached;
}


static ngx_mail_xmpp_cached_t *
ngx_mail_xmpp_cache_add(ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name)
{
    ngx_mail_xmpp_cached_t      *cached;
    ngx_mail_xmpp_cert_cache_t  *cache;

    /* a placeholder: one lookup at a time for a domain */

    cache = xcf->cache;

    cached = ngx_calloc(sizeof(ngx_mail_xmpp_cached_t) + name->len,
                        ngx_cycle->log);
    if (cached == NULL) {
        return NULL;
    }

    cached->sn.str.len = name->len;
    cached->sn.str.data = (u_char *) (cached + 1);
    ngx_memcpy(cached->sn.str.data, name->data, name->len);
    cached->sn.node.key = ngx_crc32_long(cached->sn.str.data, name->len);

    cached->list = NGX_MAIL_XMPP_CACHE_PENDING;
    cached->expire = ngx_time() + (time_t) (xcf->lookup_timeout / 1000) + 1;

    ngx_rbtree_insert(&cache->rbtree, &cached->sn.node);
    ngx_queue_insert_head(&cache->queue[cached->list], &cached->queue);
    cache->count[cached->list]++;

    return cached;
}


static void
ngx_mail_xmpp_cache_store(ngx_mail_xmpp_srv_conf_t *xcf,
    ngx_mail_xmpp_cached_t *cached, ngx_uint_t list, time_t valid)
{
    ngx_uint_t                   max;
    ngx_queue_t                 *q;
    ngx_mail_xmpp_cached_t      *old;
    ngx_mail_xmpp_cert_cache_t  *cache;

    /* the answer of a lookup: the entry moves to its list */

    cache = xcf->cache;

    max = (list == NGX_MAIL_XMPP_CACHE_CERT) ? xcf->cache_size
                                             : xcf->cache_negative_size;

    ngx_queue_remove(&cached->queue);
    cache->count[cached->list]--;

    while (cache->count[list] >= max) {
        q = ngx_queue_last(&cache->queue[list]);
        old = ngx_queue_data(q, ngx_mail_xmpp_cached_t, queue);

        ngx_mail_xmpp_cache_delete(cache, old);
    }

    cached->list = list;
    cached->expire = ngx_time() + valid;

    ngx_queue_insert_head(&cache->queue[list], &cached->queue);
    cache->count[list]++;
}


static void
ngx_mail_xmpp_cache_delete(ngx_mail_xmpp_cert_cache_t *cache,
    ngx_mail_xmpp_cached_t *cached)
{
    ngx_rbtree_delete(&cache->rbtree, &cached->sn.node);
    ngx_queue_remove(&cached->queue);
    cache->count[cached->list]--;

    if (cached->lookup) {
        cached->lookup->cached = NULL;
    }

    if (cached->cert) {
        X509_free(cached->cert);
    }

    if (cached->chain) {
        sk_X509_pop_free(cached->chain, X509_free);
    }

    if (cached->key) {
        EVP_PKEY_free(cached->key);
    }

    ngx_free(cached);
}


static void
ngx_mail_xmpp_cache_cleanup(void *data)
{
    ngx_mail_xmpp_cert_cache_t  *cache = data;

    ngx_uint_t               i;
    ngx_queue_t             *q;
    ngx_mail_xmpp_cached_t  *cached;

    for (i = 0; i < NGX_MAIL_XMPP_CACHE_LISTS; i++) {

        while (!ngx_queue_empty(&cache->queue[i])) {
            q = ngx_queue_head(&cache->queue[i]);
            cached = ngx_queue_data(q, ngx_mail_xmpp_cached_t, queue);

            ngx_mail_xmpp_cache_delete(cache, cached);
        }
    }
}


static ngx_mail_xmpp_lookup_t *
ngx_mail_xmpp_lookup_create(ngx_mail_xmpp_srv_conf_t *xcf, u_char *name,
    size_t len, ngx_log_t *log)
{
    ngx_pool_t              *pool;
    ngx_mail_xmpp_lookup_t  *lu;

    if (ngx_mail_xmpp_lookup_allowed(xcf, name, len) != NGX_OK) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                       "xmpp certificate for \"%*s\": default, "
                       "not in xmpp_certificate_lookup_domains", len, name);
        return NULL;
    }

    if (xcf->cache->lookups >= xcf->lookup_concurrency) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "xmpp certificate lookup for \"%*s\" not started: "
                      "%ui lookups running", len, name, xcf->cache->lookups);
        return NULL;
    }

    /*
     * the lookup may outlive the session that started it: its pool and
     * its log lines are the cycle's
     */

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    lu = ngx_pcalloc(pool, sizeof(ngx_mail_xmpp_lookup_t));
    if (lu == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    lu->pool = pool;
    lu->xcf = xcf;

    lu->domain.len = len;
    lu->domain.data = ngx_pnalloc(pool, len);

    if (lu->domain.data == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    ngx_strlow(lu->domain.data, name, len);

    lu->cached = ngx_mail_xmpp_cache_add(xcf, &lu->domain);
    if (lu->cached == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    lu->cached->lookup = lu;
    xcf->cache->lookups++;

    /* from here on every end goes through ngx_mail_xmpp_lookup_done() */

    lu->handler = ngx_mail_xmpp_lookup_done;

    if (ngx_mail_xmpp_lookup_send(lu) != NGX_OK) {
        return NULL;
    }

    return lu;
}




/*
 * The answer: the status line and the header are parsed as they arrive;
 * a 200 answer is complete with Content-Length bytes of body, or at the
 * close without Content-Length; any other status ends the lookup at the
 * end of the header.
 */



/*
 * The status line and the header, a byte at a time from b->pos (the state
 * is kept across reads).  NGX_AGAIN: more is needed; NGX_OK: the header
 * is complete, b->pos is the body; NGX_ERROR: not an HTTP/1.x response,
 * or a Transfer-Encoding, which an HTTP/1.0 request must not get.
 */







static void
ngx_mail_xmpp_lookup_done(ngx_mail_xmpp_lookup_t *lu, ngx_int_t rc)
{
    ngx_mail_session_t        *s;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_xmpp_cached_t    *cached;
    ngx_mail_xmpp_srv_conf_t  *xcf;

    if (lu->peer.connection) {
        ngx_close_connection(lu->peer.connection);
        lu->peer.connection = NULL;
    }

    xcf = lu->xcf;
    xcf->cache->lookups--;

    cached = lu->cached;

    if (cached) {
        cached->lookup = NULL;

        if (rc == NGX_OK) {
            rc = ngx_mail_xmpp_lookup_pem(lu, cached);
        }

        if (rc == NGX_OK) {
            ngx_mail_xmpp_cache_store(xcf, cached, NGX_MAIL_XMPP_CACHE_CERT,
                                      xcf->cache_time);

        } else {

            /* a failure is not asked again for a short time */

            ngx_mail_xmpp_cache_store(xcf, cached,
                                      NGX_MAIL_XMPP_CACHE_NEGATIVE,
                                      (rc == NGX_DECLINED)
                                      ? xcf->cache_time
                                      : xcf->cache_error_time);
        }
    }

    s = lu->session;

    ngx_destroy_pool(lu->pool);

    if (s == NULL) {
        return;
    }

    /* the session waited: TLS may start now, with whatever we have */

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    ctx->lookup = NULL;

    ngx_mail_xmpp_resume(s, ngx_xmpp_starttls);
}


/*
 * The body of a 200 answer: the PEM certificate, its chain and the
 * private key.  An encrypted key is refused (no pass phrase prompt).
 */

static ngx_int_t
ngx_mail_xmpp_lookup_pem(ngx_mail_xmpp_lookup_t *lu,
    ngx_mail_xmpp_cached_t *cached)
{
    u_char          *body;
    size_t           len;
    BIO             *bio;
    X509            *x509, *ca;
    EVP_PKEY        *pkey;
    STACK_OF(X509)  *chain;

    body = lu->response->start + lu->body;
    len = lu->response->last - body;

    if (lu->has_length) {
        len = lu->length;
    }

    x509 = NULL;
    pkey = NULL;
    chain = NULL;

    bio = BIO_new_mem_buf(body, len);
    if (bio == NULL) {
        goto failed;
    }

    x509 = PEM_read_bio_X509_AUX(bio, NULL, ngx_mail_xmpp_lookup_password,
                                 NULL);
    if (x509 == NULL) {
        goto failed;
    }

    chain = sk_X509_new_null();
    if (chain == NULL) {
        goto failed;
    }

    for ( ;; ) {
        ca = PEM_read_bio_X509(bio, NULL, ngx_mail_xmpp_lookup_password, NULL);
        if (ca == NULL) {
            break;
        }

        if (sk_X509_push(chain, ca) == 0) {
            X509_free(ca);
            goto failed;
        }
    }

    ERR_clear_error();
    BIO_free(bio);

    bio = BIO_new_mem_buf(body, len);
    if (bio == NULL) {
        goto failed;
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, ngx_mail_xmpp_lookup_password,
                                   NULL);
    if (pkey == NULL) {
        goto failed;
    }

    if (X509_check_private_key(x509, pkey) != 1) {
        goto failed;
    }

    BIO_free(bio);

    cached->cert = x509;
    cached->chain = chain;
    cached->key = pkey;

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "xmpp certificate lookup for \"%V\": certificate loaded",
                  &lu->domain);

    return NGX_OK;

failed:

    ngx_ssl_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "xmpp certificate lookup for \"%V\": "
                  "invalid certificate or key", &lu->domain);

    if (bio) {
        BIO_free(bio);
    }

    if (x509) {
        X509_free(x509);
    }

    if (chain) {
        sk_X509_pop_free(chain, X509_free);
    }

    if (pkey) {
        EVP_PKEY_free(pkey);
    }

    return NGX_ERROR;
}


static int
ngx_mail_xmpp_lookup_password(char *buf, int size, int rwflag,
    void *userdata)
{
    /*
     * an encrypted key: there is no pass phrase for it, and OpenSSL's
     * default callback would ask for one on the worker's terminal
     */

    return -1;
}


static void
ngx_mail_xmpp_lookup_cleanup(void *data)
{
    ngx_mail_xmpp_ctx_t *ctx = data;

    /*
     * the session ends while its lookup runs: the lookup goes on alone
     * (on the cycle's pool and log, nothing of the session's)
     */

    if (ctx->lookup) {
        ctx->lookup->session = NULL;
        ctx->lookup = NULL;
    }
}


static void
ngx_mail_xmpp_lookup_block_read(ngx_event_t *rev)
{
    ngx_connection_t  *c;

    c = rev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, rev->log, 0,
                   "xmpp certificate lookup block read");

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}

#endif
