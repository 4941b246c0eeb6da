/* SPDX-License-Identifier: MIT */
/*
 * Login and Text negotiation (RFC 7143 sections 6 and 13): the key=value
 * text of a Login or Text Request is split in place, every key is checked
 * against the table of keys the target knows (where it may appear, which
 * side may send it, whether it matters in a discovery session, its value
 * range) and answered: numbers by their min or max function, booleans by
 * AND or OR, lists by the first value the target supports, declarations
 * recorded.  SessionType and MaxBurstLength are answered before the other
 * keys of their request, as the answers to others depend on them.  Unknown
 * keys are NotUnderstood; a key sent twice ends the login.  CHAP keys are
 * handed on to chap.c.  Pure functions, unit-tested.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

/* ---- Text buffers ------------------------------------------------------------------ */

void hbk_iscsi_text_init(struct hbk_iscsi_text *t, uint32_t cap)
{
	memset(t, 0, sizeof(*t));
	t->cap = cap;
}

void hbk_iscsi_text_fini(struct hbk_iscsi_text *t)
{
	free(t->buf);
	t->buf = NULL;
	t->len = 0;
	t->overflow = false;
}

int hbk_iscsi_text_add(struct hbk_iscsi_text *t, const char *key, const char *fmt, ...)
{
	char value[HBK_ISCSI_CHAP_TEXT_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	int vlen = vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	if (vlen < 0 || (size_t)vlen >= sizeof(value))
		return -EINVAL;
	size_t klen = strlen(key);
	uint64_t need = (uint64_t)t->len + klen + 1 + (uint64_t)vlen + 1;
	if (need > t->cap) {
		t->overflow = true;
		return -ENOSPC;
	}
	char *nb = realloc(t->buf, (size_t)need);
	if (!nb)
		return -ENOMEM;
	t->buf = nb;
	memcpy(t->buf + t->len, key, klen);
	t->buf[t->len + klen] = '=';
	memcpy(t->buf + t->len + klen + 1, value, (size_t)vlen + 1);
	t->len = (uint32_t)need;
	return 0;
}

/* RFC 7143 6.1: key names are letters, digits, '.', '-', '+', '@', '_'
 * (and '#' of the registered X# extension keys). */
static bool key_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '-' || ch == '+' || ch == '@' || ch == '_' || ch == '#';
}

#define VALUE_TEXT_MAX 8192u   /* the longest value of any key, CHAP's included */

int hbk_iscsi_text_next(char *text, uint32_t len, uint32_t *pos, char **key, char **value)
{
	uint32_t at = *pos;
	/* Trailing NULs (padding some initiators leave) end the text. */
	while (at < len && !text[at])
		at++;
	if (at >= len) {
		*pos = len;
		return 0;
	}
	char *start = text + at, *end = memchr(start, 0, len - at);
	if (!end)
		return -EINVAL;               /* the last pair must end in NUL */
	char *eq = memchr(start, '=', (size_t)(end - start));
	if (!eq || eq == start || eq - start > (ptrdiff_t)HBK_ISCSI_KEY_MAX ||
	    end - eq - 1 > (ptrdiff_t)VALUE_TEXT_MAX)
		return -EINVAL;
	for (char *p = start; p < eq; p++)
		if (!key_char(*p))
			return -EINVAL;
	*eq = 0;
	*key = start;
	*value = eq + 1;
	*pos = (uint32_t)(end - text) + 1;
	return 1;
}

int hbk_iscsi_parse_number(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return -EINVAL;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		if (!*s || strlen(s) > 16)
			return -EINVAL;
		for (; *s; s++) {
			unsigned d;
			if (*s >= '0' && *s <= '9')
				d = (unsigned)(*s - '0');
			else if (*s >= 'a' && *s <= 'f')
				d = (unsigned)(*s - 'a' + 10);
			else if (*s >= 'A' && *s <= 'F')
				d = (unsigned)(*s - 'A' + 10);
			else
				return -EINVAL;
			v = v << 4 | d;
		}
	} else {
		for (; *s; s++) {
			if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
				return -EINVAL;
			v = v * 10 + (uint64_t)(*s - '0');
		}
	}
	*out = v;
	return 0;
}

