/* SPDX-License-Identifier: MIT */
/*
 * Tests of array specs: the parser on good specs, on each profile (and keys
 * overriding it) and on every error, each naming the bad key; and opening
 * specs: memory arrays, file arrays created and reassembled, the lock that
 * keeps a second opener out, create refusing disks with metadata, missing
 * and duplicate files, blank spares, and a replacement disk attached.
 *
 * The binary doubles as the shell test's pattern helper:
 *     test_raid_spec pattern write|verify SPEC SEED
 * writes or checks a deterministic pattern over the whole array (exit 0 on
 * success, 1 on a mismatch or an error).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hbk/raid.h"
#include "raid/raid_priv.h"
#include "tests/lib/testlib.h"

#define MiB (1024u * 1024u)

static struct hbk_raid_spec *parse_ok(const char *text)
{
	struct hbk_raid_spec *s = NULL;
	char err[256];
	int rc = hbk_raid_spec_parse(text, &s, err, sizeof(err));
	if (rc)
		fail_msg("%s: %s", text, err);
	return s;
}

/* ---- The parser ------------------------------------------------------------------------------------ */

static void test_good_specs(void **state)
{
	(void)state;
	struct hbk_raid_spec *s = parse_ok("level=5,chunk=128k,cache=64m,disk=file:/var/tmp/d0.img,"
		"disk=/var/tmp/d1.img,disk=./d2.img,disk=mem:65m,spare=nbd:nbd+unix:///?socket=/s,"
		"spare=null:2g,latency=ssd,direct=off,poll=20,workers=2,rebuild-rate=100m,size=32m");
	assert_int_equal(s->cfg.level, HBK_RAID5);
	assert_int_equal(s->cfg.chunk, 128 * 1024);
	assert_int_equal(s->cfg.member_size, 32 * MiB);
	assert_int_equal(s->opts.cache_bytes, 64 * MiB);
	assert_int_equal(s->opts.workers, 2);
	assert_int_equal(s->opts.rebuild_rate, 100 * MiB);
	assert_int_equal(s->latency.model, HBK_DISK_MODEL_SSD);
	assert_int_equal(s->direct, HBK_DISK_DIRECT_OFF);
	assert_int_equal(s->poll_ms, 20);
	assert_int_equal(s->nmembers, 4);
	assert_int_equal(s->ndisks, 6);
	assert_int_equal(s->disk[0].kind, HBK_RAID_SPEC_FILE);
	assert_string_equal(s->disk[0].target, "/var/tmp/d0.img");
	assert_string_equal(s->disk[0].text, "file:/var/tmp/d0.img");
	assert_string_equal(s->disk[1].target, "/var/tmp/d1.img");
	assert_string_equal(s->disk[2].target, "./d2.img");
	assert_int_equal(s->disk[3].kind, HBK_RAID_SPEC_MEM);
	assert_int_equal(s->disk[3].size, 65 * MiB);
	assert_int_equal(s->disk[4].kind, HBK_RAID_SPEC_NBD);
	assert_string_equal(s->disk[4].target, "nbd+unix:///?socket=/s");
	assert_int_equal(s->disk[5].kind, HBK_RAID_SPEC_NULL);
	assert_int_equal(s->disk[5].size, 2048 * MiB);
	assert_string_equal(s->profile, "");
	hbk_raid_spec_free(s);

	/* Memory disks: size= data bytes each plus the metadata area. */
	s = parse_ok("level=raid6,size=4m,members=5,spares=2");
	assert_int_equal(s->cfg.level, HBK_RAID6);
	assert_int_equal(s->cfg.chunk, 64 * 1024);
	assert_int_equal(s->nmembers, 5);
	assert_int_equal(s->ndisks, 7);
	for (unsigned i = 0; i < 7; i++) {
		assert_int_equal(s->disk[i].kind, HBK_RAID_SPEC_MEM);
		assert_int_equal(s->disk[i].size, 4 * MiB + DATA_OFFSET);
	}
	hbk_raid_spec_free(s);

	s = parse_ok("level=10,size=1m");    /* the level's smallest count */
	assert_int_equal(s->nmembers, 4);
	hbk_raid_spec_free(s);
	s = parse_ok("level=0,size=1m");
	assert_int_equal(s->nmembers, 2);
	assert_int_equal(s->latency.model, HBK_DISK_MODEL_NONE);
	hbk_raid_spec_free(s);
	hbk_raid_spec_free(NULL);
}

