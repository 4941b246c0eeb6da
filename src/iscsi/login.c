/* SPDX-License-Identifier: MIT */
/*
 * The login phase and Text requests.  A login walks the stages the
 * initiator names (security, then operational, then the full feature
 * phase), each request checked against the stage it must be in; the first
 * request names the initiator, the session type and, for a normal session,
 * a target that must exist.  When CHAP is configured the security stage is
 * not left before CHAP succeeded.  The response that enters the full
 * feature phase carries the TSIH; the negotiated parameters (digests
 * included) apply from the next PDU on.  In the full feature phase, Text
 * requests answer SendTargets (split over several responses when longer
 * than the initiator takes) and take a new MaxRecvDataSegmentLength.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

#define LOGIN_RSP_MAX 8192u   /* MaxRecvDataSegmentLength in force during login */

struct hbk_iscsi_login_state {
	struct hbk_iscsi_neg neg;
	struct hbk_iscsi_chap chap;
	enum hbk_iscsi_stage stage;   /* the stage the next request is in */
	unsigned pdus;
	bool started;
	bool checked;                 /* the first complete request was checked */
	bool sent_tpgt;
	uint8_t isid[6];
	uint16_t tsih, cid;
	uint32_t cmdsn;
	uint8_t *acc;                 /* text of requests sent with C (continue) */
	uint32_t acc_len;
};

void hbk_iscsi_login_free(struct hbk_iscsi_conn *c)
{
	if (!c->login)
		return;
	free(c->login->acc);
	free(c->login);
	c->login = NULL;
}

/* Logs a key=value text at debug level, pairs separated by spaces. */
static void log_text(const struct hbk_iscsi_conn *c, const char *what, const uint8_t *text,
		     uint32_t len)
{
	if (!hbk_log_enabled(HBK_LOG_DEBUG))
		return;
	char line[1024];
	uint32_t n = HBK_MIN(len, (uint32_t)sizeof(line) - 1);
	for (uint32_t i = 0; i < n; i++)
		line[i] = text[i] ? (char)text[i] : ' ';
	line[n] = 0;
	hbk_log(HBK_LOG_DEBUG, "iSCSI %s: %s: %s", c->peer, what, line);
}

/* Fills the fields every Login Response carries. */
static void login_rsp_header(struct hbk_iscsi_conn *c, const struct hbk_iscsi_login *q,
			     struct hbk_iscsi_tx *tx, uint8_t flags)
{
	struct hbk_iscsi_login_state *L = c->login;
	struct hbk_iscsi_login *r = (struct hbk_iscsi_login *)(void *)tx->hdr;
	r->opcode = HBK_ISCSI_OP_LOGIN_RSP;
	r->flags = flags;
	r->version_max = 0;
	r->version_min = 0;             /* Version-active */
	memcpy(r->isid, q->isid, sizeof(r->isid));
	memcpy(r->itt, q->itt, sizeof(r->itt));
	put_be32(r->sn, c->statsn++);
	put_be32(r->exp_sn, L->cmdsn);
	put_be32(r->max_cmdsn, L->cmdsn + c->srv->depth - 1);
}

/* Ends the login with a status; the connection closes once it is sent. */
static void login_fail(struct hbk_iscsi_conn *c, const struct hbk_iscsi_login *q, int status,
		       const char *why)
{
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, HBK_ISCSI_TX_CLOSE);
	char text[160];
	if (!tx)
		return;
	login_rsp_header(c, q, tx, (uint8_t)(HBK_ISCSI_LOGIN_CSG(q->flags) << 2));
	struct hbk_iscsi_login *r = (struct hbk_iscsi_login *)(void *)tx->hdr;
	r->status_class = (uint8_t)(status >> 8);
	r->status_detail = (uint8_t)status;
	hbk_iscsi_tx_queue(c, tx);
	snprintf(text, sizeof(text), "login refused with status %02x/%02x: %s", status >> 8,
		 status & 0xff, why);
	hbk_iscsi_conn_close(c, true, text);
}

