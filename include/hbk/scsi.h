/* SPDX-License-Identifier: MIT */
/*
 * hbakit SCSI layer: the SCSI result type, sense building and decoding, LUN
 * address decoding, and the SCSI block-target emulation that every driver
 * shares.  The emulation turns a CDB into calls on a block backend (read,
 * write, flush, unmap, mapping state) and answers with a status, sense data
 * and a transfer count; it never touches the wire ABI slots itself.  It keeps
 * per-LUN state: mode parameters, started/stopped, the removable medium, and
 * per I_T nexus (the initiator of each command) persistent and RESERVE(6)
 * reservations, medium removal prevention and pending unit attentions,
 * which the task management entry points (hbk_scsi_lun_reset and friends)
 * reset.  Commands run synchronously (hbk_scsi_exec), or, for READ and
 * WRITE on a backend that can start a transfer and end it later,
 * asynchronously (hbk_scsi_exec_async): checked on the caller's thread,
 * answered from the backend's completion.
 */
#ifndef HBK_SCSI_H
#define HBK_SCSI_H

#include <pthread.h>
#include <stdatomic.h>
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
#define HBK_ASC_NOT_READY_INIT_REQUIRED 0x0402 /* stopped: START UNIT needed */
#define HBK_ASC_MISCOMPARE_VERIFY       0x1d00
#define HBK_ASC_SPACE_ALLOC_FAILED      0x2707 /* with DATA PROTECT */
#define HBK_ASC_SAVING_PARAMS_NOT_SUPPORTED 0x3900
#define HBK_ASC_INVALID_RELEASE_OF_PR   0x2604
#define HBK_ASC_MEDIUM_REMOVAL_PREVENTED 0x5302
#define HBK_ASC_INSUFFICIENT_RESOURCES  0x5503
#define HBK_ASC_INSUFFICIENT_REG_RESOURCES 0x5504
#define HBK_ASC_WRITE_PROTECTED         0x2700 /* with DATA PROTECT */
#define HBK_ASC_MEDIUM_NOT_PRESENT      0x3a00 /* with NOT READY */
#define HBK_ASC_BUS_DEVICE_RESET        0x2903 /* unit attention: LUN or target reset */
#define HBK_ASC_MODE_PARAMETERS_CHANGED 0x2a01 /* unit attention */
#define HBK_ASC_RESERVATIONS_PREEMPTED  0x2a03 /* unit attention */
#define HBK_ASC_RESERVATIONS_RELEASED   0x2a04 /* unit attention */
#define HBK_ASC_REGISTRATIONS_PREEMPTED 0x2a05 /* unit attention */

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
	uint8_t  flags;     /* HBK_SCSI_RESULT_* */
	uint8_t  rsvd[2];
	uint64_t bytes;     /* bytes transferred */
};

/* The sense data reports an earlier command's error (deferred sense,
 * 0x71/0x73): this command was not processed (SPC-5 4.4.2). */
