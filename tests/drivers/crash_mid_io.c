/* SPDX-License-Identifier: MIT */
/*
 * HBK-C12: the driver process dies with tasks outstanding.  Tasks at LBA >=
 * 4242 are held; once it holds after=N of them (default 4) it dies with
 * how=exit (_exit(1), default) or how=abort (abort()).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/drivers/lib/tdrv.h"

static unsigned held;

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!tdrv_is_trigger(&io->task))
		return false;
	/* Only the InterruptQueue runs this: no lock needed. */
	if (++held >= (unsigned)atoi(tdrv_arg(t, "after", "4"))) {
		if (!strcmp(tdrv_arg(t, "how", "exit"), "abort"))
			abort();
		_exit(1);
	}
	return true;
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "crash_mid_io";
	return tdrv_main(argc, argv, &ops, &hooks);
}