static const char *status_why(int status)
{
	switch (status) {
	case HBK_ISCSI_LOGIN_AUTH_FAILED: return "authentication failed";
	case HBK_ISCSI_LOGIN_MISSING_PARAM: return "a required key is missing";
	case HBK_ISCSI_LOGIN_NO_SESSION_TYPE: return "unknown SessionType";
	case HBK_ISCSI_LOGIN_TARGET_ERROR: return "target error";
	default: return "malformed or repeated keys";
	}
}

/* The full feature phase begins: the session takes its parameters. */
static int login_complete(struct hbk_iscsi_conn *c)
{
	struct hbk_iscsi_login_state *L = c->login;
	struct hbk_iscsi_neg *n = &L->neg;
	c->session_type = n->session_type;
	snprintf(c->initiator_name, sizeof(c->initiator_name), "%s", n->initiator_name);
	snprintf(c->target_name, sizeof(c->target_name), "%s", n->target_name);
	memcpy(c->isid, L->isid, sizeof(c->isid));
	c->cid = L->cid;
	c->tsih = L->tsih;
	c->nexus = hbk_iscsi_nexus_id(c->initiator_name, c->isid);
	return hbk_iscsi_session_register(c->srv, c);
}

int hbk_iscsi_login_pdu(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h, uint8_t *data,
			uint32_t dlen)
{
	struct hbk_iscsi *s = c->srv;
	const struct hbk_iscsi_login *q = (const void *)h;
	struct hbk_iscsi_login_state *L = c->login;
	if (!L) {
		L = c->login = calloc(1, sizeof(*L));
		if (!L) {
			hbk_iscsi_conn_close(c, false, "out of memory");
			return -ENOMEM;
		}
		hbk_iscsi_neg_init(&L->neg, &s->lim);
		if (getrandom(&c->statsn, sizeof(c->statsn), 0) != sizeof(c->statsn))
			c->statsn = 1;
	}
	bool transit = q->flags & HBK_ISCSI_LOGIN_TRANSIT, cont = q->flags & HBK_ISCSI_TEXT_CONTINUE;
	unsigned csg = HBK_ISCSI_LOGIN_CSG(q->flags), nsg = HBK_ISCSI_LOGIN_NSG(q->flags);

	if (!L->started) {
		memcpy(L->isid, q->isid, sizeof(L->isid));
		L->tsih = get_be16(q->tsih);
		L->cid = get_be16(q->cid);
		L->cmdsn = get_be32(q->sn);
		L->started = true;
		L->stage = (enum hbk_iscsi_stage)csg;
	}
	if (++L->pdus > HBK_ISCSI_LOGIN_PDUS_MAX) {
		login_fail(c, q, HBK_ISCSI_LOGIN_INITIATOR_ERROR, "too many Login Requests");
		return -EPROTO;
	}
	if (q->version_min != 0) {
		login_fail(c, q, HBK_ISCSI_LOGIN_UNSUPPORTED_VERSION, "only version 0 is spoken");
		return -EPROTO;
	}
	if (memcmp(L->isid, q->isid, sizeof(L->isid)) || L->tsih != get_be16(q->tsih) ||
	    L->cid != get_be16(q->cid)) {
		login_fail(c, q, HBK_ISCSI_LOGIN_INITIATOR_ERROR, "ISID, TSIH or CID changed");
		return -EPROTO;
	}
	if (csg != (unsigned)L->stage || (csg != HBK_ISCSI_STAGE_SECURITY &&
					  csg != HBK_ISCSI_STAGE_OPERATIONAL)) {
		login_fail(c, q, HBK_ISCSI_LOGIN_INITIATOR_ERROR, "request in the wrong stage");
		return -EPROTO;
	}
	if (transit && (cont || nsg <= csg || nsg == 2)) {
		login_fail(c, q, HBK_ISCSI_LOGIN_INITIATOR_ERROR, "invalid stage transition");
		return -EPROTO;
	}

	/* Text sent with C continues in the next request: keep it and say
	 * nothing but an empty response. */
	if ((uint64_t)L->acc_len + dlen > HBK_ISCSI_LOGIN_DATA_MAX) {
		login_fail(c, q, HBK_ISCSI_LOGIN_INITIATOR_ERROR, "login text too long");
		return -EPROTO;
	}
	if (dlen) {
		uint8_t *acc = realloc(L->acc, L->acc_len + dlen);
		if (!acc) {
			login_fail(c, q, HBK_ISCSI_LOGIN_OUT_OF_RESOURCES, "out of memory");
			return -ENOMEM;
		}
		memcpy(acc + L->acc_len, data, dlen);
		L->acc = acc;
		L->acc_len += dlen;
	}
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, HBK_ISCSI_TX_PDU);
	if (!tx)
		return -ENOMEM;
	if (cont) {
		login_rsp_header(c, q, tx, (uint8_t)(csg << 2));
		hbk_iscsi_tx_queue(c, tx);
		return 0;
	}

	struct hbk_iscsi_neg *n = &L->neg;
	struct hbk_iscsi_text out;
	log_text(c, "Login Request", L->acc, L->acc_len);
	bool first = !L->checked;
	L->checked = true;
	hbk_iscsi_text_init(&out, LOGIN_RSP_MAX);
	int st = hbk_iscsi_negotiate(n, (enum hbk_iscsi_stage)csg, (char *)L->acc, L->acc_len, &out);
	L->acc_len = 0;
	const char *why = NULL;
	if (st) {
		why = status_why(st);
	} else if (first) {
		if (!n->initiator_name[0]) {
			st = HBK_ISCSI_LOGIN_MISSING_PARAM;
			why = "no InitiatorName";
		} else if (n->session_type == HBK_ISCSI_SESSION_UNSET) {
			n->session_type = HBK_ISCSI_SESSION_NORMAL;
		}
		if (!st && n->session_type == HBK_ISCSI_SESSION_NORMAL) {
			if (!n->target_name[0]) {
				st = HBK_ISCSI_LOGIN_MISSING_PARAM;
				why = "no TargetName";
			} else if (hbk_iscsi_target_lookup(s, n->target_name, &c->target)) {
				st = HBK_ISCSI_LOGIN_NOT_FOUND;
				why = "no such target";
			}
		}
		if (!st && s->lim.chap && csg != HBK_ISCSI_STAGE_SECURITY) {
			st = HBK_ISCSI_LOGIN_AUTH_FAILED;
			why = "CHAP is required and the security stage was skipped";
		}
	}
	if (!st && csg == HBK_ISCSI_STAGE_SECURITY) {
		if (n->auth == HBK_ISCSI_AUTH_CHAP) {
			st = hbk_iscsi_chap_step(&L->chap, &s->creds, n, &out);
			why = "CHAP";
		} else if (n->got) {
			st = HBK_ISCSI_LOGIN_AUTH_FAILED;
			why = "CHAP keys without AuthMethod=CHAP";
		}
	}
	/* The stage may be left when the initiator asks and, in the security
	 * stage, authentication is done. */
	bool may = transit && !st;
	if (may && csg == HBK_ISCSI_STAGE_SECURITY && s->lim.chap) {
		if (n->auth != HBK_ISCSI_AUTH_CHAP) {
			st = HBK_ISCSI_LOGIN_AUTH_FAILED;
			why = "CHAP is required and the initiator did not offer it";
		} else if (L->chap.state != HBK_ISCSI_CHAP_DONE) {
			may = false;
		}
	}
	if (st) {
		hbk_iscsi_text_fini(&out);
		free(tx);
		login_fail(c, q, st, why ? why : status_why(st));
		return -EPROTO;
	}

	/* What the target declares: its portal group in the first response of
	 * a normal session, its receive length once operational keys flow. */
	if (!L->sent_tpgt && n->session_type == HBK_ISCSI_SESSION_NORMAL) {
		hbk_iscsi_text_add(&out, "TargetPortalGroupTag", "1");
		L->sent_tpgt = true;
	}
	if (!n->declared_dsl && (csg == HBK_ISCSI_STAGE_OPERATIONAL ||
				 (may && nsg == HBK_ISCSI_STAGE_FULL))) {
		hbk_iscsi_text_add(&out, "MaxRecvDataSegmentLength", "%u", s->lim.max_recv_dsl);
		n->declared_dsl = true;
	}
	if (out.overflow) {
		hbk_iscsi_text_fini(&out);
		free(tx);
		login_fail(c, q, HBK_ISCSI_LOGIN_TARGET_ERROR, "the response does not fit");
		return -ENOSPC;
	}

	uint8_t flags = (uint8_t)(csg << 2);
	if (may)
		flags |= (uint8_t)(HBK_ISCSI_LOGIN_TRANSIT | nsg);
	bool full = may && nsg == HBK_ISCSI_STAGE_FULL;
	if (full && login_complete(c)) {
		hbk_iscsi_text_fini(&out);
		free(tx);
		login_fail(c, q, HBK_ISCSI_LOGIN_NO_SESSION, "the TSIH names no session");
		return -ENOENT;
	}
	login_rsp_header(c, q, tx, flags);
	if (full)
		put_be16(((struct hbk_iscsi_login *)(void *)tx->hdr)->tsih, c->tsih);
	tx->own = out.buf;
	tx->data = (const uint8_t *)out.buf;
	tx->dlen = out.len;
	log_text(c, "Login Response", tx->data, tx->dlen);
	/* Sealed before the digests take effect: login PDUs carry none. */
	hbk_iscsi_tx_queue(c, tx);
	if (may)
		L->stage = (enum hbk_iscsi_stage)nsg;
	if (!full)
		return 0;

	c->p = n->p;
	c->p.max_recv_dsl = s->lim.max_recv_dsl;
	/* An answered FirstBurstLength is never above MaxBurstLength
	 * (param.c); the default one, when the initiator lowered only
	 * MaxBurstLength, is cut to it (RFC 7143 13.14). */
	if (c->p.first_burst > c->p.max_burst)
		c->p.first_burst = c->p.max_burst;
	hbk_iscsi_window_init(&c->win, L->cmdsn, s->depth);
	c->phase = n->session_type == HBK_ISCSI_SESSION_DISCOVERY ? HBK_ISCSI_PHASE_DISCOVERY :
		   HBK_ISCSI_PHASE_FULL;
	hbk_log(HBK_LOG_INFO, "iSCSI %s: %s logged in to %s (TSIH %u, digests %s/%s, "
		"ImmediateData %s, InitialR2T %s, MaxRecvDataSegmentLength %u, MaxBurstLength %u, "
		"FirstBurstLength %u)", c->peer, c->initiator_name,
		c->phase == HBK_ISCSI_PHASE_DISCOVERY ? "discovery" : c->target_name, c->tsih,
		c->p.header_digest ? "CRC32C" : "None", c->p.data_digest ? "CRC32C" : "None",
		c->p.immediate_data ? "Yes" : "No", c->p.initial_r2t ? "Yes" : "No",
		c->p.max_send_dsl, c->p.max_burst, c->p.first_burst);
	hbk_iscsi_login_free(c);
	return 0;
}

