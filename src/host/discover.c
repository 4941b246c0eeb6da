/* SPDX-License-Identifier: MIT */
/*
 * The SAM initiator's discovery: what the host does inside a driver's create
 * target call, as the reference model does, before the call returns:
 * initialise the target on the driver, ask its capabilities, then INQUIRY
 * (with retries), TEST UNIT READY and REPORT LUNS, and per LUN standard
 * INQUIRY, VPD 0x00/0x80/0x83/0xB0 and READ CAPACITY(16), and register the
 * LUN; REPORT LUNS and READ CAPACITY are retried too while busy or reporting
 * a unit attention.  Also target destruction, presence and media change.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/host_priv.h"
#include "host/sam_cdb.h"

#define INQUIRY_TRIES 8
#define TUR_TRIES     4
#define CMD_TRIES     8   /* a LUN may hold several unit attentions */
#define MAX_LUNS      256
#define LIST_MAX      (8 + 8 * 16384)  /* REPORT LUNS of every single-level LUN */

/* Runs one command on (target, lun) and waits.  Returns 0 with *r filled,
 * or -errno when it could not be submitted. */
static int run(struct hbk_ctl *c, uint64_t target, uint64_t lun, const uint8_t *cdb, int cdb_len,
	       void *buf, uint32_t len, struct hbk_scsi_result *r)
{
	if (cdb_len < 0)
		return cdb_len;
	struct hbk_scsi_cmd cmd;
	memset(&cmd, 0, sizeof(cmd));
	cmd.target = target;
	cmd.lun_id = lun;
	memcpy(cmd.cdb, cdb, (size_t)cdb_len);
	cmd.cdb_len = (uint8_t)cdb_len;
	cmd.dir = len ? HBK_DIR_READ : HBK_DIR_NONE;
	cmd.buf = len ? buf : NULL;
	cmd.len = len;
	cmd.done = NULL;
	int err = hbk_sam_exec(c, &cmd);
	*r = cmd.result;
	return err;
}

/* Worth another try: busy, unit attention, not ready, or a delivery hiccup
 * other than "no such device" and a timeout (the task timeout has been
 * waited already, and each try would wait it again). */
static bool transient(const struct hbk_scsi_result *r)
{
	if (r->service == HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE)
		return r->status != HBK_DS_DEVICE_NOT_PRESENT && r->status != HBK_DS_TASK_TIMEOUT;
	return r->status == HBK_STATUS_BUSY || r->status == HBK_STATUS_TASK_SET_FULL ||
	       (r->status == HBK_STATUS_CHECK_CONDITION &&
		(r->sense_key == HBK_SK_UNIT_ATTENTION || r->sense_key == HBK_SK_NOT_READY));
}

/* run, sent again while the result is transient, up to tries times in all. */
static int run_tries(struct hbk_ctl *c, uint64_t target, uint64_t lun, const uint8_t *cdb,
		     int cdb_len, void *buf, uint32_t len, unsigned tries,
		     struct hbk_scsi_result *r)
{
	int err = -EIO;
	for (unsigned i = 0; i < tries; i++) {
		if (len)
			memset(buf, 0, len);
		err = run(c, target, lun, cdb, cdb_len, buf, len, r);
		if (err || hbk_scsi_ok(r) || !transient(r))
			break;
	}
	return err;
}

static int inquiry(struct hbk_ctl *c, uint64_t target, uint64_t lun, bool evpd, uint8_t page,
		   uint8_t *buf, uint16_t len, unsigned tries, struct hbk_scsi_result *r)
{
	uint8_t cdb[16];
	int err = run_tries(c, target, lun, cdb, hbk_sam_cdb_inquiry(cdb, evpd, page, len), buf, len,
			    tries, r);
	return err ? err : hbk_scsi_ok(r) ? 0 : -EIO;
}

static bool has_page(const uint8_t *pages, unsigned n, uint8_t page)
{
	for (unsigned i = 0; i < n; i++)
		if (pages[i] == page)
			return true;
	return false;
}

