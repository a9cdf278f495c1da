
/*
 * Copyright (C) nginx-xmpp contributors
 */


#ifndef _NGX_MAIL_XMPP_MODULE_H_INCLUDED_
#define _NGX_MAIL_XMPP_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>


#define NGX_MAIL_XMPP_NAME_LEN       64
#define NGX_MAIL_XMPP_VALUE_LEN      1024
#define NGX_MAIL_XMPP_ENTITY_LEN     10
#define NGX_MAIL_XMPP_LOG_LEN        128
#define NGX_MAIL_XMPP_MECH_LEN       20
#define NGX_MAIL_XMPP_VERSION_LEN    16
#define NGX_MAIL_XMPP_LINGERING_TIME 2000
#define NGX_MAIL_XMPP_SCAN_NAME_LEN  8

#define NGX_MAIL_XMPP_SCRAM_LEN         1024    /* a client message */
#define NGX_MAIL_XMPP_SCRAM_SERVER_LEN  512     /* server-first */
#define NGX_MAIL_XMPP_SCRAM_OUT_LEN     768     /* <challenge/>, <success/> */
#define NGX_MAIL_XMPP_SCRAM_NONCE_LEN   128     /* the client's nonce */
#define NGX_MAIL_XMPP_SCRAM_RANDOM      24      /* nginx's nonce, bytes */
#define NGX_MAIL_XMPP_SCRAM_ITERATIONS  1000000
#define NGX_MAIL_XMPP_SALT_LEN          128
#define NGX_MAIL_XMPP_TARGETS           8       /* of a remote domain */
#define NGX_MAIL_XMPP_SSL_SESSIONS      32      /* backend TLS sessions */
#define NGX_MAIL_XMPP_SSL_NAME_LEN      256


#define NGX_XMPP_STREAMS_NS  "http://etherx.jabber.org/streams"
#define NGX_XMPP_SASL_NS     "urn:ietf:params:xml:ns:xmpp-sasl"
#define NGX_XMPP_TLS_NS      "urn:ietf:params:xml:ns:xmpp-tls"
#define NGX_XMPP_ERR_NS      "urn:ietf:params:xml:ns:xmpp-streams"


/* xmpp_proxy_ssl */

#define NGX_XMPP_PROXY_SSL_OFF       0
#define NGX_XMPP_PROXY_SSL_ON        1      /* direct TLS */
#define NGX_XMPP_PROXY_SSL_STARTTLS  2


/* ngx_mail_xmpp_stream_header() */

#define NGX_XMPP_HEADER_SERVER       1
#define NGX_XMPP_HEADER_ID           2


/* client commands (s->command) */

#define NGX_XMPP_STREAM              1
#define NGX_XMPP_STREAM_END          2
#define NGX_XMPP_STARTTLS            3
#define NGX_XMPP_AUTH                4
#define NGX_XMPP_RESPONSE            5
#define NGX_XMPP_ABORT               6
#define NGX_XMPP_DB_RESULT           7
#define NGX_XMPP_DB_VERIFY           8


/* stream errors, RFC 6120 section 4.9.3 */

#define NGX_XMPP_ERR_NONE                   0
#define NGX_XMPP_ERR_BAD_FORMAT             1
#define NGX_XMPP_ERR_CONNECTION_TIMEOUT     2
#define NGX_XMPP_ERR_HOST_UNKNOWN           3
#define NGX_XMPP_ERR_INTERNAL_SERVER_ERROR  4
#define NGX_XMPP_ERR_INVALID_NAMESPACE      5
#define NGX_XMPP_ERR_NOT_AUTHORIZED         6
#define NGX_XMPP_ERR_NOT_WELL_FORMED        7
#define NGX_XMPP_ERR_POLICY_VIOLATION       8
#define NGX_XMPP_ERR_REMOTE_CONNECTION      9
#define NGX_XMPP_ERR_RESTRICTED_XML         10
#define NGX_XMPP_ERR_UNSUPPORTED_ENCODING   11
#define NGX_XMPP_ERR_UNSUPPORTED_VERSION    12
#define NGX_XMPP_ERR_INVALID_FROM           13


/* SASL failure conditions, RFC 6120 section 6.5 */

