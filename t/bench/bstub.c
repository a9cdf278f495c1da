/*
 * bstub: minimal backends for the nginx-xmpp benchmark.  One process, one
 * thread, epoll, plain TCP, TCP_NODELAY.
 *
 *   bstub [--imap PORT] [--xmpp PORT] [-H ADDR]
 *
 * IMAP: "* OK" greeting; LOGIN (with or without {N} literals, as nginx
 * sends it) -> "TAG OK"; LOGOUT -> "* BYE", "TAG OK", close; CAPABILITY,
 * NOOP -> OK; anything else -> BAD.  No password is checked.
 *
 * XMPP (a sink): stream header -> header + features (SASL PLAIN);
 * <auth/> -> <success/>; restart -> header + features (bind); bind ->
 * result; then everything is read and thrown away until
 * "</stream:stream>", answered with "</stream:stream>" and a close.
 * No password is checked.
 *
 * Prints "READY" on stdout when listening.  Stops on SIGTERM/SIGINT.
 *
 * Build: cc -O2 -Wall -o bstub bstub.c
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>


enum { L_IMAP = 1, L_XMPP };

enum { X_HEADER, X_AUTH, X_HEADER2, X_BIND, X_SINK };

typedef struct {
    int      fd;
    int      kind;          /* L_IMAP, L_XMPP, or listener (negative) */
    int      state;
    int      closing;       /* close after the output is written */
    char    *in;
    size_t   inlen, incap;
    size_t   literal;       /* imap: bytes of a literal still expected */
    char    *out;
    size_t   outlen, outoff, outcap;
    int      wantout;
    char     tail[32];      /* sink: the last bytes seen */
    size_t   taillen;
} conn_t;


static int                    ep;
static volatile sig_atomic_t  stop;


static void
on_signal(int sig)
{
    stop = 1;
}


static void
conn_close(conn_t *c)
{
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}


static void
set_out(conn_t *c, int on)
{
    struct epoll_event e;

    if (c->wantout == on) {
        return;
    }
    c->wantout = on;
    e.events = EPOLLIN | (on ? EPOLLOUT : 0);
    e.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}


/* -1: connection closed */
static int
flush(conn_t *c)
{
    ssize_t n;

    while (c->outoff < c->outlen) {
        n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
                 MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out(c, 1);
                return 0;
            }
            conn_close(c);
            return -1;
        }
        c->outoff += n;
    }
    c->outoff = c->outlen = 0;
    set_out(c, 0);
    if (c->closing) {
        conn_close(c);
        return -1;
    }
    return 0;
}


static void
out(conn_t *c, const char *s, size_t len)
{
    if (c->outlen + len > c->outcap) {
        c->outcap = (c->outlen + len) * 2 + 256;
        c->out = realloc(c->out, c->outcap);
        if (c->out == NULL) {
            abort();
        }
    }
    memcpy(c->out + c->outlen, s, len);
    c->outlen += len;
}


static void
outs(conn_t *c, const char *s)
{
    out(c, s, strlen(s));
}


/* ------------------------------------------------------------------ */

