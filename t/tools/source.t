#!/usr/bin/perl

# The module's C sources (src/mail/*.c, *.h) against rules that a build
# does not check: the layout of nginx's own code (at most 80 columns, no
# tabs, no trailing whitespace), and the arguments of every
# ngx_log_debugN() and ngx_log_error() call against its format string.  A
# debug call is compiled only --with-debug, which no test build uses: a
# wrong argument count there (a "%*s" given one argument) would read
# garbage when an operator turns debug logging on.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Test::More;

use XT::Nginx qw(repo_root);

my @files = sort glob(repo_root() . '/src/mail/*.[ch]');
plan(tests => 2 * @files);

# the arguments a format string takes (ngx_vslprintf's conversions)
sub format_args {
    my ($fmt) = @_;
    my $n = 0;
    while ($fmt =~ /%(0?)(\d*)([xX]?)(?:\.(\d+))?(\*?)([umz]*)([a-zA-Z%])/g) {
        my ($star, $type) = ($5, $7);
        next if $type eq '%' || $type eq 'Z' || $type eq 'N';
        $n += 1 + ($star ? 1 : 0);
    }
    return $n;
}

# call_args(\$src, $pos): the arguments of the call whose "(" ends at
# $pos, split at the commas outside parentheses and strings
sub call_args {
    my ($src, $pos) = @_;
    my (@args, $cur, $depth, $str);
    ($cur, $depth, $str) = ('', 0, 0);
    pos($$src) = $pos;
    while ($$src =~ /\G(\\.|"|\(|\)|,|[^\\"(),]+)/gs) {
        my $t = $1;
        if ($str) {
            $str = 0 if $t eq '"';
        } elsif ($t eq '"') {
            $str = 1;
        } elsif ($t eq '(') {
            $depth++;
        } elsif ($t eq ')') {
            last if $depth-- == 0;
        } elsif ($t eq ',' && $depth == 0) {
            push @args, $cur;
            $cur = '';
            next;
        }
        $cur .= $t;
    }
    push @args, $cur;
    return map { s/^\s+|\s+$//gr } @args;
}

for my $file (@files) {
    (my $name = $file) =~ s{.*/src/}{src/};
    open(my $fh, '<', $file) or die "$file: $!\n";
    my @lines = <$fh>;
    close $fh;
    my $src = join '', @lines;

    my @layout;
    for my $i (0 .. $#lines) {
        my $l = $lines[$i];
        chomp $l;
        push @layout, ($i + 1) . ': longer than 80 columns' if length $l > 80;
        push @layout, ($i + 1) . ': a tab' if $l =~ /\t/;
        push @layout, ($i + 1) . ': trailing whitespace' if $l =~ /[ \t]$/;
    }
    is(join("\n", @layout), '', "$name: layout");

    my @bad;
    while ($src =~ /\b(ngx_log_debug(\d)|ngx_log_error)\s*\(/g) {
        my ($fn, $want) = ($1, $2);
        my $start = pos($src);
        my @args = call_args(\$src, $start);
        pos($src) = $start;
        my $line = 1 + (substr($src, 0, $start) =~ tr/\n//);
        next if $fn eq 'ngx_log_debug' || @args < 4;    # the macros themselves
        my $fmt = join '', $args[3] =~ /"((?:[^"\\]|\\.)*)"/g;
        my $given = @args - 4;
        my $takes = format_args($fmt);
        push @bad, "$line: $fn takes $takes arguments, given $given: \"$fmt\""
            if $takes != $given || (defined $want && $want != $given);
    }
    is(join("\n", @bad), '', "$name: log calls match their formats");
}
