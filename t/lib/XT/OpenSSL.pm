package XT::OpenSSL;

# openssl s_client as a TLS client that reports which certificate a
# server chose:
#
#   use XT::OpenSSL qw(s_client cn starttls_cn);
#   my $out = s_client('-connect', "127.0.0.1:$port", ...);
#   my $cn  = cn($out);                       # subject CN, or '(none)'
#   my $cn  = starttls_cn($port, $domain);
#
# s_client() runs with stdin closed and a 10 s limit and returns stdout
# and stderr; starttls_cn() does XMPP STARTTLS with the stream "to" set to
# $domain.

use strict;
use warnings;

use POSIX ();

use Exporter 'import';
our @EXPORT_OK = qw(s_client cn starttls_cn);

sub s_client {
    my (@args) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        { exec 'timeout', '10', 'openssl', 's_client', @args; }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

sub cn {
    my ($out) = @_;
    return $1 if $out =~ /subject=.*?CN\s*=\s*([^\s,\/]+)/;
    return '(none)';
}

sub starttls_cn {
    my ($port, $to) = @_;
    return cn(s_client('-connect', "127.0.0.1:$port", '-starttls', 'xmpp',
        '-xmpphost', $to));
}

1;
