package ChatTest::Blocks;

# The block preprocessor most Test::Nginx files of the chat share: the
# module's http configuration (database, JWT secret, timeout, and on
# request metrics and a second "reuseport" server), the API's location and
# a /t probe, and the block defaults.  A block's own http_config replaces
# ours (or follows it, with own_http => 'append'); its own config
# replaces the default locations.
#
#   use ChatTest::Blocks;
#   chat_blocks(db_timeout => '5s', reuseport => 1, timeout => 60);
#   chat_blocks(metrics => 1, http => "chat_host_name a;\n", config => ...);

use strict;
use warnings;

use Exporter 'import';
use Test::Nginx::Socket ();

our @EXPORT = qw(chat_blocks);

our $DEFAULT_CONFIG = <<'_EOC_';
location /api/chat/ { chat_api on; }
location = /t { return 200 "ok\n"; }
_EOC_

sub http_config {
    my %o = @_;
    my $c = <<'_EOC_';
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
_EOC_
    $c .= "chat_db_timeout $o{db_timeout};\n" if defined $o{db_timeout};
    $c .= <<'_EOC_' if $o{metrics};
chat_metrics on;
chat_metrics_address $TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;
_EOC_
    $c .= $o{http} if defined $o{http};
    # the kernel spreads this server's connections over the workers
    $c .= <<'_EOC_' if $o{reuseport};

server {
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 reuseport;
    location /api/chat/ { chat_api on; }
}
_EOC_
    return $c;
}

sub chat_blocks {
    my %o = @_;
    my $http = http_config(%o);
    my $config = $o{config} // $DEFAULT_CONFIG;

    Test::Nginx::Socket::add_block_preprocessor(sub {
        my $block = shift;

        if (($o{own_http} // 'replace') eq 'append') {
            $block->set_value(http_config => $http . ($block->http_config // ''));
        } elsif (!defined $block->http_config) {
            $block->set_value(http_config => $http);
        }

        $block->set_value(config => $config) unless defined $block->config;
        $block->set_value(request => $o{request})
            if defined $o{request} && !defined $block->request;
        $block->set_value(timeout => $o{timeout})
            if defined $o{timeout} && !defined $block->timeout;
    });
}

1;
