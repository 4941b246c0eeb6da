/* SPDX-License-Identifier: MIT */
/*
 * SCSI commands over iSCSI: a SCSI Command PDU becomes a task whose data
 * buffer comes from the controller's shared arena (hbk_ctl_buf_alloc), so
 * immediate data, unsolicited and solicited Data-Out are received straight
 * into the memory the driver reads, and Data-In is sent straight from the
 * memory it wrote.  Writes take what the initiator may send unsolicited
 * (ImmediateData, InitialR2T=No up to FirstBurstLength), then R2Ts of up to
 * MaxBurstLength, one at a time; every Data-Out is checked against its
 * sequence (DataSN, offset, length, TTT, F bit).  The CDB goes unchanged to
 * the LUN through hbk_sam_submit; the front end reads a CDB only to size
 * the buffer and report residuals when the CDB's transfer length and the
 * Expected Data Transfer Length differ (a block write the initiator sends
 * less data for is cut to that data, as iSCSI targets do).  The status goes
 * in the last Data-In when it is GOOD without sense, else in a SCSI
 * Response with the sense data.  When the arena is full a command waits,
 * unsolicited data kept aside, until a buffer frees.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

#define ASC_INVALID_FIELD_IN_IU 0x0e03   /* INVALID FIELD IN COMMAND INFORMATION UNIT */

/* ---- CDB facts the front end needs ---------------------------------------------------- */

bool hbk_iscsi_cdb_blocks(const uint8_t *cdb, uint32_t *blocks, bool *write)
{
	switch (cdb[0]) {
	case 0x08: case 0x0a:                   /* READ(6), WRITE(6): 0 means 256 */
		*blocks = cdb[4] ? cdb[4] : 256;
		*write = cdb[0] == 0x0a;
		return true;
	case 0x28: case 0x2a: case 0x2e:        /* READ(10), WRITE(10), WRITE AND VERIFY(10) */
		*blocks = get_be16(cdb + 7);
		*write = cdb[0] != 0x28;
		return true;
	case 0xa8: case 0xaa: case 0xae:        /* the 12-byte ones */
		*blocks = get_be32(cdb + 6);
		*write = cdb[0] != 0xa8;
		return true;
	case 0x88: case 0x8a: case 0x8e:        /* the 16-byte ones */
		*blocks = get_be32(cdb + 10);
		*write = cdb[0] != 0x88;
		return true;
	default:
		return false;
	}
}

/*
 * The allocation length of the data-in CDBs that carry one (SPC-5 4.2.5.6),
 * and READ CAPACITY(10)'s fixed 8 bytes, so that a reply longer than the
 * initiator expects is seen and reported as overflow.  False for any other
 * CDB.
 */
static bool cdb_alloc_len(const uint8_t *cdb, uint32_t *len)
{
	switch (cdb[0]) {
	case 0x03: case 0x1a:                   /* REQUEST SENSE, MODE SENSE(6) */
		*len = cdb[4];
		return true;
	case 0x12: case 0x1c:                   /* INQUIRY, RECEIVE DIAGNOSTIC RESULTS */
		*len = get_be16(cdb + 3);
		return true;
	case 0x25:                              /* READ CAPACITY(10) */
		*len = 8;
		return true;
	case 0x4d: case 0x5a: case 0x5e:        /* LOG SENSE, MODE SENSE(10), PERSISTENT RESERVE IN */
		*len = get_be16(cdb + 7);
		return true;
	case 0xa0: case 0xa3:                   /* REPORT LUNS, MAINTENANCE IN */
		*len = get_be32(cdb + 6);
		return true;
	case 0x9e:                              /* SERVICE ACTION IN(16) */
		*len = get_be32(cdb + 10);
		return true;
	default:
		return false;
	}
}

/* Cuts a write CDB's transfer length to blocks.  False when it cannot say
 * that number (WRITE(6) has no zero). */
static bool cdb_cut(uint8_t *cdb, uint32_t blocks)
{
	switch (cdb[0]) {
	case 0x0a:
		if (!blocks || blocks > 256)
			return false;
		cdb[4] = (uint8_t)blocks;
		return true;
	case 0x2a: case 0x2e:
		put_be16(cdb + 7, (uint16_t)blocks);
		return true;
	case 0xaa: case 0xae:
		put_be32(cdb + 6, blocks);
		return true;
	case 0x8a: case 0x8e:
		put_be32(cdb + 10, blocks);
		return true;
	default:
		return false;
	}
}

/* The CDB length from the operation code's group (SPC-5 4.2.5.1). */
static uint8_t cdb_length(uint8_t op)
{
	switch (op >> 5) {
	case 0: return 6;
	case 1: case 2: return 10;
	case 5: return 12;
	default: return 16;
	}
}

/* The block size of a LUN of the session's target; 0 when there is no such
 * LUN.  Cached per connection, refilled when the controller's LUNs change. */
static uint32_t lun_block_size(struct hbk_iscsi_conn *c, uint64_t lun)
{
	unsigned gen = hbk_ctl_lun_count(c->srv->ctl);
	if (gen != c->lun_gen) {
		c->lun_gen = gen;
		c->bs_count = 0;
	}
	for (unsigned i = 0; i < c->bs_count; i++)
		if (c->bs_cache[i].lun == lun)
			return c->bs_cache[i].bs;
	struct hbk_lun *l = hbk_iscsi_find_lun(c->srv, c->target, lun);
	struct hbk_lun_info info;
	uint32_t bs = l && !hbk_lun_info(l, &info) ? info.block_size : 0;
	unsigned slot = c->bs_count < HBK_ARRAY_SIZE(c->bs_cache) ? c->bs_count++ :
			(unsigned)(lun % HBK_ARRAY_SIZE(c->bs_cache));
	c->bs_cache[slot].lun = lun;
	c->bs_cache[slot].bs = bs;
	return bs;
}

