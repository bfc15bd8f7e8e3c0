/*
 * Verbs after a change of credentials. Prints
 *   case <name> expect=<token> got=<token> [key=value ...]
 * tokens: ok | errno=<n> | signal=<n> | timeout | bad-completions. When a
 * case cannot run because a step it needs failed, got is that step's token
 * and at=<step> names it.
 *
 * 1. fork_child_*: as root, the parent opens the device and allocates a PD;
 *    a forked child (fork gives it new credentials, which the kernel's
 *    write(2) path refuses) uses the parent's context and PD. Expected: what
 *    the kernel decides for root, ok.
 * 2. The rest: open the device as root, set RLIMIT_MEMLOCK to <memlock>,
 *    setresgid/setresuid to 65534, then run each verb once. Expected: what
 *    the kernel decides for an unprivileged process with that limit
 *    (ib_uverbs_reg_mr checks the access flags first, then ib_umem_get gives
 *    EPERM for a limit of 0 and ENOMEM past it). The send doorbell is
 *    expected to work (the stock librxe writes it with write(2): EACCES).
 *    With a limit below one page, the pair's PD and MR are made as root
 *    before the drop (when=before_drop), as a daemon would.
 *
 * usage: privdrop <device> <gid_index> <memlock bytes>   (as root)
 */
#define _GNU_SOURCE
#include "safety.h"
#include "../lib/child_case.h"
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534
#define MSGS 5
#define MSG_LEN 32
#define PAGE 4096

static const char *dev_name = "rxe0";
static long memlock;

static void line(const char *name, const char *expect, const char *got, const char *fmt, ...)
{
	char extra[160] = "";
	va_list ap;

	if (fmt) {
		extra[0] = ' ';
		va_start(ap, fmt);
		vsnprintf(extra + 1, sizeof(extra) - 1, fmt, ap);
		va_end(ap);
	}
	printf("case %s expect=%s got=%s%s\n", name, expect, got, extra);
}

/* The outcome of a step later cases need. */
struct step {
	const char *name;
	char tok[32];
	const char *at; /* the step that failed: this one, or one it needed */
};
#define STEP(name) { name, "", name }

static void set(struct step *s, int rc)
{
	snprintf(s->tok, sizeof(s->tok), "%s", tok(rc));
	s->at = s->name;
}

static int ok(const struct step *s) { return !strcmp(s->tok, "ok"); }

/* Prints the case as blocked by the first failed step among `need` (NULL
 * terminated) and returns 1, or returns 0 when all are ok. A blocked case's
 * own step (self, may be NULL) takes over the failure, so that the cases
 * after it name the step that really failed. */
static int blocked(const char *name, const char *expect, const struct step *need[], struct step *self)
{
	for (int i = 0; need[i]; i++)
		if (!ok(need[i])) {
			line(name, expect, need[i]->tok, "at=%s", need[i]->at);
			if (self) {
				snprintf(self->tok, sizeof(self->tok), "%s", need[i]->tok);
				self->at = need[i]->at;
			}
			return 1;
		}
	return 0;
}

static char *map_pages(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	memset(p, 0, len); /* fault the pages in */
	return p;
}

/* ---- 1. a forked child on its parent's context */

static const char *fork_cases[] = { "fork_child_alloc_pd", "fork_child_dealloc_pd", "fork_child_reg_mr",
				    "fork_child_dereg_mr" };
#define FORK_CASES (sizeof(fork_cases) / sizeof(fork_cases[0]))

/* The parent's context, PD and buffer, which the forked child uses. */
static struct ibv_context *fork_ctx;
static struct ibv_pd *fork_pd;
static char *fork_buf;

static void fork_child(void)
{
	struct step spd = STEP("fork_child_alloc_pd"), smr = STEP("fork_child_reg_mr");
	const struct step *need_pd[] = { &spd, NULL }, *need_mr[] = { &smr, NULL };
	struct ibv_pd *cpd;
	struct ibv_mr *mr;

	/* Its case lines go to the parent through the pipe. */
	if (dup2(case_fd, STDOUT_FILENO) < 0)
		_exit(2);
	setvbuf(stdout, NULL, _IOLBF, 0);
	errno = 0;
	cpd = ibv_alloc_pd(fork_ctx);
	set(&spd, cpd ? 0 : errno);
	line(spd.name, "ok", spd.tok, NULL);
	if (!blocked("fork_child_dealloc_pd", "ok", need_pd, NULL))
		line("fork_child_dealloc_pd", "ok", tok(ibv_dealloc_pd(cpd)), NULL);
	errno = 0;
	mr = ibv_reg_mr(fork_pd, fork_buf, PAGE, IBV_ACCESS_LOCAL_WRITE);
	set(&smr, mr ? 0 : errno);
	line(smr.name, "ok", smr.tok, NULL);
	if (!blocked("fork_child_dereg_mr", "ok", need_mr, NULL))
		line("fork_child_dereg_mr", "ok", tok(ibv_dereg_mr(mr)), NULL);
	fflush(stdout);
}

