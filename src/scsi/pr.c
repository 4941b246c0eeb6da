/* SPDX-License-Identifier: MIT */
/*
 * What a LUN keeps per I_T nexus (SPC-5 5.14, SBC-4 4.21): persistent
 * reservations, with PERSISTENT RESERVE IN/OUT, every reservation type and
 * the access rules the dispatcher enforces through hbk_pr_conflict, and
 * medium removal prevention.  All of it lives in struct hbk_scsi_lun under
 * its lock, in a small table of nexuses.  CLEAR, PREEMPT and the release of
 * a registrants only or all registrants reservation leave unit attentions
 * (ua.c) for the registrants they affect; a reset ends every prevention,
 * the loss of a nexus its own, and neither touches registrations.
 * Registrations do not persist through power loss (no APTPL), every
 * registration covers the one target port (no ALL_TG_PT, no SPEC_I_PT).
 * PREEMPT AND ABORT fences the preempted nexuses: it waits for the writes
 * in progress and every write checks its reservations again once it holds
 * the write lock, so none of theirs reaches the medium after it; their
 * prevention of medium removal ends with their registrations.
 */
#include <pthread.h>
#include <string.h>

#include "scsi/scsi_priv.h"

#define PR_OUT_PARAM_LEN   24u
#define PR_SPEC_I_PT       0x08
#define PR_ALL_TG_PT       0x04
#define PR_APTPL           0x01
#define PR_TRANSPORT_ID_LEN 24u   /* SAS TransportID: the initiator as SAS address */
#define PR_FULL_DESC_LEN   (24u + PR_TRANSPORT_ID_LEN)
#define PR_IN_MAX          (8u + HBK_SCSI_NEXUS_MAX * PR_FULL_DESC_LEN)

static bool type_valid(unsigned t)
{
	return t == HBK_PR_WE || t == HBK_PR_EA || (t >= HBK_PR_WE_RO && t <= HBK_PR_EA_AR);
}

static bool all_registrants(unsigned t)
{
	return t == HBK_PR_WE_AR || t == HBK_PR_EA_AR;
}

static bool registrants_only(unsigned t)
{
	return t == HBK_PR_WE_RO || t == HBK_PR_EA_RO;
}

static bool exclusive_access(unsigned t)
{
	return t == HBK_PR_EA || t == HBK_PR_EA_RO || t == HBK_PR_EA_AR;
}

/* ---- The nexus table (lun->lock held) ---------------------------------------- */

static struct hbk_scsi_nexus *nexus_find(struct hbk_scsi_lun *lun, uint64_t it)
{
	for (uint32_t i = 0; i < lun->nexus_count; i++)
		if (lun->nexus[i].initiator == it)
			return &lun->nexus[i];
	return NULL;
}

/* The entry of `it`, added if need be; NULL when the table is full. */
static struct hbk_scsi_nexus *nexus_get(struct hbk_scsi_lun *lun, uint64_t it)
{
	struct hbk_scsi_nexus *n = nexus_find(lun, it);

	if (n || lun->nexus_count == HBK_SCSI_NEXUS_MAX)
		return n;
	n = &lun->nexus[lun->nexus_count++];
	*n = (struct hbk_scsi_nexus){ .initiator = it };
	return n;
}

/* Frees n once it holds nothing; the last entry moves into its place. */
static void nexus_put(struct hbk_scsi_lun *lun, struct hbk_scsi_nexus *n)
{
	if (!n->key && !n->prevent)
		*n = lun->nexus[--lun->nexus_count];
}

static uint64_t key_of(struct hbk_scsi_lun *lun, uint64_t it)
{
	const struct hbk_scsi_nexus *n = nexus_find(lun, it);

	return n ? n->key : 0;
}

/* The holder: the nexus that reserved, or any registrant of an all
 * registrants reservation. */
static bool holds(struct hbk_scsi_lun *lun, uint64_t it)
{
	if (!lun->pr_type)
		return false;
	return all_registrants(lun->pr_type) ? key_of(lun, it) != 0 : lun->pr_holder == it;
}

static void reserve(struct hbk_scsi_lun *lun, unsigned type, uint64_t it)
{
	lun->pr_type = (uint8_t)type;
	lun->pr_holder = it;
}

static bool any_registrant(const struct hbk_scsi_lun *lun)
{
	for (uint32_t i = 0; i < lun->nexus_count; i++)
		if (lun->nexus[i].key)
			return true;
	return false;
}

