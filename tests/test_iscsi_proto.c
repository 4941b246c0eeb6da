/* SPDX-License-Identifier: MIT */
/*
 * Tests of the iSCSI target's protocol pieces that need no network
 * (src/iscsi): Basic Header Segment checks per phase and opcode, the CRC32C
 * digest against the vectors of RFC 3720 B.4, the CmdSN window and serial
 * number arithmetic across the 2^32 wrap, the stall limit of a command held
 * on a CmdSN gap, key=value parsing and the
 * negotiation of every key (bad, unknown, duplicate, out of range, wrong
 * stage, discovery), CHAP value coding and the CHAP exchange against MD5
 * vectors, CDB transfer lengths, the I_T nexus identity and the iSCSI
 * TransportIDs READ FULL STATUS reports.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi/iscsi_priv.h"

/* ---- Helpers ----------------------------------------------------------------------- */

/* "k=v" strings into one NUL-separated text; returns its length. */
static uint32_t mktext(char *buf, size_t size, const char *const *pairs)
{
	size_t len = 0;
	for (; *pairs; pairs++) {
		size_t n = strlen(*pairs) + 1;
		assert_true(len + n <= size);
		memcpy(buf + len, *pairs, n);
		len += n;
	}
	return (uint32_t)len;
}

/* The value the target answered for key, or NULL when it said nothing. */
static const char *answer_of(const struct hbk_iscsi_text *out, const char *key)
{
	static char copy[16384], value[4096];
	uint32_t pos = 0;
	char *k, *v;
	assert_true(out->len <= sizeof(copy));
	if (!out->len)
		return NULL;
	memcpy(copy, out->buf, out->len);
	while (hbk_iscsi_text_next(copy, out->len, &pos, &k, &v) > 0)
		if (!strcmp(k, key)) {
			snprintf(value, sizeof(value), "%s", v);
			return value;
		}
	return NULL;
}

static const struct hbk_iscsi_limits lim_plain = {
	.max_recv_dsl = 262144, .max_burst = 1048576, .first_burst = 262144, .chap = false,
};
static const struct hbk_iscsi_limits lim_chap = {
	.max_recv_dsl = 262144, .max_burst = 1048576, .first_burst = 262144, .chap = true,
};

/* Negotiates pairs in one stage; returns the status, answers in *out. */
static int negotiate(struct hbk_iscsi_neg *n, enum hbk_iscsi_stage stage, const char *const *pairs,
		     struct hbk_iscsi_text *out)
{
	char text[8192];
	uint32_t len = mktext(text, sizeof(text), pairs);
	hbk_iscsi_text_init(out, 8192);
	return hbk_iscsi_negotiate(n, stage, text, len, out);
}

static void bhs_init(struct hbk_iscsi_bhs *h, uint8_t opcode, uint8_t flags, uint32_t dlen)
{
	memset(h, 0, sizeof(*h));
	h->opcode = opcode;
	h->flags = flags;
	put_be24(h->dlen, dlen);
	put_be32(h->itt, 1);
}

/* ---- Header checks -------------------------------------------------------------------- */

static void test_bhs_layout(void **state)
{
	(void)state;
	struct hbk_iscsi_bhs h;
	bhs_init(&h, HBK_ISCSI_OP_SCSI_CMD, HBK_ISCSI_FLAG_FINAL, 0x012345);
	assert_int_equal(hbk_iscsi_dlen(&h), 0x012345);
	assert_int_equal(((uint8_t *)&h)[5], 0x01);
	assert_int_equal(((uint8_t *)&h)[7], 0x45);
	assert_int_equal(hbk_iscsi_pad4(0), 0);
	assert_int_equal(hbk_iscsi_pad4(1), 3);
	assert_int_equal(hbk_iscsi_pad4(511), 1);
	assert_int_equal(hbk_iscsi_pad4(512), 0);
}

static void test_bhs_login_phase(void **state)
{
	(void)state;
	struct hbk_iscsi_bhs h;
	bhs_init(&h, HBK_ISCSI_OP_LOGIN_REQ | HBK_ISCSI_OP_IMMEDIATE, 0x87, 300);
	assert_int_equal(hbk_iscsi_bhs_check(&h, HBK_ISCSI_PHASE_LOGIN, 8192), 0);
	/* Nothing but Login Requests before the full feature phase. */
	bhs_init(&h, HBK_ISCSI_OP_SCSI_CMD, HBK_ISCSI_FLAG_FINAL, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, HBK_ISCSI_PHASE_LOGIN, 8192), -EPROTO);
	bhs_init(&h, HBK_ISCSI_OP_TEXT_REQ, HBK_ISCSI_FLAG_FINAL, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, HBK_ISCSI_PHASE_LOGIN, 8192), -EPROTO);
	/* Over the limit, or with an AHS: the stream cannot be trusted. */
	bhs_init(&h, HBK_ISCSI_OP_LOGIN_REQ, 0x87, 8193);
	assert_int_equal(hbk_iscsi_bhs_check(&h, HBK_ISCSI_PHASE_LOGIN, 8192), -EPROTO);
	bhs_init(&h, HBK_ISCSI_OP_LOGIN_REQ, 0x87, 0);
	h.ahs_len = 1;
	assert_int_equal(hbk_iscsi_bhs_check(&h, HBK_ISCSI_PHASE_LOGIN, 8192), -EPROTO);
}

