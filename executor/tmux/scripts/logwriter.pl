# Log writer: stdin is the raw pane output (a terminal stream). Each line is
# written with a timestamp; CR line ends, progress-bar rewrites (keep the last
# segment), ANSI escapes and other control characters are removed, so the log
# is plain text. No POSIX module: loading it costs more than the rest.
use strict;
use Time::HiRes ();
$| = 1;
my ($sec, $prefix) = (-1, '');
while (defined(my $l = <STDIN>)) {
    chomp $l;
    $l =~ s/\r+\z//;
    $l =~ s/\A.*\r//s;
    $l =~ s/\e\[[0-?]*[ -\/]*[@-~]//g;
    $l =~ s/\e\][^\a\e]*(?:\a|\e\\)?//g;
    $l =~ s/\e[()*+][0-9A-Za-z]//g;
    $l =~ s/\e[@-Z\\-_=>]//g;
    $l =~ s/[\x00-\x08\x0b-\x1f\x7f]//g;
    my $t = Time::HiRes::time();
    my $s = int($t);
    if ($s != $sec) {
        my @lt = localtime($s);
        $prefix = sprintf("%04d-%02d-%02d %02d:%02d:%02d", $lt[5] + 1900, $lt[4] + 1, $lt[3], $lt[2], $lt[1], $lt[0]);
        $sec = $s;
    }
    printf "[%s.%03d] %s\n", $prefix, int(($t - $s) * 1000), $l;
}
