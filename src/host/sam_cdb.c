/* SPDX-License-Identifier: MIT */
/*
 * CDB builders and response parsers of the host's SAM initiator (see
 * sam_cdb.h).  Pure functions over caller buffers: nothing here performs
 * I/O, allocates or keeps state, and no parser reads past the length given.
 */
#include "hbk/scsi.h"
#include "host/sam_cdb.h"

#include <errno.h>
#include <string.h>

/* ---- Builders ------------------------------------------------------------ */

int hbk_sam_cdb_test_unit_ready(uint8_t cdb[16])
{
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_TEST_UNIT_READY;
	return 6;
}

int hbk_sam_cdb_inquiry(uint8_t cdb[16], bool evpd, uint8_t page, uint16_t alloc_len)
{
	if (!evpd && page != 0)
		return -EINVAL;
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_INQUIRY;
	cdb[1] = evpd ? 0x01 : 0x00;
	cdb[2] = page;
	put_be16(cdb + 3, alloc_len);
	return 6;
}

int hbk_sam_cdb_report_luns(uint8_t cdb[16], uint8_t select_report, uint32_t alloc_len)
{
	if (select_report > 0x12 || (select_report > 0x02 && select_report < 0x10))
		return -EINVAL;
	if (alloc_len < 16)
		return -EINVAL;
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_REPORT_LUNS;
	cdb[2] = select_report;
	put_be32(cdb + 6, alloc_len);
	return 12;
}

int hbk_sam_cdb_read_capacity16(uint8_t cdb[16], uint32_t alloc_len)
{
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_SERVICE_ACTION_IN;
	cdb[1] = HBK_SAM_SA_READ_CAPACITY16;
	put_be32(cdb + 10, alloc_len);
	return 16;
}

int hbk_sam_cdb_read_capacity10(uint8_t cdb[16])
{
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_READ_CAPACITY10;
	return 10;
}

/* True when [lba, lba + nblocks) stays within the 64-bit LBA space. */
static bool range_fits(uint64_t lba, uint32_t nblocks)
{
	return nblocks == 0 || lba <= UINT64_MAX - (nblocks - 1u);
}

int hbk_sam_cdb_rw(uint8_t cdb[16], bool write, uint64_t lba, uint32_t nblocks, bool fua)
{
	if (nblocks == 0 || !range_fits(lba, nblocks))
		return -ERANGE;
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	if (lba <= UINT32_MAX && nblocks <= UINT16_MAX) {
		cdb[0] = write ? HBK_SAM_OP_WRITE10 : HBK_SAM_OP_READ10;
		cdb[1] = fua ? 0x08 : 0x00;
		put_be32(cdb + 2, (uint32_t)lba);
		put_be16(cdb + 7, (uint16_t)nblocks);
		return 10;
	}
	cdb[0] = write ? HBK_SAM_OP_WRITE16 : HBK_SAM_OP_READ16;
	cdb[1] = fua ? 0x08 : 0x00;
	put_be64(cdb + 2, lba);
	put_be32(cdb + 10, nblocks);
	return 16;
}

int hbk_sam_cdb_sync_cache16(uint8_t cdb[16], uint64_t lba, uint32_t nblocks)
{
	if (!range_fits(lba, nblocks))
		return -ERANGE;
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_SYNC_CACHE16;
	put_be64(cdb + 2, lba);
	put_be32(cdb + 10, nblocks);
	return 16;
}

int hbk_sam_cdb_unmap(uint8_t cdb[16], uint16_t param_len)
{
	if (param_len != 0 &&
	    (param_len < HBK_SAM_UNMAP_HDR_LEN ||
	     (param_len - HBK_SAM_UNMAP_HDR_LEN) % HBK_SAM_UNMAP_DESC_LEN != 0))
		return -EINVAL;
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_UNMAP;
	put_be16(cdb + 7, param_len);
	return 10;
}

