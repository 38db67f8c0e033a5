# WebSockets across workers: with three workers and a master, subscribers
# are pinned to different workers (each connection's worker is read from
# the "joined group" line that carries its correlation ID), and events go
# from one worker to the others over the nng bus: multi-client
# conversations with per-sender order, per-group isolation, a slow
# consumer cut off (1008, logged and counted) while the others keep
# receiving, a worker killed and restarted, and a reload.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Peer;
use ChatTest::Sidecar;
use ChatTest::WebSocket;
use ChatTest::Workers;
use JSON::PP ();
use Time::HiRes ();

ChatTest::WebSocket::install_ws_script_hook();
ChatTest::Sidecar::start(db_refresh => 0.5);

master_on();
workers(3);
worker_connections(1024);
no_shuffle();
log_level('info');
no_root_location();

# WebSockets use a second server with "reuseport": the kernel spreads its
# connections over the workers by address hash, not by who wakes first.
add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value(http_config => <<'_EOC_' . ($block->http_config // ''));
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_db_timeout 3s;
chat_metrics on;
chat_metrics_address $TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;

server {
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 reuseport;
    location /api/chat/ { chat_api on; }
}
_EOC_

    $block->set_value(config => <<'_EOC_') unless defined $block->config;
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
_EOC_

    $block->set_value(request => "GET /t\n") unless defined $block->request;
    $block->set_value(timeout => 30) unless defined $block->timeout;
});

our $JSON = JSON::PP->new->utf8->canonical;
our $bus_line = qr/ (\d+)#\d+: chat broadcast: worker slot \d+ of \d+ joined the bus/;

