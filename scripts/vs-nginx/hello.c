/* The C side of the comparison: a libfcgi "hello" worker, as nginx drives it. */
#include <fcgi_stdio.h>

int main(void) {
    int served = 0;
    while (FCGI_Accept() >= 0) {
        served++;
        printf("Content-Type: text/plain\r\n\r\nHello from C, request %d\n", served);
    }
    return 0;
}
