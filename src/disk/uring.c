/* SPDX-License-Identifier: MIT */
/*
 * The file and block-device disk: one io_uring per disk, fed under a lock by
 * any submitting thread and drained by one completion thread that also
 * resubmits the rest of a short transfer.  O_DIRECT is used when an aligned
 * probe read works (the alignment it needed becomes the block size), the
 * page cache otherwise.  Discard punches a hole in a file and issues
 * BLKDISCARD on a block device.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/disk_priv.h"

struct uring_disk {
	struct hbk_disk d;
	int fd;
	bool blockdev;
	struct io_uring ring;
	pthread_mutex_t sq_lock;     /* the submission queue has one producer at a time */
	/* Bumped (release) after each queued entry and read (acquire) before a
	 * completion is handled: the kernel hands the I/O between the threads,
	 * and this makes that handoff visible to the memory model (and TSan). */
	atomic_ulong queued;
	pthread_t thread;
};

/*
 * Queues what is left of io (io == NULL: the stop marker) and submits it.
 * Any thread.
 */
static void queue(struct uring_disk *u, struct hbk_disk_io *io)
{
	pthread_mutex_lock(&u->sq_lock);
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(&u->ring)))
		io_uring_submit(&u->ring);
	if (!io) {
		io_uring_prep_nop(sqe);
	} else {
		void *buf = (uint8_t *)io->buf + io->moved_;
		uint64_t off = io->offset + io->moved_;
		unsigned len = (unsigned)(io->len - io->moved_);
		switch (io->op) {
		case HBK_DISK_READ:
			io_uring_prep_read(sqe, u->fd, buf, len, off);
			break;
		case HBK_DISK_WRITE:
			io_uring_prep_write(sqe, u->fd, buf, len, off);
			if (io->flags & HBK_DISK_FUA)
				sqe->rw_flags = RWF_DSYNC;
			break;
		case HBK_DISK_FLUSH:
			io_uring_prep_fsync(sqe, u->fd, IORING_FSYNC_DATASYNC);
			break;
		case HBK_DISK_DISCARD:
			io_uring_prep_fallocate(sqe, u->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						off, len);
			break;
		}
	}
	io_uring_sqe_set_data(sqe, io);
	atomic_fetch_add_explicit(&u->queued, 1, memory_order_release);
	int r;
	do
		r = io_uring_submit(&u->ring);
	while (r == -EINTR || r == -EAGAIN || r == -EBUSY);
	if (r < 0)   /* the entry stays queued and goes with the next submit */
		hbk_log(HBK_LOG_ERR, "disk %s: io_uring_submit: %s", u->d.info.name, hbk_strerror(r));
	pthread_mutex_unlock(&u->sq_lock);
}

static void uring_submit(struct hbk_disk *d, struct hbk_disk_io *io)
{
	struct uring_disk *u = (struct uring_disk *)d;
	if (io->op == HBK_DISK_DISCARD && u->blockdev) {
		/* No io_uring discard before Linux 6.12: a synchronous ioctl. */
		uint64_t range[2] = { io->offset, io->len };
		int r = ioctl(u->fd, BLKDISCARD, range) ? -errno : 0;
		disk_complete(d, io, r);
		return;
	}
	queue(u, io);
}

/* Ends one completion: finishes io or sends the rest of a short transfer. */
static void reap(struct uring_disk *u, struct hbk_disk_io *io, int res)
{
	if (io->op == HBK_DISK_FLUSH || io->op == HBK_DISK_DISCARD) {
		disk_complete(&u->d, io, res < 0 ? res : 0);
		return;
	}
	if (res == -EAGAIN || res == -EINTR) {
		queue(u, io);
		return;
	}
	if (res < 0) {
		disk_complete(&u->d, io, res);
		return;
	}
	if (res == 0) {
		/* End of file: a sparse tail reads as zeros; a write cannot end. */
		if (io->op == HBK_DISK_WRITE) {
			disk_complete(&u->d, io, -EIO);
			return;
		}
		memset((uint8_t *)io->buf + io->moved_, 0, io->len - io->moved_);
		io->moved_ = io->len;
	}
	io->moved_ += (uint64_t)res;
	if (io->moved_ < io->len)
		queue(u, io);
	else
		disk_complete(&u->d, io, 0);
}

static void *uring_main(void *arg)
{
	struct uring_disk *u = arg;
	for (;;) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&u->ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r < 0) {
			hbk_log(HBK_LOG_ERR, "disk %s: io_uring_wait_cqe: %s", u->d.info.name,
				hbk_strerror(r));
			break;
		}
		atomic_load_explicit(&u->queued, memory_order_acquire);
		struct hbk_disk_io *io = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		if (!io)
			break;
		reap(u, io, res);
	}
	return NULL;
}

