package XT::Daemon;

# The lifecycle that the harness's real XMPP servers share (XT::Prosody,
# XT::Ejabberd; another server, DJabberd say, inherits it the same way):
# the server runs in the foreground of a child process of the test, which
# start() forks and execs; start() returns once every port of the server
# accepts connections and the server's own ready() says so (or dies with
# the reason and the tails of its output and log).  The server is stopped
# by stop(), when its object is destroyed and at END, also when the test
# is interrupted: SIGINT, SIGTERM, SIGHUP and SIGPIPE make the test exit,
# so that the END blocks run (see exit_on_signals()).
#
# A server class:
#
#   package XT::Foo;
#   use XT::Daemon;
#   our @ISA = ('XT::Daemon');
#
#   sub new {
#       my ($class, %o) = @_;
#       my $self = bless { dir => $o{dir}, timeout => 15,
#           port => $o{port} // free_port() }, $class;
#       ...                          # configuration files, accounts
#       $self->daemon_init;          # END, DESTROY and the signals
#       return $self->start;
#   }
#   sub command  { ('/usr/bin/foo', '-F', ...) }    # the foreground server
#   sub ports    { ($_[0]{port}) }                  # start() waits for them
#   sub log_file { "$_[0]{dir}/foo.log" }           # log(), and failures
#
# and may override:
#
#   sub name        { 'foo' }   # in messages (default: the class's last
#                               # name part in lower case)
#   sub ready       { 1 }       # polled after the ports opened, until true;
#                               # $self->{log_start} is the length of the
#                               # log before this start
#   sub stop_signal { ('TERM', 10) }   # stop(%o): the first signal and how
#                               # many seconds to wait before SIGKILL
#   sub stop_pids   { ($_[0]{pid}) }   # what the signals go to
#
# Fields of the object: dir (the child's working directory; its stdout and
# stderr go to DIR/stdout.log), timeout (seconds for start), port,
# process_group (true: the child gets a process group of its own, and
# stop() kills what is left of the group at the end); the base class keeps
# pid, owner (the test's pid: only that process stops the server),
# exit_status and log_start.
#
# Methods: start, stop(%o), restart, alive (the child still runs), killed
# (the last stop needed SIGKILL), pid, port, host, dir, log (the whole log
# so far).
# Functions: exit_on_signals(), run_quiet(@cmd) -> (exit code, output),
# write_file($path, $data), tail($file) -> its last 20 lines.

use strict;
use warnings;

use POSIX qw(WNOHANG setpgid);
use Scalar::Util qw(weaken);
use Time::HiRes qw(sleep time);

use XT::Nginx qw(wait_for_port);    # also loads Test::More first: the END
                                    # below runs before Test::Builder's

our %LIVE;    # every server object (weak references), for END

sub name        { my ($self) = @_; return lc((split /::/, ref $self)[-1]) }
sub ready       { 1 }
sub stop_signal { ('TERM', 10) }
sub stop_pids   { ($_[0]{pid}) }

sub port { $_[0]{port} }
sub host { '127.0.0.1' }
sub dir  { $_[0]{dir} }
sub pid  { $_[0]{pid} }

# daemon_init(): called by new() of the server class before start().
sub daemon_init {
    my ($self) = @_;
    $self->{owner} = $$;
    $LIVE{"$self"} = $self;
    weaken($LIVE{"$self"});
    exit_on_signals();
    return $self;
}

# exit_on_signals(): SIGINT, SIGTERM, SIGHUP and SIGPIPE (prove killed, or
# its output piped into "head") make the test exit, so that END blocks stop
# the servers; by default the test would die on the spot and leave them
# running.  Handlers that someone else installed are kept.  A process
# forked from the test (a scripted fake server, say) still dies of the
# signal: it must not run the test's END blocks.
sub exit_on_signals {
    my %no = (INT => 2, HUP => 1, PIPE => 13, TERM => 15);
    my $owner = $$;
    for my $sig (keys %no) {
        my $h = $SIG{$sig};
        next if defined $h && $h ne '' && $h ne 'DEFAULT';
        $SIG{$sig} = sub {
            if ($$ != $owner) {
                $SIG{$sig} = 'DEFAULT';
                kill $sig, $$;
                return;
            }
            $SIG{PIPE} = 'IGNORE';    # the END blocks may still print
            exit(128 + $no{$sig});
        };
    }
}

