/* SPDX-License-Identifier: MIT */
/*
 * Block commands of the emulation (SBC-4): READ/WRITE 6/10/12/16, VERIFY and
 * WRITE AND VERIFY 10/12/16, WRITE SAME 10/16, COMPARE AND WRITE,
 * SYNCHRONIZE CACHE, UNMAP, READ CAPACITY 10/16, GET LBA STATUS and START
 * STOP UNIT.  Data moves straight between the initiator's buffer and the
 * backend; VERIFY and WRITE SAME go through a bounded scratch buffer.  Every
 * write holds the LUN's write lock shared, COMPARE AND WRITE holds it alone
 * (and waits for the asynchronous writes in flight).  Under
 * hbk_scsi_exec_async, READ and WRITE stop after their checks and describe
 * the transfer for the backend's submit instead of calling read or write.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi_priv.h"

#define HBK_LBA_STATUS_DESC_MAX 64   /* descriptors per GET LBA STATUS reply */

/*
 * The block range of the READ/WRITE/VERIFY families, WRITE SAME and
 * SYNCHRONIZE CACHE: the 10-, 12- and 16-byte CDBs all carry the LBA from
 * byte 2 and the length right after it, FUA and RD/WR/VRPROTECT in byte 1.
 */
struct block_range {
	uint64_t lba;
	uint32_t nblocks;
	bool     fua;
	uint8_t  protect;
	uint8_t  len_at;        /* the CDB byte the length starts at */
};

static struct block_range decode_range(const uint8_t *cdb)
{
	struct block_range r = { 0 };

	switch (cdb[0] >> 5) { /* the group code fixes the CDB layout */
	case 0: /* 6-byte: 21-bit LBA, and length 0 means 256 blocks */
		r.lba = get_be24(cdb + 1) & 0x1fffff;
		r.nblocks = cdb[4] ? cdb[4] : 256;
		r.len_at = 4;
		return r;
	case 1: /* 10-byte (groups 1 and 2) */
	case 2:
		r.lba = get_be32(cdb + 2);
		r.nblocks = get_be16(cdb + 7);
		r.len_at = 7;
		break;
	case 5: /* 12-byte */
		r.lba = get_be32(cdb + 2);
		r.nblocks = get_be32(cdb + 6);
		r.len_at = 6;
		break;
	default: /* 16-byte */
		r.lba = get_be64(cdb + 2);
		r.nblocks = get_be32(cdb + 10);
		r.len_at = 10;
		break;
	}
	r.fua = cdb[1] & 0x08;
	r.protect = cdb[1] >> 5;
	return r;
}

/* A transfer: no protection information, on the medium, within the
 * maximum transfer length. */
static uint32_t check_transfer(struct cmd_ctx *c, const struct block_range *r)
{
	uint32_t max = c->lun->cfg.max_xfer_blocks;
	uint32_t cc;

	if (r->protect)
		return invalid_field(c, 1, 7);          /* RDPROTECT, WRPROTECT, VRPROTECT */
	cc = check_range(c->lun, r->lba, r->nblocks);
	if (cc)
		return cc;
	return max && r->nblocks > max ? invalid_field(c, r->len_at, 7) : 0;
}

/* The initiator's buffer must hold len bytes in the command's direction. */
static uint32_t need_data(const struct cmd_ctx *c, uint64_t len, bool out)
{
	return len > (out ? c->out_len : c->in_len) ? HBK_CC_INVALID_FIELD : 0;
}

/* For commands whose data-out the CDB defines exactly (WRITE SAME: one
 * block; COMPARE AND WRITE: twice the blocks), any other length is a
 * malformed command rather than a residual: nothing is executed. */
static uint32_t exact_data_out(const struct cmd_ctx *c, uint64_t len)
{
	return c->out_len != len ? HBK_CC_INVALID_FIELD : 0;
}

/* With WCE 0 the cache is write-through: every write is FUA. */
static bool write_fua(const struct cmd_ctx *c, bool fua)
{
	return fua || !(lun_state(c->lun) & HBK_LUN_WCE);
}

/* One backend write. */
static uint32_t write_at(struct cmd_ctx *c, uint64_t lba, uint32_t n, const void *buf, bool fua)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	int err;

	err = cfg->ops->write(cfg->ctx, lba, n, buf, write_fua(c, fua));
	return err ? backend_error(err, true) : 0;
}

