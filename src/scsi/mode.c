/* SPDX-License-Identifier: MIT */
/*
 * MODE SENSE and MODE SELECT, 6- and 10-byte (SPC-5, SBC-4), over the
 * caching page (08h), whose WCE bit is changeable, and the control page
 * (0Ah), which is not.  Current, changeable and default values are served;
 * saved values are not implemented.  Block descriptors come short or, with
 * LLBAA, long, and a MODE SELECT may only restate them.  A MODE SELECT is
 * checked whole before any of it takes effect; one that changes a value
 * leaves a unit attention (MODE PARAMETERS CHANGED) for every other I_T
 * nexus.  The header's WP bit tells a write-protected medium.
 */
#include <pthread.h>
#include <string.h>

#include "scsi/scsi_priv.h"

#define HBK_DEVSPEC_DPOFUA  0x10  /* mode parameter header: DPO and FUA honoured */
#define HBK_DEVSPEC_WP      0x80  /* mode parameter header: write protected */
#define HBK_MODE_MAX        256   /* the longest MODE SENSE reply built */
#define HBK_MODE_PAGE_MAX   32    /* the longest page */

enum mode_pc { PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED };

/* The changeable parameters: what one set of values (current, default) holds. */
struct mode_values {
	bool wce;
};

struct mode_page {
	uint8_t code;
	uint8_t len;            /* the whole page, its 2-byte header included */
	/* Fills p (zeroed) from v or, with masks, with the changeable bits. */
	void (*fill)(const struct mode_values *v, uint8_t *p, bool masks);
	/* Takes the changeable parameters from a page the initiator sent. */
	void (*take)(struct mode_values *v, const uint8_t *p);
};

static void caching_fill(const struct mode_values *v, uint8_t *p, bool masks)
{
	if (masks || v->wce)
		p[2] = 0x04;    /* WCE */
}

static void caching_take(struct mode_values *v, const uint8_t *p)
{
	v->wce = p[2] & 0x04;
}

static void control_fill(const struct mode_values *v, uint8_t *p, bool masks)
{
	(void)v;
	if (masks)
		return;
	p[3] = 0x10;            /* QUEUE ALGORITHM MODIFIER: unrestricted */
	p[5] = 0x40;            /* TAS: a task another nexus' task management
				 * aborted ends with TASK ABORTED status */
}

static const struct mode_page mode_pages[] = {
	{ 0x08, 20, caching_fill, caching_take },
	{ 0x0a, 12, control_fill, NULL },
};

#define HBK_MODE_PAGES (sizeof mode_pages / sizeof mode_pages[0])

static const struct mode_page *find_page(unsigned code)
{
	for (size_t i = 0; i < HBK_MODE_PAGES; i++)
		if (mode_pages[i].code == code)
			return &mode_pages[i];
	return NULL;
}

static size_t build_page(const struct mode_page *pg, const struct mode_values *v,
			 uint8_t *p, bool masks)
{
	p[0] = pg->code;
	p[1] = (uint8_t)(pg->len - 2);
	pg->fill(v, p, masks);
	return pg->len;
}

static struct mode_values current_values(const struct hbk_scsi_lun *lun)
{
	return (struct mode_values){ .wce = lun_state(lun) & HBK_LUN_WCE };
}

static struct mode_values default_values(const struct hbk_scsi_lun *lun)
{
	return (struct mode_values){ .wce = lun->cfg.write_cache };
}

/* The block descriptor (8 or 16 bytes); with masks all zero: nothing in it
 * can be changed. */
static void block_descriptor(const struct hbk_scsi_lun_cfg *cfg, uint8_t *d, bool llba,
			     bool masks)
{
	if (masks)
		return;
	if (llba) {
		put_be64(d, cfg->nblocks);
		put_be32(d + 12, cfg->block_size);
	} else {
		put_be32(d, cfg->nblocks > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->nblocks);
		put_be24(d + 5, cfg->block_size);
	}
}

uint32_t hbk_mode_sense(struct cmd_ctx *c)
{
	bool ten = c->cdb[0] == HBK_SCSI_OP_MODE_SENSE10;
	bool dbd = c->cdb[1] & 0x08, llba = ten && (c->cdb[1] & 0x10);
	unsigned pc = c->cdb[2] >> 6, code = c->cdb[2] & 0x3f, subpage = c->cdb[3];
	struct mode_values v = pc == PC_DEFAULT ? default_values(c->lun) : current_values(c->lun);
	size_t n = ten ? 8 : 4, bd = dbd ? 0 : llba ? 16 : 8;
	uint8_t d[HBK_MODE_MAX] = { 0 };
	uint8_t devspec = HBK_DEVSPEC_DPOFUA | (c->lun->cfg.read_only ? HBK_DEVSPEC_WP : 0);
	bool found = false;

	if (pc == PC_SAVED)
		return HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_SAVING_PARAMS_NOT_SUPPORTED);
	/* No page has subpages: subpage 00h, or FFh (the page, or every page,
	 * with all its subpages: only the page itself). */
	if (subpage && subpage != 0xff)
		return invalid_field(c, 3, 7);          /* SUBPAGE CODE */
	if (bd)
		block_descriptor(&c->lun->cfg, d + n, llba, pc == PC_CHANGEABLE);
	n += bd;
	for (size_t i = 0; i < HBK_MODE_PAGES; i++) {
		if (code != 0x3f && code != mode_pages[i].code)
			continue;
		n += build_page(&mode_pages[i], &v, d + n, pc == PC_CHANGEABLE);
		found = true;
	}
	if (!found)
		return invalid_field(c, 2, 5);          /* PAGE CODE */
	if (ten) {
		put_be16(d, (uint16_t)(n - 2));
		d[3] = devspec;
		d[4] = llba && bd ? 0x01 : 0;   /* LONGLBA */
		put_be16(d + 6, (uint16_t)bd);
		data_in_begin(c, get_be16(c->cdb + 7));
	} else {
		d[0] = (uint8_t)(n - 1);
		d[2] = devspec;
		d[3] = (uint8_t)bd;
		data_in_begin(c, c->cdb[4]);
	}
	emit(c, d, n);
	return 0;
}

