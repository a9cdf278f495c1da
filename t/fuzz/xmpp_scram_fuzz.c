
/*
 * Copyright (C) nginx-xmpp contributors
 *
 * libFuzzer target: the SCRAM exchange of ngx_mail_xmpp_scram.c, called
 * the way ngx_mail_xmpp_handler.c calls it: client-first (decoded from
 * base64 by the handler, so any bytes), the auth server's Auth-SCRAM-*
 * headers, server-first, client-final.
 *
 * The input: one byte of flags, then client-first, a NUL, the headers
 * (lines "Name: value"), a NUL, client-final.  The flags:
 *
 *   0x01  SCRAM-SHA-256 (else SCRAM-SHA-1)
 *   0x02  a -PLUS mechanism (no TLS here: every binding type is refused)
 *   0x04  the headers are valid keys of the password "pencil" (salt and
 *         iteration count from the header part) instead of the input's
 *   0x08  with 0x04: client-final is built here with the right proof,
 *         the input's client-final being its extensions: the exchange
 *         must succeed and the server signature must be right
 *
 * Checked: every step ends in NGX_OK or NGX_DECLINED with a SASL
 * condition, the names it returns point into the message, server-first
 * and success fit their buffers and are well formed, a right proof is
 * accepted and a wrong one (the 0x08 proof with a bit flipped) is not,
 * the reset leaves nothing of the exchange, and nothing reads or writes
 * outside its buffers (AddressSanitizer).
 */


#include "xt_fuzz.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>


#define XT_PASSWORD  "pencil"


static ngx_mail_xmpp_scram_t  xt_sc;


static ngx_str_t *
xt_segment(const u_char **data, size_t *size, ngx_str_t *s, ngx_pool_t *pool)
{
    const u_char  *p, *end;

    /* up to the next NUL, copied: the steps decode in place */

    end = *data + *size;
    p = memchr(*data, '\0', *size);

    if (p == NULL) {
        p = end;
    }

    s->len = p - *data;
    s->data = ngx_pnalloc(pool, s->len + 1);
    XT_CHECK(s->data);
    ngx_memcpy(s->data, *data, s->len);

    *size -= (p == end) ? s->len : s->len + 1;
    *data = (p == end) ? end : p + 1;

    return s;
}


static void
xt_header(ngx_connection_t *c, const char *name, u_char *value, size_t len)
{
    ngx_str_t  n, v;

    n.data = (u_char *) name;
    n.len = ngx_strlen(name);
    v.data = value;
    v.len = len;

    XT_CHECK(ngx_mail_xmpp_scram_header(&xt_sc, c, &n, &v) == NGX_OK);
}


static void
xt_base64_header(ngx_connection_t *c, const char *name, u_char *raw,
    size_t len)
{
    ngx_str_t  src, dst;
    u_char     buf[256];

    src.data = raw;
    src.len = len;
    dst.data = buf;
    ngx_encode_base64(&dst, &src);

    xt_header(c, name, buf, dst.len);
}


/* the input's header lines, or the keys of XT_PASSWORD */

static void
xt_headers(ngx_connection_t *c, ngx_str_t *in, ngx_uint_t valid,
    const EVP_MD *md, u_char *salted)
{
    u_char     *p, *last, *colon, *eol;
    ngx_str_t   n, v;
    ngx_uint_t  iterations;
    u_char      client[EVP_MAX_MD_SIZE], stored[EVP_MAX_MD_SIZE];
    u_char      server[EVP_MAX_MD_SIZE], num[NGX_INT_T_LEN];
    unsigned    len;

    if (valid) {

        /* a short salt from the input, 1 to 4 iterations (speed) */

        iterations = 1 + (in->len & 3);

        if (in->len > 64) {
            in->len = 64;
        }

        if (in->len == 0) {
            ngx_str_set(in, "salt");
        }

        XT_CHECK(PKCS5_PBKDF2_HMAC(XT_PASSWORD, sizeof(XT_PASSWORD) - 1,
                                   in->data, in->len, iterations, md,
                                   EVP_MD_size(md), salted)
                 == 1);

        XT_CHECK(HMAC(md, salted, EVP_MD_size(md),
                      (u_char *) "Client Key", 10, client, &len));
        XT_CHECK(EVP_Digest(client, len, stored, &len, md, NULL) == 1);
        XT_CHECK(HMAC(md, salted, EVP_MD_size(md),
                      (u_char *) "Server Key", 10, server, &len));

        xt_base64_header(c, "Auth-SCRAM-Salt", in->data, in->len);
        xt_header(c, "Auth-SCRAM-Iterations", num,
                  ngx_sprintf(num, "%ui", iterations) - num);
        xt_base64_header(c, "Auth-SCRAM-StoredKey", stored, len);
        xt_base64_header(c, "Auth-SCRAM-ServerKey", server, len);

        return;
    }

    p = in->data;
    last = p + in->len;

    while (p < last) {
        eol = memchr(p, '\n', last - p);
        if (eol == NULL) {
            eol = last;
        }

        colon = memchr(p, ':', eol - p);

        if (colon) {
            n.data = p;
            n.len = colon - p;
            v.data = colon + 1;
            v.len = eol - v.data;

            while (v.len && v.data[0] == ' ') {
                v.data++;
                v.len--;
            }

            XT_CHECK(ngx_mail_xmpp_scram_header(&xt_sc, c, &n, &v)
                     == NGX_OK);
        }

        p = (eol == last) ? last : eol + 1;
    }
}


