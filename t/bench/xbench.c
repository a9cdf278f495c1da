/*
 * xbench: a load generator for nginx-xmpp benchmarks.
 *
 * One process, one thread, non-blocking sockets and epoll; every session
 * is a small state machine.  OpenSSL on the client side, TLS 1.3 only,
 * X25519, ECDSA P-256 signatures, no session tickets or resumption: every
 * TLS handshake is a full one.  TCP_NODELAY on every socket.
 *
 * Modes (-m):
 *   xmpp       stream header, STARTTLS, TLS, restart, SASL PLAIN, <success/>,
 *              restart, bind, </stream:stream>, close
 *   xmpps      the same over direct TLS (no STARTTLS)
 *   xmppplain  the same without TLS at all (direct to a plain backend)
 *   imap       greeting, STARTTLS, TLS, LOGIN, OK, LOGOUT, close
 *   tls        TLS handshake, close_notify, wait for the server to close
 *
 * Load:
 *   -c C       sessions in flight at once (default 1)
 *   -n N       sessions in total, or
 *   -d SECS    start sessions for SECS seconds
 *   -r RATE    start at most RATE sessions per second (open loop, still at
 *              most -c in flight): compares servers at the same load
 *   --idle N   hold N authenticated sessions (ramp with -c logins in
 *              flight), print "READY ..." when all are up, hold them until
 *              SIGUSR1/SIGTERM or --hold SECS, then close them all
 *   --quickack TCP_QUICKACK after every read: ACK at once, so that a
 *              server without TCP_NODELAY does not wait for our delayed ACK
 *   --xput B   after bind, send B bytes of <message/> stanzas, then
 *              </stream:stream>; the time until the backend's
 *              </stream:stream> is the "xput" phase (xmpp modes only)
 *
 * Output: a human summary on stderr and machine lines on stdout:
 *   RESULT key=value ...
 *   PHASE name n=.. p50=.. p90=.. p99=.. max=..   (milliseconds)
 *   ERROR kind count
 *
 * Build: cc -O2 -Wall -o xbench xbench.c -lssl -lcrypto
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>


enum { M_XMPP, M_XMPPS, M_XMPPPLAIN, M_IMAP, M_TLS };

static const char *mode_names[] = { "xmpp", "xmpps", "xmppplain", "imap",
                                    "tls", NULL };

/* steps of a session; each one measured as a phase */
enum {
    S_CONNECT,
    S_GREETING,     /* imap */
    S_STREAM,       /* xmpp: first stream header -> features */
    S_STARTTLS,     /* xmpp <starttls/> -> <proceed/>, imap a1 STARTTLS */
    S_TLS,
    S_STREAM2,      /* restart after TLS -> features with mechanisms */
    S_AUTH,         /* SASL PLAIN -> success; imap LOGIN -> OK */
    S_RESTART,      /* restart after auth -> features with bind */
    S_BIND,
    S_IDLE,         /* authenticated, held */
    S_XPUT,
    S_CLOSE,        /* </stream:stream> / LOGOUT / close_notify -> close */
    S_DONE,
    NSTEPS
};

static const char *step_names[NSTEPS] = {
    "connect", "greeting", "stream", "starttls", "tls", "stream2", "auth",
    "restart", "bind", "idle", "xput", "close", "done"
};

/* extra measured totals */
enum { T_LOGIN = NSTEPS, T_SESSION, NPHASES };

static const char *total_names[] = { "login", "session" };


typedef struct {
    uint32_t  *v;
    size_t     n, cap;
} lat_t;

typedef struct conn_s  conn_t;

struct conn_s {
    int        fd;
    int        step;
    int        events;
    int        idx;
    SSL       *ssl;
    int        tls_on;
    int        established;
    int        dead;
    uint64_t   t_start, t_step, t_deadline;
    char      *in;
    size_t     inlen, incap;
    char      *out;
    size_t     outlen, outoff, outcap;
    uint64_t   xput_left;     /* payload bytes still to write */
    size_t     xput_off;      /* offset in the payload chunk */
    uint64_t   xput_t0;
    conn_t    *next_free;
};

static struct {
    int        mode;
    char      *host;
    int        port;
    int        conc;
    long       total;
    double     duration;
    double     rate;
    long       idle;
    double     hold;
    uint64_t   xput;
    char      *userfmt;
    long       users;
    long       user_offset;
    char      *pass;
    char      *domain;
    double     timeout;
    int        quiet;
    int        quickack;
    long       max_errors;
    char      *label;
} opt;

static SSL_CTX   *ctx;
static int        ep;
static lat_t      lat[NPHASES];
static long       started, finished, failed, established_now;
static long       sessions_ok;
static uint64_t   t_begin, t_end_start, t_last_done;
static uint64_t   xput_bytes, xput_ns;
static volatile sig_atomic_t  got_release, got_stop;
static conn_t   **conns;
static long       nconns, capconns;
static long      *free_slots;
static long       nfree;
static conn_t    *graveyard;
static long       active;
static char       negotiated[256];
static char      *chunk;
static size_t     chunk_len;

