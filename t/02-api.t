# The chat REST API against the real database: every route, every error.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::JWT;
use ChatTest::Script;

no_shuffle();
log_level('info');
no_root_location();

chat_blocks(db_timeout => '3s');

our $alice = ChatTest::JWT::bearer('alice');
our $bob = ChatTest::JWT::bearer('bob');
our $ct = "Content-Type: application/json";
our $nogroup = '5f0000000000000000000000';

run_tests();

__DATA__

=== TEST 1: no token: 401 with WWW-Authenticate and a JSON detail
--- request
POST /api/chat/groups
{"name":"x"}
--- more_headers
Content-Type: application/json
X-Correlation-ID: no-token-1
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="chat"
Content-Type: application/json
--- response_body_like: ^\{"detail":"missing bearer token","correlation_id":"no-token-1"\}$
--- error_log
chat api: 401 POST /api/chat/groups: missing bearer token, correlation_id=no-token-1



=== TEST 2: a token signed with another secret is refused
--- request
GET /api/chat/groups
--- more_headers eval
"Authorization: Bearer " . ChatTest::JWT::token('alice', secret => 'another-secret-another-secret-xx')
--- error_code: 401
--- response_body_like: "detail":"token signature is invalid"



=== TEST 3: alg "none" is refused
--- request
GET /api/chat/groups
--- more_headers eval
"Authorization: Bearer " . ChatTest::JWT::token('alice', alg => 'none', sign => 0)
--- error_code: 401
--- response_body_like: "detail":"token algorithm is not HS256"



=== TEST 4: HS512 is refused even with a valid HS256 signature
--- request
GET /api/chat/groups
--- more_headers eval
"Authorization: Bearer " . ChatTest::JWT::token('alice', alg => 'HS512')
--- error_code: 401
--- response_body_like: "detail":"token algorithm is not HS256"



=== TEST 5: an expired token is refused (beyond the 30 s leeway)
--- request
GET /api/chat/groups
--- more_headers eval
"Authorization: Bearer " . ChatTest::JWT::token('alice', exp => time - 60)
--- error_code: 401
--- response_body_like: "detail":"token has expired"



=== TEST 6: a token expired within the leeway is still accepted
--- request
GET /api/chat/groups
--- more_headers eval
"Authorization: Bearer " . ChatTest::JWT::token('alice', exp => time - 5)
--- error_code: 200



=== TEST 7: a token not valid yet is refused
--- request
GET /api/chat/groups
--- more_headers eval
"Authorization: Bearer " . ChatTest::JWT::token('alice', nbf => time + 600)
--- error_code: 401
--- response_body_like: "detail":"token is not valid yet"



=== TEST 8: a token without exp is refused
--- request
GET /api/chat/groups
--- more_headers eval
"Authorization: Bearer " . ChatTest::JWT::token('alice', claims => { exp => undef })
--- error_code: 401
--- response_body_like: "detail":"token has no valid \\"exp\\" claim"



=== TEST 9: Basic credentials are not a bearer token
--- request
GET /api/chat/groups
--- more_headers
Authorization: Basic YWxpY2U6c2VjcmV0
--- error_code: 401
--- response_body_like: "detail":"Authorization header must be \\"Bearer <token>\\""



=== TEST 10: malformed and oversized tokens are refused
--- request eval
["GET /api/chat/groups", "GET /api/chat/groups", "GET /api/chat/groups"]
--- more_headers eval
["Authorization: Bearer abc.def", "Authorization: Bearer a!b.c.d", "Authorization: Bearer " . ("a" x 5000) . ".b.c"]
--- error_code eval
[401, 401, 401]
--- response_body_like eval
['"detail":"token is not a three-part JWS"', '"detail":"token is not valid base64url"', '"detail":"token is empty or too long"']



=== TEST 11: unknown routes answer 404 in JSON
--- request eval
["GET /api/chat/nothing", "GET /api/chat/groups/x/y", "GET /api/chat/groups/5f0000000000000000000000/messages/a/b"]
--- error_code eval
[404, 404, 404]
--- response_body_like eval
['^\{"detail":"Not Found","correlation_id":"[^"]+"\}$', '"Not Found"', '"Not Found"']