static void test_profiles(void **state)
{
	(void)state;
	struct hbk_raid_spec *s = parse_ok("profile=raid0-2hdd");
	assert_string_equal(s->profile, "raid0-2hdd");
	assert_int_equal(s->cfg.level, HBK_RAID0);
	assert_int_equal(s->cfg.chunk, 64 * 1024);
	assert_int_equal(s->nmembers, 2);
	assert_int_equal(s->ndisks, 2);
	assert_int_equal(s->disk[1].size, 1024 * MiB + DATA_OFFSET);
	assert_int_equal(s->opts.cache_bytes, 0);
	assert_int_equal(s->latency.model, HBK_DISK_MODEL_HDD);
	assert_int_equal(s->latency.rpm, 7200);
	hbk_raid_spec_free(s);

	s = parse_ok("profile=lsi3108-raid5");
	assert_int_equal(s->cfg.level, HBK_RAID5);
	assert_int_equal(s->cfg.chunk, 256 * 1024);
	assert_int_equal(s->nmembers, 4);
	assert_int_equal(s->opts.cache_bytes, 1024 * MiB);
	assert_int_equal(s->latency.model, HBK_DISK_MODEL_HDD);
	hbk_raid_spec_free(s);

	/* Explicit keys override the profile wherever they stand. */
	s = parse_ok("cache=256m,profile=lsi3108-raid5,size=64m,latency=none,members=6");
	assert_int_equal(s->opts.cache_bytes, 256 * MiB);
	assert_int_equal(s->cfg.member_size, 64 * MiB);
	assert_int_equal(s->latency.model, HBK_DISK_MODEL_NONE);
	assert_int_equal(s->nmembers, 6);
	assert_int_equal(s->disk[5].size, 64 * MiB + DATA_OFFSET);
	hbk_raid_spec_free(s);

	/* With real disks the profile's memory size does not apply. */
	s = parse_ok("profile=raid0-2hdd,disk=/a,disk=/b,disk=/c");
	assert_int_equal(s->nmembers, 3);
	assert_int_equal(s->cfg.member_size, 0);
	assert_int_equal(s->latency.model, HBK_DISK_MODEL_HDD);
	hbk_raid_spec_free(s);
}

