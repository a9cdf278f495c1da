
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


/*
 * SASL SCRAM (RFC 5802, RFC 7677) terminated in nginx: the messages of
 * the exchange, checked and built, the proof verified against the keys
 * the auth server returned, and channel binding (RFC 5056) to nginx's own
 * TLS session: tls-exporter (RFC 9266), tls-unique and
 * tls-server-end-point (RFC 5929).  nginx never sees the password.
 */


#if (NGX_MAIL_SSL)

static ngx_int_t ngx_mail_xmpp_scram_attr(u_char **pos, u_char *last,
    u_char name, ngx_str_t *value);
static ngx_int_t ngx_mail_xmpp_scram_name(ngx_str_t *name);
static ngx_int_t ngx_mail_xmpp_scram_decode(u_char *buf, size_t size,
    ngx_str_t *src, size_t *len);
static const EVP_MD *ngx_mail_xmpp_scram_md(ngx_mail_xmpp_scram_t *sc);
static ngx_int_t ngx_mail_xmpp_scram_cb_data(ngx_connection_t *c,
    ngx_uint_t type, u_char *buf, size_t *len);


static ngx_str_t  ngx_mail_xmpp_scram_cb_names[] = {
    ngx_null_string,
    ngx_string("tls-exporter"),
    ngx_string("tls-unique"),
    ngx_string("tls-server-end-point"),
    ngx_null_string
};


static u_char  xmpp_challenge_start[] =
    "<challenge xmlns='" NGX_XMPP_SASL_NS "'>";
static u_char  xmpp_challenge_end[] = "</challenge>";
static u_char  xmpp_success_start[] = "<success xmlns='" NGX_XMPP_SASL_NS "'>";
static u_char  xmpp_success_end[] = "</success>";


void
ngx_mail_xmpp_scram_reset(ngx_mail_xmpp_scram_t *sc)
{
    /* nothing of an exchange is left for the next one */

    ngx_explicit_memzero(sc, sizeof(ngx_mail_xmpp_scram_t));
}


ngx_uint_t
ngx_mail_xmpp_scram_cb_offered(ngx_connection_t *c, ngx_uint_t type)
{
    /*
     * tls-exporter is defined for TLS 1.3 (RFC 9266), tls-unique for
     * TLS 1.2 and below only; tls-server-end-point for any version
     */

    if (c->ssl == NULL) {
        return 0;
    }

    switch (type) {

    case NGX_XMPP_CB_EXPORTER:
        return SSL_version(c->ssl->connection) == TLS1_3_VERSION;

    case NGX_XMPP_CB_UNIQUE:
        return SSL_version(c->ssl->connection) != TLS1_3_VERSION;

    case NGX_XMPP_CB_END_POINT:
        return 1;
    }

    return 0;
}


