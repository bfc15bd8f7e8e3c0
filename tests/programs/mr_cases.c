/*
 * Memory registration outcomes. Each case states, beside it, what the
 * kernel's rxe decides, and prints one line:
 *   case <name> expect=<token> got=<token> [expect_cause=<cause>]
 * Tokens: ok (registered, fields right, deregistered), errno=<n> (refused),
 * mr-fields-wrong, dereg-errno=<n>; counts as <what>=<n>; yes/no. An expect
 * of two tokens joined by '|' leaves the kernel the choice (a flag it may
 * take or refuse as unsupported); tests/vm.rs then wants ours to get what
 * the stock librxe got.
 * expect_cause, on cases the kernel refuses, is the `cause=<token>` our
 * provider's refusal log line must carry (the stock librxe logs nothing).
 * Keys differ between runs, so they are never printed.
 * tests/vm.rs checks got against expect for our provider, and compares the
 * stock librxe's outcomes with ours.
 *
 * usage: mr_cases [device] [--unprivileged <RLIMIT_MEMLOCK bytes>]
 *   (the latter: only the small cases meant for an unprivileged process whose
 *   memlock limit the caller set to that value)
 */
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../lib/verbs_setup.h"

static struct ibv_pd *pd;
static size_t page;
/* Whether the kernel's rxe reports on-demand paging (ibv_query_device_ex):
 * 7.x has it, 6.1 and 6.12 not. */
static int odp;

/* An outcome token: "ok" for 0, "errno=<n>" otherwise. */
static const char *tok(int e, char *b, size_t n)
{
	if (!e)
		return "ok";
	snprintf(b, n, "errno=%d", e);
	return b;
}

static void report(const char *name, const char *expect, const char *got, const char *cause)
{
	printf("case %s expect=%s got=%s", name, expect, got);
	if (cause)
		printf(" expect_cause=%s", cause);
	printf("\n");
}

static void *map(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	if (prot & PROT_WRITE)
		memset(p, 1, len); /* fault the pages in */
	return p;
}

/* Registers, reports, deregisters. expect_errno: what the kernel decides (0:
 * it registers), or with or_errno, one of the two; cause: the cause token
 * ours logs when it refuses. */
static void reg_either(const char *name, void *addr, size_t len, uint64_t iova, int use_iova, unsigned access,
		       int expect_errno, int or_errno, const char *cause)
{
	char eb[32], ob[32], both[72], gb[32];
	const char *expect = tok(expect_errno, eb, sizeof(eb)), *got;
	struct ibv_mr *mr;

	if (or_errno) {
		snprintf(both, sizeof(both), "%s|%s", expect, tok(or_errno, ob, sizeof(ob)));
		expect = both;
	}

	errno = 0;
	mr = use_iova ? ibv_reg_mr_iova2(pd, addr, len, iova, access) : ibv_reg_mr(pd, addr, len, access);
	if (!mr) {
		got = tok(errno ? errno : -1, gb, sizeof(gb));
	} else if (mr->addr != addr || mr->length != len || mr->pd != pd) {
		got = "mr-fields-wrong";
		ibv_dereg_mr(mr);
	} else {
		int r = ibv_dereg_mr(mr);
		if (r)
			snprintf(gb, sizeof(gb), "dereg-errno=%d", r);
		got = r ? gb : "ok";
	}
	report(name, expect, got, expect_errno || or_errno ? cause : NULL);
}

static void reg(const char *name, void *addr, size_t len, uint64_t iova, int use_iova, unsigned access,
		int expect_errno, const char *cause)
{
	reg_either(name, addr, len, iova, use_iova, access, expect_errno, 0, cause);
}

/* Every size registers, page-aligned or not (root in the VM: no memlock limit). */
static void sizes(void)
{
	static const struct { const char *n; size_t len; } s[] = {
		{ "1B", 1 }, { "4KiB", 4096 }, { "64KiB", 64 << 10 }, { "1MiB", 1 << 20 },
		{ "16MiB", 16 << 20 }, { "256MiB", 256 << 20 },
	};
	for (unsigned i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		size_t maplen = s[i].len + 2 * page;
		char *p = map(maplen, PROT_READ | PROT_WRITE);
		char name[64];
		snprintf(name, sizeof(name), "size_%s_aligned", s[i].n);
		reg(name, p, s[i].len, 0, 0, IBV_ACCESS_LOCAL_WRITE, 0, NULL);
		snprintf(name, sizeof(name), "size_%s_offset123", s[i].n);
		reg(name, p + 123, s[i].len, 0, 0, IBV_ACCESS_LOCAL_WRITE, 0, NULL);
		munmap(p, maplen);
	}
}

