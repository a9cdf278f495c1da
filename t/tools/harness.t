#!/usr/bin/perl

# The test harness itself, on the built nginx: config placeholders, ports,
# certificates, start/reload/stop, the teardown log check, and nginx's own
# http block used as the mail auth endpoint (the pattern the XMPP tests use),
# with IMAP and a fake IMAP backend forked from this test.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use IO::Socket::INET;
use POSIX ();
use Test::More;

use XT::Nginx;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail imap http/);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

http {
    log_format auth '$http_auth_user:$http_auth_pass:$http_auth_protocol';

    map $http_auth_pass $auth_status {
        secret   OK;
        default  "Invalid login or password";
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        access_log %%TESTDIR%%/auth.log auth;

        location = /auth {
            add_header Auth-Status $auth_status;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port %%PORT_8144%%;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8080%%/auth;

    server {
        listen 127.0.0.1:%%PORT_8143%%;
        protocol imap;
    }
}

EOF

$t->plan(27);

###############################################################################
# Placeholders and ports

my $conf = $t->read_file('nginx.conf');
my ($p8080, $p8143, $p8144) = map { $t->port($_) } 8080, 8143, 8144;

unlike($conf =~ s/%%TEST_GLOBALS%%//r, qr/%%/, 'all placeholders expanded');
like($conf, qr/listen 127\.0\.0\.1:\Q$p8143\E;/, 'port(8143) is the expanded port');
is(scalar(keys %{ { map { $_ => 1 } $p8080, $p8143, $p8144 } }), 3,
    'distinct ports for distinct placeholders');
is($t->port(8143), $p8143, 'port() is stable');
my $td = $t->testdir;
like($conf, qr/\Q$td\E\/auth\.log/, 'TESTDIR expanded');

###############################################################################
# Certificates

$t->gen_cert('cert', cn => 'example.com', alt => ['example.com', '*.example.com']);
my $text = `openssl x509 -in $td/cert.crt -noout -text 2>&1`;
like($text, qr/prime256v1|P-256/, 'gen_cert: ECDSA P-256');
like($text, qr/DNS:example\.com, DNS:\*\.example\.com/, 'gen_cert: subjectAltName');
ok(-s "$td/cert.key", 'gen_cert: key written');

###############################################################################
# A fake IMAP backend

my $backend = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1', LocalPort => $p8144, Listen => 5, ReuseAddr => 1,
) or die "backend listen: $!";

my $bpid = fork() // die "fork: $!";
if ($bpid == 0) {
    fake_imap_backend($backend);
    POSIX::_exit(0);
}
close $backend;

###############################################################################
# nginx

$t->run();

like($t->read_file('nginx.conf'), qr/^pid \Q$td\E\/nginx\.pid;/m,
    'globals put at %%TEST_GLOBALS%%');

my $c = XT::XMPP->new(port => $p8143) or die $XT::XMPP::ERROR;
like($c->read_until(qr/\r\n/), qr/^\* OK/, 'IMAP greeting from nginx');

$c->send("a01 LOGIN alice wrong\r\n");
like($c->read_until(qr/\r\n/) // '', qr/^a01 NO/, 'bad password refused');
ok($c->eof_within(5), 'connection closed after refusal');

$c = XT::XMPP->new(port => $p8143) or die $XT::XMPP::ERROR;
$c->read_until(qr/\r\n/);
$c->send("a01 LOGIN alice secret\r\n");
like($c->read_until(qr/^a01 .*\r\n/m) // '', qr/^a01 OK/m, 'login proxied to the backend');
$c->send("a02 NOOP\r\n");
like($c->read_until(qr/^a02 .*\r\n/m) // '', qr/a02 OK fake NOOP/, 'command relayed');
$c->send("a03 LOGOUT\r\n");
ok($c->eof_within(5), 'logout closes');

my $auth = $t->read_file('auth.log') // '';
like($auth, qr/^alice:wrong:imap$/m, 'auth request for the refused login');
like($auth, qr/^alice:secret:imap$/m, 'auth request for the good login');

###############################################################################
# reload, stop, run again

$t->write_file_expand('nginx.conf', $t->read_file('nginx.conf') =~ s/protocol imap;/protocol imap;\n        imap_capabilities IMAP4rev1 XTRELOAD;/r);
ok($t->reload, 'reload');
$c = XT::XMPP->new(port => $p8143) or die $XT::XMPP::ERROR;
like($c->read_until(qr/\r\n/), qr/^\* OK/, 'greeting after reload');
$c->send("c1 CAPABILITY\r\n");
like($c->read_until(qr/^c1 .*\r\n/m) // '', qr/XTRELOAD/, 'new configuration active');
undef $c;

$t->stop;
ok(!XT::XMPP->new(port => $p8143, timeout => 1), 'stopped: port closed');
$t->run;
ok(XT::XMPP->new(port => $p8143), 'running again');

###############################################################################
# The teardown check finds problems (checked on a second, idle object)

my $t2 = XT::Nginx->new();
$t2->write_file('error.log', "2024/01/01 00:00:00 [info] 1#1: fine\n"
    . "2024/01/01 00:00:00 [alert] 1#1: worker process 2 exited on signal 11\n");
$t2->write_file('stderr.log', "==12==ERROR: AddressSanitizer: heap-use-after-free\n"
    . "x.c:1:2: runtime error: signed integer overflow\n");
is(scalar(my @p = $t2->log_problems), 3, 'log check finds alert and sanitizer reports');
$t2->ignore_log(qr/AddressSanitizer|runtime error/);
is(scalar(@p = $t2->log_problems), 1, 'ignore_log excuses lines');

# nginx ran, so an error.log that is not there is a problem too

$t->stop;
my $td_log = "$td/error.log";
rename $td_log, "$td_log.away" or die "rename: $!";
@p = $t->log_problems;
rename "$td_log.away", $td_log or die "rename: $!";
ok(grep({ /^error\.log: missing/ } @p), 'log check: a missing error.log is a problem')
    or diag(explain \@p);

###############################################################################

my ($rc, $out) = $t->config_test;
is($rc, 0, 'config_test: good configuration') or diag($out);
$t->write_file('nginx.conf', $t->read_file('nginx.conf') . "\nno_such_directive;\n");
($rc, $out) = $t->config_test;
like($out, qr/\[emerg\].*no_such_directive/, 'config_test: bad configuration reported');

kill 'TERM', $bpid;
waitpid($bpid, 0);

###############################################################################

# A line based IMAP server good enough for nginx's IMAP proxy: answers the
# literal continuations of LOGIN, then OK to every command.
sub fake_imap_backend {
    my ($listen) = @_;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    while (my $s = $listen->accept) {
        $s->autoflush(1);
        print $s "* OK fake IMAP ready\r\n";
        my $cmd = '';
        while (my $line = <$s>) {
            $cmd .= $line;
            if ($line =~ /\{(\d+)\}\r\n\z/) {
                print $s "+ go on\r\n";
                my $lit = '';
                read($s, $lit, $1);
                $cmd .= $lit;
                next;
            }
            my ($tag, $verb) = $cmd =~ /^(\S+)\s+(\S+)/;
            $cmd = '';
            next unless defined $verb;
            if (uc $verb eq 'LOGOUT') {
                print $s "* BYE\r\n$tag OK fake LOGOUT\r\n";
                last;
            }
            print $s "$tag OK fake " . uc($verb) . "\r\n";
        }
        close $s;
    }
}
