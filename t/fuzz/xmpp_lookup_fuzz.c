
/*
 * Copyright (C) nginx-xmpp contributors
 *
 * libFuzzer target: the certificate lookup client (ngx_mail_xmpp_lookup.c,
 * with ngx_mail_xmpp_certificate.c: xmpp_certificate_lookup), with the
 * fuzz input as the lookup service's answer: the status line, the
 * header, Content-Length, the body and the PEM in it, the cache the answer
 * goes to.
 *
 * The first byte chooses what happens around the answer:
 *
 *   bits 0-1  the connect: in progress, done at once, refused, failed;
 *   bit 2     the clients close before the answer (the lookups go on
 *             alone, on nothing of the sessions');
 *   bit 3     the service keeps the connection open after its bytes (the
 *             lookup ends by Content-Length or by its timeout);
 *   bit 4     the request is sent in short writes;
 *   bit 5     time passes while the lookups run (their placeholders
 *             expire);
 *   bit 6     the domain is outside xmpp_certificate_lookup_domains.
 *
 * Three STARTTLS sessions ask for three new domains through
 * ngx_mail_xmpp_lookup_start(), with xmpp_certificate_lookup_concurrency
 * 2: the third is refused while the first two run.  The first answer
 * arrives in one read, the second byte by byte, then the third session
 * asks again and gets it in pseudo-random reads (byte by byte: the first
 * 256 bytes, then 64 at a time).  ngx_event_connect_peer()
 * is replaced (ld --wrap) by a connection whose recv and send are the
 * fuzz input and a sink (see xt_fuzz.h).  PEM_read_bio_PrivateKey() is
 * wrapped too: it checks that a password callback is given and refuses
 * (no prompt), and it decodes a body once per input (OpenSSL 3.0 takes
 * over a millisecond for each key, the three lookups get the same bytes).
 *
 * Checked: the request is the one expected, byte for byte; each lookup
 * ends (with a timeout at the latest), its entry leaves the placeholders
 * for the list its answer belongs to, with the time it is kept for;
 * the three answers end alike (the parse does not depend on the split);
 * a waiting session gets exactly <proceed/>; after each input no lookup,
 * placeholder, timer or posted event is left; no read outside a buffer
 * (AddressSanitizer), nothing left behind (LeakSanitizer).
 */


#include "xt_fuzz.h"


#define XT_LOOKUPS         3
#define XT_CACHE_TIME      3600
#define XT_ERROR_TIME      10


static xt_conn_t                  xt_service[XT_LOOKUPS];
static xt_conn_t                  xt_clients[XT_LOOKUPS];
static ngx_uint_t                 xt_connects;
static ngx_int_t                  xt_connect_rc;
static size_t                     xt_max_write;
static ngx_mail_ssl_conf_t        xt_lsslcf;
static void                      *xt_lsrv_conf[4];
static ngx_mail_xmpp_srv_conf_t  *xt_lxcf;
static ngx_uint_t                 xt_names;


typedef struct {
    ngx_uint_t                    found;
    ngx_uint_t                    list;
    ngx_uint_t                    key;
    time_t                        valid;
} xt_outcome_t;


typedef struct {
    u_char                       *data;
    size_t                        len;
    EVP_PKEY                     *key;
    ngx_uint_t                    valid;
} xt_memo_t;


static xt_memo_t                  xt_memo;


ngx_int_t __real_ngx_event_connect_peer(ngx_peer_connection_t *pc);
ngx_int_t __wrap_ngx_event_connect_peer(ngx_peer_connection_t *pc);
EVP_PKEY *__real_PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x,
    pem_password_cb *cb, void *u);
EVP_PKEY *__wrap_PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x,
    pem_password_cb *cb, void *u);


ngx_int_t
__wrap_ngx_event_connect_peer(ngx_peer_connection_t *pc)
{
    xt_conn_t  *x;

    /* a lookup outlives its session: it never logs on the session's log */

    XT_CHECK(pc->log == ngx_cycle->log);
    XT_CHECK(xt_connects < XT_LOOKUPS);

    if (xt_connect_rc == NGX_DECLINED || xt_connect_rc == NGX_ERROR) {
        pc->connection = NULL;
        return xt_connect_rc;
    }

    x = &xt_service[xt_connects++];

    xt_conn_init(x, NULL, NULL);
    x->sink.len = 0;
    x->sink.max_write = xt_max_write;

    x->conn.log = pc->log;
    x->rev.log = pc->log;
    x->wev.log = pc->log;
    x->wev.ready = (xt_connect_rc == NGX_OK);

    pc->connection = &x->conn;

    return xt_connect_rc;
}