#define NGX_XMPP_SASL_ABORTED               0
#define NGX_XMPP_SASL_ACCOUNT_DISABLED      1
#define NGX_XMPP_SASL_CREDENTIALS_EXPIRED   2
#define NGX_XMPP_SASL_ENCRYPTION_REQUIRED   3
#define NGX_XMPP_SASL_INCORRECT_ENCODING    4
#define NGX_XMPP_SASL_INVALID_AUTHZID       5
#define NGX_XMPP_SASL_INVALID_MECHANISM     6
#define NGX_XMPP_SASL_MALFORMED_REQUEST     7
#define NGX_XMPP_SASL_MECHANISM_TOO_WEAK    8
#define NGX_XMPP_SASL_NOT_AUTHORIZED        9
#define NGX_XMPP_SASL_TEMPORARY_AUTH        10


/* SCRAM channel binding types */

#define NGX_XMPP_CB_EXPORTER         1
#define NGX_XMPP_CB_UNIQUE           2
#define NGX_XMPP_CB_END_POINT        3


/* the Auth-SCRAM-* headers of an auth_http answer */

#define NGX_XMPP_SCRAM_SALT          0x01
#define NGX_XMPP_SCRAM_ITERATIONS    0x02
#define NGX_XMPP_SCRAM_STORED_KEY    0x04
#define NGX_XMPP_SCRAM_SERVER_KEY    0x08


typedef enum {
    ngx_xmpp_start = 0,
    ngx_xmpp_auth_initial,      /* an empty challenge sent */
    ngx_xmpp_auth_scram,        /* server-first sent */
    ngx_xmpp_dialback,          /* s2s: the backend's features relayed */
    ngx_xmpp_starttls           /* <proceed/> waits for a certificate */
} ngx_xmpp_state_e;


typedef enum {
    ngx_xmpp_proxy_start = 0,
    ngx_xmpp_proxy_features,
    ngx_xmpp_proxy_auth,
    ngx_xmpp_proxy_starttls     /* xmpp-server-out: <starttls/> sent */
} ngx_xmpp_proxy_state_e;


typedef struct {
    ngx_str_t               name;
    ngx_uint_t              wildcard;   /* unsigned  wildcard:1; */
    ngx_array_t             certs;
    ngx_array_t             keys;
#if (NGX_MAIL_SSL)
    ngx_ssl_t               ssl;
#endif
} ngx_mail_xmpp_cert_t;


typedef struct ngx_mail_xmpp_lookup_s  ngx_mail_xmpp_lookup_t;

typedef void (*ngx_mail_xmpp_lookup_pt)(ngx_mail_xmpp_lookup_t *lu,
    ngx_int_t rc);


/*
 * certificate lookup cache (ngx_mail_xmpp_certificate.c; the entry is here for
 * t/fuzz/xmpp_lookup_fuzz.c): the lists of ngx_mail_xmpp_cached_t.list
 */

#define NGX_MAIL_XMPP_CACHE_CERT       0    /* certificates */
#define NGX_MAIL_XMPP_CACHE_NEGATIVE   1    /* no certificate, failures */
#define NGX_MAIL_XMPP_CACHE_PENDING    2    /* being looked up */
#define NGX_MAIL_XMPP_CACHE_LISTS      3


#if (NGX_MAIL_SSL)

/* a backend's TLS session, kept for the next login (per worker) */

typedef struct {
    ngx_queue_t             queue;
    socklen_t               socklen;
    ngx_sockaddr_t          sockaddr;
    size_t                  name_len;
    ngx_ssl_session_t      *session;
    u_char                  name[NGX_MAIL_XMPP_SSL_NAME_LEN];
} ngx_mail_xmpp_ssl_session_t;


typedef struct {
    ngx_queue_t                   used;     /* the last used first */
    ngx_queue_t                   free;
    ngx_mail_xmpp_ssl_session_t   sessions[NGX_MAIL_XMPP_SSL_SESSIONS];
} ngx_mail_xmpp_ssl_sessions_t;


typedef struct {
    ngx_str_node_t          sn;
    ngx_queue_t             queue;
    ngx_uint_t              list;
    time_t                  expire;
    X509                   *cert;
    STACK_OF(X509)         *chain;
    EVP_PKEY               *key;            /* NULL: no certificate */
    ngx_mail_xmpp_lookup_t *lookup;         /* while pending */
} ngx_mail_xmpp_cached_t;

#endif


typedef struct {
    ngx_rbtree_t            rbtree;
    ngx_rbtree_node_t       sentinel;
    ngx_queue_t             queue[NGX_MAIL_XMPP_CACHE_LISTS];  /* LRU */
    ngx_uint_t              count[NGX_MAIL_XMPP_CACHE_LISTS];
    ngx_uint_t              lookups;        /* running */
} ngx_mail_xmpp_cert_cache_t;


