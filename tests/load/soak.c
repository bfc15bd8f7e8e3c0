/*
 * Soak: 8 threads of verbs traffic for a given time on one rxe device
 * (rxe loops traffic to its own GID back), every payload checked on arrival.
 *
 *   sender 0  RC, shared QP s_a, ibv_post_send (lists of 1-4 WRs)
 *   sender 1  RC, shared QP s_a, ibv_wr_* (batches of 1-4 WRs)
 *   sender 2  RC, private QP p1_a, ibv_post_send (some WRs inline)
 *   sender 3  RC, private QP p2_a, ibv_wr_*; polls its send CQ with the
 *             extended polling (ibv_start_poll/next_poll/end_poll)
 *   sender 4  UD, QP u_a, ibv_post_send and ibv_wr_* alternately
 *   poller 5  ibv_poll_cq on the receive CQ of s_b and p1_b (senders 0-2)
 *   poller 6  extended polling on the receive CQ of p2_b (sender 3), which
 *             has its own receive queue, refilled by this poller
 *   poller 7  ibv_poll_cq on the receive CQ of u_b (sender 4)
 * s_b, p1_b (RC) and u_b (UD) receive through one SRQ, which pollers 5 and
 * 7 refill as they consume it. Senders 0-2 share one send CQ and each polls
 * it. Each sender stays within a window of messages its receiver has not
 * yet consumed and reposted; the SRQ's senders' windows add up to less than
 * its buffers, so it never runs empty: UD, which drops a message that finds
 * no receive posted, may then lose nothing either.
 * The extended polling has its own QPs, CQs and receive queue: rdma-core
 * 44's librxe mishandles it (README, "Known differences") and must not
 * drag the other scopes down with it.
 *
 * Every payload carries its sender, sequence number and length and a body
 * derived from them. The receiving poller is the only one that sees a
 * sender's messages, so per sender (and so per QP) it checks: a duplicate
 * (sequence seen before), out of order (not the next one), corrupted (bad
 * header, length, body, QP or a completion for a buffer not posted). Send
 * completions are checked for duplicates per sender. After the time is up,
 * the senders stop and everything in flight is drained (up to a limit);
 * lost = posted - distinct arrivals (messages) + posted - distinct send
 * completions. A full queue (ENOMEM from ibv_post_send/ibv_post_srq_recv/
 * ibv_post_recv, ENOSPC from ibv_wr_complete) is retried and counted.
 *
 * Output: `figure <scope>.<name> <value>` for each scope (rc_poll_cq:
 * senders 0-2; rc_ex_poll: sender 3; ud: sender 4; all) and
 *   case <scope>.<criterion> expect=<token> got=<token>
 * for the criteria (lost, duplicated, out_of_order, corrupted,
 * error_completions 0; and traffic=yes: every sender of the scope got
 * messages through).
 *
 * usage: soak [device] [gid_index] [seconds] [drain_seconds]
 */
#include <errno.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/verbs_setup.h"

#define NSEND 5
#define SEND_RING 256		/* send buffers per sender */
#define MSG_MAX 2048		/* RC message size limit */
#define UD_MSG_MAX 1024		/* one packet at path MTU 1024 */
#define GRH 40
#define RBUF (MSG_MAX + GRH)
#define SRQ_BUFS 512
#define RQ_BUFS 256		/* p2_b's own receive queue */
#define MAX_SEQ (1u << 24)	/* per sender; the run stops a sender there */
#define MAGIC 0x50414b53u
#define UD_QKEY 0x11111111

enum scope { RC_POLL, RC_EX, UD, NSCOPE };
static const char *scope_name[NSCOPE] = { "rc_poll_cq", "rc_ex_poll", "ud" };

struct hdr {
	uint32_t magic;
	uint16_t sender;
	uint16_t len;
	uint64_t seq;
};

struct counters {
	uint64_t sends_posted, recvs_posted, send_completions, recv_completions;
	uint64_t duplicated, out_of_order, corrupted, error_completions, enomem_retries;
};

static struct counters cnt[NSCOPE];

/* The first few duplicates are described on stderr: which path saw them and
 * whether the senders had stopped, to tell a provider's fault from a
 * phase of the run. */
static int described;
static void describe_duplicate(const char *path, int scope, int sender, uint64_t seq);

