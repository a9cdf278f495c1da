package XT::XMPP;

# A small XMPP test client that reads by XML unit, not by line.
#
#   my $c = XT::XMPP->new(port => $p, host => '127.0.0.1', ssl => 0, timeout => 5)
#       or die $XT::XMPP::ERROR;
#   (local_addr => '127.0.0.2': the client's own address, as from
#   another host, for tests of what nginx learns of the client)
#   $c->send("<?xml version='1.0'?><stream:stream ...>");
#   my $unit = $c->read_element;    # undef on EOF or timeout
#
# Units returned by read_element():
#   * a stream opening tag, "<stream:stream ...>" with any prefix (or none),
#     on its own (it is never closed inside the unit);
#   * a closing tag at the top level, e.g. "</stream:stream>";
#   * any other complete top-level element with everything inside it,
#     e.g. "<stream:features>...</stream:features>", "<proceed .../>";
#   * non-blank text found at the top level, up to the next "<" (or to EOF).
# XML declarations ("<?xml ...?>") are NOT returned: they are skipped and
# the last one seen is kept in $c->{xml_decl}.  Comments and whitespace
# between units are skipped too.
#
# Methods (each is described where it is defined):
#   send($bytes)  read_element([$timeout])  read_until(qr//[, $timeout])
#   eof_within($secs)  fill($deadline)      the reading and writing
#   starttls(%ssl_opts)                     the TLS handshake in place
#   tls_stream($to, %opts)                  STARTTLS from the first header
#                                           to the features after TLS
#   stream_header                           the last one read
#   open_stream($to, %attrs)  auth_plain($user, $pass[, $authzid])
#   XT::XMPP->login(...)      a bound session on a backend's own port
#   chat($peer, $jid, $body[, $timeout])   a message to $jid, as $peer
#                                           received it
#   socket  buffer (bytes received, not yet returned)  error  is_ssl  close
# and the function XT::XMPP::show($bytes) for diagnostics.  Set
# $c->{timeout} to change the default timeout; methods that wait also take
# a timeout argument.

use strict;
use warnings;

use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::SSL;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time);

our $ERROR = '';

my $STREAM_HEADER = qr/^<(?:[^\s\/>:]+:)?stream[\s>]/;

my %SSL_DEFAULTS = (
    SSL_verify_mode => SSL_VERIFY_NONE,
);

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        host    => $o{host} // '127.0.0.1',
        port    => $o{port},
        timeout => $o{timeout} // 5,
        buf     => '',
        eof     => 0,
        ssl     => 0,
    }, $class;

    my $s = IO::Socket::INET->new(
        PeerAddr => $self->{host}, PeerPort => $self->{port},
        Proto => 'tcp', Timeout => $self->{timeout},
        defined $o{local_addr} ? (LocalAddr => $o{local_addr}) : (),
    );
    unless ($s) {
        $ERROR = "connect to $self->{host}:$self->{port}: $@";
        return undef;
    }
    setsockopt($s, Socket::IPPROTO_TCP(), Socket::TCP_NODELAY(), 1);
    $self->{sock} = $s;

    if ($o{ssl}) {
        my %ssl = %{ $o{ssl_opts} // {} };
        unless ($self->starttls(%ssl)) {
            $ERROR = $self->{error};
            return undef;
        }
    } else {
        $s->blocking(0);
    }
    return $self;
}

sub socket { $_[0]{sock} }
sub buffer { $_[0]{buf} }
sub error  { $_[0]{error} }
sub is_ssl { $_[0]{ssl} }

# stream_header(): the last stream header that read_element() returned.
sub stream_header { $_[0]{stream_header} }

sub close {
    my ($self) = @_;
    my $s = delete $self->{sock} or return;
    $s->close;
}

# starttls(%opts): TLS handshake on the existing connection (after
# "<proceed/>", or right away for direct TLS).  Options are passed to
# IO::Socket::SSL->start_SSL; certificates are not verified unless
# SSL_verify_mode says so.  SSL_hostname sets SNI.  True on success.
sub starttls {
    my ($self, %opts) = @_;
    if (length $self->{buf}) {
        $self->{error} = 'plaintext bytes are buffered before the TLS handshake: '
            . show($self->{buf});
        return 0;
    }
    my $s = $self->{sock};
    $s->blocking(1);
    my $ok = IO::Socket::SSL->start_SSL($s,
        %SSL_DEFAULTS,
        Timeout => $self->{timeout},
        %opts,
    );
    unless ($ok) {
        $self->{error} = "TLS handshake failed: " . ($SSL_ERROR || $! || 'unknown');
        return 0;
    }
    $s->blocking(0);
    $self->{ssl} = 1;
    return 1;
}