typedef struct {
    size_t                       client_buffer_size;
    ngx_uint_t                   auth_methods;
    ngx_flag_t                   tls_detect;

    ngx_array_t                 *certificates;   /* ngx_mail_xmpp_cert_t */

    ngx_addr_t                  *lookup_peer;
    ngx_str_t                    lookup_host;
    ngx_str_t                    lookup_uri;
    ngx_array_t                 *lookup_domains;  /* ngx_str_t */
    ngx_msec_t                   lookup_timeout;
    ngx_uint_t                   lookup_concurrency;
    time_t                       cache_time;
    time_t                       cache_error_time;
    ngx_uint_t                   cache_size;
    ngx_uint_t                   cache_negative_size;
    ngx_mail_xmpp_cert_cache_t  *cache;

    ngx_str_t                    features;
    ngx_str_t                    tls_features[2];  /* TLS 1.2-, TLS 1.3 */
    ngx_str_t                    starttls_features;
    ngx_str_t                    starttls_only_features;

    ngx_str_t                    server_features;
    ngx_str_t                    server_starttls_features;
    ngx_str_t                    server_starttls_only_features;

#if (NGX_MAIL_SSL)
    ngx_uint_t                   proxy_ssl;        /* NGX_XMPP_PROXY_SSL_* */
    ngx_flag_t                   proxy_ssl_verify;
    ngx_uint_t                   proxy_ssl_verify_depth;
    ngx_str_t                    proxy_ssl_trusted_certificate;
    ngx_str_t                    proxy_ssl_name;
    ngx_str_t                    proxy_ssl_certificate;
    ngx_str_t                    proxy_ssl_certificate_key;
    ngx_uint_t                   proxy_ssl_protocols;
    ngx_flag_t                   proxy_ssl_session_reuse;
    ngx_ssl_t                   *proxy_ssl_ctx;
    ngx_mail_xmpp_ssl_sessions_t  *proxy_ssl_sessions;
#endif
} ngx_mail_xmpp_srv_conf_t;


#if (NGX_MAIL_SSL)

/* a certificate lookup (ngx_mail_xmpp_lookup.c, the HTTP client) */

struct ngx_mail_xmpp_lookup_s {
    ngx_pool_t                 *pool;
    ngx_peer_connection_t       peer;
    ngx_buf_t                  *request;
    ngx_buf_t                  *response;
    ngx_str_t                   domain;
    ngx_mail_xmpp_srv_conf_t   *xcf;
    ngx_mail_xmpp_cached_t     *cached;     /* NULL: dropped from the cache */
    ngx_mail_session_t         *session;    /* NULL: a background lookup */
    ngx_mail_xmpp_lookup_pt     handler;    /* every end of the lookup */

    /* the response header parser */

    ngx_uint_t                  state;
    ngx_uint_t                  match;
    ngx_uint_t                  header;
    ngx_uint_t                  status;
    size_t                      value;
    size_t                      length;     /* Content-Length */
    size_t                      body;       /* offset in the response */

    unsigned                    has_length:1;
    unsigned                    header_done:1;
};

#endif


/*
 * server-to-server: the tokenizer of the relayed streams, the remote's and
 * the backend's, and what binds the remote's stream to the domain pair
 * auth_http approved (see ngx_mail_xmpp_relay.c)
 */

typedef struct ngx_mail_xmpp_relay_s  ngx_mail_xmpp_relay_t;

typedef struct {
    ngx_uint_t              state;
    ngx_uint_t              depth;
    ngx_uint_t              child;          /* NGX_XMPP_UP_* of a child */
    ngx_uint_t              unit;           /* NGX_XMPP_UP_*, when NGX_OK */
    size_t                  name_len;       /* of the local name */
    size_t                  count;          /* of a delimiter, "]]>" ... */
    u_char                 *lt;             /* the last "<" */
    u_char                 *start;          /* "<" of a top-level child */
    ngx_mail_xmpp_relay_t  *relay;          /* the remote's side: checked */
    u_char                  quote;
    u_char                  name[NGX_MAIL_XMPP_SCAN_NAME_LEN];
} ngx_mail_xmpp_scan_t;


struct ngx_mail_xmpp_relay_s {
    ngx_recv_pt             recv;           /* the remote's own */
    ngx_recv_pt             up_recv;        /* the backend's own */

    ngx_mail_xmpp_scan_t    scan;           /* what the remote sends */

