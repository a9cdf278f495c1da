#!/usr/bin/perl

# auto/fetch checks release tarballs against auto/releases.  Offline: an
# empty private cache, NGINX_TARBALL_DIR as the only source.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;

use XT::Nginx qw(repo_root);

my $root = repo_root();
my $fetch = "$root/auto/fetch";

open(my $fh, '<', "$root/auto/releases") or die "auto/releases: $!";
my @rel = map { [split] } grep { !/^\s*(#|$)/ } <$fh>;
close $fh;
my ($version, $sha) = @{ $rel[0] };

plan tests => 15;

sub fetch {
    my (%env) = @_;
    my $args = delete $env{args} // $version;
    local $ENV{NGINX_FETCH_OFFLINE} = 1;
    local @ENV{ keys %env } = values %env;
    my $out = `'$fetch' $args 2>&1`;
    return ($? >> 8, $out);
}

sub sha256 {
    my ($f) = @_;
    my ($s) = split ' ', `sha256sum '$f'`;
    return $s // '';
}

my $tmp = tempdir('xt-fetch-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

ok(@rel >= 1 && $sha =~ /^[0-9a-f]{64}$/, "auto/releases: first line $version");

# a bogus tarball with the right name
mkdir "$tmp/src";
mkdir "$tmp/cache";
open($fh, '>', "$tmp/src/nginx-$version.tar.gz") or die;
print $fh "not nginx at all\n";
close $fh;

my ($rc, $out) = fetch(NGINX_TARBALL_DIR => "$tmp/src", NGINX_CACHE_DIR => "$tmp/cache");
isnt($rc, 0, 'wrong sha256 refused');
like($out, qr/sha256/i, 'message mentions the checksum');
like($out, qr/\Q$sha\E/, 'message shows the expected sum');
ok(!-e "$tmp/cache/nginx-$version.tar.gz", 'bad tarball not put into the cache');
is(scalar(my @f = glob("$tmp/cache/*")) + scalar(@f = glob("$tmp/cache/.nginx*")), 0,
    'no temporary left in the cache');

# no source at all
($rc, $out) = fetch(NGINX_TARBALL_DIR => "$tmp/empty", NGINX_CACHE_DIR => "$tmp/cache");
isnt($rc, 0, 'no source: fails');
like($out, qr/OFFLINE|not.*cache/i, 'no source: says why');

# unknown release
($rc, $out) = fetch(args => '0.0.1', NGINX_CACHE_DIR => "$tmp/cache");
isnt($rc, 0, 'unknown release refused');
like($out, qr/unknown nginx release '0\.0\.1'/, 'unknown release: clear message');

# the real tarball, from wherever a good copy already is
my ($good) = grep { -f && sha256($_) eq $sha }
    "$root/build/cache/nginx-$version.tar.gz",
    map { ("$_/nginx-$version.tar.gz", "$_/nginx_$version.orig.tar.gz") }
    grep { defined } $ENV{NGINX_TARBALL_DIR}, $ENV{NGINX_CACHE_DIR};

SKIP: {
    skip "no verified nginx-$version tarball available offline (run auto/fetch)", 5
        unless $good;

    mkdir "$tmp/debian";
    symlink($good, "$tmp/debian/nginx_$version.orig.tar.gz") or die "symlink: $!";
    mkdir "$tmp/cache2";

    ($rc, $out) = fetch(NGINX_TARBALL_DIR => "$tmp/debian", NGINX_CACHE_DIR => "$tmp/cache2");
    is($rc, 0, 'good tarball accepted (Debian orig name)') or diag($out);
    my @lines = split /\n/, $out;
    is($lines[-1], "$tmp/cache2/nginx-$version.tar.gz", 'last line is the cached path');
    is(sha256("$tmp/cache2/nginx-$version.tar.gz"), $sha, 'cached copy verified');

    # a corrupted cache entry is replaced
    open($fh, '>', "$tmp/cache2/nginx-$version.tar.gz") or die;
    print $fh "garbage";
    close $fh;
    ($rc, $out) = fetch(NGINX_TARBALL_DIR => "$tmp/debian", NGINX_CACHE_DIR => "$tmp/cache2");
    is($rc, 0, 'corrupted cache entry replaced') or diag($out);
    is(sha256("$tmp/cache2/nginx-$version.tar.gz"), $sha, 'cache entry good again');
}
