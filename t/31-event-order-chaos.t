# Chaos (issue 13): 3 workers; 20 subscribers that drop and reconnect
# with since=<the last seq they have> at random moments; 3 publishers
# posting 2,000 messages and 200 deletions in all; 2 reloads and one
# SIGKILLed worker meanwhile.  At the end every subscriber's sequence of
# events equals the database's: every seq once, in seq order, each event
# as the database lists it.
#
# chat_db_timeout 2s: a seq whose taker the kill stopped between its claim
# and its write holds every subscriber until it settles (2 of them), and
# 20 subscribers that drop now and then while held would fall more than
# 1,000 events behind (a resync) at 5 s.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Peer;
use ChatTest::WebSocket;
use ChatTest::Workers;
use POSIX ();
use Time::HiRes ();

ChatTest::WebSocket::install_ws_script_hook();

master_on();
workers(3);
worker_connections(1024);
no_shuffle();
log_level('info');
no_root_location();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value(http_config => <<'_EOC_');
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_db_timeout 2s;

server {
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 reuseport;
    location /api/chat/ { chat_api on; }
}
_EOC_
    $block->set_value(config => <<'_EOC_');
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
_EOC_
    $block->set_value(request => "GET /t\n");
    $block->set_value(timeout => 300);
});

our $Publishers = 3;
our $Messages = 2000;       # in all
our $Deletions = 200;       # in all, each of a message of its publisher

# One publisher: its share of the messages, over new connections (the
# kernel spreads them over the workers), deleting one of its own every
# tenth post; a post cut by a killed worker is posted again.
sub publisher {
    my ($g, $n, $me) = @_;
    my $c = ChatTest::Client->new(port => ws_port(), user => $me);
    my (@mine, $deleted);
    for my $i (1 .. $n) {
        my $r;
        for (1 .. 20) {
            $r = eval { $c->post("/api/chat/groups/$g/messages", { content => "$me $i" }) };
            last if $r && $r->{status} == 201;
            Time::HiRes::sleep(0.1);
        }
        die "$me: post $i failed\n" unless $r && $r->{status} == 201;
        push @mine, $r->{json}{id};
        next unless $i % 10 == 0;
        my $victim = splice @mine, int(rand @mine), 1;
        for (1 .. 20) {
            my $d = eval { $c->delete("/api/chat/groups/$g/messages/$victim") };
            last if $d && ($d->{status} == 200 || $d->{status} == 404);
            Time::HiRes::sleep(0.1);
        }
    }
}

# what an event is about, whether it was sent live or replayed from the
# database (a replayed message event shows the message as it is now: a
# deleted one without its content)
sub key {
    my $e = shift;
    return join '|', $e->{seq}, $e->{type},
        $e->{type} eq 'message' ? $e->{message}{id} : $e->{message_id};
}

run_tests();

__DATA__

=== TEST 1: 20 subscribers dropping and resuming, 3 publishers, 2 reloads, a killed worker: each subscriber's events are the database's, gapless, once each, in seq order
--- ws_script
my $g = new_group('chaos');
my $path = sub { "/api/chat/ws/$g?token=" . ChatTest::JWT::token($_[0])
                 . (defined $_[1] ? "&since=$_[1]" : '') };

my %sub;     # name => { peer, seqs => [...], events => [...], resumes }
my $connect = sub {
    my ($name) = @_;
    my $s = $sub{$name} //= { seqs => [], events => [], resumes => 0 };
    my $since = @{ $s->{seqs} } ? $s->{seqs}[-1] : 0;
    for (1 .. 50) {
        my $ws = eval { ChatTest::WebSocket::ws_connect(port => ws_port(), timeout => 5,
                                                        path => $path->($name, $since)) };
        if ($ws && $ws->status == 101) {
            $s->{peer} = ChatTest::Peer->new(ws => $ws, user => $name);
            return;
        }
        Time::HiRes::sleep(0.1);
    }
    die "$name cannot reconnect\n";
};
# what a subscriber's connection has; a closed one is resumed
my $pump = sub {
    my ($name) = @_;
    my $s = $sub{$name};
    while (my $e = $s->{peer}->pump(0)) {
        if (defined $e->{seq} && $e->{type} ne 'resync') {
            push @{ $s->{seqs} }, $e->{seq};
            push @{ $s->{events} }, $e;
        } elsif ($e->{type} =~ /^<close>|^resync$/) {
            push @{ $s->{odd} }, $e;
        }
    }
    if ($s->{peer}->ws->eof || !$s->{peer}->ws->is_open) {
        $s->{resumes}++;
        $s->{peer}->ws->disconnect;
        $connect->($name);
    }
};

$connect->("sub$_") for 1 .. 20;

my @kids;
for my $k (1 .. $main::Publishers) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $ok = eval { publisher($g, $main::Messages / $main::Publishers + ($k <= $main::Messages % $main::Publishers ? 1 : 0), "pub$k"); 1 };
        print STDERR $@ unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    push @kids, $pid;
}

