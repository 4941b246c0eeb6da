/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of persistent reservations in the SCSI emulation: PERSISTENT
 * RESERVE OUT (REGISTER, REGISTER AND IGNORE EXISTING KEY, RESERVE, RELEASE,
 * CLEAR, PREEMPT, PREEMPT AND ABORT), PERSISTENT RESERVE IN (READ KEYS,
 * READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS), and the access
 * matrix every reservation type enforces on other I_T nexuses, command
 * class by command class, and the unit attentions CLEAR and PREEMPT leave
 * for the nexuses they affect.  Initiators A, B and C are 0xA, 0xB and 0xC.
 */
#include "test_scsi_fixture.h"

enum { A = 0xa, B = 0xb, C = 0xc };
#define KA 0x1111aaaa1111aaaaull
#define KB 0x2222bbbb2222bbbbull

static const unsigned all_types[] = {
	HBK_PR_WE, HBK_PR_EA, HBK_PR_WE_RO, HBK_PR_EA_RO, HBK_PR_WE_AR, HBK_PR_EA_AR,
};

static void pr_out_flags(struct fixture *f, uint64_t it, unsigned sa, unsigned type,
			 uint64_t key, uint64_t sa_key, uint8_t flags)
{
	uint8_t cdb[10] = { HBK_SCSI_OP_PR_OUT, (uint8_t)sa, (uint8_t)type }, p[24] = { 0 };

	put_be32(cdb + 5, sizeof p);
	put_be64(p, key);
	put_be64(p + 8, sa_key);
	p[20] = flags;
	run_as(f, it, 0, cdb, 10, p, sizeof p, HBK_DIR_WRITE);
}

static void pr_out(struct fixture *f, uint64_t it, unsigned sa, unsigned type, uint64_t key,
		   uint64_t sa_key)
{
	pr_out_flags(f, it, sa, type, key, sa_key, 0);
}

static void pr_in(struct fixture *f, uint64_t it, unsigned sa, uint16_t alloc)
{
	uint8_t cdb[10] = { HBK_SCSI_OP_PR_IN, (uint8_t)sa };

	put_be16(cdb + 7, alloc);
	memset(f->buf, 0xee, sizeof f->buf);
	run_as(f, it, 0, cdb, 10, f->buf, sizeof f->buf, HBK_DIR_READ);
	assert_good(f);
}

/* The next command of `it` meets the unit attention asc_ascq, which is
 * reported once: the command after it succeeds. */
