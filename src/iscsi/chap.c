/* SPDX-License-Identifier: MIT */
/*
 * CHAP for iSCSI logins (RFC 1994 as profiled by RFC 7143 12.1.3): the
 * target offers MD5 (CHAP_A=5), sends an identifier and a 16-byte random
 * challenge, and checks the initiator's CHAP_N and CHAP_R; when the
 * initiator challenges back (CHAP_I, CHAP_C), the target answers with its
 * mutual credentials.  Binary values travel as 0x hex or 0b base64.  MD5
 * comes from nettle, the randomness from getrandom.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <nettle/base64.h>
#include <nettle/md5.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int hbk_iscsi_chap_decode(const char *s, uint8_t *out, size_t cap)
{
	if (s[0] != '0' || !s[1])
		return -EINVAL;
	const char *d = s + 2;
	size_t n = strlen(d);
	if (!n)
		return -EINVAL;
	if (s[1] == 'x' || s[1] == 'X') {
		size_t bytes = (n + 1) / 2;
		if (bytes > cap)
			return -ENOSPC;
		size_t o = 0, i = 0;
		if (n % 2) {            /* an odd count: the first digit stands alone */
			int v = hex_digit(d[0]);
			if (v < 0)
				return -EINVAL;
			out[o++] = (uint8_t)v;
			i = 1;
		}
		for (; i < n; i += 2) {
			int hi = hex_digit(d[i]), lo = hex_digit(d[i + 1]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			out[o++] = (uint8_t)(hi << 4 | lo);
		}
		return (int)o;
	}
	if (s[1] == 'b' || s[1] == 'B') {
		uint8_t tmp[BASE64_DECODE_LENGTH(HBK_ISCSI_CHAP_TEXT_MAX) + 4];
		if (BASE64_DECODE_LENGTH(n) > sizeof(tmp))
			return -ENOSPC;
		struct base64_decode_ctx ctx;
		size_t len = sizeof(tmp);
		base64_decode_init(&ctx);
		if (!base64_decode_update(&ctx, &len, tmp, n, d) || !base64_decode_final(&ctx))
			return -EINVAL;
		if (len > cap)
			return -ENOSPC;
		memcpy(out, tmp, len);
		return (int)len;
	}
	return -EINVAL;
}

void hbk_iscsi_chap_hex(const uint8_t *p, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	*out++ = '0';
	*out++ = 'x';
	for (size_t i = 0; i < len; i++) {
		*out++ = digits[p[i] >> 4];
		*out++ = digits[p[i] & 15];
	}
	*out = 0;
}

void hbk_iscsi_chap_response(uint8_t id, const void *secret, size_t secret_len,
			     const uint8_t *challenge, size_t challenge_len, uint8_t out[16])
{
	struct md5_ctx ctx;
	md5_init(&ctx);
	md5_update(&ctx, 1, &id);
	md5_update(&ctx, secret_len, secret);
	md5_update(&ctx, challenge_len, challenge);
	md5_digest(&ctx, MD5_DIGEST_SIZE, out);
}

