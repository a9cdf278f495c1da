package DJabberd::Authen::XTPasswords;

# A DJabberd authentication plugin of the test harness (XT::DJabberd):
# per-user passwords from a file of "user password" lines, so that a
# wrong password is refused and every user has their own.  DJabberd's own
# plugins have one password for everybody (StaticPassword) or accounts
# made at run time (InMemoryOnly).
#
#   <Plugin DJabberd::Authen::XTPasswords>
#       PasswordFile /path/to/passwords
#   </Plugin>

use strict;
use warnings;
use base 'DJabberd::Authen';

sub set_config_passwordfile {
    my ($self, $file) = @_;
    $self->{file} = $file;
}

sub finalize {
    my ($self) = @_;
    open(my $fh, '<', $self->{file})
        or die "DJabberd::Authen::XTPasswords: $self->{file}: $!\n";
    while (my $l = <$fh>) {
        chomp $l;
        next unless $l =~ /^(\S+) (.*)$/;
        $self->{users}{$1} = $2;
    }
    close $fh;
}

sub can_retrieve_cleartext { 1 }

sub get_password {
    my ($self, $cb, %args) = @_;
    my $pass = $self->{users}{ $args{username} // '' };
    return $cb->set($pass) if defined $pass;
    $cb->decline;
}

sub check_cleartext {
    my ($self, $cb, %args) = @_;
    my $pass = $self->{users}{ $args{username} // '' };
    return $cb->accept if defined $pass && defined $args{password}
        && $pass eq $args{password};
    $cb->reject;
}

1;
