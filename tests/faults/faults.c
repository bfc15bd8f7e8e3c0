/*
 * Fault injection (RXE_RS_FAULTS, README "Fault injection"): one scenario
 * per run, since the library reads the variable when it loads.
 * tests/guest/faults.sh sets the variable for each scenario and runs it
 * through ours and through the stock librxe, which ignores it: the stock
 * run shows the same calls without faults.
 *
 *   post_send   RXE_RS_FAULTS=post_send:enomem:every=2
 *               four calls (one WR, two WRs, two WRs, one WR): the 2nd and
 *               4th fail with ENOMEM, bad_wr the first WR, nothing posted
 *   recv        post_recv:einval:nth=1;post_srq_recv:enomem:nth=2
 *   completion  poll_cq:status=retry_exc_err:nth=1
 *               the first send completion polled carries RETRY_EXC_ERR, the
 *               QP is then in the error state, and the next WR flushes
 *   qpn_filter  poll_cq:status=rem_access_err:qpn=0x1 (no such QP): none
 *   create      reg_mr:efault:nth=1;create_cq:enomem:nth=1;create_qp:enomem:nth=1
 *   probability post_send:enomem:p=0.5:seed=3: 40 calls; prints which failed
 *               (the guest runs it twice: the same calls must fail)
 *   events      poll_cq:event=cq_err:nth=1;post_send:event=qp_fatal:nth=2;
 *               post_recv:event=port_err:nth=5
 *               each event is read by ibv_get_async_event with its element,
 *               the QP is in the error state, its WR flushes; then a real
 *               kernel event (SRQ limit reached) arrives through the relay
 *               too, and every object is destroyed without hanging
 *   ex_status   poll_cq:status=rem_access_err:nth=1, read by the extended
 *               polling (ibv_start_poll)
 *   delay       poll_cq:delay=300: a completion is seen no sooner than 300 ms
 *               after its post, by ibv_poll_cq, by the extended polling, and
 *               by an application waiting for completion events
 *   any other scenario name: a few ordinary calls (for a bad specification)
 *
 * Prints `case <scenario>.<aspect> expect=<token> got=<token>` with the
 * expectation for ours; tests/vm/faults.rs checks ours and shows stock.
 *
 * usage: faults <device> <gid_index> <scenario>
 */
#include "../stress/stress.h"
#include <poll.h>
#include <time.h>

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_mr *mr;
static char *buf;
static const char *scenario;

#define BUF 65536

static void aspect(const char *name, const char *expect, const char *got)
{
	char full[128];

	snprintf(full, sizeof(full), "%s.%s", scenario, name);
	report(full, expect, got, NULL);
}

/* "first", "second", "null" or "other": which WR bad_wr names. */
static const char *which(void *bad, void *first, void *second)
{
	return !bad ? "null" : bad == first ? "first" : bad == second ? "second" : "other";
}

/* Sends completed successfully on cq within a short time. */
static int count_ok(struct ibv_cq *cq, int want)
{
	struct ibv_wc wc;
	int ok = 0;

	while (ok < want && poll_one(cq, &wc, 3) == 1)
		ok += wc.status == IBV_WC_SUCCESS;
	return ok;
}

static void post_send_scenario(void)
{
	struct ibv_cq *scq = mkcq(ctx, 64), *rcq = mkcq(ctx, 64);
	struct ibv_qp *a, *b;
	struct ibv_sge s = { (uintptr_t)buf, 64, mr->lkey };
	struct ibv_send_wr w[2], *bad;
	const char *expect[4] = { "ok", "errno=12", "ok", "errno=12" };
	const char *bad_expect[4] = { "null", "first", "null", "first" };
	int nwr[4] = { 1, 2, 2, 1 }, posted = 0;

	mkpair(pd, scq, rcq, NULL, 16, &a, &b);
	for (int i = 0; i < 8; i++)
		if (post_recv1(b, i, buf + 4096, 64, mr->lkey))
			die("post_recv");
	for (int call = 0; call < 4; call++) {
		char name[32];
		int rc;

		memset(w, 0, sizeof(w));
		for (int i = 0; i < 2; i++) {
			w[i] = (struct ibv_send_wr){ .wr_id = call * 2 + i, .sg_list = &s, .num_sge = 1,
				.opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED };
		}
		if (nwr[call] == 2)
			w[0].next = &w[1];
		bad = NULL;
		rc = ibv_post_send(a, w, &bad);
		snprintf(name, sizeof(name), "call%d", call + 1);
		aspect(name, expect[call], tokn(rc));
		snprintf(name, sizeof(name), "call%d_bad_wr", call + 1);
		aspect(name, bad_expect[call], which(rc ? bad : NULL, &w[0], &w[1]));
		if (!rc)
			posted += nwr[call];
	}
	aspect("posted", "3", num(posted));
	aspect("sends_completed", "3", num(count_ok(scq, posted)));
	aspect("recvs_completed", "3", num(count_ok(rcq, posted)));
}

