/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness of the SCSI block-target emulation (src/scsi): one
 * input is a sequence of commands against a fresh target of two LUNs (a
 * thin 512-byte one and a thick 4096-byte one) with a hole at LUN 1, from
 * four initiators, so persistent reservations, RESERVE(6), MODE SELECT and
 * unit attentions carry state from one command to the next.  Each record
 * is a header byte, a 16-bit buffer length, the CDB and, for a data-out
 * command, its data; the buffer is allocated to its exact length so the
 * sanitizers catch any access past it.  Every reply must be well formed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "hbk/scsi.h"

#define BLOCKS 64u

struct disk {
	uint8_t *mem;
	uint32_t bs;
};

static int d_read(void *ctx, uint64_t lba, uint32_t n, void *buf)
{
	struct disk *d = ctx;
	if (lba + n > BLOCKS)
		abort();   /* the emulation checks the range */
	memcpy(buf, d->mem + lba * d->bs, (size_t)n * d->bs);
	return 0;
}

static int d_write(void *ctx, uint64_t lba, uint32_t n, const void *buf, bool fua)
{
	struct disk *d = ctx;
	(void)fua;
	if (lba + n > BLOCKS)
		abort();
	memcpy(d->mem + lba * d->bs, buf, (size_t)n * d->bs);
	return 0;
}

static int d_unmap(void *ctx, uint64_t lba, uint64_t n)
{
	struct disk *d = ctx;
	if (lba + n > BLOCKS)
		abort();
	memset(d->mem + lba * d->bs, 0, n * d->bs);
	return 0;
}

static int d_flush(void *ctx)
{
	(void)ctx;
	return 0;
}

static const struct hbk_scsi_backend_ops thin_ops = {
	.read = d_read, .write = d_write, .flush = d_flush, .unmap = d_unmap,
};
static const struct hbk_scsi_backend_ops thick_ops = { .read = d_read, .write = d_write };

static uint8_t mem512[BLOCKS * 512], mem4k[BLOCKS * 4096];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned cdb_lens[] = { 6, 10, 12, 16 };
	struct disk disks[2] = { { mem512, 512 }, { mem4k, 4096 } };
	struct hbk_scsi_lun luns[2];
	struct hbk_scsi_lun *lp[3] = { &luns[0], NULL, &luns[1] };
	memset(mem512, 0, sizeof(mem512));   /* each input starts from the same media */
	memset(mem4k, 0, sizeof(mem4k));
	for (int i = 0; i < 2; i++) {
		struct hbk_scsi_lun_cfg cfg = {
			.vendor = "FUZZ", .product = "DISK", .revision = "1", .serial = "F1",
			.naa = 0x6000000000000001ull, .block_size = disks[i].bs, .nblocks = BLOCKS,
			.max_xfer_blocks = 32, .ops = i ? &thick_ops : &thin_ops, .ctx = &disks[i],
			.lbprz = true, .max_unmap_blocks = 16, .max_unmap_descs = 4,
			.max_write_same_blocks = 16, .removable = i, .lbppbe = i ? 0 : 3,
			.max_atomic_blocks = 8, .atomic_alignment = i ? 0 : 2,
			.atomic_granularity = i ? 0 : 2,
		};
		if (hbk_scsi_lun_init(&luns[i], &cfg))
			abort();
	}
	struct hbk_scsi_target t = { .lun_count = 3, .luns = lp };

	size_t pos = 0;
	while (pos + 3 <= size) {
		uint8_t h = data[pos];
		size_t buf_len = (size_t)data[pos + 1] << 8 | data[pos + 2];
		pos += 3;
		unsigned cdb_len = cdb_lens[h & 3];
		if (size - pos < cdb_len)
			break;
		uint8_t cdb[16];
		memcpy(cdb, data + pos, cdb_len);
		pos += cdb_len;
		enum hbk_dir dir = (h >> 2 & 3) == 1 ? HBK_DIR_WRITE :
				   (h >> 2 & 3) == 2 ? HBK_DIR_READ : HBK_DIR_NONE;
		if ((h >> 2 & 3) == 3) {
			/* Task management between commands. */
			if (h & 0x80)
				hbk_scsi_target_reset(&t);
			else
				hbk_scsi_nexus_loss(&t, h >> 4 & 3);
			continue;
		}
		if (dir == HBK_DIR_NONE)
			buf_len = buf_len & 0xff;   /* a short buffer with no direction */
		uint8_t *buf = malloc(buf_len ? buf_len : 1);
		if (!buf)
			abort();
		if (dir == HBK_DIR_WRITE) {
			size_t have = HBK_MIN(buf_len, size - pos);
			memcpy(buf, data + pos, have);
			memset(buf + have, 0, buf_len - have);
			pos += have;
		} else {
			memset(buf, 0xa5, buf_len);
		}
		struct hbk_scsi_req req = {
			.initiator = h >> 4 & 3, .lun = h >> 6 & 3, .cdb = cdb, .cdb_len = cdb_len,
			.buf = buf_len ? buf : NULL, .buf_len = buf_len, .dir = dir,
		};
		struct hbk_scsi_reply out;
		hbk_scsi_exec(&t, &req, &out);
		if (out.bytes > buf_len)
			abort();
		if (out.status == HBK_STATUS_CHECK_CONDITION) {
			if (out.sense_len < 8 || ((out.sense[0] & 0x7f) != 0x70 && (out.sense[0] & 0x7f) != 0x72))
				abort();
		} else if (out.sense_len) {
			abort();
		}
		free(buf);
	}
	for (int i = 0; i < 2; i++)
		hbk_scsi_lun_fini(&luns[i]);
	return 0;
}
