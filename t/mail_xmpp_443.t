#!/usr/bin/perl

# The example configuration for XMPP on port 443 next to HTTPS
# (conf/xmpp-443.conf), as an operator copies it: nginx's stream module
# reads the ClientHello (ssl_preread) and passes the connection by ALPN
# ("xmpp-client") or SNI (the XMPP name) to the mail listener, anything
# else to the HTTPS server, both with the PROXY protocol.  On the one
# port: an HTTPS request (with browser ALPN and with none) gets the page;
# a direct TLS XMPP login with ALPN xmpp-client, with the raw client and
# with a real one (slixmpp), logs in on a real Prosody; auth_http sees
# the client's own address (the client connects from 127.0.0.2, the
# stream proxy from 127.0.0.1); the same for the HTTPS log.  Besides, the
# example's 5222 takes STARTTLS and direct TLS.  Only paths, ports, the
# backend port and worker_processes of the example are changed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::SSL;
use Test::More;

use XT::Nginx;
use XT::Prosody;
use XT::Slixmpp;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http http_ssl stream
    stream_ssl_preread/);

# the client's own address: another loopback address than the proxy's

my $probe = IO::Socket::INET->new(LocalAddr => '127.0.0.2', Listen => 1);
plan(skip_all => 'no 127.0.0.2 on this machine') unless $probe;
close $probe;

my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ['example.com'],
    users => [['alice', 'example.com', 'alice-pw'],
              ['bob', 'example.com', 'bob-pw']]);

my $td = $t->testdir;
mkdir "$td/xmpp";
mkdir "$td/html";

$t->gen_cert('xmpp/fullchain', cn => 'xmpp.example.com');
rename "$td/xmpp/fullchain.key", "$td/xmpp/privkey.pem";
rename "$td/xmpp/fullchain.crt", "$td/xmpp/fullchain.pem";
$t->gen_cert('xmpp/example.com', cn => 'example.com');
$t->write_file('html/index.html', "the https page of example.com\n");

open(my $fh, '<', XT::Nginx::repo_root() . '/conf/xmpp-443.conf') or die $!;
my $conf = join '', <$fh>;
close $fh;

my $backend = $p->port;

$conf =~ s{/etc/nginx/xmpp/}{%%TESTDIR%%/xmpp/}g or die;
$conf =~ s{/var/log/nginx/}{%%TESTDIR%%/}g or die;
$conf =~ s{/var/www/html}{%%TESTDIR%%/html}g or die;
$conf =~ s{listen\s+443;}{listen 127.0.0.1:%%PORT_4430%%;} or die;
$conf =~ s{listen\s+5222;}{listen 127.0.0.1:%%PORT_5222%%;} or die;
$conf =~ s{127\.0\.0\.1:5224}{127.0.0.1:%%PORT_5224%%}g or die;
$conf =~ s{127\.0\.0\.1:8443}{127.0.0.1:%%PORT_8443%%}g or die;
$conf =~ s{127\.0\.0\.1:9000}{127.0.0.1:%%PORT_8081%%}g or die;
$conf =~ s{(Auth-Port\s+)15222;}{$1$backend;} or die;
$conf =~ s{^worker_processes\s+auto;}{}m or die;

$t->write_file_expand('nginx.conf', "%%TEST_GLOBALS%%\n$conf");
$t->run();
$t->plan(18);

my ($port, $c2s) = map { $t->port($_) } 4430, 5222;

# https(%ssl): GET / through port 443 from 127.0.0.2; the response
sub https {
    my (%ssl) = @_;
    my $s = IO::Socket::SSL->new(PeerAddr => "127.0.0.1:$port",
        LocalAddr => '127.0.0.2', SSL_verify_mode => SSL_VERIFY_NONE,
        SSL_hostname => 'example.com', Timeout => 10, %ssl)
        or return "connect: $SSL_ERROR";
    print $s "GET / HTTP/1.0\r\nHost: example.com\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    close $s;
    return $r;
}

# xmpp(%ssl): a direct TLS stream through port 443 from 127.0.0.2, its
# header read; the connection
sub xmpp {
    my (%ssl) = @_;
    my $c = XT::XMPP->new(port => $port, local_addr => '127.0.0.2', ssl => 1,
        timeout => 10,
        ssl_opts => { SSL_hostname => 'example.com', %ssl })
        or return;
    $c->open_stream('example.com');
    $c->read_element;
    return $c;
}

