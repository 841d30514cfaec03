/* lockbalance: mm/fixture_fault.c: fixture_fault_partly_guarded */
/*
 * With force set the entry is written without the pte_same() guard, so
 * only the pmd recheck protects it.  Normal path: returns 0 with the
 * entry set.  A failed recheck returns what a failed mapping returns.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	pte_t newpte = { LB_PRESENT | LB_PFN(0x42) };
	int ret = fixture_fault_partly_guarded(&lb_mm, &lb_pmd[0], 0, newpte, true);

	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0 && lb_pte(0, 0)->pte == newpte.pte);
}

LB_MAIN("fixture_fault_partly_guarded", run, 1)
