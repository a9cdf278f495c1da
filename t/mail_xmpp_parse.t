#!/usr/bin/perl

# What real clients send, in all the shapes the parser must accept: XML
# declarations, attribute orders and quotes, prefixes, entities, UTF-8,
# whitespace, pipelining and any split of the input; the SASL PLAIN
# exchanges and failures; STARTTLS injection; Auth-Wait; a backend that
# is down.  The backend is a real Prosody.  (An auth server that is down:
# t/mail_xmpp_faults.t.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Test::More;
use Time::HiRes qw(time sleep);

use XT::Nginx qw(free_port);
use XT::Prosody;
use XT::XMPP;
use XT::XmppProxy;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ["example.com", "b\xc3\xbccher.example"],
    users => [['alice', 'example.com', 'alice-pw']]);

my $closed = free_port();

$t->gen_cert('xmpp', cn => 'example.com');
$t->write_file_expand('nginx.conf', XT::XmppProxy::conf(
    backend => '$xt_port',
    mail => 'max_errors 10;',
    http => <<"EOF",
    map \$http_auth_user \$xt_port {
        "down\@example.com"  $closed;
        default             ${\ $p->port };
    }
EOF
));
$t->run();
$t->plan(59);

my $port = $t->port(5222);

my $STREAM = "version='1.0' xmlns='jabber:client'"
    . " xmlns:stream='http://etherx.jabber.org/streams'";
my $TLS = "xmlns='urn:ietf:params:xml:ns:xmpp-tls'";
my $SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";

###############################################################################

# stream headers that must be accepted

my @headers = (
    [ 'no declaration', "<stream:stream to='example.com' $STREAM>" ],
    [ 'declaration, double quotes, no newline',
      qq{<?xml version="1.0"?><stream:stream to="example.com" $STREAM>} ],
    [ 'declaration with encoding and newline',
      "<?xml version='1.0' encoding='UTF-8'?>\n"
      . "<stream:stream to='example.com' $STREAM>" ],
    [ 'attributes in another order, mixed quotes, extra attributes',
      qq{<stream:stream xmlns:stream="http://etherx.jabber.org/streams"}
      . qq{ xml:lang='en' from="alice\@example.com" id='c1'}
      . qq{ xmlns="jabber:client" version='1.0' to="example.com">} ],
    [ 'whitespace and newlines between attributes and before >',
      "<stream:stream\n  to = 'example.com'\n\tversion='1.0'"
      . " xmlns='jabber:client'\r\n xmlns:stream="
      . "'http://etherx.jabber.org/streams'  \n>" ],
    [ 'foreign namespace attribute declared after use',
      "<stream:stream to='example.com' x:y='1' $STREAM xmlns:x='urn:x'>" ],
    [ 'another prefix for the stream',
      "<s:stream to='example.com' version='1.0' xmlns='jabber:client'"
      . " xmlns:s='http://etherx.jabber.org/streams'>" ],
    [ 'no prefix, streams namespace as default',
      "<stream to='example.com' version='1.0'"
      . " xmlns='http://etherx.jabber.org/streams'>" ],
    [ 'version 1.1', "<stream:stream to='example.com' version='1.1'"
      . " xmlns='jabber:client'"
      . " xmlns:stream='http://etherx.jabber.org/streams'>" ],
);

