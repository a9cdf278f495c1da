#!/usr/bin/perl

# Incoming server-to-server federation into DJabberd through nginx: a real
# Prosody R (r.test) federates with d.test, hosted by upstream DJabberd,
# and with f.test, hosted by FastMail's fork; the s2s address of both is
# nginx (STARTTLS required), which relays the dialback stream in plain TCP
# to the DJabberd of the domain.  DJabberd checks R's key by connecting to
# R itself (its fake s2s peer, XT::DJabberd's s2s_peers), and answers
# directly to R, not through nginx (outgoing s2s through nginx is not
# tested here).  Names resolve through R's own hosts file (its libunbound
# "hoststxt"), so the machine's resolver is not touched: d.test and f.test
# are nginx on 127.X.Y.2:5269, r.test is R on 127.X.Y.3:5269 (random X.Y,
# loopback only).  The fork's outgoing STARTTLS to R has a race of its own
# ($S2S_OUT_RACE below): an answer it loses so is sent again, and the test
# checks that each one lost was lost that way.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time);

use XT::DJabberd;
use XT::Nginx qw(loopback_net);
use XT::Prosody;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

# the tree of each domain
my @TREES = (['upstream', 'd.test'], ['fastmail', 'f.test']);

for my $tree (map { $_->[0] } @TREES) {
    my $why = XT::DJabberd::available($tree);
    plan(skip_all => "DJabberd ($tree): $why") if $why;
}

my $td = $t->testdir;
my $net = loopback_net(2, 3);
my ($nginx_ip, $r_ip) = ("$net.2", "$net.3");

# R finds each DJabberd domain at nginx; SRV lookups fail at once (a name
# server that is not there)

my $r = XT::Prosody->new(dir => "$td/r/prosody", domains => ['r.test'],
    users => [['alice', 'r.test', 'alice-pw']],
    extra => XT::Prosody::s2s_extra(dir => "$td/r", ip => $r_ip,
        hosts => [map { [$nginx_ip, $_->[1]] } @TREES],
        nameserver => "$net.9"));

my %d;
for (@TREES) {
    my ($tree, $dom) = @$_;
    $d{$dom} = XT::DJabberd->new(dir => "$td/$tree", tree => $tree,
        domains => [$dom], users => [['bob', $dom, 'bob-pw']], s2s => 1,
        s2s_peers => { 'r.test' => "$r_ip:5269" });
}

$t->gen_cert('default', cn => 'nginx.test');
$t->gen_cert($_->[1], cn => $_->[1]) for @TREES;

my $map_port = join('',
    map { "        $_->[1]   ${\ $d{$_->[1]}->s2s_port };\n" } @TREES);
