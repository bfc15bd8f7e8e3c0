/*
 * Data-path edge cases and threads, in one process on one rxe device: two RC
 * QPs connected to each other (rxe loops traffic to its own GID back).
 * Each checked outcome states, beside the case, what a correct provider
 * (ours) gets from the kernel's rxe, and prints one line:
 *   case <case>.<aspect> expect=<token> got=<token>
 * Tokens: ok or errno=<n> (a verb's return), which WR bad_wr points at
 * (first, second, later, it, null, other), yes/no, counts as <what>=<n>.
 * tests/vm.rs checks got against expect for ours, and records the stock
 * librxe's outcomes next to ours; where librxe deliberately differs (README,
 * "Known differences") vm.rs says what librxe gets instead.
 *
 * usage: edge [device] [gid_index]
 */
#include <errno.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/verbs_setup.h"

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static int gid_index = 1;
static union ibv_gid gid;
static char *buf;
/* Capabilities the kernel granted the last QP pair (it rounds requests up). */
static struct ibv_qp_cap granted;
static struct ibv_mr *mr;
#define BUF_SIZE (1 << 20)

static void die(const char *what)
{
	fprintf(stderr, "FATAL: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Tokens live in a small ring of buffers: one report() takes at most two. */
static const char *fmt(const char *f, int n)
{
	static char ring[8][48];
	static unsigned next;
	char *b = ring[next++ % 8];

	snprintf(b, sizeof(ring[0]), f, n);
	return b;
}

/* A verb's return value (0 or an errno) as a token. */
static const char *ret_tok(int e)
{
	return e ? fmt("errno=%d", e) : "ok";
}

static const char *yes(int cond)
{
	return cond ? "yes" : "no";
}

static void report(const char *name, const char *aspect, const char *expect, const char *got)
{
	printf("case %s.%s expect=%s got=%s\n", name, aspect, expect, got);
}

struct pair {
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *a, *b;
	struct ibv_srq *srq;
};

/* An RC QP to RTS towards remote_qpn on our own GID. */
static void connect_rc(struct ibv_qp *qp, uint32_t remote_qpn)
{
	if ((errno = rc_loopback(qp, remote_qpn, &gid, gid_index, IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)))
		die("connect RC");
}

static void make_pair(struct pair *p, int send_wr, int recv_wr, int use_srq, int connect)
{
	struct ibv_qp_init_attr ia = { 0 };

	p->scq = ibv_create_cq(ctx, 4096, NULL, NULL, 0);
	p->rcq = ibv_create_cq(ctx, 4096, NULL, NULL, 0);
	if (!p->scq || !p->rcq)
		die("create_cq");
	p->srq = NULL;
	if (use_srq) {
		struct ibv_srq_init_attr sa = { .attr = { .max_wr = 1024, .max_sge = 1 } };
		p->srq = ibv_create_srq(pd, &sa);
		if (!p->srq)
			die("create_srq");
	}
	ia.send_cq = p->scq;
	ia.recv_cq = p->rcq;
	ia.srq = p->srq;
	ia.qp_type = IBV_QPT_RC;
	ia.cap.max_send_wr = send_wr;
	ia.cap.max_recv_wr = recv_wr;
	ia.cap.max_send_sge = 2;
	ia.cap.max_recv_sge = 2;
	ia.cap.max_inline_data = 64;
	p->a = ibv_create_qp(pd, &ia);
	p->b = ibv_create_qp(pd, &ia);
	if (!p->a || !p->b)
		die("create_qp");
	granted = ia.cap;
	if (connect) {
		connect_rc(p->a, p->b->qp_num);
		connect_rc(p->b, p->a->qp_num);
	}
}

static void free_pair(struct pair *p)
{
	ibv_destroy_qp(p->a);
	ibv_destroy_qp(p->b);
	if (p->srq)
		ibv_destroy_srq(p->srq);
	ibv_destroy_cq(p->scq);
	ibv_destroy_cq(p->rcq);
}

static int drain(struct ibv_cq *cq, int want, int *errors)
{
	struct ibv_wc wc[16];
	int got = 0, spins = 0;

	while (got < want && spins < 20000000) {
		int n = ibv_poll_cq(cq, 16, wc);
		for (int i = 0; i < n; i++)
			if (wc[i].status != IBV_WC_SUCCESS)
				(*errors)++;
		got += n;
		spins++;
	}
	return got;
}

static void post_recvs(struct ibv_qp *qp, int n)
{
	for (int i = 0; i < n; i++) {
		struct ibv_sge s = { (uintptr_t)buf + BUF_SIZE / 2, 64, mr->lkey };
		struct ibv_recv_wr w = { .wr_id = i, .sg_list = &s, .num_sge = 1 }, *bad;
		if (ibv_post_recv(qp, &w, &bad))
			die("post_recv");
	}
}

/* Posts a two-WR list whose second WR is bad: the post fails with EINVAL,
 * bad_wr points at the second WR, and exactly one completion (the good WR)
 * arrives, without error. */
static void bad_second_wr(const char *name, void (*spoil)(struct ibv_send_wr *))
{
	struct pair p;
	struct ibv_sge s[3] = { { (uintptr_t)buf, 8, mr->lkey }, { (uintptr_t)buf + 8, 8, mr->lkey },
				{ (uintptr_t)buf + 16, 8, mr->lkey } };
	struct ibv_send_wr w[2], *bad = NULL;
	int errors = 0, ret, got;

	make_pair(&p, 16, 16, 0, 1);
	post_recvs(p.b, 4);
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 2; i++) {
		w[i].wr_id = i;
		w[i].sg_list = s;
		w[i].num_sge = 1;
		w[i].opcode = IBV_WR_SEND;
		w[i].send_flags = IBV_SEND_SIGNALED;
	}
	w[0].next = &w[1];
	spoil(&w[1]);
	ret = ibv_post_send(p.a, w, &bad);
	got = drain(p.scq, 1, &errors);
	/* Give a wrongly posted second WR time to complete too. */
	for (int i = 0; i < 200000; i++) {
		struct ibv_wc wc;
		got += ibv_poll_cq(p.scq, 1, &wc);
	}
	report(name, "ret", ret_tok(EINVAL), ret_tok(ret));
	report(name, "bad_wr", "second", bad == &w[1] ? "second" : bad == &w[0] ? "first" : bad ? "other" : "null");
	report(name, "completions", "completed=1", fmt("completed=%d", got));
	report(name, "wc_errors", "errors=0", fmt("errors=%d", errors));
	free_pair(&p);
}

static void spoil_sges(struct ibv_send_wr *w)
{
	static struct ibv_sge s[64];
	int n = granted.max_send_sge + 1;

	for (int i = 0; i < n && i < 64; i++)
		s[i] = (struct ibv_sge){ (uintptr_t)buf, 8, mr->lkey };
	w->sg_list = s;
	w->num_sge = n;
}
static void spoil_inline(struct ibv_send_wr *w) { static struct ibv_sge s; s = (struct ibv_sge){ (uintptr_t)buf, 4096, mr->lkey }; w->sg_list = &s; w->send_flags |= IBV_SEND_INLINE; }
static void spoil_atomic_align(struct ibv_send_wr *w) { w->opcode = IBV_WR_ATOMIC_FETCH_AND_ADD; w->wr.atomic.remote_addr = (uintptr_t)buf + 4; w->wr.atomic.rkey = mr->rkey; }

static void full_send_queue(void)
{
	struct pair p;
	struct ibv_sge s = { (uintptr_t)buf, 8, mr->lkey };
	struct ibv_send_wr w[64], *bad = NULL;
	int ret, idx = -1, errors = 0, got;

	make_pair(&p, 8, 64, 0, 1);
	post_recvs(p.b, 64);
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 64; i++) {
		w[i] = (struct ibv_send_wr){ .wr_id = i, .sg_list = &s, .num_sge = 1,
			.opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED, .next = i < 63 ? &w[i + 1] : NULL };
	}
	ret = ibv_post_send(p.a, w, &bad);
	if (bad)
		idx = bad - w;
	got = drain(p.scq, idx > 0 ? idx : 0, &errors);
	/* 64 WRs on a queue of 8 (as the kernel rounds it): the post fails with
	 * ENOMEM at some later WR (where depends on the rounding), and every WR
	 * before it completes. */
	report("full_send_queue", "ret", ret_tok(ENOMEM), ret_tok(ret));
	report("full_send_queue", "bad_wr", "later", idx > 0 ? "later" : idx == 0 ? "first" : "null");
	report("full_send_queue", "posted_completed", "all", got == idx ? "all" : fmt("completed=%d", got));
	report("full_send_queue", "wc_errors", "errors=0", fmt("errors=%d", errors));
	free_pair(&p);
}

