/*
 * Bad inputs to the data path. Each case runs in a
 * forked child that opens the device itself and builds what it needs, so a
 * crash or a hang is an outcome of that case alone. The parent prints one
 * line per case:
 *   case <name> expect=<token> got=<token> [key=value ...]
 * tokens: ok | errno=<n> | signal=<n> | timeout | setup-failed
 * keys:   bad_wr=it|null|other|untouched  where post_* left *bad_wr
 *         posted=no|yes|unknown  whether the bad WR reached the ring: a good
 *                 WR posted after it completes first (no) or after the bad
 *                 one's completion (yes); every send QP signals all WRs
 *         wc=<status>|none  the bad WR's completion status
 *         good=<status>|none  the good WR's completion status
 *         at=<step>  for a signal or timeout: the last step the child began
 * `expect` is what the provider must give: EINVAL with bad_wr at the bad WR
 * and nothing posted, or the stock provider's errno where it is already safe,
 * or ok for legal calls (an unbind completes as the kernel decides).
 *
 * usage: bad_inputs [device] [gid_index]
 */
#define _GNU_SOURCE
#include "safety.h"
#include "../lib/child_case.h"
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define BAD_ID 0xbadull
#define GOOD_ID 0x600dull
#define RECV_PRE 0x4ecull /* receives posted before the bad call */
#define UD_QKEY 0x11111111
#define CHILD_SECONDS 60

static const char *dev_name = "rxe0";

static void at(const char *step) { say("at %s", step); }

static void setup_failed(const char *step, int err)
{
	say("result setup-failed step=%s errno=%d", step, err); /* steps have no spaces */
	_exit(0);
}

/* Everything a case may need, made in the child. */
struct env {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	char *buf;		/* 1 MiB, registered as mr */
	struct ibv_mr *mr;
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *a, *b;	/* RC: a sends to b */
	struct ibv_qp_ex *ax;	/* a's extended API, when made with send ops */
	struct ibv_srq *srq;	/* b's receives, when asked */
	struct ibv_ah *ah;	/* UD: to a itself */
	uint32_t max_inline;	/* what the kernel granted a */
};

#define BUF_SIZE (1 << 20)

static void base(struct env *e)
{
	at("open");
	e->ctx = open_dev(dev_name);
	if (!e->ctx)
		setup_failed("open_device", errno);
	e->pd = ibv_alloc_pd(e->ctx);
	if (!e->pd)
		setup_failed("alloc_pd", errno);
	e->buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e->buf == MAP_FAILED)
		setup_failed("mmap", errno);
	memset(e->buf, 0x11, BUF_SIZE);
	e->mr = ibv_reg_mr(e->pd, e->buf, BUF_SIZE, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
			   IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND);
	if (!e->mr)
		setup_failed("reg_mr", errno);
	e->scq = ibv_create_cq(e->ctx, 64, NULL, NULL, 0);
	e->rcq = ibv_create_cq(e->ctx, 64, NULL, NULL, 0);
	if (!e->scq || !e->rcq)
		setup_failed("create_cq", errno);
}

static void post_recvs(struct env *e, struct ibv_qp *qp, int n)
{
	for (int i = 0; i < n; i++) {
		struct ibv_sge s = { (uintptr_t)e->buf + BUF_SIZE / 2, 256, e->mr->lkey };
		struct ibv_recv_wr w = { .wr_id = RECV_PRE, .sg_list = &s, .num_sge = 1 }, *bad;
		int rc = e->srq ? ibv_post_srq_recv(e->srq, &w, &bad) : ibv_post_recv(qp, &w, &bad);
		if (rc)
			setup_failed("post_recv", rc);
	}
}

/* A connected RC pair. send_ops != 0: a is made with ibv_create_qp_ex and
 * those ops. recvs: receives posted on b (or its SRQ) before the bad call. */
