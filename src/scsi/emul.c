/* SPDX-License-Identifier: MIT */
/*
 * SCSI block-target emulation shared by every driver: one table of the
 * commands it serves drives both dispatch and REPORT SUPPORTED OPERATION
 * CODES.  Each entry gives the CDB length, its usage data (the bits the
 * emulation looks at; any other bit set is INVALID FIELD IN CDB), whether
 * it touches the medium (NOT READY while stopped) and how it reads or
 * writes it (RESERVATION CONFLICT under a persistent reservation).  The
 * handlers live in spc.c, sbc.c, sbc_more.c, mode.c, pr.c and reserve6.c;
 * unit attentions (ua.c) are reported before anything else is checked.
 * Both entry points, the synchronous one and the asynchronous one for READ
 * and WRITE, go through
 * the same dispatch and build their reply with the same code; the
 * asynchronous one only ends later, from the backend's completion.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "scsi/scsi_priv.h"

/* Usage of the CONTROL byte: none.  ACA is not supported (INQUIRY NormACA
 * 0), so NACA is treated as reserved: NACA 1 is INVALID FIELD IN CDB, and
 * the usage data shows the bit as 0 (SPC-4 6.35.3, SAM-5 5.3). */
#define CTL               0x00
#define HBK_TIMEOUTS_LEN  12    /* command timeouts descriptor */

enum command_flags {
	ANY_LUN  = 0x1,         /* also served when the LUN does not exist */
	MEDIA    = 0x2,         /* medium access: NOT READY while stopped */
	HAS_SA   = 0x4,         /* service action in byte 1, bits 4-0 */
	THIN     = 0x8,         /* served on thin provisioned LUNs only */
	WRITES   = 0x10,        /* writes the medium: DATA PROTECT when write protected */
	NO_UA    = 0x20,        /* never reports a unit attention (SAM-5 5.14) */
	MEDIUM   = 0x40,        /* describes the medium: NOT READY without one */
};

/* What a command does to the medium, for the reservation rules. */
enum pr_access {
	PR_ANY,                 /* allowed under any reservation */
	PR_READ,
	PR_WRITE,
	PR_START_STOP,          /* PR_ANY for START with POWER CONDITION 0h, else PR_WRITE */
	PR_PREVENT,             /* PR_ANY for PREVENT 00b, else PR_WRITE */
};

static const struct command {
	uint8_t op, sa, cdb_len, flags, pr;
	uint32_t (*run)(struct cmd_ctx *c);
	uint8_t usage[16];      /* CDB USAGE DATA: opcode, service action, used bits */
} commands[] = {  /* sorted by opcode, then service action */
#define RW10(op, b1)  { op, b1, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, CTL }
#define RW12(op, b1)  { op, b1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, CTL }
#define RW16(op, b1)  { op, b1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, \
			0xff, 0xff, 0xff, 0xff, 0x3f, CTL }
#define PRIN(sa)  { 0x5e, sa, 10, HAS_SA, PR_ANY, hbk_pr_in, \
		    { 0x5e, sa, 0, 0, 0, 0, 0, 0xff, 0xff, CTL } }
