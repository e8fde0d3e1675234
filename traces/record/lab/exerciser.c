// SPDX-License-Identifier: GPL-2.0-only
/*
 * dmaspec lab exerciser: walks the userspace dma-buf surface of a running
 * kernel (udmabuf, the system dma-heap, vgem PRIME, vivid V4L2 export and
 * import, fork/exec) with every call checked against the result the kernel
 * must give, and writes a trace_marker line before each step so that an ftrace
 * recording of the run says what every kernel event belongs to.  A second mode,
 * --misuse NAME, commits one userspace misuse on purpose so the lab can check
 * that dmaspec reports it with the right rule.
 *
 * Build (static, nothing beyond the C library's headers):
 *     cc -static -O2 -Wall -Wextra -Werror -o exerciser exerciser.c
 * (dmabuf-uapi.h, next to this file, holds the ioctl definitions.)
 *
 * ---------------------------------------------------------------------------
 * Marker grammar (stable: the checker side parses it).  Every marker is one
 * write(2) to /sys/kernel/tracing/trace_marker (or --marker-file), one line:
 *
 *   marker  := "dmabuf-exercise: " ( begin | end | sline )
 *   begin   := "begin" fields                    first line of a process run
 *              (fields: pid kernel mode, and sections= or misuse= rule=;
 *               exec'd helpers write "begin" with mode=child)
 *   end     := "end" fields                      passed= failed= skipped=
 *   sline   := section ": " ( step | status )
 *   step    := text fields " (expect " outcome ")"
 *   status  := "BEGIN" | "PASS" | "FAIL" | "SKIP " reason | "NOTE " reason
 *            | "MISMATCH" fields                 (expected= got=, after a step)
 *   section := [a-z0-9-]+    a section name or a misuse name (see --list)
 *   text    := words without "=", "(" or ")"     what the next call does,
 *              e.g. "DMA_BUF_IOCTL_SYNC START|WRITE", "mmap", "close"
 *   fields  := ( " " key "=" value )*            key [a-z_]+, value has no
 *              space and no parenthesis
 *   outcome := result ( "|" result )*            result "ok" or an errno name
 *                                                (EINVAL, ENOTTY, ...)
 *
 * A step marker is written immediately before the one system call it
 * describes (in the same thread), so the kernel events between it and the
 * next marker are that call's.  Keys used in fields:
 *   fd=N        the dma-buf (or device) fd the call uses
 *   flags=0xN   DMA_BUF_IOCTL_SYNC / sync-file / creation flags
 *   addr=0xN    a mapping's address as mmap returned it; len=N its length
 *   access=read|write|rw   for the step "mmap_access": userspace touches the
 *               mapping at addr (no system call: these are the accesses a
 *               kernel trace cannot see; the checker may turn them into
 *               mmap_access annotations)
 *   prot=READ (or READ|WRITE), map=SHARED (or PRIVATE)   an mmap's protection and type
 *   size=N, offset=N, whence=SEEK_*, pid=N, handle=N, fence=N, index=N
 * Children of fork write their own markers (the pid tells them apart).
 *
 * Output on stdout: "FAIL <section>: <what>: expected X got Y" per mismatch,
 * "NOTE <section>: ..." for parts not run, then one of "PASS <section>",
 * "FAIL <section>", "SKIP <section>: <reason>" per section, and last
 * "exerciser: N passed, M failed, K skipped" (sections).  Exit status 0 when
 * nothing failed, 1 when something did, 2 on bad usage.
 * ---------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/videodev2.h>

#include "dmabuf-uapi.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------- */
/* state                                                                       */

static const char *g_section = "main";
static int g_sec_failed;		/* mismatches in the current section */
static char g_skip_reason[256];
static int g_n_pass, g_n_fail, g_n_skip;
static int g_marker_fd = -1;
static const char *g_marker_path;	/* --marker-file */
static bool g_verbose;
static char g_self[PATH_MAX];		/* this program, for re-exec */
static size_t g_page;
static int g_timeout_s = 10;		/* vivid frame wait */
static char g_step[512];
static char g_expect[64];

/* ------------------------------------------------------------------------- */
/* errno names                                                                 */

static const struct { int no; const char *name; } errnames[] = {
	{ EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EINTR, "EINTR" }, { EIO, "EIO" },
	{ ENXIO, "ENXIO" }, { E2BIG, "E2BIG" }, { EBADF, "EBADF" }, { EAGAIN, "EAGAIN" },
	{ ENOMEM, "ENOMEM" }, { EACCES, "EACCES" }, { EFAULT, "EFAULT" }, { EBUSY, "EBUSY" },
	{ EEXIST, "EEXIST" }, { ENODEV, "ENODEV" }, { EINVAL, "EINVAL" }, { ENOTTY, "ENOTTY" },
	{ ENOSPC, "ENOSPC" }, { ESPIPE, "ESPIPE" }, { ERANGE, "ERANGE" }, { ENOSYS, "ENOSYS" },
	{ EOPNOTSUPP, "EOPNOTSUPP" }, { ETIMEDOUT, "ETIMEDOUT" }, { EBADFD, "EBADFD" },
	{ EOVERFLOW, "EOVERFLOW" }, { EPIPE, "EPIPE" }, { ECHILD, "ECHILD" },
};

static const char *errname(int e)
{
	static char buf[16];

	if (e == 0)
		return "ok";
	for (size_t i = 0; i < ARRAY_SIZE(errnames); i++)
		if (errnames[i].no == e)
			return errnames[i].name;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* Does the outcome (0 = success, else an errno) match "ok|EINVAL|..."? */
static bool outcome_matches(const char *expect, int err)
{
	const char *p = expect;

	while (*p) {
		size_t n = strcspn(p, "|");
		const char *name = errname(err);

		if (strlen(name) == n && strncmp(p, name, n) == 0)
			return true;
		p += n;
		if (*p == '|')
			p++;
	}
	return false;
}

/* ------------------------------------------------------------------------- */
/* markers and results                                                         */

static void marker_open(void)
{
	static const char *const paths[] = {
		"/sys/kernel/tracing/trace_marker",
		"/sys/kernel/debug/tracing/trace_marker",
	};

	if (g_marker_path) {
		g_marker_fd = open(g_marker_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(paths) && g_marker_fd < 0; i++)
		g_marker_fd = open(paths[i], O_WRONLY | O_CLOEXEC);
	/* no tracefs (not in the VM, or not root): markers are silently dropped */
}

__attribute__((format(printf, 1, 2)))
static void emit(const char *fmt, ...)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "dmabuf-exercise: ");
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	if (g_verbose) {
		printf("# %.*s\n", n, buf);
		fflush(stdout);
	}
	buf[n++] = '\n';
	if (g_marker_fd >= 0) {
		int saved = errno;
		ssize_t w = write(g_marker_fd, buf, (size_t)n);

		(void)w;
		errno = saved;
	}
}

/*
 * The checker's own annotation of a userspace access to a dma-buf mapping
 * (traces/README.md, "Markers"): no kernel trace can see a load or a store,
 * so the program says it, in the one grammar the ftrace reader turns into a
 * mmap_access event.
 */
static void annotate_access(void *map, const char *access)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "dmaspec: mmap_access addr=0x%lx access=%s\n", (unsigned long)map, access);

	if (g_marker_fd >= 0 && n > 0) {
		int saved = errno;
		ssize_t w = write(g_marker_fd, buf, (size_t)n);

		(void)w;
		errno = saved;
	}
}

static void mismatch(const char *what, const char *want, const char *got);

/* A step's text: words without "=", "(" or ")", then only key=value fields. */
static bool step_text_ok(const char *s)
{
	bool in_fields = false;

	while (*s) {
		size_t n = strcspn(s, " ");
		const char *eq = memchr(s, '=', n);

		if (n == 0 || memchr(s, '(', n) || memchr(s, ')', n))
			return false;
		if (eq) {
			in_fields = true;
			if (eq == s)
				return false;
			for (const char *k = s; k < eq; k++)
				if (!islower((unsigned char)*k) && *k != '_')
					return false;
		} else if (in_fields) {
			return false;
		}
		s += n;
		if (*s == ' ')
			s++;
	}
	return true;
}

/* Announce the next call: "<section>: <text> (expect <outcome>)". */
__attribute__((format(printf, 2, 3)))
static void step(const char *expect, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g_step, sizeof(g_step), fmt, ap);
	va_end(ap);
	snprintf(g_expect, sizeof(g_expect), "%s", expect);
	emit("%s: %s (expect %s)", g_section, g_step, g_expect);
	if (!step_text_ok(g_step))	/* keep the grammar honest: a bad marker is a failure */
		mismatch("marker grammar", "words then key=value fields", g_step);
}

static void mismatch(const char *what, const char *want, const char *got)
{
	printf("FAIL %s: %s: expected %s got %s\n", g_section, what, want, got);
	fflush(stdout);
	emit("%s: MISMATCH expected=%s got=%s", g_section, want, got);
	g_sec_failed++;
}

/* Check the last step's outcome; returns the call's return value. */
static long verify(long ret, int err)
{
	int e = ret < 0 ? (err ? err : EIO) : 0;

	if (!outcome_matches(g_expect, e))
		mismatch(g_step, g_expect, errname(e));
	return ret;
}

/* Marker, call, check: TRY("EINVAL", ioctl(...), "UDMABUF_CREATE size 0 fd=%d", fd) */
#define TRY(expect, call, ...) __extension__({				\
	step((expect), __VA_ARGS__);					\
	errno = 0;							\
	long _ret = (long)(call);					\
	verify(_ret, errno);						\
})

static bool expect_eq(const char *what, long long got, long long want)
{
	char w[32], g[32];

	if (got == want)
		return true;
	snprintf(w, sizeof(w), "%lld", want);
	snprintf(g, sizeof(g), "%lld", got);
	mismatch(what, w, g);
	return false;
}

static bool expect_hex(const char *what, unsigned long long got, unsigned long long want)
{
	char w[32], g[32];

	if (got == want)
		return true;
	snprintf(w, sizeof(w), "0x%llx", want);
	snprintf(g, sizeof(g), "0x%llx", got);
	mismatch(what, w, g);
	return false;
}

__attribute__((format(printf, 1, 2)))
static void note(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("NOTE %s: %s\n", g_section, buf);
	fflush(stdout);
	emit("%s: NOTE %s", g_section, buf);
}

#define SKIPPED 1
__attribute__((format(printf, 1, 2)))
static int skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g_skip_reason, sizeof(g_skip_reason), fmt, ap);
	va_end(ap);
	return SKIPPED;
}

/* Close an fd that a call was expected not to create (it did anyway). */
static void close_unexpected(long fd)
{
	if (fd >= 0)
		close((int)fd);
}

static void closefd(int fd, const char *what)
{
	if (fd >= 0)
		TRY("ok", close(fd), "close %s fd=%d", what, fd);
}

/* ------------------------------------------------------------------------- */
/* dma-buf helpers                                                             */

