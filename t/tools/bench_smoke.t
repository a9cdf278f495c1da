#!/usr/bin/perl

# The benchmark tools must keep working: builds t/bench/xbench.c and
# t/bench/bstub.c, starts nginx (mail xmpp + imap + an auth_http endpoint)
# in front of a real Prosody and the IMAP stub, and checks that the load
# generator completes every session without an error in each mode, holds
# idle sessions, and pushes stanzas through the splice.  Then runs
# "t/bench/run --smoke" once and checks that it produced its results, and
# "t/bench/cluster --smoke" (an ejabberd cluster behind nginx).  No timing
# is asserted.
#
# TEST_BENCH_SKIP_RUN=1 skips the t/bench/run and t/bench/cluster parts
# (about 30 s and 15 s).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;

use XT::Nginx qw(free_port wait_for_port);
use XT::Prosody;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp imap http stream stream_ssl/);

my $bench = XT::Nginx::repo_root() . '/t/bench';
my $d = $t->testdir;

# the tools
my $cc = $ENV{CC} // 'cc';
for my $tool ('xbench', 'bstub') {
    my $libs = $tool eq 'xbench' ? '-lssl -lcrypto' : '';
    my $out = `$cc -O2 -Wall -o $d/$tool $bench/$tool.c $libs 2>&1`;
    plan(skip_all => "cannot build $tool:\n$out") if $?;
}

my $p = XT::Prosody->new(dir => "$d/prosody", domains => ['example.com'],
    users => [['user0', 'example.com', 'secret'],
              ['user1', 'example.com', 'secret']]);

my $stub_imap = free_port();
my $stub_xmpp = free_port();
my $stub = fork() // die "fork: $!";
if ($stub == 0) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', "$d/bstub.log";
    open STDERR, '>&', \*STDOUT;
    exec("$d/bstub", '--imap', $stub_imap, '--xmpp', $stub_xmpp)
        or POSIX::_exit(127);
}
END { if ($stub) { kill 'TERM', $stub; waitpid($stub, 0) } }
wait_for_port($stub_imap, 10) or die "bstub did not start\n";

$t->gen_cert('xmpp', cn => 'example.com');
$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    map "\$http_auth_protocol:\$http_auth_user" \$bench_port {
        "~^imap:"        $stub_imap;
        "~^xmpp:sink\@"  $stub_xmpp;
        default          ${\ $p->port};
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/auth.log;

        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$bench_port;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    server_name example.com;

    ssl_certificate %%TESTDIR%%/xmpp.crt;
    ssl_certificate_key %%TESTDIR%%/xmpp.key;
    ssl_protocols TLSv1.2 TLSv1.3;  # not a default before nginx 1.23.4

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls only;
    }

    server {
        listen 127.0.0.1:%%PORT_5223%% ssl;
        protocol xmpp;
    }

    server {
        listen 127.0.0.1:%%PORT_8143%%;
        protocol imap;
        starttls only;
    }
}

stream {
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate %%TESTDIR%%/xmpp.crt;
        ssl_certificate_key %%TESTDIR%%/xmpp.key;
        ssl_protocols TLSv1.2 TLSv1.3;  # not a default before nginx 1.23.4
        proxy_pass 127.0.0.1:$stub_xmpp;
    }
}
EOF
$t->run();
$t->plan(21);

###############################################################################

# runs xbench; returns the RESULT fields, the ERROR lines and the output
sub xbench {
    my (@args) = @_;
    my $out = `$d/xbench -q -U 2 -w secret -D example.com -t 30 @args 2>&1`;
    my %r = (rc => $? >> 8, out => $out);
    if ($out =~ /^RESULT (.*)$/m) {
        %r = (%r, map { split /=/, $_, 2 } split ' ', $1);
    }
    $r{errlines} = join(', ', $out =~ /^ERROR (.*)$/mg);
    return \%r;
}

