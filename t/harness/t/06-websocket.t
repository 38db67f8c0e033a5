# ChatTest::WebSocket against a forked Protocol::WebSocket echo server.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../../lib";
use EchoServer;
use SelfTest;
use ChatTest::WebSocket;
use Test::More;

my $server = EchoServer->start;
my $port = $server->port;

subtest 'handshake and echo' => sub {
    my $ws = ws_connect(port => $port, path => '/echo?token=t', timeout => 1);
    is($ws->status, 101, 'status 101');
    ok($ws->is_open, 'open');
    like($ws->header('Upgrade'), qr/websocket/i, 'Upgrade header');
    $ws->send_text('hello');
    my $frame = $ws->recv(timeout => 1);
    is_deeply([ @$frame{qw(type opcode payload fin masked)} ],
              [ 'text', 1, 'hello', 1, 0 ], 'recv returns the frame');
    $ws->send_binary("\x00\x01\xff");
    $frame = $ws->recv(timeout => 1);
    is($frame->{type}, 'binary', 'binary echo type');
    is($frame->{payload}, "\x00\x01\xff", 'binary echo payload');
    $ws->send_text('x' x 70000);
    is(length($ws->recv(timeout => 2)->{payload}), 70000, 'large (64-bit length) message');
};

subtest 'expect / expect_nothing report one check each' => sub {
    my $ws = ws_connect(port => $port, path => '/e');
    $ws->send_text('{"text":"hi"}');
    is($ws->expect(qr/"text":"hi"/, timeout => 1), '{"text":"hi"}',
       'expect returns the payload');
    $ws->send_text('exact');
    $ws->expect('exact', name => 'string matcher');
    $ws->send_text('42');
    $ws->expect(sub { $_[0] == 42 }, name => 'code matcher');
    $ws->expect_nothing(timeout => 0.2);
    $ws->send_text('one');
    $ws->send_text('two');
    $ws->expect(qr/two/, skip_others => 1, name => 'skip_others finds a later message');
};

subtest 'a failing expectation is a failing check' => sub {
    # in a subprocess, so that its failures do not count against this file
    my $script = write_t('ws-fail.t', <<'_T_');
use ChatTest::WebSocket;
use Test::More;
my $ws = ws_connect(port => $ENV{ECHO_PORT}, path => '/f');
$ws->send_text('something');
my $got = $ws->expect(qr/other/, timeout => 0.3, name => 'mismatch');
ok(!defined $got, 'expect returned undef');
$ws->send_text('unexpected');
$ws->expect_nothing(timeout => 0.3, name => 'silence expected');
done_testing();
_T_
    my $r = run_t($script, ECHO_PORT => $port);
    like($r->{stdout}, qr/^not ok 1 - mismatch$/m, 'expect: not ok');
    like($r->{stdout}, qr/^ok 2 - expect returned undef$/m, 'returns undef');
    like($r->{stdout}, qr/^not ok 3 - silence expected$/m, 'expect_nothing: not ok');
    like($r->{stderr}, qr/got text frame: 'something'/, 'diagnostics show what came');
};

subtest 'ping / pong and server pings' => sub {
    my $ws = ws_connect(port => $port, path => '/p');
    $ws->ping('are-you-there');
    my $frame = $ws->recv(timeout => 1);
    is($frame->{type}, 'pong', 'pong for our ping');
    is($frame->{payload}, 'are-you-there', 'with our payload');

    $ws->send_text('ping-me');
    $frame = $ws->recv(timeout => 1);
    is($frame->{type}, 'ping', 'recv shows the server ping');
    $ws->send_text('ping-me');
    $ws->send_text('after ping');
    $ws->expect('after ping', name => 'expect skips (and answers) pings');
};

subtest 'fragmented messages come back whole' => sub {
    my $ws = ws_connect(port => $port, path => '/frag');
    $ws->send_text('fragmented');
    my $frame = $ws->recv(timeout => 1);
    is($frame->{payload}, 'fragmented', 'reassembled');
    is($frame->{type}, 'text', 'with the first fragment opcode');
};

subtest 'several clients at once' => sub {
    my $alice = ws_connect(port => $port, path => '/room?u=alice');
    my $bob   = ws_connect(port => $port, path => '/room?u=bob');
    my $carol = ws_connect(port => $port, path => '/room?u=carol');
    $alice->send_text('all:hi from alice');
    $bob->expect('hi from alice', name => 'bob got it');
    $carol->expect('hi from alice', name => 'carol got it');
    $alice->expect_nothing(timeout => 0.2, name => 'alice did not get her own');
    $bob->send_text('all:bob here');
    $alice->expect('bob here', name => 'alice got bob');
};

subtest 'close handshake' => sub {
    my $ws = ws_connect(port => $port, path => '/c');
    $ws->close(code => 1000, reason => 'done');
    my ($code, $reason) = $ws->recv_close(timeout => 1);
    is($code, 1000, 'close code echoed');
    is($reason, 'done', 'close reason echoed');
    ok($ws->wait_for_eof(timeout => 1), 'server dropped the connection');

    $ws = ws_connect(port => $port, path => '/c2');
    $ws->send_text('close-me');
    is(scalar $ws->recv_close(timeout => 1), 4000, 'server-initiated close code');
};

subtest 'malformed frames via send_frame' => sub {
    my $ws = ws_connect(port => $port, path => '/bad');
    $ws->send_frame(ChatTest::WebSocket->frame(type => 'text', payload => 'x',
                                               masked => 0));
    my ($code) = $ws->recv_close(timeout => 1);
    is($code, 1002, 'unmasked client frame: protocol error close');
    ok($ws->wait_for_eof(timeout => 1), 'and the connection is dropped');
};

subtest 'refused and broken handshakes are visible' => sub {
    my $ws = ws_connect(port => $port, path => '/deny/me');
    is($ws->status, 401, 'status of the refusal');
    is($ws->header('X-Reason'), 'denied', 'its headers');
    is($ws->body, 'denied', 'its body');
    ok(!$ws->is_open, 'not open');
    like($ws->error, qr/refused/, 'error says so');
    eval { $ws->send_text('x') };
    like($@, qr/not an open WebSocket/, 'sending on it dies');

    $ws = ws_connect(port => $port, path => '/nokey',
                     headers => { 'Sec-WebSocket-Key' => undef });
    is($ws->status, 400, 'a removed Sec-WebSocket-Key gives 400');

    $ws = ws_connect(port => $port, path => '/h',
                     headers => [ 'X-Token' => 'secret', Origin => 'http://example.test' ]);
    $ws->send_text('header:X-Token');
    $ws->expect('secret', name => 'extra header sent');
    $ws->send_text('header:Origin');
    $ws->expect('http://example.test', name => 'Origin replaced, not duplicated');
};

$server->stop;
done_testing();
