package ChatTest::Peer;

# A WebSocket subscriber in a test: its connection (ChatTest::WebSocket),
# its user, the worker pid that holds it, and every event it got, decoded.
#
#   my $p = ChatTest::Peer->new(ws => $ws, user => 'bob', pid => $pid);
#   $p->send_message('hi');  $p->acked('hi');  $p->heard('hi', 5);
#   my @texts = $p->contents(qr/^m/);

use strict;
use warnings;

use JSON::PP ();
use Time::HiRes ();

my $JSON = JSON::PP->new->utf8->canonical;

sub new { my ($class, %a) = @_; bless { %a, events => [] }, $class }
sub ws   { $_[0]{ws} }
sub user { $_[0]{user} }
sub pid  { $_[0]{pid} }

# reads one event (pings are answered); undef on timeout
sub pump {
    my ($self, $timeout) = @_;
    my $f = $self->{ws}->recv_message(timeout => $timeout // 5)
        or return undef;
    my $e = $f->{type} eq 'text'
        ? (eval { $JSON->decode($f->{payload}) }
           // { type => '<not JSON>', payload => $f->{payload} })
        : { type => "<$f->{type}>", code => $f->{code} };
    push @{ $self->{events} }, $e;
    return $e;
}

# reads what has arrived, without waiting
sub drain { my $self = shift; 1 while $self->pump(0) }

# the first event so far, or to come within $timeout, for which $pred is
# true
sub wait_for {
    my ($self, $pred, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 5);
    for my $e (@{ $self->{events} }) { return $e if $pred->($e) }
    while ((my $left = $deadline - Time::HiRes::time()) > 0) {
        my $e = $self->pump($left) or return undef;
        return $e if $pred->($e);
    }
    return undef;
}

sub send_message {
    my ($self, $content) = @_;
    $self->{ws}->send_text($JSON->encode({ type => 'message',
                                           content => $content }));
}

sub acked {
    my ($self, $content, $timeout) = @_;
    return $self->wait_for(sub {
        $_[0]{type} eq 'ack' && $_[0]{message}{content} eq $content
            || $_[0]{type} eq 'error' }, $timeout);
}

sub heard {
    my ($self, $content, $timeout) = @_;
    return $self->wait_for(sub {
        $_[0]{type} eq 'message' && $_[0]{message}{content} eq $content },
        $timeout);
}

# contents of the message events, a bus_ready() "sync ..." left out
sub contents {
    my ($self, $re) = @_;
    return grep { !/^sync / && (!$re || $_ =~ $re) }
           map { $_->{message}{content} }
           grep { $_->{type} eq 'message' } @{ $self->{events} };
}

sub forget { $_[0]{events} = [] }

1;
