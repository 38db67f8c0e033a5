# Pins the number of checks each section adds (the numbers numeric plans
# are written against), per block and per repeat_each, by running a
# fixture in a subprocess and counting its TAP lines.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTest;
use Test::More;

my $fixture = write_t('counts.t', <<'_T_');
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_shuffle();

# Custom body check, called as upstream documents it.
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return unless defined $block->hook;
    my $b = defined $body ? $body : 'undef';
    pass("hook: " . $block->name . " req_idx=$req_idx rep=$repeated_req_idx"
         . " body=$b dry_run=" . ($dry_run ? 1 : 0));
});

run_tests();

__DATA__

=== TEST 1: default error_code + body + 3 header lines + 2 no_error_log
--- config
    location = /t { add_header X-A a; add_header X-B b; return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- response_headers
X-A: a
X-B: b
!X-C
--- no_error_log
[error]
[alert]

=== TEST 2: request array of 3: 3 error_code + 3 bodies + hook x3
--- config
    location /r { return 200 "$uri"; }
--- request eval
["GET /r/a", "GET /r/b", "GET /r/c"]
--- response_body eval
["/r/a", "/r/b", "/r/c"]
--- hook

=== TEST 3: pipelined 2: 2 error_code + 2 body_like; error_log array of 3
--- config
    location /p { return 200 "$uri"; }
--- pipelined_requests eval
["GET /p/1", "GET /p/2"]
--- response_body_like eval
['^/p/1$', '^/p/2$']
--- error_log eval
["GET /p/1", "GET /p/2", qr/http finalize request/]

=== TEST 4: must_die: 1 + error_log 1 + no_error_log 1, no response checks
--- config
    location = /t { unknown_directive_here; }
--- request
GET /t
--- response_body
never checked
--- must_die
--- error_log
unknown directive "unknown_directive_here"
--- no_error_log
[alert]

=== TEST 5: ignore_response: only the log checks remain (and no hook)
--- config
    location = /t { return 200 "x"; }
--- request
GET /t
--- response_body
not checked
--- ignore_response
--- hook
--- no_error_log
[error]

=== TEST 6: grep_error_log without _out adds nothing; raw_request: 1 + 2 raw
--- config
    location = /t { return 200 "x"; }
--- raw_request eval
"GET /t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- raw_response_headers_like: 200 OK
--- raw_response_headers_unlike: X-Nope
--- grep_error_log: GET

=== TEST 7: response_headers_like 2 lines + grep_error_log_out 1
--- log_level: info
--- config
    location = /t { add_header X-Num 42; return 200 "x"; }
--- request
GET /t
--- response_headers_like
X-Num: \d+
Content-Type: text/.*
--- grep_error_log eval: qr/X-Never-Logged/
--- grep_error_log_out
_T_

my $r = run_t($fixture);
is($r->{not_ok}, 0, 'counts fixture: no failures') or diag($r->{stdout}, $r->{stderr});
is($r->{exit}, 0, 'counts fixture: exit code 0');

my %expected_per_repeat = (
    1 => 1 + 1 + 3 + 2,
    2 => 3 + 3 + 3,
    3 => 2 + 2 + 3,
    4 => 1 + 1 + 1,
    5 => 1,
    6 => 1 + 2,
    7 => 1 + 2 + 1,
);

my %seen;
for my $line (@{ $r->{lines} }) {
    $seen{$1}++ if $line =~ /^ok \d+ - (?:hook: )?TEST (\d+):/;
}
for my $test (sort { $a <=> $b } keys %expected_per_repeat) {
    is($seen{$test} // 0, 2 * $expected_per_repeat{$test},
       "TEST $test: checks x repeat_each(2)");
}
my $total = 0;
$total += 2 * $_ for values %expected_per_repeat;
is($r->{ok}, $total, "total ok lines ($total)");
is($r->{plan}, $total, 'no_plan prints 1..N matching the count');

# The hook gets ($block, $body, $req_idx, $repeated_req_idx, $dry_run)
for my $rep (0, 1) {
    for my $idx (0 .. 2) {
        my $body = ('/r/a', '/r/b', '/r/c')[$idx];
        ok((grep { /hook: TEST 2: .* req_idx=$idx rep=$rep body=\Q$body\E dry_run=0$/ }
            @{ $r->{lines} }), "hook called for req_idx=$idx rep=$rep");
    }
}
ok(!(grep { /hook: TEST 5/ } @{ $r->{lines} }), 'no hook under ignore_response');

# The same fixture under a numeric plan written with the upstream formula.
my $planned = (do { local $/; open my $fh, '<', $fixture or die; <$fh> })
    =~ s/'no_plan';/;/r
    =~ s/(repeat_each\(2\);)/$1\nplan tests => repeat_each() * @{[ $total \/ 2 ]};/r;
$r = run_t(write_t('counts-planned.t', $planned));
is($r->{plan}, $total, "numeric plan: 1..$total");
ok($r->{exit} == 0 && $r->{not_ok} == 0, 'numeric plan: passes')
    or diag($r->{stdout}, $r->{stderr});

# repeat_each(1) halves everything; ONLY / SKIP select blocks like Test::Base.
my $select = write_t('select.t', <<'_T_');
use Test::Nginx::Socket;
plan tests => repeat_each() * (2 * blocks());
run_tests();
__DATA__
=== TEST 1: skipped block
--- SKIP
--- config
    location = /t { return 500; }
--- request
GET /t
--- response_body
never
=== TEST 2: normal block
--- config
    location = /t { return 200 "two"; }
--- request
GET /t
--- response_body chomp
two
=== TEST 3: another
--- config
    location = /t { return 200 "three"; }
--- request
GET /t
--- response_body chomp
three
_T_
$r = run_t($select);
is($r->{plan}, 4, 'SKIP: blocks() counts the remaining 2 blocks');
is($r->{ok}, 4, 'SKIP: 4 checks ran');

(my $only = do { local $/; open my $fh, '<', $select or die; <$fh> })
    =~ s/(=== TEST 3: another\n)/$1--- ONLY\n/;
$r = run_t(write_t('only.t', $only));
is($r->{plan}, 2, 'ONLY: a single block');
ok($r->{ok} == 2 && (grep { /TEST 3/ } @{ $r->{lines} }), 'ONLY: that block ran');

done_testing();