#define MAXERR 64
static struct { char kind[64]; long n; } errs[MAXERR];
static int nerrs;


static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + ts.tv_nsec;
}


static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "xbench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}


static void
lat_add(int ph, uint64_t ns)
{
    lat_t *l = &lat[ph];
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->v = realloc(l->v, l->cap * sizeof(uint32_t));
        if (l->v == NULL) {
            die("out of memory");
        }
    }
    l->v[l->n++] = (uint32_t) (ns / 1000);   /* microseconds */
}


static void
err_add(const char *kind)
{
    int i;
    for (i = 0; i < nerrs; i++) {
        if (strcmp(errs[i].kind, kind) == 0) {
            errs[i].n++;
            return;
        }
    }
    if (nerrs < MAXERR) {
        snprintf(errs[nerrs].kind, sizeof(errs[0].kind), "%s", kind);
        errs[nerrs++].n = 1;
    }
}


/* ------------------------------------------------------------------ */

static void
set_events(conn_t *c, int ev)
{
    struct epoll_event e;

    if (c->dead || c->events == ev) {
        return;
    }
    e.events = ev;
    e.data.ptr = c;
    if (epoll_ctl(ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e)
        == -1)
    {
        die("epoll_ctl: %s", strerror(errno));
    }
    c->events = ev;
}


/* closes the connection; the memory is freed after the event batch */
static void
conn_free(conn_t *c)
{
    if (c->dead) {
        return;
    }
    c->dead = 1;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);     /* also removes it from the epoll set */
        c->fd = -1;
    }
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->inlen = c->outlen = 0;
    conns[c->idx] = NULL;
    free_slots[nfree++] = c->idx;
    c->next_free = graveyard;
    graveyard = c;
    active--;
}


static void
bury(void)
{
    conn_t *c;

    while (graveyard) {
        c = graveyard;
        graveyard = c->next_free;
        free(c);
    }
}


static void
conn_fail(conn_t *c, const char *kind)
{
    char buf[96];

    if (c->dead) {
        return;
    }
    snprintf(buf, sizeof(buf), "%s_in_%s", kind, step_names[c->step]);
    err_add(buf);
    failed++;
    finished++;
    if (c->established) {
        established_now--;
    }
    if (!opt.quiet && failed <= 5) {
        unsigned long e = ERR_peek_error();
        fprintf(stderr, "xbench: session failed: %s%s%s (in: %.*s)\n", buf,
                e ? ", " : "", e ? ERR_error_string(e, NULL) : "",
                (int) (c->inlen > 200 ? 200 : c->inlen), c->in ? c->in : "");
    }
    ERR_clear_error();
    t_last_done = now_ns();
    conn_free(c);
}


