/* SPDX-License-Identifier: MIT */
/*
 * The file and block-device disk: one io_uring per disk, owned by one ring
 * thread that is its only issuer.  Submitting threads push their I/O on a
 * lock-free list and kick the ring thread (an eventfd write, only when it
 * sleeps); the ring thread turns what it finds into entries, enters them
 * with one io_uring_enter that also collects completions, and ends the
 * completions in batches, resubmitting the rest of a short transfer.  Being
 * the only issuer, the ring thread is the task the kernel runs completion
 * work on (deferred until it asks, IORING_SETUP_DEFER_TASKRUN where the
 * kernel has it), so a completion wakes one thread, never the thread that
 * happened to submit.  A submitter under a plug (hbk_disk_plug) only
 * pushes; the plug's end kicks once for the whole batch.  O_DIRECT is used
 * when an aligned probe read works (the alignment it needed becomes the
 * block size), the page cache otherwise.  Discard punches a hole in a file
 * and issues BLKDISCARD on a block device.
 *
 * With polling (poll_ms > 0) a kernel thread takes the entries off the
 * ring (IORING_SETUP_SQPOLL), one for every polling disk of the process
 * (IORING_SETUP_ATTACH_WQ to a small anchor ring), and runs their
 * completion work too.  Submitters then put their I/O on the ring
 * themselves, under the disk's sq_lock, and no thread is woken to submit:
 * the disk starts on a read as soon as it is queued.  The ring thread only
 * reaps.  The poller spins while I/O flows and sleeps poll_ms after the
 * last, so it costs a CPU while the disk is busy: the card's own processor.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "disk/disk_priv.h"

#define REAP_BATCH 32   /* completions ended per round */

struct uring_disk {
	struct hbk_disk d;
	int fd;
	bool blockdev;
	uint32_t entries;
	struct io_uring ring;        /* the ring thread's alone; polling: its submission
				      * side under sq_lock, its completion side the ring
				      * thread's */
	uint32_t poll_ms;            /* 0, or a kernel thread polls the ring (above) */
	pthread_mutex_t sq_lock;     /* polling: the submission side of ring */
	atomic_uint handed;          /* polling: I/O put on the ring (see queue()) */
	int efd;                     /* kicks, and the kernel's completion signal */
	/* Submitted I/O not yet on the ring, newest first (linked by next_). */
	_Atomic(struct hbk_disk_io *) pending;
	atomic_bool sleeping;        /* the ring thread waits on efd */
	atomic_bool stop;            /* close: the ring thread ends */
	pthread_t thread;
	struct hbk_latch ready;      /* the ring is set up (0) or could not be (-errno) */
};

/* Wakes the ring thread if it sleeps.  Any thread. */
static void kick(struct uring_disk *u)
{
	/* Seq_cst, with the push before it and the ring thread's store of
	 * sleeping and load of pending: either that thread sees the pushed
	 * I/O before it sleeps, or this exchange sees it sleeping. */
	if (atomic_exchange(&u->sleeping, false)) {
		uint64_t one = 1;
		ssize_t n = write(u->efd, &one, sizeof(one));
		(void)n;  /* EAGAIN only when the counter is full: it wakes anyway */
	}
}

static void prep(struct uring_disk *u, struct hbk_disk_io *io);

/*
 * Hands what is left of io to the ring thread and wakes it, unless the
 * calling thread's plug holds the kick back.  Polling: puts it on the ring
 * at once, for the kernel's poller (a plug has nothing to save there).
 * Any thread.
 */
static void queue(struct uring_disk *u, struct hbk_disk_io *io)
{
	if (u->poll_ms) {
		pthread_mutex_lock(&u->sq_lock);
		prep(u, io);
		/* Release: pairs with the acquire in reap_batch().  The kernel
		 * orders the submission before its completion already, through
		 * the rings' own barriers, but out of the sanitizers' sight;
		 * this makes the hand-off of io's fields one they see. */
		atomic_fetch_add_explicit(&u->handed, 1, memory_order_release);
		io_uring_submit(&u->ring);   /* wakes the poller only if it sleeps */
		pthread_mutex_unlock(&u->sq_lock);
		disk_count(&u->d, ST_SUBMITTED, 1);
		return;
	}
	struct hbk_disk_io *head = atomic_load_explicit(&u->pending, memory_order_relaxed);
	do
		io->next_ = head;
	/* Seq_cst (so release): publishes io to the ring thread's exchange
	 * (acquire), and orders the push before kick's exchange. */
	while (!atomic_compare_exchange_weak(&u->pending, &head, io));
	if (!disk_plug_hold(&u->d))
		kick(u);
}

/* Whether block device dev takes discards: its queue's discard_max_bytes
 * is not 0 (when sysfs cannot tell, assume it does: a refused discard is
 * harmless, see hbk_disk_submit). */
