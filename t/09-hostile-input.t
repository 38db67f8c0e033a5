# Hostile input through the real nginx (a master and a worker), the module
# and the sidecar: requests without or with wrong dashboard credentials, a
# sidecar that must be reachable only through nginx, oversized headers and
# bodies, invalid UTF-8, malformed, oversized and truncated WebSocket
# frames, slowloris-style partial requests and handshakes, path traversal
# at /dashboard, and correlation IDs that try to inject into headers and
# logs.  Each gets the right status or close code and a log line, and
# leaves the server healthy: the same worker still serves the API.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Client;
use ChatTest::Sidecar;
use ChatTest::WebSocket;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes ();

ChatTest::WebSocket::install_ws_script_hook();

no_shuffle();
log_level('info');
no_root_location();
master_on();
workers(1);

our $SCRATCH = tempdir('chat-hostile-XXXXXX', TMPDIR => 1, CLEANUP => 1);
ChatTest::Sidecar::start(db_refresh => 1, args => { 'pid-file' => "$SCRATCH/sidecar.pid" });

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value(http_config => <<'_EOC_' . ($block->http_config // ''));
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_db_timeout 3s;
chat_metrics on;
chat_metrics_address $TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;
client_header_timeout 1s;
client_body_timeout 1s;
log_format cid '$status "$request" correlation_id=$chat_correlation_id';
access_log logs/cid.log cid;
upstream sidecar { server $TEST_NGINX_SIDECAR; }
_EOC_

    $block->set_value(config => <<'_EOC_') unless defined $block->config;
location /api/chat/ {
    chat_api on;
    chat_ws_max_frame_size 1k;
    chat_ws_max_message_size 2k;
}
location = /t { return 200 "ok\n"; }
location /dashboard {
    auth_basic "Dashboard";
    auth_basic_user_file $TEST_NGINX_HTPASSWD;
    proxy_pass http://sidecar;
}
location = /metrics {
    auth_basic "Dashboard";
    auth_basic_user_file $TEST_NGINX_HTPASSWD;
    proxy_pass http://sidecar;
}
_EOC_

    $block->set_value(request => "GET /t\n") unless defined $block->request;

    # a crashed or wedged worker is never "healthy"
    $block->set_value(no_error_log => join "\n", grep { defined && length }
        $block->no_error_log, '[alert]', '[crit]', '[emerg]', 'exited on signal');
});

our $JSON = JSON::PP->new->utf8->canonical;
our $ADMIN = 'Basic ' . MIME::Base64::encode_base64('admin:s3cret', '');
our $UUID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
our $SAFE_CID = qr/^[A-Za-z0-9._:-]{1,64}$/;
use MIME::Base64 ();

# --- nginx ---------------------------------------------------------------------

sub servroot { Test::Nginx::Socket::server_root() }

sub master_pid {
    open my $fh, '<', servroot() . '/logs/nginx.pid' or return undef;
    my $pid = <$fh> // '';
    return $pid =~ /^(\d+)/ ? $1 : undef;
}

sub worker_pids {
    my $master = master_pid() or return ();
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        push @kids, $1 if $line =~ /^(\d+) \(.*\) [^Z] (\d+) / && $2 == $master;
    }
    return sort { $a <=> $b } @kids;
}

sub slurp {
    my $path = shift;
    open my $fh, '<', $path or return '';
    binmode $fh;
    local $/;
    return <$fh> // '';
}

sub error_log { slurp(servroot() . '/logs/error.log') }
sub cid_log   { slurp(servroot() . '/logs/cid.log') }

# waits (up to 2 s) for a pattern in the error log; one check
sub logged {
    my ($re, $name) = @_;
    my $deadline = Time::HiRes::time() + 2;
    my $ok;
    until (($ok = error_log() =~ $re) || Time::HiRes::time() > $deadline) {
        Time::HiRes::sleep(0.05);
    }
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok $ok, "logged: $name";
}

# Two checks: the worker that was there at the start still serves, and a
# real API round trip through the database works.
sub healthy {
    my ($port, $workers) = @_;
    my @now = worker_pids();
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is "@now", "@$workers", 'healthy: the same worker process as before (no crash, no respawn)';
    my $c = ChatTest::Client->new(port => $port, user => 'health');
    my $g = $c->post('/api/chat/groups', { name => 'still healthy' });
    my $m = $g->{status} == 201
        ? $c->post("/api/chat/groups/$g->{json}{id}/messages", { content => 'ok' }) : $g;
    is $m->{status}, 201, 'healthy: the API still stores messages';
}

