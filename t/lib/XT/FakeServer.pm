package XT::FakeServer;

# A scripted TCP server for tests that need to see or control the raw bytes
# of a peer of nginx: an auth_http endpoint that records the exact request
# bytes (nginx's own http module would parse them first), or a backend that
# misbehaves on purpose (refuses, closes, hangs, sends garbage).  Real
# servers (nginx's http block, Prosody) are used wherever the raw bytes or
# the misbehaviour do not matter.
#
#   my $f = XT::FakeServer->new(
#       dir     => $t->testdir . '/fake-auth',   # where requests are kept
#       port    => $port,                        # default: free_port()
#       handler => sub {
#           my ($sock, $f, $id) = @_;            # runs in a child process
#           my $req = $f->read_http($sock, $id); # recorded in DIR/ID.in
#           print $sock "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\r\n";
#       },
#   );
#   $f->port; $f->requests (recorded inputs, in order); $f->count;
#   $f->stop (also done on destruction).
#
# Each connection is served by its own forked child of the server process;
# the child exits when the handler returns.  The server and its children
# form a process group of their own, stopped by stop().

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

use XT::Nginx qw(free_port);

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        dir     => $o{dir} // die("XT::FakeServer: dir needed\n"),
        port    => $o{port} // free_port(),
        handler => $o{handler} // die("XT::FakeServer: handler needed\n"),
        owner   => $$,
    }, $class;
    mkdir $self->{dir};

    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $self->{port}, Listen => 1024, ReuseAddr => 1)
        or die "XT::FakeServer: listen on $self->{port}: $@\n";

    my $pid = fork() // die "XT::FakeServer: fork: $!\n";
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        $SIG{CHLD} = 'IGNORE';
        my $id = 0;
        while (1) {
            my $c = $l->accept or next;
            $id++;
            my $child = fork();
            if (defined $child && $child == 0) {
                close $l;
                eval { $self->{handler}->($c, $self, $id) };
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    close $l;
    $self->{pid} = $pid;
    return $self;
}

sub port { $_[0]{port} }
sub dir  { $_[0]{dir} }

# record($id, $bytes): appends to DIR/ID.in
sub record {
    my ($self, $id, $data) = @_;
    open my $fh, '>>:raw', sprintf('%s/%06d.in', $self->{dir}, $id) or return;
    print $fh $data;
    close $fh;
}

# read_http($sock, $id[, $timeout]): reads an HTTP request header (up to the
# empty line), records it, returns it (undef on EOF/timeout).
sub read_http {
    my ($self, $sock, $id, $timeout) = @_;
    my $buf = '';
    my $end = time() + ($timeout // 10);
    while (index($buf, "\r\n\r\n") < 0) {
        my $left = $end - time();
        last if $left <= 0;
        last unless IO::Select->new($sock)->can_read($left);
        my $n = sysread($sock, $buf, 65536, length $buf);
        last unless $n;
    }
    $self->record($id, $buf);
    return index($buf, "\r\n\r\n") < 0 ? undef : $buf;
}

# read_some($sock, $id[, $timeout]): whatever arrives within the timeout
# (or up to EOF), recorded.
sub read_some {
    my ($self, $sock, $id, $timeout) = @_;
    my $buf = '';
    return $buf unless IO::Select->new($sock)->can_read($timeout // 5);
    my $n = sysread($sock, $buf, 65536);
    $self->record($id, $buf) if $n;
    return $buf;
}

# read_until($sock, $id, qr//[, $timeout]): reads (recorded) until what
# arrived matches; returns it, or undef on EOF or timeout (default 5s).
sub read_until {
    my ($self, $sock, $id, $re, $timeout) = @_;
    my $buf = '';
    my $end = time() + ($timeout // 5);
    while ($buf !~ $re) {
        my $left = $end - time();
        return undef if $left <= 0;
        my $got = $self->read_some($sock, $id, $left);
        return undef unless length $got;
        $buf .= $got;
    }
    return $buf;
}

# The recorded inputs, in the order of the connections.
sub requests {
    my ($self) = @_;
    my @r;
    for my $f (sort glob("$self->{dir}/*.in")) {
        open my $fh, '<:raw', $f or next;
        local $/;
        push @r, scalar(<$fh>) // '';
    }
    return @r;
}

sub count { scalar(my @r = $_[0]->requests) }

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    return unless $$ == $self->{owner};
    kill 'TERM', -$pid;
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop;
}

1;
