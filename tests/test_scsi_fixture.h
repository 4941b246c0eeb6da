/* SPDX-License-Identifier: MIT */
/*
 * The fixture the SCSI emulation tests share (test_scsi*.c): a memory
 * backend with fault injection and a record of what was unmapped, a
 * capacity-only backend, a target with LUN 0 in memory (thin, LBPRZ), LUN 1
 * absent and LUN 2 huge (thick), and helpers that run a CDB as a given
 * initiator and check status, sense key, ASC and ASCQ.
 */
#ifndef HBK_TEST_SCSI_FIXTURE_H
#define HBK_TEST_SCSI_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hbk/scsi.h"
#include "scsi/scsi_priv.h"

/* ---- Memory backend ------------------------------------------------------ */

#define MEM_BS      512u
#define MEM_BLOCKS  1024u

struct membe {
	pthread_mutex_t lock;
	uint8_t *data;
	uint32_t block_size;
	int fail;                 /* every call returns this when non-zero */
	bool flip;                /* writes store byte 0 of each call inverted */
	unsigned reads, writes, flushes, unmaps;
	uint64_t last_lba, last_nblocks, unmapped;
	bool last_fua;
	const void *last_buf;
	bool deallocated[MEM_BLOCKS]; /* unmapped and not written since */
};

static inline int mem_read(void *ctx, uint64_t lba, uint32_t nblocks, void *buf)
{
	struct membe *m = ctx;
	int err;

	pthread_mutex_lock(&m->lock);
	m->reads++;
	m->last_lba = lba;
	m->last_nblocks = nblocks;
	m->last_buf = buf;
	err = m->fail;
	if (!err)
		memcpy(buf, m->data + lba * m->block_size, (size_t)nblocks * m->block_size);
	pthread_mutex_unlock(&m->lock);
	return err;
}

