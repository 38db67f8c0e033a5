package ChatTest::ClusterFaults;

# What the cluster failure tests (t/42) do to processes: NATS nodes started,
# SIGKILLed and started again on the same ports; extra nginx "hosts" (an
# nginx of their own, 2 workers, chat_cluster) started and SIGKILLed.
# Everything by pid, on 127.0.0.1; what is still running is stopped at exit.
#
#   use ChatTest::ClusterFaults qw(nats_cluster nginx_host module_has);
#   my $nats = nats_cluster(3);                 # a full mesh, cluster "chat"
#   $ENV{TEST_NGINX_NATS_URLS} = join ' ', $nats->urls;
#   my $auth = nats_cluster(1, user => 'chat', pass => 's3cret');
#   $nats->kill_node(2);  $nats->start_node(2);  # SIGKILL; same ports again
#   $nats->clients(1);                           # its client connections
#   $nats->node_subscribed("chat.g.$group");     # where a subscriber is
#   my $h = nginx_host(name => 'host2', cluster => "URL ...");
#   $h->port; $h->kill; $h->error_log;

use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET ();
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use ChatTest::Util qw(free_port slurp poll);

our @EXPORT_OK = qw(nats_cluster nginx_host module_has);

my $dir = tempdir('chat-cluster-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{TEST_NGINX_NO_CLEAN});
my $http = HTTP::Tiny->new(timeout => 2);
my (@clusters, @hosts);
my $seq = 0;

# true if the module under test knows this directive (its name is in the
# .so's strings: a module built without it does not)
sub module_has {
    my $name = shift;
    my $so = $ENV{TEST_NGINX_LOAD_MODULES} // return 0;
    my $bin = slurp($so);
    return index($bin, "$name\0") >= 0;
}

sub spawn {
    my ($log, @argv) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec @argv or POSIX::_exit(127);
    }
    return $pid;
}

sub reap {      # SIGNAL, pids: signal them, wait until they are gone
    my ($sig, @pids) = @_;
    @pids = grep { $_ } @pids or return;
    kill $sig, @pids;
    for my $pid (@pids) {
        my $deadline = Time::HiRes::time() + 10;
        while (waitpid($pid, POSIX::WNOHANG()) == 0 && kill(0, $pid)) {
            if (Time::HiRes::time() > $deadline) { kill 'KILL', $pid; $deadline += 10 }
            Time::HiRes::sleep(0.02);
        }
    }
}

sub port_open {
    my $port = shift;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', Timeout => 1) ? 1 : 0;
}

# --- NATS ------------------------------------------------------------------

# nats_cluster(N, user => U, pass => P): N nodes on free ports, each
# routing to the others; returns once every node has its N-1 routes
sub nats_cluster {
    my ($n, %opt) = @_;
    my $self = bless { opt => \%opt, nodes => [], id => ++$seq },
                      'ChatTest::ClusterFaults::Nats';
    for my $i (1 .. $n) {
        push @{ $self->{nodes} }, {
            n => $i, client_port => free_port(), cluster_port => free_port(),
            monitor_port => free_port(),
            log => "$dir/nats-$self->{id}-$i.log",
        };
    }
    push @clusters, $self;
    $self->start_node($_) for 1 .. $n;
    $self->wait_mesh or die "the NATS nodes did not form a mesh\n";
    return $self;
}

package ChatTest::ClusterFaults::Nats;

sub node  { $_[0]{nodes}[$_[1] - 1] }
sub nodes { scalar @{ $_[0]{nodes} } }
sub url   { 'nats://127.0.0.1:' . $_[0]->node($_[1])->{client_port} }
sub urls  { my $s = shift; map { $s->url($_) } 1 .. $s->nodes }
sub pid   { $_[0]->node($_[1])->{pid} }

sub start_node {
    my ($self, $i) = @_;
    my $node = $self->node($i);
    my @routes = map { "nats://127.0.0.1:$_->{cluster_port}" }
                 grep { $_->{n} != $i } @{ $self->{nodes} };
    my @auth = defined $self->{opt}{user}
        ? ('--user', $self->{opt}{user}, '--pass', $self->{opt}{pass}) : ();
    # no_advertise: a client knows only the nodes it was given, so that a
    # host can be cut off while another stays linked
    push @auth, '--no_advertise=true' if $self->{opt}{no_advertise};
    $node->{pid} = ChatTest::ClusterFaults::spawn($node->{log},
        'nats-server', '-a', '127.0.0.1', '-p', $node->{client_port},
        '-n', "chat-$self->{id}-$i", '-m', $node->{monitor_port},
        '--cluster', "nats://127.0.0.1:$node->{cluster_port}",
        '--cluster_name', 'chat', (@routes ? ('--routes', join ',', @routes) : ()),
        @auth);
    ChatTest::ClusterFaults::poll(sub {
        ChatTest::ClusterFaults::port_open($node->{client_port})
            || !kill(0, $node->{pid}) }, 10);
    die "nats-server $i did not start: "
        . ChatTest::ClusterFaults::slurp($node->{log}) . "\n"
        unless ChatTest::ClusterFaults::port_open($node->{client_port});
    return $node->{pid};
}

# SIGKILL, as a crash would; the port is free again once it returns
sub kill_node {
    my ($self, $i) = @_;
    my $node = $self->node($i);
    ChatTest::ClusterFaults::reap('KILL', delete $node->{pid});
}

sub running { defined $_[0]->node($_[1])->{pid} }

