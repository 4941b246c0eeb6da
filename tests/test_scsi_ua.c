/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the unit attention table's lookup without the lock
 * (src/scsi/ua.c, built into this test with UA_TEST_POINT defined): the
 * table changes under lun->lock exactly between a command's lookup of its
 * I_T nexus and its reading of the nexus' pending conditions, and the
 * command must still report a condition established before it began.
 */
#include "test_scsi_fixture.h"

struct hbk_scsi_lun;
static void (*ua_test_hook)(struct hbk_scsi_lun *lun);

#define UA_TEST_POINT(lun) do {                                         \
		void (*hook_)(struct hbk_scsi_lun *) = ua_test_hook;    \
		ua_test_hook = NULL;                                    \
		if (hook_)                                              \
			hook_(lun);                                     \
	} while (0)
#include "../src/scsi/ua.c"

enum { X = 0x1, Y = 0x2, W = 0x3 };

static struct fixture *hook_fixture;

static void tur_as(struct fixture *f, uint64_t it)
{
	const uint8_t tur[6] = { HBK_SCSI_OP_TEST_UNIT_READY };

	run_as(f, it, 0, tur, 6, NULL, 0, HBK_DIR_NONE);
}

/* Y's nexus is lost, which moves X (the last slot) into Y's, and W's first
 * command takes the slot X left. */
static void move_and_reuse(struct hbk_scsi_lun *lun)
{
	hbk_scsi_nexus_loss(&hook_fixture->t, Y);
	assert_int_equal(hbk_ua_check(lun, W, true), 0);
}

static void lookup_meets_moved_slot(void **state)
{
	struct fixture *f = *state;

	tur_as(f, Y);                                      /* slot 0 */
	assert_good(f);
	tur_as(f, X);                                      /* slot 1, the last */
	assert_good(f);
	pthread_mutex_lock(&f->mem.lock);
	hbk_ua_set_locked(&f->mem, X, HBK_UA_MODE_CHANGED);
	pthread_mutex_unlock(&f->mem.lock);
	hook_fixture = f;
	ua_test_hook = move_and_reuse;
	tur_as(f, X);
	assert_null(ua_test_hook);                         /* the hook ran */
	assert_check(f, HBK_SK_UNIT_ATTENTION, HBK_ASC_MODE_PARAMETERS_CHANGED);
	tur_as(f, X);
	assert_good(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(lookup_meets_moved_slot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
