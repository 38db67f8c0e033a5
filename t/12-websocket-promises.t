# Promises of the WebSocket and bus paths that README.md and
# docs/ARCHITECTURE.md state with a number or a word, each tested without
# the retry helpers of t/05 so that a broken promise fails here:
#
#   - "WebSocket messages being stored: 8 per connection, error event"
#   - "worker bus queue ... not delivered to that worker, logged"
#   - "worker start-up wait for the bus: 3 s, starts anyway, warns"
#   - "starts accepting clients only once it reaches every other worker"
#   - "A reload or shutdown closes WebSockets with 1001" (nginx -s quit)
#   - "message_broadcast (group_id, recipient_count)" on the dashboard
#
# Three workers and a master; WebSockets connect to a reuseport listener,
# so the kernel spreads them over the workers and each connection's worker
# is read from its "joined group" line.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Peer;
use ChatTest::PausableDB;
use ChatTest::Sidecar;
use ChatTest::WebSocket;
use ChatTest::Workers;
use IO::Select ();
use IO::Socket::INET ();
use JSON::PP ();
use POSIX ();
use Time::HiRes ();

ChatTest::WebSocket::install_ws_script_hook();
ChatTest::Sidecar::start(db_refresh => 0.5);

master_on();
workers(3);
worker_connections(1024);
no_shuffle();
log_level('info');
no_root_location();

# A "pausable database" (ChatTest::PausableDB): a forwarding proxy to the
# suite's database; SIGSTOP holds every reply, SIGCONT lets them through.
if (my $uri = ChatTest::PausableDB::start($ENV{TEST_NGINX_CHAT_URI})) {
    $ENV{TEST_NGINX_PAUSABLE_URI} = $uri;
}
our $ProxyPid = ChatTest::PausableDB::pid();

