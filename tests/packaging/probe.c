/*
 * A minimal verbs program for the packaging tests: opens a device the way
 * any application does (no variables, whatever /etc/libibverbs.d says),
 * queries it, then prints every provider library (*-rdmav<ABI>.so) mapped
 * in its own address space, from /proc/self/maps (the path of the file, so
 * a library loaded through a symlink shows under its target's name):
 *   mapped <path>
 *   opened <device>        (or `cannot open <device>`, exit 1)
 * usage: probe [device]    (default rxe0)
 */
#include <infiniband/verbs.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;
	struct ibv_device_attr attr;
	char line[4096], seen[32][512];
	int nseen = 0, rc = 1;

	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	if (ctx && !ibv_query_device(ctx, &attr))
		rc = 0;
	FILE *maps = fopen("/proc/self/maps", "r");
	while (maps && fgets(line, sizeof(line), maps)) {
		char *path = strchr(line, '/');
		if (!path || !strstr(path, "-rdmav"))
			continue;
		path[strcspn(path, "\n")] = 0;
		int dup = 0;
		for (int i = 0; i < nseen; i++)
			dup |= !strcmp(seen[i], path);
		if (!dup && nseen < 32) {
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", path);
			printf("mapped %s\n", path);
		}
	}
	if (maps)
		fclose(maps);
	if (rc) {
		printf("cannot open %s\n", name);
		return 1;
	}
	printf("opened %s\n", name);
	ibv_close_device(ctx);
	ibv_free_device_list(list);
	return 0;
}
