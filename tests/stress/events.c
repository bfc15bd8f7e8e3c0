/*
 * Overflow and asynchronous events (issue 11, item 5).
 *
 * cq_overflow.*: a send CQ smaller than the traffic. More signaled RDMA
 *   writes are posted than the CQ holds, without polling: the kernel's rxe
 *   reports IBV_EVENT_CQ_ERR for that CQ through ibv_get_async_event, and
 *   the QPs' fate is whatever the kernel decides (printed: their state and
 *   the QP events). The same with a receive CQ smaller than the sends.
 * flush.*: QPs moved to ERR with WRs outstanding (sends to a peer that never
 *   answers, receives nothing consumes): every WR completes exactly once
 *   with IBV_WC_WR_FLUSH_ERR, counted by wr_id, and nothing more comes; a
 *   send posted in ERR is flushed at once, a receive never (6.1's rxe).
 * srq_limit.*: an SRQ armed with a limit; consuming receives below it
 *   delivers IBV_EVENT_SRQ_LIMIT_REACHED once, and disarms the limit.
 *
 * usage: events [device] [gid_index]
 */
#include "stress.h"
#include <fcntl.h>
#include <poll.h>

#define BUF (1 << 20)
static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_mr *mr;
static char *buf;

/* Async events gathered so far, by type, and the object they name. */
struct evlog {
	int cq_err, qp_fatal, qp_req_err, qp_access_err, comm_est, sq_drained, last_wqe, srq_limit, srq_err, other;
	void *cq, *srq;
	uint32_t qp_nums[8];
	int nqp;
};

/* Reads async events for `secs` (acking each). */
static void gather(struct evlog *e, double secs)
{
	double end = now_s() + secs;
	struct pollfd p = { .fd = ctx->async_fd, .events = POLLIN };

	for (;;) {
		int left = (int)((end - now_s()) * 1000);
		struct ibv_async_event ev;

		if (left <= 0 || poll(&p, 1, left) <= 0) {
			if (now_s() >= end)
				return;
			continue;
		}
		if (ibv_get_async_event(ctx, &ev))
			continue;
		switch (ev.event_type) {
		case IBV_EVENT_CQ_ERR:
			e->cq_err++;
			e->cq = ev.element.cq;
			break;
		case IBV_EVENT_QP_FATAL:
		case IBV_EVENT_QP_REQ_ERR:
		case IBV_EVENT_QP_ACCESS_ERR:
			if (ev.event_type == IBV_EVENT_QP_FATAL)
				e->qp_fatal++;
			else if (ev.event_type == IBV_EVENT_QP_REQ_ERR)
				e->qp_req_err++;
			else
				e->qp_access_err++;
			if (e->nqp < 8)
				e->qp_nums[e->nqp++] = ev.element.qp->qp_num;
			break;
		case IBV_EVENT_COMM_EST:
			e->comm_est++;
			break;
		case IBV_EVENT_SQ_DRAINED:
			e->sq_drained++;
			break;
		case IBV_EVENT_QP_LAST_WQE_REACHED:
			e->last_wqe++;
			break;
		case IBV_EVENT_SRQ_LIMIT_REACHED:
			e->srq_limit++;
			e->srq = ev.element.srq;
			break;
		case IBV_EVENT_SRQ_ERR:
			e->srq_err++;
			break;
		default:
			e->other++;
		}
		ibv_ack_async_event(&ev);
	}
}

static const char *state_name(struct ibv_qp *qp)
{
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;

	if (ibv_query_qp(qp, &a, IBV_QP_STATE, &ia))
		return "query-failed";
	switch (a.qp_state) {
	case IBV_QPS_RTS:
		return "RTS";
	case IBV_QPS_ERR:
		return "ERR";
	case IBV_QPS_SQE:
		return "SQE";
	default:
		return "other";
	}
}

/* Polls everything in cq for `secs`: count, and failures. */
static int poll_all(struct ibv_cq *cq, double secs, int *bad)
{
	struct ibv_wc wc[32];
	int total = 0;

	for (double end = now_s() + secs; now_s() < end;) {
		int n = ibv_poll_cq(cq, 32, wc);
		if (n < 0)
			return -1;
		for (int i = 0; i < n; i++)
			if (wc[i].status != IBV_WC_SUCCESS)
				(*bad)++;
		total += n;
	}
	return total;
}

