
/*
 * Copyright (C) nginx-xmpp contributors
 *
 * Shared environment of the libFuzzer targets in t/fuzz/.
 *
 * The targets link the real objects of an nginx build tree (built by
 * t/fuzz/run with clang -fsanitize=fuzzer-no-link,address,undefined): the
 * XMPP parser, handler and proxy code, ngx_mail_handler.c, the pools, the
 * event timers, logging, base64 and so on are all nginx's own.  What a
 * fuzzer cannot have is stubbed here, and only that:
 *
 *   - main(): nginx.c is compiled again with -Dmain=xt_nginx_main;
 *   - the cycle and its configuration: ngx_cycle points to a zeroed cycle,
 *     the mail server configuration structures are filled in by hand
 *     (the XMPP ones by the module's own create/merge functions), and
 *     the ctx_index of the few modules used is assigned here instead of
 *     by ngx_count_modules();
 *   - the event module (epoll): ngx_event_actions are stubs that only
 *     mark events active; timers are nginx's own red-black tree;
 *   - sockets: connections are "shared" (no descriptor is closed), their
 *     recv/send are fake functions that read the fuzz input in chunks and
 *     collect the output;
 *   - TLS: after <proceed/> the handshake is taken as done, the session
 *     goes on as ngx_mail_ssl_handshake_handler() would let it;
 *   - auth_http and the relay: ngx_mail_auth() and
 *     ngx_mail_proxy_handoff() are replaced with the linker's --wrap by
 *     functions that check what would be sent on and answer.
 */


#ifndef _XT_FUZZ_H_INCLUDED_
#define _XT_FUZZ_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>

#include <stdio.h>
#include <stdlib.h>


#define XT_CHECK(cond)                                                       \
    if (!(cond)) {                                                           \
        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,     \
                #cond);                                                      \
        abort();                                                             \
    }


extern ngx_module_t  ngx_mail_core_module;
extern ngx_module_t  ngx_mail_ssl_module;
extern ngx_module_t  ngx_mail_proxy_module;
extern ngx_module_t  ngx_mail_xmpp_module;


/* the fuzz input, handed out in chunks */

typedef struct {
    const u_char     *data;
    size_t            len;
    size_t            pos;      /* next byte to hand out */
    size_t            avail;    /* bytes "arrived" so far */
    ngx_uint_t        eof;      /* the peer closed after avail */
} xt_feed_t;


/* what was sent */

typedef struct {
    u_char           *data;
    size_t            len;
    size_t            size;
    size_t            max_write;    /* 0: all at once */
} xt_sink_t;


typedef struct {
    ngx_connection_t  conn;
    ngx_event_t       rev;
    ngx_event_t       wev;
    ngx_log_t         log;
    xt_feed_t         feed;
    xt_sink_t         sink;
} xt_conn_t;


static ngx_log_t            xt_log;
static ngx_open_file_t      xt_log_file;
static ngx_cycle_t          xt_cycle;
static void                *xt_srv_conf[4][8];
static ngx_mail_core_srv_conf_t  xt_cscf;
static ngx_mail_ssl_conf_t  xt_sslcf[3];
static ngx_mail_xmpp_srv_conf_t  *xt_xcf;


/* a small deterministic generator for chunk sizes */

static uint64_t
xt_hash(const u_char *data, size_t len, uint64_t seed)
{
    uint64_t  h;
    size_t    i;

    h = 1469598103934665603ULL ^ seed;

    for (i = 0; i < len; i++) {
        h ^= data[i];
        h *= 1099511628211ULL;
    }

    return h;
}


static ngx_uint_t
xt_rand(uint64_t *state, ngx_uint_t n)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;

    return (ngx_uint_t) (*state % n);
}


static ngx_int_t
xt_event_stub(ngx_event_t *ev, ngx_int_t event, ngx_uint_t flags)
{
    ev->active = 1;
    return NGX_OK;
}


static ngx_int_t
xt_event_del_stub(ngx_event_t *ev, ngx_int_t event, ngx_uint_t flags)
{
    ev->active = 0;
    return NGX_OK;
}


static ngx_int_t
xt_conn_stub(ngx_connection_t *c)
{
    return NGX_OK;
}


static ngx_int_t
xt_del_conn_stub(ngx_connection_t *c, ngx_uint_t flags)
{
    c->read->active = 0;
    c->write->active = 0;
    return NGX_OK;
}


static ssize_t
xt_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t      n;
    xt_conn_t  *x;

    x = (xt_conn_t *) c;

    XT_CHECK(size > 0);

    n = x->feed.avail - x->feed.pos;

    if (n == 0) {
        c->read->ready = 0;

        if (x->feed.eof) {
            c->read->eof = 1;
            return 0;
        }

        return NGX_AGAIN;
    }

    if (n > size) {
        n = size;
    }

    ngx_memcpy(buf, x->feed.data + x->feed.pos, n);
    x->feed.pos += n;

    if (x->feed.pos == x->feed.avail && !x->feed.eof) {
        c->read->ready = 0;
    }

    return n;
}


static ssize_t
xt_send(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t      n;
    u_char     *p;
    xt_conn_t  *x;

    x = (xt_conn_t *) c;

    XT_CHECK(!c->destroyed);

    n = size;

    if (x->sink.max_write && n > x->sink.max_write) {
        n = x->sink.max_write;
        c->write->ready = 0;
    }

    if (x->sink.len + n > x->sink.size) {
        x->sink.size = (x->sink.len + n) * 2;
        p = realloc(x->sink.data, x->sink.size);
        XT_CHECK(p != NULL);
        x->sink.data = p;
    }

    ngx_memcpy(x->sink.data + x->sink.len, buf, n);
    x->sink.len += n;

    return n;
}


