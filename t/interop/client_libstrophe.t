#!/usr/bin/perl

# Interop: libstrophe (C, libstrophe-dev), a small client built here,
# through nginx to Prosody and ejabberd, STARTTLS and direct TLS
# (XMPP_CONN_FLAG_LEGACY_SSL): login, bind, a message each way with a
# second user (the raw client), verified on both sides.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use XT::Interop;

XT::Interop::need(system('pkg-config --exists libstrophe 2>/dev/null') == 0
    && system('cc --version >/dev/null 2>&1') == 0, 'libstrophe-dev (and cc, pkg-config)');

my $ix = XT::Interop->new(name => 'libstrophe');

my $src = "$FindBin::Bin/../lib/interop/strophe_client.c";
my $bin = $ix->t->testdir . '/strophe_client';
my $cc = `cc -Wall -o '$bin' '$src' \$(pkg-config --cflags --libs libstrophe) 2>&1`;
ok(!$? && -x $bin, 'client builds') or diag($cc);

# 0.12 has SCRAM-SHA-1/-256/-512, no -PLUS; nginx offers no SHA-512
$ix->program_cells([$bin], scram => qr/^SCRAM-SHA-256$/);

$ix->done;