static void
xt_check_cond(ngx_uint_t cond)
{
    XT_CHECK(cond == NGX_XMPP_SASL_MALFORMED_REQUEST
             || cond == NGX_XMPP_SASL_INCORRECT_ENCODING
             || cond == NGX_XMPP_SASL_NOT_AUTHORIZED
             || cond == NGX_XMPP_SASL_INVALID_AUTHZID);
}


static void
xt_check_inside(ngx_str_t *s, ngx_str_t *msg)
{
    if (s->len == 0) {
        return;
    }

    XT_CHECK(s->data >= msg->data
             && s->data + s->len <= msg->data + msg->len);
}


/*
 * client-final with the right proof: "c=" base64(gs2 header) ",r=" the
 * whole nonce, the input's extensions (if they look like "x=..."), "p="
 */

static void
xt_client_final(ngx_connection_t *c, ngx_str_t *ext, const EVP_MD *md,
    u_char *salted, ngx_str_t *out, u_char *signature, ngx_uint_t flip)
{
    u_char     *p, *r, *nonce_end;
    size_t      i, n;
    ngx_str_t   src, dst;
    u_char      auth[8192], client[EVP_MAX_MD_SIZE];
    u_char      stored[EVP_MAX_MD_SIZE], sig[EVP_MAX_MD_SIZE];
    u_char      server[EVP_MAX_MD_SIZE];
    unsigned    len;

    p = out->data;
    p = ngx_cpymem(p, "c=", 2);
    src.data = xt_sc.client_first;
    src.len = xt_sc.gs2_len;
    dst.data = p;
    ngx_encode_base64(&dst, &src);
    p += dst.len;

    /* the nonce of server-first: "r=..." up to the next comma */

    r = xt_sc.server_first;
    nonce_end = memchr(r, ',', xt_sc.server_len);
    XT_CHECK(nonce_end && r[0] == 'r' && r[1] == '=');

    *p++ = ',';
    p = ngx_cpymem(p, r, nonce_end - r);

    /* extensions: printable, no commas, "x=" prefixed, bounded */

    if (ext->len > 2 && ext->len < 200) {
        *p++ = ',';
        *p++ = 'x';
        *p++ = '=';

        for (i = 0; i < ext->len; i++) {
            *p++ = (ext->data[i] > 0x20 && ext->data[i] < 0x7f
                    && ext->data[i] != ',') ? ext->data[i] : '.';
        }
    }

    /* AuthMessage = client-first-bare "," server-first "," without-proof */

    n = 0;
    ngx_memcpy(auth, xt_sc.client_first + xt_sc.bare,
               xt_sc.first_len - xt_sc.bare);
    n += xt_sc.first_len - xt_sc.bare;
    auth[n++] = ',';
    ngx_memcpy(auth + n, xt_sc.server_first, xt_sc.server_len);
    n += xt_sc.server_len;
    auth[n++] = ',';
    ngx_memcpy(auth + n, out->data, p - out->data);
    n += p - out->data;

    XT_CHECK(HMAC(md, salted, EVP_MD_size(md),
                  (u_char *) "Client Key", 10, client, &len));
    XT_CHECK(EVP_Digest(client, len, stored, &len, md, NULL) == 1);
    XT_CHECK(HMAC(md, stored, len, auth, n, sig, &len));

    for (i = 0; i < len; i++) {
        client[i] ^= sig[i];
    }

    client[0] ^= (u_char) flip;

    p = ngx_cpymem(p, ",p=", 3);
    src.data = client;
    src.len = len;
    dst.data = p;
    ngx_encode_base64(&dst, &src);
    p += dst.len;

    out->len = p - out->data;

    XT_CHECK(HMAC(md, salted, EVP_MD_size(md),
                  (u_char *) "Server Key", 10, server, &len));
    XT_CHECK(HMAC(md, server, len, auth, n, signature, &len));
}


