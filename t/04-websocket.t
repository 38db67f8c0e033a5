# WebSockets at /api/chat/ws/{group_id}, in one nginx process: the opening
# handshake (good and each bad case), RFC 6455 frames (each protocol error
# with its close code), ping/pong, fragmentation, size limits, keepalive
# and close timeouts, and the chat events over a WebSocket (stored exactly
# like a POST, acked, broadcast; HTTP posts and deletes reach subscribers).
# Fan-out across workers and slow consumers: t/05-websocket-fanout.t.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::WebSocket;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes ();

ChatTest::WebSocket::install_ws_script_hook();

no_shuffle();
log_level('info');
worker_connections(1024);     # TEST 31's 300 subscribers
no_root_location();

chat_blocks(db_timeout => '3s', request => "GET /t\n");

our $JSON = JSON::PP->new->utf8->canonical;
our $nogroup = '5f0000000000000000000000';

# An existing group, created over HTTP.
sub new_group {
    my ($port, $name) = @_;
    my $r = ChatTest::Client->new(port => $port, user => 'owner')
        ->post('/api/chat/groups', { name => $name // 'ws' });
    die "cannot create a group: $r->{status} $r->{body}\n"
        unless $r->{status} == 201;
    return $r->{json}{id};
}

sub ws_path {
    my ($group, $user) = @_;
    return "/api/chat/ws/$group"
        . (defined $user ? '?token=' . ChatTest::JWT::token($user) : '');
}

# An open WebSocket of $user in $group (token in the query string).
sub join_group {
    my ($port, $user, $group, %opt) = @_;
    my $ws = ws_connect(port => $port, name => $user, timeout => 5,
                        path => ws_path($group, $user), %opt);
    die "$user could not join: " . ($ws->error // '?') . "\n"
        unless $ws->is_open;
    return $ws;
}

# The next text message, decoded; pings are answered on the way.
sub next_event {
    my ($ws, $timeout) = @_;
    my $f = $ws->recv_message(timeout => $timeout // 5)
        or return { type => '<nothing>' };
    return { type => "<$f->{type} frame>", code => $f->{code} }
        if $f->{type} ne 'text';
    return eval { $JSON->decode($f->{payload}) }
        // { type => '<not JSON>', payload => $f->{payload} };
}

sub json_text { $JSON->encode($_[0]) }

# Raw frame bytes from the test client (masked unless masked => 0).
sub frame { ChatTest::WebSocket->frame(@_) }

# Raw frame bytes built by hand, for what no client library writes:
# first byte as given (FIN, RSV, opcode), a length field of the given
# form (7, 16 or 64 bits, minimal by default) or a declared length that
# differs from the payload, masked with a zero-free key.
sub raw_frame {
    my (%a) = @_;
    my $payload = $a{payload} // '';
    my $len = $a{declared} // length $payload;
    my $form = $a{form} // ($len < 126 ? 7 : $len < 65536 ? 16 : 64);
    my $mask_bit = ($a{masked} // 1) ? 0x80 : 0;
    my $s = pack 'C', $a{byte0};
    $s .= $form == 7  ? pack('C', $mask_bit | $len)
        : $form == 16 ? pack('Cn', $mask_bit | 126, $len)
        :               pack('CNN', $mask_bit | 127, int($len / 2**32),
                             $len % 2**32);
    return $s . $payload unless $mask_bit;
    my $key = "\x11\x22\x33\x44";
    return $s . $key . ($payload ^ substr($key x (length($payload) / 4 + 1),
                                          0, length $payload));
}

# One check each: the server answers $bytes with a close frame of $code,
# and drops the connection once we answer it.
sub protocol_error {
    my ($port, $group, $bytes, $code, $name) = @_;
    my $ws = join_group($port, 'mallory', $group);
    $ws->send_frame($bytes);
    my ($got) = $ws->recv_close(timeout => 5);
    is $got, $code, "$name: closed with $code";
    ok $ws->wait_for_eof(timeout => 5), "$name: then the TCP connection";
}

# A plain HTTP exchange on a socket of our own (for what the WebSocket
# client cannot send): status, head, body and the socket.  The body is
# read up to its Content-Length, the end of the stream, or (after a 101)
# until it matches $opt{until} (nothing is waited for without it).
sub raw_http {
    my ($port, $request, %opt) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!\n";
    $s->syswrite($request);
    my ($buf, $sel) = ('', IO::Select->new($s));
    my $deadline = Time::HiRes::time + ($opt{timeout} // 5);
    while ((my $left = $deadline - Time::HiRes::time) > 0) {
        if ($buf =~ /\r\n\r\n/) {
            my ($head, $body) = split /\r\n\r\n/, $buf, 2;
            if ($head =~ m{^HTTP/1\.1 101 }) {
                last if !$opt{until} || $body =~ $opt{until};
            } else {
                my ($cl) = $head =~ /^Content-Length:\s*(\d+)/mi;
                last if defined $cl && length $body >= $cl;
            }
        }
        last unless $sel->can_read($left);
        my $n = $s->sysread($buf, 65536, length $buf);
        last unless $n;
    }
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d{3})};
    return { status => $status // 0, head => $head // '', body => $body,
             sock => $s };
}

# Waits until the error log has a line matching $re; returns it.
sub wait_log {
    my ($re, $timeout) = @_;
    my $deadline = Time::HiRes::time + ($timeout // 5);
    my $log = server_root() . '/logs/error.log';
    while (1) {
        if (open my $fh, '<', $log) {
            while (my $line = <$fh>) { return $line if $line =~ $re }
        }
        return undef if Time::HiRes::time > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

run_tests();

__DATA__

=== TEST 1: handshake: 101 with Upgrade, Connection, the accept key and a correlation ID
--- ws_script
my $g = new_group($port);
my $ws = ws_connect(port => $port, path => ws_path($g, 'alice'),
                    headers => { 'X-Correlation-ID' => 'hs-good-1' });
is $ws->status, 101, '101 Switching Protocols';
ok $ws->is_open, 'upgraded, Sec-WebSocket-Accept matching the key';
like $ws->header('Upgrade'), qr/^websocket$/i, 'Upgrade: websocket';
like $ws->header('Connection'), qr/^upgrade$/i, 'Connection: Upgrade';
is $ws->header('X-Correlation-ID'), 'hs-good-1', 'correlation ID echoed';

# RFC 6455, 1.3: the sample nonce and its accept value
my $rfc = ws_connect(port => $port, path => ws_path($g, 'alice'),
    headers => { 'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==' });
is $rfc->header('Sec-WebSocket-Accept'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
   'the RFC sample key gives the RFC sample accept value';
--- error_log
chat ws: "alice" joined group
correlation_id=hs-good-1



=== TEST 2: handshake: the token in the Authorization header; header names and tokens are case-insensitive; Connection may list other tokens
--- ws_script
my $g = new_group($port);
my $ws = ws_connect(port => $port, path => "/api/chat/ws/$g",
    headers => [ Authorization => 'Bearer ' . ChatTest::JWT::token('bob'),
                 Upgrade => 'WebSocket',
                 Connection => 'keep-alive, Upgrade' ]);
is $ws->status, 101, 'Authorization: Bearer, Upgrade: WebSocket, Connection: keep-alive, Upgrade';
ok $ws->is_open, 'upgraded';

$ws = ws_connect(port => $port, path => ws_path(uc $g, 'carol'),
    headers => [ Connection => 'UPGRADE', Upgrade => 'WEBSOCKET' ]);
is $ws->status, 101, 'upper-case group id and header values';
--- error_log
chat ws: "bob" joined group
chat ws: "carol" joined group



=== TEST 3: handshake: each missing or wrong piece is a 400 with a JSON detail, and no upgrade
--- ws_script
my $path = ws_path($::nogroup, 'alice');
my @cases = (
    [ 'no Upgrade',            { Upgrade => undef },
      qr/expected \\"Upgrade: websocket\\"/ ],
    [ 'Upgrade: h2c',          { Upgrade => 'h2c' },
      qr/expected \\"Upgrade: websocket\\"/ ],
    [ 'Upgrade: websocket2',   { Upgrade => 'websocket2' },
      qr/expected \\"Upgrade: websocket\\"/ ],
    [ 'no Connection',         { Connection => undef },
      qr/expected \\"Connection: Upgrade\\"/ ],
    [ 'Connection: keep-alive', { Connection => 'keep-alive' },
      qr/expected \\"Connection: Upgrade\\"/ ],
    [ 'Connection: upgraded',  { Connection => 'upgraded' },
      qr/expected \\"Connection: Upgrade\\"/ ],
    [ 'no Sec-WebSocket-Key',  { 'Sec-WebSocket-Key' => undef },
      qr/Sec-WebSocket-Key must be 16 bytes in base64/ ],
    [ 'a short key',           { 'Sec-WebSocket-Key' => 'AAAAAAAAAAAAAAAA' },
      qr/Sec-WebSocket-Key must be 16 bytes/ ],
    [ 'a key of 18 bytes',     { 'Sec-WebSocket-Key' => 'A' x 24 },
      qr/Sec-WebSocket-Key must be 16 bytes/ ],
    [ 'a key not in base64',   { 'Sec-WebSocket-Key' => ('!' x 22) . '==' },
      qr/Sec-WebSocket-Key must be 16 bytes/ ],
);
for my $c (@cases) {
    my ($name, $headers, $detail) = @$c;
    my $ws = ws_connect(port => $port, path => $path, headers => $headers);
    is $ws->status, 400, "$name: 400";
    ok !$ws->is_open, "$name: not upgraded";
    like $ws->body, $detail, "$name: says why";
}

# the HTTP version is not something the client library lets us change
my $key = 'dGhlIHNhbXBsZSBub25jZQ==';
my $r = raw_http($port, "GET $path HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\n"
    . "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\n"
    . "Sec-WebSocket-Version: 13\r\n\r\n");
is $r->{status}, 400, 'HTTP/1.0: 400';
like $r->{body}, qr/needs HTTP\/1\.1/, 'HTTP/1.0: says why';
--- no_error_log
joined group



=== TEST 4: handshake: only GET upgrades (405 with Allow: GET)
--- ws_script
my $key = 'dGhlIHNhbXBsZSBub25jZQ==';
for my $method (qw(POST PUT DELETE)) {
    my $r = raw_http($port, "$method " . ws_path($::nogroup, 'alice')
        . " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n"
        . "Content-Length: 0\r\n\r\n");
    is $r->{status}, 405, "$method: 405";
    like $r->{head}, qr/^Allow: GET\r?$/mi, "$method: Allow: GET";
    unlike $r->{head}, qr/^HTTP\/1\.1 101/, "$method: no upgrade";
}
--- no_error_log
joined group



=== TEST 5: handshake: a version other than 13 is a 426 that names version 13
--- ws_script
my $path = ws_path($::nogroup, 'alice');
for my $v ('8', '12', '14', '13, 8', '') {
    my $ws = ws_connect(port => $port, path => $path,
                        headers => { 'Sec-WebSocket-Version' => $v });
    is $ws->status, 426, "version '$v': 426";
    is $ws->header('Sec-WebSocket-Version'), '13', "version '$v': Sec-WebSocket-Version: 13";
    ok !$ws->is_open, "version '$v': not upgraded";
}
my $ws = ws_connect(port => $port, path => $path,
                    headers => { 'Sec-WebSocket-Version' => undef });
is $ws->status, 426, 'no version at all: 426 too';
is $ws->header('Sec-WebSocket-Version'), '13', 'no version: told which one';
like $ws->raw_response_head, qr/^HTTP\/1\.1 426 Upgrade Required\r\n/, 'status line';
--- no_error_log
joined group



=== TEST 6: handshake: a bad or missing JWT is a 401 before any upgrade, even for an unknown group
--- ws_script
my $g = new_group($port);
my @cases = (
    [ 'no token',        "/api/chat/ws/$g", {}, qr/missing bearer token/ ],
    [ 'empty token',     "/api/chat/ws/$g?token=", {}, qr/missing bearer token/ ],
    [ 'wrong secret',    "/api/chat/ws/$g?token="
        . ChatTest::JWT::token('alice', secret => 'another-secret-another-secret-xx'),
      {}, qr/token signature is invalid/ ],
    [ 'expired',         "/api/chat/ws/$g?token="
        . ChatTest::JWT::token('alice', exp => time - 3600),
      {}, qr/token has expired/ ],
    [ 'alg none',        "/api/chat/ws/$g?token="
        . ChatTest::JWT::token('alice', alg => 'none', sign => 0),
      {}, qr/token algorithm is not HS256/ ],
    [ 'garbage',         "/api/chat/ws/$g?token=abc.def", {},
      qr/token is not a three-part JWS/ ],
    [ 'Basic auth',      "/api/chat/ws/$g",
      { Authorization => 'Basic YWxpY2U6c2VjcmV0' },
      qr/Authorization header must be/ ],
    [ 'a bad header token wins over a good query token', ws_path($g, 'alice'),
      { Authorization => 'Bearer x.y.z' }, qr/token/ ],
    [ 'unknown group, no token', "/api/chat/ws/$::nogroup", {},
      qr/missing bearer token/ ],
);
for my $c (@cases) {
    my ($name, $path, $headers, $detail) = @$c;
    my $ws = ws_connect(port => $port, path => $path, headers => $headers);
    is $ws->status, 401, "$name: 401";
    ok !$ws->is_open, "$name: not upgraded";
    like $ws->header('WWW-Authenticate') // '', qr/^Bearer/, "$name: WWW-Authenticate";
    like $ws->body, $detail, "$name: says why";
}
--- no_error_log
joined group



=== TEST 7: handshake: an unknown group is a 404, a malformed group id a 400
--- ws_script
my $ws = ws_connect(port => $port, path => ws_path($::nogroup, 'alice'));
is $ws->status, 404, 'unknown group: 404';
ok !$ws->is_open, 'not upgraded';
like $ws->body, qr/"detail":"group not found"/, 'says why';

$ws = ws_connect(port => $port, path => ws_path('5f00000000000000000000zz', 'alice'));
is $ws->status, 400, 'not an ObjectId: 400';
like $ws->body, qr/group_id is not a valid ObjectId/, 'says why';

$ws = ws_connect(port => $port, path => ws_path('123', 'alice'));
is $ws->status, 400, 'too short: 400';
--- no_error_log
joined group



=== TEST 8: handshake: chat_ws_allowed_origins refuses other origins with 403; clients without Origin are let in
--- config
location /api/chat/ {
    chat_api on;
    chat_ws_allowed_origins http://chat.example https://app.example:8443;
}
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = new_group($port);
for my $o ('http://chat.example', 'https://app.example:8443', 'HTTP://CHAT.EXAMPLE') {
    my $ws = ws_connect(port => $port, path => ws_path($g, 'alice'),
                        headers => { Origin => $o });
    is $ws->status, 101, "Origin $o: allowed";
}
for my $o ('http://evil.example', 'http://chat.example:8080',
           'https://chat.example', 'http://chat.example.evil', 'null') {
    my $ws = ws_connect(port => $port, path => ws_path($g, 'alice'),
                        headers => { Origin => $o });
    is $ws->status, 403, "Origin $o: 403";
    like $ws->body // '', qr/Origin is not allowed/, "Origin $o: says why";
}
my $ws = ws_connect(port => $port, path => ws_path($g, 'alice'),
                    headers => { Origin => undef });
is $ws->status, 101, 'no Origin (not a browser): allowed';



=== TEST 9: frames: ping is answered with a pong of the same payload; unsolicited pongs are ignored
--- ws_script
my $g = new_group($port);
my $ws = join_group($port, 'alice', $g);
for my $payload ('', 'hello', "\x00\xff" x 62 . 'x') {
    $ws->ping($payload);
    my $f = $ws->recv(timeout => 2);
    is $f && $f->{type}, 'pong', length($payload) . ' bytes: pong';
    is $f && $f->{payload}, $payload, length($payload) . ' bytes: same payload';
    ok $f && !$f->{masked}, 'server frames are not masked';
}
$ws->pong('unsolicited');
$ws->expect_nothing(timeout => 0.3, name => 'an unsolicited pong gets no answer');

# twenty pings in one write: twenty pongs, in order
$ws->send_frame(join '', map { frame(type => 'ping', payload => "p$_") } 1 .. 20);
my @got;
for (1 .. 20) {
    my $f = $ws->recv(timeout => 2) or last;
    push @got, $f->{payload};
}
is_deeply \@got, [ map { "p$_" } 1 .. 20 ], 'coalesced frames each answered, in order';
ok $ws->is_open, 'still open';



=== TEST 10: frames: peers that send a ping and reset the connection at once do not hurt the worker
The pong cannot be sent: the connection ends inside the ping's handler.
--- ws_script
use Socket qw(SOL_SOCKET SO_LINGER);
my $g = new_group($port);
my $hs = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    . "Sec-WebSocket-Version: 13\r\n\r\n";
for my $i (1 .. 20) {
    my $r = raw_http($port, "GET " . ws_path($g, "rst$i") . " HTTP/1.1\r\n$hs");
    die "not upgraded\n" unless $r->{status} == 101;
    $r->{sock}->syswrite(frame(type => 'ping', payload => "p$i"));
    $r->{sock}->setsockopt(SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $r->{sock};
}
my $ws = join_group($port, 'alice', $g);
$ws->ping('still');
my $f = $ws->recv(timeout => 2);
is $f && "$f->{type} $f->{payload}", 'pong still', 'the worker still answers';
ok wait_log(qr/"rst20" left group/, 2), 'the reset connections are gone';
--- no_error_log
[alert]
[crit]



=== TEST 11: frames: the close handshake echoes the peer's code, then the server drops the connection
--- ws_script
my $g = new_group($port);
for my $code (1000, 1001, 3000, 4999) {
    my $ws = join_group($port, 'alice', $g);
    $ws->close(code => $code, reason => 'bye');
    is scalar $ws->recv_close(timeout => 2), $code, "close $code echoed";
    ok $ws->wait_for_eof(timeout => 2), "close $code: connection closed";
}
my $ws = join_group($port, 'alice', $g, headers => { 'X-Correlation-ID' => 'bye-1' });
$ws->close;
my ($code) = $ws->recv_close(timeout => 2);
is $code, 1000, 'a close without a code is answered with 1000';
ok $ws->wait_for_eof(timeout => 2), 'connection closed';
$ws->disconnect;
ok wait_log(qr/"alice" left group .*correlation_id=bye-1\b/, 2),
   'the server lets go as soon as the peer has closed its side too';
--- error_log
chat ws: "alice" left group



=== TEST 12: frames: an unmasked client frame is closed with 1002
--- ws_script
my $g = new_group($port);
protocol_error($port, $g, frame(type => 'text', payload => '{}', masked => 0),
               1002, 'unmasked text');
protocol_error($port, $g, frame(type => 'ping', payload => 'x', masked => 0),
               1002, 'unmasked ping');
--- error_log
chat ws: protocol error, closing with 1002



=== TEST 13: frames: reserved bits and reserved opcodes are closed with 1002
--- ws_script
my $g = new_group($port);
for my $rsv (0x40, 0x20, 0x10) {
    protocol_error($port, $g, raw_frame(byte0 => 0x81 | $rsv, payload => '{}'),
                   1002, sprintf('RSV bit 0x%02x', $rsv));
}
for my $op (0x3, 0x7, 0xb, 0xf) {
    protocol_error($port, $g, raw_frame(byte0 => 0x80 | $op, payload => 'x'),
                   1002, sprintf('opcode 0x%x', $op));
}



=== TEST 14: frames: control frames over 125 bytes or fragmented are closed with 1002
--- ws_script
my $g = new_group($port);
protocol_error($port, $g, raw_frame(byte0 => 0x89, payload => 'x' x 126),
               1002, 'ping of 126 bytes');
protocol_error($port, $g, raw_frame(byte0 => 0x8a, payload => 'x' x 200),
               1002, 'pong of 200 bytes');
protocol_error($port, $g, raw_frame(byte0 => 0x88, payload => pack('n', 1000) . 'x' x 124),
               1002, 'close of 126 bytes');
protocol_error($port, $g, raw_frame(byte0 => 0x09, payload => 'x'),
               1002, 'ping without FIN');
protocol_error($port, $g, raw_frame(byte0 => 0x08, payload => pack('n', 1000)),
               1002, 'close without FIN');



=== TEST 15: frames: a close frame with a bad code or length is closed with 1002, a non-UTF-8 reason with 1007
--- ws_script
my $g = new_group($port);
protocol_error($port, $g, frame(type => 'close', payload => "\x03"), 1002,
               'close payload of one byte');
for my $code (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535) {
    protocol_error($port, $g, frame(type => 'close', payload => pack('n', $code)),
                   1002, "close code $code");
}
protocol_error($port, $g, frame(type => 'close', payload => pack('n', 1000) . "\xff\xfe"),
               1007, 'close reason not UTF-8');



=== TEST 16: frames: length fields must be minimal (1002); a 64-bit length with the top bit set is refused (1002)
--- ws_script
my $g = new_group($port);
protocol_error($port, $g, raw_frame(byte0 => 0x81, payload => '{}', form => 16),
               1002, '2 bytes in a 16-bit length');
protocol_error($port, $g, raw_frame(byte0 => 0x81, payload => 'x' x 200, form => 64),
               1002, '200 bytes in a 64-bit length');
protocol_error($port, $g, raw_frame(byte0 => 0x81, declared => 2**63 + 5, form => 64),
               1002, 'top bit of the 64-bit length set');



=== TEST 17: frames: continuation frames out of place are closed with 1002
--- ws_script
my $g = new_group($port);
protocol_error($port, $g, raw_frame(byte0 => 0x80, payload => 'x'), 1002,
               'a continuation without a message');
protocol_error($port, $g, raw_frame(byte0 => 0x00, payload => 'x'), 1002,
               'an unfinished continuation without a message');
protocol_error($port, $g, raw_frame(byte0 => 0x01, payload => '{"ty')
                        . raw_frame(byte0 => 0x81, payload => 'pe"}'),
               1002, 'a new text frame inside a fragmented message');
protocol_error($port, $g, raw_frame(byte0 => 0x02, payload => 'ab')
                        . raw_frame(byte0 => 0x01, payload => 'cd'),
               1002, 'a new unfinished frame inside a fragmented message');



=== TEST 18: fragmentation: a message in fragments is reassembled, control frames may come between, UTF-8 may be split across fragments; frames may straddle reads
--- config
location /api/chat/ {
    chat_api on;
    chat_max_content_length 60k;
}
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = new_group($port);
my $ws = join_group($port, 'alice', $g);
my $content = "caf\x{e9} \x{1F600} fragments";
my $bytes = json_text({ type => 'message', content => $content });
# split inside the two-byte "é" and inside the four-byte emoji
my $i1 = index($bytes, "\xc3") + 1;
my $i2 = index($bytes, "\xf0") + 2;
$ws->send_frame(raw_frame(byte0 => 0x01, payload => substr($bytes, 0, $i1))
              . raw_frame(byte0 => 0x00, payload => substr($bytes, $i1, $i2 - $i1))
              . frame(type => 'ping', payload => 'between')
              . raw_frame(byte0 => 0x00, payload => '')
              . raw_frame(byte0 => 0x80, payload => substr($bytes, $i2)));
my $f = $ws->recv(timeout => 2);
is $f && "$f->{type} $f->{payload}", 'pong between', 'the ping between fragments is answered at once';
my ($ack, $event);
for (1 .. 2) {
    my $e = next_event($ws);
    $ack = $e if $e->{type} eq 'ack';
    $event = $e if $e->{type} eq 'message';
}
ok $ack, 'the reassembled message is acked';
is $ack && $ack->{message}{content}, $content, 'content as sent, UTF-8 intact';
is $event && $event->{message}{id}, $ack && $ack->{message}{id},
   'and broadcast to the group, the sender included';

# a frame trickling in a few bytes at a time
my $one = frame(type => 'text', payload => json_text({ type => 'message', content => 'slowly' }));
for my $piece (unpack '(a3)*', $one) {
    $ws->send_frame($piece);
    Time::HiRes::sleep(0.01);
}
my $e = next_event($ws);
$e = next_event($ws) if $e->{type} eq 'message';
is $e->{type} . ' ' . ($e->{message}{content} // ''), 'ack slowly',
   'a frame that arrives in pieces is parsed once complete';

# three 50 KB frames in one write: more than one read (64 KB) each time
my @big = map { "$_ " . (chr(96 + $_) x 50_000) } 1 .. 3;
$ws->send_frame(join '', map {
    frame(type => 'text', payload => json_text({ type => 'message', content => $_ }))
} @big);
my @acked;
while (@acked < 3) {
    my $e = next_event($ws, 5);
    last if $e->{type} =~ /^</;
    push @acked, $e->{message}{content} if $e->{type} eq 'ack';
}
is_deeply \@acked, \@big, 'frames straddling reads: each whole, in order';



=== TEST 19: UTF-8: text that is not UTF-8 is closed with 1007, in one frame or across fragments
--- ws_script
my $g = new_group($port);
protocol_error($port, $g, frame(type => 'text', payload => "{\"x\":\"\xff\"}"),
               1007, 'a 0xff byte');
protocol_error($port, $g, frame(type => 'text', payload => "\xc0\xaf"),
               1007, 'an overlong encoding');
protocol_error($port, $g, frame(type => 'text', payload => "\xed\xa0\x80"),
               1007, 'a UTF-16 surrogate');
protocol_error($port, $g, frame(type => 'text', payload => "\xf4\x90\x80\x80"),
               1007, 'beyond U+10FFFF');
protocol_error($port, $g, raw_frame(byte0 => 0x01, payload => "ab\xc3")
                        . raw_frame(byte0 => 0x80, payload => "("),
               1007, 'a sequence cut by the next fragment');
protocol_error($port, $g, raw_frame(byte0 => 0x01, payload => "ab")
                        . raw_frame(byte0 => 0x80, payload => "cd\xe2\x82"),
               1007, 'a message ending inside a sequence');

# binary messages are not text: no UTF-8 check (but the chat wants JSON)
my $ws = join_group($port, 'alice', $g);
$ws->send_binary("\xff\xfe");
my $e = next_event($ws);
is $e->{type}, 'error', 'binary: an error event, not a close';
like $e->{detail}, qr/binary messages are not supported/, 'says why';
--- error_log
chat ws: protocol error, closing with 1007



=== TEST 20: size limits: a frame over chat_ws_max_frame_size or a message over chat_ws_max_message_size is closed with 1009
--- config
location /api/chat/ {
    chat_api on;
    chat_ws_max_frame_size 1k;
    chat_ws_max_message_size 2k;
}
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = new_group($port);
sub msg_of_size {
    my $n = shift;
    my $s = json_text({ type => 'message', content => '' });
    $s =~ s/""/'"' . ('m' x ($n - length($s))) . '"'/e;
    return $s;
}

my $ws = join_group($port, 'alice', $g);
$ws->send_text(msg_of_size(1024));
is next_event($ws)->{type}, 'message', 'a 1024-byte frame is fine (broadcast)';
is next_event($ws)->{type}, 'ack', 'and acked';

my $m = msg_of_size(2048);
$ws->send_frame(raw_frame(byte0 => 0x01, payload => substr($m, 0, 1000))
              . raw_frame(byte0 => 0x00, payload => substr($m, 1000, 1000))
              . raw_frame(byte0 => 0x80, payload => substr($m, 2000)));
is next_event($ws)->{type}, 'message', 'a 2048-byte message in three fragments is fine';
is next_event($ws)->{type}, 'ack', 'and acked';

protocol_error($port, $g, frame(type => 'text', payload => 'x' x 1025),
               1009, 'a 1025-byte frame');
protocol_error($port, $g, frame(type => 'binary', payload => 'x' x 70000),
               1009, 'a 70000-byte frame');
protocol_error($port, $g, raw_frame(byte0 => 0x81, declared => 2**40, form => 64),
               1009, 'a frame that only announces 1 TB');
protocol_error($port, $g, raw_frame(byte0 => 0x01, payload => 'x' x 1000)
                        . raw_frame(byte0 => 0x00, payload => 'x' x 1000)
                        . raw_frame(byte0 => 0x80, payload => 'x' x 49),
               1009, 'a 2049-byte message in three fragments');
protocol_error($port, $g, raw_frame(byte0 => 0x01, payload => 'x' x 1000)
                        . raw_frame(byte0 => 0x00, payload => 'x' x 1000)
                        . raw_frame(byte0 => 0x00, payload => 'x' x 1000),
               1009, 'an unfinished message growing past the limit');
--- error_log
chat ws: protocol error, closing with 1009



=== TEST 21: size limits: a message in a single frame is held to chat_ws_max_message_size too (1009)
--- config
location /api/chat/ {
    chat_api on;
    chat_ws_max_frame_size 4k;
    chat_ws_max_message_size 1k;
}
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = new_group($port);
protocol_error($port, $g, frame(type => 'text', payload => 'x' x 1025),
               1009, 'a 1025-byte message in one 1025-byte frame');
my $ws = join_group($port, 'alice', $g);
$ws->send_text(json_text({ type => 'message', content => 'x' x 900 }));
my $e = next_event($ws);
$e = next_event($ws) if $e->{type} eq 'message';
is $e->{type}, 'ack', 'a message within both limits is fine';
--- error_log
chat ws: protocol error, closing with 1009: message too big



=== TEST 22: frames sent in the same packet as the handshake are processed
--- ws_script
my $g = new_group($port);
my $key = 'dGhlIHNhbXBsZSBub25jZQ==';
my $path = ws_path($g, 'alice');
my $r = raw_http($port, "GET $path HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    . "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\n"
    . "Sec-WebSocket-Version: 13\r\n\r\n"
    . frame(type => 'ping', payload => 'early') . frame(type => 'close', payload => pack('n', 1000)),
    until => qr/\x88\x02\x03\xe8/);
is $r->{status}, 101, 'upgraded';
# pong "early", then the close echoed
is $r->{body}, "\x8a\x05early\x88\x02\x03\xe8", 'the ping answered, the close echoed';



=== TEST 23: frames and a FIN that arrive while the group is looked up (before the 101) are not lost
--- ws_script
use Socket qw(IPPROTO_TCP TCP_NODELAY);
my $g = new_group($port);
my $path = ws_path($g, 'alice');
my $hs = "GET $path HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    . "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    . "Sec-WebSocket-Version: 13\r\n\r\n";

my $early_socket = sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!\n";
    $s->setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
    $s->syswrite($hs);
    return $s;
};

my $read_for = sub {
    my ($s, $seconds, $until) = @_;
    my ($buf, $sel, $end) = ('', IO::Select->new($s), Time::HiRes::time + $seconds);
    while (!$until || $buf !~ $until) {
        my $left = $end - Time::HiRes::time;
        return ($buf, 0) if $left <= 0 || !$sel->can_read($left);
        my $n = $s->sysread($buf, 65536, length $buf);
        return ($buf, 1) unless $n;                 # EOF
    }
    return ($buf, 0);
};

# a ping written right behind the handshake, in a packet of its own
my $pongs = 0;
for (1 .. 10) {
    my $s = $early_socket->();
    $s->syswrite(frame(type => 'ping', payload => 'early'));
    my ($buf) = $read_for->($s, 5, qr/\x8a\x05early/);
    $pongs++ if $buf =~ /^HTTP\/1\.1 101 .*\r\n\r\n\x8a\x05early/s;
}
is $pongs, 10, 'each early ping is answered after the 101';

# a client that hangs up (FIN) right behind its handshake
my $closed = 0;
for (1 .. 5) {
    my $s = $early_socket->();
    shutdown $s, 1;
    my ($buf, $eof) = $read_for->($s, 5);
    $closed++ if $eof && $buf =~ /^HTTP\/1\.1 101 /;
}
is $closed, 5, 'each is dropped at once, not at the next keepalive ping';



=== TEST 24: keepalive: the server pings an idle peer, keeps one that answers and drops one that does not (chat_ws_ping_interval, chat_ws_idle_timeout)
--- config
location /api/chat/ {
    chat_api on;
    chat_ws_ping_interval 300ms;
    chat_ws_idle_timeout 1500ms;
}
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = new_group($port);
my $live = join_group($port, 'alice', $g);
my $dead = join_group($port, 'bob', $g);

my $f = $dead->recv(timeout => 2);
is $f && $f->{type}, 'ping', 'an idle peer gets a ping';
is $f && $f->{payload}, 'ka', 'with a payload of its own';

# the live one answers every ping for twice the idle timeout
my $t0 = Time::HiRes::time;
my $pings = 0;
while (Time::HiRes::time - $t0 < 3.2) {
    my $f = $live->recv(timeout => 0.1) or next;
    next unless $f->{type} eq 'ping';
    $pings++;
    $live->pong($f->{payload});
}
cmp_ok $pings, '>=', 2, 'the live peer was pinged again and again';
ok $dead->wait_for_eof(timeout => 5), 'the silent peer was dropped';
ok $live->is_open, 'the live peer is still connected';
$live->send_text(json_text({ type => 'message', content => 'still here' }));
my $e = next_event($live);
$e = next_event($live) if $e->{type} eq 'message';
is $e->{type}, 'ack', 'and still served';
--- error_log
chat ws: "bob" silent for



=== TEST 25: close timeout: after a protocol error the close frame and a FIN go at once; a peer that never closes its side is dropped after chat_ws_close_timeout
--- config
location /api/chat/ {
    chat_api on;
    chat_ws_close_timeout 300ms;
}
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = new_group($port);
my $ws = join_group($port, 'alice', $g, headers => { 'X-Correlation-ID' => 'linger-1' });
my $t0 = Time::HiRes::time;
$ws->send_frame(frame(type => 'text', payload => '{}', masked => 0));
# wait_for_eof reads without parsing: no close frame is sent back
ok $ws->wait_for_eof(timeout => 5), 'the server half-closes right after its close frame';
my ($code) = $ws->recv_close(timeout => 0.1);
is $code, 1002, 'the close frame came first';
ok wait_log(qr/"alice" left group .*correlation_id=linger-1\b/, 3),
   'the connection is dropped';
cmp_ok Time::HiRes::time - $t0, '>=', 0.25,
   'once the close timeout is over, as the peer kept its side open';



=== TEST 26: chat: a message sent over the WebSocket is acked, stored like a POST and broadcast to its group only
--- ws_script
my $g = new_group($port, 'room');
my $other = new_group($port, 'other room');
my $alice = join_group($port, 'alice', $g, headers => { 'X-Correlation-ID' => 'alice-ws' });
my $bob = join_group($port, 'bob', $g);
my $eve = join_group($port, 'eve', $other);

$alice->send_text(json_text({ type => 'message', content => "hi \"bob\" \x{1F600}\n<b>", extra => 1 }));
my ($ack, $own);
for (1 .. 2) {
    my $e = next_event($alice);
    $ack = $e if $e->{type} eq 'ack';
    $own = $e if $e->{type} eq 'message';
}
ok $ack, 'alice gets an ack';
my $m = $ack->{message} // {};
like $m->{id}, qr/^[0-9a-f]{24}$/, 'with the stored id';
is $m->{content}, "hi \"bob\" \x{1F600}\n<b>", 'content byte for byte';
is $m->{user_id}, 'alice', 'user_id is the token subject';
is $m->{group_id}, $g, 'group_id';
like $m->{created_at}, qr/Z$/, 'created_at';

my $e = next_event($bob);
is $e->{type}, 'message', 'bob gets {"type":"message"}';
is_deeply $e->{message}, $m, 'the same message';
is_deeply $own && $own->{message}, $m, 'alice gets the broadcast too';
$eve->expect_nothing(timeout => 0.3, name => 'another group hears nothing');

my $l = ChatTest::Client->new(port => $port, user => 'carol')
    ->get("/api/chat/groups/$g/messages");
is_deeply $l->{json}{messages}, [ $m ], 'stored: GET lists the same message';



=== TEST 27: chat: invalid messages get an error event with the connection's correlation ID, like a POST gets a 4xx, and nothing is stored
--- ws_script
my $g = new_group($port);
my $alice = join_group($port, 'alice', $g, headers => { 'X-Correlation-ID' => 'alice-ws' });
my $http = ChatTest::Client->new(port => $port, user => 'alice');

my @cases = (
    [ 'empty content',      { type => 'message', content => '' } ],
    [ 'blank content',      { type => 'message', content => " \t\r\n " } ],
    [ 'content too long',   { type => 'message', content => 'x' x 4097 } ],
    [ 'content not a string', { type => 'message', content => 12 } ],
    [ 'no content',         { type => 'message' } ],
);
for my $c (@cases) {
    my ($name, $msg) = @$c;
    my %body = %$msg;
    delete $body{type};
    my $r = $http->post("/api/chat/groups/$g/messages", \%body);
    $alice->send_text(json_text($msg));
    my $e = next_event($alice);
    is $e->{type}, 'error', "$name: error event";
    is $e->{correlation_id}, 'alice-ws', "$name: with the correlation ID";
    like $r->{status}, qr/^4/, "$name: a POST is refused too";
    is $e->{detail}, $r->{json}{detail}, "$name: for the same reason";
}

my @other = (
    [ 'not JSON',           'hello',                         qr/not valid JSON/ ],
    [ 'a JSON array',       '["message"]',                   qr/must be a JSON object/ ],
    [ 'trailing data',      '{"type":"message","content":"a"} x', qr/trailing data/ ],
    [ 'a \u0000 escape',    '{"type":"message","content":"a\u0000b"}', qr/must not contain \\u0000/ ],
    [ 'another type',       '{"type":"typing","content":"a"}', qr/"type" must be "message"/ ],
    [ 'no type',            '{"content":"a"}',               qr/"type" must be "message"/ ],
);
for my $c (@other) {
    my ($name, $text, $detail) = @$c;
    $alice->send_text($text);
    my $e = next_event($alice);
    is $e->{type}, 'error', "$name: error event";
    like $e->{detail} // '', $detail, "$name: says why";
}

$alice->send_text(json_text({ type => 'message', content => 'x' x 4096 }));
my $ok = next_event($alice);
$ok = next_event($alice) if $ok->{type} eq 'message';
is $ok->{type}, 'ack', '4096 bytes are accepted, like a POST';
ok $alice->is_open, 'errors do not close the connection';

my $l = $http->get("/api/chat/groups/$g/messages");
is scalar @{ $l->{json}{messages} }, 1, 'only the valid message was stored';



=== TEST 28: chat: messages POSTed and DELETEd over HTTP reach WebSocket subscribers
--- ws_script
my $g = new_group($port);
my $bob = join_group($port, 'bob', $g);
my $carol = join_group($port, 'carol', $g);
my $http = ChatTest::Client->new(port => $port, user => 'alice');

my $r = $http->post("/api/chat/groups/$g/messages", { content => 'over HTTP' });
is $r->{status}, 201, 'posted';
for my $ws ($bob, $carol) {
    my $e = next_event($ws);
    is $e->{type}, 'message', "$ws->{name}: a message event";
    is_deeply $e->{message}, $r->{json}, "$ws->{name}: the message as the POST returned it";
}

my $d = $http->delete("/api/chat/groups/$g/messages/$r->{json}{id}");
is $d->{status}, 200, 'deleted';
for my $ws ($bob, $carol) {
    is_deeply next_event($ws),
        { type => 'message_deleted', message_id => $r->{json}{id}, group_id => $g,
          seq => $d->{json}{seq} },
        "$ws->{name}: a message_deleted event, with the deletion's seq";
}
$http->delete("/api/chat/groups/$g/messages/$r->{json}{id}");
$bob->expect_nothing(timeout => 0.3, name => 'a failed delete announces nothing');



=== TEST 29: chat: messages sent back to back by one client are acked and broadcast in the order sent
--- ws_script
my $g = new_group($port);
my $alice = join_group($port, 'alice', $g);
my $bob = join_group($port, 'bob', $g);
my @sent = map { "n$_" } 1 .. 8;
$alice->send_frame(join '', map {
    frame(type => 'text', payload => json_text({ type => 'message', content => $_ }))
} @sent);
my (@acks, @seen);
while (@acks < 8) {
    my $e = next_event($alice);
    last if $e->{type} =~ /^</;
    push @acks, $e->{message}{content} if $e->{type} eq 'ack';
    fail("error: $e->{detail}") if $e->{type} eq 'error';
}
while (@seen < 8) {
    my $e = next_event($bob);
    last if $e->{type} =~ /^</;
    push @seen, $e->{message}{content};
}
is_deeply \@acks, \@sent, 'acks in the order sent';
is_deeply \@seen, \@sent, 'broadcast in the order sent';
my $l = ChatTest::Client->new(port => $port, user => 'bob')
    ->get("/api/chat/groups/$g/messages");
is_deeply [ reverse map { $_->{content} } @{ $l->{json}{messages} } ], \@sent,
    'stored in the order sent';



=== TEST 30: a sender whose connection breaks while its own message is being broadcast does not crash the worker
The worker is kept busy (a 16 MB message to parse) while the message of
another client is stored and that client resets its connection: the
completion then runs before the reset is seen, and the broadcast to the
sender itself fails.
--- config
location /api/chat/ {
    chat_api on;
    chat_ws_max_frame_size 16m;
    chat_ws_max_message_size 16m;
}
location = /t { return 200 "ok\n"; }
--- timeout: 20
--- ws_script
use Socket qw(SOL_SOCKET SO_LINGER);
my $g = new_group($port);
my $watcher = join_group($port, 'watcher', $g);
my $big = raw_frame(byte0 => 0x81, payload => json_text(
    { type => 'message', content => 'x' x (16 * 1024 * 1024 - 64) }));
my $hs = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    . "Sec-WebSocket-Version: 13\r\n\r\n";
for my $i (1 .. 3) {
    my $bulky = join_group($port, 'bulky', $g, timeout => 10);
    $bulky->send_frame(substr $big, 0, -1);
    my $victim = raw_http($port, "GET " . ws_path($g, 'victim') . " HTTP/1.1\r\n$hs");
    die "victim not upgraded\n" unless $victim->{status} == 101;
    Time::HiRes::sleep(0.2);

    $victim->{sock}->syswrite(raw_frame(byte0 => 0x81,
        payload => json_text({ type => 'message', content => "victim $i" })));
    Time::HiRes::sleep(0.002);
    $bulky->send_frame(substr $big, -1);       # the worker parses 16 MB
    Time::HiRes::sleep(0.03);
    $victim->{sock}->setsockopt(SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $victim->{sock};                      # RST

    my $e = next_event($bulky, 10);
    like $e->{type}, qr/^(error|message)$/, "round $i: the worker still answers";
}
my $alice = join_group($port, 'alice', $g, timeout => 10);
$alice->send_text(json_text({ type => 'message', content => 'after' }));
$watcher->expect(qr/"content":"after"/, timeout => 3, skip_others => 1,
                 name => 'the group still works afterwards');
--- no_error_log
double free
[alert]
[crit]



=== TEST 31: a group bigger than a fan-out slice (256 subscribers a turn of the event loop): every subscriber gets every message once, in seq order, also the messages stored while a fan-out is still going
Each round POSTs 8 messages on 8 connections at once: their stores end
close together, so the later ones are published while the first one's
fan-out still has subscribers to go, and wait behind it.
--- timeout: 90
--- ws_script
my $g = new_group($port);
my @subs = map { join_group($port, "s$_", $g, timeout => 10) } 1 .. 300;
my $rounds = 4;
my (%content, @order);
for my $round (1 .. $rounds) {
    my @socks;
    for my $i (1 .. 8) {
        my $body = json_text({ content => "r$round m$i" });
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
            or die "connect: $!\n";
        push @socks, [ $s, "POST /api/chat/groups/$g/messages HTTP/1.1\r\n"
            . "Host: x\r\nConnection: close\r\n"
            . "Authorization: Bearer " . ChatTest::JWT::token("p$i") . "\r\n"
            . "Content-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n\r\n$body" ];
    }
    $_->[0]->syswrite($_->[1]) for @socks;
    for my $p (@socks) {
        my $buf = '';
        1 while $p->[0]->sysread($buf, 65536, length $buf);
        die "a POST failed: " . substr($buf, 0, 80) . "\n"
            unless $buf =~ m{^HTTP/1\.1 201 };
    }
}
my ($complete, @bad) = (0);
for my $i (0 .. $#subs) {
    my @seen;
    while (@seen < 8 * $rounds) {
        my $e = next_event($subs[$i], 10);
        last if $e->{type} =~ /^</;
        next if $e->{type} ne 'message';
        push @seen, $e->{message}{seq};
    }
    my $ok = @seen == 8 * $rounds;
    for my $k (1 .. $#seen) { $ok = 0 unless $seen[$k] > $seen[$k - 1] }
    if ($ok) { $complete++ } else { push @bad, "s" . ($i + 1) . ": @seen" }
    # the same seqs for everyone
    @order = @seen unless @order;
    push @bad, "s" . ($i + 1) . " differs: @seen" if "@seen" ne "@order";
}
is $complete, 300, "all 300 subscribers got the " . 8 * $rounds
    . " messages, each once, in seq order";
is scalar(@bad), 0, 'the same ones for everyone'
    or diag join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)];
$subs[-1]->expect_nothing(timeout => 0.3, name => 'and nothing twice');
my $late = join_group($port, 'late', $g);
$subs[0]->send_text(json_text({ type => 'message', content => 'after' }));
for my $ws ($late, $subs[-1]) {
    $ws->expect(qr/"content":"after"/, timeout => 5, skip_others => 1,
                name => "$ws->{name}: the group goes on afterwards");
}
--- no_error_log
[alert]
[crit]
