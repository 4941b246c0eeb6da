/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the asynchronous entry into the SCSI emulation
 * (hbk_scsi_exec_async): READ and WRITE handed to a backend's submit and
 * answered from its completion, exactly once; every check the synchronous
 * path makes giving the very same reply; backend errors mapped to the same
 * sense (and remembered for REQUEST SENSE); the commands it leaves to the
 * synchronous path; FUA under a write-through cache; and COMPARE AND WRITE
 * against asynchronous writes: it waits for those in flight and holds back,
 * then starts, those that come while it runs.  The backend here keeps every
 * submitted transfer until the test (or a completer thread) ends it, and
 * moves the data only then.
 */
#include <sched.h>

#include "test_scsi_fixture.h"

/* ---- An asynchronous backend over the fixture's memory medium ------------- */

#define HELD_MAX 1024

enum abe_mode { HOLD, INLINE, COMPLETER };

struct abe {
	struct membe m;                  /* first: the synchronous ops take it as ctx */
	pthread_mutex_t lock;
	pthread_cond_t cond;             /* COMPLETER: something was submitted */
	enum abe_mode mode;
	bool stop;
	struct hbk_scsi_aio *held[HELD_MAX];
	unsigned nheld, submits, writes_in_flight, reads_during_write;
};

/* Moves aio's data between its buffer and the medium, then ends it. */
static void abe_finish(struct abe *b, struct hbk_scsi_aio *aio, int result)
{
	size_t off = aio->io.lba * b->m.block_size, len = (size_t)aio->io.nblocks * b->m.block_size;

	pthread_mutex_lock(&b->lock);
	if (!result && aio->io.write)
		memcpy(b->m.data + off, aio->io.buf, len);
	else if (!result)
		memcpy(aio->io.buf, b->m.data + off, len);
	if (aio->io.write)
		b->writes_in_flight--;
	pthread_mutex_unlock(&b->lock);
	hbk_scsi_aio_end(aio, result);
}

static void abe_submit(void *ctx, struct hbk_scsi_aio *aio)
{
	struct abe *b = ctx;

	pthread_mutex_lock(&b->lock);
	b->submits++;
	b->writes_in_flight += aio->io.write;
	if (b->mode != INLINE) {
		assert_true(b->nheld < HELD_MAX);
		b->held[b->nheld++] = aio;
		pthread_cond_signal(&b->cond);
	}
	pthread_mutex_unlock(&b->lock);
	if (b->mode == INLINE)
		abe_finish(b, aio, 0);
}

/* Synchronous reads note whether an asynchronous write was in flight. */
static int abe_read(void *ctx, uint64_t lba, uint32_t nblocks, void *buf)
{
	struct abe *b = ctx;

	pthread_mutex_lock(&b->lock);
	b->reads_during_write += b->writes_in_flight > 0;
	pthread_mutex_unlock(&b->lock);
	return mem_read(ctx, lba, nblocks, buf);
}

static const struct hbk_scsi_backend_ops abe_ops = {
	.read = abe_read, .write = mem_write, .flush = mem_flush, .unmap = mem_unmap,
	.lba_status = mem_lba_status, .submit = abe_submit,
};

/* Takes the held transfer number i (in submission order). */
static struct hbk_scsi_aio *abe_take(struct abe *b, unsigned i)
{
	pthread_mutex_lock(&b->lock);
	assert_true(i < b->nheld);
	struct hbk_scsi_aio *aio = b->held[i];
	memmove(b->held + i, b->held + i + 1, (b->nheld - i - 1) * sizeof(b->held[0]));
	b->nheld--;
	pthread_mutex_unlock(&b->lock);
	return aio;
}