static void test_bhs_full_phase(void **state)
{
	(void)state;
	struct hbk_iscsi_bhs h;
	const enum hbk_iscsi_phase full = HBK_ISCSI_PHASE_FULL;

	bhs_init(&h, HBK_ISCSI_OP_SCSI_CMD, HBK_ISCSI_FLAG_FINAL | HBK_ISCSI_CMD_WRITE, 4096);
	h.ahs_len = 2;                          /* an AHS is fine on a command */
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), 0);
	bhs_init(&h, HBK_ISCSI_OP_DATA_OUT, HBK_ISCSI_FLAG_FINAL, 262144);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), 0);
	bhs_init(&h, HBK_ISCSI_OP_DATA_OUT, HBK_ISCSI_FLAG_FINAL, 262145);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), -EPROTO);

	/* Unknown opcodes are not supported; SNACK has no place at ERL 0. */
	bhs_init(&h, 0x1c, HBK_ISCSI_FLAG_FINAL, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_UNSUPPORTED);
	bhs_init(&h, HBK_ISCSI_OP_SNACK, HBK_ISCSI_FLAG_FINAL, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);
	bhs_init(&h, HBK_ISCSI_OP_LOGIN_REQ, 0x87, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);
	bhs_init(&h, 0x80 | HBK_ISCSI_OP_NOP_OUT, HBK_ISCSI_FLAG_FINAL, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);

	/* Task management and logout: final, no data. */
	bhs_init(&h, HBK_ISCSI_OP_TMF_REQ, HBK_ISCSI_FLAG_FINAL | 1, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), 0);
	bhs_init(&h, HBK_ISCSI_OP_TMF_REQ, HBK_ISCSI_FLAG_FINAL | 1, 4);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);
	bhs_init(&h, HBK_ISCSI_OP_LOGOUT_REQ, 0, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);

	/* NOP-Out: final; ITT 0xffffffff only as an immediate answer with a TTT. */
	bhs_init(&h, HBK_ISCSI_OP_NOP_OUT, 0, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);
	bhs_init(&h, HBK_ISCSI_OP_NOP_OUT, HBK_ISCSI_FLAG_FINAL, 0);
	put_be32(h.itt, HBK_ISCSI_NO_TAG);
	put_be32(((struct hbk_iscsi_nop *)(void *)&h)->ttt, 7);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);
	h.opcode |= HBK_ISCSI_OP_IMMEDIATE;
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), 0);
	bhs_init(&h, HBK_ISCSI_OP_NOP_OUT, HBK_ISCSI_FLAG_FINAL, 0);
	h.ahs_len = 1;                          /* no AHS but on commands */
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);

	/* Text: F and C together cannot be. */
	bhs_init(&h, HBK_ISCSI_OP_TEXT_REQ, HBK_ISCSI_FLAG_FINAL | HBK_ISCSI_TEXT_CONTINUE, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, full, 262144), HBK_ISCSI_REJECT_PROTOCOL);
}

static void test_bhs_discovery_phase(void **state)
{
	(void)state;
	struct hbk_iscsi_bhs h;
	const enum hbk_iscsi_phase disc = HBK_ISCSI_PHASE_DISCOVERY;
	bhs_init(&h, HBK_ISCSI_OP_TEXT_REQ, HBK_ISCSI_FLAG_FINAL, 20);
	assert_int_equal(hbk_iscsi_bhs_check(&h, disc, 8192), 0);
	bhs_init(&h, HBK_ISCSI_OP_SCSI_CMD, HBK_ISCSI_FLAG_FINAL, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, disc, 8192), HBK_ISCSI_REJECT_PROTOCOL);
	bhs_init(&h, HBK_ISCSI_OP_DATA_OUT, HBK_ISCSI_FLAG_FINAL, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, disc, 8192), HBK_ISCSI_REJECT_PROTOCOL);
	bhs_init(&h, HBK_ISCSI_OP_TMF_REQ, HBK_ISCSI_FLAG_FINAL | 5, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, disc, 8192), HBK_ISCSI_REJECT_PROTOCOL);
	bhs_init(&h, HBK_ISCSI_OP_LOGOUT_REQ, HBK_ISCSI_FLAG_FINAL, 0);
	assert_int_equal(hbk_iscsi_bhs_check(&h, disc, 8192), 0);
}

/* ---- Digest ------------------------------------------------------------------------------ */

