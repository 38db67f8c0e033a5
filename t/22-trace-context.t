# W3C Trace Context: a valid "traceparent" makes its trace-id the
# correlation ID (response header, JSON errors, the metrics record the
# dashboard shows) and the response carries the request's own span (same
# trace-id, a new span id, the sampled flag kept); $chat_traceparent hands
# that span to an upstream.  An invalid one (wrong length, version ff,
# all-zero ids, non-hex, uppercase) is ignored and logged, as an unsafe
# correlation header is; without one the request starts a trace whose id
# is its generated correlation ID's hex digits.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Script;
use ChatTest::Sidecar;

no_shuffle();
log_level('info');
no_root_location();

ChatTest::Sidecar::start(db_refresh => 0.3);

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value(http_config => <<'_EOC_');
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_metrics on;
chat_metrics_address $TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;
_EOC_

    $block->set_value(config => <<'_EOC_');
location /api/chat/ { chat_api on; chat_traceparent_response on; }
location = /t { chat_traceparent_response on; return 200 "ok\n"; }
location = /echo { return 200 "$http_traceparent|$chat_correlation_id"; }
location = /via-proxy {
    chat_traceparent_response on;
    proxy_set_header traceparent $chat_traceparent;
    proxy_hide_header traceparent;
    proxy_hide_header X-Correlation-ID;
    proxy_pass http://127.0.0.1:$server_port/echo;
}
location = /vars { chat_traceparent_response on; return 200 "$chat_correlation_id $chat_traceparent"; }
location = /quiet {
    chat_correlation_response off;
    return 200 "$chat_correlation_id $chat_traceparent";
}
location = /defaults { return 200 "$chat_correlation_id $chat_traceparent"; }
location = /tp-only {
    chat_correlation_response off;
    chat_traceparent_response on;
    return 200 "$chat_correlation_id";
}
_EOC_
});

our $TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
our $PARENT = '00f067aa0ba902b7';

# the response's traceparent: version 00, the given trace-id, a new span
sub span_ok {
    my ($r, $trace, $flags, $name) = @_;
    my $tp = $r->{headers}{traceparent} // '';
    like $tp, qr/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\z/, "$name: a traceparent";
    my (undef, $t, $span, $f) = split /-/, $tp;
    is $t, $trace, "$name: its trace-id";
    isnt $span, $PARENT, "$name: a span of its own";
    isnt $span, '0' x 16, "$name: span id not all zeros";
    is $f, $flags, "$name: flags $flags";
    return $span;
}

run_tests();

__DATA__

=== TEST 1: a valid traceparent: its trace-id is the correlation ID, the response carries the request's span
--- request
GET /t
--- chat_script
my $c = client('alice');
my $r = $c->get('/api/chat/groups/5f0000000000000000000000',
                headers => { traceparent => "00-$main::TRACE-$main::PARENT-01" });
is $r->{status}, 404, '404 for an unknown group';
is $r->{headers}{'x-correlation-id'}, $main::TRACE, 'X-Correlation-ID is the trace-id';
is $r->{json}{correlation_id}, $main::TRACE, 'so is the JSON error\'s correlation_id';
my $s1 = main::span_ok($r, $main::TRACE, '01', 'sampled');

$r = $c->get('/api/chat/groups', headers => { traceparent => "00-$main::TRACE-$main::PARENT-00" });
is $r->{status}, 200, 'a listing';
my $s2 = main::span_ok($r, $main::TRACE, '00', 'not sampled');
isnt $s1, $s2, 'each request a span of its own';

# unknown flags are not passed on; the sampled bit is
$r = $c->get('/t', headers => { traceparent => "00-$main::TRACE-$main::PARENT-ff" });
main::span_ok($r, $main::TRACE, '01', 'flags ff: sampled only');

# the traceparent wins over the correlation header
$r = $c->get('/t', headers => { traceparent => "00-$main::TRACE-$main::PARENT-01",
                                'X-Correlation-ID' => 'mine-1' });
is $r->{headers}{'x-correlation-id'}, $main::TRACE, 'traceparent wins over X-Correlation-ID';

# a later version: its first four fields are read, what follows a '-' ignored
$r = $c->get('/t', headers => { traceparent => "cc-$main::TRACE-$main::PARENT-01-what-the-future-holds" });
is $r->{headers}{'x-correlation-id'}, $main::TRACE, 'version cc with more fields: accepted';
main::span_ok($r, $main::TRACE, '01', 'version cc');



