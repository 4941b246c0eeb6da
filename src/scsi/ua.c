/* SPDX-License-Identifier: MIT */
/*
 * Unit attention conditions (SAM-5 5.14, SPC-5 5.14 and 6.39) and the events
 * that establish them: LOGICAL UNIT RESET and TARGET RESET (the task
 * management entry points a driver calls), I_T nexus loss, and the
 * reservation and mode page changes other files report.  Every LUN keeps a
 * small table of the I_T nexuses that have sent it commands, each with a
 * mask of the conditions not reported to it yet; a command looks its nexus
 * up without a lock (the table only changes under lun->lock) and takes the
 * lock only when something is pending or the nexus is new.  A condition is
 * reported once, as CHECK CONDITION with UNIT ATTENTION, on the nexus' next
 * command other than INQUIRY, REPORT LUNS and REQUEST SENSE (which returns
 * it as sense data and clears it).  The emulation establishes no power-on
 * condition.  A full table reuses the slot of a nexus with nothing pending
 * (else the one under the clock hand).  The nexus given up may come back, and
 * whatever happened meanwhile (or was pending for it) is lost: so once the
 * table has given one up, every nexus added gets 29h/00h POWER ON, RESET,
 * OR BUS DEVICE RESET OCCURRED, the condition that tells an initiator to
 * find out the LUN's state afresh.  A lost I_T nexus leaves the table with
 * whatever it had pending: a later session under the same identifier is a
 * new nexus, and starts clean.
 */
#include <pthread.h>

#include "scsi/scsi_priv.h"

/* ASC/ASCQ of each HBK_UA_* bit, lowest bit first: that is the order of
 * precedence in which pending conditions are reported (29h first). */
static const uint16_t ua_codes[] = {
	HBK_ASC_POWER_ON_RESET,           /* HBK_UA_FORGOTTEN */
	HBK_ASC_BUS_DEVICE_RESET,         /* HBK_UA_RESET */
	HBK_ASC_MODE_PARAMETERS_CHANGED,  /* HBK_UA_MODE_CHANGED */
	HBK_ASC_RESERVATIONS_PREEMPTED,   /* HBK_UA_RES_PREEMPTED */
	HBK_ASC_RESERVATIONS_RELEASED,    /* HBK_UA_RES_RELEASED */
	HBK_ASC_REGISTRATIONS_PREEMPTED,  /* HBK_UA_REG_PREEMPTED */
};

#define HBK_UA_ALL ((1u << (sizeof ua_codes / sizeof ua_codes[0])) - 1)

void hbk_ua_init(struct hbk_scsi_lun *lun)
{
	atomic_init(&lun->ua_count, 0u);
	lun->ua_clock = 0;
	lun->ua_gave_up = false;
	for (unsigned i = 0; i < HBK_SCSI_UA_MAX; i++) {
		atomic_init(&lun->ua[i].initiator, 0);
		atomic_init(&lun->ua[i].pending, 0u);
	}
}

/*
 * The slot of `it`, or NULL.  Without lun->lock the answer may be stale (a
 * slot reused or moved meanwhile), which costs at most a visit to the
 * locked path; under the lock it is exact.  Acquire: pairs with the release
 * stores of slot_fill, so a slot's pending mask is at least as new as the
 * initiator found in it.
 */
static struct hbk_scsi_ua_slot *slot_find(struct hbk_scsi_lun *lun, uint64_t it)
{
	unsigned n = atomic_load_explicit(&lun->ua_count, memory_order_acquire);

	for (unsigned i = 0; i < n; i++)
		if (atomic_load_explicit(&lun->ua[i].initiator, memory_order_acquire) == it)
			return &lun->ua[i];
	return NULL;
}

static void slot_fill(struct hbk_scsi_ua_slot *s, uint64_t it, unsigned pending)
{
	atomic_store_explicit(&s->pending, pending, memory_order_release);
	atomic_store_explicit(&s->initiator, it, memory_order_release);
}

/* Adds `it` with nothing pending (lun->lock held, `it` not in the table).
 * A full table gives up the first slot from the clock hand on that has
 * nothing pending, or failing that the one under the hand. */
static struct hbk_scsi_ua_slot *slot_add(struct hbk_scsi_lun *lun, uint64_t it)
{
	unsigned n = atomic_load_explicit(&lun->ua_count, memory_order_relaxed);
	struct hbk_scsi_ua_slot *s;

	if (n < HBK_SCSI_UA_MAX) {
		s = &lun->ua[n];
		slot_fill(s, it, lun->ua_gave_up ? HBK_UA_FORGOTTEN : 0);
		/* Release: the slot is filled before readers may scan it. */
		atomic_store_explicit(&lun->ua_count, n + 1, memory_order_release);
		return s;
	}
	unsigned victim = lun->ua_clock;

	for (unsigned k = 0; k < HBK_SCSI_UA_MAX; k++) {
		unsigned i = (lun->ua_clock + k) % HBK_SCSI_UA_MAX;

		if (!atomic_load_explicit(&lun->ua[i].pending, memory_order_relaxed)) {
			victim = i;
			break;
		}
	}
	lun->ua_clock = (victim + 1) % HBK_SCSI_UA_MAX;
	lun->ua_gave_up = true;
	s = &lun->ua[victim];
	slot_fill(s, it, HBK_UA_FORGOTTEN);
	return s;
}

/* Takes the highest-precedence condition pending on s (lun->lock held):
 * its ASC/ASCQ, or 0 when none is. */
