/* The per-packet floor for benches/compare.sh: a UDP "server" that does no DNS work at all. It
 * sends every datagram back to its sender with the QR bit set (dnsperf counts it as an answer),
 * one thread, blocking socket.
 *
 *   reflector ADDR PORT single   recvfrom + sendto, one packet per system call
 *   reflector ADDR PORT mmsg     recvmmsg + sendmmsg, up to 64 packets per system call
 *
 * Built by compare.sh with `cc -O2`; what a DNS server spends per query beyond this is the DNS
 * work (and its way of doing I/O).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define SIZE 2048

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDR PORT single|mmsg\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (fd < 0 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("reflector: socket/bind");
        return 1;
    }
    if (strcmp(argv[3], "single") == 0) {
        static unsigned char buf[SIZE];
        for (;;) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
            if (n < 12) continue;
            buf[2] |= 0x80;
            sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
        }
    }
    static unsigned char bufs[BATCH][SIZE];
    static struct sockaddr_in from[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr msgs[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = SIZE;
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                              .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        /* Block for the first packet, take whatever else is already queued. */
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) {
            bufs[i][2] |= 0x80;
            iov[i].iov_len = msgs[i].msg_len;
        }
        int sent = 0;
        while (sent < n) {
            int k = sendmmsg(fd, msgs + sent, (unsigned)(n - sent), 0);
            if (k <= 0) break;
            sent += k;
        }
    }
}
