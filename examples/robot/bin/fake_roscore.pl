#!/usr/bin/perl
# A stand-in for roscore: after a short start-up it listens on a TCP port
# and answers every HTTP request with "200 ok" (the /health of a real
# stack), logging what it does. Usage: fake_roscore.pl PORT
use strict;
use IO::Socket::INET;
$| = 1;
my $port = shift // 11411;
print "roscore: loading parameters\n";
select(undef, undef, undef, 0.5);
my $srv = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port, Listen => 16, ReuseAddr => 1)
    or die "roscore: cannot listen on $port: $!\n";
print "roscore: started core service on port $port\n";
while (my $c = $srv->accept) {
    my $req = <$c> // "";
    while (my $l = <$c>) { last if $l =~ /^\r?\n$/ }
    print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n";
    close $c;
}
