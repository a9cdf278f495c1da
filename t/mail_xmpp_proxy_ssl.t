#!/usr/bin/perl

# xmpp_proxy_ssl: TLS from nginx to the backend of client streams.  A real
# Prosody in its stock configuration for encryption (c2s_require_encryption,
# no PLAIN without TLS, STARTTLS offered, a direct TLS port) and a real
# ejabberd with starttls_required: true, behind nginx with "xmpp_proxy_ssl
# starttls" and "on" (direct TLS); a real client (slixmpp) logs in and
# exchanges messages.  Faults: a certificate that names another domain, one
# no trusted CA signed, a backend (a real Prosody without its tls module)
# that offers no STARTTLS: each a <temporary-auth-failure/> to the client,
# an error-log line naming the backend, and no plaintext login.  auth_http
# asks for TLS per login (Auth-XMPP-Proxy-SSL).  The client certificate and
# the session reuse are shown by the TLS server in front of a Prosody: that
# one is nginx's own stream module (ssl_verify_client, $ssl_session_reused
# in its access log), as Prosody logs neither.  The bound of the session
# cache, by the same server: logins of users of more distinct domains (the
# TLS name) than the cache holds (NGX_MAIL_XMPP_SSL_SESSIONS, read from
# the C header) evict the least recently used name's session (its next
# handshake is a full one), not a name used again since.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use XT::Ejabberd;
use XT::Nginx qw(make_cert);
use XT::Prosody;
use XT::Slixmpp;
use XT::XMPP;
use XT::XmppProxy;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http stream stream_ssl/);

plan(skip_all => 'slixmpp missing') unless XT::Slixmpp::has_slixmpp();
my $no_ejabberd = XT::Ejabberd::available();

my $td = $t->testdir;

# the stock Prosody: STARTTLS required on c2s, direct TLS on its own port

my $p = XT::Prosody->new(dir => "$td/prosody", tls => 1, direct_tls => 1,
    domains => ['example.com'],
    users => [['alice', 'example.com', 'alice-pw'],
              ['bob', 'example.com', 'bob-pw']]);

# a Prosody that offers no STARTTLS at all (its tls module off)

my $q = XT::Prosody->new(dir => "$td/prosody-plain", tls => 0,
    domains => ['example.com'],
    users => [['alice', 'example.com', 'alice-pw'],
              ['bob', 'example.com', 'bob-pw']],
    extra => <<'EOF');
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "posix"; }
EOF

my $e = $no_ejabberd ? undef : XT::Ejabberd->new(dir => "$td/ejabberd",
    tls => 1, domains => ['e.test'],
    users => [['alice', 'e.test', 'alice-pw'], ['bob', 'e.test', 'bob-pw']]);

my ($p_crt, $p_key) = $p->cert('example.com');
my $e_crt = $e ? ($e->cert)[0] : $p_crt;

# the client certificate nginx presents, and a CA that signed nothing here

make_cert("$td/proxy.crt", "$td/proxy.key", cn => 'proxy.test');
make_cert("$td/other.crt", "$td/other.key", cn => 'example.com');

my $e_port = $e ? $e->port : $p->port;
my $p_port = $p->port;
my $p_tls = $p->tls_port;
my $q_port = $q->port;

my %mode = (
    direct     => "xmpp_proxy_ssl on;",
    ejabberd   => "xmpp_proxy_ssl starttls;\n"
                  . "        xmpp_proxy_ssl_trusted_certificate $e_crt;",
    badname    => "xmpp_proxy_ssl starttls;\n"
                  . "        xmpp_proxy_ssl_name wrong.example;",
    badca      => "xmpp_proxy_ssl starttls;\n"
                  . "        xmpp_proxy_ssl_trusted_certificate $td/other.crt;",
    nostarttls => "xmpp_proxy_ssl starttls;",
    front      => "xmpp_proxy_ssl on;\n"
                  . "        xmpp_proxy_ssl_certificate $td/proxy.crt;\n"
                  . "        xmpp_proxy_ssl_certificate_key $td/proxy.key;",
    noreuse    => "xmpp_proxy_ssl on;\n"
                  . "        xmpp_proxy_ssl_session_reuse off;",
    evict      => "xmpp_proxy_ssl on;\n"
                  . "        xmpp_proxy_ssl_verify off;",
    evict12    => "xmpp_proxy_ssl on;\n"
                  . "        xmpp_proxy_ssl_verify off;\n"
                  . "        xmpp_proxy_ssl_protocols TLSv1.2;",
    header     => "",
);

