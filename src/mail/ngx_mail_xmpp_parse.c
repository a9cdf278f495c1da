
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


/*
 * The client side of an XMPP stream up to authentication is a short
 * sequence of "commands": the stream header, <starttls/>, <auth/>,
 * <response/>, <abort/> and the closing </stream:stream>.  The parser
 * below recognizes exactly these, one character at a time, and rejects
 * everything else with the stream error RFC 6120 asks for.  It is not
 * a general XML parser: it only knows enough XML (attributes in any
 * order and with either quote, namespace declarations, predefined and
 * numeric entities, UTF-8) to read what real clients send.
 */


#define NGX_XMPP_NS_NONE     0
#define NGX_XMPP_NS_STREAMS  1
#define NGX_XMPP_NS_CLIENT   2
#define NGX_XMPP_NS_SERVER   3
#define NGX_XMPP_NS_TLS      4
#define NGX_XMPP_NS_SASL     5
#define NGX_XMPP_NS_DIALBACK 6
#define NGX_XMPP_NS_OTHER    7


/* a complete element of these kinds is the command of the same number */

#define NGX_XMPP_EL_NONE        0
#define NGX_XMPP_EL_STREAM      NGX_XMPP_STREAM
#define NGX_XMPP_EL_STREAM_END  NGX_XMPP_STREAM_END
#define NGX_XMPP_EL_STARTTLS    NGX_XMPP_STARTTLS
#define NGX_XMPP_EL_AUTH        NGX_XMPP_AUTH
#define NGX_XMPP_EL_RESPONSE    NGX_XMPP_RESPONSE
#define NGX_XMPP_EL_ABORT       NGX_XMPP_ABORT
#define NGX_XMPP_EL_DB_RESULT   NGX_XMPP_DB_RESULT
#define NGX_XMPP_EL_DB_VERIFY   NGX_XMPP_DB_VERIFY
#define NGX_XMPP_EL_DECL        9
#define NGX_XMPP_EL_CHILD       10   /* start tag inside the stream */


#define NGX_XMPP_AT_NONE     0
#define NGX_XMPP_AT_TO       1
#define NGX_XMPP_AT_VERSION  2
#define NGX_XMPP_AT_XMLNS    3
#define NGX_XMPP_AT_PREFIX   4
#define NGX_XMPP_AT_MECH     5
#define NGX_XMPP_AT_ENCODING 6
#define NGX_XMPP_AT_OTHER    7
#define NGX_XMPP_AT_FROM     8
#define NGX_XMPP_AT_DECL     9
#define NGX_XMPP_AT_DB_FROM  10
#define NGX_XMPP_AT_DB_TO    11
#define NGX_XMPP_AT_DB_ID    12


