package XT::Ejabberd;

# A private, real ejabberd (Debian's 23.01) for one test file.
#
#   my $e = XT::Ejabberd->new(
#       dir      => $t->testdir . '/ejabberd',  # created; owned by "ejabberd"
#       domains  => ['e.test'],
#       users    => [['alice', 'e.test', 'secret'], ...],
#       proxy_protocol => 0 | 1,  # 1: a second c2s port with
#                                 #    use_proxy_protocol: true ($e->pp_port)
#       s2s_proxy_protocol => 0 | 1,  # 1: an s2s port (plain TCP, dialback)
#                                 #    with use_proxy_protocol: true
#                                 #    ($e->s2s_pp_port)
#       s2s      => 0 | 1,        # 1: an s2s port (plain TCP, dialback,
#                                 #    no PROXY protocol) ($e->s2s_port)
#       nameserver => 'IP:PORT',  # the DNS server of ejabberd's resolver
#                                 #    (inetrc), instead of resolv.conf
#       resume_timeout => 60,     # mod_stream_mgmt (XEP-0198), always on
#       tls      => 0 | 1,        # 1: the c2s port with starttls_required
#                                 #    and a certificate for every domain
#                                 #    ($e->cert: DIR/conf/tls.crt, .key)
#       loglevel => 'info',       # info logs logins with their address
#       extra    => "yaml appended to ejabberd.yml",
#       timeout  => 30,
#       cluster  => { name => 'ejabberd1', ip => '127.0.0.2',
#                     dist_port => P, cookie => C },   # a cluster node
#       http_port => P,           # an ejabberd_http listener without
#                                 # handlers (404 to all) on the node's
#                                 # dist IP ($e->dist_ip): a health check
#   );                            # started, users registered, when new() returns
#   $e->port;  $e->pp_port;  $e->host;  $e->node;  $e->dir;
#   $e->ctl(@args)      -> ($exit_code, $output)   (ejabberdctl ARGS)
#   $e->register($user, $domain, $pass);
#   $e->sessions($user, $domain)  -> user_sessions_info output
#   $e->log;            # ejabberd.log so far
#   $e->stop;  $e->start;  $e->restart;  $e->alive;   (XT::Daemon: stop
#                 also on DESTROY, END and SIGINT/TERM; stop(graceful => 1)
#                 lets the VM shut down cleanly)
#
# The instance has its own config dir (ejabberd.yml, ejabberdctl.cfg with
# its own node name, cookie and ERL_DIST_PORT: no epmd is started or
# used), its own Mnesia spool and log dir.  It is run as
#
#   sh -c 'ulimit -n 65536; exec setpriv --reuid=ejabberd ... ejabberdctl
#       --config-dir D --spool S --logs L foreground'
#
# because ejabberdctl switches to the "ejabberd" user anyway when started
# by root (with su), and that user's open-file limit (1024) is too low for
# load: the limit is raised (as root) before the switch.  All of DIR is
# chowned to "ejabberd", which must be able to reach it (the test's temp
# dir is 0755).
#
# The c2s listener is plain TCP on 127.0.0.1 and offers SASL PLAIN without
# TLS (no certificate is configured, starttls is not required): it is a
# backend behind nginx, not a server for clients.  Passwords are stored in
# plain so that PLAIN works with the internal auth backend.  No s2s (unless
# s2s or s2s_proxy_protocol), http (unless http_port) or other listeners;
# the distribution port listens on 127.0.0.1 only (or the cluster IP).
#
# A cluster (cluster => {...}, or XT::Ejabberd::cluster() below): the
# node is NAME@IP (a long name) with the given cookie, and its Erlang
# distribution listens on IP:DIST_PORT.  ejabberdctl's ERL_DIST_PORT runs
# the VM with "-erl_epmd_port P -start_epmd false": without epmd a node
# assumes that every other node listens on that same port P, at the
# address of its host part.  So the nodes of one cluster share the port
# and cookie and differ by loopback address (127.0.0.2, 127.0.0.3, ...:
# Linux answers on all of 127/8), each bound there with
# "-kernel inet_dist_use_interface".  The c2s listeners stay on
# 127.0.0.1, each on a port of its own.
#
#   my @nodes = XT::Ejabberd::cluster(dir => BASE, nodes => 2,
#       users => [...], %other_options_of_new);
#
# starts the nodes (BASE/ejabberd1, BASE/ejabberd2, ...), joins nodes
# 2.. to node 1 with "ejabberdctl join_cluster" (Mnesia is then shared:
# the users, registered once on node 1, are known to all) and returns
# them once "ejabberdctl list_cluster" on each lists them all.
#   $e->join_cluster($node_name);  $e->list_cluster -> (node names)
# sessions() shows a session's node (ejabberd's session table is shared).
#
# Names: ejabberd's s2s SRV lookups (_xmpp-server._tcp.DOMAIN) go through
# Erlang's own resolver (inet_res), which takes its name servers from the
# inetrc (ERL_INETRC, here DIR/conf/inetrc; "nameserver" sets them), but
# the address lookups of the domain and of SRV targets go through the C
# library (net:getaddrinfo in xmpp 1.6.1): "host" entries of the inetrc
# do not reach them.
#
# Not thread-safe across processes with the same dir.  Must run as root
# (or as the ejabberd user).