static void expect_ua(struct fixture *f, uint64_t it, uint16_t asc_ascq)
{
	const uint8_t tur[6] = { HBK_SCSI_OP_TEST_UNIT_READY };

	run_as(f, it, 0, tur, 6, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_UNIT_ATTENTION, asc_ascq);
	run_as(f, it, 0, tur, 6, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
}

static void expect_no_ua(struct fixture *f, uint64_t it)
{
	const uint8_t tur[6] = { HBK_SCSI_OP_TEST_UNIT_READY };

	run_as(f, it, 0, tur, 6, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
}

static void must_register(struct fixture *f, uint64_t it, uint64_t key)
{
	pr_out(f, it, HBK_PR_REGISTER_AND_IGNORE, 0, 0, key);
	assert_good(f);
}

static uint32_t generation(struct fixture *f)
{
	pr_in(f, A, HBK_PR_READ_KEYS, 8);
	return get_be32(f->buf);
}

/* The keys READ KEYS lists, in *keys; returns how many. */
static unsigned read_keys(struct fixture *f, uint64_t *keys)
{
	unsigned n;

	pr_in(f, C, HBK_PR_READ_KEYS, 1024);
	n = get_be32(f->buf + 4) / 8;
	for (unsigned i = 0; i < n; i++)
		keys[i] = get_be64(f->buf + 8 + 8 * i);
	return n;
}

/* The reservation READ RESERVATION shows: its type (0: none) and key. */
static unsigned reservation(struct fixture *f, uint64_t *key)
{
	pr_in(f, C, HBK_PR_READ_RESERVATION, 64);
	if (get_be32(f->buf + 4) == 0)
		return 0;
	assert_int_equal(get_be32(f->buf + 4), 16);
	*key = get_be64(f->buf + 8);
	assert_int_equal(f->buf[21] >> 4, 0);              /* LU_SCOPE */
	return f->buf[21] & 0x0f;
}

/* Whether `it` may run cdb (GOOD, or CHECK CONDITION for reasons other than
 * the reservation) or meets RESERVATION CONFLICT. */
static bool allowed(struct fixture *f, uint64_t it, const uint8_t *cdb, unsigned len,
		    enum hbk_dir dir)
{
	static uint8_t data[4 * MEM_BS];

	run_as(f, it, 0, cdb, len, data, sizeof data, dir);
	if (f->r.status == HBK_STATUS_RESERVATION_CONFLICT) {
		assert_conflict(f);
		return false;
	}
	return true;
}

static bool can_read(struct fixture *f, uint64_t it)
{
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	return allowed(f, it, cdb, 10, HBK_DIR_READ);
}

static bool can_write(struct fixture *f, uint64_t it)
{
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	return allowed(f, it, cdb, 10, HBK_DIR_WRITE);
}

/* ---- REGISTER ---------------------------------------------------------------------- */

static void register_and_read_keys(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4];

	assert_int_equal(generation(f), 0);
	pr_out(f, A, HBK_PR_REGISTER, 0, 0, KA);
	assert_good(f);
	assert_int_equal(f->r.bytes, 24);
	pr_out(f, B, HBK_PR_REGISTER, 0, 0, KB);
	assert_good(f);
	assert_int_equal(read_keys(f, keys), 2);
	assert_true(keys[0] == KA && keys[1] == KB);
	assert_int_equal(generation(f), 2);
	assert_int_equal(f->buf[8], 0xee);                 /* allocation length 8 */
	assert_int_equal(get_be32(f->buf + 4), 16);        /* the full length still */
}

static void register_key_mismatch_conflicts(void **state)
{
	struct fixture *f = *state;

	pr_out(f, A, HBK_PR_REGISTER, 0, KB, KA);          /* not registered: key must be 0 */
	assert_conflict(f);
	must_register(f, A, KA);
	pr_out(f, A, HBK_PR_REGISTER, 0, KB, 5);           /* registered: key must match */
	assert_conflict(f);
	pr_out(f, A, HBK_PR_REGISTER, 0, 0, 5);
	assert_conflict(f);
	assert_int_equal(generation(f), 1);
}

static void register_replaces_and_drops(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4];

	must_register(f, A, KA);
	pr_out(f, A, HBK_PR_REGISTER, 0, KA, KB);          /* new key */
	assert_good(f);
	assert_int_equal(read_keys(f, keys), 1);
	assert_true(keys[0] == KB);
	pr_out(f, A, HBK_PR_REGISTER_AND_IGNORE, 0, 0x999, KA); /* key ignored */
	assert_good(f);
	read_keys(f, keys);
	assert_true(keys[0] == KA);
	pr_out(f, A, HBK_PR_REGISTER, 0, KA, 0);           /* unregister */
	assert_good(f);
	assert_int_equal(read_keys(f, keys), 0);
	pr_out(f, A, HBK_PR_REGISTER, 0, 0, 0);            /* unregistered, key 0: no-op */
	assert_good(f);
	assert_int_equal(generation(f), 5);
	assert_int_equal(f->mem.nexus_count, 0);
}

static void register_table_full(void **state)
{
	struct fixture *f = *state;

	for (uint64_t it = 0; it < HBK_SCSI_NEXUS_MAX; it++)
		must_register(f, 100 + it, 1 + it);
	pr_out(f, 999, HBK_PR_REGISTER, 0, 0, 7);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INSUFFICIENT_REG_RESOURCES);
	pr_out(f, 100, HBK_PR_REGISTER, 0, 1, 77);         /* a registrant may still re-key */
	assert_good(f);
}

static void pr_out_parameter_checks(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10] = { HBK_SCSI_OP_PR_OUT, HBK_PR_REGISTER }, p[24] = { 0 };

	put_be32(cdb + 5, 23);                             /* not 24 */
	run_as(f, A, 0, cdb, 10, p, sizeof p, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_PARAM_LIST_LENGTH_ERROR);
	put_be32(cdb + 5, 24);
	run_as(f, A, 0, cdb, 10, p, 20, HBK_DIR_WRITE);   /* data-out short */
	assert_invalid_field(f);
	pr_out_flags(f, A, HBK_PR_REGISTER, 0, 0, KA, 0x08);   /* SPEC_I_PT */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	pr_out_flags(f, A, HBK_PR_REGISTER, 0, 0, KA, 0x04);   /* ALL_TG_PT */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	pr_out_flags(f, A, HBK_PR_REGISTER, 0, 0, KA, 0x01);   /* APTPL */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	assert_int_equal(generation(f), 0);
	cdb[1] = 7;                                        /* REGISTER AND MOVE */
	run_as(f, A, 0, cdb, 10, p, sizeof p, HBK_DIR_WRITE);
	assert_invalid_field(f);
}

