# `make run` installs what building and running need, `make test` what
# testing needs too (scripts/deps.sh's two profiles): a user who only runs
# the chat gets no browser, no Prometheus, no compilers for sanitizers; a
# test run gets every tool the suites call.
use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
use FindBin;

my $root = abs_path("$FindBin::Bin/..");

sub profile {
    my @p = split /\n/, `'$root/scripts/deps.sh' $_[0] --list`;
    is $?, 0, "deps.sh $_[0] --list exits 0";
    return { map { $_ => 1 } @p };
}

my $run = profile('run');
my $test = profile('test');

for my $p (qw(nginx nginx-dev libmongoc-dev libcjson-dev libnng-dev
              apache2-utils openssl)) {
    ok $run->{$p}, "run needs $p";
}
for my $p (qw(chromium nodejs prometheus clang libclang-rt-14-dev lld-14
              libtest-base-perl libprotocol-websocket-perl iproute2)) {
    ok !$run->{$p}, "run does not install $p (tests only)";
    ok $test->{$p}, "test installs $p";
}
ok !(grep { !$test->{$_} } keys %$run), 'test installs everything run does';

# which profile each make target asks for (make -n runs nothing)
my $dry = sub { scalar `make -n -C '$root' $_[0] 2>/dev/null` };
like $dry->('run'), qr{scripts/deps\.sh run\b}, 'make run installs the run profile';
unlike $dry->('run'), qr{scripts/deps\.sh test\b}, '... and not the test one';
like $dry->('test'), qr{scripts/deps\.sh test\b}, 'make test installs the test profile';
like $dry->('test-asan'), qr{scripts/deps\.sh test\b}, 'make test-asan too';

done_testing;
