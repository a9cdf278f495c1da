#!/usr/bin/perl

# Interop: routing by auth_http.  The auth endpoint (an http block of the
# same nginx, a map on $http_auth_user) sends USER@a.test to backend A
# (Prosody) and USER@b.test to backend B (ejabberd).  Both backends host
# both domains with the same accounts, so a wrong route would still log
# in: each session is checked from the server's side (ejabberd:
# "ejabberdctl user_sessions_info"; Prosody: its log, and a message that
# Prosody itself delivers to the session).  Then B goes down: bob@b.test
# gets <failure><temporary-auth-failure/></failure> while alice@a.test
# still logs in.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use XT::Interop;

my $ix = XT::Interop->new(
    name     => 'routing by auth_http',
    backends => ['prosody', 'ejabberd'],
    domains  => { prosody => ['a.test', 'b.test'], ejabberd => ['a.test', 'b.test'] },
    users    => ['alice', 'bob'],
    routes   => { 'a.test' => 'prosody', 'b.test' => 'ejabberd' },
);
my ($p, $e) = ($ix->prosody, $ix->ejabberd);

# who goes where
my %route = (prosody => ['alice', 'a.test'], ejabberd => ['bob', 'b.test']);

###############################################################################

for my $b ('prosody', 'ejabberd') {
    my ($user, $dom) = @{ $route{$b} };
    for my $mode ($ix->modes) {
        $ix->cell($b, $mode, sub {
            my $res = "route-$mode";
            my $jid = "$user\@$dom";
            my $label = "$jid " . $ix->mode_title($mode);
            my $plog0 = length $p->log;
            my $c = eval { $ix->peer_login($user, $b, domain => $dom, mode => $mode,
                resource => $res) };
            ok($c, "$label: logged in through nginx") or diag($@);
            is($c && $c->{jid}, "$user\@$dom/$res", "$label: bound");
            # a moment for Prosody's log line when the session is there
            my $plog = $b eq 'prosody'
                ? wait_log($p, $plog0, qr/\tAuthenticated as \Q$jid\E\n/)
                : substr($p->log, $plog0);
            my $esess = $e->sessions($user, $dom);

            if ($b eq 'prosody') {
                like($plog, qr/\tAuthenticated as \Q$jid\E\n/,
                    "$label: Prosody (A) authenticated the session");
                unlike($esess, qr/\t\Q$res\E\t/, "$label: not on ejabberd (B)");
                # Prosody delivers a message from a local client (straight to
                # Prosody, no nginx) to the session
                my $tok = XT::Interop::token();
                my $direct = eval { $ix->peer_login('bob', 'prosody', domain => $dom,
                    mode => 'starttls', port => $p->port, resource => 'direct',
                    ) };
                ok($direct, "$label: a client straight on Prosody") or diag($@);
                XT::Interop::peer_send($direct, "$user\@$dom/$res", "via A $tok")
                    if $direct;
                my $m = $c && XT::Interop::peer_poll($c, 5);
                is($m && $m->[1], "via A $tok",
                    "$label: Prosody delivered a message to the session");
                $direct->close if $direct;
            } else {
                like($esess, qr/^\S+\t\S+\t\d+\t\S+\t\S+\t\d+\t\S+\t\Q$res\E\t/m,
                    "$label: ejabberd (B) has the session");
                unlike($plog, qr/\tAuthenticated as \Q$jid\E\n/,
                    "$label: Prosody (A) did not see it");
            }
            my @auth = grep { $_->{user} eq "$user\@$dom" } $ix->auth_log;
            is(@auth && $auth[-1]{port}, $ix->backend($b)->port,
                "$label: auth_http answered with ${b}'s port");
            $c->close if $c;
        });
    }
}

sub wait_log {
    my ($backend, $from, $re) = @_;
    my $end = time() + 3;
    my $log;
    while (1) {
        $log = substr($backend->log, $from);
        last if $log =~ $re || time() > $end;
        select(undef, undef, undef, 0.05);
    }
    return $log;
}

###############################################################################

# backend B down: its user gets temporary-auth-failure, A's user still logs in

$e->stop;

for my $mode ($ix->modes) {
    $ix->cell('ejabberd', $mode, sub {
        my $label = 'B down, ' . $ix->mode_title($mode);
        my $c = eval { XT::Interop::raw_ready($ix->port($mode), $mode, 'b.test') };
        ok($c, "$label: bob\@b.test connects") or return diag($@);
        $c->auth_plain('bob', 'bob-pw');
        my $f = $c->read_element // 'EOF';
        is($f, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            . "<temporary-auth-failure/></failure>",
            "$label: bob\@b.test gets temporary-auth-failure");
        like($c->read_element // 'EOF', qr/^<stream:error>/, "$label: then a stream error");
        ok($c->eof_within(5), "$label: and the stream is closed");

        my $a = eval { $ix->peer_login('alice', 'prosody', domain => 'a.test',
            mode => $mode, resource => "still-$mode") };
        ok($a && $a->{jid} eq "alice\@a.test/still-$mode",
            "$label: alice\@a.test still logs in") or diag($@);
        $a->close if $a;
    }, name => 'routing: a backend down');
}

$ix->done;
