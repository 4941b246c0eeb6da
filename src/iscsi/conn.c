/* SPDX-License-Identifier: MIT */
/*
 * One iSCSI connection (and its session: one connection per session).
 *
 * Threads.  Each connection has one thread that does all of its socket I/O
 * and owns all of its state: it polls the non-blocking socket and an
 * eventfd, reads PDUs through a small state machine (header, AHS, header
 * digest, data straight into the command's arena buffer, data digest),
 * acts on them, and drains its send queue with sendmsg as far as the socket
 * takes it.  The controller's completion callbacks and the task-management
 * workers never touch the socket: they put the finished task (or TMF) on
 * the connection's event list under ev_lock and write the eventfd, so a
 * stalled or slow initiator holds up only its own connection, never a host
 * thread or another session.
 *
 * Bounds.  Every length an initiator controls is checked before it is used
 * (the data segment against the declared MaxRecvDataSegmentLength, the AHS
 * against its field, the login's PDUs and text, the commands outstanding
 * through the CmdSN window); input is no longer read while the send queue
 * holds more than TX_BACKLOG PDUs or TX_BACKLOG_BYTES of data; a login
 * that does not finish in time, a PDU or a data-out transfer that makes no
 * progress and a send that stays blocked for HBK_ISCSI_STALL_MS end the
 * connection.
 *
 * Ending.  However a connection ends (logout, error, peer gone, stop,
 * reinstatement), tasks that have not reached the controller are freed at
 * once; those at the controller are waited for (their completions arrive
 * as events and are dropped), so every arena buffer is returned before the
 * thread exits and the listener joins it.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

#define TX_BACKLOG     1024u      /* queued PDUs beyond which input waits */
#define TX_BACKLOG_BYTES (4u << 20)  /* or queued heap data (NOP-In echoes) */
#define TX_IOV         64u        /* iovecs per sendmsg */
#define RX_STAGE       16384u     /* staging for headers and small PDUs */
#define RX_DIRECT_MIN  4096u      /* data read straight into its buffer from this size */
#define RX_BUDGET      256u       /* reads per wake, so output keeps flowing */
#define CLOSE_FLUSH_MS 5000u      /* a closing connection's last PDUs get this long */

enum rx_state { RX_BHS, RX_AHS, RX_HDIGEST, RX_DATA, RX_DDIGEST };

enum rx_kind {
	RXK_SMALL,      /* data into rx->small, handled when complete */
	RXK_CMD,        /* SCSI Command: immediate data into its task */
	RXK_DATA_OUT,   /* Data-Out: into its task */
	RXK_DROP,       /* dropped silently (CmdSN outside the window) */
	RXK_REJECT,     /* dropped, then answered with a Reject */
};

struct hbk_iscsi_rx {
	enum rx_state state;
	uint32_t got;               /* bytes of the current part */
	uint32_t ahs;               /* AHS bytes */
	uint8_t hdr[HBK_ISCSI_BHS_LEN + 255 * 4];
	uint8_t digest[HBK_ISCSI_DIGEST_LEN];
	uint32_t dlen, dtotal;      /* data segment, and with its padding */
	uint8_t *dest;              /* where the data goes; NULL: dropped */
	uint32_t crc;
	enum rx_kind kind;
	int reject;
	struct hbk_iscsi_task *task;
	uint8_t *small;             /* control PDUs' data */
	uint32_t small_cap;
	uint64_t progress_ns;       /* last byte of a PDU under way */
	uint32_t off, len;          /* staged bytes */
	uint8_t stage[RX_STAGE];
};

static const struct hbk_iscsi_bhs *rx_bhs(const struct hbk_iscsi_conn *c)
{
	return (const struct hbk_iscsi_bhs *)(const void *)c->rx->hdr;
}

/* ---- Waking and ending --------------------------------------------------------------- */

void hbk_iscsi_conn_wake(struct hbk_iscsi_conn *c)
{
	uint64_t one = 1;
	/* An eventfd write only fails when the counter would overflow, and a
	 * full counter wakes the thread just the same. */
	if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		hbk_log(HBK_LOG_WARN, "iSCSI %s: eventfd: %s", c->peer, strerror(errno));
}

void hbk_iscsi_conn_kill(struct hbk_iscsi_conn *c)
{
	atomic_store(&c->kill, true);
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	hbk_iscsi_conn_wake(c);
}

/* An ending session is no longer one a new login reinstates. */
static void unregister(struct hbk_iscsi_conn *c)
{
	pthread_mutex_lock(&c->srv->lock);
	c->registered = false;
	pthread_mutex_unlock(&c->srv->lock);
}

