package XT::Dnsmasq;

# A private, real DNS server (Debian's dnsmasq) on a free loopback port for
# one test: it answers for the test's own domains from its configuration
# and for nothing else (no upstream servers, no /etc/hosts), so tests can
# give servers (nginx's "resolver", a backend's resolver) SRV and address
# records without touching the machine's resolver.
#
#   my $dns = XT::Dnsmasq->new(
#       dir     => $t->testdir . '/dns',       # created
#       domains => ['test'],     # answered locally: NXDOMAIN for the rest
#       a       => { 'l.test' => '127.1.2.3', ... },
#       srv     => [ ['_xmpp-server._tcp.l.test', 'xmpp.l.test', 5269,
#                     PRIORITY, WEIGHT], ... ],
#       timeout => 10,
#   );                           # started and answering when new() returns
#   $dns->port;  $dns->host;  $dns->log;  $dns->stop;  $dns->restart
#   (XT::Daemon: stop also on DESTROY, END and SIGINT/TERM)
#
#   XT::Dnsmasq::available()   -> '' or why it cannot run here
#
# Queries are logged (log-queries) in DIR/dnsmasq.log, so a test can see
# what a server asked for.

use strict;
use warnings;

use File::Path qw(make_path);

use XT::Daemon;
use XT::Nginx qw(free_port);

our @ISA = ('XT::Daemon');

my $DNSMASQ = '/usr/sbin/dnsmasq';

sub available {
    return "$DNSMASQ is missing (dnsmasq-base; run auto/deps)"
        unless -x $DNSMASQ;
    return '';
}

sub new {
    my ($class, %o) = @_;
    my $dir = $o{dir} or die "XT::Dnsmasq: dir is required\n";
    if (my $why = available()) {
        die "XT::Dnsmasq: $why\n";
    }

    my $self = bless {
        dir     => $dir,
        domains => $o{domains} // ['test'],
        a       => $o{a} // {},
        srv     => $o{srv} // [],
        timeout => $o{timeout} // 10,
        port    => $o{port} // free_port(),
    }, $class;

    make_path($dir);
    $self->_write_config;

    $self->daemon_init;
    $self->start unless $o{no_start};
    return $self;
}

sub config_file { "$_[0]{dir}/dnsmasq.conf" }

# XT::Daemon: dnsmasq in the foreground, its TCP port, its log
sub command  { ($DNSMASQ, '--keep-in-foreground', '--conf-file=' . $_[0]->config_file) }
sub ports    { ($_[0]{port}) }
sub log_file { "$_[0]{dir}/dnsmasq.log" }

sub _write_config {
    my ($self) = @_;
    my $d = $self->{dir};

    my $cfg = "# written by XT::Dnsmasq for one test run\n"
        . "port=$self->{port}\n"
        . "listen-address=127.0.0.1\n"
        . "bind-interfaces\n"
        . "no-resolv\n"
        . "no-hosts\n"
        . "no-poll\n"
        . "user=root\n"
        . "pid-file=\n"
        . "log-queries\n"
        . "log-facility=$d/dnsmasq.log\n";

    $cfg .= "local=/$_/\n" for @{ $self->{domains} };

    for my $name (sort keys %{ $self->{a} }) {
        $cfg .= "host-record=$name,$self->{a}{$name}\n";
    }
    for my $srv (@{ $self->{srv} }) {
        my ($name, $target, $port, $prio, $weight) = @$srv;
        $cfg .= "srv-host=$name,$target,$port," . ($prio // 0) . ','
            . ($weight // 0) . "\n";
    }

    XT::Daemon::write_file($self->config_file, $cfg);
}

1;
