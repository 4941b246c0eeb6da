/* SPDX-License-Identifier: MIT */
/*
 * The block API on top of the SAM layer: reads and writes by LBA become
 * READ/WRITE(10/16) commands split at the LUN's max transfer, flush becomes
 * SYNCHRONIZE CACHE(16), unmap becomes UNMAP with its parameter list.  One
 * hbk_blk_io completes once, after its last part, with the first failure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "host/host_priv.h"
#include "host/sam_cdb.h"

#define UNMAP_PARAM_ONE (8 + 16)   /* an UNMAP parameter list of one descriptor */

int hbk_blk_errno(const struct hbk_scsi_result *r)
{
	if (hbk_scsi_ok(r))
		return 0;
	if (r->service != HBK_SR_TASK_COMPLETE)
		return r->status == HBK_DS_TASK_TIMEOUT ? -ETIMEDOUT : -ENODEV;
	if (r->status == HBK_STATUS_BUSY || r->status == HBK_STATUS_TASK_SET_FULL)
		return -EBUSY;
	if (r->status == HBK_STATUS_RESERVATION_CONFLICT)
		return -EBADE;
	if (r->status != HBK_STATUS_CHECK_CONDITION)
		return -EIO;
	/* Deferred sense is an earlier command's error: this one was not
	 * processed, whatever the key says, and may be sent again. */
	if (r->flags & HBK_SCSI_RESULT_DEFERRED)
		return -EAGAIN;
	switch (r->sense_key) {
	case HBK_SK_RECOVERED_ERROR:
		/* The command completed, after some recovery (SPC-5 4.4.2);
		 * a transfer cut short still fails in parts_end. */
		return 0;
	case HBK_SK_ILLEGAL_REQUEST:
		return r->asc == (HBK_ASC_LBA_OUT_OF_RANGE >> 8) ? -ENOSPC : -EINVAL;
	case HBK_SK_DATA_PROTECT:
		/* 27h is write protection, but for 27h/07h: a thin LUN out of space. */
		return r->asc == (HBK_ASC_WRITE_PROTECTED >> 8) &&
		       r->ascq != (HBK_ASC_SPACE_ALLOC_FAILED & 0xff) ? -EROFS : -ENOSPC;
	case HBK_SK_NOT_READY:
	case HBK_SK_UNIT_ATTENTION:
	case HBK_SK_ABORTED_COMMAND:
		return -EAGAIN;
	case HBK_SK_MISCOMPARE:
		return -EILSEQ;
	default:
		return -EIO;
	}
}

/*
 * Retires count parts of io that ended with cmd's result; the last retirement
 * completes io.  Parts end on the event thread, and on another thread when the
 * host fails everything at once, so the first failure is claimed with a CAS
 * (only its owner writes io->result) and the count drops atomically; the
 * final acq_rel decrement orders every part's writes before done runs.
 */
