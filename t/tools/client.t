#!/usr/bin/perl

# XT::XMPP, the raw test client: unit splitting on hostile byte boundaries,
# timeouts, EOF, STARTTLS in place and many TLS records in one burst.
# The peers are tiny servers forked from this test.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Socket::SSL;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use XT::Nginx qw(free_port make_cert);
use XT::XMPP;

plan tests => 27;

my $dir = tempdir('xt-client-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
my ($crt, $key) = make_cert("$dir/s.crt", "$dir/s.key", cn => 'example.com');

my @kids;

# serve(sub { my ($sock) = @_; ... }): a one-connection server; returns its port
sub serve {
    my ($code) = @_;
    my $port = free_port();
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
        Listen => 1, ReuseAddr => 1) or die "listen: $!";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        local $SIG{ALRM} = sub { POSIX::_exit(1) };
        alarm 30;
        my $s = $l->accept;
        $s->autoflush(1);
        eval { $code->($s) };
        POSIX::_exit(0);
    }
    close $l;
    push @kids, $pid;
    return $port;
}

sub put {
    my ($s, $d) = @_;
    while (length $d) {
        my $n = syswrite($s, $d) // die "write: $!";
        substr($d, 0, $n, '');
    }
}

###############################################################################
# splitting

my @stream = (
    "<?xml version='1.0'?>",
    "<stream:stream from='example.com' a=\"1>2\" id='x'"
        . " xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>",
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        . "<mechanism>PLAIN</mechanism></mechanisms></stream:features>",
    "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "<message to='a' b='x/>y' c=\"it's\"><body>1 &lt; 2 <![CDATA[</message><x>]]></body>"
        . "<!-- </message> --><empty/></message>",
    "<x:stream xmlns:x='http://etherx.jabber.org/streams'>",
    "</stream:stream>",
);

my $port = serve(sub {
    my ($s) = @_;
    my $all = join ' ', @stream[0 .. 3];
    # byte by byte, with a few pauses
    for my $i (0 .. length($all) - 1) {
        put($s, substr($all, $i, 1));
        sleep 0.001 if $i % 37 == 0;
    }
    put($s, "\n \t");                                # keepalive whitespace
    put($s, substr($stream[4], 0, 40));
    sleep 0.05;
    put($s, substr($stream[4], 40) . $stream[5] . $stream[6] . 'trailing text');
});

my $c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
is($c->read_element, $stream[1], 'stream header with ">" in a quoted value');
is($c->{xml_decl}, $stream[0], 'XML declaration kept aside');
is($c->read_element, $stream[2], 'features, byte by byte');
is($c->read_element, $stream[3], 'self-closing element');
is($c->read_element, $stream[4], 'nested element with CDATA, comment, quotes');
is($c->read_element, $stream[5], 'stream header with another prefix');
is($c->read_element, $stream[6], 'stream close');
is($c->read_element, 'trailing text', 'text before EOF returned at EOF');
is($c->read_element, undef, 'undef at EOF');
ok($c->eof_within(1), 'eof_within after EOF');

###############################################################################
# timeouts

$port = serve(sub {
    my ($s) = @_;
    put($s, "<iq type='result' id='1'><query");
    sleep 1.5;
    put($s, " xmlns='q'/></iq>");
    sleep 2;
});

$c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
my $t0 = time();
is($c->read_element(0.5), undef, 'incomplete element: undef on timeout');
ok(time() - $t0 < 1.4, 'timeout honoured');
is($c->read_element(5), "<iq type='result' id='1'><query xmlns='q'/></iq>",
    'completed after more data');
ok(!$c->eof_within(0.3), 'eof_within false while the peer is open');
ok($c->eof_within(5), 'eof_within true once the peer closes');

###############################################################################
# read_until and send

$port = serve(sub {
    my ($s) = @_;
    put($s, "* OK hello\r\n");
    my $line = <$s>;
    put($s, "echo: $line");
});

$c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
is($c->read_until(qr/\r\n/), "* OK hello\r\n", 'read_until');
ok($c->send("ping\r\n"), 'send');
is($c->read_until(qr/\r\n/), "echo: ping\r\n", 'reply read');

###############################################################################
# STARTTLS in place, then many TLS records in one burst

my $n = 300;
$port = serve(sub {
    my ($s) = @_;
    put($s, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    IO::Socket::SSL->start_SSL($s, SSL_server => 1, SSL_cert_file => $crt,
        SSL_key_file => $key) or die "server TLS: $SSL_ERROR";
    my $in = '';
    sysread($s, $in, 100);    # "go"
    # one TLS record per element, all written at once
    put($s, "<m n='$_'>" . ('x' x ($_ % 50)) . "</m>") for 1 .. $n;
    put($s, "<big>" . ('y' x 40000) . "</big>");
    # stay open until the client has everything: data stuck in the TLS
    # buffer would not be woken up by the close
    sysread($s, $in, 100);    # "bye"
    $s->close(SSL_no_shutdown => 1);
});

$c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
like($c->read_element, qr/^<proceed/, 'proceed before TLS');
ok($c->starttls(SSL_hostname => 'example.com'), 'starttls') or diag($c->error);
ok($c->is_ssl, 'is_ssl');
$c->send('go');
my $got = 0;
while (my $e = $c->read_element(2)) {
    last unless $e =~ /^<m n='(\d+)'>x*<\/m>$/ && $1 == $got + 1;
    $got++;
    last if $got == $n;
}
is($got, $n, "$n TLS records in one burst read as $n units");
my $big = $c->read_element(5) // '';
is(length($big), 40000 + 11, 'element larger than a TLS record');
$c->send('bye');
ok($c->eof_within(5), 'TLS peer close seen');

###############################################################################
# plaintext buffered before the handshake is an error

$port = serve(sub {
    my ($s) = @_;
    put($s, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><injected/>");
    sleep 2;
});

$c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
$c->read_element;
sleep 0.2;
$c->eof_within(0.2);    # pull the rest into the buffer
ok(!$c->starttls, 'starttls refuses with buffered plaintext');
like($c->error // '', qr/buffered/, 'error says why');

###############################################################################

ok(!XT::XMPP->new(port => free_port(), timeout => 1), 'connect to a closed port fails');

kill 'TERM', @kids;
waitpid($_, 0) for @kids;
