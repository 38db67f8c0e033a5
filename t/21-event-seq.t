# The per-group event sequence (issue 13, part 1): every event of a group
# (a message created, a message deleted) takes the group's next seq, 1, 2,
# 3..., distinct and gapless even under concurrent posts from several
# connections on two workers; the seq is in every answer and WebSocket
# event about it; GET .../messages?after=N walks the events after N,
# oldest first, deletions included, a page at a time with next_after; bad
# "after" values are a 400 with a JSON detail; a page never walks past a
# seq that may still be written; a database of today's shape
# (messages without seq) still lists; the seq lock of a group never keeps
# pool threads past chat_db_timeout.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Script;
use ChatTest::WebSocket;
use ChatTest::MongoWire;
use ChatTest::PausableDB;
use JSON::PP ();

master_on();
workers(2);
no_shuffle();
log_level('info');
no_root_location();

# a second server with "reuseport": concurrent posts are stored by both
# workers
chat_blocks(db_timeout => '5s', reuseport => 1, timeout => 60);

# a "pausable database" (ChatTest::PausableDB): SIGSTOP on its pid holds
# every reply, as a stopped database does
$ENV{TEST_NGINX_PAUSABLE_URI} = ChatTest::PausableDB::start($ENV{TEST_NGINX_CHAT_URI})
    // $ENV{TEST_NGINX_CHAT_URI};
our $ProxyPid = ChatTest::PausableDB::pid();

our $alice = ChatTest::JWT::bearer('alice');
our $nogroup = '5f0000000000000000000000';

run_tests();

__DATA__

=== TEST 1: seqs 1, 2, 3... per group, independent between groups, in the POST answer and in the listing
--- request
GET /t
--- chat_script
my $alice = client('alice');
my $g1 = $alice->post('/api/chat/groups', { name => 'seq-one' })->{json}{id};
my $g2 = $alice->post('/api/chat/groups', { name => 'seq-two' })->{json}{id};

my @s1 = map { $alice->post("/api/chat/groups/$g1/messages", { content => "a$_" })->{json}{seq} } 1 .. 3;
my @s2 = map { $alice->post("/api/chat/groups/$g2/messages", { content => "b$_" })->{json}{seq} } 1 .. 2;
push @s1, $alice->post("/api/chat/groups/$g1/messages", { content => 'a4' })->{json}{seq};
is_deeply \@s1, [1, 2, 3, 4], 'group 1: 1, 2, 3, 4';
is_deeply \@s2, [1, 2], 'group 2 counts on its own: 1, 2';

my $r = $alice->post("/api/chat/groups/$g1/messages", { content => 'a5' });
like $r->{body}, qr/"seq":5\}$/, 'the answer is JSON with an integer seq, last';

my $l = $alice->get("/api/chat/groups/$g1/messages");
is_deeply [ map { $_->{seq} } @{ $l->{json}{messages} } ], [5, 4, 3, 2, 1],
    'the listing (newest first) carries each message\'s seq';
is $alice->post("/api/chat/groups/$::nogroup/messages", { content => 'x' })->{status}, 404,
    'no group, no seq: 404';



=== TEST 2: 50 POSTs to one group, 10 at a time from 10 connections on two workers: seqs exactly 1..50, and every message stored once
--- request
GET /t
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'seq-race' })->{json}{id};
my $token = ChatTest::JWT::token('alice');
my (@seqs, @bad);
for my $round (1 .. 5) {
    my @raw = map {
        my $body = qq({"content":"r$round-$_"});
        "POST /api/chat/groups/$g/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        . "Authorization: Bearer $token\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body"
    } 1 .. 10;
    my @res = ChatTest::Client::read_until_closed(20,
        ChatTest::Client::send_raw($ENV{TEST_NGINX_RAND_PORT_1}, @raw));
    for my $res (@res) {
        if (defined $res && $res =~ m{^HTTP/1\.1 201 } && $res =~ /"seq":(\d+)\}$/) {
            push @seqs, $1;
        } else {
            push @bad, $res // '(no answer)';
        }
    }
}
is scalar @bad, 0, 'every POST answered 201 with a seq' or diag explain \@bad;
is_deeply [ sort { $a <=> $b } @seqs ], [ 1 .. 50 ], 'distinct and gapless: 1..50';

