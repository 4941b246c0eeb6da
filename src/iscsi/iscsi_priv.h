/* SPDX-License-Identifier: MIT */
/*
 * Private half of the iSCSI target: the wire layout of the PDUs (the 48-byte
 * Basic Header Segment and one view per opcode), the login key negotiation,
 * CHAP, the CmdSN window, and the server, connection, task and task
 * management state shared by the files of src/iscsi.  Shared with the
 * protocol unit tests (tests/test_iscsi_proto.c); nothing else includes it.
 */
#ifndef HBK_ISCSI_PRIV_H
#define HBK_ISCSI_PRIV_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "hbk/host.h"
#include "hbk/iscsi.h"

/* ---- Wire format (RFC 7143 section 11) ------------------------------------------- */

enum hbk_iscsi_opcode {
	/* initiator -> target */
	HBK_ISCSI_OP_NOP_OUT = 0x00,
	HBK_ISCSI_OP_SCSI_CMD = 0x01,
	HBK_ISCSI_OP_TMF_REQ = 0x02,
	HBK_ISCSI_OP_LOGIN_REQ = 0x03,
	HBK_ISCSI_OP_TEXT_REQ = 0x04,
	HBK_ISCSI_OP_DATA_OUT = 0x05,
	HBK_ISCSI_OP_LOGOUT_REQ = 0x06,
	HBK_ISCSI_OP_SNACK = 0x10,
	/* target -> initiator */
	HBK_ISCSI_OP_NOP_IN = 0x20,
	HBK_ISCSI_OP_SCSI_RSP = 0x21,
	HBK_ISCSI_OP_TMF_RSP = 0x22,
	HBK_ISCSI_OP_LOGIN_RSP = 0x23,
	HBK_ISCSI_OP_TEXT_RSP = 0x24,
	HBK_ISCSI_OP_DATA_IN = 0x25,
	HBK_ISCSI_OP_LOGOUT_RSP = 0x26,
	HBK_ISCSI_OP_R2T = 0x31,
	HBK_ISCSI_OP_ASYNC = 0x32,
	HBK_ISCSI_OP_REJECT = 0x3f,
};

#define HBK_ISCSI_OP_MASK      0x3fu
#define HBK_ISCSI_OP_IMMEDIATE 0x40u
#define HBK_ISCSI_FLAG_FINAL   0x80u
#define HBK_ISCSI_BHS_LEN      48u
#define HBK_ISCSI_DIGEST_LEN   4u
#define HBK_ISCSI_NO_TAG       0xffffffffu

/* SCSI Command flags (byte 1). */
#define HBK_ISCSI_CMD_READ     0x40u
#define HBK_ISCSI_CMD_WRITE    0x20u
#define HBK_ISCSI_CMD_ATTR     0x07u
/* SCSI Response and Data-In flags (byte 1). */
#define HBK_ISCSI_RSP_OVERFLOW  0x04u   /* O */
#define HBK_ISCSI_RSP_UNDERFLOW 0x02u   /* U */
#define HBK_ISCSI_DATAIN_ACK    0x40u   /* A */
#define HBK_ISCSI_DATAIN_STATUS 0x01u   /* S */
/* Login and Text flags (byte 1). */
#define HBK_ISCSI_LOGIN_TRANSIT  0x80u  /* T */
#define HBK_ISCSI_TEXT_CONTINUE  0x40u  /* C */
#define HBK_ISCSI_LOGIN_CSG(f)   (((f) >> 2) & 3u)
#define HBK_ISCSI_LOGIN_NSG(f)   ((f) & 3u)

/* Login stages (CSG/NSG). */
enum hbk_iscsi_stage {
	HBK_ISCSI_STAGE_SECURITY = 0,
	HBK_ISCSI_STAGE_OPERATIONAL = 1,
	HBK_ISCSI_STAGE_FULL = 3,
	HBK_ISCSI_STAGE_TEXT = 4,      /* not on the wire: Text negotiation in full feature */
};

/* Login status: class << 8 | detail (RFC 7143 11.13.5). */
#define HBK_ISCSI_LOGIN_OK                 0x0000
#define HBK_ISCSI_LOGIN_INITIATOR_ERROR    0x0200
#define HBK_ISCSI_LOGIN_AUTH_FAILED        0x0201
#define HBK_ISCSI_LOGIN_FORBIDDEN          0x0202
#define HBK_ISCSI_LOGIN_NOT_FOUND          0x0203
#define HBK_ISCSI_LOGIN_UNSUPPORTED_VERSION 0x0205
#define HBK_ISCSI_LOGIN_TOO_MANY_CONNS     0x0206
#define HBK_ISCSI_LOGIN_MISSING_PARAM      0x0207
#define HBK_ISCSI_LOGIN_CANT_INCLUDE       0x0208
#define HBK_ISCSI_LOGIN_NO_SESSION_TYPE    0x0209
#define HBK_ISCSI_LOGIN_NO_SESSION         0x020a
#define HBK_ISCSI_LOGIN_INVALID_REQUEST    0x020b
#define HBK_ISCSI_LOGIN_TARGET_ERROR       0x0300
#define HBK_ISCSI_LOGIN_OUT_OF_RESOURCES   0x0302

/* Reject reasons (RFC 7143 11.17.1). */
enum hbk_iscsi_reject {
	HBK_ISCSI_REJECT_DIGEST = 0x02,
	HBK_ISCSI_REJECT_SNACK = 0x03,
	HBK_ISCSI_REJECT_PROTOCOL = 0x04,
	HBK_ISCSI_REJECT_UNSUPPORTED = 0x05,
	HBK_ISCSI_REJECT_IMMEDIATE = 0x06,
	HBK_ISCSI_REJECT_TASK_IN_PROGRESS = 0x07,
	HBK_ISCSI_REJECT_INVALID_FIELD = 0x09,
	HBK_ISCSI_REJECT_OUT_OF_RESOURCES = 0x0a,
	HBK_ISCSI_REJECT_WAITING_LOGOUT = 0x0c,
};

/* Task management functions and responses (RFC 7143 11.5, 11.6). */
enum hbk_iscsi_tmf_function {
	HBK_ISCSI_TMF_ABORT_TASK = 1,
	HBK_ISCSI_TMF_ABORT_TASK_SET = 2,
	HBK_ISCSI_TMF_CLEAR_ACA = 3,
	HBK_ISCSI_TMF_CLEAR_TASK_SET = 4,
	HBK_ISCSI_TMF_LUN_RESET = 5,
	HBK_ISCSI_TMF_TARGET_WARM_RESET = 6,
	HBK_ISCSI_TMF_TARGET_COLD_RESET = 7,
	HBK_ISCSI_TMF_TASK_REASSIGN = 8,
};
enum hbk_iscsi_tmf_response {
	HBK_ISCSI_TMF_COMPLETE = 0,
	HBK_ISCSI_TMF_NO_TASK = 1,
	HBK_ISCSI_TMF_NO_LUN = 2,
	HBK_ISCSI_TMF_UNSUPPORTED = 5,
	HBK_ISCSI_TMF_REJECTED = 255,
};