/* appends to the output buffer */
static void
out_add(conn_t *c, const char *data, size_t len)
{
    if (c->outlen + len > c->outcap) {
        c->outcap = (c->outlen + len) * 2 + 256;
        c->out = realloc(c->out, c->outcap);
        if (c->out == NULL) {
            die("out of memory");
        }
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
}


/* 1: all written, 0: would block, -1: error */
static int
io_write(conn_t *c, const char *p, size_t len, size_t *written)
{
    int n, e;

    *written = 0;

    if (c->tls_on) {
        n = SSL_write(c->ssl, p, (int) len);
        if (n > 0) {
            *written = n;
            return 1;
        }
        e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE) {
            set_events(c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ) {
            set_events(c, EPOLLIN);
            return 0;
        }
        return -1;
    }

    n = send(c->fd, p, len, MSG_NOSIGNAL);
    if (n >= 0) {
        *written = n;
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_events(c, EPOLLIN | EPOLLOUT);
        return 0;
    }
    return -1;
}


/* 0 ok (maybe pending), -1 error */
static int
flush(conn_t *c)
{
    size_t  w;
    int     rc;

    while (c->outoff < c->outlen) {
        rc = io_write(c, c->out + c->outoff, c->outlen - c->outoff, &w);
        if (rc < 0) {
            return -1;
        }
        if (rc == 0) {
            return 0;
        }
        c->outoff += w;
    }
    c->outoff = c->outlen = 0;

    while (c->xput_left) {
        size_t len = chunk_len - c->xput_off;
        if (len > c->xput_left) {
            len = c->xput_left;
        }
        rc = io_write(c, chunk + c->xput_off, len, &w);
        if (rc < 0) {
            return -1;
        }
        if (rc == 0) {
            return 0;
        }
        c->xput_off = (c->xput_off + w) % chunk_len;
        c->xput_left -= w;
        if (c->xput_left == 0) {
            static const char end[] = "</stream:stream>";
            out_add(c, end, sizeof(end) - 1);
            return flush(c);
        }
    }

    set_events(c, EPOLLIN);
    return 0;
}


static int
send_str(conn_t *c, const char *s)
{
    out_add(c, s, strlen(s));
    return flush(c);
}


/* ------------------------------------------------------------------ */

static void step_to(conn_t *c, int step);


static void
stream_header(conn_t *c)
{
    char buf[512];

    snprintf(buf, sizeof(buf),
             "<?xml version='1.0'?><stream:stream to='%s' version='1.0'"
             " xmlns='jabber:client'"
             " xmlns:stream='http://etherx.jabber.org/streams'>",
             opt.domain);
    if (send_str(c, buf) != 0) {
        conn_fail(c, "write");
    }
}


static void
user_name(conn_t *c, char *buf, size_t size)
{
    long i = opt.user_offset + (opt.users > 0 ? c->idx % opt.users : 0);
    snprintf(buf, size, opt.userfmt, i);
}


static void
send_auth(conn_t *c)
{
    char    user[256], raw[600], b64[900], buf[1200];
    size_t  ul, pl;
    int     n;

    user_name(c, user, sizeof(user));

    if (opt.mode == M_IMAP) {
        snprintf(buf, sizeof(buf), "a2 LOGIN %s %s\r\n", user, opt.pass);

    } else {
        ul = strlen(user);
        pl = strlen(opt.pass);
        raw[0] = '\0';
        memcpy(raw + 1, user, ul);
        raw[1 + ul] = '\0';
        memcpy(raw + 2 + ul, opt.pass, pl);
        n = EVP_EncodeBlock((unsigned char *) b64, (unsigned char *) raw,
                            (int) (2 + ul + pl));
        b64[n] = '\0';
        snprintf(buf, sizeof(buf),
                 "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
                 " mechanism='PLAIN'>%s</auth>", b64);
    }

    if (send_str(c, buf) != 0) {
        conn_fail(c, "write");
    }
}


static void
tls_start(conn_t *c)
{
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL) {
        die("SSL_new failed");
    }
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, opt.domain);
    SSL_set_connect_state(c->ssl);
    c->tls_on = 1;
}


/*
 * Enters a step and does its send.  The step left is recorded as a phase
 * unless c->t_step is 0.  The connection may be dead afterwards.
 */
