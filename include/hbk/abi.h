/* SPDX-License-Identifier: MIT */
/*
 * hbakit wire ABI: the task and response slots, the enums of the SCSI
 * parallel-interface controller model, the messages that cross the host/driver
 * sockets and the header of the shared memory region.  Host and driver are
 * separate processes and may be built separately, so everything here is
 * fixed-width, little-endian, with reserved fields that must be zero.
 */
#ifndef HBK_ABI_H
#define HBK_ABI_H

/*
 * Design
 * ======
 *
 * Two processes.  The host (libhbk, inside an application) owns a controller;
 * the driver is its own process, written against hbk/driver.h.  A crash or a
 * hang of the driver must never take the host down, so the host trusts
 * nothing that the driver writes: every message and every response slot is
 * validated by the host's contract checker before it is acted on.
 *
 * Channels.  Two AF_UNIX SOCK_SEQPACKET connections (message boundaries are
 * kept, a message is never split or merged):
 *
 *   call channel   host -> driver calls and their replies.  Strictly one
 *                  call outstanding; the host's sender waits for the reply,
 *                  as the reference model's calls are synchronous.
 *   event channel  driver -> host: one-way completions and violation
 *                  reports, and driver -> host calls (create target, report
 *                  constraints, ...) whose replies come back on the same
 *                  channel.  The host reads it on its event thread and serves
 *                  calls on a control thread, so discovery I/O can flow while
 *                  a create-target call waits.
 *
 * Shared region.  One memfd, created by the host once the driver has told
 * its task count and DMA limits, passed with SCM_RIGHTS in the SHARE_REGION
 * call, and mapped by both sides:
 *
 *   +--------------------------+ 0
 *   | struct hbk_region_hdr     |  magic, version, sizes, offsets
 *   +--------------------------+ cmd_off
 *   | N x struct hbk_task       |  command slots (128 B each)
 *   +--------------------------+ resp_off
 *   | N x struct hbk_response   |  response slots (384 B each)
 *   +--------------------------+ cring_off
 *   | struct hbk_cring          |  bundled completion ring
 *   +--------------------------+ sring_off
 *   | struct hbk_sring          |  bundled submission ring
 *   +--------------------------+ arena_off
 *   | data arena                |  task buffers; buffer_iova is an offset here
 *   +--------------------------+ region_size
 *
 * Slot n of the commands pairs with slot n of the responses, and with pooled
 * task n.  Data never crosses a socket: a task's buffer_iova is an offset into
 * the arena, and the driver reads and writes it in place.
 *
 * Slot ownership (bundled path).  The host keeps the authoritative state of
 * each slot in its own private memory (the driver could scribble on shared
 * memory); every transition is checked:
 *
 *        acquire          post (submission ring)
 *   FREE --------> HOST -----------------------> DRIVER
 *    ^                                              |
 *    |  completion consumed      BUNDLED_COMPLETION |
 *    +----------------------- DONE <----------------+
 *
 * While a slot is DRIVER the driver may read the command slot and must fill
 * the response slot; in every other state it must not touch either.  A
 * completion for a slot that is not DRIVER is refused (HBK-C03).
 *
 * Bundled completions travel through the completion ring, not the socket.
 * A blocking wake between two processes costs 20-30 us here, a socket
 * message a few us of CPU on each side; at high load completions are many
 * and small.  So the driver runtime appends slot indices to the ring and
 * publishes its tail with a release store; the host's event thread drains
 * the ring with an acquire load of the tail, so the response slots written
 * before the publication are visible to it.  Only when the event thread has
 * announced that it is about to sleep (host_waiting) does the driver send a
 * one-way RING_DOORBELL message to wake it; while the host is busy, bundled
 * completions cost no system call at all (the io_uring completion queue
 * works the same way).  The lost-wake-up race is closed Dekker style: the
 * host stores host_waiting = 1 and re-reads the tail; the driver publishes
 * the tail and reads host_waiting; all four accesses are sequentially
 * consistent, so one of them sees the other.  Everything in the ring is untrusted: the host keeps its own head,
 * bounds the tail, and checks each index like any other completion.  A
 * BUNDLED_COMPLETION message is still accepted, and is checked the same way.
 *
 * Bundled submissions travel the same way in the other direction, through
 * the submission ring.  The model's UserProcessBundledParallelTasks is a
 * call, and a call is a socket round trip with a thread on each end woken
 * for it: the submitting thread woke a sender thread, which woke the
 * driver's call server and slept until its reply.  Instead the submitting
 * thread appends the slot indices and publishes the tail with a release
 * store; a runtime thread in the driver takes up to 32 entries (acquire load
 * of the tail), runs the driver's process_bundled on them on the queue it is
 * bound to, exactly as the call did, and publishes the head.  Only when that
 * thread has announced that it is about to sleep (driver_waiting, the futex
 * word it sleeps on) does the host wake it, with FUTEX_WAKE; the race is
 * closed as for the completion ring (host: seq_cst store of the tail, then
 * load of driver_waiting; driver: seq_cst store of driver_waiting, then load
 * of the tail).  Batching arises where the model says it does: entries pile
 * up while the driver is busy in process_bundled, and the next batch takes
 * them all.  A head that does not move while entries wait is a hung driver
 * (the host's timer checks it against the call timeout).  HBK_MSG_PROCESS_BUNDLED
 * no longer travels as a call (the runtime answers it -ENOSYS); it names the
 * entry point in queue bindings.
 *
 * Per-task path.  The task travels by value in PROCESS_TASK and its response
 * by value in the reply (completed at once) or in a PARALLEL_COMPLETION
 * message.  The slot memory is unused on this path but the arena is shared.
 *
 * Initiators.  The reference model has one initiator, the host.  hbakit's
 * front ends (iSCSI) serve many, and persistent reservations must tell them
 * apart at the LUN, so the task slot's last reserved word carries the I_T
 * nexus (initiator_id, 0 = the host itself) in both paths; the layout and
 * every other offset are the reference's.  When a front end's session ends,
 * HBK_MSG_NEXUS_LOSS tells the driver, so that per-nexus state at the LUN
 * (RESERVE(6), medium removal prevention) ends with it.
 */

