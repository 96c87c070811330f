/* TCP request/response, one byte each way, like netperf:
 *   tcp_rr server PORT [WORKERS]          answers forever (WORKERS processes share the socket);
 *   tcp_rr client IP PORT SECONDS         TCP_RR: one connection, prints transactions/s;
 *   tcp_rr crr IP PORT SECONDS [PROCS]    TCP_CRR: connect, one byte each way, close (with an
 *                                         RST: no TIME_WAIT exhausts the ports), PROCS client
 *                                         processes, prints their summed transactions/s. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int one = 1;

static void serve(int s)
{
	char b;

	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		while (read(c, &b, 1) == 1 && write(c, &b, 1) == 1)
			;
		close(c);
	}
}

/* Transactions done by one connection per transaction until `end`; -1 on error. */
static long crr(struct sockaddr_in *a, double end)
{
	struct linger rst = { .l_onoff = 1, .l_linger = 0 };
	char b = 'x';
	long n = 0;

	while (now() < end) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)a, sizeof(*a)))
			return perror("connect"), -1;
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1)
			return perror("crr"), -1;
		setsockopt(s, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
		close(s);
		n++;
	}
	return n;
}

int main(int argc, char **argv)
{
	char b = 'x';

	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "server")) {
		int s = socket(AF_INET, SOCK_STREAM, 0), workers = argc == 4 ? atoi(argv[3]) : 1;
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 1024))
			return perror("bind/listen"), 1;
		for (int i = 1; i < workers; i++)
			if (fork() == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL); /* killing the first kills all */
				break;
			}
		serve(s);
	}
	if (argc >= 5 && argc <= 6) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
		double start = now(), end = start + atof(argv[4]);
		inet_pton(AF_INET, argv[2], &a.sin_addr);
		if (argc == 5 && !strcmp(argv[1], "client")) {
			int s = socket(AF_INET, SOCK_STREAM, 0);
			long n = 0;
			if (connect(s, (struct sockaddr *)&a, sizeof(a)))
				return perror("connect"), 1;
			setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			start = now();
			end = start + atof(argv[4]);
			while (now() < end) {
				if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1)
					return perror("rr"), 1;
				n++;
			}
			printf("%.1f\n", n / (now() - start));
			return 0;
		}
		if (!strcmp(argv[1], "crr")) {
			int procs = argc == 6 ? atoi(argv[5]) : 1, fds[2], status, failed = 0;
			long n, total = 0;
			if (pipe(fds))
				return perror("pipe"), 1;
			for (int i = 0; i < procs; i++)
				if (fork() == 0) {
					n = crr(&a, end);
					return write(fds[1], &n, sizeof(n)) == sizeof(n) ? 0 : 1;
				}
			close(fds[1]); /* a child that dies unreported ends the read below */
			for (int i = 0; i < procs; i++) {
				if (read(fds[0], &n, sizeof(n)) != sizeof(n) || n < 0)
					failed = 1;
				else
					total += n;
				wait(&status);
			}
			if (failed)
				return 1;
			printf("%.1f\n", total / (now() - start));
			return 0;
		}
	}
	fprintf(stderr, "usage: tcp_rr server PORT [WORKERS] | tcp_rr client IP PORT SECONDS | "
			"tcp_rr crr IP PORT SECONDS [PROCS]\n");
	return 2;
}