static void *completer_main(void *arg)
{
	struct abe *b = arg;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (!b->nheld && !b->stop)
			pthread_cond_wait(&b->cond, &b->lock);
		if (!b->nheld)
			break;
		struct hbk_scsi_aio *aio = b->held[--b->nheld];  /* newest first: out of order */
		pthread_mutex_unlock(&b->lock);
		abe_finish(b, aio, 0);
		pthread_mutex_lock(&b->lock);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* ---- Fixture: LUN 0 asynchronous, LUN 1 absent, LUN 2 synchronous only ---- */

struct afix {
	struct abe be;
	struct hbk_scsi_lun lun, plain;  /* both over be's medium */
	struct hbk_scsi_lun *luns[3];
	struct hbk_scsi_target t;
};

static struct hbk_scsi_lun_cfg acfg(struct afix *f, const struct hbk_scsi_backend_ops *ops,
				    bool write_cache)
{
	return (struct hbk_scsi_lun_cfg){
		.vendor = "HBAKIT", .product = "ASYNC", .revision = "1.0",
		.serial = "SN0003", .naa = 0x6001405abcdef013ull,
		.block_size = MEM_BS, .nblocks = MEM_BLOCKS,
		.max_xfer_blocks = 256, .opt_xfer_blocks = 8,
		.write_cache = write_cache, .lbprz = true,
		.ops = ops, .ctx = &f->be,
	};
}

static int asetup(void **state)
{
	struct afix *f = calloc(1, sizeof *f);

	assert_non_null(f);
	pthread_mutex_init(&f->be.m.lock, NULL);
	pthread_mutex_init(&f->be.lock, NULL);
	pthread_cond_init(&f->be.cond, NULL);
	f->be.m.block_size = MEM_BS;
	f->be.m.data = calloc(MEM_BLOCKS, MEM_BS);
	assert_non_null(f->be.m.data);
	struct hbk_scsi_lun_cfg cfg = acfg(f, &abe_ops, true);
	assert_int_equal(hbk_scsi_lun_init(&f->lun, &cfg), 0);
	cfg = acfg(f, &mem_ops, true);     /* no submit: synchronous only */
	assert_int_equal(hbk_scsi_lun_init(&f->plain, &cfg), 0);
	f->luns[0] = &f->lun;
	f->luns[1] = NULL;
	f->luns[2] = &f->plain;
	f->t = (struct hbk_scsi_target){ .lun_count = 3, .luns = f->luns };
	*state = f;
	return 0;
}

static int ateardown(void **state)
{
	struct afix *f = *state;

	assert_int_equal(f->be.nheld, 0);  /* every transfer was ended */
	hbk_scsi_lun_fini(&f->lun);
	hbk_scsi_lun_fini(&f->plain);
	pthread_mutex_destroy(&f->be.m.lock);
	pthread_mutex_destroy(&f->be.lock);
	pthread_cond_destroy(&f->be.cond);
	free(f->be.m.data);
	free(f);
	return 0;
}

#define AT(fn) cmocka_unit_test_setup_teardown(fn, asetup, ateardown)

/* One asynchronous command and how often its done ran. */
struct cmd {
	struct hbk_scsi_aio aio;
	struct hbk_scsi_reply out;
	atomic_uint done;
};

static void cmd_done(struct hbk_scsi_aio *aio)
{
	struct cmd *c = aio->priv;

	atomic_fetch_add(&c->done, 1);
}

static int start_as(struct afix *f, struct cmd *c, uint64_t initiator, uint64_t lun,
		    const uint8_t *cdb, unsigned cdb_len, void *buf, uint64_t len, enum hbk_dir dir)
{
	const struct hbk_scsi_req req = {
		.initiator = initiator, .lun = lun, .cdb = cdb, .cdb_len = cdb_len,
		.buf = buf, .buf_len = len, .dir = dir,
	};

	memset(c, 0, sizeof *c);
	memset(&c->out, 0xa5, sizeof c->out);
	c->aio = (struct hbk_scsi_aio){ .out = &c->out, .done = cmd_done, .priv = c };
	return hbk_scsi_exec_async(&f->t, &req, &c->aio);
}

static int start(struct afix *f, struct cmd *c, const uint8_t *cdb, unsigned cdb_len,
		 void *buf, uint64_t len, enum hbk_dir dir)
{
	return start_as(f, c, 0, 0, cdb, cdb_len, buf, len, dir);
}

/* The synchronous reply to the same command on the same LUN. */
static void exec_as(struct afix *f, struct hbk_scsi_reply *out, uint64_t initiator,
		    const uint8_t *cdb, unsigned cdb_len, void *buf, uint64_t len, enum hbk_dir dir)
{
	const struct hbk_scsi_req req = {
		.initiator = initiator, .lun = 0, .cdb = cdb, .cdb_len = cdb_len,
		.buf = buf, .buf_len = len, .dir = dir,
	};

	memset(out, 0x5a, sizeof *out);
	hbk_scsi_exec(&f->t, &req, out);
}

static void assert_same_reply(const struct hbk_scsi_reply *a, const struct hbk_scsi_reply *b)
{
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->sense_len, b->sense_len);
	assert_int_equal(a->bytes, b->bytes);
	assert_memory_equal(a->sense, b->sense, a->sense_len);
}

/* ---- Data moves from the completion ---------------------------------------------- */

