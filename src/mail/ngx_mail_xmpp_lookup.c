
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


#if (NGX_MAIL_SSL)

/*
 * The client of the certificate lookup service, a small HTTP/1.0 client
 * as nginx's own for OCSP responders: "GET URL?domain=DOMAIN", the status
 * line and the headers of the answer (Content-Length or a close), and
 * the body, bounded.  Every end of a lookup, answer or failure, goes to
 * lu->handler; what the answer means is the certificate code's business.
 */


#define NGX_MAIL_XMPP_LOOKUP_MAX       65536

#define NGX_MAIL_XMPP_H_OTHER          0
#define NGX_MAIL_XMPP_H_LENGTH         1
#define NGX_MAIL_XMPP_H_ENCODING       2


static void ngx_mail_xmpp_lookup_write_handler(ngx_event_t *wev);
static void ngx_mail_xmpp_lookup_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_mail_xmpp_lookup_parse(ngx_mail_xmpp_lookup_t *lu,
    ngx_buf_t *b);
static ngx_int_t ngx_mail_xmpp_lookup_grow(ngx_mail_xmpp_lookup_t *lu,
    size_t size);
static void ngx_mail_xmpp_lookup_error(ngx_mail_xmpp_lookup_t *lu,
    ngx_err_t err, char *what);


ngx_int_t
ngx_mail_xmpp_lookup_send(ngx_mail_xmpp_lookup_t *lu)
{
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_mail_xmpp_srv_conf_t  *xcf;

    /*
     * the request, and a connection to the lookup service; a failure
     * ends the lookup through its handler, as every other end does
     */

    xcf = lu->xcf;

    b = ngx_create_temp_buf(lu->pool,
                            sizeof("GET ?domain= HTTP/1.0" CRLF) - 1
                            + xcf->lookup_uri.len + lu->domain.len
                            + sizeof("Host: " CRLF) - 1 + xcf->lookup_host.len
                            + sizeof("XMPP-Domain: " CRLF) - 1 + lu->domain.len
                            + sizeof("Connection: close" CRLF CRLF) - 1);
    if (b == NULL) {
        lu->handler(lu, NGX_ERROR);
        return NGX_ERROR;
    }

    b->last = ngx_sprintf(b->last, "GET %V%c" "domain=%V HTTP/1.0" CRLF
                          "Host: %V" CRLF "XMPP-Domain: %V" CRLF
                          "Connection: close" CRLF CRLF,
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
    lu->peer.log = ngx_cycle->log;
    lu->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&lu->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "xmpp certificate lookup for \"%V\" failed: "
                      "cannot connect to %V", &lu->domain, lu->peer.name);

        lu->handler(lu, NGX_ERROR);
        return NGX_ERROR;
    }

    lu->peer.connection->data = lu;
    lu->peer.connection->pool = lu->pool;

    lu->peer.connection->read->handler = ngx_mail_xmpp_lookup_read_handler;
    lu->peer.connection->write->handler = ngx_mail_xmpp_lookup_write_handler;

    ngx_add_timer(lu->peer.connection->read, xcf->lookup_timeout);
    ngx_add_timer(lu->peer.connection->write, xcf->lookup_timeout);

    /* never completes synchronously: the caller may be a TLS handshake */

    if (rc == NGX_OK) {
        ngx_post_event(lu->peer.connection->write, &ngx_posted_events);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "xmpp certificate lookup for \"%V\"", &lu->domain);

    return NGX_OK;
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

    n = c->send(c, lu->request->pos, size);

    if (n == NGX_ERROR) {
        ngx_mail_xmpp_lookup_error(lu, 0, "failed");
        return;
    }

    if (n > 0) {
        lu->request->pos += n;

        if (n == size) {
            if (wev->timer_set) {
                ngx_del_timer(wev);
            }

            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                lu->handler(lu, NGX_ERROR);
            }

            return;
        }
    }

    if (!wev->timer_set) {
        ngx_add_timer(wev, lu->xcf->lookup_timeout);
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        lu->handler(lu, NGX_ERROR);
    }
}


