# Abuse limits the nginx way: $chat_user (the verified token's user, set
# in the preaccess phase) keys limit_req and limit_conn per user on the
# API and on WebSocket handshakes, whose 429 and 503 are the API's JSON
# errors; chat_ws_message_rate limits the messages of one WebSocket (an
# error event over the limit, 1008 when it persists), and refuses bad
# values at nginx -t.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::WebSocket;
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes ();

ChatTest::WebSocket::install_ws_script_hook();

no_shuffle();
log_level('info');
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value(http_config => <<'_EOC_') unless defined $block->http_config;
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
limit_req_zone  $chat_user zone=api:1m rate=1r/m;
limit_req_zone  $chat_user zone=ws:1m  rate=1r/m;
limit_conn_zone $chat_user zone=conn:1m;
limit_req_status 429;
_EOC_

    $block->set_value(config => <<'_EOC_') unless defined $block->config;
location /api/chat/ {
    chat_api on;
    limit_req zone=api burst=2 nodelay;
}
location /api/chat/ws/ {
    chat_api on;
    limit_req zone=ws burst=1 nodelay;
}
location = /api/chat/groups {
    chat_api on;
    limit_conn conn 1;
}
location = /whoami { return 200 "[$chat_user]"; }
location = /t { return 200 "ok\n"; }
_EOC_

    $block->set_value(request => "GET /t\n") unless defined $block->request;
});

our $JSON = JSON::PP->new->utf8->canonical;

sub client { ChatTest::Client->new(port => $_[0], user => $_[1]) }

# the checks of an API error: JSON {detail, correlation_id}
sub json_error_ok {
    my ($r, $status, $detail_re, $name) = @_;
    is $r->{status}, $status, "$name: $status";
    like $r->{headers}{'content-type'} // '', qr{^application/json}, "$name: JSON";
    my $j = eval { $JSON->decode($r->{body}) } // {};
    like $j->{detail} // '', $detail_re, "$name: detail";
    is $j->{correlation_id}, $r->{headers}{'x-correlation-id'}, "$name: correlation_id";
}

sub new_group {
    my ($port) = @_;
    my $r = client($port, 'owner')->post('/api/chat/groups', { name => 'limits' });
    die "cannot create a group: $r->{status} $r->{body}\n" unless $r->{status} == 201;
    return $r->{json}{id};
}

sub ws_path {
    my ($group, $user) = @_;
    return "/api/chat/ws/$group?token=" . ChatTest::JWT::token($user);
}