static void read_and_write_end_from_the_backend(void **state)
{
	struct afix *f = *state;
	uint8_t cdb[16], data[2 * MEM_BS], back[2 * MEM_BS];
	struct cmd w, r;

	fill_pattern(data, sizeof data, 3);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 5, 2);
	assert_int_equal(start(f, &w, cdb, 10, data, sizeof data, HBK_DIR_WRITE), 0);
	assert_int_equal(atomic_load(&w.done), 0);      /* in flight: no reply yet */
	assert_int_equal(f->be.submits, 1);
	assert_true(w.aio.io.write);
	assert_int_equal(w.aio.io.lba, 5);
	assert_int_equal(w.aio.io.nblocks, 2);
	assert_ptr_equal(w.aio.io.buf, data);           /* the initiator's buffer: zero copy */
	abe_finish(&f->be, abe_take(&f->be, 0), 0);
	assert_int_equal(atomic_load(&w.done), 1);
	assert_int_equal(w.out.status, HBK_STATUS_GOOD);
	assert_int_equal(w.out.sense_len, 0);
	assert_int_equal(w.out.bytes, sizeof data);
	assert_memory_equal(f->be.m.data + 5 * MEM_BS, data, sizeof data);

	memset(back, 0, sizeof back);
	cdb16(cdb, HBK_SCSI_OP_READ16, 5, 2);
	assert_int_equal(start(f, &r, cdb, 16, back, sizeof back, HBK_DIR_READ), 0);
	assert_int_equal(atomic_load(&r.done), 0);
	assert_false(r.aio.io.write);
	abe_finish(&f->be, abe_take(&f->be, 0), 0);
	assert_int_equal(atomic_load(&r.done), 1);
	assert_int_equal(r.out.status, HBK_STATUS_GOOD);
	assert_int_equal(r.out.bytes, sizeof back);
	assert_memory_equal(back, data, sizeof back);
	assert_int_equal(atomic_load(&w.done), 1);      /* still once */
}

/* A backend that ends the transfer inside submit: done runs before the
 * entry returns, once. */
static void a_transfer_may_end_inside_submit(void **state)
{
	struct afix *f = *state;
	uint8_t cdb[12], data[MEM_BS];
	struct cmd c;

	f->be.mode = INLINE;
	fill_pattern(data, sizeof data, 8);
	cdb12(cdb, HBK_SCSI_OP_WRITE12, 9, 1);
	assert_int_equal(start(f, &c, cdb, 12, data, sizeof data, HBK_DIR_WRITE), 0);
	assert_int_equal(atomic_load(&c.done), 1);
	assert_int_equal(c.out.status, HBK_STATUS_GOOD);
	assert_memory_equal(f->be.m.data + 9 * MEM_BS, data, sizeof data);
}

/* ---- The checks are the synchronous path's --------------------------------------- */

/* Runs cdb both ways on LUN 0: the asynchronous entry must answer at once,
 * submit nothing and reply exactly as hbk_scsi_exec does. */
static void assert_refused_alike(struct afix *f, uint64_t initiator, const uint8_t *cdb,
				 unsigned cdb_len, void *buf, uint64_t len, enum hbk_dir dir)
{
	struct hbk_scsi_reply ref;
	struct cmd c;
	unsigned submits = f->be.submits;

	exec_as(f, &ref, initiator, cdb, cdb_len, buf, len, dir);
	assert_int_not_equal(ref.status, HBK_STATUS_GOOD);
	assert_int_equal(start_as(f, &c, initiator, 0, cdb, cdb_len, buf, len, dir), 0);
	assert_int_equal(atomic_load(&c.done), 1);
	assert_int_equal(f->be.submits, submits);
	assert_same_reply(&c.out, &ref);
}

