#include "sys.h"

#include <unistd.h>

felt_sys_ops felt_sys = {
    .read = read,
    .write = write,
    .writev = writev,
    .sendmsg = sendmsg,
    .sendmmsg = sendmmsg,
    .recvmmsg = recvmmsg,
    .clock_gettime = clock_gettime,
};
