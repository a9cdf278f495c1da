#!/usr/bin/perl

# The nginx-xmpp benchmark driver; run it through t/bench/run, which raises
# the open-file limits and builds the C tools.  See t/bench/README.md.
#
# Scenarios (one run, same TLS settings: TLS 1.3, X25519, ECDSA P-256,
# TLS_AES_128_GCM_SHA256, full handshakes, no tickets/resumption):
#   A  client -> nginx-xmpp (STARTTLS, SASL PLAIN) -> Prosody, plain TCP
#   B  client -> Prosody terminating TLS itself (STARTTLS, its own cert)
#   C  client -> nginx IMAP (STARTTLS, LOGIN) -> bstub IMAP backend
#   D  bare TLS handshakes to nginx's mail "listen ... ssl" port (xmpp)
#   E  splice throughput through one established session:
#      nginx-xmpp (direct TLS) vs nginx stream (TLS terminated, TCP proxy)
#      vs nginx stream (plain) vs direct plain, all into the bstub sink
#   M  memory per idle authenticated session (A, B, C; fresh servers)
#   I  20 000 idle sessions through one nginx worker (A path)
#   G  (with --callgrind N) instructions per session in nginx under
#      callgrind, for A, C, D: stable figures on a noisy machine

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Cwd qw(abs_path);
use File::Copy qw(copy);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Getopt::Long;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use XT::Nginx qw(free_port wait_for_port make_cert);
use XT::Prosody;

$| = 1;

# so that END stops what we started
$SIG{INT} = $SIG{TERM} = sub { die "bench: interrupted\n" };

my $ROOT = abs_path("$FindBin::Bin/../..");
my $NCPU = `nproc` + 0 || 1;

my %o = (
    bin       => "$FindBin::Bin/bin",
    out       => undef,
    nginx     => undef,
    duration  => 5,
    count     => 0,
    conc      => '1,10,50,200',
    idle      => 2000,
    big       => 20000,
    xput      => 200,
    repeat    => 5,
    users     => 100,
    callgrind => 0,
    profile   => 0,
    scpu      => $NCPU > 1 ? 1 : undef,
    ccpu      => $NCPU > 1 ? 0 : undef,
    only      => 'A,B,C,D,X,E,M,I,G',
    keep      => 0,
    smoke     => 0,
    verbose   => 0,
);

GetOptions(
    'bin=s'       => \$o{bin},
    'out=s'       => \$o{out},
    'nginx=s'     => \$o{nginx},
    'duration=f'  => \$o{duration},
    'count=i'     => \$o{count},
    'conc=s'      => \$o{conc},
    'idle=i'      => \$o{idle},
    'big=i'       => \$o{big},
    'xput=i'      => \$o{xput},
    'repeat=i'    => \$o{repeat},
    'users=i'     => \$o{users},
    'callgrind=i' => \$o{callgrind},
    'profile'     => \$o{profile},
    'server-cpu=s' => \$o{scpu},
    'client-cpu=s' => \$o{ccpu},
    'backend-cpu=s' => \$o{bcpu},
    'only=s'      => \$o{only},
    'keep'        => \$o{keep},
    'smoke'       => \$o{smoke},
    'verbose'     => \$o{verbose},
    'help'        => sub { usage(0) },
) or usage(2);

sub usage {
    print <<'EOF';
usage: t/bench/run [options]
  --smoke          tiny counts (< 60 s), results into a temp dir unless --out
  --out DIR        where last.csv, last.png, last.txt go (t/bench/results)
  --nginx PATH     nginx binary (default $TEST_NGINX_BINARY, then
                   build/nginx-VERSION/objs/nginx as in t/lib/XT/Nginx.pm)
  --duration S     seconds per load point (5)       --count N  sessions per
                   point instead of a duration
  --conc LIST      concurrency points (1,10,50,200)
  --idle N         idle sessions for the memory figures (2000)
  --big N          idle sessions through one worker (20000; 0 = skip)
  --xput MB        bytes for the splice throughput (200)
  --repeat N       throughput repetitions, the median is kept (5)
  --callgrind N    sessions per scenario under callgrind (0 = skip)
  --profile        perf profiles of the nginx worker under load (c=50)
                   for A, C, D, X: OUT/perf-*.txt and a table by library
  --only LIST      scenarios: A,B,C,D,X,E,M,I,G
  --server-cpu L / --client-cpu L   taskset CPU lists (1 / 0 on >1 CPUs)
  --backend-cpu L  CPUs of Prosody and bstub (default: --server-cpu)
  --keep           keep the temporary directory
EOF
    exit $_[0];
}

if ($o{smoke}) {
    $o{count} ||= 20;
    $o{conc} = '1,5' if $o{conc} eq '1,10,50,200';
    $o{idle} = 50 if $o{idle} == 2000;
    $o{big} = 0 if $o{big} == 20000;
    $o{xput} = 2 if $o{xput} == 200;
    $o{repeat} = 1;
    $o{users} = 5;
}

my %ONLY = map { $_ => 1 } split /,/, $o{only};
my @CONC = split /,/, $o{conc};
my $C50 = (grep { $_ == 50 } @CONC) ? 50 : $CONC[-1];   # the "busy" point
my $C1 = $CONC[0];

my $TMP = tempdir('xbench-XXXXXXXX', TMPDIR => 1, CLEANUP => !$o{keep});
chmod 0755, $TMP;
my $OUT = $o{out} // ($o{smoke} ? "$TMP/results" : "$FindBin::Bin/results");
make_path($OUT);

my $CLK_TCK = `getconf CLK_TCK` + 0 || 100;

# open files: t/bench/run raised the soft limit as far as the hard one
# allows; raising the hard limit needs CAP_SYS_RESOURCE
my $FD_SOFT = `sh -c 'ulimit -n'`;
chomp $FD_SOFT;
$FD_SOFT = 1 << 20 if $FD_SOFT eq 'unlimited';
# one nginx worker holds two descriptors per proxied session, and four
# while a login is in flight (client, auth_http both ends, backend)
# nginx starts closing "reusable" connections (here: the auth_http
# requests to its own http server) once fewer than 1/16 of
# worker_connections are free
my $BIG_RAMP = 50;
my $BIG_MAX = int((($FD_SOFT - 50) * 15 / 16 - 4 * $BIG_RAMP - 100) / 2);
my $BIG_WANT = $o{big};
if ($o{big} > $BIG_MAX) {
    $o{big} = int($BIG_MAX / 500) * 500;
}
my $PAGE_KB = (`getconf PAGESIZE` + 0 || 4096) / 1024;

my %CHILD;          # pid => name, for the processes we started
my @CSV;            # [scenario, concurrency, metric, value, unit]
my %R;              # results: $R{scenario}{...}
my @NOTES;

sub say_ { print join('', @_), "\n" }

sub csv {
    my ($sc, $c, $metric, $value, $unit) = @_;
    push @CSV, [$sc, $c // '', $metric, $value // '', $unit // ''];
}

###############################################################################
# processes

sub spawn {
    my ($name, $cpu, $log, @cmd) = @_;
    unshift @cmd, 'taskset', '-c', $cpu if defined $cpu;
    my $pid = fork() // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    $CHILD{$pid} = $name;
    say_("  started $name (pid $pid): @cmd") if $o{verbose};
    return $pid;
}

sub alive {
    my ($pid) = @_;
    return 0 unless $pid;
    my $r = waitpid($pid, WNOHANG);
    return $r == $pid ? 0 : 1;
}

sub stop_pid {
    my ($pid, $sig, $timeout) = @_;
    return unless $pid && $CHILD{$pid};
    kill $sig // 'TERM', $pid;
    my $end = time() + ($timeout // 10);
    while (time() < $end) {
        my $r = waitpid($pid, WNOHANG);
        last if $r == $pid || $r == -1;
        sleep 0.02;
    }
    if (waitpid($pid, WNOHANG) == 0) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
    delete $CHILD{$pid};
}

END {
    my $st = $?;
    for my $pid (keys %CHILD) {
        kill 'TERM', $pid;
    }
    for my $pid (keys %CHILD) {
        my $end = time() + 5;
        while (time() < $end && waitpid($pid, WNOHANG) == 0) { sleep 0.05 }
        if (waitpid($pid, WNOHANG) == 0) { kill 'KILL', $pid; waitpid($pid, 0) }
    }
    $? = $st;
}

sub children_of {
    my ($ppid) = @_;
    my @k;
    opendir(my $d, '/proc') or return;
    for my $p (grep { /^\d+$/ } readdir $d) {
        open(my $fh, '<', "/proc/$p/stat") or next;
        my $s = <$fh> // next;
        my ($pp) = $s =~ /\) \S+ (\d+)/;
        push @k, $p if defined $pp && $pp == $ppid;
    }
    return @k;
}

# utime+stime of the processes, in seconds
sub cpu_s {
    my $t = 0;
    for my $p (@_) {
        open(my $fh, '<', "/proc/$p/stat") or next;
        my $s = <$fh>;
        $s =~ s/^.*\) //;
        my @f = split ' ', $s;
        $t += $f[11] + $f[12];    # fields 14 and 15
    }
    return $t / $CLK_TCK;
}

