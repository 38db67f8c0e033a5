# Every relative link in the project's Markdown (README.md, docs/, the
# READMEs of its parts) names a file or directory inside this repository:
# a clone must carry everything its documents point to, the specification
# included (docs/spec/).
use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin;

my $root = abs_path("$FindBin::Bin/..");
my @docs = grep { !m{(^|/)node_modules/} }
           split /\n/, `git -C '$root' ls-files '*.md'`;
ok @docs >= 5, 'found the Markdown files (' . scalar(@docs) . ')';

my $links = 0;
for my $doc (@docs) {
    open my $fh, '<', "$root/$doc" or die "$doc: $!";
    my $text = do { local $/; <$fh> };
    # [text](target) outside code; fenced blocks are skipped
    $text =~ s/^```.*?^```//msg;
    while ($text =~ /\]\(([^)\s]+)\)/g) {
        my $target = $1;
        next if $target =~ m{^(?:[a-z]+:|#)}i;      # URLs, anchors
        $target =~ s/#.*//;
        $links++;
        my $path = abs_path(dirname("$root/$doc") . "/$target");
        ok defined $path && -e $path && index("$path/", "$root/") == 0,
            "$doc links to $target, inside the repository";
    }
}
ok $links >= 5, "checked $links relative links";

done_testing;
