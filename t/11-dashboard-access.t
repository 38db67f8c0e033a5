# Who reaches the dashboard, and with what headers.  The dashboard's
# locations, upstream and audit log_format are taken from
# nginx.conf.example itself (placeholders filled as scripts/run.sh does),
# so these tests check the configuration users deploy:
#   - any header a browser or a proxy may send (UTF-8, HTAB, ESC, \x01)
#     is answered on /dashboard, /dashboard/api/data and /metrics, through
#     nginx and straight to the sidecar; a NUL gets a 400 with a reason;
#   - the sidecar answers only nginx: a local process without the key gets
#     403 and a log line;
#   - the audit log records address, user and user agent;
#   - machines' credential (chat_bearer_token_file): the token admits to
#     /metrics and /dashboard/api/data without a password, a wrong or
#     missing one gets 401, the page itself still wants the password.
use Test::Nginx::Socket 'no_plan';
use ChatTest::Env;
use ChatTest::Script;
use ChatTest::Sidecar;
use File::Spec;
use File::Temp qw(tempdir);
use MIME::Base64 ();

no_shuffle();
log_level('info');
no_root_location();

ChatTest::Sidecar::start(db_refresh => 1);

# the machines' token file, as scripts/run.sh makes it (64 hex digits)
our $TOKEN = unpack 'H*', join '', map { chr int rand 256 } 1 .. 32;
my $token_dir = tempdir('chat-t11-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $token_file = "$token_dir/scrape-token";
{
    open my $f, '>', $token_file or die $!;
    print $f "$TOKEN\n";
    close $f;
    chmod 0600, $token_file;
}

# the example's pieces, as make run deploys them
my $example = do {
    open my $f, '<', "$ENV{TEST_NGINX_ROOT}/nginx.conf.example" or die $!;
    local $/;
    <$f>;
};
sub piece {
    my $re = shift;
    my ($p) = $example =~ $re or die "nginx.conf.example: no match for $re";
    return $p;
}
my $log_format = piece(qr/^\s*(log_format\s+dashboard_audit\b.*?;)/ms);
my $locations = join "\n",
    map { piece(qr/^(\s*location\s+\Q$_\E\s*\{.*?^\s*\})/ms) }
        ('/dashboard', '= /dashboard/api/data', '= /metrics', '= /sidecar/health');
for ($locations) {
    s/\@HTPASSWD\@/$ENV{TEST_NGINX_HTPASSWD}/g;
    s/\@SCRAPE_TOKEN_FILE\@/$token_file/g;
    s/\@PREFIX\@\/logs/logs/g;
    s/\@SIDECAR_KEY\@/$ENV{TEST_NGINX_SIDECAR_KEY}/g;
    s/\@\w+\@/UNFILLED/g;
}
$ENV{TEST_NGINX_EXAMPLE_LOCATIONS} = $locations;

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value(http_config => <<_EOC_ . ($block->http_config // ''));
chat_mongo_uri "\$TEST_NGINX_CHAT_URI";
chat_jwt_secret \$TEST_NGINX_JWT_SECRET;
chat_metrics on;
chat_metrics_address \$TEST_NGINX_IPC;
chat_metrics_flush_interval 50ms;
$log_format
upstream chat_sidecar {
    server \$TEST_NGINX_SIDECAR;
    keepalive 4;
}
_EOC_

    $block->set_value(config => <<_EOC_) unless defined $block->config;
location = /t { return 200 "ok\\n"; }
$locations
_EOC_

    $block->set_value(request => "GET /t\n") unless defined $block->request;
});

# one request on its own connection, bytes as given: (status, head, body);
# status 0 is "closed without an answer"
sub raw_get {
    my ($port, $path, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5) or die "connect $port: $!";
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n",
             (map { "$_\r\n" } @headers), "Connection: close\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $r, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d{3})};
    return ($status // 0, $head // '', $body // '');
}

our $BASIC = 'Authorization: Basic YWRtaW46czNjcmV0';     # admin:s3cret
our @ODD = ("User-Agent: caf\xc3\xa9", "User-Agent: a\tb", "User-Agent: a\x1bb",
            "User-Agent: a\x01b", "X-Forwarded-For: \xff\x80, 10.0.0.1");

sub printable { my $s = shift; $s =~ s/([^\x21-\x7e ])/sprintf '\\x%02x', ord $1/ge; $s }

run_tests();

__DATA__

=== TEST 1: through nginx (nginx.conf.example), a UTF-8 user agent, a tab, ESC, \x01 or obs-text in a header are answered on the dashboard, its JSON and /metrics
--- chat_script
for my $h (@main::ODD) {
    for my $p ('/dashboard', '/dashboard/api/data', '/metrics') {
        my ($st) = main::raw_get(port(), $p, $main::BASIC, $h);
        is $st, 200, "$p with " . main::printable($h);
    }
}
my ($st, undef, $body) = main::raw_get(port(), '/sidecar/health', "User-Agent: caf\xc3\xa9");
is $st, 200, '/sidecar/health with a UTF-8 user agent';
like $body, qr/"status":"ok"/, 'the health JSON';
--- no_error_log
upstream prematurely closed



=== TEST 2: a location that passes every client header: the sidecar itself takes them
--- config
location = /t { return 200 "ok\n"; }
location /dashboard {
    proxy_pass http://chat_sidecar;
    proxy_set_header X-Sidecar-Key $TEST_NGINX_SIDECAR_KEY;
}
--- chat_script
for my $h (@main::ODD) {
    my ($st) = main::raw_get(port(), '/dashboard/api/data', $h);
    is $st, 200, 'passed on: ' . main::printable($h);
}
--- no_error_log
upstream prematurely closed



=== TEST 3: straight to the sidecar, with the key: odd header bytes are answered; a NUL, a bare CR or line folding get a 400 that says why
--- chat_script
my $port = $ENV{TEST_NGINX_SIDECAR_PORT};
my $key = "X-Sidecar-Key: $ENV{TEST_NGINX_SIDECAR_KEY}";
for my $h (@main::ODD) {
    for my $p ('/health', '/dashboard/api/data', '/metrics') {
        my ($st) = main::raw_get($port, $p, $key, $h);
        is $st, 200, "$p with " . main::printable($h);
    }
}
my @bad = (["X-A: a\x00b", qr/header line \d+: a NUL byte/],
           ["X-A: a\rb", qr/a CR not followed by LF/],
           ["X-A: a\r\n folded", qr/obsolete line folding/],
           ["X A: b", qr/invalid byte in the field name/]);
for (@bad) {
    my ($h, $why) = @$_;
    my ($st, undef, $body) = main::raw_get($port, '/health', $key, $h);
    is $st, 400, '400 for ' . main::printable($h);
    like $body, $why, 'with the reason';
}



=== TEST 4: the sidecar answers only nginx: a local process without the key, or with a wrong one, gets 403 on every route, and each refusal is logged
--- chat_script
my $port = $ENV{TEST_NGINX_SIDECAR_PORT};
my $st;
for my $p ('/health', '/dashboard', '/dashboard/', '/dashboard/api/data', '/metrics') {
    ($st, undef, my $body) = main::raw_get($port, $p);
    is $st, 403, "$p without the key: 403";
    like $body, qr/answers nginx only/, 'says why';
    unlike $body, qr/"timestamp"|chat_http|<html/i, 'and nothing else';
    ($st) = main::raw_get($port, $p, 'X-Sidecar-Key: ' . reverse $ENV{TEST_NGINX_SIDECAR_KEY});
    is $st, 403, "$p with a wrong key: 403";
    ($st) = main::raw_get($port, $p, 'X-Sidecar-Key: ' . $ENV{TEST_NGINX_SIDECAR_KEY} . 'x');
    is $st, 403, "$p with the key and more: 403";
}
($st) = main::raw_get($port, '/metrics', "Authorization: Bearer $ENV{TEST_NGINX_SIDECAR_KEY}");
is $st, 200, 'a scraper may send the key as a bearer token';
($st) = main::raw_get($port, '/metrics', "Authorization: Bearer x$ENV{TEST_NGINX_SIDECAR_KEY}");
is $st, 403, 'not another one';
my $r = ChatTest::Sidecar::get('/dashboard/api/data', without_key => 1);
is $r->{status}, 403, 'the test helper, without the key: 403 too';
like ChatTest::Sidecar::log_text(), qr/\[warn\] chat-sidecar: http: refused GET \/health: no X-Sidecar-Key \(1 refused so far\)/,
     'a refusal is logged';
like ChatTest::Sidecar::log_text(), qr/http: refused GET \/health: wrong X-Sidecar-Key/,
     'a wrong key too';
($st) = main::raw_get(port(), '/dashboard/api/data', $main::BASIC, 'X-Sidecar-Key: forged');
is $st, 200, 'through nginx a client cannot replace the key';



=== TEST 5: the dashboard audit log (nginx.conf.example's format): client address, user and user agent of each access, refused ones included
--- chat_script
use Time::HiRes qw(sleep time);
my $ua = "audit-$$ caf\xc3\xa9";
main::raw_get(port(), '/dashboard/api/data', $main::BASIC, "User-Agent: $ua");
main::raw_get(port(), '/metrics', 'Authorization: Basic YWRtaW46d3Jvbmc=', "User-Agent: $ua-bad");
my $file = File::Spec->catfile(Test::Nginx::Socket::server_root(), 'logs', 'dashboard-audit.log');
my $log = '';
for (my $end = time + 5; time < $end; sleep 0.05) {
    $log = do { open my $f, '<', $file; local $/; <$f> } // '';
    last if $log =~ /audit-$$ caf\S*-bad/;
}
my ($ok) = grep { /audit-$$ caf\S*"/ && !/-bad"/ } split /\n/, $log;
ok $ok, 'the access is in dashboard-audit.log' or diag $log;
like $ok, qr/\bclient=127\.0\.0\.1 /, 'the client address';
like $ok, qr/\buser="admin" /, 'the authenticated user';
like $ok, qr/"GET \/dashboard\/api\/data HTTP\/1\.1" 200 /, 'request and status';
(my $logged = $ua) =~ s/([\x80-\xff])/sprintf '\\x%02X', ord $1/ge;   # nginx's escaping
like $ok, qr/ ua="\Q$logged\E" /, 'the user agent, as sent (escaped by nginx)';
my ($bad) = grep { /-bad"/ } split /\n/, $log;
like $bad, qr/\bclient=127\.0\.0\.1 user="admin" "GET \/metrics HTTP\/1\.1" 401 /,
     'a wrong password: logged with the user it claimed and 401';




=== TEST 6: machines' credential (nginx.conf.example, chat_bearer_token_file with satisfy any): the token admits to /metrics and the JSON without a password; a wrong, longer, empty or missing one, or a wrong password, gets 401 with the Basic challenge; the page itself wants the password
--- chat_script
my $tok = $main::TOKEN;
(my $wrong = $tok) =~ s/.$/$& eq '0' ? '1' : '0'/e;
for my $p ('/dashboard/api/data', '/metrics') {
    my ($st, $head, $body) = main::raw_get(port(), $p, "Authorization: Bearer $tok");
    is $st, 200, "$p with the token: 200";
    like $body, $p eq '/metrics' ? qr/^# (HELP|TYPE) chat_/m : qr/"timestamp"/,
         '... and the sidecar\'s answer';
    ($st) = main::raw_get(port(), $p, "Authorization: bearer  $tok ");
    is $st, 200, "$p: the scheme in any case, blanks around the token: 200";
    ($st) = main::raw_get(port(), $p, $main::BASIC);
    is $st, 200, "$p with the password (people): 200";
    for (["a wrong token (last digit changed)", "Authorization: Bearer $wrong"],
         ["the token and more", "Authorization: Bearer ${tok}0"],
         ["the token cut short", "Authorization: Bearer " . substr($tok, 1)],
         ["an empty token", "Authorization: Bearer "],
         ["the sidecar's key as the token", "Authorization: Bearer $ENV{TEST_NGINX_SIDECAR_KEY}"],
         ["a wrong password", 'Authorization: Basic YWRtaW46d3Jvbmc='],
         ["the token as a password", 'Authorization: Basic '
             . MIME::Base64::encode_base64("admin:$tok", '')],
         ["no credential", ()]) {
        my ($what, @h) = @$_;
        ($st, $head, $body) = main::raw_get(port(), $p, @h);
        is $st, 401, "$p with $what: 401";
        like $head, qr/^WWW-Authenticate: Basic realm="Dashboard"/mi, '... with the Basic challenge';
        unlike $body, qr/"timestamp"|chat_http/, '... and nothing of the sidecar\'s';
    }
}
my ($st) = main::raw_get(port(), '/dashboard', "Authorization: Bearer $tok");
is $st, 401, 'the dashboard page with the token: 401 (people sign in with the password)';
($st) = main::raw_get(port(), '/dashboard', $main::BASIC);
is $st, 200, '... and with the password: 200';
--- error_log
chat: the bearer token does not match chat_bearer_token_file
--- no_error_log
[alert]
upstream prematurely closed
