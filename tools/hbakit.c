/* SPDX-License-Identifier: MIT */
/*
 * The hbakit command-line tool: `hbakit bench` measures a controller on the
 * per-task and bundled paths, `hbakit info` lists its targets and LUNs,
 * `hbakit raid` manages RAID arrays of real disks.  This file holds the
 * dispatch, the controller options all subcommands share, and `info`.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "tools/cli.h"

static char default_driver[PATH_MAX + 32];

void cli_ctl_init(struct cli_ctl *o, const char *argv0, const char *who)
{
	memset(o, 0, sizeof(*o));
	o->who = who;
	/* The ram driver is built next to this executable: build/drivers/hbk-ram. */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = 0;
		snprintf(default_driver, sizeof(default_driver), "%s/drivers/hbk-ram", self);
	} else {
		snprintf(default_driver, sizeof(default_driver), "%s", argv0);
	}
	o->driver = default_driver;
	o->mode = HBK_MODE_AUTO;
}

static const char *value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n))
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (!argv[*i][n] && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

const char *cli_option_split(int argc, char **argv, int *i, char *key, size_t size)
{
	const char *a = argv[*i], *eq = strchr(a, '=');
	snprintf(key, size, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
	if (eq)
		return eq + 1;
	if (!strcmp(key, "--help"))
		return NULL;
	++*i;
	return *i < argc ? argv[*i] : NULL;
}

bool cli_is_help(const char *a)
{
	return !strcmp(a, "--help") || !strcmp(a, "-h");
}

void cli_bad_arg(const char *who, const char *a)
{
	fprintf(stderr, "%s: %s '%s'\n", who, a[0] == '-' && a[1] ? "unknown option" :
		"unexpected argument", a);
}

void cli_bad_option(const char *who, const char *key, const char *v, bool known)
{
	if (!known)
		cli_bad_arg(who, key);
	else if (!v)
		fprintf(stderr, "%s: %s needs a value\n", who, key);
	else
		fprintf(stderr, "%s: %s: bad value '%s'\n", who, key, v);
}

int cli_ctl_option(struct cli_ctl *o, int argc, char **argv, int *i)
{
	static const char *const names[] = { "--driver", "--attach", "--driver-arg", "--poll-us",
					     "--mode" };
	const char *v;
	for (unsigned k = 0; k < HBK_ARRAY_SIZE(names); k++)
		if (!strcmp(argv[*i], names[k]) && *i + 1 == argc) {
			fprintf(stderr, "%s: %s needs a value\n", o->who, names[k]);
			return -1;
		}
	if ((v = value(argc, argv, i, "--driver"))) {
		o->driver = v;
	} else if ((v = value(argc, argv, i, "--attach"))) {
		o->attach = v;
		o->driver = NULL;
	} else if ((v = value(argc, argv, i, "--driver-arg"))) {
		if (o->ndriver_args == CLI_MAX_DRIVER_ARGS) {
			fprintf(stderr, "%s: too many --driver-arg\n", o->who);
			return -1;
		}
		o->driver_args[o->ndriver_args++] = v;
	} else if ((v = value(argc, argv, i, "--poll-us"))) {
		char *end;
		long us = strtol(v, &end, 10);
		if (*end || us < -1 || us > 1000000) {
			fprintf(stderr, "%s: --poll-us takes microseconds, or -1 for never\n", o->who);
			return -1;
		}
		o->poll_us = us ? (int32_t)us : -1;
	} else if ((v = value(argc, argv, i, "--mode"))) {
		/* bench runs both paths one after the other; the others open one
		 * controller, on the bundled path when the driver takes it (auto). */
		if (!strcmp(v, "per-task"))
			o->mode = HBK_MODE_PER_TASK;
		else if (!strcmp(v, "bundled"))
			o->mode = HBK_MODE_BUNDLED;
		else if (!strcmp(v, o->mode_both ? "both" : "auto"))
			o->mode = HBK_MODE_AUTO;
		else {
			fprintf(stderr, "%s: --mode takes %s, not '%s'\n", o->who,
				o->mode_both ? "per-task, bundled or both" : "auto, bundled or per-task", v);
			return -1;
		}
	} else {
		return 0;
	}
	return 1;
}

int cli_ctl_open(const struct cli_ctl *o, enum hbk_ctl_mode mode, struct hbk_ctl **c)
{
	struct hbk_ctl_opts opts = {
		.driver = o->attach ? NULL : o->driver,
		.attach = o->attach,
		.driver_args = o->driver_args,
		.mode = mode,
		.poll_us = o->poll_us,
	};
	int err = hbk_ctl_open(&opts, c);
	if (err)
		fprintf(stderr, "hbakit: cannot open the controller (%s): %s\n",
			o->attach ? o->attach : o->driver, strerror(-err));
	return err;
}

void cli_fmt_capacity(uint64_t bytes, char *buf, size_t size)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	unsigned u = 0;
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, "%.1f %s", v, unit[u]);
}

