
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


static ssize_t ngx_mail_xmpp_relay_recv(ngx_connection_t *c, u_char *buf,
    size_t size);
static void ngx_mail_xmpp_relay_follow(ngx_mail_xmpp_ctx_t *ctx, u_char *p,
    u_char *last);
static u_char *ngx_mail_xmpp_relay_check(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, u_char *p, u_char *last);
static void ngx_mail_xmpp_relay_refuse(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, ngx_uint_t err);


/*
 * Server-to-server relay.  A relayed xmpp-server session stays bound to
 * the domain pair auth_http approved: both connections' recv go through
 * ngx_mail_xmpp_relay_recv(), which follows the backend's XML and checks
 * the remote's before the generic relay passes it on.  At the first
 * element for another pair (XEP-0220 multiplexing), or restricted XML,
 * the remote gets a stream error after the backend's last complete
 * element, nothing of the element reaches the backend, and the session
 * ends as a relayed session does when the backend closes.
 */

ngx_int_t
ngx_mail_xmpp_relay_init(ngx_mail_session_t *s)
{
    ngx_buf_t              *b;
    ngx_connection_t       *c, *up;
    ngx_mail_xmpp_ctx_t    *ctx;
    ngx_mail_xmpp_relay_t  *r;

    c = s->connection;
    up = s->proxy->upstream.connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    r = ngx_pcalloc(c->pool, sizeof(ngx_mail_xmpp_relay_t));
    if (r == NULL) {
        return NGX_ERROR;
    }

    r->pair[0] = ctx->s2s.remote;
    r->pair[1] = ctx->host;

    /* the remote's stream is open, its first dialback element forwarded */

    r->scan.depth = 1;
    r->scan.relay = r;

    ctx->relay = r;

    r->recv = c->recv;
    c->recv = ngx_mail_xmpp_relay_recv;

    r->up_recv = up->recv;
    up->recv = ngx_mail_xmpp_relay_recv;

    /*
     * what the backend sent after its features and the remote after its
     * dialback request is relayed without a read: it is followed now
     */

    b = s->proxy->buffer;
    ngx_mail_xmpp_relay_follow(ctx, b->pos, b->last);

    b = s->buffer;
    b->last = ngx_mail_xmpp_relay_check(s, ctx, b->pos, b->last);

    return NGX_OK;
}


static ssize_t
ngx_mail_xmpp_relay_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    u_char                 *last;
    ssize_t                 n;
    ngx_mail_session_t     *s;
    ngx_mail_xmpp_ctx_t    *ctx;
    ngx_mail_xmpp_relay_t  *r;

    s = c->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    r = ctx->relay;

    if (c != s->connection) {

        if (r->refused) {
            /* the backend's side ends after what it sent so far */
            c->read->ready = 0;
            c->read->eof = 1;
            return 0;
        }

        n = r->up_recv(c, buf, size);

        if (n > 0) {
            ngx_mail_xmpp_relay_follow(ctx, buf, buf + n);
        }

        return n;
    }

    n = r->recv(c, buf, size);

    if (n <= 0) {
        return n;
    }

    last = r->refused ? buf : ngx_mail_xmpp_relay_check(s, ctx, buf, buf + n);

    if (last > buf) {
        return last - buf;
    }

    /*
     * nothing to relay: what the remote sends after the refusal is read
     * and dropped until the session ends, so that the close is not a reset
     * that could take the stream error with it
     */

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return NGX_AGAIN;
}


static void
ngx_mail_xmpp_relay_follow(ngx_mail_xmpp_ctx_t *ctx, u_char *p, u_char *last)
{
    ngx_int_t  rc;

    /* the backend's stream: only where its elements end matters */

    if (ctx->relay->up_lost) {
        return;
    }

    ctx->up.lt = NULL;
    ctx->up.start = NULL;

    do {
        rc = ngx_mail_xmpp_scan(&ctx->up, &p, last);

        if (rc == NGX_ERROR) {
            ctx->relay->up_lost = 1;
            return;
        }

    } while (rc != NGX_AGAIN);
}