static void recv_scenario(void)
{
	struct ibv_cq *cq = mkcq(ctx, 64);
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = 16, .max_sge = 1 } };
	struct ibv_srq *srq = ibv_create_srq(pd, &sa);
	struct ibv_qp *q = mkqp(pd, cq, cq, NULL, 16);

	if (!srq || rc_connect(q, q->qp_num))
		die("setup");
	aspect("post_recv1", "errno=22", tokn(post_recv1(q, 1, buf, 64, mr->lkey)));
	aspect("post_recv2", "ok", tokn(post_recv1(q, 2, buf, 64, mr->lkey)));
	aspect("post_srq_recv1", "ok", tokn(post_srq1(srq, 1, buf, 64, mr->lkey)));
	aspect("post_srq_recv2", "errno=12", tokn(post_srq1(srq, 2, buf, 64, mr->lkey)));
	aspect("post_srq_recv3", "ok", tokn(post_srq1(srq, 3, buf, 64, mr->lkey)));
}

static void completion_scenario(int filtered)
{
	struct ibv_cq *scq = mkcq(ctx, 64), *rcq = mkcq(ctx, 64);
	struct ibv_qp *a, *b;
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;
	struct ibv_wc wc;
	char st[64];

	mkpair(pd, scq, rcq, NULL, 16, &a, &b);
	for (int i = 0; i < 4; i++)
		if (post_recv1(b, i, buf + 4096, 64, mr->lkey))
			die("post_recv");
	aspect("post1", "ok", tokn(post_send1(a, 1, buf, 64, mr->lkey)));
	snprintf(st, sizeof(st), "%s", poll_one(scq, &wc, 5) ? ibv_wc_status_str(wc.status) : "none");
	for (char *c = st; *c; c++)
		if (*c == ' ')
			*c = '_';
	aspect("completion1", filtered ? "success" : "transport_retry_counter_exceeded", st);
	aspect("recv1", "success", poll_one(rcq, &wc, 5) && wc.status == IBV_WC_SUCCESS ? "success" : "other");
	if (ibv_query_qp(a, &attr, IBV_QP_STATE, &init))
		die("query_qp");
	aspect("qp_state", filtered ? "rts" : "err", attr.qp_state == IBV_QPS_ERR ? "err" :
	       attr.qp_state == IBV_QPS_RTS ? "rts" : "other");
	aspect("post2", "ok", tokn(post_send1(a, 2, buf, 64, mr->lkey)));
	snprintf(st, sizeof(st), "%s", poll_one(scq, &wc, 5) ? ibv_wc_status_str(wc.status) : "none");
	for (char *c = st; *c; c++)
		if (*c == ' ')
			*c = '_';
	aspect("completion2", filtered ? "success" : "Work_Request_Flushed_Error", st);
}

static void create_scenario(void)
{
	struct ibv_mr *m;
	struct ibv_cq *cq;
	struct ibv_qp *q;
	struct ibv_qp_init_attr ia = { .qp_type = IBV_QPT_RC, .cap = { .max_send_wr = 4, .max_recv_wr = 4,
		.max_send_sge = 1, .max_recv_sge = 1 } };

	errno = 0;
	m = ibv_reg_mr(pd, buf, 4096, IBV_ACCESS_LOCAL_WRITE);
	aspect("reg_mr1", "errno=14", m ? "ok" : tokn(errno));
	m = ibv_reg_mr(pd, buf, 4096, IBV_ACCESS_LOCAL_WRITE);
	aspect("reg_mr2", "ok", m ? "ok" : tokn(errno));
	errno = 0;
	cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
	aspect("create_cq1", "errno=12", cq ? "ok" : tokn(errno));
	if (!cq)
		cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
	else
		ibv_destroy_cq(cq), cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
	aspect("create_cq2", "ok", cq ? "ok" : tokn(errno));
	if (!cq)
		return;
	ia.send_cq = ia.recv_cq = cq;
	errno = 0;
	q = ibv_create_qp(pd, &ia);
	aspect("create_qp1", "errno=12", q ? "ok" : tokn(errno));
	if (q)
		ibv_destroy_qp(q);
	q = ibv_create_qp(pd, &ia);
	aspect("create_qp2", "ok", q ? "ok" : tokn(errno));
}

