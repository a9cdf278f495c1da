
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


typedef enum {
    ngx_xmpp_start = 0,
    ngx_xmpp_auth_plain,
    ngx_xmpp_dialback           /* s2s: the backend's features relayed */
} ngx_xmpp_state_e;


typedef enum {
    ngx_xmpp_proxy_start = 0,
    ngx_xmpp_proxy_features,
    ngx_xmpp_proxy_auth
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


/*
 * certificate lookup cache (ngx_mail_xmpp_ssl.c; the entry is here for
 * t/fuzz/xmpp_lookup_fuzz.c): the lists of ngx_mail_xmpp_cached_t.list
 */

#define NGX_MAIL_XMPP_CACHE_CERT       0    /* certificates */
#define NGX_MAIL_XMPP_CACHE_NEGATIVE   1    /* no certificate, failures */
#define NGX_MAIL_XMPP_CACHE_PENDING    2    /* being looked up */
#define NGX_MAIL_XMPP_CACHE_LISTS      3


#if (NGX_MAIL_SSL)

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
    ngx_str_t                    starttls_features;
    ngx_str_t                    starttls_only_features;

    ngx_str_t                    server_features;
    ngx_str_t                    server_starttls_features;
    ngx_str_t                    server_starttls_only_features;
} ngx_mail_xmpp_srv_conf_t;


typedef struct {
    ngx_str_t               host;           /* stream "to", decoded */
    ngx_mail_xmpp_lookup_t *lookup;         /* pending lookup */
    ngx_str_t               localpart;      /* backend SASL authcid */
    ngx_str_t               domain;         /* backend stream "to" */

    ngx_uint_t              error;          /* NGX_XMPP_ERR_* */

    /* client parser */

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

    u_char                 *elem_start;     /* "<" of the current element */
    u_char                 *text_start;
    u_char                 *text_end;

    u_char                 *value;          /* freed when relaying */

    ngx_uint_t              utf8;
    u_char                  utf8_min;
    u_char                  utf8_max;

    ngx_uint_t              elem_ns;
    ngx_uint_t              default_ns;

    /* server-to-server: the stream "from" and a dialback element */

    ngx_str_t               remote;
    ngx_str_t               db_from;
    ngx_str_t               db_to;
    ngx_str_t               db_id;
    ngx_str_t               dialback;       /* to forward to the backend */
    size_t                  db_prefix_len;
    u_char                  db_prefix[NGX_MAIL_XMPP_NAME_LEN];

    unsigned                server:1;       /* xmpp-server protocol */
    unsigned                up_wait:1;      /* s2s backend waits */
    unsigned                stream:1;       /* client stream header seen */
    unsigned                header_sent:1;  /* our stream header sent */
    unsigned                decl:1;
    unsigned                empty:1;
    unsigned                has_version:1;
    unsigned                has_to:1;
    unsigned                has_mech:1;
    unsigned                bad_text:1;

    ngx_str_t               version;
    ngx_str_t               mech;

    size_t                  stream_name_len;

    u_char                  name[NGX_MAIL_XMPP_NAME_LEN];
    u_char                  stream_name[NGX_MAIL_XMPP_NAME_LEN];
    u_char                  attr_name[NGX_MAIL_XMPP_NAME_LEN];
    u_char                  entity[NGX_MAIL_XMPP_ENTITY_LEN];

    /* upstream parser */

    ngx_uint_t              up_state;
    ngx_uint_t              up_depth;
    ngx_uint_t              up_quote;
    ngx_uint_t              up_child;
    size_t                  up_name_len;
    u_char                 *up_lt;
    u_char                 *up_start;
    u_char                  up_name[NGX_MAIL_XMPP_NAME_LEN];
} ngx_mail_xmpp_ctx_t;


/* upstream parser results */

#define NGX_XMPP_UP_HEADER           1
#define NGX_XMPP_UP_FEATURES         2
#define NGX_XMPP_UP_SUCCESS          3
#define NGX_XMPP_UP_FAILURE          4
#define NGX_XMPP_UP_ERROR            5
#define NGX_XMPP_UP_OTHER            6
#define NGX_XMPP_UP_END              7


void ngx_mail_xmpp_init_session(ngx_mail_session_t *s, ngx_connection_t *c);
void ngx_mail_xmpp_init_protocol(ngx_event_t *rev);
void ngx_mail_xmpp_auth_state(ngx_event_t *rev);
ngx_int_t ngx_mail_xmpp_parse_command(ngx_mail_session_t *s);
ngx_int_t ngx_mail_xmpp_auth_error(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_str_t *code);
void ngx_mail_xmpp_proxy_handler(ngx_event_t *rev);
void ngx_mail_xmpp_proxy_dialback(ngx_mail_session_t *s);
ngx_int_t ngx_mail_xmpp_parse_upstream(ngx_mail_session_t *s,
    ngx_mail_xmpp_ctx_t *ctx, ngx_buf_t *b);

#if (NGX_MAIL_SSL)
char *ngx_mail_xmpp_certificate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_mail_xmpp_ssl_init(ngx_conf_t *cf,
    ngx_mail_xmpp_srv_conf_t *xcf);
char *ngx_mail_xmpp_certificate_lookup(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_mail_xmpp_certificate_lookup_domains(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ngx_int_t ngx_mail_xmpp_lookup_start(ngx_mail_session_t *s,
    ngx_connection_t *c);
#endif

void ngx_mail_xmpp_skip_space(ngx_buf_t *b);
u_char *ngx_mail_xmpp_escape(u_char *dst, ngx_str_t *src);
size_t ngx_mail_xmpp_escaped_len(ngx_str_t *src);
ngx_int_t ngx_mail_xmpp_stream_error(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t err);
ngx_int_t ngx_mail_xmpp_sasl_failure(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t cond, ngx_str_t *text);
ngx_str_t ngx_mail_xmpp_log_value(u_char *buf, size_t size, ngx_str_t *src);


extern ngx_module_t  ngx_mail_xmpp_module;
extern ngx_module_t  ngx_mail_xmpp_server_module;


#endif /* _NGX_MAIL_XMPP_MODULE_H_INCLUDED_ */