static const char *sync_text(uint64_t flags)
{
	static char buf[64];
	uint64_t extra = flags & ~(uint64_t)DMA_BUF_SYNC_VALID_FLAGS_MASK;
	int n = snprintf(buf, sizeof(buf), "%s", flags & DMA_BUF_SYNC_END ? "END" : "START");

	if ((flags & DMA_BUF_SYNC_RW) == DMA_BUF_SYNC_RW)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|RW");
	else if (flags & DMA_BUF_SYNC_READ)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|READ");
	else if (flags & DMA_BUF_SYNC_WRITE)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|WRITE");
	else
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "|no-direction");
	if (extra)
		snprintf(buf + n, sizeof(buf) - (size_t)n, "|unknown-0x%llx", (unsigned long long)extra);
	return buf;
}

static long dsync(int fd, uint64_t flags, const char *expect)
{
	struct dma_buf_sync s = { .flags = flags };

	return TRY(expect, ioctl(fd, DMA_BUF_IOCTL_SYNC, &s), "DMA_BUF_IOCTL_SYNC %s fd=%d flags=0x%llx",
		   sync_text(flags), fd, (unsigned long long)flags);
}

static const char *access_name(int dir)
{
	return dir == DMA_BUF_SYNC_RW ? "rw" : dir == DMA_BUF_SYNC_WRITE ? "write" : "read";
}

/*
 * Touch a mapping (no system call): the marker is the only record of it.
 * write: fill with pat; read: check every byte is pat (pat < 0: no check,
 * returns whether some byte is not zero); rw: read then add 1 to every byte.
 */
static bool touch(void *map, size_t len, int dir, int pat)
{
	volatile unsigned char *p = map;
	bool nonzero = false;

	step("ok", "mmap_access access=%s addr=0x%lx len=%zu", access_name(dir), (unsigned long)map, len);
	annotate_access(map, access_name(dir));
	if (dir == DMA_BUF_SYNC_WRITE) {
		for (size_t i = 0; i < len; i++)
			p[i] = (unsigned char)pat;
		return true;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char v = p[i];

		if (v)
			nonzero = true;
		if (pat >= 0 && v != (unsigned char)pat) {
			char w[8], g[8];

			snprintf(w, sizeof(w), "0x%02x", pat);
			snprintf(g, sizeof(g), "0x%02x", v);
			mismatch("contents of the mapping", w, g);
			pat = -1;	/* report once */
		}
		if (dir == DMA_BUF_SYNC_RW)
			p[i] = (unsigned char)(v + 1);
	}
	return nonzero;
}

/* SYNC START, touch, SYNC END (same direction): correct CPU access. */
static bool bracket(int fd, void *map, size_t len, int dir, int pat)
{
	bool r;

	if (dsync(fd, DMA_BUF_SYNC_START | (uint64_t)dir, "ok") < 0)
		return false;
	r = touch(map, len, dir, pat);
	dsync(fd, DMA_BUF_SYNC_END | (uint64_t)dir, "ok");
	return r;
}

static void *dmap(int fd, size_t len, int prot, int flags, off_t off, const char *expect, const char *what)
{
	void *p;

	step(expect, "mmap %s fd=%d len=%zu offset=%lld prot=%s map=%s", what, fd, len, (long long)off,
	     prot == PROT_READ ? "READ" : "READ|WRITE", flags == MAP_PRIVATE ? "PRIVATE" : "SHARED");
	errno = 0;
	p = mmap(NULL, len, prot, flags, fd, off);
	verify(p == MAP_FAILED ? -1 : 0, errno);	/* not the address: it may not fit a positive long */
	if (p != MAP_FAILED && strcmp(expect, "ok") != 0) {	/* an unexpected success */
		munmap(p, len);
		return MAP_FAILED;
	}
	return p;
}

static void dunmap(void *map, size_t len)
{
	if (map != MAP_FAILED)
		TRY("ok", munmap(map, len), "munmap addr=0x%lx len=%zu", (unsigned long)map, len);
}

static int poll1(int fd, short events, int timeout_ms, const char *what)
{
	struct pollfd p = { .fd = fd, .events = events };
	long r = TRY("ok", poll(&p, 1, timeout_ms), "poll %s fd=%d events=%s timeout_ms=%d", what, fd,
		     events == (POLLIN | POLLOUT) ? "IN|OUT" : events == POLLIN ? "IN" : "OUT", timeout_ms);

	return r < 0 ? -1 : p.revents;
}

static long lseek_step(int fd, off_t off, int whence, const char *expect)
{
	static const char *const names[] = { "SEEK_SET", "SEEK_CUR", "SEEK_END", "SEEK_DATA", "SEEK_HOLE" };

	return TRY(expect, lseek(fd, off, whence), "llseek fd=%d offset=%lld whence=%s", fd, (long long)off,
		   whence >= 0 && whence < 5 ? names[whence] : "bad");
}

/* /proc/self/fdinfo/FD "key:\tvalue" (false when /proc is not there) */
static bool fdinfo(int fd, const char *key, char *out, size_t n)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return false;
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			char *v = line + kl + 1;

			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = 0;
			snprintf(out, n, "%s", v);
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

static int sync_file_export(int fd, uint32_t flags, const char *expect)
{
	struct dma_buf_export_sync_file a = { .flags = flags, .fd = -1 };
	long r = TRY(expect, ioctl(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &a),
		     "DMA_BUF_IOCTL_EXPORT_SYNC_FILE fd=%d flags=0x%x", fd, flags);

	if (r < 0)
		return -1;
	if (strcmp(expect, "ok") != 0) {
		close_unexpected(a.fd);
		return -1;
	}
	return a.fd;
}

static long sync_file_import(int fd, int sync_fd, uint32_t flags, const char *expect)
{
	struct dma_buf_import_sync_file a = { .flags = flags, .fd = sync_fd };

	return TRY(expect, ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &a),
		   "DMA_BUF_IOCTL_IMPORT_SYNC_FILE fd=%d sync_fd=%d flags=0x%x", fd, sync_fd, flags);
}

#define GX_PARTIAL_MMAP	  0x1	/* map the last page alone (exporter honours vm_pgoff) */
#define GX_PRIVATE_EINVAL 0x2	/* the exporter refuses MAP_PRIVATE (udmabuf) */
#define GX_NO_SYNC_FILE	  0x4	/* do not run the sync-file part */

/*
 * Everything userspace can do with a dma-buf fd, correct uses and the errors
 * the core must give.  Leaves the buffer as it found it: no mapping, no open
 * SYNC bracket, every extra fd closed.
 */
