package ChatTest::Script;

# Multi-step scenarios inside a Test::Nginx block, through public API only,
# so that the same .t runs under the real Test::Nginx and the bundled one:
#
#   use Test::Nginx::Socket 'no_plan';
#   use ChatTest::Script;
#   ...
#   --- request
#   GET /t
#   --- chat_script
#   my $alice = client('alice');
#   my $r = $alice->post('/api/chat/groups', { name => 'x' });
#   is $r->{status}, 201, 'created';
#
# The section's Perl runs once per block (and per repeat) after the block's
# first request, with nginx up; Test::More's functions are available, and
# client($user) returns a ChatTest::Client bound to the server's port.

use strict;
use warnings;

use Test::More;
use Test::Nginx::Socket ();
use ChatTest::Client;

my $registered;

sub import {
    return if $registered++;
    Test::Nginx::Socket::add_response_body_check(\&run_block_script);
}

sub port {
    return Test::Nginx::Socket::server_port();
}

sub client {
    my ($user, %opt) = @_;
    return ChatTest::Client->new(port => port(), user => $user, %opt);
}

sub run_block_script {
    my ($block, $body, $req_idx, $rep_idx, $dry_run) = @_;

    return if $dry_run;
    return if ($req_idx // 0) != 0;
    return unless $block->can('chat_script');

    my $code = $block->chat_script;
    return unless defined $code && length $code;

    my $name = $block->name;
    my $ok = eval "package ChatTest::Script::Sandbox;
                   use strict; use warnings; use Test::More;
                   *client = \\&ChatTest::Script::client;
                   *port = \\&ChatTest::Script::port;
                   #line 1 \"chat_script of $name\"
                   $code; 1";
    if (!$ok) {
        fail("$name - chat_script died");
        diag($@);
    }
}

1;
