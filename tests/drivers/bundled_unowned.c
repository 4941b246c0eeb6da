/* SPDX-License-Identifier: MIT */
/*
 * HBK-C03: on a trigger task (LBA >= 4242) completes bundled slots it does
 * not own, then the task itself correctly.  fault=never: a slot never
 * issued; fault=double: the task's slot a second time, after its real
 * completion; fault=range: slot 999; fault=count: 33 slots in one call
 * (refused by the runtime).  Through the runtime's call, which refuses
 * never and double itself; via=raw sends them as BUNDLED_COMPLETION messages
 * of its own, past the runtime, for the host to refuse.  Prints
 * "bundled_unowned: rc=N" for the call.
 */
#include <stdio.h>
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (io->path != TDRV_BUNDLED || !tdrv_is_trigger(&io->task))
		return false;
	const char *fault = tdrv_arg(t, "fault", "never");
	bool raw = !strcmp(tdrv_arg(t, "via", "api"), "raw");
	uint16_t idx[HBK_MAX_BUNDLE + 1];
	int rc = 0;
	if (!strcmp(fault, "never")) {
		idx[0] = TDRV_TASKS - 1; /* the pool hands out low slots first */
		if (raw)
			tdrv_send_slots(t, 1, idx, 1);
		else
			rc = hbk_drv_bundled_complete(t->d, io->bundled, idx, 1);
	} else if (!strcmp(fault, "range")) {
		idx[0] = 999;
		rc = hbk_drv_bundled_complete(t->d, io->bundled, idx, 1);
	} else if (!strcmp(fault, "count")) {
		for (unsigned i = 0; i <= HBK_MAX_BUNDLE; i++)
			idx[i] = io->index;
		rc = hbk_drv_bundled_complete(t->d, io->bundled, idx, HBK_MAX_BUNDLE + 1);
	}
	tdrv_complete(t, io);
	if (!strcmp(fault, "double") && raw)
		tdrv_send_slots(t, 1, &io->index, 1);
	else if (!strcmp(fault, "double"))
		rc = hbk_drv_bundled_complete(t->d, io->bundled, &io->index, 1);
	fprintf(stderr, "bundled_unowned: rc=%d\n", rc);
	return true;
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "bundled_unowned";
	return tdrv_main(argc, argv, &ops, &hooks);
}
