/*
 * path_watch.c — hearing at once that a name appeared in a directory (a
 * gateway's control socket, bound and renamed into place), instead of
 * polling for it: inotify, whose fd the caller's event loop watches.
 *
 * Style: an fd, 0/1 or -errno; no state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define HP_EXPORT __attribute__((visibility("default")))

/* An inotify fd (non-blocking, close-on-exec) that becomes readable when a
 * name is created in, or renamed into, directory dir. Returns it or -errno. */
HP_EXPORT int hp_watch_dir(const char *dir) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return -errno;
    if (inotify_add_watch(fd, dir, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
        int rv = -errno;
        close(fd);
        return rv;
    }
    return fd;
}

/* Read every event waiting on watch fd (until EAGAIN). Returns 1 when one
 * of them named name, 0 when none did, -errno on a failed read. */
HP_EXPORT int hp_watch_saw(int fd, const char *name) {
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int saw = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) return errno == EAGAIN ? saw : -errno;
        if (n == 0) return saw;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->len > 0 && strcmp(ev->name, name) == 0) saw = 1;
            p += sizeof *ev + ev->len;
        }
    }
}