EVP_PKEY *
__wrap_PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb,
    void *u)
{
    long       len;
    char      *data, buf[64];
    EVP_PKEY  *key;

    /* an encrypted key never gets a pass phrase, nor a prompt for one */

    XT_CHECK(x == NULL);
    XT_CHECK(cb != NULL);
    XT_CHECK(cb(buf, sizeof(buf), 0, u) <= 0);

    len = BIO_get_mem_data(bp, &data);
    XT_CHECK(len >= 0);

    if (xt_memo.valid
        && xt_memo.len == (size_t) len
        && (len == 0 || ngx_memcmp(xt_memo.data, data, len) == 0))
    {
        if (xt_memo.key) {
            XT_CHECK(EVP_PKEY_up_ref(xt_memo.key) == 1);
        }

        return xt_memo.key;
    }

    key = __real_PEM_read_bio_PrivateKey(bp, x, cb, u);

    if (xt_memo.key) {
        EVP_PKEY_free(xt_memo.key);
    }

    free(xt_memo.data);

    xt_memo.data = malloc(len + 1);
    XT_CHECK(xt_memo.data != NULL);
    ngx_memcpy(xt_memo.data, data, len);
    xt_memo.len = len;
    xt_memo.valid = 1;
    xt_memo.key = key;

    if (key) {
        XT_CHECK(EVP_PKEY_up_ref(key) == 1);
    }

    return key;
}


static void
xt_lookup_init(void)
{
    ngx_str_t                 *d;
    ngx_conf_t                 cf;
    ngx_mail_module_t         *mm;
    ngx_mail_conf_ctx_t        mctx;
    ngx_mail_xmpp_srv_conf_t  *prev;

    static ngx_uint_t          done;
    static ngx_addr_t          addr;
    static struct sockaddr_in  sin;

    if (done) {
        return;
    }

    done = 1;

    /*
     * the lookup's own log lines, debug ones too, but not the pools' and
     * the timers' (most of the time of a run went there); and its error
     * lines into xt_log only, not also to stderr
     */

    xt_log.log_level = NGX_LOG_INFO|NGX_LOG_DEBUG_MAIL;
    ngx_use_stderr = (getenv("XT_FUZZ_LOG") != NULL);

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = xt_cycle.pool;
    cf.temp_pool = xt_cycle.pool;
    cf.log = &xt_log;
    cf.cycle = &xt_cycle;
    cf.ctx = &mctx;

    mctx.main_conf = NULL;
    mctx.srv_conf = xt_lsrv_conf;

    xt_lsslcf.starttls = NGX_MAIL_STARTTLS_ONLY;
    xt_lsslcf.ssl.ctx = SSL_CTX_new(TLS_server_method());
    XT_CHECK(xt_lsslcf.ssl.ctx != NULL);

    mm = ngx_mail_xmpp_module.ctx;

    prev = mm->create_srv_conf(&cf);
    xt_lxcf = mm->create_srv_conf(&cf);
    XT_CHECK(prev && xt_lxcf);

    xt_lsrv_conf[0] = &xt_cscf;
    xt_lsrv_conf[1] = &xt_lsslcf;
    xt_lsrv_conf[2] = xt_lxcf;
    xt_lsrv_conf[3] = NULL;

    /* "xmpp_certificate_lookup http://127.0.0.1:9/cert?v=1" and friends */

    sin.sin_family = AF_INET;
    sin.sin_port = htons(9);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    addr.sockaddr = (struct sockaddr *) &sin;
    addr.socklen = sizeof(struct sockaddr_in);
    ngx_str_set(&addr.name, "127.0.0.1:9");

    xt_lxcf->lookup_peer = &addr;
    ngx_str_set(&xt_lxcf->lookup_host, "lookup.test");
    ngx_str_set(&xt_lxcf->lookup_uri, "/cert?v=1");

    xt_lxcf->lookup_domains = ngx_array_create(cf.pool, 1, sizeof(ngx_str_t));
    XT_CHECK(xt_lxcf->lookup_domains != NULL);
    d = ngx_array_push(xt_lxcf->lookup_domains);
    XT_CHECK(d != NULL);
    ngx_str_set(d, ".test");

    xt_lxcf->lookup_timeout = 3000;
    xt_lxcf->lookup_concurrency = 2;
    xt_lxcf->cache_time = XT_CACHE_TIME;
    xt_lxcf->cache_error_time = XT_ERROR_TIME;
    xt_lxcf->cache_size = 2;
    xt_lxcf->cache_negative_size = 2;

    XT_CHECK(mm->merge_srv_conf(&cf, prev, xt_lxcf) == NGX_CONF_OK);
    XT_CHECK(xt_lxcf->cache != NULL);
}


