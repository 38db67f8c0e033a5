package ChatTest::Sidecar;

# The monitoring sidecar for a .t file: started once when the file loads
# (before nginx), stopped by pid when it ends.
#
#   use ChatTest::Env;
#   use ChatTest::Sidecar;
#   ChatTest::Sidecar::start(db_refresh => 0.5);    # sets the env below
#
#   $TEST_NGINX_SIDECAR       127.0.0.1:PORT, for proxy_pass / upstream
#   $TEST_NGINX_SIDECAR_PORT  its port
#   $TEST_NGINX_IPC           the nng address it pulls records from
#   $TEST_NGINX_SIDECAR_KEY   the key nginx must send as X-Sidecar-Key
#                             (the sidecar answers 403 without it):
#       proxy_pass                 http://sidecar;
#       proxy_pass_request_headers off;
#       proxy_set_header           X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
#   $TEST_NGINX_HTPASSWD      an htpasswd file with user "admin", password
#                             "s3cret" (bcrypt, made with Debian's htpasswd)
#
#   my $data = ChatTest::Sidecar::data();           # /dashboard/api/data
#   ChatTest::Sidecar::wait_for(sub { $_[0]{performance}{total_requests} >= 5 });
#   ChatTest::Sidecar::stop(); ChatTest::Sidecar::start();   # a restart

use strict;
use warnings;

use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(sleep time);
use Test::Nginx::Socket ();

my ($pid, $port, %last_opt);
my $dir = tempdir('chat-sidecar-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TEST_NGINX_NO_CLEAN});
my $http = HTTP::Tiny->new(timeout => 5);

# the key nginx adds to what it passes to the sidecar (X-Sidecar-Key);
# this helper sends it too, as nginx would
my $key = do {
    open my $r, '<:raw', '/dev/urandom' or die "/dev/urandom: $!";
    read($r, my $raw, 24) == 24 or die "/dev/urandom: short read";
    unpack 'H*', $raw;
};
{
    open my $k, '>', "$dir/sidecar-key" or die "$dir/sidecar-key: $!";
    print $k "$key\n";
    close $k;
    chmod 0600, "$dir/sidecar-key";
}
$ENV{TEST_NGINX_SIDECAR_KEY} = $key;
$ENV{TEST_NGINX_SIDECAR_KEY_FILE} = "$dir/sidecar-key";

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "cannot find a free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub start {
    my %opt = (@_ ? @_ : %last_opt);
    %last_opt = %opt;

    my $bin = $ENV{TEST_NGINX_SIDECAR_BIN}
        // "$ENV{TEST_NGINX_ROOT}/build/sidecar/chat-sidecar";
    die "no sidecar binary at $bin: run make first\n" unless -x $bin;

    $port //= free_port();
    my $servroot = File::Spec->rel2abs(Test::Nginx::Socket::server_root());

    $ENV{TEST_NGINX_SIDECAR} = "127.0.0.1:$port";
    $ENV{TEST_NGINX_SIDECAR_PORT} = $port;

    my @args = ($bin,
        '--listen', "127.0.0.1:$port",
        '--ingest', $ENV{TEST_NGINX_IPC},
        '--http-key-file', "$dir/sidecar-key",
        '--mongo-uri', $opt{mongo_uri} // $ENV{TEST_NGINX_CHAT_URI},
        '--nginx-pid-file', "$servroot/logs/nginx.pid",
        '--html-dir', $opt{html_dir}
                      // "$ENV{TEST_NGINX_ROOT}/html",
        '--db-refresh', $opt{db_refresh} // 0.5,
        '--log-level', 'warn',
        map { ("--$_" => $opt{args}{$_}) } sort keys %{ $opt{args} // {} });

    $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$dir/sidecar.log";
        open STDERR, '>&', \*STDOUT;
        exec @args or POSIX::_exit(127);
    }

    my $deadline = time + 10;
    while (time < $deadline) {
        my $r = get('/health');
        return wait_db_healthy(15) if $r->{status} == 200 && $opt{wait_db};
        return 1 if $r->{status} == 200;
        die "the sidecar exited at start:\n" . log_text() . "\n"
            if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }
    die "the sidecar did not answer /health within 10 s:\n" . log_text();
}

# start(wait_db => 1): the first database poll done (on a loaded machine
# it can take seconds), for a test whose first check is db_healthy
sub wait_db_healthy {
    my $timeout = shift;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if (get('/health')->{content} // '') =~ /"db_healthy":true/;
        sleep 0.05;
    }
    die "the sidecar's database poll did not succeed within $timeout s:\n" . log_text();
}

sub stop {
    my $sig = shift // 'TERM';
    return unless $pid;
    kill $sig, $pid;
    my $deadline = time + 10;
    while (time < $deadline) {
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.02;
    }
    if (kill 0, $pid) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
    undef $pid;
}

sub log_text {
    open my $fh, '<', "$dir/sidecar.log" or return '';
    local $/;
    return <$fh>;
}

# a request as nginx passes it (with the key); get($path, without_key => 1)
# is what any other local process would send
sub get {
    my ($path, %opt) = @_;
    my %h = $opt{without_key} ? () : ('X-Sidecar-Key' => $key);
    %h = (%h, %{ $opt{headers} }) if $opt{headers};
    return $http->get("http://127.0.0.1:$port$path", { headers => \%h });
}

sub data {
    my $r = get('/dashboard/api/data');
    die "sidecar /dashboard/api/data: $r->{status}\n" unless $r->{status} == 200;
    return JSON::PP->new->utf8->decode($r->{content});
}

# polls the JSON until the predicate holds (or the timeout passes);
# returns the last data either way
sub wait_for {
    my ($pred, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    my $d;
    while (1) {
        $d = data();
        return $d if $pred->($d) || time > $deadline;
        sleep 0.05;
    }
}

# the dashboard's basic-auth file: admin / s3cret
$ENV{TEST_NGINX_HTPASSWD} = "$dir/htpasswd";
system("htpasswd -cbB '$dir/htpasswd' admin s3cret 2>/dev/null") == 0
    or die "htpasswd failed (apache2-utils missing?)\n";
chmod 0644, "$dir/htpasswd";
chmod 0755, $dir;

END { local $?; stop() }

1;