void hbk_iscsi_conn_close(struct hbk_iscsi_conn *c, bool flush, const char *why)
{
	if (!c->closing) {
		hbk_log(flush ? HBK_LOG_INFO : HBK_LOG_WARN, "iSCSI %s: connection %s: %s",
			c->peer, flush ? "ends" : "dropped", why);
		unregister(c);
	}
	c->closing = true;
	if (flush && !c->fatal) {
		if (!c->close_after_tx)
			c->close_deadline_ns = hbk_coarse_ns() + CLOSE_FLUSH_MS * 1000000ull;
		c->close_after_tx = true;
	} else {
		c->fatal = true;
	}
}

/* ---- Sending ------------------------------------------------------------------------------ */

struct hbk_iscsi_tx *hbk_iscsi_tx_new(struct hbk_iscsi_conn *c, enum hbk_iscsi_tx_kind kind)
{
	struct hbk_iscsi_tx *tx = calloc(1, sizeof(*tx));
	if (!tx)
		hbk_iscsi_conn_close(c, false, "out of memory");
	else
		tx->kind = kind;
	return tx;
}

void hbk_iscsi_tx_seal(struct hbk_iscsi_conn *c, struct hbk_iscsi_tx *tx)
{
	put_be24(tx->hdr + 5, tx->dlen);
	tx->hdr_len = HBK_ISCSI_BHS_LEN;
	if (c->p.header_digest) {
		hbk_iscsi_put_digest(tx->hdr + HBK_ISCSI_BHS_LEN,
				     hbk_iscsi_crc32c(0, tx->hdr, HBK_ISCSI_BHS_LEN));
		tx->hdr_len += HBK_ISCSI_DIGEST_LEN;
	}
	uint32_t pad = hbk_iscsi_pad4(tx->dlen);
	memset(tx->tail, 0, sizeof(tx->tail));
	tx->tail_len = tx->dlen ? pad : 0;
	if (c->p.data_digest && tx->dlen) {
		uint32_t crc = hbk_iscsi_crc32c(0, tx->data, tx->dlen);
		crc = hbk_iscsi_crc32c(crc, tx->tail, pad);
		hbk_iscsi_put_digest(tx->tail + pad, crc);
		tx->tail_len += HBK_ISCSI_DIGEST_LEN;
	}
	tx->sent = 0;
}

static void tx_append(struct hbk_iscsi_conn *c, struct hbk_iscsi_tx *tx)
{
	tx->next = NULL;
	if (c->tx_tail)
		c->tx_tail->next = tx;
	else
		c->tx_head = tx;
	c->tx_tail = tx;
	c->tx_count++;
	tx->queued_bytes = tx->own ? tx->dlen : 0;
	c->tx_bytes += tx->queued_bytes;
}

/* The initiator does not read what it is sent: input waits, so what it
 * sends cannot make the queue grow without bound. */
static bool tx_backlogged(const struct hbk_iscsi_conn *c)
{
	return c->tx_count > TX_BACKLOG || c->tx_bytes > TX_BACKLOG_BYTES;
}

void hbk_iscsi_tx_queue(struct hbk_iscsi_conn *c, struct hbk_iscsi_tx *tx)
{
	hbk_iscsi_tx_seal(c, tx);
	tx_append(c, tx);
}

void hbk_iscsi_fill_sn(struct hbk_iscsi_conn *c, uint8_t *hdr, bool advance)
{
	put_be32(hdr + 24, c->statsn);
	if (advance)
		c->statsn++;
	put_be32(hdr + 28, c->win.exp);
	put_be32(hdr + 32, c->win.max);
}

void hbk_iscsi_send_reject(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *hdr,
			   enum hbk_iscsi_reject reason)
{
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, HBK_ISCSI_TX_PDU);
	uint8_t *copy = malloc(HBK_ISCSI_BHS_LEN);
	if (!tx || !copy) {
		free(tx);
		free(copy);
		hbk_iscsi_conn_close(c, false, "out of memory");
		return;
	}
	hbk_log(HBK_LOG_INFO, "iSCSI %s: %s rejected (reason 0x%02x)", c->peer,
		hbk_iscsi_opcode_name(hdr->opcode), reason);
	memcpy(copy, hdr, HBK_ISCSI_BHS_LEN);
	struct hbk_iscsi_reject_hdr *r = (struct hbk_iscsi_reject_hdr *)(void *)tx->hdr;
	r->opcode = HBK_ISCSI_OP_REJECT;
	r->flags = HBK_ISCSI_FLAG_FINAL;
	r->reason = (uint8_t)reason;
	put_be32(r->itt, HBK_ISCSI_NO_TAG);
	hbk_iscsi_fill_sn(c, tx->hdr, true);
	tx->data = tx->own = copy;
	tx->dlen = HBK_ISCSI_BHS_LEN;
	hbk_iscsi_tx_queue(c, tx);
}

static void tx_free(struct hbk_iscsi_tx *tx)
{
	free(tx->own);
	free(tx);
}

