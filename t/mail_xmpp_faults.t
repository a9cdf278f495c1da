#!/usr/bin/perl

# Faults around an XMPP session: the auth_http server and the backend
# failing in every way, and the client going away in every phase.  The
# client must get a SASL failure and a stream error (never a hang until
# "timeout"), nginx must log why, and no descriptor may be left behind.
#
# auth_http and the backends are scripted fakes (XT::FakeServer), because
# the point is to make them misbehave on purpose: hang, close, answer 500
# or garbage.  The login through a real backend is t/mail_xmpp_login.t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time sleep);

use XT::FakeServer;
use XT::Nginx qw(free_port);
use XT::XMPP;

$SIG{PIPE} = 'IGNORE';

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp/);

my $NS = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";
my $HDR = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0' $NS>";
my $SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";
my $UHDR = "<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
    . " xmlns:stream='http://etherx.jabber.org/streams' id='b1'"
    . " from='example.com' version='1.0'>";
my $FEAT = "<stream:features><mechanisms $SASL><mechanism>PLAIN</mechanism>"
    . "</mechanisms></stream:features>";

# the backends: what each does after the stream header of nginx

my %backend;
for my $b (
    [close => sub { }],
    [hang => sub { sleep 30 }],
    [bgarbage => sub { my ($s) = @_; print $s "HTTP/1.1 400 Bad Request\r\n\r\n"; sleep 30 }],
    [html => sub { my ($s) = @_; print $s "<html><body>hello</body></html>"; sleep 30 }],
    [error => sub {
        my ($s) = @_;
        print $s $UHDR . "<stream:error><host-unknown"
            . " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
            . "</stream:stream>";
        sleep 1;
    }],
    [failure => sub {
        my ($s, $f, $id) = @_;
        print $s $UHDR . $FEAT;
        $f->read_until($s, $id, qr{</auth>});
        print $s "<failure $SASL><not-authorized/></failure>";
        $f->read_until($s, $id, qr{\z never}, 10);
    }],
    [splice => sub {
        my ($s, $f, $id) = @_;
        print $s $UHDR . $FEAT;
        $f->read_until($s, $id, qr{</auth>});
        print $s "<success $SASL/>";
        $f->read_until($s, $id, qr{<stream:stream[^>]*>});
        print $s $UHDR . "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
            . "</stream:features><message><body>half";
        sleep 0.2;
    }],
) {
    my ($name, $script) = @$b;
    $backend{$name} = XT::FakeServer->new(dir => $t->testdir . "/backend-$name",
        handler => sub {
            my ($s, $f, $id) = @_;
            $s->autoflush(1);
            $f->read_until($s, $id, qr{<stream:stream[^>]*>}) or return;
            $script->($s, $f, $id);
        });
}
my $refused = free_port();

# auth_http: the user names the fault or the backend

my $auth = XT::FakeServer->new(dir => $t->testdir . '/auth',
    handler => sub {
        my ($s, $f, $id) = @_;
        my $req = $f->read_http($s, $id) // return;
        my ($user) = $req =~ /^Auth-User: ([^\@\r]*)/m;
        $user //= '';
        my $ok = "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n";
        if ($user eq 'slow') { sleep 3; return }
        if ($user eq 'e500') {
            print $s "HTTP/1.0 500 Internal Server Error\r\n\r\n"; return }
        if ($user eq 'garbage') { print $s "\x00\xff\x16garbage\r\n\r\n"; return }
        if ($user eq 'noserver') {
            print $s "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\r\n"; return }
        if ($user eq 'closeauth') { return }
        if ($user eq 'refused') {
            print $s $ok . "Auth-Port: $refused\r\n\r\n"; return }
        my $b = $backend{$user} or do {
            print $s "HTTP/1.0 200 OK\r\nAuth-Status: Unknown user\r\n\r\n"; return };
        print $s $ok . 'Auth-Port: ' . $b->port . "\r\n\r\n";
    });

$t->gen_cert('xmpp', cn => 'example.com');
$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

