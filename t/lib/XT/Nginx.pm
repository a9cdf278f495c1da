package XT::Nginx;

# Test harness for nginx-xmpp, in the spirit of nginx's own test suite.
#
# CONVENTIONS (read these before writing a test)
#
# * Configuration: write nginx.conf with write_file_expand().  The harness
#   puts its own global directives into the file when nginx is started or
#   reloaded:
#
#       daemon off;  master_process on;
#       pid TESTDIR/nginx.pid;  error_log TESTDIR/error.log debug;
#
#   at the place of a line "%%TEST_GLOBALS%%" if there is one, otherwise at
#   the top.  So a test configuration must NOT contain its own top level
#   daemon, master_process or pid directives.  An empty "events { }" block is
#   appended when the file has no events block.
#
# * Placeholders expanded by write_file_expand():
#       %%TESTDIR%%      the test's temporary directory (no trailing slash)
#       %%PORT_NNNN%%    a free TCP port on 127.0.0.1; each distinct NNNN
#                        gets its own port, stable for the object's lifetime
#                        ($t->port(NNNN) returns the same number).
#       %%TEST_GLOBALS%% see above.
#   Ports are chosen at random from 20000-31999, bind-tested and locked with
#   a lock file in the temp directory, so parallel tests (prove -j) never
#   get the same port.
#
# * Plan: call $t->plan(N) with N = the number of your own tests.  The
#   harness adds one test, the teardown check, which it runs when the object
#   is destroyed or at END: nginx is stopped and the test fails if
#   error.log (or nginx's captured stderr) holds "[alert]", "[emerg]",
#   "exited on signal", a sanitizer report or "runtime error:", or if
#   nginx was started and there is no error.log.  Lines that a test
#   provokes on purpose can be excused with $t->ignore_log(qr/.../).
#   Alternative without a count: end the test with $t->done_testing, which
#   runs the teardown check and then Test::More's done_testing.
#
# * An HTTP auth endpoint for the mail module needs no extra code: put an
#   http block into the same nginx.conf, e.g.
#
#       http {
#           access_log %%TESTDIR%%/auth.log;   # log_format with $http_auth_user
#           server {
#               listen 127.0.0.1:%%PORT_8081%%;
#               location = /auth {
#                   add_header Auth-Status OK;
#                   add_header Auth-Server 127.0.0.1;
#                   add_header Auth-Port %%PORT_8144%%;
#                   return 204;
#               }
#           }
#       }
#       mail { auth_http 127.0.0.1:%%PORT_8081%%/auth; ... }
#
#   t/tools/harness.t is a worked example.
#
# * API (all methods that do not return something else return $t):
#       XT::Nginx->new(binary => PATH)       (binary defaults to the env below)
#       $t->has(@features)  has_feature($f)  has_version('1.25.0')  version
#       configure_args  testdir  binary  port($n)
#       write_file($name, $text)  write_file_expand($name, $text)  expand($text)
#       read_file($name)  gen_cert($name, cn => .., alt => [..], days => ..)
#       run  stop  reload (boolean)  config_test (returns exit code, output)
#       alive (boolean: the master process still runs)  pid (the master's)
#       plan($n)  ignore_log(qr//)  log_problems  check_logs  done_testing
#     Functions (exportable): free_port()  wait_for_port($port, $timeout,
#       $host, $alive_cb)  make_cert($crt, $key, %opts: cn, alt, days, ca)
#       repo_root()  loopback_net(@n)
#
# * Sanitizer builds: unless set already, nginx gets ASAN_OPTIONS with leak
#   checks on, and UBSAN_OPTIONS/LSAN_OPTIONS with auto/ubsan.supp and
#   auto/lsan.supp (copied into the test directory).
#
# * Environment:
#       TEST_NGINX_BINARY   nginx to test (default: build/nginx-DEFAULT/objs/nginx,
#                           DEFAULT = first release in auto/releases)
#       TEST_NGINX_LEAVE    keep the temporary directories
#       TEST_NGINX_VERBOSE  print the paths and commands used

use strict;
use warnings;

use Test::More ();    # load Test::Builder first: our END then runs before its END
use Cwd qw(abs_path);
use Errno ();
use Fcntl qw(:flock);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Socket qw(SOL_SOCKET SO_REUSEADDR);
use Time::HiRes qw(sleep time);

use Exporter qw(import);
our @EXPORT_OK = qw(free_port wait_for_port make_cert repo_root loopback_net);