# the chaos, while the publishers run: random drops, 2 reloads, a kill
my $t0 = Time::HiRes::time();
my @chaos = ([ 3, 'reload' ], [ 6, 'kill' ], [ 9, 'reload' ]);
my ($drops, $running) = (0, scalar @kids);
my $next_drop = $t0 + 0.5 + rand();
while ($running) {
    $pump->($_) for sort keys %sub;
    # about one a second: a subscriber drops and resumes at once
    if (Time::HiRes::time() > $next_drop) {
        $next_drop = Time::HiRes::time() + 0.5 + rand();
        my $name = 'sub' . (1 + int rand 20);
        $sub{$name}{peer}->ws->disconnect;
        $drops++;
        $connect->($name);
    }
    if (@chaos && Time::HiRes::time() - $t0 > $chaos[0][0]) {
        my (undef, $what) = @{ shift @chaos };
        if ($what eq 'reload') {
            kill 'HUP', master_pid();
        } else {
            # the worker that joined the bus last (one of the new ones)
            my @w = grep { kill 0, $_ }
                    error_log() =~ / (\d+)#\d+: chat broadcast: worker slot \d+ of \d+ joined the bus/g;
            kill 'KILL', $w[-1] if @w;
        }
    }
    for my $i (0 .. $#kids) {
        next unless $kids[$i];
        if (waitpid($kids[$i], POSIX::WNOHANG()) > 0) {
            is $?, 0, "publisher $i finished";
            $kids[$i] = 0;
            $running--;
        }
    }
    Time::HiRes::sleep(0.01);
}
ok !@chaos, 'both reloads and the kill happened while the publishers ran';

# the database's events, then every subscriber up to the last of them
my @db;
my $next = 0;
while (defined $next) {
    # this read is the test's oracle, not what it tests: a 503 (the read
    # past chat_db_timeout 2s while the subscribers' resumes and the
    # gap-voiding writes load the database) is asked again, and said
    my $r;
    for my $try (1 .. 10) {
        $r = http()->get("/api/chat/groups/$g/messages?after=$next&limit=100");
        last unless $r->{status} == 503;
        diag "after=$next: 503 (chat_db_timeout), asked again";
        Time::HiRes::sleep(0.5);
    }
    die "after=$next: $r->{status}\n" unless $r->{status} == 200;
    push @db, @{ $r->{json}{messages} };
    $next = $r->{json}{has_more} ? $r->{json}{next_after} : undef;
}
my $last = $db[-1]{seq};
cmp_ok scalar(grep { $_->{type} eq 'message' } @db), '>=', $main::Messages, "the database has the $main::Messages messages";
# a deletion whose answer a killed worker cut may be refused on its retry
# (another deletion of the same message is a 404): at least 9 in 10 land
cmp_ok scalar(grep { $_->{type} eq 'message_deleted' } @db), '>=', $main::Deletions * 0.9, "and (nearly) the $main::Deletions deletions";

my $deadline = Time::HiRes::time() + 60;
while (Time::HiRes::time() < $deadline
       && grep { !@{ $_->{seqs} } || $_->{seqs}[-1] < $last } values %sub) {
    $pump->($_) for sort keys %sub;
    Time::HiRes::sleep(0.01);
}

my $want = join ',', map { $_->{seq} } @db;
my ($same, $resumes) = (0, 0);
for my $name (sort keys %sub) {
    my $s = $sub{$name};
    $resumes += $s->{resumes};
    my $got = join ',', @{ $s->{seqs} };
    if ($got eq $want) {
        $same++ if Test::More::is_deeply([ map { key($_) } @{ $s->{events} } ],
                                         [ map { key($_) } @db ],
                                         "$name: each event is the database's (seq, type, message)");
    } else {
        my %seen;
        my @dup = grep { $seen{$_}++ } @{ $s->{seqs} };
        my %have = map { $_ => 1 } @{ $s->{seqs} };
        my @missing = grep { !$have{$_} } map { $_->{seq} } @db;
        fail("$name: " . scalar(@{ $s->{seqs} }) . ' events, ' . scalar(@missing)
             . ' missing (first ' . join(',', @missing[0 .. ($#missing < 4 ? $#missing : 4)])
             . '), twice: ' . join(',', @dup[0 .. ($#dup < 4 ? $#dup : 4)]) . '; was: ' . scalar(@{ $s->{seqs} }) . ' events, ' . scalar(@missing)
             . ' missing (first ' . join(',', @missing[0 .. ($#missing < 4 ? $#missing : 4)])
             . '), ' . scalar(@dup) . ' twice, out of order: '
             . (join(',', sort { $a <=> $b } @{ $s->{seqs} }) eq $got ? 'no' : 'yes'));
    }
}
is $same, 20, "all 20 subscribers have the database's $last events, in seq order, once each ($drops random drops, $resumes resumes after the server closed them)";
cmp_ok $resumes, '>=', 20, 'the reloads and the kill closed connections that resumed';
--- no_error_log
[crit]
