/*
 * Destroy while busy (issue 11, item 4). Each refused destroy is checked
 * three ways: the errno (what the kernel's uverbs and rxe return: EBUSY for
 * a CQ, PD or SRQ still in use, EINVAL from 6.1's rxe for an MR with a
 * bound memory window), that nothing was freed or unmapped (the object is
 * used right after the refusal: traffic through it, its ring polled, its
 * memory still registered), and that the same destroy succeeds once the
 * dependants are gone.
 *
 * destroy_qp while other threads post on it: two threads post RDMA writes
 * on one QP and poll its CQ; the main thread destroys the QP while they
 * run. The verbs contract forbids using a QP during or after its destroy
 * (both providers free it), so the posters hold a read lock around each
 * post and the destroyer a write lock: the destroy lands between posts,
 * with completions of both threads' WRs unpolled (posters poll only when
 * the send queue is full). The CQ is then still usable by another QP.
 *
 * usage: busy [device] [gid_index]
 */
#include "stress.h"
#include <pthread.h>
#include <stdatomic.h>

#define BUF (1 << 16)
static struct ibv_context *ctx;
static char *buf;

/* Fresh QPs on pd, then what is asked of the survivors: an RDMA write
 * through mr (lkey and rkey) and a UD send through ah. "yes" if all worked. */
static int works_on_pd(struct ibv_pd *pd, struct ibv_mr *mr, struct ibv_ah *ah)
{
	struct ibv_cq *cq = mkcq(ctx, 64);
	struct ibv_qp *a, *b;
	int ok = 1;

	mkpair(pd, cq, cq, NULL, 16, &a, &b);
	if (mr)
		ok &= write_checked(a, cq, mr->addr, mr->lkey, (char *)mr->addr + 4096, mr->rkey, 256, 3);
	else
		ok &= post_write(a, 1, NULL, 0, 0, 0, 0, 1) == 0 && one_ok(cq, 10);
	if (ah) {
		struct ibv_qp_init_attr ia = { .send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_UD,
			.cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1 } };
		struct ibv_qp *u = ibv_create_qp(pd, &ia);
		struct ibv_mr *m = ibv_reg_mr(pd, buf, BUF, IBV_ACCESS_LOCAL_WRITE);
		struct ibv_wc wc;
		int n = 0, recvd = 0;

		if (!u || !m || (errno = ud_ready(u, 0x11111111)))
			die("ud qp");
		if (post_recv1(u, 7, buf + 8192, 256, m->lkey))
			die("ud recv");
		struct ibv_sge s = { (uintptr_t)buf + 16384, 64, m->lkey };
		struct ibv_send_wr w = { .wr_id = 8, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
			.send_flags = IBV_SEND_SIGNALED, .wr.ud = { ah, u->qp_num, 0x11111111 } }, *bad;
		ok &= ibv_post_send(u, &w, &bad) == 0;
		for (double end = now_s() + 10; n < 2 && now_s() < end;)
			if (ibv_poll_cq(cq, 1, &wc) == 1) {
				n++;
				ok &= wc.status == IBV_WC_SUCCESS;
				recvd |= wc.wr_id == 7;
			}
		ok &= n == 2 && recvd;
		ibv_destroy_qp(u);
		ibv_dereg_mr(m);
	}
	ibv_destroy_qp(a);
	ibv_destroy_qp(b);
	ibv_destroy_cq(cq);
	return ok;
}

static struct ibv_ah *mkah(struct ibv_pd *pd)
{
	union ibv_gid gid;
	struct ibv_ah_attr aa = { .is_global = 1, .port_num = 1 };

	if (ibv_query_gid(ctx, 1, gid_index, &gid))
		die("query_gid");
	aa.grh.dgid = gid;
	aa.grh.sgid_index = gid_index;
	aa.grh.hop_limit = 1;
	struct ibv_ah *ah = ibv_create_ah(pd, &aa);
	if (!ah)
		die("create_ah");
	return ah;
}

