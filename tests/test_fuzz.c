/* SPDX-License-Identifier: MIT */
/*
 * Deterministic randomized tests of everything that parses bytes it cannot
 * trust: the SCSI emulation (malformed CDBs, short buffers, wrong
 * directions), message framing on a real SEQPACKET socket, and the SAM
 * layer's response parsers.  Buffers are allocated to their exact length so
 * the sanitizers catch any read or write past them.  HBK_FUZZ_ITERS scales
 * the run (default 20000 per test, 2000 under TSan).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/common.h"
#include "hbk/scsi.h"
#include "host/sam_cdb.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* These tests run on one thread, so ThreadSanitizer has nothing to find in
 * them: its build runs a tenth of the iterations, the plain and ASan+UBSan
 * builds all of them. */
#ifdef __SANITIZE_THREAD__
#define ITERS_DEFAULT 2000
#else
#define ITERS_DEFAULT 20000
#endif

static unsigned iters(void)
{
	const char *e = getenv("HBK_FUZZ_ITERS");
	return e ? (unsigned)atoi(e) : ITERS_DEFAULT;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* ---- SCSI emulation ------------------------------------------------------- */

#define BLOCKS 2048u

struct disk {
	uint8_t *mem;
	uint32_t bs;
};

static int d_read(void *ctx, uint64_t lba, uint32_t n, void *buf)
{
	struct disk *d = ctx;
	assert_true(lba + n <= BLOCKS);   /* the emulation checked the range */
	memcpy(buf, d->mem + lba * d->bs, (size_t)n * d->bs);
	return 0;
}

static int d_write(void *ctx, uint64_t lba, uint32_t n, const void *buf, bool fua)
{
	struct disk *d = ctx;
	(void)fua;
	assert_true(lba + n <= BLOCKS);
	memcpy(d->mem + lba * d->bs, buf, (size_t)n * d->bs);
	return 0;
}

static int d_unmap(void *ctx, uint64_t lba, uint64_t n)
{
	struct disk *d = ctx;
	assert_true(lba + n <= BLOCKS);
	memset(d->mem + lba * d->bs, 0, n * d->bs);
	return 0;
}

static const struct hbk_scsi_backend_ops thin_ops = { .read = d_read, .write = d_write, .unmap = d_unmap };
static const struct hbk_scsi_backend_ops thick_ops = { .read = d_read, .write = d_write };

/* Opcodes the emulation serves, so most random CDBs reach a handler. */
static const uint8_t served[] = {
	0x00, 0x03, 0x08, 0x0a, 0x12, 0x1a, 0x25, 0x28, 0x2a, 0x35, 0x42, 0x5a,
	0x88, 0x8a, 0x91, 0x9e, 0xa0, 0xa8, 0xaa,
};

static void scsi_emulation_survives_random_cdbs(void **state)
{
	(void)state;
	struct disk disks[2] = { { malloc(BLOCKS * 512), 512 }, { malloc(BLOCKS * 4096), 4096 } };
	struct hbk_scsi_lun luns[2];
	struct hbk_scsi_lun *lp[3] = { &luns[0], NULL, &luns[1] };  /* LUN 1 is a hole */
	for (int i = 0; i < 2; i++) {
		struct hbk_scsi_lun_cfg cfg = {
			.vendor = "FUZZ", .product = "DISK", .revision = "1", .serial = "F1",
			.naa = 0x6000000000000001ull, .block_size = disks[i].bs, .nblocks = BLOCKS,
			.max_xfer_blocks = 64, .ops = i ? &thick_ops : &thin_ops, .ctx = &disks[i],
		};
		assert_int_equal(hbk_scsi_lun_init(&luns[i], &cfg), 0);
	}
	struct hbk_scsi_target t = { .lun_count = 3, .luns = lp };
	static const unsigned lens[] = { 6, 10, 12, 16 };

	for (unsigned it = 0; it < iters(); it++) {
		uint8_t cdb[16];
		fill_random(cdb, sizeof(cdb));
		if (rnd() % 10 < 8)
			cdb[0] = served[rnd() % sizeof(served)];
		if (rnd() % 2)   /* small transfer lengths reach the data paths */
			cdb[rnd() % 4 + 6] = 0, cdb[8] = (uint8_t)(rnd() % 4);
		unsigned cdb_len = lens[rnd() % 4];
		uint64_t buf_len = rnd() % 3 ? rnd() % 70000 : rnd() % 64;
		uint8_t *buf = buf_len ? malloc(buf_len) : NULL;
		if (buf)
			fill_random(buf, buf_len);
		enum hbk_dir dir = (enum hbk_dir)(rnd() % 3);
		uint64_t lun = rnd() % 4;
		struct hbk_scsi_reply out;
		hbk_scsi_execute(&t, lun, cdb, cdb_len, buf, buf_len, dir, &out);
		assert_true(out.bytes <= buf_len);
		assert_true(out.status == HBK_STATUS_GOOD || out.status == HBK_STATUS_CHECK_CONDITION);
		if (out.status == HBK_STATUS_CHECK_CONDITION) {
			assert_true(out.sense_len >= 8);
			assert_true(out.sense[0] == 0x70 || out.sense[0] == 0x72);
			assert_true((out.sense[out.sense[0] == 0x70 ? 2 : 1] & 0x0f) != 0);
		} else {
			assert_int_equal(out.sense_len, 0);
		}
		free(buf);
	}
	for (int i = 0; i < 2; i++) {
		hbk_scsi_lun_fini(&luns[i]);
		free(disks[i].mem);
	}
}

/* ---- Message framing ------------------------------------------------------ */

static void framing_refuses_every_malformed_message(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	uint8_t out[HBK_MSG_MAX + 64], in[HBK_MSG_MAX];
	unsigned accepted = 0, refused = 0;
	for (unsigned it = 0; it < iters(); it++) {
		size_t len = rnd() % sizeof(out);
		fill_random(out, len);
		if (rnd() % 2) {
			/* A well-formed message of a real type, then maybe one
			 * field broken, so every check is reached. */
			static const uint16_t types[] = { 1, 2, 9, 16, 17, 24, 25, 64, 65, 66, 128, 132 };
			struct hbk_msg_hdr h = { .magic = HBK_MSG_MAGIC, .type = types[rnd() % 12] };
			h.flags = rnd() % 2 && h.type <= HBK_MSG_CALL_LAST ? HBK_MSGF_REPLY : 0;
			len = hbk_msg_expect(h.type, h.flags & HBK_MSGF_REPLY);
			h.len = (uint32_t)len;
			switch (rnd() % 8) {
			case 0: h.magic ^= 1u << (rnd() % 32); break;
			case 1: h.len = (uint32_t)rnd(); break;
			case 2: len = rnd() % len; h.len = (uint32_t)len; break;
			case 3: h.flags |= (uint8_t)(2 << (rnd() % 6)); break;
			default: break;  /* left well-formed */
			}
			memcpy(out, &h, HBK_MIN(len, sizeof(h)));
		}
		assert_int_equal(send(sv[0], out, len, 0), (ssize_t)len);
		const char *why = NULL;
		int n = hbk_msg_recv(sv[1], in, sizeof(in), 1000, NULL, &why);
		if (n >= 0) {
			const struct hbk_msg_hdr *h = (const void *)in;
			assert_int_equal(h->magic, HBK_MSG_MAGIC);
			assert_int_equal(h->len, (uint32_t)n);
			assert_int_equal((size_t)n, hbk_msg_expect(h->type, h->flags & HBK_MSGF_REPLY));
			accepted++;
		} else {
			/* An empty datagram reads as end of stream. */
			assert_true(n == -EBADMSG || (n == -ECONNRESET && len == 0));
			if (n == -EBADMSG)
				assert_non_null(why);
			refused++;
		}
	}
	/* Both outcomes were exercised. */
	assert_true(accepted > iters() / 20);
	assert_true(refused > iters() / 20);
	close(sv[0]);
	close(sv[1]);
}

/* ---- SAM response parsers ------------------------------------------------- */

static void sam_parsers_never_read_past_the_data(void **state)
{
	(void)state;
	for (unsigned it = 0; it < iters(); it++) {
		size_t len = rnd() % 300;
		uint8_t *buf = malloc(len ? len : 1);
		fill_random(buf, len);
		if (len > 1 && rnd() % 2)
			buf[1] = (uint8_t)(rnd() % 2 ? 0x83 : 0xb0);  /* reach the page bodies */
		struct hbk_sam_inquiry inq;
		struct hbk_sam_devid id;
		struct hbk_sam_block_limits bl;
		struct hbk_sam_capacity cap;
		uint8_t pages[8];
		uint64_t luns[8];
		unsigned count;
		char serial[40];
		hbk_sam_parse_inquiry(buf, len, &inq);
		hbk_sam_parse_vpd_pages(buf, len, pages, 8, &count);
		hbk_sam_parse_vpd_serial(buf, len, serial, sizeof(serial));
		if (!hbk_sam_parse_vpd_devid(buf, len, &id))
			assert_true(strlen(id.id) < sizeof(id.id));
		hbk_sam_parse_vpd_block_limits(buf, len, &bl);
		hbk_sam_parse_read_capacity16(buf, len, &cap);
		hbk_sam_parse_read_capacity10(buf, len, &cap);
		hbk_sam_parse_report_luns(buf, len, luns, 8, &count);
		struct hbk_scsi_result r;
		hbk_scsi_sense_decode(buf, len, &r);
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(scsi_emulation_survives_random_cdbs),
		cmocka_unit_test(framing_refuses_every_malformed_message),
		cmocka_unit_test(sam_parsers_never_read_past_the_data),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