static void full_recv_queue(void)
{
	struct pair p;
	struct ibv_sge s = { (uintptr_t)buf, 8, mr->lkey };
	struct ibv_recv_wr w[64], *bad = NULL;
	int ret;

	make_pair(&p, 8, 8, 0, 0);
	{
		struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .port_num = 1 };
		ibv_modify_qp(p.a, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
	}
	for (int i = 0; i < 64; i++)
		w[i] = (struct ibv_recv_wr){ .wr_id = i, .sg_list = &s, .num_sge = 1, .next = i < 63 ? &w[i + 1] : NULL };
	/* 64 receives on a queue of 8: ENOMEM at a later WR. */
	ret = ibv_post_recv(p.a, w, &bad);
	report("full_recv_queue", "ret", ret_tok(ENOMEM), ret_tok(ret));
	report("full_recv_queue", "bad_wr", "later", bad && bad > w ? "later" : bad ? "first" : "null");
	/* More SGEs than max_recv_sge: EINVAL at that WR. */
	{
		struct ibv_sge ss[64];
		struct ibv_recv_wr r = { .sg_list = ss };
		struct pair q;
		make_pair(&q, 8, 8, 0, 1);
		r.num_sge = granted.max_recv_sge + 1;
		for (int i = 0; i < r.num_sge && i < 64; i++)
			ss[i] = s;
		bad = NULL;
		ret = ibv_post_recv(q.b, &r, &bad);
		report("recv_too_many_sges", "ret", ret_tok(EINVAL), ret_tok(ret));
		report("recv_too_many_sges", "bad_wr", "it", bad == &r ? "it" : bad ? "other" : "null");
		free_pair(&q);
	}
	free_pair(&p);
}

