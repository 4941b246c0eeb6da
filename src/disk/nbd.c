/* SPDX-License-Identifier: MIT */
/*
 * The network disk: a member disk behind any NBD server, through libnbd's
 * asynchronous API.  Any thread issues commands; one poll thread per disk
 * drives libnbd's state machine and ends the I/Os.  libnbd runs completion
 * callbacks with its handle lock held, so they only queue the I/O, and the
 * poll thread calls done after libnbd returns (done may issue more I/O).
 * A FUA write to a server that can flush but not FUA is a write and then a
 * flush, ended when the flush is: never acknowledged before it is durable.
 */
#include <errno.h>
#include <libnbd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "disk/disk_priv.h"

#define NBD_MAX_IO (32u << 20)   /* what every NBD server accepts */

struct nbd_disk {
	struct hbk_disk d;
	struct nbd_handle *h;
	bool can_fua, can_flush, can_trim;
	int wake_fd;                    /* eventfd: a command was queued, or stop */
	atomic_bool stop;
	pthread_mutex_t lock;
	struct hbk_disk_io *ended;      /* completed by libnbd, not yet delivered */
	pthread_t thread;
};

static void wake(struct nbd_disk *n)
{
	uint64_t one = 1;
	ssize_t w = write(n->wake_fd, &one, sizeof(one));
	(void)w;   /* a full counter already means "wake up" */
}

/* libnbd completion callback, under the handle lock: queue only. */
static int nbd_ended(void *user_data, int *error)
{
	struct hbk_disk_io *io = user_data;
	struct nbd_disk *n = (struct nbd_disk *)io->disk_;
	io->result_ = *error ? -*error : 0;
	pthread_mutex_lock(&n->lock);
	io->next_ = n->ended;
	n->ended = io;
	pthread_mutex_unlock(&n->lock);
	return 1;   /* retire the command */
}

/* The -errno of a command libnbd refused to issue, logged.  Once the
 * server is gone libnbd refuses with EINVAL ("invalid state"), which
 * would read as a bad request: the disk says -ENOTCONN, as libnbd does for
 * the commands that were in flight when the connection went. */
static int issue_error(struct nbd_disk *n)
{
	int e = nbd_get_errno();
	hbk_log(HBK_LOG_WARN, "disk %s: %s", n->d.info.name, nbd_get_error());
	if (nbd_aio_is_dead(n->h) || nbd_aio_is_closed(n->h))
		return -ENOTCONN;
	return e ? -e : -EIO;
}

/* Whether io is a FUA write whose data the server took without FUA and
 * that still needs its flush (moved_ is set once the flush is issued). */
static bool needs_flush(const struct nbd_disk *n, const struct hbk_disk_io *io)
{
	return io->op == HBK_DISK_WRITE && io->flags & HBK_DISK_FUA && !n->can_fua &&
	       n->can_flush && !io->result_ && io->moved_ != io->len;
}

/* Ends what libnbd completed, or sends the flush a FUA write still needs.
 * The poll thread. */
static void deliver(struct nbd_disk *n)
{
	pthread_mutex_lock(&n->lock);
	struct hbk_disk_io *io = n->ended;
	n->ended = NULL;
	pthread_mutex_unlock(&n->lock);
	while (io) {
		struct hbk_disk_io *next = io->next_;
		if (needs_flush(n, io)) {
			io->moved_ = io->len;
			nbd_completion_callback cb = { .callback = nbd_ended, .user_data = io };
			if (nbd_aio_flush(n->h, cb, 0) >= 0) {
				io = next;
				continue;
			}
			io->result_ = issue_error(n);
		}
		disk_complete(&n->d, io, io->result_);
		io = next;
	}
}

static void nbd_submit(struct hbk_disk *d, struct hbk_disk_io *io)
{
	struct nbd_disk *n = (struct nbd_disk *)d;
	nbd_completion_callback cb = { .callback = nbd_ended, .user_data = io };
	int64_t c = 0;
	switch (io->op) {
	case HBK_DISK_READ:
		c = nbd_aio_pread(n->h, io->buf, io->len, io->offset, cb, 0);
		break;
	case HBK_DISK_WRITE:
		c = nbd_aio_pwrite(n->h, io->buf, io->len, io->offset, cb,
				   (io->flags & HBK_DISK_FUA) && n->can_fua ? LIBNBD_CMD_FLAG_FUA : 0);
		break;
	case HBK_DISK_FLUSH:
		if (n->can_flush)
			c = nbd_aio_flush(n->h, cb, 0);
		else
			disk_complete(d, io, 0);
		break;
	case HBK_DISK_DISCARD:
		if (n->can_trim)
			c = nbd_aio_trim(n->h, io->len, io->offset, cb, 0);
		else
			disk_complete(d, io, 0);
		break;
	}
	if (c < 0) {
		disk_complete(d, io, issue_error(n));
		return;
	}
	wake(n);
}

