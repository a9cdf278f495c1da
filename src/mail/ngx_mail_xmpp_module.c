
/*
 * Copyright (C) nginx-xmpp contributors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include <ngx_mail_xmpp_module.h>


static void *ngx_mail_xmpp_create_srv_conf(ngx_conf_t *cf);
static char *ngx_mail_xmpp_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_mail_xmpp_mechanisms_conf(ngx_conf_t *cf,
    ngx_uint_t methods, ngx_uint_t tls, ngx_str_t *out);
static ngx_int_t ngx_mail_xmpp_features_conf(ngx_conf_t *cf, ngx_str_t *out,
    ngx_str_t *first, ngx_str_t *second);
#if (NGX_MAIL_SSL)
static ngx_int_t ngx_mail_xmpp_tls_detect_conf(ngx_conf_t *cf);
#endif


static ngx_conf_bitmask_t  ngx_mail_xmpp_auth_methods[] = {
    { ngx_string("plain"), NGX_MAIL_AUTH_PLAIN_ENABLED },
    { ngx_string("scram-sha-1"), NGX_MAIL_AUTH_SCRAM_SHA1_ENABLED },
    { ngx_string("scram-sha-256"), NGX_MAIL_AUTH_SCRAM_SHA256_ENABLED },
    { ngx_null_string, 0 }
};


#if (NGX_MAIL_SSL)

static ngx_conf_enum_t  ngx_mail_xmpp_proxy_ssl[] = {
    { ngx_string("off"), NGX_XMPP_PROXY_SSL_OFF },
    { ngx_string("on"), NGX_XMPP_PROXY_SSL_ON },
    { ngx_string("starttls"), NGX_XMPP_PROXY_SSL_STARTTLS },
    { ngx_null_string, 0 }
};


static ngx_conf_bitmask_t  ngx_mail_xmpp_proxy_ssl_protocols[] = {
    { ngx_string("TLSv1.2"), NGX_SSL_TLSv1_2 },
    { ngx_string("TLSv1.3"), NGX_SSL_TLSv1_3 },
    { ngx_null_string, 0 }
};

#endif


ngx_mail_xmpp_mech_t  ngx_mail_xmpp_mechanisms[] = {
    { ngx_string("SCRAM-SHA-256-PLUS"), NGX_MAIL_AUTH_SCRAM_SHA256,
      NGX_MAIL_AUTH_SCRAM_SHA256_ENABLED, 1 },
    { ngx_string("SCRAM-SHA-1-PLUS"), NGX_MAIL_AUTH_SCRAM_SHA1,
      NGX_MAIL_AUTH_SCRAM_SHA1_ENABLED, 1 },
    { ngx_string("SCRAM-SHA-256"), NGX_MAIL_AUTH_SCRAM_SHA256,
      NGX_MAIL_AUTH_SCRAM_SHA256_ENABLED, 0 },
    { ngx_string("SCRAM-SHA-1"), NGX_MAIL_AUTH_SCRAM_SHA1,
      NGX_MAIL_AUTH_SCRAM_SHA1_ENABLED, 0 },
    { ngx_string("PLAIN"), NGX_MAIL_AUTH_PLAIN,
      NGX_MAIL_AUTH_PLAIN_ENABLED, 0 },
    { ngx_null_string, 0, 0, 0 }
};


#define NGX_XMPP_HEADER                                                      \
    "<?xml version='1.0'?>"                                                  \
    "<stream:stream xmlns='jabber:client'"                                   \
    " xmlns:stream='" NGX_XMPP_STREAMS_NS "'"                                \
    " version='1.0' xml:lang='en'>"

#define NGX_XMPP_SERVER_HEADER                                               \
    "<?xml version='1.0'?>"                                                  \
    "<stream:stream xmlns='jabber:server'"                                   \
    " xmlns:stream='" NGX_XMPP_STREAMS_NS "'"                                \
    " xmlns:db='jabber:server:dialback' version='1.0' xml:lang='en'>"


static ngx_mail_protocol_t  ngx_mail_xmpp_protocol = {
    ngx_string("xmpp"),
    ngx_string("\x0bxmpp-client"),
    { 5222, 5223, 0, 0 },
    NGX_MAIL_XMPP_PROTOCOL,

    ngx_mail_xmpp_init_session,
    ngx_mail_xmpp_init_protocol,
    ngx_mail_xmpp_parse_command,
    ngx_mail_xmpp_auth_state,

    ngx_string("<failure xmlns='" NGX_XMPP_SASL_NS "'>"
               "<temporary-auth-failure/></failure>"
               "<stream:error><internal-server-error xmlns='"
               NGX_XMPP_ERR_NS "'/></stream:error></stream:stream>"),
    ngx_string(NGX_XMPP_HEADER
               "<stream:error><policy-violation xmlns='"
               NGX_XMPP_ERR_NS "'/><text xmlns='" NGX_XMPP_ERR_NS "'"
               " xml:lang='en'>SSL certificate error</text>"
               "</stream:error></stream:stream>"),
    ngx_string(NGX_XMPP_HEADER
               "<stream:error><policy-violation xmlns='"
               NGX_XMPP_ERR_NS "'/><text xmlns='" NGX_XMPP_ERR_NS "'"
               " xml:lang='en'>No required SSL certificate</text>"
               "</stream:error></stream:stream>"),

    ngx_mail_xmpp_auth_error,
    ngx_mail_xmpp_proxy_handler,
    ngx_mail_xmpp_auth_header,
    ngx_mail_xmpp_auth_done
};


/* server-to-server streams: the same module, with dialback */

