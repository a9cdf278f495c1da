
/*
 * Copyright (C) nginx-xmpp contributors
 *
 * libFuzzer target: a client session in nginx's own handlers, from
 * ngx_mail_xmpp_init_session() through ngx_mail_xmpp_auth_state() and
 * ngx_mail_read_command() to the stream errors, SASL failures and the
 * decoding of SASL PLAIN, with the fuzz input as what the client sends.
 *
 * Each input runs under "starttls off", "on" and "only", in pseudo-random
 * reads, with writes that are sometimes partial (the "send handler busy"
 * path), and ends with the client closing or with the session timing out.
 * <starttls/> is followed by a completed TLS handshake as far as the
 * session can tell (see xt_fuzz.h).
 *
 * ngx_mail_auth() is replaced (ld --wrap): it checks that only a
 * well-formed SASL PLAIN login would reach auth_http (a non-empty
 * login and password, no NUL in either, the login a JID with a
 * domain), then answers like auth_http refusing it (the real
 * ngx_mail_xmpp_auth_error() and what the auth sleep handler does), or,
 * for a password starting with "ok", like a successful login (the session
 * ends here).
 *
 * Checked at the end: a session that ended on its own (not by the client
 * closing) has sent "</stream:stream>" last, and the output contains no
 * byte that is not allowed in XML.
 */


#include "xt_fuzz.h"


static xt_conn_t   xt_client;
static ngx_uint_t  xt_logged_in;


void __real_ngx_mail_auth(ngx_mail_session_t *s, ngx_connection_t *c);
void __wrap_ngx_mail_auth(ngx_mail_session_t *s, ngx_connection_t *c);


