/*
 * listen_fds.c — listening sockets that outlive a gateway. The launcher binds
 * the public port and each gateway it starts inherits the socket (made
 * inheritable only for the length of that spawn), or systemd passes it
 * (LISTEN_FDS); a gateway that dies then leaves new connections waiting in
 * the kernel's queue for the next one, instead of refused.
 *
 * Style: 0 or -errno; no state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#define HP_EXPORT __attribute__((visibility("default")))

/* 1 when fd is a listening TCP socket (IPv4 or IPv6), 0 when it is another
 * kind of fd, -errno when it is not an open fd. */
HP_EXPORT int hp_is_tcp_listener(int fd) {
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0)
        return errno == ENOTSOCK ? 0 : -errno;
    if (!v) return 0;
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0) return -errno;
    if (v != SOCK_STREAM) return 0;
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0) return -errno;
    return v == AF_INET || v == AF_INET6;
}

/* Let fd pass to the programs this process executes (on != 0), or not. */
HP_EXPORT int hp_set_inheritable(int fd, int on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return -errno;
    flags = on ? flags & ~FD_CLOEXEC : flags | FD_CLOEXEC;
    return fcntl(fd, F_SETFD, flags) < 0 ? -errno : 0;
}

/* Make fd non-blocking (a socket systemd passes is blocking by default). */
HP_EXPORT int hp_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ? -errno : 0;
}