for my $h (@headers) {
    my ($name, $header) = @$h;
    my $c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
    $c->send($header);
    my $r = ($c->read_element // '') . ($c->read_element // '');
    like($r, qr/^<stream:stream [^>]*from='example\.com'[^>]*>.*<starttls/s,
        "header: $name");
}

# entities and UTF-8 in "to"

my $c = XT::XMPP->new(port => $port);
$c->send("<stream:stream to='ex&#97;mple&#x2e;com' $STREAM>");
like($c->read_element // '', qr/from='example\.com'/, 'numeric entities');

$c = XT::XMPP->new(port => $port);
$c->send("<stream:stream to='&#x45;xample.COM.' $STREAM>");
like($c->read_element // '', qr/from='example\.com'/,
    'a domain in its canonical form: lowercase, no final dot');

# a U-label needs Unicode tables to compare: refused, A-labels work

$c = XT::XMPP->new(port => $port);
$c->send("<stream:stream to='b\xc3\xbccher.example' $STREAM>");
like(join('', map { $c->read_element // '' } 1 .. 3),
    qr/<stream:error><host-unknown\b/, 'U-label domain: host-unknown');

$c = XT::XMPP->new(port => $port);
$c->send("<stream:stream to='xn--bcher-kva.example' $STREAM>");
like($c->read_element // '', qr/from='xn--bcher-kva\.example'/,
    'A-label domain');

$c = XT::XMPP->new(port => $port);
$c->send("<stream:stream to='b\xfccher.example' $STREAM>");
like(join('', map { $c->read_element // '' } 1 .. 3),
    qr/<stream:error><not-well-formed\b.*<\/stream:stream>/,
    'invalid UTF-8 rejected');
ok($c->eof_within(3), 'closed after invalid UTF-8');

###############################################################################

# elements in their variants, with whitespace keepalives between them

$c = XT::XMPP->new(port => $port);
$c->send("<?xml version='1.0'?>\n<stream:stream to='example.com' $STREAM>\n");
$c->read_element;
$c->read_element;
$c->send("  \n\n \t <starttls $TLS></starttls>");
like($c->read_element // '', qr/^<proceed\b/, 'starttls with end tag');
ok($c->starttls(SSL_hostname => 'example.com'), 'TLS') or diag($c->error);
$c->send("\n<stream:stream to='example.com' $STREAM>");
$c->read_element;
like($c->read_element // '', qr/<mechanism>PLAIN</, 'PLAIN after TLS');
$c->send(" <auth id='a1' mechanism='PLAIN' x:y='z' xmlns:x='urn:x' $SASL/> ");
like($c->read_element // '', qr/^<challenge $SASL\/>$/,
    'auth without initial response: empty challenge');
$c->send("<response a='b' $SASL>"
    . encode_base64("\0alice\0alice-pw", '') . "</response>");
like($c->read_element // '', qr/^<success\b/, 'response: success');
$c->close;

# abort, then auth with xmlns first and a prefixed auth element

$c = tls_stream();
$c->send("<auth mechanism='PLAIN' $SASL/>");
$c->read_element;
$c->send("<abort $SASL/>");
is($c->read_element // '', "<failure $SASL><aborted/></failure>", 'abort');
$c->send("<sasl:auth xmlns:sasl='urn:ietf:params:xml:ns:xmpp-sasl'"
    . " mechanism='PLAIN'>" . encode_base64("\0alice\0alice-pw", '')
    . "</sasl:auth>");
like($c->read_element // '', qr/^<success\b/, 'prefixed auth after abort');
$c->close;

# closing the stream before authentication

$c = XT::XMPP->new(port => $port);
$c->send("<stream:stream to='example.com' $STREAM>");
$c->read_element;
$c->read_element;
$c->send("</stream:stream>");
is($c->read_element // '', '</stream:stream>', 'stream closed by client');
ok($c->eof_within(3), 'connection closed');

###############################################################################

# SASL failures, each followed by a successful retry on the same stream

$c = tls_stream();

my @sasl = (
    [ "<auth mechanism='DIGEST-MD5' $SASL/>", 'invalid-mechanism' ],
    [ "<auth mechanism='PLAIN' $SASL>not*base64</auth>",
      'incorrect-encoding' ],
    [ "<auth mechanism='PLAIN' $SASL>=</auth>", 'malformed-request' ],
    [ auth("alice\0alice-pw"), 'malformed-request', 'one NUL' ],
    [ auth("\0alice\0alice-pw\0x"), 'malformed-request', 'three NULs' ],
    [ auth("\0alice\0"), 'malformed-request', 'empty password' ],
    [ auth("\0\0alice-pw"), 'malformed-request', 'empty authcid' ],
    [ auth("bob\@example.com\0alice\0alice-pw"), 'invalid-authzid' ],
    [ "<response $SASL>AGFsaWNl</response>", 'malformed-request',
      'response without auth' ],
);

for my $s (@sasl) {
    my ($send, $cond, $name) = @$s;
    $c->send($send);
    like($c->read_element // '', qr{^<failure $SASL><$cond/>},
        'SASL ' . ($name // $cond));
}

$c->send(auth("alice\@example.com\0alice\0alice-pw"));
like($c->read_element // '', qr/^<success\b/, 'authzid = bare JID, retry');
$c->close;

# before TLS under "starttls only"

$c = XT::XMPP->new(port => $port);
$c->send("<stream:stream to='example.com' $STREAM>");
$c->read_element;
like($c->read_element // '', qr{<starttls $TLS><required/></starttls>},
    'STARTTLS required');
$c->send(auth("\0alice\0alice-pw"));
like($c->read_element // '', qr/<encryption-required\/>/,
    'plaintext auth refused before TLS');
$c->close;

###############################################################################

# STARTTLS command injection: what follows <starttls/> in the same write is
# discarded, and never reaches auth_http

my $before = () = XT::XmppProxy::auth_log($t);

$c = XT::XMPP->new(port => $port);
$c->send("<stream:stream to='example.com' $STREAM>");
$c->read_element;
$c->read_element;
$c->send("<starttls $TLS/>" . auth("\0inject\0inject-pw")
    . "<stream:stream to='example.com' $STREAM>");
like($c->read_element // '', qr/^<proceed\b/, 'injection: proceed');
ok($c->starttls(SSL_hostname => 'example.com'), 'injection: TLS');
is($c->read_element(1), undef, 'injection: nothing answered after TLS');
$c->send("<stream:stream to='example.com' $STREAM>");
like($c->read_element // '', qr/^<stream:stream\b/, 'injection: new stream');
$c->close;

my @after = XT::XmppProxy::auth_log($t);
ok(!grep({ $_->[1] =~ /inject/ } @after), 'injected auth never sent');

###############################################################################

# pipelining: header and auth in one write after TLS

$c = tls_stream(1);
$c->send("<stream:stream to='example.com' $STREAM>" . auth("\0alice\0alice-pw"));
like($c->read_element // '', qr/^<stream:stream\b/, 'pipelined: header');
like($c->read_element // '', qr/^<stream:features>/, 'pipelined: features');
like($c->read_element // '', qr/^<success\b/, 'pipelined: success');
$c->close;

# whitespace after </auth> (go-xmpp sends "</auth>\n") must not precede
# the XML declaration of the restarted stream at the backend

$c = tls_stream();
$c->send(auth("\0alice\0alice-pw") . "\n \n");
like($c->read_element // '', qr/^<success\b/, 'whitespace after auth');
$c->send("<?xml version='1.0'?><stream:stream to='example.com' $STREAM>");
like($c->read_element // '', qr/^<stream:stream\b/,
    'restart with XML declaration after whitespace');
like($c->read_element // '', qr/<bind\b/, 'backend accepted the restart');
$c->close;

# whitespace keepalives filling the buffer: the rest waits in the socket,
# and an element may straddle the end of the buffer

$c = tls_stream();
$c->send((' ' x 10000) . auth("\0alice\0alice-pw"));
like($c->read_element // '', qr/^<success\b/,
    'auth after 10000 spaces in one write');
$c->close;

$c = tls_stream();
$c->send((' ' x 4050) . auth("\0alice\0alice-pw"));
like($c->read_element // '', qr/^<success\b/,
    'auth across the end of a buffer filled with spaces');
$c->close;

# a full login, one byte per write

$c = XT::XMPP->new(port => $port);
setsockopt($c->socket, IPPROTO_TCP, TCP_NODELAY, 1);
bytewise($c, "<?xml version='1.0'?><stream:stream to='example.com' $STREAM>");
like($c->read_element // '', qr/^<stream:stream\b/, 'bytewise: header');
$c->read_element;
bytewise($c, "<starttls $TLS/>");
like($c->read_element // '', qr/^<proceed\b/, 'bytewise: proceed');
$c->starttls(SSL_hostname => 'example.com');
bytewise($c, "<stream:stream to='example.com' $STREAM>");
$c->read_element;
$c->read_element;
bytewise($c, auth("\0alice\0alice-pw"));
like($c->read_element // '', qr/^<success\b/, 'bytewise: success');
$c->open_stream('example.com');
like($c->read_element // '', qr/^<stream:stream\b/, 'bytewise: backend');
$c->close;

###############################################################################

# auth_http: Auth-Wait delays the failure; Auth-Error-Code conditions

$c = tls_stream();
my $start = time();
$c->send(auth("\0alice\0wait-pw"));
my $r = $c->read_element // '';
my $took = time() - $start;
is($r, "<failure $SASL><temporary-auth-failure/><text xml:lang='en'>"
    . "Try again later</text></failure>", 'Auth-Error-Code 454');
cmp_ok($took, '>=', 0.9, 'Auth-Wait delayed the answer');
$c->send(auth("\0alice\0disabled-pw"));
like($c->read_element // '', qr{^<failure $SASL><account-disabled/>},
    'Auth-Error-Code account-disabled');
$c->send(auth("\0alice\0alice-pw"));
like($c->read_element // '', qr/^<success\b/, 'login after Auth-Wait');
$c->close;

# a backend that is down

$c = tls_stream();
$c->send(auth("\0down\0down-pw"));
$r = join '', map { $c->read_element // '' } 1 .. 3;
my $rcf = qr{<stream:error><remote-connection-failed\b};
like($r, qr{^<failure $SASL><temporary-auth-failure/></failure>$rcf},
    'backend down');
ok($c->eof_within(3), 'backend down: closed');

###############################################################################

sub auth {
    my ($plain) = @_;
    return "<auth mechanism='PLAIN' $SASL>" . encode_base64($plain, '')
        . "</auth>";
}

sub bytewise {
    my ($c, $data) = @_;
    for my $ch (split //, $data) {
        $c->send($ch);
        sleep(0.001);
    }
}

# a connection, STARTTLS done and (unless $no_restart) the stream restarted
sub tls_stream {
    my ($no_restart) = @_;
    my $c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
    $c->tls_stream('example.com',
        header => "<stream:stream to='example.com' $STREAM>",
        restart => !$no_restart) or die $c->error;
    return $c;
}

###############################################################################