static void
xt_conn_init(xt_conn_t *x, ngx_pool_t *pool, void *data)
{
    u_char  *sink;
    size_t   size;

    sink = x->sink.data;
    size = x->sink.size;

    ngx_memzero(x, sizeof(xt_conn_t));

    x->sink.data = sink;
    x->sink.size = size;

    x->log = xt_log;

    x->conn.fd = 0;
    x->conn.shared = 1;        /* ngx_close_connection() closes no fd */
    x->conn.read = &x->rev;
    x->conn.write = &x->wev;
    x->conn.log = &x->log;
    x->conn.pool = pool;
    x->conn.data = data;
    x->conn.recv = xt_recv;
    x->conn.send = xt_send;
    x->conn.log_error = NGX_ERROR_INFO;

    x->rev.data = &x->conn;
    x->rev.log = &x->log;
    x->wev.data = &x->conn;
    x->wev.log = &x->log;
    x->wev.write = 1;
    x->wev.ready = 1;
}


static void
xt_conn_done(xt_conn_t *x)
{
    /* a connection must not be left with timers or posted events */

    if (!x->conn.destroyed && x->conn.fd != (ngx_socket_t) -1) {
        if (x->rev.timer_set) {
            ngx_del_timer(&x->rev);
        }

        if (x->wev.timer_set) {
            ngx_del_timer(&x->wev);
        }

        if (x->rev.posted) {
            ngx_delete_posted_event(&x->rev);
        }

        if (x->wev.posted) {
            ngx_delete_posted_event(&x->wev);
        }
    }
}


static void
xt_init(void)
{
    static ngx_uint_t     done;
    ngx_uint_t            i, mode;
    ngx_conf_t            cf;
    ngx_mail_module_t    *mm;
    ngx_mail_xmpp_srv_conf_t  *prev;
    char                 *level;
    static void          *xt_conf_srv[4];
    static ngx_mail_conf_ctx_t  xt_conf_ctx;

    if (done) {
        return;
    }

    done = 1;

    ngx_pagesize = getpagesize();
    ngx_pagesize_shift = 0;
    for (i = ngx_pagesize; i >>= 1; ngx_pagesize_shift++) { /* void */ }
    ngx_cacheline_size = NGX_CPU_CACHE_LINE;

    ngx_time_init();

    /*
     * log everything (the debug messages too, in a --with-debug build)
     * to /dev/null, so that format strings with session data are run;
     * XT_FUZZ_LOG=stderr shows them
     */

    level = getenv("XT_FUZZ_LOG");

    xt_log_file.fd = (level && ngx_strcmp(level, "stderr") == 0)
                     ? ngx_stderr : open("/dev/null", O_WRONLY);
    xt_log.file = &xt_log_file;
    xt_log.log_level = NGX_LOG_DEBUG_ALL;

    xt_cycle.log = &xt_log;
    xt_cycle.pool = ngx_create_pool(NGX_CYCLE_POOL_SIZE, &xt_log);
    ngx_queue_init(&xt_cycle.reusable_connections_queue);
    ngx_cycle = &xt_cycle;

    ngx_event_timer_init(&xt_log);
    ngx_queue_init(&ngx_posted_events);
    ngx_queue_init(&ngx_posted_next_events);

    ngx_event_flags = NGX_USE_CLEAR_EVENT|NGX_USE_EPOLL_EVENT;
    ngx_event_actions.add = xt_event_stub;
    ngx_event_actions.del = xt_event_del_stub;
    ngx_event_actions.enable = xt_event_stub;
    ngx_event_actions.disable = xt_event_del_stub;
    ngx_event_actions.add_conn = xt_conn_stub;
    ngx_event_actions.del_conn = xt_del_conn_stub;

    /* what ngx_count_modules() would assign */

    ngx_mail_core_module.ctx_index = 0;
    ngx_mail_ssl_module.ctx_index = 1;
    ngx_mail_xmpp_module.ctx_index = 2;
    ngx_mail_proxy_module.ctx_index = 3;

    mm = ngx_mail_xmpp_module.ctx;

    xt_cscf.protocol = mm->protocol;
    xt_cscf.timeout = 60000;
    xt_cscf.max_errors = 5;
    ngx_str_set(&xt_cscf.server_name, "proxy.test<&'\">");

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = xt_cycle.pool;
    cf.temp_pool = xt_cycle.pool;
    cf.log = &xt_log;
    cf.cycle = &xt_cycle;

    /* the merge looks at the server's protocol: the core configuration */

    xt_conf_srv[0] = &xt_cscf;
    xt_conf_ctx.srv_conf = xt_conf_srv;
    cf.ctx = &xt_conf_ctx;

    prev = mm->create_srv_conf(&cf);
    xt_xcf = mm->create_srv_conf(&cf);
    XT_CHECK(prev && xt_xcf);
    xt_xcf->client_buffer_size = 512;     /* the smallest allowed */
    XT_CHECK(mm->merge_srv_conf(&cf, prev, xt_xcf) == NGX_CONF_OK);

    for (mode = 0; mode < 3; mode++) {
        xt_sslcf[mode].starttls = mode;   /* off, on, only */
        xt_srv_conf[mode][0] = &xt_cscf;
        xt_srv_conf[mode][1] = &xt_sslcf[mode];
        xt_srv_conf[mode][2] = xt_xcf;
        xt_srv_conf[mode][3] = NULL;
    }
}


/* runs the handlers of events posted meanwhile */

static void
xt_posted(void)
{
    ngx_event_process_posted((ngx_cycle_t *) ngx_cycle, &ngx_posted_events);
}


#endif /* _XT_FUZZ_H_INCLUDED_ */