#include <assert.h>
#include <stdint.h>

#define HBK_ABI_VERSION        5u   /* 3: hbk_task.initiator_id; 4: HBK_MSG_NEXUS_LOSS;
                                       * 5: the submission ring */
#define HBK_TASK_VERSION       1u   /* task and response "version" field */
#define HBK_MAX_BUNDLE         32u  /* kMaxBundledParallelTasks */
#define HBK_SENSE_BUF          256u
#define HBK_SENSE_MAX          252u /* longest sense the checker accepts */
#define HBK_MAX_TASKS          1024u
#define HBK_MSG_MAGIC          0x4b424831u /* "1HBK" read little-endian */

/* ---- Enums of the controller model (4 bytes on the wire) ---------------- */

enum hbk_service_response {
	HBK_SR_REQUEST_IN_PROCESS = 0,
	HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE = 1,
	HBK_SR_TASK_COMPLETE = 2,
	HBK_SR_LINK_COMMAND_COMPLETE = 3,
	HBK_SR_FUNCTION_COMPLETE = 4,
	HBK_SR_FUNCTION_REJECTED = 5,
};

/* With HBK_SR_TASK_COMPLETE: the SCSI status byte. */
enum hbk_task_status {
	HBK_STATUS_GOOD = 0x00,
	HBK_STATUS_CHECK_CONDITION = 0x02,
	HBK_STATUS_CONDITION_MET = 0x04,
	HBK_STATUS_BUSY = 0x08,
	HBK_STATUS_INTERMEDIATE = 0x10,
	HBK_STATUS_INTERMEDIATE_CONDITION_MET = 0x14,
	HBK_STATUS_RESERVATION_CONFLICT = 0x18,
	HBK_STATUS_TASK_SET_FULL = 0x28,
	HBK_STATUS_ACA_ACTIVE = 0x30,
	HBK_STATUS_TASK_ABORTED = 0x40,
};