/* The head PDU went out entirely. */
static void tx_done(struct hbk_iscsi_conn *c)
{
	struct hbk_iscsi_tx *tx = c->tx_head;
	c->tx_head = tx->next;
	if (!c->tx_head)
		c->tx_tail = NULL;
	c->tx_count--;
	c->tx_bytes -= tx->queued_bytes;
	tx->queued_bytes = 0;
	if (tx->kind == HBK_ISCSI_TX_STREAM) {
		struct hbk_iscsi_task *t = tx->task;
		if (!tx->last) {
			/* The task's next PDU goes to the back of the queue, so a
			 * long read shares the connection with the other tasks. */
			hbk_iscsi_cmd_stream(c, t, tx);
			hbk_iscsi_tx_seal(c, tx);
			tx_append(c, tx);
			return;
		}
		t->streaming = false;
		hbk_iscsi_task_free(c, t);
	} else if (tx->kind == HBK_ISCSI_TX_CLOSE) {
		c->fatal = true;        /* the last word was said: end now */
	}
	tx_free(tx);
}

static size_t tx_total(const struct hbk_iscsi_tx *tx)
{
	return tx->hdr_len + tx->dlen + tx->tail_len;
}

/* Sends as much as the socket takes.  Returns 0, or -errno when the
 * connection broke. */
static int tx_flush(struct hbk_iscsi_conn *c)
{
	while (c->tx_head && !c->fatal) {
		struct iovec iov[TX_IOV];
		unsigned n = 0;
		for (struct hbk_iscsi_tx *tx = c->tx_head; tx && n + 3 <= TX_IOV; tx = tx->next) {
			const uint8_t *part[3] = { tx->hdr, tx->data, tx->tail };
			size_t len[3] = { tx->hdr_len, tx->dlen, tx->tail_len };
			size_t skip = tx->sent;
			for (unsigned k = 0; k < 3; k++) {
				if (skip >= len[k]) {
					skip -= len[k];
					continue;
				}
				iov[n].iov_base = (void *)(uintptr_t)(part[k] + skip);
				iov[n].iov_len = len[k] - skip;
				n++;
				skip = 0;
			}
			/* A CLOSE PDU is the last thing said on the connection. */
			if (tx->kind == HBK_ISCSI_TX_CLOSE)
				break;
		}
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!c->tx_blocked)
					c->tx_stall_ns = hbk_coarse_ns();
				c->tx_blocked = true;
				return 0;
			}
			return -errno;
		}
		c->tx_blocked = false;
		size_t left = (size_t)w;
		while (left && c->tx_head) {
			struct hbk_iscsi_tx *tx = c->tx_head;
			size_t rest = tx_total(tx) - tx->sent;
			if (left < rest) {
				tx->sent += left;
				break;
			}
			left -= rest;
			tx_done(c);
		}
	}
	return 0;
}

/* ---- Sequence numbers of non-command PDUs ------------------------------------------------ */

/* Whether h is an ABORT TASK of a command not received yet, whose CmdSN
 * (RefCmdSN) is still to come and lies before the request's own. */
static bool abort_of_missing(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h)
{
	const struct hbk_iscsi_tmf_req *q = (const void *)h;
	uint32_t refsn = get_be32(q->ref_cmdsn);
	return (h->opcode & HBK_ISCSI_OP_MASK) == HBK_ISCSI_OP_TMF_REQ &&
	       (q->function & 0x7f) == HBK_ISCSI_TMF_ABORT_TASK &&
	       !hbk_iscsi_task_find(c, get_be32(q->ref_itt)) &&
	       hbk_iscsi_window_pending(&c->win, refsn) && hbk_iscsi_sn_lt(refsn, get_be32(q->cmdsn));
}

/*
 * A non-immediate NOP-Out, Text, Task Management or Logout Request takes a
 * CmdSN, which opens the window again once it is acted on.  Returns true
 * when it is to be acted on now; false when it lies outside the window
 * (ignored silently), or arrived ahead of a CmdSN gap: it is then kept
 * with its data and acted on once the gap filled, in CmdSN order with the
 * commands (RFC 7143 4.2.2.1, hbk_iscsi_cmd_release), or, when its data
 * does not fit in what the connection keeps aside, rejected.
 */