# show($bytes): the bytes for a test's diagnostics: at most 200 of them,
# anything but printable ASCII as \xNN.  A function: XT::XMPP::show($s).
sub show {
    my ($s) = @_;
    $s = substr($s, 0, 200) . '...' if length $s > 200;
    $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

# send($bytes): writes everything (waiting for the socket as needed).
sub send {
    my ($self, $data) = @_;
    my $s = $self->{sock} or return 0;
    my $end = time() + $self->{timeout};
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        if (defined $n) {
            $off += $n;
            next;
        }
        if ($self->{ssl} && ($SSL_ERROR == SSL_WANT_READ || $SSL_ERROR == SSL_WANT_WRITE)) {
            # fall through to wait
        } elsif (!($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR)) {
            $self->{error} = "write: $!";
            return 0;
        }
        my $left = $end - time();
        if ($left <= 0) {
            $self->{error} = 'write timeout';
            return 0;
        }
        IO::Select->new($s)->can_write($left);
    }
    return 1;
}

# fill($deadline): reads more bytes into the buffer, waiting until the
# absolute time $deadline (Time::HiRes::time) at most.  Returns the number
# of bytes read, 0 on EOF (or a read error: $c->error says which), undef on
# timeout.  For tests that look at the raw bytes ($c->buffer) rather than
# at units.
sub fill {
    my ($self, $deadline) = @_;
    my $s = $self->{sock};
    return 0 if $self->{eof} || !$s;

    while (1) {
        # Decrypted bytes already held by the TLS layer are not visible to
        # select(): take them first.
        my $want = 16384;
        if ($self->{ssl} && (my $p = $s->pending)) {
            $want = $p if $p > $want;
        }
        my $n = sysread($s, $self->{buf}, $want, length $self->{buf});
        if (defined $n) {
            if ($n == 0) {
                $self->{eof} = 1;
                return 0;
            }
            # Drain whatever else the TLS layer already holds.
            while ($self->{ssl} && $s->pending) {
                my $m = sysread($s, $self->{buf}, $s->pending, length $self->{buf});
                last unless $m;
                $n += $m;
            }
            return $n;
        }
        my $wait_write = 0;
        if ($self->{ssl}) {
            if ($SSL_ERROR == SSL_WANT_WRITE) {
                $wait_write = 1;
            } elsif ($SSL_ERROR != SSL_WANT_READ && !($! == EAGAIN || $! == EINTR)) {
                # a reset or a TLS alert counts as the peer having gone
                $self->{error} = "read: " . ($SSL_ERROR || $!);
                $self->{eof} = 1;
                return 0;
            }
        } elsif (!($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR)) {
            $self->{error} = "read: $!";
            $self->{eof} = 1;
            return 0;
        }
        my $left = $deadline - time();
        return undef if $left <= 0;
        my $sel = IO::Select->new($s);
        my @r = $wait_write ? $sel->can_write($left) : $sel->can_read($left);
        return undef unless @r || time() < $deadline;
    }
}

# _tag_end($buf, $pos): index just past the ">" ending the tag that starts
# at $pos, honouring quoted attribute values; -1 if incomplete.
sub _tag_end {
    my ($b, $i) = @_;
    my $len = length $b;
    my $q;
    for (my $j = $i + 1; $j < $len; $j++) {
        my $c = substr($b, $j, 1);
        if (defined $q) {
            undef $q if $c eq $q;
        } elsif ($c eq '"' || $c eq "'") {
            $q = $c;
        } elsif ($c eq '>') {
            return $j + 1;
        }
    }
    return -1;
}