/* ---- Parameters ------------------------------------------------------------------------ */

void hbk_iscsi_params_default(struct hbk_iscsi_params *p, const struct hbk_iscsi_limits *lim)
{
	memset(p, 0, sizeof(*p));
	p->max_recv_dsl = lim->max_recv_dsl;
	p->max_send_dsl = 8192;
	p->max_burst = 262144;
	p->first_burst = 65536;
	p->initial_r2t = true;
	p->immediate_data = true;
	p->max_outstanding_r2t = 1;
	p->max_connections = 1;
	p->time2wait = 2;
	p->time2retain = 20;
	p->erl = 0;
}

void hbk_iscsi_neg_init(struct hbk_iscsi_neg *n, const struct hbk_iscsi_limits *lim)
{
	memset(n, 0, sizeof(*n));
	n->lim = *lim;
	hbk_iscsi_params_default(&n->p, lim);
}

/* ---- The keys ------------------------------------------------------------------------------ */

enum key_id {
	K_HEADER_DIGEST, K_DATA_DIGEST, K_MAX_CONNECTIONS, K_SEND_TARGETS, K_TARGET_NAME,
	K_INITIATOR_NAME, K_TARGET_ALIAS, K_INITIATOR_ALIAS, K_TARGET_ADDRESS, K_TPGT,
	K_INITIAL_R2T, K_IMMEDIATE_DATA, K_MAX_RECV_DSL, K_MAX_BURST, K_FIRST_BURST,
	K_TIME2WAIT, K_TIME2RETAIN, K_MAX_OUTSTANDING_R2T, K_DATA_PDU_IN_ORDER,
	K_DATA_SEQUENCE_IN_ORDER, K_ERL, K_SESSION_TYPE, K_AUTH_METHOD, K_CHAP_A, K_CHAP_I,
	K_CHAP_C, K_CHAP_N, K_CHAP_R, K_OF_MARKER, K_IF_MARKER, K_OF_MARK_INT, K_IF_MARK_INT,
	K_TASK_REPORTING, K_PROTOCOL_LEVEL, K_COUNT
};

/* Where a key belongs. */
#define KF_SECURITY    0x01u   /* security stage only */
#define KF_NORMAL      0x02u   /* Irrelevant in a discovery session */
#define KF_TARGET      0x04u   /* only the target sends it */
#define KF_TEXT        0x08u   /* may be sent in the full feature phase */
#define KF_LOGIN       0x10u   /* may be sent during login */

