/*
 * Device loss (issue 11, item 6), the program's side; tests/guest/stress.sh
 * drives it. rxe has no disassociate_ucontext, so `rdma link delete rxe0`
 * blocks in the kernel until every user context of rxe0 is closed.
 *
 * Handshake through files in <ctl dir>:
 *   program writes  started   (traffic running on a loopback RC pair)
 *   script writes   deleting  (`rdma link delete rxe0` launched in the background)
 *   program         keeps its traffic going for DURING seconds and counts
 *                   it, tries to open rxe0 again, then destroys everything
 *                   and closes its context; writes closing and closed
 *   script writes   readded   (after the deletion returned and rxe0 was
 *                   added back on the same NIC)
 *   program         opens the new rxe0 (a new context, same process) and
 *                   runs traffic on it.
 *
 * usage: devloss <device> <gid_index> <ctl dir>
 */
#include "stress.h"
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#define BUF (1 << 16)
#define DURING 3.0
static const char *ctl;
static char *buf;
static atomic_int stop;
static atomic_long ops, failures;

struct traffic {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_mr *mr;
	struct ibv_cq *cq;
	struct ibv_qp *a, *b;
};

static double wall(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void mark(const char *name)
{
	char path[512], s[64];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", ctl, name);
	snprintf(s, sizeof(s), "%.3f\n", wall());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, s, strlen(s)) < 0)
		die("mark");
	close(fd);
}

static int wait_for(const char *name, double secs)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", ctl, name);
	for (double end = now_s() + secs; now_s() < end; usleep(50000))
		if (!stat(path, &st))
			return 1;
	return 0;
}

static struct ibv_device *find(struct ibv_device **list, const char *name)
{
	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			return list[i];
	return NULL;
}

static void setup(struct traffic *t, struct ibv_context *ctx)
{
	t->ctx = ctx;
	t->pd = ibv_alloc_pd(ctx);
	t->mr = t->pd ? ibv_reg_mr(t->pd, buf, BUF, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE) : NULL;
	if (!t->mr)
		die("pd/mr");
	t->cq = mkcq(ctx, 256);
	mkpair(t->pd, t->cq, t->cq, NULL, 64, &t->a, &t->b);
}

/* RDMA writes a -> b, each checked. */
static void *traffic(void *arg)
{
	struct traffic *t = arg;

	for (int i = 0; !stop; i++) {
		if (write_checked(t->a, t->cq, buf, t->mr->lkey, buf + BUF / 2, t->mr->rkey, 1024, i))
			ops++;
		else
			failures++;
	}
	return NULL;
}

/* Destroys everything; the first failure's token, or ok. */
static const char *teardown(struct traffic *t, char *x, size_t xl)
{
	int qa = ibv_destroy_qp(t->a), qb = ibv_destroy_qp(t->b), cq = ibv_destroy_cq(t->cq), mr = ibv_dereg_mr(t->mr),
	    pd = ibv_dealloc_pd(t->pd);

	snprintf(x, xl, "destroy_qp=%s,%s destroy_cq=%s dereg_mr=%s dealloc_pd=%s", tokn(qa), tokn(qb), tokn(cq), tokn(mr),
		 tokn(pd));
	return tokn(qa ? qa : qb ? qb : cq ? cq : mr ? mr : pd);
}