static void access_flags(void)
{
	char *p = map(4 * page, PROT_READ | PROT_WRITE);
	char name[96];
	static const struct { unsigned bit; const char *n; } base[] = {
		{ IBV_ACCESS_LOCAL_WRITE, "LW" }, { IBV_ACCESS_REMOTE_WRITE, "RW" },
		{ IBV_ACCESS_REMOTE_READ, "RR" }, { IBV_ACCESS_REMOTE_ATOMIC, "RA" },
		{ IBV_ACCESS_MW_BIND, "MWB" },
	};
	/* Every combination of the five basic flags. The kernel's one rule among
	 * them: remote write or remote atomic needs local write (EINVAL). */
	for (unsigned m = 0; m < 32; m++) {
		unsigned access = 0;
		int len = snprintf(name, sizeof(name), "access");
		for (unsigned b = 0; b < 5; b++)
			if (m & (1u << b)) {
				access |= base[b].bit;
				len += snprintf(name + len, sizeof(name) - len, "_%s", base[b].n);
			}
		if (!m)
			snprintf(name + len, sizeof(name) - len, "_none");
		int refused = (access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) &&
			      !(access & IBV_ACCESS_LOCAL_WRITE);
		reg(name, p, 2 * page, 0, 0, access, refused ? EINVAL : 0, "remote-without-local-write");
	}
	const struct { unsigned access; const char *n; int expect, or_expect; const char *cause; } extra[] = {
		/* An on-demand MR registers where the kernel reports ODP; where
		 * not (rxe before 7.x) it is refused: EINVAL from 6.1's
		 * ib_check_mr_access, EOPNOTSUPP from later kernels. */
		{ IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ON_DEMAND, "access_LW_ON_DEMAND", odp ? 0 : EINVAL, odp ? 0 : EOPNOTSUPP,
		  "odp-unsupported" },
		/* The first of the optional flags: a kernel may ignore it. */
		{ IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_RELAXED_ORDERING, "access_LW_RELAXED_ORDERING", 0, 0, NULL },
		/* Flags rxe never acted on: 6.1's takes them, newer ones refuse
		 * them (EOPNOTSUPP: rxe_reg_user_mr's check of its supported
		 * access bits, which no query reports). */
		{ IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ZERO_BASED, "access_LW_ZERO_BASED", 0, EOPNOTSUPP, "access-unsupported" },
		{ IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_HUGETLB, "access_LW_HUGETLB", 0, EOPNOTSUPP, "access-unsupported" },
		/* Bits the kernel does not know (neither 0xff nor the optional range 20..29). */
		{ IBV_ACCESS_LOCAL_WRITE | (1u << 15), "access_LW_unknown_bit15", EINVAL, 0, "access-unknown-bits" },
		{ IBV_ACCESS_LOCAL_WRITE | (1u << 30), "access_LW_unknown_bit30", EINVAL, 0, "access-unknown-bits" },
		{ IBV_ACCESS_REMOTE_WRITE, "access_RW_without_LW", EINVAL, 0, "remote-without-local-write" },
		{ IBV_ACCESS_REMOTE_ATOMIC, "access_RA_without_LW", EINVAL, 0, "remote-without-local-write" },
	};
	for (unsigned i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		reg_either(extra[i].n, p, 2 * page, 0, 0, extra[i].access, extra[i].expect, extra[i].or_expect, extra[i].cause);
	munmap(p, 4 * page);
}

static void iova_and_edges(void)
{
	char *p = map(4 * page, PROT_READ | PROT_WRITE);
	uint64_t same = 0x100000000ull + ((uintptr_t)(p + 0x10) & (page - 1));

	/* start and iova must sit at the same offset within a page. */
	reg("iova_same_page_offset", p + 0x10, page, same, 1, IBV_ACCESS_LOCAL_WRITE, 0, NULL);
	reg("iova_different_page_offset", p + 0x10, page, 0x100000000ull + 0x20, 1, IBV_ACCESS_LOCAL_WRITE,
	    EINVAL, "page-offset-mismatch");
	/* Length 0 at a page boundary spans no page: EINVAL. Inside a page, the
	 * kernel counts that page (it aligns start down and start + length up),
	 * so it registers. */
	reg("length0_aligned", p, 0, 0, 0, IBV_ACCESS_LOCAL_WRITE, EINVAL, "zero-length");
	reg("length0_offset123", p + 123, 0, 0, 0, IBV_ACCESS_LOCAL_WRITE, 0, NULL);
	munmap(p, 4 * page);

	char *u = map(4 * page, PROT_READ | PROT_WRITE);
	munmap(u, 4 * page);
	reg("unmapped", u, 2 * page, 0, 0, IBV_ACCESS_LOCAL_WRITE, EFAULT, "unmapped");
	reg("unmapped_readonly_access", u, 2 * page, 0, 0, IBV_ACCESS_REMOTE_READ, EFAULT, "unmapped");

	/* Read-only pages pin only for an MR nobody can write through. */
	char *ro = map(4 * page, PROT_READ);
	reg("readonly_with_LW", ro, 2 * page, 0, 0, IBV_ACCESS_LOCAL_WRITE, EFAULT, "read-only");
	reg("readonly_without_LW", ro, 2 * page, 0, 0, IBV_ACCESS_REMOTE_READ, 0, NULL);
	reg("readonly_none", ro, 2 * page, 0, 0, 0, 0, NULL);
	munmap(ro, 4 * page);
}

/* A thousand MRs over one page: all made, keys distinct, all deregistered. */
static void many(void)
{
	enum { N = 1000 };
	char *p = map(page, PROT_READ | PROT_WRITE);
	static struct ibv_mr *mrs[N];
	int made = 0, dereg = 0, dup_l = 0, dup_r = 0;
	char got[32];

	for (int i = 0; i < N; i++) {
		mrs[i] = ibv_reg_mr(pd, p, page, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ);
		if (mrs[i])
			made++;
	}
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			if (mrs[i] && mrs[j]) {
				dup_l += mrs[i]->lkey == mrs[j]->lkey;
				dup_r += mrs[i]->rkey == mrs[j]->rkey;
			}
	for (int i = 0; i < N; i++)
		if (mrs[i] && ibv_dereg_mr(mrs[i]) == 0)
			dereg++;
	snprintf(got, sizeof(got), "made=%d", made);
	report("many_1000_one_page.registered", "made=1000", got, NULL);
	report("many_1000_one_page.distinct_lkeys", "yes", dup_l ? "no" : "yes", NULL);
	report("many_1000_one_page.distinct_rkeys", "yes", dup_r ? "no" : "yes", NULL);
	snprintf(got, sizeof(got), "deregistered=%d", dereg);
	report("many_1000_one_page.deregistered", "deregistered=1000", got, NULL);
	munmap(p, page);
}

/* rxe has both memory window types. */
static void windows(void)
{
	for (int t = 1; t <= 2; t++) {
		char name[64], gb[32];
		struct ibv_mw *mw = ibv_alloc_mw(pd, t == 1 ? IBV_MW_TYPE_1 : IBV_MW_TYPE_2);
		snprintf(name, sizeof(name), "alloc_mw_type%d", t);
		report(name, "ok", tok(mw ? 0 : errno ? errno : -1, gb, sizeof(gb)), NULL);
		snprintf(name, sizeof(name), "dealloc_mw_type%d", t);
		report(name, "ok", mw ? tok(ibv_dealloc_mw(mw), gb, sizeof(gb)) : "not-allocated", NULL);
	}
}

/* An unprivileged process (no CAP_IPC_LOCK) whose RLIMIT_MEMLOCK the caller
 * set to `limit` bytes: with 0 it may pin nothing (EPERM), otherwise it may
 * pin up to the limit (ENOMEM beyond). */
static void unprivileged(unsigned long long limit)
{
	static const struct { const char *n; size_t len; } s[] = {
		{ "4KiB", 4096 }, { "64KiB", 64 << 10 }, { "1MiB", 1 << 20 },
	};
	struct rlimit rl;
	char expect[48], got[48];

	snprintf(expect, sizeof(expect), "memlock=%llu", limit);
	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		snprintf(got, sizeof(got), "getrlimit-errno=%d", errno);
	else if (rl.rlim_cur == RLIM_INFINITY)
		snprintf(got, sizeof(got), "memlock=unlimited");
	else
		snprintf(got, sizeof(got), "memlock=%llu", (unsigned long long)rl.rlim_cur);
	report("unpriv_memlock_limit", expect, got, NULL);
	for (unsigned i = 0; i < 3; i++) {
		char *p = map(s[i].len, PROT_READ | PROT_WRITE);
		char name[64];
		int e = limit == 0 ? EPERM : s[i].len > limit ? ENOMEM : 0;
		snprintf(name, sizeof(name), "unpriv_%s", s[i].n);
		reg(name, p, s[i].len, 0, 0, IBV_ACCESS_LOCAL_WRITE, e, limit == 0 ? "memlock-zero" : "memlock-exceeded");
		munmap(p, s[i].len);
	}
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	int unpriv = argc > 3 && !strcmp(argv[2], "--unprivileged");
	struct ibv_context *ctx;
	char gb[32];

	if (argc > 2 && !unpriv) {
		fprintf(stderr, "usage: %s [device] [--unprivileged <RLIMIT_MEMLOCK bytes>]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	page = sysconf(_SC_PAGESIZE);
	ctx = open_dev(name);
	if (!ctx || !(pd = ibv_alloc_pd(ctx))) {
		fprintf(stderr, "cannot open %s or allocate a PD: %s\n", name, strerror(errno));
		return 2;
	}
	struct ibv_device_attr_ex attr;
	if (ibv_query_device_ex(ctx, NULL, &attr)) {
		fprintf(stderr, "ibv_query_device_ex: %s\n", strerror(errno));
		return 2;
	}
	odp = !!(attr.odp_caps.general_caps & IBV_ODP_SUPPORT);
	if (unpriv) {
		unprivileged(strtoull(argv[3], NULL, 0));
	} else {
		sizes();
		access_flags();
		iova_and_edges();
		many();
		windows();
	}
	report("dealloc_pd", "ok", tok(ibv_dealloc_pd(pd), gb, sizeof(gb)), NULL);
	ibv_close_device(ctx);
	return 0;
}
