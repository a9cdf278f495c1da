#!/usr/bin/perl

# Interop: stream management (XEP-0198) across the proxy.  A slixmpp client
# with stream management logs in through nginx to ejabberd
# (mod_stream_mgmt), gets messages, loses its TCP connection (RST: no
# stream end, no TLS close_notify), misses messages sent meanwhile to its
# full JID, connects again through nginx (a new TLS session and SASL
# login; auth_http sends it to the same backend) and resumes the stream:
# every message must arrive, the session must be the same one (same full
# JID, no second session start), and ejabberd must log the pending state
# and the resumption.
#
# Prosody: Debian's Prosody 0.12 has no XEP-0198 module (mod_smacks is not
# packaged), so that column is n/a.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use JSON::PP ();
use Test::More;
use XT::Interop;

XT::Interop::need(system($XT::Interop::PYTHON, '-c', 'import slixmpp') == 0,
    'python3-slixmpp');

my $ix = XT::Interop->new(name => 'XEP-0198 resumption (slixmpp)',
    backends => ['ejabberd']);
my $e = $ix->ejabberd;
my $prog = "$FindBin::Bin/../lib/interop/smacks_client.py";
my $asan = $ix->t->has_feature('asan');

for my $mode ($ix->modes) {
    $ix->cell('ejabberd', $mode, sub {
        my $label = 'XEP-0198 ' . $ix->mode_title($mode);
        my $log0 = length $e->log;
        my $auth0 = $ix->auth_count('alice@e.test');

        my $h = $ix->spawn([$XT::Interop::PYTHON, $prog,
            '--host', '127.0.0.1', '--port', $ix->port($mode), '--mode', $mode,
            '--jid', 'alice@e.test', '--password', 'alice-pw',
            '--peer', 'bob@e.test', '--peer-password', 'bob-pw',
            '--before', 3, '--during', 3, '--timeout', $asan ? 60 : 30]);
        my $end = time() + ($asan ? 70 : 40);
        until (XT::Interop::child_done($h) || time() > $end) {
            select(undef, undef, undef, 0.1);
        }
        XT::Interop::kill_child($h);
        my $out = XT::Interop::child_output($h);
        my ($json) = grep { /^\{/ } split /\n/, $out;
        my $r = eval { JSON::PP::decode_json($json // '') } // {};

        is($h->{code}, 0, "$label: client exit code") or diag($out);
        ok($r->{sm_id}, "$label: stream management enabled with resumption");
        like($out, qr/^CUT$/m, "$label: connection cut");
        is(($r->{counts} // {})->{session_resumed}, 1, "$label: stream resumed");
        is(($r->{counts} // {})->{session_start}, 1, "$label: no second session");
        ok($r->{jid_before} && ($r->{jid_after} // '') eq $r->{jid_before},
            "$label: same full JID after resumption");
        is_deeply([sort @{ $r->{received} // [] }], [map { "sm $_" } 1 .. 6],
            "$label: no message lost (3 before, 3 during the outage)");

        # ejabberd's side: the session waited for resumption and was resumed
        my $jid = $r->{jid_before} // 'alice@e.test/?';
        my $log = substr($e->log, $log0);
        like($log, qr/Closing c2s connection for \Q$jid\E: .*waiting \d+ seconds for stream resumption/,
            "$label: ejabberd kept the session for resumption");
        like($log, qr/Resumed session for \Q$jid\E\n/, "$label: ejabberd resumed it");

        # both logins went through auth_http to the same backend
        my @auth = grep { $_->{user} eq 'alice@e.test' } $ix->auth_log;
        splice(@auth, 0, $auth0);
        ok(@auth == 2 && !grep({ $_->{port} ne $e->port } @auth),
            "$label: two logins, both sent to ejabberd by auth_http")
            or diag(explain(\@auth));
    });
}

$ix->na('prosody', $_, "Debian's Prosody 0.12 has no XEP-0198 module (mod_smacks)")
    for $ix->modes;

$ix->done;