#define PROUT(sa) { 0x5f, sa, 10, HAS_SA, PR_ANY, hbk_pr_out, \
		    { 0x5f, sa, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, CTL } }
	{ 0x00, 0, 6, MEDIA, PR_ANY, hbk_spc_test_unit_ready, { 0x00, 0, 0, 0, 0, CTL } },
	{ 0x03, 0, 6, ANY_LUN | NO_UA, PR_ANY, hbk_spc_request_sense,
	  { 0x03, 0x01, 0, 0, 0xff, CTL } },
	{ 0x08, 0, 6, MEDIA, PR_READ, hbk_sbc_read, { 0x08, 0x1f, 0xff, 0xff, 0xff, CTL } },
	{ 0x0a, 0, 6, MEDIA | WRITES, PR_WRITE, hbk_sbc_write,
	  { 0x0a, 0x1f, 0xff, 0xff, 0xff, CTL } },
	{ 0x12, 0, 6, ANY_LUN | NO_UA, PR_ANY, hbk_spc_inquiry,
	  { 0x12, 0x01, 0xff, 0xff, 0xff, CTL } },
	{ 0x15, 0, 6, 0, PR_WRITE, hbk_mode_select, { 0x15, 0x11, 0, 0, 0xff, CTL } },
	{ 0x16, 0, 6, 0, PR_ANY, hbk_spc_reserve6, { 0x16, 0, 0, 0, 0, CTL } },
	{ 0x17, 0, 6, 0, PR_ANY, hbk_spc_release6, { 0x17, 0, 0, 0, 0, CTL } },
	{ 0x1a, 0, 6, 0, PR_READ, hbk_mode_sense, { 0x1a, 0x08, 0xff, 0xff, 0xff, CTL } },
	{ 0x1b, 0, 6, 0, PR_START_STOP, hbk_sbc_start_stop_unit,
	  { 0x1b, 0x01, 0, 0x0f, 0xf7, CTL } },
	{ 0x1e, 0, 6, 0, PR_PREVENT, hbk_pr_prevent_allow, { 0x1e, 0, 0, 0, 0x03, CTL } },
	{ 0x25, 0, 10, MEDIUM, PR_ANY, hbk_sbc_read_capacity10,
	  { 0x25, 0, 0, 0, 0, 0, 0, 0, 0, CTL } },
	{ 0x28, 0, 10, MEDIA, PR_READ, hbk_sbc_read, RW10(0x28, 0xfa) },
	{ 0x2a, 0, 10, MEDIA | WRITES, PR_WRITE, hbk_sbc_write, RW10(0x2a, 0xfa) },
	{ 0x2e, 0, 10, MEDIA | WRITES, PR_WRITE, hbk_sbc_write_verify, RW10(0x2e, 0xf6) },
	{ 0x2f, 0, 10, MEDIA, PR_READ, hbk_sbc_verify, RW10(0x2f, 0xf6) },
	{ 0x34, 0, 10, MEDIA, PR_READ, hbk_sbc_prefetch, RW10(0x34, 0x02) },
	{ 0x35, 0, 10, MEDIA, PR_WRITE, hbk_sbc_sync_cache, RW10(0x35, 0x02) },
	{ 0x37, 0, 10, MEDIUM, PR_READ, hbk_sbc_read_defect_data,
	  { 0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, CTL } },
	{ 0x41, 0, 10, MEDIA | WRITES, PR_WRITE, hbk_sbc_write_same, RW10(0x41, 0xf8) },
	{ 0x42, 0, 10, MEDIA | THIN | WRITES, PR_WRITE, hbk_sbc_unmap,
	  { 0x42, 0x01, 0, 0, 0, 0, 0x3f, 0xff, 0xff, CTL } },
	{ 0x55, 0, 10, 0, PR_WRITE, hbk_mode_select,
	  { 0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, CTL } },
	{ 0x5a, 0, 10, 0, PR_READ, hbk_mode_sense,
	  { 0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, CTL } },
	PRIN(HBK_PR_READ_KEYS), PRIN(HBK_PR_READ_RESERVATION),
	PRIN(HBK_PR_REPORT_CAPABILITIES), PRIN(HBK_PR_READ_FULL_STATUS),
	PROUT(HBK_PR_REGISTER), PROUT(HBK_PR_RESERVE), PROUT(HBK_PR_RELEASE),
	PROUT(HBK_PR_CLEAR), PROUT(HBK_PR_PREEMPT), PROUT(HBK_PR_PREEMPT_AND_ABORT),
	PROUT(HBK_PR_REGISTER_AND_IGNORE),
	{ 0x88, 0, 16, MEDIA, PR_READ, hbk_sbc_read, RW16(0x88, 0xfa) },
	{ 0x89, 0, 16, MEDIA | WRITES, PR_WRITE, hbk_sbc_compare_write,
	  { 0x89, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x3f, CTL } },
	{ 0x8a, 0, 16, MEDIA | WRITES, PR_WRITE, hbk_sbc_write, RW16(0x8a, 0xfa) },
	{ 0x8b, 0, 16, MEDIA | WRITES, PR_WRITE, hbk_sbc_orwrite, RW16(0x8b, 0xfa) },
	{ 0x8e, 0, 16, MEDIA | WRITES, PR_WRITE, hbk_sbc_write_verify, RW16(0x8e, 0xf6) },
	{ 0x8f, 0, 16, MEDIA, PR_READ, hbk_sbc_verify, RW16(0x8f, 0xf6) },
	{ 0x90, 0, 16, MEDIA, PR_READ, hbk_sbc_prefetch, RW16(0x90, 0x02) },
	{ 0x91, 0, 16, MEDIA, PR_WRITE, hbk_sbc_sync_cache, RW16(0x91, 0x02) },
	{ 0x93, 0, 16, MEDIA | WRITES, PR_WRITE, hbk_sbc_write_same, RW16(0x93, 0xf9) },
	{ 0x9c, 0, 16, MEDIA | WRITES, PR_WRITE, hbk_sbc_write_atomic,
	  { 0x9c, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff,
	    0x3f, CTL } },
	{ 0x9e, HBK_SCSI_SA_READ_CAPACITY16, 16, HAS_SA | MEDIUM, PR_ANY,
	  hbk_sbc_read_capacity16,
	  { 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL } },
	{ 0x9e, HBK_SCSI_SA_GET_LBA_STATUS, 16, HAS_SA | MEDIA, PR_READ, hbk_sbc_get_lba_status,
	  { 0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0, CTL } },
	{ 0xa0, 0, 12, ANY_LUN | NO_UA, PR_ANY, hbk_spc_report_luns,
	  { 0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, CTL } },
	{ 0xa3, HBK_SCSI_SA_REPORT_OPCODES, 12, HAS_SA, PR_ANY, hbk_emul_report_opcodes,
	  { 0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, CTL } },
	{ 0xa8, 0, 12, MEDIA, PR_READ, hbk_sbc_read, RW12(0xa8, 0xfa) },
	{ 0xaa, 0, 12, MEDIA | WRITES, PR_WRITE, hbk_sbc_write, RW12(0xaa, 0xfa) },
	{ 0xae, 0, 12, MEDIA | WRITES, PR_WRITE, hbk_sbc_write_verify, RW12(0xae, 0xf6) },
	{ 0xaf, 0, 12, MEDIA, PR_READ, hbk_sbc_verify, RW12(0xaf, 0xf6) },
	{ 0xb7, 0, 12, MEDIUM, PR_READ, hbk_sbc_read_defect_data,
	  { 0xb7, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, CTL } },
