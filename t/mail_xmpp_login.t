#!/usr/bin/perl

# XMPP through nginx to a real Prosody: STARTTLS and direct TLS logins of a
# real client (slixmpp) exchanging messages, the auth_http request, the
# Auth-User rewrite, failed logins and their retry on the same stream.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;

use XT::Nginx;
use XT::Prosody;
use XT::Slixmpp;
use XT::XMPP;
use XT::XmppProxy;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

plan(skip_all => 'slixmpp missing') unless XT::Slixmpp::has_slixmpp();

my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ['example.com'],
    users => [['alice', 'example.com', 'alice-pw'],
              ['bob', 'example.com', 'bob-pw'],
              ['carol', 'example.com', 'carol-pw']]);

$t->gen_cert('xmpp', cn => 'example.com');
$t->write_file_expand('nginx.conf', XT::XmppProxy::conf(
    backend => $p->port,
    mail => 'max_errors 3;',
    http => <<'EOF',
    map $http_auth_user $xt_user {
        "dave@example.com"  "carol@example.com";
        default             $http_auth_user;
    }
    map $http_auth_user $xt_pass {
        "dave@example.com"  "carol-pw";
        default             $http_auth_pass;
    }
EOF
    auth => <<'EOF',
            add_header Auth-User $xt_user;
            add_header Auth-Pass $xt_pass;
EOF
));
$t->run();
$t->plan(24);

my $port = $t->port(5222);
my $sport = $t->port(5223);

###############################################################################

# a real client, both directions, STARTTLS and direct TLS

my ($ok, $out) = XT::Slixmpp::roundtrip(port => $port, mode => 'starttls',
    a => ['alice@example.com', 'alice-pw'], b => ['bob@example.com', 'bob-pw']);
ok($ok, 'slixmpp STARTTLS round trip') or diag($out);
my $r = XT::Slixmpp::result($out) // {};
like($r->{a_jid} // $r->{a} // $out, qr{alice\@example\.com/}, 'bound full JID');

($ok, $out) = XT::Slixmpp::roundtrip(port => $sport, mode => 'direct',
    a => ['alice@example.com', 'alice-pw'], b => ['bob@example.com', 'bob-pw']);
ok($ok, 'slixmpp direct TLS round trip') or diag($out);

# plaintext login refused under "starttls only": the client must not fall
# back to PLAIN without TLS

my ($code) = XT::Slixmpp::login(port => $port, mode => 'plain',
    a => ['alice@example.com', 'alice-pw']);
isnt($code, XT::Slixmpp::EXIT_OK, 'no login without TLS');

###############################################################################

# the auth request, step by step with the raw client

my $c = tls_stream($port);
$c->auth_plain('alice', 'alice-pw');
like($c->read_element // '', qr/^<success\b/, 'success from backend');
$c->open_stream('example.com');
like($c->read_element // '', qr/^<stream:stream\b.*from=.example\.com/,
    'restart reaches backend');
like($c->read_element // '', qr/<bind\b/, 'backend offers bind');
$c->send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    . "<resource>raw</resource></bind></iq>");
like($c->read_element // '', qr{<jid>alice\@example\.com/raw</jid>},
    'bound through the splice');
$c->close;

my @log = XT::XmppProxy::auth_log($t);
my ($req) = grep { $_->[1] eq 'alice@example.com' } @log;
ok($req, 'auth request logged');
is($req->[0], 'plain', 'Auth-Method plain');
is($req->[2], 'alice-pw', 'Auth-Pass');
is($req->[3], 'xmpp', 'Auth-Protocol xmpp');
is($req->[4], '1', 'Auth-Login-Attempt');
is($req->[5], '127.0.0.1', 'Client-IP');
is($req->[6], 'on', 'Auth-SSL on');

# a full JID as authcid is used as is, never "a@d@d"

$c = tls_stream($port);
$c->auth_plain('bob@example.com', 'bob-pw');
like($c->read_element // '', qr/^<success\b/, 'full JID authcid');
$c->close;
ok(!grep({ $_->[1] =~ /\@.*\@/ } XT::XmppProxy::auth_log($t)),
    'no doubled domain');

###############################################################################

# Auth-User rewrite: dave logs in, the backend session is carol's

$c = tls_stream($port);
$c->auth_plain('dave', 'whatever');
like($c->read_element // '', qr/^<success\b/, 'rewritten login accepted');
$c->open_stream('example.com');
$c->read_element;
$c->read_element;
$c->send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    . "<resource>r</resource></bind></iq>");
like($c->read_element // '', qr{<jid>carol\@example\.com/r</jid>},
    'backend session is the rewritten user');
$c->close;

###############################################################################

# auth_http refuses: SASL failure with text, retry on the same stream

$c = tls_stream($port);
$c->auth_plain('alice', 'wrong-pw');
is($c->read_element // '',
    "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"
    . "<text xml:lang='en'>Invalid login or password</text></failure>",
    'auth_http failure with text');
$c->auth_plain('alice', 'alice-pw');
like($c->read_element // '', qr/^<success\b/, 'retry on the same stream');
$c->close;

# the backend refuses (auth_http said OK): its failure reaches the client

$c = tls_stream($port);
$c->auth_plain('bob', 'not-bobs-pw');
like($c->read_element // '', qr/^<failure\b.*not-authorized/s,
    'backend failure relayed as SASL failure');

# max_errors 3: the third failure ends the stream

$c->auth_plain('bob', 'wrong-pw');
like($c->read_element // '', qr/^<failure\b/, 'second failure');
$c->auth_plain('bob', 'wrong-pw');
my $e = ($c->read_element // '') . ($c->read_element // '');
like($e, qr{<failure\b.*<stream:error><policy-violation\b}s,
    'max_errors: stream error');

###############################################################################

# a connection to $port, STARTTLS done and the stream restarted
sub tls_stream {
    my ($port) = @_;
    my $c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
    $c->tls_stream('example.com') or die $c->error;
    return $c;
}

###############################################################################
