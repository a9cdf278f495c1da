#!/usr/bin/perl

# conf/auth-http-example.conf, the example auth_http endpoint, answers as
# its comments say: routing by domain (c2s) and by Auth-XMPP-To (s2s),
# disabled accounts, unknown domains, and the SCRAM answers: the keys of
# the map files conf/xmpp-scram-keys wrote, the backend credentials, none
# of them for PLAIN or for a user without keys or token.  Only its listen
# address and the directory of its map files are changed.

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
my $dir = $t->testdir;
$conf =~ s{include\s+/etc/nginx/xmpp/}{include $dir/}g or die 'no include';

# the map files, as an operator makes them: keys from passwords by the
# script; alice has a backend token, bob keys but no token
my $script = XT::Nginx::repo_root() . '/conf/xmpp-scram-keys';
my %keys;
for my $k (['sha-1', 'alice@example.com', 'mallory@example.com',
        'bob@example.net'], ['sha-256', 'alice@example.com'])
{
    my ($hash, @users) = @$k;
    my $map = '';
    for my $u (@users) {
        my $line = `echo secret-$u | $^X $script --hash $hash $u`;
        die "xmpp-scram-keys: $?" if $? || $line !~ /^\Q$u\E "([^"]+)";$/;
        $keys{$hash}{$u} = [split /,/, $1];
        $map .= $line;
    }
    $t->write_file("scram-$hash.map", $map);
}
$t->write_file('backend-tokens.map', "alice\@example.com \"xt1.9.alice\";\n"
    . "mallory\@example.com \"xt1.9.mallory\";\n");

$t->write_file_expand('nginx.conf', "%%TEST_GLOBALS%%\nhttp {\n$conf\n}\n");
$t->run();
$t->plan(28);

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

# SCRAM: the keys of the method's map, the backend credentials
for my $hash ('sha-1', 'sha-256') {
    $r = ask('xmpp', 'alice@example.com', undef, "scram-$hash");
    like($r, qr/^Auth-Status: OK\r$/m, "scram-$hash: OK");
    my %h = $r =~ /^(Auth-[\w-]+): (.*?)\r$/mg;
    is_deeply([@h{map { "Auth-SCRAM-$_" }
            qw/Salt Iterations StoredKey ServerKey/}],
        $keys{$hash}{'alice@example.com'}, "scram-$hash: the map's keys");
    is($h{'Auth-User'}, 'alice@example.com', "scram-$hash: backend user");
    is($h{'Auth-Pass'}, 'xt1.9.alice', "scram-$hash: backend token");
    is($h{'Auth-Port'}, 15222, "scram-$hash: routed");
}
isnt((ask('xmpp', 'alice@example.com', undef, 'scram-sha-1')
        =~ /^Auth-SCRAM-StoredKey: (\S+)\r$/m)[0],
    (ask('xmpp', 'alice@example.com', undef, 'scram-sha-256')
        =~ /^Auth-SCRAM-StoredKey: (\S+)\r$/m)[0],
    'a key of each method');

$r = ask('xmpp', 'carol@example.com', undef, 'scram-sha-1');
like($r, qr/^Auth-Status: Invalid login or password\r$/m,
    'scram: unknown user refused');
unlike($r, qr/^Auth-(SCRAM-|User|Pass)/m, 'scram: unknown user, no keys');
like($r, qr/^Auth-Wait: 3\r$/m, 'scram: refusal delayed');

$r = ask('xmpp', 'bob@example.net', undef, 'scram-sha-256');
like($r, qr/^Auth-Status: Invalid login or password\r$/m,
    'scram: no keys of that method');
$r = ask('xmpp', 'bob@example.net', undef, 'scram-sha-1');
like($r, qr/^Auth-Status: Invalid login or password\r$/m,
    'scram: keys, but no backend token');
unlike($r, qr/^Auth-(SCRAM-|User|Pass)/m, 'scram: no token, no keys');

like(ask('xmpp', 'mallory@example.com', undef, 'scram-sha-1'),
    qr/^Auth-Status: This account is disabled\r$/m, 'scram: disabled');

unlike(ask('xmpp', 'alice@example.com'), qr/^Auth-(SCRAM-|User|Pass)/m,
    'plain: no keys, no backend credentials');

sub ask {
    my ($proto, $user, $to, $method) = @_;
    my $s = IO::Socket::INET->new("127.0.0.1:" . $t->port(9000)) or die $!;
    my $pass = $method ? '' : 'x';
    $method //= 'plain';
    print $s "GET /auth HTTP/1.0\r\nHost: localhost\r\n"
        . "Auth-Method: $method\r\nAuth-User: $user\r\nAuth-Pass: $pass\r\n"
        . "Auth-Protocol: $proto\r\n"
        . ($to ? "Auth-XMPP-From: $user\r\nAuth-XMPP-To: $to\r\n" : '')
        . "\r\n";
    local $/;
    return scalar <$s>;
}
