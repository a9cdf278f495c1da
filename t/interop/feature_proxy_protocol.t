#!/usr/bin/perl

# Interop: PROXY protocol to the backend.  nginx's mail servers with
# "proxy_protocol on;" (version 1, the text line) and, from nginx 1.31.4 on,
# "proxy_protocol v2;" (the binary header) in front of ejabberd listeners
# with "use_proxy_protocol: true", for client-to-server streams and for
# server-to-server streams.  ejabberd must see the real address of the
# client or of the remote server (the test connects from 127.0.0.2; nginx
# itself connects from 127.0.0.1), asserted from ejabberd's side: its log
# and, for c2s, "ejabberdctl user_sessions_info".  A stub backend records
# the header bytes nginx sends.
#
# Releases before 1.31.4 have no "v2" value: there the v2 cells are n/a and
# their tests are skipped (the same count on every release), and the test
# checks that an operator who writes "proxy_protocol v2;" gets nginx's own
# configuration error.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep time);
use XT::Interop;
use XT::Nginx;

plan(skip_all => '127.0.0.2 is not usable as a source address here')
    unless IO::Socket::INET->new(LocalAddr => '127.0.0.2', Listen => 1);

my $stub = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
    Listen => 5, ReuseAddr => 1) or die "stub: $!";
my $stub_port = $stub->sockport;

# PROXY protocol v2 to mail backends: nginx 1.31.4 (8d9666701)
my $V2_SINCE = '1.31.4';

my $http = <<"EOF";
    # the servers with proxy_protocol: ejabberd's PROXY listeners, a stub
    map \$http_auth_user \$xt_pp_backend {
        ~\@e\\.test\$  %%PP_PORT%%;
        ~\@s\\.test\$  $stub_port;
        default      "";
    }
    map \$http_auth_xmpp_to \$xt_pp_s2s_backend {
        e.test       %%S2S_PP_PORT%%;
        s.test       $stub_port;
        default      "";
    }
    log_format auth_pp '\$http_auth_user|\$http_auth_protocol|\$http_client_ip|'
                       '\$http_auth_ssl|\$xt_pp_backend|\$xt_pp_s2s_backend';
    server {
        listen 127.0.0.1:%%PORT_8082%%;
        access_log %%TESTDIR%%/auth.log auth_pp;
        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$xt_pp_backend;
            return 204;
        }
        location = /auth-s2s {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$xt_pp_s2s_backend;
            return 204;
        }
    }
EOF

# ports: c2s STARTTLS / direct TLS, s2s STARTTLS / direct TLS, per version
my %PORT = (
    1 => { c2s => { starttls => 5232, tls => 5233 },
           s2s => { starttls => 5236, tls => 5237 } },
    2 => { c2s => { starttls => 5234, tls => 5235 },
           s2s => { starttls => 5238, tls => 5239 } },
);

sub servers {
    my ($version) = @_;
    my $pp = $version == 2 ? 'v2' : 'on';
    my $p = $PORT{$version};
    return <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_$p->{c2s}{starttls}%%;
        protocol xmpp;
        starttls only;
        proxy_protocol $pp;
        auth_http 127.0.0.1:%%PORT_8082%%/auth;
    }
    server {
        listen 127.0.0.1:%%PORT_$p->{c2s}{tls}%% ssl;
        protocol xmpp;
        proxy_protocol $pp;
        auth_http 127.0.0.1:%%PORT_8082%%/auth;
    }
    server {
        listen 127.0.0.1:%%PORT_$p->{s2s}{starttls}%%;
        protocol xmpp-server;
        starttls only;
        proxy_protocol $pp;
        auth_http 127.0.0.1:%%PORT_8082%%/auth-s2s;
    }
    server {
        listen 127.0.0.1:%%PORT_$p->{s2s}{tls}%% ssl;
        protocol xmpp-server;
        proxy_protocol $pp;
        auth_http 127.0.0.1:%%PORT_8082%%/auth-s2s;
    }
EOF
}

