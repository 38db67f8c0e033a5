# deploy/: the Prometheus configuration, its rules and the Grafana dashboard
# are what promtool accepts, and the rules do what their unit tests say:
#   - promtool check config (prometheus.yml, its rule files, the file_sd
#     targets) and check rules;
#   - promtool test rules (deploy/prometheus/tests/*.yml), which must name
#     every recording rule and every alert, each alert both firing and not;
#   - the tests have teeth: a rule changed in a copy (a threshold, a `for:`,
#     the quantile) makes promtool test rules fail;
#   - every query of deploy/grafana/chat-cluster.json, its template
#     variables substituted, written as recording rules: promtool check
#     rules accepts them;
#   - every series the rules and the dashboard read is one the sidecar
#     exports (sidecar/prometheus.c) or a recording rule defines.
# No nginx, no database: promtool only (`make deps-test`: package prometheus).
use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
use File::Copy qw(copy);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use FindBin;
use JSON::PP ();
use lib "$FindBin::Bin/lib";
use ChatTest::Util qw(slurp spew);

my $root = abs_path("$FindBin::Bin/..");
my $promtool = '/usr/bin/promtool';
plan skip_all => "promtool not installed (make deps-test: package prometheus)"
    unless -x $promtool;

my $dir = "$root/deploy/prometheus";
my $dash_file = "$root/deploy/grafana/chat-cluster.json";

# runs promtool; returns (exit status, output)
sub promtool {
    my ($cwd, @args) = @_;
    my $cmd = join ' ', map { "'$_'" } $promtool, @args;
    my $out = `cd '$cwd' && $cmd 2>&1`;
    return ($? >> 8, $out);
}

my @rule_files = map { "rules/$_" } qw(recording.yml alerts.yml);
my @test_files = map { s{^\Q$dir\E/}{}r } sort glob "$dir/tests/*.yml";
ok @test_files >= 1, "unit test files: @test_files";

# --- promtool on the shipped files -------------------------------------------

# promtool wants the scrape token's file (authorization: credentials_file)
# to exist: the shipped file in a copy of the directory, that path pointed
# at a token made here, nothing else changed
my $cfg = tempdir('chat-prom-XXXXXX', TMPDIR => 1, CLEANUP => 1);
make_path("$cfg/rules", "$cfg/targets", "$cfg/tests");
copy("$dir/$_", "$cfg/$_") or die "$_: $!"
    for @rule_files, @test_files, 'targets/chat-hosts.yml';
{
    my $yml = slurp("$dir/prometheus.yml");
    ok $yml =~ s{credentials_file: /etc/prometheus/chat-metrics\.token\b}
                {credentials_file: $cfg/chat-metrics.token},
       'prometheus.yml scrapes with the token file /etc/prometheus/chat-metrics.token';
    spew("$cfg/prometheus.yml", $yml);
    spew("$cfg/chat-metrics.token", ('0' x 64) . "\n");
}
my ($rc, $out) = promtool($cfg, 'check', 'config', 'prometheus.yml');
is $rc, 0, 'promtool check config prometheus.yml' or diag $out;
unlike $out, qr/WARNING/, 'no warnings (the file_sd targets file exists)'
    or diag $out;
like $out, qr/2 rule files found/, 'prometheus.yml loads both rule files';

($rc, $out) = promtool($dir, 'check', 'rules', @rule_files);
is $rc, 0, 'promtool check rules' or diag $out;

($rc, $out) = promtool($dir, 'test', 'rules', @test_files);
is $rc, 0, 'promtool test rules' or diag $out;

# --- the tests cover every rule ----------------------------------------------

my $recording = slurp("$dir/rules/recording.yml");
my $alerts = slurp("$dir/rules/alerts.yml");
my $tests = join "\n", map { slurp("$dir/$_") } @test_files;

my @records = $recording =~ /^\s*-\s*record:\s*(\S+)/mg;
my @alerts = $alerts =~ /^\s*-\s*alert:\s*(\S+)/mg;
ok @records >= 10, scalar(@records) . ' recording rules';
ok @alerts >= 20, scalar(@alerts) . ' alerts';