static void probability_scenario(void)
{
	struct ibv_cq *scq = mkcq(ctx, 128), *rcq = mkcq(ctx, 128);
	struct ibv_qp *a, *b;
	char failed[64] = "";
	int n = 0;

	mkpair(pd, scq, rcq, NULL, 64, &a, &b);
	for (int i = 0; i < 40; i++)
		if (post_recv1(b, i, buf + 4096, 64, mr->lkey))
			die("post_recv");
	for (int i = 0; i < 40; i++) {
		int rc = post_send1(a, i, buf, 64, mr->lkey);
		failed[i] = rc == ENOMEM ? 'x' : rc ? '?' : '.';
		n += rc == ENOMEM;
	}
	/* The calls that failed (x), as a pattern the two runs must share. */
	char extra[80];
	snprintf(extra, sizeof(extra), "pattern=%s", failed);
	report("probability.calls", "seen", "seen", extra);
	aspect("failed_between_10_and_30", "yes", yesno(n >= 10 && n <= 30));
	aspect("every_posted_send_completed", "yes", yesno(count_ok(scq, 40 - n) == 40 - n));
}

/* The next asynchronous event as "<type>:<element>" (element: the QP/CQ/SRQ
 * named by the caller, the port number, or "other"), or "none" after secs. */
static const char *next_event(double secs, struct ibv_qp *qp, struct ibv_cq *cq, struct ibv_srq *srq)
{
	static char out[96];
	char port[16];
	struct pollfd p = { .fd = ctx->async_fd, .events = POLLIN };
	struct ibv_async_event ev;
	const char *el = "other";

	if (poll(&p, 1, (int)(secs * 1000)) != 1 || ibv_get_async_event(ctx, &ev))
		return "none";
	switch (ev.event_type) {
	case IBV_EVENT_CQ_ERR:
		el = ev.element.cq == cq ? "cq" : "other";
		break;
	case IBV_EVENT_QP_FATAL:
	case IBV_EVENT_QP_REQ_ERR:
	case IBV_EVENT_QP_ACCESS_ERR:
	case IBV_EVENT_QP_LAST_WQE_REACHED:
	case IBV_EVENT_COMM_EST:
		el = ev.element.qp == qp ? "qp" : "other";
		break;
	case IBV_EVENT_SRQ_LIMIT_REACHED:
	case IBV_EVENT_SRQ_ERR:
		el = ev.element.srq == srq ? "srq" : "other";
		break;
	default:
		snprintf(port, sizeof(port), "port%d", ev.element.port_num);
		el = port;
		break;
	}
	snprintf(out, sizeof(out), "%s:%s", ibv_event_type_str(ev.event_type), el);
	for (char *c = out; *c; c++)
		if (*c == ' ')
			*c = '_';
	ibv_ack_async_event(&ev);
	return out;
}

static const char *status_tok(struct ibv_cq *cq)
{
	static char st[64];
	struct ibv_wc wc;

	snprintf(st, sizeof(st), "%s", poll_one(cq, &wc, 5) ? ibv_wc_status_str(wc.status) : "none");
	for (char *c = st; *c; c++)
		if (*c == ' ')
			*c = '_';
	return st;
}

static const char *qp_state_tok(struct ibv_qp *q)
{
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;

	if (ibv_query_qp(q, &attr, IBV_QP_STATE, &init))
		return "query_failed";
	return attr.qp_state == IBV_QPS_ERR ? "err" : attr.qp_state == IBV_QPS_RTS ? "rts" : "other";
}