=== TEST 2: $chat_traceparent passes the request's span to an upstream (proxy_set_header)
--- request
GET /t
--- chat_script
my $c = client();
my $r = $c->get('/via-proxy', headers => { traceparent => "00-$main::TRACE-$main::PARENT-01" });
is $r->{status}, 200, 'proxied';
my ($sent, $upstream_cid) = split /\|/, $r->{body};
like $sent, qr/^00-$main::TRACE-[0-9a-f]{16}-01\z/, 'the upstream got the trace, sampled';
is $sent, $r->{headers}{traceparent}, 'with the span the client was told about';
is $upstream_cid, $main::TRACE, 'the upstream (this nginx again) correlates by the same trace-id';

$r = $c->get('/vars', headers => { traceparent => "00-$main::TRACE-$main::PARENT-01" });
my ($cid, $tp) = split / /, $r->{body};
is $cid, $main::TRACE, '$chat_correlation_id';
is $tp, $r->{headers}{traceparent}, '$chat_traceparent is the response\'s';



=== TEST 3: invalid traceparents are ignored (a new ID, a new trace) and logged
--- request
GET /t
--- chat_script
my $c = client();
my $T = $main::TRACE;
my $P = $main::PARENT;
my @bad = (
    [ "00-$T-$P-0",                         'too short' ],
    [ "00-$T-$P-01-extra",                  'version 00 longer than 55' ],
    [ "00-${T}0-$P-01",                     'trace-id of 33 digits' ],
    [ "ff-$T-$P-01",                        'version ff' ],
    [ "00-" . ('0' x 32) . "-$P-01",        'all-zero trace-id' ],
    [ "00-$T-" . ('0' x 16) . "-01",        'all-zero parent-id' ],
    [ "00-" . uc($T) . "-$P-01",            'uppercase trace-id' ],
    [ "00-$T-00F067AA0BA902B7-01",          'uppercase parent-id' ],
    [ "00-$T-$P-0G",                        'non-hex flags' ],
    [ "00-4bf92f3577b34da6a3ce929d0e0e473g-$P-01", 'non-hex trace-id' ],
    [ "00_$T" . "_$P" . "_01",              'wrong separators' ],
    [ "cc-$T-$P-01x",                       'a later version without a dash after 55' ],
    [ "",                                   'empty' ],
);
for my $b (@bad) {
    my $r = $c->get('/t', headers => { traceparent => $b->[0], 'X-Correlation-ID' => 'kept-1' });
    is $r->{headers}{'x-correlation-id'}, 'kept-1', "$b->[1]: ignored, X-Correlation-ID kept";
    my $tp = $r->{headers}{traceparent} // '';
    like $tp, qr/^00-[0-9a-f]{32}-[0-9a-f]{16}-00\z/, "$b->[1]: a new trace, not sampled";
    unlike $tp, qr/$T/, "$b->[1]: not the given trace";
}
--- error_log
chat correlation: ignored invalid "traceparent" header of 56 bytes, starting a new trace



=== TEST 4: no traceparent: a new trace named by the generated correlation ID
--- request
GET /t
--- chat_script
my $r = client()->get('/api/chat/groups');
is $r->{status}, 401, 'no token: 401';
my $cid = $r->{headers}{'x-correlation-id'};
like $cid, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\z/, 'a generated UUID';
(my $hex = $cid) =~ s/-//g;
main::span_ok($r, $hex, '00', 'no traceparent');
is $r->{json}{correlation_id}, $cid, 'the JSON error names the UUID';



=== TEST 5: the dashboard records the trace-id as the request's correlation ID
--- request
GET /t
--- chat_script
my $t = 'aaaabbbbccccddddeeeeffff00001111';
my $r = client('alice')->get('/api/chat/groups/5f00000000000000000000ff',
                             headers => { traceparent => "00-$t-$main::PARENT-01" });