/* REGISTER with SPEC_I_PT as an initiator sends it, its parameter list
 * longer than 24 bytes by the TransportIDs it carries (here one iSCSI
 * TransportID, SPC-5 6.16.3): refused for the bit the LUN does not
 * support, not for the length that bit makes right. */
static void pr_out_spec_i_pt_with_transport_ids(void **state)
{
	struct fixture *f = *state;
	static const char port[] = "iqn.2004-10.com.example:host2,i,0x00023d000001";
	uint8_t cdb[10] = { HBK_SCSI_OP_PR_OUT, HBK_PR_REGISTER }, p[24 + 4 + 52] = { 0 };
	uint8_t *tid = p + 28;

	put_be32(cdb + 5, sizeof p);
	put_be64(p + 8, KA);
	p[20] = 0x08;                                      /* SPEC_I_PT */
	put_be32(p + 24, 52);                              /* TRANSPORTID PARAMETER DATA LENGTH */
	tid[0] = 0x45;                                     /* iSCSI, FORMAT 01b */
	put_be16(tid + 2, 48);
	memcpy(tid + 4, port, sizeof port);
	run_as(f, A, 0, cdb, 10, p, sizeof p, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	assert_int_equal(generation(f), 0);
}

/* ---- RESERVE and RELEASE -------------------------------------------------------------- */

static void reserve_and_read_reservation(void **state)
{
	struct fixture *f = *state;
	uint64_t key = 0;

	must_register(f, A, KA);
	assert_int_equal(reservation(f, &key), 0);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE, KA, 0);
	assert_good(f);
	assert_int_equal(reservation(f, &key), HBK_PR_WE);
	assert_true(key == KA);
	assert_int_equal(generation(f), 1);                /* RESERVE does not count */
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE, KA, 0);    /* again: no-op */
	assert_good(f);
	pr_out(f, A, HBK_PR_REGISTER, 0, KA, KB);          /* re-keying keeps it */
	assert_int_equal(reservation(f, &key), HBK_PR_WE);
	assert_true(key == KB);
}

static void reserve_conflicts(void **state)
{
	struct fixture *f = *state;

	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_EA, 0, 0);     /* not registered */
	assert_conflict(f);
	must_register(f, A, KA);
	must_register(f, B, KB);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_EA, KB, 0);    /* someone else's key */
	assert_conflict(f);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_EA, KA, 0);
	assert_good(f);
	pr_out(f, B, HBK_PR_RESERVE, HBK_PR_EA, KB, 0);    /* held by A */
	assert_conflict(f);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE, KA, 0);    /* another type */
	assert_conflict(f);
}

static void reserve_type_and_scope_checked(void **state)
{
	struct fixture *f = *state;
	const unsigned bad[] = { 0, 2, 4, 9, 15 };

	must_register(f, A, KA);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		pr_out(f, A, HBK_PR_RESERVE, bad[i], KA, 0);
		assert_invalid_field(f);
	}
	pr_out(f, A, HBK_PR_RESERVE, 0x10 | HBK_PR_WE, KA, 0); /* SCOPE 1h */
	assert_invalid_field(f);
	pr_out(f, A, HBK_PR_REGISTER, 0x10 | HBK_PR_WE, KA, KA); /* ignored by REGISTER */
	assert_good(f);
}

/* A PREEMPT that only removes registrations ignores SCOPE and TYPE (SPC-5
 * 5.14.11.2.5); one that takes the reservation over checks them, and then
 * changes nothing. */
static void preempt_checks_type_only_to_reserve(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4], key;
	uint32_t gen;

	must_register(f, A, KA);
	must_register(f, B, KB);
	must_register(f, 0xd, 0x33);
	pr_out(f, A, HBK_PR_PREEMPT, 0, KA, KB);           /* no reservation, TYPE 0h */
	assert_good(f);
	pr_out(f, A, HBK_PR_PREEMPT_AND_ABORT, 0x10 | HBK_PR_WE, KA, 0x33); /* SCOPE 1h */
	assert_good(f);
	assert_int_equal(read_keys(f, keys), 1);
	expect_ua(f, B, HBK_ASC_REGISTRATIONS_PREEMPTED);
	must_register(f, B, KB);
	pr_out(f, B, HBK_PR_RESERVE, HBK_PR_WE, KB, 0);
	pr_out(f, A, HBK_PR_PREEMPT, 9, KA, KB);           /* the holder's key: reserves */
	assert_invalid_field(f);
	assert_field_pointer(f, true, 2, 3);
	pr_out(f, A, HBK_PR_PREEMPT_AND_ABORT, 0x10 | HBK_PR_WE, KA, KB);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 2, 7);
	gen = generation(f);
	assert_int_equal(reservation(f, &key), HBK_PR_WE);
	assert_true(key == KB);
	assert_int_equal(read_keys(f, keys), 2);
	expect_no_ua(f, B);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_EA, KA, KB);
	assert_good(f);
	assert_int_equal(generation(f), gen + 1);
}