static void test_bad_specs(void **state)
{
	(void)state;
	static const struct {
		const char *spec, *error;
	} bad[] = {
		{ "", "spec: empty" },
		{ "level=5,,size=4m", "spec: an empty entry" },
		{ "level=5,size=4m,", "spec: an empty entry" },
		{ "level", "spec: level: expected key=value" },
		{ "level=", "spec: level: no value" },
		{ "colour=red", "spec: colour=red: unknown key" },
		{ "level=7,size=4m", "spec: level=7: not a RAID level" },
		{ "level=raid", "spec: level=raid: not a RAID level" },
		{ "level=5,size=4m,level=6", "spec: level=6: given twice" },
		{ "profile=raid0-2hdd,profile=raid0-2hdd", "spec: profile: given twice" },
		{ "profile=raid7-9ssd", "spec: profile=raid7-9ssd: unknown profile (raid0-2hdd, lsi3108-raid5)" },
		{ "level=5,chunk=3k,size=4m", "spec: chunk=3k: not a power of two from 4k to 1m" },
		{ "level=5,chunk=2m,size=4m", "spec: chunk=2m: not a power of two" },
		{ "level=5,size=lots", "spec: size=lots: not a size" },
		{ "level=5,size=0", "spec: size=0: not a size" },
		{ "level=5,size=99999999999999999999", "spec: size=99999999999999999999: not a size" },
		{ "level=5,size=18446744073709486080", "spec: size=18446744073709486080: larger than 1 EiB" },
		{ "level=5,size=-1m", "spec: size=-1m: not a size" },
		{ "level=5,size=16777216t", "spec: size=16777216t: not a size" },
		{ "level=5,size=4mb", "spec: size=4mb: not a size" },
		{ "level=5,size=4m,members=0", "spec: members=0: not a number from 1 to 32" },
		{ "level=5,size=4m,members=33", "spec: members=33: not a number from 1 to 32" },
		{ "level=5,size=4m,spares=9", "spec: spares=9: not a number from 0 to 8" },
		{ "level=5,size=4m,cache=big", "spec: cache=big: not a size" },
		{ "level=5,size=4m,cache=4096t", "spec: cache=4096t: larger than half of this machine's memory" },
		{ "level=5,size=4m,latency=floppy", "spec: latency=floppy: not a latency model" },
		{ "level=5,size=4m,direct=maybe", "spec: direct=maybe: not auto, on or off" },
		{ "level=5,size=4m,poll=1001", "spec: poll=1001: not a number from 0 to 1000" },
		{ "level=5,size=4m,workers=0", "spec: workers=0: not a number from 1 to 64" },
		{ "level=5,size=4m,rebuild-rate=fast", "spec: rebuild-rate=fast: not bytes per second" },
		{ "level=1,disk=tape:/dev/st0", "spec: disk=tape:/dev/st0: not a disk" },
		{ "level=1,disk=d0.img", "spec: disk=d0.img: not a disk" },
		{ "level=1,disk=file:", "spec: disk=file:: no path" },
		{ "level=1,spare=nbd:", "spec: spare=nbd:: no URI" },
		{ "level=1,disk=mem:1m", "spec: disk=mem:1m: size must be a multiple of 512" },
		{ "level=1,disk=null:2000001", "spec: disk=null:2000001: size must be a multiple of 512" },
		{ "size=4m", "spec: level: missing" },
		{ "level=5", "spec: size: missing" },
		{ "level=5,size=4m,members=2", "spec: level=5: needs at least 3 members, the spec has 2" },
		{ "level=6,disk=/a,disk=/b,disk=/c", "spec: level=6: needs at least 4 members, the spec has 3" },
		{ "level=10,size=4m,members=5", "spec: level=10: needs at least 4 members and an even number, the spec has 5" },
		{ "level=1,members=2,disk=/a,disk=/b", "spec: members: only for memory disks" },
		{ "level=1,spares=1,disk=/a,disk=/b", "spec: spares: only for memory disks" },
		{ "level=5,size=100k", "spec: size: 102400 bytes is not a multiple of the chunk (65536 bytes)" },
		{ "level=5,size=32k", "spec: size: 32768 bytes is not a multiple of the chunk" },
		{ "level=0,size=4m,spares=1", "spec: spares: RAID 0 has no redundancy" },
		{ "level=0,disk=/a,spare=/b", "spec: spare: RAID 0 has no redundancy" },
		{ "level=5,size=4m,spares=8,spare=/x", "spec: spares: more than 8 spares" },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct hbk_raid_spec *s = NULL;
		char err[256];
		int rc = hbk_raid_spec_parse(bad[i].spec, &s, err, sizeof(err));
		if (rc != -EINVAL || strncmp(err, bad[i].error, strlen(bad[i].error)))
			fail_msg("\"%s\": got %d \"%s\", want \"%s\"", bad[i].spec, rc, err, bad[i].error);
		assert_null(s);
	}

	/* Too many disks of either kind; no room for the message is fine. */
	char text[2048] = "level=1";
	for (unsigned i = 0; i < 33; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), ",disk=/d%u", i);
	struct hbk_raid_spec *s = NULL;
	char err[256];
	assert_int_equal(hbk_raid_spec_parse(text, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "spec: disk=/d32: more than 32 members"));
	snprintf(text, sizeof(text), "level=1,disk=/a,disk=/b");
	for (unsigned i = 0; i < 9; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), ",spare=/s%u", i);
	assert_int_equal(hbk_raid_spec_parse(text, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "spec: spare=/s8: more than 8 spares"));
	assert_int_equal(hbk_raid_spec_parse("level=9", &s, NULL, 0), -EINVAL);
}

/* ---- Opening specs --------------------------------------------------------------------------------- */

static char dir[64];

static int make_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/hbk-spec-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	(void)state;
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* "level=L,disk=file:DIR/a,disk=file:DIR/b,..." plus extra keys. */
static struct hbk_raid_spec *files_spec(const char *level, const char *names, const char *extra)
{
	char text[1024], copy[256], *save;
	int n = snprintf(text, sizeof(text), "level=%s%s%s", level, *extra ? "," : "", extra);
	snprintf(copy, sizeof(copy), "%s", names);
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
		n += snprintf(text + n, sizeof(text) - (size_t)n, ",%s=file:%s/%s",
			      t[0] == '+' ? "spare" : "disk", dir, t + (t[0] == '+'));
	return parse_ok(text);
}