/*
 * The Basic Header Segment as every opcode shares it.  Multi-byte fields
 * are big-endian byte arrays, read and written with get_be and put_be.
 */
struct hbk_iscsi_bhs {
	uint8_t opcode;            /* .I opcode */
	uint8_t flags;
	uint8_t spec[2];
	uint8_t ahs_len;           /* TotalAHSLength, in 4-byte words */
	uint8_t dlen[3];           /* DataSegmentLength */
	uint8_t lun[8];            /* LUN or opcode-specific */
	uint8_t itt[4];            /* Initiator Task Tag */
	uint8_t spec2[28];
};
static_assert(sizeof(struct hbk_iscsi_bhs) == HBK_ISCSI_BHS_LEN, "BHS is 48 bytes");
static_assert(offsetof(struct hbk_iscsi_bhs, ahs_len) == 4, "TotalAHSLength at 4");
static_assert(offsetof(struct hbk_iscsi_bhs, dlen) == 5, "DataSegmentLength at 5");
static_assert(offsetof(struct hbk_iscsi_bhs, itt) == 16, "ITT at 16");

/* SCSI Command (0x01). */
struct hbk_iscsi_scsi_cmd {
	uint8_t opcode, flags, rsvd2[2];
	uint8_t ahs_len, dlen[3];
	uint8_t lun[8];
	uint8_t itt[4];
	uint8_t edtl[4];           /* Expected Data Transfer Length */
	uint8_t cmdsn[4];
	uint8_t exp_statsn[4];
	uint8_t cdb[16];
};
static_assert(sizeof(struct hbk_iscsi_scsi_cmd) == 48, "SCSI Command BHS");
static_assert(offsetof(struct hbk_iscsi_scsi_cmd, edtl) == 20, "EDTL at 20");
static_assert(offsetof(struct hbk_iscsi_scsi_cmd, cmdsn) == 24, "CmdSN at 24");
static_assert(offsetof(struct hbk_iscsi_scsi_cmd, cdb) == 32, "CDB at 32");

/* SCSI Response (0x21). */
struct hbk_iscsi_scsi_rsp {
	uint8_t opcode, flags, response, status;
	uint8_t ahs_len, dlen[3];
	uint8_t rsvd8[8];
	uint8_t itt[4];
	uint8_t snack_tag[4];
	uint8_t statsn[4];
	uint8_t exp_cmdsn[4];
	uint8_t max_cmdsn[4];
	uint8_t exp_datasn[4];
	uint8_t bidi_residual[4];
	uint8_t residual[4];
};
static_assert(sizeof(struct hbk_iscsi_scsi_rsp) == 48, "SCSI Response BHS");
static_assert(offsetof(struct hbk_iscsi_scsi_rsp, statsn) == 24, "StatSN at 24");
static_assert(offsetof(struct hbk_iscsi_scsi_rsp, residual) == 44, "residual at 44");

/* SCSI Data-Out (0x05) and Data-In (0x25). */
struct hbk_iscsi_data {
	uint8_t opcode, flags, rsvd2, status;   /* status: Data-In with S */
	uint8_t ahs_len, dlen[3];
	uint8_t lun[8];
	uint8_t itt[4];
	uint8_t ttt[4];
	uint8_t statsn[4];         /* Data-In: StatSN with S; Data-Out: reserved */
	uint8_t exp_cmdsn[4];      /* Data-Out: ExpStatSN */
	uint8_t max_cmdsn[4];
	uint8_t datasn[4];
	uint8_t offset[4];         /* Buffer Offset */
	uint8_t residual[4];
};
static_assert(sizeof(struct hbk_iscsi_data) == 48, "Data BHS");
static_assert(offsetof(struct hbk_iscsi_data, ttt) == 20, "TTT at 20");
static_assert(offsetof(struct hbk_iscsi_data, datasn) == 36, "DataSN at 36");
static_assert(offsetof(struct hbk_iscsi_data, offset) == 40, "Buffer Offset at 40");

/* Ready To Transfer (0x31). */
struct hbk_iscsi_r2t {
	uint8_t opcode, flags, rsvd2[2];
	uint8_t ahs_len, dlen[3];
	uint8_t lun[8];
	uint8_t itt[4];
	uint8_t ttt[4];
	uint8_t statsn[4];
	uint8_t exp_cmdsn[4];
	uint8_t max_cmdsn[4];
	uint8_t r2tsn[4];
	uint8_t offset[4];
	uint8_t length[4];         /* Desired Data Transfer Length */
};
static_assert(sizeof(struct hbk_iscsi_r2t) == 48, "R2T BHS");
static_assert(offsetof(struct hbk_iscsi_r2t, r2tsn) == 36, "R2TSN at 36");

/* NOP-Out (0x00), NOP-In (0x20), Text Request (0x04) and Response (0x24):
 * the same field positions. */
struct hbk_iscsi_nop {
	uint8_t opcode, flags, rsvd2[2];
	uint8_t ahs_len, dlen[3];
	uint8_t lun[8];
	uint8_t itt[4];
	uint8_t ttt[4];
	uint8_t sn[4];             /* Out: CmdSN; In: StatSN */
	uint8_t exp_sn[4];         /* Out: ExpStatSN; In: ExpCmdSN */
	uint8_t max_cmdsn[4];      /* In only */
	uint8_t rsvd36[12];
};
static_assert(sizeof(struct hbk_iscsi_nop) == 48, "NOP/Text BHS");
static_assert(offsetof(struct hbk_iscsi_nop, sn) == 24, "CmdSN/StatSN at 24");

/* Task Management Function Request (0x02) and Response (0x22). */
struct hbk_iscsi_tmf_req {
	uint8_t opcode, function, rsvd2[2];   /* function: F bit | function */
	uint8_t ahs_len, dlen[3];
	uint8_t lun[8];
	uint8_t itt[4];
	uint8_t ref_itt[4];        /* Referenced Task Tag */
	uint8_t cmdsn[4];
	uint8_t exp_statsn[4];
	uint8_t ref_cmdsn[4];
	uint8_t exp_datasn[4];
	uint8_t rsvd40[8];
};
static_assert(sizeof(struct hbk_iscsi_tmf_req) == 48, "TMF Request BHS");
static_assert(offsetof(struct hbk_iscsi_tmf_req, ref_cmdsn) == 32, "RefCmdSN at 32");

