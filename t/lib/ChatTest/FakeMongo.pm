package ChatTest::FakeMongo;

# A MongoDB wire endpoint that tells what a driver sends while it
# authenticates: it answers the handshake (hello / isMaster) like a server
# with wire version 13, answers saslStart with "Authentication failed"
# (code 18), and writes every message it received to a file.  It shows
# what user, password (PLAIN sends it in the clear), mechanism and
# authSource a mongodb:// URI became inside mongo-c-driver.
#
#   my $fake = ChatTest::FakeMongo->start;
#   system($sidecar, '--ping-db', '--mongo-uri',
#          "mongodb://u:p%40ss\@127.0.0.1:$fake->{port}/chat?authSource=admin");
#   my $bytes = $fake->received;     # raw messages, BSON inside
#   $fake->stop;

use strict;
use warnings;

use File::Temp qw(tempfile);
use IO::Socket::INET;
use POSIX ();

sub _cstr { my $s = shift; return "$s\0" }

# a BSON document from [type, key, value] triples: d(ouble) i(nt32) b(ool) s(tring)
sub _doc {
    my $e = '';
    for (@_) {
        my ($t, $k, $v) = @$_;
        if    ($t eq 'd') { $e .= "\x01" . _cstr($k) . pack('d<', $v) }
        elsif ($t eq 'i') { $e .= "\x10" . _cstr($k) . pack('l<', $v) }
        elsif ($t eq 'b') { $e .= "\x08" . _cstr($k) . chr($v ? 1 : 0) }
        elsif ($t eq 's') { $e .= "\x02" . _cstr($k) . pack('l<', length($v) + 1) . _cstr($v) }
    }
    return pack('l<', length($e) + 5) . $e . "\0";
}

my $HELLO = _doc([b => ismaster => 1], [b => isWritablePrimary => 1],
                 [i => maxBsonObjectSize => 16777216],
                 [i => maxMessageSizeBytes => 48000000],
                 [i => maxWriteBatchSize => 100000],
                 [i => minWireVersion => 0], [i => maxWireVersion => 13],
                 [d => ok => 1]);
my $AUTH_FAILED = _doc([d => ok => 0], [s => errmsg => 'Authentication failed.'],
                       [i => code => 18], [s => codeName => 'AuthenticationFailed']);

sub _reply {
    my ($op, $req_id, $doc) = @_;
    my $body = $op == 2004
        ? pack('l< q< l< l<', 0, 0, 0, 1) . $doc        # OP_REPLY
        : pack('L<', 0) . "\0" . $doc;                  # OP_MSG, section 0
    my $reply_op = $op == 2004 ? 1 : 2013;
    return pack('l< l< l< l<', 16 + length($body), int(rand(1 << 30)), $req_id,
                $reply_op) . $body;
}

sub _serve {
    my ($c, $log) = @_;
    my $buf = '';
    while (1) {
        while (length($buf) < 4 || length($buf) < unpack('l<', $buf)) {
            my $n = sysread($c, $buf, 65536, length $buf);
            return unless $n;
        }
        my $len = unpack('l<', $buf);
        my $msg = substr($buf, 0, $len, '');
        my (undef, $req_id, undef, $op) = unpack('l< l< l< l<', $msg);
        syswrite($log, $msg);
        my $doc = $op == 2013 && $msg =~ /saslStart|saslContinue/
                  ? $AUTH_FAILED : $HELLO;
        syswrite($c, _reply($op, $req_id, $doc));
    }
}

sub start {
    my $class = shift;
    my $l = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1) or die "listen: $!";
    my ($fh, $file) = tempfile('fake-mongo-XXXXXX', TMPDIR => 1, UNLINK => 1);
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        POSIX::setpgid(0, 0);           # its connection children with it
        open my $log, '>>:raw', $file or POSIX::_exit(1);
        while (my $c = $l->accept) {
            my $k = fork;
            if (defined $k && $k == 0) { _serve($c, $log); POSIX::_exit(0) }
            close $c;
            1 while waitpid(-1, POSIX::WNOHANG()) > 0;
        }
        POSIX::_exit(0);
    }
    my $port = $l->sockport;
    close $l;
    return bless { pid => $pid, port => $port, file => $file }, $class;
}

sub received {
    my $self = shift;
    open my $f, '<:raw', $self->{file} or return '';
    local $/;
    return <$f> // '';
}

sub stop {
    my $self = shift;
    return unless $self->{pid};
    kill 'KILL', -$self->{pid};
    waitpid $self->{pid}, 0;
    undef $self->{pid};
}

sub DESTROY { local $?; $_[0]->stop }

1;
