/*
 * The suites' launcher (tests/guest/common.sh, only()): runs a command in a
 * mount namespace of its own where /etc/libibverbs.d is <driver dir>, so
 * that libibverbs sees that one provider's driver file, with the providers
 * logging at info level to <log file>.
 *
 * usage: only <driver dir> <log file> command [args...]
 *
 * It does in one process what unshare(1), sh(1), mount(8) and env(1) did in
 * four: on the emulated CPU each process costs a good part of a second, and
 * the suites start over a thousand. Exits 125 if it could not set up, 126 or
 * 127 if the command could not be run (as a shell would), else it is the
 * command.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: only <driver dir> <log file> command [args...]\n");
		return 125;
	}
	if (unshare(CLONE_NEWNS)) {
		perror("only: unshare(CLONE_NEWNS)");
		return 125;
	}
	/* As unshare(1) does: nothing mounted here reaches the parent's
	 * namespace, whatever the propagation of / there. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		perror("only: making / private");
		return 125;
	}
	if (mount(argv[1], "/etc/libibverbs.d", NULL, MS_BIND, NULL)) {
		fprintf(stderr, "only: bind %s on /etc/libibverbs.d: %s\n", argv[1], strerror(errno));
		return 125;
	}
	if (setenv("VERBS_LOG_LEVEL", "3", 1) || setenv("VERBS_LOG_FILE", argv[2], 1)) {
		perror("only: setenv");
		return 125;
	}
	execvp(argv[3], argv + 3);
	fprintf(stderr, "only: %s: %s\n", argv[3], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
