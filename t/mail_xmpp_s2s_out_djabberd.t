#!/usr/bin/perl

# Outgoing server-to-server from DJabberd through nginx: upstream DJabberd
# (d.test), whose own TLS stack has no TLS 1.2 or ECDHE, sends its s2s
# streams to nginx's xmpp-server-out listener in plain TCP: its resolver
# asks its own DNS (a dnsmasq), where the SRV record of every remote
# domain names nginx, as an operator would set it up.  nginx does STARTTLS
# with a real Prosody L (l.test), verifies L's certificate, and relays.  L
# checks DJabberd's dialback key with d.test's server (DJabberd's
# ServerPort) and accepts the stream: a message from a DJabberd user
# reaches the Prosody user, and from L's side the stream is TLS 1.3.
# DJabberd's stream header has no "from" (RFC 3920 allowed that, RFC 6120
# does not): auth_http is asked with an empty Auth-XMPP-From, and the
# first dialback element names the local domain, bound to the stream from
# then on.  Its dialback key ("i-" and hex) is not base64 and passes too.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Path qw(make_path);
use Test::More;

use XT::DJabberd;
use XT::Dnsmasq;
use XT::Nginx qw(loopback_net make_cert);
use XT::Prosody;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

if (my $why = XT::DJabberd::available('upstream')) {
    plan(skip_all => "DJabberd: $why");
}
if (my $why = XT::Dnsmasq::available()) {
    plan(skip_all => "dnsmasq: $why");
}

my $td = $t->testdir;
my $net = loopback_net(2, 4, 6);
my ($nginx_ip, $l_ip, $d_ip) = map { "$net.$_" } 2, 4, 6;

# a test CA and L's certificate for l.test

my @ca = make_cert("$td/ca.crt", "$td/ca.key", cn => 'xt-ca', ca => 'self');
make_path("$td/l/prosody/certs");
make_cert("$td/l/prosody/certs/l.test.crt", "$td/l/prosody/certs/l.test.key",
    cn => 'l.test', ca => \@ca);

# L finds d.test's server directly (its dialback check of DJabberd's key);
# SRV lookups fail at once (a name server that is not there)

my $l = XT::Prosody->new(dir => "$td/l/prosody", domains => ['l.test'],
    users => [['bob', 'l.test', 'bob-pw']],
    extra => XT::Prosody::s2s_extra(dir => "$td/l", ip => $l_ip,
        hosts => [[$d_ip, 'd.test']], nameserver => "$net.9"));

# D's DNS: l.test's server is nginx's outgoing listener

my $dns = XT::Dnsmasq->new(dir => "$td/dns", domains => ['test'],
    a => { 'out.test' => $nginx_ip },
    srv => [['_xmpp-server._tcp.l.test', 'out.test', 5269, 0, 0]]);

my $d = XT::DJabberd->new(dir => "$td/djabberd", tree => 'upstream',
    domains => ['d.test'], users => [['alice', 'd.test', 'alice-pw']],
    s2s => 1, s2s_host => $d_ip, s2s_port => 5269,
    nameserver => '127.0.0.1:' . $dns->port);

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    log_format auth '\$http_auth_protocol|\$http_auth_xmpp_from|'
                    '\$http_auth_xmpp_to';

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/auth.log auth;

        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server $l_ip;
            add_header Auth-Port 5269;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;

    server {
        listen $nginx_ip:5269;
        protocol xmpp-server-out;
        xmpp_proxy_ssl_trusted_certificate %%TESTDIR%%/ca.crt;
    }
}
EOF
$t->run();
$t->plan(7);

###############################################################################

my $alice = XT::XMPP->login(port => $d->port, domain => 'd.test',
    user => 'alice', password => 'alice-pw', resource => 'dj');
my $bob = XT::XMPP->login(port => $l->port, domain => 'l.test',
    user => 'bob', password => 'bob-pw');
ok($alice && $bob, 'alice on DJabberd, bob on Prosody');

like($alice->chat($bob, "bob\@l.test", "hello from djabberd"),
    qr/from=.alice\@d\.test/, 'message d.test -> l.test through nginx');

like($t->read_file('auth.log'), qr/^(?:xmpp-server-out\|\|l\.test\n)+\z/,
    'auth_http: DJabberd\'s outgoing stream to l.test, no "from"');
like($dns->log, qr/query\[SRV\] _xmpp-server\._tcp\.l\.test from /,
    'DJabberd looked up l.test\'s SRV record in its DNS');
like($d->log, qr/Connecting to '\Q$nginx_ip\E' for 'l\.test'/,
    'DJabberd connected to nginx for l.test');
like($l->log, qr/s2sin\w*\s+info\s+Stream encrypted \(TLSv1\.3 /,
    'L: the stream from nginx was TLS 1.3');
like($t->read_file('error.log'),
    qr/outgoing stream from "d\.test" \(its header had no "from"\)[^\n]*upstream: \Q$l_ip\E:5269/,
    'nginx took d.test from the dialback element, relayed to L');

# the servers go first: nginx's graceful stop waits for relayed sessions

$_->stop for $d, $l;