static void test_crc32c_vectors(void **state)
{
	(void)state;
	uint8_t buf[32], wire[4];
	assert_int_equal(hbk_iscsi_crc32c(0, "123456789", 9), 0xe3069283);
	/* RFC 3720 B.4 */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(hbk_iscsi_crc32c(0, buf, 32), 0x8a9136aa);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(hbk_iscsi_crc32c(0, buf, 32), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(hbk_iscsi_crc32c(0, buf, 32), 0x46dd794e);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(hbk_iscsi_crc32c(0, buf, 32), 0x113fdb5c);
	assert_int_equal(hbk_iscsi_crc32c(0, buf, 0), 0);
	/* As it travels: aa 36 91 8a for the zeroes. */
	hbk_iscsi_put_digest(wire, 0x8a9136aa);
	assert_int_equal(wire[0], 0xaa);
	assert_int_equal(wire[3], 0x8a);
	assert_int_equal(hbk_iscsi_get_digest(wire), 0x8a9136aa);
}

static void test_crc32c_continues(void **state)
{
	(void)state;
	uint8_t buf[1000];
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	uint32_t whole = hbk_iscsi_crc32c(0, buf, sizeof(buf));
	uint32_t part = hbk_iscsi_crc32c(0, buf, 1);
	part = hbk_iscsi_crc32c(part, buf + 1, 510);
	part = hbk_iscsi_crc32c(part, buf + 511, sizeof(buf) - 511);
	assert_int_equal(part, whole);
}

/* ---- Sequence numbers ---------------------------------------------------------------------- */

static void test_serial_arithmetic(void **state)
{
	(void)state;
	assert_true(hbk_iscsi_sn_lt(1, 2));
	assert_false(hbk_iscsi_sn_lt(2, 2));
	assert_true(hbk_iscsi_sn_le(2, 2));
	assert_true(hbk_iscsi_sn_lt(0xfffffffe, 3));     /* across the wrap */
	assert_false(hbk_iscsi_sn_lt(3, 0xfffffffe));
	assert_true(hbk_iscsi_sn_lt(0, 0x7fffffff));
	assert_false(hbk_iscsi_sn_lt(0, 0x80000001));
}

static void test_window_in_order(void **state)
{
	(void)state;
	struct hbk_iscsi_window w;
	hbk_iscsi_window_init(&w, 100, 4);
	assert_int_equal(w.exp, 100);
	assert_int_equal(w.max, 103);
	for (uint32_t sn = 100; sn <= 103; sn++)
		assert_true(hbk_iscsi_window_take(&w, sn));
	assert_int_equal(w.exp, 104);
	/* Four outstanding: the window is closed until one ends. */
	assert_false(hbk_iscsi_window_take(&w, 104));
	hbk_iscsi_window_credit(&w);
	assert_int_equal(w.max, 104);
	assert_true(hbk_iscsi_window_take(&w, 104));
	assert_int_equal(w.exp, 105);
}

static void test_window_outside_and_duplicates(void **state)
{
	(void)state;
	struct hbk_iscsi_window w;
	hbk_iscsi_window_init(&w, 10, 8);
	assert_false(hbk_iscsi_window_take(&w, 9));          /* below ExpCmdSN */
	assert_false(hbk_iscsi_window_take(&w, 18));         /* MaxCmdSN + 1 */
	assert_true(hbk_iscsi_window_take(&w, 10));
	assert_false(hbk_iscsi_window_take(&w, 10));         /* duplicate */
	assert_int_equal(w.exp, 11);
	assert_int_equal(w.max, 17);
}

static void test_window_gap(void **state)
{
	(void)state;
	struct hbk_iscsi_window w;
	hbk_iscsi_window_init(&w, 50, 16);
	assert_true(hbk_iscsi_window_take(&w, 52));
	assert_true(hbk_iscsi_window_take(&w, 53));
	assert_false(hbk_iscsi_window_take(&w, 53));         /* duplicate ahead of the gap */
	assert_int_equal(w.exp, 50);
	assert_true(hbk_iscsi_window_pending(&w, 50));
	assert_true(hbk_iscsi_window_pending(&w, 51));
	assert_false(hbk_iscsi_window_pending(&w, 52));
	assert_true(hbk_iscsi_window_take(&w, 50));
	assert_int_equal(w.exp, 51);
	assert_true(hbk_iscsi_window_take(&w, 51));          /* fills the gap: exp jumps */
	assert_int_equal(w.exp, 54);
	assert_false(hbk_iscsi_window_pending(&w, 53));
	assert_true(hbk_iscsi_window_pending(&w, 54));
	assert_false(hbk_iscsi_window_pending(&w, 66));      /* past MaxCmdSN 65 */
}

static void test_window_wraps(void **state)
{
	(void)state;
	struct hbk_iscsi_window w;
	hbk_iscsi_window_init(&w, 0xfffffffe, 128);
	assert_int_equal(w.max, 0x7d);
	assert_true(hbk_iscsi_window_take(&w, 0xfffffffe));
	assert_true(hbk_iscsi_window_take(&w, 0x00000001));  /* ahead, across the wrap */
	assert_true(hbk_iscsi_window_take(&w, 0xffffffff));
	assert_int_equal(w.exp, 0);
	assert_true(hbk_iscsi_window_take(&w, 0));
	assert_int_equal(w.exp, 2);
	assert_false(hbk_iscsi_window_take(&w, 0xffffffff)); /* now behind */
	assert_false(hbk_iscsi_window_take(&w, 0x7e));
	assert_true(hbk_iscsi_window_take(&w, 0x7d));
}

/* A command held ahead of a CmdSN gap that does not fill stalls the
 * connection after HBK_ISCSI_STALL_MS, like awaited Data-Out; once the gap
 * filled, a command held behind the ones before it does not. */
static void test_held_gap_stalls(void **state)
{
	(void)state;
	struct hbk_iscsi_conn *c = calloc(1, sizeof(*c));
	struct hbk_iscsi_task *t = calloc(1, sizeof(*t));
	assert_non_null(c);
	assert_non_null(t);
	hbk_iscsi_window_init(&c->win, 10, 16);
	assert_true(hbk_iscsi_window_take(&c->win, 11));     /* the gap is at 10 */
	t->conn = c;
	t->cmdsn = 11;
	t->held = true;
	t->state = HBK_ISCSI_TASK_DATA_OUT;
	t->ttt = 0xffffffffu;
	t->stall_ns = 1000;
	c->tasks = t;
	c->ntasks = c->nheld = 1;
	uint64_t limit = t->stall_ns + HBK_ISCSI_STALL_MS * 1000000ull;
	assert_null(hbk_iscsi_cmd_stalled(c, limit));
	const char *why = hbk_iscsi_cmd_stalled(c, limit + 1);
	assert_non_null(why);
	assert_non_null(strstr(why, "gap"));
	assert_true(hbk_iscsi_window_take(&c->win, 10));     /* the gap fills */
	assert_null(hbk_iscsi_cmd_stalled(c, limit + 1));
	free(t);
	free(c);
}

/* ---- Text and negotiation ----------------------------------------------------------------- */

static void test_text_next(void **state)
{
	(void)state;
	char text[] = "HeaderDigest=CRC32C,None\0X-com.example.k=\0\0\0";
	uint32_t pos = 0, len = sizeof(text) - 1;
	char *k, *v;
	assert_int_equal(hbk_iscsi_text_next(text, len, &pos, &k, &v), 1);
	assert_string_equal(k, "HeaderDigest");
	assert_string_equal(v, "CRC32C,None");
	assert_int_equal(hbk_iscsi_text_next(text, len, &pos, &k, &v), 1);
	assert_string_equal(k, "X-com.example.k");
	assert_string_equal(v, "");
	assert_int_equal(hbk_iscsi_text_next(text, len, &pos, &k, &v), 0);   /* padding ends it */
}

static void test_text_next_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"NoEquals",          /* no '=' */
		"=value",            /* empty key */
		"Bad Key=1",         /* space in a key */
		"Ke/y=1",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=1",  /* 64 > 63 */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[128];
		uint32_t pos = 0, len = (uint32_t)strlen(bad[i]) + 1;
		char *k, *v;
		memcpy(text, bad[i], len);
		assert_int_equal(hbk_iscsi_text_next(text, len, &pos, &k, &v), -EINVAL);
	}
	/* The last pair must end in NUL. */
	char text[] = "MaxConnections=1";
	uint32_t pos = 0;
	char *k, *v;
	assert_int_equal(hbk_iscsi_text_next(text, (uint32_t)strlen(text), &pos, &k, &v), -EINVAL);
}

static void test_parse_number(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(hbk_iscsi_parse_number("8192", &v), 0);
	assert_int_equal(v, 8192);
	assert_int_equal(hbk_iscsi_parse_number("0x2000", &v), 0);
	assert_int_equal(v, 8192);
	assert_int_equal(hbk_iscsi_parse_number("", &v), -EINVAL);
	assert_int_equal(hbk_iscsi_parse_number("12ab", &v), -EINVAL);
	assert_int_equal(hbk_iscsi_parse_number("0x", &v), -EINVAL);
	assert_int_equal(hbk_iscsi_parse_number("-1", &v), -EINVAL);
	assert_int_equal(hbk_iscsi_parse_number("99999999999999999999999", &v), -EINVAL);
}

