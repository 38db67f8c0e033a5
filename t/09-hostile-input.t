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
use ChatTest::Util qw(slurp);

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
    proxy_pass_request_headers off;
    proxy_set_header X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
}
location = /metrics {
    auth_basic "Dashboard";
    auth_basic_user_file $TEST_NGINX_HTPASSWD;
    proxy_pass http://sidecar;
    proxy_pass_request_headers off;
    proxy_set_header X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
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

# the worker, once it runs (nginx writes its pid file before the fork)
sub the_workers {
    my $deadline = Time::HiRes::time() + 5;
    my @w;
    until ((@w = worker_pids()) || Time::HiRes::time() > $deadline) {
        Time::HiRes::sleep(0.02);
    }
    return @w;
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
        if ($opt{head_only} && $buf =~ /\r\n\r\n/) {
        my ($cl) = $buf =~ /^Content-Length:\s*(\d+)/mi;
        last if !defined $cl || length($buf) - index($buf, "\r\n\r\n") - 4 >= $cl;
    }
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
my @w = the_workers();
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
my @mine6 = grep { !/^(::1|fe80:)/ } map { /inet6 ([0-9a-f:]+)\// ? $1 : () } `ip -o -6 addr show 2>/dev/null`;
SKIP: {
    skip 'no non-loopback IPv6 address on this host', 1 unless @mine6;
    require IO::Socket::IP;
    my $s = IO::Socket::IP->new(PeerHost => $mine6[0], PeerPort => $ENV{TEST_NGINX_SIDECAR_PORT}, Timeout => 2);
    ok !$s, "[$mine6[0]]:$ENV{TEST_NGINX_SIDECAR_PORT} refuses: " . ($s ? 'connected!' : $!);
}

# and it refuses to be configured otherwise
for my $addr ('0.0.0.0:0', '[::]:0', (@mine ? "$mine[0]:0" : ())) {
    my $out = `$ENV{TEST_NGINX_SIDECAR_BIN} --listen '$addr' -t 2>&1`;
    is $? >> 8, 2, "--listen $addr: refused (exit 2)";
    like $out, qr/non-loopback|loopback/, "--listen $addr: says why";
}



=== TEST 3: oversized headers: a header line over the buffers is a 400, a request line a 414, too many big headers a 400, an oversized token a 401; each logged, each with a fresh correlation ID
--- ws_script
my @w = the_workers();
my $ok = "GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
my $r = raw_http($port, $ok . 'X-Big: ' . ('a' x 9000) . "\r\n\r\n");
is $r->{status}, 400, 'a 9000-byte header line: 400';
like $r->{body}, qr/Request Header Or Cookie Too Large/, 'says so';
like header_of($r, 'X-Correlation-ID') // '', $::UUID, 'with a fresh correlation ID';
logged(qr/client sent too long header line/, 'too long header line');

$r = raw_http($port, 'GET /t?' . ('q' x 9000) . " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
is $r->{status}, 414, 'a 9000-byte request line: 414';
like header_of($r, 'X-Correlation-ID') // '', $::UUID, 'with a fresh correlation ID';
logged(qr/client sent too long URI/, 'too long URI');

$r = raw_http($port, $ok . join('', map { "X-H$_: " . ('b' x 7000) . "\r\n" } 1 .. 6) . "\r\n");
is $r->{status}, 400, 'six 7000-byte headers (over 4 x 8k): 400';
like $r->{body}, qr/Request Header Or Cookie Too Large/, 'says so';

$r = raw_http($port, "GET /api/chat/groups HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    . 'Authorization: Bearer ' . ('A' x 7000) . ".b.c\r\n\r\n");
is $r->{status}, 401, 'a 7000-byte bearer token: 401';
like $r->{body}, qr/"detail":"token is empty or too long"/, 'says why, in JSON';
logged(qr/chat api: 401 GET \/api\/chat\/groups: token is empty or too long/, '401 with its reason');

$r = raw_http($port, $ok . join('', map { "X-N$_: v\r\n" } 1 .. 2000) . "\r\n");
is $r->{status}, 400, '2000 small headers: 400';
logged(qr/client sent too many header lines/, 'too many header lines');
healthy($port, \@w);



=== TEST 4: oversized bodies: over the module's limit 413 in JSON (with Content-Length, chunked, or only announced), over client_max_body_size nginx's 413, a body that never comes 408; nothing stored
--- ws_script
my @w = the_workers();
my $g = new_group($port);
my $t = ChatTest::JWT::token('alice');
my $head = "POST /api/chat/groups/$g/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
         . "Authorization: Bearer $t\r\nContent-Type: application/json\r\n";
my $big = '{"content":"' . ('x' x 30000) . '"}';

my $r = raw_http($port, $head . 'Content-Length: ' . length($big) . "\r\nX-Correlation-ID: big-1\r\n\r\n$big");
is $r->{status}, 413, '30 kB body: 413';
is $r->{body}, '{"detail":"request body is larger than 25600 bytes","correlation_id":"big-1"}', 'in JSON, with the limit and the correlation ID'
    or diag $r->{body};
logged(qr/chat api: 413 POST \/api\/chat\/groups\/[0-9a-f]{24}\/messages: .*correlation_id=big-1/, '413 with the correlation ID');

my $chunked = join '', map { sprintf("%x\r\n%s\r\n", 1000, substr($big . (' ' x 1000), $_ * 1000, 1000)) } 0 .. 29;
$r = raw_http($port, $head . "Transfer-Encoding: chunked\r\n\r\n$chunked" . "0\r\n\r\n");
is $r->{status}, 413, '30 kB chunked: 413';
like $r->{body}, qr/"detail":"request body is larger than 25600 bytes"/, 'in JSON';

$r = raw_http($port, $head . "Content-Length: 1000000\r\n\r\n" . '{"content":"', head_only => 1);
is $r->{status}, 413, 'a body of 1 MB announced, 12 bytes sent: 413';
cmp_ok $r->{elapsed}, '<', 0.9, 'at once, without waiting for the body (client_body_timeout is 1 s)';

$r = raw_http($port, $head . "Content-Length: 40000000\r\n\r\n" . '{"content":"');
is $r->{status}, 413, '40 MB announced (over client_max_body_size): 413';
logged(qr/client intended to send too large body: 40000000 bytes/, 'nginx says so');

$r = raw_http($port, $head . "Content-Length: 100\r\n\r\n" . '{"content":"', timeout => 5);
ok $r->{eof}, 'a body that never comes: the connection is closed';
cmp_ok $r->{elapsed}, '<', 3, sprintf('after client_body_timeout (1 s), in %.2f s', $r->{elapsed});
# nginx logs no error line for a body timeout: the access log line is it
like ::cid_log(), qr/^408 "POST \/api\/chat\/groups\/[0-9a-f]{24}\/messages HTTP\/1\.1"/m, 'and the access log has a 408';

is message_count($port, $g), 0, 'nothing stored';
healthy($port, \@w);



=== TEST 5: invalid UTF-8 in a body, a group name, a token's subject and a WebSocket message: 400, 401 or close 1007, each logged; nothing stored
--- ws_script
my @w = the_workers();
my $g = new_group($port);
my $c = ChatTest::Client->new(port => $port, user => 'alice');
my %bad = (
    'a 0xff byte'           => "\xff",
    'an overlong slash'     => "\xc0\xaf",
    'a UTF-16 surrogate'    => "\xed\xa0\x80",
    'beyond U+10FFFF'       => "\xf4\x90\x80\x80",
    'a cut sequence'        => "ab\xe2\x82",
    'a lone continuation'   => "\x80abc",
);
for my $name (sort keys %bad) {
    my $r = $c->post("/api/chat/groups/$g/messages", qq({"content":"$bad{$name}"}),
                     headers => { 'X-Correlation-ID' => "utf8-$name" =~ s/\W+/-/gr });
    is $r->{status}, 400, "message with $name: 400";
    like $r->{json}{detail} // '', qr/UTF-8/, "message with $name: says UTF-8";
    $r = $c->post('/api/chat/groups', qq({"name":"g$bad{$name}"}));
    is $r->{status}, 400, "group name with $name: 400";
}
logged(qr/chat api: 400 POST \/api\/chat\/groups\/[0-9a-f]{24}\/messages: [^\n]*UTF-8[^\n]*correlation_id=utf8-a-0xff-byte/, 'a 400 with its reason');

my $r = ChatTest::Client->new(port => $port, token => ChatTest::JWT::token("bad\xff"))->get('/api/chat/groups');
is $r->{status}, 401, 'a token whose subject is not UTF-8: 401';
like $r->{json}{detail} // '', qr/UTF-8/, 'says why';

for my $name ('a 0xff byte', 'a UTF-16 surrogate', 'a cut sequence') {
    my $ws = join_ws($port, $g, 'mallory');
    $ws->send_frame(frame(type => 'text', payload => qq({"type":"message","content":"$bad{$name}"})));
    is scalar $ws->recv_close(timeout => 2), 1007, "WebSocket text with $name: closed with 1007";
    ok $ws->wait_for_eof(timeout => 2), 'then disconnected';
}
logged(qr/chat ws: protocol error, closing with 1007/, 'the 1007');
is message_count($port, $g), 0, 'nothing stored';
healthy($port, \@w);



=== TEST 6: WebSocket frames: unmasked 1002, oversized 1009, an absurd length 1002, truncated then EOF cleaned up; each logged
--- ws_script
my @w = the_workers();
my $g = new_group($port);
my @cases = (
    [ 'an unmasked text frame', frame(type => 'text', payload => '{}', masked => 0), 1002 ],
    [ 'an unmasked close', frame(type => 'close', payload => pack('n', 1000), masked => 0), 1002 ],
    [ 'a 1025-byte frame (limit 1k)', frame(type => 'text', payload => 'x' x 1025), 1009 ],
    [ 'a frame announcing 1 TB', raw_frame(byte0 => 0x81, declared => 2**40, form => 64), 1009 ],
    [ 'a 64-bit length with the top bit set', raw_frame(byte0 => 0x81, declared => 2**63 + 5, form => 64), 1002 ],
    [ 'a message of 3 x 1000 bytes (limit 2k)', raw_frame(byte0 => 0x01, payload => 'x' x 1000)
        . raw_frame(byte0 => 0x00, payload => 'x' x 1000) . raw_frame(byte0 => 0x80, payload => 'x' x 1000), 1009 ],
    [ 'a 200-byte ping', raw_frame(byte0 => 0x89, payload => 'p' x 200), 1002 ],
    [ 'opcode 0xB', raw_frame(byte0 => 0x8b, payload => 'x'), 1002 ],
);
for my $c (@cases) {
    my ($name, $bytes, $code) = @$c;
    my $ws = join_ws($port, $g, 'mallory');
    $ws->send_frame($bytes);
    is scalar $ws->recv_close(timeout => 2), $code, "$name: closed with $code";
    ok $ws->wait_for_eof(timeout => 2), "$name: then disconnected";
}
logged(qr/chat ws: protocol error, closing with 1002/, 'the 1002s');
logged(qr/chat ws: protocol error, closing with 1009/, 'the 1009s');

# truncated: half a frame, then the client goes away
my $before = () = error_log() =~ /chat ws: "trunc" left group/g;
for my $cut (1, 2, 6, 20) {
    my $ws = join_ws($port, $g, 'trunc');
    my $f = frame(type => 'text', payload => '{"type":"message","content":"' . ('t' x 40) . '"}');
    $ws->send_frame(substr $f, 0, $cut);
    shutdown $ws->{sock}, 1;
    ok $ws->wait_for_eof(timeout => 2), "a frame cut after $cut bytes, then EOF: the server closes too";
}
my $deadline = Time::HiRes::time() + 2;
my $after;
do { $after = () = error_log() =~ /chat ws: "trunc" left group/g } until $after - $before >= 4 || Time::HiRes::time() > $deadline;
is $after - $before, 4, 'each truncated connection logged as having left its group';
my $d = ChatTest::Sidecar::wait_for(sub {
    !grep { $_->{group_id} eq $g && $_->{connection_count} } @{ $_[0]{websockets}{connections_per_group} } }, 3);
ok !grep({ $_->{group_id} eq $g && $_->{connection_count} } @{ $d->{websockets}{connections_per_group} }),
   'and the dashboard counts none of them any more';
is message_count($port, $g), 0, 'nothing stored';
healthy($port, \@w);



=== TEST 7: WebSocket: a truncated frame and then silence is dropped after chat_ws_idle_timeout
--- config
location /api/chat/ {
    chat_api on;
    chat_ws_ping_interval 300ms;
    chat_ws_idle_timeout 1s;
}
location = /t { return 200 "ok\n"; }
--- ws_script
my @w = the_workers();
my $g = new_group($port);
my $ws = join_ws($port, $g, 'stall');
$ws->send_frame(substr frame(type => 'text', payload => 'x' x 100), 0, 10);
my $t0 = Time::HiRes::time();
ok $ws->wait_for_eof(timeout => 4), 'a frame cut short and a silent peer: dropped';
my $dt = Time::HiRes::time() - $t0;
cmp_ok $dt, '<', 3, sprintf('after the 1 s idle timeout (%.2f s)', $dt);
logged(qr/chat ws: "stall" silent for \d+ ms, closing/, 'silent peer');
healthy($port, \@w);



=== TEST 8: slowloris: requests and WebSocket handshakes trickled byte by byte are cut off by client_header_timeout while the server answers everyone else at once
--- ws_script
my @w = the_workers();
my $g = new_group($port);
my $t = ChatTest::JWT::token('slow');
my @texts = (
    "GET /api/chat/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $t\r\nX-Pad: " . ('p' x 200),
    "GET /api/chat/ws/$g?token=$t HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" . ('X-Pad: p' x 30),
    "POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\nX-Pad: " . ('p' x 200),
);
my (@slow, %off);
for my $i (0 .. 23) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die "connect: $!";
    $s->blocking(0);
    # the request line at once, then the headers a byte at a time
    my $text = $texts[$i % 3];
    my $first = index($text, "\r\n") + 2;
    syswrite $s, substr($text, 0, $first);
    push @slow, { sock => $s, text => substr($text, $first), pos => 0, i => $i };
}
# plus connections that never send anything
my @idle = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die $! } 1 .. 4;

my $t0 = Time::HiRes::time();
my ($worst, $served) = (0, 0);
my $c = ChatTest::Client->new(port => $port);
local $SIG{PIPE} = 'IGNORE';
while (Time::HiRes::time() - $t0 < 4 && keys(%off) < @slow) {
    for my $x (@slow) {
        next if $off{ $x->{i} };
        my $n = sysread $x->{sock}, my $buf, 4096;
        if (defined $n && $n == 0 or !defined syswrite $x->{sock}, substr($x->{text}, $x->{pos}++ % length $x->{text}, 1)) {
            $off{ $x->{i} } = Time::HiRes::time() - $t0;
        }
    }
    my $t1 = Time::HiRes::time();
    $served++ if $c->get('/t')->{status} == 200;
    my $dt = Time::HiRes::time() - $t1;
    $worst = $dt if $dt > $worst;
    Time::HiRes::sleep(0.1);
}
is scalar(keys %off), scalar @slow, 'every trickling connection was closed by the server although it kept sending';
my @late = grep { $_ > 2.5 } values %off;
is scalar @late, 0, 'each within client_header_timeout (1 s) plus a margin';
cmp_ok $served, '>=', 5, "meanwhile the server answered $served other requests";
cmp_ok $worst, '<', 0.75, sprintf('each at once (worst %.3f s)', $worst);
for my $s (@idle) {
    my $sel = IO::Select->new($s);
    my $n = $sel->can_read(2) ? sysread($s, my $buf, 10) : undef;
    ok defined $n && $n == 0, 'a connection that never sent a byte is closed too';
}
logged(qr/client timed out \(110: Connection timed out\) while reading client request headers/, 'header timeout');
my $l = ::cid_log();
my $n408 = () = $l =~ /^408 /mg;
cmp_ok $n408, '>=', scalar @slow, "the access log has a 408 for each of them ($n408)";
healthy($port, \@w);



=== TEST 9: path traversal at /dashboard: normalized away by nginx, refused by nginx or by the sidecar, never a file; 401 first without credentials; each in the access log
--- ws_script
my @w = the_workers();
# path, status without credentials, with them; nginx refuses what climbs
# above the root (400, "client sent invalid request"); what stays inside
# /dashboard needs credentials (401) and the sidecar serves no such path
# (404); what normalizes to outside /dashboard matches no location (404)
my @cases = (
    [ '/dashboard/../../../../etc/passwd',                     400, 400 ],
    [ '/dashboard/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',     400, 400 ],
    [ '/dashboard/..%2f..%2f..%2f..%2fetc%2fpasswd',           400, 400 ],
    [ '/dashboard/api/data/../../../../proc/self/environ',     400, 400 ],
    [ '/dashboard/api/data%00.html',                           400, 400 ],
    [ '/dashboard/%252e%252e/%252e%252e/etc/passwd',           401, 404 ],
    [ '/dashboard/....//....//etc/passwd',                     401, 404 ],
    [ '/dashboard/..;/..;/etc/passwd',                         401, 404 ],
    [ '/dashboard/..%5c..%5c..%5cetc%5cpasswd',                401, 404 ],
    [ '/dashboard/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd',       401, 404 ],
    [ '/dashboard/dashboard.html',                             401, 404 ],
    [ '/dashboard/..%2fdashboard.html',                        401, 404 ],
    [ '/dashboard//etc/passwd',                                401, 404 ],
    [ '/dashboard/api/../../sidecar.log',                      404, 404 ],
    [ '/dashboard/api/data/%2e%2e/%2e%2e/%2e%2e/etc/shadow',   404, 404 ],
);
for my $c (@cases) {
    my ($path, @want) = @$c;
    for my $auth (undef, $::ADMIN) {
        my $who = defined $auth ? 'with credentials' : 'without';
        my $want = $want[ defined $auth ? 1 : 0 ];
        my $r = raw_http($port, "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            . (defined $auth ? "Authorization: $auth\r\n" : '') . "\r\n");
        is $r->{status}, $want, "$path $who: $want";
        unlike $r->{body}, qr/root:.*:0:0:|PATH=|TEST_NGINX|"performance"/, "$path $who: no file, no data";
    }
}
my $log = ::cid_log();
my @missing = grep { my ($p, @s) = @$_; grep { $log !~ /^$_ "GET \Q$p\E HTTP\/1\.1" correlation_id=\S+$/m } @s } @cases;
is_deeply [ map { $_->[0] } @missing ], [], 'each request in the access log with its status';
my $err = error_log();
my @unlogged = grep { $_->[1] == 400 && $err !~ /client sent invalid request while reading client request line, .*request: "GET \Q$_->[0]\E HTTP\/1\.1"/ } @cases;
is_deeply [ map { $_->[0] } @unlogged ], [], 'each 400 in the error log';
healthy($port, \@w);



=== TEST 10: correlation IDs cannot inject into headers or logs: CR/LF, quotes, spaces, long or non-ASCII values are replaced by a fresh ID, logged by size only
--- ws_script
my @w = the_workers();
my $g = new_group($port);
my $t = ChatTest::JWT::token('alice');
my $long = 'L' x 65;
my @unsafe = (
    [ 'a double quote',    'abc"def' ],
    [ 'a single quote',    "abc'def" ],
    [ 'a space',           'abc def' ],
    [ 'a tab',             "abc\tdef" ],
    [ 'encoded CRLF',      'abc%0d%0aSet-Cookie:%20pwned=1' ],
    [ '65 characters',     $long ],
    [ '4000 characters',   'M' x 4000 ],
    [ 'UTF-8',             "caf\xc3\xa9" ],
    [ 'Latin-1',           "caf\xe9" ],
    [ 'log-looking text',  'x,correlation_id=forged' ],
    [ 'a template',        '${jndi:ldap://x/a}' ],
    [ 'HTML',              '<script>alert(1)</script>' ],
    [ 'a backslash',       'abc\\def' ],
    [ 'a semicolon',       'abc;def' ],
);
my @seen;
for my $c (@unsafe) {
    my ($name, $v) = @$c;
    for my $path ('/t', "/api/chat/groups/$g/messages", '/api/chat/groups/5f0000000000000000000000') {
        my $r = raw_http($port, "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            . "Authorization: Bearer $t\r\nX-Correlation-ID: $v\r\n\r\n");
        my $cid = header_of($r, 'X-Correlation-ID') // '';
        like $cid, $::UUID, "$name, $path: replaced by a fresh ID";
        push @seen, $cid;
        if ($path =~ /5f0000/) {
            is $r->{status}, 404, "$name: the API's 404";
            my $j = eval { $::JSON->decode($r->{body}) } // {};
            is $j->{correlation_id}, $cid, "$name: the JSON error carries the fresh ID";
        }
        unlike $r->{head}, qr/pwned|Set-Cookie|forged|jndi|<script/i, "$name, $path: nothing of it in the response head";
    }
}
my @dup = do { my %n; grep { $n{$_}++ } @seen };
is scalar @dup, 0, 'every fresh ID is unique';

# the limits: 64 safe characters are kept, the whole alphabet too
for my $v ('K' x 64, 'Az09._:-', 'req:2026-11-27T09:00:00.123Z') {
    my $r = raw_http($port, "GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Correlation-ID: $v\r\n\r\n");
    is header_of($r, 'X-Correlation-ID'), $v, "a safe ID of " . length($v) . ' characters is kept';
}

# raw CR, NUL, obs-fold: nginx refuses the request before anything echoes it
for my $c ([ 'a bare CR', "abc\rSet-Cookie: pwned=1" ], [ 'a NUL', "abc\0def" ]) {
    my $r = raw_http($port, "GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Correlation-ID: $c->[1]\r\n\r\n");
    is $r->{status}, 400, "$c->[0]: 400";
    like header_of($r, 'X-Correlation-ID') // '', $::UUID, "$c->[0]: a fresh ID";
    unlike $r->{head}, qr/pwned/, "$c->[0]: no injected header";
}
# a bare LF ends the header line: the rest is a request header of its own,
# never a response header
my $r = raw_http($port, "GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Correlation-ID: lf-1\nSet-Cookie: pwned=1\r\n\r\n");
is $r->{status}, 200, 'a bare LF: a request with one more header';
is header_of($r, 'X-Correlation-ID'), 'lf-1', 'the ID before it is kept';
unlike $r->{head}, qr/pwned/, 'no injected response header';
$r = raw_http($port, "GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Correlation-ID: fold\r\n Set-Cookie: pwned=1\r\n\r\n");
unlike $r->{head}, qr/pwned/, "obs-fold ($r->{status}): no injected response header";

# a WebSocket handshake with an unsafe ID
my $ws = ws_connect(port => $port, path => "/api/chat/ws/$g?token=$t",
                    headers => { 'X-Correlation-ID' => 'ws"id,correlation_id=forged' });
is $ws->status, 101, 'a WebSocket with an unsafe ID is upgraded';
my $wcid = $ws->header('X-Correlation-ID') // '';
like $wcid, $::UUID, 'under a fresh ID';
logged(qr/chat ws: "alice" joined group $g \(\d+ here\), correlation_id=\Q$wcid\E/, 'the join, under the fresh ID');

# the logs: each replacement said by size, never by content
logged(qr/chat correlation: ignored unsafe "X-Correlation-ID" header of 65 bytes, generating a new ID/, 'the 65-byte ID, by size');
logged(qr/chat correlation: ignored unsafe "X-Correlation-ID" header of 4000 bytes/, 'the 4000-byte ID, by size');
my $err = error_log();
my $acc = ::cid_log();
for my $c (@unsafe) {
    my $v = $c->[1];
    ok index($err, $v) < 0 && index($acc, $v) < 0, "$c->[0]: never written to the error or access log";
}
unlike $acc, qr/forged|pwned/, 'the access log has none of the injected text';
my @bad = grep { !/ correlation_id=[A-Za-z0-9._:-]{1,64}$/ } split /\n/, $acc;
is_deeply \@bad, [], 'every access log line ends with a safe correlation ID';

# nor the dashboard
my $d = ChatTest::Sidecar::wait_for(sub { 0 }, 0.5);
my @rows = (@{ $d->{recent_activity}{recent_requests} // [] }, @{ $d->{recent_activity}{recent_errors} // [] });
ok scalar @rows, 'the dashboard lists recent requests';
is_deeply [ grep { ($_->{correlation_id} // '') !~ $::SAFE_CID } @rows ], [], 'each with a safe correlation ID';
healthy($port, \@w);



=== TEST 11: a token subject cannot forge log lines: control characters, quotes and backslashes are refused with 401 (API and WebSocket), printable UTF-8 is logged as is
# A regression test: the WebSocket log lines print the user id between
# quotes, and a subject with a newline once wrote lines of its own into
# the error log.
--- ws_script
my @w = the_workers();
my $g = new_group($port);
my %bad = (
    'a newline'   => "eve\n2026/01/01 00:00:00 [alert] 1#1: FORGED LINE",
    'a CR'        => "eve\rFORGED",
    'a quote'     => 'eve" FORGED',
    'a backslash' => 'eve\\FORGED',
    'a tab'       => "eve\tFORGED",
    'a DEL'       => "eve\x7fFORGED",
);
for my $name (sort keys %bad) {
    my $t = ChatTest::JWT::token($bad{$name});
    my $r = ChatTest::Client->new(port => $port, token => $t)->get('/api/chat/groups');
    is $r->{status}, 401, "a subject with $name: 401 from the API";
    like $r->{json}{detail} // '', qr/"sub" must be/, 'says why';
    my $ws = ws_connect(port => $port, path => "/api/chat/ws/$g?token=$t");
    is $ws->status, 401, "a subject with $name: no WebSocket either";
}
my $ok = "zo\x{eb} (admin) <b>&amp;";
utf8::encode($ok);
my $ws = ws_connect(port => $port, path => "/api/chat/ws/$g?token=" . ChatTest::JWT::token($ok));
is $ws->status, 101, 'a printable UTF-8 subject with spaces, parentheses and markup is fine';
logged(qr/chat ws: "\Q$ok\E" joined group $g/, 'and logged as is, on its line');
$ws->close(code => 1000);
$ws->recv_close(timeout => 2);
my @forged = grep { /FORGED/ } split /\n/, error_log();
ok !@forged, 'nothing of the refused subjects is in the error log'
    or diag join "\n", 'lines:', @forged;
healthy($port, \@w);



=== TEST 12: a token subject with \u0000 is refused (401), never cut at the NUL: "admin\u0000mallory" does not act as "admin"
# A regression test: the JWT payload was parsed with cJSON and the
# subject's length taken with ngx_strlen(), so "\u0000" ended it early and
# whoever held a token for "admin\u0000anything" created groups and
# messages as "admin" and could delete admin's messages.
--- ws_script
my @w = the_workers();
my $t = ChatTest::JWT::token("admin\x00mallory");
my $r = ChatTest::Client->new(port => $port, token => $t)->post('/api/chat/groups', { name => 'nul' });
is $r->{status}, 401, 'a subject with \u0000: 401';
isnt $r->{json}{created_by} // '', 'admin', 'and never acting as the user before the NUL';
my $g = new_group($port);
my $ws = ws_connect(port => $port, path => "/api/chat/ws/$g?token=$t");
is $ws->status, 401, 'no WebSocket either';
healthy($port, \@w);
