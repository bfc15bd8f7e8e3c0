/*
 * What newer kernels' rxe adds, checked against what the device reports:
 * ATOMIC WRITE and RDMA FLUSH (Linux 6.2), 2 GiB messages (6.12), on-demand
 * paging MRs and ibv_advise_mr (7.x). The program queries the device first
 * (ibv_query_device_ex, ibv_query_port), prints what it found as `info`
 * lines, and derives every expectation from that, so the same program is
 * right on 6.1, 6.12 and 7.x. Each case runs in a forked child that opens the
 * device and builds what it needs (an RC pair of two QPs on one device
 * connected to each other through the GID index given, a UD pair, an SRQ),
 * so a crash or a hang is that case's outcome alone. One line per case:
 *   case <name> expect=<token> got=<token> [key=value ...]
 * tokens: ok | errno=<name> (a verb's return or errno) |
 *         status=<IBV_WC_...> (the completion's status) | opcode=<n> (a
 *         successful completion of the wrong opcode) | data-mismatch |
 *         rejected (msg_size.max_plus_1: refused at post with EINVAL, or
 *         completed with an error status; how=<errno=...|status=...> says) |
 *         skip (the device lacks a transport capability the case needs:
 *         not run) | SIG<name> | timeout | setup-failed
 * keys:   at=<step>  where a case stopped (its outcome, a signal or a timeout)
 * Where the device lacks a feature, the expectation is what a provider that
 * refuses it must say (EOPNOTSUPP at QP creation; the kernel's errno for a
 * registration); the stock librxe's different answers are named in
 * tests/vm/features.rs.
 *
 * The flush cases need ibv_wr_flush (rdma-core >= 45's verbs.h): they are
 * built only with -DFEATURES_V45 and -I<a v45+ include dir>
 * (tests/guest/features.sh builds that variant against trixie's headers).
 *
 * usage: features [device] [gid_index] [case-name-prefix...]
 *   with prefixes, only the cases whose names start with one of them run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <infiniband/verbs.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/child_case.h"
#include "../lib/verbs_setup.h"

/* device_cap_flags_ex bits (kernel uapi ib_user_verbs.h, Linux >= 6.2). */
#define CAP_FLUSH_GLOBAL (1ULL << 38)
#define CAP_FLUSH_PERSISTENT (1ULL << 39)
#define CAP_ATOMIC_WRITE (1ULL << 40)
/* rdma-core >= 45's IBV_ACCESS_FLUSH_GLOBAL / _PERSISTENT and IBV_WC_FLUSH,
 * by number so the program builds against rdma-core 44 too. */
#define ACC_FLUSH_GLOBAL (1u << 8)
#define ACC_FLUSH_PERSISTENT (1u << 9)
#define WC_FLUSH 8
#define WC_ATOMIC_WRITE 9

#define CHILD_SECONDS 60
#define POLL_SECONDS 10
#define UD_QKEY 0x11111111
#define GRH_BYTES 40

static const char *dev_name = "rxe0";
static int gid_index = 1;

/* What the device reports (queried once, in the parent). */
static struct {
	uint64_t cap_ex;
	int atomic_write, flush_global, flush_persistent;
	uint64_t odp_general;
	uint32_t rc_odp, ud_odp;
	int odp, odp_implicit;
	uint32_t max_msg_sz;
} F;

/* ---- tokens */

static const char *errno_name(int e)
{
	static char s[32];

	switch (e) {
	case EINVAL: return "EINVAL";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case ENOSYS: return "ENOSYS";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case ENOENT: return "ENOENT";
	case EBUSY: return "EBUSY";
	case EIO: return "EIO";
	case ENOSPC: return "ENOSPC";
	case EAGAIN: return "EAGAIN";
	}
	snprintf(s, sizeof(s), "%d", e);
	return s;
}

static const char *status_name(int st)
{
	static const char *names[] = {
		"IBV_WC_SUCCESS", "IBV_WC_LOC_LEN_ERR", "IBV_WC_LOC_QP_OP_ERR", "IBV_WC_LOC_EEC_OP_ERR",
		"IBV_WC_LOC_PROT_ERR", "IBV_WC_WR_FLUSH_ERR", "IBV_WC_MW_BIND_ERR", "IBV_WC_BAD_RESP_ERR",
		"IBV_WC_LOC_ACCESS_ERR", "IBV_WC_REM_INV_REQ_ERR", "IBV_WC_REM_ACCESS_ERR", "IBV_WC_REM_OP_ERR",
		"IBV_WC_RETRY_EXC_ERR", "IBV_WC_RNR_RETRY_EXC_ERR", "IBV_WC_LOC_RDD_VIOL_ERR",
		"IBV_WC_REM_INV_RD_REQ_ERR", "IBV_WC_REM_ABORT_ERR", "IBV_WC_INV_EECN_ERR",
		"IBV_WC_INV_EEC_STATE_ERR", "IBV_WC_FATAL_ERR", "IBV_WC_RESP_TIMEOUT_ERR", "IBV_WC_GENERAL_ERR",
	};
	static char s[32];

	if (st >= 0 && st < (int)(sizeof(names) / sizeof(names[0])))
		return names[st];
	snprintf(s, sizeof(s), "%d", st);
	return s;
}

static const char *signal_name(int sig)
{
	static char s[16];

	switch (sig) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGABRT: return "SIGABRT";
	case SIGILL: return "SIGILL";
	case SIGFPE: return "SIGFPE";
	case SIGKILL: return "SIGKILL";
	case SIGPIPE: return "SIGPIPE";
	}
	snprintf(s, sizeof(s), "SIG%d", sig);
	return s;
}