/* Opens s, expecting rc and, when msg is given, a message containing it. */
static void open_expect(const struct hbk_raid_spec *s, enum hbk_raid_spec_mode mode, int rc,
			const char *msg, struct hbk_raid_spec_array *a)
{
	assert_int_equal(hbk_raid_spec_open(s, mode, a), rc);
	if (msg && !strstr(a->message, msg))
		fail_msg("message \"%s\" lacks \"%s\"", a->message, msg);
	assert_true(!rc == !!a->raid);
}

static void test_open_memory(void **state)
{
	(void)state;
	struct hbk_raid_spec *s = parse_ok("level=5,size=1m,members=3,spares=1,cache=1m");
	struct hbk_raid_spec_array a;
	assert_int_equal(hbk_raid_spec_open(s, HBK_RAID_SPEC_AUTO, &a), 0);
	assert_true(a.created);
	struct hbk_raid_status st;
	hbk_raid_status(a.raid, &st);
	assert_int_equal(st.size, 2 * MiB);
	assert_int_equal(st.spares, 1);
	assert_int_equal(st.cache_bytes, 1 * MiB);
	assert_int_equal(a.report.disk[2].verdict, HBK_RAID_DISK_MEMBER);
	assert_int_equal(a.report.disk[2].slot, 2);
	assert_int_equal(a.report.disk[3].verdict, HBK_RAID_DISK_SPARE);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_close(&a);   /* twice is harmless */
	hbk_raid_spec_free(s);

	struct hbk_raid_spec_array zero = { 0 };
	hbk_raid_spec_close(&zero);
}

static void test_open_files(void **state)
{
	(void)state;
	struct hbk_raid_spec *s = files_spec("5", "d0 d1 d2 +s0", "size=256k");
	struct hbk_raid_spec_array a, b;
	assert_int_equal(hbk_raid_spec_open(s, HBK_RAID_SPEC_CREATE, &a), 0);
	assert_true(a.created);

	/* A second opener of the same files is kept out. */
	open_expect(s, HBK_RAID_SPEC_ASSEMBLE, -EBUSY, "/d0: in use by another process", &b);
	hbk_raid_spec_close(&b);

	uint8_t *buf = malloc(MiB / 2);
	tl_fill(buf, 0, 1024, 512, 5);
	assert_int_equal(hbk_raid_rw(a.raid, HBK_DISK_WRITE, buf, 0, MiB / 2, 0), 0);
	hbk_raid_spec_close(&a);

	/* Reassembled, in another order: every disk's role comes from its
	 * metadata.  With polled disks this time: the same data. */
	struct hbk_raid_spec *t = files_spec("5", "+s0 d2 d0 d1", "poll=5");
	assert_int_equal(hbk_raid_spec_open(t, HBK_RAID_SPEC_AUTO, &a), 0);
	assert_false(a.created);
	assert_int_equal(a.report.disk[0].slot, 2);   /* disk= first: d2 d0 d1, then s0 */
	assert_int_equal(a.report.disk[1].slot, 0);
	assert_int_equal(a.report.disk[2].slot, 1);
	assert_int_equal(a.report.disk[3].verdict, HBK_RAID_DISK_SPARE);
	memset(buf, 0, MiB / 2);
	assert_int_equal(hbk_raid_rw(a.raid, HBK_DISK_READ, buf, 0, MiB / 2, 0), 0);
	assert_true(tl_check(buf, 0, 1024, 512, 5));
	hbk_raid_spec_close(&a);

	/* Create refuses disks that carry metadata, unless forced. */
	open_expect(s, HBK_RAID_SPEC_CREATE, -EEXIST, "4 of the disks carry hbakit RAID metadata", &a);
	assert_int_equal(a.error[1], -EEXIST);
	hbk_raid_spec_close(&a);
	s->opts.force = true;
	open_expect(s, HBK_RAID_SPEC_CREATE, 0, NULL, &a);
	hbk_raid_spec_close(&a);
	free(buf);
	hbk_raid_spec_free(t);
	hbk_raid_spec_free(s);
}