/* Scratch for n blocks taken *chunk blocks at a time (at least one). */
static uint8_t *scratch(const struct hbk_scsi_lun *lun, uint32_t n, uint32_t *chunk)
{
	uint32_t per = HBK_SCSI_CHUNK_BYTES / lun->cfg.block_size;

	if (per == 0)
		per = 1;
	*chunk = n < per ? n : per;
	return malloc((size_t)*chunk * lun->cfg.block_size);
}

static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
	size_t i = 0;

	if (memcmp(a, b, len) == 0)
		return len;
	while (a[i] == b[i])
		i++;
	return i;
}

/*
 * Reads n blocks from lba and, unless want is NULL, compares them with want
 * (want_same: every block with the one block at want).  A mismatch answers
 * MISCOMPARE with the offset of its first byte in the INFORMATION field.
 */
static uint32_t verify_blocks(struct cmd_ctx *c, uint64_t lba, uint32_t n,
			      const uint8_t *want, bool want_same)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	size_t bs = cfg->block_size;
	uint32_t chunk, k, cc = 0;
	uint8_t *tmp = scratch(c->lun, n, &chunk);

	if (!tmp)
		return backend_error(-ENOMEM, false);
	for (uint32_t done = 0; done < n && !cc; done += k) {
		int err;

		k = n - done < chunk ? n - done : chunk;
		err = cfg->ops->read(cfg->ctx, lba + done, k, tmp);
		if (err) {
			cc = backend_error(err, false);
			break;
		}
		for (uint32_t j = 0; want && j < k; j++) {
			uint64_t blk = (uint64_t)done + j;
			size_t d = first_diff(tmp + j * bs, want_same ? want : want + blk * bs, bs);

			if (d < bs) {
				c->info = blk * bs + d;
				c->info_valid = true;
				cc = HBK_CC_MISCOMPARE;
				break;
			}
		}
	}
	free(tmp);
	return cc;
}

static uint32_t read_write(struct cmd_ctx *c, bool write)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	struct block_range r = decode_range(c->cdb);
	uint64_t len = (uint64_t)r.nblocks * cfg->block_size;
	uint32_t cc = check_transfer(c, &r);
	int err;

	if (cc || r.nblocks == 0)
		return cc;
	cc = need_data(c, len, write);
	if (cc)
		return cc;
	if (c->aio) {
		/* Checked: the asynchronous entry hands the transfer over. */
		struct hbk_scsi_aio *a = c->aio;

		a->io.write = write;
		a->io.fua = write && write_fua(c, r.fua);
		a->io.lba = r.lba;
		a->io.nblocks = r.nblocks;
		a->io.buf = c->buf;
		a->lun_ = c->lun;
		a->initiator_ = c->initiator;
		a->bytes_ = len;
		c->async = true;
		return 0;
	}
	if (write) {
		cc = hbk_write_lock(c, false);
		if (cc)
			return cc;
		cc = write_at(c, r.lba, r.nblocks, c->buf, r.fua);
		hbk_write_unlock(c, false);
	} else {
		err = cfg->ops->read(cfg->ctx, r.lba, r.nblocks, c->buf);
		cc = err ? backend_error(err, false) : 0;
	}
	if (!cc)
		c->bytes = len;
	return cc;
}

uint32_t hbk_sbc_read(struct cmd_ctx *c)
{
	return read_write(c, false);
}

uint32_t hbk_sbc_write(struct cmd_ctx *c)
{
	return read_write(c, true);
}

/*
 * VERIFY: BYTCHK 00b reads the blocks back (a medium check), 01b compares
 * them with as many blocks of data-out, 11b each of them with one block.
 */
uint32_t hbk_sbc_verify(struct cmd_ctx *c)
{
	struct block_range r = decode_range(c->cdb);
	unsigned bytchk = (c->cdb[1] >> 1) & 0x03;
	uint64_t len = bytchk == 1 ? (uint64_t)r.nblocks * c->lun->cfg.block_size :
		       bytchk == 3 ? c->lun->cfg.block_size : 0;
	uint32_t cc;

	if (bytchk == 2)
		return invalid_field(c, 1, 2);          /* BYTCHK */
	cc = check_transfer(c, &r);
	if (cc || r.nblocks == 0)
		return cc;
	cc = need_data(c, len, true);
	if (!cc)
		cc = verify_blocks(c, r.lba, r.nblocks, bytchk ? c->buf : NULL, bytchk == 3);
	if (!cc)
		c->bytes = len;
	return cc;
}

/* WRITE AND VERIFY: writes through to the medium, then reads back (BYTCHK
 * 00b) or compares what it reads with the data written (01b). */