static void exercise_dmabuf(int fd, size_t size, unsigned opts)
{
	static bool fdinfo_noted;
	char name[DMA_BUF_NAME_LEN + 8], val[64];
	long r;
	void *map;
	int sf[3];

	/* fd flags and what procfs says */
	r = TRY("ok", fcntl(fd, F_GETFD), "fcntl F_GETFD fd=%d", fd);
	if (r >= 0)
		expect_hex("FD_CLOEXEC on the dma-buf fd", (unsigned long long)r & FD_CLOEXEC, FD_CLOEXEC);
	if (fdinfo(fd, "size", val, sizeof(val)))
		expect_eq("fdinfo size", strtoll(val, NULL, 10), (long long)size);
	else if (!fdinfo_noted) {
		fdinfo_noted = true;
		note("no /proc/self/fdinfo: sizes and names are checked through llseek only");
	}

	/* llseek: size discovery only */
	r = lseek_step(fd, 0, SEEK_END, "ok");
	if (r >= 0)
		expect_eq("llseek SEEK_END returns the size", r, (long long)size);
	r = lseek_step(fd, 0, SEEK_SET, "ok");
	if (r >= 0)
		expect_eq("llseek SEEK_SET 0 returns 0", r, 0);
	lseek_step(fd, 0, SEEK_CUR, "EINVAL");
	lseek_step(fd, (off_t)g_page, SEEK_SET, "EINVAL");
	lseek_step(fd, (off_t)g_page, SEEK_END, "EINVAL");
	lseek_step(fd, -1, SEEK_END, "EINVAL");
	lseek_step(fd, 0, SEEK_DATA, "EINVAL");

	/* DMA_BUF_SET_NAME: both ioctl spellings, the length limit, a bad pointer */
	snprintf(name, sizeof(name), "dmaspec-%s", g_section);
	TRY("ok", ioctl(fd, DMA_BUF_SET_NAME_B, name), "DMA_BUF_SET_NAME_B fd=%d", fd);
	snprintf(name, sizeof(name), "dmaspec-%s-a", g_section);
	TRY("ok", ioctl(fd, DMA_BUF_SET_NAME_A, name), "DMA_BUF_SET_NAME_A fd=%d", fd);
	if (fdinfo(fd, "name", val, sizeof(val)) && strcmp(val, name) != 0)
		mismatch("fdinfo name after DMA_BUF_SET_NAME", name, val);
	memset(name, 'n', DMA_BUF_NAME_LEN - 1);
	name[DMA_BUF_NAME_LEN - 1] = 0;
	TRY("ok", ioctl(fd, DMA_BUF_SET_NAME_B, name), "DMA_BUF_SET_NAME_B longest name len=%d fd=%d",
	    DMA_BUF_NAME_LEN - 1, fd);
	memset(name, 'n', DMA_BUF_NAME_LEN);
	name[DMA_BUF_NAME_LEN] = 0;
	TRY("EINVAL", ioctl(fd, DMA_BUF_SET_NAME_B, name), "DMA_BUF_SET_NAME_B name too long len=%d fd=%d",
	    DMA_BUF_NAME_LEN, fd);
	TRY("EFAULT", ioctl(fd, DMA_BUF_SET_NAME_B, (void *)8), "DMA_BUF_SET_NAME_B bad pointer fd=%d", fd);

	/* unknown ioctls, and SYNC with a wrong size (a different command number) */
	TRY("ENOTTY", ioctl(fd, _IO(DMA_BUF_BASE, 0x7f), 0), "unknown ioctl cmd=0x%lx fd=%d",
	    (unsigned long)_IO(DMA_BUF_BASE, 0x7f), fd);
	{
		uint32_t small = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ;

		TRY("ENOTTY", ioctl(fd, _IOW(DMA_BUF_BASE, 0, uint32_t), &small),
		    "unknown ioctl SYNC with a 32-bit argument cmd=0x%lx fd=%d",
		    (unsigned long)_IOW(DMA_BUF_BASE, 0, uint32_t), fd);
	}
	TRY("ENOTTY", ioctl(fd, _IO('u', 0x42), 0), "unknown ioctl a udmabuf command on a dma-buf cmd=0x%lx fd=%d",
	    (unsigned long)_IO('u', 0x42), fd);

	/* DMA_BUF_IOCTL_SYNC flags the core must refuse (the valid ones are the brackets below) */
	dsync(fd, DMA_BUF_SYNC_START, "EINVAL");
	dsync(fd, DMA_BUF_SYNC_END, "EINVAL");
	dsync(fd, 0x8, "EINVAL");
	dsync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ | 0x8, "EINVAL");
	dsync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW | 0x10, "EINVAL");
	dsync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE | (1ULL << 63), "EINVAL");
	dsync(fd, ~0ULL, "EINVAL");
	TRY("EFAULT", ioctl(fd, DMA_BUF_IOCTL_SYNC, (void *)8), "DMA_BUF_IOCTL_SYNC bad pointer fd=%d", fd);

	/* mmap: too large, beyond the end, (private), then the real thing */
	dmap(fd, size + g_page, PROT_READ | PROT_WRITE, MAP_SHARED, 0, "EINVAL", "larger than the buffer");
	dmap(fd, size, PROT_READ | PROT_WRITE, MAP_SHARED, (off_t)g_page, "EINVAL", "whole size at offset one page");
	dmap(fd, g_page, PROT_READ | PROT_WRITE, MAP_SHARED, (off_t)size, "EINVAL", "one page at the end");
	if (opts & GX_PRIVATE_EINVAL)
		dmap(fd, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0, "EINVAL", "private");
	map = dmap(fd, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, "ok", "whole buffer");
	if (map != MAP_FAILED) {
		/* every valid SYNC flag combination, each START with its END */
		bracket(fd, map, size, DMA_BUF_SYNC_WRITE, 0x5a);
		bracket(fd, map, size, DMA_BUF_SYNC_READ, 0x5a);
		bracket(fd, map, size, DMA_BUF_SYNC_RW, 0x5a);
		bracket(fd, map, size, DMA_BUF_SYNC_READ, 0x5b);
		dunmap(map, size);
	}
	if ((opts & GX_PARTIAL_MMAP) && size > g_page) {
		void *last = dmap(fd, g_page, PROT_READ, MAP_SHARED, (off_t)(size - g_page), "ok", "last page");

		if (last != MAP_FAILED) {
			bracket(fd, last, g_page, DMA_BUF_SYNC_READ, 0x5b);
			dunmap(last, g_page);
		}
	}

	/* poll: no fences, so both directions are ready at once */
	r = poll1(fd, POLLIN | POLLOUT, 0, "dma-buf without fences");
	if (r >= 0)
		expect_hex("poll revents without fences", (unsigned long long)r, POLLIN | POLLOUT);

	/* sync files (Linux 6.0+) */
	if (!(opts & GX_NO_SYNC_FILE)) {
		sync_file_export(fd, 0, "EINVAL");
		sync_file_export(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, "EINVAL");
		sf[0] = sync_file_export(fd, DMA_BUF_SYNC_READ, "ok");
		sf[1] = sync_file_export(fd, DMA_BUF_SYNC_WRITE, "ok");
		sf[2] = sync_file_export(fd, DMA_BUF_SYNC_RW, "ok");
		if (sf[0] >= 0) {
			r = TRY("ok", fcntl(sf[0], F_GETFD), "fcntl F_GETFD sync_file fd=%d", sf[0]);
			if (r >= 0)
				expect_hex("FD_CLOEXEC on the sync_file fd", (unsigned long long)r & FD_CLOEXEC,
					   FD_CLOEXEC);
			r = poll1(sf[0], POLLIN, 0, "sync_file of an idle buffer");
			if (r >= 0)
				expect_hex("poll revents of an idle buffer's sync_file", (unsigned long long)r, POLLIN);
			sync_file_import(fd, sf[0], 0, "EINVAL");
			sync_file_import(fd, sf[0], DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE, "EINVAL");
			sync_file_import(fd, -1, DMA_BUF_SYNC_WRITE, "EINVAL");
			sync_file_import(fd, fd, DMA_BUF_SYNC_WRITE, "EINVAL");
			sync_file_import(fd, sf[0], DMA_BUF_SYNC_READ, "ok");
			sync_file_import(fd, sf[0], DMA_BUF_SYNC_WRITE, "ok");
			sync_file_import(fd, sf[0], DMA_BUF_SYNC_RW, "ok");
			r = poll1(fd, POLLIN | POLLOUT, 0, "dma-buf with signalled imported fences");
			if (r >= 0)
				expect_hex("poll revents with signalled fences", (unsigned long long)r, POLLIN | POLLOUT);
		}
		for (int i = 0; i < 3; i++)
			closefd(sf[i], "sync_file");
	}

	/* dup and close: the copies share the file */
	r = TRY("ok", dup(fd), "dup fd=%d", fd);
	if (r >= 0) {
		long fl = TRY("ok", fcntl((int)r, F_GETFD), "fcntl F_GETFD dup fd=%ld", r);

		if (fl >= 0)
			expect_hex("FD_CLOEXEC on a dup", (unsigned long long)fl & FD_CLOEXEC, 0);
		long e = lseek_step((int)r, 0, SEEK_END, "ok");

		if (e >= 0)
			expect_eq("llseek SEEK_END through the dup", e, (long long)size);
		closefd((int)r, "dup");
	}
	r = TRY("ok", fcntl(fd, F_DUPFD_CLOEXEC, 100), "fcntl F_DUPFD_CLOEXEC fd=%d", fd);
	if (r >= 0) {
		long fl = TRY("ok", fcntl((int)r, F_GETFD), "fcntl F_GETFD dup fd=%ld", r);

		if (fl >= 0)
			expect_hex("FD_CLOEXEC on F_DUPFD_CLOEXEC", (unsigned long long)fl & FD_CLOEXEC, FD_CLOEXEC);
		int target = (int)r;

		r = TRY("ok", dup3(fd, target, O_CLOEXEC), "dup3 O_CLOEXEC fd=%d onto=%d", fd, target);
		if (r >= 0)
			expect_eq("dup3 returns its target", r, target);
		closefd(target, "dup");
	}
}

/* ------------------------------------------------------------------------- */
/* exporters as buffer sources                                                 */

enum src { SRC_HEAP, SRC_UDMABUF, SRC_VGEM, SRC_COUNT };
static const char *const src_name[SRC_COUNT] = { "heap", "udmabuf", "vgem" };
static int g_dev[SRC_COUNT] = { -1, -1, -1 };
static char g_vgem_path[64];
static bool g_vgem_searched;

struct dbuf {
	int fd;
	size_t size;
	enum src src;
	uint32_t handle;	/* vgem GEM handle */
};

#define UDMABUF_PATH "/dev/udmabuf"
#define HEAP_PATH "/dev/dma_heap/system"

static bool drm_is_vgem(int fd)
{
	char name[32] = { 0 };
	struct drm_version v = { .name_len = sizeof(name) - 1, .name = name };

	return ioctl(fd, DRM_IOCTL_VERSION, &v) == 0 && strcmp(name, "vgem") == 0;
}

/* The vgem card: the /dev/dri/card* whose DRM_IOCTL_VERSION name is "vgem". */
static const char *vgem_find(void)
{
	DIR *d;
	struct dirent *e;
	int best = INT_MAX;

	if (g_vgem_searched)
		return g_vgem_path[0] ? g_vgem_path : NULL;
	g_vgem_searched = true;
	d = opendir("/dev/dri");
	if (!d)
		return NULL;
	while ((e = readdir(d))) {
		char path[300];
		int n, fd;

		if (strncmp(e->d_name, "card", 4) != 0 || !isdigit((unsigned char)e->d_name[4]))
			continue;
		n = atoi(e->d_name + 4);
		snprintf(path, sizeof(path), "/dev/dri/%s", e->d_name);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (drm_is_vgem(fd) && n < best) {
			best = n;
			snprintf(g_vgem_path, sizeof(g_vgem_path), "/dev/dri/card%d", n);
		}
		close(fd);
	}
	closedir(d);
	return g_vgem_path[0] ? g_vgem_path : NULL;
}

static bool src_available(enum src s)
{
	switch (s) {
	case SRC_HEAP:
		return access(HEAP_PATH, F_OK) == 0;
	case SRC_UDMABUF:
		return access(UDMABUF_PATH, F_OK) == 0;
	case SRC_VGEM:
		return vgem_find() != NULL;
	default:
		return false;
	}
}

static int src_open(enum src s)
{
	if (g_dev[s] >= 0)
		return g_dev[s];
	switch (s) {
	case SRC_HEAP:
		g_dev[s] = (int)TRY("ok", open(HEAP_PATH, O_RDONLY | O_CLOEXEC), "open %s", HEAP_PATH);
		break;
	case SRC_UDMABUF:
		g_dev[s] = (int)TRY("ok", open(UDMABUF_PATH, O_RDWR | O_CLOEXEC), "open %s", UDMABUF_PATH);
		break;
	case SRC_VGEM:
		if (vgem_find())
			g_dev[s] = (int)TRY("ok", open(g_vgem_path, O_RDWR | O_CLOEXEC), "open vgem %s", g_vgem_path);
		break;
	default:
		break;
	}
	return g_dev[s];
}

static void src_close_all(void)
{
	for (int s = 0; s < SRC_COUNT; s++) {
		closefd(g_dev[s], src_name[s]);
		g_dev[s] = -1;
	}
}

/* The first exporter present, in the order heap, udmabuf, vgem. */
static int pick_src(void)
{
	for (int s = 0; s < SRC_COUNT; s++)
		if (src_available((enum src)s))
			return s;
	return -1;
}

static int udmabuf_new(int dev, size_t size, bool cloexec)
{
	long memfd, fd;
	struct udmabuf_create c;

	memfd = TRY("ok", memfd_create("dmaspec-udmabuf", MFD_ALLOW_SEALING | MFD_CLOEXEC), "memfd_create size=%zu",
		    size);
	if (memfd < 0)
		return -1;
	TRY("ok", ftruncate((int)memfd, (off_t)size), "ftruncate memfd=%ld size=%zu", memfd, size);
	TRY("ok", fcntl((int)memfd, F_ADD_SEALS, F_SEAL_SHRINK), "fcntl F_ADD_SEALS F_SEAL_SHRINK memfd=%ld", memfd);
	c = (struct udmabuf_create){ .memfd = (uint32_t)memfd, .flags = cloexec ? UDMABUF_FLAGS_CLOEXEC : 0,
				     .size = size };
	fd = TRY("ok", ioctl(dev, UDMABUF_CREATE, &c), "UDMABUF_CREATE memfd=%ld size=%zu flags=0x%x", memfd, size,
		 c.flags);
	closefd((int)memfd, "memfd");
	return (int)fd;
}

static int heap_new(int dev, size_t size, uint32_t fd_flags)
{
	struct dma_heap_allocation_data a = { .len = size, .fd_flags = fd_flags };
	long r = TRY("ok", ioctl(dev, DMA_HEAP_IOCTL_ALLOC, &a), "DMA_HEAP_IOCTL_ALLOC len=%zu fd_flags=0x%x", size,
		     fd_flags);

	return r < 0 ? -1 : (int)a.fd;
}