static void parts_end(struct hbk_blk_io *io, const struct hbk_scsi_cmd *cmd, uint32_t count)
{
	int err = hbk_blk_errno(&cmd->result), none = 0;
	/* A READ or WRITE that moved less than asked did not do its job, GOOD
	 * or not: the rest of the buffer holds nothing the LUN sent. */
	if (!err && cmd->dir != HBK_DIR_NONE && cmd->result.bytes < cmd->len &&
	    (io->op == HBK_BLK_READ || io->op == HBK_BLK_WRITE))
		err = -EIO;
	if (err && __atomic_compare_exchange_n(&io->error, &none, err, false,
					       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		io->result = cmd->result;
	if (__atomic_sub_fetch(&io->parts_left, count, __ATOMIC_ACQ_REL))
		return;
	if (io->op == HBK_BLK_UNMAP)
		free(io->parts[0].buf);
	if (io->parts != &io->one)
		free(io->parts);
	io->done(io);
}

/* A unit attention reports an event (a reset, a capacity change) and is
 * cleared by being reported: the command itself was not executed, so it is
 * sent again, a few times per I/O at most. */
#define BLK_UA_RETRIES 4u

static void part_done(struct hbk_scsi_cmd *cmd)
{
	struct hbk_blk_io *io = cmd->priv;
	const struct hbk_scsi_result *r = &cmd->result;
	if (r->service == HBK_SR_TASK_COMPLETE && r->status == HBK_STATUS_CHECK_CONDITION &&
	    r->sense_key == HBK_SK_UNIT_ATTENTION &&
	    __atomic_fetch_add(&io->ua_retries, 1, __ATOMIC_RELAXED) < BLK_UA_RETRIES &&
	    !hbk_sam_submit(io->lun->ctl, cmd))
		return;
	parts_end(io, cmd, 1);
}

static void cmd_init(struct hbk_scsi_cmd *cmd, struct hbk_blk_io *io)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->lun = io->lun;
	cmd->done = part_done;
	cmd->priv = io;
}

int hbk_blk_submit(struct hbk_blk_io *io)
{
	/* Fields that never change after registration; capacity and presence
	 * are read from their atomics. */
	const struct hbk_lun_info *li = &io->lun->info;
	struct hbk_ctl *c = io->lun->ctl;
	io->error = 0;
	io->ua_retries = 0;
	memset(&io->result, 0, sizeof(io->result));
	if (!io->done)
		return -EINVAL;
	if (atomic_load(&io->lun->gone))
		return -ENODEV;
	uint64_t nblocks = atomic_load_explicit(&io->lun->nblocks, memory_order_relaxed);
	if (io->op == HBK_BLK_READ || io->op == HBK_BLK_WRITE || io->op == HBK_BLK_UNMAP) {
		if (!io->nblocks || io->lba >= nblocks || io->nblocks > nblocks - io->lba)
			return -EINVAL;
	}
	switch (io->op) {
	case HBK_BLK_READ:
	case HBK_BLK_WRITE: {
		uint32_t per = li->max_xfer_bytes / li->block_size;
		uint32_t nparts = (uint32_t)(((uint64_t)io->nblocks + per - 1) / per);
		io->parts = nparts == 1 ? &io->one : calloc(nparts, sizeof(*io->parts));
		if (!io->parts)
			return -ENOMEM;
		io->parts_left = nparts;
		bool write = io->op == HBK_BLK_WRITE;
		for (uint32_t i = 0; i < nparts; i++) {
			struct hbk_scsi_cmd *cmd = &io->parts[i];
			uint32_t n = HBK_MIN(per, io->nblocks - i * per);
			cmd_init(cmd, io);
			int len = hbk_sam_cdb_rw(cmd->cdb, write, io->lba + (uint64_t)i * per, n, io->fua);
			cmd->cdb_len = (uint8_t)len;
			cmd->dir = write ? HBK_DIR_WRITE : HBK_DIR_READ;
			cmd->buf = (uint8_t *)io->buf + (uint64_t)i * per * li->block_size;
			cmd->len = (uint64_t)n * li->block_size;
		}
		break;
	}
	case HBK_BLK_FLUSH:
		io->parts = &io->one;
		io->parts_left = 1;
		cmd_init(&io->one, io);
		io->one.cdb_len = (uint8_t)hbk_sam_cdb_sync_cache16(io->one.cdb, 0, 0);
		break;
	case HBK_BLK_UNMAP: {
		if (!li->thin)
			return -EOPNOTSUPP;
		/* MAXIMUM UNMAP LBA COUNT limits one command's total: one UNMAP
		 * (of one descriptor) per that many blocks. */
		uint32_t per = li->max_unmap_blocks ? li->max_unmap_blocks : io->nblocks;
		uint32_t nparts = (uint32_t)(((uint64_t)io->nblocks + per - 1) / per);
		io->parts = nparts == 1 ? &io->one : calloc(nparts, sizeof(*io->parts));
		uint8_t *param = malloc((size_t)nparts * UNMAP_PARAM_ONE);
		if (!io->parts || !param) {
			if (io->parts != &io->one)
				free(io->parts);
			free(param);
			return -ENOMEM;
		}
		io->parts_left = nparts;
		for (uint32_t i = 0; i < nparts; i++) {
			struct hbk_scsi_cmd *cmd = &io->parts[i];
			uint64_t lba = io->lba + (uint64_t)i * per;
			uint32_t nb = HBK_MIN(per, io->nblocks - i * per);
			uint8_t *p = param + (size_t)i * UNMAP_PARAM_ONE;
			int plen = hbk_sam_unmap_param(p, UNMAP_PARAM_ONE, &lba, &nb, 1);
			cmd_init(cmd, io);
			cmd->cdb_len = (uint8_t)hbk_sam_cdb_unmap(cmd->cdb, (uint16_t)plen);
			cmd->dir = HBK_DIR_WRITE;
			cmd->buf = p;      /* parts[0]'s is the whole block, freed at the end */
			cmd->len = (uint64_t)plen;
		}
		break;
	}
	default:
		return -EINVAL;
	}
	/* Submit every part; a part refused at submission counts as failed. */
	uint32_t n = io->parts_left;
	struct hbk_scsi_cmd *parts = io->parts;
	for (uint32_t i = 0; i < n; i++) {
		int err = hbk_sam_submit(c, &parts[i]);
		if (err) {
			if (!i) {   /* nothing went out: report it synchronously */
				if (io->op == HBK_BLK_UNMAP)
					free(parts[0].buf);
				if (parts != &io->one)
					free(parts);
				return err;
			}
			/* Parts before i are out: the rest end here, as not delivered. */
			parts[i].result.service = HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE;
			parts[i].result.status = HBK_DS_DEVICE_NOT_PRESENT;
			parts_end(io, &parts[i], n - i);
			break;
		}
	}
	return 0;
}

static void blk_exec_done(struct hbk_blk_io *io)
{
	hbk_latch_open(io->priv, 0);
}

int hbk_blk_exec(struct hbk_blk_io *io)
{
	struct hbk_latch done = HBK_LATCH_INIT;
	void (*user_done)(struct hbk_blk_io *) = io->done;
	void *user_priv = io->priv;
	io->done = blk_exec_done;
	io->priv = &done;
	int err = hbk_blk_submit(io);
	if (!err) {
		hbk_latch_wait(&done);
		err = io->error;
	}
	io->done = user_done;
	io->priv = user_priv;
	return err;
}