=== TEST 12: a wrong method answers 405 with Allow
--- request eval
["PUT /api/chat/groups", "DELETE /api/chat/groups/5f0000000000000000000000", "GET /api/chat/groups/5f0000000000000000000000/messages/5f0000000000000000000001", "PATCH /api/chat/groups/5f0000000000000000000000/messages"]
--- error_code eval
[405, 405, 405, 405]
--- response_headers eval
["Allow: GET, HEAD, POST", "Allow: GET, HEAD", "Allow: DELETE", "Allow: GET, HEAD, POST"]
--- response_body_like eval
['"detail":"Method Not Allowed"', '"detail":"Method Not Allowed"', '"detail":"Method Not Allowed"', '"detail":"Method Not Allowed"']



=== TEST 13: ids that are not ObjectIds answer 400
--- request eval
["GET /api/chat/groups/not-an-id", "GET /api/chat/groups/5f000000000000000000000g/messages", "DELETE /api/chat/groups/5f0000000000000000000000/messages/123"]
--- more_headers eval
[$::alice, $::alice, $::alice]
--- error_code eval
[400, 400, 400]
--- response_body_like eval
['"detail":"group_id is not a valid ObjectId', '"detail":"group_id is not a valid ObjectId', '"detail":"message_id is not a valid ObjectId']



=== TEST 14: a body that is not application/json answers 415
--- request
POST /api/chat/groups
{"name":"x"}
--- more_headers eval
"$::alice\nContent-Type: text/plain"
--- error_code: 415
--- response_body_like: "detail":"Content-Type must be application/json"



=== TEST 15: application/json with a charset parameter is fine
--- request
POST /api/chat/groups
{"name":"charset"}
--- more_headers eval
"$::alice\nContent-Type: application/json; charset=utf-8"
--- error_code: 201



=== TEST 16: malformed JSON answers 400
--- request eval
["POST /api/chat/groups\n{\"name\":", "POST /api/chat/groups\n[\"name\"]", "POST /api/chat/groups\n{\"name\":\"a\"} x", "POST /api/chat/groups\n"]
--- more_headers eval
["$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct"]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
['"detail":"request body is not valid JSON"', '"detail":"request body must be a JSON object"', '"detail":"request body has trailing data', '"detail":"request body is empty']



=== TEST 17: wrong types, missing and empty fields answer 422
--- request eval
["POST /api/chat/groups\n{\"name\":5}", "POST /api/chat/groups\n{\"title\":\"x\"}", "POST /api/chat/groups\n{\"name\":\"  \\t \"}", "POST /api/chat/groups\n{\"name\":null}"]
--- more_headers eval
["$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct"]
--- error_code eval
[422, 422, 422, 422]
--- response_body_like eval
['"detail":"field \\\\"name\\\\" must be a string"', '"detail":"field \\\\"name\\\\" is required"', '"detail":"field \\\\"name\\\\" must not be empty"', '"detail":"field \\\\"name\\\\" must be a string"']
--- raw_response_headers_like eval
["^HTTP/1.1 422 Unprocessable Entity\r\n", "^HTTP/1.1 422 ", "^HTTP/1.1 422 ", "^HTTP/1.1 422 "]



=== TEST 18: a name over 100 bytes answers 422
--- request eval
"POST /api/chat/groups\n{\"name\":\"" . ("n" x 101) . "\"}"
--- more_headers eval
"$::alice\n$::ct"
--- error_code: 422
--- response_body_like: "detail":"field \\"name\\" is longer than 100 bytes"



=== TEST 19: invalid UTF-8 and \u0000 answer 400
--- request eval
["POST /api/chat/groups\n{\"name\":\"\xff\xfe\"}", "POST /api/chat/groups\n{\"name\":\"\xc0\xaf\"}", "POST /api/chat/groups\n{\"name\":\"\xed\xa0\x80\"}", "POST /api/chat/groups\n{\"name\":\"a\\u0000b\"}"]
--- more_headers eval
["$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct"]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
['"detail":"request body is not valid UTF-8"', '"detail":"request body is not valid UTF-8"', '"detail":"request body is not valid UTF-8"', '"detail":"strings must not contain \\\\\\\\u0000"']



=== TEST 20: a body over the limit answers 413 before it is read
--- request eval
"POST /api/chat/groups\n{\"name\":\"" . ("x" x 30000) . "\"}"
--- more_headers eval
"$::alice\n$::ct"
--- error_code: 413
--- response_body_like: "detail":"request body is larger than 25600 bytes"



