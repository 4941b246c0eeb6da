/* SPDX-License-Identifier: MIT */
/*
 * RESERVE(6) and RELEASE(6), the SPC-2 reservations of a whole logical unit
 * that SBC-3-era initiators still send.  One I_T nexus at a time holds the
 * LUN; every other nexus gets RESERVATION CONFLICT for every command except
 * INQUIRY, REPORT LUNS, REQUEST SENSE, RELEASE(6) (which then does nothing)
 * and PREVENT ALLOW MEDIUM REMOVAL with PREVENT 00b (SPC-2 5.5.1).  The
 * holder may reserve again.  Persistent reservations take precedence (SPC-5
 * 5.14.3): while any I_T nexus is registered, RESERVE(6) conflicts and
 * RELEASE(6) does nothing.  The reservation ends with RELEASE(6) from the
 * holder, a LOGICAL UNIT RESET, a TARGET RESET or the loss of the holder's
 * I_T nexus (ua.c).  The holder lives in lun->reserve6_holder, valid while
 * the LUN's state has HBK_LUN_RESERVED6, both under lun->lock.
 */
#include <pthread.h>

#include "scsi/scsi_priv.h"

bool hbk_reserve6_conflict(struct hbk_scsi_lun *lun, uint64_t initiator, const uint8_t *cdb)
{
	bool conflict;

	switch (cdb[0]) {
	case HBK_SCSI_OP_INQUIRY:
	case HBK_SCSI_OP_REQUEST_SENSE:
	case HBK_SCSI_OP_REPORT_LUNS:
	case HBK_SCSI_OP_RELEASE6:
		return false;
	case HBK_SCSI_OP_PREVENT_ALLOW:
		if (!(cdb[4] & 0x03))
			return false;
		break;
	default:
		break;
	}
	pthread_mutex_lock(&lun->lock);
	conflict = (lun_state(lun) & HBK_LUN_RESERVED6) && lun->reserve6_holder != initiator;
	pthread_mutex_unlock(&lun->lock);
	return conflict;
}

uint32_t hbk_spc_reserve6(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	uint32_t cc = 0;

	pthread_mutex_lock(&lun->lock);
	if (hbk_pr_registered_locked(lun) ||
	    ((lun_state(lun) & HBK_LUN_RESERVED6) && lun->reserve6_holder != c->initiator)) {
		cc = HBK_CC_CONFLICT;
	} else {
		lun->reserve6_holder = c->initiator;
		lun_state_set(lun, HBK_LUN_RESERVED6, true);
	}
	pthread_mutex_unlock(&lun->lock);
	return cc;
}

uint32_t hbk_spc_release6(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;

	pthread_mutex_lock(&lun->lock);
	if (!hbk_pr_registered_locked(lun) && (lun_state(lun) & HBK_LUN_RESERVED6) &&
	    lun->reserve6_holder == c->initiator) {
		lun_state_set(lun, HBK_LUN_RESERVED6, false);
		lun->reserve6_holder = 0;
	}
	pthread_mutex_unlock(&lun->lock);
	return 0;
}