static int read_capacity(struct hbk_ctl *c, struct hbk_lun_info *info)
{
	uint8_t cdb[16], buf[32];
	struct hbk_scsi_result r;
	struct hbk_sam_capacity cap;
	/* A unit attention (a LUN's first command after a reset, or a capacity
	 * change) is worth another READ CAPACITY(16): falling back to (10)
	 * would lose a capacity of 2^32 blocks or more, and LBPME. */
	int err = run_tries(c, info->target, info->lun, cdb,
			    hbk_sam_cdb_read_capacity16(cdb, sizeof(buf)), buf, sizeof(buf),
			    CMD_TRIES, &r);
	if (!err && hbk_scsi_ok(&r))
		err = hbk_sam_parse_read_capacity16(buf, r.bytes, &cap);
	else {
		err = run_tries(c, info->target, info->lun, cdb, hbk_sam_cdb_read_capacity10(cdb),
				buf, 8, CMD_TRIES, &r);
		err = err ? err : !hbk_scsi_ok(&r) ? -EIO : hbk_sam_parse_read_capacity10(buf, r.bytes, &cap);
	}
	if (err)
		return err;
	/* A block the HBA cannot move in one command makes every I/O fail;
	 * a size in bytes beyond 63 bits overflows every user's arithmetic
	 * (offsets are off_t, NBD sizes int64). */
	if (cap.block_size > c->max_transfer || cap.nblocks > INT64_MAX / cap.block_size) {
		hbk_log(HBK_LOG_ERR, "target %llu lun %llu: %llu blocks of %u bytes, which the "
			"host cannot address (HBA max transfer %llu bytes): refused",
			(unsigned long long)info->target, (unsigned long long)info->lun,
			(unsigned long long)cap.nblocks, cap.block_size,
			(unsigned long long)c->max_transfer);
		return -EOVERFLOW;
	}
	info->block_size = cap.block_size;
	info->nblocks = cap.nblocks;
	info->thin = cap.lbpme;
	return 0;
}

/* Everything the host learns about one LUN; 0, or -errno to skip it. */
static int probe_lun(struct hbk_ctl *c, uint64_t target, uint64_t lun, struct hbk_lun_info *info)
{
	uint8_t buf[255];
	struct hbk_scsi_result r;
	struct hbk_sam_inquiry inq;
	memset(info, 0, sizeof(*info));
	info->target = target;
	info->lun = lun;
	int err = inquiry(c, target, lun, false, 0, buf, 96, INQUIRY_TRIES, &r);
	if (!err)
		err = hbk_sam_parse_inquiry(buf, HBK_MIN(r.bytes, 96), &inq);
	if (err)
		return err;
	if (inq.qualifier != 0)
		return -ENODEV;
	memcpy(info->vendor, inq.vendor, sizeof(info->vendor));
	memcpy(info->product, inq.product, sizeof(info->product));
	memcpy(info->revision, inq.revision, sizeof(info->revision));

	uint8_t pages[64];
	unsigned npages = 0;
	if (!inquiry(c, target, lun, true, HBK_SAM_VPD_SUPPORTED, buf, sizeof(buf), 1, &r))
		hbk_sam_parse_vpd_pages(buf, r.bytes, pages, sizeof(pages), &npages);
	npages = HBK_MIN(npages, sizeof(pages));
	if (has_page(pages, npages, HBK_SAM_VPD_SERIAL) &&
	    !inquiry(c, target, lun, true, HBK_SAM_VPD_SERIAL, buf, sizeof(buf), 1, &r))
		hbk_sam_parse_vpd_serial(buf, r.bytes, info->serial, sizeof(info->serial));
	if (has_page(pages, npages, HBK_SAM_VPD_DEVID) &&
	    !inquiry(c, target, lun, true, HBK_SAM_VPD_DEVID, buf, sizeof(buf), 1, &r)) {
		struct hbk_sam_devid id;
		if (!hbk_sam_parse_vpd_devid(buf, r.bytes, &id))
			snprintf(info->devid, sizeof(info->devid), "%s", id.id);
	}
	struct hbk_sam_block_limits bl = { 0 };
	if (has_page(pages, npages, HBK_SAM_VPD_BLOCK_LIMITS) &&
	    !inquiry(c, target, lun, true, HBK_SAM_VPD_BLOCK_LIMITS, buf, 64, 1, &r))
		hbk_sam_parse_vpd_block_limits(buf, r.bytes, &bl);

	if ((err = read_capacity(c, info)))
		return err;
	uint64_t max = c->max_transfer;
	if (bl.max_xfer_len)
		max = HBK_MIN(max, (uint64_t)bl.max_xfer_len * info->block_size);
	max -= max % info->block_size;
	info->max_xfer_bytes = (uint32_t)HBK_MAX(max, info->block_size);
	info->max_unmap_blocks = bl.max_unmap_lba_count;
	return 0;
}

static bool target_known(struct hbk_ctl *c, uint64_t target)
{
	for (unsigned i = 0; i < c->nluns; i++)
		if (c->luns[i]->info.target == target && !c->luns[i]->gone)
			return true;
	return false;
}

