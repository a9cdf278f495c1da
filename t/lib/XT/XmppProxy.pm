package XT::XmppProxy;

# The usual setup of an XMPP test: nginx with an XMPP mail server on
# %%PORT_5222%% (STARTTLS) and %%PORT_5223%% (direct TLS), and an auth_http
# endpoint served by an http block of the same nginx on %%PORT_8081%%.
#
#   my $conf = XT::XmppProxy::conf(
#       backend  => $prosody->port,      # Auth-Port for everybody
#       starttls => 'only',              # on | only | off
#       mail     => 'max_errors 3;',     # extra lines in the mail server
#       auth     => '...',               # extra lines in location /auth
#       http     => '...',               # extra lines in the http block
#   );
#   $t->write_file_expand('nginx.conf', $conf);
#
# The auth endpoint says OK to every login and sends it to the backend,
# which checks the password; a password "wrong-pw" is refused by the auth
# endpoint itself with Auth-Status "Invalid login or password", "wait-pw"
# with Auth-Wait 1 and Auth-Error-Code "454 4.7.0", "disabled-pw" with
# Auth-Error-Code "account-disabled"; the account "unknown@..." (the one
# refusal without a password: SCRAM sends none) with "Invalid login or
# password".  "backend" may be an nginx variable
# (defined with "http") to route users to different ports.  Every
# request is logged in auth.log as the values of its headers, separated
# by "|":  method user pass protocol attempt client-ip ssl salt.
# The certificate is TESTDIR/xmpp.crt for example.com (gen_cert called).
#
# SCRAM: conf(..., scram => { 'alice@example.com' => [$scram_pw,
# $backend_pw], ... }) makes the endpoint answer scram-sha-1 and
# scram-sha-256 requests for those accounts with their keys (salt
# "salt-of-<localpart>", 4096 iterations) and the backend password as
# Auth-Pass; scram_keys($hash, $password, $salt, $i) gives StoredKey,
# ServerKey and SaltedPassword (RFC 5802) for a test's own client.

use strict;
use warnings;

use Digest::SHA qw/sha1 sha256 hmac_sha1 hmac_sha256/;
use MIME::Base64 qw/encode_base64/;

my %HASH = ('SHA-1' => [\&sha1, \&hmac_sha1],
    'SHA-256' => [\&sha256, \&hmac_sha256]);

# scram_keys($hash, $password, $salt, $i): (StoredKey, ServerKey,
# SaltedPassword), raw bytes; SaltedPassword is PBKDF2 with one block
sub scram_keys {
    my ($hash, $pw, $salt, $i) = @_;
    my ($h, $hmac) = @{$HASH{$hash}};
    my $u = $hmac->($salt . "\0\0\0\1", $pw);
    my $salted = $u;
    for (2 .. $i) { $u = $hmac->($u, $pw); $salted ^= $u; }
    return ($h->($hmac->('Client Key', $salted)),
        $hmac->('Server Key', $salted), $salted);
}

# scram_hmac($hash): the HMAC function of the hash, called (data, key)
sub scram_hmac { $HASH{$_[0]}[1] }

# scram_auth_conf({ USER => [$scram_pw, $backend_pw], ... }): the maps
# (for the http block) and add_header lines (for location /auth) of the
# SCRAM answers that conf(scram => ...) makes; XT::Interop uses them too
sub scram_auth_conf {
    my ($users) = @_;
    my %map;
    for my $user (sort keys %$users) {
        my ($pw, $backend) = @{$users->{$user}};
        my $s = 'salt-of-' . ($user =~ s/\@.*//r);
        for my $m (['scram-sha-1', 'SHA-1'], ['scram-sha-256', 'SHA-256']) {
            my ($stored, $server) = scram_keys($m->[1], $pw, $s, 4096);
            my $k = qq{        "$m->[0]:$user"};
            $map{stored} .= "$k " . encode_base64($stored, '') . ";\n";
            $map{server} .= "$k " . encode_base64($server, '') . ";\n";
            $map{salt} .= "$k " . encode_base64($s, '') . ";\n";
            $map{backend_pass} .= "$k $backend;\n";
        }
    }
    my $http = '';
    for my $v (qw/stored server salt backend_pass/) {
        $http .= "    map \"\$http_auth_method:\$http_auth_user\""
            . " \$xt_scram_$v {\n$map{$v}        default \"\";\n    }\n";
    }
    $http .= "    map \$xt_scram_salt \$xt_scram_iterations {\n"
        . "        \"\" \"\";\n        default 4096;\n    }\n";
    my $auth = join '', map { "            add_header $_->[0] \$xt_scram_$_->[1];\n" }
        ['Auth-SCRAM-Salt', 'salt'], ['Auth-SCRAM-Iterations', 'iterations'],
        ['Auth-SCRAM-StoredKey', 'stored'], ['Auth-SCRAM-ServerKey', 'server'],
        ['Auth-Pass', 'backend_pass'];
    return ($http, $auth);
}

sub conf {
    my (%o) = @_;

    my $starttls = $o{starttls} // 'only';
    my $mail = $o{mail} // '';
    my $auth = $o{auth} // '';
    my $http = $o{http} // '';
    my $backend = $o{backend} // die "XT::XmppProxy: backend port needed\n";

    if ($o{scram}) {
        my ($h, $a) = scram_auth_conf($o{scram});
        $http .= $h;
        $auth .= $a;
    }

    return <<"EOF";
%%TEST_GLOBALS%%

events {
}

http {
    log_format auth '\$http_auth_method|\$http_auth_user|\$http_auth_pass|'
                    '\$http_auth_protocol|\$http_auth_login_attempt|'
                    '\$http_client_ip|\$http_auth_ssl|\$http_auth_salt';

    map \$http_auth_pass \$xt_pass_status {
        "wrong-pw"     "Invalid login or password";
        "wait-pw"      "Try again later";
        "disabled-pw"  "Account disabled";
        default        OK;
    }

    map \$http_auth_user \$xt_status {
        "~^unknown\@"  "Invalid login or password";
        default        \$xt_pass_status;
    }

    map \$http_auth_pass \$xt_wait {
        "wait-pw"      1;
        default        "";
    }

    map \$http_auth_pass \$xt_code {
        "wait-pw"      "454 4.7.0";
        "disabled-pw"  "account-disabled";
        default        "";
    }

$http

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        access_log %%TESTDIR%%/auth.log auth;

        location = /auth {
$auth
            add_header Auth-Status \$xt_status;
            add_header Auth-Wait \$xt_wait;
            add_header Auth-Error-Code \$xt_code;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port $backend;
            return 204;
        }
    }
}

mail {
    auth_http 127.0.0.1:%%PORT_8081%%/auth;
    server_name proxy.test;

    ssl_certificate %%TESTDIR%%/xmpp.crt;
    ssl_certificate_key %%TESTDIR%%/xmpp.key;

    server {
        listen 127.0.0.1:%%PORT_5222%%;
        protocol xmpp;
        starttls $starttls;
$mail
    }

    server {
        listen 127.0.0.1:%%PORT_5223%% ssl;
        protocol xmpp;
$mail
    }
}
EOF
}

# auth_log($t): the auth requests as array refs of header values
sub auth_log {
    my ($t) = @_;
    my $log = eval { $t->read_file('auth.log') } // '';
    return map { [ split /\|/, $_, -1 ] } split /\n/, $log;
}

1;
