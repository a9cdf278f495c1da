#!/usr/bin/perl

# auto/fetch checks release tarballs against the pins of auto/releases:
# the sha256 of a pristine tarball, or the git tree id of a git archive of
# the release tag.  Offline: an empty private cache, NGINX_TARBALL_DIR and
# NGINX_SHARED_DIR as the only sources.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use File::Temp qw(tempdir);
use Test::More;

use XT::Nginx qw(repo_root);

my $root = repo_root();
my $fetch = "$root/auto/fetch";

open(my $fh, '<', "$root/auto/releases") or die "auto/releases: $!";
my @rel = map { [split] } grep { !/^\s*(#|$)/ } <$fh>;
close $fh;

my ($sha_rel) = grep { $_->[1] eq 'sha256' } @rel;
my ($tree_rel) = grep { $_->[1] eq 'git-tree' } @rel;
my ($version, undef, $sha) = @$sha_rel;
my ($tversion, undef, $tree) = @$tree_rel;

plan tests => 38;

sub fetch {
    my (%env) = @_;
    my $args = delete $env{args} // $version;
    local $ENV{NGINX_FETCH_OFFLINE} = 1;
    local $ENV{NGINX_SHARED_DIR} = '';
    delete local $ENV{NGINX_TARBALL_DIR};
    local @ENV{ keys %env } = values %env;
    delete $ENV{$_} for grep { !defined $env{$_} } keys %env;
    my $out = `'$fetch' $args 2>&1`;
    return ($? >> 8, $out);
}

sub sha256 {
    my ($f) = @_;
    my ($s) = split ' ', `sha256sum '$f'`;
    return $s // '';
}

sub write_file {
    my ($f, $text) = @_;
    open(my $fh, '>', $f) or die "$f: $!";
    print $fh $text;
    close $fh;
}

sub run_ok {
    my (@cmd) = @_;
    system(@cmd) == 0 or die "@cmd: failed\n";
}

# the tree id of the one directory of a tarball, as auto/releases pins it
sub tree_of {
    my ($tarball) = @_;
    my $d = tempdir('xt-fetch-tree-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    run_ok('tar', '-xzf', $tarball, '-C', $d);
    opendir(my $dh, $d) or die;
    my ($top) = grep { !/^\.\.?$/ } readdir $dh;
    my $id = `cd '$d/$top' && HOME='$d' GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git init -q && git add -A -f && git write-tree`;
    chomp $id;
    return $id;
}

my $tmp = tempdir('xt-fetch-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

ok($sha =~ /^[0-9a-f]{64}$/ && $tree =~ /^[0-9a-f]{40}$/,
    "auto/releases: $version pinned by sha256, $tversion by git tree");
is($rel[0][1], 'git-tree', "the default release $rel[0][0] is a git archive");

###############################################################################
# sha256 pins

# a bogus tarball with the right name
mkdir "$tmp/src";
mkdir "$tmp/cache";
write_file("$tmp/src/nginx-$version.tar.gz", "not nginx at all\n");

my ($rc, $out) = fetch(NGINX_TARBALL_DIR => "$tmp/src", NGINX_CACHE_DIR => "$tmp/cache");
isnt($rc, 0, 'wrong sha256 refused');
like($out, qr/sha256 MISMATCH/i, 'message mentions the checksum');
like($out, qr/expected sha256 \Q$sha\E/, 'message shows the expected sum');
my $bad_sum = sha256("$tmp/src/nginx-$version.tar.gz");
like($out, qr/found +sha256 \Q$bad_sum\E/, 'message shows the sum found');
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
    write_file("$tmp/cache2/nginx-$version.tar.gz", "garbage");
    ($rc, $out) = fetch(NGINX_TARBALL_DIR => "$tmp/debian", NGINX_CACHE_DIR => "$tmp/cache2");
    is($rc, 0, 'corrupted cache entry replaced') or diag($out);
    is(sha256("$tmp/cache2/nginx-$version.tar.gz"), $sha, 'cache entry good again');
}

###############################################################################
# git-tree pins

# a well-formed archive of the wrong tree: refused, naming both tree ids
mkdir "$tmp/t";
mkdir "$tmp/t/nginx-$tversion";
write_file("$tmp/t/nginx-$tversion/README", "not nginx $tversion\n");
mkdir "$tmp/tsrc";
run_ok('tar', '-czf', "$tmp/tsrc/nginx-$tversion.git.tar.gz", '-C', "$tmp/t",
    "nginx-$tversion");
my $wrong = tree_of("$tmp/tsrc/nginx-$tversion.git.tar.gz");
mkdir "$tmp/tcache";

($rc, $out) = fetch(args => $tversion, NGINX_TARBALL_DIR => "$tmp/tsrc",
    NGINX_CACHE_DIR => "$tmp/tcache");
isnt($rc, 0, 'wrong git tree refused');
like($out, qr/git-tree MISMATCH for \Q$tmp\E\/tsrc\/nginx-\Q$tversion\E\.git\.tar\.gz/,
    'wrong tree: message names the file');
like($out, qr/expected git-tree \Q$tree\E/, 'wrong tree: message shows the expected tree id');
like($out, qr/found +git-tree \Q$wrong\E/, 'wrong tree: message shows the tree id found');
ok(!-e "$tmp/tcache/nginx-$tversion.git.tar.gz", 'wrong tree not put into the cache');

# not an archive at all, under GitHub's name
mkdir "$tmp/tjunk";
write_file("$tmp/tjunk/release-$tversion.tar.gz", "<html>not found</html>\n");
($rc, $out) = fetch(args => $tversion, NGINX_TARBALL_DIR => "$tmp/tjunk",
    NGINX_CACHE_DIR => "$tmp/tcache");
isnt($rc, 0, 'not an archive: refused');
like($out, qr/expected git-tree \Q$tree\E.*found +not a readable tar\.gz archive/s,
    'not an archive: message says what was expected and what was found');

# the same refusal from the shared folder (../shared/nginx by default)
($rc, $out) = fetch(args => $tversion, NGINX_SHARED_DIR => "$tmp/tsrc",
    NGINX_CACHE_DIR => "$tmp/tcache");
isnt($rc, 0, 'wrong tree in NGINX_SHARED_DIR refused');
like($out, qr/found +git-tree \Q$wrong\E/, 'shared folder: the tree id found is named');

# the default shared folder is the one beside the repository, or beside
# the local repository this one was cloned from
my $shared = "$root/../shared/nginx";
unless (-d $shared) {
    my $origin = `git -C '$root' config --get remote.origin.url 2>/dev/null`;
    chomp $origin;
    $shared = "$origin/../shared/nginx" if $origin =~ m{^/};
}
($rc, $out) = fetch(args => $tversion, NGINX_CACHE_DIR => "$tmp/tcache",
    NGINX_SHARED_DIR => undef);
if (-f "$shared/nginx-$tversion.git.tar.gz") {
    is($rc, 0, 'default NGINX_SHARED_DIR: ../shared/nginx used') or diag($out);
} else {
    isnt($rc, 0, 'default NGINX_SHARED_DIR: no ../shared/nginx, nothing found');
}
unlink "$tmp/tcache/nginx-$tversion.git.tar.gz";

# a good archive: from the cache, else the shared folder
my ($tgood) = grep { -f && tree_of($_) eq $tree }
    "$root/build/cache/nginx-$tversion.git.tar.gz",
    map { "$_/nginx-$tversion.git.tar.gz" }
    grep { defined } $ENV{NGINX_CACHE_DIR}, $ENV{NGINX_TARBALL_DIR}, $shared;

SKIP: {
    skip "no verified nginx-$tversion git archive available offline", 11
        unless $tgood;

    mkdir "$tmp/tgood";
    symlink($tgood, "$tmp/tgood/nginx-$tversion.git.tar.gz") or die "symlink: $!";

    ($rc, $out) = fetch(args => $tversion, NGINX_SHARED_DIR => "$tmp/tgood",
        NGINX_CACHE_DIR => "$tmp/tcache");
    is($rc, 0, 'good git archive accepted from the shared folder') or diag($out);
    my $cached = "$tmp/tcache/nginx-$tversion.git.tar.gz";
    is((split /\n/, $out)[-1], $cached, 'last line is the cached path');
    is(tree_of($cached), $tree, 'cached copy has the pinned tree');

    # the order: the cache first, then NGINX_TARBALL_DIR, then the shared
    # folder; a bad file in NGINX_TARBALL_DIR is not skipped over
    ($rc, $out) = fetch(args => $tversion, NGINX_TARBALL_DIR => "$tmp/tsrc",
        NGINX_CACHE_DIR => "$tmp/tcache");
    is($rc, 0, 'cache before NGINX_TARBALL_DIR') or diag($out);
    unlink $cached;
    ($rc, $out) = fetch(args => $tversion, NGINX_TARBALL_DIR => "$tmp/tsrc",
        NGINX_SHARED_DIR => "$tmp/tgood", NGINX_CACHE_DIR => "$tmp/tcache");
    isnt($rc, 0, 'NGINX_TARBALL_DIR before the shared folder');
    like($out, qr/refusing \Q$tmp\E\/tsrc\//, 'the bad file is named');

    # a corrupted cache entry is verified, deleted and fetched again
    write_file($cached, "garbage");
    ($rc, $out) = fetch(args => $tversion, NGINX_SHARED_DIR => "$tmp/tgood",
        NGINX_CACHE_DIR => "$tmp/tcache");
    is($rc, 0, 'corrupted cached git archive replaced') or diag($out);
    like($out, qr/git-tree MISMATCH for cached/, 'the bad cache entry was noticed');
    is(tree_of($cached), $tree, 'cache entry good again');

    # GitHub's archive of the tag: another name, another top directory,
    # the same tree
    my $gh = tempdir('xt-fetch-gh-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    run_ok('tar', '-xzf', $tgood, '-C', $gh);
    rename("$gh/nginx-$tversion", "$gh/nginx-release-$tversion") or die "rename: $!";
    mkdir "$tmp/gh";
    run_ok('tar', '-czf', "$tmp/gh/release-$tversion.tar.gz", '-C', $gh,
        "nginx-release-$tversion");
    unlink $cached;
    ($rc, $out) = fetch(args => $tversion, NGINX_TARBALL_DIR => "$tmp/gh",
        NGINX_CACHE_DIR => "$tmp/tcache");
    is($rc, 0, "GitHub's name and top directory: accepted") or diag($out);
    is(tree_of($cached), $tree, 'GitHub layout: the pinned tree');
}