static void uring_close(struct hbk_disk *d)
{
	struct uring_disk *u = (struct uring_disk *)d;
	queue(u, NULL);
	pthread_join(u->thread, NULL);
	io_uring_queue_exit(&u->ring);
	pthread_mutex_destroy(&u->sq_lock);
	close(u->fd);
	free(u);
}

static const struct disk_ops uring_ops = { .submit = uring_submit, .close = uring_close };

/*
 * Whether O_DIRECT reads work on fd, and the smallest alignment they need
 * (512 or 4096); 0 when they do not work at all.
 */
static uint32_t probe_direct(int fd)
{
	void *buf;
	uint32_t found = 0;
	if (posix_memalign(&buf, 4096, 8192))
		return 0;
	for (uint32_t a = 512; a <= 4096 && !found; a *= 8)
		if (pread(fd, (uint8_t *)buf + a, a, 0) >= 0)  /* aligned to a, not more */
			found = a;
	free(buf);
	return found;
}

/* Opens path, with O_DIRECT as opts ask and the filesystem allows; sets
 * *align to the O_DIRECT alignment, or 0 for the page cache. */
static int open_fd(const char *path, const struct hbk_disk_file_opts *o, uint32_t *align)
{
	int flags = (o->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (o->create_size ? O_CREAT : 0);
	*align = 0;
	if (o->direct != HBK_DISK_DIRECT_OFF) {
		int fd = hbk_disk_open_fn(path, flags | O_DIRECT, 0644);
		if (fd < 0 && errno != EINVAL)
			return -errno;
		if (fd >= 0 && o->create_size && ftruncate(fd, (off_t)o->create_size) && errno != EINVAL) {
			int err = -errno;   /* block devices cannot be resized: EINVAL */
			close(fd);
			return err;
		}
		if (fd >= 0 && (*align = probe_direct(fd)))
			return fd;
		if (fd >= 0)
			close(fd);
		if (o->direct == HBK_DISK_DIRECT_ON)
			return -EINVAL;
		hbk_log(HBK_LOG_INFO, "disk %s: O_DIRECT refused, using the page cache", path);
	}
	int fd = hbk_disk_open_fn(path, flags, 0644);
	if (fd < 0)
		return -errno;
	if (o->create_size && ftruncate(fd, (off_t)o->create_size) && errno != EINVAL) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int hbk_disk_open_file(const char *path, const struct hbk_disk_file_opts *opts,
		       struct hbk_disk **out)
{
	struct hbk_disk_file_opts o = opts ? *opts : (struct hbk_disk_file_opts){ 0 };
	uint32_t align;
	int fd = open_fd(path, &o, &align), err;
	if (fd < 0)
		return fd;

	struct stat st;
	uint64_t size = 0;
	uint32_t bs = 512;
	bool blockdev = false;
	if (fstat(fd, &st)) {
		err = -errno;
		goto close_fd;
	}
	if (S_ISBLK(st.st_mode)) {
		int lbs = 512;
		blockdev = true;
		if (ioctl(fd, BLKGETSIZE64, &size) || ioctl(fd, BLKSSZGET, &lbs)) {
			err = -errno;
			goto close_fd;
		}
		bs = (uint32_t)lbs;
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		err = -EINVAL;
		goto close_fd;
	}
	bs = HBK_MAX(bs, align);
	size -= size % bs;
	if (!size) {
		err = -EINVAL;
		goto close_fd;
	}

	struct uring_disk *u = calloc(1, sizeof(*u));
	if (!u) {
		err = -ENOMEM;
		goto close_fd;
	}
	err = io_uring_queue_init(o.queue_depth ? o.queue_depth : 128, &u->ring, 0);
	if (err)
		goto free_u;
	disk_init(&u->d, &uring_ops, blockdev ? "blockdev" : "file", path, size);
	u->d.info.block_size = bs;
	u->d.info.mem_align = align ? align : 1;
	u->d.info.max_io = 1u << 30;
	u->d.info.direct = align != 0;
	u->d.info.read_only = o.read_only;
	u->d.info.discard = !o.read_only;
	u->d.info.discard_zeroes = !blockdev;
	u->fd = fd;
	u->blockdev = blockdev;
	pthread_mutex_init(&u->sq_lock, NULL);
	err = -pthread_create(&u->thread, NULL, uring_main, u);
	if (err)
		goto exit_ring;
	*out = &u->d;
	return 0;

exit_ring:
	pthread_mutex_destroy(&u->sq_lock);
	pthread_mutex_destroy(&u->d.lock);
	io_uring_queue_exit(&u->ring);
free_u:
	free(u);
close_fd:
	close(fd);
	return err;
}