=== TEST 21: bad paging arguments answer 400
--- request eval
["GET /api/chat/groups?limit=0", "GET /api/chat/groups?limit=101", "GET /api/chat/groups?limit=abc", "GET /api/chat/groups?page=0", "GET /api/chat/groups?limit=99999999999999", "GET /api/chat/groups/5f0000000000000000000000/messages?before=xyz"]
--- more_headers eval
[$::alice, $::alice, $::alice, $::alice, $::alice, $::alice]
--- error_code eval
[400, 400, 400, 400, 400, 400]
--- response_body_like eval
['"detail":"limit must be an integer from 1 to 100"', '"detail":"limit must be', '"detail":"limit must be', '"detail":"page must be an integer from 1 to 100000"', '"detail":"limit must be', '"detail":"before is not a valid message id']



=== TEST 22: a long, hostile query string is ignored where it means nothing
--- request eval
"GET /api/chat/groups?" . CORE::join("&", map { "x$_=%00%0d%0a<script>" } 1 .. 150) . "&limit=2"
--- more_headers eval
$::alice
--- error_code: 200
--- response_body_like: "limit":2



=== TEST 23: unknown group and message answer 404
--- request eval
["GET /api/chat/groups/$::nogroup", "GET /api/chat/groups/$::nogroup/messages", "POST /api/chat/groups/$::nogroup/messages\n{\"content\":\"hi\"}", "DELETE /api/chat/groups/$::nogroup/messages/5f0000000000000000000001"]
--- more_headers eval
[$::alice, $::alice, "$::alice\n$::ct", $::alice]
--- error_code eval
[404, 404, 404, 404]
--- response_body_like eval
['"detail":"group not found"', '"detail":"group not found"', '"detail":"group not found"', '"detail":"message not found"']



=== TEST 24: groups: create, read back, list newest first
--- request
GET /t
--- chat_script
my $alice = client('alice');
my $a = $alice->post('/api/chat/groups', { name => '  General  ' });
is $a->{status}, 201, 'created';
like $a->{json}{id}, qr/^[0-9a-f]{24}$/, 'id is an ObjectId';
is $a->{json}{name}, 'General', 'name trimmed';
is $a->{json}{created_by}, 'alice', 'created_by is the token subject';
like $a->{json}{created_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ISO-8601 UTC';
is $a->{headers}{location}, "/api/chat/groups/$a->{json}{id}", 'Location';
like $a->{headers}{'x-correlation-id'}, qr/^[0-9a-f-]{36}$/, 'correlation id';

my $g = $alice->get("/api/chat/groups/$a->{json}{id}");
is $g->{status}, 200, 'read back';
is_deeply $g->{json}, $a->{json}, 'same document';

my $b = client('bob')->post('/api/chat/groups', { name => "Caf\x{e9} <b>&\"" });
is $b->{status}, 201, 'second group';
is $b->{json}{name}, "Caf\x{e9} <b>&\"", 'unicode and markup kept as text';

my $l = $alice->get('/api/chat/groups?limit=2');
is $l->{status}, 200, 'list';
is scalar @{ $l->{json}{groups} }, 2, 'two groups';
is $l->{json}{groups}[0]{id}, $b->{json}{id}, 'newest first';
is $l->{json}{groups}[1]{id}, $a->{json}{id}, 'then older';
ok exists $l->{json}{has_more}, 'has_more present';

my $h = $alice->request('HEAD', "/api/chat/groups/$a->{json}{id}");
is $h->{status}, 200, 'HEAD answers';
ok !length($h->{body} // ''), 'HEAD has no body';



=== TEST 25: messages: post, list, limits and content kept byte for byte
--- request
GET /t
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'msgs' })->{json}{id};

my $m = $alice->post("/api/chat/groups/$g/messages", { content => "hello \x{1F600} \"q\" \\ \n<i>", extra => 'ignored' });
is $m->{status}, 201, 'posted';
is $m->{json}{content}, "hello \x{1F600} \"q\" \\ \n<i>", 'content as sent';
is $m->{json}{group_id}, $g, 'group_id';
is $m->{json}{user_id}, 'alice', 'user_id from the token';
is $m->{headers}{location}, "/api/chat/groups/$g/messages/$m->{json}{id}", 'Location';
ok !exists $m->{json}{extra}, 'unknown fields are ignored';

