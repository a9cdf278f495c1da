#!/usr/bin/perl

# SASL SCRAM terminated in nginx (RFC 5802, RFC 7677), with channel
# binding to nginx's own TLS session (RFC 5056, RFC 9266, RFC 5929).
# nginx asks auth_http for the account's keys, checks the client's proof
# and channel binding, answers with its server signature, then logs in
# to a real Prosody with the credentials auth_http returned.  The client
# here is a raw SCRAM client of the test's own, so that it can also send
# what a real client would not: a wrong proof, another nonce, binding data
# of another session, the "y" flag after -PLUS was offered.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw/encode_base64/;
use Test::More;

use Net::SSLeay;

use XT::Nginx;
use XT::Prosody;
use XT::Scram;
use XT::XMPP;
use XT::XmppProxy;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ['example.com', 'other.test'],
    users => [['alice', 'example.com', 'alice-backend-pw'],
              ['alice', 'other.test', 'alice-backend-pw'],
              ['bob', 'example.com', 'bob-pw']]);

$t->gen_cert('xmpp', cn => 'example.com');
$t->gen_cert('other', cn => 'other.test', digest => 'sha384');
$t->write_file_expand('nginx.conf', XT::XmppProxy::conf(
    backend => $p->port,
    mail => 'xmpp_auth plain scram-sha-1 scram-sha-256; max_errors 10;'
        . ' ssl_protocols TLSv1.2 TLSv1.3;'
        . ' xmpp_certificate other.test %%TESTDIR%%/other.crt'
        . ' %%TESTDIR%%/other.key;',
    scram => { 'alice@example.com' => ['alice-scram-pw', 'alice-backend-pw'],
        'alice@other.test' => ['alice-scram-pw', 'alice-backend-pw'] },

    # bob: OK without keys; broken: keys of no hash's size
    http => <<'EOF',
    map $http_auth_user $xt_extra_pass {
        "~^(bob|broken)@"  bob-pw;
        default            "";
    }
    map $http_auth_user $xt_broken {
        broken@example.com  "bm90LWEta2V5";
        default             "";
    }
    map $xt_broken $xt_broken_i {
        ""       "";
        default  4096;
    }
EOF
    auth => <<'EOF',
            add_header Auth-Pass $xt_extra_pass;
            add_header Auth-SCRAM-Salt $xt_broken;
            add_header Auth-SCRAM-Iterations $xt_broken_i;
            add_header Auth-SCRAM-StoredKey $xt_broken;
            add_header Auth-SCRAM-ServerKey $xt_broken;
EOF
));
$t->run();
$t->plan(47);

my $SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";

