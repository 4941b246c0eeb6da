/* SPDX-License-Identifier: MIT */
/*
 * Private half of the SCSI layer: the operation codes the block-target
 * emulation serves, the limits it advertises, the context one command runs
 * in and the helpers every command file shares (data-in, range checks,
 * backend errors), and the handlers each file exports to the command table
 * in emul.c.  Shared by the files of src/scsi and the SCSI unit tests;
 * nothing else includes it.
 */
#ifndef HBK_SCSI_PRIV_H
#define HBK_SCSI_PRIV_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "common/bytes.h"
#include "hbk/scsi.h"

/* ---- Operation codes served by the emulation (SPC-5, SBC-4) ------------- */

#define HBK_SCSI_OP_TEST_UNIT_READY      0x00
#define HBK_SCSI_OP_REQUEST_SENSE        0x03
#define HBK_SCSI_OP_READ6                0x08
#define HBK_SCSI_OP_WRITE6               0x0a
#define HBK_SCSI_OP_INQUIRY              0x12
#define HBK_SCSI_OP_MODE_SELECT6         0x15
#define HBK_SCSI_OP_RESERVE6             0x16
#define HBK_SCSI_OP_RELEASE6             0x17
#define HBK_SCSI_OP_MODE_SENSE6          0x1a
#define HBK_SCSI_OP_START_STOP_UNIT      0x1b
#define HBK_SCSI_OP_PREVENT_ALLOW        0x1e
#define HBK_SCSI_OP_READ_CAPACITY10      0x25
#define HBK_SCSI_OP_READ10               0x28
#define HBK_SCSI_OP_WRITE10              0x2a
#define HBK_SCSI_OP_WRITE_VERIFY10       0x2e
#define HBK_SCSI_OP_VERIFY10             0x2f
#define HBK_SCSI_OP_PREFETCH10           0x34
#define HBK_SCSI_OP_SYNC_CACHE10         0x35
#define HBK_SCSI_OP_READ_DEFECT10        0x37
#define HBK_SCSI_OP_WRITE_SAME10         0x41
#define HBK_SCSI_OP_UNMAP                0x42
#define HBK_SCSI_OP_MODE_SELECT10        0x55
#define HBK_SCSI_OP_MODE_SENSE10         0x5a
#define HBK_SCSI_OP_PR_IN                0x5e
#define HBK_SCSI_OP_PR_OUT               0x5f
#define HBK_SCSI_OP_READ16               0x88
#define HBK_SCSI_OP_COMPARE_AND_WRITE    0x89
#define HBK_SCSI_OP_WRITE16              0x8a
#define HBK_SCSI_OP_ORWRITE16            0x8b
#define HBK_SCSI_OP_WRITE_VERIFY16       0x8e
#define HBK_SCSI_OP_VERIFY16             0x8f
#define HBK_SCSI_OP_PREFETCH16           0x90
#define HBK_SCSI_OP_SYNC_CACHE16         0x91
#define HBK_SCSI_OP_WRITE_SAME16         0x93
#define HBK_SCSI_OP_WRITE_ATOMIC16       0x9c
#define HBK_SCSI_OP_SERVICE_ACTION_IN16  0x9e
#define HBK_SCSI_OP_REPORT_LUNS          0xa0
#define HBK_SCSI_OP_MAINTENANCE_IN       0xa3
#define HBK_SCSI_OP_READ12               0xa8
#define HBK_SCSI_OP_WRITE12              0xaa
#define HBK_SCSI_OP_WRITE_VERIFY12       0xae
#define HBK_SCSI_OP_VERIFY12             0xaf
#define HBK_SCSI_OP_READ_DEFECT12        0xb7

#define HBK_SCSI_SA_READ_CAPACITY16      0x10  /* SERVICE ACTION IN(16) */
#define HBK_SCSI_SA_GET_LBA_STATUS       0x12
#define HBK_SCSI_SA_REPORT_OPCODES       0x0c  /* MAINTENANCE IN */

