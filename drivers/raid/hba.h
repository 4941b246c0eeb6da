/* SPDX-License-Identifier: MIT */
/*
 * Private header of hbk-raid, the driver of hbakit's emulated RAID
 * controller: the driver's state (hba.c) and the storage the card is
 * configured with, built from the vd= and array= options (storage.c).
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
	/* Behind vol[i] when it is an array, else NULL. */
	struct hbk_raid_spec *spec[HBK_DEV_MAX_TARGETS];
	struct hbk_raid_spec_array *array[HBK_DEV_MAX_TARGETS];
};

/*
 * Builds the virtual drives, in target order: first those of vd (NULL: none),
 * a comma-separated list of
 *   NAME:SIZE[:BLOCKSIZE]               a memory drive (block size 512 or 4096)
 *   NAME:raidL:NxSIZE[:CHUNK]           RAID level L (0, 1, 5, 6, 10) over N
 *                                       memory disks of SIZE each (metadata
 *                                       area included), i.e. the array spec
 *                                       level=L,chunk=CHUNK,disk=mem:SIZE,...
 * then one per arrays[0..narrays), each NAME:SPEC with SPEC an array spec of
 * include/hbk/raid.h (docs/raid.md), assembled when its disks carry an
 * array and created otherwise.  Arrays whose disks are all memory or null
 * disks are created consistent (nothing to resync).  Sizes take k, m, g, t
 * suffixes.  Returns 0, or -EINVAL (the fault is logged), -ENOMEM, or the
 * error of an array that cannot be opened (logged with the reason); on
 * failure what was built is closed.
 */
int storage_open(struct storage *s, const char *vd, const char *const *arrays, unsigned narrays);

/* Closes every drive, then every array cleanly (cache destaged, metadata
 * marked clean) and its disks.  No I/O may be in flight. */
void storage_close(struct storage *s);

#endif /* HBK_RAID_HBA_H */
