#!/usr/bin/perl

# Outgoing and incoming server-to-server through nginx with ejabberd: a
# real ejabberd E (e.test) without any TLS of its own and a real Prosody R
# (r.test, STARTTLS with a certificate of a test CA) federate both ways
# only through nginx.
#
# E -> r.test: E's outgoing s2s goes in plain TCP to nginx's
# xmpp-server-out listener (s2s_use_starttls: false).  E finds it by the
# SRV record of _xmpp-server._tcp.r.test in a DNS server of its own (a
# dnsmasq its inetrc names, ERL_INETRC; the SRV target is nginx's address
# written as a name): E's SRV lookups go through Erlang's resolver, which
# honours the inetrc, but its address lookups go through the C library,
# which does not, so "host" entries of the inetrc would not do.  nginx
# asks auth_http (Auth-Protocol: xmpp-server-out), finds R with its own
# resolver (a second dnsmasq, the world's view: R's SRV record), does
# STARTTLS with R and verifies R's certificate for r.test against the CA.
#
# R -> e.test: R's libunbound "hoststxt" maps e.test to nginx's
# xmpp-server listener (STARTTLS, nginx's certificate for e.test from the
# CA, which R trusts and checks); auth_http routes to E's plain s2s port.
#
# Dialback is the servers' own: E checks R's key by connecting out through
# nginx again, R checks E's through nginx's incoming listener.  Fault: a
# domain auth_http does not let e.test federate with (q.test): E gets a
# stream error from nginx and bounces the message to its sender.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Path qw(make_path);
use Test::More;

use XT::Dnsmasq;
use XT::Ejabberd;
use XT::Nginx qw(loopback_net make_cert);
use XT::Prosody;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

if (my $why = XT::Ejabberd::available()) {
    plan(skip_all => "ejabberd: $why");
}
if (my $why = XT::Dnsmasq::available()) {
    plan(skip_all => "dnsmasq: $why");
}

my $td = $t->testdir;
my $net = loopback_net(2, 3, 5);
my ($in_ip, $r_ip, $out_ip) = map { "$net.$_" } 2, 3, 5;

# the test CA; R's certificate for r.test, nginx's for e.test

my @ca = make_cert("$td/ca.crt", "$td/ca.key", cn => 'xt-ca', ca => 'self');
make_path("$td/r/prosody/certs");
make_cert("$td/r/prosody/certs/r.test.crt", "$td/r/prosody/certs/r.test.key",
    cn => 'r.test', ca => \@ca);
make_cert("$td/e.crt", "$td/e.key", cn => 'e.test', ca => \@ca);
$t->gen_cert('default', cn => 'nginx.test');

# the world's DNS (nginx's resolver): r.test's server by its SRV record

my $dns = XT::Dnsmasq->new(dir => "$td/dns", domains => ['test'],
    a => { 'xmpp.r.test' => $r_ip },
    srv => [['_xmpp-server._tcp.r.test', 'xmpp.r.test', 5269, 10, 1]]);

# E's DNS: every remote domain is nginx's outgoing listener

my $edns = XT::Dnsmasq->new(dir => "$td/edns", domains => ['test'],
    srv => [map { ["_xmpp-server._tcp.$_", $out_ip, 5269, 0, 0] }
        qw/r.test q.test/]);

# R: e.test is nginx's incoming listener; SRV lookups fail at once (a name
# server that is not there); the CA is trusted

my $r = XT::Prosody->new(dir => "$td/r/prosody", domains => ['r.test'],
    users => [['bob', 'r.test', 'bob-pw']],
    extra => XT::Prosody::s2s_extra(dir => "$td/r", ip => $r_ip,
        hosts => [[$in_ip, 'e.test']], nameserver => "$net.9",
        extra => "ssl = { cafile = \"$td/ca.crt\" }"));

