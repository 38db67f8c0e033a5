# A seq taken but never claimed, passed by the readers as a gap for good,
# and handed out again later by a seq counter that stepped back (FerretDB
# runs $inc through findAndModify as a read then a write: a stale write
# puts the counter below seqs already taken; bench/tools/seqprobe.c
# measures it): the late event must not be stored below what the
# subscribers delivered, where every one of them would drop it as old.
# The reader that passes such a seq voids it first (a "void" record in
# seqs, whose unique _id refuses the late claim: the take takes the next
# seq).  And an event that still comes for a seq a worker passed (from
# another host, or a write that landed after the settle time) is dropped
# in order, but logged and counted.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Script;
use ChatTest::WebSocket;
use ChatTest::MongoWire;
use ChatTest::Cluster qw(:all);
use JSON::PP ();

our @Nats;
if (!system('sh', '-c', 'command -v nats-server >/dev/null')) {
    @Nats = (start_nats());
    $ENV{TEST_NGINX_NATS_URL} = $Nats[0]{url};
} else {
    $ENV{TEST_NGINX_NATS_URL} = 'nats://127.0.0.1:1';
}

master_on();
workers(1);
no_shuffle();
log_level('info');
no_root_location();

# a seq is settled 2 x chat_db_timeout after it was taken
chat_blocks(db_timeout => '1s', timeout => 60, request => "GET /t\n");

# the message events one WebSocket got (their seqs and contents), read
# until one of $want's content came or $timeout passed
sub heard_until {
    my ($ws, $seen, $want, $timeout) = @_;
    my $J = JSON::PP->new->utf8;
    my $deadline = Time::HiRes::time() + $timeout;
    while (Time::HiRes::time() < $deadline) {
        return 1 if grep { $_->[1] eq $want } @$seen;
        my $f = $ws->recv_message(timeout => $deadline - Time::HiRes::time())
            or return 0;
        my $e = eval { $J->decode($f->{payload}) } or next;
        push @$seen, [ $e->{seq}, $e->{message}{content} ] if $e->{type} eq 'message';
    }
    return scalar grep { $_->[1] eq $want } @$seen;
}

run_tests();

__DATA__

=== TEST 1: a seq never claimed, passed by a live subscriber's gap fill as a gap for good, then handed out again by a counter that stepped back: the late message takes a fresh seq above everything delivered, and the subscriber gets it, in order
--- timeout: 60
--- chat_script
use ChatTest::MongoWire qw(doc);
use Time::HiRes ();
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my ($alice, $g, $ws) = subscribed_group('alice', 'seq-holes');
my @seen;

is $alice->post("/api/chat/groups/$g/messages", { content => 'one' })->{json}{seq}, 1, 'seq 1';
ok main::heard_until($ws, \@seen, 'one', 10), 'seq 1 delivered live';

# seq 2 taken ($inc) by a take whose claim insert then failed: never claimed
is set_group_seq($db, $g, 2), 1, 'seq 2 taken, never claimed';

is $alice->post("/api/chat/groups/$g/messages", { content => 'three' })->{json}{seq}, 3, 'seq 3';
my $t0 = Time::HiRes::time();
ok main::heard_until($ws, \@seen, 'three', 15), 'seq 3 delivered once 2 is a gap for good';
cmp_ok Time::HiRes::time() - $t0, '>', 1.5, 'after the settle time (2 x chat_db_timeout)';