# _unit(): length of the next complete unit at the start of the buffer and
# its kind ('skip' or 'unit'); (0) if more bytes are needed.
sub _unit {
    my ($self, $at_eof) = @_;
    my $b = $self->{buf};
    my $len = length $b;

    if ($b =~ /^(\s+)/) {
        return (length $1, 'skip');
    }
    return (0) unless $len;

    if (substr($b, 0, 1) ne '<') {
        my $lt = index($b, '<');
        return ($lt, 'unit') if $lt > 0;
        return ($len, 'unit') if $at_eof;
        return (0);
    }

    return (0) if $len < 2;
    my $c2 = substr($b, 1, 1);

    if ($c2 eq '?') {
        my $e = index($b, '?>');
        return (0) if $e < 0;
        $self->{xml_decl} = substr($b, 0, $e + 2);
        return ($e + 2, 'skip');
    }
    if ($c2 eq '!') {
        return (0) if $len < 4;
        if (substr($b, 0, 4) eq '<!--') {
            my $e = index($b, '-->', 4);
            return $e < 0 ? (0) : ($e + 3, 'skip');
        }
        my $e = _tag_end($b, 0);
        return $e < 0 ? (0) : ($e, 'unit');
    }
    if ($c2 eq '/') {
        my $e = _tag_end($b, 0);
        return $e < 0 ? (0) : ($e, 'unit');
    }

    my $e = _tag_end($b, 0);
    return (0) if $e < 0;
    my $open = substr($b, 0, $e);
    return ($e, 'unit') if $open =~ m{/\s*>$};
    my ($name) = $open =~ /^<([^\s\/>]+)/;
    return ($e, 'unit') if defined $name && $name =~ /^(?:[^:]+:)?stream$/;

    # a child element: find its end by tracking depth
    my $depth = 1;
    my $i = $e;
    while ($depth > 0) {
        my $lt = index($b, '<', $i);
        return (0) if $lt < 0;
        if (substr($b, $lt, 4) eq '<!--') {
            my $x = index($b, '-->', $lt + 4);
            return (0) if $x < 0;
            $i = $x + 3;
            next;
        }
        if (substr($b, $lt, 9) eq '<![CDATA[') {
            my $x = index($b, ']]>', $lt + 9);
            return (0) if $x < 0;
            $i = $x + 3;
            next;
        }
        return (0) if $lt + 1 >= $len;
        if (substr($b, $lt + 1, 1) eq '?') {
            my $x = index($b, '?>', $lt + 2);
            return (0) if $x < 0;
            $i = $x + 2;
            next;
        }
        my $te = _tag_end($b, $lt);
        return (0) if $te < 0;
        my $tag = substr($b, $lt, $te - $lt);
        if ($tag =~ m{^</}) {
            $depth--;
        } elsif ($tag !~ m{/\s*>$}) {
            $depth++;
        }
        $i = $te;
    }
    return ($i, 'unit');
}

