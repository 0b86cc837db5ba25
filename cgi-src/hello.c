/* The smallest CGI program in C: a header, a blank line, a body. The report
 * compiles it with `cc -O2 -static` (when a C compiler is there) and runs it
 * beside hello-rs and the sh hello: what starting a compiled program costs. */
#include <stdio.h>

int main(void)
{
    fputs("Content-Type: text/plain\r\n\r\nHello, world!\n", stdout);
    return 0;
}
