# The cluster's failures (issue 14, part 3), on the topology of
# `make run-cluster`: a 3-node NATS cluster, one database, two nginx hosts
# with 2 workers each (host1: Test::Nginx's nginx; host2: one of
# ChatTest::ClusterFaults).  Posts go to one host only and are watched on
# the other, so that an event can reach it only through NATS (a gap is
# filled from the database only once a later event arrives).
#
#   1. a NATS node SIGKILLed: the workers reconnect to the others and
#      cross-host delivery resumes (the time it took: diag);
#   2. every node down: each host delivers locally; once the nodes are
#      back on their ports, cross-host delivery resumes and a subscriber
#      that stayed connected gets what the other host stored meanwhile,
#      from the database, in seq order, none twice;
#   3. a host SIGKILLed: its clients reconnect to the other with
#      since=<last seq> and miss nothing;
#   4. a wrong password, 5. no NATS server at the URL: a clear error line,
#      the host serves its own subscribers;
#   6. one host's link cut while the other's stays up: what it could not
#      publish meanwhile reaches the other host once it is linked again
#      (it asks the others to read what they missed).
#
# Bounds are generous (the machine is shared): correctness is asserted,
# times are reported; the failover time is a benchmark figure
# (make bench BENCH=cluster).
# a module built without the NATS transport: nothing to test
BEGIN {
    require ChatTest::ClusterFaults;
    unless (ChatTest::ClusterFaults::module_has('chat_cluster')) {
        require Test::More;
        Test::More::plan(skip_all => 'the module has no chat_cluster (built'
                                     . ' without the NATS transport)');
    }
}
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Peer;
use ChatTest::Sidecar;
use ChatTest::WebSocket;
use ChatTest::Workers;
use ChatTest::Util qw(free_port);
use ChatTest::ClusterFaults qw(nats_cluster nginx_host module_has);
use File::Temp qw(tempdir);
use Time::HiRes ();

ChatTest::WebSocket::install_ws_script_hook();
# host1's sidecar: its dashboard shows the link (tests 4 and 5)
ChatTest::Sidecar::start(db_refresh => 1);

# the cluster, the NATS server with a password, a port no one listens on,
# a wrong password: known before host1 starts
our $Nats = nats_cluster(3);
our $Auth = nats_cluster(1, user => 'chat', pass => 'right-password');
our $Split = nats_cluster(2, no_advertise => 1);
my $secrets = tempdir('chat-t42-XXXXXX', TMPDIR => 1, CLEANUP => 1);
{
    open my $f, '>', "$secrets/wrong" or die "$secrets/wrong: $!";
    print $f "wrong-password\n";
    close $f;
}
$ENV{TEST_NGINX_NATS_URLS} = join ' ', $Nats->urls;
$ENV{TEST_NGINX_NATS_AUTH_URL} = $Auth->url(1);
$ENV{TEST_NGINX_NATS_WRONG_FILE} = "$secrets/wrong";
$ENV{TEST_NGINX_NATS_DEAD_URL} = 'nats://127.0.0.1:' . free_port();
$ENV{TEST_NGINX_NATS_SPLIT_URL} = $Split->url(1);

master_on();
workers(2);
worker_connections(1024);
no_shuffle();
log_level('info');
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;
    my $cluster = $block->cluster // '$TEST_NGINX_NATS_URLS';

    $block->set_value(http_config => <<"_EOC_");
chat_mongo_uri "\$TEST_NGINX_CHAT_URI";
chat_jwt_secret \$TEST_NGINX_JWT_SECRET;
chat_db_timeout 5s;
chat_host_name host1;
chat_cluster $cluster;
chat_metrics on;
chat_metrics_address \$TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;
_EOC_

    $block->set_value(config => <<'_EOC_');
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
_EOC_

    $block->set_value(request => "GET /t\n");
    $block->set_value(timeout => 180);
});

# --- helpers ------------------------------------------------------------------

sub host2 { nginx_host(name => 'host2', cluster => $ENV{TEST_NGINX_NATS_URLS}) }

sub port1 { server_port() }