my $l = $alice->get("/api/chat/groups/$g/messages?limit=100");
is scalar @{ $l->{json}{messages} }, 50, '50 stored';
is_deeply [ sort { $a <=> $b } map { $_->{seq} } @{ $l->{json}{messages} } ], [ 1 .. 50 ],
    'the stored seqs are the answered ones';

my $m = $l->{json}{messages}[0];
my $d = $alice->delete("/api/chat/groups/$g/messages/$m->{id}");
is $d->{json}{seq}, 51, 'the next event, a deletion, takes 51';



=== TEST 3: a deletion takes the next seq: in its answer and in the message_deleted event; message events and acks carry the message's seq
--- request
GET /t
--- chat_script
my $J = JSON::PP->new->utf8;
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'seq-ws' })->{json}{id};
my $ws = ChatTest::WebSocket->connect(port => port(),
    path => "/api/chat/ws/$g?token=" . ChatTest::JWT::token('alice'));
is $ws->status, 101, 'subscribed';

my $next = sub {
    my ($type) = @_;
    for (1 .. 10) {
        my $f = $ws->recv_message(timeout => 5) or return undef;
        my $e = eval { $J->decode($f->{payload}) } or next;
        return $e if $e->{type} eq $type;
    }
    return undef;
};

my $m1 = $alice->post("/api/chat/groups/$g/messages", { content => 'one' })->{json};
is $m1->{seq}, 1, 'POST: seq 1';
my $e = $next->('message');
is $e->{seq}, 1, 'the message event carries seq 1';
is $e->{message}{seq}, 1, 'and so does its message';
is_deeply $e->{message}, $m1, 'the message as the POST answered it';

# the sender is a subscriber too: its broadcast comes first, then the ack
$ws->send_text('{"type":"message","content":"two"}');
my %got = map { my $f = $ws->recv_message(timeout => 5);
                my $x = $f && eval { $J->decode($f->{payload}) };
                $x ? ($x->{type} => $x) : () } 1 .. 2;
is $got{ack}{message}{seq}, 2, 'the ack carries the stored message, seq 2';
is $got{ack}{message}{content}, 'two', 'the ack is of "two"';
is $got{message}{seq}, 2, 'its broadcast: seq 2';
is_deeply $got{message}{message}, $got{ack}{message}, 'the same message';

my $d = $alice->delete("/api/chat/groups/$g/messages/$m1->{id}");
is $d->{status}, 200, 'deleted';
is $d->{json}{seq}, 3, 'the deletion is event 3';
is $d->{json}{id}, $m1->{id}, 'of message one';
$e = $next->('message_deleted');
is_deeply $e, { type => 'message_deleted', message_id => $m1->{id}, group_id => $g, seq => 3 },
    'message_deleted carries the deletion\'s seq';

is $alice->delete("/api/chat/groups/$g/messages/$m1->{id}")->{status}, 404,
    'deleting again is a 404';
is $alice->post("/api/chat/groups/$g/messages", { content => 'four' })->{json}{seq}, 4,
    'a refused delete takes no seq: the next event is 4';
$ws->close(code => 1000);



=== TEST 4: after=: the events after a seq, oldest first, deletions as items, next_after; an exact walk of more events than a page
--- request
GET /t
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'seq-walk' })->{json}{id};
my (@expect, %msg);
for my $i (1 .. 23) {
    my $m = $alice->post("/api/chat/groups/$g/messages", { content => "m$i" })->{json};
    $msg{$i} = $m;
    push @expect, "message $m->{seq} $m->{id}";
    if ($i % 5 == 0) {           # delete an earlier one now and then
        my $victim = $msg{$i - 3};
        my $d = $alice->delete("/api/chat/groups/$g/messages/$victim->{id}")->{json};
        push @expect, "message_deleted $d->{seq} $victim->{id}";
    }
}
is scalar @expect, 27, '23 messages and 4 deletions: 27 events';

my $all = $alice->get("/api/chat/groups/$g/messages?after=0&limit=100");
is $all->{status}, 200, 'after=0';
is_deeply [ map { $_->{seq} } @{ $all->{json}{messages} } ], [ 1 .. 27 ], 'oldest first: 1..27';
ok !$all->{json}{has_more}, 'has_more false';
ok exists $all->{json}{next_after} && !defined $all->{json}{next_after}, 'next_after null at the end';
is $all->{json}{group_id}, $g, 'group_id';
is $all->{json}{limit}, 100, 'limit';

