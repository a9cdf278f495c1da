
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


typedef struct {
    ngx_str_node_t              sn;
    ngx_queue_t                 queue;
    time_t                      expire;
    X509                       *cert;
    STACK_OF(X509)             *chain;
    EVP_PKEY                   *key;        /* NULL: no certificate */
    unsigned                    pending:1;
} ngx_mail_xmpp_cached_t;


struct ngx_mail_xmpp_lookup_s {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_peer_connection_t       peer;
    ngx_buf_t                  *request;
    ngx_buf_t                  *response;
    ngx_str_t                   domain;
    ngx_mail_xmpp_srv_conf_t   *xcf;
    ngx_mail_session_t         *session;    /* NULL: a background lookup */
};


#define NGX_MAIL_XMPP_LOOKUP_MAX  65536


static int ngx_mail_xmpp_cert_cb(ngx_ssl_conn_t *ssl_conn, void *arg);
static int ngx_mail_xmpp_cert_cached(ngx_ssl_conn_t *ssl_conn,
    ngx_connection_t *c, ngx_mail_xmpp_srv_conf_t *xcf, u_char *name,
    size_t len);
static ngx_mail_xmpp_cert_t *ngx_mail_xmpp_find_cert(
    ngx_mail_xmpp_srv_conf_t *xcf, u_char *name, size_t len);
static ngx_int_t ngx_mail_xmpp_lookup_domain(u_char *name, size_t len);
static ngx_mail_xmpp_cached_t *ngx_mail_xmpp_cache_get(
    ngx_mail_xmpp_srv_conf_t *xcf, u_char *name, size_t len);
static ngx_mail_xmpp_cached_t *ngx_mail_xmpp_cache_add(
    ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name, ngx_log_t *log);
static void ngx_mail_xmpp_cache_free(ngx_mail_xmpp_cached_t *cached);
static void ngx_mail_xmpp_cache_cleanup(void *data);
static ngx_mail_xmpp_lookup_t *ngx_mail_xmpp_lookup_create(
    ngx_mail_xmpp_srv_conf_t *xcf, u_char *name, size_t len, ngx_log_t *log);
static void ngx_mail_xmpp_lookup_write_handler(ngx_event_t *wev);
static void ngx_mail_xmpp_lookup_read_handler(ngx_event_t *rev);
static void ngx_mail_xmpp_lookup_error(ngx_mail_xmpp_lookup_t *lu,
    ngx_err_t err, char *what);
static void ngx_mail_xmpp_lookup_done(ngx_mail_xmpp_lookup_t *lu,
    ngx_int_t rc);
