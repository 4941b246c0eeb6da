/* SPDX-License-Identifier: MIT */
/*
 * Array specs: one comma-separated string that names an array's level,
 * geometry, cache and member disks (or a profile of the story's hardware),
 * parsed once for `hbakit raid` and the raid driver alike; and opening a
 * spec: the disks opened and locked against other processes, the latency
 * model applied, and the array created or assembled with a per-disk report.
 * Grammar and profiles: docs/raid.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "raid/raid_priv.h"

/* The story's setups (../shared/seed): a RAID 0 of two HDDs, and an LSI
 * 3108-class RAID 5 of four HDDs with 1 GiB of controller cache and the
 * MegaRAID default strip of 256 KiB. */
static const struct {
	const char *name, *text;
} profiles[] = {
	{ "raid0-2hdd", "level=0,chunk=64k,members=2,size=1g,latency=hdd" },
	{ "lsi3108-raid5", "level=5,chunk=256k,members=4,size=1g,cache=1g,latency=hdd" },
};

enum key { K_PROFILE, K_LEVEL, K_CHUNK, K_SIZE, K_MEMBERS, K_SPARES, K_CACHE, K_LATENCY,
	   K_DIRECT, K_POLL, K_WORKERS, K_RATE, K_DISK, K_SPARE, K_COUNT };
static const char *const key_name[K_COUNT] = { "profile", "level", "chunk", "size", "members",
	"spares", "cache", "latency", "direct", "poll", "workers", "rebuild-rate", "disk", "spare" };

static const char *const kind_prefix[] = { [HBK_RAID_SPEC_FILE] = "file:",
	[HBK_RAID_SPEC_MEM] = "mem:", [HBK_RAID_SPEC_NULL] = "null:", [HBK_RAID_SPEC_NBD] = "nbd:" };

struct parse {
	struct hbk_raid_spec *s;
	uint32_t seen;             /* keys given in the text being applied */
	uint32_t user;             /* keys given by the user (not the profile) */
	unsigned members, spares;  /* members=, spares= */
	unsigned nspare;
	struct hbk_raid_spec_disk spare[HBK_RAID_MAX_SPARES];
	char *err;
	size_t errlen;
};

/* Writes "spec: KEY[=VALUE]: why" (or "spec: why" without a key) to the
 * caller's buffer; returns -EINVAL. */