my ($first) = @{ $all->{json}{messages} };
is_deeply $first, { type => 'message', seq => 1, message => $msg{1} },
    'a message item is the WebSocket event: {type, message, seq}';
my ($del) = grep { $_->{type} eq 'message_deleted' } @{ $all->{json}{messages} };
is_deeply $del, { type => 'message_deleted', seq => 6, message_id => $msg{2}{id}, group_id => $g },
    'a deletion item is the WebSocket event: {type, message_id, group_id, seq}';
my ($gone) = grep { $_->{type} eq 'message' && $_->{message}{id} eq $msg{2}{id} } @{ $all->{json}{messages} };
ok $gone->{message}{is_deleted}, 'a message deleted since keeps its place, marked is_deleted';
ok !exists $gone->{message}{content}, 'without its content';

# the walk, 5 at a time
my @seen;
my ($after, $pages) = (0, 0);
while (defined $after) {
    my $r = $alice->get("/api/chat/groups/$g/messages?after=$after&limit=5");
    is $r->{status}, 200, "page after $after" or last;
    last if ++$pages > 10;
    my @ev = @{ $r->{json}{messages} };
    push @seen, map { "$_->{type} $_->{seq} " . ($_->{message_id} // $_->{message}{id}) } @ev;
    $after = $r->{json}{next_after};
    if (defined $after) {
        is $after, $ev[-1]{seq}, 'next_after is the last seq of the page';
        ok $r->{json}{has_more}, 'has_more while next_after';
    }
}
is $pages, 6, '27 events in 6 pages of 5';
is_deeply \@seen, \@expect, 'the walk: every event once, in seq order, deletions included';

my $mid = $alice->get("/api/chat/groups/$g/messages?after=24");
is_deeply [ map { $_->{seq} } @{ $mid->{json}{messages} } ], [ 25, 26, 27 ], 'after=24: 25, 26, 27';
my $end = $alice->get("/api/chat/groups/$g/messages?after=27");
is_deeply $end->{json}{messages}, [], 'after the last: no events';
ok !defined $end->{json}{next_after}, 'and next_after null';
is $alice->get("/api/chat/groups/$g/messages?after=9007199254740992")->{status}, 200, 'after=2^53 is accepted';
is $alice->get("/api/chat/groups/$::nogroup/messages?after=0")->{status}, 404, 'no group: 404';

# today's before and page still work beside it
my $p2 = $alice->get("/api/chat/groups/$g/messages?limit=5&page=2");
is_deeply [ map { $_->{seq} } @{ $p2->{json}{messages} } ], [ 21, 19, 17, 16, 15 ],
    'page=2 (newest first, deleted ones left out) unchanged';
my $b = $alice->get("/api/chat/groups/$g/messages?limit=2&before=$msg{23}{id}");
is_deeply [ map { $_->{content} } @{ $b->{json}{messages} } ], [ 'm22', 'm21' ], 'before unchanged';



=== TEST 5: bad after values answer 400 with a JSON detail
--- request eval
[map { "GET /api/chat/groups/$::nogroup/messages?$_" } "after=-1", "after=abc", "after=1.5", "after=", "after=%2B1", "after=9007199254740993", "after=99999999999999999999999", "after=1&after=2", "after=1&before=5f0000000000000000000001", "after=1&page=2", "page=1&limit=3&AFTER=0"]
--- more_headers eval
[($::alice) x 11]
--- error_code eval
[(400) x 11]
--- response_body_like eval
[('^\{"detail":"after must be an integer from 0 to 9007199254740992","correlation_id":"[^"]+"\}$') x 7,
 '^\{"detail":"query parameter \\\\"after\\\\" is given more than once","correlation_id":"[^"]+"\}$',
 ('^\{"detail":"after cannot be combined with before or page","correlation_id":"[^"]+"\}$') x 3]



=== TEST 6: data of today's shape written after the migration at start (a group and messages without seq: an old worker's, during an upgrade) still lists; new events number from 1; an old message deleted is numbered first
--- request
GET /t
--- chat_script
use ChatTest::MongoWire qw(oid date bool doc);
use Time::HiRes qw(sleep);
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
# the migration of worker 0 (t/24-migration.t) is over before this data
my $migrated = sub {
    open my $fh, '<', Test::Nginx::Socket::server_root() . '/logs/error.log' or return 0;
    return scalar grep { /migrated to the event log/ } <$fh>;
};
my $n = 0;
sleep 0.1 while !$migrated->() && $n++ < 100;
ok $migrated->(), 'the migration at start is over';
my ($g, $m1, $m2) = ('6a0000000000000000000001', '6a0000000000000000000002', '6a0000000000000000000003');
my $now = int(time * 1000) - 60_000;
my $r = $db->command([ insert => 'groups', documents => [
    doc(_id => oid($g), name => 'old', created_at => date($now), created_by => 'alice') ] ]);
is $r->{ok}, 1, 'a group without seq';
$r = $db->command([ insert => 'messages', documents => [
    map { doc(_id => oid($_->[0]), group_id => oid($g), user_id => 'alice', content => $_->[1],
              created_at => date($_->[2]), is_deleted => bool(0)) }
        [ $m1, 'old one', $now ], [ $m2, 'old two', $now + 1 ] ] ]);
is $r->{n}, 2, 'two messages without seq';

my $alice = client('alice');
my $l = $alice->get("/api/chat/groups/$g/messages");
is $l->{status}, 200, 'the listing works';
is_deeply [ map { $_->{content} } @{ $l->{json}{messages} } ], [ 'old two', 'old one' ], 'both listed';
ok !grep({ exists $_->{seq} } @{ $l->{json}{messages} }), 'without seq, none invented';
is_deeply $alice->get("/api/chat/groups/$g/messages?after=0")->{json}{messages}, [],
    'after=0: they are no events of the sequence';

is $alice->post("/api/chat/groups/$g/messages", { content => 'new' })->{json}{seq}, 1,
    'the group\'s first event is 1';
my $d = $alice->delete("/api/chat/groups/$g/messages/$m1");
is $d->{json}{seq}, 3, 'deleting an old message: its creation is numbered first (2), its deletion is event 3';
my $ev = $alice->get("/api/chat/groups/$g/messages?after=0")->{json}{messages};
is_deeply [ map { "$_->{type} $_->{seq}" } @$ev ], [ 'message 1', 'message 2', 'message_deleted 3' ],
    'after=0: the new message, the old one\'s creation, its deletion';
is $ev->[1]{message}{id}, $m1, 'the creation of the old message';
is $ev->[2]{message_id}, $m1, 'the deletion of the old message';
$l = $alice->get("/api/chat/groups/$g/messages");
is_deeply [ map { $_->{content} } @{ $l->{json}{messages} } ], [ 'new', 'old two' ], 'old and new listed together';



=== TEST 7: a database that stops answering: 12 posts to one group waiting for its seq lock each give up at chat_db_timeout, not one timeout after another
--- http_config
chat_mongo_uri "$TEST_NGINX_PAUSABLE_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_db_timeout 1s;
--- request
GET /t
--- timeout: 30
--- chat_script
SKIP: {
skip 'needs the suite\'s database on one local host (not MONGO_URI with several)', 3
    unless $main::ProxyPid;
use Time::HiRes qw(time sleep);
my $g = client('alice')->post('/api/chat/groups', { name => 'seq-stall' })->{json}{id};
my $token = ChatTest::JWT::token('alice');
my $count = sub {
    open my $fh, '<', Test::Nginx::Socket::server_root() . '/logs/error.log' or return 0;
    return scalar grep { /chat storage: take seq: / } <$fh>;
};
my $before = $count->();

kill 'STOP', $main::ProxyPid;          # every reply held from now on
my @raw = map {
    my $body = qq({"content":"stalled $_"});
    "POST /api/chat/groups/$g/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    . "Authorization: Bearer $token\r\nContent-Type: application/json\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n$body"
} 1 .. 12;
my $t0 = time;
my @res = ChatTest::Client::read_until_closed(10, ChatTest::Client::send_raw(port(), @raw));
is scalar(grep { defined && m{^HTTP/1\.1 503 } } @res), 12, 'each answered 503';

# one holder per worker times out (1 s) while it holds the lock; the
# others stop waiting for it at their own 1 s: every operation is over
# well before a second holder could have timed out
sleep 0.1 while $count->() - $before < 12 && time - $t0 < 2.5;
my $took = time - $t0;
kill 'CONT', $main::ProxyPid;
is $count->() - $before, 12, 'every operation ended, each with its "take seq" error logged';
cmp_ok $took, '<', 2.5, sprintf 'all within 2.5 s of the posts (%.2f s)', $took;
}



=== TEST 8: after= never walks past a seq that may still be written: a page ends before a missing seq while the event after it is young (2 x chat_db_timeout), then the missing seq is a gap for good
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_db_timeout 1s;
--- request
GET /t
--- timeout: 30
--- chat_script
use ChatTest::MongoWire qw(oid date i64 bool doc);
use Time::HiRes qw(time sleep);
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'seq-late' })->{json}{id};
$alice->post("/api/chat/groups/$g/messages", { content => "m$_" }) for 1 .. 2;

