# error_log / no_error_log / grep_error_log see only the lines logged
# since their block (and, by default, their repeat) started.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTest;
use Test::More;

my $blocks = <<'_B_';
=== TEST 1: logs an [error] mentioning marker-one
--- log_level: error
--- config
    location /missing { root html; }
--- request
GET /missing/marker-one
--- error_code: 404
--- error_log
marker-one

=== TEST 2: a later block does not see TEST 1's lines
--- log_level: error
--- config
    location = /t { return 200 "fine"; }
--- request
GET /t
--- no_error_log
marker-one
[error]

=== TEST 3: each repeat sees its own lines only
--- log_level: error
--- config
    location /missing { root html; }
--- request
GET /missing/marker-three
--- error_code: 404
--- grep_error_log: marker-three
--- grep_error_log_out eval
["marker-three\nmarker-three\n", "marker-three\nmarker-three\n", "marker-three\nmarker-three\n"]
_B_

my $t = write_t('scope.t', <<"_T_");
use Test::Nginx::Socket 'no_plan';
repeat_each(3);
no_shuffle();
run_tests();
__DATA__
$blocks
_T_
my $r = run_t($t);
is($r->{not_ok}, 0, 'no failures') or diag($r->{stdout}, $r->{stderr});
is($r->{ok}, 3 * (2 + 3 + 2), 'all checks ran');

# check_accum_error_log(): the repeats of a block accumulate instead.
(my $accum = $blocks) =~ s{\["marker-three.*\]}
    {["marker-three\\n" x 2, "marker-three\\n" x 4, "marker-three\\n" x 6]};
$t = write_t('accum.t', <<"_T_");
use Test::Nginx::Socket 'no_plan';
repeat_each(3);
no_shuffle();
check_accum_error_log();
run_tests();
__DATA__
$accum
_T_
$r = run_t($t);
is($r->{not_ok}, 0, 'check_accum_error_log: accumulated per block')
    or diag($r->{stdout}, $r->{stderr});

done_testing();