static void ngx_mail_xmpp_parse_keep(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
static ngx_int_t ngx_mail_xmpp_char(ngx_mail_xmpp_ctx_t *ctx, u_char ch);
static ngx_uint_t ngx_mail_xmpp_namespace(u_char *value, size_t len);
static ngx_uint_t ngx_mail_xmpp_attr_name(ngx_mail_xmpp_ctx_t *ctx);
static ngx_int_t ngx_mail_xmpp_attr_value(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx);
static ngx_int_t ngx_mail_xmpp_entity(ngx_mail_xmpp_ctx_t *ctx, u_char *buf,
    size_t *len);
static ngx_uint_t ngx_mail_xmpp_start_tag(ngx_mail_xmpp_ctx_t *ctx);
static ngx_uint_t ngx_mail_xmpp_check_stream(ngx_mail_xmpp_ctx_t *ctx);
static void ngx_mail_xmpp_scan_child(ngx_mail_xmpp_scan_t *sc);
static void ngx_mail_xmpp_scan_attr(ngx_mail_xmpp_relay_t *r);
static void ngx_mail_xmpp_scan_value(ngx_mail_xmpp_relay_t *r, u_char ch,
    ngx_uint_t end);


static ngx_str_t  ngx_mail_xmpp_namespaces[] = {
    ngx_null_string,
    ngx_string(NGX_XMPP_STREAMS_NS),
    ngx_string("jabber:client"),
    ngx_string("jabber:server"),
    ngx_string(NGX_XMPP_TLS_NS),
    ngx_string(NGX_XMPP_SASL_NS),
    ngx_string("jabber:server:dialback"),
};


#define ngx_xmpp_name_char(ch)                                               \
    ((((ch) | 0x20) >= 'a' && ((ch) | 0x20) <= 'z')                          \
     || ((ch) >= '0' && (ch) <= '9')                                          \
     || (ch) == '-' || (ch) == '_' || (ch) == '.' || (ch) == ':'              \
     || (ch) >= 0x80)

#define ngx_xmpp_name_start(ch)                                              \
    ((((ch) | 0x20) >= 'a' && ((ch) | 0x20) <= 'z')                          \
     || (ch) == '_' || (ch) >= 0x80)

#define ngx_xmpp_space(ch)                                                   \
    ((ch) == ' ' || (ch) == '\t' || (ch) == CR || (ch) == LF)

#define ngx_xmpp_base64(ch)                                                  \
    ((((ch) | 0x20) >= 'a' && ((ch) | 0x20) <= 'z')                          \
     || ((ch) >= '0' && (ch) <= '9')                                          \
     || (ch) == '+' || (ch) == '/' || (ch) == '=')


ngx_int_t
ngx_mail_xmpp_parse_command(ngx_mail_session_t *s)
{
    u_char                ch, *p, *target;
    size_t                target_len;
    ngx_int_t             rc;
    ngx_uint_t            err;
    ngx_mail_xmpp_ctx_t  *ctx;
    enum {
        sw_start = 0,
        sw_lt,
        sw_pi_name,
        sw_name,
        sw_attrs,
        sw_attr_name,
        sw_attr_eq,
        sw_attr_quote,
        sw_attr_value,
        sw_entity,
        sw_empty,
        sw_decl_end,
        sw_content,
        sw_text,
        sw_content_lt,
        sw_end_name,
        sw_end_space
    } state;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_xmpp_module);

    if (ctx->parse.value == NULL) {
        ctx->parse.value = ngx_pnalloc(s->connection->pool,
                                 NGX_MAIL_XMPP_VALUE_LEN);
        if (ctx->parse.value == NULL) {
            return NGX_ERROR;
        }

        ctx->parse.version.data = ctx->parse.version_data;
        ctx->parse.mech.data = ctx->parse.mech_data;
    }

    state = s->state;

    for (p = s->buffer->pos; p < s->buffer->last; p++) {
        ch = *p;

        /* UTF-8 and XML character validation of every byte */

        if (ngx_mail_xmpp_char(ctx, ch) != NGX_OK) {
            goto not_well_formed;
        }

        switch (state) {

        /* between elements */
        case sw_start:

            if (ngx_xmpp_space(ch)) {
                break;
            }

            if (ch == '<') {
                ctx->parse.elem_start = p;
                state = sw_lt;
                break;
            }

            if (ctx->stream) {
                err = NGX_XMPP_ERR_BAD_FORMAT;
                goto invalid;
            }

            goto not_well_formed;

        case sw_lt:

            ctx->parse.name_len = 0;
            ctx->parse.prefix_len = 0;
            ctx->parse.elem_ns = NGX_XMPP_NS_NONE;
            ctx->parse.default_ns = NGX_XMPP_NS_NONE;
            ctx->parse.empty = 0;
            ctx->parse.has_version = 0;
            ctx->parse.has_to = 0;
            ctx->parse.has_mech = 0;
            ctx->parse.bad_text = 0;
            ctx->parse.mech.len = 0;
            ctx->s2s.db_from.len = 0;
            ctx->s2s.db_to.len = 0;
            ctx->s2s.db_id.len = 0;
            ctx->parse.text_start = NULL;
            ctx->parse.text_end = NULL;

            if (ch == '?') {
                if (ctx->stream || ctx->parse.decl) {
                    err = NGX_XMPP_ERR_RESTRICTED_XML;
                    goto invalid;
                }

                ctx->parse.element = NGX_XMPP_EL_DECL;
                state = sw_pi_name;
                break;
            }

            if (ch == '!') {
                err = NGX_XMPP_ERR_RESTRICTED_XML;
                goto invalid;
            }

            if (ch == '/') {
                if (!ctx->stream) {
                    goto not_well_formed;
                }

                ctx->parse.element = NGX_XMPP_EL_STREAM_END;
                ctx->parse.end_len = 0;
                state = sw_end_name;
                break;
            }

            if (ngx_xmpp_name_start(ch)) {
                ctx->parse.element = ctx->stream ? NGX_XMPP_EL_CHILD
                                           : NGX_XMPP_EL_STREAM;
                ctx->parse.name[ctx->parse.name_len++] = ch;
                state = sw_name;
                break;
            }

            goto not_well_formed;

        case sw_pi_name:

            if (ngx_xmpp_name_char(ch)) {
                if (ctx->parse.name_len == 3) {
                    err = NGX_XMPP_ERR_RESTRICTED_XML;
                    goto invalid;
                }

                ctx->parse.name[ctx->parse.name_len++] = ch;
                break;
            }

            if (ngx_xmpp_space(ch)
                && ctx->parse.name_len == 3
                && ngx_strncmp(ctx->parse.name, "xml", 3) == 0)
            {
                state = sw_attrs;
                break;
            }

            if (ctx->parse.name_len == 0) {
                goto not_well_formed;
            }

            err = NGX_XMPP_ERR_RESTRICTED_XML;
            goto invalid;

        case sw_name:

            if (ngx_xmpp_name_char(ch)) {
                if (ctx->parse.name_len == NGX_MAIL_XMPP_NAME_LEN) {
                    err = ctx->stream ? NGX_XMPP_ERR_NOT_AUTHORIZED
                                      : NGX_XMPP_ERR_POLICY_VIOLATION;
                    goto invalid;
                }

                if (ch == ':') {
                    if (ctx->parse.prefix_len) {
                        goto not_well_formed;
                    }

                    ctx->parse.prefix_len = ctx->parse.name_len;
                }

                ctx->parse.name[ctx->parse.name_len++] = ch;
                break;
            }

            if (ngx_xmpp_space(ch)) {
                state = sw_attrs;
                break;
            }

            if (ch == '/') {
                state = sw_empty;
                break;
            }

            if (ch == '>') {
                goto start_tag;
            }

            goto not_well_formed;

        case sw_attrs:

            if (ngx_xmpp_space(ch)) {
                break;
            }

            if (ch == '/' && ctx->parse.element != NGX_XMPP_EL_DECL) {
                state = sw_empty;
                break;
            }

            if (ch == '?' && ctx->parse.element == NGX_XMPP_EL_DECL) {
                state = sw_decl_end;
                break;
            }

            if (ch == '>' && ctx->parse.element != NGX_XMPP_EL_DECL) {
                goto start_tag;
            }

            if (ngx_xmpp_name_start(ch)) {
                ctx->parse.attr_len = 0;
                ctx->parse.attr_name[ctx->parse.attr_len++] = ch;
                state = sw_attr_name;
                break;
            }

            goto not_well_formed;

        case sw_attr_name:

            if (ngx_xmpp_name_char(ch)) {
                if (ctx->parse.attr_len < NGX_MAIL_XMPP_NAME_LEN) {
                    ctx->parse.attr_name[ctx->parse.attr_len] = ch;
                }

                /* an overlong name is kept as "too long": never ours */
                ctx->parse.attr_len++;
                break;
            }

            if (ngx_xmpp_space(ch)) {
                state = sw_attr_eq;
                break;
            }

            if (ch == '=') {
                state = sw_attr_quote;
                break;
            }

            goto not_well_formed;

        case sw_attr_eq:

            if (ngx_xmpp_space(ch)) {
                break;
            }

            if (ch == '=') {
                state = sw_attr_quote;
                break;
            }

            goto not_well_formed;

        case sw_attr_quote:

            if (ngx_xmpp_space(ch)) {
                break;
            }

            if (ch == '\'' || ch == '"') {
                err = ngx_mail_xmpp_attr_name(ctx);

                if (err != NGX_XMPP_ERR_NONE) {
                    goto invalid;
                }

                ctx->parse.quote = ch;
                ctx->parse.value_len = 0;
                state = sw_attr_value;
                break;
            }

            goto not_well_formed;

        case sw_attr_value:

            if (ch == ctx->parse.quote) {
                rc = ngx_mail_xmpp_attr_value(s, ctx);

                if (rc == NGX_ERROR) {
                    return NGX_ERROR;
                }

                if (rc == NGX_DECLINED) {
                    err = ctx->error;
                    goto invalid;
                }

                state = sw_attrs;
                break;
            }

            if (ch == '<') {
                goto not_well_formed;
            }

            if (ch == '&') {
                ctx->parse.entity_len = 0;
                ctx->parse.entity_state = sw_attr_value;
                state = sw_entity;
                break;
            }

            if (ctx->parse.attr == NGX_XMPP_AT_NONE) {
                break;
            }

            if (ctx->parse.value_len == NGX_MAIL_XMPP_VALUE_LEN) {
                err = NGX_XMPP_ERR_POLICY_VIOLATION;
                goto invalid;
            }

            /* attribute value normalization, XML 1.0 section 3.3.3 */

            if (ngx_xmpp_space(ch)) {
                ch = ' ';
            }

            ctx->parse.value[ctx->parse.value_len++] = ch;
            break;

        /* a reference in an attribute value or in text */
        case sw_entity:

            if (ch == ';') {
                if (ngx_mail_xmpp_entity(ctx, ctx->parse.value,
                                         &ctx->parse.value_len)
                    != NGX_OK)
                {
                    goto not_well_formed;
                }

                state = ctx->parse.entity_state;
                break;
            }

            if (ctx->parse.entity_len == NGX_MAIL_XMPP_ENTITY_LEN
                || !(ngx_xmpp_name_char(ch) || ch == '#'))
            {
                goto not_well_formed;
            }

            ctx->parse.entity[ctx->parse.entity_len++] = ch;
            break;

        case sw_empty:

            if (ch != '>') {
                goto not_well_formed;
            }

            ctx->parse.empty = 1;
            goto start_tag;

        case sw_decl_end:

            if (ch != '>') {
                goto not_well_formed;
            }

            if (ctx->parse.bad_text) {
                err = NGX_XMPP_ERR_UNSUPPORTED_ENCODING;
                goto invalid;
            }

            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                           "xmpp xml declaration");

            ctx->parse.decl = 1;
            ctx->parse.element = NGX_XMPP_EL_NONE;
            state = sw_start;
            break;

        /* inside <starttls> or <abort>: only whitespace */
        case sw_content:

            if (ngx_xmpp_space(ch)) {
                break;
            }

            if (ch == '<') {
                state = sw_content_lt;
                break;
            }

            err = NGX_XMPP_ERR_BAD_FORMAT;
            goto invalid;

        /* inside <auth> or <response>: base64 */
        case sw_text:

            if (ch == '<') {
                ctx->parse.text_end = p;
                state = sw_content_lt;
                break;
            }

            if (ch == '&') {

                /* a reference is well-formed XML, but never base64 */

                ctx->parse.bad_text = 1;
                ctx->parse.attr = NGX_XMPP_AT_NONE;
                ctx->parse.entity_len = 0;
                ctx->parse.entity_state = sw_text;
                state = sw_entity;
                break;
            }

            if (!ngx_xmpp_base64(ch)) {
                ctx->parse.bad_text = 1;
            }

            break;

        case sw_content_lt:

            if (ch == '!' || ch == '?') {
                /* a comment, CDATA section or processing instruction */
                err = NGX_XMPP_ERR_RESTRICTED_XML;
                goto invalid;
            }

            if (ch != '/') {
                err = NGX_XMPP_ERR_BAD_FORMAT;
                goto invalid;
            }

            ctx->parse.end_len = 0;
            state = sw_end_name;
            break;

        case sw_end_name:

            if (ctx->parse.element == NGX_XMPP_EL_STREAM_END) {
                target = ctx->parse.stream_name;
                target_len = ctx->parse.stream_name_len;

            } else {
                target = ctx->parse.name;
                target_len = ctx->parse.name_len;
            }

            if (ngx_xmpp_name_char(ch)) {
                if (ctx->parse.end_len == target_len
                    || target[ctx->parse.end_len] != ch)
                {
                    goto not_well_formed;
                }

                ctx->parse.end_len++;
                break;
            }

            if (ctx->parse.end_len != target_len) {
                goto not_well_formed;
            }

            if (ngx_xmpp_space(ch)) {
                state = sw_end_space;
                break;
            }

            if (ch == '>') {
                goto done;
            }

            goto not_well_formed;

        case sw_end_space:

            if (ngx_xmpp_space(ch)) {
                break;
            }

            if (ch == '>') {
                goto done;
            }

            goto not_well_formed;
        }

        continue;

    start_tag:

        err = ngx_mail_xmpp_start_tag(ctx);

        if (err != NGX_XMPP_ERR_NONE) {
            goto invalid;
        }

        switch (ctx->parse.element) {

        case NGX_XMPP_EL_STREAM:

            if (ctx->parse.empty) {
                err = NGX_XMPP_ERR_BAD_FORMAT;
                goto invalid;
            }

            err = ngx_mail_xmpp_check_stream(ctx);

            if (err != NGX_XMPP_ERR_NONE) {
                goto invalid;
            }

            ngx_memcpy(ctx->parse.stream_name, ctx->parse.name,
                       ctx->parse.name_len);
            ctx->parse.stream_name_len = ctx->parse.name_len;

            goto done;

        case NGX_XMPP_EL_AUTH:
        case NGX_XMPP_EL_RESPONSE:
        case NGX_XMPP_EL_DB_RESULT:
        case NGX_XMPP_EL_DB_VERIFY:

            if (ctx->parse.empty) {
                ctx->parse.text_start = NULL;
                ctx->parse.text_end = NULL;
                goto done;
            }

            ctx->parse.text_start = p + 1;
            state = sw_text;
            continue;

        default: /* NGX_XMPP_EL_STARTTLS, NGX_XMPP_EL_ABORT */

            if (ctx->parse.empty) {
                goto done;
            }

            state = sw_content;
            continue;
        }
    }

    s->buffer->pos = p;
    s->state = state;

    ngx_mail_xmpp_parse_keep(s, ctx);

    if (s->buffer->last == s->buffer->end) {

        /*
         * an element does not fit: an error of ours, before the mail
         * core logs the unescaped input as a "too long command"
         */

        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "client sent an element longer than "
                      "xmpp_client_buffer");

        err = NGX_XMPP_ERR_POLICY_VIOLATION;
        goto invalid;
    }

    return NGX_AGAIN;

