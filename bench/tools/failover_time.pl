#!/usr/bin/perl
# bench/tools/failover_time.pl PORT1 PORT2 TOKEN GROUP PID:MONITOR_PORT...
# NATS failover as a subscriber sees it: a WebSocket on host 2 (PORT2) in
# GROUP; posts on host 1 (PORT1) until one crosses; then the NATS node its
# worker is subscribed on (chat.g.GROUP in the node's /connz?subs=1) is
# SIGKILLed and host 1 posts every 20 ms until one posted after the kill
# reaches host 2.  Prints {"node":N,"clients":C,"failover_ms":..,"posts":..}
# (N: 1-based index of the node killed, for the caller to restart it).
# The client is the test suite's (t/lib/ChatTest/WebSocket.pm).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../t/lib";
use HTTP::Tiny;
use JSON::PP ();
use Time::HiRes ();
use ChatTest::WebSocket;

my ($port1, $port2, $token, $group, @nodes) = @ARGV;
die "usage: $0 PORT1 PORT2 TOKEN GROUP PID:MONITOR_PORT...\n" unless @nodes;
my $json = JSON::PP->new;
my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 1);

my $ws = ChatTest::WebSocket->connect(port => $port2, timeout => 10,
    path => "/api/chat/ws/$group?token=$token");
die "handshake: " . ($ws->status // '?') . "\n" unless ($ws->status // 0) == 101;

my $n = 0;
sub post {          # -> seq
    my $r = $http->post("http://127.0.0.1:$port1/api/chat/groups/$group/messages", {
        headers => { Authorization => "Bearer $token", 'Content-Type' => 'application/json' },
        content => $json->encode({ content => 'failover ' . ++$n }) });
    die "post: $r->{status}\n" unless $r->{status} == 201;
    return $json->decode($r->{content})->{seq};
}
sub got_seq {       # reads for up to $wait s; true once a seq >= $want came
    my ($want, $wait) = @_;
    my $deadline = Time::HiRes::time() + $wait;
    while ((my $left = $deadline - Time::HiRes::time()) > 0) {
        my $f = $ws->recv_message(timeout => $left) or return 0;
        next unless $f->{type} eq 'text';
        my $e = eval { $json->decode($f->{payload}) } or next;
        return 1 if ($e->{seq} // 0) >= $want;
    }
    return 0;
}
sub until_crossed { # posts every 20 ms until one crosses; seconds, or undef
    my ($t0, $timeout) = @_;
    my $first;
    while (Time::HiRes::time() - $t0 < $timeout) {
        my $s = post();
        $first //= $s;
        return Time::HiRes::time() - $t0 if got_seq($first, 0.02);
    }
    return undef;
}
sub connz {
    my $m = shift;
    my $r = $http->get("http://127.0.0.1:$m/connz?subs=1");
    return $r->{success} ? $json->decode($r->{content}) : {};
}

defined until_crossed(Time::HiRes::time(), 30) or die "no delivery across hosts\n";
my ($victim, $clients);
my $deadline = Time::HiRes::time() + 10;
while (!$victim && Time::HiRes::time() < $deadline) {
    for my $i (0 .. $#nodes) {
        my ($pid, $m) = split /:/, $nodes[$i];
        my $c = connz($m);
        if (grep { grep { $_ eq "chat.g.$group" } @{ $_->{subscriptions_list} // [] } }
                @{ $c->{connections} // [] }) {
            ($victim, $clients) = ($i + 1, $c->{num_connections});
            last;
        }
    }
}
die "no node has the subscription chat.g.$group\n" unless $victim;
my ($pid) = split /:/, $nodes[$victim - 1];
my $t0 = Time::HiRes::time();
kill 'KILL', $pid;
my $took = until_crossed($t0, 60);
die "no delivery across hosts within 60 s of the kill\n" unless defined $took;
printf "{\"node\":%d,\"clients\":%d,\"failover_ms\":%.1f,\"posts\":%d}\n",
    $victim, $clients, $took * 1000, $n;
