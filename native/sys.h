/* The syscalls of the packet paths, behind one table of function pointers: production uses the
 * libc functions; the fuzz harnesses (native/fuzz/) point them at checkers, so they drive the
 * real code through this seam instead of compiling its .c files into themselves. An indirect
 * call costs nothing next to the syscall behind it. */
#ifndef FELT_SYS_H
#define FELT_SYS_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

typedef struct {
  ssize_t (*read)(int fd, void *buf, size_t n);
  ssize_t (*write)(int fd, const void *buf, size_t n);
  ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
  ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
  int (*sendmmsg)(int fd, struct mmsghdr *v, unsigned int n, int flags);
  int (*recvmmsg)(int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *timeout);
  int (*clock_gettime)(clockid_t clk, struct timespec *ts);
} felt_sys_ops;

/* Set once before any engine or reader starts; read-only afterwards. */
extern felt_sys_ops felt_sys;

#endif