# --- raw HTTP --------------------------------------------------------------------

# Sends $bytes (a string, or a list of [delay, bytes] pieces) on a fresh
# connection and reads the answer to the end (or $timeout).
# Returns { status, head, body, raw, eof, elapsed }.
sub raw_http {
    my ($port, $bytes, %opt) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!\n";
    my $t0 = Time::HiRes::time();
    local $SIG{PIPE} = 'IGNORE';
    for my $piece (ref $bytes ? @$bytes : [ 0, $bytes ]) {
        Time::HiRes::sleep($piece->[0]) if $piece->[0];
        last unless defined syswrite $s, $piece->[1];
    }
    my ($buf, $sel, $eof) = ('', IO::Select->new($s), 0);
    my $deadline = $t0 + ($opt{timeout} // 5);
    while (Time::HiRes::time() < $deadline) {
        last unless $sel->can_read($deadline - Time::HiRes::time());
        my $n = sysread $s, $buf, 65536, length $buf;
        if (!$n) { $eof = 1; last }
        last if $opt{head_only} && $buf =~ /\r\n\r\n/;
    }
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d{3})};
    return { status => $status // 0, head => $head // '', body => $body // '',
             raw => $buf, eof => $eof, elapsed => Time::HiRes::time() - $t0,
             sock => $s };
}

sub header_of {
    my ($r, $name) = @_;
    return $r->{head} =~ /^\Q$name\E:[ \t]*([^\r\n]*)\r?$/mi ? $1 : undef;
}

# --- chat ----------------------------------------------------------------------------