static void
step_to(conn_t *c, int step)
{
    uint64_t  t = now_ns();
    int       rc;

    if (c->dead) {
        return;
    }

    if (c->t_step) {
        lat_add(c->step, t - c->t_step);
    }

    c->step = step;
    c->t_step = t;
    c->t_deadline = t + (uint64_t) (opt.timeout * 1e9);
    c->inlen = 0;
    if (c->in) {
        c->in[0] = '\0';
    }

    switch (step) {

    case S_STREAM:
    case S_STREAM2:
    case S_RESTART:
        stream_header(c);
        return;

    case S_STARTTLS:
        if (send_str(c, opt.mode == M_IMAP ? "a1 STARTTLS\r\n"
                     : "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            != 0)
        {
            conn_fail(c, "write");
        }
        return;

    case S_TLS:
        tls_start(c);
        set_events(c, EPOLLIN | EPOLLOUT);
        return;

    case S_AUTH:
        send_auth(c);
        return;

    case S_BIND:
        if (send_str(c, "<iq type='set' id='b1'><bind"
                        " xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
            != 0)
        {
            conn_fail(c, "write");
        }
        return;

    case S_IDLE:
        c->t_deadline = 0;
        return;

    case S_XPUT:
        c->xput_left = ((opt.xput + chunk_len - 1) / chunk_len) * chunk_len;
        c->xput_off = 0;
        c->xput_t0 = t;
        xput_bytes += c->xput_left;
        if (flush(c) != 0) {
            conn_fail(c, "write");
        }
        return;

    case S_CLOSE:
        if (opt.mode == M_TLS) {
            rc = SSL_shutdown(c->ssl);
            if (rc < 0 && SSL_get_error(c->ssl, rc) == SSL_ERROR_WANT_WRITE) {
                set_events(c, EPOLLIN | EPOLLOUT);
            } else {
                set_events(c, EPOLLIN);
            }
            ERR_clear_error();
            return;
        }
        if (send_str(c, opt.mode == M_IMAP ? "a3 LOGOUT\r\n"
                                           : "</stream:stream>") != 0)
        {
            conn_fail(c, "write");
        }
        return;

    case S_DONE:
        lat_add(T_SESSION, t - c->t_start);
        sessions_ok++;
        finished++;
        t_last_done = t;
        conn_free(c);
        return;
    }
}


/* the login is complete */
static void
logged_in(conn_t *c)
{
    uint64_t t = now_ns();

    lat_add(c->step, t - c->t_step);
    lat_add(T_LOGIN, t - c->t_start);
    c->t_step = 0;      /* the next step_to() records nothing */

    if (opt.idle) {
        c->established = 1;
        established_now++;
        step_to(c, S_IDLE);
        return;
    }

    step_to(c, opt.xput ? S_XPUT : S_CLOSE);
}


/* ------------------------------------------------------------------ */

/* XMPP: an element (or the stream header) is complete in the buffer? */

static int
has_stream_error(conn_t *c)
{
    return strstr(c->in, "<stream:error") != NULL;
}


static const char *
find_end(const char *p, const char *tag)
{
    /* p points at "<tag"; returns the end of the element or NULL */
    const char *gt, *close;
    char buf[64];

    gt = strchr(p, '>');
    if (gt == NULL) {
        return NULL;
    }
    if (gt[-1] == '/') {
        return gt + 1;
    }
    snprintf(buf, sizeof(buf), "</%s>", tag);
    close = strstr(gt, buf);
    return close ? close + strlen(buf) : NULL;
}


/* returns 1 when the step's expectation is met (and handles it),
 * 0 when more data is needed; fails the connection on a bad reply */
static int
xmpp_check(conn_t *c)
{
    const char *p;

    switch (c->step) {

    case S_STREAM:
    case S_STREAM2:
    case S_RESTART:
        if (strstr(c->in, "</stream:features>") == NULL
            && strstr(c->in, "<stream:features/>") == NULL)
        {
            if (has_stream_error(c) || strstr(c->in, "</stream:stream>")) {
                conn_fail(c, "stream_error");
                return -1;
            }
            return 0;
        }
        if (c->step == S_STREAM && opt.mode == M_XMPP) {
            if (strstr(c->in, "<starttls") == NULL) {
                conn_fail(c, "no_starttls");
                return -1;
            }
            step_to(c, S_STARTTLS);
            return 1;
        }
        if (c->step == S_RESTART) {
            if (strstr(c->in, "<bind") == NULL) {
                conn_fail(c, "no_bind");
                return -1;
            }
            step_to(c, S_BIND);
            return 1;
        }
        if (strstr(c->in, "PLAIN") == NULL) {
            conn_fail(c, "no_plain");
            return -1;
        }
        step_to(c, S_AUTH);
        return 1;

    case S_STARTTLS:
        p = strstr(c->in, "<proceed");
        if (p == NULL) {
            if (strstr(c->in, "<failure") || has_stream_error(c)) {
                conn_fail(c, "starttls_refused");
                return -1;
            }
            return 0;
        }
        p = find_end(p, "proceed");
        if (p == NULL) {
            return 0;
        }
        if (*p != '\0') {
            conn_fail(c, "data_after_proceed");
            return -1;
        }
        step_to(c, S_TLS);
        return 1;

    case S_AUTH:
        p = strstr(c->in, "<success");
        if (p == NULL) {
            if ((p = strstr(c->in, "<failure")) && find_end(p, "failure")) {
                conn_fail(c, "auth_failure");
                return -1;
            }
            if (has_stream_error(c)) {
                conn_fail(c, "stream_error");
                return -1;
            }
            return 0;
        }
        if (find_end(p, "success") == NULL) {
            return 0;
        }
        step_to(c, S_RESTART);
        return 1;

    case S_BIND:
        p = strstr(c->in, "<iq");
        if (p == NULL || find_end(p, "iq") == NULL) {
            if (has_stream_error(c)) {
                conn_fail(c, "stream_error");
                return -1;
            }
            return 0;
        }
        if (strstr(p, "type='result'") == NULL
            && strstr(p, "type=\"result\"") == NULL)
        {
            conn_fail(c, "bind_error");
            return -1;
        }
        logged_in(c);
        return 1;

    case S_IDLE:
        if (has_stream_error(c) || strstr(c->in, "</stream:stream>")) {
            conn_fail(c, "closed");
            return -1;
        }
        c->inlen = 0;    /* ignore anything else (pings...) */
        return 0;

    case S_XPUT:
        if (strstr(c->in, "</stream:stream>")) {
            xput_ns += now_ns() - c->xput_t0;
            step_to(c, S_DONE);
            return -1;
        }
        if (c->inlen > 4096) {
            memmove(c->in, c->in + c->inlen - 32, 32);
            c->inlen = 32;
            c->in[32] = '\0';
        }
        return 0;

    case S_CLOSE:
        if (strstr(c->in, "</stream:stream>")) {
            step_to(c, S_DONE);
            return -1;
        }
        return 0;
    }

    return 0;
}


/* IMAP: complete lines */
static int
imap_check(conn_t *c)
{
    char *line, *eol;

    for ( ;; ) {
        line = c->in;
        eol = strstr(line, "\r\n");
        if (eol == NULL) {
            return 0;
        }
        *eol = '\0';

        switch (c->step) {

        case S_GREETING:
            if (strncmp(line, "* OK", 4) != 0) {
                conn_fail(c, "bad_greeting");
                return -1;
            }
            step_to(c, S_STARTTLS);
            return 1;

        case S_STARTTLS:
            if (line[0] == '*') {
                break;
            }
            if (strncmp(line, "a1 OK", 5) != 0) {
                conn_fail(c, "starttls_refused");
                return -1;
            }
            if (eol + 2 != c->in + c->inlen) {
                conn_fail(c, "data_after_proceed");
                return -1;
            }
            step_to(c, S_TLS);
            return 1;

        case S_AUTH:
            if (line[0] == '*') {
                break;
            }
            if (strncmp(line, "a2 OK", 5) != 0) {
                conn_fail(c, "auth_failure");
                return -1;
            }
            logged_in(c);
            return 1;

        case S_IDLE:
            if (strncmp(line, "* BYE", 5) == 0) {
                conn_fail(c, "closed");
                return -1;
            }
            break;

        case S_CLOSE:
            if (strncmp(line, "a3 ", 3) == 0) {
                step_to(c, S_DONE);
                return -1;
            }
            break;

        default:
            conn_fail(c, "unexpected_data");
            return -1;
        }

        /* drop the line */
        eol += 2;
        c->inlen -= eol - c->in;
        memmove(c->in, eol, c->inlen + 1);
    }
}


static void
after_tls(conn_t *c)
{
    const SSL_CIPHER *ci;

    if (negotiated[0] == '\0') {
        char  group[64] = "?";
        int   nid;
        X509 *x;
        EVP_PKEY *k;
        const char *kt = "?";

        nid = SSL_get_negotiated_group(c->ssl);
        if (nid) {
            const char *sn = OBJ_nid2sn(nid & ~TLSEXT_nid_unknown);
            snprintf(group, sizeof(group), "%s", sn ? sn : "?");
        }
        x = SSL_get1_peer_certificate(c->ssl);
        if (x) {
            k = X509_get0_pubkey(x);
            if (k && EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
                kt = "ECDSA";
            } else if (k && EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
                kt = "RSA";
            }
            snprintf(negotiated, sizeof(negotiated), "%s/%s/%s/%s-%d%s",
                     SSL_get_version(c->ssl),
                     (ci = SSL_get_current_cipher(c->ssl))
                         ? SSL_CIPHER_get_name(ci) : "?",
                     group, kt, k ? EVP_PKEY_get_bits(k) : 0,
                     SSL_session_reused(c->ssl) ? "/resumed" : "/full");
            X509_free(x);
        }
    }

    switch (opt.mode) {
    case M_XMPP:
        step_to(c, S_STREAM2);
        break;
    case M_XMPPS:
        step_to(c, S_STREAM);
        break;
    case M_IMAP:
        step_to(c, S_AUTH);
        break;
    case M_TLS:
        logged_in(c);
        break;
    }
}


static void
do_handshake(conn_t *c)
{
    int rc, e;

    rc = SSL_do_handshake(c->ssl);

    if (opt.quickack) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }

    if (rc == 1) {
        after_tls(c);
        return;
    }
    e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        set_events(c, EPOLLIN);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_events(c, EPOLLIN | EPOLLOUT);
        return;
    }
    conn_fail(c, e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN
                 ? "tls_eof" : "tls_error");
}


static void do_read_(conn_t *c);


static void
do_read(conn_t *c)
{
    int one = 1;

    do_read_(c);

    /* an ACK for what was just read, now rather than in 40 ms */
    if (opt.quickack && !c->dead) {
        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }
}


static void
do_read_(conn_t *c)
{
    int   n, e, rc;

    for ( ;; ) {
        if (c->incap - c->inlen < 4097) {
            c->incap = c->incap ? c->incap * 2 : 8192;
            if (c->incap > (1 << 20)) {
                conn_fail(c, "reply_too_long");
                return;
            }
            c->in = realloc(c->in, c->incap);
            if (c->in == NULL) {
                die("out of memory");
            }
        }

        if (c->tls_on) {
            n = SSL_read(c->ssl, c->in + c->inlen,
                         (int) (c->incap - c->inlen - 1));
            if (n <= 0) {
                e = SSL_get_error(c->ssl, n);
                if (e == SSL_ERROR_WANT_READ) {
                    return;
                }
                if (e == SSL_ERROR_WANT_WRITE) {
                    set_events(c, EPOLLIN | EPOLLOUT);
                    return;
                }
                goto eof;
            }

        } else {
            n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen - 1, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return;
                }
                goto eof;
            }
            if (n == 0) {
                goto eof;
            }
        }

        c->inlen += n;
        c->in[c->inlen] = '\0';

        do {
            rc = (opt.mode == M_IMAP) ? imap_check(c) : xmpp_check(c);
            if (rc < 0 || c->dead) {
                return;     /* connection done or failed */
            }
            if (rc > 0 && c->step == S_TLS) {
                /* the handshake starts on the next event */
                do_handshake(c);
                return;
            }
        } while (rc > 0 && c->inlen);
    }

