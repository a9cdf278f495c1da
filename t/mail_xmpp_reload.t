#!/usr/bin/perl

# Reload and graceful stop with 200 spliced sessions: nginx -s reload while
# the sessions exchange messages through a real Prosody cuts none of them
# and loses no message; after nginx -s quit the old worker keeps serving
# them until the clients close their streams, then nginx exits.  A slow
# test of its own, so that prove -j runs it beside the others.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time sleep);

use XT::Nginx;
use XT::Prosody;
use XT::XMPP;
use XT::XmppProxy;

my $N = 200;
my @users = map { ["user$_", 'example.com', "pw$_"] } 1 .. 4;

my $t = XT::Nginx->new()->has(qw/mail xmpp http/);
my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ['example.com'], users => \@users);

$t->gen_cert('xmpp', cn => 'example.com');
my $conf = XT::XmppProxy::conf(backend => $p->port, starttls => 'off');
$conf =~ s/^events \{\n\}/events {\n    worker_connections 4096;\n}/m
    or die "no events block\n";
$t->write_file_expand('nginx.conf', $conf);
$t->run();
$t->plan(8);

my $port = $t->port(5222);
my $NS = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";
my $HDR = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0' $NS>";

###############################################################################

my @s;
for my $i (1 .. $N) {
    my $u = $users[$i % @users];
    push @s, session($u->[0], $u->[2], "r$i") // last;
}
is(scalar(@s), $N, "$N sessions logged in and bound through nginx");

round('before reload', 'a');

# messages in flight while nginx reloads, and more right after

$_->{c}->send(message($_, 'b')) for @s;
my $reloaded = $t->reload;
$_->{c}->send(message($_, 'c')) for @s;
ok($reloaded, 'reload done while the sessions are busy');
ok(receive('b') && receive('c'), 'no message lost across the reload');

round('after reload', 'd');

# graceful stop: the old worker serves the sessions until they end

kill 'QUIT', $t->{pid};
sleep 0.5;
round('after quit', 'e');
$_->{c}->send('</stream:stream>') for @s;
my $ended = 0;
for my $s (@s) {
    $ended++ if $s->{c}->eof_within(5);
}
is($ended, $N, 'streams closed by the clients are ended');

my $end = time() + 15;
sleep 0.1 while $t->alive && time() < $end;
ok(!$t->alive, 'nginx exits after the last session ended');

###############################################################################

sub session {
    my ($user, $pass, $res) = @_;
    my $c = XT::XMPP->new(port => $port, timeout => 10) or return;
    $c->send($HDR);
    $c->read_element;
    $c->read_element;
    $c->send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        . encode_base64("\0$user\0$pass", '') . '</auth>');
    ($c->read_element // '') =~ /^<success/ or return;
    $c->send($HDR);
    $c->read_element;
    $c->read_element;
    $c->send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        . "<resource>$res</resource></bind></iq>");
    my ($jid) = ($c->read_element // '') =~ m{<jid>([^<]+)</jid>} or return;
    return { c => $c, jid => $jid };
}

sub message {
    my ($s, $tag) = @_;
    return "<message to='$s->{jid}' type='chat'><body>$tag $s->{jid}</body></message>";
}

# receive($tag): every session gets its own message $tag
sub receive {
    my ($tag) = @_;
    my $ok = 0;
    for my $s (@s) {
        my $body = "<body>$tag $s->{jid}</body>";
        $ok++ if defined $s->{c}->read_until(qr/\Q$body\E/, 10);
    }
    diag("$tag: $ok of $N messages arrived") if $ok != $N;
    return $ok == $N;
}

sub round {
    my ($name, $tag) = @_;
    $_->{c}->send(message($_, $tag)) for @s;
    ok(receive($tag), "$name: all $N sessions exchange messages");
}