static void send_in_init(void)
{
	struct pair p;
	struct ibv_sge s = { (uintptr_t)buf, 8, mr->lkey };
	struct ibv_send_wr w = { .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND }, *bad = NULL;
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .port_num = 1 };
	int ret;

	make_pair(&p, 8, 8, 0, 0);
	ibv_modify_qp(p.a, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
	/* A send on a QP in INIT: refused with EINVAL before anything is posted,
	 * bad_wr at the WR (librxe posts it and fails at the doorbell, bad_wr
	 * null: a known difference). */
	ret = ibv_post_send(p.a, &w, &bad);
	report("send_in_init", "ret", ret_tok(EINVAL), ret_tok(ret));
	report("send_in_init", "bad_wr", "it", bad == &w ? "it" : bad ? "other" : "null");
	free_pair(&p);
}

/* Threads: several senders share one QP and CQ; the receiver uses an SRQ and
 * two pollers share its CQ. Every message must complete exactly once. */
#define SENDERS 4
#define PER_SENDER 500
static struct pair tp;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static int send_done, recv_done, wc_errors;

static void *sender(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < PER_SENDER; i++) {
		struct ibv_sge s = { (uintptr_t)buf + id * 64, 16, mr->lkey };
		struct ibv_send_wr w = { .wr_id = id * PER_SENDER + i, .sg_list = &s, .num_sge = 1,
			.opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED }, *bad;
		while (ibv_post_send(tp.a, &w, &bad) == ENOMEM)
			sched_yield(); /* queue full: the pollers will free slots */
		/* Also drain our own send completions from the shared CQ. */
		struct ibv_wc wc[8];
		int n = ibv_poll_cq(tp.scq, 8, wc);
		pthread_mutex_lock(&count_lock);
		for (int k = 0; k < n; k++)
			if (wc[k].status) wc_errors++;
		send_done += n;
		pthread_mutex_unlock(&count_lock);
	}
	return NULL;
}

static void *poller(void *arg)
{
	(void)arg;
	for (long spins = 0; spins < 200000000; spins++) {
		struct ibv_wc wc[8];
		int n = ibv_poll_cq(tp.rcq, 8, wc);
		pthread_mutex_lock(&count_lock);
		for (int k = 0; k < n; k++)
			if (wc[k].status) wc_errors++;
		recv_done += n;
		int finished = recv_done >= SENDERS * PER_SENDER;
		pthread_mutex_unlock(&count_lock);
		if (n > 0) {
			for (int k = 0; k < n; k++) {
				struct ibv_sge s = { (uintptr_t)buf + BUF_SIZE / 2, 64, mr->lkey };
				struct ibv_recv_wr r = { .sg_list = &s, .num_sge = 1 }, *bad;
				ibv_post_srq_recv(tp.srq, &r, &bad);
			}
		}
		if (finished)
			break;
		/* Nothing arrived: let the senders run. Under valgrind, which runs
		 * one thread at a time, a poller spinning through its time slice
		 * made this case take minutes. */
		if (n == 0)
			sched_yield();
	}
	return NULL;
}

