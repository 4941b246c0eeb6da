/* SPDX-License-Identifier: MIT */
/*
 * The firmware of the emulated RAID controller: its threads take the
 * contexts the queue manager admitted, check each frame, run its CDB through
 * the shared SCSI emulation against the virtual drive the frame names, and
 * post the reply.  The emulation's block backend is a volume: each backend
 * call submits a volume I/O whose buffer is the frame's data address, so
 * data moves straight between the volume and the host's arena.
 *
 * READ and WRITE run asynchronously: the thread checks the command
 * (hbk_scsi_exec_async), submits its volume I/O and goes on to the next
 * frame; the reply is posted from the volume I/O's completion.  A thread
 * takes the frames queued for it in a row under one disk plug, so their
 * member I/Os reach each disk in one kernel submission.  Every other
 * command runs synchronously on the thread, which waits for its volume.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "device/device_priv.h"
#include "hbk/disk.h"

/* A firmware thread's wait for the volume I/O it submitted; the thread's
 * own, for its whole life, so it outlives every I/O it waits for. */
struct waiter {
	sem_t done;
	int result;
};

/* What this firmware thread executes synchronously: the emulation calls
 * the synchronous backend on the calling thread, which finds its context
 * here. */
static __thread struct hbk_dev *cur_dev;
static __thread struct fw_ctx *cur_ctx;
static __thread struct waiter *cur_waiter;

/* A firmware thread in a batch: contexts whose reply it posted, ended (and
 * freed) together the next time it takes the device lock anyway, linked by
 * next.  in_batch is false on every other thread. */
static __thread bool in_batch;
static __thread struct fw_ctx *to_end;

/* ---- The volume behind the SCSI emulation ------------------------------------ */

static void vio_done(struct hbk_vol_io *io, int result)
{
	struct waiter *w = io->priv;
	w->result = result;
	sem_post(&w->done);
}

/* This thread runs a synchronous command, counted as not running for its
 * whole length (see execute). */
static __thread bool in_sync_cmd;

/* This thread stops (or resumes) running while it waits on a volume: with
 * work queued, another thread may take the CPU meanwhile. */