static void test_open_errors(void **state)
{
	(void)state;
	struct hbk_raid_spec_array a;
	struct hbk_raid_spec *s = files_spec("1", "m0 m1", "size=128k");
	assert_int_equal(hbk_raid_spec_open(s, HBK_RAID_SPEC_CREATE, &a), 0);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);

	/* The same file twice. */
	char text[256];
	snprintf(text, sizeof(text), "level=1,disk=file:%s/m0,disk=%s/../%s/m0", dir, dir, dir + 5);
	s = parse_ok(text);
	open_expect(s, HBK_RAID_SPEC_ASSEMBLE, -EBUSY, "the same file as", &a);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);

	/* A missing disk stops the assembly unless forced. */
	s = files_spec("1", "m0 m1 gone", "");
	open_expect(s, HBK_RAID_SPEC_ASSEMBLE, -ENOENT, "1 of the disks cannot be opened", &a);
	assert_int_equal(a.error[2], -ENOENT);
	hbk_raid_spec_close(&a);
	s->opts.force = true;
	open_expect(s, HBK_RAID_SPEC_ASSEMBLE, 0, NULL, &a);
	assert_int_equal(a.report.disk[2].verdict, HBK_RAID_DISK_UNREADABLE);
	assert_int_equal(a.report.disk[1].verdict, HBK_RAID_DISK_MEMBER);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);

	/* Creating needs every disk, and files are created only with size=. */
	s = files_spec("1", "m0 gone", "");
	open_expect(s, HBK_RAID_SPEC_CREATE, -ENOENT, "No such file or directory); a missing file is created only with size=", &a);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);

	/* Memory disks past what the machine has are refused, and said so. */
	s = parse_ok("level=1,disk=mem:64t,disk=mem:2m");
	open_expect(s, HBK_RAID_SPEC_CREATE, -ENOMEM,
		    "1 of the disks cannot be opened (mem:64t: Cannot allocate memory)", &a);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);

	/* Too small for size=. */
	s = files_spec("1", "m0 m1", "size=4m");
	s->opts.force = true;
	open_expect(s, HBK_RAID_SPEC_CREATE, -EINVAL, "2 of the disks are too small", &a);
	assert_int_equal(a.error[0], -ENOSPC);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);

	/* No array at all. */
	s = parse_ok("level=1,disk=mem:2m,disk=mem:2m");
	open_expect(s, HBK_RAID_SPEC_ASSEMBLE, -ENODEV, "no hbakit array on the disks", &a);
	assert_int_equal(a.report.disk[0].verdict, HBK_RAID_DISK_BLANK);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);
}

static void test_attach_and_spares(void **state)
{
	(void)state;
	struct hbk_raid_spec_array a, other;
	struct hbk_raid_spec *s = files_spec("5", "r0 r1 r2", "size=256k");
	struct hbk_raid_spec *f = files_spec("1", "f0 f1", "size=256k");
	assert_int_equal(hbk_raid_spec_open(f, HBK_RAID_SPEC_CREATE, &other), 0);
	hbk_raid_spec_close(&other);
	assert_int_equal(hbk_raid_spec_open(s, HBK_RAID_SPEC_CREATE, &a), 0);
	assert_int_equal(hbk_raid_wait(a.raid, 0), 0);
	assert_int_equal(hbk_raid_fail(a.raid, 1), 0);

	struct hbk_disk *d = NULL;
	char path[128];
	snprintf(path, sizeof(path), "file:%s/r0", dir);
	assert_int_equal(hbk_raid_spec_attach(&a, path, &d), -EINVAL);
	assert_non_null(strstr(a.message, "already in the array"));
	snprintf(path, sizeof(path), "%s/f0", dir);
	assert_int_equal(hbk_raid_spec_attach(&a, path, &d), -EEXIST);
	assert_non_null(strstr(a.message, "carries hbakit RAID metadata"));
	assert_int_equal(hbk_raid_spec_attach(&a, "tape:0", &d), -EINVAL);
	assert_non_null(strstr(a.message, "spec: disk=tape:0: not a disk"));

	snprintf(path, sizeof(path), "file:%s/new", dir);   /* created to fit */
	assert_int_equal(hbk_raid_spec_attach(&a, path, &d), 0);
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	assert_int_equal(di.size, DATA_OFFSET + 256 * 1024);
	assert_int_equal(hbk_raid_replace(a.raid, 1, d), 0);
	assert_int_equal(hbk_raid_wait(a.raid, 0), 0);
	struct hbk_raid_status st;
	hbk_raid_status(a.raid, &st);
	assert_int_equal(st.state, HBK_RAID_OPTIMAL);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);

	/* r1 is stale now; a blank spare= joins as a hot spare and takes over
	 * if a member fails; the stale disk may be attached back. */
	char blank[128];
	snprintf(blank, sizeof(blank), "%s/blank", dir);
	FILE *fp = fopen(blank, "w");
	assert_non_null(fp);
	assert_int_equal(ftruncate(fileno(fp), DATA_OFFSET + 256 * 1024), 0);
	fclose(fp);
	s = files_spec("5", "r0 new r2 r1 +blank", "");
	assert_int_equal(hbk_raid_spec_open(s, HBK_RAID_SPEC_ASSEMBLE, &a), 0);
	assert_int_equal(a.report.disk[3].verdict, HBK_RAID_DISK_STALE);
	assert_int_equal(a.report.disk[4].verdict, HBK_RAID_DISK_SPARE);
	assert_int_equal(a.report.nblank, 0);
	hbk_raid_status(a.raid, &st);
	assert_int_equal(st.spares, 1);
	snprintf(path, sizeof(path), "%s/r1", dir);
	assert_int_equal(hbk_raid_spec_attach(&a, path, &d), 0);
	assert_ptr_equal(d, a.disk[3]);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);
	hbk_raid_spec_free(f);
}

