# Log follower: writes LOG (the first argument) to stdout from byte OFFSET
# (the second) and then what is appended, until stdout is closed; like
# `tail -c +N -F`, but it follows the log across rotations without losing
# a line: once the name LOG points to another file (the writer renamed it
# to LOG.1 and went on in a new LOG), it reads the old file to its end
# before it opens the new one. tail -F notices a rotation only at its next
# poll and skips a file rotated twice in between.
#
# An offset past the end of LOG means the log was rotated since the offset
# was taken: the rest of LOG.1 comes first when the offset is within it,
# else the offset was counted on through LOG.1 (a follower that read across
# a rotation and reconnects) and lands in the new file.
use strict;
my ($log, $off) = @ARGV;
$off = 0 unless defined $off && $off =~ /\A[0-9]+\z/;
$SIG{PIPE} = sub { exit 0 };
# Polls come every 10 ms for a second or two after the last output (a
# one-shot's exit line is awaited), then every 50 ms.
my $last = time;
sub copy {
    my $fh = shift;
    while (1) {
        my $r = sysread($fh, my $buf, 65536);
        return unless $r;
        $last = time;
        my $o = 0;
        while ($o < $r) {
            my $w = syswrite(STDOUT, $buf, $r - $o, $o);
            exit 0 unless $w;
            $o += $w;
        }
    }
}
my @s = stat($log);
if ((!@s || $s[7] < $off) && -f "$log.1") {
    my $s1 = -s "$log.1";
    if ($s1 >= $off && open(my $old, '<', "$log.1")) {
        sysseek($old, $off, 0);
        copy($old);
        close $old;
        $off = 0;
    } elsif ($s1 < $off) {
        $off -= $s1;
    }
}
# A reader that went away is noticed at the next write (SIGPIPE); one that
# died while the log was idle is noticed by its process: the follower's
# parent (launcher, or sshd for a remote one) changes when it dies.
my $parent = getppid();
my ($fh, @id);
while (1) {
    exit 0 if getppid() != $parent;
    if (!$fh) {
        if (open($fh, '<', $log)) {
            @id = stat($fh);
            sysseek($fh, $off, 0) if $off;
            $off = 0;
        } else {
            undef $fh;
            select(undef, undef, undef, 0.1);
            next;
        }
    }
    copy($fh);
    my @n = stat($log);
    if (!@n || $n[0] != $id[0] || $n[1] != $id[1]) {
        # Rotated or removed: what was written before the rename is read
        # first; a new file at the name is followed from its start.
        copy($fh);
        if (@n) {
            close $fh;
            undef $fh;
            next;
        }
    } elsif ($n[7] < sysseek($fh, 0, 1)) {
        # Truncated in place: from its new start.
        sysseek($fh, 0, 0);
        next;
    }
    select(undef, undef, undef, time - $last > 1 ? 0.05 : 0.01);
}