is $alice->post("/api/chat/groups/$g/messages", { content => 'x' x 4096 })->{status}, 201, '4096 bytes accepted';
my $big = $alice->post("/api/chat/groups/$g/messages", { content => 'x' x 4097 });
is $big->{status}, 422, '4097 bytes refused';
like $big->{json}{detail}, qr/longer than 4096 bytes/, 'says the limit';
is $alice->post("/api/chat/groups/$g/messages", { content => '' })->{status}, 422, 'empty refused';
is $alice->post("/api/chat/groups/$g/messages", { content => 12 })->{status}, 422, 'number refused';

my $l = $alice->get("/api/chat/groups/$g/messages");
is $l->{status}, 200, 'listed';
is scalar @{ $l->{json}{messages} }, 2, 'rejected posts wrote nothing';
is $l->{json}{messages}[1]{id}, $m->{json}{id}, 'oldest last';
is $l->{json}{limit}, 50, 'default page size 50';



=== TEST 26: pagination: pages of 50, limit up to 100, a before cursor that stays correct under concurrent inserts
--- request
GET /t
--- timeout: 60
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'paging' })->{json}{id};
my @ids;
for my $i (1 .. 120) {
    my $r = $alice->post("/api/chat/groups/$g/messages", { content => "m$i" });
    push @ids, $r->{json}{id};
}
my @newest_first = reverse @ids;

my $p1 = $alice->get("/api/chat/groups/$g/messages");
is scalar @{ $p1->{json}{messages} }, 50, 'page 1 has 50';
ok $p1->{json}{has_more}, 'has_more';
my $p3 = $alice->get("/api/chat/groups/$g/messages?page=3");
is scalar @{ $p3->{json}{messages} }, 20, 'page 3 has the last 20';
ok !$p3->{json}{has_more}, 'no more after page 3';
is scalar @{ $alice->get("/api/chat/groups/$g/messages?limit=100")->{json}{messages} }, 100, 'limit=100';

# walk back with the cursor while someone keeps posting
my (@seen, $before);
for my $round (1 .. 10) {
    my $q = "/api/chat/groups/$g/messages?limit=25" . ($before ? "&before=$before" : '');
    my $r = $alice->get($q);
    is $r->{status}, 200, "cursor page $round";
    push @seen, map { $_->{id} } @{ $r->{json}{messages} };
    client('bob')->post("/api/chat/groups/$g/messages", { content => "late $round" }) for 1 .. 3;
    $before = $r->{json}{next_before};
    last unless $r->{json}{has_more};
    is $before, $seen[-1], 'next_before is the last id of the page';
}
is_deeply \@seen, \@newest_first, 'every message exactly once, newest first, none of the later ones';

my $bad = $alice->get("/api/chat/groups/$g/messages?before=5f0000000000000000000001");
is $bad->{status}, 400, 'a cursor of no message is a 400';



=== TEST 27: soft delete: only the author, then gone from the listing, then 404
--- request
GET /t
--- chat_script
my ($alice, $bob) = (client('alice'), client('bob'));
my $g = $alice->post('/api/chat/groups', { name => 'deletes' })->{json}{id};
my $m1 = $alice->post("/api/chat/groups/$g/messages", { content => 'keep' })->{json}{id};
my $m2 = $alice->post("/api/chat/groups/$g/messages", { content => 'drop' })->{json}{id};

my $r = $bob->delete("/api/chat/groups/$g/messages/$m2");
is $r->{status}, 403, 'another user may not delete';
like $r->{json}{detail}, qr/only the author/, 'says why';

$r = $alice->delete("/api/chat/groups/$g/messages/$m2");
is $r->{status}, 200, 'the author deletes';
is $r->{json}{is_deleted}, JSON::PP::true, 'is_deleted';
like $r->{json}{deleted_at}, qr/Z$/, 'deleted_at';

my $l = $alice->get("/api/chat/groups/$g/messages");
is_deeply [ map { $_->{id} } @{ $l->{json}{messages} } ], [$m1], 'deleted message left the listing';

is $alice->delete("/api/chat/groups/$g/messages/$m2")->{status}, 404, 'deleting twice is a 404';
my $other = $alice->post('/api/chat/groups', { name => 'other' })->{json}{id};
is $alice->delete("/api/chat/groups/$other/messages/$m1")->{status}, 404, 'a message of another group is a 404';



