/* SPDX-License-Identifier: MIT */
/*
 * hbakit raid: create, inspect and repair an array described by a spec
 * (docs/raid.md).  Each command opens the spec's disks (locked against other
 * processes), creates or assembles the array, does its work and closes the
 * array cleanly, so a rebuild or resync interrupted with Ctrl-C (or
 * SIGTERM, SIGHUP, a closed pipe) goes on at the next command.  Long operations show their progress on stderr: one
 * updating line on a terminal, a plain line a second otherwise.
 * Exit status: 0 done, 1 failed, 2 usage, 3 check found mismatches,
 * 130 interrupted.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "hbk/raid.h"
#include "tools/cli.h"

enum { O_JSON = 1, O_WATCH = 2, O_FORCE = 4, O_ASSUME_CLEAN = 8, O_RATE = 16, O_REPAIR = 32,
       O_SPLIT = 64 };

struct raid_cli {
	struct hbk_raid_spec *spec;
	struct hbk_raid_spec_array a;
	const char *arg[2];        /* the command's operands after SPEC */
	bool json, repair;
	double watch;              /* status --watch: seconds between reports */
};

struct command {
	const char *name;
	unsigned nargs;
	enum hbk_raid_spec_mode mode;
	unsigned opts;             /* O_* it takes */
	int (*run)(struct raid_cli *c);
	const char *usage;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static const char *member_state_name(uint8_t s)
{
	static const char *const n[] = { "?", "active", "rebuilding", "failed" };
	return s < HBK_ARRAY_SIZE(n) ? n[s] : "?";
}

static void fmt_uuid(const uint8_t *u, char *out)
{
	for (unsigned i = 0, o = 0; i < HBK_RAID_UUID_LEN; i++)
		o += (unsigned)sprintf(out + o, "%s%02x", i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "", u[i]);
}

/* The spec's text for disk d, else its name; NULL for a missing disk. */
static const char *disk_name(const struct raid_cli *c, struct hbk_disk *d, char *buf, size_t len)
{
	if (!d)
		return NULL;
	for (unsigned i = 0; i < c->spec->ndisks; i++)
		if (c->a.disk[i] == d)
			return c->spec->disk[i].text;
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	snprintf(buf, len, "%s", di.name);
	return buf;
}

/* The slot spec disk i sits in now, or -1. */
static int slot_of(const struct hbk_raid_status *st, const struct raid_cli *c, unsigned i)
{
	for (unsigned s = 0; s < st->members; s++)
		if (c->a.disk[i] && st->member[s].disk == c->a.disk[i])
			return (int)s;
	return -1;
}

/* The generation on spec disk i: the array's if it uses the disk, else the
 * one assembly found (0: none). */
static uint64_t generation(const struct raid_cli *c, const struct hbk_raid_status *st, unsigned i)
{
	uint8_t v = c->a.report.disk[i].verdict;
	bool used = c->a.disk[i] && (v == HBK_RAID_DISK_MEMBER || v == HBK_RAID_DISK_SPARE);
	return used ? st->generation : c->a.report.disk[i].generation;
}

/* ---- Progress ----------------------------------------------------------------------------------- */

struct progress {
	const char *what;
	bool tty;
	uint64_t t0, last, base;   /* start, last line, bytes done at the start */
};

static void progress_start(struct progress *p, const char *what, uint64_t done)
{
	*p = (struct progress){ .what = what, .tty = isatty(STDERR_FILENO), .t0 = hbk_now_ns(),
				.base = done };
}

/* Shows done of total bytes: at most 5 times a second on a terminal, once a
 * second otherwise, and always when final (short of total: it stopped). */
static void progress_show(struct progress *p, uint64_t done, uint64_t total, bool final)
{
	uint64_t now = hbk_now_ns();
	if (!final && now - p->last < (p->tty ? 200000000ull : 1000000000ull))
		return;
	p->last = now;
	double secs = (double)(now - p->t0) / 1e9;
	double rate = secs > 0 ? (double)(done - HBK_MIN(done, p->base)) / secs : 0;
	char eta[32] = "--:--";
	if (final)
		snprintf(eta, sizeof(eta), "%s %.1f s", done < total ? "stopped after" : "done in", secs);
	else if (rate > 0 && done < total) {
		unsigned s = (unsigned)((double)(total - done) / rate + 0.5);
		snprintf(eta, sizeof(eta), "ETA %u:%02u", s / 60, s % 60);
	}
	fprintf(stderr, "%s%s: %5.1f%%  %8.1f MiB/s  %s%s%s", p->tty ? "\r" : "", p->what,
		total ? 100.0 * (double)done / (double)total : 100.0, rate / 1048576.0, eta,
		p->tty ? "\033[K" : "", final || !p->tty ? "\n" : "");
}

/* The background work st shows: a rebuild before a resync. */
static bool background(const struct hbk_raid_status *st, const char **what, uint64_t *done,
		       uint64_t *total)
{
	bool rebuild = st->rebuild_total > 0;
	*what = rebuild ? "rebuild" : "resync";
	*done = rebuild ? st->rebuild_done : st->resync_done;
	*total = rebuild ? st->rebuild_total : st->resync_total;
	return *done < *total;
}

/*
 * Waits for the rebuild or resync (and a hot spare about to take a failed
 * slot) with progress.  Returns 0, 130 when interrupted (the work goes on
 * at the next assembly), 1 when the array failed or a disk being rebuilt
 * onto failed.
 */
static int wait_background(struct raid_cli *c)
{
	struct hbk_raid_status st;
	struct progress p = { 0 };
	uint64_t done = 0, total = 0;
	const char *what;
	hbk_raid_status(c->a.raid, &st);
	for (int i = 0; i < 100 && st.state == HBK_RAID_DEGRADED && st.spares; i++) {
		usleep(10000);   /* the management thread activates the spare */
		hbk_raid_status(c->a.raid, &st);
	}
	int rc;
	uint64_t rebuilding = 0;   /* slots seen rebuilding */
	do {
		uint64_t d, t;
		for (unsigned s = 0; s < st.members; s++)
			if (st.member[s].state == HBK_RAID_MEMBER_REBUILDING)
				rebuilding |= 1ull << s;
		if (background(&st, &what, &d, &t)) {
			if (p.what != what) {   /* a new phase: end the line of the last */
				if (p.what)
					progress_show(&p, total, total, true);
				progress_start(&p, what, d);
			}
			done = d;
			total = t;
			progress_show(&p, d, t, false);
		}
		rc = hbk_raid_wait(c->a.raid, 200);
		hbk_raid_status(c->a.raid, &st);
	} while (rc == -ETIMEDOUT && !interrupted);
	/* A disk being rebuilt onto that failed ends its rebuild short. */
	bool lost = false;
	for (unsigned s = 0; s < st.members; s++)
		lost = lost || (rebuilding >> s & 1 && st.member[s].state == HBK_RAID_MEMBER_FAILED);
	if (p.what && !rc) {
		/* Ended: done, or stopped short (a member failed, leaving
		 * nothing to rebuild onto or to resync with). */
		uint64_t d = total, t = total;
		if (!strcmp(p.what, "rebuild") && lost)
			d = done;
		else if (!strcmp(p.what, "resync") && st.resync_done < st.resync_total) {
			d = st.resync_done;
			t = st.resync_total;
		}
		progress_show(&p, d, t, true);
	}
	if (rc == -ETIMEDOUT) {
		fprintf(stderr, "%s%s interrupted at %.1f%%: it goes on at the next hbakit raid "
			"command on this array\n", p.tty ? "\n" : "", p.what ? p.what : "work",
			total ? 100.0 * (double)done / (double)total : 0);
		return 130;
	}
	if (rc) {
		fprintf(stderr, "hbakit raid: the array has failed\n");
		return 1;
	}
	printf("the array is %s\n", hbk_raid_state_name(st.state));
	if (lost) {
		fflush(stdout);
		fprintf(stderr, "hbakit raid: the rebuild stopped: the disk it was rebuilding onto "
			"failed\n");
		return 1;
	}
	return 0;
}

/* ---- Status ------------------------------------------------------------------------------------------ */

static void json_str(const char *s)
{
	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* Why spec disk i is not open or not used, or NULL. */
static const char *problem(const struct raid_cli *c, unsigned i, char *buf, size_t len)
{
	int e = c->a.error[i];
	if (!e)
		return NULL;
	snprintf(buf, len, "%s%s", c->a.disk[i] ? "" : "cannot open: ",
		 e == -EEXIST ? "carries hbakit RAID metadata" : e == -ENOTEMPTY ? "holds data"
		 : e == -ENOSPC ? "too small" : e == -EROFS ? "read-only"
		 : hbk_strerror(e));
	return buf;
}

/* What spec disk i is: its verdict, or why it is not open. */
static const char *verdict(const struct raid_cli *c, unsigned i, char *buf, size_t len)
{
	const char *why = c->a.disk[i] ? NULL : problem(c, i, buf, len);
	return why ? why : hbk_raid_verdict_name(c->a.report.disk[i].verdict);
}

static void print_json(const struct raid_cli *c, const struct hbk_raid_status *st)
{
	char uuid[40], name[128], why[96];
	fmt_uuid(st->uuid, uuid);
	printf("{\"uuid\": \"%s\", \"level\": \"%s\", \"members\": %u, \"chunk\": %u, \"size\": %llu, "
	       "\"member_size\": %llu, \"block_size\": %u,\n \"state\": \"%s\", \"generation\": %llu, "
	       "\"clean\": %s,\n \"resync\": {\"done\": %llu, \"total\": %llu}, "
	       "\"rebuild\": {\"done\": %llu, \"total\": %llu},\n \"cache\": {\"bytes\": %llu, "
	       "\"dirty\": %llu}, \"spares\": %u,\n \"slots\": [", uuid,
	       hbk_raid_level_name(st->level), st->members, st->chunk, (unsigned long long)st->size,
	       (unsigned long long)st->member_size, st->block_size, hbk_raid_state_name(st->state),
	       (unsigned long long)st->generation, st->clean ? "true" : "false",
	       (unsigned long long)st->resync_done, (unsigned long long)st->resync_total,
	       (unsigned long long)st->rebuild_done, (unsigned long long)st->rebuild_total,
	       (unsigned long long)st->cache_bytes, (unsigned long long)st->cache_dirty, st->spares);
	for (unsigned s = 0; s < st->members; s++) {
		/* As the table's row: a slot without a disk, or failed, has no
		 * generation (null where the table shows "-"). */
		const char *d = disk_name(c, st->member[s].disk, name, sizeof(name));
		printf("%s\n  {\"slot\": %u, \"role\": \"member\", \"state\": \"%s\", \"generation\": ",
		       s ? "," : "", s, member_state_name(st->member[s].state));
		if (d && st->member[s].state != HBK_RAID_MEMBER_FAILED)
			printf("%llu", (unsigned long long)st->generation);
		else
			fputs("null", stdout);
		printf(", \"rebuilt\": %llu, \"disk\": ", (unsigned long long)st->member[s].rebuilt);
		json_str(d);
		putchar('}');
	}
	printf("],\n \"disks\": [");
	for (unsigned i = 0; i < c->spec->ndisks; i++) {
		const struct hbk_raid_report *r = &c->a.report;
		printf("%s\n  {\"disk\": ", i ? "," : "");
		json_str(c->spec->disk[i].text);
		printf(", \"verdict\": ");
		json_str(c->a.disk[i] ? hbk_raid_verdict_name(r->disk[i].verdict) : "error");
		printf(", \"slot\": %d, \"generation\": %llu, \"error\": ", slot_of(st, c, i),
		       (unsigned long long)generation(c, st, i));
		json_str(c->a.disk[i] ? NULL : verdict(c, i, why, sizeof(why)));
		putchar('}');
	}
	printf("]}\n");
}

static void print_human(const struct raid_cli *c, const struct hbk_raid_status *st)
{
	char uuid[40], size[32], chunk[32], name[128], state[32], why[96], gen[24];
	fmt_uuid(st->uuid, uuid);
	cli_fmt_capacity(st->size, size, sizeof(size));
	cli_fmt_capacity(st->chunk, chunk, sizeof(chunk));
	printf("array %s: %s of %u members, chunk %s, %s\n", uuid, hbk_raid_level_name(st->level),
	       st->members, chunk, size);
	printf("state: %s, generation %llu, %s\n", hbk_raid_state_name(st->state),
	       (unsigned long long)st->generation, st->clean ? "clean" : "dirty");
	if (st->resync_done < st->resync_total)
		printf("resync: pending, %.1f%% done\n",
		       100.0 * (double)st->resync_done / (double)st->resync_total);
	if (st->rebuild_total)
		printf("rebuild: %.1f%%\n", 100.0 * (double)st->rebuild_done / (double)st->rebuild_total);
	cli_fmt_capacity(st->cache_bytes, size, sizeof(size));
	if (st->cache_bytes)
		printf("cache: %s write-back, %llu bytes dirty\n", size, (unsigned long long)st->cache_dirty);
	else
		printf("cache: write-through\n");
	printf("%-6s %-7s %-16s %-10s %s\n", "SLOT", "ROLE", "STATE", "GENERATION", "DISK");
	for (unsigned s = 0; s < st->members; s++) {
		const char *d = disk_name(c, st->member[s].disk, name, sizeof(name));
		snprintf(state, sizeof(state), "%s", member_state_name(st->member[s].state));
		if (st->member[s].state == HBK_RAID_MEMBER_REBUILDING)
			snprintf(state, sizeof(state), "rebuilding %.0f%%",
				 100.0 * (double)st->member[s].rebuilt / (double)st->member_size);
		snprintf(gen, sizeof(gen), "%llu", (unsigned long long)st->generation);
		printf("%-6u %-7s %-16s %-10s %s\n", s, "member", state,
		       d && st->member[s].state != HBK_RAID_MEMBER_FAILED ? gen : "-", d ? d : "(missing)");
	}
	for (unsigned i = 0; i < c->spec->ndisks; i++) {
		if (slot_of(st, c, i) >= 0)
			continue;
		bool spare = c->a.disk[i] && c->a.report.disk[i].verdict == HBK_RAID_DISK_SPARE;
		snprintf(gen, sizeof(gen), "%llu", (unsigned long long)generation(c, st, i));
		printf("%-6s %-7s %-16s %-10s %s\n", "-", spare ? "spare" : "-",
		       spare ? "standby" : verdict(c, i, why, sizeof(why)),
		       generation(c, st, i) ? gen : "-", c->spec->disk[i].text);
	}
}

static int cmd_status(struct raid_cli *c)
{
	struct hbk_raid_status st;
	for (;;) {
		hbk_raid_status(c->a.raid, &st);
		if (c->json)
			print_json(c, &st);
		else
			print_human(c, &st);
		fflush(stdout);
		if (!c->watch)
			return 0;
		for (uint64_t end = hbk_now_ns() + (uint64_t)(c->watch * 1e9); hbk_now_ns() < end;) {
			if (interrupted)
				return 0;
			usleep(20000);
		}
		putchar('\n');
	}
}

/* ---- Commands ---------------------------------------------------------------------------------------- */

/*
 * The slot arg names: a slot number, or a disk of the spec that is a
 * member.  With lost_ok, a disk the array no longer uses (stale, missing)
 * stands for the failed slot when only one has failed.  Fills *st.  -1
 * with a message otherwise.
 */
static int find_slot(const struct raid_cli *c, const char *arg, bool lost_ok,
		     struct hbk_raid_status *st)
{
	char *end;
	hbk_raid_status(c->a.raid, st);
	unsigned long n = strtoul(arg, &end, 10);
	if (!*end && end != arg) {
		if (n < st->members)
			return (int)n;
		fprintf(stderr, "hbakit raid: slot %s: the array has slots 0 to %u\n", arg, st->members - 1);
		return -1;
	}
	for (unsigned i = 0; i < c->spec->ndisks; i++) {
		const struct hbk_raid_spec_disk *d = &c->spec->disk[i];
		if (strcmp(arg, d->text) && (!d->target || strcmp(arg, d->target)))
			continue;
		int s = slot_of(st, c, i), failed = -1, nfailed = 0;
		for (unsigned k = 0; k < st->members; k++)
			if (st->member[k].state == HBK_RAID_MEMBER_FAILED) {
				failed = (int)k;
				nfailed++;
			}
		if (s >= 0 || (lost_ok && nfailed == 1))
			return s >= 0 ? s : failed;
		char why[96];
		fprintf(stderr, "hbakit raid: %s is not a member of the array (%s)%s\n", arg,
			verdict(c, i, why, sizeof(why)),
			lost_ok && nfailed ? "; several slots have failed: give the slot number" : "");
		return -1;
	}
	fprintf(stderr, "hbakit raid: %s: not a slot number nor a disk of the spec\n", arg);
	return -1;
}

static int cmd_create(struct raid_cli *c)
{
	struct hbk_raid_status st;
	char uuid[40], size[32];
	hbk_raid_status(c->a.raid, &st);
	fmt_uuid(st.uuid, uuid);
	cli_fmt_capacity(st.size, size, sizeof(size));
	printf("created %s %s of %u members, %s\n", hbk_raid_level_name(st.level), uuid, st.members, size);
	for (unsigned i = 0; i < c->spec->ndisks; i++)
		if (c->spec->disk[i].kind == HBK_RAID_SPEC_MEM || c->spec->disk[i].kind == HBK_RAID_SPEC_NULL) {
			printf("note: with memory or null disks the array lasts only as long as this command\n");
			break;
		}
	fflush(stdout);
	return wait_background(c);
}

static int cmd_fail(struct raid_cli *c)
{
	struct hbk_raid_status st;
	int slot = find_slot(c, c->arg[0], false, &st);
	if (slot < 0)
		return 1;
	if (hbk_raid_fail_stops(c->a.raid, (unsigned)slot) && !c->spec->opts.force) {
		fprintf(stderr, "hbakit raid: slot %d: failing it would leave the %s without the members "
			"it needs: the array would stop and no assembly would take it again (force to "
			"fail it anyway)\n", slot, hbk_raid_level_name(st.level));
		return 1;
	}
	int err = hbk_raid_fail(c->a.raid, (unsigned)slot);
	if (err) {
		fprintf(stderr, "hbakit raid: slot %d: %s\n", slot,
			err == -EALREADY ? "has failed already" : hbk_strerror(err));
		return 1;
	}
	hbk_raid_status(c->a.raid, &st);
	printf("slot %d failed: the array is %s%s\n", slot, hbk_raid_state_name(st.state),
	       st.state == HBK_RAID_REBUILDING ? " onto a hot spare (hbakit raid rebuild goes on with it)"
					       : "");
	return st.state == HBK_RAID_FAILED;
}

static int cmd_replace(struct raid_cli *c)
{
	struct hbk_raid_status st;
	int slot = find_slot(c, c->arg[0], true, &st);
	if (slot < 0)
		return 1;
	struct hbk_disk *d;
	int err = hbk_raid_spec_attach(&c->a, c->arg[1], &d);
	if (!err && (err = hbk_raid_replace(c->a.raid, (unsigned)slot, d)))
		snprintf(c->a.message, sizeof(c->a.message), "slot %d: %s", slot,
			 err == -EBUSY ? "has not failed (hbakit raid fail first)"
			 : err == -EINVAL ? "the new disk is too small, read-only, or already in the array"
			 : hbk_strerror(err));
	if (err) {
		fprintf(stderr, "hbakit raid: %s\n", c->a.message);
		return 1;
	}
	char *end;
	strtoul(c->arg[0], &end, 10);
	printf("slot %d: rebuilding onto %s; list it in the spec from now on%s%s\n", slot, c->arg[1],
	       *end ? " instead of " : "", *end ? c->arg[0] : "");
	fflush(stdout);
	return wait_background(c);
}

static int cmd_rebuild(struct raid_cli *c)
{
	int rc = wait_background(c);
	struct hbk_raid_status st;
	hbk_raid_status(c->a.raid, &st);
	if (!rc && st.state == HBK_RAID_DEGRADED) {
		fprintf(stderr, "hbakit raid: no spare to rebuild onto: add spare=DISK to the spec or "
			"use hbakit raid replace\n");
		return 1;
	}
	return rc;
}

struct scrub_job {
	struct hbk_raid *r;
	bool repair;
	struct hbk_raid_scrub out;
	int rc;
	atomic_bool done;
};

static void *scrub_main(void *arg)
{
	struct scrub_job *j = arg;
	j->rc = hbk_raid_scrub(j->r, j->repair, &j->out);
	atomic_store(&j->done, true);
	return NULL;
}

/* Member bytes read so far, over all members. */
static uint64_t member_reads(const struct hbk_raid_status *st)
{
	uint64_t sum = 0;
	for (unsigned s = 0; s < st->members; s++)
		if (st->member[s].disk) {
			struct hbk_disk_stats ds;
			hbk_disk_stats(st->member[s].disk, &ds);
			sum += ds.read_bytes;
		}
	return sum;
}

/* A scrub on its own thread; progress from what the members have read. */
static int scrub(struct raid_cli *c, const struct hbk_raid_status *st)
{
	struct scrub_job j = { .r = c->a.raid, .repair = c->repair };
	struct progress p;
	uint64_t base = member_reads(st);
	pthread_t t;
	if (pthread_create(&t, NULL, scrub_main, &j)) {
		fprintf(stderr, "hbakit raid: cannot start the check\n");
		return 1;
	}
	progress_start(&p, "check", 0);
	while (!atomic_load(&j.done)) {
		if (interrupted) {
			fprintf(stderr, "\ncheck interrupted\n");
			_exit(130);   /* the scrub cannot be stopped midway */
		}
		usleep(20000);
		progress_show(&p, HBK_MIN((member_reads(st) - base) / st->members, st->member_size),
			      st->member_size, false);
	}
	pthread_join(t, NULL);
	if (j.rc) {
		fprintf(stderr, "hbakit raid: check failed: %s\n", hbk_strerror(j.rc));
		return 1;
	}
	progress_show(&p, st->member_size, st->member_size, true);
	printf("checked %llu stripes: %llu mismatches", (unsigned long long)j.out.stripes,
	       (unsigned long long)j.out.mismatches);
	if (j.out.mismatches)
		printf(" (the first in stripe %llu)%s", (unsigned long long)j.out.first_mismatch,
		       c->repair ? ", repaired" : "; hbakit raid check --repair rewrites the parity");
	printf("\n");
	return j.out.mismatches ? 3 : 0;
}

/* Without redundancy to compare (RAID 0, degraded): read every stripe. */
static int read_all(struct raid_cli *c, const struct hbk_raid_status *st)
{
	const uint64_t step = 1u << 20;
	uint8_t *buf = malloc(step);
	uint64_t bad = 0;
	struct progress p;
	if (!buf)
		return 1;
	printf("%s: no redundancy to compare; reading every stripe instead\n",
	       st->state == HBK_RAID_OPTIMAL ? "raid0" : "the array is degraded");
	fflush(stdout);   /* before the progress on stderr, in a pipe too */
	progress_start(&p, "read", 0);
	for (uint64_t off = 0; off < st->size && !interrupted; off += step) {
		uint64_t len = HBK_MIN(step, st->size - off);
		bad += hbk_raid_rw(c->a.raid, HBK_DISK_READ, buf, off, len, 0) ? len : 0;
		progress_show(&p, off + len, st->size, off + len == st->size);
	}
	free(buf);
	if (interrupted)
		return 130;
	printf("read %llu bytes: %llu unreadable\n", (unsigned long long)st->size, (unsigned long long)bad);
	return bad ? 1 : 0;
}

static int cmd_check(struct raid_cli *c)
{
	struct hbk_raid_status st;
	hbk_raid_status(c->a.raid, &st);
	if (st.resync_done < st.resync_total || st.rebuild_total) {
		fprintf(stderr, "hbakit raid: waiting for the %s first\n", st.rebuild_total ? "rebuild" : "resync");
		int rc = wait_background(c);
		if (rc)
			return rc;
		hbk_raid_status(c->a.raid, &st);
	}
	if (st.state == HBK_RAID_OPTIMAL && st.level != HBK_RAID0)
		return scrub(c, &st);
	return read_all(c, &st);
}

/* ---- Dispatch ----------------------------------------------------------------------------------------- */

static const struct command commands[] = {
	{ "create", 0, HBK_RAID_SPEC_CREATE, O_FORCE | O_ASSUME_CLEAN | O_RATE, cmd_create,
	  "create SPEC [--assume-clean] [--force] [--rate BYTES/S]" },
	{ "status", 0, HBK_RAID_SPEC_ASSEMBLE, O_JSON | O_WATCH | O_FORCE | O_SPLIT, cmd_status,
	  "status SPEC [--json] [--watch SECONDS] [--force] [--accept-split-brain]" },
	{ "fail", 1, HBK_RAID_SPEC_ASSEMBLE, O_FORCE | O_SPLIT, cmd_fail,
	  "fail SPEC SLOT|DISK [--force] [--accept-split-brain]" },
	{ "replace", 2, HBK_RAID_SPEC_ASSEMBLE, O_FORCE | O_SPLIT | O_RATE, cmd_replace,
	  "replace SPEC SLOT|DISK NEWDISK [--force] [--accept-split-brain] [--rate BYTES/S]" },
	{ "rebuild", 0, HBK_RAID_SPEC_ASSEMBLE, O_FORCE | O_SPLIT | O_RATE, cmd_rebuild,
	  "rebuild SPEC [--force] [--accept-split-brain] [--rate BYTES/S]" },
	{ "check", 0, HBK_RAID_SPEC_ASSEMBLE, O_FORCE | O_SPLIT | O_REPAIR, cmd_check,
	  "check SPEC [--repair] [--force] [--accept-split-brain]" },
};

static int usage(FILE *f, int rc)
{
	fprintf(f, "usage: hbakit raid COMMAND SPEC [operands] [options]\n");
	for (unsigned i = 0; i < HBK_ARRAY_SIZE(commands); i++)
		fprintf(f, "  hbakit raid %s\n", commands[i].usage);
	fprintf(f,
		"SPEC: level=5,chunk=64k,disk=file:/var/tmp/d0.img,...,spare=file:...  or\n"
		"      profile=raid0-2hdd | profile=lsi3108-raid5 [,key=value]...  (docs/raid.md)\n"
		"  --assume-clean   create: the disks are consistent already (zeroed): no resync\n"
		"  --force          create over disks carrying metadata; replace with one; assemble\n"
		"                   without the disks that cannot be opened (they go stale), or\n"
		"                   an array that is both dirty and degraded; fail a member the\n"
		"                   array cannot do without\n"
		"  --accept-split-brain  assemble past a split brain: keep the newest side\n"
		"                   of the disks given and drop for good what the others\n"
		"                   wrote on their own\n"
		"  --rate BYTES/S   limit the rebuild or resync (e.g. 50m)\n"
		"  --json           status as JSON\n"
		"  --watch SECONDS  status again every SECONDS until interrupted\n"
		"  --repair         check: rewrite the parity or copies that disagree\n"
		"exit status: 0 done, 1 failed, 2 usage, 3 check found mismatches, 130 interrupted\n");
	return rc;
}

/* Parses the options and operands of command cmd into c.  Returns 0 or 2. */
static int parse_args(const struct command *cmd, struct raid_cli *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, O_JSON }, { "watch", required_argument, NULL, O_WATCH },
		{ "force", no_argument, NULL, O_FORCE }, { "assume-clean", no_argument, NULL, O_ASSUME_CLEAN },
		{ "accept-split-brain", no_argument, NULL, O_SPLIT },
		{ "rate", required_argument, NULL, O_RATE }, { "repair", no_argument, NULL, O_REPAIR },
		{ NULL, 0, NULL, 0 },
	};
	unsigned given = 0;
	uint64_t rate = 0;
	const char *spec = NULL;
	int o;
	optind = 1;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		char *end = NULL;
		if (o == ':') {
			fprintf(stderr, "hbakit raid: %s needs a value\n", argv[optind - 1]);
			return 2;
		}
		if (o == '?' || !(cmd->opts & (unsigned)o)) {
			fprintf(stderr, "hbakit raid %s: %s is not an option of this command\n", cmd->name,
				argv[optind - 1]);
			return 2;
		}
		given |= (unsigned)o;
		if (o == O_WATCH && (!((c->watch = strtod(optarg, &end)) > 0 && c->watch <= 86400) ||
				     *end)) {
			fprintf(stderr, "hbakit raid: --watch takes seconds\n");
			return 2;
		}
		if (o == O_RATE && !hbk_parse_size(optarg, &rate)) {
			fprintf(stderr, "hbakit raid: --rate takes bytes per second (e.g. 50m)\n");
			return 2;
		}
	}
	if (argc - optind != 1 + (int)cmd->nargs) {
		fprintf(stderr, "usage: hbakit raid %s\n", cmd->usage);
		return 2;
	}
	spec = argv[optind];
	for (unsigned i = 0; i < cmd->nargs; i++)
		c->arg[i] = argv[optind + 1 + i];
	char err[256];
	if (hbk_raid_spec_parse(spec, &c->spec, err, sizeof(err))) {
		fprintf(stderr, "hbakit raid: %s\n", err);
		return 2;
	}
	c->json = given & O_JSON;
	c->repair = given & O_REPAIR;
	c->spec->opts.force = given & O_FORCE;
	c->spec->opts.accept_split_brain = given & O_SPLIT;
	c->spec->cfg.assume_clean = given & O_ASSUME_CLEAN;
	if (given & O_RATE)
		c->spec->opts.rebuild_rate = rate;
	return 0;
}