static bool sn_accept(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h, const uint8_t *data,
		      uint32_t dlen)
{
	if (h->opcode & HBK_ISCSI_OP_IMMEDIATE)
		return true;
	uint32_t cmdsn = get_be32(h->spec2 + 4);    /* byte 24 */
	/* An ABORT TASK of a command not received yet whose CmdSN lies in the
	 * gap before it would wait for that command for good: it fills the
	 * gap itself (RFC 7143 11.5.1 b) and is acted on at once. */
	bool ahead = cmdsn != c->win.exp && !abort_of_missing(c, h);
	if (!hbk_iscsi_window_take(&c->win, cmdsn)) {
		hbk_log(HBK_LOG_INFO, "iSCSI %s: %s with CmdSN %u outside [%u, %u]: ignored",
			c->peer, hbk_iscsi_opcode_name(h->opcode), cmdsn, c->win.exp, c->win.max);
		return false;
	}
	if (!ahead) {
		hbk_iscsi_window_credit(&c->win);
		return true;
	}
	if (c->stash_bytes + dlen > HBK_ISCSI_STASH_MAX) {
		hbk_iscsi_window_credit(&c->win);
		hbk_iscsi_send_reject(c, h, HBK_ISCSI_REJECT_OUT_OF_RESOURCES);
		return false;
	}
	struct hbk_iscsi_held *p = malloc(sizeof(*p) + dlen);
	if (!p) {
		hbk_iscsi_conn_close(c, false, "out of memory");
		return false;
	}
	hbk_log(HBK_LOG_DEBUG, "iSCSI %s: %s with CmdSN %u waits for CmdSN %u", c->peer,
		hbk_iscsi_opcode_name(h->opcode), cmdsn, c->win.exp);
	p->cmdsn = cmdsn;
	p->dlen = dlen;
	p->since_ns = hbk_coarse_ns();
	memcpy(p->hdr, h, sizeof(p->hdr));
	if (dlen)
		memcpy(p->data, data, dlen);
	p->next = c->held;
	c->held = p;
	c->nheld++;
	c->stash_bytes += dlen;
	return false;
}

/* ---- NOP and Logout ----------------------------------------------------------------------- */

static void nop_out(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h, const uint8_t *data,
		    uint32_t dlen)
{
	const struct hbk_iscsi_nop *q = (const void *)h;
	if (get_be32(q->itt) == HBK_ISCSI_NO_TAG)
		return;                 /* an answer to a target ping: nothing to say */
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, HBK_ISCSI_TX_PDU);
	if (!tx)
		return;
	/* The ping's data comes back, cut to what the initiator receives. */
	uint32_t n = HBK_MIN(dlen, c->p.max_send_dsl);
	if (n) {
		tx->own = malloc(n);
		if (!tx->own) {
			tx_free(tx);
			hbk_iscsi_conn_close(c, false, "out of memory");
			return;
		}
		memcpy(tx->own, data, n);
		tx->data = tx->own;
		tx->dlen = n;
	}
	struct hbk_iscsi_nop *r = (struct hbk_iscsi_nop *)(void *)tx->hdr;
	r->opcode = HBK_ISCSI_OP_NOP_IN;
	r->flags = HBK_ISCSI_FLAG_FINAL;
	memcpy(r->lun, q->lun, sizeof(r->lun));
	memcpy(r->itt, q->itt, sizeof(r->itt));
	put_be32(r->ttt, HBK_ISCSI_NO_TAG);
	hbk_iscsi_fill_sn(c, tx->hdr, true);
	hbk_iscsi_tx_queue(c, tx);
}

/* Tasks that have not reached the controller go; the others end there. */
static void drop_waiting_tasks(struct hbk_iscsi_conn *c)
{
	for (struct hbk_iscsi_task *t = c->tasks, *next; t; t = next) {
		next = t->next;
		if (t->state == HBK_ISCSI_TASK_DATA_OUT && !t->tmf)
			hbk_iscsi_task_drop(c, t);
	}
}

static void logout(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h)
{
	const struct hbk_iscsi_logout *q = (const void *)h;
	unsigned reason = q->flags & 0x7f;
	uint8_t response = 0;
	if (reason > 2) {
		hbk_iscsi_send_reject(c, h, HBK_ISCSI_REJECT_INVALID_FIELD);
		return;
	}
	if (reason == 1 && get_be16(q->cid) != c->cid)
		response = 1;           /* CID not found */
	else if (reason == 2)
		response = 2;           /* connection recovery is not supported */
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, response ? HBK_ISCSI_TX_PDU : HBK_ISCSI_TX_CLOSE);
	if (!tx)
		return;
	struct hbk_iscsi_logout *r = (struct hbk_iscsi_logout *)(void *)tx->hdr;
	r->opcode = HBK_ISCSI_OP_LOGOUT_RSP;
	r->flags = HBK_ISCSI_FLAG_FINAL;
	r->response = response;
	memcpy(r->itt, q->itt, sizeof(r->itt));
	hbk_iscsi_fill_sn(c, tx->hdr, true);
	hbk_iscsi_tx_queue(c, tx);
	if (!response) {
		drop_waiting_tasks(c);
		hbk_iscsi_conn_close(c, true, "logout");
	}
}

void hbk_iscsi_request_run(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h, uint8_t *data,
			   uint32_t dlen)
{
	switch (h->opcode & HBK_ISCSI_OP_MASK) {
	case HBK_ISCSI_OP_TEXT_REQ:
		hbk_iscsi_text_pdu(c, h, data, dlen);
		break;
	case HBK_ISCSI_OP_NOP_OUT:
		nop_out(c, h, data, dlen);
		break;
	case HBK_ISCSI_OP_TMF_REQ:
		hbk_iscsi_tmf_pdu(c, h);
		break;
	case HBK_ISCSI_OP_LOGOUT_REQ:
		logout(c, h);
		break;
	}
}

