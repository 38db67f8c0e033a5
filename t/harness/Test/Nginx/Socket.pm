package Test::Nginx::Socket;

# Bundled, clean-room, format-compatible stand-in for openresty's
# Test::Nginx::Socket, written from its public documentation (POD) and
# Test::Base's.  It supports the subset of sections listed in
# t/harness/README.md, with the same number of checks per section, so a
# .t file (numeric plan included) runs unchanged under either harness.
#
#   use Test::Nginx::Socket 'no_plan';
#   run_tests();
#   __DATA__
#   === TEST 1: hello
#   --- config
#       location = /t { return 200 "hi\n"; }
#   --- request
#   GET /t
#   --- response_body
#   hi

use strict;
use warnings;

use Test::Base -base;

use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select ();
use IO::Socket::INET ();
use List::Util ();
use Time::HiRes qw(sleep time);

use Test::Nginx::Util qw(
    :DEFAULT
    $NoShuffle $NoLongString $CheckAccumErrorLog @BlockPreprocessors
    parse_duration expand_env_vars prepare_servroot write_user_files
    write_nginx_conf start_nginx stop_nginx nginx_version
    wait_until_listening wait_for_exit error_log_size read_error_log
    fatal_log_lines ensure_server_port_free
);

our $VERSION = '0.01_bundled';

our @EXPORT = qw(
    run_tests is_str add_response_body_check
    repeat_each no_shuffle no_long_string master_on master_off workers
    log_level env_to_nginx worker_connections no_root_location
    check_accum_error_log add_block_preprocessor add_cleanup_handler
    bail_out server_port server_port_for_client server_root html_dir
);

# Old-style plans read $Test::Nginx::Socket::RepeatEach directly.
our $RepeatEach;
*RepeatEach = \$Test::Nginx::Util::RepeatEach;

our @ResponseBodyChecks;

sub add_response_body_check { push @ResponseBodyChecks, @_ }

my $DefaultTimeout = parse_duration($ENV{TEST_NGINX_TIMEOUT}, 3);
my $StartupTimeout = parse_duration($ENV{TEST_NGINX_STARTUP_TIMEOUT}, 10);

# error_log patterns may show up a little after the response (log phase,
# timers): positive patterns are polled for this long before failing.
my $LogSettleTime = 0.5;

# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

sub run_tests {
    my @blocks = Test::Base::blocks();
    @blocks = List::Util::shuffle(@blocks) unless $NoShuffle;

    # A block without "--- config" reuses the previous one (documented
    # upstream; meant for no_shuffle() files).
    my $last_config;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        if (defined $block->config) {
            $last_config = $block->config;
        } elsif (defined $last_config) {
            $block->set_value(config => $last_config);
        }
        run_block($block);
    }
    stop_nginx();
}

sub run_block {
    my $block = shift;
    my $name  = $block->name;

    my $skip = subtests_to_skip($block);
    if ($skip) {
        for my $rep (1 .. $RepeatEach) {
            SKIP: { skip "$name - $skip->{why}", $skip->{count} }
        }
        return;
    }

    my $exchanges = build_exchanges($block);
    if (!@$exchanges && !defined $block->must_die) {
        fail("$name - no request, raw_request or pipelined_requests section");
        return;
    }

    prepare_servroot();
    write_user_files($block->user_files);
    if (my $busy = ensure_server_port_free()) {
        report_startup_failure($block, $exchanges, $busy);
        return;
    }
    write_nginx_conf(
        map({ $_ => expand_env_vars(scalar $block->$_, $_) }
            qw(main_config post_main_config http_config config)),
        log_level   => scalar $block->log_level,
        server_name => scalar $block->server_name,
    );
    run_init_code($block);

    if (defined $block->must_die) {
        run_must_die_block($block);
        return;
    }

    start_nginx();
    my $state = wait_until_listening($StartupTimeout);
    if ($state ne 'ready') {
        my $why = $state eq 'timeout'
            ? "nginx did not listen on port " . server_port()
              . " within ${StartupTimeout}s"
            : "nginx failed to start";
        report_startup_failure($block, $exchanges, $why);
        stop_nginx();
        return;
    }

    for my $rep (0 .. $RepeatEach - 1) {
        my $log_offset = ($rep == 0 || $CheckAccumErrorLog)
            ? 0 : error_log_size();
        run_exchanges($block, $exchanges, $rep);
        sleep parse_duration($block->wait, 0) if defined $block->wait;
        check_error_logs($block, $log_offset, $rep);
    }

    if (defined(my $ended = stop_nginx())) {
        fail("$name - nginx exited by itself during the test ($ended)");
        diag($_) for fatal_log_lines();
    }
}