static ngx_mail_protocol_t  ngx_mail_xmpp_server_protocol = {
    ngx_string("xmpp-server"),
    ngx_string("\x0bxmpp-server"),
    { 5269, 5270, 0, 0 },
    NGX_MAIL_XMPP_SERVER_PROTOCOL,

    ngx_mail_xmpp_init_session,
    ngx_mail_xmpp_init_protocol,
    ngx_mail_xmpp_parse_command,
    ngx_mail_xmpp_auth_state,

    ngx_string("<stream:error><internal-server-error xmlns='"
               NGX_XMPP_ERR_NS "'/></stream:error></stream:stream>"),
    ngx_string(NGX_XMPP_SERVER_HEADER
               "<stream:error><policy-violation xmlns='"
               NGX_XMPP_ERR_NS "'/><text xmlns='" NGX_XMPP_ERR_NS "'"
               " xml:lang='en'>SSL certificate error</text>"
               "</stream:error></stream:stream>"),
    ngx_string(NGX_XMPP_SERVER_HEADER
               "<stream:error><policy-violation xmlns='"
               NGX_XMPP_ERR_NS "'/><text xmlns='" NGX_XMPP_ERR_NS "'"
               " xml:lang='en'>No required SSL certificate</text>"
               "</stream:error></stream:stream>"),

    ngx_mail_xmpp_auth_error,
    ngx_mail_xmpp_proxy_handler,
    ngx_mail_xmpp_auth_header,
    NULL
};


/*
 * the backends' outgoing server-to-server streams: a backend connects to
 * it in plain TCP, nginx asks auth_http ("Auth-Protocol: xmpp-server-out")
 * and opens the stream to the remote domain's server with TLS
 */

static ngx_mail_protocol_t  ngx_mail_xmpp_server_out_protocol = {
    ngx_string("xmpp-server-out"),
    ngx_string("\x0bxmpp-server"),
    { 5269, 0, 0, 0 },
    NGX_MAIL_XMPP_SERVER_PROTOCOL,

    ngx_mail_xmpp_init_session,
    ngx_mail_xmpp_init_protocol,
    ngx_mail_xmpp_parse_command,
    ngx_mail_xmpp_auth_state,

    ngx_string("<stream:error><internal-server-error xmlns='"
               NGX_XMPP_ERR_NS "'/></stream:error></stream:stream>"),
    ngx_null_string,
    ngx_null_string,

    ngx_mail_xmpp_auth_error,
    ngx_mail_xmpp_proxy_handler,
    NULL,
    ngx_mail_xmpp_auth_done
};


