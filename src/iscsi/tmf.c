/* SPDX-License-Identifier: MIT */
/*
 * Task management (RFC 7143 11.5 and 11.6): ABORT TASK, ABORT TASK SET,
 * CLEAR TASK SET, LUN RESET and TARGET WARM RESET; the others are answered
 * "not supported".  Tasks of the session that have not reached the
 * controller are dropped at once, except that ABORT and CLEAR TASK SET
 * first take in the Data-Out their tasks' R2Ts and unsolicited bursts
 * still owe (RFC 7143 4.2.3.3).  Tasks at the controller are marked and
 * the function runs there through hbk_sam_tmf on a worker thread (it
 * waits, and the connection's thread never does); the TMF Response goes out
 * only once the worker returned and every marked task has ended at the
 * controller.  When the function completed, the marked tasks send nothing
 * (they were aborted); when the controller rejected it, they answer as
 * usual before the TMF Response does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

static void tmf_response(struct hbk_iscsi_conn *c, uint32_t itt, uint8_t response)
{
	struct hbk_iscsi_tx *tx = hbk_iscsi_tx_new(c, HBK_ISCSI_TX_PDU);
	if (!tx)
		return;
	struct hbk_iscsi_tmf_rsp *r = (struct hbk_iscsi_tmf_rsp *)(void *)tx->hdr;
	r->opcode = HBK_ISCSI_OP_TMF_RSP;
	r->flags = HBK_ISCSI_FLAG_FINAL;
	r->response = response;
	put_be32(r->itt, itt);
	hbk_iscsi_fill_sn(c, tx->hdr, true);
	hbk_iscsi_tx_queue(c, tx);
}

/* Runs the function at the controller; on a thread of its own because
 * hbk_sam_tmf waits for the driver. */
static void *worker(void *arg)
{
	hbk_thread_name("hbk-iscsi-tmf");
	struct hbk_iscsi_tmf *m = arg;
	struct hbk_iscsi_conn *c = m->conn;
	int rc;
	if (m->function == HBK_ISCSI_TMF_ABORT_TASK_SET) {
		/* Only this I_T nexus's tasks: one ABORT TASK each (the
		 * controller's ABORT TASK SET would take every initiator's). */
		rc = HBK_SR_FUNCTION_COMPLETE;
		for (unsigned i = 0; i < m->ncmds; i++) {
			int r = hbk_sam_tmf(c->srv->ctl, m->target, m->lun, HBK_TMF_ABORT_TASK, m->cmds[i]);
			if (r != HBK_SR_FUNCTION_COMPLETE)
				rc = r;
		}
	} else {
		rc = hbk_sam_tmf(c->srv->ctl, m->target, m->lun, (enum hbk_tmf)m->op,
				 m->abort ? &m->abort->cmd : NULL);
	}
	pthread_mutex_lock(&c->ev_lock);
	m->host_rc = rc;
	m->ev_next = c->ev_tmfs;
	c->ev_tmfs = m;
	hbk_iscsi_conn_wake(c);
	pthread_mutex_unlock(&c->ev_lock);
	return NULL;
}

