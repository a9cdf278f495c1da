#!/usr/bin/perl

# conf/xmpp-scram-keys against what real servers stored: users with known
# passwords in a real Prosody (internal_hashed, SCRAM-SHA-1) and a real
# ejabberd (auth_password_format: scram, one host with SHA-1, one with
# SHA-256); the keys the script reads from their storage must equal the
# keys it derives from the known password with the stored salt and
# iteration count.  Then the backend credentials of a SCRAM deployment,
# at the real backends (no nginx: what nginx would send):
#   - ejabberd with auth_method [internal, external] and the script as
#     extauth program: a token the script mints logs in with SASL PLAIN, a
#     wrong, another user's or an expired token does not, the user's own
#     password still does
#     (a host with an external method offers only PLAIN);
#   - both servers: a SCRAM login that knows only StoredKey and ServerKey
#     (as auth_http returns them) and the ClientKey recovered from a
#     client's proof, never the password, succeeds: what nginx can do
#     instead of PLAIN when the keys come from the backend's own storage.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64 decode_base64);
use Test::More;

use XT::Ejabberd;
use XT::Nginx;
use XT::Prosody;
use XT::XMPP;

my $SCRIPT = XT::Nginx::repo_root() . '/conf/xmpp-scram-keys';
require $SCRIPT;

my $t = XT::Nginx->new();
$t->plan(26);
my $dir = $t->testdir;

my %pass = (
    'alice@example.com' => 'pencil',
    'b.o%b@example.com' => "spaces and \"quotes\" \x{e4}",
    'carol@p-2.test'    => 'x',
);
utf8::encode($_) for values %pass;

###############################################################################
# Prosody

my $p = XT::Prosody->new(dir => "$dir/prosody",
    domains => ['example.com', 'p-2.test']);
$p->register(split(/@/, $_), $pass{$_}) for sort keys %pass;

like(slurp($p->config_file), qr/^authentication = "internal_hashed"$/m,
    'prosody: storage is internal_hashed');

my $out = run_script([], '--prosody', "$dir/prosody/data");
my %lines = map { /^(\S+) / ? ($1 => $_) : () } split /^/, $out;
is_deeply([sort keys %lines], [sort keys %pass],
    'prosody: every account read, jids decoded');
for my $jid (sort keys %pass) {
    is(derived($lines{$jid}, $jid, 'sha-1'), $lines{$jid},
        "prosody: $jid: stored keys are the derived ones");
}

like(run_script(["pencil\n"], '--salt', 'c2FsdA==', 'Alice@Example.COM'),
    qr/^alice\@example\.com "c2FsdA==,4096,[\w+\/]{27}=,[\w+\/]{27}=";\n\z/,
    'password mode: one line, jid lowercased, sha-1 sizes');

ok(scram_login($p->port, 'example.com', 'alice', $lines{'alice@example.com'},
        'sha-1', $pass{'alice@example.com'}),
    'prosody: SCRAM-SHA-1 login with the recovered ClientKey');
ok(!scram_login($p->port, 'example.com', 'alice', $lines{'alice@example.com'},
        'sha-1', 'wrong'),
    'prosody: SCRAM login from a wrong password\'s proof fails');
ok(plain_login($p->port, 'example.com', 'alice', 'pencil'),
    'prosody: own password, PLAIN');

###############################################################################
# ejabberd