# a WebSocket of $user in $group on the host at $port (since: optional)
sub subscriber {
    my ($port, $user, $group, $since) = @_;
    my $path = "/api/chat/ws/$group?token=" . ChatTest::JWT::token($user)
               . (defined $since ? "&since=$since" : '');
    my $ws = ChatTest::WebSocket::ws_connect(port => $port, path => $path,
                                             name => $user, timeout => 5);
    die "$user: no WebSocket on $port: " . ($ws->error // $ws->status) . "\n"
        unless $ws->is_open;
    return ChatTest::Peer->new(ws => $ws, user => $user);
}

sub post {      # post(PORT, GROUP, CONTENT) -> its seq
    my ($port, $group, $content) = @_;
    my $r = ChatTest::Client->new(port => $port, user => 'poster')
        ->post("/api/chat/groups/$group/messages", { content => $content });
    die "post on $port: $r->{status} $r->{body}\n" unless $r->{status} == 201;
    return $r->{json}{seq};
}

# The sidecar's JSON once both workers of this nginx (children of its
# master) show $state for their link (the workers of the block before
# may still be leaving: their rows are theirs); returns it.
sub link_states {
    my $state = shift;
    my $master = master_pid();
    my @kids = grep { (ChatTest::Util::slurp("/proc/$_/stat") // '') =~ /^\d+ \(.*\) \S $master / }
               map { m{/proc/(\d+)/stat} } glob '/proc/[0-9]*/stat';
    my %mine = map { $_ => 1 } @kids;
    my $d = ChatTest::Sidecar::wait_for(sub {
        my @w = grep { $mine{ $_->{worker_pid} } } @{ $_[0]{pipeline}{workers} };
        @w == 2 && !grep { ($_->{cluster_state} // '') ne $state } @w
    }, 15);
    my @w = grep { $mine{ $_->{worker_pid} } } @{ $d->{pipeline}{workers} };
    is join(' ', map { $_->{cluster_state} // '-' } @w), "$state $state",
       "the dashboard shows both workers' links $state";
    return $d;
}

sub seqs { map { $_->{seq} } grep { defined $_->{seq} } @{ $_[0]{events} } }

# reads $peer's events until it has seq $last (true) or $timeout passed
sub has_seq {
    my ($peer, $last, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 20);
    while (1) {
        return 1 if grep { $_ >= $last } seqs($peer);
        return 0 if $peer->ws->eof;
        my $left = $deadline - Time::HiRes::time();
        return 0 if $left <= 0;
        $peer->pump($left > 0.2 ? 0.2 : $left);
    }
}

# Posts to $group on the host at $port, one every 0.2 s, until $peer (on
# the other host) gets one of those posts; the seconds from $since (a
# time) to that, undef after $timeout.  Each post is a new event, so a
# delivery after them proves the path through NATS works again.
sub until_crossed {
    my ($port, $group, $peer, $tag, $since, $timeout) = @_;
    $since //= Time::HiRes::time();
    my $deadline = Time::HiRes::time() + ($timeout // 60);
    my ($first, $i);
    while (Time::HiRes::time() < $deadline) {
        my $s = post($port, $group, "$tag " . ++$i);
        $first //= $s;
        return Time::HiRes::time() - $since if has_seq($peer, $first, 0.2);
    }
    return undef;
}

# the whole history of a subscriber: seqs $from..$to, each once, in order
sub complete {
    my ($peer, $from, $to, $what) = @_;
    has_seq($peer, $to, 30);
    my @s = seqs($peer);
    is_deeply \@s, [ $from .. $to ], "$what: seqs $from..$to, each once, in order"
        or diag "got @s";
}

sub db_seqs {   # the group's seqs as the REST API lists them
    my ($group) = @_;
    my $r = http()->get("/api/chat/groups/$group/messages?after=0&limit=100");
    die "list: $r->{status}\n" unless $r->{status} == 200;
    return map { $_->{seq} } @{ $r->{json}{messages} };
}

run_tests();

__DATA__

=== TEST 1: a NATS node SIGKILLed: the workers reconnect to the other nodes, cross-host delivery resumes, nothing lost
--- ws_script
my $h2 = host2();
my $g = new_group('node-killed');
my $far = subscriber($h2->port, 'bob', $g);       # host2, watches host1's posts
my $near = subscriber(port1(), 'carol', $g);      # host1, as a reference
ok defined until_crossed(port1(), $g, $far, 'warm-up', undef, 60),
    'host1 -> host2 through NATS before the failure';
ok wait_until(sub { $main::Nats->all_clients >= 4 }, 30),
    'the 4 workers (2 per host) hold a NATS connection';

# the node host2's subscribing worker is connected to: it must move
my $victim = wait_until(sub { $main::Nats->node_subscribed("chat.g.$g") }, 10);
ok $victim, "a worker of host2 is subscribed to chat.g.<group> on node "
            . ($victim // '?');
$victim //= 1;
my $had = $main::Nats->clients($victim);
my $t0 = Time::HiRes::time();
$main::Nats->kill_node($victim);

my $took = until_crossed(port1(), $g, $far, 'after-kill', $t0, 60);
ok defined $took, 'cross-host delivery resumes after the node was killed';
diag sprintf 'NATS failover: node %d (%d connections) killed -> a post on host1 reaches host2 in %.2f s',
    $victim, $had, $took // -1;
ok wait_until(sub { $main::Nats->all_clients >= 4 }, 30),
    'the 4 workers are connected to the other nodes';
ok wait_until(sub { my $n = $main::Nats->node_subscribed("chat.g.$g");
                    $n && $n != $victim }, 30),
    'the subscription to the group moved with its worker';

my $last = post(port1(), $g, 'last');
complete($far, 1, $last, 'the subscriber on host2');
complete($near, 1, $last, 'the subscriber on host1');
is_deeply [ db_seqs($g) ], [ 1 .. $last ], 'the database has them all';

$h2->stop;
$main::Nats->start_node($victim);
ok $main::Nats->wait_mesh, "node $victim back in the mesh";
--- no_error_log
[alert]
[crit]



=== TEST 2: every NATS node down: each host delivers locally; NATS back: the outage's events reach the other host's subscriber from the database, in order, with no later event; cross-host delivery resumes
--- ws_script
my $h2 = host2();
my $local = new_group('local');
my $g = new_group('outage');
my $l1 = subscriber(port1(), 'dan', $local);
my $l2 = subscriber($h2->port, 'erin', $local);
my $far = subscriber($h2->port, 'bob', $g);
ok defined until_crossed(port1(), $g, $far, 'warm-up', undef, 60),
    'host1 -> host2 through NATS before the outage';

$main::Nats->kill_node($_) for 1 .. 3;

# local delivery, on each host
my $s1 = post(port1(), $local, 'host1 alone');
ok $l1->heard('host1 alone', 10), 'host1 delivers its own post to its subscriber';
my $s2 = post($h2->port, $local, 'host2 alone');
ok $l2->heard('host2 alone', 10), 'host2 delivers its own post to its subscriber';

# host1 stores events that host2's subscriber cannot hear of now
my @during = map { post(port1(), $g, "during $_") } 1 .. 5;

$main::Nats->start_node($_) for 1 .. 3;
ok $main::Nats->wait_mesh, 'the 3 nodes are back, a mesh again';

# nothing is posted until host2's subscriber has them: its worker reads
# what its groups missed once its link is back
ok $far->heard('during 5', 60), 'host2\'s subscriber gets the outage\'s events once its link is back, with no later event';
is_deeply [ $far->contents(qr/^during /) ], [ map { "during $_" } 1 .. 5 ], 'all 5, in order';
my $t0 = Time::HiRes::time();
my $took = until_crossed(port1(), $g, $far, 'after', $t0, 90);
ok defined $took, 'cross-host delivery resumes';
diag sprintf 'NATS back -> a post on host1 reaches host2 in %.2f s', $took // -1;

my $last = post(port1(), $g, 'last');
complete($far, 1, $last, 'the subscriber on host2 that stayed connected');
my %got = map { $_ => 1 } $far->contents(qr/^during /);
is_deeply [ sort keys %got ], [ map { "during $_" } 1 .. 5 ],
    'it got the 5 events host1 stored during the outage';
$h2->stop;
--- no_error_log
[alert]
[crit]



=== TEST 3: a host SIGKILLed: its clients reconnect to the other host with since=<last seq> and miss nothing
--- ws_script
my $h2 = host2();
my $g = new_group('host-killed');
my $on2 = subscriber($h2->port, 'bob', $g);
ok defined until_crossed(port1(), $g, $on2, 'warm-up', undef, 60),
    'host1 -> host2 through NATS';
my $mid = post($h2->port, $g, 'on host2');
ok has_seq($on2, $mid, 10), 'host2 delivers its own post';
my @before = seqs($on2);
my $since = $before[-1];

$h2->kill;
ok wait_until(sub { $on2->pump(0.2); $on2->ws->eof }, 10),
    "host2's client sees its connection end";

# the client is away: the others keep posting on host1
my @away = map { post(port1(), $g, "while away $_") } 1 .. 5;

my $back = subscriber(port1(), 'bob', $g, $since);
my $last = post(port1(), $g, 'after the return');
ok has_seq($back, $last, 30), 'the reconnected client is live on host1';
my @after = seqs($back);
is_deeply \@after, [ $since + 1 .. $last ],
    "since=$since on host1: every event after it, once, in order";
is_deeply [ @before, @after ], [ 1 .. $last ], 'before and after the failure: none missed';
--- no_error_log
[alert]
[crit]



=== TEST 4: a wrong NATS password at start: a clear error line; the host serves its own subscribers
--- cluster: $TEST_NGINX_NATS_AUTH_URL user=chat password_file=$TEST_NGINX_NATS_WRONG_FILE
--- ws_script
ok scalar(wait_log(qr/\[(?:error|crit|alert|warn)\][^\n]*chat (?:cluster|nats)\b[^\n]*authoriz/i, 30)),
    'the error log says the cluster refused the credentials';
my $g = new_group('alone-auth');
my $p = subscriber(port1(), 'bob', $g);
post(port1(), $g, 'served locally');
ok $p->heard('served locally', 10), 'a post reaches the local subscriber';
is $main::Auth->clients(1), 0, 'no worker is connected to the NATS server';
my $d = link_states('closed');
is $d->{cluster}{host}, 'host1', 'the dashboard names the host';
like $d->{cluster}{last_error}, qr/authoriz/i, 'and the error';
--- no_error_log
[alert]
[crit]



=== TEST 5: no NATS server at the URL at start: a clear error line; the host serves its own subscribers
--- cluster: $TEST_NGINX_NATS_DEAD_URL
--- ws_script
my ($dead) = $ENV{TEST_NGINX_NATS_DEAD_URL} =~ /:(\d+)$/;
ok scalar(wait_log(qr/\[(?:error|crit|alert|warn)\][^\n]*chat (?:cluster|nats)\b[^\n]*(?:$dead|no server|refused|unreachable)/i, 30)),
    'the error log says the cluster cannot be reached';
my $g = new_group('alone-dead');
my $p = subscriber(port1(), 'bob', $g);
post(port1(), $g, 'served locally');
ok $p->heard('served locally', 10), 'a post reaches the local subscriber';
my $d = link_states('connecting');
like $d->{cluster}{last_error}, qr/\S/, 'the dashboard shows the last error';
--- no_error_log
[alert]
[crit]



=== TEST 6: one host's link cut while the other's stays up (2 nodes that do not advertise each other to clients): the events it could not publish meanwhile reach the other host's subscriber once its link is back, with no later event, in order
--- cluster: $TEST_NGINX_NATS_SPLIT_URL
--- ws_script
my $h2 = nginx_host(name => 'host2', cluster => $main::Split->url(2));
my $g = new_group('split');
my $far = subscriber($h2->port, 'bob', $g);
ok defined until_crossed(port1(), $g, $far, 'warm-up', undef, 60),
    'host1 -> host2 through NATS before the cut';

$main::Split->kill_node(1);
ok scalar(wait_log(qr/chat cluster: lost the link to the cluster/, 10)),
    'host1 lost its link (its only node is down)';
my @during = map { post(port1(), $g, "cut $_") } 1 .. 5;
ok scalar(wait_log(qr/chat cluster: event for group \Q$g\E not published: the link is down/, 10)),
    'host1 could not publish what it stored meanwhile';

$main::Split->start_node(1);
ok $main::Split->wait_mesh, 'node 1 is back, routed to node 2';
ok $far->heard('cut 5', 60),
    'host2\'s subscriber gets them once host1 is linked again, with no later event'
    or diag "host2's log:\n", join '', grep { /chat cluster/ } split /^/, $h2->error_log;
is_deeply [ $far->contents(qr/^cut /) ], [ map { "cut $_" } 1 .. 5 ], 'all 5, in order';
ok scalar(wait_log(qr/chat cluster: asked the other hosts to read from the database what they missed of this worker's events \(\d+ not published so far\)/, 10)),
    'host1\'s worker says it asked';
like $h2->error_log, qr/chat cluster: another host's worker asked, linked again; \d+ group\(s\) with subscribers here will read what they missed from the database/,
    'host2 says why it read';
$h2->stop;
--- no_error_log
[alert]
[crit]