#define HBK_SCSI_RESULT_DEFERRED 0x01u

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
 * key/asc/ascq of *r, and HBK_SCSI_RESULT_DEFERRED into r->flags for the
 * deferred formats.  Returns 0, or -EINVAL when the data is too short or
 * not sense data (then *r's sense fields are zeroed).  Any thread.
 */
int hbk_scsi_sense_decode(const uint8_t *sense, size_t len, struct hbk_scsi_result *r);

/*
 * Human-readable "KEY/asc/ascq" text for a result, written to buf (NUL
 * terminated, truncated to size).  Returns buf.  Any thread.
 */
const char *hbk_scsi_result_str(const struct hbk_scsi_result *r, char *buf, size_t size);

/*
 * The name of a task's status: with service TASK_COMPLETE a SCSI status
 * byte ("GOOD"), with SERVICE_DELIVERY_OR_TARGET_FAILURE a delivery status
 * ("DEVICE NOT PRESENT").  NULL for a value that is none (or another
 * service).  Any thread.
 */
const char *hbk_scsi_status_name(uint32_t service, uint32_t status);

/* SAM 8-byte LUN <-> LUN number (peripheral and flat addressing).
 * hbk_scsi_lun_decode returns the LUN number, or UINT64_MAX for an address
 * method the emulation does not serve. */
uint64_t hbk_scsi_lun_decode(const uint8_t lun[8]);
void hbk_scsi_lun_encode(uint64_t lun, uint8_t out[8]);

/* ---- Block backend ------------------------------------------------------ */

struct hbk_scsi_aio;

/*
 * What the emulation calls to move data.  Each returns 0 or -errno:
 * -EIO is reported as MEDIUM ERROR (unrecovered read / write error),
 * -ENOSPC as DATA PROTECT/space allocation failed, anything else as
 * HARDWARE ERROR / internal target failure.  Calls may come from several
 * threads at once; the backend serialises what it must.  `fua` is also set
 * on every write while the caching mode page's WCE bit is 0 (write through).
 */
struct hbk_scsi_backend_ops {
	int (*read)(void *ctx, uint64_t lba, uint32_t nblocks, void *buf);
	int (*write)(void *ctx, uint64_t lba, uint32_t nblocks, const void *buf, bool fua);
	int (*flush)(void *ctx);
	/* NULL: the LUN is not thin provisioned (UNMAP refused). */
	int (*unmap)(void *ctx, uint64_t lba, uint64_t nblocks);
	/*
	 * GET LBA STATUS.  Sets *mapped for block `lba` and shrinks *nblocks
	 * (on entry the most to look at, >= 1) to how many blocks from lba
	 * share that state (>= 1).  NULL: every block reads as mapped.
	 */
	int (*lba_status)(void *ctx, uint64_t lba, uint32_t *nblocks, bool *mapped);
	/*
	 * Optional, for hbk_scsi_exec_async: starts the transfer aio->io
	 * describes (READ or WRITE of whole blocks, checked already) and
	 * returns without waiting for it.  The backend ends it with
	 * hbk_scsi_aio_end(aio, 0 or -errno: mapped as for read/write) exactly
	 * once, from any thread or inline from submit.  Called on the thread
	 * of hbk_scsi_exec_async, or on the thread of a COMPARE AND WRITE that
	 * held a write back (see hbk_scsi_exec_async).  NULL: the LUN's READ
	 * and WRITE run synchronously only.
	 */
	void (*submit)(void *ctx, struct hbk_scsi_aio *aio);
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
	bool        write_cache;       /* WCE in the caching mode page (default value) */
	bool        rotational;        /* VPD B1 rotation rate: false = non-rotating */
	/* Thin provisioning (with ops->unmap), VPD B0/B2 and READ CAPACITY(16). */
	bool        lbprz;             /* unmapped blocks read back as zeros */
	uint32_t    max_unmap_blocks;  /* LBAs per UNMAP command; 0 = no limit */
	uint32_t    max_unmap_descs;   /* descriptors per UNMAP; 0 = 256 */
	uint32_t    unmap_granularity; /* optimal unmap granularity in blocks; 0 = a physical block */
	uint32_t    max_write_same_blocks; /* blocks per WRITE SAME; 0 = 65535 */
	/* The medium: removable (RMB; START STOP UNIT LOEJ ejects and loads
	 * it), write protected (WP; commands that write it answer DATA
	 * PROTECT), 2^lbppbe logical blocks per physical block (< 16). */
	bool        removable;
	bool        read_only;
	uint8_t     lbppbe;
	/* WRITE ATOMIC(16), VPD B0: the most blocks per atomic write (0 = the
	 * maximum transfer length, at most 65535), and the alignment of its
	 * LBA and the granularity of its length in blocks (0 = any). */
	uint32_t    max_atomic_blocks;
	uint32_t    atomic_alignment;
	uint32_t    atomic_granularity;
	const struct hbk_scsi_backend_ops *ops;
	void       *ctx;
};

/*
 * What a LUN remembers about one I_T nexus (an initiator, by the identifier
 * its commands carry): its persistent reservation key and whether it
 * prevents medium removal.  An entry that holds neither is free.
 */
#define HBK_SCSI_NEXUS_MAX 32

struct hbk_scsi_nexus {
	uint64_t initiator;
	uint64_t key;              /* registered reservation key, 0 = not registered */
	bool     prevent;          /* PREVENT ALLOW MEDIUM REMOVAL with PREVENT 01b */
};

/*
 * One I_T nexus that has used a LUN, with the unit attention conditions not
 * reported to it yet (a mask private to src/scsi).  Written under the LUN's
 * lock, read without it.
 */
#define HBK_SCSI_UA_MAX 64

struct hbk_scsi_ua_slot {
	_Atomic uint64_t initiator;
	atomic_uint pending;
};

/* One emulated logical unit.  Initialise with hbk_scsi_lun_init. */
struct hbk_scsi_lun {
	struct hbk_scsi_lun_cfg cfg;
	char vendor[8], product[16], revision[4];
	/* Every write holds it shared; COMPARE AND WRITE holds it alone.  An
	 * asynchronous write holds it only while it enters aio_writes. */
	pthread_rwlock_t write_lock;
	/* Asynchronous writes started and not ended: COMPARE AND WRITE, once
	 * it holds write_lock alone, waits for none (aio_idle, under lock). */
	atomic_uint aio_writes;
	pthread_cond_t aio_idle;
	/* Asynchronous writes held back while a COMPARE AND WRITE holds or
	 * waits for write_lock (under lock); it starts them when it ends. */
	struct hbk_scsi_aio *aio_held;
	/* Stopped / reserved / WCE bits (private to src/scsi), read without
	 * the lock on the I/O path; the reserved bit changes under `lock`
	 * together with pr_type. */
	atomic_uint state;
	pthread_mutex_t lock;      /* guards the state below */
	/* Persistent reservation (SPC-5 5.14): type 0 = none. */
	uint8_t pr_type;
	uint32_t pr_generation;
	uint64_t pr_holder;        /* initiator holding it, unless all registrants */
	uint32_t nexus_count;
	struct hbk_scsi_nexus nexus[HBK_SCSI_NEXUS_MAX];
	/* RESERVE(6) (SPC-2): the holder, while state has the reserved bit. */
	uint64_t reserve6_holder;
	/* Unit attentions: slots [0, ua_count) in use; ua_clock is the next
	 * one to reuse when all are.  ua_seq is odd while a slot changes hands
	 * (under lock), so a lookup without the lock can tell it raced one. */
	atomic_uint ua_count;
	atomic_uint ua_seq;
	uint32_t ua_clock;
	bool ua_gave_up;           /* a nexus was dropped from the table (lun->lock) */
	struct hbk_scsi_ua_slot ua[HBK_SCSI_UA_MAX];
};

/* A target: the LUNs it serves, indexed by LUN number. */
struct hbk_scsi_target {
	uint32_t lun_count;
	struct hbk_scsi_lun **luns; /* lun_count entries; NULL = hole */
};

/*
 * Initialises *lun from *cfg: started, medium loaded, WCE from
 * cfg->write_cache, no registrations, no unit attention.  Returns 0, or
 * -EINVAL for a block size that is not 512..65536 and a power of two, a zero
 * block count, missing ops, an lbppbe of 16 or more, a max_atomic_blocks
 * over 65535 or an atomic_granularity above the atomic limit, or the -errno
 * of a failed lock initialisation.  hbk_scsi_lun_fini releases a LUN that no
 * thread uses any more.
 */
int hbk_scsi_lun_init(struct hbk_scsi_lun *lun, const struct hbk_scsi_lun_cfg *cfg);
void hbk_scsi_lun_fini(struct hbk_scsi_lun *lun);

/*
 * What task management does to the emulation's state (SAM-5 6.3).  A driver
 * calls hbk_scsi_lun_reset when it performs LOGICAL UNIT RESET and
 * hbk_scsi_target_reset when it performs TARGET RESET (on every LUN of t),
 * once the tasks the function ends are no longer running: every I_T nexus
 * that has used the LUN gets a unit attention, BUS DEVICE RESET FUNCTION
 * OCCURRED (29h/03h), on its next command; RESERVE(6) reservations and
 * medium removal prevention end; mode parameters return to their defaults.
 * Persistent reservations, the medium and the started/stopped state stay.
 * hbk_scsi_nexus_loss is for the loss of I_T nexus `initiator` (a session
 * that ended): its RESERVE(6) reservation and its prevention of medium
 * removal end on every LUN of t, and its pending unit attentions go with it;
 * its persistent reservation registrations stay.  NULL LUNs and targets are
 * ignored.  Any thread, concurrently with commands; takes each LUN's lock
 * in turn (a caller may hold its own locks, none of the emulation's).
 */
void hbk_scsi_lun_reset(struct hbk_scsi_lun *lun);
void hbk_scsi_target_reset(struct hbk_scsi_target *t);
void hbk_scsi_nexus_loss(struct hbk_scsi_target *t, uint64_t initiator);

/* What the emulation answers. */
struct hbk_scsi_reply {
	uint8_t  status;          /* enum hbk_task_status */
	uint8_t  sense_len;       /* 0, or 18 with CHECK CONDITION */
	uint8_t  rsvd[6];
	uint64_t bytes;           /* bytes moved to/from buf */
	uint8_t  sense[HBK_SENSE_BUF];
};

/* One command as the initiator sent it. */
struct hbk_scsi_req {
	uint64_t initiator;       /* I_T nexus identity (e.g. a SAS address); 0 = default */
	uint64_t lun;             /* LUN number (hbk_scsi_lun_decode) */
	const uint8_t *cdb;
	unsigned cdb_len;
	void    *buf;             /* data-in for HBK_DIR_READ, data-out for HBK_DIR_WRITE */
	uint64_t buf_len;
	enum hbk_dir dir;
};

/*
 * Executes one CDB against LUN number req->lun of `t` and fills *out.  The
 * emulation never moves more than buf_len bytes and answers CHECK CONDITION
 * when the CDB asks for more data-out than supplied.  It serves exactly the
 * commands REPORT SUPPORTED OPERATION CODES lists: TEST UNIT READY, REQUEST
 * SENSE, INQUIRY (standard, VPD 00/80/83/B0/B1/B2), REPORT LUNS, MODE
 * SENSE/SELECT 6/10, RESERVE(6) and RELEASE(6), START STOP UNIT (LOEJ on a
 * removable medium), PREVENT ALLOW MEDIUM REMOVAL, READ CAPACITY 10/16,
 * READ/WRITE 6/10/12/16, VERIFY and WRITE AND VERIFY 10/12/16, PRE-FETCH
 * 10/16, WRITE SAME 10/16, COMPARE AND WRITE, ORWRITE(16), WRITE
 * ATOMIC(16), SYNCHRONIZE CACHE 10/16, UNMAP, GET LBA STATUS, READ DEFECT
 * DATA 10/12, PERSISTENT RESERVE IN/OUT and REPORT SUPPORTED OPERATION
 * CODES.  CDB bits it does not use must be zero (INVALID FIELD IN CDB).
 * Errors carry fixed-format sense; a reservation conflict is status
 * RESERVATION CONFLICT without sense; PRE-FETCH answers CONDITION MET.  A
 * unit attention pending for the command's I_T nexus (hbk_scsi_lun_reset)
 * is reported first, except to INQUIRY, REPORT LUNS and REQUEST SENSE
 * (which returns it as its sense data).  Safe to call from several threads at
 * once for different or the same LUN; the backend is called on the calling
 * thread.
 */
void hbk_scsi_exec(struct hbk_scsi_target *t, const struct hbk_scsi_req *req,
		   struct hbk_scsi_reply *out);

/* ---- Asynchronous execution -------------------------------------------------- */

/*
 * One asynchronous command, owned by the caller from hbk_scsi_exec_async
 * until its done callback runs (then it is the caller's again, to reuse or
 * free; the emulation does not touch it after calling done).  The caller
 * sets out, done and priv; the emulation fills io for the backend's submit.
 */
struct hbk_scsi_aio {
	struct hbk_scsi_reply *out;    /* filled before done runs */
	void (*done)(struct hbk_scsi_aio *aio);
	void *priv;                    /* the caller's */
	struct {                       /* the transfer, for the backend's submit */
		bool write;
		bool fua;              /* WRITE: FUA, or the cache is write-through */
		uint32_t nblocks;
		uint64_t lba;
		void *buf;             /* the initiator's buffer (zero copy) */
	} io;
	/* Private to the emulation while the command is in flight. */
	struct hbk_scsi_lun *lun_;
	uint64_t initiator_;
	uint64_t bytes_;
	struct hbk_scsi_aio *next_;
};

/*
 * Starts one CDB like hbk_scsi_exec, without blocking the caller.  READ and
 * WRITE 6/10/12/16 on a LUN whose backend has submit go through every check
 * hbk_scsi_exec makes (the same code: LUN, opcode, CDB fields, reservations,
 * stopped unit, range, protection, transfer length, buffer); one that fails
 * them is answered at once, one that passes is handed to the backend's
 * submit, and aio->done runs once the backend ends it, with *aio->out filled
 * as hbk_scsi_exec would have (backend errors become the same sense).  A
 * write that meets a COMPARE AND WRITE is held back, not waited for, and
 * started by it when it ends.  Returns 0 when the command was taken: done
 * runs exactly once, maybe before this returns, from the caller's or the
 * backend's thread.  Returns -EWOULDBLOCK for every other command (and for
 * READ/WRITE without submit): nothing was done and done never runs; the
 * caller runs it with hbk_scsi_exec on a thread that may block.  Any
 * thread, concurrently with hbk_scsi_exec on the same LUN.
 */
int hbk_scsi_exec_async(struct hbk_scsi_target *t, const struct hbk_scsi_req *req,
			struct hbk_scsi_aio *aio);

/*
 * The backend ends aio's transfer with result (0 or -errno): fills
 * *aio->out and calls aio->done.  Exactly once per submit; any thread, no
 * lock of the caller's held that done may need.
 */
void hbk_scsi_aio_end(struct hbk_scsi_aio *aio, int result);

/*
 * hbk_scsi_exec for the default initiator (identifier 0): for drivers whose
 * transport carries no initiator identity.
 */
void hbk_scsi_execute(struct hbk_scsi_target *t, uint64_t lun,
		      const uint8_t *cdb, unsigned cdb_len,
		      void *buf, uint64_t buf_len, enum hbk_dir dir,
		      struct hbk_scsi_reply *out);

#endif /* HBK_SCSI_H */
