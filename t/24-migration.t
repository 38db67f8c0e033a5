# Issue 13, part 5: a database written by the code before the event log
# (groups without "seq" or "logged", messages without "seq", deletions
# without "deleted_seq", nothing in "seqs") is upgraded at start by worker
# 0 (ngx_http_chat_migrate.c), losing nothing: each group's old messages
# take seqs in (created_at, _id) order, its deletions after them, the
# group's seq goes on past them; a message numbered before the migration
# (by this code, or by a run that was interrupted) keeps its seq; the REST
# listings (the newest page, before, after=) see it all.  A second start
# on the migrated data changes nothing (it sees the mark of the first).
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Script;
use ChatTest::MongoWire;

master_on();
workers(2);
no_shuffle();
log_level('info');
no_root_location();

chat_blocks(db_timeout => '5s', timeout => 60);

# the data of older code (ids fixed, so that each block knows them)
our ($A, $B, $C, $Gone) = map { sprintf '6d00000000000000000000%02x', $_ } 1 .. 4;
our @Am = map { sprintf '6d00000000000000000001%02x', $_ } 1 .. 5;
our @Cm = map { sprintf '6d00000000000000000002%02x', $_ } 1 .. 2;
our $Orphan = '6d0000000000000000000301';
our $T0 = int(time * 1000) - 3_600_000;

# the counts the migration logs: "migrated to the event log: {...}"
sub migrated {
    my $until = time + 20;
    while (time < $until) {
        open my $fh, '<', Test::Nginx::Socket::server_root() . '/logs/error.log' or next;
        for (<$fh>) {
            return JSON::PP::decode_json($1) if /migrated to the event log: (\{.*?\})/;
        }
        select undef, undef, undef, 0.1;
    }
    return undef;
}

run_tests();

__DATA__

=== TEST 1: a database of older code: numbered at start, in (created_at, _id) order, deletions after, nothing lost
--- init
use ChatTest::MongoWire qw(oid date i64 bool doc);
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my $ok = sub { my $r = $db->command($_[0]); die "seed: $_[1]\n" unless $r->{ok}; $r };
$ok->([ insert => 'groups', documents => [
    (map { doc(_id => oid($_->[0]), name => $_->[1], created_at => date($T0), created_by => 'alice') }
        [ $A, 'old A' ], [ $B, 'old B, empty' ]),
    # C: a group a run interrupted: its first message numbered, the second not
    doc(_id => oid($C), name => 'old C', created_at => date($T0), created_by => 'alice',
        seq => i64(1)) ] ], 'groups');
# A's messages: created_at out of _id order, two at the same ms (then by
# _id), the second one deleted by the old code
my @at = ($T0 + 30, $T0 + 10, $T0 + 20, $T0 + 20, $T0 + 40);
$ok->([ insert => 'messages', documents => [
    (map { doc(_id => oid($Am[$_]), group_id => oid($A), user_id => 'alice', content => "A$_",
               created_at => date($at[$_]),
               ($_ == 1 ? (is_deleted => bool(1), deleted_at => date($T0 + 50))
                        : (is_deleted => bool(0)))) } 0 .. 4),
    doc(_id => oid($Cm[0]), group_id => oid($C), user_id => 'alice', content => 'C0',
        created_at => date($T0 + 1), seq => i64(1), is_deleted => bool(0)),
    doc(_id => oid($Cm[1]), group_id => oid($C), user_id => 'bob', content => 'C1',
        created_at => date($T0 + 2), is_deleted => bool(0)),
    doc(_id => oid($Orphan), group_id => oid($Gone), user_id => 'alice', content => 'of no group',
        created_at => date($T0), is_deleted => bool(0)) ] ], 'messages');
$ok->([ insert => 'seqs', documents => [
    doc(_id => "$C:1", group_id => oid($C), seq => i64(1), type => 'message',
        message_id => oid($Cm[0]), at => date($T0 + 1)) ] ], 'seqs');
--- request
GET /t
--- chat_script
my $m = main::migrated();
ok $m, 'worker 0 logged the migration';
is_deeply $m, { messages => 6, deletions => 1, groups => 3, done_before => JSON::PP::false },
    '6 messages numbered (5 of A, 1 of C; the orphan passed over), 1 deletion, 3 groups marked';

my $alice = client('alice');
my ($A, $B, $C, @Am) = ($main::A, $main::B, $main::C, @main::Am);

# A: (created_at, _id) order is A1, A2, A3, A0, A4; A1 deleted after
my $ev = $alice->get("/api/chat/groups/$A/messages?after=0")->{json};
is_deeply [ map { $_->{type} eq 'message' ? "$_->{seq} $_->{message}{id}" : "$_->{seq} deleted $_->{message_id}" }
            @{ $ev->{messages} } ],
    [ "1 $Am[1]", "2 $Am[2]", "3 $Am[3]", "4 $Am[0]", "5 $Am[4]", "6 deleted $Am[1]" ],
    'after=0: the creations in (created_at, _id) order, then the deletion';