# context switches (voluntary + involuntary) of the processes
sub ctxsw {
    my $t = 0;
    for my $p (@_) {
        open(my $fh, '<', "/proc/$p/status") or next;
        while (my $l = <$fh>) {
            $t += $1 if $l =~ /^(?:non)?voluntary_ctxt_switches:\s+(\d+)/;
        }
    }
    return $t;
}

# time on CPU of the processes from /proc/PID/schedstat, in seconds
# (nanosecond resolution, where utime+stime count 10 ms ticks)
sub sched_s {
    my $t = 0;
    for my $p (@_) {
        open(my $fh, '<', "/proc/$p/schedstat") or next;
        my $s = <$fh> // next;
        $t += (split ' ', $s)[0];
    }
    return $t / 1e9;
}

# VmRSS of the processes, in KiB
sub rss_kb {
    my $t = 0;
    for my $p (@_) {
        open(my $fh, '<', "/proc/$p/status") or next;
        while (my $l = <$fh>) {
            $t += $1 if $l =~ /^VmRSS:\s+(\d+)/;
        }
    }
    return $t;
}

sub pin {
    my ($cpu, @pids) = @_;
    return unless defined $cpu;
    system('taskset', '-a', '-p', '-c', $cpu, $_) for @pids;
}

###############################################################################
# the nginx binary, certificates, ports