/* ---- Text requests ------------------------------------------------------------------------- */

/* The portal as SendTargets names it: the listening address, or the
 * connection's own address when the target listens on every address. */
static void portal_text(struct hbk_iscsi_conn *c, char *buf, size_t size)
{
	struct hbk_iscsi *s = c->srv;
	char host[64];
	snprintf(host, sizeof(host), "%s", s->addr);
	if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::")) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (getsockname(c->fd, (struct sockaddr *)&ss, &len) ||
		    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), NULL, 0, NI_NUMERICHOST))
			snprintf(host, sizeof(host), "%s", s->addr);
	}
	snprintf(buf, size, strchr(host, ':') ? "[%s]:%u,1" : "%s:%u,1", host, s->port);
}

static void send_targets(struct hbk_iscsi_conn *c, const char *value, struct hbk_iscsi_text *out)
{
	struct hbk_iscsi *s = c->srv;
	uint64_t ids[1024];
	char portal[96], name[HBK_ISCSI_NAME_MAX + 1];
	unsigned n = HBK_MIN(hbk_iscsi_targets(s, ids, HBK_ARRAY_SIZE(ids)), (unsigned)HBK_ARRAY_SIZE(ids));
	portal_text(c, portal, sizeof(portal));
	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s:t%llu", s->iqn_prefix, (unsigned long long)ids[i]);
		bool all = !strcmp(value, "All");
		bool own = !*value && c->session_type == HBK_ISCSI_SESSION_NORMAL && ids[i] == c->target;
		if (all || own || !strcasecmp(value, name)) {
			hbk_iscsi_text_add(out, "TargetName", "%s", name);
			hbk_iscsi_text_add(out, "TargetAddress", "%s", portal);
		}
	}
}