static const struct key {
	const char *name;
	unsigned flags;
} keys[K_COUNT] = {
	[K_HEADER_DIGEST] = { "HeaderDigest", KF_LOGIN },
	[K_DATA_DIGEST] = { "DataDigest", KF_LOGIN },
	[K_MAX_CONNECTIONS] = { "MaxConnections", KF_LOGIN | KF_NORMAL },
	[K_SEND_TARGETS] = { "SendTargets", KF_TEXT },
	[K_TARGET_NAME] = { "TargetName", KF_LOGIN },
	[K_INITIATOR_NAME] = { "InitiatorName", KF_LOGIN },
	[K_TARGET_ALIAS] = { "TargetAlias", KF_LOGIN | KF_TARGET },
	[K_INITIATOR_ALIAS] = { "InitiatorAlias", KF_LOGIN },
	[K_TARGET_ADDRESS] = { "TargetAddress", KF_LOGIN | KF_TEXT | KF_TARGET },
	[K_TPGT] = { "TargetPortalGroupTag", KF_LOGIN | KF_TARGET },
	[K_INITIAL_R2T] = { "InitialR2T", KF_LOGIN | KF_NORMAL },
	[K_IMMEDIATE_DATA] = { "ImmediateData", KF_LOGIN | KF_NORMAL },
	[K_MAX_RECV_DSL] = { "MaxRecvDataSegmentLength", KF_LOGIN | KF_TEXT },
	[K_MAX_BURST] = { "MaxBurstLength", KF_LOGIN | KF_NORMAL },
	[K_FIRST_BURST] = { "FirstBurstLength", KF_LOGIN | KF_NORMAL },
	[K_TIME2WAIT] = { "DefaultTime2Wait", KF_LOGIN },
	[K_TIME2RETAIN] = { "DefaultTime2Retain", KF_LOGIN },
	[K_MAX_OUTSTANDING_R2T] = { "MaxOutstandingR2T", KF_LOGIN | KF_NORMAL },
	[K_DATA_PDU_IN_ORDER] = { "DataPDUInOrder", KF_LOGIN | KF_NORMAL },
	[K_DATA_SEQUENCE_IN_ORDER] = { "DataSequenceInOrder", KF_LOGIN | KF_NORMAL },
	[K_ERL] = { "ErrorRecoveryLevel", KF_LOGIN },
	[K_SESSION_TYPE] = { "SessionType", KF_LOGIN },
	[K_AUTH_METHOD] = { "AuthMethod", KF_LOGIN | KF_SECURITY },
	[K_CHAP_A] = { "CHAP_A", KF_LOGIN | KF_SECURITY },
	[K_CHAP_I] = { "CHAP_I", KF_LOGIN | KF_SECURITY },
	[K_CHAP_C] = { "CHAP_C", KF_LOGIN | KF_SECURITY },
	[K_CHAP_N] = { "CHAP_N", KF_LOGIN | KF_SECURITY },
	[K_CHAP_R] = { "CHAP_R", KF_LOGIN | KF_SECURITY },
	[K_OF_MARKER] = { "OFMarker", KF_LOGIN },
	[K_IF_MARKER] = { "IFMarker", KF_LOGIN },
	[K_OF_MARK_INT] = { "OFMarkInt", KF_LOGIN },
	[K_IF_MARK_INT] = { "IFMarkInt", KF_LOGIN },
	[K_TASK_REPORTING] = { "TaskReporting", KF_LOGIN | KF_NORMAL },
	[K_PROTOCOL_LEVEL] = { "iSCSIProtocolLevel", KF_LOGIN },
};
static_assert(K_COUNT <= 64, "one bit per key in hbk_iscsi_neg.seen");

static int find_key(const char *name)
{
	for (int k = 0; k < K_COUNT; k++)
		if (!strcmp(keys[k].name, name))
			return k;
	return -1;
}

/* A number in [lo, hi], or -EINVAL. */
static int number(const char *v, uint64_t lo, uint64_t hi, uint32_t *out)
{
	uint64_t x;
	if (hbk_iscsi_parse_number(v, &x) || x < lo || x > hi)
		return -EINVAL;
	*out = (uint32_t)x;
	return 0;
}

/* "Yes" -> 1, "No" -> 0, anything else -1. */
static int boolean(const char *v)
{
	if (!strcmp(v, "Yes"))
		return 1;
	if (!strcmp(v, "No"))
		return 0;
	return -1;
}