use strict;
use warnings;

use File::Path qw(make_path);
use Time::HiRes qw(sleep);

use XT::Daemon;
use XT::Nginx qw(free_port make_cert);

our @ISA = ('XT::Daemon');

our $EJABBERDCTL = '/usr/sbin/ejabberdctl';
our $USER = 'ejabberd';
our $NOFILE = 65536;    # or the hard limit, if lower (a container may
                        # not let even root raise it)

# available(): '' if a private ejabberd can run here, else the reason.
sub available {
    return "ejabberd is not installed ($EJABBERDCTL missing; run auto/deps)"
        unless -x $EJABBERDCTL;
    return "no system user '$USER'" unless defined getpwnam($USER);
    my $me = getpwuid($<) // '';
    return "must run as root or $USER (running as $me)"
        unless $< == 0 || $me eq $USER;
    return '';
}

sub new {
    my ($class, %o) = @_;
    my $dir = $o{dir} or die "XT::Ejabberd: dir is required\n";
    if (my $why = available()) { die "XT::Ejabberd: $why\n" }

    my $self = bless {
        dir            => $dir,
        domains        => $o{domains} // ['example.com'],
        users          => $o{users} // [],
        proxy_protocol => $o{proxy_protocol} ? 1 : 0,
        s2s_proxy_protocol => $o{s2s_proxy_protocol} ? 1 : 0,
        s2s            => $o{s2s} ? 1 : 0,
        nameserver     => $o{nameserver},
        resume_timeout => $o{resume_timeout} // 60,
        tls            => $o{tls} ? 1 : 0,
        loglevel       => $o{loglevel} // 'info',
        extra          => $o{extra} // '',
        timeout        => $o{timeout} // 30,
        port           => $o{port} // free_port(),
        dist_port      => free_port(),
        process_group  => 1,    # stop() kills the group (sh, beam)
    }, $class;
    $self->{pp_port} = $o{pp_port} // free_port() if $self->{proxy_protocol};
    $self->{s2s_pp_port} = free_port() if $self->{s2s_proxy_protocol};
    $self->{s2s_port} = free_port() if $self->{s2s};
    $self->{node} = "xt$self->{dist_port}\@localhost";
    $self->{cookie} = join '', map { ('A' .. 'Z')[rand 26] } 1 .. 20;
    $self->{dist_ip} = '127.0.0.1';
    if (my $c = $o{cluster}) {
        $self->{$_} = $c->{$_} for qw(dist_port cookie);
        $self->{dist_ip} = $c->{ip};
        $self->{node} = "$c->{name}\@$c->{ip}";
    }
    $self->{http_port} = $o{http_port};

    make_path("$dir/conf", "$dir/spool", "$dir/logs");
    make_cert($self->cert, cn => $self->{domains}[0],
        alt => $self->{domains}) if $self->{tls};
    $self->_write_config;
    my ($uid, $gid) = (getpwnam($USER))[2, 3];
    _chown_r($uid, $gid, $dir);

    $self->daemon_init;
    $self->start;
    $self->register_many(@{ $self->{users} });
    return $self;
}