static void release_rules(void **state)
{
	struct fixture *f = *state;
	uint64_t key;

	must_register(f, A, KA);
	must_register(f, B, KB);
	pr_out(f, A, HBK_PR_RELEASE, HBK_PR_WE, KA, 0);    /* nothing reserved */
	assert_good(f);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE_RO, KA, 0);
	pr_out(f, B, HBK_PR_RELEASE, HBK_PR_WE_RO, KB, 0); /* not the holder: no effect */
	assert_good(f);
	assert_int_equal(reservation(f, &key), HBK_PR_WE_RO);
	pr_out(f, A, HBK_PR_RELEASE, HBK_PR_WE, KA, 0);    /* wrong type */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_RELEASE_OF_PR);
	pr_out(f, C, HBK_PR_RELEASE, HBK_PR_WE_RO, KA, 0); /* C is not registered */
	assert_conflict(f);
	pr_out(f, A, HBK_PR_RELEASE, HBK_PR_WE_RO, KA, 0);
	assert_good(f);
	assert_int_equal(reservation(f, &key), 0);
	assert_true(can_write(f, C));
	assert_int_equal(f->mem.state & HBK_LUN_RESERVED, 0);
}

static void unregistering_holder_releases(void **state)
{
	struct fixture *f = *state;
	uint64_t key;

	must_register(f, A, KA);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_EA, KA, 0);
	assert_false(can_read(f, C));
	pr_out(f, A, HBK_PR_REGISTER, 0, KA, 0);
	assert_good(f);
	assert_int_equal(reservation(f, &key), 0);
	assert_true(can_read(f, C));
}

static void all_registrants_reservation(void **state)
{
	struct fixture *f = *state;
	uint64_t key = 1;

	must_register(f, A, KA);
	must_register(f, B, KB);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_EA_AR, KA, 0);
	assert_good(f);
	assert_int_equal(reservation(f, &key), HBK_PR_EA_AR);
	assert_true(key == 0);                             /* no one key */
	pr_out(f, A, HBK_PR_REGISTER, 0, KA, 0);           /* A leaves: B still holds it */
	assert_int_equal(reservation(f, &key), HBK_PR_EA_AR);
	assert_true(can_write(f, B));
	assert_false(can_read(f, A));
	pr_out(f, B, HBK_PR_RELEASE, HBK_PR_EA_AR, KB, 0); /* any holder releases */
	assert_good(f);
	assert_int_equal(reservation(f, &key), 0);
	pr_out(f, B, HBK_PR_RESERVE, HBK_PR_WE_AR, KB, 0);
	pr_out(f, B, HBK_PR_REGISTER, 0, KB, 0);           /* the last registrant leaves */
	assert_int_equal(reservation(f, &key), 0);
}

/* ---- CLEAR and PREEMPT ------------------------------------------------------------------ */

static void clear_drops_everything(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4], key;

	must_register(f, A, KA);
	must_register(f, B, KB);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_EA, KA, 0);
	pr_out(f, C, HBK_PR_CLEAR, 0, KA, 0);              /* C is not registered */
	assert_conflict(f);
	pr_out(f, B, HBK_PR_CLEAR, 0, KB, 0);              /* any registrant may */
	assert_good(f);
	expect_ua(f, A, HBK_ASC_RESERVATIONS_PREEMPTED);   /* the other registrant */
	expect_no_ua(f, B);                                /* not the one that cleared */
	expect_no_ua(f, C);                                /* nor one not registered */
	assert_int_equal(read_keys(f, keys), 0);
	assert_int_equal(reservation(f, &key), 0);
	assert_int_equal(generation(f), 3);
	assert_true(can_write(f, C));
}