static ngx_command_t  ngx_mail_xmpp_commands[] = {

    { ngx_string("xmpp_client_buffer"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, client_buffer_size),
      NULL },

    { ngx_string("xmpp_auth"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, auth_methods),
      &ngx_mail_xmpp_auth_methods },

#if (NGX_MAIL_SSL)

    { ngx_string("xmpp_proxy_ssl"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl),
      &ngx_mail_xmpp_proxy_ssl },

    { ngx_string("xmpp_proxy_ssl_name"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl_name),
      NULL },

    { ngx_string("xmpp_proxy_ssl_certificate"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl_certificate),
      NULL },

    { ngx_string("xmpp_proxy_ssl_certificate_key"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl_certificate_key),
      NULL },

    { ngx_string("xmpp_proxy_ssl_protocols"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl_protocols),
      &ngx_mail_xmpp_proxy_ssl_protocols },

    { ngx_string("xmpp_proxy_ssl_session_reuse"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl_session_reuse),
      NULL },

    { ngx_string("xmpp_proxy_ssl_verify"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl_verify),
      NULL },

    { ngx_string("xmpp_proxy_ssl_verify_depth"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl_verify_depth),
      NULL },

    { ngx_string("xmpp_proxy_ssl_trusted_certificate"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, proxy_ssl_trusted_certificate),
      NULL },

    { ngx_string("xmpp_certificate"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE3,
      ngx_mail_xmpp_certificate,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("xmpp_certificate_lookup"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_mail_xmpp_certificate_lookup,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("xmpp_certificate_lookup_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, lookup_timeout),
      NULL },

    { ngx_string("xmpp_certificate_cache_time"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, cache_time),
      NULL },

    { ngx_string("xmpp_certificate_lookup_domains"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_1MORE,
      ngx_mail_xmpp_certificate_lookup_domains,
      NGX_MAIL_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("xmpp_certificate_lookup_concurrency"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, lookup_concurrency),
      NULL },

    { ngx_string("xmpp_certificate_cache_error_time"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, cache_error_time),
      NULL },

    { ngx_string("xmpp_certificate_cache_size"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, cache_size),
      NULL },

    { ngx_string("xmpp_certificate_cache_negative_size"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, cache_negative_size),
      NULL },

    { ngx_string("xmpp_tls_detect"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_xmpp_srv_conf_t, tls_detect),
      NULL },

#endif

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_xmpp_module_ctx = {
    &ngx_mail_xmpp_protocol,               /* protocol */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_mail_xmpp_create_srv_conf,         /* create server configuration */
    ngx_mail_xmpp_merge_srv_conf           /* merge server configuration */
};


ngx_module_t  ngx_mail_xmpp_module = {
    NGX_MODULE_V1,
    &ngx_mail_xmpp_module_ctx,             /* module context */
    ngx_mail_xmpp_commands,                /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * "protocol xmpp-server": the directives and the configuration are those
 * of ngx_mail_xmpp_module, this module only makes the protocol known
 */

static ngx_mail_module_t  ngx_mail_xmpp_server_module_ctx = {
    &ngx_mail_xmpp_server_protocol,        /* protocol */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL                                   /* merge server configuration */
};


ngx_module_t  ngx_mail_xmpp_server_module = {
    NGX_MODULE_V1,
    &ngx_mail_xmpp_server_module_ctx,      /* module context */
    NULL,                                  /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_mail_module_t  ngx_mail_xmpp_server_out_module_ctx = {
    &ngx_mail_xmpp_server_out_protocol,    /* protocol */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL                                   /* merge server configuration */
};


ngx_module_t  ngx_mail_xmpp_server_out_module = {
    NGX_MODULE_V1,
    &ngx_mail_xmpp_server_out_module_ctx,  /* module context */
    NULL,                                  /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_mail_xmpp_create_srv_conf(ngx_conf_t *cf)
{
    ngx_mail_xmpp_srv_conf_t  *xcf;

    xcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_xmpp_srv_conf_t));
    if (xcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     xcf->auth_methods = 0;
     *     xcf->features = { 0, NULL };
     *     xcf->starttls_features = { 0, NULL };
     *     xcf->starttls_only_features = { 0, NULL };
     */

    xcf->client_buffer_size = NGX_CONF_UNSET_SIZE;
    xcf->certificates = NGX_CONF_UNSET_PTR;
    xcf->lookup_peer = NGX_CONF_UNSET_PTR;
    xcf->lookup_domains = NGX_CONF_UNSET_PTR;
    xcf->lookup_timeout = NGX_CONF_UNSET_MSEC;
    xcf->lookup_concurrency = NGX_CONF_UNSET_UINT;
    xcf->tls_detect = NGX_CONF_UNSET;
    xcf->cache_time = NGX_CONF_UNSET;
    xcf->cache_error_time = NGX_CONF_UNSET;
    xcf->cache_size = NGX_CONF_UNSET_UINT;
    xcf->cache_negative_size = NGX_CONF_UNSET_UINT;
#if (NGX_MAIL_SSL)
    xcf->proxy_ssl = NGX_CONF_UNSET_UINT;
    xcf->proxy_ssl_session_reuse = NGX_CONF_UNSET;
    xcf->proxy_ssl_verify = NGX_CONF_UNSET;
    xcf->proxy_ssl_verify_depth = NGX_CONF_UNSET_UINT;
#endif

    return xcf;
}


static char *
ngx_mail_xmpp_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_mail_xmpp_srv_conf_t *prev = parent;
    ngx_mail_xmpp_srv_conf_t *conf = child;

    ngx_str_t                  mechanisms[3], starttls, none;
    ngx_uint_t                 i;
#if (NGX_MAIL_SSL)
    ngx_flag_t                 out;
    ngx_mail_core_srv_conf_t  *cscf;
#endif

    static u_char  starttls_offered[] =
                       "<starttls xmlns='" NGX_XMPP_TLS_NS "'/>";
    static u_char  starttls_required[] =
                       "<starttls xmlns='" NGX_XMPP_TLS_NS "'>"
                       "<required/></starttls>";
    static u_char  dialback[] =
                       "<dialback xmlns='urn:xmpp:features:dialback'/>";
    static u_char  server_starttls[] =
                       "<stream:features><starttls xmlns='"
                       NGX_XMPP_TLS_NS "'/><dialback"
                       " xmlns='urn:xmpp:features:dialback'/>"
                       "</stream:features>";

    ngx_conf_merge_size_value(conf->client_buffer_size,
                              prev->client_buffer_size,
                              (size_t) ngx_pagesize);

    ngx_conf_merge_bitmask_value(conf->auth_methods,
                                 prev->auth_methods,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_MAIL_AUTH_PLAIN_ENABLED));

    ngx_conf_merge_ptr_value(conf->certificates, prev->certificates, NULL);

    if (conf->lookup_peer == NGX_CONF_UNSET_PTR) {
        conf->lookup_peer = prev->lookup_peer;
        conf->lookup_host = prev->lookup_host;
        conf->lookup_uri = prev->lookup_uri;

        if (conf->lookup_peer == NGX_CONF_UNSET_PTR) {
            conf->lookup_peer = NULL;
        }
    }

    ngx_conf_merge_ptr_value(conf->lookup_domains, prev->lookup_domains,
                             NULL);
    ngx_conf_merge_msec_value(conf->lookup_timeout, prev->lookup_timeout,
                              3000);
    ngx_conf_merge_uint_value(conf->lookup_concurrency,
                              prev->lookup_concurrency, 16);
    ngx_conf_merge_sec_value(conf->cache_time, prev->cache_time, 3600);
    ngx_conf_merge_sec_value(conf->cache_error_time, prev->cache_error_time,
                             10);
    ngx_conf_merge_uint_value(conf->cache_size, prev->cache_size, 1000);
    ngx_conf_merge_uint_value(conf->cache_negative_size,
                              prev->cache_negative_size, 100);

    ngx_conf_merge_value(conf->tls_detect, prev->tls_detect, 0);

#if (NGX_MAIL_SSL)
    if (conf->tls_detect && ngx_mail_xmpp_tls_detect_conf(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
#endif

    if (conf->cache_size == 0
        || conf->cache_negative_size == 0
        || conf->lookup_concurrency == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"xmpp_certificate_cache_size\", "
                           "\"xmpp_certificate_cache_negative_size\" and "
                           "\"xmpp_certificate_lookup_concurrency\" "
                           "must not be 0");
        return NGX_CONF_ERROR;
    }

#if (NGX_MAIL_SSL)
    if (ngx_mail_xmpp_ssl_init(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * TLS to the upstream: the remote server of an outgoing stream ("on"
     * or "off"), or the backend of a client or an incoming server stream
     */

    cscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_core_module);
    out = (cscf->protocol == &ngx_mail_xmpp_server_out_protocol);

    /*
     * the value of the mail block is for backends: an outgoing stream's
     * TLS to the remote is on unless its own server block says "off"
     */

    if (out) {
        if (conf->proxy_ssl == NGX_CONF_UNSET_UINT) {
            conf->proxy_ssl = NGX_XMPP_PROXY_SSL_ON;
        }

    } else {
        ngx_conf_merge_uint_value(conf->proxy_ssl, prev->proxy_ssl,
                                  NGX_XMPP_PROXY_SSL_OFF);
    }
    ngx_conf_merge_value(conf->proxy_ssl_verify, prev->proxy_ssl_verify, 1);
    ngx_conf_merge_uint_value(conf->proxy_ssl_verify_depth,
                              prev->proxy_ssl_verify_depth, 3);
    ngx_conf_merge_str_value(conf->proxy_ssl_trusted_certificate,
                             prev->proxy_ssl_trusted_certificate, "");
    ngx_conf_merge_str_value(conf->proxy_ssl_name, prev->proxy_ssl_name, "");
    ngx_conf_merge_str_value(conf->proxy_ssl_certificate,
                             prev->proxy_ssl_certificate, "");
    ngx_conf_merge_str_value(conf->proxy_ssl_certificate_key,
                             prev->proxy_ssl_certificate_key, "");
    ngx_conf_merge_bitmask_value(conf->proxy_ssl_protocols,
                                 prev->proxy_ssl_protocols,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3));
    ngx_conf_merge_value(conf->proxy_ssl_session_reuse,
                         prev->proxy_ssl_session_reuse, 1);

    if (out && conf->proxy_ssl == NGX_XMPP_PROXY_SSL_STARTTLS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"xmpp_proxy_ssl\" of \"protocol "
                           "xmpp-server-out\" is \"on\" or \"off\"");
        return NGX_CONF_ERROR;
    }

    /* auth_http may ask for TLS to the backend when the default is off */

    if ((out && conf->proxy_ssl)
        || cscf->protocol == &ngx_mail_xmpp_protocol
        || cscf->protocol == &ngx_mail_xmpp_server_protocol)
    {
        if (ngx_mail_xmpp_upstream_ssl_init(cf, conf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }
#endif

    if (conf->client_buffer_size < 512) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"xmpp_client_buffer\" must be at least 512");
        return NGX_CONF_ERROR;
    }

#if !(NGX_MAIL_SSL)
    if (conf->auth_methods & (NGX_MAIL_AUTH_SCRAM_SHA1_ENABLED
                              |NGX_MAIL_AUTH_SCRAM_SHA256_ENABLED))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"xmpp_auth\" SCRAM methods require "
                           "ngx_mail_ssl_module");
        return NGX_CONF_ERROR;
    }
#endif

    /*
     * after TLS, by version: -PLUS mechanisms and channel binding types;
     * before it, or with "starttls off": mechanisms only
     */

    for (i = 0; i < 3; i++) {
        if (ngx_mail_xmpp_mechanisms_conf(cf, conf->auth_methods, i,
                                          &mechanisms[i])
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    ngx_str_null(&none);

    starttls.len = sizeof(starttls_offered) - 1;
    starttls.data = starttls_offered;

    if (ngx_mail_xmpp_features_conf(cf, &conf->features, &none,
                                    &mechanisms[0])
           != NGX_OK
        || ngx_mail_xmpp_features_conf(cf, &conf->tls_features[0], &none,
                                       &mechanisms[1])
           != NGX_OK
        || ngx_mail_xmpp_features_conf(cf, &conf->tls_features[1], &none,
                                       &mechanisms[2])
           != NGX_OK

        /* "starttls on": STARTTLS offered, authentication still allowed */

        || ngx_mail_xmpp_features_conf(cf, &conf->starttls_features,
                                       &starttls, &mechanisms[0])
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* "starttls only": STARTTLS required, no mechanisms before TLS */

    starttls.len = sizeof(starttls_required) - 1;
    starttls.data = starttls_required;

    if (ngx_mail_xmpp_features_conf(cf, &conf->starttls_only_features,
                                    &starttls, &none)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* server-to-server: dialback instead of SASL */

    starttls.len = sizeof(dialback) - 1;
    starttls.data = dialback;

    if (ngx_mail_xmpp_features_conf(cf, &conf->server_features, &none,
                                    &starttls)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    conf->server_starttls_features.len = sizeof(server_starttls) - 1;
    conf->server_starttls_features.data = server_starttls;

    conf->server_starttls_only_features = conf->starttls_only_features;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_mail_xmpp_mechanisms_conf(ngx_conf_t *cf, ngx_uint_t methods,
    ngx_uint_t tls, ngx_str_t *out)
{
    u_char                *p;
    size_t                 len;
    ngx_uint_t             n, scram;
    ngx_mail_xmpp_mech_t  *m;

    static u_char  mechs_start[] = "<mechanisms xmlns='" NGX_XMPP_SASL_NS "'>";
    static u_char  mechs_end[] = "</mechanisms>";
    static u_char  mech_start[] = "<mechanism>";
    static u_char  mech_end[] = "</mechanism>";

    /* XEP-0440: the channel binding types of TLS 1.2 and of TLS 1.3 */

    static ngx_str_t  cb[] = {
        ngx_null_string,
        ngx_string("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                   "<channel-binding type='tls-unique'/>"
                   "<channel-binding type='tls-server-end-point'/>"
                   "</sasl-channel-binding>"),
        ngx_string("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                   "<channel-binding type='tls-exporter'/>"
                   "<channel-binding type='tls-server-end-point'/>"
                   "</sasl-channel-binding>")
    };

    /*
     * the mechanisms of "methods" in the order of preference: with "tls"
     * 0, before TLS, no -PLUS; 1 and 2, on TLS 1.2 and below, on TLS 1.3
     */

    len = sizeof(mechs_start) - 1 + sizeof(mechs_end) - 1;
    n = 0;
    scram = 0;

    for (m = ngx_mail_xmpp_mechanisms; m->name.len; m++) {
        if ((methods & m->enabled) && (tls || !m->plus)) {
            len += sizeof(mech_start) - 1 + m->name.len
                   + sizeof(mech_end) - 1;
            scram |= m->plus;
            n++;
        }
    }

    if (n == 0) {
        ngx_str_null(out);
        return NGX_OK;
    }

    if (scram) {
        len += cb[tls].len;
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = len;

    p = ngx_cpymem(p, mechs_start, sizeof(mechs_start) - 1);

    for (m = ngx_mail_xmpp_mechanisms; m->name.len; m++) {
        if ((methods & m->enabled) && (tls || !m->plus)) {
            p = ngx_cpymem(p, mech_start, sizeof(mech_start) - 1);
            p = ngx_cpymem(p, m->name.data, m->name.len);
            p = ngx_cpymem(p, mech_end, sizeof(mech_end) - 1);
        }
    }

    p = ngx_cpymem(p, mechs_end, sizeof(mechs_end) - 1);

    if (scram) {
        ngx_memcpy(p, cb[tls].data, cb[tls].len);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_mail_xmpp_features_conf(ngx_conf_t *cf, ngx_str_t *out, ngx_str_t *first,
    ngx_str_t *second)
{
    u_char  *p;
    size_t   len;

    static u_char  features_start[] = "<stream:features>";
    static u_char  features_end[] = "</stream:features>";

    len = sizeof(features_start) - 1 + first->len + second->len
          + sizeof(features_end) - 1;

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = len;

    p = ngx_cpymem(p, features_start, sizeof(features_start) - 1);

    if (first->len) {
        p = ngx_cpymem(p, first->data, first->len);
    }

    if (second->len) {
        p = ngx_cpymem(p, second->data, second->len);
    }

    ngx_memcpy(p, features_end, sizeof(features_end) - 1);

    return NGX_OK;
}


#if (NGX_MAIL_SSL)

static ngx_int_t
ngx_mail_xmpp_tls_detect_conf(ngx_conf_t *cf)
{
    ngx_mail_ssl_conf_t       *sslcf;
    ngx_mail_core_srv_conf_t  *cscf;

    cscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_core_module);

    if (cscf->protocol == NULL
        || (cscf->protocol->type != NGX_MAIL_XMPP_PROTOCOL
            && cscf->protocol->type != NGX_MAIL_XMPP_SERVER_PROTOCOL))
    {
        /* the mail level, or IMAP, POP3, SMTP: the server speaks first */

        return NGX_OK;
    }

    if (cscf->protocol == &ngx_mail_xmpp_server_out_protocol) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"xmpp_tls_detect\" is not for "
                           "\"protocol xmpp-server-out\"");
        return NGX_ERROR;
    }

    sslcf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_ssl_module);

    if (sslcf->ssl.ctx == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"xmpp_tls_detect\" requires "
                           "\"ssl_certificate\"");
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif
