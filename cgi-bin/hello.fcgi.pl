#!/usr/bin/perl
# Dual-mode hello with the FCGI module (Debian: libfcgi-perl).
# As FastCGI (fd 0 is a listening socket) Accept() waits for each request and the
# loop serves many requests in this one process. As CGI (stdin is a pipe, a file
# or /dev/null) the first Accept() returns the process's own CGI environment and
# the second returns -1, so the script answers once and exits.
use strict;
use warnings;
use FCGI;

my $req = FCGI::Request();
my $requests = 0;

while ($req->Accept() >= 0) {
    $requests++;
    my $mode = $req->IsFastCGI() ? 'fastcgi' : 'cgi';
    my $body = "Hello from Perl\n"
        . "pid: $$\n"
        . "requests: $requests\n"
        . "mode: $mode\n"
        . 'method: ' . ($ENV{REQUEST_METHOD} // '') . "\n"
        . 'query: ' . ($ENV{QUERY_STRING} // '') . "\n";
    print "Content-Type: text/plain; charset=utf-8\r\n",
          'Content-Length: ', length($body), "\r\n",
          "\r\n",
          $body;
}