sub monitor {   # monitor(i, 'connz') -> decoded JSON, undef if none
    my ($self, $i, $what) = @_;
    my $r = $http->get("http://127.0.0.1:" . $self->node($i)->{monitor_port} . "/$what");
    return $r->{success} ? eval { JSON::PP::decode_json($r->{content}) } : undef;
}

sub clients {   # the node's client connections now (0 if it is down)
    my ($self, $i) = @_;
    return 0 unless $self->running($i);
    my $c = $self->monitor($i, 'connz') or return 0;
    return $c->{num_connections} // 0;
}

# the node a client subscribed to $subject is connected to (undef: none)
sub node_subscribed {
    my ($self, $subject) = @_;
    for my $i (grep { $self->running($_) } 1 .. $self->nodes) {
        my $c = $self->monitor($i, 'connz?subs=1') or next;
        return $i if grep { grep { $_ eq $subject } @{ $_->{subscriptions_list} // [] } }
                     @{ $c->{connections} // [] };
    }
    return undef;
}

sub all_clients {
    my $self = shift;
    my $t = 0;
    $t += $self->clients($_) for 1 .. $self->nodes;
    return $t;
}

sub wait_mesh {
    my $self = shift;
    my $want = $self->nodes - 1;
    return ChatTest::ClusterFaults::poll(sub {
        !grep { (($self->monitor($_, 'routez') // {})->{num_routes} // -1) < $want }
             grep { $self->running($_) } 1 .. $self->nodes
    }, 20);
}

package ChatTest::ClusterFaults;

# --- nginx hosts -------------------------------------------------------------

# nginx_host(name => 'host2', cluster => 'URL ... [user=...]', workers => 2,
# http => 'extra http{} lines'): an nginx of its own with the chat API
# on a free port, the database and JWT secret of the .t file; returns once
# it accepts and its workers are up
sub nginx_host {
    my (%opt) = @_;
    my $name = $opt{name} // 'host2';
    my $prefix = "$dir/" . $name . '-' . ++$seq;
    mkdir $prefix; mkdir "$prefix/logs"; mkdir "$prefix/tmp";
    my $port = free_port();
    my $module = $ENV{TEST_NGINX_LOAD_MODULES} or die "no TEST_NGINX_LOAD_MODULES\n";
    my $workers = $opt{workers} // 2;
    # no cluster: a host alone (nginx without chat_cluster, as before it)
    my $cluster = defined $opt{cluster}
        ? "chat_host_name $name;\n    chat_cluster $opt{cluster};" : '';
    open my $c, '>', "$prefix/nginx.conf" or die "$prefix/nginx.conf: $!\n";
    print $c <<"_EOC_";
load_module $module;
daemon off;
master_process on;
worker_processes $workers;
error_log $prefix/logs/error.log info;
pid $prefix/logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log $prefix/logs/access.log;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    chat_mongo_uri "$ENV{TEST_NGINX_CHAT_URI}";
    chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    chat_db_timeout 5s;
    $cluster
@{[ $opt{http} // '' ]}
    server {
        listen 127.0.0.1:$port;
        location /api/chat/ { chat_api on; }
    }
}
_EOC_
    close $c;
    my $bin = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
    my $pid = spawn("$prefix/logs/stderr.log", $bin, '-p', $prefix,
                    '-c', "$prefix/nginx.conf");
    my $self = bless { name => $name, pid => $pid, port => $port,
                       prefix => $prefix, workers => $workers },
                     'ChatTest::ClusterFaults::Host';
    push @hosts, $self;
    poll(sub { (port_open($port) && $self->worker_pids == $workers)
               || !kill(0, $pid) }, 20);
    die "$name did not start: " . slurp("$prefix/logs/stderr.log")
        . slurp("$prefix/logs/error.log") . "\n"
        unless port_open($port) && $self->worker_pids == $workers;
    return $self;
}

package ChatTest::ClusterFaults::Host;

sub name   { $_[0]{name} }
sub pid    { $_[0]{pid} }
sub port   { $_[0]{port} }
sub prefix { $_[0]{prefix} }
sub error_log { ChatTest::ClusterFaults::slurp("$_[0]{prefix}/logs/error.log") }

sub worker_pids {
    my $self = shift;
    return () unless $self->{pid};
    my @w;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = ChatTest::ClusterFaults::slurp($stat);
        # pid (comm) state ppid: comm may hold spaces
        push @w, $1 if $s =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $self->{pid};
    }
    return @w;
}

# SIGKILL the master and its workers at once: the host is gone, its
# clients' connections reset.  The master first: alive, it would replace
# the workers killed before it, and those would outlive the test
sub kill {
    my $self = shift;
    my @w = $self->worker_pids;
    ChatTest::ClusterFaults::reap('KILL', delete $self->{pid});
    CORE::kill('KILL', @w);
    # the workers are not our children: wait until they are gone
    ChatTest::ClusterFaults::poll(sub { !grep { CORE::kill(0, $_) } @w }, 10);
}

sub stop {
    my $self = shift;
    ChatTest::ClusterFaults::reap('QUIT', delete $self->{pid});
}

package ChatTest::ClusterFaults;

END {
    local $?;
    $_->stop for @hosts;
    # make test-asan: the hosts' UBSan lines (see Test::Nginx::Util)
    if (my $collect = Test::Nginx::Util->can('collect_sanitizer_lines')) {
        $collect->("$_->{prefix}/logs", 'cluster') for @hosts;
    }
    for my $c (@clusters) {
        reap('TERM', map { delete $_->{pid} } @{ $c->{nodes} });
    }
}

1;
