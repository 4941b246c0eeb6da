/* SPDX-License-Identifier: MIT */
/*
 * SCSI block-target emulation shared by every driver: checks a CDB against
 * SPC-4/SBC-3, answers the inquiry and capacity commands itself and turns
 * READ/WRITE/SYNCHRONIZE CACHE/UNMAP into calls on the LUN's block backend.
 * Data moves straight between the initiator's buffer and the backend.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "hbk/scsi.h"
#include "scsi/scsi_priv.h"

/*
 * A command handler answers 0 for GOOD or a CHECK CONDITION packed as
 * (sense key << 16 | ASC << 8 | ASCQ); no handler ever fails with NO SENSE,
 * so 0 is never ambiguous.
 */
#define HBK_CC(key, asc_ascq) ((uint32_t)(key) << 16 | (uint32_t)(asc_ascq))
#define HBK_CC_INVALID_OPCODE \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_OPCODE)
#define HBK_CC_INVALID_FIELD \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_CDB)
#define HBK_CC_INVALID_PARAM \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM)
#define HBK_CC_LBA_OUT_OF_RANGE \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE)
#define HBK_CC_LUN_NOT_SUPPORTED \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LUN_NOT_SUPPORTED)

#define HBK_CONTROL_NACA      0x04  /* control byte: ACA is not supported */
#define HBK_PDT_DISK          0x00  /* peripheral qualifier 000b, direct access */
#define HBK_PDT_NO_LUN        0x7f  /* qualifier 011b, device type 1Fh */
#define HBK_DEVSPEC_DPOFUA    0x10  /* mode parameter header: DPO and FUA honoured */
#define HBK_ROTATION_NONE     0x0001
#define HBK_ROTATION_DISK     7200
#define HBK_INQUIRY_STD_LEN   96
#define HBK_PAGE_MAX          256   /* the longest VPD or mode reply built */

/* One command in flight: where its data goes and what it has moved. */
struct cmd_ctx {
	const struct hbk_scsi_target *t;
	struct hbk_scsi_lun *lun;   /* NULL: the addressed LUN does not exist */
	const uint8_t *cdb;
	uint8_t *buf;
	uint64_t in_len;            /* data-in room; 0 unless HBK_DIR_READ */
	uint64_t out_len;           /* data-out supplied; 0 unless HBK_DIR_WRITE */
	uint64_t cap;               /* data-in limit: allocation length and room */
	uint64_t bytes;             /* moved into or out of buf */
};

static bool thin(const struct hbk_scsi_lun *lun)
{
	return lun->cfg.ops->unmap != NULL;
}

/* ---- Data-in replies, truncated to the allocation length ----------------- */

static void data_in_begin(struct cmd_ctx *c, uint64_t alloc_len)
{
	c->cap = alloc_len < c->in_len ? alloc_len : c->in_len;
	c->bytes = 0;
}

/* Appends reply bytes; whatever lies beyond the limit is dropped. */
static void emit(struct cmd_ctx *c, const void *data, size_t len)
{
	uint64_t room = c->cap - c->bytes;

	if (len > room)
		len = (size_t)room;
	if (len == 0)
		return;
	memcpy(c->buf + c->bytes, data, len);
	c->bytes += len;
}

/* ---- Shared checks -------------------------------------------------------- */

/* LBA OUT OF RANGE unless lba..lba+nblocks-1 lies on the medium. */
static uint32_t check_range(const struct hbk_scsi_lun *lun, uint64_t lba, uint64_t nblocks)
{
	uint64_t capacity = lun->cfg.nblocks;

	if (lba > capacity || nblocks > capacity - lba)
		return HBK_CC_LBA_OUT_OF_RANGE;
	return 0;
}

/* The sense a backend -errno turns into (see struct hbk_scsi_backend_ops). */
static uint32_t backend_error(int err, bool write)
{
	switch (err) {
	case -EIO:
		return HBK_CC(HBK_SK_MEDIUM_ERROR,
			      write ? HBK_ASC_WRITE_ERROR : HBK_ASC_UNRECOVERED_READ_ERROR);
	case -ENOSPC:
		return HBK_CC(HBK_SK_DATA_PROTECT, HBK_ASC_SPACE_ALLOC_FAILED);
	default:
		return HBK_CC(HBK_SK_HARDWARE_ERROR, HBK_ASC_INTERNAL_TARGET_FAILURE);
	}
}