# stream(%ssl): a direct TLS stream; returns the connection and features
sub stream {
    my (%ssl) = @_;
    my $c = XT::XMPP->new(port => $t->port(5223), ssl => 1,
        ssl_opts => {%ssl})
        or die $XT::XMPP::ERROR;
    $c->open_stream('example.com');
    $c->read_element;
    return ($c, $c->read_element // '');
}

# bound($c): the stream restarted with the backend, and a resource bound
sub bound {
    my ($c) = @_;
    $c->open_stream('example.com');
    $c->read_element;
    $c->read_element;
    $c->send("<iq type='set' id='b1'><bind"
        . " xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        . "<resource>sc</resource></bind></iq>");
    return $c->read_element // '';
}

###############################################################################

# offered: -PLUS with the binding types of TLS 1.3, of TLS 1.2

my ($c, $f) = stream();
like($f, qr{<mechanism>SCRAM-SHA-256-PLUS</mechanism><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>},
    'mechanisms in order of preference');
like($f, qr{<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/><channel-binding type='tls-server-end-point'/></sasl-channel-binding>},
    'TLS 1.3: tls-exporter and tls-server-end-point');

my ($a, $v) = XT::Scram::exchange($c);
like($a, qr{^<success $SASL>}, 'SCRAM-SHA-256-PLUS tls-exporter: success');
ok($v, 'server signature verified');
like(bound($c), qr{<jid>alice\@example\.com/sc</jid>}, 'bound on Prosody');
$c->close;

like($t->read_file('error.log'),
    qr/client authenticated with SCRAM-SHA-256-PLUS, channel binding tls-exporter/,
    'error log names the mechanism and binding');

my @log = XT::XmppProxy::auth_log($t);
is(join('|', @{$log[-1]}[0 .. 2]), 'scram-sha-256|alice@example.com|',
    'auth_http: method, canonical user, no password');

($c) = stream();
($a, $v) = XT::Scram::exchange($c, cb => 'tls-server-end-point');
ok($a =~ /^<success/ && $v, 'tls-server-end-point: success, verified');
$c->close;

($c) = stream();
($a, $v) = XT::Scram::exchange($c, mech => 'SCRAM-SHA-1');
ok($a =~ /^<success/ && $v, 'SCRAM-SHA-1 without binding: success');
like(bound($c), qr{<jid>alice\@example\.com/sc</jid>}, 'SCRAM-SHA-1: bound');
$c->close;

($c) = stream();
($a, $v) = XT::Scram::exchange($c, mech => 'SCRAM-SHA-1-PLUS', user => 'ALICE');
ok($a =~ /^<success/ && $v, 'SCRAM-SHA-1-PLUS, username ALICE: success');
like(bound($c), qr{<jid>alice\@example\.com/sc</jid>},
    'canonical account bound');
$c->close;

# TLS 1.2: tls-unique instead of tls-exporter

($c, $f) = stream(SSL_version => 'TLSv1_2');
like($f, qr{<channel-binding type='tls-unique'/><channel-binding type='tls-server-end-point'/>},
    'TLS 1.2: tls-unique and tls-server-end-point');
($a, $v) = XT::Scram::exchange($c, cb => 'tls-exporter');
like($a, qr{<not-authorized/>}, 'TLS 1.2: tls-exporter refused');
($a, $v) = XT::Scram::exchange($c, cb => 'tls-unique');
ok($a =~ /^<success/ && $v, 'TLS 1.2: tls-unique success, verified');
$c->close;

# per-domain certificate (signed with SHA-384): tls-server-end-point is
# the SHA-384 hash of the certificate nginx sent for that domain, chosen
# by SNI on direct TLS and by the stream's "to" on STARTTLS

for my $mode ('direct TLS', 'STARTTLS') {
    my $o;
    if ($mode eq 'STARTTLS') {
        $o = XT::XMPP->new(port => $t->port(5222)) or die $XT::XMPP::ERROR;
        $o->tls_stream('other.test', SSL_hostname => '') or die $o->error;
    } else {
        $o = XT::XMPP->new(port => $t->port(5223), ssl => 1,
            ssl_opts => { SSL_hostname => 'other.test' })
            or die $XT::XMPP::ERROR;
        $o->open_stream('other.test');
        $o->read_element;
        $o->read_element;
    }
    my $cert = Net::SSLeay::get_peer_certificate($o->socket->_get_ssl_object);
    is(Net::SSLeay::X509_NAME_oneline(Net::SSLeay::X509_get_subject_name($cert)),
        '/CN=other.test', "$mode: other.test's certificate");
    my $default = Net::SSLeay::X509_digest(
        Net::SSLeay::PEM_read_bio_X509(Net::SSLeay::BIO_new_file(
            $t->testdir . '/xmpp.crt', 'r')),
        Net::SSLeay::EVP_get_digestbyname('sha256'));
    ($a) = XT::Scram::exchange($o, cb => 'tls-server-end-point',
        cbdata => $default);
    like($a, qr{<not-authorized/>},
        "$mode: the default certificate's hash refused");
    ($a, $v) = XT::Scram::exchange($o, cb => 'tls-server-end-point');
    ok($a =~ /^<success/ && $v,
        "$mode: tls-server-end-point of other.test: success, verified");
    $o->open_stream('other.test');
    $o->read_element;
    $o->read_element;
    $o->send("<iq type='set' id='b1'><bind"
        . " xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        . "<resource>sc</resource></bind></iq>");
    like($o->read_element // '', qr{<jid>alice\@other\.test/sc</jid>},
        "$mode: bound as alice\@other.test");
    $o->close;
}

# failures: each answered, the stream goes on, the next attempt works

($c) = stream();
($a) = XT::Scram::exchange($c, password => 'wrong');
like($a, qr{<failure $SASL><not-authorized/></failure>}, 'wrong proof');
($a) = XT::Scram::exchange($c, tamper_cb => 1);
like($a, qr{<not-authorized/>}, 'binding data of another session');
($a) = XT::Scram::exchange($c, data_type => 'tls-server-end-point');
like($a, qr{<not-authorized/>}, 'binding data of another type');
($a) = XT::Scram::exchange($c, tamper_nonce => 1);
like($a, qr{<not-authorized/>}, 'nonce changed');
($a) = XT::Scram::exchange($c, mech => 'SCRAM-SHA-256', gs2 => 'y,,');
like($a, qr{<not-authorized/>}, '"y" after -PLUS was offered: downgrade');
($a) = XT::Scram::exchange($c, mech => 'SCRAM-SHA-256', gs2 => 'p=tls-exporter,,');
like($a, qr{<malformed-request/>}, 'p= on a mechanism without -PLUS');
($a) = XT::Scram::exchange($c, gs2 => 'n,,');
like($a, qr{<malformed-request/>}, '-PLUS without binding');
($a) = XT::Scram::exchange($c, cb => 'tls-unique-for-telnet');
like($a, qr{<not-authorized/>}, 'unknown binding type');
($a) = XT::Scram::exchange($c, gs2 => 'p=tls-exporter,a=bob,');
like($a, qr{<invalid-authzid/>}, 'authzid of another account');
($a) = XT::Scram::exchange($c, gs2 => 'p=tls-exporter,a=alice@example.com,');
like($a, qr{^<success}, 'retry on the same stream: success, own authzid');
$c->close;

my $n0 = () = XT::XmppProxy::auth_log($t);
($c) = stream();
$c->send("<auth $SASL mechanism='SCRAM-SHA-256'>"
    . encode_base64('n,,m=x,n=alice,r=abc', '') . '</auth>');
like($c->read_element, qr{<malformed-request/>}, 'mandatory extension');
$c->send("<auth $SASL mechanism='SCRAM-SHA-256'>"
    . encode_base64('n,,n=al=ice,r=abc', '') . '</auth>');
like($c->read_element, qr{<malformed-request/>}, 'bad saslname escape');
$c->send("<auth $SASL mechanism='SCRAM-SHA-256'>"
    . encode_base64('n,,n=alice,r=' . 'x' x 2000, '') . '</auth>');
like($c->read_element // '', qr{<malformed-request/>|policy-violation},
    'oversized client-first');
$c->send("<auth $SASL mechanism='SCRAM-SHA-256'>"
    . encode_base64("n,,n=alice\x{0}bob,r=abc", '') . '</auth>');
like($c->read_element // '', qr{<malformed-request/>}, 'NUL in the name');
$c->send("<auth $SASL mechanism='SCRAM-SHA-256'>"
    . encode_base64('n,,n=mallory@example.com@example.com,r=abc', '')
    . '</auth>');
like($c->read_element // '', qr{<malformed-request/>}, 'two "@" in the name');
$c->close;
is(scalar(() = XT::XmppProxy::auth_log($t)), $n0,
    'malformed client-first: nothing sent to auth_http');

# an account the auth server does not know: refused, the stream goes on

($c) = stream();
($a) = XT::Scram::exchange($c, user => 'unknown');
like($a, qr{<failure $SASL><not-authorized/>}, 'unknown user: not-authorized');
($a, $v) = XT::Scram::exchange($c);
ok($a =~ /^<success/ && $v, 'then alice on the same stream: success');
$c->close;

# the auth server's part: unknown keys, broken keys

my $n = () = XT::XmppProxy::auth_log($t);
($c) = stream();
($a) = XT::Scram::exchange($c, user => 'bob');
like($a, qr{<temporary-auth-failure/>}, 'no SCRAM keys: temporary failure');
($a) = XT::Scram::exchange($c, user => 'broken');
like($a, qr{<temporary-auth-failure/>}, 'keys of the wrong size');
($a, $v) = XT::Scram::exchange($c);
ok($a =~ /^<success/ && $v, 'then alice: success');
$c->close;

like($t->read_file('error.log'),
    qr/auth http server did not send valid SCRAM keys/,
    'error log: auth server did not send keys');

# no initial response: the empty challenge asks for client-first

($c) = stream();
$c->send("<auth $SASL mechanism='SCRAM-SHA-256'/>");
like($c->read_element, qr{^<challenge $SASL/>}, 'no initial response: '
    . 'empty challenge');
$c->send("<response $SASL>"
    . encode_base64('n,,n=alice,r=0123456789', '') . '</response>');
like($c->read_element, qr{^<challenge $SASL>[^<]+</challenge>},
    'client-first in a response: server-first');
$c->close;

###############################################################################
