# The "--- ws_script" pattern of ChatTest::WebSocket, end to end through
# nginx (proxying to a forked echo server).  Only public Test::Nginx API
# is used, so this file is also an example of a suite that runs under the
# real Test::Nginx unchanged.
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../../lib";

my $echo;
BEGIN {
    require EchoServer;
    $echo = EchoServer->start;
    $ENV{TEST_NGINX_ECHO_PORT} = $echo->port;
    $ENV{TEST_NGINX_RANDOMIZE} //= 1;
}
END { $echo->stop if $echo }

use Test::Nginx::Socket;
use ChatTest::WebSocket;

ChatTest::WebSocket::install_ws_script_hook();

repeat_each(2);
plan tests => repeat_each() * (2 * blocks() + 4 + 2);  # + ws_script checks

no_shuffle();
run_tests();

__DATA__

=== TEST 1: alice and bob through nginx (4 ws_script checks)
--- config
    location = /t { return 200 "ok"; }
    location /ws/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ECHO_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- request
GET /t
--- response_body chomp
ok
--- ws_script
my $alice = ws_connect(port => $port, path => '/ws/room?token=alice');
my $bob   = ws_connect(port => $port, path => '/ws/room?token=bob');
is($alice->status, 101, 'alice upgraded through nginx');
$alice->send_text('all:hello bob');
$bob->expect('hello bob', timeout => 1, name => 'bob got it');
$alice->expect_nothing(timeout => 0.2, name => 'alice did not');
$alice->close(code => 1000);
is(scalar $alice->recv_close(timeout => 1), 1000, 'close echoed');
--- ws_checks: 4



=== TEST 2: a refused handshake is visible through nginx (2 checks)
--- config
    location = /t { return 200 "ok"; }
    location /ws/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ECHO_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- request
GET /t
--- response_body chomp
ok
--- ws_script
my $c = ws_connect(port => $port, path => '/ws/deny');
is($c->status, 401, 'refused with 401');
ok(!$c->is_open, 'no WebSocket');
--- ws_checks: 2



=== TEST 3: the raw_request handshake route of the harness itself
(101 never ends by itself: short timeout + abort; 1 response_headers_like line)
--- config
    location /ws/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_ECHO_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- raw_request eval
"GET /ws/raw HTTP/1.1\r
Host: localhost\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Sec-WebSocket-Version: 13\r
\r
"
--- error_code: 101
--- response_headers_like
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=
--- timeout: 300ms
--- abort
