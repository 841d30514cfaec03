/* lockbalance: mm/fixture_fault.c: fixture_fault_numa_like */
/*
 * Maps into vmf->pte, reads vmf->orig_pte before the lock, locks
 * vmf->ptl, compares with pte_same() and changes the protection.  The
 * entry it compares may be none, so the conversion rechecks the pmd: a
 * failed recheck leaves what a failed mapping leaves (returns 0 with
 * vmf->pte NULL), and nothing held or mapped.
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	struct vm_area_struct vma = lb_vma;
	struct vm_fault vmf = { .vma = &vma, .pmd = &lb_pmd[0], .address = 0 };
	vm_fault_t ret = fixture_fault_numa_like(&vmf);

	lb_note("ret=%d vmf->pte=%s", (int)ret, vmf.pte ? "set" : "NULL");
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0);
}

LB_MAIN("fixture_fault_numa_like", run, 1)