/* The most significant bit in which a and b differ (they do). */
static unsigned top_diff_bit(uint8_t a, uint8_t b)
{
	return 31u - (unsigned)__builtin_clz((unsigned)(a ^ b));
}

/* A block descriptor in MODE SELECT (at byte `at` of the parameter list,
 * whose header gives its length at byte len_at) may only restate the block
 * size and the capacity (or give 0 blocks: keep the capacity). */
static uint32_t check_descriptor(struct cmd_ctx *c, const uint8_t *d, size_t at, size_t len,
				 size_t len_at, bool llba)
{
	uint8_t want[16] = { 0 };
	size_t half = llba ? 8 : 4;

	if (len == 0)
		return 0;
	if (len != (llba ? 16u : 8u))
		return invalid_param(c, (unsigned)len_at, 7);  /* BLOCK DESCRIPTOR LENGTH */
	block_descriptor(&c->lun->cfg, want, llba, false);
	/* Block length (and reserved bytes): the first byte that differs. */
	for (size_t i = half; i < 2 * half; i++)
		if (d[i] != want[i])
			return invalid_param(c, (unsigned)(at + i), top_diff_bit(d[i], want[i]));
	if (memcmp(d, want, half) && memcmp(d, (uint8_t[8]){ 0 }, half))
		return invalid_param(c, (unsigned)at, 7);      /* NUMBER OF BLOCKS */
	return 0;
}

/*
 * Checks one page of a MODE SELECT parameter list (at byte `at`, room bytes
 * left) against the current values cur: only changeable bits may differ
 * (the PS bit is ignored).  Takes its changeable parameters into *v and its
 * length into *len.
 */
static uint32_t take_page(struct cmd_ctx *c, size_t at, size_t room,
			  const struct mode_values *cur, struct mode_values *v, size_t *len)
{
	const uint8_t *p = c->buf + at;
	uint8_t want[HBK_MODE_PAGE_MAX] = { 0 }, mask[HBK_MODE_PAGE_MAX] = { 0 };
	const struct mode_page *pg;

	if (room < 2)
		return HBK_CC_PARAM_LENGTH;
	if (p[0] & 0x40)                                    /* SPF: no subpages */
		return invalid_param(c, (unsigned)at, 6);
	pg = find_page(p[0] & 0x3f);
	if (!pg)
		return invalid_param(c, (unsigned)at, 5);   /* PAGE CODE */
	if (p[1] != pg->len - 2)
		return invalid_param(c, (unsigned)at + 1, 7);       /* PAGE LENGTH */
	if (room < pg->len)
		return HBK_CC_PARAM_LENGTH;
	build_page(pg, cur, want, false);
	build_page(pg, cur, mask, true);
	for (size_t i = 2; i < pg->len; i++)
		if ((p[i] ^ want[i]) & ~mask[i])
			return invalid_param(c, (unsigned)(at + i),
					     top_diff_bit(p[i] & ~mask[i], want[i] & ~mask[i]));
	if (pg->take)
		pg->take(v, p);
	*len = pg->len;
	return 0;
}

/*
 * MODE SELECT: PF must be 1 (SPC page format) and SP 0, since there are no
 * saved pages to save to (SPC-5: INVALID FIELD IN CDB).
 */
uint32_t hbk_mode_select(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	bool ten = c->cdb[0] == HBK_SCSI_OP_MODE_SELECT10;
	uint32_t len = ten ? get_be16(c->cdb + 7) : c->cdb[4];
	size_t hdr = ten ? 8 : 4, bd, page_len;
	const uint8_t *p = c->buf;
	struct mode_values cur, v;
	uint32_t cc;

	if (!(c->cdb[1] & 0x10))
		return invalid_field(c, 1, 4);          /* PF */
	if (c->cdb[1] & 0x01)
		return invalid_field(c, 1, 0);          /* SP */
	if (len == 0)
		return 0;
	if (len < hdr)
		return HBK_CC_PARAM_LENGTH;
	if (len > c->out_len)
		return HBK_CC_INVALID_FIELD;
	bd = ten ? get_be16(p + 6) : p[3];
	if (hdr + bd > len)
		return HBK_CC_PARAM_LENGTH;
	cc = check_descriptor(c, p + hdr, hdr, bd, ten ? 6 : 3, ten && (p[4] & 0x01));
	if (cc)
		return cc;
	/* Under the lock, so that concurrent MODE SELECTs apply one by one. */
	pthread_mutex_lock(&lun->lock);
	cur = v = current_values(lun);
	for (size_t off = hdr + bd; off < len; off += page_len) {
		cc = take_page(c, off, len - off, &cur, &v, &page_len);
		if (cc)
			break;
	}
	if (!cc && v.wce != cur.wce) {
		/* The mode pages are shared: the other nexuses learn of it. */
		lun_state_set(lun, HBK_LUN_WCE, v.wce);
		hbk_ua_set_others_locked(lun, c->initiator, HBK_UA_MODE_CHANGED);
	}
	pthread_mutex_unlock(&lun->lock);
	if (!cc)
		c->bytes = len;
	return cc;
}
