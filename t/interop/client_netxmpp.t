#!/usr/bin/perl

# Interop: Net::XMPP (libnet-xmpp-perl, on XML::Stream; the library behind
# sendxmpp) through nginx to Prosody and ejabberd, STARTTLS and direct TLS
# (XML::Stream's "ssl"): login, bind, a message each way with a second
# user (the raw client), verified on both sides.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use XT::Interop;

XT::Interop::need(eval { require Net::XMPP; 1 }, 'libnet-xmpp-perl (Net::XMPP)');

my $ix = XT::Interop->new(name => 'Net::XMPP');
# Authen::SASL has no SCRAM: PLAIN when nginx offers SCRAM too
$ix->program_cells([$^X, "$FindBin::Bin/../lib/interop/netxmpp_client.pl"],
    scram => qr/^PLAIN$/);
$ix->done;
