#!/usr/bin/perl

# The account that auth_http decides on is the account that the backend
# logs in as.  The stream "to" must be a domain; an authcid is a localpart
# or "localpart@domain" of the stream's domain; the localpart goes to
# auth_http and to the backend in its canonical form (fullwidth ASCII
# mapped to ASCII, lowercase); what cannot be mapped safely is refused
# and never reaches auth_http.  The backend is a real Prosody, the auth
# endpoint nginx's http module; it refuses mallory, whatever the
# password.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use XT::Nginx;
use XT::Prosody;
use XT::XMPP;
use XT::XmppProxy;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

my $p = XT::Prosody->new(dir => $t->testdir . '/prosody',
    domains => ['example.com'],
    users => [['alice', 'example.com', 'alice-pw'],
              ['mallory', 'example.com', 'mallory-pw']]);

$t->gen_cert('xmpp', cn => 'example.com');
$t->write_file_expand('nginx.conf', XT::XmppProxy::conf(
    backend => $p->port,
    mail => 'max_errors 100;',
    auth => <<'EOF',
            if ($http_auth_user = "mallory@example.com") {
                add_header Auth-Status "Account disabled";
                add_header Auth-Error-Code account-disabled;
                return 204;
            }
EOF
));
$t->run();
$t->plan(27);

my $sport = $t->port(5223);

my $SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";

# login($authcid, $pass[, $authzid[, $to]]): a direct TLS stream, one
# PLAIN attempt; returns nginx's (or the backend's) answer and the
# auth_http requests it caused, as [user, pass] pairs
sub login {
    my ($user, $pass, $authzid, $to) = @_;
    my $n0 = () = XT::XmppProxy::auth_log($t);
    my $c = XT::XMPP->new(port => $sport, ssl => 1) or die $XT::XMPP::ERROR;
    $c->open_stream($to // 'example.com');
    my $h = $c->read_element // '';
    my $f = $c->read_element // '';
    my $r = $h . $f;
    if ($f =~ /<stream:features/) {
        $c->auth_plain($user, $pass, $authzid);
        $r = $c->read_element // '';
        if ($r =~ /^<success/) {
            $c->open_stream('example.com');
            $c->read_element;
            $c->read_element;
            $c->send("<iq type='set' id='b1'><bind"
                . " xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                . "<resource>id</resource></bind></iq>");
            $r .= $c->read_element // '';
        }
    }
    $c->close;
    my @log = XT::XmppProxy::auth_log($t);
    # the access log is written when the request ends: wait a moment
    for (1 .. 20) {
        last if @log > $n0 || $r !~ /^<success|account-disabled/;
        select(undef, undef, undef, 0.05);
        @log = XT::XmppProxy::auth_log($t);
    }
    return ($r, map { [$_->[1], $_->[2]] } @log[$n0 .. $#log]);
}

sub users { join ',', map { $_->[0] } @_ }

###############################################################################

# the finding: mallory is refused, but a fullwidth "m" made auth_http see
# another name while Prosody's nodeprep logged in mallory

my ($r, @req) = login('mallory', 'mallory-pw');
like($r, qr{<account-disabled/>}, 'mallory refused');

($r, @req) = login("\xef\xbd\x8dallory", 'mallory-pw');
like($r, qr{<account-disabled/>}, 'fullwidth m: refused as mallory');
is(users(@req), 'mallory@example.com', 'fullwidth m: auth_http saw mallory');

($r, @req) = login('MALLORY', 'mallory-pw');
like($r, qr{<account-disabled/>}, 'uppercase: refused as mallory');

($r, @req) = login('mallory@example.com@example.com', 'mallory-pw');
like($r, qr{<failure $SASL><malformed-request/></failure>},
    'two "@": malformed-request');
is(scalar @req, 0, 'two "@": no auth_http request');

($r, @req) = login('mallory@EXAMPLE.COM', 'mallory-pw');
like($r, qr{<account-disabled/>}, 'JID form, domain in uppercase');

# a JID of another domain is not an account of this stream

($r, @req) = login('alice@other.test', 'alice-pw');
like($r, qr{<failure $SASL><not-authorized/></failure>},
    'other domain: not-authorized');
is(scalar @req, 0, 'other domain: no auth_http request');

# what nginx cannot map safely is refused, not passed on

for my $case (["alic\xc3\xa9", 'non-ASCII letter'],
    ["alice\xef\xbc\xa0example.com", 'fullwidth "@"'],
    ["al ice", 'space'], ["al/ice", 'slash'], ["alice\xff", 'invalid UTF-8'])
{
    ($r, @req) = login($case->[0], 'alice-pw');
    like($r, qr{<failure $SASL><malformed-request/></failure>},
        "$case->[1]: refused");
    is(scalar @req, 0, "$case->[1]: no auth_http request");
}

# the canonical name is what the backend logs in as

($r, @req) = login('ALICE', 'alice-pw');
like($r, qr{<jid>alice\@example\.com/id</jid>}, 'ALICE logs in as alice');
is(users(@req), 'alice@example.com', 'ALICE: auth_http saw alice');

($r, @req) = login("\xef\xbc\xa1\xef\xbc\xac\xef\xbc\xa9\xef\xbc\xa3\xef\xbc\xa5"
    . '@Example.Com', 'alice-pw');
like($r, qr{<jid>alice\@example\.com/id</jid>},
    'fullwidth ALICE@Example.Com logs in as alice');

($r, @req) = login('alice', 'alice-pw', 'Alice@EXAMPLE.com');
like($r, qr{<jid>alice\@example\.com/id</jid>}, 'authzid in another case');

($r, @req) = login('alice', 'alice-pw', 'mallory@example.com');
like($r, qr{<failure $SASL><invalid-authzid/></failure>},
    'authzid of another account');

# the stream "to" is a domain, checked before anything else

($r, @req) = login('alice', 'alice-pw', undef, 'alice@example.com');
like($r, qr{<stream:error><host-unknown }, '"to" with "@": host-unknown');

($r, @req) = login('alice', 'alice-pw', undef, 'example.com/res');
like($r, qr{<stream:error><host-unknown }, '"to" with "/": host-unknown');

($r, @req) = login('alice', 'alice-pw', undef, 'EXAMPLE.com.');
like($r, qr{<jid>alice\@example\.com/id</jid>},
    '"to" in uppercase with a final dot');

###############################################################################
