#!/usr/bin/perl

# The example configuration an operator copies (conf/nginx-xmpp.conf),
# graded: testssl.sh and sslscan against its STARTTLS port.  No SSLv2/3,
# no TLS 1.0/1.1, forward-secret key exchange only, no RC4/3DES/NULL/EXPORT
# ciphers, and the certificate chosen per domain.  Only the paths, ports,
# the auth address and worker limits of the example are changed for the
# test (the descriptor limit to what this machine allows).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;

use XT::Nginx;

my $t = XT::Nginx->new()->has(qw/mail mail_ssl xmpp http/);

plan(skip_all => 'testssl.sh missing') unless -x '/usr/bin/testssl';
plan(skip_all => 'sslscan missing') unless -x '/usr/bin/sslscan';
plan(skip_all => 'graded once, on the default build')
    if ($ENV{TEST_NGINX_BINARY} // '') =~ /-asan/;

my $td = $t->testdir;
mkdir "$td/xmpp";

$t->gen_cert('xmpp/fullchain', cn => 'xmpp.example.com');
rename "$td/xmpp/fullchain.key", "$td/xmpp/privkey.pem";
rename "$td/xmpp/fullchain.crt", "$td/xmpp/fullchain.pem";
$t->gen_cert("xmpp/$_", cn => $_) for qw/example.com example.net/;
$t->gen_cert('xmpp/wild.example.org', cn => '*.example.org');

open(my $fh, '<', XT::Nginx::repo_root() . '/conf/nginx-xmpp.conf') or die $!;
my $conf = join '', <$fh>;
close $fh;

$conf =~ s{/etc/nginx/xmpp/}{%%TESTDIR%%/xmpp/}g;
$conf =~ s{listen\s+5222;}{listen 127.0.0.1:%%PORT_5222%%;} or die;
$conf =~ s{listen\s+5223 ssl;}{listen 127.0.0.1:%%PORT_5223%% ssl;} or die;
$conf =~ s{127\.0\.0\.1:9000}{127.0.0.1:%%PORT_8081%%}g or die;
$conf =~ s{^worker_processes\s+auto;}{}m;

my $nofile = `sh -c 'ulimit -Hn'` =~ s/\s+//gr;
$nofile = 1024 unless $nofile =~ /^\d+$/;
$conf =~ s{worker_rlimit_nofile\s+\d+;}{worker_rlimit_nofile $nofile;};

$t->write_file_expand('nginx.conf', "%%TEST_GLOBALS%%\n$conf");
$t->run();
$t->plan(15);

my $port = $t->port(5222);

# testssl.sh: protocols, cipher categories, forward secrecy

my $json = "$td/testssl.json";
my $out = `timeout 300 testssl --quiet --color 0 --warnings off -p -s -f -S \\
    --starttls xmpp --xmpphost example.com --jsonfile $json \\
    127.0.0.1:$port 2>&1`;

my %f;
if (open(my $j, '<', $json)) {
    my $list = eval { decode_json(join '', <$j>) } // [];
    $f{$_->{id}} = $_->{finding} for @$list;
}

ok(%f, 'testssl.sh produced findings') or diag($out);
like($f{SSLv2} // '', qr/not offered/, 'no SSLv2');
like($f{SSLv3} // '', qr/not offered/, 'no SSLv3');
like($f{TLS1} // '', qr/not offered/, 'no TLS 1.0');
like($f{TLS1_1} // '', qr/not offered/, 'no TLS 1.1');
like(($f{TLS1_2} // '') . ($f{TLS1_3} // ''), qr/offered/, 'TLS 1.2/1.3');

my @weak = grep { defined $f{$_} && $f{$_} !~ /not offered/ }
    qw/cipherlist_NULL cipherlist_aNULL cipherlist_EXPORT cipherlist_LOW
       cipherlist_3DES_IDEA/;
is("@weak", '', 'no NULL, anonymous, EXPORT, LOW, 3DES ciphers');
ok(!grep({ /RC4/ && $f{$_} !~ /not (offered|vulnerable)/ } keys %f),
    'no RC4');
like($f{FS} // $f{PFS} // '', qr/^offered/, 'forward secrecy offered');
like($f{cert_commonName} // '', qr/^example\.com$/,
    'certificate for the stream domain');

# sslscan, which uses the host as the stream "to"

my $scan = `timeout 60 sslscan --no-colour --starttls-xmpp 127.0.0.1:$port 2>&1`;
like($scan, qr/TLSv1\.0\s+disabled/, 'sslscan: TLS 1.0 disabled');
like($scan, qr/TLSv1\.2\s+enabled/, 'sslscan: TLS 1.2 enabled');
my @accepted = $scan =~ /(?:Preferred|Accepted)\s+\S+\s+\d+ bits\s+(\S+)/g;
ok(@accepted > 1, 'sslscan: ciphers listed') or diag($scan);
is(join(' ', grep { !/^(TLS_|ECDHE-|DHE-)/ } @accepted), '',
    'sslscan: forward-secret key exchange only');
is(join(' ', grep { /RC4|DES|NULL|EXP|MD5/ } @accepted), '',
    'sslscan: no weak cipher accepted');
