/*
 * hotpotato.c — the small native helper behind Hot Potato.
 *
 * Owns what JavaScript cannot do through Deno's own APIs: listening and
 * accepting non-blocking sockets by fd, passing fds with SCM_RIGHTS over
 * Unix SOCK_SEQPACKET sockets, reading peer credentials, and one epoll thread
 * per process that wakes JavaScript when fds are ready.
 *
 * Style: small functions, one system task each; 0 or a value on success,
 * -errno on failure. The only shared state is the epoll loop's struct.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define HP_EXPORT __attribute__((visibility("default")))

/* ---------- TCP ---------- */

static int set_reuse(int fd, int reuse_port) {
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) return -errno;
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        return -errno;
    return 0;
}

/* Listen on host:port (port 0 picks a free one); with reuse_port, other
 * sockets of this user with SO_REUSEPORT may listen on the same port and the
 * kernel spreads new connections over them. Returns the fd or -errno. */
HP_EXPORT int hp_tcp_listen(const char *host, int port, int backlog, int reuse_port) {
    struct addrinfo hints, *res = NULL, *ai;
    char portstr[16];
    int fd = -EADDRNOTAVAIL, rv;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    rv = getaddrinfo(host && host[0] ? host : NULL, portstr, &hints, &res);
    if (rv != 0) return rv == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
    for (ai = res; ai; ai = ai->ai_next) {
        int s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0) { fd = -errno; continue; }
        if ((rv = set_reuse(s, reuse_port)) < 0 || bind(s, ai->ai_addr, ai->ai_addrlen) < 0 ||
            listen(s, backlog) < 0) {
            fd = rv < 0 ? rv : -errno;
            close(s);
            continue;
        }
        fd = s;
        break;
    }
    freeaddrinfo(res);
    return fd;
}

/* The local port a socket is bound to, or -errno. */
HP_EXPORT int hp_local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

static void format_peer(const struct sockaddr_storage *ss, char *out, int cap) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (cap <= 0) return;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%d", ip, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%d", ip, port);
    } else {
        snprintf(out, cap, "unix");
    }
}

/* Accept one connection, non-blocking and close-on-exec, with TCP_NODELAY.
 * Writes the peer address as a NUL-terminated "ip:port" into addr (cap bytes).
 * Returns the fd, or -errno (-EAGAIN when none is waiting). */
HP_EXPORT int hp_accept(int lfd, char *addr, int cap) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int one = 1;
    int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return -errno;
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    format_peer(&ss, addr, cap);
    return fd;
}

/* ---------- Unix SOCK_SEQPACKET control channel ---------- */

static int fill_unix_addr(struct sockaddr_un *sa, const char *path) {
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) return -ENAMETOOLONG;
    strcpy(sa->sun_path, path);
    return 0;
}

/* Whether a process accepts connections on the SOCK_SEQPACKET socket at sa:
 * 1 when one does (a full backlog, EAGAIN, counts as yes), 0 when the socket
 * refuses (ECONNREFUSED: no process listens there any more), or -errno
 * (-ENOENT when there is no file, -EPROTOTYPE for a socket of another type). */
static int unix_answers(const struct sockaddr_un *sa) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), rv = 1;
    if (fd < 0) return -errno;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0)
        rv = errno == ECONNREFUSED ? 0 : errno == EAGAIN ? 1 : -errno;
    close(fd);
    return rv;
}

/* Make path free for a new socket. Nothing there: fine. A socket file whose
 * process is gone (connecting to it is refused) is stale and removed. A
 * socket that answers is never touched (-EADDRINUSE), nor is a file that is
 * not a socket (-ENOTSOCK); any other failure is returned as -errno. */
static int unix_clear_stale(const char *path, const struct sockaddr_un *sa) {
    struct stat st;
    int rv;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) return -ENOTSOCK;
    rv = unix_answers(sa);
    if (rv == 1) return -EADDRINUSE;
    if (rv < 0) return rv == -ENOENT ? 0 : rv;
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

/* Listen on a Unix SOCK_SEQPACKET socket at path; the file gets `mode`
 * (0600: this user only; 0660: the directory's group too, the roles' shared
 * socket group). A stale socket file is replaced; a live one is not (see
 * unix_clear_stale). Returns the fd or -errno (-EADDRINUSE when a process
 * answers at path). */
HP_EXPORT int hp_unix_listen(const char *path, int backlog, int mode) {
    struct sockaddr_un sa;
    int rv = fill_unix_addr(&sa, path), fd;
    if (rv < 0) return rv;
    if ((rv = unix_clear_stale(path, &sa)) < 0) return rv;
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    mode_t old = umask(0077);
    rv = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rv < 0 || chmod(path, (mode_t)(mode & 0660)) < 0 || listen(fd, backlog) < 0) {
        rv = -errno;
        close(fd);
        return rv;
    }
    return fd;
}