static void
xt_exchange(const u_char *data, size_t size, ngx_uint_t flip)
{
    u_char         flags, *p;
    size_t         i;
    ngx_int_t      rc;
    ngx_str_t      first, headers, final, user, authzid, out, src, dst;
    ngx_uint_t     cond;
    ngx_pool_t    *pool;
    const EVP_MD  *md;
    xt_conn_t     *x;
    u_char         salted[EVP_MAX_MD_SIZE], signature[EVP_MAX_MD_SIZE];
    u_char         expect[256], decoded[256];

    flags = data[0];
    data++;
    size--;

    pool = ngx_create_pool(4096, &xt_log);
    XT_CHECK(pool);

    x = ngx_pcalloc(pool, sizeof(xt_conn_t));
    XT_CHECK(x);
    xt_conn_init(x, pool, NULL);

    xt_segment(&data, &size, &first, pool);
    xt_segment(&data, &size, &headers, pool);
    xt_segment(&data, &size, &final, pool);

    ngx_mail_xmpp_scram_reset(&xt_sc);

    xt_sc.method = (flags & 0x01) ? NGX_MAIL_AUTH_SCRAM_SHA256
                                  : NGX_MAIL_AUTH_SCRAM_SHA1;
    xt_sc.plus = (flags & 0x02) ? 1 : 0;
    md = (flags & 0x01) ? EVP_sha256() : EVP_sha1();

    rc = ngx_mail_xmpp_scram_client_first(&xt_sc, &x->conn, &first, &user,
                                          &authzid, &cond);
    XT_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        xt_check_cond(cond);
        goto done;
    }

    XT_CHECK(user.len > 0);
    xt_check_inside(&user, &first);
    xt_check_inside(&authzid, &first);
    XT_CHECK(xt_sc.first_len <= NGX_MAIL_XMPP_SCRAM_LEN);
    XT_CHECK(xt_sc.gs2_len == xt_sc.bare && xt_sc.bare < xt_sc.first_len);
    XT_CHECK(xt_sc.nonce + xt_sc.nonce_len <= xt_sc.first_len);
    XT_CHECK(xt_sc.nonce_len > 0
             && xt_sc.nonce_len <= NGX_MAIL_XMPP_SCRAM_NONCE_LEN);

    /* with "no TLS" no binding type is offered: -PLUS cannot get here */

    XT_CHECK(xt_sc.cb == 0);

    xt_headers(&x->conn, &headers, flags & 0x04, md, salted);

    rc = ngx_mail_xmpp_scram_server_first(&xt_sc, &x->conn, &out);
    XT_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    if (flags & 0x04) {
        XT_CHECK(rc == NGX_OK);
    }

    if (rc != NGX_OK) {
        goto done;
    }

    XT_CHECK(out.data == xt_sc.out && out.len <= sizeof(xt_sc.out));
    XT_CHECK(out.len > sizeof("<challenge") - 1
             && ngx_strncmp(out.data, "<challenge", 10) == 0
             && ngx_strncmp(out.data + out.len - 12, "</challenge>", 12)
                == 0);
    XT_CHECK(xt_sc.server_len <= sizeof(xt_sc.server_first));

    if ((flags & 0x0c) == 0x0c) {
        p = ngx_pnalloc(pool, 4096);
        XT_CHECK(p);

        out.data = p;
        xt_client_final(&x->conn, &final, md, salted, &out, signature,
                        flip);
        final = out;
    }

    rc = ngx_mail_xmpp_scram_client_final(&xt_sc, &x->conn, &final, &cond);
    XT_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    if ((flags & 0x0c) == 0x0c) {
        XT_CHECK(rc == ((flip || final.len > NGX_MAIL_XMPP_SCRAM_LEN)
                        ? NGX_DECLINED : NGX_OK));
    }

    if (rc == NGX_DECLINED) {
        xt_check_cond(cond);
        goto done;
    }

    XT_CHECK(xt_sc.success.data == xt_sc.out
             && xt_sc.success.len <= sizeof(xt_sc.out));

    if ((flags & 0x0c) == 0x0c) {

        /* <success xmlns='...'>base64("v=" base64(signature))</success> */

        p = ngx_strlchr(xt_sc.success.data,
                        xt_sc.success.data + xt_sc.success.len, '>');
        XT_CHECK(p);

        src.data = p + 1;
        src.len = xt_sc.success.data + xt_sc.success.len
                  - (sizeof("</success>") - 1) - src.data;
        dst.data = decoded;
        XT_CHECK(src.len < sizeof(decoded)
                 && ngx_decode_base64(&dst, &src) == NGX_OK);

        expect[0] = 'v';
        expect[1] = '=';
        src.data = signature;
        src.len = EVP_MD_size(md);
        out.data = expect + 2;
        ngx_encode_base64(&out, &src);

        XT_CHECK(dst.len == 2 + out.len
                 && ngx_memcmp(decoded, expect, dst.len) == 0);
    }

done:

    ngx_mail_xmpp_scram_reset(&xt_sc);

    for (i = 0; i < sizeof(xt_sc); i++) {
        XT_CHECK(((u_char *) &xt_sc)[i] == 0);
    }

    xt_conn_done(x);
    ngx_destroy_pool(pool);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xt_init();

    if (size == 0) {
        return 0;
    }

    xt_exchange(data, size, 0);

    if ((data[0] & 0x0c) == 0x0c) {
        xt_exchange(data, size, 1);     /* a wrong proof is refused */
    }

    return 0;
}
