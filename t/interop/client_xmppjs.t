#!/usr/bin/perl

# Interop: @xmpp/client (xmpp.js, from the npm registry, Node >= 20.10)
# through nginx to Prosody and ejabberd, STARTTLS (xmpp://) and direct TLS
# (xmpps://): login, bind, a message each way with a second user (the raw
# client), verified on both sides.
#
# The package is installed on first use into build/node (git-ignored):
#     npm install --prefix build/node @xmpp/client@VERSION

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use XT::Interop;
use XT::Nginx qw(repo_root);

my $VERSION = '0.14.0';
my $mods = repo_root() . '/build/node';
my $pkg = "$mods/node_modules/\@xmpp/client/package.json";

my ($major, $minor) = `node --version 2>/dev/null` =~ /^v(\d+)\.(\d+)/;
XT::Interop::need($major && ($major > 20 || $major == 20 && $minor >= 10),
    'Node.js >= 20.10 ("node" on PATH)');

sub installed {
    open(my $fh, '<', $pkg) or return 0;
    local $/;
    return (<$fh> // '') =~ /"version"\s*:\s*"\Q$VERSION\E"/;
}
unless (installed()) {
    my $out = `npm install --prefix '$mods' --no-audit --no-fund --loglevel=error '\@xmpp/client\@$VERSION' 2>&1`;
    diag("npm install \@xmpp/client\@$VERSION failed:\n$out") if $?;
}
XT::Interop::need(installed(), "\@xmpp/client $VERSION (npm install into build/node failed)");

my $ix = XT::Interop->new(name => '@xmpp/client');

$ENV{NODE_TLS_REJECT_UNAUTHORIZED} = '0';    # self-signed certificate
$ENV{NODE_NO_WARNINGS} = '1';
# @xmpp/sasl-scram-sha-1: SCRAM-SHA-1 without -PLUS
$ix->program_cells(['node', "$FindBin::Bin/../lib/interop/xmppjs_client.mjs",
    '--modules', $mods], scram => qr/^SCRAM-SHA-1$/);
$ix->done;
