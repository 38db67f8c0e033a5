# The dashboard's database figures from the counters (issue 13, part 4):
# the module counts each message, deletion and group it stores into
# documents of "counters" that one worker each writes, the sidecar sums
# them.  Counts stay exact under concurrent posts and deletions from two
# workers (FerretDB loses one of two concurrent $inc on one document: each
# worker's documents have one writer); a write is on the dashboard within
# the refresh period; a database of the previous shape (no counters) is
# counted once, by the sidecar, without counting anything twice.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Script;
use ChatTest::Sidecar;
use ChatTest::MongoWire qw(oid date bool doc);

master_on();
workers(2);
no_shuffle();
log_level('info');
no_root_location();

# 1 s: the refresh period of the "visible within 2 s" target
ChatTest::Sidecar::start(db_refresh => 1);

# a second server with "reuseport": concurrent posts are stored by both
# workers
chat_blocks(db_timeout => '5s', reuseport => 1, timeout => 120,
            request => "GET /t\n");

# N requests at once, each on its own connection to the reuseport server:
# the answers, in order
sub concurrently {
    my @raw = @_;
    return ChatTest::Client::read_until_closed(30,
        ChatTest::Client::send_raw($ENV{TEST_NGINX_RAND_PORT_1}, @raw));
}

sub raw_post {
    my ($token, $path, $body) = @_;
    return "POST $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        . "Authorization: Bearer $token\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
}

sub raw_delete {
    my ($token, $path) = @_;
    return "DELETE $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        . "Authorization: Bearer $token\r\n\r\n";
}

run_tests();

__DATA__

=== TEST 1: 200 messages and 40 deletions at once from 20 connections on two workers, into 4 groups: every figure exact
--- chat_script
use ChatTest::MongoWire qw(oid date bool doc);
my $alice = client('alice');
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});

# the figures before (the sidecar's one-time count of this new database
# included): what follows is compared with them
my $d0 = ChatTest::Sidecar::wait_for(sub { $_[0]{database}{refreshed_at} }, 10);
ok $d0->{database}{refreshed_at}, 'a first refresh';
my %b = %{ $d0->{database} };

my @g = map { $alice->post('/api/chat/groups', { name => "count-$_" })->{json}{id} } 1 .. 4;
is scalar(grep { defined } @g), 4, '4 groups';