/* ---- the child's side */

static const char *cur_step = "start";

static void at(const char *step)
{
	cur_step = step;
	say("at %s", step);
}

/* The case's outcome; ends the child. Steps have no spaces. */
static void outcome(const char *token)
{
	say("result %s at=%s", token, cur_step);
	_exit(0);
}

static void outcome_errno(int e)
{
	char t[48];

	snprintf(t, sizeof(t), "errno=%s", errno_name(e));
	outcome(t);
}

/* The harness itself could not build the case. */
static void setup_failed(int err)
{
	say("result setup-failed errno=%s at=%s", errno_name(err), cur_step);
	_exit(0);
}

/* Waits for one completion on cq; a missing one or an error status is the
 * case's outcome; a success of another opcode than `opcode` (-1: any) too. */
static void expect_wc(struct ibv_cq *cq, int opcode, double secs)
{
	struct ibv_wc wc;
	char t[48];

	if (!poll_one(cq, &wc, secs))
		outcome("timeout");
	if (wc.status != IBV_WC_SUCCESS) {
		snprintf(t, sizeof(t), "status=%s", status_name(wc.status));
		outcome(t);
	}
	if (opcode >= 0 && (int)wc.opcode != opcode) {
		snprintf(t, sizeof(t), "opcode=%d", (int)wc.opcode);
		outcome(t);
	}
}

static void check_bytes(const void *got, const void *want, size_t n)
{
	const unsigned char *g = got, *w = want;

	for (size_t i = 0; i < n; i++) {
		if (g[i] != w[i]) {
			say("result data-mismatch byte=%zu at=%s", i, cur_step);
			_exit(0);
		}
	}
}

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)(seed + i * 7 + (i >> 9));
}

/* Fresh anonymous memory; untouched (no pages yet) unless filled. */
static void *mk_buf(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		setup_failed(errno);
	return p;
}

struct env {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *a, *b;	/* RC: a sends to b; UD: a sends to b */
	struct ibv_qp_ex *ax;	/* a's extended API, when made with send ops */
	struct ibv_srq *srq;	/* b's receives, when asked */
	struct ibv_ah *ah;	/* UD: to our own GID */
	union ibv_gid gid;
};

static void base(struct env *e)
{
	at("open");
	e->ctx = open_dev(dev_name);
	if (!e->ctx)
		setup_failed(errno);
	at("alloc_pd");
	e->pd = ibv_alloc_pd(e->ctx);
	if (!e->pd)
		setup_failed(errno);
	at("create_cq");
	e->scq = ibv_create_cq(e->ctx, 64, NULL, NULL, 0);
	e->rcq = ibv_create_cq(e->ctx, 64, NULL, NULL, 0);
	if (!e->scq || !e->rcq)
		setup_failed(errno);
	at("query_gid");
	if (ibv_query_gid(e->ctx, 1, gid_index, &e->gid))
		setup_failed(errno ? errno : EIO);
}

/* A registration whose refusal is the case's outcome (at=<step>). */
static struct ibv_mr *reg_or_outcome(struct env *e, const char *step, void *p, size_t n, unsigned access)
{
	struct ibv_mr *mr;

	at(step);
	mr = ibv_reg_mr(e->pd, p, n, access);
	if (!mr)
		outcome_errno(errno ? errno : EIO);
	return mr;
}

/* A registration the harness needs. */
static struct ibv_mr *reg(struct env *e, void *p, size_t n, unsigned access)
{
	struct ibv_mr *mr;

	at("reg_mr");
	mr = ibv_reg_mr(e->pd, p, n, access);
	if (!mr)
		setup_failed(errno ? errno : EIO);
	return mr;
}

#define LRW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)
#define ALL_REMOTE (LRW | IBV_ACCESS_REMOTE_ATOMIC)

/* RC QP to RTS, connected to remote_qpn on our own GID (rxe loops traffic to
 * its own GID back). Returns 0 or the failing errno. */
static int rc_connect(struct env *e, struct ibv_qp *qp, uint32_t remote_qpn, unsigned access)
{
	return rc_loopback(qp, remote_qpn, &e->gid, gid_index, access);
}

/* An RC pair. send_ops != 0: a is made with ibv_create_qp_ex and those ops,
 * and its refusal is the case's outcome (at=create_qp_ex). b (the
 * responder) gets qp_access; use_srq: b receives through an SRQ. */
static void rc_pair(struct env *e, uint64_t send_ops, unsigned qp_access, int use_srq)
{
	struct ibv_qp_init_attr_ex ia = { 0 };
	int rc;

	base(e);
	if (use_srq) {
		struct ibv_srq_init_attr sa = { .attr = { .max_wr = 16, .max_sge = 1 } };

		at("create_srq");
		e->srq = ibv_create_srq(e->pd, &sa);
		if (!e->srq)
			setup_failed(errno);
	}
	ia.send_cq = e->scq;
	ia.recv_cq = e->rcq;
	ia.qp_type = IBV_QPT_RC;
	ia.sq_sig_all = 1;
	ia.cap = (struct ibv_qp_cap){ .max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 2, .max_recv_sge = 2 };
	ia.comp_mask = IBV_QP_INIT_ATTR_PD;
	ia.pd = e->pd;
	if (send_ops) {
		ia.comp_mask |= IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
		ia.send_ops_flags = send_ops;
		at("create_qp_ex");
		e->a = ibv_create_qp_ex(e->ctx, &ia);
		if (!e->a)
			outcome_errno(errno ? errno : EIO);
		e->ax = ibv_qp_to_qp_ex(e->a);
		if (!e->ax)
			setup_failed(EIO);
	} else {
		at("create_qp");
		e->a = ibv_create_qp(e->pd, (struct ibv_qp_init_attr *)&ia);
		if (!e->a)
			setup_failed(errno);
	}
	ia.srq = e->srq;
	at("create_qp_b");
	e->b = ibv_create_qp(e->pd, (struct ibv_qp_init_attr *)&ia);
	if (!e->b)
		setup_failed(errno);
	at("connect");
	if ((rc = rc_connect(e, e->a, e->b->qp_num, ALL_REMOTE)) || (rc = rc_connect(e, e->b, e->a->qp_num, qp_access)))
		setup_failed(rc);
}