sub pp_port { $_[0]{pp_port} }
sub cert    { ("$_[0]{dir}/conf/tls.crt", "$_[0]{dir}/conf/tls.key") }
sub s2s_pp_port { $_[0]{s2s_pp_port} }
sub s2s_port { $_[0]{s2s_port} }
sub node    { $_[0]{node} }
sub http_port { $_[0]{http_port} }
sub dist_ip { $_[0]{dist_ip} }

# XT::Daemon: what runs, its ports and its log; ready once the node said
# so (the listeners are bound early, commands work only then); stop() kills
# the Erlang VM (below)
sub command  { $_[0]->_as_user($_[0]->_ctl_cmd('foreground')) }
sub log_file { "$_[0]{dir}/logs/ejabberd.log" }

sub ports {
    my ($self) = @_;
    return ($self->{port},
        $self->{proxy_protocol} ? $self->{pp_port} : (),
        $self->{s2s_proxy_protocol} ? $self->{s2s_pp_port} : (),
        $self->{s2s} ? $self->{s2s_port} : ());
}

sub ready {
    my ($self) = @_;
    my $log = substr($self->log, $self->{log_start});
    return $log =~ /\bis started in the node\b/;
}

sub _chown_r {
    my ($uid, $gid, $path) = @_;
    chown $uid, $gid, $path;
    if (-d $path) {
        opendir(my $dh, $path) or return;
        for my $e (grep { $_ ne '.' && $_ ne '..' } readdir $dh) {
            _chown_r($uid, $gid, "$path/$e");
        }
    }
}