int hbk_sam_unmap_param(uint8_t *buf, size_t size, const uint64_t *lba,
			const uint32_t *nblocks, unsigned count)
{
	if (count > 0 && (lba == NULL || nblocks == NULL))
		return -EINVAL;
	if (count > HBK_SAM_UNMAP_MAX_DESC)
		return -ERANGE;
	for (unsigned i = 0; i < count; i++)
		if (!range_fits(lba[i], nblocks[i]))
			return -ERANGE;

	size_t total = HBK_SAM_UNMAP_HDR_LEN + (size_t)count * HBK_SAM_UNMAP_DESC_LEN;
	if (buf == NULL || size < total)
		return -ENOSPC;

	memset(buf, 0, total);
	/* UNMAP DATA LENGTH counts the bytes after itself. */
	put_be16(buf + 0, (uint16_t)(total - 2));
	put_be16(buf + 2, (uint16_t)(total - HBK_SAM_UNMAP_HDR_LEN));
	for (unsigned i = 0; i < count; i++) {
		uint8_t *d = buf + HBK_SAM_UNMAP_HDR_LEN + (size_t)i * HBK_SAM_UNMAP_DESC_LEN;

		put_be64(d, lba[i]);
		put_be32(d + 8, nblocks[i]);
	}
	return (int)total;
}

int hbk_sam_cdb_request_sense(uint8_t cdb[16], bool desc, uint8_t alloc_len)
{
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_REQUEST_SENSE;
	cdb[1] = desc ? 0x01 : 0x00;
	cdb[4] = alloc_len;
	return 6;
}

int hbk_sam_cdb_mode_sense6(uint8_t cdb[16], uint8_t page, uint8_t subpage,
			    uint8_t alloc_len, bool dbd)
{
	if (page > 0x3f)
		return -EINVAL;
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_MODE_SENSE6;
	cdb[1] = dbd ? 0x08 : 0x00;
	cdb[2] = page;          /* page control 00b: current values */
	cdb[3] = subpage;
	cdb[4] = alloc_len;
	return 6;
}

int hbk_sam_cdb_mode_sense10(uint8_t cdb[16], uint8_t page, uint8_t subpage,
			     uint16_t alloc_len, bool dbd)
{
	if (page > 0x3f)
		return -EINVAL;
	memset(cdb, 0, HBK_SAM_CDB_MAX);
	cdb[0] = HBK_SAM_OP_MODE_SENSE10;
	cdb[1] = dbd ? 0x08 : 0x00;
	cdb[2] = page;
	cdb[3] = subpage;
	put_be16(cdb + 7, alloc_len);
	return 10;
}

/* ---- Parsers ------------------------------------------------------------- */

/*
 * Copies an n-byte space-padded ASCII field into dst (n + 1 bytes): NUL
 * bytes read as padding, other bytes outside printable ASCII as '?', and
 * trailing padding is trimmed.
 */
static void copy_ascii(char *dst, const uint8_t *src, size_t n)
{
	size_t end = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = src[i];

		if (c == 0)
			c = ' ';
		else if (c < 0x20 || c > 0x7e)
			c = '?';
		dst[i] = (char)c;
		if (c != ' ')
			end = i + 1;
	}
	dst[end] = '\0';
}

int hbk_sam_parse_inquiry(const uint8_t *buf, size_t len, struct hbk_sam_inquiry *out)
{
	if (buf == NULL || len < HBK_SAM_INQUIRY_STD_LEN)
		return -EINVAL;
	if ((size_t)buf[4] + 5 < HBK_SAM_INQUIRY_STD_LEN)
		return -EPROTO;

	out->qualifier = buf[0] >> 5;
	out->device_type = buf[0] & 0x1f;
	out->version = buf[2];
	out->cmdque = (buf[7] & 0x02) != 0;
	copy_ascii(out->vendor, buf + 8, 8);
	copy_ascii(out->product, buf + 16, 16);
	copy_ascii(out->revision, buf + 32, 4);
	return 0;
}

/*
 * Checks the 4-byte VPD header for `page` and returns the page length in
 * *plen.  Returns 0, -EINVAL when len < 4, -EPROTO for another page.
 */
static int vpd_header(const uint8_t *buf, size_t len, uint8_t page, size_t *plen)
{
	if (buf == NULL || len < 4)
		return -EINVAL;
	if (buf[1] != page)
		return -EPROTO;
	*plen = get_be16(buf + 2);
	return 0;
}

