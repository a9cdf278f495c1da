#!/usr/bin/perl

# t/bench/scram.pl [N]: nginx CPU per login with SCRAM-SHA-256-PLUS
# (tls-exporter) and with SASL PLAIN, side by side in one run: the same
# nginx, the same real Prosody behind it, N logins each over direct TLS
# (TLS 1.3, full handshakes), alternating in rounds of 50.  The CPU is the
# nginx worker's user+system time from /proc before and after each round,
# so the client's own cost does not count.  Prints both figures and the
# ratio.  Not a test: run it by hand (auto/build first).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use POSIX ();
use Test::More;

use XT::Nginx;
use XT::Prosody;
use XT::Scram;
use XT::XMPP;
use XT::XmppProxy;

my $N = shift // 500;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);
my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ['example.com'],
    users => [['alice', 'example.com', 'alice-backend-pw']]);

$t->gen_cert('xmpp', cn => 'example.com');
$t->write_file_expand('nginx.conf', XT::XmppProxy::conf(
    backend => $p->port,
    mail => 'xmpp_auth plain scram-sha-256; ssl_protocols TLSv1.3;',
    scram => { 'alice@example.com' => ['alice-scram-pw', 'alice-backend-pw'] },
));
$t->run();

my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
chomp(my $worker = `pgrep -P ${\ $t->pid} | head -n 1`);

sub cpu {
    open(my $fh, '<', "/proc/$worker/stat") or die "no worker: $!";
    my @f = split ' ', (<$fh> =~ s/^.*\) //r);
    return ($f[11] + $f[12]) / $hz;
}

sub login {
    my ($how) = @_;
    my $c = XT::XMPP->new(port => $t->port(5223), ssl => 1)
        or die $XT::XMPP::ERROR;
    $c->open_stream('example.com');
    $c->read_element;
    $c->read_element;
    my $a;
    if ($how eq 'scram') {
        ($a) = XT::Scram::exchange($c);
    } else {
        $c->auth_plain('alice', 'alice-backend-pw');
        $a = $c->read_element // '';
    }
    die "login failed: $a\n" unless $a =~ /^<success/;
    $c->close;
}

my %cpu = (plain => 0, scram => 0);
for my $round (1 .. $N / 50) {
    for my $how ('plain', 'scram') {
        my $c0 = cpu();
        login($how) for 1 .. 50;
        $cpu{$how} += cpu() - $c0;
    }
}

printf "nginx CPU per login, %d logins each: PLAIN %.3f ms, "
    . "SCRAM-SHA-256-PLUS %.3f ms, ratio SCRAM/PLAIN %.2f\n", $N,
    1000 * $cpu{plain} / $N, 1000 * $cpu{scram} / $N,
    $cpu{plain} ? $cpu{scram} / $cpu{plain} : 0;

done_testing();
