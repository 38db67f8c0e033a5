package ChatTest::WebSocket;

=head1 NAME

ChatTest::WebSocket - blocking WebSocket test client for t/*.t suites

=head1 SYNOPSIS

Stand-alone, in any Test::More script:

    use ChatTest::WebSocket;

    my $alice = ChatTest::WebSocket->connect(
        port    => $port,
        path    => '/api/chat/ws/42?token=alice-token',
        headers => { Origin => 'http://localhost' },
        timeout => 2,
    );
    is($alice->status, 101, 'upgraded');
    my $bob = ws_connect(port => $port, path => '/api/chat/ws/42?token=bob');

    $alice->send_text('{"text":"hi"}');
    $bob->expect(qr/"text":"hi"/, timeout => 1);        # one check
    $alice->expect_nothing(timeout => 0.3);              # one check
    $alice->close(code => 1000);
    is(scalar $alice->recv_close(timeout => 1), 1000, 'close echoed');

    my $refused = ws_connect(port => $port, path => '/api/chat/ws/42');
    is($refused->status, 401, 'no token, no upgrade');
    ok(!$refused->is_open, 'not a WebSocket');

Inside a Test::Nginx::Socket .t file, through public API only, so that
the same file runs under the bundled harness (t/harness) and under the
real Test::Nginx: a custom C<--- ws_script> section holds Perl code that
is run by an C<add_response_body_check> hook, once per repeat, after the
block's first request.  The code sees C<$block>, C<$port> (the nginx
port), C<$body> (the first response body) and C<$repeat>; its checks are
ordinary Test::More checks (each expect/expect_nothing is one), so count
them in numeric plans like any other section.

    use FindBin;
    use lib "$FindBin::Bin/lib";           # t/lib
    use Test::Nginx::Socket 'no_plan';
    use ChatTest::WebSocket;

    ChatTest::WebSocket::install_ws_script_hook();
    run_tests();

    __DATA__

    === TEST 1: alice talks, bob listens
    --- config
        location = /t { return 200 "ok"; }
        location /api/chat/ws/ { chat_ws; }
    --- request
    GET /t
    --- ws_script
    my $alice = ws_connect(port => $port, path => '/api/chat/ws/1?token=a');
    my $bob   = ws_connect(port => $port, path => '/api/chat/ws/1?token=b');
    $alice->send_text('hello');
    $bob->expect(qr/hello/);
    --- ws_checks: 1

C<--- ws_checks: N> is only needed when the harness runs in a "dry run"
(nginx could not start): the hook then skips N checks so the plan holds.

=head1 METHODS

connect(port, path, host, headers => {..} or [..], timeout) - the
handshake is always completed; check C<status>/C<is_open>.  A header
given as undef is removed from the handshake (to provoke a 400).
status, header($name), headers, body, error, is_open, eof.
send_text, send_binary, ping, pong, send_frame($raw_bytes),
frame(%args) (class method: raw frame bytes, e.g. masked => 0).
recv(timeout) - next frame, control frames included, as
{ opcode, type, payload, fin, masked, code, reason }; undef on timeout or
end of stream.  Fragmented messages come back reassembled.
recv_message(timeout) - next text/binary/close frame; answers pings.
expect($string|qr//|sub, timeout, name, skip_others) - one check.
expect_nothing(timeout, name) - one check.
close(code, reason), recv_close(timeout) -> (code, reason),
wait_for_eof(timeout), disconnect.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Digest::SHA qw(sha1_base64);
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Exporter 'import';
use IO::Select ();
use IO::Socket::INET ();
use Protocol::WebSocket::Frame ();
use Protocol::WebSocket::Handshake::Client ();
use Scalar::Util qw(refaddr);
use Test::More ();
use Time::HiRes qw(time);

our @EXPORT    = qw(ws_connect);
our @EXPORT_OK = qw(install_ws_script_hook);

my $ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
my %TYPE_OF = (0 => 'continuation', 1 => 'text', 2 => 'binary',
               8 => 'close', 9 => 'ping', 10 => 'pong');

# ---------------------------------------------------------------------------
# Connecting
# ---------------------------------------------------------------------------

sub ws_connect { __PACKAGE__->connect(@_) }

sub connect {
    my ($class, %args) = @_;
    my $host    = $args{host} // '127.0.0.1';
    my $port    = $args{port} // default_port();
    my $path    = $args{path} // '/';
    my $timeout = $args{timeout} // 2;

    my $sock = IO::Socket::INET->new(
        PeerAddr => $host,
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => $timeout,
    ) or croak "WebSocket connect to $host:$port failed: $!";
    binmode $sock;
    $sock->blocking(0);

    my $self = bless {
        sock    => $sock,
        timeout => $timeout,
        name    => $args{name} // "ws $path",
        # no size limit: tests may want to see what the server sends
        parser  => Protocol::WebSocket::Frame->new(max_payload_size => 0),
        rbuf    => '',
    }, $class;
    $self->handshake("$host:$port", $path, $args{headers});
    return $self;
}

# The nginx port under test, from whichever harness is loaded.
sub default_port {
    for my $class (qw(Test::Nginx::Util Test::Nginx::Socket)) {
        my $getter = $class->can('server_port_for_client') or next;
        my $port = $getter->();
        return $port if $port;
    }
    return $ENV{TEST_NGINX_CLIENT_PORT} || $ENV{TEST_NGINX_SERVER_PORT}
        || $ENV{TEST_NGINX_PORT} || 1984;
}

# { Name => value } or [ Name => value, ... ] -> ([name, value], ...)
sub header_pairs {
    my $headers = shift // [];
    return map { [ $_, $headers->{$_} ] } sort keys %$headers
        if ref $headers eq 'HASH';
    my @flat = @$headers;
    my @pairs;
    push @pairs, [ splice @flat, 0, 2 ] while @flat;
    return @pairs;
}

sub handshake {
    my ($self, $hostport, $path, $headers) = @_;
    my $hs = Protocol::WebSocket::Handshake::Client->new(
        url => "ws://$hostport$path");
    my $request = $hs->to_string;

    # Extra headers replace same-named ones; undef removes a header.
    for my $pair (header_pairs($headers)) {
        my ($name, $value) = @$pair;
        $request =~ s/^\Q$name\E:[^\r\n]*\r\n//mig;
        $request =~ s/\r\n\r\n\z/\r\n$name: $value\r\n\r\n/ if defined $value;
    }
    ($self->{key}) = $request =~ /^Sec-WebSocket-Key: *(\S+)\r$/mi;
    $self->write_bytes($request);

    my $head = $self->read_until_head;
    if (!defined $head) {
        $self->{error} = 'no handshake response (timeout or connection closed)';
        return;
    }
    $self->parse_handshake_response($head);
}

sub read_until_head {
    my $self = shift;
    my $deadline = time + $self->{timeout};
    while ($self->{rbuf} !~ /\r\n\r\n/) {
        my $n = $self->read_more($deadline - time);
        return undef unless $n;
    }
    $self->{rbuf} =~ s/\A(.*?\r\n)\r\n//s;
    return $1;
}

sub parse_handshake_response {
    my ($self, $head) = @_;
    my ($status_line, @lines) = split /\r\n/, $head;
    ($self->{status}) = $status_line =~ m{^HTTP/\d\.\d (\d{3})};
    $self->{raw_head} = "$head\r\n";
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+?)\s*:\s*(.*?)\s*$/ or next;
        push @{ $self->{headers}{lc $name} }, $value;
    }

    if (($self->{status} // 0) != 101) {
        $self->{error} = "handshake refused: $status_line";
        $self->read_refusal_body;
        return;
    }
    if (!defined $self->{key}) {
        $self->{error} = 'upgraded although no Sec-WebSocket-Key was sent';
        return;
    }
    my $want = sha1_base64($self->{key} . $ACCEPT_GUID) . '=';
    my $got  = $self->header('Sec-WebSocket-Accept') // '';
    if ($got ne $want) {
        $self->{error} = "bad Sec-WebSocket-Accept '$got' (expected '$want')";
        return;
    }
    $self->{open} = 1;
    # Frames the server sent right behind its 101 are already buffered.
    $self->{parser}->append(delete $self->{rbuf});
    $self->{rbuf} = '';
}

# Keeps the body of a non-101 answer (up to Content-Length or EOF).
sub read_refusal_body {
    my $self = shift;
    my $length = $self->header('Content-Length');
    my $deadline = time + $self->{timeout};
    while (!$self->{eof}) {
        last if defined $length && length $self->{rbuf} >= $length;
        last unless $self->read_more($deadline - time);
    }
    $self->{body} = $self->{rbuf};
    $self->{rbuf} = '';
}

# ---------------------------------------------------------------------------
# Accessors
# ---------------------------------------------------------------------------

sub status  { $_[0]{status} }
sub body    { $_[0]{body} }
sub error   { $_[0]{error} }
sub is_open { $_[0]{open} && !$_[0]{eof} ? 1 : 0 }
sub eof     { $_[0]{eof} ? 1 : 0 }
sub raw_response_head { $_[0]{raw_head} }

sub header {
    my ($self, $name) = @_;
    my $values = $self->{headers}{lc $name} or return undef;
    return join ', ', @$values;
}

sub headers {
    my $self = shift;
    return { map { $_ => $self->header($_) } keys %{ $self->{headers} || {} } };
}

# ---------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------

# Raw frame bytes; masked by default like every client frame must be.
sub frame {
    my ($class, %args) = @_;
    my $frame = Protocol::WebSocket::Frame->new(
        buffer => $args{payload} // '',
        (defined $args{opcode} ? (opcode => $args{opcode})
                               : (type => $args{type} // 'text')),
        masked => $args{masked} // 1,
        fin    => $args{fin} // 1,
        max_payload_size => 0,
    );
    return $frame->to_bytes;
}

sub send_message {
    my ($self, $type, $payload) = @_;
    croak "$self->{name}: not an open WebSocket ("
        . ($self->{error} // 'closed') . ")" unless $self->{open};
    $self->write_bytes(__PACKAGE__->frame(type => $type, payload => $payload));
    return $self;
}

sub send_text   { $_[0]->send_message(text   => $_[1]) }
sub send_binary { $_[0]->send_message(binary => $_[1]) }
sub ping        { $_[0]->send_message(ping   => $_[1] // '') }
sub pong        { $_[0]->send_message(pong   => $_[1] // '') }

# Deliberately malformed input (unmasked, bad opcode, ...) goes out as is.
sub send_frame {
    my ($self, $bytes) = @_;
    $self->write_bytes($bytes);
    return $self;
}

sub close {
    my ($self, %args) = @_;
    my $payload = defined $args{code}
        ? pack('n', $args{code}) . ($args{reason} // '') : '';
    $self->send_message(close => $payload) unless $self->{close_sent}++;
    return $self;
}

sub disconnect {
    my $self = shift;
    CORE::close($self->{sock}) if $self->{sock};
    $self->{open} = 0;
    $self->{eof}  = 1;
}

sub DESTROY { $_[0]->disconnect }

sub write_bytes {
    my ($self, $data) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $sel = IO::Select->new($self->{sock});
    while (length $data) {
        croak "$self->{name}: write timed out"
            unless $sel->can_write($self->{timeout});
        my $n = syswrite $self->{sock}, $data;
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            croak "$self->{name}: write failed: $!";
        }
        substr $data, 0, $n, '';
    }
}

# ---------------------------------------------------------------------------
# Receiving
# ---------------------------------------------------------------------------

# Reads what is available within $wait seconds into rbuf (before the
# handshake) or the frame parser.  Returns the byte count, 0 at EOF or
# undef on timeout.
sub read_more {
    my ($self, $wait) = @_;
    return 0 if $self->{eof};
    $wait = 0 if $wait < 0;
    my $sel = IO::Select->new($self->{sock});
    while (1) {
        return undef unless $sel->can_read($wait);
        my $chunk = '';
        my $n = sysread $self->{sock}, $chunk, 65536;
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            $n = 0;    # connection reset: the end as well
        }
        if ($n == 0) {
            $self->{eof} = 1;
            return 0;
        }
        if ($self->{open}) { $self->{parser}->append($chunk) }
        else               { $self->{rbuf} .= $chunk }
        return $n;
    }
}

sub next_buffered_frame {
    my $self = shift;
    my $parser = $self->{parser};
    my $payload = eval { $parser->next_bytes };
    if ($@) {
        $self->{error} = "bad frame from server: $@";
        return undef;
    }
    return undef unless defined $payload;
    my $frame = {
        opcode  => $parser->opcode,
        type    => $TYPE_OF{$parser->opcode} // 'unknown',
        payload => $payload,
        fin     => $parser->fin ? 1 : 0,
        masked  => $parser->masked ? 1 : 0,
    };
    if ($frame->{opcode} == 8) {
        @$frame{qw(code reason)} = length $payload >= 2
            ? (unpack('n', $payload), substr($payload, 2)) : (undef, '');
        $self->{close_received} = 1;
        # Answer the server's close as the protocol asks.
        if (!$self->{close_sent}++ && !$self->{eof}) {
            eval { $self->write_bytes(__PACKAGE__->frame(
                type => 'close', payload => substr($payload, 0, 2))) };
        }
    }
    return $frame;
}

sub recv {
    my ($self, %args) = @_;
    my $deadline = time + ($args{timeout} // $self->{timeout});
    while (1) {
        my $frame = $self->next_buffered_frame;
        return $frame if $frame;
        return undef if $self->{error} && $self->{error} =~ /^bad frame/;
        return undef unless $self->read_more($deadline - time);
    }
}

sub recv_message {
    my ($self, %args) = @_;
    my $deadline = time + ($args{timeout} // $self->{timeout});
    while (my $frame = $self->recv(timeout => $deadline - time)) {
        if ($frame->{type} eq 'ping') {
            eval { $self->pong($frame->{payload}) } if $self->{open};
            next;
        }
        next if $frame->{type} eq 'pong';
        return $frame;
    }
    return undef;
}

sub matches {
    my ($payload, $matcher) = @_;
    return ref $matcher eq 'Regexp' ? $payload =~ $matcher
         : ref $matcher eq 'CODE'   ? $matcher->($payload)
         :                            $payload eq $matcher;
}

sub describe_frame {
    my $frame = shift;
    return 'nothing (timeout or connection closed)' unless $frame;
    my $text = "$frame->{type} frame: '$frame->{payload}'";
    $text .= " (close code $frame->{code})" if defined $frame->{code};
    return $text;
}

# One check: the next text/binary message matches (with skip_others, the
# first matching one before the timeout).  Returns the payload.
sub expect {
    my ($self, $matcher, %args) = @_;
    my $name = $args{name} // "$self->{name}: got a message matching $matcher";
    my $deadline = time + ($args{timeout} // 1);
    my ($frame, $ok, @seen);
    while (1) {
        $frame = $self->recv_message(timeout => $deadline - time);
        $ok = $frame && $frame->{type} ne 'close'
            && matches($frame->{payload}, $matcher);
        last if $ok || !$frame || !$args{skip_others};
        push @seen, $frame;
    }
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::ok($ok, $name)
        or Test::More::diag(join "\n", map({ 'skipped ' . describe_frame($_) } @seen),
                            'got ' . describe_frame($frame));
    return $ok ? $frame->{payload} : undef;
}

# One check: no text/binary/close message within the timeout.
sub expect_nothing {
    my ($self, %args) = @_;
    my $name = $args{name} // "$self->{name}: no message";
    my $frame = $self->recv_message(timeout => $args{timeout} // 0.3);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::ok(!$frame, $name)
        or Test::More::diag('got ' . describe_frame($frame));
    return !$frame;
}

# Waits for the server's close frame, ignoring other frames.
# Returns (code, reason) - the code alone in scalar context - or () if
# none came in time.
sub recv_close {
    my ($self, %args) = @_;
    my $deadline = time + ($args{timeout} // $self->{timeout});
    while (my $frame = $self->recv_message(timeout => $deadline - time)) {
        next unless $frame->{type} eq 'close';
        return wantarray ? ($frame->{code}, $frame->{reason}) : $frame->{code};
    }
    return;
}

# True once the server has closed the TCP connection (data is discarded).
sub wait_for_eof {
    my ($self, %args) = @_;
    my $deadline = time + ($args{timeout} // $self->{timeout});
    while (!$self->{eof}) {
        last unless defined $self->read_more($deadline - time);
    }
    return $self->{eof};
}

# ---------------------------------------------------------------------------
# "--- ws_script" sections (see SYNOPSIS)
# ---------------------------------------------------------------------------

sub install_ws_script_hook {
    my $add = main->can('add_response_body_check')
        || Test::Nginx::Socket->can('add_response_body_check')
        or croak 'load Test::Nginx::Socket before install_ws_script_hook()';
    $add->(\&run_ws_script);
}

my %CompiledScripts;

sub run_ws_script {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    my $code = $block->ws_script;
    return unless defined $code && $req_idx == 0;
    my $name = $block->name;

    if ($dry_run) {
        my $count = $block->ws_checks // 1;
        $count =~ s/\D//g;
        SKIP: { Test::More::skip("$name - ws_script: $dry_run", $count || 1) }
        return;
    }

    my $script = $CompiledScripts{ refaddr $block } //= compile_ws_script($block);
    my $ok = eval { $script->($block, default_port(), $body, $repeated_req_idx); 1 };
    Test::More::fail("$name - ws_script died: $@") unless $ok;
}

sub compile_ws_script {
    my $block = shift;
    (my $label = $block->name) =~ s/["\n]//g;
    my $source = "package main;\n"
        . "sub {\n my (\$block, \$port, \$body, \$repeat) = \@_;\n"
        . "#line 1 \"ws_script of $label\"\n"
        . $block->ws_script . "\n;}\n";
    my $sub = eval $source;
    return $sub if $sub;
    my $error = $@;
    return sub { die "does not compile: $error" };
}

1;