/* Two UD QPs in RTS, a sends to b; an AH to our own GID. */
static void ud_pair(struct env *e)
{
	struct ibv_qp_init_attr ia = { 0 };
	struct ibv_ah_attr aa = { .is_global = 1, .port_num = 1 };
	struct ibv_qp **qps[2] = { &e->a, &e->b };

	base(e);
	ia.send_cq = e->scq;
	ia.recv_cq = e->rcq;
	ia.qp_type = IBV_QPT_UD;
	ia.sq_sig_all = 1;
	ia.cap = (struct ibv_qp_cap){ .max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1 };
	for (int i = 0; i < 2; i++) {
		struct ibv_qp *qp;
		int rc;

		at("create_qp_ud");
		qp = *qps[i] = ibv_create_qp(e->pd, &ia);
		if (!qp)
			setup_failed(errno);
		at("modify_ud");
		if ((rc = ud_ready(qp, UD_QKEY)))
			setup_failed(rc);
	}
	aa.grh.dgid = e->gid;
	aa.grh.sgid_index = gid_index;
	aa.grh.hop_limit = 1;
	at("create_ah");
	e->ah = ibv_create_ah(e->pd, &aa);
	if (!e->ah)
		setup_failed(errno);
}

static void post_send_or_outcome(struct ibv_qp *qp, struct ibv_send_wr *w)
{
	struct ibv_send_wr *bad = NULL;
	int rc = ibv_post_send(qp, w, &bad);

	if (rc)
		outcome_errno(rc);
}

static void post_recv1(struct env *e, struct ibv_qp *qp, void *p, uint32_t n, uint32_t lkey)
{
	struct ibv_sge s = { (uintptr_t)p, n, lkey };
	struct ibv_recv_wr w = { .wr_id = 2, .sg_list = &s, .num_sge = 1 }, *bad;
	int rc;

	at(e->srq ? "post_srq_recv" : "post_recv");
	rc = e->srq ? ibv_post_srq_recv(e->srq, &w, &bad) : ibv_post_recv(qp, &w, &bad);
	if (rc)
		outcome_errno(rc);
}

/* One signaled RDMA write through ibv_post_send, completed. */
static void rdma_write(struct env *e, void *src, uint32_t n, uint32_t lkey, uint64_t raddr, uint32_t rkey, double secs)
{
	struct ibv_sge s = { (uintptr_t)src, n, lkey };
	struct ibv_send_wr w = { .wr_id = 1, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
				 .send_flags = IBV_SEND_SIGNALED };

	w.wr.rdma.remote_addr = raddr;
	w.wr.rdma.rkey = rkey;
	at("rdma_write");
	post_send_or_outcome(e->a, &w);
	at("rdma_write_wc");
	expect_wc(e->scq, IBV_WC_RDMA_WRITE, secs);
}

/* ---- expectations (from the device, in the parent) */

static const char *exp_ok(void) { return "ok"; }
static const char *exp_rejected(void) { return "rejected"; }

static const char *exp_atomic_write(void) { return F.atomic_write ? "ok" : "errno=EOPNOTSUPP"; }
static const char *exp_atomic_write_misaligned(void)
{
	/* The responder checks the alignment (IBA A19.4.2): a NAK, invalid request. */
	return F.atomic_write ? "status=IBV_WC_REM_INV_REQ_ERR" : "errno=EOPNOTSUPP";
}

/* Without ODP the core refuses the access flag (ib_check_mr_access): with
 * EINVAL before Linux 6.2, EOPNOTSUPP since. rxe reports the flush
 * capabilities from 6.2 on, so they tell the two apart. */
static const char *odp_refused(void)
{
	return F.flush_global || F.flush_persistent ? "errno=EOPNOTSUPP" : "errno=EINVAL";
}
/* ODP data paths: the registration is refused without ODP; with it, each
 * case needs its transport capability bit. */
