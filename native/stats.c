#include "stats.h"

const char *const drop_reason_names[DROP_COUNT] = {
    [DROP_NO_ROUTE] = "no-route",
    [DROP_UNKNOWN_PEER] = "unknown-peer",
    [DROP_SPOOFED_SOURCE] = "spoofed-source",
    [DROP_MALFORMED] = "malformed",
    [DROP_TRUNCATED] = "truncated",
    [DROP_TTL_EXPIRED] = "ttl-expired",
    [DROP_OVERSIZE] = "oversize",
    [DROP_NOT_IP] = "not-ip",
    [DROP_SEND_ERROR] = "send-error",
    [DROP_TUN_WRITE_ERROR] = "tun-write-error",
    [DROP_OWN_SUBNET] = "own-subnet",
    [DROP_EXT_HEADER] = "ext-header",
    [DROP_NO_UNDERLAY] = "no-underlay",
};
