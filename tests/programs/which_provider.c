/*
 * Opens a device as any verbs program would and prints, from
 * /proc/self/maps, every provider library libibverbs loaded:
 *   provider-lib: <path>
 * then `opened <device>`. With no environment variables set, this shows
 * which provider an installed system uses.
 * usage: which_provider [device]
 */
#include <infiniband/verbs.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "rxe0";
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;
	char line[4096], seen[16][512];
	int nseen = 0;

	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			ctx = ibv_open_device(list[i]);
	FILE *maps = fopen("/proc/self/maps", "r");
	while (maps && fgets(line, sizeof(line), maps)) {
		char *path = strchr(line, '/');
		if (!path || !strstr(path, "-rdmav34.so"))
			continue;
		path[strcspn(path, "\n")] = 0;
		int dup = 0;
		for (int i = 0; i < nseen; i++)
			dup |= !strcmp(seen[i], path);
		if (!dup && nseen < 16) {
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", path);
			printf("provider-lib: %s\n", path);
		}
	}
	if (!ctx) {
		printf("cannot open %s\n", name);
		return 1;
	}
	printf("opened %s\n", name);
	ibv_close_device(ctx);
	return 0;
}
