/* SPDX-License-Identifier: MIT */
/*
 * The storage configuration of the emulated card, as its NVRAM would hold
 * it: memory drives from the vd= option, and arrays given by an array spec
 * (include/hbk/raid.h: real files and block devices, NBD, memory, with
 * cache, latency models and spares) from array= or from vd='s RAID
 * shorthand, opened through hbk_raid_spec_open (assembled, or created when
 * blank) and each presented by the firmware as one virtual drive.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "drivers/raid/hba.h"

static int bad(const char *opt, const char *what, const char *why)
{
	fprintf(stderr, "hbk-raid: %s=%s: %s\n", opt, what, why);
	return -EINVAL;
}

/* Logs what opening array `name` found: disks not used and why, slots
 * missing, a resync after an unclean stop. */
static void report(const char *name, const struct hbk_raid_spec *spec,
		   const struct hbk_raid_spec_array *a)
{
	struct hbk_raid_status st;
	hbk_raid_status(a->raid, &st);
	fprintf(stderr, "hbk-raid: array %s: %s %s, %u members, %llu MiB, %s%s\n", name,
		a->created ? "created" : "assembled", hbk_raid_level_name(st.level), st.members,
		(unsigned long long)(st.size >> 20), hbk_raid_state_name((enum hbk_raid_state)st.state),
		a->report.dirty ? " (not shut down cleanly: resyncing)" : "");
	for (unsigned i = 0; i < a->report.ndisks; i++) {
		uint8_t v = a->report.disk[i].verdict;
		if (v != HBK_RAID_DISK_MEMBER && v != HBK_RAID_DISK_SPARE)
			fprintf(stderr, "hbk-raid: array %s: %s: %s (generation %llu), not used\n", name,
				spec->disk[i].text, hbk_raid_verdict_name((enum hbk_raid_verdict)v),
				(unsigned long long)a->report.disk[i].generation);
	}
	if (a->report.nmissing)
		fprintf(stderr, "hbk-raid: array %s: %u slot(s) without a usable disk: running degraded\n",
			name, a->report.nmissing);
}

/* Whether every disk of spec is a memory or null disk: they start as zeros
 * and their contents end with the process. */
static bool memory_only(const struct hbk_raid_spec *spec)
{
	for (unsigned k = 0; k < spec->ndisks; k++)
		if (spec->disk[k].kind != HBK_RAID_SPEC_MEM && spec->disk[k].kind != HBK_RAID_SPEC_NULL)
			return false;
	return true;
}

/* Opens array `text` (a spec) as the next virtual drive, named name. */
static int open_array(struct storage *s, const char *opt, const char *name, const char *text)
{
	unsigned i = s->nvols;
	char why[256];
	int err = hbk_raid_spec_parse(text, &s->spec[i], why, sizeof(why));
	if (err)
		return err == -EINVAL ? bad(opt, name, why) : err;
	struct hbk_raid_spec *spec = s->spec[i];
	/* Memory and null disks read zeros: copies and parity agree already. */
	spec->cfg.assume_clean = memory_only(spec);
	if (!(s->array[i] = calloc(1, sizeof(*s->array[i]))))
		return -ENOMEM;
	err = hbk_raid_spec_open(spec, HBK_RAID_SPEC_AUTO, s->array[i]);
	if (err) {
		fprintf(stderr, "hbk-raid: %s=%s: %s\n", opt, name,
			s->array[i]->message[0] ? s->array[i]->message : hbk_strerror(err));
		return err;
	}
	report(name, spec, s->array[i]);
	err = hbk_dev_vol_raid(name, s->array[i]->raid, &s->vol[i]);
	return err == -EINVAL ? bad(opt, name, "name longer than 31 characters") : err;
}

static bool name_used(const struct storage *s, const char *name)
{
	for (unsigned i = 0; i < s->nvols; i++)
		if (!strcmp(s->vol[i]->name, name))
			return true;
	return false;
}