static void threads(void)
{
	pthread_t s[SENDERS], p[2];
	make_pair(&tp, 256, 256, 1, 1);
	for (int i = 0; i < 512; i++) {
		struct ibv_sge sg = { (uintptr_t)buf + BUF_SIZE / 2, 64, mr->lkey };
		struct ibv_recv_wr r = { .sg_list = &sg, .num_sge = 1 }, *bad;
		if (ibv_post_srq_recv(tp.srq, &r, &bad))
			die("post_srq_recv");
	}
	for (int i = 0; i < 2; i++)
		pthread_create(&p[i], NULL, poller, NULL);
	for (long i = 0; i < SENDERS; i++)
		pthread_create(&s[i], NULL, sender, (void *)i);
	for (int i = 0; i < SENDERS; i++)
		pthread_join(s[i], NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(p[i], NULL);
	send_done += drain(tp.scq, SENDERS * PER_SENDER - send_done, &wc_errors);
	report("threads", "sends", fmt("completed=%d", SENDERS * PER_SENDER), fmt("completed=%d", send_done));
	report("threads", "recvs", fmt("completed=%d", SENDERS * PER_SENDER), fmt("completed=%d", recv_done));
	report("threads", "wc_errors", "errors=0", fmt("errors=%d", wc_errors));
	free_pair(&tp);
}


/* Extended polling over several entries, reading each field rxe carries. */
static void cq_ex_polling(void)
{
	struct ibv_cq_init_attr_ex ca = { .cqe = 64, .wc_flags = IBV_WC_EX_WITH_BYTE_LEN | IBV_WC_EX_WITH_QP_NUM };
	struct ibv_cq_ex *cqx = ibv_create_cq_ex(ctx, &ca);
	struct ibv_poll_cq_attr pa = { 0 };
	struct ibv_qp_init_attr ia = { 0 };
	struct ibv_qp *a, *b;
	struct ibv_cq *rcq = ibv_create_cq(ctx, 64, NULL, NULL, 0);
	int n = 0, bytes = 0, ok = 1, ret, spins = 0;

	if (!cqx || !rcq)
		die("create_cq_ex");
	ia.send_cq = ibv_cq_ex_to_cq(cqx);
	ia.recv_cq = rcq;
	ia.qp_type = IBV_QPT_RC;
	ia.cap = (struct ibv_qp_cap){ .max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1 };
	a = ibv_create_qp(pd, &ia);
	b = ibv_create_qp(pd, &ia);
	if (!a || !b)
		die("create_qp");
	connect_rc(a, b->qp_num);
	connect_rc(b, a->qp_num);
	post_recvs(b, 5);
	for (int i = 0; i < 5; i++) {
		struct ibv_sge s = { (uintptr_t)buf, 10 + i, mr->lkey };
		struct ibv_send_wr w = { .wr_id = 100 + i, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
					 .send_flags = IBV_SEND_SIGNALED }, *bad;
		if (ibv_post_send(a, &w, &bad))
			die("post_send");
	}
	while (n < 5 && spins++ < 1000000) {
		ret = ibv_start_poll(cqx, &pa);
		if (ret == ENOENT)
			continue;
		do {
			if (cqx->status != IBV_WC_SUCCESS || cqx->wr_id != (uint64_t)(100 + n) ||
			    ibv_wc_read_opcode(cqx) != IBV_WC_SEND || ibv_wc_read_qp_num(cqx) != a->qp_num)
				ok = 0;
			bytes += ibv_wc_read_byte_len(cqx);
			n++;
		} while (ibv_next_poll(cqx) == 0);
		ibv_end_poll(cqx);
	}
	ret = ibv_start_poll(cqx, &pa);
	if (ret == 0)
		ibv_end_poll(cqx);
	/* Five sends of 10..14 bytes, polled in order; then the CQ is empty
	 * (librxe's end_poll overruns the producer and reports a stale entry
	 * here: a known difference). */
	report("cq_ex_polling", "entries", "entries=5", fmt("entries=%d", n));
	report("cq_ex_polling", "in_order", "yes", yes(ok));
	report("cq_ex_polling", "bytes", "bytes=60", fmt("bytes=%d", bytes));
	report("cq_ex_polling", "then_empty", "yes", yes(ret == ENOENT));
	ibv_destroy_qp(a);
	ibv_destroy_qp(b);
	ibv_destroy_cq(ibv_cq_ex_to_cq(cqx));
	ibv_destroy_cq(rcq);
}

/* Completions waiting in a CQ survive its resize. */
static void cq_resize(void)
{
	struct pair p;
	int errors = 0, ret, got;

	make_pair(&p, 16, 16, 0, 1);
	post_recvs(p.b, 10);
	for (int i = 0; i < 10; i++) {
		struct ibv_sge s = { (uintptr_t)buf, 8, mr->lkey };
		struct ibv_send_wr w = { .wr_id = i, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
					 .send_flags = IBV_SEND_SIGNALED }, *bad;
		if (ibv_post_send(p.a, &w, &bad))
			die("post_send");
	}
	/* Let all ten land before resizing. */
	for (int i = 0; i < 2000000 && ibv_poll_cq(p.rcq, 0, NULL) == 0; i++)
		;
	{
		struct timespec t = { 0, 300 * 1000 * 1000 };
		nanosleep(&t, NULL);
	}
	ret = ibv_resize_cq(p.scq, 8192);
	got = drain(p.scq, 10, &errors);
	report("cq_resize", "ret", "ok", ret_tok(ret));
	report("cq_resize", "cqe_at_least_8192", "yes", yes(p.scq->cqe >= 8192));
	report("cq_resize", "kept", "completed=10", fmt("completed=%d", got));
	report("cq_resize", "wc_errors", "errors=0", fmt("errors=%d", errors));
	free_pair(&p);
}

static void srq_modify_query(void)
{
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = 16, .max_sge = 1 } };
	struct ibv_srq *srq = ibv_create_srq(pd, &sa);
	struct ibv_srq_attr a = { 0 };
	int r1, r2, r3, posted = 0;

	if (!srq)
		die("create_srq");
	a.srq_limit = 4;
	r1 = ibv_modify_srq(srq, &a, IBV_SRQ_LIMIT);
	a.max_wr = 256;
	r2 = ibv_modify_srq(srq, &a, IBV_SRQ_MAX_WR);
	memset(&a, 0, sizeof(a));
	r3 = ibv_query_srq(srq, &a);
	for (int i = 0; i < 200; i++) {
		struct ibv_sge s = { (uintptr_t)buf, 8, mr->lkey };
		struct ibv_recv_wr w = { .sg_list = &s, .num_sge = 1 }, *bad;
		if (ibv_post_srq_recv(srq, &w, &bad) == 0)
			posted++;
	}
	report("srq_modify_query", "set_limit", "ok", ret_tok(r1));
	report("srq_modify_query", "resize", "ok", ret_tok(r2));
	report("srq_modify_query", "query", "ok", ret_tok(r3));
	report("srq_modify_query", "max_wr_at_least_256", "yes", yes(a.max_wr >= 256));
	report("srq_modify_query", "limit", "srq_limit=4", fmt("srq_limit=%d", a.srq_limit));
	report("srq_modify_query", "posted_after_resize", "posted=200", fmt("posted=%d", posted));
	ibv_destroy_srq(srq);
}