static void events_scenario(void)
{
	struct ibv_cq *scq = mkcq(ctx, 64), *rcq = mkcq(ctx, 64), *cq2 = mkcq(ctx, 64);
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = 16, .max_sge = 1 } };
	struct ibv_srq *srq = ibv_create_srq(pd, &sa);
	struct ibv_srq_attr limit = { .srq_limit = 3 };
	struct ibv_qp *a, *b, *c, *d;

	if (!srq)
		die("create_srq");
	/* Whatever the provider, nothing may hang: a destroy waiting for an
	 * event count that can never match is a failure, not a stall. */
	alarm(40);
	mkpair(pd, scq, rcq, NULL, 16, &a, &b);
	for (int i = 0; i < 4; i++)
		if (post_recv1(b, i, buf + 4096, 64, mr->lkey))
			die("post_recv");
	aspect("post1", "ok", tokn(post_send1(a, 1, buf, 64, mr->lkey)));
	aspect("completion1", "success", status_tok(scq));
	aspect("event1", "CQ_error:cq", next_event(3, a, scq, srq));
	aspect("post2", "ok", tokn(post_send1(a, 2, buf, 64, mr->lkey)));
	aspect("event2", "local_work_queue_catastrophic_error:qp", next_event(3, a, scq, srq));
	aspect("qp_state", "err", qp_state_tok(a));
	aspect("completion2", "Work_Request_Flushed_Error", status_tok(scq));
	aspect("post_recv5", "ok", tokn(post_recv1(b, 5, buf + 4096, 64, mr->lkey)));
	aspect("event3", "port_error:port1", next_event(3, a, scq, srq));
	aspect("no_more", "none", next_event(0.5, a, scq, srq));
	/* A kernel event through the relay: the SRQ's limit. */
	mkpair(pd, cq2, cq2, srq, 16, &c, &d);
	for (int i = 0; i < 4; i++)
		if (post_srq1(srq, i, buf + 8192, 64, mr->lkey))
			die("post_srq_recv");
	aspect("arm_limit", "ok", tokn(ibv_modify_srq(srq, &limit, IBV_SRQ_LIMIT)));
	for (int i = 0; i < 2; i++)
		if (post_send1(c, 10 + i, buf, 64, mr->lkey))
			die("post_send");
	aspect("kernel_event", "SRQ_limit_reached:srq", next_event(5, a, scq, srq));
	/* Each destroy waits for its object's acknowledged events to match the
	 * kernel's count: the injected ones must not break that. */
	aspect("destroy_qp", "ok", tokn(ibv_destroy_qp(a)));
	aspect("destroy_qp_b", "ok", tokn(ibv_destroy_qp(b)));
	aspect("destroy_cq", "ok", tokn(ibv_destroy_cq(scq)));
	alarm(0);
}

static void ex_status_scenario(void)
{
	struct ibv_cq_init_attr_ex ca = { .cqe = 64, .wc_flags = IBV_WC_EX_WITH_BYTE_LEN | IBV_WC_EX_WITH_QP_NUM };
	struct ibv_cq_ex *cq = ibv_create_cq_ex(ctx, &ca);
	struct ibv_poll_cq_attr pa = {};
	struct ibv_qp *a, *b;
	char st[64] = "none";
	int rc = ENOENT;

	if (!cq)
		die("create_cq_ex");
	mkpair(pd, ibv_cq_ex_to_cq(cq), ibv_cq_ex_to_cq(cq), NULL, 16, &a, &b);
	if (post_recv1(b, 1, buf + 4096, 64, mr->lkey) || post_send1(a, 7, buf, 64, mr->lkey))
		die("post");
	for (int i = 0; i < 5000 && rc == ENOENT; i++) {
		rc = ibv_start_poll(cq, &pa);
		if (rc == ENOENT)
			usleep(1000);
	}
	/* The first completion polled: the send's or the receive's. */
	if (!rc) {
		snprintf(st, sizeof(st), "%s", ibv_wc_status_str(cq->status));
		ibv_end_poll(cq);
	}
	for (char *c = st; *c; c++)
		if (*c == ' ')
			*c = '_';
	aspect("first", "remote_access_error", st);
}

static double now_ms(void)
{
	return now_s() * 1e3;
}

