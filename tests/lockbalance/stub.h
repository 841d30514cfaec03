/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Lock-balance stub kernel: just enough of the page table API for a
 * converted fixture function to compile with the host gcc as plain C, and
 * run on a fake world that checks how it uses locks and mappings.
 *
 * The world: two pmd entries, lb_pmd[0] and lb_pmd[1], each pointing at a
 * PTE table (struct lb_table: LB_PTRS entries and the table's lock), and
 * spare tables for a pmd that changes under the function.  A pmd value
 * is 1 + the index of its table, 0 for none.
 *
 * Every problem is recorded (lb_error()) and the run goes on; lb_run()
 * prints one line per scenario:  "lb: NAME: ok"  or
 * "lb: NAME: FAIL TAG: what; TAG: what".  The tags:
 *
 *   LOCK-HELD          spin_lock() of a lock the function already holds
 *   UNLOCK-NOT-HELD    spin_unlock() of a lock that is not held
 *   UNMAP-NOT-MAPPED   pte_unmap() of a table that is not mapped
 *   READ-UNMAPPED      ptep_get() on a table that is not mapped
 *   WRITE-UNLOCKED     an entry or the table written without its lock
 *   WRITE-UNCHECKED    written with the lock, but the pmd was not rechecked
 *                      (pmdp_get_lockless()) since the lock was taken
 *   WRITE-STALE        written after the pmd changed under the function
 *   WRITE-RO           written through a pte_offset_map_readonly_nolock()
 *   LEAK-LOCK          a lock still held at the end of the scenario
 *   LEAK-MAP           a table still mapped at the end of the scenario
 *   NO-RECHECK         the scenario makes the Nth pmdp_get_lockless() see
 *                      a changed pmd, and there were fewer calls
 *   STALE-PTL          a caller-visible lock pointer names a lock that is
 *                      not held (lb_ptl_ok())
 *   HANDBACK           what the function hands back is not what its
 *                      contract says (lb_handed_back*())
 *   EXPECT             a driver's own assertion (LB_EXPECT())
 *   RESULT             the caller-visible state after a failed recheck is
 *                      not what a failed mapping leaves (lb_same())
 *   WRITE-AFTER-FAILURE  a write in a scenario where the mapping or the
 *                      recheck fails (unless lb_retries: the function
 *                      maps again)
 *   LOOP               the function did not terminate
 */
#ifndef LB_STUB_H
#define LB_STUB_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- types ------------------------------------------------------------ */

typedef struct { unsigned long pte; } pte_t;
typedef struct { unsigned long pmd; } pmd_t;
typedef struct { unsigned long pgprot; } pgprot_t;
typedef struct { int held; const char *name; } spinlock_t;
typedef unsigned int vm_fault_t;
typedef void *pgtable_t;
typedef unsigned long pgoff_t;

struct mm_struct { int id; };

struct vm_area_struct {
	struct mm_struct *vm_mm;
	pgprot_t vm_page_prot;
};

struct vm_fault {
	struct vm_area_struct *vma;
	unsigned long address;
	pmd_t *pmd;
	pte_t orig_pte;
	pte_t *pte;
	spinlock_t *ptl;
};

struct page_vma_mapped_walk {
	unsigned long pfn;
	unsigned long nr_pages;
	pgoff_t pgoff;
	struct vm_area_struct *vma;
	unsigned long address;
	pmd_t *pmd;
	pte_t *pte;
	spinlock_t *ptl;
	unsigned int flags;
};

#define PAGE_SIZE		4096UL
#define SINGLE_DEPTH_NESTING	1
#define VM_FAULT_RETRY		0x0400
#define likely(x)		__builtin_expect(!!(x), 1)
#define unlikely(x)		__builtin_expect(!!(x), 0)

/* Entry bits of the fake ptes; the pfn sits above bit 12. */
#define LB_PRESENT	0x1UL
#define LB_YOUNG	0x2UL
#define LB_DIRTY	0x4UL
#define LB_WRITE	0x8UL
#define LB_PFN(pfn)	((unsigned long)(pfn) << 12)

/* ---- the world -------------------------------------------------------- */

#define LB_PTRS		8
#define LB_TABLES	6

struct lb_table {
	pte_t ent[LB_PTRS];
	spinlock_t ptl;
	int mapped;		/* pte_offset_map*() not yet pte_unmap()ed */
	bool writable;		/* mapped other than read-only while mapped */
	bool rechecked;		/* pmd rechecked in the current lock hold */
	bool stale;		/* its pmd changed to another value */
};

static struct lb_table lb_table[LB_TABLES];
static int lb_spare;			/* next spare table */
static pmd_t lb_pmd[2];
static spinlock_t lb_pml;		/* what pmd_lock() returns */
static struct mm_struct lb_mm;
static struct vm_area_struct lb_vma;

/* Settings of the scenario (lb_run()), and what happened. */
static int lb_map_fail_at;	/* the Nth map call returns NULL */
static int lb_recheck_fail_at;	/* the Nth pmdp_get_lockless() sees a change */
static bool lb_change_to_none;	/* ... to pmd_none rather than a new table */
static int lb_maps, lb_pmd_reads, lb_writes;
static long lb_steps;

static char lb_errors[2048];
static char lb_notes[512];
static int lb_failed_runs;
static bool lb_retries;		/* a failure makes the function retry */
static jmp_buf lb_escape;

/* Record a problem once (a loop may repeat it). */
static void lb_error(const char *tag, const char *fmt, ...)
{
	size_t len = strlen(lb_errors);
	char msg[400];
	int n;
	va_list ap;

	n = snprintf(msg, sizeof(msg), "%s: ", tag);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	if (strstr(lb_errors, msg) || len + strlen(msg) + 3 >= sizeof(lb_errors))
		return;
	snprintf(lb_errors + len, sizeof(lb_errors) - len, "%s%s",
		 len ? "; " : "", msg);
}

#define LB_EXPECT(cond) \
	do { if (!(cond)) lb_error("EXPECT", "%s (line %d)", #cond, __LINE__); } while (0)

/* The caller-visible state of a scenario, compared by lb_same(). */
static void lb_note(const char *fmt, ...)
{
	size_t len = strlen(lb_notes);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(lb_notes + len, sizeof(lb_notes) - len, fmt, ap);
	va_end(ap);
}

static void lb_step(void)
{
	if (++lb_steps > 100000) {
		lb_error("LOOP", "more than 100000 page table operations");
		longjmp(lb_escape, 1);
	}
}

static struct lb_table *lb_table_of_pte(const pte_t *ptep)
{
	for (int i = 0; i < LB_TABLES; i++)
		if (ptep >= lb_table[i].ent && ptep < lb_table[i].ent + LB_PTRS)
			return &lb_table[i];
	return NULL;
}

static struct lb_table *lb_table_of_lock(const spinlock_t *l)
{
	for (int i = 0; i < LB_TABLES; i++)
		if (l == &lb_table[i].ptl)
			return &lb_table[i];
	return NULL;
}

static struct lb_table *lb_table_of_pmdval(pmd_t val)
{
	if (val.pmd == 0 || val.pmd > LB_TABLES)
		return NULL;
	return &lb_table[val.pmd - 1];
}

static const char *lb_lock_name(const spinlock_t *l)
{
	return l ? l->name : "NULL";
}

/* "NULL", "held" or "not held": how lb_note() shows a lock pointer. */
static const char *lb_lock_state(const spinlock_t *l)
{
	return !l ? "NULL" : l->held ? "held" : "not held";
}

static pte_t *lb_pte(int table, int index)
{
	return &lb_table[table].ent[index];
}

static void lb_reset(void)
{
	static const char *names[LB_TABLES] = {
		"ptl of table 0", "ptl of table 1", "ptl of spare table 2",
		"ptl of spare table 3", "ptl of spare table 4",
		"ptl of spare table 5",
	};

	memset(lb_table, 0, sizeof(lb_table));
	for (int t = 0; t < LB_TABLES; t++) {
		lb_table[t].ptl.name = names[t];
		for (int i = 0; i < LB_PTRS; i++)
			lb_table[t].ent[i].pte = LB_PRESENT | LB_WRITE | LB_YOUNG |
						 LB_DIRTY | LB_PFN(0x100 * (t + 1) + i);
	}
	lb_pmd[0].pmd = 1;
	lb_pmd[1].pmd = 2;
	lb_spare = 2;
	lb_pml = (spinlock_t){ 0, "pmd lock" };
	lb_vma = (struct vm_area_struct){ &lb_mm, { 0 } };
	lb_map_fail_at = lb_recheck_fail_at = 0;
	lb_change_to_none = false;
	lb_maps = lb_pmd_reads = lb_writes = 0;
	lb_steps = 0;
	lb_errors[0] = lb_notes[0] = '\0';
}

/* ---- locks ------------------------------------------------------------ */

static void lb_lock_hold_changed(spinlock_t *l)
{
	struct lb_table *t = lb_table_of_lock(l);

	if (t)
		t->rechecked = false;	/* a new hold must recheck again */
}

static void spin_lock(spinlock_t *l)
{
	lb_step();
	if (l->held)
		lb_error("LOCK-HELD", "spin_lock(%s) while holding it", l->name);
	l->held = 1;
	lb_lock_hold_changed(l);
}

static void spin_lock_nested(spinlock_t *l, int subclass)
{
	(void)subclass;
	spin_lock(l);
}

static int spin_trylock(spinlock_t *l)
{
	lb_step();
	if (l->held)
		return 0;
	l->held = 1;
	lb_lock_hold_changed(l);
	return 1;
}

static void spin_unlock(spinlock_t *l)
{
	lb_step();
	if (!l) {
		lb_error("UNLOCK-NOT-HELD", "spin_unlock(NULL)");
		return;
	}
	if (!l->held)
		lb_error("UNLOCK-NOT-HELD", "spin_unlock(%s), which is not held",
			 l->name);
	l->held = 0;
	lb_lock_hold_changed(l);
}

static spinlock_t *pmd_lock(struct mm_struct *mm, pmd_t *pmd)
{
	(void)mm; (void)pmd;
	spin_lock(&lb_pml);
	return &lb_pml;
}

/* ---- mapping ---------------------------------------------------------- */

static pte_t *lb_map(pmd_t *pmd, unsigned long addr, pmd_t *pmdvalp,
		     spinlock_t **ptlp, bool writable)
{
	struct lb_table *t;

	lb_step();
	if (++lb_maps == lb_map_fail_at)
		return NULL;
	t = lb_table_of_pmdval(*pmd);
	if (!t)
		return NULL;
	t->mapped++;
	t->writable |= writable;
	if (pmdvalp)
		*pmdvalp = *pmd;
	if (ptlp)
		*ptlp = &t->ptl;
	return &t->ent[(addr / PAGE_SIZE) % LB_PTRS];
}

static pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmd,
				    unsigned long addr, spinlock_t **ptlp)
{
	(void)mm;
	return lb_map(pmd, addr, NULL, ptlp, true);
}

static pte_t *pte_offset_map_readonly_nolock(struct mm_struct *mm, pmd_t *pmd,
					     unsigned long addr,
					     spinlock_t **ptlp)
{
	(void)mm;
	return lb_map(pmd, addr, NULL, ptlp, false);
}

static pte_t *pte_offset_map_maywrite_nolock(struct mm_struct *mm, pmd_t *pmd,
					     unsigned long addr, pmd_t *pmdvalp,
					     spinlock_t **ptlp)
{
	(void)mm;
	if (!pmdvalp)
		lb_error("EXPECT", "pte_offset_map_maywrite_nolock() without pmdvalp");
	return lb_map(pmd, addr, pmdvalp, ptlp, true);
}

static pte_t *pte_offset_map(pmd_t *pmd, unsigned long addr)
{
	return lb_map(pmd, addr, NULL, NULL, true);
}

static pte_t *pte_offset_map_lock(struct mm_struct *mm, pmd_t *pmd,
				  unsigned long addr, spinlock_t **ptlp)
{
	pte_t *pte = lb_map(pmd, addr, NULL, ptlp, true);

	(void)mm;
	if (pte) {
		spin_lock(*ptlp);
		lb_table_of_pte(pte)->rechecked = true;	/* stable by construction */
	}
	return pte;
}

static void pte_unmap(pte_t *ptep)
{
	struct lb_table *t = lb_table_of_pte(ptep);

	lb_step();
	if (!t)
		lb_error("UNMAP-NOT-MAPPED", "pte_unmap() of a pointer into no table");
	else if (t->mapped <= 0)
		lb_error("UNMAP-NOT-MAPPED", "pte_unmap() of table %d, not mapped",
			 (int)(t - lb_table));
	else if (--t->mapped == 0)
		t->writable = false;
}

#define pte_unmap_unlock(pte, ptl)	do {		\
	spin_unlock(ptl);				\
	pte_unmap(pte);					\
} while (0)

/* ---- the pmd ---------------------------------------------------------- */

static bool pmd_same(pmd_t a, pmd_t b)	{ return a.pmd == b.pmd; }
static bool pmd_none(pmd_t pmd)		{ return pmd.pmd == 0; }
static pgtable_t pmd_pgtable(pmd_t pmd)	{ return lb_table_of_pmdval(pmd); }
static void pte_free_defer(struct mm_struct *mm, pgtable_t pgtable)
{
	(void)mm; (void)pgtable;
}

/*
 * The recheck.  On its lb_recheck_fail_at-th call the pmd changes first:
 * to a copy of its table (or to none), and the old table goes stale.
 * A call with the lock of the pmd's current table held counts as that
 * lock hold's recheck.
 */
static pmd_t pmdp_get_lockless(pmd_t *pmdp)
{
	struct lb_table *t = lb_table_of_pmdval(*pmdp);

	lb_step();
	if (++lb_pmd_reads == lb_recheck_fail_at && t) {
		t->stale = true;
		if (lb_change_to_none || lb_spare >= LB_TABLES) {
			pmdp->pmd = 0;
		} else {
			memcpy(lb_table[lb_spare].ent, t->ent, sizeof(t->ent));
			pmdp->pmd = 1 + lb_spare++;
		}
		t = lb_table_of_pmdval(*pmdp);
	}
	if (t && t->ptl.held)
		t->rechecked = true;
	return *pmdp;
}

/* ---- entries ---------------------------------------------------------- */

static bool pte_same(pte_t a, pte_t b)	{ return a.pte == b.pte; }
static bool pte_none(pte_t pte)		{ return pte.pte == 0; }
static bool pte_present(pte_t pte)	{ return pte.pte & LB_PRESENT; }
static bool pte_young(pte_t pte)	{ return pte.pte & LB_YOUNG; }
static bool pte_dirty(pte_t pte)	{ return pte.pte & LB_DIRTY; }
static bool pte_write(pte_t pte)	{ return pte.pte & LB_WRITE; }
static unsigned long pte_pfn(pte_t pte)	{ return pte.pte >> 12; }
static pte_t pte_mkyoung(pte_t pte)	{ pte.pte |= LB_YOUNG; return pte; }
static pte_t pte_mkold(pte_t pte)	{ pte.pte &= ~LB_YOUNG; return pte; }
static pte_t pte_modify(pte_t pte, pgprot_t prot)
{
	pte.pte = (pte.pte & ~0xfffUL) | LB_PRESENT | (prot.pgprot & 0xffeUL);
	return pte;
}

static pte_t lb_read(const pte_t *ptep, const char *op)
{
	struct lb_table *t = lb_table_of_pte(ptep);

	lb_step();
	if (!t || t->mapped <= 0) {
		lb_error("READ-UNMAPPED", "%s on a table that is not mapped", op);
		return (pte_t){ 0 };
	}
	return *ptep;
}

/* The checks of every write to a table, through an entry or its pmd. */
static void lb_write_table(struct lb_table *t, const char *op, bool via_pte)
{
	lb_step();
	lb_writes++;
	if (!t) {
		lb_error("WRITE-UNLOCKED", "%s on no table", op);
		return;
	}
	if (t->mapped <= 0 && via_pte)
		lb_error("READ-UNMAPPED", "%s on a table that is not mapped", op);
	else if (t->mapped > 0 && !t->writable)
		lb_error("WRITE-RO", "%s through a read-only mapping", op);
	if (!t->ptl.held)
		lb_error("WRITE-UNLOCKED", "%s without %s", op, t->ptl.name);
	else if (t->stale)
		lb_error("WRITE-STALE", "%s on a table whose pmd changed", op);
	else if (!t->rechecked)
		lb_error("WRITE-UNCHECKED",
			 "%s under %s, with no pmd recheck since it was taken",
			 op, t->ptl.name);
}

static void lb_write(pte_t *ptep, pte_t val, const char *op)
{
	lb_write_table(lb_table_of_pte(ptep), op, true);
	if (lb_table_of_pte(ptep))
		*ptep = val;
}

static pte_t ptep_get(pte_t *ptep)		{ return lb_read(ptep, "ptep_get()"); }
static pte_t ptep_get_lockless(pte_t *ptep)	{ return lb_read(ptep, "ptep_get_lockless()"); }

static void set_pte_at(struct mm_struct *mm, unsigned long addr, pte_t *ptep,
		       pte_t pte)
{
	(void)mm; (void)addr;
	lb_write(ptep, pte, "set_pte_at()");
}

static void pte_clear(struct mm_struct *mm, unsigned long addr, pte_t *ptep)
{
	(void)mm; (void)addr;
	lb_write(ptep, (pte_t){ 0 }, "pte_clear()");
}

static void ptep_clear(struct mm_struct *mm, unsigned long addr, pte_t *ptep)
{
	(void)mm; (void)addr;
	lb_write(ptep, (pte_t){ 0 }, "ptep_clear()");
}

static pte_t ptep_get_and_clear(struct mm_struct *mm, unsigned long addr,
				pte_t *ptep)
{
	pte_t old = lb_read(ptep, "ptep_get_and_clear()");

	(void)mm; (void)addr;
	lb_write(ptep, (pte_t){ 0 }, "ptep_get_and_clear()");
	return old;
}

static void ptep_set_wrprotect(struct mm_struct *mm, unsigned long addr,
			       pte_t *ptep)
{
	pte_t pte = lb_read(ptep, "ptep_set_wrprotect()");

	(void)mm; (void)addr;
	pte.pte &= ~LB_WRITE;
	lb_write(ptep, pte, "ptep_set_wrprotect()");
}

static int ptep_set_access_flags(struct vm_area_struct *vma,
				 unsigned long addr, pte_t *ptep, pte_t entry,
				 int dirty)
{
	(void)vma; (void)addr;
	if (dirty)
		entry.pte |= LB_DIRTY;
	lb_write(ptep, entry, "ptep_set_access_flags()");
	return 1;
}

static int lb_clear_young(pte_t *ptep, const char *op)
{
	pte_t pte = lb_read(ptep, op);

	lb_write(ptep, pte_mkold(pte), op);
	return pte_young(pte);
}

static int ptep_test_and_clear_young(struct vm_area_struct *vma,
				     unsigned long addr, pte_t *ptep)
{
	(void)vma; (void)addr;
	return lb_clear_young(ptep, "ptep_test_and_clear_young()");
}

static int ptep_clear_flush_young(struct vm_area_struct *vma,
				  unsigned long addr, pte_t *ptep)
{
	(void)vma; (void)addr;
	return lb_clear_young(ptep, "ptep_clear_flush_young()");
}

static pte_t ptep_modify_prot_start(struct vm_area_struct *vma,
				    unsigned long addr, pte_t *ptep)
{
	pte_t old = lb_read(ptep, "ptep_modify_prot_start()");

	(void)vma; (void)addr;
	lb_write(ptep, (pte_t){ 0 }, "ptep_modify_prot_start()");
	return old;
}

static void ptep_modify_prot_commit(struct vm_area_struct *vma,
				    unsigned long addr, pte_t *ptep,
				    pte_t old_pte, pte_t pte)
{
	(void)vma; (void)addr; (void)old_pte;
	lb_write(ptep, pte, "ptep_modify_prot_commit()");
}

/* Removes the table: a write to it, under its lock. */
static pmd_t pmdp_collapse_flush(struct vm_area_struct *vma,
				 unsigned long addr, pmd_t *pmdp)
{
	pmd_t old = *pmdp;

	(void)vma; (void)addr;
	lb_write_table(lb_table_of_pmdval(old), "pmdp_collapse_flush()", false);
	pmdp->pmd = 0;
	return old;
}

/* ---- callees of the fixtures that live elsewhere ---------------------- */

static void fixture_account_dirty(struct mm_struct *mm)	{ (void)mm; }
static void fixture_x86_note_dirty(struct mm_struct *mm, unsigned long addr)
{
	(void)mm; (void)addr;
}
static void fixture_relock_flush(struct vm_area_struct *vma,
				 unsigned long addr, int nr)
{
	(void)vma; (void)addr; (void)nr;
}
/* Another file's function, which may write the entry (the scan's view). */
static void arch_fixture_sync_pte(struct vm_area_struct *vma,
				  unsigned long addr, pte_t *ptep)
{
	(void)vma; (void)addr;
	lb_write(ptep, pte_mkyoung(lb_read(ptep, "arch_fixture_sync_pte()")),
		 "arch_fixture_sync_pte()");
}

/* ---- what drivers check ----------------------------------------------- */

/* A caller-visible lock pointer must be NULL or name a lock that is held. */
static void lb_ptl_ok(const spinlock_t *l, const char *what)
{
	if (l && !l->held)
		lb_error("STALE-PTL", "%s points at %s, which is not held", what,
			 l->name);
}

/*
 * The function handed back a mapped table with its lock held: check that,
 * then release both as its caller would.
 */
static void lb_handed_back_locked(pte_t *pte, spinlock_t *ptl)
{
	struct lb_table *t = pte ? lb_table_of_pte(pte) : NULL;

	if (!t || t->mapped <= 0 || !ptl || ptl != &t->ptl || !ptl->held) {
		lb_error("HANDBACK", "expected a mapped table with its lock held, got pte %s, %s %s",
			 !t ? "into no table" : t->mapped > 0 ? "mapped" : "not mapped",
			 lb_lock_name(ptl), lb_lock_state(ptl));
		return;
	}
	pte_unmap_unlock(pte, ptl);
}

/* The same for a mapped table handed back with its lock not taken. */
static void lb_handed_back_unlocked(pte_t *pte, spinlock_t *ptl)
{
	struct lb_table *t = pte ? lb_table_of_pte(pte) : NULL;

	if (!t || t->mapped <= 0 || !ptl || ptl != &t->ptl || ptl->held) {
		lb_error("HANDBACK", "expected a mapped table with its lock not held, got pte %s, %s %s",
			 !t ? "into no table" : t->mapped > 0 ? "mapped" : "not mapped",
			 lb_lock_name(ptl), lb_lock_state(ptl));
		return;
	}
	pte_unmap(pte);
}

/* ---- scenarios -------------------------------------------------------- */

enum lb_mode { LB_NORMAL, LB_MAP_FAILS, LB_RECHECK_FAILS, LB_RECHECK_CLEARS };

static const char *lb_mode_name[] = {
	"normal path", "mapping fails", "recheck fails (pmd now another table)",
	"recheck fails (pmd now none)",
};

static void lb_finish(void)
{
	for (int i = 0; i < LB_TABLES; i++) {
		if (lb_table[i].mapped)
			lb_error("LEAK-MAP", "table %d still mapped (%d)", i,
				 lb_table[i].mapped);
		if (lb_table[i].ptl.held)
			lb_error("LEAK-LOCK", "%s still held", lb_table[i].ptl.name);
	}
	if (lb_pml.held)
		lb_error("LEAK-LOCK", "%s still held", lb_pml.name);
	if (lb_recheck_fail_at && lb_pmd_reads < lb_recheck_fail_at)
		lb_error("NO-RECHECK", "pmdp_get_lockless() called %d times, the scenario changes the pmd at call %d",
			 lb_pmd_reads, lb_recheck_fail_at);
	if (lb_map_fail_at && lb_maps < lb_map_fail_at)
		lb_error("EXPECT", "the scenario fails map call %d, there were %d",
			 lb_map_fail_at, lb_maps);
}

static void lb_report(const char *name, const char *errors)
{
	if (errors[0]) {
		lb_failed_runs++;
		printf("lb: %s: FAIL %s\n", name, errors);
	} else {
		printf("lb: %s: ok\n", name);
	}
	fflush(stdout);
}

/*
 * Run scenario fn in a fresh world: mode says what goes wrong, at the nth
 * map call or pmdp_get_lockless() call.  Prints the scenario's line and
 * returns what fn lb_note()d (the caller-visible state).
 */
static char *lb_run(const char *name, void (*fn)(enum lb_mode), enum lb_mode mode,
		    int nth)
{
	char label[160];

	lb_reset();
	if (mode == LB_MAP_FAILS)
		lb_map_fail_at = nth;
	if (mode == LB_RECHECK_FAILS || mode == LB_RECHECK_CLEARS)
		lb_recheck_fail_at = nth;
	lb_change_to_none = mode == LB_RECHECK_CLEARS;
	alarm(5);
	if (!setjmp(lb_escape))
		fn(mode);
	alarm(0);
	lb_finish();
	if (mode != LB_NORMAL && !lb_retries && lb_writes)
		lb_error("WRITE-AFTER-FAILURE", "%d writes although the scenario fails",
			 lb_writes);
	snprintf(label, sizeof(label), "%s: %s", name, lb_mode_name[mode]);
	lb_report(label, lb_errors);
	return strdup(lb_notes);
}

/* Two scenarios must leave the same caller-visible state. */
static void lb_same(const char *name, const char *got, const char *want,
		    const char *want_what)
{
	char errors[1200] = "";

	if (strcmp(got, want))
		snprintf(errors, sizeof(errors), "RESULT: leaves {%s}, %s leaves {%s}",
			 got, want_what, want);
	lb_report(name, errors);
}

static int lb_exit(void)
{
	return lb_failed_runs ? 1 : 0;
}

/*
 * The usual driver: fn(mode) calls the function once and lb_note()s what
 * its caller sees.  Runs the normal path, a failed mapping (map call
 * MAP_NTH) and a failed recheck (pmdp_get_lockless() call 1), and checks
 * that the failed recheck leaves what the failed mapping leaves.
 */
#define LB_MAIN(name, fn, MAP_NTH)						\
int main(void)									\
{										\
	lb_run(name, fn, LB_NORMAL, 0);						\
	char *failed = lb_run(name, fn, LB_MAP_FAILS, MAP_NTH);			\
	char *rechecked = lb_run(name, fn, LB_RECHECK_FAILS, 1);		\
	lb_same(name ": a failed recheck leaves what a failed mapping leaves",	\
		rechecked, failed, "a failed mapping");				\
	return lb_exit();							\
}

#endif /* LB_STUB_H */