/* Listen on a new Unix SOCK_SEQPACKET socket that takes path over from a
 * live one (a gateway's successor): bound first at a private name beside it
 * (path + ".new"), then renamed over path in one step, so a process that
 * connects to path reaches the old socket or the new one, never nothing.
 * Connections already made to the old socket stay as they are. The file gets
 * `mode`, as in hp_unix_listen. Returns the fd or -errno. */
HP_EXPORT int hp_unix_listen_over(const char *path, int backlog, int mode) {
    char tmp[sizeof ((struct sockaddr_un *)0)->sun_path];
    struct sockaddr_un sa;
    int rv, fd;
    if (snprintf(tmp, sizeof tmp, "%s.%ld.new", path, (long)getpid()) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    if ((rv = fill_unix_addr(&sa, tmp)) < 0) return rv;
    if (unlink(tmp) < 0 && errno != ENOENT) return -errno;
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    mode_t old = umask(0077);
    rv = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rv < 0 || chmod(tmp, (mode_t)(mode & 0660)) < 0 || listen(fd, backlog) < 0 ||
        rename(tmp, path) < 0) {
        rv = -errno;
        close(fd);
        unlink(tmp);
        return rv;
    }
    return fd;
}

/* A second fd for the same open socket (close-on-exec), to pass to another
 * process while this one keeps its own. Returns the fd or -errno. */
HP_EXPORT int hp_dup(int fd) {
    int rv = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return rv < 0 ? -errno : rv;
}

/* Read a small secret file that others may not read: owned by this user or
 * by root (a Kubernetes secret volume), no permission bits for others (else
 * -EPERM), at most cap bytes (else -EFBIG). Returns the bytes read or -errno. */
HP_EXPORT int hp_read_private_file(const char *path, uint8_t *buf, int cap) {
    struct stat st;
    /* Symlinks are followed (a Kubernetes secret file is one); what is
     * opened must be a regular file (O_NONBLOCK: a FIFO cannot hang us). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), n = 0, rv;
    if (fd < 0) return -errno;
    if (fstat(fd, &st) < 0) rv = -errno;
    else if (!S_ISREG(st.st_mode)) rv = -EINVAL;
    else if ((st.st_uid != getuid() && st.st_uid != 0) || (st.st_mode & 007)) rv = -EPERM;
    else if (st.st_size > cap) rv = -EFBIG;
    else rv = 0;
    while (rv == 0 && n < cap) {
        ssize_t r = read(fd, buf + n, (size_t)(cap - n));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rv = -errno;
        if (r <= 0) break;
        n += (int)r;
    }
    close(fd);
    return rv < 0 ? rv : n;
}

/* The identity of the file at path (not following a symlink): its device
 * and inode numbers in out[0] and out[1]. A socket's fd has an inode of its
 * own, so a listener remembers its file's identity after bind and compares
 * later to learn whether path still names its socket. Returns 0 or -errno. */
HP_EXPORT int hp_file_id(const char *path, uint64_t *out) {
    struct stat st;
    if (lstat(path, &st) < 0) return -errno;
    out[0] = (uint64_t)st.st_dev;
    out[1] = (uint64_t)st.st_ino;
    return 0;
}

/* Connect to a Unix SOCK_SEQPACKET socket without blocking: a Unix connect
 * completes at once, or fails with -EAGAIN when the listener's backlog is
 * full (try again later). The returned fd is non-blocking. */
HP_EXPORT int hp_unix_connect(const char *path) {
    struct sockaddr_un sa;
    int rv = fill_unix_addr(&sa, path), fd;
    if (rv < 0) return rv;
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        rv = -errno;
        close(fd);
        return rv;
    }
    return fd;
}

/* The uid of the process at the other end of a Unix socket, or -errno. */
HP_EXPORT int hp_peer_uid(int fd) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
    return (int)cred.uid;
}

/* The pid of the process at the other end of a Unix socket, or -errno. */
HP_EXPORT int hp_peer_pid(int fd) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
    return (int)cred.pid;
}

/* Send one message, with fd attached through SCM_RIGHTS when fd >= 0.
 * Never blocks, never raises SIGPIPE. Returns bytes sent or -errno. */
HP_EXPORT int hp_send_msg(int sock, const uint8_t *buf, uint32_t len, int fd) {
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctrl;
    struct msghdr msg;
    ssize_t n;

    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *c;
        memset(&ctrl, 0, sizeof ctrl);
        msg.msg_control = ctrl.buf;
        msg.msg_controllen = sizeof ctrl.buf;
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -errno : (int)n;
}

