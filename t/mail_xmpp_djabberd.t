#!/usr/bin/perl

# DJabberd behind nginx: upstream DJabberd (d.test) and FastMail's fork
# (f.test), real servers from ../shared/djabberd.  First what DJabberd does
# with raw sessions against it directly (the behaviour a proxy must
# survive), then the same situations through nginx:
#
#   - a stream "to" a domain it does not host: it closes the connection
#     without a stream header or error (nginx: <temporary-auth-failure/>,
#     the error log names the backend);
#   - PLAIN without an initial response, or with an empty one ("="): it
#     answers <not-authorized/> instead of a challenge (nginx does the
#     challenge itself and always logs in with the initial response);
#   - an authcid in JID form (alice@d.test): <not-authorized/> (nginx sends
#     the localpart, from the canonical Auth-User);
#   - pre-auth features: upstream lists iq-auth (<auth/>) and an
#     <optional/> in <mechanisms/>, the fork lists nothing at all on plain
#     TCP yet takes PLAIN (nginx offers its own features and logs in
#     anyway);
#   - a stream restart in the same write as <auth/>: handled (through
#     nginx too);
#   - a wrong password: <not-authorized/>, and the client may retry on the
#     same stream (through nginx too);
#   - DJabberd down: the client gets <temporary-auth-failure/>.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw/encode_base64/;
use Test::More;

use XT::DJabberd;
use XT::Nginx;
use XT::XMPP;
use XT::XmppProxy;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

for my $tree (XT::DJabberd::trees()) {
    my $why = XT::DJabberd::available($tree);
    plan(skip_all => "DJabberd $tree: $why") if $why;
}

my %dom = (upstream => 'd.test', fastmail => 'f.test');
my %dj;
for my $tree (XT::DJabberd::trees()) {
    my $d = $dom{$tree};
    $dj{$tree} = XT::DJabberd->new(dir => $t->testdir . "/$tree",
        tree => $tree, domains => [$d],
        users => [['alice', $d, 'alice-pw'], ['bob', $d, 'bob-pw']]);
}

# the backend by the domain of the user; other.test to upstream DJabberd,
# which does not host it

my $map = join '', map { "        \"~\@$dom{$_}\$\"  " . $dj{$_}->port . ";\n" }
    XT::DJabberd::trees();
$t->gen_cert('xmpp', cn => 'd.test', alt => ['d.test', 'f.test', 'other.test']);
$t->write_file_expand('nginx.conf', XT::XmppProxy::conf(
    backend => '$xt_backend',
    mail => 'max_errors 10;',
    http => <<"EOF"));
    map \$http_auth_user \$xt_backend {
$map        default  ${\ $dj{upstream}->port};
    }
EOF
$t->run();

my $SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";
my $STREAM = "version='1.0' xmlns='jabber:client'"
    . " xmlns:stream='http://etherx.jabber.org/streams'";

sub plain { encode_base64(join("\0", @_), '') }

sub r {
    my ($c) = @_;
    my $e = $c->read_element;
    return $e // ($c->{eof} ? 'EOF' : 'TIMEOUT');
}

# direct($tree, $to): a raw stream to DJabberd itself; (connection,
# header, features)
sub direct {
    my ($tree, $to) = @_;
    my $c = XT::XMPP->new(port => $dj{$tree}->port, timeout => 5)
        or die $XT::XMPP::ERROR;
    $c->open_stream($to);
    return ($c, r($c), r($c));
}

# proxied($dom): through nginx, direct TLS; (connection, features)
sub proxied {
    my ($to) = @_;
    my $c = XT::XMPP->new(port => $t->port(5223), ssl => 1, timeout => 5,
        ssl_opts => { SSL_hostname => $to }) or die $XT::XMPP::ERROR;
    $c->open_stream($to);
    r($c);
    return ($c, r($c));
}

