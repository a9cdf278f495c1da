#!/usr/bin/perl

# Interop: routing by auth_http between Prosody and DJabberd.  One nginx;
# the auth endpoint sends USER@a.test to Prosody and USER@d.test to
# DJabberd (upstream).  Both backends host both domains with the same
# accounts, so a wrong route would still log in: each session is checked
# from the server's side (Prosody: "Authenticated as" in its log;
# DJabberd: "Registering 'JID' to connection" in its log) and with a
# message that the backend itself delivers to the session, sent by a
# client connected straight to that backend.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;
use Time::HiRes qw(sleep time);

use XT::Interop;

my $ix = XT::Interop->new(
    name     => 'routing by auth_http, Prosody and DJabberd',
    backends => ['prosody', 'djabberd'],
    domains  => { prosody => ['a.test', 'd.test'],
                  djabberd => ['a.test', 'd.test'] },
    users    => ['alice', 'bob'],
    routes   => { 'a.test' => 'prosody', 'd.test' => 'djabberd' },
);
my %srv = (prosody => $ix->prosody, djabberd => $ix->backend('djabberd'));

# who goes where, and how each backend logs the session
my %route = (prosody => ['alice', 'a.test'], djabberd => ['bob', 'd.test']);
my %seen = (
    prosody  => sub { qr/\tAuthenticated as \Q$_[0]\E\n/ },
    djabberd => sub { qr/Registering '\Q$_[0]\E\/[^']+' to connection/ },
);
my %other = (prosody => 'djabberd', djabberd => 'prosody');

###############################################################################

for my $b ('prosody', 'djabberd') {
    my ($user, $dom) = @{ $route{$b} };
    my $o = $other{$b};
    for my $mode ($ix->modes) {
        $ix->cell($b, $mode, sub {
            my $res = "route-$mode";
            my $jid = "$user\@$dom";
            my $label = "$jid " . $ix->mode_title($mode);
            my %log0 = map { $_ => length $srv{$_}->log } keys %srv;

            my $c = eval { $ix->peer_login($user, $b, domain => $dom,
                mode => $mode, resource => $res) };
            ok($c, "$label: logged in through nginx") or diag($@);
            is($c && $c->{jid}, "$jid/$res", "$label: bound");

            like(wait_log($srv{$b}, $log0{$b}, $seen{$b}->($jid)),
                $seen{$b}->($jid), "$label: $b has the session");
            unlike(substr($srv{$o}->log, $log0{$o}), $seen{$o}->($jid),
                "$label: $o did not see it");

            # the backend delivers a message from a local client (straight
            # to the backend, no nginx) to the session
            my $tok = XT::Interop::token();
            my $peer = $user eq 'alice' ? 'bob' : 'alice';
            # (the suite's Prosody requires encryption, as in its stock
            # configuration)
            my $direct = XT::XMPP->login(port => $srv{$b}->port,
                domain => $dom, user => $peer, password => "$peer-pw",
                resource => 'direct', starttls => $b eq 'prosody');
            ok($direct, "$label: a client straight on $b")
                or diag($XT::XMPP::ERROR);
            XT::Interop::peer_send($direct, "$jid/$res", "via $b $tok")
                if $direct;
            my $m = $c && XT::Interop::peer_poll($c, 5);
            is($m && $m->[1], "via $b $tok",
                "$label: $b delivered a message to the session");
            $direct->close if $direct;

            my @auth = grep { $_->{user} eq $jid } $ix->auth_log;
            is(@auth && $auth[-1]{port}, $srv{$b}->port,
                "$label: auth_http answered with ${b}'s port");
            $c->close if $c;
        });
    }
}


sub wait_log {
    my ($server, $from, $re) = @_;
    my $end = time() + 3;
    my $log;
    while (1) {
        $log = substr($server->log, $from);
        last if $log =~ $re || time() > $end;
        sleep 0.05;
    }
    return $log;
}

$ix->done;
