#!/usr/bin/perl

# Interop: AnyEvent::XMPP (libanyevent-xmpp-perl) through nginx to Prosody
# and ejabberd, STARTTLS and direct TLS (its old_style_ssl): login, bind, a
# message each way with a second user (the raw client), verified on both
# sides.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use XT::Interop;

XT::Interop::need(eval { require AnyEvent::XMPP::IM::Connection; 1 },
    'libanyevent-xmpp-perl (AnyEvent::XMPP)');

my $ix = XT::Interop->new(name => 'AnyEvent::XMPP');
# Authen::SASL has no SCRAM: PLAIN when nginx offers SCRAM too
$ix->program_cells([$^X, "$FindBin::Bin/../lib/interop/anyevent_client.pl"],
    scram => qr/^PLAIN$/);
$ix->done;
