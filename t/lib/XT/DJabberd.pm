package XT::DJabberd;

# A private, real DJabberd for one test: upstream DJabberd or FastMail's
# fork, from the source tarballs in ../shared/djabberd/ (not a Debian
# package), unpacked once into build/djabberd/TREE/ by auto/djabberd and
# run from there.
#
#   my $d = XT::DJabberd->new(
#       dir     => $t->testdir . '/djabberd',  # created; must be private
#       tree    => 'upstream' | 'fastmail',    # default: upstream
#       domains => ['d.test'],
#       users   => [['alice', 'd.test', 'secret'], ...],
#       s2s     => 0 | 1,        # 1: S2S enabled, a ServerPort ($d->s2s_port)
#       s2s_host => '127.0.0.1', # the address of the ServerPort
#       s2s_peers => { 'r.test' => '127.1.2.3:5269', ... },
#                                # where DJabberd finds these s2s peers
#       nameserver => '127.0.0.1:5353', # or by DNS, from this server
#       extra   => "config lines appended to every <VHost>",
#       timeout => 15,
#   );                           # started and listening when new() returns
#   $d->port;  $d->s2s_port;  $d->host;  $d->log;  $d->config_file;
#   $d->tree;  $d->version;  $d->stop;  $d->start;  $d->restart;  $d->alive
#   (XT::Daemon: stop also on DESTROY, END and SIGINT/TERM)
#
#   XT::DJabberd::available($tree)  -> '' or why it cannot run here
#   XT::DJabberd::trees()           -> ('upstream', 'fastmail')
#
# The c2s port is plain TCP on 127.0.0.1 and offers SASL PLAIN without
# TLS (no certificate, RequireSSL no): a backend behind nginx.  Every user
# has their own password (t/lib/DJabberd/Authen/XTPasswords.pm, a plugin
# of the harness: DJabberd's own have one password for all or accounts
# made at run time), so a wrong password is refused.  Rosters are kept in
# memory.  The log (log4perl, DEBUG: every stanza in and out) is
# DIR/djabberd.log.
#
# s2s_peers: DJabberd finds a remote server (for an outgoing stream, and
# the authoritative server it checks a dialback key with) by DNS SRV and
# A lookups, except for the names given to DJabberd->set_fake_s2s_peer,
# which no configuration directive sets.  With s2s_peers DJabberd is
# started through t/lib/xt_djabberd_launch.pl, which sets them and then
# runs the tree's djabberd script; without it the script runs directly.
# The ServerPort listens on s2s_host (127.0.0.1 by default) either way.
# nameserver: DJabberd's resolver (Net::DNS, made as DJabberd::DNS loads)
# asks this server instead of /etc/resolv.conf's, set by Net::DNS's own
# environment variables RES_NAMESERVERS and RES_OPTIONS ("port:N"); a
# test's XT::Dnsmasq then gives the SRV and A records, as an operator's
# DNS would.
#
# Sources: see auto/djabberd (DJABBERD_SOURCES, default ../shared/djabberd).
# The Perl modules DJabberd needs are Debian packages (auto/packages).

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Path qw(make_path);

use XT::Daemon;
use XT::Nginx qw(free_port repo_root);

our @ISA = ('XT::Daemon');

# the Perl modules DJabberd loads (Debian: auto/packages)
my @MODULES = qw(Danga::Socket XML::LibXML XML::SAX Net::DNS Net::SSLeay
    Log::Log4perl Digest::HMAC_SHA1 Unicode::Stringprep IO::Socket::INET6
    HTML::Entities);

sub trees { qw(upstream fastmail) }

# tree_dir($tree): (the unpacked tree, '') or (undef, why not)
sub tree_dir {
    my ($tree) = @_;
    my ($rc, $out) = XT::Daemon::run_quiet(repo_root() . '/auto/djabberd',
        $tree);
    my ($dir) = $out =~ m{(/\S+)\s*\z};
    return ($dir, '') if $rc == 0 && $dir && -f "$dir/djabberd";
    $out =~ s/\s+\z//;
    return (undef, "auto/djabberd $tree: $out");
}

