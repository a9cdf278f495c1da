#!/usr/bin/perl

# Outgoing server-to-server through nginx (protocol xmpp-server-out): two
# real Prosody servers, R (r.test) and L (l.test), federate both ways only
# through nginx.  Each resolves the other's domain (its libunbound
# "hoststxt") to nginx's outgoing listener and connects there in plain
# TCP; nginx asks auth_http (Auth-Protocol: xmpp-server-out) which server
# serves the "to" domain, connects, does STARTTLS as the client with the
# domain as SNI, verifies the server's certificate for the domain against
# a test CA, then opens the stream on behalf of the backend and relays.
# Where auth_http names no server, nginx finds it with its resolver (a
# real DNS server of the test's, dnsmasq): L's by its SRV records, of
# _xmpps-server._tcp.l.test first (XEP-0368: direct TLS; the first of
# them a closed port, so nginx goes on to the next), R's by the address
# of r.test on 5269 (no SRV records).
# Dialback stays the two servers' business (each checks the other's key
# with its authoritative server, again through nginx).  Faults: a server
# whose certificate names another domain, one that offers no STARTTLS, a
# domain auth_http refuses, a local domain auth_http refuses, a server
# that is down, a domain without DNS records, and remote servers that
# misbehave as a real one does not on demand (a scripted one: garbage, a
# stream error, an element larger than nginx's buffer).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Path qw(make_path);
use Test::More;

use XT::Dnsmasq;
use XT::FakeServer;
use XT::Nginx qw(free_port loopback_net make_cert);
use XT::Prosody;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

my $td = $t->testdir;
my $net = loopback_net(2 .. 6);
my ($nginx_ip, $r_ip, $l_ip, $x_ip, $n_ip, $down_ip, $closed_ip)
    = map { "$net.$_" } 2, 3, 4, 5, 6, 7, 8;

# a test CA, and certificates it signs: L's for l.test, R's for r.test,
# X's (x.test's server) for another name

my @ca = make_cert("$td/ca.crt", "$td/ca.key", cn => 'xt-ca', ca => 'self');

sub signed {
    my ($dir, $domain, $name) = @_;
    make_path("$dir/certs");
    make_cert("$dir/certs/$domain.crt", "$dir/certs/$domain.key", cn => $name,
        ca => \@ca);
}

# for r, l and x: every other domain resolves to nginx's outgoing listener;
# SRV lookups fail at once (a name server that is not there)

sub s2s_extra {
    my ($d, $ip, %o) = @_;
    return XT::Prosody::s2s_extra(dir => "$td/$d", ip => $ip,
        hosts => [map { [$nginx_ip, "$_.test"] } grep { $_ ne $d } qw/r l x/],
        nameserver => "$net.9", %o);
}

signed("$td/r/prosody", 'r.test', 'r.test');
signed("$td/l/prosody", 'l.test', 'l.test');
signed("$td/x/prosody", 'x.test', 'not-x.test');

my $dns = XT::Dnsmasq->new(dir => "$td/dns", domains => ['test'],
    a => { 'xmpp.l.test' => $l_ip, 'xmpp0.l.test' => $closed_ip,
        'r.test' => $r_ip },
    srv => [['_xmpps-server._tcp.l.test', 'xmpp0.l.test', 5269, 5, 1],
            ['_xmpps-server._tcp.l.test', 'xmpp.l.test', 5270, 10, 1],
            ['_xmpp-server._tcp.l.test', 'xmpp.l.test', 5269, 10, 1]]);

my $r = XT::Prosody->new(dir => "$td/r/prosody", domains => ['r.test'],
    users => [['alice', 'r.test', 'alice-pw']],
    extra => s2s_extra('r', $r_ip));

my $l = XT::Prosody->new(dir => "$td/l/prosody", domains => ['l.test'],
    users => [['bob', 'l.test', 'bob-pw']],
    extra => s2s_extra('l', $l_ip,
        extra => "s2s_direct_tls_ports = { 5270 }\n"
            . "s2s_direct_tls_interfaces = { \"$l_ip\" }"));

my $x = XT::Prosody->new(dir => "$td/x/prosody", domains => ['x.test'],
    users => [['carol', 'x.test', 'carol-pw']],
    extra => s2s_extra('x', $x_ip));

# n.test's server offers no STARTTLS (no "tls" module)

my $n = XT::Prosody->new(dir => "$td/n/prosody", domains => ['n.test'],
    extra => s2s_extra('n', $n_ip, hosts => [[$nginx_ip, 'r.test']],
        tls => 0));

# the misbehaving remote: what it does depends on the stream's "to"