static void preempt_takes_reservation_over(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4], key;

	must_register(f, A, KA);
	must_register(f, B, KB);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_EA, KA, 0);
	pr_out(f, B, HBK_PR_PREEMPT, HBK_PR_WE, KB, KA);
	assert_good(f);
	expect_ua(f, A, HBK_ASC_REGISTRATIONS_PREEMPTED);
	expect_no_ua(f, B);
	assert_int_equal(reservation(f, &key), HBK_PR_WE);
	assert_true(key == KB);
	assert_int_equal(read_keys(f, keys), 1);           /* A's registration went */
	assert_true(keys[0] == KB);
	assert_true(can_read(f, A));                       /* Write Exclusive now */
	assert_false(can_write(f, A));
	assert_int_equal(generation(f), 3);
}

/* The holder preempting itself into another type releases the old
 * reservation for the registrants it keeps (SPC-5 5.14.11.4.3); the same
 * type tells them nothing. */
static void preempt_changing_type_tells_registrants(void **state)
{
	struct fixture *f = *state;

	must_register(f, A, KA);
	must_register(f, B, KB);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE, KA, 0);
	assert_good(f);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_WE, KA, KA);
	assert_good(f);
	expect_no_ua(f, B);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_EA, KA, KA);
	assert_good(f);
	expect_ua(f, B, HBK_ASC_RESERVATIONS_RELEASED);
	expect_no_ua(f, A);
}

static void preempt_removes_registrations(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4];

	must_register(f, A, KA);
	must_register(f, B, KB);
	must_register(f, C, KA);                           /* two nexuses share KA */
	pr_out(f, B, HBK_PR_PREEMPT, HBK_PR_EA, KB, KA);   /* no reservation */
	assert_good(f);
	expect_ua(f, A, HBK_ASC_REGISTRATIONS_PREEMPTED);
	expect_ua(f, C, HBK_ASC_REGISTRATIONS_PREEMPTED);
	assert_int_equal(read_keys(f, keys), 1);
	assert_true(keys[0] == KB);
	assert_int_equal(generation(f), 4);
	pr_out(f, B, HBK_PR_PREEMPT, HBK_PR_EA, KB, 0x777); /* nobody has it */
	assert_conflict(f);
	pr_out(f, B, HBK_PR_PREEMPT, HBK_PR_EA, KB, 0);    /* key 0, no reservation */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_EA, KA, KB);   /* A is gone */
	assert_conflict(f);
}

/* A key that names no holder removes every registration with it, the
 * preempting nexus' own included (SPC-5 5.14.11.2.5), which learns of it
 * by its GOOD status, not by a unit attention. */
static void preempt_with_own_key_removes_own_registration(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4], key;

	must_register(f, A, KA);
	must_register(f, B, KA);
	must_register(f, C, KB);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_WE, KA, KA);   /* no reservation */
	assert_good(f);
	expect_ua(f, B, HBK_ASC_REGISTRATIONS_PREEMPTED);
	expect_no_ua(f, A);
	assert_int_equal(read_keys(f, keys), 1);
	assert_true(keys[0] == KB);
	pr_out(f, C, HBK_PR_PREEMPT, HBK_PR_WE, KB, KB);   /* the only one with it */
	assert_good(f);
	expect_no_ua(f, C);
	assert_int_equal(read_keys(f, keys), 0);
	/* Under an all registrants reservation: the reservation stays with
	 * the registrants left. */
	must_register(f, A, KA);
	must_register(f, B, KB);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE_AR, KA, 0);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_WE_AR, KA, KA);
	assert_good(f);
	assert_int_equal(read_keys(f, keys), 1);
	assert_true(keys[0] == KB);
	assert_int_equal(reservation(f, &key), HBK_PR_WE_AR);
	assert_false(can_write(f, A));
	assert_true(can_write(f, B));
}

/* PREEMPT AND ABORT ends the preempted nexuses' prevention of medium
 * removal (SPC-5 5.14.11.2.6 h); PREEMPT leaves it. */
