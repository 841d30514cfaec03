/* lockbalance: mm/fixture_basic.c: fixture_decl_init_rw */
/*
 * Maps, locks, writes one entry, unlocks.  Normal path: returns 0 and the
 * entry holds the new value.  Every path: nothing held or mapped after.
 * A failed recheck returns what a failed mapping returns (-EAGAIN).
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	pte_t newpte = { LB_PRESENT | LB_PFN(0x42) };
	int ret = fixture_decl_init_rw(&lb_vma, &lb_pmd[0], 0, newpte);

	lb_note("ret=%d", ret);
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0 && lb_pte(0, 0)->pte == newpte.pte);
}

LB_MAIN("fixture_decl_init_rw", run, 1)