my $n = 8100;
my (%port, $servers);
for my $m (sort keys %mode) {
    $port{$m} = $n++;
    $servers .= <<"EOF";

    server {
        listen 127.0.0.1:%%PORT_$port{$m}%%;
        protocol xmpp;
        starttls only;
        auth_http_header X-Mode $m;
        $mode{$m}
    }
EOF
}

my $conf = XT::XmppProxy::conf(
    backend => '$xt_port',
    mail => 'xmpp_proxy_ssl starttls;',
    http => <<"EOF",
    map \$http_x_mode \$xt_port {
        direct      $p_tls;
        ejabberd    $e_port;
        badname     $p_port;
        badca       $p_port;
        nostarttls  $q_port;
        front       %%PORT_8200%%;
        noreuse     %%PORT_8200%%;
        evict       %%PORT_8200%%;
        evict12     %%PORT_8200%%;
        default     $p_port;
    }

    # per login: alice's with STARTTLS to the backend, bob's without

    map "\$http_x_mode:\$http_auth_user" \$xt_proxy_ssl {
        "header:alice\@example.com"  starttls;
        default                     "";
    }
EOF
    auth => "            add_header Auth-XMPP-Proxy-SSL \$xt_proxy_ssl;\n",
);

$conf =~ s/^mail \{\n/mail {\n    xmpp_proxy_ssl_trusted_certificate $p_crt;\n/m
    or die "no mail block";
$conf =~ s/\}\n*\z/$servers}\n/ or die "no end of mail block";

$conf .= <<"EOF";

stream {
    log_format tls '\$ssl_session_reused|\$ssl_client_s_dn|\$ssl_server_name';

    server {
        listen 127.0.0.1:%%PORT_8200%% ssl;
        ssl_certificate $p_crt;
        ssl_certificate_key $p_key;
        ssl_verify_client optional_no_ca;
        ssl_session_cache shared:front:1m;
        access_log %%TESTDIR%%/front.log tls;
        proxy_pass 127.0.0.1:$q_port;
    }
}
EOF

$t->gen_cert('xmpp', cn => 'example.com');
$t->write_file_expand('nginx.conf', $conf);
$t->run();
$t->plan(44);

my $port = $t->port(5222);

###############################################################################

# the stock Prosody, STARTTLS and direct TLS to it: a real client

my ($ok, $out) = XT::Slixmpp::roundtrip(port => $port, mode => 'starttls',
    a => ['alice@example.com', 'alice-pw'], b => ['bob@example.com', 'bob-pw']);
ok($ok, 'slixmpp round trip, STARTTLS to the stock Prosody') or diag($out);

($ok, $out) = XT::Slixmpp::roundtrip(port => $t->port(5223), mode => 'direct',
    a => ['alice@example.com', 'alice-pw'], b => ['bob@example.com', 'bob-pw']);
ok($ok, 'slixmpp round trip, direct TLS client, STARTTLS to Prosody')
    or diag($out);

($ok, $out) = XT::Slixmpp::roundtrip(port => $t->port($port{direct}),
    mode => 'starttls',
    a => ['alice@example.com', 'alice-pw'], b => ['bob@example.com', 'bob-pw']);
ok($ok, 'slixmpp round trip, direct TLS to Prosody') or diag($out);

# what the backend offers after the login on its secure stream: no
# STARTTLS again, resource binding

