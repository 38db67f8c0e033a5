# /dashboard/api/data through nginx, after real traffic, has every key of
# the spec's example response ("API Reference" in dashboard-spec.md) with
# the spec's JSON type, at every depth, in every list element.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::JWT;
use ChatTest::Script;
use ChatTest::Sidecar;
use ChatTest::WebSocket;

no_shuffle();
log_level('info');
no_root_location();

# every request counts as slow (1 ms) and very slow (2 ms), so that the
# slow-request list has elements to check
ChatTest::Sidecar::start(db_refresh => 0.3,
                         args => { 'slow-ms' => 1, 'very-slow-ms' => 2 });

run_tests();

__DATA__

=== TEST 1: every key and type of the spec's example response
--- http_config
chat_mongo_uri "$TEST_NGINX_CHAT_URI";
chat_jwt_secret $TEST_NGINX_JWT_SECRET;
chat_metrics on;
chat_metrics_address $TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;
upstream sidecar { server $TEST_NGINX_SIDECAR; }
--- config
location /api/chat/ { chat_api on; }
location = /missing { return 404; }
location /dashboard {
    auth_basic "Dashboard";
    auth_basic_user_file $TEST_NGINX_HTPASSWD;
    proxy_pass http://sidecar;
    proxy_pass_request_headers off;
    proxy_set_header X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
}
--- request
GET /missing
--- error_code: 404
--- timeout: 30
--- chat_script
use JSON::PP;
use B;

# The spec's example, verbatim but for the two "[...]" lists, whose
# elements the spec describes in words (the request log entries).
my $spec = decode_json(<<'SPEC');
{
  "timestamp": "2025-11-09T12:34:56.789Z",
  "system": {
    "api_status": "running",
    "uptime_seconds": 3600.5,
    "uptime_formatted": "1h 0m 0s",
    "mongodb_status": "connected",
    "mongodb_healthy": true,
    "resources": {
      "process_memory_mb": 256.5,
      "process_memory_percent": 3.2,
      "process_cpu_percent": 12.5,
      "system_memory_percent": 45.3,
      "system_memory_available_mb": 8192.0
    }
  },
  "database": {
    "total_groups": 15,
    "total_messages": 1234,
    "active_messages": 1200,
    "deleted_messages": 34,
    "deletion_rate_percent": 2.75,
    "avg_messages_per_group": 82.27,
    "last_24h": {
      "new_groups": 2,
      "new_messages": 145
    },
    "top_active_groups": [
      {
        "group_id": "507f1f77bcf86cd799439011",
        "group_name": "General",
        "message_count": 456,
        "last_message": "2025-11-09T12:30:00.000Z"
      }
    ]
  },
  "websockets": {
    "total_active_connections": 12,
    "groups_with_connections": 4,
    "connections_per_group": [
      {
        "group_id": "507f1f77bcf86cd799439011",
        "connection_count": 5
      }
    ],
    "recent_events": [
      {
        "timestamp": "2025-11-09T12:34:00.000Z",
        "event_type": "connected",
        "group_id": "507f1f77bcf86cd799439011",
        "user_id": "user-123",
        "connection_count": 5
      }
    ]
  },
  "performance": {
    "total_requests": 5678,
    "total_errors": 23,
    "error_rate_percent": 0.4,
    "average_response_time_ms": 45.6,
    "requests_per_minute": 94.6,
    "slow_requests_count": 3,
    "very_slow_requests_count": 0,
    "recent_slow_requests": [
      {
        "timestamp": "2025-11-09T12:33:00.000Z",
        "endpoint": "/api/chat/groups/123/messages",
        "method": "GET",
        "duration_ms": 1234.5,
        "correlation_id": "abc-123-def-456",
        "very_slow": false
      }
    ]
  },
  "endpoints": [
    {
      "endpoint": "GET /api/chat/groups",
      "request_count": 1234,
      "error_count": 5,
      "error_rate_percent": 0.4,
      "avg_response_time_ms": 23.4
    }
  ],
  "recent_activity": {
    "recent_requests": [
      { "timestamp": "2025-11-09T12:33:00.000Z", "endpoint": "/api/chat/groups",
        "method": "GET", "status_code": 200, "duration_ms": 12.5,
        "correlation_id": "abc-123" }
    ],
    "recent_errors": [
      { "timestamp": "2025-11-09T12:33:00.000Z", "endpoint": "/api/chat/groups",
        "method": "GET", "status_code": 404, "duration_ms": 12.5,
        "correlation_id": "abc-123" }
    ]
  }
}
SPEC