my $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/../../..');

sub repo_root { $ROOT }

our %LIVE;          # id => weak ref to every object, for END
my %PORT_LOCKS;     # port => lock file handle, held until this process exits
my %V_CACHE;        # binary => nginx -V output

###############################################################################
# Free functions (also used by XT::Prosody)

sub _port_lock_dir {
    my $dir = File::Spec->catdir(File::Spec->tmpdir, 'xt-ports');
    unless (-d $dir) {
        mkdir $dir;
        chmod 01777, $dir;
    }
    return $dir;
}

# free_port(): a TCP port on 127.0.0.1 that nothing listens on and that no
# other test of this suite (in this or another process) has been given.
sub free_port {
    my $dir = _port_lock_dir();
    for (1 .. 1000) {
        my $port = 20000 + int(rand(12000));
        next if $PORT_LOCKS{$port};
        open(my $fh, '>', "$dir/$port") or next;
        unless (flock($fh, LOCK_EX | LOCK_NB)) {
            close $fh;
            next;
        }
        my $s = IO::Socket::INET->new(
            Proto => 'tcp', LocalAddr => '127.0.0.1', LocalPort => $port,
            Listen => 1, ReuseAddr => 1,
        );
        unless ($s) {
            close $fh;
            next;
        }
        close $s;
        $PORT_LOCKS{$port} = $fh;
        return $port;
    }
    die "XT::Nginx: no free port found\n";
}

# loopback_net(@n): a random loopback prefix "127.X.Y" (a /24 of its own,
# for tests that need the fixed s2s port 5269 on several addresses) after
# checking that "127.X.Y.N" can listen on port 5269 for each N given; the
# test is skipped (plan skip_all, with the reason) when one cannot.
sub loopback_net {
    my (@n) = @_;
    my $net = sprintf('127.%d.%d', 1 + int(rand(250)), 1 + int(rand(250)));
    for my $ip (map { "$net.$_" } @n) {
        my $s = IO::Socket::INET->new(LocalAddr => "$ip:5269", ReuseAddr => 1,
            Listen => 1);
        Test::More::plan(skip_all => "cannot listen on $ip:5269: $!")
            unless $s;
    }
    return $net;
}

# wait_for_port($port, $timeout, $host, $alive): true once a TCP connect to
# host:port succeeds; false after $timeout seconds or as soon as $alive (an
# optional code ref) returns false.
sub wait_for_port {
    my ($port, $timeout, $host, $alive) = @_;
    $timeout //= 10;
    $host //= '127.0.0.1';
    my $end = time() + $timeout;
    while (1) {
        my $s = IO::Socket::INET->new(
            PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 1,
        );
        if ($s) {
            close $s;
            return 1;
        }
        return 0 if $alive && !$alive->();
        return 0 if time() > $end;
        sleep 0.02;
    }
}