ngx_int_t
ngx_mail_xmpp_scram_client_first(ngx_mail_xmpp_scram_t *sc,
    ngx_connection_t *c, ngx_str_t *msg, ngx_str_t *user, ngx_str_t *authzid,
    ngx_uint_t *cond)
{
    u_char      *p, *last, *bare;
    ngx_str_t    cb, nonce;
    ngx_uint_t   i;
    u_char       buf[NGX_MAIL_XMPP_LOG_LEN];

    /*
     * client-first-message = gs2-header client-first-message-bare
     * gs2-header = ("p=" cb-name / "n" / "y") "," ["a=" saslname] ","
     * client-first-message-bare = username "," nonce ["," extensions]
     *
     * "user" and "authzid" are decoded in place, in "msg"
     */

    *cond = NGX_XMPP_SASL_MALFORMED_REQUEST;

    if (msg->len > NGX_MAIL_XMPP_SCRAM_LEN) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent too long SCRAM client-first message");
        return NGX_DECLINED;
    }

    p = msg->data;
    last = p + msg->len;

    if (p == last) {
        goto malformed;
    }

    switch (*p) {

    case 'p':
        if (ngx_mail_xmpp_scram_attr(&p, last, 'p', &cb) != NGX_OK) {
            goto malformed;
        }

        for (i = 1; ngx_mail_xmpp_scram_cb_names[i].len; i++) {
            if (cb.len == ngx_mail_xmpp_scram_cb_names[i].len
                && ngx_strncmp(cb.data, ngx_mail_xmpp_scram_cb_names[i].data,
                               cb.len)
                   == 0)
            {
                break;
            }
        }

        if (!sc->plus) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client asked for channel binding with a SCRAM "
                          "mechanism without -PLUS");
            return NGX_DECLINED;
        }

        if (ngx_mail_xmpp_scram_cb_names[i].len == 0
            || !ngx_mail_xmpp_scram_cb_offered(c, i))
        {
            cb = ngx_mail_xmpp_log_value(buf, sizeof(buf), &cb);
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client asked for channel binding type \"%V\" "
                          "that is not offered", &cb);
            *cond = NGX_XMPP_SASL_NOT_AUTHORIZED;
            return NGX_DECLINED;
        }

        sc->cb = i;
        break;

    case 'y':
    case 'n':

        if (sc->plus) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client sent no channel binding with a SCRAM "
                          "-PLUS mechanism");
            return NGX_DECLINED;
        }

        /*
         * "y": the client binds channels, and believes the server does
         * not; on TLS nginx offered -PLUS, so someone removed it
         */

        if (*p == 'y' && c->ssl) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client sent SCRAM channel binding flag \"y\" "
                          "while -PLUS was offered: a downgrade");
            *cond = NGX_XMPP_SASL_NOT_AUTHORIZED;
            return NGX_DECLINED;
        }

        p++;
        break;

    default:
        goto malformed;
    }

    if (p == last || *p++ != ',') {
        goto malformed;
    }

    ngx_str_null(authzid);

    if (p < last && *p == 'a') {
        if (ngx_mail_xmpp_scram_attr(&p, last, 'a', authzid) != NGX_OK
            || authzid->len == 0)
        {
            goto malformed;
        }
    }

    if (p == last || *p++ != ',') {
        goto malformed;
    }

    sc->gs2_len = p - msg->data;
    bare = p;

    if (p < last && *p == 'm') {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent a mandatory SCRAM extension");
        return NGX_DECLINED;
    }

    if (ngx_mail_xmpp_scram_attr(&p, last, 'n', user) != NGX_OK
        || user->len == 0
        || p == last || *p++ != ','
        || ngx_mail_xmpp_scram_attr(&p, last, 'r', &nonce) != NGX_OK
        || nonce.len == 0
        || nonce.len > NGX_MAIL_XMPP_SCRAM_NONCE_LEN)
    {
        goto malformed;
    }

    /* printable = %x21-2B / %x2D-7E */

    for (i = 0; i < nonce.len; i++) {
        if (nonce.data[i] < 0x21 || nonce.data[i] > 0x7e) {
            goto malformed;
        }
    }

    /* optional extensions: attr-val *("," attr-val), not used */

    while (p < last) {
        if (*p++ != ','
            || p == last
            || !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            || ngx_mail_xmpp_scram_attr(&p, last, *p, &cb) != NGX_OK)
        {
            goto malformed;
        }
    }

    /* what the AuthMessage and the final checks need, before decoding */

    ngx_memcpy(sc->client_first, msg->data, msg->len);
    sc->first_len = msg->len;
    sc->bare = bare - msg->data;
    sc->nonce = nonce.data - msg->data;
    sc->nonce_len = nonce.len;

    if (ngx_mail_xmpp_scram_name(user) != NGX_OK
        || (authzid->len && ngx_mail_xmpp_scram_name(authzid) != NGX_OK))
    {
        goto malformed;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp scram client-first: cb %ui, user \"%V\", "
                   "authzid \"%V\"", sc->cb, user, authzid);

    return NGX_OK;

malformed:

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "client sent malformed SCRAM client-first message");

    return NGX_DECLINED;
}