static void rc_pair(struct env *e, uint64_t send_ops, int use_srq, int recvs)
{
	struct ibv_qp_init_attr_ex ia = { 0 };
	int rc;

	base(e);
	at("rc_pair");
	if (use_srq) {
		struct ibv_srq_init_attr sa = { .attr = { .max_wr = 64, .max_sge = 2 } };
		e->srq = ibv_create_srq(e->pd, &sa);
		if (!e->srq)
			setup_failed("create_srq", errno);
	}
	ia.send_cq = e->scq;
	ia.recv_cq = e->rcq;
	ia.qp_type = IBV_QPT_RC;
	ia.sq_sig_all = 1;
	ia.cap = (struct ibv_qp_cap){ .max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 2,
				      .max_recv_sge = 2, .max_inline_data = 64 };
	ia.comp_mask = IBV_QP_INIT_ATTR_PD;
	ia.pd = e->pd;
	/* Only the extended cases go through create_qp_ex. */
	if (send_ops) {
		ia.comp_mask |= IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
		ia.send_ops_flags = send_ops;
		e->a = ibv_create_qp_ex(e->ctx, &ia);
		if (e->a)
			e->ax = ibv_qp_to_qp_ex(e->a);
	} else {
		e->a = ibv_create_qp(e->pd, (struct ibv_qp_init_attr *)&ia);
	}
	if (!e->a)
		setup_failed("create_qp_a", errno);
	e->max_inline = ia.cap.max_inline_data;
	ia.srq = e->srq;
	e->b = ibv_create_qp(e->pd, (struct ibv_qp_init_attr *)&ia);
	if (!e->b)
		setup_failed("create_qp_b", errno);
	if ((rc = rc_connect(e->a, e->b->qp_num)) || (rc = rc_connect(e->b, e->a->qp_num)))
		setup_failed("connect", rc);
	post_recvs(e, e->b, recvs);
}

/* A UD QP (e->a) in RTS, an AH to its own GID, one receive posted. */
static void ud_qp(struct env *e)
{
	struct ibv_qp_init_attr ia = { 0 };
	struct ibv_ah_attr aa = { .is_global = 1, .port_num = 1 };
	int rc;

	base(e);
	at("ud_qp");
	ia.send_cq = e->scq;
	ia.recv_cq = e->rcq;
	ia.qp_type = IBV_QPT_UD;
	ia.sq_sig_all = 1;
	ia.cap = (struct ibv_qp_cap){ .max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 2, .max_recv_sge = 2 };
	e->a = ibv_create_qp(e->pd, &ia);
	if (!e->a)
		setup_failed("create_qp_ud", errno);
	if ((rc = ud_ready(e->a, UD_QKEY)))
		setup_failed("ud_ready", rc);
	if (ibv_query_gid(e->ctx, 1, gid_index, &aa.grh.dgid))
		setup_failed("query_gid", errno);
	aa.grh.sgid_index = gid_index;
	aa.grh.hop_limit = 1;
	e->ah = ibv_create_ah(e->pd, &aa);
	if (!e->ah)
		setup_failed("create_ah", errno);
	post_recvs(e, e->a, 1);
}

static const char *bad_where(void *bad, void *it, void *untouched)
{
	return bad == it ? "it" : bad == untouched ? "untouched" : bad ? "other" : "null";
}

static void status_str(char *s, size_t n, int seen, int status)
{
	if (seen)
		snprintf(s, n, "%d", status);
	else
		snprintf(s, n, "none");
}

/* After the bad call on a's send queue: post one good signaled send and see
 * which completions come, in order. Fills "posted=.. wc=.. good=..". */
static void observe_send(struct env *e, char *out, size_t n)
{
	struct ibv_sge s = { (uintptr_t)e->buf, 8, e->mr->lkey };
	struct ibv_send_wr w = { .wr_id = GOOD_ID, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED }, *bad;
	struct ibv_wc wc;
	int bad_seen = 0, bad_status = -1, good_seen = 0, good_status = -1, rc;
	char bs[16], gs[16];

	at("observe");
	if (e->ah) {
		w.wr.ud.ah = e->ah;
		w.wr.ud.remote_qpn = e->a->qp_num;
		w.wr.ud.remote_qkey = UD_QKEY;
	}
	rc = ibv_post_send(e->a, &w, &bad);
	while (!good_seen && poll_one(e->scq, &wc, 10)) {
		if (wc.wr_id == GOOD_ID) {
			good_seen = 1;
			good_status = wc.status;
		} else if (wc.wr_id == BAD_ID) {
			bad_seen = 1;
			bad_status = wc.status;
		}
	}
	status_str(bs, sizeof(bs), bad_seen, bad_status);
	status_str(gs, sizeof(gs), good_seen, good_status);
	snprintf(out, n, "posted=%s wc=%s good=%s%s", bad_seen ? "yes" : good_seen ? "no" : "unknown", bs, gs,
		 rc ? " good_post_failed=1" : "");
}

/* After a bad receive post on b (or its SRQ): post one good receive, send
 * one message from a, and see which receive takes it. */
