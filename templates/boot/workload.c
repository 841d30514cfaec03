/*
 * The workload of "rewriter check --boot": it makes the kernel run every
 * function that the pte_offset_map_nolock() series converts, and checks
 * its own data each time.
 *
 * Usage: workload [-D] [-r ROUNDS] [-d DIR] [-t RACE_SECONDS] [PHASE...]
 *
 * -D allows what acts on the whole machine: dropping the page cache
 * (/proc/sys/vm/drop_caches) before the file faults, and MGLRU aging of
 * every lruvec: the guest wants it, a shared host does not.
 * Files go to DIR (default /tmp); the shmem file of collapse_shmem goes to
 * /dev/shm when there is one, else /tmp (a tmpfs in the guest).
 *
 * One line per phase on standard output:
 *   rwl PHASE ok OPS [note]
 *   rwl PHASE skip REASON
 *   rwl PHASE FAIL WHAT
 * and at the end "rwl end errors=N skipped=M".  Exit status 1 when a data
 * check failed.  A phase is skipped (not failed) when the kernel lacks what
 * it needs (no swap, one NUMA node, no userfaultfd, no privilege): on the
 * host the phases that can run still check their data.
 *
 * The converted functions and what reaches them:
 *   fork_anon, fork_file   copy_pte_range (fork copies the page tables)
 *   wp_fault               handle_pte_fault (write and write-protect faults)
 *   mremap                 move_ptes
 *   file_fault             filemap_fault_recheck_pte_none (mlocked on fault)
 *   collapse_shmem         collapse_pte_mapped_thp (MADV_COLLAPSE of shmem)
 *   collapse_swapin        __collapse_huge_page_swapin
 *   uffd_move              move_pages_pte (UFFDIO_MOVE)
 *   mglru                  walk_pte_range (lru_gen aging through debugfs)
 *   pageout, migrate       map_pte (rmap walks: MADV_PAGEOUT, move_pages)
 *   race                   map_pte with the PTEs changing under the walk
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/types.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MPOL_MF_MOVE
#define MPOL_MF_MOVE (1 << 1)
#endif
#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif
#ifndef MPOL_MF_MOVE_ALL
#define MPOL_MF_MOVE_ALL (1 << 2)
#endif

/* userfaultfd, spelled out: the build host's headers may predate UFFDIO_MOVE */
#define RWL_UFFDIO 0xAA
struct rwl_uffdio_api {
	__u64 api;
	__u64 features;
	__u64 ioctls;
};
struct rwl_uffdio_range {
	__u64 start;
	__u64 len;
};
struct rwl_uffdio_register {
	struct rwl_uffdio_range range;
	__u64 mode;
	__u64 ioctls;
};
struct rwl_uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
#define RWL_UFFD_API 0xAAULL
#define RWL_UFFD_FEATURE_MOVE (1ULL << 16)
#define RWL_UFFD_USER_MODE_ONLY 1
#define RWL_UFFDIO_API _IOWR(RWL_UFFDIO, 0x3F, struct rwl_uffdio_api)
#define RWL_UFFDIO_REGISTER _IOWR(RWL_UFFDIO, 0x00, struct rwl_uffdio_register)
#define RWL_UFFDIO_MOVE _IOWR(RWL_UFFDIO, 0x05, struct rwl_uffdio_move)
#define RWL_UFFDIO_REGISTER_MODE_MISSING 1ULL

#define PMD_BYTES (2UL << 20)

static long page;
static int rounds = 3;
static int race_seconds = 4;
static const char *dir = "/tmp";
static int global_drop;
static int errors, skipped;

