#!/usr/bin/perl

# Interop: go-sendxmpp (Debian go-sendxmpp 0.5.x on the Go library go-xmpp)
# through nginx to Prosody and ejabberd, STARTTLS and direct TLS (-t): one
# go-sendxmpp listens (-l), another sends; a second user (the raw client)
# receives the message and answers, verified on both sides.
#
# A regression test too: go-xmpp writes "</auth>\n".  nginx used to keep
# the "\n" in its client buffer while it asked auth_http and logged in to
# the backend, and forwarded it after the backend's <success/>, i.e. in
# front of the client's restarted stream; the backend had reset its parser
# on <success/>, so the new stream began "\n<?xml version='1.0'?>" (an XML
# declaration not at the start of the entity) and Prosody and ejabberd
# both closed it with <not-well-formed/>.  Found here, fixed in 42a4ff3
# ("drop whitespace after <auth/>").  The raw reduction below stays.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use XT::Interop;
use XT::XMPP;

XT::Interop::need(-x '/usr/bin/go-sendxmpp', 'go-sendxmpp');

my $ix = XT::Interop->new(name => 'go-sendxmpp');

$ix->program_cells([$^X, "$FindBin::Bin/../lib/interop/gosendxmpp_client.pl",
        '--dir', $ix->t->testdir],
    reply_to => sub { my (%a) = @_; "$a{jid}/gsx-listen" },
    scram => qr/^PLAIN$/);    # Debian 12's go-xmpp has no SCRAM

###############################################################################

# The bug, reduced: the same login with the raw client, the restart with
# and without an XML declaration, with and without whitespace after </auth>.

my @raw = (
    ['no whitespace after </auth>, restart with <?xml?>', '',     1],
    ['whitespace after </auth>, restart without <?xml?>', "\n",   0],
    ['whitespace after </auth>, restart with <?xml?>',    "\n",   1],
    ['more whitespace after </auth>, restart with <?xml?>', " \r\n\t ", 1],
    ['whitespace in a TLS record of its own, restart with <?xml?>', "\n", 1, 'later'],
    ['whitespace after <success/>, restart with <?xml?>', "\n", 1, 'after'],
);
for my $b ($ix->backends) {
    my $dom = $ix->domain($b);
    $ix->cell($b, 'tls', sub {
        for my $r (@raw) {
            my ($name, $ws, $decl, $later) = @$r;
            my $e = restart_after_auth($dom, $ws, $decl, $later);
            like($e, qr/^<stream:features\b.*<bind\b/s, "raw $b: $name")
                or diag("got: $e");
        }
    }, name => 'raw: "</auth>\n" then <?xml?> restart');
}

sub restart_after_auth {
    my ($dom, $ws, $decl, $later) = @_;
    my $c = XT::XMPP->new(port => $ix->port('tls'), ssl => 1,
        ssl_opts => { SSL_hostname => $dom }) or return "connect: $XT::XMPP::ERROR";
    $c->open_stream($dom);
    $c->read_element;
    $c->read_element;
    $c->send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        . encode_base64("\0alice\0alice-pw", '') . "</auth>" . ($later ? '' : $ws));
    if (($later // '') eq 'later') {
        # a TLS record of its own, while nginx asks auth_http: certainly
        # before <success/> (nothing has arrived yet)
        $c->send($ws);
    }
    my $s = $c->read_element // 'EOF';
    return "SASL: $s" unless $s =~ /^<success\b/;
    # a keepalive, say, before the restart: the backend must not get it
    # ahead of the new stream's XML declaration
    $c->send($ws) if ($later // '') eq 'after';
    $c->send(($decl ? "<?xml version='1.0'?>" : '')
        . "<stream:stream to='$dom' version='1.0' xmlns='jabber:client'"
        . " xmlns:stream='http://etherx.jabber.org/streams'>");
    my $h = $c->read_element // 'EOF';
    return "header: $h" unless $h =~ /^<stream:stream\b/;
    return $c->read_element // 'EOF';
}

$ix->done;