/* With HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE. */
enum hbk_delivery_status {
	HBK_DS_TASK_TIMEOUT = 1,
	HBK_DS_PROTOCOL_TIMEOUT = 2,
	HBK_DS_DEVICE_NOT_RESPONDING = 3,
	HBK_DS_DEVICE_NOT_PRESENT = 4,
	HBK_DS_DELIVERY_FAILURE = 5,
	HBK_DS_NO_STATUS = 0xff,
};

enum hbk_task_attr {
	HBK_ATTR_SIMPLE = 0,
	HBK_ATTR_ORDERED = 1,
	HBK_ATTR_HEAD_OF_QUEUE = 2,
	HBK_ATTR_ACA = 3,
};

enum hbk_dir {
	HBK_DIR_NONE = 0,
	HBK_DIR_WRITE = 1, /* initiator -> target */
	HBK_DIR_READ = 2,  /* target -> initiator */
};

enum hbk_dma_segment {
	HBK_SEG_HOST32 = 0, HBK_SEG_BIG32 = 1, HBK_SEG_LITTLE32 = 2,
	HBK_SEG_HOST64 = 3, HBK_SEG_BIG64 = 4, HBK_SEG_LITTLE64 = 5,
};

/* HBA constraint keys (UserReportHBAConstraints).  All are required. */
enum hbk_constraint {
	HBK_CONS_MAX_SEGMENT_COUNT_READ = 0,
	HBK_CONS_MAX_SEGMENT_COUNT_WRITE = 1,
	HBK_CONS_MAX_BYTE_COUNT_READ = 2,
	HBK_CONS_MAX_BYTE_COUNT_WRITE = 3,
	HBK_CONS_MIN_SEGMENT_ALIGNMENT = 4,
	HBK_CONS_ADDRESSABLE_BITS = 5,
	HBK_CONS_DATA_ALIGNMENT_MASK = 6,
	HBK_CONS_COUNT = 7,
};

/* ---- Task and response slots (SCSIUserParallelTask / Response) ----------- */

struct hbk_task {
	uint64_t version;                  /* HBK_TASK_VERSION */
	uint64_t target_id;
	uint32_t feature_request[5];
	uint32_t rsvd0;
	uint64_t feature_request_count;
	uint64_t controller_task_id;       /* from MAP_HBA_DATA */
	uint64_t requested_transfer_count;
	uint64_t buffer_iova;              /* offset into the data arena */
	uint32_t task_attribute;           /* enum hbk_task_attr */
	uint32_t rsvd1;
	uint64_t task_tag;                 /* unique per issue (never 0): ABORT TASK's tag */
	uint8_t  lun[8];                   /* SAM 8-byte LUN */
	uint8_t  cdb[16];
	uint8_t  cdb_len;                  /* 6, 10, 12 or 16 */
	uint8_t  direction;                /* enum hbk_dir */
	uint8_t  rsvd2[2];
	uint32_t timeout_ms;
	uint64_t initiator_id;             /* I_T nexus the task came from; 0 = the host */
};

struct hbk_response {
	uint64_t version;                  /* must be HBK_TASK_VERSION */
	uint64_t target_id;
	uint32_t feature_result[5];
	uint32_t rsvd0;
	uint64_t feature_result_count;
	uint64_t controller_task_id;
	uint32_t completion_status;        /* enum hbk_task_status or _delivery_ */
	uint32_t service_response;         /* enum hbk_service_response */
	uint64_t bytes_transferred;
	uint8_t  sense_len;
	uint8_t  sense[HBK_SENSE_BUF];
	uint8_t  rsvd1[7];
	uint64_t task_tag;                 /* the task's task_tag (0: not given) */
	uint8_t  rsvd2[40];
};

