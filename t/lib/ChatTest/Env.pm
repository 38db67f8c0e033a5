package ChatTest::Env;

# Per-file test environment, set when a .t file says "use ChatTest::Env;":
#
#   $TEST_NGINX_CHAT_URI   TEST_NGINX_MONGO_URI with a database of this
#                          file's own (chat_t_<file>_<pid>), so files that
#                          run in parallel never see each other's data
#   $TEST_NGINX_JWT_SECRET the secret ChatTest::JWT signs with
#   $TEST_NGINX_IPC        an ipc:// address private to this file, for the
#                          metrics pipeline (nginx -> sidecar)

use strict;
use warnings;

use File::Basename qw(basename);
use ChatTest::JWT ();

my $uri = $ENV{TEST_NGINX_MONGO_URI}
    or die "TEST_NGINX_MONGO_URI is not set: run the suite with `make test`"
         . " or scripts/test.sh\n";

(my $file = basename($0)) =~ s/\.t$//;
$file =~ s/[^A-Za-z0-9]+/_/g;
my $db = "chat_t_${file}_$$";

# mongodb://hosts[/db][?query] -> mongodb://hosts/$db[?query]
my ($hosts, $query) = $uri =~ m{^mongodb://([^/?]+)/?[^?]*(\?.*)?$}
    or die "TEST_NGINX_MONGO_URI is not a mongodb:// URI: $uri\n";
$ENV{TEST_NGINX_CHAT_URI} = "mongodb://$hosts/$db" . ($query // '');
$ENV{TEST_NGINX_CHAT_DB} = $db;

$ENV{TEST_NGINX_IPC} = "ipc:///tmp/chat-test-${file}-$$.sock";

1;
