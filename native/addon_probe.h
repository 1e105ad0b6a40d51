/* N-API glue for probe.c: probeIcmpOpen, probeIcmp6Open, probeUdpSniffOpen, probeUdpSniff6Open, probeSend,
 * probeSend6, probeRecv, probeClose, routeGet. Used by the agent's peer prober and by `felt doctor`. */
#ifndef FELT_ADDON_PROBE_H
#define FELT_ADDON_PROBE_H

#include <node_api.h>

/* Adds those functions to the addon's exports. */
void addon_probe_register(napi_env env, napi_value exports);

#endif
