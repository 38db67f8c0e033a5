# Every supported section, passing, under a numeric plan: if a section
# produced one check more or less than upstream, the plan would not match.
BEGIN { $ENV{TEST_NGINX_RANDOMIZE} //= 1; $ENV{TEST_NGINX_GREETING} = 'hello from env'; }

use Test::Nginx::Socket;

repeat_each(2);

# error_code is 1 check per request; the rest is counted per block below.
plan tests => repeat_each() * (
      5   # TEST 1: error_code, response_body, 2 response_headers, no_error_log
    + 4   # TEST 2: error_code, response_headers_like, body_like, body_unlike
    + 4   # TEST 3: 2 requests x (error_code + response_body)
    + 6   # TEST 4: 3 pipelined x (error_code + response_body)
    + 3   # TEST 5: error_code, raw_response_headers_like, _unlike
    + 2   # TEST 6: error_code, response_body (split raw request)
    + 2   # TEST 7: error_code, response_body (request packets)
    + 4   # TEST 8: error_code, response_body, 2 error_log patterns
    + 2   # TEST 9: error_code, grep_error_log_out
    + 2   # TEST 10: error_code_like, response_body (chunked)
    + 2   # TEST 11: user_files: error_code, response_body
    + 2   # TEST 12: env expansion + main/post_main/http_config
    + 2   # TEST 13: must_die + error_log
    + 1   # TEST 14: ignore_response + error_log
    + 2   # TEST 15: timeout + abort: error_code + response_body_like
    + 3   # TEST 16: init + wait: 2 error_code, error_log
    + 4   # TEST 17: 2 requests x (error_code + response_body)
    + 2   # TEST 18: log_level section: error_code + no_error_log
);

no_shuffle();
no_long_string();
run_tests();

__DATA__

=== TEST 1: plain request, exact body, headers present and absent
--- config
    location = /t {
        add_header X-Test yes;
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- response_headers
X-Test: yes
!X-Absent
--- no_error_log
[error]



=== TEST 2: POST body, more_headers, header regex, body regexes
--- config
    location = /t {
        add_header X-Echo "$http_x_a/$content_length/$request_method";
        return 201 "created $http_x_a";
    }
--- request
POST /t
hello world
--- more_headers
X-A: first
X-B: second
--- error_code: 201
--- response_headers_like
X-Echo: first/11/POST
--- response_body_like: ^created first$
--- response_body_unlike: nope



=== TEST 3: eval request array: several requests in turn
--- config
    location /a { return 200 "A"; }
    location /b { return 404 "B"; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 404]
--- response_body eval
["A", "B"]



=== TEST 4: pipelined requests on one keep-alive connection
--- config
    location /p { return 200 "$uri:$connection_requests"; }
--- pipelined_requests eval
["GET /p1", "GET /p2", "GET /p3"]
--- response_body eval
["/p1:1", "/p2:2", "/p3:3"]



=== TEST 5: raw_request and raw response headers
--- config
    location = /r { return 302 /elsewhere; }
--- raw_request eval
"GET /r HTTP/1.1\r
Host: localhost\r
Connection: close\r
\r
"
--- error_code: 302
--- raw_response_headers_like: Location: http://localhost(?::\d+)?/elsewhere\r\n
--- raw_response_headers_unlike: X-Never



=== TEST 6: raw_request split in packets with a middle delay
--- config
    location = /r { return 200 "$http_x_split"; }
--- raw_request eval
["GET /r HTTP/1.1\r\nHost: localhost\r\nX-Spl", "it: joined\r\nConnection: close\r\n\r\n"]
--- raw_request_middle_delay: 0.05
--- response_body chomp
joined



=== TEST 7: request body sent in several packets
--- config
    location = /t {
        client_body_buffer_size 1k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location = /echo { return 200 "len=$http_content_length"; }
--- request eval
[["POST /t\nhel", {value => "lo", delay_before => 0.05}]]
--- response_body chomp
len=5



=== TEST 8: error_log sees this block's lines (string and qr)
--- config
    location /missing { root html; }
--- request
GET /missing/marker-8
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log eval
["marker-8", qr/\[error\].*No such file or directory/]



=== TEST 9: grep_error_log collects matches of this repeat only
(the error line names the URI twice: in the path and in the request)
--- config
    location /missing { root html; }
--- log_level: error
--- request
GET /missing/marker-9
--- error_code: 404
--- grep_error_log eval: qr/marker-\d+/
--- grep_error_log_out
marker-9
marker-9



=== TEST 10: chunked response, error_code_like
--- config
    location = /c {
        sub_filter_types *;
        sub_filter 'a' 'b';
        sub_filter_once off;
        return 200 "aaa\n";
    }
--- request
GET /c
--- error_code_like: ^2\d\d$
--- response_body
bbb



=== TEST 11: user_files land in html/
--- config
    location /files { alias html; }
--- user_files
>>> hello.txt
Hello, file!
>>> sub/dir/x.txt 200001010000.00
nested
--- request
GET /files/sub/dir/x.txt
--- response_body
nested



=== TEST 12: $TEST_NGINX_ expansion and the other config sections
--- main_config
    env TEST_NGINX_GREETING;
--- http_config
    map $uri $greeting { default "$TEST_NGINX_GREETING"; }
--- config
    location = /env { return 200 "$greeting"; }
--- post_main_config
    # after http {}
--- request
GET /env
--- response_body chomp
hello from env



=== TEST 13: must_die: a broken config is the expected outcome
--- config
    location = /t { return a b c; }
--- request
GET /t
--- must_die
--- error_log
invalid number of arguments in "return" directive



=== TEST 14: ignore_response skips all response checks
--- config
    location /missing { root html; }
--- request
GET /missing/marker-14
--- ignore_response
--- error_log
marker-14



=== TEST 15: timeout + abort: a stalled response is not a failure
--- config
    location = /slow {
        limit_rate 1;
        limit_rate_after 1000;
        return 200 "abc$request_body_file$request_body_file$request_body_file....................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................";
    }
--- request
GET /slow
--- timeout: 300ms
--- abort
--- error_code: 200
--- response_body_like: ^abc



=== TEST 16: init runs before nginx starts; wait before log checks
--- init
open my $fh, '>', "$ENV{TEST_NGINX_HTML_DIR}/from-init.txt" or die $!;
print $fh "written by init\n";
close $fh;
--- config
    location /files { alias html; }
    location /missing { root html; }
--- request eval
["GET /files/from-init.txt", "GET /missing/waited"]
--- error_code eval
[200, 404]
--- wait: 0.05
--- error_log
waited



=== TEST 17: comments before the request line, HTTP/1.0, HEAD
--- config
    location = /h { return 200 "$server_protocol $request_method"; }
--- request eval
["# a comment line\nGET /h HTTP/1.0", "HEAD /h"]
--- response_body eval
["HTTP/1.0 GET", ""]



=== TEST 18: log_level section filters what nginx logs
--- log_level: crit
--- config
    location /missing { root html; }
--- request
GET /missing/quiet
--- error_code: 404
--- no_error_log
[error]