/* Close every fd carried by a received message's SCM_RIGHTS except the first,
 * which is stored in *fd_out (or closed too when keep is 0). */
static void take_fds(struct msghdr *msg, int32_t *fd_out, int keep) {
    struct cmsghdr *c;
    for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (keep && *fd_out < 0) *fd_out = fd;
            else close(fd);
        }
    }
}

#define HP_FD_LOST (-2)

/* After recvmsg returned 0 on a SOCK_SEQPACKET socket: the end of the
 * stream, or an empty record? Linux sets no flag to tell them apart, so: at
 * the end, the peer has shut down (POLLRDHUP) and nothing is left to read;
 * checked in that order, so a record that came before the peer left is
 * still read. (FIONREAD, alias SIOCINQ, counts the bytes of every queued
 * record; records of 0 bytes left behind a departed peer go with it.) */
static int seqpacket_at_end(int sock) {
    struct pollfd p = { .fd = sock, .events = POLLRDHUP };
    int queued = 0;
    if (poll(&p, 1, 0) < 0) return 1; /* cannot tell: take it as the end */
    if (!(p.revents & (POLLRDHUP | POLLHUP))) return 0;
    return ioctl(sock, FIONREAD, &queued) < 0 || queued == 0;
}

/* Receive one message into buf (cap bytes); a passed fd goes to *fd_out
 * (-1 when none, HP_FD_LOST when one was sent but could not be received). Extra fds are closed. A message larger than cap is
 * dropped whole, its fds closed, and -EMSGSIZE returned; an empty one (0
 * bytes, a bad message, not the end) likewise, with -EBADMSG. Returns the
 * message length (0 means the peer closed), or -errno (-EAGAIN when none
 * waits). */