/* Drops n's registration, and the reservation with it when n held it (or,
 * for all registrants, was the last registrant).  n may move. */
static void unregister(struct hbk_scsi_lun *lun, struct hbk_scsi_nexus *n)
{
	uint64_t it = n->initiator;

	n->key = 0;
	nexus_put(lun, n);
	if (lun->pr_type && (all_registrants(lun->pr_type) ? !any_registrant(lun)
							   : lun->pr_holder == it))
		reserve(lun, 0, 0);
}

/* Drops every registration with `key` (0: every registration), each of
 * those nexuses but `it` learning of it by a unit attention (REGISTRATIONS
 * PREEMPTED); the one of `it` goes too unless keep_own.  With `abort`
 * (PREEMPT AND ABORT) each also stops preventing medium removal, as if it
 * had sent PREVENT 00b (SPC-5 5.14.11.2.6 h).  Returns how many went. */
static unsigned remove_key(struct hbk_scsi_lun *lun, uint64_t key, uint64_t it, bool keep_own,
			   bool abort)
{
	unsigned removed = 0;

	/* Backwards: an entry that moves comes from behind, already seen. */
	for (uint32_t i = lun->nexus_count; i-- > 0;) {
		struct hbk_scsi_nexus *n = &lun->nexus[i];
		bool own = n->initiator == it;

		if (!n->key || (key && n->key != key) || (own && keep_own))
			continue;
		if (!own)
			hbk_ua_set_locked(lun, n->initiator, HBK_UA_REG_PREEMPTED);
		if (abort)
			n->prevent = false;
		unregister(lun, n);
		removed++;
	}
	return removed;
}

/* Establishes unit attention ua for every registered nexus but `except`. */
static void ua_registrants(struct hbk_scsi_lun *lun, uint64_t except, unsigned ua)
{
	for (uint32_t i = 0; i < lun->nexus_count; i++)
		if (lun->nexus[i].key && lun->nexus[i].initiator != except)
			hbk_ua_set_locked(lun, lun->nexus[i].initiator, ua);
}

/* ---- Access ------------------------------------------------------------------- */

/*
 * SPC-5 tables 66-67 and SBC-4 table 13: the holder, and every registrant
 * of a registrants-only or all-registrants reservation, may do anything;
 * anyone else may only read, and only under a Write Exclusive type.
 */
static bool pr_conflict_locked(struct hbk_scsi_lun *lun, uint64_t initiator, bool write)
{
	unsigned type = lun->pr_type;

	return type && !holds(lun, initiator) &&
	       !(registrants_only(type) && key_of(lun, initiator)) &&
	       (write || exclusive_access(type));
}

bool hbk_pr_conflict(struct hbk_scsi_lun *lun, uint64_t initiator, bool write)
{
	bool conflict;

	pthread_mutex_lock(&lun->lock);
	conflict = pr_conflict_locked(lun, initiator, write);
	pthread_mutex_unlock(&lun->lock);
	return conflict;
}

bool hbk_write_conflict(struct hbk_scsi_lun *lun, uint64_t initiator)
{
	bool conflict;

	/* No reservation of either kind, the common case: no lock.  A write
	 * fenced off by a PREEMPT finds the reserved bit set (a preemption
	 * leaves a reservation in place). */
	if (!(lun_state(lun) & (HBK_LUN_RESERVED6 | HBK_LUN_RESERVED)))
		return false;
	pthread_mutex_lock(&lun->lock);
	conflict = ((lun_state(lun) & HBK_LUN_RESERVED6) && lun->reserve6_holder != initiator) ||
		   pr_conflict_locked(lun, initiator, true);
	pthread_mutex_unlock(&lun->lock);
	return conflict;
}

bool hbk_pr_prevented_locked(const struct hbk_scsi_lun *lun)
{
	for (uint32_t i = 0; i < lun->nexus_count; i++)
		if (lun->nexus[i].prevent)
			return true;
	return false;
}

bool hbk_pr_removal_prevented(struct hbk_scsi_lun *lun)
{
	bool prevented;

	pthread_mutex_lock(&lun->lock);
	prevented = hbk_pr_prevented_locked(lun);
	pthread_mutex_unlock(&lun->lock);
	return prevented;
}

bool hbk_pr_registered_locked(const struct hbk_scsi_lun *lun)
{
	return any_registrant(lun);
}

uint64_t hbk_pr_key_locked(struct hbk_scsi_lun *lun, uint64_t initiator)
{
	return key_of(lun, initiator);
}

