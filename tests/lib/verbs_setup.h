/*
 * Set-up shared by the C test and bench programs: open a device by name,
 * bring QPs to RTS on one rxe device (rxe loops what is sent to its own GID
 * back, so an RC pair needs no second host), a monotonic clock. Nothing here
 * exits or prints: each returns 0 or an errno (or NULL), and whether that
 * ends the program or is a case's outcome is the caller's call.
 */
#ifndef VERBS_SETUP_H
#define VERBS_SETUP_H

#include <infiniband/verbs.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* The named device opened, or NULL (no such device, or the open's errno). */
static inline struct ibv_context *open_dev(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	if (list)
		ibv_free_device_list(list);
	return ctx;
}

static inline double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* 1 if a completion came within `secs`, 0 if none came or polling failed
 * (then *wc holds nothing). */
static inline int poll_one(struct ibv_cq *cq, struct ibv_wc *wc, double secs)
{
	double end = now_s() + secs;

	do {
		int n = ibv_poll_cq(cq, 1, wc);
		if (n < 0)
			return 0;
		if (n)
			return 1;
	} while (now_s() < end);
	return 0;
}

/* An RC QP to INIT, granting `access`, then to RTR towards remote_qpn at
 * `gid` (port 1, our GID at gid_index, MTU 1024, one read in flight). */
static inline int rc_init_rtr(struct ibv_qp *qp, uint32_t remote_qpn, const union ibv_gid *gid, int gid_index,
			      unsigned access, uint8_t min_rnr_timer)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .port_num = 1, .qp_access_flags = access };
	int rc;

	if ((rc = ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)))
		return rc;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = remote_qpn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = min_rnr_timer;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = *gid;
	a.ah_attr.grh.sgid_index = gid_index;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = 1;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			     IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

/* An RC QP in RTR to RTS; retries without end (7) so that a slow emulated
 * peer is waited for, not failed. */
static inline int rc_rts(struct ibv_qp *qp)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_RTS, .timeout = 14, .retry_cnt = 7, .rnr_retry = 7,
				 .max_rd_atomic = 1 };

	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			     IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

/* An RC QP from RESET to RTS, connected to remote_qpn at `gid`. */
static inline int rc_loopback(struct ibv_qp *qp, uint32_t remote_qpn, const union ibv_gid *gid, int gid_index,
			      unsigned access)
{
	int rc = rc_init_rtr(qp, remote_qpn, gid, gid_index, access, 12);

	return rc ? rc : rc_rts(qp);
}

/* A UD QP from RESET to RTS with `qkey`. */
static inline int ud_ready(struct ibv_qp *qp, uint32_t qkey)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .port_num = 1, .qkey = qkey };
	int rc;

	if ((rc = ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY)))
		return rc;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	if ((rc = ibv_modify_qp(qp, &a, IBV_QP_STATE)))
		return rc;
	a.qp_state = IBV_QPS_RTS;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_SQ_PSN);
}

#endif