/* Milliseconds from a post to its completion, by the given way of waiting. */
static void delay_scenario(void)
{
	struct ibv_comp_channel *ch = ibv_create_comp_channel(ctx);
	struct ibv_cq_init_attr_ex ca = { .cqe = 64, .wc_flags = IBV_WC_EX_WITH_BYTE_LEN };
	struct ibv_cq_ex *xcq = ibv_create_cq_ex(ctx, &ca);
	struct ibv_cq *scq = mkcq(ctx, 64), *rcq = mkcq(ctx, 64), *ecq, *ev_cq;
	struct ibv_poll_cq_attr pa = {};
	struct ibv_qp *a, *b, *c, *d, *e, *f;
	struct ibv_wc wc;
	void *ev_ctx;
	double t0, ms[3];
	char extra[96];

	if (!ch || !xcq || !(ecq = ibv_create_cq(ctx, 64, NULL, ch, 0)))
		die("setup");
	mkpair(pd, scq, rcq, NULL, 16, &a, &b);
	mkpair(pd, ibv_cq_ex_to_cq(xcq), rcq, NULL, 16, &c, &d);
	mkpair(pd, ecq, rcq, NULL, 16, &e, &f);
	for (int i = 0; i < 3; i++)
		if (post_recv1(b, i, buf + 4096, 64, mr->lkey) || post_recv1(d, i, buf + 4096, 64, mr->lkey) ||
		    post_recv1(f, i, buf + 4096, 64, mr->lkey))
			die("post_recv");
	/* ibv_poll_cq, busy. */
	t0 = now_ms();
	if (post_send1(a, 1, buf, 64, mr->lkey))
		die("post_send");
	while (ibv_poll_cq(scq, 1, &wc) == 0 && now_ms() - t0 < 5000)
		;
	ms[0] = now_ms() - t0;
	/* The extended polling, busy. */
	t0 = now_ms();
	if (post_send1(c, 2, buf, 64, mr->lkey))
		die("post_send");
	while (ibv_start_poll(xcq, &pa) == ENOENT && now_ms() - t0 < 5000)
		;
	ms[1] = now_ms() - t0;
	if (ms[1] < 5000)
		ibv_end_poll(xcq);
	/* Completion events: arm, post, wait, acknowledge, re-arm, poll once. */
	if (ibv_req_notify_cq(ecq, 0))
		die("req_notify_cq");
	t0 = now_ms();
	if (post_send1(e, 3, buf, 64, mr->lkey))
		die("post_send");
	if (ibv_get_cq_event(ch, &ev_cq, &ev_ctx))
		die("get_cq_event");
	ibv_ack_cq_events(ev_cq, 1);
	if (ibv_req_notify_cq(ecq, 0))
		die("req_notify_cq");
	ms[2] = ibv_poll_cq(ecq, 1, &wc) == 1 ? now_ms() - t0 : 1e9;
	snprintf(extra, sizeof(extra), "poll_cq_ms=%.0f ex_poll_ms=%.0f events_ms=%.0f", ms[0], ms[1], ms[2]);
	report("delay.figures", "seen", "seen", extra);
	aspect("poll_cq_held_300ms", "yes", yesno(ms[0] >= 300 && ms[0] < 5000));
	aspect("ex_poll_held_300ms", "yes", yesno(ms[1] >= 300 && ms[1] < 5000));
	aspect("events_held_300ms", "yes", yesno(ms[2] >= 300 && ms[2] < 5000));
}

/* A few ordinary calls: under a bad specification, none may fail. */
static void plain_scenario(void)
{
	struct ibv_cq *scq = mkcq(ctx, 16), *rcq = mkcq(ctx, 16);
	struct ibv_qp *a, *b;

	mkpair(pd, scq, rcq, NULL, 16, &a, &b);
	aspect("post_recv", "ok", tokn(post_recv1(b, 1, buf + 4096, 64, mr->lkey)));
	aspect("post_send", "ok", tokn(post_send1(a, 1, buf, 64, mr->lkey)));
	aspect("completed", "1", num(count_ok(scq, 1)));
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: faults <device> <gid_index> <scenario>\n");
		return 2;
	}
	gid_index = atoi(argv[2]);
	scenario = argv[3];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!(ctx = open_dev(argv[1])))
		die("open device");
	buf = aligned_alloc(4096, BUF);
	/* The create scenario's first reg_mr is the injected one: register
	 * the working buffer after it there. */
	if (!(pd = ibv_alloc_pd(ctx)) || !buf)
		die("setup");
	if (!strcmp(scenario, "create")) {
		create_scenario();
		printf("finished\n");
		return 0;
	}
	if (!(mr = ibv_reg_mr(pd, buf, BUF, IBV_ACCESS_LOCAL_WRITE)))
		die("reg_mr");
	if (!strcmp(scenario, "post_send"))
		post_send_scenario();
	else if (!strcmp(scenario, "recv"))
		recv_scenario();
	else if (!strcmp(scenario, "completion"))
		completion_scenario(0);
	else if (!strcmp(scenario, "qpn_filter"))
		completion_scenario(1);
	else if (!strcmp(scenario, "probability"))
		probability_scenario();
	else if (!strcmp(scenario, "events"))
		events_scenario();
	else if (!strcmp(scenario, "ex_status"))
		ex_status_scenario();
	else if (!strcmp(scenario, "delay"))
		delay_scenario();
	else
		plain_scenario();
	printf("finished\n");
	return 0;
}