static void checks_match_the_synchronous_path(void **state)
{
	struct afix *f = *state;
	uint8_t cdb[16], buf[4 * MEM_BS];

	cdb10(cdb, HBK_SCSI_OP_READ10, MEM_BLOCKS - 1, 2);        /* past the end */
	assert_refused_alike(f, 0, cdb, 10, buf, sizeof buf, HBK_DIR_READ);
	cdb16(cdb, HBK_SCSI_OP_READ16, 0, 1);
	cdb[1] = 0x20;                                             /* RDPROTECT */
	assert_refused_alike(f, 0, cdb, 16, buf, sizeof buf, HBK_DIR_READ);
	cdb12(cdb, HBK_SCSI_OP_READ12, 0, 300);                     /* over the maximum transfer */
	assert_refused_alike(f, 0, cdb, 12, buf, sizeof buf, HBK_DIR_READ);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 8);                      /* more than the data-out */
	assert_refused_alike(f, 0, cdb, 10, buf, sizeof buf, HBK_DIR_WRITE);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);                      /* data-in for a write */
	assert_refused_alike(f, 0, cdb, 10, buf, sizeof buf, HBK_DIR_READ);
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	cdb[9] = 0x04;                                              /* NACA */
	assert_refused_alike(f, 0, cdb, 10, buf, sizeof buf, HBK_DIR_READ);
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	assert_refused_alike(f, 0, cdb, 9, buf, sizeof buf, HBK_DIR_READ); /* CDB too short */

	/* Nothing to move: GOOD at once, nothing submitted. */
	struct cmd c;
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 0);
	assert_int_equal(start(f, &c, cdb, 10, buf, sizeof buf, HBK_DIR_READ), 0);
	assert_int_equal(atomic_load(&c.done), 1);
	assert_int_equal(c.out.status, HBK_STATUS_GOOD);
	assert_int_equal(c.out.bytes, 0);
	assert_int_equal(f->be.submits, 0);

	/* A stopped unit: NOT READY both ways. */
	uint8_t ssu[6] = { HBK_SCSI_OP_START_STOP_UNIT, 0, 0, 0, 0x04 /* NO_FLUSH, stop */ };
	struct hbk_scsi_reply r;
	exec_as(f, &r, 0, ssu, 6, NULL, 0, HBK_DIR_NONE);
	assert_int_equal(r.status, HBK_STATUS_GOOD);
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	assert_refused_alike(f, 0, cdb, 10, buf, sizeof buf, HBK_DIR_READ);
	ssu[4] = 0x01;                                             /* start */
	exec_as(f, &r, 0, ssu, 6, NULL, 0, HBK_DIR_NONE);
	assert_int_equal(r.status, HBK_STATUS_GOOD);

	/* A persistent reservation (WRITE EXCLUSIVE held by initiator 1):
	 * RESERVATION CONFLICT for initiator 2's write, both ways. */
	uint8_t pr[10] = { HBK_SCSI_OP_PR_OUT, HBK_PR_REGISTER_AND_IGNORE, 0 }, p[24] = { 0 };
	put_be32(pr + 5, sizeof p);
	put_be64(p + 8, 0x1111);
	exec_as(f, &r, 1, pr, 10, p, sizeof p, HBK_DIR_WRITE);
	assert_int_equal(r.status, HBK_STATUS_GOOD);
	pr[1] = HBK_PR_RESERVE;
	pr[2] = HBK_PR_WE;
	put_be64(p, 0x1111);
	put_be64(p + 8, 0);
	exec_as(f, &r, 1, pr, 10, p, sizeof p, HBK_DIR_WRITE);
	assert_int_equal(r.status, HBK_STATUS_GOOD);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	assert_refused_alike(f, 2, cdb, 10, buf, sizeof buf, HBK_DIR_WRITE);
	/* The holder's own write goes through. */
	assert_int_equal(start_as(f, &c, 1, 0, cdb, 10, buf, MEM_BS, HBK_DIR_WRITE), 0);
	assert_int_equal(f->be.submits, 1);
	abe_finish(&f->be, abe_take(&f->be, 0), 0);
	assert_int_equal(c.out.status, HBK_STATUS_GOOD);
}

/* ---- Backend errors ---------------------------------------------------------------- */

