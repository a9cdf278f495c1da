package XT::Slixmpp;

# Perl wrapper around t/lib/xmpp_roundtrip.py (a real XMPP client, slixmpp).
#
#   my ($ok, $out) = XT::Slixmpp::roundtrip(
#       host => '127.0.0.1', port => $port,
#       mode => 'starttls' | 'direct' | 'plain',
#       a => ['alice@example.com', 'secret'],
#       b => ['bob@example.com', 'secret'],
#       timeout => 20, mech => 'PLAIN',        # optional
#   );
#   # $ok: true on success; $out: the JSON line, or the failure reason.
#   # In list context a third value is the exit code.
#
#   my ($code, $out) = XT::Slixmpp::login(host => ..., port => ..., mode => ...,
#       a => [$jid, $pass]);
#   # $code is one of the EXIT_* constants below (EXIT_OK on success).
#
#   my $data = XT::Slixmpp::result($out);   # decoded JSON, or undef
#
# has_slixmpp() tells whether the client can run at all.

use strict;
use warnings;

use File::Basename qw(dirname);
use Cwd qw(abs_path);
use JSON::PP ();
use POSIX ();

use constant {
    EXIT_OK      => 0,
    EXIT_USAGE   => 2,
    EXIT_CONNECT => 3,
    EXIT_AUTH    => 4,
    EXIT_BIND    => 5,
    EXIT_MESSAGE => 6,
    EXIT_TIMEOUT => 7,
};

our $PYTHON = '/usr/bin/python3';
our $SCRIPT = abs_path(dirname(abs_path(__FILE__)) . '/../xmpp_roundtrip.py');

sub has_slixmpp {
    return 0 unless -x $PYTHON;
    system($PYTHON, '-c', 'import slixmpp') == 0 ? 1 : 0;
}

sub _args {
    my (%o) = @_;
    die "XT::Slixmpp: port and mode are required\n" unless $o{port} && $o{mode};
    die "XT::Slixmpp: a => [jid, password] is required\n" unless ref $o{a};
    my @args = ('--host', $o{host} // '127.0.0.1', '--port', $o{port},
        '--mode', $o{mode}, '--a', @{ $o{a} });
    push @args, '--b', @{ $o{b} } if $o{b};
    push @args, '--login-only' if $o{login_only} || !$o{b};
    push @args, '--timeout', $o{timeout} if $o{timeout};
    push @args, '--mech', $o{mech} if $o{mech};
    push @args, '--debug' if $o{debug};
    return @args;
}

sub _run {
    my (@args) = @_;
    my $pid = open(my $fh, '-|') // die "XT::Slixmpp: fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        exec { $PYTHON } $PYTHON, $SCRIPT, @args or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my $code = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    $out =~ s/\s+\z//;
    return ($code, $out);
}

sub roundtrip {
    my (%o) = @_;
    die "XT::Slixmpp: b => [jid, password] is required\n" unless ref $o{b};
    my ($code, $out) = _run(_args(%o));
    return wantarray ? ($code == EXIT_OK, $out, $code) : $code == EXIT_OK;
}

sub login {
    my (%o) = @_;
    delete $o{b};
    return _run(_args(%o, login_only => 1));
}

sub result {
    my ($out) = @_;
    my ($line) = grep { /^\{/ } split /\n/, ($out // '');
    return undef unless $line;
    return eval { JSON::PP::decode_json($line) };
}

1;