static void fork_section(void)
{
	struct ibv_context *ctx = open_dev(dev_name);
	struct ibv_pd *pd = ctx ? ibv_alloc_pd(ctx) : NULL;
	char *buf = map_pages(PAGE), out[2048];
	int status;

	if (!pd) {
		fprintf(stderr, "fork section: cannot open %s or allocate a PD as root\n", dev_name);
		exit(2);
	}
	fork_ctx = ctx;
	fork_pd = pd;
	fork_buf = buf;
	status = run_in_child(fork_child, 60, out, sizeof(out));
	fputs(out, stdout);
	/* Cases the child did not get to. */
	for (unsigned i = 0; i < FORK_CASES; i++) {
		char key[64], got[32];

		snprintf(key, sizeof(key), "case %s ", fork_cases[i]);
		if (strstr(out, key))
			continue;
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
			snprintf(got, sizeof(got), "timeout");
		else if (WIFSIGNALED(status))
			snprintf(got, sizeof(got), "signal=%d", WTERMSIG(status));
		else
			snprintf(got, sizeof(got), "setup-failed");
		line(fork_cases[i], "ok", got, NULL);
	}
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	munmap(buf, PAGE);
}

/* ---- 2. after the drop */

/* What the kernel answers an unprivileged registration of len bytes. */
static const char *reg_expect(size_t len, unsigned access)
{
	if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) && !(access & IBV_ACCESS_LOCAL_WRITE))
		return "errno=22"; /* ib_check_mr_access, before any pinning */
	if (memlock == 0)
		return "errno=1"; /* can_do_mlock() */
	if ((long)((len + PAGE - 1) / PAGE) > memlock / PAGE)
		return "errno=12"; /* pinned_vm would exceed RLIMIT_MEMLOCK */
	return "ok";
}

/* reg_mr_<name> then, when registration is expected to work, dereg_mr_<name>. */
static void reg_case(const char *name, struct ibv_pd *pd, const struct step *spd, size_t len, unsigned access)
{
	const char *expect = reg_expect(len, access);
	const struct step *need_pd[] = { spd, NULL };
	char rname[64], dname[64];
	struct step smr = STEP("reg_mr");
	const struct step *need_mr[] = { &smr, NULL };
	char *buf;
	struct ibv_mr *mr;

	snprintf(rname, sizeof(rname), "reg_mr_%s", name);
	snprintf(dname, sizeof(dname), "dereg_mr_%s", name);
	if (blocked(rname, expect, need_pd, NULL)) {
		if (!strcmp(expect, "ok"))
			blocked(dname, "ok", need_pd, NULL);
		return;
	}
	buf = map_pages(len);
	errno = 0;
	mr = ibv_reg_mr(pd, buf, len, access);
	set(&smr, mr ? 0 : errno);
	line(rname, expect, smr.tok, NULL);
	if (mr)
		line(dname, "ok", tok(ibv_dereg_mr(mr)), NULL);
	else if (!strcmp(expect, "ok"))
		blocked(dname, "ok", need_mr, NULL);
	munmap(buf, len);
}

static void mw_case(const char *type_name, struct ibv_pd *pd, const struct step *spd, enum ibv_mw_type type)
{
	const struct step *need_pd[] = { spd, NULL };
	struct step smw = STEP("alloc_mw");
	const struct step *need_mw[] = { &smw, NULL };
	char aname[64], dname[64];
	struct ibv_mw *mw;

	snprintf(aname, sizeof(aname), "alloc_mw_%s", type_name);
	snprintf(dname, sizeof(dname), "dealloc_mw_%s", type_name);
	if (blocked(aname, "ok", need_pd, NULL)) {
		blocked(dname, "ok", need_pd, NULL);
		return;
	}
	errno = 0;
	mw = ibv_alloc_mw(pd, type);
	set(&smw, mw ? 0 : errno);
	line(aname, "ok", smw.tok, NULL);
	if (!blocked(dname, "ok", need_mw, NULL))
		line(dname, "ok", tok(ibv_dealloc_mw(mw)), NULL);
}

static void drop_privileges(void)
{
	struct rlimit rl = { memlock, memlock };

	if (setrlimit(RLIMIT_MEMLOCK, &rl) || setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) ||
	    setresuid(NOBODY, NOBODY, NOBODY)) {
		perror("dropping privileges");
		exit(2);
	}
}