eof:

    ERR_clear_error();

    if (c->step == S_CLOSE) {
        /* the server closed the connection after our close */
        step_to(c, S_DONE);
        return;
    }
    conn_fail(c, "eof");
}


static void
do_connected(conn_t *c)
{
    int        err = 0;
    socklen_t  len = sizeof(err);

    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        char buf[64];
        snprintf(buf, sizeof(buf), "connect_%s",
                 err == ECONNREFUSED ? "refused"
                 : err == ETIMEDOUT ? "timeout"
                 : err == EADDRNOTAVAIL ? "eaddrnotavail" : "error");
        conn_fail(c, buf);
        return;
    }

    switch (opt.mode) {
    case M_XMPP:
    case M_XMPPPLAIN:
        step_to(c, S_STREAM);
        break;
    case M_XMPPS:
    case M_TLS:
        step_to(c, S_TLS);
        do_handshake(c);
        break;
    case M_IMAP:
        step_to(c, S_GREETING);
        set_events(c, EPOLLIN);
        break;
    }
}


static void
handle(conn_t *c, uint32_t ev)
{
    if (c->dead) {
        return;
    }

    if (c->step == S_CONNECT) {
        do_connected(c);
        return;
    }

    if (c->step == S_TLS) {
        do_handshake(c);
        return;
    }

    if ((ev & EPOLLOUT) && (c->outlen || c->xput_left)) {
        if (flush(c) != 0) {
            conn_fail(c, "write");
            return;
        }
    }

    if (c->step == S_CLOSE && opt.mode == M_TLS && (ev & EPOLLOUT)) {
        SSL_shutdown(c->ssl);
        ERR_clear_error();
        set_events(c, EPOLLIN);
    }

    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        do_read(c);
    }
}


