#!/usr/bin/perl

# Server-to-server federation through nginx: a real Prosody R (r.test)
# federates with l.test, whose s2s address is nginx (STARTTLS required,
# dialback proxied to the real Prosody L behind it).  Names resolve through
# each Prosody's own hosts file (its libunbound "hoststxt"), so the
# machine's resolver is not touched: l.test is nginx on 127.X.Y.2:5269,
# r.test is R on 127.X.Y.3:5269 (random X.Y, loopback only).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time sleep);

use XT::Nginx qw(free_port loopback_net);
use XT::Prosody;
use XT::XMPP;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

my $td = $t->testdir;
my $net = loopback_net(2, 3);
my ($nginx_ip, $r_ip) = ("$net.2", "$net.3");

my $l_s2s = free_port();

# R's dialback secret is known, so that a scripted remote can present a
# key that R, the authoritative server of r.test, confirms (XEP-0185)

my $SECRET = 'xt-r-dialback-secret';

# R finds l.test at nginx, L finds r.test at R; SRV lookups fail at once
# (a name server that is not there)

my $r = XT::Prosody->new(dir => "$td/r/prosody", domains => ['r.test'],
    users => [['alice', 'r.test', 'alice-pw']],
    extra => XT::Prosody::s2s_extra(dir => "$td/r", ip => $r_ip,
        hosts => [[$nginx_ip, 'l.test']], nameserver => "$net.9",
        extra => "dialback_secret = \"$SECRET\""));

my $l = XT::Prosody->new(dir => "$td/l/prosody", domains => ['l.test'],
    users => [['bob', 'l.test', 'bob-pw']],
    extra => XT::Prosody::s2s_extra(dir => "$td/l", ip => '127.0.0.1',
        port => $l_s2s, hosts => [[$r_ip, 'r.test']],
        nameserver => "$net.9"));

$t->gen_cert('default', cn => 'nginx.test');
$t->gen_cert('l', cn => 'l.test');

$t->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