/* Compares without a timing difference on where the bytes differ. */
static bool same(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;
	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* CHAP_A offers: a list of algorithm numbers, of which 5 (MD5) is the one. */
static bool offers_md5(const char *list)
{
	for (const char *p = list; *p;) {
		uint64_t v;
		char item[16];
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len && len < sizeof(item)) {
			memcpy(item, p, len);
			item[len] = 0;
			if (!hbk_iscsi_parse_number(item, &v) && v == HBK_ISCSI_CHAP_MD5)
				return true;
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

static int fail(const char *why)
{
	hbk_log(HBK_LOG_WARN, "iSCSI login: CHAP authentication failed: %s", why);
	return HBK_ISCSI_LOGIN_AUTH_FAILED;
}

int hbk_iscsi_chap_step(struct hbk_iscsi_chap *c, const struct hbk_iscsi_creds *creds,
			const struct hbk_iscsi_neg *n, struct hbk_iscsi_text *out)
{
	char hex[2 * HBK_ISCSI_CHAP_CHALLENGE_LEN + 3];

	switch (c->state) {
	case HBK_ISCSI_CHAP_WAIT_A:
		if (n->got & ~HBK_ISCSI_GOT_CHAP_A)
			return fail("CHAP keys before CHAP_A");
		if (!(n->got & HBK_ISCSI_GOT_CHAP_A))
			return 0;
		if (!offers_md5(n->chap_a)) {
			hbk_iscsi_text_add(out, "CHAP_A", "Reject");
			return fail("the initiator does not offer MD5 (CHAP_A=5)");
		}
		if (getrandom(c->challenge, sizeof(c->challenge), 0) != sizeof(c->challenge) ||
		    getrandom(&c->id, 1, 0) != 1)
			return fail("no randomness for the challenge");
		hbk_iscsi_chap_hex(c->challenge, sizeof(c->challenge), hex);
		if (hbk_iscsi_text_add(out, "CHAP_A", "%d", HBK_ISCSI_CHAP_MD5) ||
		    hbk_iscsi_text_add(out, "CHAP_I", "%u", c->id) ||
		    hbk_iscsi_text_add(out, "CHAP_C", "%s", hex))
			return HBK_ISCSI_LOGIN_TARGET_ERROR;
		c->state = HBK_ISCSI_CHAP_WAIT_R;
		return 0;

	case HBK_ISCSI_CHAP_WAIT_R: {
		if (n->got & HBK_ISCSI_GOT_CHAP_A)
			return fail("CHAP_A sent twice");
		if (!(n->got & (HBK_ISCSI_GOT_CHAP_N | HBK_ISCSI_GOT_CHAP_R)))
			return n->got ? fail("CHAP_I/CHAP_C without CHAP_N and CHAP_R") : 0;
		if ((n->got & (HBK_ISCSI_GOT_CHAP_N | HBK_ISCSI_GOT_CHAP_R)) !=
		    (HBK_ISCSI_GOT_CHAP_N | HBK_ISCSI_GOT_CHAP_R))
			return fail("CHAP_N and CHAP_R must come together");
		uint8_t want[16], got[HBK_ISCSI_CHAP_MAX];
		int len = hbk_iscsi_chap_decode(n->chap_r, got, sizeof(got));
		if (len != 16)
			return fail("CHAP_R is not a 16-byte value");
		hbk_iscsi_chap_response(c->id, creds->secret, strlen(creds->secret), c->challenge,
					sizeof(c->challenge), want);
		bool name_ok = !strcmp(n->chap_n, creds->user);
		if (!same(want, got, 16) || !name_ok)
			return fail(name_ok ? "wrong CHAP_R" : "unknown CHAP_N");

		unsigned mutual = n->got & (HBK_ISCSI_GOT_CHAP_I | HBK_ISCSI_GOT_CHAP_C);
		if (mutual) {
			uint8_t chal[HBK_ISCSI_CHAP_MAX], rsp[16];
			uint64_t id;
			char rhex[2 * 16 + 3];
			if (mutual != (HBK_ISCSI_GOT_CHAP_I | HBK_ISCSI_GOT_CHAP_C))
				return fail("CHAP_I and CHAP_C must come together");
			if (!creds->mutual_user)
				return fail("the initiator asks for mutual CHAP; no target "
					    "credentials are configured");
			if (hbk_iscsi_parse_number(n->chap_i, &id) || id > 255)
				return fail("CHAP_I is not a number 0..255");
			int clen = hbk_iscsi_chap_decode(n->chap_c, chal, sizeof(chal));
			if (clen <= 0)
				return fail("CHAP_C is not a binary value");
			/* A challenge equal to the target's own would let the
			 * initiator replay the target's answer (reflection). */
			if ((size_t)clen == sizeof(c->challenge) && same(chal, c->challenge, sizeof(c->challenge)))
				return fail("the initiator's challenge repeats the target's");
			hbk_iscsi_chap_response((uint8_t)id, creds->mutual_secret,
						strlen(creds->mutual_secret), chal, (size_t)clen, rsp);
			hbk_iscsi_chap_hex(rsp, sizeof(rsp), rhex);
			if (hbk_iscsi_text_add(out, "CHAP_N", "%s", creds->mutual_user) ||
			    hbk_iscsi_text_add(out, "CHAP_R", "%s", rhex))
				return HBK_ISCSI_LOGIN_TARGET_ERROR;
		}
		c->state = HBK_ISCSI_CHAP_DONE;
		return 0;
	}
	case HBK_ISCSI_CHAP_DONE:
		return n->got ? fail("CHAP keys after authentication") : 0;
	}
	return HBK_ISCSI_LOGIN_TARGET_ERROR;
}