static int
start_session(void)
{
    struct sockaddr_in  sin;
    conn_t             *c;
    int                 fd, one = 1, i;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        if (errno == EMFILE || errno == ENFILE) {
            err_add("socket_emfile");
        } else {
            err_add("socket_error");
        }
        started++;
        finished++;
        failed++;
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (opt.quickack) {
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }

    c = calloc(1, sizeof(conn_t));
    if (c == NULL) {
        die("out of memory");
    }
    c->fd = fd;
    c->step = S_CONNECT;
    c->t_start = now_ns();
    c->t_step = c->t_start;
    c->t_deadline = c->t_start + (uint64_t) (opt.timeout * 1e9);

    /* a free slot; the slot number also chooses the user */
    if (nfree) {
        i = (int) free_slots[--nfree];
    } else {
        if (nconns == capconns) {
            capconns = capconns ? capconns * 2 : 256;
            conns = realloc(conns, capconns * sizeof(conn_t *));
            free_slots = realloc(free_slots, capconns * sizeof(long));
            if (conns == NULL || free_slots == NULL) {
                die("out of memory");
            }
        }
        i = (int) nconns++;
    }
    conns[i] = c;
    c->idx = i;
    active++;
    started++;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(opt.port);
    inet_pton(AF_INET, opt.host, &sin.sin_addr);

    if (connect(fd, (struct sockaddr *) &sin, sizeof(sin)) == -1
        && errno != EINPROGRESS)
    {
        conn_fail(c, errno == EADDRNOTAVAIL ? "connect_eaddrnotavail"
                     : errno == ECONNREFUSED ? "connect_refused"
                     : "connect_error");
        return -1;
    }

    set_events(c, EPOLLOUT);
    return 0;
}


static void
check_timeouts(void)
{
    uint64_t t = now_ns();
    long     i;

    for (i = 0; i < nconns; i++) {
        conn_t *c = conns[i];
        if (c && c->t_deadline && t > c->t_deadline) {
            conn_fail(c, "timeout");
        }
    }
}


/* ------------------------------------------------------------------ */

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}


static double
pct(lat_t *l, double p)
{
    size_t i;

    if (l->n == 0) {
        return 0;
    }
    i = (size_t) (p / 100.0 * l->n + 0.999999);
    if (i < 1) {
        i = 1;
    }
    if (i > l->n) {
        i = l->n;
    }
    return l->v[i - 1] / 1000.0;
}


