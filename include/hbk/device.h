/* SPDX-License-Identifier: MIT */
/*
 * hbakit device model: an emulated PCIe RAID controller that lives in the
 * driver process beside its driver, as a card sits in a slot.  The driver
 * sees only its hardware interface: 32-bit registers, a request ring and
 * reply queues in device memory, and one eventfd per interrupt vector.  The
 * firmware behind it presents each virtual drive (a volume) as a SCSI target
 * through the shared SCSI emulation and moves data straight to and from the
 * addresses the frames carry (the host's shared data arena: zero copy).
 * docs/device.md has the layouts as offset tables and every barrier.
 */
#ifndef HBK_DEVICE_H
#define HBK_DEVICE_H

/*
 * The hardware interface
 * ======================
 *
 * Device memory ("BAR 0"), one mapping both sides see:
 *
 *   +------------------------------+ 0
 *   | registers (HBK_DEV_REG_*)     |  32-bit, read with hbk_dev_read32 and
 *   |                               |  written with hbk_dev_write32 only
 *   +------------------------------+ REQ_OFF
 *   | request ring: REQ_ENTRIES x   |  driver writes frames, firmware copies
 *   | struct hbk_dev_frame (64 B)   |  them out
 *   +------------------------------+ RQ_OFF(q)
 *   | reply queue q: RPL_DEPTH x    |  firmware writes replies, driver
 *   | struct hbk_dev_reply (64 B)   |  copies them out
 *   +------------------------------+
 *
 * Posting.  A producer reserves ring indices [i, i+n) (free-running u32),
 * writes each frame and publishes it by storing seq = index + 1 last
 * (release), then writes REQ_PI = i + n to the doorbell.  Because every
 * frame carries its own seq, producers need no lock among themselves and
 * doorbell writes may arrive out of order: the firmware takes frames in
 * ring order up to the first one not yet published, and a doorbell only
 * says "look again".  The firmware stores REQ_CI (release) once it has
 * copied frames out; a producer may overwrite index j only when j - REQ_CI
 * < REQ_ENTRIES.
 *
 * Credits.  The firmware admits an I/O frame only while fewer than CREDITS
 * frames are outstanding (admitted and their reply not yet consumed), a
 * task-management frame while fewer than CREDITS + HBK_DEV_TM_SLOTS are.
 * Every reply queue holds RPL_DEPTH >= CREDITS + HBK_DEV_TM_SLOTS
 * descriptors, so a reply queue cannot overflow whatever the driver does:
 * a driver that stops consuming replies only stops the firmware taking
 * frames.  Frames beyond the credits wait in the ring, in order.
 *
 * Replies.  The firmware writes a descriptor and stores RPL_PI(q) + 1
 * (release); the driver loads RPL_PI (acquire), copies descriptors out and
 * writes RPL_CI(q), which returns their credits.
 *
 * Interrupts.  Vector q (an eventfd, hbk_dev_irq_fd) fires when IRQ_COUNT(q)
 * replies are pending since the last interrupt, or IRQ_USEC(q) microseconds
 * after the first of them, whichever comes first; IRQ_USEC 0 fires on every
 * reply.  Both registers take effect at once, even on replies already
 * pending.  The eventfd counts interrupts; a driver reads it to re-arm and
 * then consumes replies up to RPL_PI, so no reply is ever missed.
 *
 * Device states (STATUS):
 *
 *   create --> READY --CONTROL=ENABLE--> OPERATIONAL
 *                ^                           |
 *                +------CONTROL=RESET--------+   (terminates everything in
 *                                                 flight, posts no replies)
 */

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct hbk_dev;
struct hbk_raid;

#define HBK_DEV_ID          0x44424b48u /* "HKBD" read little-endian */
#define HBK_DEV_VERSION     1u
#define HBK_DEV_MAX_QUEUES  8u          /* reply queues = interrupt vectors */
#define HBK_DEV_MAX_TARGETS 64u         /* virtual drives */
#define HBK_DEV_TM_SLOTS    4u          /* task-management frames beyond CREDITS */
#define HBK_DEV_SENSE_MAX   48u

