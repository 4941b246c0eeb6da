/* SPDX-License-Identifier: MIT */
/*
 * hbakit SCSI layer: the SCSI result type, sense building and decoding, LUN
 * address decoding, and the SCSI block-target emulation that every driver
 * shares.  The emulation turns a CDB into calls on a block backend (read,
 * write, flush, unmap) and answers with a status, sense data and a transfer
 * count; it never touches the wire ABI slots itself.
 */
#ifndef HBK_SCSI_H
#define HBK_SCSI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hbk/abi.h"

/* Sense keys. */
enum hbk_sense_key {
	HBK_SK_NO_SENSE = 0x0, HBK_SK_RECOVERED_ERROR = 0x1, HBK_SK_NOT_READY = 0x2,
	HBK_SK_MEDIUM_ERROR = 0x3, HBK_SK_HARDWARE_ERROR = 0x4,
	HBK_SK_ILLEGAL_REQUEST = 0x5, HBK_SK_UNIT_ATTENTION = 0x6,
	HBK_SK_DATA_PROTECT = 0x7, HBK_SK_BLANK_CHECK = 0x8,
	HBK_SK_ABORTED_COMMAND = 0xb, HBK_SK_MISCOMPARE = 0xe,
};

/* Additional sense codes used by the emulation, as (asc << 8 | ascq). */
#define HBK_ASC_INVALID_OPCODE          0x2000
#define HBK_ASC_LBA_OUT_OF_RANGE        0x2100
#define HBK_ASC_INVALID_FIELD_IN_CDB    0x2400
#define HBK_ASC_LUN_NOT_SUPPORTED       0x2500
#define HBK_ASC_INVALID_FIELD_IN_PARAM  0x2600
#define HBK_ASC_PARAM_LIST_LENGTH_ERROR 0x1a00
#define HBK_ASC_WRITE_ERROR             0x0c00
#define HBK_ASC_UNRECOVERED_READ_ERROR  0x1100
#define HBK_ASC_INTERNAL_TARGET_FAILURE 0x4400
#define HBK_ASC_POWER_ON_RESET          0x2900
#define HBK_ASC_NOT_READY_CAUSE_UNKNOWN 0x0400
#define HBK_ASC_MISCOMPARE_VERIFY       0x1d00
#define HBK_ASC_SPACE_ALLOC_FAILED      0x2707 /* with DATA PROTECT */
#define HBK_ASC_SAVING_PARAMS_NOT_SUPPORTED 0x3900

/*
 * The outcome of one SCSI command as the initiator sees it: either the task
 * completed (service == HBK_SR_TASK_COMPLETE, status is the SCSI status and,
 * for CHECK CONDITION, key/asc/ascq come from the sense data), or it was not
 * delivered (service == HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE, status is
 * an enum hbk_delivery_status).  Never mixed into an errno.
 */
struct hbk_scsi_result {
	uint8_t  service;   /* enum hbk_service_response */
	uint8_t  status;    /* enum hbk_task_status or enum hbk_delivery_status */
	uint8_t  sense_key; /* enum hbk_sense_key, 0 if no sense */
	uint8_t  asc;
	uint8_t  ascq;
	uint8_t  rsvd[3];
	uint64_t bytes;     /* bytes transferred */
};

/* True when the result is TASK_COMPLETE with GOOD or CONDITION MET. */
static inline bool hbk_scsi_ok(const struct hbk_scsi_result *r)
{
	return r->service == HBK_SR_TASK_COMPLETE &&
	       (r->status == HBK_STATUS_GOOD || r->status == HBK_STATUS_CONDITION_MET);
}

/*
 * Builds fixed-format sense data (response code 0x70) into buf, which must
 * hold at least 18 bytes.  Returns the sense length (18).  Any thread.
 */
int hbk_scsi_sense_fixed(uint8_t *buf, uint8_t key, uint16_t asc_ascq);

/*
 * Decodes fixed (0x70/0x71) or descriptor (0x72/0x73) sense data into
 * key/asc/ascq of *r.  Returns 0, or -EINVAL when the data is too short or
 * not sense data (then *r's sense fields are zeroed).  Any thread.
 */
int hbk_scsi_sense_decode(const uint8_t *sense, size_t len, struct hbk_scsi_result *r);

/*
 * Human-readable "KEY/asc/ascq" text for a result, written to buf (NUL
 * terminated, truncated to size).  Returns buf.  Any thread.
 */
const char *hbk_scsi_result_str(const struct hbk_scsi_result *r, char *buf, size_t size);