static void test_negotiate_operational(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const keys[] = {
		"InitiatorName=iqn.2004-10.com.example:host1", "SessionType=Normal",
		"TargetName=iqn.2026-11.org.hbakit:t0", "HeaderDigest=CRC32C,None",
		"DataDigest=None", "MaxRecvDataSegmentLength=65536", "MaxBurstLength=4194304",
		"FirstBurstLength=65536", "InitialR2T=No", "ImmediateData=Yes",
		"ErrorRecoveryLevel=2", "MaxConnections=8", "MaxOutstandingR2T=4",
		"DataPDUInOrder=No", "DataSequenceInOrder=Yes", "DefaultTime2Wait=0",
		"DefaultTime2Retain=20", "IFMarker=No", "OFMarkInt=2048", NULL,
	};
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, keys, &out), 0);
	assert_string_equal(answer_of(&out, "HeaderDigest"), "CRC32C");
	assert_string_equal(answer_of(&out, "DataDigest"), "None");
	assert_null(answer_of(&out, "MaxRecvDataSegmentLength"));   /* declarative */
	assert_null(answer_of(&out, "InitiatorName"));
	assert_string_equal(answer_of(&out, "MaxBurstLength"), "1048576");
	assert_string_equal(answer_of(&out, "FirstBurstLength"), "65536");
	assert_string_equal(answer_of(&out, "InitialR2T"), "No");
	assert_string_equal(answer_of(&out, "ImmediateData"), "Yes");
	assert_string_equal(answer_of(&out, "ErrorRecoveryLevel"), "0");
	assert_string_equal(answer_of(&out, "MaxConnections"), "1");
	assert_string_equal(answer_of(&out, "MaxOutstandingR2T"), "1");
	assert_string_equal(answer_of(&out, "DataPDUInOrder"), "Yes");
	assert_string_equal(answer_of(&out, "DataSequenceInOrder"), "Yes");
	assert_string_equal(answer_of(&out, "DefaultTime2Wait"), "2");
	assert_string_equal(answer_of(&out, "IFMarker"), "No");
	assert_string_equal(answer_of(&out, "OFMarkInt"), "Irrelevant");
	assert_true(n.p.header_digest);
	assert_false(n.p.data_digest);
	assert_int_equal(n.p.max_send_dsl, 65536);
	assert_int_equal(n.p.max_burst, 1048576);
	assert_int_equal(n.p.first_burst, 65536);
	assert_false(n.p.initial_r2t);
	assert_true(n.p.immediate_data);
	assert_int_equal(n.session_type, HBK_ISCSI_SESSION_NORMAL);
	assert_string_equal(n.initiator_name, "iqn.2004-10.com.example:host1");
	assert_string_equal(n.target_name, "iqn.2026-11.org.hbakit:t0");
	hbk_iscsi_text_fini(&out);
}

/* FirstBurstLength is never answered above MaxBurstLength (RFC 7143 13.14),
 * in whichever order the initiator sends them. */
static void test_negotiate_burst_order(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const fb_first[] = { "FirstBurstLength=65536", "MaxBurstLength=16384", NULL };
	static const char *const fb_alone[] = { "FirstBurstLength=65536", NULL };
	static const char *const mb_alone[] = { "MaxBurstLength=16384", NULL };

	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, fb_first, &out), 0);
	assert_string_equal(answer_of(&out, "MaxBurstLength"), "16384");
	assert_string_equal(answer_of(&out, "FirstBurstLength"), "16384");
	assert_int_equal(n.p.max_burst, 16384);
	assert_int_equal(n.p.first_burst, 16384);
	hbk_iscsi_text_fini(&out);

	/* MaxBurstLength in a later request, below the FirstBurstLength
	 * answered before: refused, both stay as answered. */
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, fb_alone, &out), 0);
	assert_string_equal(answer_of(&out, "FirstBurstLength"), "65536");
	hbk_iscsi_text_fini(&out);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, mb_alone, &out), 0);
	assert_string_equal(answer_of(&out, "MaxBurstLength"), "Reject");
	assert_int_equal(n.p.max_burst, 262144);
	assert_int_equal(n.p.first_burst, 65536);
	hbk_iscsi_text_fini(&out);
}

static void test_negotiate_unknown_keys(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const keys[] = {
		"X-com.example.Feature=1", "FancyNewKey=Yes", "X#org.example=2", NULL,
	};
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, keys, &out), 0);
	assert_string_equal(answer_of(&out, "X-com.example.Feature"), "NotUnderstood");
	assert_string_equal(answer_of(&out, "FancyNewKey"), "NotUnderstood");
	assert_string_equal(answer_of(&out, "X#org.example"), "NotUnderstood");
	hbk_iscsi_text_fini(&out);
}

static void test_negotiate_duplicates(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const twice[] = { "MaxBurstLength=65536", "MaxBurstLength=8192", NULL };
	static const char *const first[] = { "ImmediateData=Yes", NULL };
	static const char *const again[] = { "ImmediateData=No", NULL };
	static const char *const types[] = { "SessionType=Normal", "SessionType=Discovery", NULL };

	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, twice, &out),
			 HBK_ISCSI_LOGIN_INITIATOR_ERROR);
	hbk_iscsi_text_fini(&out);

	/* Sent again in a later request of the same login. */
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, first, &out), 0);
	hbk_iscsi_text_fini(&out);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, again, &out),
			 HBK_ISCSI_LOGIN_INITIATOR_ERROR);
	hbk_iscsi_text_fini(&out);

	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, types, &out),
			 HBK_ISCSI_LOGIN_INITIATOR_ERROR);
	hbk_iscsi_text_fini(&out);
}