static void preempt_and_abort_ends_prevention(void **state)
{
	struct fixture *f = *state;
	const uint8_t prevent[6] = { HBK_SCSI_OP_PREVENT_ALLOW, 0, 0, 0, 1 };

	must_register(f, A, KA);
	must_register(f, B, KB);
	must_register(f, C, 0x33);
	run_as(f, C, 0, prevent, 6, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_WE, KA, 0x33);
	assert_good(f);
	assert_true(hbk_pr_removal_prevented(&f->mem));    /* C, alone, still prevents */
	expect_ua(f, C, HBK_ASC_REGISTRATIONS_PREEMPTED);
	must_register(f, C, 0x33);
	pr_out(f, A, HBK_PR_PREEMPT_AND_ABORT, HBK_PR_WE, KA, 0x33);
	assert_good(f);
	assert_false(hbk_pr_removal_prevented(&f->mem));   /* C no longer does */
	run_as(f, B, 0, prevent, 6, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE, KA, 0);
	pr_out(f, B, HBK_PR_PREEMPT_AND_ABORT, HBK_PR_EA, KB, KA); /* takes it over */
	assert_good(f);
	assert_true(hbk_pr_removal_prevented(&f->mem));    /* B's own stays */
	expect_ua(f, A, HBK_ASC_REGISTRATIONS_PREEMPTED);
	must_register(f, A, KA);
	pr_out(f, A, HBK_PR_PREEMPT_AND_ABORT, HBK_PR_WE, KA, KB);
	assert_good(f);
	assert_false(hbk_pr_removal_prevented(&f->mem));
}

static void preempt_all_registrants_with_zero_key(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4], key;

	must_register(f, A, KA);
	must_register(f, B, KB);
	must_register(f, C, 0x33);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE_AR, KA, 0);
	pr_out(f, B, HBK_PR_PREEMPT_AND_ABORT, HBK_PR_EA, KB, 0);
	assert_good(f);
	expect_ua(f, A, HBK_ASC_REGISTRATIONS_PREEMPTED);
	expect_ua(f, C, HBK_ASC_REGISTRATIONS_PREEMPTED);
	assert_int_equal(reservation(f, &key), HBK_PR_EA);
	assert_true(key == KB);
	assert_int_equal(read_keys(f, keys), 1);
	assert_false(can_read(f, A));
	assert_true(can_write(f, B));
}

static void preempt_under_reservation_of_other_key(void **state)
{
	struct fixture *f = *state;
	uint64_t keys[4], key;

	must_register(f, A, KA);
	must_register(f, B, KB);
	must_register(f, C, 0x33);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE, KA, 0);
	pr_out(f, B, HBK_PR_PREEMPT, HBK_PR_WE, KB, 0x33); /* not the holder's key */
	assert_good(f);
	expect_ua(f, C, HBK_ASC_REGISTRATIONS_PREEMPTED);
	expect_no_ua(f, A);
	assert_int_equal(reservation(f, &key), HBK_PR_WE); /* A still holds it */
	assert_true(key == KA);
	assert_int_equal(read_keys(f, keys), 2);
	pr_out(f, B, HBK_PR_PREEMPT, HBK_PR_WE, KB, 0);    /* key 0 under a WE */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_EA, KA, KA);   /* self: change the type */
	assert_good(f);
	assert_int_equal(reservation(f, &key), HBK_PR_EA);
	assert_int_equal(read_keys(f, keys), 2);           /* A keeps its own */
}

/* ---- PERSISTENT RESERVE IN ---------------------------------------------------------- */

static void report_capabilities(void **state)
{
	struct fixture *f = *state;

	pr_in(f, A, HBK_PR_REPORT_CAPABILITIES, 64);
	assert_int_equal(f->r.bytes, 8);
	assert_int_equal(get_be16(f->buf), 8);
	assert_int_equal(f->buf[2], 0x10);                 /* CRH; no SIP_C, ATP_C, PTPL_C */
	assert_int_equal(f->buf[3] & 0x80, 0x80);          /* TMV */
	assert_int_equal((f->buf[3] >> 4) & 0x07, 1);      /* ALLOW COMMANDS */
	assert_int_equal(get_be16(f->buf + 4), 0xea01);    /* all six types */
}

static void read_full_status(void **state)
{
	struct fixture *f = *state;
	const uint8_t *d;

	must_register(f, A, KA);
	must_register(f, B, KB);
	pr_out(f, B, HBK_PR_RESERVE, HBK_PR_WE_RO, KB, 0);
	pr_in(f, C, HBK_PR_READ_FULL_STATUS, 1024);
	assert_int_equal(get_be32(f->buf + 4), 2 * 48);
	assert_int_equal(f->r.bytes, 8 + 2 * 48);
	d = f->buf + 8;                                    /* A */
	assert_true(get_be64(d) == KA);
	assert_int_equal(d[12], 0);                        /* not the holder */
	assert_int_equal(get_be16(d + 18), 1);
	assert_int_equal(get_be32(d + 20), 24);
	assert_int_equal(d[24], 0x06);                     /* SAS TransportID */
	assert_true(get_be64(d + 28) == A);
	d += 48;                                           /* B */
	assert_true(get_be64(d) == KB);
	assert_int_equal(d[12], 0x01);                     /* R_HOLDER */
	assert_int_equal(d[13], HBK_PR_WE_RO);
	assert_true(get_be64(d + 28) == B);
}