/* SAM 8-byte LUN <-> LUN number (peripheral and flat addressing).
 * hbk_scsi_lun_decode returns the LUN number, or UINT64_MAX for an address
 * method the emulation does not serve. */
uint64_t hbk_scsi_lun_decode(const uint8_t lun[8]);
void hbk_scsi_lun_encode(uint64_t lun, uint8_t out[8]);

/* ---- Block backend ------------------------------------------------------ */

/*
 * What the emulation calls to move data.  Each returns 0 or -errno:
 * -EIO is reported as MEDIUM ERROR (unrecovered read / write error),
 * -ENOSPC as DATA PROTECT/space allocation failed, anything else as
 * HARDWARE ERROR / internal target failure.  Calls may come from several
 * threads at once; the backend serialises what it must.
 */
struct hbk_scsi_backend_ops {
	int (*read)(void *ctx, uint64_t lba, uint32_t nblocks, void *buf);
	int (*write)(void *ctx, uint64_t lba, uint32_t nblocks, const void *buf, bool fua);
	int (*flush)(void *ctx);
	/* NULL: the LUN is not thin provisioned (UNMAP refused). */
	int (*unmap)(void *ctx, uint64_t lba, uint64_t nblocks);
};

/* How a LUN presents itself.  Strings are copied (space padded on the wire). */
struct hbk_scsi_lun_cfg {
	const char *vendor;        /* <= 8 chars */
	const char *product;       /* <= 16 chars */
	const char *revision;      /* <= 4 chars */
	const char *serial;        /* unit serial number, VPD 0x80 */
	uint64_t    naa;           /* NAA-6 identifier high 64 bits, VPD 0x83 */
	uint32_t    block_size;    /* 512 or 4096 */
	uint64_t    nblocks;
	uint32_t    max_xfer_blocks;   /* VPD B0 maximum transfer length, 0 = none */
	uint32_t    opt_xfer_blocks;   /* VPD B0 optimal transfer length */
	bool        write_cache;       /* WCE in the caching mode page */
	bool        rotational;        /* VPD B1 rotation rate: false = non-rotating */
	const struct hbk_scsi_backend_ops *ops;
	void       *ctx;
};

/* One emulated logical unit.  Initialise with hbk_scsi_lun_init. */
struct hbk_scsi_lun {
	struct hbk_scsi_lun_cfg cfg;
	char vendor[8], product[16], revision[4];
	pthread_mutex_t lock;      /* guards the state below */
	uint8_t sense[18];         /* last CHECK CONDITION, for REQUEST SENSE */
	uint8_t sense_len;
};

/* A target: the LUNs it serves, indexed by LUN number. */
struct hbk_scsi_target {
	uint32_t lun_count;
	struct hbk_scsi_lun **luns; /* lun_count entries; NULL = hole */
};

/*
 * Initialises *lun from *cfg.  Returns 0, or -EINVAL for a block size that
 * is not 512..65536 and a power of two, a zero block count or missing ops.
 */
int hbk_scsi_lun_init(struct hbk_scsi_lun *lun, const struct hbk_scsi_lun_cfg *cfg);
void hbk_scsi_lun_fini(struct hbk_scsi_lun *lun);

/* What the emulation answers. */
struct hbk_scsi_reply {
	uint8_t  status;          /* enum hbk_task_status */
	uint8_t  sense_len;       /* 0, or 18 with CHECK CONDITION */
	uint8_t  rsvd[6];
	uint64_t bytes;           /* bytes moved to/from buf */
	uint8_t  sense[HBK_SENSE_BUF];
};

/*
 * Executes one CDB against LUN number `lun` of `t`.  buf/buf_len is the
 * initiator's data buffer (data-in for HBK_DIR_READ, data-out for
 * HBK_DIR_WRITE); the emulation never moves more than buf_len bytes and
 * answers CHECK CONDITION when the CDB asks for more data-out than supplied.
 * Handles TEST UNIT READY, INQUIRY (standard, VPD 00/80/83/B0/B1), REPORT
 * LUNS, READ CAPACITY 10/16, READ/WRITE 6/10/12/16, SYNCHRONIZE CACHE 10/16,
 * UNMAP, MODE SENSE 6/10, REQUEST SENSE; anything else gets CHECK CONDITION,
 * ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.  Safe to call from several
 * threads at once for different or the same LUN.
 */
void hbk_scsi_execute(struct hbk_scsi_target *t, uint64_t lun,
		      const uint8_t *cdb, unsigned cdb_len,
		      void *buf, uint64_t buf_len, enum hbk_dir dir,
		      struct hbk_scsi_reply *out);

#endif /* HBK_SCSI_H */