/* ---- Registers (byte offsets into BAR 0) --------------------------------- */

#define HBK_DEV_REG_ID          0x00 /* RO HBK_DEV_ID */
#define HBK_DEV_REG_VERSION     0x04 /* RO HBK_DEV_VERSION */
#define HBK_DEV_REG_STATUS      0x08 /* RO enum hbk_dev_state */
#define HBK_DEV_REG_CONTROL     0x0c /* WO enum hbk_dev_control */
#define HBK_DEV_REG_REQ_ENTRIES 0x10 /* RO request ring entries, a power of two */
#define HBK_DEV_REG_REQ_OFF     0x14 /* RO BAR offset of the request ring */
#define HBK_DEV_REG_RPL_QUEUES  0x18 /* RO reply queues (1..HBK_DEV_MAX_QUEUES) */
#define HBK_DEV_REG_RPL_DEPTH   0x1c /* RO descriptors per reply queue, a power of two */
#define HBK_DEV_REG_CREDITS     0x20 /* RO I/O frames outstanding at most */
#define HBK_DEV_REG_MAX_XFER    0x24 /* RO bytes per frame at most */
#define HBK_DEV_REG_DMA_ALIGN   0x28 /* RO data address alignment in bytes */
#define HBK_DEV_REG_TARGETS     0x2c /* RO virtual drives: targets 0..n-1, LUN 0 each */
#define HBK_DEV_REG_REQ_PI      0x30 /* RW doorbell: frames posted (producer index) */
#define HBK_DEV_REG_REQ_CI      0x34 /* RO frames taken by the firmware */
#define HBK_DEV_REG_RQ(q)       (0x40 + 0x20 * (q))
#define HBK_DEV_REG_RQ_OFF(q)   (HBK_DEV_REG_RQ(q) + 0x00) /* RO BAR offset of queue q */
#define HBK_DEV_REG_RQ_PI(q)    (HBK_DEV_REG_RQ(q) + 0x04) /* RO replies posted */
#define HBK_DEV_REG_RQ_CI(q)    (HBK_DEV_REG_RQ(q) + 0x08) /* RW replies consumed */
#define HBK_DEV_REG_IRQ_COUNT(q) (HBK_DEV_REG_RQ(q) + 0x0c) /* RW 1..RPL_DEPTH */
#define HBK_DEV_REG_IRQ_USEC(q) (HBK_DEV_REG_RQ(q) + 0x10) /* RW 0..1000000 */
#define HBK_DEV_REG_IRQ_FLAGS(q) (HBK_DEV_REG_RQ(q) + 0x14) /* RW enum hbk_dev_irq_flag */
#define HBK_DEV_REG_SIZE        (HBK_DEV_REG_RQ(HBK_DEV_MAX_QUEUES))

/* IRQ_FLAGS bits.  IDLE: a reply that leaves the card with no admitted
 * command unreplied raises its vector at once, count and time aside (there
 * is nothing left to coalesce it with). */
enum hbk_dev_irq_flag { HBK_DEV_IRQ_IDLE = 1u << 0 };

enum hbk_dev_state { HBK_DEV_READY = 1, HBK_DEV_OPERATIONAL = 2, HBK_DEV_RESETTING = 3 };
enum hbk_dev_control { HBK_DEV_CTL_ENABLE = 1, HBK_DEV_CTL_RESET = 2 };

/* ---- Request frame ---------------------------------------------------------- */

enum hbk_dev_function { HBK_DEV_FN_SCSI_IO = 1, HBK_DEV_FN_TASK_MGMT = 2 };