ngx_int_t
ngx_mail_xmpp_scram_header(ngx_mail_xmpp_scram_t *sc, ngx_connection_t *c,
    ngx_str_t *name, ngx_str_t *value)
{
    ngx_int_t   n;
    ngx_str_t   key;
    ngx_uint_t  bit;

    /* the auth server's Auth-SCRAM-* answer headers, decoded and bounded */

    if (name->len <= sizeof("Auth-SCRAM-") - 1
        || ngx_strncasecmp(name->data, (u_char *) "Auth-SCRAM-",
                           sizeof("Auth-SCRAM-") - 1)
           != 0)
    {
        return NGX_OK;
    }

    key.data = name->data + sizeof("Auth-SCRAM-") - 1;
    key.len = name->len - (sizeof("Auth-SCRAM-") - 1);

    if (key.len == sizeof("Salt") - 1
        && ngx_strncasecmp(key.data, (u_char *) "Salt", key.len) == 0)
    {
        bit = NGX_XMPP_SCRAM_SALT;
        n = ngx_mail_xmpp_scram_decode(sc->salt, sizeof(sc->salt), value,
                                       &sc->salt_len);

    } else if (key.len == sizeof("Iterations") - 1
               && ngx_strncasecmp(key.data, (u_char *) "Iterations", key.len)
                  == 0)
    {
        bit = NGX_XMPP_SCRAM_ITERATIONS;
        n = ngx_atoi(value->data, value->len);

        if (n < 1 || n > NGX_MAIL_XMPP_SCRAM_ITERATIONS) {
            n = NGX_ERROR;

        } else {
            sc->iterations = n;
            n = NGX_OK;
        }

    } else if (key.len == sizeof("StoredKey") - 1
               && ngx_strncasecmp(key.data, (u_char *) "StoredKey", key.len)
                  == 0)
    {
        bit = NGX_XMPP_SCRAM_STORED_KEY;
        n = ngx_mail_xmpp_scram_decode(sc->stored_key,
                                       sizeof(sc->stored_key), value,
                                       &sc->stored_key_len);

    } else if (key.len == sizeof("ServerKey") - 1
               && ngx_strncasecmp(key.data, (u_char *) "ServerKey", key.len)
                  == 0)
    {
        bit = NGX_XMPP_SCRAM_SERVER_KEY;
        n = ngx_mail_xmpp_scram_decode(sc->server_key,
                                       sizeof(sc->server_key), value,
                                       &sc->server_key_len);

    } else {
        return NGX_OK;
    }

    if (n != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "auth http server sent invalid \"%V\" header", name);
        sc->invalid = 1;
        return NGX_OK;
    }

    sc->headers |= bit;

    return NGX_OK;
}


ngx_int_t
ngx_mail_xmpp_scram_server_first(ngx_mail_xmpp_scram_t *sc,
    ngx_connection_t *c, ngx_str_t *out)
{
    u_char        *p;
    size_t         len;
    ngx_str_t      src, dst;
    const EVP_MD  *md;
    u_char         nonce[NGX_MAIL_XMPP_SCRAM_RANDOM];

    /*
     * server-first-message = nonce "," salt "," iteration-count,
     * the nonce being the client's with nginx's random part added
     */

    md = ngx_mail_xmpp_scram_md(sc);

    if (sc->invalid
        || sc->headers != (NGX_XMPP_SCRAM_SALT | NGX_XMPP_SCRAM_ITERATIONS
                           | NGX_XMPP_SCRAM_STORED_KEY
                           | NGX_XMPP_SCRAM_SERVER_KEY)
        || sc->salt_len == 0
        || sc->stored_key_len != (size_t) EVP_MD_size(md)
        || sc->server_key_len != (size_t) EVP_MD_size(md))
    {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "auth http server did not send valid SCRAM keys: "
                      "Auth-SCRAM-Salt, Auth-SCRAM-Iterations, "
                      "Auth-SCRAM-StoredKey and Auth-SCRAM-ServerKey "
                      "of %d bytes", EVP_MD_size(md));
        return NGX_DECLINED;
    }

    if (RAND_bytes(nonce, NGX_MAIL_XMPP_SCRAM_RANDOM) != 1) {
        ngx_ssl_error(NGX_LOG_ALERT, c->log, 0, "RAND_bytes() failed");
        return NGX_ERROR;
    }

    p = ngx_cpymem(sc->server_first, "r=", 2);
    p = ngx_cpymem(p, sc->client_first + sc->nonce, sc->nonce_len);

    src.data = nonce;
    src.len = NGX_MAIL_XMPP_SCRAM_RANDOM;
    dst.data = p;
    ngx_encode_base64(&dst, &src);
    p += dst.len;

    p = ngx_cpymem(p, ",s=", 3);

    src.data = sc->salt;
    src.len = sc->salt_len;
    dst.data = p;
    ngx_encode_base64(&dst, &src);
    p += dst.len;

    p = ngx_sprintf(p, ",i=%ui", sc->iterations);

    sc->server_len = p - sc->server_first;
    sc->server_nonce_len = sc->nonce_len
                           + ngx_base64_encoded_length(
                                 NGX_MAIL_XMPP_SCRAM_RANDOM);

    /* <challenge>base64(server-first)</challenge> */

    p = ngx_cpymem(sc->out, xmpp_challenge_start,
                   sizeof(xmpp_challenge_start) - 1);

    src.data = sc->server_first;
    src.len = sc->server_len;
    dst.data = p;
    ngx_encode_base64(&dst, &src);
    p += dst.len;

    p = ngx_cpymem(p, xmpp_challenge_end, sizeof(xmpp_challenge_end) - 1);

    len = p - sc->out;

    out->data = sc->out;
    out->len = len;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "xmpp scram server-first: \"%*s\"",
                   sc->server_len, sc->server_first);

    return NGX_OK;
}