static void
report(void)
{
    double  wall, rate;
    int     i;
    long    errors = 0;

    for (i = 0; i < nerrs; i++) {
        errors += errs[i].n;
    }

    if (t_last_done <= t_begin) {
        t_last_done = now_ns();
    }
    wall = (t_last_done - t_begin) / 1e9;
    rate = wall > 0 ? sessions_ok / wall : 0;

    for (i = 0; i < NPHASES; i++) {
        if (lat[i].n) {
            qsort(lat[i].v, lat[i].n, sizeof(uint32_t), cmp_u32);
        }
    }
    printf("RESULT label=%s mode=%s c=%d started=%ld ok=%ld errors=%ld"
           " wall=%.3f rate=%.1f login_p50=%.3f login_p90=%.3f"
           " login_p99=%.3f login_max=%.3f logins=%ld tls=%s",
           opt.label ? opt.label : "-", mode_names[opt.mode], opt.conc,
           started, sessions_ok, errors, wall, rate,
           pct(&lat[T_LOGIN], 50), pct(&lat[T_LOGIN], 90),
           pct(&lat[T_LOGIN], 99), pct(&lat[T_LOGIN], 100),
           lat[T_LOGIN].n, negotiated[0] ? negotiated : "-");
    if (xput_ns) {
        printf(" xput_bytes=%llu xput_s=%.3f xput_mbps=%.1f",
               (unsigned long long) xput_bytes, xput_ns / 1e9,
               xput_bytes / 1e6 / (xput_ns / 1e9));
    }
    printf("\n");

    for (i = 0; i < NPHASES; i++) {
        const char *name = i < NSTEPS ? step_names[i]
                                      : total_names[i - NSTEPS];
        if (lat[i].n == 0) {
            continue;
        }
        printf("PHASE %s n=%zu p50=%.3f p90=%.3f p99=%.3f max=%.3f\n", name,
               lat[i].n, pct(&lat[i], 50), pct(&lat[i], 90), pct(&lat[i], 99),
               pct(&lat[i], 100));
    }
    for (i = 0; i < nerrs; i++) {
        printf("ERROR %s %ld\n", errs[i].kind, errs[i].n);
    }
    fflush(stdout);

    if (!opt.quiet) {
        fprintf(stderr, "%s c=%d: %ld sessions ok, %ld errors in %.2fs:"
                " %.1f sessions/s; login ms p50 %.2f p90 %.2f p99 %.2f"
                " max %.2f\n",
                mode_names[opt.mode], opt.conc, sessions_ok, errors, wall,
                rate, pct(&lat[T_LOGIN], 50), pct(&lat[T_LOGIN], 90),
                pct(&lat[T_LOGIN], 99), pct(&lat[T_LOGIN], 100));
    }
}


static void
on_signal(int sig)
{
    if (sig == SIGUSR1) {
        got_release = 1;
    } else {
        got_stop = 1;
    }
}


static void
usage(void)
{
    fprintf(stderr,
        "usage: xbench -m xmpp|xmpps|xmppplain|imap|tls -p PORT [-H HOST]\n"
        "   [-c CONC] [-n SESSIONS | -d SECONDS] [-r RATE] [--idle N [--hold S]]\n"
        "   [--xput BYTES] [--quickack] [-u USERFMT] [-U NUSERS] [--user-offset K]\n"
        "   [-w PASS] [-D DOMAIN] [-t TIMEOUT] [-e MAXERRORS] [-l LABEL] [-q]\n");
    exit(2);
}


static void
make_chunk(void)
{
    /* about 64 KB of ~1 KB message stanzas */
    static const char body[] =
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do "
        "eiusmod tempor incididunt ut labore et dolore magna aliqua. ";
    char    stanza[2048];
    size_t  sl = 0;
    int     i;

    sl = snprintf(stanza, sizeof(stanza),
                  "<message to='sink@%s' type='chat'><body>", opt.domain);
    for (i = 0; i < 7; i++) {
        memcpy(stanza + sl, body, sizeof(body) - 1);
        sl += sizeof(body) - 1;
    }
    sl += snprintf(stanza + sl, sizeof(stanza) - sl, "</body></message>");

    chunk_len = (65536 / sl) * sl;
    chunk = malloc(chunk_len);
    for (i = 0; (size_t) i < chunk_len / sl; i++) {
        memcpy(chunk + i * sl, stanza, sl);
    }
}


