#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/udmabuf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
static void mark(const char *s) { int f = open("/sys/kernel/tracing/trace_marker", O_WRONLY); if (f >= 0) { write(f, s, strlen(s)); close(f); } }
int main(int argc, char **argv) {
	if (argc > 1 && !strcmp(argv[1], "child")) { mark("child after exec"); return 0; }
	int dev = open("/dev/udmabuf", O_RDWR);
	int mem = memfd_create("x", MFD_ALLOW_SEALING);
	ftruncate(mem, 4096 * 4);
	fcntl(mem, F_ADD_SEALS, F_SEAL_SHRINK);
	struct udmabuf_create c = { .memfd = mem, .flags = UDMABUF_FLAGS_CLOEXEC, .offset = 0, .size = 4096 * 4 };
	mark("create");
	int buf = ioctl(dev, UDMABUF_CREATE, &c);
	printf("buf=%d\n", buf);
	mark("dup");
	int d = dup(buf);
	int d2 = dup2(buf, 20);
	int d3 = dup3(buf, 21, O_CLOEXEC);
	mark("fcntl");
	fcntl(d, F_SETFD, FD_CLOEXEC);
	fcntl(d2, F_DUPFD_CLOEXEC, 30);
	mark("mmap");
	void *p = mmap(NULL, 4096 * 4, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE };
	ioctl(buf, DMA_BUF_IOCTL_SYNC, &s);
	memset(p, 1, 4096);
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE;
	ioctl(buf, DMA_BUF_IOCTL_SYNC, &s);
	munmap(p, 4096 * 4);
	mark("fork");
	pid_t pid = fork();
	if (pid == 0) { close(buf); close(d3); execl("/proc/self/exe", argv[0], "child", (char *)0); _exit(1); }
	waitpid(pid, NULL, 0);
	mark("close");
	close(d); close(d2); close(d3); close(21); close(30); close(buf);
	close(mem); close(dev);
	return 0;
}