/* Memory windows: bind type 1 (ibv_bind_mw) and type 2 (BIND_MW WR), read
 * through each window's rkey from the peer, then invalidate type 2 locally. */
static void memory_windows(void)
{
	struct pair p;
	struct ibv_mr *bmr;
	struct ibv_mw *mw1, *mw2;
	struct ibv_wc wc;
	int errors = 0, r1, r2, rd1 = -1, rd2 = -1, inv = -1, rd3 = -1;
	char *local = buf + 4096, *target = buf + 8192;

	bmr = ibv_reg_mr(pd, target, 4096, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_MW_BIND);
	mw1 = ibv_alloc_mw(pd, IBV_MW_TYPE_1);
	mw2 = ibv_alloc_mw(pd, IBV_MW_TYPE_2);
	if (!bmr || !mw1 || !mw2)
		die("mw setup");
	memset(target, 0x5a, 64);
	make_pair(&p, 16, 16, 0, 1);
	{
		struct ibv_mw_bind bind = { .wr_id = 1, .send_flags = IBV_SEND_SIGNALED,
			.bind_info = { .mr = bmr, .addr = (uintptr_t)target, .length = 64, .mw_access_flags = IBV_ACCESS_REMOTE_READ } };
		r1 = ibv_bind_mw(p.b, mw1, &bind);
		drain(p.scq, 1, &errors);
	}
	{
		struct ibv_send_wr w = { .wr_id = 2, .opcode = IBV_WR_BIND_MW, .send_flags = IBV_SEND_SIGNALED }, *bad;
		w.bind_mw.mw = mw2;
		w.bind_mw.rkey = ibv_inc_rkey(mw2->rkey);
		w.bind_mw.bind_info = (struct ibv_mw_bind_info){ .mr = bmr, .addr = (uintptr_t)target, .length = 64,
			.mw_access_flags = IBV_ACCESS_REMOTE_READ };
		r2 = ibv_post_send(p.b, &w, &bad);
		drain(p.scq, 1, &errors);
		if (r2 == 0)
			mw2->rkey = w.bind_mw.rkey;
	}
	for (int k = 0; k < 2; k++) {
		struct ibv_sge s = { (uintptr_t)local, 64, mr->lkey };
		struct ibv_send_wr w = { .wr_id = 10 + k, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_READ,
			.send_flags = IBV_SEND_SIGNALED }, *bad;
		w.wr.rdma.remote_addr = (uintptr_t)target;
		w.wr.rdma.rkey = k ? mw2->rkey : mw1->rkey;
		memset(local, 0, 64);
		if (ibv_post_send(p.a, &w, &bad))
			die("rdma read");
		while (ibv_poll_cq(p.scq, 1, &wc) == 0)
			;
		if (k)
			rd2 = wc.status == IBV_WC_SUCCESS && local[63] == 0x5a;
		else
			rd1 = wc.status == IBV_WC_SUCCESS && local[63] == 0x5a;
	}
	{
		struct ibv_send_wr w = { .wr_id = 20, .opcode = IBV_WR_LOCAL_INV, .send_flags = IBV_SEND_SIGNALED }, *bad;
		w.invalidate_rkey = mw2->rkey;
		if (ibv_post_send(p.b, &w, &bad))
			die("local inv");
		while (ibv_poll_cq(p.scq, 1, &wc) == 0)
			;
		inv = wc.status == IBV_WC_SUCCESS;
	}
	{
		/* A read through the invalidated window must fail. */
		struct ibv_sge s = { (uintptr_t)local, 64, mr->lkey };
		struct ibv_send_wr w = { .wr_id = 30, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_READ,
			.send_flags = IBV_SEND_SIGNALED }, *bad;
		w.wr.rdma.remote_addr = (uintptr_t)target;
		w.wr.rdma.rkey = mw2->rkey;
		if (ibv_post_send(p.a, &w, &bad))
			die("rdma read 2");
		while (ibv_poll_cq(p.scq, 1, &wc) == 0)
			;
		rd3 = wc.status != IBV_WC_SUCCESS;
	}
	report("memory_windows", "bind_type1", "ok", ret_tok(r1));
	report("memory_windows", "bind_type2", "ok", ret_tok(r2));
	report("memory_windows", "read_type1", "yes", yes(rd1 == 1));
	report("memory_windows", "read_type2", "yes", yes(rd2 == 1));
	report("memory_windows", "local_inv", "yes", yes(inv == 1));
	report("memory_windows", "read_after_inv_fails", "yes", yes(rd3 == 1));
	report("memory_windows", "bind_wc_errors", "errors=0", fmt("errors=%d", errors));
	/* The QPs went to error on the refused read: destroy before the MWs. */
	free_pair(&p);
	ibv_dealloc_mw(mw1);
	ibv_dealloc_mw(mw2);
	ibv_dereg_mr(bmr);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";

	if (argc > 2)
		gid_index = atoi(argv[2]);
	ctx = open_dev(name);
	if (!ctx)
		die("open device");
	if (ibv_query_gid(ctx, 1, gid_index, &gid))
		die("query_gid");
	pd = ibv_alloc_pd(ctx);
	buf = aligned_alloc(4096, BUF_SIZE);
	mr = ibv_reg_mr(pd, buf, BUF_SIZE, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
			IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC);
	if (!pd || !buf || !mr)
		die("setup");
	setvbuf(stdout, NULL, _IOLBF, 0);
	bad_second_wr("too_many_sges", spoil_sges);
	bad_second_wr("inline_too_long", spoil_inline);
	bad_second_wr("atomic_misaligned", spoil_atomic_align);
	full_send_queue();
	full_recv_queue();
	send_in_init();
	cq_ex_polling();
	cq_resize();
	srq_modify_query();
	memory_windows();
	threads();
	ibv_dereg_mr(mr);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	return 0;
}
