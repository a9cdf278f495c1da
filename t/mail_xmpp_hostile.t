#!/usr/bin/perl

# Hostile input before authentication, one test per case.  For each case:
# the RFC 6120 stream error (or SASL failure) that the case calls for, then
# "</stream:stream>" and the connection closed well before "timeout" (3s),
# and no request to auth_http unless the case is a well-formed login.  At
# the end: no worker process exited, and (the harness) no [alert], crash or
# sanitizer report in error.log.
#
# auth_http is a scripted fake (XT::FakeServer), not nginx's http module,
# because the escaping cases need the raw bytes of the request that nginx
# sends; it refuses every login, so no backend is needed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::SSL;
use POSIX ();
use Time::HiRes qw(time sleep);

use XT::FakeServer;
use XT::Nginx;
use XT::XMPP;

$SIG{PIPE} = 'IGNORE';

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp/);

$t->gen_cert('xmpp', cn => 'example.com');
$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    server_name proxy.test;
    timeout 3s;
    xmpp_client_buffer 4k;

    ssl_certificate %%TESTDIR%%/xmpp.crt;
    ssl_certificate_key %%TESTDIR%%/xmpp.key;

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls on;
    }

    server {
        listen 127.0.0.1:%%PORT_5224%%;
        protocol xmpp;
        starttls off;
    }

    server {
        listen 127.0.0.1:%%PORT_5225%%;
        protocol xmpp;
        starttls only;
    }
}
EOF

my $auth = XT::FakeServer->new(dir => $t->testdir . '/auth',
    port => $t->port(8081), handler => sub {
        my ($sock, $f, $id) = @_;
        $f->read_http($sock, $id) // return;
        print $sock "HTTP/1.0 200 OK\r\n"
            . "Auth-Status: Invalid login or password\r\n\r\n";
    });

$t->run();
$t->plan(70);

my $port = $t->port(5222);
my $port_off = $t->port(5224);
my $port_only = $t->port(5225);

# an error must come at once, not when "timeout" (3s) strikes
# (XT_TIME_SCALE: t/valgrind runs everything slower)
my $SCALE = $ENV{XT_TIME_SCALE} // 1;
my $BOUND = ($t->has_feature('asan') ? 2.5 : 1.5) * $SCALE;

my $NS = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";
my $HDR = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0' $NS>";
my $SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";

sub err { qr{<stream:error><$_[0] xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>\z} }
sub sasl { qr{<failure $SASL><$_[0]/></failure>} }

###############################################################################

# too long

hostile('more than xmpp_client_buffer without a complete element',
    [$HDR, "<auth $SASL mechanism='PLAIN'>" . ('QUFB' x 1100)],
    err('policy-violation'));
hostile('over-long attribute value', ["<stream:stream to='" . ('a' x 2000)],
    err('policy-violation'));
hostile('over-long element name before the stream', ['<' . ('s' x 100)],
    err('policy-violation'));

# restricted XML, RFC 6120 section 11.1

hostile('DOCTYPE', ["<?xml version='1.0'?><!DOCTYPE stream [ ]>"],
    err('restricted-xml'));
hostile('ENTITY declaration', ["<!ENTITY x 'y'>"], err('restricted-xml'));
hostile('comment before the stream', ['<!-- hello -->'],
    err('restricted-xml'));
hostile('comment in the stream', [$HDR, '<!-- hello -->'],
    err('restricted-xml'));
hostile('processing instruction', [$HDR, '<?php echo 1; ?>'],
    err('restricted-xml'));
hostile('second XML declaration', [$HDR, "<?xml version='1.0'?>"],
    err('restricted-xml'));
hostile('CDATA section', [$HDR, "<auth $SASL mechanism='PLAIN'><![CDATA[x]]>"],
    err('restricted-xml'));

# not well-formed

hostile('undefined entity in an attribute',
    ["<stream:stream to='&foo;' version='1.0' $NS>"], err('not-well-formed'));
hostile('undefined entity in text',
    [$HDR, "<auth $SASL mechanism='PLAIN'>&foo;</auth>"],
    err('not-well-formed'));
hostile('invalid UTF-8', ["<stream:stream to='\xc3\x28' version='1.0' $NS>"],
    err('not-well-formed'));
hostile('overlong UTF-8 encoding of "<"', [$HDR, "\xc0\xbc"],
    err('not-well-formed'));
hostile('UTF-16 surrogate in UTF-8', ["<stream:stream to='\xed\xa0\x80'"],
    err('not-well-formed'));
hostile('NUL byte', [$HDR, "\0"], err('not-well-formed'));
hostile('control byte (ESC)', ["<stream:stream to='a\x1bb'"],
    err('not-well-formed'));
