#!/usr/bin/perl

# conf/auth-http-example.conf, the example auth_http endpoint, answers as
# its comments say: routing by domain (c2s) and by Auth-XMPP-To (s2s),
# disabled accounts, unknown domains.  Only its listen address is changed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;

use XT::Nginx;

my $t = XT::Nginx->new()->has(qw/http/);

open(my $fh, '<', XT::Nginx::repo_root() . '/conf/auth-http-example.conf')
    or die $!;
my $conf = join '', <$fh>;
$conf =~ s/listen\s+127\.0\.0\.1:9000;/listen 127.0.0.1:%%PORT_9000%%;/
    or die 'no listen';

$t->write_file_expand('nginx.conf', "%%TEST_GLOBALS%%\nhttp {\n$conf\n}\n");
$t->run();
$t->plan(9);

my $r = ask('xmpp', 'alice@example.com');
like($r, qr/^Auth-Status: OK\r$/m, 'c2s: OK');
like($r, qr/^Auth-Server: 127\.0\.0\.1\r$/m, 'c2s: server');
like($r, qr/^Auth-Port: 15222\r$/m, 'c2s: port by domain');
like(ask('xmpp', 'bob@example.net'), qr/^Auth-Port: 15223\r$/m,
    'c2s: another domain, another backend');

$r = ask('xmpp', 'mallory@example.com');
like($r, qr/^Auth-Status: This account is disabled\r$/m, 'disabled account');
like($r, qr/^Auth-Error-Code: account-disabled\r$/m, 'account-disabled');
like($r, qr/^Auth-Wait: 3\r$/m, 'refusal delayed');

like(ask('xmpp-server', 'r.test', 'example.net'), qr/^Auth-Port: 15270\r$/m,
    's2s: routed by Auth-XMPP-To');
like(ask('xmpp-server', 'r.test', 'nowhere.test'),
    qr/^Auth-Error-Code: host-unknown\r$/m, 's2s: unknown domain');

sub ask {
    my ($proto, $user, $to) = @_;
    my $s = IO::Socket::INET->new("127.0.0.1:" . $t->port(9000)) or die $!;
    print $s "GET /auth HTTP/1.0\r\nHost: localhost\r\n"
        . "Auth-Method: plain\r\nAuth-User: $user\r\nAuth-Pass: x\r\n"
        . "Auth-Protocol: $proto\r\n"
        . ($to ? "Auth-XMPP-From: $user\r\nAuth-XMPP-To: $to\r\n" : '')
        . "\r\n";
    local $/;
    return scalar <$s>;
}