/* PERSISTENT RESERVE IN / OUT service actions and reservation types. */
enum hbk_pr_in_sa {
	HBK_PR_READ_KEYS = 0, HBK_PR_READ_RESERVATION, HBK_PR_REPORT_CAPABILITIES,
	HBK_PR_READ_FULL_STATUS,
};
enum hbk_pr_out_sa {
	HBK_PR_REGISTER = 0, HBK_PR_RESERVE, HBK_PR_RELEASE, HBK_PR_CLEAR,
	HBK_PR_PREEMPT, HBK_PR_PREEMPT_AND_ABORT, HBK_PR_REGISTER_AND_IGNORE,
};
enum hbk_pr_type {
	HBK_PR_WE = 1, HBK_PR_EA = 3, HBK_PR_WE_RO = 5, HBK_PR_EA_RO = 6,
	HBK_PR_WE_AR = 7, HBK_PR_EA_AR = 8,
};

/* ---- Sizes and limits ---------------------------------------------------- */

#define HBK_SCSI_SENSE_FIXED_LEN  18u     /* fixed-format sense, SPC-5 4.4.3 */
#define HBK_SCSI_LUN_FLAT_MAX     0x4000u /* LUNs 0..16383 fit one level */
#define HBK_SCSI_SERIAL_MAX       128u    /* longer serials are truncated */
#define HBK_SCSI_MAX_UNMAP_DESC   256u    /* VPD B0 default: descriptors per UNMAP */
#define HBK_SCSI_WRITE_SAME_MAX   65535u  /* VPD B0 default MAXIMUM WRITE SAME LENGTH */
#define HBK_SCSI_CAW_MAX          255u    /* NUMBER OF LOGICAL BLOCKS is one byte */
#define HBK_SCSI_CHUNK_BYTES      (256u << 10) /* scratch for VERIFY and WRITE SAME */
#define HBK_SCSI_ATOMIC_MAX       65535u  /* WRITE ATOMIC(16) TRANSFER LENGTH is two bytes */

/* Bits of struct hbk_scsi_lun.state. */
#define HBK_LUN_STOPPED   0x1u    /* START STOP UNIT stopped it */
#define HBK_LUN_RESERVED  0x2u    /* a persistent reservation exists */
#define HBK_LUN_WCE       0x4u    /* caching mode page WCE (write back) */
#define HBK_LUN_RESERVED6 0x8u    /* RESERVE(6) holds it (lun->reserve6_holder) */
#define HBK_LUN_NO_MEDIUM 0x10u   /* the removable medium is ejected */

/* ---- One command in flight ------------------------------------------------ */

/*
 * A command handler answers 0 for GOOD, HBK_CC_CONFLICT for RESERVATION
 * CONFLICT, HBK_CC_CONDITION_MET for CONDITION MET, or a CHECK CONDITION
 * packed as (sense key << 16 | ASC << 8 |
 * ASCQ); no handler ever fails with NO SENSE, so 0 is never ambiguous.
 */
#define HBK_CC(key, asc_ascq) ((uint32_t)(key) << 16 | (uint32_t)(asc_ascq))
#define HBK_CC_CONFLICT       (1u << 24)
#define HBK_CC_CONDITION_MET  (2u << 24)  /* success, status CONDITION MET */
#define HBK_CC_INVALID_OPCODE \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_OPCODE)
#define HBK_CC_INVALID_FIELD \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_CDB)
#define HBK_CC_INVALID_PARAM \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM)
#define HBK_CC_PARAM_LENGTH \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_PARAM_LIST_LENGTH_ERROR)
#define HBK_CC_LBA_OUT_OF_RANGE \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE)
#define HBK_CC_LUN_NOT_SUPPORTED \
	HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LUN_NOT_SUPPORTED)
#define HBK_CC_MISCOMPARE \
	HBK_CC(HBK_SK_MISCOMPARE, HBK_ASC_MISCOMPARE_VERIFY)

struct cmd_ctx {
	const struct hbk_scsi_target *t;
	struct hbk_scsi_lun *lun;   /* NULL: the addressed LUN does not exist */
	uint64_t initiator;         /* the I_T nexus the command came by */
	const uint8_t *cdb;
	uint8_t *buf;
	uint64_t in_len;            /* data-in room; 0 unless HBK_DIR_READ */
	uint64_t out_len;           /* data-out supplied; 0 unless HBK_DIR_WRITE */
	uint64_t cap;               /* data-in limit: allocation length and room */
	uint64_t bytes;             /* moved into or out of buf */
	uint64_t info;              /* sense INFORMATION field, when info_valid */
	bool     info_valid;
	/* SENSE KEY SPECIFIC field pointer of an INVALID FIELD (sense bytes
	 * 15-17, SPC-5 4.4.2.4.2), 0 for none; see invalid_field. */
	uint32_t sks;
	/* hbk_scsi_exec_async: READ and WRITE, once checked, describe their
	 * transfer in aio and set async instead of calling the backend. */
	struct hbk_scsi_aio *aio;
	bool     async;
};