static ngx_int_t ngx_mail_xmpp_lookup_parse(ngx_mail_xmpp_lookup_t *lu,
    ngx_mail_xmpp_cached_t *cached);
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
    ngx_uint_t             i;
    ngx_pool_cleanup_t    *cln;
    ngx_mail_ssl_conf_t   *sslcf;
    ngx_mail_xmpp_cert_t  *cert;

    if (xcf->certificates == NULL && xcf->lookup_peer == NULL) {
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
        ngx_queue_init(&xcf->cache->queue);

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

    if (xcf->cache == NULL || ngx_mail_xmpp_lookup_domain(name, len) != NGX_OK)
    {
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

        (void) ngx_mail_xmpp_lookup_create(xcf, name, len, ngx_cycle->log);

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
        || ngx_mail_xmpp_lookup_domain(ctx->host.data, ctx->host.len)
           != NGX_OK
        || ngx_mail_xmpp_find_cert(xcf, ctx->host.data, ctx->host.len)
        || ngx_mail_xmpp_cache_get(xcf, ctx->host.data, ctx->host.len))
    {
        return NGX_DECLINED;
    }

    lu = ngx_mail_xmpp_lookup_create(xcf, ctx->host.data, ctx->host.len,
                                     c->log);
    if (lu == NULL) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_mail_xmpp_lookup_done(lu, NGX_ERROR);
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
ngx_mail_xmpp_lookup_domain(u_char *name, size_t len)
{
    size_t  i;

    /* only host names (A-labels) are looked up, nothing to escape */

    if (len == 0 || len > 253) {
        return NGX_DECLINED;
    }

    for (i = 0; i < len; i++) {
        if (!((name[i] | 0x20) >= 'a' && (name[i] | 0x20) <= 'z')
            && !(name[i] >= '0' && name[i] <= '9')
            && name[i] != '-' && name[i] != '.')
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_mail_xmpp_cached_t *
ngx_mail_xmpp_cache_get(ngx_mail_xmpp_srv_conf_t *xcf, u_char *name,
    size_t len)
{
    u_char                  buf[256];
    uint32_t                hash;
    ngx_str_t               key;
    ngx_mail_xmpp_cached_t  *cached;

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
        ngx_rbtree_delete(&xcf->cache->rbtree, &cached->sn.node);
        ngx_queue_remove(&cached->queue);
        xcf->cache->count--;
        ngx_mail_xmpp_cache_free(cached);
        return NULL;
    }

    ngx_queue_remove(&cached->queue);
    ngx_queue_insert_head(&xcf->cache->queue, &cached->queue);

    return cached;
}


static ngx_mail_xmpp_cached_t *
ngx_mail_xmpp_cache_add(ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name,
    ngx_log_t *log)
{
    ngx_queue_t             *q;
    ngx_mail_xmpp_cached_t  *cached;

    while (xcf->cache->count >= xcf->cache_size) {
        q = ngx_queue_last(&xcf->cache->queue);
        cached = ngx_queue_data(q, ngx_mail_xmpp_cached_t, queue);

        if (cached->pending) {
            /* the oldest is still being looked up: do not cache */
            return NULL;
        }

        ngx_rbtree_delete(&xcf->cache->rbtree, &cached->sn.node);
        ngx_queue_remove(q);
        xcf->cache->count--;
        ngx_mail_xmpp_cache_free(cached);
    }

    cached = ngx_calloc(sizeof(ngx_mail_xmpp_cached_t) + name->len, log);
    if (cached == NULL) {
        return NULL;
    }

    cached->sn.str.len = name->len;
    cached->sn.str.data = (u_char *) (cached + 1);
    ngx_strlow(cached->sn.str.data, name->data, name->len);
    cached->sn.node.key = ngx_crc32_long(cached->sn.str.data, name->len);

    ngx_rbtree_insert(&xcf->cache->rbtree, &cached->sn.node);
    ngx_queue_insert_head(&xcf->cache->queue, &cached->queue);
    xcf->cache->count++;

    return cached;
}


static void
ngx_mail_xmpp_cache_free(ngx_mail_xmpp_cached_t *cached)
{
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

    ngx_queue_t             *q;
    ngx_mail_xmpp_cached_t  *cached;

    while (!ngx_queue_empty(&cache->queue)) {
        q = ngx_queue_head(&cache->queue);
        cached = ngx_queue_data(q, ngx_mail_xmpp_cached_t, queue);

        ngx_rbtree_delete(&cache->rbtree, &cached->sn.node);
        ngx_queue_remove(q);
        ngx_mail_xmpp_cache_free(cached);
    }

    cache->count = 0;
}


static ngx_mail_xmpp_lookup_t *
ngx_mail_xmpp_lookup_create(ngx_mail_xmpp_srv_conf_t *xcf, u_char *name,
    size_t len, ngx_log_t *log)
{
    ngx_int_t                rc;
    ngx_buf_t               *b;
    ngx_str_t                domain;
    ngx_pool_t              *pool;
    ngx_mail_xmpp_lookup_t  *lu;
    ngx_mail_xmpp_cached_t  *cached;

    domain.len = len;
    domain.data = name;

    /* a placeholder: one lookup at a time for a domain */

    cached = ngx_mail_xmpp_cache_add(xcf, &domain, log);
    if (cached == NULL) {
        return NULL;
    }

    cached->pending = 1;
    cached->expire = ngx_time() + (time_t) (xcf->lookup_timeout / 1000) + 60;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    lu = ngx_pcalloc(pool, sizeof(ngx_mail_xmpp_lookup_t));
    if (lu == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    lu->pool = pool;
    lu->log = log;
    lu->xcf = xcf;
    lu->domain.len = cached->sn.str.len;
    lu->domain.data = ngx_pstrdup(pool, &cached->sn.str);

    b = ngx_create_temp_buf(pool,
                            sizeof("GET ?domain= HTTP/1.0" CRLF) - 1
                            + xcf->lookup_uri.len + len
                            + sizeof("Host: " CRLF) - 1 + xcf->lookup_host.len
                            + sizeof("XMPP-Domain: " CRLF) - 1 + len
                            + sizeof(CRLF) - 1);
    if (lu->domain.data == NULL || b == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    b->last = ngx_sprintf(b->last, "GET %V%c" "domain=%V HTTP/1.0" CRLF
                          "Host: %V" CRLF "XMPP-Domain: %V" CRLF CRLF,
                          &xcf->lookup_uri,
                          ngx_strlchr(xcf->lookup_uri.data,
                                      xcf->lookup_uri.data
                                      + xcf->lookup_uri.len, '?')
                          ? '&' : '?',
                          &lu->domain, &xcf->lookup_host, &lu->domain);
    lu->request = b;

    lu->peer.sockaddr = xcf->lookup_peer->sockaddr;
    lu->peer.socklen = xcf->lookup_peer->socklen;
    lu->peer.name = &xcf->lookup_peer->name;
    lu->peer.get = ngx_event_get_peer;
    lu->peer.log = log;
    lu->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&lu->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "xmpp certificate lookup for \"%V\" failed: "
                      "cannot connect to %V", &lu->domain, lu->peer.name);

        if (lu->peer.connection) {
            ngx_close_connection(lu->peer.connection);
        }

        ngx_destroy_pool(pool);
        return NULL;
    }

    lu->peer.connection->data = lu;
    lu->peer.connection->pool = pool;

    lu->peer.connection->read->handler = ngx_mail_xmpp_lookup_read_handler;
    lu->peer.connection->write->handler = ngx_mail_xmpp_lookup_write_handler;

    ngx_add_timer(lu->peer.connection->read, xcf->lookup_timeout);
    ngx_add_timer(lu->peer.connection->write, xcf->lookup_timeout);

    /* never completes synchronously: the caller may be a TLS handshake */

    if (rc == NGX_OK) {
        ngx_post_event(lu->peer.connection->write, &ngx_posted_events);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                   "xmpp certificate lookup for \"%V\"", &lu->domain);

    return lu;
}


static void
ngx_mail_xmpp_lookup_write_handler(ngx_event_t *wev)
{
    ssize_t                  n, size;
    ngx_connection_t        *c;
    ngx_mail_xmpp_lookup_t  *lu;

    c = wev->data;
    lu = c->data;

    if (wev->timedout) {
        ngx_mail_xmpp_lookup_error(lu, NGX_ETIMEDOUT, "timed out");
        return;
    }

    size = lu->request->last - lu->request->pos;

    if (size == 0) {
        return;
    }

    n = ngx_send(c, lu->request->pos, size);

    if (n == NGX_ERROR) {
        ngx_mail_xmpp_lookup_error(lu, 0, "failed");
        return;
    }

    if (n > 0) {
        lu->request->pos += n;

        if (n == size) {
            wev->handler = ngx_mail_xmpp_lookup_write_handler;

            if (wev->timer_set) {
                ngx_del_timer(wev);
            }

            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_mail_xmpp_lookup_done(lu, NGX_ERROR);
            }

            return;
        }
    }

    if (!wev->timer_set) {
        ngx_add_timer(wev, lu->xcf->lookup_timeout);
    }
}


static void
ngx_mail_xmpp_lookup_read_handler(ngx_event_t *rev)
{
    ssize_t                  n;
    ngx_buf_t               *b;
    ngx_connection_t        *c;
    ngx_mail_xmpp_lookup_t  *lu;

    c = rev->data;
    lu = c->data;

    if (rev->timedout) {
        ngx_mail_xmpp_lookup_error(lu, NGX_ETIMEDOUT, "timed out");
        return;
    }

    if (lu->response == NULL) {
        lu->response = ngx_create_temp_buf(lu->pool, 4096);
        if (lu->response == NULL) {
            ngx_mail_xmpp_lookup_done(lu, NGX_ERROR);
            return;
        }
    }

    for ( ;; ) {
        b = lu->response;

        if (b->last == b->end) {

            /* grow the buffer up to NGX_MAIL_XMPP_LOOKUP_MAX */

            if ((size_t) (b->end - b->start) >= NGX_MAIL_XMPP_LOOKUP_MAX) {
                ngx_log_error(NGX_LOG_ERR, lu->log, 0,
                              "xmpp certificate lookup for \"%V\": "
                              "response too large", &lu->domain);
                ngx_mail_xmpp_lookup_done(lu, NGX_ERROR);
                return;
            }

            b = ngx_create_temp_buf(lu->pool, 2 * (b->end - b->start));
            if (b == NULL) {
                ngx_mail_xmpp_lookup_done(lu, NGX_ERROR);
                return;
            }

            b->last = ngx_cpymem(b->last, lu->response->pos,
                                 lu->response->last - lu->response->pos);
            lu->response = b;
        }

        n = ngx_recv(c, b->last, b->end - b->last);

        if (n > 0) {
            b->last += n;
            continue;
        }

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_mail_xmpp_lookup_done(lu, NGX_ERROR);
            }

            return;
        }

        break;
    }

    /* n == 0 or NGX_ERROR: HTTP/1.0, the response ends with the connection */

    if (n == NGX_ERROR) {
        ngx_mail_xmpp_lookup_error(lu, 0, "failed");
        return;
    }

    ngx_mail_xmpp_lookup_done(lu, NGX_OK);
}


