# Every response under the API is JSON {"detail", "correlation_id"}, also
# the errors nginx makes itself before or around the API's handler (a body
# above client_max_body_size, a bad URI, TRACE, a URI or header too large,
# an unknown Transfer-Encoding, a handler's bare status), with no
# error_page line in the configuration.  Outside the API, nginx's pages
# stay as they are.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Script;
use IO::Socket::INET;
use IO::Select;
use JSON::PP ();
use Time::HiRes ();

no_shuffle();
log_level('info');
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value(http_config => <<'_EOC_') unless defined $block->http_config;
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
_EOC_

    $block->set_value(config => <<'_EOC_') unless defined $block->config;
location /api/chat/ { chat_api on; client_max_body_size 2k; }
location = /t { return 200 "ok\n"; }
location = /static { return 200 "static\n"; }
_EOC_
});

# sends raw bytes on a new connection; returns { status, headers, body,
# raw } once the server closes it (or after 5 s)
sub raw {
    my ($bytes) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => ChatTest::Script::port())
        or die "connect: $!\n";
    print $s $bytes;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = Time::HiRes::time() + 5;
    while (Time::HiRes::time() < $deadline) {
        next unless $sel->can_read(0.2);
        my $n = sysread $s, $buf, 65536, length $buf;
        last unless $n;
        # a response with Content-Length is complete: nginx may keep
        # reading (lingering close) what the client still sends
        if ($buf =~ /\A(.*?\r\n)\r\n/s) {
            my $head = $1;
            my ($cl) = $head =~ /\r\nContent-Length: (\d+)\r\n/i;
            last if defined $cl && length($buf) >= length($head) + 2 + $cl;
        }
    }
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.[01] (\d+)};
    my %h;
    for (split /\r\n/, $head // '') {
        $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
    }
    return { status => $status // 0, headers => \%h, body => $body // '', raw => $buf };
}

