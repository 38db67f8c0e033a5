package ChatTest::Util;

# Small helpers of the .t files that start their own processes (no
# Test::Nginx block): a free port, a file's content, and a poll for a
# state instead of a sleep.
#
#   use ChatTest::Util qw(free_port slurp poll);
#   poll(sub { -e $file }, 10) or die "no $file within 10 s";

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET ();
use Time::HiRes ();

our @EXPORT_OK = qw(free_port slurp poll);

# a port nobody listens on now (the caller binds it soon after)
sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "no free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

# a file's whole content, '' when it cannot be read
sub slurp {
    open my $fh, '<', shift or return '';
    local $/;
    return <$fh>;
}

# true as soon as the predicate holds, false once timeout seconds passed
sub poll {
    my ($pred, $timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    while (Time::HiRes::time() < $deadline) {
        return 1 if $pred->();
        Time::HiRes::sleep(0.05);
    }
    return $pred->();
}

1;
