package ChatTest::JWT;

# HS256 tokens for the tests, from core Perl only (Digest::SHA, MIME::Base64).
#
#   my $t = ChatTest::JWT::token('alice');                 # valid 1 h
#   my $t = ChatTest::JWT::token('alice', exp => time - 3600);
#   my $t = ChatTest::JWT::token('alice', alg => 'none', sign => 0);
#
# The secret is $ENV{TEST_NGINX_JWT_SECRET}, set here when missing so that
# config sections can say "chat_jwt_secret $TEST_NGINX_JWT_SECRET;".

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64);
use JSON::PP ();

$ENV{TEST_NGINX_JWT_SECRET} //= 'test-secret-0123456789abcdef-0123456789';

sub b64url {
    my $s = encode_base64(shift, '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+$//;
    return $s;
}

sub token {
    my ($sub, %opt) = @_;

    my $json = JSON::PP->new->canonical;
    my %header = (alg => $opt{alg} // 'HS256', typ => 'JWT');
    my %claims = (iat => time, exp => $opt{exp} // time + 3600);
    $claims{sub} = $sub if defined $sub;
    $claims{nbf} = $opt{nbf} if defined $opt{nbf};
    %claims = (%claims, %{ $opt{claims} }) if $opt{claims};

    # raw_payload: the payload's JSON text as given (a claim twice, ...)
    my $input = b64url($json->encode(\%header)) . '.'
              . b64url($opt{raw_payload} // $json->encode(\%claims));

    return "$input." if defined $opt{sign} && !$opt{sign};

    my $secret = $opt{secret} // $ENV{TEST_NGINX_JWT_SECRET};
    return "$input." . b64url(hmac_sha256($input, $secret));
}

sub bearer { 'Authorization: Bearer ' . token(@_) }

1;