ngx_int_t
ngx_mail_xmpp_scram_client_final(ngx_mail_xmpp_scram_t *sc,
    ngx_connection_t *c, ngx_str_t *msg, ngx_uint_t *cond)
{
    u_char        *p, *last, *without_proof;
    size_t         len, cb_len, got_len, proof_len;
    ngx_str_t      cbind, nonce, proof, attr, src, dst;
    unsigned int   n;
    const EVP_MD  *md;
    u_char         key[EVP_MAX_MD_SIZE], sig[EVP_MAX_MD_SIZE];
    u_char         client_proof[EVP_MAX_MD_SIZE];
    u_char         expect[NGX_MAIL_XMPP_SCRAM_LEN + EVP_MAX_MD_SIZE];
    u_char         got[NGX_MAIL_XMPP_SCRAM_LEN + EVP_MAX_MD_SIZE];
    u_char         auth[NGX_MAIL_XMPP_SCRAM_LEN * 3];

    /*
     * client-final-message = "c=" base64(gs2-header cbind-data) ","
     *     nonce ["," extensions] "," "p=" base64(ClientProof)
     */

    *cond = NGX_XMPP_SASL_MALFORMED_REQUEST;

    if (msg->len > NGX_MAIL_XMPP_SCRAM_LEN) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent too long SCRAM client-final message");
        return NGX_DECLINED;
    }

    md = ngx_mail_xmpp_scram_md(sc);

    p = msg->data;
    last = p + msg->len;

    if (ngx_mail_xmpp_scram_attr(&p, last, 'c', &cbind) != NGX_OK
        || p == last || *p++ != ','
        || ngx_mail_xmpp_scram_attr(&p, last, 'r', &nonce) != NGX_OK)
    {
        goto malformed;
    }

    for ( ;; ) {
        if (p == last || *p++ != ',' || p == last) {
            goto malformed;
        }

        without_proof = p - 1;

        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            || ngx_mail_xmpp_scram_attr(&p, last, *p, &attr) != NGX_OK)
        {
            goto malformed;
        }

        if (without_proof[1] == 'p' && p == last) {
            proof = attr;
            break;
        }
    }

    /* the same nonce, nginx's part included */

    if (nonce.len != sc->server_nonce_len
        || ngx_memcmp(nonce.data, sc->server_first + 2, nonce.len) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent another SCRAM nonce");
        *cond = NGX_XMPP_SASL_NOT_AUTHORIZED;
        return NGX_DECLINED;
    }

    /* the gs2 header of client-first, then this TLS session's binding */

    ngx_memcpy(expect, sc->client_first, sc->gs2_len);
    cb_len = 0;

    if (sc->cb) {
        if (ngx_mail_xmpp_scram_cb_data(c, sc->cb, expect + sc->gs2_len,
                                        &cb_len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_mail_xmpp_scram_decode(got, sizeof(got), &cbind, &got_len)
        != NGX_OK)
    {
        *cond = NGX_XMPP_SASL_INCORRECT_ENCODING;
        goto malformed;
    }

    if (got_len != sc->gs2_len + cb_len
        || CRYPTO_memcmp(got, expect, got_len) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent SCRAM channel binding data that does not "
                      "match the TLS session");
        *cond = NGX_XMPP_SASL_NOT_AUTHORIZED;
        return NGX_DECLINED;
    }

    if (ngx_mail_xmpp_scram_decode(client_proof, sizeof(client_proof),
                                   &proof, &proof_len)
        != NGX_OK)
    {
        *cond = NGX_XMPP_SASL_INCORRECT_ENCODING;
        goto malformed;
    }

    if (proof_len != (size_t) EVP_MD_size(md)) {
        goto malformed;
    }

    /*
     * AuthMessage = client-first-message-bare "," server-first-message ","
     *               client-final-message-without-proof
     * ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and
     * H(ClientKey) must be StoredKey
     */

    p = ngx_cpymem(auth, sc->client_first + sc->bare,
                   sc->first_len - sc->bare);
    *p++ = ',';
    p = ngx_cpymem(p, sc->server_first, sc->server_len);
    *p++ = ',';
    p = ngx_cpymem(p, msg->data, without_proof - msg->data);

    len = p - auth;

    if (HMAC(md, sc->stored_key, sc->stored_key_len, auth, len, sig, &n)
        == NULL)
    {
        ngx_ssl_error(NGX_LOG_ALERT, c->log, 0, "HMAC() failed");
        return NGX_ERROR;
    }

    for (n = 0; n < proof_len; n++) {
        sig[n] ^= client_proof[n];
    }

    if (EVP_Digest(sig, proof_len, key, &n, md, NULL) != 1) {
        ngx_ssl_error(NGX_LOG_ALERT, c->log, 0, "EVP_Digest() failed");
        return NGX_ERROR;
    }

    if (n != sc->stored_key_len
        || CRYPTO_memcmp(key, sc->stored_key, n) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent wrong SCRAM proof");
        *cond = NGX_XMPP_SASL_NOT_AUTHORIZED;
        return NGX_DECLINED;
    }

    /* server-final-message = "v=" base64(HMAC(ServerKey, AuthMessage)) */

    if (HMAC(md, sc->server_key, sc->server_key_len, auth, len, sig, &n)
        == NULL)
    {
        ngx_ssl_error(NGX_LOG_ALERT, c->log, 0, "HMAC() failed");
        return NGX_ERROR;
    }

    key[0] = 'v';
    key[1] = '=';

    src.data = sig;
    src.len = n;
    dst.data = key + 2;
    ngx_encode_base64(&dst, &src);

    p = ngx_cpymem(sc->out, xmpp_success_start,
                   sizeof(xmpp_success_start) - 1);

    src.data = key;
    src.len = 2 + dst.len;
    dst.data = p;
    ngx_encode_base64(&dst, &src);
    p += dst.len;

    p = ngx_cpymem(p, xmpp_success_end, sizeof(xmpp_success_end) - 1);

    sc->success.data = sc->out;
    sc->success.len = p - sc->out;

    ngx_explicit_memzero(sig, sizeof(sig));
    ngx_explicit_memzero(key, sizeof(key));

    return NGX_OK;

malformed:

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "client sent malformed SCRAM client-final message");

    return NGX_DECLINED;
}


