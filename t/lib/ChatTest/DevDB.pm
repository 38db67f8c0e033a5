package ChatTest::DevDB;

# A PRIVATE embedded database (build/devdb, FerretDB) for one .t file, for
# tests that stop and restart the database under nginx and the sidecar.
# The suite's shared database ($TEST_NGINX_MONGO_URI) is never touched:
# other test files use it in parallel.
#
#   use ChatTest::DevDB;
#   plan skip_all => ChatTest::DevDB::why_not() unless ChatTest::DevDB::available();
#   my $db = ChatTest::DevDB->start;           # a free port, its own data dir
#   $db->uri;                  # mongodb://127.0.0.1:PORT/
#   $db->uri_for('chat');      # mongodb://127.0.0.1:PORT/chat
#   $db->port; $db->pid; $db->is_running;
#   $db->stop;                 # SIGTERM by pid (devdb/run-db.sh stop)
#   $db->stop_begin; ...; $db->stop_wait;   # the same, watched meanwhile
#   $db->restart;              # the SAME data dir and the SAME port, so a
#                              # URI nginx was configured with still works
#
# Stopped by pid when the object goes away or the file ends.  Data persists
# across stop/restart; the directory is removed at the end.

use strict;
use warnings;

use Carp qw(croak);
use File::Spec;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);

my $ROOT = $ENV{TEST_NGINX_ROOT}
    // File::Spec->rel2abs(File::Spec->catdir(
           (File::Spec->splitpath(__FILE__))[1], '..', '..', '..'));
my $RUN_DB = "$ROOT/devdb/run-db.sh";
my $BIN = $ENV{DEVDB_BIN} // "$ROOT/build/devdb";

my %live;    # refaddr => object, for the END block

sub available { !defined why_not() }

sub why_not {
    return "no devdb binary at $BIN (make devdb)" unless -x $BIN;
    return "no $RUN_DB" unless -x $RUN_DB;
    return undef;
}

sub start {
    my ($class, %opt) = @_;
    my $why = why_not();
    croak "ChatTest::DevDB: $why" if defined $why;

    my $dir = tempdir('chat-devdb-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $self = bless {
        dir     => "$dir/data",
        pidfile => "$dir/devdb.pid",
        port    => $opt{port} // 0,
        owner   => $$,
    }, $class;

    # belt and braces: never our pid file = the suite's shared one
    croak 'ChatTest::DevDB: refusing to use the shared database pid file'
        if defined $ENV{TEST_NGINX_DEVDB_PID_FILE}
        && File::Spec->rel2abs($self->{pidfile})
           eq File::Spec->rel2abs($ENV{TEST_NGINX_DEVDB_PID_FILE});

    $self->_run_start($self->{port});
    $live{"$self"} = $self;
    return $self;
}

sub _run_start {
    my ($self, $port) = @_;
    local $ENV{DEVDB_BIN} = $BIN;
    my $out = `'$RUN_DB' start '$self->{dir}' $port '$self->{pidfile}' 2>&1`;
    my $rc = $? >> 8;
    my ($uri) = $out =~ m{^(mongodb://127\.0\.0\.1:(\d+)/)\s*$}m;
    croak "ChatTest::DevDB: run-db.sh start failed (exit $rc):\n$out"
        . $self->log_tail
        if $rc != 0 || !$uri;
    ($self->{port}) = $uri =~ /:(\d+)\/$/;
    $self->{uri} = $uri;
    $self->{pid} = $self->_read_pid;
    $self->{started_at} = time;
    return $uri;
}

sub _read_pid {
    my $self = shift;
    open my $fh, '<', $self->{pidfile} or return undef;
    my $pid = <$fh> // '';
    return $pid =~ /^(\d+)/ ? $1 : undef;
}

sub uri  { $_[0]{uri} }
sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub dir  { $_[0]{dir} }

sub uri_for {
    my ($self, $db, $query) = @_;
    return "mongodb://127.0.0.1:$self->{port}/$db"
        . (defined $query ? "?$query" : '');
}

sub is_running {
    my $self = shift;
    return 0 unless $self->{pid};
    system("'$RUN_DB' status '$self->{pidfile}' >/dev/null 2>&1");
    return $? == 0 ? 1 : 0;
}

# SIGTERM by pid (SIGKILL after run-db.sh's grace); returns the seconds it
# took.  Idempotent.
sub stop {
    my $self = shift;
    return 0 unless $self->{pid} && $$ == $self->{owner};
    $self->stop_begin;
    return $self->stop_wait;
}

# run-db.sh stop in a child process: returns at once (FerretDB gives its
# open connections up to 3 s), so that a test can watch the outage begin.
sub stop_begin {
    my $self = shift;
    return unless $self->{pid} && $$ == $self->{owner} && !$self->{stopper};
    $self->{stop_t0} = time;
    my $kid = fork // croak "ChatTest::DevDB: fork: $!";
    if ($kid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        { no warnings 'exec'; exec $RUN_DB, 'stop', $self->{pidfile} }   # no END blocks here
        POSIX::_exit(127);
    }
    $self->{stopper} = $kid;
}

# waits for stop_begin's end; returns the seconds the stop took
sub stop_wait {
    my $self = shift;
    return 0 unless $self->{pid} && $$ == $self->{owner};
    $self->stop_begin unless $self->{stopper};
    waitpid delete $self->{stopper}, 0;
    my $t0 = delete $self->{stop_t0};
    # run-db.sh checks /proc; wait for the process itself as well
    my $deadline = time + 15;
    while (kill(0, $self->{pid}) && !_zombie($self->{pid}) && time < $deadline) {
        sleep 0.02;
    }
    delete $self->{pid};
    return time - $t0;
}

# Starts it again on the same data directory and the same port (the first
# start's port: nginx's and the sidecar's URIs name it).  The port was
# free a moment ago; if something else took it meanwhile, this dies.
sub restart {
    my $self = shift;
    $self->stop if $self->{pid};
    my $port = $self->{port} or croak 'ChatTest::DevDB: no port to restart on';
    my $uri;
    my $deadline = time + 5;
    while (1) {
        $uri = eval { $self->_run_start($port) };
        last if $uri;
        my $err = $@;
        # a socket of the old server may linger a moment in the kernel
        croak $err if time > $deadline || $err !~ /in use/;
        sleep 0.1;
    }
    croak "ChatTest::DevDB: restarted on port $self->{port}, not $port"
        if $self->{port} != $port;
    return $uri;
}

sub log_tail {
    my $self = shift;
    open my $fh, '<', "$self->{dir}/devdb.log" or return '';
    my @lines = <$fh>;
    return join '', @lines[ ($#lines > 10 ? $#lines - 10 : 0) .. $#lines ];
}

sub _zombie {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/status" or return 1;
    while (my $line = <$fh>) { return $1 eq 'Z' if $line =~ /^State:\s*(\S)/ }
    return 0;
}

sub DESTROY {
    my $self = shift;
    local ($?, $@);
    delete $live{"$self"};
    $self->stop;
}

END {
    local $?;
    $_->stop for values %live;
}

1;