static const char *odp_exp(uint32_t caps, uint32_t need)
{
	if (!F.odp)
		return odp_refused();
	return (caps & need) == need ? "ok" : "skip";
}
static const char *exp_odp_reg(void) { return F.odp ? "ok" : odp_refused(); }
static const char *exp_odp_implicit(void)
{
	/* A device with ODP but without implicit ODP: refused with EOPNOTSUPP
	 * (measured on 7.3.4; rxe_odp_mr_init_user itself would say EINVAL). */
	if (!F.odp)
		return odp_refused();
	return F.odp_implicit ? "ok" : "errno=EOPNOTSUPP";
}
static const char *exp_odp_rc_send_recv(void) { return odp_exp(F.rc_odp, IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV); }
static const char *exp_odp_rc_write(void) { return odp_exp(F.rc_odp, IBV_ODP_SUPPORT_WRITE); }
static const char *exp_odp_rc_read(void) { return odp_exp(F.rc_odp, IBV_ODP_SUPPORT_READ); }
static const char *exp_odp_rc_atomic(void) { return odp_exp(F.rc_odp, IBV_ODP_SUPPORT_ATOMIC); }
static const char *exp_odp_srq(void) { return odp_exp(F.rc_odp, IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_SRQ_RECV); }
static const char *exp_odp_ud(void) { return odp_exp(F.ud_odp, IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV); }
/* Without ODP there is nothing to prefetch: the kernel's rxe then has no
 * advise_mr (the case advises a pinned MR). */
static const char *exp_advise(void) { return F.odp ? "ok" : "errno=EOPNOTSUPP"; }

#ifdef FEATURES_V45
static int flush_any(void) { return F.flush_global || F.flush_persistent; }
static const char *exp_flush_create(void) { return flush_any() ? "ok" : "errno=EOPNOTSUPP"; }
static const char *exp_flush_global(void) { return F.flush_global ? "ok" : "errno=EOPNOTSUPP"; }
/* Before 6.2 the kernel does not know the access bit (EINVAL); from 6.2 on
 * rxe accepts it. */
static const char *exp_reg_flush_global(void) { return F.flush_global ? "ok" : "errno=EINVAL"; }
/* Unknown bit before 6.2; from 6.2 rxe refuses FLUSH_PERSISTENT on memory
 * that is not persistent memory (rxe_mr_fill_pages_from_sgt): EINVAL both. */
static const char *exp_reg_flush_persistent(void) { return "errno=EINVAL"; }
/* The MR lacks FLUSH_PERSISTENT: the responder's rkey check fails. */
static const char *exp_flush_persistent_no_access(void)
{
	return F.flush_persistent ? "status=IBV_WC_REM_ACCESS_ERR" : "errno=EOPNOTSUPP";
}
/* The responder QP lacks FLUSH_GLOBAL in its access flags: invalid request. */
static const char *exp_flush_qp_no_access(void)
{
	return F.flush_global ? "status=IBV_WC_REM_INV_REQ_ERR" : "errno=EOPNOTSUPP";
}
#endif

/* ---- the cases: each runs in its own child */

#define SMALL 4096

/* Atomic write: QP creation alone. */
static void atomic_write_create_qp(void)
{
	struct env e = { 0 };

	rc_pair(&e, IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_ATOMIC_WRITE, ALL_REMOTE, 0);
	outcome("ok");
}

/* Atomic write of 8 bytes at remote offset `off` of a 4 KiB MR filled with
 * 0x11; the rest of the MR must stay as it was. */