    ngx_str_t               pair[2];        /* approved "from" and "to" */

    /* a top-level <result/> or <verify/> of the remote */

    ngx_uint_t              attr;           /* 1 "from", 2 "to", 0 other */
    ngx_uint_t              seen;           /* bits: 1 "from", 2 "to" */
    ngx_uint_t              match;          /* bits: 1 "from", 2 "to" */
    size_t                  attr_len;
    size_t                  value_len[2];
    u_char                  attr_name[4];
    u_char                  value[2][NGX_MAIL_XMPP_LOG_LEN];  /* logged */

    unsigned                dialback:1;
    unsigned                same:1;         /* the value so far */
    unsigned                twice:1;        /* "from" or "to" repeated */
    unsigned                up_lost:1;      /* backend XML not followed */
    unsigned                refused:1;
};


/* the client parser: one element at a time (ngx_mail_xmpp_parse.c) */

typedef struct {
    ngx_uint_t              element;
    ngx_uint_t              attr;
    ngx_uint_t              quote;
    ngx_uint_t              entity_state;

    size_t                  name_len;
    size_t                  prefix_len;
    size_t                  end_len;
    size_t                  attr_len;
    size_t                  value_len;
    size_t                  entity_len;
    size_t                  stream_name_len;
    size_t                  db_prefix_len;

    u_char                 *elem_start;     /* "<" of the current element */
    u_char                 *text_start;
    u_char                 *text_end;

    u_char                 *value;          /* freed when relaying */

    ngx_uint_t              utf8;
    u_char                  utf8_min;
    u_char                  utf8_max;

    ngx_uint_t              elem_ns;
    ngx_uint_t              default_ns;

    ngx_str_t               version;        /* in version_data */
    ngx_str_t               mech;           /* in mech_data */

    unsigned                decl:1;
    unsigned                empty:1;
    unsigned                has_version:1;
    unsigned                has_to:1;
    unsigned                has_mech:1;
    unsigned                bad_text:1;

    u_char                  name[NGX_MAIL_XMPP_NAME_LEN];
    u_char                  stream_name[NGX_MAIL_XMPP_NAME_LEN];
    u_char                  attr_name[NGX_MAIL_XMPP_NAME_LEN];
    u_char                  db_prefix[NGX_MAIL_XMPP_NAME_LEN];
    u_char                  entity[NGX_MAIL_XMPP_ENTITY_LEN];
    u_char                  version_data[NGX_MAIL_XMPP_VERSION_LEN];
    u_char                  mech_data[NGX_MAIL_XMPP_MECH_LEN];
} ngx_mail_xmpp_parse_t;


/* a SASL mechanism of xmpp_auth, in the order of preference offered */

typedef struct {
    ngx_str_t               name;
    ngx_uint_t              method;         /* NGX_MAIL_AUTH_* */
    ngx_uint_t              enabled;        /* NGX_MAIL_AUTH_*_ENABLED */
    ngx_uint_t              plus;           /* SCRAM with channel binding */
} ngx_mail_xmpp_mech_t;


#if (NGX_MAIL_SSL)

/* a SCRAM exchange (ngx_mail_xmpp_scram.c), allocated once per session */

typedef struct {
    ngx_uint_t              method;         /* NGX_MAIL_AUTH_SCRAM_* */
    ngx_uint_t              plus;
    ngx_uint_t              cb;             /* NGX_XMPP_CB_*, or 0 */
    ngx_uint_t              headers;        /* NGX_XMPP_SCRAM_* received */
    ngx_uint_t              invalid;        /* a header was invalid */
    ngx_uint_t              iterations;
    ngx_addr_t             *peer;           /* approved by auth_http */
    ngx_str_t               success;        /* in out */

    size_t                  first_len;
    size_t                  gs2_len;        /* the gs2 header */
    size_t                  bare;           /* client-first-message-bare */
    size_t                  nonce;          /* offset of the client's */
    size_t                  nonce_len;
    size_t                  server_len;
    size_t                  server_nonce_len;
    size_t                  salt_len;
    size_t                  stored_key_len;
    size_t                  server_key_len;

    u_char                  client_first[NGX_MAIL_XMPP_SCRAM_LEN];
    u_char                  server_first[NGX_MAIL_XMPP_SCRAM_SERVER_LEN];
    u_char                  out[NGX_MAIL_XMPP_SCRAM_OUT_LEN];
    u_char                  salt[NGX_MAIL_XMPP_SALT_LEN];
    u_char                  stored_key[EVP_MAX_MD_SIZE];
    u_char                  server_key[EVP_MAX_MD_SIZE];
} ngx_mail_xmpp_scram_t;