static_assert(sizeof(struct hbk_task) == 128, "task slot is 128 bytes");
static_assert(__builtin_offsetof(struct hbk_task, feature_request_count) == 40, "");
static_assert(__builtin_offsetof(struct hbk_task, controller_task_id) == 48, "");
static_assert(__builtin_offsetof(struct hbk_task, requested_transfer_count) == 56, "");
static_assert(__builtin_offsetof(struct hbk_task, buffer_iova) == 64, "");
static_assert(__builtin_offsetof(struct hbk_task, task_attribute) == 72, "");
static_assert(__builtin_offsetof(struct hbk_task, task_tag) == 80, "");
static_assert(__builtin_offsetof(struct hbk_task, lun) == 88, "");
static_assert(__builtin_offsetof(struct hbk_task, cdb) == 96, "");
static_assert(__builtin_offsetof(struct hbk_task, cdb_len) == 112, "");
static_assert(__builtin_offsetof(struct hbk_task, direction) == 113, "");
static_assert(__builtin_offsetof(struct hbk_task, timeout_ms) == 116, "");
static_assert(__builtin_offsetof(struct hbk_task, initiator_id) == 120, "");
static_assert(sizeof(struct hbk_response) == 384, "response slot is 384 bytes");
static_assert(__builtin_offsetof(struct hbk_response, controller_task_id) == 48, "");
static_assert(__builtin_offsetof(struct hbk_response, completion_status) == 56, "");
static_assert(__builtin_offsetof(struct hbk_response, service_response) == 60, "");
static_assert(__builtin_offsetof(struct hbk_response, bytes_transferred) == 64, "");
static_assert(__builtin_offsetof(struct hbk_response, sense_len) == 72, "");
static_assert(__builtin_offsetof(struct hbk_response, sense) == 73, "");
static_assert(__builtin_offsetof(struct hbk_response, rsvd1) == 329, "");
static_assert(__builtin_offsetof(struct hbk_response, task_tag) == 336, "");

/* ---- Shared region header ------------------------------------------------ */

#define HBK_REGION_MAGIC  0x4e4f494745524b48ull /* "HKREGION" little-endian */
#define HBK_MAP_COOKIE    0x444550504f4d4b48ull /* "HKMOPPED": driver mapped it */

struct hbk_region_hdr {
	uint64_t magic;         /* HBK_REGION_MAGIC */
	uint32_t abi_version;   /* HBK_ABI_VERSION */
	uint32_t hdr_size;      /* sizeof(struct hbk_region_hdr) */
	uint32_t slot_count;    /* N, the controller's max task count */
	uint32_t rsvd0;
	uint64_t cmd_off;       /* N x 128 B */
	uint64_t resp_off;      /* N x 384 B */
	uint64_t arena_off;
	uint64_t arena_size;
	uint64_t region_size;
	/*
	 * Written by the driver runtime, through its own mapping of the region,
	 * when the driver accepted the bundled mapping.  The host reads it back
	 * to prove the mapping is usable (HBK-C09).  The socket reply to
	 * MAP_BUNDLED orders the store before the host's load.
	 */
	uint64_t map_cookie;
	uint64_t cring_off;     /* struct hbk_cring, 64-byte aligned */
	uint32_t cring_entries; /* ring entries: a power of two >= slot_count */
	uint32_t sring_entries; /* submission ring entries: a power of two >= slot_count */
	uint64_t sring_off;     /* struct hbk_sring, 64-byte aligned */
	uint8_t  rsvd2[40];
};
static_assert(sizeof(struct hbk_region_hdr) == 136, "region header size");
static_assert(__builtin_offsetof(struct hbk_region_hdr, map_cookie) == 64, "");
static_assert(__builtin_offsetof(struct hbk_region_hdr, cring_off) == 72, "");
static_assert(__builtin_offsetof(struct hbk_region_hdr, cring_entries) == 80, "");
static_assert(__builtin_offsetof(struct hbk_region_hdr, sring_entries) == 84, "");
static_assert(__builtin_offsetof(struct hbk_region_hdr, sring_off) == 88, "");

/*
 * The bundled completion ring (see the design above).  Indices are
 * free-running 32-bit counters; entry i lives at entry[i % cring_entries].
 * The producer and consumer fields sit on separate cache lines.  Access them
 * only with atomic loads and stores (they are shared with the other process).
 */