int hbk_sam_parse_vpd_pages(const uint8_t *buf, size_t len, uint8_t *pages,
			    unsigned max, unsigned *count)
{
	size_t plen;
	int rc = vpd_header(buf, len, HBK_SAM_VPD_SUPPORTED, &plen);

	if (rc)
		return rc;
	size_t n = plen < max ? plen : max;
	if (len - 4 < n || (n > 0 && pages == NULL))
		return -EINVAL;
	if (n > 0)
		memcpy(pages, buf + 4, n);
	*count = (unsigned)plen;
	return 0;
}

int hbk_sam_parse_vpd_serial(const uint8_t *buf, size_t len, char *out, size_t size)
{
	size_t plen;
	int rc = vpd_header(buf, len, HBK_SAM_VPD_SERIAL, &plen);

	if (rc)
		return rc;
	if (len - 4 < plen || out == NULL || size == 0)
		return -EINVAL;

	const uint8_t *s = buf + 4;
	size_t start = 0, end = plen;

	while (start < end && (s[start] == ' ' || s[start] == 0))
		start++;
	while (end > start && (s[end - 1] == ' ' || s[end - 1] == 0))
		end--;
	if (end - start >= size)
		return -ENOSPC;
	copy_ascii(out, s + start, end - start);
	return 0;
}

/* Rank of a designator type in the choice of the device id; 0 = unused. */
static int desig_rank(uint8_t type)
{
	switch (type) {
	case HBK_SAM_DESIG_NAA:   return 3;
	case HBK_SAM_DESIG_EUI64: return 2;
	case HBK_SAM_DESIG_T10:   return 1;
	default:                  return 0;
	}
}

/* True when a designator of this type may have this length (SPC-4 7.8.6). */
static bool desig_len_ok(uint8_t type, const uint8_t *d, size_t dlen)
{
	switch (type) {
	case HBK_SAM_DESIG_NAA:
		if (dlen == 0)
			return false;
		switch (d[0] >> 4) {
		case 2: case 3: case 5: return dlen == 8;
		case 6:                 return dlen == 16;
		default:                return dlen == 8 || dlen == 16;
		}
	case HBK_SAM_DESIG_EUI64:
		return dlen == 8 || dlen == 12 || dlen == 16;
	case HBK_SAM_DESIG_T10:
		return dlen >= 8;
	default:
		return true;
	}
}

static void put_hex(char *dst, const char *prefix, const uint8_t *d, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t p = strlen(prefix);

	memcpy(dst, prefix, p);
	for (size_t i = 0; i < n; i++) {
		dst[p + 2 * i] = hex[d[i] >> 4];
		dst[p + 2 * i + 1] = hex[d[i] & 0x0f];
	}
	dst[p + 2 * n] = '\0';
}

int hbk_sam_parse_vpd_devid(const uint8_t *buf, size_t len, struct hbk_sam_devid *out)
{
	size_t plen;
	int rc = vpd_header(buf, len, HBK_SAM_VPD_DEVID, &plen);

	if (rc)
		return rc;
	if (len - 4 < plen)
		return -EINVAL;

	const uint8_t *best = NULL;
	uint8_t best_type = 0;
	size_t best_len = 0;
	size_t off = 4, end = 4 + plen;

	while (off < end) {
		if (end - off < 4)
			return -EPROTO;
		const uint8_t *h = buf + off;
		size_t dlen = h[3];
		if (end - off - 4 < dlen)
			return -EPROTO;
		off += 4 + dlen;

		uint8_t assoc = (h[1] >> 4) & 0x03;
		uint8_t type = h[1] & 0x0f;
		int rank = desig_rank(type);
		if (assoc != 0 || rank == 0)
			continue;
		if (!desig_len_ok(type, h + 4, dlen))
			return -EPROTO;
		int best_rank = desig_rank(best_type);
		if (rank > best_rank || (rank == best_rank && dlen > best_len)) {
			best = h + 4;
			best_type = type;
			best_len = dlen;
		}
	}
	if (best == NULL)
		return -ENOENT;

	out->type = best_type;
	out->len = (uint8_t)best_len;
	if (best_type == HBK_SAM_DESIG_NAA) {
		put_hex(out->id, "naa.", best, best_len);
	} else if (best_type == HBK_SAM_DESIG_EUI64) {
		put_hex(out->id, "eui.", best, best_len);
	} else {
		memcpy(out->id, "t10.", 4);
		copy_ascii(out->id + 4, best, best_len);
	}
	return 0;
}

