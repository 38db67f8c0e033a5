# Endpoint names on the dashboard: one rule, "METHOD template", built once
# in the log phase from the request's own method, for every route, HEAD,
# refused methods and unknown routes alike; never a method twice.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Blocks;
use ChatTest::JWT;
use ChatTest::Script;
use ChatTest::Sidecar;

no_shuffle();
log_level('info');
no_root_location();

ChatTest::Sidecar::start(db_refresh => 0.3);

chat_blocks(metrics => 1, config => <<'_EOC_');
location /api/chat/ { chat_api on; }
location = /static { return 200 "static\n"; }
location = /named { chat_metrics_endpoint "custom"; return 200 "named\n"; }
_EOC_

run_tests();

__DATA__

=== TEST 1: HEAD, 405s, unknown routes and custom names: method + template, the method once
--- request
GET /static
--- timeout: 20
--- chat_script
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'names' })->{json}{id};
my $m = $alice->post("/api/chat/groups/$g/messages", { content => 'x' })->{json}{id};

my @calls = (
    [ GET     => '/api/chat/groups',                         200, 'GET /api/chat/groups' ],
    [ HEAD    => '/api/chat/groups',                         200, 'HEAD /api/chat/groups' ],
    [ HEAD    => "/api/chat/groups/$g",                      200, 'HEAD /api/chat/groups/{group_id}' ],
    [ HEAD    => "/api/chat/groups/$g/messages",             200, 'HEAD /api/chat/groups/{group_id}/messages' ],
    [ PUT     => '/api/chat/groups',                         405, 'PUT /api/chat/groups' ],
    [ OPTIONS => '/api/chat/groups',                         405, 'OPTIONS /api/chat/groups' ],
    [ PATCH   => "/api/chat/groups/$g/messages/$m",          405, 'PATCH /api/chat/groups/{group_id}/messages/{message_id}' ],
    [ POST    => "/api/chat/ws/$g",                          405, 'POST /api/chat/ws/{group_id}' ],
    [ GET     => '/api/chat/nowhere',                        404, 'GET /api/chat/{unknown}' ],
    [ DELETE  => '/api/chat/nowhere/at/all',                 404, 'DELETE /api/chat/{unknown}' ],
    [ GET     => '/named',                                   200, 'GET custom' ],
);

for my $c (@calls) {
    my $r = $alice->request($c->[0], $c->[1]);
    is $r->{status}, $c->[2], "$c->[0] $c->[1]: $c->[2]";
}

my %want = map { $_->[3] => 1 } @calls;
my $d = ChatTest::Sidecar::wait_for(sub {
    my %e = map { $_->{endpoint} => 1 } @{ $_[0]{endpoints} };
    !grep { !$e{$_} } keys %want }, 10);
my %rows = map { $_->{endpoint} => $_ } @{ $d->{endpoints} };

ok $rows{$_}, "a row \"$_\"" for sort keys %want;

is $rows{'HEAD /api/chat/groups'}{request_count}, 1, 'HEAD has a row of its own';
is $rows{'PUT /api/chat/groups'}{error_count}, 1, 'the 405 counts as an error of its row';

for my $e (sort keys %rows) {
    unlike $e, qr/^[A-Z]+ (?:[A-Z]+|\*) /, "\"$e\": one method, then the name";
}

my @recent = grep { $_->{endpoint} =~ m{^/api/chat/} } @{ $d->{recent_activity}{recent_requests} // [] };
for my $r (@recent) {
    unlike $r->{endpoint}, qr/^(?:GET|OTHER|\*) /, "recent request $r->{method} $r->{endpoint}: a bare path";
}



=== TEST 2: errors nginx makes itself on the API are named like the API's: method + template
--- request
GET /static
--- timeout: 20
--- chat_script
use IO::Socket::INET;
my $tok = ChatTest::JWT::token('alice');
my $big = '{"name":"' . ('x' x 30000) . '"}';
my @raw = (
    [ "TRACE /api/chat/groups HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 'TRACE /api/chat/groups' ],
    [ "GET /api/chat/groups%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 'GET /api/chat/{unknown}' ],
    [ "POST /api/chat/groups HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer $tok\r\n"
      . "Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n", 'POST /api/chat/groups' ],
);
for my $c (@raw) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => port()) or die "connect: $!";
    print $s $c->[0];
    my $line = <$s>;
    like $line // '', qr{^HTTP/1\.1 (?:405|400|413) }, "$c->[1]: refused by nginx";
    close $s;
}
my %want = map { $_->[1] => 1 } @raw;
my $d = ChatTest::Sidecar::wait_for(sub {
    my %e = map { $_->{endpoint} => 1 } @{ $_[0]{endpoints} };
    !grep { !$e{$_} } keys %want }, 10);
my %rows = map { $_->{endpoint} => $_ } @{ $d->{endpoints} };
ok $rows{$_} && $rows{$_}{error_count} >= 1, "a row \"$_\" with its error" for sort keys %want;
ok !(grep { m{ /api/chat/$| \(unmatched\)$} } keys %rows), 'no row named after the location or "(unmatched)"'
    or diag join ', ', sort keys %rows;