my $fake = XT::FakeServer->new(dir => "$td/fake", handler => sub {
    my ($sock) = @_;
    my $in = '';
    while ($in !~ /<stream:stream[^>]*>/) {
        sysread($sock, $in, 4096, length $in) or return;
    }
    my ($to) = $in =~ /\bto=['"]([^'"]+)/;
    my $h = "<?xml version='1.0'?><stream:stream xmlns='jabber:server'"
        . " xmlns:stream='http://etherx.jabber.org/streams' id='fake1'"
        . " from='$to' version='1.0'>";
    if ($to eq 'garbage.test') {
        print $sock "$h<<<not xml>>>";
    } elsif ($to eq 'error.test') {
        print $sock "$h<stream:error><host-unknown"
            . " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
    } else {
        print $sock "$h<stream:features><x>" . ('a' x 200000) . '</x>';
    }
    sleep 2;
});

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    log_format auth '\$http_auth_protocol|\$http_auth_method|'
                    '\$http_auth_user|\$http_auth_xmpp_from|'
                    '\$http_auth_xmpp_to';

    # static routes; r.test, l.test (and the rest) by DNS
    map \$http_auth_xmpp_to \$xt_server {
        x.test     $x_ip;
        n.test     $n_ip;
        down.test  $down_ip;
        ~^(garbage|error|huge)\\.test\$  127.0.0.1;
        default    "";
    }

    map \$http_auth_xmpp_to \$xt_fake {
        ~^(garbage|error|huge)\\.test\$  ${\ $fake->port};
        default                          5269;
    }

    map \$xt_server \$xt_port {
        ""       "";
        default  \$xt_fake;
    }

    map "\$http_auth_xmpp_from:\$http_auth_xmpp_to" \$xt_status {
        "~^[rlx]\\.test:[a-z]+\\.test\$"  OK;
        default                         "Federation not allowed";
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

    # for the backends of other servers: the outgoing streams keep TLS
    xmpp_proxy_ssl off;

    server {
        listen $nginx_ip:5269;
        protocol xmpp-server-out;
        xmpp_proxy_ssl_trusted_certificate %%TESTDIR%%/ca.crt;
        resolver 127.0.0.1:${\ $dns->port} ipv6=off;
        resolver_timeout 5s;
    }

    # for dialback-only peers: their certificate is not checked
    server {
        listen $nginx_ip:5270;
        protocol xmpp-server-out;
        xmpp_proxy_ssl_verify off;
    }
}
EOF
$t->run();

###############################################################################

my $alice = XT::XMPP->login(port => $r->port, domain => 'r.test',
    user => 'alice', password => 'alice-pw');
my $bob = XT::XMPP->login(port => $l->port, domain => 'l.test',
    user => 'bob', password => 'bob-pw');
ok($alice && $bob, 'both users logged in to their servers');

like($alice->chat($bob, "bob\@l.test", "hello from r"),
    qr/from=.alice\@r\.test/, 'message r.test -> l.test through nginx');

like($bob->chat($alice, "alice\@r.test", "hello from l"),
    qr/from=.bob\@l\.test/, 'message l.test -> r.test through nginx');

my @auth = map { [ split /\|/, $_, -1 ] } split /\n/, $t->read_file('auth.log');
ok((grep { "@$_" eq 'xmpp-server-out external r.test r.test l.test' } @auth),
    'auth_http: R\'s stream to l.test, Auth-Protocol xmpp-server-out');
ok((grep { "@$_" eq 'xmpp-server-out external l.test l.test r.test' } @auth),
    'auth_http: L\'s stream to r.test');

# from the servers' side: each connected out to nginx in plain TCP, and
# every incoming s2s stream was TLS 1.3 (nginx's)

for my $p ([$l, 'L'], [$r, 'R']) {
    my ($srv, $n) = @$p;
    my $log = $srv->log;
    like($log, qr/Next target to try is \Q$nginx_ip\E:5269/,
        "$n: its outgoing stream went to nginx");
    unlike($log, qr/s2sout\w*\s+\w+\s+Stream encrypted/,
        "$n: in plain TCP");
    my $in = () = $log =~ /s2sin\w*\s+debug\s+Incoming s2s connection\n/g;
    my $tls = () = $log =~ /s2sin\w*\s+info\s+Stream encrypted \(TLSv1\.3 /g;
    ok($in && $in == $tls, "$n: every incoming s2s stream with TLS 1.3"
        . " ($tls of $in)");
}

my $elog = $t->read_file('error.log');
like($elog, qr/server 1 of 3 of "l\.test": \Q$closed_ip\E:5269, direct TLS/,
    'l.test: the first _xmpps-server SRV target');
like($elog, qr/\(111: Connection refused\)[^\n]*upstream: \Q$closed_ip\E:5269/,
    'l.test: that one is closed, the log names it');
like($elog, qr/server 2 of 3 of "l\.test": \Q$l_ip\E:5270, direct TLS/,
    'l.test: then the next one, direct TLS');
like($l->log, qr/Activated service 's2s_direct_tls' on \[\Q$l_ip\E\]:5270/,
    'L: its direct TLS s2s port');
like($elog, qr/server 1 of 1 of "r\.test": \Q$r_ip\E:5269, STARTTLS/,
    'r.test: no SRV records, its address on 5269');
like($dns->log, qr/query\[SRV\] _xmpps-server\._tcp\.r\.test from 127\.0\.0\.1/,
    'nginx asked for the direct TLS SRV records');
like($dns->log, qr/query\[SRV\] _xmpp-server\._tcp\.r\.test from 127\.0\.0\.1/,
    'nginx asked for the STARTTLS SRV records');

for my $p (['r', "$l_ip:5270"], ['l', "$r_ip:5269"]) {
    my ($from, $up) = @$p;
    like($t->read_file('error.log'),
        qr/client logged in, client: 127\.0\.0\.1, server: \Q$nginx_ip\E:5269, login: "$from\.test", upstream: \Q$up\E\b/,
        "nginx logged the outgoing session of $from.test");
}

###############################################################################

# faults: each a stream error to the backend and an error-log line

sub raw_out {
    my ($from, $to, $port) = @_;
    my $c = XT::XMPP->new(host => $nginx_ip, port => $port // 5269,
        timeout => 10) or die $XT::XMPP::ERROR;
    $c->send("<?xml version='1.0'?><stream:stream xmlns='jabber:server'"
        . " xmlns:stream='http://etherx.jabber.org/streams'"
        . " xmlns:db='jabber:server:dialback' version='1.0'"
        . " from='$from' to='$to'>");
    my @got;
    while (defined(my $e = $c->read_element)) {
        push @got, $e;
        last if $e =~ /features|error/;
    }
    return join '', @got;
}

# x.test's certificate names not-x.test

my $got = raw_out('r.test', 'x.test');
like($got, qr/^<stream:stream\b[^>]*>.*<stream:error><remote-connection-failed\b/s,
    'wrong certificate: a stream header, then the stream error');
like($t->read_file('error.log'),
    qr/upstream SSL certificate does not match "x\.test"/,
    'wrong certificate: error log names the domain');
unlike($x->log, qr/Received\[s2sin\w*\]: <stream:stream/,
    'wrong certificate: nothing of the stream reached x.test after TLS');

# the same with verification off: x.test's own features, after TLS

$got = raw_out('r.test', 'x.test', 5270);
like($got, qr/<stream:features>.*<dialback\b/s,
    'xmpp_proxy_ssl_verify off: the stream goes on');
like($t->read_file('error.log'),
    qr/certificate of upstream "x\.test" not verified \(xmpp_proxy_ssl_verify off\)/,
    'xmpp_proxy_ssl_verify off: said in the error log');

# a server that offers no STARTTLS: never plaintext

$got = raw_out('r.test', 'n.test');
like($got, qr/<remote-connection-failed\b/, 'no STARTTLS offered: stream error');
like($t->read_file('error.log'), qr/upstream "n\.test" offered no STARTTLS/,
    'no STARTTLS offered: error log');

# a server that is down

$got = raw_out('r.test', 'down.test');
like($got, qr/<remote-connection-failed\b/, 'server down: stream error');
like($t->read_file('error.log'),
    qr/\(111: Connection refused\) while sending stream header to upstream[^\n]*upstream: \Q$down_ip\E:5269/,
    'server down: the error log names it');

# a domain without DNS records

$got = raw_out('r.test', 'nodns.test');
like($got, qr/<remote-connection-failed\b/, 'no DNS records: stream error');
like($t->read_file('error.log'), qr/"nodns\.test" could not be resolved/,
    'no DNS records: the error log says so');

# remote servers that misbehave: each a stream error to the backend

for my $c (['garbage', qr/upstream sent invalid XML/],
    ['error', qr/upstream sent stream error/],
    ['huge', qr/upstream sent too long element/])
{
    my ($name, $log) = @$c;
    $got = raw_out('r.test', "$name.test");
    like($got, qr/<remote-connection-failed\b/, "$name: stream error");
    like($t->read_file('error.log'), qr/$log[^\n]*upstream: 127\.0\.0\.1:/,
        "$name: the error log says what the remote did");
}

# a local domain auth_http does not let federate

$got = raw_out('evil.test', 'l.test');
like($got, qr/<policy-violation\b/, 'local domain refused by auth_http');
like($t->read_file('error.log'),
    qr/outgoing stream from "evil\.test" to "l\.test" refused, "policy-violation" error/,
    'local domain refused: the error log names both domains');

# a domain auth_http does not let R federate with

$got = raw_out('r.test', 'elsewhere.example');
like($got, qr/<policy-violation\b/, 'refused by auth_http: policy-violation');
like($t->read_file('error.log'),
    qr/outgoing stream from "r\.test" to "elsewhere\.example" refused/,
    'remote domain refused: the error log names both domains');

# the servers go first: nginx's graceful stop waits for relayed sessions

$_->stop for $r, $l, $x, $n, $dns, $fake;

$t->done_testing;
