# Every fuzzing harness (fuzz/) over its committed seed corpus, and every
# crash input kept in fuzz/regressions/ on its own: the bugs the fuzzers
# found stay fixed.  The timed fuzzing itself is `make fuzz`.
use strict;
use warnings;
use Test::More;
use FindBin;
use Cwd qw(abs_path);

my $root = abs_path("$FindBin::Bin/..");
my $out = `make -s -C $root fuzz-regress 2>&1`;
my $status = $?;
my ($passed, $failed) = $out =~ /fuzz-regress: (\d+) passed, (\d+) failed/;

ok(defined $passed && $status == 0 && $failed == 0 && $passed > 0,
   'fuzz regressions: ' . ($passed // '?') . ' passed, ' . ($failed // '?') . ' failed')
    or diag($out);

done_testing();
