#!/usr/bin/perl

# Certificates from a lookup service (xmpp_certificate_lookup): fetched
# before <proceed/> on STARTTLS, in the background for direct TLS (SNI),
# cached (also "no certificate" answers) for xmpp_certificate_cache_time;
# a service that is down, slow or answers garbage means the default
# certificate, a log line, no stalled client, and no new lookup for that
# domain for xmpp_certificate_cache_error_time.  Misses are kept apart
# from certificates, lookups are limited to xmpp_certificate_lookup_domains
# and to xmpp_certificate_lookup_concurrency at a time, encrypted keys are
# refused without a pass phrase prompt, and an IMAP server block of the
# same mail{} keeps its own certificate.  The service is an http server of
# the same nginx serving DOMAIN.pem files (over TCP and a unix socket); the
# slow one is a socket that never answers (a fault a real service does not
# produce on demand).  Scripted service faults:
# t/mail_xmpp_certificate_lookup_fault.t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);

use XT::Nginx qw(free_port);
use XT::OpenSSL qw(s_client cn starttls_cn);

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp imap http/);

my $td = $t->testdir;
mkdir "$td/lookup";

$t->gen_cert('default', cn => 'default.test');
$t->gen_cert('static', cn => 'static.test');
$t->gen_cert('imap', cn => 'imap.test');

for my $d (qw/l1.test l2.test l3.test l4.test l5.test l6.test bad.test
    a.hosted.test xhosted.test enc.test/)
{
    $t->gen_cert("lookup/$d", cn => $d);
    pem($d, "$td/lookup/$d.crt", "$td/lookup/$d.key");
}

# a key that does not belong to the certificate
pem('bad.test', "$td/lookup/bad.test.crt", "$td/lookup/l1.test.key");

# encrypted keys, PKCS#8 and the traditional format: nginx has no pass
# phrase for them and must not ask for one

for my $f (['enc.test', ''], ['enc2.test', ' -traditional']) {
    system("openssl pkey -in $td/lookup/enc.test.key -aes256"
        . " -passout pass:secret$f->[1] -out $td/lookup/$f->[0].enc"
        . " 2>/dev/null") == 0 or die "openssl pkey: $?";
    pem($f->[0], "$td/lookup/enc.test.crt", "$td/lookup/$f->[0].enc");
}

my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Listen => 16,
    ReuseAddr => 1, Blocking => 0) or die "listen: $!";
my $slow = $silent->sockport;

my $crowd = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Listen => 16,
    ReuseAddr => 1, Blocking => 0) or die "listen: $!";
my $crowd_port = $crowd->sockport;

my $closed = free_port();

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    log_format lookup '\$arg_domain|\$http_xmpp_domain|\$status';

    server {
        listen 127.0.0.1:%%PORT_8082%%;
        listen unix:%%TESTDIR%%/service.sock;
        access_log %%TESTDIR%%/lookup.log lookup;

        location = /cert {
            root %%TESTDIR%%/lookup;
            try_files /\$arg_domain.pem =404;
        }

        location = /err {
            if (\$arg_domain = e500.test) {
                return 500;
            }

            return 200 "not a certificate\\n";
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;

    ssl_certificate %%TESTDIR%%/default.crt;
    ssl_certificate_key %%TESTDIR%%/default.key;

    xmpp_certificate static.test %%TESTDIR%%/static.crt %%TESTDIR%%/static.key;
    xmpp_certificate_lookup http://127.0.0.1:%%PORT_8082%%/cert;
    xmpp_certificate_lookup_timeout 1s;
    xmpp_certificate_cache_time 3s;

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls only;
    }

    server {
        listen 127.0.0.1:%%PORT_5223%% ssl;
        protocol xmpp;
    }

    server {
        listen 127.0.0.1:%%PORT_5224%%;
        protocol xmpp;
        starttls only;
        xmpp_certificate_lookup http://127.0.0.1:$closed/cert;
    }

    server {
        listen 127.0.0.1:%%PORT_5225%%;
        protocol xmpp;
        starttls only;
        xmpp_certificate_lookup http://127.0.0.1:$slow/cert;
    }

    # a unix socket that is missing until the test links it to the service

    server {
        listen 127.0.0.1:%%PORT_5226%%;
        protocol xmpp;
        starttls only;
        xmpp_certificate_lookup http://unix:%%TESTDIR%%/down.sock:/cert;
        xmpp_certificate_cache_size 2;
    }

    server {
        listen 127.0.0.1:%%PORT_5227%%;
        protocol xmpp;
        starttls only;
        xmpp_certificate_cache_size 1;
        xmpp_certificate_cache_negative_size 1;
    }

    server {
        listen 127.0.0.1:%%PORT_5228%%;
        protocol xmpp;
        starttls only;
        xmpp_certificate_lookup_domains l5.test .hosted.test;
    }

    server {
        listen 127.0.0.1:%%PORT_5229%%;
        protocol xmpp;
        starttls only;
        xmpp_certificate_lookup http://127.0.0.1:%%PORT_8082%%/err;
        xmpp_certificate_cache_error_time 2s;
    }

    server {
        listen 127.0.0.1:%%PORT_5230%% ssl;
        protocol xmpp;
        xmpp_certificate_lookup http://127.0.0.1:$crowd_port/cert;
        xmpp_certificate_lookup_concurrency 2;
        xmpp_certificate_lookup_timeout 5s;
    }

    # the mail level's xmpp_certificate* are not for IMAP

    server {
        listen 127.0.0.1:%%PORT_5231%%;
        protocol imap;
        starttls on;
        ssl_certificate %%TESTDIR%%/imap.crt;
        ssl_certificate_key %%TESTDIR%%/imap.key;
    }
}
EOF
$t->run();
$t->plan(54);