static bool blockdev_discards(dev_t dev)
{
	char path[80];
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/discard_max_bytes",
		 major(dev), minor(dev));
	FILE *f = fopen(path, "re");
	unsigned long long max = 1;
	if (f) {
		if (fscanf(f, "%llu", &max) != 1)
			max = 1;
		fclose(f);
	}
	return max != 0;
}

/* The end of a plug: the ring thread takes the batch it held back. */
static void uring_kick(struct hbk_disk *d)
{
	kick((struct uring_disk *)d);
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

/* ---- The ring thread ------------------------------------------------------------ */

/* Enters the queued entries (and collects completions).  Ring thread. */
static void enter(struct uring_disk *u)
{
	int r;
	do
		r = io_uring_submit_and_get_events(&u->ring);
	while (r == -EINTR || r == -EAGAIN || r == -EBUSY);
	if (r > 0) {
		disk_count(&u->d, ST_SUBMIT_CALLS, 1);
		disk_count(&u->d, ST_SUBMITTED, (uint64_t)r);
	} else if (r < 0) {  /* the entries stay queued and go with the next enter */
		hbk_log(HBK_LOG_ERR, "disk %s: io_uring_enter: %s", u->d.info.name, hbk_strerror(r));
	}
}

/* Puts what is left of io on the ring.  Ring thread; polling: any thread,
 * under sq_lock. */
static void prep(struct uring_disk *u, struct hbk_disk_io *io)
{
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(&u->ring))) {   /* the ring is full: make room */
		if (u->poll_ms) {
			io_uring_submit(&u->ring);
			io_uring_sqring_wait(&u->ring);   /* until the poller took some */
		} else {
			enter(u);
		}
	}
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
	io_uring_sqe_set_data(sqe, io);
}

/* Takes every pushed I/O, oldest first, onto the ring.  Returns whether
 * there was any.  Ring thread. */
static bool take_pending(struct uring_disk *u)
{
	/* Acquire: pairs with the push in queue(), so the I/O's fields are
	 * visible. */
	struct hbk_disk_io *io = atomic_exchange_explicit(&u->pending, NULL, memory_order_acquire);
	struct hbk_disk_io *fifo = NULL;
	if (!io)
		return false;
	while (io) {
		struct hbk_disk_io *next = io->next_;
		io->next_ = fifo;
		fifo = io;
		io = next;
	}
	while (fifo) {
		struct hbk_disk_io *next = fifo->next_;
		prep(u, fifo);
		fifo = next;
	}
	return true;
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

/* Ends up to REAP_BATCH completions the ring holds: their slots are
 * returned first, then every callback runs under one plug.  Returns how
 * many.  Ring thread. */
static unsigned reap_batch(struct uring_disk *u)
{
	struct io_uring_cqe *cqes[REAP_BATCH];
	struct { struct hbk_disk_io *io; int res; } done[REAP_BATCH];
	unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, REAP_BATCH);
	if (n && u->poll_ms)   /* acquire: pairs with the release in queue() */
		(void)atomic_load_explicit(&u->handed, memory_order_acquire);
	for (unsigned i = 0; i < n; i++) {
		done[i].io = io_uring_cqe_get_data(cqes[i]);
		done[i].res = cqes[i]->res;
	}
	io_uring_cq_advance(&u->ring, n);
	struct hbk_disk_plug plug;
	hbk_disk_plug(&plug);
	for (unsigned i = 0; i < n; i++)
		reap(u, done[i].io, done[i].res);
	hbk_disk_unplug(&plug);
	return n;
}

/* The polling disks' shared kernel poller lives as long as its anchor ring,
 * which the first polling disk sets up and the last one closes. */
static pthread_mutex_t anchor_lock = PTHREAD_MUTEX_INITIALIZER;
static struct io_uring anchor;      /* under anchor_lock */
static unsigned anchor_users;       /* under anchor_lock */

/* Sets up ring as one more ring of the shared poller.  Returns 0 or -errno
 * (the kernel has no SQPOLL for this process, ...).  Ring thread. */
static int poll_setup(struct uring_disk *u)
{
	pthread_mutex_lock(&anchor_lock);
	int err = 0;
	if (!anchor_users) {
		struct io_uring_params ap = { .flags = IORING_SETUP_SQPOLL, .sq_thread_idle = u->poll_ms };
		err = io_uring_queue_init_params(2, &anchor, &ap);
	}
	if (!err) {
		struct io_uring_params p = {
			.flags = IORING_SETUP_SQPOLL | IORING_SETUP_ATTACH_WQ,
			.sq_thread_idle = u->poll_ms,
			.wq_fd = (uint32_t)anchor.ring_fd,
		};
		err = io_uring_queue_init_params(u->entries, &u->ring, &p);
		if (!err)
			anchor_users++;
		else if (!anchor_users)
			io_uring_queue_exit(&anchor);
	}
	pthread_mutex_unlock(&anchor_lock);
	return err;
}

