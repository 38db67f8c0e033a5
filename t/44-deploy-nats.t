# deploy/nats/: the NATS cluster that docs/DEPLOYMENT.md describes, run as
# shipped but on 127.0.0.1:
#   - each node's file passes `nats-server -t` (certificates made here by a
#     throwaway CA, as the document says: serverAuth and clientAuth);
#   - the three nodes, their names and ports moved to 127.0.0.1, form the
#     full mesh over mutually authenticated TLS routes (/routez: 2 each);
#   - a client that speaks TLS and gives the chat user's password is
#     accepted (PONG); a wrong password is refused; the user may publish on
#     chat.g.<group> and chat.recheck and nothing else.
# The servers are started here and stopped by pid.
use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
use File::Temp qw(tempdir);
use FindBin;
use HTTP::Tiny;
use IO::Socket::INET;
use IO::Socket::SSL;
use JSON::PP ();
use POSIX ();
use lib "$FindBin::Bin/lib";
use ChatTest::Util qw(free_port poll slurp spew run_ok);

my $root = abs_path("$FindBin::Bin/..");
my $nats = '/usr/sbin/nats-server';
plan skip_all => "nats-server not installed (make deps-test)" unless -x $nats;
plan skip_all => 'openssl not installed' unless -x '/usr/bin/openssl';

my $src = "$root/deploy/nats";
my $dir = tempdir('deploy-nats-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $tls = "$dir/tls";
mkdir $tls or die "$tls: $!";

# --- the cluster's CA and the nodes' certificates ----------------------------

run_ok('a CA', "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=chat-nats-ca"
       . " -keyout $tls/ca.key -out $tls/ca.pem");
for my $n (qw(a b c)) {
    spew("$tls/ext-$n", "subjectAltName=DNS:nats-$n.example.org,IP:127.0.0.1\n"
         . "extendedKeyUsage=serverAuth,clientAuth\n");
    run_ok("node $n: a key and request", "openssl req -newkey rsa:2048 -nodes"
           . " -subj /CN=nats-$n.example.org -keyout $tls/nats-$n.key -out $tls/nats-$n.csr");
    run_ok("node $n: its certificate", "openssl x509 -req -in $tls/nats-$n.csr -days 2"
           . " -CA $tls/ca.pem -CAkey $tls/ca.key -CAcreateserial"
           . " -extfile $tls/ext-$n -out $tls/nats-$n.pem");
}

my $password = 'p' . join '', map { int rand 10 } 1 .. 24;
my $secrets = slurp("$src/chat-secrets.conf.example");
like $secrets, qr/^CHAT_NATS_PASSWORD: "change-me"$/m, 'the secrets example';
$secrets =~ s/change-me/$password/;
spew("$dir/chat-secrets.conf", $secrets);

# --- each file as shipped, its paths moved here ------------------------------

my (%client, %route, %mon);
for my $n (qw(a b c)) {
    ($client{$n}, $route{$n}, $mon{$n}) = (free_port(), free_port(), free_port());
}

for my $n (qw(a b c)) {
    my $conf = slurp("$src/nats-$n.conf");
    $conf =~ s{/etc/nats/tls/}{$tls/}g;
    spew("$dir/as-shipped-$n.conf", $conf);
    run_ok("nats-$n.conf passes nats-server -t",
           "'$nats' -c '$dir/as-shipped-$n.conf' -t");

    # on 127.0.0.1: the same file, addresses and ports replaced
    $conf =~ s{0\.0\.0\.0:4222}{127.0.0.1:$client{$n}} or die;
    $conf =~ s{127\.0\.0\.1:8222}{127.0.0.1:$mon{$n}} or die;
    $conf =~ s{0\.0\.0\.0:6222}{127.0.0.1:$route{$n}} or die;
    $conf =~ s{nats-([abc])\.example\.org:4222}{127.0.0.1:$client{$1}}g;
    $conf =~ s{nats-([abc])\.example\.org:6222}{127.0.0.1:$route{$1}}g;
    unlike $conf, qr/example\.org|0\.0\.0\.0/, "nats-$n: every address on 127.0.0.1";
    spew("$dir/nats-$n.conf", $conf);
}

# --- the cluster ----------------------------------------------------------------

my %pid;
END {
    local $?;
    for my $p (values %pid) {
        kill 'TERM', $p;
        waitpid $p, 0;
    }
}
for my $n (qw(a b c)) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$dir/nats-$n.log" or POSIX::_exit(1);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(1);
        exec $nats, '-c', "$dir/nats-$n.conf" or POSIX::_exit(1);
    }
    $pid{$n} = $pid;
}

my $http = HTTP::Tiny->new(timeout => 2);
sub routes {
    my $r = $http->get("http://127.0.0.1:$mon{$_[0]}/routez");
    return -1 unless $r->{success};
    return JSON::PP->new->decode($r->{content})->{num_routes} // -1;
}
for my $n (qw(a b c)) {
    ok poll(sub { routes($n) == 2 }, 20), "nats-$n has its 2 TLS routes"
        or diag "num_routes " . routes($n) . "\n" . `cat '$dir/nats-$n.log'`;
}

# a client as nats.c with chat_cluster tls://... user=chat password_file=...
# ca=...: INFO in clear, then TLS verified by the CA, then CONNECT
sub client {
    my ($n, $pass, @after) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$client{$n}", Timeout => 5)
        or return "connect: $!";
    my $info = <$s>;
    return "no INFO: " . ($info // 'eof') unless defined $info && $info =~ /^INFO /;
    my $info_json = JSON::PP->new->decode(substr $info, 5);
    return 'the server does not require TLS' unless $info_json->{tls_required};
    IO::Socket::SSL->start_SSL($s, SSL_ca_file => "$tls/ca.pem",
                               SSL_verifycn_name => "nats-$n.example.org",
                               SSL_verifycn_scheme => 'default',
                               SSL_hostname => "nats-$n.example.org",
                               Timeout => 5)
        or return "TLS: $SSL_ERROR";
    my $connect = JSON::PP->new->canonical->encode({
        user => 'chat', pass => $pass, verbose => JSON::PP::false,
        pedantic => JSON::PP::false, tls_required => JSON::PP::true,
        name => 'deploy test', lang => 'perl', version => '0', protocol => 1 });
    print $s "CONNECT $connect\r\n", @after, "PING\r\n";
    my $answer = '';
    while (defined(my $line = <$s>)) {
        $answer .= $line;
        last if $line =~ /^(PONG|-ERR)/;
    }
    close $s;
    return $answer;
}

like client('a', $password), qr/^PONG\r$/m, 'the chat user is accepted over TLS (node a)';
like client('c', $password), qr/^PONG\r$/m, '... and on node c';
like client('b', 'wrong'), qr/-ERR 'Authorization Violation'/,
    'a wrong password is refused';
unlike client('b', $password, "PUB chat.g.0123456789abcdef01234567 2\r\nhi\r\n"),
    qr/-ERR/, 'the chat user may publish on chat.g.<group>';
unlike client('b', $password, "SUB chat.recheck 1\r\nPUB chat.recheck 2\r\nhi\r\n"),
    qr/-ERR/, '... subscribe and publish on chat.recheck';
like client('b', $password, "SUB other.subject 1\r\n"),
    qr/-ERR 'Permissions Violation for Subscription to "other.subject"'/,
    '... and subscribe to nothing else';
like client('b', $password, "PUB other.subject 2\r\nhi\r\n"),
    qr/-ERR 'Permissions Violation for Publish to "other.subject"'/,
    '... and on nothing else';

done_testing;