/* handles complete IMAP lines; returns bytes consumed */
static size_t
imap_input(conn_t *c)
{
    char    *p = c->in, *end = c->in + c->inlen, *eol, *sp, *cmd;
    char     tag[32], buf[256];
    size_t   len;

    for ( ;; ) {
        if (c->literal) {
            len = (size_t) (end - p) < c->literal ? (size_t) (end - p)
                                                  : c->literal;
            p += len;
            c->literal -= len;
            if (c->literal) {
                break;
            }
            /* the rest of the command line follows */
            continue;
        }

        eol = memmem(p, end - p, "\r\n", 2);
        if (eol == NULL) {
            break;
        }

        /* a literal announced at the end of the line: {N} */
        if (eol > p && eol[-1] == '}') {
            char *lb = eol - 1;
            while (lb > p && *lb != '{') {
                lb--;
            }
            if (*lb == '{') {
                c->literal = strtoul(lb + 1, NULL, 10);
                if (c->state == 0) {
                    /* the command's tag and name are on this first line */
                    c->state = 1;
                    sp = memchr(p, ' ', eol - p);
                    len = sp ? (size_t) (sp - p) : 0;
                    if (len >= sizeof(tag)) {
                        len = sizeof(tag) - 1;
                    }
                    memcpy(tag, p, len);
                    tag[len] = '\0';
                    snprintf(c->tail, sizeof(c->tail), "%s", tag);
                }
                outs(c, "+ go ahead\r\n");
                p = eol + 2;
                continue;
            }
        }

        if (c->state == 1) {
            /* the last line of a command with literals: only LOGIN is
             * sent so */
            c->state = 0;
            snprintf(buf, sizeof(buf), "%s OK LOGIN completed\r\n", c->tail);
            outs(c, buf);
            p = eol + 2;
            continue;
        }

        *eol = '\0';
        sp = strchr(p, ' ');
        if (sp == NULL) {
            outs(c, "* BAD no tag\r\n");
            p = eol + 2;
            continue;
        }
        len = sp - p < (long) sizeof(tag) - 1 ? (size_t) (sp - p)
                                              : sizeof(tag) - 1;
        memcpy(tag, p, len);
        tag[len] = '\0';
        cmd = sp + 1;

        if (strncasecmp(cmd, "LOGIN", 5) == 0) {
            snprintf(buf, sizeof(buf), "%s OK LOGIN completed\r\n", tag);
        } else if (strncasecmp(cmd, "LOGOUT", 6) == 0) {
            snprintf(buf, sizeof(buf), "* BYE stub\r\n%s OK LOGOUT\r\n", tag);
            c->closing = 1;
        } else if (strncasecmp(cmd, "CAPABILITY", 10) == 0) {
            snprintf(buf, sizeof(buf), "* CAPABILITY IMAP4rev1\r\n"
                     "%s OK CAPABILITY\r\n", tag);
        } else if (strncasecmp(cmd, "NOOP", 4) == 0) {
            snprintf(buf, sizeof(buf), "%s OK NOOP\r\n", tag);
        } else {
            snprintf(buf, sizeof(buf), "%s BAD unknown command\r\n", tag);
        }
        outs(c, buf);
        p = eol + 2;

        if (c->closing) {
            break;
        }
    }

    return p - c->in;
}


/* ------------------------------------------------------------------ */

static const char  xmpp_header[] =
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
    " xmlns:stream='http://etherx.jabber.org/streams' id='stub'"
    " from='example.com' version='1.0' xml:lang='en'>";


