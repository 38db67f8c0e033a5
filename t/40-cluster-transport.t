# Two nginx hosts on a NATS cluster (issue 14): a 3-node nats-server
# cluster on 127.0.0.1, the Test::Nginx nginx as host 1 and a second
# nginx (ChatTest::Cluster::start_host, its own prefix and port, the same
# module and database) as host 2.  A message POSTed on one host reaches
# WebSocket subscribers on both, in seq order, once; chat_cluster's
# arguments fail nginx -t with clear messages; an unreachable cluster or
# a wrong credential at start is one error line, and the host still
# delivers locally.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Peer;
use ChatTest::WebSocket;
use ChatTest::Cluster qw(:all);
use Time::HiRes ();
use File::Temp ();
use IO::Socket::INET;

ChatTest::WebSocket::install_ws_script_hook();

my $have_nats = !system('sh', '-c', 'command -v nats-server >/dev/null');

our @Nats;
if ($have_nats) {
    @Nats = start_nats_cluster(3);
    # host 1 knows the first node, host 2 the last: routes carry events
    $ENV{TEST_NGINX_NATS_URL_1} = $Nats[0]{url};
    $ENV{TEST_NGINX_NATS_URLS} = join ' ', map { $_->{url} } @Nats;
} else {
    $ENV{TEST_NGINX_NATS_URL_1} = 'nats://127.0.0.1:1';
    $ENV{TEST_NGINX_NATS_URLS} = 'nats://127.0.0.1:1';
}

master_on();
workers(2);
worker_connections(1024);
no_shuffle();
log_level('info');
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    return if defined $block->http_config;

    $block->set_value(http_config => <<'_EOC_');
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_db_timeout 3s;
chat_host_name host-1;
chat_cluster $TEST_NGINX_NATS_URL_1;
_EOC_

    $block->set_value(config => <<'_EOC_') unless defined $block->config;
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
_EOC_

    $block->set_value(request => "GET /t\n") unless defined $block->request;
    $block->set_value(timeout => 60) unless defined $block->timeout;
});