static int register_lun(struct hbk_ctl *c, const struct hbk_lun_info *info)
{
	struct hbk_lun *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->ctl = c;
	l->info = *info;
	atomic_init(&l->nblocks, info->nblocks);
	atomic_init(&l->gone, false);
	pthread_mutex_lock(&c->lun_lock);
	if (c->nluns == c->luns_cap) {
		unsigned cap = c->luns_cap ? c->luns_cap * 2 : 8;
		struct hbk_lun **n = realloc(c->luns, cap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&c->lun_lock);
			free(l);
			return -ENOMEM;
		}
		c->luns = n;
		c->luns_cap = cap;
	}
	c->luns[c->nluns++] = l;
	pthread_cond_broadcast(&c->lun_cond);
	pthread_mutex_unlock(&c->lun_lock);
	hbk_log(HBK_LOG_INFO, "target %llu lun %llu: %s %s %s, %llu x %u B",
		(unsigned long long)info->target, (unsigned long long)info->lun, info->vendor,
		info->product, info->serial, (unsigned long long)info->nblocks, info->block_size);
	return 0;
}

/*
 * The LUNs up to highest that REPORT LUNS lists, each once, in list order
 * (a list may name one twice, in two addressing methods say); LUN 0 alone
 * when the target lists none or cannot tell.  A list longer than the first
 * allocation length is asked for again, whole (up to LIST_MAX bytes): SPC
 * sets no order, so the LUNs the host serves may come last.  Returns the
 * count, at most MAX_LUNS.
 */
static unsigned report_luns(struct hbk_ctl *c, uint64_t target, uint64_t highest, uint64_t *luns)
{
	uint8_t first[16 + 8 * MAX_LUNS], cdb[16], *big = NULL;
	struct hbk_scsi_result r;
	unsigned n = 0, listed = 0;
	/* Busy is not "LUN 0 only": that fallback is for a target without
	 * REPORT LUNS. */
	int err = run_tries(c, target, 0, cdb, hbk_sam_cdb_report_luns(cdb, 0, sizeof(first)),
			    first, sizeof(first), CMD_TRIES, &r);
	bool ok = !err && hbk_scsi_ok(&r) &&
		  !hbk_sam_parse_report_luns(first, r.bytes, NULL, 0, &listed);
	const uint8_t *list = first;
	uint64_t got = r.bytes;
	if (ok && 8 + (uint64_t)listed * 8 > sizeof(first)) {
		uint32_t len = (uint32_t)HBK_MIN(8 + (uint64_t)listed * 8,
						 HBK_MIN(LIST_MAX, c->max_transfer));
		unsigned again;
		if ((big = malloc(len)) &&
		    !run_tries(c, target, 0, cdb, hbk_sam_cdb_report_luns(cdb, 0, len), big, len,
			       CMD_TRIES, &r) &&
		    hbk_scsi_ok(&r) && !hbk_sam_parse_report_luns(big, r.bytes, NULL, 0, &again)) {
			list = big;      /* else the first answer's part of the list */
			got = r.bytes;
			listed = again;
		}
	}
	if (ok) {
		/* What arrived of the list. */
		listed = (unsigned)HBK_MIN(listed, (got - 8) / 8);
		for (unsigned i = 0; i < listed && n < MAX_LUNS; i++) {
			uint64_t lun = hbk_scsi_lun_decode(list + 8 + (size_t)i * 8);
			bool dup = false;
			for (unsigned j = 0; j < n && !dup; j++)
				dup = luns[j] == lun;
			if (!dup && lun <= highest)
				luns[n++] = lun;
		}
	}
	free(big);
	if (!ok || !listed)
		luns[n++] = 0;
	return n;
}

int hbk_disc_create_target(struct hbk_ctl *c, uint64_t target)
{
	if (target > c->highest_id || target == c->initiator_id) {
		hbk_log(HBK_LOG_ERR, "create target %llu refused: %s", (unsigned long long)target,
			target == c->initiator_id ? "that is the initiator's own id"
						  : "above the highest supported device id");
		return -EINVAL;
	}
	pthread_mutex_lock(&c->lun_lock);
	bool known = target_known(c, target);
	pthread_mutex_unlock(&c->lun_lock);
	if (known)
		return -EEXIST;

	uint64_t arg = target, val[4];
	int err = hbk_ctl_call_simple(c, HBK_MSG_INIT_TARGET, &arg, 1, NULL);
	if (err) {
		hbk_log(HBK_LOG_INFO, "driver refused to initialise target %llu: %s",
			(unsigned long long)target, hbk_strerror(err));
		return err;
	}
	hbk_ctl_call_simple(c, HBK_MSG_MULTIPATHING, NULL, 0, val);
	uint64_t highest_lun = MAX_LUNS - 1;
	if (!hbk_ctl_call_simple(c, HBK_MSG_HIGHEST_LUN, NULL, 0, val) && val[0])
		highest_lun = HBK_MIN(val[0], highest_lun);

	uint8_t buf[36], cdb[16];
	struct hbk_scsi_result r;
	if ((err = inquiry(c, target, 0, false, 0, buf, sizeof(buf), INQUIRY_TRIES, &r)))
		return err == -EIO ? -ENODEV : err;
	run_tries(c, target, 0, cdb, hbk_sam_cdb_test_unit_ready(cdb), NULL, 0, TUR_TRIES, &r);
	uint64_t luns[MAX_LUNS];
	unsigned nluns = report_luns(c, target, highest_lun, luns);
	unsigned registered = 0;
	for (unsigned i = 0; i < nluns; i++) {
		struct hbk_lun_info info;
		if (probe_lun(c, target, luns[i], &info))
			continue;
		if (!register_lun(c, &info))
			registered++;
	}
	return registered ? 0 : -ENODEV;
}

