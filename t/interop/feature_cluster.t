#!/usr/bin/perl

# Interop: two nginx in front of an ejabberd cluster.  Two ejabberd 23.01
# nodes (XT::Ejabberd::cluster: ejabberd1@127.0.0.2 and
# ejabberd2@127.0.0.3, joined with "ejabberdctl join_cluster", Mnesia
# shared: the users are registered once) behind two nginx, each with
# conf/auth-http-cluster.conf as its auth_http endpoint (only the
# addresses and the listen port replaced): users spread by a hash of
# Auth-User, failover to the live node.  Raw clients (XT::XMPP) log in
# with STARTTLS and SASL PLAIN; each session is checked from ejabberd's
# side (user_sessions_info: the node).
#
#   - both endpoints send every user to the same node, and both nodes get
#     some of them;
#   - a user on node 1 (through nginx A) and one on node 2 (through nginx
#     B) exchange messages both ways;
#   - node 1 is stopped gracefully: its clients get ejabberd's stream
#     error through nginx, then the close.  ejabberd 23.01 ends the
#     sessions of a node that stops with <reset/> (a hint to connect
#     again), not <system-shutdown/>, and sends no </stream:stream>
#     (most of the time: the same without nginx); a message the client
#     got but did not acknowledge (XEP-0198) comes back to its sender as
#     an error; the session on node 2 lives on.  On a loaded machine
#     ejabberd may kill a session before it closed it (its shutdown is
#     racy): the node's log tells, and the client then gets nothing
#     from nginx either (and the sender may get no bounce);
#   - the client of node 1 had XEP-0198 enabled with resumption: it logs
#     in again (lands on node 2: failover), asks to resume, gets
#     <failed><item-not-found/></failed> (the session died with its
#     node), binds anew and is online on node 2; a new login of a user
#     whose node is node 1 also goes to node 2; the two exchange messages
#     again with the user on node 2;
#   - both nodes down: auth_http answers with a temporary failure.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);

use XT::Ejabberd;
use XT::Interop ();
use XT::Nginx;
use XT::XMPP;

my $why = XT::Ejabberd::available();
XT::Interop::need(!$why, "ejabberd ($why)");

my $DOM = 'c.test';
# the hash ring depends on the nodes' (random) ports: with 20 users,
# fewer than 2 on node 1 or none on node 2 is a chance of 2e-5
my @USERS = map { "u$_" } 1 .. 20;

my @ngx = map { XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/) } 1 .. 2;
my $dir = $ngx[0]->testdir;
chmod 0755, $dir;
my $hport = XT::Nginx::free_port();
my @node = XT::Ejabberd::cluster(dir => "$dir/cluster", nodes => 2,
    domains => [$DOM], http_port => $hport,
    users => [map { [$_, $DOM, "$_-pw"] } @USERS]);
my %by_port = map { $node[$_]->port => $_ + 1 } 0 .. 1;

# the operator's file, with the test's addresses
open(my $fh, '<', XT::Nginx::repo_root() . '/conf/auth-http-cluster.conf')
    or die $!;
my $auth = join '', <$fh>;
for my $i (1, 2) {
    my ($e, $ip) = ($node[$i - 1], "10.0.0.$i");
    my $http = $e->dist_ip . ":$hport";
    my ($ip_re, $http_re) = (quotemeta($ip), quotemeta($http));
    $auth =~ s/\Q$ip_re\E:5280\$/$http_re\$/ or die "no map entry $i";
    $auth =~ s/\Q$ip\E:5222;/127.0.0.1:@{[$e->port]};/ or die "no c2s $i";
    $auth =~ s/\Q$ip\E:5280(?=\s+max_fails)/$http/ or die "no server $i";
}
$auth =~ s/listen\s+127\.0\.0\.1:9000;/listen 127.0.0.1:%%PORT_9000%%;/
    or die 'no listen';

for my $t (@ngx) {
    $t->gen_cert('xmpp', cn => $DOM);
    $t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
$auth
}

mail {
    auth_http 127.0.0.1:%%PORT_9000%%/auth;
    server_name proxy.test;

    ssl_certificate %%TESTDIR%%/xmpp.crt;
    ssl_certificate_key %%TESTDIR%%/xmpp.key;

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls only;
    }
}
EOF
    $t->run();
}

###############################################################################

