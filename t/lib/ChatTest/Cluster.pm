package ChatTest::Cluster;

# Several hosts on one machine, all on 127.0.0.1: a NATS cluster
# (nats-server processes, each routed to the others) and extra nginx
# "hosts" (each its own prefix, port and workers, the same module and
# database as the Test::Nginx one).  Everything is started and stopped by
# pid, never by name.
#
#   my @nats = start_nats_cluster(3);          # ({ pid, client_port,
#                                              #    cluster_port,
#                                              #    monitor_port, url,
#                                              #    urls, dir }, ...)
#   my $h2 = start_host(name => 'h2', cluster => [ map { $_->{url} } @nats ]);
#                                              # { pid, port, prefix, ... }
#   stop_pid($h2->{pid});  stop_pid($_->{pid}) for @nats;
#
# start_host() options: name (chat_host_name), workers (2), cluster (an
# array of URLs, or the chat_cluster arguments as one string; none: no
# chat_cluster), port (a free one), prefix (a new directory), http (more
# http{} configuration), mongo_uri, jwt_secret, metrics_address (none: no
# metrics), main (more main-level configuration), wait (1: until /t
# answers).

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path);
use File::Temp ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

our @EXPORT_OK = qw(start_nats_cluster start_nats start_host stop_pid
                    free_port nats_routes nats_subscribed host_log
                    wait_host_log);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my %started;                # pid => what, stopped at exit if still running
my $owner = $$;             # the test's process (not a fork of it)
my $base = File::Temp::tempdir('chat-cluster-XXXXXX', TMPDIR => 1,
                               CLEANUP => 1);

sub free_port {
    my %seen;
    for (1 .. 20) {
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                      LocalPort => 0, ReuseAddr => 1)
            or die "cannot find a free port: $!";
        my $p = $s->sockport;
        close $s;
        return $p unless $seen{$p}++;
    }
    die "no free port\n";
}

sub _spawn {
    my ($what, $log, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }
    $started{$pid} = $what;
    return $pid;
}

sub _get {
    my ($port, $path, $timeout) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => $timeout // 2) or return undef;
    print $s "GET $path HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    close $s;
    return $r =~ /^HTTP\/1\.\d 200/ ? ($r =~ /\r\n\r\n(.*)\z/s)[0] : undef;
}

