package XT::Prosody;

# A private, real Prosody (Debian's 0.12) for one test.
#
#   my $p = XT::Prosody->new(
#       dir     => $t->testdir . '/prosody',   # created; must be private
#       domains => ['example.com'],
#       users   => [['alice', 'example.com', 'secret'], ...],
#       tls     => 0 | 1,        # 1: STARTTLS required, self-signed cert
#       direct_tls => 0 | 1,     # 1: also a XEP-0368 direct TLS port
#       extra   => "lua config lines appended to the global section",
#       timeout => 15,
#   );                           # started and listening when new() returns
#   $p->port;  $p->tls_port;  $p->host;  $p->log;  $p->config_file;
#   $p->cert($domain);  $p->register($user, $domain, $pass);
#   $p->stop;  $p->start;  $p->restart;  $p->alive;   (XT::Daemon: stop
#                                # also on DESTROY, END and SIGINT/TERM)
#
# With tls => 0 Prosody accepts SASL PLAIN over plain TCP (as a backend
# behind the proxy); with tls => 1 it requires STARTTLS before
# authentication.  A certificate for every domain is made with openssl
# (DIR/certs/DOMAIN.crt/.key) in both cases, so TLS can always be
# negotiated.  No s2s, http or component ports are opened: c2s (and the
# direct TLS port when asked) on 127.0.0.1 only.
#
# For s2s tests (dialback on a loopback address of XT::Nginx's
# loopback_net), the Lua lines for extra and the files they name:
#
#   extra => XT::Prosody::s2s_extra(
#       dir        => D,            # writes D/hosts and D/resolv.conf
#       ip         => IP,           # s2s_interfaces
#       port       => 5269,         # s2s_ports (the default)
#       hosts      => [[IP, NAME], ...],   # libunbound's hoststxt
#       nameserver => IP,           # resolvconf: one nobody answers makes
#                                   # SRV lookups fail at once
#       require_encryption => 0 | 1,       # s2s_require_encryption
#       tls        => 1 | 0,        # 0: no "tls" module (no STARTTLS)
#       extra      => "more lua lines",
#   )
#
# Never run "prosody --version": it starts the system Prosody.

use strict;
use warnings;

use File::Path qw(make_path);

use XT::Daemon;
use XT::Nginx qw(free_port make_cert);

our @ISA = ('XT::Daemon');

my $PROSODY = '/usr/bin/prosody';
my $PROSODYCTL = '/usr/bin/prosodyctl';

sub new {
    my ($class, %o) = @_;
    my $dir = $o{dir} or die "XT::Prosody: dir is required\n";
    die "XT::Prosody: prosody is not installed (run auto/deps)\n" unless -x $PROSODY;

    my $self = bless {
        dir        => $dir,
        domains    => $o{domains} // ['example.com'],
        users      => $o{users} // [],
        tls        => $o{tls} ? 1 : 0,
        direct_tls => $o{direct_tls} ? 1 : 0,
        extra      => $o{extra} // '',
        timeout    => $o{timeout} // 15,
        port       => $o{port} // free_port(),
    }, $class;
    $self->{tls_port} = $o{tls_port} // free_port() if $self->{direct_tls};

    make_path("$dir/data", "$dir/certs");
    chmod 0750, $dir;
    $self->_certs;
    $self->_write_config;
    $self->register(@$_) for @{ $self->{users} };

    $self->daemon_init;
    $self->start unless $o{no_start};
    return $self;
}

sub tls_port    { $_[0]{tls_port} }
sub config_file { "$_[0]{dir}/prosody.cfg.lua" }

# XT::Daemon: what runs, its ports and its log
sub command  { ($PROSODY, '-F', '--config', $_[0]->config_file) }
sub log_file { "$_[0]{dir}/prosody.log" }

sub ports {
    my ($self) = @_;
    return ($self->{port}, $self->{direct_tls} ? $self->{tls_port} : ());
}

sub cert {
    my ($self, $domain) = @_;
    $domain //= $self->{domains}[0];
    return ("$self->{dir}/certs/$domain.crt", "$self->{dir}/certs/$domain.key");
}