/*
 * The block range of READ/WRITE 6/10/12/16 and SYNCHRONIZE CACHE 10/16.
 * The 10-, 12- and 16-byte CDBs all carry the LBA from byte 2 and the
 * length right after it, and FUA and RD/WRPROTECT in byte 1.
 */
struct block_range {
	uint64_t lba;
	uint32_t nblocks;
	bool     fua;
	uint8_t  protect;
};

static struct block_range decode_range(const uint8_t *cdb)
{
	struct block_range r = { 0 };

	switch (cdb[0] >> 5) { /* the group code fixes the CDB layout */
	case 0: /* 6-byte: 21-bit LBA, and length 0 means 256 blocks */
		r.lba = get_be24(cdb + 1) & 0x1fffff;
		r.nblocks = cdb[4] ? cdb[4] : 256;
		return r;
	case 1: /* 10-byte */
		r.lba = get_be32(cdb + 2);
		r.nblocks = get_be16(cdb + 7);
		break;
	case 5: /* 12-byte */
		r.lba = get_be32(cdb + 2);
		r.nblocks = get_be32(cdb + 6);
		break;
	default: /* 16-byte */
		r.lba = get_be64(cdb + 2);
		r.nblocks = get_be32(cdb + 10);
		break;
	}
	r.fua = cdb[1] & 0x08;
	r.protect = cdb[1] >> 5;
	return r;
}

/* ---- Commands -------------------------------------------------------------- */

static uint32_t test_unit_ready(struct cmd_ctx *c)
{
	(void)c;
	return 0;
}

static uint32_t request_sense(struct cmd_ctx *c)
{
	uint8_t sense[HBK_SCSI_SENSE_FIXED_LEN];
	bool desc = c->cdb[1] & 0x01;

	if (!c->lun) {
		hbk_scsi_sense_fixed(sense, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LUN_NOT_SUPPORTED);
	} else {
		pthread_mutex_lock(&c->lun->lock);
		if (c->lun->sense_len)
			memcpy(sense, c->lun->sense, sizeof sense);
		else
			hbk_scsi_sense_fixed(sense, HBK_SK_NO_SENSE, 0);
		c->lun->sense_len = 0;
		pthread_mutex_unlock(&c->lun->lock);
	}
	data_in_begin(c, c->cdb[4]);
	if (desc) {
		/* Descriptor format: the same key and codes, no descriptors. */
		uint8_t d[8] = { 0x72, sense[2] & 0x0f, sense[12], sense[13] };

		emit(c, d, sizeof d);
	} else {
		emit(c, sense, sizeof sense);
	}
	return 0;
}

static void copy_padded(char *dst, size_t size, const char *src)
{
	size_t len = src ? strnlen(src, size) : 0;

	memcpy(dst, src ? src : "", len);
	memset(dst + len, ' ', size - len);
}

static size_t serial_len(const struct hbk_scsi_lun *lun)
{
	const char *s = lun->cfg.serial;

	return s ? strnlen(s, HBK_SCSI_SERIAL_MAX) : 0;
}

static uint32_t inquiry_standard(struct cmd_ctx *c)
{
	uint8_t d[HBK_INQUIRY_STD_LEN] = { 0 };
	const struct hbk_scsi_lun *lun = c->lun;

	d[0] = lun ? HBK_PDT_DISK : HBK_PDT_NO_LUN;
	d[2] = 0x06;                    /* VERSION: SPC-4 */
	d[3] = 0x02;                    /* RESPONSE DATA FORMAT 2 */
	d[4] = sizeof d - 5;            /* ADDITIONAL LENGTH */
	if (lun) {
		d[7] = 0x02;            /* CMDQUE */
		memcpy(d + 8, lun->vendor, sizeof lun->vendor);
		memcpy(d + 16, lun->product, sizeof lun->product);
		memcpy(d + 32, lun->revision, sizeof lun->revision);
	} else {
		memset(d + 8, ' ', 28);
	}
	put_be16(d + 58, 0x00a0);       /* version descriptors: SAM-5, */
	put_be16(d + 60, 0x0460);       /* SPC-4, */
	put_be16(d + 62, 0x04c0);       /* SBC-3 */
	emit(c, d, sizeof d);
	return 0;
}

/* VPD page builders: fill p (HBK_PAGE_MAX bytes, zeroed), return the length. */

static size_t vpd_supported(const struct hbk_scsi_lun *lun, uint8_t *p);

static size_t vpd_serial(const struct hbk_scsi_lun *lun, uint8_t *p)
{
	size_t len = serial_len(lun);

	memcpy(p + 4, lun->cfg.serial ? lun->cfg.serial : "", len);
	return 4 + len;
}

