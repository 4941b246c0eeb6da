/* SPDX-License-Identifier: MIT */
/*
 * HBK-C09: accepts the bundled buffers badly.  fault=nomap (default)
 * returns success without mapping them (it kept the mapping objects, not the
 * memory: the seed's NULL addresses); fault=enomem fails the mapping.
 * fault=noprocess maps them properly but has no process_bundled entry: not
 * a violation, a driver of the per-task path only.
 */
#include <errno.h>
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static int map_bundled(struct hbk_drv *d, struct hbk_drv_mem *cmds,
		       struct hbk_drv_mem *resps, uint32_t count)
{
	(void)cmds; (void)resps; (void)count;
	return strcmp(tdrv_arg(tdrv_of(d), "fault", "nomap"), "enomem") ? 0 : -ENOMEM;
}

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "null_mapping";
	ops.map_bundled = map_bundled;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "fault=noprocess")) {
			ops.map_bundled = tdrv_ops.map_bundled;
			ops.process_bundled = NULL;
		}
	return tdrv_main(argc, argv, &ops, NULL);
}