struct hbk_cring {
	uint32_t tail;          /* driver: entries published; release store */
	uint8_t  rsvd0[60];
	uint32_t head;          /* host: entries consumed; the driver reads it to
				 * refuse overflow, never to decide ownership */
	uint32_t host_waiting;  /* host: 1 = event thread about to sleep, wants
				 * a RING_DOORBELL; the driver swaps it to 0 */
	uint8_t  rsvd1[56];
	uint16_t entry[];       /* slot indices */
};
static_assert(sizeof(struct hbk_cring) == 128, "completion ring header");
static_assert(__builtin_offsetof(struct hbk_cring, head) == 64, "");
static_assert(__builtin_offsetof(struct hbk_cring, host_waiting) == 68, "");
static_assert(__builtin_offsetof(struct hbk_cring, entry) == 128, "");

/*
 * The bundled submission ring (see the design above): the completion ring's
 * mirror image.  The host appends slot indices and publishes tail; the
 * driver runtime takes up to HBK_MAX_BUNDLE at a time, runs the driver's
 * process_bundled on them and then publishes head, so a head that stays
 * behind the tail is a call not answered.  driver_waiting is also the futex
 * word the runtime sleeps on (a shared futex: the two processes map the
 * region at different addresses).  hist counts the runtime's batches by
 * size, in hbk_hist_bucket's buckets: statistics, trusted for nothing.
 */
#define HBK_SRING_HIST 6   /* batches of 1, 2, 3-4, 5-8, 9-16, 17-32 slots */

/* The bucket of a batch (or call) of n slots, 1..32.  Any thread. */
static inline unsigned hbk_hist_bucket(unsigned n)
{
	if (n <= 2)
		return n ? n - 1 : 0;
	unsigned b = 2;
	for (unsigned lim = 4; n > lim && b < HBK_SRING_HIST - 1; lim <<= 1)
		b++;
	return b;
}

struct hbk_sring {
	uint32_t tail;          /* host: entries published; release store */
	uint8_t  rsvd0[60];
	uint32_t head;          /* driver: entries taken and processed */
	uint32_t driver_waiting; /* driver: 1 = about to sleep on this word;
				 * the host swaps it to 0 and wakes it */
	uint64_t hist[HBK_SRING_HIST]; /* driver: batches per size bucket */
	uint8_t  rsvd1[8];
	uint16_t entry[];       /* slot indices */
};
static_assert(sizeof(struct hbk_sring) == 128, "submission ring header");
static_assert(__builtin_offsetof(struct hbk_sring, head) == 64, "");
static_assert(__builtin_offsetof(struct hbk_sring, driver_waiting) == 68, "");
static_assert(__builtin_offsetof(struct hbk_sring, hist) == 72, "");
static_assert(__builtin_offsetof(struct hbk_sring, entry) == 128, "");

/* ---- Messages ------------------------------------------------------------ */

/*
 * Message types.  1..63 are host -> driver calls on the call channel (each
 * answered by a reply of the same type with HBK_MSGF_REPLY), 64..127 driver ->
 * host one-way messages, 128.. driver -> host calls on the event channel.
 */
