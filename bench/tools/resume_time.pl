#!/usr/bin/perl
# bench/tools/resume_time.pl PORT TOKEN GROUP SINCE LAST ROUNDS - the time
# from the start of a WebSocket handshake with since=SINCE to the frame of
# seq LAST (the last replayed event), ROUNDS times, one after another.
# Prints {"rounds":N,"events":LAST-SINCE,"p50_ms":..,"p90_ms":..,"max_ms":..}.
# The client is the test suite's (t/lib/ChatTest/WebSocket.pm).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../t/lib";
use JSON::PP ();
use Time::HiRes ();
use ChatTest::WebSocket;

my ($port, $token, $group, $since, $last, $rounds) = @ARGV;
die "usage: $0 PORT TOKEN GROUP SINCE LAST ROUNDS\n" unless $rounds;
my $json = JSON::PP->new;
my @ms;
for (1 .. $rounds) {
    my $t0 = Time::HiRes::time();
    my $ws = ChatTest::WebSocket->connect(port => $port, timeout => 10,
        path => "/api/chat/ws/$group?token=$token&since=$since");
    die "handshake: " . ($ws->status // '?') . "\n" unless ($ws->status // 0) == 101;
    my $seen = 0;
    while (my $f = $ws->recv_message(timeout => 10)) {
        next unless $f->{type} eq 'text';
        my $e = $json->decode($f->{payload});
        $seen++ if defined $e->{seq};
        last if ($e->{seq} // 0) >= $last;
    }
    my $dt = (Time::HiRes::time() - $t0) * 1000;
    die "round $_: $seen events, not up to seq $last\n" unless $seen == $last - $since;
    push @ms, $dt;
    $ws->disconnect;
}
@ms = sort { $a <=> $b } @ms;
my $at = sub { $ms[int($_[0] * $#ms + 0.5)] };
printf "{\"rounds\":%d,\"events\":%d,\"p50_ms\":%.1f,\"p90_ms\":%.1f,\"max_ms\":%.1f}\n",
    scalar @ms, $last - $since, $at->(0.5), $at->(0.9), $ms[-1];