static void say(const char *phase, const char *status, const char *fmt, ...)
{
	va_list ap;

	printf("rwl %s %s ", phase, status);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

#define FAIL(phase, ...) do { errors++; say(phase, "FAIL", __VA_ARGS__); return; } while (0)
#define SKIP(phase, ...) do { skipped++; say(phase, "skip", __VA_ARGS__); return; } while (0)

/* the contents every page gets: a word that names the page and the round */
static uint64_t word(unsigned long i, unsigned long salt)
{
	return (i + 1) * 0x9E3779B97F4A7C15ULL ^ salt;
}

static void fill(char *p, unsigned long pages, unsigned long salt)
{
	for (unsigned long i = 0; i < pages; i++) {
		uint64_t *w = (uint64_t *)(p + i * page);

		w[0] = word(i, salt);
		w[page / 8 - 1] = ~word(i, salt);
	}
}

/* the index of the first page that is wrong, or -1 */
static long verify(const char *p, unsigned long pages, unsigned long salt)
{
	for (unsigned long i = 0; i < pages; i++) {
		const uint64_t *w = (const uint64_t *)(p + i * page);

		if (w[0] != word(i, salt) || w[page / 8 - 1] != ~word(i, salt))
			return (long)i;
	}
	return -1;
}

static char *map_anon(unsigned long bytes, int shared)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* bytes of memory, the start aligned to a PMD; the mapping is larger */
static char *map_aligned(unsigned long bytes, int shared)
{
	char *p = map_anon(bytes + PMD_BYTES, shared);

	if (!p)
		return NULL;
	return (char *)(((uintptr_t)p + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
}

/* fork; the child runs check(arg) and exits with its result */
static int in_child(int (*check)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0)
		_exit(check(arg));
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct region {
	char *p;
	unsigned long pages;
	unsigned long salt;
};

static int child_verify_and_write(void *arg)
{
	struct region *r = arg;

	if (verify(r->p, r->pages, r->salt) >= 0)
		return 1;
	fill(r->p, r->pages, r->salt ^ 0xC0FFEE);	/* copy on write */
	return verify(r->p, r->pages, r->salt ^ 0xC0FFEE) >= 0 ? 2 : 0;
}

static void phase_fork_anon(void)
{
	const unsigned long pages = 96;
	char *p = map_anon(pages * page, 0);

	if (!p)
		FAIL("fork_anon", "mmap: %s", strerror(errno));
	for (int r = 0; r < rounds; r++) {
		struct region reg = { p, pages, 0x1000 + r };
		int rc;

		fill(p, pages, reg.salt);
		rc = in_child(child_verify_and_write, &reg);
		if (rc)
			FAIL("fork_anon", "round %d: child saw wrong data (status %d)", r, rc);
		if (verify(p, pages, reg.salt) >= 0)
			FAIL("fork_anon", "round %d: the child's writes reached the parent", r);
	}
	munmap(p, pages * page);
	say("fork_anon", "ok", "%d", rounds);
}

static int make_file(const char *name, unsigned long pages, unsigned long salt)
{
	char *buf = malloc(page);
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || !buf) {
		free(buf);
		return -1;
	}
	for (unsigned long i = 0; i < pages; i++) {
		memset(buf, 0, page);
		((uint64_t *)buf)[0] = word(i, salt);
		((uint64_t *)buf)[page / 8 - 1] = ~word(i, salt);
		if (write(fd, buf, page) != page) {
			close(fd);
			free(buf);
			return -1;
		}
	}
	free(buf);
	fsync(fd);
	return fd;
}

static void phase_fork_file(void)
{
	const unsigned long pages = 64;
	char name[512];
	int fd;
	char *priv, *shared;

	snprintf(name, sizeof(name), "%s/rwl-fork.%d", dir, getpid());
	fd = make_file(name, pages, 0x2000);
	if (fd < 0)
		FAIL("fork_file", "%s: %s", name, strerror(errno));
	unlink(name);
	priv = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	shared = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (priv == MAP_FAILED || shared == MAP_FAILED)
		FAIL("fork_file", "mmap: %s", strerror(errno));
	for (int r = 0; r < rounds; r++) {
		struct region reg = { priv, pages / 2, 0x2100 + r };
		int rc;

		/* the first half private copies (anon pages), the rest the file's */
		if (verify(shared, pages, 0x2000) >= 0)
			FAIL("fork_file", "round %d: the shared mapping is not the file", r);
		fill(priv, pages / 2, reg.salt);
		rc = in_child(child_verify_and_write, &reg);
		if (rc)
			FAIL("fork_file", "round %d: child saw wrong private data (status %d)", r, rc);
		if (verify(priv, pages / 2, reg.salt) >= 0)
			FAIL("fork_file", "round %d: the child's writes reached the parent", r);
		for (unsigned long i = pages / 2; i < pages; i++) {
			const uint64_t *w = (const uint64_t *)(priv + i * page);

			if (w[0] != word(i, 0x2000))
				FAIL("fork_file", "round %d: file page %lu wrong in the private mapping", r, i);
		}
	}
	munmap(priv, pages * page);
	munmap(shared, pages * page);
	close(fd);
	say("fork_file", "ok", "%d", rounds);
}

static void phase_wp_fault(void)
{
	const unsigned long pages = 32;
	char *p = map_anon(pages * page, 0);
	int ops = 0;

	if (!p)
		FAIL("wp_fault", "mmap: %s", strerror(errno));
	for (int r = 0; r < rounds; r++) {
		fill(p, pages, 0x3000 + r);
		if (mprotect(p, pages * page, PROT_READ))
			FAIL("wp_fault", "mprotect: %s", strerror(errno));
		if (verify(p, pages, 0x3000 + r) >= 0)
			FAIL("wp_fault", "round %d: read-only data wrong", r);
		if (mprotect(p, pages * page, PROT_READ | PROT_WRITE))
			FAIL("wp_fault", "mprotect: %s", strerror(errno));
		fill(p, pages, 0x3100 + r);	/* write faults on write-protected ptes */
		if (verify(p, pages, 0x3100 + r) >= 0)
			FAIL("wp_fault", "round %d: data wrong after the write faults", r);
		ops += 2 * pages;
	}
	munmap(p, pages * page);
	say("wp_fault", "ok", "%d", ops);
}

static void phase_mremap(void)
{
	const unsigned long pages = 24;
	int moves = 0, again = 0;

	for (int r = 0; r < rounds * 4; r++) {
		char *p = map_anon(pages * page, 0);
		char *target = map_anon((pages + 64) * page, 0), *q;

		if (!p || !target)
			FAIL("mremap", "mmap: %s", strerror(errno));
		fill(p, pages, 0x4000 + r);
		/* a target that shares no PMD alignment with the source */
		q = target + (7 + r % 5) * page;
		for (int tries = 0;; tries++) {
			void *res = mremap(p, pages * page, pages * page, MREMAP_MAYMOVE | MREMAP_FIXED, q);

			if (res != MAP_FAILED)
				break;
			if ((errno != ENOMEM && errno != EAGAIN) || tries > 50)
				FAIL("mremap", "round %d: mremap: %s", r, strerror(errno));
			/* a failed move is undone: the source must be whole */
			again++;
			if (verify(p, pages, 0x4000 + r) >= 0)
				FAIL("mremap", "round %d: source data wrong after a failed move", r);
		}
		if (verify(q, pages, 0x4000 + r) >= 0)
			FAIL("mremap", "round %d: page %ld wrong after the move", r, verify(q, pages, 0x4000 + r));
		munmap(target, (pages + 64) * page);
		moves++;
	}
	say("mremap", "ok", "%d retried=%d", moves, again);
}

static void drop_caches(void)
{
	int fd = global_drop ? open("/proc/sys/vm/drop_caches", O_WRONLY) : -1;

	ssize_t done;

	if (fd < 0)
		return;
	done = write(fd, "3\n", 2);
	(void)done;
	close(fd);
}

static void phase_file_fault(void)
{
	const unsigned long pages = 128;
	char name[512];
	int fd, ops = 0;

	snprintf(name, sizeof(name), "%s/rwl-fault.%d", dir, getpid());
	fd = make_file(name, pages, 0x5000);
	if (fd < 0)
		FAIL("file_fault", "%s: %s", name, strerror(errno));
	for (int r = 0; r < rounds; r++) {
		char *p;

		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		drop_caches();
		p = mmap(NULL, pages * page, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			FAIL("file_fault", "mmap: %s", strerror(errno));
		madvise(p, pages * page, MADV_RANDOM);	/* no readahead: each fault misses the cache */
		/*
		 * filemap_fault_recheck_pte_none() looks at the pte only in
		 * VM_LOCKED mappings: lock on fault, which populates nothing now.
		 * (Refused without the privilege: the data is still checked.)
		 */
		syscall(SYS_mlock2, p, pages * page, 1 /* MLOCK_ONFAULT */);
		for (unsigned long i = 0; i < pages; i++) {
			const uint64_t *w = (const uint64_t *)(p + i * page);

			if (w[0] != word(i, 0x5000) || w[page / 8 - 1] != ~word(i, 0x5000))
				FAIL("file_fault", "round %d: page %lu of the file wrong", r, i);
			ops++;
		}
		munmap(p, pages * page);
	}
	close(fd);
	unlink(name);
	say("file_fault", "ok", "%d", ops);
}

/* a tmpfs file of bytes, mapped 2MB aligned (shared or private) at *shared, *priv */
static int map_shmem_file(const char *name, unsigned long bytes, char **shared, char **priv)
{
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	char *maps[2] = { NULL, NULL };

	if (fd < 0)
		return -1;
	unlink(name);
	if (ftruncate(fd, bytes)) {
		close(fd);
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		char *area = map_anon(bytes + PMD_BYTES, 0);
		char *at;

		if (!area)
			break;
		at = (char *)(((uintptr_t)area + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
		at = mmap(at, bytes, PROT_READ | PROT_WRITE, (i ? MAP_PRIVATE : MAP_SHARED) | MAP_FIXED, fd, 0);
		maps[i] = at == MAP_FAILED ? NULL : at;
	}
	close(fd);
	*shared = maps[0];
	*priv = maps[1];
	return maps[0] && maps[1] ? 0 : -1;
}

/*
 * MADV_COLLAPSE of a tmpfs file: collapse_file() puts a huge folio in the
 * page cache and calls collapse_pte_mapped_thp() for the caller's range.
 * The private mapping has an anon_vma (a page past the 2MB was written), so
 * retract_page_tables() leaves its page table to collapse_pte_mapped_thp(),
 * which then maps it with the may-write variant and rechecks the pmd.
 */
static void phase_collapse_shmem(void)
{
	unsigned long pages = PMD_BYTES / page;
	struct stat st;
	const char *shm = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
	char name[512];
	int done = 0, refused = 0, einval = 0;

	snprintf(name, sizeof(name), "%s/rwl-shmem.%d", shm, getpid());
	for (int r = 0; r < rounds; r++) {
		char *shared, *priv;
		volatile uint64_t sum = 0;

		if (map_shmem_file(name, PMD_BYTES + page, &shared, &priv))
			FAIL("collapse_shmem", "%s: %s", name, strerror(errno));
		fill(shared, pages, 0x6000 + r);
		priv[PMD_BYTES] = 1;	/* copy on write past the huge range: an anon_vma */
		for (unsigned long i = 0; i < pages; i++)
			sum += ((uint64_t *)(priv + i * page))[0];	/* map the page cache pages */
		for (int m = 0; m < 2; m++) {
			char *p = m ? shared : priv;

			if (madvise(p, PMD_BYTES, MADV_COLLAPSE) == 0) {
				done++;
			} else {
				refused++;
				einval += errno == EINVAL;
			}
			if (verify(priv, pages, 0x6000 + r) >= 0)
				FAIL("collapse_shmem", "round %d: page %ld of the private mapping wrong after MADV_COLLAPSE",
				     r, verify(priv, pages, 0x6000 + r));
			if (verify(shared, pages, 0x6000 + r) >= 0)
				FAIL("collapse_shmem", "round %d: page %ld of the shared mapping wrong after MADV_COLLAPSE",
				     r, verify(shared, pages, 0x6000 + r));
		}
		munmap(shared, PMD_BYTES + page);
		munmap(priv, PMD_BYTES + page);
	}
	if (!done && einval == refused)
		SKIP("collapse_shmem", "MADV_COLLAPSE of a file in %s: %s", shm, strerror(EINVAL));
	say("collapse_shmem", "ok", "%d collapsed=%d refused=%d", rounds, done, refused);
}

static long swap_total(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SwapTotal: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void phase_collapse_swapin(void)
{
	unsigned long pages = PMD_BYTES / page;
	int done = 0;

	if (swap_total() <= 0)
		SKIP("collapse_swapin", "no swap");
	for (int r = 0; r < rounds; r++) {
		char *p = map_aligned(PMD_BYTES, 0);

		if (!p)
			FAIL("collapse_swapin", "mmap: %s", strerror(errno));
		madvise(p, PMD_BYTES, MADV_NOHUGEPAGE);
		fill(p, pages, 0x7000 + r);
		madvise(p, PMD_BYTES, MADV_HUGEPAGE);
		/* swap out a few pages: the collapse must swap them in */
		for (unsigned long i = 0; i < pages; i += 64)
			madvise(p + i * page, 8 * page, MADV_PAGEOUT);
		if (madvise(p, PMD_BYTES, MADV_COLLAPSE) == 0)
			done++;
		if (verify(p, pages, 0x7000 + r) >= 0)
			FAIL("collapse_swapin", "round %d: page %ld wrong after the collapse", r,
			     verify(p, pages, 0x7000 + r));
	}
	say("collapse_swapin", "ok", "%d collapsed=%d", rounds, done);
}

static void phase_uffd_move(void)
{
	const unsigned long pages = 32;
	struct rwl_uffdio_api api = { .api = RWL_UFFD_API, .features = RWL_UFFD_FEATURE_MOVE };
	struct rwl_uffdio_register reg;
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | RWL_UFFD_USER_MODE_ONLY);
	long moved = 0;

	if (fd < 0)
		SKIP("uffd_move", "userfaultfd: %s", strerror(errno));
	if (ioctl(fd, RWL_UFFDIO_API, &api))
		SKIP("uffd_move", "UFFDIO_API with UFFD_FEATURE_MOVE: %s", strerror(errno));
	for (int r = 0; r < rounds; r++) {
		char *src = map_anon(pages * page, 0), *dst = map_anon(pages * page, 0);

		if (!src || !dst)
			FAIL("uffd_move", "mmap: %s", strerror(errno));
		memset(&reg, 0, sizeof(reg));
		reg.range.start = (uintptr_t)dst;
		reg.range.len = pages * page;
		reg.mode = RWL_UFFDIO_REGISTER_MODE_MISSING;
		if (ioctl(fd, RWL_UFFDIO_REGISTER, &reg))
			FAIL("uffd_move", "UFFDIO_REGISTER: %s", strerror(errno));
		fill(src, pages, 0x8000 + r);
		for (unsigned long done = 0; done < pages * page;) {
			struct rwl_uffdio_move mv = {
				.dst = (uintptr_t)dst + done, .src = (uintptr_t)src + done,
				.len = pages * page - done, .mode = 0,
			};

			if (ioctl(fd, RWL_UFFDIO_MOVE, &mv) == 0) {
				done += mv.len;
				continue;
			}
			if (mv.move > 0)
				done += mv.move;
			else if (errno != EAGAIN)
				FAIL("uffd_move", "round %d: UFFDIO_MOVE at %lu: %s", r, done / page, strerror(errno));
		}
		moved += pages;
		if (verify(dst, pages, 0x8000 + r) >= 0)
			FAIL("uffd_move", "round %d: page %ld wrong after UFFDIO_MOVE", r, verify(dst, pages, 0x8000 + r));
		for (unsigned long i = 0; i < pages; i++)
			if (((uint64_t *)(src + i * page))[0] != 0)
				FAIL("uffd_move", "round %d: source page %lu still has data", r, i);
		munmap(src, pages * page);
		munmap(dst, pages * page);
	}
	close(fd);
	say("uffd_move", "ok", "%ld", moved);
}

/*
 * lru_gen aging from debugfs.  Reading the file gives, per memcg and node,
 * the generations from min to max; writing "+ MEMCG NODE MAX_GEN 1 1" ages
 * that lruvec (can_swap, force_scan), which walks the page tables of every
 * mm on the mm list: walk_pte_range().
 */
struct lruvec_gen {
	unsigned long memcg, node, max_gen;
};

static int read_lru_gen(const char *path, struct lruvec_gen *out, int max)
{
	char line[256];
	unsigned long memcg = 0, node, gen;
	int n = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "memcg %lu", &memcg) == 1)
			continue;
		if (sscanf(line, " node %lu", &node) == 1) {
			if (n < max)
				out[n++] = (struct lruvec_gen){ memcg, node, 0 };
			continue;
		}
		if (n && sscanf(line, " %lu", &gen) == 1 && gen > out[n - 1].max_gen)
			out[n - 1].max_gen = gen;
	}
	fclose(f);
	return n;
}

static void phase_mglru(void)
{
	const char *path = "/sys/kernel/debug/lru_gen";
	const unsigned long pages = 256;
	struct lruvec_gen gens[16];
	int ops = 0;
	char *p = map_anon(pages * page, 0);

	if (!global_drop)
		SKIP("mglru", "aging acts on the whole machine: only with -D (in the guest)");
	if (!p)
		FAIL("mglru", "mmap: %s", strerror(errno));
	fill(p, pages, 0x9000);
	for (int r = 0; r < rounds; r++) {
		int n = read_lru_gen(path, gens, 16);

		if (n < 0)
			SKIP("mglru", "%s: %s", path, strerror(errno));
		if (n == 0)
			SKIP("mglru", "no lruvec in %s", path);
		for (int i = 0; i < n; i++) {
			int fd = open(path, O_WRONLY);
			char cmd[128];
			int len = snprintf(cmd, sizeof(cmd), "+ %lu %lu %lu 1 1\n", gens[i].memcg, gens[i].node,
					   gens[i].max_gen);

			if (fd < 0)
				SKIP("mglru", "%s: %s", path, strerror(errno));
			if (write(fd, cmd, len) == len)
				ops++;
			close(fd);
		}
		/* touch the memory so that the next walk finds young ptes */
		for (unsigned long i = 0; i < pages; i++)
			(void)((volatile char *)p)[i * page + 8];
	}
	if (verify(p, pages, 0x9000) >= 0)
		FAIL("mglru", "data wrong after aging");
	munmap(p, pages * page);
	if (!ops)
		SKIP("mglru", "no aging command was accepted by %s", path);
	say("mglru", "ok", "%d", ops);
}

static void phase_pageout(void)
{
	const unsigned long pages = 64;
	char *anon = map_anon(pages * page, 0), *shm = map_anon(pages * page, 1);
	int swap = swap_total() > 0;

	if (!anon || !shm)
		FAIL("pageout", "mmap: %s", strerror(errno));
	for (int r = 0; r < rounds; r++) {
		fill(anon, pages, 0xA000 + r);
		fill(shm, pages, 0xA100 + r);
		if (madvise(anon, pages * page, MADV_PAGEOUT) && errno == EINVAL)
			SKIP("pageout", "MADV_PAGEOUT: %s", strerror(errno));
		madvise(shm, pages * page, MADV_PAGEOUT);
		if (verify(anon, pages, 0xA000 + r) >= 0)
			FAIL("pageout", "round %d: anon page %ld wrong after MADV_PAGEOUT", r,
			     verify(anon, pages, 0xA000 + r));
		if (verify(shm, pages, 0xA100 + r) >= 0)
			FAIL("pageout", "round %d: shmem page %ld wrong after MADV_PAGEOUT", r,
			     verify(shm, pages, 0xA100 + r));
	}
	munmap(anon, pages * page);
	munmap(shm, pages * page);
	say("pageout", "ok", "%d%s", rounds, swap ? "" : " (no swap: anon pages stay)");
}

static long move_pages(unsigned long count, void **pages, const int *nodes, int *status)
{
	return syscall(SYS_move_pages, 0, count, pages, nodes, status, MPOL_MF_MOVE);
}

static int numa_nodes(void)
{
	int n = 0;
	char path[64];
	struct stat st;

	for (; n < 64; n++) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", n);
		if (stat(path, &st))
			break;
	}
	return n;
}

static void phase_migrate(void)
{
	enum { PAGES = 32 };
	char *p = map_anon(PAGES * page, 0);
	void *addrs[PAGES];
	int nodes[PAGES], status[PAGES];
	long moved = 0;

	if (!p)
		FAIL("migrate", "mmap: %s", strerror(errno));
	if (numa_nodes() < 2)
		SKIP("migrate", "%d NUMA node(s): move_pages needs two", numa_nodes());
	fill(p, PAGES, 0xB000);
	for (int r = 0; r < rounds * 2; r++) {
		for (int i = 0; i < PAGES; i++) {
			addrs[i] = p + i * page;
			nodes[i] = (r + 1) % 2;
			status[i] = -1;
		}
		if (move_pages(PAGES, addrs, nodes, status) < 0) {
			if (errno == ENOSYS || errno == EPERM)
				SKIP("migrate", "move_pages: %s", strerror(errno));
			FAIL("migrate", "round %d: move_pages: %s", r, strerror(errno));
		}
		for (int i = 0; i < PAGES; i++)
			moved += status[i] == nodes[i];
		if (verify(p, PAGES, 0xB000) >= 0)
			FAIL("migrate", "round %d: page %ld wrong after move_pages", r, verify(p, PAGES, 0xB000));
	}
	munmap(p, PAGES * page);
	say("migrate", "ok", "%ld", moved);
}

/*
 * A large folio whose first page one process does not map, migrated: the
 * rmap walk of the folio in that process starts at an empty entry, so
 * map_pte() hands the table back unlocked and page_vma_mapped_walk()
 * takes the lock itself at the next entry (its own pmd_same() recheck).
 * The parent maps the whole folio by PTEs and the child unmaps only its
 * own first entry, so the folio is not partially mapped (which would make
 * migration split it first); MPOL_MF_MOVE_ALL moves it although both map it.
 * Each round moves a new folio to node 1.
 */
static int partial_thp_child(void *arg)
{
	char *p = arg;
	unsigned long pages = PMD_BYTES / page;
	void *addrs[1] = { p + page };
	int nodes[1], status[1] = { -1 };

	madvise(p, page, MADV_DONTNEED);
	nodes[0] = 1;
	if (syscall(SYS_move_pages, 0, 1UL, addrs, nodes, status, MPOL_MF_MOVE_ALL) < 0)
		return 2;
	for (unsigned long i = 1; i < pages; i++) {
		const uint64_t *w = (const uint64_t *)(p + i * page);

		if (w[0] != word(i, 0xD000) || w[page / 8 - 1] != ~word(i, 0xD000))
			return 1;
	}
	for (unsigned long i = 0; i < page; i++)
		if (p[i])
			return 1;
	return 0;
}

static void phase_partial_thp(void)
{
	unsigned long pages = PMD_BYTES / page;

	if (numa_nodes() < 2)
		SKIP("partial_thp", "%d NUMA node(s): move_pages needs two", numa_nodes());
	/* a new folio each round: a migrated one may come back split */
	for (int r = 0; r < rounds * 2; r++) {
		char *p = map_aligned(PMD_BYTES, 0);
		int rc;

		if (!p)
			FAIL("partial_thp", "mmap: %s", strerror(errno));
		madvise(p, PMD_BYTES, MADV_HUGEPAGE);
		fill(p, pages, 0xD000);
		/* the PMD is split into PTEs, every page still mapped */
		mprotect(p, page, PROT_READ);
		mprotect(p, page, PROT_READ | PROT_WRITE);
		rc = in_child(partial_thp_child, p);
		if (rc == 2)
			SKIP("partial_thp", "move_pages with MPOL_MF_MOVE_ALL failed in the child");
		if (rc)
			FAIL("partial_thp", "round %d: the child read wrong data after move_pages (status %d)", r, rc);
		if (verify(p, pages, 0xD000) >= 0)
			FAIL("partial_thp", "round %d: page %ld wrong in the parent", r, verify(p, pages, 0xD000));
		munmap(p, PMD_BYTES);
	}
	say("partial_thp", "ok", "%d", rounds * 2);
}

/*
 * The race: one thread keeps walking the rmap of a few pages (move_pages
 * between the nodes, MADV_PAGEOUT), another keeps zapping and faulting the
 * same pages back.  A page table walk that gives up and starts again then
 * finds the PTE changed, which is the case a failure path must leave
 * consistent.  The zapping thread checks the data it wrote itself.
 */
struct race {
	char *p;
	unsigned long pages;
	volatile int stop;
	long zaps, walks;
	int bad;
};

static void *race_zapper(void *arg)
{
	struct race *rc = arg;
	unsigned long salt = 0xC000;

	while (!rc->stop) {
		madvise(rc->p, rc->pages * page, MADV_DONTNEED);
		for (volatile int spin = 0; spin < 2000; spin++)
			;
		fill(rc->p, rc->pages, ++salt);
		if (verify(rc->p, rc->pages, salt) >= 0)
			rc->bad++;
		rc->zaps++;
	}
	return NULL;
}

static void phase_race(void)
{
	enum { PAGES = 4 };
	struct race rc = { .pages = PAGES };
	pthread_t t;
	time_t end;
	int two = numa_nodes() >= 2;
	int node = 0;

	rc.p = map_anon(PAGES * page, 0);
	if (!rc.p)
		FAIL("race", "mmap: %s", strerror(errno));
	fill(rc.p, PAGES, 0xC000);
	if (pthread_create(&t, NULL, race_zapper, &rc))
		FAIL("race", "pthread_create failed");
	end = time(NULL) + race_seconds;
	while (time(NULL) < end) {
		void *addrs[PAGES];
		int nodes[PAGES], status[PAGES];

		if (two) {
			node ^= 1;
			for (int i = 0; i < PAGES; i++) {
				addrs[i] = rc.p + i * page;
				nodes[i] = node;
			}
			move_pages(PAGES, addrs, nodes, status);
		}
		madvise(rc.p, PAGES * page, MADV_PAGEOUT);
		rc.walks++;
	}
	rc.stop = 1;
	pthread_join(t, NULL);
	munmap(rc.p, PAGES * page);
	if (rc.bad)
		FAIL("race", "%d times the zapping thread read back wrong data", rc.bad);
	say("race", "ok", "%ld walks=%ld zaps=%ld", rc.walks, rc.walks, rc.zaps);
}

static const struct {
	const char *name;
	void (*run)(void);
} phases[] = {
	{ "fork_anon", phase_fork_anon },
	{ "fork_file", phase_fork_file },
	{ "wp_fault", phase_wp_fault },
	{ "mremap", phase_mremap },
	{ "file_fault", phase_file_fault },
	{ "collapse_shmem", phase_collapse_shmem },
	{ "collapse_swapin", phase_collapse_swapin },
	{ "uffd_move", phase_uffd_move },
	{ "mglru", phase_mglru },
	{ "pageout", phase_pageout },
	{ "migrate", phase_migrate },
	{ "partial_thp", phase_partial_thp },
	{ "race", phase_race },
};

int main(int argc, char **argv)
{
	int opt, any = 0;

	page = sysconf(_SC_PAGESIZE);
	while ((opt = getopt(argc, argv, "Dr:d:t:")) != -1) {
		switch (opt) {
		case 'D':
			global_drop = 1;
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'd':
			dir = optarg;
			break;
		case 't':
			race_seconds = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-D] [-r ROUNDS] [-d DIR] [-t RACE_SECONDS] [PHASE...]\n", argv[0]);
			return 2;
		}
	}
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		int wanted = optind >= argc;

		for (int a = optind; a < argc; a++)
			wanted |= !strcmp(argv[a], phases[i].name);
		if (wanted) {
			printf("rwl %s start\n", phases[i].name);
			fflush(stdout);
			phases[i].run();
			any++;
		}
	}
	printf("rwl end errors=%d skipped=%d phases=%d\n", errors, skipped, any);
	fflush(stdout);
	return errors ? 1 : 0;
}
