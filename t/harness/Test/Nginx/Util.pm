package Test::Nginx::Util;

# Server side of the bundled, clean-room Test::Nginx::Socket (see
# t/harness/README.md): settings, the server root, nginx.conf generation,
# starting nginx as a direct child with "daemon off", waiting for its port,
# stopping it by pid, and reading its error log.  Written from the public
# documentation of Test::Nginx only.

use strict;
use warnings;

use Cwd ();
use Exporter 'import';
use File::Path ();
use File::Spec ();
use IO::Socket::INET ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Time::Local ();

our @EXPORT = qw(
    repeat_each no_shuffle no_long_string master_on master_off workers
    log_level env_to_nginx worker_connections no_root_location
    check_accum_error_log add_block_preprocessor add_cleanup_handler
    bail_out server_port server_port_for_client server_root html_dir
);

our @EXPORT_OK = qw(
    $RepeatEach $NoShuffle $NoLongString $CheckAccumErrorLog
    @BlockPreprocessors
    parse_duration expand_env_vars prepare_servroot write_user_files
    write_nginx_conf start_nginx stop_nginx nginx_pid nginx_version
    wait_until_listening wait_for_exit error_log_path error_log_size
    read_error_log fatal_log_lines ensure_server_port_free
    collect_sanitizer_lines
);

# ---------------------------------------------------------------------------
# Settings (the functions a .t file calls before run_tests())
# ---------------------------------------------------------------------------