hostile('mismatched end tag',
    [$HDR, "<auth $SASL mechanism='PLAIN'>AGEAYg==</aut>"],
    err('not-well-formed'));

# not authorized before authentication

hostile('a message stanza before authentication',
    [$HDR, "<message to='bob\@example.com'><body>hi</body></message>"],
    err('not-authorized'));
hostile('an iq before authentication', [$HDR, "<iq type='get' id='1'/>"],
    err('not-authorized'));
hostile('an unknown element before authentication', [$HDR, '<foo/>'],
    err('not-authorized'));
hostile('1000 unknown elements before authentication',
    [$HDR, '<foo/>' x 1000], err('not-authorized'));

# the stream header

hostile('wrong stream namespace',
    ["<stream:stream to='example.com' version='1.0' xmlns='jabber:client'"
     . " xmlns:stream='http://example.com/streams'>"],
    err('invalid-namespace'));
hostile('jabber:server as the content namespace',
    ["<stream:stream to='example.com' version='1.0' xmlns='jabber:server'"
     . " xmlns:stream='http://etherx.jabber.org/streams'>"],
    err('invalid-namespace'));
hostile('missing to', ["<stream:stream version='1.0' $NS>"],
    err('host-unknown'));
hostile('empty to', ["<stream:stream to='' version='1.0' $NS>"],
    err('host-unknown'));
hostile('missing version', ["<stream:stream to='example.com' $NS>"],
    err('unsupported-version'));
hostile('version 0.9', ["<stream:stream to='example.com' version='0.9' $NS>"],
    err('unsupported-version'));
(my $hdr2 = $HDR) =~ s/^<\?xml[^>]*>//;
hostile('second stream header before authentication', [$HDR, $hdr2],
    err('not-authorized'));
hostile('</stream:stream> before authentication', [$HDR, '</stream:stream>'],
    qr{</stream:features></stream:stream>\z});

# STARTTLS

