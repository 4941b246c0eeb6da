/* SPDX-License-Identifier: MIT */
/*
 * Where data lives: the geometry of each level, the column-to-member mapping
 * (left-symmetric RAID 5, RAID 6 with Q after P, both rotating per stripe),
 * member validity during a rebuild, the parity arithmetic (all of it ISA-L:
 * xor_gen/pq_gen, their checks, and erasure decoding for RAID 6), and the
 * planner that turns an array range into member I/Os when no parity is
 * involved.
 */
#include <errno.h>
#include <limits.h>
#include <isa-l/erasure_code.h>
#include <isa-l/raid.h>
#include <string.h>

#include "raid/raid_priv.h"

int raid_geometry(struct hbk_raid *r)
{
	unsigned n = r->n;
	r->np = 0;
	switch (r->level) {
	case HBK_RAID0:
		r->k = n;
		break;
	case HBK_RAID1:
		if (n < 2)
			return -EINVAL;
		r->k = 1;
		break;
	case HBK_RAID10:
		if (n < 4 || n % 2)
			return -EINVAL;
		r->k = n / 2;
		break;
	case HBK_RAID5:
		if (n < 3)
			return -EINVAL;
		r->k = n - 1;
		r->np = 1;
		break;
	case HBK_RAID6:
		if (n < 4)
			return -EINVAL;
		r->k = n - 2;
		r->np = 2;
		break;
	default:
		return -EINVAL;
	}
	if (n < 1 || n > HBK_RAID_MAX_MEMBERS || r->chunk < 4096 || r->chunk > (1u << 20) ||
	    (r->chunk & (r->chunk - 1)) || r->chunk % r->block_size ||
	    !r->member_size || r->member_size % r->chunk)
		return -EINVAL;
	r->stripes = r->member_size / r->chunk;
	r->stripe_bytes = (uint64_t)r->k * r->chunk;
	r->size = r->stripes * r->stripe_bytes;
	if (r->level == HBK_RAID6) {
		/* Rows k and k+1 of this matrix are all ones and 2^i: exactly
		 * what pq_gen computes, so ISA-L's erasure decoder can undo it. */
		gf_gen_rs_matrix(r->enc, (int)r->k + 2, (int)r->k);
		ec_init_tables((int)r->k, 2, &r->enc[r->k * r->k], r->pq_tables);
	}
	return 0;
}

unsigned raid_col_member(const struct hbk_raid *r, uint64_t s, unsigned c)
{
	unsigned p = r->n - 1 - (unsigned)(s % r->n);   /* parity walks from the last member down */
	if (c == r->k)
		return p;
	if (c == r->k + 1)
		return (p + 1) % r->n;
	return (p + r->np + c) % r->n;                   /* data starts after the parity */
}

unsigned raid_copies(const struct hbk_raid *r, uint64_t s, unsigned c, unsigned *out)
{
	switch (r->level) {
	case HBK_RAID1:
		for (unsigned i = 0; i < r->n; i++)
			out[i] = i;
		return r->n;
	case HBK_RAID10:
		out[0] = 2 * c;
		out[1] = 2 * c + 1;
		return 2;
	case HBK_RAID0:
		out[0] = c;
		return 1;
	default:
		out[0] = raid_col_member(r, s, c);
		return 1;
	}
}

bool raid_member_ok(const struct hbk_raid *r, unsigned i, uint64_t s)
{
	switch (member_state(r, i)) {
	case HBK_RAID_MEMBER_ACTIVE:
		return true;
	case HBK_RAID_MEMBER_REBUILDING:
		return atomic_load_explicit(&r->m[i].rebuilt, memory_order_acquire) >=
		       (s + 1) * r->chunk;
	default:
		return false;
	}
}

struct hbk_disk *raid_member_disk(const struct hbk_raid *r, unsigned i, uint64_t s)
{
	struct hbk_disk *d = atomic_load_explicit(&r->m[i].disk, memory_order_acquire);
	return d && raid_member_ok(r, i, s) ? d : NULL;
}

