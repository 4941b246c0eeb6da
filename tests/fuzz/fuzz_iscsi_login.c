/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness of the iSCSI login's text handling (src/iscsi/param.c,
 * chap.c): one input is a login, a sequence of Login or Text Request data
 * segments each negotiated in its stage on one hbk_iscsi_neg, as
 * src/iscsi/login.c does, with the CHAP exchange stepped after every
 * security-stage request when the target requires CHAP.  Each record is a
 * stage byte, a 16-bit length and that many bytes of "key=value\0" text
 * (copied to a buffer of its exact length).  The keys of each text are also
 * fed to the number and CHAP binary value decoders, and the target's
 * answers must parse back as well-formed text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("HBK_LOG", "error", 0);   /* refused logins warn; keep the run quiet */
	return 0;
}

/* Every pair of a text through the value decoders. */
static void decode_values(const uint8_t *p, size_t len)
{
	char *copy = malloc(len ? len : 1);
	if (!copy)
		abort();
	memcpy(copy, p, len);
	uint32_t pos = 0;
	char *k, *v;
	static uint8_t bin[HBK_ISCSI_CHAP_MAX];
	while (hbk_iscsi_text_next(copy, (uint32_t)len, &pos, &k, &v) > 0) {
		uint64_t n;
		if (pos > len)
			abort();
		hbk_iscsi_parse_number(v, &n);
		int r = hbk_iscsi_chap_decode(v, bin, sizeof(bin));
		if (r > (int)sizeof(bin))
			abort();
	}
	free(copy);
}

/* The target's answers must be text its own parser takes. */
static void check_answers(const struct hbk_iscsi_text *out)
{
	if (!out->len)
		return;
	char *copy = malloc(out->len);
	if (!copy)
		abort();
	memcpy(copy, out->buf, out->len);
	uint32_t pos = 0;
	char *k, *v;
	int r;
	while ((r = hbk_iscsi_text_next(copy, out->len, &pos, &k, &v)) > 0)
		;
	if (r < 0)
		abort();
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static const struct hbk_iscsi_limits lims[2] = {
		{ .max_recv_dsl = 262144, .max_burst = 1048576, .first_burst = 262144 },
		{ .max_recv_dsl = 8192, .max_burst = 65536, .first_burst = 65536, .chap = true },
	};
	static char user[] = "user", secret[] = "secret-secret", muser[] = "target",
		    msecret[] = "mutual-secret";
	const struct hbk_iscsi_creds creds = {
		.user = user, .secret = secret, .mutual_user = muser, .mutual_secret = msecret,
	};
	struct hbk_iscsi_neg *n = malloc(sizeof(*n));
	if (!n)
		abort();
	hbk_iscsi_neg_init(n, &lims[data[0] & 1]);
	struct hbk_iscsi_chap chap = { .state = HBK_ISCSI_CHAP_WAIT_A };
	size_t pos = 1;
	while (pos + 3 <= size) {
		static const enum hbk_iscsi_stage stages[4] = {
			HBK_ISCSI_STAGE_SECURITY, HBK_ISCSI_STAGE_OPERATIONAL,
			HBK_ISCSI_STAGE_TEXT, HBK_ISCSI_STAGE_OPERATIONAL,
		};
		enum hbk_iscsi_stage stage = stages[data[pos] & 3];
		size_t len = (size_t)data[pos + 1] << 8 | data[pos + 2];
		pos += 3;
		len = HBK_MIN(len, size - pos);
		decode_values(data + pos, len);
		char *text = malloc(len ? len : 1);
		if (!text)
			abort();
		memcpy(text, data + pos, len);
		pos += len;
		struct hbk_iscsi_text out;
		hbk_iscsi_text_init(&out, HBK_ISCSI_LOGIN_DATA_MAX);
		int st;
		if (stage == HBK_ISCSI_STAGE_TEXT) {
			/* A Text exchange in the full feature phase negotiates
			 * on a fresh state that starts from the session's. */
			struct hbk_iscsi_neg *tn = malloc(sizeof(*tn));
			if (!tn)
				abort();
			hbk_iscsi_neg_init(tn, &n->lim);
			tn->p = n->p;
			tn->session_type = n->session_type;
			st = hbk_iscsi_negotiate(tn, stage, text, (uint32_t)len, &out);
			free(tn);
		} else {
			st = hbk_iscsi_negotiate(n, stage, text, (uint32_t)len, &out);
		}
		if (!st && stage == HBK_ISCSI_STAGE_SECURITY && n->auth == HBK_ISCSI_AUTH_CHAP)
			st = hbk_iscsi_chap_step(&chap, &creds, n, &out);
		check_answers(&out);
		hbk_iscsi_text_fini(&out);
		free(text);
		if (st)
			break;   /* the login ends */
	}
	free(n);
	return 0;
}