done:

    s->command = ctx->parse.element;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "xmpp command: %ui", s->command);

    s->buffer->pos = p + 1;
    s->state = sw_start;
    ctx->parse.element = NGX_XMPP_EL_NONE;

    return NGX_OK;

not_well_formed:

    err = NGX_XMPP_ERR_NOT_WELL_FORMED;

invalid:

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "xmpp invalid input in state %d, error %ui", state, err);

    ctx->error = err;
    ctx->parse.element = NGX_XMPP_EL_NONE;
    ctx->parse.utf8 = 0;

    s->state = sw_start;
    s->buffer->pos = s->buffer->last;

    return NGX_MAIL_PARSE_INVALID_COMMAND;
}


static void
ngx_mail_xmpp_parse_keep(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    size_t      n;
    ngx_buf_t  *b;

    /*
     * all input is parsed, and no command is complete: keep only what
     * the next read continues, so that the limit of xmpp_client_buffer
     * is on one element, however the input was split into reads
     */

    b = s->buffer;

    if (s->state == 0 && !ctx->parse.utf8) {

        /* nothing but whitespace: discard it, keepalives are unbounded */

        b->pos = b->start;
        b->last = b->start;
        return;
    }

    if (ctx->parse.elem_start <= b->start) {
        return;
    }

    /* an element in progress after whitespace or an XML declaration */

    n = ngx_mail_xmpp_compact(b, ctx->parse.elem_start);

    if (ctx->parse.text_start) {
        ctx->parse.text_start -= n;
    }

    if (ctx->parse.text_end) {
        ctx->parse.text_end -= n;
    }

    ctx->parse.elem_start = b->start;
}


