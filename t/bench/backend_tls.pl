#!/usr/bin/perl

# t/bench/backend_tls.pl: logins per second and nginx CPU per login with
# TLS from nginx to the backend (xmpp_proxy_ssl) against plain TCP, in one
# run, the variants taking turns (see t/bench/README.md, "TLS to the
# backend").
#
#   perl t/bench/backend_tls.pl [--nginx PATH] [--conc 20] [--duration 5]
#       [--rounds 3] [--server-cpu 1] [--client-cpu 0]
#
# One Prosody (STARTTLS offered, not required, and a direct TLS port: the
# same backend for every variant) and one nginx (worker_processes 1) with a
# mail server per variant:
#
#   plain     xmpp_proxy_ssl off            (plain TCP to Prosody)
#   starttls  xmpp_proxy_ssl starttls       (sessions reused)
#   direct    xmpp_proxy_ssl on             (direct TLS, sessions reused)
#   full      xmpp_proxy_ssl starttls; xmpp_proxy_ssl_session_reuse off
#
# Every login: the client (xbench -m xmpp) does STARTTLS and SASL PLAIN
# with nginx, nginx logs in to Prosody, the client binds and closes.
# nginx CPU is utime+stime of the worker over the run, divided by the
# logins that completed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use File::Temp qw(tempdir);
use Getopt::Long;
use POSIX ();
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

use XT::Nginx qw(free_port make_cert);
use XT::Prosody;

my %o = (conc => 20, duration => 5, rounds => 3, 'server-cpu' => 1,
    'client-cpu' => 0);
GetOptions(\%o, 'nginx=s', 'conc=i', 'duration=f', 'rounds=i',
    'server-cpu=s', 'client-cpu=s', 'keep') or die "bad options\n";

my $root = "$FindBin::Bin/../..";
my $nginx = $o{nginx} // $ENV{TEST_NGINX_BINARY}
    // die "backend_tls: --nginx PATH or TEST_NGINX_BINARY\n";
my $bin = "$FindBin::Bin/bin";
my $xbench = "$bin/xbench";
if (!-x $xbench || -M "$FindBin::Bin/xbench.c" < -M $xbench) {
    mkdir $bin;
    system('cc', '-O2', '-g', '-Wall', '-o', $xbench,
        "$FindBin::Bin/xbench.c", '-lssl', '-lcrypto') == 0
        or die "backend_tls: cannot build xbench\n";
}

my $tmp = tempdir('xbench-tls-XXXXXXXX', TMPDIR => 1, CLEANUP => !$o{keep});
my $CLK_TCK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

my $p = XT::Prosody->new(dir => "$tmp/prosody", tls => 0, direct_tls => 1,
    domains => ['example.com'], users => [['user0', 'example.com', 'secret']],
    no_start => 1, timeout => 30,
    extra => join("\n",
        qq{log = { error = "$tmp/prosody/prosody.log" }},
        qq{c2s_timeout = 600},
        qq{network_settings = { tcp_backlog = 4096 }}, ''));
$p->start;
system('taskset', '-a', '-p', '-c', $o{'server-cpu'}, $p->pid)
    if defined $o{'server-cpu'};

my ($crt) = $p->cert('example.com');
make_cert("$tmp/xmpp.crt", "$tmp/xmpp.key", cn => 'example.com');

my @variants = (
    [plain    => $p->port, 'xmpp_proxy_ssl off;'],
    [starttls => $p->port, 'xmpp_proxy_ssl starttls;'],
    [direct   => $p->tls_port, 'xmpp_proxy_ssl on;'],
    [full     => $p->port, "xmpp_proxy_ssl starttls;\n"
                           . "        xmpp_proxy_ssl_session_reuse off;"],
);

my $auth = free_port();
my (%port, $servers, $map);
for my $v (@variants) {
    my ($name, $backend, $lines) = @$v;
    $port{$name} = free_port();
    $map .= "        $name  $backend;\n";
    $servers .= <<"EOF";
    server {
        listen 127.0.0.1:$port{$name};
        protocol xmpp;
        starttls only;
        auth_http_header X-Variant $name;
        $lines
    }
EOF
}

open(my $fh, '>', "$tmp/nginx.conf") or die;
print $fh <<"EOF";
daemon off;
master_process on;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log warn;
events { worker_connections 8192; }