static size_t vpd_device_id(const struct hbk_scsi_lun *lun, uint8_t *p)
{
	size_t slen = serial_len(lun);
	uint8_t *d = p + 4;

	/* NAA IEEE Registered Extended (6h), binary, associated with the LUN. */
	d[0] = 0x01;                    /* code set: binary */
	d[1] = 0x03;                    /* association: LUN; type: NAA */
	d[3] = 16;
	put_be64(d + 4, (lun->cfg.naa & ~(0xfull << 60)) | 0x6ull << 60);
	d += 4 + 16;

	/* T10 vendor identification: vendor, then the unit serial number. */
	d[0] = 0x02;                    /* code set: ASCII */
	d[1] = 0x01;                    /* association: LUN; type: T10 vendor id */
	d[3] = (uint8_t)(8 + slen);
	memcpy(d + 4, lun->vendor, 8);
	memcpy(d + 12, lun->cfg.serial ? lun->cfg.serial : "", slen);
	d += 4 + 8 + slen;
	return (size_t)(d - p);
}

static size_t vpd_block_limits(const struct hbk_scsi_lun *lun, uint8_t *p)
{
	put_be32(p + 8, lun->cfg.max_xfer_blocks);   /* MAXIMUM TRANSFER LENGTH */
	put_be32(p + 12, lun->cfg.opt_xfer_blocks);  /* OPTIMAL TRANSFER LENGTH */
	if (thin(lun)) {
		put_be32(p + 20, UINT32_MAX);        /* MAXIMUM UNMAP LBA COUNT: no limit */
		put_be32(p + 24, HBK_SCSI_MAX_UNMAP_DESC);
		put_be32(p + 28, 1);                 /* OPTIMAL UNMAP GRANULARITY */
	}
	/* MAXIMUM WRITE SAME LENGTH (bytes 36..43) stays 0: no WRITE SAME. */
	return 64;
}

static size_t vpd_characteristics(const struct hbk_scsi_lun *lun, uint8_t *p)
{
	put_be16(p + 4, lun->cfg.rotational ? HBK_ROTATION_DISK : HBK_ROTATION_NONE);
	return 64;
}

static size_t vpd_provisioning(const struct hbk_scsi_lun *lun, uint8_t *p)
{
	(void)lun;
	p[5] = 0x80 | 0x04;             /* LBPU, LBPRZ */
	p[6] = 0x02;                    /* PROVISIONING TYPE: thin */
	return 8;
}

static const struct vpd_page {
	uint8_t code;
	bool    thin_only;              /* offered only when the backend unmaps */
	size_t (*build)(const struct hbk_scsi_lun *lun, uint8_t *p);
} vpd_pages[] = {
	{ 0x00, false, vpd_supported },
	{ 0x80, false, vpd_serial },
	{ 0x83, false, vpd_device_id },
	{ 0xb0, false, vpd_block_limits },
	{ 0xb1, false, vpd_characteristics },
	{ 0xb2, true,  vpd_provisioning },
};

#define HBK_VPD_COUNT (sizeof vpd_pages / sizeof vpd_pages[0])

static const struct vpd_page *find_vpd(const struct hbk_scsi_lun *lun, uint8_t code)
{
	for (size_t i = 0; i < HBK_VPD_COUNT; i++)
		if (vpd_pages[i].code == code && (!vpd_pages[i].thin_only || thin(lun)))
			return &vpd_pages[i];
	return NULL;
}

static size_t vpd_supported(const struct hbk_scsi_lun *lun, uint8_t *p)
{
	size_t n = 4;

	for (size_t i = 0; i < HBK_VPD_COUNT; i++)
		if (find_vpd(lun, vpd_pages[i].code))
			p[n++] = vpd_pages[i].code;
	return n;
}

static uint32_t inquiry(struct cmd_ctx *c)
{
	uint8_t p[HBK_PAGE_MAX] = { 0 };
	const struct vpd_page *page;
	bool evpd = c->cdb[1] & 0x01;
	size_t len;

	if ((c->cdb[1] & 0x02) || (!evpd && c->cdb[2])) /* CMDDT; page without EVPD */
		return HBK_CC_INVALID_FIELD;
	if (evpd && !c->lun)
		return HBK_CC_LUN_NOT_SUPPORTED;
	data_in_begin(c, get_be16(c->cdb + 3));
	if (!evpd)
		return inquiry_standard(c);
	page = find_vpd(c->lun, c->cdb[2]);
	if (!page)
		return HBK_CC_INVALID_FIELD;
	len = page->build(c->lun, p);
	p[0] = HBK_PDT_DISK;
	p[1] = page->code;
	put_be16(p + 2, (uint16_t)(len - 4));
	emit(c, p, len);
	return 0;
}

