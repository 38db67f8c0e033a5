package ChatTest::MongoWire;

# A bare MongoDB wire-protocol client (OP_MSG, no driver: none is installed
# for Perl here) for tests that must put documents into the database as
# some other code would have written them, e.g. messages of today's shape
# for the code of tomorrow:
#
#   use ChatTest::MongoWire qw(oid date i64 bool doc);
#   my $db = ChatTest::MongoWire->new($ENV{TEST_NGINX_CHAT_URI});
#   my $r = $db->command(doc(insert => 'messages',
#                            documents => [ doc(_id => oid($hex), ...) ]));
#   $r->{ok} == 1 or die;
#
# Plain scalars are strings; oid(), date() (ms), i32(), i64(), bool() and
# doc(key => value, ...) (ordered) make the other types; an array ref is a
# BSON array.  Replies are decoded into hashes (ObjectIds as hex strings,
# dates as ms, booleans as 0/1, arrays as array refs, binary data as its
# bytes: ChatTest::MongoWire::decode($bytes) reads a BSON document in it).

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;

our @EXPORT_OK = qw(oid date i32 i64 bool doc);

sub oid  { bless [ $_[0] ], 'ChatTest::MongoWire::OID' }
sub date { bless [ $_[0] ], 'ChatTest::MongoWire::Date' }
sub i32  { bless [ $_[0] ], 'ChatTest::MongoWire::Int32' }
sub i64  { bless [ $_[0] ], 'ChatTest::MongoWire::Int64' }
sub bool { bless [ $_[0] ? 1 : 0 ], 'ChatTest::MongoWire::Bool' }
sub doc  { bless [ @_ ], 'ChatTest::MongoWire::Doc' }

sub new {
    my ($class, $uri) = @_;
    my ($host, $port, $db) = $uri =~ m{^mongodb://([^:/,]+):(\d+)/([^?]+)}
        or die "ChatTest::MongoWire: a mongodb://host:port/db URI, not $uri\n";
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                  Timeout => 10)
        or die "ChatTest::MongoWire: connect $host:$port: $!\n";
    binmode $s;
    return bless { sock => $s, db => $db, id => 1 }, $class;
}

sub db { $_[0]{db} }

# runs one command on the URI's database; returns the decoded reply
sub command {
    my ($self, $cmd) = @_;
    my $body = _encode(doc(@$cmd, '$db' => $self->{db}));
    my $msg = pack('L<', 0) . "\0" . $body;
    my $id = $self->{id}++;
    my $s = $self->{sock};
    print $s pack('l< l< l< l<', 16 + length $msg, $id, 0, 2013) . $msg;

    my $head = _read($s, 16);
    my ($len, undef, undef, $op) = unpack('l< l< l< l<', $head);
    my $rest = _read($s, $len - 16);
    die "ChatTest::MongoWire: opcode $op in reply\n" unless $op == 2013;
    return _decode(substr($rest, 5));           # flags, section kind 0
}

sub _read {
    my ($s, $n) = @_;
    my $buf = '';
    while (length $buf < $n) {
        my $got = sysread($s, $buf, $n - length $buf, length $buf);
        die "ChatTest::MongoWire: connection closed\n" unless $got;
    }
    return $buf;
}

sub _cstr { "$_[0]\0" }

sub _encode {
    my ($d) = @_;
    my @pairs = ref $d eq 'ARRAY' ? (map { ($_ => $d->[$_]) } 0 .. $#$d) : @$d;
    my $e = '';
    while (my ($k, $v) = splice @pairs, 0, 2) {
        my $r = ref $v;
        if (!defined $v)                        { $e .= "\x0A" . _cstr($k) }
        elsif ($r eq 'ChatTest::MongoWire::OID')   { $e .= "\x07" . _cstr($k) . pack('H24', $v->[0]) }
        elsif ($r eq 'ChatTest::MongoWire::Date')  { $e .= "\x09" . _cstr($k) . pack('q<', $v->[0]) }
        elsif ($r eq 'ChatTest::MongoWire::Int32') { $e .= "\x10" . _cstr($k) . pack('l<', $v->[0]) }
        elsif ($r eq 'ChatTest::MongoWire::Int64') { $e .= "\x12" . _cstr($k) . pack('q<', $v->[0]) }
        elsif ($r eq 'ChatTest::MongoWire::Bool')  { $e .= "\x08" . _cstr($k) . chr($v->[0]) }
        elsif ($r eq 'ChatTest::MongoWire::Doc')   { $e .= "\x03" . _cstr($k) . _encode($v) }
        elsif ($r eq 'ARRAY')                   { $e .= "\x04" . _cstr($k) . _encode($v) }
        else {
            utf8::encode(my $b = "$v");
            $e .= "\x02" . _cstr($k) . pack('l<', length($b) + 1) . _cstr($b);
        }
    }
    return pack('l<', length($e) + 5) . $e . "\0";
}

sub decode { _decode($_[0]) }

sub _decode {
    my ($bytes, $as_array) = @_;
    my $len = unpack('l<', $bytes);
    my $p = 4;
    my (%h, @a);
    while ($p < $len - 1) {
        my $t = ord substr($bytes, $p++, 1);
        my $end = index($bytes, "\0", $p);
        my $k = substr($bytes, $p, $end - $p);
        $p = $end + 1;
        my $v;
        if    ($t == 0x01) { $v = unpack('d<', substr($bytes, $p, 8)); $p += 8 }
        elsif ($t == 0x02) {
            my $n = unpack('l<', substr($bytes, $p, 4));
            $v = substr($bytes, $p + 4, $n - 1);
            utf8::decode($v);
            $p += 4 + $n;
        }
        elsif ($t == 0x03 || $t == 0x04) {
            my $n = unpack('l<', substr($bytes, $p, 4));
            $v = _decode(substr($bytes, $p, $n), $t == 0x04);
            $p += $n;
        }
        elsif ($t == 0x05) {                    # binary: its bytes
            my $n = unpack('l<', substr($bytes, $p, 4));
            $v = substr($bytes, $p + 5, $n);
            $p += 5 + $n;
        }
        elsif ($t == 0x07) { $v = unpack('H24', substr($bytes, $p, 12)); $p += 12 }
        elsif ($t == 0x08) { $v = ord substr($bytes, $p, 1); $p += 1 }
        elsif ($t == 0x09 || $t == 0x12) { $v = unpack('q<', substr($bytes, $p, 8)); $p += 8 }
        elsif ($t == 0x0A) { $v = undef }
        elsif ($t == 0x10) { $v = unpack('l<', substr($bytes, $p, 4)); $p += 4 }
        else { die sprintf("ChatTest::MongoWire: BSON type 0x%02x not decoded\n", $t) }
        if ($as_array) { push @a, $v } else { $h{$k} = $v }
    }
    return $as_array ? \@a : \%h;
}

1;
