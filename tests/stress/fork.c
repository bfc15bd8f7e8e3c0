/*
 * fork (issue 11, item 7). Run twice by tests/guest/stress.sh: with
 * RDMAV_FORK_SAFE=1 (libibverbs calls ibv_fork_init: registered memory is
 * marked MADV_DONTFORK) and without. A thread runs checked RDMA writes on a
 * loopback RC pair the whole time; children are forked while it runs:
 *   child_exits      exits at once
 *   child_execs      execs /bin/true
 *   child_reads_mr   reads the registered buffer (absent in the child under
 *                    fork_init: SIGSEGV; a private copy otherwise)
 *   child_touches_qp posts a signaled RDMA write on an inherited QP (an
 *                    idle pair of its own, not the traffic's) and polls its
 *                    inherited CQ; what it gets, and what the parent then
 *                    sees on that pair, are printed
 * After each child the parent's traffic must have gone on without a failure,
 * and at the end every parent object is destroyed without error.
 *
 * usage: fork <device> <gid_index>
 */
#include "stress.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define BUF (1 << 16)
static char *buf;
static struct ibv_mr *mr;
static struct ibv_cq *cq, *cq2;
static struct ibv_qp *a, *b, *c, *d;
static atomic_int stop;
static atomic_long ops, failures;
static int fork_safe;

static void *traffic(void *arg)
{
	(void)arg;
	for (int i = 0; !stop; i++) {
		if (write_checked(a, cq, buf, mr->lkey, buf + 8192, mr->rkey, 1024, i))
			ops++;
		else
			failures++;
	}
	return NULL;
}

/* Traffic done while `pid` lived and 0.5 s after; the case line. */
static void after_child(const char *name, const char *expect, pid_t pid, const char *extra)
{
	long before = ops, f0 = failures;
	const char *st = child_tok(pid);
	char x[300];

	for (double end = now_s() + 0.5; now_s() < end;)
		usleep(10000);
	long during = ops - before;
	snprintf(x, sizeof(x), "parent_ops=%ld parent_failures=%ld%s%s", during, (long)(failures - f0), extra ? " " : "",
		 extra ? extra : "");
	report(name, expect, st, x);
	char n2[80];
	snprintf(n2, sizeof(n2), "%s.parent_undisturbed", name);
	report(n2, "yes", yesno(during > 0 && failures == f0), NULL);
}

static void child_touches_qp(void)
{
	int pfd[2];
	pid_t pid;
	char res[128] = "none";
	struct ibv_wc wc;

	if (pipe(pfd))
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (!pid) {
		char r[128];
		struct ibv_wc w;
		int rc, n = 0;

		alarm(20);
		/* The write's data is the parent's registered memory: the kernel
		 * reads it through the MR, never through the child's mapping. */
		rc = post_write(c, 777, buf + 16384, 64, mr->lkey, (uintptr_t)buf + 24576, mr->rkey, 1);
		for (double end = now_s() + 3; !n && now_s() < end;)
			n = ibv_poll_cq(cq2, 1, &w);
		snprintf(r, sizeof(r), "child_post=%s child_polled=%d child_wc=%s", tokn(rc), n,
			 n == 1 ? (w.wr_id == 777 && w.status == IBV_WC_SUCCESS ? "ok" : "other") : "none");
		if (write(pfd[1], r, strlen(r) + 1) < 0)
			_exit(3);
		_exit(0);
	}
	close(pfd[1]);
	ssize_t got = read(pfd[0], res, sizeof(res) - 1);
	res[got > 0 ? got : 0] = 0;
	close(pfd[0]);
	const char *st = child_tok(pid);
	/* The parent, on the same pair: one post of its own, then everything its CQ gives. */
	int rc = post_write(c, 888, buf + 16384, 64, mr->lkey, (uintptr_t)buf + 24576, mr->rkey, 1);
	int mine = 0, childs = 0, bad = 0;
	for (double end = now_s() + 3; now_s() < end;) {
		if (ibv_poll_cq(cq2, 1, &wc) == 1) {
			mine += wc.wr_id == 888;
			childs += wc.wr_id == 777;
			bad += wc.status != IBV_WC_SUCCESS;
		}
		if (mine)
			break;
	}
	for (double end = now_s() + 0.5; now_s() < end;)
		if (ibv_poll_cq(cq2, 1, &wc) == 1) {
			mine += wc.wr_id == 888;
			childs += wc.wr_id == 777;
			bad += wc.status != IBV_WC_SUCCESS;
		}
	char x[300];
	snprintf(x, sizeof(x), "%s parent_post=%s parent_wc_own=%d parent_wc_childs=%d parent_wc_bad=%d", res, tokn(rc), mine,
		 childs, bad);
	report("child_touches_qp", "exit=0", st, x);
	/* Tokens compared between providers. */
	char *p = strstr(res, "child_post="), t[32] = "?";
	if (p)
		sscanf(p, "child_post=%31s", t);
	report("child_touches_qp.child_post", "ok", t, NULL);
	report("child_touches_qp.parent_pair_works", "yes", yesno(!rc && mine == 1 && !bad), NULL);
}