enum hbk_dev_tm {
	HBK_DEV_TM_ABORT_TASK = 1,     /* the task tagged tm_tag on target/lun */
	HBK_DEV_TM_ABORT_TASK_SET = 2, /* every task on target/lun */
	HBK_DEV_TM_CLEAR_TASK_SET = 3,
	HBK_DEV_TM_LUN_RESET = 4,
	HBK_DEV_TM_TARGET_RESET = 5,   /* every task on target */
	HBK_DEV_TM_NEXUS_LOSS = 6,     /* every task of `initiator` on target: that I_T nexus ended */
};

struct hbk_dev_frame {
	uint32_t seq;          /* ring index + 1; stored last, with release */
	uint32_t tag;          /* the driver's tag, echoed in the reply */
	uint8_t  function;     /* enum hbk_dev_function */
	uint8_t  dir;          /* enum hbk_dir */
	uint8_t  cdb_len;      /* 6, 10, 12 or 16 */
	uint8_t  reply_queue;  /* < RPL_QUEUES */
	uint32_t target;
	uint8_t  lun[8];       /* SAM 8-byte LUN */
	uint8_t  cdb[16];
	uint64_t data_addr;    /* DMA address of the data (one segment) */
	uint32_t data_len;     /* <= MAX_XFER */
	uint8_t  tm_type;      /* TASK_MGMT: enum hbk_dev_tm */
	uint8_t  rsvd0[3];
	union {
		uint64_t initiator;  /* SCSI_IO: the I_T nexus the command came from;
				      * TASK_MGMT NEXUS_LOSS: the nexus that ended */
		uint32_t tm_tag;     /* TASK_MGMT ABORT_TASK: tag of the task to abort */
	};
};
static_assert(sizeof(struct hbk_dev_frame) == 64, "request frame is 64 bytes");
static_assert(__builtin_offsetof(struct hbk_dev_frame, tag) == 4, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, function) == 8, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, target) == 12, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, lun) == 16, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, cdb) == 24, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, data_addr) == 40, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, data_len) == 48, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, tm_type) == 52, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, tm_tag) == 56, "");
static_assert(__builtin_offsetof(struct hbk_dev_frame, initiator) == 56, "");

/* ---- Reply descriptor -------------------------------------------------------- */

enum hbk_dev_status {
	HBK_DEV_ST_OK = 0,            /* executed: see scsi_status (TM: done) */
	HBK_DEV_ST_INVALID_FRAME = 1, /* malformed frame: nothing was done */
	HBK_DEV_ST_NO_TARGET = 2,     /* no virtual drive at that target */
	HBK_DEV_ST_TERMINATED = 3,    /* ended by task management: no status */
};

struct hbk_dev_reply {
	uint32_t tag;          /* the frame's tag */
	uint8_t  function;     /* the frame's function */
	uint8_t  status;       /* enum hbk_dev_status */
	uint8_t  scsi_status;  /* enum hbk_task_status, with HBK_DEV_ST_OK */
	uint8_t  sense_len;    /* <= HBK_DEV_SENSE_MAX */
	uint32_t residual;     /* data_len minus the bytes moved */
	uint32_t terminated;   /* TASK_MGMT: tasks it terminated */
	uint8_t  sense[HBK_DEV_SENSE_MAX];
};
static_assert(sizeof(struct hbk_dev_reply) == 64, "reply descriptor is 64 bytes");
static_assert(__builtin_offsetof(struct hbk_dev_reply, status) == 5, "");
static_assert(__builtin_offsetof(struct hbk_dev_reply, residual) == 8, "");
static_assert(__builtin_offsetof(struct hbk_dev_reply, terminated) == 12, "");
static_assert(__builtin_offsetof(struct hbk_dev_reply, sense) == 16, "");

/* ---- Volumes: the storage behind a virtual drive ------------------------------ */

struct hbk_vol;

enum hbk_vol_op { HBK_VOL_READ = 0, HBK_VOL_WRITE = 1, HBK_VOL_FLUSH = 2, HBK_VOL_UNMAP = 3 };

/*
 * One volume I/O, owned by the submitter.  lba and nblocks are in the
 * volume's blocks (ignored by FLUSH).  done is called exactly once, with 0
 * or -errno (-ECANCELED when cancelled), from any thread or inline from
 * submit or cancel.
 */
