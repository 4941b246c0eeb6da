/* SPDX-License-Identifier: MIT */
/*
 * The firmware of the emulated RAID controller: its threads take the
 * contexts the queue manager admitted, check each frame, run its CDB through
 * the shared SCSI emulation against the virtual drive the frame names, and
 * post the reply.  The emulation's block backend is a volume: each backend
 * call submits a volume I/O whose buffer is the frame's data address, so
 * data moves straight between the volume and the host's arena.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "device/device_priv.h"

/* A firmware thread's wait for the volume I/O it submitted; the thread's
 * own, for its whole life, so it outlives every I/O it waits for. */
struct waiter {
	sem_t done;
	int result;
};

/* What this firmware thread executes: the emulation calls the backend on
 * the calling thread, so the backend finds its context here. */
static __thread struct hbk_dev *cur_dev;
static __thread struct fw_ctx *cur_ctx;
static __thread struct waiter *cur_waiter;

/* ---- The volume behind the SCSI emulation ------------------------------------ */

static void vio_done(struct hbk_vol_io *io, int result)
{
	struct waiter *w = io->priv;
	w->result = result;
	sem_post(&w->done);
}

/* This thread stops (or resumes) running while it waits on a volume: with
 * work queued, another thread may take the CPU meanwhile. */
static void blocked(struct hbk_dev *dev, bool waiting)
{
	pthread_mutex_lock(&dev->lock);
	if (!waiting) {
		dev->running++;
	} else if (--dev->running < dev->ncpu && dev->run_head && dev->idle_threads) {
		pthread_cond_signal(&dev->work_cond);
	}
	pthread_mutex_unlock(&dev->lock);
}

/*
 * One volume I/O for the context this thread executes, waited for.  It is
 * submitted under the context's lock, so task management either sees it in
 * flight (and cancels it) or has marked the context before (and it is not
 * submitted at all).
 */
static int vol_io(struct fw_vd *vd, uint8_t op, uint64_t lba, uint64_t n, void *buf, bool fua)
{
	struct fw_ctx *c = cur_ctx;
	struct waiter *w = cur_waiter;
	struct hbk_vol_io io = { .op = op, .fua = fua, .lba = lba, .nblocks = n, .buf = buf,
				 .done = vio_done, .priv = w };
	pthread_mutex_lock(&c->lock);
	if (atomic_load(&c->aborted)) {
		pthread_mutex_unlock(&c->lock);
		return -ECANCELED;
	}
	c->vol = vd->vol;
	c->vio = &io;
	vd->vol->ops->submit(vd->vol, &io);
	pthread_mutex_unlock(&c->lock);

	if (sem_trywait(&w->done)) {  /* not done inside submit, as memory volumes are */
		blocked(cur_dev, true);
		while (sem_wait(&w->done))
			;  /* EINTR */
		blocked(cur_dev, false);
	}
	pthread_mutex_lock(&c->lock);
	c->vio = NULL;
	pthread_mutex_unlock(&c->lock);
	return w->result;
}

void fw_terminate(struct fw_ctx *c)
{
	pthread_mutex_lock(&c->lock);
	atomic_store(&c->aborted, true);
	if (c->vio && c->vol->ops->cancel)
		c->vol->ops->cancel(c->vol, c->vio);
	pthread_mutex_unlock(&c->lock);
}

static int be_read(void *ctx, uint64_t lba, uint32_t n, void *buf)
{
	return vol_io(ctx, HBK_VOL_READ, lba, n, buf, false);
}

static int be_write(void *ctx, uint64_t lba, uint32_t n, const void *buf, bool fua)
{
	return vol_io(ctx, HBK_VOL_WRITE, lba, n, (void *)buf, fua);
}

static int be_flush(void *ctx)
{
	return vol_io(ctx, HBK_VOL_FLUSH, 0, 0, NULL, false);
}

static int be_unmap(void *ctx, uint64_t lba, uint64_t n)
{
	return vol_io(ctx, HBK_VOL_UNMAP, lba, n, NULL, false);
}

static int be_lba_status(void *ctx, uint64_t lba, uint32_t *n, bool *mapped)
{
	struct fw_vd *vd = ctx;
	return vd->vol->ops->lba_status(vd->vol, lba, n, mapped);
}

/* ---- Virtual drives ------------------------------------------------------------- */

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;
	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