static void backend_errors_become_the_same_sense(void **state)
{
	struct afix *f = *state;
	static const struct { bool write; int err; uint8_t key; uint16_t asc; } cases[] = {
		{ false, -EIO, HBK_SK_MEDIUM_ERROR, HBK_ASC_UNRECOVERED_READ_ERROR },
		{ true, -EIO, HBK_SK_MEDIUM_ERROR, HBK_ASC_WRITE_ERROR },
		{ true, -ENOSPC, HBK_SK_DATA_PROTECT, HBK_ASC_SPACE_ALLOC_FAILED },
		{ false, -EINVAL, HBK_SK_HARDWARE_ERROR, HBK_ASC_INTERNAL_TARGET_FAILURE },
		{ true, -ECANCELED, HBK_SK_HARDWARE_ERROR, HBK_ASC_INTERNAL_TARGET_FAILURE },
	};
	uint8_t cdb[10], buf[MEM_BS];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		enum hbk_dir dir = cases[i].write ? HBK_DIR_WRITE : HBK_DIR_READ;
		struct hbk_scsi_reply ref;
		struct cmd c;

		cdb10(cdb, cases[i].write ? HBK_SCSI_OP_WRITE10 : HBK_SCSI_OP_READ10, 7, 1);
		f->be.m.fail = cases[i].err;                /* the synchronous reference */
		exec_as(f, &ref, 0, cdb, 10, buf, sizeof buf, dir);
		f->be.m.fail = 0;
		assert_int_equal(ref.status, HBK_STATUS_CHECK_CONDITION);
		assert_int_equal(ref.sense[2] & 0x0f, cases[i].key);
		assert_int_equal(get_be16(ref.sense + 12), cases[i].asc);

		assert_int_equal(start(f, &c, cdb, 10, buf, sizeof buf, dir), 0);
		assert_int_equal(atomic_load(&c.done), 0);
		abe_finish(&f->be, abe_take(&f->be, 0), cases[i].err);
		assert_int_equal(atomic_load(&c.done), 1);
		assert_same_reply(&c.out, &ref);
	}
}

/* ---- What stays synchronous ---------------------------------------------------------- */

static void other_commands_stay_synchronous(void **state)
{
	struct afix *f = *state;
	uint8_t cdb[16], buf[2 * MEM_BS];
	struct cmd c;
	const struct { uint8_t op; unsigned len; } ops[] = {
		{ HBK_SCSI_OP_INQUIRY, 6 }, { HBK_SCSI_OP_TEST_UNIT_READY, 6 },
		{ HBK_SCSI_OP_SYNC_CACHE10, 10 }, { HBK_SCSI_OP_VERIFY10, 10 },
		{ HBK_SCSI_OP_WRITE_VERIFY10, 10 }, { HBK_SCSI_OP_WRITE_SAME10, 10 },
		{ HBK_SCSI_OP_UNMAP, 10 }, { HBK_SCSI_OP_COMPARE_AND_WRITE, 16 },
		{ HBK_SCSI_OP_MODE_SENSE6, 6 }, { 0xff, 6 },
	};

	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		memset(cdb, 0, sizeof cdb);
		cdb[0] = ops[i].op;
		assert_int_equal(start(f, &c, cdb, ops[i].len, buf, sizeof buf, HBK_DIR_WRITE),
				 -EWOULDBLOCK);
		assert_int_equal(atomic_load(&c.done), 0);
		assert_int_equal(c.out.status, 0xa5);   /* untouched */
	}
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	assert_int_equal(start(f, &c, NULL, 0, buf, sizeof buf, HBK_DIR_READ), -EWOULDBLOCK);
	/* No such LUN, and a LUN whose backend cannot submit. */
	assert_int_equal(start_as(f, &c, 0, 1, cdb, 10, buf, sizeof buf, HBK_DIR_READ), -EWOULDBLOCK);
	assert_int_equal(start_as(f, &c, 0, 2, cdb, 10, buf, sizeof buf, HBK_DIR_READ), -EWOULDBLOCK);
	assert_int_equal(start_as(f, &c, 0, 9, cdb, 10, buf, sizeof buf, HBK_DIR_READ), -EWOULDBLOCK);
	assert_int_equal(atomic_load(&c.done), 0);
	assert_int_equal(f->be.submits, 0);
}

/* ---- FUA ----------------------------------------------------------------------------- */

static void fua_follows_the_cache_mode(void **state)
{
	struct afix *f = *state;
	uint8_t cdb[10], buf[MEM_BS];
	struct cmd c;

	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	assert_int_equal(start(f, &c, cdb, 10, buf, sizeof buf, HBK_DIR_WRITE), 0);
	assert_false(c.aio.io.fua);                    /* write back, no FUA */
	abe_finish(&f->be, abe_take(&f->be, 0), 0);
	cdb[1] = 0x08;
	assert_int_equal(start(f, &c, cdb, 10, buf, sizeof buf, HBK_DIR_WRITE), 0);
	assert_true(c.aio.io.fua);
	abe_finish(&f->be, abe_take(&f->be, 0), 0);

	hbk_scsi_lun_fini(&f->lun);
	struct hbk_scsi_lun_cfg cfg = acfg(f, &abe_ops, false);  /* write-through: every write FUA */
	assert_int_equal(hbk_scsi_lun_init(&f->lun, &cfg), 0);
	cdb[1] = 0;
	assert_int_equal(start(f, &c, cdb, 10, buf, sizeof buf, HBK_DIR_WRITE), 0);
	assert_true(c.aio.io.fua);
	abe_finish(&f->be, abe_take(&f->be, 0), 0);
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	assert_int_equal(start(f, &c, cdb, 10, buf, sizeof buf, HBK_DIR_READ), 0);
	assert_false(c.aio.io.fua);
	abe_finish(&f->be, abe_take(&f->be, 0), 0);
	assert_int_equal(c.out.status, HBK_STATUS_GOOD);
}

