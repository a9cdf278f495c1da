#!/usr/bin/perl

# The interop matrix: client (or feature) × backend × STARTTLS / direct TLS
# → pass / FAIL / xfail (expected failure, TODO with its reason) / XPASS
# (a TODO that passes: the reason is gone) / n/a (the client or backend
# cannot do it), from the results that the t/interop/*.t of this prove run
# wrote to build/interop/results/TAG/ (TAG: nginx version and build kind).
#
# Sorted after the other interop tests, it waits until those of the same
# prove run (its sibling processes) have finished, then prints the matrix
# and writes it as Markdown to build/interop/matrix-TAG.md (the README's
# "Interop matrix" section is a copy of one).  Run on its own it shows the
# latest results of each test, whatever run they came from.
#
# Then, when other releases of auto/releases have results too (auto/test
# runs the suite once per release), the matrix by release: one column per
# release with its four cells, also in build/interop/matrix-releases.md.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use File::Basename qw(basename);
use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep time);

use XT::Interop;
use XT::Nginx qw(repo_root);

my $t = XT::Nginx->new();
my $tag = XT::Interop::build_tag($t);
my $dir = XT::Interop::results_dir($t);
my $run = XT::Interop::run_id();
my $me = basename($0);

# the other interop tests of this prove run: processes with our parent
sub siblings {
    my @s;
    opendir(my $dh, '/proc') or return;
    for my $pid (grep { /^\d+$/ && $_ != $$ } readdir $dh) {
        open(my $st, '<', "/proc/$pid/stat") or next;
        my ($ppid) = (<$st> // '') =~ /\)\s+\S+\s+(\d+)/ or next;
        next unless $ppid == getppid();
        open(my $cl, '<', "/proc/$pid/cmdline") or next;
        my $cmd = join ' ', split /\0/, (<$cl> // '');
        push @s, $pid if $cmd =~ m{\binterop/\w+\.t\b} && $cmd !~ /\Q$me\E/;
    }
    return @s;
}

my $limit = time() + ($t->has_feature('asan') ? 1200 : 600);
while (my @s = siblings()) {
    if (time() > $limit) {
        diag("still running after the wait: pids @s");
        last;
    }
    sleep 0.5;
}

# the results: this run's, else the latest of each file
my (@mine, @any);
for my $f (glob "$dir/*.json") {
    open(my $fh, '<', $f) or next;
    local $/;
    my $r = eval { JSON::PP::decode_json(<$fh> // '') } or next;
    push @any, $r;
    push @mine, $r if ($r->{run} // '') eq $run;
}
my $current = @mine > 0;
my @results = sort { $a->{file} cmp $b->{file} } ($current ? @mine : @any);

ok(@results, "interop results for nginx $tag") or diag("none in $dir");
if ($current) {
    for my $r (@results) {
        ok($r->{finished}, "$r->{file} ran to its end")
            or diag("$r->{file} stopped after " . scalar(@{ $r->{cells} }) . ' cells');
    }
} else {
    note('no interop test ran in this prove run: showing the latest results');
}

###############################################################################

my @cols = (['prosody', 'starttls'], ['prosody', 'tls'],
            ['ejabberd', 'starttls'], ['ejabberd', 'tls']);
my %title = (prosody => 'Prosody', ejabberd => 'ejabberd',
    starttls => 'STARTTLS', tls => 'direct TLS');
my %rank = ('FAIL' => 5, 'XPASS' => 4, 'xfail' => 3, 'pass' => 2, 'n/a' => 1);

my (@rows, %cell, %seen, @notes, %note_no, %secs);
for my $r (@results) {
    $secs{ $r->{file} } = $r->{seconds};
    for my $c (@{ $r->{cells} }) {
        my $row = $c->{name};
        push @rows, $row unless $seen{$row}++;
        my $k = "$row\0$c->{backend}\0$c->{mode}";
        my $old = $cell{$k};
        next if $old && $rank{ $old->{status} } >= $rank{ $c->{status} };
        $cell{$k} = $c;
    }
}

sub show {
    my ($c) = @_;
    return '-' unless $c;
    my $s = $c->{status};
    if (defined $c->{reason} && $s ne 'pass') {
        my $n = $note_no{ $c->{reason} } //= do { push @notes, $c->{reason}; scalar @notes };
        $s .= " [$n]";
    }
    return $s;
}

my @table = (['client / feature', map { "$title{$_->[0]} $title{$_->[1]}" } @cols]);
for my $row (@rows) {
    push @table, [$row, map { show($cell{"$row\0$_->[0]\0$_->[1]"}) } @cols];
}

my $when = $current ? 'this run' : 'latest results';
my $version = $results[0] ? $results[0]{nginx} // '?' : '?';
my $head = "Interop matrix, nginx $tag ($when)";

# text for the test output
my @w = map { my $i = $_; (sort { $b <=> $a } map { length $_->[$i] } @table)[0] } 0 .. 4;
my $text = "$head\n";
for my $i (0 .. $#table) {
    $text .= join('  ', map { sprintf "%-*s", $w[$_], $table[$i][$_] } 0 .. 4) . "\n";
    $text .= join('  ', map { '-' x $w[$_] } 0 .. 4) . "\n" if $i == 0;
}
$text .= "\n" . join('', map { "[$_] $notes[$_ - 1]\n" } 1 .. @notes) if @notes;
$text .= "\nseconds per test file: "
    . join(', ', map { "$_ $secs{$_}" } sort keys %secs) . "\n";
diag("\n$text");

# Markdown for the README
sub md { my ($s) = @_; $s =~ s/&/&amp;/g; $s =~ s/</&lt;/g; $s =~ s/>/&gt;/g; $s =~ s/\|/\\|/g; $s }
my $md = "$head\n\n| " . join(' | ', @{ $table[0] }) . " |\n|"
    . join('|', map { '---' } @{ $table[0] }) . "|\n";
$md .= '| ' . join(' | ', map { md($_) } @$_) . " |\n" for @table[1 .. $#table];
$md .= "\n" . join('', map { "$_. " . md($notes[$_ - 1]) . "\n" } 1 .. @notes)
    if @notes;
$md .= "\npass: works; FAIL: broken; xfail [n]: expected failure (a TODO test, "
    . "reason n); XPASS: a TODO test passes; n/a [n]: cannot be done (reason n); "
    . "-: not tested in that column.\n";
my $file = repo_root() . "/build/interop/matrix-$tag.md";
if (open(my $fh, '>', $file)) {
    print $fh $md;
    close $fh;
    note("written to $file");
}

###############################################################################

# The matrix by release: for every release in auto/releases with results of
# the same build kind (this run's results for this release, the latest ones
# for the others), one column holding its four cells in the order above.

my $kind = $tag =~ s/^[\d.]+//r;
my @releases = do {
    open(my $fh, '<', repo_root() . '/auto/releases') or ();
    map { (split)[0] } grep { !/^\s*(#|$)/ } <$fh>;
};
my %short = ('pass' => 'ok', 'FAIL' => 'FAIL', 'XPASS' => 'XPASS',
    'xfail' => 'xf', 'n/a' => 'na');
my (%rel_cell, @rel_rows, %rel_seen, @with);
for my $v (@releases) {
    my @r;
    if ("$v$kind" eq $tag) {
        @r = @results;
    } else {
        for my $f (glob repo_root() . "/build/interop/results/$v$kind/*.json") {
            open(my $fh, '<', $f) or next;
            local $/;
            my $r = eval { JSON::PP::decode_json(<$fh> // '') } or next;
            push @r, $r;
        }
    }
    next unless @r;
    push @with, $v;
    for my $c (map { @{ $_->{cells} } } @r) {
        push @rel_rows, $c->{name} unless $rel_seen{ $c->{name} }++;
        my $k = "$v\0$c->{name}\0$c->{backend}\0$c->{mode}";
        my $old = $rel_cell{$k};
        next if $old && $rank{ $old->{status} } >= $rank{ $c->{status} };
        $rel_cell{$k} = $c;
    }
}

if (@with > 1) {
    my @rt = (['client / feature', map { "nginx $_$kind" } @with]);
    for my $row (@rel_rows) {
        push @rt, [$row, map {
            my $v = $_;
            join(' ', map {
                my $c = $rel_cell{"$v\0$row\0$_->[0]\0$_->[1]"};
                $c ? $short{ $c->{status} } : '-';
            } @cols);
        } @with];
    }
    my $rhead = 'Interop matrix by release (each column: '
        . join(', ', map { "$title{$_->[0]} $title{$_->[1]}" } @cols) . ')';
    my $n = $#{ $rt[0] };
    my @rw = map { my $i = $_; (sort { $b <=> $a } map { length $_->[$i] } @rt)[0] } 0 .. $n;
    my $rtext = "$rhead\n";
    for my $i (0 .. $#rt) {
        $rtext .= join('  ', map { sprintf "%-*s", $rw[$_], $rt[$i][$_] } 0 .. $n) . "\n";
        $rtext .= join('  ', map { '-' x $rw[$_] } 0 .. $n) . "\n" if $i == 0;
    }
    $rtext .= "\nok: pass; xf: xfail; na: n/a; -: not tested (reasons: the matrix "
        . "of each release)\n";
    diag("\n$rtext");

    my $rmd = "$rhead\n\n| " . join(' | ', @{ $rt[0] }) . " |\n|"
        . join('|', map { '---' } @{ $rt[0] }) . "|\n";
    $rmd .= '| ' . join(' | ', map { md($_) } @$_) . " |\n" for @rt[1 .. $#rt];
    $rmd .= "\nok: pass; xf: xfail (expected failure); na: n/a; -: not tested "
        . "in that column.  Reasons: build/interop/matrix-VERSION.md.\n";
    my $rfile = repo_root() . "/build/interop/matrix-releases$kind.md";
    if (open(my $fh, '>', $rfile)) {
        print $fh $rmd;
        close $fh;
        note("written to $rfile");
    }
}

done_testing;