static void observe_recv(struct env *e, char *out, size_t n)
{
	struct ibv_sge rs = { (uintptr_t)e->buf + BUF_SIZE / 2, 256, e->mr->lkey };
	struct ibv_recv_wr r = { .wr_id = GOOD_ID, .sg_list = &rs, .num_sge = 1 }, *rbad;
	struct ibv_sge s = { (uintptr_t)e->buf, 8, e->mr->lkey };
	struct ibv_send_wr w = { .wr_id = 1, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED }, *bad;
	struct ibv_wc wc;
	int got, rc;

	at("observe");
	rc = e->srq ? ibv_post_srq_recv(e->srq, &r, &rbad) : ibv_post_recv(e->b, &r, &rbad);
	rc |= ibv_post_send(e->a, &w, &bad);
	got = poll_one(e->rcq, &wc, 10);
	if (!got)
		snprintf(out, n, "posted=unknown wc=none good=none%s", rc ? " good_post_failed=1" : "");
	else if (wc.wr_id == GOOD_ID)
		snprintf(out, n, "posted=no wc=none good=%d", wc.status);
	else
		snprintf(out, n, "posted=%s wc=%d good=none", wc.wr_id == BAD_ID ? "yes" : "unknown", wc.status);
}

/* ---- the cases: each runs in its own child */

/* Two SGEs of 2 GiB: their u32 sum wraps to 0 and passes max_inline_data. */
static void inline_wrap_send(void)
{
	struct env e = { 0 };
	char obs[160];

	rc_pair(&e, 0, 0, 4);
	struct ibv_sge s[2] = { { (uintptr_t)e.buf, 0x80000000u, e.mr->lkey },
				{ (uintptr_t)e.buf, 0x80000000u, e.mr->lkey } };
	struct ibv_send_wr w = { .wr_id = BAD_ID, .sg_list = s, .num_sge = 2, .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_INLINE | IBV_SEND_SIGNALED }, *bad = &w + 1;
	at("post_send");
	int rc = ibv_post_send(e.a, &w, &bad);
	const char *where = bad_where(bad, &w, &w + 1);
	observe_send(&e, obs, sizeof(obs));
	say("result %s bad_wr=%s %s", tok(rc), where, obs);
}

/* The extended API's inline list: two lengths of 2^63 wrap a size_t sum. */
static void inline_list_wrap_wr(void)
{
	struct env e = { 0 };
	char obs[160];

	rc_pair(&e, IBV_QP_EX_WITH_SEND, 0, 4);
	struct ibv_data_buf bufs[2] = { { e.buf, (SIZE_MAX >> 1) + 1 }, { e.buf, (SIZE_MAX >> 1) + 1 } };
	at("wr_set_inline_data_list");
	ibv_wr_start(e.ax);
	e.ax->wr_id = BAD_ID;
	e.ax->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_send(e.ax);
	ibv_wr_set_inline_data_list(e.ax, 2, bufs);
	at("wr_complete");
	int rc = ibv_wr_complete(e.ax);
	observe_send(&e, obs, sizeof(obs));
	say("result %s %s", tok(rc), obs);
}

/* Four buffers of max_inline_data each: every one fits, their sum does not.
 * librxe checks each length alone and copies all four past the slot. */
static void inline_list_over_limit_wr(void)
{
	struct env e = { 0 };
	char obs[160];

	rc_pair(&e, IBV_QP_EX_WITH_SEND, 0, 4);
	struct ibv_data_buf bufs[4];
	for (int i = 0; i < 4; i++)
		bufs[i] = (struct ibv_data_buf){ e.buf, e.max_inline };
	at("wr_set_inline_data_list");
	ibv_wr_start(e.ax);
	e.ax->wr_id = BAD_ID;
	e.ax->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_send(e.ax);
	ibv_wr_set_inline_data_list(e.ax, 4, bufs);
	at("wr_complete");
	int rc = ibv_wr_complete(e.ax);
	observe_send(&e, obs, sizeof(obs));
	say("result %s max_inline=%u %s", tok(rc), e.max_inline, obs);
}

/* A legal unbind of a type 1 window (verbs.h: mr NULL, addr 0, length 0),
 * after a real bind. */