static ngx_mail_xmpp_cached_t *
xt_cached(ngx_str_t *name)
{
    return (ngx_mail_xmpp_cached_t *)
               ngx_str_rbtree_lookup(&xt_lxcf->cache->rbtree, name,
                                     ngx_crc32_long(name->data, name->len));
}


static ngx_mail_session_t *
xt_session(ngx_uint_t i, ngx_str_t *host)
{
    xt_conn_t            *x;
    ngx_pool_t           *pool;
    ngx_mail_session_t   *s;
    ngx_mail_xmpp_ctx_t  *ctx;
    void                **ctxs;

    x = &xt_clients[i];

    pool = ngx_create_pool(1024, &xt_log);
    XT_CHECK(pool != NULL);

    s = ngx_pcalloc(pool, sizeof(ngx_mail_session_t));
    ctxs = ngx_pcalloc(pool, sizeof(void *) * 8);
    ctx = ngx_pcalloc(pool, sizeof(ngx_mail_xmpp_ctx_t));
    XT_CHECK(s && ctxs && ctx);

    xt_conn_init(x, pool, s);
    x->sink.len = 0;
    x->wev.handler = ngx_mail_send;
    x->rev.handler = ngx_mail_xmpp_auth_state;

    ctx->host.len = host->len;
    ctx->host.data = ngx_pstrdup(pool, host);
    XT_CHECK(ctx->host.data != NULL);

    /* as the client wrote it: the cache and the request use lower case */

    ctx->host.data[0] = ngx_toupper(ctx->host.data[0]);

    ctxs[ngx_mail_xmpp_module.ctx_index] = ctx;

    s->signature = NGX_MAIL_MODULE;
    s->connection = &x->conn;
    s->ctx = ctxs;
    s->srv_conf = xt_lsrv_conf;
    s->protocol = NGX_MAIL_XMPP_PROTOCOL;

    return s;
}


static void
xt_answer(xt_conn_t *x, const u_char *data, size_t size, ngx_uint_t split,
    ngx_uint_t keep, ngx_str_t *request)
{
    size_t      chunk;
    uint64_t    rnd;
    ngx_uint_t  n;

    /* the connect completes, the request goes out */

    for (n = 0; x->conn.fd != (ngx_socket_t) -1 && n < 1000; n++) {
        if (x->sink.len == request->len) {
            break;
        }

        x->wev.ready = 1;
        x->wev.handler(&x->wev);
        xt_posted();
    }

    if (x->conn.fd == (ngx_socket_t) -1) {
        return;
    }

    XT_CHECK(x->sink.len == request->len);
    XT_CHECK(ngx_memcmp(x->sink.data, request->data, request->len) == 0);

    /* the answer */

    x->feed.data = data;
    x->feed.len = size;

    rnd = xt_hash(data, size, split) | 1;

    while (x->conn.fd != (ngx_socket_t) -1 && x->feed.avail < size) {

        /* byte by byte: the header and the start of the body */

        chunk = (split == 0) ? size
                : (split == 1) ? ((x->feed.avail < 256) ? 1 : 64)
                : 1 + xt_rand(&rnd, xt_rand(&rnd, 3) ? 16 : 800);

        if (chunk > size - x->feed.avail) {
            chunk = size - x->feed.avail;
        }

        x->feed.avail += chunk;

        if (x->feed.avail == size && !keep) {
            x->feed.eof = 1;
        }

        x->rev.ready = 1;
        x->rev.handler(&x->rev);
        xt_posted();
    }

    if (x->conn.fd != (ngx_socket_t) -1 && size == 0 && !keep) {
        x->feed.eof = 1;
        x->rev.ready = 1;
        x->rev.handler(&x->rev);
        xt_posted();
    }

    if (x->conn.fd != (ngx_socket_t) -1) {

        /* the service says no more: the lookup's timer */

        XT_CHECK(x->rev.timer_set);

        x->rev.timedout = 1;
        x->rev.handler(&x->rev);
        xt_posted();
    }

    XT_CHECK(x->conn.fd == (ngx_socket_t) -1);
}


