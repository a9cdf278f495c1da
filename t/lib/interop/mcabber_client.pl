#!/usr/bin/perl

# mcabber (Debian mcabber 1.1, on loudmouth) driven like a person would, in
# tmux: send-keys to type, capture-pane to read the screen.  Follows the
# suite's client convention (see README).  "starttls" is mcabber's "tls",
# "tls" its "ssl" (TLS from the first byte); ssl_ignore_checks: the
# certificate is not verified.  The resource is "mcabber".

use strict;
use warnings;

use Getopt::Long;
use Time::HiRes qw(sleep time);

$| = 1;
my %o = (timeout => 20, dir => '/tmp', bin => 'mcabber');
GetOptions(\%o, 'host=s', 'port=i', 'mode=s', 'jid=s', 'password=s', 'to=s',
    'body=s', 'expect=s', 'timeout=f', 'dir=s', 'bin=s', 'debug') or fail(2, 'usage');

my $home = "$o{dir}/mcabber.$$";
mkdir $home;
my $socket = "xt-mcabber-$$";
my @tmux = ('tmux', '-L', $socket);
my $end = time() + $o{timeout};

sub fail {
    my ($code, $why) = @_;
    my $screen = screen();
    print "FAIL $why\n";
    print "--- screen:\n$screen\n" if $screen =~ /\S/;
    quit();
    exit $code;
}

sub quit {
    system(@tmux, 'kill-server');
}

sub screen {
    my $s = `tmux -L $socket capture-pane -p -J -S -200 -t xt 2>/dev/null`;
    return $s // '';
}

sub type {
    my ($text) = @_;
    if (length $text) {
        system(@tmux, 'send-keys', '-t', 'xt', '-l', $text) == 0
            or fail(3, 'tmux send-keys');
    }
    system(@tmux, 'send-keys', '-t', 'xt', 'Enter');
}

# wait_for(qr//, what): until the screen shows it; a connection error on
# the screen ends the wait at once
sub wait_for {
    my ($re, $what) = @_;
    while (1) {
        my $s = screen();
        return $s if $s =~ $re;
        if ($s =~ /((?:Authentication failed|Disconnected|Connection error|SSL)[^\n]*)/i) {
            fail(3, "mcabber: $1");
        }
        fail(7, "timeout waiting for $what") if time() > $end;
        sleep 0.1;
    }
}

my $rc = "$home/mcabberrc";
open(my $fh, '>', $rc) or fail(2, "$rc: $!");
printf $fh <<'EOF', @o{qw(jid password host port)}, ($o{mode} eq 'tls' ? 'ssl' : 'tls');
set jid = %s
set password = %s
set server = %s
set port = %d
set resource = mcabber
set disable_random_resource = 1
set %s = 1
set ssl_ignore_checks = 1
set ssl_verify = 0
set beep_on_message = 0
set logging = 0
set log_win_height = 12
EOF
close $fh;
chmod 0600, $rc;

system(@tmux, 'new-session', '-d', '-s', 'xt', '-x', '200', '-y', '50',
    "HOME='$home' TERM=xterm exec $o{bin} -f '$rc'") == 0
    or fail(3, 'tmux new-session failed');

wait_for(qr/Your status has been set/, 'the login');
print "BOUND $o{jid}/mcabber\n";

type("/say_to $o{to} $o{body}");
print "SENT\n";

# open the chat window of the other user (/say_to made it a local roster
# item), as a person would: select the buddy, then Enter on an empty line;
# the window shows what was sent and what arrives
type("/roster search $o{to}");
wait_for(qr/Buddy: \Q$o{to}\E/, 'the buddy selected');
type('');
wait_for(qr/--> \Q$o{body}\E/, 'the sent message on screen');
wait_for(qr/<== \Q$o{expect}\E/, 'the answer on screen');
print "RECEIVED $o{to} $o{expect}\n";
print "--- screen:\n", screen(), "\n" if $o{debug};
type('/quit');
sleep 0.2;
quit();
exit 0;
