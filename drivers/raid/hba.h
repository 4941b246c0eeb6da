/* SPDX-License-Identifier: MIT */
/*
 * Private header of hbk-raid, the driver of hbakit's emulated RAID
 * controller: the driver's state (hba.c) and the storage the card is
 * configured with, built from the vd= option (storage.c).
 */
#ifndef HBK_RAID_HBA_H
#define HBK_RAID_HBA_H

#include <stdint.h>

#include "hbk/device.h"
#include "hbk/raid.h"

/* The card's virtual drives and what backs them. */
struct storage {
	struct hbk_vol *vol[HBK_DEV_MAX_TARGETS];
	unsigned nvols;
	struct hbk_raid *raid[HBK_DEV_MAX_TARGETS];     /* behind vol[i], or NULL */
	struct hbk_disk *disk[HBK_DEV_MAX_TARGETS][HBK_RAID_MAX_MEMBERS];
	unsigned ndisks[HBK_DEV_MAX_TARGETS];
};

/*
 * Builds the virtual drives of spec, a comma-separated list of
 *   NAME:SIZE[:BLOCKSIZE]               a memory drive (block size 512 or 4096)
 *   NAME:raidL:NxSIZE[:CHUNK]           RAID level L (0, 1, 5, 6, 10) over N
 *                                       memory disks of SIZE each
 * Sizes take k, m, g, t suffixes.  Returns 0, or -EINVAL (the fault is
 * logged) or -ENOMEM; on failure what was built is closed.
 */
int storage_open(struct storage *s, const char *spec);

/* Closes every drive, array and disk (no I/O may be in flight). */
void storage_close(struct storage *s);

/*
 * "64M", "4k", "0x1000": bytes into *out.  Returns 0, or -EINVAL for
 * anything else (junk, an unknown suffix, overflow).
 */
int parse_bytes(const char *s, uint64_t *out);

#endif /* HBK_RAID_HBA_H */