#endif


/* server-to-server: the remote's stream "from" and its dialback request */

typedef struct {
    ngx_str_t               remote;
    ngx_str_t               db_from;
    ngx_str_t               db_to;
    ngx_str_t               db_id;
    ngx_str_t               dialback;       /* to forward to the backend */

    unsigned                up_wait:1;      /* the backend waits for it */
} ngx_mail_xmpp_s2s_t;


typedef struct {
    ngx_str_t               host;           /* stream "to", a domain */
    ngx_mail_xmpp_lookup_t *lookup;         /* pending lookup */
    ngx_str_t               localpart;      /* backend SASL authcid */
    ngx_str_t               domain;         /* backend stream "to" */

    ngx_uint_t              error;          /* NGX_XMPP_ERR_* */
    ngx_uint_t              login_state;    /* ngx_xmpp_proxy_state_e */
    ngx_mail_xmpp_mech_t   *mech;           /* of the SASL exchange */

    unsigned                server:1;       /* xmpp-server protocol */
    unsigned                out:1;          /* xmpp-server-out protocol */
    unsigned                stream:1;       /* client stream header seen */
    unsigned                header_sent:1;  /* our stream header sent */
    unsigned                lingering:1;

    ngx_mail_xmpp_parse_t   parse;          /* what the client sends */
    ngx_mail_xmpp_s2s_t     s2s;
    ngx_mail_xmpp_scan_t    up;             /* what the backend sends */
    ngx_mail_xmpp_relay_t  *relay;          /* xmpp-server, relayed */
    ngx_recv_pt             recv;           /* the client's, while the
                                               relay drops whitespace */
    ngx_event_handler_pt    up_write;       /* the upstream's, during its
                                               TLS handshake */
    ngx_pool_cleanup_t     *resolve_cleanup;  /* xmpp-server-out */
    ngx_addr_t             *targets;        /* the remote's servers */
    ngx_uint_t              ntargets;
    ngx_uint_t              target;         /* the one tried */
    ngx_uint_t              direct;         /* bits: direct TLS targets */
#if (NGX_MAIL_SSL)
    ngx_uint_t              proxy_ssl;      /* auth_http's, + 1; 0: none */
    ngx_str_t              *ssl_name;       /* of the backend's TLS */
    ngx_mail_xmpp_scram_t  *scram;          /* a SCRAM exchange */
#endif
} ngx_mail_xmpp_ctx_t;


/* what ngx_mail_xmpp_scan() found when it returns NGX_OK (sc->unit) */

#define NGX_XMPP_UP_HEADER           1
#define NGX_XMPP_UP_FEATURES         2
#define NGX_XMPP_UP_SUCCESS          3
#define NGX_XMPP_UP_FAILURE          4
#define NGX_XMPP_UP_ERROR            5
#define NGX_XMPP_UP_OTHER            6
#define NGX_XMPP_UP_END              7

/* ... and on the remote's side of a relayed xmpp-server stream */

#define NGX_XMPP_UP_RESTRICTED       8
#define NGX_XMPP_UP_PAIR             9


void ngx_mail_xmpp_init_session(ngx_mail_session_t *s, ngx_connection_t *c);
void ngx_mail_xmpp_init_protocol(ngx_event_t *rev);
void ngx_mail_xmpp_auth_state(ngx_event_t *rev);
void ngx_mail_xmpp_resume(ngx_mail_session_t *s, ngx_uint_t state);
ngx_int_t ngx_mail_xmpp_parse_command(ngx_mail_session_t *s);
ngx_int_t ngx_mail_xmpp_auth_error(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_str_t *code);
ngx_int_t ngx_mail_xmpp_auth_header(ngx_mail_session_t *s, ngx_str_t *name,
    ngx_str_t *value);
void ngx_mail_xmpp_auth_done(ngx_mail_session_t *s, ngx_addr_t *peer);
void ngx_mail_xmpp_proxy_handler(ngx_event_t *rev);
void ngx_mail_xmpp_proxy_dialback(ngx_mail_session_t *s);
ngx_int_t ngx_mail_xmpp_parse_upstream(ngx_mail_xmpp_ctx_t *ctx,
    ngx_buf_t *b, ngx_uint_t keep);