SKIP: {
my $why = XT::Ejabberd::available();
skip "ejabberd: $why", 17 if $why;

my $secret = "$dir/extauth.secret";
write_file($secret, "a shared secret of the auth server\n");
chmod 0644, $secret;
my $extauth = "/usr/bin/perl $SCRIPT --extauth --secret-file $secret";

my $e = XT::Ejabberd->new(dir => "$dir/ejabberd",
    domains => ['e1.test', 'e2.test', 'e3.test'],
    extra => <<"EOF");
extauth_program: "$extauth"
auth_use_cache: false
host_config:
  e1.test:
    auth_method: [internal, external]
    auth_password_format: scram
  e2.test:
    auth_method: internal
    auth_password_format: scram
    auth_scram_hash: sha256
  e3.test:
    auth_method: internal
    auth_password_format: scram
EOF
my %epass = (
    'alice@e1.test' => 'pencil',
    'dave@e1.test'  => 'dave',
    'bob@e3.test'   => 'correct horse',
    'carol@e2.test' => "caf\x{e9}",
);
utf8::encode($_) for values %epass;
$e->register_many(map { [split(/@/, $_), $epass{$_}] } sort keys %epass);

my $dump = $e->dir . '/passwd.dump';
my ($rc, $o) = $e->ctl('dump_table', $dump, 'passwd');
is($rc, 0, 'ejabberd: dump_table passwd') or diag $o;

my %l1 = lines(run_script([], '--ejabberd', $dump));
my %l256 = lines(run_script([], '--hash', 'sha-256', '--ejabberd', $dump));
is_deeply([sort keys %l1], ['alice@e1.test', 'bob@e3.test', 'dave@e1.test'],
    'ejabberd: the SHA-1 accounts');
is_deeply([sort keys %l256], ['carol@e2.test'], 'ejabberd: the SHA-256 one');
for my $jid (sort keys %l1) {
    is(derived($l1{$jid}, $jid, "sha-1", $epass{$jid}), $l1{$jid},
        "ejabberd: $jid: stored SHA-1 keys are the derived ones");
}
is(derived($l256{'carol@e2.test'}, 'carol@e2.test', 'sha-256',
        $epass{'carol@e2.test'}), $l256{'carol@e2.test'},
    'ejabberd: carol@e2.test: stored SHA-256 keys are the derived ones');

# backend credentials: tokens through extauth
my $tok = run_script([], '--token', '--secret-file', $secret, 'alice@e1.test');
chomp $tok;
like($tok, qr/^xt1\.\d+\.[\w-]{43}$/, 'token minted');
ok(plain_login($e->port, 'e1.test', 'alice', $tok),
    'ejabberd: PLAIN with the token');
ok(!plain_login($e->port, 'e1.test', 'dave', $tok),
    'ejabberd: alice\'s token is not dave\'s');
(my $bad = $tok) =~ s/.$/$& eq 'A' ? 'B' : 'A'/e;
ok(!plain_login($e->port, 'e1.test', 'alice', $bad),
    'ejabberd: a wrong token fails');
my $old = XmppScramKeys::token(
    XmppScramKeys::read_secret($secret), 'alice@e1.test', 60, time - 120);
ok(!plain_login($e->port, 'e1.test', 'alice', $old),
    'ejabberd: an expired token fails');
ok(plain_login($e->port, 'e1.test', 'alice', 'pencil'),
    'ejabberd: own password still works');

# with an external method ejabberd offers only PLAIN: SCRAM with the
# recovered ClientKey needs a host with the internal method alone
like(connect_to($e->port, 'e1.test')->{features}, qr{<mechanisms[^>]*>
        <mechanism>PLAIN</mechanism></mechanisms>}x,
    'ejabberd: internal+external: PLAIN only');

# SCRAM with the recovered ClientKey, both hashes
ok(scram_login($e->port, 'e3.test', 'bob', $l1{'bob@e3.test'}, 'sha-1',
        $epass{'bob@e3.test'}),
    'ejabberd: SCRAM-SHA-1 login with the recovered ClientKey');
ok(scram_login($e->port, 'e2.test', 'carol', $l256{'carol@e2.test'},
        'sha-256', $epass{'carol@e2.test'}),
    'ejabberd: SCRAM-SHA-256 login with the recovered ClientKey');
ok(!scram_login($e->port, 'e2.test', 'carol', $l256{'carol@e2.test'},
        'sha-256', 'nope'),
    'ejabberd: SCRAM login from a wrong password\'s proof fails');

sub lines { map { /^(\S+) / ? ($1 => $_) : () } split /^/, $_[0] }
}

###############################################################################

