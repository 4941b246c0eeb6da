/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness of what the host takes from a driver process: the
 * framing of messages on the SOCK_SEQPACKET socket (src/common/msg.c,
 * hbk_msg_recv) and, since a driver answers the host's discovery commands,
 * the SAM layer's parsers of their data-in (src/host/sam_cdb.c) and the
 * sense decoder (src/scsi/sense.c).  The input is sent as one datagram and
 * handed, at its exact length, to every parser; the first byte, when it is
 * below the input's length, also cuts it short to model a short transfer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "hbk/scsi.h"
#include "host/sam_cdb.h"

static int sv[2] = { -1, -1 };

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		abort();
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	return 0;
}

static void framing(const uint8_t *data, size_t size)
{
	static uint8_t in[HBK_MSG_MAX];
	if (!size || size > 65536)
		return;   /* an empty datagram reads as end of stream */
	if (send(sv[0], data, size, 0) != (ssize_t)size)
		abort();
	const char *why = NULL;
	int n = hbk_msg_recv(sv[1], in, sizeof(in), 1000, NULL, &why);
	if (n >= 0) {
		const struct hbk_msg_hdr *h = (const void *)in;
		if (h->magic != HBK_MSG_MAGIC || h->len != (uint32_t)n || (size_t)n != size ||
		    (size_t)n != hbk_msg_expect(h->type, h->flags & HBK_MSGF_REPLY))
			abort();
	} else if (n != -EBADMSG || !why) {
		abort();
	}
}

static void parsers(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	struct hbk_sam_inquiry inq;
	struct hbk_sam_devid id;
	struct hbk_sam_block_limits bl;
	struct hbk_sam_capacity cap;
	uint8_t pages[8];
	uint64_t luns[8];
	unsigned count;
	char serial[40];
	hbk_sam_parse_inquiry(buf, size, &inq);
	if (!hbk_sam_parse_vpd_pages(buf, size, pages, 8, &count) && count > 65535)
		abort();
	if (!hbk_sam_parse_vpd_serial(buf, size, serial, sizeof(serial)) &&
	    !memchr(serial, 0, sizeof(serial)))
		abort();
	if (!hbk_sam_parse_vpd_devid(buf, size, &id) && strlen(id.id) >= sizeof(id.id))
		abort();
	hbk_sam_parse_vpd_block_limits(buf, size, &bl);
	hbk_sam_parse_read_capacity16(buf, size, &cap);
	hbk_sam_parse_read_capacity10(buf, size, &cap);
	hbk_sam_parse_report_luns(buf, size, luns, 8, &count);
	struct hbk_scsi_result r;
	hbk_scsi_sense_decode(buf, size, &r);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	framing(data, size);
	parsers(data, size);
	if (size > 1 && data[0] < size - 1)
		parsers(data + 1, data[0]);
	return 0;
}
