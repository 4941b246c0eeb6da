/* SPDX-License-Identifier: MIT */
/*
 * More block commands of the emulation (SBC-4): PRE-FETCH 10/16, ORWRITE(16),
 * WRITE ATOMIC(16), READ DEFECT DATA 10/12, and START STOP UNIT on a LUN
 * with a removable medium (LOEJ loads and ejects it; other LUNs and the
 * other bits go to sbc.c's handler).  The emulation's LUNs keep every block
 * at hand, so a PRE-FETCH always finds its blocks in the cache (CONDITION
 * MET) and there are no defects to list.  ORWRITE and WRITE ATOMIC hold the
 * LUN's write lock alone, as COMPARE AND WRITE does, so no other write of
 * the emulation (synchronous or asynchronous) lands in between.  The LUN
 * configuration these commands read (removable medium, atomic limits,
 * physical block exponent) is checked here for hbk_scsi_lun_init.
 */
#include <pthread.h>
#include <stdlib.h>

#include "scsi/scsi_priv.h"

#define HBK_DEFECT_FORMAT_RESERVED 0x7  /* DEFECT LIST FORMAT 111b */
#define HBK_SSU_LOEJ               0x02
#define HBK_SSU_START              0x01
#define HBK_SSU_NO_FLUSH           0x04

bool hbk_sbc_cfg_valid(const struct hbk_scsi_lun_cfg *cfg)
{
	uint32_t limit = cfg_atomic_limit(cfg);

	return cfg->lbppbe < 16 && cfg->max_atomic_blocks <= HBK_SCSI_ATOMIC_MAX &&
	       cfg->atomic_granularity <= limit && cfg->atomic_alignment <= cfg->nblocks;
}

/* WRPROTECT (CDB byte 1) 0, the blocks on the medium, at most max of them
 * (0: no limit; the length starts at CDB byte len_at).  The checks, in
 * this order, of every write below. */
static uint32_t check_transfer(struct cmd_ctx *c, uint64_t lba, uint64_t nblocks, uint32_t max,
			       unsigned len_at)
{
	uint32_t cc;

	if (c->cdb[1] >> 5)
		return invalid_field(c, 1, 7);
	cc = check_range(c->lun, lba, nblocks);
	if (cc)
		return cc;
	return max && nblocks > max ? invalid_field(c, len_at, 7) : 0;
}

/* With WCE 0 the cache is write-through: every write is FUA. */
static bool write_fua(const struct hbk_scsi_lun *lun, bool fua)
{
	return fua || !(lun_state(lun) & HBK_LUN_WCE);
}

/* ---- PRE-FETCH ------------------------------------------------------------------- */

/*
 * PRE-FETCH 10/16 (SBC-4 5.9, 5.10): a PREFETCH LENGTH of 0 means every
 * block from the LBA to the end of the medium.  The blocks are always in
 * the cache, so with IMMED 0 or 1 the answer is CONDITION MET.
 */
uint32_t hbk_sbc_prefetch(struct cmd_ctx *c)
{
	bool sixteen = c->cdb[0] == HBK_SCSI_OP_PREFETCH16;
	uint64_t lba = sixteen ? get_be64(c->cdb + 2) : get_be32(c->cdb + 2);
	uint64_t nblocks = sixteen ? get_be32(c->cdb + 10) : get_be16(c->cdb + 7);
	uint64_t capacity = c->lun->cfg.nblocks;

	if (lba >= capacity)
		return HBK_CC_LBA_OUT_OF_RANGE;
	if (nblocks == 0)
		nblocks = capacity - lba;
	return check_range(c->lun, lba, nblocks) ? HBK_CC_LBA_OUT_OF_RANGE : HBK_CC_CONDITION_MET;
}

/* ---- ORWRITE and WRITE ATOMIC ------------------------------------------------------ */

static void or_into(uint8_t *dst, const uint8_t *src, size_t len)
{
	for (size_t i = 0; i < len; i++)
		dst[i] |= src[i];
}