static void test_negotiate_ranges(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const keys[] = {
		"MaxRecvDataSegmentLength=100", "MaxBurstLength=16777216", "FirstBurstLength=511",
		"ErrorRecoveryLevel=3", "InitialR2T=Maybe", "HeaderDigest=MD5", "DataDigest=crc32c",
		"MaxConnections=0", "DefaultTime2Wait=3601", "DefaultTime2Retain=0x10",
		"MaxOutstandingR2T=12ab", NULL,
	};
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, keys, &out), 0);
	assert_string_equal(answer_of(&out, "MaxRecvDataSegmentLength"), "Reject");
	assert_string_equal(answer_of(&out, "MaxBurstLength"), "Reject");
	assert_string_equal(answer_of(&out, "FirstBurstLength"), "Reject");
	assert_string_equal(answer_of(&out, "ErrorRecoveryLevel"), "Reject");
	assert_string_equal(answer_of(&out, "InitialR2T"), "Reject");
	assert_string_equal(answer_of(&out, "HeaderDigest"), "Reject");
	assert_string_equal(answer_of(&out, "DataDigest"), "Reject");   /* values are case-sensitive */
	assert_string_equal(answer_of(&out, "MaxConnections"), "Reject");
	assert_string_equal(answer_of(&out, "DefaultTime2Wait"), "Reject");
	assert_string_equal(answer_of(&out, "DefaultTime2Retain"), "0");  /* hex accepted */
	assert_string_equal(answer_of(&out, "MaxOutstandingR2T"), "Reject");
	/* Rejected values leave the defaults. */
	assert_int_equal(n.p.max_send_dsl, 8192);
	assert_int_equal(n.p.max_burst, 262144);
	assert_int_equal(n.p.first_burst, 65536);
	assert_true(n.p.initial_r2t);
	assert_false(n.p.header_digest);
	hbk_iscsi_text_fini(&out);
}

static void test_negotiate_discovery_irrelevant(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	/* SessionType after the keys it makes irrelevant still counts. */
	static const char *const keys[] = {
		"InitiatorName=iqn.x:y", "MaxBurstLength=65536", "InitialR2T=No",
		"HeaderDigest=None", "SessionType=Discovery", NULL,
	};
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, keys, &out), 0);
	assert_int_equal(n.session_type, HBK_ISCSI_SESSION_DISCOVERY);
	assert_string_equal(answer_of(&out, "MaxBurstLength"), "Irrelevant");
	assert_string_equal(answer_of(&out, "InitialR2T"), "Irrelevant");
	assert_string_equal(answer_of(&out, "HeaderDigest"), "None");
	hbk_iscsi_text_fini(&out);
}

static void test_negotiate_bad_declarations(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const type[] = { "SessionType=Bogus", NULL };
	static const char *const name[] = { "InitiatorName=", NULL };
	static const char *const target_only[] = { "TargetAddress=10.0.0.1:3260,1",
						   "TargetPortalGroupTag=1", NULL };
	static const char *const send_targets[] = { "SendTargets=All", NULL };

	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, type, &out),
			 HBK_ISCSI_LOGIN_NO_SESSION_TYPE);
	hbk_iscsi_text_fini(&out);
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, name, &out),
			 HBK_ISCSI_LOGIN_MISSING_PARAM);
	hbk_iscsi_text_fini(&out);
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, target_only, &out), 0);
	assert_string_equal(answer_of(&out, "TargetAddress"), "Reject");
	assert_string_equal(answer_of(&out, "TargetPortalGroupTag"), "Reject");
	hbk_iscsi_text_fini(&out);
	/* SendTargets belongs to the full feature phase. */
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, send_targets, &out), 0);
	assert_string_equal(answer_of(&out, "SendTargets"), "Reject");
	assert_false(n.send_targets);
	hbk_iscsi_text_fini(&out);
}

static void test_negotiate_auth_method(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const both[] = { "AuthMethod=CHAP,None", NULL };
	static const char *const none[] = { "AuthMethod=None", NULL };
	static const char *const chap[] = { "AuthMethod=CHAP", NULL };
	static const char *const late[] = { "AuthMethod=None", NULL };

	hbk_iscsi_neg_init(&n, &lim_chap);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, both, &out), 0);
	assert_string_equal(answer_of(&out, "AuthMethod"), "CHAP");
	assert_int_equal(n.auth, HBK_ISCSI_AUTH_CHAP);
	hbk_iscsi_text_fini(&out);

	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, both, &out), 0);
	assert_string_equal(answer_of(&out, "AuthMethod"), "None");
	assert_int_equal(n.auth, HBK_ISCSI_AUTH_NONE);
	hbk_iscsi_text_fini(&out);

	/* CHAP required: None alone fails authentication. */
	hbk_iscsi_neg_init(&n, &lim_chap);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, none, &out),
			 HBK_ISCSI_LOGIN_AUTH_FAILED);
	assert_string_equal(answer_of(&out, "AuthMethod"), "Reject");
	hbk_iscsi_text_fini(&out);

	/* No CHAP credentials: CHAP alone cannot be verified. */
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, chap, &out),
			 HBK_ISCSI_LOGIN_AUTH_FAILED);
	hbk_iscsi_text_fini(&out);

	/* Security keys after the security stage. */
	hbk_iscsi_neg_init(&n, &lim_plain);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_OPERATIONAL, late, &out),
			 HBK_ISCSI_LOGIN_INITIATOR_ERROR);
	hbk_iscsi_text_fini(&out);
}

static void test_negotiate_text_stage(void **state)
{
	(void)state;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const keys[] = {
		"SendTargets=All", "MaxRecvDataSegmentLength=16384", "HeaderDigest=CRC32C",
		"X-vendor.key=1", NULL,
	};
	hbk_iscsi_neg_init(&n, &lim_plain);
	n.session_type = HBK_ISCSI_SESSION_DISCOVERY;
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_TEXT, keys, &out), 0);
	assert_true(n.send_targets);
	assert_string_equal(n.send_targets_value, "All");
	assert_int_equal(n.p.max_send_dsl, 16384);
	assert_null(answer_of(&out, "SendTargets"));
	assert_string_equal(answer_of(&out, "HeaderDigest"), "Reject");   /* login only */
	assert_string_equal(answer_of(&out, "X-vendor.key"), "NotUnderstood");
	assert_false(n.p.header_digest);
	hbk_iscsi_text_fini(&out);
}