static void destroy_cq_busy(struct ibv_pd *pd, struct ibv_mr *mr)
{
	struct ibv_cq *scq = mkcq(ctx, 64), *rcq = mkcq(ctx, 64);
	struct ibv_qp *a, *b;
	char x[80];
	int ok;

	mkpair(pd, scq, rcq, NULL, 16, &a, &b);
	report("destroy_cq.send_cq_of_2_qps", "errno=16", tokn(ibv_destroy_cq(scq)), NULL);
	report("destroy_cq.recv_cq_of_2_qps", "errno=16", tokn(ibv_destroy_cq(rcq)), NULL);
	/* Both rings still mapped: a send and its receive complete on them. */
	ok = post_recv1(b, 2, buf + 8192, 64, mr->lkey) == 0 && post_send1(a, 1, buf, 64, mr->lkey) == 0 &&
	     one_ok(scq, 10) && one_ok(rcq, 10);
	report("destroy_cq.refused_cqs_still_work", "yes", yesno(ok), NULL);
	ibv_destroy_qp(a);
	report("destroy_cq.send_cq_of_1_qp", "errno=16", tokn(ibv_destroy_cq(scq)), NULL);
	/* b's peer is gone: a receive and a send on b, flushed by moving it to
	 * ERR, complete on the two refused CQs. */
	struct ibv_qp_attr err = { .qp_state = IBV_QPS_ERR };
	ok = post_recv1(b, 3, buf + 8192, 64, mr->lkey) == 0 && post_send1(b, 4, buf, 64, mr->lkey) == 0 &&
	     ibv_modify_qp(b, &err, IBV_QP_STATE) == 0;
	struct ibv_wc ws, wr;
	ok = ok && poll_one(scq, &ws, 10) == 1 && poll_one(rcq, &wr, 10) == 1 && ws.wr_id == 4 && wr.wr_id == 3 &&
	     ws.status == IBV_WC_WR_FLUSH_ERR && wr.status == IBV_WC_WR_FLUSH_ERR;
	report("destroy_cq.still_works_with_1_qp", "yes", yesno(ok), NULL);
	ibv_destroy_qp(b);
	snprintf(x, sizeof(x), "recv_cq=%s", tokn(ibv_destroy_cq(rcq)));
	report("destroy_cq.after_qps_gone", "ok", tokn(ibv_destroy_cq(scq)), x);
}

static void dealloc_pd_busy(void)
{
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	struct ibv_cq *cq = mkcq(ctx, 64);
	struct ibv_mr *mr;
	struct ibv_ah *ah;
	struct ibv_qp *a, *b;

	if (!pd)
		die("alloc_pd");
	mr = ibv_reg_mr(pd, buf + BUF / 2, BUF / 2, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr)
		die("reg_mr");
	ah = mkah(pd);
	mkpair(pd, cq, cq, NULL, 16, &a, &b);
	report("dealloc_pd.with_mr_qps_ah", "errno=16", tokn(ibv_dealloc_pd(pd)), NULL);
	report("dealloc_pd.with_mr_qps_ah.still_works", "yes",
	       yesno(write_checked(a, cq, mr->addr, mr->lkey, (char *)mr->addr + 8192, mr->rkey, 200, 9) &&
		     works_on_pd(pd, mr, ah)), NULL);
	ibv_destroy_qp(a);
	ibv_destroy_qp(b);
	report("dealloc_pd.with_mr_ah", "errno=16", tokn(ibv_dealloc_pd(pd)), NULL);
	report("dealloc_pd.with_mr_ah.still_works", "yes", yesno(works_on_pd(pd, mr, ah)), NULL);
	report("dealloc_pd.destroy_ah", "ok", tokn(ibv_destroy_ah(ah)), NULL);
	report("dealloc_pd.with_mr", "errno=16", tokn(ibv_dealloc_pd(pd)), NULL);
	report("dealloc_pd.with_mr.still_works", "yes", yesno(works_on_pd(pd, mr, NULL)), NULL);
	report("dealloc_pd.dereg_mr", "ok", tokn(ibv_dereg_mr(mr)), NULL);
	ah = mkah(pd);
	report("dealloc_pd.with_ah", "errno=16", tokn(ibv_dealloc_pd(pd)), NULL);
	report("dealloc_pd.with_ah.still_works", "yes", yesno(works_on_pd(pd, NULL, ah)), NULL);
	ibv_destroy_ah(ah);
	a = mkqp(pd, cq, cq, NULL, 4);
	report("dealloc_pd.with_qp", "errno=16", tokn(ibv_dealloc_pd(pd)), NULL);
	ibv_destroy_qp(a);
	report("dealloc_pd.after_all_gone", "ok", tokn(ibv_dealloc_pd(pd)), NULL);
	ibv_destroy_cq(cq);
}