static uint32_t report_luns(struct cmd_ctx *c)
{
	const struct hbk_scsi_target *t = c->t;
	uint32_t alloc_len = get_be32(c->cdb + 6);
	uint8_t select = c->cdb[2], hdr[8] = { 0 }, entry[8];
	uint32_t limit = 0, count = 0;

	/* 0: all LUNs, 1: well-known LUNs only (there are none), 2: both. */
	if (alloc_len < 16 || select > 2)
		return HBK_CC_INVALID_FIELD;
	if (t && t->luns && select != 1)
		limit = t->lun_count < HBK_SCSI_LUN_FLAT_MAX ? t->lun_count : HBK_SCSI_LUN_FLAT_MAX;
	for (uint32_t i = 0; i < limit; i++)
		count += t->luns[i] != NULL;
	put_be32(hdr, count * 8);       /* LUN LIST LENGTH */
	data_in_begin(c, alloc_len);
	emit(c, hdr, sizeof hdr);
	for (uint32_t i = 0; i < limit; i++) {
		if (!t->luns[i])
			continue;
		hbk_scsi_lun_encode(i, entry);
		emit(c, entry, sizeof entry);
	}
	return 0;
}

static uint32_t read_capacity10(struct cmd_ctx *c)
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

static uint32_t service_action_in16(struct cmd_ctx *c)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	uint8_t d[32] = { 0 };

	if ((c->cdb[1] & 0x1f) != HBK_SCSI_SA_READ_CAPACITY16)
		return HBK_CC_INVALID_FIELD;
	put_be64(d, cfg->nblocks - 1);
	put_be32(d + 8, cfg->block_size);
	/* d[13]: LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT 0. */
	if (thin(c->lun))
		d[14] = 0x80 | 0x40;    /* LBPME, LBPRZ */
	data_in_begin(c, get_be32(c->cdb + 10));
	emit(c, d, sizeof d);
	return 0;
}

static uint32_t read_write(struct cmd_ctx *c, bool write)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	struct block_range r = decode_range(c->cdb);
	uint64_t len = (uint64_t)r.nblocks * cfg->block_size;
	uint32_t cc;
	int err;

	if (r.protect)                  /* no protection information */
		return HBK_CC_INVALID_FIELD;
	cc = check_range(c->lun, r.lba, r.nblocks);
	if (cc)
		return cc;
	if (cfg->max_xfer_blocks && r.nblocks > cfg->max_xfer_blocks)
		return HBK_CC_INVALID_FIELD;
	if (r.nblocks == 0)
		return 0;
	if (len > (write ? c->out_len : c->in_len))
		return HBK_CC_INVALID_FIELD;
	if (write)
		err = cfg->ops->write(cfg->ctx, r.lba, r.nblocks, c->buf, r.fua);
	else
		err = cfg->ops->read(cfg->ctx, r.lba, r.nblocks, c->buf);
	if (err)
		return backend_error(err, write);
	c->bytes = len;
	return 0;
}

static uint32_t read_blocks(struct cmd_ctx *c)
{
	return read_write(c, false);
}

static uint32_t write_blocks(struct cmd_ctx *c)
{
	return read_write(c, true);
}

static uint32_t sync_cache(struct cmd_ctx *c)
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

static uint32_t unmap(struct cmd_ctx *c)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	uint16_t param_len = get_be16(c->cdb + 7);
	const uint8_t *desc;
	size_t count;
	uint32_t cc;
	int err;

	if (!thin(c->lun))
		return HBK_CC_INVALID_OPCODE;
	if (c->cdb[1] & 0x01)           /* ANCHOR */
		return HBK_CC_INVALID_FIELD;
	if (param_len == 0)
		return 0;
	if (param_len < 8)
		return HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_PARAM_LIST_LENGTH_ERROR);
	if (param_len > c->out_len)
		return HBK_CC_INVALID_FIELD;
	/* A descriptor cut short by either length is ignored, as SBC-3 asks. */
	count = get_be16(c->buf + 2);
	if (count > param_len - 8u)
		count = param_len - 8u;
	count /= 16;
	if (count > HBK_SCSI_MAX_UNMAP_DESC)
		return HBK_CC_INVALID_PARAM;
	desc = c->buf + 8;
	/* Check every descriptor before unmapping any. */
	for (size_t i = 0; i < count; i++) {
		cc = check_range(c->lun, get_be64(desc + 16 * i), get_be32(desc + 16 * i + 8));
		if (cc)
			return cc;
	}
	for (size_t i = 0; i < count; i++) {
		uint32_t nblocks = get_be32(desc + 16 * i + 8);

		if (nblocks == 0)
			continue;
		err = cfg->ops->unmap(cfg->ctx, get_be64(desc + 16 * i), nblocks);
		if (err)
			return backend_error(err, true);
	}
	c->bytes = param_len;
	return 0;
}

