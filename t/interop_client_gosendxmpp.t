#!/usr/bin/perl

# Interop: go-sendxmpp (Debian go-sendxmpp 0.5.x on the Go library go-xmpp)
# through nginx to Prosody and ejabberd, STARTTLS and direct TLS (-t): one
# go-sendxmpp listens (-l), another sends; a second user (the raw client)
# receives the message and answers, verified on both sides.
#
# Expected failure (nginx bug, see the raw reproduction below): go-xmpp
# writes "</auth>\n".  nginx keeps the "\n" in its client buffer while it
# asks auth_http and logs in to the backend, and forwards it after the
# backend's <success/>, i.e. in front of the client's restarted stream.
# The backend reset its parser on <success/>, so the new stream starts
# with "\n<?xml version='1.0'?>": an XML declaration that is not at the
# start of the entity.  Prosody and ejabberd both answer
# <stream:error><not-well-formed/> and the login fails.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use XT::Interop;
use XT::XMPP;

XT::Interop::need(-x '/usr/bin/go-sendxmpp', 'go-sendxmpp');

my $BUG = 'nginx forwards the whitespace sent after </auth> ("</auth>\n", '
    . 'as go-xmpp writes it) to the backend after <success/>: the restarted '
    . 'stream then begins "\n<?xml ...?>" and the backend closes it with '
    . '<not-well-formed/>';

my $ix = XT::Interop->new(name => 'go-sendxmpp');

$ix->program_cells([$^X, "$FindBin::Bin/lib/interop/gosendxmpp_client.pl",
        '--dir', $ix->t->testdir],
    reply_to => sub { my (%a) = @_; "$a{jid}/gsx-listen" },
    todo => sub { $BUG });

###############################################################################

# The bug, reduced: the same login with the raw client, the restart with an
# XML declaration, with and without whitespace after </auth>.

my @raw = (
    ['no whitespace after </auth>, restart with <?xml?>', '',   1],
    ['whitespace after </auth>, restart without <?xml?>', "\n", 0],
    ['whitespace after </auth>, restart with <?xml?>',    "\n", 1, $BUG],
);
for my $b ($ix->backends) {
    my $dom = $ix->domain($b);
    for my $r (@raw) {
        my ($name, $ws, $decl, $todo) = @$r;
        my $test = sub {
            my $e = restart_after_auth($dom, $ws, $decl);
            like($e, qr/^<stream:features\b.*<bind\b/s, "raw $b: $name")
                or diag("got: $e");
        };
        if ($todo) {
            # in the matrix too
            $ix->cell($b, 'tls', $test, todo => $todo,
                name => 'raw: "</auth>\n" then <?xml?> restart');
        } else {
            $test->();
        }
    }
}

sub restart_after_auth {
    my ($dom, $ws, $decl) = @_;
    my $c = XT::XMPP->new(port => $ix->port('tls'), ssl => 1,
        ssl_opts => { SSL_hostname => $dom }) or return "connect: $XT::XMPP::ERROR";
    $c->open_stream($dom);
    $c->read_element;
    $c->read_element;
    $c->send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        . encode_base64("\0alice\0alice-pw", '') . "</auth>$ws");
    my $s = $c->read_element // 'EOF';
    return "SASL: $s" unless $s =~ /^<success\b/;
    $c->send(($decl ? "<?xml version='1.0'?>" : '')
        . "<stream:stream to='$dom' version='1.0' xmlns='jabber:client'"
        . " xmlns:stream='http://etherx.jabber.org/streams'>");
    my $h = $c->read_element // 'EOF';
    return "header: $h" unless $h =~ /^<stream:stream\b/;
    return $c->read_element // 'EOF';
}

$ix->done;