static void *nbd_main(void *arg)
{
	hbk_thread_name("hbk-disk-nbd");
	struct nbd_disk *n = arg;
	while (!atomic_load(&n->stop)) {
		struct pollfd p[2] = { { .fd = n->wake_fd, .events = POLLIN }, { .fd = -1 } };
		if (!nbd_aio_is_dead(n->h) && !nbd_aio_is_closed(n->h)) {
			unsigned dir = nbd_aio_get_direction(n->h);
			p[1].fd = nbd_aio_get_fd(n->h);
			p[1].events = (short)((dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
					      (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0));
		}
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			hbk_log(HBK_LOG_ERR, "disk %s: poll: %s", n->d.info.name, strerror(errno));
			break;
		}
		if (p[0].revents & POLLIN) {
			uint64_t v;
			ssize_t r = read(n->wake_fd, &v, sizeof(v));
			(void)r;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
			nbd_aio_notify_read(n->h);
		else if (p[1].revents & POLLOUT)
			nbd_aio_notify_write(n->h);
		deliver(n);
	}
	deliver(n);
	return NULL;
}

static void nbd_close_disk(struct hbk_disk *d)
{
	struct nbd_disk *n = (struct nbd_disk *)d;
	atomic_store(&n->stop, true);
	wake(n);
	pthread_join(n->thread, NULL);
	nbd_shutdown(n->h, 0);
	nbd_close(n->h);
	close(n->wake_fd);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

static const struct disk_ops nbd_ops = { .submit = nbd_submit, .close = nbd_close_disk };

int hbk_disk_open_nbd(const char *target, struct hbk_disk **out)
{
	struct nbd_disk *n = calloc(1, sizeof(*n));
	int err;
	if (!n)
		return -ENOMEM;
	n->h = nbd_create();
	if (!n->h) {
		err = -ENOMEM;
		goto free_n;
	}
	if ((strstr(target, "://") ? nbd_connect_uri(n->h, target)
				   : nbd_connect_unix(n->h, target)) < 0) {
		err = nbd_get_errno() ? -nbd_get_errno() : -EPROTO;
		hbk_log(HBK_LOG_ERR, "disk %s: %s", target, nbd_get_error());
		goto close_h;
	}
	int64_t size = nbd_get_size(n->h);
	int64_t min = nbd_get_block_size(n->h, LIBNBD_SIZE_MINIMUM);
	int64_t max = nbd_get_block_size(n->h, LIBNBD_SIZE_MAXIMUM);
	uint32_t bs = min > 512 && min <= 65536 ? (uint32_t)min : 512;
	if (size < (int64_t)bs) {
		err = -EINVAL;
		hbk_log(HBK_LOG_ERR, "disk %s: export too small", target);
		goto close_h;
	}
	n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->wake_fd < 0) {
		err = -errno;
		goto close_h;
	}
	disk_init(&n->d, &nbd_ops, "nbd", target, (uint64_t)size - (uint64_t)size % bs);
	n->d.info.block_size = bs;
	n->d.info.max_io = max > 0 && max < NBD_MAX_IO ? (uint64_t)max : NBD_MAX_IO;
	n->d.info.read_only = nbd_is_read_only(n->h) == 1;
	n->can_fua = nbd_can_fua(n->h) == 1;
	n->can_flush = nbd_can_flush(n->h) == 1;
	n->can_trim = nbd_can_trim(n->h) == 1;
	n->d.info.discard = n->can_trim;
	pthread_mutex_init(&n->lock, NULL);
	atomic_init(&n->stop, false);
	err = -pthread_create(&n->thread, NULL, nbd_main, n);
	if (err)
		goto destroy;
	*out = &n->d;
	return 0;

destroy:
	pthread_mutex_destroy(&n->lock);
	pthread_mutex_destroy(&n->d.lock);
	close(n->wake_fd);
close_h:
	nbd_close(n->h);
free_n:
	free(n);
	return err;
}