=== TEST 28: clients that hang up while the database works do not hurt the worker
--- request
GET /t
--- chat_script
use IO::Socket::INET;
my $token = ChatTest::JWT::token('alice');
for my $i (1 .. 40) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => port()) or die $!;
    my $body = '{"name":"hangup"}';
    print $s "POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\n"
           . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    close $s;
}
select undef, undef, undef, 0.5;
my $r = client('alice')->get('/api/chat/groups?limit=1');
is $r->{status}, 200, 'the worker still answers';
--- no_error_log
[alert]
[crit]



=== TEST 29: anything cJSON would turn into a NUL is refused, so nothing is stored cut short (found by fuzzing)
--- request eval
["POST /api/chat/groups\n{\"name\":\"hello\\u00zzsecret\"}", "POST /api/chat/groups\n{\"name\":\"a\x00b\"}", "POST /api/chat/groups\n{\"name\":\"a\\u12\"}"]
--- more_headers eval
["$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct"]
--- error_code eval
[400, 400, 400]
--- response_body_like eval
['"detail":"request body is not valid JSON"', '"detail":"request body must not contain NUL bytes"', '"detail":"request body is not valid JSON"']



=== TEST 30: a token subject with a newline or a quote is refused (it would forge log lines)
--- request eval
["GET /api/chat/groups", "GET /api/chat/groups"]
--- more_headers eval
["Authorization: Bearer " . ChatTest::JWT::token("eve\n2026/01/01 [alert] forged"), "Authorization: Bearer " . ChatTest::JWT::token("eve\" x=1")]
--- error_code eval
[401, 401]
--- response_body_like eval
['"detail":"token \\\\"sub\\\\" must be 1 to 64 bytes of printable UTF-8"', '"detail":"token \\\\"sub\\\\" must be 1 to 64 bytes of printable UTF-8"']



=== TEST 31: a key given twice in a body answers 400 naming the key, at any depth, and stores nothing
--- request eval
["POST /api/chat/groups\n{\"name\":\"dup-a\",\"name\":\"dup-b\"}", "POST /api/chat/groups\n{\"name\":\"x\",\"meta\":{\"k\":1,\"k\":2}}", "POST /api/chat/groups\n{\"name\":\"x\",\"list\":[{\"a\":1},{\"b\":1,\"b\":2}]}", "POST /api/chat/groups/$::nogroup/messages\n{\"content\":\"a\",\"content\":\"b\"}", "POST /api/chat/groups\n{" . CORE::join(",", map { "\"k$_\":1" } 1 .. 300) . ",\"k150\":2,\"name\":\"many\"}", "POST /api/chat/groups\n{\"na\\u006de\":\"a\",\"name\":\"b\"}", "GET /api/chat/groups?limit=100"]
--- more_headers eval
["$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct", "$::alice\n$::ct", $::alice]
--- error_code eval
[400, 400, 400, 400, 400, 400, 200]
--- response_body_like eval
['^\{"detail":"duplicate key \\\\"name\\\\" in JSON object","correlation_id":"[^"]+"\}$', '"detail":"duplicate key \\\\"k\\\\" in JSON object"', '"detail":"duplicate key \\\\"b\\\\" in JSON object"', '"detail":"duplicate key \\\\"content\\\\" in JSON object"', '"detail":"duplicate key \\\\"k150\\\\" in JSON object"', '"detail":"duplicate key \\\\"name\\\\" in JSON object"', '^(?!.*"name":"dup-)']



=== TEST 32: a query parameter given twice answers 400 naming it (any case), for every parameter
--- request eval
["GET /api/chat/groups?limit=1&limit=2", "GET /api/chat/groups?page=1&limit=5&PAGE=2", "GET /api/chat/groups/$::nogroup/messages?before=5f0000000000000000000001&before=5f0000000000000000000002", "GET /api/chat/groups/$::nogroup/messages?limit=1&limit", "GET /api/chat/groups?limit=2&x=1&x=2"]
--- more_headers eval
[$::alice, $::alice, $::alice, $::alice, $::alice]
--- error_code eval
[400, 400, 400, 400, 200]
--- response_body_like eval
['^\{"detail":"query parameter \\\\"limit\\\\" is given more than once","correlation_id":"[^"]+"\}$', '"detail":"query parameter \\\\"page\\\\" is given more than once"', '"detail":"query parameter \\\\"before\\\\" is given more than once"', '"detail":"query parameter \\\\"limit\\\\" is given more than once"', '"limit":2']



