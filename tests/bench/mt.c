/*
 * Contention and registration timings, printed as `bench <name> <value>`:
 *   post_rate.<P>x<Q>  - WRs posted per second by P threads posting 64-byte
 *                        signaled RDMA WRITEs (one per ibv_post_send) on one
 *                        looped-back RC QP while Q threads poll its send CQ
 *   reg_mr.<size>      - median microseconds of ibv_reg_mr + ibv_dereg_mr
 * and, as `info` lines (report.py shows only the `bench` ones): how many posts
 * per second the full send queue refused, and reg_mr's minimum and quartiles.
 * usage: mt [device] [gid_index] [seconds per contention run] [part]
 * part: all (the default), one contention run as <P>x<Q>, or reg; guest.sh
 * runs one part at a time, alternating the providers, so that both measure
 * each part at nearly the same moment of the emulated machine.
 */
#include <infiniband/verbs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "../lib/verbs_setup.h"

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "FATAL %s:%d: %s\n", __FILE__, __LINE__, #x); exit(2); } } while (0)

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_mr *mr;
static char *buf;
static union ibv_gid gid;
static int gid_index;

static struct ibv_qp *qa;
static struct ibv_cq *scq;
static atomic_int stop;
static atomic_long posted, polled, refused;

static void *poster(void *arg)
{
	(void)arg;
	struct ibv_sge s = { (uintptr_t)buf, 64, mr->lkey };
	struct ibv_send_wr w = { .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
		.send_flags = IBV_SEND_SIGNALED }, *bad;
	w.wr.rdma.remote_addr = (uintptr_t)buf + 4096;
	w.wr.rdma.rkey = mr->rkey;
	long n = 0, full = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (ibv_post_send(qa, &w, &bad) == 0)
			n++;
		else
			full++;
	}
	atomic_fetch_add(&posted, n);
	atomic_fetch_add(&refused, full);
	return NULL;
}

static void *poller(void *arg)
{
	(void)arg;
	struct ibv_wc wc[16];
	long n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int got = ibv_poll_cq(scq, 16, wc);
		CHECK(got >= 0);
		for (int i = 0; i < got; i++)
			CHECK(wc[i].status == IBV_WC_SUCCESS);
		n += got;
	}
	atomic_fetch_add(&polled, n);
	return NULL;
}

static void contention(int posters, int pollers, double secs)
{
	struct ibv_cq *rcq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
	scq = ibv_create_cq(ctx, 4096, NULL, NULL, 0);
	CHECK(rcq && scq);
	struct ibv_qp_init_attr ia = { .send_cq = scq, .recv_cq = rcq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 1024, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1 } };
	qa = ibv_create_qp(pd, &ia);
	struct ibv_qp *qb = ibv_create_qp(pd, &ia);
	CHECK(qa && qb);
	CHECK(!rc_loopback(qa, qb->qp_num, &gid, gid_index, IBV_ACCESS_REMOTE_WRITE));
	CHECK(!rc_loopback(qb, qa->qp_num, &gid, gid_index, IBV_ACCESS_REMOTE_WRITE));
	pthread_t t[16];
	atomic_store(&stop, 0);
	atomic_store(&posted, 0);
	atomic_store(&polled, 0);
	atomic_store(&refused, 0);
	double t0 = now_s();
	for (int i = 0; i < pollers; i++)
		CHECK(!pthread_create(&t[i], NULL, poller, NULL));
	for (int i = 0; i < posters; i++)
		CHECK(!pthread_create(&t[pollers + i], NULL, poster, NULL));
	struct timespec ts = { (time_t)secs, (long)((secs - (time_t)secs) * 1e9) };
	nanosleep(&ts, NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < pollers + posters; i++)
		pthread_join(t[i], NULL);
	double el = now_s() - t0;
	printf("bench post_rate.%dx%d %.0f\n", posters, pollers, atomic_load(&posted) / el);
	printf("info post_refused.%dx%d %.0f\n", posters, pollers, atomic_load(&refused) / el);
	fflush(stdout);
	/* Let the kernel finish what is in flight before the QP goes. */
	struct ibv_wc wc[16];
	double until = now_s() + 5;
	while (now_s() < until && ibv_poll_cq(scq, 16, wc) > 0)
		;
	ibv_destroy_qp(qa);
	ibv_destroy_qp(qb);
	ibv_destroy_cq(scq);
	ibv_destroy_cq(rcq);
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void reg(size_t size, const char *label, int reps)
{
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	memset(p, 1, size);
	double *t = calloc(reps, sizeof(double));
	CHECK(t);
	for (int i = 0; i < reps; i++) {
		double t0 = now_s();
		struct ibv_mr *m = ibv_reg_mr(pd, p, size, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
		CHECK(m);
		CHECK(!ibv_dereg_mr(m));
		t[i] = (now_s() - t0) * 1e6;
	}
	qsort(t, reps, sizeof(double), cmpd);
	printf("bench reg_mr.%s %.1f\n", label, t[reps / 2]);
	printf("info reg_mr_spread.%s %.1f %.1f %.1f\n", label, t[0], t[reps / 4], t[3 * reps / 4]);
	fflush(stdout);
	free(t);
	munmap(p, size);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	gid_index = argc > 2 ? atoi(argv[2]) : 1;
	double secs = argc > 3 ? atof(argv[3]) : 2;
	ctx = open_dev(name);
	CHECK(ctx);
	pd = ibv_alloc_pd(ctx);
	buf = aligned_alloc(4096, 1 << 16);
	CHECK(pd && buf);
	mr = ibv_reg_mr(pd, buf, 1 << 16, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	CHECK(mr);
	CHECK(!ibv_query_gid(ctx, 1, gid_index, &gid));

	const char *part = argc > 4 ? argv[4] : "all";
	int all = !strcmp(part, "all");
	static const int posters[] = { 1, 2, 4, 8 };
	for (int q = 1; q <= 2; q++)
		for (unsigned i = 0; i < sizeof(posters) / sizeof(*posters); i++) {
			char name[16];
			snprintf(name, sizeof(name), "%dx%d", posters[i], q);
			if (all || !strcmp(part, name))
				contention(posters[i], q, secs);
		}
	if (all || !strcmp(part, "reg")) {
		reg(4096, "4KiB", 201);
		reg(1 << 20, "1MiB", 101);
		reg(64 << 20, "64MiB", 31);
	}
	return 0;
}
