# Log writer: stdin is the raw pane output (a terminal stream). Each line is
# written with a timestamp; CR line ends, progress-bar rewrites (keep the last
# segment), ANSI escapes and other control characters are removed, so the log
# is plain text. No POSIX module: loading it costs more than the rest.
# Writes go straight to the file (syswrite): a full disk loses lines, counted,
# and the first write that succeeds afterwards records how many and why.
#
# Arguments (both optional): TAG, the run's tag, and PANE, the pid of the
# pane's shell. tmux drops what it has not read from a pane whose process
# ended, so the pane's exit path waits for its exit line to reach the log:
# the writer sends PANE a SIGUSR1 once it has it (and again every 0.2 s
# while PANE lives, up to 2 s). PANE is the pane while its start time
# (/proc) is the one it had when the writer started: a pid given to
# another process since gets no signal (USR1 would end it). A line of
# output without a newline does not swallow launcher's line after it: a
# "[launcher] … (run TAG)" at the end of a line is written as a line of
# its own. The writer ends with its pane: at the end of its input, or once
# PANE is gone and nothing came for a while (tmux keeps a dead pane's pipe
# open).
#
# LOG, the third argument, is the file stdout appends to. Once a second
# the writer checks that the file is still there: a log (or its folder)
# removed while the process runs would swallow every line after it, so the
# writer creates it again (0700 folders, 0600 file, never through a
# symbolic link) and says so in it.
#
# MAX and KEEP, the fourth and fifth: once the log reaches MAX bytes, the
# writer renames it to LOG.1 (LOG.1 to LOG.2 … up to LOG.KEEP, the oldest
# dropped) and goes on in a new LOG: between two lines, so no line is lost
# or split. A writer whose log another writer (an earlier run still
# draining) rotated follows it to the new file without a word.
#
# ENV, the sixth: the run's env file, which the pane's prologue empties
# once read; the writer removes it when the run's start line comes (the
# pane forks nothing for it).
use strict;
# The clock: gettimeofday(2) by its number, which depends on the machine
# (read from perl's own ELF header; checked against time() before use).
# Loading Time::HiRes was a third of the writer's start (1 ms of CPU per
# pane, on the 2-core bench a tenth of a bring-up of 50); a machine not in
# the list below (x86-64, arm64, riscv64, i386, arm) still loads it.
my ($gtod, $tv, $exe, $h) = (0, "\0" x 16, undef, '');
if (open($exe, '<', '/proc/self/exe') && sysread($exe, $h, 20) == 20 && substr($h, 0, 4) eq "\x7fELF") {
    my ($class, $le) = (ord(substr($h, 4, 1)), ord(substr($h, 5, 1)) == 1);
    my $mach = unpack($le ? 'v' : 'n', substr($h, 18, 2));
    my %nr = $class == 2 ? (62 => 96, 183 => 169, 243 => 169) : (3 => 78, 40 => 78);
    $gtod = $nr{$mach} || 0;
    $gtod = 0 unless $gtod && syscall($gtod, $tv, 0) == 0 && abs(unpack('l!', $tv) - time) < 2;
}
close $exe if $exe;
require Time::HiRes unless $gtod;
sub now {
    return Time::HiRes::time() unless $gtod;
    syscall($gtod, $tv, 0);
    my ($s, $us) = unpack('l!2', $tv);
    return $s + $us / 1e6;
}
# --probe, the only argument: what install runs to choose this writer. It
# loads what the writer may load later (the clock above, Fcntl) and exits
# 0; perl failing here (a module missing) means the bash writer.
if (@ARGV == 1 && $ARGV[0] eq '--probe') {
    require Fcntl;
    exit 0;
}
my ($tag, $pane, $log, $max, $keep, $envf) = (@ARGV, '', 0, '', 0, 0, '');
$pane = 0 unless $pane =~ /\A[1-9][0-9]*\z/;
# started returns field 22 of /proc/PID/stat (after the command's name,
# which may hold spaces and parentheses), or '' when it cannot be read:
# then kill 0 alone says whether PANE lives, as a writer that ended while
# its pane still wrote would lose lines.
sub started {
    open(my $f, '<', "/proc/$_[0]/stat") or return '';
    my $s = <$f> // '';
    return $s =~ /.*\) (.*)\z/s ? (split / /, $1)[19] // '' : '';
}
my $born = $pane ? started($pane) : '';
sub alive {
    return 0 unless kill 0, $pane;
    return 1 unless length $born;
    my $now = started($pane);
    return !length $now || $now eq $born;
}
$max = 0 unless $max =~ /\A[0-9]+\z/ && length $log;
$keep = 0 unless $keep =~ /\A[1-9][0-9]*\z/;
$max = 0 unless $keep;
my ($sec, $prefix) = (-1, '');
my ($lost, $why, $torn) = (0, '', 0);
my $ours = length $tag ? qr/\A\[launcher\] .* \(run \Q$tag\E\)\z/s : undef;
my $start = length $tag && length $envf ? qr/\A\[launcher\] starting \S+ \(run \Q$tag\E\)\z/ : undef;
my $exit = length $tag ? qr/\A\[launcher\] \S+ exited with code -?[0-9]+ \(run \Q$tag\E\)\z/ : undef;
sub stamp {
    my $t = now();
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
my $checked = time;
sub same {
    my ($a, $b) = @_;
    return @$a && @$b && $a->[0] == $b->[0] && $a->[1] == $b->[1];
}
sub openlog {
    require Fcntl;
    sysopen(my $fh, $log, Fcntl::O_WRONLY() | Fcntl::O_APPEND() | Fcntl::O_CREAT() | Fcntl::O_NOFOLLOW(), 0600) or return 0;
    open(STDOUT, '>>&', $fh) or return 0;
    close $fh;
    return 1;
}
sub reopen {
    my $ts = shift;
    my @f = stat($log);
    my @o = stat(STDOUT);
    return if same(\@f, \@o);
    return if -l $log;
    # Rotated by another writer of this log (once or more): follow it.
    my $rotated = 0;
    for (my $i = 1; $i <= $keep && !$rotated; $i++) {
        my @r = stat("$log.$i");
        $rotated = same(\@r, \@o);
    }
    # Its folders made again, 0700, one level at a time (File::Path costs
    # 6 ms to load, and some systems split it out of perl).
    (my $dir = $log) =~ s{/[^/]*\z}{};
    if (length $dir && !-d $dir) {
        my $p = '';
        for my $c (split m{/}, $dir) {
            $p .= "$c/";
            mkdir $p, 0700 unless -d $p;
        }
    }
    openlog() or return;
    put("$ts [launcher] the log file was removed while the process ran: created again; output written in between may be lost\n") unless $rotated;
}
my $rotfail = -1;
sub rotate {
    my @o = stat(STDOUT);
    return if !@o || $o[7] < $max || $rotfail == $sec;
    # Writers of one log rotate it one at a time (a lock on the file).
    flock(STDOUT, 2);
    my @f = stat($log);
    if (!same(\@f, \@o) || -l $log) {
        # Not ours to rename (removed, or rotated by another writer): the
        # check once a second handles it.
        flock(STDOUT, 8);
        return;
    }
    for (my $i = $keep - 1; $i >= 1; $i--) {
        rename("$log.$i", "$log." . ($i + 1)) if -e "$log.$i";
    }
    # A log that cannot be renamed (a read-only folder) keeps growing:
    # tried again a second later, never a lost line.
    my $ok = rename($log, "$log.1");
    flock(STDOUT, 8);
    $rotfail = $sec unless $ok && openlog();
}
sub emit {
    my $l = shift;
    my $ts = stamp();
    if (length $log && $sec != $checked) {
        $checked = $sec;
        reopen($ts);
    }
    if ($lost) {
        my $note = ($torn ? "\n" : '') . sprintf("%s [launcher] %d line%s of output lost: %s\n", $ts, $lost, $lost == 1 ? '' : 's', $why || 'write failed');
        if (!put($note)) { $lost++; return; }
        ($lost, $torn) = (0, 0);
    }
    if (put("$ts $l\n")) {
        rotate() if $max;
    } else {
        $lost++;
    }
}
my $ended = 0;
sub line {
    my $l = shift;
    $l =~ s/\n\z//;
    $l =~ s/\r+\z//;
    $l =~ s/\A.*\r//s;
    $l =~ s/\e\[[0-?]*[ -\/]*[@-~]//g;
    $l =~ s/\e\][^\a\e]*(?:\a|\e\\)?//g;
    $l =~ s/\e[()*+][0-9A-Za-z]//g;
    $l =~ s/\e[@-Z\\-_=>]//g;
    $l =~ s/[\x00-\x08\x0b-\x1f\x7f]//g;
    if ($ours) {
        my $i = index($l, '[launcher] ');
        if ($i > 0 && substr($l, $i) =~ $ours) {
            emit(substr($l, 0, $i));
            $l = substr($l, $i);
        }
    }
    emit($l);
    if ($start && $l =~ $start) {
        unlink $envf;
        $start = undef;
    }
    if ($exit && $l =~ $exit) {
        kill 'USR1', $pane if $pane && alive();
        $ended = 1;
    }
}
# Lines are cut from what sysread returns; the scan goes on where it
# stopped, so a megabyte without a newline costs time linear in its length.
my ($buf, $from, $rin) = ('', 0, '');
vec($rin, fileno(STDIN), 1) = 1;
while (1) {
    if ($pane) {
        my $n = select(my $rout = $rin, undef, undef, $ended ? 0.2 : 10);
        if ($n == 0) {
            last unless alive();
            # The pane may have missed the first USR1 (it came just before
            # its wait): again, for as long as the pane would wait (2 s).
            if ($ended && $ended < 10) {
                kill 'USR1', $pane;
                $ended++;
                next;
            }
            $ended = 0; # a line that only looked like the end
            next;
        }
    }
    my $r = sysread(STDIN, $buf, 65536, length $buf);
    # EINTR is 4 on every Unix; %! would load Errno (0.4 ms per pane).
    next if !defined $r && $! == 4;
    last unless $r;
    while ((my $i = index($buf, "\n", $from)) >= 0) {
        line(substr($buf, 0, $i + 1, ''));
        $from = 0;
    }
    $from = length $buf;
}
line($buf) if length $buf;