sub http_on {
    my ($port, $user) = @_;
    ChatTest::Client->new(port => $port, user => $user // 'owner');
}

sub new_group {
    my $r = http_on(server_port())->post('/api/chat/groups',
                                         { name => $_[0] // 'cluster' });
    die "cannot create a group: $r->{status} $r->{body}\n"
        unless $r->{status} == 201;
    return $r->{json}{id};
}

sub subscribe {
    my ($port, $user, $group) = @_;
    my $ws = ws_connect(port => $port, name => $user, timeout => 5,
                        path => "/api/chat/ws/$group?token="
                                . ChatTest::JWT::token($user));
    die "$user could not join on port $port: " . ($ws->error // '?') . "\n"
        unless $ws->is_open;
    return ChatTest::Peer->new(ws => $ws, user => $user);
}

# every worker of both hosts that has a subscriber in the group has its
# subscription known to every node (its own, or routed)
sub cluster_interest {
    my ($group, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 10);
    until (nats_subscribed(\@Nats, "chat.g.$group")) {
        return 0 if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    return 1;
}

# the message events a peer got, up to the one whose content is $last
sub messages_until {
    my ($peer, $last, $timeout) = @_;
    $peer->heard($last, $timeout // 10) or return ();
    return grep { $_->{type} eq 'message' } @{ $peer->{events} };
}

run_tests();

__DATA__

=== TEST 1: a message POSTed on host 1 reaches WebSocket subscribers on host 1 and host 2, in seq order, once each; and back from host 2
--- ws_script
SKIP: {
skip 'nats-server is not installed', 1 unless @main::Nats;
my $h2 = start_host(name => 'host-2', workers => 2,
                    cluster => [ reverse map { $_->{url} } @main::Nats ]);
wait_host_log($h2, qr/chat cluster: connected to nats:\/\/127\.0\.0\.1:\d+ as host "host-2"/, 10)
    or die "host 2 never linked to the cluster:\n" . host_log($h2);

my $g = new_group('across');
my $local = subscribe(server_port(), 'alice', $g);
my $remote = subscribe($h2->{port}, 'bob', $g);
my $remote2 = subscribe($h2->{port}, 'carol', $g);
ok cluster_interest($g), "every NATS node knows of the group's subject";

my @sent = map { "m$_" } 1 .. 30;
my @seq;
for my $c (@sent) {
    my $r = http_on(server_port(), 'erin')->post("/api/chat/groups/$g/messages",
                                                 { content => $c });
    die "POST on host 1: $r->{status} $r->{body}\n" unless $r->{status} == 201;
    push @seq, $r->{json}{seq};
}

for my $p ($local, $remote, $remote2) {
    my @m = messages_until($p, 'm30');
    is_deeply [ map { $_->{message}{content} } @m ], \@sent,
        $p->user . ': the 30 messages, in order, no duplicate';
    is_deeply [ map { $_->{seq} } @m ], \@seq, $p->user . ': their seqs, in order';
}

# and from host 2 to host 1
my $r = http_on($h2->{port}, 'frank')->post("/api/chat/groups/$g/messages",
                                            { content => 'from host 2' });
is $r->{status}, 201, 'a POST on host 2';
for my $p ($local, $remote, $remote2) {
    my $e = $p->heard('from host 2', 10);
    is $e && $e->{seq}, $r->{json}{seq}, $p->user . ': gets the message POSTed on host 2';
}
$_->drain for $local, $remote, $remote2;
for my $p ($local, $remote, $remote2) {
    my @c = $p->contents;
    is scalar(@c), 31, $p->user . ': 31 messages in all, none twice';
}

unlike host_log($h2), qr/\[(?:alert|crit|emerg)\]/, 'host 2: no alert in its log';
stop_pid($h2->{pid}, 'QUIT');
}
--- no_error_log
[alert]
[crit]
not published



=== TEST 2: the hosts' own events are not delivered twice: with 2 workers on each host and subscribers on every worker, a burst of 50 POSTs arrives once, in order, everywhere
--- ws_script
SKIP: {
skip 'nats-server is not installed', 1 unless @main::Nats;
my $h2 = start_host(name => 'host-2b', workers => 2,
                    cluster => [ $main::Nats[2]{url} ]);
wait_host_log($h2, qr/chat cluster: connected to/, 10)
    or die "host 2 never linked:\n" . host_log($h2);

my $g = new_group('burst');
my @peers = ((map { subscribe(server_port(), "h1u$_", $g) } 1 .. 4),
             (map { subscribe($h2->{port}, "h2u$_", $g) } 1 .. 4));
ok cluster_interest($g), 'the subject is known cluster-wide';

my @sent = map { "b$_" } 1 .. 50;
for my $i (0 .. $#sent) {
    my $port = $i % 2 ? $h2->{port} : server_port();
    my $r = http_on($port, 'poster')->post("/api/chat/groups/$g/messages",
                                           { content => $sent[$i] });
    die "POST: $r->{status}\n" unless $r->{status} == 201;
}

for my $p (@peers) {
    my @m = messages_until($p, 'b50');
    $p->drain;
    my @c = $p->contents;
    is_deeply \@c, \@sent, $p->user . ': 50 messages, in POST order, once each';
    my @s = map { $_->{seq} } grep { $_->{type} eq 'message' } @{ $p->{events} };
    is_deeply \@s, [ sort { $a <=> $b } @s ], $p->user . ': seqs increasing';
}
stop_pid($h2->{pid}, 'QUIT');
}
--- no_error_log
[alert]
[crit]



=== TEST 3: an unreachable cluster at start: one clear error line, and the host still serves and delivers locally
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_host_name lonely;
chat_cluster nats://127.0.0.1:1 nats://127.0.0.1:2;
--- config
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- ws_script
my $g = new_group('alone');
my $a = subscribe(server_port(), 'alice', $g);
my $r = http_on(server_port(), 'bob')->post("/api/chat/groups/$g/messages",
                                            { content => 'still here' });
is $r->{status}, 201, 'a POST is stored';
ok $a->heard('still here', 5), 'and delivered to the local subscriber';
--- error_log eval
qr/\[error\] .*chat cluster: cannot connect to the cluster \(nats:\/\/127\.0\.0\.1:1 and others\): .*; serving this host only, retrying every 500 ms/
--- no_error_log
[alert]
[crit]



=== TEST 4: a wrong credential at start: an error line that says so, and the host delivers locally
--- ws_script
SKIP: {
skip 'nats-server is not installed', 1 unless @main::Nats;
my $auth = start_nats(args => [ '--user', 'chat', '--pass', 'right' ]);
my $dir = File::Temp::tempdir(CLEANUP => 1);
open my $fh, '>', "$dir/password" or die; print $fh "wrong\n"; close $fh;
my $h = start_host(name => 'host-bad', workers => 1,
                   cluster => "$auth->{url} user=chat password_file=$dir/password");
my ($line) = wait_host_log($h, qr/(\[error\] .*chat cluster: cannot connect to the cluster.*)/, 10);
like $line, qr/[Aa]uthorization/, 'the error line names the authorization failure';

my $g = new_group('badcred');
my $p = subscribe($h->{port}, 'alice', $g);
my $r = http_on($h->{port}, 'bob')->post("/api/chat/groups/$g/messages",
                                         { content => 'local only' });
is $r->{status}, 201, 'a POST on that host is stored';
ok $p->heard('local only', 5), 'and delivered to its local subscriber';
unlike host_log($h), qr/\[(?:alert|crit|emerg)\]/, 'no alert';
stop_pid($h->{pid}, 'QUIT');
stop_pid($auth->{pid});
}



=== TEST 5: the hand-off from nats.c's threads is bounded: a burst of 30,000 events from the cluster overflows its 4,096, a malformed message is dropped; both counted and said, and the host still delivers
--- ws_script
SKIP: {
skip 'nats-server is not installed', 1 unless @main::Nats;
my $h2 = start_host(name => 'host-2c', workers => 1,
                    cluster => [ $main::Nats[1]{url} ]);
wait_host_log($h2, qr/chat cluster: connected to/, 10)
    or die "host 2 never linked:\n" . host_log($h2);

my $g = new_group('flood');
my $p = subscribe($h2->{port}, 'alice', $g);
ok cluster_interest($g), 'the subject is known cluster-wide';

# a raw NATS client on another node: a malformed message, then 30,000
# events without a seq (the registry sends them on at once) from an
# instance that is no nginx's
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $main::Nats[0]{client_port})
    or die "nats: $!";
<$s>;                                           # INFO
print $s qq{CONNECT {"verbose":false,"pedantic":false}\r\n};
print $s "PUB chat.g.$g 7\r\ngarbage\r\n";
my $event = 'CHC1' . pack('Q<', 42) . pack('q<', 0) . $g . '{"type":"noise"}';
my $pub = "PUB chat.g.$g " . length($event) . "\r\n$event\r\n";
print $s $pub x 1000 for 1 .. 30;
print $s "PING\r\n";
my $pong = <$s>;
like $pong, qr/^PONG/, 'the server took the burst';

ok wait_host_log($h2, qr/chat cluster: 1 malformed message\(s\) from the cluster dropped/, 10),
    'the malformed message is dropped and said';
ok wait_host_log($h2, qr/chat cluster: \d+ event\(s\) from the cluster dropped: the hand-off queue was full \(4096\)/, 10),
    'the queue\'s limit is reached: dropped and said';
close $s;

# the link still carries events (another group: the flooded subscriber
# may have been closed as a slow consumer)
my $g2 = new_group('after');
my $q = subscribe($h2->{port}, 'bob', $g2);
ok cluster_interest($g2), 'a new subscription reaches the cluster';
my $r = http_on(server_port(), 'bob')->post("/api/chat/groups/$g2/messages",
                                            { content => 'after the flood' });
is $r->{status}, 201, 'a POST on host 1';
ok $q->heard('after the flood', 10), 'host 2 still delivers events of host 1';
unlike host_log($h2), qr/\[(?:alert|crit|emerg)\]/, 'no alert';
stop_pid($h2->{pid}, 'QUIT');
}



=== TEST 6: chat_cluster wants nats:// or tls:// URLs
--- http_config
chat_cluster http://127.0.0.1:4222;
--- config
--- must_die
--- error_log
invalid chat_cluster URL "http://127.0.0.1:4222": expected "nats://host:port" or "tls://host:port"



=== TEST 7: chat_cluster: a port out of range
--- http_config
chat_cluster nats://127.0.0.1:70000;
--- config
--- must_die
--- error_log
invalid chat_cluster URL "nats://127.0.0.1:70000": expected a host and a port from 1 to 65535



=== TEST 8: chat_cluster: password_file= needs user=
--- http_config
chat_cluster nats://127.0.0.1:4222 password_file=/etc/hostname;
--- config
--- must_die
--- error_log
chat_cluster: "password_file=/etc/hostname" needs "user="



=== TEST 9: chat_cluster: user= needs password_file=
--- http_config
chat_cluster nats://127.0.0.1:4222 user=chat;
--- config
--- must_die
--- error_log
chat_cluster: "user=" needs "password_file="



=== TEST 10: chat_cluster: a token file that cannot be read
--- http_config
chat_cluster nats://127.0.0.1:4222 token_file=/nonexistent/token;
--- config
--- must_die
--- error_log
chat_cluster: token_file "/nonexistent/token" cannot be opened



=== TEST 11: chat_cluster: no server URL
--- http_config
chat_cluster user=chat;
--- config
--- must_die
--- error_log
chat_cluster needs at least one server URL



=== TEST 12: chat_cluster: credentials in the URL are refused
--- http_config
chat_cluster nats://chat:secret@127.0.0.1:4222;
--- config
--- must_die
--- error_log
no credentials or path in the URL



=== TEST 13: chat_cluster: a CA file that is not PEM
--- http_config
chat_cluster tls://127.0.0.1:4222 ca=/etc/hostname;
--- config
--- must_die
--- error_log
chat_cluster: "/etc/hostname" holds no PEM certificate



=== TEST 14: chat_cluster is set once
--- http_config
chat_cluster nats://127.0.0.1:4222;
chat_cluster nats://127.0.0.1:4223;
--- config
--- must_die
--- error_log
"chat_cluster" directive is duplicate



=== TEST 15: chat_host_name: letters, digits, ".", "-", "_"
--- http_config
chat_host_name "a host";
--- config
--- must_die
--- error_log
invalid chat_host_name "a host"
