/*
 * Userspace instructions per hot-path verb, and per reg_mr + dereg_mr,
 * counted by callgrind.
 *
 * Run under `valgrind --tool=callgrind --collect-atstart=no`: each measured
 * region is bracketed by CALLGRIND_TOGGLE_COLLECT and followed by
 * CALLGRIND_DUMP_STATS_AT("<name> <calls>"), so every dump holds the
 * instructions of that region alone; tests/bench/run.sh divides them by the
 * number of calls. Set-up, draining and reposting happen outside the regions.
 * Without valgrind the client requests are no-ops and the program just runs.
 *
 * Loopback pairs on one device: RC a->b (a's send CQ is an extended CQ,
 * b's receives land on a plain CQ) and UD c->d. 64-byte messages, one SGE.
 * usage: icount [device] [gid_index] [batches]
 */
#include <infiniband/verbs.h>
#include <valgrind/callgrind.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "../lib/verbs_setup.h"

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "FATAL %s:%d: %s\n", __FILE__, __LINE__, #x); exit(2); } } while (0)

enum { K = 128, MSG = 64 };	/* WRs per measured batch, message size */

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_mr *mr;
static char *buf;
static struct ibv_cq *cq;	/* plain: b's receives and sends, d's and c's */
static struct ibv_cq_ex *cqx;	/* extended: a's sends */
static struct ibv_qp *qa, *qb, *qc, *qd;
static struct ibv_qp_ex *xa, *xc;
static struct ibv_ah *ah;
static union ibv_gid gid;
static int gid_index;
static int batches;

static void begin(void) { CALLGRIND_TOGGLE_COLLECT; }
static void end_marked(const char *name, long calls, int tainted)
{
	CALLGRIND_TOGGLE_COLLECT;
	char tag[96];
	snprintf(tag, sizeof(tag), "%s %ld %d", name, calls, tainted);
	CALLGRIND_DUMP_STATS_AT(tag);
}

static void end(const char *name, long calls) { end_marked(name, calls, 0); }

static void deadline_check(time_t t0)
{
	CHECK(time(NULL) - t0 < 60);
}

/* Waits for n completions on the plain CQ, checking each. */
static void drain_cq(struct ibv_cq *c, int n)
{
	struct ibv_wc wc[16];
	time_t t0 = time(NULL);
	while (n > 0) {
		int got = ibv_poll_cq(c, n < 16 ? n : 16, wc);
		CHECK(got >= 0);
		for (int i = 0; i < got; i++)
			if (wc[i].status != IBV_WC_SUCCESS) {
				fprintf(stderr, "FATAL: completion status %s opcode %d\n", ibv_wc_status_str(wc[i].status), wc[i].opcode);
				exit(2);
			}
		n -= got;
		if (!got)
			deadline_check(t0);
	}
}

/* rxe completes asynchronously: give the kernel time to fill the CQs, so
 * that the counted polls find entries (a region that met an empty poll is
 * marked and left out by run.sh). */
static void let_kernel_complete(void)
{
	struct timespec ts = { 0, 300 * 1000 * 1000 };
	nanosleep(&ts, NULL);
}

static void drain_cqx(int n)
{
	time_t t0 = time(NULL);
	struct ibv_poll_cq_attr pa = { 0 };
	while (n > 0) {
		int r = ibv_start_poll(cqx, &pa);
		if (r == ENOENT) {
			deadline_check(t0);
			continue;
		}
		CHECK(r == 0);
		do {
			CHECK(cqx->status == IBV_WC_SUCCESS);
			n--;
		} while (n > 0 && ibv_next_poll(cqx) == 0);
		ibv_end_poll(cqx);
	}
}

static void post_recvs(struct ibv_qp *qp, int n, uint32_t len)
{
	struct ibv_sge s = { (uintptr_t)buf + 8192, len, mr->lkey };
	struct ibv_recv_wr w = { .sg_list = &s, .num_sge = 1 }, *bad;
	for (int i = 0; i < n; i++)
		CHECK(!ibv_post_recv(qp, &w, &bad));
}