# the checks of one JSON error response
sub json_error_ok {
    my ($r, $status, $detail_re, $name) = @_;
    is $r->{status}, $status, "$name: status $status";
    is $r->{headers}{'content-type'}, 'application/json', "$name: Content-Type application/json";
    my $j = eval { JSON::PP->new->decode($r->{body}) };
    ok $j && ref $j eq 'HASH', "$name: the body is a JSON object"
        or diag "body: $r->{body}";
    is_deeply [ sort keys %{ $j // {} } ], [ 'correlation_id', 'detail' ], "$name: detail and correlation_id, nothing else";
    like $j->{detail} // '', $detail_re, "$name: detail";
    is $j->{correlation_id}, $r->{headers}{'x-correlation-id'}, "$name: correlation_id is X-Correlation-ID's"
        if $j;
    is $r->{headers}{'content-length'}, length $r->{body}, "$name: Content-Length is the JSON's";
}

run_tests();

__DATA__

=== TEST 1: 413: a body above client_max_body_size, with Content-Length (at once) or chunked (once read)
--- request
GET /t
--- chat_script
my $tok = ChatTest::JWT::token('alice');
my $body = '{"name":"' . ('x' x 3000) . '"}';
my $r = main::raw("POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\n"
    . "Content-Type: application/json\r\nContent-Length: " . length($body)
    . "\r\nX-Correlation-ID: big-1\r\n\r\n$body");
main::json_error_ok($r, 413, qr/client_max_body_size/, '413 Content-Length');
is $r->{headers}{'x-correlation-id'}, 'big-1', 'the client\'s correlation id';

my $chunks = sprintf("%x\r\n%s\r\n0\r\n\r\n", length $body, $body);
$r = main::raw("POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\n"
    . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n$chunks");
main::json_error_ok($r, 413, qr/./, '413 chunked');
--- error_log
client intended to send too large body
chat api: 413 POST /api/chat/groups: request body is larger than client_max_body_size, correlation_id=big-1



=== TEST 2: 400: %00 in the path, a bad Content-Length, Content-Length with chunked, no Host
--- request
GET /t
--- chat_script
my @cases = (
    [ "GET /api/chat/groups%00 HTTP/1.1\r\nHost: x\r\n\r\n",                           '%00 in the path' ],
    [ "GET /api/chat/groups/%00/messages HTTP/1.1\r\nHost: x\r\n\r\n",                 '%00 in a segment' ],
    [ "POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nContent-Length: x1\r\n\r\n",       'a bad Content-Length' ],
    [ "POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
      . "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",                                  'Content-Length and chunked' ],
    [ "GET /api/chat/groups HTTP/1.1\r\n\r\n",                                         'HTTP/1.1 without Host' ],
);
for my $c (@cases) {
    main::json_error_ok(main::raw($c->[0]), 400, qr/^bad request/, "400 $c->[1]");
}



=== TEST 3: 405: TRACE (refused by nginx before any handler), with the route's Allow
--- request
GET /t
--- chat_script
my $r = main::raw("TRACE /api/chat/groups HTTP/1.1\r\nHost: x\r\nX-Correlation-ID: trace-1\r\n\r\n");
main::json_error_ok($r, 405, qr/^Method Not Allowed$/, '405 TRACE');
is $r->{headers}{allow}, 'GET, HEAD, POST', 'Allow of the route';
$r = main::raw("TRACE /api/chat/groups/5f0000000000000000000000 HTTP/1.1\r\nHost: x\r\n\r\n");
main::json_error_ok($r, 405, qr/^Method Not Allowed$/, '405 TRACE on a group');
is $r->{headers}{allow}, 'GET, HEAD', 'Allow of that route';
--- error_log
chat api: 405 TRACE /api/chat/groups: Method Not Allowed, correlation_id=trace-1



=== TEST 4: 414 and 400 for a URI or a header above large_client_header_buffers
--- request
GET /t
--- chat_script
my $r = main::raw("GET /api/chat/groups/" . ('a' x 9000) . " HTTP/1.1\r\nHost: x\r\n\r\n");
main::json_error_ok($r, 414, qr/URI is too long/, '414 URI too long');
$r = main::raw("GET /api/chat/groups HTTP/1.1\r\nHost: x\r\nX-Big: " . ('b' x 9000) . "\r\n\r\n");
main::json_error_ok($r, 400, qr/^bad request/, '400 (494) a header too large');



=== TEST 5: 501: an unknown Transfer-Encoding
--- request
GET /t
--- chat_script
my $r = main::raw("POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n");
main::json_error_ok($r, 501, qr/Transfer-Encoding/, '501 unknown Transfer-Encoding');



=== TEST 6: a bare status from the configuration on an API location is JSON too (500 and 503)
--- config
location /api/chat/ { chat_api on; }
location = /api/chat/boom { chat_api on; return 500; }
location = /api/chat/busy { chat_api on; return 503; }
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- chat_script
main::json_error_ok(main::raw("GET /api/chat/boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                    500, qr/^internal error$/, '500');
main::json_error_ok(main::raw("GET /api/chat/busy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                    503, qr/try again later/, '503');
--- error_log eval
[qr/\[error\] .*chat api: 500 GET \/api\/chat\/boom: internal error, correlation_id=/]



=== TEST 7: outside the API nginx's own pages are left alone
--- request
GET /t
--- chat_script
for my $c (["GET /other%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, 'a bad URI elsewhere'],
           ["TRACE /static HTTP/1.1\r\nHost: x\r\n\r\n", 405, 'TRACE elsewhere'],
           ["POST /static HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, 'an unknown Transfer-Encoding elsewhere']) {
    my $r = main::raw($c->[0]);
    is $r->{status}, $c->[1], "$c->[2]: $c->[1]";
    is $r->{headers}{'content-type'}, 'text/html', "$c->[2]: nginx's HTML page";
}



=== TEST 8: HEAD of an nginx error on the API: the JSON's headers, no body
--- request
GET /t
--- chat_script
my $r = main::raw("HEAD /api/chat/groups%00 HTTP/1.1\r\nHost: x\r\n\r\n");
is $r->{status}, 400, 'HEAD with a bad URI: 400';
is $r->{headers}{'content-type'}, 'application/json', 'application/json';
is $r->{body}, '', 'no body';