/* side "send": the send CQ is the small one (signaled RDMA writes);
 * side "recv": the receive CQ is (sends into posted receives). */
static void cq_overflow(const char *side)
{
	int recv_side = !strcmp(side, "recv");
	struct ibv_cq *small = mkcq(ctx, 8), *big = mkcq(ctx, 1024);
	struct ibv_qp *a, *b;
	struct evlog e = { 0 };
	int posted = 0, n = 200, bad = 0, polled, polled_big, bad_big = 0, rc = 0;
	char name[64], x[400];

	if (recv_side)
		mkpair(pd, big, small, NULL, 256, &a, &b);
	else
		mkpair(pd, small, big, NULL, 256, &a, &b);
	for (int i = 0; i < n && !rc; i++) {
		if (recv_side) {
			rc = post_recv1(b, 1000 + i, buf + 65536, 64, mr->lkey);
			rc = rc ? rc : post_send1(a, i, buf, 64, mr->lkey);
		} else {
			rc = post_write(a, i, buf, 64, mr->lkey, (uintptr_t)buf + 4096, mr->rkey, 1);
		}
		posted += !rc;
	}
	gather(&e, 2);
	polled = poll_all(small, 0.5, &bad);
	polled_big = poll_all(big, 0.5, &bad_big);
	snprintf(x, sizeof(x),
		 "cqe=%d posted=%d post_stopped_at=%s polled_small=%d bad_small=%d polled_big=%d bad_big=%d cq_err_events=%d qp_fatal=%d qp_req_err=%d qp_access_err=%d state_a=%s state_b=%s",
		 small->cqe, posted, tokn(rc), polled, bad, polled_big, bad_big, e.cq_err, e.qp_fatal, e.qp_req_err, e.qp_access_err,
		 state_name(a), state_name(b));
	snprintf(name, sizeof(name), "cq_overflow.%s.cq_err_event", side);
	report(name, "yes", yesno(e.cq_err >= 1 && e.cq == small), x);
	snprintf(name, sizeof(name), "cq_overflow.%s.events", side);
	snprintf(x, sizeof(x), "cq_err=%d,qp_fatal=%d,qp_req_err=%d,qp_access_err=%d", e.cq_err > 0, e.qp_fatal, e.qp_req_err,
		 e.qp_access_err);
	/* What 6.1's rxe reports: a CQ_ERR for each completion that did not fit
	 * (counted in the figures), no QP event. A full send CQ drops the
	 * completion and the QPs stay in RTS; a full receive CQ moves the
	 * receiving QP to ERR. */
	report(name, "cq_err=1,qp_fatal=0,qp_req_err=0,qp_access_err=0", x,
	       NULL);
	snprintf(name, sizeof(name), "cq_overflow.%s.qp_states", side);
	snprintf(x, sizeof(x), "a=%s,b=%s", state_name(a), state_name(b));
	report(name, recv_side ? "a=RTS,b=ERR" : "a=RTS,b=RTS", x, NULL);
	snprintf(name, sizeof(name), "cq_overflow.%s.destroy", side);
	rc = ibv_destroy_qp(a);
	rc = rc ? rc : ibv_destroy_qp(b);
	rc = rc ? rc : ibv_destroy_cq(small);
	rc = rc ? rc : ibv_destroy_cq(big);
	report(name, "ok", tokn(rc), NULL);
}

static int to_err(struct ibv_qp *qp)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_ERR };

	return ibv_modify_qp(qp, &a, IBV_QP_STATE);
}