# With nginx down every check that would have run fails (so the plan
# still adds up); the first failure carries the [emerg] lines.
sub report_startup_failure {
    my ($block, $exchanges, $why) = @_;
    my $name   = $block->name;
    my @fatal  = fatal_log_lines();
    my $reason = join "\n", $why, @fatal;
    for my $rep (0 .. $RepeatEach - 1) {
        if (defined $block->must_die) {
            fail("$name - $reason");
        } elsif (defined $block->ignore_response) {
            # no response checks to carry the failure: report it once
            fail("$name - $reason") if $rep == 0;
        } else {
            my $idx = 0;
            for my $exchange (@$exchanges) {
                for (@{ $exchange->{methods} }) {
                    my $dead = { error => $idx == 0 ? $reason : undef };
                    check_response($block, $dead, $idx++, $rep, $why);
                }
            }
        }
        check_error_logs($block, 0, $rep);
        $reason = $why;
    }
}

sub run_init_code {
    my $block = shift;
    my $code = $block->init;
    return unless defined $code;
    my $ok = eval "package main; no strict; $code; 1";
    bail_out($block->name . " - --- init failed: $@") unless $ok;
}

# ---------------------------------------------------------------------------
# must_die: nginx has to refuse to start; 1 check + the error_log checks
# ---------------------------------------------------------------------------

sub run_must_die_block {
    my $block = shift;
    my $name  = $block->name;
    (my $expected = $block->must_die) =~ s/^\s+|\s+$//g;

    for my $rep (0 .. $RepeatEach - 1) {
        my $log_offset = error_log_size();
        start_nginx();
        my $exit = wait_for_exit($StartupTimeout);
        my $tag  = "(req $rep)";
        if (!defined $exit) {
            fail("$name - nginx should have died but it is still running $tag");
            stop_nginx();
        } elsif ($expected =~ /^\d+$/) {
            is($exit, $expected, "$name - nginx died with exit code $expected $tag");
        } else {
            pass("$name - nginx died as expected (exit $exit) $tag");
        }
        check_error_logs($block, $CheckAccumErrorLog ? 0 : $log_offset, $rep);
    }
}

# ---------------------------------------------------------------------------
# skip_eval / skip_nginx: "N: condition"
# ---------------------------------------------------------------------------

sub subtests_to_skip {
    my $block = shift;
    if (defined(my $spec = $block->skip_eval)) {
        my ($count, $code) = $spec =~ /^\s*(\d+)\s*:\s*(.*?)\s*$/s
            or bail_out($block->name . " - bad skip_eval: $spec");
        my $skip = eval "package main; no strict; $code";
        bail_out($block->name . " - skip_eval failed: $@") if $@;
        return { count => $count, why => "skip_eval: $code" } if $skip;
    }
    if (defined(my $spec = $block->skip_nginx)) {
        my ($count, $op, $want) = $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\S+)\s*$/
            or bail_out($block->name . " - bad skip_nginx: $spec");
        my $cmp = compare_versions(nginx_version() // '0', $want);
        my $skip = $op eq '<'  ? $cmp < 0  : $op eq '<=' ? $cmp <= 0
                 : $op eq '>'  ? $cmp > 0  : $cmp >= 0;
        return { count => $count, why => "nginx version $op $want" } if $skip;
    }
    return undef;
}