void
__wrap_ngx_mail_auth(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char                    *at;
    ngx_str_t                  text, code;
    ngx_event_t               *rev;
    ngx_mail_core_srv_conf_t  *cscf;

    /* what would be sent to auth_http */

    XT_CHECK(s->auth_method == NGX_MAIL_AUTH_PLAIN);
    XT_CHECK(s->login.len > 0 && s->passwd.len > 0);
    XT_CHECK(ngx_strlchr(s->login.data, s->login.data + s->login.len, '\0')
             == NULL);
    XT_CHECK(ngx_strlchr(s->passwd.data, s->passwd.data + s->passwd.len,
                         '\0')
             == NULL);

    at = ngx_strlchr(s->login.data, s->login.data + s->login.len, '@');
    XT_CHECK(at != NULL);

    XT_CHECK(c->read->handler == ngx_mail_xmpp_auth_state);

    /* ngx_mail_auth() before ngx_mail_auth_http_init() */

    s->args.nelts = 0;

    if (s->buffer->pos == s->buffer->last) {
        s->buffer->pos = s->buffer->start;
        s->buffer->last = s->buffer->start;
    }

    s->state = 0;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    s->login_attempt++;

    if (s->passwd.len >= 2 && ngx_strncmp(s->passwd.data, "ok", 2) == 0) {
        /* logged in: the session would be proxied from here */
        xt_logged_in = 1;
        ngx_mail_close_connection(c);
        return;
    }

    /* auth_http says no: the patched ngx_mail_auth_http_process_headers() */

    ngx_str_set(&text, "Invalid <login> & \"password\"\r\n");

    if (s->login_attempt & 1) {
        ngx_str_set(&code, "535 5.7.8");

    } else {
        ngx_str_set(&code, "454 4.7.0");
    }

    if (ngx_mail_xmpp_auth_error(s, &text, &code) != NGX_OK) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    if (s->quit) {
        ngx_mail_send(c->write);
        return;
    }

    /* ngx_mail_auth_sleep_handler() when its timer expires */

    rev = c->read;
    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    rev->handler = cscf->protocol->auth_state;
    s->mail_state = 0;
    s->auth_method = NGX_MAIL_AUTH_PLAIN;

    ngx_mail_send(c->write);

    if (c->destroyed) {
        return;
    }

    ngx_add_timer(rev, cscf->timeout);

    if (rev->ready) {
        rev->handler(rev);
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}


static void
xt_flush(xt_conn_t *x, ngx_mail_session_t *s)
{
    ngx_uint_t  n;

    /* the client reads: writes that waited go on */

    for (n = 0; !x->conn.destroyed && s->out.len && n < 100000; n++) {
        x->wev.ready = 1;
        x->wev.handler(&x->wev);
        xt_posted();
    }

    XT_CHECK(x->conn.destroyed || s->out.len == 0);
}


static void
xt_run(const u_char *data, size_t size, ngx_uint_t mode)
{
    u_char              *p, *last;
    size_t               chunk;
    uint64_t             rnd;
    ngx_uint_t           timeout, ended_by_server;
    ngx_pool_t          *pool;
    xt_conn_t           *x;
    ngx_mail_session_t  *s;
    void               **ctxs;

    x = &xt_client;

    pool = ngx_create_pool(1024, &xt_log);
    XT_CHECK(pool != NULL);

    s = ngx_pcalloc(pool, sizeof(ngx_mail_session_t));
    ctxs = ngx_pcalloc(pool, sizeof(void *) * 8);
    XT_CHECK(s && ctxs);

    xt_conn_init(x, pool, s);
    x->sink.len = 0;
    xt_logged_in = 0;

    x->feed.data = data;
    x->feed.len = size;

    rnd = xt_hash(data, size, mode) | 1;

    x->sink.max_write = xt_rand(&rnd, 4) ? 0 : 1 + xt_rand(&rnd, 64);
    timeout = xt_rand(&rnd, 4) == 0;

    s->signature = NGX_MAIL_MODULE;
    s->connection = &x->conn;
    s->ctx = ctxs;
    s->srv_conf = xt_srv_conf[mode];
    s->protocol = NGX_MAIL_XMPP_PROTOCOL;

    /* ngx_mail_init_session() */

    x->wev.handler = ngx_mail_send;

    ngx_mail_xmpp_init_session(s, &x->conn);
    xt_posted();
    xt_flush(x, s);

    while (!x->conn.destroyed && x->feed.avail < size) {

        chunk = 1 + xt_rand(&rnd, xt_rand(&rnd, 3) ? 8 : 600);

        if (chunk > size - x->feed.avail) {
            chunk = size - x->feed.avail;
        }

        x->feed.avail += chunk;
        x->rev.ready = 1;

        x->rev.handler(&x->rev);
        xt_posted();
        xt_flush(x, s);

        if (!x->conn.destroyed
            && x->rev.handler == ngx_mail_starttls_handler)
        {
            /*
             * <proceed/> was sent: the handshake "completes" and
             * ngx_mail_ssl_handshake_handler() starts a new stream;
             * what the client sent meanwhile is the TLS handshake, here
             * simply dropped; after it, STARTTLS is no longer offered
             */

            XT_CHECK(s->buffer->pos == s->buffer->last);

            x->feed.pos = x->feed.avail;
            s->starttls = 1;
            s->srv_conf = xt_srv_conf[NGX_MAIL_STARTTLS_OFF];

            x->rev.handler = ngx_mail_xmpp_init_protocol;
            x->wev.handler = ngx_mail_send;
            ngx_mail_xmpp_init_protocol(&x->rev);
            xt_posted();
            xt_flush(x, s);
        }
    }

    if (x->conn.destroyed) {
        ended_by_server = !xt_logged_in;

    } else if (timeout && x->rev.timer_set) {
        ngx_del_timer(&x->rev);
        x->rev.timedout = 1;
        x->rev.handler(&x->rev);
        xt_posted();
        xt_flush(x, s);

        XT_CHECK(x->conn.destroyed);
        ended_by_server = 1;

    } else {
        x->feed.eof = 1;
        x->rev.ready = 1;
        x->rev.handler(&x->rev);
        xt_posted();

        /*
         * the session must notice that the client has gone, once what it
         * still had to send is out (a stream that ends with an error
         * reads the client's end of file after the error is sent)
         */

        xt_flush(x, s);

        XT_CHECK(x->conn.destroyed);
        ended_by_server = 0;
    }

    /* the output is XML text: no control characters but TAB, CR, LF */

    last = x->sink.data + x->sink.len;

    for (p = x->sink.data; p < last; p++) {
        XT_CHECK(*p >= 0x20 || *p == '\t' || *p == CR || *p == LF);
    }

    if (ended_by_server) {
        XT_CHECK(x->sink.len >= 16
                 && ngx_strncmp(last - 16, "</stream:stream>", 16) == 0);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_uint_t  mode;

    xt_init();

    for (mode = 0; mode < 3; mode++) {
        xt_run(data, size, mode);
    }

    return 0;
}