http {
    log_format auth '\$http_auth_protocol|\$http_auth_method|'
                    '\$http_auth_user|\$http_auth_xmpp_from|'
                    '\$http_auth_xmpp_to|\$http_auth_ssl_protocol';

    map \$http_auth_xmpp_to \$backend_port {
        l.test   $l_s2s;
        default  "";
    }

    map \$http_auth_xmpp_to \$xt_status {
        l.test   OK;
        default  "Unknown domain";
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
    xmpp_certificate l.test %%TESTDIR%%/l.crt %%TESTDIR%%/l.key;

    server {
        listen $nginx_ip:5269;
        protocol xmpp-server;
        starttls only;
    }

    server {
        listen $nginx_ip:5270 ssl;
        protocol xmpp-server;
    }
}
EOF
$t->run();
$t->plan(45);

###############################################################################

# alice@r.test and bob@l.test, each on their own server, exchange messages

my $alice = XT::XMPP->login(port => $r->port, domain => 'r.test',
    user => 'alice', password => 'alice-pw');
my $bob = XT::XMPP->login(port => $l->port, domain => 'l.test',
    user => 'bob', password => 'bob-pw');
ok($alice && $bob, 'both users logged in to their servers');

like($alice->chat($bob, "bob\@l.test", "hello from r"),
    qr/from=.alice\@r\.test/, 'message r.test -> l.test through nginx');

like($bob->chat($alice, "alice\@r.test", "hello from l"),
    qr/from=.bob\@l\.test/, 'message l.test -> r.test, verified through nginx');

# R checks L's key with a <db:verify/> for its own pair on the stream it
# has through nginx (XEP-0220 section 2.1.3): that one is relayed

like($l->log, qr/Received\[s2sin\w*\]: <verify\b(?=[^>]*from='r\.test')(?=[^>]*to='l\.test')/,
    'db:verify of the approved pair on the relayed stream reached L');

my @auth = grep { $_->[4] eq 'l.test' }
    map { [ split /\|/ ] } split /\n/, $t->read_file('auth.log');

# R's dialback request (and its check of L's key, which R may send on the
# same stream) went through nginx
cmp_ok(scalar @auth, '>=', 1, 'dialback streams routed by auth_http');
is($auth[0] && "@{$auth[0]}[0..4]", 'xmpp-server external r.test r.test l.test',
    'auth request: protocol, method, user, from, to');
like($auth[0] ? $auth[0][5] : '', qr/^TLSv1\.[23]$/, 'remote used TLS 1.2+');
ok(!grep({ $_->[5] !~ /^TLSv1\.[23]$/ } @auth), 'every stream encrypted');

like($t->read_file('error.log'), qr/client logged in.*login: "r\.test"/,
    'relayed session logged');

###############################################################################

# by hand: features, an unknown domain, malformed dialback elements

my $S = "xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
    . " xmlns:db='jabber:server:dialback' version='1.0'";

my $before = () = split /\n/, $t->read_file('auth.log');

my $c = XT::XMPP->new(host => $nginx_ip, port => 5269);
$c->send("<stream:stream from='r.test' to='l.test' $S>");
like($c->read_element // '', qr/^<stream:stream xmlns='jabber:server'/,
    'server stream header from nginx before TLS');
like($c->read_element // '', qr{<starttls [^>]*><required/></starttls>},
    'STARTTLS required');
$c->send("<db:result from='r.test' to='l.test'>abcdef</db:result>");
like(join('', map { $c->read_element // '' } 1 .. 2),
    qr/<not-authorized\b/, 'no dialback before TLS');

my $after = () = split /\n/, $t->read_file('auth.log');
is($after, $before, 'nothing reached auth_http before TLS');

$c = tls_stream('unknown.test');
like(join('', map { $c->read_element // '' } 1 .. 2), qr/<host-unknown\b/,
    'unknown domain: host-unknown');
like($t->read_file('error.log'),
    qr/incoming stream from "r\.test" to "unknown\.test" refused, "host-unknown" error/,
    'unknown domain: the error log names both domains');

$c = tls_stream('l.test');
like($c->read_element // '', qr{<dialback xmlns='urn:xmpp:features:dialback'/>},
    'backend features with dialback relayed after TLS');
$c->send("<db:result to='l.test'>badkey1</db:result>");
like(join('', map { $c->read_element // '' } 1 .. 2), qr/<invalid-from\b/,
    'dialback without from: invalid-from');

$c = tls_stream('l.test');
$c->read_element;
$c->send("<db:result from='r.test' to='l.test'>badkey2<x/></db:result>");
like(join('', map { $c->read_element // '' } 1 .. 2), qr/<bad-format\b/,
    'dialback with a child element: bad-format');

$c = tls_stream('l.test');
$c->read_element;
$c->send("<db:result from='r.test&#13;&#10;X: y' to='l.test'>badkey3"
    . "</db:result>");
like(join('', map { $c->read_element // '' } 1 .. 2), qr/<invalid-from\b/,
    'CR/LF in from: invalid-from');
$c->close;

# the first dialback element is for the stream's domains, which auth_http
# saw (a later element of another pair is refused below)

$c = tls_stream('l.test');
$c->read_element;
$c->send("<db:result from='blocked.test' to='l.test'>badkey4</db:result>");
like(join('', map { $c->read_element // '' } 1 .. 2), qr/<invalid-from\b/,
    'first dialback from another domain than the stream: invalid-from');
$c->close;

unlike($l->log, qr/badkey|blocked\.test/,
    'malformed dialback never reached the backend');

###############################################################################

# the relayed stream stays bound to the pair auth_http approved (r.test to
# l.test).  A scripted remote, since a real server does not send what is
# refused here: R's real key, then elements for other pairs (XEP-0220
# multiplexing), or XML that would make nginx lose track of the elements.

$c = dialback_stream();
ok($c->{valid}, 'scripted remote: dialback through nginx valid');

# the same pair later on: relayed (L answers, the key is not its own)

$c->send("<db:verify from='R.test' to='l.test' id='xt-same-1'>0123</db:verify>");
like($c->read_element(10) // '', qr/^<db:verify\b[^>]*id='xt-same-1'/,
    'later db:verify of the approved pair relayed, answered');

# what only looks like a dialback element is relayed: CDATA is text, a
# nested element is not a dialback request, quotes hide nothing

$c->send("<message to='bob\@l.test' from='x\@r.test' type='chat' id='xt-cd'>"
    . "<body><![CDATA[</body></message><db:result from='blocked.test'"
    . " to='l.test'>x</db:result><!-- ]]]></body></message>"
    . "<message to='bob\@l.test' from='x\@r.test' type='chat' id='xt-nest'"
    . " a=\"it's\" b='\"&apos;>'><db:result from='blocked.test' to='l.test'"
    . ">x</db:result><body>nested</body></message>");
like($bob->read_until(qr/id=.xt-nest/, 10) // '', qr/id=.xt-cd.*CDATA|id=.xt-cd/s,
    'CDATA and nested look-alikes relayed to bob');

$c->send("<db:result from='blocked.test' to='l.test' id='xt-refused-1'>"
    . "blockedkey</db:result><message to='bob\@l.test' from='x\@r.test'"
    . " type='chat' id='xt-after'><body>after the refusal</body></message>");
like(stream_error($c) // '', serr('policy-violation'),
    'dialback from another domain later: policy-violation');
ok($c->eof_within(5), 'and the stream is closed');

my ($closed, $session) = backend_session($c->{key});
ok($closed, 'backend closed the relayed session');
unlike($session, qr/blocked\.test|xt-refused|xt-after/,
    'backend got neither the refused element nor what followed');
unlike($bob->read_until(qr/xt-after/, 0.5) // '', qr/xt-after/,
    'the stanza after the refusal never reached bob');
like($t->read_file('error.log'), qr/remote server sent dialback from "blocked\.test" to "l\.test" on a stream from "r\.test" to "l\.test"/,
    'the refused pair is logged');

# each on a stream of its own: refused, and nothing of it reaches L

my @keys;
for my $case (
    ['to another domain', 'policy-violation',
        "<db:result from='r.test' to='secret.test' id='xt-refused-2'>k</db:result>"],
    ['self-closing', 'policy-violation',
        "<db:result from='blocked.test' to='l.test' id='xt-refused-3'/>"],
    ['other prefix', 'policy-violation',
        "<x:verify xmlns:x='jabber:server:dialback' from='blocked.test'"
        . " to='l.test' id='xt-refused-4'>k</x:verify>"],
    ['default namespace', 'policy-violation',
        "<result xmlns='jabber:server:dialback' from='blocked.test'"
        . " to='l.test' id='xt-refused-5'>k</result>"],
    ['a character reference', 'policy-violation',
        "<db:result from='r.test' to='l&#46;test' id='xt-refused-6'>k</db:result>"],
    ['no to', 'policy-violation',
        "<db:result from='r.test' id='xt-refused-7'>k</db:result>"],
    ['from twice', 'policy-violation',
        "<db:result from='r.test' to='l.test' from='blocked.test'"
        . " id='xt-refused-8'>k</db:result>"],
    ['a comment hiding a tag', 'restricted-xml',
        "<!-- > <x> --><db:result from='blocked.test' to='l.test'"
        . " id='xt-refused-9'>k</db:result>"],
    ['a processing instruction', 'restricted-xml',
        "<?xt <x>?><db:result from='blocked.test' to='l.test'"
        . " id='xt-refused-10'>k</db:result>"],
    ['a DTD', 'restricted-xml',
        "<!DOCTYPE x [<!ENTITY e 'r.test'>]><db:result from='&e;' to='l.test'"
        . " id='xt-refused-11'>k</db:result>"],
) {
    my ($name, $err, $data) = @$case;
    $c = dialback_stream();
    $c->send($data);
    like(stream_error($c) // '', serr($err), "later dialback, $name: $err");
    push @keys, $c->{key};
}

# after the first element, in the same write: checked at the handoff

$c = dialback_stream("<db:result from='blocked.test' to='l.test'"
    . " id='xt-refused-12'>k</db:result>");
like(stream_error($c) // '', serr('policy-violation'),
    'another pair right after the first dialback: policy-violation');
push @keys, $c->{key};

my @sessions = map { [ backend_session($_) ] } @keys;
is(scalar(grep { $_->[0] } @sessions), scalar @keys,
    'backend closed each of these sessions');
unlike(join("\n", map { $_->[1] } @sessions),
    qr/xt-refused|blocked\.test|secret\.test|[Rr]estricted/,
    'backend got nothing of the refused elements');

# direct TLS (XEP-0368): the first stream header is routed at once

$c = XT::XMPP->new(host => $nginx_ip, port => 5270, ssl => 1,
    SSL_hostname => 'l.test') or die $XT::XMPP::ERROR;
$c->send("<stream:stream from='r.test' to='l.test' $S>");
like($c->read_element // '', qr/^<stream:stream\b/, 'direct TLS: header');
like($c->read_element // '', qr{<dialback xmlns='urn:xmpp:features:dialback'/>},
    'direct TLS: backend features');

###############################################################################


# a stream from r.test to $to on nginx's s2s port, STARTTLS done, the new
# stream header sent and nginx's (or the backend's) answer to it read
sub tls_stream {
    my ($to) = @_;
    my $c = XT::XMPP->new(host => $nginx_ip, port => 5269)
        or die $XT::XMPP::ERROR;
    $c->tls_stream($to, header => "<stream:stream from='r.test' to='$to' $S>",
        features => 0) or die $c->error;
    return $c;
}

# a stream of r.test relayed to L: its key (bound to L's stream id) was
# confirmed by R, and L answered type='valid' (or what follows the key in
# the same write was sent)

sub dialback_stream {
    my ($pipelined) = @_;
    my $c = tls_stream('l.test');
    my ($id) = $c->stream_header =~ /\bid=['"]([^'"]+)/;
    $c->read_element;
    $c->{key} = hmac_sha256_hex("l.test r.test " . ($id // ''),
        sha256_hex($SECRET));
    $c->send("<db:result from='r.test' to='l.test'>$c->{key}</db:result>"
        . ($pipelined // ''));
    return $c if defined $pipelined;
    $c->{valid} = ($c->read_element(20) // '') =~ /^<db:result\b[^>]*type=.valid/;
    return $c;
}

# the next stream error (other elements are skipped), undef on EOF

sub stream_error {
    my ($c) = @_;
    while (defined(my $e = $c->read_element(10))) {
        return $e if $e =~ /^<stream:error>/;
    }
    return undef;
}

sub serr {
    my $ns = 'urn:ietf:params:xml:ns:xmpp-streams';
    return qr{^<stream:error><$_[0] xmlns='$ns'/></stream:error>\z};
}

# L's log lines of the session that was given this dialback key, and
# whether L has closed it (it has then handled all it received)

sub backend_session {
    my ($key) = @_;
    my $end = time() + 20;
    my ($name, @lines);
    while (time() < $end) {
        my $log = $l->log;
        ($name) = $log =~ /^\S+ \S+ \S+ (\S+)\tdebug\tasking r\.test if key \Q$key\E /m
            unless defined $name;
        if (defined $name) {
            @lines = grep { /^\S+ \S+ \S+ \Q$name\E\t/ } split /\n/, $log;
            return (1, join("\n", @lines))
                if grep { /\tDestroying incoming session/ } @lines;
        }
        sleep 0.05;
    }
    return (0, join("\n", @lines));
}

###############################################################################
