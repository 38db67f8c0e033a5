# The embedded database's _id index (devdb/README.md, "The _id index"):
# devdb's Go tests (devdb/idindex_test.go) run against build/devdb, each
# on its own database in its own directory (the suite's shared one is not
# touched).  They create collections through the MongoDB wire protocol,
# then read the SQLite files: the index on FerretDB's _id expression is
# there within a second, FerretDB's own explain of find({_id}) says
# SEARCH ... USING INDEX, it survives a restart, a file without it gets it
# at start, and -id-index=false leaves the plan a SCAN.  One TAP line per
# Go test.
use strict;
use warnings;
use Test::More;
use FindBin;
use Cwd qw(abs_path);

my $root = abs_path("$FindBin::Bin/..");
my $bin = $ENV{DEVDB_BIN} // "$root/build/devdb";

# the Makefile's choice of Go
my ($go) = grep { defined && -x } (
    (map { "$_/go" } split /:/, $ENV{PATH} // ''), '/usr/local/go/bin/go');
plan skip_all => 'no Go toolchain (devdb needs Go >= 1.24)' unless $go;
plan skip_all => "no $bin (make devdb; not built when MONGO_URI is set)"
    unless -x $bin;

$ENV{DEVDB_BIN} = abs_path($bin);    # go test runs in devdb/
$ENV{GOTOOLCHAIN} = 'local';
$ENV{GOFLAGS} = '-mod=mod';

my $out = `cd '$root/devdb' && '$go' test -count=1 -v -run '^TestIDIndex' . 2>&1`;
my $status = $?;

my %seen;
while ($out =~ /^\s*--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+s)\)/mg) {
    my ($res, $name, $took) = ($1, $2, $3);
    $seen{$name} = 1;
    if ($res eq 'SKIP') {
        pass("$name skipped ($took)");
    } else {
        ok($res eq 'PASS', "$name ($took)");
    }
}

for my $name (qw(TestIDIndex TestIDIndexOff TestIDIndexSQL TestIDIndexConcurrent)) {
    ok($seen{$name}, "$name ran");
}
is($status, 0, 'go test exits 0') or diag($out);
note($out) if $ENV{TEST_VERBOSE};

done_testing();