/* ---- Receiving ------------------------------------------------------------------------------ */

static void rx_reset(struct hbk_iscsi_rx *rx)
{
	rx->state = RX_BHS;
	rx->got = 0;
	rx->task = NULL;
	rx->dest = NULL;
}

/* The whole PDU is in: act on it. */
static void pdu_done(struct hbk_iscsi_conn *c)
{
	struct hbk_iscsi_rx *rx = c->rx;
	const struct hbk_iscsi_bhs *h = rx_bhs(c);
	switch (rx->kind) {
	case RXK_REJECT:
		hbk_iscsi_send_reject(c, h, (enum hbk_iscsi_reject)rx->reject);
		break;
	case RXK_DROP:
		break;
	case RXK_CMD:
		hbk_iscsi_cmd_ready(c, rx->task, rx->dlen);
		break;
	case RXK_DATA_OUT:
		if (rx->task)
			hbk_iscsi_data_out_end(c, rx->task, h);
		break;
	case RXK_SMALL:
		if ((h->opcode & HBK_ISCSI_OP_MASK) == HBK_ISCSI_OP_LOGIN_REQ)
			hbk_iscsi_login_pdu(c, h, rx->small, rx->dlen);
		else if (sn_accept(c, h, rx->small, rx->dlen))
			hbk_iscsi_request_run(c, h, rx->small, rx->dlen);
		break;
	}
	rx_reset(rx);
	/* Once a PDU that took a CmdSN is done, the commands and requests it
	 * let past a gap follow it, in CmdSN order (after the reset: none of
	 * them is being read into any more). */
	hbk_iscsi_cmd_release(c);
}

/* The header (and AHS, and header digest) is in: decide where the data goes. */
static void header_done(struct hbk_iscsi_conn *c)
{
	struct hbk_iscsi_rx *rx = c->rx;
	const struct hbk_iscsi_bhs *h = rx_bhs(c);
	uint32_t max = c->phase == HBK_ISCSI_PHASE_LOGIN ? HBK_ISCSI_LOGIN_DATA_MAX : c->p.max_recv_dsl;
	int r = hbk_iscsi_bhs_check(h, c->phase, max);
	if (r < 0) {
		char why[96];
		snprintf(why, sizeof(why), "malformed %s (data segment %u, limit %u)",
			 hbk_iscsi_opcode_name(h->opcode), hbk_iscsi_dlen(h), max);
		hbk_iscsi_conn_close(c, false, why);
		return;
	}
	rx->dlen = hbk_iscsi_dlen(h);
	rx->dtotal = rx->dlen + hbk_iscsi_pad4(rx->dlen);
	rx->got = 0;
	rx->crc = 0;
	rx->dest = NULL;
	rx->task = NULL;
	if (r > 0) {
		rx->kind = RXK_REJECT;
		rx->reject = r;
	} else {
		switch (h->opcode & HBK_ISCSI_OP_MASK) {
		case HBK_ISCSI_OP_SCSI_CMD:
			rx->kind = RXK_CMD;
			rx->task = hbk_iscsi_cmd_begin(c, h, &rx->dest);
			if (!rx->task)
				rx->kind = RXK_DROP;
			break;
		case HBK_ISCSI_OP_DATA_OUT:
			rx->kind = RXK_DATA_OUT;
			rx->dest = hbk_iscsi_data_out_begin(c, h, &rx->task);
			break;
		default:
			rx->kind = RXK_SMALL;
			rx->dest = rx->small;
			break;
		}
	}
	if (c->closing)
		return;
	if (!rx->dtotal)
		pdu_done(c);
	else
		rx->state = RX_DATA;
}

static void after_ahs(struct hbk_iscsi_conn *c)
{
	c->rx->got = 0;
	if (c->phase != HBK_ISCSI_PHASE_LOGIN && c->p.header_digest)
		c->rx->state = RX_HDIGEST;
	else
		header_done(c);
}

/* Data bytes that arrived (in place at dest already when direct). */
static void data_in(struct hbk_iscsi_conn *c, const uint8_t *p, uint32_t n, bool direct)
{
	struct hbk_iscsi_rx *rx = c->rx;
	if (rx->got < rx->dlen) {
		uint32_t d = HBK_MIN(n, rx->dlen - rx->got);
		if (rx->dest && !direct)
			memcpy(rx->dest + rx->got, p, d);
	}
	if (c->p.data_digest && c->phase != HBK_ISCSI_PHASE_LOGIN)
		rx->crc = hbk_iscsi_crc32c(rx->crc, direct ? rx->dest + rx->got : p, n);
	rx->got += n;
	if (rx->got < rx->dtotal)
		return;
	rx->got = 0;
	if (c->p.data_digest && c->phase != HBK_ISCSI_PHASE_LOGIN)
		rx->state = RX_DDIGEST;
	else
		pdu_done(c);
}

