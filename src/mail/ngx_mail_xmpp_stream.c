
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


/*
 * What every layer of an XMPP session needs and none owns: the stream
 * headers, stream errors and SASL failures that nginx writes, escaping
 * for XML and for the error log, the syntax of domains and stream ids,
 * the max_errors count, and moving what a buffer keeps to its start.
 */


static ngx_int_t ngx_mail_xmpp_append(ngx_mail_session_t *s,
    ngx_connection_t *c, u_char *data, size_t len);


static u_char  xmpp_header_start[] = "<?xml version='1.0'?><stream:stream";
static u_char  xmpp_header_client[] =
    " xmlns='jabber:client' xmlns:stream='" NGX_XMPP_STREAMS_NS "'";
static u_char  xmpp_header_server[] =
    " xmlns='jabber:server' xmlns:stream='" NGX_XMPP_STREAMS_NS "'"
    " xmlns:db='jabber:server:dialback'";
static u_char  xmpp_header_end[] = " version='1.0' xml:lang='en'>";

static u_char  xmpp_error_start[] = "<stream:error><";
static u_char  xmpp_error_end[] =
    " xmlns='" NGX_XMPP_ERR_NS "'/></stream:error></stream:stream>";

static u_char  xmpp_failure_start[] = "<failure xmlns='" NGX_XMPP_SASL_NS "'><";
static u_char  xmpp_failure_text[] = "<text xml:lang='en'>";
static u_char  xmpp_failure_end[] = "</text></failure>";
static u_char  xmpp_failure_empty_end[] = "</failure>";


ngx_str_t  ngx_mail_xmpp_stream_errors[] = {
    ngx_null_string,
    ngx_string("bad-format"),
    ngx_string("connection-timeout"),
    ngx_string("host-unknown"),
    ngx_string("internal-server-error"),
    ngx_string("invalid-namespace"),
    ngx_string("not-authorized"),
    ngx_string("not-well-formed"),
    ngx_string("policy-violation"),
    ngx_string("remote-connection-failed"),
    ngx_string("restricted-xml"),
    ngx_string("unsupported-encoding"),
    ngx_string("unsupported-version"),
    ngx_string("invalid-from"),
    ngx_null_string
};


ngx_str_t  ngx_mail_xmpp_sasl_conditions[] = {
    ngx_string("aborted"),
    ngx_string("account-disabled"),
    ngx_string("credentials-expired"),
    ngx_string("encryption-required"),
    ngx_string("incorrect-encoding"),
    ngx_string("invalid-authzid"),
    ngx_string("invalid-mechanism"),
    ngx_string("malformed-request"),
    ngx_string("mechanism-too-weak"),
    ngx_string("not-authorized"),
    ngx_string("temporary-auth-failure"),
    ngx_null_string
};