# where each endpoint sends each user
my %home;
for my $u (@USERS) {
    my @p = map { (ask($_, "$u\@$DOM") =~ /^Auth-Port: (\d+)\r$/m)[0] // '' } @ngx;
    $home{$u} = $p[0] eq $p[1] ? $by_port{$p[0]} // 0 : -1;
}
is(scalar(grep { $home{$_} <= 0 } @USERS), 0,
    'both endpoints send each user to the same node')
    or diag(explain(\%home));
my @on1 = grep { $home{$_} == 1 } @USERS;
my @on2 = grep { $home{$_} == 2 } @USERS;
ok(@on1 >= 2 && @on2 >= 1, 'the hash spreads users over both nodes')
    or diag("node 1: @on1; node 2: @on2");
my ($alice, $dave, $bob) = ($on1[0], $on1[1] // 'u1', $on2[0] // 'u2');

# alice through nginx A, bob through nginx B
my $a = session($ngx[0], $alice, sm => 1);
my $b = session($ngx[1], $bob);
ok($a && $b, 'both log in') or diag($XT::XMPP::ERROR);
ok($a->{sm_id}, 'XEP-0198 enabled with resumption for alice');
like(node_of($alice), qr/\@127\.0\.0\.2\b/, 'alice on node 1');
like(node_of($bob), qr/\@127\.0\.0\.3\b/, 'bob on node 2');

ok(chat($a, $b, 'from node 1'), 'node 1 -> node 2, nginx A -> nginx B');
ok(chat($b, $a, 'from node 2'), 'node 2 -> node 1, nginx B -> nginx A');

# node 1 goes down: the stream error through nginx, then the close
my $t0 = time();
$node[0]->stop(graceful => 1);
ok(!$node[0]->alive && !$node[0]->killed,
    'node 1 stopped (shut down by itself, not killed)');
# ejabberd's own shutdown has a race: ejabberd_sm tells each session to
# send the stream error and stop, asynchronously, and the application
# then stops, which kills the processes that are left.  On a loaded
# machine a session may be killed before it got to it: nothing is sent
# and its XEP-0198 queue is lost (the same without nginx).  The node's
# log says which it was ("Closing c2s session ... reset" comes from the
# session's own close); either way alice gets exactly what the node sent.
my $closed = $node[0]->log
    =~ /Closing c2s session for \Q$alice\E\@\Q$DOM\E\/\S+: Stream closed by local host: reset/;
my $err = $a->read_until(qr{</stream:error>}, $closed ? 20 : 5) // '';
my $RESET = qr{<stream:error><reset xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>};
if ($closed) {
    like($err, qr{^$RESET$}, 'alice: stream error <reset/>')
        or diag(XT::XMPP::show($err . $a->buffer));
} else {
    note('node 1 killed alice\'s session before it closed it'
        . ' (ejabberd\'s shutdown race): no stream error, no bounce');
    like($err . $a->buffer, qr{^(?:$RESET)?\s*$},
        'alice: nothing but what the node sent (killed: nothing)')
        or diag(XT::XMPP::show($err . $a->buffer));
}
ok($a->eof_within(10), 'alice: then nginx closes the connection');
like($a->buffer, qr{^\s*(?:</stream:stream>)?$},
    'alice: nothing else (but the end of the stream)');

# the message alice got but did not acknowledge (XEP-0198) comes back to
# bob as an error from her old session (when the session closed itself)
my $bounce = $b->read_until(qr{</message>}, $closed ? 10 : 3) // '';
if ($closed) {
    like($bounce, qr{^<message\b(?=[^>]*\btype='error')(?=[^>]*\bfrom='\Q$a->{jid}\E')[^>]*>.*<service-unavailable\b}s,
        'bob: the unacknowledged message back, <service-unavailable/>')
        or diag(XT::XMPP::show($bounce . $b->buffer));
} else {
    like($bounce . $b->buffer,
        qr{^(?:<message\b[^>]*\btype='error'.*</message>)?\s*$}s,
        'bob: at most the bounce (the queue may have died with the session)')
        or diag(XT::XMPP::show($bounce . $b->buffer));
}
note(sprintf 'stop to close: %.1f s', time() - $t0);

ok(chat($b, undef, 'alone'), 'bob on node 2 still online');

# alice again (through nginx A): auth_http fails over to node 2; the
# XEP-0198 resumption fails, she binds anew
$a = session($ngx[0], $alice, resume => $a->{sm_id});
ok($a, 'alice logs in again') or diag($XT::XMPP::ERROR);
like($a->{resumed} // '', qr/^<failed\b.*<item-not-found\b/s,
    'resumption: <failed><item-not-found/></failed>');
ok($a->{jid}, 'alice binds a new session');
like(node_of($alice), qr/\@127\.0\.0\.3\b/, 'alice now on node 2');

# dave, whose node is node 1, logs in: node 2 too
my $d = session($ngx[1], $dave);
ok($d, 'dave (hashed to node 1) logs in');
like(node_of($dave), qr/\@127\.0\.0\.3\b/, 'dave on node 2');
like(ask($ngx[0], "$dave\@$DOM"), qr/^Auth-Port: ${\ $node[1]->port}\r$/m,
    'auth_http: node 1 users to node 2 while it is down');

ok(chat($a, $b, 'again 1'), 'alice -> bob after the failover');
ok(chat($b, $a, 'again 2'), 'bob -> alice after the failover');
ok(chat($d, $a, 'dave'), 'dave -> alice');

# what the nodes logged
like($node[0]->log, qr/\b\Q$alice\E\@\Q$DOM\E\b/, 'node 1 had alice');
like($node[1]->log, qr/Opened c2s session for \Q$alice\E\@\Q$DOM\E/i,
    'node 2 has alice');

# no node up: a temporary failure, the client told to wait
$node[1]->stop;
my $down = ask($ngx[1], "$bob\@$DOM");
like($down, qr/^Auth-Status: Temporary server failure\r$/m,
    'both nodes down: Auth-Status a temporary failure');
like($down, qr/^Auth-Wait: 3\r$/m, 'both nodes down: Auth-Wait');
like($down, qr/^Auth-Error-Code: temporary-auth-failure\r$/m,
    'both nodes down: <temporary-auth-failure/>');
unlike($down, qr/^Auth-(?:Server|Port): \S/m, 'both nodes down: no backend');


my @log = map { $_->read_file('error.log') } @ngx;
like($log[0], qr/\Q$alice\E\@\Q$DOM\E.*upstream: 127\.0\.0\.1:${\ $node[0]->port}/,
    'nginx A: alice to node 1');
like($log[0], qr/\Q$alice\E\@\Q$DOM\E.*upstream: 127\.0\.0\.1:${\ $node[1]->port}/,
    'nginx A: alice to node 2');
like($log[1], qr/\Q$bob\E\@\Q$DOM\E.*upstream: 127\.0\.0\.1:${\ $node[1]->port}/,
    'nginx B: bob to node 2');

$_->close for grep { $_ } $a, $b, $d;
$ngx[1]->check_logs;
$ngx[0]->done_testing;

###############################################################################

# ask($t, $user): the auth endpoint's answer for a c2s PLAIN login
sub ask {
    my ($t, $user) = @_;
    my $s = IO::Socket::INET->new('127.0.0.1:' . $t->port(9000)) or die $!;
    print $s "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\n"
        . "Auth-User: $user\r\nAuth-Pass: x\r\nAuth-Protocol: xmpp\r\n\r\n";
    local $/;
    return scalar <$s>;
}

# node_of($user): the node of the user's session (user_sessions_info, on
# whichever node is up), once there is one
sub node_of {
    my ($user) = @_;
    my ($e) = grep { $_->alive } @node;
    my $end = time() + 10;
    while (time() < $end) {
        my @l = grep { /\S/ } split /\n/, $e->sessions($user, $DOM);
        return join ' ', map { (split /\t/)[4] // $_ } @l if @l == 1;
        sleep 0.2;
    }
    return 'none';
}

# session($t, $user, sm => 1, resume => ID): a bound session through nginx
# (STARTTLS, PLAIN); sm: XEP-0198 with resumption; resume: ask to resume
# the stream ID first ({resumed}: the answer)
sub session {
    my ($t, $user, %o) = @_;
    my $c = XT::XMPP->new(port => $t->port(5222), timeout => 15) or return;
    my $fail = sub { $XT::XMPP::ERROR = "$user: $_[0]"; return };
    $c->tls_stream($DOM) or return $fail->($c->error);
    $c->auth_plain("$user\@$DOM", "$user-pw");
    my $s = $c->read_element // 'EOF';
    return $fail->(XT::XMPP::show($s)) unless $s =~ /^<success\b/;
    $c->open_stream($DOM);
    $c->read_element;
    my $f = $c->read_element // '';
    if ($o{resume}) {
        $c->send("<resume xmlns='urn:xmpp:sm:3' h='0' previd='$o{resume}'/>");
        $c->{resumed} = $c->read_element // 'EOF';
    }
    $c->send("<iq type='set' id='bind1'><bind"
        . " xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    my $r = $c->read_until(qr{</iq>}) // 'EOF';
    return $fail->('bind: ' . XT::XMPP::show($r)) unless $r =~ m{<jid>([^<]+)</jid>};
    $c->{jid} = $1;
    if ($o{sm}) {
        $c->send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
        my $e = $c->read_until(qr{<(?:enabled|failed)\b[^>]*>}) // '';
        ($c->{sm_id}) = $e =~ /\bid=['"]([^'"]+)/;
    }
    $c->send('<presence/>');
    $c->read_until(qr{<presence\b[^>]*/>|</presence>});    # its own, back
    return $c;
}

# chat($from, $to, $text): a message from one session to the other's full
# JID, received there; $to undef: to oneself
sub chat {
    my ($from, $to, $text) = @_;
    $to //= $from;
    return 0 unless $from && $to && $to->{jid};
    $from->send("<message to='$to->{jid}' type='chat'><body>$text</body></message>");
    my $end = time() + 15;
    my $got = '';
    while (time() < $end) {
        my $m = $to->read_until(qr{</message>}, $end - time()) // last;
        return 1 if $m =~ m{<body>\Q$text\E</body>};
        $got .= $m;
    }
    diag("$to->{jid} got: " . XT::XMPP::show($got . $to->buffer));
    return 0;
}