my $token = ChatTest::JWT::token('alice');
my (@ids, @bad);
for my $round (1 .. 10) {
    # 20 at once: 8, 6, 4 and 2 a round into the four groups
    my @to = ((0) x 8, (1) x 6, (2) x 4, (3) x 2);
    my @res = main::concurrently(map {
        main::raw_post($token, "/api/chat/groups/$g[$to[$_]]/messages", qq({"content":"r$round-$_"}))
    } 0 .. $#to);
    for my $i (0 .. $#res) {
        if (defined $res[$i] && $res[$i] =~ m{^HTTP/1\.1 201 } && $res[$i] =~ /"id":"([0-9a-f]{24})"/) {
            push @ids, [$to[$i], $1];
        } else {
            push @bad, $res[$i] // '(no answer)';
        }
    }
}
is scalar @bad, 0, 'every POST answered 201' or diag explain [ @bad[0 .. 2] ];
is scalar @ids, 200, '200 messages';

# 40 deletions at once, two rounds of 20: 20 of group 0, 10 of 1, 10 of 2
my %per;
for my $k (0 .. 3) {
    $per{$k} = [ map { $_->[1] } grep { $_->[0] == $k } @ids ];
}
my @del = ((map { [0, $per{0}[$_]] } 0 .. 19), (map { [1, $per{1}[$_]] } 0 .. 9),
           (map { [2, $per{2}[$_]] } 0 .. 9));
my $deleted = 0;
for my $half ([@del[0 .. 19]], [@del[20 .. 39]]) {
    my @res = main::concurrently(map { main::raw_delete($token, "/api/chat/groups/$g[$_->[0]]/messages/$_->[1]") } @$half);
    $deleted += grep { defined && m{^HTTP/1\.1 200 } } @res;
}
is $deleted, 40, '40 deletions answered 200';

# both workers stored some: their own documents in "counters"
my $c = $db->command(doc(find => 'counters', filter => doc()));
my %pids = map { $_->{pid} => 1 } grep { $_->{_id} =~ /^w:/ } @{ $c->{cursor}{firstBatch} };
cmp_ok scalar(keys %pids), '>=', 2, 'counted by two workers (pids ' . join(', ', sort keys %pids) . ')';

my $want = sub {
    my $x = $_[0]{database};
    return $x->{total_messages} == $b{total_messages} + 200
        && $x->{deleted_messages} == $b{deleted_messages} + 40
        && $x->{total_groups} == $b{total_groups} + 4;
};
my $d = ChatTest::Sidecar::wait_for($want, 10)->{database};
is $d->{total_messages}, $b{total_messages} + 200, 'total_messages: +200';
is $d->{deleted_messages}, $b{deleted_messages} + 40, 'deleted_messages: +40';
is $d->{active_messages}, $b{active_messages} + 160, 'active_messages: +160';
is $d->{total_groups}, $b{total_groups} + 4, 'total_groups: +4';
is $d->{last_24h}{new_messages}, $b{last_24h}{new_messages} + 200, 'last_24h.new_messages: +200';
is $d->{last_24h}{new_groups}, $b{last_24h}{new_groups} + 4, 'last_24h.new_groups: +4';
ok !$d->{stale}, 'fresh';

# the database agrees: counted from the collections themselves
my $n = $db->command(doc(count => 'messages', query => doc()));
my $nd = $db->command(doc(count => 'messages', query => doc(is_deleted => bool(1))));
my $ng = $db->command(doc(count => 'groups', query => doc()));
is $d->{total_messages}, $n->{n}, "total_messages is the collection's count ($n->{n})";
is $d->{deleted_messages}, $nd->{n}, "deleted_messages is the count of is_deleted ($nd->{n})";
is $d->{total_groups}, $ng->{n}, "total_groups is the collection's count ($ng->{n})";

# top groups: 80 - 20, 60 - 10, 40 - 10, 20 live messages
my %top = map { $_->{group_id} => $_ } @{ $d->{top_active_groups} };
is $top{$g[0]}{message_count}, 60, 'group 0: 60 live';
is $top{$g[1]}{message_count}, 50, 'group 1: 50 live';
is $top{$g[2]}{message_count}, 30, 'group 2: 30 live';
is $top{$g[3]}{message_count}, 20, 'group 3: 20 live';
is $top{$g[0]}{group_name}, 'count-1', 'named from the groups';
like $top{$g[3]}{last_message}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'last_message a time';
my @mine = grep { my $id = $_; grep { $_ eq $id } @g }
           map { $_->{group_id} } @{ $d->{top_active_groups} };
is_deeply \@mine, \@g, 'ranked by live messages';
cmp_ok $d->{refresh_duration_ms}, '<', 1000, "a refresh: $d->{refresh_duration_ms} ms";



=== TEST 2: a message is on the dashboard within 2 s of its POST (refresh every 1 s), five times
--- chat_script
use Time::HiRes qw(time sleep);
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'visible' })->{json}{id};
ChatTest::Sidecar::wait_for(sub { 0 }, 1.2);      # one refresh past the group
my @t;
for my $i (1 .. 5) {
    my $before = ChatTest::Sidecar::data()->{database}{total_messages};
    my $t0 = time;
    is $alice->post("/api/chat/groups/$g/messages", { content => "v$i" })->{status}, 201, "POST $i";
    my $d = ChatTest::Sidecar::wait_for(sub { $_[0]{database}{total_messages} > $before }, 5);
    push @t, time - $t0;
    is $d->{database}{total_messages}, $before + 1, "message $i counted";
    sleep rand 0.5;
}
my @over = grep { $_ > 2 } @t;
is scalar @over, 0, 'each visible within 2 s: ' . join(', ', map { sprintf '%.2f s', $_ } @t);



