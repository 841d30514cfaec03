/* lockbalance: mm/fixture_fault.c: fixture_fault_set_pte */
/*
 * Maps into vmf->pte, locks vmf->ptl, sets the entry, unmaps and unlocks.
 * Normal path: returns 0 with the entry set.  The caller sees the return
 * value and vmf->pte: a failed recheck must leave both as a failed
 * mapping does (VM_FAULT_RETRY, vmf->pte == NULL).
 */
#include "stub.h"
#include LB_UNDER_TEST

static void run(enum lb_mode mode)
{
	struct vm_fault vmf = { .vma = &lb_vma, .pmd = &lb_pmd[0], .address = 0 };
	pte_t entry = { LB_PRESENT | LB_PFN(0x42) };
	int ret = fixture_fault_set_pte(&vmf, entry);

	lb_note("ret=%d vmf->pte=%s", ret, vmf.pte ? "set" : "NULL");
	if (mode == LB_NORMAL)
		LB_EXPECT(ret == 0 && lb_pte(0, 0)->pte == entry.pte);
}

LB_MAIN("fixture_fault_set_pte", run, 1)
