/*
 * Helpers shared by the safety programs (bad_inputs.c, privdrop.c). Each
 * prints `case <name> expect=<token> got=<token> [key=value ...]` lines with
 * stable tokens: ok, errno=<n>, signal=<n>, timeout (and setup-failed when
 * the harness itself could not build a case).
 */
#ifndef SAFETY_H
#define SAFETY_H

#include <errno.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../lib/verbs_setup.h"

static int gid_index = 1;

/* "ok" or "errno=<n>" for a verbs return value (0 or a positive errno). */
static inline const char *tok(int rc)
{
	static char s[32];

	if (!rc)
		return "ok";
	snprintf(s, sizeof(s), "errno=%d", rc);
	return s;
}

/* RC QP to RTS, connected to remote_qpn on our own GID, granting every
 * remote access. Returns 0 or the failing errno. */
static inline int rc_connect(struct ibv_qp *qp, uint32_t remote_qpn)
{
	union ibv_gid gid;

	if (ibv_query_gid(qp->context, 1, gid_index, &gid))
		return errno ? errno : EIO;
	return rc_loopback(qp, remote_qpn, &gid, gid_index,
			   IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC);
}

#endif