static void test_text_add_limit(void **state)
{
	(void)state;
	struct hbk_iscsi_text t;
	hbk_iscsi_text_init(&t, 16);
	assert_int_equal(hbk_iscsi_text_add(&t, "A", "%s", "12345"), 0);    /* 8 bytes */
	assert_int_equal(t.len, 8);
	assert_memory_equal(t.buf, "A=12345\0", 8);
	assert_int_equal(hbk_iscsi_text_add(&t, "B", "%s", "123456"), -ENOSPC);
	assert_true(t.overflow);
	assert_int_equal(t.len, 8);
	hbk_iscsi_text_fini(&t);
}

/* ---- CHAP --------------------------------------------------------------------------------- */

static void test_chap_decode(void **state)
{
	(void)state;
	uint8_t out[32];
	static const uint8_t want16[16] = {
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	};
	assert_int_equal(hbk_iscsi_chap_decode("0x0102fF", out, sizeof(out)), 3);
	assert_int_equal(out[0], 0x01);
	assert_int_equal(out[2], 0xff);
	assert_int_equal(hbk_iscsi_chap_decode("0Xabc", out, sizeof(out)), 2);  /* odd: 0a bc */
	assert_int_equal(out[0], 0x0a);
	assert_int_equal(out[1], 0xbc);
	assert_int_equal(hbk_iscsi_chap_decode("0bASNFZ4mrze8AESIzRFVmdw==", out, sizeof(out)), 16);
	assert_memory_equal(out, want16, 16);
	assert_int_equal(hbk_iscsi_chap_decode("0x0123456789abcdef0011223344556677", out, 16), 16);
	assert_memory_equal(out, want16, 16);
	assert_int_equal(hbk_iscsi_chap_decode("0x0123456789abcdef0011223344556677", out, 15), -ENOSPC);
	assert_int_equal(hbk_iscsi_chap_decode("0xzz", out, sizeof(out)), -EINVAL);
	assert_int_equal(hbk_iscsi_chap_decode("0x", out, sizeof(out)), -EINVAL);
	assert_int_equal(hbk_iscsi_chap_decode("1234", out, sizeof(out)), -EINVAL);
	assert_int_equal(hbk_iscsi_chap_decode("0c12", out, sizeof(out)), -EINVAL);
	assert_int_equal(hbk_iscsi_chap_decode("0b!!!!", out, sizeof(out)), -EINVAL);
}

static void test_chap_hex(void **state)
{
	(void)state;
	static const uint8_t in[3] = { 0x00, 0xab, 0x7f };
	char out[9];
	hbk_iscsi_chap_hex(in, 3, out);
	assert_string_equal(out, "0x00ab7f");
}

static void test_chap_response_vectors(void **state)
{
	(void)state;
	uint8_t challenge[16], out[16];
	static const uint8_t want1[16] = {   /* MD5(2a || "12charsecret" || 10..1f) */
		0xe2, 0x26, 0x0c, 0xff, 0xdd, 0xe9, 0x3e, 0x83,
		0x0b, 0x33, 0x0a, 0xeb, 0x90, 0xcb, 0x82, 0xb0,
	};
	static const uint8_t challenge2[16] = {
		0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	};
	static const uint8_t want2[16] = {   /* MD5(ff || "mutual-secret-1" || challenge2) */
		0x56, 0xe9, 0xb2, 0x47, 0xdf, 0x37, 0x3c, 0x4e,
		0x9a, 0x37, 0xf7, 0xcb, 0xa5, 0xd9, 0x8f, 0x31,
	};
	for (int i = 0; i < 16; i++)
		challenge[i] = (uint8_t)(0x10 + i);
	hbk_iscsi_chap_response(0x2a, "12charsecret", 12, challenge, 16, out);
	assert_memory_equal(out, want1, 16);
	hbk_iscsi_chap_response(0xff, "mutual-secret-1", 15, challenge2, 16, out);
	assert_memory_equal(out, want2, 16);
}

static struct hbk_iscsi_creds creds_one = {
	.user = "alice", .secret = "12charsecret",
};
static struct hbk_iscsi_creds creds_mutual = {
	.user = "alice", .secret = "12charsecret",
	.mutual_user = "target", .mutual_secret = "mutual-secret-1",
};

/* Runs WAIT_A; returns the identifier and challenge the target sent. */
static void chap_challenge(struct hbk_iscsi_chap *c, const struct hbk_iscsi_creds *creds,
			   uint8_t *id, uint8_t challenge[16])
{
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const keys[] = { "CHAP_A=7,5", NULL };
	uint64_t v;
	hbk_iscsi_neg_init(&n, &lim_chap);
	n.seen = 0;
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, keys, &out), 0);
	memset(c, 0, sizeof(*c));
	assert_int_equal(hbk_iscsi_chap_step(c, creds, &n, &out), 0);
	assert_int_equal(c->state, HBK_ISCSI_CHAP_WAIT_R);
	assert_string_equal(answer_of(&out, "CHAP_A"), "5");
	assert_int_equal(hbk_iscsi_parse_number(answer_of(&out, "CHAP_I"), &v), 0);
	assert_true(v <= 255);
	*id = (uint8_t)v;
	assert_int_equal(hbk_iscsi_chap_decode(answer_of(&out, "CHAP_C"), challenge, 16), 16);
	hbk_iscsi_text_fini(&out);
}

/* Sends CHAP_N/CHAP_R (and a mutual challenge when mutual_c); returns the status. */
static int chap_answer(struct hbk_iscsi_chap *c, const struct hbk_iscsi_creds *creds,
		       const char *name, const char *secret, uint8_t id, const uint8_t *challenge,
		       const char *mutual_c, struct hbk_iscsi_text *out)
{
	struct hbk_iscsi_neg n;
	uint8_t rsp[16];
	char hex[40], pn[64], pr[64], pc[80];
	hbk_iscsi_chap_response(id, secret, strlen(secret), challenge, 16, rsp);
	hbk_iscsi_chap_hex(rsp, 16, hex);
	snprintf(pn, sizeof(pn), "CHAP_N=%s", name);
	snprintf(pr, sizeof(pr), "CHAP_R=%s", hex);
	snprintf(pc, sizeof(pc), "CHAP_C=%s", mutual_c ? mutual_c : "");
	const char *keys[] = { pn, pr, mutual_c ? "CHAP_I=255" : NULL, mutual_c ? pc : NULL, NULL };
	hbk_iscsi_neg_init(&n, &lim_chap);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, keys, out), 0);
	return hbk_iscsi_chap_step(c, creds, &n, out);
}