/* A vgem dumb buffer of at least size bytes, exported; *handle receives the GEM handle. */
static int vgem_new(int card, size_t size, bool cloexec, uint32_t *handle, size_t *real)
{
	struct drm_mode_create_dumb c = { .width = 1024, .bpp = 32 };
	struct drm_prime_handle p;
	long r;

	c.height = (uint32_t)((size + 4095) / 4096);
	r = TRY("ok", ioctl(card, DRM_IOCTL_MODE_CREATE_DUMB, &c), "DRM_IOCTL_MODE_CREATE_DUMB width=%u height=%u bpp=%u",
		c.width, c.height, c.bpp);
	if (r < 0)
		return -1;
	*handle = c.handle;
	*real = (size_t)c.size;
	p = (struct drm_prime_handle){ .handle = c.handle, .flags = DRM_RDWR | (cloexec ? DRM_CLOEXEC : 0), .fd = -1 };
	r = TRY("ok", ioctl(card, DRM_IOCTL_PRIME_HANDLE_TO_FD, &p), "DRM_IOCTL_PRIME_HANDLE_TO_FD handle=%u flags=0x%x",
		p.handle, p.flags);
	return r < 0 ? -1 : p.fd;
}

static void gem_close(int card, uint32_t handle, const char *expect)
{
	struct drm_gem_close g = { .handle = handle };

	TRY(expect, ioctl(card, DRM_IOCTL_GEM_CLOSE, &g), "DRM_IOCTL_GEM_CLOSE handle=%u", handle);
}

static int buf_new(struct dbuf *b, enum src s, size_t size, bool cloexec)
{
	int dev = src_open(s);

	*b = (struct dbuf){ .fd = -1, .size = size, .src = s };
	if (dev < 0)
		return -1;
	switch (s) {
	case SRC_HEAP:
		b->fd = heap_new(dev, size, O_RDWR | (cloexec ? O_CLOEXEC : 0));
		break;
	case SRC_UDMABUF:
		b->fd = udmabuf_new(dev, size, cloexec);
		break;
	case SRC_VGEM:
		b->fd = vgem_new(dev, size, cloexec, &b->handle, &b->size);
		break;
	default:
		break;
	}
	return b->fd < 0 ? -1 : 0;
}

static void buf_free(struct dbuf *b)
{
	closefd(b->fd, src_name[b->src]);
	b->fd = -1;
	if (b->src == SRC_VGEM && b->handle) {
		gem_close(g_dev[SRC_VGEM], b->handle, "ok");
		b->handle = 0;
	}
}

static size_t page_align(size_t n)
{
	return (n + g_page - 1) / g_page * g_page;
}

/* ------------------------------------------------------------------------- */
/* section: udmabuf                                                            */

static int sec_udmabuf(void)
{
	size_t size = 4 * g_page;
	struct udmabuf_create c;
	long dev, memfd, memfd2, fd, r;

	if (!src_available(SRC_UDMABUF))
		return skip("no " UDMABUF_PATH " (CONFIG_UDMABUF, module udmabuf; Linux 4.20+, absent from Debian 12's 6.1)");
	dev = src_open(SRC_UDMABUF);
	if (dev < 0)
		return 0;

	memfd = TRY("ok", memfd_create("dmaspec-udmabuf", MFD_ALLOW_SEALING | MFD_CLOEXEC), "memfd_create MFD_ALLOW_SEALING");
	if (memfd < 0)
		return 0;
	TRY("ok", ftruncate((int)memfd, (off_t)(8 * g_page)), "ftruncate memfd=%ld size=%zu", memfd, 8 * g_page);

	c = (struct udmabuf_create){ .memfd = (uint32_t)memfd, .flags = UDMABUF_FLAGS_CLOEXEC, .size = size };
	close_unexpected(TRY("EINVAL", ioctl((int)dev, UDMABUF_CREATE, &c),
			     "UDMABUF_CREATE without F_SEAL_SHRINK memfd=%ld size=%zu", memfd, size));
	TRY("ok", fcntl((int)memfd, F_ADD_SEALS, F_SEAL_SHRINK), "fcntl F_ADD_SEALS F_SEAL_SHRINK memfd=%ld", memfd);

	/* arguments the driver refuses */
	c.size = 0;
	close_unexpected(TRY("EINVAL", ioctl((int)dev, UDMABUF_CREATE, &c), "UDMABUF_CREATE size zero size=0"));
	c.size = g_page + 1;
	close_unexpected(TRY("EINVAL", ioctl((int)dev, UDMABUF_CREATE, &c), "UDMABUF_CREATE unaligned size size=%llu",
			     (unsigned long long)c.size));
	c.size = size;
	c.offset = 1;
	close_unexpected(TRY("EINVAL", ioctl((int)dev, UDMABUF_CREATE, &c),
			     "UDMABUF_CREATE unaligned offset offset=1 size=%zu", size));
	c.offset = 0;
	c.size = 1ULL << 40;
	close_unexpected(TRY("EINVAL", ioctl((int)dev, UDMABUF_CREATE, &c),
			     "UDMABUF_CREATE above size_limit_mb size=%llu", (unsigned long long)c.size));
	c.size = size;
	c.memfd = 1000000;
	close_unexpected(TRY("EBADFD", ioctl((int)dev, UDMABUF_CREATE, &c), "UDMABUF_CREATE memfd not open memfd=%u",
			     c.memfd));
	c.memfd = (uint32_t)dev;
	close_unexpected(TRY("EBADFD", ioctl((int)dev, UDMABUF_CREATE, &c), "UDMABUF_CREATE fd not shmem memfd=%ld",
			     dev));
	memfd2 = TRY("ok", memfd_create("dmaspec-sealed", MFD_ALLOW_SEALING | MFD_CLOEXEC), "memfd_create second memfd");
	if (memfd2 >= 0) {
		TRY("ok", ftruncate((int)memfd2, (off_t)size), "ftruncate memfd=%ld size=%zu", memfd2, size);
		TRY("ok", fcntl((int)memfd2, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_WRITE),
		    "fcntl F_ADD_SEALS F_SEAL_SHRINK|F_SEAL_WRITE memfd=%ld", memfd2);
		c.memfd = (uint32_t)memfd2;
		close_unexpected(TRY("EINVAL", ioctl((int)dev, UDMABUF_CREATE, &c),
				     "UDMABUF_CREATE memfd sealed against writes memfd=%ld", memfd2));
		closefd((int)memfd2, "memfd");
	}
	c.memfd = (uint32_t)memfd;
	TRY("ENOTTY", ioctl((int)dev, _IO('u', 0x44), 0), "unknown ioctl on /dev/udmabuf cmd=0x%lx",
	    (unsigned long)_IO('u', 0x44));
	{
		struct udmabuf_create_list h = { .flags = UDMABUF_FLAGS_CLOEXEC, .count = 65536 };

		close_unexpected(TRY("EINVAL", ioctl((int)dev, UDMABUF_CREATE_LIST, &h),
				     "UDMABUF_CREATE_LIST count above list_limit count=%u", h.count));
	}
	/* an unknown flag: the driver ignores it (the fd then lacks O_CLOEXEC; closed at once) */
	c.flags = 0x2;
	fd = TRY("ok|EINVAL", ioctl((int)dev, UDMABUF_CREATE, &c), "UDMABUF_CREATE unknown flag flags=0x2 size=%zu", size);
	if (fd >= 0) {
		r = TRY("ok", fcntl((int)fd, F_GETFD), "fcntl F_GETFD fd=%ld", fd);
		if (r >= 0)
			expect_hex("FD_CLOEXEC without UDMABUF_FLAGS_CLOEXEC", (unsigned long long)r & FD_CLOEXEC, 0);
		closefd((int)fd, "udmabuf");
	}

	/* the real buffer */
	c.flags = UDMABUF_FLAGS_CLOEXEC;
	fd = TRY("ok", ioctl((int)dev, UDMABUF_CREATE, &c), "UDMABUF_CREATE memfd=%ld size=%zu flags=0x%x", memfd, size,
		 c.flags);
	if (fd >= 0) {
		void *map;
		unsigned char got[16];

		exercise_dmabuf((int)fd, size, GX_PARTIAL_MMAP | GX_PRIVATE_EINVAL);

		/* the same pages through the memfd */
		map = dmap((int)fd, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, "ok", "whole buffer");
		if (map != MAP_FAILED) {
			bracket((int)fd, map, size, DMA_BUF_SYNC_WRITE, 0xc3);
			r = TRY("ok", pread((int)memfd, got, sizeof(got), 0), "pread memfd=%ld len=%zu", memfd, sizeof(got));
			if (r == (long)sizeof(got))
				expect_hex("memfd sees the udmabuf write", got[0] | (unsigned)got[15] << 8, 0xc3c3);
			memset(got, 0x3c, sizeof(got));
			TRY("ok", pwrite((int)memfd, got, sizeof(got), 0), "pwrite memfd=%ld len=%zu", memfd, sizeof(got));
			if (dsync((int)fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, "ok") >= 0) {
				touch(map, sizeof(got), DMA_BUF_SYNC_READ, 0x3c);
				dsync((int)fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, "ok");
			}
			dunmap(map, size);
		}
		closefd((int)fd, "udmabuf");
	}

	/* UDMABUF_CREATE_LIST: two ranges of the memfd in one buffer */
	{
		size_t lsize = sizeof(struct udmabuf_create_list) + 2 * sizeof(struct udmabuf_create_item);
		struct udmabuf_create_list *l = calloc(1, lsize);

		if (l) {
			l->flags = UDMABUF_FLAGS_CLOEXEC;
			l->count = 2;
			l->list[0] = (struct udmabuf_create_item){ .memfd = (uint32_t)memfd, .offset = 0, .size = g_page };
			l->list[1] = (struct udmabuf_create_item){ .memfd = (uint32_t)memfd, .offset = 2 * g_page,
								   .size = 2 * g_page };
			fd = TRY("ok", ioctl((int)dev, UDMABUF_CREATE_LIST, l), "UDMABUF_CREATE_LIST count=2 memfd=%ld", memfd);
			if (fd >= 0) {
				r = lseek_step((int)fd, 0, SEEK_END, "ok");
				if (r >= 0)
					expect_eq("UDMABUF_CREATE_LIST size", r, (long long)(3 * g_page));
				closefd((int)fd, "udmabuf list buffer");
			}
			free(l);
		}
	}
	closefd((int)memfd, "memfd");
	return 0;
}

/* ------------------------------------------------------------------------- */
/* section: heap                                                               */

