/* lockbalance: mm/fixture_fault.c: fixture_fault_extern_callee */
/*
 * arch_fixture_sync_pte() is another file's function; the stub has it
 * write the entry, as the scan must assume.  Every path: nothing held or
 * mapped after, the write only under the lock after the recheck.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	lb_pte(0, 0)->pte &= ~LB_YOUNG;
	fixture_fault_extern_callee(&lb_vma, &lb_pmd[0], 0);
	if (mode == LB_NORMAL)
		LB_EXPECT(pte_young(*lb_pte(0, 0)));
}

LB_MAIN("fixture_fault_extern_callee", run, 1)