/*
 * ORWRITE(16) (SBC-4 5.11), BMOP 000b: reads the blocks, ORs the data-out
 * into them and writes the result, as one uninterrupted series with
 * respect to every other write.  Moves through a bounded scratch buffer.
 */
uint32_t hbk_sbc_orwrite(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	const struct hbk_scsi_lun_cfg *cfg = &lun->cfg;
	uint64_t lba = get_be64(c->cdb + 2);
	uint32_t nblocks = get_be32(c->cdb + 10), chunk, k, cc;
	size_t bs = cfg->block_size;
	bool fua = write_fua(lun, c->cdb[1] & 0x08);
	uint8_t *tmp;

	cc = check_transfer(c, lba, nblocks, cfg->max_xfer_blocks, 10);
	if (cc || nblocks == 0)
		return cc;
	if ((uint64_t)nblocks * bs > c->out_len)
		return HBK_CC_INVALID_FIELD;
	chunk = HBK_SCSI_CHUNK_BYTES / cfg->block_size;
	if (chunk == 0)
		chunk = 1;
	if (chunk > nblocks)
		chunk = nblocks;
	tmp = malloc((size_t)chunk * bs);
	if (!tmp)
		return backend_error(-ENOMEM, true);
	cc = hbk_write_lock(c, true);
	if (cc) {
		free(tmp);
		return cc;
	}
	for (uint32_t done = 0; done < nblocks && !cc; done += k) {
		int err;

		k = nblocks - done < chunk ? nblocks - done : chunk;
		err = cfg->ops->read(cfg->ctx, lba + done, k, tmp);
		if (err) {
			cc = backend_error(err, false);
			break;
		}
		or_into(tmp, c->buf + (size_t)done * bs, (size_t)k * bs);
		err = cfg->ops->write(cfg->ctx, lba + done, k, tmp, fua);
		cc = err ? backend_error(err, true) : 0;
	}
	hbk_write_unlock(c, true);
	free(tmp);
	if (!cc)
		c->bytes = (uint64_t)nblocks * bs;
	return cc;
}

/*
 * WRITE ATOMIC(16) (SBC-4 5.46): one write of at most MAXIMUM ATOMIC
 * TRANSFER LENGTH blocks, starting on the ATOMIC ALIGNMENT and a multiple
 * of the ATOMIC TRANSFER LENGTH GRANULARITY long (VPD B0), that no other
 * write of the emulation interleaves with.  ATOMIC BOUNDARY (bytes 10-11)
 * is not supported and must be zero (the usage data says so).
 */
uint32_t hbk_sbc_write_atomic(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	const struct hbk_scsi_lun_cfg *cfg = &lun->cfg;
	uint64_t lba = get_be64(c->cdb + 2);
	uint32_t nblocks = get_be16(c->cdb + 12), cc;
	uint64_t len = (uint64_t)nblocks * cfg->block_size;
	int err;

	cc = check_transfer(c, lba, nblocks, cfg_atomic_limit(cfg), 12);
	if (cc)
		return cc;
	if (cfg->atomic_alignment && lba % cfg->atomic_alignment)
		return invalid_field(c, 2, 7);          /* LOGICAL BLOCK ADDRESS */
	if (cfg->atomic_granularity && nblocks % cfg->atomic_granularity)
		return invalid_field(c, 12, 7);         /* TRANSFER LENGTH */
	if (nblocks == 0)
		return 0;
	if (len > c->out_len)
		return HBK_CC_INVALID_FIELD;
	cc = hbk_write_lock(c, true);
	if (cc)
		return cc;
	err = cfg->ops->write(cfg->ctx, lba, nblocks, c->buf, write_fua(lun, c->cdb[1] & 0x08));
	hbk_write_unlock(c, true);
	if (err)
		return backend_error(err, true);
	c->bytes = len;
	return 0;
}

/* ---- READ DEFECT DATA -------------------------------------------------------------- */