/* ---- Shared helpers ------------------------------------------------------- */

static inline unsigned lun_state(const struct hbk_scsi_lun *lun)
{
	return atomic_load_explicit(&lun->state, memory_order_acquire);
}

/* Sets or clears state bits atomically.  Reservation changes do it under
 * lun->lock, so HBK_LUN_RESERVED always matches pr_type there. */
static inline void lun_state_set(struct hbk_scsi_lun *lun, unsigned bits, bool on)
{
	if (on)
		atomic_fetch_or_explicit(&lun->state, bits, memory_order_release);
	else
		atomic_fetch_and_explicit(&lun->state, ~bits, memory_order_release);
}

static inline bool lun_thin(const struct hbk_scsi_lun *lun)
{
	return lun->cfg.ops->unmap != NULL;
}

/* WRITE SAME may unmap instead of writing zeros only when unmapped blocks
 * read back as zeros, so a read always returns what the command wrote. */
static inline bool lun_ws_unmaps(const struct hbk_scsi_lun *lun)
{
	return lun_thin(lun) && lun->cfg.lbprz;
}

static inline uint32_t lun_ws_limit(const struct hbk_scsi_lun *lun)
{
	return lun->cfg.max_write_same_blocks ? lun->cfg.max_write_same_blocks
					      : HBK_SCSI_WRITE_SAME_MAX;
}

/* WRITE ATOMIC: the configured limit, within the maximum transfer length
 * and the two-byte TRANSFER LENGTH. */
static inline uint32_t cfg_atomic_limit(const struct hbk_scsi_lun_cfg *cfg)
{
	uint32_t max = cfg->max_atomic_blocks ? cfg->max_atomic_blocks : HBK_SCSI_ATOMIC_MAX;

	if (cfg->max_xfer_blocks && max > cfg->max_xfer_blocks)
		max = cfg->max_xfer_blocks;
	return max > HBK_SCSI_ATOMIC_MAX ? HBK_SCSI_ATOMIC_MAX : max;
}

/* COMPARE AND WRITE moves twice its block count: keep that within the
 * maximum transfer length. */
static inline uint32_t lun_caw_limit(const struct hbk_scsi_lun *lun)
{
	uint32_t max = lun->cfg.max_xfer_blocks / 2;

	if (!lun->cfg.max_xfer_blocks || max > HBK_SCSI_CAW_MAX)
		return HBK_SCSI_CAW_MAX;
	return max ? max : 1;
}

/* The sense-key specific bytes of a field pointer: SKSV, C/D (the CDB, else
 * the parameter list), BPV with the bit, then the byte. */
static inline uint32_t sks_field_pointer(bool cdb, unsigned byte, unsigned bit)
{
	return (0x80u | (cdb ? 0x40u : 0) | 0x08u | (bit & 0x07u)) << 16 | (byte & 0xffffu);
}

/*
 * INVALID FIELD IN CDB, pointing the initiator at bit `bit` of CDB byte
 * `byte`: the most significant bit of the offending field (SPC-5
 * 4.4.2.4.2), or the offending bit of a reserved one.  Returns the packed
 * CHECK CONDITION for the handler to return.
 */
static inline uint32_t invalid_field(struct cmd_ctx *c, unsigned byte, unsigned bit)
{
	c->sks = sks_field_pointer(true, byte, bit);
	return HBK_CC_INVALID_FIELD;
}

/* INVALID FIELD IN PARAMETER LIST at bit `bit` of byte `byte` of the
 * parameter data, as invalid_field. */
static inline uint32_t invalid_param(struct cmd_ctx *c, unsigned byte, unsigned bit)
{
	c->sks = sks_field_pointer(false, byte, bit);
	return HBK_CC_INVALID_PARAM;
}

static inline void data_in_begin(struct cmd_ctx *c, uint64_t alloc_len)
{
	c->cap = alloc_len < c->in_len ? alloc_len : c->in_len;
	c->bytes = 0;
}