# the events of seqs 4 and 3 written as a slow operation would: 4 first.
# Seqs 3 to 6 taken ($inc), then each event's record (its claim in seqs)
# and its message (ngx_http_chat_event_log.c: the states of a seq)
is set_group_seq($db, $g, 6), 1, 'seqs up to 6 taken';
my $record = sub {
    my ($hex, $seq) = @_;
    $db->command([ insert => 'seqs', documents => [
        doc(_id => "$g:$seq", group_id => oid($g), seq => i64($seq), type => 'message',
            message_id => oid($hex), at => date(int(time * 1000))) ] ]);
};
my $put = sub {
    my ($hex, $seq) = @_;
    $record->($hex, $seq) unless $_[2];
    $db->command([ insert => 'messages', documents => [
        doc(_id => oid($hex), group_id => oid($g), user_id => 'alice', content => "late $seq",
            created_at => date(int(time * 1000)), seq => i64($seq), is_deleted => bool(0)) ] ]);
};
my $seqs = sub { [ map { $_->{seq} } @{ $alice->get("/api/chat/groups/$g/messages?after=$_[0]")->{json}{messages} } ] };

is $record->('6c0000000000000000000003', 3)->{n}, 1, 'seq 3 claimed, its message not written yet';
is $put->('6c0000000000000000000004', 4)->{n}, 1, 'seq 4 stored while 3 is not yet';
my $r = $alice->get("/api/chat/groups/$g/messages?after=0");
is_deeply [ map { $_->{seq} } @{ $r->{json}{messages} } ], [ 1, 2 ], 'after=0: 1, 2, and not past the missing 3';
ok !$r->{json}{has_more} && !defined $r->{json}{next_after}, 'no more for now';
is_deeply $seqs->(2), [], 'after=2: nothing yet';