struct hbk_vol_io {
	uint8_t  op;           /* enum hbk_vol_op */
	bool     fua;          /* WRITE: durable when done */
	uint64_t lba;
	uint64_t nblocks;
	void    *buf;          /* READ/WRITE: nblocks blocks */
	void   (*done)(struct hbk_vol_io *io, int result);
	void    *priv;         /* the submitter's */
	struct hbk_vol_io *next_; /* the volume's while in flight */
};

/*
 * A volume's operations.  submit never blocks on the medium, so the
 * firmware keeps many I/Os in flight; cancel asks an I/O to end early
 * (0: done will follow with -ECANCELED, maybe inline; -ENOENT: not
 * cancellable, done will follow anyway).  cancel may race the I/O's own end:
 * for an I/O whose done runs or ran already (its storage not yet reused) it
 * returns -ENOENT.  lba_status (GET LBA STATUS: see hbk_scsi_backend_ops) is
 * a metadata query and may block.  cancel and lba_status may be NULL.
 */
struct hbk_vol_ops {
	void (*submit)(struct hbk_vol *v, struct hbk_vol_io *io);
	int  (*cancel)(struct hbk_vol *v, struct hbk_vol_io *io);
	int  (*lba_status)(struct hbk_vol *v, uint64_t lba, uint32_t *nblocks, bool *mapped);
	void (*close)(struct hbk_vol *v);
};

#define HBK_VOL_THIN        0x1u /* UNMAP is served */
#define HBK_VOL_LBPRZ       0x2u /* unmapped blocks read back as zeros */
#define HBK_VOL_ROTATIONAL  0x4u
#define HBK_VOL_WRITE_CACHE 0x8u /* volatile cache: FLUSH and FUA matter */

struct hbk_vol {
	const struct hbk_vol_ops *ops;
	char     name[32];
	uint32_t block_size;   /* 512 or 4096 */
	uint64_t nblocks;
	uint32_t opt_blocks;   /* optimal transfer (e.g. a full stripe), 0 = none */
	uint32_t flags;        /* HBK_VOL_* */
};

/*
 * A volume in anonymous memory (committed when written; never-written and
 * unmapped blocks read back as zeros and report as unmapped), size rounded
 * down to block_size.  Returns 0 and *out, -EINVAL (name longer than 31,
 * block size, size below one block) or -ENOMEM.  Any thread.
 */
int hbk_dev_vol_mem(const char *name, uint64_t size, uint32_t block_size, struct hbk_vol **out);

/*
 * Fault injection on a memory volume: from now on every READ or WRITE that
 * touches block lba is held, neither done nor failed, until it is
 * cancelled or the hold is lifted (lba UINT64_MAX: held I/Os then complete
 * normally).  Returns 0, or -EINVAL when v is not a memory volume.
 */
int hbk_dev_vol_mem_hold(struct hbk_vol *v, uint64_t lba);

/*
 * Fault injection on a memory volume: while stuck, held I/O refuses to be
 * cancelled too (-EBUSY), as I/O behind a member disk that never answers
 * does, so task management waits for it; lifting the hold still ends it.
 * Returns 0, or -EINVAL when v is not a memory volume.  Any thread.
 */
int hbk_dev_vol_mem_stick(struct hbk_vol *v, bool stuck);

/*
 * A volume over a RAID array (include/hbk/raid.h), borrowed: it must outlive
 * the volume.  Returns 0 and *out, or -EINVAL/-ENOMEM.  Any thread.
 */
int hbk_dev_vol_raid(const char *name, struct hbk_raid *r, struct hbk_vol **out);

/* Closes a volume with no I/O in flight (NULL is ignored). */
void hbk_dev_vol_close(struct hbk_vol *v);

/* ---- The device ---------------------------------------------------------------- */

