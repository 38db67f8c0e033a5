# The dashboard page's browser tests (t/browser/*.test.js: Debian's chromium
# driven by playwright-core against nginx + module + sidecar + FerretDB,
# started by the suite itself) run by node's test runner; each of its
# results becomes one TAP line here, so that prove reports them.
#
# Needs node + npm, chromium (/usr/bin/chromium or $CHROMIUM) and the
# builds (make, make devdb). A missing one is a failure, not a skip; to
# leave the suite out on purpose: SKIP_BROWSER_TESTS=1 (reported as a skip).
use strict;
use warnings;
use Test::More;
use FindBin;
use Cwd qw(abs_path);
use POSIX ();

my $root = abs_path("$FindBin::Bin/..");
my $dir = "$root/t/browser";
my $chromium = $ENV{CHROMIUM} || '/usr/bin/chromium';
my $timeout = $ENV{BROWSER_TEST_TIMEOUT} || 240;

plan skip_all => 'SKIP_BROWSER_TESTS is set: the browser tests were left out'
    if $ENV{SKIP_BROWSER_TESTS};

# prerequisites: each missing one fails, with what to do
my @missing;
push @missing, 'node (apt-get install nodejs npm)' if system('command -v node >/dev/null 2>&1') != 0;
push @missing, "$chromium (apt-get install chromium)" unless -x $chromium;
my $module = (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '')[0]
             // "$root/build/ngx_chat_module.so";
my $sidecar = $ENV{TEST_NGINX_SIDECAR_BIN} // "$root/build/sidecar/chat-sidecar";
for ([$module, 'make'], [$sidecar, 'make'], ["$root/build/devdb", 'make devdb']) {
    push @missing, "$_->[0] ($_->[1])" unless -e $_->[0];
}
if (@missing) {
    fail('browser test prerequisites');
    diag("missing: $_") for @missing;
    done_testing();
    exit;
}

# npm ci when the lock file changed (quiet); not under the parent's jobserver
{
    delete local $ENV{MAKEFLAGS};
    delete local $ENV{MFLAGS};
    delete local $ENV{MAKELEVEL};
    my $out = `make -s -C $root browser-deps CHROMIUM=$chromium 2>&1`;
    if ($? != 0) {
        fail('make browser-deps');
        diag($out);
        done_testing();
        exit;
    }
}

# node --test, TAP on stdout, killed (its process group) after $timeout s
my @cmd = ('node', '--test', '--test-reporter=tap', "$dir/");
my $pid = open(my $fh, '-|') // die "fork: $!";
if ($pid == 0) {
    POSIX::setpgid(0, 0);
    open(STDERR, '>&', \*STDOUT);
    chdir $root;
    $ENV{CHROMIUM} = $chromium;
    exec(@cmd) or die "exec node: $!";
}
my @lines;
my $timed_out = 0;
eval {
    local $SIG{ALRM} = sub { die "timeout\n" };
    alarm $timeout;
    while (my $l = <$fh>) { push @lines, $l; }
    alarm 0;
    1;
} or do {
    $timed_out = 1;
    kill 'TERM', -$pid;
    sleep 2;
    kill 'KILL', -$pid;
};
close $fh;
my $status = $? >> 8;

# one TAP line per top-level node test, with its YAML block on failure
my ($i, @results) = (0);
while ($i < @lines) {
    my $l = $lines[$i++];
    next unless $l =~ /^(not )?ok \d+ - (.*?)\s*(#\s*(SKIP|TODO).*)?$/;
    my ($ok, $name, $directive) = (!$1, $2, $4);
    my @block;
    while ($i < @lines && $lines[$i] =~ /^\s+\S/ && $lines[$i] !~ /^(not )?ok /) {
        push @block, $lines[$i++];
    }
    push @results, [$ok, $name, $directive, \@block];
}

for my $r (@results) {
    my ($ok, $name, $directive, $block) = @$r;
    if ($directive && $directive eq 'SKIP') {
        fail("$name: skipped in the browser suite (nothing is skipped silently)");
        next;
    }
    ok($ok, "browser: $name") or diag(join '', @$block);
}

my %sum = map { /^# (tests|pass|fail|cancelled|skipped|todo) (\d+)/ ? ($1 => $2) : () } @lines;
my $summary = join ', ', map { "$_ " . ($sum{$_} // '?') } qw(tests pass fail cancelled skipped);
my $clean = !$timed_out && $status == 0 && defined $sum{pass} && $sum{pass} > 0
    && ($sum{fail} // 1) == 0 && ($sum{cancelled} // 1) == 0 && ($sum{skipped} // 1) == 0
    && $sum{pass} == @results;
ok($clean, "node --test t/browser/: $summary")
    or diag(($timed_out ? "timed out after $timeout s" : "exit status $status")
            . "; the end of its output:\n"
            . join('', @lines > 60 ? @lines[-60 .. -1] : @lines));

done_testing();
