#!/usr/bin/perl

# Resource bounds: 5000 unauthenticated connections that sent a stream
# header and then nothing are all held, then all closed by "timeout" with
# <connection-timeout/>; the worker's memory (VmRSS) goes back to a
# bounded level, and a second wave of 5000 does not raise it further (no
# leak per session; glibc keeps the freed heap, so RSS stays at the
# peak rather than dropping).  The figures are printed as notes.
#
# Needs 5000+ descriptors: raises its own limit (re-running itself under
# "ulimit -n"), and nginx's with worker_rlimit_nofile; skipped when the
# limit cannot be raised.  A slow test of its own, so that prove -j runs
# it beside the others.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Errno qw(EAGAIN EWOULDBLOCK EINPROGRESS);
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Test::More;
use Time::HiRes qw(time sleep);

use XT::Nginx;

my $N = 5000;
my $NOFILE = 3 * $N;

# our own descriptor limit: re-run under a raised "ulimit -n" if needed
my $soft = `sh -c 'ulimit -n'` + 0;
if ($soft < $NOFILE && !$ENV{XT_IDLE_REEXEC}) {
    $ENV{XT_IDLE_REEXEC} = 1;
    my @inc = map { "-I$_" } grep { !ref } @INC;
    exec('sh', '-c', 'ulimit -n "$0" 2>/dev/null && exec "$@"', $NOFILE,
        $^X, @inc, $0, @ARGV);
}
plan(skip_all => "cannot raise the descriptor limit to $NOFILE (have $soft)")
    if $soft < $NOFILE;

my $t = XT::Nginx->new()->has(qw/mail xmpp/);

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

worker_processes 1;
worker_rlimit_nofile $NOFILE;

events {
    worker_connections $NOFILE;
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    server_name proxy.test;
    timeout 10s;

    server {
        listen 127.0.0.1:%%PORT_5222%% backlog=4096;
        protocol xmpp;
    }
}
EOF
$t->run();
$t->plan(6);

my $port = $t->port(5222);
my $HDR = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0'"
    . " xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

sleep 0.5;
my $base = worker_rss();

my ($held, $closed, $timeouts, $peak) = wave();
is($held, $N, "$N idle unauthenticated connections held");
ok($closed == $N && $timeouts == $N,
    "all closed by timeout with <connection-timeout/>")
    or diag("closed $closed, with connection-timeout $timeouts");
my $after1 = worker_rss();

my ($held2, $closed2, undef, $peak2) = wave();
my $after2 = worker_rss();
ok($held2 == $N && $closed2 == $N, 'a second wave: held and closed')
    or diag("held $held2, closed $closed2");

note(sprintf('worker VmRSS: %d kB before, %d kB with %d idle sessions'
    . ' (%.1f kB each), %d kB after they closed; second wave: peak %d kB,'
    . ' %d kB after', $base, $peak, $N, ($peak - $base) / $N, $after1,
    $peak2, $after2));

SKIP: {
    # AddressSanitizer's shadow memory and quarantine make RSS meaningless
    skip('RSS bounds are not measured under AddressSanitizer', 3)
        if $t->has_feature('asan');

    ok($peak - $base < 64 * $N, 'less than 64 kB per idle session')
        or diag("grew by " . ($peak - $base) . " kB");

    # freed pools stay in glibc's heap (RSS does not drop), so "bounded"
    # means: no higher than the peak, and the same again after a second wave
    ok($after1 <= $peak + 1024, 'memory bounded by the peak after the timeout')
        or diag("before $base kB, peak $peak kB, after $after1 kB");
    ok($after2 <= $after1 + 2048 && $peak2 <= $peak + 2048,
        'the second wave does not grow the worker (no leak per session)')
        or diag("after the first wave $after1 kB, after the second $after2 kB");
}

###############################################################################

# wave(): opens $N connections that send the header and wait; returns
# (held, closed, with connection-timeout, peak RSS in kB)
sub wave {
    my @c;
    for (1 .. $N) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $port, Proto => 'tcp', Blocking => 1, Timeout => 5)
            or last;
        syswrite($s, $HDR);
        $s->blocking(0);
        push @c, { s => $s, buf => '' };
    }

    # all are served: each got our stream header and features
    my $end = time() + 10;
    my $served = 0;
    while (time() < $end) {
        $served = 0;
        for my $c (@c) {
            drain($c);
            $served++ if $c->{buf} =~ m{</stream:features>};
        }
        last if $served == @c;
        sleep 0.2;
    }
    my $held = grep { !$_->{eof} } @c;
    $held = 0 if $served != @c;
    my $peak = worker_rss();

    # "timeout 10s" from the connection's start: all are closed by then
    $end = time() + ($t->has_feature('asan') ? 40 : 20);
    my $closed;
    while (time() < $end) {
        drain($_) for @c;
        $closed = grep { $_->{eof} } @c;
        last if $closed == @c;
        sleep 0.2;
    }
    my $timeouts = grep {
        $_->{buf} =~ m{<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>\z}
    } @c;
    close $_->{s} for @c;
    sleep 0.5;
    return ($held, $closed, $timeouts, $peak);
}

sub drain {
    my ($c) = @_;
    return if $c->{eof};
    while (1) {
        my $n = sysread($c->{s}, $c->{buf}, 65536, length $c->{buf});
        if (!defined $n) {
            $c->{eof} = 1 unless $! == EAGAIN || $! == EWOULDBLOCK;
            return;
        }
        if ($n == 0) {
            $c->{eof} = 1;
            return;
        }
    }
}

# VmRSS of the worker process(es), in kB
sub worker_rss {
    my $master = $t->pid or return 0;
    my $rss = 0;
    for my $st (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $st or next;
        my $line = <$fh> // next;
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*\) \S+ (\d+)/ or next;
        next unless $ppid == $master;
        open my $s, '<', "/proc/$pid/status" or next;
        while (<$s>) {
            $rss += $1 if /^VmRSS:\s+(\d+)/;
        }
    }
    return $rss;
}
