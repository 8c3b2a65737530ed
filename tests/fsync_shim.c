/*
 * LD_PRELOAD shim for tests/test_durable_fsync.py: logs every write to and
 * every fsync/fdatasync of the files under one directory, in program order.
 *
 *   APS_IO_WATCH=<dir>   only files whose path starts with this are logged
 *   APS_IO_LOG=<file>    the log (opened O_APPEND; one line per call):
 *                          W <path>    write, pwrite, pwrite64, writev, pwritev
 *                          S <path>    fsync, fdatasync
 *
 * The process under test appends its own marker lines to the same file, so the
 * log says what was written and what was flushed to the disk before each point
 * it promised something. The shim never changes what the calls do.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int log_fd = -1;
static const char *watch = NULL;
static size_t watch_len = 0;

static void log_call(char op, int fd) {
    char link[64];
    char path[4096];
    char line[4200];
    ssize_t n;
    int len;

    if (watch == NULL) {
        const char *w = getenv("APS_IO_WATCH");
        const char *l = getenv("APS_IO_LOG");
        if (w == NULL || l == NULL)
            return;
        watch = w;
        watch_len = strlen(w);
        log_fd = (int)syscall(SYS_openat, AT_FDCWD, l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                              0600);
    }
    if (log_fd < 0 || fd < 0)
        return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return;
    path[n] = '\0';
    if (strncmp(path, watch, watch_len) != 0)
        return;
    len = snprintf(line, sizeof line, "%c %s\n", op, path);
    if (len > 0)
        syscall(SYS_write, log_fd, line, (size_t)len); /* one append: atomic */
}

/* The next definition of `name` (libc's): looked up once, on first use. */
#define REAL(name)                                                                   \
    static __typeof__(&name) real_##name = NULL;                                     \
    if (real_##name == NULL)                                                         \
    real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write);
    ssize_t r = real_write(fd, buf, count);
    if (r > 0)
        log_call('W', fd);
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    ssize_t r = real_pwrite(fd, buf, count, offset);
    if (r > 0)
        log_call('W', fd);
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    REAL(pwrite64);
    ssize_t r = real_pwrite64(fd, buf, count, offset);
    if (r > 0)
        log_call('W', fd);
    return r;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev);
    ssize_t r = real_writev(fd, iov, iovcnt);
    if (r > 0)
        log_call('W', fd);
    return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL(pwritev);
    ssize_t r = real_pwritev(fd, iov, iovcnt, offset);
    if (r > 0)
        log_call('W', fd);
    return r;
}

int fsync(int fd) {
    REAL(fsync);
    int r = real_fsync(fd);
    if (r == 0)
        log_call('S', fd);
    return r;
}

int fdatasync(int fd) {
    REAL(fdatasync);
    int r = real_fdatasync(fd);
    if (r == 0)
        log_call('S', fd);
    return r;
}
