/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness of RAID assembly from untrusted superblocks
 * (src/raid/meta.c): a member's metadata may be foreign, stale, torn or
 * corrupt.  At start a RAID 5 of four memory disks and a spare is created
 * and closed, and each disk's superblock is kept as a template.  An input
 * is a flags byte (bit 0: fix up each changed superblock's CRC so the
 * fields behind it are reached; bits 1-3: how many of the five disks are
 * given, bit 4: force, bit 5: accept_split_brain, bit 6: ask for the
 * array's UUID) and then patches, each a disk byte, a 16-bit offset into
 * its superblock, a length byte and that many bytes laid over the
 * template there, so a small input reaches any field.  The superblocks are
 * written to the disks and the disks assembled; an array that comes up is
 * closed.
 */
#include <endian.h>
#include <stdbool.h>
#include <isa-l/crc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "hbk/disk.h"
#include "hbk/raid.h"

#define NDISKS    5u
#define SB_SIZE   4096u
#define CHUNK     4096u
#define MEMBER    (64u * 1024)
#define DISK_SIZE ((1u << 20) + MEMBER)

static struct hbk_disk *disks[NDISKS];
static uint8_t templ[NDISKS][SB_SIZE];
static uint8_t uuid[16];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("HBK_LOG", "error", 0);   /* assembly warns of every odd disk; keep the run quiet */
	for (unsigned i = 0; i < NDISKS; i++)
		if (hbk_disk_open_mem(DISK_SIZE, &disks[i]))
			abort();
	struct hbk_raid_config cfg = {
		.level = HBK_RAID5, .chunk = CHUNK, .member_size = MEMBER, .assume_clean = true,
	};
	struct hbk_raid_opts opts = { .workers = 1 };
	struct hbk_raid *r;
	if (hbk_raid_create(&cfg, disks, NDISKS - 1, &opts, &r) ||
	    hbk_raid_add_spare(r, disks[NDISKS - 1]))
		abort();
	hbk_raid_close(r);
	for (unsigned i = 0; i < NDISKS; i++)
		if (hbk_disk_rw(disks[i], HBK_DISK_READ, templ[i], 0, SB_SIZE, 0))
			abort();
	memcpy(uuid, templ[0] + 24, sizeof(uuid));   /* array_uuid */
	return 0;
}

/* The superblock's CRC-32C, computed with its crc field (bytes 16..19) zero. */
static void fix_crc(uint8_t *sb)
{
	memset(sb + 16, 0, 4);
	uint32_t crc = htole32(~crc32_iscsi(sb, SB_SIZE, 0xffffffffu));
	memcpy(sb + 16, &crc, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	unsigned n = 1 + (flags >> 1 & 7) % NDISKS;
	static uint8_t sb[NDISKS][SB_SIZE] __attribute__((aligned(4096)));
	bool changed[NDISKS] = { false };
	memcpy(sb, templ, sizeof(sb));
	size_t pos = 1;
	while (pos + 4 <= size) {
		unsigned disk = data[pos] % NDISKS;
		size_t off = ((size_t)data[pos + 1] << 8 | data[pos + 2]) % SB_SIZE;
		size_t len = data[pos + 3];
		pos += 4;
		len = HBK_MIN(HBK_MIN(len, size - pos), SB_SIZE - off);
		memcpy(sb[disk] + off, data + pos, len);
		pos += len;
		changed[disk] = true;
	}
	for (unsigned i = 0; i < NDISKS; i++) {
		if (changed[i] && (flags & 1))
			fix_crc(sb[i]);
		if (hbk_disk_rw(disks[i], HBK_DISK_WRITE, sb[i], 0, SB_SIZE, 0))
			abort();
	}
	struct hbk_raid_opts opts = {
		.workers = 1, .clean_delay_ms = 1, .force = flags & 0x10,
		.accept_split_brain = flags & 0x20, .uuid = flags & 0x40 ? uuid : NULL,
	};
	struct hbk_raid_report rep;
	struct hbk_raid *r = NULL;
	if (!hbk_raid_assemble(disks, n, &opts, &rep, &r)) {
		struct hbk_raid_status st;
		hbk_raid_status(r, &st);
		hbk_raid_close(r);
	}
	if (rep.ndisks != n)
		abort();
	return 0;
}