static void atomic_write_at(size_t off)
{
	struct env e = { 0 };
	unsigned char *remote = mk_buf(SMALL), before[SMALL];
	uint64_t value = 0x0123456789abcdefull;
	struct ibv_wc wc;
	struct ibv_mr *rmr;
	int rc;

	memset(remote, 0x11, SMALL);
	memcpy(before, remote, SMALL);
	rc_pair(&e, IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_ATOMIC_WRITE, ALL_REMOTE, 0);
	/* The responder checks REMOTE_WRITE on the QP and the MR. */
	rmr = reg(&e, remote, SMALL, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	at("wr_atomic_write");
	ibv_wr_start(e.ax);
	e.ax->wr_id = 7;
	e.ax->wr_flags = IBV_SEND_SIGNALED;
	ibv_wr_atomic_write(e.ax, rmr->rkey, (uintptr_t)remote + off, &value);
	at("wr_complete");
	rc = ibv_wr_complete(e.ax);
	if (rc)
		outcome_errno(rc);
	at("atomic_write_wc");
	if (!poll_one(e.scq, &wc, POLL_SECONDS))
		outcome("timeout");
	if (wc.status != IBV_WC_SUCCESS) {
		char t[48];

		/* An error must leave the target as it was. */
		at("atomic_write_untouched");
		check_bytes(remote, before, SMALL);
		snprintf(t, sizeof(t), "status=%s", status_name(wc.status));
		outcome(t);
	}
	if (wc.opcode != WC_ATOMIC_WRITE) {
		char t[48];

		snprintf(t, sizeof(t), "opcode=%d", (int)wc.opcode);
		outcome(t);
	}
	at("atomic_write_data");
	memcpy(before + off, &value, 8);
	check_bytes(remote, before, SMALL);
	outcome("ok");
}
static void atomic_write_8_bytes(void) { atomic_write_at(8); }
/* 4 bytes off the 8-byte alignment the responder requires. */
static void atomic_write_misaligned(void) { atomic_write_at(4); }

#ifdef FEATURES_V45
#define FLUSH_OPS (IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_FLUSH)

static unsigned flush_qp_access(void)
{
	/* Flush access bits only where the kernel knows them. */
	return ALL_REMOTE | (F.flush_global ? ACC_FLUSH_GLOBAL : 0) | (F.flush_persistent ? ACC_FLUSH_PERSISTENT : 0);
}

static void flush_create_qp(void)
{
	struct env e = { 0 };

	rc_pair(&e, FLUSH_OPS, flush_qp_access(), 0);
	outcome("ok");
}

static void flush_reg(unsigned extra)
{
	struct env e = { 0 };
	void *p = mk_buf(SMALL);

	memset(p, 0x22, SMALL);
	base(&e);
	reg_or_outcome(&e, "reg_mr_flush", p, SMALL, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | extra);
	outcome("ok");
}
static void flush_reg_mr_global(void) { flush_reg(ACC_FLUSH_GLOBAL); }
static void flush_reg_mr_persistent(void) { flush_reg(ACC_FLUSH_PERSISTENT); }

/* An RDMA write of 4 KiB, then a flush of `type` at `level`; the flush's
 * completion, then the remote memory. */
static void flush_after_write(uint8_t type, uint8_t level, unsigned qp_access)
{
	struct env e = { 0 };
	unsigned char *src = mk_buf(SMALL), *remote = mk_buf(2 * SMALL);
	struct ibv_mr *smr, *rmr;
	int rc;

	fill(src, SMALL, 3);
	memset(remote, 0, 2 * SMALL);
	rc_pair(&e, FLUSH_OPS, qp_access, 0);
	smr = reg(&e, src, SMALL, IBV_ACCESS_LOCAL_WRITE);
	/* Where the kernel knows no flush bits, the MR has none (the stock
	 * provider then reaches the kernel with the flush itself). */
	rmr = reg(&e, remote, 2 * SMALL, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
		  (F.flush_global ? ACC_FLUSH_GLOBAL : 0));
	rdma_write(&e, src, SMALL, smr->lkey, (uintptr_t)remote, rmr->rkey, POLL_SECONDS);
	at("wr_flush");
	ibv_wr_start(e.ax);
	e.ax->wr_id = 9;
	e.ax->wr_flags = IBV_SEND_SIGNALED;
	if (level == IBV_FLUSH_MR)
		ibv_wr_flush(e.ax, rmr->rkey, (uintptr_t)remote, 2 * SMALL, type, level);
	else
		ibv_wr_flush(e.ax, rmr->rkey, (uintptr_t)remote, SMALL, type, level);
	at("wr_complete");
	rc = ibv_wr_complete(e.ax);
	if (rc)
		outcome_errno(rc);
	at("flush_wc");
	expect_wc(e.scq, WC_FLUSH, POLL_SECONDS);
	at("flush_data");
	check_bytes(remote, src, SMALL);
	outcome("ok");
}
static void flush_global_range(void) { flush_after_write(IBV_FLUSH_GLOBAL, IBV_FLUSH_RANGE, flush_qp_access()); }
static void flush_global_mr(void) { flush_after_write(IBV_FLUSH_GLOBAL, IBV_FLUSH_MR, flush_qp_access()); }
static void flush_persistent_mr_without_access(void)
{
	flush_after_write(IBV_FLUSH_PERSISTENT, IBV_FLUSH_RANGE, flush_qp_access());
}
static void flush_global_qp_without_access(void) { flush_after_write(IBV_FLUSH_GLOBAL, IBV_FLUSH_RANGE, ALL_REMOTE); }
#endif

/* ---- on-demand paging */

#define ODP_ACCESS (IBV_ACCESS_ON_DEMAND | ALL_REMOTE)
#define ODP_LEN (16 * 1024)

static void odp_reg_explicit(void)
{
	struct env e = { 0 };
	void *p = mk_buf(64 * 1024);

	base(&e);
	reg_or_outcome(&e, "reg_mr_odp", p, 64 * 1024, ODP_ACCESS);
	outcome("ok");
}

static void odp_reg_implicit(void)
{
	struct env e = { 0 };

	base(&e);
	reg_or_outcome(&e, "reg_mr_odp_implicit", NULL, SIZE_MAX, IBV_ACCESS_ON_DEMAND | IBV_ACCESS_LOCAL_WRITE);
	outcome("ok");
}

/* The data cases register their ODP MRs first (the refusal on a kernel
 * without ODP is their outcome), on memory the kernel has to fault in: the
 * destination is never touched before the transfer. */
static void odp_rc_send_recv_on(int use_srq)
{
	struct env e = { 0 };
	unsigned char *src = mk_buf(ODP_LEN), *dst = mk_buf(ODP_LEN);
	struct ibv_mr *smr, *dmr;

	fill(src, ODP_LEN, 5);
	rc_pair(&e, 0, ALL_REMOTE, use_srq);
	smr = reg_or_outcome(&e, "reg_mr_odp_src", src, ODP_LEN, ODP_ACCESS);
	dmr = reg_or_outcome(&e, "reg_mr_odp_dst", dst, ODP_LEN, ODP_ACCESS);
	post_recv1(&e, e.b, dst, ODP_LEN, dmr->lkey);
	{
		struct ibv_sge s = { (uintptr_t)src, ODP_LEN, smr->lkey };
		struct ibv_send_wr w = { .wr_id = 1, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
					 .send_flags = IBV_SEND_SIGNALED };

		at("post_send");
		post_send_or_outcome(e.a, &w);
	}
	at("send_wc");
	expect_wc(e.scq, IBV_WC_SEND, POLL_SECONDS);
	at("recv_wc");
	expect_wc(e.rcq, IBV_WC_RECV, POLL_SECONDS);
	at("recv_data");
	check_bytes(dst, src, ODP_LEN);
	outcome("ok");
}
static void odp_rc_send_recv(void) { odp_rc_send_recv_on(0); }
static void odp_srq_recv(void) { odp_rc_send_recv_on(1); }

static void odp_rc_write(void)
{
	struct env e = { 0 };
	unsigned char *src = mk_buf(ODP_LEN), *dst = mk_buf(ODP_LEN);
	struct ibv_mr *smr, *dmr;

	fill(src, ODP_LEN, 9);
	rc_pair(&e, 0, ALL_REMOTE, 0);
	smr = reg_or_outcome(&e, "reg_mr_odp_src", src, ODP_LEN, ODP_ACCESS);
	dmr = reg_or_outcome(&e, "reg_mr_odp_dst", dst, ODP_LEN, ODP_ACCESS);
	rdma_write(&e, src, ODP_LEN, smr->lkey, (uintptr_t)dst, dmr->rkey, POLL_SECONDS);
	at("write_data");
	check_bytes(dst, src, ODP_LEN);
	outcome("ok");
}

static void odp_rc_read(void)
{
	struct env e = { 0 };
	unsigned char *remote = mk_buf(ODP_LEN), *local = mk_buf(ODP_LEN);
	struct ibv_mr *rmr, *lmr;

	fill(remote, ODP_LEN, 13);
	rc_pair(&e, 0, ALL_REMOTE, 0);
	rmr = reg_or_outcome(&e, "reg_mr_odp_remote", remote, ODP_LEN, ODP_ACCESS);
	lmr = reg_or_outcome(&e, "reg_mr_odp_local", local, ODP_LEN, ODP_ACCESS);
	{
		struct ibv_sge s = { (uintptr_t)local, ODP_LEN, lmr->lkey };
		struct ibv_send_wr w = { .wr_id = 1, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_READ,
					 .send_flags = IBV_SEND_SIGNALED };

		w.wr.rdma.remote_addr = (uintptr_t)remote;
		w.wr.rdma.rkey = rmr->rkey;
		at("rdma_read");
		post_send_or_outcome(e.a, &w);
	}
	at("rdma_read_wc");
	expect_wc(e.scq, IBV_WC_RDMA_READ, POLL_SECONDS);
	at("read_data");
	check_bytes(local, remote, ODP_LEN);
	outcome("ok");
}

static void odp_rc_fetch_add(void)
{
	struct env e = { 0 };
	uint64_t *remote = mk_buf(SMALL), *local = mk_buf(SMALL);
	struct ibv_mr *rmr, *lmr;
	uint64_t want;

	remote[1] = 0x1000;
	rc_pair(&e, 0, ALL_REMOTE, 0);
	rmr = reg_or_outcome(&e, "reg_mr_odp_remote", remote, SMALL, ODP_ACCESS);
	lmr = reg_or_outcome(&e, "reg_mr_odp_local", local, SMALL, ODP_ACCESS);
	{
		struct ibv_sge s = { (uintptr_t)local, 8, lmr->lkey };
		struct ibv_send_wr w = { .wr_id = 1, .sg_list = &s, .num_sge = 1,
					 .opcode = IBV_WR_ATOMIC_FETCH_AND_ADD, .send_flags = IBV_SEND_SIGNALED };

		w.wr.atomic.remote_addr = (uintptr_t)&remote[1];
		w.wr.atomic.rkey = rmr->rkey;
		w.wr.atomic.compare_add = 5;
		at("fetch_add");
		post_send_or_outcome(e.a, &w);
	}
	at("fetch_add_wc");
	expect_wc(e.scq, IBV_WC_FETCH_ADD, POLL_SECONDS);
	at("fetch_add_original");
	want = 0x1000;
	check_bytes(&local[0], &want, 8);
	at("fetch_add_remote");
	want = 0x1005;
	check_bytes(&remote[1], &want, 8);
	outcome("ok");
}

static void odp_ud_send_recv(void)
{
	struct env e = { 0 };
	enum { N = 512 };
	unsigned char *src = mk_buf(SMALL), *dst = mk_buf(SMALL);
	struct ibv_mr *smr, *dmr;

	fill(src, N, 17);
	ud_pair(&e);
	smr = reg_or_outcome(&e, "reg_mr_odp_src", src, SMALL, ODP_ACCESS);
	dmr = reg_or_outcome(&e, "reg_mr_odp_dst", dst, SMALL, ODP_ACCESS);
	post_recv1(&e, e.b, dst, GRH_BYTES + N, dmr->lkey);
	{
		struct ibv_sge s = { (uintptr_t)src, N, smr->lkey };
		struct ibv_send_wr w = { .wr_id = 1, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
					 .send_flags = IBV_SEND_SIGNALED };

		w.wr.ud.ah = e.ah;
		w.wr.ud.remote_qpn = e.b->qp_num;
		w.wr.ud.remote_qkey = UD_QKEY;
		at("post_send_ud");
		post_send_or_outcome(e.a, &w);
	}
	at("send_wc");
	expect_wc(e.scq, IBV_WC_SEND, POLL_SECONDS);
	at("recv_wc");
	expect_wc(e.rcq, IBV_WC_RECV, POLL_SECONDS);
	at("recv_data");
	check_bytes(dst + GRH_BYTES, src, N);
	outcome("ok");
}

/* ibv_advise_mr with IBV_ADVISE_MR_FLAG_FLUSH (synchronous) on an ODP MR
 * that was never touched; without ODP on the device, on a pinned MR. */
static void odp_advise(enum ibv_advise_mr_advice advice)
{
	struct env e = { 0 };
	enum { N = 64 * 1024 };
	void *p = mk_buf(N);
	struct ibv_mr *mr;
	int rc;

	base(&e);
	if (F.odp) {
		mr = reg_or_outcome(&e, "reg_mr_odp", p, N, IBV_ACCESS_ON_DEMAND | IBV_ACCESS_LOCAL_WRITE);
	} else {
		memset(p, 0, N);
		mr = reg(&e, p, N, IBV_ACCESS_LOCAL_WRITE);
	}
	{
		struct ibv_sge s = { (uintptr_t)p, N, mr->lkey };

		at("advise_mr");
		rc = ibv_advise_mr(e.pd, advice, IBV_ADVISE_MR_FLAG_FLUSH, &s, 1);
	}
	if (rc)
		outcome_errno(rc);
	outcome("ok");
}
static void odp_advise_mr_prefetch(void) { odp_advise(IBV_ADVISE_MR_ADVICE_PREFETCH); }
static void odp_advise_mr_prefetch_write(void) { odp_advise(IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE); }

/* ---- the message size limit */

#define FEW_MIB (4u << 20)
#define REAL_LIMIT (64u << 20)

/* An RDMA write of max_msg_sz + 1 bytes (one SGE). Up to a limit of 64 MiB
 * both buffers are real (6.1: 8 MiB + 1 byte, which 6.1's rxe executes).
 * Above it (2 GiB, 6.12 on) they are 4 MiB: rxe's requester fails a message
 * of 2^31 bytes or more at its first packet ("Error during finish packet":
 * the QP goes to the error state and the WR completes with
 * IBV_WC_WR_FLUSH_ERR), before reading past its MR, and its responder
 * checks a RETH length over 2^31 before the rkey range. rejected: refused at
 * post with EINVAL, or completed with an error status. */
static void msg_size_max_plus_1(void)
{
	struct env e = { 0 };
	uint64_t len = (uint64_t)F.max_msg_sz + 1;
	size_t buf_len = len <= REAL_LIMIT ? (len + 4095) & ~4095ull : FEW_MIB;
	unsigned char *src = mk_buf(buf_len), *dst = mk_buf(buf_len);
	struct ibv_mr *smr, *dmr;
	struct ibv_wc wc;
	int rc;

	at("length");
	if (len > UINT32_MAX)
		setup_failed(EOVERFLOW);
	memset(src, 0x5a, buf_len);
	memset(dst, 0, buf_len);
	rc_pair(&e, 0, ALL_REMOTE, 0);
	smr = reg(&e, src, buf_len, IBV_ACCESS_LOCAL_WRITE);
	dmr = reg(&e, dst, buf_len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	{
		struct ibv_sge s = { (uintptr_t)src, (uint32_t)len, smr->lkey };
		struct ibv_send_wr w = { .wr_id = 1, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
					 .send_flags = IBV_SEND_SIGNALED }, *bad = NULL;

		w.wr.rdma.remote_addr = (uintptr_t)dst;
		w.wr.rdma.rkey = dmr->rkey;
		at("post_send");
		rc = ibv_post_send(e.a, &w, &bad);
	}
	if (rc == EINVAL) {
		say("result rejected how=errno=EINVAL length=%llu", (unsigned long long)len);
		_exit(0);
	}
	if (rc)
		outcome_errno(rc);
	at("write_wc");
	if (!poll_one(e.scq, &wc, 4 * POLL_SECONDS))
		outcome("timeout");
	if (wc.status != IBV_WC_SUCCESS) {
		say("result rejected how=status=%s length=%llu", status_name(wc.status), (unsigned long long)len);
		_exit(0);
	}
	say("result ok length=%llu at=%s", (unsigned long long)len, cur_step);
	_exit(0);
}

/* A write of a few MiB (4 MiB, or max_msg_sz if smaller) completes and lands. */
static void msg_size_few_mib(void)
{
	struct env e = { 0 };
	uint32_t len = F.max_msg_sz < FEW_MIB ? F.max_msg_sz : FEW_MIB;
	unsigned char *src = mk_buf(FEW_MIB), *dst = mk_buf(FEW_MIB);
	struct ibv_mr *smr, *dmr;

	fill(src, len, 21);
	memset(dst, 0, FEW_MIB);
	rc_pair(&e, 0, ALL_REMOTE, 0);
	smr = reg(&e, src, FEW_MIB, IBV_ACCESS_LOCAL_WRITE);
	dmr = reg(&e, dst, FEW_MIB, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	rdma_write(&e, src, len, smr->lkey, (uintptr_t)dst, dmr->rkey, 4 * POLL_SECONDS);
	at("write_data");
	check_bytes(dst, src, len);
	say("result ok length=%u at=%s", len, cur_step);
	_exit(0);
}

static const struct kase {
	const char *name;
	const char *(*expect)(void);
	void (*run)(void);
} cases[] = {
	{ "atomic_write.create_qp", exp_atomic_write, atomic_write_create_qp },
	{ "atomic_write.8_bytes", exp_atomic_write, atomic_write_8_bytes },
	{ "atomic_write.misaligned", exp_atomic_write_misaligned, atomic_write_misaligned },
#ifdef FEATURES_V45
	{ "flush.create_qp", exp_flush_create, flush_create_qp },
	{ "flush.reg_mr_global", exp_reg_flush_global, flush_reg_mr_global },
	{ "flush.reg_mr_persistent", exp_reg_flush_persistent, flush_reg_mr_persistent },
	{ "flush.global_range", exp_flush_global, flush_global_range },
	{ "flush.global_mr", exp_flush_global, flush_global_mr },
	{ "flush.persistent_mr_without_access", exp_flush_persistent_no_access, flush_persistent_mr_without_access },
	{ "flush.global_qp_without_access", exp_flush_qp_no_access, flush_global_qp_without_access },
#endif
	{ "odp.reg_explicit", exp_odp_reg, odp_reg_explicit },
	{ "odp.reg_implicit", exp_odp_implicit, odp_reg_implicit },
	{ "odp.rc_send_recv", exp_odp_rc_send_recv, odp_rc_send_recv },
	{ "odp.rc_write", exp_odp_rc_write, odp_rc_write },
	{ "odp.rc_read", exp_odp_rc_read, odp_rc_read },
	{ "odp.rc_fetch_add", exp_odp_rc_atomic, odp_rc_fetch_add },
	{ "odp.srq_recv", exp_odp_srq, odp_srq_recv },
	{ "odp.ud_send_recv", exp_odp_ud, odp_ud_send_recv },
	{ "odp.advise_mr_prefetch", exp_advise, odp_advise_mr_prefetch },
	{ "odp.advise_mr_prefetch_write", exp_advise, odp_advise_mr_prefetch_write },
	{ "msg_size.max_plus_1", exp_rejected, msg_size_max_plus_1 },
	{ "msg_size.few_mib", exp_ok, msg_size_few_mib },
};

/* Runs one case in a child and prints its line. */
static void run_case(const struct kase *c)
{
	const char *expect = c->expect();
	char out[4096], result[512], last_at[128];
	int status;

	if (!strcmp(expect, "skip")) {
		printf("case %s expect=skip got=skip\n", c->name);
		return;
	}
	status = run_in_child(c->run, CHILD_SECONDS, out, sizeof(out));
	read_case_lines(out, result, sizeof(result), last_at, sizeof(last_at));
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		printf("case %s expect=%s got=timeout at=%s\n", c->name, expect, last_at);
	else if (WIFSIGNALED(status))
		printf("case %s expect=%s got=%s at=%s\n", c->name, expect, signal_name(WTERMSIG(status)), last_at);
	else if (!result[0])
		printf("case %s expect=%s got=setup-failed exit=%d at=%s\n", c->name, expect, WEXITSTATUS(status), last_at);
	else
		printf("case %s expect=%s got=%s\n", c->name, expect, result);
}

/* What the device reports; 0 or the failing step's errno. */
static int query(void)
{
	struct ibv_context *ctx = open_dev(dev_name);
	struct ibv_device_attr_ex ax;
	struct ibv_port_attr pa;
	struct utsname un;
	int rc;

	if (!ctx) {
		fprintf(stderr, "cannot open %s: %s\n", dev_name, strerror(errno));
		return errno ? errno : EIO;
	}
	memset(&ax, 0, sizeof(ax));
	if ((rc = ibv_query_device_ex(ctx, NULL, &ax))) {
		fprintf(stderr, "ibv_query_device_ex: %s\n", strerror(rc));
		return rc;
	}
	if ((rc = ibv_query_port(ctx, 1, &pa))) {
		fprintf(stderr, "ibv_query_port: %s\n", strerror(rc));
		return rc;
	}
	F.cap_ex = ax.device_cap_flags_ex;
	F.atomic_write = !!(F.cap_ex & CAP_ATOMIC_WRITE);
	F.flush_global = !!(F.cap_ex & CAP_FLUSH_GLOBAL);
	F.flush_persistent = !!(F.cap_ex & CAP_FLUSH_PERSISTENT);
	F.odp_general = ax.odp_caps.general_caps;
	F.rc_odp = ax.odp_caps.per_transport_caps.rc_odp_caps;
	F.ud_odp = ax.odp_caps.per_transport_caps.ud_odp_caps;
	F.odp = !!(F.odp_general & IBV_ODP_SUPPORT);
	F.odp_implicit = !!(F.odp_general & IBV_ODP_SUPPORT_IMPLICIT);
	F.max_msg_sz = pa.max_msg_sz;
	if (!uname(&un))
		printf("info kernel=%s\n", un.release);
	printf("info device_cap_flags_ex=%#llx\n", (unsigned long long)F.cap_ex);
	printf("info atomic_write=%s\n", F.atomic_write ? "yes" : "no");
	printf("info flush_global=%s\n", F.flush_global ? "yes" : "no");
	printf("info flush_persistent=%s\n", F.flush_persistent ? "yes" : "no");
	printf("info odp=%s\n", F.odp ? "yes" : "no");
	printf("info odp_implicit=%s\n", F.odp_implicit ? "yes" : "no");
	printf("info odp_general_caps=%#llx\n", (unsigned long long)F.odp_general);
	printf("info rc_odp_caps=%#x\n", F.rc_odp);
	printf("info ud_odp_caps=%#x\n", F.ud_odp);
	printf("info max_msg_sz=%u\n", F.max_msg_sz);
#ifdef FEATURES_V45
	printf("info flush_cases=built\n");
#else
	printf("info flush_cases=not-built\n");
#endif
	ibv_close_device(ctx);
	return 0;
}

static int selected(const char *name, int nprefix, char **prefix)
{
	if (!nprefix)
		return 1;
	for (int i = 0; i < nprefix; i++)
		if (!strncmp(name, prefix[i], strlen(prefix[i])))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	double t0 = now_s();
	int rc;

	if (argc > 1)
		dev_name = argv[1];
	if (argc > 2)
		gid_index = atoi(argv[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((rc = query()))
		return 2;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (selected(cases[i].name, argc > 3 ? argc - 3 : 0, argv + 3))
			run_case(&cases[i]);
	printf("info seconds=%.1f\n", now_s() - t0);
	return 0;
}