static int bad(struct parse *p, const char *key, const char *value, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int bad(struct parse *p, const char *key, const char *value, const char *fmt, ...)
{
	if (!p->errlen)
		return -EINVAL;
	int n = snprintf(p->err, p->errlen, "spec: %s%s%s%s", key ? key : "", value ? "=" : "",
			 value ? value : "", key ? ": " : "");
	if (n >= 0 && (size_t)n < p->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}


/* The index of v in names[0..n), or -1. */
static int pick(const char *v, const char *const *names, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(v, names[i]))
			return (int)i;
	return -1;
}

static int parse_count(struct parse *p, const char *key, const char *v, unsigned lo,
		       unsigned hi, unsigned *out)
{
	uint64_t n;
	if (!hbk_parse_size(v, &n) || n < lo || n > hi)
		return bad(p, key, v, "not a number from %u to %u", lo, hi);
	*out = (unsigned)n;
	return 0;
}

/* One disk: KIND:ARG, or a path.  d's strings point into v. */
static int parse_disk(struct parse *p, const char *key, const char *v, struct hbk_raid_spec_disk *d)
{
	*d = (struct hbk_raid_spec_disk){ .kind = HBK_RAID_SPEC_FILE, .text = v, .target = v };
	bool found = *v == '/' || *v == '.';
	for (unsigned k = 0; k < HBK_ARRAY_SIZE(kind_prefix) && !found; k++)
		if (!strncmp(v, kind_prefix[k], strlen(kind_prefix[k]))) {
			d->kind = (enum hbk_raid_spec_kind)k;
			d->target = v + strlen(kind_prefix[k]);
			found = true;
		}
	if (!found)
		return bad(p, key, v, "not a disk (file:PATH, mem:SIZE, null:SIZE, nbd:URI or a path "
			   "starting with / or .)");
	if (d->kind == HBK_RAID_SPEC_FILE || d->kind == HBK_RAID_SPEC_NBD) {
		if (!*d->target)
			return bad(p, key, v, "no %s", d->kind == HBK_RAID_SPEC_FILE ? "path" : "URI");
		return 0;
	}
	if (!hbk_parse_size(d->target, &d->size) || d->size % 512 || d->size < DATA_OFFSET + 4096)
		return bad(p, key, v, "size must be a multiple of 512 above the 1 MiB metadata area");
	d->target = NULL;
	return 0;
}

static int apply_text(struct parse *p, char *text, size_t len, bool user);

static int apply_profile(struct parse *p, const char *v)
{
	for (unsigned i = 0; i < HBK_ARRAY_SIZE(profiles); i++) {
		if (strcmp(v, profiles[i].name))
			continue;
		char *copy = strdup(profiles[i].text);
		if (!copy)
			return -ENOMEM;
		snprintf(p->s->profile, sizeof(p->s->profile), "%s", v);
		int err = apply_text(p, copy, strlen(copy), false);
		free(copy);
		return err;
	}
	return bad(p, "profile", v, "unknown profile (raid0-2hdd, lsi3108-raid5)");
}

/* Applies one item, split into its key and value (NULL: there was no '='). */
static int apply_kv(struct parse *p, const char *item, const char *v, bool user)
{
	struct hbk_raid_spec *s = p->s;
	if (!*item && !v)
		return bad(p, NULL, NULL, "an empty entry: two commas in a row or a comma at an end");
	if (!v)
		return bad(p, item, NULL, "expected key=value");
	int k = pick(item, key_name, K_COUNT);
	if (k < 0)
		return bad(p, item, v, "unknown key (profile, level, chunk, size, members, spares, cache, "
			   "latency, direct, poll, workers, rebuild-rate, disk, spare)");
	if (k != K_DISK && k != K_SPARE && k != K_PROFILE && (p->seen & (1u << k)))
		return bad(p, item, v, "given twice");
	p->seen |= 1u << k;
	p->user |= user ? 1u << k : 0;
	if (!*v)
		return bad(p, item, NULL, "no value");
	static const char *const levels[] = { "0", "1", "5", "6", "10" };
	static const char *const models[] = { "none", "hdd", "ssd" };
	static const char *const direct[] = { "auto", "on", "off" };   /* enum hbk_disk_direct */
	uint64_t n;
	int i;
	switch ((enum key)k) {
	case K_PROFILE:
		return apply_profile(p, v);
	case K_LEVEL:
		if ((i = pick(strncmp(v, "raid", 4) ? v : v + 4, levels, HBK_ARRAY_SIZE(levels))) < 0)
			return bad(p, item, v, "not a RAID level (0, 1, 5, 6, 10)");
		s->cfg.level = (enum hbk_raid_level)atoi(levels[i]);
		return 0;
	case K_CHUNK:
		if (!hbk_parse_size(v, &n) || n < 4096 || n > (1u << 20) || (n & (n - 1)))
			return bad(p, item, v, "not a power of two from 4k to 1m");
		s->cfg.chunk = (uint32_t)n;
		return 0;
	case K_SIZE:
		if (!hbk_parse_size(v, &s->cfg.member_size) || !s->cfg.member_size)
			return bad(p, item, v, "not a size (e.g. 64m, 1g)");
		/* Past 2^60 the metadata area and the stripe sums would wrap. */
		if (s->cfg.member_size > 1ull << 60)
			return bad(p, item, v, "larger than 1 EiB");
		return 0;
	case K_MEMBERS:
		return parse_count(p, item, v, 1, HBK_RAID_MAX_MEMBERS, &p->members);
	case K_SPARES:
		return parse_count(p, item, v, 0, HBK_RAID_MAX_SPARES, &p->spares);
	case K_CACHE:
		if (!hbk_parse_size(v, &s->opts.cache_bytes))
			return bad(p, item, v, "not a size (0 for write-through, e.g. 256m, 1g)");
		if (s->opts.cache_bytes > raid_cache_limit())
			return bad(p, item, v, "larger than half of this machine's memory");
		return 0;
	case K_LATENCY:
		if ((i = pick(v, models, HBK_ARRAY_SIZE(models))) < 0)
			return bad(p, item, v, "not a latency model (none, hdd, ssd)");
		s->latency = i == 1 ? hbk_disk_hdd_7200 : i == 2 ? hbk_disk_ssd_sata
			   : (struct hbk_disk_latency){ .model = HBK_DISK_MODEL_NONE };
		return 0;
	case K_DIRECT:
		if ((i = pick(v, direct, HBK_ARRAY_SIZE(direct))) < 0)
			return bad(p, item, v, "not auto, on or off");
		s->direct = (enum hbk_disk_direct)i;
		return 0;
	case K_POLL:
		return parse_count(p, item, v, 0, 1000, &s->poll_ms);
	case K_WORKERS:
		return parse_count(p, item, v, 1, 64, &s->opts.workers);
	case K_RATE:
		if (!hbk_parse_size(v, &s->opts.rebuild_rate))
			return bad(p, item, v, "not bytes per second (0 for unlimited, e.g. 100m)");
		return 0;
	case K_DISK:
		if (s->nmembers == HBK_RAID_MAX_MEMBERS)
			return bad(p, item, v, "more than %u members", HBK_RAID_MAX_MEMBERS);
		return parse_disk(p, item, v, &s->disk[s->nmembers++]);
	case K_SPARE:
		if (p->nspare == HBK_RAID_MAX_SPARES)
			return bad(p, item, v, "more than %u spares", HBK_RAID_MAX_SPARES);
		return parse_disk(p, item, v, &p->spare[p->nspare++]);
	case K_COUNT:
		break;
	}
	return -EINVAL;
}

/* Applies one key=value item (NUL-terminated), leaving it as it was. */
static int apply(struct parse *p, char *item, bool user)
{
	char *eq = strchr(item, '=');
	if (eq)
		*eq = 0;
	int err = apply_kv(p, item, eq ? eq + 1 : NULL, user);
	if (eq)
		*eq = '=';
	return err;
}

/* Applies every item of text (len bytes, commas become NULs): the profile
 * first, so the other keys override it. */
static int apply_text(struct parse *p, char *text, size_t len, bool user)
{
	char *end = text + len;
	for (char *c = text; c < end; c++)
		if (*c == ',')
			*c = 0;
	int err = 0;
	unsigned nprofile = 0;
	for (char *it = text; it <= end && !err; it += strlen(it) + 1)
		if (!strncmp(it, "profile=", 8))
			err = nprofile++ ? bad(p, "profile", NULL, "given twice") : apply(p, it, user);
	p->seen = 0;
	for (char *it = text; it <= end && !err; it += strlen(it) + 1)
		if (strncmp(it, "profile=", 8))
			err = apply(p, it, user);
	return err;
}

static unsigned min_members(enum hbk_raid_level l)
{
	return l == HBK_RAID1 ? 2 : l == HBK_RAID5 ? 3 : l == HBK_RAID6 || l == HBK_RAID10 ? 4 : 1;
}

static void add_mem(struct hbk_raid_spec *s, uint64_t size)
{
	s->disk[s->ndisks++] = (struct hbk_raid_spec_disk){ .kind = HBK_RAID_SPEC_MEM, .text = "mem",
							    .size = size };
}

/* Cross-key checks, and memory disks where no disk= was given. */
static int finish(struct parse *p)
{
	struct hbk_raid_spec *s = p->s;
	if (!(p->user & (1u << K_LEVEL)) && !s->profile[0])
		return bad(p, "level", NULL, "missing (give level= or profile=)");
	if (!s->cfg.chunk)
		s->cfg.chunk = 64u << 10;
	bool mem = !s->nmembers;
	if (mem) {
		if (!s->cfg.member_size)
			return bad(p, "size", NULL, "missing: without disk= the members are memory disks "
				   "of size= bytes each");
		unsigned n = p->members ? p->members : HBK_MAX(2u, min_members(s->cfg.level));
		for (unsigned i = 0; i < n; i++)
			add_mem(s, DATA_OFFSET + s->cfg.member_size);
		s->nmembers = n;
	} else if (p->user & (1u << K_MEMBERS | 1u << K_SPARES)) {
		return bad(p, p->user & (1u << K_MEMBERS) ? "members" : "spares", NULL,
			   "only for memory disks: the disk= and spare= entries are the disks");
	} else {
		s->ndisks = s->nmembers;
		if (!(p->user & (1u << K_SIZE)))
			s->cfg.member_size = 0;   /* a profile's size is for memory disks */
	}
	unsigned n = s->nmembers, want = min_members(s->cfg.level);
	char level[4];
	snprintf(level, sizeof(level), "%d", (int)s->cfg.level);
	if (n < want || (s->cfg.level == HBK_RAID10 && n % 2))
		return bad(p, "level", level, "needs at least %u members%s, the spec has %u", want,
			   s->cfg.level == HBK_RAID10 ? " and an even number" : "", n);
	if (s->cfg.member_size && (s->cfg.member_size < s->cfg.chunk || s->cfg.member_size % s->cfg.chunk))
		return bad(p, "size", NULL, "%llu bytes is not a multiple of the chunk (%u bytes)",
			   (unsigned long long)s->cfg.member_size, s->cfg.chunk);
	if (p->nspare + p->spares > HBK_RAID_MAX_SPARES)
		return bad(p, "spares", NULL, "more than %u spares with the spare= entries",
			   HBK_RAID_MAX_SPARES);
	for (unsigned i = 0; i < p->nspare; i++)
		s->disk[s->ndisks++] = p->spare[i];
	for (unsigned i = 0; i < p->spares; i++)
		add_mem(s, DATA_OFFSET + s->cfg.member_size);
	if (s->ndisks > s->nmembers && s->cfg.level == HBK_RAID0)
		return bad(p, p->nspare ? "spare" : "spares", NULL,
			   "RAID 0 has no redundancy to rebuild a spare from");
	return 0;
}

int hbk_raid_spec_parse(const char *text, struct hbk_raid_spec **out, char *err, size_t errlen)
{
	struct hbk_raid_spec *s = calloc(1, sizeof(*s));
	struct parse p = { .s = s, .err = err, .errlen = errlen };
	if (errlen)
		err[0] = 0;
	if (!s || !(s->text_ = strdup(text))) {
		free(s);
		return -ENOMEM;
	}
	int rc = *text ? apply_text(&p, s->text_, strlen(text), true) : bad(&p, NULL, NULL, "empty");
	if (!rc)
		rc = finish(&p);
	if (rc) {
		hbk_raid_spec_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int hbk_raid_spec_size(const char *text, uint64_t *out)
{
	return hbk_parse_size(text, out) ? 0 : -EINVAL;
}

void hbk_raid_spec_free(struct hbk_raid_spec *s)
{
	if (s)
		free(s->text_);
	free(s);
}

/* ---- Opening a spec ------------------------------------------------------------------------- */

/* Sets a->message unless an earlier failure set it; returns err. */
static int say(struct hbk_raid_spec_array *a, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int say(struct hbk_raid_spec_array *a, int err, const char *fmt, ...)
{
	if (!a->message[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(a->message, sizeof(a->message), fmt, ap);
		va_end(ap);
	}
	return err;
}

/* The open disk that is the file st describes, or -1. */
static int same_file(const struct hbk_raid_spec_array *a, const struct stat *st)
{
	for (unsigned i = 0; i < a->ndisks; i++) {
		struct stat o;
		if (a->lock_fd_[i] >= 0 && !fstat(a->lock_fd_[i], &o) && o.st_dev == st->st_dev &&
		    o.st_ino == st->st_ino)
			return (int)i;
	}
	return -1;
}

static const char *disk_text(const struct hbk_raid_spec_array *a, unsigned i)
{
	return i < a->spec_->ndisks ? a->spec_->disk[i].text : a->text_[i];
}

/* Opens and locks file disk `i` (created with create_size bytes if missing
 * and create_size > 0). */
static int open_file(struct hbk_raid_spec_array *a, unsigned i, const char *path,
		     uint64_t create_size, struct hbk_disk **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && create_size) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		/* Locked at once: the file is this open's to remove only while no
		 * other process can have taken it up. */
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB)) {
			close(fd);
			return say(a, -EBUSY, "%s: in use by another process", disk_text(a, i));
		}
		if (fd >= 0 && ftruncate(fd, (off_t)create_size)) {
			int err = -errno;
			unlink(path);
			close(fd);
			return err;
		}
		a->made_[i] = fd >= 0;
	}
	if (fd < 0)
		return -errno;
	struct stat st;
	int err = fstat(fd, &st) ? -errno : 0, other = err ? -1 : same_file(a, &st);
	const char *t = disk_text(a, i);
	if (other >= 0)
		err = say(a, -EBUSY, "%s: the same file as %s", t, disk_text(a, (unsigned)other));
	else if (!err && flock(fd, LOCK_EX | LOCK_NB))
		err = errno == EWOULDBLOCK ? say(a, -EBUSY, "%s: in use by another process", t) : -errno;
	if (!err) {
		struct hbk_disk_file_opts fo = { .direct = a->spec_->direct,
						 .poll_ms = a->spec_->poll_ms };
		err = hbk_disk_open_file(path, &fo, out);
	}
	if (err) {
		if (a->made_[i])
			unlink(path);
		a->made_[i] = false;
		close(fd);
	} else {
		a->lock_fd_[i] = fd;
	}
	return err;
}

/* A create that failed removes the files it made (still locked, so no
 * other process can have started using them), and leaves the rest as
 * they were.  Returns err. */
static int unmake_files(struct hbk_raid_spec_array *a, int err)
{
	for (unsigned i = 0; i < a->ndisks && i < a->spec_->ndisks; i++) {
		if (a->made_[i] && unlink(a->spec_->disk[i].target))
			hbk_log(HBK_LOG_WARN, "%s: cannot remove the file this create made: %s",
				a->spec_->disk[i].text, strerror(errno));
		a->made_[i] = false;
	}
	return err;
}

/* Opens disk d as a->disk[i] with the spec's latency model.  Returns 0 or
 * -errno (-EBUSY: in use, a->message says by whom). */
static int open_disk(struct hbk_raid_spec_array *a, unsigned i, const struct hbk_raid_spec_disk *d,
		     uint64_t create_size)
{
	struct hbk_disk *disk = NULL;
	int err = -EINVAL;
	switch (d->kind) {
	case HBK_RAID_SPEC_FILE: err = open_file(a, i, d->target, create_size, &disk); break;
	case HBK_RAID_SPEC_MEM: err = hbk_disk_open_mem(d->size, &disk); break;
	case HBK_RAID_SPEC_NULL: err = hbk_disk_open_null(d->size, &disk); break;
	case HBK_RAID_SPEC_NBD: err = hbk_disk_open_nbd(d->target, &disk); break;
	}
	const struct hbk_disk_latency *lat = &a->spec_->latency;
	if (!err && lat->model != HBK_DISK_MODEL_NONE && (err = hbk_disk_set_latency(disk, lat))) {
		hbk_disk_close(disk);
		disk = NULL;
	}
	a->disk[i] = disk;
	a->error[i] = err;
	return err;
}

/* Whether d carries an hbakit superblock (the magic at offset 0). */
static bool has_metadata(struct hbk_disk *d)
{
	void *sb;
	if (posix_memalign(&sb, SB_SIZE, SB_SIZE))
		return false;
	bool yes = !hbk_disk_rw(d, HBK_DISK_READ, sb, 0, SB_SIZE, 0) && !memcmp(sb, "HBKRAID", 8);
	free(sb);
	return yes;
}

/* Whether d holds something: a byte other than zero in its first or last
 * 64 KiB, where partition tables, filesystems and other RAID metadata put
 * their labels.  A disk that cannot be read counts as holding data. */
static bool holds_data(struct hbk_disk *d)
{
	enum { PROBE = 64 * 1024 };
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	uint64_t len = HBK_MIN((uint64_t)PROBE, di.size - di.size % di.block_size);
	uint8_t *buf;
	if (!len || posix_memalign((void **)&buf, 4096, PROBE))
		return !!len;
	bool data = false;
	uint64_t at[2] = { 0, di.size - di.size % di.block_size - len };
	for (unsigned k = 0; k < 2 && !data; k++) {
		if (hbk_disk_rw(d, HBK_DISK_READ, buf, at[k], len, 0)) {
			data = true;
			break;
		}
		for (uint64_t i = 0; i < len && !data; i++)
			data = buf[i] != 0;
	}
	free(buf);
	return data;
}

/* The superblock area of disk d into sb (SB_SIZE bytes); false if it
 * cannot be read. */
static bool read_sb(struct hbk_disk *d, void *sb)
{
	return !hbk_disk_rw(d, HBK_DISK_READ, sb, 0, SB_SIZE, 0);
}

/*
 * After a create failed (a member or a spare refused its metadata): the
 * disks that took a superblock would carry an array that was never made,
 * so where the superblock area differs from what it held before
 * (before[i], NULL: unread, left alone), it is zeroed.  Not put back: the
 * create's resync may have written the data area already, and an old
 * array's superblock put back over that would serve it as its own.
 * Returns how many disks could not be wiped, the first in *first.
 */
static unsigned wipe_failed_create(struct hbk_raid_spec_array *a, uint8_t *const *before,
				   unsigned *first)
{
	const struct hbk_raid_spec *s = a->spec_;
	unsigned left = 0;
	void *now;
	if (posix_memalign(&now, SB_SIZE, SB_SIZE))
		return s->ndisks;
	for (unsigned i = 0; i < s->ndisks; i++) {
		if (!before[i] || (read_sb(a->disk[i], now) && !memcmp(now, before[i], SB_SIZE)))
			continue;
		memset(now, 0, SB_SIZE);
		if (hbk_disk_rw(a->disk[i], HBK_DISK_WRITE, now, 0, SB_SIZE, HBK_DISK_FUA) &&
		    has_metadata(a->disk[i]))
			*first = left++ ? *first : i;
	}
	free(now);
	return left;
}

static int create_array(struct hbk_raid_spec_array *a)
{
	const struct hbk_raid_spec *s = a->spec_;
	unsigned unopened = 0, used = 0, full = 0, small = 0, ro = 0, first = 0, first_ro = 0;
	int err = 0;
	uint64_t need = DATA_OFFSET + HBK_MAX(s->cfg.member_size, s->cfg.chunk);
	for (unsigned i = 0; i < s->ndisks; i++) {
		struct hbk_disk_info di;
		if (!a->disk[i]) {
			if (!unopened++) {
				err = a->error[i];
				first = i;
			}
			continue;
		}
		hbk_disk_info(a->disk[i], &di);
		/* Members and spares alike: a spare that cannot be added
		 * would fail the create after the members were written. */
		if (di.read_only) {
			a->error[i] = -EROFS;
			first_ro = ro++ ? first_ro : i;
		} else if (has_metadata(a->disk[i]) && !s->opts.force) {
			a->error[i] = -EEXIST;
			used++;
		} else if (!s->opts.force && holds_data(a->disk[i])) {
			a->error[i] = -ENOTEMPTY;
			full++;
		} else if (di.size < need) {
			a->error[i] = -ENOSPC;
			small++;
		}
	}
	if (unopened)
		return say(a, err, "cannot create the array: %u of the disks cannot be opened (%s: %s)%s",
			   unopened, s->disk[first].text, hbk_strerror(err),
			   err == -ENOENT && !s->cfg.member_size ?
			   "; a missing file is created only with size=" : "");
	if (ro)
		return say(a, -EROFS, "cannot create the array: %u of the disks are read-only (%s)", ro,
			   s->disk[first_ro].text);
	if (used)
		return say(a, -EEXIST, "%u of the disks carry hbakit RAID metadata: force to overwrite it",
			   used);
	if (full)
		return say(a, -EEXIST, "%u of the disks hold data (not an hbakit array's): force to "
			   "overwrite it", full);
	if (small)
		return say(a, -EINVAL, "%u of the disks are too small: the array needs %llu bytes on "
			   "each (1 MiB of metadata and %s)", small, (unsigned long long)need,
			   s->cfg.member_size ? "size=" : "one chunk");
	/* Spares need the members' size, known from the members alone: a
	 * spare that could not be added is refused before anything is
	 * written (read-only ones were above). */
	uint64_t member_size = 0;
	uint32_t block_size = 0;
	if (!raid_fit(&s->cfg, a->disk, s->nmembers, &member_size, &block_size)) {
		unsigned nsmall = 0, first_small = 0, nbs = 0, first_bs = 0;
		for (unsigned i = s->nmembers; i < s->ndisks; i++) {
			struct hbk_disk_info di;
			hbk_disk_info(a->disk[i], &di);
			int fit = raid_disk_fits(&di, member_size, block_size);
			if (fit)
				a->error[i] = -EINVAL;
			if (fit == -ENOSPC)
				first_small = nsmall++ ? first_small : i;
			else if (fit)
				first_bs = nbs++ ? first_bs : i;
		}
		if (nbs)
			return say(a, -EINVAL, "%u of the spares have blocks larger than the array's "
				   "%u bytes (%s)", nbs, block_size, s->disk[first_bs].text);
		if (nsmall)
			return say(a, -EINVAL, "%u of the spares are too small (%s): each needs %llu "
				   "bytes, as the members (1 MiB of metadata and %llu of data)", nsmall,
				   s->disk[first_small].text,
				   (unsigned long long)(DATA_OFFSET + member_size),
				   (unsigned long long)member_size);
	}
	/* What the disks' superblock areas hold, to tell which ones a failed
	 * create wrote (NULL: unreadable, left alone). */
	uint8_t *before[HBK_RAID_MAX_DISKS] = { 0 };
	for (unsigned i = 0; i < s->ndisks; i++)
		if (!a->disk[i] || posix_memalign((void **)&before[i], SB_SIZE, SB_SIZE) ||
		    !read_sb(a->disk[i], before[i])) {
			free(before[i]);
			before[i] = NULL;
		}
	err = hbk_raid_create(&s->cfg, a->disk, s->nmembers, &s->opts, &a->raid);
	/* A spare that cannot be added (its metadata cannot be written)
	 * fails the create as a member would. */
	unsigned bad_spare = s->ndisks;
	for (unsigned i = s->nmembers; !err && i < s->ndisks; i++)
		if ((err = a->error[i] = hbk_raid_add_spare(a->raid, a->disk[i])))
			bad_spare = i;
	unsigned left = 0, first_left = 0;
	if (err) {
		hbk_raid_close(a->raid);
		a->raid = NULL;
		left = wipe_failed_create(a, before, &first_left);
	}
	for (unsigned i = 0; i < s->ndisks; i++)
		free(before[i]);
	char kept[sizeof(a->message)] = "";
	if (left)
		snprintf(kept, sizeof(kept), "; %u of the disks keep the metadata it wrote (%s): "
			 "create with force over it", left, s->disk[first_left].text);
	if (bad_spare < s->ndisks)
		return say(a, err, "cannot create the array: %s: cannot add the spare: %s%s",
			   s->disk[bad_spare].text, hbk_strerror(err), kept);
	if (err)
		return say(a, err, "cannot create the array: %s%s", hbk_strerror(err), kept);
	a->created = true;
	for (unsigned i = 0; i < s->ndisks; i++) {
		bool member = i < s->nmembers;
		a->report.disk[i].verdict = member ? HBK_RAID_DISK_MEMBER : HBK_RAID_DISK_SPARE;
		a->report.disk[i].slot = member ? (int)i : -1;
	}
	struct hbk_raid_status st;
	hbk_raid_status(a->raid, &st);
	a->report.generation = st.generation;
	memcpy(a->report.uuid, st.uuid, sizeof(st.uuid));
	for (unsigned i = 0; i < s->ndisks; i++)
		a->report.disk[i].generation = st.generation;
	return err;
}

static int assemble_array(struct hbk_raid_spec_array *a)
{
	const struct hbk_raid_spec *s = a->spec_;
	struct hbk_disk *list[HBK_RAID_MAX_DISKS];
	unsigned idx[HBK_RAID_MAX_DISKS], m = 0;
	int err = 0;
	for (unsigned i = 0; i < s->ndisks; i++) {
		if (a->disk[i]) {
			list[m] = a->disk[i];
			idx[m++] = i;
		}
		err = err ? err : a->error[i];
	}
	if (!m)
		return say(a, -ENODEV, "none of the disks could be opened");
	/* Assembling without a disk makes it stale for good: only on purpose. */
	if (m < s->ndisks && !s->opts.force)
		return say(a, err, "%u of the disks cannot be opened: the array would run without them "
			   "and they would be stale from then on (fix the spec, or force to run without "
			   "them)", s->ndisks - m);
	struct hbk_raid_report rep;
	err = hbk_raid_assemble(list, m, &s->opts, &rep, &a->raid);
	struct hbk_raid_report *r = &a->report;
	*r = rep;
	r->ndisks = s->ndisks;
	for (unsigned i = 0, j = 0; i < s->ndisks; i++) {
		if (j < m && idx[j] == i) {
			r->disk[i] = rep.disk[j++];
			continue;
		}
		r->disk[i].verdict = HBK_RAID_DISK_UNREADABLE;
		r->disk[i].slot = -1;
		r->disk[i].generation = 0;
	}
	if (err == -ENODEV && !rep.generation)
		return say(a, err, "no hbakit array on the disks");
	if (err == -ENODEV)
		return say(a, err, "too many members missing: %u of the array's slots have no usable disk",
			   rep.nmissing);
	if (err == -EUCLEAN && rep.split_brain)
		return say(a, err, "split brain: a stale disk ran the array on its own after parting "
			   "from generation %llu's disks, so each side may hold writes the other lacks "
			   "(accept the split brain to keep generation %llu's side; the stale disk can "
			   "then be replaced)",
			   (unsigned long long)rep.generation, (unsigned long long)rep.generation);
	if (err == -EUCLEAN)
		return say(a, err, "degraded, and its resync (after a crash, or since it was created) "
			   "has not finished: the parity cannot be trusted to rebuild the missing "
			   "member (force to assemble anyway)");
	if (err)
		return say(a, err, "cannot assemble the array: %s", hbk_strerror(err));
	/* Blank disks listed as spares join as hot spares. */
	for (unsigned i = s->nmembers; i < s->ndisks; i++) {
		if (r->disk[i].verdict != HBK_RAID_DISK_BLANK)
			continue;
		struct hbk_disk_info di;
		hbk_disk_info(a->disk[i], &di);
		int e = di.read_only ? -EROFS : hbk_raid_add_spare(a->raid, a->disk[i]);
		a->error[i] = e;
		if (!e) {
			r->disk[i].verdict = HBK_RAID_DISK_SPARE;
			r->nblank--;
		}
	}
	return 0;
}

int hbk_raid_spec_open(const struct hbk_raid_spec *s, enum hbk_raid_spec_mode mode,
		       struct hbk_raid_spec_array *a)
{
	memset(a, 0, sizeof(*a));
	a->spec_ = s;
	for (unsigned i = 0; i < HBK_RAID_SPEC_MAX_OPEN; i++)
		a->lock_fd_[i] = -1;
	uint64_t create = mode != HBK_RAID_SPEC_ASSEMBLE && s->cfg.member_size ?
			  DATA_OFFSET + s->cfg.member_size : 0;
	bool any_meta = false;
	/* AUTO makes no disk= file before it knows it creates: a member file
	 * missing from an existing array (renamed, not mounted) would
	 * otherwise come back blank and the array run degraded.  A missing
	 * spare= file is made either way: it is asked for as a blank disk. */
	uint64_t first = mode == HBK_RAID_SPEC_CREATE ? create : 0;
	for (unsigned i = 0; i < s->ndisks; i++) {
		a->ndisks = i;   /* the disks open so far, for same_file() */
		if (open_disk(a, i, &s->disk[i], first) == -EBUSY) {
			a->ndisks = i + 1;
			return unmake_files(a, -EBUSY);
		}
		any_meta = any_meta || (a->disk[i] && mode == HBK_RAID_SPEC_AUTO && has_metadata(a->disk[i]));
	}
	a->ndisks = s->ndisks;
	a->report.ndisks = s->ndisks;
	if (mode == HBK_RAID_SPEC_CREATE || (mode == HBK_RAID_SPEC_AUTO && !any_meta)) {
		for (unsigned i = 0; create && !first && i < s->ndisks; i++)
			if (!a->disk[i] && a->error[i] == -ENOENT &&
			    open_disk(a, i, &s->disk[i], create) == -EBUSY)
				return unmake_files(a, -EBUSY);
		int err = create_array(a);
		return a->created ? err : unmake_files(a, err);
	}
	for (unsigned i = s->nmembers; create && i < s->ndisks; i++)
		if (!a->disk[i] && a->error[i] == -ENOENT && open_disk(a, i, &s->disk[i], create) == -EBUSY)
			return unmake_files(a, -EBUSY);
	return assemble_array(a);
}

int hbk_raid_spec_attach(struct hbk_raid_spec_array *a, const char *text, struct hbk_disk **out)
{
	const struct hbk_raid_spec *s = a->spec_;
	struct parse p = { .err = a->message, .errlen = sizeof(a->message) };
	struct hbk_raid_spec_disk d;
	struct stat st;
	a->message[0] = 0;
	if (!a->raid)
		return say(a, -EINVAL, "the array is not open");
	if (a->ndisks == HBK_RAID_SPEC_MAX_OPEN)
		return say(a, -ENOSPC, "%s: too many disks open", text);
	unsigned i = a->ndisks;
	char *copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	int err = parse_disk(&p, "disk", copy, &d);
	int other = !err && d.kind == HBK_RAID_SPEC_FILE && !stat(d.target, &st) ? same_file(a, &st) : -1;
	if (err || other >= 0) {
		free(copy);
		if (err)
			return err;
		/* An attached disk is in the array; one of the spec's disks is
		 * usable unless the array uses it.  The report has an entry for
		 * the spec's disks only. */
		if ((unsigned)other >= s->ndisks)
			return say(a, -EINVAL, "%s: already in the array", text);
		uint8_t v = a->report.disk[other].verdict;
		if (v == HBK_RAID_DISK_MEMBER || v == HBK_RAID_DISK_SPARE)
			return say(a, -EINVAL, "%s: already in the array", text);
		if (v == HBK_RAID_DISK_FOREIGN && !s->opts.force)
			return say(a, -EEXIST, "%s: carries another array's metadata; force to overwrite it",
				   text);
		*out = a->disk[other];
		return 0;
	}
	a->text_[i] = copy;
	struct hbk_raid_status rs;
	hbk_raid_status(a->raid, &rs);
	if ((err = open_disk(a, i, &d, DATA_OFFSET + rs.member_size)))
		say(a, err, "%s: cannot open: %s", text, hbk_strerror(err));
	a->ndisks++;
	if (!err && has_metadata(a->disk[i]) && !s->opts.force)
		err = say(a, a->error[i] = -EEXIST, "%s: carries hbakit RAID metadata (another array's, "
			  "or list it in the spec if it is this array's); force to overwrite it", text);
	if (!err)
		*out = a->disk[i];
	return err;
}

/* Whether the array holds disk d in one of its slots. */
static bool in_array(struct hbk_raid *r, const struct hbk_disk *d)
{
	struct hbk_raid_status st;
	if (!r || !d)
		return false;
	hbk_raid_status(r, &st);
	for (unsigned s = 0; s < st.members; s++)
		if (st.member[s].disk == d)
			return true;
	return false;
}

void hbk_raid_spec_close(struct hbk_raid_spec_array *a)
{
	/* A file attach made for a disk the array did not take (a refused
	 * replace) is removed, as a failed create removes its files; it is
	 * still locked, so no other process can have started using it. */
	unsigned nspec = a->spec_ ? a->spec_->ndisks : a->ndisks;
	for (unsigned i = nspec; i < a->ndisks; i++)
		a->made_[i] = a->made_[i] && !in_array(a->raid, a->disk[i]);
	hbk_raid_close(a->raid);
	a->raid = NULL;
	for (unsigned i = 0; i < a->ndisks; i++) {
		if (a->disk[i])
			hbk_disk_close(a->disk[i]);
		if (i >= nspec && a->made_[i]) {
			const char *path = a->text_[i];
			if (!strncmp(path, "file:", 5))
				path += 5;
			if (unlink(path))
				hbk_log(HBK_LOG_WARN, "%s: cannot remove the file this command made: %s",
					a->text_[i], strerror(errno));
		}
		a->made_[i] = false;
		if (a->lock_fd_[i] >= 0)
			close(a->lock_fd_[i]);
		free((void *)a->text_[i]);
		a->disk[i] = NULL;
		a->lock_fd_[i] = -1;
		a->text_[i] = NULL;
	}
	a->ndisks = 0;
}
