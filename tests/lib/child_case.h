/*
 * One case in a forked child, so that a crash or a hang in the provider ends
 * that case and not the program: the child writes its lines to a pipe (a
 * crash loses none of what it wrote), has no core files and `seconds` to
 * live (SIGALRM), and the parent reads every line and its wait status.
 * The child's protocol, for the programs that use say(): "at <step>" before
 * each step, then one "result <token> [k=v...]".
 */
#ifndef CHILD_CASE_H
#define CHILD_CASE_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int case_fd = -1; /* in the child: its end of the pipe */

/* Child -> parent, one line; the child ends (3) if the parent is gone. */
static inline void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(case_fd, line, n) != n)
		_exit(3);
}

/* Runs fn in a child and returns its wait status; what it wrote to case_fd
 * (at most cap - 1 bytes) is in out, NUL-terminated. Exits (2) if no pipe
 * or child can be made: nothing could be measured then. */
static inline int run_in_child(void (*fn)(void), int seconds, char *out, size_t cap)
{
	size_t len = 0;
	ssize_t n;
	int p[2], status;
	pid_t pid;

	if (pipe(p))
		exit(2);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		exit(2);
	if (!pid) {
		struct rlimit nocore = { 0, 0 };

		close(p[0]);
		case_fd = p[1];
		setrlimit(RLIMIT_CORE, &nocore);
		alarm(seconds);
		fn();
		_exit(0);
	}
	close(p[1]);
	while (len < cap - 1 && (n = read(p[0], out + len, cap - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += n;
	}
	out[len] = 0;
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/* The last "at" step (spaces made '_', "none" if there was none) and the
 * "result" of a child's lines; result is "" if it wrote none. Consumes out. */
static inline void read_case_lines(char *out, char *result, size_t rcap, char *at, size_t acap)
{
	snprintf(result, rcap, "%s", "");
	snprintf(at, acap, "%s", "none");
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strncmp(line, "at ", 3))
			snprintf(at, acap, "%s", line + 3);
		else if (!strncmp(line, "result ", 7))
			snprintf(result, rcap, "%s", line + 7);
	}
	for (char *c = at; *c; c++)
		if (*c == ' ')
			*c = '_';
}

#endif
