#!/usr/bin/perl

# The README's run command: auto/run starts nginx, its auth endpoint and a
# local Prosody with demo users; --smoke logs both demo users in through
# nginx with slixmpp and exchanges a message.  The same with --backend
# djabberd and djabberd-fastmail (DJabberd from ../shared/djabberd).  Runs
# on free ports so it does not collide with a running auto/run or other
# tests.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use File::Temp qw(tempdir);
use Test::More;

use XT::DJabberd;
use XT::Nginx qw(free_port);
use XT::Slixmpp;

my $root = XT::Nginx::repo_root();

plan(skip_all => 'prosody missing') unless -x '/usr/bin/prosody';
plan(skip_all => 'slixmpp missing') unless XT::Slixmpp::has_slixmpp();
plan(skip_all => 'TEST_NGINX_BINARY is not an auto/build tree')
    if $ENV{TEST_NGINX_BINARY} && $ENV{TEST_NGINX_BINARY} =~ /-asan|-noxmpp/;

my @backends = ('prosody', 'djabberd', 'djabberd-fastmail');
for my $tree (XT::DJabberd::trees()) {
    my $why = XT::DJabberd::available($tree);
    die "DJabberd $tree: $why\n" if $why;
}

plan(tests => 4 * @backends);

for my $backend (@backends) {
    my $dir = tempdir('xt-run-XXXXXXXX', TMPDIR => 1,
        CLEANUP => !$ENV{TEST_NGINX_LEAVE});

    local $ENV{XMPP_RUN_DIR} = $dir;
    local $ENV{XMPP_PORT} = free_port();
    local $ENV{XMPP_TLS_PORT} = free_port();
    local $ENV{XMPP_AUTH_PORT} = free_port();
    local $ENV{XMPP_BACKEND_PORT} = free_port();
    local $ENV{XMPP_BACKEND_S2S_PORT} = free_port();

    my @cmd = ("$root/auto/run", '--smoke', '--backend', $backend);
    push @cmd, $ENV{TEST_NGINX_VERSION} if $ENV{TEST_NGINX_VERSION};

    my $out = `@cmd 2>&1`;
    my $rc = $? >> 8;

    is($rc, 0, "$backend: auto/run --smoke") or diag($out);
    like($out, qr/smoke test passed/, "$backend: demo users exchanged messages");

    # a missing error.log is a failure, not a log without alerts
    my $log;
    if (open(my $fh, '<', "$dir/logs/error.log")) {
        $log = join '', <$fh>;
    }
    my $bad = qr/\[(?:alert|emerg)\]|exited on signal/;
    ok(defined $log && $log !~ $bad, "$backend: error.log written, no alerts in it")
        or diag(defined $log ? join("\n", grep { $_ =~ $bad } split /\n/, $log)
            : "no $dir/logs/error.log");
    like($log // '', qr/client authenticated with SCRAM-SHA-256-PLUS/,
        "$backend: a SCRAM-SHA-256-PLUS login in error.log");
}
