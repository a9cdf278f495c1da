#!/usr/bin/perl

# XT::Dnsmasq: a private dnsmasq on a free loopback port answers the SRV
# and address records it was given, over UDP and TCP, says NXDOMAIN for
# other names of its domains, answers nothing it was not given, logs the
# queries, and is gone after stop().

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use File::Temp qw(tempdir);
use Net::DNS;
use Test::More;

use XT::Dnsmasq;

if (my $why = XT::Dnsmasq::available()) {
    plan(skip_all => $why) unless ($ENV{CI} // '') =~ /^(?:1|true|yes)$/i;
}

plan(tests => 10);

my $dir = tempdir('xt-dns-XXXXXXXX', TMPDIR => 1,
    CLEANUP => !$ENV{TEST_NGINX_LEAVE});

my $dns = XT::Dnsmasq->new(dir => "$dir/dns", domains => ['test'],
    a => { 'l.test' => '127.1.2.3', 'xmpp.r.test' => '127.1.2.4' },
    srv => [
        ['_xmpp-server._tcp.r.test', 'xmpp.r.test', 5269, 10, 5],
        ['_xmpps-server._tcp.r.test', 'xmpp.r.test', 5270, 5, 0],
    ]);

sub resolver {
    my (%o) = @_;
    return Net::DNS::Resolver->new(nameservers => ['127.0.0.1'],
        port => $dns->port, recurse => 0, retry => 1, udp_timeout => 2,
        tcp_timeout => 2, %o);
}

my $r = resolver();
my $q = $r->query('l.test', 'A');
is($q && join(',', map { $_->address } grep { $_->type eq 'A' } $q->answer),
    '127.1.2.3', 'A record');

$q = $r->query('_xmpp-server._tcp.r.test', 'SRV');
my ($srv) = $q ? grep { $_->type eq 'SRV' } $q->answer : ();
is($srv && join(' ', $srv->priority, $srv->weight, $srv->port, $srv->target),
    '10 5 5269 xmpp.r.test', 'SRV record');

$q = $r->query('_xmpps-server._tcp.r.test', 'SRV');
($srv) = $q ? grep { $_->type eq 'SRV' } $q->answer : ();
is($srv && join(' ', $srv->priority, $srv->weight, $srv->port, $srv->target),
    '5 0 5270 xmpp.r.test', 'SRV record, direct TLS');

$q = resolver(usevc => 1)->query('l.test', 'A');
is($q && ($q->answer)[0]->address, '127.1.2.3', 'over TCP too');

my $p = $r->send('nothere.test', 'A');
is($p && $p->header->rcode, 'NXDOMAIN', 'another name of the domain: NXDOMAIN');

$p = $r->send('example.com', 'A');
ok($p && !grep({ $_->type eq 'A' } $p->answer),
    'a name outside its domains: no answer');

$p = $r->send('_xmpp-server._tcp.l.test', 'SRV');
ok($p && !grep({ $_->type eq 'SRV' } $p->answer), 'no SRV where none given');

like($dns->log, qr/query\[SRV\] _xmpp-server\._tcp\.r\.test from 127\.0\.0\.1/,
    'queries are logged');

$dns->stop;
ok(!$dns->alive, 'stopped');
$p = resolver(retry => 1, udp_timeout => 1)->send('l.test', 'A');
ok(!$p || !$p->answer, 'no answer after stop');