uintptr_t
ngx_mail_xmpp_stream_header(u_char *dst, ngx_uint_t flags, ngx_str_t *from,
    ngx_str_t *to)
{
    size_t   len;
    u_char  *p;

    /*
     * Every stream header nginx writes: to a client or a remote server
     * (NGX_XMPP_HEADER_ID: with a new stream id) and to a backend; for
     * jabber:server (NGX_XMPP_HEADER_SERVER) with the dialback namespace.
     * "from" and "to" are optional.  With dst NULL, the length.
     */

    if (dst == NULL) {
        len = sizeof(xmpp_header_start) - 1 + sizeof(xmpp_header_end) - 1;

        if (flags & NGX_XMPP_HEADER_SERVER) {
            len += sizeof(xmpp_header_server) - 1;

        } else {
            len += sizeof(xmpp_header_client) - 1;
        }

        if (from) {
            len += sizeof(" from=''") - 1 + from->len
                   + ngx_mail_xmpp_escape(NULL, from->data, from->len);
        }

        if (to) {
            len += sizeof(" to=''") - 1 + to->len
                   + ngx_mail_xmpp_escape(NULL, to->data, to->len);
        }

        if (flags & NGX_XMPP_HEADER_ID) {
            len += sizeof(" id=''") - 1 + 16;
        }

        return (uintptr_t) len;
    }

    p = ngx_cpymem(dst, xmpp_header_start, sizeof(xmpp_header_start) - 1);

    if (flags & NGX_XMPP_HEADER_SERVER) {
        p = ngx_cpymem(p, xmpp_header_server, sizeof(xmpp_header_server) - 1);

    } else {
        p = ngx_cpymem(p, xmpp_header_client, sizeof(xmpp_header_client) - 1);
    }

    if (from) {
        p = ngx_cpymem(p, " from='", sizeof(" from='") - 1);
        p = (u_char *) ngx_mail_xmpp_escape(p, from->data, from->len);
        *p++ = '\'';
    }

    if (to) {
        p = ngx_cpymem(p, " to='", sizeof(" to='") - 1);
        p = (u_char *) ngx_mail_xmpp_escape(p, to->data, to->len);
        *p++ = '\'';
    }

    if (flags & NGX_XMPP_HEADER_ID) {
        p = ngx_sprintf(p, " id='%08xD%08xD'", (uint32_t) ngx_random(),
                        (uint32_t) ngx_random());
    }

    p = ngx_cpymem(p, xmpp_header_end, sizeof(xmpp_header_end) - 1);

    return (uintptr_t) p;
}


ngx_int_t
ngx_mail_xmpp_stream_error(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t err)
{
    u_char                    *p, *buf;
    size_t                     len;
    ngx_str_t                 *name;
    ngx_uint_t                 flags;
    ngx_mail_xmpp_ctx_t       *ctx;
    ngx_mail_core_srv_conf_t  *cscf;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);
    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    name = &ngx_mail_xmpp_stream_errors[err];

    len = sizeof(xmpp_error_start) - 1 + name->len
          + sizeof(xmpp_error_end) - 1;

    /* an error on the stream header still needs a header of ours */

    flags = NGX_XMPP_HEADER_ID | (ctx->server ? NGX_XMPP_HEADER_SERVER : 0);

    if (!ctx->header_sent) {
        len += ngx_mail_xmpp_stream_header(NULL, flags, &cscf->server_name,
                                           NULL);
    }

    buf = ngx_pnalloc(c->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;

    if (!ctx->header_sent) {
        p = (u_char *) ngx_mail_xmpp_stream_header(p, flags,
                                                   &cscf->server_name, NULL);
        ctx->header_sent = 1;
    }

    p = ngx_cpymem(p, xmpp_error_start, sizeof(xmpp_error_start) - 1);
    p = ngx_cpymem(p, name->data, name->len);
    p = ngx_cpymem(p, xmpp_error_end, sizeof(xmpp_error_end) - 1);

    return ngx_mail_xmpp_append(s, c, buf, p - buf);
}


