# The metrics pipeline end to end: every request nginx serves is recorded
# in the log phase, pushed over nng to the sidecar, and shows up in
# /dashboard/api/data with exact counts, errors, slow requests and their
# correlation IDs; WebSocket connects and disconnects too; the sidecar can
# die and come back without nginx noticing, and the drops are counted.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Script;
use ChatTest::Sidecar;
use ChatTest::WebSocket;
use IO::Socket::INET;

no_shuffle();
log_level('info');
no_root_location();
worker_connections(1024);

# An upstream that takes 1.1 s to answer: the "slow request".
my $slow = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                 LocalPort => 0, ReuseAddr => 1) or die $!;
$ENV{TEST_NGINX_SLOW_PORT} = $slow->sockport;
my $slow_pid = fork // die "fork: $!";
if ($slow_pid == 0) {
    while (my $c = $slow->accept) {
        my $req = '';
        while (<$c>) { $req .= $_; last if /^\r?\n$/ }
        select undef, undef, undef, 1.1;
        print $c "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nslow\n";
        close $c;
    }
    exit 0;
}
close $slow;
END { local $?; if ($slow_pid) { kill 'KILL', $slow_pid; waitpid $slow_pid, 0 } }

ChatTest::Sidecar::start(db_refresh => 0.3, wait_db => 1);