static void poll_release(void)
{
	pthread_mutex_lock(&anchor_lock);
	if (!--anchor_users)
		io_uring_queue_exit(&anchor);
	pthread_mutex_unlock(&anchor_lock);
}

/* Sets up the ring on this thread, so that it is the ring's issuer (without
 * polling). */
static int ring_setup(struct uring_disk *u)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	};
	int err = 0;
	if (u->poll_ms && (err = poll_setup(u))) {
		hbk_log(HBK_LOG_WARN, "disk %s: no kernel polling here (%s): the ring thread "
			"submits", u->d.info.name, hbk_strerror(err));
		u->poll_ms = 0;
	}
	if (!u->poll_ms) {
		err = io_uring_queue_init_params(u->entries, &u->ring, &p);
		if (err == -EINVAL)   /* a kernel before 6.1: completion work as it comes */
			err = io_uring_queue_init(u->entries, &u->ring, 0);
	}
	if (err)
		return err;
	err = io_uring_register_eventfd(&u->ring, u->efd);
	if (err) {
		io_uring_queue_exit(&u->ring);
		if (u->poll_ms)
			poll_release();
	}
	return err;
}

static void *uring_main(void *arg)
{
	hbk_thread_name("hbk-disk-uring");
	struct uring_disk *u = arg;
	int err = ring_setup(u);
	hbk_latch_open(&u->ready, err);
	if (err)
		return NULL;
	for (;;) {
		if (!u->poll_ms) {   /* polling: the submitters and the kernel's poller do this */
			take_pending(u);
			enter(u);
		}
		if (reap_batch(u))
			continue;
		/* Nothing came back: sleep until a kick or a completion.  Seq_cst
		 * store then load: see kick(). */
		atomic_store(&u->sleeping, true);
		if (atomic_load(&u->pending) || io_uring_cq_ready(&u->ring)) {
			atomic_store(&u->sleeping, false);
			continue;
		}
		if (atomic_load(&u->stop))
			break;   /* close: nothing is in flight */
		uint64_t n;
		if (read(u->efd, &n, sizeof(n)) < 0 && errno != EINTR && errno != EAGAIN)
			hbk_log(HBK_LOG_ERR, "disk %s: eventfd: %s", u->d.info.name, strerror(errno));
		atomic_store(&u->sleeping, false);
	}
	io_uring_queue_exit(&u->ring);
	if (u->poll_ms)
		poll_release();
	return NULL;
}

static void uring_close(struct hbk_disk *d)
{
	struct uring_disk *u = (struct uring_disk *)d;
	atomic_store(&u->stop, true);
	uint64_t one = 1;   /* wakes it whether it sleeps or is about to */
	if (write(u->efd, &one, sizeof(one)) < 0)
		hbk_log(HBK_LOG_ERR, "disk %s: eventfd: %s", d->info.name, strerror(errno));
	pthread_join(u->thread, NULL);
	pthread_mutex_destroy(&u->sq_lock);
	close(u->efd);
	close(u->fd);
	free(u);
}

static const struct disk_ops uring_ops = {
	.submit = uring_submit, .close = uring_close, .kick = uring_kick,
};

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
	u->efd = eventfd(0, EFD_CLOEXEC);
	if (u->efd < 0) {
		err = -errno;
		free(u);
		goto close_fd;
	}
	disk_init(&u->d, &uring_ops, blockdev ? "blockdev" : "file", path, size);
	u->d.info.block_size = bs;
	u->d.info.mem_align = align ? align : 1;
	u->d.info.max_io = 1u << 30;
	u->d.info.direct = align != 0;
	u->d.info.read_only = o.read_only;
	u->d.info.discard = !o.read_only && (!blockdev || blockdev_discards(st.st_rdev));
	u->d.info.discard_zeroes = !blockdev;
	u->fd = fd;
	u->blockdev = blockdev;
	u->entries = o.queue_depth ? o.queue_depth : 128;
	u->poll_ms = o.poll_ms;
	pthread_mutex_init(&u->sq_lock, NULL);
	atomic_init(&u->pending, NULL);
	atomic_init(&u->sleeping, false);
	atomic_init(&u->stop, false);
	hbk_latch_reset(&u->ready);
	err = -pthread_create(&u->thread, NULL, uring_main, u);
	if (!err) {
		err = hbk_latch_wait(&u->ready);
		if (err)
			pthread_join(u->thread, NULL);
	}
	if (err) {
		pthread_mutex_destroy(&u->d.lock);
		pthread_mutex_destroy(&u->sq_lock);
		close(u->efd);
		free(u);
		goto close_fd;
	}
	*out = &u->d;
	return 0;

close_fd:
	close(fd);
	return err;
}