my ($p, $sp, $pdown, $pslow, $punix, $pneg, $pdom, $perr, $pcrowd, $pimap)
    = map { $t->port($_) } 5222 .. 5231;

# STARTTLS: looked up before <proceed/>, then cached

is(starttls_cn($p, 'l1.test'), 'l1.test', 'STARTTLS: looked up');
is(starttls_cn($p, 'L1.test'), 'l1.test', 'STARTTLS: cached, any case');
is(requests('l1.test'), 1, 'one lookup for a cached domain');
like($t->read_file('lookup.log'), qr/^l1\.test\|l1\.test\|200$/m,
    'domain sent as argument and XMPP-Domain header');

is(starttls_cn($p, 'none.test'), 'default.test', 'no certificate: default');
is(starttls_cn($p, 'none.test'), 'default.test', 'no certificate: cached');
is(requests('none.test'), 1, '"no certificate" is cached too');

is(starttls_cn($p, 'static.test'), 'static.test', 'static name first');
is(requests('static.test'), 0, 'no lookup for a static name');

is(starttls_cn($p, 'bad.test'), 'default.test', 'mismatched key: default');

# encrypted keys: refused at once, no pass phrase prompt in the worker

my $start = time();
is(starttls_cn($p, 'enc.test'), 'default.test', 'encrypted key: default');
is(starttls_cn($p, 'enc2.test'), 'default.test',
    'encrypted key, traditional format: default');
is(starttls_cn($p, 'l3.test'), 'l3.test', 'encrypted key: next client');
my $took = time() - $start;
ok($took < 5, 'encrypted keys: clients served promptly') or diag("took $took");

# direct TLS cannot wait: the first client starts the lookup

cn(s_client('-connect', "127.0.0.1:$sp", '-servername', 'l2.test'));
ok(wait_for(sub { requests('l2.test') }), 'direct TLS: lookup started');
ok(wait_for(sub {
    cn(s_client('-connect', "127.0.0.1:$sp", '-servername', 'l2.test'))
        eq 'l2.test' }), 'direct TLS: looked up in the background');

# an SNI name that is not a host name: the default certificate, and no
# line of its own in the error log (seen with debug logging)

is(cn(s_client('-connect', "127.0.0.1:$sp", '-servername',
    "x\nFORGED-SNI.test")), 'default.test', 'SNI not a host name: default');

# a lookup service that is down or silent

is(starttls_cn($pdown, 'l1.test'), 'default.test', 'service down: default');

$start = time();
is(starttls_cn($pslow, 'l1.test'), 'default.test', 'service silent: default');
$took = time() - $start;
ok($took > 0.8 && $took < 3, 'silent service: the client waited '
    . 'xmpp_certificate_lookup_timeout only') or diag("took $took");

is(accepted($silent), 1, 'silent service: one lookup');
is(starttls_cn($pslow, 'l1.test'), 'default.test',
    'after a timeout: default');
is(accepted($silent), 0, 'a timeout is cached');

# failed connects (a missing unix socket) leave nothing behind: with
# xmpp_certificate_cache_size 2, two of them once blocked every lookup

is(starttls_cn($punix, 'd1.test'), 'default.test', 'socket missing: default');
is(starttls_cn($punix, 'd2.test'), 'default.test', 'socket missing: again');
symlink("$td/service.sock", "$td/down.sock") or die "symlink: $!";
is(starttls_cn($punix, 'l6.test'), 'l6.test',
    'socket back: looked up after failed connects');

