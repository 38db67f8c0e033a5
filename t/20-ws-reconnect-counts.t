# One client that reconnects again and again to a group, landing on one
# worker or the other (2 workers, a reuseport listener): the dashboard's
# count for the group never shows more connections than the client has.
# Each worker sends its events in its own batches (every 50 ms here), so
# the sidecar may receive the connect on the new worker before the
# disconnect on the old one: it must combine them in the order they
# happened, not in the order they arrived (issue 11: "connected -> 2").
use IO::Socket::INET;
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Script;
use ChatTest::Sidecar;
use ChatTest::WebSocket;

no_shuffle();
log_level('info');
no_root_location();
master_on();
workers(2);

# the events are held --ws-reorder-ms before they are applied in order: a
# wider window than the default 250 ms, so that a batch the loaded machine
# delays does not arrive after it (the old code, with no window, fails)
ChatTest::Sidecar::start(db_refresh => 1, args => { 'ws-reorder-ms' => 1000 });

run_tests();

__DATA__

=== TEST 1: 40 reconnects of one client over two workers: every event's connection_count is 0 or 1, the group's count is 1 after each
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_metrics on;
chat_metrics_address $TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;
--- config
listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 reuseport;
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- timeout: 120
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'reconnects' })->{json}{id};
my $t = ChatTest::JWT::token('erin');
my $path = "/api/chat/ws/$g?token=$t";
my $port = $ENV{TEST_NGINX_RAND_PORT_1};

my $d0 = ChatTest::Sidecar::wait_for(sub { $_[0]{websockets}{live_workers} >= 2 }, 10);
my ($c0, $x0) = map { $d0->{websockets}{$_} } qw(total_connects total_disconnects);

# background requests on both workers keep their batches open, so that
# which of two workers flushes first is a coin toss, as under real load
my $bg = fork // die "fork: $!";
if ($bg == 0) {
    while (1) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => port());
        if ($s) {
            print $s "GET /t HTTP/1.0\r\n\r\n";
            local $/;
            my $x = <$s>;
            close $s;
        }
        select undef, undef, undef, 0.005;
    }
}

my (%bad, %pids, $switches, $last_pid);
my $ws = ChatTest::WebSocket->connect(port => $port, path => $path);
for my $i (1 .. 40) {
    die "handshake $i: " . $ws->status unless $ws->status == 101;

    # the sidecar has this connect and every disconnect before it
    my $d = ChatTest::Sidecar::wait_for(sub {
        $_[0]{websockets}{total_connects} >= $c0 + $i
            && $_[0]{websockets}{total_disconnects} >= $x0 + $i - 1 }, 10);
    my @ev = grep { $_->{group_id} eq $g } @{ $d->{websockets}{recent_events} };
    for my $e (@ev) {
        $bad{"$e->{timestamp} $e->{event_type} -> $e->{connection_count}"} = 1
            if $e->{connection_count} > 1;
    }
    my ($row) = grep { $_->{group_id} eq $g } @{ $d->{websockets}{connections_per_group} };
    $bad{"after connect $i: the group shows " . ($row ? $row->{connection_count} : 0)} = 1
        unless $row && $row->{connection_count} == 1;
    my ($w) = grep { $_->{live} && $_->{ws_connections} } @{ $d->{pipeline}{workers} };
    if ($w) {
        $pids{ $w->{worker_pid} }++;
        $switches++ if defined $last_pid && $last_pid != $w->{worker_pid};
        $last_pid = $w->{worker_pid};
    }

    # the client leaves (the server's close reply: the old worker has
    # recorded its disconnect) and comes back at once
    $ws->close(code => 1000);
    $ws->recv_close(timeout => 5);
    $ws->disconnect;
    $ws = ChatTest::WebSocket->connect(port => $port, path => $path);
}
$ws->close(code => 1000);
$ws->recv_close(timeout => 5);
kill 'KILL', $bg;
waitpid $bg, 0;

cmp_ok scalar(keys %pids), '==', 2, 'the client landed on both workers: '
    . join(', ', map { "$_ x$pids{$_}" } sort keys %pids);
cmp_ok $switches // 0, '>=', 5, "and switched workers " . ($switches // 0) . " times";
is_deeply [sort keys %bad], [], 'never more than the one connection';
