# The module loads, its directives are validated by `nginx -t` with clear
# messages, and every response of an http block that uses the module
# carries a correlation ID; loaded and unused (a Debian package enables it
# for the system's nginx), it leaves responses alone.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;

no_shuffle();
log_level('info');
run_tests();

__DATA__

=== TEST 1: the module loads; a plain location answers with a correlation ID
--- http_config
chat_correlation_header X-Correlation-ID;
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- response_headers_like
X-Correlation-ID: [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}



=== TEST 2: a safe incoming correlation ID is kept, echoed and exposed as a variable
--- http_config
chat_correlation_header X-Correlation-ID;
--- config
location = /t { return 200 "cid=$chat_correlation_id\n"; }
--- request
GET /t
--- more_headers
X-Correlation-ID: abc-123.def_456:7
--- response_body
cid=abc-123.def_456:7
--- response_headers
X-Correlation-ID: abc-123.def_456:7



=== TEST 3: an unsafe correlation ID (quote, space) is replaced, and logged
--- config
location = /t { return 200 "cid=$chat_correlation_id\n"; }
--- request
GET /t
--- more_headers
X-Correlation-ID: abc" injected=1
--- response_body_like: ^cid=[0-9a-f]{8}-[0-9a-f]{4}-4
--- error_log
chat correlation: ignored unsafe "X-Correlation-ID" header



=== TEST 4: a correlation ID longer than 64 bytes is replaced
--- config
location = /t { return 200 "cid=$chat_correlation_id\n"; }
--- request
GET /t
--- more_headers eval
"X-Correlation-ID: " . ("a" x 65)
--- response_body_like: ^cid=[0-9a-f]{8}-[0-9a-f]{4}-4



=== TEST 5: 64 bytes is still accepted
--- config
location = /t { return 200 "cid=$chat_correlation_id\n"; }
--- request
GET /t
--- more_headers eval
"X-Correlation-ID: " . ("b" x 64)
--- response_body eval
"cid=" . ("b" x 64) . "\n"



=== TEST 6: the header name is configurable
--- http_config
chat_correlation_header X-Request-ID;
--- config
location = /t { return 200 "cid=$chat_correlation_id\n"; }
--- request
GET /t
--- more_headers
X-Request-ID: req-42
--- response_body
cid=req-42
--- response_headers
X-Request-ID: req-42
!X-Correlation-ID



=== TEST 7: error pages carry the correlation ID too
--- http_config
chat_correlation_header X-Correlation-ID;
--- config
location = /t { return 404; }
--- request
GET /t
--- more_headers
X-Correlation-ID: err-1
--- error_code: 404
--- response_headers
X-Correlation-ID: err-1



=== TEST 8: an invalid MongoDB URI fails nginx -t
--- http_config
chat_mongo_uri "http://not-mongo/";
--- config
--- must_die
--- error_log
invalid MongoDB URI "http://not-mongo/"



=== TEST 9: chat_api requires chat_mongo_uri
--- http_config
chat_jwt_secret 0123456789abcdef0123456789abcdef;
--- config
location /api/chat/ { chat_api on; }
--- must_die
--- error_log
"chat_api" is on but "chat_mongo_uri" is not set in the http block



=== TEST 10: chat_api requires a JWT secret
--- http_config
chat_mongo_uri mongodb://127.0.0.1:1/chat;
--- config
location /api/chat/ { chat_api on; }
--- must_die
--- error_log
"chat_api" is on but neither "chat_jwt_secret" nor "chat_jwt_secret_file" is set



=== TEST 11: chat_api takes on or off only
--- config
location /api/chat/ { chat_api maybe; }
--- must_die
--- error_log
invalid value "maybe" in "chat_api" directive, it must be "on" or "off"



=== TEST 12: the metrics address must be ipc:// or loopback tcp://
--- http_config
chat_metrics_address tcp://10.0.0.1:9000;
--- config
--- must_die
--- error_log
invalid chat_metrics_address "tcp://10.0.0.1:9000"



