/* The floor for one handoff hop (bench/wake_latency.ts): two processes
 * ping-pong a 480-byte message over a Unix SOCK_SEQPACKET pair, the ping
 * carrying an fd (SCM_RIGHTS) that the other side closes, with blocking
 * sendmsg/recvmsg: what the kernel and the scheduler cost alone.
 * argv: rounds, then "same" (both processes on CPU 0), "cross" (CPU 0 and
 * CPU 1) or "free" (the scheduler decides; the default).
 * Prints: floor {"p50":..,"p90":..,"p99":..,"mean":..} in µs per hop. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char msg[480];

static void send_fd(int s, int fd) {
    struct iovec iov = { msg, sizeof msg };
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (fd >= 0) {
        memset(cbuf, 0, sizeof cbuf);
        m.msg_control = cbuf;
        m.msg_controllen = sizeof cbuf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    if (sendmsg(s, &m, 0) < 0) { perror("sendmsg"); exit(1); }
}

static int recv_fd(int s) {
    char buf[65536];
    struct iovec iov = { buf, sizeof buf };
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf };
    ssize_t n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
    if (n <= 0) return -2;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    int fd = -1;
    if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) perror("sched_setaffinity");
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    const char *mode = argc > 2 ? argv[2] : "free";
    int same = !strcmp(mode, "same"), cross = !strcmp(mode, "cross");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0) { perror("socketpair"); return 1; }
    pid_t pid = fork();
    if (pid == 0) {
        if (same) pin(0);
        if (cross) pin(1);
        close(sv[0]);
        for (;;) {
            int fd = recv_fd(sv[1]);
            if (fd == -2) _exit(0);
            if (fd >= 0) close(fd);
            send_fd(sv[1], -1);
        }
    }
    if (same || cross) pin(0);
    close(sv[1]);
    int payload = socket(AF_INET, SOCK_STREAM, 0);
    double *t = malloc(sizeof(double) * rounds);
    for (int i = 0; i < rounds; i++) {
        double t0 = now_us();
        send_fd(sv[0], payload);
        recv_fd(sv[0]);
        t[i] = (now_us() - t0) / 2;
    }
    close(sv[0]);
    waitpid(pid, NULL, 0);
    int skip = rounds > 2000 ? 1000 : 0, n = rounds - skip;
    qsort(t + skip, n, sizeof(double), cmp);
    double sum = 0;
    for (int i = skip; i < rounds; i++) sum += t[i];
    printf("floor {\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"mean\":%.1f}\n", t[skip + n / 2],
           t[skip + n * 9 / 10], t[skip + n * 99 / 100], sum / n);
    return 0;
}