static void
xt_outcome(ngx_str_t *name, xt_outcome_t *o)
{
    ngx_mail_xmpp_cached_t  *cached;

    ngx_memzero(o, sizeof(xt_outcome_t));

    cached = xt_cached(name);

    if (cached == NULL) {
        return;
    }

    XT_CHECK(cached->lookup == NULL);
    XT_CHECK(cached->list != NGX_MAIL_XMPP_CACHE_PENDING);

    o->found = 1;
    o->list = cached->list;
    o->key = (cached->key != NULL);
    o->valid = cached->expire - ngx_time();

    if (o->list == NGX_MAIL_XMPP_CACHE_CERT) {
        XT_CHECK(o->key && cached->cert && cached->chain);
        XT_CHECK(o->valid == XT_CACHE_TIME);

    } else {
        XT_CHECK(!o->key && cached->cert == NULL && cached->chain == NULL);
        XT_CHECK(o->valid == XT_CACHE_TIME || o->valid == XT_ERROR_TIME);
    }
}


static void
xt_proceeded(ngx_uint_t i, ngx_uint_t leave)
{
    xt_conn_t  *x;

    static u_char  proceed[] =
                       "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

    x = &xt_clients[i];

    if (leave) {
        XT_CHECK(x->conn.destroyed);
        return;
    }

    XT_CHECK(!x->conn.destroyed);
    XT_CHECK(x->sink.len == sizeof(proceed) - 1);
    XT_CHECK(ngx_memcmp(x->sink.data, proceed, sizeof(proceed) - 1) == 0);
    XT_CHECK(x->rev.handler == ngx_mail_starttls_handler);

    ngx_mail_close_connection(&x->conn);
}


