#!/usr/bin/perl

# The real backend and the real client the XMPP tests rely on: a private
# Prosody (XT::Prosody), slixmpp (XT::Slixmpp) and the raw client
# (XT::XMPP) talking to it directly, without nginx.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use File::Temp qw(tempdir);
use MIME::Base64 qw(decode_base64);
use Test::More;

use XT::Nginx qw(free_port);
use XT::Prosody;
use XT::Slixmpp;
use XT::XMPP;

for my $need ('/usr/bin/prosody', '/usr/bin/prosodyctl') {
    next if -x $need;
    # in CI a missing backend is a failure, elsewhere a reason to skip
    BAIL_OUT("$need missing (auto/deps)") if $ENV{CI};
    plan skip_all => "$need missing (run auto/deps)";
}
unless (XT::Slixmpp::has_slixmpp()) {
    BAIL_OUT('python3-slixmpp missing (auto/deps)') if $ENV{CI};
    plan skip_all => 'python3-slixmpp missing (run auto/deps)';
}

plan tests => 30;

my $dir = tempdir('xt-prosody-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TEST_NGINX_LEAVE});
my @users = (['alice', 'example.com', 'alice-pw'], ['bob', 'example.com', 'bob-pw']);
my %a = (a => ['alice@example.com', 'alice-pw']);
my %ab = (%a, b => ['bob@example.com', 'bob-pw']);

###############################################################################
# tls => 1: STARTTLS required; also a direct TLS port

my $p = XT::Prosody->new(dir => "$dir/tls", domains => ['example.com'],
    users => \@users, tls => 1, direct_tls => 1);
ok($p->port && $p->tls_port && $p->port != $p->tls_port, 'ports allocated');

# raw client, step by step
my $c = XT::XMPP->new(port => $p->port) or die $XT::XMPP::ERROR;
$c->open_stream('example.com');
like($c->read_element, qr/^<stream:stream\b[^>]*>$/, 'stream header is one unit');
like($c->{xml_decl} // '', qr/^<\?xml/, 'XML declaration seen and skipped');
my $f = $c->read_element // '';
like($f, qr/^<stream:features>.*<\/stream:features>$/s, 'features are one unit');
like($f, qr/<starttls[^>]*>\s*<required\s*\/>/, 'STARTTLS required');
unlike($f, qr/<mechanism>PLAIN</, 'no PLAIN before TLS');

$c->send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
like($c->read_element // '', qr/^<proceed\b[^>]*\/>$/, 'proceed');
ok($c->starttls(SSL_hostname => 'example.com'), 'TLS handshake') or diag($c->error);
$c->open_stream('example.com');
like($c->read_element // '', qr/^<stream:stream/, 'new stream over TLS');
like($c->read_element // '', qr/<mechanism>PLAIN</, 'PLAIN offered over TLS');
$c->auth_plain('alice', 'alice-pw');
like($c->read_element // '', qr/^<success\b/, 'SASL PLAIN accepted');
$c->open_stream('example.com');
$c->read_element;
like($c->read_element // '', qr/<bind\b/, 'bind offered after auth');
$c->send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    . "<resource>xt</resource></bind></iq>");
like($c->read_element // '', qr{<jid>alice\@example\.com/xt</jid>}, 'bound');
$c->send('</stream:stream>');
like($c->read_element // '', qr{^</stream:stream>$}, 'stream close is one unit');
ok($c->eof_within(5), 'server closes after stream close');

# real client
my ($ok, $out, $code) = XT::Slixmpp::roundtrip(port => $p->port, mode => 'starttls', %ab);
ok($ok, 'slixmpp STARTTLS round trip') or diag($out);
my $r = XT::Slixmpp::result($out) // {};
like($r->{a} // '', qr{^alice\@example\.com/.+}, 'A bound a full JID');
like($r->{b} // '', qr{^bob\@example\.com/.+}, 'B bound a full JID');
like(($r->{tls} // {})->{version} // '', qr/^TLS/, 'A used TLS');

($ok, $out) = XT::Slixmpp::roundtrip(port => $p->tls_port, mode => 'direct', %ab);
ok($ok, 'slixmpp direct TLS round trip') or diag($out);

($code, $out) = XT::Slixmpp::login(port => $p->port, mode => 'starttls',
    a => ['alice@example.com', 'wrong']);
is($code, XT::Slixmpp::EXIT_AUTH, 'wrong password: auth failure code') or diag($out);

($code, $out) = XT::Slixmpp::login(port => $p->port, mode => 'plain', %a);
is($code, XT::Slixmpp::EXIT_CONNECT, 'no TLS against a TLS-only server: refused')
    or diag($out);

my $closed = free_port();
($code, $out) = XT::Slixmpp::login(port => $closed, mode => 'starttls', %a, timeout => 5);
is($code, XT::Slixmpp::EXIT_CONNECT, 'closed port: connection failure code') or diag($out);

like($p->log, qr/Authenticated as alice\@example\.com|authenticated/i, 'log() reads the log');

$p->stop;
ok(!XT::XMPP->new(port => $p->port, timeout => 1), 'stopped');

###############################################################################
# tls => 0: a plain backend

my $q = XT::Prosody->new(dir => "$dir/plain", domains => ['example.com', 'example.net'],
    users => [@users, ['carol', 'example.net', 'carol-pw']], tls => 0);

($ok, $out) = XT::Slixmpp::roundtrip(port => $q->port, mode => 'plain', %ab, mech => 'PLAIN');
ok($ok, 'slixmpp plain round trip with SASL PLAIN') or diag($out);

($code, $out) = XT::Slixmpp::login(port => $q->port, mode => 'plain',
    a => ['carol@example.net', 'carol-pw']);
is($code, 0, 'second virtual host') or diag($out);

$c = XT::XMPP->new(port => $q->port) or die $XT::XMPP::ERROR;
$c->open_stream('example.com');
$c->read_element;
$f = $c->read_element // '';
like($f, qr/<mechanism>PLAIN</, 'plain backend offers PLAIN without TLS');
$c->auth_plain('bob', 'bob-pw');
like($c->read_element // '', qr/^<success\b/, 'raw SASL PLAIN without TLS');

$q->register('dave', 'example.com', 'dave-pw');
($code, $out) = XT::Slixmpp::login(port => $q->port, mode => 'plain',
    a => ['dave@example.com', 'dave-pw']);
is($code, 0, 'user registered while running') or diag($out);