=== TEST 33: a token with a claim given twice is refused; a WebSocket token given twice too
--- request eval
["GET /api/chat/groups", "GET /api/chat/ws/$::nogroup?token=a&token=b"]
--- more_headers eval
["Authorization: Bearer " . ChatTest::JWT::token('alice', raw_payload => '{"sub":"alice","sub":"admin","exp":' . (time + 3600) . '}'), "Upgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
--- error_code eval
[401, 401]
--- response_body_like eval
['"detail":"token payload has a duplicate claim"', '"detail":"query parameter \\\\"token\\\\" is given more than once"']



=== TEST 34: a WebSocket message with a key given twice answers an error event naming it, and stores nothing
--- request
GET /t
--- chat_script
use ChatTest::WebSocket;
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'ws-dup' })->{json}{id};
my $ws = ChatTest::WebSocket->connect(port => port(),
    path => "/api/chat/ws/$g?token=" . ChatTest::JWT::token('alice'));
is $ws->status, 101, 'subscribed';
$ws->send_text('{"type":"message","content":"a","content":"b"}');
$ws->expect(qr/^\{"type":"error","detail":"duplicate key \\"content\\" in JSON object","correlation_id":"[^"]+"\}$/,
            timeout => 3);
$ws->send_text('{"type":"message","content":"fine"}');
$ws->expect(qr/"content":"fine"/, timeout => 3);
my $l = $alice->get("/api/chat/groups/$g/messages");
is_deeply [ map { $_->{content} } @{ $l->{json}{messages} } ], ['fine'], 'only the valid message is stored';
$ws->close(code => 1000);



=== TEST 35: a token without "sub" (or with a sub that is not a string) is refused
--- request eval
["GET /api/chat/groups", "GET /api/chat/groups"]
--- more_headers eval
["Authorization: Bearer " . ChatTest::JWT::token(undef), "Authorization: Bearer " . ChatTest::JWT::token('alice', claims => { sub => 42 })]
--- error_code eval
[401, 401]
--- response_headers eval
["WWW-Authenticate: Bearer realm=\"chat\"", "WWW-Authenticate: Bearer realm=\"chat\""]
--- response_body_like eval
['^\{"detail":"token has no \\\\"sub\\\\" claim","correlation_id":"[^"]+"\}$', '"detail":"token has no \\\\"sub\\\\" claim"']



=== TEST 36: chat_jwt_leeway 5s: a token expired 10 s ago, or valid only in 10 s, is refused; within 5 s it passes
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_jwt_leeway 5s;
--- request
GET /t
--- chat_script
# tokens made now, not when the file was parsed
my %cases = ('expired 10 s ago' => [ { exp => time - 10 }, 401, 'token has expired' ],
             'valid in 10 s'    => [ { nbf => time + 10 }, 401, 'token is not valid yet' ],
             'expired 2 s ago'  => [ { exp => time - 2 },  200 ],
             'valid in 2 s'     => [ { nbf => time + 2 },  200 ]);
for my $name (sort keys %cases) {
    my ($claims, $status, $detail) = @{ $cases{$name} };
    my $r = client(undef, token => ChatTest::JWT::token('alice', %$claims))
        ->get('/api/chat/groups?limit=1');
    is $r->{status}, $status, "leeway 5s, $name: $status";
    is $r->{json}{detail}, $detail, "detail: $detail" if $detail;
}



=== TEST 37: chat_jwt_leeway 30s: the same tokens, 10 s out, pass; 40 s out they do not
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_jwt_leeway 30s;
--- request
GET /t
--- chat_script
my %cases = ('expired 10 s ago' => [ { exp => time - 10 }, 200 ],
             'valid in 10 s'    => [ { nbf => time + 10 }, 200 ],
             'expired 40 s ago' => [ { exp => time - 40 }, 401, 'token has expired' ],
             'valid in 40 s'    => [ { nbf => time + 40 }, 401, 'token is not valid yet' ]);
for my $name (sort keys %cases) {
    my ($claims, $status, $detail) = @{ $cases{$name} };
    my $r = client(undef, token => ChatTest::JWT::token('alice', %$claims))
        ->get('/api/chat/groups?limit=1');
    is $r->{status}, $status, "leeway 30s, $name: $status";
    is $r->{json}{detail}, $detail, "detail: $detail" if $detail;
}