/* Every wr_id in [0, n) exactly once, all flushed. */
static void flush(void)
{
	enum { NS = 100, NR = 120 };
	struct ibv_cq *scq = mkcq(ctx, 512), *rcq = mkcq(ctx, 512);
	struct ibv_qp *a = mkqp(pd, scq, rcq, NULL, 128), *b = mkqp(pd, scq, rcq, NULL, 128);
	struct ibv_qp *deaf = mkqp(pd, scq, rcq, NULL, 4);
	int seen_s[NS] = { 0 }, seen_r[NR] = { 0 }, flushed_s = 0, flushed_r = 0, other = 0, dup = 0, unknown = 0, after = 0;
	int rc = 0;
	struct ibv_wc wc[16];
	char x[300];

	/* a sends to `deaf`, which stays in RESET: nothing ever answers, so the
	 * sends stay outstanding (retrying) until a goes to ERR. b holds receives
	 * nothing consumes. */
	if (rc_connect(a, deaf->qp_num) || rc_connect(b, a->qp_num))
		die("connect");
	for (int i = 0; i < NR && !rc; i++)
		rc = post_recv1(b, 10000 + i, buf + 65536, 64, mr->lkey);
	for (int i = 0; i < NS && !rc; i++)
		rc = post_send1(a, i, buf, 64, mr->lkey);
	if (rc)
		die("post");
	usleep(100000);
	int ea = to_err(a), eb = to_err(b);
	for (double end = now_s() + 5; now_s() < end;) {
		for (struct ibv_cq *cq = scq;; cq = rcq) {
			int n = ibv_poll_cq(cq, 16, wc);
			for (int i = 0; i < n; i++) {
				uint64_t id = wc[i].wr_id;
				int *seen = id >= 10000 ? seen_r : seen_s;
				uint64_t k = id >= 10000 ? id - 10000 : id;
				if (k >= (uint64_t)(id >= 10000 ? NR : NS)) {
					unknown++;
					continue;
				}
				if (seen[k]++)
					dup++;
				if (wc[i].status == IBV_WC_WR_FLUSH_ERR)
					(id >= 10000 ? flushed_r++ : flushed_s++);
				else
					other++;
			}
			if (cq == rcq)
				break;
		}
		if (flushed_s + flushed_r + other >= NS + NR)
			break;
	}
	/* Nothing more may come. */
	after = poll_all(scq, 0.5, &other) + poll_all(rcq, 0.5, &other);
	int missing = 0;
	for (int i = 0; i < NS; i++)
		missing += !seen_s[i];
	for (int i = 0; i < NR; i++)
		missing += !seen_r[i];
	snprintf(x, sizeof(x), "modify_a=%s modify_b=%s sends=%d recvs=%d flushed_sends=%d flushed_recvs=%d other_status=%d duplicates=%d missing=%d unknown=%d after=%d",
		 tokn(ea), tokn(eb), NS, NR, flushed_s, flushed_r, other, dup, missing, unknown, after);
	report("flush.every_wr_once", "yes", yesno(!dup && !missing && !unknown && !after && !ea && !eb), x);
	snprintf(x, sizeof(x), "sends=%d,recvs=%d", flushed_s, flushed_r);
	report("flush.counts", "sends=100,recvs=120", x, NULL);
	/* Posting to a QP in ERR: the send is flushed at once (its doorbell
	 * reaches the kernel). A receive posted in ERR is never completed by
	 * 6.1's rxe: it flushes the receive queue when the QP enters ERR, and a
	 * user QP's post_recv never enters the kernel. */
	int ps = post_send1(a, 5000, buf, 64, mr->lkey), pr = post_recv1(b, 15000, buf + 65536, 64, mr->lkey);
	int n_s = 0, n_r = 0, fl = 0;
	struct ibv_wc w;
	for (double end = now_s() + 1.5; now_s() < end && n_s + n_r < 2;) {
		if (ibv_poll_cq(scq, 1, &w) == 1) {
			n_s++;
			fl += w.wr_id == 5000 && w.status == IBV_WC_WR_FLUSH_ERR;
		}
		if (ibv_poll_cq(rcq, 1, &w) == 1) {
			n_r++;
			fl += w.wr_id == 15000 && w.status == IBV_WC_WR_FLUSH_ERR;
		}
	}
	n_s += poll_all(scq, 0.3, &other);
	n_r += poll_all(rcq, 0.3, &other);
	snprintf(x, sizeof(x), "post_send=%s,post_recv=%s,send_wcs=%d,recv_wcs=%d,flushed=%d", tokn(ps), tokn(pr), n_s, n_r, fl);
	report("flush.post_in_err", "post_send=ok,post_recv=ok,send_wcs=1,recv_wcs=0,flushed=1", x, NULL);
	rc = ibv_destroy_qp(a);
	rc = rc ? rc : ibv_destroy_qp(b);
	rc = rc ? rc : ibv_destroy_qp(deaf);
	rc = rc ? rc : ibv_destroy_cq(scq);
	rc = rc ? rc : ibv_destroy_cq(rcq);
	report("flush.destroy", "ok", tokn(rc), NULL);
}