sub default_nginx {
    return $ENV{TEST_NGINX_BINARY} if $ENV{TEST_NGINX_BINARY};
    my $v = '1.26.3';
    if (open my $fh, '<', "$ROOT/auto/releases") {
        while (<$fh>) {
            next if /^\s*(#|$)/;
            ($v) = split;
            last;
        }
    }
    return "$ROOT/build/nginx-$v/objs/nginx";
}

my $SRC_NGINX = $o{nginx} // default_nginx();
# auto/build may be rebuilding it just now
for (1 .. 120) {
    last if -x $SRC_NGINX;
    say_("waiting for $SRC_NGINX to appear") if $_ == 1;
    sleep 1;
}
die "bench: no nginx binary at $SRC_NGINX (auto/build, or --nginx PATH)\n"
    unless -x $SRC_NGINX;
my $NGINX = "$TMP/nginx";
copy($SRC_NGINX, $NGINX) or die "copy $SRC_NGINX: $!\n";
chmod 0755, $NGINX;
my $NGINX_V = `$NGINX -V 2>&1`;
for my $need ('--with-mail', '--with-mail_ssl_module', '--with-stream',
    '--with-stream_ssl_module')
{
    die "bench: $SRC_NGINX lacks $need\n" unless $NGINX_V =~ /\Q$need\E\b/;
}
my $NGINX_DEBUG = $NGINX_V =~ /--with-debug/ ? 1 : 0;

my $XBENCH = "$o{bin}/xbench";
my $BSTUB = "$o{bin}/bstub";
-x $XBENCH && -x $BSTUB or die "bench: build the tools first (t/bench/run does)\n";

make_cert("$TMP/nginx.crt", "$TMP/nginx.key", cn => 'example.com',
    alt => ['example.com', '*.example.com']);

my %P = map { $_ => free_port() } qw(auth xmpp xmpp1k xmpps xmpps16 imap streamssl
    streamplain stubimap stubxmpp);

###############################################################################
# servers

my %NG;     # pid, dir

sub nginx_conf {
    my ($prosody_port, %x) = @_;
    my $d = $TMP;
    my $master = $x{single} ? 'off' : 'on';
    return <<"EOF";
daemon off;
master_process $master;
worker_processes 1;
worker_rlimit_nofile $FD_SOFT;
pid $d/nginx.pid;
error_log $d/error.log warn;

events {
    worker_connections @{[ $FD_SOFT - 50 ]};
}

http {
    access_log off;

    map "\$http_auth_protocol:\$http_auth_user" \$bench_port {
        "~^imap:"       $P{stubimap};
        "~^xmpp:sink\@"  $P{stubxmpp};
        default         $prosody_port;
    }

    server {
        listen 127.0.0.1:$P{auth};

        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$bench_port;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:$P{auth}/auth;
    server_name example.com;

    ssl_certificate $d/nginx.crt;
    ssl_certificate_key $d/nginx.key;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;

    server {
        listen 127.0.0.1:$P{xmpp};
        protocol xmpp;
        starttls only;
    }

    server {
        listen 127.0.0.1:$P{xmpps} ssl;
        protocol xmpp;
    }

    server {
        listen 127.0.0.1:$P{imap};
        protocol imap;
        starttls only;
    }

    # the same as xmpp with the smallest buffers (memory per idle session)
    server {
        listen 127.0.0.1:$P{xmpp1k};
        protocol xmpp;
        starttls only;
        proxy_buffer 1k;
        xmpp_client_buffer 1k;
    }

    # the same as xmpps with 16k buffers (the stream module's default):
    # the splice reads the client into xmpp_client_buffer and the
    # backend into proxy_buffer, both one page by default
    server {
        listen 127.0.0.1:$P{xmpps16} ssl;
        protocol xmpp;
        proxy_buffer 16k;
        xmpp_client_buffer 16k;
    }
}

stream {
    server {
        listen 127.0.0.1:$P{streamssl} ssl;
        ssl_certificate $d/nginx.crt;
        ssl_certificate_key $d/nginx.key;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        proxy_pass 127.0.0.1:$P{stubxmpp};
    }

    server {
        listen 127.0.0.1:$P{streamplain};
        proxy_pass 127.0.0.1:$P{stubxmpp};
    }
}
EOF
}

my $PROSODY_A_PORT;

sub nginx_start {
    my (%x) = @_;
    nginx_stop();
    open(my $fh, '>', "$TMP/nginx.conf") or die;
    print $fh nginx_conf($PROSODY_A_PORT // free_port(), %x);
    close $fh;
    my @cmd = ($NGINX, '-p', "$TMP/", '-c', "$TMP/nginx.conf", '-e',
        "$TMP/error.log");
    @cmd = ('valgrind', '--tool=callgrind', '--callgrind-out-file='
        . "$TMP/callgrind.out.%p", @cmd) if $x{valgrind};
    $NG{pid} = spawn('nginx', $o{scpu}, "$TMP/nginx.stderr", @cmd);
    for my $p (@P{qw(auth xmpp xmpps imap streamssl)}) {
        wait_for_port($p, $x{valgrind} ? 60 : 10, '127.0.0.1',
            sub { alive($NG{pid}) })
            or die "bench: nginx did not start:\n"
            . `tail -20 $TMP/error.log $TMP/nginx.stderr 2>&1`;
    }
    sleep 0.1;
}

sub nginx_stop {
    return unless $NG{pid};
    stop_pid($NG{pid}, 'QUIT', 20);
    delete $NG{pid};
}

# master and workers
sub nginx_pids {
    return () unless $NG{pid};
    return ($NG{pid}, children_of($NG{pid}));
}

my ($STUB);

sub stub_start {
    stop_pid($STUB, 'TERM') if $STUB;
    $STUB = spawn('bstub', $o{bcpu} // $o{scpu}, "$TMP/bstub.log", $BSTUB,
        '--imap', $P{stubimap}, '--xmpp', $P{stubxmpp});
    wait_for_port($P{stubimap}, 10) or die "bench: bstub did not start\n";
}

my %PROS;   # A (plain backend), B (TLS)

sub prosody_start {
    my ($which) = @_;
    prosody_stop($which);
    my $tls = $which eq 'B' ? 1 : 0;
    my $dir = "$TMP/prosody-$which";
    system('rm', '-rf', $dir);
    my $p = XT::Prosody->new(
        dir => $dir,
        domains => ['example.com'],
        users => [['user0', 'example.com', 'secret']],
        tls => $tls,
        no_start => 1,
        timeout => 30,
        extra => join("\n",
            # the harness logs at debug level: far too slow for a benchmark
            qq{log = { error = "$dir/prosody.log" }},
            qq{c2s_timeout = 600},
            qq{c2s_close_timeout = 5},
            # a listen backlog of 128 overflows with 200 logins in flight
            qq{network_settings = { tcp_backlog = 4096 }},
            ''),
    );
    # more accounts: copies of the first one (same password and hash)
    my $acc = "$dir/data/example%2ecom/accounts";
    for my $i (1 .. $o{users} - 1) {
        copy("$acc/user0.dat", "$acc/user$i.dat") or die "copy: $!\n";
    }
    $p->start;
    pin($o{bcpu} // $o{scpu}, $p->pid);
    $PROS{$which} = $p;
    $PROSODY_A_PORT = $p->port if $which eq 'A';
    return $p;
}

sub prosody_stop {
    my ($which) = @_;
    my $p = delete $PROS{$which} or return;
    $p->stop;
}

###############################################################################
# the client

sub parse_client {
    my ($out) = @_;
    my %r = (phase => {}, errkinds => {}, out => $out);
    for my $l (split /\n/, $out) {
        if ($l =~ /^RESULT (.*)/) {
            for my $kv (split ' ', $1) {
                my ($k, $v) = split /=/, $kv, 2;
                $r{$k} = $v;
            }
        } elsif ($l =~ /^PHASE (\S+) (.*)/) {
            my $ph = $1;
            for my $kv (split ' ', $2) {
                my ($k, $v) = split /=/, $kv, 2;
                $r{phase}{$ph}{$k} = $v;
            }
        } elsif ($l =~ /^ERROR (\S+) (\d+)/) {
            $r{errkinds}{$1} = $2;
        } elsif ($l =~ /^READY (.*)/) {
            $r{ready} = $1;
        }
    }
    return \%r;
}

sub client_args {
    my (%a) = @_;
    my @args = ('-m', $a{mode}, '-p', $a{port}, '-c', $a{c} // 1,
        '-U', $o{users}, '-u', $a{user} // 'user%ld', '-w', 'secret',
        '-D', 'example.com', '-q', '-t', $a{timeout} // 30);
    push @args, '-n', $a{n} if $a{n};
    push @args, '-d', $a{d} if $a{d};
    push @args, '--idle', $a{idle} if $a{idle};
    push @args, '--xput', $a{xput} if $a{xput};
    push @args, '-l', $a{label} if $a{label};
    push @args, '--quickack' if $a{quickack};
    push @args, '-r', sprintf('%.1f', $a{rate}) if $a{rate};
    return @args;
}

sub client_cmd {
    my @cmd = ($XBENCH, @_);
    unshift @cmd, 'taskset', '-c', $o{ccpu} if defined $o{ccpu};
    return @cmd;
}

# runs the client; returns the parsed result
sub client {
    my (%a) = @_;
    my @cmd = client_cmd(client_args(%a));
    say_("  + @cmd") if $o{verbose};
    my $pid = open(my $fh, '-|') // die "fork: $!\n";
    if ($pid == 0) {
        open STDERR, '>>', "$TMP/xbench.stderr";
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my $r = parse_client($out);
    die "bench: xbench failed (exit $?):\n$out\n"
        . `tail -5 $TMP/xbench.stderr` unless defined $r->{ok};
    return $r;
}

sub errs_str {
    my ($r) = @_;
    my $e = $r->{errkinds};
    return join(', ', map { "$_=$e->{$_}" } sort keys %$e) || 'none';
}

# one load point: the client result plus server CPU per session
sub load_point {
    my ($sc, $c, %a) = @_;
    my %groups = %{ $a{groups} };    # name => code returning pids
    my %before = map { $_ => cpu_s($groups{$_}->()) } keys %groups;
    my %sw0 = map { $_ => ctxsw($groups{$_}->()) } keys %groups;
    my $r = client(%a, c => $c, ($o{count} ? (n => $o{count} * ($c > 1 ? 4 : 1))
                                            : (d => $o{duration})),
        label => "$sc-c$c");
    my %after = map { $_ => cpu_s($groups{$_}->()) } keys %groups;
    my %sw1 = map { $_ => ctxsw($groups{$_}->()) } keys %groups;
    my $ok = $r->{ok} || 1;
    for my $g (keys %groups) {
        $r->{cpu}{$g} = ($after{$g} - $before{$g}) / $ok * 1000;    # ms
        $r->{ctxsw}{$g} = ($sw1{$g} - $sw0{$g}) / $ok;
    }
    $R{$sc}{pt}{$c} = $r unless $a{nocsv};

    goto SHOW if $a{nocsv};
    csv($sc, $c, 'sessions', $r->{ok}, 'sessions');
    csv($sc, $c, 'errors', $r->{errors} // 0, 'sessions');
    csv($sc, $c, 'sessions_per_s', $r->{rate}, '1/s');
    for my $q (qw(p50 p90 p99 max)) {
        csv($sc, $c, "login_$q", $r->{"login_$q"}, 'ms');
    }
    for my $ph (sort keys %{ $r->{phase} }) {
        for my $q (qw(p50 p99)) {
            csv($sc, $c, "phase_${ph}_$q", $r->{phase}{$ph}{$q}, 'ms');
        }
    }
    for my $g (sort keys %groups) {
        csv($sc, $c, "cpu_$g", sprintf('%.4f', $r->{cpu}{$g}), 'ms/session');
        csv($sc, $c, "ctxsw_$g", sprintf('%.2f', $r->{ctxsw}{$g}),
            'switches/session');
    }
  SHOW:
    say_(sprintf("  %s c=%-3d %6d sessions %3s err  %8.1f/s  login p50 %7.2f"
            . " p99 %7.2f ms  cpu/session: %s",
        $sc, $c, $r->{ok}, $r->{errors} // 0, $r->{rate}, $r->{login_p50},
        $r->{login_p99},
        join(' ', map { sprintf('%s %.3f ms', $_, $r->{cpu}{$_}) }
            sort keys %groups)));
    say_("    errors: " . errs_str($r)) if $r->{errors};
    return $r;
}

# holds N idle sessions; returns (result, rss growth per session by group)
sub idle_round {
    my ($sc, $n, %a) = @_;
    my %groups = %{ $a{groups} };
    my $ramp = $a{ramp} // 50;

    # warm up: a few complete sessions, so that code and TLS tables are
    # resident before the baseline
    client(%a, c => 1, n => 5, label => "$sc-warm");
    sleep 0.5;
    my %before = map { $_ => rss_kb($groups{$_}->()) } keys %groups;
    my %cpu0 = map { $_ => cpu_s($groups{$_}->()) } keys %groups;

    my @cmd = client_cmd(client_args(%a, c => $ramp, idle => $n,
        timeout => 120, label => "$sc-idle$n"));
    my $outf = "$TMP/idle-$sc-$n.out";
    unlink $outf;
    my $pid = spawn("xbench idle $sc", undef, $outf, @cmd);
    my $t0 = time();
    my $limit = $a{limit} // 600;
    my $ready;
    while (time() - $t0 < $limit) {
        last unless alive($pid);
        if (open my $fh, '<', $outf) {
            local $/;
            my $c = <$fh> // '';
            if ($c =~ /^READY (.*)$/m) { $ready = $1; last }
        }
        sleep 0.2;
    }
    my $up_s = time() - $t0;
    sleep 1;    # let the last backend round trips settle
    my %after = map { $_ => rss_kb($groups{$_}->()) } keys %groups;
    my %cpu1 = map { $_ => cpu_s($groups{$_}->()) } keys %groups;
    my %alive = map { $_ => scalar($groups{$_}->()) } keys %groups;

    kill 'USR1', $pid;
    my $end = time() + 120;
    while (time() < $end && alive($pid)) { sleep 0.1 }
    stop_pid($pid, 'TERM', 5);
    my $out = do { local $/; open my $fh, '<', $outf; <$fh> // '' };
    my $r = parse_client($out);
    $r->{ready} //= $ready;
    my ($est) = ($r->{ready} // '') =~ /established=(\d+)/;
    $r->{established} = $est // 0;
    $r->{up_s} = $up_s;
    for my $g (keys %groups) {
        $r->{rss_before}{$g} = $before{$g};
        $r->{rss_after}{$g} = $after{$g};
        $r->{mem}{$g} = $est ? ($after{$g} - $before{$g}) / $est : undef;
        $r->{cpu}{$g} = $est ? ($cpu1{$g} - $cpu0{$g}) / $est * 1000 : undef;
    }
    return $r;
}

###############################################################################
# the scenarios

my %SC = (
    A => 'client -> nginx-xmpp (STARTTLS) -> Prosody (plain TCP)',
    B => 'client -> Prosody (STARTTLS, its own TLS)',
    C => 'client -> nginx IMAP (STARTTLS, LOGIN) -> bstub',
    D => 'bare TLS handshake, nginx mail ssl port',
    X => 'client -> nginx-xmpp (STARTTLS) -> bstub XMPP (A with C\'s kind of backend)',
);

my $t_start = time();
my $host_cpu = do {
    open my $fh, '<', '/proc/cpuinfo';
    my ($m) = grep { /^model name/ } <$fh>;
    $m //= 'model name: ?';
    $m =~ s/^model name\s*:\s*//;
    chomp $m;
    $m;
};

say_("nginx-xmpp benchmark " . scalar(localtime));
say_("machine: nproc $NCPU, $host_cpu; servers on CPU "
    . ($o{scpu} // 'any') . ", client on CPU " . ($o{ccpu} // 'any'));
say_("nginx: $SRC_NGINX" . ($NGINX_DEBUG ? ' (--with-debug build)' : ''));
say_("open files limit: $FD_SOFT"
    . ($o{big} < $BIG_WANT ? " (the hard limit: not enough for $BIG_WANT idle"
        . " sessions through one worker, which needs 2 per session; $o{big}"
        . " instead)" : ''));
say_("loadavg at start: " . `cat /proc/loadavg`);

csv('-', '', 'nproc', $NCPU, '');
csv('-', '', 'cpu_model', qq{"$host_cpu"}, '');
csv('-', '', 'loadavg_start', (split ' ', `cat /proc/loadavg`)[0], '');

stub_start();
prosody_start('A');
prosody_start('B');
nginx_start();

my $ng = sub { nginx_pids() };
my $prA = sub { $PROS{A} ? ($PROS{A}->pid) : () };
my $prB = sub { $PROS{B} ? ($PROS{B}->pid) : () };
my $stub = sub { $STUB ? ($STUB) : () };

my %RUN = (
    A => { mode => 'xmpp', port => $P{xmpp},
           groups => { nginx => $ng, prosody => $prA } },
    B => { mode => 'xmpp', port => $PROS{B}->port,
           groups => { prosody => $prB } },
    C => { mode => 'imap', port => $P{imap},
           groups => { nginx => $ng, stub => $stub } },
    D => { mode => 'tls', port => $P{xmpps},
           groups => { nginx => $ng } },
    X => { mode => 'xmpp', port => $P{xmpp}, user => 'sink',
           groups => { nginx => $ng, stub => $stub } },
);

# the TLS parameters actually negotiated, once per path
for my $sc (grep { $ONLY{$_} } qw(A B C D X)) {
    my $r = client(%{ $RUN{$sc} }, n => 1, label => "$sc-check");
    die "bench: scenario $sc does not work: " . errs_str($r) . "\n"
        . `tail -5 $TMP/xbench.stderr` if $r->{ok} != 1;
    say_("$sc: TLS $r->{tls}");
    csv($sc, '', 'tls', $r->{tls}, '');
    $R{$sc}{tls} = $r->{tls};
}

# load points; the scenarios take turns at each concurrency, so that the
# other work on a shared machine hits them alike
my @LOAD = grep { $ONLY{$_} } qw(A B C D X);
say_("\nload points:");
say_("  $_: $SC{$_}") for @LOAD;
for my $sc (@LOAD) {
    client(%{ $RUN{$sc} }, c => 10, ($o{count} ? (n => $o{count})
        : (d => 1)), label => "$sc-warmup");
}
for my $c (@CONC) {
    for my $sc (@LOAD) {
        load_point($sc, $c, %{ $RUN{$sc} });
    }
}

# nginx's CPU per session depends on its load: at a high session rate
# one wakeup serves several events.  A is limited by Prosody to a low
# rate, so compare it with C, D and X at the same rate as well.
if ($ONLY{A} && $R{A}{pt} && $R{A}{pt}{$C50}) {
    my $rate = $R{A}{pt}{$C50}{rate};
    my @rm = grep { $ONLY{$_} } qw(A C D X);
    say_(sprintf("\nR: nginx CPU per session with every scenario at A's session"
        . " rate (%.0f/s, c=%d); %d rounds, the scenarios taking turns; the"
        . " median is kept", $rate, $C50, $o{repeat}));
    my %runs;
    for my $rep (1 .. $o{repeat}) {
        for my $sc (@rm) {
            push @{ $runs{$sc} }, load_point("${sc}_rm", $C50, %{ $RUN{$sc} },
                rate => $rate, nocsv => 1);
        }
    }
    for my $sc (@rm) {
        my @s = sort { $a->{cpu}{nginx} <=> $b->{cpu}{nginx} } @{ $runs{$sc} };
        my $r = $s[$#s / 2];
        $R{"${sc}_rm"}{pt}{$C50} = $r;
        $R{"${sc}_rm"}{all} = [ map { $_->{cpu}{nginx} } @{ $runs{$sc} } ];
        csv("${sc}_rm", $C50, 'sessions_per_s', $r->{rate}, '1/s');
        csv("${sc}_rm", $C50, 'cpu_nginx_median', sprintf('%.4f', $r->{cpu}{nginx}),
            'ms/session');
        csv("${sc}_rm", $C50, 'cpu_nginx_runs', join(' ', map { sprintf '%.3f', $_ }
            @{ $R{"${sc}_rm"}{all} }), 'ms/session');
        csv("${sc}_rm", $C50, 'ctxsw_nginx', sprintf('%.2f', $r->{ctxsw}{nginx}),
            'switches/session');
    }
    say_("  medians: " . join(', ', map { sprintf('%s %.3f ms', $_,
        $R{"${_}_rm"}{pt}{$C50}{cpu}{nginx}) } @rm));
}

# latency at c=1 with the client ACKing at once (TCP_QUICKACK): shows the
# delayed-ACK stalls of servers that do not set TCP_NODELAY
if ($ONLY{A} || $ONLY{B}) {
    say_("\nL: login latency at c=$C1 with TCP_QUICKACK on the client"
        . " (servers without TCP_NODELAY wait for the client's delayed ACK"
        . " otherwise)");
    for my $sc (grep { $ONLY{$_} } qw(A B)) {
        my $r = client(%{ $RUN{$sc} }, c => $C1,
            ($o{count} ? (n => $o{count}) : (d => $o{duration})),
            quickack => 1, label => "$sc-quickack");
        $R{$sc}{qa} = $r;
        say_(sprintf("  %s c=%d quickack: %d sessions, %s errors, login p50"
                . " %.2f p99 %.2f ms", $sc, $C1, $r->{ok}, $r->{errors} // 0,
            $r->{login_p50}, $r->{login_p99}));
        csv("${sc}_quickack", $C1, "login_$_", $r->{"login_$_"}, 'ms')
            for qw(p50 p90 p99 max);
        for my $ph (sort keys %{ $r->{phase} }) {
            csv("${sc}_quickack", $C1, "phase_${ph}_p50",
                $r->{phase}{$ph}{p50}, 'ms');
        }
    }
}

# memory per idle authenticated session, fresh servers
if ($ONLY{M}) {
    say_("\nM: memory per idle authenticated session ($o{idle} held, fresh servers)");
    $RUN{A1k} = { %{ $RUN{A} }, port => $P{xmpp1k} };
    $SC{A1k} = 'A with proxy_buffer 1k and xmpp_client_buffer 1k';
    for my $sc (qw(A A1k B C)) {
        if ($sc =~ /^A/) { prosody_start('A'); nginx_start(); }
        if ($sc eq 'B') { prosody_start('B'); $RUN{B}{port} = $PROS{B}->port; }
        if ($sc eq 'C') { stub_start(); nginx_start(); }
        my $r = idle_round($sc, $o{idle}, %{ $RUN{$sc} },
            ramp => 50);
        $R{$sc}{mem} = $r;
        my @g = sort keys %{ $r->{mem} };
        say_(sprintf("  %s: %d/%d established, %s errors, up in %.1fs; KiB per"
                . " session: %s", $sc, $r->{established}, $o{idle},
            $r->{errors} // '?', $r->{up_s},
            join(', ', map {
                sprintf('%s %.1f (RSS %d -> %d KiB)', $_, $r->{mem}{$_} // -1,
                    $r->{rss_before}{$_}, $r->{rss_after}{$_})
            } @g)));
        say_("    errors: " . errs_str($r)) if $r->{errors};
        for my $g (@g) {
            csv($sc, '', "mem_idle_$g", sprintf('%.2f', $r->{mem}{$g} // 0),
                'KiB/session');
        }
        csv($sc, '', 'mem_idle_sessions', $r->{established}, 'sessions');
        csv($sc, '', 'mem_idle_errors', $r->{errors} // '', 'sessions');
    }
    nginx_start();
}

# splice throughput
if ($ONLY{E}) {
    my $bytes = $o{xput} * 1_000_000;
    say_("\nE: splice throughput, $o{xput} MB of <message/> stanzas in one"
        . " session, into the bstub sink (Prosody is not used: its c2s"
        . " path parses every stanza in Lua; median of $o{repeat}; the sink"
        . " runs on the client's CPU)");
    pin($o{ccpu}, $STUB);
    my @paths = (
        ['E_xmpp', 'nginx-xmpp (direct TLS, mail splice)', 'xmpps', $P{xmpps},
            'sink'],
        ['E_xmpp16', 'nginx-xmpp, 16k buffers (stream\'s default size)',
            'xmpps', $P{xmpps16}, 'sink'],
        ['E_xmpp1k', 'nginx-xmpp, 1k buffers (STARTTLS)', 'xmpp',
            $P{xmpp1k}, 'sink'],
        ['E_stream_tls', 'nginx stream (TLS terminated, TCP proxy)', 'xmpps',
            $P{streamssl}, 'sink'],
        ['E_stream_plain', 'nginx stream (plain TCP proxy)', 'xmppplain',
            $P{streamplain}, 'sink'],
        ['E_direct', 'direct to the sink (plain TCP, no nginx)', 'xmppplain',
            $P{stubxmpp}, 'sink'],
    );
    # the paths take turns, so that a change of the machine's load
    # during the measurement hits them all alike
    my (%mbps, %cpu);
    for my $rep (1 .. $o{repeat}) {
        for my $pth (@paths) {
            my ($key, $desc, $mode, $port, $user) = @$pth;
            my $c0 = sched_s(nginx_pids());
            my $r = client(mode => $mode, port => $port, n => 1, c => 1,
                user => $user, xput => $bytes, timeout => 120,
                label => $key);
            my $c1 = sched_s(nginx_pids());
            die "bench: $key failed: " . errs_str($r) . "\n" unless $r->{ok};
            push @{ $mbps{$key} }, $r->{xput_mbps};
            push @{ $cpu{$key} }, ($c1 - $c0) / ($r->{xput_bytes} / 1e9);
        }
    }
    for my $pth (@paths) {
        my ($key, $desc) = @$pth;
        my @s = sort { $a <=> $b } @{ $mbps{$key} };
        my $med = $s[$#s / 2];
        my @cs = sort { $a <=> $b } @{ $cpu{$key} };
        my $cmed = $cs[$#cs / 2];
        $R{$key} = { mbps => $med, cpu_s_per_gb => $cmed,
            all => $mbps{$key}, desc => $desc };
        say_(sprintf("  %-48s %7.1f MB/s (runs: %s)  nginx CPU %.2f s/GB",
            $desc, $med, join(' ', map { sprintf '%.0f', $_ } @{ $mbps{$key} }),
            $key eq 'E_direct' ? 0 : $cmed));
        csv($key, '', 'xput', sprintf('%.1f', $med), 'MB/s');
        csv($key, '', 'xput_nginx_cpu_schedstat', sprintf('%.3f', $cmed), 's/GB')
            unless $key eq 'E_direct';
    }
    csv('E', '', 'backend', 'bstub sink', '');
    pin($o{bcpu} // $o{scpu}, $STUB);
}

# 20 000 idle sessions through one worker
if ($ONLY{I} && $o{big}) {
    say_("\nI: $o{big} idle authenticated sessions through one nginx worker"
        . " (A path: nginx-xmpp -> Prosody), fresh servers"
        . ($o{big} < $BIG_WANT ? "; $BIG_WANT do not fit in the open files"
            . " limit of $FD_SOFT (hard; CAP_SYS_RESOURCE is needed to raise"
            . " it)" : ''));
    csv('I', '', 'idle_sessions_wanted', $BIG_WANT, 'sessions');
    csv('I', '', 'fd_limit', $FD_SOFT, 'files');
    prosody_start('A');
    nginx_start();
    my $r = idle_round('I', $o{big}, %{ $RUN{A} }, ramp => $BIG_RAMP,
        limit => 900);
    $R{I} = $r;
    my @workers = children_of($NG{pid});
    say_(sprintf("  %d/%d established, %s errors, up in %.1fs (%.0f logins/s);"
            . " nginx %.1f KiB/session, Prosody %.1f KiB/session;"
            . " nginx workers: %d",
        $r->{established}, $o{big}, $r->{errors} // '?', $r->{up_s},
        $r->{established} / ($r->{up_s} || 1), $r->{mem}{nginx} // -1,
        $r->{mem}{prosody} // -1, scalar @workers));
    say_("    errors: " . errs_str($r)) if $r->{errors};
    csv('I', '', 'idle_sessions', $r->{established}, 'sessions');
    csv('I', '', 'idle_errors', $r->{errors} // '', 'sessions');
    csv('I', '', 'mem_idle_nginx', sprintf('%.2f', $r->{mem}{nginx} // 0),
        'KiB/session');
    csv('I', '', 'mem_idle_prosody', sprintf('%.2f', $r->{mem}{prosody} // 0),
        'KiB/session');
    csv('I', '', 'ramp_s', sprintf('%.1f', $r->{up_s}), 's');
}

# instruction counts under callgrind
if ($ONLY{G} && $o{callgrind}) {
    callgrind_round();
}

# where nginx's time goes
if ($o{profile}) {
    profile_round();
}

nginx_stop();
report();
say_(sprintf("\ntotal time %.0f s; loadavg at end: %s", time() - $t_start,
    `cat /proc/loadavg`));
exit(0);

###############################################################################

sub callgrind_round {
    my $n = $o{callgrind};
    say_("\nG: instructions per session in nginx under callgrind ($n sessions"
        . " each; master_process off, one process)");
    if (!-x '/usr/bin/valgrind') {
        say_("  valgrind is not installed: skipped");
        return;
    }
    prosody_start('A');
    nginx_start(single => 1, valgrind => 1);
    my @order = (['A', 'xmpp', $P{xmpp}], ['X', 'xmpp', $P{xmpp}, 'sink'],
        ['C', 'imap', $P{imap}], ['D', 'tls', $P{xmpps}]);
    my $pid = $NG{pid};
    # warm-up, then zero
    for my $s (@order) {
        client(mode => $s->[1], port => $s->[2], user => $s->[3], c => 1,
            n => 3, timeout => 60);
    }
    for my $s (@order) {
        my ($sc, $mode, $port, $user) = @$s;
        system("callgrind_control -z $pid >/dev/null 2>&1");
        my $r = client(mode => $mode, port => $port, user => $user, c => 4,
            n => $n, timeout => 120, label => "G$sc");
        system("callgrind_control -d G$sc $pid >/dev/null 2>&1");
        sleep 0.5;
        my ($f) = sort { -M $a <=> -M $b } glob("$TMP/callgrind.out.$pid.*");
        my $ir = 0;
        if ($f && open my $fh, '<', $f) {
            while (my $l = <$fh>) {
                if ($l =~ /^(?:summary|totals):\s+(\d+)/) { $ir = $1 }
            }
        }
        my $per = $r->{ok} ? $ir / $r->{ok} : 0;
        $R{G}{$sc} = { ir => $per, file => $f, ok => $r->{ok} };
        say_(sprintf("  %s: %d sessions, %.0f k instructions per session (%s)",
            $sc, $r->{ok}, $per / 1000, $f // 'no dump'));
        csv("G_$sc", '', 'nginx_instructions', sprintf('%.0f', $per),
            'instr/session');
        if ($f) {
            # (after callgrind_control -z, callgrind_annotate lists main
            # and its callers with inclusive costs first; the rest are the
            # functions' own costs)
            open my $fh, '>', "$OUT/callgrind-$sc.txt";
            print $fh "# $SC{$sc}: nginx, $r->{ok} sessions, callgrind Ir\n";
            print $fh `callgrind_annotate --threshold=100 --auto=no $f 2>/dev/null | head -90`;
        }
    }
    nginx_stop();
}

sub profile_round {
    say_("\nP: perf profiles of the nginx worker at c=$C50 (cpu-clock"
        . " sampling, $o{duration} s each)");
    if (system('perf --version >/dev/null 2>&1') != 0) {
        say_("  perf is not installed: skipped");
        return;
    }
    prosody_start('A');
    nginx_start();
    my ($worker) = children_of($NG{pid});
    for my $sc (grep { $ONLY{$_} } qw(A X C D)) {
        my $data = "$TMP/perf-$sc.data";
        my $perf = spawn("perf $sc", undef, "$TMP/perf-$sc.log", 'perf',
            'record', '-e', 'cpu-clock', '-F', '2000', '-g', '-o', $data,
            '-p', $worker);
        sleep 0.5;
        my $r = client(%{ $RUN{$sc} }, c => $C50, d => $o{duration},
            label => "P$sc");
        stop_pid($perf, 'INT', 30);
        my $n = $r->{ok} || 1;
        # samples by shared object
        my $rep = `perf report -i $data --no-children --sort dso --stdio 2>/dev/null`;
        my ($total) = `perf report -i $data --stdio --no-children 2>/dev/null | head -20`
            =~ /Samples: (\S+)/;
        my %dso;
        for my $l (split /\n/, $rep) {
            $dso{$2} = $1 if $l =~ /^\s+([\d.]+)%\s+(\S+)/;
        }
        $R{P}{$sc} = { dso => \%dso, ok => $r->{ok}, samples => $total };
        open my $fh, '>', "$OUT/perf-$sc.txt";
        print $fh "# $SC{$sc}: $r->{ok} sessions at c=$C50, nginx worker\n";
        print $fh $rep;
        print $fh `perf report -i $data --no-children --sort dso,symbol --stdio -g none 2>/dev/null | grep -v '^\$' | head -70`;
        close $fh;
        say_(sprintf("  %s: %d sessions; %s", $sc, $r->{ok}, join(', ',
            map { sprintf('%s %.1f%%', $_, $dso{$_}) }
            grep { $dso{$_} >= 1 } sort { $dso{$b} <=> $dso{$a} } keys %dso)));
    }
    nginx_stop();
}

sub fmt { defined $_[0] && $_[0] ne '' ? sprintf($_[1] // '%.2f', $_[0]) : '-' }

sub ratio {
    my ($x, $y) = @_;
    return '-' unless defined $x && defined $y && $y > 0;
    return sprintf('%.2fx', $x / $y);
}

sub report {
    my @lines;
    my $p = sub { push @lines, join('', @_) };

    $p->("");
    $p->("## Results (" . scalar(localtime) . ")");
    $p->("");
    $p->("Machine: nproc $NCPU, $host_cpu.  Servers pinned to CPU "
        . ($o{scpu} // 'any') . ", the client to CPU " . ($o{ccpu} // 'any')
        . ".  nginx: one worker" . ($NGINX_DEBUG ? ', --with-debug build' : '')
        . ".  TLS: " . ($R{A}{tls} // $R{C}{tls} // '?') . ".");
    $p->("");

    # load table
    my @sc = grep { $R{$_}{pt} } qw(A B C D X);
    if (@sc) {
        $p->("| scenario | sessions/s " . join(' | ', map { "c=$_" } @CONC)
            . " | login p50 / p99 c=$C1 (ms) | login p50 / p99 c=$C50 (ms)"
            . " | server CPU / session (ms, c=$C50) | memory / idle session (KiB) |");
        $p->("|" . ('---|' x (5 + @CONC)));
        for my $sc (@sc) {
            my $pt = $R{$sc}{pt};
            my $r50 = $pt->{$C50} // {};
            my $r1 = $pt->{$C1} // {};
            my $cpu = join(', ', map { sprintf('%s %.3f', $_, $r50->{cpu}{$_}) }
                sort keys %{ $r50->{cpu} // {} });
            my $mem = $R{$sc}{mem}
                ? join(', ', map { sprintf('%s %.1f', $_, $R{$sc}{mem}{mem}{$_} // -1) }
                    sort keys %{ $R{$sc}{mem}{mem} })
                : '-';
            $p->("| $sc: $SC{$sc} | "
                . join(' | ', map { fmt($pt->{$_}{rate}, '%.0f') } @CONC)
                . " | " . fmt($r1->{login_p50}) . " / " . fmt($r1->{login_p99})
                . " | " . fmt($r50->{login_p50}) . " / " . fmt($r50->{login_p99})
                . " | $cpu | $mem |");
        }
        $p->("");

        my @rm = grep { $R{"${_}_rm"} } qw(C D X);
        if (@rm && $R{A_rm}) {
            my $a50 = $R{A_rm}{pt}{$C50};
            $p->(sprintf("Every scenario at A's session rate (%.0f/s, c=%d), nginx"
                . " CPU per session, median of %d rounds (runs in brackets): A"
                . " %.3f ms [%s], ", $a50->{rate}, $C50, $o{repeat},
                $a50->{cpu}{nginx}, join(' ', map { sprintf '%.3f', $_ }
                    @{ $R{A_rm}{all} }))
                . join(', ', map {
                    my $r = $R{"${_}_rm"}{pt}{$C50};
                    sprintf('%s %.3f ms [%s] (%.2fx of A)', $_, $r->{cpu}{nginx},
                        join(' ', map { sprintf '%.3f', $_ } @{ $R{"${_}_rm"}{all} }),
                        $r->{cpu}{nginx} / ($a50->{cpu}{nginx} || 1e-9))
                } @rm) . ".");
            $p->("");
        }

        # ratios against A
        if ($R{A}{pt}) {
            my $a50 = $R{A}{pt}{$C50};
            my $a1 = $R{A}{pt}{$C1};
            $p->("Ratios against A (x = scenario / A):");
            $p->("");
            $p->("| scenario | sessions/s c=$C50 | login p50 c=$C1 | login p50 c=$C50"
                . " | nginx CPU / session | backend CPU / session"
                . " | total server CPU / session | nginx memory / session |");
            $p->("|---|---|---|---|---|---|---|---|");
            for my $sc (@sc) {
                my $r50 = $R{$sc}{pt}{$C50} // {};
                my $r1 = $R{$sc}{pt}{$C1} // {};
                my $tot = sub { my $r = shift; my $t = 0; $t += $_ for values %{ $r->{cpu} // {} }; $t };
                my $be = sub { my $r = shift; my $t; for (grep { $_ ne 'nginx' } keys %{ $r->{cpu} // {} }) { $t += $r->{cpu}{$_} } $t };
                my $mem = sub { $R{$_[0]}{mem} ? $R{$_[0]}{mem}{mem}{nginx} : undef };
                $p->("| $sc | " . ratio($r50->{rate}, $a50->{rate})
                    . " | " . ratio($r1->{login_p50}, $a1->{login_p50})
                    . " | " . ratio($r50->{login_p50}, $a50->{login_p50})
                    . " | " . ratio($r50->{cpu}{nginx}, $a50->{cpu}{nginx})
                    . " | " . ratio($be->($r50), $be->($a50))
                    . " | " . ratio($tot->($r50), $tot->($a50))
                    . " | " . ratio($mem->($sc), $mem->('A')) . " |");
            }
            $p->("");
        }
    }

    # where the login time goes at c=1
    my @lat = grep { $R{$_}{pt} && $R{$_}{pt}{$C1} } qw(A B C D X);
    if (@lat) {
        my @rows;
        for my $sc (@lat) {
            push @rows, [$sc, $R{$sc}{pt}{$C1}];
            push @rows, ["$sc, client quickack", $R{$sc}{qa}] if $R{$sc}{qa};
        }
        my @ph = grep { my $ph = $_; grep { $_->[1]{phase}{$ph} } @rows }
            qw(connect greeting stream starttls tls stream2 auth restart bind
               login);
        $p->("Login latency at c=$C1 by phase, p50 in ms (auth = SASL PLAIN"
            . " or LOGIN until <success/>/OK: through nginx it includes the"
            . " auth_http request, the backend connect and the backend login):");
        $p->("");
        $p->("| scenario | " . join(' | ', @ph) . " | login p99 |");
        $p->("|---|" . ('---|' x (@ph + 1)));
        for my $row (@rows) {
            my ($name, $r) = @$row;
            $p->("| $name | " . join(' | ', map {
                fmt($r->{phase}{$_} ? $r->{phase}{$_}{p50} : undef) } @ph)
                . " | " . fmt($r->{login_p99}) . " |");
        }
        $p->("");
    }

    if ($R{A1k} && $R{A1k}{mem}) {
        $p->(sprintf("Memory per idle session with proxy_buffer 1k and"
            . " xmpp_client_buffer 1k (A1k): nginx %.1f KiB, against %.1f KiB"
            . " with the default one-page buffers.",
            $R{A1k}{mem}{mem}{nginx} // -1, $R{A}{mem}{mem}{nginx} // -1));
        $p->("");
    }

    if ($R{E_xmpp}) {
        $p->("Splice throughput ($o{xput} MB of ~1 KB <message/> stanzas, one"
            . " session, bstub sink as backend, median of $o{repeat}):");
        $p->("");
        $p->("| path | MB/s | vs nginx-xmpp | nginx CPU s/GB (schedstat) |");
        $p->("|---|---|---|---|");
        for my $k (qw(E_xmpp E_xmpp16 E_xmpp1k E_stream_tls E_stream_plain
            E_direct))
        {
            next unless $R{$k};
            $p->("| $R{$k}{desc} | " . fmt($R{$k}{mbps}, '%.0f') . " | "
                . ratio($R{$k}{mbps}, $R{E_xmpp}{mbps}) . " | "
                . ($k eq 'E_direct' ? '-' : fmt($R{$k}{cpu_s_per_gb}, '%.2f'))
                . " |");
        }
        $p->("");
    }

    if ($R{I}) {
        my $r = $R{I};
        $p->(sprintf("Idle sessions through one nginx worker: %d of %d"
            . " established, %s errors; nginx %.1f KiB/session, Prosody"
            . " %.1f KiB/session; ramp-up %.0f s.", $r->{established}, $o{big},
            $r->{errors} // '?', $r->{mem}{nginx} // -1,
            $r->{mem}{prosody} // -1, $r->{up_s}));
        $p->("");
    }

    if ($R{G}) {
        $p->("nginx instructions per session under callgrind (userland:"
            . " nginx + OpenSSL; stable): "
            . join(', ', map { sprintf('%s %.0f k', $_, $R{G}{$_}{ir} / 1000) }
                sort keys %{ $R{G} })
            . (($R{G}{A} && $R{G}{C} && $R{G}{C}{ir})
                ? sprintf('; A/C %.2fx', $R{G}{A}{ir} / $R{G}{C}{ir}) : '')
            . (($R{G}{A} && $R{G}{D} && $R{G}{D}{ir})
                ? sprintf(', A/D %.2fx', $R{G}{A}{ir} / $R{G}{D}{ir}) : '')
            . ".");
        $p->("");
    }

    if ($R{P}) {
        my @sc = grep { $R{P}{$_} } qw(A X C D);
        my %all;
        for my $sc (@sc) { $all{$_} += $R{P}{$sc}{dso}{$_} for keys %{ $R{P}{$sc}{dso} } }
        my @d = grep { $all{$_} >= 2 } sort { $all{$b} <=> $all{$a} } keys %all;
        $p->("Where the nginx worker's time goes (perf, cpu-clock samples at"
            . " c=$C50; % of the worker's samples; ms per session from the"
            . " utime+stime figure above):");
        $p->("");
        $p->("| scenario | " . join(' | ', @d) . " | other | nginx context switches / session |");
        $p->("|---|" . ('---|' x (@d + 2)));
        for my $sc (@sc) {
            my $cpu = $R{$sc}{pt} && $R{$sc}{pt}{$C50}
                ? $R{$sc}{pt}{$C50}{cpu}{nginx} : undef;
            my $rest = 100;
            my @cells;
            for my $x (@d) {
                my $v = $R{P}{$sc}{dso}{$x} // 0;
                $rest -= $v;
                push @cells, defined $cpu
                    ? sprintf('%.1f%% (%.3f ms)', $v, $v / 100 * $cpu)
                    : sprintf('%.1f%%', $v);
            }
            my $sw = $R{$sc}{pt} && $R{$sc}{pt}{$C50}
                ? $R{$sc}{pt}{$C50}{ctxsw}{nginx} : undef;
            $p->("| $sc | " . join(' | ', @cells) . sprintf(' | %.1f%% | %s |',
                $rest, fmt($sw, '%.1f')));
        }
        $p->("");
    }

    # targets
    my @t;
    my $a50 = $R{A}{pt} ? $R{A}{pt}{$C50} : undef;
    my $at = sub {    # a scenario's c=C50 point at A's rate, or at full speed
        my ($sc, $rm) = @_;
        my $k = $rm ? "${sc}_rm" : $sc;
        return $R{$k} && $R{$k}{pt} ? $R{$k}{pt}{$C50} : undef;
    };
    for my $rm (1, 0) {
        my $how = $rm ? sprintf('at the same session rate (%.0f/s)',
            $a50 ? $a50->{rate} : 0) : 'C and D at full speed (unequal load)';
        my $a50 = $rm ? $at->('A', 1) : $a50;
        if ($a50 && (my $c50 = $at->('C', $rm))) {
            my $q = $a50->{cpu}{nginx} / ($c50->{cpu}{nginx} || 1e-9);
            push @t, ["nginx CPU per XMPP login (A) <= 1.15x per IMAP login (C), $how",
                $q <= 1.15, sprintf('%.3f vs %.3f ms: %.2fx', $a50->{cpu}{nginx},
                    $c50->{cpu}{nginx}, $q)];
        }
        if ($a50 && (my $d50 = $at->('D', $rm))) {
            my $q = $a50->{cpu}{nginx} / ($d50->{cpu}{nginx} || 1e-9);
            push @t, ["nginx CPU per XMPP login (A) <= 2x a bare TLS handshake (D), $how",
                $q <= 2, sprintf('%.3f vs %.3f ms: %.2fx', $a50->{cpu}{nginx},
                    $d50->{cpu}{nginx}, $q)];
        }
    }
    if ((my $x = $at->('X', 1)) && (my $c = $at->('C', 1))) {
        my ($xc, $cc) = ($x->{cpu}{nginx}, $c->{cpu}{nginx});
        push @t, ["X vs C (a stub behind both) at A's session rate", $xc <= 1.15 * $cc,
            sprintf('%.3f vs %.3f ms: %.2fx', $xc, $cc, $xc / ($cc || 1e-9))];
    }
    if ($R{X}{pt} && $R{C}{pt}) {
        my ($x, $c) = ($R{X}{pt}{$C50}{cpu}{nginx}, $R{C}{pt}{$C50}{cpu}{nginx});
        push @t, ['X vs C (a stub behind both) at full speed', $x <= 1.15 * $c,
            sprintf('%.3f vs %.3f ms: %.2fx', $x, $c, $x / ($c || 1e-9))];
    }
    if ($R{G} && $R{G}{A} && $R{G}{C} && $R{G}{D}) {
        my ($a, $c, $d) = map { $R{G}{$_}{ir} } qw(A C D);
        push @t, ['(callgrind) instructions A <= 1.15x C', $a <= 1.15 * $c,
            sprintf('%.0fk vs %.0fk: %.2fx', $a / 1000, $c / 1000, $a / $c)];
        if ($R{G}{X}) {
            my $x = $R{G}{X}{ir};
            push @t, ['(callgrind) instructions X <= 1.15x C', $x <= 1.15 * $c,
                sprintf('%.0fk vs %.0fk: %.2fx', $x / 1000, $c / 1000, $x / $c)];
        }
        push @t, ['(callgrind) instructions A <= 2x D', $a <= 2 * $d,
            sprintf('%.0fk vs %.0fk: %.2fx', $a / 1000, $d / 1000, $a / $d)];
    }
    if ($R{A}{pt} && $R{B}{pt}) {
        my ($a, $b) = ($R{A}{pt}{$C1}{login_p50}, $R{B}{pt}{$C1}{login_p50});
        push @t, ["login latency c=$C1 through nginx <= Prosody direct + 1 ms (p50)",
            $a <= $b + 1, sprintf('%.2f vs %.2f ms (%+.2f ms)', $a, $b, $a - $b)];
        if ($R{A}{qa} && $R{B}{qa}) {
            my ($aq, $bq) = ($R{A}{qa}{login_p50}, $R{B}{qa}{login_p50});
            push @t, ["the same, both with client TCP_QUICKACK (no delayed-ACK stalls)",
                $aq <= $bq + 1,
                sprintf('%.2f vs %.2f ms (%+.2f ms)', $aq, $bq, $aq - $bq)];
        }
    }
    if ($R{A}{mem}) {
        my $n = $R{A}{mem}{mem}{nginx} // 1e9;
        push @t, ['nginx memory per idle spliced session <= 25 KiB', $n <= 25,
            sprintf('%.1f KiB', $n)];
        if ($R{B}{mem}) {
            my $pb = $R{B}{mem}{mem}{prosody} // 0;
            push @t, ["nginx memory per idle session <= half of Prosody's (B)",
                $n <= $pb / 2, sprintf('%.1f vs %.1f KiB: %.2fx', $n, $pb,
                    $pb ? $n / $pb : 0)];
        }
    }
    if ($R{E_xmpp} && $R{E_stream_tls}) {
        my $q = $R{E_xmpp}{mbps} / ($R{E_stream_tls}{mbps} || 1e-9);
        push @t, ['splice throughput >= 90% of the stream proxy (TLS), measured MB/s',
            $q >= 0.9, sprintf('%.0f vs %.0f MB/s: %.0f%%',
                $R{E_xmpp}{mbps}, $R{E_stream_tls}{mbps}, $q * 100)];
        my ($cx, $cs) = ($R{E_xmpp}{cpu_s_per_gb}, $R{E_stream_tls}{cpu_s_per_gb});
        if ($cx && $cs) {
            push @t, ['the same as nginx capacity (1 / nginx CPU per byte)',
                $cs / $cx >= 0.9, sprintf('%.2f vs %.2f s/GB: %.0f%% (%.0f vs'
                    . ' %.0f MB/s at 100%% of a CPU)', $cx, $cs, $cs / $cx * 100,
                    1000 / $cx, 1000 / $cs)];
        }
    }
    if ($R{I}) {
        my $ok = $R{I}{established} == $BIG_WANT && !$R{I}{errors};
        push @t, ["$BIG_WANT idle sessions through one worker, 0 errors", $ok,
            sprintf('%d established of %d run, %s errors%s', $R{I}{established},
                $o{big}, $R{I}{errors} // '?',
                $o{big} < $BIG_WANT ? "; $BIG_WANT not runnable here: open"
                    . " files hard limit $FD_SOFT" : '')];
    }
    if (@t) {
        $p->("Targets:");
        $p->("");
        $p->("| target | met | figures |");
        $p->("|---|---|---|");
        for my $x (@t) {
            $p->("| $x->[0] | " . ($x->[1] ? 'yes' : '**no**') . " | $x->[2] |");
            csv('target', '', $x->[0], $x->[1] ? 'met' : 'missed', $x->[2]);
        }
        $p->("");
    }

    my $txt = join("\n", @lines) . "\n";
    print $txt;

    open(my $fh, '>', "$OUT/last.txt") or die "$OUT/last.txt: $!\n";
    print $fh $txt;
    close $fh;

    open($fh, '>', "$OUT/last.csv") or die "$OUT/last.csv: $!\n";
    print $fh "scenario,concurrency,metric,value,unit\n";
    for my $row (@CSV) {
        print $fh join(',', map { my $v = $_; $v =~ s/,/;/g if $v !~ /^"/; $v } @$row), "\n";
    }
    close $fh;

    chart();
    say_("results: $OUT/last.txt, $OUT/last.csv"
        . (-s "$OUT/last.png" ? ", $OUT/last.png" : ''));
}

sub chart {
    my @sc = grep { $R{$_}{pt} } qw(A B C X);
    return unless @sc && -x '/usr/bin/gnuplot';
    my %title = (A => 'A nginx-xmpp -> Prosody', B => 'B Prosody (own TLS)',
        C => 'C nginx IMAP -> stub', X => 'X nginx-xmpp -> stub');
    my %style = (A => 'lw 2 lc rgb "#9400d3"', B => 'lw 2 lc rgb "#009e73"',
        C => 'lw 2 lc rgb "#56b4e9"', X => 'lw 1 dt 2 lc rgb "#e69f00"');
    for my $sc (@sc) {
        open(my $fh, '>', "$TMP/chart-$sc.dat") or die;
        for my $c (@CONC) {
            my $r = $R{$sc}{pt}{$c} or next;
            print $fh "$c $r->{rate} $r->{login_p99} $r->{login_p50}\n";
        }
        close $fh;
    }
    my $plots1 = join(', ', map {
        qq{"$TMP/chart-$_.dat" using 1:2 with linespoints $style{$_} title "$title{$_}"}
    } @sc);
    my $plots2 = join(', ', map {
        qq{"$TMP/chart-$_.dat" using 1:3 with linespoints $style{$_} title "$title{$_}"}
    } @sc);
    my $xt = join(', ', map { qq{"$_" $_} } @CONC);
    my $gp = <<"EOF";
set terminal pngcairo size 1200,500 font "sans,10"
set output "$OUT/last.png"
set multiplot layout 1,2 title "nginx-xmpp benchmark: $NCPU CPUs, servers on CPU @{[ $o{scpu} // 'any' ]}, client on CPU @{[ $o{ccpu} // 'any' ]}"
set logscale x
set xrange [0.8:@{[ $CONC[-1] * 1.3 ]}]
set xtics ($xt)
set xlabel "concurrent sessions"
set grid
set key top left
set ylabel "sessions/s"
set yrange [0:*]
plot $plots1
set ylabel "login latency p99 (ms)"
set logscale y
set yrange [*:*]
set key top left
plot $plots2
unset multiplot
EOF
    open(my $fh, '>', "$TMP/chart.gp") or die;
    print $fh $gp;
    close $fh;
    system("gnuplot $TMP/chart.gp 2>$TMP/gnuplot.err") == 0
        or say_("gnuplot failed: " . `cat $TMP/gnuplot.err`);
}
