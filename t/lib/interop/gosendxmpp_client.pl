#!/usr/bin/perl

# go-sendxmpp (Debian go-sendxmpp, on the Go library go-xmpp) behind the
# suite's client convention (see README): one go-sendxmpp listens (-l) as
# JID/gsx-listen, another one sends BODY to --to; the answer is expected
# at JID/gsx-listen (the peer is told so).  "tls" is go-sendxmpp's -t
# (direct TLS); -n: certificates are not verified.

use strict;
use warnings;

use Getopt::Long;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

$| = 1;
my %o = (timeout => 20, bin => 'go-sendxmpp', dir => '/tmp');
GetOptions(\%o, 'host=s', 'port=i', 'mode=s', 'jid=s', 'password=s', 'to=s',
    'body=s', 'expect=s', 'timeout=f', 'bin=s', 'dir=s') or fail(2, 'usage');

my $end = time() + $o{timeout};
my @common = ($o{bin}, '-u', $o{jid}, '-p', $o{password},
    '-j', "$o{host}:$o{port}", '-n', ($o{mode} eq 'tls' ? ('-t') : ()));
my ($lout, $lerr) = ("$o{dir}/gsx-listen.$$.out", "$o{dir}/gsx-listen.$$.err");

my $listener = fork() // fail(3, "fork: $!");
if ($listener == 0) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', $lout;
    open STDERR, '>', $lerr;
    exec @common, '-d', '-r', 'gsx-listen', '-l' or POSIX::_exit(127);
}

sub slurp { open(my $fh, '<', $_[0]) or return ''; local $/; <$fh> // '' }
sub last_line { my @l = grep { /\S/ } split /\n/, $_[0]; $l[-1] // '' }
sub fail {
    my ($code, $why) = @_;
    print "FAIL $why\n";
    if ($listener) {
        kill 'TERM', $listener;
        waitpid($listener, 0);
    }
    unlink $lout, $lerr;
    exit $code;
}

# logged in and bound: the bind result in the debug output
my $jid;
until ($jid) {
    ($jid) = slurp($lerr) =~ m{<jid>([^<]+)</jid>};
    last if $jid;
    if (waitpid($listener, WNOHANG) == $listener) {
        $listener = 0;
        fail(3, 'listener exited: ' . last_line(slurp($lerr)));
    }
    fail(7, 'listener: timeout: ' . last_line(slurp($lerr))) if time() > $end;
    sleep 0.05;
}
print "BOUND $jid\n";

# the sender: message on standard input
my $sout = "$o{dir}/gsx-send.$$.out";
my $sender = open(my $to_sender, '|-') // fail(3, "fork: $!");
if ($sender == 0) {
    open STDOUT, '>', $sout;
    open STDERR, '>&', \*STDOUT;
    exec @common, $o{to} or POSIX::_exit(127);
}
print $to_sender "$o{body}\n";
close $to_sender;
my $code = $? >> 8;
my $said = slurp($sout);
unlink $sout;
fail(3, "sender exit $code: " . last_line($said)) if $code;
print "SENT\n";

# "2026-01-01T00:00:00Z bob@example.com/res: BODY" from the listener
while (1) {
    for my $line (split /\n/, slurp($lout)) {
        next unless $line =~ /^\S+ (\S+): (.*)$/ && $2 eq $o{expect};
        print "RECEIVED $1 $2\n";
        kill 'TERM', $listener;
        waitpid($listener, 0);
        unlink $lout, $lerr;
        exit 0;
    }
    if (waitpid($listener, WNOHANG) == $listener) {
        $listener = 0;
        fail(3, 'listener exited: ' . last_line(slurp($lerr)));
    }
    fail(7, 'timeout waiting for the answer') if time() > $end;
    sleep 0.05;
}