static void pr_in_field_checks(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10] = { HBK_SCSI_OP_PR_IN, 4, 0, 0, 0, 0, 0, 0, 64, 0 };

	run_as(f, A, 0, cdb, 10, f->buf, sizeof f->buf, HBK_DIR_READ);
	assert_invalid_field(f);                           /* no such service action */
	cdb[1] = HBK_PR_READ_KEYS;
	cdb[2] = 0x01;                                     /* reserved */
	run_as(f, A, 0, cdb, 10, f->buf, sizeof f->buf, HBK_DIR_READ);
	assert_invalid_field(f);
}

/* ---- The access matrix ------------------------------------------------------------------ */

/*
 * For each type, with A holding the reservation and B registered, then
 * unregistered: {registered B reads, writes, unregistered B reads, writes},
 * as SPC-5 table 66 (and libiscsi's prout_reserve_access) has it.
 */
static void access_matrix(void **state)
{
	struct fixture *f = *state;
	static const struct { unsigned type; bool reg_r, reg_w, unreg_r, unreg_w; } m[] = {
		{ HBK_PR_EA,    0, 0, 0, 0 }, { HBK_PR_WE,    1, 0, 1, 0 },
		{ HBK_PR_EA_RO, 1, 1, 0, 0 }, { HBK_PR_WE_RO, 1, 1, 1, 0 },
		{ HBK_PR_EA_AR, 1, 1, 0, 0 }, { HBK_PR_WE_AR, 1, 1, 1, 0 },
	};

	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
		must_register(f, A, KA);
		must_register(f, B, KB);
		pr_out(f, A, HBK_PR_RESERVE, m[i].type, KA, 0);
		assert_good(f);
		assert_true(can_read(f, A));
		assert_true(can_write(f, A));
		assert_int_equal(can_read(f, B), m[i].reg_r);
		assert_int_equal(can_write(f, B), m[i].reg_w);
		pr_out(f, B, HBK_PR_REGISTER, 0, KB, 0);
		assert_good(f);
		assert_int_equal(can_read(f, B), m[i].unreg_r);
		assert_int_equal(can_write(f, B), m[i].unreg_w);
		assert_int_equal(can_read(f, C), m[i].unreg_r);   /* never registered */
		assert_int_equal(can_write(f, C), m[i].unreg_w);
		pr_out(f, A, HBK_PR_CLEAR, 0, KA, 0);
		assert_good(f);
		assert_true(can_write(f, C));
	}
}

/* Under every type, a non-registrant may run what only informs; commands
 * that read conflict under Exclusive Access types only; commands that write
 * (or stop, or lock the medium) always conflict. */