# read_element([$timeout]): the next unit (see above), undef on EOF/timeout.
# A stream header read is also kept as $c->stream_header.
sub read_element {
    my ($self, $timeout) = @_;
    my $deadline = time() + ($timeout // $self->{timeout});
    while (1) {
        my ($n, $kind) = $self->_unit($self->{eof});
        if ($n) {
            my $u = substr($self->{buf}, 0, $n, '');
            next unless $kind eq 'unit';
            $self->{stream_header} = $u if $u =~ $STREAM_HEADER;
            return $u;
        }
        return undef if $self->{eof};
        my $r = $self->fill($deadline);
        return undef unless defined $r;    # timeout
    }
}

# read_until(qr//[, $timeout]): reads until the buffer matches; returns the
# buffer up to the end of the match (removed from the buffer), undef on
# EOF/timeout (the buffer is kept).
sub read_until {
    my ($self, $re, $timeout) = @_;
    my $deadline = time() + ($timeout // $self->{timeout});
    while (1) {
        if ($self->{buf} =~ $re) {
            return substr($self->{buf}, 0, $+[0], '');
        }
        return undef if $self->{eof};
        my $r = $self->fill($deadline);
        return undef unless defined $r;
    }
}

# eof_within($seconds): true if the peer closes the connection within that
# time.  Bytes that arrive meanwhile stay in the buffer.
sub eof_within {
    my ($self, $secs) = @_;
    my $deadline = time() + ($secs // $self->{timeout});
    while (!$self->{eof}) {
        my $r = $self->fill($deadline);
        return 0 unless defined $r;
    }
    return 1;
}

# open_stream($to, %attrs): sends an XML declaration and a client stream
# header (jabber:client, version 1.0) with extra attributes.
sub open_stream {
    my ($self, $to, %attrs) = @_;
    my $a = join '', map { " $_='$attrs{$_}'" } sort keys %attrs;
    return $self->send("<?xml version='1.0'?><stream:stream"
        . (defined $to ? " to='$to'" : '')
        . " version='1.0' xmlns='jabber:client'"
        . " xmlns:stream='http://etherx.jabber.org/streams'$a>");
}

# tls_stream($to, %opts): STARTTLS on a new connection, as a client does
# it: sends a stream header to $to, reads the peer's header and its
# features (which must offer <starttls/>), sends <starttls/>, expects
# <proceed/>, does the TLS handshake (SNI: $to) and sends a new stream
# header, then reads the peer's new header and features.  Returns the last
# unit read (true), or undef with the reason in $c->error.  Options:
#   header   => $bytes  the stream header to send, both times (default:
#                       what open_stream($to) sends, a jabber:client one)
#   restart  => 0       stop after the handshake: no new header
#   features => 0       after the new header read only the peer's header
#   SSL_...             for starttls(); SSL_hostname defaults to $to
sub tls_stream {
    my ($self, $to, %o) = @_;
    my $header = delete $o{header};
    my $restart = delete $o{restart} // 1;
    my $features = delete $o{features} // 1;
    my %ssl = (SSL_hostname => $to, %o);

    my $open = sub {
        return defined $header ? $self->send($header) : $self->open_stream($to);
    };
    my $expect = sub {
        my ($re, $what) = @_;
        my $u = $self->read_element;
        return $u if defined $u && $u =~ $re;
        $self->{error} = defined $u ? "expected $what, got: " . show($u)
            : "no $what (" . ($self->{eof} ? 'EOF' : 'timeout') . ')';
        return undef;
    };

    $open->() or return undef;
    $expect->($STREAM_HEADER, 'stream header') // return undef;
    $expect->(qr/^<(?:[^\s\/>:]+:)?features\b.*<starttls\b/s,
        'stream features offering STARTTLS') // return undef;
    $self->send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        or return undef;
    $expect->(qr/^<proceed\b/, '<proceed/>') // return undef;
    $self->starttls(%ssl) or return undef;
    return 1 unless $restart;

    $open->() or return undef;
    my $u = $expect->($STREAM_HEADER, 'stream header after TLS')
        // return undef;
    return $u unless $features;
    return $expect->(qr/^<(?:[^\s\/>:]+:)?features\b/,
        'stream features after TLS');
}

# auth_plain($user, $pass[, $authzid]): sends a SASL PLAIN <auth/>.
sub auth_plain {
    my ($self, $user, $pass, $authzid) = @_;
    my $b64 = encode_base64(($authzid // '') . "\0$user\0$pass", '');
    return $self->send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"
        . " mechanism='PLAIN'>$b64</auth>");
}

# XT::XMPP->login(port => P, domain => D, user => U, password => PW,
#     resource => R, host => H, starttls => 0|1): a session on a server's
# own port (a backend's, not nginx's): STARTTLS first with starttls => 1
# (a server that requires encryption; its certificate is not checked),
# SASL PLAIN, the restart, resource binding and available presence; {jid}
# is the bound JID.  undef on failure, with the reason in
# $XT::XMPP::ERROR.
sub login {
    my ($class, %o) = @_;
    my $c = $class->new(port => $o{port}, host => $o{host}, timeout => 10)
        or return;
    my $fail = sub { $ERROR = "login $o{user}\@$o{domain}: $_[0]"; return };
    if ($o{starttls}) {
        $c->tls_stream($o{domain}) or return $fail->($c->error);
    } else {
        $c->open_stream($o{domain});
        $c->read_element;
        $c->read_element;
    }
    $c->auth_plain($o{user}, $o{password});
    my $s = $c->read_element // 'EOF';
    return $fail->(show($s)) unless $s =~ /^<success\b/;
    $c->open_stream($o{domain});
    $c->read_element;
    $c->read_element;
    my $r = defined $o{resource} ? "<resource>$o{resource}</resource>" : '';
    $c->send("<iq type='set' id='bind1'><bind"
        . " xmlns='urn:ietf:params:xml:ns:xmpp-bind'>$r</bind></iq>");
    my $b = $c->read_element // 'EOF';
    return $fail->('bind: ' . show($b)) unless $b =~ m{<jid>([^<]+)</jid>};
    $c->{jid} = $1;
    $c->send('<presence/>');
    return $c;
}

# $c->chat($peer, $jid, $body[, $timeout]): sends a chat message with
# that body from $c to $jid and returns what $peer (the session of $jid)
# read up to the body, '' if it did not come within $timeout (20 s).
sub chat {
    my ($self, $peer, $jid, $body, $timeout) = @_;
    $self->send("<message to='$jid' type='chat' id='c" . ++$self->{chats}
        . "'><body>$body</body></message>");
    return $peer->read_until(qr{<body>\Q$body\E</body>}, $timeout // 20)
        // '';
}

sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    $self->close;
}

1;