struct hbk_iscsi_tmf_rsp {
	uint8_t opcode, flags, response, rsvd3;
	uint8_t ahs_len, dlen[3];
	uint8_t rsvd8[8];
	uint8_t itt[4];
	uint8_t rsvd20[4];
	uint8_t statsn[4];
	uint8_t exp_cmdsn[4];
	uint8_t max_cmdsn[4];
	uint8_t rsvd36[12];
};
static_assert(sizeof(struct hbk_iscsi_tmf_rsp) == 48, "TMF Response BHS");

/* Login Request (0x03) and Response (0x23). */
struct hbk_iscsi_login {
	uint8_t opcode, flags;     /* flags: T C . . CSG CSG NSG NSG */
	uint8_t version_max, version_min;  /* Response: Version-max, Version-active */
	uint8_t ahs_len, dlen[3];
	uint8_t isid[6];
	uint8_t tsih[2];
	uint8_t itt[4];
	uint8_t cid[2];            /* Request only */
	uint8_t rsvd22[2];
	uint8_t sn[4];             /* Request: CmdSN; Response: StatSN */
	uint8_t exp_sn[4];         /* Request: ExpStatSN; Response: ExpCmdSN */
	uint8_t max_cmdsn[4];      /* Response only */
	uint8_t status_class, status_detail;
	uint8_t rsvd38[10];
};
static_assert(sizeof(struct hbk_iscsi_login) == 48, "Login BHS");
static_assert(offsetof(struct hbk_iscsi_login, isid) == 8, "ISID at 8");
static_assert(offsetof(struct hbk_iscsi_login, tsih) == 14, "TSIH at 14");
static_assert(offsetof(struct hbk_iscsi_login, status_class) == 36, "Status at 36");

/* Logout Request (0x06) and Response (0x26). */
struct hbk_iscsi_logout {
	uint8_t opcode, flags, response, rsvd3;  /* flags: F | reason; response: Response only */
	uint8_t ahs_len, dlen[3];
	uint8_t rsvd8[8];
	uint8_t itt[4];
	uint8_t cid[2];            /* Request only */
	uint8_t rsvd22[2];
	uint8_t sn[4];             /* Request: CmdSN; Response: StatSN */
	uint8_t exp_sn[4];         /* Request: ExpStatSN; Response: ExpCmdSN */
	uint8_t max_cmdsn[4];      /* Response only */
	uint8_t rsvd36[4];
	uint8_t time2wait[2];
	uint8_t time2retain[2];
	uint8_t rsvd44[4];
};
static_assert(sizeof(struct hbk_iscsi_logout) == 48, "Logout BHS");
static_assert(offsetof(struct hbk_iscsi_logout, time2wait) == 40, "Time2Wait at 40");

/* Reject (0x3f): the data segment carries the rejected PDU's header. */
struct hbk_iscsi_reject_hdr {
	uint8_t opcode, flags, reason, rsvd3;
	uint8_t ahs_len, dlen[3];
	uint8_t rsvd8[8];
	uint8_t itt[4];            /* 0xffffffff */
	uint8_t rsvd20[4];
	uint8_t statsn[4];
	uint8_t exp_cmdsn[4];
	uint8_t max_cmdsn[4];
	uint8_t datasn[4];
	uint8_t rsvd40[8];
};
static_assert(sizeof(struct hbk_iscsi_reject_hdr) == 48, "Reject BHS");

static inline uint32_t hbk_iscsi_dlen(const struct hbk_iscsi_bhs *h)
{
	return get_be24(h->dlen);
}

static inline uint32_t hbk_iscsi_pad4(uint32_t n)
{
	return (4 - (n & 3)) & 3;
}

/* ---- Limits ------------------------------------------------------------------------ */

#define HBK_ISCSI_LOGIN_DATA_MAX   65536u   /* one Login PDU's data, and a login's text */
#define HBK_ISCSI_LOGIN_PDUS_MAX   64u      /* Login Requests per login */
#define HBK_ISCSI_DSL_MIN          512u
#define HBK_ISCSI_DSL_MAX          16777215u
#define HBK_ISCSI_OUR_MAX_RECV_DSL 262144u  /* MaxRecvDataSegmentLength the target declares */
#define HBK_ISCSI_OUR_MAX_BURST    1048576u
#define HBK_ISCSI_OUR_FIRST_BURST  262144u
#define HBK_ISCSI_MAX_XFER         (32u << 20)  /* larger commands: CHECK CONDITION */
#define HBK_ISCSI_CONN_BUF_MAX     (16u << 20)  /* command buffers one connection holds */
#define HBK_ISCSI_HEAP_MAX         (64u << 20)  /* heap command buffers of all connections */
#define HBK_ISCSI_STASH_MAX        (4u << 20)   /* data one connection keeps for waiting commands */
#define HBK_ISCSI_PEEK_MAX         65536u   /* data-in taken beyond the EDTL to tell overflow */
#define HBK_ISCSI_MAX_IMMEDIATE    32u      /* immediate SCSI commands outstanding */
#define HBK_ISCSI_MAX_DEPTH        512u
#define HBK_ISCSI_MAX_TMFS         8u       /* task management functions in progress */
#define HBK_ISCSI_TEXT_MAX         (1u << 20)  /* a Text Response, all its PDUs */
#define HBK_ISCSI_NAME_MAX         223u     /* iSCSI names (RFC 3722) */
#define HBK_ISCSI_VALUE_MAX        255u     /* ordinary text values */
#define HBK_ISCSI_KEY_MAX          63u
#define HBK_ISCSI_CHAP_MAX         1024u    /* binary CHAP values, decoded */
#define HBK_ISCSI_CHAP_TEXT_MAX    (2 * HBK_ISCSI_CHAP_MAX + 8)
#define HBK_ISCSI_STALL_MS         60000u   /* no progress on a PDU or a transfer */

/* ---- PDU headers (pdu.c) ---------------------------------------------------------- */

/* Where the connection is, for header checks. */
enum hbk_iscsi_phase {
	HBK_ISCSI_PHASE_LOGIN,
	HBK_ISCSI_PHASE_FULL,      /* full feature phase, normal session */
	HBK_ISCSI_PHASE_DISCOVERY, /* full feature phase, discovery session */
};

/*
 * Checks a received Basic Header Segment before anything else is read of
 * its PDU.  max_dsl is the data segment length the target accepts (its
 * declared MaxRecvDataSegmentLength, or the login limit).  Returns 0 when
 * the PDU may be processed, a positive enum hbk_iscsi_reject reason when it
 * must be answered with a Reject (its data, if any, is read and dropped),
 * or -EPROTO when the connection must be dropped (the framing itself cannot
 * be trusted).  Pure; any thread.
 */
int hbk_iscsi_bhs_check(const struct hbk_iscsi_bhs *h, enum hbk_iscsi_phase phase,
			uint32_t max_dsl);

/*
 * CRC32C (the iSCSI digest) of len bytes, continuing from crc, which is 0
 * for a fresh digest.  hbk_iscsi_crc32c(0, p, n) is the digest of p.  Pure.
 */