static u_char *
ngx_mail_xmpp_relay_check(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    u_char *p, u_char *last)
{
    u_char                 *cut;
    u_char                  buf[4][NGX_MAIL_XMPP_LOG_LEN];
    ngx_int_t               rc;
    ngx_str_t               v[4], value;
    ngx_uint_t              err;
    ngx_connection_t       *c;
    ngx_mail_xmpp_scan_t   *sc;
    ngx_mail_xmpp_relay_t  *r;

    /* the remote's bytes: returns where what may be relayed ends */

    r = ctx->relay;
    sc = &r->scan;
    c = s->connection;

    sc->lt = NULL;
    sc->start = NULL;

    for ( ;; ) {

        rc = ngx_mail_xmpp_scan(sc, &p, last);

        if (rc == NGX_AGAIN) {
            return last;
        }

        switch (rc == NGX_OK ? sc->unit : NGX_XMPP_UP_HEADER) {

        case NGX_XMPP_UP_PAIR:

            value.data = r->value[0];
            value.len = ngx_min(r->value_len[0], NGX_MAIL_XMPP_LOG_LEN);
            v[0] = ngx_mail_xmpp_log_value(buf[0], sizeof(buf[0]), &value);

            value.data = r->value[1];
            value.len = ngx_min(r->value_len[1], NGX_MAIL_XMPP_LOG_LEN);
            v[1] = ngx_mail_xmpp_log_value(buf[1], sizeof(buf[1]), &value);

            v[2] = ngx_mail_xmpp_log_value(buf[2], sizeof(buf[2]),
                                           &r->pair[0]);
            v[3] = ngx_mail_xmpp_log_value(buf[3], sizeof(buf[3]),
                                           &r->pair[1]);

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent dialback from \"%V\" to \"%V\" "
                          "on a stream from \"%V\" to \"%V\", closing stream "
                          "with \"policy-violation\" error",
                          &v[0], &v[1], &v[2], &v[3]);

            err = NGX_XMPP_ERR_POLICY_VIOLATION;
            break;

        case NGX_XMPP_UP_RESTRICTED:
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent a comment, a processing "
                          "instruction or a DTD, closing stream with "
                          "\"restricted-xml\" error");
            err = NGX_XMPP_ERR_RESTRICTED_XML;
            break;

        case NGX_XMPP_UP_HEADER:    /* a second header, or NGX_ERROR */
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "remote server sent invalid XML, closing stream "
                          "with \"not-well-formed\" error");
            err = NGX_XMPP_ERR_NOT_WELL_FORMED;
            break;

        default: /* a complete child of the stream, or its end */
            sc->lt = NULL;
            sc->start = NULL;
            continue;
        }

        break;
    }

    /*
     * relayed is what precedes the element (or the markup) refused, if it
     * started in these bytes; what the backend got of it before is
     * incomplete, and stays so
     */

    cut = sc->start ? sc->start : (sc->lt ? sc->lt : p);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "mail proxy xmpp relay refused, %uz bytes dropped",
                   (size_t) (last - cut));

    ngx_mail_xmpp_relay_refuse(s, ctx, err);

    return cut;
}


static void
ngx_mail_xmpp_relay_refuse(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx,
    ngx_uint_t err)
{
    ngx_buf_t                 *b;
    ngx_connection_t          *c, *up;
    ngx_mail_core_srv_conf_t  *cscf;

    c = s->connection;
    up = s->proxy->upstream.connection;
    b = s->proxy->buffer;

    ctx->relay->refused = 1;

    /*
     * the stream error follows what the backend sent if that ends between
     * two elements of its stream; otherwise the remote only sees the close
     */

    if (!ctx->relay->up_lost && ngx_mail_xmpp_scan_between(&ctx->up)) {
        s->out.len = 0;

        if (ngx_mail_xmpp_stream_error(s, c, err) == NGX_OK) {

            if ((size_t) (b->end - b->last) < s->out.len) {
                (void) ngx_mail_xmpp_compact(b, b->pos);
            }

            if ((size_t) (b->end - b->last) >= s->out.len) {
                b->last = ngx_cpymem(b->last, s->out.data, s->out.len);
            }
        }

        s->out.len = 0;
    }

    /*
     * the backend's side reports its end: the relay sends the rest to the
     * remote, then ends the session; a remote that does not read it has
     * the "timeout" of the mail server (on the backend's write event,
     * which the relay does not use for timers)
     */

    up->read->ready = 0;
    up->read->eof = 1;

    ngx_post_event(c->write, &ngx_posted_events);

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    ngx_add_timer(up->write, cscf->timeout);
}
