# The Debian packages (docs/OPERATIONS.md): built from debian/, installed
# on this machine, the packaged sidecar and Debian's nginx with the
# packaged module run on a private port, then purged, nothing left.
# scripts/test-deb.sh does it all and prints TAP; it skips itself when not
# root or when either package is installed already (an operator's).
# SKIP_DEB_TEST=1 skips it here (make test-deb still runs it).  Numbered
# apart from the suite (90): it tests the machine-wide installation.
use strict;
use warnings;
use FindBin;
use Cwd qw(abs_path);

my $root = abs_path("$FindBin::Bin/..");

if ($ENV{SKIP_DEB_TEST}) {
    print "1..0 # SKIP SKIP_DEB_TEST is set\n";
    exit 0;
}

# the packages are built into the script's scratch directory, so build/
# (the development build, build/deb) is left as it is
exec "$root/scripts/test-deb.sh", '--build'
    or die "cannot run scripts/test-deb.sh: $!\n";
