# A worker never dies because of what its metrics peer, the sidecar, does:
# it refuses the connection (two nginx beside one sidecar: the second is not
# the nginx of the sidecar's pid file), it stops (SIGSTOP: slow), it is
# killed and restarted again and again, it is gone; and an nginx binary
# upgrade (USR2, then QUIT to the old master) with the sidecar running and
# restarted mid-upgrade.
#
# Two nginx at once and a binary upgrade do not fit Test::Nginx's one
# server per block: this file starts nginx (/usr/sbin/nginx with the
# module, each in its own prefix) and the sidecar itself, and stops them by
# pid.  Before the fix, the refused nginx lost a worker to SIGSEGV every
# few seconds (libnng 1.5's PUSH socket: ngx_http_chat_metrics.c,
# ngx_http_chat_metrics_pipe_event()).
use strict;
use warnings;

use Test::More;
use ChatTest::Env;
use ChatTest::Util qw(free_port slurp poll);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);

my $nginx = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
my $module = $ENV{TEST_NGINX_LOAD_MODULES}
    // "$ENV{TEST_NGINX_ROOT}/build/ngx_chat_module.so";
my $sidecar_bin = $ENV{TEST_NGINX_SIDECAR_BIN}
    // "$ENV{TEST_NGINX_ROOT}/build/sidecar/chat-sidecar";

my $top = tempdir('chat-peer-faults-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{TEST_NGINX_NO_CLEAN});
chmod 0755, $top;
my $ipc = "ipc://$top/ingest.ipc";
# the sidecar answers only requests carrying its key (docs/SECURITY.md)
my $sidecar_key = unpack 'H*', join '', map { chr int rand 256 } 1 .. 24;
my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 0,
                           default_headers => { 'X-Sidecar-Key' => $sidecar_key });


sub alive { my $pid = shift; return $pid && kill 0, $pid }

sub read_pid {
    my $s = slurp(shift);
    return $s =~ /^(\d+)/ ? $1 : undef;
}

# the children of a process, from /proc (nginx workers of a master)
sub children {
    my $ppid = shift;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = slurp($stat) or next;
        # pid (comm) state ppid ...; comm may hold spaces and parens
        push @kids, $1 if $s =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $ppid;
    }
    return sort { $a <=> $b } @kids;
}

sub nchildren { my @k = children(shift); return scalar @k }

# ---- nginx -------------------------------------------------------------

my %nginx;       # name => { dir, port, master }

sub start_nginx {
    my ($name, $workers) = @_;
    my $dir = "$top/$name";
    mkdir $dir;
    mkdir "$dir/logs";
    my $port = free_port();
    open my $fh, '>', "$dir/nginx.conf" or die $!;
    print $fh <<"_CONF_";
load_module $module;
worker_processes $workers;
# a binary upgrade runs nginx again with only these variables: under
# make test-asan, the sanitizer's runtime and options (unset: nothing)
env LD_PRELOAD;
env ASAN_OPTIONS;
env UBSAN_OPTIONS;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    chat_metrics on;
    chat_metrics_address $ipc;
    chat_metrics_flush_interval 50ms;
    server {
        listen 127.0.0.1:$port;
        location /$name/ { return 200 "$name\\n"; }
        location /$name-back/ { return 200 "$name\\n"; }
        location /$name-up/ { return 200 "$name\\n"; }
    }
}
_CONF_
    close $fh;
    system($nginx, '-p', "$dir/", '-c', "$dir/nginx.conf") == 0
        or die "nginx $name did not start:\n" . slurp("$dir/logs/error.log");
    my $master;
    poll(sub { $master = read_pid("$dir/logs/nginx.pid");
               $master && nchildren($master) >= $workers }, 10)
        or die "nginx $name: no master and $workers workers\n";
    $nginx{$name} = { dir => $dir, port => $port, master => $master };
    return $nginx{$name};
}

sub stop_nginx {
    my ($n, $sig) = @_;
    for my $f ("$n->{dir}/logs/nginx.pid", "$n->{dir}/logs/nginx.pid.oldbin") {
        my $pid = read_pid($f) or next;
        kill $sig // 'TERM', $pid;
        poll(sub { !alive($pid) }, 10);
        kill 'KILL', $pid if alive($pid);
    }
}

