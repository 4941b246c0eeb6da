/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness of the array spec parser (src/raid/spec.c), which takes
 * `hbakit raid` arguments and raid driver options: an input is the spec
 * text (up to its first NUL), parsed with a short and a long error buffer,
 * and each of its comma-separated items is also parsed as a size.  A parsed
 * spec must be consistent; a refusal must leave a NUL-terminated message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hbk/raid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse(const char *text, size_t errlen)
{
	char *err = malloc(errlen ? errlen : 1);
	if (!err)
		abort();
	memset(err, 'x', errlen ? errlen : 1);
	struct hbk_raid_spec *s = NULL;
	int r = hbk_raid_spec_parse(text, &s, err, errlen);
	if (r == 0) {
		if (!s || s->nmembers > s->ndisks || s->ndisks > HBK_RAID_MAX_DISKS)
			abort();
		for (unsigned i = 0; i < s->ndisks; i++)
			if (!s->disk[i].text || strlen(s->disk[i].text) > strlen(text) + 32 ||
			    (s->disk[i].kind == HBK_RAID_SPEC_FILE && !s->disk[i].target))
				abort();
		hbk_raid_spec_free(s);
	} else if (r == -EINVAL) {
		if (errlen && !memchr(err, 0, errlen))
			abort();
	} else if (r != -ENOMEM) {
		abort();
	}
	free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = 0;
	parse(text, 7);
	parse(text, 256);
	for (char *save = NULL, *item = strtok_r(text, ",", &save); item;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		uint64_t v;
		hbk_raid_spec_size(eq ? eq + 1 : item, &v);
	}
	free(text);
	return 0;
}