sub _certs {
    my ($self) = @_;
    for my $d (@{ $self->{domains} }) {
        my ($crt, $key) = $self->cert($d);
        next if -f $crt;
        make_cert($crt, $key, cn => $d, alt => [$d, "*.$d"]);
    }
}

sub _lua_str {
    my ($s) = @_;
    $s =~ s/(["\\])/\\$1/g;
    return qq{"$s"};
}

sub _write_config {
    my ($self) = @_;
    my $d = $self->{dir};
    my $q = \&_lua_str;
    my $tls = $self->{tls};
    my $direct = $self->{direct_tls} ? "{ $self->{tls_port} }" : '{ }';

    my $cfg = <<"EOF";
-- written by XT::Prosody for one test run
pidfile = ${\ $q->("$d/prosody.pid")}
data_path = ${\ $q->("$d/data")}
certificates = ${\ $q->("$d/certs")}
run_as_root = true
log = {
    debug = ${\ $q->("$d/prosody.log")};
}

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $self->{port} }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = $direct
c2s_direct_tls_interfaces = { "127.0.0.1" }
legacy_ssl_ports = { }
s2s_ports = { }
s2s_direct_tls_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }

modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix";
}
modules_disabled = { "s2s"; }

authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = ${\ ($tls ? 'true' : 'false')}
allow_unencrypted_plain_auth = ${\ ($tls ? 'false' : 'true')}
s2s_require_encryption = false
-- tests connect and disconnect fast; no throttling
c2s_timeout = 60
EOF
    $cfg .= "\n-- extra\n$self->{extra}\n" if length $self->{extra};

    for my $dom (@{ $self->{domains} }) {
        my ($crt, $key) = $self->cert($dom);
        $cfg .= "\nVirtualHost " . $q->($dom) . "\n"
            . "    ssl = { certificate = " . $q->($crt) . "; key = " . $q->($key) . "; }\n";
    }

    open(my $fh, '>', $self->config_file) or die "XT::Prosody: write config: $!\n";
    print $fh $cfg;
    close $fh;
}

# s2s_extra(%o): see the header
sub s2s_extra {
    my (%o) = @_;
    my $d = $o{dir} or die "XT::Prosody::s2s_extra: dir is required\n";
    my $ns = $o{nameserver}
        or die "XT::Prosody::s2s_extra: nameserver is required\n";
    my $port = $o{port} // 5269;
    my $enc = $o{require_encryption} ? 'true' : 'false';
    my @mods = ('roster', 'saslauth', (($o{tls} // 1) ? 'tls' : ()),
        'disco', 'ping', 'posix', 'dialback');
    my $extra = $o{extra} // '';
    $extra .= "\n" if length $extra && $extra !~ /\n\z/;

    make_path($d);
    for ([hosts => join('', map { "$_->[0] $_->[1]\n" } @{ $o{hosts} // [] })],
        ['resolv.conf' => "nameserver $ns\n"])
    {
        open(my $fh, '>', "$d/$_->[0]")
            or die "XT::Prosody::s2s_extra: write $d/$_->[0]: $!\n";
        print $fh $_->[1];
        close $fh;
    }

    return <<"EOF" . $extra;
modules_disabled = { }
modules_enabled = {
    ${\ join(' ', map { "\"$_\";" } @mods)}
}
s2s_ports = { $port }
s2s_interfaces = { "$o{ip}" }
s2s_require_encryption = $enc
s2s_secure_auth = false
unbound = { hoststxt = "$d/hosts"; resolvconf = "$d/resolv.conf" }
EOF
}

# register($user, $domain, $pass): creates (or overwrites) an account with
# prosodyctl, works whether Prosody runs or not.
sub register {
    my ($self, $user, $domain, $pass) = @_;
    my ($rc, $out) = XT::Daemon::run_quiet($PROSODYCTL,
        '--config', $self->config_file, 'register', $user, $domain, $pass);
    die "XT::Prosody: prosodyctl register $user\@$domain failed ($rc):\n$out" if $rc;
    return $self;
}

1;