int main(int argc, char **argv)
{
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	pthread_t th;
	pid_t pid;
	char x[200];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2)
		gid_index = atoi(argv[2]);
	const char *fs = getenv("RDMAV_FORK_SAFE");
	fork_safe = fs && *fs && strcmp(fs, "0");
	ctx = open_dev(argc > 1 ? argv[1] : "rxe0");
	if (!ctx)
		die("open_dev");
	enum ibv_fork_status fst = ibv_is_fork_initialized();
	snprintf(x, sizeof(x), "status=%s", fst == IBV_FORK_UNNEEDED ? "unneeded" : fst == IBV_FORK_ENABLED ? "enabled" : "disabled");
	/* 6.1 copies pinned pages at fork, so libibverbs reports fork safety
	 * unneeded; RDMAV_FORK_SAFE=1 still marks registered memory DONTFORK. */
	report("fork_status", "unneeded", x + strlen("status="), fork_safe ? "rdmav_fork_safe=1" : "rdmav_fork_safe=0");
	buf = aligned_alloc(4096, BUF);
	memset(buf, 0x5a, BUF);
	pd = ibv_alloc_pd(ctx);
	mr = pd ? ibv_reg_mr(pd, buf, BUF, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE) : NULL;
	if (!mr)
		die("pd/mr");
	cq = mkcq(ctx, 256);
	cq2 = mkcq(ctx, 64);
	mkpair(pd, cq, cq, NULL, 64, &a, &b);
	mkpair(pd, cq2, cq2, NULL, 16, &c, &d);
	pthread_create(&th, NULL, traffic, NULL);
	while (ops < 20)
		usleep(10000);

	pid = fork();
	if (!pid)
		_exit(0);
	after_child("child_exits", "exit=0", pid, NULL);

	pid = fork();
	if (!pid) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	after_child("child_execs", "exit=0", pid, NULL);

	pid = fork();
	if (!pid) {
		volatile char s = 0;
		for (int i = 0; i < BUF; i += 4096)
			s += buf[i];
		_exit(s == 0 ? 1 : 0);
	}
	/* Under fork_init the registered pages are not mapped in the child. */
	after_child("child_reads_mr", fork_safe ? "signal=11" : "exit=0", pid, NULL);

	long before = ops, f0 = failures;
	child_touches_qp();
	report("child_touches_qp.parent_undisturbed", "yes", yesno(ops > before && failures == f0), NULL);

	stop = 1;
	pthread_join(th, NULL);
	snprintf(x, sizeof(x), "ops=%ld failures=%ld", (long)ops, (long)failures);
	report("parent_traffic_total", "yes", yesno(ops > 0 && !failures), x);
	int r1 = ibv_destroy_qp(a), r2 = ibv_destroy_qp(b), r3 = ibv_destroy_qp(c), r4 = ibv_destroy_qp(d);
	int r5 = ibv_destroy_cq(cq), r6 = ibv_destroy_cq(cq2), r7 = ibv_dereg_mr(mr), r8 = ibv_dealloc_pd(pd);
	int r9 = ibv_close_device(ctx);
	int first = r1 ? r1 : r2 ? r2 : r3 ? r3 : r4 ? r4 : r5 ? r5 : r6 ? r6 : r7 ? r7 : r8 ? r8 : r9;
	report("parent_objects_intact_destroy", "ok", tokn(first), NULL);
	return 0;
}
