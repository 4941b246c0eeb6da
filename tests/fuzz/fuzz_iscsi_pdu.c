/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness of the iSCSI target's per-PDU checks (src/iscsi/pdu.c,
 * cmd.c): the first 48 bytes of an input are a Basic Header Segment,
 * checked in every phase against a receive limit taken from the input,
 * with its CDB sized as a SCSI Command's would be; the rest drives a CmdSN
 * window, four bytes per CmdSN (the top bit of the first says take or
 * look up), so serial number arithmetic meets every wrap.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < HBK_ISCSI_BHS_LEN + 8)
		return 0;
	struct hbk_iscsi_bhs *h = malloc(sizeof(*h));
	if (!h)
		abort();
	memcpy(h, data, sizeof(*h));
	uint32_t max_dsl = get_be32(data + HBK_ISCSI_BHS_LEN);
	for (int phase = HBK_ISCSI_PHASE_LOGIN; phase <= HBK_ISCSI_PHASE_DISCOVERY; phase++) {
		int r = hbk_iscsi_bhs_check(h, (enum hbk_iscsi_phase)phase, max_dsl);
		if (r != 0 && r != -EPROTO && (r < HBK_ISCSI_REJECT_DIGEST ||
					      r > HBK_ISCSI_REJECT_WAITING_LOGOUT))
			abort();
		if (r == 0 && hbk_iscsi_dlen(h) > max_dsl)
			abort();
	}
	(void)hbk_iscsi_opcode_name(h->opcode);
	uint32_t blocks;
	bool write;
	hbk_iscsi_cdb_blocks(((const struct hbk_iscsi_scsi_cmd *)h)->cdb, &blocks, &write);
	free(h);

	struct hbk_iscsi_window w;
	uint32_t start = get_be32(data + HBK_ISCSI_BHS_LEN + 4);
	hbk_iscsi_window_init(&w, start, 1 + data[0] % HBK_ISCSI_MAX_DEPTH);
	for (size_t pos = HBK_ISCSI_BHS_LEN + 8; pos + 4 <= size; pos += 4) {
		uint32_t v = get_be32(data + pos);
		/* Near the window more often than not: an offset from exp. */
		uint32_t sn = v & 0x40000000u ? v : w.exp + (v & 0x3ff) - 8;
		if (v & 0x80000000u) {
			uint32_t exp = w.exp, max = w.max;
			bool pending = hbk_iscsi_window_pending(&w, sn);
			bool took = hbk_iscsi_window_take(&w, sn);
			/* A command in the window not received yet is taken. */
			if (pending && !took)
				abort();
			if (took && (!hbk_iscsi_sn_le(exp, sn) || !hbk_iscsi_sn_le(sn, max)))
				abort();
		} else if (v & 0x20000000u) {
			hbk_iscsi_window_credit(&w);
		} else if (hbk_iscsi_window_take(&w, sn) && hbk_iscsi_window_take(&w, sn)) {
			abort();   /* a CmdSN is taken once */
		}
	}
	return 0;
}
