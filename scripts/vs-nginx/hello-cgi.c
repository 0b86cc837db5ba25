/* The smallest CGI program: one write, no libc start-up beyond what -static keeps.
 * Built with `gcc -O2 -static`, it measures what starting a process costs the
 * server that starts it, not what a dynamic loader or an interpreter costs. */
#include <unistd.h>

int main(void) {
    static const char answer[] = "Content-Type: text/plain\r\n\r\nHello from C\n";
    return write(1, answer, sizeof answer - 1) < 0;
}