HP_EXPORT int hp_recv_msg(int sock, uint8_t *buf, uint32_t cap, int32_t *fd_out) {
    struct iovec iov = { .iov_base = buf, .iov_len = cap };
    union { char buf[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } ctrl;
    struct msghdr msg;
    ssize_t n;

    *fd_out = -1;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.buf;
    msg.msg_controllen = sizeof ctrl.buf;
    n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return -errno;
    if (msg.msg_flags & MSG_TRUNC) {
        take_fds(&msg, fd_out, 0);
        *fd_out = -1;
        return -EMSGSIZE;
    }
    if (n == 0) {
        /* The end of the stream carries no fd; an empty record may. */
        int carried;
        take_fds(&msg, fd_out, 1);
        carried = *fd_out >= 0 || (msg.msg_flags & MSG_CTRUNC);
        if (*fd_out >= 0) close(*fd_out);
        *fd_out = -1;
        return !carried && seqpacket_at_end(sock) ? 0 : -EBADMSG;
    }
    take_fds(&msg, fd_out, 1);
    /* The message is whole but the fd it carried could not be installed
     * (this process is at its fd limit): the kernel discarded it. */
    if ((msg.msg_flags & MSG_CTRUNC) && *fd_out < 0) *fd_out = HP_FD_LOST;
    return (int)n;
}

/* Most messages one hp_recv_batch() takes. */
#define HP_BATCH_MAX 64

/* Receive up to max (<= HP_BATCH_MAX) messages in one recvmmsg(2): message
 * i goes to buf + i * cap, and out[2i], out[2i+1] get what hp_recv_msg()
 * would have returned for it and its fd (-1, an fd, or HP_FD_LOST), with
 * the same rules (-EMSGSIZE, -EBADMSG, 0 for the end of the stream).
 * Returns how many entries were filled (fewer than max: nothing more was
 * queued, so an edge-triggered watcher need not read again), or -errno
 * (-EAGAIN when nothing waits). At the end of the stream every slot reads
 * 0: entries after the first 0 repeat it. */
HP_EXPORT int hp_recv_batch(int sock, uint8_t *buf, uint32_t cap, uint32_t max, int32_t *out) {
    struct mmsghdr mm[HP_BATCH_MAX];
    struct iovec iov[HP_BATCH_MAX];
    union { char buf[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } ctrl[HP_BATCH_MAX];
    int n, i, at_end = -1;

    if (max < 1 || max > HP_BATCH_MAX) return -EINVAL;
    memset(mm, 0, sizeof(struct mmsghdr) * max);
    for (i = 0; i < (int)max; i++) {
        iov[i].iov_base = buf + (size_t)i * cap;
        iov[i].iov_len = cap;
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_control = ctrl[i].buf;
        mm[i].msg_hdr.msg_controllen = sizeof ctrl[i].buf;
    }
    n = recvmmsg(sock, mm, max, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
    if (n < 0) return -errno;
    for (i = 0; i < n; i++) {
        struct msghdr *msg = &mm[i].msg_hdr;
        int32_t *len = &out[2 * i], *fd = &out[2 * i + 1];
        *fd = -1;
        if (msg->msg_flags & MSG_TRUNC) {
            take_fds(msg, fd, 0);
            *fd = -1;
            *len = -EMSGSIZE;
        } else if (mm[i].msg_len == 0) {
            /* An empty record, or the end: the end only when nothing but
             * zeros follows in this batch and the peer has gone. */
            int carried, later = 0;
            take_fds(msg, fd, 1);
            carried = *fd >= 0 || (msg->msg_flags & MSG_CTRUNC);
            if (*fd >= 0) close(*fd);
            *fd = -1;
            for (int j = i + 1; j < n; j++) later |= mm[j].msg_len != 0;
            if (!carried && !later && at_end < 0) at_end = seqpacket_at_end(sock);
            *len = !carried && !later && at_end == 1 ? 0 : -EBADMSG;
        } else {
            take_fds(msg, fd, 1);
            if ((msg->msg_flags & MSG_CTRUNC) && *fd < 0) *fd = HP_FD_LOST;
            *len = (int32_t)mm[i].msg_len;
        }
    }
    return n;
}

/* close(2), returning -errno. */
HP_EXPORT int hp_close(int fd) {
    return close(fd) < 0 ? -errno : 0;
}

/* shutdown(fd, SHUT_WR): our side is done sending (a FIN after what is
 * queued), while the peer's bytes can still be read. Returns 0 or -errno. */
HP_EXPORT int hp_shutdown_write(int fd) {
    return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

/* An fd that holds one slot of the open-file table in reserve (on
 * /dev/null): closed to make room when an accept fails with EMFILE. */
HP_EXPORT int hp_spare_fd(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* The real uid of this process. */
HP_EXPORT int hp_uid(void) {
    return (int)getuid();
}

/* Zero len bytes at p in a way the compiler cannot elide. */
HP_EXPORT void hp_memzero(void *p, uint32_t len) {
    explicit_bzero(p, len);
}

/* ---------- Reading TLS records in one system call ---------- */

/*
 * wolfSSL reads a record in two recv() calls (its 5-byte header, then its
 * body) and a third to learn that nothing more has come. A record reader
 * takes everything the socket has in one recv() into its own buffer and
 * gives wolfSSL whole records only: wolfSSL's receive callback is served from
 * the buffer, and a record is handed out only once all of it is there. So
 * wolfSSL never holds part of a record, and the session can be exported
 * whenever it is not in the middle of one; the records read ahead (a
 * pipelined request, part of the next) are carried with the connection
 * (hp_rx_take / hp_rx_put).
 *
 * A recv() that returns less than it asked for leaves the socket empty; the
 * reader then answers "want read" without another system call until
 * hp_rx_readable() says the socket had a new edge. A new reader starts that
 * way too: its socket is about to be added to the epoll set, and adding an
 * fd that already has data reports an edge at once.
 */
#define RX_CAP 20480            /* one TLS 1.2 record at most is 5 + 16384 + 2048 */
#define RX_HEADER 5
#define CBIO_ERR_GENERAL (-1)   /* wolfSSL's WOLFSSL_CBIO_ERR_* values */
#define CBIO_ERR_WANT_READ (-2)
#define CBIO_ERR_CONN_RST (-3)
#define CBIO_ERR_CONN_CLOSE (-5)

/* Buffers lent to readers while they hold bytes: a request borrows one and
 * gives it back when wolfSSL has taken everything, so the allocator sees no
 * 20 KiB malloc/free per request. Used from one thread (JavaScript's). */
#define RX_POOL_MAX 64
struct hp_rx_pool {
    int nfree;
    uint8_t *free[RX_POOL_MAX];
};

struct hp_rx {
    int fd;
    int drained;              /* the last recv() emptied the socket */
    int peer_closed;          /* the peer sent FIN: read until recv() says so */
    uint32_t start, end;      /* buffered bytes: buf[start..end) */
    uint32_t record_left;     /* bytes of the record being handed out */
    uint8_t *buf;             /* RX_CAP bytes while anything is buffered */
    struct hp_rx_pool *pool;
};

/* A pool for the readers of one process, or NULL (out of memory). */
HP_EXPORT struct hp_rx_pool *hp_rx_pool_new(void) {
    return calloc(1, sizeof(struct hp_rx_pool));
}

static uint8_t *pool_get(struct hp_rx_pool *p) {
    return p->nfree > 0 ? p->free[--p->nfree] : malloc(RX_CAP);
}

/* The buffer holds ciphertext only (what the network carried), so it is
 * reused or freed without zeroing. */
static void pool_put(struct hp_rx_pool *p, uint8_t *buf) {
    if (p->nfree < RX_POOL_MAX) {
        p->free[p->nfree++] = buf;
    } else {
        free(buf);
    }
}

/* A reader for fd drawing buffers from pool, or NULL (out of memory). */
HP_EXPORT struct hp_rx *hp_rx_new(struct hp_rx_pool *pool, int fd) {
    struct hp_rx *rx = calloc(1, sizeof *rx);
    if (!rx) return NULL;
    rx->fd = fd;
    rx->pool = pool;
    rx->drained = 1; /* until the first readable edge */
    return rx;
}

static void rx_drop_buffer(struct hp_rx *rx) {
    if (!rx->buf) return;
    pool_put(rx->pool, rx->buf);
    rx->buf = NULL;
    rx->start = rx->end = 0;
}

/* Release the reader and its buffer. */
HP_EXPORT void hp_rx_free(struct hp_rx *rx) {
    if (!rx) return;
    rx_drop_buffer(rx);
    free(rx);
}

/* The socket had a new readable edge: the next need for bytes reads it.
 * peer_closed: the edge came with EPOLLRDHUP/EPOLLHUP. The peer's last bytes
 * and its FIN can share one edge, and no edge follows: from then on a short
 * read does not mean "wait", so the next need reads again and sees the end
 * of the stream (a client that half-closes mid-record is closed at once). */
HP_EXPORT void hp_rx_readable(struct hp_rx *rx, int peer_closed) {
    rx->drained = 0;
    if (peer_closed) rx->peer_closed = 1;
}

/* 1 when wolfSSL is between records (the session may be exported). */
HP_EXPORT int hp_rx_at_boundary(struct hp_rx *rx) { return rx->record_left == 0; }

/* Bytes read from the socket that wolfSSL has not taken. */
HP_EXPORT int hp_rx_buffered(struct hp_rx *rx) { return (int)(rx->end - rx->start); }

/* Move the buffered bytes to out (for a handoff). Returns their count, or
 * -ENOSPC if cap is too small, or -EBUSY in the middle of a record. */
HP_EXPORT int hp_rx_take(struct hp_rx *rx, uint8_t *out, uint32_t cap) {
    uint32_t n = rx->end - rx->start;
    if (rx->record_left != 0) return -EBUSY;
    if (n > cap) return -ENOSPC;
    if (n > 0) memcpy(out, rx->buf + rx->start, n);
    rx_drop_buffer(rx);
    return (int)n;
}

static int rx_reserve(struct hp_rx *rx) {
    if (rx->buf) return 0;
    rx->buf = pool_get(rx->pool);
    return rx->buf ? 0 : -ENOMEM;
}

/* Put back bytes another process had read ahead (before any read).
 * Returns 0, or -EINVAL if something is buffered already or len is too big. */
HP_EXPORT int hp_rx_put(struct hp_rx *rx, const uint8_t *in, uint32_t len) {
    if (len == 0) return 0;
    if (rx->end != rx->start || len > RX_CAP) return -EINVAL;
    if (rx_reserve(rx) < 0) return -ENOMEM;
    memcpy(rx->buf, in, len);
    rx->start = 0;
    rx->end = len;
    return 0;
}

/* Bytes from start that wolfSSL may take now: the rest of the record being
 * handed out, or a whole next record if all of it is buffered. A header
 * announcing more than fits is let through: wolfSSL rejects it. */
static uint32_t rx_available(struct hp_rx *rx) {
    uint32_t have = rx->end - rx->start;
    if (rx->record_left > 0) return rx->record_left < have ? rx->record_left : have;
    if (have < RX_HEADER) return 0;
    const uint8_t *h = rx->buf + rx->start;
    uint32_t len = RX_HEADER + ((uint32_t)h[3] << 8 | h[4]);
    if (len > RX_CAP) len = have;
    if (have < len) return 0;
    rx->record_left = len;
    return len;
}

/* One recv() into the free end of the buffer. Returns the count, 0 at end of
 * stream, or -errno. */
static int rx_fill(struct hp_rx *rx) {
    int r = rx_reserve(rx);
    if (r < 0) return r;
    if (rx->start > 0) {
        memmove(rx->buf, rx->buf + rx->start, rx->end - rx->start);
        rx->end -= rx->start;
        rx->start = 0;
    }
    uint32_t room = RX_CAP - rx->end;
    if (room == 0) return -ENOBUFS; /* cannot happen: a full buffer holds a whole record */
    ssize_t n;
    do {
        n = recv(rx->fd, rx->buf + rx->end, room, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    rx->end += (uint32_t)n;
    if ((uint32_t)n < room && !rx->peer_closed) rx->drained = 1;
    return (int)n;
}

/* wolfSSL's receive callback (CallbackIORecv): ctx is the reader. */
static int rx_receive(void *ssl, char *out, int sz, void *ctx) {
    struct hp_rx *rx = ctx;
    (void)ssl;
    if (sz <= 0) return 0;
    for (;;) {
        uint32_t n = rx->buf ? rx_available(rx) : 0;
        if (n > 0) {
            if (n > (uint32_t)sz) n = (uint32_t)sz;
            memcpy(out, rx->buf + rx->start, n);
            rx->start += n;
            rx->record_left -= n;
            if (rx->start == rx->end) rx_drop_buffer(rx);
            return (int)n;
        }
        if (rx->drained) return CBIO_ERR_WANT_READ;
        int r = rx_fill(rx);
        if (r == -EAGAIN || r == -EWOULDBLOCK) {
            rx->drained = 1;
            return CBIO_ERR_WANT_READ;
        }
        if (r == 0) return CBIO_ERR_CONN_CLOSE;
        if (r == -ECONNRESET) return CBIO_ERR_CONN_RST;
        if (r < 0) return CBIO_ERR_GENERAL;
    }
}

/* The reader's buffer size (what a handoff's read-ahead may carry): the
 * TypeScript side's MAX_READ_AHEAD must equal it (tests/limits_test.ts). */
HP_EXPORT int hp_rx_capacity(void) { return RX_CAP; }

/* The callback's address, for wolfSSL_SSLSetIORecv(). */
HP_EXPORT void *hp_rx_callback(void) { return (void *)rx_receive; }

/* ---------- The epoll thread ---------- */

/*
 * One thread per process waits in epoll_wait and queues what it gets in a
 * ring that JavaScript drains (hp_loop_take). It never waits for JavaScript
 * to run: when JavaScript is idle (it said so with hp_loop_idle) the thread
 * writes a byte to a pipe that Deno's own event loop watches, which wakes
 * the JavaScript thread directly (one wake, where a thread-safe callback
 * made two threads meet: three). While JavaScript is busy the thread does
 * not wake again for each new event: it waits until JavaScript goes idle,
 * so that what arrives meanwhile comes in one epoll_wait, as one batch.
 *
 * Each event's data is the fd in its low 32 bits and the generation it was
 * watched with in the high 32 (JavaScript drops an event of a closed fd
 * whose number was reused meanwhile).
 */
struct hp_loop {
    int epfd;
    int stopfd;               /* eventfd that interrupts epoll_wait on stop */
    int wake_r, wake_w;       /* the pipe that wakes JavaScript */
    int max;                  /* capacity of scratch[] and out[] */
    uint32_t cap;             /* capacity of ring[] (a power of two) */
    _Atomic uint32_t head;    /* written by the thread */
    _Atomic uint32_t tail;    /* written by JavaScript */
    atomic_int js_idle;       /* JavaScript waits for a byte on the pipe */
    atomic_int ep_waiting;    /* the thread waits for JavaScript to go idle */
    atomic_int quiet;         /* JavaScript found nothing just before it went idle */
    atomic_int stopping;
    atomic_int finished;
    sem_t idle;               /* posted when JavaScript goes idle while the thread waits */
    pthread_t thread;
    struct epoll_event *ring;
    struct epoll_event *scratch; /* the thread's own epoll_wait array */
    struct epoll_event *out;     /* what hp_loop_take copies out, for JavaScript */
};

/* Wait until JavaScript goes idle (it drains the ring first). */
static void loop_wait_idle(struct hp_loop *l) {
    atomic_store(&l->ep_waiting, 1);
    /* It went idle before it could see the flag: take the flag back. */
    if (atomic_load(&l->js_idle) == 1 && atomic_exchange(&l->ep_waiting, 0) == 1) return;
    while (sem_wait(&l->idle) < 0 && errno == EINTR) {}
}

static void loop_wake_js(struct hp_loop *l) {
    uint8_t b = 1;
    /* A full pipe already wakes it. */
    if (write(l->wake_w, &b, 1) < 0) {}
}

/* Busy: JavaScript was still at work when the next events came. Then the
 * thread, having woken JavaScript, waits for it to go idle before it looks
 * again (what comes meanwhile is one batch), and checks without waiting
 * first: finding nothing ends the busy spell. At rest (one event at a time)
 * it goes straight back to epoll_wait: JavaScript's wake is the only one. */
static void *loop_main(void *arg) {
    struct hp_loop *l = arg;
    int busy = 0;
    while (!atomic_load(&l->stopping)) {
        uint32_t head = atomic_load(&l->head);
        uint32_t room = l->cap - (head - atomic_load(&l->tail));
        if (room == 0) {
            loop_wait_idle(l); /* full: JavaScript drains it before it idles */
            continue;
        }
        int want = room < (uint32_t)l->max ? (int)room : l->max;
        int n = epoll_wait(l->epfd, l->scratch, want, busy ? 0 : -1);
        if (n == 0) {
            busy = 0;
            continue;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (atomic_load(&l->stopping)) break;
        for (int i = 0; i < n; i++) l->ring[(head + (uint32_t)i) & (l->cap - 1)] = l->scratch[i];
        atomic_store(&l->head, head + (uint32_t)n);
        if (atomic_exchange(&l->js_idle, 0) == 1) {
            loop_wake_js(l);
            if (busy) loop_wait_idle(l);
        } else {
            busy = 1;
            loop_wait_idle(l);
        }
        if (atomic_exchange(&l->quiet, 0) == 1) busy = 0;
    }
    atomic_store(&l->finished, 1);
    return NULL;
}

/* Create the epoll set, its ring (ring_cap events, a power of two) and the
 * thread. Returns the loop or NULL with errno set. */
HP_EXPORT struct hp_loop *hp_loop_new(int max_events, int ring_cap) {
    struct hp_loop *l;
    struct epoll_event se = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
    int pipefd[2] = { -1, -1 };
    if (max_events < 1 || max_events > 65536 || ring_cap < max_events ||
        ring_cap > (1 << 20) || (ring_cap & (ring_cap - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->max = max_events;
    l->cap = (uint32_t)ring_cap;
    l->ring = calloc((size_t)ring_cap, sizeof(struct epoll_event));
    l->scratch = calloc((size_t)max_events, sizeof(struct epoll_event));
    l->out = calloc((size_t)max_events, sizeof(struct epoll_event));
    atomic_store(&l->js_idle, 1);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) == 0) {
        l->wake_r = pipefd[0];
        l->wake_w = pipefd[1];
    }
    if (!l->ring || !l->scratch || !l->out || l->epfd < 0 || l->stopfd < 0 || pipefd[0] < 0 ||
        sem_init(&l->idle, 0, 0) < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->stopfd, &se) < 0 ||
        pthread_create(&l->thread, NULL, loop_main, l) != 0) {
        int e = errno;
        if (l->epfd >= 0) close(l->epfd);
        if (l->stopfd >= 0) close(l->stopfd);
        if (pipefd[0] >= 0) { close(pipefd[0]); close(pipefd[1]); }
        free(l->ring);
        free(l->scratch);
        free(l->out);
        free(l);
        errno = e;
        return NULL;
    }
    return l;
}

/* The pipe's read end, for JavaScript to watch (Deno owns it from then on). */
HP_EXPORT int hp_loop_wake_fd(struct hp_loop *l) { return l->wake_r; }

/* Address of the array hp_loop_take() fills (12-byte packed entries). */
HP_EXPORT void *hp_loop_events(struct hp_loop *l) { return l->out; }

/* Move up to max queued events (at most the loop's max_events) into the
 * array of hp_loop_events(). Returns how many. */
HP_EXPORT int hp_loop_take(struct hp_loop *l) {
    uint32_t tail = atomic_load(&l->tail);
    uint32_t n = atomic_load(&l->head) - tail;
    if (n > (uint32_t)l->max) n = (uint32_t)l->max;
    for (uint32_t i = 0; i < n; i++) l->out[i] = l->ring[(tail + i) & (l->cap - 1)];
    atomic_store(&l->tail, tail + n);
    return (int)n;
}

/* JavaScript has drained the ring and goes idle: the next event writes to
 * the pipe. Returns 1, or 0 when events came meanwhile (take them first). */
HP_EXPORT int hp_loop_idle(struct hp_loop *l) {
    if (atomic_load(&l->ep_waiting) == 1) {
        /* The thread waits for us (a busy spell): look for what came
         * meanwhile ourselves, without waiting, rather than wake it to look
         * and then be woken through the pipe. The thread touches the ring
         * only after we post it. */
        uint32_t head = atomic_load(&l->head);
        uint32_t room = l->cap - (head - atomic_load(&l->tail));
        int want = room < (uint32_t)l->max ? (int)room : l->max;
        int n = want > 0 ? epoll_wait(l->epfd, l->out, want, 0) : 0;
        if (n > 0) {
            for (int i = 0; i < n; i++) l->ring[(head + (uint32_t)i) & (l->cap - 1)] = l->out[i];
            atomic_store(&l->head, head + (uint32_t)n);
            return 0;
        }
        atomic_store(&l->quiet, 1); /* nothing there: the thread need not look again */
    }
    atomic_store(&l->js_idle, 1);
    if (atomic_exchange(&l->ep_waiting, 0) == 1) sem_post(&l->idle);
    if (atomic_load(&l->head) != atomic_load(&l->tail) && atomic_exchange(&l->js_idle, 0) == 1) {
        return 0;
    }
    return 1;
}

static int loop_ctl(struct hp_loop *l, int op, int fd, uint32_t events, uint32_t gen) {
    struct epoll_event e = {
        .events = events,
        .data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)gen << 32),
    };
    return epoll_ctl(l->epfd, op, fd, &e) < 0 ? -errno : 0;
}

/* Watch fd for events (EPOLLIN=1, EPOLLOUT=4, ...), its events tagged with
 * gen. Returns 0 or -errno. */
HP_EXPORT int hp_loop_add(struct hp_loop *l, int fd, uint32_t events, uint32_t gen) {
    return loop_ctl(l, EPOLL_CTL_ADD, fd, events, gen);
}

/* Change the events watched for fd (same generation). Returns 0 or -errno. */
HP_EXPORT int hp_loop_mod(struct hp_loop *l, int fd, uint32_t events, uint32_t gen) {
    return loop_ctl(l, EPOLL_CTL_MOD, fd, events, gen);
}

/* Stop watching fd. Returns 0 or -errno. */
HP_EXPORT int hp_loop_del(struct hp_loop *l, int fd) {
    return epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
}

/* Ask the thread to stop. Does not wait: poll hp_loop_finished, then free. */
HP_EXPORT void hp_loop_stop(struct hp_loop *l) {
    uint64_t one = 1;
    atomic_store(&l->stopping, 1);
    if (write(l->stopfd, &one, sizeof one) < 0) { /* counter full: already signalled */ }
    sem_post(&l->idle);
}

/* 1 once the thread has left its loop. */
HP_EXPORT int hp_loop_finished(struct hp_loop *l) { return atomic_load(&l->finished); }

/* Join the stopped thread and release everything but the pipe's read end
 * (Deno's). Call after hp_loop_finished() returned 1. */
HP_EXPORT void hp_loop_free(struct hp_loop *l) {
    pthread_join(l->thread, NULL);
    close(l->epfd);
    close(l->stopfd);
    close(l->wake_w);
    sem_destroy(&l->idle);
    free(l->ring);
    free(l->scratch);
    free(l->out);
    free(l);
}

/* ---------- Private run directory ---------- */

/* Make sure path is a directory owned by this uid that no one else can
 * enter: created with mode 0700 when missing; an existing one must not be a
 * symlink, must belong to us, and is narrowed to 0700. Returns 0 or -errno
 * (-EPERM when it belongs to someone else). */
HP_EXPORT int hp_private_dir(const char *path) {
    struct stat st;
    if (mkdir(path, 0700) < 0 && errno != EEXIST) return -errno;
    if (lstat(path, &st) < 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
    if (st.st_uid != getuid()) return -EPERM;
    if ((st.st_mode & 0777) != 0700 && chmod(path, 0700) < 0) return -errno;
    return 0;
}

/* Remove a socket file; a missing one is not an error. Returns 0 or -errno. */
HP_EXPORT int hp_unlink(const char *path) {
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

/* Copy up to cap waiting bytes into buf without consuming them. Returns the
 * count, 0 at EOF, or -errno (-EAGAIN when nothing waits). */
HP_EXPORT int hp_peek(int fd, uint8_t *buf, uint32_t cap) {
    ssize_t n = recv(fd, buf, cap, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 ? -errno : (int)n;
}

/* Write plain bytes to a socket without blocking or raising SIGPIPE.
 * Returns the count written or -errno. */
HP_EXPORT int hp_send(int fd, const uint8_t *buf, uint32_t len) {
    ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -errno : (int)n;
}

/* Raise the soft limit on open files to the hard limit. The soft limit
 * before is stored in *before. Returns the new soft limit (capped at
 * INT32_MAX) or -errno. */
HP_EXPORT int hp_raise_nofile(int32_t *before) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
    *before = rl.rlim_cur > INT32_MAX ? INT32_MAX : (int32_t)rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
    }
    return rl.rlim_cur > INT32_MAX ? INT32_MAX : (int)rl.rlim_cur;
}

/* Read plain bytes without blocking. Returns the count, 0 at EOF, or -errno
 * (-EAGAIN when nothing waits). */
HP_EXPORT int hp_recv(int fd, uint8_t *buf, uint32_t cap) {
    ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
    return n < 0 ? -errno : (int)n;
}
