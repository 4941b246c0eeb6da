/* SPDX-License-Identifier: MIT */
/*
 * iSCSI PDU basics: the checks every received Basic Header Segment passes
 * before the rest of its PDU is read (opcode, phase, lengths, the bits a
 * valid PDU of that opcode must carry), the CRC32C digest through ISA-L,
 * opcode names for log lines, and the CmdSN window of a session with its
 * serial number arithmetic.  Everything here is pure and unit-tested.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <isa-l/crc.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

/* ---- Header checks ----------------------------------------------------------------- */

int hbk_iscsi_bhs_check(const struct hbk_iscsi_bhs *h, enum hbk_iscsi_phase phase,
			uint32_t max_dsl)
{
	unsigned op = h->opcode & HBK_ISCSI_OP_MASK;
	uint32_t dlen = hbk_iscsi_dlen(h);
	bool final = h->flags & HBK_ISCSI_FLAG_FINAL;

	/* A data segment over the declared limit cannot be taken in, and
	 * reading past it would misframe the stream. */
	if (dlen > max_dsl)
		return -EPROTO;
	if (phase == HBK_ISCSI_PHASE_LOGIN)
		return op == HBK_ISCSI_OP_LOGIN_REQ && !h->ahs_len && !(h->opcode & 0x80) ?
		       0 : -EPROTO;
	if (h->opcode & 0x80)           /* bit 7 of byte 0 is reserved */
		return HBK_ISCSI_REJECT_PROTOCOL;
	if (op != HBK_ISCSI_OP_SCSI_CMD && h->ahs_len)
		return HBK_ISCSI_REJECT_PROTOCOL;
	switch (op) {
	case HBK_ISCSI_OP_NOP_OUT: {
		const struct hbk_iscsi_nop *n = (const void *)h;
		uint32_t itt = get_be32(n->itt), ttt = get_be32(n->ttt);
		if (!final)
			return HBK_ISCSI_REJECT_PROTOCOL;
		/* ITT 0xffffffff answers a target's ping: immediate, no data. */
		if (itt == HBK_ISCSI_NO_TAG &&
		    (!(h->opcode & HBK_ISCSI_OP_IMMEDIATE) || ttt == HBK_ISCSI_NO_TAG || dlen))
			return HBK_ISCSI_REJECT_PROTOCOL;
		return 0;
	}
	case HBK_ISCSI_OP_SCSI_CMD:
		return phase == HBK_ISCSI_PHASE_DISCOVERY ? HBK_ISCSI_REJECT_PROTOCOL : 0;
	case HBK_ISCSI_OP_TMF_REQ:
		if (phase == HBK_ISCSI_PHASE_DISCOVERY)
			return HBK_ISCSI_REJECT_PROTOCOL;
		return final && !dlen ? 0 : HBK_ISCSI_REJECT_PROTOCOL;
	case HBK_ISCSI_OP_TEXT_REQ:
		/* F and C together: a final PDU cannot continue. */
		return final && (h->flags & HBK_ISCSI_TEXT_CONTINUE) ? HBK_ISCSI_REJECT_PROTOCOL : 0;
	case HBK_ISCSI_OP_DATA_OUT:
		return phase == HBK_ISCSI_PHASE_DISCOVERY ? HBK_ISCSI_REJECT_PROTOCOL : 0;
	case HBK_ISCSI_OP_LOGOUT_REQ:
		return final && !dlen ? 0 : HBK_ISCSI_REJECT_PROTOCOL;
	case HBK_ISCSI_OP_SNACK:
		/* ErrorRecoveryLevel 0 has no SNACK. */
		return HBK_ISCSI_REJECT_PROTOCOL;
	case HBK_ISCSI_OP_LOGIN_REQ:
		return HBK_ISCSI_REJECT_PROTOCOL;
	default:
		return HBK_ISCSI_REJECT_UNSUPPORTED;
	}
}

/* ---- Digest -------------------------------------------------------------------------- */

uint32_t hbk_iscsi_crc32c(uint32_t crc, const void *p, size_t len)
{
	/* ISA-L keeps the register uninverted between calls: a digest is its
	 * complement, and a digest continues from its complement. */
	unsigned int reg = ~crc;
	const uint8_t *b = p;
	while (len) {
		int n = len > (1u << 30) ? 1 << 30 : (int)len;
		reg = crc32_iscsi((unsigned char *)b, n, reg);
		b += n;
		len -= (size_t)n;
	}
	return ~reg;
}

/* ---- Names ------------------------------------------------------------------------------ */

const char *hbk_iscsi_opcode_name(unsigned opcode)
{
	static _Thread_local char other[8];
	switch (opcode & HBK_ISCSI_OP_MASK) {
	case HBK_ISCSI_OP_NOP_OUT: return "NOP-Out";
	case HBK_ISCSI_OP_SCSI_CMD: return "SCSI Command";
	case HBK_ISCSI_OP_TMF_REQ: return "Task Management Request";
	case HBK_ISCSI_OP_LOGIN_REQ: return "Login Request";
	case HBK_ISCSI_OP_TEXT_REQ: return "Text Request";
	case HBK_ISCSI_OP_DATA_OUT: return "SCSI Data-Out";
	case HBK_ISCSI_OP_LOGOUT_REQ: return "Logout Request";
	case HBK_ISCSI_OP_SNACK: return "SNACK";
	default:
		snprintf(other, sizeof(other), "0x%02x", opcode & HBK_ISCSI_OP_MASK);
		return other;
	}
}

/* ---- The CmdSN window ------------------------------------------------------------------- */

void hbk_iscsi_window_init(struct hbk_iscsi_window *w, uint32_t cmdsn, uint32_t depth)
{
	memset(w, 0, sizeof(*w));
	w->exp = cmdsn;
	w->max = cmdsn + depth - 1;
}

static bool ahead_get(const struct hbk_iscsi_window *w, uint32_t i)
{
	return w->ahead[i / 64] >> (i % 64) & 1;
}

/* exp advanced by one: bit i now describes what bit i + 1 described. */
static void ahead_shift(struct hbk_iscsi_window *w)
{
	const unsigned n = HBK_ARRAY_SIZE(w->ahead);
	for (unsigned k = 0; k < n; k++)
		w->ahead[k] = w->ahead[k] >> 1 | (k + 1 < n ? w->ahead[k + 1] << 63 : 0);
}

bool hbk_iscsi_window_take(struct hbk_iscsi_window *w, uint32_t cmdsn)
{
	if (hbk_iscsi_sn_lt(cmdsn, w->exp) || !hbk_iscsi_sn_le(cmdsn, w->max))
		return false;
	if (cmdsn == w->exp) {
		/* exp moves past this one and every one received ahead of it. */
		bool next;
		do {
			next = ahead_get(w, 0);
			ahead_shift(w);
			w->exp++;
		} while (next);
		return true;
	}
	uint32_t i = cmdsn - w->exp - 1;
	if (i >= HBK_ISCSI_WINDOW_BITS || ahead_get(w, i))
		return false;
	w->ahead[i / 64] |= 1ull << (i % 64);
	return true;
}

bool hbk_iscsi_window_pending(const struct hbk_iscsi_window *w, uint32_t cmdsn)
{
	if (hbk_iscsi_sn_lt(cmdsn, w->exp) || !hbk_iscsi_sn_le(cmdsn, w->max))
		return false;
	if (cmdsn == w->exp)
		return true;
	uint32_t i = cmdsn - w->exp - 1;
	return i < HBK_ISCSI_WINDOW_BITS && !ahead_get(w, i);
}