mail {
    auth_http 127.0.0.1:@{[ $auth->port ]}/auth;
    auth_http_timeout 1s;
    server_name proxy.test;
    timeout 3s;

    ssl_certificate %%TESTDIR%%/xmpp.crt;
    ssl_certificate_key %%TESTDIR%%/xmpp.key;

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls off;
    }

    server {
        listen 127.0.0.1:%%PORT_5223%%;
        protocol xmpp;
        starttls on;
    }

    server {
        listen 127.0.0.1:%%PORT_5224%%;
        protocol xmpp;
        starttls on;
        auth_http 127.0.0.1:@{[ free_port() ]}/auth;
    }
}
EOF
$t->run();
$t->plan(33);

my $port = $t->port(5222);
# (XT_TIME_SCALE: t/valgrind runs everything slower)
my $SCALE = $ENV{XT_TIME_SCALE} // 1;
my $BOUND = ($t->has_feature('asan') ? 2.5 : 1.5) * $SCALE;

my $TEMP = qr{<failure $SASL><temporary-auth-failure/></failure>};
sub serr { qr{<stream:error><$_[0] xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>\z} }

###############################################################################

# auth_http faults: temporary-auth-failure and internal-server-error, and a
# line in error.log

fault('auth_http server down', 'alice', qr/$TEMP@{[ serr('internal-server-error') ]}/,
    qr/(?:connect|recv)\(\) failed .* while in http auth state/,
    port => $t->port(5224));
fault('auth_http slower than auth_http_timeout', 'slow',
    qr/$TEMP@{[ serr('internal-server-error') ]}/,
    qr/auth http server .* timed out/, bound => 1 + $BOUND);
fault('auth_http answers 500', 'e500', qr/$TEMP@{[ serr('internal-server-error') ]}/,
    qr/auth http server .* (?:sent invalid|did not send)/);
fault('auth_http answers garbage', 'garbage',
    qr/$TEMP@{[ serr('internal-server-error') ]}/,
    qr/auth http server .* sent invalid/);
# (nginx's auth_http module logs nothing when the server closes early)
fault('auth_http closes without an answer', 'closeauth',
    qr/$TEMP@{[ serr('internal-server-error') ]}/, undef);
fault('auth_http OK without Auth-Server/Auth-Port', 'noserver',
    qr/$TEMP@{[ serr('internal-server-error') ]}/,
    qr/auth http server .* did not send server or port/);

# the auth server down, on a server with "starttls on" (STARTTLS offered,
# PLAIN allowed before TLS): the SASL failure at once, the reason logged

{
    my $c = client($t->port(5224));
    $c->send($HDR);
    $c->read_element;
    like($c->read_element // '',
        qr/<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'\/><mechanisms\b/,
        'starttls on: STARTTLS optional, PLAIN offered');
    $c->send("<auth $SASL mechanism='PLAIN'>"
        . encode_base64("\0alice\0alice-pw", '') . '</auth>');
    like($c->read_element // '', qr{^<failure $SASL><temporary-auth-failure/>},
        'auth server down');
    ok($c->eof_within(3), 'auth server down: closed');
    like($t->read_file('error.log'),
        qr/\(111: Connection refused\) while in http auth state/,
        'auth server down: logged');
}

# backend faults

fault('backend refuses the connection', 'refused',
    qr/$TEMP@{[ serr('remote-connection-failed') ]}/,
    qr/(?:connect|send|recv)\(\) failed \(111: Connection refused\)/);
fault('backend accepts, then closes', 'close',
    qr/$TEMP@{[ serr('remote-connection-failed') ]}/,
    qr/upstream closed connection/);
fault('backend never answers', 'hang',
    qr/$TEMP@{[ serr('remote-connection-failed') ]}/,
    qr/upstream timed out/, bound => 3 + $BOUND, min => 2.5);
fault('backend answers garbage (HTTP)', 'bgarbage',
    qr/$TEMP@{[ serr('remote-connection-failed') ]}/,
    qr/upstream sent invalid XML/);
fault('backend answers garbage (an HTML page)', 'html',
    qr/$TEMP@{[ serr('remote-connection-failed') ]}/,
    qr/upstream sent invalid XML/);
fault('backend sends a stream error', 'error',
    qr/$TEMP@{[ serr('remote-connection-failed') ]}/,
    qr/upstream sent stream error/);