is $put->('6c0000000000000000000003', 3, 'claimed already')->{n}, 1, 'seq 3 lands';
is_deeply $seqs->(2), [ 3, 4 ], 'after=2: 3, 4: the walk from the last seq seen missed nothing';

# a seq never claimed (5): held back while the event after it is young, then a gap
$put->('6c0000000000000000000006', 6);
is_deeply $seqs->(4), [], 'after=4: 5 is missing and 6 is young: nothing yet';
my $t0 = time;
sleep 0.25 while time - $t0 < 8 && !@{ $seqs->(4) };
is_deeply $seqs->(4), [ 6 ], 'then 6, 5 a gap for good';
cmp_ok time - $t0, '>', 1.5, sprintf 'after about 2 x chat_db_timeout (%.1f s)', time - $t0;



=== TEST 9: an after= page resolves at most 2 x limit + 64 seqs: a long run of gaps is walked over a page at a time (has_more, next_after), nothing skipped
--- request
GET /t
--- timeout: 30
--- chat_script
use ChatTest::MongoWire qw(oid date i64 doc);
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'seq-gaps' })->{json}{id};
is $alice->post("/api/chat/groups/$g/messages", { content => 'first' })->{json}{seq}, 1, 'seq 1';

# seqs 2..200 taken and claimed a minute ago by writes that failed: gaps
my $old = int(time * 1000) - 60_000;
is set_group_seq($db, $g, 200), 1, 'seqs up to 200 taken';
is claim_seqs($db, $g, $old, '6e', 2 .. 200), 199, '199 records whose message never came';
is $alice->post("/api/chat/groups/$g/messages", { content => 'last' })->{json}{seq}, 201, 'seq 201';