# available($tree): '' when the tree can run here, else the reason
sub available {
    my ($tree) = @_;
    my @missing = grep { !eval "require $_; 1" } @MODULES;
    return "Perl modules missing (run auto/deps): @missing" if @missing;
    my ($dir, $why) = tree_dir($tree // 'upstream');
    return $why;
}

sub new {
    my ($class, %o) = @_;
    my $dir = $o{dir} or die "XT::DJabberd: dir is required\n";
    my $tree = $o{tree} // 'upstream';
    if (my $why = available($tree)) {
        die "XT::DJabberd: $why\n";
    }
    my ($src) = tree_dir($tree);

    my $self = bless {
        dir      => $dir,
        tree     => $tree,
        src      => $src,
        domains  => $o{domains} // ['d.test'],
        users    => $o{users} // [],
        s2s      => $o{s2s} ? 1 : 0,
        extra    => $o{extra} // '',
        s2s_peers => $o{s2s_peers} // {},
        nameserver => $o{nameserver},
        timeout  => $o{timeout} // 15,
        port     => $o{port} // free_port(),
    }, $class;
    $self->{s2s_port} = $o{s2s_port} // free_port();
    $self->{s2s_host} = $o{s2s_host} // '127.0.0.1';

    make_path($dir);
    chmod 0750, $dir;
    $self->_write_config;

    $self->daemon_init;
    $self->start unless $o{no_start};
    return $self;
}

sub tree        { $_[0]{tree} }
sub s2s_port    { $_[0]{s2s} ? $_[0]{s2s_port} : undef }
sub config_file { "$_[0]{dir}/djabberd.conf" }
sub name        { "djabberd ($_[0]{tree})" }

# the version in the tree's lib/DJabberd.pm
sub version {
    my ($self) = @_;
    open(my $fh, '<', "$self->{src}/lib/DJabberd.pm") or return undef;
    while (<$fh>) {
        return $1 if /\$VERSION\s*=\s*'([^']+)'/;
    }
    return undef;
}

# XT::Daemon: what runs, its ports and its log
sub command {
    my ($self) = @_;
    my $lib = abs_path(repo_root() . '/t/lib');
    my $peers = $self->{s2s_peers};
    my @launch = %$peers ? ("$lib/xt_djabberd_launch.pl",
        map { "--xt-peer=$_=$peers->{$_}" } sort keys %$peers) : ();
    my @env;
    if (defined(my $ns = $self->{nameserver})) {
        my ($ip, $port) = $ns =~ /^([\d.]+):(\d+)\z/
            or die "XT::DJabberd: nameserver is IP:PORT, not \"$ns\"\n";
        @env = ('env', "RES_NAMESERVERS=$ip", "RES_OPTIONS=port:$port");
    }
    return (@env, $^X, '-I', "$self->{src}/lib", '-I', $lib, @launch,
        "$self->{src}/djabberd", '--conffile=' . $self->config_file,
        "--logconf=$self->{dir}/log.conf");
}

sub log_file { "$_[0]{dir}/djabberd.log" }

sub ports {
    my ($self) = @_;
    # start() waits on 127.0.0.1; all ports listen before DJabberd serves
    return ($self->{port},
        $self->{s2s} && $self->{s2s_host} eq '127.0.0.1'
            ? $self->{s2s_port} : ());
}

sub _write_config {
    my ($self) = @_;
    my $d = $self->{dir};

    my %pw;
    for my $u (@{ $self->{users} }) {
        my ($user, $dom, $pass) = @$u;
        die "XT::DJabberd: a password with a newline\n" if $pass =~ /\n/;
        $pw{$dom} .= "$user $pass\n";
    }

    my $cfg = "# written by XT::DJabberd for one test run\n"
        . "ClientPort 127.0.0.1:$self->{port}\n"
        . "ServerPort $self->{s2s_host}:$self->{s2s_port}\n"
        . "PidFile $d/djabberd.pid\n";

    for my $dom (@{ $self->{domains} }) {
        my $file = "$d/passwords-$dom";
        XT::Daemon::write_file("$file", $pw{$dom} // '');
        chmod 0600, $file;
        $cfg .= <<"EOF";

<VHost $dom>
  S2S ${\ ($self->{s2s} ? 'enable' : 'disable')}
  RequireSSL no
  <Plugin DJabberd::SASL::AuthenSASL>
    Optional yes
    Mechanisms PLAIN
  </Plugin>
  <Plugin DJabberd::Authen::XTPasswords>
    PasswordFile $file
  </Plugin>
  <Plugin DJabberd::RosterStorage::InMemoryOnly />
$self->{extra}
</VHost>
EOF
    }
    XT::Daemon::write_file($self->config_file, $cfg);

    XT::Daemon::write_file("$d/log.conf", <<"EOF");
log4perl.logger.DJabberd = DEBUG, LOGFILE
log4perl.appender.LOGFILE = Log::Log4perl::Appender::File
log4perl.appender.LOGFILE.filename = $d/djabberd.log
log4perl.appender.LOGFILE.mode = append
log4perl.appender.LOGFILE.layout = Log::Log4perl::Layout::PatternLayout
log4perl.appender.LOGFILE.layout.ConversionPattern = %d %-5p %c %m%n
EOF
}


1;
