package XT::Interop;

# The interop suite's common part (t/interop/*.t): real backends, one nginx
# in front of them, a raw "peer" client for the other side of a message
# exchange, and the results that t/interop/matrix prints as a matrix.
#
#   my $ix = XT::Interop->new(
#       name     => 'slixmpp',           # row of the matrix (client/feature)
#       part     => 'b',   # a second XT::Interop in the same test file
#       backends => ['prosody', 'ejabberd'],   # default: all four
#                   # (prosody, ejabberd, djabberd: upstream DJabberd,
#                   # djabberd-fastmail: FastMail's fork)
#       ejabberd => { proxy_protocol => 1 },    # more XT::Ejabberd options
#       prosody  => { ... },                    # more XT::Prosody options
#                   # (Prosody runs with tls => 1, its stock encryption
#                   # settings, and nginx logs in to it with STARTTLS:
#                   # auth_http's Auth-XMPP-Proxy-SSL; tls => 0 turns
#                   # both off)
#       djabberd => { ... },   # more XT::DJabberd options (both trees)
#       users    => ['alice', 'bob'],    # on every backend, password "$u-pw"
#       domains  => { prosody => ['a.test', ...], ... },  # default: one each
#                   # (users are registered on every domain of a backend)
#       mail     => '...',   # extra lines at the end of the mail block
#       http     => '...',   # extra lines in the http block
#       routes   => { 'a.test' => 'prosody', 'b.test' => PORT, ... },
#                   # domain => backend name or port (default: each
#                   # backend's first domain to it)
#       conf_filter => sub { my ($ix, $conf) = @_; $_[1] =~ s/.../.../ },
#                        # edits nginx.conf once the backends run
#   );
#   $ix->t;  $ix->prosody;  $ix->ejabberd;  $ix->backend('ejabberd');
#   $ix->domain('ejabberd');   # p.test (Prosody), e.test (ejabberd),
#                              # d.test (DJabberd), f.test (the fork): the
#                              # first of the backend's domains
#   $ix->port('starttls');     # nginx: 'starttls' port, direct 'tls' port,
#                              # or the 'scram' port
#
# nginx: a STARTTLS ("starttls only") and a direct TLS XMPP server that
# offer PLAIN, a third STARTTLS server (mode "scram") that also offers
# SCRAM-SHA-1 and SCRAM-SHA-256 with their -PLUS variants, and an
# auth_http endpoint (an http block of the same nginx) that sends each
# user to the backend of the user's domain and answers SCRAM
# requests with the keys of the user's password ("USER-pw", also the
# backend password).  Every auth request is logged in TESTDIR/auth.log as
# "user|protocol|client-ip|ssl|port|method".
# The certificate (self-signed, proxy.test, p.test, e.test) is
# TESTDIR/xmpp.crt.
#
# Cells of the matrix:
#
#   $ix->cell($backend, $mode, sub { ...tests... }, todo => 'reason');
#   $ix->na($backend, $mode, 'reason');   # the client cannot do this mode
#
# A cell passes when all the tests run inside it pass; "todo" makes them
# TODO tests (an expected failure, with the exact reason).  Results go to
# build/interop/results/TAG/FILE.json (TAG: nginx version and build kind),
# with the run id (INTEROP_RUN) that t/interop/matrix selects them by.
#
# A message exchange with a client program that follows the suite's
# client convention (t/lib/interop/README):
#
#   $ix->exchange($backend, $mode, cmd => sub { my (%a) = @_; return @argv });
#
# logs "bob" in with the raw client (XT::XMPP, through nginx, STARTTLS),
# runs the program as "alice", answers its "ping TOKEN" with "pong TOKEN"
# and checks: the login went through auth_http to the right backend and
# the program bound a resource, bob got the ping from alice's full JID,
# alice got the pong, the program exited 0.  In mode "scram" the cell
# also records the SASL mechanism (and channel binding) the program
# chose, from nginx's error log, and checks it against the expectation
# given to exchange() or program_cells() (scram => qr/.../).

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(basename dirname);
use File::Path qw(make_path);
use File::Spec;
use FindBin;
use JSON::PP ();
use POSIX qw(WNOHANG setpgid);
use Test::More;
use Time::HiRes qw(sleep time);