/* Appends reply bytes; whatever lies beyond the limit is dropped. */
static inline void emit(struct cmd_ctx *c, const void *data, size_t len)
{
	uint64_t room = c->cap - c->bytes;

	if (len > room)
		len = (size_t)room;
	if (len == 0)
		return;
	memcpy(c->buf + c->bytes, data, len);
	c->bytes += len;
}

/* LBA OUT OF RANGE unless lba..lba+nblocks-1 lies on the medium. */
static inline uint32_t check_range(const struct hbk_scsi_lun *lun, uint64_t lba,
				   uint64_t nblocks)
{
	uint64_t capacity = lun->cfg.nblocks;

	if (lba > capacity || nblocks > capacity - lba)
		return HBK_CC_LBA_OUT_OF_RANGE;
	return 0;
}

/* The sense a backend -errno turns into (see struct hbk_scsi_backend_ops). */
static inline uint32_t backend_error(int err, bool write)
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

/* ---- The write gate of asynchronous writes (emul.c) ------------------------ */

/* COMPARE AND WRITE, holding lun->write_lock alone: waits until no
 * asynchronous write is in flight.  Takes lun->lock. */
void hbk_scsi_aio_drain(struct hbk_scsi_lun *lun);

/*
 * Takes c's LUN's write lock before c writes the medium, shared or (alone)
 * exclusive with no asynchronous write in flight, and checks c's
 * reservations again: a PREEMPT AND ABORT or a RESERVE(6) may have come
 * while c waited.  Returns 0 with the lock held, or the RESERVATION
 * CONFLICT answer without it.  hbk_write_unlock releases it.
 */
uint32_t hbk_write_lock(struct cmd_ctx *c, bool alone);
void hbk_write_unlock(struct cmd_ctx *c, bool alone);

/* The write lock alone, no asynchronous write in flight, and back: for
 * what must not overlap any write (hbk_write_lock uses them). */
void hbk_writes_exclude(struct hbk_scsi_lun *lun);
void hbk_writes_admit(struct hbk_scsi_lun *lun);

/* COMPARE AND WRITE, after releasing lun->write_lock: starts the
 * asynchronous writes held back meanwhile.  Takes lun->lock. */
void hbk_scsi_aio_release(struct hbk_scsi_lun *lun);

/* ---- Handlers, by file (each: 0 or a packed CHECK CONDITION) -------------- */

/* spc.c: primary commands. */
uint32_t hbk_spc_test_unit_ready(struct cmd_ctx *c);
uint32_t hbk_spc_request_sense(struct cmd_ctx *c);
uint32_t hbk_spc_inquiry(struct cmd_ctx *c);
uint32_t hbk_spc_report_luns(struct cmd_ctx *c);

/* sbc.c: block commands. */
uint32_t hbk_sbc_read(struct cmd_ctx *c);
uint32_t hbk_sbc_write(struct cmd_ctx *c);
uint32_t hbk_sbc_verify(struct cmd_ctx *c);
uint32_t hbk_sbc_write_verify(struct cmd_ctx *c);
uint32_t hbk_sbc_write_same(struct cmd_ctx *c);
uint32_t hbk_sbc_compare_write(struct cmd_ctx *c);
uint32_t hbk_sbc_sync_cache(struct cmd_ctx *c);
uint32_t hbk_sbc_unmap(struct cmd_ctx *c);
uint32_t hbk_sbc_read_capacity10(struct cmd_ctx *c);
uint32_t hbk_sbc_read_capacity16(struct cmd_ctx *c);
uint32_t hbk_sbc_get_lba_status(struct cmd_ctx *c);
uint32_t hbk_sbc_start_stop(struct cmd_ctx *c);

/* mode.c: MODE SENSE and MODE SELECT, 6 and 10. */
uint32_t hbk_mode_sense(struct cmd_ctx *c);
uint32_t hbk_mode_select(struct cmd_ctx *c);

/* pr.c: persistent reservations and the other per-I_T-nexus state. */
uint32_t hbk_pr_in(struct cmd_ctx *c);
uint32_t hbk_pr_out(struct cmd_ctx *c);
uint32_t hbk_pr_prevent_allow(struct cmd_ctx *c);
/* Whether the reservation keeps c->initiator from a command that writes
 * (write) or only reads the medium.  Takes lun->lock. */
bool hbk_pr_conflict(struct hbk_scsi_lun *lun, uint64_t initiator, bool write);