/* ---- COMPARE AND WRITE against asynchronous writes ------------------------------------ */

struct caw_run {
	struct afix *f;
	uint8_t data[2 * MEM_BS];       /* compare with, then write */
	struct hbk_scsi_reply out;
};

static void *caw_main(void *arg)
{
	struct caw_run *c = arg;
	uint8_t cdb[16];

	memset(cdb, 0, sizeof cdb);
	cdb[0] = HBK_SCSI_OP_COMPARE_AND_WRITE;
	put_be64(cdb + 2, 0);
	cdb[13] = 1;
	exec_as(c->f, &c->out, 0, cdb, 16, c->data, sizeof c->data, HBK_DIR_WRITE);
	return NULL;
}

/* Until the COMPARE AND WRITE holds (or waits for) the LUN's write lock. */
static void wait_caw_locked(struct hbk_scsi_lun *lun)
{
	while (pthread_rwlock_tryrdlock(&lun->write_lock) == 0) {
		pthread_rwlock_unlock(&lun->write_lock);
		sched_yield();
	}
}

/* A write in flight when COMPARE AND WRITE starts is on the medium before
 * the compare reads it: the compare sees its data and succeeds. */
static void caw_waits_for_writes_in_flight(void **state)
{
	struct afix *f = *state;
	uint8_t cdb[10], b[MEM_BS];
	struct caw_run caw = { .f = f };
	struct cmd w;
	pthread_t th;

	memset(f->be.m.data, 0xaa, MEM_BS);            /* A on the medium */
	memset(b, 0xbb, sizeof b);                     /* the async write brings B */
	memset(caw.data, 0xbb, MEM_BS);                /* compare with B ... */
	memset(caw.data + MEM_BS, 0xcc, MEM_BS);       /* ... and write C */
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	assert_int_equal(start(f, &w, cdb, 10, b, sizeof b, HBK_DIR_WRITE), 0);
	assert_int_equal(pthread_create(&th, NULL, caw_main, &caw), 0);
	wait_caw_locked(&f->lun);
	for (int i = 0; i < 1000; i++)                 /* room for a broken gate to read */
		sched_yield();
	abe_finish(&f->be, abe_take(&f->be, 0), 0);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&w.done), 1);
	assert_int_equal(w.out.status, HBK_STATUS_GOOD);
	assert_int_equal(caw.out.status, HBK_STATUS_GOOD);
	assert_int_equal(f->be.reads_during_write, 0);
	for (unsigned i = 0; i < MEM_BS; i++)
		assert_int_equal(f->be.m.data[i], 0xcc);
}

/* A write that comes while COMPARE AND WRITE holds the lock is held back,
 * not waited for, and started by it when it ends. */
static void writes_behind_caw_are_held_then_started(void **state)
{
	struct afix *f = *state;
	uint8_t cdb[10], b[MEM_BS], d[MEM_BS];
	struct caw_run caw = { .f = f };
	struct cmd w1, w2;
	pthread_t th;

	memset(f->be.m.data, 0xaa, MEM_BS);
	memset(b, 0xbb, sizeof b);
	memset(d, 0xdd, sizeof d);
	memset(caw.data, 0xbb, MEM_BS);
	memset(caw.data + MEM_BS, 0xcc, MEM_BS);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	assert_int_equal(start(f, &w1, cdb, 10, b, sizeof b, HBK_DIR_WRITE), 0);
	assert_int_equal(pthread_create(&th, NULL, caw_main, &caw), 0);
	wait_caw_locked(&f->lun);
	/* w1 keeps the COMPARE AND WRITE waiting, so w2 meets it for sure. */
	assert_int_equal(start(f, &w2, cdb, 10, d, sizeof d, HBK_DIR_WRITE), 0);
	assert_int_equal(f->be.submits, 1);            /* held back, not submitted */
	assert_int_equal(atomic_load(&w2.done), 0);
	abe_finish(&f->be, abe_take(&f->be, 0), 0);    /* w1 ends: the CAW runs */
	pthread_join(th, NULL);
	assert_int_equal(caw.out.status, HBK_STATUS_GOOD);
	assert_int_equal(f->be.submits, 2);            /* w2 started by the CAW's end */
	assert_int_equal(f->be.m.data[0], 0xcc);
	abe_finish(&f->be, abe_take(&f->be, 0), 0);
	assert_int_equal(atomic_load(&w1.done), 1);
	assert_int_equal(atomic_load(&w2.done), 1);
	assert_int_equal(w2.out.status, HBK_STATUS_GOOD);
	assert_int_equal(f->be.m.data[0], 0xdd);
	assert_int_equal(f->be.reads_during_write, 0);
}

