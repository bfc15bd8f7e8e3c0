/*
 * The README's demo: registers memory of several sizes through whatever
 * provider libibverbs picks for the device, prints each region's
 * handle/lkey/rkey, then asks for a registration the kernel refuses.
 * usage: reg_demo [device]
 */
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	static const size_t sizes[] = { 4096, 1 << 20, 64 << 20 };
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;
	struct ibv_pd *pd;

	/* Line-buffered, so the provider's log lines (stderr) interleave in order. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	if (!ctx || !(pd = ibv_alloc_pd(ctx))) {
		fprintf(stderr, "cannot open %s: %s\n", name, strerror(errno));
		return 1;
	}
	printf("%-10s %8s %10s %10s\n", "size", "handle", "lkey", "rkey");
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = mmap(NULL, sizes[i], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct ibv_mr *mr = ibv_reg_mr(pd, p, sizes[i], IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
					       IBV_ACCESS_REMOTE_WRITE);
		if (!mr) {
			printf("%-10zu registration failed: %s\n", sizes[i], strerror(errno));
			return 1;
		}
		printf("%-10zu %8u %#10x %#10x\n", sizes[i], mr->handle, mr->lkey, mr->rkey);
		ibv_dereg_mr(mr);
		munmap(p, sizes[i]);
	}
	/* Remote write without local write: the kernel refuses it. */
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *bad = ibv_reg_mr(pd, p, 4096, IBV_ACCESS_REMOTE_WRITE);
	if (bad) {
		printf("unexpected: REMOTE_WRITE without LOCAL_WRITE was accepted\n");
		return 1;
	}
	printf("REMOTE_WRITE without LOCAL_WRITE: refused, errno %d (%s)\n", errno, strerror(errno));
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	return 0;
}
