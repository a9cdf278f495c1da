#!/usr/bin/perl

# Interop: slixmpp (python3-slixmpp) through nginx to Prosody and ejabberd,
# STARTTLS and direct TLS: login, bind, a message each way with a second
# user (the raw client), verified on both sides.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use XT::Interop;

XT::Interop::need(system($XT::Interop::PYTHON, '-c', 'import slixmpp') == 0,
    'python3-slixmpp');

my $ix = XT::Interop->new(name => 'slixmpp');
$ix->program_cells([$XT::Interop::PYTHON, "$FindBin::Bin/../lib/interop/slixmpp_client.py"]);
$ix->done;
