# The sidecar's C unit tests (ring buffers at and past capacity, endpoint
# cap, aggregation, JSON, Prometheus...) under AddressSanitizer and UBSan,
# and its end-to-end script (fake workers over nng, HTTP, the database
# stopped under it).  Both print "N passed, N failed"; this file turns
# their results into TAP so that one prove run covers the whole project.
use strict;
use warnings;
use Test::More;
use FindBin;
use Cwd qw(abs_path);

# one spelling of the path, or make's dependency files would not match
my $root = abs_path("$FindBin::Bin/..");

sub run_suite {
    my ($name, $cmd) = @_;
    my $out = `$cmd 2>&1`;
    my $status = $?;
    my ($passed, $failed) = $out =~ /^(\d+) passed, (\d+) failed/m;
    ok(defined $passed && $status == 0 && $failed == 0 && $passed > 0,
       "$name: " . ($passed // '?') . " passed, " . ($failed // '?') . " failed")
        or diag($out);
}

run_suite('sidecar unit tests (ASan+UBSan)',
          "make -s -C $root/sidecar test BUILD_DIR=$root/build/sidecar");
run_suite('sidecar end to end (nng, HTTP, FerretDB)',
          "make -s -C $root/sidecar integration BUILD_DIR=$root/build/sidecar");

done_testing();