static void dereg_mr_bound_mw(struct ibv_pd *pd, struct ibv_mr *mr0)
{
	struct ibv_cq *cq = mkcq(ctx, 64);
	struct ibv_qp *a, *b;
	struct ibv_mr *mr = ibv_reg_mr(pd, buf + BUF / 2, BUF / 2,
				       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_MW_BIND);
	struct ibv_mw *mw1 = ibv_alloc_mw(pd, IBV_MW_TYPE_1), *mw2 = ibv_alloc_mw(pd, IBV_MW_TYPE_2);
	struct ibv_mw_bind bind = { .wr_id = 1, .send_flags = IBV_SEND_SIGNALED,
		.bind_info = { .mr = mr, .addr = (uintptr_t)mr->addr, .length = 4096, .mw_access_flags = IBV_ACCESS_REMOTE_WRITE } };
	char x[64];
	int rc, ok;

	if (!mr || !mw1 || !mw2)
		die("mr/mw");
	mkpair(pd, cq, cq, NULL, 16, &a, &b);
	rc = ibv_bind_mw(a, mw1, &bind);
	ok = !rc && one_ok(cq, 10);
	snprintf(x, sizeof(x), "bind=%s", tokn(rc));
	report("dereg_mr.bind_type1", "yes", yesno(ok), x);
	rc = ibv_dereg_mr(mr);
	report("dereg_mr.with_bound_type1_mw", "errno=22", tokn(rc), NULL);
	if (!rc)
		return; /* the MR is gone: nothing below is meaningful */
	/* Still registered: a write through the MR's own rkey and one through the window. */
	ok = write_checked(b, cq, mr0->addr, mr0->lkey, mr->addr, mr->rkey, 256, 11) &&
	     write_checked(b, cq, mr0->addr, mr0->lkey, mr->addr, mw1->rkey, 256, 12);
	report("dereg_mr.with_bound_type1_mw.still_works", "yes", yesno(ok), NULL);
	report("dereg_mr.dealloc_type1_mw", "ok", tokn(ibv_dealloc_mw(mw1)), NULL);

	/* A type 2 window, bound by a WR on QP a. */
	uint32_t rkey = ibv_inc_rkey(mw2->rkey);
	struct ibv_send_wr w = { .wr_id = 2, .opcode = IBV_WR_BIND_MW, .send_flags = IBV_SEND_SIGNALED,
		.bind_mw = { .mw = mw2, .rkey = rkey, .bind_info = bind.bind_info } }, *bad;
	rc = ibv_post_send(a, &w, &bad);
	ok = !rc && one_ok(cq, 10);
	snprintf(x, sizeof(x), "bind=%s", tokn(rc));
	report("dereg_mr.bind_type2", "yes", yesno(ok), x);
	rc = ibv_dereg_mr(mr);
	report("dereg_mr.with_bound_type2_mw", "errno=22", tokn(rc), NULL);
	if (!rc)
		return;
	ok = write_checked(b, cq, mr0->addr, mr0->lkey, mr->addr, rkey, 256, 13);
	report("dereg_mr.with_bound_type2_mw.still_works", "yes", yesno(ok), NULL);
	report("dereg_mr.dealloc_type2_mw", "ok", tokn(ibv_dealloc_mw(mw2)), NULL);
	report("dereg_mr.after_mws_gone", "ok", tokn(ibv_dereg_mr(mr)), NULL);
	ibv_destroy_qp(a);
	ibv_destroy_qp(b);
	ibv_destroy_cq(cq);
}

static void destroy_srq_busy(struct ibv_pd *pd, struct ibv_mr *mr)
{
	struct ibv_cq *cq = mkcq(ctx, 64);
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = 16, .max_sge = 1 } };
	struct ibv_srq *srq = ibv_create_srq(pd, &sa);
	struct ibv_qp *a, *b;
	int ok;

	if (!srq)
		die("create_srq");
	mkpair(pd, cq, cq, srq, 16, &a, &b);
	report("destroy_srq.with_2_qps", "errno=16", tokn(ibv_destroy_srq(srq)), NULL);
	ok = post_srq1(srq, 5, buf + 8192, 64, mr->lkey) == 0 && post_send1(a, 6, buf, 64, mr->lkey) == 0 && one_ok(cq, 10) &&
	     one_ok(cq, 10);
	report("destroy_srq.with_2_qps.still_works", "yes", yesno(ok), NULL);
	ibv_destroy_qp(a);
	report("destroy_srq.with_1_qp", "errno=16", tokn(ibv_destroy_srq(srq)), NULL);
	ibv_destroy_qp(b);
	report("destroy_srq.after_qps_gone", "ok", tokn(ibv_destroy_srq(srq)), NULL);
	ibv_destroy_cq(cq);
}

/* destroy_qp while two threads post on it. */
static struct {
	struct ibv_qp *qp;
	struct ibv_cq *cq;
	struct ibv_mr *mr;
	pthread_rwlock_t lock;
	int gone;
	atomic_long posted, completed, refused, errors;
} race;

