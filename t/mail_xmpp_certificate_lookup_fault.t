#!/usr/bin/perl

# Certificate lookups against a scripted service (XT::FakeServer), for
# what a real service does not do on demand: answer only after the client
# that asked has gone (the lookup outlives the session), keep the
# connection open after an answer with Content-Length, close before the
# end of the body, announce a body larger than nginx takes.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);

use XT::Nginx;
use XT::OpenSSL qw(s_client cn starttls_cn);
use XT::FakeServer;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp/);

my $td = $t->testdir;

$t->gen_cert('default', cn => 'default.test');

my %pem;
for my $d (qw/late.test ka.test/) {
    $t->gen_cert($d, cn => $d);
    $pem{$d} = join('', map { $t->read_file($_) } "$d.crt", "$d.key");
}

# the service: what it does depends on the domain asked for

my $service = XT::FakeServer->new(dir => "$td/service", handler => sub {
    my ($sock, $f, $id) = @_;
    my $req = $f->read_http($sock, $id) // return;
    my ($domain) = $req =~ /^XMPP-Domain: (\S+)\r$/m;
    $domain //= '';

    if ($domain eq 'late.test') {

        # answer when the test says so, after the client has gone

        wait_file("$td/go", 30) or return;
        print $sock "HTTP/1.0 200 OK\r\n\r\n$pem{$domain}";
        return;
    }

    if ($domain eq 'ka.test') {

        # Content-Length, in pieces, then the connection stays open

        my $head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file"
            . "\r\nContent-Length: " . length($pem{$domain}) . "\r\n"
            . "Connection: keep-alive\r\n\r\n";
        for my $part ($head, unpack('(a400)*', $pem{$domain})) {
            syswrite($sock, $part);
            sleep 0.02;
        }
        $f->read_some($sock, $id, 10);
        return;
    }

    if ($domain eq 'nf.test') {
        syswrite($sock, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n"
            . "\r\nnot found");
        $f->read_some($sock, $id, 10);
        return;
    }

    if ($domain eq 'short.test') {
        syswrite($sock, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
            . substr($pem{'ka.test'}, 0, 100));
        return;
    }

    if ($domain eq 'big.test') {
        syswrite($sock, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        $f->read_some($sock, $id, 10);
        return;
    }
});

my $sp = $service->port;

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;

    ssl_certificate %%TESTDIR%%/default.crt;
    ssl_certificate_key %%TESTDIR%%/default.key;

    xmpp_certificate_lookup http://127.0.0.1:$sp/cert;
    xmpp_certificate_lookup_timeout 5s;

    # the client's time is up long before the lookup's

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls only;
        timeout 1s;
        xmpp_certificate_lookup_timeout 30s;
    }

    server {
        listen 127.0.0.1:%%PORT_5223%%;
        protocol xmpp;
        starttls only;
    }
}
EOF
$t->run();
$t->plan(16);

my ($p, $p2) = map { $t->port($_) } 5222, 5223;

# the client times out while the lookup waits; the answer comes after it
# has gone, and the lookup ends on its own (the session's log and pool
# are gone: ASan reports any use of them)

my $c = XT::XMPP->new(port => $p) or die $XT::XMPP::ERROR;
$c->open_stream('late.test');
$c->read_until(qr/<\/stream:features>/) or die 'no features';
$c->send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
ok(wait_for(sub { $service->count }), 'late: lookup started');
ok($c->eof_within(10), 'late: the client timed out, nginx closed');
ok(!defined $c->read_until(qr/<proceed/, 0), 'late: no <proceed/>');

open(my $go, '>', "$td/go") or die $!;
close $go;

ok(wait_for(sub { starttls_cn($p, 'late.test') eq 'late.test' }),
    'late: the answer was kept for the next client');
is($service->count, 1, 'late: one lookup');

# Content-Length: complete when the body is, the connection left open

my $start = time();
is(starttls_cn($p2, 'ka.test'), 'ka.test', 'keep-alive: looked up');
my $took = time() - $start;
ok($took < 3, 'keep-alive: not waiting for the close') or diag("took $took");

my ($req) = grep { /XMPP-Domain: ka\.test/ } $service->requests;
like($req, qr/^GET \/cert\?domain=ka\.test HTTP\/1\.0\r\n/,
    'request line');
like($req, qr/\r\nConnection: close\r\n/, 'Connection: close sent');

$start = time();
is(starttls_cn($p2, 'nf.test'), 'default.test', 'keep-alive 404: default');
$took = time() - $start;
ok($took < 3, 'keep-alive 404: not waiting for the close')
    or diag("took $took");

is(starttls_cn($p2, 'short.test'), 'default.test', 'short body: default');

$start = time();
is(starttls_cn($p2, 'big.test'), 'default.test', 'too large: default');
$took = time() - $start;
ok($took < 3, 'too large: not waiting') or diag("took $took");

$t->stop();
my $log = $t->read_file('error.log');

like($log, qr/lookup for "short\.test".*before the end of the response/,
    'short body logged');
like($log, qr/lookup for "big\.test" failed: response too large/,
    'too large logged');

###############################################################################

sub wait_file {
    my ($file, $secs) = @_;
    my $end = time() + $secs;
    while (time() < $end) {
        return 1 if -e $file;
        sleep 0.02;
    }
    return 0;
}

sub wait_for {
    my ($cond, $secs) = @_;
    my $end = time() + ($secs // 10);
    while (time() < $end) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return 0;
}

###############################################################################