static int sec_heap(void)
{
	struct dma_heap_allocation_data a;
	size_t size = 16 * g_page;
	long dev, fd, r;

	if (!src_available(SRC_HEAP))
		return skip("no " HEAP_PATH " (CONFIG_DMABUF_HEAPS_SYSTEM; Linux 5.6+, absent from Debian 12's 6.1)");
	dev = src_open(SRC_HEAP);
	if (dev < 0)
		return 0;

	a = (struct dma_heap_allocation_data){ .len = size, .fd = 1, .fd_flags = O_RDWR | O_CLOEXEC };
	TRY("EINVAL", ioctl((int)dev, DMA_HEAP_IOCTL_ALLOC, &a), "DMA_HEAP_IOCTL_ALLOC fd field not zero len=%zu", size);
	if (a.fd != 1)
		close_unexpected(a.fd);
	a = (struct dma_heap_allocation_data){ .len = size, .fd_flags = O_RDWR | O_CLOEXEC | O_NONBLOCK };
	close_unexpected(TRY("EINVAL", ioctl((int)dev, DMA_HEAP_IOCTL_ALLOC, &a) < 0 ? -1L : (long)a.fd,
			     "DMA_HEAP_IOCTL_ALLOC bad fd_flags fd_flags=0x%x", a.fd_flags));
	a = (struct dma_heap_allocation_data){ .len = size, .fd_flags = O_RDWR | O_CLOEXEC, .heap_flags = 1 };
	close_unexpected(TRY("EINVAL", ioctl((int)dev, DMA_HEAP_IOCTL_ALLOC, &a) < 0 ? -1L : (long)a.fd,
			     "DMA_HEAP_IOCTL_ALLOC bad heap_flags heap_flags=0x1"));
	a = (struct dma_heap_allocation_data){ .len = 0, .fd_flags = O_RDWR | O_CLOEXEC };
	close_unexpected(TRY("EINVAL", ioctl((int)dev, DMA_HEAP_IOCTL_ALLOC, &a) < 0 ? -1L : (long)a.fd,
			     "DMA_HEAP_IOCTL_ALLOC len zero len=0"));
	TRY("EFAULT", ioctl((int)dev, DMA_HEAP_IOCTL_ALLOC, (void *)8), "DMA_HEAP_IOCTL_ALLOC bad pointer");
	a = (struct dma_heap_allocation_data){ .len = size, .fd_flags = O_RDWR | O_CLOEXEC };
	TRY("EINVAL", ioctl((int)dev, _IOWR(DMA_HEAP_IOC_MAGIC, 0x1, struct dma_heap_allocation_data), &a),
	    "unknown ioctl on the heap cmd=0x%lx", (unsigned long)_IOWR(DMA_HEAP_IOC_MAGIC, 0x1, struct dma_heap_allocation_data));

	fd = heap_new((int)dev, size, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		exercise_dmabuf((int)fd, size, GX_PARTIAL_MMAP);
		closefd((int)fd, "heap");
	}

	/* lengths are rounded up to pages */
	fd = heap_new((int)dev, 1, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		r = lseek_step((int)fd, 0, SEEK_END, "ok");
		if (r >= 0)
			expect_eq("a 1-byte allocation is one page", r, (long long)g_page);
		closefd((int)fd, "heap");
	}

	/* a read-only buffer cannot be mapped for writing */
	fd = heap_new((int)dev, g_page, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		void *map;

		dmap((int)fd, g_page, PROT_READ | PROT_WRITE, MAP_SHARED, 0, "EACCES", "writable of a read-only buffer");
		map = dmap((int)fd, g_page, PROT_READ, MAP_SHARED, 0, "ok", "read-only buffer");
		if (map != MAP_FAILED) {
			bracket((int)fd, map, g_page, DMA_BUF_SYNC_READ, -1);
			dunmap(map, g_page);
		}
		closefd((int)fd, "heap");
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* section: vgem                                                               */

static uint32_t prime_import(int card, int fd, const char *expect, const char *what)
{
	struct drm_prime_handle p = { .fd = fd };
	long r = TRY(expect, ioctl(card, DRM_IOCTL_PRIME_FD_TO_HANDLE, &p), "DRM_IOCTL_PRIME_FD_TO_HANDLE %s fd=%d", what,
		     fd);

	return r < 0 ? 0 : p.handle;
}

/* vgem imports a buffer of another exporter: dma_buf_attach + map, then detach. */
static void vgem_import_other(int card, enum src s)
{
	struct dbuf b;
	uint32_t h, h2;

	if (!src_available(s)) {
		note("no %s: vgem does not import one", src_name[s]);
		return;
	}
	if (buf_new(&b, s, 4 * g_page, true) == 0) {
		h = prime_import(card, b.fd, "ok", src_name[s]);
		if (h) {
			h2 = prime_import(card, b.fd, "ok", "again, the prime cache");
			if (h2)
				expect_eq("second import gives the same handle", h2, h);
			gem_close(card, h, "ok");
		}
	}
	buf_free(&b);
}

/*
 * A CPU read of a buffer whose write fence is pending waits for it: DMA_BUF_IOCTL_SYNC START sleeps in
 * dma_resv_wait_timeout (the kernel traces dma_fence_wait_start and _end around the sleep) until a child,
 * sharing the vgem file, signals the fence half a second later.
 */
static long fork_step(const char *what);
static void child_exit(void);
static void wait_child(long pid, int want);

static void sync_waits_for_fence(int card, int fd, size_t size, uint32_t fence)
{
	struct drm_vgem_fence_signal fs = { .fence = fence };
	void *map = dmap(fd, size, PROT_READ, MAP_SHARED, 0, "ok", "read after the pending write");
	long pid = fork_step("child signals the pending fence");

	if (pid == 0) {
		usleep(500 * 1000);
		/* ETIMEDOUT: vgem signalled it itself after 10 s (a very slow machine) */
		TRY("ok|ETIMEDOUT", ioctl(card, DRM_IOCTL_VGEM_FENCE_SIGNAL, &fs), "DRM_IOCTL_VGEM_FENCE_SIGNAL fence=%u",
		    fence);
		child_exit();
	}
	if (pid < 0)	/* nobody else will signal it: do it here, before the read */
		TRY("ok|ETIMEDOUT", ioctl(card, DRM_IOCTL_VGEM_FENCE_SIGNAL, &fs), "DRM_IOCTL_VGEM_FENCE_SIGNAL fence=%u",
		    fence);
	if (map != MAP_FAILED) {
		bracket(fd, map, size, DMA_BUF_SYNC_READ, -1);	/* waits in START for the child's signal */
		dunmap(map, size);
	}
	wait_child(pid, 0);
}

static int sec_vgem(void)
{
	struct drm_mode_create_dumb c;
	struct drm_prime_handle p;
	struct drm_vgem_fence_attach fa;
	struct drm_vgem_fence_signal fs;
	long card, fd, r;
	uint32_t handle, h2, fence = 0;
	size_t size;

	if (!src_available(SRC_VGEM))
		return skip("no vgem DRM card in /dev/dri (CONFIG_DRM_VGEM, module vgem)");
	card = src_open(SRC_VGEM);
	if (card < 0)
		return 0;
	{
		char name[32] = { 0 };
		struct drm_version v = { .name_len = sizeof(name) - 1, .name = name };

		if (TRY("ok", ioctl((int)card, DRM_IOCTL_VERSION, &v), "DRM_IOCTL_VERSION fd=%ld", card) >= 0 &&
		    strcmp(name, "vgem") != 0)
			mismatch("DRM driver name", "vgem", name);
	}

	/* importing: other exporters' buffers, and what is not a dma-buf */
	vgem_import_other((int)card, SRC_UDMABUF);
	vgem_import_other((int)card, SRC_HEAP);
	prime_import((int)card, (int)card, "EINVAL", "of a file that is not a dma-buf");
	prime_import((int)card, -1, "EBADF", "of a closed fd");

	/* exporting */
	c = (struct drm_mode_create_dumb){ .width = 64, .height = 64, .bpp = 0 };
	TRY("EINVAL", ioctl((int)card, DRM_IOCTL_MODE_CREATE_DUMB, &c), "DRM_IOCTL_MODE_CREATE_DUMB bpp zero bpp=0");
	c = (struct drm_mode_create_dumb){ .width = 64, .height = 64, .bpp = 32 };
	r = TRY("ok", ioctl((int)card, DRM_IOCTL_MODE_CREATE_DUMB, &c), "DRM_IOCTL_MODE_CREATE_DUMB width=64 height=64 bpp=32");
	if (r < 0)
		return 0;
	handle = c.handle;
	size = page_align((size_t)c.size);
	p = (struct drm_prime_handle){ .handle = handle, .flags = 0x4, .fd = -1 };
	close_unexpected(TRY("EINVAL", ioctl((int)card, DRM_IOCTL_PRIME_HANDLE_TO_FD, &p) < 0 ? -1L : (long)p.fd,
			     "DRM_IOCTL_PRIME_HANDLE_TO_FD bad flags handle=%u flags=0x4", handle));
	p = (struct drm_prime_handle){ .handle = handle + 1000, .flags = DRM_CLOEXEC | DRM_RDWR, .fd = -1 };
	close_unexpected(TRY("ENOENT", ioctl((int)card, DRM_IOCTL_PRIME_HANDLE_TO_FD, &p) < 0 ? -1L : (long)p.fd,
			     "DRM_IOCTL_PRIME_HANDLE_TO_FD no such handle handle=%u", p.handle));
	p = (struct drm_prime_handle){ .handle = handle, .flags = DRM_CLOEXEC | DRM_RDWR, .fd = -1 };
	r = TRY("ok", ioctl((int)card, DRM_IOCTL_PRIME_HANDLE_TO_FD, &p), "DRM_IOCTL_PRIME_HANDLE_TO_FD handle=%u flags=0x%x",
		handle, p.flags);
	fd = r < 0 ? -1 : p.fd;
	if (fd >= 0) {
		exercise_dmabuf((int)fd, size, GX_PARTIAL_MMAP);

		/* importing its own export: the same GEM object, no attachment */
		h2 = prime_import((int)card, (int)fd, "ok", "self-import");
		if (h2)
			expect_eq("self-import gives the exporting handle", h2, handle);
	}

	/* implicit fences: vgem attaches one to the buffer's reservation object */
	fa = (struct drm_vgem_fence_attach){ .handle = handle, .flags = 0x2 };
	TRY("EINVAL", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_ATTACH, &fa), "DRM_IOCTL_VGEM_FENCE_ATTACH bad flags flags=0x2");
	fa = (struct drm_vgem_fence_attach){ .handle = handle, .flags = VGEM_FENCE_WRITE, .pad = 1 };
	TRY("EINVAL", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_ATTACH, &fa), "DRM_IOCTL_VGEM_FENCE_ATTACH pad not zero");
	fa = (struct drm_vgem_fence_attach){ .handle = handle + 1000, .flags = VGEM_FENCE_WRITE };
	TRY("ENOENT", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_ATTACH, &fa),
	    "DRM_IOCTL_VGEM_FENCE_ATTACH no such handle handle=%u", fa.handle);
	fa = (struct drm_vgem_fence_attach){ .handle = handle, .flags = VGEM_FENCE_WRITE };
	r = TRY("ok", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_ATTACH, &fa),
		"DRM_IOCTL_VGEM_FENCE_ATTACH WRITE handle=%u flags=0x1", handle);
	if (r >= 0)
		fence = fa.out_fence;
	if (fence) {
		struct drm_vgem_fence_attach busy = { .handle = handle, .flags = VGEM_FENCE_WRITE };
		int sync_fd = -1;
		struct dbuf other = { .fd = -1 };

		TRY("EBUSY", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_ATTACH, &busy),
		    "DRM_IOCTL_VGEM_FENCE_ATTACH WRITE while a write fence is pending handle=%u", handle);
		busy.flags = 0;
		TRY("EBUSY", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_ATTACH, &busy),
		    "DRM_IOCTL_VGEM_FENCE_ATTACH READ while a write fence is pending handle=%u", handle);
		if (fd >= 0) {
			r = poll1((int)fd, POLLIN | POLLOUT, 0, "dma-buf with a pending write fence");
			if (r >= 0)
				expect_hex("poll revents with a pending write fence", (unsigned long long)r, 0);
			sync_fd = sync_file_export((int)fd, DMA_BUF_SYNC_READ, "ok");
			if (sync_fd >= 0) {
				r = poll1(sync_fd, POLLIN, 0, "sync_file of a pending fence");
				if (r >= 0)
					expect_hex("poll revents of a pending sync_file", (unsigned long long)r, 0);
				/* hand the pending fence to another buffer */
				int s = pick_src();

				if (s >= 0 && buf_new(&other, (enum src)s, g_page, true) == 0) {
					sync_file_import(other.fd, sync_fd, DMA_BUF_SYNC_WRITE, "ok");
					r = poll1(other.fd, POLLIN, 0, "buffer that imported the pending fence");
					if (r >= 0)
						expect_hex("poll revents after importing a pending fence",
							   (unsigned long long)r, 0);
				}
			}
		}
		fs = (struct drm_vgem_fence_signal){ .fence = fence, .flags = 1 };
		TRY("EINVAL", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_SIGNAL, &fs), "DRM_IOCTL_VGEM_FENCE_SIGNAL bad flags flags=0x1");
		fs = (struct drm_vgem_fence_signal){ .fence = fence + 1000 };
		TRY("ENOENT", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_SIGNAL, &fs),
		    "DRM_IOCTL_VGEM_FENCE_SIGNAL no such fence fence=%u", fs.fence);
		fs = (struct drm_vgem_fence_signal){ .fence = fence };
		if (fd >= 0) {
			sync_waits_for_fence((int)card, (int)fd, size, fence);
		} else {
			/* ETIMEDOUT: vgem signalled it itself after 10 s (a very slow machine) */
			TRY("ok|ETIMEDOUT", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_SIGNAL, &fs),
			    "DRM_IOCTL_VGEM_FENCE_SIGNAL fence=%u", fence);
		}
		TRY("ENOENT", ioctl((int)card, DRM_IOCTL_VGEM_FENCE_SIGNAL, &fs),
		    "DRM_IOCTL_VGEM_FENCE_SIGNAL again fence=%u", fence);
		if (fd >= 0) {
			r = poll1((int)fd, POLLIN | POLLOUT, 1000, "dma-buf after the fence signalled");
			if (r >= 0)
				expect_hex("poll revents after signalling", (unsigned long long)r, POLLIN | POLLOUT);
		}
		if (sync_fd >= 0) {
			r = poll1(sync_fd, POLLIN, 1000, "sync_file after the fence signalled");
			if (r >= 0)
				expect_hex("poll revents of a signalled sync_file", (unsigned long long)r, POLLIN);
			closefd(sync_fd, "sync_file");
		}
		if (other.fd >= 0) {
			r = poll1(other.fd, POLLIN | POLLOUT, 1000, "other buffer after the fence signalled");
			if (r >= 0)
				expect_hex("poll revents of the other buffer after signalling", (unsigned long long)r,
					   POLLIN | POLLOUT);
			buf_free(&other);
		}
		if (fd >= 0) {
			void *map = dmap((int)fd, size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, "ok", "after the fence");

			if (map != MAP_FAILED) {
				bracket((int)fd, map, size, DMA_BUF_SYNC_RW, 0x5b);
				dunmap(map, size);
			}
		}
	}

	if (fd >= 0)
		closefd((int)fd, "vgem dma-buf");
	gem_close((int)card, handle, "ok");
	gem_close((int)card, handle, "EINVAL");
	return 0;
}