sub _yaml_str {
    my ($s) = @_;
    $s =~ s/(["\\])/\\$1/g;
    return qq{"$s"};
}

sub _write_config {
    my ($self) = @_;
    my $d = $self->{dir};
    my $hosts = join '', map { "  - " . _yaml_str($_) . "\n" } @{ $self->{domains} };

    my $starttls = $self->{tls} ? 'true' : 'false';
    my $listen = <<"EOF";
  -
    port: $self->{port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: $starttls
    max_stanza_size: 262144
EOF
    $listen .= <<"EOF" if $self->{proxy_protocol};
  -
    port: $self->{pp_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: false
    max_stanza_size: 262144
    use_proxy_protocol: true
EOF
    $listen .= <<"EOF" if $self->{s2s_proxy_protocol};
  -
    port: $self->{s2s_pp_port}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
    use_proxy_protocol: true
EOF
    $listen .= <<"EOF" if $self->{http_port};
  -
    port: $self->{http_port}
    ip: "$self->{dist_ip}"
    module: ejabberd_http
EOF
    $listen .= <<"EOF" if $self->{s2s};
  -
    port: $self->{s2s_port}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
EOF
    my $dialback = $self->{s2s_proxy_protocol} || $self->{s2s}
        ? "  mod_s2s_dialback: {}\n" : '';

    my $yml = <<"EOF";
# written by XT::Ejabberd for one test run
loglevel: $self->{loglevel}
log_rotate_count: 0
hosts:
$hosts
listen:
$listen
auth_method: internal
auth_password_format: plain
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: local
  c2s:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
shaper_rules:
  max_user_sessions: 1000
  max_user_offline_messages: 1000
modules:
  mod_admin_extra: {}
  mod_caps: {}
  mod_disco: {}
  mod_offline: {}
  mod_ping: {}
  mod_roster: {}
$dialback  mod_stream_mgmt:
    resume_timeout: $self->{resume_timeout}
EOF
    $yml .= "certfiles:\n" . join('', map { "  - " . _yaml_str($_) . "\n" }
        $self->cert) if $self->{tls};
    $yml .= "\n# extra\n$self->{extra}\n" if length $self->{extra};

    XT::Daemon::write_file("$d/conf/ejabberd.yml", $yml);
    my $dist_if = join ',', split /\./, $self->{dist_ip};
    XT::Daemon::write_file("$d/conf/ejabberdctl.cfg", <<"EOF");
# written by XT::Ejabberd: a node of its own, no epmd
ERLANG_NODE=$self->{node}
ERL_DIST_PORT=$self->{dist_port}
ERL_OPTIONS="-setcookie $self->{cookie} -kernel inet_dist_use_interface {$dist_if}"
EJABBERD_BYPASS_WARNINGS=true
EOF
    # "localhost" must resolve without DNS: the node name is NAME@localhost
    my $resolv = qq({file, resolv, "/etc/resolv.conf"}.);
    if (defined $self->{nameserver}) {
        my ($ip, $port) = $self->{nameserver} =~ /^([\d.]+):(\d+)$/
            or die "XT::Ejabberd: nameserver must be IP:PORT\n";
        $resolv = qq({resolv_conf, ""}.\n{nameserver, {)
            . join(',', split /\./, $ip) . "}, $port}.";
    }
    XT::Daemon::write_file("$d/conf/inetrc", <<"EOF");
{lookup,["file","native"]}.
{host,{127,0,0,1}, ["localhost"]}.
$resolv
EOF
}


sub _ctl_cmd {
    my ($self, @args) = @_;
    my $d = $self->{dir};
    return ($EJABBERDCTL, '--config-dir', "$d/conf", '--spool', "$d/spool",
        '--logs', "$d/logs", @args);
}

# The command line that runs ejabberdctl ARGS as the ejabberd user with a
# raised open-file limit.  setpriv, not su: su puts its child into a new
# session, where stop() could not reach the Erlang VM by process group.
sub _as_user {
    my ($self, @cmd) = @_;
    my $sh = join ' ', map { my $a = $_; $a =~ s/'/'\\''/g; "'$a'" } @cmd;
    my $switch = $< == 0
        ? "setpriv --reuid=$USER --regid=$USER --init-groups env HOME='$self->{dir}/spool' "
        : '';
    my $script = "ulimit -Hn $NOFILE 2>/dev/null; "
        . "ulimit -n $NOFILE 2>/dev/null || ulimit -n \$(ulimit -Hn); "
        . "cd '$self->{dir}/spool' && exec $switch$sh";
    return ('/bin/sh', '-c', $script);
}

# ctl(@args): runs "ejabberdctl ARGS" against this node.
sub ctl {
    my ($self, @args) = @_;
    return XT::Daemon::run_quiet($self->_as_user($self->_ctl_cmd(@args)));
}

sub register {
    my ($self, $user, $domain, $pass) = @_;
    my ($rc, $out) = $self->ctl('register', $user, $domain, $pass);
    die "XT::Ejabberd: register $user\@$domain failed ($rc): $out" if $rc;
    return $self;
}

# register_many([user, domain, pass], ...): in parallel (each ejabberdctl
# call starts an Erlang VM, ~0.4 s of CPU).
sub register_many {
    my ($self, @users) = @_;
    my @left = @users;
    while (@left) {
        my @batch = splice(@left, 0, 4);
        my %kids;
        for my $u (@batch) {
            my $pid = fork() // die "XT::Ejabberd: fork: $!\n";
            if ($pid == 0) {
                my ($rc, $out);
                for my $try (1 .. 5) {
                    # right after the start Mnesia may still be busy
                    # creating tables: "Database failure"
                    ($rc, $out) = $self->ctl('register', @$u);
                    last unless $rc && $out =~ /Database failure|exception/;
                    sleep 0.3;
                }
                print STDERR "XT::Ejabberd: register $u->[0]\@$u->[1] failed ($rc): $out"
                    if $rc;
                POSIX::_exit($rc ? 1 : 0);
            }
            $kids{$pid} = $u;
        }
        my @failed;
        for my $pid (keys %kids) {
            waitpid($pid, 0);
            push @failed, "$kids{$pid}[0]\@$kids{$pid}[1]" if $?;
        }
        die "XT::Ejabberd: could not register @failed\n" if @failed;
    }
    return $self;
}

# sessions($user, $domain): "ejabberdctl user_sessions_info" output, one
# line per session: connection ip port priority node uptime status
# resource statustext.
sub sessions {
    my ($self, $user, $domain) = @_;
    my ($rc, $out) = $self->ctl('user_sessions_info', $user, $domain);
    return $rc ? '' : $out;
}

# cluster(dir => BASE, nodes => N, users => [...], %o): N nodes of one
# cluster, joined (see the header)
sub cluster {
    my (%o) = @_;
    my $base = delete $o{dir} or die "XT::Ejabberd: dir is required\n";
    my $n = delete $o{nodes} // 2;
    my $users = delete $o{users} // [];
    my $timeout = $o{timeout} // 30;
    my %c = (dist_port => free_port(),
        cookie => join('', map { ('A' .. 'Z')[rand 26] } 1 .. 20));
    my @nodes = map {
        XT::Ejabberd->new(%o, dir => "$base/ejabberd$_",
            users => $_ == 1 ? $users : [],
            cluster => { %c, name => "ejabberd$_", ip => '127.0.0.' . ($_ + 1) })
    } 1 .. $n;
    $_->join_cluster($nodes[0]->node) for @nodes[1 .. $#nodes];
    my @want = sort map { $_->node } @nodes;
    my $end = time() + $timeout;
    for my $e (@nodes) {
        until (join(' ', sort $e->list_cluster) eq "@want") {
            die "XT::Ejabberd: $e->{node} lists " . join(' ', $e->list_cluster)
                . ", not @want\n" if time() > $end;
            sleep 0.2;
        }
    }
    return @nodes;
}

sub join_cluster {
    my ($self, $node) = @_;
    my ($rc, $out) = $self->ctl('join_cluster', $node);
    die "XT::Ejabberd: $self->{node}: join_cluster $node failed ($rc): $out"
        if $rc;
    return $self;
}

sub list_cluster {
    my ($self) = @_;
    my ($rc, $out) = $self->ctl('list_cluster');
    return $rc ? () : grep { length } map { s/^[\s']+|[\s']+$//gr } split /\n/, $out;
}

# stop(): SIGKILL to the Erlang VM, then to what is left of the process
# group (sh/ejabberdctl): fast, the spool is thrown away anyway.  The VM is
# killed first so that ejabberdctl, its parent, reaps it (no zombie is
# left to an init that does not reap).
# stop(graceful => 1): SIGTERM first (the VM shuts down cleanly, ~2 s,
# longer on a loaded machine; SIGKILL after 30 s, killed() then says so).
sub stop_signal {
    my ($self, %o) = @_;
    return $o{graceful} ? ('TERM', 30) : ('KILL', 3);
}

sub stop_pids { _children($_[0]{pid}) }

# _children($pid): pids whose parent is $pid
sub _children {
    my ($pid) = @_;
    my @kids;
    opendir(my $dh, '/proc') or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open(my $fh, '<', "/proc/$p/stat") or next;
        my $st = <$fh> // next;
        my ($ppid) = $st =~ /\)\s+\S+\s+(\d+)/ or next;
        push @kids, $p if $ppid == $pid;
    }
    return @kids;
}

1;