END {
    local $?;
    stop_nginx($_) for values %nginx;
}

# every signal death of a worker in this nginx's error log
sub deaths {
    my $n = shift;
    my @d = slurp("$n->{dir}/logs/error.log") =~ /(exited on signal \d+)/g;
    return scalar @d;
}

# GETs this nginx's location $count times; how many answered 200
sub traffic {
    my ($n, $name, $count, $pause) = @_;
    my $ok = 0;
    for (1 .. $count) {
        my $r = $http->get("http://127.0.0.1:$n->{port}/$name/");
        $ok++ if $r->{status} == 200;
        sleep $pause if $pause;
    }
    return $ok;
}

# ---- the sidecar -------------------------------------------------------

my ($sidecar_pid, $sidecar_port);
my $sidecar_log = "$top/sidecar.log";

sub start_sidecar {
    my $pid_file = shift;
    {
        open my $k, '>', "$top/sidecar-key" or die "$top/sidecar-key: $!";
        print $k "$sidecar_key\n";
    }
    $sidecar_port //= free_port();
    $sidecar_pid = fork // die "fork: $!";
    if ($sidecar_pid == 0) {
        open STDOUT, '>>', $sidecar_log;
        open STDERR, '>&', \*STDOUT;
        exec $sidecar_bin, '--listen', "127.0.0.1:$sidecar_port",
            '--http-key-file', "$top/sidecar-key",
            '--ingest', $ipc, '--ingest-peers', 'nginx',
            '--nginx-pid-file', $pid_file,
            '--mongo-uri', $ENV{TEST_NGINX_CHAT_URI},
            '--html-dir', "$ENV{TEST_NGINX_ROOT}/html",
            '--log-level', 'info'
            or POSIX::_exit(127);
    }
    poll(sub { ($http->get("http://127.0.0.1:$sidecar_port/health")
                ->{status} // 0) == 200 }, 10)
        or die "the sidecar did not start:\n" . slurp($sidecar_log);
}

sub stop_sidecar {
    my $sig = shift // 'TERM';
    return unless $sidecar_pid;
    kill 'CONT', $sidecar_pid;
    kill $sig, $sidecar_pid;
    waitpid $sidecar_pid, 0;
    undef $sidecar_pid;
}

END { local $?; stop_sidecar('KILL') }

sub data {
    my $r = $http->get("http://127.0.0.1:$sidecar_port/dashboard/api/data");
    return $r->{status} == 200 ? JSON::PP->new->utf8->decode($r->{content})
                               : undef;
}

# what the sidecar knows of the pipeline, for a failure's diagnostics
sub pipeline {
    my $d = data() or return 'no data';
    my $p = $d->{pipeline};
    return join ' ', (map { "$_=" . ($p->{$_} // '?') }
                      qw(requests_received requests_dropped
                         requests_not_received batch_seq_gaps batches_missed
                         batch_seq_regressions malformed_batches_rejected)),
        map { "[pid $_->{worker_pid} live=$_->{live} batches=$_->{batches} "
              . "seq=$_->{first_seq}..$_->{last_seq} "
              . "recorded=$_->{requests_recorded} "
              . "dropped=$_->{requests_dropped}]" } @{ $p->{workers} };
}

# the request count of one endpoint row on the dashboard (0: no row)
sub recorded {
    my $endpoint = shift;
    my $d = data() or return 0;
    my ($row) = grep { $_->{endpoint} eq $endpoint } @{ $d->{endpoints} };
    return $row ? $row->{request_count} : 0;
}

# =======================================================================

my $a_pid_file = "$top/a/logs/nginx.pid";
start_sidecar($a_pid_file);
my $A = start_nginx('a', 2);
my $B = start_nginx('b', 4);
my @a_workers = children($A->{master});
my @b_workers = children($B->{master});

# ---- refused: B is not the nginx of the sidecar's pid file -------------

my ($sent_a, $ok_b) = (0, 0);
my $until = time + 8;
while (time < $until) {
    $sent_a += traffic($A, 'a', 1);
    $ok_b += traffic($B, 'b', 1, 0.02);
}
ok $sent_a > 50 && $ok_b > 50,
    "both nginx served while the sidecar refused B ($sent_a on A, $ok_b on B)";

ok poll(sub { recorded('GET /a/') == $sent_a }, 10),
    "every request of A is on the dashboard ($sent_a)"
    or diag "recorded: " . recorded('GET /a/');
is recorded('GET /b/'), 0, 'no record of B reached the dashboard';
like slurp($sidecar_log), qr/refused a connection from pid \d+: not a worker/,
    'the sidecar logged the refusal';
ok poll(sub { slurp("$B->{dir}/logs/error.log")
              =~ /\[warn\].*chat metrics: the sidecar at "\Q$ipc\E" closed \d+ connection\(s\) as soon as they were made/ }, 10),
    "B's error log says the sidecar cuts its connections";
is deaths($B), 0, 'no worker of the refused nginx died';
is_deeply [children($B->{master})], \@b_workers, "B's workers are the same processes";
is deaths($A), 0, 'no worker of the accepted nginx died';
stop_nginx($B, 'QUIT');
delete $nginx{b};

# ---- slow: the sidecar stopped, then continued -------------------------

my $before = recorded('GET /a/');
kill 'STOP', $sidecar_pid;
my $sent = traffic($A, 'a', 40, 0.05);
is $sent, 40, 'A answers every request while the sidecar is stopped';
kill 'CONT', $sidecar_pid;
ok poll(sub { recorded('GET /a/') == $before + 40 }, 10),
    'what was queued meanwhile reaches the sidecar once it continues';

# ---- restarted, again and again; then gone -----------------------------

for my $round (1 .. 4) {
    stop_sidecar($round % 2 ? 'KILL' : 'TERM');
    traffic($A, 'a', 10, 0.02);
    start_sidecar($a_pid_file);
    traffic($A, 'a', 10, 0.02);
}
stop_sidecar('KILL');
is traffic($A, 'a', 40, 0.05), 40, 'A answers every request with the sidecar gone';
start_sidecar($a_pid_file);
# a location of its own: what was queued meanwhile goes to GET /a/
is traffic($A, 'a-back', 20), 20, 'A serves after the sidecar is back';
ok poll(sub { recorded('GET /a-back/') == 20 }, 10),
    'every one of them reaches the restarted sidecar'
    or diag 'recorded ' . recorded('GET /a-back/') . '; ' . pipeline();
is deaths($A), 0, 'no worker died while the sidecar was stopped, restarted, gone';
is_deeply [children($A->{master})], \@a_workers, "A's workers are the same processes";

# ---- binary upgrade: USR2, the sidecar restarted mid-way, then QUIT ----

my $old_master = $A->{master};
kill 'USR2', $old_master;
my $new_master;
ok poll(sub {
        $new_master = read_pid($a_pid_file);
        $new_master && $new_master != $old_master
            && read_pid("$a_pid_file.oldbin") == $old_master
            && nchildren($new_master) >= 2 }, 10),
    'USR2: a new master and its workers run beside the old ones';

# the old workers must redial, and must be let in: they are the upgrade's
# old generation (nginx.pid.oldbin), not strangers
my $log_from = length slurp($sidecar_log);
stop_sidecar('KILL');
start_sidecar($a_pid_file);
$sent = traffic($A, 'a-up', 60, 0.02);    # both generations accept
is $sent, 60, 'both generations serve during the upgrade';
ok poll(sub { recorded('GET /a-up/') == 60 }, 15),
    'every request of both generations is on the dashboard'
    or diag 'recorded ' . recorded('GET /a-up/') . ' of 60; ' . pipeline();
unlike substr(slurp($sidecar_log), $log_from), qr/refused a connection/,
    'the sidecar refused neither generation';

kill 'QUIT', $old_master;
ok poll(sub { !alive($old_master) }, 10), 'QUIT: the old master exits';
is traffic($A, 'a-back', 20), 20, 'the new generation serves alone';
ok poll(sub { recorded('GET /a-back/') == 20 }, 10),
    "the new generation's records arrive"
    or diag 'recorded ' . recorded('GET /a-back/') . '; ' . pipeline();
is deaths($A), 0, 'no worker of either generation died';

done_testing;