sub sessions_ok {
    my ($r, $n, $name) = @_;
    my $ok = ($r->{ok} // -1) == $n && ($r->{errors} // -1) == 0
        && $r->{rc} == 0;
    ok($ok, $name) or diag("rc $r->{rc}, ok " . ($r->{ok} // '?')
        . ", errors: $r->{errlines}\n$r->{out}");
}

my $r = xbench('-m xmpp', '-p', $t->port(5222), '-c 5 -n 20');
sessions_ok($r, 20, 'xmpp: 20 STARTTLS logins through nginx to Prosody');
like($r->{tls} // '', qr{^TLSv1\.3/[^/]+/X25519/ECDSA-256/full$},
    'TLS 1.3, X25519, ECDSA P-256, full handshake');
like($r->{out}, qr/^PHASE auth n=20 /m, 'auth phase measured');
like($r->{out}, qr/^PHASE bind n=20 /m, 'bind phase measured');

$r = xbench('-m xmpps', '-p', $t->port(5223), '-c 5 -n 20');
sessions_ok($r, 20, 'xmpps: 20 direct TLS logins through nginx to Prosody');

$r = xbench('-m imap', '-p', $t->port(8143), '-c 5 -n 20');
sessions_ok($r, 20, 'imap: 20 STARTTLS LOGINs through nginx to the stub');

$r = xbench('-m tls', '-p', $t->port(5223), '-c 5 -n 20');
sessions_ok($r, 20, 'tls: 20 bare handshakes');

$r = xbench('-m xmpp', '-p', $p->port, '-c 5 -n 10');
sessions_ok($r, 10, 'xmpp: 10 logins to Prosody directly (its own TLS)');

# failures are counted, not hidden: a wrong password at the backend

$r = xbench('-m xmpp', '-p', $t->port(5222), '-c 2 -n 4', '-w wrong');
is($r->{ok}, 0, 'wrong password: no session completed');
like($r->{errlines}, qr/auth_failure_in_auth 4/, 'wrong password: 4 auth failures');

# nothing listening: connection errors

my $dead = free_port();
$r = xbench('-m imap', '-p', $dead, '-n 3');
like($r->{errlines}, qr/connect_refused_in_connect 3/, 'refused connections counted');

# idle sessions: all held, then closed cleanly

$r = xbench('-m xmpp', '-p', $t->port(5222), '-c 10 --idle 30 --hold 1');
like($r->{out}, qr/^READY established=30 errors=0/m, 'idle: 30 sessions held');
sessions_ok($r, 30, 'idle: 30 sessions closed cleanly');

$r = xbench('-m imap', '-p', $t->port(8143), '-c 10 --idle 30 --hold 1');
like($r->{out}, qr/^READY established=30 errors=0/m, 'idle imap: 30 sessions held');

# the splice: 4 MB of stanzas through nginx-xmpp and through the stream
# proxy into the sink

$r = xbench('-m xmpps', '-p', $t->port(5223), '-n 1 -u sink --xput 4000000');
sessions_ok($r, 1, 'xput through nginx-xmpp');
ok(($r->{xput_bytes} // 0) >= 4_000_000, 'xput: all bytes acknowledged');

$r = xbench('-m xmpps', '-p', $t->port(8443), '-n 1 -u sink --xput 4000000');
sessions_ok($r, 1, 'xput through the stream proxy');

###############################################################################

# the benchmark script itself, in smoke mode

SKIP: {
    skip 'TEST_BENCH_SKIP_RUN set', 2 if $ENV{TEST_BENCH_SKIP_RUN};

    my $nginx = $t->binary;
    my $out = `$bench/run --smoke --out $d/results --nginx $nginx 2>&1`;
    is($? >> 8, 0, 't/bench/run --smoke exits 0') or diag($out);

    my $csv = $t->read_file("$d/results/last.csv") // '';
    my @err = grep { /^[A-D],\d+,errors,/ } split /\n/, $csv;
    ok(@err >= 8 && !grep({ !/,errors,0,/ } @err),
        'run --smoke: sessions in A, B, C, D at every point, 0 errors')
        or diag(join("\n", @err) . "\n$out");
}

# t/bench/cluster, in smoke mode: both node variants log in without an
# error, and the two-node one over both nodes

SKIP: {
    skip 'TEST_BENCH_SKIP_RUN set', 2 if $ENV{TEST_BENCH_SKIP_RUN};
    require XT::Ejabberd;
    my $why = XT::Ejabberd::available();
    skip $why, 2 if $why;

    my $nginx = $t->binary;
    my $out = `$bench/cluster --smoke --out $d/cluster --nginx $nginx 2>&1`;
    is($? >> 8, 0, 't/bench/cluster --smoke exits 0') or diag($out);
    my $csv = $t->read_file("$d/cluster/cluster.csv") // '';
    my $txt = $t->read_file("$d/cluster/cluster.txt") // '';
    my ($on1, $on2) = $txt =~ /^\| two nodes \|[^\n]*?\| (\d+) \/ (\d+);/m;
    ok($csv =~ /^"one node",\d+,errors,0,/m
        && $csv =~ /^"two nodes",\d+,errors,0,/m
        && ($on1 // 0) + ($on2 // 0) == 8,
        'cluster --smoke: one node and two, 0 errors, every user on a node')
        or diag("$csv\n$txt\n$out");
}