/* Sends the next part of the pending Text Response. */
static void text_chunk(struct hbk_iscsi_conn *c, const struct hbk_iscsi_nop *q)
{
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, HBK_ISCSI_TX_PDU);
	if (!tx)
		return;
	uint32_t left = c->text_rsp.len - c->text_off;
	uint32_t n = HBK_MIN(left, c->p.max_send_dsl);
	bool final = n == left;
	if (n) {
		tx->own = malloc(n);
		if (!tx->own) {
			free(tx);
			hbk_iscsi_conn_close(c, false, "out of memory");
			return;
		}
		memcpy(tx->own, c->text_rsp.buf + c->text_off, n);
		tx->data = tx->own;
		tx->dlen = n;
	}
	c->text_off += n;
	struct hbk_iscsi_nop *r = (struct hbk_iscsi_nop *)(void *)tx->hdr;
	r->opcode = HBK_ISCSI_OP_TEXT_RSP;
	r->flags = final ? HBK_ISCSI_FLAG_FINAL : HBK_ISCSI_TEXT_CONTINUE;
	memcpy(r->lun, q->lun, sizeof(r->lun));
	memcpy(r->itt, q->itt, sizeof(r->itt));
	if (final) {
		put_be32(r->ttt, HBK_ISCSI_NO_TAG);
		hbk_iscsi_text_fini(&c->text_rsp);
	} else {
		if (++c->next_ttt == HBK_ISCSI_NO_TAG)
			c->next_ttt = 1;
		c->text_ttt = c->next_ttt;
		put_be32(r->ttt, c->text_ttt);
	}
	hbk_iscsi_fill_sn(c, tx->hdr, true);
	hbk_iscsi_tx_queue(c, tx);
}

