#!/usr/bin/perl

# Interop: aioxmpp (python3-aioxmpp) through nginx to Prosody and ejabberd,
# STARTTLS and direct TLS: login, bind, a message each way with a second
# user (the raw client), verified on both sides.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use XT::Interop;

XT::Interop::need(system($XT::Interop::PYTHON, '-c', 'import aioxmpp') == 0,
    'python3-aioxmpp');

my $ix = XT::Interop->new(name => 'aioxmpp');
# aiosasl's SCRAM: SCRAM-SHA-256, the best nginx offers, without -PLUS
$ix->program_cells([$XT::Interop::PYTHON, "$FindBin::Bin/../lib/interop/aioxmpp_client.py"],
    scram => qr/^SCRAM-SHA-256$/,
    todo => sub { $_[0] =~ /^djabberd/ ? $XT::Interop::DJABBERD_SESSION_IQ : undef });
$ix->done;