my $map_ok = join('', map { "        $_->[1]   OK;\n" } @TREES);
my $certs = join('', map { "    xmpp_certificate $_->[1]"
    . " %%TESTDIR%%/$_->[1].crt %%TESTDIR%%/$_->[1].key;\n" } @TREES);

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    log_format auth '\$http_auth_protocol|\$http_auth_method|'
                    '\$http_auth_user|\$http_auth_xmpp_from|'
                    '\$http_auth_xmpp_to|\$http_auth_ssl_protocol';

    map \$http_auth_xmpp_to \$backend_port {
$map_port        default  "";
    }

    map \$http_auth_xmpp_to \$xt_status {
$map_ok        default  "Unknown domain";
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/auth.log auth;

        location = /auth {
            add_header Auth-Status \$xt_status;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$backend_port;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;

    ssl_certificate %%TESTDIR%%/default.crt;
    ssl_certificate_key %%TESTDIR%%/default.key;
$certs
    server {
        listen $nginx_ip:5269;
        protocol xmpp-server;
        starttls only;
    }
}
EOF
$t->run();
$t->plan(1 + 17 * @TREES);

###############################################################################

my $S2S_OUT_RACE = <<'TXT';
FastMail's fork answers through a new outgoing stream to R, and takes
STARTTLS when R offers it (upstream DJabberd does not).  Its ServerOut
handles a writable socket in the state 'want-starttls' (after it sent
<starttls/>) as if the TCP connect had just completed: it sends a new
stream header.  The watch for writability set for the connect is still
on until the first writable event after the stream header; when R's
features arrive before that event, the new header goes out in plain text
after <starttls/>, before <proceed/>.  R's TLS handshake reads it ("TLS
handshake error: wrong version number") and closes; the fork logs
"Connection error while connecting to r.test, giving up" and drops the
stanza.  A race in the fork (lib/DJabberd/Connection/ServerOut.pm,
event_write), outside nginx: the answer is sent again then, each time on
a new stream.
TXT

my $alice = XT::XMPP->login(port => $r->port, domain => 'r.test',
    user => 'alice', password => 'alice-pw');
ok($alice, 'alice logged in to R');

for (@TREES) {
    my ($tree, $dom) = @$_;
    my $d = $d{$dom};
    my $port = $d->s2s_port;
    my $n = "$tree ($dom)";

    # bob logs in to DJabberd's own c2s port, not through nginx
    my $bob = XT::XMPP->login(port => $d->port, domain => $dom,
        user => 'bob', password => 'bob-pw');
    ok($bob, "$n: bob logged in to DJabberd");
    $bob //= XT::XMPP->new(port => $d->port);

    $alice->send("<message to='bob\@$dom' type='chat' id='m-$tree'>"
        . "<body>hello $tree</body></message>");
    like($bob->read_until(qr{<body>hello $tree</body>}, 20) // '',
        qr/<message\b[^>]*from='alice\@r\.test\//,
        "$n: message r.test -> $dom through nginx arrived at bob");

    my $log = $d->log;

    # the stream that came through nginx: the one that brought R's key
    my $pair = qr/(?=[^>]*from='r\.test')(?=[^>]*to='\Q$dom\E')/;
    my ($in) = $log =~ /ServerIn (\d+) < <db:result\b$pair/;
    ok(defined $in, "$n: db:result from r.test to $dom at DJabberd's ServerPort");
    $in //= -1;
    like($log, qr/ServerIn New connection '$in' from 127\.0\.0\.1\n/,
        "$n: that stream is a TCP connection from nginx");
    like($log, qr/ServerIn $in < <(?:\w+:)?message\b[^>]*id='m-$tree'/,
        "$n: alice's message came on that stream");

    # DJabberd has no certificate: it offers no STARTTLS and reads plain
    # XML; the stream to nginx was encrypted (auth_http, error.log below)
    my ($feat) = $log
        =~ /ServerIn $in > [^\n]*(<stream:features>.*?<\/stream:features>)/;
    ok(defined $feat && $feat !~ /starttls/,
        "$n: DJabberd offered no STARTTLS to nginx (plain TCP)");

    # the key checked with R itself (the fake s2s peer), not through nginx
    like($log, qr/DialbackVerify Attempting to connect to '\Q$r_ip\E'/,
        "$n: DJabberd connected to R ($r_ip) to check the key");
    like($log, qr/DialbackVerify \d+ < <db:verify\b(?=[^>]*type='valid')$pair/,
        "$n: R confirmed its key");
    like($log,
        qr/Dialback result valid for connection $in\. +from=\Q$dom\E, to=r\.test/,
        "$n: DJabberd accepted the stream from r.test");

    # the answer: DJabberd connects to R directly; R checks DJabberd's key
    # through nginx, on the stream it has (XEP-0220 2.1.3)
    my ($got, @lost);
    for my $try (1 .. 20) {
        my $from = length $d->log;
        $bob->send("<message to='alice\@r.test' type='chat' id='a-$tree-$try'>"
            . "<body>answer $tree $try</body></message>");
        my $end = time() + 20;
        while (time() < $end) {
            $got = $alice->read_until(qr{<body>answer $tree $try</body>}, 0.2);
            last if $got;
            my $new = substr($d->log, $from);
            if ($new =~ /Connection error while connecting to r\.test, giving/) {
                push @lost, $new;
                last;
            }
        }
        last if $got || @lost < $try;
    }
    like($got // '', qr/<message\b[^>]*from='bob\@\Q$dom\E\//,
        "$n: answer $dom -> r.test arrived at alice");
    if ($tree eq 'fastmail') {
        # <starttls/>, then a new stream header, then <proceed/>
        my $hdr = '<\?xml[^\n]*<stream:stream\b[^\n]*\n';
        my $proceed = '[^\n]*ServerOut \1 < <proceed\b';
        my $race = qr/we can starttls\n[^\n]*ServerOut (\d+) > $hdr$proceed/;
        my $tls_errors = () = $r->log
            =~ /TLS handshake error: wrong version number/g;
        ok(!grep({ !/$race/ } @lost) && $tls_errors == @lost,
            "$n: every lost answer (" . scalar(@lost) . ") lost to the fork's"
            . " STARTTLS race") or diag($S2S_OUT_RACE);
        note(scalar(@lost) . " answer(s) lost to the race:\n$S2S_OUT_RACE")
            if @lost;
    } else {
        is(scalar @lost, 0, "$n: no answer lost");
    }

    $log = $d->log;
    like($log, qr/ServerOut Connecting to '\Q$r_ip\E' for 'r\.test'/,
        "$n: DJabberd's outgoing stream went directly to R");
    like($log, qr/ServerIn $in < <db:verify\b$pair/,
        "$n: R's check of DJabberd's key came through nginx");
    like($log, qr/Dialback verify valid for connection $in\./,
        "$n: DJabberd confirmed its key to R");

    # what auth_http and nginx saw
    my @auth = grep { $_->[4] eq $dom }
        map { [ split /\|/ ] } split /\n/, $t->read_file('auth.log');
    is($auth[0] && "@{$auth[0]}[0..4]",
        "xmpp-server external r.test r.test $dom",
        "$n: auth_http: Auth-Protocol, -Method, -User, -XMPP-From, -XMPP-To");
    ok(@auth && !grep({ $_->[5] !~ /^TLSv1\.[23]$/ } @auth),
        "$n: every stream of R to nginx encrypted (STARTTLS, TLS 1.2+)");
    my $relayed = qr/client logged in, client: \S+ using starttls, /;
    like($t->read_file('error.log'), qr/$relayed\Qserver: $nginx_ip:5269,\E
        \ login:\ "r\.test",\ upstream:\ 127\.0\.0\.1:$port\b/x,
        "$n: nginx logged the relayed session, with STARTTLS, to DJabberd");
}


###############################################################################