uint32_t hbk_sbc_write_verify(struct cmd_ctx *c)
{
	struct block_range r = decode_range(c->cdb);
	uint64_t len = (uint64_t)r.nblocks * c->lun->cfg.block_size;
	bool bytchk = c->cdb[1] & 0x02;
	uint32_t cc;

	if (c->cdb[1] & 0x04)           /* BYTCHK 1xb is reserved */
		return invalid_field(c, 1, 2);
	cc = check_transfer(c, &r);
	if (cc || r.nblocks == 0)
		return cc;
	cc = need_data(c, len, true);
	if (cc)
		return cc;
	cc = hbk_write_lock(c, false);
	if (cc)
		return cc;
	cc = write_at(c, r.lba, r.nblocks, c->buf, true);
	if (!cc)
		cc = verify_blocks(c, r.lba, r.nblocks, bytchk ? c->buf : NULL, false);
	hbk_write_unlock(c, false);
	if (!cc)
		c->bytes = len;
	return cc;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

/* Writes n blocks from lba, each a copy of `block` (NULL: zeros). */
static uint32_t write_repeated(struct cmd_ctx *c, uint64_t lba, uint32_t n, const uint8_t *block)
{
	size_t bs = c->lun->cfg.block_size;
	uint32_t chunk, k, cc = 0;
	uint8_t *tmp = scratch(c->lun, n, &chunk);

	if (!tmp)
		return backend_error(-ENOMEM, true);
	for (uint32_t j = 0; j < chunk; j++) {
		if (block)
			memcpy(tmp + j * bs, block, bs);
		else
			memset(tmp + j * bs, 0, bs);
	}
	for (uint32_t done = 0; done < n && !cc; done += k) {
		k = n - done < chunk ? n - done : chunk;
		cc = write_at(c, lba + done, k, tmp, false);
	}
	free(tmp);
	return cc;
}

/*
 * WRITE SAME 10/16.  WSNZ is 0: a NUMBER OF LOGICAL BLOCKS of 0 means every
 * block from the LBA to the end of the medium.  More blocks than MAXIMUM
 * WRITE SAME LENGTH are refused.  ANCHOR is refused (ANC_SUP 0).  With
 * UNMAP, a block of zeros (or NDOB) is unmapped when unmapped blocks read
 * back as zeros; otherwise the blocks are written.
 */
uint32_t hbk_sbc_write_same(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	struct block_range r = decode_range(c->cdb);
	uint8_t flags = c->cdb[1];
	bool ndob = c->cdb[0] == HBK_SCSI_OP_WRITE_SAME16 && (flags & 0x01);
	uint32_t bs = lun->cfg.block_size, cc;
	const uint8_t *block = ndob ? NULL : c->buf;
	uint64_t n = r.nblocks;
	int err;

	if (r.protect)
		return invalid_field(c, 1, 7);          /* WRPROTECT */
	if (flags & 0x10)
		return invalid_field(c, 1, 4);          /* ANCHOR */
	if (n == 0) {
		if (r.lba >= lun->cfg.nblocks)
			return HBK_CC_LBA_OUT_OF_RANGE;
		n = lun->cfg.nblocks - r.lba;
	}
	if (n > lun_ws_limit(lun))
		return invalid_field(c, r.len_at, 7);   /* NUMBER OF LOGICAL BLOCKS */
	r.nblocks = (uint32_t)n;
	cc = check_range(lun, r.lba, r.nblocks);
	if (!cc && !ndob)
		cc = exact_data_out(c, bs);
	if (cc)
		return cc;
	if (block && all_zero(block, bs))
		block = NULL;
	cc = hbk_write_lock(c, false);
	if (cc)
		return cc;
	if ((flags & 0x08) && !block && lun_ws_unmaps(lun)) {
		err = lun->cfg.ops->unmap(lun->cfg.ctx, r.lba, r.nblocks);
		cc = err ? backend_error(err, true) : 0;
	} else {
		cc = write_repeated(c, r.lba, r.nblocks, block);
	}
	hbk_write_unlock(c, false);
	if (!cc)
		c->bytes = ndob ? 0 : bs;
	return cc;
}

/*
 * COMPARE AND WRITE: data-out holds n blocks to compare, then n to write.
 * The LUN's write lock, held alone, keeps every other write out between
 * the compare and the write.
 */
uint32_t hbk_sbc_compare_write(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	uint64_t lba = get_be64(c->cdb + 2);
	uint32_t n = c->cdb[13], cc;
	size_t half = (size_t)n * lun->cfg.block_size;

	if (c->cdb[1] >> 5)             /* WRPROTECT: no protection information */
		return invalid_field(c, 1, 7);
	cc = check_range(lun, lba, n);
	if (cc)
		return cc;
	if (n > lun_caw_limit(lun))
		return invalid_field(c, 13, 7);         /* NUMBER OF LOGICAL BLOCKS */
	cc = exact_data_out(c, 2 * (uint64_t)half);
	if (cc || n == 0)
		return cc;
	cc = hbk_write_lock(c, true);
	if (cc)
		return cc;
	cc = verify_blocks(c, lba, n, c->buf, false);
	if (!cc)
		cc = write_at(c, lba, n, c->buf + half, c->cdb[1] & 0x08);
	hbk_write_unlock(c, true);
	if (!cc)
		c->bytes = 2 * (uint64_t)half;
	return cc;
}

uint32_t hbk_sbc_sync_cache(struct cmd_ctx *c)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	struct block_range r = decode_range(c->cdb);
	uint32_t cc = check_range(c->lun, r.lba, r.nblocks); /* 0 blocks: to the end */
	int err;

	if (cc)
		return cc;
	if (!cfg->ops->flush)           /* nothing is ever cached */
		return 0;
	err = cfg->ops->flush(cfg->ctx);
	return err ? backend_error(err, true) : 0;
}

