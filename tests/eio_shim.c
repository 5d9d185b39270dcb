/* An LD_PRELOAD shim for tests: pread/pwrite (and read) fail with EIO on one file, byte range
 * and rank, as a failing disk or file server would make them fail -- inside HDF5 and MPI-IO,
 * where the Python-level fault points of lattice_hpc/faults.py cannot reach.
 *
 * Build:  gcc -shared -fPIC -O2 -o eio_shim.so tests/eio_shim.c -ldl
 * Use:    LD_PRELOAD=eio_shim.so EIO_PATH=ckpt_00000004.h5 [EIO_RANK=1] [EIO_MINOFF=N]
 *         [EIO_MAXOFF=M] [EIO_WRITE=1] COMMAND
 *
 *   EIO_PATH    a substring of the path of the file (as /proc/self/fd/N names it); unset: the
 *               shim does nothing;
 *   EIO_RANK    only in the process whose PMI_RANK (MPICH hydra) equals it; unset: everywhere;
 *   EIO_MINOFF, EIO_MAXOFF  the byte range [MINOFF, MAXOFF) of the offsets that fail (default
 *               from 4096 on, so that a file's first block -- headers, HDF5 superblock -- reads);
 *   EIO_WRITE=1 fail pwrite/pwrite64 as well (reads only by default).
 *
 * A call fails when its offset lies in the range (read(): the current file position).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int bad(int fd, off_t off) {
    const char *pat = getenv("EIO_PATH");
    if (!pat || !*pat) return 0;
    const char *rk = getenv("EIO_RANK");
    if (rk && *rk) {
        const char *r = getenv("PMI_RANK");
        if (!r || strcmp(r, rk) != 0) return 0;
    }
    const char *lo = getenv("EIO_MINOFF"), *hi = getenv("EIO_MAXOFF");
    long long minoff = lo ? atoll(lo) : 4096, maxoff = hi ? atoll(hi) : (1LL << 62);
    if ((long long)off < minoff || (long long)off >= maxoff) return 0;
    char link[64], path[4096];
    int saved = errno;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    errno = saved;
    if (n <= 0) return 0;
    path[n] = 0;
    return strstr(path, pat) != NULL;
}

static int writes(void) {
    const char *w = getenv("EIO_WRITE");
    return w && strcmp(w, "1") == 0;
}

#define REAL(name, type) \
    static type real_##name; \
    if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

typedef ssize_t (*pread_t)(int, void *, size_t, off_t);
typedef ssize_t (*pwrite_t)(int, const void *, size_t, off_t);
typedef ssize_t (*read_t)(int, void *, size_t);

ssize_t pread(int fd, void *buf, size_t count, off_t off) {
    REAL(pread, pread_t);
    if (bad(fd, off)) { errno = EIO; return -1; }
    return real_pread(fd, buf, count, off);
}

ssize_t pread64(int fd, void *buf, size_t count, off_t off) {
    REAL(pread64, pread_t);
    if (bad(fd, off)) { errno = EIO; return -1; }
    return real_pread64(fd, buf, count, off);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t off) {
    REAL(pwrite, pwrite_t);
    if (writes() && bad(fd, off)) { errno = EIO; return -1; }
    return real_pwrite(fd, buf, count, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off) {
    REAL(pwrite64, pwrite_t);
    if (writes() && bad(fd, off)) { errno = EIO; return -1; }
    return real_pwrite64(fd, buf, count, off);
}

ssize_t read(int fd, void *buf, size_t count) {
    REAL(read, read_t);
    const char *pat = getenv("EIO_PATH");
    if (pat && *pat) {
        int saved = errno;
        off_t off = lseek(fd, 0, SEEK_CUR);  /* fails (ESPIPE) on pipes and sockets */
        errno = saved;
        if (off >= 0 && bad(fd, off)) { errno = EIO; return -1; }
    }
    return real_read(fd, buf, count);
}