static void tmf_unlink(struct hbk_iscsi_conn *c, struct hbk_iscsi_tmf *m)
{
	for (struct hbk_iscsi_tmf **pp = &c->tmfs; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	c->ntmfs--;
	free(m->cmds);
	free(m);
}

/*
 * Answers once the worker returned and, when the function completed, every
 * marked task ended at the controller.  A rejected function aborted
 * nothing: its tasks answer as usual, now or when they end.
 */
static void maybe_finish(struct hbk_iscsi_conn *c, struct hbk_iscsi_tmf *m)
{
	bool complete = m->host_rc == HBK_SR_FUNCTION_COMPLETE;
	if (m->worker || (complete && m->pending))
		return;
	if (m->host_rc < 0)
		hbk_log(HBK_LOG_WARN, "iSCSI %s: task management function %u failed at the "
			"controller: %s", c->peer, m->function, strerror(-m->host_rc));
	for (struct hbk_iscsi_task *t = c->tasks, *next; t; t = next) {
		next = t->next;
		if (t->tmf != m)
			continue;
		t->tmf = NULL;
		if (!t->host_done)
			continue;               /* answers when the controller is done */
		if (complete || c->closing)
			hbk_iscsi_task_free(c, t);   /* aborted: no response */
		else
			hbk_iscsi_cmd_reply(c, t);
	}
	if (!c->closing)
		tmf_response(c, m->itt, complete ? HBK_ISCSI_TMF_COMPLETE : HBK_ISCSI_TMF_REJECTED);
	tmf_unlink(c, m);
}

void hbk_iscsi_tmf_worker_done(struct hbk_iscsi_conn *c, struct hbk_iscsi_tmf *m)
{
	pthread_join(m->thread, NULL);
	m->worker = false;
	maybe_finish(c, m);
}

void hbk_iscsi_tmf_task_done(struct hbk_iscsi_conn *c, struct hbk_iscsi_tmf *m)
{
	m->pending--;
	maybe_finish(c, m);
}

/* Marks a task at the controller for m. */
static void mark(struct hbk_iscsi_tmf *m, struct hbk_iscsi_task *t)
{
	t->tmf = m;
	if (!t->host_done)
		m->pending++;
	if (m->cmds)
		m->cmds[m->ncmds++] = &t->cmd;
}

void hbk_iscsi_tmf_pdu(struct hbk_iscsi_conn *c, const struct hbk_iscsi_bhs *h)
{
	const struct hbk_iscsi_tmf_req *q = (const void *)h;
	unsigned function = q->function & 0x7f;
	uint32_t itt = get_be32(q->itt), ref = get_be32(q->ref_itt);
	uint64_t lun = hbk_scsi_lun_decode(q->lun);
	int op;

	switch (function) {
	case HBK_ISCSI_TMF_ABORT_TASK: op = HBK_TMF_ABORT_TASK; break;
	case HBK_ISCSI_TMF_ABORT_TASK_SET: op = HBK_TMF_ABORT_TASK; break;
	case HBK_ISCSI_TMF_CLEAR_TASK_SET: op = HBK_TMF_CLEAR_TASK_SET; break;
	case HBK_ISCSI_TMF_LUN_RESET: op = HBK_TMF_LUN_RESET; break;
	case HBK_ISCSI_TMF_TARGET_WARM_RESET: op = HBK_TMF_TARGET_RESET; lun = 0; break;
	default:
		tmf_response(c, itt, HBK_ISCSI_TMF_UNSUPPORTED);
		return;
	}
	hbk_log(HBK_LOG_INFO, "iSCSI %s: task management function %u (LUN %lld, task 0x%08x)",
		c->peer, function, lun == UINT64_MAX ? -1ll : (long long)lun, ref);
	if (function != HBK_ISCSI_TMF_ABORT_TASK && function != HBK_ISCSI_TMF_TARGET_WARM_RESET &&
	    (lun == UINT64_MAX || !hbk_iscsi_find_lun(c->srv, c->target, lun))) {
		tmf_response(c, itt, HBK_ISCSI_TMF_NO_LUN);
		return;
	}

	if (function == HBK_ISCSI_TMF_ABORT_TASK) {
		struct hbk_iscsi_task *t = hbk_iscsi_task_find(c, ref);
		if (!t || t->state == HBK_ISCSI_TASK_REPLY) {
			/* RFC 7143 11.5.1: a task not received yet whose CmdSN lies
			 * in the window completes (its CmdSN counts as received and
			 * the command, when it comes, is ignored, its unsolicited
			 * Data-Out with it: cmd.c); one that ended already does not
			 * exist. */
			uint32_t refsn = get_be32(q->ref_cmdsn), sn = get_be32(q->cmdsn);
			if (!t && hbk_iscsi_window_pending(&c->win, refsn) && hbk_iscsi_sn_lt(refsn, sn)) {
				hbk_iscsi_window_take(&c->win, refsn);
				hbk_iscsi_window_credit(&c->win);
				tmf_response(c, itt, HBK_ISCSI_TMF_COMPLETE);
			} else {
				tmf_response(c, itt, HBK_ISCSI_TMF_NO_TASK);
			}
			return;
		}
		if (t->tmf) {
			tmf_response(c, itt, HBK_ISCSI_TMF_REJECTED);   /* already being aborted */
			return;
		}
		if (t->state == HBK_ISCSI_TASK_DATA_OUT) {
			hbk_iscsi_task_drop(c, t);
			tmf_response(c, itt, HBK_ISCSI_TMF_COMPLETE);
			return;
		}
		lun = t->cmd.lun_id;
	}
	if (c->ntmfs >= HBK_ISCSI_MAX_TMFS) {
		tmf_response(c, itt, HBK_ISCSI_TMF_REJECTED);
		return;
	}

	struct hbk_iscsi_tmf *m = calloc(1, sizeof(*m));
	if (m && function == HBK_ISCSI_TMF_ABORT_TASK_SET &&
	    !(m->cmds = calloc(c->ntasks + 1, sizeof(*m->cmds)))) {
		free(m);
		m = NULL;
	}
	if (!m) {
		tmf_response(c, itt, HBK_ISCSI_TMF_REJECTED);
		return;
	}
	m->conn = c;
	m->function = (uint8_t)function;
	m->op = op;
	m->itt = itt;
	m->target = c->target;
	m->lun = lun;
	m->host_rc = HBK_SR_FUNCTION_COMPLETE;

	bool task_set = function == HBK_ISCSI_TMF_ABORT_TASK_SET ||
			function == HBK_ISCSI_TMF_CLEAR_TASK_SET;
	if (function == HBK_ISCSI_TMF_ABORT_TASK) {
		m->abort = hbk_iscsi_task_find(c, ref);
		mark(m, m->abort);
	} else {
		for (struct hbk_iscsi_task *t = c->tasks, *next; t; t = next) {
			next = t->next;
			if (t->tmf || (function != HBK_ISCSI_TMF_TARGET_WARM_RESET && t->cmd.lun_id != lun))
				continue;
			/* A non-immediate function runs in CmdSN order: a task
			 * still held ahead of a gap comes after it. */
			if (t->held && !(h->opcode & HBK_ISCSI_OP_IMMEDIATE))
				continue;
			if (t->state == HBK_ISCSI_TASK_DATA_OUT && task_set && hbk_iscsi_cmd_transferring(t)) {
				/* RFC 7143 4.2.3.3 b: the function waits until the
				 * Data-Out already asked for (an R2T's, the
				 * unsolicited burst) is in; the task then ends
				 * without running (hbk_iscsi_cmd_drained). */
				t->tmf = m;
				m->pending++;
			} else if (t->state == HBK_ISCSI_TASK_DATA_OUT) {
				hbk_iscsi_task_drop(c, t);
			} else if (t->state == HBK_ISCSI_TASK_HOST) {
				mark(m, t);
			}
		}
	}
	m->next = c->tmfs;
	c->tmfs = m;
	c->ntmfs++;
	/* ABORT TASK SET with nothing at the controller is done already. */
	if (function == HBK_ISCSI_TMF_ABORT_TASK_SET && !m->ncmds) {
		maybe_finish(c, m);
		return;
	}
	m->worker = true;
	int err = pthread_create(&m->thread, NULL, worker, m);
	if (err) {
		hbk_log(HBK_LOG_WARN, "iSCSI %s: no thread for task management: %s", c->peer,
			strerror(err));
		m->worker = false;
		m->host_rc = -err;
		maybe_finish(c, m);
	}
}