/* Is `want` one of the comma-separated values of list? */
static bool in_list(const char *list, const char *want)
{
	size_t n = strlen(want);
	for (const char *p = list; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && !strncmp(p, want, n))
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

/* A value of a digest list: the first the target supports. */
static const char *pick_digest(const char *list, bool *crc)
{
	for (const char *p = list; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == 6 && !strncmp(p, "CRC32C", 6)) {
			*crc = true;
			return "CRC32C";
		}
		if (len == 4 && !strncmp(p, "None", 4)) {
			*crc = false;
			return "None";
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	return NULL;
}

/* Printable text without control characters, of at most max bytes. */
static bool plain_text(const char *v, size_t max)
{
	size_t n = strlen(v);
	if (n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return false;
	return true;
}

#define REJECT "Reject"

/* Answers one known key.  Returns 0 or a login status. */
static int answer(struct hbk_iscsi_neg *n, enum hbk_iscsi_stage stage, int k, const char *v,
		  struct hbk_iscsi_text *out)
{
	struct hbk_iscsi_params *p = &n->p;
	const char *name = keys[k].name;
	bool discovery = n->session_type == HBK_ISCSI_SESSION_DISCOVERY;
	uint32_t x;
	int b, err = 0;

	if (keys[k].flags & KF_TARGET)
		return hbk_iscsi_text_add(out, name, REJECT) ? HBK_ISCSI_LOGIN_TARGET_ERROR : 0;
	if (stage == HBK_ISCSI_STAGE_TEXT && !(keys[k].flags & KF_TEXT))
		return hbk_iscsi_text_add(out, name, REJECT) ? HBK_ISCSI_LOGIN_TARGET_ERROR : 0;
	if (stage != HBK_ISCSI_STAGE_TEXT && !(keys[k].flags & KF_LOGIN))
		return hbk_iscsi_text_add(out, name, REJECT) ? HBK_ISCSI_LOGIN_TARGET_ERROR : 0;
	/* Security keys after the security stage are a protocol error. */
	if ((keys[k].flags & KF_SECURITY) && stage != HBK_ISCSI_STAGE_SECURITY)
		return HBK_ISCSI_LOGIN_INITIATOR_ERROR;
	if ((keys[k].flags & KF_NORMAL) && discovery)
		return hbk_iscsi_text_add(out, name, "Irrelevant") ? HBK_ISCSI_LOGIN_TARGET_ERROR : 0;

	switch (k) {
	case K_HEADER_DIGEST:
	case K_DATA_DIGEST: {
		bool crc = false;
		const char *pick = pick_digest(v, &crc);
		if (pick) {
			if (k == K_HEADER_DIGEST)
				p->header_digest = crc;
			else
				p->data_digest = crc;
		}
		err = hbk_iscsi_text_add(out, name, "%s", pick ? pick : REJECT);
		break;
	}
	case K_MAX_CONNECTIONS:
		err = number(v, 1, 65535, &x) ? hbk_iscsi_text_add(out, name, REJECT) :
		      hbk_iscsi_text_add(out, name, "1");
		break;
	case K_SEND_TARGETS:
		if (!plain_text(v, HBK_ISCSI_NAME_MAX)) {
			err = hbk_iscsi_text_add(out, name, REJECT);
			break;
		}
		n->send_targets = true;
		snprintf(n->send_targets_value, sizeof(n->send_targets_value), "%s", v);
		break;
	case K_TARGET_NAME:
		if (!*v || !plain_text(v, HBK_ISCSI_NAME_MAX))
			return HBK_ISCSI_LOGIN_INITIATOR_ERROR;
		snprintf(n->target_name, sizeof(n->target_name), "%s", v);
		break;
	case K_INITIATOR_NAME:
		if (!*v)
			return HBK_ISCSI_LOGIN_MISSING_PARAM;
		if (!plain_text(v, HBK_ISCSI_NAME_MAX))
			return HBK_ISCSI_LOGIN_INITIATOR_ERROR;
		snprintf(n->initiator_name, sizeof(n->initiator_name), "%s", v);
		break;
	case K_INITIATOR_ALIAS:
		if (plain_text(v, HBK_ISCSI_VALUE_MAX))
			snprintf(n->initiator_alias, sizeof(n->initiator_alias), "%s", v);
		break;
	case K_INITIAL_R2T:
		/* OR: the target is content without R2T; the initiator decides. */
		if ((b = boolean(v)) < 0) {
			err = hbk_iscsi_text_add(out, name, REJECT);
			break;
		}
		p->initial_r2t = b;
		err = hbk_iscsi_text_add(out, name, "%s", b ? "Yes" : "No");
		break;
	case K_IMMEDIATE_DATA:
		/* AND: the target takes immediate data; the initiator decides. */
		if ((b = boolean(v)) < 0) {
			err = hbk_iscsi_text_add(out, name, REJECT);
			break;
		}
		p->immediate_data = b;
		err = hbk_iscsi_text_add(out, name, "%s", b ? "Yes" : "No");
		break;
	case K_MAX_RECV_DSL:
		/* Declarative: what the initiator receives per PDU. */
		if (number(v, HBK_ISCSI_DSL_MIN, HBK_ISCSI_DSL_MAX, &x))
			err = hbk_iscsi_text_add(out, name, REJECT);
		else
			p->max_send_dsl = x;
		break;
	case K_MAX_BURST:
	case K_FIRST_BURST:
		if (number(v, HBK_ISCSI_DSL_MIN, HBK_ISCSI_DSL_MAX, &x)) {
			err = hbk_iscsi_text_add(out, name, REJECT);
			break;
		}
		/* FirstBurstLength never above MaxBurstLength (RFC 7143 13.14):
		 * MaxBurstLength is answered before the other keys of its
		 * request, so FirstBurstLength is bounded by it whatever their
		 * order.  A MaxBurstLength below a FirstBurstLength answered in
		 * an earlier request cannot be taken: Reject keeps the old one. */
		if (k == K_MAX_BURST) {
			x = HBK_MIN(x, n->lim.max_burst);
			if ((n->seen & 1ull << K_FIRST_BURST) && x < p->first_burst) {
				err = hbk_iscsi_text_add(out, name, REJECT);
				break;
			}
			p->max_burst = x;
		} else {
			p->first_burst = x = HBK_MIN(x, HBK_MIN(n->lim.first_burst, p->max_burst));
		}
		err = hbk_iscsi_text_add(out, name, "%u", x);
		break;
	case K_TIME2WAIT:
		if (number(v, 0, 3600, &x)) {
			err = hbk_iscsi_text_add(out, name, REJECT);
			break;
		}
		p->time2wait = x = HBK_MAX(x, 2u);
		err = hbk_iscsi_text_add(out, name, "%u", x);
		break;
	case K_TIME2RETAIN:
		if (number(v, 0, 3600, &x)) {
			err = hbk_iscsi_text_add(out, name, REJECT);
			break;
		}
		/* ErrorRecoveryLevel 0 keeps nothing for a reconnect. */
		p->time2retain = x = 0;
		err = hbk_iscsi_text_add(out, name, "%u", x);
		break;
	case K_MAX_OUTSTANDING_R2T:
		err = number(v, 1, 65535, &x) ? hbk_iscsi_text_add(out, name, REJECT) :
		      hbk_iscsi_text_add(out, name, "1");
		break;
	case K_DATA_PDU_IN_ORDER:
	case K_DATA_SEQUENCE_IN_ORDER:
		/* OR with the target's Yes: always Yes. */
		err = boolean(v) < 0 ? hbk_iscsi_text_add(out, name, REJECT) :
		      hbk_iscsi_text_add(out, name, "Yes");
		break;
	case K_ERL:
		err = number(v, 0, 2, &x) ? hbk_iscsi_text_add(out, name, REJECT) :
		      hbk_iscsi_text_add(out, name, "0");
		break;
	case K_SESSION_TYPE:
		if (!strcmp(v, "Normal"))
			n->session_type = HBK_ISCSI_SESSION_NORMAL;
		else if (!strcmp(v, "Discovery"))
			n->session_type = HBK_ISCSI_SESSION_DISCOVERY;
		else
			return HBK_ISCSI_LOGIN_NO_SESSION_TYPE;
		break;
	case K_AUTH_METHOD: {
		const char *want = n->lim.chap ? "CHAP" : "None";
		if (in_list(v, want)) {
			n->auth = n->lim.chap ? HBK_ISCSI_AUTH_CHAP : HBK_ISCSI_AUTH_NONE;
			err = hbk_iscsi_text_add(out, name, "%s", want);
		} else {
			n->auth = HBK_ISCSI_AUTH_REJECTED;
			hbk_iscsi_text_add(out, name, REJECT);
			return HBK_ISCSI_LOGIN_AUTH_FAILED;
		}
		break;
	}
	case K_CHAP_A:
	case K_CHAP_I:
	case K_CHAP_N: {
		char *dst = k == K_CHAP_A ? n->chap_a : k == K_CHAP_I ? n->chap_i : n->chap_n;
		if (!plain_text(v, HBK_ISCSI_VALUE_MAX))
			return HBK_ISCSI_LOGIN_AUTH_FAILED;
		snprintf(dst, HBK_ISCSI_VALUE_MAX + 1, "%s", v);
		n->got |= k == K_CHAP_A ? HBK_ISCSI_GOT_CHAP_A :
			  k == K_CHAP_I ? HBK_ISCSI_GOT_CHAP_I : HBK_ISCSI_GOT_CHAP_N;
		break;
	}
	case K_CHAP_C:
	case K_CHAP_R:
		if (!plain_text(v, HBK_ISCSI_CHAP_TEXT_MAX))
			return HBK_ISCSI_LOGIN_AUTH_FAILED;
		snprintf(k == K_CHAP_C ? n->chap_c : n->chap_r, HBK_ISCSI_CHAP_TEXT_MAX + 1, "%s", v);
		n->got |= k == K_CHAP_C ? HBK_ISCSI_GOT_CHAP_C : HBK_ISCSI_GOT_CHAP_R;
		break;
	case K_OF_MARKER:
	case K_IF_MARKER:
		/* Markers were removed by RFC 7143: AND with the target's No. */
		err = boolean(v) < 0 ? hbk_iscsi_text_add(out, name, REJECT) :
		      hbk_iscsi_text_add(out, name, "No");
		break;
	case K_OF_MARK_INT:
	case K_IF_MARK_INT:
		err = hbk_iscsi_text_add(out, name, "Irrelevant");
		break;
	case K_TASK_REPORTING:
		err = hbk_iscsi_text_add(out, name, "%s", in_list(v, "RFC3720") ? "RFC3720" : REJECT);
		break;
	case K_PROTOCOL_LEVEL:
		err = number(v, 0, 31, &x) ? hbk_iscsi_text_add(out, name, REJECT) :
		      hbk_iscsi_text_add(out, name, "%u", HBK_MIN(x, 1u));
		break;
	default:
		break;
	}
	return err ? HBK_ISCSI_LOGIN_TARGET_ERROR : 0;
}

#define PAIRS_MAX 256

/* The keys of a login request answered first, in this order. */
static const int early[] = { K_SESSION_TYPE, K_MAX_BURST };

static bool is_early(int k)
{
	for (unsigned e = 0; e < HBK_ARRAY_SIZE(early); e++)
		if (early[e] == k)
			return true;
	return false;
}

int hbk_iscsi_negotiate(struct hbk_iscsi_neg *n, enum hbk_iscsi_stage stage,
			char *text, uint32_t len, struct hbk_iscsi_text *out)
{
	char *key[PAIRS_MAX], *value[PAIRS_MAX];
	unsigned npairs = 0;
	uint32_t pos = 0;
	int r;

	n->got = 0;
	while ((r = hbk_iscsi_text_next(text, len, &pos, &key[npairs], &value[npairs])) > 0)
		if (++npairs == PAIRS_MAX)
			return HBK_ISCSI_LOGIN_INITIATOR_ERROR;
	if (r < 0)
		return HBK_ISCSI_LOGIN_INITIATOR_ERROR;

	/* Keys taken before the others, wherever they stand: SessionType
	 * decides which keys are irrelevant, MaxBurstLength bounds
	 * FirstBurstLength. */
	for (unsigned e = 0; e < HBK_ARRAY_SIZE(early) && stage != HBK_ISCSI_STAGE_TEXT; e++) {
		int k = early[e];
		unsigned times = 0;
		for (unsigned i = 0; i < npairs; i++)
			if (!strcmp(key[i], keys[k].name)) {
				if (times++ || (n->seen & 1ull << k))
					return HBK_ISCSI_LOGIN_INITIATOR_ERROR;
				if ((r = answer(n, stage, k, value[i], out)))
					return r;
			}
		if (times)
			n->seen |= 1ull << k;
	}

	for (unsigned i = 0; i < npairs; i++) {
		int k = find_key(key[i]);
		if (k < 0) {
			/* Unknown keys, the X- and X# extensions among them. */
			if (hbk_iscsi_text_add(out, key[i], "NotUnderstood"))
				return HBK_ISCSI_LOGIN_TARGET_ERROR;
			continue;
		}
		if (is_early(k) && stage != HBK_ISCSI_STAGE_TEXT)
			continue;               /* taken above */
		if (n->seen & 1ull << k)
			return HBK_ISCSI_LOGIN_INITIATOR_ERROR;
		n->seen |= 1ull << k;
		if ((r = answer(n, stage, k, value[i], out)))
			return r;
	}
	if (out->overflow)
		return HBK_ISCSI_LOGIN_TARGET_ERROR;
	return 0;
}
