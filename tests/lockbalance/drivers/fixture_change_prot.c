/* lockbalance: mm/fixture_basic.c: fixture_change_prot */
/*
 * Maps, locks, rewrites the protection of one entry, unlocks.  Normal
 * path: the entry has the new protection.  Every path: nothing held or
 * mapped after, no write without the lock and its recheck.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	pgprot_t prot = { LB_YOUNG };

	fixture_change_prot(&lb_vma, &lb_pmd[0], 0, prot);
	if (mode == LB_NORMAL)
		LB_EXPECT(lb_pte(0, 0)->pte == (LB_PFN(0x100) | LB_PRESENT | LB_YOUNG));
}

LB_MAIN("fixture_change_prot", run, 1)