struct hbk_dev_config {
	struct hbk_vol *const *vols;  /* virtual drives, target i = vols[i]; borrowed */
	unsigned nvols;               /* 1..HBK_DEV_MAX_TARGETS */
	uint32_t credits;             /* I/O frames in flight (0: 1024) */
	uint32_t queues;              /* reply queues (0: 1) */
	uint32_t threads;             /* firmware threads, at most (0: 16); as many run as CPUs.
				       * READ/WRITE hold none while their volume I/O is in flight */
	uint32_t max_transfer;        /* bytes per frame, multiple of 4096 (0: 1 MiB) */
	const char *serial;           /* controller serial, prefix of VD serials (0: "HBK0") */
};

/*
 * Powers the card on: device memory, firmware threads, one eventfd per reply
 * queue, a SCSI logical unit per volume.  The device starts READY.  Returns
 * 0 and *out, or -EINVAL (bad config), -ENOMEM, or the -errno of a failed
 * thread or eventfd.  Any thread.
 */
int hbk_dev_create(const struct hbk_dev_config *cfg, struct hbk_dev **out);

/*
 * Powers the card off: resets it (terminating whatever is in flight),
 * stops the firmware and frees everything but the volumes.  No register
 * access may run or follow.  NULL is ignored.
 */
void hbk_dev_destroy(struct hbk_dev *dev);

/* Base of device memory ("BAR 0"); rings are at the offsets the registers
 * give.  Valid until hbk_dev_destroy. */
void *hbk_dev_bar(struct hbk_dev *dev);

/*
 * Register access, as MMIO: a read is an acquire load; a write is a release
 * store that the device acts on before it returns (the doorbell fetches
 * frames, RQ_CI returns credits, IRQ_* retune coalescing, CONTROL enables
 * or resets: a reset returns once the device is READY).  Unknown and
 * read-only registers ignore writes and read 0 beyond HBK_DEV_REG_SIZE.
 * Any thread.
 */
uint32_t hbk_dev_read32(struct hbk_dev *dev, uint32_t reg);
void hbk_dev_write32(struct hbk_dev *dev, uint32_t reg, uint32_t val);

/* The eventfd of interrupt vector q (reply queue q), or -EINVAL.  Owned by
 * the device: poll and read it, never close it. */
int hbk_dev_irq_fd(struct hbk_dev *dev, unsigned q);

/* ---- Driver side: posting frames and reaping replies ---------------------------- */

/*
 * What a driver keeps of the hardware interface: ring addresses and sizes
 * read from the registers, its own reservation counter and reply consumer
 * indices.  Fill it with hbk_dev_port_init once the device is READY or
 * OPERATIONAL (and again after a reset).
 */
struct hbk_dev_port {
	struct hbk_dev *dev;
	struct hbk_dev_frame *req;
	uint32_t entries;
	_Atomic uint32_t reserve;     /* next ring index to hand out */
	uint32_t nqueues, depth;
	struct hbk_dev_reply *rpl[HBK_DEV_MAX_QUEUES];
	uint32_t rpl_ci[HBK_DEV_MAX_QUEUES];
};

/* Reads the device's layout into *p.  Returns 0, or -ENODEV when the
 * registers do not identify a device of this version. */
int hbk_dev_port_init(struct hbk_dev_port *p, struct hbk_dev *dev);

/*
 * Posts frames f[0..n) (their seq is ignored) in ring order and rings the
 * doorbell once.  Returns 0, or -EAGAIN when the ring has no room for all n
 * (nothing posted).  Any number of threads at once.
 */
int hbk_dev_post(struct hbk_dev_port *p, const struct hbk_dev_frame *f, unsigned n);

/*
 * Copies up to max replies of queue q into out and hands their slots and
 * credits back to the device.  Returns how many.  One thread per queue at
 * a time (the interrupt handler).
 */
unsigned hbk_dev_reap(struct hbk_dev_port *p, unsigned q, struct hbk_dev_reply *out,
		      unsigned max);

#endif /* HBK_DEVICE_H */
