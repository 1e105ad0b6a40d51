/* TCP request/response for the bench's IPv6 paths (Debian 12's sockperf 3.7 takes no IPv6
 * address). Same measurement as `sockperf ping-pong --tcp --full-rtt`: one connection, a request
 * of N bytes, the same-size reply, the next request as soon as the reply is in.
 *   felt-rr server <ip> <port>                 serves one connection at a time, forever
 *   felt-rr client <ip> <port> <bytes> <secs>  prints one JSON line:
 *     {"transactions":N,"seconds":S,"avgUs":..,"p50Us":..,"p99Us":..,"maxUs":..}
 * The first 10% of the run (at most 1 s) is warm-up and left out, as sockperf does.
 * Built by the bench with `cc -O2` into its scratch directory; not part of the product. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BYTES 65536
#define MAX_SAMPLES (16 * 1024 * 1024)

static void die(const char *what) {
  perror(what);
  exit(1);
}

static struct addrinfo *resolve(const char *ip, const char *port) {
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int rc = getaddrinfo(ip, port, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "felt-rr: %s: %s\n", ip, gai_strerror(rc));
    exit(1);
  }
  return res;
}

/* Reads or writes exactly n bytes; 0 on success, -1 on EOF or error. */
static int full_io(int fd, char *buf, size_t n, int writing) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = writing ? send(fd, buf + done, n - done, MSG_NOSIGNAL) : recv(fd, buf + done, n - done, 0);
    if (r <= 0) return -1;
    done += (size_t)r;
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int server(const char *ip, const char *port) {
  struct addrinfo *ai = resolve(ip, port);
  int ls = socket(ai->ai_family, SOCK_STREAM, 0);
  if (ls < 0) die("socket");
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, ai->ai_addr, ai->ai_addrlen) < 0) die("bind");
  if (listen(ls, 4) < 0) die("listen");
  static char buf[MAX_BYTES];
  for (;;) {
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Echo whatever arrives; the client sends one request and waits for it back. */
    for (;;) {
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r <= 0 || full_io(fd, buf, (size_t)r, 1) < 0) break;
    }
    close(fd);
  }
}

static int client(const char *ip, const char *port, size_t bytes, double seconds) {
  if (bytes == 0 || bytes > MAX_BYTES || !(seconds > 0)) {
    fprintf(stderr, "felt-rr: bytes must be 1..%d and seconds > 0\n", MAX_BYTES);
    return 1;
  }
  struct addrinfo *ai = resolve(ip, port);
  int fd = socket(ai->ai_family, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  double *rtt = malloc(sizeof(double) * MAX_SAMPLES);
  if (!rtt) die("malloc");
  static char buf[MAX_BYTES];
  memset(buf, 'r', bytes);
  double warm = seconds * 0.1 < 1.0 ? seconds * 0.1 : 1.0;
  double start = now_s(), measure_from = start + warm, end = start + warm + seconds, first = 0, last = 0;
  size_t n = 0;
  for (;;) {
    double t0 = now_s();
    if (t0 >= end || n >= MAX_SAMPLES) break;
    if (full_io(fd, buf, bytes, 1) < 0 || full_io(fd, buf, bytes, 0) < 0) {
      fprintf(stderr, "felt-rr: connection lost after %zu transactions\n", n);
      return 1;
    }
    double t1 = now_s();
    if (t0 >= measure_from) {
      if (n == 0) first = t0;
      rtt[n++] = (t1 - t0) * 1e6;
      last = t1;
    }
  }
  close(fd);
  if (n == 0) {
    fprintf(stderr, "felt-rr: no transaction completed\n");
    return 1;
  }
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += rtt[i];
  qsort(rtt, n, sizeof(double), cmp_double);
  /* Nearest rank, as the bench's ping percentiles. */
  size_t i50 = (size_t)((n * 50 + 99) / 100), i99 = (size_t)((n * 99 + 99) / 100);
  printf("{\"transactions\":%zu,\"seconds\":%.6f,\"avgUs\":%.3f,\"p50Us\":%.3f,\"p99Us\":%.3f,\"maxUs\":%.3f}\n", n, last - first,
         sum / (double)n, rtt[i50 > 0 ? i50 - 1 : 0], rtt[i99 > 0 ? i99 - 1 : 0], rtt[n - 1]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "server") == 0) return server(argv[2], argv[3]);
  if (argc == 6 && strcmp(argv[1], "client") == 0) return client(argv[2], argv[3], (size_t)strtoul(argv[4], NULL, 10), atof(argv[5]));
  fprintf(stderr, "usage: felt-rr server <ip> <port> | client <ip> <port> <bytes> <seconds>\n");
  return 2;
}