enum hbk_msg_type {
	HBK_MSG_HELLO = 1,             /* reply: driver name and queue bindings */
	HBK_MSG_INIT_CONTROLLER = 2,
	HBK_MSG_REPORT_INITIATOR_ID = 3,
	HBK_MSG_REPORT_HIGHEST_ID = 4,
	HBK_MSG_REPORT_MAX_TASKS = 5,
	HBK_MSG_GET_DMA_SPEC = 6,
	HBK_MSG_MAP_HBA_DATA = 7,      /* arg0 = pool index; val0 = task id */
	HBK_MSG_MAP_BUNDLED = 8,       /* arg0 = slot count */
	HBK_MSG_START = 9,
	HBK_MSG_DEVICE_MANAGEMENT = 10,
	HBK_MSG_INIT_TARGET = 11,      /* arg0 = target id */
	HBK_MSG_MULTIPATHING = 12,
	HBK_MSG_AUTOSENSE = 13,
	HBK_MSG_PARALLEL_FEATURE = 14, /* arg0 = feature */
	HBK_MSG_HIGHEST_LUN = 15,
	HBK_MSG_PROCESS_TASK = 16,     /* struct hbk_msg_task */
	HBK_MSG_PROCESS_BUNDLED = 17,  /* the entry point; its tasks travel in the submission ring */
	HBK_MSG_ABORT_TASK = 18,       /* arg0 target, arg1 lun, arg2 the task's task_tag */
	HBK_MSG_ABORT_TASK_SET = 19,   /* arg0 target, arg1 lun */
	HBK_MSG_CLEAR_ACA = 20,
	HBK_MSG_CLEAR_TASK_SET = 21,
	HBK_MSG_LUN_RESET = 22,
	HBK_MSG_TARGET_RESET = 23,     /* arg0 target */
	HBK_MSG_STOP = 24,
	HBK_MSG_SHARE_REGION = 25,     /* region memfd attached (hbakit's own) */
	HBK_MSG_NEXUS_LOSS = 26,       /* arg0 target, arg1 initiator_id: that I_T nexus ended */
	HBK_MSG_CALL_LAST = 26,

	HBK_MSG_PARALLEL_COMPLETION = 64, /* struct hbk_msg_completion */
	HBK_MSG_BUNDLED_COMPLETION = 65,  /* struct hbk_msg_slots */
	HBK_MSG_VIOLATION = 66,           /* struct hbk_msg_violation */
	HBK_MSG_RING_DOORBELL = 67,       /* struct hbk_msg_hdr: the ring has entries */

	HBK_MSG_CREATE_TARGET = 128,      /* arg0 = target id */
	HBK_MSG_DESTROY_TARGET = 129,
	HBK_MSG_TARGET_PRESENT = 130,
	HBK_MSG_MEDIA_CHANGED = 131,      /* arg0 target, arg1 lun */
	HBK_MSG_REPORT_CONSTRAINTS = 132, /* struct hbk_msg_constraints */
};

#define HBK_MSGF_REPLY  0x1u

/* The queue a driver -> host call was made from (struct hbk_msg_hdr.queue). */
#define HBK_QUEUE_NONE     0u  /* a thread that is not a dispatch queue */
#define HBK_QUEUE_DEFAULT  1u  /* the driver's Default queue */

struct hbk_msg_hdr {
	uint32_t magic;   /* HBK_MSG_MAGIC */
	uint16_t type;    /* enum hbk_msg_type */
	uint8_t  flags;   /* HBK_MSGF_* */
	uint8_t  queue;   /* driver -> host calls: HBK_QUEUE_* of the caller */
	uint32_t seq;     /* a reply echoes its call's seq */
	uint32_t len;     /* whole message, header included */
};
static_assert(sizeof(struct hbk_msg_hdr) == 16, "message header");

/* Generic call with up to four scalar arguments. */
struct hbk_msg_call {
	struct hbk_msg_hdr hdr;
	uint64_t arg[4];
};
static_assert(sizeof(struct hbk_msg_call) == 48, "");

/* Generic reply: a -errno status and up to four scalar results. */
struct hbk_msg_reply {
	struct hbk_msg_hdr hdr;
	int32_t  status;
	uint32_t rsvd;
	uint64_t val[4];
};
static_assert(sizeof(struct hbk_msg_reply) == 56, "");

/* PROCESS_TASK: the task by value and the pool index it belongs to. */
struct hbk_msg_task {
	struct hbk_msg_hdr hdr;
	uint32_t index;
	uint32_t rsvd;
	struct hbk_task task;
};
static_assert(sizeof(struct hbk_msg_task) == 152, "");

/*
 * PROCESS_TASK reply: service_response == REQUEST_IN_PROCESS means the driver
 * will complete later; anything else means "completed now" and resp is valid.
 */