static void unbind_type1_bind_mw(void)
{
	struct env e = { 0 };
	struct ibv_wc wc;
	char obs[160];

	rc_pair(&e, 0, 0, 4);
	struct ibv_mw *mw = ibv_alloc_mw(e.pd, IBV_MW_TYPE_1);
	if (!mw)
		setup_failed("alloc_mw", errno);
	struct ibv_mw_bind bind = { .wr_id = 1, .send_flags = IBV_SEND_SIGNALED,
		.bind_info = { .mr = e.mr, .addr = (uintptr_t)e.buf, .length = 64, .mw_access_flags = IBV_ACCESS_REMOTE_READ } };
	int rc = ibv_bind_mw(e.a, mw, &bind);
	if (rc)
		setup_failed("bind_mw", rc);
	if (!poll_one(e.scq, &wc, 10) || wc.status != IBV_WC_SUCCESS)
		setup_failed("bind_mw_completion", EIO);
	struct ibv_mw_bind unbind = { .wr_id = BAD_ID, .send_flags = IBV_SEND_SIGNALED,
		.bind_info = { .mr = NULL, .addr = 0, .length = 0, .mw_access_flags = 0 } };
	at("bind_mw unbind");
	rc = ibv_bind_mw(e.a, mw, &unbind);
	observe_send(&e, obs, sizeof(obs));
	say("result %s %s", tok(rc), obs);
}

/* The same for a type 2 window through ibv_wr_bind_mw (info->mr NULL). */
static void unbind_type2_wr_bind_mw(void)
{
	struct env e = { 0 };
	char obs[160];

	rc_pair(&e, IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_BIND_MW, 0, 4);
	struct ibv_mw *mw = ibv_alloc_mw(e.pd, IBV_MW_TYPE_2);
	if (!mw)
		setup_failed("alloc_mw", errno);
	struct ibv_mw_bind_info info = { .mr = NULL, .addr = 0, .length = 0, .mw_access_flags = 0 };
	at("wr_bind_mw unbind");
	ibv_wr_start(e.ax);
	e.ax->wr_id = BAD_ID;
	e.ax->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_bind_mw(e.ax, mw, ibv_inc_rkey(mw->rkey), &info);
	at("wr_complete");
	int rc = ibv_wr_complete(e.ax);
	observe_send(&e, obs, sizeof(obs));
	say("result %s %s", tok(rc), obs);
}

/* An opcode UD does not allow. remote_addr shares its bytes with wr.ud.ah:
 * 0x1000 is below mmap_min_addr, so reading it as an AH always faults. */
static void ud_opcode(enum ibv_wr_opcode opcode)
{
	struct env e = { 0 };
	char obs[160];

	ud_qp(&e);
	struct ibv_sge s = { (uintptr_t)e.buf, 8, e.mr->lkey };
	struct ibv_send_wr w = { .wr_id = BAD_ID, .sg_list = &s, .num_sge = 1, .opcode = opcode,
				 .send_flags = IBV_SEND_SIGNALED }, *bad = &w + 1;
	if (opcode == IBV_WR_RDMA_WRITE || opcode == IBV_WR_RDMA_READ) {
		w.wr.rdma.remote_addr = 0x1000;
		w.wr.rdma.rkey = 0x1234;
	} else {
		w.wr.atomic.remote_addr = 0x1000;
		w.wr.atomic.rkey = 0x1234;
		w.wr.atomic.compare_add = 1;
	}
	at("post_send");
	int rc = ibv_post_send(e.a, &w, &bad);
	const char *where = bad_where(bad, &w, &w + 1);
	observe_send(&e, obs, sizeof(obs));
	say("result %s bad_wr=%s %s", tok(rc), where, obs);
}
static void ud_rdma_write(void) { ud_opcode(IBV_WR_RDMA_WRITE); }
static void ud_rdma_read(void) { ud_opcode(IBV_WR_RDMA_READ); }
static void ud_atomic_fetch_add(void) { ud_opcode(IBV_WR_ATOMIC_FETCH_AND_ADD); }

/* A send WR with the given sg_list / num_sge on a connected RC QP. */
static void send_sges(int null_list, int num_sge)
{
	struct env e = { 0 };
	char obs[160];

	rc_pair(&e, 0, 0, 4);
	struct ibv_sge s = { (uintptr_t)e.buf, 8, e.mr->lkey };
	struct ibv_send_wr w = { .wr_id = BAD_ID, .sg_list = null_list ? NULL : &s, .num_sge = num_sge,
				 .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED }, *bad = &w + 1;
	at("post_send");
	int rc = ibv_post_send(e.a, &w, &bad);
	const char *where = bad_where(bad, &w, &w + 1);
	observe_send(&e, obs, sizeof(obs));
	say("result %s bad_wr=%s %s", tok(rc), where, obs);
}
static void send_sg_list_null(void) { send_sges(1, 1); }
/* Control: no SGEs and no list is a legal zero-length send. */
static void send_sg_list_null_num_sge0(void) { send_sges(1, 0); }
static void send_num_sge_huge(void) { send_sges(0, 0x7fffffff); }
static void send_num_sge_negative(void) { send_sges(0, -1); }

