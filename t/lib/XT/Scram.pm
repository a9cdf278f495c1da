package XT::Scram;

# A raw SCRAM client (RFC 5802, RFC 7677) with channel binding computed on
# the client's side of the TLS session (RFC 9266 tls-exporter, RFC 5929
# tls-unique and tls-server-end-point), for tests that must also send what
# a real client would not.  The keys come from XT::XmppProxy::scram_keys.

use strict;
use warnings;

use MIME::Base64 qw/encode_base64 decode_base64/;
use Net::SSLeay;

use XT::XmppProxy;

my $SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'";

# cb_data($c, $type): the binding data the client computes for its session
sub cb_data {
    my ($c, $type) = @_;
    my $ssl = $c->socket->_get_ssl_object;
    if ($type eq 'tls-exporter') {
        return Net::SSLeay::export_keying_material($ssl, 32,
            'EXPORTER-Channel-Binding');
    }
    if ($type eq 'tls-unique') {
        # the client's own Finished in a full handshake
        my $n = Net::SSLeay::get_finished($ssl, my $buf);
        return substr($buf, 0, $n);
    }
    # tls-server-end-point (RFC 5929 4.1): the hash of the certificate's
    # signature, SHA-256 where that is MD5 or SHA-1
    my $cert = Net::SSLeay::get_peer_certificate($ssl);
    my $alg = Net::SSLeay::OBJ_obj2txt(
        Net::SSLeay::P_X509_get_signature_alg($cert));
    my ($h) = $alg =~ /sha-?(224|256|384|512)/i;
    return Net::SSLeay::X509_digest($cert,
        Net::SSLeay::EVP_get_digestbyname('sha' . ($h // 256)));
}

# exchange($c, %o): one SCRAM exchange on an XT::XMPP stream whose
# features were read; returns nginx's last answer and whether its server
# signature was right.  Options: mech (SCRAM-SHA-256-PLUS), cb
# (tls-exporter), user (alice), password (alice-scram-pw), nonce, gs2 (the
# gs2 header, default from mech and cb); to misbehave: tamper_nonce,
# tamper_cb, data_type (binding data of another type), cbdata (these
# bytes as binding data).
sub exchange {
    my ($c, %o) = @_;
    my $mech = $o{mech} // 'SCRAM-SHA-256-PLUS';
    my $hash = $mech =~ /SHA-256/ ? 'SHA-256' : 'SHA-1';
    my $cb = $o{cb} // 'tls-exporter';
    my $gs2 = $o{gs2} // ($mech =~ /PLUS/ ? "p=$cb,," : 'n,,');
    my $nonce = $o{nonce} // 'abcdefghijklmnopqrstuvwx';
    my $bare = 'n=' . ($o{user} // 'alice') . ",r=$nonce";
    $c->send("<auth $SASL mechanism='$mech'>"
        . encode_base64($gs2 . $bare, '') . '</auth>');
    my $ch = $c->read_element // '';
    return ($ch, 0) unless $ch =~ m{^<challenge[^>]*>([^<]*)</challenge>};
    my $first = decode_base64($1);
    my ($r, $s, $i) = $first =~ /^r=([^,]+),s=([^,]+),i=(\d+)$/
        or return ("bad server-first: $first", 0);
    # another last character (the nonce may end with either)
    $r = substr($r, 0, -1) . (substr($r, -1) eq 'X' ? 'Y' : 'X')
        if $o{tamper_nonce};
    my $cbdata = $o{cbdata}
        // ($gs2 =~ /^p=/ ? cb_data($c, $o{data_type} // $cb) : '');
    $cbdata ^= "\1" if $o{tamper_cb};
    my $final = 'c=' . encode_base64($gs2 . $cbdata, '') . ",r=$r";
    my ($stored, $server, $salted) = XT::XmppProxy::scram_keys($hash,
        $o{password} // 'alice-scram-pw', decode_base64($s), $i);
    my $hmac = XT::XmppProxy::scram_hmac($hash);
    my $auth = "$bare,$first,$final";
    my $ckey = $hmac->('Client Key', $salted);
    my $proof = $ckey ^ $hmac->($auth, $stored);
    $c->send("<response $SASL>"
        . encode_base64("$final,p=" . encode_base64($proof, ''), '')
        . '</response>');
    my $a = $c->read_element // '';
    my $v = 0;
    if ($a =~ m{^<success[^>]*>([^<]+)</success>}) {
        $v = decode_base64($1) eq 'v=' . encode_base64($hmac->($auth,
            $server), '');
    }
    return ($first =~ /^r=\Q$nonce\E/ ? $a : "nonce: $first", $v);
}

1;