fault('backend answers <failure/>', 'failure',
    qr{<failure $SASL><not-authorized/></failure></stream:stream>\z},
    qr/upstream rejected login/, close => 1);

# the backend closes in the middle of the splice: the client sees the end

{
    my $c = login('splice');
    my $s = $c->read_element // '';
    $c->send($HDR);
    my $eof = $c->eof_within(2 * $SCALE);
    like($s . $c->buffer, qr{^<success \Q$SASL\E/><\?xml.*<message><body>half\z}s,
        'backend closes in the splice: what it sent arrives');
    ok($eof, 'backend closes in the splice: the client connection is closed');
}

###############################################################################

# the client goes away in every phase; the worker keeps no descriptor

my $fds = worker_fds();
my $c;

$c = client(); $c->close;
$c = client(); $c->send($HDR); $c->read_element; $c->close;
$c = client($t->port(5223));
$c->send($HDR); $c->read_element; $c->read_element;
$c->send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
$c->read_element;
$c->send("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03");    # half a ClientHello
$c->close;
$c = login('slow'); sleep 0.3; $c->close;       # auth_http pending
$c = login('hang'); sleep 0.3; $c->close;       # backend login pending
$c = login('failure'); $c->read_element; $c->close;  # after a failure
sleep 3.5;   # the pending auth_http request and backend run out

my $left = worker_fds();
ok(defined $fds && defined $left && $left <= $fds,
    'client disconnects in every phase: no descriptor left')
    or diag("worker descriptors: before " . ($fds // '?') . ", after "
        . ($left // '?'));

my $log = $t->read_file('error.log') // '';
ok($log !~ /worker process \d+ exited/, 'no worker process exited');

###############################################################################

sub client {
    my ($p) = @_;
    return XT::XMPP->new(port => $p // $port, timeout => 5)
        // die "$XT::XMPP::ERROR\n";
}

sub login {
    my ($user, $p) = @_;
    my $c = client($p);
    $c->send($HDR);
    $c->read_element;
    $c->read_element;
    $c->send("<auth $SASL mechanism='PLAIN'>"
        . encode_base64("\0$user\0secret", '') . '</auth>');
    return $c;
}

# fault($name, $user, qr/client gets/, qr/error.log/, %o): two tests (one
# without qr/error.log/)
sub fault {
    my ($name, $user, $expect, $logre, %o) = @_;
    my $off = length($t->read_file('error.log') // '');
    my $t0 = time();
    my $c = login($user, $o{port});
    my $bound = $o{bound} // $BOUND;
    if ($o{close}) {
        my $end = time() + $bound;
        $c->fill($end) while $c->buffer !~ /<failure/ && time() < $end;
        $c->send('</stream:stream>');
    }
    my $eof = $c->eof_within($bound + 1 - (time() - $t0));
    my $took = time() - $t0;
    my @why;
    push @why, 'no EOF' unless $eof;
    push @why, sprintf('closed after %.2fs', $took) if $took > $bound;
    push @why, sprintf('closed after %.2fs, too early', $took)
        if $o{min} && $took < $o{min};
    push @why, "client did not get $expect" unless $c->buffer =~ $expect;
    ok(!@why, "$name: client") or diag(join "\n", @why,
        'got: ...' . XT::XMPP::show(substr($c->buffer, -190)));
    return unless $logre;
    my $end = time() + 2 * $SCALE;
    my $log;
    while (time() < $end) {
        $log = substr($t->read_file('error.log') // '', $off);
        last if $log =~ $logre;
        sleep 0.05;
    }
    ok($log =~ $logre, "$name: logged") or diag(join "\n",
        grep { !/\[debug\]/ } split /\n/, $log);
}

# the number of open descriptors of the worker processes
sub worker_fds {
    my $master = $t->pid or return undef;
    my $n = 0;
    for my $st (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $st or next;
        my $line = <$fh> // next;
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*\) \S+ (\d+)/ or next;
        next unless $ppid == $master;
        my @fd = glob "/proc/$pid/fd/*";
        $n += @fd;
    }
    return $n;
}
