/* lockbalance: mm/fixture_return.c: fixture_map_locked */
/*
 * Returns the mapped entry with its lock held and the lock in *ptlp, or
 * NULL with nothing held or mapped.  Normal path: the driver checks the
 * handed-back table is mapped and its lock held, writes the entry as a
 * caller would (so the recheck must have happened in that lock hold), and
 * releases both.  A failed recheck returns NULL, as a failed mapping does.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	spinlock_t *ptl = NULL;
	pte_t *pte = fixture_map_locked(&lb_mm, &lb_pmd[0], 0, &ptl);

	lb_note("pte=%s", pte ? "set" : "NULL");
	if (mode == LB_NORMAL)
		LB_EXPECT(pte != NULL);
	if (pte) {
		set_pte_at(&lb_mm, 0, pte, pte_mkold(ptep_get(pte)));
		lb_handed_back_locked(pte, ptl);
	}
}

LB_MAIN("fixture_map_locked", run, 1)
