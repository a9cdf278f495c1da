#!/usr/bin/perl

# A real client, slixmpp, logs in through nginx with SCRAM and channel
# binding, binds and exchanges messages both ways on a real Prosody; the
# error log says which mechanism and binding it used.  slixmpp binds with
# tls-unique only: on TLS 1.2 that works; on TLS 1.3, where RFC 9266
# forbids tls-unique and nginx offers tls-exporter instead, nginx refuses
# it, and says so in the error log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use XT::Nginx;
use XT::Prosody;
use XT::Slixmpp;
use XT::XmppProxy;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

plan(skip_all => 'slixmpp missing') unless XT::Slixmpp::has_slixmpp();

my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ['example.com'],
    users => [['alice', 'example.com', 'alice-backend-pw'],
              ['bob', 'example.com', 'bob-backend-pw']]);

my $scram = {
    'alice@example.com' => ['alice-scram-pw', 'alice-backend-pw'],
    'bob@example.com' => ['bob-scram-pw', 'bob-backend-pw'],
};

# 5222/5223 on TLS 1.2 only; 5224 direct TLS with the default versions

$t->gen_cert('xmpp', cn => 'example.com');
my $conf = XT::XmppProxy::conf(backend => $p->port, scram => $scram,
    mail => "xmpp_auth plain scram-sha-1 scram-sha-256;\n"
        . "        ssl_protocols TLSv1.2;");
$conf =~ s/\}\s*$/    server {
        listen 127.0.0.1:%%PORT_5224%% ssl;
        protocol xmpp;
        ssl_protocols TLSv1.2 TLSv1.3;
        xmpp_auth plain scram-sha-1 scram-sha-256;
    }
}
/ or die;
$t->write_file_expand('nginx.conf', $conf);
$t->run();
$t->plan(7);

my @users = (a => ['alice@example.com', 'alice-scram-pw'],
    b => ['bob@example.com', 'bob-scram-pw']);

###############################################################################

my ($ok, $out) = XT::Slixmpp::roundtrip(port => $t->port(5222),
    mode => 'starttls', @users);
ok($ok, 'slixmpp STARTTLS, TLS 1.2: SCRAM round trip') or diag($out);

($ok, $out) = XT::Slixmpp::roundtrip(port => $t->port(5223),
    mode => 'direct', @users);
ok($ok, 'slixmpp direct TLS, TLS 1.2: SCRAM round trip') or diag($out);

($ok, $out) = XT::Slixmpp::roundtrip(port => $t->port(5223),
    mode => 'direct', mech => 'SCRAM-SHA-1-PLUS', @users);
ok($ok, 'slixmpp SCRAM-SHA-1-PLUS round trip') or diag($out);

my $log = $t->read_file('error.log');
my $n = () = $log =~ /client authenticated with SCRAM-SHA-256-PLUS, channel binding tls-unique/g;
is($n, 4, 'SCRAM-SHA-256-PLUS with tls-unique, both users, twice');
like($log, qr/client authenticated with SCRAM-SHA-1-PLUS, channel binding tls-unique/,
    'SCRAM-SHA-1-PLUS with tls-unique');

# TLS 1.3: tls-unique refused, with the reason in the log

my ($code) = XT::Slixmpp::login(port => $t->port(5224), mode => 'direct',
    a => ['alice@example.com', 'alice-scram-pw']);
is($code, XT::Slixmpp::EXIT_AUTH, 'TLS 1.3: tls-unique refused');
like($t->read_file('error.log'),
    qr/channel binding type "tls-unique" that is not offered/,
    'TLS 1.3: the log says why');

###############################################################################