/* ------------------------------------------------------------------------- */
/* section: vivid                                                              */

static int vivid_find(char *path, size_t n)
{
	for (int i = 0; i < 64; i++) {
		struct v4l2_capability cap;
		char p[32];
		uint32_t caps;
		int fd;

		snprintf(p, sizeof(p), "/dev/video%d", i);
		fd = open(p, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		memset(&cap, 0, sizeof(cap));
		if (ioctl(fd, VIDIOC_QUERYCAP, &cap) == 0 && strncmp((char *)cap.driver, "vivid", sizeof(cap.driver)) == 0) {
			caps = (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
			if ((caps & V4L2_CAP_VIDEO_CAPTURE) && (caps & V4L2_CAP_STREAMING)) {
				close(fd);
				snprintf(path, n, "%s", p);
				return 0;
			}
		}
		close(fd);
	}
	return -1;
}

static long reqbufs(int vfd, uint32_t memory, uint32_t count, const char *expect)
{
	struct v4l2_requestbuffers rb = { .count = count, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = memory };
	long r = TRY(expect, ioctl(vfd, VIDIOC_REQBUFS, &rb), "VIDIOC_REQBUFS memory=%s count=%u",
		     memory == V4L2_MEMORY_MMAP ? "MMAP" : "DMABUF", count);

	return r < 0 ? r : (long)rb.count;
}

static long qbuf(int vfd, uint32_t memory, uint32_t index, int dmafd, size_t len, const char *expect)
{
	struct v4l2_buffer b = { .index = index, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = memory };

	if (memory == V4L2_MEMORY_DMABUF) {
		b.m.fd = dmafd;
		b.length = (uint32_t)len;
		return TRY(expect, ioctl(vfd, VIDIOC_QBUF, &b), "VIDIOC_QBUF memory=DMABUF index=%u fd=%d len=%zu", index,
			   dmafd, len);
	}
	return TRY(expect, ioctl(vfd, VIDIOC_QBUF, &b), "VIDIOC_QBUF memory=MMAP index=%u", index);
}

/* STREAMON, wait for a frame, DQBUF; returns its index or -1. */
static int capture_one(int vfd, uint32_t memory)
{
	int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	struct v4l2_buffer b = { .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .memory = memory };
	long r;

	if (TRY("ok", ioctl(vfd, VIDIOC_STREAMON, &type), "VIDIOC_STREAMON") < 0)
		return -1;
	r = poll1(vfd, POLLIN, g_timeout_s * 1000, "video node for a frame");
	if (r <= 0) {
		mismatch("a captured frame within the timeout", "POLLIN", r == 0 ? "timeout" : "error");
		return -1;
	}
	r = TRY("ok", ioctl(vfd, VIDIOC_DQBUF, &b), "VIDIOC_DQBUF memory=%s", memory == V4L2_MEMORY_MMAP ? "MMAP" : "DMABUF");
	if (r < 0)
		return -1;
	if (b.bytesused == 0)
		mismatch("bytesused of the captured frame", "more than 0", "0");
	return (int)b.index;
}

static void streamoff(int vfd)
{
	int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;

	TRY("ok", ioctl(vfd, VIDIOC_STREAMOFF, &type), "VIDIOC_STREAMOFF");
}

static int expbuf(int vfd, uint32_t index, uint32_t flags, const char *expect)
{
	struct v4l2_exportbuffer e = { .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .index = index, .flags = flags, .fd = -1 };
	long r = TRY(expect, ioctl(vfd, VIDIOC_EXPBUF, &e), "VIDIOC_EXPBUF index=%u flags=0x%x", index, flags);

	if (r < 0)
		return -1;
	if (strcmp(expect, "ok") != 0) {
		close_unexpected(e.fd);
		return -1;
	}
	return e.fd;
}

static void read_frame(int fd, size_t size, const char *what)
{
	void *map = dmap(fd, size, PROT_READ, MAP_SHARED, 0, "ok", what);

	if (map == MAP_FAILED)
		return;
	if (!bracket(fd, map, size, DMA_BUF_SYNC_READ, -1))
		note("the captured frame is all zero bytes");
	dunmap(map, size);
}

static int sec_vivid(void)
{
	char path[32];
	struct v4l2_format f;
	size_t sizeimage, size;
	long vfd, r, count;
	int card = -1;

	if (vivid_find(path, sizeof(path)) < 0)
		return skip("no vivid single-planar video capture node (module vivid, e.g. n_devs=1 node_types=0x1)");
	vfd = TRY("ok", open(path, O_RDWR | O_CLOEXEC), "open vivid %s", path);
	if (vfd < 0)
		return 0;
	{
		struct v4l2_capability cap;

		memset(&cap, 0, sizeof(cap));
		if (TRY("ok", ioctl((int)vfd, VIDIOC_QUERYCAP, &cap), "VIDIOC_QUERYCAP") >= 0 &&
		    strncmp((char *)cap.driver, "vivid", sizeof(cap.driver)) != 0)
			mismatch("V4L2 driver name", "vivid", (char *)cap.driver);
	}
	/* a small frame: TCG is slow */
	memset(&f, 0, sizeof(f));
	f.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	TRY("ok", ioctl((int)vfd, VIDIOC_G_FMT, &f), "VIDIOC_G_FMT");
	f.fmt.pix.width = 320;
	f.fmt.pix.height = 180;
	f.fmt.pix.pixelformat = V4L2_PIX_FMT_YUYV;
	f.fmt.pix.field = V4L2_FIELD_NONE;
	f.fmt.pix.bytesperline = 0;
	f.fmt.pix.sizeimage = 0;
	TRY("ok", ioctl((int)vfd, VIDIOC_S_FMT, &f), "VIDIOC_S_FMT width=320 height=180 pixelformat=YUYV");
	memset(&f, 0, sizeof(f));
	f.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	if (TRY("ok", ioctl((int)vfd, VIDIOC_G_FMT, &f), "VIDIOC_G_FMT") < 0 || f.fmt.pix.sizeimage == 0) {
		closefd((int)vfd, "vivid");
		return 0;
	}
	sizeimage = f.fmt.pix.sizeimage;
	size = page_align(sizeimage);
	emit("%s: NOTE format width=%u height=%u sizeimage=%zu", g_section, f.fmt.pix.width, f.fmt.pix.height, sizeimage);
	if (src_available(SRC_VGEM))
		card = src_open(SRC_VGEM);
	else
		note("no vgem: vivid's exported buffer is not imported by another device");

	/* ---- export: vb2 (vmalloc) buffers as dma-bufs ---- */
	count = reqbufs((int)vfd, V4L2_MEMORY_MMAP, 2, "ok");
	if (count >= 2) {
		int efd[2] = { -1, -1 };
		long esize = 0;

		expbuf((int)vfd, (uint32_t)count + 5, O_CLOEXEC | O_RDWR, "EINVAL");
		expbuf((int)vfd, 0, O_CLOEXEC | O_RDWR | O_NONBLOCK, "EINVAL");
		efd[0] = expbuf((int)vfd, 0, O_CLOEXEC | O_RDWR, "ok");
		efd[1] = expbuf((int)vfd, 1, O_CLOEXEC | O_RDWR, "ok");
		if (efd[0] >= 0) {
			esize = lseek_step(efd[0], 0, SEEK_END, "ok");
			if (esize >= 0 && (size_t)esize < sizeimage)
				mismatch("exported buffer size", "at least sizeimage", "smaller");
			if (esize > 0)
				exercise_dmabuf(efd[0], (size_t)esize, 0);
			if (card >= 0) {
				uint32_t h = prime_import(card, efd[0], "ok", "vivid export");

				if (h) {
					uint32_t h2 = prime_import(card, efd[0], "ok", "again, the prime cache");

					if (h2)
						expect_eq("second import gives the same handle", h2, h);
					gem_close(card, h, "ok");
				}
			}
		}
		if (efd[0] >= 0 && efd[1] >= 0 && esize > 0) {
			int idx;

			qbuf((int)vfd, V4L2_MEMORY_MMAP, 0, -1, 0, "ok");
			qbuf((int)vfd, V4L2_MEMORY_MMAP, 1, -1, 0, "ok");
			idx = capture_one((int)vfd, V4L2_MEMORY_MMAP);
			if (idx == 0 || idx == 1)
				read_frame(efd[idx], (size_t)esize, "captured frame through the exported dma-buf");
			streamoff((int)vfd);
		}
		closefd(efd[0], "vivid dma-buf");
		closefd(efd[1], "vivid dma-buf");
	}
	if (count >= 0)
		reqbufs((int)vfd, V4L2_MEMORY_MMAP, 0, "ok");

	/* ---- import: capture into dma-bufs of another exporter ---- */
	{
		int s = pick_src();
		struct dbuf b[2] = { { .fd = -1 }, { .fd = -1 } }, small = { .fd = -1 };

		if (s < 0) {
			note("no udmabuf, heap or vgem: DMABUF import not exercised");
			goto out;
		}
		if (buf_new(&b[0], (enum src)s, size, true) < 0 || buf_new(&b[1], (enum src)s, size, true) < 0)
			goto release;
		count = reqbufs((int)vfd, V4L2_MEMORY_DMABUF, 2, "ok");
		if (count < 2)
			goto release;
		qbuf((int)vfd, V4L2_MEMORY_DMABUF, 0, -1, size, "EINVAL");
		if (sizeimage > g_page && buf_new(&small, (enum src)s, g_page, true) == 0) {
			qbuf((int)vfd, V4L2_MEMORY_DMABUF, 0, small.fd, small.size, "EINVAL");
			buf_free(&small);
		}
		r = qbuf((int)vfd, V4L2_MEMORY_DMABUF, 0, b[0].fd, b[0].size, "ok");
		if (r >= 0 && qbuf((int)vfd, V4L2_MEMORY_DMABUF, 1, b[1].fd, b[1].size, "ok") >= 0) {
			int idx = capture_one((int)vfd, V4L2_MEMORY_DMABUF);

			if (idx == 0 || idx == 1)
				read_frame(b[idx].fd, b[idx].size, "captured frame in the imported buffer");
			streamoff((int)vfd);
		}
		reqbufs((int)vfd, V4L2_MEMORY_DMABUF, 0, "ok");
release:
		buf_free(&b[0]);
		buf_free(&b[1]);
	}
out:
	closefd((int)vfd, "vivid");
	return 0;
}

/* ------------------------------------------------------------------------- */
/* fork and exec                                                               */

/* The exec'd helpers get the marker destination and the section. */
static void exec_self(const char *mode, int fd, size_t size)
{
	char fdbuf[16], szbuf[32];
	const char *argv[8];
	int n = 0;

	snprintf(fdbuf, sizeof(fdbuf), "%d", fd);
	snprintf(szbuf, sizeof(szbuf), "%zu", size);
	argv[n++] = g_self;
	if (g_marker_path) {
		argv[n++] = "--marker-file";
		argv[n++] = g_marker_path;
	}
	argv[n++] = mode;
	argv[n++] = fdbuf;
	argv[n++] = szbuf;
	argv[n] = NULL;
	step("ok", "execve %s %s fd=%d", g_self, mode, fd);
	execv(g_self, (char *const *)argv);
	printf("FAIL %s: execv %s: %s\n", g_section, g_self, strerror(errno));
	fflush(stdout);
	_exit(127);
}

static void child_exit(void)
{
	fflush(stdout);
	_exit(g_sec_failed ? 1 : 0);
}

static long fork_step(const char *what)
{
	fflush(stdout);
	return TRY("ok", fork(), "fork %s", what);
}

static void wait_child(long pid, int want)
{
	int st = 0;

	if (pid <= 0)
		return;
	if (TRY("ok", waitpid((pid_t)pid, &st, 0), "waitpid pid=%ld", pid) < 0)
		return;
	expect_eq("child exit status", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), want);
}

static int sec_fork(void)
{
	int s = pick_src();
	struct dbuf b, nb;
	void *map;
	long pid, r;

	if (s < 0)
		return skip("no dma-buf exporter (udmabuf, heap or vgem)");
	if (buf_new(&b, (enum src)s, 4 * g_page, true) < 0)
		return 0;
	r = TRY("ok", fcntl(b.fd, F_GETFD), "fcntl F_GETFD fd=%d", b.fd);
	if (r >= 0)
		expect_hex("FD_CLOEXEC on the dma-buf fd", (unsigned long long)r & FD_CLOEXEC, FD_CLOEXEC);
	map = dmap(b.fd, b.size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, "ok", "shared with the child");
	if (map != MAP_FAILED) {
		bracket(b.fd, map, b.size, DMA_BUF_SYNC_WRITE, 0x11);

		/* a child inherits the fd and the mapping, uses both, closes both */
		pid = fork_step("child uses the inherited fd and mapping");
		if (pid == 0) {
			r = lseek_step(b.fd, 0, SEEK_END, "ok");
			if (r >= 0)
				expect_eq("llseek SEEK_END in the child", r, (long long)b.size);
			bracket(b.fd, map, b.size, DMA_BUF_SYNC_READ, 0x11);
			bracket(b.fd, map, b.size, DMA_BUF_SYNC_WRITE, 0x22);
			dunmap(map, b.size);
			closefd(b.fd, "inherited dma-buf");
			child_exit();
		}
		wait_child(pid, 0);
		/* the parent sees the child's write */
		bracket(b.fd, map, b.size, DMA_BUF_SYNC_READ, 0x22);
	}

	/* a child that exits at once: the kernel closes its copies */
	pid = fork_step("child exits without touching the fd");
	if (pid == 0)
		child_exit();
	wait_child(pid, 0);

	/* exec: an O_CLOEXEC dma-buf fd does not survive it */
	pid = fork_step("child execs with the O_CLOEXEC fd");
	if (pid == 0)
		exec_self("--child-check-closed", b.fd, b.size);
	wait_child(pid, 0);

	/* without O_CLOEXEC, fork alone is fine; no exec happens while the fd is open */
	if (buf_new(&nb, (enum src)s, g_page, false) == 0) {
		r = TRY("ok", fcntl(nb.fd, F_GETFD), "fcntl F_GETFD fd=%d", nb.fd);
		if (r >= 0)
			expect_hex("FD_CLOEXEC on a dma-buf fd created without it", (unsigned long long)r & FD_CLOEXEC, 0);
		pid = fork_step("child inherits an fd without O_CLOEXEC and does not exec");
		if (pid == 0) {
			r = lseek_step(nb.fd, 0, SEEK_END, "ok");
			if (r >= 0)
				expect_eq("llseek SEEK_END in the child", r, (long long)nb.size);
			closefd(nb.fd, "inherited dma-buf");
			child_exit();
		}
		wait_child(pid, 0);
	}
	buf_free(&nb);

	if (map != MAP_FAILED)
		dunmap(map, b.size);
	buf_free(&b);
	return 0;
}

/* exec'd helper: the O_CLOEXEC fd must be gone */
static int child_check_closed(int fd)
{
	g_section = "fork";
	emit("begin pid=%d mode=child check=closed fd=%d", (int)getpid(), fd);
	TRY("EBADF", fcntl(fd, F_GETFD), "exec child fcntl F_GETFD fd=%d", fd);
	return g_sec_failed ? 1 : 0;
}

/* exec'd helper for fd-no-cloexec-exec: the fd survived; hold it briefly */
static int child_hold_fd(int fd, size_t size)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	long r;

	g_section = "fd-no-cloexec-exec";
	emit("begin pid=%d mode=child check=open fd=%d", (int)getpid(), fd);
	r = TRY("ok", fcntl(fd, F_GETFD), "exec child fcntl F_GETFD fd=%d", fd);
	if (r >= 0 && size) {
		r = lseek_step(fd, 0, SEEK_END, "ok");
		if (r >= 0)
			expect_eq("llseek SEEK_END of the leaked fd", r, (long long)size);
	}
	nanosleep(&ts, NULL);
	return g_sec_failed ? 1 : 0;
}