static ngx_int_t
ngx_mail_xmpp_char(ngx_mail_xmpp_ctx_t *ctx, u_char ch)
{
    /*
     * UTF-8 (RFC 3629: no overlong forms, no surrogates, at most
     * U+10FFFF) and the characters of XML 1.0, byte by byte
     */

    if (ctx->parse.utf8) {
        if (ch < ctx->parse.utf8_min || ch > ctx->parse.utf8_max) {
            return NGX_ERROR;
        }

        ctx->parse.utf8--;
        ctx->parse.utf8_min = 0x80;
        ctx->parse.utf8_max = 0xbf;

        return NGX_OK;
    }

    if (ch < 0x80) {

        if (ch < 0x20 && ch != '\t' && ch != CR && ch != LF) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    ctx->parse.utf8_min = 0x80;
    ctx->parse.utf8_max = 0xbf;

    if (ch < 0xc2) {
        return NGX_ERROR;

    } else if (ch < 0xe0) {
        ctx->parse.utf8 = 1;

    } else if (ch < 0xf0) {
        ctx->parse.utf8 = 2;

        if (ch == 0xe0) {
            ctx->parse.utf8_min = 0xa0;

        } else if (ch == 0xed) {
            ctx->parse.utf8_max = 0x9f;
        }

    } else if (ch < 0xf5) {
        ctx->parse.utf8 = 3;

        if (ch == 0xf0) {
            ctx->parse.utf8_min = 0x90;

        } else if (ch == 0xf4) {
            ctx->parse.utf8_max = 0x8f;
        }

    } else {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_mail_xmpp_namespace(u_char *value, size_t len)
{
    ngx_uint_t  i;

    for (i = NGX_XMPP_NS_STREAMS; i < NGX_XMPP_NS_OTHER; i++) {
        if (len == ngx_mail_xmpp_namespaces[i].len
            && ngx_strncmp(value, ngx_mail_xmpp_namespaces[i].data, len) == 0)
        {
            return i;
        }
    }

    return NGX_XMPP_NS_OTHER;
}


static ngx_uint_t
ngx_mail_xmpp_attr_name(ngx_mail_xmpp_ctx_t *ctx)
{
    u_char  *name;
    size_t   len;

    name = ctx->parse.attr_name;
    len = ctx->parse.attr_len;

    ctx->parse.attr = NGX_XMPP_AT_NONE;

    if (len > NGX_MAIL_XMPP_NAME_LEN) {
        return NGX_XMPP_ERR_NONE;
    }

    if (len == 5 && ngx_strncmp(name, "xmlns", 5) == 0) {
        ctx->parse.attr = NGX_XMPP_AT_XMLNS;
        return NGX_XMPP_ERR_NONE;
    }

    if (len > 6 && ngx_strncmp(name, "xmlns:", 6) == 0) {

        if (ctx->parse.prefix_len == len - 6
            && ngx_strncmp(name + 6, ctx->parse.name, ctx->parse.prefix_len)
               == 0)
        {
            ctx->parse.attr = NGX_XMPP_AT_PREFIX;

        } else if (ctx->parse.element == NGX_XMPP_EL_STREAM) {
            /* a prefix declared for the stream's children, "db" */
            ctx->parse.attr = NGX_XMPP_AT_DECL;
        }

        return NGX_XMPP_ERR_NONE;
    }

    switch (ctx->parse.element) {

    case NGX_XMPP_EL_DECL:

        if (len == 8 && ngx_strncmp(name, "encoding", 8) == 0) {
            ctx->parse.attr = NGX_XMPP_AT_ENCODING;
        }

        break;

    case NGX_XMPP_EL_STREAM:

        if (len == 2 && name[0] == 't' && name[1] == 'o') {
            if (ctx->parse.has_to) {
                return NGX_XMPP_ERR_NOT_WELL_FORMED;
            }

            ctx->parse.has_to = 1;
            ctx->parse.attr = NGX_XMPP_AT_TO;

        } else if (len == 7 && ngx_strncmp(name, "version", 7) == 0) {
            if (ctx->parse.has_version) {
                return NGX_XMPP_ERR_NOT_WELL_FORMED;
            }

            ctx->parse.has_version = 1;
            ctx->parse.attr = NGX_XMPP_AT_VERSION;

        } else if (len == 4 && ngx_strncmp(name, "from", 4) == 0) {
            ctx->parse.attr = NGX_XMPP_AT_FROM;
        }

        break;

    case NGX_XMPP_EL_CHILD:

        if (len == 9 && ngx_strncmp(name, "mechanism", 9) == 0) {
            if (ctx->parse.has_mech) {
                return NGX_XMPP_ERR_NOT_WELL_FORMED;
            }

            ctx->parse.has_mech = 1;
            ctx->parse.attr = NGX_XMPP_AT_MECH;

        } else if (!ctx->server) {
            break;

        } else if (len == 4 && ngx_strncmp(name, "from", 4) == 0) {
            ctx->parse.attr = NGX_XMPP_AT_DB_FROM;

        } else if (len == 2 && name[0] == 't' && name[1] == 'o') {
            ctx->parse.attr = NGX_XMPP_AT_DB_TO;

        } else if (len == 2 && name[0] == 'i' && name[1] == 'd') {
            ctx->parse.attr = NGX_XMPP_AT_DB_ID;
        }

        break;
    }

    return NGX_XMPP_ERR_NONE;
}


static ngx_int_t
ngx_mail_xmpp_attr_value(ngx_mail_session_t *s, ngx_mail_xmpp_ctx_t *ctx)
{
    u_char  *p;

    switch (ctx->parse.attr) {

    case NGX_XMPP_AT_XMLNS:
        ctx->parse.default_ns = ngx_mail_xmpp_namespace(ctx->parse.value,
                                                        ctx->parse.value_len);
        break;

    case NGX_XMPP_AT_PREFIX:
        ctx->parse.elem_ns = ngx_mail_xmpp_namespace(ctx->parse.value,
                                                     ctx->parse.value_len);
        break;

    case NGX_XMPP_AT_ENCODING:

        if (!(ctx->parse.value_len == 5
              && ngx_strncasecmp(ctx->parse.value, (u_char *) "utf-8", 5) == 0)
            && !(ctx->parse.value_len == 4
                 && ngx_strncasecmp(ctx->parse.value, (u_char *) "utf8", 4)
                    == 0))
        {
            /* reported at the end of the declaration */
            ctx->parse.bad_text = 1;
        }

        break;

    case NGX_XMPP_AT_DECL:

        if (ngx_mail_xmpp_namespace(ctx->parse.value, ctx->parse.value_len)
            == NGX_XMPP_NS_DIALBACK)
        {
            ctx->parse.db_prefix_len = ctx->parse.attr_len - 6;
            ngx_memcpy(ctx->parse.db_prefix, ctx->parse.attr_name + 6,
                       ctx->parse.db_prefix_len);
        }

        break;

    case NGX_XMPP_AT_TO:
    case NGX_XMPP_AT_FROM:
    case NGX_XMPP_AT_DB_FROM:
    case NGX_XMPP_AT_DB_TO:
    case NGX_XMPP_AT_DB_ID:

        p = ngx_pnalloc(s->connection->pool, ctx->parse.value_len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, ctx->parse.value, ctx->parse.value_len);

        switch (ctx->parse.attr) {

        case NGX_XMPP_AT_TO:
            ctx->host.len = ctx->parse.value_len;
            ctx->host.data = p;
            break;

        case NGX_XMPP_AT_FROM:
            ctx->s2s.remote.len = ctx->parse.value_len;
            ctx->s2s.remote.data = p;
            break;

        case NGX_XMPP_AT_DB_FROM:
            ctx->s2s.db_from.len = ctx->parse.value_len;
            ctx->s2s.db_from.data = p;
            break;

        case NGX_XMPP_AT_DB_TO:
            ctx->s2s.db_to.len = ctx->parse.value_len;
            ctx->s2s.db_to.data = p;
            break;

        default: /* NGX_XMPP_AT_DB_ID */
            ctx->s2s.db_id.len = ctx->parse.value_len;
            ctx->s2s.db_id.data = p;
            break;
        }

        break;

    /*
     * the version and the mechanism are kept in buffers of the context:
     * however often a client repeats them, they take no memory
     */

    case NGX_XMPP_AT_VERSION:

        if (ctx->parse.value_len > NGX_MAIL_XMPP_VERSION_LEN) {
            ctx->error = NGX_XMPP_ERR_UNSUPPORTED_VERSION;
            return NGX_DECLINED;
        }

        ctx->parse.version.len = ctx->parse.value_len;
        ngx_memcpy(ctx->parse.version.data, ctx->parse.value,
                   ctx->parse.value_len);
        break;

    case NGX_XMPP_AT_MECH:

        if (ctx->parse.value_len > NGX_MAIL_XMPP_MECH_LEN) {
            /* longer than any mechanism name (RFC 4422: 20) */
            ctx->parse.mech.len = 0;
            break;
        }

        ctx->parse.mech.len = ctx->parse.value_len;
        ngx_memcpy(ctx->parse.mech.data, ctx->parse.value,
                   ctx->parse.value_len);
        break;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_mail_xmpp_entity(ngx_mail_xmpp_ctx_t *ctx, u_char *buf, size_t *len)
{
    u_char      *e, tmp[4], *p;
    size_t       n;
    uint32_t     cp;
    ngx_uint_t   i, hex;

    e = ctx->parse.entity;
    n = ctx->parse.entity_len;

    if (n == 2 && e[0] == 'l' && e[1] == 't') {
        cp = '<';

    } else if (n == 2 && e[0] == 'g' && e[1] == 't') {
        cp = '>';

    } else if (n == 3 && ngx_strncmp(e, "amp", 3) == 0) {
        cp = '&';

    } else if (n == 4 && ngx_strncmp(e, "quot", 4) == 0) {
        cp = '"';

    } else if (n == 4 && ngx_strncmp(e, "apos", 4) == 0) {
        cp = '\'';

    } else if (n > 1 && e[0] == '#') {

        hex = (e[1] == 'x');
        i = hex ? 2 : 1;

        if (i == n) {
            return NGX_ERROR;
        }

        cp = 0;

        for ( /* void */ ; i < n; i++) {

            if (cp > 0x10ffff) {
                return NGX_ERROR;
            }

            if (e[i] >= '0' && e[i] <= '9') {
                cp = cp * (hex ? 16 : 10) + (e[i] - '0');

            } else if (hex && (e[i] | 0x20) >= 'a' && (e[i] | 0x20) <= 'f') {
                cp = cp * 16 + ((e[i] | 0x20) - 'a' + 10);

            } else {
                return NGX_ERROR;
            }
        }

        /* Char production, XML 1.0 section 2.2 */

        if (!(cp == 0x9 || cp == 0xa || cp == 0xd
              || (cp >= 0x20 && cp <= 0xd7ff)
              || (cp >= 0xe000 && cp <= 0xfffd)
              || (cp >= 0x10000 && cp <= 0x10ffff)))
        {
            return NGX_ERROR;
        }

    } else {
        return NGX_ERROR;
    }

    p = tmp;

    if (cp < 0x80) {
        *p++ = (u_char) cp;

    } else if (cp < 0x800) {
        *p++ = (u_char) (0xc0 | (cp >> 6));
        *p++ = (u_char) (0x80 | (cp & 0x3f));

    } else if (cp < 0x10000) {
        *p++ = (u_char) (0xe0 | (cp >> 12));
        *p++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        *p++ = (u_char) (0x80 | (cp & 0x3f));

    } else {
        *p++ = (u_char) (0xf0 | (cp >> 18));
        *p++ = (u_char) (0x80 | ((cp >> 12) & 0x3f));
        *p++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        *p++ = (u_char) (0x80 | (cp & 0x3f));
    }

    if (ctx->parse.attr == NGX_XMPP_AT_NONE) {
        return NGX_OK;
    }

    n = p - tmp;

    if (*len + n > NGX_MAIL_XMPP_VALUE_LEN) {
        return NGX_ERROR;
    }

    ngx_memcpy(buf + *len, tmp, n);
    *len += n;

    return NGX_OK;
}


static ngx_uint_t
ngx_mail_xmpp_start_tag(ngx_mail_xmpp_ctx_t *ctx)
{
    u_char      *local;
    size_t       len;
    ngx_uint_t   ns;

    if (ctx->parse.element != NGX_XMPP_EL_CHILD) {
        return NGX_XMPP_ERR_NONE;
    }

    if (ctx->parse.prefix_len) {
        local = ctx->parse.name + ctx->parse.prefix_len + 1;
        len = ctx->parse.name_len - ctx->parse.prefix_len - 1;
        ns = ctx->parse.elem_ns;

        if (ns == NGX_XMPP_NS_NONE
            && ctx->parse.db_prefix_len == ctx->parse.prefix_len
            && ngx_strncmp(ctx->parse.name, ctx->parse.db_prefix,
                           ctx->parse.prefix_len)
               == 0)
        {
            ns = NGX_XMPP_NS_DIALBACK;
        }

    } else {
        local = ctx->parse.name;
        len = ctx->parse.name_len;
        ns = ctx->parse.default_ns;
    }

    if (ctx->server) {

        if (ns == NGX_XMPP_NS_DIALBACK
            && len == 6 && ngx_strncmp(local, "result", 6) == 0)
        {
            ctx->parse.element = NGX_XMPP_EL_DB_RESULT;
            return NGX_XMPP_ERR_NONE;
        }

        if (ns == NGX_XMPP_NS_DIALBACK
            && len == 6 && ngx_strncmp(local, "verify", 6) == 0)
        {
            ctx->parse.element = NGX_XMPP_EL_DB_VERIFY;
            return NGX_XMPP_ERR_NONE;
        }

        if (ns != NGX_XMPP_NS_TLS) {
            return NGX_XMPP_ERR_NOT_AUTHORIZED;
        }
    }

    if (ns == NGX_XMPP_NS_TLS
        && len == 8 && ngx_strncmp(local, "starttls", 8) == 0)
    {
        ctx->parse.element = NGX_XMPP_EL_STARTTLS;
        return NGX_XMPP_ERR_NONE;
    }

    if (ns == NGX_XMPP_NS_SASL) {

        if (len == 4 && ngx_strncmp(local, "auth", 4) == 0) {
            ctx->parse.element = NGX_XMPP_EL_AUTH;
            return NGX_XMPP_ERR_NONE;
        }

        if (len == 8 && ngx_strncmp(local, "response", 8) == 0) {
            ctx->parse.element = NGX_XMPP_EL_RESPONSE;
            return NGX_XMPP_ERR_NONE;
        }

        if (len == 5 && ngx_strncmp(local, "abort", 5) == 0) {
            ctx->parse.element = NGX_XMPP_EL_ABORT;
            return NGX_XMPP_ERR_NONE;
        }
    }

    /* a stanza or any other element before authentication */

    return NGX_XMPP_ERR_NOT_AUTHORIZED;
}


static ngx_uint_t
ngx_mail_xmpp_check_stream(ngx_mail_xmpp_ctx_t *ctx)
{
    u_char      *p, *last, *local;
    size_t       len;
    ngx_uint_t   major, digits;

    if (ctx->parse.prefix_len) {
        local = ctx->parse.name + ctx->parse.prefix_len + 1;
        len = ctx->parse.name_len - ctx->parse.prefix_len - 1;

        if (ctx->parse.elem_ns != NGX_XMPP_NS_STREAMS
            || ctx->parse.default_ns != (ctx->server ? NGX_XMPP_NS_SERVER
                                               : NGX_XMPP_NS_CLIENT))
        {
            return NGX_XMPP_ERR_INVALID_NAMESPACE;
        }

    } else {
        local = ctx->parse.name;
        len = ctx->parse.name_len;

        if (ctx->parse.default_ns != NGX_XMPP_NS_STREAMS) {
            return NGX_XMPP_ERR_INVALID_NAMESPACE;
        }
    }

    if (len != 6 || ngx_strncmp(local, "stream", 6) != 0) {
        return NGX_XMPP_ERR_INVALID_NAMESPACE;
    }

    /* version: "1.0" or later, RFC 6120 section 4.7.5 */

    if (!ctx->parse.has_version) {
        return NGX_XMPP_ERR_UNSUPPORTED_VERSION;
    }

    p = ctx->parse.version.data;
    last = p + ctx->parse.version.len;
    major = 0;
    digits = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        major = major * 10 + (*p++ - '0');
        digits++;
    }

    if (digits == 0 || digits > 8 || p == last || *p++ != '.' || p == last) {
        return NGX_XMPP_ERR_UNSUPPORTED_VERSION;
    }

    while (p < last) {
        if (*p < '0' || *p > '9') {
            return NGX_XMPP_ERR_UNSUPPORTED_VERSION;
        }

        p++;
    }

    if (major < 1) {
        return NGX_XMPP_ERR_UNSUPPORTED_VERSION;
    }

    /* the stream "to" names a domain, before anything else is done */

    if (!ctx->parse.has_to) {
        return NGX_XMPP_ERR_HOST_UNKNOWN;
    }

    /* one form to compare, log and send: lowercase, no final dot */

    if (ctx->host.len && ctx->host.data[ctx->host.len - 1] == '.') {
        ctx->host.len--;
    }

    ngx_strlow(ctx->host.data, ctx->host.data, ctx->host.len);

    if (ngx_mail_xmpp_check_domain(ctx->host.data, ctx->host.len) != NGX_OK) {
        return NGX_XMPP_ERR_HOST_UNKNOWN;
    }

    return NGX_XMPP_ERR_NONE;
}


/*
 * One tokenizer for the XML of both sides of a session.  Before the
 * relay, it reads what the backend sends: the stream header, then complete
 * children of the stream, each reported by its local name.  Once an
 * xmpp-server session is relayed, it follows both directions: the
 * backend's, to know whether its stream is between two elements (where a
 * stream error of nginx may go), and the remote's, which it checks
 * (sc->relay set): restricted XML (RFC 6120 section 11.1) is refused, and
 * so is a top-level <result/> or <verify/> (any prefix) whose "from" and
 * "to" are not the pair auth_http approved.  The backend acts on an
 * element only when it is complete, so the check at the end of the start
 * tag is in time.
 *
 * It follows well-formed XML exactly (quoted values, empty elements, CDATA
 * sections, comments and processing instructions); at XML it cannot
 * follow it stops with an error, as the backend's parser would.
 */

typedef enum {
    sw_text = 0,
    sw_lt,
    sw_name,
    sw_tag,
    sw_attr,
    sw_attr_eq,
    sw_value_start,
    sw_value,
    sw_attr_end,
    sw_empty,
    sw_end,
    sw_bang,
    sw_cdata,
    sw_comment,
    sw_pi,
    sw_decl
} ngx_mail_xmpp_scan_state_e;


ngx_int_t
ngx_mail_xmpp_scan(ngx_mail_xmpp_scan_t *sc, u_char **pos, u_char *last)
{
    u_char                  ch, *p;
    ngx_uint_t              state;
    static u_char           cdata[] = "[CDATA[";
    ngx_mail_xmpp_relay_t  *r;

    state = sc->state;
    r = sc->relay;

    for (p = *pos; p < last; p++) {
        ch = *p;

        switch (state) {

        case sw_text:

            if (ch != '<') {

                if (sc->depth) {
                    /* character data: on to the next markup */

                    p = memchr(p, '<', last - p);
                    if (p == NULL) {
                        goto again;
                    }

                } else if (ch == ' ' || ch == '\t' || ch == CR || ch == LF) {
                    break;

                } else {
                    /* text outside of the stream: not XMPP at all */
                    goto invalid;
                }
            }

            sc->lt = p;
            state = sw_lt;
            break;

        case sw_lt:

            switch (ch) {

            case '/':
                state = sw_end;
                break;

            case '?':

                if (r) {
                    goto restricted;
                }

                sc->count = 0;
                state = sw_pi;
                break;

            case '!':
                sc->count = 0;
                state = sw_bang;
                break;

            case ' ':
            case '\t':
            case CR:
            case LF:
            case '<':
            case '>':
            case '=':
            case '\'':
            case '"':
                goto invalid;

            default:

                if (sc->depth == 1) {
                    sc->start = sc->lt;
                }

                sc->name[0] = ch;
                sc->name_len = 1;
                state = sw_name;
                break;
            }

            break;

        case sw_name:

            switch (ch) {

            case ' ':
            case '\t':
            case CR:
            case LF:
            case '/':
            case '>':
                break;

            case ':':
                /* a prefix: the local name follows */
                sc->name_len = 0;
                continue;

            case '<':
            case '=':
            case '\'':
            case '"':
                goto invalid;

            default:

                /* letters and what follows them at once */

                for ( ;; ) {

                    if (sc->name_len < NGX_MAIL_XMPP_SCAN_NAME_LEN) {
                        sc->name[sc->name_len] = ch;
                    }

                    sc->name_len++;

                    if (p + 1 == last || p[1] <= '>') {
                        break;
                    }

                    ch = *++p;
                }

                continue;
            }

            if (sc->depth == 1) {
                ngx_mail_xmpp_scan_child(sc);
            }

            state = sw_tag;

            /* fall through */

        case sw_tag:

            switch (ch) {

            case ' ':
            case '\t':
            case CR:
            case LF:
                break;

            case '/':
                state = sw_empty;
                break;

            case '>':
                goto start_tag;

            case '<':
            case '=':
            case '\'':
            case '"':
                goto invalid;

            default:

                if (r && r->dialback) {
                    r->attr_name[0] = ch;
                    r->attr_len = 1;
                }

                state = sw_attr;
                break;
            }

            break;

        case sw_attr:

            switch (ch) {

            case '=':
                state = sw_value_start;
                break;

            case ' ':
            case '\t':
            case CR:
            case LF:
                state = sw_attr_eq;
                break;

            case '<':
            case '>':
            case '/':
            case '\'':
            case '"':
                goto invalid;

            default:

                if (r && r->dialback) {
                    if (r->attr_len < sizeof(r->attr_name)) {
                        r->attr_name[r->attr_len] = ch;
                    }

                    r->attr_len++;
                    continue;
                }

                /* letters and what follows them at once */

                while (p + 1 < last && p[1] > '>') {
                    p++;
                }

                continue;
            }

            if (r && r->dialback) {
                ngx_mail_xmpp_scan_attr(r);
            }

            break;

        case sw_attr_eq:

            if (ch == '=') {
                state = sw_value_start;
                break;
            }

            if (ch == ' ' || ch == '\t' || ch == CR || ch == LF) {
                break;
            }

            goto invalid;

        case sw_value_start:

            if (ch == '\'' || ch == '"') {
                sc->quote = ch;
                state = sw_value;
                break;
            }

            if (ch == ' ' || ch == '\t' || ch == CR || ch == LF) {
                break;
            }

            goto invalid;

        case sw_value:

            if (r && r->attr) {

                if (ch == sc->quote) {
                    ngx_mail_xmpp_scan_value(r, 0, 1);
                    state = sw_attr_end;

                } else {
                    ngx_mail_xmpp_scan_value(r, ch, 0);
                }

                break;
            }

            /* on to the closing quote */

            p = memchr(p, sc->quote, last - p);
            if (p == NULL) {
                goto again;
            }

            state = sw_attr_end;
            break;

        case sw_attr_end:

            switch (ch) {

            case ' ':
            case '\t':
            case CR:
            case LF:
                state = sw_tag;
                break;

            case '/':
                state = sw_empty;
                break;

            case '>':
                goto start_tag;

            default:
                goto invalid;
            }

            break;

        case sw_empty:

            if (ch != '>' || sc->depth == 0) {
                goto invalid;
            }

            state = sw_text;

            if (sc->depth == 1) {

                if (r && r->dialback && (r->twice || r->match != 3)) {
                    goto pair;
                }

                goto complete;
            }

            break;

        case sw_end:

            p = memchr(p, '>', last - p);
            if (p == NULL) {
                goto again;
            }

            state = sw_text;

            if (sc->depth == 0) {
                goto invalid;
            }

            if (--sc->depth == 0) {
                *pos = p + 1;
                sc->state = state;
                sc->unit = NGX_XMPP_UP_END;
                return NGX_OK;
            }

            if (sc->depth == 1) {
                goto complete;
            }

            break;

        case sw_bang:

            if (ch == cdata[sc->count]) {

                if (++sc->count == sizeof(cdata) - 1) {
                    sc->count = 0;
                    state = sw_cdata;
                }

                break;
            }

            if (r) {
                goto restricted;
            }

            state = (sc->count == 0 && ch == '-') ? sw_comment : sw_decl;
            break;

        case sw_cdata:
        case sw_comment:

            /* up to "]]>" or "-->" */

            if (ch == (u_char) (state == sw_cdata ? ']' : '-')) {

                if (sc->count < 2) {
                    sc->count++;
                }

                break;
            }

            if (ch == '>' && sc->count == 2) {
                state = sw_text;
                break;
            }

            sc->count = 0;
            break;

        case sw_pi:

            if (ch == '?') {
                sc->count = 1;
                break;
            }

            if (ch == '>' && sc->count) {
                state = sw_text;
                break;
            }

            sc->count = 0;
            break;

        case sw_decl:

            if (ch == '>') {
                state = sw_text;
            }

            break;
        }

        continue;

    start_tag:

        state = sw_text;

        if (sc->depth == 0) {

            if (sc->name_len != 6 || ngx_strncmp(sc->name, "stream", 6) != 0)
            {
                /* not an XMPP stream header, e.g. an HTML page */
                goto invalid;
            }

            sc->depth = 1;
            *pos = p + 1;
            sc->state = state;
            sc->unit = NGX_XMPP_UP_HEADER;
            return NGX_OK;
        }

        if (sc->depth++ == 1 && r && r->dialback) {

            if (r->twice || r->match != 3) {
                goto pair;
            }

            /* what is inside is not looked at */
            r->dialback = 0;
        }

        continue;

    complete:

        *pos = p + 1;
        sc->state = state;
        sc->unit = sc->child;
        return NGX_OK;
    }

again:

    *pos = last;
    sc->state = state;
    return NGX_AGAIN;

restricted:

    *pos = p;
    sc->state = state;
    sc->unit = NGX_XMPP_UP_RESTRICTED;
    return NGX_OK;

pair:

    *pos = p;
    sc->state = state;
    sc->unit = NGX_XMPP_UP_PAIR;
    return NGX_OK;

invalid:

    *pos = p;
    sc->state = state;
    return NGX_ERROR;
}


static void
ngx_mail_xmpp_scan_child(ngx_mail_xmpp_scan_t *sc)
{
    u_char                 *name;
    size_t                  len;
    ngx_mail_xmpp_relay_t  *r;

    /* a child of the stream, by its local name */

    name = sc->name;
    len = sc->name_len;

    if (len == 8 && ngx_strncmp(name, "features", 8) == 0) {
        sc->child = NGX_XMPP_UP_FEATURES;

    } else if (len == 7 && ngx_strncmp(name, "success", 7) == 0) {
        sc->child = NGX_XMPP_UP_SUCCESS;

    } else if (len == 7 && ngx_strncmp(name, "failure", 7) == 0) {
        sc->child = NGX_XMPP_UP_FAILURE;

    } else if (len == 5 && ngx_strncmp(name, "error", 5) == 0) {
        sc->child = NGX_XMPP_UP_ERROR;

    } else {
        sc->child = NGX_XMPP_UP_OTHER;
    }

    r = sc->relay;

    if (r == NULL) {
        return;
    }

    /* the remote's dialback elements, whatever the prefix or namespace */

    r->dialback = (len == 6 && (ngx_strncmp(name, "result", 6) == 0
                                || ngx_strncmp(name, "verify", 6) == 0));
    r->attr = 0;
    r->seen = 0;
    r->match = 0;
    r->twice = 0;
    r->value_len[0] = 0;
    r->value_len[1] = 0;
}


static void
ngx_mail_xmpp_scan_attr(ngx_mail_xmpp_relay_t *r)
{
    ngx_uint_t  attr;

    /* an attribute name of a dialback element: "from", "to" or another */

    if (r->attr_len == 4 && ngx_strncmp(r->attr_name, "from", 4) == 0) {
        attr = 1;

    } else if (r->attr_len == 2 && ngx_strncmp(r->attr_name, "to", 2) == 0) {
        attr = 2;

    } else {
        r->attr = 0;
        return;
    }

    if (r->seen & attr) {
        r->twice = 1;
    }

    r->seen |= attr;
    r->attr = attr;
    r->value_len[attr - 1] = 0;
    r->same = 1;
}


static void
ngx_mail_xmpp_scan_value(ngx_mail_xmpp_relay_t *r, u_char ch, ngx_uint_t end)
{
    size_t      n;
    ngx_str_t  *v;

    /*
     * a "from" or "to" value, compared byte by byte with the approved
     * domain (ASCII case-insensitively); an entity or character reference
     * never matches, as "&" is not in a host name
     */

    v = &r->pair[r->attr - 1];
    n = r->value_len[r->attr - 1];

    if (end) {

        if (r->same && n == v->len) {
            r->match |= r->attr;
        }

        r->attr = 0;
        return;
    }

    if (n >= v->len || ngx_tolower(ch) != ngx_tolower(v->data[n])) {
        r->same = 0;
    }

    if (n < NGX_MAIL_XMPP_LOG_LEN) {
        r->value[r->attr - 1][n] = ch;
    }

    r->value_len[r->attr - 1] = n + 1;
}


ngx_int_t
ngx_mail_xmpp_parse_upstream(ngx_mail_xmpp_ctx_t *ctx, ngx_buf_t *b,
    ngx_uint_t keep)
{
    u_char     *start;
    ngx_int_t   rc;

    /*
     * what the backend sends before the relay starts; with "keep" set,
     * what was parsed stays in the buffer (it is relayed as it is)
     */

    rc = ngx_mail_xmpp_scan(&ctx->up, &b->pos, b->last);

    if (rc != NGX_AGAIN || keep) {
        return rc;
    }

    /*
     * all input is consumed: keep only an unfinished child of the stream,
     * which may have to be relayed to the client
     */

    start = ctx->up.start;

    if (start == NULL && ctx->up.state == sw_lt) {
        start = ctx->up.lt;
    }

    if (start == NULL) {
        b->pos = b->start;
        b->last = b->start;
        return NGX_AGAIN;
    }

    if (ctx->up.lt >= start) {
        ctx->up.lt -= start - b->start;
    }

    if (ctx->up.start) {
        ctx->up.start = b->start;
    }

    (void) ngx_mail_xmpp_compact(b, start);

    return NGX_AGAIN;
}


ngx_uint_t
ngx_mail_xmpp_scan_between(ngx_mail_xmpp_scan_t *sc)
{
    /* the stream is open and no child of it is in progress */

    return sc->depth == 1 && sc->state == sw_text;
}