/* ---- Tasks ------------------------------------------------------------------------------ */

struct hbk_iscsi_task *hbk_iscsi_task_find(struct hbk_iscsi_conn *c, uint32_t itt)
{
	for (struct hbk_iscsi_task *t = c->tasks; t; t = t->next)
		if (t->itt == itt)
			return t;
	return NULL;
}

static void wait_add(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	hbk_log(HBK_LOG_DEBUG, "iSCSI %s: task 0x%08x waits for %llu bytes of arena", c->peer,
		t->itt, (unsigned long long)t->buf_len);
	t->waiting = true;
	if (c->wait_buf++ == 0) {
		atomic_store(&c->want_buf, true);
		atomic_fetch_add(&c->srv->buf_waiters, 1);
	}
}

static void wait_del(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	t->waiting = false;
	if (--c->wait_buf == 0) {
		atomic_store(&c->want_buf, false);
		atomic_fetch_sub(&c->srv->buf_waiters, 1);
	}
}

/*
 * An arena buffer, within this connection's share (HBK_ISCSI_CONN_BUF_MAX),
 * so one initiator that sends no data for its writes cannot hold the arena
 * every other session needs.  When the arena is full and none of it is held
 * by this target (so no free would ever make room), or the command alone is
 * larger than the share, a heap buffer, which the host copies through its
 * bounce memory, within the heap budget of every connection together
 * (HBK_ISCSI_HEAP_MAX), so initiators that announce large commands on many
 * connections cannot make the target take memory without bound.  NULL: wait
 * for a free (another connection's, or this one's when it is over its
 * share).
 */
static uint8_t *buf_get(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t, uint64_t len)
{
	struct hbk_iscsi *s = c->srv;
	uint8_t *p;
	if (c->buf_bytes + len <= HBK_ISCSI_CONN_BUF_MAX) {
		if ((p = hbk_ctl_buf_alloc(s->ctl, len))) {
			atomic_fetch_add(&s->arena_held, len);
			c->buf_bytes += len;
			return p;
		}
		if (atomic_load(&s->arena_held))
			return NULL;
	} else if (c->buf_bytes) {
		return NULL;
	}
	if (atomic_fetch_add(&s->heap_held, len) + len > HBK_ISCSI_HEAP_MAX) {
		atomic_fetch_sub(&s->heap_held, len);
		return NULL;
	}
	p = aligned_alloc(4096, (len + 4095) & ~(uint64_t)4095);
	t->heap = p != NULL;
	if (p)
		c->buf_bytes += len;
	else
		atomic_fetch_sub(&s->heap_held, len);
	return p;
}

static void buf_put(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	c->buf_bytes -= t->buf_len;
	if (t->heap) {
		free(t->buf);
		atomic_fetch_sub(&c->srv->heap_held, t->buf_len);
	} else {
		hbk_ctl_buf_free(c->srv->ctl, t->buf);
		atomic_fetch_sub(&c->srv->arena_held, t->buf_len);
	}
	hbk_iscsi_buf_freed(c->srv);
	t->buf = NULL;
}

/* A non-immediate command's CmdSN opens the window again, once. */
static void credit(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	if (!t->immediate && !t->credited)
		hbk_iscsi_window_credit(&c->win);
	t->credited = true;
}

/* Data-Out still on its way for ITT itt, which names no task (any more),
 * is dropped quietly.  A free entry is taken; only when there is none is
 * an older one forgotten (in turn). */
static void aborted_add(struct hbk_iscsi_conn *c, uint32_t itt)
{
	const unsigned n = HBK_ARRAY_SIZE(c->aborted_itt);
	if (itt == HBK_ISCSI_NO_TAG)
		return;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (c->aborted_pos + k) % n;
		if (c->aborted_itt[i] == HBK_ISCSI_NO_TAG) {
			c->aborted_itt[i] = itt;
			c->aborted_pos = i + 1;
			return;
		}
	}
	c->aborted_itt[c->aborted_pos++ % n] = itt;
}

void hbk_iscsi_task_free(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	if (t->streaming) {
		/* Its next PDU is queued; freeing it would leave that dangling. */
		hbk_log(HBK_LOG_ERR, "iSCSI %s: task 0x%08x freed while sending", c->peer, t->itt);
		return;
	}
	if (t->prev)
		t->prev->next = t->next;
	else
		c->tasks = t->next;
	if (t->next)
		t->next->prev = t->prev;
	c->ntasks--;
	if (t->immediate)
		c->nimmediate--;
	if (t->held)
		c->nheld--;
	credit(c, t);
	if (t->dup_open)
		aborted_add(c, t->itt);  /* the rest of a rejected duplicate's data */
	if (t->waiting)
		wait_del(c, t);
	if (t->buf)
		buf_put(c, t);
	c->stash_bytes -= t->stash_len;
	free(t->stash);
	free(t);
}

void hbk_iscsi_task_drop(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	if (hbk_iscsi_cmd_transferring(t))
		aborted_add(c, t->itt);
	hbk_iscsi_task_free(c, t);
}

/* The result of a command that never reached the controller. */
static void local_check(struct hbk_iscsi_task *t, uint8_t key, uint16_t asc)
{
	struct hbk_scsi_cmd *cmd = &t->cmd;
	memset(&cmd->result, 0, sizeof(cmd->result));
	cmd->result.service = HBK_SR_TASK_COMPLETE;
	cmd->result.status = HBK_STATUS_CHECK_CONDITION;
	cmd->result.sense_key = key;
	cmd->result.asc = (uint8_t)(asc >> 8);
	cmd->result.ascq = (uint8_t)asc;
	cmd->sense_len = (uint8_t)hbk_scsi_sense_fixed(cmd->sense, key, asc);
}