/* The 4-byte field at off, or 0 when the page ends before it does. */
static uint32_t field32(const uint8_t *buf, size_t avail, size_t off)
{
	return avail >= off + 4 ? get_be32(buf + off) : 0;
}

int hbk_sam_parse_vpd_block_limits(const uint8_t *buf, size_t len,
				   struct hbk_sam_block_limits *out)
{
	size_t plen;
	int rc = vpd_header(buf, len, HBK_SAM_VPD_BLOCK_LIMITS, &plen);

	if (rc)
		return rc;
	size_t avail = 4 + plen < len ? 4 + plen : len;

	memset(out, 0, sizeof(*out));
	out->opt_xfer_granularity = avail >= 8 ? get_be16(buf + 6) : 0;
	out->max_xfer_len = field32(buf, avail, 8);
	out->opt_xfer_len = field32(buf, avail, 12);
	out->max_unmap_lba_count = field32(buf, avail, 20);
	out->max_unmap_desc_count = field32(buf, avail, 24);
	out->opt_unmap_granularity = field32(buf, avail, 28);
	uint32_t uga = field32(buf, avail, 32);
	out->ugavalid = (uga & 0x80000000u) != 0;
	out->unmap_granularity_align = uga & 0x7fffffffu;
	out->max_write_same_len = avail >= 44 ? get_be64(buf + 36) : 0;
	return 0;
}

int hbk_sam_parse_read_capacity16(const uint8_t *buf, size_t len,
				  struct hbk_sam_capacity *out)
{
	if (buf == NULL || len < 12)
		return -EINVAL;
	uint64_t last = get_be64(buf);
	uint32_t bs = get_be32(buf + 8);
	if (last == UINT64_MAX || bs == 0)
		return -EPROTO;

	memset(out, 0, sizeof(*out));
	out->nblocks = last + 1;
	out->block_size = bs;
	if (len >= 16) {
		out->prot_en = (buf[12] & 0x01) != 0;
		out->p_type = (buf[12] >> 1) & 0x07;
		out->p_i_exponent = buf[13] >> 4;
		out->lbppbe = buf[13] & 0x0f;
		out->lbpme = (buf[14] & 0x80) != 0;
		out->lbprz = (buf[14] & 0x40) != 0;
		out->lowest_aligned = (uint16_t)((buf[14] & 0x3f) << 8 | buf[15]);
	}
	return 0;
}

int hbk_sam_parse_read_capacity10(const uint8_t *buf, size_t len,
				  struct hbk_sam_capacity *out)
{
	if (buf == NULL || len < HBK_SAM_RC10_LEN)
		return -EINVAL;
	uint32_t last = get_be32(buf);
	uint32_t bs = get_be32(buf + 4);
	if (bs == 0)
		return -EPROTO;
	if (last == UINT32_MAX)
		return -EOVERFLOW;

	memset(out, 0, sizeof(*out));
	out->nblocks = (uint64_t)last + 1;
	out->block_size = bs;
	return 0;
}

int hbk_sam_parse_report_luns(const uint8_t *buf, size_t len, uint64_t *luns,
			      unsigned max, unsigned *count)
{
	if (buf == NULL || len < 8)
		return -EINVAL;
	uint32_t list_len = get_be32(buf);
	if (list_len % 8 != 0)
		return -EPROTO;

	uint32_t total = list_len / 8;
	unsigned n = total < max ? total : max;
	if ((len - 8) / 8 < n || (n > 0 && luns == NULL))
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		luns[i] = hbk_scsi_lun_decode(buf + 8 + (size_t)i * 8);
	*count = total;
	return 0;
}
