/*
 * powercut.c: an LD_PRELOAD shim that lets a test simulate a power cut on
 * a server process, by recording what the process made durable.
 *
 * A data directory is tracked when its name ends in ".pcdata". For such a
 * directory D the shim appends to the journal "D.journal" (one write() per
 * line, O_APPEND):
 *
 *   F <inode> <size>            fsync or fdatasync of a file in D: its first
 *                               <size> bytes are durable
 *   D <inode>/<name> ...        fsync of D itself: exactly these names, each
 *                               naming that inode, are durable
 *
 * Before rename() or unlink() drops a name in D, the inode it named is
 * hard-linked as "D.shadow/<inode>", so that a test can bring back a file
 * whose replacement was never made durable.
 *
 * After SIGKILL (which keeps the page cache, unlike a power cut) the test
 * rebuilds D from the journal: the names of the last directory fsync, each
 * holding its inode's bytes up to the last file fsync (tests/power_cut.rs,
 * tests/common/power_cut.rs). sync_file_range() is passed through and
 * records nothing: it flushes no metadata and no disk cache, so it makes
 * nothing durable. The shim changes no result of any call.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static const char SUFFIX[] = ".pcdata";

static void *next(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        fprintf(stderr, "powercut: no %s to wrap\n", name);
        abort();
    }
    return f;
}

static int ends_with_suffix(const char *s, size_t len) {
    size_t n = sizeof SUFFIX - 1;
    return len >= n && memcmp(s + len - n, SUFFIX, n) == 0;
}

/* The path an open descriptor refers to, or -1. */
static int fd_path(int fd, char *out, size_t cap) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap - 1);
    if (n <= 0 || (size_t)n >= cap - 1) {
        return -1;
    }
    out[n] = '\0';
    return 0;
}

/* Copies the directory part of `path` into `dir`; 0 when it is tracked. */
static int tracked_parent(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL || (size_t)(slash - path) >= cap) {
        return -1;
    }
    size_t len = (size_t)(slash - path);
    memcpy(dir, path, len);
    dir[len] = '\0';
    return ends_with_suffix(dir, len) ? 0 : -1;
}

/* Appends `line` to DIR.journal in one write. */
static void journal(const char *dir, const char *line, size_t len) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s.journal", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "powercut: cannot open %s: %s\n", path, strerror(errno));
        abort();
    }
    if (write(fd, line, len) != (ssize_t)len) {
        fprintf(stderr, "powercut: short write to %s\n", path);
        abort();
    }
    close(fd);
}

/* Records the names now in the tracked directory `dir`. */
static void record_dir(const char *dir) {
    char line[8192];
    size_t len = (size_t)snprintf(line, sizeof line, "D");
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0) {
            continue;
        }
        int n = snprintf(line + len, sizeof line - len, " %llu/%s",
                         (unsigned long long)st.st_ino, e->d_name);
        if (n < 0 || (size_t)n >= sizeof line - len - 1) {
            fprintf(stderr, "powercut: %s has too many names\n", dir);
            abort();
        }
        len += (size_t)n;
    }
    closedir(d);
    line[len++] = '\n';
    journal(dir, line, len);
}

/* Called after a successful fsync or fdatasync of `fd`. */
static void synced(int fd) {
    char path[PATH_MAX];
    struct stat st;
    if (fd_path(fd, path, sizeof path) != 0 || fstat(fd, &st) != 0) {
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (ends_with_suffix(path, strlen(path))) {
            record_dir(path);
        }
        return;
    }
    char dir[PATH_MAX];
    if (!S_ISREG(st.st_mode) || tracked_parent(path, dir, sizeof dir) != 0) {
        return;
    }
    char line[96];
    int n = snprintf(line, sizeof line, "F %llu %lld\n", (unsigned long long)st.st_ino,
                     (long long)st.st_size);
    journal(dir, line, (size_t)n);
}

/* Before a name in a tracked directory is replaced or removed: keep the
 * inode it names reachable as DIR.shadow/<inode>. */
static void preserve(const char *path) {
    char abs[PATH_MAX];
    if (path[0] == '/') {
        snprintf(abs, sizeof abs, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL) {
            return;
        }
        snprintf(abs, sizeof abs, "%s/%s", cwd, path);
    }
    char dir[PATH_MAX];
    struct stat st;
    if (tracked_parent(abs, dir, sizeof dir) != 0 || lstat(abs, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
        return;
    }
    char shadow[PATH_MAX];
    snprintf(shadow, sizeof shadow, "%s.shadow/%llu", dir, (unsigned long long)st.st_ino);
    if (link(abs, shadow) != 0 && errno != EEXIST) {
        fprintf(stderr, "powercut: cannot keep %s as %s: %s\n", abs, shadow, strerror(errno));
        abort();
    }
}

int fsync(int fd) {
    int (*real)(int) = next("fsync");
    int rc = real(fd);
    if (rc == 0) {
        int saved = errno;
        synced(fd);
        errno = saved;
    }
    return rc;
}

int fdatasync(int fd) {
    int (*real)(int) = next("fdatasync");
    int rc = real(fd);
    if (rc == 0) {
        int saved = errno;
        synced(fd);
        errno = saved;
    }
    return rc;
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    int (*real)(int, off64_t, off64_t, unsigned int) = next("sync_file_range");
    return real(fd, offset, nbytes, flags);
}

int rename(const char *from, const char *to) {
    int (*real)(const char *, const char *) = next("rename");
    int saved = errno;
    preserve(to);
    errno = saved;
    return real(from, to);
}

int unlink(const char *path) {
    int (*real)(const char *) = next("unlink");
    int saved = errno;
    preserve(path);
    errno = saved;
    return real(path);
}

/* The *at forms are not used by the server; one that touches a tracked
 * directory would escape the model, so it stops the process loudly. */
static void refuse_at(const char *call, int dirfd, const char *path) {
    char dir[PATH_MAX];
    char full[PATH_MAX];
    if (path[0] == '/') {
        snprintf(full, sizeof full, "%s", path);
    } else if (dirfd == AT_FDCWD) {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL) {
            return;
        }
        snprintf(full, sizeof full, "%s/%s", cwd, path);
    } else {
        char base[PATH_MAX];
        if (fd_path(dirfd, base, sizeof base) != 0) {
            return;
        }
        snprintf(full, sizeof full, "%s/%s", base, path);
    }
    if (tracked_parent(full, dir, sizeof dir) == 0) {
        fprintf(stderr, "powercut: %s on %s is not modelled\n", call, full);
        abort();
    }
}

int renameat(int olddirfd, const char *from, int newdirfd, const char *to) {
    int (*real)(int, const char *, int, const char *) = next("renameat");
    refuse_at("renameat", olddirfd, from);
    refuse_at("renameat", newdirfd, to);
    return real(olddirfd, from, newdirfd, to);
}

int unlinkat(int dirfd, const char *path, int flags) {
    int (*real)(int, const char *, int) = next("unlinkat");
    refuse_at("unlinkat", dirfd, path);
    return real(dirfd, path, flags);
}
