package ChatTest::Util;

# Small helpers of the .t files that start their own processes (no
# Test::Nginx block): a free port, a file's content read and written, a
# command that must succeed, and a poll for a state instead of a sleep.
#
#   use ChatTest::Util qw(free_port slurp spew run_ok poll);
#   poll(sub { -e $file }, 10) or die "no $file within 10 s";

use strict;
use warnings;

use Exporter 'import';
use Test::More ();
use IO::Socket::INET ();
use Time::HiRes ();

our @EXPORT_OK = qw(free_port slurp spew run_ok poll);

# a port nobody listens on now (the caller binds it soon after)
sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "no free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

# a file's whole content (bytes), '' when it cannot be read
sub slurp {
    open my $fh, '<', shift or return '';
    binmode $fh;
    local $/;
    return <$fh> // '';
}

# writes a file whole; dies when it cannot
sub spew {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh or die "$file: $!";
}

# one check: the shell command exits 0 (its output shown when not);
# returns the output (stdout and stderr)
sub run_ok {
    my ($what, @cmd) = @_;
    my $out = `@cmd 2>&1`;
    Test::More::is($?, 0, $what) or Test::More::diag("@cmd\n$out");
    return $out;
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