is $r->{status}, 404, 'an error';
my $d = ChatTest::Sidecar::wait_for(sub {
    grep { ($_->{correlation_id} // '') eq $t } @{ $_[0]{recent_activity}{recent_errors} // [] }
});
ok((grep { ($_->{correlation_id} // '') eq $t } @{ $d->{recent_activity}{recent_errors} }),
   'the recent error row carries the trace-id');



=== TEST 6: chat_correlation_response off: no ID headers on the response, the ID still settled and recorded
--- request
GET /t
--- chat_script
my $c = client();
my $r = $c->get('/quiet');
is $r->{status}, 200, 'served';
ok !exists $r->{headers}{'x-correlation-id'}, 'no X-Correlation-ID';
ok !exists $r->{headers}{traceparent}, 'no traceparent';
my ($cid, $tp) = split / /, $r->{body};
like $cid, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\z/, '$chat_correlation_id: a generated UUID';
(my $hex = $cid) =~ s/-//g;
like $tp, qr/^00-$hex-[0-9a-f]{16}-00\z/, '$chat_traceparent: its trace, built on demand';

my $r2 = $c->get('/quiet', headers => { 'X-Correlation-ID' => 'quiet-1' });
ok !exists $r2->{headers}{'x-correlation-id'}, 'a client ID is not echoed either';
like $r2->{body}, qr/^quiet-1 00-[0-9a-f]{32}-[0-9a-f]{16}-00\z/, 'but it is the request\'s ID';

my $r3 = $c->get('/t');
like $r3->{headers}{'x-correlation-id'} // '', qr/^[0-9a-f]{8}-/, 'elsewhere the header is on (the default)';
isnt $r3->{headers}{'x-correlation-id'}, $cid, 'a new ID per request';
like $r3->{headers}{traceparent} // '', qr/^00-[0-9a-f]{32}-[0-9a-f]{16}-00\z/, 'and the traceparent';

my $d = ChatTest::Sidecar::wait_for(sub {
    grep { ($_->{correlation_id} // '') eq $cid } @{ $_[0]{recent_activity}{recent_requests} // [] }
});
ok((grep { ($_->{correlation_id} // '') eq $cid } @{ $d->{recent_activity}{recent_requests} }),
   'the dashboard records the request under that ID');



=== TEST 7: many requests on one worker: each trace-id is its own ID's digits, every span id new (the per-worker template)
--- request
GET /t
--- chat_script
my $c = client();
my (%span, %cid, $bad);
for my $i (1 .. 40) {
    # a client's ID and a client's traceparent in between: the template's
    # trace-id digits must not leak into the next generated one's
    my %h = $i % 10 == 3 ? ('X-Correlation-ID' => "client-$i")
          : $i % 10 == 7 ? (traceparent => "00-$main::TRACE-$main::PARENT-01")
          : ();
    my $r = $c->get('/t', headers => \%h);
    my $cid = $r->{headers}{'x-correlation-id'} // '';
    my (undef, $t, $span, $f) = split /-/, $r->{headers}{traceparent} // '';
    $span{$span // ''}++;
    $cid{$cid}++;
    if ($i % 10 == 3) {
        $bad++ unless $cid eq "client-$i" && ($t // '') =~ /^[0-9a-f]{32}\z/ && $f eq '00';
    } elsif ($i % 10 == 7) {
        $bad++ unless $cid eq $main::TRACE && $t eq $main::TRACE && $f eq '01';
    } else {
        (my $hex = $cid) =~ s/-//g;
        $bad++ unless $cid =~ /^[0-9a-f]{8}-/ && ($t // '') eq $hex && $f eq '00';
    }
}
ok !$bad, 'every traceparent names its own request\'s trace';
is scalar(grep { /^[0-9a-f]{16}\z/ } keys %span), 40, '40 span ids, all distinct';
is scalar(grep { /^[0-9a-f]{8}-/ } keys %cid), 32, '32 generated IDs, all distinct';



=== TEST 8: the defaults: X-Correlation-ID on, the traceparent response header off (chat_traceparent_response), the span still in $chat_traceparent
--- request
GET /t
--- chat_script
my $c = client();
my $r = $c->get('/defaults', headers => { traceparent => "00-$main::TRACE-$main::PARENT-01" });
is $r->{status}, 200, 'served';
is $r->{headers}{'x-correlation-id'}, $main::TRACE, 'X-Correlation-ID: the trace-id';
ok !exists $r->{headers}{traceparent}, 'no traceparent header unless chat_traceparent_response on';
my ($cid, $tp) = split / /, $r->{body};
is $cid, $main::TRACE, '$chat_correlation_id';
like $tp, qr/^00-$main::TRACE-[0-9a-f]{16}-01\z/, '$chat_traceparent: the request\'s span, built on demand';

# each header on its own
my $o = $c->get('/tp-only', headers => { 'X-Correlation-ID' => 'tp-only-1' });
ok !exists $o->{headers}{'x-correlation-id'}, 'chat_correlation_response off: no X-Correlation-ID';
like $o->{headers}{traceparent} // '', qr/^00-[0-9a-f]{32}-[0-9a-f]{16}-00\z/, 'chat_traceparent_response on: the traceparent alone';
is $o->{body}, 'tp-only-1', 'the client\'s ID is still the request\'s';
