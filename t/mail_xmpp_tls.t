#!/usr/bin/perl

# Per-domain certificates: xmpp_certificate chosen by the stream "to" on
# STARTTLS and by SNI on direct TLS, wildcards, RSA + ECDSA for one name,
# case-insensitive names, fallback to ssl_certificate; TLS session
# resumption across STARTTLS.  Checked with openssl s_client, which speaks
# XMPP STARTTLS itself.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use XT::Nginx;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp/);

my $td = $t->testdir;

$t->gen_cert('default', cn => 'default.test');
$t->gen_cert('a', cn => 'a.test');
$t->gen_cert('b', cn => 'b.test');
$t->gen_cert('w', cn => '*.w.test');

# an RSA certificate for a.test too
system("openssl req -x509 -new -nodes -newkey rsa:2048 -keyout $td/a-rsa.key"
    . " -out $td/a-rsa.crt -days 30 -subj /CN=a.test >/dev/null 2>&1") == 0
    or die "openssl rsa: $?";

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;

    ssl_certificate %%TESTDIR%%/default.crt;
    ssl_certificate_key %%TESTDIR%%/default.key;
    ssl_session_cache shared:XMPP:1m;

    # nginx before 1.23.4 leaves TLS 1.3 out of the default
    ssl_protocols TLSv1.2 TLSv1.3;

    xmpp_certificate a.test %%TESTDIR%%/a.crt %%TESTDIR%%/a.key;
    xmpp_certificate a.test %%TESTDIR%%/a-rsa.crt %%TESTDIR%%/a-rsa.key;
    xmpp_certificate *.w.test %%TESTDIR%%/w.crt %%TESTDIR%%/w.key;

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls only;
    }

    server {
        listen 127.0.0.1:%%PORT_5223%% ssl;
        protocol xmpp;
    }

    server {
        listen 127.0.0.1:%%PORT_5224%%;
        protocol xmpp;
        starttls on;

        # a server's own list replaces the mail level's
        xmpp_certificate B.test %%TESTDIR%%/b.crt %%TESTDIR%%/b.key;
    }
}
EOF
$t->run();
$t->plan(15);

my ($p, $sp, $p2) = map { $t->port($_) } 5222, 5223, 5224;

# STARTTLS: chosen from the stream "to"

is(starttls_cn($p, 'a.test'), 'a.test', 'STARTTLS: exact name');
is(starttls_cn($p, 'A.Test'), 'a.test', 'STARTTLS: case-insensitive');
is(starttls_cn($p, 'x.w.test'), '*.w.test', 'STARTTLS: wildcard');
is(starttls_cn($p, 'y.x.w.test'), 'default.test',
    'STARTTLS: wildcard matches one label only');
is(starttls_cn($p, 'w.test'), 'default.test',
    'STARTTLS: wildcard does not match its parent');
is(starttls_cn($p, 'unknown.test'), 'default.test', 'STARTTLS: fallback');
is(starttls_cn($p2, 'b.test'), 'b.test', 'STARTTLS: per-server list');
is(starttls_cn($p2, 'a.test'), 'default.test',
    'STARTTLS: per-server list replaces the mail level');

# RSA and ECDSA for one name

like(s_client("-connect 127.0.0.1:$p -starttls xmpp -xmpphost a.test"),
    qr/Server public key is 256 bit/, 'a.test: ECDSA by default');
like(s_client("-connect 127.0.0.1:$p -starttls xmpp -xmpphost a.test"
    . " -sigalgs rsa_pss_rsae_sha256:rsa_pkcs1_sha256"),
    qr/Server public key is 2048 bit/, 'a.test: RSA for an RSA-only client');

# direct TLS: chosen from SNI

is(cn(s_client("-connect 127.0.0.1:$sp -servername a.test")), 'a.test',
    'direct TLS: SNI');
is(cn(s_client("-connect 127.0.0.1:$sp -servername z.w.test")), '*.w.test',
    'direct TLS: SNI wildcard');
is(cn(s_client("-connect 127.0.0.1:$sp -noservername")), 'default.test',
    'direct TLS: no SNI');

# session resumption across STARTTLS, shared cache (TLS 1.2 session IDs)
# and TLS 1.3 tickets

my $sess = "$td/sess.pem";
s_client("-connect 127.0.0.1:$p -starttls xmpp -xmpphost a.test -tls1_2"
    . " -no_ticket -sess_out $sess");
like(s_client("-connect 127.0.0.1:$p -starttls xmpp -xmpphost a.test"
    . " -tls1_2 -no_ticket -sess_in $sess"), qr/^Reused, TLSv1\.2/m,
    'STARTTLS: TLS 1.2 session cache resumption');

unlink $sess;
s_client("-connect 127.0.0.1:$p -starttls xmpp -xmpphost a.test -tls1_3"
    . " -sess_out $sess", 1);
like(s_client("-connect 127.0.0.1:$p -starttls xmpp -xmpphost a.test"
    . " -tls1_3 -sess_in $sess"), qr/^Reused, TLSv1\.3/m,
    'STARTTLS: TLS 1.3 ticket resumption');

###############################################################################

sub s_client {
    my ($args, $wait) = @_;

    # keep stdin open briefly so that TLS 1.3 tickets arrive before exit

    my $in = $wait ? 'sleep 1 |' : '</dev/null';
    return scalar `timeout 10 sh -c '$in openssl s_client $args 2>&1'`;
}

sub cn {
    my ($out) = @_;
    return $1 if $out =~ /subject=.*?CN\s*=\s*([^\s,\/]+)/;
    return '(none)';
}

sub starttls_cn {
    my ($port, $to) = @_;
    return cn(s_client("-connect 127.0.0.1:$port -starttls xmpp"
        . " -xmpphost $to"));
}

###############################################################################
