# Log writer: stdin is the raw pane output (a terminal stream). Each line is
# written with a timestamp; CR line ends, progress-bar rewrites (keep the last
# segment), ANSI escapes and other control characters are removed, so the log
# is plain text.
use strict;
use POSIX ();
use Time::HiRes ();
$| = 1;
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
    printf "[%s.%03d] %s\n", POSIX::strftime("%Y-%m-%d %H:%M:%S", localtime($t)), int(($t - int($t)) * 1000), $l;
}
