# The page cache (chat_page_cache): a group's newest page served from a
# shared memory zone of this nginx, exact for every write of this nginx.
# 3 workers behind a reuseport listener (one connection a request, so the
# kernel spreads them): a read after a write, on whichever worker,
# includes the write; a deletion removes the message; before/after/page
# reads never come from the cache; a zone filled past its size evicts the
# least recently used pages and still serves correct ones; a reload keeps
# the zone and stays exact; "valid" bounds how long a page is served.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Script;
use ChatTest::Workers;
use Time::HiRes ();

master_on();
workers(3);
no_shuffle();
log_level('info');
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    my $cache = $block->cache // 'chat_page_cache 1m valid=0;';
    $block->set_value(http_config => <<"_EOC_") unless defined $block->http_config;
chat_mongo_uri "\$TEST_NGINX_CHAT_URI";
chat_jwt_secret \$TEST_NGINX_JWT_SECRET;
chat_db_timeout 5s;
$cache

server {
    listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1 reuseport;
    location /api/chat/ { chat_api on; add_header X-Pid \$pid always; }
}
_EOC_

    $block->set_value(config => <<'_EOC_') unless defined $block->config;
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
_EOC_

    $block->set_value(timeout => 60) unless defined $block->timeout;
});

# one connection a request on the reuseport listener: any of the workers
sub any_worker { ChatTest::Client->new(port => $ENV{TEST_NGINX_RAND_PORT_1}, user => $_[0] // 'alice') }

sub contents { [ map { $_->{content} } @{ $_[0]{json}{messages} // [] } ] }

run_tests();

__DATA__

=== TEST 1: a newest page is a miss, then a hit with the same body; every write, on any of 3 workers, is in the next read on any worker
--- request
GET /t
--- chat_script
my $c = main::any_worker();
my $g = $c->post('/api/chat/groups', { name => 'cache-raw' })->{json}{id};
$c->post("/api/chat/groups/$g/messages", { content => "m$_" }) for 1 .. 3;

my $a = $c->get("/api/chat/groups/$g/messages?limit=5");
is $a->{headers}{'x-chat-cache'}, 'miss', 'first read: a miss';
my $b = $c->get("/api/chat/groups/$g/messages?limit=5");
is $b->{headers}{'x-chat-cache'}, 'hit', 'second read: a hit';
is $b->{body}, $a->{body}, 'the hit is the body the database gave';
is_deeply main::contents($b), [qw(m3 m2 m1)], 'newest first';

my (%writers, %readers, @wrong);
for my $i (4 .. 40) {
    my $w = $c->post("/api/chat/groups/$g/messages", { content => "m$i" });
    $writers{ $w->{headers}{'x-pid'} }++;
    # a few reads after each write, each on whichever worker the kernel picks
    for my $k (1 .. 3) {
        my $r = $c->get("/api/chat/groups/$g/messages?limit=5");
        $readers{ $r->{headers}{'x-pid'} }++;
        push @wrong, "after m$i, read $k: " . join(',', @{ main::contents($r) })
            unless main::contents($r)->[0] eq "m$i" && @{ main::contents($r) } == ($i < 5 ? $i : 5);
    }
}
is scalar @wrong, 0, 'every read after a write lists it first' or diag explain \@wrong;
cmp_ok scalar keys %writers, '>=', 2, 'writes were stored by several workers';
cmp_ok scalar keys %readers, '>=', 2, 'reads were served by several workers';

my $h = $c->get("/api/chat/groups/$g/messages?limit=5");
is $h->{headers}{'x-chat-cache'}, 'hit', 'no write since: a hit';
my $other = $c->get("/api/chat/groups/$g/messages?limit=7");
is $other->{headers}{'x-chat-cache'}, 'miss', 'another page size: a miss';
is_deeply main::contents($other), [ map { "m$_" } reverse 34 .. 40 ], 'and right';



=== TEST 2: a deletion removes the message from the cached page at once; before, after and page=2 never come from the cache
--- request
GET /t
--- chat_script
my $c = main::any_worker();
my $g = $c->post('/api/chat/groups', { name => 'cache-del' })->{json}{id};
my @ids = map { $c->post("/api/chat/groups/$g/messages", { content => "d$_" })->{json}{id} } 1 .. 6;
$c->get("/api/chat/groups/$g/messages?limit=3") for 1 .. 2;
is $c->get("/api/chat/groups/$g/messages?limit=3")->{headers}{'x-chat-cache'}, 'hit', 'cached';

is $c->delete("/api/chat/groups/$g/messages/$ids[5]")->{status}, 200, 'newest deleted';
my $r = $c->get("/api/chat/groups/$g/messages?limit=3");
is_deeply main::contents($r), [qw(d5 d4 d3)], 'the next read no longer lists it';
is $c->delete("/api/chat/groups/$g/messages/$ids[3]")->{status}, 200, 'one inside the page deleted';
is_deeply main::contents($c->get("/api/chat/groups/$g/messages?limit=3")), [qw(d5 d3 d2)],
    'the page moves on past it';
my $again = $c->get("/api/chat/groups/$g/messages?limit=3");
is $again->{headers}{'x-chat-cache'}, 'hit', 'then cached again';
is_deeply main::contents($again), [qw(d5 d3 d2)], 'the same';

for my $q ("before=$ids[2]", 'after=0', 'page=2') {
    my $x = $c->get("/api/chat/groups/$g/messages?limit=3&$q");
    is $x->{status}, 200, "$q: 200";
    ok !defined $x->{headers}{'x-chat-cache'}, "$q: not through the cache";
}
is_deeply main::contents($c->get("/api/chat/groups/$g/messages?limit=3&page=2")), [qw(d1)],
    'page 2 is right';



=== TEST 3: a zone of 32k filled with 40 pages of ~2 KB: the least recently used are evicted, every page read stays right
--- cache
chat_page_cache 32k valid=0;
--- request
GET /t
--- chat_script
my $c = main::any_worker();
my (@g, %want);
for my $i (1 .. 40) {
    my $g = $c->post('/api/chat/groups', { name => "cache-bound-$i" })->{json}{id};
    push @g, $g;
    my $text = "g$i-" . ('x' x 1800);
    $c->post("/api/chat/groups/$g/messages", { content => $text });
    $want{$g} = $text;
}
my @wrong;
for my $round (1 .. 2) {
    for my $g (@g) {
        my $r = $c->get("/api/chat/groups/$g/messages");
        push @wrong, "$g: $r->{status}" unless $r->{status} == 200
            && main::contents($r)->[0] eq $want{$g} && @{ main::contents($r) } == 1;
    }
}
is scalar @wrong, 0, 'every page right, through a full zone' or diag explain \@wrong;
my $first = $c->get("/api/chat/groups/$g[0]/messages");
is $first->{headers}{'x-chat-cache'}, 'miss', 'the least recently used page was evicted';
is main::contents($first)->[0], $want{ $g[0] }, 'and read again right';
my $last = $c->get("/api/chat/groups/$g[-1]/messages");
is $last->{headers}{'x-chat-cache'}, 'hit', 'the most recent one is still there';
$c->post("/api/chat/groups/$g[-1]/messages", { content => 'late' });
is main::contents($c->get("/api/chat/groups/$g[-1]/messages"))->[0], 'late',
    'a write to a cached group, zone full: in the next read';



=== TEST 4: a reload keeps the zone: the new workers serve the cached page, and stay exact for writes
--- request
GET /t
--- chat_script
my $c = main::any_worker();
my $g = $c->post('/api/chat/groups', { name => 'cache-reload' })->{json}{id};
$c->post("/api/chat/groups/$g/messages", { content => "r$_" }) for 1 .. 3;
$c->get("/api/chat/groups/$g/messages") for 1 .. 2;
my %old = map { $c->get("/api/chat/groups/$g/messages")->{headers}{'x-pid'} => 1 } 1 .. 12;

kill 'HUP', ChatTest::Workers::master_pid();
my $new = ChatTest::Workers::wait_until(sub {
    my $r = $c->get("/api/chat/groups/$g/messages");
    $old{ $r->{headers}{'x-pid'} } ? undef : $r;
}, 15);
ok $new, 'a new worker answers';
is $new->{headers}{'x-chat-cache'}, 'hit', 'from the zone the old workers filled';
is_deeply main::contents($new), [qw(r3 r2 r1)], 'right';

$c->post("/api/chat/groups/$g/messages", { content => 'r4' });
is_deeply main::contents($c->get("/api/chat/groups/$g/messages")), [qw(r4 r3 r2 r1)],
    'a write after the reload: in the next read';



=== TEST 5: valid=1s: a page older than that is checked against the group's seq (revalidated), and Cache-Control: no-cache reads the database
--- cache
chat_page_cache 1m valid=1s;
--- request
GET /t
--- chat_script
my $c = main::any_worker();
my $g = $c->post('/api/chat/groups', { name => 'cache-valid' })->{json}{id};
$c->post("/api/chat/groups/$g/messages", { content => 'v1' });
$c->get("/api/chat/groups/$g/messages");
is $c->get("/api/chat/groups/$g/messages")->{headers}{'x-chat-cache'}, 'hit', 'cached';
my $t0 = Time::HiRes::time();
my $body = $c->get("/api/chat/groups/$g/messages")->{body};
my $re = ChatTest::Workers::wait_until(sub {
    my $r = $c->get("/api/chat/groups/$g/messages");
    $r->{headers}{'x-chat-cache'} eq 'revalidated' ? $r : undef
}, 5);
ok $re, 'checked against the database once expired';
cmp_ok Time::HiRes::time() - $t0, '>=', 0.5, 'not before it expired';
is $re && $re->{body}, $body, 'the same page';
is $c->get("/api/chat/groups/$g/messages")->{headers}{'x-chat-cache'}, 'hit', 'valid again';
my $nc = $c->get("/api/chat/groups/$g/messages", headers => { 'Cache-Control' => 'no-cache' });
is $nc->{headers}{'x-chat-cache'}, 'miss', 'Cache-Control: no-cache: read from the database';
is $nc->{body}, $body, 'the same page';



=== TEST 6: chat_page_cache: a size too small and an unknown parameter are configuration errors
--- cache
chat_page_cache 4k;
--- request
GET /t
--- must_die
--- error_log
chat_page_cache: invalid size "4k"



=== TEST 7: a message created here is put in place in its group's cached page: a hit at once, the same bytes a read of the database gives
--- cache
chat_page_cache 1m valid=0;
--- request
GET /t
--- chat_script
my $c = main::any_worker();
my $fresh = sub {     # the page read from the database
    my ($path) = @_;
    my $r = $c->get($path, headers => { 'Cache-Control' => 'no-cache' });
    return $r->{headers}{'x-chat-cache'} eq 'miss' ? $r : { body => 'not a miss' };
};

my $g = $c->post('/api/chat/groups', { name => 'cache-update' })->{json}{id};
my @ids = map { $c->post("/api/chat/groups/$g/messages", { content => "u$_" })->{json}{id} } 1 .. 2;
my $path = "/api/chat/groups/$g/messages?limit=3";
$c->get($path) for 1 .. 2;

push @ids, $c->post("/api/chat/groups/$g/messages", { content => 'u3' })->{json}{id};
my $a = $c->get($path);
is $a->{headers}{'x-chat-cache'}, 'hit', 'after a POST: a hit';
is_deeply main::contents($a), [qw(u3 u2 u1)], 'the new message first';
ok !$a->{json}{has_more} && !defined $a->{json}{next_before}, 'a page not full: no more';
is $fresh->($path)->{body}, $a->{body}, 'the same bytes as a read of the database';

push @ids, $c->post("/api/chat/groups/$g/messages", { content => "u$_" . ('"}{\\' x 3) })->{json}{id} for 4;
my $b = $c->get($path);
is $b->{headers}{'x-chat-cache'}, 'hit', 'a POST to a full page: a hit';
is_deeply main::contents($b), ['u4"}{\\"}{\\"}{\\', 'u3', 'u2'], 'the oldest out';
ok $b->{json}{has_more}, 'has_more';
is $b->{json}{next_before}, $ids[1], 'next_before: the last one listed';
is $fresh->($path)->{body}, $b->{body}, 'the same bytes as a read of the database';

my $c5 = $c->post("/api/chat/groups/$g/messages", { content => 'u5' });
my $d = $c->get($path);
is $d->{headers}{'x-chat-cache'}, 'hit', 'again';
is_deeply main::contents($d), [qw(u5), 'u4"}{\\"}{\\"}{\\', 'u3'], 'right';
is $d->{json}{next_before}, $ids[2], 'next_before moves';
is $fresh->($path)->{body}, $d->{body}, 'the same bytes as a read of the database';