/* Mode page builders: fill p (zeroed) unless only the change masks are
 * asked for, which are all zero because no parameter can be changed. */

static size_t mode_caching(const struct hbk_scsi_lun *lun, uint8_t *p, bool masks)
{
	p[0] = 0x08;
	p[1] = 0x12;
	if (!masks && lun->cfg.write_cache)
		p[2] = 0x04;            /* WCE */
	return 20;
}

static size_t mode_control(const struct hbk_scsi_lun *lun, uint8_t *p, bool masks)
{
	(void)lun;
	p[0] = 0x0a;
	p[1] = 0x0a;
	if (!masks)
		p[3] = 0x10;            /* QUEUE ALGORITHM MODIFIER: unrestricted */
	return 12;
}

static const struct mode_page {
	uint8_t code;
	size_t (*build)(const struct hbk_scsi_lun *lun, uint8_t *p, bool masks);
} mode_pages[] = {
	{ 0x08, mode_caching },
	{ 0x0a, mode_control },
};

static uint32_t mode_sense(struct cmd_ctx *c, bool ten)
{
	const struct hbk_scsi_lun_cfg *cfg = &c->lun->cfg;
	uint8_t d[HBK_PAGE_MAX] = { 0 };
	bool dbd = c->cdb[1] & 0x08;
	unsigned pc = c->cdb[2] >> 6, code = c->cdb[2] & 0x3f, subpage = c->cdb[3];
	size_t n = ten ? 8 : 4;
	bool found = false;

	if (pc == 3)                    /* saved values */
		return HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_SAVING_PARAMS_NOT_SUPPORTED);
	if (subpage && !(code == 0x3f && subpage == 0xff))
		return HBK_CC_INVALID_FIELD;
	if (!dbd) {                     /* one short LBA block descriptor */
		put_be32(d + n, cfg->nblocks > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->nblocks);
		put_be24(d + n + 5, cfg->block_size);
		n += 8;
	}
	for (size_t i = 0; i < sizeof mode_pages / sizeof mode_pages[0]; i++) {
		if (code != 0x3f && code != mode_pages[i].code)
			continue;
		n += mode_pages[i].build(c->lun, d + n, pc == 1);
		found = true;
	}
	if (!found)
		return HBK_CC_INVALID_FIELD;
	if (ten) {
		put_be16(d, (uint16_t)(n - 2));
		d[3] = HBK_DEVSPEC_DPOFUA;
		put_be16(d + 6, dbd ? 0 : 8);
		data_in_begin(c, get_be16(c->cdb + 7));
	} else {
		d[0] = (uint8_t)(n - 1);
		d[2] = HBK_DEVSPEC_DPOFUA;
		d[3] = dbd ? 0 : 8;
		data_in_begin(c, c->cdb[4]);
	}
	emit(c, d, n);
	return 0;
}

static uint32_t mode_sense6(struct cmd_ctx *c)
{
	return mode_sense(c, false);
}

static uint32_t mode_sense10(struct cmd_ctx *c)
{
	return mode_sense(c, true);
}

/* ---- Dispatch ------------------------------------------------------------- */