bool raid_tolerable_without(const struct hbk_raid *r, unsigned gone)
{
	unsigned bad = 0, per_copy = r->level == HBK_RAID1 ? r->n : 2;
	if (r->level == HBK_RAID1 || r->level == HBK_RAID10) {
		/* Every copy set needs one active member. */
		for (unsigned g = 0; g < r->n / per_copy; g++) {
			bool any = false;
			for (unsigned j = 0, i = g * per_copy; j < per_copy; j++, i++)
				any |= i != gone && member_state(r, i) == HBK_RAID_MEMBER_ACTIVE;
			if (!any)
				return false;
		}
		return true;
	}
	for (unsigned i = 0; i < r->n; i++)
		bad += i == gone || member_state(r, i) != HBK_RAID_MEMBER_ACTIVE;
	return bad <= r->np;
}

bool raid_tolerable(const struct hbk_raid *r)
{
	return raid_tolerable_without(r, UINT_MAX);
}

/* ---- Parity ----------------------------------------------------------------------- */

void raid_gen_parity(const struct hbk_raid *r, uint8_t **cols, uint32_t len)
{
	if (r->np == 1)
		xor_gen((int)r->k + 1, (int)len, (void **)cols);
	else
		pq_gen((int)r->k + 2, (int)len, (void **)cols);
}

bool raid_parity_ok(const struct hbk_raid *r, uint8_t **cols, uint32_t len)
{
	if (r->np == 1)
		return xor_check((int)r->k + 1, (int)len, (void **)cols) == 0;
	return pq_check((int)r->k + 2, (int)len, (void **)cols) == 0;
}

void raid_update_pq(const struct hbk_raid *r, unsigned c, uint8_t *delta, uint8_t **pq,
		    uint32_t len)
{
	ec_encode_data_update((int)len, (int)r->k, 2, (int)c, (unsigned char *)r->pq_tables,
			      delta, pq);
}

int raid_recover(const struct hbk_raid *r, uint8_t **cols, uint32_t missing, uint32_t len)
{
	unsigned k = r->k, ncols = k + r->np, nm = (unsigned)__builtin_popcount(missing);
	uint8_t *src[HBK_RAID_MAX_MEMBERS + 2], *dst[2];
	if (!nm)
		return 0;
	if (nm > r->np)
		return -EIO;
	if (r->np == 1) {
		/* The missing column is the xor of all the others. */
		unsigned j = 0;
		for (unsigned c = 0; c < ncols; c++)
			if (!(missing & (1u << c)))
				src[j++] = cols[c];
		src[j] = cols[__builtin_ctz(missing)];
		xor_gen((int)ncols, (int)len, (void **)src);
		return 0;
	}
	if (!(missing & raid_mask(k))) {
		pq_gen((int)ncols, (int)len, (void **)cols);   /* only parity lost */
		return 0;
	}
	/*
	 * Erasure decoding: take k surviving rows of the encoding matrix,
	 * invert them, and express each missing column as a combination of the
	 * survivors (a data column is a row of the inverse; a parity column is
	 * its encoding row times the inverse).
	 */
	uint8_t b[HBK_RAID_MAX_MEMBERS * HBK_RAID_MAX_MEMBERS], inv[sizeof(b)];
	uint8_t rows[2 * HBK_RAID_MAX_MEMBERS], tables[32 * 2 * HBK_RAID_MAX_MEMBERS];
	unsigned ns = 0, nd = 0;
	for (unsigned c = 0; c < ncols && ns < k; c++)
		if (!(missing & (1u << c))) {
			memcpy(&b[ns * k], &r->enc[c * k], k);
			src[ns++] = cols[c];
		}
	if (gf_invert_matrix(b, inv, (int)k))
		return -EIO;
	for (unsigned c = 0; c < ncols; c++) {
		if (!(missing & (1u << c)))
			continue;
		for (unsigned j = 0; j < k; j++) {
			uint8_t v = 0;
			if (c < k)
				v = inv[c * k + j];
			else
				for (unsigned i = 0; i < k; i++)
					v ^= gf_mul(r->enc[c * k + i], inv[i * k + j]);
			rows[nd * k + j] = v;
		}
		dst[nd++] = cols[c];
	}
	ec_init_tables((int)k, (int)nd, rows, tables);
	ec_encode_data((int)len, (int)k, (int)nd, tables, src, dst);
	return 0;
}

