package EchoServer;

# A tiny single-process WebSocket server for the ChatTest::WebSocket
# self-tests, forked by the test (Protocol::WebSocket on the server side).
# It echoes text/binary messages, answers pings, echoes close frames, and
# understands a few commands sent as text:
#   all:<text>      sent to every *other* open connection
#   ping-me         the server sends a ping "server-ping"
#   close-me        the server closes with 4000 "bye"
#   fragmented      the reply "fragmented" comes in two fragments
#   header:<name>   replies with that handshake request header
# Paths containing "deny" are refused with 401; unmasked client frames
# get a 1002 close and the connection dropped.

use strict;
use warnings;

use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Protocol::WebSocket::Frame ();
use Protocol::WebSocket::Handshake::Server ();

sub start {
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
        ReuseAddr => 1, Proto => 'tcp',
    ) or die "echo server: listen: $!";
    my $port = $listen->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        eval { serve($listen) };
        POSIX::_exit(0);    # never run the parent's END blocks
    }
    close $listen;
    return bless { pid => $pid, port => $port }, shift;
}

sub port { $_[0]{port} }

sub stop {
    my $self = shift;
    return unless $self->{pid};
    local $?;    # may run in an END block: keep the test's exit status
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $self->{pid};
}

sub DESTROY { $_[0]->stop }

sub frame_bytes {
    my (%args) = @_;
    return Protocol::WebSocket::Frame->new(
        buffer => $args{payload} // '', masked => 0,
        (defined $args{opcode} ? (opcode => $args{opcode}) : (type => $args{type})),
        fin => $args{fin} // 1, max_payload_size => 0,
    )->to_bytes;
}

sub serve {
    my $listen = shift;
    my $sel = IO::Select->new($listen);
    my %conns;
    while (1) {
        for my $fh ($sel->can_read) {
            if ($fh == $listen) {
                my $c = $listen->accept or next;
                $sel->add($c);
                $conns{fileno $c} = {
                    sock => $c, hs => Protocol::WebSocket::Handshake::Server->new,
                    frame => Protocol::WebSocket::Frame->new(max_payload_size => 0),
                };
                next;
            }
            my $conn = $conns{fileno $fh};
            my $data = '';
            if (!sysread($fh, $data, 65536)) {
                drop($sel, \%conns, $conn);
                next;
            }
            handle_input($sel, \%conns, $conn, $data);
        }
    }
}

sub drop {
    my ($sel, $conns, $conn) = @_;
    $sel->remove($conn->{sock});
    delete $conns->{ fileno $conn->{sock} };
    close $conn->{sock};
}

sub handle_input {
    my ($sel, $conns, $conn, $data) = @_;
    my $sock = $conn->{sock};
    if (!$conn->{open}) {
        my $hs = $conn->{hs};
        if (!$hs->parse($data)) {
            print $sock "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            return drop($sel, $conns, $conn);
        }
        return unless $hs->is_done;
        if ($hs->req->version ne 'draft-ietf-hybi-17') {   # RFC 6455 only
            print $sock "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            return drop($sel, $conns, $conn);
        }
        if ($hs->req->resource_name =~ /deny/) {
            print $sock "HTTP/1.1 401 Unauthorized\r\nX-Reason: denied\r\n"
                . "Content-Length: 6\r\n\r\ndenied";
            return drop($sel, $conns, $conn);
        }
        print $sock $hs->to_string;
        $conn->{open} = 1;
    }
    my $frame = $conn->{frame};
    $frame->append($data);
    while (defined(my $payload = $frame->next_bytes)) {
        if (!$frame->masked) {
            print $sock frame_bytes(type => 'close',
                                    payload => pack('n', 1002) . 'unmasked frame');
            return drop($sel, $conns, $conn);
        }
        my $op = $frame->opcode;
        if ($op == 9) { print $sock frame_bytes(type => 'pong', payload => $payload); next }
        next if $op == 10;
        if ($op == 8) {
            print $sock frame_bytes(type => 'close', payload => $payload);
            return drop($sel, $conns, $conn);
        }
        if ($op == 1 && $payload =~ /^all:(.*)/s) {
            for my $other (values %$conns) {
                next if $other == $conn || !$other->{open};
                print { $other->{sock} } frame_bytes(type => 'text', payload => $1);
            }
        } elsif ($op == 1 && $payload eq 'ping-me') {
            print $sock frame_bytes(type => 'ping', payload => 'server-ping');
        } elsif ($op == 1 && $payload eq 'close-me') {
            print $sock frame_bytes(type => 'close', payload => pack('n', 4000) . 'bye');
        } elsif ($op == 1 && $payload eq 'fragmented') {
            print $sock frame_bytes(type => 'text', payload => 'frag', fin => 0)
                      . frame_bytes(opcode => 0, payload => 'mented');
        } elsif ($op == 1 && $payload =~ /^header:(.+)/) {
            print $sock frame_bytes(type => 'text',
                                    payload => $conn->{hs}->req->field($1) // '(none)');
        } else {
            print $sock frame_bytes(type => $op == 2 ? 'binary' : 'text', payload => $payload);
        }
    }
}

1;
