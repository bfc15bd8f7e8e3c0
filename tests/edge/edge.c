/*
 * Data-path edge cases and threads, in one process on one rxe device: two RC
 * QPs connected to each other (rxe loops traffic to its own GID back).
 * Prints one stable line per case, so runs through two providers can be
 * diffed: `case <name>: <outcome>`.
 *
 * usage: edge [device] [gid_index]
 */
#include <errno.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static int gid_index = 1;
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

static const char *ename(int e)
{
	switch (e) {
	case 0: return "0";
	case EINVAL: return "EINVAL";
	case ENOMEM: return "ENOMEM";
	case ENOSPC: return "ENOSPC";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	default: return "other";
	}
}

struct pair {
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *a, *b;
	struct ibv_srq *srq;
};

static void to_rts(struct ibv_qp *qp, uint32_t remote_qpn, int rts)
{
	union ibv_gid gid;
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .port_num = 1,
		.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ };

	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		die("modify INIT");
	if (ibv_query_gid(ctx, 1, gid_index, &gid))
		die("query_gid");
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = remote_qpn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = gid;
	a.ah_attr.grh.sgid_index = gid_index;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		die("modify RTR");
	if (!rts)
		return;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		die("modify RTS");
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
		to_rts(p->a, p->b->qp_num, 1);
		to_rts(p->b, p->a->qp_num, 1);
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

/* Posts a two-WR list whose second WR is bad; checks errno, bad_wr, and that
 * exactly one completion (the good WR) arrives. */
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
	printf("case %s: ret=%s bad_wr=%s completions=%d errors=%d\n", name, ename(ret),
	       bad == &w[1] ? "second" : bad == &w[0] ? "first" : bad ? "other" : "null", got, errors);
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
	/* idx depends on the kernel's rounding of max_send_wr: report it as "some". */
	printf("case full_send_queue: ret=%s bad_wr=%s posted_completed=%s errors=%d\n", ename(ret),
	       idx > 0 ? "later" : idx == 0 ? "first" : "null", got == idx ? "all" : "mismatch", errors);
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
	ret = ibv_post_recv(p.a, w, &bad);
	printf("case full_recv_queue: ret=%s bad_wr=%s\n", ename(ret), bad && bad > w ? "later" : bad ? "first" : "null");
	/* More SGEs than max_recv_sge. */
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
		printf("case recv_too_many_sges: ret=%s bad_wr=%s\n", ename(ret), bad == &r ? "it" : "null");
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
	ret = ibv_post_send(p.a, &w, &bad);
	printf("case send_in_init: ret=%s bad_wr=%s\n", ename(ret), bad == &w ? "it" : bad ? "other" : "null");
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
			; /* queue full: the pollers will free slots */
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
	printf("case threads: sends_completed=%d recvs_completed=%d errors=%d\n", send_done, recv_done, wc_errors);
	free_pair(&tp);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	struct ibv_device **list;

	if (argc > 2)
		gid_index = atoi(argv[2]);
	list = ibv_get_device_list(NULL);
	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	if (!ctx)
		die("open device");
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
	threads();
	ibv_dereg_mr(mr);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	return 0;
}
