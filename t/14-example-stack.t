# The shipped configuration as `make run` renders it (nginx.conf.example,
# the sidecar with run.sh's options), checked for what the README promises
# a new user:
#   - the API's 4xx lines reach error.log at [info], 5xx at [error];
#   - the documented way to send a custom event (send-test-batch to the
#     sidecar's --events socket) shows it on the dashboard, and a send the
#     sidecar refuses (its --ingest takes only nginx's workers) is an error;
#   - the events socket takes custom events only: request records sent
#     there are not counted as requests.
# nginx and the sidecar are started here and stopped by pid.
use strict;
use warnings;

use Test::More;
use ChatTest::Env;
use ChatTest::Util qw(free_port slurp poll);
use ChatTest::JWT;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);

my $root = $ENV{TEST_NGINX_ROOT} or die "TEST_NGINX_ROOT is not set\n";
my $nginx = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
my $module = $ENV{TEST_NGINX_LOAD_MODULES} // "$root/build/ngx_chat_module.so";
my $sidecar_bin = $ENV{TEST_NGINX_SIDECAR_BIN}
    // "$root/build/sidecar/chat-sidecar";
my $tool = "$root/build/sidecar/send-test-batch";
-x $tool or BAIL_OUT("no $tool: run make first");

my $var = tempdir('chat-example-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{TEST_NGINX_NO_CLEAN});
mkdir "$var/$_" for qw(logs run tmp);
chmod 0755, $var, "$var/run";
# the sidecar's key, as run.sh makes it: in its --http-key-file and in
# nginx.conf (@SIDECAR_KEY@); the direct health probe below sends it too
my $sidecar_key = unpack 'H*', join '', map { chr int rand 256 } 1 .. 24;
my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 0,
                           default_headers => { 'X-Sidecar-Key' => $sidecar_key });


# ---- the stack, as scripts/run.sh starts it ---------------------------

my $port = free_port();
my $sidecar_port = free_port();
my $ingest = "ipc://$var/run/chat-metrics.ipc";
my $events = "ipc://$var/run/chat-events.ipc";

{
    open my $fh, '>', "$var/jwt-secret" or die $!;
    print $fh "$ENV{TEST_NGINX_JWT_SECRET}\n";
}
system("htpasswd -cbB '$var/htpasswd' admin s3cret 2>/dev/null") == 0
    or die "htpasswd failed\n";
chmod 0644, "$var/htpasswd";

{
    open my $fh, '>', "$var/sidecar-key" or die $!;
    print $fh "$sidecar_key\n";
}
# the machines' token of /metrics and the JSON, as run.sh makes it
my $scrape_token = unpack 'H*', join '', map { chr int rand 256 } 1 .. 32;
{
    open my $fh, '>', "$var/scrape-token" or die $!;
    print $fh "$scrape_token\n";
    close $fh;
    chmod 0600, "$var/scrape-token";
}

my $sidecar_pid = fork // die "fork: $!";
if ($sidecar_pid == 0) {
    open STDOUT, '>>', "$var/logs/sidecar.log";
    open STDERR, '>&', \*STDOUT;
    exec $sidecar_bin, '--listen', "127.0.0.1:$sidecar_port",
        '--http-key-file', "$var/sidecar-key",
        '--ingest', $ingest, '--events', $events,
        '--mongo-uri', $ENV{TEST_NGINX_CHAT_URI},
        '--nginx-pid-file', "$var/logs/nginx.pid",
        '--html-dir', "$root/html", '--pid-file', "$var/run/sidecar.pid"
        or POSIX::_exit(127);
}
END {
    local $?;
    if ($sidecar_pid) { kill 'TERM', $sidecar_pid; waitpid $sidecar_pid, 0 }
}

my %subst = (
    MODULE => $module, PREFIX => $var, PORT => $port,
    MONGO_URI => $ENV{TEST_NGINX_CHAT_URI},
    JWT_SECRET_FILE => "$var/jwt-secret", METRICS_ADDRESS => $ingest,
    SIDECAR => "127.0.0.1:$sidecar_port", HTPASSWD => "$var/htpasswd",
    SIDECAR_KEY => $sidecar_key, SCRAPE_TOKEN_FILE => "$var/scrape-token",
);
my $conf = slurp("$root/nginx.conf.example");
my $names = join '|', keys %subst;
$conf =~ s/@($names)@/$subst{$1}/g;
{
    open my $fh, '>', "$var/nginx.conf" or die $!;
    print $fh $conf;
}

