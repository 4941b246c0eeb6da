/* SPDX-License-Identifier: MIT */
/*
 * Unit attention conditions (SAM-5 5.14, SPC-5 5.14 and 6.39) and the events
 * that establish them: LOGICAL UNIT RESET and TARGET RESET (the task
 * management entry points a driver calls), I_T nexus loss, and the
 * reservation and mode page changes other files report.  Every LUN keeps a
 * small table of the I_T nexuses that have sent it commands, each with a
 * mask of the conditions not reported to it yet; a command looks its nexus
 * up without a lock (the table only changes under lun->lock, and a
 * sequence count tells a lookup that a slot changed hands meanwhile) and
 * takes the lock only when something is pending, the nexus is new or the
 * lookup raced a change.  A condition is
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

/* Where a test may act between a lookup without the lock and its use
 * (tests/test_scsi_ua.c builds this file with its own definition). */
#ifndef UA_TEST_POINT
#define UA_TEST_POINT(lun) ((void)(lun))
#endif

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
	atomic_init(&lun->ua_seq, 0u);
	lun->ua_clock = 0;
	lun->ua_gave_up = false;
	for (unsigned i = 0; i < HBK_SCSI_UA_MAX; i++) {
		atomic_init(&lun->ua[i].initiator, 0);
		atomic_init(&lun->ua[i].pending, 0u);
	}
}

/*
 * The slot of `it`, or NULL.  Without lun->lock the answer may be stale (a
 * slot reused or moved meanwhile): hbk_ua_check then finds ua_seq moved
 * and takes the locked path; under the lock it is exact.  Acquire: pairs
 * with the release stores of slot_fill, so a slot's pending mask is at
 * least as new as the initiator found in it.
 */
static struct hbk_scsi_ua_slot *slot_find(struct hbk_scsi_lun *lun, uint64_t it)
{
	unsigned n = atomic_load_explicit(&lun->ua_count, memory_order_acquire);

	for (unsigned i = 0; i < n; i++)
		if (atomic_load_explicit(&lun->ua[i].initiator, memory_order_acquire) == it)
			return &lun->ua[i];
	return NULL;
}

/*
 * Called (lun->lock held) before and after slots change hands: a slot
 * filled for another nexus, the last slot moved into a freed one.  A
 * lookup without the lock that overlaps the change sees ua_seq differ
 * before and after it.  The slot stores in between are release stores,
 * so a lookup whose acquire loads see any of them sees the first call's
 * store when it loads ua_seq again; the second call's store is a release,
 * paired with the acquire load of ua_seq that starts a lookup.
 */
static void slots_change(struct hbk_scsi_lun *lun)
{
	unsigned seq = atomic_load_explicit(&lun->ua_seq, memory_order_relaxed);

	atomic_store_explicit(&lun->ua_seq, seq + 1, memory_order_release);
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
		/* A lookup that read ua_count before a slot_remove may still
		 * scan this slot: it sees the change. */
		slots_change(lun);
		s = &lun->ua[n];
		slot_fill(s, it, lun->ua_gave_up ? HBK_UA_FORGOTTEN : 0);
		/* Release: the slot is filled before readers may scan it. */
		atomic_store_explicit(&lun->ua_count, n + 1, memory_order_release);
		slots_change(lun);
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
	slots_change(lun);
	slot_fill(s, it, HBK_UA_FORGOTTEN);
	slots_change(lun);
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
	/* Acquire: pairs with the release store of slots_change's second
	 * call, so the slots changed before it are seen as changed. */
	unsigned seq = atomic_load_explicit(&lun->ua_seq, memory_order_acquire);
	struct hbk_scsi_ua_slot *s = seq & 1 ? NULL : slot_find(lun, initiator);
	uint16_t code = 0;

	UA_TEST_POINT(lun);
	/* The slot found holds the nexus' own mask only if no slot changed
	 * hands meanwhile: a slot moved and refilled would otherwise pair
	 * this initiator with another's mask.  The loads of the slot are
	 * acquire, so ua_seq is loaded again after them. */
	if (s && (!report || !atomic_load_explicit(&s->pending, memory_order_acquire)) &&
	    atomic_load_explicit(&lun->ua_seq, memory_order_relaxed) == seq)
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
	slots_change(lun);
	if (s != last)
		slot_fill(s, atomic_load_explicit(&last->initiator, memory_order_relaxed),
			  atomic_load_explicit(&last->pending, memory_order_relaxed));
	atomic_store_explicit(&lun->ua_count, n - 1, memory_order_release);
	slots_change(lun);
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