# real traffic filling every list: groups and messages (top groups), a
# deletion, errors, WebSocket connects, requests (all slow at 1 ms)
my $alice = client('alice');
my $g = $alice->post('/api/chat/groups', { name => 'General' })->{json}{id};
my @m = map { $alice->post("/api/chat/groups/$g/messages", { content => "m$_" })->{json}{id} } 1 .. 3;
$alice->delete("/api/chat/groups/$g/messages/$m[0]");
$alice->get('/missing') for 1 .. 2;
my $ws = ChatTest::WebSocket->connect(port => port(),
    path => "/api/chat/ws/$g?token=" . ChatTest::JWT::token('bob'));

my $auth = { Authorization => 'Basic YWRtaW46czNjcmV0' };
my $data;
for (1 .. 60) {
    my $r = client(undef)->get('/dashboard/api/data', headers => $auth);
    $data = $r->{json};
    last if $data
        && @{ $data->{database}{top_active_groups} }
        && @{ $data->{websockets}{connections_per_group} }
        && @{ $data->{performance}{recent_slow_requests} }
        && @{ $data->{recent_activity}{recent_errors} };
    select undef, undef, undef, 0.1;
}
ok $data, 'the JSON through nginx with credentials';

sub json_type {
    my $v = shift;
    return 'null' unless defined $v;
    return 'boolean' if JSON::PP::is_bool($v);
    return 'object' if ref $v eq 'HASH';
    return 'array' if ref $v eq 'ARRAY';
    my $flags = B::svref_2object(\$v)->FLAGS;
    return ($flags & (B::SVp_IOK | B::SVp_NOK) && !($flags & B::SVp_POK))
        ? 'number' : 'string';
}

sub compare {
    my ($want, $got, $path) = @_;
    my ($wt, $gt) = (json_type($want), json_type($got));
    is $gt, $wt, "$path is a $wt";
    return unless $gt eq $wt;
    if ($wt eq 'object') {
        for my $k (sort keys %$want) {
            ok exists $got->{$k}, "$path.$k is present" or next;
            compare($want->{$k}, $got->{$k}, "$path.$k");
        }
    } elsif ($wt eq 'array') {
        ok scalar @$got, "$path has elements to check" or return;
        compare($want->[0], $got->[$_], "$path\[$_]") for 0 .. $#$got;
    }
}

compare($spec, $data, 'data');

# added, not in the spec (issue 14): the host's name and its cluster link;
# without chat_cluster and before any worker names it: the sidecar's host
# name, the link off, every counter 0, no server
my $added = decode_json(<<'ADDED');
{
  "system": { "host": "chat-1" },
  "cluster": {
    "host": "chat-1", "enabled": false, "state": "off",
    "workers_connected": 0, "workers": 0,
    "reconnects": 0, "events_in": 0, "events_out": 0,
    "gaps_filled": 0, "dropped": 0, "last_error": ""
  }
}
ADDED
compare($added, $data, 'data');
is ref $data->{cluster}{servers}, 'ARRAY', 'data.cluster.servers is an array';
is scalar @{ $data->{cluster}{servers} // [] }, 0, 'no server connected to';
is $data->{cluster}{host}, $data->{system}{host}, 'one host name in both places';
like $data->{cluster}{state}, qr/^(off|connected|degraded|disconnected)$/, 'cluster.state is one of four';

like $data->{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'timestamp ISO-8601 UTC with Z';
is $data->{database}{top_active_groups}[0]{group_name}, 'General', 'top group named';