/*
 * READ DEFECT DATA 10/12 (SBC-4 5.12, 5.13): the lists are empty, so the
 * reply is the header alone, in the format asked for, with PLISTV and
 * GLISTV saying which (empty) lists it holds.  The 12-byte header has
 * GENERATION CODE 0 (not supported); an ADDRESS DESCRIPTOR INDEX past the
 * end of an empty list only means no descriptors.
 */
uint32_t hbk_sbc_read_defect_data(struct cmd_ctx *c)
{
	bool twelve = c->cdb[0] == HBK_SCSI_OP_READ_DEFECT12;
	uint8_t req = twelve ? c->cdb[1] : c->cdb[2];
	uint8_t d[8] = { 0 };

	if ((req & 0x07) == HBK_DEFECT_FORMAT_RESERVED)
		return invalid_field(c, twelve ? 1 : 2, 2);     /* DEFECT LIST FORMAT */
	d[1] = req & 0x1f;      /* PLISTV = REQ_PLIST, GLISTV = REQ_GLIST, the format */
	data_in_begin(c, twelve ? get_be32(c->cdb + 6) : get_be16(c->cdb + 7));
	emit(c, d, twelve ? 8 : 4);     /* DEFECT LIST LENGTH 0 */
	return 0;
}

/* ---- Removable medium ------------------------------------------------------------- */

/*
 * START STOP UNIT on a LUN with a removable medium (RMB 1).  LOEJ with
 * START loads the medium and starts the unit; LOEJ without START stops the
 * unit, writes the cache out unless NO_FLUSH, and ejects the medium.  While
 * an I_T nexus prevents medium removal the load/eject mechanism is locked:
 * LOEJ, either way, answers ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED.
 * Ejecting an ejected medium, or loading a loaded one, succeeds.  Without a medium,
 * START alone answers NOT READY, MEDIUM NOT PRESENT.  Everything else
 * (POWER CONDITION, START without LOEJ, any LUN with a fixed medium) is
 * sbc.c's.
 */
uint32_t hbk_sbc_start_stop_unit(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	uint8_t b = c->cdb[4];
	uint32_t cc = 0;
	int err;

	if (!lun->cfg.removable || (b >> 4) || (c->cdb[3] & 0x0f))
		return hbk_sbc_start_stop(c);
	if (!(b & HBK_SSU_LOEJ)) {
		if ((b & HBK_SSU_START) && (lun_state(lun) & HBK_LUN_NO_MEDIUM))
			return HBK_CC(HBK_SK_NOT_READY, HBK_ASC_MEDIUM_NOT_PRESENT);
		return hbk_sbc_start_stop(c);
	}
	if (b & HBK_SSU_START) {
		pthread_mutex_lock(&lun->lock);
		if (hbk_pr_prevented_locked(lun))
			cc = HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_MEDIUM_REMOVAL_PREVENTED);
		else
			lun_state_set(lun, HBK_LUN_NO_MEDIUM | HBK_LUN_STOPPED, false);
		pthread_mutex_unlock(&lun->lock);
		return cc;
	}
	if (hbk_pr_removal_prevented(lun))
		return HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_MEDIUM_REMOVAL_PREVENTED);
	if (!(lun_state(lun) & HBK_LUN_NO_MEDIUM) && !(b & HBK_SSU_NO_FLUSH) &&
	    lun->cfg.ops->flush) {
		err = lun->cfg.ops->flush(lun->cfg.ctx);
		if (err)
			return backend_error(err, true);
	}
	/* Checked again: a PREVENT may have come while the cache was written. */
	pthread_mutex_lock(&lun->lock);
	if (hbk_pr_prevented_locked(lun))
		cc = HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_MEDIUM_REMOVAL_PREVENTED);
	else
		lun_state_set(lun, HBK_LUN_NO_MEDIUM | HBK_LUN_STOPPED, true);
	pthread_mutex_unlock(&lun->lock);
	return cc;
}
