/* framegen: 64-byte UDP/IPv4 frames out of an interface through AF_PACKET, at full speed or a fixed rate.
 *
 *   framegen IFACE DST_MAC DST_IP SRC_IP RATE SECONDS     (RATE 0: as fast as it can)
 *
 * Frames are built once and sent in batches of 64 with sendmmsg() on a packet socket that bypasses
 * the qdisc, so the cost per frame is the kernel's, not this program's. Prints the frames sent.
 * Written for bench/vswitchd_fastpath.py, which compiles it at run time.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define FRAME 60

static uint16_t csum(const void *data, size_t len) {
    const uint8_t *p = data;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)p[i] << 8 | p[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: framegen IFACE DST_MAC DST_IP SRC_IP RATE SECONDS\n");
        return 2;
    }
    double rate = atof(argv[5]), seconds = atof(argv[6]);
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { perror("SIOCGIFHWADDR"); return 1; }
    uint8_t frame[FRAME] = {0};
    unsigned m[6];
    if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        fprintf(stderr, "bad MAC %s\n", argv[2]);
        return 2;
    }
    for (int i = 0; i < 6; i++) frame[i] = (uint8_t)m[i];
    memcpy(frame + 6, ifr.ifr_hwaddr.sa_data, 6);
    frame[12] = 0x08;
    uint8_t *ip = frame + 14, *udp = frame + 34;
    ip[0] = 0x45; ip[3] = 46; ip[8] = 64; ip[9] = 17;            /* 20 IP + 8 UDP + 18 payload */
    inet_pton(AF_INET, argv[4], ip + 12);
    inet_pton(AF_INET, argv[3], ip + 16);
    uint16_t c = csum(ip, 20); ip[10] = c >> 8; ip[11] = c & 0xff;
    udp[0] = 0x9c; udp[1] = 0x40; udp[2] = 0x1e; udp[3] = 0x61;   /* 40000 -> 7777 */
    udp[5] = 26;                                                   /* UDP checksum 0: none */
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[1]), .sll_halen = 6};
    memcpy(to.sll_addr, frame, 6);
    struct iovec iov = {.iov_base = frame, .iov_len = FRAME};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof to;
    }
    int batch = BATCH;
    if (rate > 0 && rate < 200000) batch = 8;
    double start = now(), end = start + seconds;
    unsigned long long sent = 0;
    for (;;) {
        double t = now();
        if (t >= end) break;
        if (rate > 0) {
            double due = start + sent / rate;
            if (t < due) {
                struct timespec ts = {0, (long)((due - t) * 1e9)};
                if (ts.tv_nsec > 20000) nanosleep(&ts, NULL);
                continue;
            }
        }
        int n = sendmmsg(fd, msgs, batch, 0);
        if (n > 0) sent += (unsigned long long)n;
    }
    printf("%llu\n", sent);
    return 0;
}