=== TEST 13: chat_metrics on needs chat_metrics_address
--- config
location /m { chat_metrics on; }
--- must_die
--- error_log
"chat_metrics" is on but "chat_metrics_address" is not set



=== TEST 14: a content limit of zero is refused
--- config
location /m { chat_max_content_length 0; }
--- must_die
--- error_log
chat_max_content_length must be between 1 and 1m, not 0



=== TEST 15: a page size above the page maximum is refused
--- config
location /m { chat_page_size 200; chat_page_max 100; }
--- must_die
--- error_log
chat_page_size 200 is larger than chat_page_max 100



=== TEST 16: a header name with a space is refused
--- http_config
chat_correlation_header "X Bad";
--- config
--- must_die
--- error_log
invalid header name "X Bad" in chat_correlation_header



=== TEST 17: a missing JWT secret file is reported with its path
--- http_config
chat_jwt_secret_file /nonexistent/jwt-secret;
--- config
--- must_die
--- error_log
chat_jwt_secret_file "/nonexistent/jwt-secret" cannot be opened



=== TEST 18: chat_mongo_uri is only valid at http level
--- config
location /m { chat_mongo_uri mongodb://127.0.0.1/chat; }
--- must_die
--- error_log
"chat_mongo_uri" directive is not allowed here



=== TEST 19: the worker starts with the API configured, and builds its indexes
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
--- config
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- wait: 1
--- error_log
chat storage: indexes are in place



=== TEST 20: loaded with no chat_* directive, the module leaves responses alone
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- more_headers
X-Correlation-ID: abc-1
--- response_body
ok
--- response_headers
!X-Correlation-ID



=== TEST 21: chat_bearer_token_file: a token shorter than 32 characters is refused
--- user_files
>>> short-token
0123456789abcdef
--- config
location = /metrics { chat_bearer_token_file ../html/short-token; }
--- must_die
--- error_log
chat_bearer_token_file "../html/short-token": the token must be 32 to 256 characters



=== TEST 22: chat_bearer_token_file: a token with a blank inside is refused
--- user_files
>>> blank-token
0123456789abcdef 0123456789abcdef0123
--- config
location = /metrics { chat_bearer_token_file ../html/blank-token; }
--- must_die
--- error_log
the token must be 32 to 256 characters of A-Z a-z 0-9



=== TEST 23: chat_bearer_token_file: the token admits where satisfy any lets one access handler decide, is inherited, and "off" turns it off; a wrong one is a 401, none leaves the decision to the rest (deny: 403)
--- user_files
>>> scrape-token
0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
>>> ok.txt
ok
--- http_config
chat_bearer_token_file ../html/scrape-token;
--- config
satisfy any;
deny all;
location = /ok.txt { }
location = /off/ok.txt { chat_bearer_token_file off; alias html/ok.txt; }
--- request eval
["GET /ok.txt", "GET /ok.txt", "GET /ok.txt", "GET /ok.txt", "GET /off/ok.txt"]
--- more_headers eval
["Authorization: Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
 "Authorization: Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee",
 "X-Other: 1",
 "Authorization: Basic YWRtaW46czNjcmV0",
 "Authorization: Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]
--- error_code eval
[200, 401, 403, 403, 403]
--- response_body_like eval
['^ok$', "401 Authorization Required", "403 Forbidden", "403 Forbidden", "403 Forbidden"]



=== TEST 24: chat_bearer_token_file: a wrong token is logged at info, without the token
--- user_files
>>> scrape-token
0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
>>> ok.txt
ok
--- config
location = /ok.txt { satisfy any; deny all; chat_bearer_token_file ../html/scrape-token; }
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer wrong-0123456789abcdef0123456789abcdef
--- error_code: 401
--- error_log
chat: the bearer token does not match chat_bearer_token_file
--- no_error_log
wrong-0123456789abcdef