# derived($line, $jid, $hash[, $password]): the map line the script derives
# from the known password with the salt and iteration count of $line
sub derived {
    my ($line, $jid, $hash, $pw) = @_;
    my ($salt, $n) = $line =~ /^\S+ "([^,]+),(\d+),/ or return 'no line';
    return run_script([($pw // $pass{$jid}) . "\n"], '--hash', $hash,
        '--salt', $salt, '--iterations', $n, $jid);
}

# run_script([$stdin], @args): the script's stdout (as a program: its
# command line is what is tested)
sub run_script {
    my ($in, @args) = @_;
    my $f = "$dir/script.in";
    write_file($f, join '', @$in);
    my $pid = open(my $r, '-|') // die "fork: $!";
    if ($pid == 0) {
        open(STDIN, '<', $f) or die "$f: $!";
        open(STDERR, ">>", "$dir/script.err") or die "stderr: $!";
        exec($^X, $SCRIPT, @args) or die "exec: $!";
    }
    my $out = do { local $/; <$r> } // '';
    close $r;
    die "xmpp-scram-keys @args: exit $?" if $?;
    return $out;
}

sub slurp {
    open(my $fh, '<', $_[0]) or die "$_[0]: $!";
    local $/;
    return <$fh>;
}

sub write_file {
    open(my $fh, '>', $_[0]) or die "$_[0]: $!";
    print $fh $_[1];
    close $fh;
}

sub connect_to {
    my ($port, $domain) = @_;
    my $c = XT::XMPP->new(port => $port, timeout => 10) or die $XT::XMPP::ERROR;
    $c->open_stream($domain);
    $c->{features} = $c->read_until(qr{</stream:features>})
        or die 'no features';
    return $c;
}

sub plain_login {
    my ($port, $domain, $user, $pw) = @_;
    my $c = connect_to($port, $domain);
    $c->auth_plain($user, $pw);
    my $r = $c->read_element // '';
    return $r =~ /^<success/ ? 1 : 0;
}

# scram_login($port, $domain, $user, $map_line, $hash, $password): a
# client's SCRAM exchange where the password makes only the proof (as a
# client's would); the login itself knows only the map line: it recovers
# ClientKey = proof XOR HMAC(StoredKey, AuthMessage), checks H(ClientKey)
# == StoredKey (what nginx does) and answers the backend with it, then
# checks the backend's ServerSignature with ServerKey.
sub scram_login {
    my ($port, $domain, $user, $line, $hash, $pw) = @_;
    my ($salt, $n, $stored, $server) = map { /^\d+$/ ? $_ : decode_base64($_) }
        $line =~ /^\S+ "([^,]+),(\d+),([^,]+),([^"]+)";/;
    my $H = uc $hash;
    my $c = connect_to($port, $domain);

    # the client side: its proof, from the password
    my $client_proof = sub {
        my ($auth_message) = @_;
        my (undef, undef, $ck) = XmppScramKeys::derive($hash, $pw, $salt, $n);
        return $ck ^ XmppScramKeys::hmac($hash, $stored, $auth_message);
    };

    my $bare = "n=$user,r=" . join '', map { ('a' .. 'z')[rand 26] } 1 .. 24;
    $c->send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
        . " mechanism='SCRAM-$H'>" . encode_base64("n,,$bare", '') . '</auth>');
    my $ch = $c->read_element // '';
    my ($sf) = $ch =~ m{^<challenge[^>]*>([^<]+)</challenge>} or return 0;
    $sf = decode_base64($sf);
    my ($nonce) = $sf =~ /(?:^|,)r=([^,]+)/ or return 0;
    my $final = "c=biws,r=$nonce";
    my $msg = "$bare,$sf,$final";

    # the login side: ClientKey from the proof and StoredKey alone
    my $ck = $client_proof->($msg) ^ XmppScramKeys::hmac($hash, $stored, $msg);
    return 0 unless XmppScramKeys::h($hash, $ck) eq $stored;
    my $proof = $ck ^ XmppScramKeys::hmac($hash, $stored, $msg);
    $c->send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        . encode_base64("$final,p=" . encode_base64($proof, ''), '')
        . '</response>');
    my $r = $c->read_element // '';
    my ($v) = $r =~ m{^<success[^>]*>([^<]+)</success>} or return 0;
    return decode_base64($v) eq
        'v=' . encode_base64(XmppScramKeys::hmac($hash, $server, $msg), '');
}