=== TEST 3: a database of the previous shape (no counters, no marks) is counted once by the sidecar; what the module marked as counted is not counted again
--- chat_script
use ChatTest::MongoWire qw(oid date bool doc);
my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
(my $uri = $ENV{TEST_NGINX_CHAT_URI}) =~ s{/([^/?]+)(\?|$)}{/$1_old$2};
my $old = ChatTest::MongoWire->new($uri);
my $now = int(Time::HiRes::time() * 1000);
my @g = map { sprintf '6a%022x', $_ } 1 .. 3;
my $r = $old->command(doc(insert => 'groups', documents => [
    map { doc(_id => oid($g[$_]), name => "old-$_", created_at => date($now - 3600_000 * 30 * $_),
              created_by => 'alice') } 0 .. 2 ]));
is $r->{ok}, 1, '3 groups of the previous shape';
# 30 messages (10 a group), 5 deleted; 12 in the last 24 h
my @m;
for my $i (0 .. 29) {
    push @m, doc(_id => oid(sprintf '6b%022x', $i), group_id => oid($g[$i % 3]),
                 user_id => 'alice', content => "m$i",
                 created_at => date($now - ($i < 12 ? 60_000 : 30 * 3600_000)),
                 is_deleted => bool($i < 5),
                 ($i < 5 ? (deleted_at => date($now)) : ()));
}
# and what the module stores now: a message it counted (marked), a
# deletion it counted of an old message: neither counted by the scan
push @m, doc(_id => oid(sprintf '6b%022x', 99), group_id => oid($g[0]), user_id => 'alice',
             content => 'new', created_at => date($now), is_deleted => bool(0), counted => bool(1));
$m[29] = doc(_id => oid(sprintf '6b%022x', 29), group_id => oid($g[2]), user_id => 'alice',
             content => 'm29', created_at => date($now - 30 * 3600_000), is_deleted => bool(1),
             deleted_at => date($now), deleted_counted => bool(1));
$r = $old->command(doc(insert => 'messages', documents => \@m));
is $r->{ok}, 1, '31 messages';

ChatTest::Sidecar::stop();
ChatTest::Sidecar::start(db_refresh => 1, mongo_uri => $uri, args => { 'log-level' => 'info' });
my $d = ChatTest::Sidecar::wait_for(sub { $_[0]{database}{refreshed_at} }, 20)->{database};
is $d->{total_groups}, 3, 'groups: 3';
is $d->{total_messages}, 30, 'messages: 30 (the one marked as counted is not)';
is $d->{deleted_messages}, 5, 'deleted: 5 (the deletion marked as counted is not)';
is $d->{last_24h}{new_messages}, 12, 'last 24 h: 12';
is $d->{last_24h}{new_groups}, 1, 'new groups: 1 (the others are 30 and 60 h old)';
# 10 messages a group; deleted: 2, 2 and 1 (+ 1 whose deletion is marked
# as counted by a worker, so not by the scan)
is_deeply [ map { [ $_->{group_name}, $_->{message_count} ] } @{ $d->{top_active_groups} } ],
    [ ['old-2', 9], ['old-0', 8], ['old-1', 8] ], 'top groups, named, ranked';

my $c = $old->command(doc(find => 'counters', filter => doc(_id => 'base')));
my $base = $c->{cursor}{firstBatch}[0];
ok $base, 'the count is kept in counters, _id "base"';
like $base->{packed}, qr/^(?:[0-9a-f]{24} \d+ \d+ \d+\n){3}\z/, "its groups, packed";

# a restart reads it: no second count
ChatTest::Sidecar::stop();
ChatTest::Sidecar::start(db_refresh => 1, mongo_uri => $uri, args => { 'log-level' => 'info' });
my $d2 = ChatTest::Sidecar::wait_for(sub { $_[0]{database}{refreshed_at} }, 20)->{database};
is $d2->{total_messages}, 30, 'after a restart: the same';
ok !$d2->{stale}, 'and fresh';
my @once = ChatTest::Sidecar::log_text() =~ /counting once/g;
is scalar @once, 1, 'counted once in all (the log says so once)';
ChatTest::Sidecar::stop();
ChatTest::Sidecar::start(db_refresh => 1);
