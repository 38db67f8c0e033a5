package ChatTest::Workers;

# Helpers for tests that run several workers behind a reuseport listener
# ($TEST_NGINX_RAND_PORT_1) and need to know which worker holds which
# WebSocket (read from its "joined group" line in the error log): a
# group, the workers' pids and bus slots, a WebSocket pinned to a worker,
# the error log polled for a line, a worker stopped for a while.

use strict;
use warnings;

use Exporter 'import';
use JSON::PP ();
use Time::HiRes ();
use Test::Nginx::Util qw(server_root server_port);
use ChatTest::Client;
use ChatTest::JWT;
use ChatTest::Peer;
use ChatTest::WebSocket;

our @EXPORT = qw(ws_port http json_text new_group master_pid read_file
                 error_log wait_until wait_log bus_slots three_workers
                 join_worker served_by with_stopped);

our $JSON = JSON::PP->new->utf8->canonical;
our $Seq = 0;

sub ws_port { $ENV{TEST_NGINX_RAND_PORT_1} }

sub http { ChatTest::Client->new(port => server_port(), user => $_[0] // 'owner') }

sub json_text { $JSON->encode($_[0]) }

sub new_group {
    my $r = http()->post('/api/chat/groups', { name => $_[0] // 'promises' });
    die "cannot create a group: $r->{status} $r->{body}\n"
        unless $r->{status} == 201;
    return $r->{json}{id};
}

sub master_pid {
    open my $fh, '<', server_root() . '/logs/nginx.pid' or die "no pid file: $!\n";
    my $pid = <$fh> // '';
    return $pid =~ /^(\d+)/ ? $1 : die "bad pid file\n";
}

sub read_file {
    my $f = shift;
    open my $fh, '<', $f or return '';
    local $/;
    return <$fh> // '';
}

sub error_log { read_file(server_root() . '/logs/error.log') }

sub wait_until {
    my ($pred, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 5);
    while (1) {
        my $v = $pred->();
        return $v if $v || Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# Waits until the error log has a line matching $re (whose captures $skip
# does not reject); returns the captures, or () after the timeout.
sub wait_log {
    my ($re, $timeout, $skip) = @_;
    my $deadline = Time::HiRes::time + ($timeout // 5);
    my $log = server_root() . '/logs/error.log';
    while (1) {
        if (open my $fh, '<', $log) {
            while (my $line = <$fh>) {
                my @m = $line =~ $re or next;
                return @m unless $skip && $skip->(@m);
            }
        }
        return () if Time::HiRes::time > $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# pid => slot of every worker that joined the bus so far
our $bus_line = qr/ (\d+)#\d+: chat broadcast: worker slot (\d+) of \d+ joined the bus/;

sub bus_slots {
    my %slot;
    for (split /\n/, error_log()) { $slot{$1} = $2 if $_ =~ $bus_line }
    return %slot;
}

# the pids of the three workers, once all three joined the bus
sub three_workers {
    my $w = wait_until(sub { my %s = bus_slots(); keys %s >= 3 ? \%s : undef }, 10)
        or die "three workers never joined the bus\n";
    return %$w;
}

# A WebSocket of $user in $group, kept only once the kernel gave it to
# the worker $opt{on} (a pid), or to a worker not in @{$opt{not}}.
sub join_worker {
    my ($user, $group, %opt) = @_;
    my $path = "/api/chat/ws/$group?token=" . ChatTest::JWT::token($user);
    for (1 .. 64) {
        my $cid = "pin-$user-" . ++$Seq;
        my $ws = ChatTest::WebSocket::ws_connect(port => ws_port(), path => $path, name => $user,
                            timeout => 5,
                            headers => { 'X-Correlation-ID' => $cid });
        die "$user could not join: " . ($ws->error // '?') . "\n"
            unless $ws->is_open;
        my ($pid) = wait_log(qr/ (\d+)#\d+: \*\d+ chat ws: "\Q$user\E" joined group \Q$group\E .*correlation_id=\Q$cid\E(?:[\s,]|$)/)
            or die "no \"joined group\" line for $cid\n";
        return ChatTest::Peer->new(ws => $ws, user => $user, pid => $pid)
            if (!$opt{on} || $pid == $opt{on})
               && !grep { $pid == $_ } @{ $opt{not} // [] };
        $ws->disconnect;
    }
    die "64 connections and none on the wanted worker\n";
}

# The worker that served a request of ours on the reuseport server (its
# access log line carries the correlation ID); undef if none within 5 s.
sub served_by {
    my $cid = shift;
    return wait_until(sub {
        read_file(server_root() . '/logs/who.log') =~ /^(\d+) \Q$cid\E \d+$/m ? $1 : undef
    }, 5);
}

# Runs $code; a worker stopped for the test is continued whatever happens.
sub with_stopped {
    my ($pids, $code) = @_;
    kill 'STOP', @$pids;
    my $ok = eval { $code->(); 1 };
    my $err = $@;
    kill 'CONT', @$pids;
    die $err unless $ok;
}

1;
