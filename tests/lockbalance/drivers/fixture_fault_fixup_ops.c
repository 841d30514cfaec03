/* lockbalance: mm/fixture_fault.c: struct fixture_pte_ops fixture_fault_fixup_ops */
/*
 * ops->fixup() gets the mapped entry with the lock held; this driver's
 * fixup writes it.  Normal path: returns true and reports the address
 * once.  A failed recheck returns false, as a failed mapping does, and
 * reports nothing.
 */
#include "stub.h"
#include LB_UNDER_TEST

static int reports;

static bool fixup(pte_t *pte)
{
	set_pte_at(&lb_mm, 0, pte, pte_mkold(ptep_get(pte)));
	return true;
}

static void report(unsigned long addr)
{
	(void)addr;
	reports++;
}

static void run(enum lb_mode mode)
{
	const struct fixture_pte_ops ops = { .fixup = fixup, .report = report };
	bool ret;

	reports = 0;
	ret = fixture_fault_fixup_ops(&lb_mm, &lb_pmd[0], 0, &ops);
	lb_note("ret=%d reports=%d", ret, reports);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret && reports == 1);
}

LB_MAIN("fixture_fault_fixup_ops", run, 1)