bool hbk_pr_holds_locked(struct hbk_scsi_lun *lun, uint64_t initiator)
{
	return holds(lun, initiator);
}

/* A reset ends every nexus' prevention of medium removal (SBC-4 5.16);
 * registrations and the persistent reservation stay. */
void hbk_pr_lun_reset_locked(struct hbk_scsi_lun *lun)
{
	for (uint32_t i = lun->nexus_count; i-- > 0;) {
		lun->nexus[i].prevent = false;
		nexus_put(lun, &lun->nexus[i]);
	}
}

/* The loss of an I_T nexus ends its prevention of medium removal; its
 * registration stays (SPC-5 5.14.6). */
void hbk_pr_nexus_loss_locked(struct hbk_scsi_lun *lun, uint64_t initiator)
{
	struct hbk_scsi_nexus *n = nexus_find(lun, initiator);

	if (n) {
		n->prevent = false;
		nexus_put(lun, n);
	}
}

/* PREVENT 01b keeps the medium in until every nexus that prevented allows. */
uint32_t hbk_pr_prevent_allow(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	bool prevent = c->cdb[4] & 0x01;
	struct hbk_scsi_nexus *n;
	uint32_t cc = 0;

	if (c->cdb[4] & 0x02)           /* PREVENT 10b and 11b are obsolete */
		return invalid_field(c, 4, 1);
	pthread_mutex_lock(&lun->lock);
	n = prevent ? nexus_get(lun, c->initiator) : nexus_find(lun, c->initiator);
	if (n) {
		n->prevent = prevent;
		nexus_put(lun, n);
	} else if (prevent) {
		cc = HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INSUFFICIENT_RESOURCES);
	}
	pthread_mutex_unlock(&lun->lock);
	return cc;
}

/* ---- PERSISTENT RESERVE IN ------------------------------------------------------ */

/* Reply builders: fill d (PR_IN_MAX bytes, zeroed), return the length. */

static size_t read_keys(struct hbk_scsi_lun *lun, uint8_t *d)
{
	size_t n = 8;

	for (uint32_t i = 0; i < lun->nexus_count; i++) {
		if (!lun->nexus[i].key)
			continue;
		put_be64(d + n, lun->nexus[i].key);
		n += 8;
	}
	return n;
}

static size_t read_reservation(struct hbk_scsi_lun *lun, uint8_t *d)
{
	if (!lun->pr_type)
		return 8;
	/* An all registrants reservation has no one key. */
	if (!all_registrants(lun->pr_type))
		put_be64(d + 8, key_of(lun, lun->pr_holder));
	d[21] = lun->pr_type;           /* SCOPE 0h: the logical unit */
	return 24;
}

static size_t report_capabilities(struct hbk_scsi_lun *lun, uint8_t *d)
{
	(void)lun;
	put_be16(d, 8);                 /* LENGTH */
	d[2] = 0x10;                    /* CRH: RESERVE/RELEASE(6) as SPC-4 5.13.3;
					 * RLR_C, SIP_C, ATP_C, PTPL_C 0 */
	d[3] = 0x80 | 0x10;             /* TMV; ALLOW COMMANDS 001b: TUR always passes */
	d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; /* WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX */
	d[5] = 0x01;                    /* EX_AC_AR */
	return 8;
}

static size_t read_full_status(struct hbk_scsi_lun *lun, uint8_t *d)
{
	size_t n = 8;

	for (uint32_t i = 0; i < lun->nexus_count; i++) {
		const struct hbk_scsi_nexus *x = &lun->nexus[i];
		uint8_t *e = d + n;

		if (!x->key)
			continue;
		put_be64(e, x->key);
		if (holds(lun, x->initiator)) {
			e[12] = 0x01;           /* R_HOLDER */
			e[13] = lun->pr_type;   /* SCOPE 0h, TYPE */
		}
		put_be16(e + 18, 1);            /* RELATIVE TARGET PORT IDENTIFIER */
		put_be32(e + 20, PR_TRANSPORT_ID_LEN);
		e[24] = 0x06;                   /* TransportID: FORMAT 00b, SAS */
		put_be64(e + 28, x->initiator); /* SAS ADDRESS */
		n += PR_FULL_DESC_LEN;
	}
	return n;
}

static size_t (*const pr_in_replies[])(struct hbk_scsi_lun *lun, uint8_t *d) = {
	[HBK_PR_READ_KEYS] = read_keys,
	[HBK_PR_READ_RESERVATION] = read_reservation,
	[HBK_PR_REPORT_CAPABILITIES] = report_capabilities,
	[HBK_PR_READ_FULL_STATUS] = read_full_status,
};