static void test_chap_exchange(void **state)
{
	(void)state;
	struct hbk_iscsi_chap c;
	struct hbk_iscsi_text out;
	uint8_t id, challenge[16];
	chap_challenge(&c, &creds_one, &id, challenge);
	assert_int_equal(chap_answer(&c, &creds_one, "alice", "12charsecret", id, challenge, NULL,
				     &out), 0);
	assert_int_equal(c.state, HBK_ISCSI_CHAP_DONE);
	assert_null(answer_of(&out, "CHAP_N"));             /* one-way: nothing back */
	hbk_iscsi_text_fini(&out);
}

static void test_chap_wrong_secret_or_name(void **state)
{
	(void)state;
	struct hbk_iscsi_chap c;
	struct hbk_iscsi_text out;
	uint8_t id, challenge[16];
	chap_challenge(&c, &creds_one, &id, challenge);
	assert_int_equal(chap_answer(&c, &creds_one, "alice", "wrong-secret", id, challenge, NULL,
				     &out), HBK_ISCSI_LOGIN_AUTH_FAILED);
	hbk_iscsi_text_fini(&out);
	chap_challenge(&c, &creds_one, &id, challenge);
	assert_int_equal(chap_answer(&c, &creds_one, "mallory", "12charsecret", id, challenge, NULL,
				     &out), HBK_ISCSI_LOGIN_AUTH_FAILED);
	hbk_iscsi_text_fini(&out);
	/* The response to another identifier is wrong too. */
	chap_challenge(&c, &creds_one, &id, challenge);
	assert_int_equal(chap_answer(&c, &creds_one, "alice", "12charsecret", (uint8_t)(id + 1),
				     challenge, NULL, &out), HBK_ISCSI_LOGIN_AUTH_FAILED);
	hbk_iscsi_text_fini(&out);
}

static void test_chap_mutual(void **state)
{
	(void)state;
	struct hbk_iscsi_chap c;
	struct hbk_iscsi_text out;
	uint8_t id, challenge[16], got[16];
	static const uint8_t want[16] = {    /* MD5(ff || "mutual-secret-1" || challenge2) */
		0x56, 0xe9, 0xb2, 0x47, 0xdf, 0x37, 0x3c, 0x4e,
		0x9a, 0x37, 0xf7, 0xcb, 0xa5, 0xd9, 0x8f, 0x31,
	};
	chap_challenge(&c, &creds_mutual, &id, challenge);
	assert_int_equal(chap_answer(&c, &creds_mutual, "alice", "12charsecret", id, challenge,
				     "0x0123456789abcdef0011223344556677", &out), 0);
	assert_string_equal(answer_of(&out, "CHAP_N"), "target");
	assert_int_equal(hbk_iscsi_chap_decode(answer_of(&out, "CHAP_R"), got, 16), 16);
	assert_memory_equal(got, want, 16);
	hbk_iscsi_text_fini(&out);

	/* Mutual CHAP without target credentials fails. */
	chap_challenge(&c, &creds_one, &id, challenge);
	assert_int_equal(chap_answer(&c, &creds_one, "alice", "12charsecret", id, challenge,
				     "0x0123456789abcdef0011223344556677", &out),
			 HBK_ISCSI_LOGIN_AUTH_FAILED);
	hbk_iscsi_text_fini(&out);
}

static void test_chap_reflection(void **state)
{
	(void)state;
	struct hbk_iscsi_chap c;
	struct hbk_iscsi_text out;
	uint8_t id, challenge[16];
	char mirror[40];
	chap_challenge(&c, &creds_mutual, &id, challenge);
	hbk_iscsi_chap_hex(challenge, 16, mirror);
	assert_int_equal(chap_answer(&c, &creds_mutual, "alice", "12charsecret", id, challenge, mirror,
				     &out), HBK_ISCSI_LOGIN_AUTH_FAILED);
	hbk_iscsi_text_fini(&out);
}

static void test_chap_bad_algorithm_and_order(void **state)
{
	(void)state;
	struct hbk_iscsi_chap c;
	struct hbk_iscsi_neg n;
	struct hbk_iscsi_text out;
	static const char *const sha[] = { "CHAP_A=7", NULL };
	static const char *const early[] = { "CHAP_N=alice", "CHAP_R=0x00", NULL };

	memset(&c, 0, sizeof(c));
	hbk_iscsi_neg_init(&n, &lim_chap);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, sha, &out), 0);
	assert_int_equal(hbk_iscsi_chap_step(&c, &creds_one, &n, &out), HBK_ISCSI_LOGIN_AUTH_FAILED);
	assert_string_equal(answer_of(&out, "CHAP_A"), "Reject");
	hbk_iscsi_text_fini(&out);

	memset(&c, 0, sizeof(c));
	hbk_iscsi_neg_init(&n, &lim_chap);
	assert_int_equal(negotiate(&n, HBK_ISCSI_STAGE_SECURITY, early, &out), 0);
	assert_int_equal(hbk_iscsi_chap_step(&c, &creds_one, &n, &out), HBK_ISCSI_LOGIN_AUTH_FAILED);
	hbk_iscsi_text_fini(&out);
}

/* ---- CDBs and nexus ------------------------------------------------------------------------ */

static void test_cdb_blocks(void **state)
{
	(void)state;
	uint8_t cdb[16] = { 0 };
	uint32_t blocks;
	bool write;
	cdb[0] = 0x08;                       /* READ(6) of 0: 256 blocks */
	assert_true(hbk_iscsi_cdb_blocks(cdb, &blocks, &write));
	assert_int_equal(blocks, 256);
	assert_false(write);
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x2a;
	put_be16(cdb + 7, 0x1234);
	assert_true(hbk_iscsi_cdb_blocks(cdb, &blocks, &write));
	assert_int_equal(blocks, 0x1234);
	assert_true(write);
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x88;
	put_be32(cdb + 10, 0x00010000);
	assert_true(hbk_iscsi_cdb_blocks(cdb, &blocks, &write));
	assert_int_equal(blocks, 0x10000);
	assert_false(write);
	cdb[0] = 0xae;                       /* WRITE AND VERIFY(12) */
	put_be32(cdb + 6, 9);
	assert_true(hbk_iscsi_cdb_blocks(cdb, &blocks, &write));
	assert_int_equal(blocks, 9);
	assert_true(write);
	cdb[0] = 0x12;                       /* INQUIRY: an allocation length, not blocks */
	assert_false(hbk_iscsi_cdb_blocks(cdb, &blocks, &write));
}