static void drop_section(void)
{
	struct ibv_context *ctx = open_dev(dev_name);
	struct ibv_pd *pd, *root_pd = NULL, *ppd;
	struct ibv_mr *pair_mr = NULL;
	struct ibv_cq *scq, *rcq;
	struct ibv_qp *a = NULL, *b = NULL;
	char *pbuf = map_pages(PAGE);
	struct step spd = STEP("alloc_pd"), scq_s = STEP("create_cq"), sqp = STEP("create_qp"),
		    smod = STEP("modify_qp"), spmr = STEP("reg_mr_pair"), srecv = STEP("post_recv"),
		    ssend = STEP("post_send"), sppd = STEP("alloc_pd");
	int root_pair = memlock < PAGE, rc;

	if (!ctx) {
		fprintf(stderr, "cannot open %s\n", dev_name);
		exit(2);
	}
	if (root_pair) {
		/* Nothing can be pinned after the drop: the pair's memory is registered now. */
		root_pd = ibv_alloc_pd(ctx);
		pair_mr = root_pd ? ibv_reg_mr(root_pd, pbuf, PAGE, IBV_ACCESS_LOCAL_WRITE) : NULL;
		if (!pair_mr) {
			fprintf(stderr, "cannot register the pair's memory as root\n");
			exit(2);
		}
	}
	drop_privileges();

	errno = 0;
	pd = ibv_alloc_pd(ctx);
	set(&spd, pd ? 0 : errno);
	line("alloc_pd", "ok", spd.tok, NULL);
	{
		struct ibv_device_attr da;
		struct ibv_port_attr pa;

		line("query_device", "ok", tok(ibv_query_device(ctx, &da)), NULL);
		line("query_port", "ok", tok(ibv_query_port(ctx, 1, &pa)), NULL);
	}

	/* Registrations: each is deregistered before the next, so that only
	 * its own pages count against the limit. */
	reg_case("4KiB", pd, &spd, 4 << 10, IBV_ACCESS_LOCAL_WRITE);
	reg_case("64KiB", pd, &spd, 64 << 10, IBV_ACCESS_LOCAL_WRITE);
	reg_case("1MiB", pd, &spd, 1 << 20, IBV_ACCESS_LOCAL_WRITE);
	reg_case("access_none", pd, &spd, PAGE, 0);
	reg_case("access_RR", pd, &spd, PAGE, IBV_ACCESS_REMOTE_READ);
	reg_case("access_LW_RW_RR_RA_MWB", pd, &spd, PAGE,
		 IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
		 IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND);
	reg_case("access_RW_without_LW", pd, &spd, PAGE, IBV_ACCESS_REMOTE_WRITE);
	reg_case("access_RA_without_LW", pd, &spd, PAGE, IBV_ACCESS_REMOTE_ATOMIC);

	mw_case("type1", pd, &spd, IBV_MW_TYPE_1);
	mw_case("type2", pd, &spd, IBV_MW_TYPE_2);

	errno = 0;
	scq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
	rcq = scq ? ibv_create_cq(ctx, 16, NULL, NULL, 0) : NULL;
	set(&scq_s, rcq ? 0 : errno);
	line("create_cq", "ok", scq_s.tok, NULL);

	/* The loopback RC pair: on the PD made after the drop, or, with no
	 * memlock to spare, on the one made before it. */
	ppd = root_pair ? root_pd : pd;
	set(&sppd, 0);
	if (!root_pair)
		sppd = spd;
	{
		const struct step *need[] = { &sppd, &scq_s, NULL };
		if (!blocked("create_qp", "ok", need, &sqp)) {
			struct ibv_qp_init_attr ia = { .send_cq = scq, .recv_cq = rcq, .qp_type = IBV_QPT_RC, .sq_sig_all = 1,
				.cap = { .max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1 } };
			errno = 0;
			a = ibv_create_qp(ppd, &ia);
			b = a ? ibv_create_qp(ppd, &ia) : NULL;
			set(&sqp, b ? 0 : errno);
			line("create_qp", "ok", sqp.tok, NULL);
		}
	}
	{
		const struct step *need[] = { &sppd, &scq_s, &sqp, NULL };
		if (!blocked("modify_qp", "ok", need, &smod)) {
			rc = rc_connect(a, b->qp_num);
			if (!rc)
				rc = rc_connect(b, a->qp_num);
			set(&smod, rc);
			line("modify_qp", "ok", smod.tok, NULL);
		}
	}
	if (root_pair) {
		set(&spmr, 0);
		line("reg_mr_pair", "ok", spmr.tok, "when=before_drop");
	} else {
		const struct step *need[] = { &spd, NULL };
		if (!blocked("reg_mr_pair", "ok", need, &spmr)) {
			errno = 0;
			pair_mr = ibv_reg_mr(pd, pbuf, PAGE, IBV_ACCESS_LOCAL_WRITE);
			set(&spmr, pair_mr ? 0 : errno);
			line("reg_mr_pair", "ok", spmr.tok, "when=after_drop");
		}
	}
	{
		const struct step *need[] = { &sppd, &scq_s, &sqp, &smod, &spmr, NULL };
		if (!blocked("post_recv", "ok", need, &srecv)) {
			rc = 0;
			for (int i = 0; i < MSGS && !rc; i++) {
				struct ibv_sge s = { (uintptr_t)pbuf + PAGE / 2 + i * MSG_LEN, MSG_LEN, pair_mr->lkey };
				struct ibv_recv_wr w = { .wr_id = 100 + i, .sg_list = &s, .num_sge = 1 }, *bad;
				rc = ibv_post_recv(b, &w, &bad);
			}
			set(&srecv, rc);
			line("post_recv", "ok", srecv.tok, NULL);
		}
	}
	{
		const struct step *need[] = { &sppd, &scq_s, &sqp, &smod, &spmr, &srecv, NULL };
		if (!blocked("post_send", "ok", need, &ssend)) {
			rc = 0;
			for (int i = 0; i < MSGS && !rc; i++) {
				struct ibv_sge s = { (uintptr_t)pbuf + i * MSG_LEN, MSG_LEN, pair_mr->lkey };
				struct ibv_send_wr w = { .wr_id = 200 + i, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND,
							 .send_flags = IBV_SEND_SIGNALED }, *bad;
				memset(pbuf + i * MSG_LEN, 'a' + i, MSG_LEN);
				rc = ibv_post_send(a, &w, &bad);
			}
			set(&ssend, rc);
			line("post_send", "ok", ssend.tok, NULL);
		}
	}
	{
		const struct step *need[] = { &sppd, &scq_s, &sqp, &smod, &spmr, &srecv, &ssend, NULL };
		if (!blocked("completions", "ok", need, NULL)) {
			int sends = 0, recvs = 0, errors = 0, data_ok = 1, in_order = 1;
			double end = now_s() + 20;
			struct ibv_wc wc;

			while ((sends < MSGS || recvs < MSGS) && now_s() < end) {
				if (sends < MSGS && ibv_poll_cq(scq, 1, &wc) == 1) {
					errors += wc.status != IBV_WC_SUCCESS;
					in_order &= wc.wr_id == (uint64_t)(200 + sends);
					sends++;
				}
				if (recvs < MSGS && ibv_poll_cq(rcq, 1, &wc) == 1) {
					errors += wc.status != IBV_WC_SUCCESS;
					in_order &= wc.wr_id == (uint64_t)(100 + recvs) && wc.byte_len == MSG_LEN;
					recvs++;
				}
			}
			for (int i = 0; i < MSGS * MSG_LEN; i++)
				data_ok &= pbuf[PAGE / 2 + i] == 'a' + i / MSG_LEN;
			line("completions", "ok",
			     sends == MSGS && recvs == MSGS && !errors && data_ok && in_order ? "ok" : "bad-completions",
			     "sends=%d recvs=%d errors=%d in_order=%s data=%s", sends, recvs, errors,
			     in_order ? "yes" : "no", data_ok ? "ok" : "bad");
		}
	}
	{
		const struct step *need[] = { &sqp, NULL };
		if (!blocked("destroy_qp", "ok", need, NULL)) {
			rc = ibv_destroy_qp(a);
			if (!rc)
				rc = ibv_destroy_qp(b);
			line("destroy_qp", "ok", tok(rc), NULL);
		}
	}
	{
		const struct step *need[] = { &scq_s, NULL };
		if (!blocked("destroy_cq", "ok", need, NULL)) {
			rc = ibv_destroy_cq(scq);
			if (!rc)
				rc = ibv_destroy_cq(rcq);
			line("destroy_cq", "ok", tok(rc), NULL);
		}
	}
	{
		const struct step *need[] = { &spmr, NULL };
		if (!blocked("dereg_mr_pair", "ok", need, NULL))
			line("dereg_mr_pair", "ok", tok(ibv_dereg_mr(pair_mr)), NULL);
	}
	{
		const struct step *need[] = { &spd, NULL };
		if (!blocked("dealloc_pd", "ok", need, NULL))
			line("dealloc_pd", "ok", tok(ibv_dealloc_pd(pd)), NULL);
	}
	if (root_pd)
		line("dealloc_pd_pair", "ok", tok(ibv_dealloc_pd(root_pd)), "when=made_before_drop");
	line("close_device", "ok", tok(ibv_close_device(ctx)), NULL);
}

int main(int argc, char **argv)
{
	if (argc != 4 || geteuid() != 0) {
		fprintf(stderr, "usage (as root): privdrop <device> <gid_index> <memlock bytes>\n");
		return 2;
	}
	dev_name = argv[1];
	gid_index = atoi(argv[2]);
	memlock = atol(argv[3]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	fork_section();
	drop_section();
	return 0;
}