static void
ngx_mail_xmpp_lookup_read_handler(ngx_event_t *rev)
{
    ssize_t                  n;
    ngx_int_t                rc;
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
            lu->handler(lu, NGX_ERROR);
            return;
        }
    }

    for ( ;; ) {
        b = lu->response;

        if (b->last == b->end
            && ngx_mail_xmpp_lookup_grow(lu, 2 * (b->end - b->start))
               != NGX_OK)
        {
            return;
        }

        b = lu->response;

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                lu->handler(lu, NGX_ERROR);
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_mail_xmpp_lookup_error(lu, 0, "failed");
            return;
        }

        if (n == 0) {
            break;
        }

        b->last += n;

        if (!lu->header_done) {

            rc = ngx_mail_xmpp_lookup_parse(lu, b);

            if (rc == NGX_AGAIN) {
                continue;
            }

            if (rc == NGX_ERROR) {
                ngx_mail_xmpp_lookup_error(lu, 0, "failed: invalid response");
                return;
            }

            lu->header_done = 1;
            lu->body = b->pos - b->start;

            if (lu->status == 404) {
                ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                              "xmpp certificate lookup for \"%V\": "
                              "no certificate", &lu->domain);
                lu->handler(lu, NGX_DECLINED);
                return;
            }

            if (lu->status != 200) {
                ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                              "xmpp certificate lookup for \"%V\": "
                              "status %ui", &lu->domain, lu->status);
                lu->handler(lu, NGX_ERROR);
                return;
            }

            if (lu->has_length) {

                if (lu->length > NGX_MAIL_XMPP_LOOKUP_MAX - lu->body) {
                    ngx_mail_xmpp_lookup_error(lu, 0,
                                               "failed: response too large");
                    return;
                }

                if (lu->body + lu->length > (size_t) (b->end - b->start)
                    && ngx_mail_xmpp_lookup_grow(lu, lu->body + lu->length)
                       != NGX_OK)
                {
                    return;
                }

                b = lu->response;
            }
        }

        if (lu->has_length
            && (size_t) (b->last - b->start) >= lu->body + lu->length)
        {
            lu->handler(lu, NGX_OK);
            return;
        }
    }

    /* closed: the end of a body without Content-Length */

    if (!lu->header_done
        || (lu->has_length
            && (size_t) (b->last - b->start) < lu->body + lu->length))
    {
        ngx_mail_xmpp_lookup_error(lu, 0, "failed: connection closed "
                                   "before the end of the response");
        return;
    }

    lu->handler(lu, NGX_OK);
}


