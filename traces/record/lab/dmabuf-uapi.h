/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few dma-buf, udmabuf, dma-heap, DRM and vgem userspace ABI definitions
 * the lab exerciser needs, written out here so that it builds with nothing but
 * the C library's headers (and <linux/videodev2.h>, which every Linux libc
 * development package ships).  Distribution headers lag the kernel: Debian 12's
 * linux-libc-dev has no DRM headers at all, and older ones lack the sync-file
 * ioctls.  Values are the kernel's ABI, so they never change; each block names
 * the uapi header it describes, and the static assertions below pin the sizes
 * and (on x86-64) the ioctl numbers.  `exerciser --print-ioctls` prints them so
 * the tests can compare them with whatever system headers exist.
 */
#ifndef DMASPEC_LAB_DMABUF_UAPI_H
#define DMASPEC_LAB_DMABUF_UAPI_H

#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/ioctl.h>

/* ---- include/uapi/linux/dma-buf.h ------------------------------------- */
struct dma_buf_sync {
	uint64_t flags;
};
#define DMA_BUF_SYNC_READ	(1 << 0)
#define DMA_BUF_SYNC_WRITE	(2 << 0)
#define DMA_BUF_SYNC_RW		(DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE)
#define DMA_BUF_SYNC_START	(0 << 2)
#define DMA_BUF_SYNC_END	(1 << 2)
#define DMA_BUF_SYNC_VALID_FLAGS_MASK (DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END)
#define DMA_BUF_NAME_LEN	32

/* Linux 6.0+ */
struct dma_buf_export_sync_file {
	uint32_t flags;
	int32_t fd;
};
struct dma_buf_import_sync_file {
	uint32_t flags;
	int32_t fd;
};

#define DMA_BUF_BASE		'b'
#define DMA_BUF_IOCTL_SYNC	_IOW(DMA_BUF_BASE, 0, struct dma_buf_sync)
/* SET_NAME is _IOW('b', 1, const char *): _A and _B are its 32- and 64-bit
 * spellings; the kernel accepts both (Linux 5.3+, _A/_B since 5.8). */
#define DMA_BUF_SET_NAME_A	_IOW(DMA_BUF_BASE, 1, uint32_t)
#define DMA_BUF_SET_NAME_B	_IOW(DMA_BUF_BASE, 1, uint64_t)
#define DMA_BUF_IOCTL_EXPORT_SYNC_FILE _IOWR(DMA_BUF_BASE, 2, struct dma_buf_export_sync_file)
#define DMA_BUF_IOCTL_IMPORT_SYNC_FILE _IOW(DMA_BUF_BASE, 3, struct dma_buf_import_sync_file)

/* ---- include/uapi/linux/udmabuf.h (Linux 4.20+) ----------------------- */
#define UDMABUF_FLAGS_CLOEXEC	0x01
struct udmabuf_create {
	uint32_t memfd;
	uint32_t flags;
	uint64_t offset;
	uint64_t size;
};
struct udmabuf_create_item {
	uint32_t memfd;
	uint32_t __pad;
	uint64_t offset;
	uint64_t size;
};
struct udmabuf_create_list {
	uint32_t flags;
	uint32_t count;
	struct udmabuf_create_item list[];
};
#define UDMABUF_CREATE		_IOW('u', 0x42, struct udmabuf_create)
#define UDMABUF_CREATE_LIST	_IOW('u', 0x43, struct udmabuf_create_list)

/* ---- include/uapi/linux/dma-heap.h (Linux 5.6+) ----------------------- */
struct dma_heap_allocation_data {
	uint64_t len;
	uint32_t fd;
	uint32_t fd_flags;	/* O_CLOEXEC and the access mode only */
	uint64_t heap_flags;	/* none defined */
};
#define DMA_HEAP_IOC_MAGIC	'H'
#define DMA_HEAP_IOCTL_ALLOC	_IOWR(DMA_HEAP_IOC_MAGIC, 0x0, struct dma_heap_allocation_data)

/* ---- include/uapi/drm/drm.h ------------------------------------------- */
struct drm_version {
	int version_major;
	int version_minor;
	int version_patchlevel;
	size_t name_len;	/* __kernel_size_t */
	char *name;
	size_t date_len;
	char *date;
	size_t desc_len;
	char *desc;
};
struct drm_gem_close {
	uint32_t handle;
	uint32_t pad;
};
struct drm_prime_handle {
	uint32_t handle;
	uint32_t flags;		/* DRM_CLOEXEC | DRM_RDWR */
	int32_t fd;
};
#define DRM_CLOEXEC		O_CLOEXEC
#define DRM_RDWR		O_RDWR
#define DRM_IOCTL_BASE		'd'
#define DRM_IOWR(nr, type)	_IOWR(DRM_IOCTL_BASE, nr, type)
#define DRM_IOW(nr, type)	_IOW(DRM_IOCTL_BASE, nr, type)
#define DRM_COMMAND_BASE	0x40
#define DRM_IOCTL_VERSION	DRM_IOWR(0x00, struct drm_version)
#define DRM_IOCTL_GEM_CLOSE	DRM_IOW(0x09, struct drm_gem_close)
#define DRM_IOCTL_PRIME_HANDLE_TO_FD DRM_IOWR(0x2d, struct drm_prime_handle)
#define DRM_IOCTL_PRIME_FD_TO_HANDLE DRM_IOWR(0x2e, struct drm_prime_handle)

