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
#
# Steps on the chat's own data, for the tests of the event log's seqs
# (t/21, t/32), are there too:
#
#   my ($alice, $g, $ws) = subscribed_group('alice', 'a name');
#       $user's client, a group it created, and $user's WebSocket on it
#       (one test: "subscribed", the handshake answered 101)
#   set_group_seq($db, $g, $seq)
#       the group's seq counter set to $seq in the database ($db: a
#       ChatTest::MongoWire), as takes ($inc) whose writes failed, or a
#       counter that stepped back, leave it; returns the groups updated (1)
#   claim_seqs($db, $g, $at_ms, $id_prefix, @seqs)
#       each seq's claim (its record in seqs, type message) as a take made
#       at $at_ms (ms since the epoch) left it, for a message that never
#       came: its id $id_prefix (2 hex digits) then the seq in 22; returns
#       the records inserted
#
# And, for the metrics pipeline's batches (t/06):
#
#   pipelined_get($path, $n, sub { "X-Correlation-ID: id-$_[0]" })
#       $n GETs of $path written at once on one connection, the last
#       closing it, each with the header line the sub returns for its
#       number (1 .. $n); returns how many were answered 200

use strict;
use warnings;

use Test::More;
use Test::Nginx::Socket ();
use ChatTest::Client;
use ChatTest::JWT;
use ChatTest::MongoWire qw(oid date i64 doc);
use ChatTest::WebSocket ();
use IO::Socket::INET;

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

sub subscribed_group {
    my ($user, $name) = @_;
    my $c = client($user);
    my $g = $c->post('/api/chat/groups', { name => $name })->{json}{id};
    my $ws = ChatTest::WebSocket->connect(port => port(),
        path => "/api/chat/ws/$g?token=" . ChatTest::JWT::token($user));
    is $ws->status, 101, 'subscribed';
    return ($c, $g, $ws);
}

sub set_group_seq {
    my ($db, $g, $seq) = @_;
    return $db->command([ update => 'groups', updates => [
        doc(q => doc(_id => oid($g)), u => doc('$set' => doc(seq => i64($seq)))) ] ])->{n};
}

sub claim_seqs {
    my ($db, $g, $at, $prefix, @seqs) = @_;
    return $db->command([ insert => 'seqs', documents => [
        map { doc(_id => "$g:$_", group_id => oid($g), seq => i64($_), type => 'message',
                  message_id => oid(sprintf "${prefix}%022x", $_), at => date($at)) } @seqs ] ])->{n};
}

sub pipelined_get {
    my ($path, $n, $header) = @_;
    my $raw = join '', map {
        "GET $path HTTP/1.1\r\nHost: x\r\n" . $header->($_) . "\r\n"
        . ($_ == $n ? "Connection: close\r\n" : '') . "\r\n"
    } 1 .. $n;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => port(), Timeout => 20)
        or die "connect: $!";
    print $sock $raw;
    my $resp = do { local $/; <$sock> };
    close $sock;
    return scalar(() = $resp =~ m{^HTTP/1\.1 200}mg);
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
                   *subscribed_group = \\&ChatTest::Script::subscribed_group;
                   *set_group_seq = \\&ChatTest::Script::set_group_seq;
                   *claim_seqs = \\&ChatTest::Script::claim_seqs;
                   *pipelined_get = \\&ChatTest::Script::pipelined_get;
                   #line 1 \"chat_script of $name\"
                   $code; 1";
    if (!$ok) {
        fail("$name - chat_script died");
        diag($@);
    }
}

1;