static ngx_int_t
ngx_mail_xmpp_lookup_parse(ngx_mail_xmpp_lookup_t *lu, ngx_buf_t *b)
{
    u_char   ch, *p;
    size_t   len;

    static u_char     version[] = "HTTP/1.";
    static ngx_str_t  headers[] = {
        ngx_null_string,
        ngx_string("content-length"),
        ngx_string("transfer-encoding")
    };

    enum {
        sw_start = 0,
        sw_minor,
        sw_space_before_status,
        sw_status,
        sw_space_after_status,
        sw_reason,
        sw_almost_done,
        sw_header_start,
        sw_name,
        sw_value,
        sw_space_after_length,
        sw_headers_almost_done
    } state;

    state = lu->state;

    for (p = b->pos; p < b->last; p++) {
        ch = *p;

        switch (state) {

        case sw_start:
            if (ch != version[lu->match]) {
                return NGX_ERROR;
            }

            if (++lu->match == sizeof(version) - 1) {
                state = sw_minor;
            }

            break;

        case sw_minor:
            if (ch < '0' || ch > '9') {
                return NGX_ERROR;
            }

            state = sw_space_before_status;
            break;

        case sw_space_before_status:
            if (ch != ' ') {
                return NGX_ERROR;
            }

            lu->match = 0;
            state = sw_status;
            break;

        case sw_status:
            if (ch < '0' || ch > '9') {
                return NGX_ERROR;
            }

            lu->status = lu->status * 10 + (ch - '0');

            if (++lu->match == 3) {
                state = sw_space_after_status;
            }

            break;

        case sw_space_after_status:
            switch (ch) {
            case ' ':
                state = sw_reason;
                break;
            case CR:
                state = sw_almost_done;
                break;
            case LF:
                state = sw_header_start;
                break;
            default:
                return NGX_ERROR;
            }

            break;

        case sw_reason:
            switch (ch) {
            case CR:
                state = sw_almost_done;
                break;
            case LF:
                state = sw_header_start;
                break;
            }

            break;

        /* the end of the status line or of a header line */

        case sw_almost_done:
            if (ch != LF) {
                return NGX_ERROR;
            }

            state = sw_header_start;
            break;

        case sw_header_start:
            switch (ch) {
            case CR:
                state = sw_headers_almost_done;
                continue;
            case LF:
                goto done;
            }

            switch (ngx_tolower(ch)) {
            case 'c':
                lu->header = NGX_MAIL_XMPP_H_LENGTH;
                break;
            case 't':
                lu->header = NGX_MAIL_XMPP_H_ENCODING;
                break;
            default:
                lu->header = NGX_MAIL_XMPP_H_OTHER;
            }

            lu->match = 0;
            state = sw_name;

            /* fall through */

        case sw_name:
            len = headers[lu->header].len;

            if (ch == ':') {
                if (lu->match != len) {
                    lu->header = NGX_MAIL_XMPP_H_OTHER;
                }

                if (lu->header == NGX_MAIL_XMPP_H_ENCODING) {
                    return NGX_ERROR;
                }

                lu->match = 0;
                lu->value = 0;
                state = sw_value;
                break;
            }

            /* a token: no blanks, no obsolete line folding */

            if (ch <= ' ' || ch >= 0x7f) {
                return NGX_ERROR;
            }

            if (lu->match < len
                && ngx_tolower(ch) == headers[lu->header].data[lu->match])
            {
                lu->match++;

            } else {
                lu->header = NGX_MAIL_XMPP_H_OTHER;
            }

            break;

        case sw_value:
        case sw_space_after_length:
            if (ch == CR || ch == LF) {

                if (lu->header == NGX_MAIL_XMPP_H_LENGTH) {

                    /* digits, and one value however often it is sent */

                    if (lu->match == 0
                        || (lu->has_length && lu->length != lu->value))
                    {
                        return NGX_ERROR;
                    }

                    lu->length = lu->value;
                    lu->has_length = 1;
                }

                state = (ch == CR) ? sw_almost_done : sw_header_start;
                break;
            }

            if (lu->header != NGX_MAIL_XMPP_H_LENGTH) {
                if (ch < ' ' && ch != '\t') {
                    return NGX_ERROR;
                }

                break;
            }

            if (ch == ' ' || ch == '\t') {
                if (lu->match) {
                    state = sw_space_after_length;
                }

                break;
            }

            if (state == sw_space_after_length || ch < '0' || ch > '9') {
                return NGX_ERROR;
            }

            /* stays above NGX_MAIL_XMPP_LOOKUP_MAX, never overflows */

            if (lu->value <= NGX_MAIL_XMPP_LOOKUP_MAX) {
                lu->value = lu->value * 10 + (ch - '0');
            }

            lu->match++;
            break;

        case sw_headers_almost_done:
            if (ch != LF) {
                return NGX_ERROR;
            }

            goto done;
        }
    }

    b->pos = p;
    lu->state = state;

    return NGX_AGAIN;

done:

    b->pos = p + 1;
    lu->state = sw_start;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_xmpp_lookup_grow(ngx_mail_xmpp_lookup_t *lu, size_t size)
{
    ngx_buf_t  *b, *old;

    /* the response up to NGX_MAIL_XMPP_LOOKUP_MAX, in one buffer */

    old = lu->response;

    if (size > NGX_MAIL_XMPP_LOOKUP_MAX) {
        size = NGX_MAIL_XMPP_LOOKUP_MAX;
    }

    if (size <= (size_t) (old->end - old->start)) {
        ngx_mail_xmpp_lookup_error(lu, 0, "failed: response too large");
        return NGX_ERROR;
    }

    b = ngx_create_temp_buf(lu->pool, size);
    if (b == NULL) {
        lu->handler(lu, NGX_ERROR);
        return NGX_ERROR;
    }

    b->pos = b->start + (old->pos - old->start);
    b->last = ngx_cpymem(b->start, old->start, old->last - old->start);

    ngx_pfree(lu->pool, old->start);

    lu->response = b;

    return NGX_OK;
}


static void
ngx_mail_xmpp_lookup_error(ngx_mail_xmpp_lookup_t *lu, ngx_err_t err,
    char *what)
{
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, err,
                  "xmpp certificate lookup for \"%V\" %s", &lu->domain, what);

    lu->handler(lu, NGX_ERROR);
}

#endif
