#!/usr/bin/perl

# Interop: slixmpp (python3-slixmpp) through nginx to Prosody and ejabberd,
# STARTTLS and direct TLS: login, bind, a message each way with a second
# user (the raw client), verified on both sides.  With SCRAM offered it
# picks SCRAM-SHA-256-PLUS and binds with tls-unique, which works on
# TLS 1.2 (nginx 1.22's default protocols) and is refused on TLS 1.3
# (later nginx's default), where RFC 9266 forbids tls-unique: slixmpp 1.8
# does not know tls-exporter, and after the refusal it offers no other
# mechanism that nginx accepts (its SCRAM without -PLUS then says "y").

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use XT::Interop;

XT::Interop::need(system($XT::Interop::PYTHON, '-c', 'import slixmpp') == 0,
    'python3-slixmpp');

my $ix = XT::Interop->new(name => 'slixmpp');
my $tls13 = $ix->t->has_version('1.23.4');    # TLS 1.3 on by default
$ix->program_cells([$XT::Interop::PYTHON, "$FindBin::Bin/../lib/interop/slixmpp_client.py"],
    scram => qr/^SCRAM-SHA-256-PLUS tls-unique$/,
    todo => sub { my ($b, $mode) = @_;
        return $XT::Interop::DJABBERD_SESSION_IQ if $b =~ /^djabberd/;
        $mode eq 'scram' && $tls13
        ? 'slixmpp 1.8 binds with tls-unique on TLS 1.3, which RFC 9266 '
          . 'forbids: nginx refuses it (nginx offers tls-exporter and '
          . 'tls-server-end-point there)' : undef });
$ix->done;
