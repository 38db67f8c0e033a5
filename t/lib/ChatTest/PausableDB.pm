package ChatTest::PausableDB;

# A "pausable database": a forwarding proxy to a MongoDB-wire server on
# this host, a child of the test.  SIGSTOP holds every reply of its
# established connections, as a stopped database does (the server itself
# keeps running for the other files of the suite); SIGCONT lets them
# through.  Stopped by pid when the test ends.
#
#   use ChatTest::PausableDB;
#   my $uri = ChatTest::PausableDB::start($ENV{TEST_NGINX_CHAT_URI});
#   kill 'STOP', ChatTest::PausableDB::pid(); ... kill 'CONT', ...;
#
# start() returns undef when the URI is not a single local host.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use POSIX ();

my $pid;

sub pid { return $pid }

sub start {
    my $target = shift // return undef;
    my ($host, $port, $db) =
        $target =~ m{^mongodb://(127\.0\.0\.1|localhost):(\d+)/([^?,]+)$}
        or return undef;

    my $l = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "cannot listen: $!";
    my $uri = 'mongodb://127.0.0.1:' . $l->sockport . "/$db";

    $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{PIPE} = 'IGNORE';          # a peer the driver closed: drop it
        my $sel = IO::Select->new($l);
        my %peer;
        while (1) {
            for my $s ($sel->can_read) {
                if ($s == $l) {
                    my $c = $l->accept or next;
                    my $u = IO::Socket::INET->new(PeerAddr => $host,
                                                  PeerPort => $port)
                        or do { close $c; next };
                    @peer{$c, $u} = ($u, $c);
                    $sel->add($c, $u);
                    next;
                }
                my $o = $peer{$s} or next;   # closed with its peer just now
                my $n = sysread $s, my $buf, 65536;
                if (!$n || !defined syswrite($o, $buf)) {
                    $sel->remove($s, $o);
                    delete @peer{$s, $o};
                    close $s;
                    close $o;
                }
            }
        }
        POSIX::_exit(0);
    }
    close $l;
    return $uri;
}

END {
    local $?;
    if ($pid) {
        kill 'CONT', $pid;
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
}

1;