add_block_preprocessor(sub {
    my $block = shift;
    my $uri = $block->can('pausable_db') && defined $block->pausable_db
              && $ENV{TEST_NGINX_PAUSABLE_URI}
            ? '$TEST_NGINX_PAUSABLE_URI' : '$TEST_NGINX_CHAT_URI';

    $block->set_value(http_config => <<"_EOC_" . ($block->http_config // ''));
chat_mongo_uri "$uri";
chat_jwt_secret \$TEST_NGINX_JWT_SECRET;
chat_db_timeout 5s;
chat_metrics on;
chat_metrics_address \$TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;
log_format who '\$pid \$chat_correlation_id \$status';

server {
    listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1 reuseport;
    access_log logs/who.log who;
    location /api/chat/ { chat_api on; }
}
_EOC_

    $block->set_value(config => <<'_EOC_') unless defined $block->config;
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
_EOC_

    $block->set_value(request => "GET /t\n") unless defined $block->request;
    $block->set_value(timeout => 60) unless defined $block->timeout;
});

# $sender sends @messages, 8 at a time, each window acked before the
# next; $reader (on a worker that reads) drains as they come
sub flood {
    my ($sender, $reader, @messages) = @_;
    while (my @window = splice @messages, 0, 8) {
        $sender->send_message($_) for @window;
        for my $c (@window) {
            my $a = $sender->acked($c, 10);
            die "'$c' not acked: " . ($a ? $a->{detail} : 'nothing came') . "\n"
                unless $a && $a->{type} eq 'ack';
        }
        $sender->forget;
        $reader->drain;
    }
}

# the scripts' own names for ChatTest::Workers' encoder and bus line
our $JSON = $ChatTest::Workers::JSON;
our $bus_line = $ChatTest::Workers::bus_line;

run_tests();

__DATA__

=== TEST 1: the 9th message waiting to be stored gets an error event at once; the 8 before it are stored and acked in order once the database answers; then the connection may send again
--- pausable_db
--- ws_script
SKIP: {
skip 'needs the suite\'s database on one local host (not MONGO_URI with several)', 10
    unless $ENV{TEST_NGINX_PAUSABLE_URI};
my $g = new_group('nine');
my $alice = join_worker('alice', $g);
my @m = map { "in flight $_" } 1 .. 10;
my @early;

with_stopped([ $main::ProxyPid ], sub {
    $alice->send_message($_) for @m;
    # while the database holds every reply: the 9th and 10th are refused
    # at once, the first 8 wait
    for (1 .. 2) {
        my $e = $alice->pump(3) // { type => '<nothing>' };
        push @early, $e;
    }
    my $e = $alice->pump(0.5);
    push @early, $e if $e;
});

is_deeply [ map { $_->{type} } @early ], [ 'error', 'error' ],
    'two events while the database is stalled, both errors (the 9th and the 10th), nothing else';
is_deeply [ map { $_->{detail} } @early ],
    [ ('too many messages waiting to be stored; wait for acks') x 2 ],
    'they say why';
like $early[0]{correlation_id} // '', qr/^pin-alice-\d+$/,
    'with the connection\'s correlation ID';

# the database answers again: the 8 waiting ones are stored one by one
ok $alice->wait_for(sub { $_[0]{type} eq 'ack' && $_[0]{message}{content} eq $m[7] }, 10),
    'the 8th is acked once the database answers';
is_deeply [ map { $_->{message}{content} } grep { $_->{type} eq 'ack' } @{ $alice->{events} } ],
    [ @m[0 .. 7] ], 'the first 8 are acked, in the order sent, and only they';
is_deeply [ $alice->contents ], [ @m[0 .. 7] ],
    'and broadcast to the group (the sender included), in that order';

my $stored = http()->get("/api/chat/groups/$g/messages?limit=100")->{json}{messages};
is_deeply [ reverse map { $_->{content} } @$stored ], [ @m[0 .. 7] ],
    'exactly the first 8 are stored, in the order sent; the 9th and 10th are not';

# the window is free again: 8 more at once are all accepted
$alice->forget;
my @n = map { "second window $_" } 1 .. 8;
$alice->send_message($_) for @n;
my @ok = map { $alice->acked($_, 8) } @n;
is_deeply [ map { $_ ? $_->{type} : '<nothing>' } @ok ], [ ('ack') x 8 ],
    'once acked, the connection may have 8 in flight again';
is scalar(grep { $_->{type} eq 'error' } @{ $alice->{events} }), 0, 'no error this time';
is scalar(@{ http()->get("/api/chat/groups/$g/messages?limit=100")->{json}{messages} }), 16,
    '16 stored in all';
}
--- no_error_log
[alert]
[crit]



=== TEST 2: message_broadcast on the dashboard: one event per worker that delivers, with the group's id and that worker's exact number of recipients
--- ws_script
my %slot = three_workers();
my $g = new_group('counted');
my $a1 = join_worker('a1', $g);
my $a2 = join_worker('a2', $g, on => $a1->pid);
my $b1 = join_worker('b1', $g, not => [ $a1->pid ]);
my ($idle) = grep { $_ != $a1->pid && $_ != $b1->pid } keys %slot;
ok $idle, 'two subscribers on one worker, one on another, none on the third';

my $r = http('poster')->post("/api/chat/groups/$g/messages", { content => 'counted' });
is $r->{status}, 201, 'a message POSTed';
ok $_->heard('counted'), $_->user . ' got it' for $a1, $a2, $b1;

my $mine = sub { grep { $_->{event_type} eq 'message_broadcast'
                        && ($_->{group_id} // '') eq $g } @{ $_[0]{custom_events} // [] } };
my $d = ChatTest::Sidecar::wait_for(sub { $mine->($_[0]) >= 2 }, 5);
my @ev = $mine->($d);
is_deeply [ sort map { $_->{recipient_count} } @ev ], [ 1, 2 ],
    'two events: recipient_count 2 (the worker with two) and 1 (the worker with one)';
is_deeply [ map { $_->{group_id} } @ev ], [ $g, $g ], 'each with the group\'s id';
like join(' ', map { $::JSON->encode($_->{recipient_count}) } @ev), qr/^\d \d$/,
    'recipient_count is a JSON number';

# the third worker has no subscriber of the group: no event of its own,
# even after its batch had every chance to be flushed (50 ms)
$d = ChatTest::Sidecar::wait_for(sub { $mine->($_[0]) > 2 }, 0.5);
is scalar($mine->($d)), 2, 'no event from the worker without subscribers';

# one subscriber leaves: the next delivery counts one fewer on that worker
$a2->ws->close(code => 1000);
$a2->ws->recv_close(timeout => 3);
ok scalar(wait_log(qr/chat ws: "a2" left group \Q$g\E/, 5)), 'a2 left the group';
$r = http('poster')->post("/api/chat/groups/$g/messages", { content => 'counted again' });
ok $_->heard('counted again'), $_->user . ' got the second one' for $a1, $b1;
$d = ChatTest::Sidecar::wait_for(sub { $mine->($_[0]) >= 4 }, 5);
@ev = $mine->($d);
is_deeply [ sort map { $_->{recipient_count} } @ev ], [ 1, 1, 1, 2 ],
    'after a2 left: 1 and 1 for the second message';
--- no_error_log
[alert]
[crit]



=== TEST 3: a worker that just started accepts only once it reaches every other worker: every POST its replacement serves first reaches a subscriber on another worker, and its first subscribers hear the next message another worker publishes (no retries)
--- ws_script
my %slot = three_workers();
my $g = new_group('fresh');
my $master = master_pid();
my $token = ChatTest::JWT::token('poster');

# the victim has the highest slot: the others dial it, and after a while
# their dialers redial only every 100 ms (nng's back-off), the widest
# window for a replacement that would accept before it is reached
my ($victim) = sort { $slot{$b} <=> $slot{$a} } keys %slot;
my $alice = join_worker('alice', $g, not => [ $victim ]);
my %gone = %slot;

my $zombie = sub { my $s = read_file("/proc/$_[0]/stat"); !$s || $s =~ /^\d+ \(.*\) Z / };

# the master's children that are not in %gone
my $fresh = sub {
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $l = read_file($stat);
        push @kids, $1 if $l =~ /^(\d+) \(.*\) [^Z] (\d+) / && $2 == $master
                          && !exists $gone{$1};
    }
    return @kids;
};

# Requests on new connections to the reuseport server while the master,
# stopped, cannot replace the worker: those the kernel hands to the dead
# worker's socket wait there, and they are the first its replacement
# serves, as soon as it accepts.  With $hold, that other worker stays
# stopped for a second after the replacement has started: the two cannot
# reach each other meanwhile.
my $while_replaced = sub {
    my ($pid, $hold, @raw) = @_;
    my @socks;
    with_stopped([ $master, $hold // () ], sub {
        kill 'KILL', $pid;
        wait_until(sub { $zombie->($pid) }, 5) or die "$pid did not die\n";
        Time::HiRes::sleep(0.5);        # the others' back-off reaches 100 ms
        @socks = ChatTest::Client::send_raw(ws_port(), @raw);
        if ($hold) {
            kill 'CONT', $master;
            wait_until(sub { $fresh->() }, 5) or die "no replacement forked\n";
            Time::HiRes::sleep(1);      # a replacement that did not wait would serve now
        }
    });
    my ($new) = wait_log($::bus_line, 10, sub { exists $gone{ $_[0] } });
    die "no replacement joined the bus\n" unless $new;
    $gone{$new} = 1;
    return ($new, @socks);
};

my @cid = map { "fresh-post-$_" } 1 .. 24;
my ($new, @socks) = $while_replaced->($victim, $alice->pid, map {
    my $body = json_text({ content => "message of $_" });
    "POST /api/chat/groups/$g/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    . "Authorization: Bearer $token\r\nContent-Type: application/json\r\n"
    . "X-Correlation-ID: $_\r\nContent-Length: " . length($body) . "\r\n\r\n$body"
} @cid);
my @res = ChatTest::Client::read_until_closed(15, @socks);
is_deeply [ map { ($_ // '') =~ m{^HTTP/1\.1 (\d+)} ? $1 : 'none' } @res ], [ (201) x 24 ],
    '24 POSTs, each stored';
my @by_new = grep { (served_by($cid[$_ - 1]) // 0) == $new } 1 .. 24;
ok scalar @by_new, 'the replacement served ' . scalar(@by_new) . ' of them, its first requests';
my @missed = grep { !$alice->heard("message of $cid[$_ - 1]", 3) } @by_new;
is "@missed", '', 'alice, on another worker, got every message the replacement published';
@missed = grep { !$alice->heard("message of $cid[$_ - 1]", 1) } 1 .. 24;
is "@missed", '', 'and every other one';

# the other way: the first subscribers of a replacement hear the next
# message another worker publishes
my $path = "/api/chat/ws/$g?token=" . ChatTest::JWT::token('bob');
my @wcid = map { "fresh-ws-$_" } 1 .. 24;
my ($newer, @ws) = $while_replaced->($new, undef, map {
    "GET $path HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    . "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    . "X-Correlation-ID: $_\r\n\r\n"
} @wcid);
my @on = map { served_by($_) // 0 } @wcid;
is scalar(grep { $_ } @on), 24, 'the 24 handshakes are answered';
my @on_newer = grep { $on[$_] == $newer } 0 .. 23;
ok scalar @on_newer, 'the replacement took ' . scalar(@on_newer) . ' of them, its first clients';
$alice->send_message('first after the replacement');
ok $alice->acked('first after the replacement'), 'alice\'s message is stored';

# server frames are not masked: the text is in the byte stream as is
# (the wait ends as soon as each socket has it; the bound is for a loaded
# machine, where 3 s once fell short)
my $sel = IO::Select->new(@ws);
my %got;
my $deadline = Time::HiRes::time() + 10;
while ($sel->count && Time::HiRes::time() < $deadline) {
    for my $s ($sel->can_read(0.2)) {
        my $i = (grep { $ws[$_] == $s } 0 .. 23)[0];
        sysread($s, my $buf, 65536) or do { $sel->remove($s); next };
        $got{$i} .= $buf;
        $got{$i} =~ /first after the replacement/ and $sel->remove($s);
    }
}
@missed = grep { ($got{$_} // '') !~ /first after the replacement/ } @on_newer;
is "@missed", '', 'each subscriber of the replacement got it';
@missed = grep { ($got{$_} // '') !~ /first after the replacement/ } 0 .. 23;
is "@missed", '', 'and every subscriber on the other workers';
--- error_log
exited on signal 9
--- no_error_log
[crit]
not sent to the other workers



=== TEST 4: nginx -s quit: every WebSocket, on every worker, gets a close frame with 1001 at once, then the workers and the master exit cleanly
--- ws_script
# The harness's nginx must outlive the block: this one is a second nginx
# of its own (daemon off, a child of this test), stopped by "nginx -s quit".
use File::Temp ();
my $g = new_group('quit');
my $dir = File::Temp::tempdir('chat-quit-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/logs";
my $p = ChatTest::Sidecar::free_port();
my $modules = join '', map { "load_module $_;\n" } split ' ', $ENV{TEST_NGINX_LOAD_MODULES};
open my $cf, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!\n";
print $cf <<"_CONF_";
$modules
daemon off;
master_process on;
worker_processes 2;
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    chat_mongo_uri "$ENV{TEST_NGINX_CHAT_URI}";
    chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    server {
        listen 127.0.0.1:$p reuseport;
        location /api/chat/ { chat_api on; }
    }
}
_CONF_
close $cf;
my $bin = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
my $master = fork // die "fork: $!\n";
if ($master == 0) {
    open STDERR, '>>', "$dir/logs/stderr.log";
    exec $bin, '-p', "$dir/", '-c', "$dir/nginx.conf" or POSIX::_exit(127);
}
my $log = sub { read_file("$dir/logs/error.log") };
my $ok = eval {
    wait_until(sub { (() = $log->() =~ /joined the bus/g) >= 2 }, 10)
        or die "the second nginx did not start:\n" . $log->() . read_file("$dir/logs/stderr.log");

    # WebSockets until each of the two workers holds some
    my (@ws, %on);
    my $path = "/api/chat/ws/$g?token=" . ChatTest::JWT::token('carol');
    for my $i (1 .. 40) {
        my $ws = ws_connect(port => $p, path => $path, name => "carol $i", timeout => 5,
                            headers => { 'X-Correlation-ID' => "quit-$i" });
        die "carol $i could not join: " . ($ws->error // '?') . "\n" unless $ws->is_open;
        my $pid = wait_until(sub {
            $log->() =~ / (\d+)#\d+: \*\d+ chat ws: "carol" joined group \S+ \(\d+ here\), correlation_id=quit-$i\b/ ? $1 : undef
        }, 5) or die "no joined line for quit-$i\n";
        push @ws, $ws;
        $on{$pid}++;
        last if @ws >= 6 && keys %on == 2;
    }
    is scalar keys %on, 2, scalar(@ws) . ' WebSockets on both workers';

    my $t0 = Time::HiRes::time();
    # its "signal process started" notice goes to the second nginx's stderr log
    is system(join(' ', map { quotemeta } $bin, '-p', "$dir/", '-c', "$dir/nginx.conf",
                   '-s', 'quit') . ' 2>>' . quotemeta("$dir/logs/stderr.log")), 0,
       'nginx -s quit';
    my @closes = map { [ $_->recv_close(timeout => 5) ] } @ws;
    my $dt = Time::HiRes::time() - $t0;
    is_deeply [ map { $_->[0] // 'none' } @closes ], [ (1001) x @ws ],
        'every WebSocket got a close frame with 1001 (going away)';
    is_deeply [ map { $_->[1] // '' } @closes ], [ ('server going away') x @ws ],
        'saying why';
    cmp_ok $dt, '<', 3, 'at once (not at a ping or idle timeout)';
    is scalar(grep { $_->wait_for_eof(timeout => 5) } @ws), scalar @ws,
        'then each connection ends';

    my $reaped = wait_until(sub { waitpid($master, POSIX::WNOHANG()) == $master ? [ $? ] : undef }, 10);
    ok $reaped, 'the master exited';
    is $reaped && $reaped->[0], 0, 'with status 0';
    my @exits = $log->() =~ /worker process \d+ exited with code (\d+)/g;
    is_deeply \@exits, [ 0, 0 ], 'both workers exited with code 0';
    unlike $log->(), qr/\[(?:alert|crit|emerg)\]/, 'no alert in its log';
    1;
};
my $err = $@;
if (kill 0, $master) { kill 'TERM', $master; waitpid $master, 0 }
die $err unless $ok;
--- no_error_log
[alert]
[crit]



=== TEST 5: the bus past its queues: 1100 events for a worker that does not read (SIGSTOP); the others get all of them; it logs how many the bus dropped, from which worker, and its subscriber still gets every one, in order: the gap is filled from the database
--- http_config
chat_ws_send_queue 4096;
chat_ws_message_rate off;
--- ws_script
my %slot = three_workers();
my $g = new_group('flood');
my $alice = join_worker('alice', $g);
my $bob = join_worker('bob', $g, not => [ $alice->pid ]);
my $carol = join_worker('carol', $g, not => [ $alice->pid, $bob->pid ]);
my $n = 1100;
my @flood = map { sprintf 'flood %04d', $_ } 1 .. $n;

with_stopped([ $bob->pid ], sub { flood($alice, $carol, @flood) });

$alice->send_message('after the flood');
ok $alice->acked('after the flood', 10), 'a last message once bob\'s worker runs again';
ok $carol->heard('after the flood', 10), 'carol got to the last one';
is_deeply [ $carol->contents ], [ @flood, 'after the flood' ],
    "carol, on a worker that reads, got all $n events and the last one, in order";

ok $bob->heard('after the flood', 30), 'bob got the last one too'
    or diag "bob got ", scalar(my @got = $bob->contents), " events; his worker's log lines:\n",
            join '', grep { / \Q${\ $bob->pid }\E#/ } split /^/, error_log();
is_deeply [ $bob->contents ], [ @flood, 'after the flood' ],
    "bob, whose worker's bus queue overflowed, got all $n events and the last one, in order";

my ($missed, $total) = wait_log(qr/ \Q${\ $bob->pid }\E#\d+: chat broadcast: missed (\d+) events of worker slot \Q$slot{ $alice->pid }\E \(pid \Q${\ $alice->pid }\E\): the bus dropped them while this worker's queue was full or its pipe down \((\d+) missed so far\)/, 5);
cmp_ok $missed, '>', 16, "bob's worker logged that the bus dropped events of alice's worker (more than a pipe's queue)";
is $total, $missed, 'with the count so far';
my ($filled, $log) = (0, error_log());
$filled += $1 while $log =~ / \Q${\ $bob->pid }\E#\d+: chat group [0-9a-f]{24}: (\d+) event\(s\) from seq \d+ read from the database to fill a gap/g;
cmp_ok $filled, '>=', $missed, "bob's worker read the $missed events the bus dropped from the database (and maybe some it held: $filled)";
is scalar(() = error_log() =~ /chat broadcast: missed/g), 1,
   'no other worker missed any';
--- no_error_log
[alert]
[crit]



=== TEST 6: the bus start-up wait: a replacement worker that cannot reach a peer (SIGSTOPped) waits 3 s at most, warns naming the missing slot, then serves; the peer joins once it answers
--- ws_script
my %slot = three_workers();
my %pid_of = reverse %slot;
my %gone = %slot;
my $g = new_group('late');
my $alice = join_worker('alice', $g, on => $pid_of{0});

# kills $victim while $stopped cannot answer; returns the replacement's
# pid once it joined the bus, and its warning's wait and missing slots
my $replace = sub {
    my ($victim, $stopped) = @_;
    my $new;
    with_stopped([ $stopped ], sub {
        kill 'KILL', $victim;
        ($new) = wait_log($::bus_line, 10, sub { exists $gone{ $_[0] } });
    });
    die "no replacement joined the bus\n" unless $new;
    $gone{$new} = 1;
    my ($ms, $not) = wait_log(qr/ \Q$new\E#\d+: chat broadcast: worker slot 1 of 3 reaches 1 of its 2 peers after (\d+) ms, not (.*?): they are not running or do not answer; this worker serves now, and each joins when it answers/, 1);
    my ($joined) = wait_log(qr/ \Q$new\E#\d+: chat broadcast: worker slot 1 of 3 joined the bus \((\d+ of \d+) peers in \d+ ms\)/, 1);
    return ($new, $ms, $not, $joined);
};

# slot 1 replaced while slot 2, which it dials, is stopped
my ($b1, $ms, $not, $joined) = $replace->($pid_of{1}, $pid_of{2});
ok defined $ms, 'the replacement of slot 1 warned that it reaches 1 of its 2 peers';
cmp_ok $ms // 0, '>=', 3000, "after waiting 3 s ($ms ms)";
cmp_ok $ms // 9999, '<', 4000, 'and not much longer';
is $not, 'slot 2', 'naming the slot it cannot reach';
is $joined, '1 of 2', 'then joined the bus with the peer it has';

my $bob = join_worker('bob', $g, on => $b1);
pass('and accepts clients');
$alice->send_message('to the late one');
ok $alice->acked('to the late one'), 'alice\'s message is stored';
ok $bob->heard('to the late one', 3), 'bob, on the replacement, got it from alice\'s worker';

# slot 2 runs again: it answers the replacement's dialer (eventually, so
# this part may try more than once)
my $carol = join_worker('carol', $g, on => $pid_of{2});
my $heard;
for my $try (1 .. 50) {
    $bob->send_message("knock $try");
    $bob->acked("knock $try") or die "no ack for knock $try\n";
    last if $heard = $carol->heard("knock $try", 0.1);
}
ok $heard, 'once slot 2 answers, it hears the replacement';

# slot 1 replaced again while slot 0, which dials it, is stopped
my ($b2, $ms2, $not2, $joined2) = $replace->($b1, $pid_of{0});
ok defined $ms2, 'the next replacement of slot 1 warned too';
cmp_ok $ms2 // 0, '>=', 3000, "after waiting 3 s ($ms2 ms)";
cmp_ok $ms2 // 9999, '<', 4000, 'and not much longer';
is $not2, 'slot 0', 'naming the slot below it that has not dialed in';
is $joined2, '1 of 2', 'then joined the bus';
my $dave = join_worker('dave', $g, on => $b2);
$carol->send_message('from slot 2');
ok $carol->acked('from slot 2'), 'carol\'s message is stored';
ok $dave->heard('from slot 2', 3), 'the replacement serves, and hears the peer it reached';
--- error_log
exited on signal 9
--- no_error_log
[crit]



=== TEST 7: the bus's tail: the last events of a burst, lost while a worker does not read (SIGSTOP), and an event of another group lost among them, reach its subscribers without any later event: the origin's tick shows the gap, and every group there reads what it missed
--- http_config
chat_ws_send_queue 4096;
chat_ws_message_rate off;
--- ws_script
my %slot = three_workers();
my $g = new_group('tail');
my $quiet = new_group('quiet');
my $alice = join_worker('alice', $g);
my $bob = join_worker('bob', $g, not => [ $alice->pid ]);
my $carol = join_worker('carol', $g, not => [ $alice->pid, $bob->pid ]);
my $erin = join_worker('erin', $quiet, on => $alice->pid);
my $dan = join_worker('dan', $quiet, on => $bob->pid);
my $n = 1100;
my @flood = map { sprintf 'tail %04d', $_ } 1 .. $n;

with_stopped([ $bob->pid ], sub {
    flood($alice, $carol, @flood[0 .. 503]);
    # one event of the other group, in the middle: bob's worker's queue is
    # full by then (184 fit), so the bus drops it too
    $erin->send_message('quiet one');
    ok $erin->acked('quiet one', 10), 'erin\'s one message in the other group is stored';
    flood($alice, $carol, @flood[504 .. $#flood]);
});

# nothing is sent from here on
ok $bob->heard($flood[-1], 15), 'bob got the last event of the burst, with no event after it'
    or diag "bob got ", scalar(my @got = $bob->contents), " events; his worker's log lines:\n",
            join '', grep { / \Q${\ $bob->pid }\E#/ } split /^/, error_log();
is_deeply [ $bob->contents ], \@flood, "bob got all $n events, in order";
ok $dan->heard('quiet one', 5), 'dan, in the other group on bob\'s worker, got its one event';
is_deeply [ $dan->contents ], [ 'quiet one' ], 'once';

my ($missed, $groups) = wait_log(qr/ \Q${\ $bob->pid }\E#\d+: chat broadcast: missed (\d+) events of worker slot \Q$slot{ $alice->pid }\E \(pid \Q${\ $alice->pid }\E\): .*; (\d+) group\(s\) with subscribers here will read them from the database \(seen at a tick\)/, 5);
cmp_ok $missed // 0, '>', 16, "bob's worker saw the gap at alice's worker's tick ($missed events)";
is $groups, 2, 'and both groups with subscribers there read what they missed';
ok scalar(wait_log(qr/ \Q${\ $bob->pid }\E#\d+: chat group \Q$quiet\E: 1 event\(s\) from seq 1 read from the database to fill a gap/, 5)),
   'the other group\'s one event was among those lost: bob\'s worker read it from the database';
is scalar(() = error_log() =~ /chat broadcast: missed/g), 1,
   'no other worker missed any';
--- no_error_log
[alert]
[crit]