# misses are kept apart: with a cache for one certificate and one miss,
# misses never push out the certificate

is(starttls_cn($pneg, 'l4.test'), 'l4.test', 'negative cache: looked up');
is(starttls_cn($pneg, "n$_.test"), 'default.test', "negative cache: miss $_")
    for 1 .. 3;
is(starttls_cn($pneg, 'l4.test'), 'l4.test', 'negative cache: still cached');
is(requests('l4.test'), 1, 'misses did not evict the certificate');
starttls_cn($pneg, 'n3.test');
is(requests('n3.test'), 1, 'the last miss is cached');

# xmpp_certificate_lookup_domains l5.test .hosted.test

is(starttls_cn($pdom, 'l5.test'), 'l5.test', 'domains: exact name');
is(starttls_cn($pdom, 'a.hosted.test'), 'a.hosted.test',
    'domains: below a suffix');
is(starttls_cn($pdom, 'xhosted.test'), 'default.test',
    'domains: not below the suffix');
is(requests('xhosted.test'), 0, 'domains: no lookup outside the list');
starttls_cn($pdom, 'b.a.hosted.test');
is(requests('b.a.hosted.test'), 1, 'domains: any depth below a suffix');

# an answer other than 200 or 404 is cached for the error time only

is(starttls_cn($perr, 'e500.test'), 'default.test', 'status 500: default');
starttls_cn($perr, 'e500.test');
is(requests('e500.test'), 1, 'status 500: cached');
is(starttls_cn($perr, 'garbage.test'), 'default.test', 'garbage: default');
starttls_cn($perr, 'garbage.test');
is(requests('garbage.test'), 1, 'garbage: cached');
ok(wait_for(sub { starttls_cn($perr, 'e500.test'); requests('e500.test') > 1 },
    15), 'status 500: asked again after the error time');

# direct TLS, a flood of new names: two lookups at a time

for my $n (1 .. 4) {
    s_client('-connect', "127.0.0.1:$pcrowd", '-servername', "c$n.test");
}
is(accepted($crowd), 2, 'concurrency: two lookups at a time');
ok(wait_for(sub {
    s_client('-connect', "127.0.0.1:$pcrowd", '-servername', 'c5.test');
    accepted($crowd) }, 15), 'concurrency: lookups again after a timeout');

# IMAP in the same mail{}: its own certificate, no lookups

is(cn(s_client('-connect', "127.0.0.1:$pimap", '-starttls', 'imap',
    '-servername', 'static.test')), 'imap.test',
    'IMAP: ssl_certificate, not a mail-level xmpp_certificate');
is(cn(s_client('-connect', "127.0.0.1:$pimap", '-starttls', 'imap',
    '-servername', 'l1.test')), 'imap.test', 'IMAP: no looked up one');

# expiry

is(requests('l1.test'), 1, 'IMAP: no lookup');
ok(wait_for(sub { starttls_cn($p, 'l1.test'); requests('l1.test') > 1 },
    15), 'after expiry: looked up again');

$t->stop();
my $log = $t->read_file('error.log');

like($log, qr/xmpp certificate lookup for "l1\.test" timed out/,
    'timeout logged');
like($log, qr/lookup for "enc\.test": invalid certificate or key/,
    'encrypted key logged');
unlike($log, qr/UI routines/, 'encrypted key: no pass phrase prompt');
like($log, qr/lookup for "c3\.test" not started: 2 lookups running/,
    'concurrency: refused lookup logged');
unlike($log, qr/^FORGED/m, 'no forged log lines');

###############################################################################

sub pem {
    my ($domain, @files) = @_;
    open(my $out, '>', "$td/lookup/$domain.pem") or die $!;
    for my $f (@files) {
        open(my $in, '<', $f) or die "$f: $!";
        print $out join('', <$in>);
    }
    close $out;
}

sub requests {
    my ($domain) = @_;
    my $log = eval { $t->read_file('lookup.log') } // '';
    return scalar(() = $log =~ /^\Q$domain\E\|/gm);
}

# connections the lookups opened to a socket that never answers, since the
# last call (they are complete when the handshake that started them is)

sub accepted {
    my ($sock) = @_;
    my $n = 0;
    while (my $c = $sock->accept) {
        $n++;
        push @{ $t->{xt_held} }, $c;
    }
    return $n;
}

sub wait_for {
    my ($cond, $secs) = @_;
    my $end = time() + ($secs // 10);
    while (time() < $end) {
        return 1 if $cond->();
        sleep 0.2;
    }
    return 0;
}

###############################################################################