static uint16_t slot_take(struct hbk_scsi_ua_slot *s)
{
	unsigned pending = atomic_load_explicit(&s->pending, memory_order_relaxed);
	unsigned bit;

	if (!pending)
		return 0;
	bit = (unsigned)__builtin_ctz(pending);
	atomic_store_explicit(&s->pending, pending & ~(1u << bit), memory_order_release);
	return ua_codes[bit];
}

uint32_t hbk_ua_check(struct hbk_scsi_lun *lun, uint64_t initiator, bool report)
{
	struct hbk_scsi_ua_slot *s = slot_find(lun, initiator);
	uint16_t code = 0;

	if (s && (!report || !atomic_load_explicit(&s->pending, memory_order_acquire)))
		return 0;       /* known, nothing to report: the common case */
	pthread_mutex_lock(&lun->lock);
	s = slot_find(lun, initiator);
	if (!s)
		s = slot_add(lun, initiator);   /* new: pending only when forgotten */
	if (report)
		code = slot_take(s);
	pthread_mutex_unlock(&lun->lock);
	return code ? HBK_CC(HBK_SK_UNIT_ATTENTION, code) : 0;
}

uint16_t hbk_ua_take(struct hbk_scsi_lun *lun, uint64_t initiator)
{
	struct hbk_scsi_ua_slot *s;
	uint16_t code = 0;

	pthread_mutex_lock(&lun->lock);
	s = slot_find(lun, initiator);
	if (s)
		code = slot_take(s);
	pthread_mutex_unlock(&lun->lock);
	return code;
}

void hbk_ua_set_locked(struct hbk_scsi_lun *lun, uint64_t initiator, unsigned ua)
{
	struct hbk_scsi_ua_slot *s = slot_find(lun, initiator);

	if (!s)
		s = slot_add(lun, initiator);
	atomic_store_explicit(&s->pending,
			      atomic_load_explicit(&s->pending, memory_order_relaxed) | ua,
			      memory_order_release);
}

void hbk_ua_set_others_locked(struct hbk_scsi_lun *lun, uint64_t except, unsigned ua)
{
	unsigned n = atomic_load_explicit(&lun->ua_count, memory_order_relaxed);

	for (unsigned i = 0; i < n; i++) {
		struct hbk_scsi_ua_slot *s = &lun->ua[i];

		if (atomic_load_explicit(&s->initiator, memory_order_relaxed) == except)
			continue;
		atomic_store_explicit(&s->pending,
				      atomic_load_explicit(&s->pending, memory_order_relaxed) | ua,
				      memory_order_release);
	}
}

/* ---- Resets and nexus loss (SAM-5 6.3) ------------------------------------------ */

void hbk_scsi_lun_reset(struct hbk_scsi_lun *lun)
{
	unsigned n;

	if (!lun)
		return;
	pthread_mutex_lock(&lun->lock);
	/* Every nexus that used the LUN learns of the reset; whatever it had
	 * pending before is superseded by it. */
	n = atomic_load_explicit(&lun->ua_count, memory_order_relaxed);
	for (unsigned i = 0; i < n; i++)
		atomic_store_explicit(&lun->ua[i].pending, HBK_UA_RESET, memory_order_release);
	/* RESERVE(6) reservations and medium removal prevention end; persistent
	 * reservations stay.  Mode parameters return to their defaults (there
	 * are no saved values). */
	lun_state_set(lun, HBK_LUN_RESERVED6, false);
	lun->reserve6_holder = 0;
	hbk_pr_lun_reset_locked(lun);
	lun_state_set(lun, HBK_LUN_WCE, lun->cfg.write_cache);
	pthread_mutex_unlock(&lun->lock);
}

void hbk_scsi_target_reset(struct hbk_scsi_target *t)
{
	for (uint32_t i = 0; t && t->luns && i < t->lun_count; i++)
		hbk_scsi_lun_reset(t->luns[i]);
}

/* Drops the slot of `it` (lun->lock held): the last slot moves into it. */
static void slot_remove(struct hbk_scsi_lun *lun, uint64_t it)
{
	unsigned n = atomic_load_explicit(&lun->ua_count, memory_order_relaxed);
	struct hbk_scsi_ua_slot *s = slot_find(lun, it), *last;

	if (!s)
		return;
	last = &lun->ua[n - 1];
	if (s != last)
		slot_fill(s, atomic_load_explicit(&last->initiator, memory_order_relaxed),
			  atomic_load_explicit(&last->pending, memory_order_relaxed));
	atomic_store_explicit(&lun->ua_count, n - 1, memory_order_release);
	if (lun->ua_clock >= n - 1)
		lun->ua_clock = 0;
}

void hbk_scsi_nexus_loss(struct hbk_scsi_target *t, uint64_t initiator)
{
	for (uint32_t i = 0; t && t->luns && i < t->lun_count; i++) {
		struct hbk_scsi_lun *lun = t->luns[i];

		if (!lun)
			continue;
		pthread_mutex_lock(&lun->lock);
		if ((lun_state(lun) & HBK_LUN_RESERVED6) && lun->reserve6_holder == initiator) {
			lun_state_set(lun, HBK_LUN_RESERVED6, false);
			lun->reserve6_holder = 0;
		}
		hbk_pr_nexus_loss_locked(lun, initiator);
		slot_remove(lun, initiator);
		pthread_mutex_unlock(&lun->lock);
	}
}

_Static_assert(HBK_UA_ALL == (HBK_UA_FORGOTTEN | HBK_UA_RESET | HBK_UA_MODE_CHANGED |
			      HBK_UA_RES_PREEMPTED | HBK_UA_RES_RELEASED | HBK_UA_REG_PREEMPTED),
	       "every HBK_UA_* bit has its code in ua_codes");