add_block_preprocessor(sub {
    my $block = shift;

    # a block may set its own flush interval
    my $own = $block->http_config // '';
    my $flush = $own =~ /chat_metrics_flush_interval/ ? '' : 'chat_metrics_flush_interval 50ms;';
    $block->set_value(http_config => $own . <<'_EOC_' . $flush . "\n" . <<'_EOC2_');
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_metrics on;
chat_metrics_address $TEST_NGINX_IPC;
_EOC_

upstream sidecar { server $TEST_NGINX_SIDECAR; }
upstream slow { server 127.0.0.1:$TEST_NGINX_SLOW_PORT; }
_EOC2_

    $block->set_value(config => <<'_EOC_');
location /api/chat/ { chat_api on; }
location = /static { return 200 "static\n"; }
location = /missing { return 404; }
location = /long {
    chat_metrics_endpoint "long-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    return 200 "long\n";
}
location = /boom { return 500; }
location = /quiet { chat_metrics off; return 200 "quiet\n"; }
location = /slow { proxy_pass http://slow; }

location /dashboard {
    auth_basic "Dashboard";
    auth_basic_user_file $TEST_NGINX_HTPASSWD;
    proxy_pass http://sidecar;
    proxy_pass_request_headers off;
    proxy_set_header X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
}
location = /metrics {
    auth_basic "Dashboard";
    auth_basic_user_file $TEST_NGINX_HTPASSWD;
    proxy_pass http://sidecar;
    proxy_pass_request_headers off;
    proxy_set_header X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
}
location = /sidecar/health {
    proxy_pass http://sidecar/health;
    proxy_pass_request_headers off;
    proxy_set_header X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
}
_EOC_
});

run_tests();

__DATA__

=== TEST 1: the sidecar's health check answers through nginx, with the database reachable
--- request
GET /sidecar/health
--- error_code: 200
--- response_body_like: "status":"ok".*"db_healthy":true



=== TEST 2: the database answers a ping through mongo-c-driver from the sidecar
--- request
GET /static
--- chat_script
my $bin = $ENV{TEST_NGINX_SIDECAR_BIN};
is system($bin, '--ping-db', '--mongo-uri', $ENV{TEST_NGINX_CHAT_URI}, '--log-level', 'error'), 0,
   'ping answered by the test database';
isnt system("$bin --ping-db --mongo-uri 'mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=300' --log-level error 2>/dev/null"), 0,
   'no server: the ping fails';



=== TEST 3: dashboard, its JSON and /metrics need credentials
--- request eval
["GET /dashboard/api/data", "GET /dashboard", "GET /metrics", "GET /dashboard/api/data", "GET /dashboard/api/data"]
--- more_headers eval
["", "", "", "Authorization: Basic YWRtaW46d3Jvbmc=", "Authorization: Basic YWRtaW46czNjcmV0"]
--- error_code eval
[401, 401, 401, 401, 200]
--- response_body_like eval
["401 Authorization Required", "401 Authorization Required", "401 Authorization Required", "401 Authorization Required", '^\{"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"']



=== TEST 4: exact counts, errors, slow requests and endpoint rows after real traffic
--- request
GET /static
--- timeout: 30
--- chat_script
use Time::HiRes qw(sleep);
my $c = client(undef);
# the baseline once every earlier request has reached the sidecar: one
# worker sends in order, so a marker request received means all before it
$c->get('/static', headers => { 'X-Correlation-ID' => "baseline-$$" });
my $d0 = ChatTest::Sidecar::wait_for(sub {
    grep { $_->{correlation_id} eq "baseline-$$" } @{ $_[0]{recent_activity}{recent_requests} } });
ok +(grep { $_->{correlation_id} eq "baseline-$$" } @{ $d0->{recent_activity}{recent_requests} }),
   'the baseline includes every request before it';
my %rows0 = map { $_->{endpoint} => $_ } @{ $d0->{endpoints} };

$c->get('/static') for 1 .. 20;
$c->get('/missing', headers => { 'X-Correlation-ID' => "miss-$_" }) for 1 .. 5;
$c->get('/boom', headers => { 'X-Correlation-ID' => 'boom-1' }) for 1 .. 2;
$c->get('/quiet');                                      # not recorded
my $s = $c->get('/slow', headers => { 'X-Correlation-ID' => 'slow-1' });
is $s->{status}, 200, 'the slow location answered';

my $d = ChatTest::Sidecar::wait_for(sub {
    $_[0]{performance}{total_requests} >= $d0->{performance}{total_requests} + 28 });
my $p = $d->{performance};
is $p->{total_requests} - $d0->{performance}{total_requests}, 28, 'exactly the 28 recorded requests';
is $p->{total_errors} - $d0->{performance}{total_errors}, 7, '5 x 404 + 2 x 500 are errors';
is $p->{requests_dropped}, 0, 'nothing dropped';

my %errors = map { $_->{correlation_id} => $_ } @{ $d->{recent_activity}{recent_errors} };
ok $errors{"miss-$_"}, "404 with correlation_id miss-$_ among the recent errors" for 1 .. 5;
is $errors{'miss-1'}{status_code}, 404, 'its status';
is $errors{'boom-1'}{status_code}, 500, 'a 500 too';

my ($slow) = grep { $_->{correlation_id} eq 'slow-1' } @{ $p->{recent_slow_requests} };
ok $slow, 'the slow request is listed with its correlation id';
cmp_ok $slow->{duration_ms}, '>=', 1000, 'taking over a second' if $slow;
is $slow->{very_slow}, JSON::PP::false, 'not very slow' if $slow;
is $slow->{method}, 'GET', 'method' if $slow;

my %rows = map { $_->{endpoint} => $_ } @{ $d->{endpoints} };
is $rows{'GET /static'}{request_count} - ($rows0{'GET /static'}{request_count} // 0), 20, 'GET /static row';
is $rows{'GET /missing'}{error_count} - ($rows0{'GET /missing'}{error_count} // 0), 5, 'GET /missing errors';
ok !$rows{'GET /quiet'}, 'a location with chat_metrics off is not recorded';



=== TEST 5: API routes report their template, never the ids in the URI
--- request
GET /static
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'metrics' })->{json}{id};
$alice->post("/api/chat/groups/$g/messages", { content => "m$_" }) for 1 .. 3;
$alice->get("/api/chat/groups/$g/messages");
my $d = ChatTest::Sidecar::wait_for(sub {
    my %e = map { $_->{endpoint} => 1 } @{ $_[0]{endpoints} };
    $e{'POST /api/chat/groups/{group_id}/messages'} && $e{'GET /api/chat/groups/{group_id}/messages'} });
my %rows = map { $_->{endpoint} => $_ } @{ $d->{endpoints} };
ok $rows{'POST /api/chat/groups/{group_id}/messages'}, 'POST messages row by template';
ok $rows{'GET /api/chat/groups/{group_id}/messages'}, 'GET messages row by template';
ok !(grep { /$g/ } keys %rows), 'no row carries a group id';



=== TEST 6: WebSocket connects and disconnects reach the dashboard, with message_broadcast events
--- request
GET /static
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'live' })->{json}{id};
my $t = ChatTest::JWT::token('bob');
my @ws = map { ChatTest::WebSocket->connect(port => port(), path => "/api/chat/ws/$g?token=$t") } 1 .. 2;
is $_->status, 101, 'subscribed' for @ws;