hostile('<starttls/> twice', sub {
    my ($c) = @_;
    $c->tls_stream('example.com') or return;
    $c->send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
}, qr{<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>\z});
hostile('<starttls/> under "starttls off"',
    [$HDR, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"],
    qr{<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>\z},
    port => $port_off);
hostile('auth before TLS under "starttls only"',
    [$HDR, sasl_plain("\0alice\0secret"), '</stream:stream>'],
    qr{<failure $SASL><encryption-required/></failure></stream:stream>\z},
    port => $port_only);

# other protocols and noise

hostile('TLS ClientHello on the STARTTLS port', [client_hello()],
    err('not-well-formed'));
hostile('HTTP request on the XMPP port',
    ["GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"], err('not-well-formed'));
srand(6120);
hostile('64 KiB of random bytes',
    [join '', map { chr(int(rand(256))) } 1 .. 65536],
    qr{<stream:error><[a-z-]+ xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>}
    . qr{</stream:error></stream:stream>\z});

# SASL PLAIN payloads

hostile('base64 decoding to no NUL',
    [$HDR, sasl_plain('alice-secret'), '</stream:stream>'],
    qr{@{[sasl('malformed-request')]}</stream:stream>\z});
hostile('base64 decoding to three NULs',
    [$HDR, sasl_plain("\0alice\0sec\0ret"), '</stream:stream>'],
    qr{@{[sasl('malformed-request')]}</stream:stream>\z});
hostile('empty password',
    [$HDR, sasl_plain("\0alice\0"), '</stream:stream>'],
    qr{@{[sasl('malformed-request')]}</stream:stream>\z});
hostile('not base64',
    [$HDR, "<auth $SASL mechanism='PLAIN'>AGFs*aWNl!</auth>",
     '</stream:stream>'],
    qr{@{[sasl('incorrect-encoding')]}</stream:stream>\z});
hostile('over-long base64 that fits the buffer (3000 bytes)',
    [$HDR, sasl_plain('x' x 2200), '</stream:stream>'],
    qr{@{[sasl('malformed-request')]}</stream:stream>\z});
hostile('base64 of 1 MiB', [$HDR, sasl_plain('x' x 1048576)],
    err('policy-violation'));

# slow loris: one byte per second never completes the header in time

hostile('one byte per second', sub {
    my ($c) = @_;
    for my $ch (split //, $HDR) {
        last unless $c->send($ch);
        last if $c->eof_within(1);
    }
}, err('connection-timeout'), bound => 3 + $BOUND, min => 2.5);

# whitespace keepalives are fine, and the session goes on

hostile('10000 whitespace keepalives, then a login', sub {
    my ($c) = @_;
    $c->send($HDR);
    $c->send(' ') for 1 .. 10000;
    $c->send(sasl_plain("\0alice\0secret"));
    wait_for($c, qr{</failure>});
    $c->send('</stream:stream>');
}, qr{<failure $SASL><not-authorized/><text xml:lang='en'>}
    . 'Invalid login or password</text></failure></stream:stream>\z',
    auth => 1);

# "to" with quotes, <, &, CR LF, %, spaces: not a domain, so a stream
# error before anything else, and never an echo or an auth request

my $to = "ex&quot;a&apos;m&lt;p&amp;l&#13;&#10;X-Injected: 1&#13;&#10;e %41 .com";
hostile('a "to" with special characters',
    ["<stream:stream to='$to' version='1.0' $NS>"],
    qr{<stream:stream [^>]* from='proxy\.test' [^>]*>}
    . err('host-unknown'));
for my $bad ('alice@example.com', 'example.com/res', 'exa_mple.com',
    '-example.com', 'example-.com', 'a..b', '[::1]',
    "b\xc3\xbccher.example", ('a' x 64) . '.com', join('.', ('a' x 60) x 5))
{
    (my $name = $bad) =~ s/[^\x21-\x7e]/?/g;
    hostile("\"to\" '" . substr($name, 0, 40) . "' is not a domain",
        ["<stream:stream to='$bad' version='1.0' $NS>"],
        err('host-unknown'));
}

# CR LF in the password: escaped in the auth request, where a CR LF must
# never start a header of its own

hostile('CR LF in the password', sub {
    my ($c) = @_;
    $c->send($HDR);
    $c->send(sasl_plain("\0alice\0to-secret\r\nX-Injected: 1\r\n"));
    wait_for($c, qr{</failure>});
    $c->send('</stream:stream>');
}, qr{<failure $SASL><not-authorized/>.*</failure></stream:stream>\z}s,
    auth => 1);

my ($req) = grep { /Auth-Pass: to-secret/ } $auth->requests;
$req //= '';
my ($head) = split /\r\n\r\n/, $req;
my @lines = split /\r\n/, $head // '';
my ($user) = grep { /^Auth-User:/ } @lines;
ok($req && !grep({ /[\r\n]/ || /^X-Injected/i } @lines)
    && ($user // '') eq 'Auth-User: alice@example.com',
    'no header injected into the auth request')
    or diag(XT::XMPP::show($req));

# what a client sends never starts a line of its own in error.log

my $forged = "\n2026/12/02 13:00:00 [alert] 1#0: forged by client";
hostile('CR LF in the authcid',
    [$HDR, sasl_plain("\0x\@example.com$forged\0secret"),
     '</stream:stream>'],
    qr{@{[sasl('not-authorized')]}</stream:stream>\z});
hostile('CR LF in the localpart',
    [$HDR, sasl_plain("\0x$forged\0secret"), '</stream:stream>'],
    qr{@{[sasl('malformed-request')]}</stream:stream>\z});
hostile('CR LF in the authzid',
    [$HDR, sasl_plain("x\@example.com$forged\0alice\0secret"),
     '</stream:stream>'],
    qr{@{[sasl('invalid-authzid')]}</stream:stream>\z});
(my $ent = $forged) =~ s/\n/&#10;/;
hostile('CR LF in the mechanism name',
    [$HDR, "<auth $SASL mechanism='PL$ent'>AGEAYg==</auth>",
     '</stream:stream>'],
    qr{@{[sasl('invalid-mechanism')]}</stream:stream>\z});
hostile('CR LF in "to"',
    ["<stream:stream to='example.com$ent' version='1.0' $NS>"],
    err('host-unknown'));

hostile('CR LF in an element longer than the buffer',
    [$HDR, "<auth $SASL mechanism='PLAIN'>$forged" . ('QUFB' x 1100)],
    err('policy-violation'));

my $elog = $t->read_file('error.log') // '';
ok($elog !~ /^\S+ \S+ \[alert\] 1#0: forged/m
    && $elog !~ /too long command/
    && $elog =~ /client sent authcid "x\@example\.com\\x0A2026/,
    'no forged line in error.log, the authcid escaped')
    or diag(join "\n", $elog =~ /^.*forged.*$/mg);

# loops that used to cost nothing: each counts as a failed attempt, and
# the stream ends at max_errors (5) with <policy-violation/>

hostile('1000 empty <auth/> elements',
    [$HDR, "<auth $SASL mechanism='PLAIN'/>" x 1000],
    qr{(?:<challenge $SASL/>){5}.*}s . err('policy-violation'));
hostile('1000 <auth/> <abort/> pairs',
    [$HDR, "<auth $SASL mechanism='PLAIN'/><abort $SASL/>" x 1000],
    qr{(?:<challenge $SASL/>@{[sasl('aborted')]}){4}<challenge $SASL/>}
    . qr{@{[sasl('aborted')]}} . err('policy-violation'));
hostile('1000 <abort/> elements', [$HDR, "<abort $SASL/>" x 1000],
    qr{(?:@{[sasl('aborted')]}){5}} . err('policy-violation'));

# a stream error reaches a client that is still sending: nginx reads and
# drops the rest before it closes (a close with unread input would reset
# the connection, and the error would be lost)

for my $gap (0, 0.02) {
    my $c = XT::XMPP->new(port => $port, timeout => 5)
        or die $XT::XMPP::ERROR;
    my $s = $c->socket;
    $s->blocking(1);
    my $sent = syswrite($s, $HDR . "<auth $SASL mechanism='PLAIN'>");
    for (1 .. 10) {
        $sent &&= syswrite($s, 'QUFB' x 2560);
        sleep($gap) if $gap;
    }
    my ($out, $n) = ('');
    while (IO::Select->new($s)->can_read(3)) {
        $n = sysread($s, $out, 65536, length $out);
        last unless $n;
    }
    my $how = !defined $n ? "read: $!" : $n ? 'no EOF' : 'EOF';
    ok($sent && $how eq 'EOF' && $out =~ err('policy-violation'),
        "100 KB of base64 in " . ($gap ? 'ten writes' : 'one go')
        . ': every write taken, the stream error, then a clean EOF')
        or diag("writes ok: " . ($sent ? 1 : 0) . ", $how, got: ..."
            . XT::XMPP::show(substr($out, -120)));
}

# no worker process exited meanwhile (a crash shows up here even when no
# signal is logged)

my $log = $t->read_file('error.log') // '';
ok($log !~ /worker process \d+ exited/, 'no worker process exited')
    or diag(join "\n", $log =~ /^.*worker process \d+ exited.*$/mg);

###############################################################################

# a real TLS ClientHello, as a client sends it to a port that speaks TLS
sub client_hello {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Listen => 1)
        or die "listen: $@";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        IO::Socket::SSL->new(PeerAddr => '127.0.0.1',
            PeerPort => $l->sockport, SSL_verify_mode => 0, Timeout => 2);
        POSIX::_exit(0);
    }
    my $s = $l->accept;
    my $hello = '';
    while (length($hello) < 5 || length($hello) < 5
        + unpack('n', substr($hello, 3, 2)))
    {
        IO::Select->new($s)->can_read(2) or last;
        sysread($s, $hello, 16384, length $hello) or last;
    }
    close $s;
    waitpid($pid, 0);
    return $hello;
}

