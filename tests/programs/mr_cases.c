/*
 * Memory registration outcomes, one stable line per case, so that runs
 * through two providers can be diffed:
 *   case <name>: ok            (registered, then deregistered)
 *   case <name>: errno=<n> <NAME>
 * Keys differ between runs, so they are not printed in case lines.
 *
 * usage: mr_cases [device] [--unprivileged]   (the latter: only the small
 *        cases meant for a process with a tiny RLIMIT_MEMLOCK)
 */
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static struct ibv_pd *pd;
static size_t page;

static const char *ename(int e)
{
	switch (e) {
	case EPERM: return "EPERM";
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	case EINVAL: return "EINVAL";
	case EACCES: return "EACCES";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOSYS: return "ENOSYS";
	case EAGAIN: return "EAGAIN";
	default: return "other";
	}
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

/* Registers, reports, deregisters. */
static void reg(const char *name, void *addr, size_t len, uint64_t iova, int use_iova, unsigned access)
{
	struct ibv_mr *mr;

	errno = 0;
	mr = use_iova ? ibv_reg_mr_iova2(pd, addr, len, iova, access) : ibv_reg_mr(pd, addr, len, access);
	if (!mr) {
		int e = errno;
		printf("case %s: errno=%d %s\n", name, e, ename(e));
		return;
	}
	if (mr->addr != addr || mr->length != len || mr->pd != pd) {
		printf("case %s: ok-but-mr-fields-wrong\n", name);
	} else {
		int r = ibv_dereg_mr(mr);
		if (r)
			printf("case %s: ok dereg-failed=%d\n", name, r);
		else
			printf("case %s: ok\n", name);
		return;
	}
	ibv_dereg_mr(mr);
}

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
		reg(name, p, s[i].len, 0, 0, IBV_ACCESS_LOCAL_WRITE);
		snprintf(name, sizeof(name), "size_%s_offset123", s[i].n);
		reg(name, p + 123, s[i].len, 0, 0, IBV_ACCESS_LOCAL_WRITE);
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
	/* Every combination of the five basic flags. */
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
		reg(name, p, 2 * page, 0, 0, access);
	}
	static const struct { unsigned access; const char *n; } extra[] = {
		{ IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ON_DEMAND, "access_LW_ON_DEMAND" },
		{ IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_RELAXED_ORDERING, "access_LW_RELAXED_ORDERING" },
		{ IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ZERO_BASED, "access_LW_ZERO_BASED" },
		{ IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_HUGETLB, "access_LW_HUGETLB" },
		{ IBV_ACCESS_LOCAL_WRITE | (1u << 15), "access_LW_unknown_bit15" },
		{ IBV_ACCESS_LOCAL_WRITE | (1u << 30), "access_LW_unknown_bit30" },
		{ IBV_ACCESS_REMOTE_WRITE, "access_RW_without_LW" },
		{ IBV_ACCESS_REMOTE_ATOMIC, "access_RA_without_LW" },
	};
	for (unsigned i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
		reg(extra[i].n, p, 2 * page, 0, 0, extra[i].access);
	munmap(p, 4 * page);
}

static void iova_and_edges(void)
{
	char *p = map(4 * page, PROT_READ | PROT_WRITE);
	uint64_t same = 0x100000000ull + ((uintptr_t)(p + 0x10) & (page - 1));

	reg("iova_same_page_offset", p + 0x10, page, same, 1, IBV_ACCESS_LOCAL_WRITE);
	reg("iova_different_page_offset", p + 0x10, page, 0x100000000ull + 0x20, 1, IBV_ACCESS_LOCAL_WRITE);
	reg("length0_aligned", p, 0, 0, 0, IBV_ACCESS_LOCAL_WRITE);
	reg("length0_offset123", p + 123, 0, 0, 0, IBV_ACCESS_LOCAL_WRITE);
	munmap(p, 4 * page);

	char *u = map(4 * page, PROT_READ | PROT_WRITE);
	munmap(u, 4 * page);
	reg("unmapped", u, 2 * page, 0, 0, IBV_ACCESS_LOCAL_WRITE);
	reg("unmapped_readonly_access", u, 2 * page, 0, 0, IBV_ACCESS_REMOTE_READ);

	char *ro = map(4 * page, PROT_READ);
	reg("readonly_with_LW", ro, 2 * page, 0, 0, IBV_ACCESS_LOCAL_WRITE);
	reg("readonly_without_LW", ro, 2 * page, 0, 0, IBV_ACCESS_REMOTE_READ);
	reg("readonly_none", ro, 2 * page, 0, 0, 0);
	munmap(ro, 4 * page);
}

static void many(void)
{
	enum { N = 1000 };
	char *p = map(page, PROT_READ | PROT_WRITE);
	static struct ibv_mr *mrs[N];
	int made = 0, dereg = 0, dup_l = 0, dup_r = 0;

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
	printf("case many_1000_one_page: made=%d distinct_lkeys=%s distinct_rkeys=%s dereg_ok=%d\n", made,
	       dup_l ? "no" : "yes", dup_r ? "no" : "yes", dereg);
	munmap(p, page);
}

static void windows(void)
{
	for (int t = 1; t <= 2; t++) {
		struct ibv_mw *mw = ibv_alloc_mw(pd, t == 1 ? IBV_MW_TYPE_1 : IBV_MW_TYPE_2);
		if (!mw) {
			printf("case alloc_mw_type%d: errno=%d %s\n", t, errno, ename(errno));
			continue;
		}
		int r = ibv_dealloc_mw(mw);
		printf("case alloc_mw_type%d: ok dealloc=%s\n", t, r ? ename(r) : "ok");
	}
}

static void unprivileged(void)
{
	static const struct { const char *n; size_t len; } s[] = {
		{ "4KiB", 4096 }, { "64KiB", 64 << 10 }, { "1MiB", 1 << 20 },
	};
	for (unsigned i = 0; i < 3; i++) {
		char *p = map(s[i].len, PROT_READ | PROT_WRITE);
		char name[64];
		snprintf(name, sizeof(name), "unpriv_%s", s[i].n);
		reg(name, p, s[i].len, 0, 0, IBV_ACCESS_LOCAL_WRITE);
		munmap(p, s[i].len);
	}
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	int unpriv = argc > 2 && !strcmp(argv[2], "--unprivileged");
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	page = sysconf(_SC_PAGESIZE);
	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	if (!ctx || !(pd = ibv_alloc_pd(ctx))) {
		fprintf(stderr, "cannot open %s or allocate a PD: %s\n", name, strerror(errno));
		return 2;
	}
	if (unpriv) {
		unprivileged();
	} else {
		sizes();
		access_flags();
		iova_and_edges();
		many();
		windows();
	}
	if (ibv_dealloc_pd(pd))
		printf("case dealloc_pd: failed\n");
	ibv_close_device(ctx);
	return 0;
}