#define UD_QKEY 0x11111111

static struct ibv_qp *make_qp(enum ibv_qp_type type, struct ibv_cq *scq, struct ibv_cq *rcq, uint64_t ops)
{
	struct ibv_qp_init_attr_ex ia = {
		.send_cq = scq, .recv_cq = rcq, .qp_type = type,
		.cap = { .max_send_wr = K, .max_recv_wr = K, .max_send_sge = 1, .max_recv_sge = 1, .max_inline_data = MSG },
		.comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
		.pd = pd, .send_ops_flags = ops,
	};
	struct ibv_qp *qp = ibv_create_qp_ex(ctx, &ia);
	CHECK(qp);
	return qp;
}

/* Which send a measurement posts. */
enum kind { SEND, WRITE, INLINE, UD };

static void post_old(enum kind k, int i)
{
	struct ibv_sge s = { (uintptr_t)buf, MSG, mr->lkey };
	struct ibv_send_wr w = { .wr_id = i, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
		.send_flags = IBV_SEND_SIGNALED }, *bad;
	struct ibv_qp *qp = qa;
	if (k == WRITE) {
		w.opcode = IBV_WR_RDMA_WRITE;
		w.wr.rdma.remote_addr = (uintptr_t)buf + 16384;
		w.wr.rdma.rkey = mr->rkey;
	} else if (k == INLINE) {
		w.send_flags |= IBV_SEND_INLINE;
	} else if (k == UD) {
		qp = qc;
		w.wr.ud.ah = ah; w.wr.ud.remote_qpn = qd->qp_num; w.wr.ud.remote_qkey = 0x11111111;
	}
	CHECK(!ibv_post_send(qp, &w, &bad));
}

static void post_new(enum kind k, int i)
{
	struct ibv_qp_ex *x = k == UD ? xc : xa;
	ibv_wr_start(x);
	x->wr_id = i;
	x->wr_flags = IBV_SEND_SIGNALED;
	switch (k) {
	case SEND:
		ibv_wr_send(x);
		ibv_wr_set_sge(x, mr->lkey, (uintptr_t)buf, MSG);
		break;
	case WRITE:
		ibv_wr_rdma_write(x, mr->rkey, (uintptr_t)buf + 16384);
		ibv_wr_set_sge(x, mr->lkey, (uintptr_t)buf, MSG);
		break;
	case INLINE:
		x->wr_flags |= IBV_SEND_INLINE;
		ibv_wr_send(x);
		ibv_wr_set_inline_data(x, buf, MSG);
		break;
	case UD:
		ibv_wr_send(x);
		ibv_wr_set_ud_addr(x, ah, qd->qp_num, 0x11111111);
		ibv_wr_set_sge(x, mr->lkey, (uintptr_t)buf, MSG);
		break;
	}
	CHECK(!ibv_wr_complete(x));
}