/* PERSISTENT RESERVE OUT by initiator it: service action sa, type, key, service action key. */
static uint8_t pr_out_as(struct afix *f, uint64_t it, unsigned sa, unsigned type,
			 uint64_t key, uint64_t sa_key)
{
	uint8_t cdb[10] = { HBK_SCSI_OP_PR_OUT, (uint8_t)sa, (uint8_t)type }, p[24] = { 0 };
	struct hbk_scsi_reply r;

	put_be32(cdb + 5, sizeof p);
	put_be64(p, key);
	put_be64(p + 8, sa_key);
	exec_as(f, &r, it, cdb, 10, p, sizeof p, HBK_DIR_WRITE);
	return r.status;
}

struct preempt_run {
	struct afix *f;
	atomic_int done;
	uint8_t status;
};

static void *preempt_main(void *arg)
{
	struct preempt_run *p = arg;

	p->status = pr_out_as(p->f, 0, HBK_PR_PREEMPT_AND_ABORT, HBK_PR_WE_RO, 0xa, 0xb);
	atomic_store(&p->done, 1);
	return NULL;
}

/* PREEMPT AND ABORT fences the preempted initiator: its write held behind
 * a COMPARE AND WRITE either reaches the medium before the PREEMPT returns
 * or never (RESERVATION CONFLICT), whichever of the two gets the write lock
 * first once the COMPARE AND WRITE ends. */
static void preempt_and_abort_fences_held_writes(void **state)
{
	struct afix *f = *state;
	uint8_t cdb[10], a[MEM_BS], b[MEM_BS];
	struct caw_run caw = { .f = f };
	struct preempt_run pre = { .f = f };
	struct cmd w1, w2;
	pthread_t th, tp;
	bool w2_before = false;

	assert_int_equal(pr_out_as(f, 0, HBK_PR_REGISTER, 0, 0, 0xa), HBK_STATUS_GOOD);
	assert_int_equal(pr_out_as(f, 2, HBK_PR_REGISTER, 0, 0, 0xb), HBK_STATUS_GOOD);
	assert_int_equal(pr_out_as(f, 0, HBK_PR_RESERVE, HBK_PR_WE_RO, 0xa, 0), HBK_STATUS_GOOD);
	memset(f->be.m.data, 0xaa, 8 * MEM_BS);
	memset(a, 0xaa, sizeof a);
	memset(b, 0xbb, sizeof b);
	memcpy(caw.data, a, MEM_BS);
	memset(caw.data + MEM_BS, 0xcc, MEM_BS);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 1, 1);
	assert_int_equal(start_as(f, &w1, 0, 0, cdb, 10, a, sizeof a, HBK_DIR_WRITE), 0);
	assert_int_equal(pthread_create(&th, NULL, caw_main, &caw), 0);
	wait_caw_locked(&f->lun);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 5, 1);         /* the registrant's write: held */
	assert_int_equal(start_as(f, &w2, 2, 0, cdb, 10, b, sizeof b, HBK_DIR_WRITE), 0);
	assert_int_equal(f->be.submits, 1);
	assert_int_equal(pthread_create(&tp, NULL, preempt_main, &pre), 0);
	for (int i = 0; i < 1000 && !atomic_load(&pre.done); i++)
		sched_yield();
	assert_int_equal(atomic_load(&pre.done), 0);   /* waits for the writes */
	abe_finish(&f->be, abe_take(&f->be, 0), 0);    /* w1 ends: the CAW runs */
	pthread_join(th, NULL);
	assert_int_equal(caw.out.status, HBK_STATUS_GOOD);
	while (!atomic_load(&pre.done)) {              /* end what the PREEMPT waits for */
		pthread_mutex_lock(&f->be.lock);
		unsigned held = f->be.nheld;
		pthread_mutex_unlock(&f->be.lock);
		if (held) {
			w2_before = true;
			abe_finish(&f->be, abe_take(&f->be, 0), 0);
		}
		sched_yield();
	}
	pthread_join(tp, NULL);
	assert_int_equal(pre.status, HBK_STATUS_GOOD);
	assert_int_equal(atomic_load(&w2.done), 1);
	if (w2_before) {
		assert_int_equal(w2.out.status, HBK_STATUS_GOOD);
		assert_int_equal(f->be.m.data[5 * MEM_BS], 0xbb);
	} else {
		assert_int_equal(w2.out.status, HBK_STATUS_RESERVATION_CONFLICT);
		assert_int_equal(f->be.m.data[5 * MEM_BS], 0xaa);
	}
	pthread_mutex_lock(&f->be.lock);
	assert_int_equal(f->be.nheld, 0);              /* nothing of B's after the PREEMPT */
	pthread_mutex_unlock(&f->be.lock);
	assert_int_equal(start_as(f, &w2, 2, 0, cdb, 10, b, sizeof b, HBK_DIR_WRITE), 0);
	assert_int_equal(w2.out.status, HBK_STATUS_CHECK_CONDITION);   /* REGISTRATIONS PREEMPTED */
	assert_int_equal(w2.out.sense[2] & 0x0f, HBK_SK_UNIT_ATTENTION);
	assert_int_equal(start_as(f, &w2, 2, 0, cdb, 10, b, sizeof b, HBK_DIR_WRITE), 0);
	assert_int_equal(w2.out.status, HBK_STATUS_RESERVATION_CONFLICT);
}