# bound($c, $user): SASL PLAIN on the features just read, the restart and
# a bound resource; the bind result
sub bound {
    my ($c, $user) = @_;
    $c->auth_plain($user, "$user-pw");
    my $s = $c->read_element // '';
    return "auth: $s" unless $s =~ /^<success/;
    $c->open_stream('example.com');
    $c->read_element;
    $c->read_element;
    $c->send("<iq type='set' id='b1'><bind"
        . " xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        . "<resource>r443</resource></bind></iq>");
    return $c->read_element // '';
}

sub auth_log { [ split /\n/, eval { $t->read_file('xmpp-auth.log') } // '' ] }

###############################################################################

# HTTPS: browser ALPN, and none

my $r = https(SSL_alpn_protocols => ['h2', 'http/1.1']);
like($r, qr{^HTTP/1\.1 200 .*the https page}s, 'HTTPS with ALPN h2,http/1.1');
$r = https();
like($r, qr{^HTTP/1\.1 200 .*the https page}s, 'HTTPS without ALPN');
my @https = split /\n/, $t->read_file('https.log');
is(scalar(grep { m{^127\.0\.0\.2 .*"GET / HTTP/1\.0" 200} } @https), 2,
    'HTTPS log: the client address from the PROXY protocol');

# XMPP with ALPN xmpp-client on the same port

my $c = xmpp(SSL_alpn_protocols => ['xmpp-client']);
ok($c, 'XMPP with ALPN xmpp-client: TLS') or diag($XT::XMPP::ERROR);

SKIP: {
    skip 'no connection', 6 unless $c;

    is($c->socket->alpn_selected // '', 'xmpp-client', 'ALPN xmpp-client chosen');
    is($c->socket->peer_certificate('cn'), 'example.com',
        'the certificate of the domain (SNI)');
    like($c->stream_header // '', qr/^<stream:stream .*from='example\.com'/,
        'stream header from nginx');
    my $f = $c->read_element // '';
    ok($f =~ /<mechanism>PLAIN</ && $f !~ /<starttls/,
        'features: direct TLS, no STARTTLS') or diag($f);
    like(bound($c, 'alice'), qr{<jid>alice\@example\.com/r443</jid>},
        'login and bind on Prosody');
    $c->close;

    my ($line) = grep { / alice\@example\.com / } @{auth_log()};
    like($line // '', qr/ alice\@example\.com 127\.0\.0\.2 on$/,
        'auth_http: Client-IP is the client, Auth-SSL on');
}

# the XMPP name without ALPN goes to XMPP too; another name to HTTPS

$c = xmpp(SSL_hostname => 'xmpp.example.com');
like($c ? $c->stream_header // '' : $XT::XMPP::ERROR, qr/^<stream:stream/,
    'SNI xmpp.example.com without ALPN: XMPP');
is($c ? $c->socket->peer_certificate('cn') : '', 'xmpp.example.com',
    'SNI xmpp.example.com: its certificate');
$c->close if $c;

$r = https(SSL_hostname => 'www.example.com');
like($r, qr{^HTTP/1\.1 200 }, 'another name without ALPN: HTTPS');

# a real client: slixmpp uses ALPN xmpp-client on direct TLS

SKIP: {
    skip 'slixmpp missing', 1 unless XT::Slixmpp::has_slixmpp();

    my ($ok, $out) = XT::Slixmpp::roundtrip(port => $port, mode => 'direct',
        mech => 'PLAIN',
        a => ['alice@example.com', 'alice-pw'],
        b => ['bob@example.com', 'bob-pw']);
    ok($ok, 'slixmpp direct TLS through port 443') or diag($out);
}

# 5222: STARTTLS and direct TLS on one port

$c = XT::XMPP->new(port => $c2s) or die $XT::XMPP::ERROR;
my $f = $c->tls_stream('example.com');
ok($f && $f =~ /<mechanism>PLAIN</, '5222: STARTTLS') or diag($c->error);
like(bound($c, 'bob'), qr{<jid>bob\@example\.com/r443</jid>},
    '5222: STARTTLS login');
$c->close;

$c = XT::XMPP->new(port => $c2s, ssl => 1,
    ssl_opts => { SSL_hostname => 'example.com' }) or die $XT::XMPP::ERROR;
$c->open_stream('example.com');
$c->read_element;
$f = $c->read_element // '';
ok($f =~ /<mechanism>PLAIN</ && $f !~ /<starttls/, '5222: direct TLS')
    or diag($f);
like(bound($c, 'bob'), qr{<jid>bob\@example\.com/r443</jid>},
    '5222: direct TLS login');
$c->close;

###############################################################################