void hbk_iscsi_text_pdu(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h, uint8_t *data,
			uint32_t dlen)
{
	const struct hbk_iscsi_nop *q = (const void *)h;
	uint32_t itt = get_be32(q->itt), ttt = get_be32(q->ttt);
	if (ttt != HBK_ISCSI_NO_TAG) {
		/* The initiator asks for the rest of a long response. */
		if (!c->text_rsp.buf || ttt != c->text_ttt || itt != c->text_itt || dlen) {
			hbk_iscsi_send_reject(c, h, HBK_ISCSI_REJECT_INVALID_FIELD);
			return;
		}
		text_chunk(c, q);
		return;
	}
	hbk_iscsi_text_fini(&c->text_rsp);
	if (h->flags & HBK_ISCSI_TEXT_CONTINUE) {
		/* Requests split over several PDUs are not taken. */
		hbk_iscsi_send_reject(c, h, HBK_ISCSI_REJECT_UNSUPPORTED);
		return;
	}
	struct hbk_iscsi_neg *n = malloc(sizeof(*n));
	if (!n) {
		hbk_iscsi_conn_close(c, false, "out of memory");
		return;
	}
	hbk_iscsi_neg_init(n, &c->srv->lim);
	n->p = c->p;
	n->session_type = c->session_type;
	hbk_iscsi_text_init(&c->text_rsp, HBK_ISCSI_TEXT_MAX);
	int st = hbk_iscsi_negotiate(n, HBK_ISCSI_STAGE_TEXT, (char *)data, dlen, &c->text_rsp);
	if (!st && n->send_targets)
		send_targets(c, n->send_targets_value, &c->text_rsp);
	if (st || c->text_rsp.overflow) {
		free(n);
		hbk_iscsi_text_fini(&c->text_rsp);
		hbk_iscsi_send_reject(c, h, HBK_ISCSI_REJECT_PROTOCOL);
		return;
	}
	c->p.max_send_dsl = n->p.max_send_dsl;
	free(n);
	c->text_off = 0;
	c->text_itt = itt;
	text_chunk(c, q);
}