int cli_raid(int argc, char **argv)
{
	const struct command *cmd = NULL;
	if (argc < 2)
		return usage(stderr, 2);
	for (unsigned i = 0; i < HBK_ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			cmd = &commands[i];
	if (!cmd && cli_is_help(argv[1]))
		return usage(stdout, 0);
	if (!cmd) {
		fprintf(stderr, "hbakit raid: unknown %s '%s'\n", argv[1][0] == '-' ? "option" : "command",
			argv[1]);
		return usage(stderr, 2);
	}
	for (int i = 2; i < argc; i++)
		if (cli_is_help(argv[i]))
			return usage(stdout, 0);
	struct raid_cli c = { 0 };
	int rc = parse_args(cmd, &c, argc - 1, argv + 1);
	if (rc)
		return rc;
	hbk_log_set_who("raid");
	/* A closed terminal (SIGHUP) or a reader gone from the pipe of the
	 * progress (SIGPIPE: the write then fails with EPIPE) stop the work as
	 * Ctrl-C does, with the array closed cleanly: killed, a rebuild or
	 * resync would lose what it did since its cursor was last saved. */
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	int err = hbk_raid_spec_open(c.spec, cmd->mode, &c.a);
	char why[96];
	for (unsigned i = 0; i < c.spec->ndisks; i++)
		if (c.a.error[i] && c.a.error[i] != -EBUSY)
			fprintf(stderr, "hbakit raid: %s: %s%s\n", c.spec->disk[i].text,
				problem(&c, i, why, sizeof(why)), err ? "" : " (not used)");
	if (err) {
		fprintf(stderr, "hbakit raid: %s\n", c.a.message);
		rc = 1;
	} else {
		rc = cmd->run(&c);
	}
	hbk_raid_spec_close(&c.a);
	hbk_raid_spec_free(c.spec);
	return rc;
}
