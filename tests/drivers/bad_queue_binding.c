/* SPDX-License-Identifier: MIT */
/*
 * HBK-C01: binds an I/O entry point to "MyParallelIOQueue", a queue it
 * creates in init_controller, as the seed did to gain parallelism (the
 * load-time panic).  entry=task (default) binds PROCESS_TASK,
 * entry=bundled binds PROCESS_BUNDLED.
 */
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static int init(struct tdrv *t, struct hbk_drv_constraints *cons)
{
	(void)cons;
	return hbk_drv_queue_create(t->d, "MyParallelIOQueue") ? 0 : -1;
}

static const struct tdrv_hooks hooks = { .init = init };

static const struct hbk_drv_binding bind_task[] = {
	{ HBK_MSG_PROCESS_TASK, "MyParallelIOQueue" }, { 0, NULL },
};
static const struct hbk_drv_binding bind_bundled[] = {
	{ HBK_MSG_PROCESS_BUNDLED, "MyParallelIOQueue" }, { 0, NULL },
};

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "bad_queue_binding";
	ops.bindings = bind_task;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "entry=bundled"))
			ops.bindings = bind_bundled;
	return tdrv_main(argc, argv, &ops, &hooks);
}