ok poll(sub { ($http->get("http://127.0.0.1:$sidecar_port/health")->{status}
               // 0) == 200 }, 10), 'the sidecar starts with run.sh\'s options'
    or BAIL_OUT(slurp("$var/logs/sidecar.log"));

is system($nginx, '-p', $var, '-c', "$var/nginx.conf"), 0,
    'nginx starts from nginx.conf.example'
    or BAIL_OUT(slurp("$var/logs/error.log"));
my $master;
poll(sub { $master = (slurp("$var/logs/nginx.pid") =~ /(\d+)/)[0] }, 10);
END {
    local $?;
    if ($master) {
        kill 'QUIT', $master;
        poll(sub { !kill 0, $master }, 10);
        kill 'KILL', $master;
    }
}

my $auth = 'Basic ' . encode_base64('admin:s3cret', '');
sub data {
    my $r = $http->get("http://127.0.0.1:$port/dashboard/api/data",
                       { headers => { Authorization => $auth } });
    return $r->{status} == 200 ? JSON::PP->new->utf8->decode($r->{content})
                               : undef;
}

ok poll(sub { data() }, 10), 'the dashboard JSON answers through nginx';
unlike join('', grep { !/^\s*#/ } split /^/m, $conf), qr/\@[A-Z_]+\@/,
       'every placeholder of nginx.conf.example is filled';

# machines: the token of @SCRAPE_TOKEN_FILE@ instead of the password
for my $p ('/metrics', '/dashboard/api/data') {
    my $r = $http->get("http://127.0.0.1:$port$p",
                       { headers => { Authorization => "Bearer $scrape_token" } });
    is $r->{status}, 200, "$p with the scrape token: 200";
    $r = $http->get("http://127.0.0.1:$port$p",
                    { headers => { Authorization => 'Bearer ' . reverse $scrape_token } });
    is $r->{status}, 401, "$p with another token: 401";
}

# ---- error lines at the levels the README names ------------------------

my $r = $http->get("http://127.0.0.1:$port/api/chat/groups",
                   { headers => { 'X-Correlation-ID' => 'example-401' } });
is $r->{status}, 401, 'an API request without a token: 401';
ok poll(sub { slurp("$var/logs/error.log")
              =~ /\[info\] .*chat api: 401 GET \/api\/chat\/groups: .*correlation_id=example-401/ }, 5),
    'its line is in error.log at [info], as the README says'
    or diag slurp("$var/logs/error.log");

# ---- custom events ----------------------------------------------------

my $out = `$tool --help 2>&1`;
is $? >> 8, 0, 'send-test-batch --help exits 0';
like $out, qr/-C\s+custom event TYPE/, '... and explains -C';
like $out, qr/--events/, '... and names the --events socket';

$out = `$tool -u $events -n 0 -C deploy -k version=1.2.3 -k by=alice 2>&1`;
is $? >> 8, 0, 'the documented custom event command exits 0' or diag $out;
my $d;
ok poll(sub { $d = data();
              grep { $_->{event_type} eq 'deploy' } @{ $d->{custom_events} // [] } }, 5),
    'the event is on the dashboard';
my ($ev) = grep { $_->{event_type} eq 'deploy' } @{ $d->{custom_events} };
is_deeply [@$ev{qw(version by)}], ['1.2.3', 'alice'], '... with its key/values'
    or diag explain $ev;

$out = `$tool -u $ingest -n 0 -C forged 2>&1`;
is $? >> 8, 1, 'a send to the workers\' socket, which refuses this process, exits 1';
like $out, qr/refuses this process/, '... and says why';
sleep 0.3;
ok !(grep { $_->{event_type} eq 'forged' } @{ data()->{custom_events} // [] }),
    '... and nothing of it reached the dashboard';

$out = `$tool -u ipc://$var/run/nobody-here.ipc -n 0 -C lost 2>&1`;
is $? >> 8, 1, 'a send to an address nobody listens on exits 1';

# request records on the events socket: refused and counted, never taken
my $before = data();
$out = `$tool -u $events -n 7 -e 'GET /forged' -C mixed 2>&1`;
is $? >> 8, 0, 'a batch of 7 request records and an event to the events socket';
ok poll(sub { grep { $_->{event_type} eq 'mixed' } @{ data()->{custom_events} // [] } }, 5),
    'its custom event is taken';
my $after = data();
ok !(grep { $_->{endpoint} eq 'GET /forged' } @{ $after->{endpoints} }),
    'its request records are not';
is $after->{pipeline}{invalid_records_skipped}
   - $before->{pipeline}{invalid_records_skipped}, 7, '... they are counted as invalid';

my $mode = (stat "$var/run/chat-events.ipc")[2] & 07777;
is sprintf('%04o', $mode), '0600', 'the events socket is for the sidecar\'s own user';

done_testing;