=== TEST 38: chat_jwt_secret_file: a token signed with the file's secret (its trailing newline ignored) is accepted; others are not
--- user_files
>>> jwt.key
file-secret-0123456789abcdef-0123456789
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret_file ../html/jwt.key;
--- request eval
["GET /api/chat/groups?limit=1", "GET /api/chat/groups?limit=1", "GET /api/chat/groups?limit=1"]
--- more_headers eval
["Authorization: Bearer " . ChatTest::JWT::token('alice', secret => 'file-secret-0123456789abcdef-0123456789'), "Authorization: Bearer " . ChatTest::JWT::token('alice', secret => "file-secret-0123456789abcdef-0123456789\n"), $::alice]
--- error_code eval
[200, 401, 401]
--- response_body_like eval
['"groups"', '"detail":"token signature is invalid"', '"detail":"token signature is invalid"']



=== TEST 39: the API's error log lines: 4xx at [info], 5xx at [error], each with status, method, URI, detail and correlation id
--- http_config
chat_mongo_uri "mongodb://127.0.0.1:1/chat";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_db_timeout 300ms;
--- request eval
["GET /api/chat/nowhere", "GET /api/chat/groups", "GET /api/chat/groups"]
--- more_headers eval
["X-Correlation-ID: lvl-404", "X-Correlation-ID: lvl-401", "$::alice\nX-Correlation-ID: lvl-503"]
--- error_code eval
[404, 401, 503]
--- error_log eval
[qr/\[info\] \d+#\d+: \*\d+ chat api: 404 GET \/api\/chat\/nowhere: Not Found, correlation_id=lvl-404,/,
 qr/\[info\] \d+#\d+: \*\d+ chat api: 401 GET \/api\/chat\/groups: missing bearer token, correlation_id=lvl-401,/,
 qr/\[error\] \d+#\d+: \*\d+ chat api: 503 GET \/api\/chat\/groups: database unavailable, try again later, correlation_id=lvl-503,/]
--- no_error_log eval
[qr/\[(?:error|warn|notice)\] .*chat api: 4\d\d /, qr/\[(?:info|notice|warn)\] .*chat api: 5\d\d /]



=== TEST 40: a token kept as verified by the worker is still refused once it expires, and a token differing from it only in its signature, or only in its signature's encoding, is refused
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_jwt_leeway 1s;
--- request
GET /t
--- chat_script
my $tok = ChatTest::JWT::token('alice', exp => time + 2);
for my $i (1, 2) {
    is client(undef, token => $tok)->get('/api/chat/groups?limit=1')->{status}, 200,
       "request $i with a valid token: 200";
}
# a character of the signature changed: the same header and claims
my $b64 = join '', 'A' .. 'Z', 'a' .. 'z', 0 .. 9, '-', '_';
my $forged = $tok;
substr($forged, -10, 1) = substr($forged, -10, 1) eq 'A' ? 'B' : 'A';
my $r = client(undef, token => $forged)->get('/api/chat/groups?limit=1');
is $r->{status}, 401, 'the same token with another signature: 401';
is $r->{json}{detail}, 'token signature is invalid', 'detail: signature';
# the same signature bytes, another encoding: the 43rd character's last 2
# bits are past the MAC's 32 bytes (a lenient decoder ignores them)
my $last = index $b64, substr($tok, -1);
my $other = $tok;
substr($other, -1) = substr($b64, $last ^ 1, 1);
$r = client(undef, token => $other)->get('/api/chat/groups?limit=1');
is $r->{status}, 401, 'the signature with its unused bits set otherwise: 401';
is $r->{json}{detail}, 'token signature is invalid', 'detail: signature';
sleep 1 while time <= time_of($tok) + 1;
$r = client(undef, token => $tok)->get('/api/chat/groups?limit=1');
is $r->{status}, 401, 'the kept token past exp + leeway: 401';
is $r->{json}{detail}, 'token has expired', 'detail: expired';

sub time_of {
    my ($t) = @_;
    my $p = (split /\./, $t)[1];
    $p =~ tr{-_}{+/};
    $p .= '=' x ((4 - length($p) % 4) % 4);
    require MIME::Base64;
    my ($exp) = MIME::Base64::decode_base64($p) =~ /"exp":(\d+)/;
    return $exp;
}
