#!/usr/bin/perl

# Interop: PROXY protocol to the backend.  nginx's mail servers with
# "proxy_protocol on;" in front of an ejabberd c2s listener with
# "use_proxy_protocol: true": ejabberd must see the real client address
# (the test's client connects from 127.0.0.2; nginx itself connects from
# 127.0.0.1), asserted from ejabberd's side: its log and
# "ejabberdctl user_sessions_info".
#
# The nginx releases this project builds (1.26.3, 1.22.1) send only PROXY
# protocol version 1 (the text line) to mail backends; there is no
# directive for version 2.  A stub backend records the header nginx sends.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time);
use XT::Interop;

plan(skip_all => '127.0.0.2 is not usable as a source address here')
    unless IO::Socket::INET->new(LocalAddr => '127.0.0.2', Listen => 1);

my $stub = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
    Listen => 5, ReuseAddr => 1) or die "stub: $!";
my $stub_port = $stub->sockport;

my $http = <<"EOF";
    # the servers with proxy_protocol: ejabberd's PROXY listener, a stub
    map \$http_auth_user \$xt_pp_backend {
        ~\@e\\.test\$  %%PP_PORT%%;
        ~\@s\\.test\$  $stub_port;
        default      "";
    }
    log_format auth_pp '\$http_auth_user|\$http_auth_protocol|\$http_client_ip|'
                       '\$http_auth_ssl|\$xt_pp_backend';
    server {
        listen 127.0.0.1:%%PORT_8082%%;
        access_log %%TESTDIR%%/auth.log auth_pp;
        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$xt_pp_backend;
            return 204;
        }
    }
EOF

my $mail = <<'EOF';
    server {
        listen 127.0.0.1:%%PORT_5232%%;
        protocol xmpp;
        starttls only;
        proxy_protocol on;
        auth_http 127.0.0.1:%%PORT_8082%%/auth;
    }
    server {
        listen 127.0.0.1:%%PORT_5233%% ssl;
        protocol xmpp;
        proxy_protocol on;
        auth_http 127.0.0.1:%%PORT_8082%%/auth;
    }
EOF

my $ix = XT::Interop->new(
    name        => 'PROXY protocol v1',
    backends    => ['ejabberd'],
    ejabberd    => { proxy_protocol => 1 },
    http        => $http,
    mail        => $mail,
    conf_filter => sub {
        my $port = $_[0]->ejabberd->pp_port;
        $_[1] =~ s/%%PP_PORT%%/$port/g;
    },
);

my $e = $ix->ejabberd;
my %pp_port = (starttls => $ix->t->port(5232), tls => $ix->t->port(5233));
my $slixmpp = system($XT::Interop::PYTHON, '-c', 'import slixmpp') == 0;

###############################################################################

# the real client address reaches ejabberd, STARTTLS and direct TLS

for my $mode ($ix->modes) {
    $ix->cell('ejabberd', $mode, sub {
        my $res = "pp-$mode";
        my $label = 'PROXY ' . $ix->mode_title($mode);
        my $c = eval { $ix->peer_login('alice', 'ejabberd', mode => $mode,
            port => $pp_port{$mode}, local_addr => '127.0.0.2', resource => $res) };
        ok($c, "$label: logged in from 127.0.0.2 through nginx") or diag($@);
        my $info = $e->sessions('alice', 'e.test');
        my ($line) = grep { /\t\Q$res\E\t/ } split /\n/, $info;
        like($line // '', qr/^\S+\t(?:::ffff:)?127\.0\.0\.2\t/,
            "$label: ejabberd's session has the client's address")
            or diag("user_sessions_info:\n$info");
        like($e->log, qr/Accepted c2s PLAIN authentication for alice\@e\.test .*from (?:::ffff:)?127\.0\.0\.2\b/,
            "$label: ejabberd logs the login from the client's address");

        # a real client through the same server: the whole exchange works
        $ix->exchange('ejabberd', $mode, port => $pp_port{$mode},
            peer_port => $pp_port{starttls}, backend_port => $e->pp_port,
            cmd => sub {
                my %a = @_;
                return ($XT::Interop::PYTHON,
                    "$FindBin::Bin/lib/interop/slixmpp_client.py",
                    map { ("--$_", $a{$_}) }
                    qw(host port mode jid password to body expect timeout));
            }) if $slixmpp;
        $c->close if $c;
    });
}

$ix->na('prosody', $_, "Debian 12's Prosody 0.12 cannot take PROXY protocol "
    . '(prosody-modules there has no mod_net_proxy)') for $ix->modes;

# control: without proxy_protocol ejabberd sees nginx's own address (so the
# assertions above can fail)

{
    my $c = eval { $ix->peer_login('bob', 'ejabberd', local_addr => '127.0.0.2',
        resource => 'direct') };
    ok($c, 'control: logged in from 127.0.0.2 without PROXY protocol') or diag($@);
    my ($line) = grep { /\tdirect\t/ } split /\n/, $e->sessions('bob', 'e.test');
    like($line // '', qr/^\S+\t(?:::ffff:)?127\.0\.0\.1\t/,
        'control: ejabberd sees nginx\'s address');
    $c->close if $c;
}

# the header nginx sends is version 1: "PROXY TCP4 src dst sport dport\r\n"

{
    my $c = XT::Interop::raw_connect($pp_port{tls}, 'tls', 's.test', '127.0.0.2');
    $c->open_stream('s.test');
    $c->read_element;
    $c->read_element;
    $c->auth_plain('stub', 'stub-pw');
    my $got = '';
    if (IO::Select->new($stub)->can_read(10)) {
        my $s = $stub->accept;
        my $end = time() + 5;
        while ($got !~ /<stream:stream/ && time() < $end) {
            last unless IO::Select->new($s)->can_read(1);
            sysread($s, $got, 4096, length $got) or last;
        }
        close $s;
    }
    like($got, qr/^PROXY TCP4 127\.0\.0\.2 127\.0\.0\.1 \d+ \Q$pp_port{tls}\E\r\n<\?xml/,
        'nginx sends PROXY protocol v1 (text), then the stream header');
    unlike($got, qr/^\r\n\r\n\0\r\nQUIT\n/, 'not the v2 binary signature');
    my $f = $c->read_element // '';
    like($f, qr/<temporary-auth-failure\/>/, 'the stub hung up: temporary-auth-failure');
    $c->close;
}

$ix->done;