static void blocked(struct hbk_dev *dev, bool waiting)
{
	if (in_sync_cmd)
		return;
	pthread_mutex_lock(&dev->lock);
	if (!waiting) {
		dev->running++;
	} else if (--dev->running < dev->ncpu && dev->run_head && dev->idle_threads > dev->waking) {
		dev->waking++;
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
	hbk_disk_plug_flush();   /* waited for below: it must not stay plugged */

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

/* ---- Asynchronous READ and WRITE ----------------------------------------------------- */

static void cmd_reply(struct fw_ctx *c);

/* The last reference to an asynchronous command is gone: its volume I/O
 * ended and nobody is inside submit or cancel with it any more.  No lock
 * held. */
static void aio_finish(struct fw_ctx *c)
{
	pthread_mutex_lock(&c->lock);
	c->vio = NULL;
	pthread_mutex_unlock(&c->lock);
	hbk_scsi_aio_end(&c->aio, c->avio_result);   /* -> aio_done */
}

/* Drops one reference; the last one ends the command.  Not under c->lock
 * or dev->lock (fw_terminate, which holds them, drops its own itself and
 * hands a last one to a firmware thread). */
static void aio_put(struct fw_ctx *c)
{
	/* Acq_rel: the release publishes what this party wrote (avio_result),
	 * the acquire of the last one sees what every other party wrote. */
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		aio_finish(c);
}

static void avio_done(struct hbk_vol_io *io, int result)
{
	struct fw_ctx *c = io->priv;
	c->avio_result = result;
	aio_put(c);
}

/* The emulation checked a READ or WRITE: submit its volume I/O.  Two
 * references, the I/O's and this call's, so an I/O done inside submit
 * (memory volumes) ends the command only after c->lock is released. */
static void be_submit(void *ctx, struct hbk_scsi_aio *aio)
{
	struct fw_vd *vd = ctx;
	struct fw_ctx *c = aio->priv;
	c->avio = (struct hbk_vol_io){
		.op = aio->io.write ? HBK_VOL_WRITE : HBK_VOL_READ, .fua = aio->io.fua,
		.lba = aio->io.lba, .nblocks = aio->io.nblocks, .buf = aio->io.buf,
		.done = avio_done, .priv = c,
	};
	/* Relaxed: c->lock below publishes it to fw_terminate, and the volume's
	 * own handoff publishes it to the thread that completes the I/O. */
	atomic_store_explicit(&c->refs, 2u, memory_order_relaxed);
	pthread_mutex_lock(&c->lock);
	if (atomic_load(&c->aborted)) {  /* task management came first: never submitted */
		pthread_mutex_unlock(&c->lock);
		c->avio_result = -ECANCELED;
		/* Relaxed: nothing was submitted, so no other party holds one. */
		atomic_store_explicit(&c->refs, 0u, memory_order_relaxed);
		hbk_scsi_aio_end(aio, -ECANCELED);
		return;
	}
	c->vol = vd->vol;
	c->vio = &c->avio;
	vd->vol->ops->submit(vd->vol, &c->avio);
	pthread_mutex_unlock(&c->lock);
	aio_put(c);
}

/* The emulation answered an asynchronous command (c->out). */
static void aio_done(struct hbk_scsi_aio *aio)
{
	cmd_reply(aio->priv);
}

void fw_terminate(struct fw_ctx *c)
{
	bool last = false;
	pthread_mutex_lock(&c->lock);
	atomic_store(&c->aborted, true);
	if (c->vio && c->vol->ops->cancel) {
		if (c->vio != &c->avio) {
			/* Synchronous: its done only wakes the waiting thread. */
			c->vol->ops->cancel(c->vol, c->vio);
		} else {
			/* Asynchronous: hold a reference across cancel, whose done
			 * may run inline; none to take once the last is gone (the
			 * end is running and clears vio under c->lock next).
			 * Relaxed increment: taking a reference publishes nothing;
			 * the drop below is acq_rel, as in aio_put. */
			unsigned r = atomic_load_explicit(&c->refs, memory_order_relaxed);
			while (r && !atomic_compare_exchange_weak_explicit(&c->refs, &r, r + 1,
									   memory_order_relaxed,
									   memory_order_relaxed))
				;
			if (r) {
				c->vol->ops->cancel(c->vol, c->vio);
				/* Acq_rel: as in aio_put. */
				last = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1;
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (last) {
		/* dev->lock is held: ended by fw_end_cancelled. */
		c->next = c->dev->ended;
		c->dev->ended = c;
		pthread_cond_signal(&c->dev->work_cond);
	}
}

void fw_end_cancelled(struct hbk_dev *dev)
{
	while (dev->ended) {
		struct fw_ctx *c = dev->ended;
		dev->ended = c->next;
		pthread_mutex_unlock(&dev->lock);
		aio_finish(c);
		pthread_mutex_lock(&dev->lock);
	}
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
			/* Always: without a controller cache the members may
			 * still cache writes once the host sets WCE, and then
			 * SYNCHRONIZE CACHE must reach them. */
			.flush = be_flush,
			.unmap = v->flags & HBK_VOL_THIN ? be_unmap : NULL,
			.lba_status = v->ops->lba_status ? be_lba_status : NULL,
			.submit = be_submit,
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
	return f->function == HBK_DEV_FN_SCSI_IO &&
	       (f->cdb_len == 6 || f->cdb_len == 10 || f->cdb_len == 12 || f->cdb_len == 16) &&
	       f->dir <= HBK_DIR_READ && f->data_len <= dev->max_xfer &&
	       (!f->data_len || (f->data_addr && f->data_addr % HBK_DEV_DMA_ALIGN == 0));
}

/* Ends the contexts this thread replied for in its batch, and the
 * asynchronous commands cancelled by a task management frame that one of
 * them let in.  dev->lock held, released and taken again inside
 * dev_ctx_end for those; returns the threads to wake (dev_ctx_end). */
static unsigned end_replied(struct hbk_dev *dev)
{
	unsigned wake = 0;
	while (to_end) {
		struct fw_ctx *c = to_end;
		to_end = c->next;
		wake += dev_ctx_end(dev, c, c->end_terminated);
	}
	return wake;
}

/* Posts the reply of I/O context c (TERMINATED instead when task
 * management ended it) and frees the context: at once, or, on a firmware
 * thread in a batch, with its next take of the device lock (one lock for
 * both; the reply is out, so a task management waiting for c still sees
 * it first). */
static void ctx_reply(struct fw_ctx *c, struct hbk_dev_reply *rep)
{
	struct hbk_dev *dev = c->dev;
	if (atomic_load(&c->aborted))
		*rep = (struct hbk_dev_reply){ .tag = c->f.tag, .function = c->f.function,
					       .status = HBK_DEV_ST_TERMINATED };
	dev_post_reply(dev, c->f.reply_queue < dev->nqueues ? c->f.reply_queue : 0, rep);
	if (in_batch) {
		c->end_terminated = rep->status == HBK_DEV_ST_TERMINATED;
		c->next = to_end;
		to_end = c;
		return;
	}
	pthread_mutex_lock(&dev->lock);
	unsigned wake = dev_ctx_end(dev, c, rep->status == HBK_DEV_ST_TERMINATED);
	pthread_mutex_unlock(&dev->lock);
	dev_wake(dev, wake);
}

/* Replies with c's SCSI outcome, c->out. */
static void cmd_reply(struct fw_ctx *c)
{
	const struct hbk_scsi_reply *out = &c->out;
	struct hbk_dev_reply rep = { .tag = c->f.tag, .function = c->f.function,
				     .scsi_status = out->status };
	rep.residual = c->f.data_len - (uint32_t)HBK_MIN(out->bytes, (uint64_t)c->f.data_len);
	rep.sense_len = (uint8_t)HBK_MIN(out->sense_len, HBK_DEV_SENSE_MAX);
	memcpy(rep.sense, out->sense, rep.sense_len);
	ctx_reply(c, &rep);
}

/* Runs I/O context c: its reply is posted before this returns, or, for an
 * asynchronous command, when its volume I/O ends. */
static void execute(struct hbk_dev *dev, struct fw_ctx *c)
{
	const struct hbk_dev_frame *f = &c->f;
	struct hbk_dev_reply rep = { .tag = f->tag, .function = f->function };
	if (atomic_load(&c->aborted)) {
		rep.status = HBK_DEV_ST_TERMINATED;  /* ended before it started */
		ctx_reply(c, &rep);
		return;
	}
	if (!frame_valid(dev, f)) {
		rep.status = HBK_DEV_ST_INVALID_FRAME;
		ctx_reply(c, &rep);
		return;
	}
	if (f->target >= dev->nvds) {
		rep.status = HBK_DEV_ST_NO_TARGET;
		ctx_reply(c, &rep);
		return;
	}
	struct hbk_scsi_req req = {
		.initiator = f->initiator, .lun = hbk_scsi_lun_decode(f->lun), .cdb = f->cdb, .cdb_len = f->cdb_len,
		.buf = f->data_len ? (void *)(uintptr_t)f->data_addr : NULL,  /* DMA: zero copy */
		.buf_len = f->data_len, .dir = (enum hbk_dir)f->dir,
	};
	struct hbk_scsi_target *t = &dev->vds[f->target].target;
	c->aio = (struct hbk_scsi_aio){ .out = &c->out, .done = aio_done, .priv = c };
	if (hbk_scsi_exec_async(t, &req, &c->aio) == 0)
		return;   /* c may be free already: its reply was posted */
	/* Synchronous: this thread may wait, so what it plugged goes now, and
	 * the contexts it replied for are freed first. */
	hbk_disk_plug_flush();
	if (to_end) {
		pthread_mutex_lock(&dev->lock);
		unsigned wake = end_replied(dev);
		pthread_mutex_unlock(&dev->lock);
		dev_wake(dev, wake);
	}
	/* Counted as not running while it lasts: besides volume I/O, a
	 * synchronous command may wait on the LUN (COMPARE AND WRITE for the
	 * writes in flight, a write for the lock a COMPARE AND WRITE holds),
	 * and the frames queued meanwhile, for any LUN, need threads. */
	blocked(dev, true);
	in_sync_cmd = true;
	cur_ctx = c;
	hbk_scsi_exec(t, &req, &c->out);
	cur_ctx = NULL;
	in_sync_cmd = false;
	blocked(dev, false);
	cmd_reply(c);
}

/* The next queued I/O context, now executing, or NULL.  dev->lock held. */
static struct fw_ctx *take(struct hbk_dev *dev)
{
	struct fw_ctx *c = dev->run_head;
	if (!c)
		return NULL;
	dev->run_head = c->next;
	if (!dev->run_head)
		dev->run_tail = NULL;
	c->state = CTX_EXEC;
	return c;
}

void *fw_thread(void *arg)
{
	hbk_thread_name("hbk-firmware");
	struct hbk_dev *dev = arg;
	struct waiter w;
	sem_init(&w.done, 0, 0);
	cur_waiter = &w;
	cur_dev = dev;
	pthread_mutex_lock(&dev->lock);
	for (;;) {
		while (!dev->run_head && !dev->ended && !dev->stop) {
			dev->idle_threads++;
			pthread_cond_wait(&dev->work_cond, &dev->lock);
			dev->idle_threads--;
			if (dev->waking)  /* this may be a spurious wake: fetch only estimates */
				dev->waking--;
		}
		if (dev->ended) {   /* an asynchronous command task management ended */
			fw_end_cancelled(dev);
			continue;
		}
		struct fw_ctx *c = take(dev);
		if (!c)
			break;
		dev->running++;
		pthread_mutex_unlock(&dev->lock);

		/* The frames queued behind this one, in a row: their volume I/O
		 * reaches each disk in one submission when the plug ends. */
		struct hbk_disk_plug plug;
		hbk_disk_plug(&plug);
		in_batch = true;
		for (unsigned n = 1; c; n++) {
			execute(dev, c);
			c = NULL;
			if (n < HBK_DEV_FW_BATCH) {
				pthread_mutex_lock(&dev->lock);
				unsigned wake = end_replied(dev);
				c = take(dev);
				pthread_mutex_unlock(&dev->lock);
				dev_wake(dev, wake);
			}
		}
		in_batch = false;
		hbk_disk_unplug(&plug);

		pthread_mutex_lock(&dev->lock);
		unsigned wake = end_replied(dev);
		dev->running--;
		if (wake) {
			pthread_mutex_unlock(&dev->lock);
			dev_wake(dev, wake);
			pthread_mutex_lock(&dev->lock);
		}
	}
	pthread_mutex_unlock(&dev->lock);
	sem_destroy(&w.done);
	return NULL;
}