struct hbk_msg_task_reply {
	struct hbk_msg_hdr hdr;
	int32_t  status;
	uint32_t service_response;
	struct hbk_response resp;
};
static_assert(sizeof(struct hbk_msg_task_reply) == 408, "");

/* PROCESS_BUNDLED and BUNDLED_COMPLETION: up to 32 slot indices. */
struct hbk_msg_slots {
	struct hbk_msg_hdr hdr;
	uint16_t count;
	uint16_t rsvd[3];
	uint16_t index[HBK_MAX_BUNDLE];
};
static_assert(sizeof(struct hbk_msg_slots) == 88, "");

/* PARALLEL_COMPLETION: the pool index the action belongs to and the response. */
struct hbk_msg_completion {
	struct hbk_msg_hdr hdr;
	uint32_t index;
	uint32_t rsvd;
	struct hbk_response resp;
};
static_assert(sizeof(struct hbk_msg_completion) == 408, "");

/* GET_DMA_SPEC reply payload, in hbk_msg_reply.val[]: */
#define HBK_DMA_VAL_MAX_TRANSFER   0 /* bytes */
#define HBK_DMA_VAL_ALIGNMENT      1 /* bytes, power of two */
#define HBK_DMA_VAL_ADDRESS_BITS   2
#define HBK_DMA_VAL_SEGMENT_TYPE   3 /* enum hbk_dma_segment */

/* REPORT_CONSTRAINTS: a bitmap of the keys present and their values. */
struct hbk_msg_constraints {
	struct hbk_msg_hdr hdr;
	uint32_t present;   /* bit k set: key k (enum hbk_constraint) reported */
	uint32_t rsvd;
	uint64_t value[HBK_CONS_COUNT];
};
static_assert(sizeof(struct hbk_msg_constraints) == 80, "");

/*
 * HELLO reply: the driver's name and its entry-point queue bindings, so the
 * host can refuse a driver whose I/O entry points are bound to a queue other
 * than Default (HBK-C01) before any I/O is sent.
 */
#define HBK_NAME_LEN 32
struct hbk_msg_binding {
	uint16_t entry;               /* enum hbk_msg_type of the entry point */
	uint16_t rsvd[3];
	char     queue[HBK_NAME_LEN]; /* NUL-terminated */
};
static_assert(sizeof(struct hbk_msg_binding) == 40, "");

#define HBK_MAX_BINDINGS 16
struct hbk_msg_hello_reply {
	struct hbk_msg_hdr hdr;
	int32_t  status;
	uint32_t abi_version;
	char     driver_name[HBK_NAME_LEN];
	uint32_t binding_count;
	uint32_t rsvd;
	struct hbk_msg_binding binding[HBK_MAX_BINDINGS];
};
static_assert(sizeof(struct hbk_msg_hello_reply) == 64 + HBK_MAX_BINDINGS * 40, "");

/* VIOLATION: a contract breach the driver runtime caught on its side. */
struct hbk_msg_violation {
	struct hbk_msg_hdr hdr;
	uint16_t rule;        /* n of HBK-Cnn */
	uint16_t rsvd[3];
	uint64_t task_tag;    /* the task at the driver whose completion was
			       * refused (its response an earlier task's), or 0 */
	char     text[192];   /* NUL-terminated */
};
static_assert(sizeof(struct hbk_msg_violation) == 224, "");
static_assert(__builtin_offsetof(struct hbk_msg_violation, task_tag) == 24, "");
/* The rules the runtime catches on its side, bit n for HBK-Cnn: slots
 * (C03), paths (C04), the bundled handle (C06), per-task handles (C07), a
 * reset answered FUNCTION COMPLETE while tasks it covers are still at the
 * driver (C11).  The host counts a VIOLATION for no other rule. */
#define HBK_RUNTIME_RULES ((1u << 3) | (1u << 4) | (1u << 6) | (1u << 7) | (1u << 11))

/* Largest message either side ever sends or accepts. */
#define HBK_MSG_MAX  sizeof(struct hbk_msg_hello_reply)

#endif /* HBK_ABI_H */