/* Whether a write by initiator conflicts with the LUN's reservations now,
 * RESERVE(6) or persistent.  Takes lun->lock. */
bool hbk_write_conflict(struct hbk_scsi_lun *lun, uint64_t initiator);
/* Whether any I_T nexus prevents medium removal.  Takes lun->lock. */
bool hbk_pr_removal_prevented(struct hbk_scsi_lun *lun);

/* pr.c, for reserve6.c, sbc_more.c and ua.c (lun->lock held): whether any
 * nexus is registered or prevents medium removal; what a reset and the
 * loss of a nexus end. */
bool hbk_pr_registered_locked(const struct hbk_scsi_lun *lun);
/* pr.c, for reserve6.c (lun->lock held): initiator's registered key (0:
 * none), and whether it holds the persistent reservation. */
uint64_t hbk_pr_key_locked(struct hbk_scsi_lun *lun, uint64_t initiator);
bool hbk_pr_holds_locked(struct hbk_scsi_lun *lun, uint64_t initiator);
bool hbk_pr_prevented_locked(const struct hbk_scsi_lun *lun);
void hbk_pr_lun_reset_locked(struct hbk_scsi_lun *lun);
void hbk_pr_nexus_loss_locked(struct hbk_scsi_lun *lun, uint64_t initiator);

/* sbc_more.c: more block commands, and the configuration they read. */
uint32_t hbk_sbc_prefetch(struct cmd_ctx *c);
uint32_t hbk_sbc_orwrite(struct cmd_ctx *c);
uint32_t hbk_sbc_write_atomic(struct cmd_ctx *c);
uint32_t hbk_sbc_read_defect_data(struct cmd_ctx *c);
uint32_t hbk_sbc_start_stop_unit(struct cmd_ctx *c);
bool hbk_sbc_cfg_valid(const struct hbk_scsi_lun_cfg *cfg);

/* reserve6.c: RESERVE(6) and RELEASE(6); whether the RESERVE(6) holder
 * keeps c's nexus from the command cdb (takes lun->lock). */
uint32_t hbk_spc_reserve6(struct cmd_ctx *c);
uint32_t hbk_spc_release6(struct cmd_ctx *c);
bool hbk_reserve6_conflict(struct hbk_scsi_lun *lun, uint64_t initiator, const uint8_t *cdb);

/* ua.c: unit attention conditions, by bit in order of precedence. */
#define HBK_UA_FORGOTTEN      0x01u   /* 29h/00h POWER ON, RESET, OR BUS DEVICE RESET OCCURRED */
#define HBK_UA_RESET          0x02u   /* 29h/03h BUS DEVICE RESET FUNCTION OCCURRED */
#define HBK_UA_MODE_CHANGED   0x04u   /* 2Ah/01h MODE PARAMETERS CHANGED */
#define HBK_UA_RES_PREEMPTED  0x08u   /* 2Ah/03h RESERVATIONS PREEMPTED */
#define HBK_UA_RES_RELEASED   0x10u   /* 2Ah/04h RESERVATIONS RELEASED */
#define HBK_UA_REG_PREEMPTED  0x20u   /* 2Ah/05h REGISTRATIONS PREEMPTED */

void hbk_ua_init(struct hbk_scsi_lun *lun);
/* Notes that `initiator` uses the LUN and, when report, takes its pending
 * condition of highest precedence: the packed UNIT ATTENTION, or 0.
 * Without lun->lock unless one is pending or the nexus is new. */
uint32_t hbk_ua_check(struct hbk_scsi_lun *lun, uint64_t initiator, bool report);
/* REQUEST SENSE: takes that condition as ASC/ASCQ; 0 = none (takes lun->lock). */
uint16_t hbk_ua_take(struct hbk_scsi_lun *lun, uint64_t initiator);
/* Establish conditions ua for `initiator`, or for every nexus but
 * `except` (lun->lock held). */
void hbk_ua_set_locked(struct hbk_scsi_lun *lun, uint64_t initiator, unsigned ua);
void hbk_ua_set_others_locked(struct hbk_scsi_lun *lun, uint64_t except, unsigned ua);

/* emul.c: REPORT SUPPORTED OPERATION CODES, built from the command table. */
uint32_t hbk_emul_report_opcodes(struct cmd_ctx *c);

#endif /* HBK_SCSI_PRIV_H */