int main(int argc, char **argv)
{
	struct ibv_device **list;
	struct ibv_device *dev;
	struct ibv_context *ctx;
	struct traffic t;
	union ibv_gid gid_before, gid_after;
	pthread_t th;
	char x[400];
	long before, during;
	int evs = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 4) {
		fprintf(stderr, "usage: devloss <device> <gid_index> <ctl dir>\n");
		return 2;
	}
	gid_index = atoi(argv[2]);
	ctl = argv[3];
	buf = aligned_alloc(4096, BUF);
	memset(buf, 0, BUF);
	list = ibv_get_device_list(NULL);
	dev = find(list, argv[1]);
	if (!dev || !(ctx = ibv_open_device(dev)))
		die("open");
	if (ibv_query_gid(ctx, 1, gid_index, &gid_before))
		die("query_gid");
	fcntl(ctx->async_fd, F_SETFL, fcntl(ctx->async_fd, F_GETFL) | O_NONBLOCK);
	setup(&t, ctx);
	pthread_create(&th, NULL, traffic, &t);
	mark("started");
	if (!wait_for("deleting", 300)) {
		report("devloss.delete_started", "yes", "no", NULL);
		return 1;
	}
	/* The deletion is under way (blocked on our context): traffic goes on. */
	before = ops;
	double t0 = now_s();
	struct pollfd p = { .fd = ctx->async_fd, .events = POLLIN };
	while (now_s() < t0 + DURING) {
		struct ibv_async_event ev;
		if (poll(&p, 1, 100) == 1 && !ibv_get_async_event(ctx, &ev)) {
			printf("async_event type=%d\n", ev.event_type);
			evs++;
			ibv_ack_async_event(&ev);
		}
	}
	during = ops - before;
	snprintf(x, sizeof(x), "ops_during=%ld failures=%ld seconds=%.1f", during, (long)failures, DURING);
	report("devloss.traffic_during_delete", "yes", yesno(during > 0 && !failures), x);
	report("devloss.async_events_during_delete", "0", num(evs), NULL);
	snprintf(x, sizeof(x), "%s/deleted", ctl);
	report("devloss.delete_pending_while_open", "yes", yesno(access(x, F_OK) != 0), NULL);
	/* A second context on the device being removed. */
	struct ibv_context *again = ibv_open_device(dev);
	int again_err = again ? 0 : errno;
	if (again)
		ibv_close_device(again);
	/* Its /dev/infiniband node is already gone: ENOENT. */
	report("devloss.open_during_delete", "errno=2", tokn(again_err), NULL);
	stop = 1;
	pthread_join(th, NULL);
	const char *td = teardown(&t, x, sizeof(x));
	snprintf(x + strlen(x), sizeof(x) - strlen(x), " ops_total=%ld failures=%ld", (long)ops, (long)failures);
	report("devloss.destroy_all", "ok", td, x);
	ibv_free_device_list(list);
	mark("closing");
	int cl = ibv_close_device(ctx);
	mark("closed");
	snprintf(x, sizeof(x), "closed_s_after_deleting=%.1f", now_s() - t0);
	report("devloss.close_device", "ok", tokn(cl), x);

	/* The script deletes and re-adds rxe0. */
	if (!wait_for("readded", 300)) {
		report("devloss.readded", "yes", "no", NULL);
		return 1;
	}
	list = ibv_get_device_list(NULL);
	dev = find(list, argv[1]);
	ctx = dev ? ibv_open_device(dev) : NULL;
	report("devloss.open_new_device", "ok", tokn(ctx ? 0 : dev ? errno : ENODEV), NULL);
	if (!ctx)
		return 1;
	if (ibv_query_gid(ctx, 1, gid_index, &gid_after))
		die("query_gid");
	report("devloss.new_device_same_gid", "yes", yesno(!memcmp(&gid_before, &gid_after, sizeof(gid_after))), NULL);
	setup(&t, ctx);
	ops = failures = 0;
	for (int i = 0; i < 200; i++)
		if (write_checked(t.a, t.cq, buf, t.mr->lkey, buf + BUF / 2, t.mr->rkey, 1024, i))
			ops++;
		else
			failures++;
	snprintf(x, sizeof(x), "ops=%ld failures=%ld", (long)ops, (long)failures);
	report("devloss.traffic_on_new_device", "yes", yesno(ops == 200), x);
	const char *td2 = teardown(&t, x, sizeof(x));
	report("devloss.new_device_destroy_all", "ok", td2, x);
	report("devloss.new_device_close", "ok", tokn(ibv_close_device(ctx)), NULL);
	ibv_free_device_list(list);
	return 0;
}
