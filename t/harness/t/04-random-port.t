# TEST_NGINX_RANDOMIZE=1: a free random port and a servroot per test file,
# so "prove -j2" can run two nginx-backed files at the same time.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTest;
use Test::More;
use Time::HiRes ();

my $dir = scratch_dir();

# Each file records when its nginx served, its port and its servroot.
for my $name (qw(a b)) {
    write_t("par-$name.t", <<"_T_");
use Test::Nginx::Socket 'no_plan';
use Time::HiRes ();
add_response_body_check(sub {
    my (\$block, \$body) = \@_;
    open my \$fh, '>>', "$dir/par-$name.log" or die;
    printf \$fh "%s %.3f %s %s\\n", \$ENV{TEST_NGINX_SERVER_PORT},
        Time::HiRes::time(), \$body, server_root();
    close \$fh;
});
repeat_each(3);
run_tests();
__DATA__
=== TEST 1: slow enough to overlap
--- config
    location = /t { return 200 "$name"; }
--- request
GET /t
--- response_body chomp
$name
--- wait: 0.4
_T_
}

my $r = run_prove([ '-j2', "$dir/par-a.t", "$dir/par-b.t" ]);
like($r->{stdout}, qr/^Result: PASS/m, 'prove -j2: Result: PASS')
    or diag($r->{stdout}, $r->{stderr});

my (%port, %root, %times);
for my $name (qw(a b)) {
    open my $fh, '<', "$dir/par-$name.log" or die "no log for $name";
    for (<$fh>) {
        my ($port, $time, $body, $root) = split ' ';
        $port{$name}{$port} = 1;
        $root{$name} = $root;
        push @{ $times{$name} }, $time;
        is($body, $name, "file $name got its own nginx's answer");
    }
}
my ($pa) = keys %{ $port{a} };
my ($pb) = keys %{ $port{b} };
isnt($pa, $pb, "different ports ($pa, $pb)");
ok($pa != 1984 && $pb != 1984, 'not the fixed default port');
isnt($root{a}, $root{b}, 'different server roots');
ok(!-e $root{a} && !-e $root{b}, 'per-file server roots removed after passing');

# Each file spans ~0.8s+; they must have been running at the same time.
my ($a0, $a1) = (sort { $a <=> $b } @{ $times{a} })[0, -1];
my ($b0, $b1) = (sort { $a <=> $b } @{ $times{b} })[0, -1];
ok($a0 < $b1 && $b0 < $a1, 'the two files ran concurrently');

done_testing();