our $RepeatEach         = 1;
our $NoShuffle          = $ENV{TEST_NGINX_NO_SHUFFLE} ? 1 : 0;
our $NoLongString       = 0;
our $CheckAccumErrorLog = 0;
our $MasterProcess      = ($ENV{TEST_NGINX_MASTER_PROCESS} // 'off') eq 'on';
our $Workers            = 1;
our $WorkerConnections  = 64;
our $LogLevel           = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $NoRootLocation     = 0;
our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;

sub repeat_each {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub no_shuffle             { $NoShuffle = 1 }
sub no_long_string         { $NoLongString = 1 }
sub master_on              { $MasterProcess = 1 }
sub master_off             { $MasterProcess = 0 }
sub workers                { $Workers = shift }
sub worker_connections     { $WorkerConnections = shift }
sub log_level              { $LogLevel = shift }
sub no_root_location       { $NoRootLocation = 1 }
sub check_accum_error_log  { $CheckAccumErrorLog = 1 }
sub env_to_nginx           { push @EnvToNginx, @_ }
sub add_block_preprocessor { push @BlockPreprocessors, @_ }
sub add_cleanup_handler    { push @CleanupHandlers, @_ }

sub bail_out {
    my $msg = join '', @_;
    stop_nginx();
    run_cleanup_handlers();
    Test::More::BAIL_OUT($msg);
}

# ---------------------------------------------------------------------------
# Where things live: binary, server root, ports
# ---------------------------------------------------------------------------

my $Randomize = $ENV{TEST_NGINX_RANDOMIZE} ? 1 : 0;

# A per-file root we made up ourselves may be removed after a clean run.
my $OwnServRoot = $Randomize && !$ENV{TEST_NGINX_SERVROOT};

my $ServRoot = do {
    my $root = $ENV{TEST_NGINX_SERVROOT}
        || ($Randomize ? "t/servroot_$$" : 't/servroot');
    File::Spec->rel2abs($root);
};

my $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
my $ClientPort = $ENV{TEST_NGINX_CLIENT_PORT} || $ENV{TEST_NGINX_PORT};

sub server_root { $ServRoot }
sub html_dir    { "$ServRoot/html" }

sub server_port {
    set_server_port(shift) if @_;
    return $ServerPort;
}

sub server_port_for_client {
    $ClientPort = shift if @_;
    return $ClientPort || $ServerPort;
}

# Config sections refer to the port and the html dir as $TEST_NGINX_*.
sub export_server_env {
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
    $ENV{TEST_NGINX_CLIENT_PORT} = server_port_for_client();
    $ENV{TEST_NGINX_HTML_DIR}    = html_dir();
    $ENV{TEST_NGINX_SERVROOT}    = $ServRoot;
}

sub set_server_port {
    $ServerPort = shift;
    export_server_env();
}

sub port_is_free {
    my $port = shift;
    # ReuseAddr: a port in TIME_WAIT is fine for nginx too (it sets it).
    my $probe = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $port,
        Proto     => 'tcp',
        Listen    => 1,
        ReuseAddr => 1,
    );
    return 0 unless $probe;
    close $probe;
    return 1;
}

my %PortsHandedOut;

sub random_free_port {
    # Stay below Linux's ephemeral range (32768+) so outgoing connections
    # of other processes do not race us for the same number.
    for (1 .. 200) {
        my $port = 10000 + int rand 22000;
        next if $PortsHandedOut{$port};
        next unless port_is_free($port);
        $PortsHandedOut{$port} = 1;
        return $port;
    }
    die "could not find a free TCP port on 127.0.0.1\n";
}

# Returns an error message when the server port is taken and cannot be
# replaced by another one, undef when nginx may go ahead.
sub ensure_server_port_free {
    return undef if port_is_free($ServerPort);
    if ($Randomize) {
        set_server_port(random_free_port());
        return undef;
    }
    return "port $ServerPort on 127.0.0.1 is already in use by another "
        . "process; set TEST_NGINX_PORT or TEST_NGINX_RANDOMIZE=1";
}

sub nginx_binary {
    return $ENV{TEST_NGINX_BINARY} if $ENV{TEST_NGINX_BINARY};
    for my $dir (File::Spec->path) {
        my $candidate = "$dir/nginx";
        return $candidate if -f $candidate && -x _;
    }
    return '/usr/sbin/nginx';
}

my $NginxVersion;

# "1.22.1", from `nginx -v` (cached); undef if it cannot be run.
sub nginx_version {
    return $NginxVersion if defined $NginxVersion;
    my $bin = nginx_binary();
    my $out = `'$bin' -v 2>&1`;
    ($NginxVersion) = ($out // '') =~ m{nginx/(\d+(?:\.\d+)*)};
    return $NginxVersion;
}

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

# "1.5" / "500ms" / "2s" -> seconds
sub parse_duration {
    my ($value, $default) = @_;
    return $default unless defined $value;
    $value =~ s/^\s+|\s+$//g;
    return $default if $value eq '';
    return $1 / 1000 if $value =~ /^(\d+(?:\.\d+)?)ms$/;
    return $1 + 0    if $value =~ /^(\d+(?:\.\d+)?)s?$/;
    die "bad time value '$value' (expected e.g. 1.5, 2s or 500ms)\n";
}

# Replaces $TEST_NGINX_FOO (or ${TEST_NGINX_FOO}) by the environment value.
# TEST_NGINX_RAND_PORT_<n> gets a fresh free port the first time it is seen.
# An undefined variable is a broken test setup: bail out.
sub expand_env_vars {
    my ($text, $where) = @_;
    return $text unless defined $text;
    $text =~ s{\$(?:\{(TEST_NGINX_[A-Z0-9_]+)\}|(TEST_NGINX_[A-Z0-9_]+))}{
        env_value($1 // $2, $where)
    }ge;
    return $text;
}

sub env_value {
    my ($var, $where) = @_;
    if (!defined $ENV{$var} && $var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
        $ENV{$var} = random_free_port();
    }
    bail_out("No environment $var defined (used in the '$where' section).\n")
        unless defined $ENV{$var};
    return $ENV{$var};
}

sub write_file {
    my ($path, $content) = @_;
    open my $fh, '>', $path or die "cannot write $path: $!\n";
    binmode $fh;
    print {$fh} $content;
    close $fh or die "cannot write $path: $!\n";
}

# ---------------------------------------------------------------------------
# Server root and nginx.conf
# ---------------------------------------------------------------------------

my @TempDirs = qw(client_body_temp proxy_temp fastcgi_temp uwsgi_temp
                  scgi_temp);

# Fresh conf/, logs/, html/ and temp dirs.  Only these known sub-dirs are
# removed, never the root itself (it may be a user-given path).
sub prepare_servroot {
    collect_sanitizer_lines("$ServRoot/logs");
    for my $dir ('conf', 'logs', 'html', @TempDirs) {
        my $path = "$ServRoot/$dir";
        File::Path::remove_tree($path) if -e $path;
        File::Path::make_path($path);
    }
}

# user_files: either ">>> name [mtime]" text or (eval) an array of
# [name, content, mtime?] entries; written below html/.
sub write_user_files {
    my $spec = shift;
    return unless defined $spec;
    my @files;
    if (ref $spec eq 'ARRAY') {
        @files = map { [@$_] } @$spec;
    } else {
        for my $chunk (split /^>>>[ \t]+/m, $spec) {
            next unless $chunk =~ /\S/;
            my ($head, $content) = split /\n/, $chunk, 2;
            my ($name, $mtime) = split ' ', $head;
            push @files, [$name, $content // '', $mtime];
        }
    }
    for my $file (@files) {
        my ($name, $content, $mtime) = @$file;
        my $path = html_dir() . "/$name";
        (my $dir = $path) =~ s{/[^/]*$}{};
        File::Path::make_path($dir);
        write_file($path, $content // '');
        if (defined $mtime) {
            my $epoch = touch_time_to_epoch($mtime);
            utime $epoch, $epoch, $path;
        }
    }
}

# 199801171935.33 (touch -t style) or plain epoch seconds
sub touch_time_to_epoch {
    my $t = shift;
    if ($t =~ /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(?:\.(\d\d))?$/) {
        return Time::Local::timelocal($6 // 0, $5, $4, $3, $2 - 1, $1);
    }
    return $t;
}

sub nginx_conf_text {
    my (%s) = @_;
    my $root = $ServRoot;
    my $main = $s{main_config} // '';

    my @load = map { "load_module $_;" }
        split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} // '');
    my @env = map { /\s/ ? "env '$_';" : "env $_;" } @EnvToNginx;
    # Under a root master the workers would drop to "nobody" and lose
    # access to files the tests create; keep them as the current user.
    my $user = $MasterProcess && $> == 0 && $main !~ /^\s*user\s/m
        ? "user root;" : '';
    my $event_type = $ENV{TEST_NGINX_EVENT_TYPE}
        ? "use $ENV{TEST_NGINX_EVENT_TYPE};" : '';
    my $postpone = $ENV{TEST_NGINX_POSTPONE_OUTPUT}
        ? "postpone_output $ENV{TEST_NGINX_POSTPONE_OUTPUT};" : '';
    # Debian's nginx would put these under /var/lib/nginx.
    my $temp_paths = join "\n    ",
        map { "${_}_path $root/$_;" } @TempDirs;
    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $root/html;
            index index.html index.htm;
        }
_EOC_

    return <<"_EOC_";
# Generated by the bundled clean-room Test::Nginx::Socket (t/harness).
@{[ join "\n", @load ]}
daemon off;
master_process @{[ $MasterProcess ? 'on' : 'off' ]};
worker_processes $Workers;
$user
pid $root/logs/nginx.pid;
lock_file $root/logs/nginx.lock;
error_log $root/logs/error.log $s{log_level};
@{[ join "\n", @env ]}

# --- main_config
$main
# --- end main_config

events {
    accept_mutex off;
    worker_connections $WorkerConnections;
    $event_type
}

http {
    access_log $root/logs/access.log;
    default_type text/plain;
    keepalive_timeout 68;
    $temp_paths
    $postpone

# --- http_config
@{[ $s{http_config} // '' ]}
# --- end http_config

    server {
        listen 127.0.0.1:$ServerPort;
        server_name $s{server_name};
        client_max_body_size 30M;

# --- config
@{[ $s{config} // '' ]}
# --- end config

$root_location    }
}

# --- post_main_config
@{[ $s{post_main_config} // '' ]}
# --- end post_main_config
_EOC_
}

sub write_nginx_conf {
    my (%sections) = @_;
    for my $setting (qw(log_level server_name)) {
        $sections{$setting} =~ s/^\s+|\s+$//g if defined $sections{$setting};
    }
    $sections{log_level}   ||= $LogLevel;
    $sections{server_name} ||= 'localhost';
    write_file("$ServRoot/conf/nginx.conf", nginx_conf_text(%sections));
}

# ---------------------------------------------------------------------------
# The nginx process: a direct child running with "daemon off"
# ---------------------------------------------------------------------------

my $NginxPid;       # pid of the nginx (master) we started, if running
my $ExitStatus;     # wait status once reaped
my $OwnerPid = $$;  # forked helpers must not stop our nginx on exit

sub nginx_pid { $NginxPid }

sub error_log_path { "$ServRoot/logs/error.log" }

sub start_nginx {
    stop_nginx() if $NginxPid;
    my $bin = nginx_binary();
    my $log = error_log_path();
    $ExitStatus = undef;

    my $pid = fork;
    die "fork failed: $!\n" unless defined $pid;
    if ($pid == 0) {
        # Early errors ([emerg] while parsing the config) go to stderr:
        # append them to error.log so error_log checks and failure
        # reports see them; nginx's stdout must not reach the TAP stream.
        open STDIN,  '<',  '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>>&', \*STDOUT;
        no warnings 'exec';
        exec { $bin } $bin, '-p', "$ServRoot/", '-c', 'conf/nginx.conf';
        print STDERR "nginx: [emerg] cannot execute $bin: $!\n";
        POSIX::_exit(127);
    }
    $NginxPid = $pid;
    return $pid;
}

sub reap_if_exited {
    return 1 unless $NginxPid;
    my $r = waitpid $NginxPid, WNOHANG;
    if ($r == $NginxPid || $r == -1) {
        $ExitStatus = $r == -1 ? 0 : $?;
        $NginxPid = undef;
        return 1;
    }
    return 0;
}

# nginx writes its pid file after it has opened (listen()ed) its sockets,
# so from then on connections are queued for it.  Checking the file rather
# than connecting keeps probe connections out of the logs and counters.
sub pid_file_written {
    open my $fh, '<', "$ServRoot/logs/nginx.pid" or return 0;
    my $pid = <$fh> // '';
    return $pid =~ /^(\d+)/ && $1 == $NginxPid;
}

# Returns 'ready', or 'exited' (nginx died: see fatal_log_lines), or
# 'timeout'.  Polls often so a config error is reported at once.
sub wait_until_listening {
    my $timeout = shift // 10;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 'exited' if reap_if_exited();
        return 'ready' if pid_file_written();
        sleep 0.005;
    }
    return 'timeout';
}

# For must_die: waits until nginx exits.  Returns its exit code (or
# "signal N"), or undef if nginx was still serving after the timeout.
sub wait_for_exit {
    my $timeout = shift // 5;
    my $deadline = time + $timeout;
    my $up_since;
    while (time < $deadline) {
        return exit_description() if reap_if_exited();
        if (pid_file_written()) {
            $up_since //= time;
            # Failures in init_worker-like phases come right after the
            # pid file; a server that stays up for a while is up.
            last if time - $up_since > 0.5;
        }
        sleep 0.005;
    }
    return undef;
}

sub exit_description {
    return undef unless defined $ExitStatus;
    return "signal " . ($ExitStatus & 127) if $ExitStatus & 127;
    return $ExitStatus >> 8;
}

sub child_pids_of {
    my $parent = shift;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        # pid (comm) state ppid ...; comm may contain spaces and parens
        push @kids, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $parent;
    }
    return @kids;
}

sub wait_reaped {
    my $timeout = shift;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if reap_if_exited();
        sleep 0.005;
    }
    return 0;
}

# Stops the nginx we started (by pid, never by name): QUIT (graceful),
# then TERM, then KILL for it and its workers.  Returns how it ended:
# undef if it was still running when we stopped it, else the description
# of an exit that happened on its own (crash, or exit code).
sub stop_nginx {
    return undef unless $NginxPid && $$ == $OwnerPid;
    return exit_description() if reap_if_exited();
    my $pid = $NginxPid;
    my $grace = parse_duration($ENV{TEST_NGINX_STOP_GRACE}, 1.5);
    kill 'QUIT', $pid;
    return undef if wait_reaped($grace);
    kill 'TERM', $pid;
    return undef if wait_reaped(1);
    my @workers = child_pids_of($pid);
    kill 'KILL', @workers, $pid;
    waitpid $pid, 0;
    $NginxPid = undef;
    return undef;
}

sub run_cleanup_handlers {
    return unless $$ == $OwnerPid;
    while (my $handler = shift @CleanupHandlers) {
        eval { $handler->(); 1 } or warn "cleanup handler failed: $@";
    }
}

# ---------------------------------------------------------------------------
# Error log
# ---------------------------------------------------------------------------

sub error_log_size {
    return -s error_log_path() || 0;
}

# Lines logged from byte $offset on.
sub read_error_log {
    my $offset = shift // 0;
    open my $fh, '<', error_log_path() or return ();
    binmode $fh;
    seek $fh, $offset, 0;
    local $/;
    my $text = <$fh> // '';
    return split /\n/, $text;
}

# UBSan in a worker cannot write to the report files make test-asan asks
# for: it reads UBSAN_OPTIONS at its first report, from /proc/self/environ,
# which nginx's process titles have overwritten by then.  So it writes to
# stderr, which is the error log.  With TEST_NGINX_SANITIZER_REPORTS set
# (scripts/test-asan.sh), the sanitizer lines of every *.log in $dir are
# copied into a report file there, which fails the run, before the logs
# are removed.
sub collect_sanitizer_lines {
    my ($dir, $label) = @_;
    my $reports = $ENV{TEST_NGINX_SANITIZER_REPORTS} or return;
    for my $log (glob "$dir/*.log") {
        open my $fh, '<', $log or next;
        my @hits = grep {
            /runtime error:|Sanitizer|SUMMARY: \w+Sanitizer/
        } <$fh>;
        next unless @hits;
        my $name = ($0 =~ m{([^/]+)$})[0] . ($label ? " $label" : '');
        open my $out, '>>', "$reports/errorlog.$$" or next;
        print $out "== $name: $log\n", @hits[0 .. ($#hits < 59 ? $#hits : 59)];
    }
}

# The lines that explain why nginx would not start or stopped.
sub fatal_log_lines {
    my $offset = shift // 0;
    my @lines = grep { /\[(?:emerg|alert|crit)\]/ } read_error_log($offset);
    return @lines;
}

# ---------------------------------------------------------------------------
# Process-wide setup and teardown
# ---------------------------------------------------------------------------

sub randomize_ports {
    return unless $Randomize;
    $ServerPort = random_free_port();
    $ClientPort = undef;
}

randomize_ports();
export_server_env();

# A write to a connection the server closed must fail with EPIPE, not kill
# the test before it stops the nginx (and the sidecar) it started.
$SIG{PIPE} = 'IGNORE';

for my $signal (qw(INT TERM HUP)) {
    $SIG{$signal} = sub {
        stop_nginx();
        run_cleanup_handlers();
        POSIX::_exit(128 + ($signal eq 'INT' ? 2 : $signal eq 'TERM' ? 15 : 1));
    };
}

END {
    if ($$ == $OwnerPid) {
        my $status = $?;
        stop_nginx() unless $ENV{TEST_NGINX_NO_CLEAN};
        run_cleanup_handlers();
        collect_sanitizer_lines("$ServRoot/logs");
        # A randomized server root is per test file: drop it when all passed.
        if ($OwnServRoot && !$ENV{TEST_NGINX_NO_CLEAN}
            && Test::Builder->can('new') && Test::Builder->new->is_passing
            && $status == 0) {
            File::Path::remove_tree($ServRoot);
        }
        $? = $status;
    }
}

1;