int fw_vds_init(struct hbk_dev *dev, struct hbk_vol *const *vols, unsigned n, const char *serial)
{
	dev->vds = calloc(n, sizeof(*dev->vds));
	if (!dev->vds)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct fw_vd *vd = &dev->vds[i];
		struct hbk_vol *v = vols[i];
		if (!v || !v->ops || !v->ops->submit || !v->block_size || v->nblocks < 1)
			return -EINVAL;
		vd->vol = v;
		vd->ops = (struct hbk_scsi_backend_ops){
			.read = be_read, .write = be_write,
			.flush = v->flags & HBK_VOL_WRITE_CACHE ? be_flush : NULL,
			.unmap = v->flags & HBK_VOL_THIN ? be_unmap : NULL,
			.lba_status = v->ops->lba_status ? be_lba_status : NULL,
		};
		snprintf(vd->serial, sizeof(vd->serial), "%s-VD%u-%s", serial, i, v->name);
		struct hbk_scsi_lun_cfg cfg = {
			.vendor = "HBAKIT", .product = "VIRTUAL DRIVE", .revision = "1.0",
			.serial = vd->serial,
			.naa = 0x6001405d00000000ull | (uint64_t)(fnv1a(serial) & 0xffffff) << 8 | i,
			.block_size = v->block_size, .nblocks = v->nblocks,
			.max_xfer_blocks = dev->max_xfer / v->block_size,
			.opt_xfer_blocks = v->opt_blocks,
			.write_cache = v->flags & HBK_VOL_WRITE_CACHE,
			.rotational = v->flags & HBK_VOL_ROTATIONAL,
			.lbprz = v->flags & HBK_VOL_LBPRZ,
			.ops = &vd->ops, .ctx = vd,
		};
		int err = hbk_scsi_lun_init(&vd->lun, &cfg);
		if (err)
			return err;
		vd->lun_ready = true;
		vd->luns[0] = &vd->lun;
		vd->target = (struct hbk_scsi_target){ .lun_count = 1, .luns = vd->luns };
	}
	return 0;
}

void fw_vds_fini(struct hbk_dev *dev)
{
	for (unsigned i = 0; dev->vds && i < dev->nvds; i++)
		if (dev->vds[i].lun_ready)
			hbk_scsi_lun_fini(&dev->vds[i].lun);
	free(dev->vds);
	dev->vds = NULL;
}

/* ---- Execution ---------------------------------------------------------------------- */

static bool frame_valid(const struct hbk_dev *dev, const struct hbk_dev_frame *f)
{
	return (f->cdb_len == 6 || f->cdb_len == 10 || f->cdb_len == 12 || f->cdb_len == 16) &&
	       f->dir <= HBK_DIR_READ && f->data_len <= dev->max_xfer &&
	       (!f->data_len || (f->data_addr && f->data_addr % HBK_DEV_DMA_ALIGN == 0));
}

/* Runs I/O context c and fills its reply. */
static void execute(struct hbk_dev *dev, struct fw_ctx *c, struct hbk_dev_reply *rep)
{
	const struct hbk_dev_frame *f = &c->f;
	if (!frame_valid(dev, f)) {
		rep->status = HBK_DEV_ST_INVALID_FRAME;
		return;
	}
	if (f->target >= dev->nvds) {
		rep->status = HBK_DEV_ST_NO_TARGET;
		return;
	}
	struct hbk_scsi_req req = {
		.initiator = f->initiator, .lun = hbk_scsi_lun_decode(f->lun), .cdb = f->cdb, .cdb_len = f->cdb_len,
		.buf = f->data_len ? (void *)(uintptr_t)f->data_addr : NULL,  /* DMA: zero copy */
		.buf_len = f->data_len, .dir = (enum hbk_dir)f->dir,
	};
	struct hbk_scsi_reply out;
	cur_ctx = c;
	hbk_scsi_exec(&dev->vds[f->target].target, &req, &out);
	cur_ctx = NULL;
	if (atomic_load(&c->aborted)) {
		rep->status = HBK_DEV_ST_TERMINATED;
		return;
	}
	rep->scsi_status = out.status;
	rep->residual = f->data_len - (uint32_t)HBK_MIN(out.bytes, (uint64_t)f->data_len);
	rep->sense_len = (uint8_t)HBK_MIN(out.sense_len, HBK_DEV_SENSE_MAX);
	memcpy(rep->sense, out.sense, rep->sense_len);
}

void *fw_thread(void *arg)
{
	struct hbk_dev *dev = arg;
	struct waiter w;
	sem_init(&w.done, 0, 0);
	cur_waiter = &w;
	cur_dev = dev;
	pthread_mutex_lock(&dev->lock);
	for (;;) {
		while (!dev->run_head && !dev->stop) {
			dev->idle_threads++;
			pthread_cond_wait(&dev->work_cond, &dev->lock);
			dev->idle_threads--;
		}
		struct fw_ctx *c = dev->run_head;
		if (!c)
			break;
		dev->run_head = c->next;
		if (!dev->run_head)
			dev->run_tail = NULL;
		c->state = CTX_EXEC;
		dev->running++;
		pthread_mutex_unlock(&dev->lock);

		struct hbk_dev_reply rep = { .tag = c->f.tag, .function = c->f.function };
		if (atomic_load(&c->aborted))
			rep.status = HBK_DEV_ST_TERMINATED;  /* ended before it started */
		else
			execute(dev, c, &rep);
		dev_post_reply(dev, c->f.reply_queue < dev->nqueues ? c->f.reply_queue : 0, &rep);

		pthread_mutex_lock(&dev->lock);
		dev->running--;
		dev_ctx_end(dev, c, rep.status == HBK_DEV_ST_TERMINATED);
	}
	pthread_mutex_unlock(&dev->lock);
	sem_destroy(&w.done);
	return NULL;
}