uint32_t hbk_iscsi_crc32c(uint32_t crc, const void *p, size_t len);

/* A digest as it travels: least significant byte first (RFC 7143 B.4). */
static inline void hbk_iscsi_put_digest(uint8_t *p, uint32_t crc)
{
	p[0] = (uint8_t)crc;
	p[1] = (uint8_t)(crc >> 8);
	p[2] = (uint8_t)(crc >> 16);
	p[3] = (uint8_t)(crc >> 24);
}

static inline uint32_t hbk_iscsi_get_digest(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The opcode's name for log lines ("SCSI Command", "0x1c"); static storage. */
const char *hbk_iscsi_opcode_name(unsigned opcode);

/* ---- Sequence numbers (serial number arithmetic, RFC 1982 with SERIAL_BITS 32) -------- */

static inline bool hbk_iscsi_sn_lt(uint32_t a, uint32_t b)
{
	return a != b && (uint32_t)(b - a) < 0x80000000u;
}

static inline bool hbk_iscsi_sn_le(uint32_t a, uint32_t b)
{
	return a == b || hbk_iscsi_sn_lt(a, b);
}

/*
 * The CmdSN window of a session (RFC 7143 4.2.2.1): commands in
 * [exp, max] are accepted, each CmdSN once; exp advances over every CmdSN
 * received; max advances as commands end, so at most `depth` non-immediate
 * commands are outstanding.  Commands received ahead of a gap are noted in
 * the bitmap (bit i: exp + 1 + i received).
 */
#define HBK_ISCSI_WINDOW_BITS (2 * HBK_ISCSI_MAX_DEPTH)
struct hbk_iscsi_window {
	uint32_t exp, max;
	uint64_t ahead[HBK_ISCSI_WINDOW_BITS / 64];
};

/* Starts a window at the login's CmdSN with `depth` commands of credit. */
void hbk_iscsi_window_init(struct hbk_iscsi_window *w, uint32_t cmdsn, uint32_t depth);

/*
 * Takes a non-immediate command's CmdSN.  Returns true when the command is
 * to be executed (and records it), false when it is outside the window or a
 * duplicate and must be ignored silently.  Pure.
 */
bool hbk_iscsi_window_take(struct hbk_iscsi_window *w, uint32_t cmdsn);

/* True when cmdsn lies in the window and was not received yet (RFC 7143
 * 11.5.1: an ABORT TASK for it completes, the command is then ignored). */
bool hbk_iscsi_window_pending(const struct hbk_iscsi_window *w, uint32_t cmdsn);

/* One non-immediate command ended: the window opens by one. */
static inline void hbk_iscsi_window_credit(struct hbk_iscsi_window *w)
{
	w->max++;
}

/* ---- Text and negotiation (param.c) ------------------------------------------------ */

/* A growing "key=value\0..." text, limited to cap bytes. */
struct hbk_iscsi_text {
	char *buf;
	uint32_t len, cap;
	bool overflow;              /* an addition did not fit */
};

/* Initialises with a limit; the buffer grows on demand.  hbk_iscsi_text_fini frees. */
void hbk_iscsi_text_init(struct hbk_iscsi_text *t, uint32_t cap);
void hbk_iscsi_text_fini(struct hbk_iscsi_text *t);
/* Appends "key=value\0" (value printf-formatted).  Returns 0, or -ENOSPC
 * (then t->overflow is set and t is unchanged) or -ENOMEM. */
int hbk_iscsi_text_add(struct hbk_iscsi_text *t, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Iterates the keys of a received text: *pos starts at 0.  Each call yields
 * one "key=value" pair with key and value NUL-terminated in place (the '='
 * is overwritten).  Returns 1 for a pair, 0 at the end, or -EINVAL for a
 * malformed pair: no '=', an empty or over-long key, a key with characters
 * outside [A-Za-z0-9.-+@_:], an over-long value, or text that does not end
 * in NUL.  Pure apart from writing into text.
 */
int hbk_iscsi_text_next(char *text, uint32_t len, uint32_t *pos, char **key, char **value);

/* What the target offers; fixed for a server. */
struct hbk_iscsi_limits {
	uint32_t max_recv_dsl;      /* the MaxRecvDataSegmentLength it declares */
	uint32_t max_burst;
	uint32_t first_burst;
	bool chap;                  /* AuthMethod=CHAP required */
};

/* The operational parameters of a connection and its session, as negotiated. */
struct hbk_iscsi_params {
	bool header_digest, data_digest;
	uint32_t max_recv_dsl;      /* what the target accepts per PDU */
	uint32_t max_send_dsl;      /* the initiator's MaxRecvDataSegmentLength */
	uint32_t max_burst, first_burst;
	bool initial_r2t, immediate_data;
	uint32_t max_outstanding_r2t, max_connections;
	uint32_t time2wait, time2retain;
	uint32_t erl;
};

/* Defaults of RFC 7143 section 13, with the target's declared receive length. */
void hbk_iscsi_params_default(struct hbk_iscsi_params *p, const struct hbk_iscsi_limits *lim);

enum hbk_iscsi_session_type {
	HBK_ISCSI_SESSION_UNSET = 0,
	HBK_ISCSI_SESSION_NORMAL,
	HBK_ISCSI_SESSION_DISCOVERY,
};

enum hbk_iscsi_auth {
	HBK_ISCSI_AUTH_UNSET = 0,   /* AuthMethod not negotiated (None by default) */
	HBK_ISCSI_AUTH_NONE,
	HBK_ISCSI_AUTH_CHAP,
	HBK_ISCSI_AUTH_REJECTED,    /* no acceptable method offered */
};

/* Security keys of one Login Request, copied for the CHAP exchange. */
#define HBK_ISCSI_GOT_CHAP_A 0x01u
#define HBK_ISCSI_GOT_CHAP_I 0x02u
#define HBK_ISCSI_GOT_CHAP_C 0x04u
#define HBK_ISCSI_GOT_CHAP_N 0x08u
#define HBK_ISCSI_GOT_CHAP_R 0x10u

/* The state of one negotiation: a whole login, or one Text exchange. */
struct hbk_iscsi_neg {
	struct hbk_iscsi_limits lim;
	struct hbk_iscsi_params p;
	uint64_t seen;              /* keys received so far (bit per key), for duplicates */
	enum hbk_iscsi_session_type session_type;
	enum hbk_iscsi_auth auth;
	char initiator_name[HBK_ISCSI_NAME_MAX + 1];
	char initiator_alias[HBK_ISCSI_VALUE_MAX + 1];
	char target_name[HBK_ISCSI_NAME_MAX + 1];
	bool send_targets;          /* Text: SendTargets asked */
	char send_targets_value[HBK_ISCSI_NAME_MAX + 1];
	bool declared_dsl;          /* the target's MaxRecvDataSegmentLength was sent */
	/* CHAP keys of the current PDU (HBK_ISCSI_GOT_*) */
	unsigned got;
	char chap_a[HBK_ISCSI_VALUE_MAX + 1];
	char chap_i[HBK_ISCSI_VALUE_MAX + 1];
	char chap_n[HBK_ISCSI_VALUE_MAX + 1];
	char chap_c[HBK_ISCSI_CHAP_TEXT_MAX + 1];
	char chap_r[HBK_ISCSI_CHAP_TEXT_MAX + 1];
};

/* Starts a negotiation with the RFC defaults. */
void hbk_iscsi_neg_init(struct hbk_iscsi_neg *n, const struct hbk_iscsi_limits *lim);

/*
 * Negotiates the keys of one Login or Text Request in stage `stage`
 * (HBK_ISCSI_STAGE_SECURITY, _OPERATIONAL, or _TEXT for the full feature
 * phase), writing the target's answers to *out in the order of the keys:
 * the agreed value, NotUnderstood for an unknown key, Irrelevant for a key
 * without meaning in the session type, Reject for a bad or out-of-range
 * value or a key only the target may send.  Declarations (InitiatorName,
 * SessionType, MaxRecvDataSegmentLength, ...) are recorded and not
 * answered; CHAP keys are copied into n for the CHAP exchange.  text is
 * modified in place.  Returns 0, or a login status (HBK_ISCSI_LOGIN_*) that
 * ends the login: INITIATOR_ERROR for malformed text, a key sent twice, a
 * security key in the operational stage; MISSING_PARAM for an empty
 * InitiatorName; NO_SESSION_TYPE for an unknown SessionType; AUTH_FAILED
 * when no offered AuthMethod is acceptable.  In the Text stage the caller
 * answers an error with a Reject.  Pure.
 */
int hbk_iscsi_negotiate(struct hbk_iscsi_neg *n, enum hbk_iscsi_stage stage,
			char *text, uint32_t len, struct hbk_iscsi_text *out);

/* Parses an iSCSI numerical value: decimal or 0x hex.  Returns 0 or -EINVAL. */
int hbk_iscsi_parse_number(const char *s, uint64_t *out);

/* ---- CHAP (chap.c) ------------------------------------------------------------------ */

#define HBK_ISCSI_CHAP_MD5 5
#define HBK_ISCSI_CHAP_CHALLENGE_LEN 16

/*
 * Decodes a CHAP binary value: "0x"/"0X" followed by hex digits (an odd
 * count has an implied leading zero) or "0b"/"0B" followed by base64.
 * Returns the decoded length, or -EINVAL for anything else, -ENOSPC when it
 * exceeds cap.  Pure.
 */
int hbk_iscsi_chap_decode(const char *s, uint8_t *out, size_t cap);

/* Encodes len bytes as "0x" + lowercase hex into out (2 len + 3 bytes). */
void hbk_iscsi_chap_hex(const uint8_t *p, size_t len, char *out);

/*
 * The CHAP response (RFC 1994): MD5(id || secret || challenge) into out[16].
 * Pure.
 */
void hbk_iscsi_chap_response(uint8_t id, const void *secret, size_t secret_len,
			     const uint8_t *challenge, size_t challenge_len, uint8_t out[16]);

/* Credentials of the target (a server's copy; NULL user: not configured). */
struct hbk_iscsi_creds {
	char *user, *secret;        /* one-way: what initiators must prove */
	char *mutual_user, *mutual_secret;
};

/* Where one login's CHAP exchange is. */
enum hbk_iscsi_chap_state {
	HBK_ISCSI_CHAP_WAIT_A,      /* AuthMethod=CHAP agreed; CHAP_A expected */
	HBK_ISCSI_CHAP_WAIT_R,      /* challenge sent; CHAP_N and CHAP_R expected */
	HBK_ISCSI_CHAP_DONE,        /* authenticated */
};

struct hbk_iscsi_chap {
	enum hbk_iscsi_chap_state state;
	uint8_t id;
	uint8_t challenge[HBK_ISCSI_CHAP_CHALLENGE_LEN];
};

/*
 * Runs one step of the target's side of CHAP on the CHAP keys in n (from
 * the Login Request just negotiated), appending the target's keys to *out.
 * WAIT_A takes CHAP_A (must offer 5) and answers CHAP_A, CHAP_I, CHAP_C
 * with a fresh random challenge; WAIT_R checks CHAP_N and CHAP_R against
 * creds and, when the initiator sent CHAP_I and CHAP_C, answers with the
 * target's mutual credentials.  Returns 0 (the state advanced, or nothing
 * was due yet), or HBK_ISCSI_LOGIN_AUTH_FAILED: a wrong name or response,
 * an unsupported algorithm, keys out of order, a mutual challenge with no
 * mutual credentials configured or equal to the target's own challenge.
 * Any thread.
 */
int hbk_iscsi_chap_step(struct hbk_iscsi_chap *c, const struct hbk_iscsi_creds *creds,
			const struct hbk_iscsi_neg *n, struct hbk_iscsi_text *out);

/* ---- Targets and the server (target.c) ---------------------------------------------- */

struct hbk_iscsi_conn;

/*
 * An initiator port that sent PERSISTENT RESERVE OUT: what its I_T nexus
 * identity (hbk_iscsi_nexus_id) was made of, kept past the session because
 * registrations outlive it.  The SCSI emulation knows the port only by that
 * 64-bit identity; the target turns it back into the port's iSCSI
 * TransportID where the emulation reports one (READ FULL STATUS).
 */
struct hbk_iscsi_port {
	uint64_t nexus;
	uint64_t used;              /* hbk_iscsi.port_clock when last noted */
	uint8_t isid[6];
	char name[HBK_ISCSI_NAME_MAX + 1];
};

#define HBK_ISCSI_PORTS_MAX 256u  /* ports remembered; past that the least
				   * recently noted one is forgotten */

struct hbk_iscsi {
	struct hbk_ctl *ctl;
	int lfd;                    /* listening socket */
	int efd;                    /* eventfd: wakes the listener (stop, exited connections) */
	pthread_t listener;
	char addr[64];              /* numeric host it listens on */
	uint16_t port;
	int family;
	char *iqn_prefix;
	struct hbk_iscsi_creds creds;
	struct hbk_iscsi_limits lim;
	unsigned max_conns;
	uint32_t login_timeout_ms;
	uint32_t depth;
	pthread_mutex_t lock;       /* guards conns, nconns, next_tsih, and each
				     * connection's registered flag and its fd's closing */
	struct hbk_iscsi_conn *conns;
	unsigned nconns;
	uint16_t next_tsih;
	struct hbk_iscsi_port *ports; /* grows to HBK_ISCSI_PORTS_MAX; under lock */
	unsigned nports, ports_cap;
	uint64_t port_clock;        /* ticks at each port_note; under lock */
	atomic_bool stopping;
	atomic_uint buf_waiters;    /* connections holding commands for want of arena */
	atomic_ullong arena_held;   /* arena bytes held by commands of every connection */
	atomic_ullong heap_held;    /* heap buffer bytes held by commands of every connection */
};

/* The target id named by an iSCSI name "<prefix>:t<N>"; -ENOENT otherwise,
 * or when the controller has no live LUN in that target. */
int hbk_iscsi_target_lookup(struct hbk_iscsi *s, const char *name, uint64_t *target);

/* The distinct target ids of live LUNs, ascending, at most max of them.
 * Returns how many there are (may exceed max). */
unsigned hbk_iscsi_targets(struct hbk_iscsi *s, uint64_t *ids, unsigned max);

/* A LUN of the controller by (target, lun), or NULL. */
struct hbk_lun *hbk_iscsi_find_lun(struct hbk_iscsi *s, uint64_t target, uint64_t lun);

/*
 * The I_T nexus identity of an initiator port: FNV-1a 64 of
 * "<InitiatorName>,i,0x<ISID in 12 hex digits>", never 0.  Pure.
 */
uint64_t hbk_iscsi_nexus_id(const char *initiator_name, const uint8_t isid[6]);

/* PERSISTENT RESERVE IN READ FULL STATUS asks the LUN for this many bytes,
 * whatever the initiator's allocation length (the SCSI emulation's longest
 * answer is 8 + 48 bytes a registrant), and its buffer holds this many:
 * the answer grows when iSCSI TransportIDs replace the SAS ones. */
#define HBK_ISCSI_PR_FULL_ASK   (8u + 64u * 48u)
#define HBK_ISCSI_PR_FULL_ROOM  (8u + 64u * 272u)

/* Remembers c's initiator port (name, ISID, identity) for READ FULL STATUS,
 * at each PERSISTENT RESERVE OUT it sends; a full table forgets the port
 * noted least recently.  s->lock held; any thread. */
void hbk_iscsi_port_note(struct hbk_iscsi *s, const struct hbk_iscsi_conn *c);

/*
 * Rewrites a whole READ FULL STATUS parameter list (len bytes in buf, room
 * for cap): each descriptor whose TransportID is the SAS form of the
 * identity of an iSCSI initiator port this target has seen becomes that
 * port's iSCSI TransportID (SPC-5 7.6.4.6, format 01b: "<name>,i,0x<ISID>",
 * NUL-terminated, padded to a multiple of 4), and the ADDITIONAL LENGTH
 * follows.  A list cut short, malformed, or that would not fit in cap is
 * left alone.  Returns the list's length.  Takes s->lock; any thread.
 */
uint32_t hbk_iscsi_pr_full_status(struct hbk_iscsi *s, uint8_t *buf, uint32_t len, uint32_t cap);

/*
 * Registers a connection that completed its login as a session: assigns a
 * TSIH (or keeps the one the login named, which must be that of the older
 * session of the same initiator port) and ends any older session of the
 * same initiator port (InitiatorName + ISID) to the same target (session
 * reinstatement).  Returns 0, or -ENOENT when the login named a TSIH that
 * no session of that initiator port has.  On the connection's thread.
 */
int hbk_iscsi_session_register(struct hbk_iscsi *s, struct hbk_iscsi_conn *c);

/* A connection freed arena memory: wakes connections holding commands. */
void hbk_iscsi_buf_freed(struct hbk_iscsi *s);

/* ---- Connections (conn.c) ----------------------------------------------------------- */

/* Starts a connection's thread on an accepted socket.  Returns 0 or -errno
 * (the socket is then closed).  Under nothing; on the listener. */
int hbk_iscsi_conn_start(struct hbk_iscsi *s, int fd);

/* Joins an exited connection's thread and frees it; it is off s->conns. */
void hbk_iscsi_conn_reap(struct hbk_iscsi_conn *c);

/* Asks a connection to end (stop, reinstatement).  Under s->lock. */
void hbk_iscsi_conn_kill(struct hbk_iscsi_conn *c);

/* Wakes a connection's thread.  Any thread. */
void hbk_iscsi_conn_wake(struct hbk_iscsi_conn *c);

/* ---- The connection and its tasks (shared by conn.c, login.c, cmd.c, tmf.c) --------- */

enum hbk_iscsi_task_state {
	HBK_ISCSI_TASK_DATA_OUT,    /* receiving data-out (or waiting for an arena buffer) */
	HBK_ISCSI_TASK_HOST,        /* at the controller */
	HBK_ISCSI_TASK_REPLY,       /* data-in and status being sent */
};

struct hbk_iscsi_tmf;

struct hbk_iscsi_task {
	struct hbk_iscsi_task *next, *prev;   /* the connection's tasks */
	struct hbk_iscsi_task *ev_next;       /* the connection's completion list */
	struct hbk_iscsi_conn *conn;
	struct hbk_scsi_cmd cmd;
	enum hbk_iscsi_task_state state;
	bool immediate;
	bool read, write;           /* the iSCSI R and W bits */
	bool heap;                  /* buf came from malloc: the arena could never hold it */
	bool host_done;             /* the controller completed it */
	bool streaming;             /* its Data-In/response stream is in the send queue */
	bool credited;              /* its CmdSN's credit went back to the window */
	bool waiting;               /* waits for an arena buffer */
	bool held;                  /* arrived ahead of a CmdSN gap: no buffer, runs once the gap fills */
	uint64_t seq;               /* arrival order on the connection */
	uint8_t lun_raw[8];
	uint32_t itt, cmdsn, edtl;
	bool cdb_known;             /* cdb_bytes is the CDB's own transfer length */
	bool alloc_known;           /* a data-in CDB's allocation length exceeds the EDTL */
	bool pr_full;               /* READ FULL STATUS, asked for HBK_ISCSI_PR_FULL_ASK bytes */
	uint32_t pr_alloc;          /* its own allocation length */
	uint64_t cdb_bytes;
	uint8_t *buf;               /* arena (or heap) buffer, buf_len bytes */
	uint64_t buf_len;
	uint64_t sub_len;           /* bytes handed to the controller */
	uint8_t sub_dir;            /* enum hbk_dir handed to the controller */
	uint8_t *stash;             /* unsolicited data kept while waiting for a buffer */
	uint32_t stash_len;
	bool full;                  /* no buffer and no room for a stash: TASK SET FULL */
	/* data-out */
	uint32_t received;          /* bytes of data-out in place, from offset 0 */
	uint32_t unsol_end;         /* unsolicited data may reach this offset */
	bool unsol_open;            /* unsolicited Data-Out PDUs still to come */
	uint32_t unsol_datasn;
	uint32_t ttt;               /* of the outstanding R2T; 0xffffffff: none */
	uint32_t r2tsn, r2t_off, r2t_len, r2t_datasn;
	uint64_t stall_ns;          /* when data-out was last awaited or received */
	/* A rejected command that reused this task's ITT announced
	 * unsolicited Data-Out: that sequence (offset, DataSN, end) is
	 * dropped, not taken as this task's. */
	bool dup_open;
	uint32_t dup_off, dup_datasn, dup_end;
	/* a failure known before execution: answered once the data-out ended */
	uint8_t fail_key;
	uint16_t fail_asc;
	/* data-in and status */
	uint32_t xfer;              /* data-in bytes to send */
	uint32_t sent;
	uint32_t datasn;
	uint32_t burst;             /* bytes in the current Data-In sequence */
	struct hbk_iscsi_tmf *tmf;  /* the TMF aborting it */
};

/* One entry of the send queue: a PDU, or a task's stream of Data-In PDUs
 * ending in its status, one PDU at a time. */
enum hbk_iscsi_tx_kind {
	HBK_ISCSI_TX_PDU,
	HBK_ISCSI_TX_STREAM,        /* task: regenerated after each PDU until the status */
	HBK_ISCSI_TX_CLOSE,         /* a PDU after which the connection closes */
};

struct hbk_iscsi_tx {
	struct hbk_iscsi_tx *next;
	enum hbk_iscsi_tx_kind kind;
	uint8_t hdr[HBK_ISCSI_BHS_LEN + HBK_ISCSI_DIGEST_LEN];
	uint32_t hdr_len;
	const uint8_t *data;
	uint32_t dlen;
	uint8_t tail[3 + HBK_ISCSI_DIGEST_LEN];   /* padding and data digest */
	uint32_t tail_len;
	size_t sent;
	void *own;                  /* heap data freed once sent */
	uint32_t queued_bytes;      /* of own, counted in the connection's tx_bytes */
	struct hbk_iscsi_task *task;   /* STREAM: the task */
	bool last;                  /* STREAM: this PDU ends the task's stream */
};

struct hbk_iscsi_tmf {
	struct hbk_iscsi_tmf *next;     /* the connection's TMFs */
	struct hbk_iscsi_tmf *ev_next;  /* finished workers */
	struct hbk_iscsi_conn *conn;
	pthread_t thread;
	bool worker;                /* a worker thread runs hbk_sam_tmf */
	bool worker_done;
	int host_rc;                /* what hbk_sam_tmf returned */
	int op;                     /* enum hbk_tmf */
	uint8_t function;
	uint32_t itt;
	uint64_t target, lun;
	struct hbk_iscsi_task *abort;   /* ABORT TASK: the task, held until the end */
	struct hbk_scsi_cmd **cmds;     /* ABORT TASK SET: the commands to abort */
	unsigned ncmds;
	unsigned pending;           /* tasks it marked that the controller still holds */
};

/*
 * A non-immediate NOP-Out, Text, Task Management or Logout Request that
 * arrived ahead of a CmdSN gap: kept, header and data, until the gap fills,
 * then acted on in CmdSN order with the held SCSI commands
 * (hbk_iscsi_cmd_release).  Its CmdSN is credited only then, so the window
 * bounds how many wait; its data counts in the connection's stash_bytes.
 */
struct hbk_iscsi_held {
	struct hbk_iscsi_held *next;    /* the connection's held requests */
	uint32_t cmdsn;
	uint32_t dlen;
	uint64_t since_ns;              /* when it arrived */
	uint8_t hdr[HBK_ISCSI_BHS_LEN];
	uint8_t data[];
};

struct hbk_iscsi_conn {
	struct hbk_iscsi_conn *next;    /* s->conns */
	struct hbk_iscsi *srv;
	pthread_t thread;
	int fd;                         /* closed (and set to -1) under srv->lock */
	int efd;                        /* eventfd: completions, TMF workers, kill, buffers */
	atomic_bool kill;
	atomic_bool exited;             /* the thread is done; the listener joins and frees */
	atomic_bool want_buf;           /* holds a command for want of an arena buffer */
	char peer[80];

	/* session (one connection per session) */
	enum hbk_iscsi_phase phase;
	enum hbk_iscsi_session_type session_type;
	bool registered;                /* a session reinstatement finds it; under srv->lock */
	uint64_t target;
	char target_name[HBK_ISCSI_NAME_MAX + 1];
	char initiator_name[HBK_ISCSI_NAME_MAX + 1];
	uint8_t isid[6];
	uint16_t tsih, cid;
	uint64_t nexus;
	/* A normal session of this nexus was registered: its end is an I_T
	 * nexus loss, told to the controller in teardown; under srv->lock. */
	bool nexus_held;
	struct hbk_iscsi_params p;
	struct hbk_iscsi_window win;
	uint32_t statsn;
	uint32_t next_ttt;

	/* login */
	struct hbk_iscsi_login_state *login;
	uint64_t login_deadline_ns;

	/* text continuation (a Text Response longer than one PDU) */
	struct hbk_iscsi_text text_rsp;
	uint32_t text_off, text_ttt, text_itt;

	/* receiving */
	struct hbk_iscsi_rx *rx;

	/* sending */
	struct hbk_iscsi_tx *tx_head, *tx_tail;
	unsigned tx_count;
	size_t tx_bytes;                /* heap data of the queued PDUs */
	bool tx_blocked;
	uint64_t tx_stall_ns;
	bool closing;                   /* ending: no more input is read */
	bool fatal;                     /* end now, without sending what is queued */
	bool close_after_tx;            /* end once the send queue drained */
	uint64_t close_deadline_ns;

	/* tasks */
	struct hbk_iscsi_task *tasks;   /* every live task */
	unsigned ntasks, nimmediate;
	unsigned host_outstanding;
	unsigned wait_buf;              /* tasks waiting for an arena buffer */
	unsigned nheld;                 /* tasks and requests held ahead of a CmdSN gap */
	struct hbk_iscsi_held *held;    /* requests held ahead of a CmdSN gap */
	uint64_t buf_bytes;             /* buffers its tasks hold, arena and heap */
	uint64_t stash_bytes;           /* data its waiting tasks and held requests keep aside */
	uint64_t task_seq;
	/* Aborted tasks that still had Data-Out due, and writes ignored or
	 * rejected before they became tasks, whose late Data-Out is dropped;
	 * an entry goes when its sequence ends (F).  Room for as many as can
	 * be outstanding, so a reset of a full window forgets none;
	 * HBK_ISCSI_NO_TAG when empty. */
	uint32_t aborted_itt[HBK_ISCSI_MAX_DEPTH + HBK_ISCSI_MAX_IMMEDIATE];
	unsigned aborted_pos;
	struct hbk_iscsi_tmf *tmfs;
	unsigned ntmfs;
	unsigned lun_gen;               /* hbk_ctl_lun_count when the cache was filled */
	struct { uint64_t lun; uint32_t bs; } bs_cache[16];
	unsigned bs_count;

	/* events from other threads, under ev_lock */
	pthread_mutex_t ev_lock;
	struct hbk_iscsi_task *ev_tasks, *ev_tasks_tail;
	struct hbk_iscsi_tmf *ev_tmfs;
};

/* conn.c: queueing output.  All on the connection's thread. */
struct hbk_iscsi_tx *hbk_iscsi_tx_new(struct hbk_iscsi_conn *c, enum hbk_iscsi_tx_kind kind);
/* Finishes a PDU whose header is in tx->hdr (opcode, flags, fields) and whose
 * data is tx->data/dlen: sets DataSegmentLength, digests and padding, and
 * appends it to the send queue. */
void hbk_iscsi_tx_queue(struct hbk_iscsi_conn *c, struct hbk_iscsi_tx *tx);
/* Seals a header and data into tx without queueing it (streams). */
void hbk_iscsi_tx_seal(struct hbk_iscsi_conn *c, struct hbk_iscsi_tx *tx);
/* Sends a Reject of the PDU whose header is hdr. */
void hbk_iscsi_send_reject(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *hdr,
			   enum hbk_iscsi_reject reason);
/* StatSN, ExpCmdSN and MaxCmdSN into a response header at their usual
 * offsets (24, 28, 32); advance: consume a StatSN. */
void hbk_iscsi_fill_sn(struct hbk_iscsi_conn *c, uint8_t *hdr, bool advance);
/* True while t's Data-Out (or immediate data) is being received; t NULL:
 * any task's. */
bool hbk_iscsi_rx_busy(const struct hbk_iscsi_conn *c, const struct hbk_iscsi_task *t);
/* Ends the connection: at once (fatal) or once the send queue drained. */
void hbk_iscsi_conn_close(struct hbk_iscsi_conn *c, bool flush, const char *why);
/* Acts on a NOP-Out, Text, Task Management or Logout Request whose CmdSN
 * (when it has one) was taken and credited already; data is its data
 * segment, which a Text Request's parsing writes into. */
void hbk_iscsi_request_run(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h, uint8_t *data,
			   uint32_t dlen);

/* login.c */
int hbk_iscsi_login_pdu(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h,
			uint8_t *data, uint32_t dlen);
void hbk_iscsi_login_free(struct hbk_iscsi_conn *c);
void hbk_iscsi_text_pdu(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h,
			uint8_t *data, uint32_t dlen);

/* cmd.c */
/*
 * A SCSI Command header arrived (with its CmdSN not yet taken): takes the
 * CmdSN, checks the command and creates its task.  Returns the task, with
 * *dest where its immediate data goes (NULL: dropped); or NULL when the
 * command is ignored (outside the window), rejected (the Reject is queued)
 * or the connection must end (closing is set).  The unsolicited Data-Out
 * of an ignored or rejected write is dropped quietly.
 */
struct hbk_iscsi_task *hbk_iscsi_cmd_begin(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h,
					   uint8_t **dest);
/* Its immediate data (imm bytes, maybe 0) is in place: proceed. */
void hbk_iscsi_cmd_ready(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t, uint32_t imm);
/* A Data-Out header arrived: checks it against its task and returns where
 * its data goes (NULL: dropped; *task NULL when there is nothing to do
 * afterwards).  A Data-Out that breaks the sequence ends the connection. */
uint8_t *hbk_iscsi_data_out_begin(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h,
				  struct hbk_iscsi_task **task);
/* Its data is in place. */
void hbk_iscsi_data_out_end(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t,
			    const struct hbk_iscsi_bhs *h);
/* The controller completed t (event processing on the connection thread). */
void hbk_iscsi_cmd_host_done(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t);
/* Sends t's data-in and status (or nothing when aborted). */
void hbk_iscsi_cmd_reply(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t);
/* Builds the next PDU of t's stream into tx (not sealed); sets tx->last on
 * the final one, which carries the status. */
void hbk_iscsi_cmd_stream(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t,
			  struct hbk_iscsi_tx *tx);
/* Frees a task no longer at the controller (buffer, links, credit). */
void hbk_iscsi_task_free(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t);
/* Retries tasks waiting for an arena buffer, then releases the held tasks
 * that may go on.  On the connection's thread. */
void hbk_iscsi_cmd_retry_buffers(struct hbk_iscsi_conn *c);
/* After a PDU that may have advanced ExpCmdSN, or a buffer given to a
 * waiting task: tasks and requests held ahead of a gap that is now filled
 * go on, in CmdSN order (RFC 7143 4.2.2.1); a task once every command
 * before it has its buffer, taking its own then (or waiting for one), a
 * request (hbk_iscsi_held) at once.  On the connection's thread. */
void hbk_iscsi_cmd_release(struct hbk_iscsi_conn *c);
/* Finds a live task by ITT. */
struct hbk_iscsi_task *hbk_iscsi_task_find(struct hbk_iscsi_conn *c, uint32_t itt);
/* Drops a task that has not reached the controller (abort, teardown). */
void hbk_iscsi_task_drop(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t);
/* Tasks waiting too long for their data-out, or tasks and requests held
 * ahead of a CmdSN gap that does not fill: the reason the connection
 * stalls, NULL when it does not (the string is static).  On the
 * connection's thread. */
const char *hbk_iscsi_cmd_stalled(const struct hbk_iscsi_conn *c, uint64_t now);
/* Whether task t still awaits Data-Out it asked for: an R2T's, or the rest
 * of its unsolicited burst. */
bool hbk_iscsi_cmd_transferring(const struct hbk_iscsi_task *t);
/* Ends task t, which a task set function aborted while it awaited Data-Out,
 * and tells the function (hbk_iscsi_tmf_task_done). */
void hbk_iscsi_cmd_drained(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t);

/*
 * The transfer length a CDB asks for, when the CDB is one of the block
 * READ/WRITE/WRITE AND VERIFY commands whose length counts blocks: sets
 * *blocks and *write and returns true; false for any other CDB.  Used only
 * to size buffers and report residuals.  Pure.
 */
bool hbk_iscsi_cdb_blocks(const uint8_t *cdb, uint32_t *blocks, bool *write);

/* tmf.c */
void hbk_iscsi_tmf_pdu(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h);
/* A worker finished (event processing). */
void hbk_iscsi_tmf_worker_done(struct hbk_iscsi_conn *c, struct hbk_iscsi_tmf *m);
/* A task marked by m ended at the controller. */
void hbk_iscsi_tmf_task_done(struct hbk_iscsi_conn *c, struct hbk_iscsi_tmf *m);

#endif /* HBK_ISCSI_PRIV_H */
