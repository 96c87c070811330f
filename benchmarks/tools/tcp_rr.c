/* TCP request/response, one byte each way, like netperf TCP_RR: "tcp_rr server PORT" answers
 * forever; "tcp_rr client IP PORT SECONDS" prints the transactions per second it achieved. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int one = 1;
	char b = 'x';

	if (argc == 3 && !strcmp(argv[1], "server")) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 16))
			return perror("bind/listen"), 1;
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
	if (argc == 5 && !strcmp(argv[1], "client")) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
		double end, start;
		long n = 0;
		inet_pton(AF_INET, argv[2], &a.sin_addr);
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
	fprintf(stderr, "usage: tcp_rr server PORT | tcp_rr client IP PORT SECONDS\n");
	return 2;
}