static const struct command {
	uint8_t cdb_len;
	bool    any_lun;                /* also served when the LUN does not exist */
	uint32_t (*run)(struct cmd_ctx *c);
} commands[256] = {
	[HBK_SCSI_OP_TEST_UNIT_READY]     = { 6,  false, test_unit_ready },
	[HBK_SCSI_OP_REQUEST_SENSE]       = { 6,  true,  request_sense },
	[HBK_SCSI_OP_READ6]               = { 6,  false, read_blocks },
	[HBK_SCSI_OP_WRITE6]              = { 6,  false, write_blocks },
	[HBK_SCSI_OP_INQUIRY]             = { 6,  true,  inquiry },
	[HBK_SCSI_OP_MODE_SENSE6]         = { 6,  false, mode_sense6 },
	[HBK_SCSI_OP_READ_CAPACITY10]     = { 10, false, read_capacity10 },
	[HBK_SCSI_OP_READ10]              = { 10, false, read_blocks },
	[HBK_SCSI_OP_WRITE10]             = { 10, false, write_blocks },
	[HBK_SCSI_OP_SYNC_CACHE10]        = { 10, false, sync_cache },
	[HBK_SCSI_OP_UNMAP]               = { 10, false, unmap },
	[HBK_SCSI_OP_MODE_SENSE10]        = { 10, false, mode_sense10 },
	[HBK_SCSI_OP_READ16]              = { 16, false, read_blocks },
	[HBK_SCSI_OP_WRITE16]             = { 16, false, write_blocks },
	[HBK_SCSI_OP_SYNC_CACHE16]        = { 16, false, sync_cache },
	[HBK_SCSI_OP_SERVICE_ACTION_IN16] = { 16, false, service_action_in16 },
	[HBK_SCSI_OP_REPORT_LUNS]         = { 12, true,  report_luns },
	[HBK_SCSI_OP_READ12]              = { 12, false, read_blocks },
	[HBK_SCSI_OP_WRITE12]             = { 12, false, write_blocks },
};

static uint32_t dispatch(struct cmd_ctx *c, unsigned cdb_len)
{
	const struct command *cmd;

	if (!c->cdb || cdb_len == 0)
		return HBK_CC_INVALID_OPCODE;
	cmd = &commands[c->cdb[0]];
	if (!c->lun && !cmd->any_lun)
		return HBK_CC_LUN_NOT_SUPPORTED;
	if (!cmd->run)
		return HBK_CC_INVALID_OPCODE;
	if (cdb_len < cmd->cdb_len || (c->cdb[cmd->cdb_len - 1] & HBK_CONTROL_NACA))
		return HBK_CC_INVALID_FIELD;
	return cmd->run(c);
}

void hbk_scsi_execute(struct hbk_scsi_target *t, uint64_t lun,
		      const uint8_t *cdb, unsigned cdb_len,
		      void *buf, uint64_t buf_len, enum hbk_dir dir,
		      struct hbk_scsi_reply *out)
{
	struct cmd_ctx c = {
		.t = t,
		.lun = t && t->luns && lun < t->lun_count ? t->luns[lun] : NULL,
		.cdb = cdb,
		.buf = buf,
		.in_len = buf && dir == HBK_DIR_READ ? buf_len : 0,
		.out_len = buf && dir == HBK_DIR_WRITE ? buf_len : 0,
	};
	uint32_t cc;

	memset(out, 0, offsetof(struct hbk_scsi_reply, sense));
	cc = dispatch(&c, cdb_len);
	if (cc == 0) {
		out->status = HBK_STATUS_GOOD;
		out->bytes = c.bytes;
		return;
	}
	out->status = HBK_STATUS_CHECK_CONDITION;
	out->sense_len = (uint8_t)hbk_scsi_sense_fixed(out->sense, (uint8_t)(cc >> 16),
						       (uint16_t)cc);
	if (c.lun) {
		pthread_mutex_lock(&c.lun->lock);
		memcpy(c.lun->sense, out->sense, HBK_SCSI_SENSE_FIXED_LEN);
		c.lun->sense_len = HBK_SCSI_SENSE_FIXED_LEN;
		pthread_mutex_unlock(&c.lun->lock);
	}
}

/* ---- LUN lifetime ----------------------------------------------------------- */

int hbk_scsi_lun_init(struct hbk_scsi_lun *lun, const struct hbk_scsi_lun_cfg *cfg)
{
	uint32_t bs;

	if (!lun || !cfg || !cfg->ops || !cfg->ops->read || !cfg->ops->write)
		return -EINVAL;
	bs = cfg->block_size;
	if (bs < 512 || bs > 65536 || (bs & (bs - 1)) || cfg->nblocks == 0)
		return -EINVAL;
	memset(lun, 0, sizeof *lun);
	lun->cfg = *cfg;
	copy_padded(lun->vendor, sizeof lun->vendor, cfg->vendor);
	copy_padded(lun->product, sizeof lun->product, cfg->product);
	copy_padded(lun->revision, sizeof lun->revision, cfg->revision);
	return -pthread_mutex_init(&lun->lock, NULL);
}

void hbk_scsi_lun_fini(struct hbk_scsi_lun *lun)
{
	pthread_mutex_destroy(&lun->lock);
}