# wait_for($c, qr//): waits until the received bytes match, keeps them
sub wait_for {
    my ($c, $re) = @_;
    my $end = time() + 3;
    while ($c->buffer !~ $re && time() < $end) {
        last unless $c->fill($end);
    }
}

sub sasl_plain {
    return "<auth $SASL mechanism='PLAIN'>" . encode_base64($_[0], '')
        . '</auth>';
}

# hostile($name, [bytes, ...] | sub { my ($c) = @_; ... }, qr/end/, %opts):
# sends, then waits for EOF; one test: the output matches, the connection
# closed within $BOUND, auth_http got the expected number of requests
# (opts auth, default 0).  port => another port, raw => 1: the output
# is not checked for </stream:stream> (the peer did not speak XMPP).
sub hostile {
    my ($name, $send, $expect, %o) = @_;
    my $n0 = $auth->count;
    my $c = XT::XMPP->new(port => $o{port} // $port, timeout => 5)
        or return fail("$name: $XT::XMPP::ERROR");

    my $t0 = time();
    if (ref $send eq 'CODE') {
        $send->($c);
    } else {
        $c->send($_) for @$send;
    }
    my $bound = $o{bound} // $BOUND;
    my $eof = $c->eof_within($bound + 1 - (time() - $t0));
    my $took = time() - $t0;
    my $out = $c->buffer;

    my @why;
    push @why, sprintf('no EOF within %.1fs', $bound + 1) unless $eof;
    push @why, sprintf('closed after %.2fs', $took) if $took > $bound;
    push @why, sprintf('closed after %.2fs, before "timeout"', $took)
        if $o{min} && $took < $o{min};
    push @why, "output does not match $expect"
        unless $o{raw} || $out =~ $expect;
    push @why, 'output does not end with </stream:stream>'
        unless $o{raw} || $out =~ m{</stream:stream>\z};
    my $n = $auth->count - $n0;
    push @why, "$n request(s) reached auth_http" if $n != ($o{auth} // 0);
    ok(!@why, $name) or diag(join "\n", @why, 'got: ...' . XT::XMPP::show(substr($out, -190)));
    return !@why;
}