# the counter steps back (a stale read-modify-write of it): the next take
# gets seq 2 again, which nobody claimed
is set_group_seq($db, $g, 1), 1, 'the counter stepped back to 1';
my $late = $alice->post("/api/chat/groups/$g/messages", { content => 'late' });
is $late->{status}, 201, 'the late message is stored';
cmp_ok $late->{json}{seq}, '>', 3, 'with a seq above every one delivered ('
    . ($late->{json}{seq} // 'none') . '), not the passed seq 2';
ok main::heard_until($ws, \@seen, 'late', 10), 'the live subscriber gets it';
is_deeply [ map { $_->[1] } @seen ], [ 'one', 'three', 'late' ], 'each once, in order';
is_deeply [ map { $_->[0] } @seen ], [ 1, 3, $late->{json}{seq} ], 'by seq';

my $list = $alice->get("/api/chat/groups/$g/messages?after=0")->{json}{messages};
is_deeply [ map { $_->{message}{content} } @$list ], [ 'one', 'three', 'late' ],
    'after=0 lists the same, in the same order';
my $rec = $db->command([ find => 'seqs', filter => doc(_id => "$g:2") ]);
is $rec->{cursor}{firstBatch}[0]{type}, 'void', 'seq 2 is voided in seqs';
--- no_error_log
not delivered live
[crit]



=== TEST 2: an event that comes (from another host) for a seq this worker passed as a gap for good is not delivered out of order: dropped, logged and counted; one delivered already is dropped silently
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_db_timeout 1s;
chat_host_name host-1;
chat_cluster $TEST_NGINX_NATS_URL;
--- skip_eval: 1: !@main::Nats
--- timeout: 60
--- chat_script
use IO::Socket::INET;
use Time::HiRes ();
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my ($alice, $g, $ws) = subscribed_group('alice', 'late-from-afar');
my $deadline = Time::HiRes::time() + 10;
Time::HiRes::sleep(0.05)
    until ChatTest::Cluster::nats_subscribed(\@main::Nats, "chat.g.$g") || Time::HiRes::time() > $deadline;
ok ChatTest::Cluster::nats_subscribed(\@main::Nats, "chat.g.$g"), 'the worker follows the group on NATS';
my @seen;

is $alice->post("/api/chat/groups/$g/messages", { content => 'one' })->{json}{seq}, 1, 'seq 1';
ok main::heard_until($ws, \@seen, 'one', 10), 'seq 1 delivered live';

# seq 2 claimed a minute ago by a message write that never landed: a gap
# for good for the fill that seq 3 starts
is set_group_seq($db, $g, 2), 1, 'seq 2 taken';
is claim_seqs($db, $g, int(Time::HiRes::time() * 1000) - 60_000, '6d', 2), 1,
    'and claimed a minute ago';
is $alice->post("/api/chat/groups/$g/messages", { content => 'three' })->{json}{seq}, 3, 'seq 3';
ok main::heard_until($ws, \@seen, 'three', 10), 'seq 3 delivered, 2 passed';

# another host's event for seq 2 after all, and one for seq 3 again
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $main::Nats[0]{client_port})
    or die "nats: $!";
<$s>;                                           # INFO
print $s qq{CONNECT {"verbose":false,"pedantic":false}\r\n};
for ([ 2, 'two, late' ], [ 3, 'three again' ]) {
    my $json = JSON::PP->new->canonical->encode({ type => 'message', seq => $_->[0],
        message => { id => '6d000000000000000000000' . $_->[0], group_id => $g,
                     user_id => 'alice', content => $_->[1] } });
    my $event = 'CHC1' . pack('Q<', 42) . pack('q<', $_->[0]) . $g . $json;
    print $s "PUB chat.g.$g " . length($event) . "\r\n$event\r\n";
}
print $s "PING\r\n";
like scalar <$s>, qr/^PONG/, 'both published';
close $s;

$alice->post("/api/chat/groups/$g/messages", { content => 'four' });
ok main::heard_until($ws, \@seen, 'four', 10), 'the next event still comes';
is_deeply [ map { $_->[1] } @seen ], [ 'one', 'three', 'four' ],
    'neither late event delivered: order kept';
--- error_log eval
qr/chat group [0-9a-f]{24}: event seq 2 came after this worker passed it as a gap for good \(seqs 2 to 2\): not delivered live, 1 so far/
--- no_error_log
event seq 3 came after
[crit]



=== TEST 3: a bucket sealed by a read of the newest page voids the never-claimed seq it leaves out: a take that gets that seq again from a counter that stepped back takes a fresh one
--- timeout: 60
--- chat_script
use ChatTest::MongoWire qw(doc);
use Time::HiRes ();
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'seal-holes' })->{json}{id};
$alice->post("/api/chat/groups/$g/messages", { content => "m$_" }) for 1 .. 4;
is set_group_seq($db, $g, 5), 1, 'seq 5 taken, never claimed';
my @seqs = map { $alice->post("/api/chat/groups/$g/messages", { content => "m$_" })->{json}{seq} } 6 .. 16;
is_deeply \@seqs, [ 6 .. 16 ], 'seqs 6 to 16: the first bucket (1 to 16) is full';

Time::HiRes::sleep(2.5);                        # 5 is settled: 2 x chat_db_timeout
my $page = $alice->get("/api/chat/groups/$g/messages");
is $page->{status}, 200, 'the newest page';
is scalar @{ $page->{json}{messages} }, 15, 'its 15 messages';
my $find = sub { $db->command([ find => 'seqs', filter => doc(_id => $_[0]) ])->{cursor}{firstBatch}[0] };
ok $find->("$g:b0"), 'the read sealed the first bucket';
is +($find->("$g:5") // {})->{type}, 'void', 'and voided seq 5, which it leaves out';

is set_group_seq($db, $g, 4), 1, 'the counter stepped back to 4';
is $alice->post("/api/chat/groups/$g/messages", { content => 'late' })->{json}{seq}, 17,
    'the late message takes seq 17, not the passed seq 5';
my $list = $alice->get("/api/chat/groups/$g/messages?after=0")->{json}{messages};
is_deeply [ map { $_->{message}{content} } @$list ], [ (map { "m$_" } 1 .. 4, 6 .. 16), 'late' ],
    'after=0: every message once, in order';
--- no_error_log
[crit]