/* Posts until the send queue is full, then polls: completions pile up. */
static void *poster(void *arg)
{
	long me = (long)arg;

	for (long i = 0;; i++) {
		struct ibv_wc wc[8];
		int rc, n = 0;

		pthread_rwlock_rdlock(&race.lock);
		if (race.gone) {
			pthread_rwlock_unlock(&race.lock);
			return NULL;
		}
		rc = post_write(race.qp, me << 32 | i, buf + me * 1024, 512, race.mr->lkey, (uintptr_t)buf + 32768 + me * 1024,
				race.mr->rkey, 1);
		if (!rc)
			race.posted++;
		else
			n = ibv_poll_cq(race.cq, 8, wc);
		pthread_rwlock_unlock(&race.lock);
		if (rc)
			race.refused++; /* the send queue is full */
		for (int k = 0; k < n; k++) {
			race.completed++;
			if (wc[k].status != IBV_WC_SUCCESS)
				race.errors++;
		}
	}
}

static void destroy_qp_racing(struct ibv_pd *pd)
{
	struct ibv_cq *cq = mkcq(ctx, 256);
	struct ibv_qp *a, *b, *c, *d;
	pthread_t t[2];
	char x[200];
	long posted, unpolled;
	int rc, left = 0, ok;
	struct ibv_wc wc;

	race.mr = ibv_reg_mr(pd, buf, BUF, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!race.mr)
		die("reg_mr");
	mkpair(pd, cq, cq, NULL, 64, &a, &b);
	race.qp = a;
	race.cq = cq;
	pthread_rwlockattr_t la;
	pthread_rwlockattr_init(&la);
	/* The destroyer must get in while the posters keep posting. */
	pthread_rwlockattr_setkind_np(&la, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&race.lock, &la);
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, poster, (void *)i);
	for (double end = now_s() + 20; race.posted < 300 && now_s() < end;)
		usleep(1000);
	pthread_rwlock_wrlock(&race.lock);
	posted = race.posted;
	unpolled = posted - race.completed;
	rc = ibv_destroy_qp(a);
	race.gone = 1;
	pthread_rwlock_unlock(&race.lock);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	/* Completions of the destroyed QP's WRs still in the CQ after it. */
	while (poll_one(cq, &wc, 0.5) == 1)
		left++;
	snprintf(x, sizeof(x), "threads=2 posted=%ld unpolled_at_destroy=%ld completed=%ld refused_full=%ld wc_errors=%ld cqes_left_after=%d",
		 posted, unpolled, (long)race.completed, (long)race.refused, (long)race.errors, left);
	report("destroy_qp.while_2_threads_post", "ok", tokn(rc), x);
	/* Completions of both threads' WRs were still unpolled when it went. */
	report("destroy_qp.completions_unpolled_at_destroy", "yes", yesno(unpolled > 0), NULL);
	/* The CQ it shared is still usable by other QPs. */
	mkpair(pd, cq, cq, NULL, 16, &c, &d);
	ok = write_checked(c, cq, buf, race.mr->lkey, buf + 40000, race.mr->rkey, 128, 17);
	report("destroy_qp.shared_cq_still_works", "yes", yesno(ok), NULL);
	ibv_destroy_qp(b);
	ibv_destroy_qp(c);
	ibv_destroy_qp(d);
	report("destroy_qp.shared_cq_destroyed_after", "ok", tokn(ibv_destroy_cq(cq)), NULL);
	ibv_dereg_mr(race.mr);
}

int main(int argc, char **argv)
{
	struct ibv_pd *pd;
	struct ibv_mr *mr;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2)
		gid_index = atoi(argv[2]);
	ctx = open_dev(argc > 1 ? argv[1] : "rxe0");
	if (!ctx)
		die("open_dev");
	buf = aligned_alloc(4096, 2 * BUF);
	memset(buf, 0, 2 * BUF);
	pd = ibv_alloc_pd(ctx);
	if (!pd)
		die("alloc_pd");
	mr = ibv_reg_mr(pd, buf, BUF, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr)
		die("reg_mr");
	destroy_cq_busy(pd, mr);
	dealloc_pd_busy();
	dereg_mr_bound_mw(pd, mr);
	destroy_srq_busy(pd, mr);
	destroy_qp_racing(pd);
	ibv_dereg_mr(mr);
	report("close.dealloc_pd", "ok", tokn(ibv_dealloc_pd(pd)), NULL);
	report("close.close_device", "ok", tokn(ibv_close_device(ctx)), NULL);
	return 0;
}