int
main(int argc, char **argv)
{
    static struct option lopts[] = {
        { "idle", required_argument, NULL, 'I' },
        { "hold", required_argument, NULL, 'h' },
        { "xput", required_argument, NULL, 'X' },
        { "user-offset", required_argument, NULL, 'O' },
        { "quickack", no_argument, NULL, 'Q' },
        { NULL, 0, NULL, 0 }
    };
    struct epoll_event  evs[512];
    struct sigaction    sa;
    struct rlimit       rl;
    uint64_t            t, hold_end = 0;
    int                 ch, i, n, ready = 0;

    opt.host = "127.0.0.1";
    opt.conc = 1;
    opt.userfmt = "user%ld";
    opt.users = 0;
    opt.pass = "secret";
    opt.domain = "example.com";
    opt.timeout = 30;
    opt.max_errors = 1000;
    opt.mode = -1;

    while ((ch = getopt_long(argc, argv, "m:H:p:c:n:d:r:u:U:w:D:t:e:l:q", lopts,
                             NULL)) != -1)
    {
        switch (ch) {
        case 'm':
            for (i = 0; mode_names[i]; i++) {
                if (strcmp(optarg, mode_names[i]) == 0) {
                    opt.mode = i;
                }
            }
            break;
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conc = atoi(optarg); break;
        case 'n': opt.total = atol(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 'u': opt.userfmt = optarg; break;
        case 'U': opt.users = atol(optarg); break;
        case 'O': opt.user_offset = atol(optarg); break;
        case 'w': opt.pass = optarg; break;
        case 'D': opt.domain = optarg; break;
        case 't': opt.timeout = atof(optarg); break;
        case 'e': opt.max_errors = atol(optarg); break;
        case 'l': opt.label = optarg; break;
        case 'q': opt.quiet = 1; break;
        case 'I': opt.idle = atol(optarg); break;
        case 'h': opt.hold = atof(optarg); break;
        case 'X': opt.xput = strtoull(optarg, NULL, 10); break;
        case 'Q': opt.quickack = 1; break;
        default: usage();
        }
    }

    if (opt.mode < 0 || opt.port <= 0 || opt.conc < 1) {
        usage();
    }
    if (opt.idle) {
        opt.total = opt.idle;
        opt.duration = 0;
    }
    if (opt.total <= 0 && opt.duration <= 0) {
        opt.total = opt.conc;
    }
    if (opt.xput && (opt.mode == M_IMAP || opt.mode == M_TLS)) {
        die("--xput needs an xmpp mode");
    }
    if (opt.xput) {
        make_chunk();
    }

    /* file descriptors: raise the soft limit to the hard one */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        die("SSL_CTX_new failed");
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    if (!SSL_CTX_set1_groups_list(ctx, "X25519")
        || !SSL_CTX_set1_sigalgs_list(ctx, "ECDSA+SHA256")
        || !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256"))
    {
        die("TLS settings refused");
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                          | SSL_MODE_RELEASE_BUFFERS);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1) {
        die("epoll_create1: %s", strerror(errno));
    }

    t_begin = now_ns();
    t_end_start = opt.duration > 0
                  ? t_begin + (uint64_t) (opt.duration * 1e9) : 0;

    for ( ;; ) {
        t = now_ns();

        /* start new sessions */
        if (!got_stop) {
            for ( ;; ) {
                long inflight = active - (opt.idle ? established_now : 0);
                if (inflight >= opt.conc) {
                    break;
                }
                if (opt.total > 0 && started >= opt.total) {
                    break;
                }
                if (opt.total <= 0 && t >= t_end_start) {
                    break;
                }
                if (failed >= opt.max_errors) {
                    break;
                }
                if (opt.rate > 0
                    && t < t_begin + (uint64_t) (started / opt.rate * 1e9))
                {
                    break;
                }
                start_session();
            }
        }

        if (opt.idle && !ready && finished + established_now >= opt.total
            && active == established_now)
        {
            ready = 1;
            printf("READY established=%ld errors=%ld t=%.3f\n",
                   established_now, failed, (now_ns() - t_begin) / 1e9);
            fflush(stdout);
            hold_end = opt.hold > 0 ? now_ns() + (uint64_t) (opt.hold * 1e9)
                                    : 0;
        }

        if (opt.idle
            && ((ready && (got_release || (hold_end && now_ns() >= hold_end)))
                || got_stop))
        {
            /* release the idle sessions: close them properly */
            long j;
            opt.idle = 0;
            for (j = 0; j < nconns; j++) {
                conn_t *c = conns[j];
                if (c == NULL || c->step != S_IDLE) {
                    continue;
                }
                c->established = 0;
                established_now--;
                c->t_step = 0;
                step_to(c, S_CLOSE);
            }
            bury();
        }

        if (active == 0 && !(opt.idle && !ready)) {
            if (got_stop || failed >= opt.max_errors) {
                break;
            }
            if (opt.total > 0 && started >= opt.total) {
                break;
            }
            if (opt.total <= 0 && now_ns() >= t_end_start) {
                break;
            }
        }
        if (got_stop && active == 0) {
            break;
        }

        {
            int timeout = 50;

            if (opt.rate > 0) {
                uint64_t next = t_begin + (uint64_t) (started / opt.rate * 1e9);
                t = now_ns();
                timeout = next > t ? (int) ((next - t) / 1000000) : 0;
                if (timeout > 50) {
                    timeout = 50;
                }
            }

            n = epoll_wait(ep, evs, 512, timeout);
        }
        if (n == -1 && errno != EINTR) {
            die("epoll_wait: %s", strerror(errno));
        }
        for (i = 0; i < n; i++) {
            handle(evs[i].data.ptr, evs[i].events);
        }
        bury();

        {
            static uint64_t last;
            t = now_ns();
            if (t - last > 100000000ull) {
                last = t;
                check_timeouts();
                bury();
            }
        }
    }

    report();
    return 0;
}