my $d = ChatTest::Sidecar::wait_for(sub {
    my ($row) = grep { $_->{group_id} eq $g } @{ $_[0]{websockets}{connections_per_group} };
    $row && $row->{connection_count} == 2 });
my ($row) = grep { $_->{group_id} eq $g } @{ $d->{websockets}{connections_per_group} };
is $row && $row->{connection_count}, 2, 'two connections in the group';
my @ev = grep { $_->{group_id} eq $g } @{ $d->{websockets}{recent_events} };
is scalar(grep { $_->{event_type} eq 'connected' && $_->{user_id} eq 'bob' } @ev), 2, 'two connected events by bob';

$alice->post("/api/chat/groups/$g/messages", { content => 'hello' });
$ws[0]->expect(qr/"content":"hello"/, timeout => 2);
$d = ChatTest::Sidecar::wait_for(sub {
    grep { $_->{event_type} eq 'message_broadcast' } @{ $_[0]{custom_events} // [] } });
my @b = grep { $_->{event_type} eq 'message_broadcast' } @{ $d->{custom_events} };
ok @b, 'a message_broadcast event';

$ws[1]->close(code => 1000);
$ws[1]->recv_close(timeout => 2);
$d = ChatTest::Sidecar::wait_for(sub {
    my ($r) = grep { $_->{group_id} eq $g } @{ $_[0]{websockets}{connections_per_group} };
    $r && $r->{connection_count} == 1 });
($row) = grep { $_->{group_id} eq $g } @{ $d->{websockets}{connections_per_group} };
is $row && $row->{connection_count}, 1, 'one left after a close';
ok scalar(grep { $_->{group_id} eq $g && $_->{event_type} eq 'disconnected' } @{ $d->{websockets}{recent_events} }),
   'a disconnected event';



=== TEST 7: /metrics through nginx is valid Prometheus text
--- request
GET /metrics
--- more_headers
Authorization: Basic YWRtaW46czNjcmV0
--- error_code: 200
--- chat_script
my $r = client(undef)->get('/metrics', headers => { Authorization => 'Basic YWRtaW46czNjcmV0' });
like $r->{body}, qr/^# TYPE \S+ (counter|gauge|histogram)$/m, 'typed metrics';
like $r->{body}, qr/_bucket\{.*le="\+Inf"/, 'a histogram with le buckets';
like $r->{body}, qr/dropped/, 'the dropped-record counter';
SKIP: {
    skip 'promtool not installed', 1 unless -x '/usr/bin/promtool';
    open my $p, '|-', '/usr/bin/promtool check metrics >/dev/null 2>&1' or die $!;
    print $p $r->{body};
    close $p;
    is $?, 0, 'promtool check metrics passes';
}



=== TEST 8: killing the sidecar: nginx keeps serving, drops are counted, counters resume
--- http_config
chat_metrics_batch 1;
chat_metrics_queue 1;
--- request
GET /static
--- timeout: 40
--- chat_script
use Time::HiRes qw(sleep);
my $c = client(undef);

# this nginx (master_process off: the one process is the worker), as the
# sidecar sees it: the newest incarnation of its pid
my $pid = do {
    open my $f, '<', File::Spec->catfile(Test::Nginx::Socket::server_root(), 'logs', 'nginx.pid') or die $!;
    0 + <$f>;
};
sub row {
    my ($d, $start) = @_;
    my @w = sort { $b->{worker_start_us} <=> $a->{worker_start_us} }
            grep { $_->{worker_pid} == $pid && (!defined $start || $_->{worker_start_us} == $start) }
            @{ $d->{pipeline}{workers} };
    return $w[0];
}

# what the old sidecar received of it (the block's first request, the
# harness's own), once the worker has sent all it recorded
my $old = row(ChatTest::Sidecar::wait_for(sub {
    my $r = row($_[0]); $r && $r->{requests_received} == $r->{requests_recorded} }, 15));
ok $old && $old->{requests_received} >= 1, 'the old sidecar has the block\'s first request';
my $before = $old->{requests_recorded} + $old->{requests_dropped};
ChatTest::Sidecar::stop('KILL');
sleep 0.5;                         # nng notices the closed pipe
my $ok = 0;
for (1 .. 30) { $ok++ if $c->get('/static')->{status} == 200 }
is $ok, 30, 'every request served while the sidecar is dead';

ChatTest::Sidecar::start();

# workers reconnect on their own (nng retries within a second): keep
# serving until the new sidecar sees records again
my ($after, $d) = (0);
for (1 .. 100) {
    $c->get('/static');
    $after++;
    $d = ChatTest::Sidecar::wait_for(sub { $_[0]{performance}{total_requests} > 0 }, 0.1);
    last if $d->{performance}{total_requests} > 0;
}
cmp_ok $d->{performance}{total_requests}, '>', 0, 'recording resumed after the restart';

# every request the test made is accounted for, each in exactly one place:
# received by the old sidecar, counted as dropped by the worker, or
# received by the new one (none is lost in a closed pipe)
my $served = $before + 30 + $after;
$d = ChatTest::Sidecar::wait_for(sub {
    my $r = row($_[0], $old->{worker_start_us});
    $r && $r->{requests_recorded} + $r->{requests_dropped} >= $served
       && $_[0]{performance}{total_requests} >= $r->{requests_recorded} - 1 }, 8);
my $new = row($d, $old->{worker_start_us});
is $new->{requests_recorded} + $new->{requests_dropped}, $served,
   "the worker accounts for the $served requests the test made";
cmp_ok $new->{requests_dropped}, '>=', 25, "most of the 30 served without a sidecar are dropped: $new->{requests_dropped} (with the reconnect's; nng held a few)";
cmp_ok $new->{requests_dropped}, '<=', 30 + $after - 1, 'but not the one that reached the new sidecar';
is $old->{requests_received} + $new->{requests_dropped} + $new->{requests_received}, $served,
   "old sidecar ($old->{requests_received}) + dropped ($new->{requests_dropped}) + new sidecar ($new->{requests_received}) = $served";
is $d->{performance}{total_requests}, $new->{requests_received}, 'the dashboard total is what the new sidecar received';

# and from here on, each request served is received or dropped (a burst
# overflows chat_metrics_queue 1), none lost
$c->get('/static') for 1 .. 10;
my $d2 = ChatTest::Sidecar::wait_for(sub {
    my $r = row($_[0], $old->{worker_start_us});
    $r->{requests_received} + $r->{requests_dropped} >= $new->{requests_received} + $new->{requests_dropped} + 10 }, 15);
my $new2 = row($d2, $old->{worker_start_us});
is +($new2->{requests_received} - $new->{requests_received}) + ($new2->{requests_dropped} - $new->{requests_dropped}), 10,
   '10 more requests: received + dropped grew by 10';
--- error_log
chat metrics: sidecar not accepting records



=== TEST 9: after a sidecar restart the WebSocket view reconverges from the workers' snapshots, more than one batch of groups included
--- request
GET /static
--- timeout: 60
--- chat_script
use Time::HiRes qw(sleep);
my $alice = client('alice');
my $t = ChatTest::JWT::token('carol');
my (@ws, %mine);
for my $i (1 .. 130) {                   # one snapshot batch holds 128
    my $g = $alice->post('/api/chat/groups', { name => "snap $i" })->{json}{id};
    $mine{$g} = 1;
    push @ws, ChatTest::WebSocket->connect(port => port(), path => "/api/chat/ws/$g?token=$t");
}
is scalar(grep { $_->status == 101 } @ws), 130, '130 subscribers in 130 groups';

ChatTest::Sidecar::stop('KILL');
ChatTest::Sidecar::start();

# nothing is replayed: only the 5 s snapshots can tell the new sidecar
my $d = ChatTest::Sidecar::wait_for(sub {
    scalar(grep { $mine{ $_->{group_id} } } @{ $_[0]{websockets}{connections_per_group} }) == 130 }, 15);
my @rows = grep { $mine{ $_->{group_id} } } @{ $d->{websockets}{connections_per_group} };
is scalar @rows, 130, 'all 130 groups known again';
is scalar(grep { $_->{connection_count} == 1 } @rows), 130, 'one connection each';
$_->disconnect for @ws;



=== TEST 10: chat_metrics_endpoint set at http level is inherited by the locations below
--- http_config
chat_metrics_endpoint "inherited-$request_method";
--- request
GET /static
--- chat_script
client(undef)->get('/static') for 1 .. 3;
my $d = ChatTest::Sidecar::wait_for(sub {
    grep { $_->{endpoint} eq 'GET inherited-GET' && $_->{request_count} >= 4 } @{ $_[0]{endpoints} } });
my ($row) = grep { $_->{endpoint} eq 'GET inherited-GET' } @{ $d->{endpoints} };
ok $row, 'the location reports the inherited name';
cmp_ok $row && $row->{request_count}, '>=', 4, 'for each request';



=== TEST 11: credentials in MONGO_URI reach mongo-c-driver intact: user, percent-encoded password and authSource, from --ping-db and from the running sidecar
--- request
GET /static
--- timeout: 30
--- chat_script
use ChatTest::FakeMongo;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(sleep time);
my $bin = $ENV{TEST_NGINX_SIDECAR_BIN};
my $fake = ChatTest::FakeMongo->start;
my $at = "127.0.0.1:$fake->{port}";

# SCRAM (the default): the server is asked for that user in that database
my $out = `$bin --ping-db --mongo-uri 'mongodb://chat-user:p%40ss\@$at/chat?authSource=admin' 2>&1`;
isnt $?, 0, 'a refused login fails the ping';
like $out, qr/Authentication failed/, 'with the server\'s answer: ' . ($out =~ s/\s+$//r);
my $got = $fake->received;
like $got, qr/saslSupportedMechs\x00.{4}admin\.chat-user\x00/s, 'the user, in the authSource database';
like $got, qr/n,,n=chat-user,r=/, 'the SCRAM exchange starts for that user';

# PLAIN sends the password itself: percent-decoded, byte for byte
my $pw = "p\@ss:w/rd %";
my $payload = encode_base64("\0chat-user\0$pw", '');
$out = `$bin --ping-db --mongo-uri 'mongodb://chat-user:p%40ss%3Aw%2Frd%20%25\@$at/chat?authMechanism=PLAIN&authSource=%24external' 2>&1`;
like $out, qr/Authentication failed/, 'PLAIN: refused by the server';
like $fake->received, qr/\Q$payload\E/, 'PLAIN: the password the server got is the decoded one';

# the daemon passes the same URI to its database thread
my $ipc = "ipc://" . File::Spec->tmpdir . "/chat-cred-$$.ipc";
my $pid = fork // die;
if (!$pid) {
    open STDOUT, '>', '/dev/null'; open STDERR, '>&', \*STDOUT;
    exec $bin, '--listen', '127.0.0.1:0', '--ingest', $ipc,
         '--http-key-file', $ENV{TEST_NGINX_SIDECAR_KEY_FILE}, '--db-refresh', '0.2',
         '--mongo-uri', "mongodb://daemon-user:s%40cret\@$at/chat?authMechanism=PLAIN&authSource=%24external"
        or POSIX::_exit(127);
}
my $want = encode_base64("\0daemon-user\0s\@cret", '');
my $seen;
for (my $end = time + 10; time < $end && !$seen; sleep 0.05) {
    $seen = $fake->received =~ /\Q$want\E/;
}
kill 'TERM', $pid;
waitpid $pid, 0;
ok $seen, 'the running sidecar logs in as that user with that password';
$fake->stop;



=== TEST 12: WebSocket groups are named from the groups collection, before any message: connections_per_group and recent_events carry group_name
--- request
GET /static
--- timeout: 20
--- chat_script
my $alice = client('alice');
my $name = "Lobby \x{e9}t\x{e9} $$";
my $g = $alice->post('/api/chat/groups', { name => $name })->{json}{id};
my $t = ChatTest::JWT::token('dora');
my $ws = ChatTest::WebSocket->connect(port => port(), path => "/api/chat/ws/$g?token=$t");
is $ws->status, 101, 'subscribed to a group without messages';
my $d = ChatTest::Sidecar::wait_for(sub {
    my ($r) = grep { $_->{group_id} eq $g } @{ $_[0]{websockets}{connections_per_group} };
    $r && defined $r->{group_name} }, 10);
my ($row) = grep { $_->{group_id} eq $g } @{ $d->{websockets}{connections_per_group} };
is $row && $row->{group_name}, $name, 'its row has the name';
ok !(grep { $_->{group_id} eq $g } @{ $d->{database}{top_active_groups} }),
   'while the group is not among the top groups (no message)';
my ($ev) = grep { $_->{group_id} eq $g && $_->{event_type} eq 'connected' } @{ $d->{websockets}{recent_events} };
is $ev && $ev->{group_name}, $name, 'the connected event has it too';
$ws->close(code => 1000);
$ws->recv_close(timeout => 2);



=== TEST 13: records of the largest request size (endpoint and correlation ID at their limits) fill a batch's message early: it is sent and a new one started, nothing lost
--- request
GET /static
--- timeout: 30
--- chat_script
my $c = client(undef);
$c->get('/static', headers => { 'X-Correlation-ID' => "base13-$$" });
my $d0 = ChatTest::Sidecar::wait_for(sub {
    grep { $_->{correlation_id} eq "base13-$$" } @{ $_[0]{recent_activity}{recent_requests} } });
ok $d0, 'baseline';
# 240-byte records: a worker's first message is sized for 128 records of
# 96 bytes, so about 51 of these, and each that fills makes the next twice
# as large (51, 102, 204 of these).  Pipelined on one connection, nginx
# serves the 300 in one go, well within the 50 ms flush interval: only
# sending a full message early (and starting a new one) keeps them all
my $n = 300;
my $b0 = $d0->{pipeline}{batches_applied};
my $served = pipelined_get('/long', $n, sub {
    my $id = sprintf('%-64s', "long-$$-$_[0]"); $id =~ tr/ /x/;
    "X-Correlation-ID: $id";
});
is $served, $n, "$n pipelined requests served";
my $last = sprintf('%-64s', "long-$$-$n"); $last =~ tr/ /x/;
my $d = ChatTest::Sidecar::wait_for(sub {
    $_[0]{performance}{total_requests} >= $d0->{performance}{total_requests} + $n });
is $d->{performance}{total_requests} - $d0->{performance}{total_requests}, $n, "exactly the $n requests";
is $d->{performance}{requests_dropped}, 0, 'nothing dropped';
cmp_ok $d->{pipeline}{batches_applied} - $b0, '>=', 3, 'in three batches or more';
my $name = 'GET long-' . ('a' x (128 - 9));
my ($row) = grep { $_->{endpoint} eq $name } @{ $d->{endpoints} };
ok $row, 'the endpoint name cut at the wire limit (128 bytes, method included)';
ok +(grep { $_->{correlation_id} eq $last } @{ $d->{recent_activity}{recent_requests} }),
   'the last request with its 64-character ID';



=== TEST 14: under load a worker's batches grow to chat_metrics_batch (1024): each full one makes the next twice as large, and the sidecar takes them whole
--- http_config
chat_metrics_flush_interval 3s;
keepalive_requests 10000;
--- request
GET /static
--- timeout: 40
--- chat_script
my $c = client(undef);
$c->get('/static', headers => { 'X-Correlation-ID' => "base14-$$" });
my $d0 = ChatTest::Sidecar::wait_for(sub {
    grep { $_->{correlation_id} eq "base14-$$" } @{ $_[0]{recent_activity}{recent_requests} } }, 15);
ok $d0, 'baseline (sent by the timer: the next message is sized for 128)';
cmp_ok $d0->{pipeline}{largest_batch_records}, '<', 1024, 'no batch of 1024 records so far';
# 5,000 pipelined requests on one connection, one worker: batches of
# ~128, ~256, ~512, then 1,024 records (a snapshot, every 5 s, sends a
# partial batch and the growth starts again from what it held)
my $n = 5000;
my $served = pipelined_get('/static', $n, sub { "X-Correlation-ID: grow-$$-$_[0]" });
is $served, $n, "$n pipelined requests served";
my $d = ChatTest::Sidecar::wait_for(sub {
    $_[0]{performance}{total_requests} >= $d0->{performance}{total_requests} + $n }, 15);
is $d->{performance}{total_requests} - $d0->{performance}{total_requests}, $n, "exactly the $n requests";
is $d->{performance}{requests_dropped}, 0, 'nothing dropped';
is $d->{pipeline}{malformed_batches_rejected}, 0, 'no batch rejected';
is $d->{pipeline}{largest_batch_records}, 1024, 'a batch of 1,024 records, taken whole';