/* Consumes staged bytes. */
static void rx_consume(struct hbk_iscsi_conn *c)
{
	struct hbk_iscsi_rx *rx = c->rx;
	while (rx->off < rx->len && !c->closing) {
		const uint8_t *p = rx->stage + rx->off;
		uint32_t avail = rx->len - rx->off, n;
		switch (rx->state) {
		case RX_BHS:
			n = HBK_MIN(avail, HBK_ISCSI_BHS_LEN - rx->got);
			memcpy(rx->hdr + rx->got, p, n);
			rx->got += n;
			rx->off += n;
			if (rx->got < HBK_ISCSI_BHS_LEN)
				break;
			rx->ahs = rx_bhs(c)->ahs_len * 4u;
			rx->got = 0;
			if (rx->ahs)
				rx->state = RX_AHS;
			else
				after_ahs(c);
			break;
		case RX_AHS:
			n = HBK_MIN(avail, rx->ahs - rx->got);
			memcpy(rx->hdr + HBK_ISCSI_BHS_LEN + rx->got, p, n);
			rx->got += n;
			rx->off += n;
			if (rx->got == rx->ahs)
				after_ahs(c);
			break;
		case RX_HDIGEST:
		case RX_DDIGEST:
			n = HBK_MIN(avail, HBK_ISCSI_DIGEST_LEN - rx->got);
			memcpy(rx->digest + rx->got, p, n);
			rx->got += n;
			rx->off += n;
			if (rx->got < HBK_ISCSI_DIGEST_LEN)
				break;
			rx->got = 0;
			if (rx->state == RX_HDIGEST) {
				uint32_t crc = hbk_iscsi_crc32c(0, rx->hdr, HBK_ISCSI_BHS_LEN + rx->ahs);
				if (crc != hbk_iscsi_get_digest(rx->digest)) {
					hbk_iscsi_conn_close(c, false, "header digest error");
					return;
				}
				header_done(c);
			} else if (rx->crc != hbk_iscsi_get_digest(rx->digest)) {
				/* ErrorRecoveryLevel 0 cannot recover the lost data:
				 * say why, then end the connection. */
				hbk_iscsi_send_reject(c, rx_bhs(c), HBK_ISCSI_REJECT_DIGEST);
				hbk_iscsi_conn_close(c, true, "data digest error");
				return;
			} else {
				pdu_done(c);
			}
			break;
		case RX_DATA:
			n = HBK_MIN(avail, rx->dtotal - rx->got);
			rx->off += n;
			data_in(c, p, n, false);
			break;
		}
	}
}

