/*
 * Provider-path micro-benchmarks on one rxe device, printed as
 * `bench <name> <ns per op>`:
 *   post_recv      - one receive WR per call into a big queue (no syscall)
 *   poll_empty     - ibv_poll_cq on an empty CQ (no syscall)
 *   send_roundtrip - signaled 64-byte SEND to a looped-back QP, then poll
 *                    both completions (doorbell + kernel path included)
 * usage: micro [device] [gid_index]
 */
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/verbs_setup.h"

static double now_ns(void)
{
	return now_s() * 1e9;
}

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "FATAL: %s\n", #x); exit(2); } } while (0)

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	int gid_index = argc > 2 ? atoi(argv[2]) : 1;
	struct ibv_context *ctx = open_dev(name);

	CHECK(ctx);
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	char *buf = aligned_alloc(4096, 1 << 16);
	struct ibv_mr *mr = ibv_reg_mr(pd, buf, 1 << 16, IBV_ACCESS_LOCAL_WRITE);
	struct ibv_cq *cq = ibv_create_cq(ctx, 8192, NULL, NULL, 0);
	CHECK(pd && buf && mr && cq);

	/* post_recv */
	const int N = 4000;
	double best = 1e18;
	for (int round = 0; round < 5; round++) {
		struct ibv_qp_init_attr ia = { .send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
			.cap = { .max_send_wr = 1, .max_recv_wr = N, .max_send_sge = 1, .max_recv_sge = 1 } };
		struct ibv_qp *qp = ibv_create_qp(pd, &ia);
		struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .port_num = 1 };
		CHECK(qp && !ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS));
		struct ibv_sge s = { (uintptr_t)buf, 64, mr->lkey };
		struct ibv_recv_wr w = { .sg_list = &s, .num_sge = 1 }, *bad;
		double t0 = now_ns();
		for (int i = 0; i < N; i++) {
			w.wr_id = i;
			CHECK(!ibv_post_recv(qp, &w, &bad));
		}
		double per = (now_ns() - t0) / N;
		best = per < best ? per : best;
		ibv_destroy_qp(qp);
	}
	printf("bench post_recv %.1f\n", best);

	/* poll_empty */
	best = 1e18;
	for (int round = 0; round < 5; round++) {
		struct ibv_wc wc[4];
		double t0 = now_ns();
		for (int i = 0; i < 200000; i++)
			CHECK(ibv_poll_cq(cq, 4, wc) == 0);
		double per = (now_ns() - t0) / 200000;
		best = per < best ? per : best;
	}
	printf("bench poll_empty %.1f\n", best);

	/* send_roundtrip */
	struct ibv_qp_init_attr ia = { .send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 64, .max_recv_wr = 64, .max_send_sge = 1, .max_recv_sge = 1 } };
	struct ibv_qp *qa = ibv_create_qp(pd, &ia), *qb = ibv_create_qp(pd, &ia);
	CHECK(qa && qb);
	union ibv_gid gid;
	CHECK(!ibv_query_gid(ctx, 1, gid_index, &gid));
	struct ibv_qp *qs[2] = { qa, qb };
	for (int k = 0; k < 2; k++)
		CHECK(!rc_loopback(qs[k], qs[1 - k]->qp_num, &gid, gid_index, 0));
	const int R = 2000;
	double t0 = now_ns();
	for (int i = 0; i < R; i++) {
		struct ibv_sge rs = { (uintptr_t)buf + 4096, 64, mr->lkey };
		struct ibv_recv_wr rw = { .sg_list = &rs, .num_sge = 1 }, *rbad;
		CHECK(!ibv_post_recv(qb, &rw, &rbad));
		struct ibv_sge s = { (uintptr_t)buf, 64, mr->lkey };
		struct ibv_send_wr w = { .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
			.send_flags = IBV_SEND_SIGNALED }, *bad;
		CHECK(!ibv_post_send(qa, &w, &bad));
		int got = 0;
		struct ibv_wc wc[2];
		while (got < 2) {
			int n = ibv_poll_cq(cq, 2, wc);
			for (int k = 0; k < n; k++)
				CHECK(wc[k].status == IBV_WC_SUCCESS);
			got += n;
		}
	}
	printf("bench send_roundtrip %.1f\n", (now_ns() - t0) / R);
	ibv_destroy_qp(qa);
	ibv_destroy_qp(qb);
	ibv_destroy_cq(cq);
	ibv_dereg_mr(mr);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	return 0;
}