static void fail(struct hbk_iscsi_task *t, uint8_t key, uint16_t asc)
{
	t->fail_key = key;
	t->fail_asc = asc;
}

/* ---- Completion (host threads) ------------------------------------------------------------ */

/* The controller completed the command: hand it to the connection's
 * thread.  Runs on a host thread: no socket I/O, no waiting. */
static void task_done(struct hbk_scsi_cmd *cmd)
{
	struct hbk_iscsi_task *t = cmd->priv;
	struct hbk_iscsi_conn *c = t->conn;
	pthread_mutex_lock(&c->ev_lock);
	t->ev_next = NULL;
	if (c->ev_tasks_tail)
		c->ev_tasks_tail->ev_next = t;
	else
		c->ev_tasks = t;
	c->ev_tasks_tail = t;
	/* Under the lock: once it is released the connection may be gone. */
	hbk_iscsi_conn_wake(c);
	pthread_mutex_unlock(&c->ev_lock);
}

/* ---- Command arrival ------------------------------------------------------------------------- */

/* Decides the buffer and what goes to the controller. */
static void plan(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	uint32_t e = t->edtl, blocks, bs = 0;
	bool cdb_write;
	if (t->read && t->write) {
		fail(t, HBK_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);   /* bidirectional */
		return;
	}
	if (t->cmd.cdb[0] == 0x5f && c->nexus_held) {
		/* PERSISTENT RESERVE OUT: a port that may register stays
		 * known, for READ FULL STATUS. */
		pthread_mutex_lock(&c->srv->lock);
		hbk_iscsi_port_note(c->srv, c);
		pthread_mutex_unlock(&c->srv->lock);
	}
	if (!t->read && !t->write) {
		if (e)
			fail(t, HBK_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
		return;
	}
	if (hbk_iscsi_cdb_blocks(t->cmd.cdb, &blocks, &cdb_write) && cdb_write == t->write &&
	    t->cmd.lun_id != UINT64_MAX && (bs = lun_block_size(c, t->cmd.lun_id))) {
		t->cdb_known = true;
		t->cdb_bytes = (uint64_t)blocks * bs;
	}
	if (t->read) {
		uint64_t need = t->cdb_known ? HBK_MAX(t->cdb_bytes, (uint64_t)e) : e;
		uint32_t alloc;
		if (!t->cdb_known && e <= HBK_ISCSI_MAX_XFER && t->cmd.cdb[0] == 0x5e &&
		    (t->cmd.cdb[1] & 0x1f) == 0x03) {
			/* PERSISTENT RESERVE IN READ FULL STATUS: the whole list,
			 * whose TransportIDs the target rewrites
			 * (hbk_iscsi_pr_full_status), then cut to the
			 * initiator's allocation length. */
			t->pr_full = true;
			t->pr_alloc = get_be16(t->cmd.cdb + 7);
			t->alloc_known = t->pr_alloc > e;
			put_be16(t->cmd.cdb + 7, HBK_ISCSI_PR_FULL_ASK);
			t->buf_len = HBK_MAX((uint64_t)e, HBK_ISCSI_PR_FULL_ROOM);
			t->sub_len = HBK_ISCSI_PR_FULL_ASK;
			t->sub_dir = HBK_DIR_READ;
			return;
		}
		if (!t->cdb_known && e <= HBK_ISCSI_MAX_XFER && cdb_alloc_len(t->cmd.cdb, &alloc) &&
		    alloc > e) {
			/* Room for what the allocation length allows (up to
			 * HBK_ISCSI_PEEK_MAX), to tell overflow. */
			t->alloc_known = true;
			need = HBK_MAX((uint64_t)e, HBK_MIN((uint64_t)alloc, HBK_ISCSI_PEEK_MAX));
		}
		if (need > HBK_ISCSI_MAX_XFER) {
			fail(t, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_CDB);
			return;
		}
		/* Reads of more than the initiator takes run whole; only the
		 * part it takes is sent. */
		t->buf_len = need;
		t->sub_len = t->cdb_known ? t->cdb_bytes : need;
		t->sub_dir = t->sub_len ? HBK_DIR_READ : HBK_DIR_NONE;
		return;
	}
	if (e > HBK_ISCSI_MAX_XFER) {
		fail(t, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	t->buf_len = e;
	t->sub_len = e;
	if (t->cdb_known && t->cdb_bytes > e) {
		/* Less data than the CDB names: the LUN writes what came, when
		 * that is whole blocks. */
		if (e % bs || !cdb_cut(t->cmd.cdb, e / bs)) {
			t->buf_len = 0;
			fail(t, HBK_SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU);
			return;
		}
	} else if (t->cdb_known) {
		t->sub_len = t->cdb_bytes;
	}
	t->sub_dir = t->sub_len ? HBK_DIR_WRITE : HBK_DIR_NONE;
}

/*
 * Walks a command's AHS: returns 1 when it carries an Extended CDB (type 1:
 * CDBs longer than 16 bytes, which the SAM layer does not carry), 0 when it
 * is well formed without one, -1 when a segment's length does not fit the
 * TotalAHSLength (a malformed PDU).
 */
static int ahs_walk(const struct hbk_iscsi_bhs *h)
{
	const uint8_t *p = (const uint8_t *)h + HBK_ISCSI_BHS_LEN;
	uint32_t left = h->ahs_len * 4u;
	int extended = 0;
	while (left) {
		/* AHSLength counts the bytes after the type, padding excluded. */
		uint32_t len = (3u + get_be16(p) + 3u) & ~3u;
		if (left < 4 || len > left)
			return -1;
		if (p[2] == 0x01)
			extended = 1;
		p += len;
		left -= len;
	}
	return extended;
}

static const uint8_t attr_map[8] = {
	HBK_ATTR_SIMPLE,           /* untagged */
	HBK_ATTR_SIMPLE, HBK_ATTR_ORDERED, HBK_ATTR_HEAD_OF_QUEUE, HBK_ATTR_ACA,
	HBK_ATTR_SIMPLE, HBK_ATTR_SIMPLE, HBK_ATTR_SIMPLE,
};

struct hbk_iscsi_task *hbk_iscsi_cmd_begin(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h,
					   uint8_t **dest)
{
	const struct hbk_iscsi_scsi_cmd *q = (const void *)h;
	bool imm = h->opcode & HBK_ISCSI_OP_IMMEDIATE;
	bool rd = q->flags & HBK_ISCSI_CMD_READ, wr = q->flags & HBK_ISCSI_CMD_WRITE;
	bool final = q->flags & HBK_ISCSI_FLAG_FINAL;
	uint32_t cmdsn = get_be32(q->cmdsn), itt = get_be32(q->itt), edtl = get_be32(q->edtl);
	uint32_t dlen = hbk_iscsi_dlen(h);
	*dest = NULL;
	if (hbk_log_enabled(HBK_LOG_DEBUG))
		hbk_log(HBK_LOG_DEBUG, "iSCSI %s: SCSI Command ITT 0x%08x CmdSN %u%s op 0x%02x "
			"EDTL %u%s%s%s immediate data %u", c->peer, itt, cmdsn, imm ? " (I)" : "",
			q->cdb[0], edtl, rd ? " R" : "", wr ? " W" : "", final ? " F" : "", dlen);

	/* A write without F that is ignored or rejected (or that an ABORT
	 * TASK took before it came, RFC 7143 11.5.1: its CmdSN is taken) has
	 * unsolicited Data-Out on its way: that is dropped quietly. */
	bool unsol = wr && !final;
	/* A non-immediate command past ExpCmdSN arrived ahead of a gap: it
	 * waits until the commands before it came (RFC 7143 4.2.2.1). */
	bool ahead = !imm && cmdsn != c->win.exp;
	if (!imm && !hbk_iscsi_window_take(&c->win, cmdsn)) {
		hbk_log(HBK_LOG_INFO, "iSCSI %s: SCSI Command with CmdSN %u outside [%u, %u]: "
			"ignored", c->peer, cmdsn, c->win.exp, c->win.max);
		if (unsol)
			aborted_add(c, itt);
		return NULL;
	}
	if (unsol && c->p.initial_r2t) {
		hbk_iscsi_conn_close(c, false, "unsolicited Data-Out announced with InitialR2T=Yes");
		return NULL;
	}
	int rej = 0;
	if (itt == HBK_ISCSI_NO_TAG)
		rej = HBK_ISCSI_REJECT_INVALID_FIELD;
	else if (hbk_iscsi_task_find(c, itt))
		rej = HBK_ISCSI_REJECT_TASK_IN_PROGRESS;
	else if ((dlen && (!wr || !c->p.immediate_data || dlen > edtl || dlen > c->p.first_burst)) ||
		 (!final && !wr))
		rej = HBK_ISCSI_REJECT_PROTOCOL;
	else if (unsol && dlen >= HBK_MIN(edtl, c->p.first_burst)) {
		/* F = 0 announces unsolicited Data-Out, but the immediate data
		 * is already all the write may send unsolicited: none can
		 * follow, and the task would wait for it until the stall
		 * timeout dropped the connection.  Nor is any to be dropped:
		 * its ITT is not noted among the aborted ones. */
		rej = HBK_ISCSI_REJECT_PROTOCOL;
		unsol = false;
	} else if (h->ahs_len && ahs_walk(h) < 0)
		rej = HBK_ISCSI_REJECT_INVALID_FIELD;
	else if (imm && c->nimmediate >= HBK_ISCSI_MAX_IMMEDIATE)
		rej = HBK_ISCSI_REJECT_IMMEDIATE;
	else if (c->ntasks >= c->srv->depth + HBK_ISCSI_MAX_IMMEDIATE)
		rej = HBK_ISCSI_REJECT_OUT_OF_RESOURCES;
	if (rej) {
		if (!imm)
			hbk_iscsi_window_credit(&c->win);
		if (unsol && rej == HBK_ISCSI_REJECT_TASK_IN_PROGRESS) {
			/* Its Data-Out carries the live task's ITT: told apart
			 * by its own offset and DataSN, and dropped. */
			struct hbk_iscsi_task *live = hbk_iscsi_task_find(c, itt);
			if (live->dup_open) {
				hbk_iscsi_conn_close(c, false, "two commands reuse the ITT of a live task");
				return NULL;
			}
			live->dup_open = true;
			live->dup_off = dlen;
			live->dup_datasn = 0;
			live->dup_end = HBK_MIN(edtl, c->p.first_burst);
		} else if (unsol) {
			aborted_add(c, itt);
		}
		hbk_iscsi_send_reject(c, h, (enum hbk_iscsi_reject)rej);
		return NULL;
	}

	struct hbk_iscsi_task *t = calloc(1, sizeof(*t));
	if (!t) {
		hbk_iscsi_conn_close(c, false, "out of memory");
		return NULL;
	}
	t->conn = c;
	t->itt = itt;
	t->cmdsn = cmdsn;
	t->edtl = edtl;
	t->immediate = imm;
	t->held = ahead;
	c->nheld += ahead;
	t->read = rd;
	t->write = wr;
	t->state = HBK_ISCSI_TASK_DATA_OUT;
	t->ttt = HBK_ISCSI_NO_TAG;
	t->seq = c->task_seq++;
	t->stall_ns = hbk_coarse_ns();
	memcpy(t->lun_raw, q->lun, sizeof(t->lun_raw));
	memcpy(t->cmd.cdb, q->cdb, sizeof(t->cmd.cdb));
	t->cmd.cdb_len = cdb_length(q->cdb[0]);
	t->cmd.attr = attr_map[q->flags & HBK_ISCSI_CMD_ATTR];
	t->cmd.target = c->target;
	t->cmd.lun_id = hbk_scsi_lun_decode(q->lun);
	t->next = c->tasks;
	if (c->tasks)
		c->tasks->prev = t;
	c->tasks = t;
	c->ntasks++;
	if (imm)
		c->nimmediate++;

	if (h->ahs_len && ahs_walk(h) > 0)
		fail(t, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_CDB);
	else
		plan(c, t);
	if (wr) {
		t->unsol_open = !final;
		t->unsol_end = c->p.initial_r2t ? dlen : HBK_MIN(edtl, c->p.first_burst);
	}
	if (!t->fail_key && t->buf_len) {
		/* A held command takes its buffer only once it is released, so
		 * commands waiting on a gap that may never fill hold no buffer
		 * another session needs; until then its data is kept aside. */
		t->buf = ahead ? NULL : buf_get(c, t, t->buf_len);
		if (!t->buf) {
			uint32_t keep = t->unsol_open ? t->unsol_end : dlen;
			if (c->stash_bytes + keep > HBK_ISCSI_STASH_MAX) {
				/* No room to keep its data aside: once that data
				 * is in (and dropped), TASK SET FULL. */
				t->full = true;
			} else {
				if (keep && !(t->stash = malloc(keep))) {
					hbk_iscsi_task_free(c, t);
					hbk_iscsi_conn_close(c, false, "out of memory");
					return NULL;
				}
				t->stash_len = keep;
				c->stash_bytes += keep;
				if (!ahead)
					wait_add(c, t);
			}
		}
	}
	if (dlen)
		*dest = t->buf ? t->buf : t->stash;
	return t;
}

/* ---- Data-Out ---------------------------------------------------------------------------------- */

static uint32_t new_ttt(struct hbk_iscsi_conn *c)
{
	if (++c->next_ttt == HBK_ISCSI_NO_TAG)
		c->next_ttt = 1;
	return c->next_ttt;
}

static void send_r2t(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, HBK_ISCSI_TX_PDU);
	if (!tx)
		return;
	uint32_t off = t->received, len = HBK_MIN(c->p.max_burst, t->edtl - off);
	struct hbk_iscsi_r2t *r = (struct hbk_iscsi_r2t *)(void *)tx->hdr;
	r->opcode = HBK_ISCSI_OP_R2T;
	r->flags = HBK_ISCSI_FLAG_FINAL;
	memcpy(r->lun, t->lun_raw, sizeof(r->lun));
	put_be32(r->itt, t->itt);
	t->ttt = new_ttt(c);
	put_be32(r->ttt, t->ttt);
	hbk_iscsi_fill_sn(c, tx->hdr, false);
	put_be32(r->r2tsn, t->r2tsn++);
	put_be32(r->offset, off);
	put_be32(r->length, len);
	t->r2t_off = off;
	t->r2t_len = len;
	t->r2t_datasn = 0;
	t->stall_ns = hbk_coarse_ns();
	hbk_iscsi_tx_queue(c, tx);
}

static void submit(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	struct hbk_scsi_cmd *cmd = &t->cmd;
	if (cmd->lun_id == UINT64_MAX) {
		local_check(t, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LUN_NOT_SUPPORTED);
		hbk_iscsi_cmd_reply(c, t);
		return;
	}
	cmd->lun = NULL;
	cmd->dir = t->sub_dir;
	cmd->buf = t->sub_len ? t->buf : NULL;
	cmd->len = t->sub_len;
	cmd->timeout_ms = 0;
	cmd->done = task_done;
	cmd->priv = t;
	cmd->initiator = c->nexus;
	t->state = HBK_ISCSI_TASK_HOST;
	c->host_outstanding++;
	int err = hbk_sam_submit(c->srv->ctl, cmd);
	if (!err)
		return;
	c->host_outstanding--;
	if (err == -EINVAL) {
		/* The controller cannot take it (a transfer over its limit). */
		local_check(t, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_CDB);
	} else {
		memset(&cmd->result, 0, sizeof(cmd->result));
		cmd->sense_len = 0;
		cmd->result.service = HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE;
		cmd->result.status = HBK_DS_DEVICE_NOT_PRESENT;
	}
	hbk_iscsi_cmd_reply(c, t);
}

bool hbk_iscsi_cmd_transferring(const struct hbk_iscsi_task *t)
{
	return t->state == HBK_ISCSI_TASK_DATA_OUT && (t->unsol_open || t->ttt != HBK_ISCSI_NO_TAG);
}

void hbk_iscsi_cmd_drained(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	struct hbk_iscsi_tmf *m = t->tmf;
	hbk_iscsi_task_drop(c, t);
	hbk_iscsi_tmf_task_done(c, m);
}

/* Moves a task on once something it waited for arrived. */
static void advance(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	if (t->state != HBK_ISCSI_TASK_DATA_OUT)
		return;
	if (t->tmf) {
		/* Aborted by a task set function that waits for the Data-Out
		 * already asked for: no more R2Ts; once that is in, it ends. */
		if (!hbk_iscsi_cmd_transferring(t))
			hbk_iscsi_cmd_drained(c, t);
		return;
	}
	if (t->unsol_open || t->held)
		return;
	if (t->full) {
		struct hbk_scsi_cmd *cmd = &t->cmd;
		memset(&cmd->result, 0, sizeof(cmd->result));
		cmd->result.service = HBK_SR_TASK_COMPLETE;
		cmd->result.status = HBK_STATUS_TASK_SET_FULL;
		cmd->sense_len = 0;
		hbk_iscsi_cmd_reply(c, t);
		return;
	}
	if (t->fail_key) {
		/* Known to fail before it ran: answered once the unsolicited
		 * data is in, no R2T asks for more. */
		local_check(t, t->fail_key, t->fail_asc);
		hbk_iscsi_cmd_reply(c, t);
		return;
	}
	if (t->waiting)
		return;
	if (t->write && t->received < t->edtl) {
		if (t->ttt == HBK_ISCSI_NO_TAG)
			send_r2t(c, t);
		return;
	}
	submit(c, t);
}

void hbk_iscsi_cmd_ready(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t, uint32_t imm)
{
	t->received = imm;
	t->stall_ns = hbk_coarse_ns();
	advance(c, t);
}

/* Gives a task the buffer it waited for, its data kept aside moved into
 * it.  False when there is none yet. */
static bool buf_take(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	uint8_t *p = buf_get(c, t, t->buf_len);
	if (!p)
		return false;
	t->buf = p;
	if (t->stash) {
		memcpy(p, t->stash, t->received);
		free(t->stash);
		t->stash = NULL;
		c->stash_bytes -= t->stash_len;
		t->stash_len = 0;
	}
	return true;
}

/* Acts on the held request *pp, whose gap filled: its CmdSN opens the
 * window again as it runs, as for any request that came in order. */
static void request_release(struct hbk_iscsi_conn *c, struct hbk_iscsi_held **pp)
{
	struct hbk_iscsi_held *p = *pp;
	*pp = p->next;
	c->nheld--;
	c->stash_bytes -= p->dlen;
	hbk_iscsi_window_credit(&c->win);
	hbk_iscsi_request_run(c, (const struct hbk_iscsi_bhs *)(const void *)p->hdr, p->data,
			      p->dlen);
	free(p);
}

void hbk_iscsi_cmd_release(struct hbk_iscsi_conn *c)
{
	while (c->nheld && !c->closing) {
		/* A PDU whose data is still being read into its task is not
		 * received yet: what comes after it in CmdSN order waits for
		 * its end (pdu_done releases again), and a task management
		 * function must not drop the task it is read into. */
		if (hbk_iscsi_rx_busy(c, NULL))
			return;
		struct hbk_iscsi_task *first = NULL;
		for (struct hbk_iscsi_task *t = c->tasks; t; t = t->next)
			if (t->held && (!first || hbk_iscsi_sn_lt(t->cmdsn, first->cmdsn)))
				first = t;
		/* The held requests share the one CmdSN order with the tasks. */
		struct hbk_iscsi_held **req = NULL;
		for (struct hbk_iscsi_held **pp = &c->held; *pp; pp = &(*pp)->next)
			if (!req || hbk_iscsi_sn_lt((*pp)->cmdsn, (*req)->cmdsn))
				req = pp;
		if (req && (!first || hbk_iscsi_sn_lt((*req)->cmdsn, first->cmdsn))) {
			if (!hbk_iscsi_sn_lt((*req)->cmdsn, c->win.exp))
				return;         /* the gap before it is still open */
			/* A request needs no buffer, and takes the commands
			 * before it as they are, one still waiting for its
			 * buffer too (a task set function drops it): unlike a
			 * command, it does not wait for their buffers. */
			request_release(c, req);
			continue;
		}
		if (!first || !hbk_iscsi_sn_lt(first->cmdsn, c->win.exp))
			return;         /* the gap before it is still open */
		/* Every command before it has its buffer: one still waiting
		 * for it would be overtaken. */
		for (struct hbk_iscsi_task *t = c->tasks; t; t = t->next)
			if (t->waiting && !t->immediate && hbk_iscsi_sn_lt(t->cmdsn, first->cmdsn))
				return;
		first->held = false;
		c->nheld--;
		if (!first->fail_key && !first->full && first->buf_len && !buf_take(c, first))
			wait_add(c, first);
		advance(c, first);
	}
}

static void bad_data_out(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t, const char *what,
			 uint32_t got, uint32_t want)
{
	char why[160];
	snprintf(why, sizeof(why), "Data-Out for task 0x%08x: %s %u, expected %u", t->itt, what,
		 got, want);
	hbk_iscsi_conn_close(c, false, why);
}

uint8_t *hbk_iscsi_data_out_begin(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h,
				  struct hbk_iscsi_task **task)
{
	const struct hbk_iscsi_data *q = (const void *)h;
	uint32_t itt = get_be32(q->itt), ttt = get_be32(q->ttt), datasn = get_be32(q->datasn);
	uint32_t off = get_be32(q->offset), dlen = hbk_iscsi_dlen(h);
	*task = NULL;
	if (hbk_log_enabled(HBK_LOG_DEBUG))
		hbk_log(HBK_LOG_DEBUG, "iSCSI %s: Data-Out ITT 0x%08x TTT 0x%08x DataSN %u offset %u "
			"length %u%s", c->peer, itt, ttt, datasn, off, dlen,
			q->flags & HBK_ISCSI_FLAG_FINAL ? " F" : "");
	struct hbk_iscsi_task *t = hbk_iscsi_task_find(c, itt);
	if (!t) {
		for (unsigned i = 0; i < HBK_ARRAY_SIZE(c->aborted_itt); i++)
			if (c->aborted_itt[i] == itt && itt != HBK_ISCSI_NO_TAG) {
				/* For a task aborted meanwhile.  Its sequence ends
				 * with F: the entry goes, so the list holds only
				 * what is still due. */
				if (q->flags & HBK_ISCSI_FLAG_FINAL)
					c->aborted_itt[i] = HBK_ISCSI_NO_TAG;
				return NULL;
			}
		char why[96];
		snprintf(why, sizeof(why), "Data-Out for unknown task 0x%08x", itt);
		hbk_iscsi_conn_close(c, false, why);
		return NULL;
	}
	if (ttt == HBK_ISCSI_NO_TAG && t->dup_open && off == t->dup_off && datasn == t->dup_datasn &&
	    !(t->state == HBK_ISCSI_TASK_DATA_OUT && t->unsol_open && off == t->received &&
	      datasn == t->unsol_datasn)) {
		/* The unsolicited data of a rejected command that reused this
		 * ITT; when it could be this task's own, it is taken as that. */
		t->dup_off += dlen;
		t->dup_datasn++;
		if ((q->flags & HBK_ISCSI_FLAG_FINAL) || t->dup_off >= t->dup_end)
			t->dup_open = false;
		return NULL;
	}
	if (t->state != HBK_ISCSI_TASK_DATA_OUT || !t->write) {
		bad_data_out(c, t, "for a task that takes no data-out now; state", t->state,
			     HBK_ISCSI_TASK_DATA_OUT);
		return NULL;
	}
	if (off != t->received) {
		bad_data_out(c, t, "buffer offset", off, t->received);
		return NULL;
	}
	if (ttt == HBK_ISCSI_NO_TAG) {
		if (!t->unsol_open) {
			bad_data_out(c, t, "unsolicited data after the last one, offset", off, t->received);
			return NULL;
		}
		if (datasn != t->unsol_datasn) {
			bad_data_out(c, t, "DataSN", datasn, t->unsol_datasn);
			return NULL;
		}
		if ((uint64_t)off + dlen > t->unsol_end) {
			bad_data_out(c, t, "unsolicited data past FirstBurstLength, end", off + dlen,
				     t->unsol_end);
			return NULL;
		}
		t->unsol_datasn++;
	} else {
		if (ttt != t->ttt) {
			bad_data_out(c, t, "Target Transfer Tag", ttt, t->ttt);
			return NULL;
		}
		if (datasn != t->r2t_datasn) {
			bad_data_out(c, t, "DataSN", datasn, t->r2t_datasn);
			return NULL;
		}
		if ((uint64_t)off + dlen > (uint64_t)t->r2t_off + t->r2t_len) {
			bad_data_out(c, t, "data past the R2T, end", off + dlen, t->r2t_off + t->r2t_len);
			return NULL;
		}
		t->r2t_datasn++;
	}
	*task = t;
	if (t->buf)
		return t->buf + off;
	return t->stash ? t->stash + off : NULL;
}

void hbk_iscsi_data_out_end(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t,
			    const struct hbk_iscsi_bhs *h)
{
	const struct hbk_iscsi_data *q = (const void *)h;
	bool final = q->flags & HBK_ISCSI_FLAG_FINAL;
	t->received += hbk_iscsi_dlen(h);
	t->stall_ns = hbk_coarse_ns();
	if (get_be32(q->ttt) == HBK_ISCSI_NO_TAG) {
		if (final || t->received >= t->unsol_end)
			t->unsol_open = false;
	} else {
		bool done = t->received == t->r2t_off + t->r2t_len;
		if (final != done) {
			bad_data_out(c, t, final ? "F bit before the R2T's end, offset" :
				     "no F bit at the R2T's end, offset", t->received,
				     t->r2t_off + t->r2t_len);
			return;
		}
		if (done)
			t->ttt = HBK_ISCSI_NO_TAG;
	}
	advance(c, t);
}

void hbk_iscsi_cmd_retry_buffers(struct hbk_iscsi_conn *c)
{
	while (c->wait_buf && !c->closing) {
		struct hbk_iscsi_task *oldest = NULL;
		for (struct hbk_iscsi_task *t = c->tasks; t; t = t->next)
			if (t->waiting && (!oldest || t->seq < oldest->seq))
				oldest = t;
		/* In arrival order, so a large command is not passed over for
		 * ever by smaller ones. */
		if (!oldest || hbk_iscsi_rx_busy(c, oldest) || !buf_take(c, oldest))
			break;
		wait_del(c, oldest);
		advance(c, oldest);
	}
	/* Commands held behind one that waited may go on now. */
	hbk_iscsi_cmd_release(c);
}

const char *hbk_iscsi_cmd_stalled(const struct hbk_iscsi_conn *c, uint64_t now)
{
	for (const struct hbk_iscsi_task *t = c->tasks; t; t = t->next) {
		if (t->state != HBK_ISCSI_TASK_DATA_OUT || t->waiting ||
		    now <= t->stall_ns + HBK_ISCSI_STALL_MS * 1000000ull)
			continue;
		if (t->unsol_open || t->ttt != HBK_ISCSI_NO_TAG)
			return "data-out stalled";
		/* The commands before it never came. */
		if (t->held && !hbk_iscsi_sn_lt(t->cmdsn, c->win.exp))
			return "a CmdSN gap did not fill";
	}
	for (const struct hbk_iscsi_held *p = c->held; p; p = p->next)
		if (now > p->since_ns + HBK_ISCSI_STALL_MS * 1000000ull &&
		    !hbk_iscsi_sn_lt(p->cmdsn, c->win.exp))
			return "a CmdSN gap did not fill";
	return NULL;
}

/* ---- Data-In and status ---------------------------------------------------------------------- */

void hbk_iscsi_cmd_host_done(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	c->host_outstanding--;
	t->host_done = true;
	if (t->tmf) {
		hbk_iscsi_tmf_task_done(c, t->tmf);
		return;
	}
	if (c->closing) {
		hbk_iscsi_task_free(c, t);
		return;
	}
	struct hbk_scsi_result *r = &t->cmd.result;
	if (t->pr_full && r->service == HBK_SR_TASK_COMPLETE) {
		uint32_t n = (uint32_t)HBK_MIN(r->bytes, t->sub_len);
		if (hbk_scsi_ok(r))
			n = hbk_iscsi_pr_full_status(c->srv, t->buf, n, (uint32_t)t->buf_len);
		r->bytes = HBK_MIN(n, t->pr_alloc);
	}
	hbk_iscsi_cmd_reply(c, t);
}

void hbk_iscsi_cmd_reply(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t)
{
	const struct hbk_scsi_result *r = &t->cmd.result;
	t->state = HBK_ISCSI_TASK_REPLY;
	t->xfer = 0;
	if (t->sub_dir == HBK_DIR_READ && r->service == HBK_SR_TASK_COMPLETE)
		t->xfer = (uint32_t)HBK_MIN(HBK_MIN(r->bytes, (uint64_t)t->edtl), t->buf_len);
	t->sent = t->datasn = t->burst = 0;
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, HBK_ISCSI_TX_STREAM);
	if (!tx) {
		hbk_iscsi_task_free(c, t);
		return;
	}
	tx->task = t;
	t->streaming = true;
	hbk_iscsi_cmd_stream(c, t, tx);
	hbk_iscsi_tx_queue(c, tx);
}

/* O or U and the residual count (RFC 7143 11.4.5): overflow when the CDB
 * asked for more than the initiator expected, underflow when less moved. */
static uint8_t residual(const struct hbk_iscsi_task *t, uint32_t *count)
{
	const struct hbk_scsi_result *r = &t->cmd.result;
	*count = 0;
	if (r->service != HBK_SR_TASK_COMPLETE || (!t->read && !t->write))
		return 0;
	if (t->cdb_known && t->cdb_bytes > t->edtl) {
		*count = (uint32_t)HBK_MIN(t->cdb_bytes - t->edtl, (uint64_t)UINT32_MAX);
		return HBK_ISCSI_RSP_OVERFLOW;
	}
	if (t->alloc_known && r->bytes > t->edtl) {
		/* The LUN returned more than the initiator expected. */
		*count = (uint32_t)HBK_MIN(r->bytes - t->edtl, (uint64_t)UINT32_MAX);
		return HBK_ISCSI_RSP_OVERFLOW;
	}
	uint64_t moved;
	if (t->read)
		moved = t->xfer;
	else if (hbk_scsi_ok(r))
		/* A write that succeeded took the data its CDB names, or all
		 * of it when the front end cannot tell the CDB's length. */
		moved = t->cdb_known ? t->cdb_bytes : t->edtl;
	else
		moved = HBK_MIN(r->bytes, (uint64_t)t->edtl);
	if (moved >= t->edtl)
		return 0;
	*count = t->edtl - (uint32_t)moved;
	return HBK_ISCSI_RSP_UNDERFLOW;
}

void hbk_iscsi_cmd_stream(struct hbk_iscsi_conn *c, struct hbk_iscsi_task *t,
			  struct hbk_iscsi_tx *tx)
{
	const struct hbk_scsi_cmd *cmd = &t->cmd;
	const struct hbk_scsi_result *r = &cmd->result;
	uint32_t count;
	uint8_t res;
	memset(tx->hdr, 0, sizeof(tx->hdr));
	tx->data = NULL;
	tx->dlen = 0;
	tx->last = false;

	/* Status goes with the last Data-In when there is nothing else to say. */
	bool collapse = r->service == HBK_SR_TASK_COMPLETE && !cmd->sense_len &&
			(r->status == HBK_STATUS_GOOD || r->status == HBK_STATUS_CONDITION_MET);
	if (t->sent < t->xfer) {
		struct hbk_iscsi_data *d = (struct hbk_iscsi_data *)(void *)tx->hdr;
		uint32_t n = HBK_MIN(t->xfer - t->sent, c->p.max_send_dsl);
		n = HBK_MIN(n, c->p.max_burst - t->burst);
		d->opcode = HBK_ISCSI_OP_DATA_IN;
		memcpy(d->lun, t->lun_raw, sizeof(d->lun));
		put_be32(d->itt, t->itt);
		put_be32(d->ttt, HBK_ISCSI_NO_TAG);
		put_be32(d->datasn, t->datasn++);
		put_be32(d->offset, t->sent);
		tx->data = t->buf + t->sent;
		tx->dlen = n;
		t->sent += n;
		t->burst += n;
		bool last = t->sent == t->xfer;
		uint8_t flags = 0;
		if (last || t->burst >= c->p.max_burst) {
			flags |= HBK_ISCSI_FLAG_FINAL;      /* ends a Data-In sequence */
			t->burst = 0;
		}
		if (last && collapse) {
			flags |= HBK_ISCSI_DATAIN_STATUS | residual(t, &count);
			d->status = r->status;
			put_be32(d->residual, count);
			credit(c, t);
			hbk_iscsi_fill_sn(c, tx->hdr, true);
			tx->last = true;
		} else {
			put_be32(d->exp_cmdsn, c->win.exp);
			put_be32(d->max_cmdsn, c->win.max);
		}
		d->flags = flags;
		return;
	}

	struct hbk_iscsi_scsi_rsp *p = (struct hbk_iscsi_scsi_rsp *)(void *)tx->hdr;
	bool completed = r->service == HBK_SR_TASK_COMPLETE;
	res = residual(t, &count);
	p->opcode = HBK_ISCSI_OP_SCSI_RSP;
	p->flags = HBK_ISCSI_FLAG_FINAL | res;
	/* A command the controller could not complete: Target Failure. */
	p->response = completed ? 0x00 : 0x01;
	p->status = completed ? r->status : 0;
	put_be32(p->itt, t->itt);
	put_be32(p->exp_datasn, t->datasn + t->r2tsn);
	put_be32(p->residual, count);
	credit(c, t);
	hbk_iscsi_fill_sn(c, tx->hdr, true);
	if (completed && cmd->sense_len) {
		uint8_t *sense = malloc(2u + cmd->sense_len);
		if (sense) {
			put_be16(sense, cmd->sense_len);
			memcpy(sense + 2, cmd->sense, cmd->sense_len);
			tx->own = sense;
			tx->data = sense;
			tx->dlen = 2u + cmd->sense_len;
		}
	}
	tx->last = true;
}