/* Posts batches of K sends, counting only the post calls; drains outside. */
static void bench_send(const char *name, enum kind k, int newapi)
{
	long calls = 0;
	for (int b = 0; b < batches; b++) {
		struct ibv_qp *rq = k == UD ? qd : qb;
		if (k != WRITE)
			post_recvs(rq, K, k == UD ? MSG + 40 : MSG);
		begin();
		for (int i = 0; i < K; i++) {
			if (newapi)
				post_new(k, i);
			else
				post_old(k, i);
		}
		end(name, K);
		calls += K;
		if (k == UD) {
			drain_cq(cq, 2 * K);	/* c's sends and d's receives */
		} else {
			drain_cqx(K);
			if (k != WRITE)
				drain_cq(cq, K);
		}
	}
	(void)calls;
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	gid_index = argc > 2 ? atoi(argv[2]) : 1;
	batches = argc > 3 ? atoi(argv[3]) : 8;
	ctx = open_dev(name);
	CHECK(ctx);
	pd = ibv_alloc_pd(ctx);
	buf = aligned_alloc(4096, 1 << 16);
	CHECK(pd && buf);
	memset(buf, 0x5a, 1 << 16);
	mr = ibv_reg_mr(pd, buf, 1 << 16, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	cq = ibv_create_cq(ctx, 4 * K + 16, NULL, NULL, 0);
	struct ibv_cq_init_attr_ex ca = { .cqe = 2 * K, .wc_flags = IBV_WC_EX_WITH_BYTE_LEN };
	cqx = ibv_create_cq_ex(ctx, &ca);
	CHECK(mr && cq && cqx);
	CHECK(!ibv_query_gid(ctx, 1, gid_index, &gid));

	uint64_t rc_ops = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE;
	qa = make_qp(IBV_QPT_RC, ibv_cq_ex_to_cq(cqx), cq, rc_ops);
	qb = make_qp(IBV_QPT_RC, cq, cq, rc_ops);
	const unsigned remote = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	CHECK(!rc_loopback(qa, qb->qp_num, &gid, gid_index, remote));
	CHECK(!rc_loopback(qb, qa->qp_num, &gid, gid_index, remote));
	qc = make_qp(IBV_QPT_UD, cq, cq, IBV_QP_EX_WITH_SEND);
	qd = make_qp(IBV_QPT_UD, cq, cq, IBV_QP_EX_WITH_SEND);
	CHECK(!ud_ready(qc, UD_QKEY));
	CHECK(!ud_ready(qd, UD_QKEY));
	xa = ibv_qp_to_qp_ex(qa);
	xc = ibv_qp_to_qp_ex(qc);
	CHECK(xa && xc);
	struct ibv_ah_attr aa = { .is_global = 1, .port_num = 1,
		.grh = { .dgid = gid, .sgid_index = gid_index, .hop_limit = 1 } };
	ah = ibv_create_ah(pd, &aa);
	CHECK(ah);

	/* Warm up every path once, uncounted. */
	post_recvs(qb, 1, MSG);
	post_old(SEND, 0);
	drain_cqx(1);
	drain_cq(cq, 1);

	bench_send("post_send.SEND", SEND, 0);
	bench_send("wr.SEND", SEND, 1);
	bench_send("post_send.RDMA_WRITE", WRITE, 0);
	bench_send("wr.RDMA_WRITE", WRITE, 1);
	bench_send("post_send.inline_SEND", INLINE, 0);
	bench_send("wr.inline_SEND", INLINE, 1);
	bench_send("post_send.UD_SEND", UD, 0);
	bench_send("wr.UD_SEND", UD, 1);

	/* poll_cq per completion (one at a time) and the extended polling:
	 * K sends from a fill both CQs, then each is read back counted. */
	for (int b = 0; b < batches; b++) {
		post_recvs(qb, K, MSG);
		for (int i = 0; i < K; i++)
			post_old(SEND, i);
		struct ibv_wc wc;
		int got = 0;
		time_t t0 = time(NULL);
		while (got < K) {
			let_kernel_complete();
			int n = 0, empty = 0;
			begin();
			for (int i = got; i < K; i++) {
				if (ibv_poll_cq(cq, 1, &wc) != 1) {
					empty = 1;
					break;
				}
				n++;
			}
			end_marked("poll_cq.per_completion", n, empty);
			got += n;
			if (got < K)
				deadline_check(t0);
		}
		/* The extended CQ holds a's K send completions. */
		struct ibv_poll_cq_attr pa = { 0 };
		got = 0;
		while (got < K) {
			int n = 0, empty = 0;
			begin();
			if (ibv_start_poll(cqx, &pa) == 0) {
				do {
					volatile uint64_t id = cqx->wr_id;
					volatile int st = cqx->status;
					volatile int op = ibv_wc_read_opcode(cqx);
					volatile uint32_t len = ibv_wc_read_byte_len(cqx);
					(void)id; (void)st; (void)op; (void)len;
					n++;
				} while (n < K - got && ibv_next_poll(cqx) == 0);
				ibv_end_poll(cqx);
			} else {
				empty = 1;
			}
			/* The last next_poll above is not made: a region ends on an
			 * entry, as poll_cq's does. */
			end_marked("poll_cq_ex.per_completion", n, empty || n < K - got);
			got += n;
			if (got < K) {
				deadline_check(t0);
				let_kernel_complete();
			}
		}
	}

	/* poll_cq on an empty CQ. */
	{
		struct ibv_wc wc;
		const int N = K * batches;
		begin();
		for (int i = 0; i < N; i++)
			CHECK(ibv_poll_cq(cq, 1, &wc) == 0);
		end("poll_cq.empty", N);
	}

	/* post_recv: a QP in INIT with a deep receive queue. */
	{
		const int N = K * batches;
		struct ibv_qp_init_attr ia = { .send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
			.cap = { .max_send_wr = 1, .max_recv_wr = N, .max_send_sge = 1, .max_recv_sge = 1 } };
		struct ibv_qp *qp = ibv_create_qp(pd, &ia);
		CHECK(qp);
		struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .port_num = 1 };
		CHECK(!ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS));
		struct ibv_sge s = { (uintptr_t)buf, MSG, mr->lkey };
		struct ibv_recv_wr w = { .sg_list = &s, .num_sge = 1 }, *bad;
		begin();
		for (int i = 0; i < N; i++) {
			w.wr_id = i;
			CHECK(!ibv_post_recv(qp, &w, &bad));
		}
		end("post_recv", N);
		CHECK(!ibv_destroy_qp(qp));
	}

	/* post_srq_recv. */
	{
		const int N = K * batches;
		struct ibv_srq_init_attr sa = { .attr = { .max_wr = N, .max_sge = 1 } };
		struct ibv_srq *srq = ibv_create_srq(pd, &sa);
		CHECK(srq);
		struct ibv_sge s = { (uintptr_t)buf, MSG, mr->lkey };
		struct ibv_recv_wr w = { .sg_list = &s, .num_sge = 1 }, *bad;
		begin();
		for (int i = 0; i < N; i++) {
			w.wr_id = i;
			CHECK(!ibv_post_srq_recv(srq, &w, &bad));
		}
		end("post_srq_recv", N);
		CHECK(!ibv_destroy_srq(srq));
	}

	/* req_notify_cq (a syscall in both: only its userspace side counts). */
	{
		const int N = K * batches / 4;
		begin();
		for (int i = 0; i < N; i++)
			CHECK(!ibv_req_notify_cq(cq, 0));
		end("req_notify_cq", N);
	}

	/* reg_mr + dereg_mr: one command each, the same on both sides (strace
	 * shows one ioctl apiece); the kernel's pinning is not counted, so this
	 * is the part of registration a provider chooses. */
	{
		static const struct { size_t size; const char *name; int reps; } sizes[] = {
			{ 4096, "reg_mr.4KiB", 64 }, { 1 << 20, "reg_mr.1MiB", 16 }, { 64 << 20, "reg_mr.64MiB", 4 },
		};
		for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			char *p = mmap(NULL, sizes[s].size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			CHECK(p != MAP_FAILED);
			memset(p, 1, sizes[s].size);
			begin();
			for (int i = 0; i < sizes[s].reps; i++) {
				struct ibv_mr *m = ibv_reg_mr(pd, p, sizes[s].size, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
				CHECK(m);
				CHECK(!ibv_dereg_mr(m));
			}
			end(sizes[s].name, sizes[s].reps);
			CHECK(!munmap(p, sizes[s].size));
		}
	}

	printf("icount done\n");
	return 0;
}