#undef RW10
#undef RW12
#undef RW16
#undef PRIN
#undef PROUT
};

#define HBK_NCOMMANDS (sizeof commands / sizeof commands[0])

/* The first entry of opcode op, or NULL. */
static const struct command *find_op(uint8_t op)
{
	size_t lo = 0, hi = HBK_NCOMMANDS;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (commands[mid].op < op)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < HBK_NCOMMANDS && commands[lo].op == op ? &commands[lo] : NULL;
}

/* The entry of service action sa among those of first's opcode, or NULL. */
static const struct command *find_sa(const struct command *first, unsigned sa)
{
	for (const struct command *cmd = first;
	     cmd < commands + HBK_NCOMMANDS && cmd->op == first->op; cmd++)
		if (cmd->sa == sa)
			return cmd;
	return NULL;
}

static bool served(const struct command *cmd, const struct hbk_scsi_lun *lun)
{
	return !(cmd->flags & THIN) || (lun && lun_thin(lun));
}

/* Bits the command does not use must be zero (NACA among them: see CTL):
 * INVALID FIELD IN CDB pointing at the first such bit, or 0. */
static uint32_t check_fields(struct cmd_ctx *c, const struct command *cmd)
{
	for (unsigned i = 1; i < cmd->cdb_len; i++) {
		unsigned extra = c->cdb[i] & ~cmd->usage[i] & 0xffu;

		if (extra)
			return invalid_field(c, i, 31u - (unsigned)__builtin_clz(extra));
	}
	return 0;
}

static bool conflicts(const struct command *cmd, const struct cmd_ctx *c)
{
	unsigned access = cmd->pr;

	if (access == PR_START_STOP)
		access = (c->cdb[4] & 0xf1) == 0x01 ? PR_ANY : PR_WRITE;
	else if (access == PR_PREVENT)
		access = c->cdb[4] & 0x03 ? PR_WRITE : PR_ANY;
	return access != PR_ANY && hbk_pr_conflict(c->lun, c->initiator, access == PR_WRITE);
}