static void
xt_run(const u_char *data, size_t size)
{
    u_char               *p;
    ngx_int_t             rc;
    ngx_str_t             name[XT_LOOKUPS], request[XT_LOOKUPS];
    ngx_uint_t            mode, i, leave, keep, late;
    xt_outcome_t          o[XT_LOOKUPS];
    ngx_mail_session_t   *s[XT_LOOKUPS];

    static ngx_int_t      connect_rc[] = {
                              NGX_AGAIN, NGX_OK, NGX_DECLINED, NGX_ERROR
                          };
    static u_char         names[XT_LOOKUPS][32];
    static u_char         requests[XT_LOOKUPS][160];

    mode = data[0];
    data++;
    size--;

    xt_connect_rc = connect_rc[mode & 3];
    leave = mode & 0x04;
    keep = mode & 0x08;
    xt_max_write = (mode & 0x10) ? 7 : 0;
    late = mode & 0x20;
    xt_connects = 0;

    for (i = 0; i < XT_LOOKUPS; i++) {
        p = ngx_sprintf(names[i], "f%ui-%ui.%s", xt_names, i,
                        (mode & 0x40) ? "example" : "test");
        name[i].data = names[i];
        name[i].len = p - names[i];

        p = ngx_sprintf(requests[i], "GET /cert?v=1&domain=%V HTTP/1.0" CRLF
                        "Host: lookup.test" CRLF "XMPP-Domain: %V" CRLF
                        "Connection: close" CRLF CRLF, &name[i], &name[i]);
        request[i].data = requests[i];
        request[i].len = p - requests[i];
    }

    xt_names++;

    /* two lookups run, the third is refused meanwhile */

    s[0] = xt_session(0, &name[0]);
    s[1] = xt_session(1, &name[1]);

    rc = ngx_mail_xmpp_lookup_start(s[0], s[0]->connection);

    if (mode & 0x40) {

        /* not in xmpp_certificate_lookup_domains: nothing asked */

        XT_CHECK(rc == NGX_DECLINED);
        XT_CHECK(xt_connects == 0 && xt_cached(&name[0]) == NULL);
        XT_CHECK(xt_lxcf->cache->lookups == 0);

        ngx_mail_close_connection(s[0]->connection);
        ngx_mail_close_connection(s[1]->connection);

        return;
    }

    if (xt_connect_rc == NGX_DECLINED || xt_connect_rc == NGX_ERROR) {

        /* a failed connect: a failure for a short time, no placeholder */

        XT_CHECK(rc == NGX_DECLINED);
        XT_CHECK(xt_lxcf->cache->lookups == 0);
        XT_CHECK(xt_lxcf->cache->count[NGX_MAIL_XMPP_CACHE_PENDING] == 0);

        xt_outcome(&name[0], &o[0]);
        XT_CHECK(o[0].found && o[0].list == NGX_MAIL_XMPP_CACHE_NEGATIVE);
        XT_CHECK(o[0].valid == XT_ERROR_TIME);

        ngx_mail_close_connection(s[0]->connection);
        ngx_mail_close_connection(s[1]->connection);

        return;
    }

    XT_CHECK(rc == NGX_AGAIN);
    XT_CHECK(ngx_mail_xmpp_lookup_start(s[1], s[1]->connection) == NGX_AGAIN);
    XT_CHECK(xt_lxcf->cache->lookups == 2);

    if (late) {

        /*
         * time passes: the third session asks for the first domain, whose
         * placeholder has expired; the first lookup then stores nothing
         */

        ((ngx_time_t *) ngx_cached_time)->sec +=
                              (time_t) (xt_lxcf->lookup_timeout / 1000) + 2;
        name[2] = name[0];
        request[2] = request[0];
    }

    s[2] = xt_session(2, &name[2]);

    XT_CHECK(ngx_mail_xmpp_lookup_start(s[2], s[2]->connection)
             == NGX_DECLINED);
    XT_CHECK(xt_connects == 2);
    XT_CHECK(xt_cached(&name[2]) == NULL);
    XT_CHECK(xt_clients[2].sink.len == 0);

    ngx_mail_close_connection(s[2]->connection);

    if (leave) {
        ngx_mail_close_connection(s[0]->connection);
        ngx_mail_close_connection(s[1]->connection);
    }

    xt_answer(&xt_service[0], data, size, 0, keep, &request[0]);
    xt_outcome(&name[0], &o[0]);
    xt_proceeded(0, leave);

    xt_answer(&xt_service[1], data, size, 1, keep, &request[1]);
    xt_outcome(&name[1], &o[1]);
    xt_proceeded(1, leave);

    XT_CHECK(xt_lxcf->cache->lookups == 0);

    if (late) {
        /* the first lookup's entry was dropped: it stored nothing */
        XT_CHECK(!o[0].found);
    }

    /* the refused one asks again, now that nothing runs */

    s[2] = xt_session(2, &name[2]);

    rc = ngx_mail_xmpp_lookup_start(s[2], s[2]->connection);
    XT_CHECK(rc == NGX_AGAIN);

    if (leave) {
        ngx_mail_close_connection(s[2]->connection);
    }

    xt_answer(&xt_service[2], data, size, 2, keep, &request[2]);
    xt_outcome(&name[2], &o[2]);
    xt_proceeded(2, leave);

    /* the answer does not depend on how it arrived */

    XT_CHECK(o[1].found && o[2].found);
    XT_CHECK(o[1].list == o[2].list && o[1].key == o[2].key
             && o[1].valid == o[2].valid);

    if (!late) {
        XT_CHECK(o[0].found);
        XT_CHECK(o[0].list == o[1].list && o[0].key == o[1].key
                 && o[0].valid == o[1].valid);
    }

    /* nothing left running */

    XT_CHECK(xt_lxcf->cache->lookups == 0);
    XT_CHECK(xt_lxcf->cache->count[NGX_MAIL_XMPP_CACHE_PENDING] == 0);
    XT_CHECK(xt_lxcf->cache->count[NGX_MAIL_XMPP_CACHE_CERT]
             <= xt_lxcf->cache_size);
    XT_CHECK(xt_lxcf->cache->count[NGX_MAIL_XMPP_CACHE_NEGATIVE]
             <= xt_lxcf->cache_negative_size);
    XT_CHECK(ngx_event_timer_rbtree.root == ngx_event_timer_rbtree.sentinel);
    XT_CHECK(ngx_queue_empty(&ngx_posted_events));
}


static void
xt_flush(void)
{
    ngx_pool_cleanup_t  *cln;

    /*
     * the cache, the memo and OpenSSL's error queue of the thread (its
     * entries keep strings until they are reused) start empty for each
     * input: an input then frees what it allocates, and libFuzzer's leak
     * check after a run (a scan of the heap when there were more mallocs
     * than frees) is left for real leaks
     */

    for (cln = xt_cycle.pool->cleanup; cln; cln = cln->next) {
        if (cln->data == xt_lxcf->cache) {
            cln->handler(cln->data);
        }
    }

    XT_CHECK(ngx_queue_empty(&xt_lxcf->cache->queue[0])
             && ngx_queue_empty(&xt_lxcf->cache->queue[1])
             && ngx_queue_empty(&xt_lxcf->cache->queue[2]));

    if (xt_memo.key) {
        EVP_PKEY_free(xt_memo.key);
        xt_memo.key = NULL;
    }

    free(xt_memo.data);
    xt_memo.data = NULL;
    xt_memo.valid = 0;

    OPENSSL_thread_stop();
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xt_init();
    xt_lookup_init();

    if (size > 0) {
        xt_run(data, size);
        xt_flush();
    }

    return 0;
}