/* ---- include/uapi/drm/drm_mode.h -------------------------------------- */
struct drm_mode_create_dumb {
	uint32_t height;
	uint32_t width;
	uint32_t bpp;
	uint32_t flags;
	uint32_t handle;	/* out */
	uint32_t pitch;		/* out */
	uint64_t size;		/* out */
};
#define DRM_IOCTL_MODE_CREATE_DUMB DRM_IOWR(0xB2, struct drm_mode_create_dumb)

/* ---- include/uapi/drm/vgem_drm.h (Linux 4.10+) ------------------------ */
struct drm_vgem_fence_attach {
	uint32_t handle;
	uint32_t flags;		/* VGEM_FENCE_WRITE */
	uint32_t out_fence;
	uint32_t pad;
};
#define VGEM_FENCE_WRITE	0x1
struct drm_vgem_fence_signal {
	uint32_t fence;
	uint32_t flags;
};
#define DRM_IOCTL_VGEM_FENCE_ATTACH DRM_IOWR(DRM_COMMAND_BASE + 0x1, struct drm_vgem_fence_attach)
#define DRM_IOCTL_VGEM_FENCE_SIGNAL DRM_IOW(DRM_COMMAND_BASE + 0x2, struct drm_vgem_fence_signal)

/* ---- layout checks ----------------------------------------------------- */
_Static_assert(sizeof(struct dma_buf_sync) == 8, "dma_buf_sync");
_Static_assert(sizeof(struct dma_buf_export_sync_file) == 8, "dma_buf_export_sync_file");
_Static_assert(sizeof(struct dma_buf_import_sync_file) == 8, "dma_buf_import_sync_file");
_Static_assert(sizeof(struct udmabuf_create) == 24, "udmabuf_create");
_Static_assert(sizeof(struct udmabuf_create_item) == 24, "udmabuf_create_item");
_Static_assert(sizeof(struct udmabuf_create_list) == 8, "udmabuf_create_list");
_Static_assert(sizeof(struct dma_heap_allocation_data) == 24, "dma_heap_allocation_data");
_Static_assert(sizeof(struct drm_gem_close) == 8, "drm_gem_close");
_Static_assert(sizeof(struct drm_prime_handle) == 12, "drm_prime_handle");
_Static_assert(sizeof(struct drm_mode_create_dumb) == 32, "drm_mode_create_dumb");
_Static_assert(sizeof(struct drm_vgem_fence_attach) == 16, "drm_vgem_fence_attach");
_Static_assert(sizeof(struct drm_vgem_fence_signal) == 8, "drm_vgem_fence_signal");
#if defined(__x86_64__)
_Static_assert(sizeof(struct drm_version) == 64, "drm_version");
_Static_assert(DMA_BUF_IOCTL_SYNC == 0x40086200, "DMA_BUF_IOCTL_SYNC");
_Static_assert(DMA_BUF_SET_NAME_B == 0x40086201, "DMA_BUF_SET_NAME_B");
_Static_assert(DMA_BUF_IOCTL_EXPORT_SYNC_FILE == 0xc0086202, "DMA_BUF_IOCTL_EXPORT_SYNC_FILE");
_Static_assert(DRM_IOCTL_VERSION == 0xc0406400, "DRM_IOCTL_VERSION");
_Static_assert(DRM_IOCTL_GEM_CLOSE == 0x40086409, "DRM_IOCTL_GEM_CLOSE");
_Static_assert(DRM_IOCTL_PRIME_HANDLE_TO_FD == 0xc00c642d, "DRM_IOCTL_PRIME_HANDLE_TO_FD");
_Static_assert(DRM_IOCTL_PRIME_FD_TO_HANDLE == 0xc00c642e, "DRM_IOCTL_PRIME_FD_TO_HANDLE");
_Static_assert(DRM_IOCTL_MODE_CREATE_DUMB == 0xc02064b2, "DRM_IOCTL_MODE_CREATE_DUMB");
#endif

#endif /* DMASPEC_LAB_DMABUF_UAPI_H */
