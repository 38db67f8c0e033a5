package ChatTest::Client;

# A small HTTP client for multi-step scenarios against the nginx under test
# (HTTP::Tiny, core Perl).  Every call returns
#   { status => 201, headers => {...}, body => '...', json => {...} | undef }
#
#   my $alice = ChatTest::Client->new(port => $port, user => 'alice');
#   my $g = $alice->post('/api/chat/groups', { name => 'General' });
#   my $l = $alice->get("/api/chat/groups/$g->{json}{id}/messages?limit=5");

use strict;
use warnings;

use HTTP::Tiny;
use JSON::PP ();
use ChatTest::JWT;

my $JSON = JSON::PP->new->utf8->canonical;

sub new {
    my ($class, %opt) = @_;
    my $self = bless {
        port    => $opt{port} // $ENV{TEST_NGINX_SERVER_PORT},
        token   => $opt{token} // (defined $opt{user}
                                   ? ChatTest::JWT::token($opt{user}) : undef),
        headers => $opt{headers} // {},
        http    => HTTP::Tiny->new(timeout => $opt{timeout} // 10,
                                   keep_alive => 0),
    }, $class;
    return $self;
}

sub request {
    my ($self, $method, $path, $body, %opt) = @_;

    my %h = (%{ $self->{headers} }, %{ $opt{headers} // {} });
    $h{Authorization} = "Bearer $self->{token}"
        if defined $self->{token} && !exists $h{Authorization};

    my %args = (headers => \%h);
    if (defined $body) {
        $args{content} = ref $body ? $JSON->encode($body) : $body;
        $h{'Content-Type'} //= 'application/json';
    }

    my $url = "http://127.0.0.1:$self->{port}$path";
    my $res = $self->{http}->request($method, $url, \%args);
    die "ChatTest::Client: $method $path: $res->{content}\n"
        if $res->{status} == 599;

    my $json;
    if (($res->{headers}{'content-type'} // '') =~ m{^application/json}) {
        $json = eval { $JSON->decode($res->{content}) };
    }

    return {
        status  => $res->{status},
        headers => $res->{headers},
        body    => $res->{content},
        json    => $json,
    };
}

# get($path, %opt), delete($path, %opt), post($path, $body, %opt);
# %opt: headers => { ... }
sub get    { my ($s, $path, %o) = @_; $s->request('GET', $path, undef, %o) }
sub delete { my ($s, $path, %o) = @_; $s->request('DELETE', $path, undef, %o) }
sub post   { my ($s, $path, $body, %o) = @_; $s->request('POST', $path, $body, %o) }

# Many requests in flight at once, for what must happen to all of them
# (a stalled database, a reload):
#   my @s = ChatTest::Client::send_raw($port, ($raw_request) x 6);
#   my @responses = ChatTest::Client::read_until_closed(10, @s);
# Each response is what its socket read until the server closed it, or
# undef if it was still open when the timeout (seconds) ran out.

sub send_raw {             # one connection per raw request
    my ($port, @raws) = @_;
    require IO::Socket::INET;
    return map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
            or die "connect to $port: $!\n";
        print $s $_;
        $s;
    } @raws;
}

sub read_until_closed {
    my ($timeout, @socks) = @_;
    require IO::Select;
    require Time::HiRes;
    my $sel = IO::Select->new(@socks);
    my (%buf, %closed);
    my $deadline = Time::HiRes::time() + $timeout;
    while ($sel->count && Time::HiRes::time() < $deadline) {
        for my $s ($sel->can_read(0.5)) {
            my $n = sysread $s, my $chunk, 65536;
            if ($n) { $buf{$s} .= $chunk; next }
            $sel->remove($s);
            $closed{$s} = 1;
        }
    }
    return map { $closed{$_} ? $buf{$_} // '' : undef } @socks;
}

1;
