#!/usr/bin/perl

# Certificates from a lookup service (xmpp_certificate_lookup): fetched
# before <proceed/> on STARTTLS, in the background for direct TLS (SNI),
# cached (also "no certificate" answers) for xmpp_certificate_cache_time;
# a service that is down, slow or answers garbage means the default
# certificate, a log line, and no stalled client.  The service is an http
# server of the same nginx serving DOMAIN.pem files; the slow one is a
# socket that never answers (a fault a real service does not produce on
# demand).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);

use XT::Nginx qw(free_port);

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

my $td = $t->testdir;
mkdir "$td/lookup";

$t->gen_cert('default', cn => 'default.test');
$t->gen_cert('static', cn => 'static.test');

for my $d (qw/l1.test l2.test bad.test/) {
    $t->gen_cert("lookup/$d", cn => $d);
    open(my $out, '>', "$td/lookup/$d.pem") or die $!;
    for my $f ("$td/lookup/$d.crt", "$td/lookup/$d.key") {
        open(my $in, '<', $f) or die $!;
        print $out join('', <$in>);
    }
    close $out;
}

# a key that does not belong to the certificate
system("cat $td/lookup/bad.test.crt $td/lookup/l1.test.key"
    . " > $td/lookup/bad.test.pem");

my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Listen => 5,
    ReuseAddr => 1) or die "listen: $!";
my $slow = $silent->sockport;
my $closed = free_port();

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    log_format lookup '\$arg_domain|\$http_xmpp_domain|\$status';

    server {
        listen 127.0.0.1:%%PORT_8082%%;
        access_log %%TESTDIR%%/lookup.log lookup;

        location = /cert {
            root %%TESTDIR%%/lookup;
            try_files /\$arg_domain.pem =404;
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
}
EOF
$t->run();
$t->plan(18);

my ($p, $sp, $pdown, $pslow) = map { $t->port($_) } 5222, 5223, 5224, 5225;

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

# expiry

sleep(4.5);
is(starttls_cn($p, 'l1.test'), 'l1.test', 'after expiry: looked up again');
is(requests('l1.test'), 2, 'cache expired');

# direct TLS cannot wait: the first client starts the lookup

s_client("-connect 127.0.0.1:$sp -servername l2.test");
sleep(0.5);
is(cn(s_client("-connect 127.0.0.1:$sp -servername l2.test")), 'l2.test',
    'direct TLS: looked up in the background');

# a lookup service that is down or silent

my $start = time();
is(starttls_cn($pdown, 'l1.test'), 'default.test', 'service down: default');

$start = time();
is(starttls_cn($pslow, 'l1.test'), 'default.test', 'service silent: default');
my $took = time() - $start;
ok($took > 0.8 && $took < 3, 'silent service: the client waited '
    . 'xmpp_certificate_lookup_timeout only') or diag("took $took");

$t->stop();
my $log = $t->read_file('error.log');

like($log, qr/xmpp certificate lookup for "l1\.test" timed out/,
    'timeout logged');
like($log, qr/xmpp certificate lookup for "l1\.test" failed/,
    'service down logged');

###############################################################################

sub requests {
    my ($domain) = @_;
    my $log = eval { $t->read_file('lookup.log') } // '';
    return scalar(() = $log =~ /^\Q$domain\E\|/gm);
}

sub s_client {
    my ($args) = @_;
    return scalar `timeout 10 sh -c 'openssl s_client $args </dev/null 2>&1'`;
}

sub cn {
    my ($out) = @_;
    return $1 if $out =~ /subject=.*?CN\s*=\s*([^\s,\/]+)/;
    return '(none)';
}

sub starttls_cn {
    my ($port, $to) = @_;
    return cn(s_client("-connect 127.0.0.1:$port -starttls xmpp"
        . " -xmpphost $to"));
}

###############################################################################