ngx_str_t *
ngx_mail_xmpp_scram_cb_name(ngx_uint_t type)
{
    return &ngx_mail_xmpp_scram_cb_names[type];
}


static ngx_int_t
ngx_mail_xmpp_scram_attr(u_char **pos, u_char *last, u_char name,
    ngx_str_t *value)
{
    u_char  *p;

    /* name "=" value, the value up to the next "," */

    p = *pos;

    if (last - p < 2 || p[0] != name || p[1] != '=') {
        return NGX_ERROR;
    }

    p += 2;

    value->data = p;

    while (p < last && *p != ',') {
        if (*p == '\0') {
            return NGX_ERROR;
        }

        p++;
    }

    value->len = p - value->data;

    *pos = p;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_xmpp_scram_name(ngx_str_t *name)
{
    u_char  *p, *q, *last;

    /* saslname: "=2C" is ",", "=3D" is "="; any other "=" is an error */

    p = name->data;
    q = p;
    last = p + name->len;

    while (p < last) {

        if (*p != '=') {
            *q++ = *p++;
            continue;
        }

        if (last - p < 3) {
            return NGX_ERROR;
        }

        if (p[1] == '2' && (p[2] == 'C' || p[2] == 'c')) {
            *q++ = ',';

        } else if (p[1] == '3' && (p[2] == 'D' || p[2] == 'd')) {
            *q++ = '=';

        } else {
            return NGX_ERROR;
        }

        p += 3;
    }

    name->len = q - name->data;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_xmpp_scram_decode(u_char *buf, size_t size, ngx_str_t *src,
    size_t *len)
{
    ngx_str_t  dst;

    /* base64 into a buffer of "size" bytes: longer input is an error */

    if (src->len == 0 || ngx_base64_decoded_length(src->len) > size) {
        return NGX_ERROR;
    }

    dst.data = buf;

    if (ngx_decode_base64(&dst, src) != NGX_OK) {
        return NGX_ERROR;
    }

    *len = dst.len;

    return NGX_OK;
}


static const EVP_MD *
ngx_mail_xmpp_scram_md(ngx_mail_xmpp_scram_t *sc)
{
    return (sc->method == NGX_MAIL_AUTH_SCRAM_SHA256) ? EVP_sha256()
                                                      : EVP_sha1();
}


static ngx_int_t
ngx_mail_xmpp_scram_cb_data(ngx_connection_t *c, ngx_uint_t type,
    u_char *buf, size_t *len)
{
    int            mdnid;
    X509          *cert;
    unsigned int   n;
    const EVP_MD  *md;

    switch (type) {

    case NGX_XMPP_CB_EXPORTER:

        /* RFC 9266: 32 bytes, this label, no context */

        if (SSL_export_keying_material(c->ssl->connection, buf, 32,
                                       "EXPORTER-Channel-Binding",
                                       sizeof("EXPORTER-Channel-Binding") - 1,
                                       NULL, 0, 0)
            != 1)
        {
            ngx_ssl_error(NGX_LOG_ALERT, c->log, 0,
                          "SSL_export_keying_material() failed");
            return NGX_ERROR;
        }

        *len = 32;
        return NGX_OK;

    case NGX_XMPP_CB_UNIQUE:

        /*
         * the first Finished message of the handshake: the client's in
         * a full handshake, nginx's own in an abbreviated one
         */

        if (SSL_session_reused(c->ssl->connection)) {
            *len = SSL_get_finished(c->ssl->connection, buf, EVP_MAX_MD_SIZE);

        } else {
            *len = SSL_get_peer_finished(c->ssl->connection, buf,
                                         EVP_MAX_MD_SIZE);
        }

        if (*len == 0 || *len > EVP_MAX_MD_SIZE) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "no TLS Finished message for tls-unique");
            return NGX_ERROR;
        }

        return NGX_OK;

    default: /* NGX_XMPP_CB_END_POINT */

        /*
         * the hash of the certificate nginx sent on this connection (the
         * one of the SNI name), with the hash of its signature, SHA-256
         * where that is MD5 or SHA-1 or there is none (Ed25519)
         */

        cert = SSL_get_certificate(c->ssl->connection);

        if (cert == NULL) {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "no certificate for tls-server-end-point");
            return NGX_ERROR;
        }

        if (X509_get_signature_info(cert, &mdnid, NULL, NULL, NULL) != 1
            || mdnid == NID_undef || mdnid == NID_md5 || mdnid == NID_sha1)
        {
            md = EVP_sha256();

        } else {
            md = EVP_get_digestbynid(mdnid);

            if (md == NULL) {
                md = EVP_sha256();
            }
        }

        if (X509_digest(cert, md, buf, &n) != 1) {
            ngx_ssl_error(NGX_LOG_ALERT, c->log, 0, "X509_digest() failed");
            return NGX_ERROR;
        }

        *len = n;
        return NGX_OK;
    }
}

#endif