# bound($c, $to): the restarted stream's features, then a bind result
sub bound {
    my ($c, $to, $restarted) = @_;
    $c->open_stream($to) unless $restarted;
    my $h = r($c);
    return "header: $h" unless $h =~ /^<stream:stream\b/;
    my $f = r($c);
    return "features: $f" unless $f =~ /<bind\b/;
    $c->send("<iq type='set' id='b1'><bind"
        . " xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        . "<resource>dj</resource></bind></iq>");
    return r($c);
}

###############################################################################

for my $tree (XT::DJabberd::trees()) {
    my $d = $dom{$tree};

    # directly

    my ($c, $h, $f) = direct($tree, 'other.test');
    is("$h $f", 'EOF EOF', "$tree direct: unhosted \"to\": closed, no header");

    ($c, $h, $f) = direct($tree, $d);
    if ($tree eq 'upstream') {
        like($f, qr{<auth xmlns='http://jabber.org/features/iq-auth'/>.*<mechanism>PLAIN</mechanism><optional/>},
            "$tree direct: iq-auth and <optional/> in the features");
    } else {
        is($f, '<stream:features></stream:features>',
            "$tree direct: no features before TLS");
    }
    $c->send("<auth $SASL mechanism='PLAIN'/>");
    like(r($c), qr{<not-authorized/>},
        "$tree direct: PLAIN without an initial response refused");
    $c->send("<auth $SASL mechanism='PLAIN'>=</auth>");
    like(r($c), qr{<not-authorized/>},
        "$tree direct: PLAIN with an empty initial response refused");
    $c->send("<auth $SASL mechanism='PLAIN'>"
        . plain('', "alice\@$d", 'alice-pw') . '</auth>');
    like(r($c), qr{<not-authorized/>}, "$tree direct: authcid as a JID refused");
    $c->send("<auth $SASL mechanism='PLAIN'>" . plain('', 'alice', 'wrong')
        . '</auth>');
    like(r($c), qr{<not-authorized/>}, "$tree direct: wrong password refused");
    $c->send("<auth $SASL mechanism='PLAIN'>" . plain('', 'alice', 'alice-pw')
        . "</auth><stream:stream to='$d' $STREAM>");
    like(r($c), qr{^<success\b}, "$tree direct: retry on the stream");
    like(bound($c, $d, 1), qr{<jid>alice\@\Q$d\E/dj</jid>},
        "$tree direct: restart in the write of <auth/>, bound");
    $c->close;

    # through nginx: the features are nginx's

    ($c, $f) = proxied($d);
    like($f, qr{<mechanisms $SASL><mechanism>PLAIN</mechanism></mechanisms>},
        "$tree nginx: nginx's features");
    unlike($f, qr{iq-auth|<optional/>}, "$tree nginx: none of DJabberd's");

    # a wrong password is DJabberd's refusal; a retry on the stream works

    $c->send("<auth $SASL mechanism='PLAIN'>" . plain('', 'alice', 'wrong')
        . '</auth>');
    like(r($c), qr{^<failure $SASL><not-authorized/>},
        "$tree nginx: wrong password refused");
    $c->send("<auth $SASL mechanism='PLAIN'>" . plain('', 'alice', 'alice-pw')
        . '</auth>');
    like(r($c), qr{^<success\b}, "$tree nginx: retry on the stream");
    like(bound($c, $d), qr{<jid>alice\@\Q$d\E/dj</jid>}, "$tree nginx: bound");
    $c->close;

    # PLAIN without an initial response: nginx's challenge

    ($c) = proxied($d);
    $c->send("<auth $SASL mechanism='PLAIN'/>");
    like(r($c), qr{^<challenge $SASL/>}, "$tree nginx: empty challenge");
    $c->send("<response $SASL>" . plain('', 'bob', 'bob-pw') . '</response>');
    like(r($c), qr{^<success\b},
        "$tree nginx: PLAIN without an initial response works");
    like(bound($c, $d), qr{<jid>bob\@\Q$d\E/dj</jid>},
        "$tree nginx: bound as bob");
    $c->close;

    # an authcid in JID form, and the restart in the same write

    ($c) = proxied($d);
    $c->send("<auth $SASL mechanism='PLAIN'>"
        . plain('', "alice\@$d", 'alice-pw')
        . "</auth><stream:stream to='$d' $STREAM>");
    like(r($c), qr{^<success\b}, "$tree nginx: authcid as a JID works");
    like(bound($c, $d, 1), qr{<jid>alice\@\Q$d\E/dj</jid>},
        "$tree nginx: restart in the write of <auth/>, bound");
    $c->close;
}

# a domain auth_http sends to a DJabberd that does not host it

my $closed = qr/upstream closed connection while reading stream features/;
my $n = () = $t->read_file('error.log') =~ /$closed/g;
my ($c) = proxied('other.test');
$c->send("<auth $SASL mechanism='PLAIN'>" . plain('', 'alice', 'alice-pw')
    . '</auth>');
like(r($c), qr{<temporary-auth-failure/>},
    'unhosted domain: temporary-auth-failure');
$c->close;
my $m = () = $t->read_file('error.log') =~ /$closed/g;
is($m, $n + 1, 'unhosted domain: the error log says the backend closed');

# DJabberd down, then up again

$dj{upstream}->stop;
($c) = proxied('d.test');
$c->send("<auth $SASL mechanism='PLAIN'>" . plain('', 'alice', 'alice-pw')
    . '</auth>');
like(r($c), qr{<temporary-auth-failure/>}, 'DJabberd down: temporary-auth-failure');
$c->close;
like($t->read_file('error.log'),
    qr/\(111: Connection refused\) while sending stream header to upstream.*upstream: 127\.0\.0\.1:\Q${\ $dj{upstream}->port }\E/,
    'DJabberd down: the error log names the backend');

$dj{upstream}->start;
($c) = proxied('d.test');
$c->send("<auth $SASL mechanism='PLAIN'>" . plain('', 'alice', 'alice-pw')
    . '</auth>');
like(r($c), qr{^<success\b}, 'DJabberd up again: success');
$c->close;

$t->done_testing;
