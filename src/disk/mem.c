/* SPDX-License-Identifier: MIT */
/*
 * The memory and null disks.  Both complete inline on the submitting thread:
 * the memory disk copies to and from an anonymous mapping that the kernel
 * commits only where it is written; the null disk reads zeros and drops
 * writes, for measuring everything but the media.  I/Os that overlap may be
 * in flight at once (SCSI allows it): a small table of locks, hashed by
 * region, keeps their copies from racing, so each one lands whole, before
 * or after the other.  Mutexes, not rwlocks: uncontended they add nothing
 * measurable to a 512-byte copy, where glibc's rwlock added ~50 ns a write.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "disk/disk_priv.h"

#define REGION_SHIFT  16u          /* a lock covers 64 KiB regions... */
#define NLOCKS        64u          /* ...region r uses lock r % NLOCKS */

struct mem_disk {
	struct hbk_disk d;
	uint8_t *data;                 /* NULL for the null disk */
	pthread_mutex_t lock[NLOCKS];
};

/* The locks an I/O of [off, off + len) takes, one bit per lock. */
static uint64_t locks_of(uint64_t off, uint64_t len)
{
	uint64_t first = off >> REGION_SHIFT, last = (off + len - 1) >> REGION_SHIFT;
	if (last - first + 1 >= NLOCKS)
		return UINT64_MAX;
	uint64_t a = first % NLOCKS, b = last % NLOCKS;
	uint64_t upto_b = (2ull << b) - 1, from_a = ~((1ull << a) - 1);   /* b = 63: all */
	return a <= b ? from_a & upto_b : from_a | upto_b;   /* wrapped past lock 63 */
}

static void mem_submit(struct hbk_disk *d, struct hbk_disk_io *io)
{
	struct mem_disk *m = (struct mem_disk *)d;
	/* Taken in index order, so two I/Os never wait on each other's. */
	bool copies = m->data && io->op != HBK_DISK_FLUSH && io->len;
	uint64_t held = copies ? locks_of(io->offset, io->len) : 0;
	for (uint64_t b = held; b; b &= b - 1)
		pthread_mutex_lock(&m->lock[__builtin_ctzll(b)]);
	switch (io->op) {
	case HBK_DISK_READ:
		if (m->data)
			memcpy(io->buf, m->data + io->offset, io->len);
		else
			memset(io->buf, 0, io->len);
		break;
	case HBK_DISK_WRITE:
		if (m->data)
			memcpy(m->data + io->offset, io->buf, io->len);
		break;
	case HBK_DISK_DISCARD:
		if (m->data)
			memset(m->data + io->offset, 0, io->len);
		break;
	}
	for (uint64_t b = held; b; b &= b - 1)
		pthread_mutex_unlock(&m->lock[__builtin_ctzll(b)]);
	disk_complete(d, io, 0);
}

/* Bytes of every memory disk open in this process.  They are committed
 * as they are written, so more than the machine has would end in the OOM
 * killer, and with it the data of every disk; past three quarters of the
 * machine's memory, an open is refused. */
static _Atomic uint64_t mem_open_bytes;

static bool mem_reserve(uint64_t size)
{
	uint64_t limit = hbk_mem_physical() / 4 * 3;
	uint64_t was = atomic_load(&mem_open_bytes);
	do {
		if (size > limit || was > limit - size)
			return false;
	} while (!atomic_compare_exchange_weak(&mem_open_bytes, &was, was + size));
	return true;
}

static void mem_close(struct hbk_disk *d)
{
	struct mem_disk *m = (struct mem_disk *)d;
	if (m->data) {
		munmap(m->data, d->info.size);
		atomic_fetch_sub(&mem_open_bytes, d->info.size);
	}
	for (unsigned i = 0; i < NLOCKS; i++)
		pthread_mutex_destroy(&m->lock[i]);
	free(m);
}

static const struct disk_ops mem_ops = { .submit = mem_submit, .close = mem_close };

static int open_mem(uint64_t size, bool null, struct hbk_disk **out)
{
	if (!size || size % 512)
		return -EINVAL;
	struct mem_disk *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (!null) {
		if (!mem_reserve(size)) {
			free(m);
			return -ENOMEM;
		}
		m->data = mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m->data == MAP_FAILED) {
			atomic_fetch_sub(&mem_open_bytes, size);
			free(m);
			return -ENOMEM;
		}
	}
	for (unsigned i = 0; i < NLOCKS; i++)
		pthread_mutex_init(&m->lock[i], NULL);
	char name[40];
	snprintf(name, sizeof(name), "%s:%llu", null ? "null" : "mem", (unsigned long long)size);
	disk_init(&m->d, &mem_ops, null ? "null" : "memory", name, size);
	m->d.info.discard = true;
	m->d.info.discard_zeroes = true;
	*out = &m->d;
	return 0;
}

int hbk_disk_open_mem(uint64_t size, struct hbk_disk **out)
{
	return open_mem(size, false, out);
}

int hbk_disk_open_null(uint64_t size, struct hbk_disk **out)
{
	return open_mem(size, true, out);
}