my $e = XT::Ejabberd->new(dir => "$td/ejabberd", domains => ['e.test'],
    users => [['alice', 'e.test', 'alice-pw']],
    s2s => 1, nameserver => '127.0.0.1:' . $edns->port,
    extra => "s2s_use_starttls: false\n");

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    log_format auth '\$http_auth_protocol|\$http_auth_method|'
                    '\$http_auth_user|\$http_auth_xmpp_from|'
                    '\$http_auth_xmpp_to|\$http_auth_ssl_protocol';

    map "\$http_auth_protocol \$http_auth_xmpp_from \$http_auth_xmpp_to"
        \$xt_status
    {
        "xmpp-server-out e.test r.test"  OK;
        "xmpp-server r.test e.test"      OK;
        default                          "Federation not allowed";
    }

    # incoming streams go to E's s2s port; outgoing ones by DNS
    map \$http_auth_protocol \$xt_server {
        xmpp-server  127.0.0.1;
        default      "";
    }

    map \$http_auth_protocol \$xt_port {
        xmpp-server  ${\ $e->s2s_port};
        default      "";
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/auth.log auth;

        location = /auth {
            add_header Auth-Status \$xt_status;
            add_header Auth-Server \$xt_server;
            add_header Auth-Port \$xt_port;
            add_header Auth-Error-Code policy-violation;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;

    # nginx 1.22 leaves TLS 1.3 out of its default
    ssl_protocols TLSv1.2 TLSv1.3;

    server {
        listen $in_ip:5269;
        protocol xmpp-server;
        starttls only;
        ssl_certificate %%TESTDIR%%/default.crt;
        ssl_certificate_key %%TESTDIR%%/default.key;
        xmpp_certificate e.test %%TESTDIR%%/e.crt %%TESTDIR%%/e.key;
    }

    server {
        listen $out_ip:5269;
        protocol xmpp-server-out;
        xmpp_proxy_ssl_trusted_certificate %%TESTDIR%%/ca.crt;
        resolver 127.0.0.1:${\ $dns->port} ipv6=off;
        resolver_timeout 5s;
    }
}
EOF
$t->run();

###############################################################################

my $alice = XT::XMPP->login(port => $e->port, domain => 'e.test',
    user => 'alice', password => 'alice-pw');
my $bob = XT::XMPP->login(port => $r->port, domain => 'r.test',
    user => 'bob', password => 'bob-pw');
ok($alice && $bob, 'alice on ejabberd, bob on Prosody');

like($alice->chat($bob, "bob\@r.test", "hello from ejabberd", 30),
    qr/from=.alice\@e\.test/, 'message e.test -> r.test through nginx');

like($bob->chat($alice, "alice\@e.test", "hello from prosody", 30),
    qr/from=.bob\@r\.test/, 'message r.test -> e.test through nginx');

# auth_http: E's stream out (plain TCP: no TLS protocol), R's stream in
# (TLS 1.3)

my @auth = map { [ split /\|/, $_, -1 ] } split /\n/, $t->read_file('auth.log');
my @out = grep { $_->[0] eq 'xmpp-server-out' } @auth;
my @in = grep { $_->[0] eq 'xmpp-server' } @auth;
ok((grep { "@$_[0..4]" eq 'xmpp-server-out external e.test e.test r.test' }
    @out), 'auth_http: E\'s stream to r.test, Auth-Protocol xmpp-server-out');
ok(@out && !grep({ $_->[5] ne '-' } @out),
    'auth_http: E\'s outgoing streams came in plain TCP');
ok((grep { "@$_[0..4]" eq 'xmpp-server external r.test r.test e.test' } @in),
    'auth_http: R\'s stream to e.test through the incoming listener');
ok(@in && !grep({ $_->[5] ne 'TLSv1.3' } @in),
    'auth_http: R\'s incoming streams with TLS 1.3');

# E found nginx through its own DNS server; nginx found R through its own

like($edns->log, qr/query\[SRV\] _xmpp-server\._tcp\.r\.test from 127\.0\.0\.1/,
    'E asked its DNS server for r.test\'s SRV record');
unlike($edns->log, qr/query\[SRV\] _xmpps-server\./,
    'E, without TLS of its own, never asked for direct TLS targets');
my $elog = $t->read_file('error.log');
like($elog, qr/server 1 of 1 of "r\.test": \Q$r_ip\E:5269, STARTTLS/,
    'nginx: r.test by its SRV record, STARTTLS');
like($elog,
    qr/client logged in, client: 127\.0\.0\.1, server: \Q$out_ip\E:5269, login: "e\.test", upstream: \Q$r_ip\E:5269\b/,
    'nginx logged E\'s outgoing session to R');
like($elog,
    qr/client logged in, [^\n]*server: \Q$in_ip\E:5269, login: "r\.test", upstream: 127\.0\.0\.1:${\ $e->s2s_port}\b/,
    'nginx logged R\'s incoming session to E');

# from R's side: every incoming s2s stream was TLS 1.3 (nginx's, as R's
# only peer is nginx), and its stream to e.test was TLS 1.3 with a
# certificate that chains to the CA and names e.test: nginx's

my $rlog = $r->log;
my $n_in = () = $rlog =~ /s2sin\w*\s+debug\s+Incoming s2s connection\n/g;
my $n_tls = () = $rlog =~ /s2sin\w*\s+info\s+Stream encrypted \(TLSv1\.3 /g;
ok($n_in && $n_in == $n_tls,
    "R: every incoming s2s stream with TLS 1.3 ($n_tls of $n_in)");
like($rlog, qr/Next target to try is \Q$in_ip\E:5269/,
    'R: its stream to e.test went to nginx');
like($rlog, qr/s2sout\w*\s+info\s+Stream encrypted \(TLSv1\.3 /,
    'R: its stream to e.test with TLS 1.3');
like($rlog, qr/s2sout\w*\s+debug\s+certificate chain validation result: valid/,
    'R: nginx\'s certificate chains to the CA');
like($rlog,
    qr/s2sout\w*\s+debug\s+certificate identity validation result: valid/,
    'R: and names e.test');

# from E's side: its stream to r.test went to nginx's outgoing listener
# in plain TCP ("tcp|", "tls|" with TLS), dialback accepted both ways

like(wait_log($e, qr/Accepted outbound s2s dialback authentication e\.test -> r\.test/),
    qr/\(tcp\|[^\n]*\(\Q$out_ip\E\)$/,
    'E: its stream to r.test, plain TCP to nginx, dialback accepted');
like(wait_log($e, qr/Accepted inbound s2s dialback authentication r\.test -> e\.test/),
    qr/\(tcp\|/, 'E: the stream from r.test, relayed by nginx in plain TCP');

###############################################################################

# a domain auth_http does not let e.test federate with: nginx's stream
# error, and E bounces the message

$alice->send("<message to='carol\@q.test' type='chat' id='m3'>"
    . "<body>not allowed</body></message>");
like($alice->read_until(qr/id=.m3/, 30) // '',
    qr/<message\b(?=[^>]*type=.error)[^>]*from=.carol\@q\.test/,
    'refused by auth_http: the message bounced to alice');
ok((grep { "@$_[0..4]" eq 'xmpp-server-out external e.test e.test q.test' }
    map { [ split /\|/, $_, -1 ] } split /\n/, $t->read_file('auth.log')),
    'refused by auth_http: the request for q.test');
like(wait_log($e, qr/q\.test[^\n]*policy-violation/i), qr/q\.test/,
    'refused by auth_http: E logged nginx\'s stream error');

# the servers go first: nginx's graceful stop waits for relayed sessions

$_->stop for $e, $r, $dns, $edns;

$t->done_testing;

###############################################################################

# the first line of $srv's log that matches $re (the log is written a
# little later than the server acts), '' if none within 20 s

sub wait_log {
    my ($srv, $re) = @_;
    for (1 .. 200) {
        my ($line) = $srv->log =~ /^([^\n]*$re[^\n]*)$/m;
        return $line if defined $line;
        select(undef, undef, undef, 0.1);
    }
    diag($srv->log);
    return '';
}