int hbk_disc_destroy_target(struct hbk_ctl *c, uint64_t target)
{
	int err = -ENOENT;
	pthread_mutex_lock(&c->lun_lock);
	for (unsigned i = 0; i < c->nluns; i++)
		if (c->luns[i]->info.target == target && !c->luns[i]->gone) {
			atomic_store(&c->luns[i]->gone, true);
			err = 0;
		}
	pthread_mutex_unlock(&c->lun_lock);
	return err;
}

bool hbk_disc_target_present(struct hbk_ctl *c, uint64_t target)
{
	pthread_mutex_lock(&c->lun_lock);
	bool known = target_known(c, target);
	pthread_mutex_unlock(&c->lun_lock);
	return known;
}

int hbk_disc_media_changed(struct hbk_ctl *c, uint64_t target, uint64_t lun)
{
	struct hbk_lun *l = NULL;
	pthread_mutex_lock(&c->lun_lock);
	for (unsigned i = 0; i < c->nluns && !l; i++)
		if (c->luns[i]->info.target == target && c->luns[i]->info.lun == lun && !c->luns[i]->gone)
			l = c->luns[i];
	pthread_mutex_unlock(&c->lun_lock);
	if (!l)
		return -ENOENT;
	pthread_mutex_lock(&c->lun_lock);
	struct hbk_lun_info info = l->info;
	pthread_mutex_unlock(&c->lun_lock);
	int err = read_capacity(c, &info);
	if (err)
		return err;
	if (info.block_size != l->info.block_size) {
		/* Every split and buffer was sized for the old block size. */
		hbk_log(HBK_LOG_ERR, "target %llu lun %llu changed its block size from %u to %u; "
			"the LUN is taken offline", (unsigned long long)target,
			(unsigned long long)lun, l->info.block_size, info.block_size);
		atomic_store(&l->gone, true);
		return -EINVAL;
	}
	pthread_mutex_lock(&c->lun_lock);
	l->info.nblocks = info.nblocks;
	atomic_store(&l->nblocks, info.nblocks);
	pthread_mutex_unlock(&c->lun_lock);
	hbk_log(HBK_LOG_INFO, "target %llu lun %llu: media changed, now %llu blocks",
		(unsigned long long)target, (unsigned long long)lun,
		(unsigned long long)info.nblocks);
	return 0;
}

void hbk_disc_free(struct hbk_ctl *c)
{
	for (unsigned i = 0; i < c->nluns; i++)
		free(c->luns[i]);
	free(c->luns);
	c->luns = NULL;
	c->nluns = 0;
}

unsigned hbk_ctl_lun_count(struct hbk_ctl *c)
{
	pthread_mutex_lock(&c->lun_lock);
	unsigned n = c->nluns;
	pthread_mutex_unlock(&c->lun_lock);
	return n;
}

struct hbk_lun *hbk_ctl_lun(struct hbk_ctl *c, unsigned i)
{
	pthread_mutex_lock(&c->lun_lock);
	struct hbk_lun *l = i < c->nluns ? c->luns[i] : NULL;
	pthread_mutex_unlock(&c->lun_lock);
	return l;
}

struct hbk_ctl *hbk_lun_ctl(const struct hbk_lun *l)
{
	return l->ctl;
}

int hbk_lun_info(const struct hbk_lun *l, struct hbk_lun_info *out)
{
	pthread_mutex_lock(&l->ctl->lun_lock);
	*out = l->info;
	pthread_mutex_unlock(&l->ctl->lun_lock);
	return atomic_load(&l->gone) ? -ENODEV : 0;
}
