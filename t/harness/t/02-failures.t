# A harness that cannot fail is useless: each fixture here is broken on
# purpose and must be reported as "not ok" (or bail out), quickly.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTest;
use Test::More;
use IO::Socket::INET;

sub fixture {
    my ($name, $blocks, $header) = @_;
    $header //= '';
    return write_t("$name.t", <<"_T_");
use Test::Nginx::Socket 'no_plan';
no_shuffle();
$header
run_tests();
__DATA__
$blocks
_T_
}

sub not_ok_lines { grep { /^not ok/ } @{ $_[0]{lines} } }

subtest 'wrong response body, status and header fail' => sub {
    my $r = run_t(fixture('wrong', <<'_B_'));
=== TEST 1: body
--- config
    location = /t { add_header X-H real; return 200 "actual\n"; }
--- request
GET /t
--- response_body
expected
--- response_headers
X-H: other
--- error_code: 201
_B_
    is($r->{ok}, 0, 'nothing passes');
    is($r->{not_ok}, 3, 'error_code, header and body each fail');
    isnt($r->{exit}, 0, 'non-zero exit');
    like($r->{stderr}, qr/actual/, 'the diagnostics show the actual body');
};

subtest 'an [emerg] config fails fast with the emerg line' => sub {
    my $r = run_t(fixture('emerg', <<'_B_'), TEST_NGINX_TIMEOUT => 10);
=== TEST 1: broken config
--- config
    location = /t { no_such_directive on; }
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["a", "b"]
_B_
    cmp_ok($r->{elapsed}, '<', 5, sprintf 'reported in %.2fs', $r->{elapsed});
    is($r->{not_ok}, 4, 'every planned check fails (plan still adds up)');
    like($r->{stderr}, qr/\[emerg\].*unknown directive "no_such_directive"/,
         'the [emerg] line is in the failure output');
};

subtest 'error_log and no_error_log fail when they should' => sub {
    my $r = run_t(fixture('logs', <<'_B_'));
=== TEST 1: logs
--- config
    location /missing { root html; }
--- request
GET /missing/file
--- error_code: 404
--- error_log
this text is never logged
--- no_error_log
[error]
_B_
    is($r->{ok}, 1, 'only the status passes');
    is($r->{not_ok}, 2, 'both log checks fail');
    like($r->{stderr}, qr/matching line: .*\[error\].*missing\/file/,
         'the offending line is shown');
};

subtest 'a timeout fails unless abort is set' => sub {
    my $r = run_t(fixture('timeout', <<'_B_'));
=== TEST 1: stalled
--- config
    location = /slow { limit_rate 1; limit_rate_after 1; return 200 "0123456789"; }
--- request
GET /slow
--- timeout: 200ms
--- response_body_like: .
_B_
    ok((grep { /^not ok \d+ - ERROR: client socket timed out - TEST 1: stalled/ }
        @{ $r->{lines} }), 'reported as "client socket timed out"');
    cmp_ok($r->{elapsed}, '<', 3, 'after about the timeout');
};

subtest 'an undefined $TEST_NGINX_ variable bails out' => sub {
    my $r = run_t(fixture('undef-env', <<'_B_'), TEST_NGINX_NOT_SET => undef);
=== TEST 1: undefined
--- config
    location = /t { return 200 "$TEST_NGINX_NOT_SET"; }
--- request
GET /t
_B_
    like($r->{bailed} // '', qr/No environment TEST_NGINX_NOT_SET defined/,
         'Bail out! names the variable');
    isnt($r->{exit}, 0, 'non-zero exit');
};

subtest 'must_die fails when nginx starts fine' => sub {
    my $r = run_t(fixture('must-die', <<'_B_'));
=== TEST 1: valid config
--- config
    location = /t { return 200; }
--- must_die
_B_
    is($r->{not_ok}, 1, 'one failure');
    like(join("\n", not_ok_lines($r)), qr/should have died/, 'says why');
    cmp_ok($r->{elapsed}, '<', 5, 'without waiting long');
};

subtest 'must_die with an exit code' => sub {
    my $r = run_t(fixture('must-die-code', <<'_B_'));
=== TEST 1: wrong exit code expected
--- config
    location = /t { return 200 a b c; }
--- must_die: 3
_B_
    is($r->{not_ok}, 1, 'exit code 1 is not 3');
};

subtest 'a port held by someone else is reported, not retried' => sub {
    my $holder = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                       Listen => 5, ReuseAddr => 1) or die $!;
    my $r = run_t(fixture('busy-port', <<'_B_'),
=== TEST 1: port busy
--- config
    location = /t { return 200; }
--- request
GET /t
_B_
        TEST_NGINX_RANDOMIZE => undef, TEST_NGINX_PORT => $holder->sockport);
    is($r->{not_ok}, 1, 'the status check fails');
    like($r->{stderr}, qr/already in use/, 'and says why');
    cmp_ok($r->{elapsed}, '<', 2, 'at once');
};

subtest 'a block without any request fails' => sub {
    my $r = run_t(fixture('no-request', <<'_B_'));
=== TEST 1: nothing to send
--- config
    location = /t { return 200; }
--- response_body
x
_B_
    is($r->{not_ok}, 1, 'reported');
};

done_testing();
