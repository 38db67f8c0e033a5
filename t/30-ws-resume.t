# In order, none lost, resumable (issue 13, parts 2 and 3): a WebSocket
# opened with since=<seq> is sent every event of its group above that seq
# from the database, then the live ones, with no gap and no duplicate at
# the seam, even while events keep coming; since past the end replays
# nothing; more than 1,000 behind is a "resync" (exactly 1,000 is still a
# replay); a replay never overflows chat_ws_send_queue; bad since values
# are a 400 before the upgrade; posts from three workers into one group
# reach the subscribers of every worker in seq order, without a gap.
#
# Three workers and a master; WebSockets connect to a reuseport listener,
# so the kernel spreads them over the workers (ChatTest::Workers pins one
# to a worker when a test needs it).
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Peer;
use ChatTest::WebSocket;
use ChatTest::Workers;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();

ChatTest::WebSocket::install_ws_script_hook();

master_on();
workers(3);
worker_connections(1024);
no_shuffle();
log_level('info');
no_root_location();

chat_blocks(db_timeout => '5s', reuseport => 1, own_http => 'append',
            request => "GET /t\n", timeout => 120);

# a WebSocket of $user in $group from since (undef: none) on any worker
sub resume {
    my ($user, $group, $since, %h) = @_;
    my $path = "/api/chat/ws/$group?token=" . ChatTest::JWT::token($user)
               . (defined $since ? "&since=$since" : '');
    my $ws = ChatTest::WebSocket::ws_connect(port => ws_port(), path => $path,
                                             name => $user, timeout => 5,
                                             headers => \%h);
    return ChatTest::Peer->new(ws => $ws, user => $user);
}

# the events with a seq that $peer gets until it has $last, or $timeout
sub events_to {
    my ($peer, $last, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 20);
    while (1) {
        my @e = grep { defined $_->{seq} } @{ $peer->{events} };
        return @e if @e && $e[-1]{seq} >= $last;
        my $left = $deadline - Time::HiRes::time();
        return @e if $left <= 0;
        $peer->pump($left) or return @e;
    }
}

# the group's events after $after, as the REST API lists them
sub db_events {
    my ($group, $after) = @_;
    my (@all, $next);
    $next = $after // 0;
    while (defined $next) {
        my $r = http()->get("/api/chat/groups/$group/messages?after=$next&limit=100");
        die "after=$next: $r->{status} $r->{body}\n" unless $r->{status} == 200;
        push @all, @{ $r->{json}{messages} };
        $next = $r->{json}{has_more} ? $r->{json}{next_after} : undef;
    }
    return @all;
}

sub post_n {
    my ($group, $n, $prefix) = @_;
    my $c = http('poster');
    my @seq;
    for my $i (1 .. $n) {
        my $r = $c->post("/api/chat/groups/$group/messages", { content => "$prefix $i" });
        die "post $i: $r->{status} $r->{body}\n" unless $r->{status} == 201;
        push @seq, $r->{json}{seq};
    }
    return @seq;
}

run_tests();

__DATA__

=== TEST 1: the seam: since=10 while 40 more events are posted meanwhile: every event 11..71 once, in order, each as the database has it, then live
--- ws_script
my $g = new_group('seam');
post_n($g, 30, 'before');
my $first = http('poster')->get("/api/chat/groups/$g/messages?after=0&limit=1")->{json}{messages}[0]{message}{id};
is http('poster')->delete("/api/chat/groups/$g/messages/$first")->{status}, 200, 'a deletion: seq 31';

# a poster in the background while the subscriber resumes: the replay
# and the live events overlap
my $bg = fork // die "fork: $!";
if ($bg == 0) {
    eval { post_n($g, 40, 'during') };
    POSIX::_exit($@ ? 1 : 0);
}
my $p = resume('bob', $g, 10);
is $p->ws->status, 101, 'the handshake with since=10';
my @got = events_to($p, 71, 30);
waitpid $bg, 0;
is $?, 0, 'the 40 posts in the background were stored';

is_deeply [ map { $_->{seq} } @got ], [ 11 .. 71 ],
    'seqs 11 to 71, each once, in order (the replay, the seam, the live ones)';
is_deeply \@got, [ db_events($g, 10) ], 'each event as the database lists it after 10';
is_deeply [ map { $_->{type} } grep { $_->{seq} == 31 } @got ], [ 'message_deleted' ],
    'seq 31 is the deletion';

my ($live) = post_n($g, 1, 'after');
is $live, 72, 'one more post: seq 72';
my @more = events_to($p, 72, 10);
is $more[-1]{seq}, 72, 'it comes live after the replay';
is scalar(@more), 62, 'and nothing else';
--- no_error_log
[alert]
[crit]



