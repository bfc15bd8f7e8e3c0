/*
 * Helpers shared by the stress programs (busy.c, events.c, devloss.c,
 * fork.c). Each program prints
 *   case <name> expect=<token> got=<token> [key=value ...]
 * with stable tokens (ok, errno=<n>, yes/no, signal=<n>, counts) and its
 * figures as key=value; tests/vm/stress.rs compares the tokens of the stock
 * librxe's run and ours. Traffic is a loopback RC pair on one rxe device:
 * rxe loops packets to its own GID (index 1, the IPv4-mapped one) back.
 */
#ifndef STRESS_H
#define STRESS_H

#include "../safety/safety.h"
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "FATAL: %s: %s\n", what, strerror(errno));
	printf("FATAL %s\n", what);
	fflush(stdout);
	exit(2);
}

static inline const char *yesno(int c)
{
	return c ? "yes" : "no";
}

/* Tokens that outlive the next call (tok() has one buffer). */
static inline const char *tokn(int rc)
{
	static char ring[16][32];
	static unsigned next;
	char *b = ring[next++ % 16];

	snprintf(b, sizeof(ring[0]), "%s", tok(rc));
	return b;
}

/* A number as a token. */
static inline const char *num(long n)
{
	static char ring[16][24];
	static unsigned next;
	char *b = ring[next++ % 16];

	snprintf(b, sizeof(ring[0]), "%ld", n);
	return b;
}

static inline void report(const char *name, const char *expect, const char *got, const char *extra)
{
	printf("case %s expect=%s got=%s%s%s\n", name, expect, got, extra && *extra ? " " : "", extra ? extra : "");
	fflush(stdout);
}

static inline struct ibv_cq *mkcq(struct ibv_context *ctx, int cqe)
{
	struct ibv_cq *cq = ibv_create_cq(ctx, cqe, NULL, NULL, 0);

	if (!cq)
		die("create_cq");
	return cq;
}

/* An RC QP (not connected); srq may be NULL. */
static inline struct ibv_qp *mkqp(struct ibv_pd *pd, struct ibv_cq *scq, struct ibv_cq *rcq, struct ibv_srq *srq, int wr)
{
	struct ibv_qp_init_attr ia = { .send_cq = scq, .recv_cq = rcq, .srq = srq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = wr, .max_recv_wr = srq ? 0 : wr, .max_send_sge = 1, .max_recv_sge = 1 } };
	struct ibv_qp *qp = ibv_create_qp(pd, &ia);

	if (!qp)
		die("create_qp");
	return qp;
}

/* Two RC QPs connected to each other. */
static inline void mkpair(struct ibv_pd *pd, struct ibv_cq *scq, struct ibv_cq *rcq, struct ibv_srq *srq, int wr,
			  struct ibv_qp **a, struct ibv_qp **b)
{
	*a = mkqp(pd, scq, rcq, srq, wr);
	*b = mkqp(pd, scq, rcq, srq, wr);
	if (rc_connect(*a, (*b)->qp_num) || rc_connect(*b, (*a)->qp_num))
		die("connect");
}

static inline int post_write(struct ibv_qp *qp, uint64_t wr_id, void *src, uint32_t len, uint32_t lkey, uint64_t raddr,
			     uint32_t rkey, int signaled)
{
	struct ibv_sge s = { (uintptr_t)src, len, lkey };
	struct ibv_send_wr w = { .wr_id = wr_id, .sg_list = &s, .num_sge = len ? 1 : 0, .opcode = IBV_WR_RDMA_WRITE,
		.send_flags = signaled ? IBV_SEND_SIGNALED : 0, .wr.rdma = { raddr, rkey } }, *bad;

	return ibv_post_send(qp, &w, &bad);
}

static inline int post_send1(struct ibv_qp *qp, uint64_t wr_id, void *src, uint32_t len, uint32_t lkey)
{
	struct ibv_sge s = { (uintptr_t)src, len, lkey };
	struct ibv_send_wr w = { .wr_id = wr_id, .sg_list = &s, .num_sge = len ? 1 : 0, .opcode = IBV_WR_SEND,
		.send_flags = IBV_SEND_SIGNALED }, *bad;

	return ibv_post_send(qp, &w, &bad);
}

static inline int post_recv1(struct ibv_qp *qp, uint64_t wr_id, void *dst, uint32_t len, uint32_t lkey)
{
	struct ibv_sge s = { (uintptr_t)dst, len, lkey };
	struct ibv_recv_wr w = { .wr_id = wr_id, .sg_list = &s, .num_sge = 1 }, *bad;

	return ibv_post_recv(qp, &w, &bad);
}

static inline int post_srq1(struct ibv_srq *srq, uint64_t wr_id, void *dst, uint32_t len, uint32_t lkey)
{
	struct ibv_sge s = { (uintptr_t)dst, len, lkey };
	struct ibv_recv_wr w = { .wr_id = wr_id, .sg_list = &s, .num_sge = 1 }, *bad;

	return ibv_post_srq_recv(srq, &w, &bad);
}

/* One completion with status success within `secs`: 1, else 0. */
static inline int one_ok(struct ibv_cq *cq, double secs)
{
	struct ibv_wc wc;

	return poll_one(cq, &wc, secs) == 1 && wc.status == IBV_WC_SUCCESS;
}

/* An RDMA write of `len` bytes from src (lkey) to dst (rkey) through qp,
 * signaled, its completion polled on cq, and the bytes compared. */
static inline int write_checked(struct ibv_qp *qp, struct ibv_cq *cq, char *src, uint32_t lkey, char *dst, uint32_t rkey,
				uint32_t len, int seed)
{
	for (uint32_t i = 0; i < len; i++)
		src[i] = (char)(seed + i * 7);
	memset(dst, 0, len);
	if (post_write(qp, seed, src, len, lkey, (uintptr_t)dst, rkey, 1))
		return 0;
	return one_ok(cq, 10) && !memcmp(src, dst, len);
}

/* Waits for a child; its exit status or "signal=<n>" as a token. */
static inline const char *child_tok(pid_t pid)
{
	static char ring[8][32];
	static unsigned next;
	char *b = ring[next++ % 8];
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return "waitpid-failed";
	if (WIFSIGNALED(st))
		snprintf(b, sizeof(ring[0]), "signal=%d", WTERMSIG(st));
	else
		snprintf(b, sizeof(ring[0]), "exit=%d", WEXITSTATUS(st));
	return b;
}

#endif