my %tested_expr = map { $_ => 1 } $tests =~ /^\s*-\s*expr:\s*(\S+)\s*$/mg;
for my $r (@records) {
    ok $tested_expr{$r}, "recording rule $r has a promql_expr_test";
}

my (%fires, %silent);
while ($tests =~ /alertname:\s*(\S+)\s*\n\s*exp_alerts:[ \t]*(\[\])?/g) {
    if (defined $2) { $silent{$1}++ } else { $fires{$1}++ }
}
for my $a (@alerts) {
    ok $fires{$a}, "alert $a is tested firing";
    ok $silent{$a}, "alert $a is tested not firing";
}
my %known_alert = map { $_ => 1 } @alerts;
ok !(grep { !$known_alert{$_} } keys %fires, keys %silent),
    'the tests name no alert the rules lack';

# --- the tests have teeth: a changed rule fails them -------------------------

my @mutants = (
    [ 'alerts.yml', 'error rate threshold 5 % -> 50 %',
      qr/error_ratio:rate5m > 0\.05/, 'error_ratio:rate5m > 0.5' ],
    [ 'alerts.yml', "ChatNginxDown's for: 1m -> 10m",
      qr/(chat_nginx_up == 0\n\s*for:) 1m/, '$1 10m' ],
    [ 'alerts.yml', 'ChatClusterLinkDown on == 1 instead of == 0',
      qr/chat_cluster_workers_connected == 0/, 'chat_cluster_workers_connected == 1' ],
    [ 'recording.yml', 'p95 -> p90',
      qr/histogram_quantile\(0\.95, sum by \(host, le\)/,
      'histogram_quantile(0.9, sum by (host, le)' ],
    [ 'recording.yml', 'cluster error ratio divides by the host rate',
      qr/cluster:chat_http_request_errors:rate5m \/ \(cluster:/,
      'cluster:chat_http_request_errors:rate5m / (host:' ],
);

my $scratch = tempdir('deploy-prom-XXXXXX', TMPDIR => 1, CLEANUP => 1);
for my $m (@mutants) {
    my ($file, $what, $re, $to) = @$m;
    my $copy = "$scratch/mutant";
    make_path("$copy/rules", "$copy/tests");
    copy("$dir/$_", "$copy/$_") or die "$_: $!" for @rule_files, @test_files;
    my $text = slurp("$copy/rules/$file");
    my $n = ($text =~ s/$re/"\"$to\""/ee);
    ok $n, "mutant '$what' applies to rules/$file";
    spew("$copy/rules/$file", $text);
    my ($mrc, $mout) = promtool($copy, 'check', 'rules', @rule_files);
    is $mrc, 0, "mutant '$what' is still valid rules" or diag $mout;
    ($mrc, $mout) = promtool($copy, 'test', 'rules', @test_files);
    isnt $mrc, 0, "mutant '$what': promtool test rules fails";
}

# --- the Grafana dashboard -----------------------------------------------------

my $dash = JSON::PP->new->decode(slurp($dash_file));
is $dash->{uid}, 'chat-cluster', 'dashboard uid';

my %var = map { $_->{name} => $_ } @{ $dash->{templating}{list} };
is $var{datasource}{type}, 'datasource', 'a datasource template variable';
is $var{datasource}{query}, 'prometheus', '... of Prometheus data sources';
is $var{host}{query}{query}, 'label_values(chat_host_info, host)',
    'the host variable lists chat_host_info\'s hosts';
is $var{host}{datasource}{uid}, '${datasource}',
    'the host variable queries the chosen data source';

# every object with an "expr", and every panel's data source
my (@exprs, @panel_ds);
my $walk;
$walk = sub {
    my ($node, $where) = @_;
    if (ref $node eq 'HASH') {
        push @exprs, [ "$where/$node->{refId}", $node->{expr} ]
            if exists $node->{expr};
        push @panel_ds, [ $node->{title}, $node->{datasource} ]
            if exists $node->{targets};
        $walk->($node->{$_}, exists $node->{id} ? "panel $node->{id}" : $where)
            for sort keys %$node;
    } elsif (ref $node eq 'ARRAY') {
        $walk->($_, $where) for @$node;
    }
};
$walk->($dash->{panels}, 'dashboard');
ok @exprs >= 20, scalar(@exprs) . ' queries in the dashboard';
for my $p (@panel_ds) {
    is $p->[1]{uid}, '${datasource}', "panel '$p->[0]' uses the datasource variable";
}

# Grafana's variables as a query would see them
my %subst = (
    '$__rate_interval' => '1m', '$__interval' => '1m', '$__range' => '1h',
    '${host}' => '.*', '$host' => '.*',
);
my $rules = "groups:\n  - name: grafana-chat-cluster\n    rules:\n";
my $i = 0;
my @dash_exprs;
for my $e (@exprs) {
    my ($where, $q) = @$e;
    for my $k (sort { length $b <=> length $a } keys %subst) {
        $q =~ s/\Q$k\E/$subst{$k}/g;
    }
    unlike $q, qr/\$/, "$where: every variable substituted ($q)";
    push @dash_exprs, $q;
    $q =~ s/'/''/g;
    $rules .= sprintf "      - record: grafana:query_%d\n        expr: '%s'\n",
                      $i++, $q;
}
spew("$scratch/grafana.yml", $rules);
($rc, $out) = promtool($scratch, 'check', 'rules', 'grafana.yml');
is $rc, 0, "promtool check rules accepts the dashboard's $i queries"
    or diag "$out\n$rules";

# a broken query is caught the same way
spew("$scratch/broken.yml", $rules . "      - record: grafana:broken\n"
     . "        expr: 'sum by (host (rate(chat_http_requests_total[1m]))'\n");
($rc, $out) = promtool($scratch, 'check', 'rules', 'broken.yml');
isnt $rc, 0, 'promtool check rules refuses a broken query';

# --- every series read is one that exists --------------------------------------

my $exporter = slurp("$root/sidecar/prometheus.c");
my %exported = map { $_ => 1 } $exporter =~ /"(chat_[a-z0-9_]+)/g;
ok $exported{chat_http_requests_total}, 'names read from sidecar/prometheus.c';
# the histogram's series
for my $h (grep { $exporter =~ /family\(b, "\Q$_\E", "histogram"/ } keys %exported) {
    $exported{"${h}_$_"} = 1 for qw(bucket sum count);
}
# the cluster link's series, the contract with the NATS transport's sidecar
# side: once sidecar/prometheus.c exports any chat_cluster_ series, these
# must be among them
my @cluster = qw(chat_host_info chat_cluster_enabled chat_cluster_workers_connected
                 chat_cluster_reconnects_total chat_cluster_events_in_total
                 chat_cluster_events_out_total chat_cluster_gaps_filled_total
                 chat_cluster_dropped_total);
if (grep { /^chat_cluster_/ } keys %exported) {
    ok $exported{$_}, "sidecar/prometheus.c exports $_" for @cluster;
} else {
    note 'sidecar/prometheus.c exports no chat_cluster_ series yet: '
        . 'the contract names are taken as given';
    $exported{$_} = 1 for @cluster;
}
$exported{$_} = 1 for @records, 'up';

my %read;
for my $text ($recording =~ /expr:\s*(\|[^\n]*\n(?:\s{10,}[^\n]*\n)+|[^\n]+)/g,
              $alerts =~ /expr:\s*(\|[^\n]*\n(?:\s{10,}[^\n]*\n)+|[^\n]+)/g,
              @dash_exprs, $var{host}{query}{query}) {
    $read{$_} = 1 for $text =~ /\b((?:chat_|host:|cluster:)[a-z0-9_:]+|up)\b(?!\s*\()/g;
}
ok keys(%read) >= 30, scalar(keys %read) . ' series read by the rules and the dashboard';
for my $s (sort keys %read) {
    ok $exported{$s}, "$s is exported by the sidecar or recorded";
}

done_testing;