static void access_by_command_class(void **state)
{
	struct fixture *f = *state;
	uint8_t inq[6], rc16[16] = { 0x9e, 0x10 }, rsoc[12] = { 0xa3, 0x0c }, prin[10] = { 0x5e };
	uint8_t tur[6] = { 0 }, rs[6] = { 0x03 }, rl[12] = { 0xa0 }, rc10[10] = { 0x25 };
	uint8_t start[6] = { 0x1b, 0, 0, 0, 0x01 }, allow[6] = { 0x1e };
	uint8_t rd16[16], vfy[10], glbas[16] = { 0x9e, 0x12 }, msense[6] = { 0x1a, 0, 0x3f, 0, 255 };
	uint8_t wr16[16], ws[10], unmap[10] = { 0x42 }, sync[10] = { 0x35 }, caw[16] = { 0x89 };
	uint8_t wav[10], mselect[6] = { 0x15, 0x10 }, stop[6] = { 0x1b };
	uint8_t prevent[6] = { 0x1e, 0, 0, 0, 1 };
	const struct { const uint8_t *cdb; unsigned len; enum hbk_dir dir; int cls; } cmds[] = {
		{ tur, 6, HBK_DIR_NONE, 0 }, { rs, 6, HBK_DIR_READ, 0 }, { inq, 6, HBK_DIR_READ, 0 },
		{ rl, 12, HBK_DIR_READ, 0 }, { rc10, 10, HBK_DIR_READ, 0 },
		{ rc16, 16, HBK_DIR_READ, 0 }, { rsoc, 12, HBK_DIR_READ, 0 },
		{ prin, 10, HBK_DIR_READ, 0 }, { start, 6, HBK_DIR_NONE, 0 },
		{ allow, 6, HBK_DIR_NONE, 0 },
		{ rd16, 16, HBK_DIR_READ, 1 }, { vfy, 10, HBK_DIR_NONE, 1 },
		{ glbas, 16, HBK_DIR_READ, 1 }, { msense, 6, HBK_DIR_READ, 1 },
		{ wr16, 16, HBK_DIR_WRITE, 2 }, { ws, 10, HBK_DIR_WRITE, 2 },
		{ unmap, 10, HBK_DIR_WRITE, 2 }, { sync, 10, HBK_DIR_NONE, 2 },
		{ caw, 16, HBK_DIR_WRITE, 2 }, { wav, 10, HBK_DIR_WRITE, 2 },
		{ mselect, 6, HBK_DIR_WRITE, 2 }, { stop, 6, HBK_DIR_NONE, 2 },
		{ prevent, 6, HBK_DIR_NONE, 2 },
	};

	inquiry_cdb(inq, false, 0, 96);
	put_be32(rc16 + 10, 32);
	put_be32(rsoc + 6, 512);
	put_be16(prin + 7, 64);
	put_be32(glbas + 10, 24);
	cdb16(rd16, HBK_SCSI_OP_READ16, 0, 1);
	cdb10(vfy, HBK_SCSI_OP_VERIFY10, 0, 1);
	cdb16(wr16, HBK_SCSI_OP_WRITE16, 0, 1);
	cdb10(ws, HBK_SCSI_OP_WRITE_SAME10, 0, 1);
	cdb10(wav, HBK_SCSI_OP_WRITE_VERIFY10, 0, 1);
	for (size_t t = 0; t < sizeof all_types / sizeof all_types[0]; t++) {
		bool ea = all_types[t] == HBK_PR_EA || all_types[t] == HBK_PR_EA_RO ||
			  all_types[t] == HBK_PR_EA_AR;

		must_register(f, A, KA);
		pr_out(f, A, HBK_PR_RESERVE, all_types[t], KA, 0);
		for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
			bool ok = cmds[i].cls == 0 || (cmds[i].cls == 1 && !ea);

			assert_int_equal(allowed(f, C, cmds[i].cdb, cmds[i].len, cmds[i].dir), ok);
			assert_true(allowed(f, A, cmds[i].cdb, cmds[i].len, cmds[i].dir));
		}
		run_as(f, A, 0, start, 6, NULL, 0, HBK_DIR_NONE);  /* undo A's stop */
		run_as(f, A, 0, allow, 6, NULL, 0, HBK_DIR_NONE);
		pr_out(f, A, HBK_PR_CLEAR, 0, KA, 0);
		assert_good(f);
	}
}

/* hbk_scsi_execute is initiator 0: a reservation held by another keeps it out. */
static void default_initiator_is_zero(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], data[MEM_BS] = { 0 };

	must_register(f, A, KA);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE, KA, 0);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_conflict(f);
	assert_int_equal(f->be.writes, 0);
	must_register(f, 0, KB);                           /* initiator 0 registers... */
	pr_out(f, 0, HBK_PR_PREEMPT, HBK_PR_WE, KB, KA);   /* ...and takes over */
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(register_and_read_keys),
		T(register_key_mismatch_conflicts),
		T(register_replaces_and_drops),
		T(register_table_full),
		T(pr_out_parameter_checks),
		T(pr_out_spec_i_pt_with_transport_ids),
		T(reserve_and_read_reservation),
		T(reserve_conflicts),
		T(reserve_type_and_scope_checked),
		T(preempt_checks_type_only_to_reserve),
		T(release_rules),
		T(unregistering_holder_releases),
		T(all_registrants_reservation),
		T(clear_drops_everything),
		T(preempt_takes_reservation_over),
		T(preempt_changing_type_tells_registrants),
		T(preempt_removes_registrations),
		T(preempt_with_own_key_removes_own_registration),
		T(preempt_and_abort_ends_prevention),
		T(preempt_all_registrants_with_zero_key),
		T(preempt_under_reservation_of_other_key),
		T(report_capabilities),
		T(read_full_status),
		T(pr_in_field_checks),
		T(access_matrix),
		T(access_by_command_class),
		T(default_initiator_is_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