uint32_t hbk_pr_in(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	unsigned sa = c->cdb[1] & 0x1f;
	uint8_t d[PR_IN_MAX] = { 0 };
	size_t n;

	if (sa >= sizeof pr_in_replies / sizeof pr_in_replies[0])
		return invalid_field(c, 1, 4);          /* SERVICE ACTION */
	pthread_mutex_lock(&lun->lock);
	n = pr_in_replies[sa](lun, d);
	if (sa != HBK_PR_REPORT_CAPABILITIES) {
		put_be32(d, lun->pr_generation);        /* PRGENERATION */
		put_be32(d + 4, (uint32_t)(n - 8));     /* ADDITIONAL LENGTH */
	}
	pthread_mutex_unlock(&lun->lock);
	data_in_begin(c, get_be16(c->cdb + 7));
	emit(c, d, n);
	return 0;
}

/* ---- PERSISTENT RESERVE OUT (lun->lock held) ------------------------------------- */

/* REGISTER checks the reservation key against the nexus' own (0 when not
 * registered); REGISTER AND IGNORE EXISTING KEY does not.  A service action
 * key of 0 unregisters; when that releases a registrants only reservation
 * the other registrants learn of it (RESERVATIONS RELEASED). */
static uint32_t pr_register(struct hbk_scsi_lun *lun, uint64_t it, uint64_t key,
			    uint64_t sa_key, bool ignore)
{
	struct hbk_scsi_nexus *n = nexus_find(lun, it);

	if (!ignore && key != (n ? n->key : 0))
		return HBK_CC_CONFLICT;
	if (!sa_key) {
		bool releases = registrants_only(lun->pr_type) && lun->pr_holder == it;

		if (n && n->key)
			unregister(lun, n);
		if (releases && !lun->pr_type)
			ua_registrants(lun, it, HBK_UA_RES_RELEASED);
	} else if ((n = nexus_get(lun, it)) != NULL) {
		n->key = sa_key;
	} else {
		return HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INSUFFICIENT_REG_RESOURCES);
	}
	lun->pr_generation++;
	return 0;
}

/* Reserving again what one holds, with the same type, is a no-op. */
static uint32_t pr_reserve(struct hbk_scsi_lun *lun, uint64_t it, unsigned type)
{
	if (!lun->pr_type)
		reserve(lun, type, it);
	else if (!holds(lun, it) || lun->pr_type != type)
		return HBK_CC_CONFLICT;
	return 0;
}

/* Releasing what one does not hold (or what nobody holds) does nothing.
 * Releasing a registrants only or all registrants reservation tells the
 * other registrants (RESERVATIONS RELEASED). */
static uint32_t pr_release(struct hbk_scsi_lun *lun, uint64_t it, unsigned type)
{
	if (!holds(lun, it))
		return 0;
	if (lun->pr_type != type)
		return HBK_CC(HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_RELEASE_OF_PR);
	if (registrants_only(type) || all_registrants(type))
		ua_registrants(lun, it, HBK_UA_RES_RELEASED);
	reserve(lun, 0, 0);
	return 0;
}

/* CLEAR tells every other registrant (RESERVATIONS PREEMPTED). */
static uint32_t pr_clear(struct hbk_scsi_lun *lun, uint64_t it)
{
	ua_registrants(lun, it, HBK_UA_RES_PREEMPTED);
	for (uint32_t i = lun->nexus_count; i-- > 0;) {
		lun->nexus[i].key = 0;
		nexus_put(lun, &lun->nexus[i]);
	}
	reserve(lun, 0, 0);
	lun->pr_generation++;
	return 0;
}

/*
 * PREEMPT: a service action key naming the holder (or 0 under an all
 * registrants reservation) takes the reservation over, with the type given,
 * and removes the registrations it names but the preempting nexus' own;
 * any other key only removes registrations, the preempting nexus' own too
 * when it has that key (SPC-5 5.14.11.2.5; no unit attention for it).
 */