static void test_nexus_id(void **state)
{
	(void)state;
	static const uint8_t isid[6] = { 0x00, 0x02, 0x3d, 0x00, 0x00, 0x01 };
	static const uint8_t other[6] = { 0x00, 0x02, 0x3d, 0x00, 0x00, 0x02 };
	uint64_t id = hbk_iscsi_nexus_id("iqn.2004-10.com.example:host1", isid);
	/* FNV-1a 64 of "iqn.2004-10.com.example:host1,i,0x00023d000001" */
	assert_true(id == 0xe4f49a54b9683b30ull);
	assert_true(hbk_iscsi_nexus_id("iqn.2004-10.com.example:host1", other) != id);
	assert_true(hbk_iscsi_nexus_id("iqn.2004-10.com.example:host2", isid) != id);
	assert_true(hbk_iscsi_nexus_id("", isid) != 0);
}

/* A READ FULL STATUS descriptor of key with the emulation's SAS form of id. */
static uint32_t sas_desc(uint8_t *d, uint64_t key, uint64_t id)
{
	memset(d, 0, 48);
	put_be64(d, key);
	put_be16(d + 18, 1);
	put_be32(d + 20, 24);
	d[24] = 0x06;
	put_be64(d + 28, id);
	return 48;
}

/* The target turns the SAS form of an iSCSI port it knows into that port's
 * iSCSI TransportID; other descriptors, and a list cut short, stay. */
static void test_pr_full_status_rewrite(void **state)
{
	(void)state;
	static const uint8_t isid[6] = { 0x00, 0x02, 0x3d, 0x00, 0x00, 0x01 };
	static const char name[] = "iqn.2004-10.com.example:host1";
	static const char want[] = "iqn.2004-10.com.example:host1,i,0x00023d000001";
	struct hbk_iscsi s;
	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.lock, NULL);
	struct hbk_iscsi_port port = { .nexus = hbk_iscsi_nexus_id(name, isid) };
	memcpy(port.isid, isid, sizeof(isid));
	snprintf(port.name, sizeof(port.name), "%s", name);
	s.ports = &port;
	s.nports = s.ports_cap = 1;

	static uint8_t buf[HBK_ISCSI_PR_FULL_ROOM];
	uint32_t n = 8;
	n += sas_desc(buf + n, 0x11, 0x5000c50000000001ull);   /* not an iSCSI port here */
	n += sas_desc(buf + n, 0x22, port.nexus);
	put_be32(buf, 7);
	put_be32(buf + 4, n - 8);
	uint8_t copy[8 + 96];
	memcpy(copy, buf, n);

	/* Cut short (the header counts more than came): left alone. */
	assert_int_equal(hbk_iscsi_pr_full_status(&s, buf, n - 1, sizeof(buf)), n - 1);
	assert_memory_equal(buf, copy, n);

	uint32_t len = hbk_iscsi_pr_full_status(&s, buf, n, sizeof(buf));
	uint32_t tid = 4 + ((sizeof(want) + 3) & ~3u);
	assert_int_equal(len, 8 + 48 + 24 + tid);
	assert_int_equal(get_be32(buf), 7);
	assert_int_equal(get_be32(buf + 4), len - 8);
	assert_memory_equal(buf + 8, copy + 8, 48);             /* unknown: unchanged */
	const uint8_t *d = buf + 56;
	assert_memory_equal(d, copy + 56, 20);                  /* key, flags, port */
	assert_int_equal(get_be32(d + 20), tid);
	assert_int_equal(d[24], 0x45);
	assert_int_equal(get_be16(d + 26), tid - 4);
	assert_memory_equal(d + 28, want, sizeof(want));        /* with its NUL */
	for (uint32_t i = 4 + sizeof(want); i < tid; i++)
		assert_int_equal(d[24 + i], 0);

	/* No room for the longer list: left alone. */
	memcpy(buf, copy, n);
	assert_int_equal(hbk_iscsi_pr_full_status(&s, buf, n, n + 8), n);
	assert_memory_equal(buf, copy, n);
	pthread_mutex_destroy(&s.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bhs_layout),
		cmocka_unit_test(test_bhs_login_phase),
		cmocka_unit_test(test_bhs_full_phase),
		cmocka_unit_test(test_bhs_discovery_phase),
		cmocka_unit_test(test_crc32c_vectors),
		cmocka_unit_test(test_crc32c_continues),
		cmocka_unit_test(test_serial_arithmetic),
		cmocka_unit_test(test_window_in_order),
		cmocka_unit_test(test_window_outside_and_duplicates),
		cmocka_unit_test(test_window_gap),
		cmocka_unit_test(test_window_wraps),
		cmocka_unit_test(test_held_gap_stalls),
		cmocka_unit_test(test_text_next),
		cmocka_unit_test(test_text_next_malformed),
		cmocka_unit_test(test_parse_number),
		cmocka_unit_test(test_negotiate_operational),
		cmocka_unit_test(test_negotiate_burst_order),
		cmocka_unit_test(test_negotiate_unknown_keys),
		cmocka_unit_test(test_negotiate_duplicates),
		cmocka_unit_test(test_negotiate_ranges),
		cmocka_unit_test(test_negotiate_discovery_irrelevant),
		cmocka_unit_test(test_negotiate_bad_declarations),
		cmocka_unit_test(test_negotiate_auth_method),
		cmocka_unit_test(test_negotiate_text_stage),
		cmocka_unit_test(test_text_add_limit),
		cmocka_unit_test(test_chap_decode),
		cmocka_unit_test(test_chap_hex),
		cmocka_unit_test(test_chap_response_vectors),
		cmocka_unit_test(test_chap_exchange),
		cmocka_unit_test(test_chap_wrong_secret_or_name),
		cmocka_unit_test(test_chap_mutual),
		cmocka_unit_test(test_chap_reflection),
		cmocka_unit_test(test_chap_bad_algorithm_and_order),
		cmocka_unit_test(test_cdb_blocks),
		cmocka_unit_test(test_nexus_id),
		cmocka_unit_test(test_pr_full_status_rewrite),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
