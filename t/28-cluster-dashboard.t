# A host's cluster link on its sidecar, without NATS: send-test-batch plays
# nginx workers that send CHAT_REC_CLUSTER records (wire/chat_wire.h), and
# the sidecar's JSON (cluster, system.host) and /metrics (chat_host_info,
# chat_cluster_*) show the host name, the state over workers, the servers
# and the summed counters; a worker replaced by a new incarnation keeps
# what its old one counted (no counter goes back), and stops counting as
# connected.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::Script;
use ChatTest::Sidecar;

no_shuffle();
log_level('info');
no_root_location();

# the fake workers are this test's processes: the ingest socket must take
# them (--ingest-peers any)
ChatTest::Sidecar::start(db_refresh => 0.5,
                         args => { 'ingest-peers' => 'any' });

chat_blocks(metrics => 1, http => <<'_EOH_', config => <<'_EOC_');
# the real workers' records (link off) name the host as the fake ones do
chat_host_name host-a;
upstream sidecar { server $TEST_NGINX_SIDECAR; }
_EOH_
location = /static { return 200 "static\n"; }
location = /metrics {
    auth_basic "Dashboard";
    auth_basic_user_file $TEST_NGINX_HTPASSWD;
    proxy_pass http://sidecar;
    proxy_pass_request_headers off;
    proxy_set_header X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
}
_EOC_

run_tests();

__DATA__

=== TEST 1: nginx's workers without chat_cluster: their records name the host (chat_host_name), the link off
--- request
GET /static
--- chat_script
my $host = 'host-a';
my $d = ChatTest::Sidecar::wait_for(sub { $_[0]{cluster}{host} eq $host }, 5);
is $d->{cluster}{host}, $host, 'cluster.host is chat_host_name, from the workers\' records';
is $d->{system}{host}, $host, 'system.host too';
ok JSON::PP::is_bool($d->{cluster}{enabled}) && !$d->{cluster}{enabled},
   'enabled is false';
is $d->{cluster}{state}, 'off', 'state off';
is $d->{cluster}{workers}, 0, 'no worker with a link';
is_deeply $d->{cluster}{servers}, [], 'no server';
is $d->{cluster}{$_}, 0, "$_ 0" for qw(reconnects events_in events_out gaps_filled dropped);
is $d->{cluster}{last_error}, '', 'no error';

my $m = ChatTest::Sidecar::get('/metrics')->{content};
like $m, qr/^chat_host_info\{host="\Q$host\E"\} 1$/m, 'chat_host_info names it';
like $m, qr/^chat_cluster_enabled 0$/m, 'chat_cluster_enabled 0';
like $m, qr/^chat_cluster_workers_connected 0$/m, 'no worker connected';



=== TEST 2: two workers' links: state over workers, servers, summed counters; a worker replaced
--- request
GET /static
--- timeout: 30
--- chat_script
my $tool = "$ENV{TEST_NGINX_ROOT}/build/sidecar/send-test-batch";
sub send_link {
    my ($pid, $start, $seq, @cl) = @_;
    my $out = `$tool -u '$ENV{TEST_NGINX_IPC}' -n 0 -p $pid -s $start -q $seq --host host-a @cl 2>&1`;
    is $?, 0, "worker $pid/$start sent its link" or diag $out;
}
sub metric {
    my ($text, $name) = @_;
    return $text =~ /^\Q$name\E (\S+)$/m ? $1 : undef;
}

send_link(900001, 1, 1, qw(--cluster connected --server nats://127.0.0.1:4222), '--counts', '1,10,20,3,0');
send_link(900002, 1, 1, qw(--cluster reconnecting --error), "'connection refused'", '--counts', '2,5,6,1,4');

my $d = ChatTest::Sidecar::wait_for(sub { $_[0]{cluster}{workers} == 2 }, 10);
my $c = $d->{cluster};
is $c->{host}, 'host-a', 'the host the workers name';
is $d->{system}{host}, 'host-a', 'system.host too';
ok $c->{enabled}, 'enabled';
is $c->{state}, 'degraded', 'one of two connected: degraded';
is $c->{workers_connected}, 1, 'workers_connected';
is_deeply $c->{servers}, ['nats://127.0.0.1:4222'], 'the server connected to';
is $c->{reconnects}, 3, 'reconnects summed';
is $c->{events_out}, 15, 'events_out summed';
is $c->{events_in}, 26, 'events_in summed';
is $c->{gaps_filled}, 4, 'gaps_filled summed';
is $c->{dropped}, 4, 'dropped summed';
is $c->{last_error}, 'connection refused', 'the last error';

my $m = ChatTest::Sidecar::get('/metrics')->{content};
like $m, qr/^chat_host_info\{host="host-a"\} 1$/m, 'chat_host_info';
like $m, qr/^# TYPE chat_cluster_reconnects_total counter$/m, 'counters typed';
is metric($m, 'chat_cluster_enabled'), 1, 'chat_cluster_enabled';
is metric($m, 'chat_cluster_workers_connected'), 1, 'chat_cluster_workers_connected';
is metric($m, 'chat_cluster_reconnects_total'), 3, 'chat_cluster_reconnects_total';
is metric($m, 'chat_cluster_events_in_total'), 26, 'chat_cluster_events_in_total';
is metric($m, 'chat_cluster_events_out_total'), 15, 'chat_cluster_events_out_total';
is metric($m, 'chat_cluster_gaps_filled_total'), 4, 'chat_cluster_gaps_filled_total';
is metric($m, 'chat_cluster_dropped_total'), 4, 'chat_cluster_dropped_total';

# worker 900002 restarts (a new start time): its new incarnation counts
# from 0, the old one's counts stay in the sums
send_link(900001, 1, 2, qw(--cluster connected --server nats://127.0.0.1:4222), '--counts', '1,11,21,3,0');
send_link(900002, 2, 1, qw(--cluster connected --server nats://127.0.0.1:4223), '--counts', '0,1,1,0,0');
$d = ChatTest::Sidecar::wait_for(sub { $_[0]{cluster}{state} eq 'connected' }, 10);
$c = $d->{cluster};
is $c->{state}, 'connected', 'both connected';
is $c->{workers}, 2, 'the old incarnation no longer counts';
is $c->{workers_connected}, 2, 'workers_connected 2';
is_deeply [sort @{ $c->{servers} }], ['nats://127.0.0.1:4222', 'nats://127.0.0.1:4223'],
    'the distinct servers';
is $c->{reconnects}, 3, 'reconnects: the old incarnation\'s kept';
is $c->{events_out}, 17, 'events_out: 11 + 5 (old) + 1';
is $c->{events_in}, 28, 'events_in: 21 + 6 (old) + 1';
is $c->{dropped}, 4, 'dropped kept';

# through nginx, as Prometheus scrapes it
my $r = client(undef)->get('/metrics', headers => { Authorization => 'Basic YWRtaW46czNjcmV0' });
is $r->{status}, 200, '/metrics through nginx';
like $r->{body}, qr/^chat_host_info\{host="host-a"\} 1$/m, 'chat_host_info through nginx';
is metric($r->{body}, 'chat_cluster_workers_connected'), 2, 'chat_cluster_workers_connected 2';
is metric($r->{body}, 'chat_cluster_events_out_total'), 17, 'chat_cluster_events_out_total never went back';
SKIP: {
    skip 'promtool not installed', 1 unless -x '/usr/bin/promtool';
    open my $p, '|-', '/usr/bin/promtool check metrics >/dev/null 2>&1' or die $!;
    print $p $r->{body};
    close $p;
    is $?, 0, 'promtool check metrics passes';
}
