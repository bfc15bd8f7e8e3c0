/*
 * Churn: <cycles> cycles of open device, alloc PD, register MR, alloc MW,
 * create CQ, SRQ, RC and UD QPs, AH, move the RC QP to INIT, then destroy
 * all in reverse. Measures the process's open fds, memory mappings and
 * RSS after cycles/10 and after all cycles (the first cycles warm up
 * caches and allocator arenas), and prints
 *   figure <what>_at_<cycle> <value>
 *   case <growth> expect=<token> got=<token>
 * growth between the two checkpoints: 0 fds, 0 mappings, RSS within 1 MiB.
 * Every verb is checked: a failure stops the run (case cycles got=failed).
 *
 * usage: churn [device] [gid_index] [cycles]
 */
#include <dirent.h>
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/verbs_setup.h"

static int gid_index = 1;

static long count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static long count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static const char *failed;
static int failed_errno;

#define CHECK(cond, what)                                  \
	do {                                                   \
		if (!(cond)) {                                     \
			failed = what;                                 \
			failed_errno = errno;                          \
			return -1;                                     \
		}                                                  \
	} while (0)

static char mrbuf[65536] __attribute__((aligned(4096)));

static int cycle(struct ibv_device *dev)
{
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_mr *mr;
	struct ibv_mw *mw;
	struct ibv_cq *cq;
	struct ibv_srq *srq;
	struct ibv_qp *rc, *ud;
	struct ibv_ah *ah;
	union ibv_gid gid;
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = 64, .max_sge = 1 } };
	struct ibv_qp_init_attr ia = { 0 };
	struct ibv_ah_attr aa = { .is_global = 1, .port_num = 1 };
	struct ibv_qp_attr qa = { .qp_state = IBV_QPS_INIT, .port_num = 1,
				  .qp_access_flags = IBV_ACCESS_REMOTE_WRITE };

	CHECK(ctx = ibv_open_device(dev), "open_device");
	CHECK(pd = ibv_alloc_pd(ctx), "alloc_pd");
	CHECK(mr = ibv_reg_mr(pd, mrbuf, sizeof(mrbuf), IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
			      IBV_ACCESS_MW_BIND), "reg_mr");
	CHECK(mw = ibv_alloc_mw(pd, IBV_MW_TYPE_2), "alloc_mw");
	CHECK(cq = ibv_create_cq(ctx, 64, NULL, NULL, 0), "create_cq");
	CHECK(srq = ibv_create_srq(pd, &sa), "create_srq");
	ia.send_cq = cq;
	ia.recv_cq = cq;
	ia.qp_type = IBV_QPT_RC;
	ia.cap = (struct ibv_qp_cap){ .max_send_wr = 32, .max_recv_wr = 32, .max_send_sge = 1, .max_recv_sge = 1 };
	CHECK(rc = ibv_create_qp(pd, &ia), "create_qp RC");
	ia.qp_type = IBV_QPT_UD;
	ia.srq = srq;
	CHECK(ud = ibv_create_qp(pd, &ia), "create_qp UD");
	CHECK(ibv_query_gid(ctx, 1, gid_index, &gid) == 0, "query_gid");
	aa.grh.dgid = gid;
	aa.grh.sgid_index = gid_index;
	aa.grh.hop_limit = 1;
	CHECK(ah = ibv_create_ah(pd, &aa), "create_ah");
	errno = ibv_modify_qp(rc, &qa, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
	CHECK(errno == 0, "modify_qp INIT");
	CHECK((errno = ibv_destroy_ah(ah)) == 0, "destroy_ah");
	CHECK((errno = ibv_destroy_qp(ud)) == 0, "destroy_qp UD");
	CHECK((errno = ibv_destroy_qp(rc)) == 0, "destroy_qp RC");
	CHECK((errno = ibv_destroy_srq(srq)) == 0, "destroy_srq");
	CHECK((errno = ibv_destroy_cq(cq)) == 0, "destroy_cq");
	CHECK((errno = ibv_dealloc_mw(mw)) == 0, "dealloc_mw");
	CHECK((errno = ibv_dereg_mr(mr)) == 0, "dereg_mr");
	CHECK((errno = ibv_dealloc_pd(pd)) == 0, "dealloc_pd");
	CHECK((errno = ibv_close_device(ctx)) == 0, "close_device");
	return 0;
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	long cycles = argc > 3 ? atol(argv[3]) : 1000, first = cycles / 10, done = 0;
	long fds[2] = { -1, -1 }, maps[2] = { -1, -1 }, rss[2] = { -1, -1 };
	struct ibv_device **list, *dev = NULL;
	double t0;

	if (argc > 2)
		gid_index = atoi(argv[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (first < 1)
		first = 1;
	list = ibv_get_device_list(NULL);
	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			dev = list[i];
	if (!dev) {
		fprintf(stderr, "FATAL: no device %s\n", name);
		return 2;
	}
	printf("figure fds_before %ld\nfigure mappings_before %ld\nfigure rss_kib_before %ld\n", count_fds(),
	       count_maps(), rss_kib());
	t0 = now_s();
	while (done < cycles) {
		if (cycle(dev)) {
			printf("# cycle %ld: %s failed: %s\n", done + 1, failed, strerror(failed_errno));
			break;
		}
		done++;
		if (done == first || done == cycles) {
			int k = done == cycles;
			fds[k] = count_fds();
			maps[k] = count_maps();
			rss[k] = rss_kib();
			printf("figure fds_at_%ld %ld\nfigure mappings_at_%ld %ld\nfigure rss_kib_at_%ld %ld\n", done, fds[k],
			       done, maps[k], done, rss[k]);
			/* A cycle that slows as cycles accumulate shows here. */
			printf("figure seconds_at_%ld %.1f\n", done, now_s() - t0);
		}
	}
	printf("figure cycles %ld\nfigure seconds %.1f\n", done, now_s() - t0);
	printf("case churn.cycles expect=cycles=%ld got=cycles=%ld\n", cycles, done);
	if (done == cycles) {
		printf("case churn.fd_growth expect=fds=0 got=fds=%ld\n", fds[1] - fds[0]);
		printf("case churn.mapping_growth expect=mappings=0 got=mappings=%ld\n", maps[1] - maps[0]);
		printf("case churn.rss_growth expect=within_1MiB got=%s rss_kib_growth=%ld\n",
		       rss[1] - rss[0] <= 1024 ? "within_1MiB" : "over_1MiB", rss[1] - rss[0]);
	}
	ibv_free_device_list(list);
	return 0;
}