sub new_group {
    my ($port, $name) = @_;
    my $r = ChatTest::Client->new(port => $port, user => 'owner')
        ->post('/api/chat/groups', { name => $name // 'hostile' });
    die "cannot create a group: $r->{status} $r->{body}\n" unless $r->{status} == 201;
    return $r->{json}{id};
}

sub message_count {
    my ($port, $g) = @_;
    my $r = ChatTest::Client->new(port => $port, user => 'reader')
        ->get("/api/chat/groups/$g/messages?limit=100");
    return scalar @{ $r->{json}{messages} // [] };
}

sub join_ws {
    my ($port, $g, $user, %opt) = @_;
    my $ws = ws_connect(port => $port, name => $user,
        path => "/api/chat/ws/$g?token=" . ChatTest::JWT::token($user), %opt);
    die "$user could not join: " . ($ws->error // '?') . "\n" unless $ws->is_open;
    return $ws;
}

sub frame { ChatTest::WebSocket->frame(@_) }

# hand-made frame header: byte0, a length (7, 16 or 64-bit form), mask
sub raw_frame {
    my (%a) = @_;
    my $payload = $a{payload} // '';
    my $len = $a{declared} // length $payload;
    my $form = $a{form} // ($len < 126 ? 7 : $len < 65536 ? 16 : 64);
    my $mask_bit = ($a{masked} // 1) ? 0x80 : 0;
    my $s = pack 'C', $a{byte0};
    $s .= $form == 7  ? pack('C', $mask_bit | $len)
        : $form == 16 ? pack('Cn', $mask_bit | 126, $len)
        :               pack('CNN', $mask_bit | 127, int($len / 2**32), $len % 2**32);
    return $s . $payload unless $mask_bit;
    my $key = "\x11\x22\x33\x44";
    return $s . $key . ($payload ^ substr($key x (length($payload) / 4 + 1), 0, length $payload));
}

run_tests();

__DATA__

=== TEST 1: /dashboard, /dashboard/api/data and /metrics answer 401 through nginx without credentials and with wrong ones
--- ws_script
my @w = worker_pids();
my %auth = (
    'no credentials'     => undef,
    'wrong password'     => 'Basic ' . MIME::Base64::encode_base64('admin:wrong', ''),
    'unknown user'       => 'Basic ' . MIME::Base64::encode_base64('mallory:s3cret', ''),
    'empty password'     => 'Basic ' . MIME::Base64::encode_base64('admin:', ''),
    'not base64'         => 'Basic !!!not-base64!!!',
    'empty Basic'        => 'Basic ',
    'a bearer JWT'       => 'Bearer ' . ChatTest::JWT::token('admin'),
    'password as user'   => 'Basic ' . MIME::Base64::encode_base64('s3cret:admin', ''),
);
my $c = ChatTest::Client->new(port => $port);
for my $path ('/dashboard', '/dashboard/', '/dashboard/api/data', '/metrics') {
    for my $case (sort keys %auth) {
        my %h = defined $auth{$case} ? (Authorization => $auth{$case}) : ();
        my $r = $c->get($path, headers => \%h);
        is $r->{status}, 401, "$path, $case: 401";
        is $r->{headers}{'www-authenticate'}, 'Basic realm="Dashboard"', "$path, $case: WWW-Authenticate";
        unlike $r->{body}, qr/"performance"|chat_http_requests_total|<script/, "$path, $case: nothing of the sidecar's";
    }
    is $c->get($path, headers => { Authorization => $::ADMIN })->{status}, 200, "$path: 200 with the right credentials";
}
logged(qr/no user\/password was provided for basic authentication/, 'no credentials');
logged(qr/user "admin": password mismatch/, 'wrong password');
logged(qr/user "mallory" was not found in/, 'unknown user');
healthy($port, \@w);



=== TEST 2: the sidecar listens on loopback only: its listening sockets in /proc/net/tcp{,6}, a connection to a non-loopback address of this host, a non-loopback --listen
--- ws_script
my $pid = do { open my $fh, '<', "$::SCRATCH/sidecar.pid" or die "no sidecar pid file: $!"; <$fh> };
chomp $pid;
ok kill(0, $pid), "the sidecar runs (pid $pid)";

# its sockets, by inode
my %inode;
for my $fd (glob "/proc/$pid/fd/*") {
    my $l = readlink $fd // next;
    $inode{$1} = 1 if $l =~ /^socket:\[(\d+)\]$/;
}
my (@listen, @bad);
for my $file ('/proc/net/tcp', '/proc/net/tcp6') {
    open my $fh, '<', $file or next;
    <$fh>;
    while (my $line = <$fh>) {
        my @f = split ' ', $line;
        next unless $f[3] eq '0A' && $inode{ $f[9] };          # LISTEN, the sidecar's
        my ($addr, $p) = split /:/, $f[1];
        $p = hex $p;
        my $loop = $addr eq '0100007F'                            # 127.0.0.1
                || $addr =~ /^[0-9A-F]{6}7F$/                    # 127.x.y.z
                || $addr eq '00000000000000000000000001000000'; # ::1
        push @listen, "$addr:$p";
        push @bad, "$file $addr:$p" unless $loop;
    }
}
ok scalar @listen, 'it has listening TCP sockets: ' . join(', ', @listen);
is_deeply \@bad, [], 'every one of them on loopback';
ok scalar(grep { /:$ENV{TEST_NGINX_SIDECAR_PORT}$/ } @listen), "among them its HTTP port $ENV{TEST_NGINX_SIDECAR_PORT}";

# from another address of this host, nothing answers on that port
my @mine = grep { !/^127\./ } map { /inet (\d+\.\d+\.\d+\.\d+)/ ? $1 : () } `ip -o -4 addr show 2>/dev/null`;
SKIP: {
    skip 'no non-loopback IPv4 address on this host', 1 unless @mine;
    my $s = IO::Socket::INET->new(PeerAddr => $mine[0], PeerPort => $ENV{TEST_NGINX_SIDECAR_PORT}, Timeout => 2);
    ok !$s, "$mine[0]:$ENV{TEST_NGINX_SIDECAR_PORT} refuses: " . ($s ? 'connected!' : $!);
}

# and it refuses to be configured otherwise
for my $addr ('0.0.0.0:0', '[::]:0', (@mine ? "$mine[0]:0" : ())) {
    my $out = `$ENV{TEST_NGINX_SIDECAR_BIN} --listen '$addr' -t 2>&1`;
    is $? >> 8, 2, "--listen $addr: refused (exit 2)";
    like $out, qr/non-loopback|loopback/, "--listen $addr: says why";
}