static uint32_t pr_preempt(struct hbk_scsi_lun *lun, uint64_t it, uint64_t sa_key,
			   unsigned type, bool scope_type_ok, bool abort)
{
	unsigned cur = lun->pr_type;
	bool takeover = cur && (all_registrants(cur) ? !sa_key
				: sa_key == key_of(lun, lun->pr_holder));

	if (takeover) {
		/* Only a PREEMPT that reserves looks at SCOPE and TYPE; one
		 * that removes registrations ignores them (SPC-5 5.14.11.2.5). */
		if (!scope_type_ok)
			return HBK_CC_INVALID_FIELD;
		remove_key(lun, sa_key, it, true, abort);
		/* A new type releases the old reservation for every registrant
		 * left (SPC-5 5.14.11.4.3). */
		if (type != cur)
			ua_registrants(lun, it, HBK_UA_RES_RELEASED);
		reserve(lun, type, it);
	} else if (!sa_key) {
		return HBK_CC_INVALID_PARAM;
	} else if (!remove_key(lun, sa_key, it, false, abort)) {
		return HBK_CC_CONFLICT;
	}
	lun->pr_generation++;
	return 0;
}

uint32_t hbk_pr_out(struct cmd_ctx *c)
{
	struct hbk_scsi_lun *lun = c->lun;
	unsigned sa = c->cdb[1] & 0x1f, type = c->cdb[2] & 0x0f;
	bool reg = sa == HBK_PR_REGISTER || sa == HBK_PR_REGISTER_AND_IGNORE;
	/* The bit of CDB byte 2 that starts a wrong field (SCOPE, not
	 * LU_SCOPE; TYPE, not one served), 0 for neither. */
	unsigned bad_field = c->cdb[2] >> 4 ? 7 : !type_valid(type) ? 3 : 0;
	const uint8_t *p = c->buf;
	uint64_t key, sa_key;
	uint32_t cc;

	/* RESERVE and RELEASE need LU_SCOPE and a type; PREEMPT only when it
	 * takes a reservation over (pr_preempt). */
	if ((sa == HBK_PR_RESERVE || sa == HBK_PR_RELEASE) && bad_field)
		return invalid_field(c, 2, bad_field);
	/* SPEC_I_PT makes a longer list right (its TransportIDs follow), so
	 * the bit, which the LUN does not support, is what is refused. */
	if (get_be32(c->cdb + 5) >= PR_OUT_PARAM_LEN && c->out_len >= PR_OUT_PARAM_LEN &&
	    (p[20] & PR_SPEC_I_PT))
		return invalid_param(c, 20, 3);
	if (get_be32(c->cdb + 5) != PR_OUT_PARAM_LEN)
		return HBK_CC_PARAM_LENGTH;
	if (c->out_len < PR_OUT_PARAM_LEN)
		return HBK_CC_INVALID_FIELD;
	key = get_be64(p);
	sa_key = get_be64(p + 8);
	if (reg && (p[20] & PR_ALL_TG_PT))
		return invalid_param(c, 20, 2);
	if (reg && (p[20] & PR_APTPL))
		return invalid_param(c, 20, 0);

	/* PREEMPT AND ABORT ends the preempted nexuses' tasks: with the write
	 * lock held alone, every write that passed its reservation check has
	 * ended, and every later one checks again (hbk_write_lock). */
	bool fence = sa == HBK_PR_PREEMPT_AND_ABORT;
	if (fence)
		hbk_writes_exclude(lun);
	pthread_mutex_lock(&lun->lock);
	if (reg)
		cc = pr_register(lun, c->initiator, key, sa_key, sa == HBK_PR_REGISTER_AND_IGNORE);
	else if (!key || key != key_of(lun, c->initiator))
		cc = HBK_CC_CONFLICT;   /* not registered, or not with this key */
	else if (sa == HBK_PR_RESERVE)
		cc = pr_reserve(lun, c->initiator, type);
	else if (sa == HBK_PR_RELEASE)
		cc = pr_release(lun, c->initiator, type);
	else if (sa == HBK_PR_CLEAR)
		cc = pr_clear(lun, c->initiator);
	else
		cc = pr_preempt(lun, c->initiator, sa_key, type, !bad_field, fence);
	lun_state_set(lun, HBK_LUN_RESERVED, lun->pr_type != 0);
	pthread_mutex_unlock(&lun->lock);
	if (cc == HBK_CC_INVALID_PARAM)         /* PREEMPT's SERVICE ACTION RESERVATION KEY 0 */
		c->sks = sks_field_pointer(false, 8, 7);
	if (cc == HBK_CC_INVALID_FIELD)         /* PREEMPT's SCOPE or TYPE */
		c->sks = sks_field_pointer(true, 2, bad_field);
	if (fence)
		hbk_writes_admit(lun);
	if (!cc)
		c->bytes = PR_OUT_PARAM_LEN;
	return cc;
}
