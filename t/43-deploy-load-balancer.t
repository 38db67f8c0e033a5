# deploy/nginx/load-balancer.conf, run as shipped with its addresses moved
# to 127.0.0.1, in front of two stand-in hosts (TLS servers written here
# that show what reached them):
#   - nginx -t accepts it;
#   - an API request reaches a host with Host and X-Forwarded-For, no
#     "Connection: close" (the upstream keepalive works), its certificate
#     verified against the hosts' CA;
#   - a WebSocket handshake reaches a host with Upgrade and "Connection:
#     upgrade", the 101 comes back and bytes flow both ways after it;
#   - /dashboard and /metrics are not served through the balancer;
#   - one host killed: the next handshake (a client resuming with since=)
#     reaches the other.
# nginx and the stand-ins are started here and stopped by pid.
use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
use File::Temp qw(tempdir);
use FindBin;
use IO::Socket::INET;
use IO::Socket::SSL;
use POSIX ();
use lib "$FindBin::Bin/lib";
use ChatTest::Util qw(free_port poll slurp spew run_ok);

my $root = abs_path("$FindBin::Bin/..");
my $nginx = '/usr/sbin/nginx';
plan skip_all => 'nginx not installed' unless -x $nginx;
plan skip_all => 'openssl not installed' unless -x '/usr/bin/openssl';

