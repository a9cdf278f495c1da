#!/usr/bin/perl

# Interop: mcabber (a console client, on loudmouth) driven in tmux through
# nginx to Prosody and ejabberd, STARTTLS (its "tls") and direct TLS (its
# "ssl"): log in, /say_to a second user (the raw client), who checks the
# message and answers; the answer must show up on mcabber's screen.
#
# The suite's Prosody runs in its stock configuration (STARTTLS offered,
# encryption required) and nginx logs in to it over TLS (auth_http's
# Auth-XMPP-Proxy-SSL: starttls), so that Prosody sees a secure stream
# and offers no <starttls/> after the login.  Before TLS to the backend it
# did, on the client's already encrypted stream (RFC 6120 5.3.1: a server
# MUST NOT offer STARTTLS again); loudmouth took the offer, started a
# second TLS handshake, and the session died before resource binding.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use MIME::Base64 qw(encode_base64);
use Test::More;
use XT::Interop;
use XT::XMPP;

XT::Interop::need(-x '/usr/bin/mcabber', 'mcabber');
XT::Interop::need(-x '/usr/bin/tmux', 'tmux');

my $ix = XT::Interop->new(name => 'mcabber');
$ix->program_cells([$^X, "$FindBin::Bin/../lib/interop/mcabber_client.pl",
        '--dir', $ix->t->testdir],
    scram => qr/^PLAIN$/);   # loudmouth has no SCRAM

###############################################################################

# The cause, reduced: the features the client gets after the restart (over
# TLS with nginx) must not offer STARTTLS.

for my $b ($ix->backends) {
    $ix->cell($b, 'tls', sub {
        my $f = features_after_restart($ix->domain($b));
        ok($f =~ /^<stream:features\b.*<bind\b/s && $f !~ /<starttls\b/,
            "raw $b: features after the restart offer no <starttls/> on the TLS stream")
            or diag("got: $f");
    }, name => 'raw: no <starttls/> after the restart');
}

sub features_after_restart {
    my ($dom) = @_;
    my $c = XT::XMPP->new(port => $ix->port('tls'), ssl => 1,
        ssl_opts => { SSL_hostname => $dom }) or return "connect: $XT::XMPP::ERROR";
    $c->open_stream($dom);
    $c->read_element;
    $c->read_element;
    $c->auth_plain('alice', 'alice-pw');
    my $s = $c->read_element // 'EOF';
    return "SASL: $s" unless $s =~ /^<success\b/;
    $c->open_stream($dom);
    my $h = $c->read_element // 'EOF';
    return "header: $h" unless $h =~ /^<stream:stream\b/;
    return $c->read_element // 'EOF';
}

# The old workaround: a Prosody backend that does not offer STARTTLS (its
# "tls" module disabled), logged in to over plain TCP, works with mcabber
# over STARTTLS too.

my $ix2 = XT::Interop->new(name => 'mcabber, Prosody without STARTTLS offer',
    part => 'no-starttls', backends => ['prosody'],
    prosody => { tls => 0, extra => 'modules_disabled = { "s2s"; "tls"; }' });
$ix2->cell('prosody', 'starttls', sub {
    $ix2->exchange('prosody', 'starttls', cmd => sub {
        my %a = @_;
        return ($^X, "$FindBin::Bin/../lib/interop/mcabber_client.pl",
            '--dir', $ix2->t->testdir, map { ("--$_", $a{$_}) }
            qw(host port mode jid password to body expect timeout));
    });
});
$ix2->finish;

$ix->done;
