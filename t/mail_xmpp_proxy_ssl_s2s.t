#!/usr/bin/perl

# xmpp_proxy_ssl for incoming server-to-server streams (protocol
# xmpp-server): a real Prosody R (r.test) federates with l.test, whose s2s
# address is nginx, and nginx relays the stream to the real Prosody L over
# TLS (STARTTLS to L's s2s port, L's certificate verified for l.test).  L
# requires encryption on s2s (Prosody's default), so a plain TCP stream
# from nginx would not get dialback through; dialback runs over TLS.
# Names resolve as in t/mail_xmpp_s2s.t (each Prosody's own hosts file).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time sleep);

use XT::Nginx qw(free_port loopback_net);
use XT::Prosody;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

my $td = $t->testdir;
my $net = loopback_net(2, 3);
my ($nginx_ip, $r_ip) = ("$net.2", "$net.3");

my $l_s2s = free_port();

# R finds l.test at nginx, L (encryption required) finds r.test at R; SRV
# lookups fail at once (a name server that is not there)

my $r = XT::Prosody->new(dir => "$td/r/prosody", domains => ['r.test'],
    users => [['alice', 'r.test', 'alice-pw']],
    extra => XT::Prosody::s2s_extra(dir => "$td/r", ip => $r_ip,
        hosts => [[$nginx_ip, 'l.test']], nameserver => "$net.9"));

my $l = XT::Prosody->new(dir => "$td/l/prosody", domains => ['l.test'],
    users => [['bob', 'l.test', 'bob-pw']],
    extra => XT::Prosody::s2s_extra(dir => "$td/l", ip => '127.0.0.1',
        port => $l_s2s, hosts => [[$r_ip, 'r.test']],
        nameserver => "$net.9", require_encryption => 1));

my ($l_crt) = $l->cert('l.test');

$t->gen_cert('default', cn => 'nginx.test');
$t->gen_cert('l', cn => 'l.test');

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    map \$http_auth_xmpp_to \$backend_port {
        l.test   $l_s2s;
        default  "";
    }

    map \$http_auth_xmpp_to \$xt_status {
        l.test   OK;
        default  "Unknown domain";
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location = /auth {
            add_header Auth-Status \$xt_status;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$backend_port;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;

    ssl_certificate %%TESTDIR%%/default.crt;
    ssl_certificate_key %%TESTDIR%%/default.key;
    xmpp_certificate l.test %%TESTDIR%%/l.crt %%TESTDIR%%/l.key;

    server {
        listen $nginx_ip:5269;
        protocol xmpp-server;
        starttls only;

        xmpp_proxy_ssl starttls;
        xmpp_proxy_ssl_trusted_certificate $l_crt;
    }
}
EOF
$t->run();
$t->plan(5);

###############################################################################

my $alice = XT::XMPP->login(port => $r->port, domain => 'r.test',
    user => 'alice', password => 'alice-pw');
my $bob = XT::XMPP->login(port => $l->port, domain => 'l.test',
    user => 'bob', password => 'bob-pw');
ok($alice && $bob, 'both users logged in to their servers');

like($alice->chat($bob, "bob\@l.test", "hello from r"),
    qr/from=.alice\@r\.test/, 'message r.test -> l.test through nginx');

like($bob->chat($alice, "alice\@r.test", "hello from l"),
    qr/from=.bob\@l\.test/, 'message l.test -> r.test');

# L's side: the stream from nginx did STARTTLS, then dialback on it

my $log = $l->log;
like($log, qr/TLS negotiation started for s2sin/, 'L: s2sin over TLS');
like($log, qr/Received\[s2sin\w*\]: <(?:db:)?result\b/,
    'L: dialback request on the TLS stream');
