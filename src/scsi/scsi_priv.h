/* SPDX-License-Identifier: MIT */
/*
 * Private half of the SCSI layer: the operation codes the block-target emulation
 * serves, and the limits it advertises.  Shared by sense.c, emul.c and the
 * SCSI unit tests; nothing outside src/scsi/ and tests/ includes it.
 */
#ifndef HBK_SCSI_PRIV_H
#define HBK_SCSI_PRIV_H

#include <stdint.h>

#include "common/bytes.h"

/* ---- Operation codes served by the emulation (SPC-4, SBC-3) ------------- */

#define HBK_SCSI_OP_TEST_UNIT_READY      0x00
#define HBK_SCSI_OP_REQUEST_SENSE        0x03
#define HBK_SCSI_OP_READ6                0x08
#define HBK_SCSI_OP_WRITE6               0x0a
#define HBK_SCSI_OP_INQUIRY              0x12
#define HBK_SCSI_OP_MODE_SENSE6          0x1a
#define HBK_SCSI_OP_READ_CAPACITY10      0x25
#define HBK_SCSI_OP_READ10               0x28
#define HBK_SCSI_OP_WRITE10              0x2a
#define HBK_SCSI_OP_SYNC_CACHE10         0x35
#define HBK_SCSI_OP_UNMAP                0x42
#define HBK_SCSI_OP_MODE_SENSE10         0x5a
#define HBK_SCSI_OP_READ16               0x88
#define HBK_SCSI_OP_WRITE16              0x8a
#define HBK_SCSI_OP_SYNC_CACHE16         0x91
#define HBK_SCSI_OP_SERVICE_ACTION_IN16  0x9e
#define HBK_SCSI_OP_REPORT_LUNS          0xa0
#define HBK_SCSI_OP_READ12               0xa8
#define HBK_SCSI_OP_WRITE12              0xaa
#define HBK_SCSI_SA_READ_CAPACITY16      0x10

/* ---- Sizes and limits ---------------------------------------------------- */

#define HBK_SCSI_SENSE_FIXED_LEN  18u     /* fixed-format sense, SPC-4 4.5.3 */
#define HBK_SCSI_LUN_FLAT_MAX     0x4000u /* LUNs 0..16383 fit one level */
#define HBK_SCSI_SERIAL_MAX       128u    /* longer serials are truncated */
#define HBK_SCSI_MAX_UNMAP_DESC   256u    /* VPD B0: block descriptors per UNMAP */

#endif /* HBK_SCSI_PRIV_H */