use XT::Nginx qw(repo_root);
use XT::Prosody;
use XT::Ejabberd;
use XT::DJabberd;
use XT::XMPP;
use XT::XmppProxy;

our $PYTHON = '/usr/bin/python3';

my %DOMAIN = (prosody => 'p.test', ejabberd => 'e.test', djabberd => 'd.test',
    'djabberd-fastmail' => 'f.test');
my %DJABBERD_TREE = (djabberd => 'upstream', 'djabberd-fastmail' => 'fastmail');

# why slixmpp and aioxmpp cannot use DJabberd (with or without nginx)
our $DJABBERD_SESSION_IQ = 'DJabberd answers the session <iq/> (RFC 3921) '
    . "from the user's full JID; the client takes an answer only from its "
    . 'server, domain or bare JID, and waits for one (also without nginx)';

# every backend of the suite, in the matrix's order
sub all_backends { qw(prosody ejabberd djabberd djabberd-fastmail) }
my %MODE_TITLE = (starttls => 'STARTTLS', tls => 'direct TLS',
    scram => 'SCRAM');
my %MODE_PORT = (starttls => 5222, tls => 5223, scram => 5224);

sub in_ci { ($ENV{CI} // '') =~ /^(?:1|true|yes)$/i }

# need($what, $why_missing): a client (or backend) that is not installed
# fails the test in CI (where auto/deps installs everything) and skips it
# with the reason elsewhere.
sub need {
    my ($ok, $what) = @_;
    return 1 if $ok;
    if (in_ci()) {
        plan(tests => 1);
        fail("$what is missing (auto/deps installs it)");
        exit 0;
    }
    plan(skip_all => "$what is missing (run auto/deps)");
}

sub new {
    my ($class, %o) = @_;

    my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);
    XT::Daemon::exit_on_signals();    # servers are stopped on INT, TERM, PIPE
    my @backends = @{ $o{backends} // [all_backends()] };
    need(-x '/usr/bin/prosody', 'prosody') if grep { $_ eq 'prosody' } @backends;
    need(!XT::Ejabberd::available(), 'ejabberd: ' . XT::Ejabberd::available())
        if grep { $_ eq 'ejabberd' } @backends;
    for my $b (grep { $DJABBERD_TREE{$_} } @backends) {
        my $why = XT::DJabberd::available($DJABBERD_TREE{$b});
        need(!$why, "DJabberd: $why");
    }

    my $self = bless {
        t        => $t,
        name     => $o{name} // basename($0, '.t'),
        file     => basename($0) . (defined $o{part} ? "-$o{part}" : ''),
        backends => \@backends,
        cells    => [],
        users    => $o{users} // [qw(alice bob)],
        t0       => time(),
        nexec    => 0,
    }, $class;

    $self->_results_start;

    my $dir = $t->testdir;
    for my $b (@backends) {
        my @doms = @{ $o{domains}{$b} // [$DOMAIN{$b}] };
        $self->{domains}{$b} = \@doms;
        my @users = map { my $d = $_; map { [$_, $d, "$_-pw"] } @{ $self->{users} } } @doms;
        if ($b eq 'prosody') {
            $self->{prosody} = XT::Prosody->new(dir => "$dir/prosody",
                domains => \@doms, users => \@users, tls => 1,
                %{ $o{prosody} // {} });
        } elsif ($b eq 'ejabberd') {
            $self->{ejabberd} = XT::Ejabberd->new(dir => "$dir/ejabberd",
                domains => \@doms, users => \@users, %{ $o{ejabberd} // {} });
        } elsif ($DJABBERD_TREE{$b}) {
            $self->{$b} = XT::DJabberd->new(dir => "$dir/$b",
                tree => $DJABBERD_TREE{$b}, domains => \@doms,
                users => \@users, %{ $o{djabberd} // {} });
        } else {
            die "XT::Interop: unknown backend $b\n";
        }
    }

    my %alt = map { $_ => 1 } 'proxy.test', map { @$_ } values %{ $self->{domains} };
    $t->gen_cert('xmpp', cn => 'proxy.test', alt => [sort keys %alt]);
    my $conf = $self->_conf(%o);
    $o{conf_filter}->($self, $conf) if $o{conf_filter};
    $t->write_file_expand('nginx.conf', $conf);
    $t->run();
    return $self;
}

sub t        { $_[0]{t} }
sub prosody  { $_[0]{prosody} }
sub ejabberd { $_[0]{ejabberd} }
sub backends { @{ $_[0]{backends} } }
sub backend  { $_[0]{ $_[1] } }
sub domain   { $_[0]{domains}{ $_[1] }[0] // die "XT::Interop: no backend $_[1]\n" }
sub modes    { qw(starttls tls) }

# the modes of a client program's cells: also STARTTLS with SCRAM offered
sub client_modes { qw(starttls tls scram) }
sub mode_title { $MODE_TITLE{ $_[1] } // $_[1] }

sub port {
    my ($self, $mode) = @_;
    return $self->{t}->port($MODE_PORT{$mode} // die "XT::Interop: mode $mode\n");
}

sub _conf {
    my ($self, %o) = @_;
    my %routes = %{ $o{routes} // {} };
    unless (%routes) {
        for my $b ($self->backends) {
            $routes{ $self->domain($b) } = $self->{$b}->port;
        }
    }
    my $map = join '', map {
        (my $re = $_) =~ s/\./\\./g;
        my $to = $routes{$_};
        $to = $self->{$to}->port if ref $self->{$to};
        "        ~\@$re\$  $to;\n"
    } sort keys %routes;
    my $http = $o{http} // '';
    my $mail = $o{mail} // '';

    # SCRAM keys of every user of every backend, the password as the
    # backend's password
    my %scram = map { my $b = $_; map { my $d = $_;
        map { ("$_\@$d" => ["$_-pw", "$_-pw"]) } @{ $self->{users} } }
        @{ $self->{domains}{$b} } } $self->backends;
    my ($scram_http, $scram_auth) = XT::XmppProxy::scram_auth_conf(\%scram);
    $http = "$scram_http\n$http";

    # Prosody in its stock configuration (tls => 1, the default here):
    # nginx logs in to it with STARTTLS, verified against its certificates
    my ($tls_http, $tls_auth, $tls_mail) = ('', '', '');
    if (my $p = $self->{prosody}) {
        if ($p->{tls}) {
            my $ca = $self->{t}->testdir . '/prosody-ca.crt';
            XT::Daemon::write_file($ca, join '', map {
                open(my $fh, '<', ($p->cert($_))[0]) or die "$_: $!\n";
                local $/; <$fh> } @{ $self->{domains}{prosody} });
            $tls_http = "    map \$xt_backend \$xt_proxy_ssl {\n"
                . "        " . $p->port . "  starttls;\n"
                . "        default  \"\";\n    }\n";
            $tls_auth = "            add_header Auth-XMPP-Proxy-SSL"
                . " \$xt_proxy_ssl;\n";
            $tls_mail = "    xmpp_proxy_ssl_trusted_certificate $ca;\n";
        }
    }
    $http = "$tls_http\n$http";
    $scram_auth .= $tls_auth;

    return <<"EOF";
%%TEST_GLOBALS%%

events {
}

http {
    log_format auth '\$http_auth_user|\$http_auth_protocol|\$http_client_ip|'
                    '\$http_auth_ssl|\$xt_backend|\$http_auth_method';

    # the backend by the domain of the user
    map \$http_auth_user \$xt_backend {
$map        default  "";
    }
    map \$xt_backend \$xt_status {
        ""       "Unknown domain";
        default  OK;
    }

$http

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/auth.log auth;

        location = /auth {
$scram_auth
            add_header Auth-Status \$xt_status;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$xt_backend;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    server_name proxy.test;

    ssl_certificate %%TESTDIR%%/xmpp.crt;
    ssl_certificate_key %%TESTDIR%%/xmpp.key;
$tls_mail
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
        starttls only;
        xmpp_auth plain scram-sha-1 scram-sha-256;
    }

$mail
}
EOF
}

# auth_log(): the auth requests so far, as hashes
sub auth_log {
    my ($self) = @_;
    my $log = $self->{t}->read_file('auth.log') // '';
    return map {
        my @f = split /\|/, $_, -1;
        { user => $f[0], protocol => $f[1], client => $f[2], ssl => $f[3],
          port => $f[4], method => $f[5] }
    } split /\n/, $log;
}

sub auth_count {
    my ($self, $user) = @_;
    return scalar grep { $_->{user} eq $user } $self->auth_log;
}

###############################################################################
# Results

sub build_tag {
    my ($t) = @_;
    my $tag = $t->version // 'unknown';
    $tag .= '-asan' if $t->has_feature('asan');
    $tag .= '-debug' if $t->has_feature('debug') && !$t->has_feature('asan');
    return $tag;
}

sub results_dir {
    my ($t) = @_;
    my $d = repo_root() . '/build/interop/results/' . build_tag($t);
    make_path($d);
    return $d;
}

# the run a result belongs to: INTEROP_RUN (auto/test sets one), else
# prove's pid (the parent of every test of one prove run)
sub run_id { $ENV{INTEROP_RUN} // getppid() }

sub _results_start {
    my ($self) = @_;
    $self->{results} = results_dir($self->{t}) . "/$self->{file}.json";
    $self->_results_write(0);
}

sub _results_write {
    my ($self, $finished) = @_;
    my $data = {
        run      => run_id(),
        pid      => $$,
        file     => $self->{file},
        name     => $self->{name},
        nginx    => $self->{t}->version,
        build    => build_tag($self->{t}),
        started  => $self->{t0},
        time     => time(),
        seconds  => sprintf('%.1f', time() - $self->{t0}),
        finished => $finished ? 1 : 0,
        cells    => $self->{cells},
    };
    my $tmp = "$self->{results}.$$.tmp";
    open(my $fh, '>', $tmp) or return;
    print $fh JSON::PP->new->canonical->pretty->encode($data);
    close $fh;
    rename $tmp, $self->{results};
}

# cell($backend, $mode, $code, todo => $reason, name => $row): runs $code
# (which runs tests) and records the cell as pass / FAIL / xfail / XPASS.
sub cell {
    my ($self, $backend, $mode, $code, %o) = @_;
    my $tb = Test::More->builder;
    my $todo = $o{todo};
    my $n0 = $tb->current_test;

    $tb->todo_start($todo) if defined $todo;
    my $ok = eval { $code->(); 1 };
    my $err = $@;
    unless ($ok) {
        $tb->ok(0, "$self->{name} $backend $mode: died");
        $tb->diag($err);
    }
    $tb->todo_end if defined $todo;

    my @d = ($tb->details)[$n0 .. $tb->current_test - 1];
    my $all = !grep { !$_->{actual_ok} } @d;
    $all = 0 unless @d;
    my $status = defined $todo ? ($all ? 'XPASS' : 'xfail') : ($all ? 'pass' : 'FAIL');
    my ($first_fail) = map { $_->{name} } grep { !$_->{actual_ok} } @d;

    push @{ $self->{cells} }, {
        name    => $o{name} // $self->{name},
        backend => $backend,
        mode    => $mode,
        status  => $status,
        reason  => $todo // ($status eq 'FAIL' ? $first_fail : undef),
        tests   => scalar @d,
        mech    => delete $self->{mech},
    };
    $self->_results_write(0);
    return $all;
}

# na($backend, $mode, $reason): the client has no such mode (no test)
sub na {
    my ($self, $backend, $mode, $reason, %o) = @_;
    note(($o{name} // $self->{name}) . " $backend $mode: n/a: $reason");
    push @{ $self->{cells} }, {
        name => $o{name} // $self->{name}, backend => $backend, mode => $mode,
        status => 'n/a', reason => $reason, tests => 0,
    };
    $self->_results_write(0);
}

# finish(): nginx stopped and its logs checked (the harness's teardown
# test), results marked complete; for a second XT::Interop in a file.
sub finish {
    my ($self) = @_;
    $self->{t}->check_logs;
    $self->_results_write(1);
}

# done(): the end of the test file
sub done {
    my ($self) = @_;
    $self->_results_write(1);
    $self->{t}->done_testing;
}

# program_cells(\@command, todo => sub { ($backend, $mode) -> reason },
#     reply_to => as for exchange(), scram => qr/mechanism/,
#     na => sub { ($backend, $mode) -> reason }, timeout => N): every
# backend × client_modes() cell as an exchange() with a program that
# follows the client convention; its arguments are appended to @command.
sub program_cells {
    my ($self, $cmd, %o) = @_;
    for my $b ($self->backends) {
        for my $mode ($self->client_modes) {
            if ($o{na} and my $why = $o{na}->($b, $mode)) {
                $self->na($b, $mode, $why);
                next;
            }
            my $todo = $o{todo} ? $o{todo}->($b, $mode) : undef;
            # a cell expected to fail waits less (a client that hangs
            # would take the whole timeout every time)
            my $timeout = defined $todo ? 6 : $o{timeout};
            $self->cell($b, $mode, sub {
                $self->exchange($b, $mode, timeout => $timeout,
                    reply_to => $o{reply_to}, scram => $o{scram}, cmd => sub {
                    my %a = @_;
                    return (@$cmd, map { ("--$_", $a{$_}) }
                        qw(host port mode jid password to body expect timeout));
                });
            }, todo => $todo);
        }
    }
}

###############################################################################
# The raw peer (bob), logged in through nginx

sub token { join '', map { sprintf '%02x', int rand 256 } 1 .. 6 }

# peer_login($user, $backend, mode => 'starttls'|'tls', resource => 'peer',
#     port => N, local_addr => '127.0.0.2', password => ..., domain => ...):
# an XT::XMPP connection, authenticated, bound, available; {jid} is the
# full JID.  Dies with the reason on failure.
sub peer_login {
    my ($self, $user, $backend, %o) = @_;
    my $mode = $o{mode} // 'starttls';
    my $dom = $o{domain} // $self->domain($backend);
    my $res = $o{resource} // 'peer';
    my $c = raw_ready($o{port} // $self->port($mode), $mode, $dom, $o{local_addr});
    my $expect = sub {
        my ($re, $what) = @_;
        my $e = $c->read_element // die "peer $user: no $what (EOF/timeout)\n";
        die "peer $user: expected $what, got: $e\n" unless $e =~ $re;
        return $e;
    };
    $c->auth_plain($user, $o{password} // "$user-pw");
    $expect->(qr/^<success\b/, 'SASL success');
    $c->open_stream($dom);
    $expect->(qr/^<stream:stream\b/, 'backend stream header');
    $expect->(qr/^<stream:features\b.*<bind\b/s, 'backend features with bind');
    $c->send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        . "<resource>$res</resource></bind></iq>");
    my $r = $expect->(qr/<jid>[^<]+<\/jid>/, 'bind result');
    ($c->{jid}) = $r =~ /<jid>([^<]+)<\/jid>/;
    # a session for old servers that want one; ignore the answer
    $c->send("<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
    $c->send("<presence/>");
    return $c;
}

# raw_connect($port, $mode, $domain, $local_addr): an XT::XMPP connection,
# TLS from the start in mode "tls"; from $local_addr (e.g. 127.0.0.2) if
# given.
sub raw_connect {
    my ($port, $mode, $dom, $local) = @_;
    no warnings 'redefine';
    my $orig = \&IO::Socket::INET::new;
    local *IO::Socket::INET::new = sub {
        my ($class, %a) = @_;
        $a{LocalAddr} = $local if $local && $a{PeerPort};
        return $orig->($class, %a);
    };
    return XT::XMPP->new(port => $port, timeout => 10,
        ($mode eq 'tls' ? (ssl => 1, ssl_opts => { SSL_hostname => $dom }) : ()));
}

# raw_ready($port, $mode, $domain, $local_addr): an XT::XMPP connection
# that has TLS (STARTTLS done in mode "starttls") and read the stream
# features offering SASL: ready for <auth/>.  Dies with the reason.
sub raw_ready {
    my ($port, $mode, $dom, $local) = @_;
    my $c = raw_connect($port, $mode, $dom, $local)
        or die "connect: $XT::XMPP::ERROR\n";
    if ($mode eq 'starttls') {
        $c->tls_stream($dom) or die $c->error . "\n";
        return $c;
    }
    my $expect = sub {
        my ($re, $what) = @_;
        my $e = $c->read_element // die "no $what (EOF/timeout)\n";
        die "expected $what, got: $e\n" unless $e =~ $re;
        return $e;
    };
    $c->open_stream($dom);
    $expect->(qr/^<stream:stream\b/, 'stream header');
    $expect->(qr/^<stream:features\b/, 'features');
    return $c;
}

sub xml_escape {
    my ($s) = @_;
    $s =~ s/&/&amp;/g;
    $s =~ s/</&lt;/g;
    $s =~ s/>/&gt;/g;
    $s =~ s/'/&apos;/g;
    $s =~ s/"/&quot;/g;
    return $s;
}

sub xml_unescape {
    my ($s) = @_;
    $s =~ s/&lt;/</g;
    $s =~ s/&gt;/>/g;
    $s =~ s/&apos;/'/g;
    $s =~ s/&quot;/"/g;
    $s =~ s/&#(\d+);/chr($1)/ge;
    $s =~ s/&#x([0-9a-fA-F]+);/chr(hex $1)/ge;
    $s =~ s/&amp;/&/g;
    return $s;
}

sub peer_send {
    my ($c, $to, $body, $type) = @_;
    $type //= 'chat';
    return $c->send("<message to='" . xml_escape($to) . "' type='$type' id='m"
        . int(rand 1e9) . "'><body>" . xml_escape($body) . "</body></message>");
}

# peer_poll($c, $timeout): the next message with a body as [from, body],
# undef if none arrived in time (other stanzas are skipped)
sub peer_poll {
    my ($c, $timeout) = @_;
    my $end = time() + $timeout;
    while ((my $left = $end - time()) > 0) {
        my $e = $c->read_element($left) // return undef;
        next unless $e =~ /^<message\b/;
        my ($body) = $e =~ m{<body(?:\s[^>]*)?>(.*?)</body>}s or next;
        my ($from) = $e =~ /^<message\b[^>]*?\sfrom=(?:'([^']*)'|"([^"]*)")/;
        $from //= $e =~ /^<message\b[^>]*?\sfrom="([^"]*)"/ ? $1 : '';
        return [xml_unescape($from), xml_unescape($body)];
    }
    return undef;
}

###############################################################################
# Running client programs

# spawn(\@cmd, %o): starts a program in its own process group with its
# output in a file; returns a handle for wait_child / kill_child.
#   env => {..}, dir => cwd, stdin => file
sub spawn {
    my ($self, $cmd, %o) = @_;
    my $n = ++$self->{nexec};
    my $out = $self->{t}->testdir . "/client-$n.out";
    my $pid = fork() // die "fork: $!\n";
    if ($pid == 0) {
        setpgid(0, 0);
        open STDIN, '<', $o{stdin} // '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        chdir $o{dir} if $o{dir};
        $ENV{$_} = $o{env}{$_} for keys %{ $o{env} // {} };
        exec { $cmd->[0] } @$cmd or do {
            print STDERR "exec $cmd->[0]: $!\n";
            POSIX::_exit(127);
        };
    }
    setpgid($pid, $pid);
    note("run: @$cmd") if $ENV{TEST_NGINX_VERBOSE};
    return { pid => $pid, out => $out, cmd => $cmd, t0 => time() };
}

# child_done($h): true (and $h->{code} set) once the program has exited
sub child_done {
    my ($h) = @_;
    return 1 if defined $h->{code};
    my $r = waitpid($h->{pid}, WNOHANG);
    return 0 unless $r == $h->{pid};
    $h->{code} = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    $h->{seconds} = time() - $h->{t0};
    return 1;
}

sub kill_child {
    my ($h) = @_;
    return if child_done($h);
    kill 'TERM', -$h->{pid};
    for (1 .. 50) {
        return if child_done($h);
        sleep 0.02;
    }
    kill 'KILL', -$h->{pid};
    waitpid($h->{pid}, 0);
    $h->{code} //= 137;
    $h->{killed} = 1;
}

sub child_output {
    my ($h) = @_;
    open(my $fh, '<', $h->{out}) or return '';
    local $/;
    return <$fh> // '';
}

# exchange($backend, $mode, cmd => sub { my (%a) = @_; @argv }, timeout => 20,
#     reply_to => sub { my (%a) = @_; JID },   # default: the ping's sender
#     port => N, peer_port => N,               # default: the suite's servers
#     backend_port => N,    # the Auth-Port expected in auth.log
#     scram => qr/.../)     # mode "scram": the mechanism the program must
#                           # choose, as "MECH" or "MECH BINDING" (default:
#                           # qr/^SCRAM-/, any SCRAM mechanism)
# The program gets (host, port, mode, domain, jid, password, to, body,
# expect, timeout) and must: log in as jid through host:port in that mode
# (certificates not verified), bind, print "BOUND <full jid>", send body to
# "to" (type chat), wait for a message whose body is "expect", print
# "RECEIVED <from> <body>" and exit 0; on failure print "FAIL <reason>" and
# exit non-zero.
sub exchange {
    my ($self, $backend, $mode, %o) = @_;
    my $dom = $self->domain($backend);
    my $label = "$self->{name} $backend " . $self->mode_title($mode);
    my $timeout = ($o{timeout} // 20) * ($self->{t}->has_feature('asan') ? 2 : 1);
    my $tok = token();
    my $alice = "alice\@$dom";
    my %a = (
        host => '127.0.0.1', port => $o{port} // $self->port($mode),
        mode => $mode eq 'tls' ? 'tls' : 'starttls',
        domain => $dom, jid => $alice, password => 'alice-pw',
        user => 'alice', to => "bob\@$dom", body => "ping $tok",
        expect => "pong $tok", timeout => $timeout,
    );

    my $bob = eval { $self->peer_login('bob', $backend, port => $o{peer_port}) };
    unless ($bob) {
        fail("$label: peer bob logs in through nginx");
        diag($@);
        return;
    }
    my $auth0 = $self->auth_count($alice);
    my $log0 = -s $self->{t}->testdir . '/error.log' // 0;

    my $h = $self->spawn([ $o{cmd}->(%a) ], %{ $o{spawn} // {} });
    my ($ping, $answered);
    my $end = time() + $timeout + 5;
    while (time() < $end) {
        my $m = peer_poll($bob, 0.1);
        if ($m && $m->[1] eq "ping $tok" && !$ping) {
            $ping = $m;
            peer_send($bob, $o{reply_to} ? $o{reply_to}->(%a) : $m->[0],
                "pong $tok");
            $answered = 1;
        }
        last if child_done($h) && ($ping || time() > $h->{t0} + $h->{seconds} + 1);
    }
    kill_child($h);
    my $out = child_output($h);
    $bob->close;

    my $verbose = sub { diag("--- $label: @{ $h->{cmd} } (exit $h->{code}"
        . ($h->{killed} ? ', killed at timeout' : '') . "):\n$out") };

    my @auth = grep { $_->{user} eq $alice } $self->auth_log;
    my $via = @auth > $auth0
        && $auth[-1]{port} eq ($o{backend_port} // $self->backend($backend)->port);
    my $bound = $out =~ m{^BOUND \Q$alice\E/\S+}m;
    ok($bound && $via, "$label: alice logged in through nginx and bound") or do {
        diag("$label: no auth_http request for $alice to $backend") unless $via;
        $verbose->();
    };
    ok($ping, "$label: bob received alice's message")
        and like($ping->[0], qr{^\Q$alice\E/.+}, "$label: sent from alice's full JID");
    like($out, qr{^RECEIVED \S+ pong \Q$tok\E}m, "$label: alice received bob's answer");
    is($h->{code}, 0, "$label: client exit code") or ($bound && $verbose->());

    if ($mode eq 'scram') {
        my $mech = $self->mechanism($alice, $auth0, $log0);
        $self->{mech} = $mech;
        like($mech // 'no login', $o{scram} // qr/^SCRAM-/,
            "$label: the mechanism alice chose");
    }
    return $out;
}

# mechanism($user, $auth_count0, $error_log_offset0): the SASL mechanism
# of the user's last login after those marks, as "PLAIN", "MECH" or
# "MECH BINDING" (SCRAM: from nginx's error log line "client authenticated
# with ..."); undef if there was none
sub mechanism {
    my ($self, $user, $auth0, $log0) = @_;
    my @auth = grep { $_->{user} eq $user } $self->auth_log;
    return undef unless @auth > $auth0;
    my $m = $auth[-1]{method};
    return uc $m unless $m =~ /^scram-/;

    open(my $fh, '<', $self->{t}->testdir . '/error.log') or return undef;
    seek($fh, $log0, 0);
    my $mech;
    while (my $l = <$fh>) {
        next unless $l =~ /login: "\Q$user\E"/;
        next unless $l =~ /client authenticated with (\S+?)(?:, channel binding (\S+))? while /;
        $mech = defined $2 ? "$1 $2" : $1;
    }
    return $mech;
}

1;
