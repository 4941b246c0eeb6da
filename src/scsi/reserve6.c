/* SPDX-License-Identifier: MIT */
/*
 * RESERVE(6) and RELEASE(6), the SPC-2 reservations of a whole logical unit
 * that SBC-3-era initiators still send.  One I_T nexus at a time holds the
 * LUN; every other nexus gets RESERVATION CONFLICT for every command except
 * INQUIRY, REPORT LUNS, REQUEST SENSE, RELEASE(6) (which then does nothing)
 * and PREVENT ALLOW MEDIUM REMOVAL with PREVENT 00b (SPC-2 5.5.1).  The
 * holder may reserve again.  The two kinds exclude each other.  While the
 * LUN is reserved so, every PERSISTENT RESERVE IN and OUT conflicts, the
 * holder's too (SPC-4 5.13.1), so no key can be registered under it.
 * While any I_T nexus is registered, RESERVE(6) and RELEASE(6) conflict,
 * with the exceptions of SPC-4 5.13.3 (REPORT CAPABILITIES says CRH 1):
 * RESERVE(6) from the persistent reservation's holder and RELEASE(6) from a
 * registered nexus complete GOOD and change nothing.  The reservation ends
 * with RELEASE(6) from the
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
	bool pr = cdb[0] == HBK_SCSI_OP_PR_IN || cdb[0] == HBK_SCSI_OP_PR_OUT;
	pthread_mutex_lock(&lun->lock);
	conflict = (lun_state(lun) & HBK_LUN_RESERVED6) &&
		   (pr || lun->reserve6_holder != initiator);
	pthread_mutex_unlock(&lun->lock);
	return conflict;
}

uint32_t hbk_spc_reserve6(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	uint32_t cc = 0;

	pthread_mutex_lock(&lun->lock);
	if (hbk_pr_registered_locked(lun)) {
		/* SPC-4 5.13.3 a): the holder's completes and changes nothing. */
		cc = hbk_pr_holds_locked(lun, c->initiator) ? 0 : HBK_CC_CONFLICT;
	} else if ((lun_state(lun) & HBK_LUN_RESERVED6) && lun->reserve6_holder != c->initiator) {
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
	uint32_t cc = 0;

	pthread_mutex_lock(&lun->lock);
	if (hbk_pr_registered_locked(lun)) {
		/* SPC-4 5.13.3 b): a registrant's completes and changes nothing. */
		cc = hbk_pr_key_locked(lun, c->initiator) ? 0 : HBK_CC_CONFLICT;
	} else if ((lun_state(lun) & HBK_LUN_RESERVED6) && lun->reserve6_holder == c->initiator) {
		lun_state_set(lun, HBK_LUN_RESERVED6, false);
		lun->reserve6_holder = 0;
	}
	pthread_mutex_unlock(&lun->lock);
	return cc;
}
