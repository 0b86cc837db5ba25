#!/usr/bin/php-cgi
<?php
// Dual-mode hello: the same file runs as classic CGI and as a FastCGI worker.
// php-cgi decides by itself: if fd 0 is a listening socket (getpeername fails
// with ENOTCONN) it serves FastCGI requests in a loop, otherwise it runs once as
// CGI (then it needs REDIRECT_STATUS=200 and SCRIPT_FILENAME, which servers set).
// php_sapi_name() is "cgi-fcgi" either way; only FastCGI adds $_SERVER['FCGI_ROLE'].
// PHP resets all variables between requests, so the per-process request count
// lives in a small per-uid-and-pid file in the temp dir (FastCGI only; CGI is
// always 1), e.g. /tmp/cgi-testbed-hello-php-33-1234.
// Run FastCGI workers with PHP_FCGI_CHILDREN=0 so php-cgi does not fork children.

header_remove('X-Powered-By');

$fastcgi = isset($_SERVER['FCGI_ROLE']);
$pid = getmypid();

function requests_served($pid)
{
    // Key the count to this process: a pid can be reused by a later process, so
    // the file also records the process start time from /proc and resets on change.
    $start = '';
    $stat = @file_get_contents('/proc/self/stat');
    if ($stat !== false) {
        $fields = explode(' ', substr($stat, strrpos($stat, ')') + 2));
        $start = isset($fields[19]) ? $fields[19] : '';
    }
    // The uid keeps workers of different users (root, www-data) apart.
    $uid = function_exists('posix_geteuid') ? posix_geteuid() : getmyuid();
    $path = sys_get_temp_dir() . '/cgi-testbed-hello-php-' . $uid . '-' . $pid;
    $fh = @fopen($path, 'c+');
    if ($fh === false) {
        return 0; // cannot count; report 0 rather than fail the request
    }
    flock($fh, LOCK_EX);
    $parts = explode(' ', trim(stream_get_contents($fh)));
    $count = (count($parts) == 2 && $parts[0] === $start) ? (int)$parts[1] : 0;
    $count++;
    ftruncate($fh, 0);
    rewind($fh);
    fwrite($fh, $start . ' ' . $count . "\n");
    fflush($fh);
    flock($fh, LOCK_UN);
    fclose($fh);
    return $count;
}

$requests = $fastcgi ? requests_served($pid) : 1;

$body = "Hello from PHP\n"
    . "pid: $pid\n"
    . "requests: $requests\n"
    . 'mode: ' . ($fastcgi ? 'fastcgi' : 'cgi') . "\n"
    . 'method: ' . (isset($_SERVER['REQUEST_METHOD']) ? $_SERVER['REQUEST_METHOD'] : '') . "\n"
    . 'query: ' . (isset($_SERVER['QUERY_STRING']) ? $_SERVER['QUERY_STRING'] : '') . "\n";

header('Content-Type: text/plain; charset=utf-8');
header('Content-Length: ' . strlen($body));
echo $body;