/* A file attached after the report's last entry (one per disk of a full
 * spec), attached again: refused as in the array, without reading a report
 * entry that does not exist. */
static void test_attach_past_the_report(void **state)
{
	(void)state;
	struct hbk_raid_spec_array a;
	struct hbk_raid_spec *s = parse_ok("level=1,disk=mem:2m,disk=mem:2m");
	assert_int_equal(hbk_raid_spec_open(s, HBK_RAID_SPEC_CREATE, &a), 0);
	struct hbk_disk *d = NULL;
	while (a.ndisks < HBK_RAID_MAX_DISKS)
		assert_int_equal(hbk_raid_spec_attach(&a, "null:2m", &d), 0);
	char path[128];
	snprintf(path, sizeof(path), "file:%s/late", dir);
	assert_int_equal(hbk_raid_spec_attach(&a, path, &d), 0);
	assert_int_equal(a.ndisks, HBK_RAID_MAX_DISKS + 1);
	assert_int_equal(hbk_raid_spec_attach(&a, path, &d), -EINVAL);
	assert_non_null(strstr(a.message, "already in the array"));
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);
}

/* ---- The shell test's helper ------------------------------------------------------------------------ */

static int pattern(const char *what, const char *text, const char *seed_text)
{
	struct hbk_raid_spec *s;
	struct hbk_raid_spec_array a;
	char err[256];
	bool write = !strcmp(what, "write");
	uint32_t seed = (uint32_t)strtoul(seed_text, NULL, 10);
	if (hbk_raid_spec_parse(text, &s, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int rc = hbk_raid_spec_open(s, HBK_RAID_SPEC_ASSEMBLE, &a);
	struct hbk_raid_status st;
	uint8_t *buf = malloc(MiB);
	if (!rc) {
		hbk_raid_status(a.raid, &st);
		for (uint64_t off = 0; off < st.size && !rc; off += MiB) {
			uint32_t len = (uint32_t)HBK_MIN(MiB, st.size - off);
			if (write)
				tl_fill(buf, off / 512, len / 512, 512, seed);
			rc = hbk_raid_rw(a.raid, write ? HBK_DISK_WRITE : HBK_DISK_READ, buf, off, len, 0);
			if (!rc && !write && !tl_check(buf, off / 512, len / 512, 512, seed)) {
				fprintf(stderr, "pattern: mismatch in [%llu, +%u)\n", (unsigned long long)off, len);
				rc = -EILSEQ;
			}
		}
	}
	if (rc)
		fprintf(stderr, "pattern %s: %s\n", what, a.message[0] ? a.message : hbk_strerror(rc));
	else
		printf("pattern %s: %llu bytes, seed %u\n", what, (unsigned long long)st.size, seed);
	free(buf);
	hbk_raid_spec_close(&a);
	hbk_raid_spec_free(s);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "pattern"))
		return pattern(argv[2], argv[3], argv[4]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_specs),
		cmocka_unit_test(test_profiles),
		cmocka_unit_test(test_bad_specs),
		cmocka_unit_test(test_open_memory),
		cmocka_unit_test(test_open_files),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_attach_and_spares),
		cmocka_unit_test(test_attach_past_the_report),
	};
	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
