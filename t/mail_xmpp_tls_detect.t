#!/usr/bin/perl

# "xmpp_tls_detect on": one plain listening port takes STARTTLS and direct
# TLS, told apart by the client's first byte (0x16, a TLS handshake
# record, or the stream's '<' or whitespace; anything else is the usual
# not-well-formed stream error).  Against a real Prosody:
# a STARTTLS login and a direct TLS login on the same port, with the raw
# client (SCRAM-SHA-256-PLUS with tls-exporter and tls-server-end-point on
# the direct one) and with a real client (slixmpp, both modes); the
# certificate chosen by SNI; a direct TLS session is one as on "listen ...
# ssl" (no <starttls/> offered, "Auth-SSL: on", not logged as STARTTLS);
# refused: STARTTLS after direct TLS, a TLS handshake inside TLS, a garbage
# first byte; without the directive a ClientHello is a stream error as
# before; a client that sends nothing (or one handshake byte) times out;
# after a PROXY protocol header; xmpp-server too; and the configuration
# errors.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);

use XT::Nginx;
use XT::Prosody;
use XT::Scram;
use XT::Slixmpp;
use XT::XMPP;
use XT::XmppProxy;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ['example.com', 'other.test'],
    users => [['alice', 'example.com', 'alice-backend-pw'],
              ['bob', 'example.com', 'bob-backend-pw']]);

$t->gen_cert('xmpp', cn => 'example.com');
$t->gen_cert('other', cn => 'other.test');

my $tls = 'xmpp_auth plain scram-sha-1 scram-sha-256;'
    . ' ssl_protocols TLSv1.2 TLSv1.3;'
    . ' xmpp_certificate other.test %%TESTDIR%%/other.crt'
    . ' %%TESTDIR%%/other.key;';

# 5222 (STARTTLS, no detection) and 5223 (listen ssl) from XT::XmppProxy;
# 5224 the one port of both; 5225 the same for xmpp-server

my $conf = XT::XmppProxy::conf(backend => $p->port, starttls => 'on',
    mail => $tls,
    scram => { 'alice@example.com' => ['alice-scram-pw', 'alice-backend-pw'] });
$conf =~ s/\}\s*$/    server {
        listen 127.0.0.1:%%PORT_5224%%;
        protocol xmpp;
        starttls on;
        timeout 4s;
        xmpp_tls_detect on;
        $tls
    }

    server {
        listen 127.0.0.1:%%PORT_5226%% proxy_protocol;
        protocol xmpp;
        starttls on;
        xmpp_tls_detect on;
        set_real_ip_from 127.0.0.1;
    }

    server {
        listen 127.0.0.1:%%PORT_5225%%;
        protocol xmpp-server;
        starttls on;
        xmpp_tls_detect on;
    }
}
/ or die;
$t->write_file_expand('nginx.conf', $conf);
$t->run();
$t->plan(36);

my ($off, $one, $s2s) = map { $t->port($_) } 5222, 5224, 5225;

my $TLS_NS = 'urn:ietf:params:xml:ns:xmpp-tls';

# a TLS 1.2 ClientHello record header and the start of its body: what a
# TLS client sends first, for the raw cases
my $HELLO = "\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" . ("\x5a" x 32);