ngx_int_t ngx_mail_xmpp_scan(ngx_mail_xmpp_scan_t *sc, u_char **pos,
    u_char *last);
ngx_uint_t ngx_mail_xmpp_scan_between(ngx_mail_xmpp_scan_t *sc);
ngx_int_t ngx_mail_xmpp_relay_init(ngx_mail_session_t *s);
void ngx_mail_xmpp_resolve(ngx_mail_session_t *s, ngx_uint_t step);
ngx_int_t ngx_mail_xmpp_resolve_next(ngx_mail_session_t *s);

#if (NGX_MAIL_SSL)
char *ngx_mail_xmpp_certificate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_mail_xmpp_upstream_ssl_init(ngx_conf_t *cf,
    ngx_mail_xmpp_srv_conf_t *xcf);
ngx_int_t ngx_mail_xmpp_upstream_ssl_start(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name,
    ngx_uint_t alpn, ngx_connection_handler_pt handler);
ngx_int_t ngx_mail_xmpp_upstream_ssl_header(ngx_mail_session_t *s,
    ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_mail_xmpp_upstream_ssl_verify(ngx_connection_t *c,
    ngx_mail_xmpp_srv_conf_t *xcf, ngx_str_t *name);
ngx_int_t ngx_mail_xmpp_ssl_init(ngx_conf_t *cf,
    ngx_mail_xmpp_srv_conf_t *xcf);
char *ngx_mail_xmpp_certificate_lookup(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_mail_xmpp_certificate_lookup_domains(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ngx_int_t ngx_mail_xmpp_lookup_start(ngx_mail_session_t *s,
    ngx_connection_t *c);
ngx_int_t ngx_mail_xmpp_lookup_send(ngx_mail_xmpp_lookup_t *lu);
void ngx_mail_xmpp_scram_reset(ngx_mail_xmpp_scram_t *sc);
ngx_uint_t ngx_mail_xmpp_scram_cb_offered(ngx_connection_t *c,
    ngx_uint_t type);
ngx_int_t ngx_mail_xmpp_scram_client_first(ngx_mail_xmpp_scram_t *sc,
    ngx_connection_t *c, ngx_str_t *msg, ngx_str_t *user, ngx_str_t *authzid,
    ngx_uint_t *cond);
ngx_int_t ngx_mail_xmpp_scram_header(ngx_mail_xmpp_scram_t *sc,
    ngx_connection_t *c, ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_mail_xmpp_scram_server_first(ngx_mail_xmpp_scram_t *sc,
    ngx_connection_t *c, ngx_str_t *out);
ngx_int_t ngx_mail_xmpp_scram_client_final(ngx_mail_xmpp_scram_t *sc,
    ngx_connection_t *c, ngx_str_t *msg, ngx_uint_t *cond);
ngx_str_t *ngx_mail_xmpp_scram_cb_name(ngx_uint_t type);
#endif

uintptr_t ngx_mail_xmpp_stream_header(u_char *dst, ngx_uint_t flags,
    ngx_str_t *from, ngx_str_t *to);
ngx_int_t ngx_mail_xmpp_stream_error(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t err);
void ngx_mail_xmpp_stream_close(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t err);
ngx_int_t ngx_mail_xmpp_sasl_failure(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t cond, ngx_str_t *text);
ngx_int_t ngx_mail_xmpp_count_error(ngx_mail_session_t *s,
    ngx_connection_t *c);
uintptr_t ngx_mail_xmpp_escape(u_char *dst, u_char *src, size_t size);
ngx_str_t ngx_mail_xmpp_log_value(u_char *buf, size_t size, ngx_str_t *src);
void ngx_mail_xmpp_skip_space(ngx_buf_t *b);
size_t ngx_mail_xmpp_compact(ngx_buf_t *b, u_char *keep);
ngx_int_t ngx_mail_xmpp_check_domain(u_char *name, size_t len);
ngx_int_t ngx_mail_xmpp_check_token(ngx_str_t *id, size_t max);

extern ngx_str_t  ngx_mail_xmpp_stream_errors[];
extern ngx_str_t  ngx_mail_xmpp_sasl_conditions[];
extern ngx_mail_xmpp_mech_t  ngx_mail_xmpp_mechanisms[];

extern ngx_module_t  ngx_mail_xmpp_module;
extern ngx_module_t  ngx_mail_xmpp_server_module;
extern ngx_module_t  ngx_mail_xmpp_server_out_module;


#endif /* _NGX_MAIL_XMPP_MODULE_H_INCLUDED_ */
