/* Lone requests on one open connection to the agent's socket, GAP ms apart: prints the p50,
 * p90 and p99 of write -> answer line. Used by benches/lone.sh (docs/kernel.md#a-lone-claim-runs-where-it-was-read).
 * Usage: lone N GAP_MS create|ping [NAME_PREFIX] [SOCKET] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s N GAP_MS create|ping [PREFIX] [SOCKET]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]), gap = atoi(argv[2]);
    const char *op = argv[3], *prefix = argc > 4 ? argv[4] : "l";
    const char *path = argc > 5 ? argv[5] : "/run/a/s.sock";
    if (n <= 0)
        return 2;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (connect(s, (void *)&a, sizeof a)) {
        perror("connect");
        return 1;
    }
    double *lat = malloc(n * sizeof(double));
    static char buf[65536];
    char req[256];
    for (int i = 0; i < n; i++) {
        usleep(gap * 1000);
        int m = strcmp(op, "ping") == 0
                    ? snprintf(req, sizeof req, "{\"op\":\"ping\"}\n")
                    : snprintf(req, sizeof req, "{\"op\":\"create\",\"name\":\"%s%d\"}\n", prefix, i);
        double t0 = now_ms();
        if (write(s, req, m) != m) {
            perror("write");
            return 1;
        }
        int got = 0;
        for (;;) {
            int r = read(s, buf + got, sizeof buf - got);
            if (r <= 0) {
                perror("read");
                return 1;
            }
            got += r;
            if (buf[got - 1] == '\n')
                break;
        }
        lat[i] = now_ms() - t0;
        if (!strstr(buf, "\"ok\":true")) {
            fprintf(stderr, "failed: %.*s\n", got, buf);
            return 1;
        }
    }
    qsort(lat, n, sizeof(double), cmp);
    printf("%s n=%d gap=%dms p50 %.3f p90 %.3f p99 %.3f ms\n", op, n, gap, lat[n / 2],
           lat[n * 9 / 10], lat[n * 99 / 100]);
    return 0;
}