# direct(%ssl_opts): a direct TLS stream on the one port; the connection
# and the features
sub direct {
    my (%ssl) = @_;
    my $c = XT::XMPP->new(port => $one, ssl => 1,
        ssl_opts => { SSL_hostname => 'example.com', %ssl })
        or die $XT::XMPP::ERROR;
    $c->open_stream('example.com');
    $c->read_element;
    return ($c, $c->read_element // '');
}

# bound($c): the stream restarted with the backend, a resource bound
sub bound {
    my ($c) = @_;
    $c->open_stream('example.com');
    $c->read_element;
    $c->read_element;
    $c->send("<iq type='set' id='b1'><bind"
        . " xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        . "<resource>td</resource></bind></iq>");
    return $c->read_element // '';
}

# raw($port, $bytes): what nginx answers to these first bytes, and whether
# it closed the connection well before the timeout
sub raw {
    my ($port, $bytes) = @_;
    my $c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
    $c->send($bytes);
    my $eof = $c->eof_within(3);
    return ($c->buffer, $eof);
}

sub log_lines {
    my ($re) = @_;
    return grep { /$re/ } split /\n/, $t->read_file('error.log');
}

###############################################################################

# STARTTLS on the one port

my $c = XT::XMPP->new(port => $one) or die $XT::XMPP::ERROR;
my $f = $c->tls_stream('example.com');
ok($f, 'STARTTLS on the one port') or diag($c->error);
unlike($f // '', qr/<starttls/, 'no <starttls/> after STARTTLS');
$c->auth_plain('alice', 'alice-backend-pw');
like($c->read_element // '', qr/^<success/, 'STARTTLS: PLAIN login');
like(bound($c), qr{<jid>alice\@example\.com/td</jid>},
    'STARTTLS: bound on Prosody');
$c->close;

# direct TLS on the same port

($c, $f) = direct();
like($c->stream_header // '', qr/^<stream:stream/, 'direct TLS: stream header');
unlike($f, qr/<starttls/, 'direct TLS: <starttls/> not offered');
like($f, qr{<channel-binding type='tls-exporter'/>}, 'direct TLS: -PLUS offered');

my ($a, $v) = XT::Scram::exchange($c);
ok($a =~ /^<success/ && $v, 'direct TLS: SCRAM-SHA-256-PLUS tls-exporter')
    or diag($a);
like(bound($c), qr{<jid>alice\@example\.com/td</jid>},
    'direct TLS: bound on Prosody');
$c->close;

my @log = XT::XmppProxy::auth_log($t);
is($log[-1][6], 'on', 'direct TLS: Auth-SSL on');

($c) = direct();
($a, $v) = XT::Scram::exchange($c, cb => 'tls-server-end-point');
ok($a =~ /^<success/ && $v, 'direct TLS: tls-server-end-point') or diag($a);
$c->close;

($c) = direct(SSL_version => 'TLSv1_2');
($a, $v) = XT::Scram::exchange($c, cb => 'tls-unique');
ok($a =~ /^<success/ && $v, 'direct TLS 1.2: tls-unique') or diag($a);
$c->close;

# the log: the STARTTLS login says so, the direct ones do not

my @auth = log_lines(qr/client authenticated with/);
is(scalar(grep { /using starttls/ } @auth), 0,
    'direct TLS sessions are not logged as STARTTLS');
ok(scalar(log_lines(qr/client logged in.*using starttls|using starttls.*login: "alice/)),
    'the STARTTLS session is');

# the certificate by SNI

($c) = direct(SSL_hostname => 'other.test');
is($c->socket->peer_certificate('cn'), 'other.test', 'SNI: other.test');
$c->close;
($c) = direct();
is($c->socket->peer_certificate('cn'), 'example.com', 'SNI: example.com');
$c->close;

# what is refused after direct TLS

($c) = direct();
$c->send("<starttls xmlns='$TLS_NS'/>");
like($c->read_element // '', qr/^<failure xmlns='\Q$TLS_NS\E'/,
    'STARTTLS after direct TLS: failure');
ok($c->eof_within(3), 'STARTTLS after direct TLS: closed');

($c) = direct();
$c->close;
$c = XT::XMPP->new(port => $one, ssl => 1) or die $XT::XMPP::ERROR;
$c->send($HELLO);
$c->read_element;
like($c->read_element // '', qr/<stream:error>.*not-well-formed/,
    'TLS inside TLS: stream error');
ok($c->eof_within(3), 'TLS inside TLS: closed');

# the first byte

my ($out, $eof) = raw($one, "\x01\x02garbage");
ok($out =~ /<stream:error>.*not-well-formed/ && $eof, 'garbage: stream error')
    or diag(XT::XMPP::show($out));

($out) = raw($one, " \n<stream:stream to='example.com' version='1.0'"
    . " xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
like($out, qr/<stream:features><starttls/, 'whitespace first: STARTTLS path');

# without the directive, as before: a ClientHello is not a stream

($out, $eof) = raw($off, $HELLO);
ok($out =~ /<stream:error>.*not-well-formed/ && $eof,
    'directive off: ClientHello is a stream error')
    or diag(XT::XMPP::show($out));
ok(!IO::Socket::SSL->new(PeerAddr => "127.0.0.1:$off",
    SSL_verify_mode => 0, Timeout => 5), 'directive off: no TLS handshake');

# a client that sends nothing gets the timeout (4s), and so does one that
# stops after the first byte of a handshake

my $start = time();
$c = XT::XMPP->new(port => $one) or die $XT::XMPP::ERROR;
my $h = XT::XMPP->new(port => $one) or die $XT::XMPP::ERROR;
$h->send("\x16");
ok($c->eof_within(15), 'silent client: closed');
my $took = time() - $start;
ok($took > 3.5 && $took < 12, 'silent client: after the timeout')
    or diag("closed after $took s");
ok(log_lines(qr/client timed out.*while detecting TLS/), 'logged as such');

# (nginx's handshake timeout is not logged, as on "listen ... ssl")
ok($h->eof_within(15) && time() - $start < 12,
    'a lone handshake byte: closed after the timeout');

# after a PROXY protocol header: the first byte after it decides

$c = XT::XMPP->new(port => $t->port(5226)) or die $XT::XMPP::ERROR;
$c->send("PROXY TCP4 192.0.2.7 127.0.0.1 40000 5226\r\n");
$c->starttls(SSL_hostname => 'example.com') or diag($c->error);
$c->open_stream('example.com');
$c->read_element;
$f = $c->read_element // '';
unlike($f, qr/<starttls/, 'PROXY protocol, then direct TLS');
$c->auth_plain('alice', 'alice-backend-pw');
like($c->read_element // '', qr/^<success/, 'PROXY protocol: login');
$c->close;
@log = XT::XmppProxy::auth_log($t);
is(join('|', @{$log[-1]}[1, 5, 6]), 'alice@example.com|192.0.2.7|on',
    'PROXY protocol: Client-IP and Auth-SSL');

# xmpp-server: after direct TLS the remote's stream goes to auth_http at
# once (no STARTTLS step), marked as TLS

$c = XT::XMPP->new(port => $s2s, ssl => 1) or die $XT::XMPP::ERROR;
$c->send("<?xml version='1.0'?><stream:stream to='example.com'"
    . " from='remote.test'"
    . " version='1.0' xmlns='jabber:server' xmlns:db='jabber:server:dialback'"
    . " xmlns:stream='http://etherx.jabber.org/streams'>");
$c->read_element;
$c->read_element;
@log = XT::XmppProxy::auth_log($t);
is(join('|', @{$log[-1]}[1, 3, 6]), 'remote.test|xmpp-server|on',
    'xmpp-server: direct TLS, to auth_http with Auth-SSL');
$c->close;

# a real client, both ways, on the one port

SKIP: {
    skip 'slixmpp missing', 2 unless XT::Slixmpp::has_slixmpp();

    for my $mode (qw/starttls direct/) {
        my ($ok, $o) = XT::Slixmpp::roundtrip(port => $one, mode => $mode,
            mech => 'PLAIN',
            a => ['alice@example.com', 'alice-backend-pw'],
            b => ['bob@example.com', 'bob-backend-pw']);
        ok($ok, "slixmpp $mode on the one port") or diag($o);
    }
}

# the configuration errors

my $t2 = XT::Nginx->new();
my $td = $t->testdir;
for my $case (['xmpp', '', qr/"xmpp_tls_detect" requires "ssl_certificate"/],
    ['xmpp-server-out', "ssl_certificate $td/xmpp.crt;"
        . " ssl_certificate_key $td/xmpp.key;",
        qr/"xmpp_tls_detect" is not for "protocol xmpp-server-out"/])
{
    my ($proto, $ssl, $re) = @$case;
    $t2->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    $ssl

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol $proto;
        xmpp_tls_detect on;
    }
}
EOF
    my ($rc, $o) = $t2->config_test;
    ok($rc != 0 && $o =~ $re, "configuration: $proto") or diag($o);
}

###############################################################################
