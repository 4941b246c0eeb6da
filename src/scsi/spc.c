/* SPDX-License-Identifier: MIT */
/*
 * Primary commands of the block-target emulation (SPC-5): TEST UNIT READY,
 * REQUEST SENSE (a pending unit attention first, then the LUN's readiness),
 * INQUIRY with its VPD pages (supported pages, unit serial number, device
 * identification, and the SBC-4 block limits, block device characteristics
 * and logical block provisioning pages, which describe the LUN's
 * configuration and backend) and REPORT LUNS.
 */
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "scsi/scsi_priv.h"

#define HBK_PDT_DISK          0x00  /* peripheral qualifier 000b, direct access */
#define HBK_PDT_NO_LUN        0x7f  /* qualifier 011b, device type 1Fh */
#define HBK_ROTATION_NONE     0x0001
#define HBK_ROTATION_DISK     7200
#define HBK_INQUIRY_STD_LEN   96
#define HBK_VPD_MAX           256   /* the longest VPD page built */

/* Readiness is checked before any medium-access command runs (emul.c). */
uint32_t hbk_spc_test_unit_ready(struct cmd_ctx *c)
{
	(void)c;
	return 0;
}

uint32_t hbk_spc_request_sense(struct cmd_ctx *c)
{
	uint8_t sense[HBK_SCSI_SENSE_FIXED_LEN];
	bool desc = c->cdb[1] & 0x01;

	uint16_t ua = c->lun ? hbk_ua_take(c->lun, c->initiator) : 0;
	unsigned state = c->lun ? lun_state(c->lun) : 0;

	if (!c->lun) {
		hbk_scsi_sense_fixed(sense, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LUN_NOT_SUPPORTED);
	} else if (ua) {
		/* SPC-5 5.12: a pending unit attention is the sense data, and
		 * reporting it clears it. */
		hbk_scsi_sense_fixed(sense, HBK_SK_UNIT_ATTENTION, ua);
	} else if (state & (HBK_LUN_NO_MEDIUM | HBK_LUN_STOPPED)) {
		/* Pollable sense data (SPC-5 5.12.2, SBC-4 4.20): a LUN that
		 * cannot serve the medium says why, as TEST UNIT READY does. */
		hbk_scsi_sense_fixed(sense, HBK_SK_NOT_READY,
				     state & HBK_LUN_NO_MEDIUM ? HBK_ASC_MEDIUM_NOT_PRESENT
							       : HBK_ASC_NOT_READY_INIT_REQUIRED);
	} else {
		/* Every CHECK CONDITION carries its sense data (autosense, which
		 * every transport here delivers), and delivering it clears it:
		 * nothing is kept for a later REQUEST SENSE, so no nexus can be
		 * shown another's. */
		hbk_scsi_sense_fixed(sense, HBK_SK_NO_SENSE, 0);
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
		d[1] = lun->cfg.removable ? 0x80 : 0;   /* RMB */
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

/* VPD page builders: fill p (HBK_VPD_MAX bytes, zeroed), return the length. */

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
	const struct hbk_scsi_lun_cfg *cfg = &lun->cfg;

	p[4] = 0;                                    /* WSNZ 0: WRITE SAME of 0 blocks: to the end */
	p[5] = (uint8_t)lun_caw_limit(lun);          /* MAXIMUM COMPARE AND WRITE LENGTH */
	/* OPTIMAL TRANSFER LENGTH GRANULARITY: one physical block. */
	put_be16(p + 6, cfg->lbppbe ? (uint16_t)(1u << cfg->lbppbe) : 0);
	put_be32(p + 8, cfg->max_xfer_blocks);       /* MAXIMUM TRANSFER LENGTH */
	put_be32(p + 12, cfg->opt_xfer_blocks);      /* OPTIMAL TRANSFER LENGTH */
	if (lun_thin(lun)) {
		/* MAXIMUM UNMAP LBA COUNT (FFFFFFFFh: no limit), DESCRIPTOR COUNT */
		put_be32(p + 20, cfg->max_unmap_blocks ? cfg->max_unmap_blocks : UINT32_MAX);
		put_be32(p + 24, cfg->max_unmap_descs ? cfg->max_unmap_descs
						      : HBK_SCSI_MAX_UNMAP_DESC);
		put_be32(p + 28, cfg->unmap_granularity ? cfg->unmap_granularity
							: 1u << cfg->lbppbe);
		p[32] = 0x80;                        /* UGAVALID, alignment LBA 0 */
	}
	put_be64(p + 36, lun_ws_limit(lun));         /* MAXIMUM WRITE SAME LENGTH */
	/* WRITE ATOMIC(16): MAXIMUM ATOMIC TRANSFER LENGTH, ATOMIC ALIGNMENT,
	 * ATOMIC TRANSFER LENGTH GRANULARITY; no atomic boundaries (the two
	 * last fields 0). */
	put_be32(p + 44, cfg_atomic_limit(cfg));
	put_be32(p + 48, cfg->atomic_alignment);
	put_be32(p + 52, cfg->atomic_granularity);
	return 64;
}

static size_t vpd_characteristics(const struct hbk_scsi_lun *lun, uint8_t *p)
{
	put_be16(p + 4, lun->cfg.rotational ? HBK_ROTATION_DISK : HBK_ROTATION_NONE);
	return 64;
}

static size_t vpd_provisioning(const struct hbk_scsi_lun *lun, uint8_t *p)
{
	p[5] = 0x80;                    /* LBPU: UNMAP */
	if (lun_ws_unmaps(lun))
		p[5] |= 0x40 | 0x20;    /* LBPWS, LBPWS10: WRITE SAME with UNMAP */
	if (lun->cfg.lbprz)
		p[5] |= 0x04;           /* LBPRZ 001b: unmapped blocks read zeros */
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
		if (vpd_pages[i].code == code && (!vpd_pages[i].thin_only || lun_thin(lun)))
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

uint32_t hbk_spc_inquiry(struct cmd_ctx *c)
{
	uint8_t p[HBK_VPD_MAX] = { 0 };
	const struct vpd_page *page;
	bool evpd = c->cdb[1] & 0x01;
	size_t len;

	if (!evpd && c->cdb[2])         /* a page without EVPD */
		return invalid_field(c, 2, 7);
	if (evpd && !c->lun)
		return HBK_CC_LUN_NOT_SUPPORTED;
	data_in_begin(c, get_be16(c->cdb + 3));
	if (!evpd)
		return inquiry_standard(c);
	page = find_vpd(c->lun, c->cdb[2]);
	if (!page)
		return invalid_field(c, 2, 7);          /* PAGE CODE */
	len = page->build(c->lun, p);
	p[0] = HBK_PDT_DISK;
	p[1] = page->code;
	put_be16(p + 2, (uint16_t)(len - 4));
	emit(c, p, len);
	return 0;
}

uint32_t hbk_spc_report_luns(struct cmd_ctx *c)
{
	const struct hbk_scsi_target *t = c->t;
	uint32_t alloc_len = get_be32(c->cdb + 6);
	uint8_t select = c->cdb[2], hdr[8] = { 0 }, entry[8];
	uint32_t limit = 0, count = 0;

	/* 0: all LUNs, 1: well-known LUNs only (there are none), 2: both. */
	if (select > 2)
		return invalid_field(c, 2, 7);          /* SELECT REPORT */
	if (alloc_len < 16)
		return invalid_field(c, 6, 7);          /* ALLOCATION LENGTH */
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