=== TEST 2: since at or past the group's last seq replays nothing; the live events follow; no since: live only
--- ws_script
my $g = new_group('past');
post_n($g, 5, 'old');
my $at = resume('bob', $g, 5);
my $past = resume('carol', $g, 1000);
my $none = resume('dave', $g);
is $_->ws->status, 101, 'handshake of ' . $_->user for $at, $past, $none;
my ($s) = post_n($g, 1, 'new');
is $s, 6, 'the next post is seq 6';
for my $p ($at, $past, $none) {
    my @e = events_to($p, 6, 10);
    is_deeply [ map { $_->{seq} } @e ], [ 6 ], $p->user . ' gets seq 6 only';
}
--- no_error_log
[alert]
[crit]



=== TEST 3: 1,000 behind is replayed in full; 1,001 behind is {"type":"resync","seq":<current>}, then live
--- ws_script
my $g = new_group('far');
post_n($g, 1005, 'bulk');
my $full = resume('bob', $g, 5);
my @e = events_to($full, 1005, 60);
is scalar(@e), 1000, 'since=5 with 1,005 events: the 1,000 after it';
is_deeply [ map { $_->{seq} } @e ], [ 6 .. 1005 ], 'in order, none twice';

my $far = resume('carol', $g, 4);
my $first = $far->pump(10);
is_deeply $first, { type => 'resync', seq => 1005 }, 'since=4 (1,001 behind): a resync at the current seq first';
my ($s) = post_n($g, 1, 'live');
my @live = grep { $_->{type} ne 'resync' } events_to($far, $s, 10);
is_deeply [ map { $_->{seq} } @live ], [ 1006 ], 'then live events only';
like error_log(), qr/chat ws: "carol" asked for the 1001 events of group \Q$g\E after seq 4, more than 1000: resync at 1005/,
    'the resync is logged';
--- no_error_log
[alert]
[crit]



=== TEST 4: a replay is paced by the send queue: 300 events with chat_ws_send_queue 8, none lost, the connection not closed as a slow consumer
--- http_config
chat_ws_send_queue 8;
--- ws_script
my $g = new_group('paced');
post_n($g, 300, 'paced');
my $p = resume('bob', $g, 0);
my @e = events_to($p, 300, 60);
is_deeply [ map { $_->{seq} } @e ], [ 1 .. 300 ], 'all 300, in order';
ok $p->ws->is_open, 'the connection is still open';
unlike error_log(), qr/closing the slow consumer/, 'no slow consumer was closed';
--- no_error_log
[alert]
[crit]



=== TEST 5: bad since: negative, not an integer, past 2^53, empty, given twice: 400 with a JSON detail before the upgrade
--- ws_script
my $g = new_group('bad');
my $t = ChatTest::JWT::token('bob');
for my $bad ('-1', 'abc', '1e3', '9007199254740993', '', '1&since=2') {
    my $ws = ChatTest::WebSocket::ws_connect(port => ws_port(), timeout => 5,
        path => "/api/chat/ws/$g?token=$t&since=$bad",
        headers => { 'X-Correlation-ID' => 'bad-since' });
    is $ws->status, 400, "since=$bad: 400";
    my $j = eval { JSON::PP->new->decode($ws->body) } // {};
    like $j->{detail} // '', $bad eq '1&since=2' ? qr/"since" is given more than once/
                                                 : qr/^since must be an integer from 0 to 9007199254740992$/,
        "since=$bad: the detail says why";
    is $j->{correlation_id}, 'bad-since', "since=$bad: with the correlation ID";
    ok !$ws->is_open, "since=$bad: no upgrade";
}
--- no_error_log
[alert]
[crit]



=== TEST 6: 3 publishers on 3 workers post 100 each into one group at once: the subscribers on every worker get seqs 1..300 in order, none missing
--- http_config
chat_ws_message_rate off;
--- ws_script
my %slot = three_workers();
my @pids = sort keys %slot;
my $g = new_group('three-writers');
my @subs = map { join_worker("sub$_", $g, on => $pids[$_]) } 0 .. 2;
my @pubs = map { join_worker("pub$_", $g, on => $pids[$_]) } 0 .. 2;
# windows of 8 a publisher (the messages a connection may have in
# flight), the three publishers at once
my %acked;
for (my $i = 1; $i <= 100; $i += 8) {
    my @window = grep { $_ <= 100 } $i .. $i + 7;
    for my $p (@pubs) { $p->send_message($p->user . " $_") for @window }
    for my $p (@pubs) {
        for (@window) {
            my $a = $p->acked($p->user . " $_", 10);
            $acked{ $p->pid }++ if $a && $a->{type} eq 'ack';
        }
    }
}
for my $s (@subs) {
    my @e = events_to($s, 300, 60);
    is_deeply [ map { $_->{seq} } @e ], [ 1 .. 300 ],
        'the subscriber on worker ' . $s->pid . ': 1..300 in order';
}
my %stored_by = %acked;
is_deeply [ map { $stored_by{$_} } @pids ], [ 100, 100, 100 ], 'each worker stored 100 of them';
--- no_error_log
[alert]
[crit]