my $dir = tempdir('deploy-lb-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/$_" or die "$_: $!" for qw(logs tls);
my $tls = "$dir/tls";

# the hosts' CA and certificate (the name the balancer verifies), and the
# balancer's own
run_ok('a CA', "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=chat-hosts-ca"
       . " -keyout $tls/ca.key -out $tls/chat-hosts-ca.pem");
spew("$tls/ext", "subjectAltName=DNS:chat.internal.example.org\n");
run_ok('the hosts\' key', "openssl req -newkey rsa:2048 -nodes -subj /CN=chat.internal.example.org"
       . " -keyout $tls/host.key -out $tls/host.csr");
run_ok('the hosts\' certificate', "openssl x509 -req -in $tls/host.csr -days 2"
       . " -CA $tls/chat-hosts-ca.pem -CAkey $tls/ca.key -CAcreateserial"
       . " -extfile $tls/ext -out $tls/host.pem");
run_ok('the balancer\'s certificate', "openssl req -x509 -newkey rsa:2048 -nodes -days 2"
       . " -subj /CN=chat.example.org -keyout $tls/chat.example.org.key"
       . " -out $tls/chat.example.org.pem");

# --- two stand-in hosts ----------------------------------------------------------
# Each answers over TLS: a WebSocket handshake with 101, then echoes what
# it reads; anything else with 200 and, as the body, the request's head
# and its own name.

my %pid;
END {
    local $?;
    for my $p (values %pid) {
        kill 'TERM', $p == ($pid{lb} // 0) ? $p : -$p;
        waitpid $p, 0;
    }
}

sub stand_in {
    my ($name, $port) = @_;
    my $srv = IO::Socket::SSL->new(
        LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 16,
        ReuseAddr => 1, SSL_server => 1,
        SSL_cert_file => "$tls/host.pem", SSL_key_file => "$tls/host.key",
    ) or die "stand-in $name: $SSL_ERROR";
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $srv;
        return $pid;
    }
    setpgrp(0, 0);                      # the host and its connections: one group
    $SIG{CHLD} = 'IGNORE';
    while (1) {
        my $c = $srv->accept or next;
        my $kid = fork;
        if (!defined $kid || $kid) { $c->close(SSL_no_shutdown => 1); next; }
        while (1) {                     # requests of a keepalive connection
            my $head = '';
            while (defined(my $l = <$c>)) {
                $head .= $l;
                last if $l eq "\r\n";
            }
            last unless length $head;
            if ($head =~ /^Upgrade: websocket\r$/mi) {
                print $c "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    . "Connection: Upgrade\r\nX-Host: $name\r\n\r\n";
                while (sysread $c, my $buf, 4096) {
                    syswrite $c, "$name:$buf";
                }
                last;
            }
            my $body = "host $name\n$head";
            print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                . "Content-Length: " . length($body) . "\r\n\r\n$body";
        }
        POSIX::_exit(0);
    }
}

my %port = (a => free_port(), b => free_port());
$pid{$_} = stand_in($_, $port{$_}) for qw(a b);

# --- the balancer as shipped, addresses and paths moved here -----------------

my $conf = slurp("$root/deploy/nginx/load-balancer.conf");
my ($https, $http) = (free_port(), free_port());
$conf =~ s{^pid\s+\S+;}{pid $dir/logs/nginx.pid;}m or die 'pid';
$conf =~ s{/var/log/nginx/}{$dir/logs/}g;
$conf =~ s{/etc/nginx/tls/}{$tls/}g;
$conf =~ s{listen\s+443 ssl;}{listen 127.0.0.1:$https ssl;} or die 'listen 443';
$conf =~ s{listen\s+80;}{listen 127.0.0.1:$http;} or die 'listen 80';
$conf =~ s{worker_processes\s+auto;}{worker_processes 1;\ndaemon off;} or die 'workers';
$conf =~ s{worker_connections\s+\d+;}{worker_connections 256;} or die 'connections';
$conf =~ s{worker_rlimit_nofile\s+\d+;}{} or die 'rlimit';
$conf =~ s{server\s+chat-a\.internal\.example\.org:8443}{server 127.0.0.1:$port{a}} or die 'a';
$conf =~ s{server\s+chat-b\.internal\.example\.org:8443}{server 127.0.0.1:$port{b}} or die 'b';
$conf =~ s{\n\s*server\s+chat-c\.internal\.example\.org:8443[^\n]*}{} or die 'c';
unlike join("", grep { !/^\s*#/ } split /^/m, $conf), qr{/etc/|/var/|/run/|example\.org:8443},
    "every path and address moved";
spew("$dir/lb.conf", $conf);

run_ok('nginx -t accepts the balancer', "'$nginx' -p '$dir/' -c '$dir/lb.conf' -t");

my $lb = fork // die "fork: $!";
if ($lb == 0) {
    open STDERR, '>', "$dir/logs/stderr" or POSIX::_exit(1);
    exec $nginx, '-p', "$dir/", '-c', "$dir/lb.conf" or POSIX::_exit(1);
}
$pid{lb} = $lb;

sub connect_lb {
    return IO::Socket::SSL->new(PeerAddr => "127.0.0.1:$https",
                                SSL_verify_mode => SSL_VERIFY_NONE, Timeout => 5);
}
ok poll(sub { my $s = connect_lb(); $s && close $s }, 10), 'the balancer listens'
    or diag slurp("$dir/logs/stderr");

# one request, the whole answer
sub request {
    my ($head) = @_;
    my $s = connect_lb() or return "connect: $SSL_ERROR";
    print $s $head;
    local $/;
    my $r = <$s>;
    close $s;
    return $r // '';
}

my $r = request("GET /api/chat/groups HTTP/1.1\r\nHost: chat.example.org\r\n"
                . "Authorization: Bearer x\r\nConnection: close\r\n\r\n");
like $r, qr{^HTTP/1\.1 200 }, 'an API request reaches a host' or diag `tail -5 $dir/logs/chat-lb-error.log`;
my ($seen_by_host) = $r =~ /\r\n\r\n(.*)\z/s;
$seen_by_host //= '';
like $seen_by_host, qr{^host [ab]$}m, '... a stand-in host';
like $seen_by_host, qr{^Host: chat\.example\.org\r$}m, '... with the client\'s Host';
like $seen_by_host, qr{^X-Forwarded-For: 127\.0\.0\.1\r$}m, '... X-Forwarded-For';
like $seen_by_host, qr{^X-Forwarded-Proto: https\r$}m, '... X-Forwarded-Proto';
unlike $seen_by_host, qr{^Connection:.*close}mi, '... and no "Connection: close" (keepalive)';
unlike $seen_by_host, qr{^Upgrade:}mi, '... nor Upgrade';

for my $path ('/dashboard', '/dashboard/api/data', '/metrics', '/sidecar/health') {
    like request("GET $path HTTP/1.1\r\nHost: chat.example.org\r\nConnection: close\r\n\r\n"),
        qr{^HTTP/1\.1 404 }, "$path is not served through the balancer";
}

# a WebSocket handshake: 101, then bytes both ways
sub websocket {
    my $s = connect_lb() or return ("connect: $SSL_ERROR");
    print $s "GET /api/chat/ws/g1?token=x&since=41 HTTP/1.1\r\nHost: chat.example.org\r\n"
        . "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    my $head = '';
    while (defined(my $l = <$s>)) {
        $head .= $l;
        last if $l eq "\r\n";
    }
    syswrite $s, 'frame';
    my $echo = '';
    sysread $s, $echo, 100;
    close $s;
    return ($head, $echo);
}

my ($head, $echo) = websocket();
like $head, qr{^HTTP/1\.1 101 }, 'a WebSocket handshake gets the host\'s 101';
my ($first) = $head =~ /^X-Host: (\w+)\r$/m;
ok defined $first, "... from host " . ($first // '?');
like $echo, qr/^\w+:frame$/, '... and bytes flow both ways after it';

# one host down: a client reconnecting (since=) reaches the other
kill 'TERM', -$pid{a};                  # the host with its open connections
waitpid delete $pid{a}, 0;
my %seen;
for (1 .. 4) {
    my ($h, $e) = websocket();
    $seen{$1}++ if $h =~ /^HTTP\/1\.1 101 .*?^X-Host: (\w+)\r$/ms;
}
is_deeply \%seen, { b => 4 }, 'host a down: every handshake reaches host b'
    or diag explain \%seen;

done_testing;