# pids of the workers that joined the bus so far (waiting for $n of them)
sub bus_members {
    my $n = shift // 0;
    my $deadline = Time::HiRes::time + 5;
    while (1) {
        my %pid;
        if (open my $fh, '<', server_root() . '/logs/error.log') {
            %pid = map { $_ =~ $bus_line ? ($1 => 1) : () } <$fh>;
        }
        return keys %pid
            if keys %pid >= $n || Time::HiRes::time > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

sub count_log {
    my $re = shift;
    open my $fh, '<', server_root() . '/logs/error.log' or return 0;
    return scalar grep { $_ =~ $re } <$fh>;
}

# The bus between the peers' workers carries their first messages: a
# worker accepts clients only once it reaches every other worker, so one
# "sync" message from each peer, with no retry, reaches all the others
# (t/12 TEST 3 tests that promise right after a worker starts).  Leaves
# no sync traffic in flight.
sub bus_ready {
    my @peers = @_;
    for my $from (@peers) {
        my $c = "sync " . $from->user;
        $from->send_message($c);
        $from->acked($c) or die "sync: no ack for $c\n";
    }
    for my $p (@peers) {
        for my $from (grep { $_ != $p } @peers) {
            $p->heard("sync " . $from->user, 5)
                or die "sync: " . $p->user . " (worker " . $p->pid . ") never heard "
                     . $from->user . " (worker " . $from->pid . "): the bus did not reach it\n";
        }
        $p->forget;
    }
}

# Each peer sends its messages back to back, at most 8 unacknowledged
# (the chat's limit), all peers at the same time:
# converse([ $alice, \@contents ], [ $bob, \@contents ], ...).
sub converse {
    my @todo = map { { peer => $_->[0], list => [ @{ $_->[1] } ] } } @_;
    while (grep { @{ $_->{list} } } @todo) {
        for my $t (@todo) {
            $t->{window} = [ splice @{ $t->{list} }, 0, 8 ];
            $t->{peer}->send_message($_) for @{ $t->{window} };
        }
        for my $t (@todo) {
            for my $c (@{ $t->{window} }) {
                my $a = $t->{peer}->acked($c, 5);
                die $t->{peer}->user . ": '$c' not acked: "
                    . ($a ? $a->{detail} : 'nothing came') . "\n"
                    unless $a && $a->{type} eq 'ack';
            }
        }
    }
}

run_tests();

__DATA__

=== TEST 1: a conversation across two workers: every message reaches every subscriber on both workers, in the order its sender sent it
--- ws_script
my $g = new_group();
my $alice = join_worker('alice', $g);
my $bob = join_worker('bob', $g, not => [ $alice->pid ]);
my $carol = join_worker('carol', $g, on => $alice->pid);
my $dave = join_worker('dave', $g, on => $bob->pid);
isnt $alice->pid, $bob->pid, 'alice and bob are served by two different workers';
is $carol->pid, $alice->pid, 'carol shares alice\'s worker';
is $dave->pid, $bob->pid, 'dave shares bob\'s worker';
bus_ready($alice, $bob);

my @a = map { "alice $_" } 1 .. 20;
my @b = map { "bob $_" } 1 .. 20;
converse([ $alice, \@a ], [ $bob, \@b ]);

for my $p ($alice, $bob, $carol, $dave) {
    $p->heard('alice 20', 3);
    $p->heard('bob 20', 3);
    is_deeply [ $p->contents(qr/^alice/) ], \@a, $p->user . ": alice's 20 messages, in order";
    is_deeply [ $p->contents(qr/^bob/) ], \@b, $p->user . ": bob's 20 messages, in order";
    is scalar $p->contents, 40, $p->user . ': nothing else';
}
is_deeply [ $alice->contents ], [ $carol->contents ],
    'alice and carol (one worker) saw the same interleaving';
is_deeply [ $bob->contents ], [ $dave->contents ],
    'bob and dave (the other worker) saw the same interleaving';

my $ack = $alice->acked('alice 7');
is_deeply $dave->heard('alice 7')->{message}, $ack->{message},
    'a message reaches the other worker as its sender\'s ack has it';

my $r = http('erin')->post("/api/chat/groups/$g/messages", { content => 'over HTTP' });
is $r->{status}, 201, 'a POST over HTTP';
for my $p ($alice, $bob, $carol, $dave) {
    my $e = $p->heard('over HTTP');
    is_deeply $e && $e->{message}, $r->{json}, $p->user . ': gets the POSTed message';
}
my $d = http('erin')->delete("/api/chat/groups/$g/messages/$r->{json}{id}");
is $d->{status}, 200, 'a DELETE over HTTP';
for my $p ($alice, $bob, $carol, $dave) {
    my $e = $p->wait_for(sub { $_[0]{type} eq 'message_deleted' });
    is_deeply $e, { type => 'message_deleted', message_id => $r->{json}{id}, group_id => $g,
                    seq => $d->{json}{seq} },
        $p->user . ': gets message_deleted';
}

my $stored = http()->get("/api/chat/groups/$g/messages?limit=100")->{json}{messages};
my @stored = reverse grep { !/^sync / } map { $_->{content} } @$stored;
is_deeply [ grep { /^alice/ } @stored ], \@a, 'stored in the order alice sent';
is_deeply [ grep { /^bob/ } @stored ], \@b, 'stored in the order bob sent';
--- no_error_log
[crit]
[alert]
not sent to the other workers



=== TEST 2: groups are isolated across workers: subscribers on either worker get their group's messages and none of the other's
--- ws_script
my ($g1, $g2) = (new_group('one'), new_group('two'));
my $alice = join_worker('alice', $g1);
my $bob = join_worker('bob', $g1, not => [ $alice->pid ]);
my $eve = join_worker('eve', $g2, on => $alice->pid);
my $frank = join_worker('frank', $g2, on => $bob->pid);
isnt $alice->pid, $bob->pid, 'two workers, a subscriber of each group on each';
bus_ready($alice, $bob);

# interleaved on each worker; the last marker of a group comes after
# every message of the other one on the same bus pipe, so reading up to
# it shows any leak without waiting for "nothing"
for my $round ([ $alice, $eve ], [ $bob, $frank ]) {
    my ($p1, $p2) = @$round;
    for my $i (1 .. 5) {
        $p1->send_message("g1 " . $p1->user . " $i");
        $p1->acked("g1 " . $p1->user . " $i") or die;
        $p2->send_message("g2 " . $p2->user . " $i");
        $p2->acked("g2 " . $p2->user . " $i") or die;
    }
}
$bob->send_message('g1 end');
$bob->acked('g1 end') or die;
$frank->send_message('g2 end');
$frank->acked('g2 end') or die;

my @g1 = ((map { "g1 alice $_" } 1 .. 5), (map { "g1 bob $_" } 1 .. 5), 'g1 end');
my @g2 = ((map { "g2 eve $_" } 1 .. 5), (map { "g2 frank $_" } 1 .. 5), 'g2 end');
for my $p ($alice, $bob) {
    ok $p->heard('g1 end'), $p->user . ': got to the end of group one';
    is_deeply [ $p->contents ], \@g1, $p->user . ': exactly group one\'s messages';
}
for my $p ($eve, $frank) {
    ok $p->heard('g2 end'), $p->user . ': got to the end of group two';
    is_deeply [ $p->contents ], \@g2, $p->user . ': exactly group two\'s messages';
}



=== TEST 3: a slow consumer is closed with 1008 (logged and counted) while fast ones on both workers get every message
--- http_config
chat_ws_send_queue 8;
chat_ws_close_timeout 20s;
chat_max_content_length 512k;
--- ws_script
my $g = new_group();
my $fast1 = join_worker('fast1', $g);
my $fast2 = join_worker('fast2', $g, not => [ $fast1->pid ]);
bus_ready($fast1, $fast2);
my $slow = join_worker('slow', $g);      # then never reads
my $client = http('poster');

# 400 KB messages until the slow one's socket buffers and its 8 queued
# frames are full
my $big = 'x' x 400_000;
my ($n, $cut) = (0, 0);
while (!$cut && $n < 80) {
    $n++;
    my $r = $client->post("/api/chat/groups/$g/messages",
                          { content => sprintf('%03d %s', $n, $big) });
    die "post $n: $r->{status}\n" unless $r->{status} == 201;
    for my $p ($fast1, $fast2) {
        $p->ws->expect(qr/^\{"type":"message","message":\{[^}]*"content":"0*$n /,
                       timeout => 5, name => $p->user . " got $n")
            or die "fast subscriber fell behind\n";
    }
    $cut = count_log(qr/closing the slow consumer with 1008/);
}
ok $cut, "the slow consumer was cut off after $n messages of 400 KB";
is $cut, 1, 'only the slow one';
ok count_log(qr/chat ws: "slow" in group \Q$g\E is 8 frames behind, closing the slow consumer with 1008/),
   'logged: who, which group, how far behind';

my $d = ChatTest::Sidecar::wait_for(sub {
    grep { $_->{event_type} eq 'ws_slow_consumer_closed' && $_->{group_id} eq $g }
         @{ $_[0]{custom_events} // [] } });
ok scalar(grep { $_->{event_type} eq 'ws_slow_consumer_closed' && $_->{group_id} eq $g }
               @{ $d->{custom_events} }), 'counted: a ws_slow_consumer_closed event';

for my $m ($n + 1 .. $n + 3) {
    my $r = $client->post("/api/chat/groups/$g/messages", { content => "$m after" });
    for my $p ($fast1, $fast2) {
        $p->ws->expect(qr/"content":"$m after"/, timeout => 3,
                       name => $p->user . " still gets message $m");
    }
}

# now the slow one reads: a prefix of the messages, intact and in order,
# then the close frame
my (@got, $close);
while (my $f = $slow->ws->recv(timeout => 5)) {
    next if $f->{type} eq 'ping';
    if ($f->{type} eq 'close') { $close = $f; last }
    push @got, $f->{payload} =~ /"content":"(\d+) / ? $1 + 0 : "bad frame";
}
cmp_ok scalar @got, '<', $n, 'the slow one got only part of the messages';
is_deeply \@got, [ 1 .. @got ], 'those it got are whole and in order, with no gap';
is $close && $close->{code}, 1008, 'then a close frame with 1008';
is $close && $close->{reason}, 'send queue full', 'saying why';
ok $slow->ws->wait_for_eof(timeout => 5), 'and the connection ends';



=== TEST 4: a worker that is killed: the other two keep exchanging every message, and its replacement rejoins the bus
--- ws_script
my $g = new_group();
my $alice = join_worker('alice', $g);
my $bob = join_worker('bob', $g, not => [ $alice->pid ]);
my $carol = join_worker('carol', $g, not => [ $alice->pid, $bob->pid ]);
bus_ready($alice, $bob, $carol);

my %old = map { $_->pid => 1 } $alice, $bob, $carol;
is scalar keys %old, 3, 'three subscribers on three workers';
kill 'KILL', $carol->pid;
ok $carol->ws->wait_for_eof(timeout => 5), 'the killed worker\'s subscriber is disconnected';

# while it is gone and being replaced
my @a = map { "alice $_" } 1 .. 12;
my @b = map { "bob $_" } 1 .. 12;
converse([ $alice, \@a ], [ $bob, \@b ]);
for my $p ($alice, $bob) {
    $p->heard('alice 12', 3);
    $p->heard('bob 12', 3);
    is_deeply [ $p->contents(qr/^alice/) ], \@a, $p->user . ': none of alice\'s lost meanwhile';
    is_deeply [ $p->contents(qr/^bob/) ], \@b, $p->user . ': none of bob\'s lost meanwhile';
}

my ($new) = wait_log($::bus_line, 5, sub { $old{ $_[0] } });
ok $new, 'a new worker joined the bus';
my $carol2 = join_worker('carol2', $g, on => $new);
bus_ready($alice, $bob, $carol2);
pass('the new worker hears both others and they hear it');

my @a2 = map { "alice later $_" } 1 .. 10;
my @b2 = map { "bob later $_" } 1 .. 10;
my @c2 = map { "carol later $_" } 1 .. 10;
converse([ $alice, \@a2 ], [ $bob, \@b2 ], [ $carol2, \@c2 ]);
for my $p ($alice, $bob, $carol2) {
    $p->heard($_, 3) for 'alice later 10', 'bob later 10', 'carol later 10';
    is_deeply [ $p->contents(qr/^alice later/) ], \@a2, $p->user . ': every later message of alice';
    is_deeply [ $p->contents(qr/^bob later/) ], \@b2, $p->user . ': every later message of bob';
    is_deeply [ $p->contents(qr/^carol later/) ], \@c2, $p->user . ': every later message of carol2';
}
--- error_log
exited on signal 9
--- no_error_log
[crit]



=== TEST 5: reloads: each time the old workers close their WebSockets with 1001, exit cleanly, and the new ones form a bus of their own
--- ws_script
my $g = new_group();
my %current = map { $_ => 1 } bus_members(3);
my %retired;
is scalar keys %current, 3, 'three workers on the bus';
open my $fh, '<', server_root() . '/logs/nginx.pid' or die "no pid file: $!\n";
chomp(my $master = <$fh>);

for my $round (1 .. 3) {
    my $alice = join_worker("alice$round", $g, not => [ keys %retired ]);
    my $bob = join_worker("bob$round", $g, not => [ keys %retired, $alice->pid ]);
    ok $current{ $alice->pid } && $current{ $bob->pid },
       "round $round: two subscribers on two workers of this generation";
    bus_ready($alice, $bob);
    my @a = map { "alice$round $_" } 1 .. 3;
    my @b = map { "bob$round $_" } 1 .. 3;
    converse([ $alice, \@a ], [ $bob, \@b ]);
    for my $p ($alice, $bob) {
        $p->heard($_, 3) for $a[-1], $b[-1];
        is_deeply [ sort $p->contents ], [ sort @a, @b ],
            "round $round: " . $p->user . ' got every message';
    }

    kill 'HUP', $master;
    for my $p ($alice, $bob) {
        my ($code) = $p->ws->recv_close(timeout => 5);
        is $code, 1001, "round $round: " . $p->user . ' closed with 1001 by its old worker';
        ok $p->ws->wait_for_eof(timeout => 5), "round $round: " . $p->user . ': connection ended';
    }
    %retired = (%retired, %current);
    %current = ();
    for (1 .. 3) {
        my ($pid) = wait_log($::bus_line, 5,
                             sub { $retired{ $_[0] } || $current{ $_[0] } });
        $current{$pid} = 1 if $pid;
    }
    is scalar keys %current, 3, "round $round: three new workers joined a new bus";
}

# more generations, to give a worker every chance to die on its way out
for my $round (4 .. 8) {
    kill 'HUP', $master;
    %retired = (%retired, %current);
    %current = ();
    for (1 .. 3) {
        my ($pid) = wait_log($::bus_line, 5,
                             sub { $retired{ $_[0] } || $current{ $_[0] } });
        $current{$pid} = 1 if $pid;
    }
    is scalar keys %current, 3, "reload $round: three new workers on the bus";
}
my @unclean = grep { !wait_log(qr/worker process $_ exited with code 0/, 5) }
              sort keys %retired;
is scalar keys %retired, 24, 'eight reloads replaced 24 workers';
is "@unclean", '', 'each of them exited with code 0';
--- no_error_log
[crit]
[alert]



=== TEST 6: a process that is not a worker of this nginx cannot join the bus: its connection is refused and logged, its message reaches nobody
--- ws_script
use Socket qw(AF_UNIX SOCK_STREAM pack_sockaddr_un);
my $g = new_group();
my $alice = join_worker('alice', $g);
my $bob = join_worker('bob', $g, not => [ $alice->pid ]);
bus_ready($alice, $bob);

# the workers' bus names, from the kernel's table of Unix sockets
open my $pf, '<', server_root() . '/logs/nginx.pid' or die "no pid file: $!\n";
chomp(my $master = <$pf>);
open my $nu, '<', '/proc/net/unix' or die "/proc/net/unix: $!\n";
my %names = map { /\s\@(ngx-chat-\Q$master\E-\d+-\d+)$/ ? ($1 => 1) : () } <$nu>;
is scalar keys %names, 3, 'three workers listen on the bus';

my $event = json_text({ type => 'message', message => {
    id => 'f' x 24, group_id => $g, user_id => 'mallory',
    content => 'forged', created_at => '2026-01-01T00:00:00Z' } });
my $sent = 0;
for my $name (sort keys %names) {
    socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!\n";
    connect($s, pack_sockaddr_un("\0$name")) or die "connect $name: $!\n";
    # SP header of a bus0 peer and one message in nng's ipc framing, in
    # one write: all of it is there before the worker can say no
    local $SIG{PIPE} = 'IGNORE';
    my $body = 'CHB3' . pack('LLQq', 0, $$, 1, 1) . $g . $event;   # slot, pid, number, event seq
    my $bytes = "\0SP\0\x00\x70\0\0\x01" . pack('Q>', length $body) . $body;
    $sent++ if (syswrite($s, $bytes) // 0) == length $bytes;
    my $eof = '';
    vec(my $rin = '', fileno $s, 1) = 1;
    # the worker answers its own header, then closes the pipe
    while (select(my $r = $rin, undef, undef, 2)) {
        sysread($s, my $buf, 4096) or do { $eof = 1; last };
    }
    ok $eof, "$name: closed the stranger's connection";
    close $s;
}
is $sent, 3, 'a forged event was offered to each worker';
is count_log(qr/chat broadcast: refused a bus connection from pid $$ \(parent \d+\): not a worker of this nginx/), 3,
   'each worker logged the refusal with the stranger\'s pid';

$alice->send_message('after the forgery');
$alice->acked('after the forgery') or die "no ack\n";
for my $p ($alice, $bob) {
    ok $p->heard('after the forgery'), $p->user . ': real messages still flow';
    is scalar(grep { $_->{type} eq 'message' && $_->{message}{content} eq 'forged' }
                   @{ $p->{events} }), 0, $p->user . ': never got the forged one';
}
--- no_error_log
[crit]
[alert]



=== TEST 7: nginx as deployed (daemon on): the workers, children of the daemonized master, accept each other on the bus
--- ws_script
# The harness runs nginx with "daemon off"; this block starts a second
# nginx of its own the way a service manager does, and stops it by pid.
use File::Temp ();
my $dir = File::Temp::tempdir('chat-daemon-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/logs";
my $p = ChatTest::Sidecar::free_port();
my $modules = join '', map { "load_module $_;\n" } split ' ', $ENV{TEST_NGINX_LOAD_MODULES};
open my $cf, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!\n";
print $cf <<"_CONF_";
$modules
daemon on;
master_process on;
worker_processes 3;
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    chat_mongo_uri "$ENV{TEST_NGINX_CHAT_URI}";
    chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    server {
        listen 127.0.0.1:$p;
        location /api/chat/ { chat_api on; }
    }
}
_CONF_
close $cf;
my $bin = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
is system($bin, '-p', "$dir/", '-c', "$dir/nginx.conf"), 0, 'nginx started as a daemon';
my $log = sub { open my $fh, '<', "$dir/logs/error.log" or return ''; local $/; <$fh> // '' };
my $deadline = Time::HiRes::time() + 10;
Time::HiRes::sleep(0.05)
    while Time::HiRes::time() < $deadline && (() = $log->() =~ /joined the bus/g) < 3;
my @joined = $log->() =~ /joined the bus \((\d+ of \d+) peers/g;
is_deeply \@joined, [ ('2 of 2') x 3 ], 'each of its three workers reached its two peers';
unlike $log->(), qr/refused a bus connection/, 'no worker refused another';
unlike $log->(), qr/reaches \d+ of its/, 'none waited in vain';
open my $pf, '<', "$dir/logs/nginx.pid" or die "no pid file: $!\n";
chomp(my $master = <$pf>);
kill 'QUIT', $master;
$deadline = Time::HiRes::time() + 10;
Time::HiRes::sleep(0.05) while Time::HiRes::time() < $deadline && kill 0, $master;
ok !kill(0, $master), 'and it stopped';
