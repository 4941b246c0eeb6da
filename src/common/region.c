/* SPDX-License-Identifier: MIT */
/*
 * The shared memory region: command slots, response slots, the completion
 * and submission rings and the data arena in one memfd.  The host creates
 * it and writes the header; the driver maps it and validates the header
 * against the descriptor's real size before trusting a single offset in it.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

#define PAGE 4096ull

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

static void region_point(struct hbk_region *r)
{
	struct hbk_region_hdr *h = r->base;
	r->hdr = h;
	r->slots = h->slot_count;
	r->cmds = (struct hbk_task *)((uint8_t *)r->base + h->cmd_off);
	r->resps = (struct hbk_response *)((uint8_t *)r->base + h->resp_off);
	r->cring = (struct hbk_cring *)((uint8_t *)r->base + h->cring_off);
	r->cring_entries = h->cring_entries;
	r->sring = (struct hbk_sring *)((uint8_t *)r->base + h->sring_off);
	r->sring_entries = h->sring_entries;
	r->arena = (uint8_t *)r->base + h->arena_off;
	r->arena_size = h->arena_size;
}

int hbk_region_create(struct hbk_region *r, uint32_t slots, uint64_t arena_size)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if (!slots || slots > HBK_MAX_TASKS || !arena_size)
		return -EINVAL;
	uint64_t cmd_off = 256; /* cache-line aligned, after the header */
	uint64_t resp_off = round_up(cmd_off + (uint64_t)slots * sizeof(struct hbk_task), 64);
	uint64_t cring_off = round_up(resp_off + (uint64_t)slots * sizeof(struct hbk_response), 64);
	uint32_t entries = 1;
	while (entries < slots)
		entries <<= 1;
	uint64_t sring_off = round_up(cring_off + sizeof(struct hbk_cring) +
				      entries * sizeof(uint16_t), 64);
	uint64_t arena_off = round_up(sring_off + sizeof(struct hbk_sring) +
				      entries * sizeof(uint16_t), PAGE);
	arena_size = round_up(arena_size, PAGE);
	uint64_t size = arena_off + arena_size;

	int fd = memfd_create("hbakit-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	/* Sealed at its size before the driver gets it: a driver that could
	 * shrink it would crash the host with SIGBUS on its next access. */
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto close_fd;
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		goto close_fd;

	struct hbk_region_hdr *h = base;
	h->magic = HBK_REGION_MAGIC;
	h->abi_version = HBK_ABI_VERSION;
	h->hdr_size = sizeof(*h);
	h->slot_count = slots;
	h->cmd_off = cmd_off;
	h->resp_off = resp_off;
	h->cring_off = cring_off;
	h->cring_entries = entries;
	/* The host's event thread may already sleep when the ring comes into
	 * use: the driver's first completion rings the doorbell. */
	((struct hbk_cring *)((uint8_t *)base + cring_off))->host_waiting = 1;
	h->sring_off = sring_off;
	h->sring_entries = entries;
	/* The submission ring's counters start just short of wrapping, so
	 * every controller goes through the wrap early and a wrap bug shows
	 * in every test. */
	struct hbk_sring *sr = (struct hbk_sring *)((uint8_t *)base + sring_off);
	sr->tail = sr->head = UINT32_MAX - 1023u;
	h->arena_off = arena_off;
	h->arena_size = arena_size;
	h->region_size = size;
	r->fd = fd;
	r->base = base;
	r->size = size;
	region_point(r);
	return 0;

close_fd:;
	int err = -errno;
	close(fd);
	return err;
}

int hbk_region_map(struct hbk_region *r, int fd)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (size < sizeof(struct hbk_region_hdr)) {
		close(fd);
		return -EPROTO;
	}
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		int err = -errno;
		close(fd);
		return err;
	}
	const struct hbk_region_hdr *h = base;
	uint64_t slots = h->slot_count;
	bool ok = h->magic == HBK_REGION_MAGIC && h->abi_version == HBK_ABI_VERSION &&
		  h->hdr_size == sizeof(*h) && slots && slots <= HBK_MAX_TASKS &&
		  h->region_size == size &&
		  h->cmd_off >= sizeof(*h) && h->cmd_off <= size &&
		  slots * sizeof(struct hbk_task) <= size - h->cmd_off &&
		  h->resp_off >= h->cmd_off + slots * sizeof(struct hbk_task) && h->resp_off <= size &&
		  slots * sizeof(struct hbk_response) <= size - h->resp_off &&
		  h->cring_off >= h->resp_off + slots * sizeof(struct hbk_response) &&
		  h->cring_off % 64 == 0 && h->cring_entries >= slots &&
		  h->cring_entries <= HBK_MAX_TASKS &&
		  !(h->cring_entries & (h->cring_entries - 1)) &&
		  h->sring_off >= h->cring_off + sizeof(struct hbk_cring) +
				  h->cring_entries * sizeof(uint16_t) &&
		  h->sring_off % 64 == 0 && h->sring_entries >= slots &&
		  h->sring_entries <= HBK_MAX_TASKS &&
		  !(h->sring_entries & (h->sring_entries - 1)) &&
		  h->arena_off >= h->sring_off + sizeof(struct hbk_sring) +
				  h->sring_entries * sizeof(uint16_t) &&
		  h->arena_off <= size && h->arena_size <= size - h->arena_off &&
		  h->cmd_off % 8 == 0 && h->resp_off % 8 == 0;
	if (!ok) {
		munmap(base, size);
		close(fd);
		return -EPROTO;
	}
	r->fd = fd;
	r->base = base;
	r->size = size;
	region_point(r);
	return 0;
}

void hbk_region_unmap(struct hbk_region *r)
{
	if (r->base)
		munmap(r->base, r->size);
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}