/* A receive WR with the given sg_list / num_sge on b or on b's SRQ. */
static void recv_sges(int use_srq, int null_list, int num_sge)
{
	struct env e = { 0 };
	char obs[160];

	rc_pair(&e, 0, use_srq, 0);
	struct ibv_sge s = { (uintptr_t)e.buf + BUF_SIZE / 2, 256, e.mr->lkey };
	struct ibv_recv_wr w = { .wr_id = BAD_ID, .sg_list = null_list ? NULL : &s, .num_sge = num_sge },
			   *bad = &w + 1;
	at(use_srq ? "post_srq_recv" : "post_recv");
	int rc = use_srq ? ibv_post_srq_recv(e.srq, &w, &bad) : ibv_post_recv(e.b, &w, &bad);
	const char *where = bad_where(bad, &w, &w + 1);
	observe_recv(&e, obs, sizeof(obs));
	say("result %s bad_wr=%s %s", tok(rc), where, obs);
}
static void recv_sg_list_null(void) { recv_sges(0, 1, 1); }
static void srq_recv_sg_list_null(void) { recv_sges(1, 1, 1); }
static void recv_num_sge_huge(void) { recv_sges(0, 0, 0x7fffffff); }
static void recv_num_sge_negative(void) { recv_sges(0, 0, -1); }

static const struct {
	const char *name, *expect;
	void (*run)(void);
} cases[] = {
	{ "inline_wrap_send", "errno=22", inline_wrap_send },
	/* librxe checks each length against max_inline_data: ENOSPC. */
	{ "inline_list_wrap_wr", "errno=28", inline_list_wrap_wr },
	/* ours refuses as for a single buffer over the limit: ENOSPC. */
	{ "inline_list_over_limit_wr", "errno=28", inline_list_over_limit_wr },
	{ "unbind_type1_bind_mw", "ok", unbind_type1_bind_mw },
	{ "unbind_type2_wr_bind_mw", "ok", unbind_type2_wr_bind_mw },
	{ "ud_rdma_write", "errno=22", ud_rdma_write },
	{ "ud_rdma_read", "errno=22", ud_rdma_read },
	{ "ud_atomic_fetch_add", "errno=22", ud_atomic_fetch_add },
	{ "send_sg_list_null", "errno=22", send_sg_list_null },
	{ "send_sg_list_null_num_sge0", "ok", send_sg_list_null_num_sge0 },
	{ "recv_sg_list_null", "errno=22", recv_sg_list_null },
	{ "srq_recv_sg_list_null", "errno=22", srq_recv_sg_list_null },
	{ "send_num_sge_huge", "errno=22", send_num_sge_huge },
	{ "send_num_sge_negative", "errno=22", send_num_sge_negative },
	{ "recv_num_sge_huge", "errno=22", recv_num_sge_huge },
	{ "recv_num_sge_negative", "errno=22", recv_num_sge_negative },
};

/* Runs one case in a child and prints its line. */
static void run_case(const char *name, const char *expect, void (*run)(void))
{
	char out[4096], result[512], last_at[128];
	int status = run_in_child(run, CHILD_SECONDS, out, sizeof(out));

	read_case_lines(out, result, sizeof(result), last_at, sizeof(last_at));
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		printf("case %s expect=%s got=timeout at=%s\n", name, expect, last_at);
	else if (WIFSIGNALED(status))
		printf("case %s expect=%s got=signal=%d at=%s\n", name, expect, WTERMSIG(status), last_at);
	else if (!result[0])
		printf("case %s expect=%s got=setup-failed exit=%d at=%s\n", name, expect, WEXITSTATUS(status), last_at);
	else
		printf("case %s expect=%s got=%s\n", name, expect, result);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		dev_name = argv[1];
	if (argc > 2)
		gid_index = atoi(argv[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(cases[i].name, cases[i].expect, cases[i].run);
	return 0;
}