/* ------------------------------------------------------------------------- */
/* section: exit                                                               */

static int sec_exit(void)
{
	int s = pick_src();
	struct dbuf b;
	void *map;

	if (s < 0)
		return skip("no dma-buf exporter (udmabuf, heap or vgem)");
	if (buf_new(&b, (enum src)s, g_page, true) < 0)
		return 0;
	map = dmap(b.fd, b.size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, "ok", "kept until exit");
	if (map != MAP_FAILED)
		bracket(b.fd, map, b.size, DMA_BUF_SYNC_WRITE, 0x77);
	/* no close, no munmap: exit releases them (the GEM handle, if any, goes with the card fd) */
	emit("%s: NOTE leaving fd=%d addr=0x%lx len=%zu for the kernel to release at exit", g_section, b.fd,
	     (unsigned long)map, b.size);
	g_dev[SRC_VGEM] = -1;	/* keep the vgem card (if used) open too */
	return 0;
}

/* ------------------------------------------------------------------------- */
/* seeded misuse                                                               */

struct misuse_setup {
	struct dbuf b;
	void *map;
};

static int misuse_buffer(struct misuse_setup *m, bool cloexec, bool with_map)
{
	int s = pick_src();

	m->map = MAP_FAILED;
	if (s < 0)
		return skip("no dma-buf exporter (udmabuf, heap or vgem)");
	if (buf_new(&m->b, (enum src)s, g_page, cloexec) < 0)
		return -1;
	if (with_map) {
		m->map = dmap(m->b.fd, m->b.size, PROT_READ | PROT_WRITE, MAP_SHARED, 0, "ok", "for the misuse");
		if (m->map == MAP_FAILED)
			return -1;
	}
	return 0;
}

static int misuse_sync_start_no_end(void)
{
	struct misuse_setup m;
	int r = misuse_buffer(&m, true, true);

	if (r)
		return r > 0 ? r : 0;
	dsync(m.b.fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE, "ok");
	touch(m.map, m.b.size, DMA_BUF_SYNC_WRITE, 0x42);
	emit("%s: NOTE exiting with SYNC START|WRITE open on fd=%d", g_section, m.b.fd);
	g_dev[SRC_VGEM] = -1;	/* leave everything to exit */
	return 0;
}

static int misuse_sync_start_twice(void)
{
	struct misuse_setup m;
	int r = misuse_buffer(&m, true, true);

	if (r)
		return r > 0 ? r : 0;
	dsync(m.b.fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW, "ok");
	touch(m.map, m.b.size, DMA_BUF_SYNC_WRITE, 0x42);
	dsync(m.b.fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW, "ok");	/* the misuse: nested START */
	touch(m.map, m.b.size, DMA_BUF_SYNC_RW, 0x42);
	dsync(m.b.fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW, "ok");
	dsync(m.b.fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW, "ok");
	dunmap(m.map, m.b.size);
	buf_free(&m.b);
	return 0;
}

