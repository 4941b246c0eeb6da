/* SPDX-License-Identifier: MIT */
/*
 * The storage configuration of the emulated card, as its NVRAM would hold
 * it: the vd= option parsed into memory volumes and RAID arrays over memory
 * disks, each presented by the firmware as one virtual drive.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/raid/hba.h"

int parse_bytes(const char *s, uint64_t *out)
{
	static const char units[] = "kmgt";
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	const char *unit = *end ? strchr(units, tolower((unsigned char)*end)) : NULL;
	if (errno || end == s || *s == '-' || (*end && (!unit || end[1])))
		return -EINVAL;
	unsigned shift = unit ? 10u * (unsigned)(unit - units + 1) : 0;
	if (v > UINT64_MAX >> shift)
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int bad(const char *vd, const char *why)
{
	fprintf(stderr, "hbk-raid: vd=%s: %s\n", vd, why);
	return -EINVAL;
}

/* NAME:raidL:NxSIZE[:CHUNK] (f[0..n) are the fields). */
static int open_array(struct storage *s, const char *vd, char **f, int n)
{
	unsigned i = s->nvols;
	char *end, *x;
	unsigned long level = strtoul(f[1] + 4, &end, 10);
	unsigned long disks = strtoul(f[2], &x, 10);
	uint64_t size, chunk = 0;
	if (*end || end == f[1] + 4 ||
	    (level != 0 && level != 1 && level != 5 && level != 6 && level != 10))
		return bad(vd, "RAID level is not 0, 1, 5, 6 or 10");
	if (*x != 'x' || !disks || disks > HBK_RAID_MAX_MEMBERS || parse_bytes(x + 1, &size) ||
	    (n > 3 && parse_bytes(f[3], &chunk)) || chunk > UINT32_MAX)
		return bad(vd, "expected NAME:raidL:NxSIZE[:CHUNK]");
	for (; s->ndisks[i] < disks; s->ndisks[i]++) {
		int err = hbk_disk_open_mem(size, &s->disk[i][s->ndisks[i]]);
		if (err)
			return err == -EINVAL ? bad(vd, "disk size is not a multiple of 512") : err;
	}
	struct hbk_raid_config rc = { .level = (enum hbk_raid_level)level, .chunk = (uint32_t)chunk,
				      .assume_clean = true };
	int err = hbk_raid_create(&rc, s->disk[i], (unsigned)disks, NULL, &s->raid[i]);
	if (err)
		return err == -EINVAL ? bad(vd, "the RAID engine refused this geometry") : err;
	return hbk_dev_vol_raid(f[0], s->raid[i], &s->vol[i]);
}

/* One NAME:... entry. */
static int open_vd(struct storage *s, char *vd)
{
	char copy[128], *f[5];
	int n = 0;
	snprintf(copy, sizeof(copy), "%s", vd);
	for (char *save, *tok = strtok_r(copy, ":", &save); tok && n < 5; tok = strtok_r(NULL, ":", &save))
		f[n++] = tok;
	if (s->nvols == HBK_DEV_MAX_TARGETS)
		return bad(vd, "too many virtual drives");
	if (n < 2 || n > 4)
		return bad(vd, "expected NAME:SIZE[:BLOCKSIZE] or NAME:raidL:NxSIZE[:CHUNK]");
	for (unsigned i = 0; i < s->nvols; i++)
		if (!strcmp(s->vol[i]->name, f[0]))
			return bad(vd, "name used twice");
	int err;
	if (!strncmp(f[1], "raid", 4)) {
		err = n >= 3 ? open_array(s, vd, f, n) : bad(vd, "expected NAME:raidL:NxSIZE[:CHUNK]");
	} else {
		uint64_t size, bs = 512;
		if (parse_bytes(f[1], &size) || (n > 2 && parse_bytes(f[2], &bs)) || n > 3 || bs > 4096)
			return bad(vd, "expected NAME:SIZE[:BLOCKSIZE]");
		err = hbk_dev_vol_mem(f[0], size, (uint32_t)bs, &s->vol[s->nvols]);
		if (err == -EINVAL)
			err = bad(vd, "name too long, block size not 512 or 4096, or size below a block");
	}
	s->nvols += !err;
	return err;
}

int storage_open(struct storage *s, const char *spec)
{
	char *list = strdup(spec), *save;
	int err = list ? 0 : -ENOMEM;
	for (char *vd = list ? strtok_r(list, ",", &save) : NULL; vd && !err; vd = strtok_r(NULL, ",", &save))
		err = open_vd(s, vd);
	if (!err && !s->nvols)
		err = bad(spec, "no virtual drive");
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
		hbk_raid_close(s->raid[i]);
		for (unsigned k = 0; k < s->ndisks[i]; k++)
			hbk_disk_close(s->disk[i][k]);
		s->vol[i] = NULL;
		s->raid[i] = NULL;
		s->ndisks[i] = 0;
	}
	s->nvols = 0;
}