/* returns bytes consumed */
static size_t
xmpp_input(conn_t *c)
{
    char    *p = c->in, *end = c->in + c->inlen, *q, *gt;
    char     buf[512], id[64];
    size_t   len;

    for ( ;; ) {
        switch (c->state) {

        case X_HEADER:
        case X_HEADER2:
            q = memmem(p, end - p, "<stream:stream", 14);
            if (q == NULL) {
                return p - c->in;
            }
            gt = memchr(q, '>', end - q);
            if (gt == NULL) {
                return p - c->in;
            }
            outs(c, xmpp_header);
            if (c->state == X_HEADER) {
                outs(c, "<stream:features><mechanisms"
                        " xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                        "<mechanism>PLAIN</mechanism></mechanisms>"
                        "</stream:features>");
                c->state = X_AUTH;
            } else {
                outs(c, "<stream:features><bind"
                        " xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                        "</stream:features>");
                c->state = X_BIND;
            }
            p = gt + 1;
            break;

        case X_AUTH:
            q = memmem(p, end - p, "</auth>", 7);
            if (q == NULL) {
                return p - c->in;
            }
            outs(c, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
            c->state = X_HEADER2;
            p = q + 7;
            break;

        case X_BIND:
            q = memmem(p, end - p, "</iq>", 5);
            if (q == NULL) {
                return p - c->in;
            }
            strcpy(id, "b1");
            gt = memmem(p, q - p, "id='", 4);
            if (gt) {
                char *e = memchr(gt + 4, '\'', q - gt - 4);
                if (e && e - gt - 4 < (long) sizeof(id)) {
                    memcpy(id, gt + 4, e - gt - 4);
                    id[e - gt - 4] = '\0';
                }
            }
            snprintf(buf, sizeof(buf),
                     "<iq type='result' id='%s'><bind"
                     " xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                     "<jid>sink@example.com/stub</jid></bind></iq>", id);
            outs(c, buf);
            c->state = X_SINK;
            c->taillen = 0;
            p = q + 5;
            break;

        case X_SINK:
            /* look for the stream's end across reads */
            len = end - p;
            {
                char   tmp[64];
                size_t tl = c->taillen, k = len < 32 ? len : 32;
                memcpy(tmp, c->tail, tl);
                memcpy(tmp + tl, p, k);
                if (memmem(tmp, tl + k, "</stream:stream>", 16)
                    || memmem(p, len, "</stream:stream>", 16))
                {
                    outs(c, "</stream:stream>");
                    c->closing = 1;
                    return c->inlen;
                }
                if (len >= 16) {
                    memcpy(c->tail, end - 15, 15);
                    c->taillen = 15;
                } else {
                    memcpy(tmp, c->tail, tl);
                    memcpy(tmp + tl, p, len);
                    tl += len;
                    if (tl > 15) {
                        memmove(tmp, tmp + tl - 15, 15);
                        tl = 15;
                    }
                    memcpy(c->tail, tmp, tl);
                    c->taillen = tl;
                }
            }
            return c->inlen;
        }
    }
}


static void
on_read(conn_t *c)
{
    ssize_t  n;
    size_t   used;

    for ( ;; ) {
        if (c->incap - c->inlen < 2048) {
            c->incap = c->incap ? c->incap * 2 : 16384;
            if (c->incap > (1 << 20)) {
                conn_close(c);
                return;
            }
            c->in = realloc(c->in, c->incap);
            if (c->in == NULL) {
                abort();
            }
        }

        n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen - 1, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            conn_close(c);
            return;
        }
        if (n == 0) {
            conn_close(c);
            return;
        }
        c->inlen += n;
        c->in[c->inlen] = '\0';

        used = c->kind == L_IMAP ? imap_input(c) : xmpp_input(c);
        c->inlen -= used;
        memmove(c->in, c->in + used, c->inlen);

        if (c->closing) {
            break;
        }
    }

    if (c->outlen) {
        flush(c);
    }
}


static int
listen_on(const char *addr, int port, int kind)
{
    struct sockaddr_in  sin;
    struct epoll_event  e;
    conn_t             *l;
    int                 fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    inet_pton(AF_INET, addr, &sin.sin_addr);
    if (bind(fd, (struct sockaddr *) &sin, sizeof(sin)) == -1
        || listen(fd, 4096) == -1)
    {
        fprintf(stderr, "bstub: %s:%d: %s\n", addr, port, strerror(errno));
        exit(1);
    }
    l = calloc(1, sizeof(conn_t));
    l->fd = fd;
    l->kind = -kind;
    e.events = EPOLLIN;
    e.data.ptr = l;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    return fd;
}


static void
on_accept(conn_t *l)
{
    struct epoll_event  e;
    conn_t             *c;
    int                 fd, one = 1;

    for ( ;; ) {
        fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                fprintf(stderr, "bstub: accept: %s\n", strerror(errno));
            }
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(conn_t));
        c->fd = fd;
        c->kind = -l->kind;
        e.events = EPOLLIN;
        e.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);

        if (c->kind == L_IMAP) {
            outs(c, "* OK IMAP4rev1 stub ready\r\n");
            flush(c);
        }
    }
}


int
main(int argc, char **argv)
{
    static struct option lopts[] = {
        { "imap", required_argument, NULL, 'i' },
        { "xmpp", required_argument, NULL, 'x' },
        { NULL, 0, NULL, 0 }
    };
    struct epoll_event  evs[256];
    struct sigaction    sa;
    struct rlimit       rl;
    const char         *addr = "127.0.0.1";
    int                 ch, i, n, imap = 0, xmpp = 0;

    while ((ch = getopt_long(argc, argv, "H:", lopts, NULL)) != -1) {
        switch (ch) {
        case 'i': imap = atoi(optarg); break;
        case 'x': xmpp = atoi(optarg); break;
        case 'H': addr = optarg; break;
        default:
            fprintf(stderr, "usage: bstub [--imap PORT] [--xmpp PORT]"
                            " [-H ADDR]\n");
            return 2;
        }
    }
    if (!imap && !xmpp) {
        fprintf(stderr, "bstub: nothing to listen on\n");
        return 2;
    }

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (imap) {
        listen_on(addr, imap, L_IMAP);
    }
    if (xmpp) {
        listen_on(addr, xmpp, L_XMPP);
    }
    printf("READY\n");
    fflush(stdout);

    while (!stop) {
        n = epoll_wait(ep, evs, 256, 500);
        for (i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->kind < 0) {
                on_accept(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (flush(c) < 0) {
                    continue;
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                on_read(c);
            }
        }
    }

    return 0;
}