# make_cert($crt, $key, cn => 'example.com', alt => [...], days => 30,
#     ca => [$ca_crt, $ca_key]): an ECDSA P-256 certificate, via the openssl
# command line tool: self-signed, or signed by the CA given (one made
# with make_cert(..., ca => 'self'), which has the CA basic constraint).
sub make_cert {
    my ($crt, $key, %o) = @_;
    my $cn = $o{cn} // 'localhost';
    my @alt = @{ $o{alt} // [$cn] };
    if (ref $o{ca}) {
        my ($ca_crt, $ca_key) = @{ $o{ca} };
        my $out = _capture('openssl', 'req', '-new', '-nodes', '-newkey', 'ec',
            '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', $key,
            '-out', "$crt.csr", '-subj', "/CN=$cn");
        die "XT::Nginx: openssl failed to make $crt.csr:\n$out" if $?;
        open(my $fh, '>', "$crt.ext") or die "XT::Nginx: $crt.ext: $!\n";
        print $fh 'subjectAltName=' . join(',', map { "DNS:$_" } @alt) . "\n";
        close $fh;
        $out = _capture('openssl', 'x509', '-req', '-in', "$crt.csr",
            '-CA', $ca_crt, '-CAkey', $ca_key, '-CAcreateserial',
            '-days', $o{days} // 30, '-out', $crt, '-extfile', "$crt.ext");
        die "XT::Nginx: openssl failed to sign $crt:\n$out" if $?;
        return ($crt, $key);
    }
    @alt = () if ($o{ca} // '') eq 'self';
    my @cmd = (
        'openssl', 'req', '-x509', '-new', '-nodes',
        '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-keyout', $key, '-out', $crt,
        '-days', $o{days} // 30,
        '-subj', "/CN=$cn",
    );
    push @cmd, "-$o{digest}" if $o{digest};    # signature hash: sha384 ...
    push @cmd, '-addext', 'subjectAltName=' . join(',', map {
        /^[\d.]+$|:/ ? "IP:$_" : "DNS:$_"
    } @alt) if @alt;
    my $out = _capture(@cmd);
    die "XT::Nginx: openssl failed to make $crt:\n$out" if $?;
    return ($crt, $key);
}

sub _capture {
    my @cmd = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

###############################################################################
# Object

sub new {
    my ($class, %o) = @_;

    my $binary = $o{binary} // $ENV{TEST_NGINX_BINARY} // _default_binary();
    $binary = abs_path($binary) // $binary if -e $binary;
    die "XT::Nginx: no nginx binary at $binary (run auto/build, "
        . "or set TEST_NGINX_BINARY)\n" unless -x $binary;

    my $dir = tempdir('xt-nginx-XXXXXXXX', TMPDIR => 1,
        CLEANUP => !$ENV{TEST_NGINX_LEAVE});
    chmod 0755, $dir;    # workers run as nobody when the master runs as root
    mkdir "$dir/logs";   # default prefix-relative paths of nginx

    my $self = bless {
        binary  => $binary,
        dir     => $dir,
        ports   => {},
        owner   => $$,
        ignore  => [],
        planned => 0,
        checked => 0,
        ran     => 0,
    }, $class;

    $LIVE{"$self"} = $self;
    weaken($LIVE{"$self"});

    Test::More::diag("testdir $dir, binary $binary") if $ENV{TEST_NGINX_VERBOSE};
    return $self;
}

sub _default_binary {
    my $v = '1.30.4';
    if (open my $fh, '<', "$ROOT/auto/releases") {
        while (<$fh>) {
            next if /^\s*(#|$)/;
            ($v) = split;
            last;
        }
    }
    return "$ROOT/build/nginx-$v/objs/nginx";
}

sub testdir { $_[0]{dir} }
sub binary  { $_[0]{binary} }

# pid(): the pid of the nginx master process, undef unless it runs.
sub pid     { $_[0]{pid} }

###############################################################################
# Features

sub _v_output {
    my ($self) = @_;
    return $V_CACHE{ $self->{binary} } //= _capture($self->{binary}, '-V');
}

# Configure arguments as a list.
sub configure_args {
    my ($self) = @_;
    my ($args) = $self->_v_output =~ /^configure arguments:(.*)$/m;
    return grep { length } split ' ', ($args // '');
}

# nginx version number, e.g. "1.30.4".
sub version {
    my ($self) = @_;
    my ($v) = $self->_v_output =~ m{nginx version: \S+?/([\d.]+)};
    return $v;
}

sub _feature {
    my ($self, $f) = @_;
    my $v = ' ' . join(' ', $self->configure_args) . ' ';
    my $with = sub { $v =~ /\s--with-\Q$_[0]\E(?:=\S*)?\s/ };
    my $without = sub { $v =~ /\s--without-\Q$_[0]\E\s/ };

    return $with->('mail') if $f eq 'mail';
    return $with->('stream') if $f eq 'stream';
    return !$without->('http') if $f eq 'http';
    return $with->('debug') if $f eq 'debug';
    return $v =~ /-fsanitize=[^ ]*address/ ? 1 : 0 if $f eq 'asan';
    if ($f =~ /^(?:xmpp|imap|pop3|smtp)$/) {
        return $with->('mail') && !$without->("mail_${f}_module");
    }
    # default-on http modules the tests use
    if ($f =~ /^http_(?:rewrite|proxy|map|geo|auth_basic|access|log|upstream_\w+)$/) {
        return !$without->('http') && !$without->("${f}_module");
    }
    # anything else must have been asked for: --with-F_module or --with-F
    return $with->("${f}_module") || $with->($f);
}

# has(@features): skip the whole test unless nginx has every feature.
# Known: mail xmpp imap pop3 smtp http stream debug asan mail_ssl http_ssl
# stream_ssl and any other F built with --with-F_module.
sub has {
    my ($self, @features) = @_;
    for my $f (@features) {
        next if $self->_feature($f);
        Test::More::plan(skip_all => "nginx lacks $f");
    }
    return $self;
}

# has_feature($f): the same check, as a boolean.
sub has_feature { return $_[0]->_feature($_[1]) ? 1 : 0 }

# has_version('1.25.0'): true if nginx is at least that version.
sub has_version {
    my ($self, $want) = @_;
    my @h = split /\./, ($self->version // '0');
    my @w = split /\./, $want;
    for my $i (0 .. 2) {
        my ($a, $b) = ($h[$i] // 0, $w[$i] // 0);
        return $a > $b ? 1 : 0 if $a != $b;
    }
    return 1;
}

###############################################################################
# Files and ports

sub port {
    my ($self, $n) = @_;
    return $self->{ports}{$n} //= free_port();
}

sub _path {
    my ($self, $name) = @_;
    return $name =~ m{^/} ? $name : "$self->{dir}/$name";
}

sub write_file {
    my ($self, $name, $content) = @_;
    my $path = $self->_path($name);
    make_path(dirname($path));
    open(my $fh, '>', $path) or die "XT::Nginx: cannot write $path: $!\n";
    binmode $fh;
    print $fh $content;
    close $fh or die "XT::Nginx: cannot write $path: $!\n";
    return $self;
}

sub expand {
    my ($self, $content) = @_;
    $content =~ s/%%TESTDIR%%/$self->{dir}/g;
    $content =~ s/%%PORT_(\d+)%%/$self->port($1)/ge;
    return $content;
}

sub write_file_expand {
    my ($self, $name, $content) = @_;
    return $self->write_file($name, $self->expand($content));
}

sub read_file {
    my ($self, $name) = @_;
    my $path = $self->_path($name);
    open(my $fh, '<', $path) or return undef;
    binmode $fh;
    local $/;
    my $c = <$fh>;
    return $c // '';
}

sub gen_cert {
    my ($self, $name, %o) = @_;
    make_cert("$self->{dir}/$name.crt", "$self->{dir}/$name.key", %o);
    return $self;
}

###############################################################################
# Running nginx

my $GLOBALS_MARK = '# -- test globals (XT::Nginx) --';

sub _globals {
    my ($self) = @_;
    my $d = $self->{dir};
    return "$GLOBALS_MARK\n"
        . "daemon off;\nmaster_process on;\n"
        . "pid $d/nginx.pid;\nerror_log $d/error.log debug;\n"
        . "# -- end of test globals --\n";
}

# Puts the harness globals (and an events block) into nginx.conf.
sub _finalize_conf {
    my ($self) = @_;
    my $conf = $self->read_file('nginx.conf');
    die "XT::Nginx: no nginx.conf in $self->{dir}\n" unless defined $conf;
    return $conf if index($conf, $GLOBALS_MARK) >= 0;
    $conf = $self->expand($conf);
    unless ($conf =~ s/^[ \t]*%%TEST_GLOBALS%%[ \t]*;?[ \t]*$/$self->_globals/me) {
        $conf = $self->_globals . $conf;
    }
    $conf .= "\nevents { }\n" unless $conf =~ /^\s*events\s*\{/m;
    $self->write_file('nginx.conf', $conf);
    return $conf;
}

# The ports nginx.conf listens on, as [host, port].
sub _listen_ports {
    my ($self, $conf) = @_;
    my (%seen, @l);
    (my $c = $conf) =~ s/#[^\n]*//g;
    while ($c =~ /(?:^|[;{}])\s*listen\s+([^\s;]+)/g) {
        my $a = $1;
        next if $a =~ /^unix:/;
        my ($host, $port);
        if ($a =~ /^\[([^\]]+)\]:(\d+)$/) { ($host, $port) = ($1, $2) }
        elsif ($a =~ /^([^:]+):(\d+)$/)   { ($host, $port) = ($1, $2) }
        elsif ($a =~ /^(\d+)$/)           { ($host, $port) = ('127.0.0.1', $1) }
        else { next }
        $host = '127.0.0.1' if $host eq '*' || $host eq '0.0.0.0' || $host eq 'localhost';
        next if $host =~ /:/;    # IPv6 listeners are not waited for
        push @l, [$host, $port] unless $seen{"$host:$port"}++;
    }
    return @l;
}

sub _timeout {
    my ($self, $t) = @_;
    return $self->_feature('asan') ? $t * 4 : $t;
}

# alive(): true while the nginx master process started by run() runs (it is
# reaped, and its exit status kept, once it has exited).
sub alive {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    my $r = waitpid($pid, WNOHANG);
    if ($r == $pid) {
        $self->{exit_status} = $?;
        delete $self->{pid};
        return 0;
    }
    return 1;
}

sub _log_tail {
    my ($self, $name, $n) = @_;
    my $c = $self->read_file($name) // '';
    my @l = split /\n/, $c;
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", @l);
}

sub run {
    my ($self) = @_;
    die "XT::Nginx: nginx is already running\n" if $self->{pid};

    my $conf = $self->_finalize_conf;
    my $d = $self->{dir};
    my @cmd = ($self->{binary}, '-p', "$d/", '-c', "$d/nginx.conf",
        '-e', "$d/error.log");
    Test::More::diag("run: @cmd") if $ENV{TEST_NGINX_VERBOSE};

    my %san = $self->_sanitizer_env;

    my $pid = fork() // die "XT::Nginx: fork: $!\n";
    if ($pid == 0) {
        @ENV{ keys %san } = values %san;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/stderr.log";
        open STDERR, '>&', \*STDOUT;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{ran} = 1;

    my $timeout = $self->_timeout(10);
    for my $l ($self->_listen_ports($conf)) {
        next if wait_for_port($l->[1], $timeout, $l->[0], sub { $self->alive });
        my $why = $self->{pid} ? "port $l->[0]:$l->[1] did not open within ${timeout}s"
            : "nginx exited (status $self->{exit_status})";
        $self->_kill_hard if $self->{pid};
        die "XT::Nginx: nginx failed to start: $why\n"
            . "--- stderr:\n" . $self->_log_tail('stderr.log', 20) . "\n"
            . "--- error.log:\n" . $self->_log_tail('error.log', 20) . "\n";
    }
    return $self;
}

# Sanitizer settings for nginx, unless the environment has its own:
# reports go to stderr (and so to error.log), leak checking is on, and the
# known harmless reports from unmodified nginx (auto/*.supp) are suppressed.
# The suppression files are copied into the test directory because worker
# processes run as an unprivileged user and may not be able to read the
# repository (e.g. a checkout in a 0700 directory).
sub _sanitizer_env {
    my ($self) = @_;
    return () unless $self->_feature('asan');
    my $d = $self->{dir};
    my %env;
    for my $kind (qw/ubsan lsan/) {
        my $src = "$ROOT/auto/$kind.supp";
        next unless -f $src;
        open(my $in, '<', $src) or next;
        local $/;
        my $c = <$in>;
        close $in;
        $self->write_file("$kind.supp", $c);
        chmod 0644, "$d/$kind.supp";
    }
    $env{ASAN_OPTIONS} = $ENV{ASAN_OPTIONS} // 'detect_leaks=1:abort_on_error=0';
    $env{UBSAN_OPTIONS} = $ENV{UBSAN_OPTIONS}
        // "print_stacktrace=1:suppressions=$d/ubsan.supp";
    $env{LSAN_OPTIONS} = $ENV{LSAN_OPTIONS}
        // "suppressions=$d/lsan.supp:print_suppressions=0";
    return %env;
}

sub _wait_exit {
    my ($self, $timeout) = @_;
    my $end = time() + $timeout;
    while ($self->{pid}) {
        return 1 unless $self->alive;
        return 0 if time() > $end;
        sleep 0.02;
    }
    return 1;
}

sub _kill_hard {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    return if $self->_wait_exit(5);
    kill 'KILL', $self->{pid};
    $self->_wait_exit(5);
}

# stop(): graceful stop (QUIT), then TERM and KILL after a timeout.
sub stop {
    my ($self) = @_;
    return $self unless $self->{pid} && $$ == $self->{owner};
    kill 'QUIT', $self->{pid};
    unless ($self->_wait_exit($self->_timeout(15))) {
        $self->{stop_problem} = 'nginx did not exit on QUIT in time';
        $self->_kill_hard;
    }
    return $self;
}

# reload(): SIGHUP; waits until the new worker processes have started and
# the old ones stopped accepting (true), or the new configuration was refused
# (false).
sub reload {
    my ($self) = @_;
    die "XT::Nginx: nginx is not running\n" unless $self->{pid};
    my $conf = $self->_finalize_conf;
    my $before = $self->read_file('error.log') // '';
    my $offset = length $before;

    # worker processes started by the current configuration
    my ($last_start) = $before =~ /.*start worker processes\n(.*)/s;
    my @old = ($last_start // '') =~ /start worker process (\d+)/g;

    kill 'HUP', $self->{pid};

    my $end = time() + $self->_timeout(10);
    my $ok;
    while (time() < $end) {
        my $log = substr($self->read_file('error.log') // '', $offset);
        if ($log =~ /reconfiguring(.*)/s) {
            my $after = $1;
            if ($after =~ /\[emerg\]/) { $ok = 0; last }
            if ($after =~ /start worker process/) {
                my @left = grep {
                    $after !~ /\b$_#\d+: (?:gracefully shutting down|exiting|exit)\b/
                        && kill(0, $_)
                } @old;
                if (!@left) { $ok = 1; last }
            }
        }
        last unless $self->alive;
        sleep 0.02;
    }
    return 0 unless $ok;
    for my $l ($self->_listen_ports($conf)) {
        return 0 unless wait_for_port($l->[1], $self->_timeout(10), $l->[0],
            sub { $self->alive });
    }
    return 1;
}

# config_test(): runs "nginx -t" on the current nginx.conf, returns
# (exit code, output).  Its messages do not go into error.log.
sub config_test {
    my ($self) = @_;
    $self->_finalize_conf;
    my $d = $self->{dir};
    my %san = $self->_sanitizer_env;
    # nginx -t returns from main() with the tested configuration's cycle
    # still allocated (unmodified nginx, by design): no leak check there
    $san{ASAN_OPTIONS} =~ s/\bdetect_leaks=1\b/detect_leaks=0/ if %san;
    local @ENV{ keys %san } = values %san;
    my $out = _capture($self->{binary}, '-t', '-p', "$d/", '-c', "$d/nginx.conf",
        '-e', "$d/config_test.log");
    return ($? >> 8, $out);
}

###############################################################################
# Plan and teardown check

sub plan {
    my ($self, $n) = @_;
    $self->{planned} = 1;
    Test::More::plan(tests => $n + 1);
    return $self;
}

sub ignore_log {
    my ($self, @re) = @_;
    push @{ $self->{ignore} }, @re;
    return $self;
}

# the level of a line is right after its time stamp (or "nginx: " on stderr):
# a client's value quoted inside a line is not a level
my $BAD = qr/^(?:\S+ \S+ |nginx: )\[(?:alert|emerg)\]|exited on signal|(?:Address|UndefinedBehavior|Leak|Memory|Thread)Sanitizer|runtime error:/;

# The problems found in error.log and nginx's stderr, as a list of lines.
# Once nginx has been started, an error.log that is not there is one: the
# check would otherwise pass on a log it never read.
sub log_problems {
    my ($self) = @_;
    my @bad;
    for my $name ('error.log', 'stderr.log') {
        my $c = $self->read_file($name);
        unless (defined $c) {
            push @bad, "$name: missing (nginx was started)"
                if $name eq 'error.log' && $self->{ran};
            next;
        }
        LINE: for my $line (split /\n/, $c) {
            next unless $line =~ $BAD;
            for my $re (@{ $self->{ignore} }) {
                next LINE if $line =~ $re;
            }
            push @bad, "$name: $line";
        }
    }
    push @bad, $self->{stop_problem} if $self->{stop_problem};
    return @bad;
}

# check_logs(): stops nginx and emits the teardown test (once).
sub check_logs {
    my ($self) = @_;
    return $self if $self->{checked} || $$ != $self->{owner};
    $self->stop;
    $self->{checked} = 1;
    my @bad = $self->log_problems;
    my $tb = Test::More->builder;
    my $ok = $tb->ok(!@bad, 'no alerts, crashes or sanitizer reports in error.log');
    unless ($ok) {
        my @show = @bad > 30 ? (@bad[0 .. 29], '...') : @bad;
        $tb->diag(join "\n", @show);
        $tb->diag("logs kept in $self->{dir}") if $ENV{TEST_NGINX_LEAVE};
    }
    return $self;
}

sub done_testing {
    my ($self) = @_;
    $self->check_logs;
    Test::More::done_testing();
}

sub _teardown {
    my ($self) = @_;
    return unless $$ == $self->{owner};
    if ($self->{planned} || $self->{ran}) {
        $self->check_logs;
    } else {
        $self->stop;
    }
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    delete $LIVE{"$self"};
    $self->_teardown;
}

END {
    local ($!, $@);
    my $status = $?;
    for my $t (grep { defined } values %LIVE) {
        $t->_teardown;
    }
    $? = $status;
}

1;
