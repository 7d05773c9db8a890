/*
 * privileges.c — what keeps the roles apart: a process that holds keys makes
 * itself non-dumpable (no ptrace, no /proc/PID/mem or environ for its own
 * user), users and groups are looked up by name, the sockets' directories
 * are checked or made with the modes the roles need, and a Unix socket's
 * peer is asked for its supplementary groups (SO_PEERGROUPS).
 *
 * Style: small functions, one system task each; 0 or a value on success,
 * -errno on failure. No global state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HP_EXPORT __attribute__((visibility("default")))

/* The pid tracing this process (TracerPid in /proc/self/status): 0 when none,
 * or -errno. */
static int tracer_pid(void) {
    char line[256];
    int pid = 0;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return -errno;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "TracerPid:", 10) == 0) {
            pid = atoi(line + 10);
            break;
        }
    }
    fclose(f);
    return pid;
}

/* Make this process non-dumpable (PR_SET_DUMPABLE 0): processes of the same
 * user can then neither ptrace it nor open its /proc/PID/mem, environ or fd
 * entries. Returns 0, the pid of a process already tracing it (it attached
 * before: the caller must not go on), or -errno. */
HP_EXPORT int hp_nondumpable(void) {
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return -errno;
    return tracer_pid();
}

/* Look up the user called name: 0 with *pw filled in (strings in buf), or
 * -ENOENT (-errno on a lookup error). */
static int user_entry(const char *name, struct passwd *pw, char *buf, size_t cap) {
    struct passwd *found = NULL;
    int rv = getpwnam_r(name, pw, buf, cap, &found);
    if (rv != 0) return -rv;
    return found ? 0 : -ENOENT;
}

/* The uid of the user called name, or -ENOENT (-errno on a lookup error). */
HP_EXPORT int hp_user_uid(const char *name) {
    struct passwd pw;
    char buf[4096];
    int rv = user_entry(name, &pw, buf, sizeof buf);
    return rv < 0 ? rv : (int)pw.pw_uid;
}

/* The primary gid of the user called name, or -ENOENT (-errno on a lookup
 * error). */
HP_EXPORT int hp_user_gid(const char *name) {
    struct passwd pw;
    char buf[4096];
    int rv = user_entry(name, &pw, buf, sizeof buf);
    return rv < 0 ? rv : (int)pw.pw_gid;
}

/* The gid of the group called name, or -ENOENT (-errno on a lookup error). */
HP_EXPORT int hp_group_gid(const char *name) {
    struct group gr, *found = NULL;
    char buf[8192];
    int rv = getgrnam_r(name, &gr, buf, sizeof buf, &found);
    if (rv != 0) return -rv;
    return found ? (int)found->gr_gid : -ENOENT;
}

/* Whether the process at the other end of the Unix socket fd has gid among
 * its groups (primary, as SO_PEERCRED reports it, or supplementary, as
 * SO_PEERGROUPS does): 1, 0, or -errno. */
HP_EXPORT int hp_peer_in_group(int fd, int gid) {
    struct ucred cred;
    gid_t groups[256];
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
    if (cred.gid == (gid_t)gid) return 1;
    len = sizeof groups;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) return -errno;
    for (socklen_t i = 0; i < len / sizeof groups[0]; i++)
        if (groups[i] == (gid_t)gid) return 1;
    return 0;
}

/* Make (or check) a directory that the roles share through group gid: not a
 * symlink, owned by this user, by root or by `owner` (the gateways' user,
 * who makes it), group gid, mode exactly `mode`
 * (e.g. 02750: the owner writes, the group enters; 03770: the group writes,
 * and the sticky bit keeps each member's files its own), and nothing for
 * others. A directory this user owns is put right (chown to the group, chmod);
 * one owned by root must already be right. Returns 0 or -errno (-EPERM: owned
 * by someone else or wrong and not ours to fix). */
HP_EXPORT int hp_shared_dir(const char *path, int gid, int mode, int owner) {
    struct stat st;
    uid_t me = getuid();
    if (mode & 07) return -EINVAL;
    if (mkdir(path, 0700) < 0 && errno != EEXIST) return -errno;
    if (lstat(path, &st) < 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
    if (st.st_uid != me && st.st_uid != 0 && st.st_uid != (uid_t)owner) return -EPERM;
    if (st.st_gid != (gid_t)gid) {
        if (st.st_uid != me || chown(path, (uid_t)-1, (gid_t)gid) < 0) return -EPERM;
    }
    if ((st.st_mode & 07777) != (mode_t)mode) {
        if (st.st_uid != me || chmod(path, (mode_t)mode) < 0) return -EPERM;
        /* chmod drops S_ISGID silently when we are not in the group. */
        if (lstat(path, &st) < 0) return -errno;
        if ((st.st_mode & 07777) != (mode_t)mode) return -EPERM;
    }
    return 0;
}