/* ---- Planning without parity ---------------------------------------------------------- */

unsigned raid_plan_max(const struct hbk_raid *r, uint64_t a0, uint64_t len)
{
	uint64_t pieces = len ? (a0 + len - 1) / r->chunk - a0 / r->chunk + 1 : 0;
	unsigned copies = r->level == HBK_RAID1 ? r->n : r->level == HBK_RAID10 ? 2 : 1;
	return (unsigned)(pieces * copies);
}

/* Adds a piece for member i, merged into that member's previous I/O when it
 * continues it on the disk and in the buffer. */
static unsigned add_piece(struct mio *out, unsigned n, int *last, unsigned i, struct hbk_disk *d,
			  const struct hbk_raid_io *io, uint32_t flags, uint64_t moff, uint64_t len,
			  uint8_t *buf)
{
	if (last[i] >= 0) {
		struct hbk_disk_io *p = &out[last[i]].d;
		if (p->offset + p->len == moff && (!buf || (uint8_t *)p->buf + p->len == buf) &&
		    p->len + len <= MAX_MERGE) {
			p->len += len;
			return n;
		}
	}
	out[n] = (struct mio){ .member = i, .disk = d, .d = { .op = io->op, .flags = flags,
			       .offset = moff, .len = len, .buf = buf } };
	last[i] = (int)n;
	return n + 1;
}

int raid_plan(const struct hbk_raid *r, const struct hbk_raid_io *io, uint64_t a0, uint64_t a1,
	      struct mio *out, unsigned max)
{
	int last[HBK_RAID_MAX_MEMBERS];
	unsigned n = 0, cp[HBK_RAID_MAX_MEMBERS];
	uint64_t sync_stripe = atomic_load(&r->resync_pos) / r->chunk;
	/* A discard of mirrors must leave the copies equal: each reads it back
	 * as zeros (written as zeros where a disk's discards do not zero). */
	uint32_t flags = io->flags | (io->op == HBK_DISK_DISCARD && r->level != HBK_RAID0 ?
				      HBK_DISK_ZERO : 0);
	memset(last, -1, sizeof(last));
	for (uint64_t a = a0; a < a1;) {
		uint64_t s = a / r->stripe_bytes, in = a % r->chunk;
		unsigned c = (unsigned)(a % r->stripe_bytes / r->chunk);
		uint64_t len = HBK_MIN(a1 - a, r->chunk - in);
		uint64_t moff = DATA_OFFSET + s * r->chunk + in;
		uint8_t *buf = io->buf ? (uint8_t *)io->buf + (a - io->offset) : NULL;
		unsigned nc = raid_copies(r, s, c, cp), used = 0;
		if (io->op == HBK_DISK_READ) {
			/* Spread reads over the copies; before the resync is past
			 * a stripe, read the copy the resync takes as the truth. */
			unsigned start = s >= sync_stripe ? 0 : (unsigned)(s % nc);
			for (unsigned j = 0; j < nc && !used; j++) {
				unsigned i = cp[(start + j) % nc];
				struct hbk_disk *d = raid_member_disk(r, i, s);
				if (d && n < max) {
					n = add_piece(out, n, last, i, d, io, flags, moff, len, buf);
					used = 1;
				}
			}
			if (!used)
				return r->np ? -EAGAIN : -EIO;
		} else {
			for (unsigned j = 0; j < nc; j++) {
				struct hbk_disk *d = raid_member_disk(r, cp[j], s);
				if (d && n < max) {
					n = add_piece(out, n, last, cp[j], d, io, flags, moff, len, buf);
					used++;
				}
			}
			if (!used)
				return -EIO;
		}
		a += len;
	}
	return (int)n;
}