sub next_event {
    my ($ws, $timeout) = @_;
    my $f = $ws->recv_message(timeout => $timeout // 5)
        or return { type => '<nothing>' };
    return { type => "<$f->{type} frame>", code => $f->{code}, reason => $f->{reason} }
        if $f->{type} ne 'text';
    return eval { $JSON->decode($f->{payload}) }
        // { type => '<not JSON>', payload => $f->{payload} };
}

run_tests();

__DATA__

=== TEST 1: $chat_user is the verified token's user, empty without a valid one
--- ws_script
my $get = sub { ChatTest::Client->new(port => $port, %{ $_[0] })->get('/whoami')->{body} };
is $get->({ user => 'alice' }), '[alice]', 'a valid token: its sub';
is $get->({}), '[]', 'no token: empty';
is $get->({ token => 'x.y.z' }), '[]', 'a malformed token: empty';
is $get->({ token => ChatTest::JWT::token('alice', exp => time - 3600) }), '[]', 'an expired token: empty';
is $get->({ token => ChatTest::JWT::token('alice', secret => 'another secret of 32 bytes, or more') }), '[]',
   'a token signed with another secret: empty';
my $r = ChatTest::Client->new(port => $port)->get('/whoami?token=' . ChatTest::JWT::token('alice'));
is $r->{body}, '[]', '?token= counts on the WebSocket route only';



=== TEST 2: limit_req per user on the API: the burst passes, then 429 in JSON; another user and anonymous requests are not counted
--- ws_script
my $g = main::new_group($port);
my $list = "/api/chat/groups/$g/messages";
my $alice = main::client($port, 'alice');
for my $i (1 .. 3) {
    is $alice->get($list)->{status}, 200, "alice's request $i: within rate + burst";
}
my $r = $alice->get($list, headers => { 'X-Correlation-ID' => 'limit-1' });
main::json_error_ok($r, 429, qr/^too many requests$/, 'alice over the limit');
is $r->{headers}{'x-correlation-id'}, 'limit-1', 'the request\'s correlation ID';
main::json_error_ok($alice->post($list, { content => 'x' }), 429, qr/too many/, 'a POST too');

my $bob = main::client($port, 'bob');
is $bob->get($list)->{status}, 200, 'bob meanwhile: 200, a zone entry of his own';

my $anon = ChatTest::Client->new(port => $port);
is $anon->get($list)->{status}, 401, "anonymous request $_: 401, not counted" for 1 .. 5;
--- error_log eval
[qr/limiting requests, excess: [23]\.\d{3} by zone "api"/,
 'too many requests, correlation_id=limit-1']



=== TEST 3: limit_req per user on WebSocket handshakes (token in ?token=): the burst upgrades, then 429 in JSON
--- ws_script
my $g = main::new_group($port);
my @open;
for my $i (1 .. 2) {
    my $ws = ws_connect(port => $port, path => main::ws_path($g, 'carol'), timeout => 5);
    is $ws->status, 101, "carol's handshake $i: 101";
    push @open, $ws;
}
my $ws = ws_connect(port => $port, path => main::ws_path($g, 'carol'), timeout => 5);
is $ws->status, 429, 'the third: 429';
ok !$ws->is_open, 'no upgrade';
my $j = eval { $main::JSON->decode($ws->body) } // {};
is $j->{detail}, 'too many requests', 'JSON detail';
like $j->{correlation_id} // '', qr/^[0-9a-f-]{36}$/, 'JSON correlation_id';

$ws = ws_connect(port => $port, path => main::ws_path($g, 'dave'), timeout => 5);
is $ws->status, 101, 'dave meanwhile: 101';



=== TEST 4: limit_conn per user: a second request while the first is in progress is a 503 in JSON (limit_conn's default status)
--- ws_script
my $tok = ChatTest::JWT::token('erin');
# the first request stays in progress: its body never comes
my $held = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die $!;
print $held "POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\n"
    . "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
Time::HiRes::sleep(0.3);
my $r = main::client($port, 'erin')->get('/api/chat/groups');
main::json_error_ok($r, 503, qr/try again later/, 'erin\'s second request');
is main::client($port, 'frank')->get('/api/chat/groups')->{status}, 200, 'frank meanwhile: 200';
close $held;
Time::HiRes::sleep(0.3);
is main::client($port, 'erin')->get('/api/chat/groups')->{status}, 200, 'erin once the first is gone: 200';
--- error_log
limiting connections by zone "conn"



=== TEST 5: limit_conn counts a WebSocket handshake until its 101 only: once open, the user's slot is free again
--- config
location /api/chat/ { chat_api on; }
location /api/chat/ws/ { chat_api on; limit_conn conn 1; }
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = main::new_group($port);
my @ws = map { ws_connect(port => $port, path => main::ws_path($g, 'kim'), timeout => 5) } 1 .. 3;
is_deeply [ map { $_->status } @ws ], [ 101, 101, 101 ], 'three WebSockets of one user with limit_conn 1';
ok !(grep { !$_->is_open } @ws), 'all open';



=== TEST 6: chat_ws_message_rate: N at once pass, the next are refused with an error event, the (N+1)-th refused in a row closes with 1008
--- config
location /api/chat/ { chat_api on; chat_ws_message_rate 3; }
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = main::new_group($port);
my $ws = ws_connect(port => $port, path => main::ws_path($g, 'gina'), timeout => 5);
is $ws->status, 101, 'upgraded';
$ws->send_text(qq({"type":"message","content":"m$_"})) for 1 .. 7;
my (%n, $close);
while (1) {
    my $e = main::next_event($ws, 5);
    last if $e->{type} eq '<nothing>';
    if ($e->{type} eq '<close frame>') { $close = $e; last }
    $n{$e->{type}}++;
    $n{rate}++ if ($e->{detail} // '') eq 'message rate limit exceeded: at most 3 messages a second';
}
# the acks of the first 3 may not make it before the close: they are
# stored one at a time, and nothing is sent after the close frame
is $n{error}, 3, '3 refused with an error event';
is $n{rate}, 3, '... saying why';
is $close && $close->{code}, 1008, 'the 4th refused in a row: close 1008';
is $close && $close->{reason}, 'message rate limit exceeded', 'with the reason';

my $stored = sub {
    my $l = main::client($port, 'gina')->get("/api/chat/groups/$g/messages");
    return [ sort map { $_->{content} } @{ $l->{json}{messages} // [] } ];
};
my $deadline = Time::HiRes::time() + 5;
Time::HiRes::sleep(0.1) while @{ $stored->() } < 3 && Time::HiRes::time() < $deadline;
Time::HiRes::sleep(0.3);
is_deeply $stored->(), [ 'm1', 'm2', 'm3' ], 'the first 3 (a full bucket) were stored, nothing else';
--- error_log
chat ws: 4 messages in a row over chat_ws_message_rate 3, closing with 1008, user="gina"



=== TEST 7: chat_ws_message_rate: the bucket refills at N a second; an accepted message resets the refusals
--- config
location /api/chat/ { chat_api on; chat_ws_message_rate 2; }
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = main::new_group($port);
my $ws = ws_connect(port => $port, path => main::ws_path($g, 'hal'), timeout => 5);
my $round = sub {
    my ($k) = @_;
    $ws->send_text(qq({"type":"message","content":"r$_"})) for 1 .. $k;
    my %n;
    # each message is answered by an ack or an error (the broadcast of
    # the sender's own messages is skipped)
    while (($n{ack} // 0) + ($n{error} // 0) < $k) {
        my $e = main::next_event($ws, 5);
        last if $e->{type} eq '<nothing>' || $e->{type} =~ /^</;
        $n{$e->{type}}++ if $e->{type} ne 'message';
    }
    return \%n;
};
is_deeply $round->(4), { ack => 2, error => 2 }, 'round 1: 2 acked, 2 refused';
Time::HiRes::sleep(1.1);
is_deeply $round->(4), { ack => 2, error => 2 }, 'a second later, round 2: 2 acked, 2 refused, still open';
Time::HiRes::sleep(0.6);
is_deeply $round->(1), { ack => 1 }, 'half a second later: one token back';
ok $ws->is_open, 'never more than 2 refused in a row: open';



=== TEST 8: chat_ws_message_rate off: no limit
--- config
location /api/chat/ { chat_api on; chat_ws_message_rate off; }
location = /t { return 200 "ok\n"; }
--- ws_script
my $g = main::new_group($port);
my $ws = ws_connect(port => $port, path => main::ws_path($g, 'ivy'), timeout => 5);
$ws->send_text(qq({"type":"message","content":"o$_"})) for 1 .. 8;
my %n;
while (($n{ack} // 0) + ($n{error} // 0) < 8) {
    my $e = main::next_event($ws, 5);
    last if $e->{type} =~ /^</;
    $n{$e->{type}}++ if $e->{type} ne 'message';
}
is_deeply \%n, { ack => 8 }, '8 at once, all acked';



=== TEST 9: chat_ws_message_rate refuses 0
--- config
location /api/chat/ { chat_api on; chat_ws_message_rate 0; }
--- must_die
--- error_log
invalid chat_ws_message_rate "0": expected messages a second from 1 to 10000, or "off"



=== TEST 10: chat_ws_message_rate refuses a non-number and a rate with a unit
--- config
location /api/chat/ { chat_api on; chat_ws_message_rate 10r/s; }
--- must_die
--- error_log
invalid chat_ws_message_rate "10r/s"



=== TEST 11: chat_ws_message_rate refuses more than 10000
--- config
location /api/chat/ { chat_api on; chat_ws_message_rate 10001; }
--- must_die
--- error_log
invalid chat_ws_message_rate "10001"



=== TEST 12: chat_ws_message_rate given twice in one block
--- config
location /api/chat/ { chat_api on; chat_ws_message_rate 5; chat_ws_message_rate 6; }
--- must_die
--- error_log
"chat_ws_message_rate" directive is duplicate