ok $ev->{messages}[0]{message}{is_deleted} && !exists $ev->{messages}[0]{message}{content},
    'the deleted one keeps its place, not its text';

my $l = $alice->get("/api/chat/groups/$A/messages")->{json};
is_deeply [ map { "$_->{seq} $_->{content}" } @{ $l->{messages} } ], [ '5 A4', '4 A0', '3 A3', '2 A2' ],
    'the newest page: by seq, newest first, the deleted one left out';
$l = $alice->get("/api/chat/groups/$A/messages?limit=2")->{json};
ok $l->{has_more}, 'a page of 2 has more';
is_deeply [ map { $_->{content} } @{ $alice->get("/api/chat/groups/$A/messages?limit=2&before=$l->{next_before}")->{json}{messages} } ],
    [ 'A3', 'A2' ], 'before= goes on where it ended';
is_deeply [ map { $_->{content} } @{ $alice->get("/api/chat/groups/$A/messages?limit=2&page=2")->{json}{messages} } ],
    [ 'A3', 'A2' ], 'page=2 too';

is $alice->post("/api/chat/groups/$A/messages", { content => 'new' })->{json}{seq}, 7, 'A goes on at 7';
is $alice->post("/api/chat/groups/$B/messages", { content => 'new' })->{json}{seq}, 1, 'B, empty, starts at 1';
is $alice->delete("/api/chat/groups/$A/messages/$Am[1]")->{status}, 404, 'the old deletion stands (404)';

# C: its numbered message kept seq 1, the other took 2
is_deeply [ map { "$_->{seq} $_->{message}{content}" } @{ $alice->get("/api/chat/groups/$C/messages?after=0")->{json}{messages} } ],
    [ '1 C0', '2 C1' ], 'C: the message numbered before keeps 1, the other takes 2';
is_deeply [ map { $_->{content} } @{ $alice->get("/api/chat/groups/$C/messages")->{json}{messages} } ],
    [ 'C1', 'C0' ], 'C: the newest page';



=== TEST 2: a second start on the migrated data numbers nothing again: the same listings
--- request
GET /t
--- chat_script
my $m = main::migrated();
is_deeply $m, { messages => 0, deletions => 0, groups => 0, done_before => JSON::PP::true },
    'done before: skipped (its mark in seqs)';
my $alice = client('alice');
my ($A, @Am) = ($main::A, @main::Am);
my $ev = $alice->get("/api/chat/groups/$A/messages?after=0")->{json}{messages};
is_deeply [ map { $_->{seq} } @$ev ], [ 1 .. 7 ], 'A: events 1..7, as before';
is_deeply [ map { $_->{content} } @{ $alice->get("/api/chat/groups/$A/messages")->{json}{messages} } ],
    [ 'new', 'A4', 'A0', 'A3', 'A2' ], 'A: the newest page';



=== TEST 3: a message of older code that no migration numbered (written during an upgrade, or not reached yet), then deleted: its creation takes a seq first, its deletion the next, in that order in the log
--- request
GET /t
--- chat_script
use ChatTest::MongoWire qw(oid date bool doc);
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'late old' })->{json}{id};
is $alice->post("/api/chat/groups/$g/messages", { content => 'one' })->{json}{seq}, 1, 'seq 1';
my $old = '6d0000000000000000000401';
is $db->command([ insert => 'messages', documents => [
    doc(_id => oid($old), group_id => oid($g), user_id => 'alice', content => 'old code',
        created_at => date(int(time * 1000)), is_deleted => bool(0)) ] ])->{n}, 1,
    'a message without seq, as older code writes it';
my $d = $alice->delete("/api/chat/groups/$g/messages/$old");
is $d->{status}, 200, 'deleted';
is $d->{json}{seq}, 3, 'the deletion takes seq 3';
my $ev = $alice->get("/api/chat/groups/$g/messages?after=0")->{json}{messages};
is_deeply [ map { $_->{type} eq 'message' ? "$_->{seq} message $_->{message}{id}" : "$_->{seq} $_->{type} $_->{message_id}" } @$ev ],
    [ "1 message " . $ev->[0]{message}{id}, "2 message $old", "3 message_deleted $old" ],
    'after=0: its creation (2) before its deletion (3)';
my $doc = $db->command([ find => 'messages', filter => doc(_id => oid($old)) ])->{cursor}{firstBatch}[0];
is $doc->{seq}, 2, 'the message carries seq 2';