# One nats-server; %opt: routes (cluster URLs), client_port, cluster_port,
# monitor_port, args (more arguments: ['--user', 'u', '--pass', 'p'])
sub start_nats {
    my %opt = @_;
    my $client = $opt{client_port} // free_port();
    my $cluster = $opt{cluster_port} // free_port();
    my $monitor = $opt{monitor_port} // free_port();
    my $dir = "$base/nats-$client";
    make_path($dir);

    my @cmd = ('nats-server', '-a', '127.0.0.1', '-p', $client,
               '--cluster', "nats://127.0.0.1:$cluster",
               '--cluster_name', 'chat', '-m', $monitor,
               '-l', "$dir/nats.log", '-P', "$dir/nats.pid",
               (@{ $opt{routes} // [] }
                    ? ('--routes', join ',', @{ $opt{routes} }) : ()),
               @{ $opt{args} // [] });

    my $pid = _spawn('nats-server', "$dir/stdout.log", @cmd);

    my $deadline = time + 10;
    until (defined _get($monitor, '/varz', 0.5)) {
        die "nats-server on port $client did not start:\n"
            . `tail -5 $dir/nats.log $dir/stdout.log 2>/dev/null`
            if time > $deadline
               || waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }

    return { pid => $pid, client_port => $client, cluster_port => $cluster,
             monitor_port => $monitor, url => "nats://127.0.0.1:$client",
             dir => $dir, args => $opt{args} };
}

# the routes a node has (its /routez)
sub nats_routes {
    my $node = shift;
    my $r = _get($node->{monitor_port}, '/routez', 1) // return -1;
    return $r =~ /"num_routes":\s*(\d+)/ ? $1 : -1;
}

# n nodes, each routed to the others, once every node has its n-1 routes;
# every node's urls lists all client URLs
sub start_nats_cluster {
    my ($n, %opt) = @_;
    $n //= 3;
    my @ports = map { { client => free_port(), cluster => free_port(),
                        monitor => free_port() } } 1 .. $n;
    my @nodes;
    for my $i (0 .. $n - 1) {
        push @nodes, start_nats(
            client_port => $ports[$i]{client},
            cluster_port => $ports[$i]{cluster},
            monitor_port => $ports[$i]{monitor},
            routes => [ map { "nats://127.0.0.1:$ports[$_]{cluster}" }
                        grep { $_ != $i } 0 .. $n - 1 ],
            args => $opt{args});
    }
    my @urls = map { $_->{url} } @nodes;
    $_->{urls} = [ @urls ] for @nodes;

    my $deadline = time + 15;
    while (grep { nats_routes($_) < $n - 1 } @nodes) {
        die "the NATS cluster did not form its routes within 15 s\n"
            if time > $deadline;
        sleep 0.05;
    }
    return @nodes;
}

# whether every node in @$nodes knows an interest in $subject (its own
# client's, or one routed to it)
sub nats_subscribed {
    my ($nodes, $subject) = @_;
    for my $node (@$nodes) {
        my $r = _get($node->{monitor_port},
                     "/subsz?subs=1&test=$subject", 1) // return 0;
        return 0 unless $r =~ /"num_matches":\s*[1-9]/;
    }
    return 1;
}

# An nginx host of its own (see the options above); { pid, port, prefix,
# name, error_log }
sub start_host {
    my %opt = @_;
    my $port = $opt{port} // free_port();
    my $name = $opt{name} // "host-$port";
    my $prefix = $opt{prefix} // "$base/$name";
    make_path("$prefix/conf", "$prefix/logs");

    my $module = $ENV{TEST_NGINX_LOAD_MODULES}
        // "$ENV{TEST_NGINX_ROOT}/build/ngx_chat_module.so";
    my $uri = $opt{mongo_uri} // $ENV{TEST_NGINX_CHAT_URI};
    my $secret = $opt{jwt_secret} // $ENV{TEST_NGINX_JWT_SECRET};
    my $cluster = ref $opt{cluster} ? join(' ', @{ $opt{cluster} })
                                    : $opt{cluster};
    my $workers = $opt{workers} // 2;

    open my $fh, '>', "$prefix/conf/nginx.conf" or die "$prefix: $!";
    print $fh <<"_EOC_";
load_module $module;
worker_processes $workers;
@{[ $opt{main} // '' ]}
daemon off;
master_process on;
pid $prefix/logs/nginx.pid;
error_log $prefix/logs/error.log info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $prefix/tmp_body;
    chat_mongo_uri "$uri";
    chat_jwt_secret $secret;
    chat_db_timeout 3s;
    chat_host_name $name;
_EOC_
    print $fh "    chat_cluster $cluster;\n" if defined $cluster;
    print $fh "    chat_metrics on;\n    chat_metrics_address "
              . "$opt{metrics_address};\n" if $opt{metrics_address};
    print $fh "    $opt{http}\n" if $opt{http};
    print $fh <<"_EOC_";
    server {
        listen 127.0.0.1:$port reuseport;
        location /api/chat/ { chat_api on; }
        location = /t { return 200 "ok\\n"; }
    }
}
_EOC_
    close $fh;

    my $bin = $ENV{TEST_NGINX_BINARY} // 'nginx';
    my $pid = _spawn('nginx', "$prefix/logs/stderr.log",
                     $bin, '-p', "$prefix/", '-c', "$prefix/conf/nginx.conf");

    my $host = { pid => $pid, port => $port, prefix => $prefix,
                 name => $name, error_log => "$prefix/logs/error.log" };

    return $host if defined $opt{wait} && !$opt{wait};

    my $deadline = time + 10;
    until (defined _get($port, '/t', 0.5)) {
        die "nginx host $name did not start:\n"
            . `tail -20 $prefix/logs/error.log $prefix/logs/stderr.log 2>/dev/null`
            if time > $deadline
               || waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }
    return $host;
}

sub host_log {
    my $host = shift;
    open my $fh, '<', $host->{error_log} or return '';
    local $/;
    return <$fh> // '';
}

# waits until the host's error log has a line matching $re; its captures
sub wait_host_log {
    my ($host, $re, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (1) {
        for my $line (split /\n/, host_log($host)) {
            my @m = $line =~ $re or next;
            return @m ? @m : (1);
        }
        return () if time > $deadline;
        sleep 0.02;
    }
}

# TERM (nginx: fast shutdown; nats-server: exits), then KILL after 10 s
sub stop_pid {
    my ($pid, $sig) = @_;
    return unless $pid;
    kill $sig // 'TERM', $pid;
    my $deadline = time + 10;
    while (time < $deadline) {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            delete $started{$pid};
            return 1;
        }
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    delete $started{$pid};
    return 0;
}

END {
    return unless $$ == $owner;
    my $status = $?;
    stop_pid($_) for keys %started;
    # make test-asan: the hosts' UBSan lines (see Test::Nginx::Util)
    if (my $collect = Test::Nginx::Util->can('collect_sanitizer_lines')) {
        $collect->($_, 'cluster') for glob "$base/*/logs";
    }
    $? = $status;
}

1;