static void add(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

struct sender {
	int id, scope, api;		/* api: 0 post_send, 1 wr_*, 2 alternate */
	struct ibv_qp *qp;
	struct ibv_qp_ex *qpx;
	struct ibv_cq *scq;		/* its send CQ (NULL: scqx) */
	struct ibv_cq_ex *scqx;
	struct ibv_ah *ah;
	uint32_t remote_qpn, recv_qpn;
	char *bufs;
	uint64_t posted;		/* sequences [0, posted) are posted */
	pthread_mutex_t lock;		/* the send-completion record */
	uint8_t *sc_bits;
	uint64_t sc_next;		/* all sequences below it completed */
	uint8_t *rc_bits;		/* arrivals: only its receiving poller */
	uint64_t rc_expected, rc_distinct, rc_max;
	uint64_t done;			/* the sender left its loop */
};

static struct sender snd[NSEND];
static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_mr *mr;
static char *mem;
static struct ibv_srq *srq;
static struct ibv_qp *s_a, *s_b, *p1_a, *p1_b, *p2_a, *p2_b, *u_a, *u_b;
static struct ibv_cq *scq_shared, *rcq1, *ud_scq, *ud_rcq;
static struct ibv_cq_ex *scq2x, *rcq2x;
static char *srq_bufs, *rq_bufs;
static uint8_t srq_state[SRQ_BUFS], rq_state[RQ_BUFS];	/* 1: posted */
static int gid_index = 1, stop_send, stop_all;
static uint32_t max_inline;

static void die(const char *what)
{
	fprintf(stderr, "FATAL: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int flag(int *f)
{
	return __atomic_load_n(f, __ATOMIC_ACQUIRE);
}

static int test_set(uint8_t *bits, uint64_t i)
{
	uint8_t m = 1u << (i & 7);

	return __atomic_fetch_or(&bits[i >> 3], m, __ATOMIC_RELAXED) & m;
}

static int test(uint8_t *bits, uint64_t i)
{
	return __atomic_load_n(&bits[i >> 3], __ATOMIC_RELAXED) & (1u << (i & 7));
}

static uint8_t body(int sender, uint64_t seq, unsigned i)
{
	return (uint8_t)(seq * 31 + sender * 7 + i);
}

static unsigned msg_len(struct sender *s, uint64_t seq)
{
	unsigned max = s->scope == UD ? UD_MSG_MAX : MSG_MAX;

	return sizeof(struct hdr) + (seq * 97 + s->id * 13) % (max - sizeof(struct hdr) + 1);
}

/* Never 0: a slot the kernel never wrote reads as wr_id 0, and must not pass
 * for sender 0's first message. */
static uint64_t wr_id(int sender, uint64_t seq)
{
	return (uint64_t)(sender + 1) << 40 | seq;
}

/* One send completion, under the sender's lock; scope: the polling
 * sender's. A completion naming a sender whose QP does not complete on the
 * polled CQ is counted as corrupt in the polling scope (stale slots of one
 * CQ must not be charged to another scope's sender). */
static void send_completion(uint64_t id, int status, int scope)
{
	unsigned sid = (unsigned)(id >> 40) - 1;
	uint64_t seq = id & ((1ull << 40) - 1);
	struct sender *s;

	if (sid >= NSEND || snd[sid].scope != scope) {
		add(&cnt[scope].send_completions, 1);
		add(&cnt[scope].corrupted, 1);
		return;
	}
	s = &snd[sid];
	add(&cnt[s->scope].send_completions, 1);
	if (status != IBV_WC_SUCCESS)
		add(&cnt[s->scope].error_completions, 1);
	pthread_mutex_lock(&s->lock);
	if (seq >= __atomic_load_n(&s->posted, __ATOMIC_ACQUIRE) + 4 || seq >= MAX_SEQ) {
		/* Up to 4 WRs of a list can complete before posted counts them. */
		add(&cnt[s->scope].corrupted, 1);
	} else if (test_set(s->sc_bits, seq)) {
		add(&cnt[s->scope].duplicated, 1);
		describe_duplicate("send completion", s->scope, (int)sid, seq);
	} else {
		while (test(s->sc_bits, s->sc_next))
			s->sc_next++;
	}
	pthread_mutex_unlock(&s->lock);
}

static uint64_t completed_below(struct sender *s)
{
	uint64_t v;

	pthread_mutex_lock(&s->lock);
	v = s->sc_next;
	pthread_mutex_unlock(&s->lock);
	return v;
}

static void poll_send_cq(struct sender *s)
{
	if (s->scq) {
		struct ibv_wc wc[16];
		int n = ibv_poll_cq(s->scq, 16, wc);

		for (int i = 0; i < n; i++)
			send_completion(wc[i].wr_id, wc[i].status, s->scope);
	} else {
		struct ibv_poll_cq_attr pa = { 0 };

		if (ibv_start_poll(s->scqx, &pa))
			return;
		do
			send_completion(s->scqx->wr_id, s->scqx->status, s->scope);
		while (ibv_next_poll(s->scqx) == 0);
		ibv_end_poll(s->scqx);
	}
}

/* Messages a sender may have in flight beyond what its receiver consumed:
 * 3 x 96 + 128 < SRQ_BUFS for the SRQ's senders (0-2, 4). */
static uint64_t window(struct sender *s)
{
	return s->scope == RC_POLL ? 96 : 128;
}

static char *send_buf(struct sender *s, uint64_t seq)
{
	return s->bufs + (seq % SEND_RING) * MSG_MAX;
}

static void fill(struct sender *s, uint64_t seq, unsigned len)
{
	char *b = send_buf(s, seq);
	struct hdr h = { MAGIC, (uint16_t)s->id, (uint16_t)len, seq };

	memcpy(b, &h, sizeof(h));
	for (unsigned i = sizeof(h); i < len; i++)
		b[i] = body(s->id, seq, i);
}

/* Posts sequences [seq, seq + n) with the sender's API; returns how many
 * were posted (0 .. n) and sets *full when the queue was full. */
static int post(struct sender *s, uint64_t seq, int n, int *full, int *err)
{
	int api = s->api == 2 ? (int)(seq & 1) : s->api;

	*full = 0;
	*err = 0;
	if (api == 0) {
		struct ibv_sge sge[4];
		struct ibv_send_wr w[4], *bad = NULL;
		int ret;

		memset(w, 0, sizeof(w));
		for (int i = 0; i < n; i++) {
			unsigned len = msg_len(s, seq + i);
			sge[i] = (struct ibv_sge){ (uintptr_t)send_buf(s, seq + i), len, mr->lkey };
			w[i].wr_id = wr_id(s->id, seq + i);
			w[i].sg_list = &sge[i];
			w[i].num_sge = 1;
			w[i].opcode = IBV_WR_SEND;
			w[i].send_flags = IBV_SEND_SIGNALED;
			if (len <= max_inline && s->id == 2 && (seq + i) % 3 == 0)
				w[i].send_flags |= IBV_SEND_INLINE;
			if (s->ah) {
				w[i].wr.ud.ah = s->ah;
				w[i].wr.ud.remote_qpn = s->remote_qpn;
				w[i].wr.ud.remote_qkey = UD_QKEY;
			}
			w[i].next = i + 1 < n ? &w[i + 1] : NULL;
		}
		ret = ibv_post_send(s->qp, w, &bad);
		if (!ret)
			return n;
		if (ret == ENOMEM && bad) {
			*full = 1;
			return (int)(bad - w);
		}
		*err = ret;
		return bad ? (int)(bad - w) : 0;
	} else {
		int ret;

		ibv_wr_start(s->qpx);
		for (int i = 0; i < n; i++) {
			s->qpx->wr_id = wr_id(s->id, seq + i);
			s->qpx->wr_flags = IBV_SEND_SIGNALED;
			ibv_wr_send(s->qpx);
			if (s->ah)
				ibv_wr_set_ud_addr(s->qpx, s->ah, s->remote_qpn, UD_QKEY);
			ibv_wr_set_sge(s->qpx, mr->lkey, (uintptr_t)send_buf(s, seq + i), msg_len(s, seq + i));
		}
		ret = ibv_wr_complete(s->qpx);
		if (!ret)
			return n;
		/* A full queue fails the whole batch: ENOSPC (librxe and ours),
		 * ENOMEM accepted too. */
		if (ret == ENOSPC || ret == ENOMEM)
			*full = 1;
		else
			*err = ret;
		return 0;
	}
}

static void *sender(void *arg)
{
	struct sender *s = arg;
	uint64_t seq = 0;

	while (!flag(&stop_send) && seq + 4 < MAX_SEQ) {
		int n = 1 + (int)(seq % 4), full, err, done;

		if (s->scope == UD)
			n = 1;
		/* Buffers seq .. seq+n-1 are free once seq+n-1-SEND_RING completed. */
		while (seq + n > SEND_RING && completed_below(s) <= seq + n - 1 - SEND_RING && !flag(&stop_send))
			poll_send_cq(s);
		/* Stay within the sender's window of messages not yet consumed and
		 * reposted by the receiver: the windows of the SRQ's senders add up
		 * to less than its buffers, so it never runs empty (UD would drop). */
		while (seq + n > window(s) &&
		       __atomic_load_n(&s->rc_distinct, __ATOMIC_ACQUIRE) + window(s) < seq + n && !flag(&stop_send))
			poll_send_cq(s);
		if (flag(&stop_send))
			break;
		for (int i = 0; i < n; i++)
			fill(s, seq + i, msg_len(s, seq + i));
		while (n > 0 && !flag(&stop_send)) {
			done = post(s, seq, n, &full, &err);
			seq += done;
			n -= done;
			__atomic_store_n(&s->posted, seq, __ATOMIC_RELEASE);
			add(&cnt[s->scope].sends_posted, done);
			if (err) {
				fprintf(stderr, "sender %d: post failed with errno %d at seq %llu\n", s->id, err,
					(unsigned long long)seq);
				add(&cnt[s->scope].error_completions, 1);
				goto out;
			}
			if (full)
				add(&cnt[s->scope].enomem_retries, 1);
			poll_send_cq(s);
		}
		poll_send_cq(s);
	}
out:
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
	/* Drain our send completions. */
	while (!flag(&stop_all) && completed_below(s) < __atomic_load_n(&s->posted, __ATOMIC_ACQUIRE))
		poll_send_cq(s);
	return NULL;
}

/* Posts receive buffer i of the SRQ (rq=0) or of p2_b's queue (rq=1),
 * retrying a full queue. */
static void repost(int rq, unsigned i, int scope)
{
	struct ibv_sge sge = { (uintptr_t)((rq ? rq_bufs : srq_bufs) + (size_t)i * RBUF), RBUF, mr->lkey };
	struct ibv_recv_wr w = { .wr_id = i, .sg_list = &sge, .num_sge = 1 }, *bad;
	int ret;

	__atomic_store_n(rq ? &rq_state[i] : &srq_state[i], 1, __ATOMIC_RELEASE);
	while ((ret = rq ? ibv_post_recv(p2_b, &w, &bad) : ibv_post_srq_recv(srq, &w, &bad)) == ENOMEM) {
		add(&cnt[scope].enomem_retries, 1);
		if (flag(&stop_all))
			return;
	}
	if (ret) {
		fprintf(stderr, "post receive failed: errno %d\n", ret);
		add(&cnt[scope].error_completions, 1);
		return;
	}
	add(&cnt[scope].recvs_posted, 1);
}

/* One receive completion, seen by the only poller of its CQ. */
static void recv_completion(int rq, uint64_t id, int status, uint32_t byte_len, uint32_t qp_num, int scope)
{
	unsigned nbufs = rq ? RQ_BUFS : SRQ_BUFS, off = qp_num == u_b->qp_num ? GRH : 0;
	uint8_t *state = rq ? rq_state : srq_state;
	int fresh = 0;
	const char *b;
	struct hdr h;
	struct sender *s;
	unsigned len;
	int bad = 0;

	add(&cnt[scope].recv_completions, 1);
	if (id >= nbufs) {
		add(&cnt[scope].corrupted, 1);
		return;
	}
	/* A completion for a buffer not posted: reported twice (or stale). */
	if (!__atomic_exchange_n(&state[id], 0, __ATOMIC_ACQ_REL)) {
		add(&cnt[scope].duplicated, 1);
		describe_duplicate(rq ? "receive completion for an RQ buffer not posted" :
				   "receive completion for an SRQ buffer not posted", scope, -1, id);
		return;
	}
	if (status != IBV_WC_SUCCESS) {
		add(&cnt[scope].error_completions, 1);
		if (status == IBV_WC_WR_FLUSH_ERR && rq)
			return;
		repost(rq, id, scope);
		return;
	}
	b = (rq ? rq_bufs : srq_bufs) + id * RBUF + off;
	memcpy(&h, b, sizeof(h));
	len = byte_len - off;
	if (byte_len < off + sizeof(h) || h.magic != MAGIC || h.sender >= NSEND || h.len != len ||
	    h.seq >= MAX_SEQ) {
		add(&cnt[scope].corrupted, 1);
		repost(rq, id, scope);
		return;
	}
	s = &snd[h.sender];
	if (s->scope != scope || qp_num != s->recv_qpn || len != msg_len(s, h.seq))
		bad = 1;
	for (unsigned i = sizeof(h); i < len && !bad; i++)
		if ((uint8_t)b[i] != body(s->id, h.seq, i))
			bad = 1;
	if (bad)
		add(&cnt[scope].corrupted, 1);
	if (test_set(s->rc_bits, h.seq)) {
		add(&cnt[scope].duplicated, 1);
		describe_duplicate("message arrived again", scope, s->id, h.seq);
	} else {
		if (h.seq != s->rc_expected)
			add(&cnt[scope].out_of_order, 1);
		if (h.seq >= s->rc_expected)
			s->rc_expected = h.seq + 1;
		if (h.seq > s->rc_max)
			s->rc_max = h.seq;
		fresh = 1;
	}
	repost(rq, id, scope);
	if (fresh)
		__atomic_fetch_add(&s->rc_distinct, 1, __ATOMIC_RELEASE);
}

static void describe_duplicate(const char *path, int scope, int sender, uint64_t seq)
{
	if (__atomic_fetch_add(&described, 1, __ATOMIC_RELAXED) < 8)
		fprintf(stderr, "duplicate: %s, scope %s, sender %d, %s %llu, senders %s\n", path,
			scope_name[scope], sender, sender < 0 ? "buffer" : "seq", (unsigned long long)seq,
			flag(&stop_send) ? "stopped" : "running");
}

/* Whether every sender of the scope has stopped and everything it posted
 * has arrived. */
static int scope_drained(int scope)
{
	for (int i = 0; i < NSEND; i++) {
		struct sender *s = &snd[i];
		if (s->scope != scope)
			continue;
		if (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(&s->rc_distinct, __ATOMIC_ACQUIRE) < __atomic_load_n(&s->posted, __ATOMIC_ACQUIRE))
			return 0;
	}
	return 1;
}

static void *poller_rc(void *arg)
{
	(void)arg;
	while (!flag(&stop_all)) {
		struct ibv_wc wc[16];
		int n = ibv_poll_cq(rcq1, 16, wc);

		for (int i = 0; i < n; i++)
			recv_completion(0, wc[i].wr_id, wc[i].status, wc[i].byte_len, wc[i].qp_num, RC_POLL);
		if (!n && scope_drained(RC_POLL))
			break;
	}
	return NULL;
}

static void *poller_ex(void *arg)
{
	struct ibv_poll_cq_attr pa = { 0 };

	(void)arg;
	while (!flag(&stop_all)) {
		if (ibv_start_poll(rcq2x, &pa)) {
			if (scope_drained(RC_EX))
				break;
			continue;
		}
		do
			recv_completion(1, rcq2x->wr_id, rcq2x->status, ibv_wc_read_byte_len(rcq2x),
					ibv_wc_read_qp_num(rcq2x), RC_EX);
		while (ibv_next_poll(rcq2x) == 0);
		ibv_end_poll(rcq2x);
	}
	return NULL;
}

static void *poller_ud(void *arg)
{
	(void)arg;
	while (!flag(&stop_all)) {
		struct ibv_wc wc[16];
		int n = ibv_poll_cq(ud_rcq, 16, wc);

		for (int i = 0; i < n; i++)
			recv_completion(0, wc[i].wr_id, wc[i].status, wc[i].byte_len, wc[i].qp_num, UD);
		if (!n && scope_drained(UD))
			break;
	}
	return NULL;
}

static struct ibv_cq *cq(void)
{
	struct ibv_cq *c = ibv_create_cq(ctx, 4096, NULL, NULL, 0);

	if (!c)
		die("create_cq");
	return c;
}

static struct ibv_cq_ex *cq_ex(void)
{
	struct ibv_cq_init_attr_ex ca = { .cqe = 4096, .wc_flags = IBV_WC_EX_WITH_BYTE_LEN | IBV_WC_EX_WITH_QP_NUM };
	struct ibv_cq_ex *c = ibv_create_cq_ex(ctx, &ca);

	if (!c)
		die("create_cq_ex");
	return c;
}

static struct ibv_qp *qp(enum ibv_qp_type type, struct ibv_cq *scq, struct ibv_cq *rcq, struct ibv_srq *q, int ex)
{
	struct ibv_qp_init_attr_ex ia = { 0 };
	struct ibv_qp *r;

	ia.qp_type = type;
	ia.send_cq = scq;
	ia.recv_cq = rcq;
	ia.srq = q;
	ia.cap = (struct ibv_qp_cap){ .max_send_wr = 64, .max_recv_wr = q ? 0 : RQ_BUFS, .max_send_sge = 1,
				      .max_recv_sge = 1, .max_inline_data = 64 };
	ia.comp_mask = IBV_QP_INIT_ATTR_PD;
	ia.pd = pd;
	if (ex) {
		ia.comp_mask |= IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
		ia.send_ops_flags = IBV_QP_EX_WITH_SEND;
	}
	r = ibv_create_qp_ex(ctx, &ia);
	if (!r)
		die("create_qp");
	max_inline = ia.cap.max_inline_data;
	return r;
}

/* An RC QP to RTS towards `remote`, waiting the shortest RNR time (1) when
 * the responder has no receive posted. */
static void connect_rc(struct ibv_qp *q, uint32_t remote, union ibv_gid *gid)
{
	if ((errno = rc_init_rtr(q, remote, gid, gid_index, 0, 1)) || (errno = rc_rts(q)))
		die("connect RC");
}

static void sender_init(int id, int scope, int api, struct ibv_qp *q, struct ibv_cq *scq, struct ibv_cq_ex *scqx,
			struct ibv_qp *receiver)
{
	struct sender *s = &snd[id];

	s->id = id;
	s->scope = scope;
	s->api = api;
	s->qp = q;
	s->scq = scq;
	s->scqx = scqx;
	s->recv_qpn = receiver->qp_num;
	s->bufs = mem + (size_t)id * SEND_RING * MSG_MAX;
	pthread_mutex_init(&s->lock, NULL);
	s->sc_bits = calloc(MAX_SEQ / 8, 1);
	s->rc_bits = calloc(MAX_SEQ / 8, 1);
	if (!s->sc_bits || !s->rc_bits)
		die("calloc");
	if (api) {
		s->qpx = ibv_qp_to_qp_ex(q);
		if (!s->qpx)
			die("qp_to_qp_ex");
	}
}

static void setup(const char *name)
{
	struct ibv_srq_init_attr sa = { .attr = { .max_wr = SRQ_BUFS, .max_sge = 1 } };
	size_t send_mem = (size_t)NSEND * SEND_RING * MSG_MAX;
	size_t size = send_mem + (size_t)SRQ_BUFS * RBUF + (size_t)RQ_BUFS * RBUF;
	union ibv_gid gid;

	ctx = open_dev(name);
	if (!ctx)
		die("open device");
	size = (size + 4095) & ~(size_t)4095;
	pd = ibv_alloc_pd(ctx);
	mem = aligned_alloc(4096, size);
	if (!pd || !mem)
		die("setup");
	memset(mem, 0, size);
	mr = ibv_reg_mr(pd, mem, size, IBV_ACCESS_LOCAL_WRITE);
	if (!mr)
		die("reg_mr");
	srq_bufs = mem + send_mem;
	rq_bufs = srq_bufs + (size_t)SRQ_BUFS * RBUF;
	if (ibv_query_gid(ctx, 1, gid_index, &gid))
		die("query_gid");
	srq = ibv_create_srq(pd, &sa);
	if (!srq)
		die("create_srq");

	scq_shared = cq();
	rcq1 = cq();
	ud_scq = cq();
	ud_rcq = cq();
	scq2x = cq_ex();
	rcq2x = cq_ex();
	s_a = qp(IBV_QPT_RC, scq_shared, rcq1, NULL, 1);
	s_b = qp(IBV_QPT_RC, scq_shared, rcq1, srq, 0);
	p1_a = qp(IBV_QPT_RC, scq_shared, rcq1, NULL, 0);
	p1_b = qp(IBV_QPT_RC, scq_shared, rcq1, srq, 0);
	p2_a = qp(IBV_QPT_RC, ibv_cq_ex_to_cq(scq2x), ibv_cq_ex_to_cq(rcq2x), NULL, 1);
	p2_b = qp(IBV_QPT_RC, ibv_cq_ex_to_cq(scq2x), ibv_cq_ex_to_cq(rcq2x), NULL, 0);
	u_a = qp(IBV_QPT_UD, ud_scq, ud_rcq, NULL, 1);
	u_b = qp(IBV_QPT_UD, ud_scq, ud_rcq, srq, 0);
	max_inline = max_inline < 64 ? max_inline : 64;
	connect_rc(s_a, s_b->qp_num, &gid);
	connect_rc(s_b, s_a->qp_num, &gid);
	connect_rc(p1_a, p1_b->qp_num, &gid);
	connect_rc(p1_b, p1_a->qp_num, &gid);
	connect_rc(p2_a, p2_b->qp_num, &gid);
	connect_rc(p2_b, p2_a->qp_num, &gid);
	if ((errno = ud_ready(u_a, UD_QKEY)) || (errno = ud_ready(u_b, UD_QKEY)))
		die("UD QPs to RTS");

	{
		struct ibv_ah_attr aa = { .is_global = 1, .port_num = 1 };
		aa.grh.dgid = gid;
		aa.grh.sgid_index = gid_index;
		aa.grh.hop_limit = 1;
		snd[4].ah = ibv_create_ah(pd, &aa);
		if (!snd[4].ah)
			die("create_ah");
	}
	/* id, scope, api, QP, send CQ, receiving QP */
	sender_init(0, RC_POLL, 0, s_a, scq_shared, NULL, s_b);
	sender_init(1, RC_POLL, 1, s_a, scq_shared, NULL, s_b);
	sender_init(2, RC_POLL, 0, p1_a, scq_shared, NULL, p1_b);
	sender_init(3, RC_EX, 1, p2_a, NULL, scq2x, p2_b);
	sender_init(4, UD, 2, u_a, ud_scq, NULL, u_b);
	snd[4].remote_qpn = u_b->qp_num;
	for (unsigned i = 0; i < SRQ_BUFS; i++)
		repost(0, i, RC_POLL);
	for (unsigned i = 0; i < RQ_BUFS; i++)
		repost(1, i, RC_EX);
}

static void teardown(void)
{
	ibv_destroy_ah(snd[4].ah);
	struct ibv_qp *qps[] = { s_a, s_b, p1_a, p1_b, p2_a, p2_b, u_a, u_b };
	for (unsigned i = 0; i < sizeof(qps) / sizeof(qps[0]); i++)
		if (ibv_destroy_qp(qps[i]))
			die("destroy_qp");
	if (ibv_destroy_srq(srq))
		die("destroy_srq");
	struct ibv_cq *cqs[] = { scq_shared, rcq1, ud_scq, ud_rcq, ibv_cq_ex_to_cq(scq2x), ibv_cq_ex_to_cq(rcq2x) };
	for (unsigned i = 0; i < sizeof(cqs) / sizeof(cqs[0]); i++)
		if (ibv_destroy_cq(cqs[i]))
			die("destroy_cq");
	if (ibv_dereg_mr(mr) || ibv_dealloc_pd(pd) || ibv_close_device(ctx))
		die("teardown");
	for (int i = 0; i < NSEND; i++) {
		free(snd[i].sc_bits);
		free(snd[i].rc_bits);
		pthread_mutex_destroy(&snd[i].lock);
	}
	free(mem);
}

static void report(const char *scope, const struct counters *c, uint64_t lost, int traffic)
{
	printf("figure %s.wrs_posted %llu\n", scope, (unsigned long long)(c->sends_posted + c->recvs_posted));
	printf("figure %s.sends_posted %llu\n", scope, (unsigned long long)c->sends_posted);
	printf("figure %s.recvs_posted %llu\n", scope, (unsigned long long)c->recvs_posted);
	printf("figure %s.completions %llu\n", scope, (unsigned long long)(c->send_completions + c->recv_completions));
	printf("figure %s.lost %llu\n", scope, (unsigned long long)lost);
	printf("figure %s.duplicated %llu\n", scope, (unsigned long long)c->duplicated);
	printf("figure %s.out_of_order %llu\n", scope, (unsigned long long)c->out_of_order);
	printf("figure %s.corrupted %llu\n", scope, (unsigned long long)c->corrupted);
	printf("figure %s.error_completions %llu\n", scope, (unsigned long long)c->error_completions);
	printf("figure %s.enomem_retries %llu\n", scope, (unsigned long long)c->enomem_retries);
	printf("case %s.lost expect=lost=0 got=lost=%llu\n", scope, (unsigned long long)lost);
	printf("case %s.duplicated expect=duplicated=0 got=duplicated=%llu\n", scope, (unsigned long long)c->duplicated);
	printf("case %s.out_of_order expect=out_of_order=0 got=out_of_order=%llu\n", scope,
	       (unsigned long long)c->out_of_order);
	printf("case %s.corrupted expect=corrupted=0 got=corrupted=%llu\n", scope, (unsigned long long)c->corrupted);
	printf("case %s.error_completions expect=errors=0 got=errors=%llu\n", scope,
	       (unsigned long long)c->error_completions);
	printf("case %s.traffic expect=yes got=%s\n", scope, traffic ? "yes" : "no");
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	double secs = argc > 3 ? atof(argv[3]) : 20, drain = argc > 4 ? atof(argv[4]) : 30, t0, t1, t2;
	void *(*fn[8])(void *) = { sender, sender, sender, sender, sender, poller_rc, poller_ex, poller_ud };
	pthread_t th[8];
	struct counters all = { 0 };
	uint64_t lost_all = 0;
	int traffic_all = 1;

	if (argc > 2)
		gid_index = atoi(argv[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup(name);
	t0 = now_s();
	for (int i = 0; i < 8; i++)
		if (pthread_create(&th[i], NULL, fn[i], i < NSEND ? (void *)&snd[i] : NULL))
			die("pthread_create");
	while (now_s() - t0 < secs)
		usleep(100000);
	__atomic_store_n(&stop_send, 1, __ATOMIC_RELEASE);
	t1 = now_s();
	/* Drain: until every scope has everything it posted, or the limit. */
	for (;;) {
		int drained = 1;
		for (int s = 0; s < NSCOPE; s++)
			drained &= scope_drained(s);
		for (int i = 0; i < NSEND; i++)
			drained &= completed_below(&snd[i]) >= __atomic_load_n(&snd[i].posted, __ATOMIC_ACQUIRE);
		if (drained || now_s() - t1 > drain)
			break;
		usleep(50000);
	}
	t2 = now_s();
	__atomic_store_n(&stop_all, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);

	printf("figure seconds %.1f\n", t1 - t0);
	printf("figure drain_seconds %.1f\n", t2 - t1);
	for (int sc = 0; sc < NSCOPE; sc++) {
		uint64_t lost = 0;
		int traffic = 1;
		for (int i = 0; i < NSEND; i++) {
			struct sender *s = &snd[i];
			uint64_t sent = 0, completed = 0;
			if (s->scope != sc)
				continue;
			for (uint64_t q = 0; q < s->posted; q++) {
				sent += test(s->rc_bits, q) != 0;
				completed += test(s->sc_bits, q) != 0;
			}
			/* Arrivals of sequences never posted are corrupt. */
			for (uint64_t q = s->posted; q <= s->rc_max; q++)
				if (test(s->rc_bits, q))
					cnt[sc].corrupted++;
			lost += (s->posted - sent) + (s->posted - completed);
			printf("figure sender%d.posted %llu\n", i, (unsigned long long)s->posted);
			printf("figure sender%d.arrived %llu\n", i, (unsigned long long)sent);
			traffic &= sent > 0;
		}
		report(scope_name[sc], &cnt[sc], lost, traffic);
		lost_all += lost;
		traffic_all &= traffic;
		uint64_t *a = (uint64_t *)&all, *c = (uint64_t *)&cnt[sc];
		for (unsigned k = 0; k < sizeof(all) / sizeof(uint64_t); k++)
			a[k] += c[k];
	}
	report("all", &all, lost_all, traffic_all);
	teardown();
	printf("finished\n");
	return 0;
}