void
ngx_mail_xmpp_stream_close(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t err)
{
    /* the stream error is the last thing sent: nothing queued before it */

    s->out.len = 0;

    if (ngx_mail_xmpp_stream_error(s, c, err) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    s->quit = 1;

    ngx_mail_send(c->write);
}


ngx_int_t
ngx_mail_xmpp_sasl_failure(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t cond, ngx_str_t *text)
{
    u_char      *p;
    size_t       len;
    ngx_str_t   *name;

    name = &ngx_mail_xmpp_sasl_conditions[cond];

    len = sizeof(xmpp_failure_start) - 1 + name->len + sizeof("/>") - 1;

    if (text && text->len) {
        len += sizeof(xmpp_failure_text) - 1 + text->len
               + ngx_mail_xmpp_escape(NULL, text->data, text->len)
               + sizeof(xmpp_failure_end) - 1;

    } else {
        len += sizeof(xmpp_failure_empty_end) - 1;
    }

    p = ngx_pnalloc(c->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->out.data = p;

    p = ngx_cpymem(p, xmpp_failure_start, sizeof(xmpp_failure_start) - 1);
    p = ngx_cpymem(p, name->data, name->len);
    *p++ = '/'; *p++ = '>';

    if (text && text->len) {
        p = ngx_cpymem(p, xmpp_failure_text, sizeof(xmpp_failure_text) - 1);
        p = (u_char *) ngx_mail_xmpp_escape(p, text->data, text->len);
        p = ngx_cpymem(p, xmpp_failure_end, sizeof(xmpp_failure_end) - 1);

    } else {
        p = ngx_cpymem(p, xmpp_failure_empty_end,
                       sizeof(xmpp_failure_empty_end) - 1);
    }

    s->out.len = p - s->out.data;
    s->mail_state = ngx_xmpp_start;

    if (ngx_mail_xmpp_count_error(s, c) == NGX_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_mail_xmpp_count_error(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_core_srv_conf_t  *cscf;

    /*
     * failed attempts may be retried, RFC 6120 section 6.4.5, up to
     * max_errors: then the stream ends with <policy-violation/> after
     * what is queued in s->out
     */

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    if (++s->errors < cscf->max_errors) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "client made too many failed authentication attempts");

    if (ngx_mail_xmpp_stream_error(s, c, NGX_XMPP_ERR_POLICY_VIOLATION)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->quit = 1;

    return NGX_DONE;
}


static ngx_int_t
ngx_mail_xmpp_append(ngx_mail_session_t *s, ngx_connection_t *c, u_char *data,
    size_t len)
{
    u_char  *p;

    if (s->out.len == 0) {
        s->out.data = data;
        s->out.len = len;
        return NGX_OK;
    }

    p = ngx_pnalloc(c->pool, s->out.len + len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, s->out.data, s->out.len);
    ngx_memcpy(p + s->out.len, data, len);

    s->out.data = p;
    s->out.len += len;

    return NGX_OK;
}


uintptr_t
ngx_mail_xmpp_escape(u_char *dst, u_char *src, size_t size)
{
    u_char      ch;
    ngx_uint_t  n;

    /*
     * XML text or an attribute value: markup characters as entities, TAB,
     * CR and LF as character references, other control characters (not
     * XML characters) as "?"; with dst NULL, the number of bytes added,
     * as ngx_escape_html() does
     */

    if (dst == NULL) {
        n = 0;

        while (size) {
            ch = *src++;

            if (ch == '&') {
                n += sizeof("&amp;") - 2;

            } else if (ch == '<' || ch == '>') {
                n += sizeof("&lt;") - 2;

            } else if (ch == '\'' || ch == '"') {
                n += sizeof("&quot;") - 2;

            } else if (ch < 0x20) {
                n += sizeof("&#10;") - 2;
            }

            size--;
        }

        return (uintptr_t) n;
    }

    while (size) {
        ch = *src++;

        switch (ch) {
        case '<':
            dst = ngx_cpymem(dst, "&lt;", sizeof("&lt;") - 1);
            break;
        case '>':
            dst = ngx_cpymem(dst, "&gt;", sizeof("&gt;") - 1);
            break;
        case '&':
            dst = ngx_cpymem(dst, "&amp;", sizeof("&amp;") - 1);
            break;
        case '\'':
            dst = ngx_cpymem(dst, "&apos;", sizeof("&apos;") - 1);
            break;
        case '"':
            dst = ngx_cpymem(dst, "&quot;", sizeof("&quot;") - 1);
            break;
        default:
            if (ch == '\t' || ch == CR || ch == LF) {
                dst = ngx_sprintf(dst, "&#%02d;", (int) ch);

            } else if (ch < 0x20) {
                dst = ngx_cpymem(dst, "&#63;", sizeof("&#63;") - 1);

            } else {
                *dst++ = ch;
            }

            break;
        }

        size--;
    }

    return (uintptr_t) dst;
}


ngx_str_t
ngx_mail_xmpp_log_value(u_char *buf, size_t size, ngx_str_t *src)
{
    u_char         *p, *q, *last, *end;
    ngx_str_t       v;
    static u_char   hex[] = "0123456789ABCDEF";

    /*
     * what a peer sent, made safe for the error log: control characters,
     * bytes outside ASCII, quotes and backslashes become "\xNN" (as in
     * the http access log), so a value never starts a line of its own;
     * a long value is cut, and the cut is marked with "..."
     */

    v.data = buf;
    v.len = 0;

    if (src->len == 0) {
        return v;
    }

    p = buf;
    end = buf + size - (sizeof("...") - 1);
    last = src->data + src->len;

    for (q = src->data; q < last; q++) {

        if (*q < 0x20 || *q >= 0x7f || *q == '"' || *q == '\\') {

            if (end - p < 4) {
                break;
            }

            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[*q >> 4];
            *p++ = hex[*q & 0xf];
            continue;
        }

        if (p == end) {
            break;
        }

        *p++ = *q;
    }

    if (q < last) {
        p = ngx_cpymem(p, "...", sizeof("...") - 1);
    }

    v.len = p - buf;

    return v;
}


void
ngx_mail_xmpp_skip_space(ngx_buf_t *b)
{
    /*
     * Whitespace after <auth/> would reach the backend after its
     * <success/>, before the client's new stream header: an XML
     * declaration must be the first thing in a stream, so the backend
     * would fail the restart.  Whitespace between elements means nothing.
     */

    while (b->pos < b->last
           && (*b->pos == ' ' || *b->pos == '\t'
               || *b->pos == CR || *b->pos == LF))
    {
        b->pos++;
    }

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;
    }
}


size_t
ngx_mail_xmpp_compact(ngx_buf_t *b, u_char *keep)
{
    size_t  n;

    /*
     * what a buffer holds from "keep" on moves to its start, and so does
     * "pos", which is never before "keep"; returns the distance moved
     */

    n = keep - b->start;

    if (n) {
        b->last = ngx_movemem(b->start, keep, b->last - keep);
        b->pos -= n;
    }

    return n;
}


ngx_int_t
ngx_mail_xmpp_check_domain(u_char *name, size_t len)
{
    u_char  *p, *last, *label;

    /*
     * A domainpart (RFC 7622) as a host name: labels of letters, digits
     * and "-" (IDNs as A-labels, IPv4 addresses in dotted form), 1 to 63
     * characters each, not starting or ending with "-", at most 253 in
     * all.  Nothing in such a name needs escaping anywhere: in XML, in a
     * header of the auth request, in a query string or in the log.
     */

    if (len == 0 || len > 253) {
        return NGX_DECLINED;
    }

    label = name;
    last = name + len;

    for (p = name; p < last; p++) {

        if (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')
            || (*p >= '0' && *p <= '9'))
        {
            continue;
        }

        if (*p == '-' && p != label) {
            continue;
        }

        if (*p == '.' && p != label && p[-1] != '-' && p - label <= 63) {
            label = p + 1;
            continue;
        }

        return NGX_DECLINED;
    }

    if (p == label || p[-1] == '-' || p - label > 63) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_mail_xmpp_check_token(ngx_str_t *id, size_t max)
{
    size_t   i;
    u_char   ch;

    /*
     * a stream id or a dialback key: what servers use (hex, base64,
     * DJabberd's "i-" and hex), nothing that needs escaping
     */

    if (id->len == 0 || id->len > max) {
        return NGX_DECLINED;
    }

    for (i = 0; i < id->len; i++) {
        ch = id->data[i];

        if (!((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z')
            && !(ch >= '0' && ch <= '9')
            && ch != '-' && ch != '.' && ch != '_' && ch != '+'
            && ch != '/' && ch != '=')
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}