my $c = tls_stream($port);
$c->auth_plain('alice', 'alice-pw');
like($c->read_element // '', qr/^<success\b/, 'login over TLS to backend');
$c->open_stream('example.com');
like($c->read_element // '', qr/^<stream:stream\b/, 'restart relayed');
my $f = $c->read_element // '';
like($f, qr/<bind\b/, 'backend offers bind after the login');
unlike($f, qr/<starttls\b/, 'backend offers no STARTTLS on its TLS stream');
$c->send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    . "<resource>raw</resource></bind></iq>");
like($c->read_element // '', qr{<jid>alice\@example\.com/raw</jid>},
    'bound through the TLS backend stream');
$c->close;

like($p->log, qr/TLS negotiation started for c2s/,
    'Prosody negotiated TLS on c2s');

###############################################################################

# ejabberd with starttls_required: true

SKIP: {
skip("ejabberd: $no_ejabberd", 3) if $no_ejabberd;

$c = tls_stream($t->port($port{ejabberd}), 'e.test');
$c->auth_plain('alice', 'alice-pw');
like($c->read_element // '', qr/^<success\b/, 'ejabberd: login over TLS');
$c->open_stream('e.test');
$c->read_element;
$f = $c->read_element // '';
ok($f =~ /<bind\b/ && $f !~ /<starttls\b/,
    'ejabberd: bind, no STARTTLS after the login') or diag($f);
$c->close;

($ok, $out) = XT::Slixmpp::roundtrip(port => $t->port($port{ejabberd}),
    mode => 'starttls',
    a => ['alice@e.test', 'alice-pw'], b => ['bob@e.test', 'bob-pw']);
ok($ok, 'slixmpp round trip, STARTTLS to ejabberd (starttls_required)')
    or diag($out);
}

###############################################################################

# faults: temporary-auth-failure, a log line naming the backend, no
# plaintext login

my %fault = (
    badname => qr/upstream SSL certificate does not match "wrong\.example".*upstream: 127\.0\.0\.1:$p_port/,
    badca => qr/upstream "example\.com" SSL certificate verify error: .*upstream: 127\.0\.0\.1:$p_port/,
    nostarttls => qr/upstream "example\.com" offered no STARTTLS.*upstream: 127\.0\.0\.1:$q_port/,
);

for my $m (sort keys %fault) {
    $c = tls_stream($t->port($port{$m}));
    $c->auth_plain('alice', 'alice-pw');
    like($c->read_element // '', qr/<temporary-auth-failure\/>/,
        "$m: temporary-auth-failure");
    $c->close;
    like(wait_log($t, $fault{$m}) // '', $fault{$m}, "$m: logged");
}

unlike($q->log, qr/alice\@example\.com/, 'no plaintext login to the backend '
    . 'without STARTTLS');

###############################################################################

# auth_http asks for TLS per login: alice with STARTTLS logs in to the
# stock Prosody, bob (no header, xmpp_proxy_ssl off) is refused by it

$c = tls_stream($t->port($port{header}));
$c->auth_plain('alice', 'alice-pw');
like($c->read_element // '', qr/^<success\b/,
    'Auth-XMPP-Proxy-SSL: starttls: login');
$c->close;

$c = tls_stream($t->port($port{header}));
$c->auth_plain('bob', 'bob-pw');
unlike($c->read_element // '', qr/^<success\b/,
    'no Auth-XMPP-Proxy-SSL: plain TCP, refused by the stock Prosody');
$c->close;

###############################################################################

# the client certificate, and the session kept: three logins each through
# a TLS server that logs both

for my $m (qw/front noreuse/) {
    for (1 .. 3) {
        $c = tls_stream($t->port($port{$m}));
        $c->auth_plain('alice', 'alice-pw');
        like($c->read_element // '', qr/^<success\b/, "$m: login");
        $c->close;
    }
}

my @front = wait_front($t, 6);
is(scalar @front, 6, 'six TLS connections to the front server');
is(join(',', map { (split /\|/)[0] } @front[0 .. 2]), '.,r,r',
    'session reused by the next logins');
is(join(',', map { (split /\|/)[0] } @front[3 .. 5]), '.,.,.',
    'not with xmpp_proxy_ssl_session_reuse off');
like($front[0], qr/\|CN=proxy\.test\|example\.com$/,
    'client certificate presented, SNI the user\'s domain');

# the bound of the session cache: one session per backend address and TLS
# name, the user's domain here, that of the client's stream (the front's
# certificate names none of them, hence no verification); the logins
# themselves fail at the backend, which serves example.com only; the
# cache is per worker, the harness runs one.  With TLS 1.3 a resumed
# handshake brings a new ticket, which is saved; with TLS 1.2 a resumed
# session brings none, and the use alone must keep it from being evicted

my $sessions = cache_size();
my @d = map { "d$_.test" } 0 .. $sessions;

for my $m (['evict', 'TLS 1.3'], ['evict12', 'TLS 1.2']) {
    my ($mode, $v) = @$m;
    evict_login($mode, $d[$_]) for 0 .. $sessions - 1;
    is(evict_login($mode, $d[0]), 'r',
        "$v, $sessions names: the first one's session kept");
    is(evict_login($mode, $d[$sessions]), '.',
        "$v, one name more: a full handshake");
    is(evict_login($mode, $d[1]), '.',
        "$v: the least recently used name evicted");
    is(evict_login($mode, $d[0]), 'r', "$v: a name used since kept");
    is(evict_login($mode, $d[$sessions]), 'r', "$v: the newest name kept");
    is(scalar(grep { $_ eq 'r' } map { evict_login($mode, $_) }
        @d[3 .. $sessions]), $sessions - 2, "$v: the others kept");
}

# "xmpp_proxy_ssl starttls" in the mail block is for the backends: an
# xmpp-server-out server in the same block keeps its own default (on)

my $t2 = XT::Nginx->new();
$t2->write_file_expand('nginx.conf', <<"EOF");
%%TEST_GLOBALS%%

events {
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    xmpp_proxy_ssl starttls;
    xmpp_proxy_ssl_trusted_certificate $p_crt;

    server {
        listen 127.0.0.1:%%PORT_5269%%;
        protocol xmpp-server-out;
    }
}
EOF
my ($rc, $o) = $t2->config_test;
is($rc, 0, 'mail-level "starttls" with an xmpp-server-out server') or diag($o);

###############################################################################

sub tls_stream {
    my ($port, $domain) = @_;
    my $c = XT::XMPP->new(port => $port) or die $XT::XMPP::ERROR;
    $c->tls_stream($domain // 'example.com') or die $c->error;
    return $c;
}

sub wait_log {
    my ($t, $re) = @_;
    for (1 .. 100) {
        my $log = $t->read_file('error.log');
        return $1 if $log =~ /^(.*$re.*)$/m;
        select undef, undef, undef, 0.1;
    }
    return undef;
}

# the front server's log lines of TLS connections (not the harness's port
# probe), once there are $lines of them

sub wait_front {
    my ($t, $lines) = @_;
    my @l;
    for (1 .. 100) {
        @l = grep { !/^\.\|-\|-$/ } split /\n/,
            eval { $t->read_file('front.log') } // '';
        last if @l >= $lines;
        select undef, undef, undef, 0.1;
    }
    return @l;
}

# a login of a user of that domain through an "evict" server, one at a
# time (its front log line awaited): 'r' if its handshake resumed a
# session, '.' if not

sub evict_login {
    my ($mode, $domain) = @_;
    my $c = tls_stream($t->port($port{$mode}), $domain);
    $c->auth_plain('alice', 'alice-pw');
    $c->read_element;
    $c->close;
    @front = wait_front($t, @front + 1);
    my ($reused, undef, $sni) = split /\|/, $front[-1] // '';
    return "no front log line for $domain" unless defined $sni;
    return "SNI $sni for $domain" unless $sni eq $domain;
    return $reused;
}

# the number of sessions a server block keeps, from the C header

sub cache_size {
    my $h = "$FindBin::Bin/../src/mail/ngx_mail_xmpp_module.h";
    open my $fh, '<', $h or die "$h: $!";
    local $/;
    my ($n) = <$fh> =~ /^#define\s+NGX_MAIL_XMPP_SSL_SESSIONS\s+(\d+)/m
        or die "no NGX_MAIL_XMPP_SSL_SESSIONS in $h";
    return $n;
}