/* ---- Many commands, ended on another thread ------------------------------------------- */

#define WORKERS 4
#define ROUNDS  200

struct worker {
	struct afix *f;
	unsigned id, bad;
};

/* Each worker owns blocks [id * 8, id * 8 + 8): writes a pattern with one
 * command, reads it back with another, both ended by the completer. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t cdb[10], data[MEM_BS], back[MEM_BS];

	for (unsigned i = 0; i < ROUNDS; i++) {
		struct cmd c;
		uint32_t lba = w->id * 8 + i % 8;

		fill_pattern(data, sizeof data, (uint8_t)(w->id * 31 + i));
		cdb10(cdb, HBK_SCSI_OP_WRITE10, lba, 1);
		if (start(w->f, &c, cdb, 10, data, sizeof data, HBK_DIR_WRITE))
			w->bad++;
		while (!atomic_load(&c.done))
			sched_yield();
		w->bad += atomic_load(&c.done) != 1 || c.out.status != HBK_STATUS_GOOD;
		cdb10(cdb, HBK_SCSI_OP_READ10, lba, 1);
		memset(back, 0, sizeof back);
		if (start(w->f, &c, cdb, 10, back, sizeof back, HBK_DIR_READ))
			w->bad++;
		while (!atomic_load(&c.done))
			sched_yield();
		w->bad += atomic_load(&c.done) != 1 || c.out.status != HBK_STATUS_GOOD ||
			  memcmp(back, data, sizeof data) != 0;
	}
	return NULL;
}

static void completions_come_once_from_another_thread(void **state)
{
	struct afix *f = *state;
	struct worker w[WORKERS];
	pthread_t completer;

	f->be.mode = COMPLETER;
	assert_int_equal(pthread_create(&completer, NULL, completer_main, &f->be), 0);
	for (unsigned i = 0; i < WORKERS; i++)
		w[i] = (struct worker){ .f = f, .id = i };
	run_threads(worker_main, w, sizeof w[0], WORKERS);
	pthread_mutex_lock(&f->be.lock);
	f->be.stop = true;
	pthread_cond_signal(&f->be.cond);
	pthread_mutex_unlock(&f->be.lock);
	pthread_join(completer, NULL);
	for (unsigned i = 0; i < WORKERS; i++)
		assert_int_equal(w[i].bad, 0);
	assert_int_equal(f->be.submits, 2 * WORKERS * ROUNDS);
	assert_int_equal(atomic_load(&f->lun.aio_writes), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		AT(read_and_write_end_from_the_backend),
		AT(a_transfer_may_end_inside_submit),
		AT(checks_match_the_synchronous_path),
		AT(backend_errors_become_the_same_sense),
		AT(other_commands_stay_synchronous),
		AT(fua_follows_the_cache_mode),
		AT(caw_waits_for_writes_in_flight),
		AT(writes_behind_caw_are_held_then_started),
		AT(preempt_and_abort_fences_held_writes),
		AT(completions_come_once_from_another_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