my ($after, @seen, @pages) = (0);
for (1 .. 20) {
    my $p = $alice->get("/api/chat/groups/$g/messages?after=$after&limit=1")->{json};
    push @pages, [ scalar @{ $p->{messages} }, $p->{has_more} ? 1 : 0, $p->{next_after} ];
    push @seen, map { $_->{seq} } @{ $p->{messages} };
    last unless $p->{has_more};
    $after = $p->{next_after};
}
is_deeply \@seen, [ 1, 201 ], 'both events, the gaps passed over';
is_deeply $pages[0], [ 1, 1, 66 ], 'page 1: seq 1, then the bound (66 seqs resolved): has_more, next_after 66';
is_deeply $pages[1], [ 0, 1, 132 ], 'page 2: gaps only, up to the bound: next_after 132';
is_deeply [ map { $_->[2] } @pages ], [ 66, 132, 198, undef ], 'four pages: next_after 66, 132, 198, then 201 and the end';



=== TEST 10: the newest page walks back at most 4 x (limit + 1) + 64 events; past that (many deletions) it is read by a scan instead, with the same answer
--- request
GET /t
--- timeout: 60
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'seq-deleted' })->{json}{id};
my @ids = map { $alice->post("/api/chat/groups/$g/messages", { content => "m$_" })->{json}{id} } 1 .. 42;
is scalar(grep { $alice->delete("/api/chat/groups/$g/messages/$_")->{status} == 200 } @ids[2 .. 41]), 40,
    'the 40 newest deleted: 80 events above m2';
my $count = sub {
    open my $fh, '<', Test::Nginx::Socket::server_root() . '/logs/error.log' or return 0;
    return scalar grep { /chat api: newest page: \d+ events walked back/ } <$fh>;
};
my $before = $count->();

my $l = $alice->get("/api/chat/groups/$g/messages?limit=1")->{json};
is_deeply [ map { $_->{content} } @{ $l->{messages} } ], [ 'm2' ], 'limit=1: m2 (72 events walked: scanned)';
ok $l->{has_more} && $l->{next_before} eq $ids[1], 'has_more, next_before m2';
is $count->() - $before, 1, 'the scan logged';

$l = $alice->get("/api/chat/groups/$g/messages")->{json};
is_deeply [ map { $_->{content} } @{ $l->{messages} } ], [ 'm2', 'm1' ], 'limit=50: m2, m1, from the log';
ok !$l->{has_more}, 'no more';
is $count->() - $before, 1, 'no scan';



=== TEST 11: racing deletes of one message, 8 at once from 8 connections on two workers, 5 times: exactly one wins (200), the others 404; the log has one deletion each; the message is marked by it
--- request
GET /t
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'delete-race' })->{json}{id};
my $token = ChatTest::JWT::token('alice');
my @ids = map { $alice->post("/api/chat/groups/$g/messages", { content => "d$_" })->{json}{id} } 1 .. 5;
my (@won, @bad);
for my $id (@ids) {
    my @raw = map {
        "DELETE /api/chat/groups/$g/messages/$id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        . "Authorization: Bearer $token\r\n\r\n"
    } 1 .. 8;
    my @res = ChatTest::Client::read_until_closed(20,
        ChatTest::Client::send_raw($ENV{TEST_NGINX_RAND_PORT_1}, @raw));
    push @won, scalar grep { defined && m{^HTTP/1\.1 200 } } @res;
    push @bad, grep { !defined || !m{^HTTP/1\.1 (200|404) } } @res;
}
is_deeply \@won, [ 1, 1, 1, 1, 1 ], 'one winner of each race';
is scalar @bad, 0, 'the others: 404' or diag explain \@bad;
my @ev = @{ $alice->get("/api/chat/groups/$g/messages?after=5&limit=100")->{json}{messages} };
is_deeply [ sort map { $_->{message_id} } grep { $_->{type} eq 'message_deleted' } @ev ], [ sort @ids ],
    'after=5: one deletion event per message';
is scalar @ev, 5, 'and no other (the losers\' seqs are gaps)';
is_deeply $alice->get("/api/chat/groups/$g/messages")->{json}{messages}, [], 'all marked deleted';



=== TEST 12: buckets: a walk seals each full range of 16 final seqs into one document; a message deleted after its bucket was sealed is listed without its text (the deletion found later in the log, or, more than 1024 seqs on, by its claim) and left out of the newest page
--- request
GET /t
--- timeout: 30
--- chat_script
use ChatTest::MongoWire qw(oid date i64 doc);
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'buckets' })->{json}{id};
my @ids = map { $alice->post("/api/chat/groups/$g/messages", { content => "b$_" })->{json}{id} } 1 .. 20;
my $bucket = sub {
    my $r = $db->command([ find => 'seqs', filter => doc(_id => "$g:b$_[0]") ]);
    return $r->{cursor}{firstBatch}[0];
};

