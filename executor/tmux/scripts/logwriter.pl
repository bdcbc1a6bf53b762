# Log writer: stdin is the raw pane output (a terminal stream). Each line is
# written with a timestamp; CR line ends, progress-bar rewrites (keep the last
# segment), ANSI escapes and other control characters are removed, so the log
# is plain text. No POSIX module: loading it costs more than the rest.
# Writes go straight to the file (syswrite): a full disk loses lines, counted,
# and the first write that succeeds afterwards records how many and why.
use strict;
use Time::HiRes ();
my ($sec, $prefix) = (-1, '');
my ($lost, $why, $torn) = (0, '', 0);
sub stamp {
    my $t = Time::HiRes::time();
    my $s = int($t);
    if ($s != $sec) {
        my @lt = localtime($s);
        $prefix = sprintf("%04d-%02d-%02d %02d:%02d:%02d", $lt[5] + 1900, $lt[4] + 1, $lt[3], $lt[2], $lt[1], $lt[0]);
        $sec = $s;
    }
    return sprintf("[%s.%03d]", $prefix, int(($t - $s) * 1000));
}
sub put {
    my $s = shift;
    my $w = syswrite(STDOUT, $s);
    return 1 if defined $w && $w == length $s;
    $why = "$!" if !defined $w;
    $torn = 1 if defined $w && $w > 0;
    return 0;
}
while (defined(my $l = <STDIN>)) {
    chomp $l;
    $l =~ s/\r+\z//;
    $l =~ s/\A.*\r//s;
    $l =~ s/\e\[[0-?]*[ -\/]*[@-~]//g;
    $l =~ s/\e\][^\a\e]*(?:\a|\e\\)?//g;
    $l =~ s/\e[()*+][0-9A-Za-z]//g;
    $l =~ s/\e[@-Z\\-_=>]//g;
    $l =~ s/[\x00-\x08\x0b-\x1f\x7f]//g;
    my $ts = stamp();
    if ($lost) {
        my $note = ($torn ? "\n" : '') . sprintf("%s [launcher] %d line%s of output lost: %s\n", $ts, $lost, $lost == 1 ? '' : 's', $why || 'write failed');
        if (!put($note)) { $lost++; next; }
        ($lost, $torn) = (0, 0);
    }
    $lost++ unless put("$ts $l\n");
}
