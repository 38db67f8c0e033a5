# nginx runs as a direct child of the test ("daemon off"), with the
# master/workers settings asked for, everything inside the servroot, and
# is stopped by pid when the file ends.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTest;
use Test::More;

my $t = write_t('process.t', <<'_T_');
use Test::Nginx::Socket 'no_plan';
master_on();
workers(2);
env_to_nginx('FOO_BAR=1', 'BAZ=hello world');

sub ppid_of {
    open my $fh, '<', "/proc/$_[0]/stat" or return -1;
    return (split ' ', (<$fh> =~ s/^.*\) //r))[1];
}

add_response_body_check(sub {
    my ($block) = @_;
    my $pid = Test::Nginx::Util::nginx_pid();
    # the master forks its workers one after the other: the first may
    # answer before the second exists
    my @workers;
    for (1 .. 100) {
        @workers = grep { ppid_of($_) == $pid } map { m{/(\d+)$} } glob '/proc/[0-9]*';
        last if @workers >= 2;
        select undef, undef, undef, 0.05;
    }
    pass("proc: nginx=$pid parent=" . ppid_of($pid) . " test=$$ workers="
         . scalar(@workers));
    open my $fh, '<', server_root() . '/conf/nginx.conf' or die;
    local $/;
    my $conf = <$fh>;
    $conf =~ s/\n/\\n/g;
    pass("conf: $conf");
});
run_tests();
__DATA__
=== TEST 1: served by a worker of our own master
--- config
    location = /t { return 200 "$pid"; }
--- request
GET /t
_T_

my $r = run_t($t);
is($r->{not_ok}, 0, 'fixture passes') or diag($r->{stdout}, $r->{stderr});
my ($line) = grep { /proc: / } @{ $r->{lines} };
my ($nginx, $parent, $test, $workers) =
    ($line // '') =~ /nginx=(\d+) parent=(\d+) test=(\d+) workers=(\d+)/;
ok($nginx, "nginx pid $nginx");
is($parent, $test, 'nginx master is a direct child of the test process');
is($workers, 2, 'workers(2) gave two worker processes');
ok(!kill(0, $nginx), 'nginx is gone after the test file ended');

# (TAP escapes the backslashes of our "\n" markers once more)
my ($conf) = map { /conf: (.*)/ ? $1 =~ s/\\+n/\n/gr : () } @{ $r->{lines} };
$conf //= '';
like($conf, qr/^daemon off;$/m, 'daemon off');
like($conf, qr/^master_process on;$/m, 'master_process on');
like($conf, qr/^worker_processes 2;$/m, 'worker_processes 2');
like($conf, qr/^env FOO_BAR=1;$/m, 'env_to_nginx plain');
like($conf, qr/^env 'BAZ=hello world';$/m, 'env_to_nginx quoted');
like($conf, qr/listen 127\.0\.0\.1:\d+;/, 'listens on 127.0.0.1 only');
for my $directive (qw(client_body_temp_path proxy_temp_path fastcgi_temp_path
                      uwsgi_temp_path scgi_temp_path pid error_log)) {
    like($conf, qr{^\s*$directive /\S*/(?:t/)?servroot\S*/}m,
         "$directive inside the servroot");
}
unlike($conf, qr{/var/lib/nginx|/run/nginx}, 'no Debian default paths');

# TEST_NGINX_LOAD_MODULES becomes load_module lines at the very top.
$t = write_t('load-modules.t', <<'_T_');
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__
=== TEST 1: a module that does not exist
--- config
    location = /t { return 200; }
--- must_die
--- error_log
/nonexistent/ngx_http_nothing_module.so
_T_
$r = run_t($t, TEST_NGINX_LOAD_MODULES =>
           '/nonexistent/ngx_http_nothing_module.so /nonexistent/second.so');
is($r->{ok}, 2, 'load_module was used (nginx died on the missing .so)')
    or diag($r->{stdout}, $r->{stderr});

done_testing();