/* vd='s NAME:raidL:NxSIZE[:CHUNK] (fields f[0..n)) as an array spec. */
static int open_shorthand(struct storage *s, const char *vd, char **f, int n)
{
	char *x, text[1024];
	unsigned long disks = strtoul(f[2], &x, 10);
	uint64_t size;
	if (n > 4 || *x != 'x' || !disks || disks > HBK_RAID_MAX_MEMBERS || hbk_raid_spec_size(x + 1, &size))
		return bad("vd", vd, "expected NAME:raidL:NxSIZE[:CHUNK]");
	int len = snprintf(text, sizeof(text), "level=%s%s%s", f[1], n > 3 ? ",chunk=" : "", n > 3 ? f[3] : "");
	for (unsigned long k = 0; k < disks && len > 0 && (size_t)len < sizeof(text); k++)
		len += snprintf(text + len, sizeof(text) - (size_t)len, ",disk=mem:%s", x + 1);
	if (len < 0 || (size_t)len >= sizeof(text))
		return bad("vd", vd, "too long");
	return open_array(s, "vd", f[0], text);
}

/* One vd= entry, NAME:... */
static int open_vd(struct storage *s, char *vd)
{
	char copy[128], *f[5];
	int n = 0;
	if ((size_t)snprintf(copy, sizeof(copy), "%s", vd) >= sizeof(copy))
		return bad("vd", vd, "too long");
	for (char *save, *tok = strtok_r(copy, ":", &save); tok && n < 5; tok = strtok_r(NULL, ":", &save))
		f[n++] = tok;
	if (s->nvols == HBK_DEV_MAX_TARGETS)
		return bad("vd", vd, "too many virtual drives");
	if (n < 2 || n > 4)
		return bad("vd", vd, "expected NAME:SIZE[:BLOCKSIZE] or NAME:raidL:NxSIZE[:CHUNK]");
	if (name_used(s, f[0]))
		return bad("vd", vd, "name used twice");
	if (!strncmp(f[1], "raid", 4))
		return n >= 3 ? open_shorthand(s, vd, f, n) : bad("vd", vd, "expected NAME:raidL:NxSIZE[:CHUNK]");
	uint64_t size, bs = 512;
	if (hbk_raid_spec_size(f[1], &size) || (n > 2 && hbk_raid_spec_size(f[2], &bs)) || n > 3 || bs > 4096)
		return bad("vd", vd, "expected NAME:SIZE[:BLOCKSIZE]");
	int err = hbk_dev_vol_mem(f[0], size, (uint32_t)bs, &s->vol[s->nvols]);
	return err == -EINVAL ? bad("vd", vd, "name too long, block size not 512 or 4096, or size below a block")
			      : err;
}

/* One array= entry, NAME:SPEC. */
static int open_named_array(struct storage *s, const char *arg)
{
	const char *colon = strchr(arg, ':');
	char name[64];
	if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(name))
		return bad("array", arg, "expected NAME:SPEC");
	snprintf(name, sizeof(name), "%.*s", (int)(colon - arg), arg);
	if (s->nvols == HBK_DEV_MAX_TARGETS)
		return bad("array", name, "too many virtual drives");
	if (name_used(s, name))
		return bad("array", name, "name used twice");
	return open_array(s, "array", name, colon + 1);
}

int storage_open(struct storage *s, const char *vd, const char *const *arrays, unsigned narrays)
{
	char *list = vd ? strdup(vd) : NULL, *save;
	int err = vd && !list ? -ENOMEM : 0;
	for (char *e = list ? strtok_r(list, ",", &save) : NULL; e && !err; e = strtok_r(NULL, ",", &save))
		s->nvols += !(err = open_vd(s, e));
	for (unsigned i = 0; i < narrays && !err; i++)
		s->nvols += !(err = open_named_array(s, arrays[i]));
	if (!err && !s->nvols)
		err = bad("vd", vd ? vd : "", "no virtual drive");
	free(list);
	if (err)
		storage_close(s);
	return err;
}

void storage_close(struct storage *s)
{
	/* The entry being built when a failure struck sits at index nvols. */
	for (unsigned i = 0; i <= s->nvols && i < HBK_DEV_MAX_TARGETS; i++) {
		hbk_dev_vol_close(s->vol[i]);
		/* A memory array's contents end here: destaging its cache at the
		 * modelled disks' pace (minutes for a full cache of random
		 * writes on HDDs) would only delay the exit. */
		for (unsigned k = 0; s->array[i] && memory_only(s->spec[i]) && k < s->array[i]->ndisks; k++)
			if (s->array[i]->disk[k])
				hbk_disk_set_latency(s->array[i]->disk[k], NULL);
		if (s->array[i])
			hbk_raid_spec_close(s->array[i]);
		free(s->array[i]);
		hbk_raid_spec_free(s->spec[i]);
		s->vol[i] = NULL;
		s->array[i] = NULL;
		s->spec[i] = NULL;
	}
	s->nvols = 0;
}
