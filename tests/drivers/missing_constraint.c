/* SPDX-License-Identifier: MIT */
/*
 * HBK-C08: reports its HBA constraints but leaves one key out (the seed's
 * kernel panic): omit=K drops enum hbk_constraint K, by default
 * HBK_CONS_DATA_ALIGNMENT_MASK.
 */
#include <stdlib.h>

#include "tests/drivers/lib/tdrv.h"

static int init(struct tdrv *t, struct hbk_drv_constraints *cons)
{
	unsigned key = (unsigned)atoi(tdrv_arg(t, "omit", "6"));
	cons->present &= ~(1u << key);
	return 0;
}

static const struct tdrv_hooks hooks = { .init = init };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "missing_constraint";
	return tdrv_main(argc, argv, &ops, &hooks);
}
