#!/usr/bin/perl

# Starts DJabberd with fake s2s peers: DJabberd resolves the peers of s2s
# (the remote of an outgoing stream, the authoritative server a dialback
# key is checked with) by DNS SRV and A lookups (Net::DNS), except for the
# names given to DJabberd->set_fake_s2s_peer (lib/DJabberd/DNS.pm), which
# no configuration directive sets.  XT::DJabberd runs this for its option
# s2s_peers:
#
#   perl -I TREE/lib -I t/lib xt_djabberd_launch.pl \
#       --xt-peer=r.test=127.1.2.3:5269 ... TREE/djabberd DJABBERD-ARGS
#
# The logger is set up first (DJabberd's modules log as they load, so the
# djabberd script sets it up before "use DJabberd"; it does so again, with
# the same file), the peers are set, then the tree's djabberd script runs
# as itself (do FILE, with $0 and @ARGV its own).

use strict;
use warnings;

my %peer;
while (@ARGV && $ARGV[0] =~ /^--xt-peer=([^=]+)=(.+):(\d+)\z/) {
    $peer{$1} = [$2, $3];
    shift @ARGV;
}
my $script = shift @ARGV or die "usage: $0 [--xt-peer=HOST=IP:PORT]... "
    . "DJABBERD-SCRIPT ARGS\n";

my ($logconf) = map { /^--logconf=(.+)/ ? $1 : () } @ARGV;

require DJabberd::Log;
DJabberd::Log->set_logger(defined $logconf ? ($logconf) : ());
require DJabberd;
require DJabberd::DNS;

for my $host (sort keys %peer) {
    DJabberd->set_fake_s2s_peer($host,
        DJabberd::IPEndPoint->new(@{ $peer{$host} }));
    DJabberd::Log->get_logger('DJabberd::XTLaunch')->info(
        "xt: fake s2s peer $host = @{ $peer{$host} }");
}

die "xt_djabberd_launch: cannot read $script\n" unless -r $script;
$0 = $script;
do $script;
die "xt_djabberd_launch: $script: $@" if $@;
exit 0;
