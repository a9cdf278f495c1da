#!/usr/bin/perl

# Net::XMPP (libnet-xmpp-perl, on XML::Stream) as an application would use
# it; see README for the convention.  "tls" mode is XML::Stream's legacy
# "ssl" (TLS from the first byte).

use strict;
use warnings;

use Getopt::Long;
use Net::XMPP;
use Time::HiRes qw(time);

$| = 1;
my %o = (timeout => 20);
GetOptions(\%o, 'host=s', 'port=i', 'mode=s', 'jid=s', 'password=s', 'to=s',
    'body=s', 'expect=s', 'timeout=f', 'debug') or fail(2, 'usage');
sub fail { print "FAIL $_[1]\n"; exit $_[0] }

# XML::Stream's StartTLS warns about undefined values it does not use
$SIG{__WARN__} = sub { print STDERR @_ if $o{debug} || $_[0] !~ m{XML/Stream\.pm} };

my ($user, $domain) = split /\@/, $o{jid}, 2;
my $client = Net::XMPP::Client->new($o{debug} ? (debuglevel => 2) : ());

my $got;
$client->SetCallBacks(message => sub {
    my ($sid, $msg) = @_;
    my $body = $msg->GetBody // '';
    if ($body eq $o{expect}) {
        $got = $msg->GetFrom;
    }
});

my $status = $client->Connect(
    hostname      => $o{host},
    port          => $o{port},
    componentname => $domain,
    timeout       => $o{timeout},
    ssl_verify    => 0x00,
    ($o{mode} eq 'tls' ? (ssl => 1) : (tls => 1)),
);
fail(3, "connect: " . ($client->GetErrorCode // 'no connection')) unless defined $status;

# the stream must be encrypted before the password goes out
my $sock = $client->{STREAM}->GetSock($client->{SESSION}{id});
fail(3, 'connection is not encrypted (no STARTTLS?)')
    unless $sock && ref($sock) =~ /SSL/;

# Net::XMPP binds inside AuthSend() and throws the answer away: keep it
my $bound = '';
{
    no warnings 'redefine';
    my $orig = \&Net::XMPP::Protocol::BindResource;
    *Net::XMPP::Protocol::BindResource = sub {
        my $r = $orig->(@_);
        ($bound) = ($r ? $r->GetXML : '') =~ m{<jid>([^<]+)</jid>};
        return $r;
    };
}

my @r = $client->AuthSend(username => $user, password => $o{password},
    resource => 'netxmpp');
fail(4, "auth: @r") unless $r[0] && $r[0] eq 'ok';

fail(5, 'no resource bound') unless $bound;
print "BOUND $bound\n";
$client->PresenceSend();
$client->MessageSend(to => $o{to}, body => $o{body}, type => 'chat');
print "SENT\n";

my $end = time() + $o{timeout};
while (!$got && time() < $end) {
    defined $client->Process(0.2) or fail(3, 'connection lost');
}
fail(7, 'timeout') unless $got;
print "RECEIVED $got $o{expect}\n";
$client->Disconnect();
exit 0;