static uint32_t dispatch(struct cmd_ctx *c, unsigned cdb_len)
{
	const struct command *cmd;
	unsigned state;
	uint32_t cc;

	if (!c->cdb || cdb_len == 0)
		return HBK_CC_INVALID_OPCODE;
	cmd = find_op(c->cdb[0]);
	if (!c->lun && !(cmd && (cmd->flags & ANY_LUN)))
		return HBK_CC_LUN_NOT_SUPPORTED;
	if (c->lun && (cc = hbk_ua_check(c->lun, c->initiator, !(cmd && (cmd->flags & NO_UA)))))
		return cc;
	if (!cmd || !served(cmd, c->lun))
		return HBK_CC_INVALID_OPCODE;
	if (cdb_len < cmd->cdb_len)
		return HBK_CC_INVALID_FIELD;
	if ((cmd->flags & HAS_SA) && !(cmd = find_sa(cmd, c->cdb[1] & 0x1f)))
		return invalid_field(c, 1, 4);  /* SERVICE ACTION */
	/* Without a medium, what a medium command's fields say does not matter. */
	if (c->lun && (lun_state(c->lun) & HBK_LUN_NO_MEDIUM) && (cmd->flags & (MEDIA | MEDIUM)))
		return HBK_CC(HBK_SK_NOT_READY, HBK_ASC_MEDIUM_NOT_PRESENT);
	if ((cc = check_fields(c, cmd)))
		return cc;
	if (c->lun) {
		state = lun_state(c->lun);
		if ((state & HBK_LUN_RESERVED6) && hbk_reserve6_conflict(c->lun, c->initiator, c->cdb))
			return HBK_CC_CONFLICT;
		if ((state & HBK_LUN_RESERVED) && conflicts(cmd, c))
			return HBK_CC_CONFLICT;
		if ((state & HBK_LUN_STOPPED) && (cmd->flags & MEDIA))
			return HBK_CC(HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
		if ((cmd->flags & WRITES) && c->lun->cfg.read_only)
			return HBK_CC(HBK_SK_DATA_PROTECT, HBK_ASC_WRITE_PROTECTED);
	}
	return cmd->run(c);
}

/* ---- REPORT SUPPORTED OPERATION CODES ---------------------------------------- */

/* Nominal and recommended timeouts are 0: not specified. */
static size_t timeouts_descriptor(uint8_t *p)
{
	put_be16(p, HBK_TIMEOUTS_LEN - 2);
	return HBK_TIMEOUTS_LEN;
}

static uint32_t report_all(struct cmd_ctx *c, bool rctd)
{
	size_t len = rctd ? 8 + HBK_TIMEOUTS_LEN : 8, count = 0;
	uint8_t hdr[4];

	for (size_t i = 0; i < HBK_NCOMMANDS; i++)
		count += served(&commands[i], c->lun);
	put_be32(hdr, (uint32_t)(count * len));  /* COMMAND DATA LENGTH */
	emit(c, hdr, sizeof hdr);
	for (size_t i = 0; i < HBK_NCOMMANDS; i++) {
		const struct command *cmd = &commands[i];
		uint8_t d[8 + HBK_TIMEOUTS_LEN] = { cmd->op };

		if (!served(cmd, c->lun))
			continue;
		if (cmd->flags & HAS_SA) {
			put_be16(d + 2, cmd->sa);
			d[5] |= 0x01;                    /* SERVACTV */
		}
		if (rctd) {
			d[5] |= 0x02;                    /* CTDP */
			timeouts_descriptor(d + 8);
		}
		put_be16(d + 6, cmd->cdb_len);
		emit(c, d, len);
	}
	return 0;
}

/* REPORTING OPTIONS 001b: an opcode without service actions; 010b: one with
 * them; 011b: either, the service action counting only where there is one. */
static uint32_t report_one(struct cmd_ctx *c, bool rctd, unsigned option)
{
	const struct command *cmd = find_op(c->cdb[3]);
	uint8_t d[4 + 16 + HBK_TIMEOUTS_LEN] = { 0 };
	size_t n = 4;

	if (cmd && !served(cmd, c->lun))
		cmd = NULL;
	if (cmd) {
		bool has_sa = cmd->flags & HAS_SA;

		if ((option == 1 && has_sa) || (option == 2 && !has_sa))
			return invalid_field(c, 2, 2);  /* REPORTING OPTIONS */
		if (has_sa)
			cmd = find_sa(cmd, get_be16(c->cdb + 4));
	}
	if (!cmd) {
		d[1] = 0x01;                             /* SUPPORT 001b: not supported */
		emit(c, d, n);
		return 0;
	}
	d[1] = (rctd ? 0x80 : 0) | 0x03;                 /* CTDP; SUPPORT 011b */
	put_be16(d + 2, cmd->cdb_len);
	memcpy(d + n, cmd->usage, cmd->cdb_len);
	n += cmd->cdb_len;
	if (rctd)
		n += timeouts_descriptor(d + n);
	emit(c, d, n);
	return 0;
}

uint32_t hbk_emul_report_opcodes(struct cmd_ctx *c)
{
	bool rctd = c->cdb[2] & 0x80;
	unsigned option = c->cdb[2] & 0x07;

	if (option > 3)
		return invalid_field(c, 2, 2);          /* REPORTING OPTIONS */
	data_in_begin(c, get_be32(c->cdb + 6));
	return option ? report_one(c, rctd, option) : report_all(c, rctd);
}

/* ---- Replies ---------------------------------------------------------------- */

/*
 * The reply to a command that ended with cc (0, HBK_CC_CONFLICT,
 * HBK_CC_CONDITION_MET or a packed CHECK CONDITION) having moved `bytes`;
 * info, when info_valid, goes to the sense INFORMATION field, and sks
 * (non-zero: a field pointer, see invalid_field) to the SENSE KEY SPECIFIC
 * bytes of an ILLEGAL REQUEST.  Both entry points end here.
 */
static void reply(uint32_t cc, uint64_t bytes, bool info_valid, uint64_t info, uint32_t sks,
		  struct hbk_scsi_reply *out)
{
	memset(out, 0, offsetof(struct hbk_scsi_reply, sense));
	if (cc == 0 || cc == HBK_CC_CONDITION_MET) {
		out->status = cc ? HBK_STATUS_CONDITION_MET : HBK_STATUS_GOOD;
		out->bytes = bytes;
		return;
	}
	if (cc == HBK_CC_CONFLICT) {
		out->status = HBK_STATUS_RESERVATION_CONFLICT;
		return;
	}
	out->status = HBK_STATUS_CHECK_CONDITION;
	out->sense_len = (uint8_t)hbk_scsi_sense_fixed(out->sense, (uint8_t)(cc >> 16),
						       (uint16_t)cc);
	if (info_valid && info <= UINT32_MAX) {
		out->sense[0] |= 0x80;          /* VALID: INFORMATION holds info */
		put_be32(out->sense + 3, (uint32_t)info);
	}
	if (sks && (uint8_t)(cc >> 16) == HBK_SK_ILLEGAL_REQUEST) {
		out->sense[15] = (uint8_t)(sks >> 16);  /* SKSV, C/D, BPV, BIT POINTER */
		put_be16(out->sense + 16, (uint16_t)sks); /* FIELD POINTER */
	}
}

static struct cmd_ctx cmd_init(const struct hbk_scsi_target *t, const struct hbk_scsi_req *req)
{
	return (struct cmd_ctx){
		.t = t,
		.lun = t && t->luns && req->lun < t->lun_count ? t->luns[req->lun] : NULL,
		.initiator = req->initiator,
		.cdb = req->cdb,
		.buf = req->buf,
		.in_len = req->buf && req->dir == HBK_DIR_READ ? req->buf_len : 0,
		.out_len = req->buf && req->dir == HBK_DIR_WRITE ? req->buf_len : 0,
	};
}

/* ---- Entry points ------------------------------------------------------------ */

void hbk_scsi_exec(struct hbk_scsi_target *t, const struct hbk_scsi_req *req,
		   struct hbk_scsi_reply *out)
{
	struct cmd_ctx c = cmd_init(t, req);
	uint32_t cc = dispatch(&c, req->cdb_len);

	reply(cc, c.bytes, c.info_valid, c.info, c.sks, out);
}

/* ---- Asynchronous READ and WRITE ------------------------------------------------ */

/*
 * The write gate.  A synchronous write holds lun->write_lock shared for its
 * whole backend call; an asynchronous one cannot (its end comes on another
 * thread, and a read-write lock is released by the thread that took it), so
 * it holds the lock only while it counts itself in aio_writes.  COMPARE AND
 * WRITE takes the lock alone, which keeps new writes out, then waits for
 * aio_writes to drain.  An asynchronous write never waits: when the lock is
 * not free for readers (a COMPARE AND WRITE holds it or waits for it) the
 * write is held back on aio_held, and the COMPARE AND WRITE starts it once
 * it has released the lock.
 */
static bool gate_enter(struct hbk_scsi_lun *lun, struct hbk_scsi_aio *aio)
{
	if (pthread_rwlock_tryrdlock(&lun->write_lock)) {
		/* Checked again under lun->lock, which hbk_scsi_aio_release
		 * takes after releasing write_lock: either this try succeeds or
		 * the release finds the write held back. */
		pthread_mutex_lock(&lun->lock);
		if (pthread_rwlock_tryrdlock(&lun->write_lock)) {
			aio->next_ = lun->aio_held;
			lun->aio_held = aio;
			pthread_mutex_unlock(&lun->lock);
			return false;
		}
		pthread_mutex_unlock(&lun->lock);
	}
	/* Relaxed: the read-write lock orders it; a COMPARE AND WRITE takes the
	 * lock alone only after this thread released it, and then sees it. */
	atomic_fetch_add_explicit(&lun->aio_writes, 1, memory_order_relaxed);
	pthread_rwlock_unlock(&lun->write_lock);
	return true;
}

static void gate_leave(struct hbk_scsi_lun *lun)
{
	/* Release: pairs with the acquire load in hbk_scsi_aio_drain, so the
	 * COMPARE AND WRITE reads what this write put on the medium. */
	if (atomic_fetch_sub_explicit(&lun->aio_writes, 1, memory_order_release) == 1) {
		/* Under lun->lock: a drain checks the count under it and then
		 * sleeps, releasing it, so this broadcast cannot fall between. */
		pthread_mutex_lock(&lun->lock);
		pthread_cond_broadcast(&lun->aio_idle);
		pthread_mutex_unlock(&lun->lock);
	}
}

void hbk_scsi_aio_drain(struct hbk_scsi_lun *lun)
{
	pthread_mutex_lock(&lun->lock);
	/* Acquire: pairs with the release decrement in gate_leave. */
	while (atomic_load_explicit(&lun->aio_writes, memory_order_acquire))
		pthread_cond_wait(&lun->aio_idle, &lun->lock);
	pthread_mutex_unlock(&lun->lock);
}

void hbk_writes_exclude(struct hbk_scsi_lun *lun)
{
	pthread_rwlock_wrlock(&lun->write_lock);
	hbk_scsi_aio_drain(lun);
}

void hbk_writes_admit(struct hbk_scsi_lun *lun)
{
	pthread_rwlock_unlock(&lun->write_lock);
	hbk_scsi_aio_release(lun);
}

uint32_t hbk_write_lock(struct cmd_ctx *c, bool alone)
{
	if (alone)
		hbk_writes_exclude(c->lun);
	else
		pthread_rwlock_rdlock(&c->lun->write_lock);
	if (!hbk_write_conflict(c->lun, c->initiator))
		return 0;
	hbk_write_unlock(c, alone);
	return HBK_CC_CONFLICT;
}

void hbk_write_unlock(struct cmd_ctx *c, bool alone)
{
	if (alone)
		hbk_writes_admit(c->lun);
	else
		pthread_rwlock_unlock(&c->lun->write_lock);
}

/* Hands a checked transfer to the backend; a write goes through the gate
 * and, once in, checks its reservations again (see hbk_write_lock). */
static void aio_start(struct hbk_scsi_aio *aio)
{
	struct hbk_scsi_lun *lun = aio->lun_;

	if (aio->io.write) {
		if (!gate_enter(lun, aio))
			return;         /* held back: the COMPARE AND WRITE starts it */
		if (hbk_write_conflict(lun, aio->initiator_)) {
			gate_leave(lun);
			reply(HBK_CC_CONFLICT, 0, false, 0, 0, aio->out);
			aio->done(aio);
			return;
		}
	}
	lun->cfg.ops->submit(lun->cfg.ctx, aio);
}

void hbk_scsi_aio_release(struct hbk_scsi_lun *lun)
{
	struct hbk_scsi_aio *held, *fifo = NULL;

	pthread_mutex_lock(&lun->lock);
	held = lun->aio_held;
	lun->aio_held = NULL;
	pthread_mutex_unlock(&lun->lock);
	while (held) {          /* in the order they came */
		struct hbk_scsi_aio *next = held->next_;

		held->next_ = fifo;
		fifo = held;
		held = next;
	}
	while (fifo) {
		struct hbk_scsi_aio *next = fifo->next_;

		aio_start(fifo);  /* may end it, and its owner reuse it: next first */
		fifo = next;
	}
}

/* Whether cdb is one the asynchronous entry serves: READ or WRITE 6/10/12/16. */
static bool aio_served(const uint8_t *cdb, unsigned cdb_len)
{
	const struct command *cmd = cdb && cdb_len ? find_op(cdb[0]) : NULL;

	return cmd && (cmd->run == hbk_sbc_read || cmd->run == hbk_sbc_write);
}

int hbk_scsi_exec_async(struct hbk_scsi_target *t, const struct hbk_scsi_req *req,
			struct hbk_scsi_aio *aio)
{
	struct cmd_ctx c = cmd_init(t, req);
	uint32_t cc;

	if (!c.lun || !c.lun->cfg.ops->submit || !aio_served(req->cdb, req->cdb_len))
		return -EWOULDBLOCK;
	c.aio = aio;
	cc = dispatch(&c, req->cdb_len);
	if (!c.async) {         /* refused by a check, or nothing to move */
		reply(cc, c.bytes, c.info_valid, c.info, c.sks, aio->out);
		aio->done(aio);
		return 0;
	}
	aio_start(aio);         /* aio may be ended and gone when this returns */
	return 0;
}

void hbk_scsi_aio_end(struct hbk_scsi_aio *aio, int result)
{
	struct hbk_scsi_lun *lun = aio->lun_;
	bool write = aio->io.write;
	uint32_t cc = result ? backend_error(result, write) : 0;

	if (write)
		gate_leave(lun);
	reply(cc, cc ? 0 : aio->bytes_, false, 0, 0, aio->out);
	aio->done(aio);
}

void hbk_scsi_execute(struct hbk_scsi_target *t, uint64_t lun,
		      const uint8_t *cdb, unsigned cdb_len,
		      void *buf, uint64_t buf_len, enum hbk_dir dir,
		      struct hbk_scsi_reply *out)
{
	const struct hbk_scsi_req req = {
		.lun = lun, .cdb = cdb, .cdb_len = cdb_len,
		.buf = buf, .buf_len = buf_len, .dir = dir,
	};

	hbk_scsi_exec(t, &req, out);
}

/* ---- LUN lifetime ------------------------------------------------------------- */

static void copy_padded(char *dst, size_t size, const char *src)
{
	size_t len = src ? strnlen(src, size) : 0;

	memcpy(dst, src ? src : "", len);
	memset(dst + len, ' ', size - len);
}

int hbk_scsi_lun_init(struct hbk_scsi_lun *lun, const struct hbk_scsi_lun_cfg *cfg)
{
	pthread_rwlockattr_t attr;
	uint32_t bs;
	int err;

	if (!lun || !cfg || !cfg->ops || !cfg->ops->read || !cfg->ops->write)
		return -EINVAL;
	bs = cfg->block_size;
	if (bs < 512 || bs > 65536 || (bs & (bs - 1)) || cfg->nblocks == 0 ||
	    !hbk_sbc_cfg_valid(cfg))
		return -EINVAL;
	memset(lun, 0, sizeof *lun);
	lun->cfg = *cfg;
	copy_padded(lun->vendor, sizeof lun->vendor, cfg->vendor);
	copy_padded(lun->product, sizeof lun->product, cfg->product);
	copy_padded(lun->revision, sizeof lun->revision, cfg->revision);
	atomic_init(&lun->state, cfg->write_cache ? HBK_LUN_WCE : 0u);
	atomic_init(&lun->aio_writes, 0u);
	hbk_ua_init(lun);
	err = pthread_mutex_init(&lun->lock, NULL);
	if (err)
		return -err;
	err = pthread_cond_init(&lun->aio_idle, NULL);
	if (err) {
		pthread_mutex_destroy(&lun->lock);
		return -err;
	}
	/* Writers first, or a stream of writes could starve COMPARE AND WRITE. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	err = pthread_rwlock_init(&lun->write_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (err) {
		pthread_cond_destroy(&lun->aio_idle);
		pthread_mutex_destroy(&lun->lock);
		return -err;
	}
	return 0;
}

void hbk_scsi_lun_fini(struct hbk_scsi_lun *lun)
{
	pthread_rwlock_destroy(&lun->write_lock);
	pthread_cond_destroy(&lun->aio_idle);
	pthread_mutex_destroy(&lun->lock);
}