static int misuse_read_bracket_write(void)
{
	struct misuse_setup m;
	int r = misuse_buffer(&m, true, true);

	if (r)
		return r > 0 ? r : 0;
	dsync(m.b.fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, "ok");
	touch(m.map, m.b.size, DMA_BUF_SYNC_READ, -1);
	touch(m.map, m.b.size, DMA_BUF_SYNC_WRITE, 0x42);	/* the misuse: a write in a READ bracket */
	dsync(m.b.fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, "ok");
	dunmap(m.map, m.b.size);
	buf_free(&m.b);
	return 0;
}

static int misuse_mmap_no_sync(void)
{
	struct misuse_setup m;
	int r = misuse_buffer(&m, true, true);

	if (r)
		return r > 0 ? r : 0;
	touch(m.map, m.b.size, DMA_BUF_SYNC_WRITE, 0x42);	/* the misuse: no SYNC around it */
	dunmap(m.map, m.b.size);
	buf_free(&m.b);
	return 0;
}

static int misuse_fd_no_cloexec_exec(void)
{
	struct misuse_setup m;
	long r, pid;
	int rc = misuse_buffer(&m, false, false);

	if (rc)
		return rc > 0 ? rc : 0;
	r = TRY("ok", fcntl(m.b.fd, F_GETFD), "fcntl F_GETFD fd=%d", m.b.fd);
	if (r >= 0)
		expect_hex("FD_CLOEXEC on the dma-buf fd", (unsigned long long)r & FD_CLOEXEC, 0);
	pid = fork_step("child execs with the fd open, the misuse");
	if (pid == 0)
		exec_self("--child-hold-fd", m.b.fd, m.b.size);
	wait_child(pid, 0);
	buf_free(&m.b);
	return 0;
}

/* ------------------------------------------------------------------------- */
/* tables, options, main                                                       */

struct section {
	const char *name;
	int (*run)(void);
	const char *what;
};

static const struct section sections[] = {
	{ "udmabuf", sec_udmabuf,
	  "/dev/udmabuf (module udmabuf): UDMABUF_CREATE and _LIST with the refused arguments, the dma-buf surface, "
	  "pages shared with the memfd" },
	{ "heap", sec_heap,
	  "/dev/dma_heap/system: DMA_HEAP_IOCTL_ALLOC with the refused arguments, the dma-buf surface, page rounding, "
	  "a read-only buffer" },
	{ "vgem", sec_vgem,
	  "vgem card (module vgem): PRIME import of udmabuf and heap buffers, export of a dumb buffer and its dma-buf "
	  "surface, self-import, implicit fences with poll and sync files" },
	{ "vivid", sec_vivid,
	  "vivid capture node (module vivid): EXPBUF export (imported by vgem), a frame read through it, DMABUF import "
	  "of another exporter's buffers with a captured frame" },
	{ "fork", sec_fork,
	  "fork with an inherited fd and mapping, O_CLOEXEC fds gone after exec, a fd without O_CLOEXEC across fork "
	  "only" },
	{ "exit", sec_exit, "a buffer left open and mapped for the kernel to release at exit" },
};

struct misuse {
	const char *name;
	int (*run)(void);
	const char *rule;
	const char *what;
};

static const struct misuse misuses[] = {
	{ "sync-start-no-end", misuse_sync_start_no_end, "SYNC-LEAK",
	  "SYNC START|WRITE, a write, exit without SYNC END" },
	{ "sync-start-twice", misuse_sync_start_twice, "SYNC-START-TWICE",
	  "SYNC START|RW inside an open START|RW on the same buffer (both ended)" },
	{ "read-bracket-write", misuse_read_bracket_write, "SYNC-ACCESS-DIRECTION",
	  "a write to the mapping inside a SYNC START|READ bracket" },
	{ "mmap-no-sync", misuse_mmap_no_sync, "MMAP-ACCESS-WITHOUT-SYNC",
	  "a write to the mapping with no SYNC bracket" },
	{ "fd-no-cloexec-exec", misuse_fd_no_cloexec_exec, "FD-NO-CLOEXEC",
	  "a dma-buf fd created without O_CLOEXEC, open across fork and execve" },
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: exerciser [--sections a,b,...] [--verbose] [--marker-file PATH] [--timeout SEC]\n"
		"       exerciser --misuse NAME [--verbose] [--marker-file PATH]\n"
		"       exerciser --list\n"
		"Walks the userspace dma-buf API with checked results and trace_marker lines; see --list.\n");
}

static void list(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		printf("section %s: %s\n", sections[i].name, sections[i].what);
	for (size_t i = 0; i < ARRAY_SIZE(misuses); i++)
		printf("misuse %s %s: %s\n", misuses[i].name, misuses[i].rule, misuses[i].what);
}

/* ioctl numbers of dmabuf-uapi.h, for the tests to compare with system headers */
static void print_ioctls(void)
{
#define P(x) printf("%s 0x%lx\n", #x, (unsigned long)(x))
	P(DMA_BUF_IOCTL_SYNC);
	P(DMA_BUF_SET_NAME_A);
	P(DMA_BUF_SET_NAME_B);
	P(DMA_BUF_IOCTL_EXPORT_SYNC_FILE);
	P(DMA_BUF_IOCTL_IMPORT_SYNC_FILE);
	P(UDMABUF_CREATE);
	P(UDMABUF_CREATE_LIST);
	P(DMA_HEAP_IOCTL_ALLOC);
	P(DRM_IOCTL_VERSION);
	P(DRM_IOCTL_GEM_CLOSE);
	P(DRM_IOCTL_PRIME_HANDLE_TO_FD);
	P(DRM_IOCTL_PRIME_FD_TO_HANDLE);
	P(DRM_IOCTL_MODE_CREATE_DUMB);
	P(DRM_IOCTL_VGEM_FENCE_ATTACH);
	P(DRM_IOCTL_VGEM_FENCE_SIGNAL);
#undef P
}

static void run_section(const char *name, int (*run)(void))
{
	int r;

	g_section = name;
	g_sec_failed = 0;
	g_skip_reason[0] = 0;
	emit("%s: BEGIN", name);
	r = run();
	src_close_all();
	if (r == SKIPPED) {
		printf("SKIP %s: %s\n", name, g_skip_reason);
		emit("%s: SKIP %s", name, g_skip_reason);
		g_n_skip++;
	} else if (g_sec_failed) {
		printf("FAIL %s\n", name);
		emit("%s: FAIL", name);
		g_n_fail++;
	} else {
		printf("PASS %s\n", name);
		emit("%s: PASS", name);
		g_n_pass++;
	}
	fflush(stdout);
}

static const char *kernel_release(void)
{
	static struct utsname u;

	return uname(&u) == 0 ? u.release : "unknown";
}

static int parse_fd(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return (*s && !*end && v >= 0 && v < INT_MAX) ? (int)v : -1;
}

int main(int argc, char **argv)
{
	const char *want = NULL, *misuse = NULL;
	bool selected[ARRAY_SIZE(sections)] = { false };
	char secbuf[256] = "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	g_page = (size_t)sysconf(_SC_PAGESIZE);
	{
		ssize_t n = readlink("/proc/self/exe", g_self, sizeof(g_self) - 1);

		if (n > 0)
			g_self[n] = 0;
		else
			snprintf(g_self, sizeof(g_self), "%s", argv[0]);
	}

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--list")) {
			list();
			return 0;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--print-ioctls")) {
			print_ioctls();
			return 0;
		} else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
			g_verbose = true;
		} else if (!strcmp(a, "--sections") && i + 1 < argc) {
			want = argv[++i];
		} else if (!strcmp(a, "--misuse") && i + 1 < argc) {
			misuse = argv[++i];
		} else if (!strcmp(a, "--marker-file") && i + 1 < argc) {
			g_marker_path = argv[++i];
		} else if (!strcmp(a, "--timeout") && i + 1 < argc) {
			g_timeout_s = atoi(argv[++i]);
			if (g_timeout_s <= 0) {
				fprintf(stderr, "exerciser: --timeout needs a positive number of seconds\n");
				return 2;
			}
		} else if ((!strcmp(a, "--child-check-closed") || !strcmp(a, "--child-hold-fd")) && i + 2 < argc) {
			/* hidden: the exec'd side of the fork section and of fd-no-cloexec-exec */
			int fd = parse_fd(argv[i + 1]);
			size_t size = (size_t)strtoull(argv[i + 2], NULL, 10);

			if (fd < 0)
				return 2;
			marker_open();
			return !strcmp(a, "--child-check-closed") ? child_check_closed(fd) : child_hold_fd(fd, size);
		} else {
			fprintf(stderr, "exerciser: unknown or incomplete option '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (misuse && want) {
		fprintf(stderr, "exerciser: --misuse and --sections do not mix\n");
		return 2;
	}

	if (misuse) {
		const struct misuse *m = NULL;

		for (size_t i = 0; i < ARRAY_SIZE(misuses); i++)
			if (!strcmp(misuse, misuses[i].name))
				m = &misuses[i];
		if (!m) {
			fprintf(stderr, "exerciser: unknown misuse '%s' (see --list)\n", misuse);
			return 2;
		}
		marker_open();
		printf("exerciser: kernel %s, misuse %s (expect %s)\n", kernel_release(), m->name, m->rule);
		emit("begin pid=%d kernel=%s mode=misuse misuse=%s rule=%s", (int)getpid(), kernel_release(), m->name,
		     m->rule);
		run_section(m->name, m->run);
	} else {
		if (!want || !strcmp(want, "all")) {
			for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
				selected[i] = true;
		} else {
			char *copy = strdup(want), *save = NULL;

			for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				size_t i;

				for (i = 0; i < ARRAY_SIZE(sections); i++)
					if (!strcmp(t, sections[i].name))
						break;
				if (i == ARRAY_SIZE(sections)) {
					fprintf(stderr, "exerciser: unknown section '%s' (see --list)\n", t);
					free(copy);
					return 2;
				}
				selected[i] = true;
			}
			free(copy);
		}
		for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
			if (selected[i]) {
				size_t l = strlen(secbuf);

				snprintf(secbuf + l, sizeof(secbuf) - l, "%s%s", l ? "," : "", sections[i].name);
			}
		marker_open();
		printf("exerciser: kernel %s, sections %s\n", kernel_release(), secbuf);
		emit("begin pid=%d kernel=%s mode=exercise sections=%s", (int)getpid(), kernel_release(), secbuf);
		/* the sections run in table order, whatever order --sections named them in */
		for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
			if (selected[i])
				run_section(sections[i].name, sections[i].run);
	}
	emit("end passed=%d failed=%d skipped=%d", g_n_pass, g_n_fail, g_n_skip);
	printf("exerciser: %d passed, %d failed, %d skipped\n", g_n_pass, g_n_fail, g_n_skip);
	return g_n_fail ? 1 : 0;
}