static void
ngx_mail_xmpp_lookup_error(ngx_mail_xmpp_lookup_t *lu, ngx_err_t err,
    char *what)
{
    ngx_log_error(NGX_LOG_ERR, lu->log, err,
                  "xmpp certificate lookup for \"%V\" %s", &lu->domain, what);

    ngx_mail_xmpp_lookup_done(lu, NGX_ERROR);
}


static void
ngx_mail_xmpp_lookup_done(ngx_mail_xmpp_lookup_t *lu, ngx_int_t rc)
{
    ngx_str_t                  domain;
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_xmpp_cached_t    *cached;
    ngx_mail_core_srv_conf_t  *cscf;

    if (lu->peer.connection) {
        ngx_close_connection(lu->peer.connection);
        lu->peer.connection = NULL;
    }

    domain = lu->domain;

    cached = ngx_mail_xmpp_cache_get(lu->xcf, domain.data, domain.len);

    if (cached && cached->pending) {
        cached->pending = 0;

        if (rc == NGX_OK) {
            rc = ngx_mail_xmpp_lookup_parse(lu, cached);
        }

        if (rc == NGX_OK || rc == NGX_DECLINED) {
            cached->expire = ngx_time() + lu->xcf->cache_time;

        } else {
            /* nothing learned: ask again next time */
            cached->expire = 0;
        }
    }

    s = lu->session;

    ngx_destroy_pool(lu->pool);

    if (s == NULL) {
        return;
    }

    /* the session waited: TLS may start now, with whatever we have */

    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    ctx->lookup = NULL;

    c->log->action = "in auth state";
    c->read->handler = ngx_mail_starttls_handler;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    ngx_add_timer(c->read, cscf->timeout);

    ngx_str_set(&s->out, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");

    ngx_mail_send(c->write);

    if (c->destroyed) {
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}


/*
 * The answer: 200 with the PEM certificate chain and the private key in
 * the body, 404 when the domain has no certificate of its own.
 */

static ngx_int_t
ngx_mail_xmpp_lookup_parse(ngx_mail_xmpp_lookup_t *lu,
    ngx_mail_xmpp_cached_t *cached)
{
    u_char          *p, *last, *body;
    BIO             *bio;
    X509            *x509;
    EVP_PKEY        *pkey;
    ngx_int_t        status;
    STACK_OF(X509)  *chain;

    p = lu->response->pos;
    last = lu->response->last;

    if (last - p < 12
        || ngx_strncmp(p, "HTTP/1.", 7) != 0
        || p[8] != ' '
        || (status = ngx_atoi(p + 9, 3)) == NGX_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, lu->log, 0,
                      "xmpp certificate lookup for \"%V\": "
                      "invalid response", &lu->domain);
        return NGX_ERROR;
    }

    if (status == 404) {
        ngx_log_error(NGX_LOG_INFO, lu->log, 0,
                      "xmpp certificate lookup for \"%V\": no certificate",
                      &lu->domain);
        return NGX_DECLINED;
    }

    if (status != 200) {
        ngx_log_error(NGX_LOG_ERR, lu->log, 0,
                      "xmpp certificate lookup for \"%V\": status %i",
                      &lu->domain, status);
        return NGX_ERROR;
    }

    body = NULL;

    for ( /* void */ ; p + 3 < last; p++) {
        if (p[0] == CR && p[1] == LF && p[2] == CR && p[3] == LF) {
            body = p + 4;
            break;
        }
    }

    if (body == NULL) {
        ngx_log_error(NGX_LOG_ERR, lu->log, 0,
                      "xmpp certificate lookup for \"%V\": "
                      "no end of headers", &lu->domain);
        return NGX_ERROR;
    }

    x509 = NULL;
    pkey = NULL;
    chain = NULL;

    bio = BIO_new_mem_buf(body, last - body);
    if (bio == NULL) {
        goto failed;
    }

    x509 = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    if (x509 == NULL) {
        goto failed;
    }

    chain = sk_X509_new_null();
    if (chain == NULL) {
        goto failed;
    }

    for ( ;; ) {
        X509  *ca;

        ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
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

    bio = BIO_new_mem_buf(body, last - body);
    if (bio == NULL) {
        goto failed;
    }

    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
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

    ngx_log_error(NGX_LOG_INFO, lu->log, 0,
                  "xmpp certificate lookup for \"%V\": certificate loaded",
                  &lu->domain);

    return NGX_OK;

failed:

    ngx_ssl_error(NGX_LOG_ERR, lu->log, 0,
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


static void
ngx_mail_xmpp_lookup_cleanup(void *data)
{
    ngx_mail_xmpp_ctx_t *ctx = data;

    ngx_mail_xmpp_lookup_t  *lu;

    /* the session ends while its lookup runs: the lookup goes on alone */

    lu = ctx->lookup;

    if (lu) {
        lu->session = NULL;
        lu->log = ngx_cycle->log;
        lu->peer.log = ngx_cycle->log;

        if (lu->peer.connection) {
            lu->peer.connection->log = ngx_cycle->log;
            lu->peer.connection->read->log = ngx_cycle->log;
            lu->peer.connection->write->log = ngx_cycle->log;
        }

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