http {
    access_log off;
    map \$http_x_variant \$xt_port {
$map    }
    server {
        listen 127.0.0.1:$auth;
        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$xt_port;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:$auth/auth;
    server_name proxy.test;
    ssl_protocols TLSv1.3;
    ssl_certificate $tmp/xmpp.crt;
    ssl_certificate_key $tmp/xmpp.key;
    xmpp_proxy_ssl_trusted_certificate $crt;

$servers}
EOF
close $fh;

my $npid = fork() // die;
if ($npid == 0) {
    open STDOUT, '>', "$tmp/nginx.stderr";
    open STDERR, '>&', \*STDOUT;
    my @cmd = ($nginx, '-p', "$tmp/", '-c', "$tmp/nginx.conf");
    unshift @cmd, 'taskset', '-c', $o{'server-cpu'} if defined $o{'server-cpu'};
    exec @cmd or POSIX::_exit(127);
}

END { kill 'QUIT', $npid if $npid; $p->stop if $p }

for my $v (@variants) {
    my $port = $port{ $v->[0] };
    my $deadline = time + 10;
    until (IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")) {
        die "backend_tls: nginx did not start\n" if time > $deadline;
        sleep 0.1;
    }
}

sub worker_pids {
    my @k;
    for my $pid (map { m{/proc/(\d+)$} ? $1 : () } glob '/proc/[0-9]*') {
        open(my $f, '<', "/proc/$pid/stat") or next;
        my @s = split ' ', (scalar <$f>) =~ s/^.*\) //r;
        push @k, $pid if $s[1] == $npid;
    }
    return @k;
}


sub cpu_s {
    my $t = 0;
    for my $pid (@_) {
        open(my $f, '<', "/proc/$pid/stat") or next;
        my @s = split ' ', (scalar <$f>) =~ s/^.*\) //r;
        $t += $s[11] + $s[12];
    }
    return $t / $CLK_TCK;
}

sub client {
    my ($port, %a) = @_;
    my @cmd = ($xbench, '-m', 'xmpp', '-p', $port, '-c', $a{c},
        '-d', $a{d}, '-U', 1, '-q');
    unshift @cmd, 'taskset', '-c', $o{'client-cpu'}
        if defined $o{'client-cpu'};
    open(my $out, '-|', @cmd) or die "xbench: $!\n";
    local $/;
    my $r = <$out> // '';
    close $out;
    my %r = $r =~ /^RESULT (.*)$/m ? map { split /=/, $_, 2 } split ' ', $1 : ();
    die "backend_tls: xbench failed:\n$r\n" unless defined $r{ok};
    return \%r;
}

# a warm-up login per variant (Prosody's first PBKDF2, nginx's first
# handshake to the backend)
client($port{ $_->[0] }, c => 1, d => 0.5) for @variants;

my @w = worker_pids();
my %sum;
for my $round (1 .. $o{rounds}) {
    for my $v (@variants) {
        my $name = $v->[0];
        my $c0 = cpu_s(@w);
        my $r = client($port{$name}, c => $o{conc}, d => $o{duration});
        my $c1 = cpu_s(@w);
        $sum{$name}{ok} += $r->{ok};
        $sum{$name}{errors} += $r->{errors};
        $sum{$name}{wall} += $r->{wall};
        $sum{$name}{cpu} += $c1 - $c0;
        push @{ $sum{$name}{p50} }, $r->{login_p50};
    }
}

printf "TLS to the backend: nginx %s, Prosody %s, c=%d, %d rounds of %gs\n\n",
    $nginx, $p->port, $o{conc}, $o{rounds}, $o{duration};
printf "| variant | logins/s | nginx CPU ms/login | login p50 ms | errors |"
    . " logins/s ratio | CPU/login ratio |\n";
printf "|---|---|---|---|---|---|---|\n";
my $base = $sum{plain};
for my $v (@variants) {
    my $s = $sum{ $v->[0] };
    my $rate = $s->{ok} / ($s->{wall} || 1);
    my $cpu = $s->{ok} ? 1000 * $s->{cpu} / $s->{ok} : 0;
    my @p = sort { $a <=> $b } @{ $s->{p50} };
    my $brate = $base->{ok} / ($base->{wall} || 1);
    my $bcpu = $base->{ok} ? 1000 * $base->{cpu} / $base->{ok} : 0;
    printf "| %s | %.0f | %.3f | %.1f | %d | %.2f | %.2f |\n", $v->[0], $rate,
        $cpu, $p[$#p / 2], $s->{errors}, $rate / ($brate || 1),
        $cpu / ($bcpu || 1);
}
