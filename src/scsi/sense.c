/* SPDX-License-Identifier: MIT */
/*
 * SCSI sense data and LUN addresses: builds fixed-format sense, decodes
 * fixed and descriptor sense into a struct hbk_scsi_result, names results
 * for logs, and converts between SAM 8-byte LUNs (single level, peripheral
 * and flat addressing) and LUN numbers.  Pure functions, any thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hbk/scsi.h"
#include "scsi/scsi_priv.h"

int hbk_scsi_sense_fixed(uint8_t *buf, uint8_t key, uint16_t asc_ascq)
{
	memset(buf, 0, HBK_SCSI_SENSE_FIXED_LEN);
	buf[0] = 0x70;                                  /* current, fixed */
	buf[2] = key & 0x0f;
	buf[7] = HBK_SCSI_SENSE_FIXED_LEN - 8;          /* additional length */
	buf[12] = (uint8_t)(asc_ascq >> 8);
	buf[13] = (uint8_t)asc_ascq;
	return HBK_SCSI_SENSE_FIXED_LEN;
}

int hbk_scsi_sense_decode(const uint8_t *sense, size_t len, struct hbk_scsi_result *r)
{
	r->sense_key = r->asc = r->ascq = 0;
	r->flags &= (uint8_t)~HBK_SCSI_RESULT_DEFERRED;
	/* Both formats have an 8-byte header that ends with the additional length. */
	if (!sense || len < 8)
		return -EINVAL;
	if ((sense[0] & 0x7f) == 0x71 || (sense[0] & 0x7f) == 0x73)
		r->flags |= HBK_SCSI_RESULT_DEFERRED;
	switch (sense[0] & 0x7f) {
	case 0x70: /* fixed, current */
	case 0x71: /* fixed, deferred */
		r->sense_key = sense[2] & 0x0f;
		/* ASC/ASCQ count only when both the buffer and the device hold them. */
		if (len >= 14 && sense[7] >= 6) {
			r->asc = sense[12];
			r->ascq = sense[13];
		}
		return 0;
	case 0x72: /* descriptor, current */
	case 0x73: /* descriptor, deferred */
		r->sense_key = sense[1] & 0x0f;
		r->asc = sense[2];
		r->ascq = sense[3];
		return 0;
	default:
		return -EINVAL;
	}
}

static const char *const sense_key_names[16] = {
	"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR",
	"HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
	"BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND",
	"RESERVED", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
};

static const char *status_name(uint8_t status)
{
	switch (status) {
	case HBK_STATUS_GOOD: return "GOOD";
	case HBK_STATUS_CHECK_CONDITION: return "CHECK CONDITION";
	case HBK_STATUS_CONDITION_MET: return "CONDITION MET";
	case HBK_STATUS_BUSY: return "BUSY";
	case HBK_STATUS_INTERMEDIATE: return "INTERMEDIATE";
	case HBK_STATUS_INTERMEDIATE_CONDITION_MET: return "INTERMEDIATE CONDITION MET";
	case HBK_STATUS_RESERVATION_CONFLICT: return "RESERVATION CONFLICT";
	case HBK_STATUS_TASK_SET_FULL: return "TASK SET FULL";
	case HBK_STATUS_ACA_ACTIVE: return "ACA ACTIVE";
	case HBK_STATUS_TASK_ABORTED: return "TASK ABORTED";
	default: return NULL;
	}
}

static const char *delivery_name(uint8_t status)
{
	switch (status) {
	case HBK_DS_TASK_TIMEOUT: return "TASK TIMEOUT";
	case HBK_DS_PROTOCOL_TIMEOUT: return "PROTOCOL TIMEOUT";
	case HBK_DS_DEVICE_NOT_RESPONDING: return "DEVICE NOT RESPONDING";
	case HBK_DS_DEVICE_NOT_PRESENT: return "DEVICE NOT PRESENT";
	case HBK_DS_DELIVERY_FAILURE: return "DELIVERY FAILURE";
	case HBK_DS_NO_STATUS: return "NO STATUS";
	default: return NULL;
	}
}

const char *hbk_scsi_status_name(uint32_t service, uint32_t status)
{
	if (status > 0xff)
		return NULL;
	if (service == HBK_SR_TASK_COMPLETE)
		return status_name((uint8_t)status);
	if (service == HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE)
		return delivery_name((uint8_t)status);
	return NULL;
}

/*
 * CHECK CONDITION reads "ILLEGAL REQUEST/0x24/0x00"; other statuses are
 * named ("GOOD", "BUSY"); an undelivered task reads "SERVICE FAILURE/<why>".
 */
const char *hbk_scsi_result_str(const struct hbk_scsi_result *r, char *buf, size_t size)
{
	const char *name;

	if (!buf || size == 0)
		return buf;
	if (r->service == HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE) {
		name = delivery_name(r->status);
		if (name)
			snprintf(buf, size, "SERVICE FAILURE/%s", name);
		else
			snprintf(buf, size, "SERVICE FAILURE/0x%02x", r->status);
	} else if (r->service != HBK_SR_TASK_COMPLETE) {
		snprintf(buf, size, "SERVICE RESPONSE %u", r->service);
	} else if (r->status == HBK_STATUS_CHECK_CONDITION) {
		snprintf(buf, size, "%s/0x%02x/0x%02x",
			 sense_key_names[r->sense_key & 0x0f], r->asc, r->ascq);
	} else if ((name = status_name(r->status)) != NULL) {
		snprintf(buf, size, "%s", name);
	} else {
		snprintf(buf, size, "STATUS 0x%02x", r->status);
	}
	return buf;
}

/* Only single-level LUNs: bytes 2..7 must be zero, the peripheral bus 0. */
uint64_t hbk_scsi_lun_decode(const uint8_t lun[8])
{
	for (unsigned i = 2; i < 8; i++)
		if (lun[i])
			return UINT64_MAX;
	switch (lun[0] >> 6) {
	case 0: /* peripheral device addressing */
		return lun[0] ? UINT64_MAX : lun[1];
	case 1: /* flat space addressing */
		return (uint64_t)(lun[0] & 0x3f) << 8 | lun[1];
	default:
		return UINT64_MAX;
	}
}

/*
 * LUNs below 256 use peripheral addressing (what Linux and most targets
 * send), up to 16383 flat addressing.  A larger number has no single-level
 * form and is encoded as all ones, which decodes to UINT64_MAX.
 */
void hbk_scsi_lun_encode(uint64_t lun, uint8_t out[8])
{
	memset(out, 0, 8);
	if (lun < 256) {
		out[1] = (uint8_t)lun;
	} else if (lun < HBK_SCSI_LUN_FLAT_MAX) {
		out[0] = (uint8_t)(0x40 | lun >> 8);
		out[1] = (uint8_t)lun;
	} else {
		memset(out, 0xff, 8);
	}
}