is scalar @{ $alice->get("/api/chat/groups/$g/messages?after=0&limit=100")->{json}{messages} }, 20, 'after=0: 20 events';
my $b0 = $bucket->(0);
ok $b0, 'seqs 1..16 sealed in bucket 0';
my $events = $b0 ? ChatTest::MongoWire::decode($b0->{events})->{events} : [];
is_deeply [ map { $_->{s} } @$events ], [ 1 .. 16 ], 'with its 16 events (packed as binary)';
is $events->[2]{c}, 'b3', 'each with its message';
ok !$bucket->(1), 'seqs 17..20: not a full bucket, not sealed';

is $alice->delete("/api/chat/groups/$g/messages/$ids[2]")->{json}{seq}, 21, 'b3 deleted: seq 21';
my $ev = $alice->get("/api/chat/groups/$g/messages?after=0&limit=100")->{json}{messages};
is scalar @$ev, 21, 'after=0: 21 events';
ok $ev->[2]{message}{is_deleted} && !exists $ev->[2]{message}{content}, 'b3, read from the sealed bucket: without its text';
is $ev->[20]{type}, 'message_deleted', 'and its deletion, 21';
$ev = $alice->get("/api/chat/groups/$g/messages?after=0&limit=5")->{json};
ok $ev->{messages}[2]{message}{is_deleted}, 'a page of 5: the deletion found further on in the log';
is_deeply [ map { $_->{content} } @{ $alice->get("/api/chat/groups/$g/messages?limit=100")->{json}{messages} } ],
    [ map { "b$_" } reverse 1, 2, 4 .. 20 ], 'the newest page: without b3';

# 1,100 seqs more, taken a minute ago by writes that failed: the deletion
# of b3 is now more than 1024 seqs after a page of 5
my $old = int(time * 1000) - 60_000;
set_group_seq($db, $g, 1121);
is claim_seqs($db, $g, $old, '6f', 22 .. 1121), 1100, '1,100 gaps';
$ev = $alice->get("/api/chat/groups/$g/messages?after=0&limit=5")->{json};
ok $ev->{messages}[2]{message}{is_deleted} && !exists $ev->{messages}[2]{message}{content},
    'a page of 5, 1,100 seqs behind: b3 without its text (its deletion\'s claim)';
ok !exists $ev->{messages}[1]{message}{is_deleted}, 'b2 as it was';



=== TEST 13: a live subscriber past a run of 300 gaps for good: the worker's gap fill walks over them a page at a time (next_after) and delivers the event after them, once
--- request
GET /t
--- timeout: 30
--- chat_script
use ChatTest::MongoWire qw(oid date i64 doc);
my $J = JSON::PP->new->utf8;
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my ($alice, $g, $ws) = subscribed_group('alice', 'fill-gaps');
my @seen;
my $until = sub {
    my ($want) = @_;
    for (1 .. 20) {
        return 1 if grep { $_ == $want } @seen;
        my $f = $ws->recv_message(timeout => 10) or return 0;
        my $e = eval { $J->decode($f->{payload}) } or next;
        push @seen, $e->{seq} if $e->{type} eq 'message';
    }
    return 0;
};
is $alice->post("/api/chat/groups/$g/messages", { content => 'first' })->{json}{seq}, 1, 'seq 1';
ok $until->(1), 'seq 1 delivered live';

# seqs 2..301 taken and claimed a minute ago by writes that failed: gaps;
# a fill reads 100 events a page, so it resolves at most 264 seqs a read
my $old = int(time * 1000) - 60_000;
is set_group_seq($db, $g, 301), 1, 'seqs up to 301 taken';
is claim_seqs($db, $g, $old, '6f', 2 .. 301), 300, '300 records whose message never came';
is $alice->post("/api/chat/groups/$g/messages", { content => 'last' })->{json}{seq}, 302, 'seq 302';
ok $until->(302), 'seq 302 delivered: the fill walked past the gaps';
is_deeply \@seen, [ 1, 302 ], 'each event once, in order';