static void srq_limit(void)
{
	struct ibv_cq *cq = mkcq(ctx, 256);
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = 32, .max_sge = 1 } };
	struct ibv_srq *srq = ibv_create_srq(pd, &sa);
	struct ibv_srq_attr at = { .srq_limit = 5 };
	struct ibv_qp *a, *b;
	struct evlog e = { 0 }, e2 = { 0 };
	int rc = 0, bad = 0, got;
	char x[200];

	if (!srq)
		die("create_srq");
	mkpair(pd, cq, cq, srq, 32, &a, &b);
	for (int i = 0; i < 10 && !rc; i++)
		rc = post_srq1(srq, 100 + i, buf + 65536, 64, mr->lkey);
	int arm = ibv_modify_srq(srq, &at, IBV_SRQ_LIMIT);
	/* Consume 4: 6 left, above the limit: no event. */
	for (int i = 0; i < 4; i++)
		rc |= post_send1(a, i, buf, 64, mr->lkey);
	got = poll_all(cq, 1, &bad);
	gather(&e, 1);
	snprintf(x, sizeof(x), "arm=%s wcs=%d bad=%d", tokn(arm), got, bad);
	report("srq_limit.above_limit_events", "0", num(e.srq_limit), x);
	/* Consume 2 more: 4 left, below the limit of 5. */
	for (int i = 4; i < 6; i++)
		rc |= post_send1(a, i, buf, 64, mr->lkey);
	got = poll_all(cq, 1, &bad);
	gather(&e2, 1);
	struct ibv_srq_attr q = { 0 };
	int qrc = ibv_query_srq(srq, &q);
	snprintf(x, sizeof(x), "posts=%s wcs=%d bad=%d srq_limit_events=%d same_srq=%s limit_after=%u query=%s", tokn(rc), got, bad,
		 e2.srq_limit, yesno(e2.srq == srq), q.srq_limit, tokn(qrc));
	snprintf(x + strlen(x), sizeof(x) - strlen(x), " events=%d", e2.srq_limit);
	report("srq_limit.below_limit_event", "yes", yesno(e2.srq_limit == 1 && e2.srq == srq), x);
	report("srq_limit.limit_after_event", "0", num((int)q.srq_limit), NULL);
	rc = ibv_destroy_qp(a);
	rc = rc ? rc : ibv_destroy_qp(b);
	rc = rc ? rc : ibv_destroy_srq(srq);
	rc = rc ? rc : ibv_destroy_cq(cq);
	report("srq_limit.destroy", "ok", tokn(rc), NULL);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2)
		gid_index = atoi(argv[2]);
	ctx = open_dev(argc > 1 ? argv[1] : "rxe0");
	if (!ctx)
		die("open_dev");
	fcntl(ctx->async_fd, F_SETFL, fcntl(ctx->async_fd, F_GETFL) | O_NONBLOCK);
	buf = aligned_alloc(4096, BUF);
	memset(buf, 0, BUF);
	pd = ibv_alloc_pd(ctx);
	mr = pd ? ibv_reg_mr(pd, buf, BUF, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE) : NULL;
	if (!mr)
		die("pd/mr");
	cq_overflow("send");
	cq_overflow("recv");
	flush();
	srq_limit();
	ibv_dereg_mr(mr);
	ibv_dealloc_pd(pd);
	report("close.close_device", "ok", tokn(ibv_close_device(ctx)), NULL);
	return 0;
}