static inline int mem_write(void *ctx, uint64_t lba, uint32_t nblocks, const void *buf, bool fua)
{
	struct membe *m = ctx;
	int err;

	pthread_mutex_lock(&m->lock);
	m->writes++;
	m->last_lba = lba;
	m->last_nblocks = nblocks;
	m->last_buf = buf;
	m->last_fua = fua;
	err = m->fail;
	if (!err) {
		memcpy(m->data + lba * m->block_size, buf, (size_t)nblocks * m->block_size);
		memset(m->deallocated + lba, 0, nblocks);
		if (m->flip)
			m->data[lba * m->block_size] ^= 0xff;
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

static inline int mem_flush(void *ctx)
{
	struct membe *m = ctx;
	int err;

	pthread_mutex_lock(&m->lock);
	m->flushes++;
	err = m->fail;
	pthread_mutex_unlock(&m->lock);
	return err;
}

static inline int mem_unmap(void *ctx, uint64_t lba, uint64_t nblocks)
{
	struct membe *m = ctx;
	int err;

	pthread_mutex_lock(&m->lock);
	m->unmaps++;
	m->unmapped += nblocks;
	err = m->fail;
	if (!err) {
		memset(m->data + lba * m->block_size, 0, nblocks * m->block_size);
		memset(m->deallocated + lba, 1, nblocks);
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

static inline int mem_lba_status(void *ctx, uint64_t lba, uint32_t *nblocks, bool *mapped)
{
	struct membe *m = ctx;
	uint32_t run = 1;
	int err;

	pthread_mutex_lock(&m->lock);
	err = m->fail;
	while (run < *nblocks && m->deallocated[lba + run] == m->deallocated[lba])
		run++;
	*nblocks = run;
	*mapped = !m->deallocated[lba];
	pthread_mutex_unlock(&m->lock);
	return err;
}

static const struct hbk_scsi_backend_ops mem_ops = {
	.read = mem_read, .write = mem_write, .flush = mem_flush, .unmap = mem_unmap,
	.lba_status = mem_lba_status,
};

/* A huge LUN that stores nothing: for capacity fields only. */
static inline int null_read(void *ctx, uint64_t lba, uint32_t nblocks, void *buf)
{
	(void)ctx; (void)lba; (void)nblocks; (void)buf;
	return 0;
}

static inline int null_write(void *ctx, uint64_t lba, uint32_t nblocks, const void *buf,
			     bool fua)
{
	(void)ctx; (void)lba; (void)nblocks; (void)buf; (void)fua;
	return 0;
}

static const struct hbk_scsi_backend_ops null_ops = { .read = null_read, .write = null_write };

/* ---- Fixture: LUN 0 memory (thin), LUN 1 absent, LUN 2 huge (thick) ------ */

#define BIG_BS      4096u
#define BIG_BLOCKS  (0x100000000ull + 10)
#define BUF_LEN     (300u * MEM_BS)

struct fixture {
	struct membe be;
	struct hbk_scsi_lun mem, big;
	struct hbk_scsi_lun *luns[3];
	struct hbk_scsi_target t;
	struct hbk_scsi_reply r;
	uint8_t buf[BUF_LEN];
};

static inline struct hbk_scsi_lun_cfg mem_cfg(struct fixture *f)
{
	return (struct hbk_scsi_lun_cfg){
		.vendor = "HBAKIT", .product = "MEMDISK", .revision = "1.0",
		.serial = "SN0001", .naa = 0x6001405abcdef012ull,
		.block_size = MEM_BS, .nblocks = MEM_BLOCKS,
		.max_xfer_blocks = 256, .opt_xfer_blocks = 8,
		.write_cache = true, .rotational = false, .lbprz = true,
		.ops = &mem_ops, .ctx = &f->be,
	};
}

/* Re-creates LUN 0 with a configuration the test changed. */
static inline void mem_reinit(struct fixture *f, const struct hbk_scsi_lun_cfg *cfg)
{
	hbk_scsi_lun_fini(&f->mem);
	assert_int_equal(hbk_scsi_lun_init(&f->mem, cfg), 0);
}

static inline int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct hbk_scsi_lun_cfg big_cfg = {
		.vendor = "HBAKIT", .product = "BIGDISK", .revision = "2",
		.serial = "SN0002", .naa = 0x1234ull,
		.block_size = BIG_BS, .nblocks = BIG_BLOCKS,
		.rotational = true, .ops = &null_ops,
	};
	struct hbk_scsi_lun_cfg cfg;

	assert_non_null(f);
	pthread_mutex_init(&f->be.lock, NULL);
	f->be.block_size = MEM_BS;
	f->be.data = calloc(MEM_BLOCKS, MEM_BS);
	assert_non_null(f->be.data);
	cfg = mem_cfg(f);
	assert_int_equal(hbk_scsi_lun_init(&f->mem, &cfg), 0);
	assert_int_equal(hbk_scsi_lun_init(&f->big, &big_cfg), 0);
	f->luns[0] = &f->mem;
	f->luns[1] = NULL;
	f->luns[2] = &f->big;
	f->t.lun_count = 3;
	f->t.luns = f->luns;
	*state = f;
	return 0;
}

static inline int teardown(void **state)
{
	struct fixture *f = *state;

	hbk_scsi_lun_fini(&f->mem);
	hbk_scsi_lun_fini(&f->big);
	pthread_mutex_destroy(&f->be.lock);
	free(f->be.data);
	free(f);
	return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- Running commands ----------------------------------------------------- */

/* Runs a CDB as `initiator`. */
static inline void run_as(struct fixture *f, uint64_t initiator, uint64_t lun,
			  const uint8_t *cdb, unsigned cdb_len,
			  void *buf, uint64_t buf_len, enum hbk_dir dir)
{
	const struct hbk_scsi_req req = {
		.initiator = initiator, .lun = lun, .cdb = cdb, .cdb_len = cdb_len,
		.buf = buf, .buf_len = buf_len, .dir = dir,
	};

	memset(&f->r, 0xa5, sizeof f->r);
	hbk_scsi_exec(&f->t, &req, &f->r);
}

/* Runs a CDB through hbk_scsi_execute (the default initiator). */
static inline void run(struct fixture *f, uint64_t lun, const uint8_t *cdb, unsigned cdb_len,
		       void *buf, uint64_t buf_len, enum hbk_dir dir)
{
	memset(&f->r, 0xa5, sizeof f->r);
	hbk_scsi_execute(&f->t, lun, cdb, cdb_len, buf, buf_len, dir, &f->r);
}

/* Data-in into f->buf, which is first filled with a 0xee canary. */
static inline void run_in(struct fixture *f, uint64_t lun, const uint8_t *cdb,
			  unsigned cdb_len, uint64_t buf_len)
{
	memset(f->buf, 0xee, sizeof f->buf);
	run(f, lun, cdb, cdb_len, f->buf, buf_len, HBK_DIR_READ);
}

static inline void assert_good(const struct fixture *f)
{
	assert_int_equal(f->r.status, HBK_STATUS_GOOD);
	assert_int_equal(f->r.sense_len, 0);
}

static inline void assert_check(const struct fixture *f, uint8_t key, uint16_t asc_ascq)
{
	assert_int_equal(f->r.status, HBK_STATUS_CHECK_CONDITION);
	assert_int_equal(f->r.sense_len, 18);
	assert_int_equal(f->r.sense[0] & 0x7f, 0x70);
	assert_int_equal(f->r.sense[7], 10);
	assert_int_equal(f->r.sense[2] & 0x0f, key);
	assert_int_equal(f->r.sense[12], asc_ascq >> 8);
	assert_int_equal(f->r.sense[13], asc_ascq & 0xff);
	assert_int_equal(f->r.bytes, 0);
}

static inline void assert_invalid_field(const struct fixture *f)
{
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_CDB);
}

/* The sense data points at bit `bit` of byte `byte` of the CDB (cdb) or
 * of the parameter list: SKSV, C/D, BPV, BIT POINTER, FIELD POINTER. */
static inline void assert_field_pointer(const struct fixture *f, bool cdb, unsigned byte,
					unsigned bit)
{
	assert_int_equal(f->r.sense[15], 0x80 | (cdb ? 0x40 : 0) | 0x08 | bit);
	assert_int_equal(get_be16(f->r.sense + 16), byte);
}

static inline void assert_conflict(const struct fixture *f)
{
	assert_int_equal(f->r.status, HBK_STATUS_RESERVATION_CONFLICT);
	assert_int_equal(f->r.sense_len, 0);
	assert_int_equal(f->r.bytes, 0);
}

/* MISCOMPARE with the offset of the first differing byte in INFORMATION. */
static inline void assert_miscompare(const struct fixture *f, uint32_t offset)
{
	assert_check(f, HBK_SK_MISCOMPARE, HBK_ASC_MISCOMPARE_VERIFY);
	assert_int_equal(f->r.sense[0], 0xf0);     /* VALID */
	assert_int_equal(get_be32(f->r.sense + 3), offset);
}

/* Runs fn on n threads (at most 8), thread i on (char *)args + i * size,
 * and waits for them all. */
static inline void run_threads(void *(*fn)(void *), void *args, size_t size, unsigned n)
{
	pthread_t th[8];

	assert_true(n <= 8);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_create(&th[i], NULL, fn, (char *)args + i * size), 0);
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}

/* ---- CDBs ------------------------------------------------------------------- */

static inline void cdb6(uint8_t *cdb, uint8_t op, uint32_t lba, uint8_t len)
{
	memset(cdb, 0, 6);
	cdb[0] = op;
	put_be24(cdb + 1, lba);
	cdb[4] = len;
}

static inline void cdb10(uint8_t *cdb, uint8_t op, uint32_t lba, uint16_t len)
{
	memset(cdb, 0, 10);
	cdb[0] = op;
	put_be32(cdb + 2, lba);
	put_be16(cdb + 7, len);
}

static inline void cdb12(uint8_t *cdb, uint8_t op, uint32_t lba, uint32_t len)
{
	memset(cdb, 0, 12);
	cdb[0] = op;
	put_be32(cdb + 2, lba);
	put_be32(cdb + 6, len);
}

static inline void cdb16(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t len)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	put_be64(cdb + 2, lba);
	put_be32(cdb + 10, len);
}

static inline void inquiry_cdb(uint8_t *cdb, bool evpd, uint8_t page, uint16_t alloc)
{
	memset(cdb, 0, 6);
	cdb[0] = HBK_SCSI_OP_INQUIRY;
	cdb[1] = evpd;
	cdb[2] = page;
	put_be16(cdb + 3, alloc);
}

static inline void fill_pattern(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

#endif /* HBK_TEST_SCSI_FIXTURE_H */
