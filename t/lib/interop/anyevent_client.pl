#!/usr/bin/perl

# AnyEvent::XMPP (libanyevent-xmpp-perl) as an application would use it;
# see README for the convention.  "tls" mode is its old_style_ssl (TLS from
# the first byte).  AnyEvent::TLS does not verify certificates by default.

use strict;
use warnings;

use AnyEvent;
use AnyEvent::XMPP::IM::Connection;
use AnyEvent::XMPP::IM::Message;
use Getopt::Long;

$| = 1;
my %o = (timeout => 20);
GetOptions(\%o, 'host=s', 'port=i', 'mode=s', 'jid=s', 'password=s', 'to=s',
    'body=s', 'expect=s', 'timeout=f', 'debug') or fail(2, 'usage');

my $done = AnyEvent->condvar;
my $code;
sub fail { print "FAIL $_[1]\n"; exit $_[0] }
sub finish {
    my ($c, $msg) = @_;
    return if defined $code;
    $code = $c;
    print "FAIL $msg\n" if defined $msg;
    $done->send;
}

my $con = AnyEvent::XMPP::IM::Connection->new(
    jid      => $o{jid},
    password => $o{password},
    host     => $o{host},
    port     => $o{port},
    resource => 'anyevent',
    ($o{mode} eq 'tls' ? (old_style_ssl => 1) : ()),
);

$con->reg_cb(
    session_ready => sub {
        my ($con) = @_;
        return finish(3, 'session without TLS') unless $con->{ssl_enabled};
        print "BOUND ", $con->jid, "\n";
        AnyEvent::XMPP::IM::Message->new(to => $o{to}, body => $o{body},
            type => 'chat')->send($con);
        print "SENT\n";
    },
    message => sub {
        my ($con, $msg) = @_;
        my $body = $msg->any_body // '';
        if ($body eq $o{expect}) {
            print "RECEIVED ", $msg->from, " $body\n";
            finish(0);
        }
    },
    sasl_error   => sub { finish(4, 'SASL error: ' . $_[1]->string) },
    bind_error   => sub { finish(5, 'bind error: ' . $_[1]->string) },
    stream_error => sub { finish(3, 'stream error: ' . $_[1]->string) },
    tls_error    => sub { finish(3, 'TLS error') },
    error        => sub { finish(3, 'error: ' . $_[1]->string) },
    disconnect   => sub { finish(3, "disconnected: $_[3]") },
    ($o{debug} ? (
        debug_send => sub { print STDERR "> $_[1]\n" },
        debug_recv => sub { print STDERR "< $_[1]\n" },
    ) : ()),
);

my $timer = AnyEvent->timer(after => $o{timeout}, cb => sub { finish(7, 'timeout') });
$con->connect;
$done->recv;
$con->disconnect('done') if $code == 0 && $con->is_connected;
exit $code;