my $ix = XT::Interop->new(
    name        => 'PROXY protocol v1',
    backends    => ['ejabberd'],
    ejabberd    => { proxy_protocol => 1, s2s_proxy_protocol => 1,
        # the dialback check of r.test fails at once (no such domain)
        extra => "s2s_dns_timeout: 2\ns2s_dns_retries: 0\n" },
    http        => $http,
    mail        => servers(1) . "%%V2_SERVERS%%\n",
    conf_filter => sub {
        my ($ix) = @_;
        my ($c2s, $s2s) = ($ix->ejabberd->pp_port, $ix->ejabberd->s2s_pp_port);
        my $v2 = $ix->t->has_version($V2_SINCE) ? servers(2) : '';
        $_[1] =~ s/%%PP_PORT%%/$c2s/g;
        $_[1] =~ s/%%S2S_PP_PORT%%/$s2s/g;
        $_[1] =~ s/%%V2_SERVERS%%/$v2/g;
    },
);

my $t = $ix->t;
my $e = $ix->ejabberd;
my $version = $t->version;
my $has_v2 = $t->has_version($V2_SINCE);
my $no_v2 = "nginx $version has no PROXY protocol v2 for mail backends "
    . "(\"proxy_protocol v2;\" is in $V2_SINCE and later)";
my $slixmpp = system($XT::Interop::PYTHON, '-c', 'import slixmpp') == 0;

sub port { $t->port($PORT{ $_[0] }{ $_[1] }{ $_[2] }) }

my $S = "xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
    . " xmlns:db='jabber:server:dialback' version='1.0'";

###############################################################################

# c2s: the real client address reaches ejabberd, STARTTLS and direct TLS;
# a real client (slixmpp) does a whole exchange through the v1 servers

sub c2s_cell {
    my ($v, $mode) = @_;
    my $res = "pp$v-$mode";
    my $label = "PROXY v$v " . $ix->mode_title($mode);
    my $port = port($v, 'c2s', $mode);
    my $c = eval { $ix->peer_login('alice', 'ejabberd', mode => $mode,
        port => $port, local_addr => '127.0.0.2', resource => $res) };
    ok($c, "$label: logged in from 127.0.0.2 through nginx") or diag($@);
    my $info = $e->sessions('alice', 'e.test');
    my ($line) = grep { /\t\Q$res\E\t/ } split /\n/, $info;
    like($line // '', qr/^\S+\t(?:::ffff:)?127\.0\.0\.2\t/,
        "$label: ejabberd's session has the client's address")
        or diag("user_sessions_info:\n$info");
    like($e->log, qr/Accepted c2s PLAIN authentication for alice\@e\.test .*from (?:::ffff:)?127\.0\.0\.2\b/,
        "$label: ejabberd logs the login from the client's address");

    $ix->exchange('ejabberd', $mode, port => $port,
        peer_port => port($v, 'c2s', 'starttls'), backend_port => $e->pp_port,
        cmd => sub {
            my %a = @_;
            return ($XT::Interop::PYTHON,
                "$FindBin::Bin/../lib/interop/slixmpp_client.py",
                map { ("--$_", $a{$_}) }
                qw(host port mode jid password to body expect timeout));
        }) if $v == 1 && $slixmpp;
    $c->close if $c;
}

# s2s: a remote server r.test (127.0.0.2) opens a stream to e.test through
# nginx and sends its dialback request; ejabberd's log names the remote's
# address for that stream.  (ejabberd cannot verify the key: r.test does
# not exist, and says so in its log with the stream's address.)