/* Reads what the socket has.  Returns 0, or -1 when the connection ended. */
static int rx_input(struct hbk_iscsi_conn *c)
{
	struct hbk_iscsi_rx *rx = c->rx;
	for (unsigned i = 0; i < RX_BUDGET && !c->closing; i++) {
		if (tx_backlogged(c))
			return 0;       /* the initiator does not read: stop taking input */
		ssize_t n;
		if (rx->state == RX_DATA && rx->dest && rx->got < rx->dlen &&
		    rx->dlen - rx->got >= RX_DIRECT_MIN) {
			/* Large data goes straight into its buffer. */
			n = recv(c->fd, rx->dest + rx->got, rx->dlen - rx->got, MSG_DONTWAIT);
			if (n > 0) {
				rx->progress_ns = hbk_coarse_ns();
				data_in(c, NULL, (uint32_t)n, true);
				continue;
			}
		} else {
			n = recv(c->fd, rx->stage, sizeof(rx->stage), MSG_DONTWAIT);
			if (n > 0) {
				rx->progress_ns = hbk_coarse_ns();
				rx->off = 0;
				rx->len = (uint32_t)n;
				rx_consume(c);
				continue;
			}
		}
		if (n == 0) {
			/* Closing without a logout is how many initiators leave. */
			hbk_log(HBK_LOG_INFO, "iSCSI %s: the initiator closed the connection%s",
				c->peer, c->phase == HBK_ISCSI_PHASE_LOGIN ? " during login" : "");
			unregister(c);
			c->closing = c->fatal = true;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		char why[64];
		snprintf(why, sizeof(why), "receive: %s", strerror(errno));
		hbk_iscsi_conn_close(c, false, why);
		return -1;
	}
	return 0;
}

bool hbk_iscsi_rx_busy(const struct hbk_iscsi_conn *c, const struct hbk_iscsi_task *t)
{
	/* Its data is counted as received only once the PDU ends, after the
	 * data digest: until then the bytes sit where they were read to. */
	return c->rx && c->rx->task && (!t || c->rx->task == t) &&
	       (c->rx->state == RX_DATA || c->rx->state == RX_DDIGEST);
}

/* A PDU (not a pause between PDUs) is under way. */
static bool rx_partial(const struct hbk_iscsi_rx *rx)
{
	return rx->state != RX_BHS || rx->got;
}

/* ---- Events from other threads --------------------------------------------------------------- */

static void events(struct hbk_iscsi_conn *c)
{
	uint64_t v;
	if (read(c->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		hbk_log(HBK_LOG_WARN, "iSCSI %s: eventfd: %s", c->peer, strerror(errno));
	pthread_mutex_lock(&c->ev_lock);
	struct hbk_iscsi_task *t = c->ev_tasks;
	struct hbk_iscsi_tmf *m = c->ev_tmfs;
	c->ev_tasks = c->ev_tasks_tail = NULL;
	c->ev_tmfs = NULL;
	pthread_mutex_unlock(&c->ev_lock);
	while (t) {
		struct hbk_iscsi_task *next = t->ev_next;
		hbk_iscsi_cmd_host_done(c, t);
		t = next;
	}
	while (m) {
		struct hbk_iscsi_tmf *next = m->ev_next;
		hbk_iscsi_tmf_worker_done(c, m);
		m = next;
	}
}

/* ---- The connection's thread ------------------------------------------------------------------ */

static void check_timeouts(struct hbk_iscsi_conn *c)
{
	uint64_t now = hbk_coarse_ns(), stall = HBK_ISCSI_STALL_MS * 1000000ull;
	const char *why;
	if (c->phase == HBK_ISCSI_PHASE_LOGIN && now > c->login_deadline_ns)
		hbk_iscsi_conn_close(c, false, "login timeout");
	else if (rx_partial(c->rx) && now > c->rx->progress_ns + stall)
		hbk_iscsi_conn_close(c, false, "a PDU stalled half-way");
	else if (c->tx_blocked && now > c->tx_stall_ns + stall)
		hbk_iscsi_conn_close(c, false, "the initiator stopped reading");
	else if ((why = hbk_iscsi_cmd_stalled(c, now)))
		hbk_iscsi_conn_close(c, false, why);
	else if (c->close_after_tx && now > c->close_deadline_ns)
		c->fatal = true;
}

/* Ends the session: frees what can go at once, waits for what the
 * controller and the TMF workers still hold. */
static void teardown(struct hbk_iscsi_conn *c)
{
	struct hbk_iscsi *s = c->srv;
	c->closing = c->fatal = true;
	while (c->tx_head) {
		struct hbk_iscsi_tx *tx = c->tx_head;
		c->tx_head = tx->next;
		if (tx->kind == HBK_ISCSI_TX_STREAM)
			tx->task->streaming = false;
		tx_free(tx);
	}
	c->tx_tail = NULL;
	c->tx_count = 0;
	c->tx_bytes = 0;
	while (c->held) {
		struct hbk_iscsi_held *p = c->held;
		c->held = p->next;
		c->nheld--;
		c->stash_bytes -= p->dlen;
		free(p);
	}
	for (struct hbk_iscsi_task *t = c->tasks, *next; t; t = next) {
		next = t->next;
		if (t->state == HBK_ISCSI_TASK_DATA_OUT && t->tmf) {
			/* Its task set function waits for Data-Out that will not
			 * come; ending it may end the function, and that frees
			 * its tasks, so the walk starts again. */
			hbk_iscsi_cmd_drained(c, t);
			next = c->tasks;
		} else if (t->state != HBK_ISCSI_TASK_HOST && !t->tmf) {
			hbk_iscsi_task_drop(c, t);
		}
	}
	/* The I_T nexus is gone: what the controller still holds for it is
	 * aborted, so the session does not wait out the task timeouts. */
	for (struct hbk_iscsi_task *t = c->tasks; t; t = t->next)
		if (t->state == HBK_ISCSI_TASK_HOST && !t->host_done && !t->tmf)
			hbk_sam_tmf(s->ctl, t->cmd.target, t->cmd.lun_id, HBK_TMF_ABORT_TASK, &t->cmd);
	while (c->host_outstanding || c->tmfs) {
		struct pollfd p = { .fd = c->efd, .events = POLLIN };
		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			break;
		events(c);
	}
	/* Nothing else is outstanding now: the last callbacks have let go
	 * of ev_lock, and what is left is this thread's alone. */
	pthread_mutex_lock(&c->ev_lock);
	pthread_mutex_unlock(&c->ev_lock);
	/* The session's end is the loss of its I_T nexus (SAM-5 6.3.4): the
	 * LUNs forget what they kept for it (RESERVE(6), prevention of medium
	 * removal).  A new session of the same nexus waits for this. */
	if (c->nexus_held) {
		int err = hbk_sam_nexus_loss(s->ctl, c->target, c->nexus);
		if (err && err != -ENODEV)
			hbk_log(HBK_LOG_WARN, "iSCSI %s: I_T nexus loss: %s", c->peer, strerror(-err));
	}
	while (c->tasks)
		hbk_iscsi_task_drop(c, c->tasks);
	hbk_iscsi_login_free(c);
	hbk_iscsi_text_fini(&c->text_rsp);
	pthread_mutex_lock(&s->lock);
	c->registered = false;
	c->nexus_held = false;
	close(c->fd);
	c->fd = -1;
	pthread_mutex_unlock(&s->lock);
	free(c->rx->small);
	free(c->rx);
	c->rx = NULL;
}

static void *conn_main(void *arg)
{
	hbk_thread_name("hbk-iscsi-conn");
	struct hbk_iscsi_conn *c = arg;
	struct hbk_iscsi *s = c->srv;
	hbk_log(HBK_LOG_INFO, "iSCSI: connection from %s", c->peer);
	while (!c->fatal) {
		if (atomic_load(&c->kill)) {
			hbk_iscsi_conn_close(c, false, atomic_load(&s->stopping) ? "the target stops" :
					     "its session was reinstated");
			break;
		}
		struct pollfd p[2] = {
			{ .fd = c->efd, .events = POLLIN },
			{ .fd = c->fd, .events = (short)((c->closing || tx_backlogged(c) ? 0 : POLLIN) |
							 (c->tx_blocked ? POLLOUT : 0)) },
		};
		int timeout = c->wait_buf ? 50 : 1000;
		if (poll(p, 2, timeout) < 0 && errno != EINTR) {
			hbk_iscsi_conn_close(c, false, "poll failed");
			break;
		}
		if (p[0].revents)
			events(c);
		if (!c->closing && (p[1].revents & (POLLIN | POLLERR | POLLHUP)))
			rx_input(c);
		if (c->wait_buf || c->nheld)
			hbk_iscsi_cmd_retry_buffers(c);
		if (!c->fatal && tx_flush(c)) {
			hbk_iscsi_conn_close(c, false, "send failed");
			break;
		}
		if (c->close_after_tx && !c->tx_head)
			break;
		check_timeouts(c);
	}
	teardown(c);
	hbk_log(HBK_LOG_INFO, "iSCSI: connection from %s closed", c->peer);
	atomic_store(&c->exited, true);
	uint64_t one = 1;
	if (write(s->efd, &one, sizeof(one)) < 0)
		hbk_log(HBK_LOG_WARN, "iSCSI: eventfd: %s", strerror(errno));
	return NULL;
}

/* ---- Start and reap ------------------------------------------------------------------------------ */

int hbk_iscsi_conn_start(struct hbk_iscsi *s, int fd)
{
	struct hbk_iscsi_conn *c = calloc(1, sizeof(*c));
	struct hbk_iscsi_rx *rx = calloc(1, sizeof(*rx));
	int err = -ENOMEM;
	if (!c || !rx)
		goto free_conn;
	c->srv = s;
	c->fd = fd;
	c->rx = rx;
	for (unsigned i = 0; i < HBK_ARRAY_SIZE(c->aborted_itt); i++)
		c->aborted_itt[i] = HBK_ISCSI_NO_TAG;
	rx->small_cap = HBK_MAX(HBK_ISCSI_LOGIN_DATA_MAX, s->lim.max_recv_dsl);
	rx->small = malloc(rx->small_cap);
	if (!rx->small)
		goto free_conn;
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0) {
		err = -errno;
		goto free_conn;
	}
	pthread_mutex_init(&c->ev_lock, NULL);
	hbk_iscsi_params_default(&c->p, &s->lim);
	c->phase = HBK_ISCSI_PHASE_LOGIN;
	c->login_deadline_ns = hbk_coarse_ns() + (uint64_t)s->login_timeout_ms * 1000000ull;
	c->next_ttt = 1;

	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[64] = "?", serv[8] = "?";
	if (!getpeername(fd, (struct sockaddr *)&ss, &len))
		getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), serv, sizeof(serv),
			    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(c->peer, sizeof(c->peer), ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);

	pthread_mutex_lock(&s->lock);
	c->next = s->conns;
	s->conns = c;
	s->nconns++;
	err = -pthread_create(&c->thread, NULL, conn_main, c);
	if (err) {
		s->conns = c->next;
		s->nconns--;
	}
	pthread_mutex_unlock(&s->lock);
	if (!err)
		return 0;
	pthread_mutex_destroy(&c->ev_lock);
	close(c->efd);
free_conn:
	if (rx)
		free(rx->small);
	free(rx);
	free(c);
	close(fd);
	return err;
}

void hbk_iscsi_conn_reap(struct hbk_iscsi_conn *c)
{
	pthread_join(c->thread, NULL);
	close(c->efd);
	pthread_mutex_destroy(&c->ev_lock);
	free(c);
}