sub compare_versions {
    my @a = split /\./, shift;
    my @b = split /\./, shift;
    while (@a || @b) {
        my $c = (shift(@a) // 0) <=> (shift(@b) // 0);
        return $c if $c;
    }
    return 0;
}

# ---------------------------------------------------------------------------
# Requests: every block becomes a list of "exchanges", one per connection:
#   { packets => [{ data, delay }...], methods => [...], linger => bool }
# ---------------------------------------------------------------------------

sub build_exchanges {
    my $block = shift;
    if (defined(my $raw = $block->raw_request)) {
        return [ raw_exchange($block, $raw) ];
    }
    if (defined(my $pipelined = $block->pipelined_requests)) {
        return [ pipelined_exchange($block, $pipelined) ];
    }
    my $request = $block->request;
    return [] unless defined $request;
    my @specs = ref $request eq 'ARRAY' ? @$request : ($request);
    my $idx = 0;
    return [ map { request_exchange($block, $_, $idx++) } @specs ];
}

sub request_exchange {
    my ($block, $spec, $idx) = @_;
    my $req = build_request($block, $spec, $idx, 'close');
    return {
        packets => $req->{packets},
        methods => [ $req->{method} ],
        # We asked for "Connection: close": reading on to the EOF means
        # nginx also finished the request's log phase.
        linger  => $req->{closes},
    };
}

sub pipelined_exchange {
    my ($block, $specs) = @_;
    $specs = [$specs] unless ref $specs eq 'ARRAY';
    my (@methods, $data, $closes);
    for my $idx (0 .. $#$specs) {
        my $last = $idx == $#$specs;
        my $req = build_request($block, $specs->[$idx], $idx,
                                $last ? 'close' : 'keep-alive');
        push @methods, $req->{method};
        $data .= join '', map { $_->{data} } @{ $req->{packets} };
        $closes = $req->{closes} if $last;
    }
    return {
        packets => [ { data => $data, delay => 0 } ],
        methods => \@methods,
        linger  => $closes,
    };
}

sub raw_exchange {
    my ($block, $raw) = @_;
    my $delay = parse_duration($block->raw_request_middle_delay, 0);
    my @parts = ref $raw eq 'ARRAY' ? @$raw : ($raw);
    my @packets = map {
        my $part = $_;
        ref $part eq 'HASH'
            ? { data => bytes_of($part->{value}),
                delay => parse_duration($part->{delay_before}, $delay) }
            : { data => bytes_of($part), delay => $delay };
    } @parts;
    $packets[0]{delay} = 0;
    my $all = join '', map { $_->{data} } @packets;
    my ($method) = $all =~ /^\s*(\S+)/;
    return {
        packets => \@packets,
        methods => [ $method // 'GET' ],
        linger  => $all =~ /^Connection:[ \t]*close\r?$/mi ? 1 : 0,
    };
}

sub bytes_of {
    my $s = shift // '';
    utf8::encode($s) if utf8::is_utf8($s);
    return $s;
}

sub more_header_lines {
    my ($block, $idx) = @_;
    my $more = $block->more_headers;
    $more = $more->[$idx] if ref $more eq 'ARRAY';
    return () unless defined $more;
    return grep { length } map { s/^\s+|\s+$//gr } split /\n/, $more;
}

# One request from "--- request" text (or an array of packet parts, each a
# string or { value, delay_before }): "METHOD URI [HTTP/x.y]" then body.
sub build_request {
    my ($block, $spec, $idx, $connection) = @_;
    my @parts = ref $spec eq 'ARRAY' ? @$spec : ($spec);
    my @values = map { bytes_of(ref $_ eq 'HASH' ? $_->{value} : $_) } @parts;

    my $text = join '', @values;
    $text =~ s/\A(?:[ \t]*(?:#[^\n]*)?\n)+//;    # leading comments/blanks
    $text =~ s/\A\s+//;
    my ($line, $body) = split /\n/, $text, 2;
    $line =~ s/\r\z//;
    $body //= '';
    my $chomped = $body =~ s/(?<!\r)\n\z//;     # the section's own newline

    my ($method, $rest) = split ' ', $line, 2;
    $rest //= '';
    my $proto = $rest =~ s/\s+(HTTP\/\d+\.\d+)\s*\z// ? $1 : 'HTTP/1.1';
    my $uri = $rest =~ /\S/ ? $rest =~ s/^\s+|\s+$//gr : '/';

    my @more = more_header_lines($block, $idx);
    my %given = map { /^([^:]+?)\s*:/ ? (lc $1 => $_) : () } @more;
    my @headers;
    my $host = ($block->server_name // 'localhost') =~ s/^\s+|\s+$//gr;
    push @headers, "Host: $host" unless $given{host};
    push @headers, "Connection: $connection" unless $given{connection};
    push @headers, @more;
    if (!$given{'content-length'} && !$given{'transfer-encoding'}
        && (length $body || $method =~ /^(?:POST|PUT|PATCH)$/)) {
        push @headers, 'Content-Length: ' . length $body;
    }
    my $head = "$method $uri $proto\r\n" . join('', map { "$_\r\n" } @headers)
        . "\r\n";

    my $closes = $given{connection}
        ? $given{connection} =~ /:\s*close\s*$/i : $connection eq 'close';
    return {
        method  => $method,
        closes  => $closes,
        packets => split_into_packets($block, $head, $body, \@parts, \@values,
                                      $chomped),
    };
}

# Parts after the first one are pieces of the body: they are cut from the
# end of the request so each goes out in its own write.
sub split_into_packets {
    my ($block, $head, $body, $parts, $values, $chomped) = @_;
    my $raw = $head . $body;
    return [ { data => $raw, delay => 0 } ] if @$parts == 1;

    my $default_delay = parse_duration($block->raw_request_middle_delay, 0);
    my @cuts;
    my $pos = length $raw;
    for my $i (reverse 1 .. $#$parts) {
        my $size = length $values->[$i];
        $size-- if $chomped && $i == $#$parts && $size;
        $pos -= $size;
        $pos = length $head if $pos < length $head;
        my $delay = ref $parts->[$i] eq 'HASH'
            ? parse_duration($parts->[$i]{delay_before}, $default_delay)
            : $default_delay;
        unshift @cuts, [ $pos, $delay ];
    }
    my @packets;
    my ($start, $delay) = (0, 0);
    for my $cut (@cuts, [ length $raw, 0 ]) {
        push @packets, { data => substr($raw, $start, $cut->[0] - $start),
                         delay => $delay };
        ($start, $delay) = @$cut;
    }
    return \@packets;
}

# ---------------------------------------------------------------------------
# Client: one connection per exchange, select()-based idle timeouts
# ---------------------------------------------------------------------------

sub run_exchanges {
    my ($block, $exchanges, $rep) = @_;
    my $name    = $block->name;
    my $timeout = parse_duration($block->timeout, $DefaultTimeout);
    my $idx = 0;
    for my $exchange (@$exchanges) {
        my $result = talk_to_nginx($exchange, $timeout);
        if ($result->{timed_out} && !defined $block->abort) {
            fail("ERROR: client socket timed out - $name");
        }
        next if defined $block->ignore_response;
        for my $i (0 .. $#{ $exchange->{methods} }) {
            my $res = $result->{responses}[$i]
                // { error => $result->{error} // 'no response received' };
            check_response($block, $res, $idx++, $rep, '');
        }
    }
}

sub talk_to_nginx {
    my ($exchange, $timeout) = @_;
    my $port = server_port_for_client();
    my %result = (responses => []);
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => $timeout,
    );
    unless ($sock) {
        $result{error} = "cannot connect to 127.0.0.1:$port: $!";
        return \%result;
    }
    binmode $sock;
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';

    for my $packet (@{ $exchange->{packets} }) {
        sleep $packet->{delay} if $packet->{delay};
        my $err = write_all($sock, $packet->{data}, $timeout);
        next unless $err;
        # nginx may answer (e.g. 413) and close before reading all: go on
        # reading what it said.
        $result{timed_out} = 1 if $err eq 'timeout';
        last;
    }

    my ($buf, $eof) = ('', 0);
    while (1) {
        my $parsed = parse_responses($buf, $eof, $exchange->{methods});
        $result{responses} = $parsed->{responses};
        last if $eof;
        last if $parsed->{complete} && !$exchange->{linger};
        my $n = read_some($sock, \$buf, $timeout);
        if (!defined $n) {
            # Idle timeout: only a failure while a response is incomplete.
            $result{timed_out} = 1 unless $parsed->{complete};
            $result{responses} =
                parse_responses($buf, 1, $exchange->{methods})->{responses};
            last;
        }
        $eof = 1 if $n == 0;
    }
    close $sock;
    return \%result;
}

# Returns undef on success, 'timeout' or an error text.
sub write_all {
    my ($sock, $data, $timeout) = @_;
    my $sel = IO::Select->new($sock);
    while (length $data) {
        return 'timeout' unless $sel->can_write($timeout);
        my $n = syswrite $sock, $data;
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            return "write failed: $!";
        }
        substr $data, 0, $n, '';
    }
    return undef;
}

# Appends to $$buf; returns bytes read, 0 on EOF, undef on timeout.
sub read_some {
    my ($sock, $buf, $timeout) = @_;
    my $sel = IO::Select->new($sock);
    while (1) {
        return undef unless $sel->can_read($timeout);
        my $n = sysread $sock, $$buf, 65536, length $$buf;
        return $n if defined $n;
        next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
        return 0;    # ECONNRESET and friends: treat as the end
    }
}

# ---------------------------------------------------------------------------
# HTTP/1.x response parsing
# ---------------------------------------------------------------------------

# Parses as many responses as requests were sent, in order.
sub parse_responses {
    my ($buf, $eof, $methods) = @_;
    my @responses;
    my $complete = 1;
    for my $method (@$methods) {
        my ($res, $used) = parse_one_response($buf, $eof, $method);
        if (!$res) { $complete = 0; last }
        push @responses, $res;
        if (!$res->{complete}) { $complete = 0; last }
        substr $buf, 0, $used, '';
    }
    return { responses => \@responses, complete => $complete };
}

my $StatusLine = qr{(HTTP/\d+\.\d+)[ \t]+(\d{3})[^\r\n]*\r?\n};
my $HeaderLines = qr{((?:[^\r\n]+\r?\n)*)\r?\n};

# Returns (response, bytes used), or () while the header is incomplete.
sub parse_one_response {
    my ($buf, $eof, $method) = @_;
    my $used = 0;
    while (1) {
        my $rest = substr $buf, $used;
        if ($rest !~ /\A($StatusLine$HeaderLines)/) {
            return () unless $eof;
            return ({ error => length $rest
                          ? "malformed or truncated response: "
                            . substr($rest, 0, 200)
                          : 'connection closed without a response',
                      complete => 0, body => undef }, length $buf);
        }
        my ($head, $proto, $status, $header_text) = ($1, $2, $3, $4);
        $used += length $head;
        # Skip interim responses such as "100 Continue"
        next if $status =~ /^1/ && $status != 101;

        my $res = {
            proto       => $proto,
            status      => $status,
            raw_headers => $head,
            headers     => parse_header_lines($header_text),
        };
        my ($body, $body_len, $complete) =
            extract_body($res, substr($buf, $used), $eof, $method);
        $res->{body}     = $body;
        $res->{complete} = $complete;
        return ($res, $used + $body_len);
    }
}

sub parse_header_lines {
    my $text = shift;
    my %headers;
    for my $line (split /\r?\n/, $text) {
        next unless $line =~ /^([^:]+?)[ \t]*:[ \t]*(.*?)[ \t]*$/;
        push @{ $headers{lc $1} }, $2;
    }
    return \%headers;
}

sub header_value {
    my ($res, $name) = @_;
    my $values = $res->{headers} && $res->{headers}{lc $name};
    return $values ? join(', ', @$values) : undef;
}

# Returns (decoded body, bytes consumed, complete?)
sub extract_body {
    my ($res, $data, $eof, $method) = @_;
    my $status = $res->{status};
    if ($method eq 'HEAD' || $status == 204 || $status == 304) {
        return ('', 0, 1);
    }
    my $te = header_value($res, 'Transfer-Encoding') // '';
    return decode_chunked($data, $eof) if $te =~ /chunked/i;

    my $cl = header_value($res, 'Content-Length');
    if (defined $cl && $cl =~ /^\d+$/) {
        return (substr($data, 0, $cl), $cl, 1) if length $data >= $cl;
        return ($data, length $data, 0);
    }
    # Delimited by the connection close (also 101 Switching Protocols)
    return ($data, length $data, $eof ? 1 : 0);
}

sub decode_chunked {
    my ($data, $eof) = @_;
    my ($body, $pos) = ('', 0);
    while (1) {
        pos($data) = $pos;
        last unless $data =~ /\G([0-9a-fA-F]+)[^\r\n]*\r\n/gc;
        my $size = hex $1;
        my $start = pos $data;
        if ($size == 0) {
            # trailer fields, then an empty line
            return ($body, pos($data) + length($1), 1)
                if $data =~ /\G((?:[^\r\n]+\r\n)*\r\n)/gc;
            last;
        }
        last if length($data) < $start + $size + 2;
        $body .= substr $data, $start, $size;
        $pos = $start + $size + 2;
    }
    return ($body, length $data, 0);
}

# ---------------------------------------------------------------------------
# Response checks (per request)
# ---------------------------------------------------------------------------

sub value_for {
    my ($value, $idx) = @_;
    return ref $value eq 'ARRAY' ? $value->[$idx] : $value;
}

sub as_regex {
    my $pattern = shift;
    return $pattern if ref $pattern eq 'Regexp';
    return qr/$pattern/s;
}

sub check_response {
    my ($block, $res, $idx, $rep, $dry_run) = @_;
    my $name = $block->name;
    my $tag  = "(req $rep)";
    diag("$name - $res->{error}") if defined $res->{error} && $res->{error} ne '';

    check_status($block, $res, $idx, $tag);

    for my $like (qw(raw_response_headers_like raw_response_headers_unlike)) {
        my $pattern = value_for(scalar $block->$like, $idx);
        next unless defined $pattern;
        my $check = $like =~ /unlike$/ ? \&unlike : \&like;
        $check->($res->{raw_headers}, as_regex($pattern), "$name - $like $tag");
    }

    check_header_lines($block, $res, $idx, $tag);

    my $body = $res->{body};
    if (defined(my $expected = value_for(scalar $block->response_body, $idx))) {
        is_str($body, $expected, "$name - response_body - response is expected $tag");
    }
    if (defined(my $pattern = value_for(scalar $block->response_body_like, $idx))) {
        like($body, as_regex($pattern), "$name - response_body_like - response is expected $tag");
    }
    if (defined(my $pattern = value_for(scalar $block->response_body_unlike, $idx))) {
        unlike($body, as_regex($pattern), "$name - response_body_unlike - response is expected $tag");
    }

    $_->($block, $body, $idx, $rep, $dry_run) for @ResponseBodyChecks;
}

sub check_status {
    my ($block, $res, $idx, $tag) = @_;
    my $name = $block->name;
    my $like = value_for(scalar $block->error_code_like, $idx);
    if (defined $like) {
        return like($res->{status}, as_regex($like), "$name - status code ok $tag");
    }
    my $expected = value_for(scalar $block->error_code, $idx);
    $expected = 200 unless defined $expected && $expected =~ /\S/;
    $expected =~ s/^\s+|\s+$//g;
    return is($res->{status}, $expected, "$name - status code ok $tag");
}

# "Name: value" (exact), "Name:" (absent or empty), "!Name" (absent);
# response_headers_like: "Name: regex" matched against the whole value.
sub check_header_lines {
    my ($block, $res, $idx, $tag) = @_;
    my $name = $block->name;
    for my $section (qw(response_headers response_headers_like)) {
        my $spec = value_for(scalar $block->$section, $idx);
        next unless defined $spec;
        for my $line (grep { /\S/ } split /\n/, $spec) {
            if ($line =~ /^\s*!\s*([^\s:]+)\s*$/) {
                my $got = header_value($res, $1);
                ok(!defined $got, "$name - header $1 not present $tag")
                    or diag("got: $1: $got");
                next;
            }
            if ($line !~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/) {
                fail("$name - bad $section line: $line");
                next;
            }
            my ($header, $want) = ($1, $2);
            my $got = header_value($res, $header);
            if ($section eq 'response_headers_like') {
                like($got // '', qr/^(?:$want)$/s, "$name - header $header like ok $tag");
            } elsif ($want eq '') {
                ok(!defined $got || $got eq '', "$name - header $header empty or absent $tag")
                    or diag("got: $header: $got");
            } else {
                is($got, $want, "$name - header $header ok $tag");
            }
        }
    }
}

# Upstream's string comparison: regex expectations, Test::LongString
# unless no_long_string(), else Test::Base's diff-aware is().
sub is_str {
    my ($got, $expected, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return like($got, $expected, $name) if ref $expected eq 'Regexp';
    if ($NoLongString || !defined $got || !defined $expected) {
        return Test::Base::is($got, $expected, $name);
    }
    require Test::LongString;
    return Test::LongString::is_string($got, $expected, $name);
}

# ---------------------------------------------------------------------------
# Error log checks (per repeat, on the lines logged since it started)
# ---------------------------------------------------------------------------

sub log_patterns {
    my $spec = shift;
    return () unless defined $spec;
    return @$spec if ref $spec eq 'ARRAY';
    return ($spec) if ref $spec eq 'Regexp';
    return grep { length } map { s/\r\z//r } split /\n/, $spec;
}

sub first_matching_line {
    my ($lines, $pattern) = @_;
    for my $line (@$lines) {
        return $line if ref $pattern eq 'Regexp'
            ? $line =~ $pattern : index($line, $pattern) >= 0;
    }
    return undef;
}

sub check_error_logs {
    my ($block, $offset, $rep) = @_;
    my $name = $block->name;
    my $tag  = "(req $rep)";

    my @wanted = log_patterns(scalar $block->error_log);
    my @lines  = read_error_log($offset);
    my $settle_until = time + $LogSettleTime;
    while (grep({ !defined first_matching_line(\@lines, $_) } @wanted)
           && time < $settle_until) {
        sleep 0.02;
        @lines = read_error_log($offset);
    }

    for my $pattern (@wanted) {
        ok(defined first_matching_line(\@lines, $pattern),
           "$name - pattern \"$pattern\" should match a line in error.log $tag");
    }
    for my $pattern (log_patterns(scalar $block->no_error_log)) {
        my $line = first_matching_line(\@lines, $pattern);
        ok(!defined $line,
           "$name - pattern \"$pattern\" should not match any line in error.log $tag")
            or diag("matching line: $line");
    }
    check_grep_error_log($block, \@lines, $rep, $tag);
}

sub check_grep_error_log {
    my ($block, $lines, $rep, $tag) = @_;
    my $pattern  = $block->grep_error_log;
    my $expected = value_for(scalar $block->grep_error_log_out, $rep);
    return unless defined $pattern && defined $block->grep_error_log_out;

    my @found;
    for my $line (@$lines) {
        if (ref $pattern eq 'Regexp') {
            push @found, $& while $line =~ /$pattern/g;
        } else {
            my $at = 0;
            while ((my $i = index $line, $pattern, $at) >= 0) {
                push @found, $pattern;
                $at = $i + (length($pattern) || 1);
            }
        }
    }
    is_str(join('', map { "$_\n" } @found), $expected,
           $block->name . " - grep_error_log_out $tag");
}

1;