sub s2s_stream {
    my ($port, $mode, $to, %o) = @_;
    my $c = XT::Interop::raw_connect($port, $mode, $to, $o{local_addr} // '127.0.0.2')
        or die "connect: $XT::XMPP::ERROR\n";
    my $expect = sub {
        my ($re, $what) = @_;
        my $el = $c->read_element // die "no $what (EOF/timeout)\n";
        die "expected $what, got: $el\n" unless $el =~ $re;
        return $el;
    };
    if ($mode eq 'starttls') {
        $c->tls_stream($to, restart => 0,
            header => "<stream:stream from='r.test' to='$to' $S>")
            or die $c->error . "\n";
    }
    $c->send("<stream:stream from='r.test' to='$to' $S>");
    return ($c, $expect);
}

sub s2s_cell {
    my ($v, $mode) = @_;
    my $label = "PROXY v$v s2s " . $ix->mode_title($mode);
    my $log0 = length $e->log;
    my ($c, $expect) = eval { s2s_stream(port($v, 's2s', $mode), $mode, 'e.test') };
    my $ok = eval {
        die $@ unless $c;
        $expect->(qr/^<stream:stream\b[^>]*\bfrom=["']e\.test["']/,
            "ejabberd's stream header");
        $expect->(qr/^<stream:features\b/, "ejabberd's features");
        1;
    };
    ok($ok, "$label: ejabberd's stream header and features relayed")
        or diag($@);
    $c->send("<db:result from='r.test' to='e.test'>pp${v}key$mode</db:result>")
        if $c;

    # ejabberd's listener logs the addresses of the PROXY header (the
    # remote's, nginx's server port), its s2s stream the remote's address
    # when the dialback key cannot be verified
    my $nport = port($v, 's2s', $mode);
    my $log = sub { substr($e->log, $log0) };
    my $end = time() + 20;
    sleep 0.05 until $log->() =~ /Failed inbound s2s dialback/ || time() > $end;
    like($log->(), qr/Accepted proxied connection (?:::ffff:)?127\.0\.0\.2:\d+ -> (?:::ffff:)?127\.0\.0\.1:$nport\b/,
        "$label: ejabberd's listener got the remote's address and nginx's port");
    like($log->(), qr/Failed inbound s2s dialback authentication r\.test -> e\.test \((?:::ffff:)?127\.0\.0\.2\)/,
        "$label: ejabberd's s2s stream from r.test has the remote's address");
    $c->close if $c;
}

for my $v (1, 2) {
    my $row = "PROXY protocol v$v";
    for my $mode ($ix->modes) {
        if ($v == 2 && !$has_v2) {
            $ix->na('ejabberd', $mode, $no_v2, name => $row);
            $ix->na('ejabberd', $mode, $no_v2, name => "$row, s2s");
            SKIP: { skip($no_v2, 6) }
            next;
        }
        $ix->cell('ejabberd', $mode, sub { c2s_cell($v, $mode) }, name => $row);
        $ix->cell('ejabberd', $mode, sub { s2s_cell($v, $mode) },
            name => "$row, s2s");
    }
    for my $mode ($ix->modes) {
        $ix->na('prosody', $mode, "Debian 12's Prosody 0.12 cannot take PROXY "
            . 'protocol (prosody-modules there has no mod_net_proxy)', name => $_)
            for $row, "$row, s2s";
    }
}

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

# the header bytes nginx sends, recorded by a stub backend: v1 is
# "PROXY TCP4 src dst sport dport\r\n", v2 the 12-byte signature, version 2
# command PROXY (0x21), TCP over IPv4 (0x11), length 12, then the addresses
# and ports; the stream header follows either

sub stub_read {
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
    return $got;
}

# v2: the signature, version 2 command PROXY (0x21), TCP over IPv4 (0x11),
# the length of the rest, 127.0.0.2 -> 127.0.0.1, the ports, then TLVs (on
# a TLS connection nginx adds PP2_TYPE_SSL, 0x20, and a CRC32C, 0x03)

my $V2 = "\r\n\r\n\0\r\nQUIT\n" . pack('CC', 0x21, 0x11);

sub v2_parse {
    my ($got) = @_;
    return unless length $got >= 28
        && substr($got, 0, 14) eq $V2;
    my $len = unpack('n', substr($got, 14, 2));
    my %h = (src => join('.', unpack('C4', substr($got, 16, 4))),
        dst => join('.', unpack('C4', substr($got, 20, 4))),
        dport => unpack('n', substr($got, 26, 2)),
        rest => substr($got, 16 + $len), tlvs => []);
    my $tlv = substr($got, 28, $len - 12);
    while (length $tlv >= 3) {
        my ($type, $l) = unpack('Cn', $tlv);
        push @{ $h{tlvs} }, sprintf('0x%02x', $type);
        substr($tlv, 0, 3 + $l) = '';
    }
    return \%h;
}

sub v2_check {
    my ($got, $port, $what) = @_;
    my $h = v2_parse($got);
    is($h && "$h->{src} -> $h->{dst}", '127.0.0.2 -> 127.0.0.1',
        "$what: nginx sends PROXY protocol v2 (binary), 127.0.0.2 -> 127.0.0.1")
        or diag('got: ' . unpack('H*', substr($got, 0, 64)));
    ok($h && $h->{dport} == $port && (grep { $_ eq '0x20' } @{ $h->{tlvs} })
        && $h->{rest} =~ /^<\?xml/,
        "$what: v2 destination port, a PP2_TYPE_SSL TLV, then the stream header")
        or diag(explain($h));
}

for my $v (1, 2) {
    SKIP: {
        skip($no_v2, 6) if $v == 2 && !$has_v2;

        # c2s: SASL PLAIN for stub@s.test sends the session to the stub
        my $port = port($v, 'c2s', 'tls');
        my $c = XT::Interop::raw_connect($port, 'tls', 's.test', '127.0.0.2');
        $c->open_stream('s.test');
        $c->read_element;
        $c->read_element;
        $c->auth_plain('stub', 'stub-pw');
        my $got = stub_read();
        if ($v == 1) {
            like($got, qr/^PROXY TCP4 127\.0\.0\.2 127\.0\.0\.1 \d+ \Q$port\E\r\n<\?xml/,
                'c2s: nginx sends PROXY protocol v1 (text), then the stream header');
            unlike($got, qr/^\r\n\r\n\0\r\nQUIT\n/, 'c2s: not the v2 binary signature');
        } else {
            v2_check($got, $port, 'c2s');
        }
        like($c->read_element // '', qr/<temporary-auth-failure\/>/,
            'c2s: the stub hung up: temporary-auth-failure');
        $c->close;

        # s2s: a stream to s.test goes to the stub
        $port = port($v, 's2s', 'tls');
        my ($s) = s2s_stream($port, 'tls', 's.test');
        $got = stub_read();
        if ($v == 1) {
            like($got, qr/^PROXY TCP4 127\.0\.0\.2 127\.0\.0\.1 \d+ \Q$port\E\r\n<\?xml/,
                's2s: nginx sends PROXY protocol v1, then the stream header');
            like(substr($got, index($got, '<')), qr/^<\?xml[^>]*>\s*<stream:stream\b[^>]*\bto=["']s\.test["']/,
                "s2s: nginx's stream header to the backend");
        } else {
            v2_check($got, $port, 's2s');
        }
        like(join('', map { $s->read_element // '' } 1 .. 2),
            qr/<remote-connection-failed\b/, 's2s: the stub hung up: remote-connection-failed');
        $s->close;
    }
}

# what an operator sees who writes "proxy_protocol v2;": before 1.31.4,
# nginx's own configuration error; from 1.31.4 on, a valid configuration

{
    my $n = XT::Nginx->new()->has(qw/mail xmpp/);
    $n->write_file_expand('nginx.conf', <<'EOF');
mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        proxy_protocol v2;
    }
}
EOF
    my ($rc, $out) = $n->config_test;
    if ($has_v2) {
        is($rc, 0, "nginx $version: \"proxy_protocol v2;\" is a valid configuration")
            or diag($out);
    } else {
        ok($rc != 0 && $out =~ /\[emerg\] invalid value "v2" in "proxy_protocol" directive, it must be "on" or "off"/,
            "nginx $version: \"proxy_protocol v2;\" is nginx's own configuration error")
            or diag($out);
    }
}

$ix->done;