/* UNMAP (served on thin LUNs only, see the command table). */
uint32_t hbk_sbc_unmap(struct cmd_ctx *c)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	uint16_t param_len = get_be16(c->cdb + 7);
	uint32_t max_desc = cfg->max_unmap_descs ? cfg->max_unmap_descs : HBK_SCSI_MAX_UNMAP_DESC;
	uint64_t total = 0;
	const uint8_t *desc;
	size_t count;
	uint32_t cc = 0;
	int err;

	if (c->cdb[1] & 0x01)           /* ANCHOR: ANC_SUP is 0 */
		return invalid_field(c, 1, 0);
	if (param_len == 0)
		return 0;
	if (param_len < 8)
		return HBK_CC_PARAM_LENGTH;
	if (param_len > c->out_len)
		return HBK_CC_INVALID_FIELD;
	/* A descriptor cut short by either length is ignored, as SBC-4 asks. */
	count = get_be16(c->buf + 2);
	if (count > param_len - 8u)
		count = param_len - 8u;
	count /= 16;
	if (count > max_desc)
		return invalid_param(c, 2, 7);          /* UNMAP BLOCK DESCRIPTOR DATA LENGTH */
	desc = c->buf + 8;
	/* Check every descriptor before unmapping any. */
	for (size_t i = 0; i < count; i++) {
		uint32_t nblocks = get_be32(desc + 16 * i + 8);

		cc = check_range(c->lun, get_be64(desc + 16 * i), nblocks);
		if (cc)
			return cc;
		total += nblocks;
	}
	if (cfg->max_unmap_blocks && total > cfg->max_unmap_blocks)
		return HBK_CC_INVALID_PARAM;
	cc = hbk_write_lock(c, false);
	if (cc)
		return cc;
	for (size_t i = 0; i < count && !cc; i++) {
		uint32_t nblocks = get_be32(desc + 16 * i + 8);

		if (nblocks == 0)
			continue;
		err = cfg->ops->unmap(cfg->ctx, get_be64(desc + 16 * i), nblocks);
		cc = err ? backend_error(err, true) : 0;
	}
	hbk_write_unlock(c, false);
	if (!cc)
		c->bytes = param_len;
	return cc;
}

uint32_t hbk_sbc_read_capacity10(struct cmd_ctx *c)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	uint64_t last = cfg->nblocks - 1;
	uint8_t d[8];

	/* FFFFFFFFh tells the initiator to ask READ CAPACITY(16). */
	put_be32(d, last >= UINT32_MAX ? UINT32_MAX : (uint32_t)last);
	put_be32(d + 4, cfg->block_size);
	data_in_begin(c, sizeof d);
	emit(c, d, sizeof d);
	return 0;
}

uint32_t hbk_sbc_read_capacity16(struct cmd_ctx *c)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	uint8_t d[32] = { 0 };

	put_be64(d, cfg->nblocks - 1);
	put_be32(d + 8, cfg->block_size);
	d[13] = cfg->lbppbe & 0x0f;     /* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT */
	if (lun_thin(c->lun))
		d[14] = 0x80 | (cfg->lbprz ? 0x40 : 0);   /* LBPME, LBPRZ */
	data_in_begin(c, get_be32(c->cdb + 10));
	emit(c, d, sizeof d);
	return 0;
}

