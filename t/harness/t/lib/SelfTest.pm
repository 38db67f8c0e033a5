package SelfTest;

# Helpers for the harness self-tests: write a throw-away .t file, run it
# in a subprocess with the bundled harness, and pick its TAP output apart.

use strict;
use warnings;

use Exporter 'import';
use File::Spec ();
use File::Temp ();
use FindBin ();
use POSIX ();
use Time::HiRes qw(time);

our @EXPORT = qw(harness_dir lib_dir scratch_dir write_t run_t run_prove);

sub harness_dir { File::Spec->rel2abs("$FindBin::Bin/..") }
sub lib_dir     { File::Spec->rel2abs("$FindBin::Bin/../../lib") }

my $Scratch;

# One temporary working directory per self-test (servroots go there too).
sub scratch_dir {
    $Scratch //= File::Temp::tempdir('harness-selftest-XXXXXX',
                                     TMPDIR => 1, CLEANUP => 1);
    return $Scratch;
}

sub write_t {
    my ($name, $content) = @_;
    my $path = scratch_dir() . "/$name";
    open my $fh, '>', $path or die "cannot write $path: $!";
    print {$fh} $content;
    close $fh;
    return $path;
}

# Runs one .t file; returns its TAP and counts:
#   { stdout, stderr, exit, elapsed, ok, not_ok, plan, bailed, lines }
sub run_t {
    my ($path, %env) = @_;
    my @cmd = ($^X, '-I', harness_dir(), '-I', lib_dir(), $path);
    return run_captured(\@cmd, %env);
}

# Runs prove on several .t files (prove's own output in stdout).
sub run_prove {
    my ($args, %env) = @_;
    my @cmd = ('prove', '-I', harness_dir(), '-I', lib_dir(), @$args);
    return run_captured(\@cmd, %env);
}

sub run_captured {
    my ($cmd, %env) = @_;
    my $dir = scratch_dir();
    my ($out, $err) = ("$dir/stdout.$$", "$dir/stderr.$$");
    local %ENV = (%ENV, TEST_NGINX_RANDOMIZE => 1, %env);
    delete $ENV{$_} for grep { !defined $env{$_} && exists $env{$_} } keys %env;
    delete $ENV{HARNESS_ACTIVE} unless exists $env{HARNESS_ACTIVE};

    my $started = time;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        chdir $dir or die "chdir $dir: $!";
        open STDOUT, '>', $out or die;
        open STDERR, '>', $err or die;
        exec @$cmd or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my %r = (exit => $? >> 8, elapsed => time - $started);
    $r{stdout} = slurp($out);
    $r{stderr} = slurp($err);
    my @lines = split /\n/, $r{stdout};
    $r{lines}  = \@lines;
    $r{ok}     = grep { /^ok \d+/ } @lines;
    $r{not_ok} = grep { /^not ok \d+/ } @lines;
    ($r{plan}) = map { /^1\.\.(\d+)/ ? $1 : () } @lines;
    ($r{bailed}) = map { /^Bail out!\s*(.*)/ ? $1 : () } @lines;
    return \%r;
}

sub slurp {
    my $path = shift;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

1;