static void info_usage(FILE *f)
{
	fprintf(f, "usage: hbakit info [--driver PATH | --attach SOCKET] [--driver-arg K=V]... "
		"[--mode auto|bundled|per-task] [--poll-us N]\n");
}

int cli_info(int argc, char **argv)
{
	struct cli_ctl o;
	cli_ctl_init(&o, argv[0], "hbakit info");
	for (int i = 1; i < argc; i++) {
		if (cli_is_help(argv[i])) {
			info_usage(stdout);
			return 0;
		}
		int r = cli_ctl_option(&o, argc, argv, &i);
		if (r < 0)
			return 2;
		if (!r) {
			cli_bad_arg("hbakit info", argv[i]);
			info_usage(stderr);
			return 2;
		}
	}
	struct hbk_ctl *c;
	if (cli_ctl_open(&o, o.mode, &c))
		return 1;
	printf("controller: driver %s, %s path\n", hbk_ctl_driver_name(c),
	       hbk_ctl_bundled(c) ? "bundled" : "per-task");
	printf("%-6s %-4s %-8s %-16s %-4s %-20s %-12s %-6s %s\n", "TARGET", "LUN", "VENDOR",
	       "PRODUCT", "REV", "SERIAL", "CAPACITY", "BLOCK", "ID");
	unsigned n = hbk_ctl_lun_count(c);
	for (unsigned i = 0; i < n; i++) {
		struct hbk_lun_info info;
		const struct hbk_lun_info *li = &info;
		hbk_lun_info(hbk_ctl_lun(c, i), &info);
		char cap[32];
		cli_fmt_capacity(li->nblocks * li->block_size, cap, sizeof(cap));
		printf("%-6llu %-4llu %-8s %-16s %-4s %-20s %-12s %-6u %s%s\n",
		       (unsigned long long)li->target, (unsigned long long)li->lun, li->vendor,
		       li->product, li->revision, li->serial, cap, li->block_size, li->devid,
		       li->thin ? " (thin)" : "");
	}
	hbk_ctl_close(c);
	return n ? 0 : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hbakit COMMAND [options]\n"
		"  bench   measure a controller: per-task vs bundled path (hbakit bench --help)\n"
		"  info    list the controller's targets and LUNs (hbakit info --help)\n"
		"  raid    create, inspect and repair RAID arrays of disks (hbakit raid --help)\n"
		"  serve   serve the controller's LUNs: hbakit serve iscsi (hbakit serve --help)\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (cli_is_help(argv[1])) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "bench"))
		return cli_bench(argc - 1, argv + 1);
	if (!strcmp(argv[1], "info"))
		return cli_info(argc - 1, argv + 1);
	if (!strcmp(argv[1], "raid"))
		return cli_raid(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve"))
		return cli_serve(argc - 1, argv + 1);
	if (argv[1][0] == '-')
		fprintf(stderr, "hbakit: unknown option '%s'\n", argv[1]);
	else
		fprintf(stderr, "hbakit: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