# alive(): true while the server process runs (it is reaped, and its exit
# status kept in {exit_status}, once it has exited).
sub alive {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    if (waitpid($pid, WNOHANG) == $pid) {
        $self->{exit_status} = $?;
        delete $self->{pid};
        return 0;
    }
    return 1;
}

sub start {
    my ($self) = @_;
    return $self if $self->{pid};
    my $d = $self->{dir};
    my @cmd = $self->command;
    my $class = ref $self;
    my $name = $self->name;
    my $timeout = $self->{timeout} // 15;

    $self->{log_start} = length $self->log;
    my $pid = fork() // die "$class: fork: $!\n";
    if ($pid == 0) {
        setpgid(0, 0) if $self->{process_group};
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/stdout.log";
        open STDERR, '>&', \*STDOUT;
        chdir $d;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    setpgid($pid, $pid) if $self->{process_group};
    $self->{pid} = $pid;

    for my $p ($self->ports) {
        next if wait_for_port($p, $timeout, '127.0.0.1', sub { $self->alive });
        my $why = $self->{pid} ? "port $p did not open in ${timeout}s"
            : "$name exited (status " . ($self->{exit_status} // '?') . ")";
        $self->stop;
        die "$class: $name failed to start: $why\n"
            . "--- stdout/stderr:\n" . tail("$d/stdout.log")
            . "--- log:\n" . tail($self->log_file);
    }

    my $end = time() + $timeout;
    until ($self->ready) {
        if (!$self->alive || time() > $end) {
            $self->stop;
            die "$class: $name did not finish starting\n"
                . "--- log:\n" . tail($self->log_file);
        }
        sleep 0.05;
    }
    return $self;
}

# stop(%o): the server class's stop_signal(%o) to its stop_pids, then
# SIGKILL after the time stop_signal() gave (and to the process group of
# the server, if it has one).  Only in the process that started it.
sub stop {
    my ($self, %o) = @_;
    return $self unless $self->{pid} && $$ == $self->{owner};
    my $pid = $self->{pid};
    my ($sig, $wait) = $self->stop_signal(%o);
    kill $sig, $self->stop_pids;
    my $end = time() + $wait;
    while ($self->alive && time() < $end) {
        sleep 0.02;
    }
    $self->{killed} = $self->{pid} && $sig ne 'KILL' ? 1 : 0;
    if ($self->{pid}) {
        kill 'KILL', $self->stop_pids;
        kill 'KILL', -$pid if $self->{process_group};
        waitpid($pid, 0);
        delete $self->{pid};
    }
    return $self;
}

# killed(): true if the last stop() had to use SIGKILL after its signal
# (the server did not exit in time)
sub killed { $_[0]{killed} }

sub restart {
    my ($self) = @_;
    $self->stop;
    return $self->start;
}

# log(): the server's log so far.
sub log {
    my ($self) = @_;
    open(my $fh, '<', $self->log_file) or return '';
    local $/;
    return <$fh> // '';
}

# run_quiet(@cmd): runs a command with its stdin from /dev/null, returns
# (exit code, stdout and stderr).
sub run_quiet {
    my (@cmd) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# write_file($path, $data): writes a configuration file; dies on error.
sub write_file {
    my ($path, $data) = @_;
    open(my $fh, '>', $path) or die "cannot write $path: $!\n";
    print $fh $data;
    close $fh or die "cannot write $path: $!\n";
}

# tail($file): its last 20 lines, "(none)" if it cannot be read.
sub tail {
    my ($f) = @_;
    open(my $fh, '<', $f) or return "(none)\n";
    my @l = <$fh>;
    @l = @l[-20 .. -1] if @l > 20;
    return join '', @l;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    delete $LIVE{"$self"};
    $self->stop;
}

END {
    my $status = $?;
    $_->stop for grep { defined } values %LIVE;
    $? = $status;
}

1;