/*
 * GET LBA STATUS: as many descriptors from the starting LBA as the
 * allocation length holds (at least one), each an extent of one state, as
 * the backend's lba_status reports it (mapped throughout without one).
 */
uint32_t hbk_sbc_get_lba_status(struct cmd_ctx *c)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	uint64_t lba = get_be64(c->cdb + 2), end = cfg->nblocks;
	uint32_t alloc_len = get_be32(c->cdb + 10);
	uint8_t d[8 + 16 * HBK_LBA_STATUS_DESC_MAX] = { 0 };
	size_t n = 8, max = alloc_len >= 24 ? (alloc_len - 8) / 16 : 1;

	if (lba >= end)
		return HBK_CC_LBA_OUT_OF_RANGE;
	if (max > HBK_LBA_STATUS_DESC_MAX)
		max = HBK_LBA_STATUS_DESC_MAX;
	while (lba < end && n < 8 + 16 * max) {
		uint32_t most = end - lba > UINT32_MAX ? UINT32_MAX : (uint32_t)(end - lba);
		uint32_t run = most;
		bool mapped = true;

		if (cfg->ops->lba_status) {
			int err = cfg->ops->lba_status(cfg->ctx, lba, &run, &mapped);

			if (err || run == 0 || run > most)
				return backend_error(err ? err : -EINVAL, false);
		}
		put_be64(d + n, lba);
		put_be32(d + n + 8, run);
		d[n + 12] = mapped ? 0x0 : 0x1;  /* PROVISIONING STATUS: mapped, deallocated */
		n += 16;
		lba += run;
	}
	put_be32(d, (uint32_t)(n - 4));         /* PARAMETER DATA LENGTH */
	data_in_begin(c, alloc_len);
	emit(c, d, n);
	return 0;
}

/* Whether SBC-4 defines POWER CONDITION pc with POWER CONDITION MODIFIER
 * mod (0h, START_VALID, is the START and LOEJ bits' own). */
static bool power_condition_valid(unsigned pc, unsigned mod)
{
	switch (pc) {
	case 0x1: case 0x7:             /* ACTIVE, LU_CONTROL */
		return mod == 0;
	case 0x2: case 0xa:             /* IDLE_A..C, FORCE_IDLE_A..C */
		return mod <= 2;
	case 0x3: case 0xb:             /* STANDBY_Z/Y, FORCE_STANDBY_Z/Y */
		return mod <= 1;
	default:                        /* reserved or obsolete */
		return false;
	}
}

/*
 * START STOP UNIT.  With POWER CONDITION START_VALID, a stopped LUN
 * answers NOT READY to medium access until started, and stopping flushes
 * the cache unless NO_FLUSH.  The medium is not removable (RMB 0), so LOEJ
 * is refused, as MEDIUM REMOVAL PREVENTED while an I_T nexus prevents
 * removal.  Any other defined power condition succeeds and ignores START
 * and LOEJ (SBC-4): the LUN has no spindle or timers to drive, so it only
 * leaves the stopped state, since ACTIVE, IDLE and STANDBY all serve
 * medium access; LU_CONTROL changes nothing.
 */
uint32_t hbk_sbc_start_stop(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	uint8_t b = c->cdb[4];
	bool start = b & 0x01, loej = b & 0x02, no_flush = b & 0x04;
	unsigned pc = b >> 4, mod = c->cdb[3] & 0x0f;
	int err;

	if (pc || mod) {
		if (!power_condition_valid(pc, mod))
			return !pc || power_condition_valid(pc, 0) ?
			       invalid_field(c, 3, 3) :        /* POWER CONDITION MODIFIER */
			       invalid_field(c, 4, 7);         /* POWER CONDITION */
		if (pc != 0x7)
			lun_state_set(lun, HBK_LUN_STOPPED, false);
		return 0;
	}
	if (loej) {
		if (!start && hbk_pr_removal_prevented(lun))
			return HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_MEDIUM_REMOVAL_PREVENTED);
		return invalid_field(c, 4, 1);          /* LOEJ */
	}
	if (!start && !no_flush && lun->cfg.ops->flush) {
		err = lun->cfg.ops->flush(lun->cfg.ctx);
		if (err)
			return backend_error(err, true);
	}
	lun_state_set(lun, HBK_LUN_STOPPED, !start);
	return 0;
}
