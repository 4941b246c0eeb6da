/* SPDX-License-Identifier: MIT */
/*
 * The driver's side of the controller's hardware interface: posting frames
 * on the request ring (lock-free, any number of producers) and reaping
 * reply descriptors, through device memory and the registers only.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "hbk/device.h"

int hbk_dev_port_init(struct hbk_dev_port *p, struct hbk_dev *dev)
{
	if (hbk_dev_read32(dev, HBK_DEV_REG_ID) != HBK_DEV_ID ||
	    hbk_dev_read32(dev, HBK_DEV_REG_VERSION) != HBK_DEV_VERSION)
		return -ENODEV;
	uint8_t *bar = hbk_dev_bar(dev);
	p->dev = dev;
	p->req = (struct hbk_dev_frame *)(bar + hbk_dev_read32(dev, HBK_DEV_REG_REQ_OFF));
	p->entries = hbk_dev_read32(dev, HBK_DEV_REG_REQ_ENTRIES);
	p->nqueues = hbk_dev_read32(dev, HBK_DEV_REG_RPL_QUEUES);
	p->depth = hbk_dev_read32(dev, HBK_DEV_REG_RPL_DEPTH);
	atomic_store(&p->reserve, hbk_dev_read32(dev, HBK_DEV_REG_REQ_PI));
	for (unsigned q = 0; q < p->nqueues; q++) {
		p->rpl[q] = (struct hbk_dev_reply *)(bar + hbk_dev_read32(dev, HBK_DEV_REG_RQ_OFF(q)));
		p->rpl_ci[q] = hbk_dev_read32(dev, HBK_DEV_REG_RQ_CI(q));
	}
	return 0;
}

int hbk_dev_post(struct hbk_dev_port *p, const struct hbk_dev_frame *f, unsigned n)
{
	if (!n)
		return 0;
	if (n > p->entries)
		return -EAGAIN;
	uint32_t first = atomic_load_explicit(&p->reserve, memory_order_relaxed);
	do {
		/* Acquire: pairs with the firmware's release store of REQ_CI once
		 * it copied frames out, so slots below REQ_CI + entries are free
		 * to overwrite. */
		uint32_t ci = hbk_dev_read32(p->dev, HBK_DEV_REG_REQ_CI);
		/* Signed: REQ_CI is read after first, so other producers may
		 * have reserved past first meanwhile and the card taken their
		 * frames.  first is then behind REQ_CI (no room is missing),
		 * and the exchange below fails and tries again with the
		 * current reserve; once it succeeds, first >= REQ_CI. */
		if ((int32_t)(first + n - ci) > (int32_t)p->entries)
			return -EAGAIN;
	} while (!atomic_compare_exchange_weak_explicit(&p->reserve, &first, first + n,
							memory_order_relaxed, memory_order_relaxed));
	const size_t body = offsetof(struct hbk_dev_frame, tag);
	for (unsigned i = 0; i < n; i++) {
		struct hbk_dev_frame *s = &p->req[(first + i) & (p->entries - 1)];
		memcpy((uint8_t *)s + body, (const uint8_t *)&f[i] + body, sizeof(*s) - body);
		/* Release: the body is visible before the seq that publishes it
		 * (pairs with the firmware's acquire load of seq). */
		__atomic_store_n(&s->seq, first + i + 1, __ATOMIC_RELEASE);
	}
	hbk_dev_write32(p->dev, HBK_DEV_REG_REQ_PI, first + n);
	return 0;
}

unsigned hbk_dev_reap(struct hbk_dev_port *p, unsigned q, struct hbk_dev_reply *out,
		      unsigned max)
{
	/* Acquire: pairs with the firmware's release store of RQ_PI after it
	 * wrote the descriptors. */
	uint32_t pi = hbk_dev_read32(p->dev, HBK_DEV_REG_RQ_PI(q));
	uint32_t ci = p->rpl_ci[q];
	unsigned n = pi - ci < max ? pi - ci : max;
	for (unsigned i = 0; i < n; i++)
		out[i] = p->rpl[q][(ci + i) & (p->depth - 1)];
	if (n) {
		p->rpl_ci[q] = ci + n;
		/* Release, and taken under the queue's lock by the device: the
		 * descriptors are copied out before the firmware reuses them. */
		hbk_dev_write32(p->dev, HBK_DEV_REG_RQ_CI(q), ci + n);
	}
	return n;
}
