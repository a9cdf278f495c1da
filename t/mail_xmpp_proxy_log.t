#!/usr/bin/perl

# What the backend sends before the relay, as nginx logs it: the elements
# quoted in "upstream rejected login", "upstream sent stream error" and
# "upstream sent unexpected element" are escaped, so that a line break in
# them cannot start a forged line of error.log.
#
# The backends are scripted fakes (XT::FakeServer): a real server does not
# put line breaks into its errors on request.  auth_http is nginx's own
# http module.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time sleep);

use XT::FakeServer;
use XT::Nginx;
use XT::XMPP;

$SIG{PIPE} = 'IGNORE';

my $t = XT::Nginx->new()->has(qw/mail xmpp http/);

my $NS = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";
my $SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";
my $UHDR = "<?xml version='1.0'?><stream:stream $NS id='b1'"
    . " from='example.com' version='1.0'>";
my $FEAT = "<stream:features><mechanisms $SASL><mechanism>PLAIN</mechanism>"
    . "</mechanisms></stream:features>";
my $FORGED = "\n2026/12/02 00:00:00 [error] 1#0: XT-FORGED";

my %backend;
for my $b (
    [failure => sub {
        my ($s, $f, $id) = @_;
        print $s $UHDR . $FEAT;
        $f->read_until($s, $id, qr{</auth>}) or return;
        print $s "<failure $SASL><not-authorized/><text>no$FORGED-1</text>"
            . "</failure>";
        $f->read_until($s, $id, qr{\z never}, 10);
    }],
    [error => sub {
        my ($s) = @_;
        print $s $UHDR . "<stream:error><host-unknown/><text>gone$FORGED-2"
            . "</text></stream:error></stream:stream>";
        sleep 1;
    }],
    [unexpected => sub {
        my ($s) = @_;
        print $s $UHDR . "<x>$FORGED-3</x>";
        sleep 1;
    }],
) {
    my ($name, $script) = @$b;
    $backend{$name} = XT::FakeServer->new(dir => $t->testdir . "/backend-$name",
        handler => sub {
            my ($s, $f, $id) = @_;
            $s->autoflush(1);
            $f->read_until($s, $id, qr{<stream:stream[^>]*>}) or return;
            $script->($s, $f, $id);
        });
}

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    map \$http_auth_user \$backend_port {
        ~^failure\@     @{[ $backend{failure}->port ]};
        ~^error\@       @{[ $backend{error}->port ]};
        ~^unexpected\@  @{[ $backend{unexpected}->port ]};
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;

        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$backend_port;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    timeout 5s;

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls off;
    }
}
EOF
$t->run();
$t->plan(4);

###############################################################################

for my $user (qw/failure error unexpected/) {
    my $c = XT::XMPP->new(port => $t->port(5222)) or die $XT::XMPP::ERROR;
    $c->send("<?xml version='1.0'?><stream:stream to='example.com'"
        . " version='1.0' $NS>");
    $c->read_element;
    $c->read_element;
    $c->send("<auth $SASL mechanism='PLAIN'>"
        . encode_base64("\0$user\0secret", '') . '</auth>');
    $c->read_until(qr{</stream:stream>|</failure>}, 5);
}

my $log = '';
my $end = time() + 5;
while (time() < $end) {
    $log = $t->read_file('error.log') // '';
    last if 3 == (() = $log =~ /upstream (?:rejected login|sent)/g);
    sleep 0.05;
}

like($log, qr/upstream rejected login: "<failure [^\n]*no\\x0A2026[^\n]*XT-FORGED-1/,
    'rejected login: the backend\'s failure logged escaped');
like($log, qr/upstream sent stream error "<stream:error>[^\n]*\\x0A2026[^\n]*XT-FORGED-2/,
    'stream error: logged escaped');
like($log, qr/upstream sent unexpected element "<x>\\x0A2026[^\n]*XT-FORGED-3/,
    'unexpected element: logged escaped');
ok(!grep({ /XT-FORGED/ && !/upstream (?:rejected login|sent)/ }
    split /\n/, $log), 'no line of error.log written by a backend');

###############################################################################
